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
//! `tests/corpus/<target>/` holds the seeds (`seed-*`, valid inputs written by
//! `SCHOOLSYNC_WRITE_CORPUS=1`), the corpus libFuzzer grew from them (files named by their SHA-1;
//! see `fuzz/`), and every input that ever failed (`crash-*`); `corpus_replays` runs them all as
//! regression tests. `SCHOOLSYNC_FUZZ_CASES` sets cases per target (default 256 for CI).

use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::fuzz_run::{run, seeds, TARGETS};

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
