//! Oversight: the figures the bureaus read, kept up to date incrementally as documents change.
//!
//! Data path: a sync (or a relay's forward, or feedback) commits documents → the [`indexer`]
//! notices every document whose heads moved past the heads it last read (`o/h/<doc>`), diffs only
//! that, and recomputes the **facts** of each touched class-day (`o/f/<school>/<date>/<class>`),
//! the **tally** of each touched school-day (`o/d/<date>/<school>`, the sum of its classes) and
//! appends one line per class-day to the **changes feed** (`o/c/<seq>`), all in one atomic batch.
//! Queries ([`query`]) sum school-day tallies over schools and days; nothing rescans documents.
//!
//! A [`Tally`] is additive (counts and minutes), so a county's week is the sum of its schools'
//! days; rates are ratios of sums, computed when read.
//!
//! Policy flags come from the findings the school stored with each class-day (computed with its
//! county's limits when the record was written); counts come from the records themselves, which
//! the upstream has already held to the hard rules (`doc::check_incoming`).

pub mod calendar;
pub mod dashboard;
pub mod export;
pub mod holdings;
pub mod http;
pub mod indexer;
pub mod query;

use std::collections::BTreeMap;

use schoolsync_protocol::doc::MonthRecords;
use schoolsync_protocol::records::{ClassInfo, ServiceContent};
use schoolsync_protocol::rules::{FindingCode, AFTERSCHOOL_MINUTES_MIN};
use serde::{Deserialize, Serialize};

/// Additive figures of a class-day, a school-day, or any sum of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    /// Class-days counted (for a school-day: the classes in its profile).
    pub class_days: u32,
    /// Pupils enrolled over those class-days (the participation rate's denominator).
    pub enrolled: u32,
    /// Class-days with an attendance record, and their counts.
    pub attendance_class_days: u32,
    pub expected: u32,
    pub present: u32,
    pub sick: u32,
    /// Class-days flagged as an illness cluster (one day, or three days).
    pub cluster_class_days: u32,
    /// Class-days with a homework publicity record (at least one item).
    pub homework_class_days: u32,
    pub homework_items: u32,
    pub reviewed_items: u32,
    pub published_items: u32,
    /// Written-at-home minutes summed over class-days.
    pub written_minutes: u32,
    pub over_limit_class_days: u32,
    pub grade12_written_class_days: u32,
    pub forbidden_homework_class_days: u32,
    /// Class-days with an after-school record, and their figures.
    pub afterschool_class_days: u32,
    pub participants: u32,
    pub afterschool_minutes: u32,
    /// After-school sessions of at least 120 minutes.
    pub full_sessions: u32,
    pub ends_early_class_days: u32,
    pub new_lesson_class_days: u32,
}

impl Tally {
    pub fn add(&mut self, o: &Tally) {
        macro_rules! sum {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(o.$f); )* };
        }
        sum!(
            class_days,
            enrolled,
            attendance_class_days,
            expected,
            present,
            sick,
            cluster_class_days,
            homework_class_days,
            homework_items,
            reviewed_items,
            published_items,
            written_minutes,
            over_limit_class_days,
            grade12_written_class_days,
            forbidden_homework_class_days,
            afterschool_class_days,
            participants,
            afterschool_minutes,
            full_sessions,
            ends_early_class_days,
            new_lesson_class_days
        );
    }

    /// The ratios people read, from the sums (`None` when the denominator is zero).
    pub fn rates(&self) -> Rates {
        let ratio = |n: u32, d: u32| (d > 0).then(|| f64::from(n) / f64::from(d));
        Rates {
            attendance: ratio(self.present, self.expected),
            illness_absence: ratio(self.sick, self.expected),
            attendance_reported: ratio(self.attendance_class_days, self.class_days),
            homework_publicity: ratio(self.homework_class_days, self.class_days),
            homework_reviewed: ratio(self.reviewed_items, self.homework_items),
            homework_published: ratio(self.published_items, self.homework_items),
            afterschool_participation: ratio(self.participants, self.enrolled),
            afterschool_full_sessions: ratio(self.full_sessions, self.afterschool_class_days),
        }
    }
}

/// Ratios of a [`Tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// present ÷ expected.
    pub attendance: Option<f64>,
    /// illness absences ÷ expected.
    pub illness_absence: Option<f64>,
    /// class-days with attendance ÷ class-days.
    pub attendance_reported: Option<f64>,
    /// class-days with a homework publicity record ÷ class-days.
    pub homework_publicity: Option<f64>,
    pub homework_reviewed: Option<f64>,
    pub homework_published: Option<f64>,
    /// after-school participants ÷ pupils enrolled (the 96.67 % of the bureau's reply).
    pub afterschool_participation: Option<f64>,
    /// sessions of at least 120 minutes ÷ sessions.
    pub afterschool_full_sessions: Option<f64>,
}

/// The facts of one class-day: its records and stored findings, reduced to a [`Tally`].
pub fn class_day_tally(key: &str, class: Option<&ClassInfo>, records: &MonthRecords) -> Tally {
    let mut t = Tally {
        class_days: 1,
        enrolled: class.map_or(0, |c| c.enrolled),
        ..Tally::default()
    };
    if let Some(a) = records.attendance.get(key) {
        t.attendance_class_days = 1;
        t.expected = a.expected;
        t.present = a.present;
        t.sick = a.sick;
    }
    let prefix = format!("{key}/");
    for (_, h) in records
        .homework
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
    {
        t.homework_items += 1;
        t.reviewed_items += u32::from(h.review.is_some());
        t.published_items += u32::from(h.published);
        t.written_minutes += h.written_at_home_minutes();
    }
    t.homework_class_days = u32::from(t.homework_items > 0);
    if let Some(s) = records.afterschool.get(key) {
        t.afterschool_class_days = 1;
        t.participants = s.participants;
        t.afterschool_minutes = s.minutes();
        t.full_sessions = u32::from(s.minutes() >= AFTERSCHOOL_MINUTES_MIN);
        t.new_lesson_class_days = u32::from(s.content.contains(&ServiceContent::NewLesson));
        if class.is_none() {
            t.enrolled = s.enrolled;
        }
    }
    for f in records.findings.get(key).into_iter().flatten() {
        match f.code() {
            Some(FindingCode::IllnessClusterDay | FindingCode::IllnessClusterThreeDays) => {
                t.cluster_class_days = 1
            }
            Some(FindingCode::WrittenMinutesOverLimit) => t.over_limit_class_days = 1,
            Some(FindingCode::WrittenHomeworkGrade12) => t.grade12_written_class_days = 1,
            Some(FindingCode::HomeworkForbidden) => t.forbidden_homework_class_days = 1,
            Some(FindingCode::AfterschoolEndsEarly) => t.ends_early_class_days = 1,
            Some(FindingCode::AfterschoolNewLesson) => t.new_lesson_class_days = 1,
            Some(FindingCode::AfterschoolTooShort) | None => {}
        }
    }
    t
}

/// Sums class tallies into a school-day tally: every class of the profile counts as a class-day
/// expected to report, whether or not it did.
pub fn school_day_tally(
    classes: &BTreeMap<String, ClassInfo>,
    reported: &BTreeMap<String, Tally>,
) -> Tally {
    let mut total = Tally::default();
    for (class, info) in classes {
        match reported.get(class) {
            Some(t) => total.add(t),
            None => total.add(&Tally {
                class_days: 1,
                enrolled: info.enrolled,
                ..Tally::default()
            }),
        }
    }
    // Classes no longer in the profile that still have records count as reported.
    for (class, t) in reported {
        if !classes.contains_key(class) {
            total.add(t);
        }
    }
    total
}
