//! The Automerge mapping: how profiles and month records sit in documents.
//!
//! Layout (schema 1). A records document, one per school per month:
//! ```text
//! { schema: 1, school: "2113000001", month: "2026-11",
//!   attendance:  { "2026-11-03/3-2": Attendance, ... },
//!   homework:    { "2026-11-03/3-2/数学/9f1c...": HomeworkItem, ... },
//!   afterschool: { "2026-11-03/3-2": AfterSchool, ... },
//!   findings:    { "2026-11-03/3-2": [Finding, ...], ... },
//!   feedback:    { "2026-11-03/3-2": Feedback, ... } }     written upstream (county, city)
//! ```
//! A profile document: `{ schema: 1, school, name, county, classes: { "3-2": ClassInfo } }`.
//!
//! Invariants:
//! - Keys are deterministic (the same record entered twice has the same key), so re-entering or
//!   re-importing updates in place and identical values produce no change at all.
//! - Records are written one at a time (`reconcile_prop` on the record's key), never by
//!   reconciling a whole map from a stale copy, which would delete records that arrived meanwhile.
//! - Every replica creates a document's skeleton (root maps) with the same deterministic first
//!   change ([`skeleton`]): same actor, same time, same ops, hence the same hash. Two machines that
//!   start the same month offline therefore share one `attendance` map instead of two conflicting
//!   ones, one of which would hide its records.
//!
//! This module does no IO; the caller loads and stores documents.

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ChangeHash, ObjType, ReadDoc, Value, ROOT};
use autosurgeon::{hydrate_prop, reconcile_prop, Hydrate, Reconcile};
use serde::{Deserialize, Serialize};

use crate::ids::{date_key, DocId, DocKind};
use crate::records::{AfterSchool, Attendance, ClassInfo, HomeworkItem, Profile};
use crate::rules::Finding;

/// Version of the document layout above; readers refuse documents with a newer one.
pub const SCHEMA_VERSION: u64 = 1;

/// The maps of a records document, in the order reports show them.
pub const RECORD_MAPS: [&str; 3] = ["attendance", "homework", "afterschool"];

/// Errors reading or writing records in a document.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("document layout is broken: {0}")]
    Hydrate(#[from] autosurgeon::HydrateError),
    #[error("document write failed: {0}")]
    Reconcile(#[from] autosurgeon::ReconcileError),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("document {doc} has schema {found}; this program reads up to {SCHEMA_VERSION}")]
    NewerSchema { doc: String, found: u64 },
    #[error("document is missing its {0} map")]
    MissingMap(&'static str),
}

/// The deterministic actor of skeleton changes. It writes exactly one change per document, the
/// same bytes on every replica, so it never produces a "duplicate seq".
fn skeleton_actor() -> ActorId {
    ActorId::from(b"schoolsync-skeleton-v1".as_slice())
}

/// A new document holding only the skeleton change, with its actor switched to `actor` for the
/// changes that follow.
pub fn skeleton(id: &DocId, actor: ActorId) -> Result<AutoCommit, DocError> {
    let mut doc = AutoCommit::new().with_actor(skeleton_actor());
    doc.put(ROOT, "schema", SCHEMA_VERSION)?;
    doc.put(ROOT, "school", id.school.as_str())?;
    match id.kind {
        DocKind::Profile => {
            doc.put_object(ROOT, "classes", ObjType::Map)?;
        }
        DocKind::Records(month) => {
            doc.put(ROOT, "month", month.to_string())?;
            for map in RECORD_MAPS.iter().chain(["findings", "feedback"].iter()) {
                doc.put_object(ROOT, *map, ObjType::Map)?;
            }
        }
    }
    doc.commit_with(
        CommitOptions::default()
            .with_time(0)
            .with_message("skeleton"),
    );
    doc.set_actor(actor);
    Ok(doc)
}

/// Refuses documents written by a newer schema.
pub fn check_schema(id: &DocId, doc: &AutoCommit) -> Result<(), DocError> {
    let found: Option<u64> = hydrate_prop(doc, ROOT, "schema")?;
    match found {
        Some(v) if v > SCHEMA_VERSION => Err(DocError::NewerSchema {
            doc: id.to_string(),
            found: v,
        }),
        _ => Ok(()),
    }
}

fn map_id(doc: &AutoCommit, name: &'static str) -> Result<automerge::ObjId, DocError> {
    match doc.get(ROOT, name)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => Err(DocError::MissingMap(name)),
    }
}

/// Who recorded a change and in which user action: goes in the commit message as JSON, so the
/// actor id can stay random per process (see SYNC.md on actor reuse).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitMeta {
    pub school: String,
    pub clerk: String,
    pub machine: String,
    /// The user action: `attendance record`, `import homework`, ...
    pub action: String,
}

/// Commits pending operations as one change carrying `meta`; `None` when nothing changed.
pub fn commit(doc: &mut AutoCommit, meta: &CommitMeta, now_ms: i64) -> Option<ChangeHash> {
    let message = serde_json::to_string(meta).unwrap_or_default();
    doc.commit_with(
        CommitOptions::default()
            .with_message(message)
            .with_time(now_ms),
    )
}

/// Key of a class-day record (attendance, after-school, findings): `2026-11-03/3-2`.
pub fn class_day_key(date: chrono::NaiveDate, class: &crate::ids::ClassId) -> String {
    format!("{}/{}", date_key(date), class)
}

/// Key of a homework item: class-day, subject and a hash of the content, so entering the same
/// assignment twice updates it, while two assignments in one subject stay apart.
pub fn homework_key(item: &HomeworkItem) -> String {
    // FNV-1a, folded to 32 bits: stable across platforms and versions, unlike `DefaultHasher`.
    // 32 bits tell apart the few assignments of one subject on one class-day (a collision needs
    // ~65,000 of them) and keep keys short. (Putting the content itself in the key, and not in
    // the record, was measured: a term's sync grew by 10%, long keys compress worse.)
    let hash = crate::ids::fnv1a64(item.content.trim().as_bytes());
    let hash = (hash >> 32) as u32 ^ hash as u32;
    format!(
        "{}/{}/{hash:08x}",
        class_day_key(item.date.0, &item.class),
        item.subject
    )
}

fn put<R: Reconcile>(
    doc: &mut AutoCommit,
    map: &'static str,
    key: &str,
    value: &R,
) -> Result<(), DocError> {
    let obj = map_id(doc, map)?;
    reconcile_prop(doc, &obj, key, value)?;
    Ok(())
}

pub fn put_attendance(doc: &mut AutoCommit, record: &Attendance) -> Result<(), DocError> {
    put(
        doc,
        "attendance",
        &class_day_key(record.date.0, &record.class),
        record,
    )
}

pub fn put_homework(doc: &mut AutoCommit, item: &HomeworkItem) -> Result<(), DocError> {
    put(doc, "homework", &homework_key(item), item)
}

pub fn put_afterschool(doc: &mut AutoCommit, record: &AfterSchool) -> Result<(), DocError> {
    put(
        doc,
        "afterschool",
        &class_day_key(record.date.0, &record.class),
        record,
    )
}

/// Stores a class-day's findings; an empty list removes the entry.
pub fn put_findings(doc: &mut AutoCommit, key: &str, findings: &[Finding]) -> Result<(), DocError> {
    let obj = map_id(doc, "findings")?;
    if findings.is_empty() {
        if doc.get(&obj, key)?.is_some() {
            doc.delete(&obj, key)?;
        }
        Ok(())
    } else {
        reconcile_prop(doc, &obj, key, findings.to_vec())?;
        Ok(())
    }
}

pub fn put_class(doc: &mut AutoCommit, class: &ClassInfo) -> Result<(), DocError> {
    put(doc, "classes", class.class.as_str(), class)
}

/// Sets the profile's name and county (the school id is in the skeleton).
pub fn put_identity(doc: &mut AutoCommit, name: &str, county: &str) -> Result<(), DocError> {
    reconcile_prop(doc, ROOT, "name", name)?;
    reconcile_prop(doc, ROOT, "county", county)?;
    Ok(())
}

/// A note from the county or city on a class-day (审核意见), carried down to the school.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Reconcile, Hydrate)]
pub struct Feedback {
    pub note: String,
    /// Who wrote it: `city`, or a county code.
    pub by: String,
    /// RFC 3339.
    pub at: String,
}

/// Writes feedback on a class-day (key as [`class_day_key`]).
pub fn put_feedback(doc: &mut AutoCommit, key: &str, feedback: &Feedback) -> Result<(), DocError> {
    put(doc, "feedback", key, feedback)
}

pub fn read_profile(doc: &AutoCommit) -> Result<Profile, DocError> {
    Ok(autosurgeon::hydrate(doc)?)
}

/// All records of a month document, with their stored findings.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MonthRecords {
    pub attendance: BTreeMap<String, Attendance>,
    pub homework: BTreeMap<String, HomeworkItem>,
    pub afterschool: BTreeMap<String, AfterSchool>,
    pub findings: BTreeMap<String, Vec<Finding>>,
    pub feedback: BTreeMap<String, Feedback>,
}

impl MonthRecords {
    pub fn len(&self) -> usize {
        self.attendance.len() + self.homework.len() + self.afterschool.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hydrate_map<T: Hydrate>(
    doc: &AutoCommit,
    name: &'static str,
) -> Result<BTreeMap<String, T>, DocError> {
    Ok(hydrate_prop::<_, Option<BTreeMap<String, T>>, _, _>(doc, ROOT, name)?.unwrap_or_default())
}

/// The feedback of a month, by class-day key, without reading its records.
pub fn read_feedback(doc: &AutoCommit) -> Result<BTreeMap<String, Feedback>, DocError> {
    hydrate_map(doc, "feedback")
}

/// Visits a map of records in one pass, each record read from the object id the pass yields:
/// autosurgeon's map hydration looks every key up again, a seek in the document per record.
/// A record that is not a map is an error, as hydration would say.
fn each_record<T: Hydrate>(
    doc: &AutoCommit,
    name: &'static str,
    mut visit: impl FnMut(String, T) -> Result<(), DocError>,
) -> Result<(), DocError> {
    let obj = match doc.get(ROOT, name)? {
        Some((Value::Object(ObjType::Map), id)) => id,
        _ => return Ok(()),
    };
    for item in doc.map_range(&obj, ..) {
        if !matches!(item.value, automerge::ValueRef::Object(ObjType::Map)) {
            return Err(DocError::Hydrate(autosurgeon::HydrateError::unexpected(
                "a record map",
                format!("something else at {name}/{}", item.key),
            )));
        }
        let record = T::hydrate_map(doc, &item.id())?;
        visit(item.key.into_owned(), record)?;
    }
    Ok(())
}

/// A map of records, read with [`each_record`].
fn hydrate_records<T: Hydrate>(
    doc: &AutoCommit,
    name: &'static str,
) -> Result<BTreeMap<String, T>, DocError> {
    let mut out = BTreeMap::new();
    each_record(doc, name, |key, record| {
        out.insert(key, record);
        Ok(())
    })?;
    Ok(out)
}

pub fn read_month(doc: &AutoCommit) -> Result<MonthRecords, DocError> {
    let mut attendance: BTreeMap<String, Attendance> = hydrate_records(doc, "attendance")?;
    for (key, r) in attendance.iter_mut() {
        crate::schema::fill_from_key(key, &mut r.date, &mut r.class)?;
    }
    let mut homework: BTreeMap<String, HomeworkItem> = hydrate_records(doc, "homework")?;
    for (key, r) in homework.iter_mut() {
        crate::schema::fill_from_key(key, &mut r.date, &mut r.class)?;
    }
    let mut afterschool: BTreeMap<String, AfterSchool> = hydrate_records(doc, "afterschool")?;
    for (key, r) in afterschool.iter_mut() {
        crate::schema::fill_from_key(key, &mut r.date, &mut r.class)?;
    }
    Ok(MonthRecords {
        attendance,
        homework,
        afterschool,
        findings: hydrate_map(doc, "findings")?,
        feedback: hydrate_map(doc, "feedback")?,
    })
}

/// One map entry, `None` when absent.
fn entry<T: Hydrate>(
    doc: &AutoCommit,
    obj: &automerge::ObjId,
    key: &str,
) -> Result<Option<T>, DocError> {
    Ok(
        match hydrate_prop::<_, autosurgeon::MaybeMissing<T>, _, _>(doc, obj, key)? {
            autosurgeon::MaybeMissing::Missing => None,
            autosurgeon::MaybeMissing::Present(value) => Some(value),
        },
    )
}

/// The records of the given class-days only (attendance, homework, after-school, findings,
/// feedback), read without hydrating the rest of the month: a write or a day's report then costs
/// what it touches, not the month.
pub fn read_class_days<'a>(
    doc: &AutoCommit,
    class_days: impl IntoIterator<Item = (chrono::NaiveDate, &'a crate::ids::ClassId)>,
) -> Result<MonthRecords, DocError> {
    let mut out = MonthRecords::default();
    let (attendance, afterschool, findings) = (
        map_id(doc, "attendance")?,
        map_id(doc, "afterschool")?,
        map_id(doc, "findings")?,
    );
    let homework_map = map_id(doc, "homework")?;
    // Feedback arrives from upstream into the skeleton's map; tolerate its absence all the same.
    let feedback = map_id(doc, "feedback").ok();
    let mut homework_keys: Vec<String> = doc.keys(&homework_map).collect();
    homework_keys.sort();
    for (date, class) in class_days {
        let key = class_day_key(date, class);
        if let Some(mut r) = entry::<Attendance>(doc, &attendance, &key)? {
            crate::schema::fill_from_key(&key, &mut r.date, &mut r.class)?;
            out.attendance.insert(key.clone(), r);
        }
        if let Some(mut r) = entry::<AfterSchool>(doc, &afterschool, &key)? {
            crate::schema::fill_from_key(&key, &mut r.date, &mut r.class)?;
            out.afterschool.insert(key.clone(), r);
        }
        if let Some(f) = entry::<Vec<Finding>>(doc, &findings, &key)? {
            out.findings.insert(key.clone(), f);
        }
        if let Some(feedback) = &feedback {
            if let Some(f) = entry::<Feedback>(doc, feedback, &key)? {
                out.feedback.insert(key.clone(), f);
            }
        }
        let prefix = format!("{key}/");
        let first = homework_keys.partition_point(|k| k.as_str() < prefix.as_str());
        for hk in homework_keys[first..]
            .iter()
            .take_while(|k| k.starts_with(&prefix))
        {
            if let Some(mut r) = entry::<HomeworkItem>(doc, &homework_map, hk)? {
                crate::schema::fill_from_key(hk, &mut r.date, &mut r.class)?;
                out.homework.insert(hk.clone(), r);
            }
        }
    }
    Ok(out)
}

/// A record an incoming change set would leave breaking a hard rule (or not readable as a record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// `attendance`, `homework`, `afterschool` or `profile`.
    pub map: &'static str,
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.map, self.key, self.reason)
    }
}

/// Upstream re-check of incoming changes: every record the sender's new changes touched must
/// keep the hard rules a record carries by itself ([`Attendance::check`] etc.), read **as the
/// sender saw it** (the document at `sender_heads`), so a rule-breaking write is caught even when
/// it loses a conflict here. Records left inconsistent only by merging two machines' concurrent
/// edits are not the sender's doing: those stay visible as conflicts rather than blocking the
/// school. `before` are this node's heads before the changes were applied.
///
/// `whole`: the document was new here (received whole), so every record is the sender's:
/// they are enumerated directly rather than diffed from nothing (a diff would build a patch per
/// operation: seconds and tens of MB for a term's month).
pub fn check_incoming(
    doc: &mut AutoCommit,
    before: &[ChangeHash],
    sender_heads: &[ChangeHash],
    whole: bool,
) -> Result<(), BadRecord> {
    let after = doc.get_heads();
    if before == after.as_slice() {
        return Ok(());
    }
    let mut sorted_sender = sender_heads.to_vec();
    sorted_sender.sort();
    let mut sorted_after = after.clone();
    sorted_after.sort();
    let mut forked;
    let (view, from, to): (&mut AutoCommit, Vec<ChangeHash>, Vec<ChangeHash>) =
        if sender_heads.is_empty() || sorted_sender == sorted_after {
            (doc, before.to_vec(), after)
        } else {
            forked = doc.fork_at(sender_heads).map_err(|e| BadRecord {
                map: "document",
                key: String::new(),
                reason: e.to_string(),
            })?;
            // What this node already had of the sender's history.
            let from = before
                .iter()
                .filter(|h| forked.get_change_by_hash(h).is_some())
                .copied()
                .collect();
            (&mut forked, from, sender_heads.to_vec())
        };
    if whole {
        // Every record is the sender's: each map read in one pass, each record checked as it
        // is read (nothing of the month is held at once).
        let mut found: Option<BadRecord> = None;
        let mut check = |map: &'static str,
                         key: String,
                         date: &mut crate::records::Day,
                         class: &mut crate::ids::ClassId,
                         checked: Result<(), crate::HardError>| {
            if found.is_none() {
                let reason = crate::schema::fill_from_key(&key, date, class)
                    .map_err(|e| e.to_string())
                    .and(checked.map_err(|e| e.to_string()));
                if let Err(reason) = reason {
                    found = Some(BadRecord { map, key, reason });
                }
            }
        };
        let read = each_record::<Attendance>(view, "attendance", |key, mut r| {
            let checked = r.check();
            check("attendance", key, &mut r.date, &mut r.class, checked);
            Ok(())
        })
        .and_then(|()| {
            each_record::<HomeworkItem>(view, "homework", |key, mut r| {
                let checked = r.check();
                check("homework", key, &mut r.date, &mut r.class, checked);
                Ok(())
            })
        })
        .and_then(|()| {
            each_record::<AfterSchool>(view, "afterschool", |key, mut r| {
                let checked = r.check();
                check("afterschool", key, &mut r.date, &mut r.class, checked);
                Ok(())
            })
        });
        if let Err(e) = read {
            return Err(BadRecord {
                map: "document",
                key: String::new(),
                reason: format!("not readable records ({e})"),
            });
        }
        if let Some(bad) = found {
            return Err(bad);
        }
        return Ok(());
    }
    let touched = touched_keys(view, &from, &to, &RECORD_MAPS);
    for (map, keys) in touched {
        let obj = match view.get(ROOT, map) {
            Ok(Some((Value::Object(ObjType::Map), id))) => id,
            _ => continue,
        };
        for key in keys {
            let checked = match map {
                "attendance" => check_entry::<Attendance>(
                    view,
                    &obj,
                    &key,
                    |r| (&mut r.date, &mut r.class),
                    Attendance::check,
                ),
                "homework" => check_entry::<HomeworkItem>(
                    view,
                    &obj,
                    &key,
                    |r| (&mut r.date, &mut r.class),
                    HomeworkItem::check,
                ),
                _ => check_entry::<AfterSchool>(
                    view,
                    &obj,
                    &key,
                    |r| (&mut r.date, &mut r.class),
                    AfterSchool::check,
                ),
            };
            checked.map_err(|reason| BadRecord {
                map,
                key: key.clone(),
                reason,
            })?;
        }
    }
    Ok(())
}

/// The keys of `maps` (top-level maps of a records document) whose visible value changed between
/// two sets of heads, per map.
pub fn touched_keys(
    doc: &mut AutoCommit,
    from: &[ChangeHash],
    to: &[ChangeHash],
    maps: &[&'static str],
) -> BTreeMap<&'static str, std::collections::BTreeSet<String>> {
    let mut touched: BTreeMap<&'static str, std::collections::BTreeSet<String>> = BTreeMap::new();
    for patch in doc.diff(from, to) {
        let (map, key) = match (patch.path.first(), patch.path.get(1), &patch.action) {
            (Some((_, automerge::Prop::Map(map))), Some((_, automerge::Prop::Map(key))), _) => {
                (map.clone(), key.clone())
            }
            (
                Some((_, automerge::Prop::Map(map))),
                None,
                automerge::PatchAction::PutMap { key, .. }
                | automerge::PatchAction::DeleteMap { key },
            ) => (map.clone(), key.clone()),
            _ => continue,
        };
        if let Some(name) = maps.iter().find(|m| **m == map) {
            touched.entry(name).or_default().insert(key);
        }
    }
    touched
}

/// Every class-day (`date/class` key) with a record or findings in a records document.
pub fn all_class_days(doc: &AutoCommit) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for map in ["attendance", "homework", "afterschool", "findings"] {
        if let Ok(obj) = map_id(doc, map) {
            for key in doc.keys(&obj) {
                out.insert(key.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"));
            }
        }
    }
    out
}

/// The class-days (`date/class` keys) whose records or findings changed between two sets of
/// heads: what an aggregate kept per class-day must recompute.
pub fn touched_class_days(
    doc: &mut AutoCommit,
    from: &[ChangeHash],
    to: &[ChangeHash],
) -> std::collections::BTreeSet<String> {
    touched_keys(
        doc,
        from,
        to,
        &["attendance", "homework", "afterschool", "findings"],
    )
    .into_values()
    .flatten()
    .map(|key| key.splitn(3, '/').take(2).collect::<Vec<_>>().join("/"))
    .collect()
}

/// Reads one record (absent is fine) and applies its own hard rules.
fn check_entry<T: Hydrate>(
    doc: &AutoCommit,
    obj: &automerge::ObjId,
    key: &str,
    place: impl Fn(&mut T) -> (&mut crate::records::Day, &mut crate::ids::ClassId),
    check: impl Fn(&T) -> Result<(), crate::HardError>,
) -> Result<(), String> {
    let Some(mut record) =
        entry::<T>(doc, obj, key).map_err(|e| format!("not a readable record ({e})"))?
    else {
        return Ok(());
    };
    let (date, class) = place(&mut record);
    crate::schema::fill_from_key(key, date, class)
        .map_err(|e| format!("not a readable record ({e})"))?;
    check(&record).map_err(|e| e.to_string())
}

/// Two or more values written concurrently at one place, none of them lost: Automerge keeps them
/// all and picks one deterministically as the visible winner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// `attendance`, `homework`, `afterschool` or `classes`.
    pub map: String,
    /// The record key.
    pub key: String,
    /// The field in conflict, or `None` when whole records were created concurrently.
    pub field: Option<String>,
    /// Every value, rendered as JSON text, the visible winner first.
    pub values: Vec<String>,
}

fn render(doc: &AutoCommit, value: &Value<'_>, obj: &automerge::ObjId) -> serde_json::Value {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            automerge::ScalarValue::Str(t) => serde_json::Value::String(t.to_string()),
            automerge::ScalarValue::Int(i) => (*i).into(),
            automerge::ScalarValue::Uint(u) => (*u).into(),
            automerge::ScalarValue::Boolean(b) => (*b).into(),
            automerge::ScalarValue::Null => serde_json::Value::Null,
            other => serde_json::Value::String(other.to_string()),
        },
        Value::Object(ObjType::Map) => {
            let mut out = serde_json::Map::new();
            for key in doc.keys(obj) {
                if let Ok(Some((v, id))) = doc.get(obj, key.as_str()) {
                    out.insert(key, render(doc, &v, &id));
                }
            }
            serde_json::Value::Object(out)
        }
        Value::Object(_) => {
            let mut out = Vec::new();
            for i in 0..doc.length(obj) {
                if let Ok(Some((v, id))) = doc.get(obj, i) {
                    out.push(render(doc, &v, &id));
                }
            }
            serde_json::Value::Array(out)
        }
    }
}

/// Every conflict among the records of `maps` (record-level and field-level).
pub fn conflicts(doc: &AutoCommit, maps: &[&'static str]) -> Result<Vec<Conflict>, DocError> {
    conflicts_under(doc, maps, "")
}

/// The conflicts among records whose key starts with `prefix` (e.g. one day, `2026-11-03/`).
pub fn conflicts_under(
    doc: &AutoCommit,
    maps: &[&'static str],
    prefix: &str,
) -> Result<Vec<Conflict>, DocError> {
    let mut out = Vec::new();
    for &map in maps {
        let Ok(map_obj) = map_id(doc, map) else {
            continue;
        };
        for key in doc
            .keys(&map_obj)
            .filter(|k| k.starts_with(prefix))
            .collect::<Vec<_>>()
        {
            let all = doc.get_all(&map_obj, key.as_str())?;
            if all.len() > 1 {
                out.push(Conflict {
                    map: map.to_owned(),
                    key: key.clone(),
                    field: None,
                    values: all
                        .iter()
                        .map(|(v, id)| render(doc, v, id).to_string())
                        .collect(),
                });
                continue;
            }
            let Some((Value::Object(ObjType::Map), record)) = all.into_iter().next() else {
                continue;
            };
            for field in doc.keys(&record).collect::<Vec<_>>() {
                let values = doc.get_all(&record, field.as_str())?;
                if values.len() > 1 {
                    out.push(Conflict {
                        map: map.to_owned(),
                        key: key.clone(),
                        field: Some(field),
                        values: values
                            .iter()
                            .map(|(v, id)| render(doc, v, id).to_string())
                            .collect(),
                    });
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::parse_date;
    use crate::records::{Attendance, Day};

    use crate::test_support::{attendance, meta, month_id as id};

    fn record(present: u32) -> Attendance {
        attendance(3, "3-2", present)
    }

    #[test]
    fn incoming_records_are_rechecked_as_the_sender_saw_them() {
        let mut upstream = skeleton(&id(), ActorId::random()).unwrap();
        let base = upstream.get_heads();
        // 1. A valid record passes; one whose counts do not add up is named.
        let mut good = upstream.fork();
        put_attendance(&mut good, &record(40)).unwrap();
        commit(&mut good, &meta(), 1);
        let mut bad = upstream.fork();
        let mut broken = record(40);
        broken.present = 60;
        put_attendance(&mut bad, &broken).unwrap();
        commit(&mut bad, &meta(), 1);
        upstream.merge(&mut good).unwrap();
        let heads = good.get_heads();
        assert_eq!(check_incoming(&mut upstream, &base, &heads, false), Ok(()));
        let before = upstream.get_heads();
        let mut fresh = skeleton(&id(), ActorId::random()).unwrap();
        fresh.merge(&mut bad).unwrap();
        let err = check_incoming(&mut fresh, &base, &bad.get_heads(), true).unwrap_err();
        assert_eq!(
            (err.map, err.key.as_str()),
            ("attendance", "2026-11-03/3-2")
        );
        // Even when the bad write loses the conflict with a good one already here.
        let mut both = upstream.fork();
        both.merge(&mut bad).unwrap();
        let err = check_incoming(&mut both, &before, &bad.get_heads(), false).unwrap_err();
        assert_eq!(err.key, "2026-11-03/3-2");
        // 2. Concurrent edits that only break the rule once merged are not the sender's doing.
        let mut other = upstream.fork();
        let mut a = record(40);
        a.present = 34;
        a.sick = 6;
        put_attendance(&mut other, &a).unwrap();
        commit(&mut other, &meta(), 2);
        let mut sender = upstream.fork();
        let mut b = record(40);
        b.present = 36;
        b.sick = 4;
        put_attendance(&mut sender, &b).unwrap();
        commit(&mut sender, &meta(), 3);
        upstream.merge(&mut other).unwrap();
        let before_sender = upstream.get_heads();
        upstream.merge(&mut sender).unwrap();
        assert_eq!(
            check_incoming(&mut upstream, &before_sender, &sender.get_heads(), false),
            Ok(())
        );
    }

    #[test]
    fn skeletons_are_identical_on_every_replica() {
        let mut a = skeleton(&id(), ActorId::random()).unwrap();
        let mut b = skeleton(&id(), ActorId::random()).unwrap();
        assert_eq!(a.get_heads(), b.get_heads());
        put_attendance(&mut a, &record(40)).unwrap();
        commit(&mut a, &meta(), 1);
        put_attendance(&mut b, &record(39)).unwrap();
        commit(&mut b, &meta(), 2);
        a.merge(&mut b).unwrap();
        // One shared attendance map: both writes are visible as one record in conflict.
        let records = read_month(&a).unwrap();
        assert_eq!(records.attendance.len(), 1);
        let found = conflicts(&a, &RECORD_MAPS).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "2026-11-03/3-2");
        assert_eq!(found[0].values.len(), 2);
    }

    #[test]
    fn rewriting_identical_values_makes_no_change() {
        let mut doc = skeleton(&id(), ActorId::random()).unwrap();
        put_attendance(&mut doc, &record(40)).unwrap();
        assert!(commit(&mut doc, &meta(), 1).is_some());
        put_attendance(&mut doc, &record(40)).unwrap();
        assert!(commit(&mut doc, &meta(), 2).is_none());
        put_attendance(&mut doc, &record(38)).unwrap();
        assert!(commit(&mut doc, &meta(), 3).is_some());
        assert_eq!(
            read_month(&doc).unwrap().attendance["2026-11-03/3-2"].present,
            38
        );
        let change = doc.get_last_local_change().unwrap();
        let meta_back: CommitMeta = serde_json::from_str(change.message().unwrap()).unwrap();
        assert_eq!(meta_back.clerk, "王老师");
    }

    #[test]
    fn reading_class_days_matches_reading_the_month() {
        use crate::records::{HomeworkType, Layer, Place};
        let mut doc = skeleton(&id(), ActorId::random()).unwrap();
        for (day, class) in [(3, "3-1"), (3, "3-2"), (4, "3-1"), (5, "3-10")] {
            let date = Day(parse_date(&format!("2026-11-{day:02}")).unwrap());
            let class: crate::ids::ClassId = class.parse().unwrap();
            put_attendance(
                &mut doc,
                &Attendance {
                    date,
                    class: class.clone(),
                    ..record(40)
                },
            )
            .unwrap();
            for subject in ["数学", "语文"] {
                let item = HomeworkItem {
                    date,
                    class: class.clone(),
                    subject: subject.into(),
                    content: "p1".into(),
                    kind: HomeworkType::Written,
                    layer: Layer::Required,
                    place: Place::AtHome,
                    minutes: 20,
                    teacher: None,
                    review: None,
                    published: false,
                    flags: vec![],
                };
                put_homework(&mut doc, &item).unwrap();
            }
        }
        commit(&mut doc, &meta(), 1);
        let month = read_month(&doc).unwrap();
        let class: crate::ids::ClassId = "3-1".parse().unwrap();
        let wanted = [
            (parse_date("2026-11-03").unwrap(), &class),
            (parse_date("2026-11-05").unwrap(), &class),
        ];
        let some = read_class_days(&doc, wanted).unwrap();
        let expect_att: Vec<&String> = month
            .attendance
            .keys()
            .filter(|k| k.as_str() == "2026-11-03/3-1")
            .collect();
        assert_eq!(some.attendance.keys().collect::<Vec<_>>(), expect_att);
        // "3-1" must not pick up "3-10"; 2026-11-05 has no 3-1 records.
        assert_eq!(some.homework.len(), 2);
        assert!(some
            .homework
            .keys()
            .all(|k| k.starts_with("2026-11-03/3-1/")));
        for (k, v) in &some.homework {
            assert_eq!(&month.homework[k], v);
        }
    }

    #[test]
    fn clearing_an_optional_field_on_one_pc_and_changing_it_on_another_is_a_conflict() {
        use crate::records::{HomeworkType, Layer, Place, Review};
        let item = |teacher: Option<&str>, review: Option<(&str, &str)>| HomeworkItem {
            date: Day(parse_date("2026-11-03").unwrap()),
            class: "3-2".parse().unwrap(),
            subject: "数学".into(),
            content: "p1".into(),
            kind: HomeworkType::Written,
            layer: Layer::Required,
            place: Place::AtHome,
            minutes: 20,
            teacher: teacher.map(str::to_owned),
            review: review.map(|(at, by)| Review {
                at: at.into(),
                by: by.into(),
            }),
            published: false,
            flags: vec![],
        };
        let mut a = skeleton(&id(), ActorId::random()).unwrap();
        put_homework(
            &mut a,
            &item(Some("王老师"), Some(("2026-11-03T10:00:00Z", "张 主任"))),
        )
        .unwrap();
        commit(&mut a, &meta(), 1);
        let stored = read_month(&a)
            .unwrap()
            .homework
            .into_values()
            .next()
            .unwrap();
        assert_eq!(
            stored.review.as_ref().map(|r| r.by.as_str()),
            Some("张 主任")
        );
        let mut b = a.fork();
        put_homework(&mut a, &item(None, None)).unwrap();
        commit(&mut a, &meta(), 2);
        // Clearing again writes nothing new.
        put_homework(&mut a, &item(None, None)).unwrap();
        assert!(commit(&mut a, &meta(), 3).is_none());
        put_homework(
            &mut b,
            &item(Some("李老师"), Some(("2026-11-03T11:00:00Z", "刘"))),
        )
        .unwrap();
        commit(&mut b, &meta(), 4);
        a.merge(&mut b).unwrap();
        let fields: Vec<String> = conflicts(&a, &RECORD_MAPS)
            .unwrap()
            .into_iter()
            .filter_map(|c| c.field)
            .collect();
        assert_eq!(fields, vec!["review".to_owned(), "teacher".to_owned()]);
    }

    #[test]
    fn concurrent_field_edits_are_conflicts_not_losses() {
        let mut a = skeleton(&id(), ActorId::random()).unwrap();
        put_attendance(&mut a, &record(40)).unwrap();
        commit(&mut a, &meta(), 1);
        let mut b = a.fork();
        put_attendance(&mut a, &record(39)).unwrap();
        commit(&mut a, &meta(), 2);
        put_attendance(&mut b, &record(38)).unwrap();
        commit(&mut b, &meta(), 3);
        a.merge(&mut b).unwrap();
        let found = conflicts(&a, &RECORD_MAPS).unwrap();
        let fields: Vec<_> = found.iter().filter_map(|c| c.field.clone()).collect();
        assert_eq!(fields, vec!["present".to_owned(), "sick".to_owned()]);
        let mut values = found[0].values.clone();
        values.sort();
        assert_eq!(values, vec!["38".to_owned(), "39".to_owned()]);
    }
}
