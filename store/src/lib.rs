//! Durable storage shared by the school agent, the county relay and the city server.
//!
//! [`kv`] is the narrow engine trait (get, put, atomic batch, prefix scan, flush) with sled as one
//! engine and [`kv_redb`] the other; [`engine`] records and picks a store's engine; [`docs`] keeps
//! Automerge documents on it as a snapshot plus changes keyed by hash. [`secret`] writes
//! owner-only files for credentials and keys.
//! [`replica`] is the disk side of syncing towards an upstream and [`upstream`] its HTTPS side.
//! The sync logic itself is sans-IO, in `schoolsync_protocol::sync`.

pub mod docs;
pub mod engine;
pub mod kv;
pub mod kv_redb;
pub mod replica;
pub mod salvage;
pub mod secret;
pub mod upstream;

pub use docs::{DocStore, LoadedDoc, StoreError};
pub use engine::{Engine, DEFAULT_ENGINE};
pub use kv::{Kv, KvError, MemKv, Op, SledKv};
pub use kv_redb::RedbKv;
