//! Crash stories: a real agent process killed with SIGKILL in the middle of an import and of a
//! record, then the store reopened. Every acknowledged record is there; no import is half written.
//!
//! `SCHOOLSYNC_CRASH_TRIALS` sets how many kills each test makes (default a few, for CI); the
//! reliability benchmark runs hundreds.

use std::time::{Duration, Instant};

use crate::harness::*;

fn trials() -> usize {
    std::env::var("SCHOOLSYNC_CRASH_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(4)
}

/// A small deterministic generator, seeded from the clock and printed, so a failure can be re-run.
pub struct Lcg(u64);

impl Lcg {
    pub fn seeded() -> Lcg {
        let seed = std::env::var("SCHOOLSYNC_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("crash seed: {seed} (set SCHOOLSYNC_CRASH_SEED to repeat)");
        Lcg(seed)
    }

    pub fn new(seed: u64) -> Lcg {
        Lcg(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Kills `child` after `delay` unless it finished; returns its exit code if it finished.
pub fn kill_after(mut child: std::process::Child, delay: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < delay {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill(); // SIGKILL on Unix.
    let status = child.wait().unwrap();
    // It may have finished between the last poll and the kill.
    status.code()
}

/// 1. An import of a whole term is killed at a random moment: afterwards the store opens and
///    holds either the whole file or none of it.
#[test]
fn import_killed_is_all_or_nothing() {
    let school = School::with_classes(30);
    let days = school_days("2026-09-01", 80);
    let rows = 30 * days.len() as u64;
    let path = school.file("term.csv", attendance_csv(30, &days).as_bytes());
    // How long an uninterrupted import takes here, to spread kills across it.
    let probe = School::with_classes(30);
    let probe_path = probe.file("term.csv", attendance_csv(30, &days).as_bytes());
    let start = Instant::now();
    probe
        .agent(&["import", "attendance", probe_path.to_str().unwrap()])
        .ok();
    let full_ms = start.elapsed().as_millis() as u64;

    let mut rng = Lcg::seeded();
    let mut outcomes = Vec::new();
    for _ in 0..trials() {
        let child = school
            .command(&["import", "attendance", path.to_str().unwrap()])
            .spawn()
            .unwrap();
        let code = kill_after(child, Duration::from_millis(rng.below(full_ms + 1)));
        let (attendance, _, _) = school.counts();
        assert!(
            attendance == 0 || attendance == rows,
            "half-written import: {attendance} of {rows}"
        );
        if code == Some(0) {
            assert_eq!(attendance, rows, "acknowledged import missing");
        }
        outcomes.push((code, attendance));
        if attendance == rows {
            break; // Later imports would change nothing.
        }
    }
    eprintln!("import kills (exit code, rows present): {outcomes:?}");
    // Finally an uninterrupted import completes on the store the kills left behind.
    school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    assert_eq!(school.counts().0, rows);
}

/// 2. Single records are entered one after another while processes are killed at random moments:
///    every record whose command reported success is present, and the store opens every time.
#[test]
fn record_killed_keeps_every_acknowledged_record() {
    let school = School::with_classes(3);
    let days = school_days("2026-11-02", 20);
    // How long one record takes here, to aim kills inside it.
    let start = Instant::now();
    school
        .agent(&[
            "attendance",
            "record",
            "--date",
            "2026-10-30",
            "--class",
            "3-2",
            "--expected",
            "45",
            "--present",
            "45",
        ])
        .ok();
    let full_ms = start.elapsed().as_millis() as u64;
    let mut rng = Lcg::seeded();
    let mut acknowledged = Vec::new();
    let mut killed = 0;
    for (i, day) in days.iter().enumerate().take(trials() * 3) {
        let date = day.to_string();
        let args = [
            "attendance",
            "record",
            "--date",
            &date,
            "--class",
            "3-1",
            "--expected",
            "45",
            "--present",
            "44",
            "--sick",
            "1",
        ];
        let child = school.command(&args).spawn().unwrap();
        // Every third record is left alone; the rest are killed somewhere in their run.
        let delay = if i % 3 == 2 {
            Duration::from_secs(30)
        } else {
            Duration::from_millis(rng.below(full_ms + 1))
        };
        match kill_after(child, delay) {
            Some(0) => acknowledged.push(date),
            _ => killed += 1,
        }
        // The store opens after every kill.
        school.agent(&["status"]).ok();
    }
    eprintln!(
        "records ({full_ms} ms each): {} acknowledged, {killed} killed",
        acknowledged.len()
    );
    assert!(!acknowledged.is_empty());
    for date in &acknowledged {
        let records = school.attendance_on(date);
        assert_eq!(records.len(), 1, "acknowledged record of {date} missing");
        assert_eq!(records[0]["present"], 44);
    }
}
