//! Optimistic concurrency: each `ExpectedVersion` accepts exactly the states it should, a failed
//! check fails only its own append (with the actual version), a multi-event append to a new
//! stream gets versions 0..n, and of two racing `NoStream` appends exactly one wins. Without
//! this, two writers could both believe they created a stream, or a refused append could take
//! its neighbours down with it. An expected-version chain built without waiting must also hold
//! when its appends go through different clones of the store.

use evstore::{Error, Event, ExpectedVersion};
use evstore_tests::{append_one, backends, open, small_options, temp_dir, watchdog};

#[test]
fn each_expectation_accepts_exactly_its_states() {
    let _watchdog = watchdog("each_expectation_accepts_exactly_its_states", 30);
    for backend in backends() {
        let dir = temp_dir("expected");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let wrong = |r: evstore::Result<evstore::Appended>| match r {
            Err(Error::WrongExpectedVersion { stream, expected, actual }) => (stream, expected, actual),
            other => panic!("expected WrongExpectedVersion, got {other:?}"),
        };
        // On a missing stream.
        assert_eq!(
            wrong(append_one(&store, "s", ExpectedVersion::StreamExists, b"x")),
            ("s".into(), ExpectedVersion::StreamExists, None)
        );
        assert_eq!(wrong(append_one(&store, "s", ExpectedVersion::Exact(0), b"x")).2, None);
        // Multi-event append creating the stream.
        let created = store
            .append("s", ExpectedVersion::NoStream, (0..3).map(|i| Event::new("E", vec![i])))
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!(created.version, 2);
        let versions: Vec<u64> = store.read_stream("s", 0).expect("read").map(|e| e.expect("event").version).collect();
        assert_eq!(versions, vec![0, 1, 2]);
        // On an existing stream.
        assert_eq!(wrong(append_one(&store, "s", ExpectedVersion::NoStream, b"x")).2, Some(2));
        assert_eq!(
            wrong(append_one(&store, "s", ExpectedVersion::Exact(1), b"x")),
            ("s".into(), ExpectedVersion::Exact(1), Some(2))
        );
        assert_eq!(append_one(&store, "s", ExpectedVersion::Exact(2), b"x").expect("right version").version, 3);
        assert_eq!(append_one(&store, "s", ExpectedVersion::StreamExists, b"x").expect("exists").version, 4);
        assert_eq!(append_one(&store, "s", ExpectedVersion::Any, b"x").expect("any").version, 5);
        // A refused append leaves no trace and costs no position.
        assert_eq!(store.durable_position(), 6);
        assert_eq!(store.read_all(0).expect("read_all").count(), 6);
    }
}

#[test]
fn a_failed_check_fails_only_its_own_append() {
    let _watchdog = watchdog("a_failed_check_fails_only_its_own_append", 30);
    for backend in backends() {
        let dir = temp_dir("expected-neighbours");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let a = store.append("a", ExpectedVersion::NoStream, [Event::new("E", b"1".to_vec())]).expect("append");
        let bad = store.append("a", ExpectedVersion::NoStream, [Event::new("E", b"2".to_vec())]).expect("append");
        let b = store.append("b", ExpectedVersion::Any, [Event::new("E", b"3".to_vec())]).expect("append");
        let a2 = store.append("a", ExpectedVersion::Exact(0), [Event::new("E", b"4".to_vec())]).expect("append");
        assert!(a.wait().is_ok());
        assert!(matches!(bad.wait(), Err(Error::WrongExpectedVersion { actual: Some(0), .. })));
        assert!(b.wait().is_ok());
        assert_eq!(a2.wait().expect("durable").version, 1);
        let data: Vec<Vec<u8>> = store.read_stream("a", 0).expect("read").map(|e| e.expect("event").data).collect();
        assert_eq!(data, vec![b"1".to_vec(), b"4".to_vec()]);
    }
}

#[test]
fn of_racing_creators_exactly_one_wins() {
    let _watchdog = watchdog("of_racing_creators_exactly_one_wins", 30);
    for backend in backends() {
        let dir = temp_dir("expected-race");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        for round in 0..20 {
            let stream = format!("race-{round}");
            let outcomes: Vec<_> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|i| {
                        let store = &store;
                        let stream = &stream;
                        scope.spawn(move || append_one(store, stream, ExpectedVersion::NoStream, &[i]))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("thread")).collect()
            });
            assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "exactly one creator of {stream}");
            for outcome in outcomes.iter().filter(|o| o.is_err()) {
                assert!(
                    matches!(outcome, Err(Error::WrongExpectedVersion { actual: Some(0), .. })),
                    "a losing creator is told the stream exists: {outcome:?}"
                );
            }
            assert_eq!(store.read_stream(&stream, 0).expect("read").count(), 1);
        }
    }
}

#[test]
fn a_chain_built_without_waiting_holds_across_clones() {
    let _watchdog = watchdog("a_chain_built_without_waiting_holds_across_clones", 60);
    for backend in backends() {
        let dir = temp_dir("expected-clones");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        for round in 0..200 {
            let stream = format!("chain-{round}");
            let other = store.clone();
            let first = store.append(&stream, ExpectedVersion::NoStream, [Event::new("E", b"0".to_vec())]);
            let second = other.append(&stream, ExpectedVersion::Exact(0), [Event::new("E", b"1".to_vec())]);
            assert_eq!(first.expect("append").wait().expect("first").version, 0);
            assert_eq!(second.expect("append").wait().expect("second, made after the first").version, 1, "{stream}");
        }
    }
}
