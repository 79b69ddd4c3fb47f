//! Damaged stores, on both engines: bytes flipped, a block overwritten, or the file truncated,
//! then every document loaded. The damage is harmless (it hit free space), or detected (exit 6
//! with a message naming `repair`); a store that opens with records silently missing, or an
//! agent that crashes, is what this test exists to find. Detected damage is then repaired and
//! synced: the school ends with every record again.
//!
//! Trials per engine: `SCHOOLSYNC_TORTURE_TRIALS` (default a few); the seed is printed and
//! `SCHOOLSYNC_CRASH_SEED` repeats it. One `corruption:` line per engine gives the figures.

use std::path::{Path, PathBuf};

use crate::cluster::Cluster;
use crate::crash::Lcg;
use crate::harness::*;
use crate::torture::ENGINES;

fn trials() -> usize {
    std::env::var("SCHOOLSYNC_TORTURE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(6)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The engine's data file: the largest file in the store directory.
fn data_file(store: &Path) -> PathBuf {
    std::fs::read_dir(store)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path()
}

/// What one trial's damage did.
#[derive(Debug, Default)]
struct Outcomes {
    harmless: usize,
    detected: usize,
    silent_loss: usize,
    crashed: usize,
    repaired: usize,
}

/// 1. A school records ten days for four classes and syncs them to the city.
/// 2. Its store is damaged at random (three kinds of damage, in turn) and every document loaded.
/// 3. Detected damage: `repair`, then `sync`: every record is back.
#[test]
fn torture_damaged_store_is_detected_and_repaired() {
    for engine in ENGINES {
        damaged_on(engine);
    }
}

fn damaged_on(engine: &str) {
    let cluster = Cluster::start();
    let school = cluster.school_on(Some(engine), SCHOOL, COUNTY, 4, &[cluster.city_url()]);
    let days = school_days("2026-11-02", 10);
    let path = school.file("month.csv", attendance_csv(4, &days).as_bytes());
    school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    school.agent(&["sync"]).ok();
    let expected = school.counts();
    let store = school.data_dir().join("store");
    let pristine = school.data_dir().join("pristine");
    copy_dir(&store, &pristine);
    let mut rng = Lcg::seeded();
    let mut out = Outcomes::default();
    let repairs_max = 3.max(trials() / 4);
    for trial in 0..trials() * 3 {
        let _ = std::fs::remove_dir_all(&store);
        for entry in std::fs::read_dir(school.data_dir()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("store.damaged")
            {
                std::fs::remove_dir_all(p).unwrap();
            }
        }
        copy_dir(&pristine, &store);
        let file = data_file(&store);
        let mut bytes = std::fs::read(&file).unwrap();
        // Aim inside the part of the file that holds data: engines preallocate zeroed space,
        // and damage there says nothing.
        let len = bytes.iter().rposition(|b| *b != 0).map_or(1, |i| i + 1) as u64;
        let kind = trial % 3;
        match kind {
            0 => {
                let at = rng.below(len) as usize;
                bytes[at] ^= 1 << rng.below(8);
            }
            1 => {
                let at = rng.below(len) as usize;
                for b in bytes.iter_mut().skip(at).take(512) {
                    *b = rng.below(256) as u8;
                }
            }
            _ => bytes.truncate(rng.below(len) as usize),
        }
        std::fs::write(&file, &bytes).unwrap();
        let run = school.agent(&["list", "--json"]);
        match run.code {
            0 => {
                let counts = school.counts();
                if counts == expected {
                    out.harmless += 1;
                } else {
                    out.silent_loss += 1;
                    eprintln!(
                        "corruption: engine={engine} trial={trial} kind={kind}: opened with {counts:?} of {expected:?}"
                    );
                }
            }
            6 => {
                out.detected += 1;
                if out.detected == 1 {
                    eprintln!(
                        "corruption: engine={engine} first detection ({}): {}",
                        file.file_name().unwrap().to_string_lossy(),
                        run.stderr.trim()
                    );
                }
                assert!(run.stderr.contains("repair"), "{}", run.stderr);
                if out.repaired < repairs_max {
                    repair_and_sync(&school, &cluster, expected);
                    out.repaired += 1;
                }
            }
            code => {
                out.crashed += 1;
                eprintln!(
                    "corruption: engine={engine} trial={trial} kind={kind}: exit {code}: {}",
                    run.stderr
                );
            }
        }
    }
    eprintln!(
        "corruption: engine={engine} trials={} harmless={} detected={} silent_loss={} crashed={} repaired_and_resynced={}",
        trials() * 3,
        out.harmless,
        out.detected,
        out.silent_loss,
        out.crashed,
        out.repaired
    );
    if engine == "redb" {
        // The default engine must never lose records silently or crash on a damaged file.
        assert_eq!(out.silent_loss + out.crashed, 0, "{engine}: {out:?}");
    }
}

/// `repair`, then (if nothing of the school survived) `init` again, then `sync`: every record.
fn repair_and_sync(school: &School, cluster: &Cluster, expected: (u64, u64, u64)) {
    let report = school.agent(&["repair", "--json"]).ok().json();
    assert!(report["kept_aside"].is_string(), "{report}");
    if school.agent(&["status"]).code == 4 {
        let ca = cluster.certs.ca_cert.to_str().unwrap().to_owned();
        school
            .agent(&[
                "init",
                "--school",
                SCHOOL,
                "--county",
                COUNTY,
                "--name",
                "测试学校",
                "--upstream",
                &cluster.city_url(),
                "--ca",
                &ca,
            ])
            .ok();
    }
    school.agent(&["sync"]).ok();
    assert_eq!(school.counts(), expected, "after repair: {report}");
}

/// `repair --engine redb` moves a sled store to redb with every record, and the moved store then
/// refuses `--engine sled` (exit 7) with a message naming both engines.
#[test]
fn repair_moves_a_sled_store_to_redb() {
    let school = School::with_classes(3);
    // `with_classes` made the store on the default engine; start again on sled.
    std::fs::remove_dir_all(school.data_dir().join("store")).unwrap();
    school.file("agent.toml", b"engine = \"sled\"\n");
    school
        .agent(&[
            "init", "--school", SCHOOL, "--county", COUNTY, "--name", "x",
        ])
        .ok();
    let path = school.file("classes.csv", classes_csv(3).as_bytes());
    school
        .agent(&["import", "classes", path.to_str().unwrap()])
        .ok();
    let days = school_days("2026-11-02", 5);
    let path = school.file("week.csv", attendance_csv(3, &days).as_bytes());
    school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    std::fs::remove_file(school.data_dir().join("agent.toml")).unwrap();
    let before = school.counts();
    let report = school
        .agent(&["repair", "--engine", "redb", "--json"])
        .ok()
        .json();
    assert_eq!(report["engine"], "redb", "{report}");
    assert_eq!(
        std::fs::read_to_string(school.data_dir().join("store/engine")).unwrap(),
        "redb\n"
    );
    assert_eq!(school.counts(), before);
    let refused = school.agent(&["list", "--engine", "sled"]);
    assert_eq!(refused.code, 7, "{refused:?}");
    assert!(
        refused.stderr.contains("redb") && refused.stderr.contains("sled"),
        "{}",
        refused.stderr
    );
}

/// 1. A school's synced store is damaged (a bit flipped, until the agent detects it).
/// 2. `repair` is killed at a random moment, then run again to the end (any command would first
///    finish a repair cut between its renames).
/// 3. `sync`: every record is back, on both engines, after every kill.
#[test]
fn torture_repair_killed_then_rerun() {
    for engine in ENGINES {
        let cluster = Cluster::start();
        let school = cluster.school_on(Some(engine), SCHOOL, COUNTY, 4, &[cluster.city_url()]);
        let days = school_days("2026-11-02", 10);
        let path = school.file("month.csv", attendance_csv(4, &days).as_bytes());
        school
            .agent(&["import", "attendance", path.to_str().unwrap()])
            .ok();
        school.agent(&["sync"]).ok();
        let expected = school.counts();
        let store = school.data_dir().join("store");
        let pristine = school.data_dir().join("pristine");
        copy_dir(&store, &pristine);
        let mut rng = Lcg::seeded();
        // How long an uninterrupted repair takes, to spread kills over it.
        let start = std::time::Instant::now();
        school.agent(&["repair"]).ok();
        let full_ms = start.elapsed().as_millis() as u64;
        let mut killed = 0;
        for _ in 0..trials() {
            for entry in std::fs::read_dir(school.data_dir()).unwrap() {
                let p = entry.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name == "store" || name.starts_with("store.") {
                    std::fs::remove_dir_all(p).unwrap();
                }
            }
            copy_dir(&pristine, &store);
            let file = data_file(&store);
            let mut bytes = std::fs::read(&file).unwrap();
            let used = bytes.iter().rposition(|b| *b != 0).map_or(1, |i| i + 1) as u64;
            bytes.truncate(rng.below(used) as usize);
            std::fs::write(&file, &bytes).unwrap();
            let child = school
                .command(&["repair"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let delay = std::time::Duration::from_millis(rng.below(full_ms + 1));
            if crate::crash::kill_after(child, delay).is_none() {
                killed += 1;
            }
            school.agent(&["repair"]).ok();
            repair_and_sync(&school, &cluster, expected);
        }
        eprintln!(
            "corruption: engine={engine} fault=repair-killed trials={} killed={killed} failures=0",
            trials()
        );
    }
}
