//! Which storage engine a store directory uses, and opening it.
//!
//! A store is always reopened with the engine it was created with: the choice is written into
//! the directory ([`ENGINE_FILE`]) before the engine creates its files, and asking for another
//! engine later is refused ([`KvError::EngineMismatch`]) rather than silently starting an empty
//! store beside the old one. A sled store made before the file existed is recognised by its
//! files. The default for new stores is [`DEFAULT_ENGINE`]; README ("Storage engine") and
//! BENCHMARKS.md give the evidence behind it.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;

use crate::kv::{Kv, KvError, SledKv};
use crate::kv_redb::{RedbKv, REDB_FILE};

/// The file inside the store directory naming its engine (`sled` or `redb`, one line).
pub const ENGINE_FILE: &str = "engine";

/// The engine of new stores when none is asked for.
pub const DEFAULT_ENGINE: Engine = Engine::Redb;

/// A storage engine behind [`Kv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// sled 0.34: a log-structured tree; `flush` makes writes durable.
    Sled,
    /// redb 4: a copy-on-write B-tree in one file with checksummed pages; every commit durable.
    Redb,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        }
    }

    pub const ALL: [Engine; 2] = [Engine::Sled, Engine::Redb];
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Engine, String> {
        match s.trim() {
            "sled" => Ok(Engine::Sled),
            "redb" => Ok(Engine::Redb),
            other => Err(format!("unknown storage engine {other:?} (sled or redb)")),
        }
    }
}

fn io(e: std::io::Error) -> KvError {
    KvError::Engine(e.to_string())
}

/// The engine `dir` was created with, if it holds a store.
pub fn recorded(dir: &Path) -> Result<Option<Engine>, KvError> {
    match std::fs::read_to_string(dir.join(ENGINE_FILE)) {
        Ok(text) => text.parse().map(Some).map_err(|reason| KvError::Corrupt {
            path: dir.join(ENGINE_FILE),
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Stores made before the engine file: sled's files, or redb's.
            if dir.join("conf").exists() || dir.join("db").exists() {
                Ok(Some(Engine::Sled))
            } else if dir.join(REDB_FILE).exists() {
                Ok(Some(Engine::Redb))
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes the engine file durably (file and directory synced) before the engine makes its own.
fn record(dir: &Path, engine: Engine) -> Result<(), KvError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!("{ENGINE_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(format!("{engine}\n").as_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(ENGINE_FILE)).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // Not possible on every platform; the rename is what matters.
    }
    Ok(())
}

/// Opens the store in `dir` with the engine it was created with; a new store gets `requested`
/// or [`DEFAULT_ENGINE`]. A `requested` engine other than the recorded one is refused. With
/// `verify`, an engine that can check its whole file on open (redb) does so.
pub fn open_kv(
    dir: &Path,
    requested: Option<Engine>,
    verify: bool,
) -> Result<(Box<dyn Kv>, Engine), KvError> {
    let engine = match (recorded(dir)?, requested) {
        (Some(have), Some(want)) if have != want => {
            return Err(KvError::EngineMismatch {
                path: dir.to_owned(),
                recorded: have.to_string(),
                requested: want.to_string(),
            })
        }
        (Some(have), _) => {
            if !dir.join(ENGINE_FILE).exists() {
                record(dir, have)?;
            }
            have
        }
        (None, want) => {
            let engine = want.unwrap_or(DEFAULT_ENGINE);
            record(dir, engine)?;
            engine
        }
    };
    let kv: Box<dyn Kv> = match engine {
        Engine::Sled => Box::new(SledKv::open(dir)?),
        Engine::Redb => Box::new(RedbKv::open(dir, verify)?),
    };
    Ok((kv, engine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_keeps_its_engine_and_refuses_another() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let (kv, got) = open_kv(dir.path(), Some(engine), true).unwrap();
            assert_eq!(got, engine);
            kv.put(b"k", b"v").unwrap();
            kv.flush().unwrap();
            drop(kv);
            // Reopened without asking: the recorded engine, with the data.
            let (kv, got) = open_kv(dir.path(), None, true).unwrap();
            assert_eq!(got, engine);
            assert_eq!(kv.get(b"k").unwrap(), Some(b"v".to_vec()));
            drop(kv);
            let other = Engine::ALL.into_iter().find(|e| *e != engine).unwrap();
            let e = open_kv(dir.path(), Some(other), true).err().unwrap();
            assert!(matches!(e, KvError::EngineMismatch { .. }), "{e}");
            assert!(e.to_string().contains(engine.name()), "{e}");
        }
    }

    #[test]
    fn an_old_sled_store_without_the_engine_file_is_sled() {
        let dir = tempfile::tempdir().unwrap();
        drop(SledKv::open(dir.path()).unwrap());
        assert_eq!(recorded(dir.path()).unwrap(), Some(Engine::Sled));
        let (_, got) = open_kv(dir.path(), None, true).unwrap();
        assert_eq!(got, Engine::Sled);
        assert!(dir.path().join(ENGINE_FILE).exists());
    }

    #[test]
    fn a_held_store_is_locked_for_both_engines() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            let _held = open_kv(dir.path(), Some(engine), true).unwrap();
            // A second open of a held store (the same process here; the CLI test covers another
            // process) reports the lock.
            match open_kv(dir.path(), None, true) {
                Err(KvError::Locked { .. }) => {}
                Err(e) => panic!("{engine}: {e}"),
                Ok(_) => panic!("{engine}: opened twice"),
            }
        }
    }
}
