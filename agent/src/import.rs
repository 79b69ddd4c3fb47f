//! CSV import as clerks really produce it: UTF-8 with or without BOM, GBK (what Excel and WPS
//! save on Chinese Windows), UTF-16 ("Unicode text"), CRLF, comma or tab separated, headers in
//! English (the CLI flag names) or Chinese, in any order.
//!
//! Parsing is all-or-nothing: every row is checked (shape, values, hard rules against the school
//! profile, duplicates within the file) and every bad row is listed with its line, column and
//! reason. Only a file without a single bad row reaches the store, as one user action.

use std::collections::HashMap;

use schoolsync_protocol::ids::{parse_date, ClassId};
use schoolsync_protocol::lang::field_of_header;
use schoolsync_protocol::records::{
    self, homework_minutes, parse_count, parse_grade, AfterSchool, Attendance, ClassInfo, Clock,
    Day, HomeworkFlag, HomeworkItem, HomeworkType, Layer, Place, Profile, ServiceContent, Symptom,
};
use schoolsync_protocol::{HardError, Lang};
use serde::Serialize;

use crate::app::NewRecord;

/// Largest file accepted: a term of a big school is a few megabytes; anything far larger is the
/// wrong file.
pub const FILE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Bad rows listed in full; beyond this only the count is kept, so a wrong file does not flood
/// the screen.
pub const ROW_ERRORS_MAX: usize = 200;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Classes,
    Attendance,
    Homework,
    Afterschool,
}

impl Kind {
    fn required(self) -> &'static [&'static str] {
        match self {
            Kind::Classes => &["class", "grade", "enrolled"],
            Kind::Attendance => &["date", "class", "expected", "present"],
            Kind::Homework => &["date", "class", "subject", "minutes"],
            Kind::Afterschool => &["date", "class", "participants", "start", "end"],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Classes => "classes",
            Kind::Attendance => "attendance",
            Kind::Homework => "homework",
            Kind::Afterschool => "afterschool",
        }
    }
}

/// One bad row (or a bad header, line 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowError {
    /// 1-based line in the file.
    pub line: u64,
    /// The column's header as written in the file; `None` for row-level problems.
    pub column: Option<String>,
    pub reason: String,
}

/// Text encodings recognised in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16,
    Gbk,
}

/// Decodes file bytes: BOMs first, then strict UTF-8, then GBK (GB18030, its superset).
pub fn decode(bytes: &[u8]) -> (String, Encoding) {
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return (
            String::from_utf8_lossy(rest).into_owned(),
            Encoding::Utf8Bom,
        );
    }
    if let Some((encoding, _)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_with_bom_removal(bytes);
        return (text.into_owned(), Encoding::Utf16);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), Encoding::Utf8),
        Err(_) => {
            let (text, _, _) = encoding_rs::GB18030.decode(bytes);
            (text.into_owned(), Encoding::Gbk)
        }
    }
}

/// A parsed file: records ready to write, or every reason it cannot be.
#[derive(Debug)]
pub struct Parsed {
    pub classes: Vec<ClassInfo>,
    pub records: Vec<NewRecord>,
    pub errors: Vec<RowError>,
    /// Bad rows beyond [`ROW_ERRORS_MAX`], counted but not listed.
    pub errors_not_listed: usize,
    /// Headers that name no known field: ignored, and reported.
    pub ignored_columns: Vec<String>,
    pub encoding: Encoding,
    pub rows: usize,
}

struct Row<'a> {
    cells: HashMap<&'static str, (&'a str, &'a str)>,
}

impl<'a> Row<'a> {
    /// The cell of `field` (trimmed), empty when the column is absent.
    fn get(&self, field: &str) -> &'a str {
        self.cells.get(field).map_or("", |(_, v)| v.trim())
    }
}

/// Parses a whole file of `kind`, checking each record against `profile`. `progress` is called
/// with the number of rows done.
pub fn parse(
    kind: Kind,
    bytes: &[u8],
    profile: &Profile,
    lang: Lang,
    progress: &mut dyn FnMut(u64),
) -> Parsed {
    let (text, encoding) = decode(bytes);
    let first_line = text.lines().next().unwrap_or("");
    let delimiter = if first_line.matches('\t').count() > first_line.matches(',').count() {
        b'\t'
    } else {
        b','
    };
    let mut parsed = Parsed {
        classes: Vec::new(),
        records: Vec::new(),
        errors: Vec::new(),
        errors_not_listed: 0,
        ignored_columns: Vec::new(),
        encoding,
        rows: 0,
    };
    // Line numbers come from byte offsets: the csv crate miscounts lines after CRLF ends, and
    // after CRLF a record's offset points at the `\n` of the previous line end.
    let newlines: Vec<u64> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i as u64)
        .collect();
    let line_of = |pos: Option<&csv::Position>| {
        pos.map_or(0, |p| {
            newlines.partition_point(|&n| n <= p.byte()) as u64 + 1
        })
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        _ => {
            parsed.errors.push(RowError {
                line: 1,
                column: None,
                reason: lang
                    .pick(
                        "文件是空的或没有表头",
                        "the file is empty or has no header row",
                    )
                    .to_owned(),
            });
            return parsed;
        }
    };
    // Column index -> (field, header text).
    let mut columns: Vec<Option<(&'static str, String)>> = Vec::new();
    let mut seen: HashMap<&'static str, String> = HashMap::new();
    for name in header.iter() {
        match field_of_header(name) {
            Some(field) => {
                if let Some(first) = seen.insert(field, name.trim().to_owned()) {
                    parsed.errors.push(RowError {
                        line: 1,
                        column: Some(name.trim().to_owned()),
                        reason: match lang {
                            Lang::Zh => format!("与“{first}”是同一列，只能出现一次"),
                            Lang::En => {
                                format!("names the same field as {first:?}; it may appear once")
                            }
                        },
                    });
                }
                columns.push(Some((field, name.trim().to_owned())));
            }
            None => {
                if !name.trim().is_empty() {
                    parsed.ignored_columns.push(name.trim().to_owned());
                }
                columns.push(None);
            }
        }
    }
    for field in kind.required() {
        if !seen.contains_key(field) {
            parsed.errors.push(RowError {
                line: 1,
                column: None,
                reason: match lang {
                    Lang::Zh => format!(
                        "缺少“{}”列（可写作 {field}）",
                        schoolsync_protocol::lang::field_zh(field)
                    ),
                    Lang::En => format!(
                        "missing column {field:?} ({})",
                        schoolsync_protocol::lang::field_zh(field)
                    ),
                },
            });
        }
    }
    if !parsed.errors.is_empty() {
        return parsed;
    }
    let mut keys: HashMap<String, u64> = HashMap::new();
    let push_error = |parsed: &mut Parsed, e: RowError| {
        if parsed.errors.len() < ROW_ERRORS_MAX {
            parsed.errors.push(e);
        } else {
            parsed.errors_not_listed += 1;
        }
    };
    for result in records {
        let record = match result {
            Ok(r) => r,
            Err(e) => {
                let line = line_of(e.position());
                push_error(
                    &mut parsed,
                    RowError {
                        line,
                        column: None,
                        reason: e.to_string(),
                    },
                );
                continue;
            }
        };
        let line = line_of(record.position());
        if record.iter().all(|c| c.trim().is_empty()) {
            continue; // Sheets end with blank rows; they are not records.
        }
        parsed.rows += 1;
        progress(parsed.rows as u64);
        let mut row = Row {
            cells: HashMap::new(),
        };
        for (i, cell) in record.iter().enumerate() {
            if let Some(Some((field, name))) = columns.get(i) {
                row.cells.insert(field, (name.as_str(), cell));
            }
        }
        let column_of = |field: &str| row.cells.get(field).map(|(name, _)| (*name).to_owned());
        let outcome = parse_row(kind, &row, profile);
        match outcome {
            Err(e) => {
                let column = hard_error_field(&e).and_then(column_of);
                push_error(
                    &mut parsed,
                    RowError {
                        line,
                        column,
                        reason: e.message(lang),
                    },
                );
            }
            Ok(RowItem::Class(class)) => {
                let key = format!("class {}", class.class);
                if let Some(first) = keys.insert(key, line) {
                    push_error(&mut parsed, duplicate(line, first, lang));
                } else {
                    parsed.classes.push(class);
                }
            }
            Ok(RowItem::Record(record)) => {
                if let Some(first) = keys.insert(record.key(), line) {
                    push_error(&mut parsed, duplicate(line, first, lang));
                } else {
                    parsed.records.push(record);
                }
            }
        }
    }
    parsed
}

fn duplicate(line: u64, first: u64, lang: Lang) -> RowError {
    RowError {
        line,
        column: None,
        reason: match lang {
            Lang::Zh => format!("与第 {first} 行是同一条记录（班级、日期相同）"),
            Lang::En => format!("the same record as line {first} (same class and date)"),
        },
    }
}

/// The field a hard error is about, to name its column (or the form field it belongs next to).
pub fn hard_error_field(e: &HardError) -> Option<&'static str> {
    Some(match e {
        HardError::Invalid { field, .. }
        | HardError::BadTime { field, .. }
        | HardError::NegativeCount { field, .. }
        | HardError::TooLarge { field, .. }
        | HardError::Missing { field } => field,
        HardError::BadDate { .. } => "date",
        HardError::AbsencesMismatch { .. } => "present",
        HardError::ParticipantsOverEnrolled { .. } => "participants",
        HardError::UnknownClass { .. } => "class",
        HardError::BadGrade { .. } => "grade",
        HardError::MinutesBeyondDay { .. } => "minutes",
        HardError::EndBeforeStart { .. } => "end",
        HardError::SymptomsOverSick { .. } => "sick",
        HardError::WrongProvince { .. } | HardError::UnknownCounty { .. } => return None,
    })
}

/// What one row (or one form) holds once parsed.
#[derive(Debug)]
pub enum RowItem {
    Class(ClassInfo),
    Record(NewRecord),
}

/// Parses one record from named fields (the CSV field names, e.g. `present`, `minutes`), exactly
/// as a sheet's row is parsed and checked: the clerk desk's forms go through here, so a form and a
/// sheet are read by the same code and refused for the same reasons.
pub fn parse_fields<'a>(
    kind: Kind,
    fields: impl IntoIterator<Item = (&'static str, &'a str)>,
    profile: &Profile,
) -> Result<RowItem, HardError> {
    let row = Row {
        cells: fields
            .into_iter()
            .map(|(field, value)| (field, (field, value)))
            .collect(),
    };
    parse_row(kind, &row, profile)
}

fn code<T>(
    field: &'static str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    default: T,
) -> Result<T, HardError> {
    if text.is_empty() {
        return Ok(default);
    }
    parse(text).ok_or_else(|| HardError::Invalid {
        field,
        text: text.to_owned(),
    })
}

fn signed(field: &'static str, text: &str) -> Result<i64, HardError> {
    if text.is_empty() {
        return Err(HardError::Missing { field });
    }
    text.parse().map_err(|_| HardError::Invalid {
        field,
        text: text.to_owned(),
    })
}

/// Parses one row and, for records, checks the hard rules against `profile`.
fn parse_row(kind: Kind, row: &Row<'_>, profile: &Profile) -> Result<RowItem, HardError> {
    let class = || -> Result<ClassId, HardError> {
        if row.get("class").is_empty() {
            return Err(HardError::Missing { field: "class" });
        }
        row.get("class").parse()
    };
    let date = || parse_date(row.get("date")).map(Day);
    let parsed = match kind {
        Kind::Classes => RowItem::Class(ClassInfo::new(
            class()?,
            parse_grade(row.get("grade"))?,
            signed("enrolled", row.get("enrolled"))?,
        )?),
        Kind::Attendance => {
            let mut symptoms = std::collections::BTreeMap::new();
            for symptom in Symptom::ALL {
                let n = parse_count(symptom_field(*symptom), row.get(symptom.code()), Some(0))?;
                if n > 0 {
                    symptoms.insert(symptom.code().to_owned(), n);
                }
            }
            RowItem::Record(NewRecord::Attendance(Attendance {
                date: date()?,
                class: class()?,
                expected: parse_count("expected", row.get("expected"), None)?,
                present: parse_count("present", row.get("present"), None)?,
                sick: parse_count("sick", row.get("sick"), Some(0))?,
                personal: parse_count("personal", row.get("personal"), Some(0))?,
                other: parse_count("other", row.get("other"), Some(0))?,
                symptoms,
            }))
        }
        Kind::Homework => RowItem::Record(NewRecord::Homework(HomeworkItem {
            date: date()?,
            class: class()?,
            subject: records::text("subject", row.get("subject"), true)?,
            content: records::text("content", row.get("content"), false)?,
            kind: code(
                "type",
                row.get("type"),
                HomeworkType::parse,
                HomeworkType::Written,
            )?,
            layer: code("layer", row.get("layer"), Layer::parse, Layer::Required)?,
            place: code("place", row.get("place"), Place::parse, Place::AtHome)?,
            minutes: homework_minutes(signed("minutes", row.get("minutes"))?)?,
            teacher: Some(records::text("teacher", row.get("teacher"), false)?)
                .filter(|t| !t.is_empty()),
            review: None,
            published: false,
            flags: homework_flags(row.get("flags"))?,
        })),
        Kind::Afterschool => RowItem::Record(NewRecord::AfterSchool(AfterSchool {
            date: date()?,
            class: class()?,
            enrolled: 0, // Filled from the profile when written.
            participants: parse_count("participants", row.get("participants"), None)?,
            start: Clock::parse("start", row.get("start"))?,
            end: Clock::parse("end", row.get("end"))?,
            content: service_content(row.get("content"))?,
            teachers: parse_count("teachers", row.get("teachers"), Some(0))?,
            outside_staff: parse_count("outside_staff", row.get("outside_staff"), Some(0))?,
        })),
    };
    if let RowItem::Record(record) = &parsed {
        record.validate(profile)?;
    }
    Ok(parsed)
}

fn symptom_field(symptom: Symptom) -> &'static str {
    match symptom {
        Symptom::Fever => "fever",
        Symptom::Cough => "cough",
        Symptom::Diarrhoea => "diarrhoea",
        Symptom::Vomiting => "vomiting",
        Symptom::Rash => "rash",
    }
}

/// Parses homework flags separated like content types (see [`service_content`]).
pub fn homework_flags(text: &str) -> Result<Vec<HomeworkFlag>, HardError> {
    split_codes("flags", text, HomeworkFlag::parse)
}

fn split_codes<T: PartialEq>(
    field: &'static str,
    text: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Vec<T>, HardError> {
    let mut out = Vec::new();
    for part in text
        .split(['、', ',', '，', ';', '；', '/', ' '])
        .filter(|p| !p.trim().is_empty())
    {
        let item = parse(part).ok_or_else(|| HardError::Invalid {
            field,
            text: part.to_owned(),
        })?;
        if !out.contains(&item) {
            out.push(item);
        }
    }
    Ok(out)
}

/// Parses after-school content types separated by `、`, `,`, `，`, `;`, `/` or spaces.
pub fn service_content(text: &str) -> Result<Vec<ServiceContent>, HardError> {
    split_codes("content", text, ServiceContent::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let mut p = Profile::default();
        for (class, grade) in [("3-1", 3), ("3-2", 3), ("7-1", 7)] {
            p.classes.insert(
                class.into(),
                ClassInfo::new(class.parse().unwrap(), grade, 40).unwrap(),
            );
        }
        p
    }

    fn run(kind: Kind, bytes: &[u8]) -> Parsed {
        parse(kind, bytes, &profile(), Lang::En, &mut |_| {})
    }

    #[test]
    fn utf8_bom_crlf_chinese_headers_any_order() {
        let csv = "\u{feff}实到,班级,日期,应到,因病缺课,备注\r\n38,3-1,2026/11/3,40,2,\r\n40,3-2,2026-11-03,40,,全勤\r\n,,,,,\r\n";
        let parsed = run(Kind::Attendance, csv.as_bytes());
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.encoding, Encoding::Utf8Bom);
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.ignored_columns, vec!["备注".to_owned()]);
        let NewRecord::Attendance(a) = &parsed.records[0] else {
            panic!()
        };
        assert_eq!((a.present, a.sick, a.class.as_str()), (38, 2, "3-1"));
    }

    #[test]
    fn gbk_and_utf16_and_tabs() {
        let text = "班级,年级,在籍人数\r\n三年级1班,三年级,45\r\n初一2班,初一,50\r\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        let parsed = run(Kind::Classes, &gbk);
        assert_eq!(parsed.encoding, Encoding::Gbk);
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.classes[1].grade, 7);
        assert_eq!(parsed.classes[0].class.as_str(), "三年级1班");

        let tabbed = "class\tgrade\tenrolled\n3-3\t3\t41\n";
        let mut utf16 = vec![0xFF, 0xFE];
        for unit in tabbed.encode_utf16() {
            utf16.extend(unit.to_le_bytes());
        }
        let parsed = run(Kind::Classes, &utf16);
        assert_eq!(parsed.encoding, Encoding::Utf16);
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.classes[0].enrolled, 41);
    }

    #[test]
    fn every_bad_row_is_named_with_line_and_column() {
        let csv = "date,class,expected,present,sick\n\
                   2026-11-03,3-1,40,40,0\n\
                   2026-11-31,3-1,40,40,0\n\
                   2026-11-04,9-9,40,40,0\n\
                   2026-11-04,3-1,40,-1,0\n\
                   2026-11-04,3-2,40,37,2\n\
                   2026-11-03,3-1,40,39,1\n";
        let parsed = run(Kind::Attendance, csv.as_bytes());
        let got: Vec<(u64, Option<&str>)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.column.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, Some("date")),
                (4, Some("class")),
                (5, Some("present")),
                (6, Some("present")),
                (7, None)
            ]
        );
        assert!(
            parsed.errors[4].reason.contains("line 2"),
            "{:?}",
            parsed.errors[4]
        );
    }

    #[test]
    fn line_numbers_count_crlf_and_quoted_newlines() {
        let csv = "date,class,expected,present,other\r\n2026-11-03,3-1,40,40,\r\n2026-11-04,3-1,40,41,\r\n\"2026-11-05\",3-1,40,40,\"a\r\nb\"\r\n2026-11-06,3-1,40,41,\r\n";
        let parsed = run(Kind::Attendance, csv.as_bytes());
        let lines: Vec<u64> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 6]);
    }

    #[test]
    fn missing_columns_are_refused_up_front() {
        let parsed = run(
            Kind::Afterschool,
            b"date,class,participants\n2026-11-03,3-1,30\n",
        );
        assert_eq!(parsed.errors.len(), 2);
        assert!(parsed.errors.iter().all(|e| e.line == 1));
    }

    #[test]
    fn homework_and_afterschool_values_in_chinese() {
        let csv = "日期,班级,学科,内容,作业类型,完成地点,分层,预计时长\n2026-11-03,3-1,数学,练习册P12,书面,家庭,必做,25\n2026-11-03,3-1,语文,背诵,阅读,在家,选做,15\n";
        let parsed = run(Kind::Homework, csv.as_bytes());
        assert_eq!(parsed.errors, vec![]);
        assert_eq!(parsed.records.len(), 2);
        let csv = "日期,班级,参加人数,开始时间,结束时间,服务内容\n2026-11-03,3-1,38,16:00,18:00,作业辅导、社团\n2026-11-04,3-1,41,16:00,18:00,新课\n";
        let parsed = run(Kind::Afterschool, csv.as_bytes());
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].column.as_deref(), Some("参加人数"));
    }
}
