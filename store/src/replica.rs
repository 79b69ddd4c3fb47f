//! The disk side of syncing towards an upstream (school agent → relay, relay → city): building
//! a round's request from the store and absorbing the reply into it.
//!
//! A *link* is one upstream, named by a short stable key. Per link and document the store keeps
//! `acked`: the upstream heads last confirmed. `acked` only moves in the same atomic batch that
//! durably applies the reply that confirmed it, so a crash or a lost response can only make a
//! round repeat, never skip. Network IO is the caller's (see `upstream`).

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use schoolsync_protocol::ids::{DocId, SchoolId};
use schoolsync_protocol::sync::{
    self, apply_payload, digest, from_wire, Plan, Refusal, SchoolSync, SyncRequest, SyncResponse,
    BATCH_BYTES_MAX,
};

use crate::docs::{heads_bytes, heads_from_bytes, DocStore, StoreError};
use crate::kv::Op;

fn acked_key(link: &str, doc: &DocId) -> Vec<u8> {
    format!("a/{link}/{doc}").into_bytes()
}

/// A short stable key for an upstream URL (FNV-1a, hex), used in store keys.
pub fn link_key(url: &str) -> String {
    let hash = schoolsync_protocol::ids::fnv1a64(url.trim_end_matches('/').as_bytes());
    format!("{hash:016x}")
}

/// What one absorbed reply did.
#[derive(Clone, Debug, Default)]
pub struct Absorbed {
    /// Documents to pull in the next round (the upstream has heads we lack, or sent a partial page).
    pub pulls: BTreeSet<DocId>,
    /// Changes received that were new here.
    pub changes_down: usize,
    /// Every school's digest now equals the upstream's and nothing remains to pull.
    pub in_sync: bool,
    /// Schools the upstream refused, with its reason.
    pub refused: Vec<(SchoolId, Refusal)>,
    /// Documents whose reply failed verification: skipped, `acked` not moved.
    pub bad: Vec<(DocId, String)>,
}

/// Sync state of one link, kept between rounds of one sync.
pub struct Replica<'a> {
    pub store: &'a DocStore,
    pub link: String,
}

impl<'a> Replica<'a> {
    pub fn new(store: &'a DocStore, link: &str) -> Replica<'a> {
        Replica {
            store,
            link: link.to_owned(),
        }
    }

    pub fn acked(&self, doc: &DocId) -> Result<Vec<ChangeHash>, StoreError> {
        Ok(self
            .store
            .get_raw(&acked_key(&self.link, doc))?
            .map(|b| heads_from_bytes(&b))
            .unwrap_or_default())
    }

    /// Every school with at least one stored document.
    pub fn schools(&self) -> Result<Vec<SchoolId>, StoreError> {
        let mut out: BTreeSet<SchoolId> = BTreeSet::new();
        for (id, _) in self.store.index("")? {
            out.insert(id.school);
        }
        Ok(out.into_iter().collect())
    }

    /// Local changes the upstream has not confirmed yet, over `schools`.
    pub fn unconfirmed(&self, schools: &[SchoolId]) -> Result<usize, StoreError> {
        let mut count = 0;
        for school in schools {
            for (id, heads) in self.store.index(&format!("{school}/"))? {
                let acked = self.acked(&id)?;
                if heads_bytes(&heads) != heads_bytes(&acked) {
                    let mut loaded = self.store.load(&id)?;
                    let known = sync::known(&mut loaded.doc, acked);
                    count += loaded.doc.get_changes(&known).len();
                }
            }
        }
        Ok(count)
    }

    /// Builds the next round's request for `schools`: a digest per school, and an entry for every
    /// document with something to push or in `pulls`. Pages stop at [`BATCH_BYTES_MAX`].
    ///
    /// With `push` false it only probes: digests and pulls, no changes. After an interrupted
    /// sync, `acked` may lag what the upstream committed; a probe's reply (the upstream's index)
    /// brings `acked` up to date so the next push resends nothing the upstream already has.
    pub fn build(
        &self,
        schools: &[SchoolId],
        pulls: &BTreeSet<DocId>,
        push: bool,
    ) -> Result<SyncRequest, StoreError> {
        let mut budget = if push { BATCH_BYTES_MAX } else { 0 };
        let mut request = SyncRequest::default();
        for school in schools {
            let index = self.store.index(&format!("{school}/"))?;
            let mut entry = SchoolSync {
                school: school.clone(),
                digest: digest(index.iter().map(|(id, h)| (id, h.as_slice()))),
                docs: Vec::new(),
            };
            let local: BTreeMap<&DocId, &Vec<ChangeHash>> =
                index.iter().map(|(id, h)| (id, h)).collect();
            for (id, heads) in &index {
                let acked = self.acked(id)?;
                let pull = pulls.contains(id);
                if !pull && heads_bytes(heads) == heads_bytes(&acked) {
                    continue; // Nothing to push: decided from the index, no document loaded.
                }
                if !pull && budget == 0 {
                    continue; // This round's page is full; the next round pushes the rest.
                }
                if acked.is_empty() && !pull {
                    // The upstream has none of it: send it as stored, without loading it.
                    let (snapshot, changes) = self.store.raw_parts(id)?;
                    let size = snapshot.as_ref().map_or(0, Vec::len)
                        + changes.iter().map(Vec::len).sum::<usize>();
                    budget = budget.saturating_sub(size);
                    entry.docs.push(sync::DocSync {
                        doc: id.clone(),
                        acked: Vec::new(),
                        heads: sync::to_wire(heads),
                        changes,
                        snapshot,
                    });
                    continue;
                }
                let mut loaded = self.store.load(id)?;
                if let Plan::Send(doc_sync) =
                    sync::plan(id, &mut loaded.doc, &acked, pull, &mut budget)
                {
                    entry.docs.push(doc_sync);
                }
            }
            // Documents the upstream has and we do not have at all.
            for id in pulls
                .iter()
                .filter(|id| id.school == *school && !local.contains_key(id))
            {
                entry.docs.push(sync::DocSync {
                    doc: id.clone(),
                    acked: Vec::new(),
                    heads: Vec::new(),
                    changes: Vec::new(),
                    snapshot: None,
                });
            }
            request.schools.push(entry);
        }
        Ok(request)
    }

    /// Applies a reply durably: new changes into documents, and `acked` moved to what the
    /// upstream confirmed, all in one batch per school.
    pub fn absorb(
        &self,
        request: &SyncRequest,
        response: SyncResponse,
    ) -> Result<Absorbed, StoreError> {
        let mut out = Absorbed {
            in_sync: true,
            ..Absorbed::default()
        };
        for reply in response.schools {
            if !request.schools.iter().any(|s| s.school == reply.school) {
                continue; // The upstream answered a school we did not ask about: ignore it.
            }
            if let Some(refusal) = reply.refused {
                out.refused.push((reply.school.clone(), refusal));
                continue;
            }
            let mut loaded_docs = Vec::new();
            let mut ops = Vec::new();
            for doc_reply in &reply.docs {
                if doc_reply.doc.school != reply.school {
                    continue;
                }
                let no_payload = doc_reply.changes.is_empty() && doc_reply.snapshot.is_none();
                if no_payload && doc_reply.missing.is_empty() {
                    // The usual answer to a push: the upstream's heads are ours. Decided from the
                    // index, without loading the document.
                    let local = self.store.index(&doc_reply.doc.to_string())?;
                    let ours = local
                        .iter()
                        .find(|(id, _)| *id == doc_reply.doc)
                        .map(|(_, h)| heads_bytes(h));
                    let theirs = heads_bytes(&from_wire(&doc_reply.heads));
                    if ours.as_ref() == Some(&theirs) {
                        ops.push(Op::Put(acked_key(&self.link, &doc_reply.doc), theirs));
                        if doc_reply.more {
                            out.pulls.insert(doc_reply.doc.clone());
                        }
                        continue;
                    }
                }
                let mut loaded = self.store.load(&doc_reply.doc)?;
                let applied = match apply_payload(
                    &doc_reply.doc,
                    &mut loaded.doc,
                    &doc_reply.changes,
                    doc_reply.snapshot.as_deref(),
                ) {
                    Ok(applied) => applied,
                    Err(e) => {
                        // Damaged data from upstream: keep this document as it was, move no
                        // checkpoint, carry on with the others.
                        out.bad.push((doc_reply.doc.clone(), e.to_string()));
                        continue;
                    }
                };
                out.changes_down += applied.new_changes;
                let confirmed = if doc_reply.missing.is_empty() {
                    // Upstream heads only grow: what it had confirmed before still holds, so a
                    // reply whose heads we cannot know yet (a paged pull) never resets `acked`.
                    let previous = self.acked(&doc_reply.doc)?;
                    sync::known(
                        &mut loaded.doc,
                        previous.into_iter().chain(from_wire(&doc_reply.heads)),
                    )
                } else {
                    Vec::new() // The upstream lacks dependencies: resend this document whole.
                };
                ops.push(Op::Put(
                    acked_key(&self.link, &doc_reply.doc),
                    heads_bytes(&confirmed),
                ));
                if doc_reply.more {
                    out.pulls.insert(doc_reply.doc.clone());
                }
                loaded_docs.push(loaded);
            }
            // The upstream's index: pull what it has that we lack; note what it already has.
            if let Some(index) = &reply.index {
                let listed: BTreeSet<&DocId> = index.iter().map(|(id, _)| id).collect();
                for (id, heads) in index {
                    if id.school != reply.school || reply.docs.iter().any(|d| d.doc == *id) {
                        continue;
                    }
                    let heads = from_wire(heads);
                    let local = self
                        .store
                        .index(&id.to_string())?
                        .into_iter()
                        .find(|(i, _)| i == id);
                    match local {
                        None => {
                            out.pulls.insert(id.clone());
                        }
                        Some((_, ours)) if heads_bytes(&ours) == heads_bytes(&heads) => {
                            // Same heads on both sides: confirmed, no document loaded.
                            ops.push(Op::Put(acked_key(&self.link, id), heads_bytes(&heads)));
                        }
                        Some(_) => {
                            let mut loaded = self.store.load(id)?;
                            let known = sync::known(&mut loaded.doc, heads.iter().copied());
                            if known.len() < heads.len() {
                                out.pulls.insert(id.clone());
                            }
                            // Keep what was confirmed before: upstream heads only grow.
                            let previous = self.acked(id)?;
                            let confirmed =
                                sync::known(&mut loaded.doc, previous.into_iter().chain(known));
                            ops.push(Op::Put(acked_key(&self.link, id), heads_bytes(&confirmed)));
                        }
                    }
                }
                for (id, _) in self.store.index(&format!("{}/", reply.school))? {
                    if !listed.contains(&id) {
                        ops.push(Op::Delete(acked_key(&self.link, &id)));
                    }
                }
            }
            let mut refs: Vec<&mut crate::docs::LoadedDoc> = loaded_docs.iter_mut().collect();
            self.store.commit(&mut refs, ops)?;
            let local = self.store.index(&format!("{}/", reply.school))?;
            let ours = digest(local.iter().map(|(id, h)| (id, h.as_slice())));
            if ours == reply.digest {
                // The upstream holds exactly what we hold: everything is confirmed, including
                // what an interrupted earlier sync delivered without hearing back.
                let confirm = local
                    .iter()
                    .map(|(id, heads)| Op::Put(acked_key(&self.link, id), heads_bytes(heads)))
                    .collect();
                self.store.write_raw(confirm)?;
            } else {
                out.in_sync = false;
            }
        }
        if !out.pulls.is_empty() {
            out.in_sync = false;
        }
        Ok(out)
    }
}
