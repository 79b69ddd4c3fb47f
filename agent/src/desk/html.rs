//! HTML building blocks of the clerk desk: escaping, the page frame, form fields with their error
//! next to them. Plain server-side strings; no templates, no JavaScript.
//!
//! Everything dynamic goes through [`esc`]. Pages themselves are in `pages` and `upload`.

use std::fmt::Write as _;

use schoolsync_protocol::Lang;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value (class names may hold Chinese characters or `&`).
pub fn url(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which entry of the navigation bar a page belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Today,
    Attendance,
    Homework,
    AfterSchool,
    Import,
    Notice,
    None,
}

/// A whole page: head, navigation (with access keys 1-6), the body, the language switch.
pub fn page(lang: Lang, title: &str, nav: Nav, date: &str, body: &str) -> String {
    let items = [
        (Nav::Today, "/", "1", lang.pick("今日概览", "Today")),
        (
            Nav::Attendance,
            "/attendance",
            "2",
            lang.pick("出勤", "Attendance"),
        ),
        (
            Nav::Homework,
            "/homework",
            "3",
            lang.pick("作业公示", "Homework"),
        ),
        (
            Nav::AfterSchool,
            "/afterschool",
            "4",
            lang.pick("课后服务", "After-school"),
        ),
        (Nav::Import, "/import", "5", lang.pick("导入表格", "Import")),
        (
            Nav::Notice,
            "/notice",
            "6",
            lang.pick("公示单/周汇总", "Notices"),
        ),
    ];
    let mut navs = String::new();
    for (item, href, key, label) in items {
        let current = if item == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let q = if date.is_empty() || item == Nav::Import {
            String::new()
        } else {
            format!("?date={}", url(date))
        };
        let _ = write!(
            navs,
            "<a href=\"{href}{q}\" accesskey=\"{key}\"{current}>{key} {}</a> ",
            esc(label)
        );
    }
    let (other, other_label) = match lang {
        Lang::Zh => ("en", "English"),
        Lang::En => ("zh", "中文"),
    };
    let html_lang = match lang {
        Lang::Zh => "zh-CN",
        Lang::En => "en",
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"{html_lang}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><link rel=\"stylesheet\" href=\"/style.css\"></head><body>\
<a class=\"skip\" href=\"#main\">{skip}</a>\
<header class=\"noprint\"><nav>{navs}</nav><a class=\"lang\" href=\"?{keep}lang={other}\">{other_label}</a></header>\
<main id=\"main\">{body}</main></body></html>",
        title = esc(title),
        keep = if date.is_empty() {
            String::new()
        } else {
            format!("date={}&", url(date))
        },
        skip = lang.pick("跳到正文", "Skip to content"),
    )
}

/// A labelled text input with its error (if any) right after it.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub value: &'a str,
    pub error: Option<&'a str>,
    /// `text`, `number` or `time`.
    pub kind: &'a str,
    pub size: usize,
}

impl Field<'_> {
    /// The field as `<label>text <input></label>` plus its error.
    pub fn render(&self) -> String {
        format!(
            "<label class=\"field\">{label} {input}</label>",
            label = esc(self.label),
            input = self.input(),
        )
    }

    /// The bare input (for table cells, where the column header is the label) and its error.
    pub fn input(&self) -> String {
        let id = format!("f-{}", self.name.replace('.', "-"));
        let (invalid, err) = match self.error {
            Some(e) => (
                format!(" aria-invalid=\"true\" aria-describedby=\"{id}-err\""),
                format!(
                    "<span class=\"err\" id=\"{id}-err\" data-field=\"{}\">{}</span>",
                    esc(self.name),
                    esc(e)
                ),
            ),
            None => (String::new(), String::new()),
        };
        let extra = match self.kind {
            "number" => " inputmode=\"numeric\" min=\"0\"",
            _ => "",
        };
        format!(
            "<input type=\"{kind}\" id=\"{id}\" name=\"{name}\" value=\"{value}\" size=\"{size}\"{extra}{invalid}>{err}",
            kind = self.kind,
            name = esc(self.name),
            value = esc(self.value),
            size = self.size,
        )
    }
}

/// A `<select>` of `(value, label)` options with `selected` chosen.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], selected: &str) -> String {
    let mut out = format!(
        "<label class=\"field\">{} <select name=\"{}\">",
        esc(label),
        esc(name)
    );
    for (value, text) in options {
        let sel = if *value == selected { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(text)
        );
    }
    out.push_str("</select></label>");
    out
}

/// A notice box: `ok`, `warn` or `error`, announced to screen readers.
pub fn notice(class: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {class}\" role=\"status\">{}</p>",
        esc(text)
    )
}

/// The day chooser every dated page carries: previous/next day and a date field (a GET form).
pub fn day_chooser(
    lang: Lang,
    action: &str,
    date: chrono::NaiveDate,
    extra: &[(&str, &str)],
) -> String {
    let mut hidden = String::new();
    let mut query = String::new();
    for (k, v) in extra {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
        let _ = write!(query, "&{}={}", url(k), url(v));
    }
    let prev = date.pred_opt().unwrap_or(date);
    let next = date.succ_opt().unwrap_or(date);
    format!(
        "<form class=\"day noprint\" method=\"get\" action=\"{action}\">\
<a href=\"{action}?date={prev}{query}\">&larr; {prev_l}</a> \
<label>{date_l} <input type=\"date\" name=\"date\" value=\"{date}\"></label>{hidden} \
<button type=\"submit\">{go}</button> \
<a href=\"{action}?date={next}{query}\">{next_l} &rarr;</a></form>",
        prev_l = lang.pick("前一天", "previous day"),
        next_l = lang.pick("后一天", "next day"),
        date_l = lang.pick("日期", "Date"),
        go = lang.pick("查看", "Show"),
    )
}
