//! The three school records (attendance, homework publicity, after-school service) and the
//! school profile, as stored in Automerge documents and shown in reports.
//!
//! Records hold class-level counts only: no names, no student ids (DOMAIN.md, "What may leave the
//! school"). Hard validation is here (`validate`); policy findings are in `rules`.

use std::collections::BTreeMap;
use std::fmt;

use autosurgeon::{Hydrate, HydrateError, Reconcile, Reconciler};
use chrono::NaiveDate;
use serde::{Serialize, Serializer};

use crate::error::HardError;
use crate::ids::{clock_text, date_key, parse_clock, parse_date, ClassId};
use crate::lang::Lang;

/// Largest count accepted anywhere (pupils in a class, participants, teachers): a larger number
/// is a typo, and capping it keeps sums far from overflow.
pub const COUNT_MAX: u32 = 10_000;
/// Minutes in a day: no duration may exceed it.
pub const DAY_MINUTES: u32 = 24 * 60;
/// Longest free text kept (homework content, subject, names); longer input is refused.
pub const TEXT_CHARS_MAX: usize = 500;

/// Converts a signed count as typed to a stored count: negatives and absurd values are refused.
pub fn count(field: &'static str, value: i64) -> Result<u32, HardError> {
    if value < 0 {
        Err(HardError::NegativeCount { field, value })
    } else if value > i64::from(COUNT_MAX) {
        Err(HardError::TooLarge {
            field,
            value,
            max: i64::from(COUNT_MAX),
        })
    } else {
        Ok(value as u32)
    }
}

/// Parses a count from text (CSV cells); an empty cell is `default`.
pub fn parse_count(
    field: &'static str,
    text: &str,
    default: Option<u32>,
) -> Result<u32, HardError> {
    let text = text.trim();
    if text.is_empty() {
        return default.ok_or(HardError::Missing { field });
    }
    let value: i64 = text.parse().map_err(|_| HardError::Invalid {
        field,
        text: text.to_owned(),
    })?;
    count(field, value)
}

/// Checks a free-text field's length and returns it trimmed.
pub fn text(field: &'static str, value: &str, required: bool) -> Result<String, HardError> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(HardError::Missing { field });
    }
    if value.chars().count() > TEXT_CHARS_MAX {
        return Err(HardError::TooLarge {
            field,
            value: value.chars().count() as i64,
            max: TEXT_CHARS_MAX as i64,
        });
    }
    Ok(value.to_owned())
}

/// Defines an enum stored as a stable English code, shown in Chinese or English, and parsed from
/// the code, the Chinese name or any alias.
macro_rules! code_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($variant:ident = ($code:literal, $zh:literal $(, $alias:literal)*)),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn code(self) -> &'static str {
                match self { $($name::$variant => $code),* }
            }

            pub fn zh(self) -> &'static str {
                match self { $($name::$variant => $zh),* }
            }

            pub fn label(self, lang: Lang) -> &'static str {
                lang.pick(self.zh(), self.code())
            }

            /// Accepts the code, the Chinese name or an alias, ignoring case and spaces.
            pub fn parse(text: &str) -> Option<$name> {
                let t = text.trim().to_lowercase().replace(' ', "");
                $(if t == $code || t == $zh $(|| t == $alias)* { return Some($name::$variant); })*
                None
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.code()) }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> { s.serialize_str(self.code()) }
        }

        impl Reconcile for $name {
            type Key<'a> = autosurgeon::reconcile::NoKey;
            fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> { r.str(self.code()) }
        }

        impl Hydrate for $name {
            fn hydrate_string(s: &str) -> Result<Self, HydrateError> {
                $name::parse(s).ok_or_else(|| HydrateError::unexpected(stringify!($name), s.to_owned()))
            }
        }
    };
}

code_enum! {
    /// Kind of homework (作业类型). Only written homework counts towards the minutes limits.
    pub enum HomeworkType {
        Written = ("written", "书面", "书面作业"),
        Practical = ("practical", "实践", "实践作业"),
        Reading = ("reading", "阅读"),
        Sports = ("sports", "体育", "体育作业"),
        Arts = ("arts", "艺术"),
        Labour = ("labour", "劳动", "labor"),
        Other = ("other", "其他"),
    }
}

code_enum! {
    /// Whether homework is required of everyone (必做) or optional (选做).
    pub enum Layer {
        Required = ("required", "必做"),
        Optional = ("optional", "选做"),
    }
}

code_enum! {
    /// Where homework is done: the limits count written homework done at home.
    pub enum Place {
        AtHome = ("at-home", "家庭", "在家", "家", "校外", "home", "athome"),
        InSchool = ("in-school", "校内", "在校", "学校", "school", "inschool"),
    }
}

code_enum! {
    /// Practices the national Opinion forbids, flagged on a homework item where the school's form
    /// records them: each is reported as a finding, never refused.
    pub enum HomeworkFlag {
        ForParents = ("for-parents", "布置给家长", "家长作业"),
        SelfMarking = ("self-marking", "学生自批", "要求学生自批自改"),
        Punitive = ("punitive", "惩罚性", "惩罚性作业"),
        Repetitive = ("repetitive", "机械重复", "重复性作业"),
    }
}

code_enum! {
    /// What an after-school session offered. `NewLesson` (新课) is forbidden and always flagged.
    pub enum ServiceContent {
        HomeworkHelp = ("homework-help", "作业辅导"),
        Tutoring = ("tutoring", "答疑", "答疑辅导"),
        Clubs = ("clubs", "社团", "社团活动"),
        InterestGroups = ("interest-groups", "兴趣小组"),
        Reading = ("reading", "阅读"),
        SportsCulture = ("sports-culture", "文体", "文体活动"),
        Arts = ("arts", "艺术"),
        Science = ("science", "科普"),
        Labour = ("labour", "劳动", "labor"),
        NewLesson = ("new-lesson", "新课", "newlesson"),
        Other = ("other", "其他"),
    }
}

code_enum! {
    /// A symptom counted among illness absences (晨午检).
    pub enum Symptom {
        Fever = ("fever", "发热"),
        Cough = ("cough", "咳嗽"),
        Diarrhoea = ("diarrhoea", "腹泻", "diarrhea"),
        Vomiting = ("vomiting", "呕吐"),
        Rash = ("rash", "皮疹"),
    }
}

/// A school day, stored as `YYYY-MM-DD`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub NaiveDate);

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&date_key(self.0))
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Reconcile for Day {
    type Key<'a> = autosurgeon::reconcile::NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        r.str(self.to_string())
    }
}

impl Hydrate for Day {
    fn hydrate_string(s: &str) -> Result<Self, HydrateError> {
        parse_date(s)
            .map(Day)
            .map_err(|_| HydrateError::unexpected("date", s.to_owned()))
    }
}

/// A time of day in minutes after midnight, stored as `HH:MM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Clock(pub u32);

impl Clock {
    pub fn parse(field: &'static str, text: &str) -> Result<Clock, HardError> {
        parse_clock(field, text).map(Clock)
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&clock_text(self.0))
    }
}

impl Serialize for Clock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Reconcile for Clock {
    type Key<'a> = autosurgeon::reconcile::NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        r.str(self.to_string())
    }
}

impl Hydrate for Clock {
    fn hydrate_string(s: &str) -> Result<Self, HydrateError> {
        Clock::parse("time", s).map_err(|_| HydrateError::unexpected("HH:MM", s.to_owned()))
    }
}

impl Reconcile for ClassId {
    type Key<'a> = autosurgeon::reconcile::NoKey;
    fn reconcile<R: Reconciler>(&self, mut r: R) -> Result<(), R::Error> {
        r.str(self.as_str())
    }
}

impl Hydrate for ClassId {
    fn hydrate_string(s: &str) -> Result<Self, HydrateError> {
        s.parse()
            .map_err(|_| HydrateError::unexpected("class id", s.to_owned()))
    }
}

/// A class of the school profile.
#[derive(Clone, Debug, PartialEq, Eq, Reconcile, Hydrate, Serialize)]
pub struct ClassInfo {
    pub class: ClassId,
    /// 1 to 9 (primary 1-6, junior middle 7-9); nine-year schools have all nine.
    pub grade: u32,
    pub enrolled: u32,
}

impl ClassInfo {
    pub fn new(class: ClassId, grade: i64, enrolled: i64) -> Result<ClassInfo, HardError> {
        if !(1..=9).contains(&grade) {
            return Err(HardError::BadGrade { grade });
        }
        Ok(ClassInfo {
            class,
            grade: grade as u32,
            enrolled: count("enrolled", enrolled)?,
        })
    }
}

/// Parses a grade as written on school sheets: `3`, `三年级`, `初一` (= 7), `七年级`.
pub fn parse_grade(text: &str) -> Result<i64, HardError> {
    const DIGITS: [char; 9] = ['一', '二', '三', '四', '五', '六', '七', '八', '九'];
    let t = text.trim().trim_end_matches("年级");
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    let (offset, rest) = match t.strip_prefix('初') {
        Some(rest) => (6, rest),
        None => (0, t),
    };
    let mut chars = rest.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => match DIGITS.iter().position(|d| *d == c) {
            Some(i) if offset == 0 || i < 3 => Ok(i as i64 + 1 + offset),
            _ => Err(HardError::BadGrade { grade: -1 }),
        },
        _ => Err(HardError::Invalid {
            field: "grade",
            text: text.to_owned(),
        }),
    }
}

/// Attendance of one class on one school day (出勤).
/// Stored in the slim layout of [`crate::schema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attendance {
    pub date: Day,
    pub class: ClassId,
    pub expected: u32,
    pub present: u32,
    /// Absent for illness (因病缺课).
    pub sick: u32,
    /// Absent on personal leave (事假).
    pub personal: u32,
    /// Absent for other reasons.
    pub other: u32,
    /// Illness absences per symptom code; a pupil may count under several symptoms.
    pub symptoms: BTreeMap<String, u32>,
}

impl Attendance {
    pub fn absent(&self) -> u32 {
        self.sick + self.personal + self.other
    }

    /// Hard rules: known class; present + absences = expected; no symptom above `sick`.
    pub fn validate(&self, profile: &Profile) -> Result<(), HardError> {
        profile.class(&self.class)?;
        self.check()
    }

    /// The hard rules a record carries by itself (no profile): what an upstream re-checks.
    pub fn check(&self) -> Result<(), HardError> {
        if self.present + self.absent() != self.expected {
            return Err(HardError::AbsencesMismatch {
                expected: self.expected,
                present: self.present,
                absent: self.absent(),
            });
        }
        if let Some(&most) = self.symptoms.values().max() {
            if most > self.sick {
                return Err(HardError::SymptomsOverSick {
                    symptoms: most,
                    sick: self.sick,
                });
            }
        }
        Ok(())
    }
}

/// Review of a homework item (审核): who reviewed it and when (RFC 3339).
#[derive(Clone, Debug, PartialEq, Eq, Reconcile, Hydrate, Serialize)]
pub struct Review {
    pub by: String,
    pub at: String,
}

/// One homework assignment of a class on a school day (作业公示).
/// Stored in the slim layout of [`crate::schema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HomeworkItem {
    pub date: Day,
    pub class: ClassId,
    pub subject: String,
    pub content: String,
    #[serde(rename = "type")]
    pub kind: HomeworkType,
    pub layer: Layer,
    pub place: Place,
    /// Estimated minutes to complete (预计完成时间).
    pub minutes: u32,
    pub teacher: Option<String>,
    pub review: Option<Review>,
    /// Published to parents (公示).
    pub published: bool,
    /// Forbidden practices recorded on this item.
    pub flags: Vec<HomeworkFlag>,
}

impl HomeworkItem {
    /// Hard rules: known class; minutes within a day; a subject without `/` (it is part of the
    /// record's key).
    pub fn validate(&self, profile: &Profile) -> Result<(), HardError> {
        profile.class(&self.class)?;
        self.check()
    }

    /// The hard rules a record carries by itself (no profile): what an upstream re-checks.
    pub fn check(&self) -> Result<(), HardError> {
        if self.subject.is_empty() || self.subject.contains('/') {
            return Err(HardError::Invalid {
                field: "subject",
                text: self.subject.clone(),
            });
        }
        if self.minutes > DAY_MINUTES {
            return Err(HardError::MinutesBeyondDay {
                minutes: i64::from(self.minutes),
            });
        }
        Ok(())
    }

    /// Minutes that count towards the written-homework limit.
    pub fn written_at_home_minutes(&self) -> u32 {
        if self.kind == HomeworkType::Written && self.place == Place::AtHome {
            self.minutes
        } else {
            0
        }
    }
}

/// Parses homework minutes, refusing negatives and more than a day.
pub fn homework_minutes(value: i64) -> Result<u32, HardError> {
    if value < 0 {
        return Err(HardError::NegativeCount {
            field: "minutes",
            value,
        });
    }
    if value > i64::from(DAY_MINUTES) {
        return Err(HardError::MinutesBeyondDay { minutes: value });
    }
    Ok(value as u32)
}

/// After-school service of one class on one school day (课后服务).
/// Stored in the slim layout of [`crate::schema`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AfterSchool {
    pub date: Day,
    pub class: ClassId,
    /// Enrolment of the class when the session was recorded (the rate's denominator).
    pub enrolled: u32,
    pub participants: u32,
    pub start: Clock,
    pub end: Clock,
    pub content: Vec<ServiceContent>,
    pub teachers: u32,
    pub outside_staff: u32,
}

impl AfterSchool {
    pub fn minutes(&self) -> u32 {
        self.end.0.saturating_sub(self.start.0)
    }

    /// Hard rules: known class; participants within enrolment; end after start.
    pub fn validate(&self, profile: &Profile) -> Result<(), HardError> {
        let class = profile.class(&self.class)?;
        if self.participants > class.enrolled {
            return Err(HardError::ParticipantsOverEnrolled {
                participants: self.participants,
                enrolled: class.enrolled,
            });
        }
        self.check_times()
    }

    /// The hard rules a record carries by itself (no profile; against the enrolment written on
    /// the record): what an upstream re-checks.
    pub fn check(&self) -> Result<(), HardError> {
        if self.participants > self.enrolled {
            return Err(HardError::ParticipantsOverEnrolled {
                participants: self.participants,
                enrolled: self.enrolled,
            });
        }
        self.check_times()
    }

    fn check_times(&self) -> Result<(), HardError> {
        if self.end <= self.start {
            return Err(HardError::EndBeforeStart {
                start: self.start.to_string(),
                end: self.end.to_string(),
            });
        }
        Ok(())
    }
}

/// A school's profile document: identity and classes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Reconcile, Hydrate, Serialize)]
pub struct Profile {
    pub school: String,
    pub name: String,
    pub county: String,
    pub classes: BTreeMap<String, ClassInfo>,
}

impl Profile {
    pub fn class(&self, class: &ClassId) -> Result<&ClassInfo, HardError> {
        self.classes
            .get(class.as_str())
            .ok_or_else(|| HardError::UnknownClass {
                class: class.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_as_written() {
        for (text, grade) in [
            ("3", 3),
            ("三年级", 3),
            ("初一", 7),
            ("初三", 9),
            ("九年级", 9),
        ] {
            assert_eq!(parse_grade(text).unwrap(), grade, "{text}");
        }
        assert!(parse_grade("初四").is_err());
        assert!(parse_grade("高一").is_err());
    }

    #[test]
    fn codes_parse_from_chinese_and_aliases() {
        assert_eq!(HomeworkType::parse("书面"), Some(HomeworkType::Written));
        assert_eq!(HomeworkType::parse("Written"), Some(HomeworkType::Written));
        assert_eq!(Place::parse("在家"), Some(Place::AtHome));
        assert_eq!(
            ServiceContent::parse("新课"),
            Some(ServiceContent::NewLesson)
        );
        assert_eq!(Layer::parse("选做"), Some(Layer::Optional));
        assert_eq!(Symptom::parse("diarrhea"), Some(Symptom::Diarrhoea));
        assert_eq!(HomeworkType::parse("poetry"), None);
    }
}
