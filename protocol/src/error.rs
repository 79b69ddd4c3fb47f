//! Hard errors: what makes a record impossible, so it is refused and never stored.
//!
//! Each variant names the field at fault and carries the values a clerk needs to fix the entry.
//! Messages come in Chinese and English ([`HardError::message`]). Policy findings, which are
//! stored and reported rather than refused, live in `rules`.

use crate::lang::Lang;

/// A record, id or value that cannot be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HardError {
    #[error("invalid {field}: {text:?}")]
    Invalid { field: &'static str, text: String },
    #[error("school id {school} is not in province {province}")]
    WrongProvince { school: String, province: String },
    #[error("unknown county code {code}")]
    UnknownCounty { code: String },
    #[error("impossible date {text:?}")]
    BadDate { text: String },
    #[error("invalid time {text:?} for {field}")]
    BadTime { field: &'static str, text: String },
    #[error("{field} is negative ({value})")]
    NegativeCount { field: &'static str, value: i64 },
    #[error("{field} is too large ({value} > {max})")]
    TooLarge {
        field: &'static str,
        value: i64,
        max: i64,
    },
    #[error("{field} is missing")]
    Missing { field: &'static str },
    #[error("present {present} + absences {absent} != expected {expected}")]
    AbsencesMismatch {
        expected: u32,
        present: u32,
        absent: u32,
    },
    #[error("participants {participants} > enrolled {enrolled}")]
    ParticipantsOverEnrolled { participants: u32, enrolled: u32 },
    #[error("unknown class {class}")]
    UnknownClass { class: String },
    #[error("grade {grade} is not 1 to 9")]
    BadGrade { grade: i64 },
    #[error("{minutes} minutes is more than a day")]
    MinutesBeyondDay { minutes: i64 },
    #[error("end {end} is not after start {start}")]
    EndBeforeStart { start: String, end: String },
    #[error("symptom counts {symptoms} exceed illness absences {sick}")]
    SymptomsOverSick { symptoms: u32, sick: u32 },
}

impl HardError {
    /// The message in the clerk's language, saying what is wrong and with which values.
    pub fn message(&self, lang: Lang) -> String {
        use HardError::*;
        match (self, lang) {
            (Invalid { field, text }, Lang::Zh) => {
                format!("{}无效：“{}”", crate::lang::field_zh(field), text)
            }
            (WrongProvince { school, province }, Lang::Zh) => {
                format!("学校标识码 {school} 不属于本省（省代码应为 {province}）")
            }
            (UnknownCounty { code }, Lang::Zh) => format!("未知的县区代码 {code}"),
            (BadDate { text }, Lang::Zh) => {
                format!("日期“{text}”不存在或格式不对（应为 2026-11-03）")
            }
            (BadTime { field, text }, Lang::Zh) => format!(
                "{}“{}”不是有效时间（应为 16:30）",
                crate::lang::field_zh(field),
                text
            ),
            (NegativeCount { field, value }, Lang::Zh) => {
                format!("{}不能为负数（{}）", crate::lang::field_zh(field), value)
            }
            (TooLarge { field, value, max }, Lang::Zh) => format!(
                "{}过大（{}，上限 {}）",
                crate::lang::field_zh(field),
                value,
                max
            ),
            (Missing { field }, Lang::Zh) => format!("缺少{}", crate::lang::field_zh(field)),
            (
                AbsencesMismatch {
                    expected,
                    present,
                    absent,
                },
                Lang::Zh,
            ) => format!(
                "实到 {present} + 缺课 {absent} = {}，不等于应到 {expected}",
                present + absent
            ),
            (
                ParticipantsOverEnrolled {
                    participants,
                    enrolled,
                },
                Lang::Zh,
            ) => format!("参加人数 {participants} 超过班级在籍人数 {enrolled}"),
            (UnknownClass { class }, Lang::Zh) => {
                format!("班级“{class}”不存在，请先用 class add 添加")
            }
            (BadGrade { grade }, Lang::Zh) => format!("年级 {grade} 无效（应为 1 到 9）"),
            (MinutesBeyondDay { minutes }, Lang::Zh) => {
                format!("时长 {minutes} 分钟超过一天")
            }
            (EndBeforeStart { start, end }, Lang::Zh) => {
                format!("结束时间 {end} 不晚于开始时间 {start}")
            }
            (SymptomsOverSick { symptoms, sick }, Lang::Zh) => {
                format!("各症状人数合计 {symptoms} 超过因病缺课 {sick}")
            }
            (UnknownClass { class }, Lang::En) => {
                format!("class {class:?} does not exist; add it first with `class add`")
            }
            (BadDate { text }, Lang::En) => {
                format!("date {text:?} does not exist or is not like 2026-11-03")
            }
            (other, Lang::En) => other.to_string(),
        }
    }
}
