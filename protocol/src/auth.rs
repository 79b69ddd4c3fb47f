//! Credentials and scope: who a request comes from and what it may touch.
//!
//! A credential is a **token signed by the city** (Ed25519): `ssc1.<claims>.<signature>`, both
//! parts base64url. The claims say which device it is ([`Claims::id`]) and its scope: one school
//! (with its county), one county relay, or an oversight viewer (the city, or one county). Any node
//! holding the city's public key verifies a token without asking anyone, so a county relay checks
//! its schools while the city is unreachable; what it cannot know by itself, revocations, flows
//! down to it as a list of revoked ids ([`Trust`]).
//!
//! Servers keep no secret of a device: the city stores the claims it issued (never the token), and
//! every node verifies signatures. The token itself is a bearer secret: a device keeps it in a
//! file only its owner can read.
//!
//! Signing needs a private key and randomness (IO): that lives in the server (`server::auth`).
//! This module only parses, verifies, and decides scope.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ids::{CountyCode, SchoolId};

/// Token prefix, naming the format version.
pub const TOKEN_PREFIX: &str = "ssc1.";
/// Longest token accepted: claims are ~200 bytes; anything far longer is not ours.
pub const TOKEN_BYTES_MAX: usize = 2048;
/// Longest credential id (`<role letter>-<16 hex>`).
pub const ID_BYTES_MAX: usize = 64;

/// The kind of device a credential belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A school machine: reads and writes its own school's documents.
    School,
    /// A county relay: reads and writes its county's documents.
    Relay,
    /// An oversight viewer: reads the city's or one county's data, writes nothing.
    Viewer,
    /// The city operator's own tool (enrolment, revocation); never leaves the city machine.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::School => "school",
            Role::Relay => "relay",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// What a token says, signed by the city.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
///
/// On the wire the field names are one letter: the token rides on every request, and a rural
/// link pays for each byte (`i`, `r`, `s`, `c`, `t`).
pub struct Claims {
    /// The credential's id: what `revoke` names and revocation lists carry.
    #[serde(rename = "i", alias = "id")]
    pub id: String,
    #[serde(rename = "r", alias = "role")]
    pub role: Role,
    /// For a school credential.
    #[serde(
        rename = "s",
        alias = "school",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub school: Option<SchoolId>,
    /// For a school (its county), a relay (its county), or a county viewer.
    #[serde(
        rename = "c",
        alias = "county",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub county: Option<CountyCode>,
    /// When it was issued (RFC 3339); informational.
    #[serde(rename = "t", alias = "issued_at")]
    pub issued_at: String,
}

impl Claims {
    /// Checks that the claims are shaped as their role requires.
    pub fn check_shape(&self) -> Result<(), AuthError> {
        let ok = !self.id.is_empty()
            && self.id.len() <= ID_BYTES_MAX
            && match self.role {
                Role::School => self.school.is_some() && self.county.is_some(),
                Role::Relay => self.school.is_none() && self.county.is_some(),
                Role::Viewer => self.school.is_none(),
                Role::Admin => self.school.is_none() && self.county.is_none(),
            };
        if ok {
            Ok(())
        } else {
            Err(AuthError::Invalid("the credential's scope is malformed"))
        }
    }

    /// Whether this credential may push to and pull from `school` (of `county`) by sync.
    /// Viewers and the admin tool never sync.
    pub fn may_sync(&self, school: &SchoolId, county: Option<&CountyCode>) -> bool {
        match self.role {
            Role::School => self.school.as_ref() == Some(school),
            Role::Relay => county.is_some() && self.county.as_ref() == county,
            Role::Viewer | Role::Admin => false,
        }
    }

    /// Whether this credential may read `school`'s data (of `county`) through the read API.
    pub fn may_read(&self, school: &SchoolId, county: Option<&CountyCode>) -> bool {
        match self.role {
            Role::School => self.school.as_ref() == Some(school),
            Role::Relay => county.is_some() && self.county.as_ref() == county,
            Role::Viewer => match &self.county {
                None => true,
                Some(own) => county == Some(own),
            },
            Role::Admin => true,
        }
    }

    /// Whether this credential may read county-wide or city-wide figures of `county` (`None`:
    /// the whole city).
    pub fn may_read_area(&self, county: Option<&CountyCode>) -> bool {
        match self.role {
            Role::School => false,
            Role::Relay => county.is_some() && self.county.as_ref() == county,
            Role::Viewer => self.county.is_none() || self.county.as_ref() == county,
            Role::Admin => true,
        }
    }
}

/// Why a credential was not accepted. Each maps to a stable `code` for the JSON error body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential was sent; this device must be enrolled by the city first")]
    Missing,
    #[error("the credential is not valid: {0}")]
    Invalid(&'static str),
    #[error("the credential {0} has been revoked")]
    Revoked(String),
    #[error("this credential may not {0}")]
    Forbidden(String),
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "credential_missing",
            AuthError::Invalid(_) => "credential_invalid",
            AuthError::Revoked(_) => "credential_revoked",
            AuthError::Forbidden(_) => "forbidden",
        }
    }
}

/// What a node needs to verify credentials: the city's public key and the revoked ids. The city
/// builds it from its own registry; a relay receives it from the city and keeps it on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trust {
    /// The city's Ed25519 public key, base64url.
    pub city_key: String,
    /// Revoked credential ids.
    pub revoked: BTreeSet<String>,
}

impl Trust {
    /// Verifies `token` (signature, shape, revocation) and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let claims = verify_token(&self.city_key, token)?;
        if self.revoked.contains(&claims.id) {
            return Err(AuthError::Revoked(claims.id));
        }
        Ok(claims)
    }
}

/// A credential as handed to a device: the token, and the city's public key (a relay needs it to
/// verify its schools before it has ever reached the city). Written as TOML by the city's
/// enrolment commands; the device keeps it owner-readable only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFile {
    pub token: String,
    pub city_key: String,
}

impl CredentialFile {
    /// The file's text, with a comment saying what it is for.
    pub fn to_text(&self, claims: &Claims) -> String {
        let scope = match (claims.role, &claims.school, &claims.county) {
            (Role::School, Some(s), Some(c)) => format!("school {s} (county {c})"),
            (Role::Relay, _, Some(c)) => format!("the relay of county {c}"),
            (Role::Viewer, _, Some(c)) => format!("a viewer of county {c}"),
            (Role::Viewer, _, None) => "a viewer of the whole city".to_owned(),
            _ => "the city operator".to_owned(),
        };
        format!(
            "# schoolsync credential {id} for {scope}. Keep it secret: it is this device's key.\n\
             # schoolsync 接入凭证，请妥善保管，不要外传。\n\
             token = \"{token}\"\ncity_key = \"{key}\"\n",
            id = claims.id,
            token = self.token,
            key = self.city_key
        )
    }
}

/// The bytes a token's signature covers: the prefix and the encoded claims.
pub fn signed_part(claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    format!("{TOKEN_PREFIX}{}", B64.encode(json))
}

/// Assembles a token from its signed part and the signature over it.
pub fn assemble(signed: &str, signature: &[u8]) -> String {
    format!("{signed}.{}", B64.encode(signature))
}

/// Reads a token's claims WITHOUT verifying the signature: for a device checking that the
/// credential it was handed is for it. Never use the result to grant anything.
pub fn peek_claims(token: &str) -> Result<Claims, AuthError> {
    let (claims, _, _) = split(token)?;
    Ok(claims)
}

fn split(token: &str) -> Result<(Claims, &str, Vec<u8>), AuthError> {
    let token = token.trim();
    if token.len() > TOKEN_BYTES_MAX {
        return Err(AuthError::Invalid("too long"));
    }
    let rest = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(AuthError::Invalid("not a schoolsync credential"))?;
    let (claims_b64, sig_b64) = rest
        .split_once('.')
        .ok_or(AuthError::Invalid("not a schoolsync credential"))?;
    let json = B64
        .decode(claims_b64)
        .map_err(|_| AuthError::Invalid("damaged"))?;
    let claims: Claims =
        serde_json::from_slice(&json).map_err(|_| AuthError::Invalid("damaged"))?;
    claims.check_shape()?;
    let signature = B64
        .decode(sig_b64)
        .map_err(|_| AuthError::Invalid("damaged"))?;
    let signed = &token[..TOKEN_PREFIX.len() + claims_b64.len()];
    Ok((claims, signed, signature))
}

/// Verifies a token's signature against the city key (base64url) and returns its claims.
pub fn verify_token(city_key: &str, token: &str) -> Result<Claims, AuthError> {
    let (claims, signed, signature) = split(token)?;
    let key = B64
        .decode(city_key)
        .map_err(|_| AuthError::Invalid("this server has no usable city key"))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| AuthError::Invalid("not signed by this deployment's city"))?;
    Ok(claims)
}

/// Base64url without padding, as tokens and keys are written.
pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair;

    fn keypair() -> ring::signature::Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn issue(key: &ring::signature::Ed25519KeyPair, claims: &Claims) -> String {
        let signed = signed_part(claims);
        assemble(&signed, key.sign(signed.as_bytes()).as_ref())
    }

    fn school_claims() -> Claims {
        Claims {
            id: "s-0001".into(),
            role: Role::School,
            school: Some("2113000001".parse().unwrap()),
            county: Some("130821".parse().unwrap()),
            issued_at: "2026-11-29T00:00:00Z".into(),
        }
    }

    #[test]
    fn tokens_verify_only_with_the_city_key_and_unaltered() {
        let city = keypair();
        let other = keypair();
        let trust = Trust {
            city_key: b64(city.public_key().as_ref()),
            revoked: BTreeSet::new(),
        };
        let token = issue(&city, &school_claims());
        assert_eq!(trust.verify(&token).unwrap(), school_claims());
        assert_eq!(peek_claims(&token).unwrap(), school_claims());
        // Signed by another key.
        let forged = issue(&other, &school_claims());
        assert_eq!(
            trust.verify(&forged).unwrap_err().code(),
            "credential_invalid"
        );
        // Claims swapped for another school's, signature kept.
        let mut claims = school_claims();
        claims.school = Some("2113000002".parse().unwrap());
        let (_, sig) = token.rsplit_once('.').unwrap();
        let tampered = format!("{}.{sig}", signed_part(&claims));
        assert_eq!(
            trust.verify(&tampered).unwrap_err().code(),
            "credential_invalid"
        );
        for junk in ["", "ssc1.", "ssc1.a.b", "Bearer x", &"x".repeat(5000)] {
            assert_eq!(trust.verify(junk).unwrap_err().code(), "credential_invalid");
        }
        let mut revoked = trust.clone();
        revoked.revoked.insert("s-0001".into());
        assert_eq!(
            revoked.verify(&token).unwrap_err().code(),
            "credential_revoked"
        );
    }

    #[test]
    fn scope_follows_the_role() {
        let own: SchoolId = "2113000001".parse().unwrap();
        let other: SchoolId = "2113000002".parse().unwrap();
        let county: CountyCode = "130821".parse().unwrap();
        let far: CountyCode = "130822".parse().unwrap();
        let school = school_claims();
        assert!(school.may_sync(&own, Some(&county)));
        assert!(!school.may_sync(&other, Some(&county)));
        assert!(!school.may_read_area(Some(&county)));
        let relay = Claims {
            id: "r-1".into(),
            role: Role::Relay,
            school: None,
            county: Some(county.clone()),
            issued_at: String::new(),
        };
        assert!(relay.may_sync(&other, Some(&county)));
        assert!(!relay.may_sync(&other, Some(&far)));
        assert!(!relay.may_sync(&other, None));
        let viewer = Claims {
            id: "v-1".into(),
            role: Role::Viewer,
            school: None,
            county: Some(far.clone()),
            issued_at: String::new(),
        };
        assert!(!viewer.may_sync(&own, Some(&far)));
        assert!(viewer.may_read(&own, Some(&far)));
        assert!(!viewer.may_read(&own, Some(&county)));
        assert!(viewer.may_read_area(Some(&far)));
        assert!(!viewer.may_read_area(None));
        let city_viewer = Claims {
            county: None,
            ..viewer
        };
        assert!(city_viewer.may_read_area(None) && city_viewer.may_read(&own, None));
    }
}
