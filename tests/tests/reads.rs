//! The read API: backwards reads of a stream and of the log, a maximum count on every read, the
//! last event of a stream, and zero-copy `next_ref` reads that agree with the owned ones, over a
//! log of several segments and many groups, on both backends.

use evstore::{Event, ExpectedVersion, RecordedEvent, Store, END};
use evstore_tests::{backends, event, open, read_all, read_stream, small_options, temp_dir, watchdog, Rng};

const STREAMS: usize = 5;

/// Small segments (128 KiB), so that the log spans several.
fn options(backend: evstore::Backend) -> evstore::Options {
    let mut options = small_options(backend);
    options.segment_bytes = 128 << 10;
    options
}

/// Appends about 1,500 events over 5 streams in appends of 1 to 4 events, 50 appends per wait
/// (several segments), and returns the log as read forwards.
fn fill(store: &Store) -> Vec<RecordedEvent> {
    let mut rng = Rng::new(7);
    let mut versions = [0u64; STREAMS];
    let mut tickets = Vec::new();
    for _ in 0..600 {
        let s = rng.below(STREAMS as u64) as usize;
        let stream = format!("reads-{s}");
        let count = 1 + rng.below(4);
        let events: Vec<Event> = (0..count).map(|k| event(&stream, versions[s] + k, 3)).collect();
        versions[s] += count;
        tickets.push(store.append(&stream, ExpectedVersion::Any, events).expect("append"));
        if tickets.len() == 50 {
            tickets.drain(..).for_each(|t| {
                t.wait().expect("durable");
            });
        }
    }
    tickets.into_iter().for_each(|t| {
        t.wait().expect("durable");
    });
    read_all(store)
}

fn collect(iter: impl Iterator<Item = evstore::Result<RecordedEvent>>) -> Vec<RecordedEvent> {
    iter.collect::<Result<_, _>>().expect("read")
}

#[test]
fn backwards_reads_and_max_counts_agree_with_forward_reads() {
    let _watchdog = watchdog("backwards_reads_and_max_counts_agree_with_forward_reads", 60);
    for backend in backends() {
        let dir = temp_dir("reads");
        let Some(store) = open(dir.path(), options(backend)) else { continue };
        let log = fill(&store);
        assert!(store.stats().segments >= 2, "the log spans segments");
        let n = log.len() as u64;

        // The whole log backwards, from END and from past the end.
        let mut reversed = log.clone();
        reversed.reverse();
        assert_eq!(collect(store.read_all_backwards(END).unwrap()), reversed);
        assert_eq!(collect(store.read_all_backwards(n + 10).unwrap()), reversed);
        // From a position in the middle, and with a maximum count.
        for from in [0, 1, n / 3, n / 2, n - 1] {
            let expected: Vec<_> = log[..=from as usize].iter().rev().cloned().collect();
            assert_eq!(collect(store.read_all_backwards(from).unwrap()), expected, "backwards from {from}");
            let limited: Vec<_> = expected.iter().take(17).cloned().collect();
            assert_eq!(collect(store.read_all_backwards(from).unwrap().max_count(17)), limited);
            let forwards: Vec<_> = log[from as usize..].iter().take(33).cloned().collect();
            assert_eq!(collect(store.read_all(from).unwrap().max_count(33)), forwards, "forwards from {from}");
        }
        assert_eq!(collect(store.read_all(0).unwrap().max_count(0)), vec![]);
        assert_eq!(collect(store.read_all(n).unwrap()), vec![]);

        for s in 0..STREAMS {
            let stream = format!("reads-{s}");
            let events = read_stream(&store, &stream);
            let last = events.len() as u64 - 1;
            assert_eq!(store.last_event(&stream).unwrap().as_ref(), events.last(), "last event of {stream}");
            let mut reversed = events.clone();
            reversed.reverse();
            assert_eq!(collect(store.read_stream_backwards(&stream, END).unwrap()), reversed);
            for from in [0, last / 2, last] {
                let expected: Vec<_> = events[..=from as usize].iter().rev().cloned().collect();
                assert_eq!(collect(store.read_stream_backwards(&stream, from).unwrap()), expected);
                assert_eq!(
                    collect(store.read_stream_backwards(&stream, from).unwrap().max_count(5)),
                    expected.iter().take(5).cloned().collect::<Vec<_>>()
                );
                assert_eq!(
                    collect(store.read_stream(&stream, from).unwrap().max_count(3)),
                    events[from as usize..].iter().take(3).cloned().collect::<Vec<_>>()
                );
            }
        }
        assert_eq!(store.last_event("no-such-stream").unwrap(), None);
        assert_eq!(collect(store.read_stream_backwards("no-such-stream", END).unwrap()), vec![]);
        store.close().expect("close");
    }
}

#[test]
fn zero_copy_reads_see_the_same_events_as_owned_reads() {
    let _watchdog = watchdog("zero_copy_reads_see_the_same_events_as_owned_reads", 60);
    let dir = temp_dir("reads-ref");
    let store = open(dir.path(), options(evstore::Backend::Portable)).expect("portable opens");
    let log = fill(&store);
    store
        .append("reads-meta", ExpectedVersion::Any, [Event::new("WithMeta", &b"data"[..]).with_metadata("meta")])
        .unwrap()
        .wait()
        .unwrap();
    let mut all = store.read_all(0).unwrap();
    let mut seen = 0;
    while let Some(event) = all.next_ref() {
        let event = event.expect("read");
        if seen < log.len() {
            assert_eq!(event.to_recorded(), log[seen]);
        } else {
            assert_eq!((event.event_type(), event.data(), event.metadata()), ("WithMeta", &b"data"[..], &b"meta"[..]));
            assert_eq!((event.stream(), event.version()), ("reads-meta", 0));
        }
        seen += 1;
    }
    assert_eq!(seen, log.len() + 1);

    let mut backwards = store.read_all_backwards(END).unwrap();
    let mut position = log.len() as u64 + 1;
    while let Some(event) = backwards.next_ref() {
        position -= 1;
        assert_eq!(event.expect("read").position(), position);
    }
    assert_eq!(position, 0);

    let expected = read_stream(&store, "reads-2");
    let mut stream = store.read_stream("reads-2", 0).unwrap();
    let mut got = Vec::new();
    while let Some(event) = stream.next_ref() {
        got.push(event.expect("read").to_recorded());
    }
    assert_eq!(got, expected);
    store.close().expect("close");
}

#[test]
fn reads_made_before_an_append_do_not_see_it_and_reads_after_do() {
    let _watchdog = watchdog("reads_made_before_an_append_do_not_see_it_and_reads_after_do", 30);
    let dir = temp_dir("reads-snapshot");
    let store = open(dir.path(), options(evstore::Backend::Portable)).expect("portable opens");
    store.append("s", ExpectedVersion::Any, [Event::new("A", "1")]).unwrap().wait().unwrap();
    let before_all = store.read_all_backwards(END).unwrap();
    let before_stream = store.read_stream_backwards("s", END).unwrap();
    store.append("s", ExpectedVersion::Any, [Event::new("A", "2")]).unwrap().wait().unwrap();
    assert_eq!(collect(before_all).len(), 1);
    assert_eq!(collect(before_stream).len(), 1);
    assert_eq!(store.last_event("s").unwrap().map(|e| e.data), Some(b"2".to_vec()));
    assert_eq!(collect(store.read_all_backwards(END).unwrap()).len(), 2);
    store.close().expect("close");
}
