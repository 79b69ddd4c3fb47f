//! Oversight stories (issue 5): schools record a week, the figures the city and the county read
//! (summary, completeness, compliance, exports, the changes feed) match what was recorded, and
//! each reader sees only their scope.

use schoolsync_protocol::auth::Role;

use crate::cluster::Cluster;
use crate::harness::{afterschool_csv, attendance_csv, homework_csv, school_days, School};

pub const X: &str = "130821";
pub const Y: &str = "130822";
pub const A: &str = "2113000001";
pub const B: &str = "2113000002";
pub const C: &str = "2113000003";
pub const MONDAY: &str = "2026-11-02";

/// A city, the relay of county X, and a week of records: A (X, 2 classes) complete, with one
/// over-limit homework day and one short after-school session; B (X, 2 classes) attendance only
/// and no Friday; C (Y, 1 class, straight to the city) complete.
pub struct Week {
    pub cluster: Cluster,
    pub schools: Vec<School>,
    pub viewer_city: String,
    pub viewer_x: String,
    pub viewer_y: String,
}

pub fn week() -> Week {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(X);
    let via_relay = vec![cluster.relay_url(relay), cluster.city_url()];
    let direct = vec![cluster.city_url()];
    let days = school_days(MONDAY, 5);
    let import = |s: &School, kind: &str, csv: String| {
        let path = s.file(&format!("{kind}.csv"), csv.as_bytes());
        s.agent(&["import", kind, path.to_str().unwrap()]).ok();
    };
    let a = cluster.school(A, X, 2, &via_relay);
    import(&a, "attendance", attendance_csv(2, &days));
    import(&a, "homework", homework_csv(2, &days));
    import(&a, "afterschool", afterschool_csv(2, &days));
    a.agent(&[
        "homework",
        "add",
        "--date",
        "2026-11-04",
        "--class",
        "3-1",
        "--subject",
        "英语",
        "--minutes",
        "50",
        "--content",
        "抄写单词",
    ])
    .ok();
    a.agent(&[
        "afterschool",
        "record",
        "--date",
        "2026-11-05",
        "--class",
        "3-2",
        "--participants",
        "40",
        "--start",
        "16:00",
        "--end",
        "17:00",
        "--content",
        "作业辅导",
    ])
    .ok();
    let b = cluster.school(B, X, 2, &via_relay);
    import(&b, "attendance", attendance_csv(2, &days[..4]));
    let c = cluster.school(C, Y, 1, &direct);
    import(&c, "attendance", attendance_csv(1, &days));
    import(&c, "homework", homework_csv(1, &days));
    import(&c, "afterschool", afterschool_csv(1, &days));
    for s in [&a, &b, &c] {
        s.agent(&["sync"]).ok();
    }
    let token = |role, county: Option<&str>| cluster.issue(role, None, county).1.token;
    let week = Week {
        viewer_city: token(Role::Viewer, None),
        viewer_x: token(Role::Viewer, Some(X)),
        viewer_y: token(Role::Viewer, Some(Y)),
        schools: vec![a, b, c],
        cluster,
    };
    week.wait_for_city();
    week
}

impl Week {
    /// GET a path at the city (or relay 0) with a bearer token; (status, body bytes).
    pub fn get(&self, at_relay: bool, token: &str, path: &str) -> (u16, Vec<u8>) {
        let base = if at_relay {
            self.cluster.relay_url(0)
        } else {
            self.cluster.city_url()
        };
        let client = self.client();
        self.cluster.rt.block_on(async {
            let r = client
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.bytes().await.unwrap().to_vec())
        })
    }

    /// An HTTPS client trusting the cluster's CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = std::fs::read(&self.cluster.certs.ca_cert).unwrap();
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap()
    }

    pub fn json(&self, at_relay: bool, token: &str, path: &str) -> serde_json::Value {
        let (status, body) = self.get(at_relay, token, path);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// Waits until the city's figures include every school's week (the relay forwards, the
    /// indexer catches up).
    fn wait_for_city(&self) {
        self.cluster
            .wait_until("the city's figures include the week", || {
                let v = self.json(
                    false,
                    &self.viewer_city,
                    &format!("/api/v1/summary?level=city&period=week&date={MONDAY}"),
                );
                v["completeness"]["received"] == 14 && v["tally"]["afterschool_class_days"] == 15
            });
    }
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// What attendance_csv writes: (present, expected, sick) summed over `classes` and `days`.
fn attendance_sums(classes: usize, days: usize) -> (u64, u64, u64) {
    let (mut present, mut expected, mut sick) = (0, 0, 0);
    for i in 0..days {
        for c in 1..=classes {
            let s = ((i + c) % 3) as u64;
            sick += s;
            present += 45 - s;
            expected += 45;
        }
    }
    (present, expected, sick)
}

#[test]
fn the_week_adds_up_at_every_level() {
    let w = week();
    let path = |q: &str| format!("/api/v1/summary?{q}&period=week&date={MONDAY}");
    // 1. The city: three schools, two counties; 15 expected school-days, 14 received (B's Friday).
    let city = w.json(false, &w.viewer_city, &path("level=city"));
    assert_eq!(city["level"], "city");
    assert_eq!(city["school_days"], 5);
    assert_eq!(city["completeness"]["expected"], 15);
    assert_eq!(city["completeness"]["received"], 14);
    let counties: Vec<&str> = city["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(counties, vec![X, Y]);
    // 2. County X: A complete, B four of five; attendance as recorded.
    let county = w.json(false, &w.viewer_x, &path(&format!("level=county&id={X}")));
    assert_eq!(county["name"], "承德县");
    let (pa, ea, sa) = attendance_sums(2, 5);
    let (pb, eb, sb) = attendance_sums(2, 4);
    assert_eq!(county["tally"]["present"], pa + pb);
    assert_eq!(county["tally"]["expected"], ea + eb);
    assert!((f(&county["rates"]["attendance"]) - (pa + pb) as f64 / (ea + eb) as f64).abs() < 1e-9);
    assert!(
        (f(&county["rates"]["illness_absence"]) - (sa + sb) as f64 / (ea + eb) as f64).abs() < 1e-9
    );
    let schools = county["children"].as_array().unwrap();
    assert_eq!(schools.len(), 2);
    assert_eq!(
        (
            schools[0]["id"].as_str(),
            schools[0]["completeness"]["received"].as_u64()
        ),
        (Some(A), Some(5))
    );
    assert_eq!(
        (
            schools[1]["id"].as_str(),
            schools[1]["completeness"]["received"].as_u64()
        ),
        (Some(B), Some(4))
    );
    assert_eq!(schools[1]["completeness"]["expected"], 5);
    // 3. School A: its classes; homework publicity every class-day; one over-limit day; the
    //    participation rate is participants ÷ enrolled as recorded.
    let school = w.json(false, &w.viewer_x, &path(&format!("level=school&id={A}")));
    assert_eq!(school["tally"]["homework_class_days"], 10);
    assert_eq!(school["tally"]["over_limit_class_days"], 1);
    assert_eq!(school["tally"]["afterschool_class_days"], 10);
    assert_eq!(school["tally"]["full_sessions"], 9);
    let mut participants = 0u64;
    for i in 0..5 {
        for c in 1..=2 {
            participants += if (i, c) == (3, 2) {
                40
            } else {
                40 + ((i + c) % 5) as u64
            };
        }
    }
    assert_eq!(school["tally"]["participants"], participants);
    assert!(
        (f(&school["rates"]["afterschool_participation"]) - participants as f64 / 450.0).abs()
            < 1e-9
    );
    let classes: Vec<&str> = school["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(classes, vec!["3-1", "3-2"]);
    // 4. A class, day by day.
    let class = w.json(
        false,
        &w.viewer_x,
        &path(&format!("level=class&id={A}%2F3-1")),
    );
    assert_eq!(class["children"].as_array().unwrap().len(), 5);
    assert_eq!(class["completeness"]["received"], 5);
    // 5. The compliance list names the over-limit day and the short session.
    let flags = w.json(
        false,
        &w.viewer_x,
        &format!("/api/v1/compliance?level=county&id={X}&period=week&date={MONDAY}"),
    );
    let flags = flags.as_array().unwrap();
    assert!(
        flags.iter().any(|f| f["school"] == A
            && f["date"] == "2026-11-04"
            && f["class"] == "3-1"
            && f["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "written-minutes-over-limit")),
        "{flags:?}"
    );
    assert!(
        flags.iter().any(|f| f["date"] == "2026-11-05"
            && f["class"] == "3-2"
            && f["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "afterschool-too-short")),
        "{flags:?}"
    );
    // 6. "5+2" for the week: A's 3-1 had two hours every day, its 3-2 not on Thursday; B's
    //    classes had no after-school; C's one class did.
    assert_eq!(
        school["five_plus_two"],
        serde_json::json!({ "compliant_classes": 1, "classes": 2 })
    );
    assert_eq!(
        county["five_plus_two"],
        serde_json::json!({ "compliant_classes": 1, "classes": 4 })
    );
    assert_eq!(
        city["five_plus_two"],
        serde_json::json!({ "compliant_classes": 2, "classes": 5 })
    );
    // 7. The relay serves its county the same figures.
    let at_relay = w.json(true, &w.viewer_x, &path(&format!("level=county&id={X}")));
    assert_eq!(at_relay["tally"], county["tally"]);
    assert_eq!(at_relay["completeness"], county["completeness"]);
}

#[test]
fn readers_see_only_their_scope_and_small_cells_can_be_hidden() {
    let w = week();
    let path = |q: &str| format!("/api/v1/summary?{q}&period=week&date={MONDAY}");
    // County Y's viewer: its own county by default, not county X, not the city, not school A.
    let own = w.json(false, &w.viewer_y, &path("lang=zh"));
    assert_eq!(
        (own["level"].as_str(), own["id"].as_str()),
        (Some("county"), Some(Y))
    );
    for q in [
        format!("level=county&id={X}"),
        "level=city".to_owned(),
        format!("level=school&id={A}"),
    ] {
        let (status, body) = w.get(false, &w.viewer_y, &path(&q));
        assert_eq!(status, 403, "{q}: {}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "forbidden");
    }
    // A school's own credential reads its own school only.
    let (_, school) = w.cluster.issue(Role::School, Some(A), Some(X));
    let mine = w.json(false, &school.token, &path("lang=zh"));
    assert_eq!(mine["id"], A);
    assert_eq!(
        w.get(false, &school.token, &path(&format!("level=school&id={B}")))
            .0,
        403
    );
    // At relay X, the city viewer cannot read the city level (the relay has its county only).
    assert_eq!(w.get(true, &w.viewer_city, &path("level=city")).0, 403);
    // Suppression: counts under the threshold are hidden above the school level, never in a
    // school's own row.
    let city = w.json(
        false,
        &w.viewer_city,
        &path("level=city&suppress_below=1000"),
    );
    let hidden = city["suppressed"].as_array().unwrap();
    assert!(hidden.iter().any(|f| f == "sick"), "{city}");
    assert_eq!(city["tally"]["sick"], 0);
    assert!(city["rates"]["illness_absence"].is_null());
    let county = w.json(
        false,
        &w.viewer_x,
        &path(&format!("level=county&id={X}&suppress_below=1000")),
    );
    for school in county["children"].as_array().unwrap() {
        assert!(school.get("suppressed").is_none(), "{school}");
    }
    // Bad parameters are clear 400s.
    for (q, code) in [
        ("level=galaxy", "bad_level"),
        ("level=county", "missing_id"),
        ("level=school&id=12", "bad_school"),
        ("period=year", "bad_query"),
    ] {
        let (status, body) = w.get(false, &w.viewer_city, &format!("/api/v1/summary?{q}"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, v["code"].as_str().unwrap()), (400, code), "{q}");
    }
}

#[test]
fn exports_open_in_excel_and_the_feed_resumes() {
    let w = week();
    // 1. CSV: a BOM, Chinese headers, one row per school of the county.
    let (status, csv) = w.get(
        false,
        &w.viewer_x,
        &format!("/api/v1/export.csv?level=county&id={X}&period=week&date={MONDAY}"),
    );
    assert_eq!(status, 200);
    assert!(csv.starts_with(&[0xef, 0xbb, 0xbf]));
    let text = String::from_utf8(csv[3..].to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("级别,代码,名称,应报校日,已报校日,上报率,出勤率"));
    assert_eq!(lines.len(), 1 + 1 + 2, "{text}");
    assert!(
        lines[3].starts_with(&format!("学校,{B},")) && lines[3].contains(",5,4,80.00%,"),
        "{}",
        lines[3]
    );
    // 2. XLSX: a zip with the workbook parts; the sheet has the headers and the schools.
    let (status, xlsx) = w.get(
        false,
        &w.viewer_x,
        &format!("/api/v1/export.xlsx?level=county&id={X}&period=week&date={MONDAY}"),
    );
    assert_eq!(status, 200);
    assert!(xlsx.starts_with(b"PK\x03\x04"));
    let eocd = &xlsx[xlsx.len() - 22..];
    assert_eq!(&eocd[..4], b"PK\x05\x06");
    assert_eq!(u16::from_le_bytes([eocd[10], eocd[11]]), 5);
    let body = String::from_utf8_lossy(&xlsx);
    for part in [
        "[Content_Types].xml",
        "xl/workbook.xml",
        "xl/worksheets/sheet1.xml",
        "上报率",
        B,
    ] {
        assert!(body.contains(part), "{part}");
    }
    // 3. The feed: every class-day in the reader's scope, in order; resuming after the last line
    //    gives nothing until something changes.
    let read = |after: u64| -> Vec<serde_json::Value> {
        let (status, body) = w.get(
            false,
            &w.viewer_x,
            &format!("/api/v1/changes?after={after}"),
        );
        assert_eq!(status, 200);
        String::from_utf8(body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = read(0);
    assert!(
        all.iter().all(|l| l["county"] == X),
        "a county viewer saw another county"
    );
    let seqs: Vec<u64> = all.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]));
    let days: std::collections::BTreeSet<(String, String, String)> = all
        .iter()
        .map(|l| {
            (
                l["school"].as_str().unwrap().to_owned(),
                l["date"].as_str().unwrap().to_owned(),
                l["class"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(days.len(), 10 + 8, "A's and B's class-days");
    let last = *seqs.last().unwrap();
    assert!(read(last).is_empty());
    // The cursor header says where to resume: past the lines of county Y this reader skipped.
    let cursor = w.cluster.rt.block_on(async {
        let r = w
            .client()
            .get(format!("{}/api/v1/changes?after=0", w.cluster.city_url()))
            .bearer_auth(&w.viewer_x)
            .send()
            .await
            .unwrap();
        r.headers()["schoolsync-cursor"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    let city_lines = read_as(&w, &w.viewer_city, 0);
    assert_eq!(cursor, city_lines.last().unwrap()["seq"].as_u64().unwrap());
    assert!(
        city_lines.len() > all.len(),
        "the city viewer sees county Y's lines too"
    );
    // A correction at school B shows up as one new line after the cursor.
    w.schools[1]
        .agent(&[
            "attendance",
            "record",
            "--date",
            "2026-11-06",
            "--class",
            "3-1",
            "--expected",
            "45",
            "--present",
            "45",
        ])
        .ok();
    w.schools[1].agent(&["sync"]).ok();
    w.cluster
        .wait_until("the new class-day is in the feed", || {
            !read(last).is_empty()
        });
    let new = read(last);
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        (new[0]["school"].as_str(), new[0]["date"].as_str()),
        (Some(B), Some("2026-11-06"))
    );
    // 4. The OpenAPI description is served and names every read endpoint.
    let (status, body) = w.get(false, &w.viewer_x, "/api/v1/openapi.json");
    assert_eq!(status, 200);
    let spec: serde_json::Value = serde_json::from_slice(&body).unwrap();
    for p in spec["paths"].as_object().unwrap().keys() {
        let path = p.replace("{school}", A);
        let (status, _) = w.get(false, &w.viewer_city, &path);
        assert!(status == 200, "{p} answered {status}");
    }
}

#[test]
fn completeness_says_where_missing_days_are_stuck() {
    let w = week();
    let friday = "2026-11-06";
    let county = |at_relay: bool| {
        w.json(
            at_relay,
            &w.viewer_x,
            &format!("/api/v1/summary?level=county&id={X}&period=week&date={MONDAY}"),
        )
    };
    let b_missing = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["children"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == B)
            .unwrap()["missing"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                (
                    m["date"].as_str().unwrap().to_owned(),
                    m["stuck"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // 1. B's own agent told the relay and the city what it holds (Monday to Thursday): its
    //    Friday was never entered, at either tier.
    let city = county(false);
    assert_eq!(
        b_missing(&city),
        vec![(friday.to_owned(), "not_entered".to_owned())]
    );
    let b = city["children"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == B)
        .unwrap();
    assert!(
        b["missing"][0]["school_reported_ms"].as_i64().is_some(),
        "B never reported"
    );
    assert_eq!(
        b_missing(&county(true)),
        vec![(friday.to_owned(), "not_entered".to_owned())]
    );
    // 2. A report that B has entered Friday, not yet confirmed by its relay: stuck at the school.
    let (_, b_token) = w.cluster.issue(Role::School, Some(B), Some(X));
    let report = |relay_confirmed: bool| {
        let mut days = serde_json::Map::new();
        for d in [
            "2026-11-02",
            "2026-11-03",
            "2026-11-04",
            "2026-11-05",
            friday,
        ] {
            days.insert(d.to_owned(), serde_json::json!(2));
        }
        serde_json::json!([{ "school": B, "tier": "school", "as_of_ms": schoolsync_server::now_ms(), "days": days, "relay_confirmed": relay_confirmed }])
    };
    let post = |token: &str, body: serde_json::Value| -> u16 {
        let client = w.client();
        w.cluster.rt.block_on(async {
            client
                .post(format!("{}/v1/holdings", w.cluster.city_url()))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(post(&b_token.token, report(false)), 200);
    assert_eq!(
        b_missing(&county(false)),
        vec![(friday.to_owned(), "at_school".to_owned())]
    );
    // 3. Confirmed by the relay (which has not reached the city): stuck at the county.
    assert_eq!(post(&b_token.token, report(true)), 200);
    assert_eq!(
        b_missing(&county(false)),
        vec![(friday.to_owned(), "at_county".to_owned())]
    );
    // 4. A school cannot report for another school, nor as a relay.
    let (_, a_token) = w.cluster.issue(Role::School, Some(A), Some(X));
    assert_eq!(post(&a_token.token, report(false)), 403);
    let mut as_relay = report(false);
    as_relay[0]["tier"] = serde_json::json!("relay");
    assert_eq!(post(&b_token.token, as_relay), 403);
    // 5. Once B really enters and syncs Friday, it is received everywhere.
    let days = school_days(MONDAY, 5);
    let path = w.schools[1].file("fri.csv", attendance_csv(2, &days[4..]).as_bytes());
    w.schools[1]
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    w.schools[1].agent(&["sync"]).ok();
    w.cluster.wait_until("the city receives B's Friday", || {
        b_missing(&county(false)).is_empty()
    });
}

/// Formats a rate as the dashboard does.
fn pct(v: &serde_json::Value) -> String {
    v.as_f64()
        .map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "—".to_owned())
}

#[test]
fn the_dashboard_in_a_real_browser_matches_the_api() {
    let Some(browser) =
        crate::browser::Browser::from_env("the_dashboard_in_a_real_browser_matches_the_api")
    else {
        return;
    };
    let w = week();
    let shots = crate::browser::screenshot_dir(w.cluster.dir.path());
    let page = browser.page(1024, 768);
    // The deployment's private CA is not in the test browser's store.
    page.call(
        "Security.setIgnoreCertificateErrors",
        serde_json::json!({ "ignore": true }),
    );
    let city = w.cluster.city_url();
    // 1. Without a credential the dashboard asks for one; a wrong one is refused in words.
    page.goto(&format!("{city}/"));
    assert!(page.text().contains("粘贴查看凭证"), "{}", page.text());
    page.fill("form[action='/login']", &[("token", "ssc1.not.valid")]);
    page.submit("document.querySelector(\"form[action='/login']\").requestSubmit()");
    assert!(page.text().contains("凭证无效"), "{}", page.text());
    // 2. The city viewer pastes the token and sees the city, counties as rows.
    page.fill("form[action='/login']", &[("token", &w.viewer_city)]);
    page.submit("document.querySelector(\"form[action='/login']\").requestSubmit()");
    page.goto(&format!("{city}/?level=city&period=week&date={MONDAY}"));
    assert_eq!(page.attr("#scope", "data-level").as_deref(), Some("city"));
    let api = w.json(
        false,
        &w.viewer_city,
        &format!("/api/v1/summary?level=city&period=week&date={MONDAY}"),
    );
    for row in std::iter::once(&api).chain(api["children"].as_array().unwrap()) {
        let id = row["id"].as_str().unwrap();
        let cell =
            |field: &str| page.text_of(&format!("tr[data-id='{id}'] td[data-field='{field}']"));
        assert_eq!(
            cell("completeness"),
            pct(&row["completeness"]["rate"]),
            "row {id}"
        );
        assert_eq!(
            cell("attendance"),
            pct(&row["rates"]["attendance"]),
            "row {id}"
        );
        assert_eq!(
            cell("participation"),
            pct(&row["rates"]["afterschool_participation"]),
            "row {id}"
        );
        assert_eq!(
            cell("received"),
            row["completeness"]["received"].to_string(),
            "row {id}"
        );
    }
    assert!(
        page.eval("document.querySelectorAll('svg rect.bar').length")
            .as_u64()
            == Some(2)
    );
    page.screenshot(&shots.join("dashboard-city.png"));
    // 3. Drill down: county X, then school B, whose Friday is listed as not entered.
    page.submit(&format!(
        "document.querySelector(\"tr[data-id='{X}'] a\").click()"
    ));
    assert_eq!(page.attr("#scope", "data-id").as_deref(), Some(X));
    assert!(page.text().contains("承德县"), "{}", page.text());
    page.submit(&format!(
        "document.querySelector(\"tr[data-id='{B}'] a\").click()"
    ));
    assert_eq!(page.attr("#scope", "data-level").as_deref(), Some("school"));
    assert_eq!(
        page.attr("#missing tr[data-date='2026-11-06']", "data-stuck")
            .as_deref(),
        Some("not_entered")
    );
    assert!(page.text().contains("学校尚未录入"));
    page.screenshot(&shots.join("dashboard-school.png"));
    // 4. The compliance list of county X names A's over-limit day; a class drill-down shows days.
    page.goto(&format!(
        "{city}/?level=county&id={X}&period=week&date={MONDAY}"
    ));
    assert!(
        page.text_of("#flags").contains("书面作业超时"),
        "{}",
        page.text()
    );
    page.goto(&format!(
        "{city}/?level=school&id={A}&period=week&date={MONDAY}"
    ));
    page.submit(&format!(
        "document.querySelector(\"tr[data-id='{A}/3-1'] a\").click()"
    ));
    assert_eq!(page.attr("#scope", "data-level").as_deref(), Some("class"));
    assert_eq!(
        page.eval("document.querySelectorAll('#children tbody tr').length")
            .as_u64(),
        Some(6)
    );
    // 5. English on request.
    page.submit(
        "[...document.querySelectorAll('header a')].find(a => a.textContent === 'English').click()",
    );
    assert!(page.text().contains("Completeness"), "{}", page.text());
    page.screenshot(&shots.join("dashboard-class-en.png"));
    // 6. A county viewer signed in at the city cannot open another county.
    page.submit("document.querySelector(\"form[action='/logout']\").requestSubmit()");
    page.fill("form[action='/login']", &[("token", &w.viewer_y)]);
    page.submit("document.querySelector(\"form[action='/login']\").requestSubmit()");
    page.goto(&format!(
        "{city}/?level=county&id={X}&period=week&date={MONDAY}"
    ));
    assert!(page.text().contains("may not read"), "{}", page.text());
}

fn read_as(w: &Week, token: &str, after: u64) -> Vec<serde_json::Value> {
    let (status, body) = w.get(false, token, &format!("/api/v1/changes?after={after}"));
    assert_eq!(status, 200);
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
