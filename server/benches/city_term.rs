//! The city holding a term of all of Chengde: resident memory of a real `schoolsync-server city`
//! process whose store holds 554 schools × 110 school days (about 4 million records, the
//! simulation's city), idle, answering a "nothing new?" round from every school, and taking a new
//! school day from every school. Run: `cargo bench -p schoolsync-server --bench city_term`
//! (about ten minutes on 2 cores, most of it generating the term). Prints figures.
//!
//! Then the oversight figures on the same data: how long the city takes to index what it holds,
//! how soon a school day that arrives shows in the aggregates, and the latency of the API and the
//! dashboard. `SCHOOLSYNC_BENCH_DAYS=20` runs it on a month (the issue's dataset) instead of a term.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use automerge::{ActorId, AutoCommit};
use schoolsync_agent::app::NewRecord;
use schoolsync_protocol::doc::{self, CommitMeta};
use schoolsync_protocol::ids::{DocId, Month, SchoolId};
use schoolsync_protocol::records::ClassInfo;
use schoolsync_protocol::sync::{self, Digest, DocSync, SchoolSync, SyncRequest};
use schoolsync_sim::measure::{dir_bytes, rss_kib};
use schoolsync_sim::{day_records, plan_city, school_days, Rng, SchoolPlan};
use schoolsync_store::upstream::Upstream;
use schoolsync_store::DocStore;

type Error = Box<dyn std::error::Error + Send + Sync>;

const SERVER: &str = env!("CARGO_BIN_EXE_schoolsync-server");
/// School days generated: a term by default, `SCHOOLSYNC_BENCH_DAYS` if set.
fn term_days() -> usize {
    std::env::var("SCHOOLSYNC_BENCH_DAYS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(110)
}

fn meta(school: &str) -> CommitMeta {
    CommitMeta {
        school: school.to_owned(),
        clerk: "bench".to_owned(),
        machine: "bench".to_owned(),
        action: "import".to_owned(),
    }
}

fn put(doc: &mut AutoCommit, record: &NewRecord) -> Result<(), Error> {
    match record {
        NewRecord::Attendance(r) => doc::put_attendance(doc, r)?,
        NewRecord::Homework(r) => doc::put_homework(doc, r)?,
        NewRecord::AfterSchool(r) => doc::put_afterschool(doc, r)?,
    }
    Ok(())
}

/// Writes one school's term into `store` (a profile and one document per month, ten school days
/// per change); returns the last month's document, kept to make a new day from later.
fn write_school(
    store: &DocStore,
    plan: &SchoolPlan,
    days: &[chrono::NaiveDate],
    rng: &mut Rng,
) -> Result<(DocId, Vec<u8>), Error> {
    let school: SchoolId = plan.id.parse()?;
    let mut profile = store.load(&DocId::profile(&school))?;
    doc::put_identity(&mut profile.doc, "模拟学校", plan.county)?;
    for (class, grade, enrolled, _) in &plan.classes {
        doc::put_class(
            &mut profile.doc,
            &ClassInfo::new(class.clone(), i64::from(*grade), *enrolled as i64)?,
        )?;
    }
    doc::commit(&mut profile.doc, &meta(&plan.id), 0);
    store.commit(&mut [&mut profile], Vec::new())?;
    let mut last = None;
    let mut month_days: Vec<(Month, Vec<chrono::NaiveDate>)> = Vec::new();
    for day in days {
        match month_days.last_mut() {
            Some((m, ds)) if *m == Month::of(*day) => ds.push(*day),
            _ => month_days.push((Month::of(*day), vec![*day])),
        }
    }
    for (month, ds) in month_days {
        let id = DocId::records(&school, month);
        let mut loaded = store.load(&id)?;
        for chunk in ds.chunks(10) {
            for day in chunk {
                for record in day_records(plan, *day, rng) {
                    put(&mut loaded.doc, &record)?;
                }
            }
            doc::commit(&mut loaded.doc, &meta(&plan.id), 0);
        }
        store.commit(&mut [&mut loaded], Vec::new())?;
        last = Some((id, loaded.doc.save()));
    }
    last.ok_or_else(|| "no days".into())
}

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("city");
    let mut rng = Rng::new(2023);
    let days_n = term_days();
    let plans = plan_city(days_n, &mut rng)?;
    let all_days = school_days(days_n + 1);
    let (term, next_day) = all_days.split_at(days_n);
    let started = Instant::now();
    let mut tokens = Vec::new();
    let viewer: String;
    let lasts: Vec<(DocId, Vec<u8>)> = {
        let store = DocStore::open(&data.join("store"))?;
        // Every school enrolled, as `city enroll-school` would (before the city starts).
        let authority = schoolsync_server::auth::Authority::open(&data)?;
        for plan in &plans {
            let (_, file) = authority.issue(
                &store,
                schoolsync_protocol::auth::Role::School,
                Some(plan.id.parse()?),
                Some(plan.county.parse()?),
                0,
            )?;
            tokens.push(file.token);
        }
        viewer = authority
            .issue(
                &store,
                schoolsync_protocol::auth::Role::Viewer,
                None,
                None,
                0,
            )?
            .1
            .token;
        let halves = plans.split_at(plans.len() / 2);
        let store = &store;
        std::thread::scope(|scope| -> Result<Vec<(DocId, Vec<u8>)>, Error> {
            let handles: Vec<_> = [halves.0, halves.1]
                .into_iter()
                .enumerate()
                .map(|(t, part)| {
                    scope.spawn(move || -> Result<Vec<(DocId, Vec<u8>)>, Error> {
                        let mut rng = Rng::new(t as u64);
                        part.iter()
                            .map(|plan| write_school(store, plan, term, &mut rng))
                            .collect()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.extend(h.join().map_err(|_| "generator panicked")??);
            }
            Ok(out)
        })?
    };
    let records: usize = plans.iter().map(|p| p.classes.len()).sum::<usize>() * days_n;
    println!(
        "generated a term of all of Chengde: {} schools, ~{}k class-days in {:.0} s",
        plans.len(),
        records / 1000,
        started.elapsed().as_secs_f64()
    );

    let certs = schoolsync_server::certs::generate(&dir.path().join("certs"), &[])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (cert, key) = (
        certs.server_cert.to_string_lossy().into_owned(),
        certs.server_key.to_string_lossy().into_owned(),
    );
    let data_arg = data.to_string_lossy().into_owned();
    let mut city: Child = Command::new(SERVER)
        .args([
            "city",
            "--listen",
            &listen,
            "--data-dir",
            &data_arg,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let size: u64 = dir_bytes(&data);
    println!(
        "city store on disk: {} MB; city idle: {} KiB resident",
        size / 1_000_000,
        rss_kib(city.id()).0
    );

    let upstream = Upstream::new(
        &format!("https://{listen}"),
        Some(&std::fs::read(&certs.ca_cert)?),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // 1. Every school asks "anything new?" with a digest the city does not have: the city answers
    //    each with its index for the school, from the index alone.
    let t = Instant::now();
    for (plan, token) in plans.iter().zip(&tokens) {
        let upstream = upstream.clone().with_credential(token);
        let request = SyncRequest {
            schools: vec![SchoolSync {
                school: plan.id.parse()?,
                digest: Digest([0; 32]),
                docs: Vec::new(),
            }],
        };
        rt.block_on(upstream.round(&request))?;
    }
    let (rss, peak) = rss_kib(city.id());
    println!(
        "after a digest round from all 554 schools ({:.1} s): {rss} KiB resident, peak {peak} KiB",
        t.elapsed().as_secs_f64()
    );

    // 2. Every school pushes a new school day (one change on its current month).
    let t = Instant::now();
    let mut rng = Rng::new(99);
    for (((id, saved), plan), token) in lasts.iter().zip(&plans).zip(&tokens) {
        let upstream = upstream.clone().with_credential(token);
        push_day(&rt, &upstream, saved, id, plan, next_day[0], &mut rng)?;
    }
    let (rss, peak) = rss_kib(city.id());
    println!(
        "after a new school day from all 554 schools ({:.1} s): {rss} KiB resident, peak {peak} KiB [target: a term of all of Chengde < 1 GB]",
        t.elapsed().as_secs_f64()
    );
    let classes: usize = plans.iter().map(|p| p.classes.len()).sum();
    oversight(
        &rt,
        &listen,
        &std::fs::read(&certs.ca_cert)?,
        &viewer,
        term,
        (next_day[0], classes as u64),
        &city,
    )?;
    // 3. One school-day arriving while the city is idle: how soon the aggregates show it.
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(
            &certs.ca_cert,
        )?)?)
        .build()?;
    let (id, saved) = &lasts[0];
    let plan = &plans[0];
    let upstream = upstream.clone().with_credential(&tokens[0]);
    let mut saved = saved.clone();
    let mut latencies = Vec::new();
    for k in 1..=5u64 {
        let date = next_day[0] + chrono::Days::new(k);
        saved = push_day(&rt, &upstream, &saved, id, plan, date, &mut rng)?;
        let t = Instant::now();
        loop {
            let path = format!(
                "https://{listen}/api/v1/summary?level=school&id={}&period=day&date={date}",
                plan.id
            );
            let (_, body, _) = get(&rt, &client, &path, &viewer)?;
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            if v["tally"]["attendance_class_days"].as_u64() == Some(plan.classes.len() as u64) {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                return Err("a school day never reached the aggregates".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "oversight: one school-day ({} classes) in the aggregates {:.0} ms (median of 5; max {:.0} ms) after the sync that brought it returned (the indexer waits {} ms after a commit for more)",
        plan.classes.len(),
        latencies[2],
        latencies[4],
        schoolsync_server::oversight::indexer::INDEX_DEBOUNCE_MS
    );
    let _ = city.kill();
    let _ = city.wait();
    Ok(())
}

/// Pushes one school day of `plan` as one change on the month document `saved`; returns the
/// document after it.
fn push_day(
    rt: &tokio::runtime::Runtime,
    upstream: &Upstream,
    saved: &[u8],
    id: &DocId,
    plan: &SchoolPlan,
    date: chrono::NaiveDate,
    rng: &mut Rng,
) -> Result<Vec<u8>, Error> {
    let mut doc = AutoCommit::load(saved)?.with_actor(ActorId::random());
    let before = doc.get_heads();
    for record in day_records(plan, date, rng) {
        put(&mut doc, &record)?;
    }
    doc::commit(&mut doc, &meta(&plan.id), 1);
    let changes = doc
        .get_changes(&before)
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let entry = DocSync {
        doc: id.clone(),
        acked: sync::to_wire(&before),
        heads: sync::to_wire(&doc.get_heads()),
        changes,
        snapshot: None,
    };
    let request = SyncRequest {
        schools: vec![SchoolSync {
            school: id.school.clone(),
            digest: Digest([0; 32]),
            docs: vec![entry],
        }],
    };
    rt.block_on(upstream.round(&request))?;
    Ok(doc.save())
}

/// GET with the viewer's credential: (status, body, milliseconds).
fn get(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(u16, Vec<u8>, f64), Error> {
    let t = Instant::now();
    let (status, body) = rt.block_on(async {
        let r = client.get(url).bearer_auth(token).send().await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.bytes().await?.to_vec()))
    })?;
    Ok((status, body, t.elapsed().as_secs_f64() * 1000.0))
}

/// Polls the city-wide day summary until every class's attendance of `date` is in the
/// aggregates (`classes` in all; the day may lie after today, so it is not yet "expected" and
/// completeness would not count it); returns how long.
fn until_received(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    token: &str,
    date: chrono::NaiveDate,
    classes: u64,
) -> Result<Duration, Error> {
    let t = Instant::now();
    loop {
        let (_, body, _) = get(
            rt,
            client,
            &format!("{base}/api/v1/summary?level=city&period=day&date={date}"),
            token,
        )?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        if v["tally"]["attendance_class_days"].as_u64() == Some(classes) {
            return Ok(t.elapsed());
        }
        if t.elapsed() > Duration::from_secs(3600) {
            return Err(format!("the aggregates never caught up: {v}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The oversight figures (issue 5): indexing, arrival → aggregate latency, API and dashboard
/// latency with the whole city's data.
fn oversight(
    rt: &tokio::runtime::Runtime,
    listen: &str,
    ca: &[u8],
    viewer: &str,
    term: &[chrono::NaiveDate],
    (next_day, classes): (chrono::NaiveDate, u64),
    city: &Child,
) -> Result<(), Error> {
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca)?)
        .build()?;
    let base = format!("https://{listen}");
    // The city indexes in the background from its start; by now it has also taken the new day.
    let waited = until_received(rt, &client, &base, viewer, next_day, classes)?;
    let (rss, peak) = rss_kib(city.id());
    println!(
        "oversight: aggregates complete for the new day {:.1} s after its last arrival (including indexing everything the city held at start: {} school days); city {rss} KiB resident, peak {peak} KiB",
        waited.as_secs_f64(),
        term.len()
    );
    let last = *term.last().ok_or("no days")?;
    let month = format!("period=month&date={last}");
    let school = "2113000001";
    let endpoints = [
        (
            "summary, city, month",
            format!("/api/v1/summary?level=city&{month}"),
        ),
        (
            "summary, county, month",
            format!("/api/v1/summary?level=county&id=130821&{month}"),
        ),
        (
            "summary, school, month",
            format!("/api/v1/summary?level=school&id={school}&{month}"),
        ),
        (
            "summary, city, term",
            format!("/api/v1/summary?level=city&period=term&date={last}"),
        ),
        (
            "compliance, city, week",
            format!("/api/v1/compliance?level=city&period=week&date={last}"),
        ),
        (
            "export.csv, city, month",
            format!("/api/v1/export.csv?level=city&{month}"),
        ),
        (
            "export.xlsx, county, month",
            format!("/api/v1/export.xlsx?level=county&id=130821&{month}"),
        ),
        (
            "changes feed, 1000 lines",
            "/api/v1/changes?after=0&limit=1000".to_owned(),
        ),
        (
            "dashboard page, city, month",
            format!("/?level=city&{month}"),
        ),
        (
            "dashboard page, county, month",
            format!("/?level=county&id=130821&{month}"),
        ),
    ];
    for (name, path) in endpoints {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..7 {
            let (status, body, ms) = get(rt, &client, &format!("{base}{path}"), viewer)?;
            if status != 200 {
                return Err(format!("{path}: {status}").into());
            }
            bytes = body.len();
            times.push(ms);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "oversight latency: {name}: median {:.0} ms, max {:.0} ms ({bytes} B)",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    Ok(())
}
