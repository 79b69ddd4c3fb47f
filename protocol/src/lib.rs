//! The shared language of schoolsync's three tiers (school agent, county relay, city server):
//! typed ids, the three records and the school profile, the "double reduction" rules, and how all
//! of it maps onto Automerge documents.
//!
//! This crate does no IO: no disk, no network, no clock. Callers pass `now` in.
//!
//! Reading order: [`ids`] → [`records`] → [`rules`] → [`doc`] → [`sync`] → [`auth`] (credentials
//! and scope). Errors a clerk sees are in
//! [`error`]; both message languages in [`lang`].

pub mod auth;
pub mod doc;
pub mod error;
pub mod holdings;
pub mod ids;
pub mod lang;
pub mod records;
pub mod rules;
pub mod schema;
pub mod sync;

#[cfg(test)]
mod test_support;

pub use error::HardError;
pub use lang::Lang;
