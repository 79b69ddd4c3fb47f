//! The one way a long-running agent (`run`) touches its store: open it for one job (a sync round,
//! one page of the clerk desk), then close it again.
//!
//! sled allows one process per data directory, and the CLI must keep working while `run` runs, so
//! nothing in `run` keeps the store open between jobs. Inside the process, jobs take turns through
//! one async mutex (two opens in one process would fight over sled's file lock); against other
//! processes (a clerk's CLI command), opening waits up to a bound for their lock to go. This module
//! does no rendering and knows no pages; see `desk` and `sync::run_loop` for its two users.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use schoolsync_protocol::Lang;
use schoolsync_store::{DocStore, KvError, StoreError};
use tokio::sync::Notify;

use crate::app::{Actor, Agent, AppError};
use crate::config::Config;

/// Between two tries to open a store another process holds.
const OPEN_RETRY_MS: u64 = 100;

/// Opens the store in `dir`, waiting up to `wait_ms` while another process holds it.
pub fn open_store_waiting(
    dir: &std::path::Path,
    engine: Option<schoolsync_store::Engine>,
    wait_ms: u64,
) -> Result<DocStore, AppError> {
    let started = Instant::now();
    loop {
        // The agent's store is small: check all of it on open where the engine can (redb).
        match DocStore::open_with(dir, engine, true) {
            Err(StoreError::Kv(KvError::Locked { .. }))
                if (started.elapsed().as_millis() as u64) < wait_ms =>
            {
                std::thread::sleep(Duration::from_millis(OPEN_RETRY_MS));
            }
            other => return other.map_err(AppError::Store),
        }
    }
}

/// How to open the agent: the store folder, the configuration and who acts.
#[derive(Clone, Debug)]
pub struct Opener {
    pub store_dir: PathBuf,
    /// The storage engine asked for (`--engine`, agent.toml); an existing store keeps its own.
    pub engine: Option<schoolsync_store::Engine>,
    pub config: Config,
    pub actor: Actor,
    /// The desk's default language (`--lang`, `SCHOOLSYNC_LANG`, `lang` in agent.toml, else
    /// Chinese); each browser may switch with `?lang=en`, remembered by a cookie.
    pub lang: Lang,
}

impl Opener {
    /// Opens the agent, waiting up to `wait_ms` for another process's lock. Blocking.
    pub fn open(&self, wait_ms: u64) -> Result<Agent, AppError> {
        Ok(Agent::new(
            open_store_waiting(&self.store_dir, self.engine, wait_ms)?,
            self.config.clone(),
            self.actor.clone(),
        ))
    }
}

/// Shared between the sync loop and the desk: whose turn it is at the store, and the loop's state.
#[derive(Debug)]
pub struct Gate {
    pub opener: Opener,
    /// Held for the whole of one job; a `tokio` mutex because the sync round holds it across
    /// awaits (network IO).
    turn: tokio::sync::Mutex<()>,
    /// Wakes the sync loop now ("sync now" on the desk, or a record just saved).
    pub wake: Notify,
    /// True while a sync round is running, for the desk's status line.
    pub syncing: AtomicBool,
    /// How long a desk page waits for other processes' locks (`SCHOOLSYNC_LOCK_WAIT_MS`).
    pub wait_ms: u64,
}

/// The turn at the store: the open agent, closed (and the sled lock released) on drop.
pub struct Turn<'a> {
    pub agent: Agent,
    _guard: tokio::sync::MutexGuard<'a, ()>,
}

impl Gate {
    pub fn new(opener: Opener, wait_ms: u64) -> Arc<Gate> {
        Arc::new(Gate {
            opener,
            turn: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            syncing: AtomicBool::new(false),
            wait_ms,
        })
    }

    /// Waits for this process's turn and opens the store (waiting `wait_ms` for other processes).
    pub async fn open(&self, wait_ms: u64) -> Result<Turn<'_>, AppError> {
        let guard = self.turn.lock().await;
        let opener = self.opener.clone();
        let agent = tokio::task::spawn_blocking(move || opener.open(wait_ms))
            .await
            .map_err(|e| {
                AppError::Store(StoreError::Corrupt {
                    doc: "store".to_owned(),
                    reason: format!("the store task failed: {e}"),
                })
            })??;
        Ok(Turn {
            agent,
            _guard: guard,
        })
    }

    /// Runs blocking store work `job` in its turn, off the async threads, and closes the store.
    pub async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        job: impl FnOnce(&Agent) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let guard = self.turn.lock().await;
        let opener = self.opener.clone();
        let wait_ms = self.wait_ms;
        let out = tokio::task::spawn_blocking(move || {
            let agent = opener.open(wait_ms)?;
            job(&agent)
            // The agent and its store close here, before the turn is given back.
        })
        .await
        .map_err(|e| {
            AppError::Store(StoreError::Corrupt {
                doc: "store".to_owned(),
                reason: format!("the store task failed: {e}"),
            })
        })?;
        drop(guard);
        out
    }

    pub fn is_syncing(&self) -> bool {
        self.syncing.load(Ordering::Relaxed)
    }
}
