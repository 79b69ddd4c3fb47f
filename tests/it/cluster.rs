//! The Cluster harness: a city and county relays started in-process on 127.0.0.1 with real TLS
//! (a fresh private CA per cluster), and schools as real agent processes pointed at them.
//! Nodes can be stopped and restarted on the same port, with their stores kept.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use schoolsync_protocol::auth::{Claims, CredentialFile, Role as Role_};
use schoolsync_protocol::ids::{CountyTable, DocId};
use schoolsync_server::auth::Authority;
use schoolsync_server::node::Role;
use schoolsync_server::{certs, Running, Settings};
use schoolsync_store::upstream::Upstream;

use crate::harness::School;

/// One node of the cluster, running or stopped.
pub struct NodeSlot {
    pub role: Role,
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    /// The city's URL, for a relay.
    pub upstream: Option<String>,
    /// A relay's credential, issued by the city.
    pub credential: Option<CredentialFile>,
    pub running: Option<Running>,
}

pub struct Cluster {
    pub rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub certs: certs::CertFiles,
    pub city: NodeSlot,
    pub relays: Vec<NodeSlot>,
    /// How long nodes wait for a request body (short in the bad-input suite).
    pub body_timeout_ms: u64,
    /// Mutual TLS between relays and the city.
    pub mtls: bool,
}

/// How long stories wait for something to converge before failing.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Relays forward on commit; this idle interval keeps feedback flowing in tests.
pub const TEST_FORWARD_INTERVAL_MS: u64 = 300;

impl Cluster {
    /// A cluster with a running city and no relays.
    pub fn start() -> Cluster {
        Cluster::start_with_body_timeout(schoolsync_server::api::BODY_TIMEOUT_MS)
    }

    /// The same, with nodes that give up on a request body after `body_timeout_ms`.
    pub fn start_with_body_timeout(body_timeout_ms: u64) -> Cluster {
        Cluster::start_with(body_timeout_ms, false)
    }

    /// A cluster whose city requires relays to present a client certificate (mutual TLS).
    pub fn start_mtls() -> Cluster {
        Cluster::start_with(schoolsync_server::api::BODY_TIMEOUT_MS, true)
    }

    fn start_with(body_timeout_ms: u64, mtls: bool) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let certs = certs::generate(&dir.path().join("certs"), &["127.0.0.1".to_owned()]).unwrap();
        let city_dir = dir.path().join("city");
        let mut cluster = Cluster {
            rt,
            certs,
            city: NodeSlot {
                role: Role::City,
                data_dir: city_dir,
                addr: "127.0.0.1:0".parse().unwrap(),
                upstream: None,
                credential: None,
                running: None,
            },
            relays: Vec::new(),
            dir,
            body_timeout_ms,
            mtls,
        };
        cluster.city.addr = cluster.start_slot(None);
        cluster
    }

    /// Adds and starts a relay for `county`; returns its index.
    pub fn add_relay(&mut self, county: &str) -> usize {
        let county = CountyTable::default().parse(county).unwrap();
        let (_, credential) = self.issue(Role_::Relay, None, Some(county.as_str()));
        let slot = NodeSlot {
            role: Role::Relay {
                county: county.clone(),
            },
            data_dir: self
                .dir
                .path()
                .join(format!("relay-{county}-{}", self.relays.len())),
            addr: "127.0.0.1:0".parse().unwrap(),
            upstream: Some(self.city_url()),
            credential: Some(credential),
            running: None,
        };
        self.relays.push(slot);
        let i = self.relays.len() - 1;
        self.relays[i].addr = self.start_slot(Some(i));
        i
    }

    fn slot(&mut self, relay: Option<usize>) -> &mut NodeSlot {
        match relay {
            None => &mut self.city,
            Some(i) => &mut self.relays[i],
        }
    }

    /// Starts a node on its port (a fresh port the first time).
    fn start_slot(&mut self, relay: Option<usize>) -> SocketAddr {
        let city_mtls = self.mtls && relay.is_none();
        let tls = schoolsync_server::tls::server_config_with_clients(
            &self.certs.server_cert,
            &self.certs.server_key,
            city_mtls.then_some(self.certs.ca_cert.as_path()),
        )
        .unwrap();
        let ca = std::fs::read(&self.certs.ca_cert).unwrap();
        let identity = self.mtls.then(|| {
            let mut pem = std::fs::read(&self.certs.client_cert).unwrap();
            pem.extend(std::fs::read(&self.certs.client_key).unwrap());
            pem
        });
        let slot = match relay {
            None => &self.city,
            Some(i) => &self.relays[i],
        };
        let settings = Settings {
            role: slot.role.clone(),
            data_dir: slot.data_dir.clone(),
            tls,
            upstream: slot
                .upstream
                .as_ref()
                .map(|u| Upstream::with_identity(u, Some(&ca), identity.as_deref()).unwrap()),
            engine: None,
            forward_interval_ms: TEST_FORWARD_INTERVAL_MS,
            credential: slot.credential.clone(),
            body_timeout_ms: self.body_timeout_ms,
            relay_client_cert_required: city_mtls,
            oversight: Default::default(),
        };
        let addr = slot.addr;
        let running = self.rt.block_on(async move {
            // Rebinding the same port right after a stop can race the old socket's close.
            let deadline = Instant::now() + Duration::from_secs(5);
            let listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => panic!("cannot bind {addr}: {e}"),
                }
            };
            schoolsync_server::start(settings, listener).await.unwrap()
        });
        let addr = running.addr;
        self.slot(relay).running = Some(running);
        addr
    }

    pub fn stop_city(&mut self) {
        let running = self.city.running.take().expect("city running");
        self.rt.block_on(running.stop());
    }

    pub fn restart_city(&mut self) {
        self.start_slot(None);
    }

    pub fn stop_relay(&mut self, i: usize) {
        let running = self.relays[i].running.take().expect("relay running");
        self.rt.block_on(running.stop());
    }

    pub fn restart_relay(&mut self, i: usize) {
        self.start_slot(Some(i));
    }

    /// A running relay.
    pub fn relay(&self, i: usize) -> &Running {
        self.relays[i].running.as_ref().expect("relay running")
    }

    pub fn city_url(&self) -> String {
        format!("https://{}", self.city.addr)
    }

    pub fn relay_url(&self, i: usize) -> String {
        format!("https://{}", self.relays[i].addr)
    }

    /// The city's authority (the city must be running).
    pub fn authority(&self) -> std::sync::Arc<Authority> {
        self.city
            .running
            .as_ref()
            .expect("city running")
            .authority
            .clone()
            .expect("the city has an authority")
    }

    /// Issues a credential at the city, as `enroll-*` would.
    pub fn issue(
        &self,
        role: Role_,
        school: Option<&str>,
        county: Option<&str>,
    ) -> (Claims, CredentialFile) {
        let city = self.city.running.as_ref().expect("city running");
        self.authority()
            .issue(
                &city.node.store,
                role,
                school.map(|s| s.parse().unwrap()),
                county.map(|c| CountyTable::default().parse(c).unwrap()),
                schoolsync_server::now_ms(),
            )
            .unwrap()
    }

    /// Writes a credential for `school` of `county` into a file and returns its path.
    pub fn credential_file(&self, school: &str, county: &str) -> (Claims, PathBuf) {
        let (claims, file) = self.issue(Role_::School, Some(school), Some(county));
        let path = self
            .dir
            .path()
            .join(format!("{school}-{}.credential", claims.id));
        std::fs::write(&path, file.to_text(&claims)).unwrap();
        (claims, path)
    }

    /// A school whose agent syncs with `upstreams` (in order), trusting this cluster's CA, with
    /// a credential the city issued for it.
    pub fn school(
        &self,
        school: &str,
        county: &str,
        classes: usize,
        upstreams: &[String],
    ) -> School {
        self.school_on(None, school, county, classes, upstreams)
    }

    /// [`Cluster::school`] with its store on `engine` (`sled` or `redb`; `None`: the default).
    pub fn school_on(
        &self,
        engine: Option<&str>,
        school: &str,
        county: &str,
        classes: usize,
        upstreams: &[String],
    ) -> School {
        let s = School::empty();
        if let Some(engine) = engine {
            s.file("agent.toml", format!("engine = \"{engine}\"\n").as_bytes());
        }
        let mut args = vec![
            "init",
            "--school",
            school,
            "--county",
            county,
            "--name",
            "测试学校",
        ];
        let ca = self.certs.ca_cert.to_str().unwrap().to_owned();
        for u in upstreams {
            args.push("--upstream");
            args.push(u);
        }
        args.push("--ca");
        args.push(&ca);
        let (_, credential) = self.credential_file(school, county);
        let credential = credential.to_str().unwrap().to_owned();
        args.push("--credential");
        args.push(&credential);
        s.agent(&args).ok();
        let path = s.file(
            "classes.csv",
            crate::harness::classes_csv(classes).as_bytes(),
        );
        s.agent(&["import", "classes", path.to_str().unwrap()]).ok();
        s
    }

    /// Attendance records of `doc` as the city (or relay `i`) holds them; 0 if absent or stopped.
    pub fn attendance_at(&self, relay: Option<usize>, doc: &str) -> usize {
        let slot = match relay {
            None => &self.city,
            Some(i) => &self.relays[i],
        };
        let Some(running) = &slot.running else {
            return 0;
        };
        let id: DocId = doc.parse().unwrap();
        let loaded = running.node.store.load(&id).unwrap();
        if !loaded.exists() {
            return 0;
        }
        schoolsync_protocol::doc::read_month(&loaded.doc)
            .unwrap()
            .attendance
            .len()
    }

    /// Waits until `check` holds, failing the test after [`CONVERGE_TIMEOUT`].
    #[track_caller]
    pub fn wait_until(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + CONVERGE_TIMEOUT;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut all: Vec<Running> = self
            .relays
            .iter_mut()
            .filter_map(|r| r.running.take())
            .collect();
        all.extend(self.city.running.take());
        self.rt.block_on(async {
            for r in all {
                r.stop().await;
            }
        });
    }
}
