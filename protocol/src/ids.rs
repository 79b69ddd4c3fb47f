//! Typed identifiers that validate on parse: school, county, class, month and document ids.
//!
//! Every id that crosses a tier boundary is one of these types, so a string that made it past
//! `FromStr` is known to be well formed. This module does no IO and knows nothing of Automerge.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::HardError;

/// A 学校标识码: ten digits assigned by the Ministry of Education (2-digit type, 2-digit
/// province, 6-digit sequence). The province digits are checked against the deployment's
/// province where one is configured (see [`SchoolId::parse_in`]); otherwise the id is opaque.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SchoolId(String);

/// Hebei's province digits inside a school id; Chengde deployments check them by default.
pub const PROVINCE_HEBEI: &str = "13";

impl SchoolId {
    /// Parses a school id, requiring the province digits to be `province` when it is given.
    pub fn parse_in(text: &str, province: Option<&str>) -> Result<Self, HardError> {
        let text = text.trim();
        let bad = || HardError::Invalid {
            field: "school",
            text: text.to_owned(),
        };
        if text.len() != 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if let Some(province) = province {
            if &text[2..4] != province {
                return Err(HardError::WrongProvince {
                    school: text.to_owned(),
                    province: province.to_owned(),
                });
            }
        }
        Ok(SchoolId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SchoolId {
    type Err = HardError;
    /// Parses without a province check: ids read back from documents and wire messages were
    /// checked when they were first entered.
    fn from_str(text: &str) -> Result<Self, HardError> {
        SchoolId::parse_in(text, None)
    }
}

/// A county-level division: a 6-digit 行政区划代码 that appears in the deployment's county list.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountyCode(String);

impl CountyCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for CountyCode {
    type Err = HardError;
    /// Checks the shape only (six digits); use [`CountyTable::parse`] for membership.
    fn from_str(text: &str) -> Result<Self, HardError> {
        let text = text.trim();
        if text.len() == 6 && text.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CountyCode(text.to_owned()))
        } else {
            Err(HardError::Invalid {
                field: "county",
                text: text.to_owned(),
            })
        }
    }
}

/// One county of the deployment, with its Chinese name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct County {
    pub code: String,
    pub name: String,
}

/// The counties a deployment knows, plus renamed codes that map to current ones.
/// The default is Chengde's twelve (NBS 2023), with 130823 (平泉县) mapped to 130881 (平泉市).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountyTable {
    pub counties: Vec<County>,
    /// `(old, new)` pairs: an old code is accepted and stored as the new one.
    pub renamed: Vec<(String, String)>,
}

const CHENGDE_COUNTIES: [(&str, &str); 12] = [
    ("130802", "双桥区"),
    ("130803", "双滦区"),
    ("130804", "鹰手营子矿区"),
    ("130821", "承德县"),
    ("130822", "兴隆县"),
    ("130824", "滦平县"),
    ("130825", "隆化县"),
    ("130826", "丰宁满族自治县"),
    ("130827", "宽城满族自治县"),
    ("130828", "围场满族蒙古族自治县"),
    ("130881", "平泉市"),
    ("130871", "承德高新技术产业开发区"),
];

impl Default for CountyTable {
    fn default() -> Self {
        CountyTable {
            counties: CHENGDE_COUNTIES
                .iter()
                .map(|(code, name)| County {
                    code: (*code).to_owned(),
                    name: (*name).to_owned(),
                })
                .collect(),
            renamed: vec![("130823".to_owned(), "130881".to_owned())],
        }
    }
}

impl CountyTable {
    /// Parses a county code and checks that the deployment knows it, mapping renamed codes.
    pub fn parse(&self, text: &str) -> Result<CountyCode, HardError> {
        let code: CountyCode = text.parse()?;
        let code = match self.renamed.iter().find(|(old, _)| *old == code.0) {
            Some((_, new)) => CountyCode(new.clone()),
            None => code,
        };
        if self.counties.iter().any(|c| c.code == code.0) {
            Ok(code)
        } else {
            Err(HardError::UnknownCounty { code: code.0 })
        }
    }

    pub fn name(&self, code: &CountyCode) -> Option<&str> {
        self.counties
            .iter()
            .find(|c| c.code == code.0)
            .map(|c| c.name.as_str())
    }
}

/// A class as the school names it ("3-2", "三年级2班"): 1 to [`ClassId::LEN_MAX`] characters,
/// no `/` (it separates the parts of record keys) and no control characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClassId(String);

impl ClassId {
    /// Longest class name accepted; real names are under ten characters.
    pub const LEN_MAX: usize = 32;

    /// A stand-in while a record is read, before its key gives the real class.
    pub(crate) fn placeholder() -> ClassId {
        ClassId("?".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ClassId {
    type Err = HardError;
    fn from_str(text: &str) -> Result<Self, HardError> {
        let text = text.trim();
        let ok = !text.is_empty()
            && text.chars().count() <= ClassId::LEN_MAX
            && !text.chars().any(|c| c == '/' || c.is_control());
        if ok {
            Ok(ClassId(text.to_owned()))
        } else {
            Err(HardError::Invalid {
                field: "class",
                text: text.to_owned(),
            })
        }
    }
}

/// A calendar month, the time span of one records document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    pub fn of(date: NaiveDate) -> Month {
        Month {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = HardError;
    fn from_str(text: &str) -> Result<Self, HardError> {
        let bad = || HardError::Invalid {
            field: "month",
            text: text.to_owned(),
        };
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        if y.len() != 4 || m.len() != 2 || !(1..=12).contains(&month) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }
}

/// What a document holds: a school's profile, or its records of one month.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKind {
    Profile,
    Records(Month),
}

/// Names a document by its owning school and its span, so that scope checks need no contents.
/// Text form: `2113000001/profile` or `2113000001/2026-11`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId {
    pub school: SchoolId,
    pub kind: DocKind,
}

impl DocId {
    pub fn profile(school: &SchoolId) -> DocId {
        DocId {
            school: school.clone(),
            kind: DocKind::Profile,
        }
    }

    pub fn records(school: &SchoolId, month: Month) -> DocId {
        DocId {
            school: school.clone(),
            kind: DocKind::Records(month),
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DocKind::Profile => write!(f, "{}/profile", self.school.0),
            DocKind::Records(month) => write!(f, "{}/{}", self.school.0, month),
        }
    }
}

impl FromStr for DocId {
    type Err = HardError;
    fn from_str(text: &str) -> Result<Self, HardError> {
        let (school, rest) = text.split_once('/').ok_or_else(|| HardError::Invalid {
            field: "document",
            text: text.to_owned(),
        })?;
        let school: SchoolId = school.parse()?;
        let kind = if rest == "profile" {
            DocKind::Profile
        } else {
            DocKind::Records(rest.parse()?)
        };
        Ok(DocId { school, kind })
    }
}

macro_rules! string_conversions {
    ($($ty:ty),*) => {$(
        impl TryFrom<String> for $ty {
            type Error = HardError;
            fn try_from(text: String) -> Result<Self, HardError> {
                text.parse()
            }
        }
        impl From<$ty> for String {
            fn from(id: $ty) -> String {
                id.to_string()
            }
        }
    )*};
}
string_conversions!(SchoolId, CountyCode, ClassId, DocId);

macro_rules! display_inner {
    ($($ty:ty),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_inner!(SchoolId, CountyCode, ClassId);

/// FNV-1a, 64 bits: a hash that is stable across platforms and versions (unlike
/// `DefaultHasher`), for keys that must come out the same on every machine.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Parses a date as clerks write it: `2026-11-03`, `2026/11/3` (Excel's default), `2026.11.3`
/// or `2026年11月3日`. An impossible date (2026-02-30) is refused.
pub fn parse_date(text: &str) -> Result<NaiveDate, HardError> {
    let bad = || HardError::BadDate {
        text: text.to_owned(),
    };
    let cleaned: String = text
        .trim()
        .trim_end_matches('日')
        .chars()
        .map(|c| match c {
            '/' | '.' | '年' | '月' => '-',
            c => c,
        })
        .collect();
    let mut parts = cleaned.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u32 = m.parse().map_err(|_| bad())?;
    let day: u32 = d.parse().map_err(|_| bad())?;
    if y.len() != 4 || !(2000..=2099).contains(&year) {
        return Err(bad());
    }
    NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)
}

/// Formats a date the one way documents store it: `YYYY-MM-DD`.
pub fn date_key(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A time of day in minutes after midnight, parsed from `HH:MM` (or `HH:MM:SS`, `HH：MM`).
pub fn parse_clock(field: &'static str, text: &str) -> Result<u32, HardError> {
    let bad = || HardError::BadTime {
        field,
        text: text.to_owned(),
    };
    let cleaned = text.trim().replace('：', ":");
    let mut parts = cleaned.split(':');
    let h: u32 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    let m: u32 = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
    match parts.next() {
        None => {}
        Some(s) if s.parse::<u32>().is_ok_and(|s| s < 60) => {}
        Some(_) => return Err(bad()),
    }
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Formats minutes after midnight as `HH:MM`.
pub fn clock_text(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn school_ids() {
        assert!(SchoolId::parse_in("2113000001", Some("13")).is_ok());
        assert!(matches!(
            SchoolId::parse_in("2111000001", Some("13")),
            Err(HardError::WrongProvince { .. })
        ));
        assert!(SchoolId::parse_in("2111000001", None).is_ok());
        for bad in ["211300000", "21130000011", "21130000a1", ""] {
            assert!(SchoolId::parse_in(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn county_codes_map_pingquan() {
        let table = CountyTable::default();
        assert_eq!(table.parse("130823").unwrap().as_str(), "130881");
        assert_eq!(table.parse("130881").unwrap().as_str(), "130881");
        assert_eq!(table.counties.len(), 12);
        assert!(matches!(
            table.parse("110101"),
            Err(HardError::UnknownCounty { .. })
        ));
        assert!(table.parse("13088").is_err());
    }

    #[test]
    fn doc_ids_round_trip() {
        for text in ["2113000001/profile", "2113000001/2026-11"] {
            let id: DocId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
        for bad in [
            "2113000001/2026-13",
            "2113000001",
            "x/profile",
            "2113000001/26-11",
        ] {
            assert!(bad.parse::<DocId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_and_clocks() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        for text in [
            "2026-11-03",
            "2026/11/3",
            "2026.11.3",
            "2026年11月3日",
            " 2026-11-3 ",
        ] {
            assert_eq!(parse_date(text).unwrap(), d, "{text}");
        }
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-03",
            "2026-11",
            "yesterday",
        ] {
            assert!(
                matches!(parse_date(bad), Err(HardError::BadDate { .. })),
                "{bad}"
            );
        }
        assert_eq!(parse_clock("start", "16:30").unwrap(), 990);
        assert_eq!(parse_clock("start", "16：30:00").unwrap(), 990);
        assert!(parse_clock("start", "24:00").is_err());
        assert_eq!(clock_text(990), "16:30");
        assert!("a/b".parse::<ClassId>().is_err());
        assert_eq!(
            "三年级2班".parse::<ClassId>().unwrap().as_str(),
            "三年级2班"
        );
    }
}
