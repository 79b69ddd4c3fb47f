//! Holdings reports (what each tier holds of a school, `protocol::holdings`): stored per school
//! and tier (`o/r/<school>/<tier>`), passed on by a relay to the city, and read to say where a
//! missing school-day is stuck.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use schoolsync_protocol::holdings::{Holdings, Tier};
use schoolsync_protocol::ids::SchoolId;
use schoolsync_store::{DocStore, Op, StoreError};
use serde::Serialize;

fn report_key(school: &SchoolId, tier: Tier) -> Vec<u8> {
    format!("o/r/{school}/{}", tier.name()).into_bytes()
}

/// Marks a school whose reports a relay must pass on to the city.
pub fn dirty_key(school: &SchoolId) -> Vec<u8> {
    format!("o/r/{school}/dirty").into_bytes()
}

/// Stores reports (a relay also marks them to pass on). A report older than the one held is
/// ignored: the same school's report can arrive straight from the school and, later, passed on by
/// its relay.
pub fn store(store: &DocStore, reports: &[Holdings], relay: bool) -> Result<(), StoreError> {
    let mut ops = Vec::new();
    for r in reports {
        if read(store, &r.school, r.tier)?.is_some_and(|held| held.as_of_ms > r.as_of_ms) {
            continue;
        }
        ops.push(Op::Put(
            report_key(&r.school, r.tier),
            serde_json::to_vec(r).unwrap_or_default(),
        ));
        if relay {
            ops.push(Op::Put(dirty_key(&r.school), Vec::new()));
        }
    }
    store.write_raw(ops)
}

pub fn read(
    store: &DocStore,
    school: &SchoolId,
    tier: Tier,
) -> Result<Option<Holdings>, StoreError> {
    Ok(store
        .get_raw(&report_key(school, tier))?
        .and_then(|v| serde_json::from_slice(&v).ok()))
}

/// A relay's own view of a school: attendance class-days per date, from its indexed facts.
pub fn own_view(store: &DocStore, school: &SchoolId, now_ms: i64) -> Result<Holdings, StoreError> {
    let prefix = format!("o/f/{school}/");
    let mut days: BTreeMap<NaiveDate, u32> = BTreeMap::new();
    for (k, v) in store.scan_raw(prefix.as_bytes())? {
        let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let Some(Ok(date)) = rest.split_once('/').map(|(d, _)| d.parse::<NaiveDate>()) else {
            continue;
        };
        let tally: super::Tally = serde_json::from_slice(&v).unwrap_or_default();
        *days.entry(date).or_default() += tally.attendance_class_days;
    }
    // Only the most recent days: what completeness looks at.
    while days.len() > schoolsync_protocol::holdings::HOLDINGS_DAYS_MAX {
        days.pop_first();
    }
    Ok(Holdings {
        school: school.clone(),
        tier: Tier::Relay,
        as_of_ms: now_ms,
        last_change_ms: None,
        days,
        relay_confirmed: false,
    })
}

/// What a relay has to pass on: for each marked school, the school's own report and the relay's
/// view.
pub fn pending(store: &DocStore, now_ms: i64) -> Result<(Vec<Holdings>, Vec<Vec<u8>>), StoreError> {
    let mut reports = Vec::new();
    let mut keys = Vec::new();
    for (k, _) in store.scan_raw(b"o/r/")? {
        let text = String::from_utf8_lossy(&k).into_owned();
        let Some(school) = text
            .strip_prefix("o/r/")
            .and_then(|r| r.strip_suffix("/dirty"))
            .and_then(|s| s.parse::<SchoolId>().ok())
        else {
            continue;
        };
        if let Some(r) = read(store, &school, Tier::School)? {
            reports.push(r);
        }
        reports.push(own_view(store, &school, now_ms)?);
        keys.push(k);
        if reports.len() >= schoolsync_protocol::holdings::HOLDINGS_PER_REQUEST_MAX - 1 {
            break;
        }
    }
    Ok((reports, keys))
}

/// Where a missing school-day is, as far as this node has been told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stuck {
    /// Every class's attendance is here.
    Received,
    /// The county relay holds it; it has not reached this node (the city) yet.
    AtCounty,
    /// The school has entered it; it has not reached the county (or this node) yet.
    AtSchool,
    /// The school's last report has nothing for the day (or the school never reported).
    NotEntered,
}

impl Stuck {
    pub fn words(self, zh: bool) -> &'static str {
        match (self, zh) {
            (Stuck::Received, true) => "已收到",
            (Stuck::Received, false) => "received",
            (Stuck::AtCounty, true) => "已到县区，未到市级",
            (Stuck::AtCounty, false) => "at the county, not yet at the city",
            (Stuck::AtSchool, true) => "学校已录入，尚未上传到县区",
            (Stuck::AtSchool, false) => "entered at the school, not yet at the county",
            (Stuck::NotEntered, true) => "学校尚未录入",
            (Stuck::NotEntered, false) => "not entered at the school",
        }
    }
}

/// Where `school`'s `date` is, for a school of `classes` classes, given what this node holds
/// (`here`: classes with attendance) and the reports it received. On a relay (`is_relay`), a day
/// the school holds is simply not here yet.
pub fn locate(
    is_relay: bool,
    here: u32,
    classes: u32,
    school_report: Option<&Holdings>,
    relay_report: Option<&Holdings>,
    date: NaiveDate,
) -> Stuck {
    let full = |n: u32| classes > 0 && n >= classes;
    if full(here) {
        return Stuck::Received;
    }
    let held = |r: Option<&Holdings>| r.and_then(|r| r.days.get(&date)).copied().unwrap_or(0);
    let at_relay = held(relay_report) > here
        || (held(school_report) > here && school_report.is_some_and(|r| r.relay_confirmed));
    if at_relay && !is_relay {
        Stuck::AtCounty
    } else if held(school_report) > here {
        Stuck::AtSchool
    } else {
        Stuck::NotEntered
    }
}
