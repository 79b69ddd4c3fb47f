//! A full disk, on both engines: the school's data directory on a small tmpfs, filled up while
//! the clerk keeps recording. The write that finds no space fails with the store exit code (6)
//! and a message saying the disk is full; nothing acknowledged is lost; once space is freed the
//! store opens and takes records again.
//!
//! Needs `SCHOOLSYNC_TMPFS_DIR`: a directory on a small tmpfs (CI mounts one; see `.ci/run`).
//! Unset, the test says it did not run and passes; set but unusable, it fails.

use std::io::Write;
use std::path::PathBuf;

use crate::harness::*;
use crate::torture::ENGINES;

/// Records tried before giving up on filling the disk (each is a few hundred bytes; the disk is
/// filled first, so the engine's preallocated room is all there is).
const RECORDS_MAX: usize = 2_000;

fn tmpfs_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SCHOOLSYNC_TMPFS_DIR")?);
    assert!(
        dir.is_dir(),
        "SCHOOLSYNC_TMPFS_DIR={} is not a directory",
        dir.display()
    );
    Some(dir)
}

/// The most the test writes to fill the disk: `SCHOOLSYNC_TMPFS_DIR` must be a small file system
/// (CI's is 2 MiB), never a real disk the test would fill for everyone.
const FILL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Writes zeros into `path` until the disk is full; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    let mut written = 0;
    loop {
        if written > FILL_BYTES_MAX {
            drop(file);
            let _ = std::fs::remove_file(path);
            panic!("SCHOOLSYNC_TMPFS_DIR holds more than {FILL_BYTES_MAX} bytes free: use a small tmpfs");
        }
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filling the tmpfs: {e}");
                break;
            }
        }
    }
    let _ = file.sync_all();
    written
}

/// 1. A school on a small tmpfs; 2. the disk is filled; 3. the clerk records until a write fails:
///    exit 6, "disk is full"; 4. space is freed: every acknowledged record is there and a new
///    one is saved.
#[test]
fn torture_disk_full() {
    let Some(root) = tmpfs_dir() else {
        eprintln!(
            "torture_disk_full: not run (set SCHOOLSYNC_TMPFS_DIR to a directory on a small tmpfs)"
        );
        return;
    };
    for engine in ENGINES {
        match disk_full_on(&root, engine) {
            Ok(()) => eprintln!("disk-full: engine={engine} after space was freed: every acknowledged record present, new records saved"),
            // Without its free-space guard (`SLED_SPACE_RESERVE_BYTES`), sled 0.34 failed here:
            // opened on a full disk, it left a store it could not reopen.
            Err(e) => panic!("{engine}: {e}"),
        }
    }
}

fn disk_full_on(root: &std::path::Path, engine: &str) -> Result<(), String> {
    let school = School {
        dir: tempfile::tempdir_in(root).unwrap(),
    };
    school.file("agent.toml", format!("engine = \"{engine}\"\n").as_bytes());
    school
        .agent(&[
            "init",
            "--school",
            SCHOOL,
            "--county",
            COUNTY,
            "--name",
            "测试学校",
        ])
        .ok();
    let path = school.file("classes.csv", classes_csv(20).as_bytes());
    school
        .agent(&["import", "classes", path.to_str().unwrap()])
        .ok();
    let filler = root.join(format!("filler-{engine}"));
    let filled = fill(&filler);
    let dates: Vec<String> = school_days("2026-09-01", 100)
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut acknowledged = Vec::new();
    let mut refused = None;
    'outer: for date in &dates {
        for class in 1..=20 {
            if acknowledged.len() >= RECORDS_MAX {
                break 'outer;
            }
            let class = format!("3-{class}");
            let run = school.agent(&[
                "attendance",
                "record",
                "--date",
                date,
                "--class",
                &class,
                "--expected",
                "45",
                "--present",
                "45",
            ]);
            if run.code == 0 {
                acknowledged.push((date.clone(), class));
            } else {
                refused = Some(run);
                break 'outer;
            }
        }
    }
    let refused = refused.unwrap_or_else(|| {
        panic!("{engine}: {RECORDS_MAX} records fit on a full disk (filler {filled} bytes)")
    });
    eprintln!(
        "disk-full: engine={engine} filler={filled} bytes, {} records saved before the refusal; exit {}: {}",
        acknowledged.len(),
        refused.code,
        refused.stderr.trim()
    );
    assert_eq!(refused.code, 6, "{engine}: {refused:?}");
    assert!(
        refused.stderr.contains("disk is full"),
        "{engine}: {}",
        refused.stderr
    );
    // Space comes back: the store opens, holds every acknowledged record, and takes new ones.
    std::fs::remove_file(&filler).unwrap();
    let list = school.agent(&["list"]);
    if list.code != 0 {
        return Err(format!(
            "the store does not open (exit {}): {}",
            list.code,
            list.stderr.trim()
        ));
    }
    let mut by_date: std::collections::BTreeMap<&str, usize> = Default::default();
    for (date, _) in &acknowledged {
        *by_date.entry(date.as_str()).or_default() += 1;
    }
    for (date, n) in by_date {
        let got = school.attendance_on(date).len();
        assert!(
            got >= n,
            "{engine}: {date}: {got} of {n} acknowledged records"
        );
    }
    school
        .agent(&[
            "attendance",
            "record",
            "--date",
            "2026-12-01",
            "--class",
            "3-1",
            "--expected",
            "45",
            "--present",
            "45",
        ])
        .ok();
    assert_eq!(school.attendance_on("2026-12-01").len(), 1);
    Ok(())
}
