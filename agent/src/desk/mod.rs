//! The clerk desk: the web page `schoolsync-agent run` serves on this computer, through which a
//! clerk does the day's work (today at a glance, entry, corrections, import with preview,
//! printable homework notices, sync status).
//!
//! Pages are built on the server as plain HTML forms (POST, then redirect to a GET), with one
//! small embedded stylesheet and no JavaScript, so they work in any browser on an old PC with no
//! internet. Every action calls the same `app::Agent` functions as the CLI, and form fields are
//! parsed by the importer's own row parser (`import::parse_fields`): there is no second copy of
//! the validation here. The store is opened only for the length of one request, through the
//! [`Gate`] the sync loop also uses, so the CLI keeps working while `run` runs.
//!
//! Safety for a page on loopback (see ARCHITECTURE.md, "Clerk desk"): the `Host` header must name
//! this computer (stops DNS rebinding), a POST's `Origin` (or `Referer`) must be this page (stops
//! other web sites posting forms here), an optional PIN sets a `SameSite=Strict` session cookie,
//! and every body, field count and upload is bounded by the constants below.
//!
//! This module does no validation of its own and holds no data between requests except pending
//! import previews (bounded, short-lived).

mod html;
mod pages;
mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use schoolsync_protocol::Lang;

use crate::app::{error_message, AppError};
use crate::config::DeskConfig;
use crate::gate::Gate;

/// Largest form body (every class's attendance on one screen: 100 classes × 12 fields × ~30 bytes
/// is 36 KiB); anything larger is not a clerk's form.
pub const FORM_BYTES_MAX: usize = 256 * 1024;
/// Most fields in one form: 100 classes × 12 fields, with room. Refused beyond, before parsing.
pub const FORM_FIELDS_MAX: usize = 2_000;
/// Largest uploaded sheet. A term of one school's records is a few megabytes; the CLI takes up to
/// `import::FILE_BYTES_MAX` for bigger jobs. Kept in memory until confirmed, hence smaller.
pub const UPLOAD_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Import previews waiting for "confirm" at once; the oldest is dropped beyond this, so memory
/// stays under `PENDING_IMPORTS_MAX × UPLOAD_BYTES_MAX`.
pub const PENDING_IMPORTS_MAX: usize = 4;
/// How long an import preview can be confirmed (a clerk reads the preview, then clicks).
pub const PENDING_IMPORT_MS: u64 = 30 * 60 * 1000;
/// Rows of a preview shown in full; the rest are counted (the write is still all of them).
pub const PREVIEW_ROWS_MAX: usize = 300;
/// Longest PIN accepted (config and form).
pub const PIN_BYTES_MAX: usize = 64;
/// Delay after a wrong PIN, so guessing a short PIN takes hours, not seconds.
pub const PIN_FAIL_DELAY_MS: u64 = 1_000;

const SESSION_COOKIE: &str = "schoolsync_desk";
const LANG_COOKIE: &str = "schoolsync_lang";
const STYLE: &str = include_str!("style.css");

/// A desk setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("--desk-bind {0} is not this computer only; add --desk-allow-remote and a --desk-pin")]
    RemoteNotAllowed(std::net::IpAddr),
    #[error("--desk-bind {0} lets other computers in, so a --desk-pin is required")]
    RemoteNeedsPin(std::net::IpAddr),
    #[error("the desk PIN must be 1 to {PIN_BYTES_MAX} bytes")]
    BadPin,
}

impl DeskError {
    pub fn message(&self, lang: Lang) -> String {
        match (self, lang) {
            (DeskError::RemoteNotAllowed(ip), Lang::Zh) => format!(
                "录入页面地址 {ip} 不是仅限本机的地址；如确需让其他电脑访问，请加 --desk-allow-remote 并设置 --desk-pin"
            ),
            (DeskError::RemoteNeedsPin(ip), Lang::Zh) => {
                format!("录入页面地址 {ip} 允许其他电脑访问，必须设置密码 --desk-pin")
            }
            (DeskError::BadPin, Lang::Zh) => {
                format!("录入页面密码应为 1 到 {PIN_BYTES_MAX} 个字符")
            }
            (e, Lang::En) => e.to_string(),
        }
    }
}

/// Refuses a non-loopback address unless explicitly allowed, and then only with a PIN.
pub fn check_config(desk: &DeskConfig) -> Result<(), DeskError> {
    if let Some(pin) = &desk.pin {
        if pin.trim().is_empty() || pin.len() > PIN_BYTES_MAX {
            return Err(DeskError::BadPin);
        }
    }
    if desk.bind.is_loopback() {
        return Ok(());
    }
    if !desk.allow_remote {
        return Err(DeskError::RemoteNotAllowed(desk.bind));
    }
    if desk.pin.is_none() {
        return Err(DeskError::RemoteNeedsPin(desk.bind));
    }
    Ok(())
}

/// The desk's shared state.
#[derive(Clone)]
pub struct Desk {
    inner: Arc<Inner>,
}

struct Inner {
    /// The store, in turns with the sync loop.
    gate: Arc<Gate>,
    /// The PIN, if the desk asks for one.
    pin: Option<String>,
    /// The session cookie's value after a right PIN: random per process (a restart asks again).
    session: String,
    /// `Host` values accepted; `None` when bound to a non-loopback address (any name; PIN then).
    hosts: Option<Vec<String>>,
    /// Import previews waiting for confirmation, by random token. A `std` mutex: held only to
    /// insert or take an entry, never across an await.
    imports: Mutex<HashMap<String, upload::Pending>>,
}

impl Desk {
    /// A desk over `gate`, answering to `hosts` (`None`: any host name).
    pub fn new(gate: Arc<Gate>, pin: Option<String>, hosts: Option<Vec<String>>) -> Desk {
        Desk {
            inner: Arc::new(Inner {
                gate,
                pin,
                session: random_token(),
                hosts,
                imports: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn gate(&self) -> &Arc<Gate> {
        &self.inner.gate
    }
}

/// 128 random bits as hex (session cookie, import token). Falls back to time and address
/// entropy only if the system has no random source, which no supported system lacks.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = (now ^ (std::ptr::addr_of!(bytes) as u128)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// The `Host` values a desk on a loopback `addr` answers to.
pub fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ];
    if port == 80 {
        hosts.extend(["127.0.0.1", "localhost", "[::1]"].map(str::to_owned));
    }
    hosts
}

/// Binds the desk and serves it until `stop` turns true. Returns the bound address.
pub async fn serve(
    gate: Arc<Gate>,
    config: &DeskConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind((config.bind, config.port)).await?;
    let addr = listener.local_addr()?;
    let hosts = config.bind.is_loopback().then(|| loopback_hosts(addr));
    let app = router(Desk::new(gate, config.pin.clone(), hosts));
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            eprintln!("clerk desk stopped: {e}");
        }
    });
    Ok((addr, task))
}

/// Every route of the desk, behind the guard (host, origin, PIN, language).
pub fn router(desk: Desk) -> Router {
    Router::new()
        .route("/", get(pages::today))
        .route(
            "/attendance",
            get(pages::attendance_form).post(pages::attendance_save),
        )
        .route(
            "/homework",
            get(pages::homework_form).post(pages::homework_save),
        )
        .route("/homework/review", post(pages::homework_review))
        .route(
            "/afterschool",
            get(pages::afterschool_form).post(pages::afterschool_save),
        )
        .route("/notice", get(pages::notice))
        .route("/week", get(pages::week))
        .route("/import", get(upload::import_form))
        .route(
            "/import/preview",
            post(upload::preview).layer(DefaultBodyLimit::max(UPLOAD_BYTES_MAX + 64 * 1024)),
        )
        .route("/import/confirm", post(upload::confirm))
        .route("/sync", post(sync_now))
        .route("/login", get(login_form).post(login))
        .route("/style.css", get(style))
        .layer(DefaultBodyLimit::max(FORM_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(desk.clone(), guard))
        .with_state(desk)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// The host part (`host[:port]`) of an `Origin` or `Referer` URL.
fn url_host(value: &str) -> Option<&str> {
    let rest = value
        .strip_prefix("http://")
        .or_else(|| value.strip_prefix("https://"))?;
    Some(rest.split(['/', '?', '#']).next().unwrap_or(rest))
}

/// Checks host, origin and PIN; picks the language. Runs before every route.
async fn guard(State(desk): State<Desk>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let query_lang = req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| match kv {
            "lang=en" => Some(Lang::En),
            "lang=zh" => Some(Lang::Zh),
            _ => None,
        })
    });
    let lang = query_lang
        .or_else(|| cookie(headers, LANG_COOKIE).map(Lang::from_locale))
        .unwrap_or(desk.gate().opener.lang);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(hosts) = &desk.inner.hosts {
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                lang,
                "此页面只能在本机用 http://127.0.0.1 打开。",
                "This page only answers to http://127.0.0.1 on this computer.",
            );
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        // Browsers send Origin with every form POST (older ones at least a Referer): a form posted
        // from any other site is refused. A client sending neither is not a browser page.
        let from = headers
            .get(header::ORIGIN)
            .or_else(|| headers.get(header::REFERER))
            .and_then(|h| h.to_str().ok());
        if let Some(from) = from {
            if !url_host(from).is_some_and(|h| h.eq_ignore_ascii_case(host)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    lang,
                    "拒绝：这个请求来自其他网页，不是本录入页面。",
                    "Refused: this request came from another web page, not this desk.",
                );
            }
        }
    }
    let open_path = matches!(req.uri().path(), "/login" | "/style.css");
    if desk.inner.pin.is_some() && !open_path {
        let ok = cookie(req.headers(), SESSION_COOKIE)
            .is_some_and(|v| same_secret(v, &desk.inner.session));
        if !ok {
            if req.method() == Method::GET {
                return Redirect::to("/login").into_response();
            }
            return refuse(
                StatusCode::UNAUTHORIZED,
                lang,
                "请先输入密码（打开 /login）。",
                "Enter the PIN first (open /login).",
            );
        }
    }
    req.extensions_mut().insert(lang);
    let mut response = next.run(req).await;
    if let Some(lang) = query_lang {
        let code = match lang {
            Lang::Zh => "zh",
            Lang::En => "en",
        };
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={code}; Path=/; SameSite=Strict; Max-Age=31536000"
        )) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A short page saying why a request was refused.
fn refuse(status: StatusCode, lang: Lang, zh: &str, en: &str) -> Response {
    let body = html::page(
        lang,
        lang.pick("无法完成", "Not done"),
        html::Nav::None,
        "",
        &html::notice("error", lang.pick(zh, en)),
    );
    (status, axum::response::Html(body)).into_response()
}

/// An action's error as a page, with a status matching its kind.
fn error_page(e: &AppError, lang: Lang) -> Response {
    use schoolsync_store::{KvError, StoreError};
    let status = match e {
        AppError::Refused(_) | AppError::ImportRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::NotInitialised | AppError::OtherSchool { .. } => StatusCode::CONFLICT,
        AppError::Store(StoreError::Kv(KvError::Locked { .. })) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = error_message(e, lang);
    (
        status,
        axum::response::Html(html::page(
            lang,
            lang.pick("出错了", "Error"),
            html::Nav::None,
            "",
            &html::notice("error", &text),
        )),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn login_form(axum::Extension(lang): axum::Extension<Lang>) -> Response {
    login_page(lang, None, StatusCode::OK)
}

fn login_page(lang: Lang, error: Option<&str>, status: StatusCode) -> Response {
    let field = html::Field {
        name: "pin",
        label: lang.pick("密码", "PIN"),
        value: "",
        error,
        kind: "password",
        size: 10,
    };
    let body = format!(
        "<h1>{}</h1><form method=\"post\" action=\"/login\">{}<p><button type=\"submit\">{}</button></p></form>",
        lang.pick("请输入录入页面密码", "Enter the desk PIN"),
        field.render(),
        lang.pick("进入", "Enter"),
    );
    (
        status,
        axum::response::Html(html::page(
            lang,
            lang.pick("密码", "PIN"),
            html::Nav::None,
            "",
            &body,
        )),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct LoginForm {
    pin: String,
}

async fn login(
    State(desk): State<Desk>,
    axum::Extension(lang): axum::Extension<Lang>,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(pin) = &desk.inner.pin else {
        return Redirect::to("/").into_response();
    };
    if form.pin.len() > PIN_BYTES_MAX || !same_secret(form.pin.trim(), pin.trim()) {
        tokio::time::sleep(std::time::Duration::from_millis(PIN_FAIL_DELAY_MS)).await;
        return login_page(
            lang,
            Some(lang.pick("密码不对，请重新输入", "Wrong PIN, try again")),
            StatusCode::UNAUTHORIZED,
        );
    }
    let mut response = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
        desk.inner.session
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// "Sync now": wakes the loop, then back to where the clerk was.
async fn sync_now(State(desk): State<Desk>) -> Response {
    desk.gate().wake.notify_one();
    Redirect::to("/?sync=started").into_response()
}

/// An empty 303 to `to` (POST-redirect-GET).
fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A full HTML response.
fn html_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests;
