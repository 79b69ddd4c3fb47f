//! `schoolsync-server`: the county relay and the city server (one binary, two roles).
//!
//! Not built yet: the roles arrive with the sync work (see ARCHITECTURE.md). Until then this
//! binary only explains itself, so scripts and packaging can already refer to it.

use clap::Parser;

/// schoolsync-server: county relay and city server for schoolsync.
///
/// 县区中继与市级服务器。The `city` and `relay` roles come with the sync feature.
#[derive(Debug, Parser)]
#[command(name = "schoolsync-server", version)]
struct Cli {}

fn main() {
    let _ = Cli::parse();
    println!("schoolsync-server {}: the city and relay roles are not available yet / 市级与县区角色尚未提供", env!("CARGO_PKG_VERSION"));
}
