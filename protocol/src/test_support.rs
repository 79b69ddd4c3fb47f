//! Fixtures shared by this crate's unit tests (compiled for tests only).

use crate::doc::CommitMeta;
use crate::ids::{parse_date, DocId, Month, SchoolId};
use crate::records::{Attendance, Day};

pub fn school() -> SchoolId {
    "2113000001".parse().unwrap()
}

/// The November 2026 records document of [`school`].
pub fn month_id() -> DocId {
    DocId::records(
        &school(),
        Month {
            year: 2026,
            month: 11,
        },
    )
}

pub fn meta() -> CommitMeta {
    CommitMeta {
        school: "2113000001".into(),
        clerk: "王老师".into(),
        machine: "pc1".into(),
        action: "test".into(),
    }
}

/// Attendance of `class` on 2026-11-`day`: 40 expected, the rest of `present` sick.
pub fn attendance(day: u32, class: &str, present: u32) -> Attendance {
    Attendance {
        date: Day(parse_date(&format!("2026-11-{day:02}")).unwrap()),
        class: class.parse().unwrap(),
        expected: 40,
        present,
        sick: 40 - present,
        personal: 0,
        other: 0,
        symptoms: Default::default(),
    }
}
