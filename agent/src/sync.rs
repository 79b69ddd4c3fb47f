//! The agent's side of sync: which upstreams it has (the county relay first, the city as
//! fallback), one-shot `sync`, the long-running `run` loop, and per-upstream status.
//!
//! The store is single-process (sled locks it), so `run` opens it only for a sync round and
//! closes it in between: clerk commands run between rounds, and a command that meets a round in
//! progress waits for it (see `cli::open_store`).

use std::path::Path;
use std::time::{Duration, Instant};

use schoolsync_protocol::Lang;
use schoolsync_store::kv::Op;
use schoolsync_store::replica::{link_key, Replica};
use schoolsync_store::upstream::{sync_schools, LinkError, SyncSummary, Upstream};
use schoolsync_store::{DocStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::app::{Agent, AppError};

/// Upstream URLs and the CA that signs their certificates, as stored at `init`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Upstreams {
    pub urls: Vec<String>,
    pub ca_pem: Option<String>,
}

/// What the agent remembers of one upstream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LinkStatus {
    pub url: String,
    pub last_success_ms: Option<i64>,
    pub last_attempt_ms: Option<i64>,
    pub last_error_zh: Option<String>,
    pub last_error_en: Option<String>,
    /// A sync may have been cut after the upstream committed: probe before pushing next time.
    #[serde(default)]
    pub needs_probe: bool,
    /// Local changes this upstream has not confirmed (filled in by `status`).
    #[serde(default)]
    pub unconfirmed_changes: usize,
}

pub fn load_upstreams(store: &DocStore) -> Result<Upstreams, StoreError> {
    Ok(store
        .meta("upstreams")?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default())
}

pub fn upstreams_op(upstreams: &Upstreams) -> Op {
    DocStore::meta_op(
        "upstreams",
        &serde_json::to_string(upstreams).unwrap_or_default(),
    )
}

fn status_name(url: &str) -> String {
    format!("link/{}", link_key(url))
}

pub fn link_status(store: &DocStore, url: &str) -> Result<LinkStatus, StoreError> {
    Ok(store
        .meta(&status_name(url))?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| LinkStatus {
            url: url.to_owned(),
            ..LinkStatus::default()
        }))
}

fn save_status(store: &DocStore, status: &LinkStatus) -> Result<(), StoreError> {
    store.write_raw(vec![DocStore::meta_op(
        &status_name(&status.url),
        &serde_json::to_string(status).unwrap_or_default(),
    )])
}

/// The outcome of one sync: which upstream answered and the figures.
#[derive(Clone, Debug, Serialize)]
pub struct SyncOutcome {
    pub upstream: String,
    pub summary: SyncSummary,
    pub elapsed_ms: u128,
    /// Upstreams tried before it, with the reason each failed.
    pub failed: Vec<(String, String)>,
}

/// Syncs the school with the first upstream that answers, in configured order.
pub async fn sync_now(
    agent: &Agent,
    now_ms: i64,
    lang: Lang,
    progress: &mut (dyn FnMut(&SyncSummary) + Send),
) -> Result<SyncOutcome, AppError> {
    let school = agent.school()?;
    let upstreams = load_upstreams(&agent.store)?;
    if upstreams.urls.is_empty() {
        return Err(AppError::NoUpstream);
    }
    let mut failed = Vec::new();
    let mut last_error = None;
    for url in &upstreams.urls {
        let started = Instant::now();
        let mut status = link_status(&agent.store, url)?;
        // The last attempt was cut after a request went out: what the upstream committed may be
        // ahead of `acked`. Marked before this attempt too, in case this process is killed.
        let interrupted = status.needs_probe;
        status.last_attempt_ms = Some(now_ms);
        status.needs_probe = true;
        save_status(&agent.store, &status)?;
        let result = match Upstream::new(url, upstreams.ca_pem.as_deref().map(str::as_bytes)) {
            Ok(upstream) => {
                let replica = Replica::new(&agent.store, &link_key(url));
                sync_schools(
                    &upstream,
                    &replica,
                    std::slice::from_ref(&school),
                    interrupted,
                    progress,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(summary) => {
                status.needs_probe = false;
                status.last_success_ms = Some(now_ms);
                status.last_error_zh = None;
                status.last_error_en = None;
                if let Some((_, reason)) = summary.refused.first() {
                    status.last_error_zh = Some(format!("上级服务器拒收了本校数据：{reason}"));
                    status.last_error_en =
                        Some(format!("the upstream refused this school's data: {reason}"));
                }
                save_status(&agent.store, &status)?;
                return Ok(SyncOutcome {
                    upstream: url.clone(),
                    summary,
                    elapsed_ms: started.elapsed().as_millis(),
                    failed,
                });
            }
            Err(LinkError::Store(e)) => return Err(AppError::Store(e)),
            Err(e) => {
                status.needs_probe = interrupted || e.maybe_delivered();
                status.last_error_zh = Some(e.message(Lang::Zh));
                status.last_error_en = Some(e.message(Lang::En));
                save_status(&agent.store, &status)?;
                failed.push((url.clone(), e.message(lang)));
                last_error = Some(e);
            }
        }
    }
    Err(AppError::SyncFailed {
        message: last_error.map(|e| e.message(lang)).unwrap_or_default(),
    })
}

/// Per-upstream status with unconfirmed change counts.
pub fn statuses(agent: &Agent) -> Result<Vec<LinkStatus>, AppError> {
    let school = agent.school()?;
    let upstreams = load_upstreams(&agent.store)?;
    let mut out = Vec::new();
    for url in &upstreams.urls {
        let mut status = link_status(&agent.store, url)?;
        status.unconfirmed_changes = Replica::new(&agent.store, &link_key(url))
            .unconfirmed(std::slice::from_ref(&school))?;
        out.push(status);
    }
    Ok(out)
}

/// How often `run` syncs when nothing changes locally.
pub const RUN_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// How often `run` looks for a local change (a clerk's command) to sync soon after it.
pub const RUN_POLL_MS: u64 = 2_000;
/// Retry delays while offline: from the poll interval doubling up to this, with jitter.
pub const RUN_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;

/// The long-running agent: syncs soon after each local change and every [`RUN_INTERVAL_MS`],
/// backing off with jitter while no upstream answers, until `stop` completes.
pub async fn run_loop(
    open: impl Fn() -> Result<Agent, AppError>,
    lang: Lang,
    interval_ms: u64,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    tokio::pin!(stop);
    let mut synced_change: Option<String> = None;
    let mut next_sync = Instant::now();
    let mut backoff_ms = 0u64;
    let mut seed = u64::from(std::process::id()) ^ 0x2545_f491_4f6c_dd1d;
    loop {
        let due = {
            let agent = match open() {
                Ok(agent) => agent,
                Err(AppError::Store(StoreError::Kv(schoolsync_store::KvError::Locked {
                    ..
                }))) => {
                    // A clerk's command holds the store for long; try again at the next poll.
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_millis(RUN_POLL_MS)) => continue,
                    }
                }
                Err(e) => return Err(e),
            };
            let last_change = agent.store.meta("last_change")?;
            let changed = last_change != synced_change;
            if (changed && backoff_ms == 0) || Instant::now() >= next_sync {
                let now = crate::clock::now_ms();
                match sync_now(&agent, now, lang, &mut |_| {}).await {
                    Ok(outcome) => {
                        backoff_ms = 0;
                        synced_change = last_change;
                        next_sync = Instant::now() + Duration::from_millis(interval_ms);
                        eprintln!(
                            "{} {} ({} ↑{} ↓{})",
                            lang.pick("已同步", "synced with"),
                            outcome.upstream,
                            lang.pick("变更", "changes"),
                            outcome.summary.changes_up,
                            outcome.summary.changes_down
                        );
                    }
                    Err(AppError::Store(e)) => return Err(AppError::Store(e)),
                    Err(e) => {
                        backoff_ms = (backoff_ms * 2).clamp(RUN_POLL_MS, RUN_BACKOFF_MAX_MS);
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let jittered = backoff_ms / 2 + (seed >> 33) % (backoff_ms / 2 + 1);
                        next_sync = Instant::now() + Duration::from_millis(jittered);
                        eprintln!("{}", crate::app::error_message(&e, lang));
                    }
                }
            }
            next_sync
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(RUN_POLL_MS))
            // The agent (and the store lock) is dropped here, between rounds.
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(due) => {}
        }
    }
}

/// Reads a CA certificate file for `init --ca`.
pub fn read_ca(path: &Path) -> Result<String, AppError> {
    let text = std::fs::read_to_string(path).map_err(|e| AppError::FileUnreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if !text.contains("BEGIN CERTIFICATE") {
        return Err(AppError::FileUnreadable {
            path: path.display().to_string(),
            reason: "not a PEM certificate".to_owned(),
        });
    }
    Ok(text)
}
