//! Which storage engine a store directory uses, and opening it.
//!
//! A store is always reopened with the engine it was created with: the choice is written into
//! the directory ([`ENGINE_FILE`]) once the engine has created its files, and asking for another
//! engine later is refused ([`KvError::EngineMismatch`]) rather than silently starting an empty
//! store beside the old one. A sled store made before the file existed is recognised by its
//! files. Both engines take an empty data file for a new store; [`SENTINEL_KEY`] tells a store
//! that lost its data file from a new one. The default for new stores is [`DEFAULT_ENGINE`]; README ("Storage engine") and
//! BENCHMARKS.md give the evidence behind it.

use std::io::Write;
use std::path::Path;

use serde::Deserialize;

use crate::kv::{Kv, KvError, SledKv};
use crate::kv_redb::{RedbKv, REDB_FILE};

/// The file inside the store directory naming its engine (`sled` or `redb`, one line).
pub const ENGINE_FILE: &str = "engine";

/// A key every store holds from its creation on. Engines take an empty or missing data file for a
/// new, empty store; a store whose engine file exists but which lacks this key has lost its data
/// file (truncated to nothing, deleted, replaced) and is damage, not a fresh start.
pub const SENTINEL_KEY: &[u8] = b"m/~store";

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

/// Writes the engine file durably (file and directory synced), once the engine's own files hold
/// the store's sentinel.
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

/// Opens `engine`'s files in `dir` as they are: no engine file, no sentinel check. For reading a
/// damaged store (`repair`); everything else goes through [`open_kv`].
pub fn open_engine(dir: &Path, engine: Engine, verify: bool) -> Result<Box<dyn Kv>, KvError> {
    std::fs::create_dir_all(dir).map_err(io)?;
    Ok(match engine {
        Engine::Sled => Box::new(SledKv::open(dir)?),
        Engine::Redb => Box::new(RedbKv::open(dir, verify)?),
    })
}

/// Opens the store in `dir` with the engine it was created with; a new store gets `requested`
/// or [`DEFAULT_ENGINE`]. A `requested` engine other than the recorded one is refused. With
/// `verify`, an engine that can check its whole file on open (redb) does so.
pub fn open_kv(
    dir: &Path,
    requested: Option<Engine>,
    verify: bool,
) -> Result<(Box<dyn Kv>, Engine), KvError> {
    let established = dir.join(ENGINE_FILE).exists();
    let engine = match (recorded(dir)?, requested) {
        (Some(have), Some(want)) if have != want => {
            return Err(KvError::EngineMismatch {
                path: dir.to_owned(),
                recorded: have.to_string(),
                requested: want.to_string(),
            })
        }
        (Some(have), _) => have,
        (None, want) => want.unwrap_or(DEFAULT_ENGINE),
    };
    let kv = open_engine(dir, engine, verify)?;
    if established {
        if kv.get(SENTINEL_KEY)?.is_none() {
            return Err(KvError::Corrupt {
                path: dir.to_owned(),
                reason: "the store's data file is missing, empty or cut short".to_owned(),
            });
        }
    } else {
        // A new store, or one made before the engine file: mark it, then record the engine.
        // A crash in between leaves engine files without the engine file: recognised by
        // `recorded`, and marked again on the next open.
        kv.put(SENTINEL_KEY, engine.name().as_bytes())?;
        kv.flush()?;
        record(dir, engine)?;
    }
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

    /// Regression (corruption torture, seed 1795962887462118685): a redb file cut short was a
    /// bare I/O error. Every truncation of redb's file is damage, never an empty store or a
    /// generic error. sled recovers the longest valid prefix of its log, so a cut inside it opens
    /// with the later writes silently gone (README, "Storage engine"); only a data file cut to
    /// nothing is caught for sled, by the sentinel.
    #[test]
    fn a_truncated_store_is_damaged_for_both_engines() {
        for engine in Engine::ALL {
            let dir = tempfile::tempdir().unwrap();
            {
                let (kv, _) = open_kv(dir.path(), Some(engine), true).unwrap();
                for i in 0..200u32 {
                    kv.put(format!("d/{i:04}").as_bytes(), &[7; 300]).unwrap();
                }
                kv.flush().unwrap();
            }
            // sled releases its lock from a background thread.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let file = match engine {
                Engine::Sled => dir.path().join("db"),
                Engine::Redb => dir.path().join(REDB_FILE),
            };
            let pristine = std::fs::read(&file).unwrap();
            let used = pristine.iter().rposition(|b| *b != 0).unwrap() + 1;
            let cuts = match engine {
                Engine::Sled => vec![0],
                Engine::Redb => vec![0, 10, 100, 512, 4096, used / 2, used - 1],
            };
            for cut in cuts {
                std::fs::write(&file, &pristine[..cut.min(pristine.len())]).unwrap();
                match open_kv(dir.path(), None, true) {
                    Err(KvError::Corrupt { .. }) => {}
                    Err(e) => panic!("{engine} cut at {cut}: {e}"),
                    Ok((kv, _)) => {
                        let n = kv.scan_prefix(b"d/").map(|v| v.len());
                        panic!("{engine} cut at {cut} of {used}: opened with {n:?} entries")
                    }
                }
            }
        }
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
