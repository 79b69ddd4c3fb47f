//! Identity on the server side: the city's [`Authority`] (signing key, registry of issued
//! credentials, revocations) and every node's [`Gate`] (verifies a request's credential, knows
//! which county each school belongs to, rate-limits per credential).
//!
//! What is stored where:
//! - city: `city-signing-key.pk8` (owner-only) in the data dir; in the store, `auth/cred/<id>`
//!   (the claims issued, never the token) and `auth/school/<school>` (its county, from enrolment).
//! - relay: `auth/trust` (the city key and revoked ids, as last received from the city) and
//!   `auth/school/<school>` (learned from each school's verified credential).
//!
//! Token format and scope rules are in `schoolsync_protocol::auth`; this module does the IO.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use ring::signature::{Ed25519KeyPair, KeyPair};
use schoolsync_protocol::auth::{self, AuthError, Claims, CredentialFile, Role, Trust};
use schoolsync_protocol::ids::{CountyCode, SchoolId};
use schoolsync_store::{DocStore, StoreError};
use serde::{Deserialize, Serialize};

/// The city's signing key, beside its store.
pub const CITY_KEY_FILE: &str = "city-signing-key.pk8";
/// The operator's own credential, written by the city on first start (owner-only): the admin
/// commands read it to talk to the running city.
pub const ADMIN_CREDENTIAL_FILE: &str = "admin.credential";
/// Credentials remembered by the rate limiter; beyond this the idle ones are forgotten (a flood
/// of made-up ids cannot grow memory: unverified requests never reach the limiter anyway).
pub const LIMITER_ENTRIES_MAX: usize = 10_000;

/// Per-credential request budget: a steady rate and a burst, by role. A school's first sync of a
/// term is a few dozen rounds back to back; its steady state is one round a minute. A relay
/// forwards a whole county.
pub fn rate_for(role: Role) -> (f64, f64) {
    match role {
        Role::School => (5.0, 120.0),
        Role::Relay => (200.0, 2_000.0),
        Role::Viewer => (20.0, 200.0),
        Role::Admin => (50.0, 500.0),
    }
}

/// Failures setting up or using the city's authority.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {0} is damaged")]
    BadKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

/// One issued credential, as the city's registry keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredRecord {
    pub claims: Claims,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The city's signing key and registry.
pub struct Authority {
    key: Ed25519KeyPair,
    /// The public key, base64url.
    pub city_key: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthorityError + '_ {
    move |source| AuthorityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn rfc3339(now_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Authority {
    /// Loads the city's signing key from `data_dir`, creating it (owner-only) the first time.
    pub fn open(data_dir: &Path) -> Result<Authority, AuthorityError> {
        let path = data_dir.join(CITY_KEY_FILE);
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| AuthorityError::BadKey("cannot generate a key".into()))?;
                schoolsync_store::secret::write_private(&path, doc.as_ref())
                    .map_err(io_err(&path))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| AuthorityError::BadKey(path.display().to_string()))?;
        let city_key = auth::b64(key.public_key().as_ref());
        Ok(Authority { key, city_key })
    }

    /// Makes sure the operator's admin credential exists in `data_dir` (owner-only).
    pub fn ensure_admin(
        &self,
        store: &DocStore,
        data_dir: &Path,
        now_ms: i64,
    ) -> Result<PathBuf, AuthorityError> {
        let path = data_dir.join(ADMIN_CREDENTIAL_FILE);
        let valid = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| toml::from_str::<CredentialFile>(&t).ok())
            .is_some_and(|f| self.trust(store).is_ok_and(|t| t.verify(&f.token).is_ok()));
        if !valid {
            let (claims, file) = self.issue(store, Role::Admin, None, None, now_ms)?;
            schoolsync_store::secret::write_private(&path, file.to_text(&claims).as_bytes())
                .map_err(io_err(&path))?;
        }
        Ok(path)
    }

    /// Issues a credential and records it (claims only) in the registry. A school credential
    /// also records the school's county, which the city then holds every relay to.
    pub fn issue(
        &self,
        store: &DocStore,
        role: Role,
        school: Option<SchoolId>,
        county: Option<CountyCode>,
        now_ms: i64,
    ) -> Result<(Claims, CredentialFile), AuthorityError> {
        if let (Some(school), Some(county)) = (&school, &county) {
            if let Some(known) = school_county(store, school)? {
                if &known != county {
                    return Err(AuthorityError::Refused(format!(
                        "school {school} is enrolled in county {known}, not {county}; revoke its credentials first if it moved"
                    )));
                }
            }
        }
        let rng = ring::rand::SystemRandom::new();
        let mut random = [0u8; 8];
        ring::rand::SecureRandom::fill(&rng, &mut random)
            .map_err(|_| AuthorityError::BadKey("no randomness".into()))?;
        let letter = &role.name()[..1];
        let id = format!(
            "{letter}-{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let claims = Claims {
            id: id.clone(),
            role,
            school: school.clone(),
            county: county.clone(),
            issued_at: rfc3339(now_ms),
        };
        claims
            .check_shape()
            .map_err(|e| AuthorityError::Refused(e.to_string()))?;
        let signed = auth::signed_part(&claims);
        let token = auth::assemble(&signed, self.key.sign(signed.as_bytes()).as_ref());
        let record = CredRecord {
            claims: claims.clone(),
            revoked_at: None,
        };
        let mut ops = vec![DocStore::meta_op(
            &format!("auth/cred/{id}"),
            &serde_json::to_string(&record).unwrap_or_default(),
        )];
        if let (Some(school), Some(county)) = (&school, &county) {
            ops.push(DocStore::meta_op(
                &format!("auth/school/{school}"),
                county.as_str(),
            ));
        }
        store.write_raw(ops)?;
        Ok((
            claims,
            CredentialFile {
                token,
                city_key: self.city_key.clone(),
            },
        ))
    }

    /// Revokes a credential. Returns the record, or `None` if the id is unknown.
    pub fn revoke(
        &self,
        store: &DocStore,
        id: &str,
        now_ms: i64,
    ) -> Result<Option<CredRecord>, AuthorityError> {
        let name = format!("auth/cred/{id}");
        let Some(mut record) = store
            .meta(&name)?
            .and_then(|t| serde_json::from_str::<CredRecord>(&t).ok())
        else {
            return Ok(None);
        };
        if record.revoked_at.is_none() {
            record.revoked_at = Some(rfc3339(now_ms));
            store.write_raw(vec![DocStore::meta_op(
                &name,
                &serde_json::to_string(&record).unwrap_or_default(),
            )])?;
        }
        Ok(Some(record))
    }

    /// Every credential issued, oldest first.
    pub fn list(store: &DocStore) -> Result<Vec<CredRecord>, AuthorityError> {
        let mut out: Vec<CredRecord> = store
            .scan_raw(b"m/auth/cred/")?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        out.sort_by(|a, b| a.claims.issued_at.cmp(&b.claims.issued_at));
        Ok(out)
    }

    /// What relays need to verify credentials: this key and the revoked ids.
    pub fn trust(&self, store: &DocStore) -> Result<Trust, AuthorityError> {
        Ok(Trust {
            city_key: self.city_key.clone(),
            revoked: Authority::list(store)?
                .into_iter()
                .filter(|r| r.revoked_at.is_some())
                .map(|r| r.claims.id)
                .collect(),
        })
    }
}

/// The county a node has on record for a school.
pub fn school_county(
    store: &DocStore,
    school: &SchoolId,
) -> Result<Option<CountyCode>, StoreError> {
    Ok(store
        .meta(&format!("auth/school/{school}"))?
        .and_then(|c| c.parse().ok()))
}

/// A relay's stored trust (city key and revocations), if it has received one.
pub fn stored_trust(store: &DocStore) -> Result<Option<Trust>, StoreError> {
    Ok(store
        .meta("auth/trust")?
        .and_then(|t| serde_json::from_str(&t).ok()))
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Verifies credentials and applies scope and rate limits, for one node.
pub struct Gate {
    /// This node's county, for a relay.
    pub county: Option<CountyCode>,
    trust: RwLock<Trust>,
    counties: Mutex<HashMap<SchoolId, CountyCode>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Gate {
    pub fn new(county: Option<CountyCode>, trust: Trust) -> Gate {
        Gate {
            county,
            trust: RwLock::new(trust),
            counties: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The trust currently applied.
    pub fn trust(&self) -> Trust {
        self.trust
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the trust (a relay received a newer revocation list; the city revoked).
    pub fn set_trust(&self, trust: Trust) {
        match self.trust.write() {
            Ok(mut t) => *t = trust,
            Err(p) => *p.into_inner() = trust,
        }
    }

    /// Verifies the bearer token of a request.
    pub fn verify(&self, token: Option<&str>) -> Result<Claims, AuthError> {
        let token = token.ok_or(AuthError::Missing)?;
        self.trust
            .read()
            .map_err(|_| AuthError::Invalid("internal"))?
            .verify(token)
    }

    /// Takes one request from the credential's budget; `false` when it is spent.
    pub fn admit(&self, claims: &Claims, now: Instant) -> bool {
        let (rate, burst) = rate_for(claims.role);
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= LIMITER_ENTRIES_MAX && !buckets.contains_key(&claims.id) {
            buckets.retain(|_, b| now.duration_since(b.at).as_secs_f64() * rate < burst);
            if buckets.len() >= LIMITER_ENTRIES_MAX {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(claims.id.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// The county of `school` as this node knows it: the city from enrolment, a relay from the
    /// credentials its schools presented (and, failing that, from what it was told by the city).
    pub fn county_of(
        &self,
        store: &DocStore,
        school: &SchoolId,
    ) -> Result<Option<CountyCode>, StoreError> {
        if let Some(c) = self
            .counties
            .lock()
            .ok()
            .and_then(|m| m.get(school).cloned())
        {
            return Ok(Some(c));
        }
        let found = school_county(store, school)?;
        if let (Some(c), Ok(mut m)) = (&found, self.counties.lock()) {
            m.insert(school.clone(), c.clone());
        }
        Ok(found)
    }

    /// Records a school's county learned from its verified credential (relay side).
    pub fn learn(
        &self,
        store: &DocStore,
        school: &SchoolId,
        county: &CountyCode,
    ) -> Result<(), StoreError> {
        if self.county_of(store, school)?.as_ref() == Some(county) {
            return Ok(());
        }
        store.write_raw(vec![DocStore::meta_op(
            &format!("auth/school/{school}"),
            county.as_str(),
        )])?;
        if let Ok(mut m) = self.counties.lock() {
            m.insert(school.clone(), county.clone());
        }
        Ok(())
    }

    /// Forgets cached counties (after the registry changed underneath, e.g. an enrolment).
    pub fn forget(&self, school: &SchoolId) {
        if let Ok(mut m) = self.counties.lock() {
            m.remove(school);
        }
    }

    /// Decides whether `claims` may sync `school` here. A relay serves its own county only,
    /// whoever asks; the city holds a relay to the county each school was enrolled in.
    pub fn may_sync(
        &self,
        store: &DocStore,
        claims: &Claims,
        school: &SchoolId,
    ) -> Result<Result<(), AuthError>, StoreError> {
        let county = match (claims.role, &self.county) {
            // A relay learns a school's county from the school's own signed credential.
            (Role::School, Some(_)) => claims.county.clone(),
            _ => self.county_of(store, school)?,
        };
        if let (Some(here), Some(county)) = (&self.county, &county) {
            if here != county {
                return Ok(Err(AuthError::Forbidden(format!(
                    "sync school {school} at the relay of county {here}: the school belongs to county {county}"
                ))));
            }
        }
        if !claims.may_sync(school, county.as_ref()) {
            return Ok(Err(AuthError::Forbidden(format!(
                "sync school {school} (credential {} is for {})",
                claims.id,
                scope_words(claims)
            ))));
        }
        if let (Role::School, Some(_), Some(county)) = (claims.role, &self.county, &county) {
            self.learn(store, school, county)?;
        }
        Ok(Ok(()))
    }
}

/// "school 2113000001", "county 130821", "the whole city".
pub fn scope_words(claims: &Claims) -> String {
    match (claims.role, &claims.school, &claims.county) {
        (Role::School, Some(s), _) => format!("school {s}"),
        (_, _, Some(c)) => format!("county {c}"),
        _ => "the whole city".to_owned(),
    }
}
