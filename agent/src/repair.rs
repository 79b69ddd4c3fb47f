//! `schoolsync-agent repair`: rebuilds a damaged store without losing what can still be read.
//!
//! 1. The damaged store is opened without trusting it (no whole-file check); if the engine
//!    cannot open it at all, nothing is readable and everything will come from upstream.
//! 2. Every readable, verified piece is copied into a fresh store beside it (`store.repairing`),
//!    see `schoolsync_store::salvage`; confirmed-upstream state is reset, so the next sync
//!    pushes everything kept and refetches everything lost.
//! 3. The damaged store is renamed `store.damaged-<unix ms>` (never deleted) and the fresh one
//!    takes its place. A crash between the two renames is finished by the next `repair`.
//!
//! The damaged store stays locked while it is read, so a running agent is reported (exit 5)
//! rather than raced.

use std::path::{Path, PathBuf};

use schoolsync_protocol::Lang;
use schoolsync_store::engine::{open_engine, recorded};
use schoolsync_store::kv::KvError;
use schoolsync_store::salvage::{salvage, Salvaged};
use schoolsync_store::{DocStore, Engine, StoreError, DEFAULT_ENGINE};
use serde::Serialize;

/// What a repair did.
#[derive(Debug, Serialize)]
pub struct RepairReport {
    pub salvaged: Salvaged,
    /// Where the damaged store was kept.
    pub kept_aside: Option<PathBuf>,
    /// The engine of the new store.
    pub engine: String,
}

impl RepairReport {
    pub fn print(&self, lang: Lang, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        let s = &self.salvaged;
        let aside = self
            .kept_aside
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        match lang {
            Lang::Zh => {
                println!(
                    "修复完成：保留 {} 个文档（{} 项修改）和 {} 项设置；损坏的快照 {} 个、修改 {} 项，缺少前序的修改 {} 项。",
                    s.documents, s.changes, s.meta, s.snapshots_lost, s.changes_lost, s.orphans
                );
                println!("原存储已改名保留在 {aside}。请运行 schoolsync-agent sync，从上级取回缺失的数据。");
                if !s.readable {
                    println!(
                        "原存储完全无法读取：请重新运行 init（同一学校、同样的上级地址），再同步。"
                    );
                }
            }
            Lang::En => {
                println!(
                    "repaired: kept {} documents ({} changes) and {} settings; lost {} snapshots and {} changes, {} changes whose history was lost.",
                    s.documents, s.changes, s.meta, s.snapshots_lost, s.changes_lost, s.orphans
                );
                println!("The damaged store is kept at {aside}. Run `schoolsync-agent sync` to fetch what is missing from upstream.");
                if !s.readable {
                    println!("Nothing of the old store could be read: run `init` again (same school, same upstreams), then sync.");
                }
            }
        }
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Kv(KvError::Engine(e.to_string()))
}

fn sibling(store_dir: &Path, suffix: &str) -> PathBuf {
    let mut name = store_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "store".into());
    name.push(suffix);
    store_dir.with_file_name(name)
}

/// Finishes a repair stopped between its two renames (the damaged store already aside, the
/// fresh one not yet in place). Every command calls this before opening the store, so none of
/// them creates an empty store where the repaired one belongs.
pub fn finish_interrupted(store_dir: &Path) -> Result<(), StoreError> {
    let fresh_dir = sibling(store_dir, ".repairing");
    if !store_dir.exists() && fresh_dir.exists() {
        std::fs::rename(&fresh_dir, store_dir).map_err(io)?;
    }
    Ok(())
}

/// Repairs the store in `store_dir` into `engine` (default: the engine it had).
pub fn repair(store_dir: &Path, engine: Option<Engine>) -> Result<RepairReport, StoreError> {
    let fresh_dir = sibling(store_dir, ".repairing");
    finish_interrupted(store_dir)?;
    let had = recorded(store_dir).unwrap_or(None);
    let target = engine.or(had).unwrap_or(DEFAULT_ENGINE);
    // 1. Open the damaged store without the whole-file check; a lock is a running agent.
    let old = match open_engine(store_dir, had.unwrap_or(target), false) {
        Ok(kv) => Some(kv),
        Err(e @ KvError::Locked { .. }) => return Err(StoreError::Kv(e)),
        Err(_) => None,
    };
    // 2. Salvage into a fresh store.
    if fresh_dir.exists() {
        std::fs::remove_dir_all(&fresh_dir).map_err(io)?; // Left by a repair that crashed.
    }
    let fresh = DocStore::open_with(&fresh_dir, Some(target), false)?;
    let salvaged = match &old {
        Some(kv) => salvage(kv.as_ref(), &fresh)?,
        None => Salvaged {
            read_errors: vec!["the engine could not open the store".to_owned()],
            ..Salvaged::default()
        },
    };
    drop(fresh);
    drop(old);
    // 3. Swap: the damaged store aside (kept), the fresh one in its place.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let aside = sibling(store_dir, &format!(".damaged-{stamp}"));
    let kept_aside = if store_dir.exists() {
        std::fs::rename(store_dir, &aside).map_err(io)?;
        Some(aside)
    } else {
        None
    };
    std::fs::rename(&fresh_dir, store_dir).map_err(io)?;
    Ok(RepairReport {
        salvaged,
        kept_aside,
        engine: target.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repair cut between its renames: the next command finds the repaired store in place.
    #[test]
    fn an_interrupted_repair_is_finished_before_the_store_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let fresh = sibling(&store_dir, ".repairing");
        {
            let store = DocStore::open_with(&fresh, Some(Engine::Redb), false).unwrap();
            store
                .write_raw(vec![DocStore::meta_op("school", "2113000001")])
                .unwrap();
        }
        finish_interrupted(&store_dir).unwrap();
        assert!(!fresh.exists());
        let store = DocStore::open(&store_dir).unwrap();
        assert_eq!(store.meta("school").unwrap().as_deref(), Some("2113000001"));
    }
}
