//! Clock skew: two PCs of one school whose clocks are days off in opposite directions. Records
//! keep the dates the clerks typed, both PCs sync, and a later correction wins on every replica
//! whatever the clocks say (Automerge orders edits causally, not by wall-clock time).

use crate::cluster::Cluster;
use crate::harness::*;

const MONTH: &str = "2113000001/2026-11";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn at_skew<S: AsRef<std::ffi::OsStr>>(school: &School, skew_ms: i64, args: &[S]) -> Run {
    let args: Vec<&str> = args.iter().map(|a| a.as_ref().to_str().unwrap()).collect();
    Run::from_output(
        school
            .command(&args)
            .env("SCHOOLSYNC_TEST_CLOCK_SKEW_MS", skew_ms.to_string())
            .output()
            .unwrap(),
    )
}

fn record(class: &str, present: &str) -> Vec<String> {
    let sick = (45 - present.parse::<i64>().unwrap()).to_string();
    [
        "attendance",
        "record",
        "--date",
        "2026-11-03",
        "--class",
        class,
        "--expected",
        "45",
        "--present",
        present,
        "--sick",
        &sick,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// 1. PC A's clock is five days fast, PC B's three days slow; each records 2026-11-03.
/// 2. Both sync through the relay: each sees both records, on 2026-11-03, and so does the city.
/// 3. B (slow clock) corrects A's record after seeing it; after syncing, B's correction is what
///    every replica shows, although A's edit carries the later timestamp.
#[test]
fn skewed_clocks_keep_the_clerks_dates_and_sync() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let url = [cluster.relay_url(relay)];
    let a = cluster.school(SCHOOL, COUNTY, 2, &url);
    let b = cluster.school(SCHOOL, COUNTY, 2, &url);
    let (fast, slow) = (5 * DAY_MS, -3 * DAY_MS);
    at_skew(&a, fast, &record("3-1", "44")).ok();
    at_skew(&b, slow, &record("3-2", "43")).ok();
    for (pc, skew) in [(&a, fast), (&b, slow), (&a, fast)] {
        at_skew(pc, skew, &["sync"]).ok();
    }
    for pc in [&a, &b] {
        let records = pc.attendance_on("2026-11-03");
        assert_eq!(records.len(), 2, "{records:?}");
    }
    cluster.wait_until("the city has both records", || {
        cluster.attendance_at(None, MONTH) == 2
    });
    // 3. The slow PC corrects the fast PC's record.
    at_skew(&b, slow, &record("3-1", "40")).ok();
    for (pc, skew) in [(&b, slow), (&a, fast)] {
        at_skew(pc, skew, &["sync"]).ok();
    }
    for pc in [&a, &b] {
        let records = pc.attendance_on("2026-11-03");
        let class_1: Vec<_> = records.iter().filter(|r| r["class"] == "3-1").collect();
        assert_eq!(class_1.len(), 1, "{records:?}");
        assert_eq!(class_1[0]["present"], 40, "{records:?}");
    }
}
