//! `schoolsync-server`: parse flags, merge the config file, start the node; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use schoolsync_protocol::ids::CountyTable;
use schoolsync_server::config::FileConfig;
use schoolsync_server::node::Role;
use schoolsync_server::{forward, Settings};
use schoolsync_store::upstream::Upstream;

/// schoolsync-server: the city server and the county relays of schoolsync (one binary, two roles).
///
/// 市级服务器与县区中继。The city merges every school's documents; a relay per county merges
/// its schools' documents, answers them while the city is unreachable, and forwards upstream.
#[derive(Debug, Parser)]
#[command(
    name = "schoolsync-server",
    version,
    after_help = "\
Examples:
  schoolsync-server certs --out certs --hosts city.example,10.0.0.5
  schoolsync-server city --listen 0.0.0.0:8443 --data-dir /var/lib/schoolsync \\
      --tls-cert certs/server.pem --tls-key certs/server.key
  schoolsync-server relay --county 130821 --upstream https://city.example:8443 --ca certs/ca.pem \\
      --listen 0.0.0.0:8443 --data-dir /var/lib/schoolsync-relay \\
      --tls-cert certs/server.pem --tls-key certs/server.key

Logs go to stderr; set the level with --log or RUST_LOG (error, warn, info, debug).
Ctrl-C or SIGTERM stops the server gracefully."
)]
struct Cli {
    /// Config file (TOML) with the same settings as the flags; flags win.
    #[arg(long, global = true, env = "SCHOOLSYNC_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// Log level or filter (default: info).
    #[arg(long, global = true, env = "RUST_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the city server. 运行市级服务器
    City(Common),
    /// Run a county relay. 运行县区中继
    Relay {
        #[command(flatten)]
        common: Common,
        /// County code of this relay, e.g. 130821.
        #[arg(long)]
        county: Option<String>,
        /// The city's URL, e.g. https://city.example:8443.
        #[arg(long)]
        upstream: Option<String>,
        /// CA certificate (PEM) that signed the city's certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Make a private CA and a server certificate for a trial deployment. 生成试用证书
    Certs {
        /// Folder to write ca.pem, ca.key, server.pem, server.key into.
        #[arg(long)]
        out: PathBuf,
        /// Host names or IP addresses the server certificate is for (localhost is always added).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// Address to listen on (default 0.0.0.0:8443).
    #[arg(long)]
    listen: Option<String>,
    /// Folder for the store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Server certificate chain (PEM).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Storage engine of a new store (an existing store keeps its own; default redb).
    #[arg(long, env = "SCHOOLSYNC_ENGINE", value_parser = ["redb", "sled"])]
    engine: Option<String>,
}

/// Threads for blocking work (document applies, store flushes).
const BLOCKING_THREADS_MAX: usize = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = cli.log.clone().unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("schoolsync-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => FileConfig::load(path).map_err(|e| anyhow!(e))?,
        None => FileConfig::default(),
    };
    let (common, relay) = match cli.command {
        Command::Certs { out, hosts } => {
            let files = schoolsync_server::certs::generate(&out, &hosts)?;
            println!(
                "CA certificate (give to agents and relays): {}",
                files.ca_cert.display()
            );
            println!(
                "CA key (keep offline):                      {}",
                files.ca_key.display()
            );
            println!(
                "server certificate and key:                 {} {}",
                files.server_cert.display(),
                files.server_key.display()
            );
            return Ok(());
        }
        Command::City(common) => (common, None),
        Command::Relay {
            common,
            county,
            upstream,
            ca,
        } => (common, Some((county, upstream, ca))),
    };
    let need = |v: Option<PathBuf>, f: Option<PathBuf>, name: &str| {
        v.or(f)
            .with_context(|| format!("--{name} is required (flag or config file)"))
    };
    let data_dir = need(common.data_dir, file.data_dir.clone(), "data-dir")?;
    let tls_cert = need(common.tls_cert, file.tls_cert.clone(), "tls-cert")?;
    let tls_key = need(common.tls_key, file.tls_key.clone(), "tls-key")?;
    let listen = common
        .listen
        .or(file.listen.clone())
        .unwrap_or_else(|| "0.0.0.0:8443".to_owned());
    let tls = schoolsync_server::tls::server_config(&tls_cert, &tls_key)?;
    let (role, upstream) = match relay {
        None => (Role::City, None),
        Some((county, upstream, ca)) => {
            let county = county
                .or(file.county.clone())
                .context("--county is required for a relay")?;
            let county = CountyTable::default()
                .parse(&county)
                .map_err(|e| anyhow!("--county: {e}"))?;
            let url = upstream
                .or(file.upstream.clone())
                .context("--upstream is required for a relay")?;
            let ca = ca
                .or(file.ca.clone())
                .unwrap_or_else(|| tls_cert.with_file_name("ca.pem"));
            let pem = std::fs::read(&ca)
                .with_context(|| format!("cannot read the CA certificate {}", ca.display()))?;
            (
                Role::Relay { county },
                Some(Upstream::new(&url, Some(&pem))?),
            )
        }
    };
    let engine = match common.engine {
        Some(name) => Some(name.parse().map_err(|e: String| anyhow!(e))?),
        None => file.engine,
    };
    let settings = Settings {
        engine,
        role,
        data_dir,
        tls,
        upstream,
        forward_interval_ms: file
            .forward_interval_ms
            .unwrap_or(forward::FORWARD_INTERVAL_MS),
    };
    // Document work is serialised by the node's write lock, so a few blocking threads suffice;
    // each extra thread would keep its own allocator arena (memory) for nothing.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS_MAX)
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let running = schoolsync_server::start(settings, listener).await?;
        schoolsync_server::http::shutdown_signal().await;
        running.stop().await;
        tracing::info!("stopped");
        Ok(())
    })
}
