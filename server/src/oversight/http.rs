//! The oversight API under `/api/v1` (JSON, CSV, XLSX, an NDJSON changes feed, an OpenAPI
//! description) for other systems, held to the reader's credential scope; access is logged.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use schoolsync_protocol::auth::{Claims, Role};
use schoolsync_protocol::ids::{CountyTable, SchoolId};
use serde::Deserialize;

use super::calendar::Period;
use super::indexer::{feed_key, FeedLine};
use super::query::{self, Level, Summary};
use crate::api::{authenticate_with, blocking, ApiError, AppState};

/// Feed lines per request at most.
pub const FEED_LIMIT_MAX: usize = 10_000;
/// Response header of the feed: the `seq` to resume after (the last line looked at, which may be
/// past the last line returned when lines out of the reader's scope were skipped).
pub const CURSOR_HEADER: &str = "schoolsync-cursor";
/// Feed lines read from the store at a time.
pub const FEED_PAGE_LINES: usize = 1_000;
/// Feed lines looked at per request at most (a county viewer skipping other counties' lines
/// resumes from the last line it was given).
pub const FEED_SCAN_MAX: usize = 100_000;
/// Compliance rows per request at most.
pub const COMPLIANCE_ROWS_MAX: usize = 5_000;

/// Oversight settings: the school calendar and small-cell suppression.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OversightConfig {
    pub calendar: super::calendar::Calendar,
    /// Counts above zero and below this are hidden in rows above the school level (county and
    /// city figures). Default 0: nothing hidden. A request may ask for a higher threshold.
    pub suppress_below: u32,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/compliance", get(compliance))
        .route("/api/v1/export.csv", get(export_csv))
        .route("/api/v1/export.xlsx", get(export_xlsx))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/v1/holdings", axum::routing::post(holdings))
}

/// Largest holdings request body: a county's reports.
pub const HOLDINGS_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// `POST /v1/holdings`: what a school (or a relay, for its schools) holds. A school reports for
/// itself; a relay for its county's schools.
async fn holdings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let claims = crate::api::authenticate(&state, &headers)?;
    crate::api::require_content_type(&headers, "application/json")?;
    let body = crate::api::read_body(&state, body, HOLDINGS_BODY_BYTES_MAX).await?;
    let reports: Vec<schoolsync_protocol::holdings::Holdings> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("malformed_json", e.to_string()))?;
    if reports.len() > schoolsync_protocol::holdings::HOLDINGS_PER_REQUEST_MAX {
        return Err(ApiError::bad(
            "limit_exceeded",
            "too many reports in one request",
        ));
    }
    for r in &reports {
        r.check().map_err(|m| ApiError::bad("limit_exceeded", m))?;
        if claims.role == Role::School && r.tier != schoolsync_protocol::holdings::Tier::School {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a school reports only what it holds itself",
            ));
        }
    }
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let relay = gate.county.is_some();
    let stored = blocking(move || {
        for r in &reports {
            gate.may_sync(&node.store, &claims, &r.school)
                .map_err(|_| ApiError::store())?
                .map_err(ApiError::from)?;
        }
        super::holdings::store(&node.store, &reports, relay).map_err(|_| ApiError::store())?;
        Ok(reports.len())
    })
    .await?;
    if relay {
        state.committed.notify_one();
    }
    Ok(Json(serde_json::json!({ "stored": stored })).into_response())
}

/// Query parameters shared by the summary, compliance and export endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeQuery {
    /// `city`, `county`, `school` or `class`; default: the reader's own scope.
    pub level: Option<String>,
    /// County code, school id, or `school/class`.
    pub id: Option<String>,
    /// `day`, `week`, `month` or `term`; default `week`.
    pub period: Option<Period>,
    /// A day in the period; default today.
    pub date: Option<NaiveDate>,
    pub suppress_below: Option<u32>,
    pub lang: Option<String>,
}

/// The reader's default level: their own scope.
pub fn default_level(state: &AppState, claims: &Claims) -> Level {
    match (
        claims.role,
        &claims.school,
        &claims.county,
        &state.gate.county,
    ) {
        (Role::School, Some(s), _, _) => Level::School(s.clone()),
        (_, _, Some(c), _) => Level::County(c.to_string()),
        (_, _, None, Some(here)) => Level::County(here.to_string()),
        _ => Level::City,
    }
}

/// Parses the requested level and checks the reader may see it.
pub fn resolve(state: &AppState, claims: &Claims, q: &ScopeQuery) -> Result<Level, ApiError> {
    let level = match (q.level.as_deref(), q.id.as_deref()) {
        (None, _) => default_level(state, claims),
        (Some("city"), _) => Level::City,
        (Some("county"), Some(id)) => Level::County(
            CountyTable::default()
                .parse(id)
                .map_err(|e| ApiError::bad("bad_county", e.to_string()))?
                .to_string(),
        ),
        (Some("school"), Some(id)) => {
            Level::School(id.parse().map_err(|e: schoolsync_protocol::HardError| {
                ApiError::bad("bad_school", e.to_string())
            })?)
        }
        (Some("class"), Some(id)) => {
            let (school, class) = id
                .split_once('/')
                .ok_or_else(|| ApiError::bad("bad_class", "a class is named school/class"))?;
            let school: SchoolId =
                school
                    .parse()
                    .map_err(|e: schoolsync_protocol::HardError| {
                        ApiError::bad("bad_school", e.to_string())
                    })?;
            let class: schoolsync_protocol::ids::ClassId =
                class.parse().map_err(|e: schoolsync_protocol::HardError| {
                    ApiError::bad("bad_class", e.to_string())
                })?;
            Level::Class(school, class.to_string())
        }
        (Some(l @ ("county" | "school" | "class")), None) => {
            return Err(ApiError::bad(
                "missing_id",
                format!("level {l} needs an id"),
            ))
        }
        (Some(other), _) => {
            return Err(ApiError::bad(
                "bad_level",
                format!("unknown level {other}: city, county, school or class"),
            ))
        }
    };
    let allowed = match &level {
        Level::City => claims.may_read_area(None) && state.gate.county.is_none(),
        Level::County(c) => {
            let code = c.parse().ok();
            claims.may_read_area(code.as_ref())
                && state
                    .gate
                    .county
                    .as_ref()
                    .is_none_or(|here| Some(here) == code.as_ref())
        }
        Level::School(s) | Level::Class(s, _) => {
            let county = state
                .gate
                .county_of(&state.node.store, s)
                .map_err(|_| ApiError::store())?;
            claims.may_read(s, county.as_ref())
        }
    };
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this credential ({}) may not read {} {}",
                crate::auth::scope_words(claims),
                level.name(),
                level.id()
            ),
        ));
    }
    Ok(level)
}

fn today() -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(crate::now_ms())
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// Computes a summary for a request (shared by the JSON, CSV and XLSX endpoints and the
/// dashboard).
pub async fn summary_for(
    state: &AppState,
    claims: &Claims,
    q: &ScopeQuery,
) -> Result<Summary, ApiError> {
    let level = resolve(state, claims, q)?;
    let period = q.period.unwrap_or(Period::Week);
    let date = q.date.unwrap_or_else(today);
    let suppress = q
        .suppress_below
        .unwrap_or(0)
        .max(state.oversight.suppress_below);
    tracing::info!(reader = %claims.id, level = level.name(), id = %level.id(), period = period.name(), %date, "oversight read");
    let (node, config) = (state.node.clone(), state.oversight.clone());
    let is_relay = state.gate.county.is_some();
    blocking(move || {
        query::summary(
            &node.store,
            is_relay,
            &config.calendar,
            &level,
            period,
            date,
            today(),
            suppress,
        )
        .map_err(|_| ApiError::store())
    })
    .await
}

async fn summary(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let claims = authenticate_with(&state, &headers, true)?;
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    Ok(Json(summary_for(&state, &claims, &q).await?).into_response())
}

async fn compliance(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let claims = authenticate_with(&state, &headers, true)?;
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let level = resolve(&state, &claims, &q)?;
    let period = q.period.unwrap_or(Period::Week);
    let date = q.date.unwrap_or_else(today);
    tracing::info!(reader = %claims.id, level = level.name(), id = %level.id(), "oversight compliance read");
    let node = state.node.clone();
    let rows = blocking(move || {
        query::compliance(&node.store, &level, period, date, COMPLIANCE_ROWS_MAX)
            .map_err(|_| ApiError::store())
    })
    .await?;
    Ok(Json(rows).into_response())
}

fn file_name(summary: &Summary, ext: &str) -> String {
    let id = if summary.row.id.is_empty() {
        "city".to_owned()
    } else {
        summary.row.id.replace('/', "-")
    };
    format!(
        "schoolsync-{}-{id}-{}-{}.{ext}",
        summary.row.level, summary.period, summary.from
    )
}

/// The two export formats.
#[derive(Clone, Copy)]
enum Format {
    Csv,
    Xlsx,
}

async fn export(
    state: AppState,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
    format: Format,
) -> Result<Response, ApiError> {
    let claims = authenticate_with(&state, &headers, true)?;
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let summary = summary_for(&state, &claims, &q).await?;
    let (content_type, ext, body) = match format {
        Format::Csv => (
            "text/csv; charset=utf-8",
            "csv",
            super::export::csv(&summary),
        ),
        Format::Xlsx => (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            super::export::xlsx(&summary, "schoolsync"),
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", file_name(&summary, ext)),
            ),
        ],
        body,
    )
        .into_response())
}

async fn export_csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    export(state, headers, q, Format::Csv).await
}

async fn export_xlsx(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    export(state, headers, q, Format::Xlsx).await
}

/// `GET /api/v1/changes?after=<seq>&limit=<n>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

/// The changes feed: one JSON object per line, each a class-day whose figures changed, in `seq`
/// order; resume with `after=<the last seq read>`. A line per class-day within the reader's scope.
async fn changes(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let claims = authenticate_with(&state, &headers, true)?;
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(1000).clamp(1, FEED_LIMIT_MAX);
    tracing::info!(reader = %claims.id, after = q.after, "oversight feed read");
    let (node, gate) = (state.node.clone(), state.gate.clone());
    let (body, cursor) = blocking(move || {
        let mut out = Vec::new();
        let mut n = 0;
        let mut from = feed_key(q.after.saturating_add(1));
        // Pages of the feed from the cursor on; lines out of the reader's scope are skipped,
        // and at most FEED_SCAN_MAX lines are looked at per request (the reader resumes).
        let mut scanned = 0;
        let mut cursor = q.after;
        'pages: while scanned < FEED_SCAN_MAX {
            let page = node
                .store
                .scan_raw_from(b"o/c/", &from, FEED_PAGE_LINES)
                .map_err(|_| ApiError::store())?;
            let Some((last, _)) = page.last() else {
                break;
            };
            from = [last.as_slice(), &[0]].concat();
            let full = page.len() == FEED_PAGE_LINES;
            for (_, v) in page {
                scanned += 1;
                let Ok(line) = serde_json::from_slice::<FeedLine>(&v) else {
                    continue;
                };
                cursor = line.seq;
                let Ok(school) = line.school.parse::<SchoolId>() else {
                    continue;
                };
                let county = gate
                    .county_of(&node.store, &school)
                    .map_err(|_| ApiError::store())?
                    .or_else(|| line.county.parse().ok());
                if !claims.may_read(&school, county.as_ref()) {
                    continue;
                }
                out.extend_from_slice(&v);
                out.push(b'\n');
                n += 1;
                if n >= limit {
                    break 'pages;
                }
            }
            if !full {
                break;
            }
        }
        Ok((out, cursor))
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                header::HeaderName::from_static(CURSOR_HEADER),
                cursor.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The OpenAPI 3 description of the read API (kept beside the handlers it describes; a test
/// checks every path here is routed).
pub const OPENAPI: &str = include_str!("openapi.json");
