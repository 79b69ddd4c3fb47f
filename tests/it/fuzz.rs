//! Fuzzing without a fuzzer: proptest harnesses over arbitrary bytes, and over mutations of
//! valid inputs, for every decoder that reads network or disk bytes. None may panic: each returns
//! a value or an error.
//!
//! | target | decoder | reads |
//! |---|---|---|
//! | `wire` | `sync::decode::<SyncRequest>` / `<SyncResponse>` | every HTTP body, both ways |
//! | `snapshot` | `sync::decode_snapshot` then `AutoCommit::load` (as the store does) | disk, network |
//! | `change` | `sync::verify_change` | network |
//! | `payload` | `sync::apply_payload` | network (relay, city, agent pulls) |
//! | `store` | `DocStore::load`, `index`, `salvage` over arbitrary values under a document's keys | disk |
//! | `csv` | `import::parse` of every kind | clerk's files |
//!
//! `tests/corpus/<target>/` holds the seeds (valid inputs written by
//! `SCHOOLSYNC_WRITE_CORPUS=1`) and every input that ever failed; `corpus_replays` runs them all
//! as regression tests. `SCHOOLSYNC_FUZZ_CASES` sets cases per target (default 256 for CI).

use std::path::PathBuf;

use automerge::AutoCommit;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use schoolsync_agent::import::{self, Kind};
use schoolsync_protocol::doc::{self, CommitMeta};
use schoolsync_protocol::ids::{parse_date, DocId, Month, SchoolId};
use schoolsync_protocol::records::{Attendance, ClassInfo, Day, Profile};
use schoolsync_protocol::sync::{self, DocSync, SchoolSync, SyncRequest, SyncResponse};
use schoolsync_protocol::Lang;
use schoolsync_store::{DocStore, Kv, MemKv};

const TARGETS: [&str; 6] = ["wire", "snapshot", "change", "payload", "store", "csv"];

fn cases() -> u32 {
    std::env::var("SCHOOLSYNC_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn month_id() -> DocId {
    let school: SchoolId = "2113000001".parse().unwrap();
    DocId::records(
        &school,
        Month {
            year: 2026,
            month: 11,
        },
    )
}

/// A month document with a few records, and its changes.
fn sample_doc() -> AutoCommit {
    let id = month_id();
    let mut d = doc::skeleton(&id, automerge::ActorId::random()).unwrap();
    let meta = CommitMeta {
        school: "2113000001".into(),
        clerk: "王老师".into(),
        machine: "pc1".into(),
        action: "fuzz".into(),
    };
    for day in 2..5 {
        let record = Attendance {
            date: Day(parse_date(&format!("2026-11-{day:02}")).unwrap()),
            class: "3-1".parse().unwrap(),
            expected: 40,
            present: 39,
            sick: 1,
            personal: 0,
            other: 0,
            symptoms: Default::default(),
        };
        doc::put_attendance(&mut d, &record).unwrap();
        doc::commit(&mut d, &meta, 1_700_000_000_000 + i64::from(day));
    }
    d
}

fn profile() -> Profile {
    let class = ClassInfo::new("3-1".parse().unwrap(), 3, 45).unwrap();
    Profile {
        school: "2113000001".into(),
        name: "测试学校".into(),
        county: "130821".into(),
        classes: [("3-1".to_owned(), class)].into_iter().collect(),
    }
}

/// Valid inputs of each target: the seeds mutations start from.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut d = sample_doc();
    let changes: Vec<Vec<u8>> = d
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let snapshot = sync::encode_snapshot(&mut d);
    match target {
        "wire" => {
            let request = SyncRequest {
                schools: vec![SchoolSync {
                    school: "2113000001".parse().unwrap(),
                    digest: sync::digest(std::iter::empty()),
                    docs: vec![DocSync {
                        doc: month_id(),
                        acked: Vec::new(),
                        heads: sync::to_wire(&d.get_heads()),
                        changes: changes.clone(),
                        snapshot: None,
                    }],
                }],
            };
            let mut big = request.clone();
            big.schools[0].docs[0].snapshot = Some(snapshot.clone());
            vec![
                sync::encode(&request),
                sync::encode(&big),
                sync::encode(&SyncResponse::default()),
            ]
        }
        "snapshot" => vec![snapshot, d.save(), d.save_nocompress()],
        "change" | "payload" => changes,
        "store" => vec![snapshot, changes[0].clone(), changes[1].clone()],
        "csv" => vec![
            "班级,年级,在籍人数\r\n3-1,3,45\r\n".as_bytes().to_vec(),
            "date,class,expected,present,sick,fever\r\n2026-11-03,3-1,45,43,2,1\r\n"
                .as_bytes()
                .to_vec(),
            "日期\t班级\t学科\t内容\t预计时长\r\n2026年11月3日\t3-1\t数学\t练习\t30\r\n"
                .as_bytes()
                .to_vec(),
            "date,class,participants,start,end,content\r\n2026/11/3,3-1,40,16:00,18:00,作业辅导、社团\r\n"
                .as_bytes()
                .to_vec(),
        ],
        _ => Vec::new(),
    }
}

/// Runs `target`'s decoder on `bytes`; it must return (a value or an error), never panic.
fn run(target: &str, bytes: &[u8]) {
    match target {
        "wire" => {
            let _ = sync::decode::<SyncRequest>(bytes);
            let _ = sync::decode::<SyncResponse>(bytes);
        }
        "snapshot" => {
            // As `DocStore::load` and `apply_payload` use it: decode, then a guarded load.
            if let Ok(plain) = sync::decode_snapshot(bytes) {
                let _ = std::panic::catch_unwind(|| AutoCommit::load(&plain));
            }
            let mut d = AutoCommit::new();
            let _ = sync::apply_payload(&month_id(), &mut d, &[], Some(bytes));
        }
        "change" => {
            let _ = sync::verify_change(&month_id(), 0, bytes);
        }
        "payload" => {
            let mut d = sample_doc();
            let half = bytes.len() / 2;
            let _ = sync::apply_payload(
                &month_id(),
                &mut d,
                &[bytes[..half].to_vec(), bytes[half..].to_vec()],
                None,
            );
            let mut empty = AutoCommit::new();
            let _ = sync::apply_payload(&month_id(), &mut empty, &[bytes.to_vec()], None);
        }
        "store" => {
            let id = month_id();
            let kv = MemKv::default();
            let hash = automerge::Change::from_bytes(bytes.to_vec())
                .map(|c| c.hash().to_string())
                .unwrap_or_else(|_| "00".repeat(32));
            kv.put(format!("d/{id}/s").as_bytes(), bytes).unwrap();
            kv.put(format!("d/{id}/c/{hash}").as_bytes(), bytes)
                .unwrap();
            kv.put(format!("i/{id}").as_bytes(), bytes).unwrap();
            kv.put(b"m/school", bytes).unwrap();
            let store = DocStore::with_kv(Box::new(kv));
            let _ = store.load(&id);
            let _ = store.index("");
            let _ = store.doc_ids();
            let fresh = DocStore::with_kv(Box::new(MemKv::default()));
            let _ = schoolsync_store::salvage::salvage(
                &*Box::new({
                    let kv = MemKv::default();
                    kv.put(format!("d/{id}/s").as_bytes(), bytes).unwrap();
                    kv
                }) as &dyn Kv,
                &fresh,
            );
        }
        "csv" => {
            for kind in [
                Kind::Classes,
                Kind::Attendance,
                Kind::Homework,
                Kind::Afterschool,
            ] {
                let _ = import::parse(kind, bytes, &profile(), Lang::En, &mut |_| {});
            }
        }
        other => panic!("unknown target {other}"),
    }
}

/// Arbitrary bytes, and valid seeds with bytes flipped, inserted, removed or cut.
fn inputs(target: &'static str) -> BoxedStrategy<Vec<u8>> {
    let seeds = seeds(target);
    let arbitrary = proptest::collection::vec(any::<u8>(), 0..2048);
    let mutated = (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] ^= byte | 1,
                    1 => bytes.insert(i, byte),
                    2 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        });
    prop_oneof![1 => arbitrary, 3 => mutated].boxed()
}

fn fuzz(target: &'static str) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&inputs(target), |bytes| {
        let caught = std::panic::catch_unwind(|| run(target, &bytes));
        if caught.is_err() {
            // Keep the input: it becomes a regression case once committed.
            let dir = corpus_dir(target);
            let _ = std::fs::create_dir_all(&dir);
            let name = format!("crash-{:016x}", schoolsync_protocol::ids::fnv1a64(&bytes));
            let _ = std::fs::write(dir.join(name), &bytes);
        }
        prop_assert!(caught.is_ok(), "{target} panicked on {} bytes", bytes.len());
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("fuzz {target}: {e}");
    }
    eprintln!("fuzz: target={target} cases={} no panics", cases());
}

#[test]
fn fuzz_wire_decode() {
    fuzz("wire");
}

#[test]
fn fuzz_snapshot_decode() {
    fuzz("snapshot");
}

#[test]
fn fuzz_change_verify() {
    fuzz("change");
}

#[test]
fn fuzz_apply_payload() {
    fuzz("payload");
}

#[test]
fn fuzz_store_load() {
    fuzz("store");
}

#[test]
fn fuzz_csv_import() {
    fuzz("csv");
}

/// Every committed corpus file, through its target: seeds and every input that once failed.
/// `SCHOOLSYNC_WRITE_CORPUS=1` (re)writes the seeds first.
#[test]
fn fuzz_corpus_replays() {
    let write = std::env::var_os("SCHOOLSYNC_WRITE_CORPUS").is_some();
    let mut replayed = 0;
    for target in TARGETS {
        let dir = corpus_dir(target);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            for (i, seed) in seeds(target).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
            }
        }
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let caught = std::panic::catch_unwind(|| run(target, &bytes));
            assert!(caught.is_ok(), "{} panics", path.display());
            replayed += 1;
        }
    }
    eprintln!("fuzz: corpus replayed {replayed} inputs");
}
