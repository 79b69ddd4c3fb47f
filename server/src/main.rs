//! `schoolsync-server`: parse flags, merge the config file, start the node; nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};
use schoolsync_protocol::auth::{CredentialFile, Role as CredRole};
use schoolsync_protocol::ids::CountyTable;
use schoolsync_server::admin::{self, Action, Outcome};
use schoolsync_server::api::IssueRequest;
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
  schoolsync-server city --data-dir /var/lib/schoolsync enroll-relay --county 130821
  schoolsync-server city --data-dir /var/lib/schoolsync enroll-school --school 2113000001 --county 130821
  schoolsync-server relay --county 130821 --upstream https://city.example:8443 --ca certs/ca.pem \\
      --credential relay-130821-r-xxxx.credential \\
      --listen 0.0.0.0:8443 --data-dir /var/lib/schoolsync-relay \\
      --tls-cert certs/server.pem --tls-key certs/server.key

Every device needs a credential from the city (enroll-school, enroll-relay, issue-viewer); the
enrolment commands work while the city runs (they go through it) and when it does not.

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
    /// Run the city server; with a subcommand, enrol devices or revoke credentials.
    /// 运行市级服务器；带子命令时办理或吊销设备凭证
    City {
        #[command(flatten)]
        common: Common,
        #[command(subcommand)]
        admin: Option<Admin>,
    },
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
        /// This relay's credential file, from `city enroll-relay`.
        #[arg(long)]
        credential: Option<PathBuf>,
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
    #[arg(long, global = true)]
    listen: Option<String>,
    /// Folder for the store.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Server certificate chain (PEM).
    #[arg(long, global = true)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, global = true)]
    tls_key: Option<PathBuf>,
    /// City: require relays to present a client certificate signed by this CA (mutual TLS).
    #[arg(long, global = true)]
    client_ca: Option<PathBuf>,
    /// Relay: client certificate (PEM) to present to the city (with --client-key).
    #[arg(long, global = true)]
    client_cert: Option<PathBuf>,
    /// Relay: the client certificate's private key (PEM).
    #[arg(long, global = true)]
    client_key: Option<PathBuf>,
    /// Storage engine of a new store (an existing store keeps its own; default redb).
    #[arg(long, global = true, env = "SCHOOLSYNC_ENGINE", value_parser = ["redb", "sled"])]
    engine: Option<String>,
}

/// The city operator's enrolment commands.
#[derive(Debug, Subcommand)]
enum Admin {
    /// Issue a credential for one school machine. 为学校电脑办理凭证
    EnrollSchool {
        /// The school's 10-digit code.
        #[arg(long)]
        school: String,
        /// Its county code.
        #[arg(long)]
        county: String,
        #[command(flatten)]
        out: AdminOut,
    },
    /// Issue a credential for a county relay. 为县区中继办理凭证
    EnrollRelay {
        #[arg(long)]
        county: String,
        #[command(flatten)]
        out: AdminOut,
    },
    /// Issue a read-only oversight credential: the whole city, or one county. 办理查看凭证
    IssueViewer {
        #[arg(long)]
        county: Option<String>,
        #[command(flatten)]
        out: AdminOut,
    },
    /// Revoke a credential by its id; relays apply it on their next contact with the city.
    /// 吊销凭证
    Revoke {
        id: String,
        #[command(flatten)]
        out: AdminOut,
    },
    /// List every credential issued. 列出凭证
    Credentials {
        #[command(flatten)]
        out: AdminOut,
    },
}

#[derive(Debug, Args)]
struct AdminOut {
    /// Where to write the credential file (default: a name like
    /// school-2113000001-s-xxxx.credential in the current folder).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The running city's URL (default https://localhost:<port of --listen>).
    #[arg(long)]
    url: Option<String>,
    /// CA certificate of the city's certificate (default: the config's `ca`, or ca.pem beside
    /// --tls-cert).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
            println!(
                "relay client certificate and key (mTLS):    {} {}",
                files.client_cert.display(),
                files.client_key.display()
            );
            return Ok(());
        }
        Command::City {
            common,
            admin: Some(admin),
        } => return run_admin(&file, common, admin),
        Command::City {
            common,
            admin: None,
        } => (common, None),
        Command::Relay {
            common,
            county,
            upstream,
            ca,
            credential,
        } => (common, Some((county, upstream, ca, credential))),
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
    // Mutual TLS (city only): relays must then present a client certificate from this CA.
    let client_ca = match relay {
        None => common.client_ca.clone().or(file.client_ca.clone()),
        Some(_) => None,
    };
    let tls = schoolsync_server::tls::server_config_with_clients(
        &tls_cert,
        &tls_key,
        client_ca.as_deref(),
    )?;
    let (role, upstream, credential) = match relay {
        None => (Role::City, None, None),
        Some((county, upstream, ca, credential)) => {
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
            let path = credential
                .or(file.credential.clone())
                .context("--credential is required for a relay (the city makes it: city enroll-relay --county CODE)")?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read the credential {}", path.display()))?;
            let credential: CredentialFile = toml::from_str(&text)
                .with_context(|| format!("{} is not a credential file", path.display()))?;
            let claims = schoolsync_protocol::auth::peek_claims(&credential.token)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
            if claims.role != schoolsync_protocol::auth::Role::Relay
                || claims.county.as_ref() != Some(&county)
            {
                return Err(anyhow!(
                    "{} is not a credential for the relay of county {county}",
                    path.display()
                ));
            }
            let identity = match (
                common.client_cert.clone().or(file.client_cert.clone()),
                common.client_key.clone().or(file.client_key.clone()),
            ) {
                (Some(cert), Some(key)) => {
                    let mut pem = std::fs::read(&cert)
                        .with_context(|| format!("cannot read {}", cert.display()))?;
                    pem.extend(
                        std::fs::read(&key)
                            .with_context(|| format!("cannot read {}", key.display()))?,
                    );
                    Some(pem)
                }
                (None, None) => None,
                _ => return Err(anyhow!("--client-cert and --client-key go together")),
            };
            (
                Role::Relay { county },
                Some(Upstream::with_identity(
                    &url,
                    Some(&pem),
                    identity.as_deref(),
                )?),
                Some(credential),
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
        credential,
        body_timeout_ms: schoolsync_server::api::BODY_TIMEOUT_MS,
        relay_client_cert_required: client_ca.is_some(),
        oversight: file.oversight.clone(),
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

/// Runs one enrolment command against the city (through it if it runs, else on its store).
fn run_admin(file: &FileConfig, common: Common, command: Admin) -> anyhow::Result<()> {
    let data_dir = common
        .data_dir
        .or(file.data_dir.clone())
        .context("--data-dir is required (flag or config file): the city's data folder")?;
    let listen = common
        .listen
        .or(file.listen.clone())
        .unwrap_or_else(|| "0.0.0.0:8443".to_owned());
    let port = listen.rsplit(':').next().unwrap_or("8443").to_owned();
    let issue = |role, school: Option<String>, county: Option<String>| {
        Action::Issue(IssueRequest {
            role,
            school,
            county,
        })
    };
    let (action, out) = match command {
        Admin::EnrollSchool {
            school,
            county,
            out,
        } => (issue(CredRole::School, Some(school), Some(county)), out),
        Admin::EnrollRelay { county, out } => (issue(CredRole::Relay, None, Some(county)), out),
        Admin::IssueViewer { county, out } => (issue(CredRole::Viewer, None, county), out),
        Admin::Revoke { id, out } => (Action::Revoke(id), out),
        Admin::Credentials { out } => (Action::List, out),
    };
    let ca = out.ca.clone().or(file.ca.clone()).or_else(|| {
        common
            .tls_cert
            .clone()
            .or(file.tls_cert.clone())
            .map(|c| c.with_file_name("ca.pem"))
    });
    let target = admin::Target {
        data_dir,
        url: out
            .url
            .clone()
            .unwrap_or_else(|| format!("https://localhost:{port}")),
        ca_pem: ca.and_then(|p| std::fs::read(p).ok()),
    };
    match admin::run(&target, action)? {
        Outcome::Issued { claims, file } => {
            let path = out
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from(admin::default_file_name(&claims)));
            schoolsync_store::secret::write_private(&path, file.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            if out.json {
                println!(
                    "{}",
                    serde_json::json!({ "credential": record_json(&claims, None), "file": path.display().to_string() })
                );
            } else {
                println!(
                    "issued {} ({}) -> {}\nGive this file to the device over a trusted channel; it is its key.\n已生成凭证文件，请通过可靠渠道交给该设备，不要外传。",
                    claims.id,
                    schoolsync_server::auth::scope_words(&claims),
                    path.display()
                );
            }
        }
        Outcome::Revoked(record) => {
            if out.json {
                println!(
                    "{}",
                    record_json(&record.claims, record.revoked_at.as_deref())
                );
            } else {
                println!(
                    "revoked {} ({}); relays apply it on their next contact with the city.\n已吊销。",
                    record.claims.id,
                    schoolsync_server::auth::scope_words(&record.claims)
                );
            }
        }
        Outcome::Listed(records) => {
            if out.json {
                let all: Vec<_> = records
                    .iter()
                    .map(|r| record_json(&r.claims, r.revoked_at.as_deref()))
                    .collect();
                println!("{}", serde_json::Value::Array(all));
            } else {
                for r in records {
                    println!(
                        "{:<20} {:<7} {:<28} issued {}{}",
                        r.claims.id,
                        r.claims.role.name(),
                        schoolsync_server::auth::scope_words(&r.claims),
                        r.claims.issued_at,
                        r.revoked_at
                            .map(|at| format!(", REVOKED {at}"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(())
}

/// A credential's record for `--json` output, with whole field names (tokens use one-letter
/// ones to stay short on the wire).
fn record_json(
    claims: &schoolsync_protocol::auth::Claims,
    revoked_at: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({
        "id": claims.id,
        "role": claims.role.name(),
        "school": claims.school,
        "county": claims.county,
        "issued_at": claims.issued_at,
        "revoked_at": revoked_at,
    })
}
