//! The sync protocol: heads-based push/pull of Automerge changes, batched and paged, over
//! request/response (HTTP in practice). Sans-IO: messages and documents in, messages and decisions
//! out; the caller does the network and the disk.
//!
//! Message flow of one round (the downstream peer is a school agent or a county relay):
//!
//! 1. Downstream sends a [`SyncRequest`]: per school, a [`Digest`] of every `(document, heads)` it
//!    holds, and a [`DocSync`] for each document it must push (local heads differ from `acked`,
//!    the upstream heads it last had confirmed) or pull (the upstream has heads it lacks). A push
//!    carries the changes after `acked` in causal order, cut at [`BATCH_BYTES_MAX`], or the whole
//!    document when the upstream has none of it.
//! 2. Upstream verifies every change (checksum, parse) before applying any ([`apply_entry`]),
//!    **commits durably**, and answers with a [`SchoolReply`]: per document its heads after the
//!    commit, the changes the sender lacks (paged, `more` when cut), and any dependencies it is
//!    missing. When the school's digest differs from its own, it adds its heads `index` for the
//!    school, so the sender can tell what to pull.
//! 3. Downstream applies the reply durably and only then stores each document's reply heads as
//!    its new `acked`. It repeats until nothing is left to push or pull ([`Plan`]).
//!
//! Why it is safe on flaky links: a lost response means the sender resends from its old `acked`
//! (applying a change twice is a no-op); every page the upstream committed is progress kept; no
//! per-peer session state exists upstream. A round with nothing to do is one small request (a
//! digest per school) and one small response, whatever the history or the number of documents.
//!
//! Wire format ([`encode`], [`decode`]): `SSYN`, a big-endian `u16` version, a flags byte
//! (bit 0: gzip), then the postcard encoding of the message.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{AutoCommit, Change, ChangeHash};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::ids::{DocId, SchoolId};

/// Wire format version. A peer speaking another version gets [`WireError::Version`].
pub const WIRE_VERSION: u16 = 1;
/// First bytes of every message.
pub const MAGIC: &[u8; 4] = b"SSYN";
/// HTTP content type of encoded messages.
pub const CONTENT_TYPE: &str = "application/x-schoolsync";
/// Changes in one request or response stop being added at this many bytes: small enough that a
/// page gets through a link that drops every 20 seconds at 2G speeds (~8 s at 64 kbit/s), large
/// enough that a term (a few hundred KiB) takes only a few pages.
pub const BATCH_BYTES_MAX: usize = 64 * 1024;
/// Bodies below this are sent uncompressed: gzip's header costs more than it saves on a digest.
pub const COMPRESS_BYTES_MIN: usize = 512;
/// Largest decoded message accepted: a page plus whole month documents, with room to spare.
/// Anything larger is refused before it is decompressed further (a zip bomb costs nothing).
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Documents in one school entry, and schools in one request: a limit on everything.
pub const DOCS_PER_SCHOOL_MAX: usize = 1024;
pub const SCHOOLS_PER_REQUEST_MAX: usize = 1024;
/// Total uncompressed size the snapshots of one request may declare: a first sync of a large
/// school's term is ~20 MB; a relay's round is paged far below this. Each snapshot is also held
/// to [`SNAPSHOT_PLAIN_BYTES_MAX`] while it inflates, so a frame that lies is still bounded.
pub const REQUEST_SNAPSHOT_PLAIN_BYTES_MAX: u64 = 128 * 1024 * 1024;

/// SHA-256 over the sorted `(document, heads)` a peer holds for one school.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

/// A change hash on the wire.
pub type Hash = [u8; 32];

/// One downstream round: any number of schools, any number of documents each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub schools: Vec<SchoolSync>,
}

/// One school's part of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolSync {
    pub school: SchoolId,
    /// Digest of everything the sender holds for this school.
    pub digest: Digest,
    pub docs: Vec<DocSync>,
}

/// One document to push to or pull from the upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocSync {
    pub doc: DocId,
    /// The upstream heads the sender last had confirmed (all known to the sender).
    pub acked: Vec<Hash>,
    /// The sender's current heads.
    pub heads: Vec<Hash>,
    /// Raw changes after `acked`, causal order (possibly one page of them).
    pub changes: Vec<Vec<u8>>,
    /// The whole document (`AutoCommit::save`) instead of changes, when the upstream has none.
    pub snapshot: Option<Vec<u8>>,
}

/// The upstream's answer, one entry per school of the request, in the same order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    pub schools: Vec<SchoolReply>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchoolReply {
    pub school: SchoolId,
    /// The upstream's digest for the school after this round's commit.
    pub digest: Digest,
    pub docs: Vec<DocReply>,
    /// Every document the upstream holds for the school with its heads; sent only when the
    /// request's digest differed from the upstream's.
    pub index: Option<Vec<(DocId, Vec<Hash>)>>,
    /// Set when the upstream refused this school's entry (nothing of it was applied).
    pub refused: Option<Refusal>,
}

/// Why an entry was refused, for the clerk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocReply {
    pub doc: DocId,
    /// The upstream's heads after committing this round.
    pub heads: Vec<Hash>,
    /// Changes the sender lacks, causal order, one page.
    pub changes: Vec<Vec<u8>>,
    /// The whole document, when the sender has none of it.
    pub snapshot: Option<Vec<u8>>,
    /// More changes remain beyond this page.
    pub more: bool,
    /// Dependencies the upstream still lacks: the sender should resend from the start.
    pub missing: Vec<Hash>,
}

/// Errors of the wire format and of incoming changes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a schoolsync message")]
    Magic,
    #[error("wire version {found} is not supported (this program speaks {WIRE_VERSION})")]
    Version { found: u16 },
    #[error("message larger than {MESSAGE_BYTES_MAX} bytes")]
    TooLarge,
    #[error("message is malformed: {0}")]
    Malformed(String),
    #[error("a limit was exceeded: {0}")]
    Limit(&'static str),
    #[error("change {index} of {doc} is corrupt: {reason}")]
    CorruptChange {
        doc: String,
        index: usize,
        reason: String,
    },
    #[error("document {doc} could not be merged: {reason}")]
    BadDocument { doc: String, reason: String },
}

impl WireError {
    /// A stable machine-readable code for HTTP error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Magic => "not_schoolsync",
            WireError::Version { .. } => "unsupported_version",
            WireError::TooLarge => "too_large",
            WireError::Malformed(_) => "malformed",
            WireError::Limit(_) => "limit_exceeded",
            WireError::CorruptChange { .. } => "corrupt_change",
            WireError::BadDocument { .. } => "bad_document",
        }
    }
}

/// Encodes a message with the wire header, compressing bodies of [`COMPRESS_BYTES_MIN`] or more.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let body = postcard::to_stdvec(message).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() / 2 + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&WIRE_VERSION.to_be_bytes());
    if body.len() >= COMPRESS_BYTES_MIN {
        out.push(1);
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&body);
        gz.finish().unwrap_or_default()
    } else {
        out.push(0);
        out.extend_from_slice(&body);
        out
    }
}

/// Decodes a message, checking magic, version and size before parsing.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    if bytes.len() < 7 || &bytes[..4] != MAGIC {
        return Err(WireError::Magic);
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if version != WIRE_VERSION {
        return Err(WireError::Version { found: version });
    }
    let payload = &bytes[7..];
    let body: std::borrow::Cow<'_, [u8]> = match bytes[6] {
        0 => payload.into(),
        1 => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(payload)
                .take(MESSAGE_BYTES_MAX as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| WireError::Malformed(e.to_string()))?;
            out.into()
        }
        other => return Err(WireError::Malformed(format!("unknown flags {other}"))),
    };
    if body.len() > MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge);
    }
    postcard::from_bytes(&body).map_err(|e| WireError::Malformed(e.to_string()))
}

/// The digest of a school's documents and their heads (order-independent).
pub fn digest<'a>(docs: impl IntoIterator<Item = (&'a DocId, &'a [ChangeHash])>) -> Digest {
    let mut entries: Vec<(String, Vec<Hash>)> = docs
        .into_iter()
        .map(|(id, heads)| {
            let mut heads: Vec<Hash> = heads.iter().map(|h| h.0).collect();
            heads.sort();
            (id.to_string(), heads)
        })
        .collect();
    entries.sort();
    let mut hasher = Sha256::new();
    for (id, heads) in entries {
        hasher.update(id.as_bytes());
        hasher.update([0]);
        for h in heads {
            hasher.update(h);
        }
        hasher.update([0xff]);
    }
    Digest(hasher.finalize().into())
}

pub fn to_wire(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(|h| h.0).collect()
}

pub fn from_wire(heads: &[Hash]) -> Vec<ChangeHash> {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

/// Parses and verifies one incoming change. `Change::from_bytes` does not check the chunk
/// checksum (SYNC.md): bytes 4..8 of a change chunk must equal the first four bytes of its hash.
pub fn verify_change(doc: &DocId, index: usize, bytes: &[u8]) -> Result<Change, WireError> {
    let corrupt = |reason: &str| WireError::CorruptChange {
        doc: doc.to_string(),
        index,
        reason: reason.to_owned(),
    };
    if bytes.len() < 8 {
        return Err(corrupt("too short"));
    }
    let change = catch_unwind(AssertUnwindSafe(|| Change::from_bytes(bytes.to_vec())))
        .map_err(|_| corrupt("parser panicked"))?
        .map_err(|e| corrupt(&e.to_string()))?;
    if bytes[4..8] != change.hash().0[..4] {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(change)
}

/// What applying one entry did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Changes the document did not have before.
    pub new_changes: usize,
}

/// Applies a [`DocSync`] or [`DocReply`] payload (changes or a whole document) to `doc`.
/// Everything is verified before anything is applied; automerge panics become errors.
pub fn apply_payload(
    doc_id: &DocId,
    doc: &mut AutoCommit,
    changes: &[Vec<u8>],
    snapshot: Option<&[u8]>,
) -> Result<Applied, WireError> {
    let verified = changes
        .iter()
        .enumerate()
        .map(|(i, bytes)| verify_change(doc_id, i, bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let before = doc.get_heads();
    let bad = |reason: String| WireError::BadDocument {
        doc: doc_id.to_string(),
        reason,
    };
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<usize, String> {
        let mut count = 0;
        if let Some(bytes) = snapshot {
            let plain = decode_snapshot(bytes)?;
            let mut other = AutoCommit::load(&plain).map_err(|e| e.to_string())?;
            // `load` accepts a document followed by changes whose dependencies are missing;
            // stored as is, such bytes would make the document unloadable.
            if !other.get_missing_deps(&[]).is_empty() {
                return Err("the document has changes with missing dependencies".to_owned());
            }
            let ours = doc.get_heads();
            if ours.iter().all(|h| other.get_change_by_hash(h).is_some()) {
                // Everything we have is in the snapshot: adopt it rather than replaying its
                // whole history through `merge`. A document received whole counts as one.
                if other.get_heads() != ours {
                    count += 1;
                }
                other.set_actor(doc.get_actor().clone());
                *doc = other;
            } else {
                count += doc.merge(&mut other).map_err(|e| e.to_string())?.len();
            }
        }
        let fresh: Vec<Change> = verified
            .into_iter()
            .filter(|c| doc.get_change_by_hash(&c.hash()).is_none())
            .collect();
        count += fresh.len();
        doc.apply_changes(fresh).map_err(|e| e.to_string())?;
        // Automerge queues changes whose parents it lacks instead of failing; such a payload
        // can never be applied as sent, so say so (the caller drops this copy of the document).
        if !doc.get_missing_deps(&[]).is_empty() {
            return Err("changes whose dependencies were not sent".to_owned());
        }
        Ok(count)
    }));
    match result {
        Ok(Ok(new_changes)) => Ok(Applied { new_changes }),
        Ok(Err(reason)) => Err(bad(reason)),
        Err(_) => {
            // The document may be half-updated in memory; the caller must drop it, not save it.
            let _ = before;
            Err(bad("automerge panicked".to_owned()))
        }
    }
}

/// Heads of `heads` that `doc` knows (unknown heads would make `get_changes` return everything).
pub fn known(doc: &mut AutoCommit, heads: impl IntoIterator<Item = ChangeHash>) -> Vec<ChangeHash> {
    let mut out: Vec<ChangeHash> = heads
        .into_iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The upstream's reply for one document after applying the sender's entry: what the sender
/// lacks, given its `heads`, `acked` and the changes it just sent, cut at `budget` bytes (which is
/// decreased by what this page uses).
pub fn reply_for(
    doc_id: &DocId,
    doc: &mut AutoCommit,
    entry: &DocSync,
    budget: &mut usize,
) -> DocReply {
    let sent: Vec<ChangeHash> = entry
        .changes
        .iter()
        .filter_map(|c| Change::from_bytes(c.clone()).ok().map(|c| c.hash()))
        .collect();
    let heads = doc.get_heads();
    let missing = to_wire(&doc.get_missing_deps(&[]));
    let sender_has_nothing =
        entry.heads.is_empty() && entry.acked.is_empty() && entry.snapshot.is_none();
    let mut reply = DocReply {
        doc: doc_id.clone(),
        heads: to_wire(&heads),
        changes: Vec::new(),
        snapshot: None,
        more: false,
        missing,
    };
    if heads.is_empty() {
        return reply;
    }
    if sender_has_nothing {
        if *budget == 0 {
            reply.more = true; // This response is full: the sender pulls it next round.
            return reply;
        }
        // A peer that lacks the whole document gets the document, not its change log. Automerge's
        // own save: zstd-19 here would cost ~0.15 s per month document under the node's lock.
        let saved = doc.save();
        *budget = budget.saturating_sub(saved.len());
        reply.snapshot = Some(saved);
        return reply;
    }
    let base_set: BTreeSet<ChangeHash> = from_wire(&entry.heads)
        .into_iter()
        .chain(from_wire(&entry.acked))
        .chain(sent)
        .collect();
    let base = known(doc, base_set);
    if base.len() == heads.len() && base.iter().all(|h| heads.contains(h)) {
        return reply; // The sender is up to date.
    }
    page_changes(doc, &base, budget, &mut reply.changes, &mut reply.more);
    reply
}

/// Fills `out` with the changes after `base` (causal order) until `budget` is spent; sets `more`
/// when some remain. At least one change is always included, so a page always makes progress.
pub fn page_changes(
    doc: &mut AutoCommit,
    base: &[ChangeHash],
    budget: &mut usize,
    out: &mut Vec<Vec<u8>>,
    more: &mut bool,
) {
    for change in doc.get_changes(base) {
        let bytes = change.raw_bytes();
        if !out.is_empty() && bytes.len() > *budget {
            *more = true;
            return;
        }
        *budget = budget.saturating_sub(bytes.len());
        out.push(bytes.to_vec());
    }
}

/// zstd level for stored (and therefore sent) snapshots. Measured on a term of one school's
/// documents: Automerge's own `save()` is 1.46× the gzip of the records as JSON, gzip-9 of it
/// 1.08×, zstd-15 of the uncompressed save 1.01×, zstd-19 0.73×. Level 19 costs ~0.15 s per month
/// document, paid once when a snapshot is written (compaction), not on every sync.
pub const SNAPSHOT_ZSTD_LEVEL: i32 = 19;
/// First bytes of a zstd frame; Automerge documents start with other magic bytes.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Encodes a document as a stored and sent snapshot: zstd of its uncompressed save, or Automerge's
/// own compressed save for a document too large for [`decode_snapshot`] to take back.
pub fn encode_snapshot(doc: &mut AutoCommit) -> Vec<u8> {
    let plain = doc.save_nocompress();
    if plain.len() > SNAPSHOT_PLAIN_BYTES_MAX {
        return doc.save();
    }
    zstd::bulk::compress(&plain, SNAPSHOT_ZSTD_LEVEL).unwrap_or_else(|_| doc.save())
}

/// Largest uncompressed snapshot taken: a full month of a large school is a few MB.
pub const SNAPSHOT_PLAIN_BYTES_MAX: usize = MESSAGE_BYTES_MAX * 4;
/// zstd window a snapshot may use (2^24 = 16 MiB): bounds the decoder's memory.
const SNAPSHOT_WINDOW_LOG_MAX: u32 = 24;

/// Decodes a snapshot (zstd-compressed or a plain Automerge save) into bytes `AutoCommit::load`
/// takes, refusing anything that inflates beyond [`SNAPSHOT_PLAIN_BYTES_MAX`].
pub fn decode_snapshot(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Ok(bytes.into());
    }
    let limit = SNAPSHOT_PLAIN_BYTES_MAX as u64;
    let mut out = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| e.to_string())?;
    decoder
        .window_log_max(SNAPSHOT_WINDOW_LOG_MAX)
        .map_err(|e| e.to_string())?;
    decoder
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err("snapshot inflates beyond the limit".to_owned());
    }
    Ok(out.into())
}

/// Checks the counts of a request against the limits.
pub fn check_limits(request: &SyncRequest) -> Result<(), WireError> {
    if request.schools.len() > SCHOOLS_PER_REQUEST_MAX {
        return Err(WireError::Limit("schools per request"));
    }
    if request
        .schools
        .iter()
        .any(|s| s.docs.len() > DOCS_PER_SCHOOL_MAX)
    {
        return Err(WireError::Limit("documents per school"));
    }
    let mut schools = BTreeSet::new();
    let mut declared = 0u64;
    for school in &request.schools {
        if !schools.insert(&school.school) {
            return Err(WireError::Malformed(format!(
                "school {} is listed twice",
                school.school
            )));
        }
        let mut docs = BTreeSet::new();
        for entry in &school.docs {
            if entry.doc.school != school.school {
                return Err(WireError::Malformed(
                    "a document is listed under another school".into(),
                ));
            }
            if !docs.insert(&entry.doc) {
                return Err(WireError::Malformed(format!(
                    "document {} is listed twice",
                    entry.doc
                )));
            }
            if let Some(snapshot) = &entry.snapshot {
                declared = declared.saturating_add(declared_plain_bytes(snapshot));
            }
        }
    }
    if declared > REQUEST_SNAPSHOT_PLAIN_BYTES_MAX {
        return Err(WireError::Limit("uncompressed snapshot bytes per request"));
    }
    Ok(())
}

/// What a snapshot will inflate to, as far as can be known before inflating it: a zstd frame's
/// declared size (or the per-snapshot cap when it declares none), else its own length.
fn declared_plain_bytes(snapshot: &[u8]) -> u64 {
    if !snapshot.starts_with(&ZSTD_MAGIC) {
        return snapshot.len() as u64;
    }
    match zstd::zstd_safe::get_frame_content_size(snapshot) {
        Ok(Some(n)) => n.min(SNAPSHOT_PLAIN_BYTES_MAX as u64 + 1),
        _ => SNAPSHOT_PLAIN_BYTES_MAX as u64,
    }
}

/// The downstream side's plan for one document in the next round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to send for this document.
    Idle,
    /// Send this entry (a push, a pull, or both).
    Send(DocSync),
}

/// Plans one document: push what the upstream lacks (changes after `acked`, or the whole document
/// when nothing was ever acked), or pull when `pull` is set (the upstream's index showed heads we
/// lack, or its last reply said `more`).
pub fn plan(
    doc_id: &DocId,
    doc: &mut AutoCommit,
    acked: &[ChangeHash],
    pull: bool,
    budget: &mut usize,
) -> Plan {
    let heads = doc.get_heads();
    let acked = known(doc, acked.iter().copied());
    let mut sorted_heads = heads.clone();
    sorted_heads.sort();
    let push = sorted_heads != acked;
    if !push && !pull {
        return Plan::Idle;
    }
    let mut entry = DocSync {
        doc: doc_id.clone(),
        acked: to_wire(&acked),
        heads: to_wire(&heads),
        changes: Vec::new(),
        snapshot: None,
    };
    if push && *budget > 0 {
        if acked.is_empty() {
            let saved = encode_snapshot(doc);
            *budget = budget.saturating_sub(saved.len());
            entry.snapshot = Some(saved);
        } else {
            let mut more = false;
            page_changes(doc, &acked, budget, &mut entry.changes, &mut more);
        }
    }
    if !pull && entry.changes.is_empty() && entry.snapshot.is_none() {
        return Plan::Idle; // The page is full; a later round pushes this document.
    }
    Plan::Send(entry)
}

#[cfg(test)]
mod tests;
