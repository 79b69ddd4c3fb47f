//! Policy rules of the "double reduction" policy: findings that are stored and reported, never
//! refused (records must tell the truth).
//!
//! Limits are configuration: the national values are the defaults and the ceilings, and a county
//! may only be stricter ([`RulesConfig::validate`]). Evaluation is a pure function of one
//! class-day's records (plus two earlier days of attendance for illness clusters); it does no IO.

use std::collections::BTreeMap;

use autosurgeon::{Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::ids::clock_text;
use crate::lang::Lang;
use crate::records::{AfterSchool, Attendance, HomeworkItem, HomeworkType, Place, ServiceContent};

/// National ceiling for written homework at home, grades 3-6, minutes per day (中办发〔2021〕40号).
pub const WRITTEN_MINUTES_GRADE_3_6_MAX: u32 = 60;
/// National ceiling for written homework at home, grades 7-9, minutes per day.
pub const WRITTEN_MINUTES_GRADE_7_9_MAX: u32 = 90;
/// National floor for an after-school session, minutes ("5+2": at least 2 hours a day).
pub const AFTERSCHOOL_MINUTES_MIN: u32 = 120;

/// The limits in force for one county.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Written-at-home minutes per class-day allowed in grades 3-6. Default and ceiling 60.
    pub written_minutes_grade_3_6: u32,
    /// Written-at-home minutes per class-day allowed in grades 7-9. Default and ceiling 90.
    pub written_minutes_grade_7_9: u32,
    /// Shortest after-school session that counts as a full day. Default and floor 120.
    pub afterschool_minutes_min: u32,
    /// The county's normal end of the working day (`HH:MM`), before which after-school service
    /// may not end. No Chengde value is known, so the default is unset: no check.
    pub workday_end: Option<String>,
    /// Illness absences with one symptom in one class on one day that make a cluster. Default 3.
    pub cluster_same_day_min: u32,
    /// Illness absences in one class over three consecutive days above which it is a cluster.
    /// Default 5 ("more than 5 within 3 days").
    pub cluster_three_days_over: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            written_minutes_grade_3_6: WRITTEN_MINUTES_GRADE_3_6_MAX,
            written_minutes_grade_7_9: WRITTEN_MINUTES_GRADE_7_9_MAX,
            afterschool_minutes_min: AFTERSCHOOL_MINUTES_MIN,
            workday_end: None,
            cluster_same_day_min: 3,
            cluster_three_days_over: 5,
        }
    }
}

/// A limit that breaks a national ceiling or floor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value} is laxer than the national limit {national} (scope {scope})")]
pub struct LimitError {
    pub scope: String,
    pub field: &'static str,
    pub value: String,
    pub national: String,
}

impl Limits {
    fn validate(&self, scope: &str) -> Result<(), LimitError> {
        let err = |field, value: String, national: String| LimitError {
            scope: scope.to_owned(),
            field,
            value,
            national,
        };
        if self.written_minutes_grade_3_6 > WRITTEN_MINUTES_GRADE_3_6_MAX {
            return Err(err(
                "written_minutes_grade_3_6",
                self.written_minutes_grade_3_6.to_string(),
                WRITTEN_MINUTES_GRADE_3_6_MAX.to_string(),
            ));
        }
        if self.written_minutes_grade_7_9 > WRITTEN_MINUTES_GRADE_7_9_MAX {
            return Err(err(
                "written_minutes_grade_7_9",
                self.written_minutes_grade_7_9.to_string(),
                WRITTEN_MINUTES_GRADE_7_9_MAX.to_string(),
            ));
        }
        if self.afterschool_minutes_min < AFTERSCHOOL_MINUTES_MIN {
            return Err(err(
                "afterschool_minutes_min",
                self.afterschool_minutes_min.to_string(),
                AFTERSCHOOL_MINUTES_MIN.to_string(),
            ));
        }
        if let Some(end) = &self.workday_end {
            crate::ids::parse_clock("workday_end", end).map_err(|_| {
                err(
                    "workday_end",
                    end.clone(),
                    "a time such as 17:30".to_owned(),
                )
            })?;
        }
        if self.cluster_same_day_min == 0 {
            return Err(err(
                "cluster_same_day_min",
                "0".to_owned(),
                ">= 1".to_owned(),
            ));
        }
        Ok(())
    }

    /// The written-at-home limit of a grade; grades 1-2 allow none (`Some(0)`).
    pub fn written_limit(&self, grade: u32) -> u32 {
        match grade {
            1 | 2 => 0,
            3..=6 => self.written_minutes_grade_3_6,
            _ => self.written_minutes_grade_7_9,
        }
    }
}

/// Limits for the deployment: a default, and stricter ones per county code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    pub default: Limits,
    pub county: BTreeMap<String, Limits>,
}

impl RulesConfig {
    /// Refuses any limit laxer than the national one.
    pub fn validate(&self) -> Result<(), LimitError> {
        self.default.validate("default")?;
        for (code, limits) in &self.county {
            limits.validate(code)?;
        }
        Ok(())
    }

    pub fn for_county(&self, county: &str) -> &Limits {
        self.county.get(county).unwrap_or(&self.default)
    }
}

/// What a finding is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// Written homework at home in grade 1 or 2.
    WrittenHomeworkGrade12,
    /// Class-day written-at-home minutes over the limit.
    WrittenMinutesOverLimit,
    /// After-school session shorter than the minimum.
    AfterschoolTooShort,
    /// After-school session ending before the county's end of the working day.
    AfterschoolEndsEarly,
    /// After-school content "new lesson" (新课).
    AfterschoolNewLesson,
    /// Homework flagged with a forbidden practice (for parents, self-marking, punitive, ...).
    HomeworkForbidden,
    /// Several illness absences with one symptom in one class on one day.
    IllnessClusterDay,
    /// Many illness absences in one class over three consecutive days.
    IllnessClusterThreeDays,
}

/// A policy finding on one class-day: what, the value found and the limit it broke.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Reconcile, Hydrate)]
pub struct Finding {
    /// A [`FindingCode`] in kebab case; kept as text so older agents can read newer codes.
    pub code: String,
    pub value: u32,
    pub limit: u32,
    /// Extra detail (the symptom of a cluster); empty when none.
    pub detail: String,
}

impl Finding {
    fn new(code: FindingCode, value: u32, limit: u32, detail: &str) -> Finding {
        let code = serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Finding {
            code,
            value,
            limit,
            detail: detail.to_owned(),
        }
    }

    pub fn code(&self) -> Option<FindingCode> {
        serde_json::from_value(serde_json::Value::String(self.code.clone())).ok()
    }

    /// The finding in words.
    pub fn message(&self, lang: Lang) -> String {
        let (v, l) = (self.value, self.limit);
        let d = match crate::records::Symptom::parse(&self.detail) {
            Some(symptom) => symptom.label(lang).to_owned(),
            None if self.detail == "?" => lang.pick("未分症状", "unspecified symptoms").to_owned(),
            None => self.detail.clone(),
        };
        let Some(code) = self.code() else {
            return format!("{} ({v}/{l}) {d}", self.code);
        };
        use FindingCode::*;
        match (code, lang) {
            (WrittenHomeworkGrade12, Lang::Zh) => {
                format!(
                    "一二年级布置了家庭书面作业（{v} 分钟）：政策规定一二年级不布置家庭书面作业"
                )
            }
            (WrittenHomeworkGrade12, Lang::En) => format!(
                "written homework at home in grade 1-2 ({v} min): not allowed in grades 1-2"
            ),
            (WrittenMinutesOverLimit, Lang::Zh) => {
                format!("家庭书面作业合计 {v} 分钟，超过上限 {l} 分钟")
            }
            (WrittenMinutesOverLimit, Lang::En) => {
                format!("written homework at home totals {v} min, over the {l} min limit")
            }
            (AfterschoolTooShort, Lang::Zh) => {
                format!("课后服务 {v} 分钟，少于 {l} 分钟（“5+2”要求每天不少于2小时）")
            }
            (AfterschoolTooShort, Lang::En) => {
                format!("after-school service lasted {v} min, under {l} min (\"5+2\": 2 h a day)")
            }
            (AfterschoolEndsEarly, Lang::Zh) => format!(
                "课后服务 {} 结束，早于当地下班时间 {}",
                clock_text(v),
                clock_text(l)
            ),
            (AfterschoolEndsEarly, Lang::En) => format!(
                "after-school service ended at {}, before the local end of work {}",
                clock_text(v),
                clock_text(l)
            ),
            (HomeworkForbidden, lang) => {
                let flag = crate::records::HomeworkFlag::parse(&self.detail)
                    .map_or(self.detail.as_str(), |f| f.label(lang));
                match lang {
                    Lang::Zh => format!("作业被标记为“{flag}”：政策禁止此类作业"),
                    Lang::En => format!("homework flagged {flag}: a forbidden practice"),
                }
            }
            (AfterschoolNewLesson, Lang::Zh) => {
                "课后服务内容含“新课”：课后服务不得讲授新课".to_owned()
            }
            (AfterschoolNewLesson, Lang::En) => {
                "after-school content includes a new lesson, which is not allowed".to_owned()
            }
            (IllnessClusterDay, Lang::Zh) => {
                format!("因病缺课聚集：同日 {v} 人因病缺课，症状：{d}（阈值 {l} 人）")
            }
            (IllnessClusterDay, Lang::En) => {
                format!("illness cluster: {v} absent with {d} on one day (threshold {l})")
            }
            (IllnessClusterThreeDays, Lang::Zh) => {
                format!("因病缺课聚集：连续3天共 {v} 人因病缺课（超过 {l} 人）")
            }
            (IllnessClusterThreeDays, Lang::En) => {
                format!("illness cluster: {v} illness absences in 3 consecutive days (over {l})")
            }
        }
    }
}

/// The records of one class on one school day, as far as they exist.
#[derive(Clone, Debug, Default)]
pub struct ClassDay<'a> {
    pub grade: u32,
    pub attendance: Option<&'a Attendance>,
    /// Attendance of the same class on the two calendar days before, where recorded.
    pub earlier_attendance: Vec<&'a Attendance>,
    pub homework: Vec<&'a HomeworkItem>,
    pub afterschool: Option<&'a AfterSchool>,
}

/// Every policy finding on one class-day, in a stable order.
pub fn evaluate(day: &ClassDay<'_>, limits: &Limits) -> Vec<Finding> {
    let mut findings = Vec::new();

    let written: u32 = day
        .homework
        .iter()
        .map(|h| h.written_at_home_minutes())
        .sum();
    let any_written_at_home = day
        .homework
        .iter()
        .any(|h| h.kind == HomeworkType::Written && h.place == Place::AtHome);
    if day.grade <= 2 {
        if any_written_at_home {
            findings.push(Finding::new(
                FindingCode::WrittenHomeworkGrade12,
                written,
                0,
                "",
            ));
        }
    } else {
        let limit = limits.written_limit(day.grade);
        if written > limit {
            findings.push(Finding::new(
                FindingCode::WrittenMinutesOverLimit,
                written,
                limit,
                "",
            ));
        }
    }

    let mut flags: Vec<crate::records::HomeworkFlag> = day
        .homework
        .iter()
        .flat_map(|h| h.flags.iter().copied())
        .collect();
    flags.sort();
    flags.dedup();
    for flag in flags {
        let items = day
            .homework
            .iter()
            .filter(|h| h.flags.contains(&flag))
            .count() as u32;
        findings.push(Finding::new(
            FindingCode::HomeworkForbidden,
            items,
            0,
            flag.code(),
        ));
    }

    if let Some(session) = day.afterschool {
        if session.minutes() < limits.afterschool_minutes_min {
            findings.push(Finding::new(
                FindingCode::AfterschoolTooShort,
                session.minutes(),
                limits.afterschool_minutes_min,
                "",
            ));
        }
        let workday_end = limits
            .workday_end
            .as_deref()
            .and_then(|t| crate::ids::parse_clock("workday_end", t).ok());
        if let Some(workday_end) = workday_end {
            if session.end.0 < workday_end {
                findings.push(Finding::new(
                    FindingCode::AfterschoolEndsEarly,
                    session.end.0,
                    workday_end,
                    "",
                ));
            }
        }
        if session.content.contains(&ServiceContent::NewLesson) {
            findings.push(Finding::new(FindingCode::AfterschoolNewLesson, 1, 0, ""));
        }
    }

    if let Some(att) = day.attendance {
        let threshold = limits.cluster_same_day_min;
        if att.symptoms.is_empty() {
            // No symptom breakdown: similar symptoms cannot be told apart, so the illness total
            // stands in for them (it over-reports rather than hides a cluster).
            if att.sick >= threshold {
                findings.push(Finding::new(
                    FindingCode::IllnessClusterDay,
                    att.sick,
                    threshold,
                    "?",
                ));
            }
        } else {
            for (symptom, &n) in &att.symptoms {
                if n >= threshold {
                    findings.push(Finding::new(
                        FindingCode::IllnessClusterDay,
                        n,
                        threshold,
                        symptom,
                    ));
                }
            }
        }
        let three_days: u32 = att.sick + day.earlier_attendance.iter().map(|a| a.sick).sum::<u32>();
        if three_days > limits.cluster_three_days_over {
            findings.push(Finding::new(
                FindingCode::IllnessClusterThreeDays,
                three_days,
                limits.cluster_three_days_over,
                "",
            ));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    //! The rules as a data-driven table: each hard error and each finding, at its boundary.

    use super::*;
    use crate::error::HardError;
    use crate::ids::{parse_date, ClassId};
    use crate::records::{ClassInfo, Clock, Day, Layer, Profile};

    fn profile() -> Profile {
        let mut p = Profile::default();
        for (class, grade, enrolled) in [
            ("1-1", 1, 40),
            ("2-1", 2, 40),
            ("3-1", 3, 40),
            ("7-1", 7, 50),
        ] {
            let info = ClassInfo::new(class.parse().unwrap(), grade, enrolled).unwrap();
            p.classes.insert(class.to_owned(), info);
        }
        p
    }

    fn day(s: &str) -> Day {
        Day(parse_date(s).unwrap())
    }

    fn att(
        class: &str,
        date: &str,
        expected: u32,
        present: u32,
        sick: u32,
        symptoms: &[(&str, u32)],
    ) -> Attendance {
        Attendance {
            date: day(date),
            class: class.parse().unwrap(),
            expected,
            present,
            sick,
            personal: 0,
            other: expected.saturating_sub(present + sick),
            symptoms: symptoms
                .iter()
                .map(|(s, n)| ((*s).to_owned(), *n))
                .collect(),
        }
    }

    fn hw(class: &str, kind: HomeworkType, place: Place, minutes: u32) -> HomeworkItem {
        HomeworkItem {
            date: day("2026-11-03"),
            class: class.parse().unwrap(),
            subject: "数学".to_owned(),
            content: format!("{kind} {minutes}"),
            kind,
            layer: Layer::Required,
            place,
            minutes,
            teacher: None,
            review: None,
            published: false,
            flags: Vec::new(),
        }
    }

    fn session(
        class: &str,
        participants: u32,
        start: &str,
        end: &str,
        content: Vec<ServiceContent>,
    ) -> AfterSchool {
        AfterSchool {
            date: day("2026-11-03"),
            class: class.parse().unwrap(),
            enrolled: 40,
            participants,
            start: Clock::parse("start", start).unwrap(),
            end: Clock::parse("end", end).unwrap(),
            content,
            teachers: 2,
            outside_staff: 0,
        }
    }

    fn codes(findings: &[Finding]) -> Vec<(FindingCode, u32, u32)> {
        findings
            .iter()
            .map(|f| (f.code().unwrap(), f.value, f.limit))
            .collect()
    }

    #[test]
    fn hard_errors() {
        let p = profile();
        let mut bad_sum = att("3-1", "2026-11-03", 40, 38, 1, &[]);
        bad_sum.other = 0;
        let cases: Vec<(&str, Result<(), HardError>)> = vec![
            (
                "sum ok",
                att("3-1", "2026-11-03", 40, 38, 2, &[]).validate(&p),
            ),
            ("present + absences != expected", bad_sum.validate(&p)),
            (
                "unknown class",
                att("9-9", "2026-11-03", 40, 40, 0, &[]).validate(&p),
            ),
            (
                "symptom > sick",
                att("3-1", "2026-11-03", 40, 38, 2, &[("fever", 3)]).validate(&p),
            ),
            (
                "symptoms = sick",
                att(
                    "3-1",
                    "2026-11-03",
                    40,
                    37,
                    3,
                    &[("fever", 3), ("cough", 3)],
                )
                .validate(&p),
            ),
            (
                "participants = enrolled",
                session("3-1", 40, "16:00", "18:00", vec![]).validate(&p),
            ),
            (
                "participants > enrolled",
                session("3-1", 41, "16:00", "18:00", vec![]).validate(&p),
            ),
            (
                "end = start",
                session("3-1", 10, "16:00", "16:00", vec![]).validate(&p),
            ),
            (
                "end before start",
                session("3-1", 10, "17:00", "16:00", vec![]).validate(&p),
            ),
            (
                "1440 minutes",
                hw("3-1", HomeworkType::Reading, Place::AtHome, 1440).validate(&p),
            ),
            (
                "1441 minutes",
                hw("3-1", HomeworkType::Reading, Place::AtHome, 1441).validate(&p),
            ),
        ];
        let got: Vec<(&str, Option<HardError>)> =
            cases.into_iter().map(|(n, r)| (n, r.err())).collect();
        let expect = vec![
            ("sum ok", None),
            (
                "present + absences != expected",
                Some(HardError::AbsencesMismatch {
                    expected: 40,
                    present: 38,
                    absent: 1,
                }),
            ),
            (
                "unknown class",
                Some(HardError::UnknownClass {
                    class: "9-9".into(),
                }),
            ),
            (
                "symptom > sick",
                Some(HardError::SymptomsOverSick {
                    symptoms: 3,
                    sick: 2,
                }),
            ),
            ("symptoms = sick", None),
            ("participants = enrolled", None),
            (
                "participants > enrolled",
                Some(HardError::ParticipantsOverEnrolled {
                    participants: 41,
                    enrolled: 40,
                }),
            ),
            (
                "end = start",
                Some(HardError::EndBeforeStart {
                    start: "16:00".into(),
                    end: "16:00".into(),
                }),
            ),
            (
                "end before start",
                Some(HardError::EndBeforeStart {
                    start: "17:00".into(),
                    end: "16:00".into(),
                }),
            ),
            ("1440 minutes", None),
            (
                "1441 minutes",
                Some(HardError::MinutesBeyondDay { minutes: 1441 }),
            ),
        ];
        assert_eq!(got, expect);

        // Input-level hard errors.
        assert_eq!(
            crate::records::count("sick", -1),
            Err(HardError::NegativeCount {
                field: "sick",
                value: -1
            })
        );
        assert_eq!(crate::records::count("sick", 0), Ok(0));
        assert!(matches!(
            crate::records::count("sick", 10_001),
            Err(HardError::TooLarge { .. })
        ));
        assert_eq!(
            crate::records::homework_minutes(-5),
            Err(HardError::NegativeCount {
                field: "minutes",
                value: -5
            })
        );
        assert_eq!(
            crate::records::homework_minutes(1441),
            Err(HardError::MinutesBeyondDay { minutes: 1441 })
        );
        assert_eq!(
            ClassInfo::new(ClassId::from_str_ok("x"), 10, 1),
            Err(HardError::BadGrade { grade: 10 })
        );
        assert_eq!(
            ClassInfo::new(ClassId::from_str_ok("x"), 0, 1),
            Err(HardError::BadGrade { grade: 0 })
        );
        assert!(matches!(
            parse_date("2026-02-29"),
            Err(HardError::BadDate { .. })
        ));
        assert!(parse_date("2028-02-29").is_ok());
    }

    impl ClassId {
        fn from_str_ok(s: &str) -> ClassId {
            s.parse().unwrap()
        }
    }

    #[test]
    fn findings_at_their_boundaries() {
        use FindingCode::*;
        use HomeworkType::{Reading, Written};
        use Place::{AtHome, InSchool};
        let national = Limits::default();
        let strict = Limits {
            written_minutes_grade_3_6: 45,
            workday_end: Some("17:30".into()),
            ..Limits::default()
        };
        let a = |class, minutes| hw(class, Written, AtHome, minutes);
        type Case<'a> = (
            &'a str,
            u32,
            Vec<HomeworkItem>,
            Option<AfterSchool>,
            &'a Limits,
            Vec<(FindingCode, u32, u32)>,
        );
        let cases: Vec<Case> = vec![
            (
                "grade 3: 60 allowed",
                3,
                vec![a("3-1", 30), a("3-1", 30)],
                None,
                &national,
                vec![],
            ),
            (
                "grade 3: 61 found",
                3,
                vec![a("3-1", 30), a("3-1", 31)],
                None,
                &national,
                vec![(WrittenMinutesOverLimit, 61, 60)],
            ),
            (
                "grade 3: in school not counted",
                3,
                vec![a("3-1", 60), hw("3-1", Written, InSchool, 30)],
                None,
                &national,
                vec![],
            ),
            (
                "grade 3: reading not counted",
                3,
                vec![a("3-1", 60), hw("3-1", Reading, AtHome, 30)],
                None,
                &national,
                vec![],
            ),
            (
                "grade 3: county 45, 46 found",
                3,
                vec![a("3-1", 46)],
                None,
                &strict,
                vec![(WrittenMinutesOverLimit, 46, 45)],
            ),
            (
                "grade 7: 90 allowed",
                7,
                vec![a("7-1", 90)],
                None,
                &national,
                vec![],
            ),
            (
                "grade 7: 91 found",
                7,
                vec![a("7-1", 91)],
                None,
                &national,
                vec![(WrittenMinutesOverLimit, 91, 90)],
            ),
            (
                "grade 2: any written at home",
                2,
                vec![a("2-1", 10)],
                None,
                &national,
                vec![(WrittenHomeworkGrade12, 10, 0)],
            ),
            (
                "grade 2: in-school practice allowed",
                2,
                vec![hw("2-1", Written, InSchool, 20)],
                None,
                &national,
                vec![],
            ),
            (
                "grade 1: reading at home allowed",
                1,
                vec![hw("1-1", Reading, AtHome, 20)],
                None,
                &national,
                vec![],
            ),
            (
                "after-school 120 allowed",
                3,
                vec![],
                Some(session("3-1", 30, "16:00", "18:00", vec![])),
                &national,
                vec![],
            ),
            (
                "after-school 119 found",
                3,
                vec![],
                Some(session("3-1", 30, "16:00", "17:59", vec![])),
                &national,
                vec![(AfterschoolTooShort, 119, 120)],
            ),
            (
                "ends at 17:30 allowed",
                3,
                vec![],
                Some(session("3-1", 30, "15:30", "17:30", vec![])),
                &strict,
                vec![],
            ),
            (
                "ends 17:29 found",
                3,
                vec![],
                Some(session("3-1", 30, "15:29", "17:29", vec![])),
                &strict,
                vec![(AfterschoolEndsEarly, 1049, 1050)],
            ),
            (
                "no workday end: not checked",
                3,
                vec![],
                Some(session("3-1", 30, "14:00", "16:00", vec![])),
                &national,
                vec![],
            ),
            (
                "new lesson",
                3,
                vec![],
                Some(session(
                    "3-1",
                    30,
                    "16:00",
                    "18:00",
                    vec![ServiceContent::NewLesson],
                )),
                &national,
                vec![(AfterschoolNewLesson, 1, 0)],
            ),
        ];
        for (name, grade, homework, afterschool, limits, expect) in cases {
            let day = ClassDay {
                grade,
                homework: homework.iter().collect(),
                afterschool: afterschool.as_ref(),
                ..ClassDay::default()
            };
            assert_eq!(codes(&evaluate(&day, limits)), expect, "{name}");
        }
    }

    #[test]
    fn forbidden_homework_flags() {
        use crate::records::HomeworkFlag;
        let mut a = hw("3-1", HomeworkType::Practical, Place::AtHome, 10);
        a.flags = vec![HomeworkFlag::ForParents];
        let mut b = hw("3-1", HomeworkType::Written, Place::AtHome, 10);
        b.flags = vec![HomeworkFlag::ForParents, HomeworkFlag::Punitive];
        let day = ClassDay {
            grade: 3,
            homework: vec![&a, &b],
            ..ClassDay::default()
        };
        let found = evaluate(&day, &Limits::default());
        let got: Vec<(FindingCode, u32, &str)> = found
            .iter()
            .map(|f| (f.code().unwrap(), f.value, f.detail.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (FindingCode::HomeworkForbidden, 2, "for-parents"),
                (FindingCode::HomeworkForbidden, 1, "punitive")
            ]
        );
        assert!(found[0].message(Lang::Zh).contains("布置给家长"));
    }

    #[test]
    fn illness_clusters() {
        use FindingCode::*;
        let limits = Limits::default();
        let eval = |today: &Attendance, earlier: &[&Attendance]| {
            codes(&evaluate(
                &ClassDay {
                    grade: 3,
                    attendance: Some(today),
                    earlier_attendance: earlier.to_vec(),
                    ..ClassDay::default()
                },
                &limits,
            ))
        };
        let two_fever = att(
            "3-1",
            "2026-11-03",
            40,
            37,
            3,
            &[("fever", 2), ("cough", 1)],
        );
        let three_fever = att("3-1", "2026-11-03", 40, 37, 3, &[("fever", 3)]);
        let three_unknown = att("3-1", "2026-11-03", 40, 37, 3, &[]);
        assert_eq!(eval(&two_fever, &[]), vec![]);
        assert_eq!(eval(&three_fever, &[]), vec![(IllnessClusterDay, 3, 3)]);
        assert_eq!(eval(&three_unknown, &[]), vec![(IllnessClusterDay, 3, 3)]);
        let d1 = att("3-1", "2026-11-01", 40, 38, 2, &[("cough", 2)]);
        let d2 = att("3-1", "2026-11-02", 40, 39, 1, &[("cough", 1)]);
        // 2 + 1 + 2 = 5: not more than 5.
        let today = att("3-1", "2026-11-03", 40, 38, 2, &[("cough", 2)]);
        assert_eq!(eval(&today, &[&d1, &d2]), vec![]);
        // 2 + 1 + 3 = 6: more than 5.
        assert_eq!(
            eval(&two_fever, &[&d1, &d2]),
            vec![(IllnessClusterThreeDays, 6, 5)]
        );
    }

    #[test]
    fn national_limits_are_ceilings() {
        let mut config = RulesConfig::default();
        assert!(config.validate().is_ok());
        config.county.insert(
            "130821".into(),
            Limits {
                written_minutes_grade_3_6: 45,
                ..Limits::default()
            },
        );
        assert!(config.validate().is_ok());
        assert_eq!(config.for_county("130821").written_limit(4), 45);
        assert_eq!(config.for_county("130822").written_limit(4), 60);
        config.county.insert(
            "130822".into(),
            Limits {
                written_minutes_grade_7_9: 91,
                ..Limits::default()
            },
        );
        assert_eq!(
            config.validate().unwrap_err().field,
            "written_minutes_grade_7_9"
        );
        config.county.remove("130822");
        config.default.afterschool_minutes_min = 119;
        assert_eq!(
            config.validate().unwrap_err().field,
            "afterschool_minutes_min"
        );
    }
}
