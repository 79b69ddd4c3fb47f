//! schoolsync's county relay and city server: one node type, two roles.
//!
//! Reading order: [`node`] (store, document cache, the upstream side of sync) → [`api`] (HTTP
//! endpoints) → [`http`] (TLS accept loop, limits, graceful shutdown) → [`forward`] (a relay's
//! push/pull towards the city) → [`config`] (flags and config file) → `main.rs`.
//! [`auth`] verifies credentials and holds the city's signing authority; [`admin`] is the
//! operator's enrolment commands. [`certs`] makes a trial CA; [`tls`] loads certificates.

pub mod admin;
pub mod api;
pub mod auth;
pub mod certs;
pub mod config;
pub mod forward;
pub mod http;
pub mod node;
pub mod oversight;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use schoolsync_store::upstream::Upstream;
use schoolsync_store::DocStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::auth::{Authority, AuthorityError, Gate};
use crate::forward::ForwardStatus;
use crate::node::{Node, Role};
use schoolsync_protocol::auth::{CredentialFile, Trust};

/// Everything a node needs to start, validated.
pub struct Settings {
    pub role: Role,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    /// The city, for a relay.
    pub upstream: Option<Upstream>,
    pub forward_interval_ms: u64,
    /// A relay's own credential (its token towards the city, and the city key it verifies its
    /// schools with). Required for a relay; the city makes its own key.
    pub credential: Option<CredentialFile>,
    /// How long a request body may take to arrive. Default [`api::BODY_TIMEOUT_MS`].
    pub body_timeout_ms: u64,
    /// Mutual TLS: refuse relay credentials on connections without a verified client
    /// certificate (`tls` must then ask for one: [`tls::server_config_with_clients`]).
    pub relay_client_cert_required: bool,
    /// School calendar and small-cell suppression for the oversight figures.
    pub oversight: oversight::http::OversightConfig,
    /// Storage engine of a new store; an existing store keeps its own (another is refused).
    /// `None`: the recorded engine, else `schoolsync_store::DEFAULT_ENGINE`.
    pub engine: Option<schoolsync_store::Engine>,
}

/// A started node; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    pub forward_status: Arc<std::sync::Mutex<ForwardStatus>>,
    pub gate: Arc<Gate>,
    /// The city's authority (`None` on a relay).
    pub authority: Option<Arc<Authority>>,
    /// Counts the oversight indexer's passes (tests wait for a pass after a change).
    pub indexed: tokio::sync::watch::Receiver<u64>,
    /// Wakes the oversight indexer.
    pub index_signal: Arc<tokio::sync::Notify>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: String,
        source: schoolsync_store::StoreError,
    },
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error("a relay needs its credential (enroll-relay at the city makes one)")]
    NoCredential,
}

/// Milliseconds since the Unix epoch, from the system clock (servers' only clock reading).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Opens the store and serves on `listener` (already bound: tests use `127.0.0.1:0`).
pub async fn start(settings: Settings, listener: TcpListener) -> Result<Running, StartError> {
    let store_dir = settings.data_dir.join("store");
    // No whole-file check on open: a city's store is large; documents are verified on load.
    let store = DocStore::open_with(&store_dir, settings.engine, false).map_err(|source| {
        StartError::Store {
            path: store_dir.display().to_string(),
            source,
        }
    })?;
    let (gate, authority) = match &settings.role {
        Role::City => {
            let authority = Authority::open(&settings.data_dir)?;
            authority.ensure_admin(&store, &settings.data_dir, now_ms())?;
            let trust = authority.trust(&store)?;
            (Gate::new(None, trust), Some(Arc::new(authority)))
        }
        Role::Relay { county } => {
            let own = settings
                .credential
                .as_ref()
                .ok_or(StartError::NoCredential)?;
            let trust = match auth::stored_trust(&store).map_err(|source| StartError::Store {
                path: store_dir.display().to_string(),
                source,
            })? {
                Some(t) if t.city_key == own.city_key => t,
                _ => Trust {
                    city_key: own.city_key.clone(),
                    revoked: Default::default(),
                },
            };
            (Gate::new(Some(county.clone()), trust), None)
        }
    };
    let gate = Arc::new(gate);
    let node = Arc::new(Node::new(settings.role.clone(), store));
    let committed = Arc::new(tokio::sync::Notify::new());
    let index_signal = Arc::new(tokio::sync::Notify::new());
    let (indexed_tx, indexed) = tokio::sync::watch::channel(0u64);
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let addr = listener.local_addr()?;
    let forward_status = Arc::new(std::sync::Mutex::new(ForwardStatus::default()));
    let app = api::router(api::AppState {
        node: node.clone(),
        committed: committed.clone(),
        gate: gate.clone(),
        authority: authority.clone(),
        body_timeout_ms: settings.body_timeout_ms,
        relay_client_cert_required: settings.relay_client_cert_required,
        index_signal: index_signal.clone(),
        oversight: Arc::new(settings.oversight.clone()),
    });
    let mut tasks = Vec::new();
    let mut rx = shutdown_rx.clone();
    tasks.push(tokio::spawn(http::serve(
        listener,
        settings.tls,
        app,
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        },
    )));
    tasks.push(tokio::spawn(oversight::indexer::run(
        node.clone(),
        index_signal.clone(),
        Arc::new(indexed_tx),
        shutdown_rx.clone(),
    )));
    if let Some(upstream) = settings.upstream {
        let upstream = match &settings.credential {
            Some(c) => upstream.with_credential(&c.token),
            None => upstream,
        };
        tasks.push(tokio::spawn(forward::run(
            node.clone(),
            gate.clone(),
            upstream,
            committed,
            forward_status.clone(),
            shutdown_rx,
            settings.forward_interval_ms,
        )));
    }
    tracing::info!(%addr, role = settings.role.name(), "listening");
    Ok(Running {
        addr,
        node,
        forward_status,
        gate,
        authority,
        indexed,
        index_signal,
        shutdown,
        tasks,
    })
}

impl Running {
    /// Stops accepting, lets open requests finish, stops the forwarder, and closes the store.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        drop(self.node);
    }
}
