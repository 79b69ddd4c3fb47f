//! The narrow storage trait the agent's document store stands on, and its sled engine.
//!
//! Four operations (get, put, atomic batch, prefix scan) plus `flush`, which returns only when
//! everything written before it is on disk. The trait exists so engines can be compared behind the
//! same calls: redb is the other one (`kv_redb`), and `engine` picks one per store directory.
//! This module knows nothing of documents; for that see `docs`.

use std::path::{Path, PathBuf};

/// Errors of the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Another process holds the store (sled locks its files): most likely a running agent.
    #[error("the store at {path} is in use by another process")]
    Locked { path: PathBuf },
    /// The engine found its files damaged (a checksum or structure check failed).
    #[error("the store at {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The store was created with another engine than the one asked for.
    #[error("the store at {path} was created with the {recorded} engine, not {requested}")]
    EngineMismatch {
        path: PathBuf,
        recorded: String,
        requested: String,
    },
    /// Too little free space to write safely; nothing was written.
    #[error("no space left on the disk of {path}: {available} bytes free, {needed} needed")]
    DiskFull {
        path: PathBuf,
        available: u64,
        needed: u64,
    },
    #[error("storage engine error: {0}")]
    Engine(String),
}

impl KvError {
    /// Whether the error is the disk running out of space (the write failed; nothing written).
    pub fn is_disk_full(&self) -> bool {
        if matches!(self, KvError::DiskFull { .. }) {
            return true;
        }
        let text = self.to_string();
        text.contains("No space left") || text.contains("os error 28")
    }
}

impl From<sled::Error> for KvError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, .. } => KvError::Corrupt {
                path: PathBuf::new(),
                reason: format!("sled found corruption at {at:?}"),
            },
            other => KvError::Engine(other.to_string()),
        }
    }
}

/// Key-value pairs as a prefix scan returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One write in an atomic batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// A key-value engine: ordered byte keys, atomic batches, durable flush.
pub trait Kv: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError>;
    /// Applies all of `ops` or none of them, even across a crash.
    fn batch(&self, ops: Vec<Op>) -> Result<(), KvError>;
    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, KvError>;
    /// At most `limit` entries whose key starts with `prefix` and is not before `from`, in key
    /// order: a cursor over a long prefix (the oversight changes feed) without reading it all.
    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, KvError>;
    /// Returns once every write made before the call is durable.
    fn flush(&self) -> Result<(), KvError>;
    /// Bytes the store takes on disk.
    fn size_on_disk(&self) -> Result<u64, KvError>;
}

/// sled's page cache cap. A school's term of documents is a few hundred KiB, so 8 MiB keeps a
/// school's working set cached; on the servers the operating system's file cache does the rest,
/// and the process stays small (the 20 MB per school-term budget counts this cache).
pub const SLED_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// How long [`SledKv::open`] retries a lock held by this process's just-closed store.
pub const RELOCK_WAIT_MS: u64 = 1_000;

/// Free space [`SledKv`] requires before it writes. sled 0.34 leaves a store it cannot reopen
/// when a write runs out of space (the disk-full torture test found it), so sled writes are
/// refused while less than this is free: two of sled's 512 KiB segments, the most one small
/// batch can make it allocate. A guard, not a guarantee: another program may fill the disk
/// between the check and the write (redb needs no guard: its failed commit changes nothing).
pub const SLED_SPACE_RESERVE_BYTES: u64 = 1024 * 1024;

/// The sled 0.34 engine.
pub struct SledKv {
    db: sled::Db,
    dir: PathBuf,
}

impl SledKv {
    /// Opens (or creates) the store in `dir`, mapping sled's lock failure to [`KvError::Locked`].
    /// sled releases its file lock from a background thread shortly after the last handle is
    /// dropped, so a reopen in the same process retries for up to [`RELOCK_WAIT_MS`].
    pub fn open(dir: &Path) -> Result<SledKv, KvError> {
        let started = std::time::Instant::now();
        loop {
            match SledKv::open_once(dir) {
                Err(KvError::Locked { .. })
                    if started.elapsed().as_millis() < u128::from(RELOCK_WAIT_MS) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(dir: &Path) -> Result<SledKv, KvError> {
        // sled writes while it opens (recovery, a fresh segment): on a full disk that is what
        // damages the store, so the space check comes first here too.
        if let Ok(available) = fs2::available_space(dir) {
            if available < SLED_SPACE_RESERVE_BYTES {
                return Err(KvError::DiskFull {
                    path: dir.to_owned(),
                    available,
                    needed: SLED_SPACE_RESERVE_BYTES,
                });
            }
        }
        // sled may panic on a damaged file: report it as damage, not as a crash.
        let opened = std::panic::catch_unwind(|| {
            sled::Config::new()
                .path(dir)
                .cache_capacity(SLED_CACHE_BYTES)
                .open()
        })
        .map_err(|_| KvError::Corrupt {
            path: dir.to_owned(),
            reason: "the engine panicked while opening the store".to_owned(),
        })?;
        let db = opened.map_err(|e| match e {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                KvError::Locked {
                    path: dir.to_owned(),
                }
            }
            other => match KvError::from(other) {
                KvError::Corrupt { reason, .. } => KvError::Corrupt {
                    path: dir.to_owned(),
                    reason,
                },
                other => other,
            },
        })?;
        Ok(SledKv {
            db,
            dir: dir.to_owned(),
        })
    }
}

impl SledKv {
    /// Refuses a write while less than [`SLED_SPACE_RESERVE_BYTES`] are free.
    fn check_space(&self) -> Result<(), KvError> {
        match fs2::available_space(&self.dir) {
            Ok(available) if available < SLED_SPACE_RESERVE_BYTES => Err(KvError::DiskFull {
                path: self.dir.clone(),
                available,
                needed: SLED_SPACE_RESERVE_BYTES,
            }),
            // A file system that cannot say is not refused.
            _ => Ok(()),
        }
    }
}

impl Kv for SledKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.check_space()?;
        self.db.insert(key, value)?;
        Ok(())
    }

    fn batch(&self, ops: Vec<Op>) -> Result<(), KvError> {
        self.check_space()?;
        let mut batch = sled::Batch::default();
        for op in ops {
            match op {
                Op::Put(k, v) => batch.insert(k, v),
                Op::Delete(k) => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, KvError> {
        self.db
            .scan_prefix(prefix)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(KvError::from)
            })
            .collect()
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, KvError> {
        let start = if from < prefix { prefix } else { from };
        self.db
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
            .take(limit)
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(KvError::from)
            })
            .collect()
    }

    fn flush(&self) -> Result<(), KvError> {
        self.db.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, KvError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// An in-memory engine: for simulations that run hundreds of schools in one process. Not
/// durable (`flush` does nothing): never the engine of a real agent or server.
#[derive(Default)]
pub struct MemKv {
    map: std::sync::Mutex<std::collections::BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemKv {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        // Nothing that holds the lock can panic half-way (inserts and removes only), so a
        // poisoned map is still consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.map().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.map().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn batch(&self, ops: Vec<Op>) -> Result<(), KvError> {
        let mut map = self.map();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    map.insert(k, v);
                }
                Op::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, KvError> {
        Ok(self
            .map()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, KvError> {
        let start = if from < prefix { prefix } else { from };
        Ok(self
            .map()
            .range(start.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), KvError> {
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, KvError> {
        Ok(self
            .map()
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_scan_and_lock() {
        let dir = tempfile::tempdir().unwrap();
        let sled = SledKv::open(&dir.path().join("sled")).unwrap();
        let redb = crate::kv_redb::RedbKv::open(&dir.path().join("redb"), true).unwrap();
        for kv in [&sled as &dyn Kv, &redb, &MemKv::default()] {
            check_engine(kv);
        }
    }

    fn check_engine(kv: &dyn Kv) {
        kv.put(b"a/1", b"x").unwrap();
        kv.batch(vec![
            Op::Put(b"a/2".to_vec(), b"y".to_vec()),
            Op::Put(b"b/1".to_vec(), b"z".to_vec()),
            Op::Delete(b"a/1".to_vec()),
        ])
        .unwrap();
        kv.flush().unwrap();
        let a: Vec<_> = kv.scan_prefix(b"a/").unwrap();
        assert_eq!(a, vec![(b"a/2".to_vec(), b"y".to_vec())]);
        assert_eq!(kv.get(b"b/1").unwrap(), Some(b"z".to_vec()));
        assert!(kv.size_on_disk().unwrap() > 0);
    }
}
