//! Reading the indexed figures: a summary of a city, county, school or class over a period, with
//! its completeness and its children (the next level down), and the compliance lists. Reads only
//! the school-day tallies and class-day facts the indexer keeps (never documents).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use schoolsync_protocol::ids::{CountyTable, SchoolId};
use schoolsync_store::{DocStore, StoreError};
use serde::Serialize;

use super::calendar::{Calendar, Period};
use super::indexer::SchoolDay;
use super::{Rates, Tally};
use schoolsync_protocol::holdings::Tier;

/// Where in the hierarchy a summary is taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    City,
    County(String),
    School(SchoolId),
    Class(SchoolId, String),
}

impl Level {
    pub fn name(&self) -> &'static str {
        match self {
            Level::City => "city",
            Level::County(_) => "county",
            Level::School(_) => "school",
            Level::Class(..) => "class",
        }
    }

    pub fn id(&self) -> String {
        match self {
            Level::City => String::new(),
            Level::County(c) => c.clone(),
            Level::School(s) => s.to_string(),
            Level::Class(s, c) => format!("{s}/{c}"),
        }
    }
}

/// Expected and received school-days (a school-day is received when every class of the school
/// has its attendance record for the day).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Completeness {
    pub expected: u32,
    pub received: u32,
    /// Days with some records but not every class's attendance.
    pub partial: u32,
    pub rate: Option<f64>,
}

impl Completeness {
    fn add(&mut self, o: &Completeness) {
        self.expected += o.expected;
        self.received += o.received;
        self.partial += o.partial;
        self.rate =
            (self.expected > 0).then(|| f64::from(self.received) / f64::from(self.expected));
    }
}

/// One row: a scope's figures over a period.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub level: &'static str,
    pub id: String,
    pub name: String,
    pub tally: Tally,
    pub rates: Rates,
    pub completeness: Completeness,
    /// Fields of `tally` hidden because they counted fewer than the suppression threshold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<&'static str>,
    /// For a school: each expected school-day not received, and where it is as far as this
    /// node has been told.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<MissingDay>,
    /// For a week: the "5+2" count (summed over schools above the school level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub five_plus_two: Option<FivePlusTwo>,
}

/// A school-day not (fully) received here.
#[derive(Clone, Debug, Serialize)]
pub struct MissingDay {
    pub date: NaiveDate,
    pub stuck: super::holdings::Stuck,
    /// When the school last reported what it holds (ms), if it ever did.
    pub school_reported_ms: Option<i64>,
}

/// A summary: the scope's row and its children's rows.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub period: &'static str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub school_days: usize,
    #[serde(flatten)]
    pub row: Row,
    pub children: Vec<Row>,
}

/// A school this node knows: its county and name.
#[derive(Clone, Debug, Default)]
pub struct SchoolInfo {
    pub county: String,
    pub name: String,
}

/// Schools known here: enrolled or learned (`auth/school/`), and any with indexed days.
pub fn schools(store: &DocStore) -> Result<BTreeMap<SchoolId, SchoolInfo>, StoreError> {
    let mut out: BTreeMap<SchoolId, SchoolInfo> = BTreeMap::new();
    let prefix = b"m/auth/school/";
    for (k, v) in store.scan_raw(prefix)? {
        if let Ok(id) = String::from_utf8_lossy(&k[prefix.len()..]).parse::<SchoolId>() {
            out.entry(id).or_default().county = String::from_utf8_lossy(&v).into_owned();
        }
    }
    for (k, v) in store.scan_raw(b"o/n/")? {
        if let Ok(id) = String::from_utf8_lossy(&k[4..]).parse::<SchoolId>() {
            let info: (String, String) = serde_json::from_slice(&v).unwrap_or_default();
            let entry = out.entry(id).or_default();
            if entry.county.is_empty() {
                entry.county = info.0;
            }
            entry.name = info.1;
        }
    }
    Ok(out)
}

/// Every entry under `prefix(date)` for each date from `from` to `to` (at most
/// [`PERIOD_DAYS_MAX`](super::calendar::PERIOD_DAYS_MAX) days), decoded as `T`, keyed by
/// (date, the rest of the key); entries that do not decode are skipped.
fn by_date<T: serde::de::DeserializeOwned>(
    store: &DocStore,
    from: NaiveDate,
    to: NaiveDate,
    prefix: impl Fn(NaiveDate) -> String,
) -> Result<BTreeMap<(NaiveDate, String), T>, StoreError> {
    let mut out = BTreeMap::new();
    for date in from
        .iter_days()
        .take_while(|d| *d <= to)
        .take(super::calendar::PERIOD_DAYS_MAX as usize)
    {
        let prefix = prefix(date);
        for (k, v) in store.scan_raw(prefix.as_bytes())? {
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Ok(value) = serde_json::from_slice::<T>(&v) {
                out.insert((date, rest), value);
            }
        }
    }
    Ok(out)
}

/// School-day tallies from `from` to `to`, per (date, school).
pub fn days(
    store: &DocStore,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<(NaiveDate, SchoolId), SchoolDay>, StoreError> {
    Ok(
        by_date::<SchoolDay>(store, from, to, |date| format!("o/d/{date}/"))?
            .into_iter()
            .filter_map(|((date, school), day)| Some(((date, school.parse().ok()?), day)))
            .collect(),
    )
}

/// Class-day facts of one school from `from` to `to`, per (date, class).
pub fn class_facts(
    store: &DocStore,
    school: &SchoolId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<BTreeMap<(NaiveDate, String), Tally>, StoreError> {
    by_date(store, from, to, |date| format!("o/f/{school}/{date}/"))
}

/// "5+2" over a week: classes with an after-school session of at least two hours on every
/// school day of the week so far, out of the classes that reported any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FivePlusTwo {
    pub compliant_classes: u32,
    pub classes: u32,
}

fn add_five_plus_two(total: &mut Option<FivePlusTwo>, part: Option<FivePlusTwo>) {
    if let Some(p) = part {
        let t = total.get_or_insert_with(FivePlusTwo::default);
        t.compliant_classes += p.compliant_classes;
        t.classes += p.classes;
    }
}

fn five_plus_two(
    store: &DocStore,
    school: &SchoolId,
    school_days: &[NaiveDate],
) -> Result<FivePlusTwo, StoreError> {
    let (Some(first), Some(last)) = (school_days.first(), school_days.last()) else {
        return Ok(FivePlusTwo::default());
    };
    let mut full: BTreeMap<String, usize> = BTreeMap::new();
    for ((date, class), t) in class_facts(store, school, *first, *last)? {
        let e = full.entry(class).or_default();
        if school_days.contains(&date) && t.full_sessions > 0 {
            *e += 1;
        }
    }
    Ok(FivePlusTwo {
        compliant_classes: full.values().filter(|n| **n == school_days.len()).count() as u32,
        classes: full.len() as u32,
    })
}

fn completeness_of(
    days_expected: &[NaiveDate],
    tallies: &BTreeMap<NaiveDate, Tally>,
) -> Completeness {
    let mut c = Completeness::default();
    for d in days_expected {
        c.expected += 1;
        if let Some(t) = tallies.get(d) {
            if t.class_days > 0 && t.attendance_class_days >= t.class_days {
                c.received += 1;
            } else if t.attendance_class_days + t.homework_class_days + t.afterschool_class_days > 0
            {
                c.partial += 1;
            }
        }
    }
    c.rate = (c.expected > 0).then(|| f64::from(c.received) / f64::from(c.expected));
    c
}

/// Hides counts below `threshold` (but above zero) in rows above the school level.
fn suppress(row: &mut Row, threshold: u32) {
    if threshold == 0 {
        return;
    }
    macro_rules! hide {
        ($($f:ident),*) => {$(
            if row.tally.$f > 0 && row.tally.$f < threshold {
                row.tally.$f = 0;
                row.suppressed.push(stringify!($f));
            }
        )*};
    }
    hide!(
        sick,
        cluster_class_days,
        over_limit_class_days,
        grade12_written_class_days,
        forbidden_homework_class_days,
        ends_early_class_days,
        new_lesson_class_days
    );
    if row.suppressed.contains(&"sick") {
        row.rates.illness_absence = None;
    }
}

/// The summary of `level` over the `period` containing `date`. Only school days up to `today`
/// are expected; `suppress_below` hides small counts in rows above the school level.
#[allow(clippy::too_many_arguments)]
pub fn summary(
    store: &DocStore,
    is_relay: bool,
    calendar: &Calendar,
    level: &Level,
    period: Period,
    date: NaiveDate,
    today: NaiveDate,
    suppress_below: u32,
) -> Result<Summary, StoreError> {
    let (from, to) = period.span(date);
    let expected_days = calendar.school_days(from, to.min(today));
    let known = schools(store)?;
    let all_days = days(store, from, to)?;
    let counties = CountyTable::default();
    let in_scope = |school: &SchoolId, county: &str| match level {
        Level::City => true,
        Level::County(c) => county == c,
        Level::School(s) | Level::Class(s, _) => s == school,
    };
    // Per school: its tallies by date.
    let mut per_school: BTreeMap<SchoolId, (SchoolInfo, BTreeMap<NaiveDate, Tally>)> =
        BTreeMap::new();
    for (school, info) in &known {
        if in_scope(school, &info.county) {
            per_school.insert(school.clone(), (info.clone(), BTreeMap::new()));
        }
    }
    for ((d, school), day) in &all_days {
        let county = known
            .get(school)
            .map_or(day.county.as_str(), |i| i.county.as_str());
        if !in_scope(school, county) {
            continue;
        }
        let entry = per_school.entry(school.clone()).or_insert_with(|| {
            (
                SchoolInfo {
                    county: day.county.clone(),
                    name: String::new(),
                },
                BTreeMap::new(),
            )
        });
        entry.1.insert(*d, day.tally);
    }
    let school_row =
        |school: &SchoolId, info: &SchoolInfo, tallies: &BTreeMap<NaiveDate, Tally>| {
            let mut tally = Tally::default();
            for t in tallies.values() {
                tally.add(t);
            }
            let reported = super::holdings::read(store, school, Tier::School)
                .ok()
                .flatten();
            let relayed = super::holdings::read(store, school, Tier::Relay)
                .ok()
                .flatten();
            let classes = tallies.values().map(|t| t.class_days).max().unwrap_or(0);
            let missing = expected_days
                .iter()
                .filter_map(|d| {
                    let here = tallies.get(d).map_or(0, |t| t.attendance_class_days);
                    let stuck = super::holdings::locate(
                        is_relay,
                        here,
                        classes.max(1),
                        reported.as_ref(),
                        relayed.as_ref(),
                        *d,
                    );
                    (stuck != super::holdings::Stuck::Received).then(|| MissingDay {
                        date: *d,
                        stuck,
                        school_reported_ms: reported.as_ref().map(|r| r.as_of_ms),
                    })
                })
                .collect();
            Row {
                level: "school",
                id: school.to_string(),
                name: info.name.clone(),
                rates: tally.rates(),
                tally,
                completeness: completeness_of(&expected_days, tallies),
                suppressed: Vec::new(),
                missing,
                five_plus_two: (period == Period::Week)
                    .then(|| five_plus_two(store, school, &expected_days).ok())
                    .flatten(),
            }
        };
    let (row, children) = match level {
        Level::City | Level::County(_) => {
            let mut total = Row {
                level: level.name(),
                id: level.id(),
                name: match level {
                    Level::County(c) => c
                        .parse()
                        .ok()
                        .and_then(|c| counties.name(&c).map(str::to_owned))
                        .unwrap_or_default(),
                    _ => "承德市".to_owned(),
                },
                tally: Tally::default(),
                rates: Rates::default(),
                completeness: Completeness::default(),
                suppressed: Vec::new(),
                missing: Vec::new(),
                five_plus_two: None,
            };
            let mut children: BTreeMap<String, Row> = BTreeMap::new();
            for (school, (info, tallies)) in &per_school {
                let r = school_row(school, info, tallies);
                total.tally.add(&r.tally);
                total.completeness.add(&r.completeness);
                add_five_plus_two(&mut total.five_plus_two, r.five_plus_two);
                if let Level::City = level {
                    let child = children.entry(info.county.clone()).or_insert_with(|| Row {
                        level: "county",
                        id: info.county.clone(),
                        name: info
                            .county
                            .parse()
                            .ok()
                            .and_then(|c| counties.name(&c).map(str::to_owned))
                            .unwrap_or_default(),
                        tally: Tally::default(),
                        rates: Rates::default(),
                        completeness: Completeness::default(),
                        suppressed: Vec::new(),
                        missing: Vec::new(),
                        five_plus_two: None,
                    });
                    child.tally.add(&r.tally);
                    child.completeness.add(&r.completeness);
                    add_five_plus_two(&mut child.five_plus_two, r.five_plus_two);
                } else {
                    children.insert(school.to_string(), r);
                }
            }
            total.rates = total.tally.rates();
            let rows: Vec<Row> = children
                .into_values()
                .map(|mut r| {
                    r.rates = r.tally.rates();
                    if let Level::City = level {
                        suppress(&mut r, suppress_below);
                    }
                    r
                })
                .collect();
            // Suppression applies above the school level: county rows and the county's or the
            // city's own totals, never a single school's row.
            suppress(&mut total, suppress_below);
            (total, rows)
        }
        Level::School(school) | Level::Class(school, _) => {
            let (info, tallies) = per_school.get(school).cloned().unwrap_or_default();
            let facts = class_facts(store, school, from, to)?;
            let mut classes: BTreeMap<String, (Tally, BTreeMap<NaiveDate, Tally>)> =
                BTreeMap::new();
            for ((d, class), t) in &facts {
                let e = classes.entry(class.clone()).or_default();
                e.0.add(t);
                e.1.insert(*d, *t);
            }
            match level {
                Level::Class(_, class) => {
                    let (tally, by_day) = classes.get(class).cloned().unwrap_or_default();
                    let row = Row {
                        level: "class",
                        id: level.id(),
                        name: class.clone(),
                        rates: tally.rates(),
                        tally,
                        completeness: completeness_of(&expected_days, &by_day),
                        suppressed: Vec::new(),
                        missing: Vec::new(),
                        five_plus_two: None,
                    };
                    let children = by_day
                        .iter()
                        .map(|(d, t)| Row {
                            level: "day",
                            id: d.to_string(),
                            name: d.to_string(),
                            rates: t.rates(),
                            tally: *t,
                            completeness: completeness_of(std::slice::from_ref(d), &by_day),
                            suppressed: Vec::new(),
                            missing: Vec::new(),
                            five_plus_two: None,
                        })
                        .collect();
                    (row, children)
                }
                _ => {
                    let row = school_row(school, &info, &tallies);
                    let children = classes
                        .into_iter()
                        .map(|(class, (tally, by_day))| Row {
                            level: "class",
                            id: format!("{school}/{class}"),
                            name: class,
                            rates: tally.rates(),
                            tally,
                            completeness: completeness_of(&expected_days, &by_day),
                            suppressed: Vec::new(),
                            missing: Vec::new(),
                            five_plus_two: None,
                        })
                        .collect();
                    (row, children)
                }
            }
        }
    };
    Ok(Summary {
        period: period.name(),
        from,
        to,
        school_days: expected_days.len(),
        row,
        children,
    })
}

/// One class-day on a compliance list.
#[derive(Clone, Debug, Serialize)]
pub struct Flagged {
    pub school: String,
    pub name: String,
    pub county: String,
    pub date: NaiveDate,
    pub class: String,
    /// Finding codes that apply.
    pub flags: Vec<&'static str>,
    pub written_minutes: u32,
    pub afterschool_minutes: u32,
}

/// Class-days with a policy flag in scope over the period (schools without flags are skipped
/// from their school-day tallies, so only flagged schools' facts are read).
pub fn compliance(
    store: &DocStore,
    level: &Level,
    period: Period,
    date: NaiveDate,
    limit: usize,
) -> Result<Vec<Flagged>, StoreError> {
    let (from, to) = period.span(date);
    let known = schools(store)?;
    let mut flagged_schools: BTreeMap<SchoolId, String> = BTreeMap::new();
    for ((_, school), day) in days(store, from, to)? {
        let county = known
            .get(&school)
            .map_or(day.county.clone(), |i| i.county.clone());
        let ok = match level {
            Level::City => true,
            Level::County(c) => &county == c,
            Level::School(s) | Level::Class(s, _) => *s == school,
        };
        let t = day.tally;
        let any = t.cluster_class_days
            + t.over_limit_class_days
            + t.grade12_written_class_days
            + t.forbidden_homework_class_days
            + t.ends_early_class_days
            + t.new_lesson_class_days
            + (t.afterschool_class_days - t.full_sessions.min(t.afterschool_class_days));
        if ok && any > 0 {
            flagged_schools.insert(school, county);
        }
    }
    let mut out = Vec::new();
    for (school, county) in flagged_schools {
        for ((d, class), t) in class_facts(store, &school, from, to)? {
            if let Level::Class(_, c) = level {
                if *c != class {
                    continue;
                }
            }
            let mut flags = Vec::new();
            let checks = [
                (t.cluster_class_days > 0, "illness-cluster"),
                (t.over_limit_class_days > 0, "written-minutes-over-limit"),
                (
                    t.grade12_written_class_days > 0,
                    "written-homework-grade-1-2",
                ),
                (t.forbidden_homework_class_days > 0, "homework-forbidden"),
                (
                    t.afterschool_class_days > 0 && t.full_sessions == 0,
                    "afterschool-too-short",
                ),
                (t.ends_early_class_days > 0, "afterschool-ends-early"),
                (t.new_lesson_class_days > 0, "afterschool-new-lesson"),
            ];
            for (hit, code) in checks {
                if hit {
                    flags.push(code);
                }
            }
            if !flags.is_empty() {
                out.push(Flagged {
                    school: school.to_string(),
                    name: known
                        .get(&school)
                        .map(|i| i.name.clone())
                        .unwrap_or_default(),
                    county: county.clone(),
                    date: d,
                    class,
                    flags,
                    written_minutes: t.written_minutes,
                    afterschool_minutes: t.afterschool_minutes,
                });
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
