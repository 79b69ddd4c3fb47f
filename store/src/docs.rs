//! The document store of every tier: Automerge documents kept as a snapshot plus incremental
//! changes.
//!
//! Key layout (one sled tree):
//! ```text
//! m/<name>                  small metadata values (school id, machine id)
//! d/<doc id>/s              the document's last snapshot (`sync::encode_snapshot`: zstd of the
//!                           uncompressed save; plain `save()` bytes are read too)
//! d/<doc id>/c/<hash hex>   one change not yet folded into the snapshot, raw bytes
//! i/<doc id>                the document's heads (32 bytes each): the doc → heads index, so a
//!                           "nothing new" sync answer and digests need no document loaded
//! a/<link>/<doc id>         heads the upstream behind `link` last confirmed (see `replica`)
//! ```
//! Invariants:
//! - [`DocStore::commit`] returns only after its batch is flushed: a command that reports success
//!   has its record on disk.
//! - A user action is one atomic batch, however many documents it touches: an import is all or
//!   nothing even across a crash.
//! - Compaction writes the new snapshot and deletes the folded changes in one batch.
//! - Each change is stored under its own hash; on load the hash is recomputed and a mismatch is a
//!   [`StoreError::Corrupt`], never silently skipped.
//! - Every process takes a fresh random actor id ([`DocStore::open`]); copying a data folder or
//!   restoring a backup therefore never reuses an actor.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use schoolsync_protocol::doc::{self, DocError};
use schoolsync_protocol::ids::DocId;

use crate::engine::{open_kv, Engine};
use crate::kv::{Kv, KvError, Op};

/// Increments below this many bytes are never compacted: a snapshot rewrite per record would cost
/// more than it saves.
pub const COMPACT_MIN_BYTES: usize = 64 * 1024;

/// Errors of the document store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("document {doc} is damaged: {reason}")]
    Corrupt { doc: String, reason: String },
    /// Boxed: automerge's errors are large and would bloat every `Result` of the agent.
    #[error(transparent)]
    Doc(Box<DocError>),
}

impl From<DocError> for StoreError {
    fn from(e: DocError) -> Self {
        StoreError::Doc(Box::new(e))
    }
}

/// A loaded document with what the store needs to know to save and compact it.
pub struct LoadedDoc {
    pub id: DocId,
    pub doc: AutoCommit,
    /// Heads when loaded or last saved: changes after them are what the next save writes.
    saved_heads: Vec<ChangeHash>,
    snapshot_bytes: usize,
    increment_bytes: usize,
    /// Keys of the stored increments, deleted when compacting.
    increment_keys: Vec<Vec<u8>>,
    /// Whether the document exists in the store (false for a fresh skeleton).
    stored: bool,
    /// Bytes known to load to exactly this document (a snapshot it was adopted from), so that
    /// storing it new needs no re-encoding.
    snapshot_hint: Option<Vec<u8>>,
}

impl LoadedDoc {
    pub fn exists(&self) -> bool {
        self.stored
    }

    /// Records that `bytes` load to exactly the current document (it was just adopted from
    /// them): a first save then stores them as they are.
    pub fn set_snapshot_hint(&mut self, bytes: Vec<u8>) {
        self.snapshot_hint = Some(bytes);
    }
}

/// The agent's store of documents and metadata.
pub struct DocStore {
    kv: Box<dyn Kv>,
    actor: ActorId,
    /// The engine on disk; `None` for a store made from a bare [`Kv`] ([`DocStore::with_kv`]).
    engine: Option<Engine>,
}

/// A stored document's snapshot (if any) and its increments, as bytes.
pub type RawParts = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// Key of a document's heads in the index.
pub fn index_key(id: &DocId) -> Vec<u8> {
    format!("i/{id}").into_bytes()
}

/// Heads as stored: 32 bytes each, sorted.
pub fn heads_bytes(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

/// Heads from their stored form; trailing partial bytes are ignored.
pub fn heads_from_bytes(bytes: &[u8]) -> Vec<ChangeHash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| <[u8; 32]>::try_from(c).ok().map(ChangeHash))
        .collect()
}

fn doc_prefix(id: &DocId) -> String {
    format!("d/{id}/")
}

fn guarded<T>(
    what: &str,
    id: &DocId,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, StoreError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(reason)) => Err(StoreError::Corrupt {
            doc: id.to_string(),
            reason: format!("{what}: {reason}"),
        }),
        Err(_) => Err(StoreError::Corrupt {
            doc: id.to_string(),
            reason: format!("{what}: automerge panicked"),
        }),
    }
}

impl DocStore {
    /// Opens the store in `dir` with the engine it was created with (a new one gets the
    /// default engine), with a fresh random actor id.
    pub fn open(dir: &Path) -> Result<DocStore, StoreError> {
        DocStore::open_with(dir, None, false)
    }

    /// Opens the store in `dir`; see [`open_kv`] for `engine` (refused if the store has another)
    /// and `verify` (check the whole file on open where the engine can).
    pub fn open_with(
        dir: &Path,
        engine: Option<Engine>,
        verify: bool,
    ) -> Result<DocStore, StoreError> {
        let (kv, engine) = open_kv(dir, engine, verify)?;
        let mut store = DocStore::with_kv(kv);
        store.engine = Some(engine);
        Ok(store)
    }

    pub fn with_kv(kv: Box<dyn Kv>) -> DocStore {
        DocStore {
            kv,
            actor: ActorId::random(),
            engine: None,
        }
    }

    /// The engine on disk, if the store was opened from a directory.
    pub fn engine(&self) -> Option<Engine> {
        self.engine
    }

    pub fn meta(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(format!("m/{name}").as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// A metadata write, to go into the same batch as the documents of a user action.
    pub fn meta_op(name: &str, value: &str) -> Op {
        Op::Put(format!("m/{name}").into_bytes(), value.as_bytes().to_vec())
    }

    /// Loads a document, or returns its skeleton when the store does not have it yet.
    pub fn load(&self, id: &DocId) -> Result<LoadedDoc, StoreError> {
        let prefix = doc_prefix(id);
        let entries = self.kv.scan_prefix(prefix.as_bytes())?;
        if entries.is_empty() {
            let mut doc = doc::skeleton(id, self.actor.clone())?;
            return Ok(LoadedDoc {
                id: id.clone(),
                saved_heads: doc.get_heads(),
                doc,
                snapshot_bytes: 0,
                increment_bytes: 0,
                increment_keys: Vec::new(),
                stored: false,
                snapshot_hint: None,
            });
        }
        let mut snapshot: Option<Vec<u8>> = None;
        let mut changes = Vec::new();
        let mut increment_keys = Vec::new();
        let mut increment_bytes = 0;
        for (key, value) in entries {
            let suffix = &key[prefix.len()..];
            if suffix == b"s" {
                snapshot = Some(value);
            } else if let Some(hash_hex) = suffix.strip_prefix(b"c/") {
                let hash_hex = String::from_utf8_lossy(hash_hex).into_owned();
                increment_bytes += value.len();
                let change = guarded("change", id, || {
                    Change::from_bytes(value).map_err(|e| e.to_string())
                })?;
                if change.hash().to_string() != hash_hex {
                    return Err(StoreError::Corrupt {
                        doc: id.to_string(),
                        reason: format!("change {hash_hex} does not match its hash"),
                    });
                }
                changes.push(change);
                increment_keys.push(key);
            }
        }
        let snapshot_bytes = snapshot.as_ref().map_or(0, Vec::len);
        let actor = self.actor.clone();
        let mut doc = guarded("load", id, || {
            let mut doc = match &snapshot {
                Some(bytes) => {
                    let plain = schoolsync_protocol::sync::decode_snapshot(bytes)?;
                    AutoCommit::load(&plain).map_err(|e| e.to_string())?
                }
                None => AutoCommit::new(),
            };
            doc.apply_changes(changes).map_err(|e| e.to_string())?;
            Ok(doc)
        })?;
        doc.set_actor(actor);
        if !doc.get_missing_deps(&[]).is_empty() {
            return Err(StoreError::Corrupt {
                doc: id.to_string(),
                reason: "changes are missing their dependencies".to_owned(),
            });
        }
        doc::check_schema(id, &doc)?;
        let saved_heads = doc.get_heads();
        Ok(LoadedDoc {
            id: id.clone(),
            doc,
            saved_heads,
            snapshot_bytes,
            increment_bytes,
            increment_keys,
            stored: true,
            snapshot_hint: None,
        })
    }

    /// Writes everything new in `docs` plus `extra` ops as one atomic batch, compacting documents
    /// whose increments outgrew their snapshot, then flushes. Returns the number of new changes.
    pub fn commit(&self, docs: &mut [&mut LoadedDoc], extra: Vec<Op>) -> Result<usize, StoreError> {
        let mut ops = extra;
        let mut written = 0;
        for loaded in docs.iter_mut() {
            if loaded.doc.get_heads() == loaded.saved_heads {
                continue;
            }
            let prefix = doc_prefix(&loaded.id);
            if !loaded.stored {
                // A document new to the store is written whole as a snapshot (cheaper than
                // re-encoding its whole change log); one that only ever held its skeleton is
                // never written (the heads check above).
                let snapshot = match loaded.snapshot_hint.take() {
                    Some(bytes) => bytes,
                    None => schoolsync_protocol::sync::encode_snapshot(&mut loaded.doc),
                };
                written += 1;
                loaded.snapshot_bytes = snapshot.len();
                loaded.increment_bytes = 0;
                loaded.increment_keys.clear();
                ops.push(Op::Put(format!("{prefix}s").into_bytes(), snapshot));
                loaded.saved_heads = loaded.doc.get_heads();
                loaded.stored = true;
                ops.push(Op::Put(
                    index_key(&loaded.id),
                    heads_bytes(&loaded.saved_heads),
                ));
                continue;
            }
            let new_changes = loaded.doc.get_changes(&loaded.saved_heads);
            written += new_changes.len();
            let new_bytes: usize = new_changes.iter().map(|c| c.raw_bytes().len()).sum();
            if loaded.increment_bytes + new_bytes > loaded.snapshot_bytes.max(COMPACT_MIN_BYTES) {
                let snapshot = schoolsync_protocol::sync::encode_snapshot(&mut loaded.doc);
                ops.extend(loaded.increment_keys.drain(..).map(Op::Delete));
                loaded.snapshot_bytes = snapshot.len();
                loaded.increment_bytes = 0;
                ops.push(Op::Put(format!("{prefix}s").into_bytes(), snapshot));
            } else {
                for change in &new_changes {
                    let key = format!("{prefix}c/{}", change.hash()).into_bytes();
                    ops.push(Op::Put(key.clone(), change.raw_bytes().to_vec()));
                    loaded.increment_keys.push(key);
                }
                loaded.increment_bytes += new_bytes;
            }
            loaded.saved_heads = loaded.doc.get_heads();
            ops.push(Op::Put(
                index_key(&loaded.id),
                heads_bytes(&loaded.saved_heads),
            ));
            loaded.stored = true;
        }
        if !ops.is_empty() {
            self.kv.batch(ops)?;
            self.kv.flush()?;
        }
        Ok(written)
    }

    /// The heads index: every stored document whose id starts with `prefix` (`""` for all,
    /// `"2113000001/"` for one school), with its heads, without loading any document.
    pub fn index(&self, prefix: &str) -> Result<Vec<(DocId, Vec<ChangeHash>)>, StoreError> {
        let mut out = Vec::new();
        for (key, value) in self.kv.scan_prefix(format!("i/{prefix}").as_bytes())? {
            let text = String::from_utf8_lossy(&key[2..]).into_owned();
            if let Ok(id) = text.parse::<DocId>() {
                out.push((id, heads_from_bytes(&value)));
            }
        }
        Ok(out)
    }

    /// Reads a raw value (for modules layered on the store, such as `replica`).
    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.kv.get(key)?)
    }

    /// Writes ops durably without touching documents.
    pub fn write_raw(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if !ops.is_empty() {
            self.kv.batch(ops)?;
            self.kv.flush()?;
        }
        Ok(())
    }

    /// Raw entries under a prefix.
    pub fn scan_raw(&self, prefix: &[u8]) -> Result<crate::kv::Entries, StoreError> {
        Ok(self.kv.scan_prefix(prefix)?)
    }

    /// At most `limit` raw entries under `prefix` from key `from` on.
    pub fn scan_raw_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<crate::kv::Entries, StoreError> {
        Ok(self.kv.scan_from(prefix, from, limit)?)
    }

    /// A document as stored, without loading it: its snapshot and its increments' raw bytes.
    /// Sending these to a peer that has none of the document costs no Automerge work here.
    pub fn raw_parts(&self, id: &DocId) -> Result<RawParts, StoreError> {
        let prefix = doc_prefix(id);
        let mut snapshot = None;
        let mut changes = Vec::new();
        for (key, value) in self.kv.scan_prefix(prefix.as_bytes())? {
            match &key[prefix.len()..] {
                b"s" => snapshot = Some(value),
                suffix if suffix.starts_with(b"c/") => changes.push(value),
                _ => {}
            }
        }
        Ok((snapshot, changes))
    }

    /// Ids of every stored document, in order.
    pub fn doc_ids(&self) -> Result<Vec<DocId>, StoreError> {
        let mut ids = BTreeMap::new();
        for (key, value) in self.kv.scan_prefix(b"d/")? {
            let text = String::from_utf8_lossy(&key[2..]).into_owned();
            // `d/<school>/<span>/...`: the id is the first two parts.
            let mut parts = text.splitn(3, '/');
            if let (Some(school), Some(span)) = (parts.next(), parts.next()) {
                if let Ok(id) = format!("{school}/{span}").parse::<DocId>() {
                    *ids.entry(id).or_insert(0usize) += value.len();
                }
            }
        }
        Ok(ids.into_keys().collect())
    }

    /// Bytes a document takes in the store (snapshot plus increments), and its increment count.
    pub fn doc_size(&self, id: &DocId) -> Result<(usize, usize), StoreError> {
        let entries = self.kv.scan_prefix(doc_prefix(id).as_bytes())?;
        let snapshots = entries.iter().filter(|(k, _)| k.ends_with(b"/s")).count();
        let bytes = entries.iter().map(|(_, v)| v.len()).sum();
        Ok((bytes, entries.len() - snapshots))
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.kv.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schoolsync_protocol::doc::{commit, put_attendance, read_month, CommitMeta};
    use schoolsync_protocol::ids::{parse_date, Month, SchoolId};
    use schoolsync_protocol::records::{Attendance, Day};

    fn id() -> DocId {
        let school: SchoolId = "2113000001".parse().unwrap();
        DocId::records(
            &school,
            Month {
                year: 2026,
                month: 11,
            },
        )
    }

    fn record(day: u32, class: &str) -> Attendance {
        Attendance {
            date: Day(parse_date(&format!("2026-11-{day:02}")).unwrap()),
            class: class.parse().unwrap(),
            expected: 40,
            present: 40,
            sick: 0,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        }
    }

    fn meta() -> CommitMeta {
        CommitMeta {
            school: "2113000001".into(),
            clerk: "c".into(),
            machine: "m".into(),
            action: "t".into(),
        }
    }

    #[test]
    fn saves_increments_compacts_and_reloads() {
        for engine in Engine::ALL {
            saves_increments_compacts_and_reloads_on(engine);
        }
    }

    fn saves_increments_compacts_and_reloads_on(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        let mut total = 0;
        for round in 0..3 {
            let store = DocStore::open_with(dir.path(), Some(engine), true).unwrap();
            let mut loaded = store.load(&id()).unwrap();
            assert_eq!(loaded.exists(), round > 0);
            for day in 1..=28 {
                for class in 0..10 {
                    put_attendance(&mut loaded.doc, &record(day, &format!("{round}-{class}")))
                        .unwrap();
                }
                commit(&mut loaded.doc, &meta(), 1);
                store.commit(&mut [&mut loaded], vec![]).unwrap();
                total += 10;
            }
            let (bytes, increments) = store.doc_size(&id()).unwrap();
            assert!(bytes > 0);
            // Compaction kept the increments from outgrowing the snapshot (or the floor).
            assert!(
                loaded.increment_bytes <= loaded.snapshot_bytes.max(COMPACT_MIN_BYTES),
                "{increments}"
            );
        }
        let store = DocStore::open(dir.path()).unwrap();
        assert_eq!(store.engine(), Some(engine));
        let loaded = store.load(&id()).unwrap();
        assert_eq!(read_month(&loaded.doc).unwrap().attendance.len(), total);
        assert_eq!(store.doc_ids().unwrap(), vec![id()]);
    }

    #[test]
    fn a_damaged_change_is_reported_not_skipped() {
        for engine in Engine::ALL {
            a_damaged_change_is_reported_not_skipped_on(engine);
        }
    }

    fn a_damaged_change_is_reported_not_skipped_on(engine: Engine) {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = DocStore::open_with(dir.path(), Some(engine), true).unwrap();
            let mut loaded = store.load(&id()).unwrap();
            put_attendance(&mut loaded.doc, &record(3, "3-1")).unwrap();
            commit(&mut loaded.doc, &meta(), 1);
            store.commit(&mut [&mut loaded], vec![]).unwrap();
        }
        let (kv, _) = open_kv(dir.path(), Some(engine), true).unwrap();
        let (key, mut value) = kv
            .scan_prefix(b"d/")
            .unwrap()
            .into_iter()
            .next_back()
            .unwrap();
        let last = value.len() - 1;
        value[last] ^= 0x01;
        kv.put(&key, &value).unwrap();
        let store = DocStore::with_kv(kv);
        assert!(matches!(store.load(&id()), Err(StoreError::Corrupt { .. })));
    }
}
