//! attack8: the submitter's `seal_into` (commit c491510) now writes a record's header bytes
//! [8, 32) as three little-endian words built in registers: `position | version << 48`,
//! `version >> 16 | field lengths << 32`, the timestamp, and extends the CRC over those words
//! with SSE 4.2 instructions. A slip in a shift or a mask would put a field's bits into its
//! neighbour, or a CRC that recovery (which re-checks every record) rejects. These tests seal
//! records whose fields sit at their limits and read them back before and after a reopen, by
//! stream version and by position:
//! - every field length at its extremes: stream id and event type of 1 and 255 bytes (multi-byte
//!   UTF-8 among them), metadata of 0, 256 and 65,535 bytes, empty data, and data of exactly the
//!   largest size an append takes (one byte more is refused and leaves nothing behind);
//! - positions in the top bits of the 48 (a log that starts 65,546 events below 2^48, written
//!   as an empty segment header, and ends at exactly 2^48 - 1), with a stream whose versions
//!   cross 2^16 (where the version's low 16 bits in the first word wrap to zero and its high
//!   bits start filling the second word), after which the log is full.

use evstore::{Backend, Error, Event, ExpectedVersion, Options, RecordedEvent, Store};
use evstore_tests::{backends, open, read_all, read_stream, small_options, temp_dir, watchdog, write_empty_segment_0};

const GROUP_BYTES_MAX: usize = 256 << 10;
/// What one append may take: a group less its header.
const MAX: usize = GROUP_BYTES_MAX - 32;

fn options(backend: Backend) -> Options {
    let mut options = small_options(backend);
    options.group_bytes_max = GROUP_BYTES_MAX;
    options
}

/// One event to append: stream, type, metadata, data.
type Spec = (String, String, Vec<u8>, Vec<u8>);

fn spec(stream: &str, event_type: &str, metadata: usize, data: usize) -> Spec {
    let pattern = |n: usize, salt: usize| (0..n).map(|k| ((k * 31 + salt) % 251) as u8).collect::<Vec<u8>>();
    (stream.to_string(), event_type.to_string(), pattern(metadata, 7), pattern(data, 13))
}

/// The data that fills a record of `stream`, `event_type` and `metadata` bytes to `MAX`.
fn largest_data(stream: &str, event_type: &str, metadata: usize) -> usize {
    MAX - 32 - stream.len() - event_type.len() - metadata
}

fn same(got: &RecordedEvent, want: &Spec, what: &str) {
    assert_eq!(got.stream, want.0, "{what}: stream");
    assert_eq!(got.event_type, want.1, "{what}: event type");
    assert!(got.metadata == want.2, "{what}: metadata ({} bytes, {} wanted)", got.metadata.len(), want.2.len());
    assert!(got.data == want.3, "{what}: data ({} bytes, {} wanted)", got.data.len(), want.3.len());
}

#[test]
fn every_field_length_at_its_extremes_reads_back_after_a_reopen() {
    let _watchdog = watchdog("every_field_length_at_its_extremes_reads_back_after_a_reopen", 60);
    let long_stream = "\u{e9}".repeat(127) + "z";
    let other_long_stream = "q".repeat(255);
    let long_type = "T".repeat(254) + "!";
    let utf8_type = "\u{20ac}".repeat(85);
    assert_eq!((long_stream.len(), other_long_stream.len(), long_type.len(), utf8_type.len()), (255, 255, 255, 255));
    // Appends of one event (the one-event path) and of two and three (the collected path).
    let appends: Vec<Vec<Spec>> = vec![
        vec![spec("a", "T", 0, 0)],
        vec![spec(&long_stream, &long_type, 65_535, 0)],
        vec![spec(&long_stream, &utf8_type, 65_535, largest_data(&long_stream, &utf8_type, 65_535))],
        vec![spec("a", &long_type, 0, largest_data("a", &long_type, 0))],
        vec![spec(&other_long_stream, "T", 256, largest_data(&other_long_stream, "T", 256))],
        vec![spec("a", "T", 65_535, 1), spec("a", &long_type, 0, 0), spec("a", "T", 255, 8)],
        vec![spec(&long_stream, "T", 0, 0), spec(&long_stream, &long_type, 65_535, 65_000)],
        vec![spec(&other_long_stream, &utf8_type, 65_535, 0), spec(&other_long_stream, "x", 0, 0)],
    ];
    for backend in backends() {
        let dir = temp_dir("attack8-extremes");
        let Some(store) = open(dir.path(), options(backend)) else { continue };
        let mut log: Vec<Spec> = Vec::new();
        for events in &appends {
            let before = store.durable_position();
            let call =
                events.iter().map(|(_, t, m, d)| Event::new(t.as_str(), d.as_slice()).with_metadata(m.as_slice()));
            let appended =
                store.append(&events[0].0, ExpectedVersion::Any, call).expect("valid").wait().expect("durable");
            assert_eq!(appended.position, before);
            log.extend(events.iter().cloned());
            // One byte more than the largest is refused, and leaves nothing.
            let (stream, event_type, metadata, _) = &events[0];
            let too_large = vec![0u8; largest_data(stream, event_type, metadata.len()) + 1];
            let event = Event::new(event_type.as_str(), too_large).with_metadata(metadata.as_slice());
            match store.append(stream, ExpectedVersion::Any, [event]) {
                Err(Error::EventTooLarge { size, max }) => assert_eq!((size, max), (MAX + 1, MAX)),
                other => panic!("an event one byte past the largest: {:?}", other.map(|t| t.wait())),
            }
            assert_eq!(store.durable_position(), log.len() as u64, "the refused append left a trace");
        }
        let check = |store: &Store, when: &str| {
            let all = read_all(store);
            assert_eq!(all.len(), log.len(), "{when}");
            let mut versions = std::collections::HashMap::<&str, u64>::new();
            for (k, (got, want)) in all.iter().zip(&log).enumerate() {
                let what = format!("{when}, {backend:?}, position {k}");
                same(got, want, &what);
                let version = versions.entry(want.0.as_str()).or_insert(0);
                assert_eq!((got.position, got.version), (k as u64, *version), "{what}");
                *version += 1;
                assert!(got.timestamp_us > 1_600_000_000_000_000, "{what}: timestamp {}", got.timestamp_us);
                // Read by version: the same event.
                let by_version = store.read_stream(&got.stream, got.version).expect("read").next();
                let by_version = by_version.expect("the event is there").expect("it reads");
                assert_eq!((by_version.position, by_version.timestamp_us), (got.position, got.timestamp_us), "{what}");
                same(&by_version, want, &what);
            }
            for stream in ["a", long_stream.as_str(), other_long_stream.as_str()] {
                assert_eq!(store.stream_version(stream), versions.get(stream).map(|v| v - 1), "{when}: {stream}");
                assert_eq!(read_stream(store, stream).len() as u64, versions[stream], "{when}");
            }
            all
        };
        let before = check(&store, "before the reopen");
        store.close().expect("close");
        let store = open(dir.path(), options(backend)).expect("reopen");
        let after = check(&store, "after the reopen");
        let stamps = |events: &[RecordedEvent]| events.iter().map(|e| e.timestamp_us).collect::<Vec<_>>();
        assert_eq!(stamps(&before), stamps(&after), "timestamps changed across the reopen");
        store.close().expect("close");
    }
}

const POSITION_END: u64 = 1 << 48;
/// Events of the stream whose versions cross 2^16.
const LONG_STREAM_EVENTS: u64 = (1 << 16) + 4;
/// Events of the other stream, interleaved.
const OTHER_EVENTS: u64 = 6;
/// Where the log starts: it ends at exactly 2^48 - 1.
const START: u64 = POSITION_END - LONG_STREAM_EVENTS - OTHER_EVENTS;

fn long_data(version: u64) -> Vec<u8> {
    version.to_le_bytes().to_vec()
}

#[test]
fn versions_across_2_16_at_positions_up_to_2_48_read_back_after_a_reopen() {
    let _watchdog = watchdog("versions_across_2_16_at_positions_up_to_2_48_read_back_after_a_reopen", 120);
    for backend in backends() {
        let dir = temp_dir("attack8-high");
        write_empty_segment_0(dir.path(), START, &options(backend));
        let Some(store) = open(dir.path(), options(backend)) else { continue };
        assert_eq!(store.durable_position(), START);
        // The long stream: single events around 2^16 and at the ends, runs of up to 3,000 in
        // between; the other stream gets one event now and then.
        let mut version = 0u64;
        let mut others = 0u64;
        let mut expected_positions = Vec::new();
        while version < LONG_STREAM_EVENTS {
            let near_edge = !(2..65_530).contains(&version);
            let run = if near_edge { 1 } else { 3_000.min(65_530 - version) };
            let events = (version..version + run).map(|v| Event::new("V", long_data(v)));
            let expected = if version == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(version - 1) };
            let position = store.durable_position();
            let appended = store.append("v", expected, events).expect("valid").wait().expect("durable");
            assert_eq!((appended.position, appended.version), (position, version + run - 1));
            expected_positions.extend((0..run).map(|k| position + k));
            version += run;
            if others < OTHER_EVENTS - 1 && (near_edge || version % 9_000 < run) {
                let other = store.append("w", ExpectedVersion::Any, [Event::new("W", others.to_le_bytes())]);
                other.expect("valid").wait().expect("durable");
                others += 1;
            }
        }
        while others < OTHER_EVENTS - 1 {
            store
                .append("w", ExpectedVersion::Any, [Event::new("W", others.to_le_bytes())])
                .expect("valid")
                .wait()
                .expect("durable");
            others += 1;
        }
        // The last position of all: 2^48 - 1.
        let last =
            store.append("w", ExpectedVersion::Any, [Event::new("W", others.to_le_bytes())]).expect("valid").wait();
        assert_eq!(last.expect("the last position fits").position, POSITION_END - 1);
        match store.append("w", ExpectedVersion::Any, [Event::new("W", &b"past"[..])]).map(|t| t.wait()) {
            Ok(Err(Error::LogFull { what: "log", max })) => assert_eq!(max, POSITION_END),
            other => panic!("an append past 2^48: {other:?}"),
        }
        let check = |store: &Store, when: &str| {
            assert_eq!(store.durable_position(), POSITION_END, "{when}");
            assert_eq!(store.stream_version("v"), Some(LONG_STREAM_EVENTS - 1), "{when}");
            assert_eq!(store.stream_version("w"), Some(OTHER_EVENTS - 1), "{when}");
            let long: Vec<RecordedEvent> = read_stream(store, "v");
            assert_eq!(long.len() as u64, LONG_STREAM_EVENTS, "{when}");
            for (k, event) in long.iter().enumerate() {
                let ok = event.version == k as u64
                    && event.position == expected_positions[k]
                    && event.data == long_data(k as u64)
                    && event.stream == "v";
                assert!(ok, "{when}, {backend:?}: version {k} reads as {event:?}");
            }
            // By version, right at the 2^16 edge, forwards and backwards.
            for from in [65_534u64, 65_535, 65_536, 65_537, LONG_STREAM_EVENTS - 1] {
                let event = store.read_stream("v", from).expect("read").next().expect("there").expect("reads");
                assert_eq!((event.version, event.data.clone()), (from, long_data(from)), "{when}");
                let back = store.read_stream_backwards("v", from).expect("read").next().expect("there").expect("reads");
                assert_eq!((back.version, back.position), (from, event.position), "{when}");
            }
            // By position, over the whole log: every position from START to 2^48 - 1.
            let all: Vec<RecordedEvent> =
                store.read_all(START).expect("read").collect::<Result<_, _>>().expect("reads");
            assert_eq!(all.len() as u64, LONG_STREAM_EVENTS + OTHER_EVENTS, "{when}");
            assert!(all.iter().enumerate().all(|(k, e)| e.position == START + k as u64), "{when}: positions");
            let other: Vec<u64> = all.iter().filter(|e| e.stream == "w").map(|e| e.version).collect();
            assert_eq!(other, (0..OTHER_EVENTS).collect::<Vec<_>>(), "{when}");
            let tail = store.read_all(POSITION_END - 1).expect("read").next().expect("there").expect("reads");
            assert_eq!((tail.position, tail.stream.as_str(), tail.version), (POSITION_END - 1, "w", OTHER_EVENTS - 1));
        };
        check(&store, "before the reopen");
        store.close().expect("close");
        let store = open(dir.path(), options(backend)).expect("reopen");
        check(&store, "after the reopen");
        store.close().expect("close");
    }
}
