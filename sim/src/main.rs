//! `schoolsync-sim`: parse flags, run the simulation, print the report.

use std::process::ExitCode;

use clap::Parser;
use schoolsync_sim::{run, SimConfig};

/// Chengde in one command: a city server, 12 county relays and 554 schools recording school days
/// and syncing over HTTPS on loopback, with seeded connectivity (online, flaky, offline for days).
/// Prints progress, then the time to converge, the bytes moved and the city's report.
///
/// 一条命令模拟承德全市：1 个市级服务器、12 个县区中继、554 所学校。
#[derive(Debug, Parser)]
#[command(name = "schoolsync-sim", version)]
struct Cli {
    /// School days to simulate (from Monday 2026-11-02).
    #[arg(long, default_value_t = 3)]
    days: usize,
    /// Seed of the generated city, records and connectivity.
    #[arg(long, default_value_t = 2023)]
    seed: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = SimConfig {
        days: cli.days.max(1),
        seed: cli.seed,
        forward_interval_ms: 1_000,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("schoolsync-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = |line: &str| eprintln!("{line}");
    match runtime.block_on(run(&config, &log)) {
        Ok(r) => {
            println!(
                "schools: {} ({} primary, {} junior middle)",
                r.schools, r.primary_schools, r.junior_schools
            );
            println!("students: {}", r.students);
            println!(
                "after-school participants: {} ({:.2} %)",
                r.participants, r.participation_pct
            );
            println!("records: {} over {} school days", r.records, config.days);
            println!(
                "syncs: {} attempts, {} failed; {} bytes up, {} bytes down (HTTP bodies, schools <-> relays)",
                r.sync_attempts, r.failed_attempts, r.bytes_up, r.bytes_down
            );
            println!(
                "time to converge after the last day: {:.1} s; total {:.1} s",
                r.converge_ms as f64 / 1000.0,
                r.total_ms as f64 / 1000.0
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("schoolsync-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}
