//! A fault-injecting TCP proxy for end-to-end tests: it sits on loopback between a client and a
//! real server and can cut connections (closed or reset), cap their bandwidth, delay them,
//! truncate or stall a response mid-body, or refuse service.
//!
//! The proxy runs on its own thread with its own tokio runtime, so synchronous `#[test]`s and
//! code already inside a runtime use it alike. Dropping the [`Proxy`] stops the listener, closes
//! every connection and joins that thread.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Largest chunk read and forwarded at once.
const CHUNK: usize = 16 * 1024;

/// What the proxy does to connections. Settings are taken when a connection is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Cut every proxied connection (both directions, abruptly: drop the sockets) this long after
    /// it was accepted. None = never.
    pub cut_after: Option<Duration>,
    /// Cap on throughput per direction per connection, bytes per second (0 counts as 1).
    /// None = unlimited.
    pub bytes_per_sec: Option<u64>,
    /// Extra delay before forwarding each chunk. None = none.
    pub delay: Option<Duration>,
    /// Close the connection (cleanly, both ways) once this many bytes went server -> client:
    /// a response truncated mid-body. None = never.
    pub truncate_down_after: Option<u64>,
    /// Stop forwarding server -> client after this many bytes, keeping the connection open: a
    /// response stalled mid-body (the client's timeout must end it). None = never.
    pub stall_down_after: Option<u64>,
    /// Close with a TCP reset (RST) rather than a clean close, whenever the proxy ends a
    /// connection.
    pub reset: bool,
}

/// Counters since the proxy started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections accepted, including those closed at once because the proxy was down.
    pub accepted: u64,
    /// Connections the proxy closed itself: by `cut_after`, by `set_down(true)`, or on arrival
    /// while down. Connections ended by either peer, or by dropping the proxy, are not counted.
    pub cut: u64,
    /// Bytes forwarded client -> server.
    pub bytes_up: u64,
    /// Bytes forwarded server -> client.
    pub bytes_down: u64,
}

/// State shared between the handle and the background thread.
#[derive(Default)]
struct Shared {
    faults: Mutex<Faults>,
    accepted: AtomicU64,
    cut: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running proxy; see the module documentation.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    down: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards each accepted connection to `upstream`.
    pub fn start(upstream: SocketAddr, faults: Faults) -> Proxy {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            faults: Mutex::new(faults),
            ..Shared::default()
        });
        let (down, down_rx) = watch::channel(false);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let listener = TcpListener::from_std(listener).unwrap();
                        serve(listener, upstream, shared, down_rx, shutdown_rx).await;
                    });
                }
            })
            .unwrap();
        Proxy {
            addr,
            shared,
            down,
            shutdown,
            thread: Some(thread),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// While down, new connections are accepted and immediately closed, and existing connections
    /// are cut.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// Replace the fault settings for new connections.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap() = faults;
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            accepted: s.accepted.load(Ordering::SeqCst),
            cut: s.cut.load(Ordering::SeqCst),
            bytes_up: s.bytes_up.load(Ordering::SeqCst),
            bytes_down: s.bytes_down.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

/// The accept loop: runs until shutdown, then closes every connection.
async fn serve(
    listener: TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    // Handed to each connection; `shutdown` itself stays borrowed by the select below.
    let stop = shutdown.clone();
    loop {
        tokio::select! {
            // A dropped sender also means stop.
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let client = match accepted {
                    Ok((client, _)) => client,
                    Err(_) => {
                        // Out of descriptors or an aborted handshake: don't spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if *down.borrow() {
                    shared.cut.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let faults = *shared.faults.lock().unwrap();
                connections.spawn(connection(
                    client,
                    upstream,
                    faults,
                    Arc::clone(&shared),
                    down.clone(),
                    stop.clone(),
                ));
            }
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// One proxied connection, from accept until it ends, is cut, or the proxy stops.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    shared: Arc<Shared>,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let cut_at = faults.cut_after.map(|after| Instant::now() + after);
    let cut_deadline = async {
        match cut_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    // Owns both sockets: dropping this future is the cut.
    let forward = async {
        let server = TcpStream::connect(upstream).await?;
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        if faults.reset {
            // A zero linger turns every close into a reset.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        // Borrowed halves: dropping them sends nothing, so a cut with `reset` is a bare RST.
        let (mut client, mut server) = (client, server);
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = Faults {
            truncate_down_after: None,
            stall_down_after: None,
            ..faults
        };
        tokio::try_join!(
            pump(client_read, server_write, up, &shared.bytes_up),
            pump(server_read, client_write, faults, &shared.bytes_down),
        )?;
        std::io::Result::Ok(())
    };
    let cut = tokio::select! {
        // Ended by a peer (both directions closed, or an error): not a cut.
        _ = forward => false,
        () = cut_deadline => true,
        Ok(_) = down.wait_for(|down| *down) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    };
    if cut {
        shared.cut.fetch_add(1, Ordering::SeqCst);
    }
}

/// Copies one direction until EOF (then passes the half-close on) or an error, applying the
/// delay and the bandwidth cap to each chunk.
async fn pump(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    faults: Faults,
    forwarded: &AtomicU64,
) -> std::io::Result<()> {
    let rate = faults.bytes_per_sec.map(|rate| rate.max(1));
    // A tenth of a second's worth at most, so pacing is smooth.
    let chunk = match rate {
        Some(rate) => usize::try_from(rate / 10).unwrap_or(CHUNK).clamp(1, CHUNK),
        None => CHUNK,
    };
    let mut buf = vec![0u8; chunk];
    // When the simulated link finishes sending what it was last given; no credit builds up
    // while idle, and timer overshoot is not added up chunk after chunk.
    let mut link_free = Instant::now();
    let mut sent: u64 = 0;
    loop {
        if faults.stall_down_after.is_some_and(|at| sent >= at) {
            // Hold the connection open and forward nothing more.
            return std::future::pending().await;
        }
        let room = [faults.truncate_down_after, faults.stall_down_after]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_sub(sent))
            .min()
            .map_or(buf.len(), |r| {
                usize::try_from(r).unwrap_or(buf.len()).min(buf.len())
            });
        if room == 0 {
            // Truncated: close both ways as if the server had ended the response there.
            let _ = to.shutdown().await;
            return Err(std::io::Error::other("truncated by the proxy"));
        }
        let n = from.read(&mut buf[..room]).await?;
        if n == 0 {
            // The peer may be gone already; the other direction reports that.
            let _ = to.shutdown().await;
            return Ok(());
        }
        if let Some(delay) = faults.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(rate) = rate {
            link_free =
                link_free.max(Instant::now()) + Duration::from_secs_f64(n as f64 / rate as f64);
            tokio::time::sleep_until(link_free).await;
        }
        to.write_all(&buf[..n]).await?;
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
        sent += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::Instant;

    use super::*;

    /// A thread-per-connection echo server on loopback; it lives until the test process ends.
    fn echo_server() -> SocketAddr {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut reader, &mut stream);
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        addr
    }

    /// A client with a read timeout, so no test can hang on a read.
    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream
    }

    /// Recognisable bytes: position-dependent, so reordering or loss shows.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Sends `data` from another thread (so large echoes cannot deadlock) and reads it back.
    fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
        let mut writer = stream.try_clone().unwrap();
        let outgoing = data.to_vec();
        let sender = std::thread::spawn(move || writer.write_all(&outgoing).unwrap());
        let mut echoed = vec![0u8; data.len()];
        stream.read_exact(&mut echoed).unwrap();
        sender.join().unwrap();
        echoed
    }

    /// The connection is closed by the far side: EOF or a reset, not a read timeout.
    #[track_caller]
    fn assert_closed(stream: &mut TcpStream) {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Ok(n) => panic!("expected a closed connection, read {n} bytes"),
            Err(e) => assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "expected a closed connection, the read timed out"
            ),
        }
    }

    /// Counters are bumped just after a write, so they may trail what the client saw briefly.
    #[track_caller]
    fn wait_for_stats(proxy: &Proxy, want: impl Fn(&ProxyStats) -> bool) -> ProxyStats {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stats = proxy.stats();
            if want(&stats) {
                return stats;
            }
            assert!(Instant::now() < deadline, "stats never settled: {stats:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn bytes_pass_through_unchanged() {
        let proxy = Proxy::start(echo_server(), Faults::default());
        let mut client = connect(proxy.addr());
        let data = pattern(200 * 1024);
        assert!(round_trip(&mut client, &data) == data, "echo differs");
        // A half-close passes through both ways: the echo server ends its side in turn.
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        let len = data.len() as u64;
        let stats = wait_for_stats(&proxy, |s| s.bytes_up == len && s.bytes_down == len);
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.cut, 0);
    }

    #[test]
    fn set_faults_applies_to_new_connections() {
        let proxy = Proxy::start(echo_server(), Faults::default());
        proxy.set_faults(Faults {
            delay: Some(Duration::from_millis(60)),
            ..Faults::default()
        });
        let mut client = connect(proxy.addr());
        let started = Instant::now();
        assert_eq!(round_trip(&mut client, b"ping"), b"ping");
        // Delayed once on the way up and once on the way down.
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn connection_is_cut_after_the_deadline() {
        let proxy = Proxy::start(
            echo_server(),
            Faults {
                cut_after: Some(Duration::from_millis(200)),
                ..Faults::default()
            },
        );
        let started = Instant::now();
        let mut client = connect(proxy.addr());
        assert_eq!(
            round_trip(&mut client, b"before the cut"),
            b"before the cut"
        );
        assert_closed(&mut client);
        assert!(started.elapsed() >= Duration::from_millis(150));
        let stats = wait_for_stats(&proxy, |s| s.cut == 1);
        assert_eq!(stats.accepted, 1);
    }

    #[test]
    fn bandwidth_is_capped() {
        let proxy = Proxy::start(
            echo_server(),
            Faults {
                bytes_per_sec: Some(256 * 1024),
                ..Faults::default()
            },
        );
        let mut client = connect(proxy.addr());
        let data = pattern(64 * 1024);
        let started = Instant::now();
        assert!(round_trip(&mut client, &data) == data, "echo differs");
        // 64 KiB at 256 KiB/s is a quarter of a second; a lower bound only (machines are noisy).
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "took only {took:?}");
    }

    #[test]
    fn down_refuses_and_cuts_then_recovers() {
        let proxy = Proxy::start(echo_server(), Faults::default());
        let mut before = connect(proxy.addr());
        assert_eq!(round_trip(&mut before, b"up"), b"up");

        proxy.set_down(true);
        assert_closed(&mut before);
        let mut refused = connect(proxy.addr());
        assert_closed(&mut refused);
        wait_for_stats(&proxy, |s| s.accepted == 2 && s.cut == 2);

        proxy.set_down(false);
        let mut after = connect(proxy.addr());
        assert_eq!(round_trip(&mut after, b"back"), b"back");
        let stats = wait_for_stats(&proxy, |s| s.bytes_down == 6);
        assert_eq!(
            stats,
            ProxyStats {
                accepted: 3,
                cut: 2,
                bytes_up: 6,
                bytes_down: 6,
            }
        );
    }

    #[tokio::test]
    async fn works_inside_a_runtime_and_drop_closes_everything() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let proxy = Proxy::start(echo_server(), Faults::default());
        let addr = proxy.addr();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client.write_all(b"async").await.unwrap();
        let mut echoed = [0u8; 5];
        client.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"async");

        drop(proxy);
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(2), client.read(&mut byte))
            .await
            .expect("the connection outlived the proxy");
        assert!(matches!(read, Ok(0) | Err(_)), "read {read:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    /// Reads until EOF, an error or the read timeout; returns the bytes and how it ended.
    fn read_all(stream: &mut TcpStream) -> (Vec<u8>, ErrorKind) {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return (out, ErrorKind::UnexpectedEof),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, e.kind()),
            }
        }
    }

    #[test]
    fn a_response_is_truncated_stalled_or_reset_mid_body() {
        let echo = echo_server();
        let data = pattern(4000);
        // Truncated: the first 1000 bytes, then a clean close.
        let proxy = Proxy::start(
            echo,
            Faults {
                truncate_down_after: Some(1000),
                ..Faults::default()
            },
        );
        let mut stream = connect(proxy.addr());
        stream.write_all(&data).unwrap();
        let (got, end) = read_all(&mut stream);
        assert_eq!(got, data[..1000], "{end:?}");
        assert!(
            !matches!(end, ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{end:?}"
        );
        // Stalled: the first 1000 bytes, then nothing while the connection stays open.
        proxy.set_faults(Faults {
            stall_down_after: Some(1000),
            ..Faults::default()
        });
        let mut stream = connect(proxy.addr());
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        stream.write_all(&data).unwrap();
        let (got, end) = read_all(&mut stream);
        assert_eq!(got, data[..1000]);
        assert!(
            matches!(end, ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{end:?}"
        );
        // Reset: the cut arrives as a TCP reset.
        proxy.set_faults(Faults {
            cut_after: Some(Duration::from_millis(100)),
            reset: true,
            ..Faults::default()
        });
        let mut stream = connect(proxy.addr());
        stream.write_all(b"x").unwrap();
        let (_, end) = read_all(&mut stream);
        assert_eq!(end, ErrorKind::ConnectionReset);
    }
}
