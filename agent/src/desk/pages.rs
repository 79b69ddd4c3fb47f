//! The desk's pages: today at a glance, the three entry forms (all classes' attendance on one
//! screen; homework and after-school per class), homework review, the printable homework notice
//! and the weekly summary.
//!
//! Each handler takes one turn at the store (`Gate::with`), calls `app::Agent` as the CLI does and
//! renders HTML. Form values are parsed by `import::parse_fields`, the importer's row parser; a
//! hard error is shown next to the field it names (`import::hard_error_field`) and nothing of the
//! form is saved. Findings are saved with the record and shown as warnings after the redirect.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use chrono::{Datelike, NaiveDate};
use schoolsync_protocol::ids::parse_date;
use schoolsync_protocol::lang::field_zh;
use schoolsync_protocol::records::{HomeworkType, Layer, Place, ServiceContent, Symptom};
use schoolsync_protocol::rules::Finding;
use schoolsync_protocol::{HardError, Lang};
use serde::Deserialize;

use super::html::{self, esc, url, Field, Nav};
use super::{error_page, html_response, see_other, Desk, FORM_FIELDS_MAX};
use crate::app::{AppError, ClassReport};
use crate::import::{hard_error_field, parse_fields, Kind, RowItem};
use crate::sync::LinkStatus;

/// What a page's query string may carry.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    date: Option<String>,
    class: Option<String>,
    /// Set after a save (POST-redirect-GET): what was saved.
    saved: Option<String>,
    /// The homework item (index in the class-day's list) to load into the form for correction.
    edit: Option<usize>,
    /// Set after "sync now".
    sync: Option<String>,
    /// Rows written by a confirmed import.
    imported: Option<usize>,
    /// How many were saved (attendance: classes).
    n: Option<usize>,
    /// Set after a homework review.
    reviewed: Option<usize>,
}

fn now_ms() -> i64 {
    crate::clock::now_ms()
}

/// The day a page shows: `date` if given, else today on this computer's clock.
fn day(text: Option<&str>) -> Result<NaiveDate, HardError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => parse_date(t),
        None => Ok(chrono::Local::now().date_naive()),
    }
}

fn weekday(date: NaiveDate, lang: Lang) -> &'static str {
    let i = date.weekday().num_days_from_monday() as usize;
    match lang {
        Lang::Zh => [
            "星期一",
            "星期二",
            "星期三",
            "星期四",
            "星期五",
            "星期六",
            "星期日",
        ][i],
        Lang::En => [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ][i],
    }
}

/// A field's name in the page's language (the CSV field names, as the importer knows them).
fn label(field: &str, lang: Lang) -> String {
    match lang {
        Lang::Zh => field_zh(field).to_owned(),
        Lang::En => field.replace('_', " "),
    }
}

fn findings_html(findings: &[Finding], lang: Lang) -> String {
    let mut out = String::new();
    for f in findings {
        let _ = write!(
            out,
            "<li class=\"finding\" data-code=\"{}\">{}</li>",
            esc(&f.code),
            esc(&f.message(lang))
        );
    }
    out
}

/// Runs `job` in a store turn; an error becomes its page.
async fn with_agent<T: Send + 'static>(
    desk: &Desk,
    lang: Lang,
    job: impl FnOnce(&crate::app::Agent) -> Result<T, AppError> + Send + 'static,
) -> Result<T, Response> {
    desk.gate()
        .with(job)
        .await
        .map_err(|e| error_page(&e, lang))
}

/// The day a page asks for (`?date=`, default today) and its report; an error becomes its page.
async fn day_report(
    desk: &Desk,
    lang: Lang,
    q: &PageQuery,
) -> Result<(NaiveDate, Vec<ClassReport>), Response> {
    let date = day(q.date.as_deref()).map_err(|e| bad_date(e, lang))?;
    let report = with_agent(desk, lang, move |a| a.report(date)).await?;
    Ok((date, report))
}

fn bad_date(e: HardError, lang: Lang) -> Response {
    error_page(&AppError::Refused(e), lang)
}

// ---------------------------------------------------------------------------------------------
// Today at a glance.

pub async fn today(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let date = match day(q.date.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_date(e, lang),
    };
    let (profile, links, report, feedback) = match with_agent(&desk, lang, move |a| {
        // The upstreams' state as `status` reads it (not the whole of `status`, which also
        // counts conflicts over every month).
        let week_before = date.checked_sub_days(chrono::Days::new(7)).unwrap_or(date);
        Ok((
            a.profile()?,
            crate::sync::statuses(a)?,
            a.report(date)?,
            a.feedback_between(week_before, date)?,
        ))
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let syncing = desk.gate().is_syncing();
    let d = date.to_string();
    let mut body = format!(
        "<h1>{} <small>{d} {}</small></h1>",
        esc(&profile.name),
        weekday(date, lang)
    );
    body.push_str(&html::day_chooser(lang, "/", date, &[]));
    if let Some(what) = &q.saved {
        let text = match what.as_str() {
            "attendance" if q.n == Some(0) => {
                body.push_str(&html::notice(
                    "warn",
                    lang.pick(
                        "没有保存：没有哪个班填写了“实到”。",
                        "Nothing saved: no class had \"present\" filled in.",
                    ),
                ));
                ""
            }
            "attendance" => lang.pick("出勤已保存。", "Attendance saved."),
            _ => lang.pick("已保存。", "Saved."),
        };
        if !text.is_empty() {
            body.push_str(&html::notice("ok", text));
        }
    }
    if let Some(n) = q.imported {
        body.push_str(&html::notice(
            "ok",
            &match lang {
                Lang::Zh => format!("导入完成：已写入 {n} 行。"),
                Lang::En => format!("Import done: {n} rows written."),
            },
        ));
    }
    if q.sync.is_some() {
        body.push_str(&html::notice(
            "ok",
            lang.pick(
                "已开始同步，几秒后刷新本页即可看到结果。",
                "Sync started; reload this page in a few seconds to see the result.",
            ),
        ));
    }
    // What is missing.
    let lacking = |f: &dyn Fn(&ClassReport) -> bool| report.iter().filter(|r| !f(r)).count();
    let no_att = lacking(&|r| r.attendance.is_some());
    let no_hw = lacking(&|r| !r.homework.is_empty());
    let no_as = lacking(&|r| r.afterschool.is_some());
    if report.is_empty() {
        body.push_str(&html::notice(
            "warn",
            lang.pick(
                "还没有班级。请用“导入表格”导入班级名单（班级、年级、在籍人数）。",
                "No classes yet. Import the class list (class, grade, enrolled) under Import.",
            ),
        ));
    } else if no_att + no_hw + no_as == 0 {
        body.push_str(&html::notice(
            "ok",
            lang.pick(
                "这一天各班数据都已登记。",
                "Every class has all records for this day.",
            ),
        ));
    } else {
        body.push_str(&html::notice(
            "warn",
            &match lang {
                Lang::Zh => format!(
                    "还缺：出勤 {no_att} 个班，作业公示 {no_hw} 个班，课后服务 {no_as} 个班。"
                ),
                Lang::En => format!(
                    "Still missing: attendance of {no_att} classes, homework of {no_hw}, after-school of {no_as}."
                ),
            },
        ));
    }
    let missing = lang.pick("未登记", "missing");
    let _ = write!(
        body,
        "<table id=\"classes\"><caption>{}</caption><thead><tr><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th><th scope=\"col\">{}</th></tr></thead><tbody>",
        lang.pick("各班登记情况", "Classes"),
        lang.pick("班级", "Class"),
        lang.pick("出勤", "Attendance"),
        lang.pick("作业公示", "Homework"),
        lang.pick("课后服务", "After-school"),
        lang.pick("提示", "Findings"),
    );
    for r in &report {
        let c = r.class.class.as_str();
        let cq = format!("date={d}&class={}", url(c));
        let att = match &r.attendance {
            Some(a) => format!("<span class=\"yes\">✓ {}/{}</span>", a.present, a.expected),
            None => format!("<a class=\"no\" href=\"/attendance?date={d}\">{missing}</a>"),
        };
        let hw = if r.homework.is_empty() {
            format!("<a class=\"no\" href=\"/homework?{cq}\">{missing}</a>")
        } else {
            format!(
                "<a class=\"yes\" href=\"/homework?{cq}\">✓ {} {}</a>",
                r.homework.len(),
                lang.pick("项", "items")
            )
        };
        let after = match &r.afterschool {
            Some(s) => format!(
                "<a class=\"yes\" href=\"/afterschool?{cq}\">✓ {}–{}</a>",
                s.start, s.end
            ),
            None => format!("<a class=\"no\" href=\"/afterschool?{cq}\">{missing}</a>"),
        };
        let _ = write!(
            body,
            "<tr data-class=\"{}\" data-attendance=\"{}\" data-homework=\"{}\" data-afterschool=\"{}\"><th scope=\"row\">{}</th><td>{att}</td><td>{hw}</td><td>{after}</td><td><ul>{}</ul></td></tr>",
            esc(c),
            r.attendance.is_some(),
            r.homework.len(),
            r.afterschool.is_some(),
            esc(c),
            findings_html(&r.findings, lang),
        );
    }
    body.push_str("</tbody></table>");
    // Feedback from upstream: the shown day and the week before it, newest first.
    let _ = write!(
        body,
        "<section id=\"feedback\"><h2>{}</h2>",
        lang.pick(
            "上级意见（所选日期及前 7 天）",
            "Feedback from the county or city (this day and the 7 before)"
        )
    );
    if feedback.is_empty() {
        let _ = write!(
            body,
            "<p>{}</p>",
            lang.pick("没有上级意见。", "No feedback.")
        );
    }
    for (day, class, fb) in &feedback {
        let by = if fb.by == "city" {
            lang.pick("市教育局", "city bureau").to_owned()
        } else {
            format!("{}{}", lang.pick("县区 ", "county "), fb.by)
        };
        let _ = write!(
            body,
            "<p class=\"feedback\"><strong>{day} {}</strong> ({} {}): {}</p>",
            esc(class),
            esc(&by),
            esc(&chrono::DateTime::parse_from_rfc3339(&fb.at)
                .map(|t| local_time(t.timestamp_millis()))
                .unwrap_or_else(|_| fb.at.clone())),
            esc(&fb.note)
        );
    }
    body.push_str("</section>");
    body.push_str(&sync_section(&links, syncing, lang));
    let title = lang.pick("今日概览", "Today");
    html_response(
        StatusCode::OK,
        html::page(lang, title, Nav::Today, &d, &body),
    )
}

fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

fn ago(ms: i64, lang: Lang) -> String {
    let minutes = (now_ms() - ms).max(0) / 60_000;
    match (minutes, lang) {
        (0, _) => lang.pick("刚刚", "just now").to_owned(),
        (m, Lang::Zh) if m < 120 => format!("{m} 分钟前"),
        (m, Lang::En) if m < 120 => format!("{m} min ago"),
        (m, Lang::Zh) if m < 48 * 60 => format!("{} 小时前", m / 60),
        (m, Lang::En) if m < 48 * 60 => format!("{} hours ago", m / 60),
        (m, Lang::Zh) => format!("{} 天前", m / 60 / 24),
        (m, Lang::En) => format!("{} days ago", m / 60 / 24),
    }
}

/// Sync status in words: last success, changes waiting, the last problem and what to do.
/// `data-state` is `none` (no upstream), `ok`, `waiting` or `problem`.
fn sync_section(links: &[LinkStatus], syncing: bool, lang: Lang) -> String {
    let mut out = String::new();
    let last_success = links.iter().filter_map(|l| l.last_success_ms).max();
    let waiting = links
        .iter()
        .map(|l| l.unconfirmed_changes)
        .min()
        .unwrap_or(0);
    let latest = links.iter().max_by_key(|l| l.last_attempt_ms.unwrap_or(0));
    let problem = latest.filter(|l| {
        l.last_error_zh.is_some() && l.last_attempt_ms.unwrap_or(0) > last_success.unwrap_or(0)
    });
    let state = if links.is_empty() {
        "none"
    } else if problem.is_some() {
        "problem"
    } else if waiting > 0 {
        "waiting"
    } else {
        "ok"
    };
    let _ = write!(
        out,
        "<section id=\"sync\" data-state=\"{state}\"><h2>{}</h2>",
        lang.pick("与上级同步", "Sync with the county and city")
    );
    if links.is_empty() {
        let _ = write!(
            out,
            "<p>{}</p></section>",
            lang.pick(
                "还没有配置上级服务器：数据只保存在这台电脑上。请县教育局技术人员配置。",
                "No upstream server is configured: the data stays on this computer. Ask the county's IT helper to set it up."
            )
        );
        return out;
    }
    out.push_str("<ul>");
    match last_success {
        Some(ms) => {
            let _ = write!(
                out,
                "<li id=\"sync-last\">{} {} ({})</li>",
                lang.pick("最近一次成功同步：", "Last successful sync:"),
                esc(&local_time(ms)),
                esc(&ago(ms, lang))
            );
        }
        None => {
            let _ = write!(
                out,
                "<li id=\"sync-last\">{}</li>",
                lang.pick("还没有成功同步过。", "Never synced successfully yet.")
            );
        }
    }
    let _ = write!(
        out,
        "<li id=\"sync-waiting\" data-waiting=\"{waiting}\">{}</li>",
        if waiting == 0 {
            lang.pick(
                "所有修改都已送到上级。",
                "Every change has reached the upstream.",
            )
            .to_owned()
        } else {
            match lang {
                Lang::Zh => format!("有 {waiting} 项修改等待发送（已安全保存在本机）。"),
                Lang::En => format!(
                    "{waiting} changes are waiting to be sent (they are safe on this computer)."
                ),
            }
        }
    );
    if let Some(l) = problem {
        let error = match lang {
            Lang::Zh => l.last_error_zh.as_deref(),
            Lang::En => l.last_error_en.as_deref(),
        }
        .unwrap_or_default();
        let _ = write!(
            out,
            "<li id=\"sync-problem\" class=\"problem\">{} {} ({})<br>{}</li>",
            lang.pick("最近的问题：", "Last problem:"),
            esc(error),
            esc(&local_time(l.last_attempt_ms.unwrap_or(0))),
            lang.pick(
                "怎么办：请检查这台电脑能否上网。数据已安全保存在本机，网络恢复后会自动发送；也可以点“立即同步”再试。如果一天以上都同步不上，请联系县教育局技术人员。",
                "What to do: check that this computer is online. The data is safe here and will be sent automatically once the network is back; you can also press \"Sync now\". If it keeps failing for more than a day, call the county's IT helper."
            )
        );
    }
    if syncing {
        let _ = write!(
            out,
            "<li id=\"sync-running\">{}</li>",
            lang.pick("正在同步……", "Syncing now...")
        );
    }
    let _ = write!(
        out,
        "</ul><form method=\"post\" action=\"/sync\" class=\"noprint\"><button type=\"submit\" accesskey=\"s\">{}</button></form></section>",
        lang.pick("立即同步 (S)", "Sync now (S)")
    );
    out
}

// ---------------------------------------------------------------------------------------------
// Attendance: every class on one screen.

/// Attendance columns of the form, in order (the importer's field names).
const ATTENDANCE_FIELDS: [&str; 10] = [
    "expected",
    "present",
    "sick",
    "personal",
    "other",
    "fever",
    "cough",
    "diarrhoea",
    "vomiting",
    "rash",
];

/// Parses a form body into name → value (the last of repeated names wins except where joined),
/// refusing more than [`FORM_FIELDS_MAX`] fields.
fn form_map(
    pairs: Vec<(String, String)>,
    lang: Lang,
) -> Result<HashMap<String, String>, Box<Response>> {
    if pairs.len() > FORM_FIELDS_MAX {
        return Err(Box::new(super::refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            lang,
            "表单字段太多。",
            "Too many form fields.",
        )));
    }
    let mut map: HashMap<String, String> = HashMap::new();
    for (k, v) in pairs {
        map.entry(k)
            .and_modify(|old| {
                old.push(',');
                old.push_str(&v);
            })
            .or_insert(v);
    }
    Ok(map)
}

pub async fn attendance_form(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (date, report) = match day_report(&desk, lang, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    attendance_page(lang, date, &report, None, &HashMap::new(), StatusCode::OK)
}

fn attendance_page(
    lang: Lang,
    date: NaiveDate,
    report: &[ClassReport],
    posted: Option<&HashMap<String, String>>,
    errors: &HashMap<String, String>,
    status: StatusCode,
) -> Response {
    let d = date.to_string();
    let mut body = format!(
        "<h1>{} <small>{d} {}</small></h1>",
        lang.pick("各班出勤", "Attendance, all classes"),
        weekday(date, lang)
    );
    body.push_str(&html::day_chooser(lang, "/attendance", date, &[]));
    if !errors.is_empty() {
        body.push_str(&html::notice(
            "error",
            &match lang {
                Lang::Zh => format!(
                    "有 {} 处错误（见红字），本页数据一条也没有保存。改正后再点“保存”。",
                    errors.len()
                ),
                Lang::En => format!(
                    "{} errors (in red): nothing on this page was saved. Correct them and save again.",
                    errors.len()
                ),
            },
        ));
    }
    let _ = write!(
        body,
        "<p class=\"hint\">{}</p><form method=\"post\" action=\"/attendance\" id=\"attendance\"><input type=\"hidden\" name=\"date\" value=\"{d}\"><div class=\"scroll\"><table><thead><tr><th scope=\"col\">{}</th>",
        lang.pick(
            "“实到”为空的班级不保存。再次保存同一天会覆盖原记录（用来更正）。症状栏填因病缺课中有该症状的人数。",
            "Classes with an empty \"present\" are not saved. Saving a day again replaces it (for corrections). Symptom columns count illness absences with that symptom."
        ),
        lang.pick("班级", "Class")
    );
    for f in ATTENDANCE_FIELDS {
        let _ = write!(body, "<th scope=\"col\">{}</th>", esc(&label(f, lang)));
    }
    body.push_str("</tr></thead><tbody>");
    for (i, r) in report.iter().enumerate() {
        let c = r.class.class.as_str();
        let stored = |f: &str| -> String {
            let Some(a) = &r.attendance else {
                return if f == "expected" {
                    r.class.enrolled.to_string()
                } else {
                    String::new()
                };
            };
            match f {
                "expected" => a.expected.to_string(),
                "present" => a.present.to_string(),
                "sick" => a.sick.to_string(),
                "personal" => a.personal.to_string(),
                "other" => a.other.to_string(),
                symptom => Symptom::parse(symptom)
                    .and_then(|s| a.symptoms.get(s.code()))
                    .map(u32::to_string)
                    .unwrap_or_default(),
            }
        };
        let class_err = errors
            .get(&format!("class.{i}"))
            .map(|e| {
                format!(
                    "<span class=\"err\" data-field=\"class.{i}\">{}</span>",
                    esc(e)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr data-class=\"{ce}\"><th scope=\"row\">{ce}<input type=\"hidden\" name=\"class.{i}\" value=\"{ce}\">{}{class_err}</th>",
            if r.attendance.is_some() {
                format!(" <span class=\"yes\" title=\"{}\">✓</span>", lang.pick("已登记", "recorded"))
            } else {
                String::new()
            },
            ce = esc(c),
        );
        for f in ATTENDANCE_FIELDS {
            let name = format!("{f}.{i}");
            let value = match posted {
                Some(p) => p.get(&name).cloned().unwrap_or_default(),
                None => stored(f),
            };
            let field = Field {
                name: &name,
                label: f,
                value: &value,
                error: errors.get(&name).map(String::as_str),
                kind: "number",
                size: 4,
            };
            let _ = write!(
                body,
                "<td><label><span class=\"sr\">{} {}</span>{}</label></td>",
                esc(c),
                esc(&label(f, lang)),
                field.input()
            );
        }
        body.push_str("</tr>");
    }
    let _ = write!(
        body,
        "</tbody></table></div><p><button type=\"submit\" accesskey=\"v\">{}</button></p></form>",
        lang.pick("保存全部 (V)", "Save all (V)")
    );
    html_response(
        status,
        html::page(
            lang,
            lang.pick("出勤", "Attendance"),
            Nav::Attendance,
            &d,
            &body,
        ),
    )
}

pub async fn attendance_save(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let form = match form_map(pairs, lang) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let date = match day(form.get("date").map(String::as_str)) {
        Ok(d) => d,
        Err(e) => return bad_date(e, lang),
    };
    let posted = form.clone();
    let outcome = with_agent(&desk, lang, move |a| {
        let profile = a.profile()?;
        let d = date.to_string();
        let mut records = Vec::new();
        let mut errors = HashMap::new();
        let mut i = 0;
        while let Some(class) = form.get(&format!("class.{i}")) {
            let get = |f: &str| form.get(&format!("{f}.{i}")).map_or("", |v| v.trim());
            if !get("present").is_empty() {
                let mut fields: Vec<(&'static str, &str)> = vec![("date", &d), ("class", class)];
                fields.extend(ATTENDANCE_FIELDS.iter().map(|f| (*f, get(f))));
                match parse_fields(Kind::Attendance, fields, &profile) {
                    Ok(RowItem::Record(r)) => records.push(r),
                    Ok(RowItem::Class(_)) => {}
                    Err(e) => {
                        let field = hard_error_field(&e).unwrap_or("present");
                        errors.insert(format!("{field}.{i}"), e.message(lang));
                    }
                }
            }
            i += 1;
        }
        if errors.is_empty() && !records.is_empty() {
            a.write_records(&records, "desk attendance", now_ms())?;
        }
        let report = if errors.is_empty() {
            Vec::new()
        } else {
            a.report(date)?
        };
        Ok((errors, report, records.len()))
    })
    .await;
    match outcome {
        Ok((errors, _, saved)) if errors.is_empty() => {
            see_other(&format!("/?date={date}&saved=attendance&n={saved}"))
        }
        Ok((errors, report, _)) => attendance_page(
            lang,
            date,
            &report,
            Some(&posted),
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------
// Homework: per class.

/// Homework form fields, in order (the importer's field names).
const HOMEWORK_FIELDS: [&str; 7] = [
    "subject", "type", "layer", "place", "minutes", "content", "teacher",
];

/// The class chooser of per-class pages: every class, the current one marked, a mark of done.
fn class_chooser(
    lang: Lang,
    action: &str,
    date: NaiveDate,
    report: &[ClassReport],
    current: &str,
    done: impl Fn(&ClassReport) -> bool,
) -> String {
    let mut out = format!(
        "<nav class=\"classes noprint\" aria-label=\"{}\">",
        lang.pick("选择班级", "Choose a class")
    );
    for r in report {
        let c = r.class.class.as_str();
        let mark = if done(r) { " ✓" } else { "" };
        let cur = if c == current {
            " aria-current=\"true\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<a href=\"{action}?date={date}&class={}\"{cur}>{}{mark}</a> ",
            url(c),
            esc(c)
        );
    }
    out.push_str("</nav>");
    out
}

/// The chosen class: `class` if it exists, else the first.
fn chosen<'a>(report: &'a [ClassReport], class: Option<&str>) -> Option<&'a ClassReport> {
    class
        .and_then(|c| report.iter().find(|r| r.class.class.as_str() == c))
        .or_else(|| report.first())
}

pub async fn homework_form(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (date, report) = match day_report(&desk, lang, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(class) = chosen(&report, q.class.as_deref()) else {
        return no_classes(lang, date);
    };
    let mut values = HashMap::new();
    if let Some(item) = q.edit.and_then(|i| class.homework.get(i)) {
        values.insert("subject", item.subject.clone());
        values.insert("type", item.kind.code().to_owned());
        values.insert("layer", item.layer.code().to_owned());
        values.insert("place", item.place.code().to_owned());
        values.insert("minutes", item.minutes.to_string());
        values.insert("content", item.content.clone());
        values.insert("teacher", item.teacher.clone().unwrap_or_default());
    }
    homework_page(
        lang,
        date,
        &report,
        class,
        &values,
        &HashMap::new(),
        q.saved.is_some(),
        StatusCode::OK,
    )
}

fn no_classes(lang: Lang, date: NaiveDate) -> Response {
    html_response(
        StatusCode::OK,
        html::page(
            lang,
            lang.pick("没有班级", "No classes"),
            Nav::None,
            &date.to_string(),
            &html::notice(
                "warn",
                lang.pick(
                    "还没有班级。请先在“导入表格”导入班级名单。",
                    "No classes yet. Import the class list first (Import).",
                ),
            ),
        ),
    )
}

#[allow(clippy::too_many_arguments)] // One page, its data and its form state; a struct adds nothing.
fn homework_page(
    lang: Lang,
    date: NaiveDate,
    report: &[ClassReport],
    class: &ClassReport,
    values: &HashMap<&str, String>,
    errors: &HashMap<String, String>,
    saved: bool,
    status: StatusCode,
) -> Response {
    let d = date.to_string();
    let c = class.class.class.as_str();
    let mut body = format!(
        "<h1>{} <small>{} · {d} {}</small></h1>",
        lang.pick("作业公示", "Homework"),
        esc(c),
        weekday(date, lang)
    );
    body.push_str(&html::day_chooser(lang, "/homework", date, &[("class", c)]));
    body.push_str(&class_chooser(lang, "/homework", date, report, c, |r| {
        !r.homework.is_empty()
    }));
    if saved {
        body.push_str(&html::notice(
            "ok",
            lang.pick("作业已保存。", "Homework saved."),
        ));
    }
    if !class.findings.is_empty() {
        let _ = write!(
            body,
            "<div class=\"notice warn\" role=\"status\" id=\"findings\"><p>{}</p><ul>{}</ul></div>",
            lang.pick(
                "已保存，但请注意以下政策提示（已随记录上报）：",
                "Saved, but note these policy findings (reported with the record):"
            ),
            findings_html(&class.findings, lang)
        );
    }
    if !errors.is_empty() {
        body.push_str(&html::notice(
            "error",
            lang.pick(
                "未保存：请改正红字标出的内容。",
                "Not saved: correct what is marked in red.",
            ),
        ));
    }
    // Items already recorded.
    let _ = write!(
        body,
        "<table id=\"items\"><caption>{}</caption><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
        lang.pick("已登记的作业", "Recorded homework"),
        esc(&label("subject", lang)),
        esc(&label("content", lang)),
        esc(&label("type", lang)),
        esc(&label("layer", lang)),
        esc(&label("place", lang)),
        esc(&label("minutes", lang)),
        lang.pick("审核", "Review"),
    );
    if class.homework.is_empty() {
        let _ = write!(
            body,
            "<tr><td colspan=\"8\">{}</td></tr>",
            lang.pick(
                "这一天还没有登记作业。",
                "No homework recorded for this day."
            )
        );
    }
    for (i, h) in class.homework.iter().enumerate() {
        let review = match (&h.review, h.published) {
            (None, _) => lang.pick("未审核", "not reviewed").to_owned(),
            (Some(r), false) => format!("{} {}", lang.pick("已审核", "reviewed"), r.by),
            (Some(r), true) => format!("{} {}", lang.pick("已审核并公示", "published"), r.by),
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/homework?date={d}&class={}&edit={i}\">{}</a></td></tr>",
            esc(&h.subject),
            esc(&h.content),
            h.kind.label(lang),
            h.layer.label(lang),
            h.place.label(lang),
            h.minutes,
            esc(&review),
            url(c),
            lang.pick("修改", "edit"),
        );
    }
    body.push_str("</tbody></table>");
    // The entry form.
    let v = |f: &str| values.get(f).cloned().unwrap_or_default();
    let err = |f: &str| errors.get(f).map(String::as_str);
    let kinds: Vec<(&str, &str)> = HomeworkType::ALL
        .iter()
        .map(|k| (k.code(), k.label(lang)))
        .collect();
    let layers: Vec<(&str, &str)> = Layer::ALL
        .iter()
        .map(|k| (k.code(), k.label(lang)))
        .collect();
    let places: Vec<(&str, &str)> = Place::ALL
        .iter()
        .map(|k| (k.code(), k.label(lang)))
        .collect();
    let select_err = |f: &str| {
        err(f)
            .map(|e| format!("<span class=\"err\" data-field=\"{f}\">{}</span>", esc(e)))
            .unwrap_or_default()
    };
    let or = |f: &str, default: &str| {
        let value = v(f);
        if value.is_empty() {
            default.to_owned()
        } else {
            value
        }
    };
    let _ = write!(
        body,
        "<h2>{}</h2><form method=\"post\" action=\"/homework\" id=\"homework\" class=\"stack\">\
<input type=\"hidden\" name=\"date\" value=\"{d}\"><input type=\"hidden\" name=\"class\" value=\"{}\">{}\
<datalist id=\"subjects\">{}</datalist>{}{}{}{}{}{}{}\
<p class=\"hint\">{}</p><p><button type=\"submit\" accesskey=\"v\">{}</button></p></form>",
        lang.pick("登记一项作业", "Add a homework item"),
        esc(c),
        select_err("class"),
        ["语文", "数学", "英语", "道德与法治", "科学", "物理", "化学", "生物", "历史", "地理"]
            .iter()
            .map(|s| format!("<option value=\"{s}\">"))
            .collect::<String>(),
        Field { name: "subject", label: &label("subject", lang), value: &v("subject"), error: err("subject"), kind: "text", size: 10 }
            .render()
            .replacen("<input ", "<input list=\"subjects\" ", 1),
        html::select("type", &label("type", lang), &kinds, &or("type", "written")) + &select_err("type"),
        html::select("layer", &label("layer", lang), &layers, &or("layer", "required")) + &select_err("layer"),
        html::select("place", &label("place", lang), &places, &or("place", "at-home")) + &select_err("place"),
        Field { name: "minutes", label: &label("minutes", lang), value: &v("minutes"), error: err("minutes"), kind: "number", size: 4 }.render(),
        Field { name: "content", label: &label("content", lang), value: &v("content"), error: err("content"), kind: "text", size: 30 }.render(),
        Field { name: "teacher", label: &label("teacher", lang), value: &v("teacher"), error: err("teacher"), kind: "text", size: 8 }.render(),
        lang.pick(
            "同一学科、同一内容再次保存会更新原记录（用来更正）。超过时长上限或一二年级书面作业会保存并提示。",
            "Saving the same subject and content again updates it (for corrections). Over-limit minutes or written homework in grades 1-2 are saved with a warning."
        ),
        lang.pick("保存 (V)", "Save (V)"),
    );
    let _ = write!(
        body,
        "<p class=\"noprint\"><a href=\"/notice?date={d}&class={}\">{}</a></p>",
        url(c),
        lang.pick(
            "打印本班作业公示单、审核",
            "Print this class's notice; review"
        )
    );
    html_response(
        status,
        html::page(
            lang,
            lang.pick("作业公示", "Homework"),
            Nav::Homework,
            &d,
            &body,
        ),
    )
}

/// One class's record posted from its form: the fields, the day and the class.
struct Posted {
    form: HashMap<String, String>,
    date: NaiveDate,
    class: String,
}

impl Posted {
    fn read(pairs: Vec<(String, String)>, lang: Lang) -> Result<Posted, Box<Response>> {
        let form = form_map(pairs, lang)?;
        let date =
            day(form.get("date").map(String::as_str)).map_err(|e| Box::new(bad_date(e, lang)))?;
        let class = form.get("class").cloned().unwrap_or_default();
        Ok(Posted { form, date, class })
    }

    /// The posted values of `fields`, to put back into the form next to its errors.
    fn values(&self, fields: &[&'static str]) -> HashMap<&'static str, String> {
        fields
            .iter()
            .map(|f| (*f, self.form.get(*f).cloned().unwrap_or_default()))
            .collect()
    }
}

/// What saving one class's record came to: the errors by field (nothing was written if any)
/// and the day's report, read when the page needs it (`report` always, else only on errors).
type Saved = (HashMap<String, String>, Vec<ClassReport>);

/// Parses `fields` of a posted form with the importer's own row parser and writes the record,
/// as `action`; a hard error is placed on the field it names (else on `first`).
async fn save_class_record(
    desk: &Desk,
    lang: Lang,
    posted: &Posted,
    kind: Kind,
    fields: &'static [&'static str],
    action: &'static str,
    report: bool,
) -> Result<Saved, Response> {
    let (form, date, class) = (posted.form.clone(), posted.date, posted.class.clone());
    with_agent(desk, lang, move |a| {
        let profile = a.profile()?;
        let d = date.to_string();
        let get = |f: &str| form.get(f).map_or("", |v| v.trim());
        let mut row: Vec<(&'static str, &str)> = vec![("date", &d), ("class", &class)];
        row.extend(fields.iter().map(|f| (*f, get(f))));
        let mut errors = HashMap::new();
        match parse_fields(kind, row, &profile) {
            Ok(RowItem::Record(r)) => {
                a.write_records(&[r], action, now_ms())?;
            }
            Ok(RowItem::Class(_)) => {}
            Err(e) => {
                errors.insert(
                    hard_error_field(&e).unwrap_or(fields[0]).to_owned(),
                    e.message(lang),
                );
            }
        }
        let report = if report || !errors.is_empty() {
            a.report(date)?
        } else {
            Vec::new()
        };
        Ok((errors, report))
    })
    .await
}

pub async fn homework_save(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let posted = match Posted::read(pairs, lang) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (date, class) = (posted.date, &posted.class);
    let saved = save_class_record(
        &desk,
        lang,
        &posted,
        Kind::Homework,
        &HOMEWORK_FIELDS,
        "desk homework",
        false,
    )
    .await;
    match saved {
        Ok((errors, _)) if errors.is_empty() => see_other(&format!(
            "/homework?date={date}&class={}&saved=1",
            url(class)
        )),
        Ok((errors, report)) => {
            let Some(chosen) = chosen(&report, Some(class)) else {
                return no_classes(lang, date);
            };
            homework_page(
                lang,
                date,
                &report,
                chosen,
                &posted.values(&HOMEWORK_FIELDS),
                &errors,
                false,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(r) => r,
    }
}

#[derive(Deserialize)]
pub struct ReviewForm {
    date: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    publish: Option<String>,
}

/// Marks a class-day's homework reviewed (and published), as `homework review --by` does.
pub async fn homework_review(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Form(form): Form<ReviewForm>,
) -> Response {
    let date = match day(Some(&form.date)) {
        Ok(d) => d,
        Err(e) => return bad_date(e, lang),
    };
    let class = form.class.clone();
    let back = form.class.clone();
    let outcome = with_agent(&desk, lang, move |a| {
        let class = if class.is_empty() {
            None
        } else {
            Some(class.parse()?)
        };
        a.review_homework(
            date,
            class.as_ref(),
            &form.by,
            form.publish.is_some(),
            now_ms(),
        )
    })
    .await;
    match outcome {
        Ok(w) => see_other(&format!(
            "/notice?date={date}&class={}&reviewed={}",
            url(&back),
            w.records
        )),
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------
// After-school: per class.

/// After-school form fields besides the content checkboxes.
/// What the after-school form posts: its fields and the content boxes.
const AFTERSCHOOL_FORM_FIELDS: [&str; 6] = [
    "participants",
    "start",
    "end",
    "teachers",
    "outside_staff",
    "content",
];

pub async fn afterschool_form(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let (date, report) = match day_report(&desk, lang, &q).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(class) = chosen(&report, q.class.as_deref()) else {
        return no_classes(lang, date);
    };
    let mut values: HashMap<&str, String> = HashMap::new();
    if let Some(s) = &class.afterschool {
        values.insert("participants", s.participants.to_string());
        values.insert("start", s.start.to_string());
        values.insert("end", s.end.to_string());
        values.insert("teachers", s.teachers.to_string());
        values.insert("outside_staff", s.outside_staff.to_string());
        values.insert(
            "content",
            s.content
                .iter()
                .map(|c| c.code())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    afterschool_page(
        lang,
        date,
        &report,
        class,
        &values,
        &HashMap::new(),
        q.saved.as_deref(),
        StatusCode::OK,
    )
}

#[allow(clippy::too_many_arguments)] // One page, its data and its form state; a struct adds nothing.
fn afterschool_page(
    lang: Lang,
    date: NaiveDate,
    report: &[ClassReport],
    class: &ClassReport,
    values: &HashMap<&str, String>,
    errors: &HashMap<String, String>,
    saved: Option<&str>,
    status: StatusCode,
) -> Response {
    let d = date.to_string();
    let c = class.class.class.as_str();
    let mut body = format!(
        "<h1>{} <small>{} · {d} {}</small></h1>",
        lang.pick("课后服务", "After-school service"),
        esc(c),
        weekday(date, lang)
    );
    body.push_str(&html::day_chooser(
        lang,
        "/afterschool",
        date,
        &[("class", c)],
    ));
    body.push_str(&class_chooser(lang, "/afterschool", date, report, c, |r| {
        r.afterschool.is_some()
    }));
    if let Some(saved) = saved {
        body.push_str(&html::notice(
            "ok",
            &match lang {
                Lang::Zh => format!("{saved} 班课后服务已保存。"),
                Lang::En => format!("After-school of {saved} saved."),
            },
        ));
        if let Some(done) = report.iter().find(|r| r.class.class.as_str() == saved) {
            if !done.findings.is_empty() {
                let _ = write!(
                    body,
                    "<div class=\"notice warn\" role=\"status\" id=\"findings\"><p>{}</p><ul>{}</ul></div>",
                    lang.pick("已保存，但请注意：", "Saved, but note:"),
                    findings_html(&done.findings, lang)
                );
            }
        }
    }
    if !errors.is_empty() {
        body.push_str(&html::notice(
            "error",
            lang.pick(
                "未保存：请改正红字标出的内容。",
                "Not saved: correct what is marked in red.",
            ),
        ));
    }
    let v = |f: &str| values.get(f).cloned().unwrap_or_default();
    let err = |f: &str| errors.get(f).map(String::as_str);
    let chosen_content = v("content");
    let chosen_content: Vec<&str> = chosen_content.split(',').collect();
    let mut boxes = String::new();
    for sc in ServiceContent::ALL {
        let checked = if chosen_content.contains(&sc.code()) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            boxes,
            "<label class=\"check\"><input type=\"checkbox\" name=\"content\" value=\"{}\"{checked}> {}</label> ",
            sc.code(),
            sc.label(lang)
        );
    }
    let content_err = err("content")
        .map(|e| {
            format!(
                "<span class=\"err\" data-field=\"content\">{}</span>",
                esc(e)
            )
        })
        .unwrap_or_default();
    let class_err = err("class")
        .map(|e| format!("<span class=\"err\" data-field=\"class\">{}</span>", esc(e)))
        .unwrap_or_default();
    let field = |f: &'static str, kind: &'static str, size: usize| {
        Field {
            name: f,
            label: &label(f, lang),
            value: &v(f),
            error: err(f),
            kind,
            size,
        }
        .render()
    };
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/afterschool\" id=\"afterschool\" class=\"stack\">\
<input type=\"hidden\" name=\"date\" value=\"{d}\"><input type=\"hidden\" name=\"class\" value=\"{}\">{class_err}\
<p>{} {}: {}</p>{}{}{}<fieldset><legend>{}</legend>{boxes}{content_err}</fieldset>{}{}\
<p class=\"hint\">{}</p><p><button type=\"submit\" accesskey=\"v\">{}</button></p></form>",
        esc(c),
        esc(c),
        lang.pick("在籍人数", "enrolled"),
        class.class.enrolled,
        field("participants", "number", 4),
        field("start", "time", 6),
        field("end", "time", 6),
        esc(&label("content", lang)),
        field("teachers", "number", 3),
        field("outside_staff", "number", 3),
        lang.pick(
            "时间写作 16:00。再次保存同一天会覆盖原记录（用来更正）。少于 2 小时会保存并提示。",
            "Times like 16:00. Saving the same day again replaces it (for corrections). Under 2 hours is saved with a warning."
        ),
        lang.pick("保存 (V)", "Save (V)"),
    );
    html_response(
        status,
        html::page(
            lang,
            lang.pick("课后服务", "After-school"),
            Nav::AfterSchool,
            &d,
            &body,
        ),
    )
}

pub async fn afterschool_save(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let posted = match Posted::read(pairs, lang) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let (date, class) = (posted.date, &posted.class);
    let saved = save_class_record(
        &desk,
        lang,
        &posted,
        Kind::Afterschool,
        &AFTERSCHOOL_FORM_FIELDS,
        "desk afterschool",
        true,
    )
    .await;
    match saved {
        Ok((errors, report)) if errors.is_empty() => {
            // On to the next class still lacking its record, so a clerk goes down the list.
            let next = report
                .iter()
                .find(|r| r.afterschool.is_none())
                .map_or(class.clone(), |r| r.class.class.as_str().to_owned());
            see_other(&format!(
                "/afterschool?date={date}&class={}&saved={}",
                url(&next),
                url(class)
            ))
        }
        Ok((errors, report)) => {
            let Some(chosen) = chosen(&report, Some(class)) else {
                return no_classes(lang, date);
            };
            afterschool_page(
                lang,
                date,
                &report,
                chosen,
                &posted.values(&AFTERSCHOOL_FORM_FIELDS),
                &errors,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        }
        Err(r) => r,
    }
}

// ---------------------------------------------------------------------------------------------
// The printable homework notice and the weekly summary.

pub async fn notice(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let date = match day(q.date.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_date(e, lang),
    };
    let (profile, report) =
        match with_agent(&desk, lang, move |a| Ok((a.profile()?, a.report(date)?))).await {
            Ok(v) => v,
            Err(r) => return r,
        };
    let d = date.to_string();
    let Some(class) = q
        .class
        .as_deref()
        .and_then(|c| report.iter().find(|r| r.class.class.as_str() == c))
    else {
        // No class chosen: the list of notices and summaries.
        let mut body = format!(
            "<h1>{} <small>{d}</small></h1>",
            lang.pick(
                "作业公示单和周汇总",
                "Homework notices and weekly summaries"
            )
        );
        body.push_str(&html::day_chooser(lang, "/notice", date, &[]));
        body.push_str("<ul class=\"list\">");
        for r in &report {
            let c = url(r.class.class.as_str());
            let _ = write!(
                body,
                "<li><strong>{}</strong>: <a href=\"/notice?date={d}&class={c}\">{}</a> · <a href=\"/week?date={d}&class={c}\">{}</a></li>",
                esc(r.class.class.as_str()),
                lang.pick("作业公示单", "homework notice"),
                lang.pick("本周汇总", "weekly summary"),
            );
        }
        body.push_str("</ul>");
        return html_response(
            StatusCode::OK,
            html::page(lang, lang.pick("公示单", "Notices"), Nav::Notice, &d, &body),
        );
    };
    let c = class.class.class.as_str();
    let mut body = String::new();
    if let Some(n) = q.reviewed {
        body.push_str(&html::notice(
            "ok",
            &match lang {
                Lang::Zh => format!("已审核 {n} 项作业。"),
                Lang::En => format!("{n} homework items reviewed."),
            },
        ));
    }
    let _ = write!(
        body,
        "<article class=\"sheet\" id=\"notice\"><h1>{}</h1><p class=\"meta\">{} · {} {} · {d} {}</p>",
        lang.pick("作业公示", "Homework notice"),
        esc(&profile.name),
        esc(c),
        lang.pick("班", "class"),
        weekday(date, lang),
    );
    let _ = write!(
        body,
        "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        esc(&label("subject", lang)),
        esc(&label("content", lang)),
        esc(&label("type", lang)),
        esc(&label("layer", lang)),
        esc(&label("place", lang)),
        esc(&label("minutes", lang)),
    );
    for h in &class.homework {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.subject),
            esc(&h.content),
            h.kind.label(lang),
            h.layer.label(lang),
            h.place.label(lang),
            h.minutes
        );
    }
    if class.homework.is_empty() {
        let _ = write!(
            body,
            "<tr><td colspan=\"6\">{}</td></tr>",
            lang.pick("今日无作业登记。", "No homework recorded.")
        );
    }
    let written: u32 = class
        .homework
        .iter()
        .map(|h| h.written_at_home_minutes())
        .sum();
    let reviewers: Vec<&str> = class
        .homework
        .iter()
        .filter_map(|h| h.review.as_ref().map(|r| r.by.as_str()))
        .collect();
    let _ = write!(
        body,
        "</tbody></table><p>{}: {written} {}</p><p class=\"sign\">{}: {} &nbsp; {}: ________</p></article>",
        lang.pick("家庭书面作业合计", "Written homework at home"),
        lang.pick("分钟", "min"),
        lang.pick("审核人", "Reviewed by"),
        esc(reviewers.first().copied().unwrap_or("________")),
        lang.pick("班主任签字", "Class teacher"),
    );
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/homework/review\" class=\"noprint stack\"><h2>{}</h2>\
<input type=\"hidden\" name=\"date\" value=\"{d}\"><input type=\"hidden\" name=\"class\" value=\"{}\">\
<label class=\"field\">{} <input type=\"text\" name=\"by\" size=\"8\"></label>\
<label class=\"check\"><input type=\"checkbox\" name=\"publish\" value=\"1\" checked> {}</label>\
<p><button type=\"submit\">{}</button> <a href=\"/homework?date={d}&class={}\">{}</a> · <a href=\"/week?date={d}&class={}\">{}</a></p>\
<p class=\"hint\">{}</p></form>",
        lang.pick("审核", "Review"),
        esc(c),
        lang.pick("审核人", "Reviewer"),
        lang.pick("同时标记为已公示", "also mark as published"),
        lang.pick("标记为已审核", "Mark reviewed"),
        url(c),
        lang.pick("返回作业登记", "back to homework"),
        url(c),
        lang.pick("本周汇总", "weekly summary"),
        lang.pick("用浏览器的“打印”（Ctrl+P）打印本页，只打印公示单。", "Print with the browser (Ctrl+P); only the notice is printed."),
    );
    html_response(
        StatusCode::OK,
        html::page(
            lang,
            lang.pick("作业公示单", "Homework notice"),
            Nav::Notice,
            &d,
            &body,
        ),
    )
}

pub async fn week(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Query(q): Query<PageQuery>,
) -> Response {
    let date = match day(q.date.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_date(e, lang),
    };
    let monday = date - chrono::Days::new(u64::from(date.weekday().num_days_from_monday()));
    let days: Vec<NaiveDate> = (0..7)
        .filter_map(|i| monday.checked_add_days(chrono::Days::new(i)))
        .collect();
    let class = q.class.clone().unwrap_or_default();
    let days_for_job = days.clone();
    let class_for_job = class.clone();
    let (profile, rows) = match with_agent(&desk, lang, move |a| {
        let mut rows = Vec::new();
        for d in days_for_job {
            let report = a.report(d)?;
            rows.push((
                d,
                report
                    .into_iter()
                    .find(|r| r.class.class.as_str() == class_for_job),
            ));
        }
        Ok((a.profile()?, rows))
    })
    .await
    {
        Ok(v) => v,
        Err(r) => return r,
    };
    let d = date.to_string();
    if rows.iter().all(|(_, r)| r.is_none()) {
        return error_page(&AppError::Refused(HardError::UnknownClass { class }), lang);
    }
    let mut body = format!(
        "<article class=\"sheet\" id=\"week\"><h1>{}</h1><p class=\"meta\">{} · {} · {} – {}</p>",
        lang.pick("每周汇总", "Weekly summary"),
        esc(&profile.name),
        esc(&class),
        days.first().map(|d| d.to_string()).unwrap_or_default(),
        days.last().map(|d| d.to_string()).unwrap_or_default(),
    );
    let _ = write!(
        body,
        "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        lang.pick("日期", "Day"),
        lang.pick("出勤（实到/应到）", "Attendance (present/expected)"),
        lang.pick("作业", "Homework"),
        lang.pick("家庭书面作业分钟", "Written at home, min"),
        lang.pick("课后服务", "After-school"),
        lang.pick("提示", "Findings"),
    );
    let (mut present, mut expected, mut homework_days, mut written_total, mut after_days) =
        (0u32, 0u32, 0u32, 0u32, 0u32);
    for (day, r) in &rows {
        let Some(r) = r else { continue };
        let att = r.attendance.as_ref().map_or("—".to_owned(), |a| {
            present += a.present;
            expected += a.expected;
            format!("{}/{}", a.present, a.expected)
        });
        let subjects: Vec<String> = r
            .homework
            .iter()
            .map(|h| format!("{} {}", h.subject, h.content))
            .collect();
        let written: u32 = r.homework.iter().map(|h| h.written_at_home_minutes()).sum();
        if !r.homework.is_empty() {
            homework_days += 1;
            written_total += written;
        }
        let after = r.afterschool.as_ref().map_or("—".to_owned(), |s| {
            after_days += 1;
            format!("{}–{} ({}/{})", s.start, s.end, s.participants, s.enrolled)
        });
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{} {}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><ul>{}</ul></td></tr>",
            day.format("%m-%d"),
            weekday(*day, lang),
            att,
            esc(&subjects.join("；")),
            if r.homework.is_empty() { String::new() } else { written.to_string() },
            esc(&after),
            findings_html(&r.findings, lang),
        );
    }
    let rate = if expected > 0 {
        format!("{:.1}%", f64::from(present) * 100.0 / f64::from(expected))
    } else {
        "—".to_owned()
    };
    let avg = written_total.checked_div(homework_days).unwrap_or(0);
    let _ = write!(
        body,
        "</tbody></table><p id=\"week-totals\">{}: {rate} · {}: {avg} {} · {}: {after_days}</p></article>",
        lang.pick("本周出勤率", "Attendance this week"),
        lang.pick("平均每天家庭书面作业", "written homework at home per day"),
        lang.pick("分钟", "min"),
        lang.pick("课后服务天数", "after-school days"),
    );
    let _ = write!(
        body,
        "<p class=\"noprint\"><a href=\"/week?date={}&class={c}\">&larr; {}</a> · <a href=\"/week?date={}&class={c}\">{} &rarr;</a> · <a href=\"/notice?date={d}&class={c}\">{}</a></p>",
        monday - chrono::Days::new(7),
        lang.pick("上一周", "previous week"),
        monday + chrono::Days::new(7),
        lang.pick("下一周", "next week"),
        lang.pick("作业公示单", "homework notice"),
        c = url(&class),
    );
    html_response(
        StatusCode::OK,
        html::page(
            lang,
            lang.pick("每周汇总", "Weekly summary"),
            Nav::Notice,
            &d,
            &body,
        ),
    )
}
