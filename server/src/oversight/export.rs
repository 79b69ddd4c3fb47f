//! Exports of a summary's rows for Excel and WPS: CSV (UTF-8 with a byte-order mark, so Excel on
//! Windows reads the Chinese headers right) and XLSX (a minimal Office Open XML workbook, written
//! here: one sheet, inline strings, stored zip entries; no extra dependency).

use std::io::Write;

use super::query::{Row, Summary};

/// Column headers in Chinese (what Excel users at the bureaus read), with the English key.
pub const COLUMNS: [(&str, &str); 17] = [
    ("级别", "level"),
    ("代码", "id"),
    ("名称", "name"),
    ("应报校日", "expected"),
    ("已报校日", "received"),
    ("上报率", "completeness"),
    ("出勤率", "attendance"),
    ("因病缺课率", "illness_absence"),
    ("聚集性病例班日", "clusters"),
    ("作业公示班日占比", "homework_publicity"),
    ("书面作业超时班日", "over_limit"),
    ("一二年级书面作业班日", "grade12_written"),
    ("课后服务参与率", "participation"),
    ("课后服务满2小时占比", "full_sessions"),
    ("课后服务结束过早班日", "ends_early"),
    ("5+2达标班级（周）", "five_plus_two"),
    ("已隐藏的小数值", "suppressed"),
];

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2}%", v * 100.0)).unwrap_or_default()
}

/// One row as cells, in [`COLUMNS`] order.
pub fn cells(row: &Row) -> Vec<String> {
    let level = match row.level {
        "city" => "市",
        "county" => "县区",
        "school" => "学校",
        "class" => "班级",
        _ => "日",
    };
    let hidden = |f: &str| row.suppressed.contains(&f);
    let count = |f: &str, v: u32| {
        if hidden(f) {
            String::new()
        } else {
            v.to_string()
        }
    };
    vec![
        level.to_owned(),
        row.id.clone(),
        row.name.clone(),
        row.completeness.expected.to_string(),
        row.completeness.received.to_string(),
        pct(row.completeness.rate),
        pct(row.rates.attendance),
        pct(row.rates.illness_absence),
        count("cluster_class_days", row.tally.cluster_class_days),
        pct(row.rates.homework_publicity),
        count("over_limit_class_days", row.tally.over_limit_class_days),
        count(
            "grade12_written_class_days",
            row.tally.grade12_written_class_days,
        ),
        pct(row.rates.afterschool_participation),
        pct(row.rates.afterschool_full_sessions),
        count("ends_early_class_days", row.tally.ends_early_class_days),
        row.five_plus_two
            .map(|x| format!("{}/{}", x.compliant_classes, x.classes))
            .unwrap_or_default(),
        row.suppressed.join(" "),
    ]
}

fn rows(summary: &Summary) -> Vec<Vec<String>> {
    std::iter::once(&summary.row)
        .chain(&summary.children)
        .map(cells)
        .collect()
}

/// CSV with a BOM and CRLF line ends, as Excel writes it.
pub fn csv(summary: &Summary) -> Vec<u8> {
    let mut out = vec![0xef, 0xbb, 0xbf];
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let header: Vec<String> = COLUMNS.iter().map(|(zh, _)| quote(zh)).collect();
    out.extend_from_slice(header.join(",").as_bytes());
    out.extend_from_slice(b"\r\n");
    for row in rows(summary) {
        let line: Vec<String> = row.iter().map(|c| quote(c)).collect();
        out.extend_from_slice(line.join(",").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn column_name(mut i: usize) -> String {
    let mut name = String::new();
    loop {
        name.insert(0, (b'A' + (i % 26) as u8) as char);
        if i < 26 {
            return name;
        }
        i = i / 26 - 1;
    }
}

/// A one-sheet XLSX workbook of the summary (Chinese headers in row 1).
pub fn xlsx(summary: &Summary, sheet_name: &str) -> Vec<u8> {
    let mut sheet = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
    );
    let header: Vec<String> = COLUMNS.iter().map(|(zh, _)| (*zh).to_owned()).collect();
    for (r, row) in std::iter::once(header).chain(rows(summary)).enumerate() {
        sheet.push_str(&format!(r#"<row r="{}">"#, r + 1));
        for (c, cell) in row.iter().enumerate() {
            let reference = format!("{}{}", column_name(c), r + 1);
            let numeric = r > 0 && !cell.is_empty() && cell.parse::<f64>().is_ok();
            if numeric {
                sheet.push_str(&format!(r#"<c r="{reference}"><v>{cell}</v></c>"#));
            } else {
                sheet.push_str(&format!(
                    r#"<c r="{reference}" t="inlineStr"><is><t>{}</t></is></c>"#,
                    xml_escape(cell)
                ));
            }
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let files: [(&str, String); 5] = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_owned(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_owned(),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="{}" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
                xml_escape(sheet_name)
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_owned(),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    zip_stored(&files)
}

/// A zip archive of `files`, stored (no compression): the smallest writer Excel and WPS accept.
fn zip_stored(files: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, body) in files {
        let data = body.as_bytes();
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let offset = out.len() as u32;
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            let _ = h.write_all(&sig.to_le_bytes());
            if central {
                let _ = h.write_all(&20u16.to_le_bytes()); // made by
            }
            let _ = h.write_all(&20u16.to_le_bytes()); // version needed
            let _ = h.write_all(&0x0800u16.to_le_bytes()); // UTF-8 names
            let _ = h.write_all(&0u16.to_le_bytes()); // stored
            let _ = h.write_all(&0u16.to_le_bytes()); // time
            let _ = h.write_all(&0x21u16.to_le_bytes()); // date: 1980-01-01
            let _ = h.write_all(&crc.to_le_bytes());
            let _ = h.write_all(&(data.len() as u32).to_le_bytes());
            let _ = h.write_all(&(data.len() as u32).to_le_bytes());
            let _ = h.write_all(&(name.len() as u16).to_le_bytes());
            let _ = h.write_all(&0u16.to_le_bytes()); // extra
            if central {
                let _ = h.write_all(&0u16.to_le_bytes()); // comment
                let _ = h.write_all(&0u16.to_le_bytes()); // disk
                let _ = h.write_all(&0u16.to_le_bytes()); // internal attributes
                let _ = h.write_all(&0u32.to_le_bytes()); // external attributes
                let _ = h.write_all(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend_from_slice(data);
        central.extend(header(0x0201_4b50, true));
    }
    let central_offset = out.len() as u32;
    let central_len = central.len() as u32;
    out.extend(central);
    let _ = out.write_all(&0x0605_4b50u32.to_le_bytes());
    let _ = out.write_all(&[0, 0, 0, 0]);
    let _ = out.write_all(&(files.len() as u16).to_le_bytes());
    let _ = out.write_all(&(files.len() as u16).to_le_bytes());
    let _ = out.write_all(&central_len.to_le_bytes());
    let _ = out.write_all(&central_offset.to_le_bytes());
    let _ = out.write_all(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_go_past_z() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
    }
}
