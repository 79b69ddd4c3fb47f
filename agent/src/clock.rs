//! The agent's clock: wall-clock milliseconds for change timestamps and sync status.
//!
//! Clerks' dates never come from here (a record carries the date the clerk typed), so an agent
//! whose clock is days off still keeps the right dates. [`skew`] shifts the clock for the test
//! binary that proves it (`tests/bin/agent.rs`); the real `schoolsync-agent` never calls it.

use std::sync::atomic::{AtomicI64, Ordering};

/// Added to the system clock: zero except in the clock-skew tests.
static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch, as this agent sees them.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + SKEW_MS.load(Ordering::Relaxed)
}

/// Shifts this process's clock by `ms` (tests only).
pub fn skew(ms: i64) {
    SKEW_MS.store(ms, Ordering::Relaxed);
}
