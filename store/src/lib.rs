//! Durable storage shared by the school agent, the county relay and the city server.
//!
//! [`kv`] is the narrow engine trait (get, put, atomic batch, prefix scan, flush) with sled as its
//! engine; [`docs`] keeps Automerge documents on it as a snapshot plus changes keyed by hash.
//! This crate knows the document layout only through `schoolsync-protocol`; it does no network IO.

pub mod docs;
pub mod kv;

pub use docs::{DocStore, LoadedDoc, StoreError};
pub use kv::{Kv, KvError, Op, SledKv};
