//! The one integration-test binary: real `schoolsync-agent` processes on real stores on disk.
//!
//! Modules read as stories; `harness` starts processes and makes data.

// Tests fail by panicking; `unwrap` is how they say "this must not fail".
#![allow(clippy::unwrap_used)]

mod browser;
mod cluster;
mod harness;

mod city;
mod clerk_day;
mod clock_skew;
mod convergence;
mod corruption;
mod crash;
mod desk;
mod disk_full;
mod fuzz;
mod fuzz_run;
mod import_csv;
mod net_faults;
mod oversight;
mod proxy;
mod security;
mod sync_stories;
mod torture;
