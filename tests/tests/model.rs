//! The store checked against a plain model: random sequences of appends (one to four events of
//! random sizes, every expected-version kind, right or wrong, to a handful of streams, through
//! two clones of the store), waits, and reopens, on both backends. The model is a map from
//! stream to its events, updated at the moment of each `append` call: appends to one stream are
//! placed in the order they were made, so every outcome (the version an append gets, or the
//! actual version a refused one is told) is known in advance. After every wait the store must
//! read back exactly the model, a refused append must leave no trace, and every acknowledged
//! position must point at its own event. Without this, only the paths the hand-written scenarios
//! thought of would be checked.

use std::collections::BTreeMap;

use evstore::{Error, Event, ExpectedVersion, Store, Ticket};
use evstore_tests::{backends, check_log_shape, open, read_all, read_stream, small_options, temp_dir};
use proptest::prelude::*;

const STREAMS: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` of the stream's current version (of 0 when it has none).
    ExactRight,
    /// `Exact` of a version the stream does not have.
    ExactWrong,
}

#[derive(Debug, Clone)]
enum Op {
    Append { stream: usize, clone: bool, expect: Expect, sizes: Vec<usize> },
    WaitAll,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        Just(Expect::ExactRight),
        Just(Expect::ExactWrong),
    ];
    // Mostly small events, sometimes a few KiB (groups are 64 KiB in these options).
    let size = prop_oneof![8 => 0usize..200, 1 => 1_000usize..12_000];
    prop_oneof![
        12 => (0..STREAMS, any::<bool>(), expect, prop::collection::vec(size, 1..=4))
            .prop_map(|(stream, clone, expect, sizes)| Op::Append { stream, clone, expect, sizes }),
        2 => Just(Op::WaitAll),
        1 => Just(Op::Reopen),
    ]
}

/// What the model says an append's ticket resolves to.
#[derive(Debug)]
enum Outcome {
    /// Durable: its first and last versions.
    Versions(u64, u64),
    /// Refused; the stream's actual version then.
    Refused(Option<u64>),
}

struct Pending {
    ticket: Ticket,
    stream: String,
    outcome: Outcome,
}

fn data(stream: &str, version: u64, size: usize) -> Vec<u8> {
    let mut bytes = format!("{stream}@{version}:").into_bytes();
    bytes.extend((0..size).map(|i| (i as u64 * 31 + version) as u8));
    bytes
}

/// Waits for every pending ticket and checks each against its predicted outcome, then checks
/// the whole store against the model.
fn settle(store: &Store, pending: &mut Vec<Pending>, model: &BTreeMap<String, Vec<Vec<u8>>>) {
    for Pending { ticket, stream, outcome } in pending.drain(..) {
        match (ticket.wait(), outcome) {
            (Ok(appended), Outcome::Versions(first, last)) => {
                assert_eq!(appended.version, last, "{stream}: version of an acknowledged append");
                let event = &read_all(store)[appended.position as usize];
                assert_eq!(
                    (event.stream.as_str(), event.version, &event.data),
                    (stream.as_str(), first, &model[&stream][first as usize]),
                    "the acknowledged position holds the append's first event"
                );
            }
            (Err(Error::WrongExpectedVersion { actual, .. }), Outcome::Refused(expected_actual)) => {
                assert_eq!(actual, expected_actual, "{stream}: the actual version a refused append is told");
            }
            (got, want) => panic!("{stream}: the store said {got:?}, the model {want:?}"),
        }
    }
    for stream in (0..STREAMS).map(|s| format!("s{s}")) {
        let expected = model.get(&stream).cloned().unwrap_or_default();
        let read: Vec<Vec<u8>> = read_stream(store, &stream).into_iter().map(|e| e.data).collect();
        assert_eq!(read, expected, "{stream} reads back as the model");
        assert_eq!(store.stream_version(&stream), (expected.len() as u64).checked_sub(1));
    }
    let total: usize = model.values().map(Vec::len).sum();
    assert_eq!(check_log_shape(store), total as u64, "the log holds exactly the acknowledged events");
}

fn run(ops: &[Op]) {
    for backend in backends() {
        let dir = temp_dir("model");
        let Some(mut store) = open(dir.path(), small_options(backend)) else { continue };
        let mut other = store.clone();
        let mut model: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut pending = Vec::new();
        for op in ops {
            match op {
                Op::Append { stream, clone, expect, sizes } => {
                    let stream = format!("s{stream}");
                    let events = model.entry(stream.clone()).or_default();
                    let actual = (events.len() as u64).checked_sub(1);
                    let expected = match expect {
                        Expect::Any => ExpectedVersion::Any,
                        Expect::NoStream => ExpectedVersion::NoStream,
                        Expect::StreamExists => ExpectedVersion::StreamExists,
                        Expect::ExactRight => ExpectedVersion::Exact(actual.unwrap_or(0)),
                        Expect::ExactWrong => ExpectedVersion::Exact(actual.map_or(3, |v| v + 1)),
                    };
                    let accepted = match expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => actual.is_none(),
                        ExpectedVersion::StreamExists => actual.is_some(),
                        ExpectedVersion::Exact(v) => actual == Some(v),
                    };
                    let first = events.len() as u64;
                    let bytes: Vec<Vec<u8>> =
                        sizes.iter().enumerate().map(|(i, &size)| data(&stream, first + i as u64, size)).collect();
                    let through = if *clone { &other } else { &store };
                    let ticket = through
                        .append(&stream, expected, bytes.iter().map(|b| Event::new("Model", b.as_slice())))
                        .expect("a valid append is taken");
                    let outcome = if accepted {
                        events.extend(bytes);
                        Outcome::Versions(first, events.len() as u64 - 1)
                    } else {
                        Outcome::Refused(actual)
                    };
                    pending.push(Pending { ticket, stream, outcome });
                }
                Op::WaitAll => settle(&store, &mut pending, &model),
                Op::Reopen => {
                    settle(&store, &mut pending, &model);
                    drop(other);
                    store.close().expect("close");
                    store = open(dir.path(), small_options(backend)).expect("io_uring was there a moment ago");
                    other = store.clone();
                    settle(&store, &mut pending, &model);
                }
            }
        }
        settle(&store, &mut pending, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_agrees_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops);
    }
}
