//! schoolsync's county relay and city server: one node type, two roles.
//!
//! Reading order: [`node`] (store, document cache, the upstream side of sync) → [`api`] (HTTP
//! endpoints) → [`http`] (TLS accept loop, limits, graceful shutdown) → [`forward`] (a relay's
//! push/pull towards the city) → [`config`] (flags and config file) → `main.rs`.
//! [`certs`] makes a trial CA; [`tls`] loads certificates.

pub mod api;
pub mod certs;
pub mod config;
pub mod forward;
pub mod http;
pub mod node;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use schoolsync_store::upstream::Upstream;
use schoolsync_store::DocStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::forward::ForwardStatus;
use crate::node::{Node, Role};

/// Everything a node needs to start, validated.
pub struct Settings {
    pub role: Role,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    /// The city, for a relay.
    pub upstream: Option<Upstream>,
    pub forward_interval_ms: u64,
    /// Storage engine of a new store; an existing store keeps its own (another is refused).
    /// `None`: the recorded engine, else `schoolsync_store::DEFAULT_ENGINE`.
    pub engine: Option<schoolsync_store::Engine>,
}

/// A started node; [`Running::stop`] shuts it down gracefully.
pub struct Running {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    pub forward_status: Arc<std::sync::Mutex<ForwardStatus>>,
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
    let node = Arc::new(Node::new(settings.role.clone(), store));
    let committed = Arc::new(tokio::sync::Notify::new());
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let addr = listener.local_addr()?;
    let forward_status = Arc::new(std::sync::Mutex::new(ForwardStatus::default()));
    let app = api::router(api::AppState {
        node: node.clone(),
        committed: committed.clone(),
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
    if let Some(upstream) = settings.upstream {
        tasks.push(tokio::spawn(forward::run(
            node.clone(),
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
