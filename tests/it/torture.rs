//! Crash torture: real agent and server processes killed with SIGKILL at random moments, on both
//! storage engines. Afterwards every store opens, every acknowledged record is there, and every
//! tier converges to the same records (nothing lost, nothing duplicated).
//!
//! `SCHOOLSYNC_TORTURE_TRIALS` sets the kills per test and engine (default a few, for CI; the
//! reliability run in BENCHMARKS.md uses hundreds). The seed is printed; `SCHOOLSYNC_CRASH_SEED`
//! repeats a run. Each test prints one `torture:` line per engine and fault class with its
//! figures.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::crash::{kill_after, Lcg};
use crate::harness::*;

/// Both engines behind the store trait.
pub const ENGINES: [&str; 2] = ["sled", "redb"];

/// Classes of the tortured school.
const CLASSES: usize = 20;
/// School days from 2026-09-01 (four months): 20 classes x 80 days = 1,600 distinct class-days,
/// enough for a few hundred trials; each trial writes new ones, so none is ever rewritten.
const DAYS: usize = 80;
const MONTHS: [&str; 4] = [
    "2113000001/2026-09",
    "2113000001/2026-10",
    "2113000001/2026-11",
    "2113000001/2026-12",
];

/// Attendance records a relay (or the city) holds over the tortured months.
fn held(cluster: &Cluster, relay: Option<usize>) -> usize {
    MONTHS.iter().map(|m| cluster.attendance_at(relay, m)).sum()
}

fn trials() -> usize {
    std::env::var("SCHOOLSYNC_TORTURE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(6)
}

/// A class-day: the key of one attendance record.
type Key = (String, usize);

fn record_args(key: &Key) -> Vec<String> {
    [
        "attendance",
        "record",
        "--date",
        &key.0,
        "--class",
        &format!("3-{}", key.1),
        "--expected",
        "45",
        "--present",
        "44",
        "--sick",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn import_csv(keys: &[Key]) -> String {
    let mut out = String::from("date,class,expected,present,sick\r\n");
    for (date, class) in keys {
        out.push_str(&format!("{date},3-{class},45,44,1\r\n"));
    }
    out
}

/// Every class-day with an attendance record in `school`'s store, checking each has the values
/// the torture writes.
fn present_keys(school: &School, dates: &[String]) -> BTreeSet<Key> {
    let mut out = BTreeSet::new();
    for date in dates {
        for record in school.attendance_on(date) {
            assert_eq!(record["present"], 44, "{record}");
            let class = record["class"].as_str().unwrap();
            let n: usize = class.trim_start_matches("3-").parse().unwrap();
            out.insert((date.clone(), n));
        }
    }
    out
}

/// Figures of one fault class on one engine.
#[derive(Default, Debug)]
struct Tally {
    trials: usize,
    killed: usize,
    acknowledged: usize,
}

/// 1. A school records, imports and syncs (through its county relay) while each command is
///    killed at a random moment; after every kill the store opens and every document loads.
/// 2. At the end one uninterrupted sync: every acknowledged record is on the school PC, at the
///    relay and at the city, and the three hold the same number of records.
#[test]
fn torture_agent_killed_during_record_import_and_sync() {
    for engine in ENGINES {
        agent_killed_on(engine);
    }
}

fn agent_killed_on(engine: &str) {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let school = cluster.school_on(
        Some(engine),
        SCHOOL,
        COUNTY,
        CLASSES,
        &[cluster.relay_url(relay)],
    );
    let dates: Vec<String> = school_days("2026-09-01", DAYS)
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut keys = dates
        .iter()
        .flat_map(|d| (1..=CLASSES).map(move |c| (d.clone(), c)))
        .collect::<Vec<_>>()
        .into_iter();
    let mut rng = Lcg::seeded();
    // How long each command takes here, to spread kills over its whole run.
    let time = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let start = Instant::now();
        school.agent(&args).ok();
        start.elapsed().as_millis() as u64
    };
    let mut acknowledged: BTreeSet<Key> = BTreeSet::new();
    let first = keys.next().unwrap();
    let record_ms = time(&record_args(&first));
    acknowledged.insert(first);
    let batch: Vec<Key> = keys.by_ref().take(5).collect();
    let path = school.file("import.csv", import_csv(&batch).as_bytes());
    let import_ms = time(&[
        "import".into(),
        "attendance".into(),
        path.to_str().unwrap().into(),
    ]);
    acknowledged.extend(batch);
    let sync_ms = time(&["sync".into()]);

    let mut tallies = [Tally::default(), Tally::default(), Tally::default()];
    for trial in 0..trials() * 3 {
        let class = trial % 3;
        let (args, new_keys, full_ms) = match class {
            0 => {
                let Some(key) = keys.next() else { break };
                (record_args(&key), vec![key], record_ms)
            }
            1 => {
                let batch: Vec<Key> = keys.by_ref().take(5).collect();
                if batch.is_empty() {
                    break;
                }
                let path = school.file(
                    &format!("import-{trial}.csv"),
                    import_csv(&batch).as_bytes(),
                );
                (
                    vec![
                        "import".into(),
                        "attendance".into(),
                        path.to_str().unwrap().into(),
                    ],
                    batch,
                    import_ms,
                )
            }
            _ => (vec!["sync".into()], Vec::new(), sync_ms),
        };
        let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let child = school.command(&args_ref).spawn().unwrap();
        let delay = Duration::from_millis(rng.below(full_ms + full_ms / 5 + 1));
        let tally = &mut tallies[class];
        tally.trials += 1;
        match kill_after(child, delay) {
            Some(0) => {
                tally.acknowledged += 1;
                acknowledged.extend(new_keys);
            }
            Some(8) if class == 2 => {} // A sync may fail cleanly (the relay is busy).
            Some(code) => panic!("{engine}: {args:?} exited {code} after {delay:?}"),
            None => tally.killed += 1,
        }
        // The store opens and every document loads after every kill.
        school.counts();
    }
    // One uninterrupted sync; then every tier holds every acknowledged record.
    school.agent(&["sync"]).ok();
    let here = present_keys(&school, &dates);
    let missing: Vec<_> = acknowledged.difference(&here).collect();
    assert!(
        missing.is_empty(),
        "{engine}: acknowledged but lost: {missing:?}"
    );
    cluster.wait_until("relay and city hold the school's records", || {
        held(&cluster, Some(relay)) == here.len() && held(&cluster, None) == here.len()
    });
    for (name, t) in ["record", "import", "sync"].iter().zip(&tallies) {
        eprintln!(
            "torture: engine={engine} fault=agent-killed-during-{name} trials={} killed={} acknowledged={} failures=0",
            t.trials, t.killed, t.acknowledged
        );
    }
    eprintln!(
        "torture: engine={engine} records acknowledged={} present={} (relay and city equal)",
        acknowledged.len(),
        here.len()
    );
}

/// A relay or the city as a real process (see `tests/bin/server.rs`), killable with SIGKILL.
struct ServerProc {
    args: Vec<String>,
    engine: String,
    addr: SocketAddr,
    child: Option<Child>,
}

const SERVER: &str = env!("CARGO_BIN_EXE_server-under-test");

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl ServerProc {
    fn new(engine: &str, args: Vec<String>, addr: SocketAddr) -> ServerProc {
        let mut s = ServerProc {
            args,
            engine: engine.to_owned(),
            addr,
            child: None,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        let child = Command::new(SERVER)
            .args(&self.args)
            .env("SCHOOLSYNC_ENGINE", &self.engine)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // The port may still be held by the killed process's socket: retry.
                assert!(Instant::now() < deadline, "server exited: {status}");
                std::thread::sleep(Duration::from_millis(100));
                self.child = Some(
                    Command::new(SERVER)
                        .args(&self.args)
                        .env("SCHOOLSYNC_ENGINE", &self.engine)
                        .env("RUST_LOG", "error")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                );
            }
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn server_args(
    role: &str,
    dir: &Path,
    addr: SocketAddr,
    certs: &schoolsync_server::certs::CertFiles,
) -> Vec<String> {
    let p = |p: &PathBuf| p.to_str().unwrap().to_owned();
    vec![
        role.into(),
        "--listen".into(),
        addr.to_string(),
        "--data-dir".into(),
        dir.join(role).to_str().unwrap().into(),
        "--tls-cert".into(),
        p(&certs.server_cert),
        "--tls-key".into(),
        p(&certs.server_key),
    ]
}

/// 1. A school syncs with its relay (a real process), which forwards to the city (another);
///    while it does, the relay or the city is killed at a random moment and restarted.
/// 2. At the end: a second PC of the school that syncs only with the city, and a third that
///    syncs only with the relay, both end with exactly the first PC's records.
#[test]
fn torture_relay_and_city_killed_during_sync() {
    for engine in ENGINES {
        servers_killed_on(engine);
    }
}

fn servers_killed_on(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let certs =
        schoolsync_server::certs::generate(&dir.path().join("certs"), &["127.0.0.1".to_owned()])
            .unwrap();
    // Enrol the relay and the school before the city starts (the admin commands' direct path).
    let (relay_credential, school_credential) = {
        let city_dir = dir.path().join("city");
        let store = schoolsync_store::DocStore::open_with(
            &city_dir.join("store"),
            Some(engine.parse().unwrap()),
            false,
        )
        .unwrap();
        let authority = schoolsync_server::auth::Authority::open(&city_dir).unwrap();
        let write = |role, school: Option<&str>, name: &str| {
            let (claims, file) = authority
                .issue(
                    &store,
                    role,
                    school.map(|s| s.parse().unwrap()),
                    Some(COUNTY.parse().unwrap()),
                    0,
                )
                .unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, file.to_text(&claims)).unwrap();
            path.to_str().unwrap().to_owned()
        };
        (
            write(
                schoolsync_protocol::auth::Role::Relay,
                None,
                "relay.credential",
            ),
            write(
                schoolsync_protocol::auth::Role::School,
                Some(SCHOOL),
                "school.credential",
            ),
        )
    };
    let city_addr = free_addr();
    let relay_addr = free_addr();
    let city_url = format!("https://{city_addr}");
    let relay_url = format!("https://{relay_addr}");
    let mut city = ServerProc::new(
        engine,
        server_args("city", dir.path(), city_addr, &certs),
        city_addr,
    );
    let mut relay_args = server_args("relay", dir.path(), relay_addr, &certs);
    relay_args.extend([
        "--county".into(),
        COUNTY.into(),
        "--upstream".into(),
        city_url.clone(),
        "--ca".into(),
        certs.ca_cert.to_str().unwrap().into(),
        "--credential".into(),
        relay_credential,
        "--forward-interval-ms".into(),
        "200".into(),
    ]);
    let mut relay = ServerProc::new(engine, relay_args, relay_addr);
    let ca = certs.ca_cert.to_str().unwrap().to_owned();
    let pc = |upstream: &str| {
        let s = School::empty();
        s.file("agent.toml", format!("engine = \"{engine}\"\n").as_bytes());
        s.agent(&[
            "init",
            "--school",
            SCHOOL,
            "--county",
            COUNTY,
            "--name",
            "测试学校",
            "--upstream",
            upstream,
            "--ca",
            &ca,
            "--credential",
            &school_credential,
        ])
        .ok();
        s
    };
    let school = pc(&relay_url);
    let path = school.file("classes.csv", classes_csv(CLASSES).as_bytes());
    school
        .agent(&["import", "classes", path.to_str().unwrap()])
        .ok();
    let dates: Vec<String> = school_days("2026-09-01", DAYS)
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut keys = dates
        .iter()
        .flat_map(|d| (1..=CLASSES).map(move |c| (d.clone(), c)))
        .collect::<Vec<_>>()
        .into_iter();
    // How long a sync of a day's import takes, to aim kills inside one.
    let path = school.file(
        "probe.csv",
        import_csv(&keys.by_ref().take(8).collect::<Vec<_>>()).as_bytes(),
    );
    school
        .agent(&["import", "attendance", path.to_str().unwrap()])
        .ok();
    let start = Instant::now();
    school.agent(&["sync"]).ok();
    let sync_ms = start.elapsed().as_millis() as u64;
    let mut rng = Lcg::seeded();
    let mut tallies = [Tally::default(), Tally::default()];
    for trial in 0..trials() * 2 {
        // New records each round, as an import (one acknowledged batch).
        let batch: Vec<Key> = keys.by_ref().take(8).collect();
        if batch.is_empty() {
            break;
        }
        let path = school.file(&format!("day-{trial}.csv"), import_csv(&batch).as_bytes());
        school
            .agent(&["import", "attendance", path.to_str().unwrap()])
            .ok();
        let sync = school
            .command(&["sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let victim = trial % 2;
        std::thread::sleep(Duration::from_millis(rng.below(sync_ms + 1)));
        let server = if victim == 0 { &mut relay } else { &mut city };
        server.kill();
        let tally = &mut tallies[victim];
        tally.trials += 1;
        tally.killed += 1;
        if kill_after(sync, Duration::from_secs(60)) == Some(0) {
            tally.acknowledged += 1;
        }
        server.start();
    }
    // Converge: the school syncs until it succeeds; then the other PCs see exactly its records.
    let deadline = Instant::now() + Duration::from_secs(60);
    while school.agent(&["sync"]).code != 0 {
        assert!(
            Instant::now() < deadline,
            "{engine}: the school never synced again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let here = present_keys(&school, &dates);
    let via_city = pc(&city_url);
    let via_relay = pc(&relay_url);
    for (name, other) in [("city", &via_city), ("relay", &via_relay)] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let synced = other.agent(&["sync"]).code == 0;
            if synced && present_keys(other, &dates) == here {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{engine}: the {name} never converged with the school ({} of {} records)",
                present_keys(other, &dates).len(),
                here.len()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    for (name, t) in ["relay", "city"].iter().zip(&tallies) {
        eprintln!(
            "torture: engine={engine} fault={name}-killed-during-sync trials={} syncs-completed={} failures=0",
            t.trials, t.acknowledged
        );
    }
    eprintln!(
        "torture: engine={engine} servers converged on {} records",
        here.len()
    );
}
