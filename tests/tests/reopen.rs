//! Reopening: after a clean close, or after the last handle is merely dropped, a reopened store
//! holds exactly what it held before (same bytes, positions, versions, timestamps), and goes on
//! from there: the next position follows the last one and expected-version checks use the
//! recovered versions. Without this, a store would work until its first restart and then hand
//! out duplicate positions, restart stream versions at 0 (letting a second `NoStream` writer in),
//! or lose appends that were queued when the handle was dropped.

use evstore::{Backend, Error, Event, ExpectedVersion, RecordedEvent, Store};
use evstore_tests::{append_one, backends, check_log_shape, open, read_all, small_options, temp_dir, watchdog};

/// Appends `count` single-event appends to each of `streams` and waits for all of them.
fn fill(store: &Store, streams: &[&str], count: usize, tag: &str) {
    let tickets: Vec<_> = (0..count)
        .flat_map(|i| streams.iter().map(move |s| (i, *s)))
        .map(|(i, stream)| {
            let event = Event::new("Filled", format!("{tag}:{stream}:{i}")).with_metadata(tag.as_bytes().to_vec());
            store.append(stream, ExpectedVersion::Any, [event]).expect("append")
        })
        .collect();
    for ticket in tickets {
        ticket.wait().expect("durable");
    }
}

fn check_continues(store: &Store, before: &[RecordedEvent], backend: Backend) {
    assert_eq!(read_all(store), before, "{backend:?}: the reopened log is identical, timestamps included");
    let n = before.len() as u64;
    assert_eq!(store.durable_position(), n);
    check_log_shape(store);
    let last_a = before.iter().filter(|e| e.stream == "a").count() as u64 - 1;
    assert_eq!(store.stream_version("a"), Some(last_a), "recovered version of a");
    // The recovered version is what the checks see.
    match append_one(store, "a", ExpectedVersion::NoStream, b"again") {
        Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(last_a)),
        other => panic!("{backend:?}: NoStream on a recovered stream: {other:?}"),
    }
    match append_one(store, "a", ExpectedVersion::Exact(last_a - 1), b"stale") {
        Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(last_a)),
        other => panic!("{backend:?}: stale Exact on a recovered stream: {other:?}"),
    }
    let appended = append_one(store, "a", ExpectedVersion::Exact(last_a), b"next").expect("Exact(recovered version)");
    assert_eq!((appended.position, appended.version), (n, last_a + 1), "positions and versions go on");
}

#[test]
fn a_closed_store_reopens_where_it_left_off() {
    let _watchdog = watchdog("a_closed_store_reopens_where_it_left_off", 30);
    for backend in backends() {
        let dir = temp_dir("reopen");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        fill(&store, &["a", "b", "c"], 20, "gen0");
        let mut before = read_all(&store);
        store.close().expect("close");
        // Three more generations: each reopen continues the log of the one before.
        for generation in 1..4 {
            let store = Store::open(dir.path(), small_options(backend)).expect("reopen");
            check_continues(&store, &before, backend);
            fill(&store, &["a", "b", "d"], 10, &format!("gen{generation}"));
            before = read_all(&store);
            store.close().expect("close");
        }
        let store = Store::open(dir.path(), small_options(backend)).expect("reopen");
        assert_eq!(read_all(&store), before);
        assert_eq!(before.len(), 60 + 3 * (1 + 30), "every generation's events are there");
        store.close().expect("close");
    }
}

#[test]
fn dropping_the_last_handle_keeps_queued_appends() {
    let _watchdog = watchdog("dropping_the_last_handle_keeps_queued_appends", 30);
    for backend in backends() {
        let dir = temp_dir("reopen-drop");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        fill(&store, &["a", "b"], 10, "acked");
        // Queued but never waited for: dropping the last handle must still make them durable.
        let tickets: Vec<_> = (0..50)
            .map(|i| {
                store.append("a", ExpectedVersion::Any, [Event::new("Queued", format!("queued:{i}"))]).expect("append")
            })
            .collect();
        let clone = store.clone();
        drop(store);
        drop(clone);
        drop(tickets);

        let store = Store::open(dir.path(), small_options(backend)).expect("reopen after drop");
        let log = read_all(&store);
        assert_eq!(log.len(), 70, "{backend:?}: the 50 queued appends were made durable by the drop");
        let queued: Vec<Vec<u8>> = log.iter().filter(|e| e.event_type == "Queued").map(|e| e.data.clone()).collect();
        assert_eq!(queued, (0..50).map(|i| format!("queued:{i}").into_bytes()).collect::<Vec<_>>(), "in order");
        let before = log;
        // Drop again without close, with nothing queued, then check it goes on.
        drop(store);
        let store = Store::open(dir.path(), small_options(backend)).expect("reopen after drop");
        check_continues(&store, &before, backend);
        drop(store);
    }
}
