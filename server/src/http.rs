//! The HTTPS accept loop: TLS (rustls) in front of an axum router, with a cap on connections,
//! handshake and header timeouts, and graceful shutdown.
//!
//! Takes an already-bound listener and a shutdown future, so tests bind `127.0.0.1:0`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Open connections at once: 554 schools syncing every few minutes need a few dozen; the cap
/// keeps a flood from exhausting file descriptors.
pub const CONNECTIONS_MAX: usize = 1024;
/// A TLS handshake slower than this is dropped (slow-loris protection).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 15_000;
/// Request headers must arrive within this.
pub const HEADER_TIMEOUT_MS: u64 = 15_000;
/// After shutdown is asked, open connections get this long to finish their request.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Serves `app` over TLS on `listener` until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(
                Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // With mutual TLS configured, a certificate presented here was verified in the
            // handshake; the handlers hold relays to it.
            let certificate = PeerCertificate(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .is_some_and(|c| !c.is_empty()),
            );
            let service = TowerToHyperService::new(service.layer(axum::Extension(certificate)));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(HEADER_TIMEOUT_MS));
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(Duration::from_millis(SHUTDOWN_GRACE_MS)) => tracing::warn!("shutdown grace period over; closing"),
    }
}

/// Whether the connection's client presented a (verified) certificate.
#[derive(Clone, Copy, Debug)]
pub struct PeerCertificate(pub bool);

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
