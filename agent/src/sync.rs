//! The agent's side of sync: which upstreams it has (the county relay first, the city as
//! fallback), one-shot `sync`, the long-running `run` loop, and per-upstream status.
//!
//! The store is single-process (sled locks it), so `run` opens it only for a sync round and
//! closes it in between (through [`Gate`], shared with the clerk desk): clerk commands run between
//! rounds, and a command that meets a round in progress waits for it (see `cli::open_store`).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use schoolsync_protocol::Lang;
use schoolsync_store::kv::Op;
use schoolsync_store::replica::{link_key, Replica};
use schoolsync_store::upstream::{sync_schools, LinkError, SyncSummary, Upstream};
use schoolsync_store::{DocStore, StoreError};
use serde::{Deserialize, Serialize};

use schoolsync_protocol::auth::{peek_claims, Claims, CredentialFile, Role};
use schoolsync_protocol::holdings::{Holdings, Tier};
use schoolsync_protocol::ids::CountyTable;

use crate::app::{Agent, AppError};
use crate::gate::Gate;

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
    let token = credential_token(agent);
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
                let upstream = match &token {
                    Some(t) => upstream.with_credential(t),
                    None => upstream,
                };
                let replica = Replica::new(&agent.store, &link_key(url));
                sync_schools(
                    &upstream,
                    &replica,
                    std::slice::from_ref(&school),
                    interrupted,
                    progress,
                )
                .await
                .map(|summary| (summary, upstream))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((summary, upstream)) => {
                // Tell the upstreams what this school holds, when that changed (completeness by
                // tier). Best effort: the data itself is already there, and a failed report is
                // sent again after the next change.
                let _ =
                    report_holdings(agent, url, &upstream, &upstreams, token.as_deref(), now_ms)
                        .await;
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

/// What this school holds: per school day of its two latest months, the classes with an
/// attendance record.
pub fn holdings(agent: &Agent, now_ms: i64) -> Result<Holdings, AppError> {
    let school = agent.school()?;
    let mut months: Vec<_> = agent
        .store
        .index(&format!("{school}/"))?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| matches!(id.kind, schoolsync_protocol::ids::DocKind::Records(_)))
        .collect();
    months.sort_by_key(|id| match id.kind {
        schoolsync_protocol::ids::DocKind::Records(m) => Some(m),
        _ => None,
    });
    let mut days: std::collections::BTreeMap<chrono::NaiveDate, u32> = Default::default();
    for id in months.iter().rev().take(2) {
        let loaded = agent.store.load(id)?;
        let records = schoolsync_protocol::doc::read_month(&loaded.doc)
            .map_err(|e| AppError::Store(StoreError::from(e)))?;
        for r in records.attendance.values() {
            *days.entry(r.date.0).or_default() += 1;
        }
    }
    let relay_confirmed = match load_upstreams(&agent.store)?.urls.first() {
        Some(relay) => {
            Replica::new(&agent.store, &link_key(relay))
                .unconfirmed(std::slice::from_ref(&school))?
                == 0
        }
        None => false,
    };
    Ok(Holdings {
        school,
        tier: Tier::School,
        relay_confirmed,
        as_of_ms: now_ms,
        last_change_ms: agent
            .store
            .meta("last_change")?
            .and_then(|t| t.parse().ok()),
        days,
    })
}

/// Sends [`holdings`] to each upstream that has not been told since this school's last change:
/// at once to the one it just synced with (`synced`, over its open connection), briefly to the
/// others (the city, past the relay), which may be out of reach.
async fn report_holdings(
    agent: &Agent,
    synced_url: &str,
    synced: &Upstream,
    upstreams: &Upstreams,
    token: Option<&str>,
    now_ms: i64,
) -> Result<(), AppError> {
    let last_change = agent.store.meta("last_change")?.unwrap_or_default();
    let sent_name = |url: &str| format!("holdings_sent/{}", link_key(url));
    let mut pending = Vec::new();
    for url in &upstreams.urls {
        if agent.store.meta(&sent_name(url))?.as_deref() != Some(last_change.as_str()) {
            pending.push(url);
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    let report = holdings(agent, now_ms)?;
    for url in pending {
        let delivered = if url == synced_url {
            synced
                .post_holdings(std::slice::from_ref(&report))
                .await
                .is_ok()
        } else {
            let Ok(other) = Upstream::new(url, upstreams.ca_pem.as_deref().map(str::as_bytes))
            else {
                continue;
            };
            let other = match token {
                Some(t) => other.with_credential(t),
                None => other,
            };
            let post = other.post_holdings(std::slice::from_ref(&report));
            matches!(
                tokio::time::timeout(Duration::from_millis(HOLDINGS_OTHER_TIMEOUT_MS), post).await,
                Ok(Ok(()))
            )
        };
        if delivered {
            agent
                .store
                .write_raw(vec![DocStore::meta_op(&sent_name(url), &last_change)])?;
        }
    }
    Ok(())
}

/// How long a sync waits to tell an upstream it did not sync with (the city, when the relay
/// answered) what the school holds.
pub const HOLDINGS_OTHER_TIMEOUT_MS: u64 = 3_000;

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

/// The long-running agent: syncs soon after each local change and every `interval_ms`,
/// backing off with jitter while no upstream answers, until `stop` completes. `gate.wake` starts a
/// round at once (the desk's "sync now"), even while backing off.
pub async fn run_loop(
    gate: &Gate,
    lang: Lang,
    interval_ms: u64,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), AppError> {
    tokio::pin!(stop);
    let mut synced_change: Option<String> = None;
    let mut next_sync = Instant::now();
    let mut backoff_ms = 0u64;
    let mut woken = false;
    let mut seed = u64::from(std::process::id()) ^ 0x2545_f491_4f6c_dd1d;
    loop {
        let due = {
            let turn = match gate.open(0).await {
                Ok(turn) => turn,
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
            let agent = &turn.agent;
            let last_change = agent.store.meta("last_change")?;
            let changed = last_change != synced_change;
            if woken || (changed && backoff_ms == 0) || Instant::now() >= next_sync {
                woken = false;
                let now = crate::clock::now_ms();
                gate.syncing.store(true, Ordering::Relaxed);
                let outcome = sync_now(agent, now, lang, &mut |_| {}).await;
                gate.syncing.store(false, Ordering::Relaxed);
                match outcome {
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
            // The turn (the agent and the store lock) is dropped here, between rounds.
        };
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = gate.wake.notified() => woken = true,
            _ = tokio::time::sleep(due) => {}
        }
    }
}

/// Reads a credential file and checks that it is a school credential for `school` of `county`
/// (without verifying the signature: only the upstream can, and will).
pub fn read_credential_for(
    path: &Path,
    school: &str,
    county: &str,
) -> Result<(CredentialFile, Claims), AppError> {
    let unreadable = |reason: String| AppError::FileUnreadable {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let file: CredentialFile = toml::from_str(&text)
        .map_err(|_| unreadable("not a schoolsync credential file".to_owned()))?;
    let claims = peek_claims(&file.token).map_err(|e| unreadable(e.to_string()))?;
    let county = CountyTable::default()
        .parse(county)
        .map_err(AppError::Refused)?;
    let for_us = claims.role == Role::School
        && claims.school.as_ref().map(|s| s.as_str()) == Some(school.trim())
        && claims.county.as_ref() == Some(&county);
    if !for_us {
        return Err(unreadable(format!(
            "this credential is for {}, not for school {school} of county {county}",
            match (&claims.school, &claims.county) {
                (Some(s), Some(c)) => format!("school {s} of county {c}"),
                _ => format!("a {} device", claims.role.name()),
            }
        )));
    }
    Ok((file, claims))
}

/// Copies a credential file for this school into place, readable by its owner only.
pub fn install_credential(agent: &Agent, path: &Path) -> Result<Claims, AppError> {
    let profile = agent.profile()?;
    let (file, claims) = read_credential_for(path, &profile.school, &profile.county)?;
    let target = agent
        .config
        .credential
        .clone()
        .ok_or(AppError::NotInitialised)?;
    schoolsync_store::secret::write_private(&target, file.to_text(&claims).as_bytes()).map_err(
        |e| AppError::FileUnreadable {
            path: target.display().to_string(),
            reason: e.to_string(),
        },
    )?;
    Ok(claims)
}

/// This computer's credential token, if one is installed.
pub fn credential_token(agent: &Agent) -> Option<String> {
    let path = agent.config.credential.as_ref()?;
    let text = std::fs::read_to_string(path).ok()?;
    toml::from_str::<CredentialFile>(&text)
        .ok()
        .map(|f| f.token)
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
