//! HTTP endpoints. Every request but `/v1/health` carries a credential (`Authorization: Bearer
//! <token>`, see `schoolsync_protocol::auth`), is held to its scope and rate-limited per
//! credential. Every error is a 4xx/5xx with a JSON body `{code, message}`; the server stays up
//! whatever the input, and a refused request changes nothing.
//!
//! - `GET  /v1/health`: liveness, role, county.
//! - `POST /v1/sync`: the wire protocol (schools and relays).
//! - `GET  /v1/trust`: the city key and revoked credential ids (relays fetch it from the city).
//! - `POST /v1/admin/credentials`, `GET /v1/admin/credentials`, `POST /v1/admin/revoke`: the
//!   city operator's enrolment and revocation (admin credential only; city only).
//! - `GET  /api/v1/schools`, `GET /api/v1/schools/{school}`: what this node holds, within the
//!   reader's scope (viewers, relays, schools).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use schoolsync_protocol::auth::{AuthError, Claims, Role};
use schoolsync_protocol::ids::{CountyCode, CountyTable, SchoolId};
use schoolsync_protocol::sync::{decode, encode, SyncRequest, CONTENT_TYPE};
use serde::Deserialize;

use crate::auth::{Authority, Gate};
use crate::http::PeerCertificate;
use crate::node::Node;

/// Largest request body accepted (compressed): a page is 64 KiB; whole month documents pushed
/// on a first sync are a few hundred KiB.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// A request body must arrive within this (slow senders hold a connection and its memory): a
/// first sync's few hundred KiB at 64 kbit/s takes about a minute.
pub const BODY_TIMEOUT_MS: u64 = 120_000;
/// Largest JSON body of the admin endpoints.
pub const ADMIN_BODY_BYTES_MAX: usize = 16 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    /// Woken after a round committed something new (a relay forwards it upstream soon).
    pub committed: Arc<tokio::sync::Notify>,
    pub gate: Arc<Gate>,
    /// The city's signing authority (`None` on a relay).
    pub authority: Option<Arc<Authority>>,
    pub body_timeout_ms: u64,
    /// Mutual TLS: relays must present a client certificate (the city's `client_ca`).
    pub relay_client_cert_required: bool,
    /// Woken after a commit: the oversight indexer brings the figures up to date.
    pub index_signal: Arc<tokio::sync::Notify>,
    pub oversight: Arc<crate::oversight::http::OversightConfig>,
}

/// An error answer: status plus `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: std::borrow::Cow<'static, str>,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub(crate) fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request could not be processed; try again later",
        )
    }

    pub(crate) fn store() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the server could not read or store the data; try again later",
        )
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let status = match e {
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code.as_ref(), "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/sync", post(sync))
        .route("/v1/trust", get(trust))
        .route("/v1/admin/credentials", post(admin_issue).get(admin_list))
        .route("/v1/admin/revoke", post(admin_revoke))
        .route("/api/v1/schools", get(schools))
        .route("/api/v1/schools/{school}", get(school))
        .merge(crate::oversight::http::routes())
        .merge(crate::oversight::dashboard::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let county = match &state.node.role {
        crate::node::Role::Relay { county } => Some(county.to_string()),
        crate::node::Role::City => None,
    };
    Json(serde_json::json!({ "status": "ok", "role": state.node.role.name(), "county": county }))
}

/// Holds a relay to its client certificate when the node asks for mutual TLS.
fn require_relay_certificate(
    state: &AppState,
    claims: &Claims,
    peer: Option<Extension<PeerCertificate>>,
) -> Result<(), ApiError> {
    let presented = peer.is_some_and(|Extension(PeerCertificate(p))| p);
    if claims.role == Role::Relay && state.relay_client_cert_required && !presented {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "client_certificate_required",
            "this city requires relays to present their client certificate (mutual TLS)",
        ));
    }
    Ok(())
}

/// The request's verified credential, within its rate.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    authenticate_with(state, headers, false)
}

/// Name of the cookie the dashboard keeps a viewer's token in (HttpOnly, SameSite=Strict).
pub const TOKEN_COOKIE: &str = "schoolsync_token";

/// The credential from `Authorization: Bearer`, or (reads only: `cookie`) from the dashboard's
/// cookie.
pub(crate) fn authenticate_with(
    state: &AppState,
    headers: &HeaderMap,
    cookie: bool,
) -> Result<Claims, ApiError> {
    let from_cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{TOKEN_COOKIE}="))
                    .map(str::to_owned)
            })
    };
    let token = match headers.get(header::AUTHORIZATION) {
        None if cookie => from_cookie(),
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned)
                .ok_or(AuthError::Invalid(
                    "the Authorization header is not \"Bearer <token>\"",
                ))?,
        ),
    };
    let claims = state.gate.verify(token.as_deref())?;
    if !state.gate.admit(&claims, Instant::now()) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this credential; wait a moment and try again",
        ));
    }
    Ok(claims)
}

pub(crate) fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bare = content_type.split(';').next().unwrap_or("").trim();
    if bare.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!("expected content type {expected}"),
        ))
    }
}

/// Reads a body within `limit` bytes and the state's body timeout.
pub(crate) async fn read_body(
    state: &AppState,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let read = axum::body::to_bytes(body, limit);
    match tokio::time::timeout(Duration::from_millis(state.body_timeout_ms), read).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )),
        Ok(Err(e)) => {
            // axum wraps http-body's LengthLimitError; its text is the stable part.
            let mut too_large = false;
            let mut cause: Option<&dyn std::error::Error> = Some(&e);
            while let Some(c) = cause {
                too_large |= c.to_string().contains("length limit");
                cause = c.source();
            }
            if too_large {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the request body is larger than {limit} bytes"),
                ))
            } else {
                Err(ApiError::bad(
                    "body_incomplete",
                    "the request body was cut off",
                ))
            }
        }
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal())?
}

async fn sync(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers)?;
    require_relay_certificate(&state, &claims, peer)?;
    if !matches!(claims.role, Role::School | Role::Relay) {
        return Err(AuthError::Forbidden("sync: only schools and relays sync".into()).into());
    }
    require_content_type(&headers, CONTENT_TYPE)?;
    let body = read_body(&state, body, BODY_BYTES_MAX).await?;
    let request: SyncRequest = decode(&body).map_err(|e| {
        let status = match e {
            schoolsync_protocol::sync::WireError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.code(), e.to_string())
    })?;
    state
        .node
        .check(&request)
        .map_err(|e| ApiError::bad(e.code(), e.to_string()))?;
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let (response, new_changes) = blocking(move || {
        // Scope first, for every school: one out-of-scope school refuses the whole request.
        let mut counties = BTreeMap::new();
        for school in &request.schools {
            gate.may_sync(&node.store, &claims, &school.school)
                .map_err(|_| ApiError::store())??;
            if let Some(c) = gate
                .county_of(&node.store, &school.school)
                .map_err(|_| ApiError::store())?
            {
                counties.insert(school.school.clone(), c);
            }
        }
        node.serve_sync(&request, &counties).map_err(|e| {
            tracing::error!(error = %e, "sync failed");
            ApiError::store()
        })
    })
    .await?;
    if new_changes > 0 {
        state.committed.notify_one();
        state.index_signal.notify_one();
    }
    // Every school refused (a single school's corrupt or rule-breaking data, typically): answer
    // with the reason as an error, so a plain client sees a 4xx. With some schools accepted the
    // reply carries per-school refusals instead, so one school cannot hold up a relay's county.
    if !response.schools.is_empty() && response.schools.iter().all(|s| s.refused.is_some()) {
        if let Some(refusal) = response.schools.iter().find_map(|s| s.refused.as_ref()) {
            let status = match refusal.code.as_str() {
                "record_invalid" => StatusCode::UNPROCESSABLE_ENTITY,
                "document_damaged" => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            return Err(ApiError {
                status,
                code: refusal.code.clone().into(),
                message: refusal.message.clone(),
            });
        }
    }
    tracing::debug!(new_changes, "sync round served");
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&response)).into_response())
}

async fn trust(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers)?;
    require_relay_certificate(&state, &claims, peer)?;
    if !matches!(claims.role, Role::Relay | Role::Admin) {
        return Err(AuthError::Forbidden("read the revocation list".into()).into());
    }
    Ok(Json(state.gate.trust()).into_response())
}

/// The city's authority, for an admin credential.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Authority>, ApiError> {
    let claims = authenticate(state, headers)?;
    if claims.role != Role::Admin {
        return Err(AuthError::Forbidden("use the city's admin endpoints".into()).into());
    }
    state.authority.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_city",
            "credentials are issued by the city server, not by a relay",
        )
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad("malformed_json", e.to_string()))
}

/// What `POST /v1/admin/credentials` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    pub role: Role,
    #[serde(default)]
    pub school: Option<String>,
    #[serde(default)]
    pub county: Option<String>,
}

/// Validates an issue request into typed ids.
pub fn parse_issue(
    request: &IssueRequest,
) -> Result<(Role, Option<SchoolId>, Option<CountyCode>), ApiError> {
    let school = match &request.school {
        Some(s) => Some(
            SchoolId::parse_in(s, Some(schoolsync_protocol::ids::PROVINCE_HEBEI))
                .map_err(|e| ApiError::bad("bad_school", e.to_string()))?,
        ),
        None => None,
    };
    let county = match &request.county {
        Some(c) => Some(
            CountyTable::default()
                .parse(c)
                .map_err(|e| ApiError::bad("bad_county", e.to_string()))?,
        ),
        None => None,
    };
    if request.role == Role::Admin {
        return Err(ApiError::bad(
            "bad_role",
            "admin credentials are made by the city itself",
        ));
    }
    Ok((request.role, school, county))
}

async fn admin_issue(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let authority = admin(&state, &headers)?;
    require_content_type(&headers, "application/json")?;
    let body = read_body(&state, body, ADMIN_BODY_BYTES_MAX).await?;
    let request: IssueRequest = parse_json(&body)?;
    let (role, school, county) = parse_issue(&request)?;
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let (claims, file) = blocking(move || {
        let issued = authority
            .issue(&node.store, role, school.clone(), county, crate::now_ms())
            .map_err(|e| match e {
                crate::auth::AuthorityError::Refused(m) => ApiError::bad("refused", m),
                crate::auth::AuthorityError::Store(_) => ApiError::store(),
                _ => ApiError::internal(),
            })?;
        if let Some(school) = &school {
            gate.forget(school);
        }
        Ok(issued)
    })
    .await?;
    tracing::info!(id = %claims.id, role = claims.role.name(), "credential issued");
    Ok(Json(serde_json::json!({
        "claims": claims,
        "file": file.to_text(&claims),
    }))
    .into_response())
}

async fn admin_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin(&state, &headers)?;
    let node = state.node.clone();
    let list =
        blocking(move || Authority::list(&node.store).map_err(|_| ApiError::store())).await?;
    Ok(Json(list).into_response())
}

/// What `POST /v1/admin/revoke` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    id: String,
}

async fn admin_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let authority = admin(&state, &headers)?;
    require_content_type(&headers, "application/json")?;
    let body = read_body(&state, body, ADMIN_BODY_BYTES_MAX).await?;
    let request: RevokeRequest = parse_json(&body)?;
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let record = blocking(move || {
        let record = authority
            .revoke(&node.store, &request.id, crate::now_ms())
            .map_err(|_| ApiError::store())?;
        gate.set_trust(
            authority
                .trust(&node.store)
                .map_err(|_| ApiError::store())?,
        );
        record.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_credential",
                "no credential has that id",
            )
        })
    })
    .await?;
    tracing::info!(id = %record.claims.id, "credential revoked");
    Ok(Json(record).into_response())
}

/// The schools this node holds that `claims` may read, with their county and document count.
async fn schools(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers)?;
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let list = blocking(move || {
        let mut per_school: BTreeMap<SchoolId, usize> = BTreeMap::new();
        for id in node.store.doc_ids().map_err(|_| ApiError::store())? {
            *per_school.entry(id.school).or_default() += 1;
        }
        let mut out = Vec::new();
        for (school, documents) in per_school {
            let county = gate
                .county_of(&node.store, &school)
                .map_err(|_| ApiError::store())?;
            if claims.may_read(&school, county.as_ref()) {
                out.push(serde_json::json!({
                    "school": school, "county": county, "documents": documents,
                }));
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(list).into_response())
}

/// One school's documents and record counts, within the reader's scope.
async fn school(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(school): Path<String>,
) -> Result<Response, ApiError> {
    let claims = authenticate(&state, &headers)?;
    let school: SchoolId = school
        .parse()
        .map_err(|e: schoolsync_protocol::HardError| ApiError::bad("bad_school", e.to_string()))?;
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let detail = blocking(move || {
        let county = gate
            .county_of(&node.store, &school)
            .map_err(|_| ApiError::store())?;
        if !claims.may_read(&school, county.as_ref()) {
            return Err(AuthError::Forbidden(format!(
                "read school {school} (credential {} is for {})",
                claims.id,
                crate::auth::scope_words(&claims)
            ))
            .into());
        }
        let index = node
            .store
            .index(&format!("{school}/"))
            .map_err(|_| ApiError::store())?;
        if index.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_school",
                format!("this server holds nothing of school {school}"),
            ));
        }
        let mut months = serde_json::Map::new();
        let ids: Vec<_> = index.into_iter().map(|(id, _)| id).collect();
        let counted = node
            .with_docs(|store, cache| -> Result<_, ApiError> {
                let mut out = Vec::new();
                for id in &ids {
                    if let schoolsync_protocol::ids::DocKind::Records(_) = id.kind {
                        let loaded = cache.take(store, id).map_err(|_| ApiError::store())?;
                        let records = schoolsync_protocol::doc::read_month(&loaded.doc)
                            .map_err(|_| ApiError::internal())?;
                        out.push((id.to_string(), records));
                        cache.put(loaded);
                    }
                }
                Ok(out)
            })
            .map_err(|_| ApiError::internal())??;
        for (id, records) in counted {
            months.insert(
                id,
                serde_json::json!({
                    "attendance": records.attendance.len(),
                    "homework": records.homework.len(),
                    "afterschool": records.afterschool.len(),
                }),
            );
        }
        Ok(serde_json::json!({ "school": school, "county": county, "documents": months }))
    })
    .await?;
    Ok(Json(detail).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use schoolsync_protocol::sync::{SyncResponse, WIRE_VERSION};
    use tower::ServiceExt;

    /// A city router and a school credential's token.
    fn app() -> (Router, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = schoolsync_store::DocStore::open(&dir.path().join("store")).unwrap();
        let authority = Authority::open(dir.path()).unwrap();
        let (_, file) = authority
            .issue(
                &store,
                Role::School,
                Some("2113000001".parse().unwrap()),
                Some("130821".parse().unwrap()),
                0,
            )
            .unwrap();
        let state = AppState {
            gate: Arc::new(Gate::new(None, authority.trust(&store).unwrap())),
            node: Arc::new(Node::new(crate::node::Role::City, store)),
            committed: Arc::new(tokio::sync::Notify::new()),
            authority: Some(Arc::new(authority)),
            body_timeout_ms: 1_000,
            relay_client_cert_required: false,
            index_signal: Arc::new(tokio::sync::Notify::new()),
            oversight: Default::default(),
        };
        (router(state), file.token, dir)
    }

    async fn call(
        app: &Router,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Vec<u8>) {
        let request = Request::post("/v1/sync")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, bytes.to_vec())
    }

    fn code(body: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        v["code"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn incompatible_or_malformed_peers_get_clear_json_errors() {
        let (app, token, _dir) = app();
        let good = encode(&SyncRequest::default());
        let mut newer = good.clone();
        newer[4..6].copy_from_slice(&(WIRE_VERSION + 1).to_be_bytes());
        let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
            (
                "application/json",
                good.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "wrong_content_type",
            ),
            (
                CONTENT_TYPE,
                newer,
                StatusCode::BAD_REQUEST,
                "unsupported_version",
            ),
            (
                CONTENT_TYPE,
                b"{\"hello\": 1}".to_vec(),
                StatusCode::BAD_REQUEST,
                "not_schoolsync",
            ),
            (
                CONTENT_TYPE,
                good[..6].to_vec(),
                StatusCode::BAD_REQUEST,
                "not_schoolsync",
            ),
            (
                CONTENT_TYPE,
                [&good[..7], &[0xff, 0xff, 0xff]].concat(),
                StatusCode::BAD_REQUEST,
                "malformed",
            ),
        ];
        for (content_type, body, status, expected) in cases {
            let (got, bytes) = call(&app, &token, content_type, body).await;
            assert_eq!((got, code(&bytes).as_str()), (status, expected));
        }
        // The server still answers a good request.
        let (status, bytes) = call(&app, &token, CONTENT_TYPE, good.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            decode::<SyncResponse>(&bytes).unwrap(),
            SyncResponse::default()
        );
        let response = app
            .clone()
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        // No credential, or a forged one: refused before the body is read.
        let (status, bytes) = call(&app, "ssc1.x.y", CONTENT_TYPE, good.clone()).await;
        assert_eq!(
            (status, code(&bytes).as_str()),
            (StatusCode::UNAUTHORIZED, "credential_invalid")
        );
    }
}
