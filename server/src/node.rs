//! One server node (the city, or a county relay): its store, a bounded cache of loaded documents,
//! and the upstream side of sync (apply a downstream round, answer it).
//!
//! All store writes go through [`Node::with_docs`], one at a time: a relay's forwarder and its
//! request handlers must not commit the same document from two stale copies (the heads index
//! would then lie). Reads that need no document (digests, "nothing new") use the index only.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use schoolsync_protocol::ids::{CountyCode, DocId, DocKind, SchoolId};
use schoolsync_protocol::sync::{
    apply_payload, check_limits, digest, from_wire, reply_for, to_wire, Refusal, SchoolReply,
    SyncRequest, SyncResponse, WireError, BATCH_BYTES_MAX,
};
use schoolsync_store::{DocStore, LoadedDoc, StoreError};

/// Loaded documents kept in memory. A full month document of a 30-class school takes a few MiB
/// loaded; a school day touches the current month (and, for illness clusters, the one before), so
/// 2 keep that working set hot while the heads index answers everything that needs no document.
/// Measured (server bench): holding a school's term, city RSS grows by ~14 MB with no cache and by
/// ~22 MB with 4 cached documents.
pub const CACHE_DOCS_MAX: usize = 2;

/// What a node is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    City,
    Relay { county: CountyCode },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::City => "city",
            Role::Relay { .. } => "relay",
        }
    }
}

/// A least-recently-used cache of loaded documents.
#[derive(Default)]
pub struct DocCache {
    docs: HashMap<DocId, LoadedDoc>,
    order: VecDeque<DocId>,
}

impl DocCache {
    /// Takes a document out of the cache if it is still current (its heads match the index),
    /// else loads it from the store.
    pub fn take(&mut self, store: &DocStore, id: &DocId) -> Result<LoadedDoc, StoreError> {
        if let Some(mut cached) = self.docs.remove(id) {
            self.order.retain(|d| d != id);
            let indexed = store
                .index(&id.to_string())?
                .into_iter()
                .find(|(d, _)| d == id)
                .map(|(_, h)| h);
            let mut heads = cached.doc.get_heads();
            heads.sort();
            if indexed.as_deref() == Some(heads.as_slice()) {
                return Ok(cached);
            }
        }
        store.load(id)
    }

    /// Puts a document back, evicting the least recently used beyond [`CACHE_DOCS_MAX`].
    pub fn put(&mut self, loaded: LoadedDoc) {
        let id = loaded.id.clone();
        self.order.retain(|d| *d != id);
        self.order.push_back(id.clone());
        self.docs.insert(id, loaded);
        while self.order.len() > CACHE_DOCS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.docs.remove(&old);
            }
        }
    }

    pub fn clear(&mut self) {
        self.docs.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

/// A city or relay node.
pub struct Node {
    pub role: Role,
    pub store: DocStore,
    /// The write path: every document mutation holds this. A `std` mutex, not a tokio one: it is
    /// only held inside `spawn_blocking`, never across an await.
    cache: Mutex<DocCache>,
}

/// Failure to serve a round: the request is answered with a 5xx and nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a document operation panicked")]
    Panicked,
}

impl Node {
    pub fn new(role: Role, store: DocStore) -> Node {
        Node {
            role,
            store,
            cache: Mutex::new(DocCache::default()),
        }
    }

    /// Runs `f` with exclusive write access to the store's documents.
    pub fn with_docs<T>(
        &self,
        f: impl FnOnce(&DocStore, &mut DocCache) -> T,
    ) -> Result<T, NodeError> {
        // A panic in an earlier holder (automerge has known panics) leaves the cache suspect but
        // the store intact: drop the cache and carry on rather than refuse service until restart.
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| {
            let mut cache = poisoned.into_inner();
            cache.clear();
            cache
        });
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&self.store, &mut cache)))
        {
            Ok(value) => Ok(value),
            Err(_) => {
                cache.clear();
                tracing::error!("a document operation panicked; the request was refused");
                Err(NodeError::Panicked)
            }
        }
    }

    /// Serves one downstream round: verify and apply every school's entries, commit durably,
    /// then answer. A school whose entries fail verification is refused whole; others proceed.
    /// Returns the response and whether anything new was committed.
    ///
    /// Content is re-checked here too: a school whose changes would leave a record breaking a
    /// hard rule, or a profile naming another school or county than `counties` has on record for
    /// it, is refused with the reason (the school's `status` shows it); nothing of it is stored.
    pub fn serve_sync(
        &self,
        request: &SyncRequest,
        counties: &BTreeMap<SchoolId, CountyCode>,
    ) -> Result<(SyncResponse, usize), NodeError> {
        let mut response = SyncResponse::default();
        let mut new_changes = 0;
        let mut budget = BATCH_BYTES_MAX;
        self.with_docs(|store, cache| -> Result<(), NodeError> {
            for school in &request.schools {
                let mut loaded: Vec<LoadedDoc> = Vec::new();
                let mut refusal = None;
                for entry in &school.docs {
                    let mut doc = match cache.take(store, &entry.doc) {
                        Ok(doc) => doc,
                        Err(StoreError::Corrupt { doc, reason }) => {
                            // One damaged document refuses its school, not the whole request.
                            tracing::error!(%doc, %reason, "stored document is damaged");
                            refusal = Some(Refusal {
                                code: "document_damaged".to_owned(),
                                message: format!(
                                    "the server's copy of {doc} is damaged; it was not changed"
                                ),
                            });
                            break;
                        }
                        Err(e) => return Err(e.into()),
                    };
                    let before = doc.doc.get_heads();
                    let existed = doc.exists();
                    match apply_payload(
                        &entry.doc,
                        &mut doc.doc,
                        &entry.changes,
                        entry.snapshot.as_deref(),
                    ) {
                        Ok(applied) => {
                            if let Err(bad) = content_check(
                                &entry.doc,
                                &mut doc.doc,
                                &before,
                                &entry.heads,
                                counties.get(&school.school),
                                !existed,
                            ) {
                                tracing::warn!(doc = %entry.doc, reason = %bad, "refused content");
                                refusal = Some(Refusal {
                                    code: "record_invalid".to_owned(),
                                    message: format!("{}: {bad}", entry.doc),
                                });
                                break;
                            }
                            new_changes += applied.new_changes;
                            if let (false, Some(bytes), true) =
                                (doc.exists(), &entry.snapshot, entry.changes.is_empty())
                            {
                                // A new document received whole (and adopted as it is: its
                                // heads are the sender's): store the bytes it came in.
                                let mut heads = doc.doc.get_heads();
                                heads.sort();
                                let mut claimed =
                                    schoolsync_protocol::sync::from_wire(&entry.heads);
                                claimed.sort();
                                if heads == claimed {
                                    doc.set_snapshot_hint(bytes.clone());
                                }
                            }
                            loaded.push(doc);
                        }
                        Err(e) => {
                            refusal = Some(refused(&e));
                            break;
                        }
                    }
                }
                let index_before = store.index(&format!("{}/", school.school))?;
                if let Some(refusal) = refusal {
                    // Drop every document of this school we touched: none of it is committed.
                    response.schools.push(SchoolReply {
                        school: school.school.clone(),
                        digest: digest(index_before.iter().map(|(id, h)| (id, h.as_slice()))),
                        docs: Vec::new(),
                        index: None,
                        refused: Some(refusal),
                    });
                    continue;
                }
                let mut refs: Vec<&mut LoadedDoc> = loaded.iter_mut().collect();
                store.commit(&mut refs, Vec::new())?;
                let mut replies = Vec::new();
                for (entry, doc) in school.docs.iter().zip(loaded.iter_mut()) {
                    replies.push(reply_for(&entry.doc, &mut doc.doc, entry, &mut budget));
                }
                for doc in loaded {
                    cache.put(doc);
                }
                let index = store.index(&format!("{}/", school.school))?;
                let ours = digest(index.iter().map(|(id, h)| (id, h.as_slice())));
                response.schools.push(SchoolReply {
                    school: school.school.clone(),
                    digest: ours,
                    docs: replies,
                    index: (ours != school.digest).then(|| {
                        index
                            .iter()
                            .map(|(id, h)| (id.clone(), to_wire(h)))
                            .collect()
                    }),
                    refused: None,
                });
            }
            Ok(())
        })??;
        Ok((response, new_changes))
    }

    /// Writes feedback on a class-day into a school's month document, as this node's own change;
    /// it reaches the school on its next sync. Refuses documents this node does not hold.
    pub fn put_feedback(
        &self,
        doc: &DocId,
        key: &str,
        note: &str,
        now_ms: i64,
    ) -> Result<bool, NodeError> {
        let by = match &self.role {
            Role::City => "city".to_owned(),
            Role::Relay { county } => county.to_string(),
        };
        self.with_docs(|store, cache| -> Result<bool, NodeError> {
            let mut loaded = cache.take(store, doc)?;
            if !loaded.exists() {
                return Ok(false);
            }
            let at = chrono::DateTime::from_timestamp_millis(now_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let feedback = schoolsync_protocol::doc::Feedback {
                note: note.to_owned(),
                by: by.clone(),
                at,
            };
            schoolsync_protocol::doc::put_feedback(&mut loaded.doc, key, &feedback)
                .map_err(|e| NodeError::Store(StoreError::from(e)))?;
            let meta = schoolsync_protocol::doc::CommitMeta {
                school: doc.school.to_string(),
                clerk: by.clone(),
                machine: self.role.name().to_owned(),
                action: "feedback".to_owned(),
            };
            schoolsync_protocol::doc::commit(&mut loaded.doc, &meta, now_ms);
            store.commit(&mut [&mut loaded], Vec::new())?;
            cache.put(loaded);
            Ok(true)
        })?
    }

    /// Checks a decoded request against the wire limits.
    pub fn check(&self, request: &SyncRequest) -> Result<(), WireError> {
        check_limits(request)
    }
}

/// The upstream re-check of one document's incoming changes (see [`Node::serve_sync`]).
fn content_check(
    id: &DocId,
    doc: &mut automerge::AutoCommit,
    before: &[automerge::ChangeHash],
    sender_heads: &[schoolsync_protocol::sync::Hash],
    county: Option<&CountyCode>,
    whole: bool,
) -> Result<(), String> {
    let sender: Vec<automerge::ChangeHash> = from_wire(sender_heads)
        .into_iter()
        .filter(|h| doc.get_change_by_hash(h).is_some())
        .collect();
    match id.kind {
        DocKind::Records(_) => {
            schoolsync_protocol::doc::check_incoming(doc, before, &sender, whole)
                .map_err(|bad| bad.to_string())
        }
        DocKind::Profile => {
            if doc.get_heads() == before {
                return Ok(());
            }
            let profile = schoolsync_protocol::doc::read_profile(doc)
                .map_err(|e| format!("the profile is not readable ({e})"))?;
            if !profile.school.is_empty() && profile.school != id.school.as_str() {
                return Err(format!("the profile names school {}", profile.school));
            }
            let named = schoolsync_protocol::ids::CountyTable::default().parse(&profile.county);
            match county {
                Some(c) if !profile.county.is_empty() && named.as_ref().ok() != Some(c) => {
                    Err(format!(
                        "the profile names county {}, but the school is enrolled in {c}",
                        profile.county
                    ))
                }
                _ => Ok(()),
            }
        }
    }
}

fn refused(e: &WireError) -> Refusal {
    Refusal {
        code: e.code().to_owned(),
        message: e.to_string(),
    }
}
