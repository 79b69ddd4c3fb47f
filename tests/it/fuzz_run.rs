//! The byte decoders under fuzzing, and valid inputs to mutate: shared by the proptest harness
//! (`tests/it/fuzz.rs`) and the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`, which include this
//! file), so both exercise exactly the same calls. Uses only automerge and the schoolsync crates.

#![allow(dead_code)] // Each cargo-fuzz target uses part of it.

use automerge::AutoCommit;
use schoolsync_agent::import::{self, Kind};
use schoolsync_protocol::doc::{self, CommitMeta};
use schoolsync_protocol::ids::{parse_date, DocId, Month, SchoolId};
use schoolsync_protocol::records::{Attendance, ClassInfo, Day, Profile};
use schoolsync_protocol::sync::{self, DocSync, SchoolSync, SyncRequest, SyncResponse};
use schoolsync_protocol::Lang;
use schoolsync_store::{DocStore, Kv, MemKv};

/// Every target, by name.
pub const TARGETS: [&str; 6] = ["wire", "snapshot", "change", "payload", "store", "csv"];

pub fn month_id() -> DocId {
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
pub fn sample_doc() -> AutoCommit {
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

pub fn profile() -> Profile {
    let class = ClassInfo::new("3-1".parse().unwrap(), 3, 45).unwrap();
    Profile {
        school: "2113000001".into(),
        name: "测试学校".into(),
        county: "130821".into(),
        classes: [("3-1".to_owned(), class)].into_iter().collect(),
    }
}

/// Valid inputs of each target: the seeds mutations start from.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
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
pub fn run(target: &str, bytes: &[u8]) {
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
