//! Chengde in one command: a city server, the 12 county relays and 554 schools (448 primary, 106
//! junior middle) whose enrolments add up to the bureau's figures, recording school days and
//! syncing over real HTTPS on loopback, with seeded connectivity (online, flaky, offline for days).
//!
//! Servers are the real `schoolsync-server` nodes, in-process. Schools are real agents
//! (`schoolsync_agent::app::Agent`, the real sync code) on in-memory stores, so 554 of them fit in
//! one process on a 2-core machine. The report at the end is read from the city's store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Datelike, NaiveDate};
use schoolsync_agent::app::{Actor, Agent, NewRecord};
use schoolsync_agent::config::Config;
use schoolsync_agent::sync::{sync_now, Upstreams};
use schoolsync_protocol::doc;
use schoolsync_protocol::ids::{ClassId, DocId, DocKind, Month};
use schoolsync_protocol::records::{
    AfterSchool, Attendance, ClassInfo, Clock, Day, HomeworkItem, HomeworkType, Layer, Place,
    ServiceContent,
};
use schoolsync_protocol::sync::digest;
use schoolsync_protocol::Lang;
use schoolsync_server::node::Role;
use schoolsync_server::{certs, Running, Settings};
use schoolsync_store::{DocStore, MemKv};

/// Chengde's figures (承教提字（2023）第2号, DOMAIN.md): the simulation reproduces them exactly.
pub const PRIMARY_SCHOOLS: usize = 448;
pub const JUNIOR_SCHOOLS: usize = 106;
pub const PRIMARY_STUDENTS: u64 = 243_351;
pub const JUNIOR_STUDENTS: u64 = 142_328;
pub const AFTERSCHOOL_PARTICIPANTS: u64 = 372_836;

/// The 12 county-level divisions.
pub const COUNTIES: [&str; 12] = [
    "130802", "130803", "130804", "130821", "130822", "130824", "130825", "130826", "130827",
    "130828", "130881", "130871",
];

/// Pupils per class when a school's enrolment is split into classes.
pub const CLASS_SIZE: u64 = 45;
/// Schools syncing at the same moment (a county's morning rush, bounded for a 2-core machine).
pub const SYNC_CONCURRENCY: usize = 16;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// School days to record, from Monday 2026-11-02.
    pub days: usize,
    pub seed: u64,
    /// How often relays check in with the city when idle.
    pub forward_interval_ms: u64,
}

/// How a school's link behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Syncs every day.
    Online,
    /// Each day's sync attempt fails half the time.
    Flaky,
    /// No link for the first `n` days.
    Offline(usize),
}

/// The figures printed at the end.
#[derive(Clone, Debug, Default)]
pub struct SimReport {
    pub schools: usize,
    pub primary_schools: usize,
    pub junior_schools: usize,
    pub students: u64,
    pub participants: u64,
    pub participation_pct: f64,
    pub records: usize,
    pub sync_attempts: usize,
    pub failed_attempts: usize,
    pub bytes_up: usize,
    pub bytes_down: usize,
    pub converge_ms: u128,
    pub total_ms: u128,
    /// The city's oversight figures for the last day, read through its indexed aggregates (the
    /// same path as the API and dashboard): schools received, participation.
    pub oversight_received: u32,
    pub oversight_participation_pct: f64,
    /// Time for the city's indexer to bring the aggregates up to date once everything arrived.
    pub index_ms: u128,
}

/// A seeded generator (splitmix64): the same seed gives the same city.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Splits `total` into `n` positive parts that vary by about ±40 % and add up exactly.
pub fn split_exact(total: u64, n: usize, rng: &mut Rng) -> Vec<u64> {
    let weights: Vec<u64> = (0..n).map(|_| 60 + rng.below(81)).collect();
    let sum: u64 = weights.iter().sum();
    let mut parts: Vec<u64> = weights.iter().map(|w| total * w / sum).collect();
    let mut rest = total - parts.iter().sum::<u64>();
    let mut i = 0;
    while rest > 0 {
        parts[i % n] += 1;
        rest -= 1;
        i += 1;
    }
    parts
}

/// Splits `total` in proportion to `caps`, never above a cap, adding up exactly.
pub fn split_proportional(total: u64, caps: &[u64]) -> Vec<u64> {
    let cap_sum: u64 = caps.iter().sum();
    let mut parts: Vec<u64> = caps.iter().map(|c| c * total / cap_sum.max(1)).collect();
    let mut rest = total.saturating_sub(parts.iter().sum());
    while rest > 0 {
        let before = rest;
        for (part, cap) in parts.iter_mut().zip(caps) {
            if rest > 0 && *part < *cap {
                *part += 1;
                rest -= 1;
            }
        }
        if rest == before {
            break; // Every part is at its cap.
        }
    }
    parts
}

/// One school of the plan.
#[derive(Clone, Debug)]
pub struct SchoolPlan {
    pub id: String,
    pub county: &'static str,
    /// `(class, grade, enrolled, after-school participants)`.
    pub classes: Vec<(ClassId, u32, u64, u64)>,
    pub pattern: Pattern,
}

/// The 554 schools with exact totals.
pub fn plan_city(days: usize, rng: &mut Rng) -> anyhow::Result<Vec<SchoolPlan>> {
    let mut enrolments = split_exact(PRIMARY_STUDENTS, PRIMARY_SCHOOLS, rng);
    enrolments.extend(split_exact(JUNIOR_STUDENTS, JUNIOR_SCHOOLS, rng));
    let participants = split_proportional(AFTERSCHOOL_PARTICIPANTS, &enrolments);
    let mut schools = Vec::new();
    for (i, (&enrolled, &taking_part)) in enrolments.iter().zip(&participants).enumerate() {
        let primary = i < PRIMARY_SCHOOLS;
        let (id, grades) = if primary {
            (format!("2113{:06}", i + 1), 1..=6u32)
        } else {
            (format!("3113{:06}", i + 1), 7..=9u32)
        };
        let grade_count = grades.clone().count() as u64;
        let per_grade = split_proportional(enrolled, &vec![enrolled; grade_count as usize]);
        let mut classes = Vec::new();
        for (grade, pupils) in grades.zip(per_grade) {
            let n = pupils.div_ceil(CLASS_SIZE).max(1);
            for (c, size) in split_proportional(pupils, &vec![pupils; n as usize])
                .into_iter()
                .enumerate()
            {
                let class: ClassId = format!("{grade}-{}", c + 1).parse().context("class id")?;
                classes.push((class, grade, size, 0));
            }
        }
        let sizes: Vec<u64> = classes.iter().map(|c| c.2).collect();
        for (class, p) in classes
            .iter_mut()
            .zip(split_proportional(taking_part, &sizes))
        {
            class.3 = p;
        }
        let pattern = match rng.below(100) {
            0..=74 => Pattern::Online,
            75..=89 => Pattern::Flaky,
            _ => Pattern::Offline(1 + rng.below(days.max(1) as u64) as usize),
        };
        schools.push(SchoolPlan {
            id,
            county: COUNTIES[i % COUNTIES.len()],
            classes,
            pattern,
        });
    }
    Ok(schools)
}

/// School days from Monday 2026-11-02.
pub fn school_days(n: usize) -> Vec<NaiveDate> {
    school_days_from(NaiveDate::from_ymd_opt(2026, 11, 2).unwrap_or_default(), n)
}

/// `n` school days (weekdays) from `start` on.
pub fn school_days_from(start: NaiveDate, n: usize) -> Vec<NaiveDate> {
    let mut day = start;
    let mut out = Vec::new();
    while out.len() < n {
        if day.weekday().number_from_monday() <= 5 {
            out.push(day);
        }
        day = day.succ_opt().unwrap_or(day);
    }
    out
}

/// A day's records for one school: attendance, one or two homework items and after-school per
/// class, with a few findings sprinkled in (long homework, grade 1-2 written homework, a short
/// session, an illness cluster).
pub fn day_records(school: &SchoolPlan, date: NaiveDate, rng: &mut Rng) -> Vec<NewRecord> {
    let day = Day(date);
    let mut out = Vec::new();
    for (class, grade, enrolled, participants) in &school.classes {
        let enrolled = *enrolled as u32;
        let cluster = rng.below(400) == 0;
        let sick = if cluster { 3 } else { rng.below(3) as u32 }.min(enrolled);
        let personal = (rng.below(4) == 0) as u32;
        let personal = personal.min(enrolled - sick);
        let mut symptoms = std::collections::BTreeMap::new();
        if sick > 0 {
            symptoms.insert("fever".to_owned(), sick);
        }
        out.push(NewRecord::Attendance(Attendance {
            date: day,
            class: class.clone(),
            expected: enrolled,
            present: enrolled - sick - personal,
            sick,
            personal,
            other: 0,
            symptoms,
        }));
        let long = rng.below(50) == 0;
        let written_at_home = *grade >= 3 || rng.below(200) == 0;
        let homework = |subject: &str, content: String, kind, minutes| HomeworkItem {
            date: day,
            class: class.clone(),
            subject: subject.to_owned(),
            content,
            kind,
            layer: Layer::Required,
            place: Place::AtHome,
            minutes,
            teacher: None,
            review: None,
            published: true,
            flags: Vec::new(),
        };
        if written_at_home {
            let minutes = if long { 75 } else { 20 + rng.below(25) as u32 };
            out.push(NewRecord::Homework(homework(
                "数学",
                format!("练习册第{}页", date.day()),
                HomeworkType::Written,
                minutes,
            )));
        }
        out.push(NewRecord::Homework(homework(
            "语文",
            "课外阅读".to_owned(),
            HomeworkType::Reading,
            15,
        )));
        let short = rng.below(100) == 0;
        out.push(NewRecord::AfterSchool(AfterSchool {
            date: day,
            class: class.clone(),
            enrolled,
            participants: *participants as u32,
            start: Clock(16 * 60),
            end: Clock(if short { 17 * 60 + 30 } else { 18 * 60 }),
            content: vec![ServiceContent::HomeworkHelp, ServiceContent::Clubs],
            teachers: 2,
            outside_staff: 0,
        }));
    }
    out
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A running city with its relays.
struct Servers {
    city: Running,
    relays: Vec<Running>,
}

async fn start_servers(
    dir: &std::path::Path,
    forward_interval_ms: u64,
) -> anyhow::Result<(Servers, Vec<u8>)> {
    let certs = certs::generate(&dir.join("certs"), &[])?;
    let ca = std::fs::read(&certs.ca_cert)?;
    let tls = schoolsync_server::tls::server_config(&certs.server_cert, &certs.server_key)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let city = schoolsync_server::start(
        Settings {
            role: Role::City,
            data_dir: dir.join("city"),
            tls: tls.clone(),
            upstream: None,
            forward_interval_ms,
            credential: None,
            body_timeout_ms: schoolsync_server::api::BODY_TIMEOUT_MS,
            relay_client_cert_required: false,
            oversight: Default::default(),
            engine: None,
        },
        listener,
    )
    .await?;
    let authority = city
        .authority
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the city has no authority"))?;
    let city_url = format!("https://{}", city.addr);
    let mut relays = Vec::new();
    for county in COUNTIES {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream = schoolsync_store::upstream::Upstream::new(&city_url, Some(&ca))?;
        let (_, credential) = authority.issue(
            &city.node.store,
            schoolsync_protocol::auth::Role::Relay,
            None,
            Some(county.parse()?),
            now_ms(),
        )?;
        relays.push(
            schoolsync_server::start(
                Settings {
                    role: Role::Relay {
                        county: county.parse()?,
                    },
                    data_dir: dir.join(format!("relay-{county}")),
                    tls: tls.clone(),
                    upstream: Some(upstream),
                    forward_interval_ms,
                    credential: Some(credential),
                    body_timeout_ms: schoolsync_server::api::BODY_TIMEOUT_MS,
                    relay_client_cert_required: false,
                    oversight: Default::default(),
                    engine: None,
                },
                listener,
            )
            .await?,
        );
    }
    Ok((Servers { city, relays }, ca))
}

/// Runs the simulation; `log` receives progress lines.
pub async fn run(config: &SimConfig, log: &(dyn Fn(&str) + Sync)) -> anyhow::Result<SimReport> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut rng = Rng::new(config.seed);
    let plans = plan_city(config.days, &mut rng)?;
    let (servers, ca) = start_servers(dir.path(), config.forward_interval_ms).await?;
    let authority = servers
        .city
        .authority
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the city has no authority"))?;
    let ca_pem = String::from_utf8(ca)?;
    log(&format!(
        "city and {} county relays up; setting up {} schools ...",
        servers.relays.len(),
        plans.len()
    ));
    let mut schools: Vec<(Arc<Agent>, SchoolPlan)> = Vec::new();
    for plan in &plans {
        let relay = &servers.relays[COUNTIES.iter().position(|c| *c == plan.county).unwrap_or(0)];
        // Each school machine is enrolled by the city, as in a real deployment.
        let (claims, credential) = authority.issue(
            &servers.city.node.store,
            schoolsync_protocol::auth::Role::School,
            Some(plan.id.parse()?),
            Some(plan.county.parse()?),
            now_ms(),
        )?;
        let credential_path = dir.path().join(format!("{}.credential", plan.id));
        schoolsync_store::secret::write_private(
            &credential_path,
            credential.to_text(&claims).as_bytes(),
        )?;
        let agent = Agent::new(
            DocStore::with_kv(Box::new(MemKv::default())),
            Config {
                credential: Some(credential_path),
                ..Config::default()
            },
            Actor {
                clerk: "sim".to_owned(),
                machine: plan.id.clone(),
            },
        );
        let upstreams = Upstreams {
            urls: vec![
                format!("https://{}", relay.addr),
                format!("https://{}", servers.city.addr),
            ],
            ca_pem: Some(ca_pem.clone()),
        };
        agent.init(
            &plan.id,
            plan.county,
            &format!("模拟学校{}", plan.id),
            Some(&upstreams),
            now_ms(),
        )?;
        let classes: Vec<ClassInfo> = plan
            .classes
            .iter()
            .map(|(class, grade, enrolled, _)| {
                ClassInfo::new(class.clone(), i64::from(*grade), *enrolled as i64)
            })
            .collect::<Result<_, _>>()?;
        agent.add_classes(&classes, "sim classes", now_ms())?;
        schools.push((Arc::new(agent), plan.clone()));
    }
    let mut report = SimReport::default();
    let days = school_days(config.days);
    for (d, date) in days.iter().enumerate() {
        let mut batches = Vec::new();
        for (agent, plan) in &schools {
            let records = day_records(plan, *date, &mut rng);
            report.records += records.len();
            let online = match plan.pattern {
                Pattern::Online => true,
                Pattern::Flaky => rng.below(2) == 0,
                Pattern::Offline(n) => d >= n,
            };
            batches.push((agent.clone(), records, online));
        }
        // Record (CPU) on the blocking pool, then sync those that have a link, 16 at a time.
        let mut tasks = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(SYNC_CONCURRENCY));
        for (agent, records, online) in batches {
            let permits = permits.clone();
            tasks.spawn(async move {
                let a = agent.clone();
                tokio::task::spawn_blocking(move || a.write_records(&records, "sim day", now_ms()))
                    .await??;
                if !online {
                    return Ok::<_, anyhow::Error>(None);
                }
                let _permit = permits.acquire_owned().await?;
                Ok(Some(
                    sync_now(&agent, now_ms(), Lang::En, &mut |_| {}).await,
                ))
            });
        }
        let (mut synced, mut failed, mut skipped) = (0, 0, 0);
        while let Some(joined) = tasks.join_next().await {
            match joined?? {
                None => skipped += 1,
                Some(Ok(outcome)) => {
                    synced += 1;
                    report.bytes_up += outcome.summary.bytes_up;
                    report.bytes_down += outcome.summary.bytes_down;
                }
                Some(Err(_)) => failed += 1,
            }
        }
        report.sync_attempts += synced + failed;
        report.failed_attempts += failed;
        log(&format!(
            "day {} ({date}): recorded; {synced} schools synced, {skipped} without a link, {failed} failed",
            d + 1
        ));
    }
    // Every school comes online; wait until the city holds what every school holds.
    let converge_start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(SYNC_CONCURRENCY));
    for (agent, _) in &schools {
        let (agent, permits) = (agent.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            Ok::<_, anyhow::Error>(sync_now(&agent, now_ms(), Lang::En, &mut |_| {}).await?)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined??;
        report.sync_attempts += 1;
        report.bytes_up += outcome.summary.bytes_up;
        report.bytes_down += outcome.summary.bytes_down;
    }
    log("every school synced; waiting for the relays to bring the city up to date ...");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut behind = 0;
        for (agent, plan) in &schools {
            let ours = agent.store.index(&format!("{}/", plan.id))?;
            let theirs = servers.city.node.store.index(&format!("{}/", plan.id))?;
            if digest(ours.iter().map(|(id, h)| (id, h.as_slice())))
                != digest(theirs.iter().map(|(id, h)| (id, h.as_slice())))
            {
                behind += 1;
            }
        }
        if behind == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{behind} schools never reached the city"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report.converge_ms = converge_start.elapsed().as_millis();
    city_report(&servers.city, days.last().copied(), &mut report)?;
    if let Some(last) = days.last().copied() {
        // The oversight path: let the indexer catch up, then read the city's day from it.
        let index_start = Instant::now();
        loop {
            let node = servers.city.node.clone();
            let pass = tokio::task::spawn_blocking(move || {
                schoolsync_server::oversight::indexer::refresh(&node, now_ms())
            })
            .await??;
            if pass.documents == 0 {
                break;
            }
        }
        report.index_ms = index_start.elapsed().as_millis();
        let summary = schoolsync_server::oversight::query::summary(
            &servers.city.node.store,
            false,
            &Default::default(),
            &schoolsync_server::oversight::query::Level::City,
            schoolsync_server::oversight::calendar::Period::Day,
            last,
            last,
            0,
        )?;
        report.oversight_received = summary.row.completeness.received;
        report.oversight_participation_pct =
            100.0 * summary.row.rates.afterschool_participation.unwrap_or(0.0);
        log(&format!(
            "oversight (the city's aggregates for {last}): {} of 554 schools received, participation {:.2} %; indexed in {} ms after arrival",
            report.oversight_received, report.oversight_participation_pct, report.index_ms
        ));
    }
    report.total_ms = started.elapsed().as_millis();
    servers.city.stop().await;
    for relay in servers.relays {
        relay.stop().await;
    }
    Ok(report)
}

/// Reads the city's figures from its store: schools and students from the profiles,
/// participation from the last day's after-school records.
fn city_report(
    city: &Running,
    last_day: Option<NaiveDate>,
    report: &mut SimReport,
) -> anyhow::Result<()> {
    let store = &city.node.store;
    for (id, _) in store.index("")? {
        match id.kind {
            DocKind::Profile => {
                let profile = doc::read_profile(&store.load(&id)?.doc)?;
                report.schools += 1;
                if profile.school.starts_with("21") {
                    report.primary_schools += 1;
                } else {
                    report.junior_schools += 1;
                }
                report.students += profile
                    .classes
                    .values()
                    .map(|c| u64::from(c.enrolled))
                    .sum::<u64>();
            }
            DocKind::Records(month) => {
                let Some(day) = last_day else { continue };
                if Month::of(day) != month {
                    continue;
                }
                let records =
                    doc::read_month(&store.load(&DocId::records(&id.school, month))?.doc)?;
                report.participants += records
                    .afterschool
                    .values()
                    .filter(|r| r.date.0 == day)
                    .map(|r| u64::from(r.participants))
                    .sum::<u64>();
            }
        }
    }
    report.participation_pct = 100.0 * report.participants as f64 / report.students.max(1) as f64;
    Ok(())
}

/// Measurements the benchmarks share (Linux `/proc` and the file system).
pub mod measure {
    /// Resident and peak resident memory of a process, KiB.
    pub fn rss_kib(pid: u32) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Bytes of every file under `path`.
    pub fn dir_bytes(path: &std::path::Path) -> u64 {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_reproduces_chengde_exactly() {
        let plans = plan_city(3, &mut Rng::new(7)).unwrap();
        assert_eq!(plans.len(), 554);
        let students: u64 = plans.iter().flat_map(|p| &p.classes).map(|c| c.2).sum();
        let primary: u64 = plans[..PRIMARY_SCHOOLS]
            .iter()
            .flat_map(|p| &p.classes)
            .map(|c| c.2)
            .sum();
        let participants: u64 = plans.iter().flat_map(|p| &p.classes).map(|c| c.3).sum();
        assert_eq!((students, primary), (385_679, 243_351));
        assert_eq!(participants, 372_836);
        assert!(plans
            .iter()
            .flat_map(|p| &p.classes)
            .all(|c| c.3 <= c.2 && c.2 > 0));
        assert_eq!(
            format!("{:.2}", 100.0 * participants as f64 / students as f64),
            "96.67"
        );
        // The same seed gives the same city.
        let again = plan_city(3, &mut Rng::new(7)).unwrap();
        assert_eq!(again[100].classes, plans[100].classes);
    }
}
