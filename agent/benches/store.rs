//! Store benchmark: import time and size on disk for one school month and one term, open time,
//! the latency of one record, and load time and peak memory of one month document, on each
//! storage engine. Run: `cargo bench -p schoolsync-agent --bench store` (`-- sled` or `-- redb`
//! for one engine).
//!
//! A school month is 30 classes x 22 school days x the three records (one homework item per
//! class-day); a term is 90 school days. Figures go to stdout; nothing is asserted (machines are
//! noisy: benchmarks measure, tests assert behaviour).

// A counting global allocator needs `unsafe impl GlobalAlloc`; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::NaiveDate;
use schoolsync_agent::app::NewRecord;
use schoolsync_agent::app::{Actor, Agent};
use schoolsync_agent::config::Config;
use schoolsync_agent::import::{self, Kind};
use schoolsync_protocol::doc;
use schoolsync_protocol::ids::{DocId, Month};
use schoolsync_protocol::records::{Attendance, Day};
use schoolsync_protocol::Lang;
use schoolsync_sim::measure::{dir_bytes, rss_kib};
use schoolsync_sim::school_days_from as school_days;
use schoolsync_store::{DocStore, Engine};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CLASSES: usize = 30;

fn sheets(days: &[NaiveDate]) -> [(Kind, String); 4] {
    let mut classes = String::from("class,grade,enrolled\n");
    let mut att = String::from("date,class,expected,present,sick,personal,other,fever\n");
    let mut hw = String::from("date,class,subject,content,type,place,layer,minutes\n");
    let mut after = String::from("date,class,participants,start,end,content,teachers\n");
    for c in 1..=CLASSES {
        classes.push_str(&format!("{}-{c},{},45\n", 1 + c % 9, 1 + c % 9));
    }
    for (i, d) in days.iter().enumerate() {
        for c in 1..=CLASSES {
            let class = format!("{}-{c}", 1 + c % 9);
            let sick = (i + c) % 3;
            att.push_str(&format!("{d},{class},45,{},{sick},0,0,{sick}\n", 45 - sick));
            hw.push_str(&format!(
                "{d},{class},数学,练习册第{i}页,书面,家庭,必做,{}\n",
                20 + (i + c) % 30
            ));
            after.push_str(&format!(
                "{d},{class},{},16:00,18:00,作业辅导、社团,2\n",
                40 + (i + c) % 5
            ));
        }
    }
    [
        (Kind::Classes, classes),
        (Kind::Attendance, att),
        (Kind::Homework, hw),
        (Kind::Afterschool, after),
    ]
}

/// Records written one at a time (one command each) to time a single record.
const SINGLE_RECORDS: usize = 40;

fn run(engine: Engine, label: &str, days: usize) -> Result<(), Box<dyn std::error::Error>> {
    let label = format!("{engine} {label}");
    let dir = tempfile::tempdir()?;
    let store_dir = dir.path().join("store");
    let start_day = NaiveDate::from_ymd_opt(2026, 9, 1).ok_or("date")?;
    let days = school_days(start_day, days);
    let months: std::collections::BTreeSet<Month> = days.iter().map(|d| Month::of(*d)).collect();
    {
        let agent = Agent::new(
            DocStore::open_with(&store_dir, Some(engine), true)?,
            Config::default(),
            Actor {
                clerk: "bench".into(),
                machine: "bench".into(),
            },
        );
        agent.init("2113000001", "130821", "基准小学", None, 0)?;
        let started = Instant::now();
        let mut records = 0;
        for (kind, csv) in sheets(&days) {
            let profile = agent.profile()?;
            let parsed = import::parse(kind, csv.as_bytes(), &profile, Lang::En, &mut |_| {});
            if !parsed.errors.is_empty() {
                return Err(format!("{:?}", parsed.errors[0]).into());
            }
            if kind == Kind::Classes {
                agent.add_classes(&parsed.classes, "import classes", 1)?;
            } else {
                records += parsed.records.len();
                agent.write_records(&parsed.records, "import", 1)?;
            }
        }
        let elapsed = started.elapsed();
        let mut doc_bytes = 0;
        for id in agent.store.doc_ids()? {
            doc_bytes += agent.store.doc_size(&id)?.0;
        }
        println!(
            "{label}: {records} records in {} documents imported in {:.2} s ({:.0} records/s); documents {} KiB; store on disk {} KiB (engine size_on_disk {} KiB)",
            months.len() + 1,
            elapsed.as_secs_f64(),
            records as f64 / elapsed.as_secs_f64(),
            doc_bytes / 1024,
            dir_bytes(&store_dir) / 1024,
            agent.store.size_on_disk()? / 1024,
        );
    }
    // Open (the agent checks the whole store on open where the engine can), then single
    // records as a clerk enters them: each one its own flushed commit.
    let started = Instant::now();
    let store = DocStore::open_with(&store_dir, Some(engine), true)?;
    let open_ms = started.elapsed().as_secs_f64() * 1000.0;
    let agent = Agent::new(
        store,
        Config::default(),
        Actor {
            clerk: "bench".into(),
            machine: "bench".into(),
        },
    );
    let profile = agent.profile()?;
    let class = profile
        .classes
        .values()
        .next()
        .ok_or("no class")?
        .class
        .clone();
    let mut latencies = Vec::new();
    for day in school_days(
        NaiveDate::from_ymd_opt(2027, 3, 1).ok_or("date")?,
        SINGLE_RECORDS,
    ) {
        let record = Attendance {
            date: Day(day),
            class: class.clone(),
            expected: 45,
            present: 45,
            sick: 0,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        };
        let started = Instant::now();
        agent.write_records(&[NewRecord::Attendance(record)], "record", 2)?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{label}: open {open_ms:.1} ms; one record {:.1} ms median, {:.1} ms p90 ({SINGLE_RECORDS} records)",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
    );
    drop(agent);
    // Load one month document cold from a freshly opened store.
    let store = DocStore::open_with(&store_dir, Some(engine), true)?;
    let month = *months.iter().next().ok_or("no month")?;
    let id = DocId::records(&"2113000001".parse()?, month);
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let loaded = store.load(&id)?;
    let load = started.elapsed();
    let records = doc::read_month(&loaded.doc)?;
    let read = started.elapsed();
    let steady = CURRENT.load(Ordering::Relaxed) - base;
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "{label}: load {id} ({} records): {:.1} ms load, {:.1} ms load + read all records; heap {:.1} MiB steady, {:.1} MiB peak",
        records.len(),
        load.as_secs_f64() * 1000.0,
        read.as_secs_f64() * 1000.0,
        steady as f64 / 1048576.0,
        peak as f64 / 1048576.0,
    );
    Ok(())
}

/// The real agent binary: memory while `run` idles, and peak memory of a term's first `sync`
/// (to a city started in this process).
fn agent_memory() -> Result<(), Box<dyn std::error::Error>> {
    use std::process::{Command, Stdio};
    const AGENT: &str = env!("CARGO_BIN_EXE_schoolsync-agent");
    let dir = tempfile::tempdir()?;
    let certs = schoolsync_server::certs::generate(&dir.path().join("certs"), &[])?;
    let rt = tokio::runtime::Runtime::new()?;
    let city = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let settings = schoolsync_server::Settings {
            role: schoolsync_server::node::Role::City,
            data_dir: dir.path().join("city"),
            tls: schoolsync_server::tls::server_config(&certs.server_cert, &certs.server_key)?,
            upstream: None,
            engine: None,
            forward_interval_ms: 1000,
            credential: None,
            body_timeout_ms: schoolsync_server::api::BODY_TIMEOUT_MS,
            relay_client_cert_required: false,
            oversight: Default::default(),
        };
        Ok::<_, Box<dyn std::error::Error>>(schoolsync_server::start(settings, listener).await?)
    })?;
    let data = dir.path().join("agent");
    let agent = |args: &[&str]| {
        let mut cmd = Command::new(AGENT);
        cmd.args(args)
            .env("SCHOOLSYNC_DATA_DIR", &data)
            .env("SCHOOLSYNC_LANG", "en");
        cmd
    };
    let url = format!("https://{}", city.addr);
    let ca = certs.ca_cert.to_string_lossy().into_owned();
    let credential = dir.path().join("school.credential");
    {
        let authority = city.authority.clone().ok_or("no authority")?;
        let (claims, file) = authority.issue(
            &city.node.store,
            schoolsync_protocol::auth::Role::School,
            Some("2113000001".parse()?),
            Some("130821".parse()?),
            0,
        )?;
        std::fs::write(&credential, file.to_text(&claims))?;
    }
    let credential = credential.to_string_lossy().into_owned();
    agent(&[
        "init",
        "--school",
        "2113000001",
        "--county",
        "130821",
        "--name",
        "x",
        "--upstream",
        &url,
        "--ca",
        &ca,
        "--credential",
        &credential,
    ])
    .output()?;
    let start_day = NaiveDate::from_ymd_opt(2026, 9, 1).ok_or("date")?;
    for (kind, csv) in sheets(&school_days(start_day, 90)) {
        let path = dir.path().join(format!("{kind:?}.csv"));
        std::fs::write(&path, csv)?;
        let name = match kind {
            Kind::Classes => "classes",
            Kind::Attendance => "attendance",
            Kind::Homework => "homework",
            Kind::Afterschool => "afterschool",
        };
        agent(&["import", name, path.to_str().ok_or("path")?]).output()?;
    }
    let mut sync = agent(&["sync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut peak = 0;
    while sync.try_wait()?.is_none() {
        peak = peak.max(rss_kib(sync.id()).1);
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // With the clerk desk serving (on any free port), as a school runs it.
    let mut run = agent(&["run", "--desk-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (idle, run_peak) = rss_kib(run.id());
    let _ = run.kill();
    let _ = run.wait();
    println!(
        "agent process: `run` idle {idle} KiB resident (peak {run_peak} KiB) [target < 30 MB]; `sync` of a term (8100 records) peak {peak} KiB; binary {} KiB",
        std::fs::metadata(AGENT)?.len() / 1024
    );
    rt.block_on(city.stop());
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let only: Option<Engine> = std::env::args().skip(1).find_map(|a| a.parse().ok());
    for engine in Engine::ALL {
        if only.is_some_and(|o| o != engine) {
            continue;
        }
        run(engine, "month (22 days)", 22)?;
        run(engine, "term (90 days)", 90)?;
    }
    agent_memory()?;
    Ok(())
}
