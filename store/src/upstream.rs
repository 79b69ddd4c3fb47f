//! The network side of syncing towards an upstream: HTTPS (rustls, a private CA) carrying the
//! wire messages of `schoolsync_protocol::sync`, and the round loop that drives a [`Replica`].
//!
//! Errors are classified for people: "the county server did not answer" rather than "error
//! sending request".

use std::collections::BTreeSet;
use std::time::Duration;

use schoolsync_protocol::ids::SchoolId;
use schoolsync_protocol::sync::{self, SyncRequest, SyncResponse, WireError, CONTENT_TYPE};
use schoolsync_protocol::Lang;

use crate::docs::StoreError;
use crate::replica::{Absorbed, Replica};

/// How long to wait for a TCP+TLS connection: rural links are slow but not this slow.
pub const CONNECT_TIMEOUT_MS: u64 = 10_000;
/// How long one round may take: a page at 64 kbit/s is ~20 s. `SCHOOLSYNC_REQUEST_TIMEOUT_MS`
/// overrides it (tests of stalled links use a few seconds).
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;

fn request_timeout_ms() -> u64 {
    std::env::var("SCHOOLSYNC_REQUEST_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REQUEST_TIMEOUT_MS)
}
/// Rounds in one sync before giving up: a term is a few dozen pages; more means a loop.
pub const ROUNDS_MAX: usize = 10_000;

/// Why a sync failed, in terms a clerk can act on.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the upstream server at {url} did not answer ({detail})")]
    Unreachable {
        url: String,
        detail: String,
        /// The connection itself failed, so no request reached the server.
        at_connect: bool,
    },
    #[error("the upstream server at {url} could not be verified: {detail}")]
    Certificate { url: String, detail: String },
    #[error("the upstream server refused the request ({status}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the upstream server sent a reply this program cannot read: {0}")]
    Protocol(#[from] WireError),
    #[error("the CA certificate is not usable: {0}")]
    BadCa(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sync did not finish after {ROUNDS_MAX} rounds")]
    NoProgress,
    #[error("the upstream server sent damaged data for {doc}: {reason}")]
    BadData { doc: String, reason: String },
}

impl LinkError {
    /// Whether a request may have reached the upstream and been committed before the failure
    /// (so `acked` may lag and the next sync should probe first).
    pub fn maybe_delivered(&self) -> bool {
        match self {
            LinkError::Unreachable { at_connect, .. } => !at_connect,
            LinkError::Certificate { .. } | LinkError::Refused { .. } | LinkError::BadCa(_) => {
                false
            }
            LinkError::Protocol(_)
            | LinkError::Store(_)
            | LinkError::NoProgress
            | LinkError::BadData { .. } => true,
        }
    }

    /// The error in the clerk's language, with what to do.
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (LinkError::Unreachable { url, .. }, Lang::Zh) => {
                format!("上级服务器（{url}）没有响应。请检查网络连接；数据已保存在本机，联网后会自动补传。")
            }
            (LinkError::Unreachable { url, .. }, Lang::En) => format!(
                "the upstream server ({url}) did not answer. Check the network; your data is saved here and will be sent when the link is back."
            ),
            (LinkError::Certificate { url, .. }, Lang::Zh) => {
                format!("无法验证上级服务器（{url}）的证书。请联系县教育局确认证书文件（--ca）。")
            }
            (LinkError::Refused { code, .. }, Lang::Zh) if code == "credential_missing" => {
                "本机还没有接入凭证。请向县教育局索取凭证文件，然后运行 schoolsync-agent enroll <文件>。".to_owned()
            }
            (LinkError::Refused { code, .. }, Lang::En) if code == "credential_missing" => {
                "this computer has no credential yet. Ask the county bureau for a credential file, then run schoolsync-agent enroll <file>.".to_owned()
            }
            (LinkError::Refused { code, .. }, Lang::Zh) if code == "credential_revoked" => {
                "本机的接入凭证已被吊销，无法上传。数据仍保存在本机；请联系县教育局重新办理凭证。".to_owned()
            }
            (LinkError::Refused { code, .. }, Lang::En) if code == "credential_revoked" => {
                "this computer's credential has been revoked, so nothing can be sent. Your data stays here; ask the county bureau for a new credential.".to_owned()
            }
            (LinkError::Refused { code, .. }, Lang::Zh) if code == "credential_invalid" => {
                "本机的接入凭证无效（可能已损坏或不属于本系统）。请联系县教育局重新办理。".to_owned()
            }
            (LinkError::Refused { code, message, .. }, Lang::Zh) if code == "forbidden" => {
                format!("上级服务器拒绝：本机凭证无权操作该数据（{message}）。请确认学校代码和所属县区。")
            }
            (LinkError::Refused { code, .. }, Lang::Zh) if code == "rate_limited" => {
                "上级服务器繁忙，请稍后再试；数据已保存在本机。".to_owned()
            }
            (LinkError::Refused { message, .. }, Lang::Zh) => format!("上级服务器拒绝了请求：{message}"),
            (LinkError::Protocol(_), Lang::Zh) => "上级服务器的程序版本与本机不兼容，请联系县教育局升级。".to_owned(),
            (LinkError::Store(e), Lang::Zh) => format!("本机数据存储出错：{e}"),
            (other, _) => other.to_string(),
        }
    }
}

/// An HTTPS client for one upstream URL.
#[derive(Clone)]
pub struct Upstream {
    pub url: String,
    http: reqwest::Client,
    /// This device's credential token, sent as `Authorization: Bearer`.
    credential: Option<String>,
}

impl Upstream {
    /// A client trusting only `ca_pem` (the deployment's private CA); `None` trusts nothing, so
    /// every HTTPS connection fails verification (useful only against a missing CA).
    pub fn new(url: &str, ca_pem: Option<&[u8]>) -> Result<Upstream, LinkError> {
        Upstream::with_identity(url, ca_pem, None)
    }

    /// The same, presenting a client certificate (PEM: certificate chain then private key) for
    /// mutual TLS: a relay towards a city that asks for one.
    pub fn with_identity(
        url: &str,
        ca_pem: Option<&[u8]>,
        identity_pem: Option<&[u8]>,
    ) -> Result<Upstream, LinkError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .timeout(Duration::from_millis(request_timeout_ms()))
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| LinkError::BadCa(e.to_string()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some(pem) = identity_pem {
            builder = builder.identity(
                reqwest::Identity::from_pem(pem).map_err(|e| LinkError::BadCa(e.to_string()))?,
            );
        }
        let http = builder
            .build()
            .map_err(|e| LinkError::BadCa(e.to_string()))?;
        Ok(Upstream {
            url: url.trim_end_matches('/').to_owned(),
            http,
            credential: None,
        })
    }

    /// The same upstream, presenting `token` (this device's credential) on every request.
    pub fn with_credential(mut self, token: &str) -> Upstream {
        self.credential = Some(token.trim().to_owned());
        self
    }

    fn authorise(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Tells the upstream what this tier holds of its schools (see `protocol::holdings`).
    pub async fn post_holdings(
        &self,
        reports: &[schoolsync_protocol::holdings::Holdings],
    ) -> Result<(), LinkError> {
        let request = self
            .http
            .post(format!("{}/v1/holdings", self.url))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(reports).unwrap_or_default());
        self.send(request).await.map(|_| ())
    }

    /// Sends an authorised request; the body of a success, a [`LinkError::Refused`] otherwise.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>, LinkError> {
        let response = self
            .authorise(request)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.classify(e))?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// Fetches the city's key and revocation list (a relay's view of who may sync).
    pub async fn fetch_trust(&self) -> Result<schoolsync_protocol::auth::Trust, LinkError> {
        let bytes = self
            .send(self.http.get(format!("{}/v1/trust", self.url)))
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| LinkError::BadData {
            doc: "trust".to_owned(),
            reason: e.to_string(),
        })
    }

    /// One round trip.
    pub async fn round(
        &self,
        request: &SyncRequest,
    ) -> Result<(SyncResponse, usize, usize), LinkError> {
        let body = sync::encode(request);
        let sent = body.len();
        let request = self
            .http
            .post(format!("{}/v1/sync", self.url))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body);
        let bytes = self.send(request).await?;
        Ok((sync::decode(&bytes)?, sent, bytes.len()))
    }

    fn classify(&self, e: reqwest::Error) -> LinkError {
        let detail = format!("{e:?}");
        if detail.contains("certificate")
            || detail.contains("Certificate")
            || detail.contains("UnknownIssuer")
        {
            LinkError::Certificate {
                url: self.url.clone(),
                detail,
            }
        } else {
            LinkError::Unreachable {
                url: self.url.clone(),
                detail: e.to_string(),
                at_connect: e.is_connect(),
            }
        }
    }
}

/// A refusal from its JSON body `{code, message}`.
fn refusal(status: u16, body: &[u8]) -> LinkError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    LinkError::Refused {
        status,
        code: field("code"),
        message: field("message"),
    }
}

/// Figures of one finished sync.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncSummary {
    pub rounds: usize,
    pub documents_sent: usize,
    pub changes_up: usize,
    pub changes_down: usize,
    pub bytes_up: usize,
    pub bytes_down: usize,
    pub refused: Vec<(String, String)>,
}

/// Syncs `schools` with the upstream until both sides hold the same heads. `progress` is told
/// each round's summary so far. Every round's reply is durably absorbed before the next starts.
/// `probe_first` (after an interrupted sync) starts with a round that pushes nothing, so `acked`
/// catches up with what the upstream committed before the cut.
pub async fn sync_schools(
    upstream: &Upstream,
    replica: &Replica<'_>,
    schools: &[SchoolId],
    probe_first: bool,
    progress: &mut (dyn FnMut(&SyncSummary) + Send),
) -> Result<SyncSummary, LinkError> {
    let mut summary = SyncSummary::default();
    let mut pulls = BTreeSet::new();
    let mut active: Vec<SchoolId> = schools.to_vec();
    while summary.rounds < ROUNDS_MAX {
        let push = !(probe_first && summary.rounds == 0);
        let request = replica.build(&active, &pulls, push)?;
        summary.documents_sent += request.schools.iter().map(|s| s.docs.len()).sum::<usize>();
        summary.changes_up += request
            .schools
            .iter()
            .flat_map(|s| &s.docs)
            .map(|d| d.changes.len() + usize::from(d.snapshot.is_some()))
            .sum::<usize>();
        let (response, up, down) = upstream.round(&request).await?;
        summary.rounds += 1;
        summary.bytes_up += up;
        summary.bytes_down += down;
        let Absorbed {
            pulls: next,
            changes_down,
            in_sync,
            refused,
            bad,
        } = replica.absorb(&request, response)?;
        if let Some((doc, reason)) = bad.into_iter().next() {
            return Err(LinkError::BadData {
                doc: doc.to_string(),
                reason,
            });
        }
        summary.changes_down += changes_down;
        for (school, refusal) in refused {
            active.retain(|s| *s != school);
            summary.refused.push((school.to_string(), refusal.message));
        }
        progress(&summary);
        pulls = next;
        if in_sync || active.is_empty() {
            return Ok(summary);
        }
    }
    Err(LinkError::NoProgress)
}
