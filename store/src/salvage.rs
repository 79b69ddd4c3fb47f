//! Salvaging a damaged store: copy every readable, verified piece into a fresh one.
//!
//! What is kept: metadata (`m/`), each document's snapshot if it decodes and loads, and each
//! stored change whose bytes hash to its key and whose dependencies are present. What is dropped
//! on purpose: the heads index (`i/`, rebuilt from the kept documents) and every link's confirmed
//! heads (`a/`), so the next sync with each upstream starts from nothing confirmed: it pushes
//! everything kept here and pulls everything the upstream has that was lost. Changes that verify
//! but depend on something lost ("orphans") cannot be applied; they stay in the damaged store,
//! which the caller keeps aside, and are counted. This module does no renaming of directories;
//! for that see the agent's `repair` command.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{AutoCommit, Change};
use schoolsync_protocol::ids::DocId;
use serde::Serialize;

use crate::docs::{heads_bytes, index_key, DocStore, StoreError};
use crate::kv::{Kv, Op};

/// What a salvage kept and lost.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Salvaged {
    /// Whether the damaged store could be read at all.
    pub readable: bool,
    /// Metadata entries copied (school id, upstreams, sync status).
    pub meta: usize,
    /// Documents written to the new store.
    pub documents: usize,
    /// Changes those documents hold.
    pub changes: usize,
    /// Snapshots that did not decode or load (their content is refetched from upstream).
    pub snapshots_lost: usize,
    /// Stored changes whose bytes were unreadable or did not match their hash.
    pub changes_lost: usize,
    /// Verified changes whose dependencies were lost; left in the damaged store.
    pub orphans: usize,
    /// Reads the damaged engine refused (whole key ranges could not be listed).
    pub read_errors: Vec<String>,
}

/// One document's pieces as found in the damaged store.
#[derive(Default)]
struct Pieces {
    snapshot: Option<Vec<u8>>,
    changes: Vec<(String, Vec<u8>)>,
}

/// Copies everything readable from `old` into `new` (which should be empty) in one batch.
pub fn salvage(old: &dyn Kv, new: &DocStore) -> Result<Salvaged, StoreError> {
    let mut report = Salvaged::default();
    let mut entries = Vec::new();
    match old.scan_prefix(b"") {
        Ok(all) => entries = all,
        Err(e) => {
            report.read_errors.push(e.to_string());
            // Try the two ranges worth keeping one by one: one may still be readable.
            for prefix in [&b"m/"[..], b"d/"] {
                match old.scan_prefix(prefix) {
                    Ok(part) => entries.extend(part),
                    Err(e) => report.read_errors.push(e.to_string()),
                }
            }
        }
    }
    report.readable = !entries.is_empty() || report.read_errors.is_empty();
    let mut ops = Vec::new();
    let mut docs: BTreeMap<DocId, Pieces> = BTreeMap::new();
    for (key, value) in entries {
        if key.starts_with(b"m/") {
            report.meta += 1;
            ops.push(Op::Put(key, value));
            continue;
        }
        let Some(rest) = key.strip_prefix(b"d/") else {
            continue; // `i/` and `a/`: rebuilt and reset.
        };
        let text = String::from_utf8_lossy(rest).into_owned();
        // `<school>/<span>/s` or `<school>/<span>/c/<hash>`.
        let mut parts = text.splitn(3, '/');
        let (Some(school), Some(span), Some(tail)) = (parts.next(), parts.next(), parts.next())
        else {
            report.changes_lost += 1;
            continue;
        };
        let Ok(id) = format!("{school}/{span}").parse::<DocId>() else {
            report.changes_lost += 1;
            continue;
        };
        let pieces = docs.entry(id).or_default();
        if tail == "s" {
            pieces.snapshot = Some(value);
        } else if let Some(hash) = tail.strip_prefix("c/") {
            pieces.changes.push((hash.to_owned(), value));
        } else {
            report.changes_lost += 1;
        }
    }
    for (id, pieces) in docs {
        let mut doc = AutoCommit::new();
        if let Some(bytes) = &pieces.snapshot {
            let loaded = catch_unwind(AssertUnwindSafe(|| -> Result<AutoCommit, String> {
                let plain = schoolsync_protocol::sync::decode_snapshot(bytes)?;
                let mut doc = AutoCommit::load(&plain).map_err(|e| e.to_string())?;
                if doc.get_missing_deps(&[]).is_empty() {
                    Ok(doc)
                } else {
                    Err("missing dependencies".to_owned())
                }
            }));
            match loaded {
                Ok(Ok(d)) => doc = d,
                _ => report.snapshots_lost += 1,
            }
        }
        let mut verified = Vec::new();
        for (hash, bytes) in pieces.changes {
            let change = catch_unwind(AssertUnwindSafe(|| Change::from_bytes(bytes)));
            match change {
                Ok(Ok(c)) if c.hash().to_string() == hash => verified.push(c),
                _ => report.changes_lost += 1,
            }
        }
        // Apply one at a time in dependency order, so that one bad change cannot take the
        // others with it; what never becomes applicable is an orphan.
        let mut pending = verified;
        loop {
            let before = pending.len();
            let mut rest = Vec::new();
            for change in pending {
                let ready = change
                    .deps()
                    .iter()
                    .all(|d| doc.get_change_by_hash(d).is_some());
                if !ready {
                    rest.push(change);
                    continue;
                }
                let applied = catch_unwind(AssertUnwindSafe(|| {
                    let mut trial = doc.clone();
                    trial.apply_changes([change]).map(|_| trial)
                }));
                match applied {
                    Ok(Ok(trial)) => doc = trial,
                    _ => report.changes_lost += 1,
                }
            }
            pending = rest;
            if pending.is_empty() || pending.len() == before {
                break;
            }
        }
        report.orphans += pending.len();
        let heads = doc.get_heads();
        if heads.is_empty() {
            continue; // Nothing of it survived: the next sync fetches it whole.
        }
        report.documents += 1;
        report.changes += doc.get_changes(&[]).len();
        let snapshot = schoolsync_protocol::sync::encode_snapshot(&mut doc);
        ops.push(Op::Put(format!("d/{id}/s").into_bytes(), snapshot));
        ops.push(Op::Put(index_key(&id), heads_bytes(&heads)));
    }
    new.write_raw(ops)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;
    use schoolsync_protocol::doc::{commit, put_attendance, read_month, CommitMeta};
    use schoolsync_protocol::ids::{parse_date, Month, SchoolId};
    use schoolsync_protocol::records::{Attendance, Day};

    fn id(month: u32) -> DocId {
        let school: SchoolId = "2113000001".parse().unwrap();
        DocId::records(&school, Month { year: 2026, month })
    }

    fn record(month: u32, day: u32) -> Attendance {
        Attendance {
            date: Day(parse_date(&format!("2026-{month:02}-{day:02}")).unwrap()),
            class: "3-1".parse().unwrap(),
            expected: 40,
            present: 40,
            sick: 0,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        }
    }

    /// Two months: October's last change is damaged, November is intact. Salvage keeps all of
    /// November, October but its damaged change, and the metadata; nothing confirmed upstream.
    #[test]
    fn keeps_every_readable_change_and_resets_confirmations() {
        let store = DocStore::with_kv(Box::new(MemKv::default()));
        let meta = CommitMeta {
            school: "2113000001".into(),
            clerk: "c".into(),
            machine: "m".into(),
            action: "t".into(),
        };
        for month in [10, 11] {
            for day in 1..=3 {
                let mut loaded = store.load(&id(month)).unwrap();
                put_attendance(&mut loaded.doc, &record(month, day)).unwrap();
                commit(&mut loaded.doc, &meta, 1);
                store
                    .commit(
                        &mut [&mut loaded],
                        vec![DocStore::meta_op("school", "2113000001")],
                    )
                    .unwrap();
            }
        }
        store
            .write_raw(vec![Op::Put(b"a/link/x".to_vec(), vec![1; 32])])
            .unwrap();
        // Damage October's last change (the lexically last increment key of that document).
        let (key, mut value) = store
            .scan_raw(format!("d/{}/c/", id(10)).as_bytes())
            .unwrap()
            .into_iter()
            .max_by_key(|(k, _)| k.clone())
            .unwrap();
        let last = value.len() - 1;
        value[last] ^= 0xff;
        store.write_raw(vec![Op::Put(key, value)]).unwrap();
        assert!(store.load(&id(10)).is_err());

        let fresh = DocStore::with_kv(Box::new(MemKv::default()));
        // `salvage` reads through the `Kv` trait: give it the damaged store's entries.
        let old = MemKv::default();
        for (k, v) in store.scan_raw(b"").unwrap() {
            old.put(&k, &v).unwrap();
        }
        let report = salvage(&old, &fresh).unwrap();
        assert!(report.readable);
        assert_eq!(report.meta, 1);
        assert_eq!(report.documents, 2);
        // The damaged change is lost; a later one that depends on it is an orphan.
        assert_eq!(report.changes_lost, 1, "{report:?}");
        assert!(report.orphans <= 1, "{report:?}");
        let nov = read_month(&fresh.load(&id(11)).unwrap().doc).unwrap();
        assert_eq!(nov.attendance.len(), 3);
        let oct = read_month(&fresh.load(&id(10)).unwrap().doc).unwrap();
        assert!(!oct.attendance.is_empty(), "{:?}", oct.attendance.keys());
        assert!(fresh.scan_raw(b"a/").unwrap().is_empty());
        assert_eq!(fresh.meta("school").unwrap().as_deref(), Some("2113000001"));
    }
}
