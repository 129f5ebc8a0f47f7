//! Segment rotation: with 1 MiB segments, a few MiB of events fill at least five segments, and
//! every event reads back across the boundaries, through both read paths, from any starting
//! point, before and after a reopen. Without this, an off-by-one in the rollover (a group cut
//! at a segment end, a location pointing into the wrong file, a reader that does not follow the
//! log into the next segment, recovery that stops at the first full segment) would lose or garble
//! exactly the events next to a boundary, which small tests never reach.

use evstore::{Event, ExpectedVersion, Store};
use evstore_tests::{backends, check_log_shape, open, read_stream, small_options, temp_dir, used_segments, watchdog};

const STREAMS: usize = 7;
const APPENDS: usize = 3000;

/// 1 to 3 events of 500 to 1,500 bytes, derived from (stream, version).
fn data(stream: &str, version: u64) -> Vec<u8> {
    let len = 500 + (version as usize * 7919 + stream.len() * 104_729) % 1000;
    let mut bytes = format!("{stream}@{version}|").into_bytes();
    bytes.extend((0..len).map(|i| (i as u64 ^ version) as u8));
    bytes
}

fn check_everything(store: &Store, versions: &[u64]) {
    let n = check_log_shape(store);
    assert_eq!(n, versions.iter().sum::<u64>(), "every event is in the log");
    for (s, &count) in versions.iter().enumerate() {
        let stream = format!("rot-{s}");
        let events = read_stream(store, &stream);
        assert_eq!(events.len() as u64, count, "{stream} reads back whole");
        for event in &events {
            assert_eq!(event.data, data(&stream, event.version), "{stream}@{} differs", event.version);
            assert_eq!(event.event_type, "Rotated");
            assert_eq!(event.metadata, event.version.to_le_bytes());
        }
        // Starting in the middle of the stream lands on the right event, whatever segment holds it.
        let from = count / 2;
        let first = store.read_stream(&stream, from).expect("read_stream").next().expect("an event").expect("readable");
        assert_eq!((first.version, &first.data), (from, &data(&stream, from)));
    }
    // Reading the whole log from several starting positions, each in a different segment.
    for from in [1, n / 5, n / 2, n - 1] {
        let positions: Vec<u64> =
            store.read_all(from).expect("read_all").map(|e| e.expect("readable").position).collect();
        assert_eq!(positions, (from..n).collect::<Vec<_>>(), "read_all({from})");
    }
    assert_eq!(store.read_all(n).expect("read_all").count(), 0, "nothing past the end");
}

#[test]
fn events_read_back_across_segment_boundaries() {
    let _watchdog = watchdog("events_read_back_across_segment_boundaries", 120);
    for backend in backends() {
        let dir = temp_dir("rotation");
        let Some(store) = open(dir.path(), small_options(backend)) else { continue };
        let mut versions = vec![0u64; STREAMS];
        let mut tickets = Vec::new();
        for i in 0..APPENDS {
            let s = i % STREAMS;
            let stream = format!("rot-{s}");
            let version = versions[s];
            let count = 1 + (i as u64 % 3);
            let events: Vec<_> = (version..version + count)
                .map(|v| Event::new("Rotated", data(&stream, v)).with_metadata(v.to_le_bytes()))
                .collect();
            tickets.push(store.append(&stream, ExpectedVersion::Any, events).expect("append"));
            versions[s] += count;
            // Keep a few appends in flight, so groups fill up and cross segment ends.
            if tickets.len() == 64 {
                for ticket in tickets.drain(..) {
                    ticket.wait().expect("durable");
                }
            }
        }
        for ticket in tickets {
            ticket.wait().expect("durable");
        }
        let stats = store.stats();
        assert!(stats.segments >= 5, "{backend:?}: only {} segments for ~6 MiB in 1 MiB segments", stats.segments);
        assert!(used_segments(dir.path()).len() >= 5, "{backend:?}: segment files on disk");
        check_everything(&store, &versions);
        store.close().expect("close");

        let store = Store::open(dir.path(), small_options(backend)).expect("reopen");
        check_everything(&store, &versions);
        // And the log goes on after a reopen with many segments behind it.
        let appended = store
            .append(
                "rot-0",
                ExpectedVersion::Exact(versions[0] - 1),
                [Event::new("Rotated", data("rot-0", versions[0]))],
            )
            .expect("append")
            .wait()
            .expect("durable");
        assert_eq!(appended.position, versions.iter().sum::<u64>());
        store.close().expect("close");
    }
}
