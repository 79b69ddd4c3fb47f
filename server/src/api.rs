//! HTTP endpoints: `POST /v1/sync` (the wire protocol) and `GET /v1/health`. Every error is a
//! 4xx/5xx with a JSON body `{code, message}`; the server stays up whatever the input.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schoolsync_protocol::sync::{decode, encode, SyncRequest, CONTENT_TYPE};

use crate::node::Node;

/// Largest request body accepted (compressed): a page is 64 KiB; whole month documents pushed
/// on a first sync are a few hundred KiB.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    pub node: Arc<Node>,
    /// Woken after a round committed something new (a relay forwards it upstream soon).
    pub committed: Arc<tokio::sync::Notify>,
}

/// An error answer: status plus `{code, message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/sync", post(sync))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    let county = match &state.node.role {
        crate::node::Role::Relay { county } => Some(county.to_string()),
        crate::node::Role::City => None,
    };
    Json(serde_json::json!({ "status": "ok", "role": state.node.role.name(), "county": county }))
}

async fn sync(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != CONTENT_TYPE {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "wrong_content_type",
            format!("expected content type {CONTENT_TYPE}"),
        ));
    }
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
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let node = state.node.clone();
    let served = tokio::task::spawn_blocking(move || node.serve_sync(&request))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request could not be processed",
            )
        })?;
    let (response, new_changes) = served.map_err(|e| {
        tracing::error!(error = %e, "sync failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the server could not store the data; try again later",
        )
    })?;
    if new_changes > 0 {
        state.committed.notify_one();
    }
    tracing::debug!(new_changes, "sync round served");
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(&response)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use schoolsync_protocol::sync::{SyncResponse, WIRE_VERSION};
    use tower::ServiceExt;

    fn app() -> (Router, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = schoolsync_store::DocStore::open(dir.path()).unwrap();
        let state = AppState {
            node: Arc::new(Node::new(crate::node::Role::City, store)),
            committed: Arc::new(tokio::sync::Notify::new()),
        };
        (router(state), dir)
    }

    async fn call(app: &Router, content_type: &str, body: Vec<u8>) -> (StatusCode, Vec<u8>) {
        let request = Request::post("/v1/sync")
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
        let (app, _dir) = app();
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
            let (got, bytes) = call(&app, content_type, body).await;
            assert_eq!((got, code(&bytes).as_str()), (status, expected));
        }
        // The server still answers a good request.
        let (status, bytes) = call(&app, CONTENT_TYPE, good).await;
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
    }
}
