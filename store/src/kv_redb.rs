//! The redb engine behind [`Kv`]: one file (`store.redb`) in the store directory, one table of
//! byte keys to byte values.
//!
//! Every `batch` and `put` is one write transaction committed with redb's default immediate
//! durability and two-phase commit, so a commit that returned is on disk and a crash at any
//! moment leaves the last committed state; `flush` has nothing left to do. redb checksums its
//! pages; with [`RedbKv::open`]'s `verify` the whole file is checked when opened, so a damaged
//! store is refused ([`KvError::Corrupt`]) instead of half-read. This module knows nothing of
//! documents; for that see `docs`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, TableDefinition};

use crate::kv::{Entries, Kv, KvError, Op};

/// The file redb keeps in the store directory.
pub const REDB_FILE: &str = "store.redb";

/// redb's page cache cap, the same budget as sled's ([`crate::kv::SLED_CACHE_BYTES`]): a school's
/// term is a few hundred KiB; servers lean on the operating system's file cache.
pub const REDB_CACHE_BYTES: usize = 8 * 1024 * 1024;

/// The one table: every key of the store layout (see `docs`) lives in it.
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

/// The redb 4 engine.
pub struct RedbKv {
    db: redb::Database,
    path: PathBuf,
}

fn engine<E: std::fmt::Display>(e: E) -> KvError {
    KvError::Engine(e.to_string())
}

/// Storage errors, telling a damaged file apart from other failures.
fn storage(path: &Path, e: redb::StorageError) -> KvError {
    match e {
        redb::StorageError::Corrupted(reason) => KvError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        // A file shorter than its own header says: truncated (the corruption torture found
        // this reported as a bare I/O error, without the advice to repair).
        redb::StorageError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            KvError::Corrupt {
                path: path.to_owned(),
                reason: format!("the file is truncated ({io})"),
            }
        }
        other => engine(other),
    }
}

impl RedbKv {
    /// Opens (or creates) the store in `dir`. Another process holding it is
    /// [`KvError::Locked`]. With `verify`, every page checksum is checked first (the whole file
    /// is read: cheap for a school's store of a few MiB, slow for a city's).
    pub fn open(dir: &Path, verify: bool) -> Result<RedbKv, KvError> {
        std::fs::create_dir_all(dir).map_err(engine)?;
        let path = dir.join(REDB_FILE);
        let mut builder = redb::Builder::new();
        builder
            .set_cache_size(REDB_CACHE_BYTES)
            .set_check_integrity_on_open(verify);
        // redb may panic on a file damaged in ways its checks do not cover: report it as damage.
        let opened = catch_unwind(AssertUnwindSafe(|| builder.create(&path))).map_err(|_| {
            KvError::Corrupt {
                path: path.clone(),
                reason: "the engine panicked while opening the file".to_owned(),
            }
        })?;
        let db = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => KvError::Locked {
                path: dir.to_owned(),
            },
            redb::DatabaseError::Storage(s) => storage(&path, s),
            other => engine(other),
        })?;
        let kv = RedbKv { db, path };
        // Create the table up front so that readers never meet a missing one.
        kv.write(|_| Ok(()))?;
        Ok(kv)
    }

    /// Runs `f` in one write transaction and commits it durably.
    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<(), redb::StorageError>,
    ) -> Result<(), KvError> {
        let guarded = catch_unwind(AssertUnwindSafe(|| -> Result<(), KvError> {
            let mut txn = self.db.begin_write().map_err(engine)?;
            txn.set_two_phase_commit(true);
            {
                let mut table = txn.open_table(TABLE).map_err(engine)?;
                f(&mut table).map_err(|e| storage(&self.path, e))?;
            }
            txn.commit().map_err(|e| match e {
                redb::CommitError::Storage(s) => storage(&self.path, s),
                other => engine(other),
            })
        }));
        guarded.unwrap_or_else(|_| Err(self.panicked()))
    }

    /// Runs `f` over the table in one read transaction.
    fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<&[u8], &[u8]>) -> Result<T, redb::StorageError>,
    ) -> Result<T, KvError> {
        let guarded = catch_unwind(AssertUnwindSafe(|| -> Result<T, KvError> {
            let txn = self.db.begin_read().map_err(engine)?;
            let table = txn.open_table(TABLE).map_err(engine)?;
            f(&table).map_err(|e| storage(&self.path, e))
        }));
        guarded.unwrap_or_else(|_| Err(self.panicked()))
    }

    fn panicked(&self) -> KvError {
        KvError::Corrupt {
            path: self.path.clone(),
            reason: "the engine panicked reading the file".to_owned(),
        }
    }
}

impl Kv for RedbKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.read(|t| Ok(t.get(key)?.map(|v| v.value().to_vec())))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), KvError> {
        self.write(|t| t.insert(key, value).map(|_| ()))
    }

    fn batch(&self, ops: Vec<Op>) -> Result<(), KvError> {
        self.write(|t| {
            for op in &ops {
                match op {
                    Op::Put(k, v) => {
                        t.insert(k.as_slice(), v.as_slice())?;
                    }
                    Op::Delete(k) => {
                        t.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, KvError> {
        self.read(|t| {
            let mut out = Vec::new();
            for item in t.range(prefix..)? {
                let (k, v) = item?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, KvError> {
        let start = if from < prefix { prefix } else { from };
        self.read(|t| {
            let mut out = Vec::new();
            for item in t.range(start..)? {
                let (k, v) = item?;
                if !k.value().starts_with(prefix) || out.len() >= limit {
                    break;
                }
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn flush(&self) -> Result<(), KvError> {
        // Every commit was durable when it returned.
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, KvError> {
        Ok(std::fs::metadata(&self.path).map_err(engine)?.len())
    }
}
