//! The school side of schoolsync: a clerk's records captured offline into an embedded store of
//! Automerge documents.
//!
//! Reading order: storage comes from `schoolsync-store`; [`app`] (user actions and readings) → [`import`] (CSV) → [`cli`] (arguments, output,
//! exit codes). Rules and the document layout come from `schoolsync-protocol`.
//! [`sync`] sends the documents upstream (relay first, city as fallback); `run` shares the store
//! between its sync loop and the clerk's web page ([`desk`]) through [`gate`]; [`repair`]
//! rebuilds a damaged store.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod desk;
pub mod gate;
pub mod import;
pub mod repair;
pub mod sync;
