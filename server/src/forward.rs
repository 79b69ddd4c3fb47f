//! A relay's forwarder: keeps pushing its county's documents to the city and pulling what the
//! city has for them (feedback), soon after each downstream commit and on an interval, backing
//! off with jitter while the city is unreachable. Every page the city commits is kept.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use schoolsync_store::replica::{link_key, Replica};
use schoolsync_store::upstream::{LinkError, Upstream, ROUNDS_MAX};

use crate::auth::Gate;
use crate::node::Node;

/// How often the relay checks in with the city when nothing happens downstream.
pub const FORWARD_INTERVAL_MS: u64 = 30_000;
/// First retry delay after a failure; doubles up to [`BACKOFF_MAX_MS`].
pub const BACKOFF_MIN_MS: u64 = 500;
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// Wait this long after a downstream commit before forwarding, to batch a burst of schools.
pub const BATCH_DELAY_MS: u64 = 200;

/// State visible through health: last success and last error.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ForwardStatus {
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub rounds: u64,
}

/// Forwards until the shutdown watch flips.
pub async fn run(
    node: Arc<Node>,
    gate: Arc<Gate>,
    upstream: Upstream,
    committed: Arc<tokio::sync::Notify>,
    status: Arc<std::sync::Mutex<ForwardStatus>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    interval_ms: u64,
) {
    let mut backoff_ms = 0u64;
    let mut seed = std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15;
    loop {
        let wait = if backoff_ms > 0 {
            // Full jitter: spread retries of many relays over the backoff window.
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            backoff_ms / 2 + (seed >> 33) % (backoff_ms / 2 + 1)
        } else {
            interval_ms
        };
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = committed.notified(), if backoff_ms == 0 => {
                tokio::time::sleep(Duration::from_millis(BATCH_DELAY_MS)).await;
            }
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
        if *shutdown.borrow() {
            return;
        }
        refresh_trust(&node, &gate, &upstream).await;
        match forward_once(&node, &upstream).await {
            Ok(rounds) => {
                forward_holdings(&node, &upstream).await;
                backoff_ms = 0;
                if let Ok(mut s) = status.lock() {
                    s.last_success_ms = Some(now_ms());
                    s.last_error = None;
                    s.rounds += rounds as u64;
                }
            }
            Err(e) => {
                backoff_ms = (backoff_ms * 2).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
                tracing::warn!(error = %e, retry_in_ms = backoff_ms, "forwarding to the city failed");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e.to_string());
                }
            }
        }
    }
}

/// Passes on to the city what this relay's schools reported holding, with the relay's own view
/// of each (completeness by tier). Best effort: kept marked until the city took them.
pub async fn forward_holdings(node: &Arc<Node>, upstream: &Upstream) {
    let n = node.clone();
    let Ok(Ok((reports, keys))) = tokio::task::spawn_blocking(move || {
        crate::oversight::holdings::pending(&n.store, now_ms())
    })
    .await
    else {
        return;
    };
    if reports.is_empty() {
        return;
    }
    if let Err(e) = upstream.post_holdings(&reports).await {
        tracing::debug!(error = %e, "could not pass holdings on to the city");
        return;
    }
    let n = node.clone();
    let _ = tokio::task::spawn_blocking(move || {
        n.store
            .write_raw(keys.into_iter().map(schoolsync_store::Op::Delete).collect())
    })
    .await;
}

/// Fetches the city's revocation list and applies it here (and keeps it on disk for restarts
/// while the city is unreachable). Failures keep the last known list.
pub async fn refresh_trust(node: &Arc<Node>, gate: &Arc<Gate>, upstream: &Upstream) {
    let trust = match upstream.fetch_trust().await {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "could not fetch the revocation list");
            return;
        }
    };
    if trust.city_key != gate.trust().city_key {
        tracing::error!(
            "the city presented another signing key than this relay's credential names; ignored"
        );
        return;
    }
    if trust == gate.trust() {
        return;
    }
    let n = node.clone();
    let text = serde_json::to_string(&trust).unwrap_or_default();
    let stored = tokio::task::spawn_blocking(move || {
        n.store.write_raw(vec![schoolsync_store::DocStore::meta_op(
            "auth/trust",
            &text,
        )])
    })
    .await;
    if !matches!(stored, Ok(Ok(()))) {
        tracing::warn!("could not store the revocation list; applying it in memory");
    }
    tracing::info!(revoked = trust.revoked.len(), "revocation list updated");
    gate.set_trust(trust);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Syncs every school this relay holds with the city until both hold the same heads.
pub async fn forward_once(node: &Arc<Node>, upstream: &Upstream) -> Result<usize, LinkError> {
    let link = link_key(&upstream.url);
    let mut pulls = BTreeSet::new();
    // Schools the city refused this time: left out of later rounds so they cannot take every
    // page's budget from the others. They are tried again on the next forward.
    let mut excluded: BTreeSet<schoolsync_protocol::ids::SchoolId> = BTreeSet::new();
    for round in 1..=ROUNDS_MAX {
        let (n, l, p, x) = (node.clone(), link.clone(), pulls.clone(), excluded.clone());
        let request = tokio::task::spawn_blocking(move || {
            n.with_docs(|store, _| {
                let replica = Replica::new(store, &l);
                let schools: Vec<_> = replica
                    .schools()?
                    .into_iter()
                    .filter(|s| !x.contains(s))
                    .collect();
                replica.build(&schools, &p, true)
            })
        })
        .await
        .map_err(|_| LinkError::NoProgress)?
        .map_err(|_| LinkError::NoProgress)??;
        if request.schools.is_empty() {
            return Ok(round - 1);
        }
        let (response, _, _) = upstream.round(&request).await?;
        let (n, l) = (node.clone(), link.clone());
        let absorbed = tokio::task::spawn_blocking(move || {
            n.with_docs(|store, cache| {
                let out = Replica::new(store, &l).absorb(&request, response);
                cache.clear(); // Documents changed underneath the cache.
                out
            })
        })
        .await
        .map_err(|_| LinkError::NoProgress)?
        .map_err(|_| LinkError::NoProgress)??;
        for (school, refusal) in &absorbed.refused {
            tracing::warn!(%school, reason = %refusal.message, "the city refused a school's documents");
            excluded.insert(school.clone());
        }
        if let Some((doc, reason)) = absorbed.bad.first() {
            return Err(LinkError::BadData {
                doc: doc.to_string(),
                reason: reason.clone(),
            });
        }
        if absorbed.in_sync {
            return Ok(round);
        }
        pulls = absorbed.pulls;
    }
    Err(LinkError::NoProgress)
}
