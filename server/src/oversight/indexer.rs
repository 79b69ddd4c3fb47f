//! The oversight indexer: brings the stored facts, school-day tallies and changes feed up to date
//! with the documents, reading only what changed since it last looked.
//!
//! It compares every document's heads in the store's index with the heads it last indexed
//! (`o/h/<doc>`): a no-change pass reads the index and nothing else. For a changed document it
//! diffs from the indexed heads to the current ones, recomputes the touched class-days and their
//! school-days, and writes facts, tallies, feed lines and the new indexed heads in one batch, so a
//! crash leaves the index either before or after the document, never half-way.
//!
//! It runs after every commit (the node's `committed` signal) and on an interval, as its own task;
//! the sync path never waits for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use schoolsync_protocol::doc;
use schoolsync_protocol::ids::{ClassId, DocId, DocKind, SchoolId};
use schoolsync_protocol::records::Profile;
use schoolsync_store::docs::{heads_bytes, heads_from_bytes};
use schoolsync_store::{DocStore, Op, StoreError};
use serde::{Deserialize, Serialize};

use super::{class_day_tally, school_day_tally, Tally};
use crate::node::{Node, NodeError};

/// How often the indexer looks even without a commit signal (a relay's forwarder and feedback
/// also change documents).
pub const INDEX_INTERVAL_MS: u64 = 10_000;
/// After a commit signal, wait this long before indexing: the rounds of a first sync (a term is
/// a few rounds and seconds of CPU on 2 cores) finish before the indexer competes with them for
/// the CPU. Figures lag by this much; measured, indexing one school-day then takes ~35 ms.
pub const INDEX_DEBOUNCE_MS: u64 = 2_000;
/// Feed lines kept; older ones are dropped (a follower further behind re-reads the API).
pub const FEED_LINES_MAX: u64 = 1_000_000;

/// A school-day as stored: the school's county and the sum of its classes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SchoolDay {
    pub county: String,
    pub tally: Tally,
}

/// One line of the changes feed: a class-day whose figures changed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeedLine {
    /// The cursor: strictly increasing per node.
    pub seq: u64,
    pub school: String,
    pub county: String,
    pub date: String,
    pub class: String,
    pub tally: Tally,
    /// When this node indexed it (ms since the epoch).
    pub at_ms: i64,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub documents: usize,
    pub class_days: usize,
    /// Documents that could not be indexed this pass.
    pub failed: usize,
}

fn heads_key(id: &DocId) -> Vec<u8> {
    format!("o/h/{id}").into_bytes()
}

pub fn fact_key(school: &SchoolId, date: &str, class: &str) -> Vec<u8> {
    format!("o/f/{school}/{date}/{class}").into_bytes()
}

pub fn day_key(date: &str, school: &SchoolId) -> Vec<u8> {
    format!("o/d/{date}/{school}").into_bytes()
}

pub fn feed_key(seq: u64) -> Vec<u8> {
    format!("o/c/{seq:016x}").into_bytes()
}

const SEQ_META: &str = "o/seq";

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// One indexing pass over every document whose heads moved.
pub fn refresh(node: &Node, now_ms: i64) -> Result<Pass, NodeError> {
    let mut pass = Pass::default();
    let index = node.store.index("")?;
    let mut stale: Vec<DocId> = Vec::new();
    for (id, heads) in &index {
        let indexed = node
            .store
            .get_raw(&heads_key(id))?
            .map(|b| heads_from_bytes(&b))
            .unwrap_or_default();
        if &indexed != heads {
            stale.push(id.clone());
        }
    }
    // Profiles first: a changed class list changes every school-day of the school.
    stale.sort_by_key(|id| !matches!(id.kind, DocKind::Profile));
    let mut profiles: HashMap<SchoolId, Profile> = HashMap::new();
    for id in stale {
        // No write lock: the indexer only reads documents (a commit meanwhile is caught by the
        // next pass, since the heads written below are those read here) and writes its own keys.
        // Automerge panics cost this document's pass, not the process.
        let store = &node.store;
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || -> Result<usize, NodeError> {
                let mut loaded = store.load(&id)?;
                let to = loaded.doc.get_heads();
                let from: Vec<_> = store
                    .get_raw(&heads_key(&id))?
                    .map(|b| heads_from_bytes(&b))
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|h| loaded.doc.get_change_by_hash(h).is_some())
                    .collect();
                let mut ops = Vec::new();
                let class_days = match id.kind {
                    DocKind::Profile => {
                        let profile = doc::read_profile(&loaded.doc).map_err(StoreError::from)?;
                        let dates = school_dates(store, &id.school)?;
                        for date in &dates {
                            ops.push(school_day_op(
                                store,
                                &id.school,
                                &profile,
                                date,
                                &BTreeMap::new(),
                            )?);
                        }
                        ops.push(Op::Put(
                            format!("o/n/{}", id.school).into_bytes(),
                            json(&(profile.county.clone(), profile.name.clone())),
                        ));
                        profiles.insert(id.school.clone(), profile);
                        0
                    }
                    DocKind::Records(_) => {
                        let profile = match profiles.get(&id.school) {
                            Some(p) => p.clone(),
                            None => {
                                let p = read_profile(store, &id.school)?;
                                profiles.insert(id.school.clone(), p.clone());
                                p
                            }
                        };
                        // A document never indexed: every class-day in it (cheaper than a diff from
                        // nothing, which would build a patch for every op).
                        let keys = if from.is_empty() {
                            doc::all_class_days(&loaded.doc)
                        } else {
                            doc::touched_class_days(&mut loaded.doc, &from, &to)
                        };
                        let parsed: Vec<(chrono::NaiveDate, ClassId)> = keys
                            .iter()
                            .filter_map(|k| {
                                let (d, c) = k.split_once('/')?;
                                Some((
                                    schoolsync_protocol::ids::parse_date(d).ok()?,
                                    c.parse().ok()?,
                                ))
                            })
                            .collect();
                        // A whole document is read in one pass; a few touched class-days by key.
                        let records = if from.is_empty() {
                            doc::read_month(&loaded.doc)
                        } else {
                            doc::read_class_days(&loaded.doc, parsed.iter().map(|(d, c)| (*d, c)))
                        }
                        .map_err(StoreError::from)?;
                        let mut by_date: BTreeMap<String, BTreeMap<String, Tally>> =
                            BTreeMap::new();
                        let mut seq: u64 = store
                            .meta(SEQ_META)?
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        for (date, class) in &parsed {
                            let date_text = schoolsync_protocol::ids::date_key(*date);
                            let key = format!("{date_text}/{class}");
                            let tally = class_day_tally(
                                &key,
                                profile.classes.get(class.as_str()),
                                &records,
                            );
                            ops.push(Op::Put(
                                fact_key(&id.school, &date_text, class.as_str()),
                                json(&tally),
                            ));
                            seq += 1;
                            ops.push(Op::Put(
                                feed_key(seq),
                                json(&FeedLine {
                                    seq,
                                    school: id.school.to_string(),
                                    county: profile.county.clone(),
                                    date: date_text.clone(),
                                    class: class.to_string(),
                                    tally,
                                    at_ms: now_ms,
                                }),
                            ));
                            if seq > FEED_LINES_MAX {
                                ops.push(Op::Delete(feed_key(seq - FEED_LINES_MAX)));
                            }
                            by_date
                                .entry(date_text)
                                .or_default()
                                .insert(class.to_string(), tally);
                        }
                        for (date, fresh) in &by_date {
                            ops.push(school_day_op(store, &id.school, &profile, date, fresh)?);
                        }
                        ops.push(DocStore::meta_op(SEQ_META, &seq.to_string()));
                        parsed.len()
                    }
                };
                if class_days > 0 && matches!(node.role, crate::node::Role::Relay { .. }) {
                    // The relay's view of this school changed: pass it on to the city.
                    ops.push(Op::Put(super::holdings::dirty_key(&id.school), Vec::new()));
                }
                ops.push(Op::Put(heads_key(&id), heads_bytes(&to)));
                store.write_raw(ops)?;
                Ok(class_days)
            },
        ))
        .map_err(|_| NodeError::Panicked)
        .and_then(|r| r);
        match done {
            Ok(n) => {
                pass.documents += 1;
                pass.class_days += n;
            }
            Err(e) => {
                // One damaged or unreadable document must not hold up every other school's
                // figures: it stays unindexed (and is tried again next pass).
                tracing::warn!(doc = %id, error = %e, "oversight could not index a document");
                pass.failed += 1;
            }
        }
    }
    Ok(pass)
}

fn read_profile(store: &DocStore, school: &SchoolId) -> Result<Profile, NodeError> {
    let loaded = store.load(&DocId::profile(school))?;
    Ok(if loaded.exists() {
        doc::read_profile(&loaded.doc).map_err(StoreError::from)?
    } else {
        Profile::default()
    })
}

/// Dates for which a school has class-day facts.
fn school_dates(store: &DocStore, school: &SchoolId) -> Result<BTreeSet<String>, StoreError> {
    let prefix = format!("o/f/{school}/");
    Ok(store
        .scan_raw(prefix.as_bytes())?
        .into_iter()
        .filter_map(|(k, _)| {
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            rest.split_once('/').map(|(d, _)| d.to_owned())
        })
        .collect())
}

/// The school-day tally op for `date`: stored class facts, overridden by `fresh` ones.
fn school_day_op(
    store: &DocStore,
    school: &SchoolId,
    profile: &Profile,
    date: &str,
    fresh: &BTreeMap<String, Tally>,
) -> Result<Op, StoreError> {
    let prefix = format!("o/f/{school}/{date}/");
    let mut classes: BTreeMap<String, Tally> = store
        .scan_raw(prefix.as_bytes())?
        .into_iter()
        .filter_map(|(k, v)| {
            let class = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            Some((class, serde_json::from_slice(&v).ok()?))
        })
        .collect();
    classes.extend(fresh.iter().map(|(k, v)| (k.clone(), *v)));
    let tally = school_day_tally(&profile.classes, &classes);
    Ok(Op::Put(
        day_key(date, school),
        json(&SchoolDay {
            county: profile.county.clone(),
            tally,
        }),
    ))
}

/// Runs passes after each commit signal and every [`INDEX_INTERVAL_MS`] until shutdown.
pub async fn run(
    node: Arc<Node>,
    signal: Arc<tokio::sync::Notify>,
    indexed: Arc<tokio::sync::watch::Sender<u64>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut passes = 0u64;
    loop {
        let n = node.clone();
        match tokio::task::spawn_blocking(move || refresh(&n, crate::now_ms())).await {
            Ok(Ok(pass)) if pass.documents > 0 => {
                tracing::debug!(
                    documents = pass.documents,
                    class_days = pass.class_days,
                    "oversight indexed"
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "oversight indexing failed; retrying"),
            Err(_) => tracing::error!("oversight indexing panicked; retrying"),
        }
        passes += 1;
        let _ = indexed.send(passes);
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = signal.notified() => {
                // Let a burst of rounds (a first sync is several) finish before competing with
                // it for the CPU: figures lag by this much, syncs do not.
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(INDEX_DEBOUNCE_MS)) => {}
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(INDEX_INTERVAL_MS)) => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
