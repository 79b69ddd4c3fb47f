//! Importing a sheet through the desk: upload (a file, or cells pasted from Excel) → preview of
//! every row to be written and every bad row with its line and column → "confirm" writes all of
//! it as one action, or nothing.
//!
//! The preview parses with `import::parse`, the CLI's importer, without writing. The uploaded
//! bytes wait for the confirm step in memory under a random token, bounded in size
//! ([`UPLOAD_BYTES_MAX`]), number ([`PENDING_IMPORTS_MAX`]) and age ([`PENDING_IMPORT_MS`]); the
//! confirm step parses them again against the profile as it is then, so what is written is
//! checked at the moment of writing.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Form};
use schoolsync_protocol::Lang;
use serde::Deserialize;

use super::html::{self, esc, Nav};
use super::{
    html_response, random_token, refuse, see_other, Desk, PENDING_IMPORTS_MAX, PENDING_IMPORT_MS,
    PREVIEW_ROWS_MAX, UPLOAD_BYTES_MAX,
};
use crate::app::{AppError, NewRecord};
use crate::import::{self, Kind, Parsed};

/// An import waiting for "confirm".
pub struct Pending {
    kind: Kind,
    bytes: Vec<u8>,
    created: Instant,
}

const KINDS: [Kind; 4] = [
    Kind::Attendance,
    Kind::Homework,
    Kind::Afterschool,
    Kind::Classes,
];

fn kind_label(kind: Kind, lang: Lang) -> &'static str {
    match kind {
        Kind::Classes => lang.pick("班级名单", "classes"),
        Kind::Attendance => lang.pick("出勤", "attendance"),
        Kind::Homework => lang.pick("作业公示", "homework"),
        Kind::Afterschool => lang.pick("课后服务", "after-school"),
    }
}

fn kind_of(name: &str) -> Option<Kind> {
    KINDS.into_iter().find(|k| k.name() == name)
}

pub async fn import_form(Extension(lang): Extension<Lang>) -> Response {
    html_response(StatusCode::OK, form_page(lang, Kind::Attendance, ""))
}

fn form_page(lang: Lang, kind: Kind, problem: &str) -> String {
    let mut options = String::new();
    for k in KINDS {
        let sel = if k == kind { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{}\"{sel}>{}</option>",
            k.name(),
            kind_label(k, lang)
        );
    }
    let mut body = format!("<h1>{}</h1>", lang.pick("导入表格", "Import a sheet"));
    if !problem.is_empty() {
        body.push_str(&html::notice("error", problem));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/import/preview\" enctype=\"multipart/form-data\" id=\"import\" class=\"stack\">\
<label class=\"field\">{} <select name=\"kind\">{options}</select></label>\
<label class=\"field\">{} <input type=\"file\" name=\"file\" accept=\".csv,.txt,text/csv,text/plain\"></label>\
<label class=\"field\">{}<br><textarea name=\"text\" rows=\"8\" cols=\"60\"></textarea></label>\
<p class=\"hint\">{}</p><p><button type=\"submit\" accesskey=\"v\">{}</button></p></form>",
        lang.pick("表格内容", "The sheet holds"),
        lang.pick("选择文件（Excel/WPS 另存为 CSV）", "File (saved from Excel/WPS as CSV)"),
        lang.pick(
            "或者：从 Excel 复制含表头的单元格，粘贴到这里",
            "Or: copy the cells with their header row from Excel and paste them here"
        ),
        esc(&match lang {
            Lang::Zh => format!(
                "先预览：会列出将要写入的每一行和每个错误行，确认后才保存；有错误时什么也不写入。文件最大 {} MB。",
                UPLOAD_BYTES_MAX / 1024 / 1024
            ),
            Lang::En => format!(
                "A preview comes first: every row to be written and every bad row; nothing is saved until you confirm, and nothing at all if any row is bad. Files up to {} MB.",
                UPLOAD_BYTES_MAX / 1024 / 1024
            ),
        }),
        lang.pick("预览 (V)", "Preview (V)"),
    );
    html::page(
        lang,
        lang.pick("导入表格", "Import"),
        Nav::Import,
        "",
        &body,
    )
}

/// Reads the upload form: the kind, and the file or the pasted text.
async fn read_upload(mut multipart: Multipart) -> Result<(Option<Kind>, Vec<u8>), String> {
    let mut kind = None;
    let mut file = Vec::new();
    let mut text = Vec::new();
    while let Some(mut field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| e.to_string())? {
            if bytes.len() + chunk.len() > UPLOAD_BYTES_MAX {
                return Err(format!("> {UPLOAD_BYTES_MAX} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "kind" => kind = kind_of(String::from_utf8_lossy(&bytes).trim()),
            "file" => file = bytes,
            "text" => text = bytes,
            _ => {}
        }
    }
    let bytes = if file.iter().any(|b| !b.is_ascii_whitespace()) {
        file
    } else {
        text
    };
    Ok((kind, bytes))
}

pub async fn preview(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    multipart: Multipart,
) -> Response {
    let (kind, bytes) = match read_upload(multipart).await {
        Ok(v) => v,
        Err(reason) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                lang,
                &format!(
                    "文件太大或上传不完整（{reason}）。大文件请用命令行 schoolsync-agent import 导入。"
                ),
                &format!(
                    "The file is too large or the upload broke off ({reason}). Import large files with `schoolsync-agent import`."
                ),
            )
        }
    };
    let Some(kind) = kind else {
        return html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                lang,
                Kind::Attendance,
                lang.pick("请选择表格内容。", "Choose what the sheet holds."),
            ),
        );
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return html_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            form_page(
                lang,
                kind,
                lang.pick(
                    "请选择文件或粘贴表格。",
                    "Choose a file or paste the cells.",
                ),
            ),
        );
    }
    let job_bytes = bytes.clone();
    let parsed = match desk
        .gate()
        .with(move |a| {
            let profile = a.profile()?;
            Ok(import::parse(kind, &job_bytes, &profile, lang, &mut |_| {}))
        })
        .await
    {
        Ok(p) => p,
        Err(e) => return super::error_page(&e, lang),
    };
    let token = if parsed.errors.is_empty() && parsed.rows > 0 {
        let token = random_token();
        if let Ok(mut pending) = desk.inner.imports.lock() {
            let max_age = Duration::from_millis(PENDING_IMPORT_MS);
            pending.retain(|_, p| p.created.elapsed() < max_age);
            while pending.len() >= PENDING_IMPORTS_MAX {
                let oldest = pending
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => pending.remove(&k),
                    None => break,
                };
            }
            pending.insert(
                token.clone(),
                Pending {
                    kind,
                    bytes,
                    created: Instant::now(),
                },
            );
        }
        Some(token)
    } else {
        None
    };
    let status = if token.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    html_response(status, preview_page(lang, kind, &parsed, token.as_deref()))
}

fn preview_page(lang: Lang, kind: Kind, parsed: &Parsed, token: Option<&str>) -> String {
    let mut body = format!(
        "<h1>{}: {}</h1>",
        lang.pick("导入预览", "Import preview"),
        kind_label(kind, lang)
    );
    for column in &parsed.ignored_columns {
        body.push_str(&html::notice(
            "warn",
            &match lang {
                Lang::Zh => format!("不认识的列“{column}”，已忽略。"),
                Lang::En => format!("Unknown column {column:?} ignored."),
            },
        ));
    }
    if !parsed.errors.is_empty() {
        let total = parsed.errors.len() + parsed.errors_not_listed;
        body.push_str(&html::notice(
            "error",
            &match lang {
                Lang::Zh => format!(
                    "有 {total} 处错误，文件中的数据一条也不会写入。请在表格中改正后重新导入。"
                ),
                Lang::En => format!(
                    "{total} errors: nothing from this file will be written. Correct the sheet and import it again."
                ),
            },
        ));
        let _ = write!(
            body,
            "<table id=\"bad-rows\"><caption>{}</caption><thead><tr><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            lang.pick("错误行", "Bad rows"),
            lang.pick("行", "Line"),
            lang.pick("列", "Column"),
            lang.pick("原因", "Reason"),
        );
        for e in &parsed.errors {
            let _ = write!(
                body,
                "<tr data-line=\"{}\" data-column=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                e.line,
                esc(e.column.as_deref().unwrap_or("")),
                e.line,
                esc(e.column.as_deref().unwrap_or("")),
                esc(&e.reason)
            );
        }
        body.push_str("</tbody></table>");
        if parsed.errors_not_listed > 0 {
            let _ = write!(
                body,
                "<p>{}</p>",
                esc(&match lang {
                    Lang::Zh => format!("（另有 {} 处错误未列出）", parsed.errors_not_listed),
                    Lang::En => format!("({} more errors not listed)", parsed.errors_not_listed),
                })
            );
        }
    } else if parsed.rows == 0 {
        body.push_str(&html::notice(
            "error",
            lang.pick("表格里没有数据行。", "The sheet has no data rows."),
        ));
    } else {
        body.push_str(&html::notice(
            "ok",
            &match lang {
                Lang::Zh => format!(
                    "检查通过：将写入 {} 行。请核对后点“确认导入”。",
                    parsed.rows
                ),
                Lang::En => format!(
                    "All rows are good: {} rows will be written. Check them, then confirm.",
                    parsed.rows
                ),
            },
        ));
        body.push_str(&rows_table(lang, kind, parsed));
        if let Some(token) = token {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/import/confirm\" id=\"confirm\"><input type=\"hidden\" name=\"token\" value=\"{}\"><p><button type=\"submit\" accesskey=\"v\">{}</button></p></form>",
                esc(token),
                lang.pick("确认导入 (V)", "Confirm import (V)")
            );
        }
    }
    let _ = write!(
        body,
        "<p><a href=\"/import\">{}</a></p>",
        lang.pick("重新选择文件", "Choose another file")
    );
    html::page(
        lang,
        lang.pick("导入预览", "Import preview"),
        Nav::Import,
        "",
        &body,
    )
}

/// The rows to be written, one line each (the first [`PREVIEW_ROWS_MAX`]).
fn rows_table(lang: Lang, kind: Kind, parsed: &Parsed) -> String {
    let mut out = format!(
        "<table id=\"rows\"><caption>{}</caption><tbody>",
        lang.pick("将写入的数据", "Rows to be written")
    );
    if kind == Kind::Classes {
        for c in parsed.classes.iter().take(PREVIEW_ROWS_MAX) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} {}</td><td>{} {}</td></tr>",
                esc(c.class.as_str()),
                lang.pick("年级", "grade"),
                c.grade,
                lang.pick("在籍", "enrolled"),
                c.enrolled
            );
        }
    }
    for r in parsed.records.iter().take(PREVIEW_ROWS_MAX) {
        let (date, class) = r.class_day();
        let detail = match r {
            NewRecord::Attendance(a) => format!(
                "{} {} / {} {}, {} {}, {} {}, {} {}",
                lang.pick("实到", "present"),
                a.present,
                lang.pick("应到", "expected"),
                a.expected,
                lang.pick("病假", "sick"),
                a.sick,
                lang.pick("事假", "personal"),
                a.personal,
                lang.pick("其他", "other"),
                a.other
            ),
            NewRecord::Homework(h) => format!(
                "{} {} [{}, {}, {}] {} {}",
                h.subject,
                h.content,
                h.kind.label(lang),
                h.place.label(lang),
                h.layer.label(lang),
                h.minutes,
                lang.pick("分钟", "min")
            ),
            NewRecord::AfterSchool(s) => format!(
                "{}–{}, {} {}",
                s.start,
                s.end,
                lang.pick("参加", "participants"),
                s.participants
            ),
        };
        let _ = write!(
            out,
            "<tr><td>{date}</td><td>{}</td><td>{}</td></tr>",
            esc(class.as_str()),
            esc(&detail)
        );
    }
    out.push_str("</tbody></table>");
    let shown = parsed.records.len().max(parsed.classes.len());
    if shown > PREVIEW_ROWS_MAX {
        let _ = write!(
            out,
            "<p>{}</p>",
            esc(&match lang {
                Lang::Zh => format!("……另有 {} 行未显示（也会写入）", shown - PREVIEW_ROWS_MAX),
                Lang::En => format!(
                    "... {} more rows not shown (they are written too)",
                    shown - PREVIEW_ROWS_MAX
                ),
            })
        );
    }
    out
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    token: String,
}

pub async fn confirm(
    State(desk): State<Desk>,
    Extension(lang): Extension<Lang>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let pending = desk
        .inner
        .imports
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&form.token))
        .filter(|p| p.created.elapsed() < Duration::from_millis(PENDING_IMPORT_MS));
    let Some(pending) = pending else {
        return html_response(
            StatusCode::GONE,
            form_page(
                lang,
                Kind::Attendance,
                lang.pick(
                    "这次预览已过期或已导入，请重新选择文件。",
                    "This preview has expired or was already imported; choose the file again.",
                ),
            ),
        );
    };
    let kind = pending.kind;
    let outcome = desk
        .gate()
        .with(move |a| {
            let profile = a.profile()?;
            let parsed = import::parse(kind, &pending.bytes, &profile, lang, &mut |_| {});
            if !parsed.errors.is_empty() {
                return Err(AppError::ImportRefused(parsed.errors));
            }
            let action = format!("desk import {}", kind.name());
            let now = crate::clock::now_ms();
            if kind == Kind::Classes {
                a.add_classes(&parsed.classes, &action, now)?;
            } else {
                a.write_records(&parsed.records, &action, now)?;
            }
            Ok(parsed.rows)
        })
        .await;
    match outcome {
        Ok(rows) => see_other(&format!("/?imported={rows}")),
        Err(e) => super::error_page(&e, lang),
    }
}
