//! The city operator's enrolment commands (`enroll-school`, `enroll-relay`, `issue-viewer`,
//! `revoke`, `credentials`). While the city runs they go **through it** (HTTPS on its own port,
//! with the admin credential the city wrote to its data directory), so they never fight the
//! server over its store lock; when it is not running they open the store directly.

use std::path::{Path, PathBuf};
use std::time::Duration;

use schoolsync_protocol::auth::{Claims, CredentialFile, Role};
use schoolsync_store::DocStore;

use crate::api::{parse_issue, IssueRequest};
use crate::auth::{Authority, CredRecord, ADMIN_CREDENTIAL_FILE};

/// How long an admin command waits for the running city.
pub const ADMIN_TIMEOUT_MS: u64 = 15_000;

/// One admin action.
#[derive(Debug)]
pub enum Action {
    Issue(IssueRequest),
    Revoke(String),
    List,
}

/// What an action produced.
#[derive(Debug)]
pub enum Outcome {
    Issued { claims: Claims, file: String },
    Revoked(CredRecord),
    Listed(Vec<CredRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Refused(String),
    #[error("the city at {url} did not answer ({detail}), and its store is in use, so it cannot be opened directly")]
    Unreachable { url: String, detail: String },
    #[error("{0}")]
    Other(String),
}

/// Where the running city is and how to trust it.
pub struct Target {
    pub data_dir: PathBuf,
    /// e.g. `https://localhost:8443`.
    pub url: String,
    pub ca_pem: Option<Vec<u8>>,
}

/// Runs `action` through the running city, or directly on its store when it is not running.
pub fn run(target: &Target, action: Action) -> Result<Outcome, AdminError> {
    let credential = std::fs::read_to_string(target.data_dir.join(ADMIN_CREDENTIAL_FILE))
        .ok()
        .and_then(|t| toml::from_str::<CredentialFile>(&t).ok());
    if let Some(credential) = credential {
        match through_server(target, &credential.token, &action) {
            Ok(outcome) => return Ok(outcome),
            Err(Through::Refused(message)) => return Err(AdminError::Refused(message)),
            Err(Through::NotRunning(detail)) => {
                return direct(&target.data_dir, action).map_err(|e| match e {
                    AdminError::Other(m) if m.contains("in use") => AdminError::Unreachable {
                        url: target.url.clone(),
                        detail,
                    },
                    other => other,
                })
            }
        }
    }
    direct(&target.data_dir, action)
}

enum Through {
    Refused(String),
    NotRunning(String),
}

fn through_server(target: &Target, token: &str, action: &Action) -> Result<Outcome, Through> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Through::NotRunning(e.to_string()))?;
    runtime.block_on(async {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_millis(ADMIN_TIMEOUT_MS));
        if let Some(pem) = &target.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Through::Refused(format!("the CA certificate is not usable: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Through::Refused(e.to_string()))?;
        let json = |value: serde_json::Value| serde_json::to_vec(&value).unwrap_or_default();
        let request = match action {
            Action::Issue(issue) => http
                .post(format!("{}/v1/admin/credentials", target.url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json(serde_json::json!({
                    "role": issue.role, "school": issue.school, "county": issue.county,
                }))),
            Action::Revoke(id) => http
                .post(format!("{}/v1/admin/revoke", target.url))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json(serde_json::json!({ "id": id }))),
            Action::List => http.get(format!("{}/v1/admin/credentials", target.url)),
        };
        let response = request.bearer_auth(token).send().await.map_err(|e| {
            if e.is_connect() {
                Through::NotRunning(e.to_string())
            } else {
                Through::Refused(format!("the city at {} failed: {e}", target.url))
            }
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Through::Refused(e.to_string()))?;
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Through::Refused(format!("the city's answer is not JSON: {e}")))?;
        if !status.is_success() {
            return Err(Through::Refused(
                body["message"].as_str().unwrap_or("refused").to_owned(),
            ));
        }
        let bad = |e: serde_json::Error| Through::Refused(e.to_string());
        Ok(match action {
            Action::Issue(_) => Outcome::Issued {
                claims: serde_json::from_value(body["claims"].clone()).map_err(bad)?,
                file: body["file"].as_str().unwrap_or_default().to_owned(),
            },
            Action::Revoke(_) => Outcome::Revoked(serde_json::from_value(body).map_err(bad)?),
            Action::List => Outcome::Listed(serde_json::from_value(body).map_err(bad)?),
        })
    })
}

fn direct(data_dir: &Path, action: Action) -> Result<Outcome, AdminError> {
    let store = DocStore::open(&data_dir.join("store")).map_err(|e| {
        AdminError::Other(format!(
            "cannot open the city's store in {} ({e}); if the city is running it is in use",
            data_dir.display()
        ))
    })?;
    let authority = Authority::open(data_dir).map_err(|e| AdminError::Other(e.to_string()))?;
    let now = crate::now_ms();
    match action {
        Action::Issue(request) => {
            let (role, school, county) =
                parse_issue(&request).map_err(|e| AdminError::Refused(e.message))?;
            let (claims, file) = authority
                .issue(&store, role, school, county, now)
                .map_err(|e| AdminError::Refused(e.to_string()))?;
            let file = file.to_text(&claims);
            Ok(Outcome::Issued { claims, file })
        }
        Action::Revoke(id) => authority
            .revoke(&store, &id, now)
            .map_err(|e| AdminError::Other(e.to_string()))?
            .map(Outcome::Revoked)
            .ok_or_else(|| AdminError::Refused(format!("no credential has the id {id}"))),
        Action::List => Authority::list(&store)
            .map(Outcome::Listed)
            .map_err(|e| AdminError::Other(e.to_string())),
    }
}

/// The default file name for a credential: `school-2113000001.credential` etc.
pub fn default_file_name(claims: &Claims) -> String {
    match (claims.role, &claims.school, &claims.county) {
        (Role::School, Some(s), _) => format!("school-{s}-{}.credential", claims.id),
        (Role::Relay, _, Some(c)) => format!("relay-{c}-{}.credential", claims.id),
        (Role::Viewer, _, Some(c)) => format!("viewer-{c}-{}.credential", claims.id),
        _ => format!("viewer-city-{}.credential", claims.id),
    }
}
