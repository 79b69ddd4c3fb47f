//! The oversight dashboard served at `/`: server-rendered HTML (no JavaScript, no CDN, no assets
//! but inline CSS and SVG), Chinese by default with an English switch. City → county → school →
//! class → day drill-down, the completeness table, compliance lists, bar charts, exports.
//!
//! A viewer signs in by pasting their credential (the token, or the whole credential file); it
//! is kept in an HttpOnly, SameSite=Strict cookie and held to the same scope as the API.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::http::{resolve, summary_for, ScopeQuery, COMPLIANCE_ROWS_MAX};
use super::query::{self, Level, Row, Summary};
use crate::api::{authenticate_with, blocking, ApiError, AppState, TOKEN_COOKIE};

/// Compliance rows shown on a page (the API and exports give all).
pub const PAGE_FLAGS_MAX: usize = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(page))
        .route("/login", post(login))
        .route("/logout", post(logout))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    fn of(q: &ScopeQuery) -> Lang {
        if q.lang.as_deref() == Some("en") {
            Lang::En
        } else {
            Lang::Zh
        }
    }

    fn t<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", v * 100.0))
        .unwrap_or_else(|| "—".to_owned())
}

const CSS: &str = r#"
body{font-family:"Microsoft YaHei","PingFang SC","Noto Sans CJK SC",sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f4e79;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff}
main{padding:1em;max-width:1200px}
nav.crumbs a{margin-right:.3em}
table{border-collapse:collapse;background:#fff;margin:.5em 0 1.5em;font-size:.92em}
th,td{border:1px solid #ccd;padding:.25em .5em;text-align:right}
th{background:#e8edf3}
td.name,th.name{text-align:left}
.low{background:#fde2e1}
.bar{fill:#2e75b6}.bar2{fill:#70ad47}
.periods a,.periods strong{margin-right:.6em}
form.inline{display:inline}
.muted{color:#666}
"#;

fn shell(lang: Lang, title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html lang="{l}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{t}</title><style>{CSS}</style></head><body>{body}</body></html>"#,
        l = lang.t("zh-CN", "en"),
        t = esc(title)
    ))
}

fn login_page(lang: Lang, message: Option<&str>) -> Html<String> {
    let note = message
        .map(|m| format!(r#"<p class="low" role="alert">{}</p>"#, esc(m)))
        .unwrap_or_default();
    shell(
        lang,
        lang.t("双减数据监管 登录", "schoolsync oversight: sign in"),
        &format!(
            r#"<header><strong>{h}</strong></header><main>{note}<form method="post" action="/login">
<p><label for="token">{l}</label></p>
<p><textarea id="token" name="token" rows="6" cols="80" required></textarea></p>
<input type="hidden" name="lang" value="{lang_code}">
<p><button type="submit">{b}</button></p></form></main>"#,
            h = lang.t("双减数据监管", "schoolsync oversight"),
            l = lang.t(
                "粘贴查看凭证（凭证文件的全部内容或其中的 token）：",
                "Paste your viewer credential (the whole credential file, or its token):"
            ),
            b = lang.t("登录", "Sign in"),
            lang_code = lang.t("zh", "en"),
        ),
    )
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    #[serde(default)]
    lang: Option<String>,
}

/// Takes the token out of a pasted credential file (or a bare token).
fn token_of(text: &str) -> String {
    text.lines()
        .find_map(|l| {
            l.trim().strip_prefix("token").map(|r| {
                r.trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            })
        })
        .unwrap_or_else(|| text.trim().to_owned())
}

async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    let lang = if form.lang.as_deref() == Some("en") {
        Lang::En
    } else {
        Lang::Zh
    };
    let token = token_of(&form.token);
    match state.gate.verify(Some(&token)) {
        Ok(_) => {
            let cookie =
                format!("{TOKEN_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/");
            let target = if lang == Lang::En { "/?lang=en" } else { "/" };
            ([(header::SET_COOKIE, cookie)], Redirect::to(target)).into_response()
        }
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            login_page(
                lang,
                Some(&format!("{}: {e}", lang.t("凭证无效", "Not accepted"))),
            ),
        )
            .into_response(),
    }
}

async fn logout() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

fn link(q: &ScopeQuery, level: &str, id: &str) -> String {
    let mut s = format!("/?level={level}");
    if !id.is_empty() {
        s.push_str(&format!("&id={}", id.replace('/', "%2F")));
    }
    if let Some(p) = q.period {
        s.push_str(&format!("&period={}", p.name()));
    }
    if let Some(d) = q.date {
        s.push_str(&format!("&date={d}"));
    }
    if q.lang.as_deref() == Some("en") {
        s.push_str("&lang=en");
    }
    s
}

fn child_level(level: &str) -> Option<&'static str> {
    match level {
        "county" => Some("county"),
        "school" => Some("school"),
        "class" => Some("class"),
        _ => None,
    }
}

/// A horizontal bar chart of two rates per row (SVG, no script).
fn chart(lang: Lang, rows: &[Row]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let shown = &rows[..rows.len().min(40)];
    let h = 22 * shown.len() + 30;
    let mut svg = format!(
        r##"<svg role="img" aria-label="{a}" width="720" height="{h}" viewBox="0 0 720 {h}" xmlns="http://www.w3.org/2000/svg"><text x="200" y="14" font-size="12" fill="#2e75b6">■ {c}</text><text x="420" y="14" font-size="12" fill="#70ad47">■ {p}</text>"##,
        a = lang.t(
            "上报率与课后服务参与率",
            "Completeness and after-school participation"
        ),
        c = lang.t("上报率", "completeness"),
        p = lang.t("课后服务参与率", "after-school participation"),
    );
    for (i, r) in shown.iter().enumerate() {
        let y = 24 + i * 22;
        let a = r.completeness.rate.unwrap_or(0.0).clamp(0.0, 1.0) * 240.0;
        let b = r
            .rates
            .afterschool_participation
            .unwrap_or(0.0)
            .clamp(0.0, 1.0)
            * 240.0;
        let label: String = if r.name.is_empty() {
            r.id.clone()
        } else {
            r.name.clone()
        };
        svg.push_str(&format!(
            r#"<text x="0" y="{ty}" font-size="12">{n}</text><rect class="bar" x="200" y="{y}" width="{a:.0}" height="8"/><rect class="bar2" x="200" y="{y2}" width="{b:.0}" height="8"/><text x="{ax}" y="{ty}" font-size="11">{ac} / {bp}</text>"#,
            ty = y + 12,
            n = esc(&label.chars().take(16).collect::<String>()),
            y2 = y + 9,
            ax = 450,
            ac = pct(r.completeness.rate),
            bp = pct(r.rates.afterschool_participation),
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn table(lang: Lang, q: &ScopeQuery, summary: &Summary) -> String {
    let next = summary.children.first().and_then(|c| child_level(c.level));
    let mut out = format!(
        r#"<table id="children"><thead><tr><th class="name">{n}</th><th>{e}</th><th>{r}</th><th>{c}</th><th>{a}</th><th>{i}</th><th>{cl}</th><th>{h}</th><th>{o}</th><th>{g}</th><th>{p}</th><th>{f}</th><th>{fp}</th></tr></thead><tbody>"#,
        n = lang.t("名称", "Name"),
        e = lang.t("应报校日", "Expected"),
        r = lang.t("已报校日", "Received"),
        c = lang.t("上报率", "Completeness"),
        a = lang.t("出勤率", "Attendance"),
        i = lang.t("因病缺课率", "Illness absence"),
        cl = lang.t("聚集性病例", "Clusters"),
        h = lang.t("作业公示", "Homework publicity"),
        o = lang.t("书面作业超时", "Over limit"),
        g = lang.t("一二年级书面作业", "Grade 1-2 written"),
        p = lang.t("课后服务参与率", "After-school participation"),
        f = lang.t("满2小时", "≥120 min"),
        fp = lang.t("5+2达标班级（周）", "5+2 classes (week)"),
    );
    for r in std::iter::once(&summary.row).chain(&summary.children) {
        let is_total = std::ptr::eq(r, &summary.row);
        let name = if r.name.is_empty() {
            r.id.clone()
        } else {
            format!("{} {}", r.id, r.name)
        };
        let cell_name = match (is_total, next) {
            (false, Some(level)) => format!(
                r#"<a href="{}">{}</a>"#,
                esc(&link(q, level, &r.id)),
                esc(&name)
            ),
            _ => format!(
                "<strong>{}</strong>",
                esc(if name.is_empty() {
                    lang.t("合计", "Total")
                } else {
                    &name
                })
            ),
        };
        let low = r.completeness.rate.is_some_and(|v| v < 0.9);
        out.push_str(&format!(
            r#"<tr data-id="{id}"><td class="name">{cell_name}</td><td data-field="expected">{e}</td><td data-field="received">{rc}</td><td data-field="completeness" class="{low}">{c}</td><td data-field="attendance">{a}</td><td data-field="illness">{i}</td><td data-field="clusters">{cl}</td><td data-field="homework">{h}</td><td data-field="over_limit">{o}</td><td data-field="grade12">{g}</td><td data-field="participation">{p}</td><td data-field="full">{f}</td><td data-field="five_plus_two">{fp}</td></tr>"#,
            id = esc(&r.id),
            e = r.completeness.expected,
            rc = r.completeness.received,
            low = if low { "low" } else { "" },
            c = pct(r.completeness.rate),
            a = pct(r.rates.attendance),
            i = pct(r.rates.illness_absence),
            cl = if r.suppressed.contains(&"cluster_class_days") { "&lt;n".to_owned() } else { r.tally.cluster_class_days.to_string() },
            h = pct(r.rates.homework_publicity),
            o = r.tally.over_limit_class_days,
            g = r.tally.grade12_written_class_days,
            p = pct(r.rates.afterschool_participation),
            f = pct(r.rates.afterschool_full_sessions),
            fp = r
                .five_plus_two
                .map(|x| format!("{}/{}", x.compliant_classes, x.classes))
                .unwrap_or_else(|| "—".to_owned()),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ScopeQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let lang = Lang::of(&q);
    let claims = match authenticate_with(&state, &headers, true) {
        Ok(c) => c,
        Err(e) if e.code == "credential_missing" => return login_page(lang, None).into_response(),
        Err(e) => return (e.status, login_page(lang, Some(&e.message))).into_response(),
    };
    let render = async {
        let summary = summary_for(&state, &claims, &q).await?;
        let level = resolve(&state, &claims, &q)?;
        let (node, period, date) = (
            state.node.clone(),
            q.period.unwrap_or(super::calendar::Period::Week),
            q.date.unwrap_or(summary.from),
        );
        let lv = level.clone();
        let flags = blocking(move || {
            query::compliance(
                &node.store,
                &lv,
                period,
                date,
                COMPLIANCE_ROWS_MAX.min(PAGE_FLAGS_MAX),
            )
            .map_err(|_| ApiError::store())
        })
        .await?;
        Ok::<_, ApiError>((summary, level, flags))
    };
    let (summary, level, flags) = match render.await {
        Ok(v) => v,
        Err(e) => return (
            e.status,
            shell(
                lang,
                "schoolsync",
                &format!(
                    r#"<main><p class="low" role="alert">{}</p><p><a href="/">{}</a></p></main>"#,
                    esc(&e.message),
                    lang.t("返回", "Back")
                ),
            ),
        )
            .into_response(),
    };
    let crumbs = {
        let mut c = Vec::new();
        if state.gate.county.is_none() && claims.may_read_area(None) {
            c.push(format!(
                r#"<a href="{}">{}</a>"#,
                esc(&link(&q, "city", "")),
                lang.t("承德市", "Chengde")
            ));
        }
        match &level {
            Level::County(id) => c.push(format!("<span>{}</span>", esc(id))),
            Level::School(s) => c.push(format!("<span>{s}</span>")),
            Level::Class(s, cl) => {
                c.push(format!(
                    r#"<a href="{}">{s}</a>"#,
                    esc(&link(&q, "school", s.as_str()))
                ));
                c.push(format!("<span>{}</span>", esc(cl)));
            }
            Level::City => {}
        }
        c.join(" › ")
    };
    let periods: String = ["day", "week", "month", "term"]
        .iter()
        .map(|p| {
            let label = match (*p, lang) {
                ("day", Lang::Zh) => "日",
                ("week", Lang::Zh) => "周",
                ("month", Lang::Zh) => "月",
                ("term", Lang::Zh) => "学期",
                (p, _) => p,
            };
            if summary.period == *p {
                format!("<strong>{label}</strong>")
            } else {
                let mut q2 = q.clone();
                q2.period = serde_json::from_value(serde_json::Value::String((*p).to_owned())).ok();
                format!(
                    r#"<a href="{}">{label}</a>"#,
                    esc(&link(&q2, level.name(), &level.id()))
                )
            }
        })
        .collect();
    let export = |ext: &str| {
        let l = link(&q, level.name(), &level.id());
        format!("/api/v1/export.{ext}{}", &l[1..])
    };
    let other_lang = {
        let mut q2 = q.clone();
        q2.lang = Some(if lang == Lang::Zh {
            "en".into()
        } else {
            "zh".into()
        });
        let mut l = link(&q2, level.name(), &level.id());
        if lang == Lang::En {
            l = l.replace("&lang=en", "");
        }
        l
    };
    let flags_html = if flags.is_empty() {
        format!(
            "<p class=\"muted\">{}</p>",
            lang.t("本期无政策提示。", "No policy findings in this period.")
        )
    } else {
        let mut t = format!(
            r#"<table id="flags"><thead><tr><th class="name">{s}</th><th>{d}</th><th>{c}</th><th class="name">{f}</th></tr></thead><tbody>"#,
            s = lang.t("学校", "School"),
            d = lang.t("日期", "Date"),
            c = lang.t("班级", "Class"),
            f = lang.t("提示", "Findings"),
        );
        for f in &flags {
            t.push_str(&format!(
                r#"<tr><td class="name"><a href="{}">{} {}</a></td><td>{}</td><td>{}</td><td class="name">{}</td></tr>"#,
                esc(&link(&q, "school", &f.school)),
                esc(&f.school),
                esc(&f.name),
                f.date,
                esc(&f.class),
                esc(&f.flags.iter().map(|c| flag_words(lang, c)).collect::<Vec<_>>().join("；")),
            ));
        }
        t.push_str("</tbody></table>");
        t
    };
    let missing_html = {
        let rows: Vec<&Row> = std::iter::once(&summary.row)
            .chain(&summary.children)
            .filter(|r| r.level == "school" && !r.missing.is_empty())
            .collect();
        if rows.is_empty() {
            String::new()
        } else {
            let mut t = format!(
                r#"<h2>{h}</h2><table id="missing"><thead><tr><th class="name">{s}</th><th>{d}</th><th class="name">{w}</th></tr></thead><tbody>"#,
                h = lang.t(
                    "未收到的校日及所在环节",
                    "School-days not received, and where they are"
                ),
                s = lang.t("学校", "School"),
                d = lang.t("日期", "Date"),
                w = lang.t("所在环节", "Where"),
            );
            for r in rows {
                for m in r.missing.iter().take(PAGE_FLAGS_MAX) {
                    t.push_str(&format!(
                        r#"<tr data-school="{id}" data-date="{date}" data-stuck="{code}"><td class="name">{id} {name}</td><td>{date}</td><td class="name">{words}</td></tr>"#,
                        id = esc(&r.id),
                        name = esc(&r.name),
                        date = m.date,
                        code = serde_json::to_value(m.stuck).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                        words = m.stuck.words(lang == Lang::Zh),
                    ));
                }
            }
            t.push_str("</tbody></table>");
            t
        }
    };
    let title = format!(
        "{} {} {}",
        lang.t("双减数据监管", "schoolsync oversight"),
        summary.row.name,
        summary.row.id
    );
    let body = format!(
        r#"<header><strong>{h}</strong><nav class="crumbs">{crumbs}</nav><a href="{ol}">{olt}</a><form class="inline" method="post" action="/logout"><button type="submit">{lo}</button></form></header>
<main><h1 id="scope" data-level="{lvl}" data-id="{lid}">{name}</h1>
<p class="periods">{periods} <span class="muted">{from} – {to} · {sd} {sdl}</span></p>
<form method="get" action="/"><input type="hidden" name="level" value="{lvl}"><input type="hidden" name="id" value="{lid}"><input type="hidden" name="period" value="{pn}">{langfield}<label for="date">{dl}</label> <input id="date" name="date" type="date" value="{date}"> <button type="submit">{go}</button></form>
<h2>{ct}</h2>{chart}{table}
<p>{ex}: <a href="{csv}">CSV</a> · <a href="{xlsx}">Excel</a></p>{missing_html}
<h2>{ft}</h2>{flags_html}</main>"#,
        h = lang.t("双减数据监管", "schoolsync oversight"),
        ol = esc(&other_lang),
        olt = lang.t("English", "中文"),
        lo = lang.t("退出", "Sign out"),
        lvl = level.name(),
        lid = esc(&level.id()),
        name = esc(&if summary.row.name.is_empty() {
            summary.row.id.clone()
        } else {
            format!("{} {}", summary.row.id, summary.row.name)
        }),
        from = summary.from,
        to = summary.to,
        sd = summary.school_days,
        sdl = lang.t("个上报日（截至今日）", "school days to date"),
        pn = summary.period,
        langfield = if lang == Lang::En {
            r#"<input type="hidden" name="lang" value="en">"#
        } else {
            ""
        },
        dl = lang.t("日期", "Date"),
        date = q.date.unwrap_or(summary.from),
        go = lang.t("查看", "Show"),
        ct = lang.t("上报情况与指标", "Completeness and figures"),
        chart = chart(lang, &summary.children),
        table = table(lang, &q, &summary),
        ex = lang.t("导出", "Export"),
        csv = esc(&export("csv")),
        xlsx = esc(&export("xlsx")),
        ft = lang.t("政策提示（合规清单）", "Compliance list"),
    );
    shell(lang, &title, &body).into_response()
}

fn flag_words(lang: Lang, code: &str) -> String {
    let (zh, en) = match code {
        "illness-cluster" => ("疑似聚集性病例", "possible illness cluster"),
        "written-minutes-over-limit" => ("书面作业超时", "written homework over the limit"),
        "written-homework-grade-1-2" => ("一二年级布置书面作业", "written homework in grade 1-2"),
        "homework-forbidden" => ("违规作业", "forbidden homework practice"),
        "afterschool-too-short" => ("课后服务不足2小时", "after-school under 2 hours"),
        "afterschool-ends-early" => ("课后服务结束过早", "after-school ends too early"),
        "afterschool-new-lesson" => ("课后服务讲新课", "new lesson in after-school time"),
        other => (other, other),
    };
    lang.t(zh, en).to_owned()
}
