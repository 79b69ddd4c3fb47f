//! The clerk desk in a real headless browser: a clerk's day done entirely through the page that
//! `schoolsync-agent run` serves, checked against the CLI's `report` and the sync status.
//!
//! Needs `SCHOOLSYNC_BROWSER` (see `browser.rs`); without it the test says so and passes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::browser::{screenshot_dir, Browser, Page};
use crate::cluster::Cluster;
use crate::harness::*;

const DAY: &str = "2026-11-03";

/// `agent-under-test run` with the desk on a free port, killed on drop.
struct Running {
    child: Child,
    base: String,
    _stderr: Receiver<String>,
}

impl Running {
    fn start(school: &School) -> Running {
        let mut child = school
            .command(&["run", "--interval-secs", "3600", "--desk-port", "0"])
            .env("SCHOOLSYNC_LANG", "zh")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining so the agent never blocks.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).expect("run printed no desk address");
            if let Some(at) = line.find("http://127.0.0.1:") {
                break line[at..].trim_end_matches('/').to_owned();
            }
        };
        Running {
            child,
            base,
            _stderr: rx,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every control a clerk can reach has a label (screen readers, and a click on the words focuses
/// the field): plain forms stay usable by keyboard alone.
#[track_caller]
fn assert_labelled(page: &Page<'_>) {
    let unlabelled = page.eval(
        "[...document.querySelectorAll('main input:not([type=hidden]), main select, main textarea')]
           .filter(e => !e.labels || !e.labels.length).map(e => e.name)",
    );
    assert_eq!(
        unlabelled,
        serde_json::json!([]),
        "controls without a label"
    );
}

/// Reloads `path` until `js` holds (the sync loop works in the background).
#[track_caller]
fn reload_until(page: &Page<'_>, url: &str, what: &str, js: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        page.goto(url);
        if page.eval(js) == serde_json::Value::Bool(true) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the page says:\n{}",
            page.text()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The CLI's report of the day for one class (a separate process while `run` runs).
fn report_of(school: &School, class: &str) -> serde_json::Value {
    let report = school
        .agent(&["report", "--date", DAY, "--json"])
        .ok()
        .json();
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["class"]["class"] == class)
        .cloned()
        .unwrap()
}

/// 1. A school with three classes; `run` serves the desk, its county relay is down.
/// 2. The page shows every class lacking all three records.
/// 3. A bad attendance entry (present > expected) shows its error next to the field and saves
///    nothing; 4. corrected, all classes' attendance is saved from one screen.
/// 5. An over-limit homework item is saved with a warning; an after-school session is saved.
/// 6. `schoolsync-agent report` (another process, while `run` runs) shows all of it; a correction
///    through the page replaces the record.
/// 7. Sync status: failing with changes waiting; the relay comes up, "sync now", success; the
///    county's feedback on a class-day comes down and shows.
/// 8. Import: a bad sheet is previewed with its line and column and writes nothing; a good file
///    is previewed and confirmed.
/// 9. The printable homework notice and the weekly summary show the homework; every page fits an
///    800×600 screen; English switch.
#[test]
fn desk_a_clerks_day_in_a_real_browser() {
    let Some(browser) = Browser::from_env("desk_a_clerks_day_in_a_real_browser") else {
        return;
    };
    let started = Instant::now();
    // 1.
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let relay_url = cluster.relay_url(relay);
    cluster.stop_relay(relay);
    let school = cluster.school(SCHOOL, COUNTY, 3, &[relay_url]);
    let shots = screenshot_dir(school.data_dir());
    let run = Running::start(&school);
    let page = browser.page(1024, 768);

    // 2.
    page.goto(&run.url(&format!("/?date={DAY}")));
    let text = page.text();
    assert!(
        text.contains("还缺：出勤 3 个班，作业公示 3 个班，课后服务 3 个班"),
        "{text}"
    );
    for class in ["3-1", "3-2", "3-3"] {
        assert!(text.contains(class), "{text}");
    }
    page.screenshot(&shots.join("1-today-empty.png"));

    // 3. A bad entry: 46 present of 45 expected.
    page.goto(&run.url(&format!("/attendance?date={DAY}")));
    assert_labelled(&page);
    page.fill(
        "#attendance",
        &[
            ("present.0", "45"),
            ("present.1", "46"),
            ("present.2", "43"),
            ("sick.2", "2"),
            ("fever.2", "2"),
        ],
    );
    page.submit("document.querySelector('#attendance').requestSubmit()");
    let error = page.text_of("span.err[data-field='present.1']");
    assert!(
        error.contains("实到 46"),
        "error next to the field: {error:?}"
    );
    assert_eq!(
        page.attr("input[name='present.1']", "aria-invalid")
            .as_deref(),
        Some("true")
    );
    assert!(page.text().contains("本页数据一条也没有保存"));
    page.screenshot(&shots.join("2-attendance-error.png"));
    assert!(
        school.attendance_on(DAY).is_empty(),
        "nothing saved after an error"
    );

    // 4. Corrected: the values typed are still there; fix one and save all.
    assert_eq!(
        page.eval("document.querySelector(\"input[name='present.2']\").value"),
        "43"
    );
    page.fill("#attendance", &[("present.1", "44"), ("personal.1", "1")]);
    page.submit("document.querySelector('#attendance').requestSubmit()");
    let text = page.text();
    assert!(text.contains("出勤已保存"), "{text}");
    assert!(text.contains("还缺：出勤 0 个班"), "{text}");
    assert_eq!(
        page.attr("tr[data-class='3-2']", "data-attendance")
            .as_deref(),
        Some("true")
    );

    // 5. Homework over the 60-minute limit of grade 3: saved, with a warning.
    page.goto(&run.url(&format!("/homework?date={DAY}&class=3-1")));
    assert_labelled(&page);
    page.fill(
        "#homework",
        &[
            ("subject", "数学"),
            ("type", "written"),
            ("layer", "required"),
            ("place", "at-home"),
            ("minutes", "70"),
            ("content", "练习册第12页"),
        ],
    );
    page.submit("document.querySelector('#homework').requestSubmit()");
    let warning = page.text_of("#findings");
    assert!(warning.contains("超过上限 60 分钟"), "{warning:?}");
    assert!(page.text_of("#items").contains("练习册第12页"));
    page.screenshot(&shots.join("3-homework-warning.png"));
    // An impossible entry (no minutes) is refused next to the field.
    page.fill("#homework", &[("subject", "语文"), ("minutes", "")]);
    page.submit("document.querySelector('#homework').requestSubmit()");
    assert!(
        !page.text_of("span.err[data-field='minutes']").is_empty(),
        "{}",
        page.text()
    );
    page.goto(&run.url(&format!("/afterschool?date={DAY}&class=3-1")));
    assert_labelled(&page);
    page.fill(
        "#afterschool",
        &[
            ("participants", "40"),
            ("start", "16:00"),
            ("end", "18:00"),
            ("content", "homework-help"),
            ("content", "clubs"),
            ("teachers", "2"),
        ],
    );
    page.submit("document.querySelector('#afterschool').requestSubmit()");
    assert!(
        page.text().contains("3-1 班课后服务已保存"),
        "{}",
        page.text()
    );

    // 6. The CLI sees what the page entered.
    let r31 = report_of(&school, "3-1");
    assert_eq!(r31["attendance"]["present"], 45);
    assert_eq!(r31["homework"][0]["content"], "练习册第12页");
    assert_eq!(r31["homework"][0]["minutes"], 70);
    assert_eq!(r31["afterschool"]["start"], "16:00");
    assert_eq!(r31["afterschool"]["participants"], 40);
    assert!(
        r31["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "written-minutes-over-limit"),
        "{r31}"
    );
    let r32 = report_of(&school, "3-2");
    assert_eq!(
        (
            &r32["attendance"]["present"],
            &r32["attendance"]["personal"]
        ),
        (&serde_json::json!(44), &serde_json::json!(1))
    );
    // A correction: the form comes back filled with what was saved; the pupil was there after all.
    page.goto(&run.url(&format!("/attendance?date={DAY}")));
    assert_eq!(
        page.eval("document.querySelector(\"input[name='present.1']\").value"),
        "44"
    );
    page.fill("#attendance", &[("present.1", "45"), ("personal.1", "0")]);
    page.submit("document.querySelector('#attendance').requestSubmit()");
    assert!(page.text().contains("出勤已保存"), "{}", page.text());
    assert_eq!(report_of(&school, "3-2")["attendance"]["present"], 45);
    assert_eq!(
        report_of(&school, "3-3")["attendance"]["symptoms"]["fever"],
        2
    );

    // 7. The relay is down: the page says so, with changes waiting.
    let today = run.url(&format!("/?date={DAY}"));
    reload_until(
        &page,
        &today,
        "a failed sync shown",
        "document.querySelector('#sync').dataset.state === 'problem'",
    );
    let status = page.text_of("#sync");
    assert!(
        status.contains("最近的问题") && status.contains("怎么办"),
        "{status}"
    );
    assert!(status.contains("还没有成功同步过"), "{status}");
    assert_ne!(
        page.attr("#sync-waiting", "data-waiting").as_deref(),
        Some("0")
    );
    page.screenshot(&shots.join("4-sync-problem.png"));
    cluster.restart_relay(relay);
    page.submit("document.querySelector('#sync form').requestSubmit()");
    assert!(page.text().contains("已开始同步"));
    reload_until(
        &page,
        &today,
        "a successful sync shown",
        "document.querySelector('#sync').dataset.state === 'ok'",
    );
    let status = page.text_of("#sync");
    assert!(status.contains("最近一次成功同步"), "{status}");
    assert!(status.contains("所有修改都已送到上级"), "{status}");
    assert_eq!(
        cluster.attendance_at(Some(relay), "2113000001/2026-11"),
        3,
        "the relay has the day"
    );
    // The county writes feedback on a class-day; it comes down with the next sync.
    assert!(cluster
        .relay(relay)
        .node
        .put_feedback(
            &"2113000001/2026-11".parse().unwrap(),
            "2026-11-03/3-3",
            "请核实2名发热学生情况",
            chrono::Utc::now().timestamp_millis(),
        )
        .unwrap());
    page.submit("document.querySelector('#sync form').requestSubmit()");
    reload_until(
        &page,
        &today,
        "the county's feedback shown",
        "document.querySelector('#feedback').innerText.includes('请核实2名发热学生情况')",
    );
    assert!(
        page.text_of("#feedback").contains("县区 130821"),
        "{}",
        page.text_of("#feedback")
    );
    page.screenshot(&shots.join("5-sync-ok-feedback.png"));
    // Two days later the note is still on the clerk's first page.
    page.goto(&run.url("/?date=2026-11-05"));
    assert!(
        page.text_of("#feedback").contains("2026-11-03 3-3"),
        "{}",
        page.text_of("#feedback")
    );

    // 8. Import: a pasted sheet with a bad row is previewed, and nothing is written.
    page.goto(&run.url("/import"));
    assert_labelled(&page);
    page.fill(
        "#import",
        &[
            ("kind", "homework"),
            (
                "text",
                "日期\t班级\t学科\t预计时长\t作业内容\n2026-11-03\t3-2\t语文\t20\t背诵古诗\n2026-11-03\t3-2\t英语\t十分钟\t听读\n",
            ),
        ],
    );
    page.submit("document.querySelector('#import').requestSubmit()");
    assert!(
        page.attr("#bad-rows tr[data-line='3']", "data-column")
            .as_deref()
            == Some("预计时长"),
        "{}",
        page.text()
    );
    assert_eq!(page.eval("!!document.querySelector('#confirm')"), false);
    page.screenshot(&shots.join("6-import-bad-row.png"));
    assert_eq!(report_of(&school, "3-2")["homework"], serde_json::json!([]));
    // A good file, chosen as a clerk would (GBK, as Excel saves on Chinese Windows).
    let (gbk, _, _) = encoding_rs::GBK.encode(
        "日期,班级,学科,预计时长,作业内容,作业类型\r\n2026-11-03,3-2,语文,20,背诵古诗,书面\r\n2026-11-03,3-3,英语,15,听读课文,阅读\r\n",
    );
    let file = school.file("作业.csv", &gbk);
    page.goto(&run.url("/import"));
    page.fill("#import", &[("kind", "homework")]);
    page.set_file("input[name='file']", &file);
    page.submit("document.querySelector('#import').requestSubmit()");
    let rows = page.text_of("#rows");
    assert!(
        rows.contains("背诵古诗") && rows.contains("听读课文"),
        "{}",
        page.text()
    );
    assert_eq!(
        report_of(&school, "3-2")["homework"],
        serde_json::json!([]),
        "preview only"
    );
    page.submit("document.querySelector('#confirm').requestSubmit()");
    assert!(
        page.text().contains("导入完成：已写入 2 行"),
        "{}",
        page.text()
    );
    assert_eq!(
        report_of(&school, "3-2")["homework"][0]["content"],
        "背诵古诗"
    );

    // 9. The printable notice: the homework, and in print only the notice.
    page.goto(&run.url(&format!("/notice?date={DAY}&class=3-1")));
    let notice = page.text_of("#notice");
    assert!(
        notice.contains("作业公示") && notice.contains("练习册第12页") && notice.contains("70"),
        "{notice}"
    );
    page.media("print");
    assert_eq!(
        page.eval("getComputedStyle(document.querySelector('header')).display"),
        "none"
    );
    page.screenshot(&shots.join("7-notice-print.png"));
    page.media("screen");
    page.fill("form[action='/homework/review']", &[("by", "张主任")]);
    page.submit("document.querySelector(\"form[action='/homework/review']\").requestSubmit()");
    assert!(
        page.text_of("#notice").contains("张主任"),
        "{}",
        page.text()
    );
    assert!(report_of(&school, "3-1")["homework"][0]["published"] == true);
    page.goto(&run.url(&format!("/week?date={DAY}&class=3-1")));
    let week = page.text_of("#week");
    assert!(
        week.contains("练习册第12页") && week.contains("100.0%"),
        "{week}"
    );
    // An old 800×600 screen: no page is wider than the window (wide tables scroll on their own).
    let small = browser.page(800, 600);
    for path in ["/", "/attendance", "/homework", "/afterschool", "/import"] {
        small.goto(&run.url(&format!("{path}?date={DAY}")));
        assert_eq!(
            small.eval("document.documentElement.scrollWidth <= window.innerWidth"),
            true,
            "{path} is wider than 800 px"
        );
    }
    small.goto(&run.url(&format!("/attendance?date={DAY}")));
    small.screenshot(&shots.join("8-attendance-800x600.png"));
    // English on request, remembered by a cookie.
    page.goto(&run.url(&format!("/?date={DAY}&lang=en")));
    page.goto(&run.url(&format!("/?date={DAY}")));
    assert!(
        page.text().contains("Last successful sync"),
        "{}",
        page.text()
    );

    eprintln!(
        "desk browser story: {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}
