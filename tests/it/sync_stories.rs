//! Sync stories: school agents (real processes) → county relay → city (in-process, real TLS).

use crate::cluster::Cluster;
use crate::harness::*;
use crate::proxy::{Faults, Proxy};

const MONTH: &str = "2113000001/2026-11";

fn record(school: &School, date: &str, class: &str, present: &str) {
    let sick = (45 - present.parse::<i64>().unwrap()).to_string();
    school
        .agent(&[
            "attendance",
            "record",
            "--date",
            date,
            "--class",
            class,
            "--expected",
            "45",
            "--present",
            present,
            "--sick",
            &sick,
        ])
        .ok();
}

/// 1. A day is recorded offline (no upstream answers: exit 8, a clear reason, nothing lost);
/// 2. the county relay comes up: `sync` sends it in one go;
/// 3. the relay forwards it to the city on its own.
#[test]
fn a_day_recorded_offline_then_synced() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let relay_url = cluster.relay_url(relay);
    cluster.stop_relay(relay);
    let school = cluster.school(SCHOOL, COUNTY, 3, &[relay_url]);
    for class in ["3-1", "3-2", "3-3"] {
        record(&school, "2026-11-03", class, "44");
    }
    let offline = school.agent(&["sync"]);
    assert_eq!(offline.code, 8, "{offline:?}");
    assert!(
        offline.stderr.contains("did not answer"),
        "{}",
        offline.stderr
    );
    let status = school.agent(&["status", "--json"]).ok().json();
    assert!(status["upstreams"][0]["last_error_en"]
        .as_str()
        .unwrap()
        .contains("did not answer"));
    assert!(
        status["upstreams"][0]["unconfirmed_changes"]
            .as_u64()
            .unwrap()
            > 0
    );

    cluster.restart_relay(relay);
    let synced = school.agent(&["sync", "--json"]).ok().json();
    assert_eq!(synced["summary"]["rounds"], 1, "{synced}");
    assert_eq!(cluster.attendance_at(Some(relay), MONTH), 3);
    cluster.wait_until("the city has the day", || {
        cluster.attendance_at(None, MONTH) == 3
    });
    let status = school.agent(&["status", "--json"]).ok().json();
    assert_eq!(status["upstreams"][0]["unconfirmed_changes"], 0);
    assert!(status["upstreams"][0]["last_error_en"].is_null());

    // 4. A sync with nothing new is one round trip of a few hundred bytes.
    let idle = school.agent(&["sync", "--json"]).ok().json();
    assert_eq!(idle["summary"]["rounds"], 1);
    assert!(
        idle["summary"]["bytes_up"].as_u64().unwrap() < 200,
        "{idle}"
    );
    assert!(
        idle["summary"]["bytes_down"].as_u64().unwrap() < 200,
        "{idle}"
    );
}

/// 1. The relay is down: the agent falls back to the city;
/// 2. the relay comes back: the agent syncs with it again and everything converges everywhere.
#[test]
fn relay_down_then_up() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let school = cluster.school(
        SCHOOL,
        COUNTY,
        2,
        &[cluster.relay_url(relay), cluster.city_url()],
    );
    cluster.stop_relay(relay);
    record(&school, "2026-11-03", "3-1", "45");
    let via_city = school.agent(&["sync", "--json"]).ok().json();
    assert_eq!(via_city["upstream"], cluster.city_url());
    assert_eq!(cluster.attendance_at(None, MONTH), 1);

    cluster.restart_relay(relay);
    record(&school, "2026-11-04", "3-2", "43");
    let via_relay = school.agent(&["sync", "--json"]).ok().json();
    assert_eq!(via_relay["upstream"], cluster.relay_url(relay));
    assert_eq!(cluster.attendance_at(Some(relay), MONTH), 2);
    cluster.wait_until("the city has both days", || {
        cluster.attendance_at(None, MONTH) == 2
    });
}

/// 1. The city is down for a "day"; 2. the school keeps syncing with the relay, which answers;
/// 3. the city comes back and the relay catches it up without the school doing anything.
#[test]
fn city_down_while_schools_sync_to_the_relay() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let school = cluster.school(SCHOOL, COUNTY, 3, &[cluster.relay_url(relay)]);
    cluster.stop_city();
    for (day, class) in [
        ("2026-11-03", "3-1"),
        ("2026-11-04", "3-2"),
        ("2026-11-05", "3-3"),
    ] {
        record(&school, day, class, "44");
        school.agent(&["sync"]).ok();
    }
    assert_eq!(cluster.attendance_at(Some(relay), MONTH), 3);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(cluster
        .relay(relay)
        .forward_status
        .lock()
        .unwrap()
        .last_error
        .is_some());
    cluster.restart_city();
    cluster.wait_until("the city caught up", || {
        cluster.attendance_at(None, MONTH) == 3
    });
}

/// 1. Two PCs at one school record offline: different classes, and one record differently;
/// 2. both sync through the relay until they hold the same heads;
/// 3. every record is on both, and the record edited on both shows as a conflict with both values.
#[test]
fn two_pcs_at_one_school_converge_and_show_conflicts() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let urls = [cluster.relay_url(relay)];
    let pc1 = cluster.school(SCHOOL, COUNTY, 3, &urls);
    let pc2 = cluster.school(SCHOOL, COUNTY, 3, &urls);
    record(&pc1, "2026-11-03", "3-1", "45");
    record(&pc2, "2026-11-03", "3-2", "44");
    record(&pc1, "2026-11-03", "3-3", "43");
    record(&pc2, "2026-11-03", "3-3", "42");
    for pc in [&pc1, &pc2, &pc1] {
        pc.agent(&["sync"]).ok();
    }
    let report1 = pc1
        .agent(&["report", "--date", "2026-11-03", "--json"])
        .ok()
        .json();
    let report2 = pc2
        .agent(&["report", "--date", "2026-11-03", "--json"])
        .ok()
        .json();
    assert_eq!(report1, report2, "both PCs show the same day");
    assert_eq!(pc1.attendance_on("2026-11-03").len(), 3);
    let conflicts = report1[2]["conflicts"].as_array().unwrap();
    assert_eq!(report1[2]["class"]["class"], "3-3");
    assert!(!conflicts.is_empty(), "{report1}");
    let values: Vec<String> = conflicts
        .iter()
        .flat_map(|c| {
            c["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string())
        })
        .collect();
    assert!(
        values.iter().any(|v| v.contains("43")) && values.iter().any(|v| v.contains("42")),
        "{values:?}"
    );
    let text = pc2.agent(&["report", "--date", "2026-11-03"]).ok().stdout;
    assert!(
        text.contains("conflict (edited on two computers; both kept)"),
        "{text}"
    );
    assert!(
        pc1.agent(&["status", "--json"]).ok().json()["conflicts"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// 1. A school's day reaches the city; 2. the city writes feedback on it;
/// 3. the feedback travels down through the relay and shows in the school's report.
#[test]
fn city_feedback_reaches_the_school() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let school = cluster.school(SCHOOL, COUNTY, 1, &[cluster.relay_url(relay)]);
    record(&school, "2026-11-03", "3-1", "40");
    school.agent(&["sync"]).ok();
    cluster.wait_until("the city has the day", || {
        cluster.attendance_at(None, MONTH) == 1
    });
    let city = cluster.city.running.as_ref().unwrap();
    assert!(city
        .node
        .put_feedback(
            &MONTH.parse().unwrap(),
            "2026-11-03/3-1",
            "请核实5名病假学生情况",
            1_790_000_000_000
        )
        .unwrap());
    cluster.wait_until("the feedback reached the school", || {
        school.agent(&["sync"]).ok();
        school
            .agent(&["report", "--date", "2026-11-03", "--json"])
            .ok()
            .json()[0]["feedback"]["note"]
            == "请核实5名病假学生情况"
    });
}

/// A month of history through a link that is cut every 2 seconds and capped at 8 KiB/s:
/// 1. the school syncs once on a good link; 2. it imports four weeks of all three records, week
///    by week (many changes, several 64 KiB pages); 3. it syncs through the bad link, retrying as a
///    clerk (or `run`) would: the link is cut mid-sync, every page the relay committed is kept,
///    progress never goes backwards, and the whole month arrives.
#[test]
fn a_month_through_a_cut_and_capped_link() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let proxy = Proxy::start(cluster.relays[relay].addr, Faults::default());
    let school = cluster.school(SCHOOL, COUNTY, 30, &[format!("https://{}", proxy.addr())]);
    record(&school, "2026-09-01", "3-1", "45");
    school.agent(&["sync"]).ok();
    let days = school_days("2026-09-01", 20);
    for week in days.chunks(5) {
        for (kind, csv) in [
            ("attendance", attendance_csv(30, week)),
            ("homework", homework_csv(30, week)),
            ("afterschool", afterschool_csv(30, week)),
        ] {
            let path = school.file(&format!("{kind}.csv"), csv.as_bytes());
            school.agent(&["import", kind, path.to_str().unwrap()]).ok();
        }
    }
    proxy.set_faults(Faults {
        cut_after: Some(std::time::Duration::from_secs(2)),
        bytes_per_sec: Some(8 * 1024),
        ..Faults::default()
    });
    let months = ["2113000001/2026-09"];
    let held = |c: &Cluster| {
        months
            .iter()
            .map(|m| c.attendance_at(Some(relay), m))
            .sum::<usize>()
    };
    let mut progress = Vec::new();
    for attempt in 0..40 {
        let run = school.agent(&["sync", "--json"]);
        let now = held(&cluster);
        if let Some(&last) = progress.last() {
            assert!(
                now >= last,
                "progress went backwards: {progress:?} then {now}"
            );
        }
        progress.push(now);
        if run.code == 0 {
            eprintln!(
                "month synced after {} attempts; relay held {progress:?}; proxy {:?}",
                attempt + 1,
                proxy.stats()
            );
            break;
        }
        assert_eq!(run.code, 8, "{run:?}");
    }
    assert_eq!(
        held(&cluster),
        30 * days.len(),
        "the whole month arrived: {progress:?}"
    );
    assert!(
        proxy.stats().cut > 0,
        "the link was never cut: the story did not happen"
    );
    cluster.wait_until("the city has the month", || {
        months
            .iter()
            .map(|m| cluster.attendance_at(None, m))
            .sum::<usize>()
            == 30 * days.len()
    });
}

/// 1. A school pushes a day through a slow link; 2. the relay commits it, and the agent is killed
///    (SIGKILL) before the response arrives; 3. the next sync sends nothing again (it probes
///    first), and the relay holds every record exactly once.
#[test]
fn a_response_lost_after_the_upstream_committed() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let proxy = Proxy::start(
        cluster.relays[relay].addr,
        Faults {
            delay: Some(std::time::Duration::from_millis(400)),
            ..Faults::default()
        },
    );
    let school = cluster.school(
        SCHOOL,
        COUNTY,
        3,
        &[
            format!("https://{}", proxy.addr()),
            cluster.relay_url(relay),
        ],
    );
    for class in ["3-1", "3-2", "3-3"] {
        record(&school, "2026-11-03", class, "44");
    }
    let mut child = school.command(&["sync"]).spawn().unwrap();
    cluster.wait_until("the relay committed the day", || {
        cluster.attendance_at(Some(relay), MONTH) == 3
    });
    child.kill().unwrap(); // The response is still crawling through the proxy.
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the agent finished before it was killed: the story did not happen"
    );
    let changes_at_relay = |c: &Cluster| {
        let id = MONTH.parse().unwrap();
        c.relay(relay)
            .node
            .store
            .load(&id)
            .unwrap()
            .doc
            .get_changes(&[])
            .len()
    };
    let before = changes_at_relay(&cluster);
    proxy.set_faults(Faults::default());
    let again = school.agent(&["sync", "--json"]).ok().json();
    assert_eq!(again["summary"]["changes_up"], 0, "nothing resent: {again}");
    assert_eq!(changes_at_relay(&cluster), before, "no duplicate change");
    assert_eq!(cluster.attendance_at(Some(relay), MONTH), 3, "no loss");
    assert_eq!(
        school.agent(&["status", "--json"]).ok().json()["upstreams"][0]["unconfirmed_changes"],
        0
    );
}

/// `run` keeps the school in sync without the clerk asking: 1. it starts and syncs; 2. the clerk
/// records while it runs (the command waits out a round if it meets one); 3. the record reaches
/// the relay on its own.
#[test]
fn the_running_agent_syncs_soon_after_a_change() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let school = cluster.school(SCHOOL, COUNTY, 2, &[cluster.relay_url(relay)]);
    record(&school, "2026-11-03", "3-1", "45");
    let mut run = school
        .command(&["run", "--interval-secs", "3600", "--no-desk"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    cluster.wait_until("run synced the first record", || {
        cluster.attendance_at(Some(relay), MONTH) == 1
    });
    for class in ["3-1", "3-2"] {
        record(&school, "2026-11-04", class, "44");
    }
    cluster.wait_until("run synced the new records", || {
        cluster.attendance_at(Some(relay), MONTH) == 3
    });
    run.kill().unwrap();
    let _ = run.wait();
    school.agent(&["status"]).ok();
}
