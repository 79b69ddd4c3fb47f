//! Router-level tests of the desk: the guard (PIN, host, origin), limits and the error paths of
//! entry and import, through `tower::ServiceExt::oneshot` on a real store in a temp folder. The
//! whole day in a real browser is `tests/it/desk.rs`.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use super::*;
use crate::app::{Actor, Agent};
use crate::gate::{Gate, Opener};
use schoolsync_protocol::ids::ClassId;
use schoolsync_protocol::records::ClassInfo;

const HOST: &str = "127.0.0.1:8421";

struct Fixture {
    _dir: tempfile::TempDir,
    gate: Arc<Gate>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let opener = Opener {
        engine: None,
        store_dir: dir.path().join("store"),
        config: crate::config::Config::default(),
        actor: Actor {
            clerk: "test".to_owned(),
            machine: "test".to_owned(),
        },
        lang: Lang::En,
    };
    {
        let agent: Agent = opener.open(0).unwrap();
        agent
            .init("2113000001", "130821", "承德县第一小学", None, 0)
            .unwrap();
        let classes: Vec<ClassInfo> = ["3-1", "3-2"]
            .iter()
            .map(|c| ClassInfo::new(c.parse::<ClassId>().unwrap(), 3, 45).unwrap())
            .collect();
        agent.add_classes(&classes, "test", 0).unwrap();
    }
    Fixture {
        gate: Gate::new(opener, 5_000),
        _dir: dir,
    }
}

fn app(f: &Fixture, pin: Option<&str>) -> Router {
    let addr: SocketAddr = HOST.parse().unwrap();
    router(Desk::new(
        f.gate.clone(),
        pin.map(str::to_owned),
        Some(loopback_hosts(addr)),
    ))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap()
}

fn post_form(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn multipart(kind: &str, file: &[u8]) -> Request<Body> {
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--XX\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\n{kind}\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(b"\r\n--XX--\r\n");
    Request::post("/import/preview")
        .header(header::HOST, HOST)
        .header(header::ORIGIN, format!("http://{HOST}"))
        .header(header::CONTENT_TYPE, "multipart/form-data; boundary=XX")
        .body(Body::from(body))
        .unwrap()
}

async fn text(response: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn attendance_count(f: &Fixture) -> usize {
    f.gate
        .with(|a| {
            let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
            Ok(a.report(date)?
                .iter()
                .filter(|r| r.attendance.is_some())
                .count())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn desk_asks_for_the_pin_and_a_right_pin_lets_in() {
    let f = fixture();
    let app = app(&f, Some("2468"));
    let r = app.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login");
    let r = app
        .clone()
        .oneshot(post_form("/attendance", "date=2026-11-03"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The stylesheet and the login page need no PIN.
    let r = app.clone().oneshot(get("/style.css")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .clone()
        .oneshot(post_form("/login", "pin=1357"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let r = app
        .clone()
        .oneshot(post_form("/login", "pin=2468"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let mut req = get("/");
    req.headers_mut()
        .insert(header::COOKIE, session.parse().unwrap());
    let r = app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.contains("承德县第一小学"));
    // A forged cookie is not a session.
    let mut req = get("/");
    req.headers_mut().insert(
        header::COOKIE,
        format!("{SESSION_COOKIE}=00000000000000000000000000000000")
            .parse()
            .unwrap(),
    );
    assert_eq!(
        app.oneshot(req).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn desk_refuses_other_hosts_and_other_sites_posts() {
    let f = fixture();
    let app = app(&f, None);
    let body = "date=2026-11-03&class.0=3-1&expected.0=45&present.0=45";
    // DNS rebinding: a page of another name that resolves to 127.0.0.1.
    let mut req = get("/");
    req.headers_mut()
        .insert(header::HOST, "evil.example:8421".parse().unwrap());
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::MISDIRECTED_REQUEST
    );
    // A form on another site posting here.
    let mut req = post_form("/attendance", body);
    req.headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let mut req = post_form("/attendance", body);
    req.headers_mut().remove(header::ORIGIN);
    req.headers_mut().insert(
        header::REFERER,
        "http://127.0.0.1:9999/attendance".parse().unwrap(),
    );
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(attendance_count(&f).await, 0, "nothing was written");
    // The page's own form.
    let r = app.oneshot(post_form("/attendance", body)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(attendance_count(&f).await, 1);
}

#[tokio::test]
async fn desk_attendance_with_one_bad_row_saves_nothing_and_names_the_field() {
    let f = fixture();
    let app = app(&f, None);
    let r = app
        .clone()
        .oneshot(post_form(
            "/attendance",
            "date=2026-11-03&class.0=3-1&expected.0=45&present.0=45&class.1=3-2&expected.1=45&present.1=46",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = text(r).await;
    assert!(
        page.contains("data-field=\"present.1\"") && page.contains("present 46"),
        "{page}"
    );
    // The values typed are kept in the form.
    assert!(page.contains("name=\"present.1\" value=\"46\""), "{page}");
    assert_eq!(attendance_count(&f).await, 0);
    // A date that does not exist is refused before anything else.
    let r = app
        .oneshot(post_form(
            "/attendance",
            "date=2026-02-30&class.0=3-1&present.0=45",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn desk_refuses_oversize_uploads_and_forms() {
    let f = fixture();
    let app = app(&f, None);
    let big = vec![b'a'; UPLOAD_BYTES_MAX + 1];
    let r = app
        .clone()
        .oneshot(multipart("attendance", &big))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let form = format!("date=2026-11-03&x={}", "a".repeat(FORM_BYTES_MAX));
    let r = app
        .clone()
        .oneshot(post_form("/attendance", &form))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let many: String = (0..=FORM_FIELDS_MAX).map(|i| format!("f{i}=1&")).collect();
    let r = app.oneshot(post_form("/attendance", &many)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn desk_import_previews_bad_rows_then_confirms_a_good_file_once() {
    let f = fixture();
    let app = app(&f, None);
    let bad = "日期,班级,应到,实到\n2026-11-03,3-1,45,45\n2026-11-03,3-9,45,45\n";
    let r = app
        .clone()
        .oneshot(multipart("attendance", bad.as_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = text(r).await;
    assert!(
        page.contains("data-line=\"3\" data-column=\"班级\""),
        "{page}"
    );
    assert!(!page.contains("/import/confirm"));
    assert_eq!(attendance_count(&f).await, 0);

    let good = "日期,班级,应到,实到,病假\n2026-11-03,3-1,45,45,0\n2026-11-03,3-2,45,44,1\n";
    let r = app
        .clone()
        .oneshot(multipart("attendance", good.as_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = text(r).await;
    let token = page
        .split("name=\"token\" value=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_owned();
    assert_eq!(attendance_count(&f).await, 0, "a preview writes nothing");
    let r = app
        .clone()
        .oneshot(post_form("/import/confirm", &format!("token={token}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(attendance_count(&f).await, 2);
    // A token works once.
    let r = app
        .oneshot(post_form("/import/confirm", &format!("token={token}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
}

#[test]
fn desk_refuses_a_remote_address_without_leave_and_pin() {
    let mut desk = DeskConfig::default();
    assert!(check_config(&desk).is_ok());
    desk.bind = "0.0.0.0".parse().unwrap();
    assert!(matches!(
        check_config(&desk),
        Err(DeskError::RemoteNotAllowed(_))
    ));
    desk.allow_remote = true;
    assert!(matches!(
        check_config(&desk),
        Err(DeskError::RemoteNeedsPin(_))
    ));
    desk.pin = Some(" ".to_owned());
    assert!(matches!(check_config(&desk), Err(DeskError::BadPin)));
    desk.pin = Some("1234".to_owned());
    assert!(check_config(&desk).is_ok());
    assert!(same_secret("1234", "1234") && !same_secret("1234", "12345"));
    assert!(!same_secret("", "1") && same_secret("", ""));
}
