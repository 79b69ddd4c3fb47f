//! Wire-format snapshots and round trips, and sans-IO sync stories between two documents.

use super::*;
use crate::doc;
use automerge::ActorId;

use crate::test_support::{attendance as record, meta, month_id, school};

fn write(doc: &mut AutoCommit, day: u32, class: &str, present: u32) {
    doc::put_attendance(doc, &record(day, class, present)).unwrap();
    doc::commit(doc, &meta(), 1);
}

#[test]
fn wire_snapshot_is_byte_exact() {
    let request = SyncRequest {
        schools: vec![SchoolSync {
            school: school(),
            digest: Digest([7; 32]),
            docs: vec![DocSync {
                doc: month_id(),
                acked: vec![[1; 32]],
                heads: vec![],
                changes: vec![vec![0xAA, 0xBB]],
                snapshot: None,
            }],
        }],
    };
    let bytes = encode(&request);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        concat!(
            "5353594e",
            "0001",
            "00", // magic, version 1, not compressed
            "01",
            "0a",
            "32313133303030303031", // 1 school, "2113000001"
            "0707070707070707070707070707070707070707070707070707070707070707", // digest
            "01",
            "12",
            "323131333030303030312f323032362d3131", // 1 doc, "2113000001/2026-11"
            "01",
            "0101010101010101010101010101010101010101010101010101010101010101", // acked
            "00",                                                               // heads
            "01",
            "02",
            "aabb", // changes
            "00",   // no snapshot
        )
    );
    assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), request);
}

#[test]
fn wire_errors_are_typed() {
    let good = encode(&SyncRequest::default());
    let mut other_version = good.clone();
    other_version[5] = 9;
    assert_eq!(
        decode::<SyncRequest>(&other_version),
        Err(WireError::Version { found: 9 })
    );
    assert_eq!(
        decode::<SyncRequest>(b"GET / HTTP/1.1"),
        Err(WireError::Magic)
    );
    let mut truncated = encode(&SyncResponse {
        schools: vec![SchoolReply {
            school: school(),
            digest: Digest([1; 32]),
            docs: vec![],
            index: None,
            refused: None,
        }],
    });
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(
        decode::<SyncResponse>(&truncated),
        Err(WireError::Malformed(_))
    ));
    let mut bad_flags = good;
    bad_flags[6] = 7;
    assert!(matches!(
        decode::<SyncRequest>(&bad_flags),
        Err(WireError::Malformed(_))
    ));
}

/// Round trips of pseudo-random messages (a property test with a fixed-seed generator).
#[test]
fn random_messages_round_trip() {
    let mut state: u64 = 0x5eed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n.max(1)
    };
    for _ in 0..300 {
        let docs = (0..next(4))
            .map(|_| DocSync {
                doc: if next(2) == 0 {
                    DocId::profile(&school())
                } else {
                    month_id()
                },
                acked: (0..next(3)).map(|i| [i as u8; 32]).collect(),
                heads: (0..next(3)).map(|i| [i as u8 + 9; 32]).collect(),
                changes: (0..next(5))
                    .map(|i| vec![i as u8; next(2000) as usize])
                    .collect(),
                snapshot: (next(2) == 0).then(|| vec![3; next(3000) as usize]),
            })
            .collect();
        let request = SyncRequest {
            schools: vec![SchoolSync {
                school: school(),
                digest: Digest([next(255) as u8; 32]),
                docs,
            }],
        };
        let bytes = encode(&request);
        assert_eq!(decode::<SyncRequest>(&bytes).unwrap(), request);
    }
}

#[test]
fn a_flipped_bit_is_caught_before_anything_is_applied() {
    let mut a = doc::skeleton(&month_id(), ActorId::random()).unwrap();
    write(&mut a, 3, "3-1", 40);
    let changes: Vec<Vec<u8>> = a
        .get_changes(&[])
        .iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let mut bad = changes.clone();
    let last = bad[1].len() - 1;
    bad[1][last] ^= 0x10;
    let mut b = AutoCommit::new();
    assert!(matches!(
        apply_payload(&month_id(), &mut b, &bad, None),
        Err(WireError::CorruptChange { index: 1, .. })
    ));
    assert!(b.get_heads().is_empty(), "nothing applied");
    assert_eq!(
        apply_payload(&month_id(), &mut b, &changes, None)
            .unwrap()
            .new_changes,
        2
    );
    assert_eq!(
        apply_payload(&month_id(), &mut b, &changes, None)
            .unwrap()
            .new_changes,
        0,
        "duplicates are no-ops"
    );
}

/// A downstream and an upstream document exchange rounds through `plan`, `apply_payload` and
/// `reply_for` until neither has anything to send; returns the number of rounds.
fn converge(
    down: &mut AutoCommit,
    acked: &mut Vec<ChangeHash>,
    up: &mut AutoCommit,
    budget: usize,
    lose_every: usize,
) -> usize {
    let mut rounds = 0;
    let mut pull = true;
    loop {
        rounds += 1;
        assert!(rounds < 1000, "no convergence");
        let mut b = budget;
        let Plan::Send(entry) = plan(&month_id(), down, acked, pull, &mut b) else {
            return rounds;
        };
        apply_payload(&month_id(), up, &entry.changes, entry.snapshot.as_deref()).unwrap();
        let mut b = budget;
        let reply = reply_for(&month_id(), up, &entry, &mut b);
        if lose_every > 0 && rounds % lose_every == 0 {
            continue; // The response was lost after the upstream committed.
        }
        apply_payload(&month_id(), down, &reply.changes, reply.snapshot.as_deref()).unwrap();
        *acked = from_wire(&reply.heads);
        pull = reply.more;
        if !reply.missing.is_empty() {
            acked.clear();
        }
    }
}

#[test]
fn paged_push_and_pull_converge_even_when_responses_are_lost() {
    let mut down = doc::skeleton(&month_id(), ActorId::random()).unwrap();
    let mut acked = Vec::new();
    let mut up = AutoCommit::new();
    // First push sends the whole document.
    write(&mut down, 2, "3-1", 40);
    converge(&mut down, &mut acked, &mut up, BATCH_BYTES_MAX, 0);
    assert_eq!(up.get_heads(), down.get_heads());
    // Then many small changes, paged at a tiny budget, with every third response lost.
    for day in 3..=28 {
        for class in 1..=10 {
            write(&mut down, day, &format!("3-{class}"), 39);
        }
    }
    let rounds = converge(&mut down, &mut acked, &mut up, 2_000, 3);
    assert!(rounds > 5, "paged: {rounds}");
    assert_eq!(up.get_heads(), down.get_heads());
    // Changes made upstream (city feedback) come back down.
    up.set_actor(ActorId::random());
    write(&mut up, 4, "3-2", 38);
    converge(&mut down, &mut acked, &mut up, 2_000, 0);
    assert_eq!(up.get_heads(), down.get_heads());
    assert_eq!(
        doc::read_month(&down).unwrap().attendance["2026-11-04/3-2"].present,
        38
    );
}

#[test]
fn digest_ignores_order_and_sees_every_head() {
    let (a, b) = (month_id(), DocId::profile(&school()));
    let h1 = [ChangeHash([1; 32]), ChangeHash([2; 32])];
    let h2 = [ChangeHash([2; 32]), ChangeHash([1; 32])];
    assert_eq!(
        digest([(&a, &h1[..]), (&b, &h1[..1])]),
        digest([(&b, &h1[..1]), (&a, &h2[..])])
    );
    assert_ne!(digest([(&a, &h1[..])]), digest([(&a, &h1[..1])]));
}

#[test]
fn a_snapshot_carrying_changes_with_missing_dependencies_is_refused() {
    let mut a = doc::skeleton(&month_id(), ActorId::random()).unwrap();
    write(&mut a, 3, "3-1", 40);
    let early = a.save();
    write(&mut a, 4, "3-1", 39);
    write(&mut a, 5, "3-1", 38);
    // The early document followed by the last change only: its dependency is missing.
    let last = a.get_last_local_change().unwrap().raw_bytes().to_vec();
    let crafted = [early.as_slice(), last.as_slice()].concat();
    assert!(
        AutoCommit::load(&crafted).is_ok(),
        "automerge accepts it, hence the check"
    );
    let mut b = AutoCommit::new();
    assert!(matches!(
        apply_payload(&month_id(), &mut b, &[], Some(&crafted)),
        Err(WireError::BadDocument { .. })
    ));
    assert!(b.get_heads().is_empty());
}

#[test]
fn duplicate_schools_and_documents_are_refused() {
    let entry = DocSync {
        doc: month_id(),
        acked: vec![],
        heads: vec![],
        changes: vec![],
        snapshot: None,
    };
    let school_sync = SchoolSync {
        school: school(),
        digest: Digest::default(),
        docs: vec![entry.clone(), entry],
    };
    let request = SyncRequest {
        schools: vec![school_sync.clone()],
    };
    assert!(
        matches!(check_limits(&request), Err(WireError::Malformed(m)) if m.contains("listed twice"))
    );
    let mut once = school_sync;
    once.docs.truncate(1);
    assert!(check_limits(&SyncRequest {
        schools: vec![once.clone()]
    })
    .is_ok());
    assert!(check_limits(&SyncRequest {
        schools: vec![once.clone(), once]
    })
    .is_err());
}

#[test]
fn a_full_page_defers_pushes_instead_of_overfilling() {
    let mut a = doc::skeleton(&month_id(), ActorId::random()).unwrap();
    write(&mut a, 3, "3-1", 40);
    let mut empty = 0;
    assert_eq!(
        plan(&month_id(), &mut a, &[], false, &mut empty),
        Plan::Idle
    );
    let Plan::Send(pull) = plan(&month_id(), &mut a, &[], true, &mut empty) else {
        panic!("a pull is still sent")
    };
    assert!(pull.snapshot.is_none() && pull.changes.is_empty());
}

#[test]
fn snapshots_round_trip_in_both_encodings_and_bombs_are_refused() {
    let mut a = doc::skeleton(&month_id(), ActorId::random()).unwrap();
    write(&mut a, 3, "3-1", 40);
    let encoded = encode_snapshot(&mut a);
    assert!(encoded.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "zstd frame");
    for bytes in [encoded, a.save()] {
        let mut b = AutoCommit::new();
        apply_payload(&month_id(), &mut b, &[], Some(&bytes)).unwrap();
        assert_eq!(b.get_heads(), a.get_heads());
        assert_eq!(doc::read_month(&b).unwrap().attendance.len(), 1);
    }
    let bomb = zstd::bulk::compress(&vec![0u8; MESSAGE_BYTES_MAX * 4 + 1024], 1).unwrap();
    assert!(bomb.len() < 64 * 1024, "a small message");
    assert!(decode_snapshot(&bomb).is_err());
}
