//! Identity, scope and hardening (issue 4), against real nodes over real TLS:
//! - the scope matrix: each role × own school / other school / other county × read / write,
//!   every cell asserted at the relay and at the city;
//! - the bad-input suite: malformed, truncated, oversized, slow, wrong-type, unknown-version,
//!   corrupt and rule-breaking requests, each answered with a 4xx `{code, message}`, the node
//!   still answering and no document changed;
//! - revocation reaching the relay; credentials on disk readable by their owner only.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use automerge::{ActorId, AutoCommit};
use schoolsync_protocol::auth::Role;
use schoolsync_protocol::doc;
use schoolsync_protocol::ids::{fnv1a64, DocId, Month};
use schoolsync_protocol::records::{Attendance, Day};
use schoolsync_protocol::sync::{self, DocSync, SchoolSync, SyncRequest, CONTENT_TYPE};
use schoolsync_server::Running;

use crate::cluster::Cluster;
use crate::harness::Run;

const X: &str = "130821";
const Y: &str = "130822";
const A: &str = "2113000001";
const B: &str = "2113000002";
const C: &str = "2113000003";

/// An answer: status and JSON body (`Null` when the body is not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    json: serde_json::Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
}

fn http(cluster: &Cluster) -> reqwest::Client {
    let ca = std::fs::read(&cluster.certs.ca_cert).unwrap();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// One request; `token` `None` sends no Authorization header.
fn call(
    cluster: &Cluster,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let client = http(cluster);
    cluster.rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, format!("{base}{path}")).body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        Answer {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A sync push of one new, valid attendance record (or a rule-breaking one) for `school`.
fn push(school: &str, valid: bool) -> SyncRequest {
    let id = DocId::records(&school.parse().unwrap(), Month::of(day()));
    let mut d = doc::skeleton(&id, ActorId::random()).unwrap();
    let record = Attendance {
        date: Day(day()),
        class: "3-1".parse().unwrap(),
        expected: 45,
        present: if valid { 44 } else { 50 },
        sick: 1,
        personal: 0,
        other: 0,
        symptoms: Default::default(),
    };
    doc::put_attendance(&mut d, &record).unwrap();
    commit(&mut d, school);
    request_for(&id, &mut d)
}

fn day() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap()
}

fn commit(d: &mut AutoCommit, school: &str) {
    let meta = doc::CommitMeta {
        school: school.to_owned(),
        clerk: "test".into(),
        machine: "test".into(),
        action: "test".into(),
    };
    doc::commit(d, &meta, 1);
}

fn request_for(id: &DocId, d: &mut AutoCommit) -> SyncRequest {
    let changes = d
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    SyncRequest {
        schools: vec![SchoolSync {
            school: id.school.clone(),
            digest: sync::Digest([0; 32]),
            docs: vec![DocSync {
                doc: id.clone(),
                acked: Vec::new(),
                heads: sync::to_wire(&d.get_heads()),
                changes,
                snapshot: None,
            }],
        }],
    }
}

/// A digest-only round for `school`: a pull, writing nothing.
fn pull(school: &str) -> SyncRequest {
    SyncRequest {
        schools: vec![SchoolSync {
            school: school.parse().unwrap(),
            digest: sync::Digest([0; 32]),
            docs: Vec::new(),
        }],
    }
}

fn sync_call(cluster: &Cluster, base: &str, token: &str, request: &SyncRequest) -> Answer {
    call(
        cluster,
        base,
        "POST",
        "/v1/sync",
        &[
            ("authorization", &bearer(token)),
            ("content-type", CONTENT_TYPE),
        ],
        sync::encode(request),
    )
}

/// A fingerprint of every document a node stores for `school` (snapshots, changes, heads).
fn docs_of(node: &Running, school: &str) -> u64 {
    let mut all = Vec::new();
    for prefix in [format!("d/{school}/"), format!("i/{school}/")] {
        for (k, v) in node.node.store.scan_raw(prefix.as_bytes()).unwrap() {
            all.extend_from_slice(&k);
            all.extend_from_slice(&v);
        }
    }
    fnv1a64(&all)
}

/// Every document of every school a node holds.
fn all_docs(node: &Running) -> u64 {
    let mut all = Vec::new();
    for prefix in [b"d/".as_slice(), b"i/".as_slice()] {
        for (k, v) in node.node.store.scan_raw(prefix).unwrap() {
            all.extend_from_slice(&k);
            all.extend_from_slice(&v);
        }
    }
    fnv1a64(&all)
}

struct Matrix {
    cluster: Cluster,
    tokens: Vec<(&'static str, String)>,
}

/// City, relays for counties X and Y; schools A and B in X, C in Y, each with a month of data
/// synced by its own credential through its own relay.
fn matrix_cluster() -> Matrix {
    let mut cluster = Cluster::start();
    let rx = cluster.add_relay(X);
    let ry = cluster.add_relay(Y);
    let mut school_tokens = Vec::new();
    for (school, county, relay) in [(A, X, rx), (B, X, rx), (C, Y, ry)] {
        let (_, file) = cluster.issue(Role::School, Some(school), Some(county));
        let answer = sync_call(
            &cluster,
            &cluster.relay_url(relay),
            &file.token,
            &push(school, true),
        );
        assert_eq!(answer.status, 200, "{school}: {:?}", answer.json);
        school_tokens.push(file.token);
    }
    let doc = |s: &str| format!("{s}/2026-11");
    cluster.wait_until("the city holds all three schools", || {
        [A, B, C]
            .iter()
            .all(|s| cluster.attendance_at(None, &doc(s)) == 1)
    });
    let relay_token = cluster.relays[rx].credential.clone().unwrap().token;
    let (_, viewer_city) = cluster.issue(Role::Viewer, None, None);
    let (_, viewer_x) = cluster.issue(Role::Viewer, None, Some(X));
    Matrix {
        tokens: vec![
            ("school A", school_tokens[0].clone()),
            ("relay X", relay_token),
            ("viewer city", viewer_city.token),
            ("viewer X", viewer_x.token),
        ],
        cluster,
    }
}

/// What each cell must answer: 200 allowed; 403 refused; 404 the node does not hold it (a relay
/// holds only its own county).
fn expected(role: &str, target: &str, at_relay: bool, write: bool) -> u16 {
    let other_county = target == C;
    match (role, write) {
        ("school A", _) => {
            if target == A {
                200
            } else {
                403
            }
        }
        ("relay X", _) => {
            if other_county {
                403
            } else {
                200
            }
        }
        (_, true) => 403, // Viewers never write.
        ("viewer city", false) => {
            if other_county && at_relay {
                404
            } else {
                200
            }
        }
        ("viewer X", false) => {
            if other_county {
                403
            } else {
                200
            }
        }
        _ => unreachable!(),
    }
}

#[test]
fn scope_matrix_at_the_relay_and_at_the_city() {
    let m = matrix_cluster();
    let c = &m.cluster;
    let mut cells = 0;
    // 1. The city first, then the relay of county X (after it has caught up with the city, so
    //    its forwarder is idle while cells are checked).
    for at_relay in [false, true] {
        if at_relay {
            c.wait_until("relay X holds what the city holds for A and B", || {
                [A, B].iter().all(|s| {
                    docs_index(c.city.running.as_ref().unwrap(), s) == docs_index(c.relay(0), s)
                })
            });
        }
        let base = if at_relay {
            c.relay_url(0)
        } else {
            c.city_url()
        };
        for (role, token) in &m.tokens {
            for target in [A, B, C] {
                for write in [false, true] {
                    let node = if at_relay {
                        c.relay(0)
                    } else {
                        c.city.running.as_ref().unwrap()
                    };
                    let before = docs_of(node, target);
                    let answer = if write {
                        sync_call(c, &base, token, &push(target, true))
                    } else {
                        call(
                            c,
                            &base,
                            "GET",
                            &format!("/api/v1/schools/{target}"),
                            &[("authorization", &bearer(token))],
                            Vec::new(),
                        )
                    };
                    let want = expected(role, target, at_relay, write);
                    let cell = format!(
                        "{role} {} {target} at the {}",
                        if write { "writes" } else { "reads" },
                        if at_relay { "relay" } else { "city" }
                    );
                    assert_eq!(answer.status, want, "{cell}: {:?}", answer.json);
                    if want == 200 && !write {
                        assert_eq!(answer.json["school"], target, "{cell}");
                        assert!(
                            answer.json["documents"]["2113000001/2026-11"].is_object()
                                || target != A,
                            "{cell}"
                        );
                    }
                    if want != 200 {
                        assert!(!answer.code().is_empty(), "{cell}: {:?}", answer.json);
                        assert!(answer.json["message"]
                            .as_str()
                            .is_some_and(|m| !m.is_empty()));
                        assert_eq!(docs_of(node, target), before, "{cell} changed a document");
                    }
                    // Sync roles may also pull (read by sync) exactly where they may push.
                    if matches!(*role, "school A" | "relay X") && !write {
                        let pulled = sync_call(c, &base, token, &pull(target));
                        let want_pull = if want == 200 { 200 } else { 403 };
                        assert_eq!(pulled.status, want_pull, "{cell} by sync");
                    }
                    cells += 1;
                }
            }
        }
    }
    assert_eq!(cells, 4 * 3 * 2 * 2);
    // 2. The list endpoint shows each reader only its scope.
    let listed = |token: &str| -> Vec<String> {
        let answer = call(
            c,
            &c.city_url(),
            "GET",
            "/api/v1/schools",
            &[("authorization", &bearer(token))],
            Vec::new(),
        );
        assert_eq!(answer.status, 200);
        answer
            .json
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["school"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&m.tokens[2].1), vec![A, B, C]);
    assert_eq!(listed(&m.tokens[3].1), vec![A, B]);
    assert_eq!(listed(&m.tokens[0].1), vec![A]);
}

fn docs_index(node: &Running, school: &str) -> Vec<(String, Vec<automerge::ChangeHash>)> {
    node.node
        .store
        .index(&format!("{school}/"))
        .unwrap()
        .into_iter()
        .map(|(id, h)| (id.to_string(), h))
        .collect()
}

#[test]
fn a_compromised_relay_cannot_inject_another_countys_data() {
    let m = matrix_cluster();
    let c = &m.cluster;
    let relay_x = &m.tokens[1].1;
    let city = c.city.running.as_ref().unwrap();
    let before = all_docs(city);
    // 1. Relay X forwards a request carrying its own school A and county Y's school C.
    let mut request = push(A, true);
    request.schools.extend(push(C, true).schools);
    let answer = sync_call(c, &c.city_url(), relay_x, &request);
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    assert!(answer.json["message"].as_str().unwrap().contains(C));
    // 2. Nothing of either school was written: the whole request is refused.
    assert_eq!(all_docs(city), before);
    // 3. A school credential cannot be replayed for a neighbour either.
    let answer = sync_call(c, &c.city_url(), &m.tokens[0].1, &push(B, true));
    assert_eq!((answer.status, answer.code()), (403, "forbidden"));
    assert_eq!(all_docs(city), before);
}

/// Writes an HTTP/1.1 request over TLS by hand (for what reqwest will not send: a body that
/// stalls or stops short) and returns the status and JSON body of the answer, if any.
fn raw_tls(
    cluster: &Cluster,
    addr: std::net::SocketAddr,
    head: String,
    body: &[u8],
    then: RawEnd,
) -> Option<Answer> {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = rustls::pki_types::CertificateDer::from_pem_file(&cluster.certs.ca_cert).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    cluster.rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(head.as_bytes()).await.unwrap();
        tls.write_all(body).await.unwrap();
        tls.flush().await.unwrap();
        if let RawEnd::Close = then {
            tls.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server neither answered nor closed");
        let text = String::from_utf8_lossy(&out).into_owned();
        let status: u16 = text.split(' ').nth(1)?.parse().ok()?;
        let json = text
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        Some(Answer { status, json })
    })
}

enum RawEnd {
    /// Keep the connection open, sending nothing more (a stalled sender).
    Stall,
    /// Close our side (TLS close_notify, then FIN): the body stops short.
    Close,
}

/// One malformed request of the suite.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    /// Which credential: "school", "viewer", "admin", "none", or a literal header value.
    auth: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn cases(city_only: bool) -> Vec<Case> {
    let good = sync::encode(&push(A, true));
    let wire = |flags: u8, payload: &[u8]| {
        let mut v = good[..6].to_vec();
        v.push(flags);
        v.extend_from_slice(payload);
        v
    };
    let mut newer = good.clone();
    newer[4..6].copy_from_slice(&(sync::WIRE_VERSION + 1).to_be_bytes());
    // A gzip stream of zeros inflating far beyond the message limit (a decompression bomb).
    let bomb = {
        let zeros = vec![0u8; sync::MESSAGE_BYTES_MAX + 1024];
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&zeros).unwrap();
        wire(1, &e.finish().unwrap())
    };
    let mut request = push(A, true);
    let twice = {
        let mut r = request.clone();
        r.schools.push(r.schools[0].clone());
        sync::encode(&r)
    };
    let under_other = {
        let mut r = push(A, true);
        r.schools[0].docs[0].doc = DocId::records(&B.parse().unwrap(), Month::of(day()));
        sync::encode(&r)
    };
    let doc_twice = {
        let mut r = push(A, true);
        let entry = r.schools[0].docs[0].clone();
        r.schools[0].docs.push(entry);
        sync::encode(&r)
    };
    let many_schools = {
        let r = SyncRequest {
            schools: (0..=sync::SCHOOLS_PER_REQUEST_MAX)
                .map(|i| SchoolSync {
                    school: format!("21130{i:05}").parse().unwrap(),
                    digest: sync::Digest([0; 32]),
                    docs: Vec::new(),
                })
                .collect(),
        };
        sync::encode(&r)
    };
    let many_docs = {
        let mut r = pull(A);
        r.schools[0].docs = (0..=sync::DOCS_PER_SCHOOL_MAX)
            .map(|i| DocSync {
                doc: DocId::records(
                    &A.parse().unwrap(),
                    Month::of(day() - chrono::Days::new(31 * i as u64)),
                ),
                acked: Vec::new(),
                heads: Vec::new(),
                changes: Vec::new(),
                snapshot: None,
            })
            .collect();
        sync::encode(&r)
    };
    let corrupt_change = {
        let mut r = push(A, true);
        let last = r.schools[0].docs[0].changes.last_mut().unwrap();
        let n = last.len();
        last[n - 3] ^= 0xff;
        sync::encode(&r)
    };
    let garbage_change = {
        let mut r = push(A, true);
        r.schools[0].docs[0].changes = vec![vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 5, 6, 7, 8]];
        sync::encode(&r)
    };
    let missing_deps = {
        // Two commits of one actor; only the second is sent, so its parent is unknown.
        let id = DocId::records(&A.parse().unwrap(), Month::of(day()));
        let mut d = doc::skeleton(&id, ActorId::random()).unwrap();
        let mut record = Attendance {
            date: Day(day()),
            class: "3-1".parse().unwrap(),
            expected: 45,
            present: 45,
            sick: 0,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        };
        doc::put_attendance(&mut d, &record).unwrap();
        commit(&mut d, A);
        record.present = 44;
        record.sick = 1;
        doc::put_attendance(&mut d, &record).unwrap();
        commit(&mut d, A);
        let mut r = request_for(&id, &mut d);
        let last = r.schools[0].docs[0].changes.pop().unwrap();
        r.schools[0].docs[0].changes = vec![last];
        sync::encode(&r)
    };
    let corrupt_snapshot = {
        let mut r = push(A, true);
        r.schools[0].docs[0].changes.clear();
        r.schools[0].docs[0].snapshot = Some(vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0]);
        sync::encode(&r)
    };
    let junk_snapshot = {
        let mut r = push(A, true);
        r.schools[0].docs[0].changes.clear();
        r.schools[0].docs[0].snapshot = Some(b"not an automerge document at all".to_vec());
        sync::encode(&r)
    };
    let rule_breaking = sync::encode(&push(A, false));
    let foreign_profile = {
        let id = DocId::profile(&A.parse().unwrap());
        let mut d = doc::skeleton(&id, ActorId::random()).unwrap();
        doc::put_identity(&mut d, "假学校", Y).unwrap();
        commit(&mut d, A);
        sync::encode(&request_for(&id, &mut d))
    };
    let oversized = vec![0u8; schoolsync_server::api::BODY_BYTES_MAX + 1];
    request.schools[0].docs.clear();
    let sync_case = |name, body: Vec<u8>, status, code| Case {
        name,
        method: "POST",
        path: "/v1/sync".into(),
        auth: "school",
        content_type: Some(CONTENT_TYPE),
        body,
        status,
        code,
    };
    let mut out = vec![
        Case {
            auth: "none",
            ..sync_case("no credential", good.clone(), 401, "credential_missing")
        },
        Case {
            auth: "Basic dXNlcjpwYXNz",
            ..sync_case("basic auth", good.clone(), 401, "credential_invalid")
        },
        Case {
            auth: "Bearer not-a-token",
            ..sync_case("garbage token", good.clone(), 401, "credential_invalid")
        },
        Case {
            auth: "forged",
            ..sync_case(
                "token signed by another key",
                good.clone(),
                401,
                "credential_invalid",
            )
        },
        Case {
            auth: "tampered",
            ..sync_case(
                "claims altered after signing",
                good.clone(),
                401,
                "credential_invalid",
            )
        },
        Case {
            auth: "viewer",
            ..sync_case("a viewer tries to sync", good.clone(), 403, "forbidden")
        },
        Case {
            content_type: Some("application/json"),
            ..sync_case("JSON content type", good.clone(), 415, "wrong_content_type")
        },
        Case {
            content_type: None,
            ..sync_case("no content type", good.clone(), 415, "wrong_content_type")
        },
        sync_case("empty body", Vec::new(), 400, "not_schoolsync"),
        sync_case(
            "not our magic",
            b"{\"schools\": []}".to_vec(),
            400,
            "not_schoolsync",
        ),
        sync_case("newer wire version", newer, 400, "unsupported_version"),
        sync_case(
            "header cut short",
            good[..6].to_vec(),
            400,
            "not_schoolsync",
        ),
        sync_case(
            "postcard garbage",
            wire(0, &[0xff, 0xff, 0xff, 0xff]),
            400,
            "malformed",
        ),
        sync_case("unknown flags", wire(7, &good[7..]), 400, "malformed"),
        sync_case(
            "gzip flag on plain bytes",
            wire(1, b"these bytes are not a gzip stream"),
            400,
            "malformed",
        ),
        sync_case(
            "payload truncated",
            good[..good.len() - 5].to_vec(),
            400,
            "malformed",
        ),
        sync_case("gzip bomb", bomb, 413, "too_large"),
        sync_case("body over the limit", oversized, 413, "too_large"),
        sync_case("school listed twice", twice, 400, "malformed"),
        sync_case(
            "document under another school",
            under_other,
            400,
            "malformed",
        ),
        sync_case("document listed twice", doc_twice, 400, "malformed"),
        sync_case("too many schools", many_schools, 400, "limit_exceeded"),
        sync_case("too many documents", many_docs, 400, "limit_exceeded"),
        sync_case(
            "another school's document",
            sync::encode(&push(B, true)),
            403,
            "forbidden",
        ),
        sync_case(
            "corrupt change (checksum)",
            corrupt_change,
            400,
            "corrupt_change",
        ),
        sync_case("garbage change", garbage_change, 400, "corrupt_change"),
        sync_case(
            "change with missing dependencies",
            missing_deps,
            400,
            "bad_document",
        ),
        sync_case(
            "corrupt zstd snapshot",
            corrupt_snapshot,
            400,
            "bad_document",
        ),
        sync_case("junk snapshot", junk_snapshot, 400, "bad_document"),
        sync_case(
            "record breaking a hard rule",
            rule_breaking,
            422,
            "record_invalid",
        ),
        sync_case(
            "profile naming another county",
            foreign_profile,
            422,
            "record_invalid",
        ),
        Case {
            method: "GET",
            ..sync_case(
                "GET on the sync endpoint",
                Vec::new(),
                405,
                "method_not_allowed",
            )
        },
        Case {
            path: "/v1/nope".into(),
            ..sync_case("unknown endpoint", Vec::new(), 404, "not_found")
        },
        Case {
            method: "GET",
            path: "/api/v1/schools/not-a-school".into(),
            content_type: None,
            auth: "viewer",
            ..sync_case("malformed school id", Vec::new(), 400, "bad_school")
        },
        Case {
            method: "GET",
            path: "/v1/admin/credentials".into(),
            content_type: None,
            ..sync_case(
                "admin endpoint with a school credential",
                Vec::new(),
                403,
                "forbidden",
            )
        },
        Case {
            method: "GET",
            path: "/v1/trust".into(),
            content_type: None,
            ..sync_case("revocation list for a school", Vec::new(), 403, "forbidden")
        },
    ];
    if city_only {
        let admin = |name, content_type, body: &[u8], status, code| Case {
            name,
            method: "POST",
            path: "/v1/admin/credentials".into(),
            auth: "admin",
            content_type,
            body: body.to_vec(),
            status,
            code,
        };
        out.extend([
            admin(
                "admin: malformed JSON",
                Some("application/json"),
                b"{\"role\": ",
                400,
                "malformed_json",
            ),
            admin(
                "admin: unknown role",
                Some("application/json"),
                b"{\"role\": \"king\"}",
                400,
                "malformed_json",
            ),
            admin(
                "admin: unknown field",
                Some("application/json"),
                b"{\"role\": \"viewer\", \"x\": 1}",
                400,
                "malformed_json",
            ),
            admin(
                "admin: school id malformed",
                Some("application/json"),
                b"{\"role\": \"school\", \"school\": \"12\", \"county\": \"130821\"}",
                400,
                "bad_school",
            ),
            admin(
                "admin: county unknown",
                Some("application/json"),
                b"{\"role\": \"relay\", \"county\": \"999999\"}",
                400,
                "bad_county",
            ),
            admin(
                "admin: school without county",
                Some("application/json"),
                b"{\"role\": \"school\", \"school\": \"2113000009\"}",
                400,
                "refused",
            ),
            admin(
                "admin: wrong content type",
                Some("text/plain"),
                b"{}",
                415,
                "wrong_content_type",
            ),
            admin(
                "admin: body over the limit",
                Some("application/json"),
                &vec![b' '; 20_000],
                413,
                "too_large",
            ),
            Case {
                path: "/v1/admin/revoke".into(),
                ..admin(
                    "admin: revoke unknown id",
                    Some("application/json"),
                    b"{\"id\": \"s-0\"}",
                    404,
                    "unknown_credential",
                )
            },
        ]);
    }
    out
}

#[test]
fn bad_input_gets_a_json_4xx_and_changes_nothing() {
    let mut cluster = Cluster::start_with_body_timeout(1_500);
    let relay = cluster.add_relay(X);
    let (_, school) = cluster.issue(Role::School, Some(A), Some(X));
    let (_, viewer) = cluster.issue(Role::Viewer, None, None);
    // A credential signed by a key that is not this city's.
    let forged = {
        let dir = tempfile::tempdir().unwrap();
        let store = schoolsync_store::DocStore::open(&dir.path().join("store")).unwrap();
        let other = schoolsync_server::auth::Authority::open(dir.path()).unwrap();
        other
            .issue(
                &store,
                Role::School,
                Some(A.parse().unwrap()),
                Some(X.parse().unwrap()),
                0,
            )
            .unwrap()
            .1
            .token
    };
    let tampered = {
        let mut claims = schoolsync_protocol::auth::peek_claims(&school.token).unwrap();
        claims.school = Some(B.parse().unwrap());
        let (_, signature) = school.token.rsplit_once('.').unwrap();
        format!(
            "{}.{signature}",
            schoolsync_protocol::auth::signed_part(&claims)
        )
    };
    let admin = {
        let text = std::fs::read_to_string(
            cluster
                .city
                .data_dir
                .join(schoolsync_server::auth::ADMIN_CREDENTIAL_FILE),
        )
        .unwrap();
        let file: schoolsync_protocol::auth::CredentialFile = toml_token(&text);
        file.token
    };
    // Some data for school A first, so "unchanged" means something.
    assert_eq!(
        sync_call(
            &cluster,
            &cluster.relay_url(relay),
            &school.token,
            &push(A, true)
        )
        .status,
        200
    );
    cluster.wait_until("the city holds school A", || {
        cluster.attendance_at(None, "2113000001/2026-11") == 1
    });
    let mut total = 0;
    for at_relay in [false, true] {
        let (base, node) = if at_relay {
            (cluster.relay_url(relay), cluster.relay(relay))
        } else {
            (cluster.city_url(), cluster.city.running.as_ref().unwrap())
        };
        cluster.wait_until("the relay is idle", || {
            docs_index(node, A) == docs_index(cluster.city.running.as_ref().unwrap(), A)
        });
        for case in cases(!at_relay) {
            let before = all_docs(node);
            let auth = match case.auth {
                "none" => None,
                "school" => Some(bearer(&school.token)),
                "viewer" => Some(bearer(&viewer.token)),
                "admin" => Some(bearer(&admin)),
                "forged" => Some(bearer(&forged)),
                "tampered" => Some(bearer(&tampered)),
                literal => Some(literal.to_owned()),
            };
            let mut headers = Vec::new();
            if let Some(a) = &auth {
                headers.push(("authorization", a.as_str()));
            }
            if let Some(t) = case.content_type {
                headers.push(("content-type", t));
            }
            let answer = call(
                &cluster,
                &base,
                case.method,
                &case.path,
                &headers,
                case.body,
            );
            let at = if at_relay { "relay" } else { "city" };
            assert_eq!(
                (answer.status, answer.code()),
                (case.status, case.code),
                "{} at the {at}: {:?}",
                case.name,
                answer.json
            );
            assert!(
                answer.json["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{}: no message",
                case.name
            );
            assert_eq!(
                all_docs(node),
                before,
                "{} at the {at} changed a document",
                case.name
            );
            let health = call(&cluster, &base, "GET", "/v1/health", &[], Vec::new());
            assert_eq!(
                health.status, 200,
                "{} at the {at}: the node stopped answering",
                case.name
            );
            total += 1;
        }
        // A body that stalls after its headers: answered 408 once the body timeout passes.
        let before = all_docs(node);
        let head = format!(
            "POST /v1/sync HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: 4000\r\nconnection: close\r\n\r\n",
            school.token
        );
        let stalled = raw_tls(
            &cluster,
            node.addr,
            head.clone(),
            &[b'S'; 100],
            RawEnd::Stall,
        )
        .unwrap();
        assert_eq!((stalled.status, stalled.code()), (408, "body_timeout"));
        // A body that stops short (the sender closes): 400, nothing written.
        let short = raw_tls(&cluster, node.addr, head, &[b'S'; 100], RawEnd::Close);
        if let Some(short) = short {
            assert_eq!((short.status, short.code()), (400, "body_incomplete"));
        }
        assert_eq!(all_docs(node), before);
        assert_eq!(
            call(&cluster, &base, "GET", "/v1/health", &[], Vec::new()).status,
            200
        );
        total += 2;
    }
    assert!(total >= 2 * 30, "{total} cases");
    // The school's own good data still syncs afterwards.
    let answer = sync_call(&cluster, &cluster.city_url(), &school.token, &push(A, true));
    assert_eq!(answer.status, 200, "{:?}", answer.json);
}

fn toml_token(text: &str) -> schoolsync_protocol::auth::CredentialFile {
    // The credential file is two `key = "value"` lines after comments.
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap()
            .to_owned()
    };
    schoolsync_protocol::auth::CredentialFile {
        token: value("token"),
        city_key: value("city_key"),
    }
}

#[test]
fn a_credential_over_its_rate_is_told_to_wait() {
    let cluster = Cluster::start();
    let (_, viewer) = cluster.issue(Role::Viewer, None, None);
    let (_, burst) = schoolsync_server::auth::rate_for(Role::Viewer);
    let mut limited = None;
    for i in 0..(burst as usize + 50) {
        let answer = call(
            &cluster,
            &cluster.city_url(),
            "GET",
            "/api/v1/schools",
            &[("authorization", &bearer(&viewer.token))],
            Vec::new(),
        );
        if answer.status == 429 {
            limited = Some((i, answer));
            break;
        }
        assert_eq!(answer.status, 200);
    }
    let (i, answer) = limited.expect("the burst was never limited");
    assert!(i >= burst as usize - 5, "limited after {i} requests");
    assert_eq!(answer.code(), "rate_limited");
    // Another credential is not affected.
    let (_, other) = cluster.issue(Role::Viewer, None, Some(X));
    let answer = call(
        &cluster,
        &cluster.city_url(),
        "GET",
        "/api/v1/schools",
        &[("authorization", &bearer(&other.token))],
        Vec::new(),
    );
    assert_eq!(answer.status, 200);
}

#[test]
fn a_revoked_school_is_refused_at_the_relay_and_the_city() {
    let mut cluster = Cluster::start();
    let relay = cluster.add_relay(X);
    let (relay_url, city_url) = (cluster.relay_url(relay), cluster.city_url());
    // 1. A school enrolled through the operator's command (it goes through the running city),
    //    syncing through its relay.
    let target = schoolsync_server::admin::Target {
        data_dir: cluster.city.data_dir.clone(),
        url: city_url.clone(),
        ca_pem: Some(std::fs::read(&cluster.certs.ca_cert).unwrap()),
    };
    let issue = schoolsync_server::admin::Action::Issue(schoolsync_server::api::IssueRequest {
        role: Role::School,
        school: Some(A.into()),
        county: Some(X.into()),
    });
    let (claims, file) = match schoolsync_server::admin::run(&target, issue).unwrap() {
        schoolsync_server::admin::Outcome::Issued { claims, file } => (claims, file),
        other => panic!("{other:?}"),
    };
    let path = cluster.dir.path().join("a.credential");
    std::fs::write(&path, &file).unwrap();
    let school = crate::harness::School::empty();
    let ca = cluster.certs.ca_cert.to_str().unwrap().to_owned();
    school
        .agent(&[
            "init",
            "--school",
            A,
            "--county",
            X,
            "--name",
            "甲校",
            "--upstream",
            &relay_url,
            "--upstream",
            &city_url,
            "--ca",
            &ca,
            "--credential",
            path.to_str().unwrap(),
        ])
        .ok();
    // The credential is kept readable by its owner only.
    let kept = school.data_dir().join("credential");
    assert!(!schoolsync_store::secret::readable_by_others(&kept).unwrap());
    assert!(!schoolsync_store::secret::readable_by_others(
        &cluster
            .city
            .data_dir
            .join(schoolsync_server::auth::CITY_KEY_FILE)
    )
    .unwrap());
    assert!(!schoolsync_store::secret::readable_by_others(
        &cluster
            .city
            .data_dir
            .join(schoolsync_server::auth::ADMIN_CREDENTIAL_FILE)
    )
    .unwrap());
    let class = school.file("c.csv", crate::harness::classes_csv(1).as_bytes());
    school
        .agent(&["import", "classes", class.to_str().unwrap()])
        .ok();
    school.agent(&["sync"]).ok();
    // 2. The operator revokes it while the city runs.
    let revoked = schoolsync_server::admin::run(
        &target,
        schoolsync_server::admin::Action::Revoke(claims.id.clone()),
    )
    .unwrap();
    assert!(
        matches!(revoked, schoolsync_server::admin::Outcome::Revoked(ref r) if r.revoked_at.is_some())
    );
    // 3. The revocation reaches the relay (its forwarder fetches the list) and applies there.
    cluster.wait_until("the relay applies the revocation", || {
        cluster
            .relay(relay)
            .gate
            .trust()
            .revoked
            .contains(&claims.id)
    });
    let refused = sync_call(&cluster, &relay_url, &file_token(&file), &pull(A));
    assert_eq!(
        (refused.status, refused.code()),
        (401, "credential_revoked")
    );
    let refused = sync_call(&cluster, &city_url, &file_token(&file), &pull(A));
    assert_eq!(
        (refused.status, refused.code()),
        (401, "credential_revoked")
    );
    // 4. The agent is told in words, in its status, and keeps its data.
    let run: Run = school.agent(&["--lang", "zh", "sync"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert!(
        run.stderr.contains("吊销") || run.stdout.contains("吊销"),
        "{run:?}"
    );
    let status = school
        .agent(&["--lang", "en", "status", "--json"])
        .ok()
        .json();
    let text = status.to_string();
    assert!(text.contains("revoked"), "{text}");
    // 5. A new credential for this PC: a file made for another school is refused, the right one
    //    is installed with `enroll` and sync works again.
    let (_, other) = cluster.credential_file(B, X);
    let wrong = school.agent(&["enroll", other.to_str().unwrap()]);
    assert_eq!(wrong.code, 7, "{wrong:?}");
    let (_, renewed) = cluster.credential_file(A, X);
    school.agent(&["enroll", renewed.to_str().unwrap()]).ok();
    assert!(!schoolsync_store::secret::readable_by_others(&kept).unwrap());
    school.agent(&["sync"]).ok();
    // 6. The revocation survives a relay restart while the city is down.
    cluster.stop_city();
    cluster.stop_relay(relay);
    cluster.restart_relay(relay);
    let refused = sync_call(&cluster, &relay_url, &file_token(&file), &pull(A));
    assert_eq!(
        (refused.status, refused.code()),
        (401, "credential_revoked")
    );
    // 7. With the city stopped, the operator's commands open its store directly.
    let listed =
        schoolsync_server::admin::run(&target, schoolsync_server::admin::Action::List).unwrap();
    match listed {
        schoolsync_server::admin::Outcome::Listed(all) => {
            assert!(all
                .iter()
                .any(|r| r.claims.id == claims.id && r.revoked_at.is_some()));
            assert!(all.iter().any(|r| r.claims.role == Role::Relay));
        }
        other => panic!("{other:?}"),
    }
}

fn file_token(text: &str) -> String {
    toml_token(text).token
}

#[test]
fn rule_breaking_data_from_a_school_is_refused_with_a_reason_it_sees() {
    let cluster = Cluster::start();
    let city_url = cluster.city_url();
    let school = cluster.school(A, X, 1, std::slice::from_ref(&city_url));
    school.agent(&["sync"]).ok();
    // 1. A tampered or buggy client puts a record breaking the hard rules into the store
    //    (present + absences > expected), bypassing the agent's own checks.
    {
        let store = schoolsync_store::DocStore::open(&school.data_dir().join("store")).unwrap();
        let id = DocId::records(&A.parse().unwrap(), Month::of(day()));
        let mut loaded = store.load(&id).unwrap();
        let record = Attendance {
            date: Day(day()),
            class: "3-1".parse().unwrap(),
            expected: 45,
            present: 50,
            sick: 1,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        };
        doc::put_attendance(&mut loaded.doc, &record).unwrap();
        commit(&mut loaded.doc, A);
        store.commit(&mut [&mut loaded], Vec::new()).unwrap();
    }
    let city = cluster.city.running.as_ref().unwrap();
    let before = all_docs(city);
    // 2. The city refuses it, stores nothing of it, and says why.
    let run = school.agent(&["--lang", "en", "sync"]);
    assert_eq!(run.code, 8, "{run:?}");
    assert_eq!(all_docs(city), before);
    let status = school
        .agent(&["--lang", "en", "status", "--json"])
        .ok()
        .json();
    let text = status.to_string();
    assert!(text.contains("2026-11-03/3-1"), "{text}");
    assert!(text.contains("attendance"), "{text}");
    // 3. The clerk corrects the record; the corrected document is accepted.
    school
        .agent(&[
            "attendance",
            "record",
            "--date",
            "2026-11-03",
            "--class",
            "3-1",
            "--expected",
            "45",
            "--present",
            "44",
            "--sick",
            "1",
        ])
        .ok();
    school.agent(&["sync"]).ok();
    assert_eq!(cluster.attendance_at(None, "2113000001/2026-11"), 1);
}

#[test]
fn with_mutual_tls_a_relay_credential_needs_the_relays_certificate() {
    let mut cluster = Cluster::start_mtls();
    let relay = cluster.add_relay(X);
    let (_, school) = cluster.issue(Role::School, Some(A), Some(X));
    // 1. A school syncs through its relay; the relay presents its client certificate to the city.
    let answer = sync_call(
        &cluster,
        &cluster.relay_url(relay),
        &school.token,
        &push(A, true),
    );
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    cluster.wait_until("the city holds school A", || {
        cluster.attendance_at(None, "2113000001/2026-11") == 1
    });
    // 2. The relay's credential alone (stolen, used without the certificate) is refused.
    let relay_token = cluster.relays[relay].credential.clone().unwrap().token;
    let city = cluster.city.running.as_ref().unwrap();
    let before = all_docs(city);
    let answer = sync_call(&cluster, &cluster.city_url(), &relay_token, &push(A, true));
    assert_eq!(
        (answer.status, answer.code()),
        (403, "client_certificate_required")
    );
    assert_eq!(all_docs(city), before);
    // 3. Schools have no certificate and need none.
    let answer = sync_call(&cluster, &cluster.city_url(), &school.token, &pull(A));
    assert_eq!(answer.status, 200, "{:?}", answer.json);
}
