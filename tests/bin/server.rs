//! A county relay or the city as a real process for the torture tests, which kill it with
//! SIGKILL. It runs the server library's own `start`, store and forwarder; only the command line
//! is this file's (a few `--name value` pairs), so the server's `main.rs` stays as it is.
//!
//! `server-under-test city|relay --listen ADDR --data-dir DIR --tls-cert PEM --tls-key PEM
//!  [--county CODE --upstream URL --ca PEM --credential FILE] [--forward-interval-ms MS]`; the
//! store's engine comes from `SCHOOLSYNC_ENGINE` (default: the recorded one, else the default
//! engine).

use std::collections::HashMap;
use std::process::ExitCode;

use schoolsync_protocol::ids::CountyTable;
use schoolsync_server::node::Role;
use schoolsync_server::Settings;
use schoolsync_store::upstream::Upstream;

fn main() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server-under-test: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let role = args.next().ok_or("role: city or relay")?;
    let rest: Vec<String> = args.collect();
    let flags: HashMap<&str, &str> = rest
        .chunks(2)
        .filter_map(|p| Some((p.first()?.trim_start_matches("--"), p.get(1)?.as_str())))
        .collect();
    let need = |name: &str| {
        flags
            .get(name)
            .copied()
            .ok_or(format!("--{name} is required"))
    };
    let tls = schoolsync_server::tls::server_config(
        need("tls-cert")?.as_ref(),
        need("tls-key")?.as_ref(),
    )?;
    let (role, upstream, credential) = if role == "relay" {
        let county = CountyTable::default()
            .parse(need("county")?)
            .map_err(|e| e.to_string())?;
        let ca = std::fs::read(need("ca")?)?;
        let credential: schoolsync_protocol::auth::CredentialFile =
            toml::from_str(&std::fs::read_to_string(need("credential")?)?)?;
        (
            Role::Relay { county },
            Some(Upstream::new(need("upstream")?, Some(&ca))?),
            Some(credential),
        )
    } else {
        (Role::City, None, None)
    };
    let engine = match std::env::var("SCHOOLSYNC_ENGINE") {
        Ok(name) => Some(name.parse::<schoolsync_store::Engine>()?),
        Err(_) => None,
    };
    let settings = Settings {
        role,
        data_dir: need("data-dir")?.into(),
        tls,
        upstream,
        forward_interval_ms: flags
            .get("forward-interval-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
        engine,
        credential,
        body_timeout_ms: schoolsync_server::api::BODY_TIMEOUT_MS,
        relay_client_cert_required: false,
        oversight: Default::default(),
    };
    let listen = need("listen")?.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        let running = schoolsync_server::start(settings, listener).await?;
        schoolsync_server::http::shutdown_signal().await;
        running.stop().await;
        Ok(())
    })
}
