//! Seeded randomized network faults: a school syncs through fault-injecting proxies (to its
//! relay, and to the city as fallback) while each round draws new faults: connections cut or
//! reset, responses truncated or stalled mid-body, bandwidth caps, delays, a link down. At the
//! end, with the faults cleared, one sync converges: every acknowledged record is on the school
//! PC, at the relay and at the city, and they hold the same number (nothing lost or duplicated).
//!
//! Each seed is printed; `SCHOOLSYNC_NET_SEED=<seed>` repeats exactly that run's choices.
//! `SCHOOLSYNC_NET_SEEDS` sets how many random seeds run (default 2, for CI).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::crash::Lcg;
use crate::harness::*;
use crate::proxy::{Faults, Proxy};

const MONTH: &str = "2113000001/2026-11";
/// Rounds of new records and faults per seed.
const ROUNDS: usize = 5;
/// The agent's request timeout in this suite, so a stalled response ends in seconds.
const REQUEST_TIMEOUT_MS: &str = "2500";

fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("SCHOOLSYNC_NET_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let n: u64 = std::env::var("SCHOOLSYNC_NET_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (0..n)
        .map(|i| base.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect()
}

/// One fault class, drawn from the seed.
fn draw(rng: &mut Lcg) -> (&'static str, Faults, bool) {
    let ms = |rng: &mut Lcg, lo: u64, hi: u64| Duration::from_millis(lo + rng.below(hi - lo));
    let none = Faults::default();
    match rng.below(9) {
        0 => ("none", none, false),
        1 => (
            "cut",
            Faults {
                cut_after: Some(ms(rng, 20, 400)),
                ..none
            },
            false,
        ),
        2 => (
            "reset",
            Faults {
                cut_after: Some(ms(rng, 20, 400)),
                reset: true,
                ..none
            },
            false,
        ),
        3 => (
            "bandwidth",
            Faults {
                bytes_per_sec: Some(2_000 + rng.below(60_000)),
                ..none
            },
            false,
        ),
        4 => (
            "delay",
            Faults {
                delay: Some(ms(rng, 5, 120)),
                ..none
            },
            false,
        ),
        5 => (
            "truncate",
            Faults {
                truncate_down_after: Some(rng.below(3_000)),
                ..none
            },
            false,
        ),
        6 => (
            "stall",
            Faults {
                stall_down_after: Some(rng.below(3_000)),
                ..none
            },
            false,
        ),
        7 => (
            "reset-truncate",
            Faults {
                truncate_down_after: Some(rng.below(3_000)),
                reset: true,
                ..none
            },
            false,
        ),
        _ => ("down", none, true),
    }
}

#[test]
fn torture_network_faults_converge() {
    for seed in seeds() {
        eprintln!("network seed: {seed} (SCHOOLSYNC_NET_SEED={seed} repeats it)");
        run_seed(seed);
    }
}

fn run_seed(seed: u64) {
    let mut rng = Lcg::new(seed);
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(COUNTY);
    let to_relay = Proxy::start(cluster.relays[relay].addr, Faults::default());
    let to_city = Proxy::start(cluster.city.addr, Faults::default());
    let school = cluster.school(
        SCHOOL,
        COUNTY,
        10,
        &[
            format!("https://{}", to_relay.addr()),
            format!("https://{}", to_city.addr()),
        ],
    );
    let sync = || {
        Run::from_output(
            school
                .command(&["sync"])
                .env("SCHOOLSYNC_REQUEST_TIMEOUT_MS", REQUEST_TIMEOUT_MS)
                .output()
                .unwrap(),
        )
    };
    let dates: Vec<String> = school_days("2026-11-02", 20)
        .iter()
        .map(|d| d.to_string())
        .collect();
    let mut used: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut ok, mut failed) = (0, 0);
    let mut expected = 0u64;
    for round in 0..ROUNDS {
        // New records: four days of all ten classes.
        let days: Vec<_> = dates[round * 4..round * 4 + 4]
            .iter()
            .map(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap())
            .collect();
        let path = school.file(
            &format!("round-{round}.csv"),
            attendance_csv(10, &days).as_bytes(),
        );
        school
            .agent(&["import", "attendance", path.to_str().unwrap()])
            .ok();
        expected += 40;
        for proxy in [&to_relay, &to_city] {
            let (name, faults, down) = draw(&mut rng);
            *used.entry(name).or_default() += 1;
            proxy.set_faults(faults);
            proxy.set_down(down);
        }
        let run = sync();
        match run.code {
            0 => ok += 1,
            8 => failed += 1,
            code => panic!("seed {seed}: sync exited {code}: {}", run.stderr),
        }
    }
    for proxy in [&to_relay, &to_city] {
        proxy.set_faults(Faults::default());
        proxy.set_down(false);
    }
    let last = sync();
    assert_eq!(
        last.code, 0,
        "seed {seed}: the clean sync failed: {}",
        last.stderr
    );
    assert_eq!(
        school.counts().0,
        expected,
        "seed {seed}: records lost locally"
    );
    cluster.wait_until("relay and city hold every record", || {
        cluster.attendance_at(Some(relay), MONTH) as u64 == expected
            && cluster.attendance_at(None, MONTH) as u64 == expected
    });
    let cut = to_relay.stats().cut + to_city.stats().cut;
    eprintln!(
        "net: seed={seed} faults={used:?} connections cut by the proxies={cut} syncs ok={ok} failed-cleanly={failed}; converged on {expected} records, failures=0"
    );
    drop(cluster);
}
