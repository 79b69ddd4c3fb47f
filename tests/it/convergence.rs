//! Convergence property: three PCs of one school, their county relay and the city, with random
//! edits (records on every PC, feedback from the city) synced in random orders: through the
//! relay, directly with the city, cut after one round, and across restarts of any of them. After
//! a final round of syncs every replica holds the same heads for every document, the same
//! records, and the city's totals equal every PC's.
//!
//! In-process and sans-HTTP (the wire codec is still in the path: every request and response is
//! encoded and decoded); stores are on disk (the default engine) so restarts reopen them.
//! `SCHOOLSYNC_CONVERGENCE_CASES` sets the proptest cases (default 12, for CI).

use std::collections::BTreeSet;
use std::path::PathBuf;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use schoolsync_agent::app::{Actor, Agent, NewRecord};
use schoolsync_protocol::doc::read_month;
use schoolsync_protocol::ids::{parse_date, DocId, Month, SchoolId};
use schoolsync_protocol::records::{Attendance, ClassInfo, Day};
use schoolsync_protocol::sync::{self, SyncRequest, SyncResponse};
use schoolsync_server::node::{Node, Role};
use schoolsync_store::replica::Replica;
use schoolsync_store::DocStore;

const PCS: usize = 3;
const CLASSES: usize = 3;
/// Rounds one sync may take before the property fails (a loop, not slowness).
const ROUNDS_MAX: usize = 50;

#[derive(Clone, Debug)]
enum Op {
    /// PC `pc` records attendance of class `class` on day `day` with `present` present.
    Record {
        pc: usize,
        day: u32,
        class: usize,
        present: u32,
    },
    /// The city writes feedback on a class-day.
    Feedback { day: u32, class: usize, note: u8 },
    /// PC `pc` syncs with the relay (or the city), stopping after `rounds` rounds if given.
    Sync {
        pc: usize,
        direct: bool,
        rounds: Option<usize>,
    },
    /// The relay forwards to the city, stopping after `rounds` rounds if given.
    Forward { rounds: Option<usize> },
    /// PC `pc` (or, past the PCs, the relay then the city) restarts: its store is reopened.
    Restart { who: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let rounds = proptest::option::of(1usize..3);
    prop_oneof![
        4 => (0..PCS, 2u32..6, 1..=CLASSES, 30u32..41)
            .prop_map(|(pc, day, class, present)| Op::Record { pc, day, class, present }),
        1 => (2u32..6, 1..=CLASSES, any::<u8>())
            .prop_map(|(day, class, note)| Op::Feedback { day, class, note }),
        3 => (0..PCS, any::<bool>(), rounds.clone())
            .prop_map(|(pc, direct, rounds)| Op::Sync { pc, direct, rounds }),
        2 => rounds.prop_map(|rounds| Op::Forward { rounds }),
        1 => (0..PCS + 2).prop_map(|who| Op::Restart { who }),
    ]
}

fn school() -> SchoolId {
    "2113000001".parse().unwrap()
}

fn month() -> DocId {
    DocId::records(
        &school(),
        Month {
            year: 2026,
            month: 11,
        },
    )
}

struct World {
    dir: tempfile::TempDir,
    pcs: Vec<Option<Agent>>,
    relay: Option<Node>,
    city: Option<Node>,
}

impl World {
    fn pc_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("pc{i}"))
    }

    fn open_pc(&self, i: usize) -> Agent {
        let store = DocStore::open(&self.pc_dir(i)).unwrap();
        let actor = Actor {
            clerk: format!("clerk{i}"),
            machine: format!("pc{i}"),
        };
        Agent::new(store, Default::default(), actor)
    }

    fn open_node(&self, relay: bool) -> Node {
        let (role, name) = if relay {
            (
                Role::Relay {
                    county: schoolsync_protocol::ids::CountyTable::default()
                        .parse("130821")
                        .unwrap(),
                },
                "relay",
            )
        } else {
            (Role::City, "city")
        };
        Node::new(role, DocStore::open(&self.dir.path().join(name)).unwrap())
    }

    fn new() -> World {
        let mut world = World {
            dir: tempfile::tempdir().unwrap(),
            pcs: Vec::new(),
            relay: None,
            city: None,
        };
        world.relay = Some(world.open_node(true));
        world.city = Some(world.open_node(false));
        for i in 0..PCS {
            let agent = world.open_pc(i);
            agent
                .init("2113000001", "130821", "测试学校", None, 1_000)
                .unwrap();
            let classes: Vec<ClassInfo> = (1..=CLASSES)
                .map(|c| ClassInfo::new(format!("3-{c}").parse().unwrap(), 3, 45).unwrap())
                .collect();
            agent.add_classes(&classes, "classes", 2_000).unwrap();
            world.pcs.push(Some(agent));
        }
        world
    }

    fn pc(&self, i: usize) -> &Agent {
        self.pcs[i].as_ref().unwrap()
    }
}

/// Encodes and decodes through the wire format, as HTTP would carry it.
fn wire<T: serde::Serialize + serde::de::DeserializeOwned>(message: &T) -> T {
    sync::decode(&sync::encode(message)).unwrap()
}

/// Syncs `store` (link `link`) with `node`, for at most `rounds` rounds; true when in sync.
fn sync_with(
    store: &DocStore,
    link: &str,
    schools: &[SchoolId],
    node: &Node,
    rounds: Option<usize>,
) -> bool {
    let replica = Replica::new(store, link);
    let mut pulls = BTreeSet::new();
    for _ in 0..rounds.unwrap_or(ROUNDS_MAX) {
        let request: SyncRequest = replica.build(schools, &pulls, true).unwrap();
        let (response, _) = node
            .serve_sync(&wire(&request), &Default::default())
            .unwrap();
        let response: SyncResponse = wire(&response);
        let absorbed = replica.absorb(&request, response).unwrap();
        assert!(absorbed.bad.is_empty(), "{:?}", absorbed.bad);
        assert!(absorbed.refused.is_empty(), "{:?}", absorbed.refused);
        if absorbed.in_sync {
            return true;
        }
        pulls = absorbed.pulls;
    }
    assert!(rounds.is_some(), "no convergence in {ROUNDS_MAX} rounds");
    false
}

fn forward(world: &World, rounds: Option<usize>) -> bool {
    let relay = world.relay.as_ref().unwrap();
    let city = world.city.as_ref().unwrap();
    relay
        .with_docs(|store, cache| {
            let schools = Replica::new(store, "city").schools().unwrap();
            let done = schools.is_empty() || sync_with(store, "city", &schools, city, rounds);
            cache.clear(); // Documents changed underneath the relay's cache.
            Ok::<_, schoolsync_store::StoreError>(done)
        })
        .unwrap()
        .unwrap()
}

fn apply(world: &mut World, op: &Op) {
    match *op {
        Op::Record {
            pc,
            day,
            class,
            present,
        } => {
            let record = Attendance {
                date: Day(parse_date(&format!("2026-11-{day:02}")).unwrap()),
                class: format!("3-{class}").parse().unwrap(),
                expected: 40,
                present,
                sick: 40 - present,
                personal: 0,
                other: 0,
                symptoms: Default::default(),
            };
            world
                .pc(pc)
                .write_records(&[NewRecord::Attendance(record)], "record", 3_000)
                .unwrap();
        }
        Op::Feedback { day, class, note } => {
            let key = format!("2026-11-{day:02}/3-{class}");
            // False when the city has not seen the month yet: nothing to write on.
            let _ = world.city.as_ref().unwrap().put_feedback(
                &month(),
                &key,
                &format!("note {note}"),
                4_000,
            );
        }
        Op::Sync { pc, direct, rounds } => {
            let node = if direct { &world.city } else { &world.relay };
            let link = if direct { "city" } else { "relay" };
            sync_with(
                &world.pc(pc).store,
                link,
                &[school()],
                node.as_ref().unwrap(),
                rounds,
            );
        }
        Op::Forward { rounds } => {
            forward(world, rounds);
        }
        Op::Restart { who } => {
            if who < PCS {
                world.pcs[who] = None;
                world.pcs[who] = Some(world.open_pc(who));
            } else if who == PCS {
                world.relay = None;
                world.relay = Some(world.open_node(true));
            } else {
                world.city = None;
                world.city = Some(world.open_node(false));
            }
        }
    }
}

/// Everything a replica holds for the school: every document's heads, and the month's records
/// with the totals the city reports (expected, present, sick over every record).
/// A replica's heads per document, its month's records as text, and its totals.
type State = (
    Vec<(DocId, Vec<automerge::ChangeHash>)>,
    String,
    (u32, u32, u32),
);

fn state(store: &DocStore) -> State {
    let index = store.index("").unwrap();
    let loaded = store.load(&month()).unwrap();
    if !loaded.exists() {
        return (index, String::new(), (0, 0, 0));
    }
    let records = read_month(&loaded.doc).unwrap();
    let totals = records.attendance.values().fold((0, 0, 0), |t, r| {
        (t.0 + r.expected, t.1 + r.present, t.2 + r.sick)
    });
    let text = format!("{:?} {:?}", records.attendance, records.feedback);
    (index, text, totals)
}

fn converge(world: &World) {
    // Everyone syncs through the relay, the relay forwards, and once more so feedback the city
    // wrote comes back down; then directly with the city.
    for _ in 0..3 {
        for pc in 0..PCS {
            sync_with(
                &world.pc(pc).store,
                "relay",
                &[school()],
                world.relay.as_ref().unwrap(),
                None,
            );
        }
        forward(world, None);
    }
    for pc in 0..PCS {
        sync_with(
            &world.pc(pc).store,
            "city",
            &[school()],
            world.city.as_ref().unwrap(),
            None,
        );
    }
    for _ in 0..2 {
        forward(world, None);
        for pc in 0..PCS {
            sync_with(
                &world.pc(pc).store,
                "relay",
                &[school()],
                world.relay.as_ref().unwrap(),
                None,
            );
        }
    }
}

#[test]
fn convergence_property() {
    let cases = std::env::var("SCHOOLSYNC_CONVERGENCE_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(12);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&proptest::collection::vec(op(), 1..30), |ops| {
        let mut world = World::new();
        for op in &ops {
            apply(&mut world, op);
        }
        converge(&world);
        let city = state(&world.city.as_ref().unwrap().store);
        let relay = state(&world.relay.as_ref().unwrap().store);
        prop_assert_eq!(&relay, &city, "relay and city differ after {:?}", ops);
        for pc in 0..PCS {
            let here = state(&world.pc(pc).store);
            prop_assert_eq!(&here, &city, "pc{} and the city differ after {:?}", pc, ops);
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("convergence: {e}");
    }
    eprintln!("convergence: {cases} cases of up to 29 random operations, every replica identical");
}
