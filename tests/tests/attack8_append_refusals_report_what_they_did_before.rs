//! attack8: `Store::append` now takes a one-event call apart from the others (the `one`/`many`
//! split of commit c491510) instead of collecting every call's events first. Its checks must
//! refuse exactly as before, with the same error and the same fields: no events, one, two, five
//! (past the SmallVec's inline four), `APPEND_EVENTS_MAX` and one more, with the bad or oversized
//! event first, second or last, and with several problems at once (the first one found wins, and
//! the event count is checked before the event itself). The expected values are computed from the
//! rules of the parent commit 919f150, and this file passes there unchanged. It also checks how
//! many events each call pulls from a lazy iterator (the same as the parent's `for` loop: up to
//! the refused event, or one past the last), that a non-fused iterator is read up to its first
//! `None` only, that every refused append leaves nothing in the log (durable position, stream
//! version, the log read back before and after a reopen), and that appends after it still work.

use std::borrow::Cow;
use std::cell::Cell;

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store, APPEND_EVENTS_MAX};
use evstore_tests::{read_all, small_options, temp_dir, watchdog};

const GROUP_BYTES_MAX: usize = 256 << 10;
/// What one append may take: a group less its header.
const MAX: usize = GROUP_BYTES_MAX - 32;
/// The stream every case appends to (1 byte) and the event type of good events (1 byte).
const STREAM: &str = "s";

fn options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.group_bytes_max = GROUP_BYTES_MAX;
    options
}

/// The record size of an event of type "T" with `data` bytes of data and no metadata.
fn record(data: usize) -> usize {
    32 + STREAM.len() + 1 + data
}

fn good(data: usize) -> Event<'static> {
    Event::new("T", vec![b'd'; data])
}

fn append_too_large(events: usize, size: usize, max: usize) -> String {
    format!("{:?}", Error::AppendTooLarge { events, size, max, events_max: APPEND_EVENTS_MAX })
}

fn event_too_large(size: usize) -> String {
    format!("{:?}", Error::EventTooLarge { size, max: MAX })
}

/// Appends `events` through an iterator that counts how often it is pulled; returns the outcome
/// (the refusal's Debug text, or the appended position and version) and the pulls.
fn attempt(store: &Store, stream: &str, events: Vec<Event<'_>>) -> (String, usize) {
    let pulls = Cell::new(0usize);
    let mut events = events.into_iter();
    let counted = std::iter::from_fn(|| {
        pulls.set(pulls.get() + 1);
        events.next()
    });
    let outcome = match store.append(stream, ExpectedVersion::Any, counted) {
        Err(error) => format!("{error:?}"),
        Ok(ticket) => {
            let appended = ticket.wait().expect("an accepted append becomes durable");
            format!("ok {} {}", appended.position, appended.version)
        }
    };
    (outcome, pulls.get())
}

struct Case {
    name: &'static str,
    stream: String,
    events: Vec<Event<'static>>,
    /// The refusal's Debug text; `None`: accepted.
    refusal: Option<String>,
    /// Pulls of the iterator: the refused event's index + 1, or events + 1 (the closing `None`).
    pulls: usize,
}

fn refused(name: &'static str, events: Vec<Event<'static>>, refusal: String, pulls: usize) -> Case {
    Case { name, stream: STREAM.to_string(), events, refusal: Some(refusal), pulls }
}

fn accepted(name: &'static str, events: Vec<Event<'static>>) -> Case {
    let pulls = events.len() + 1;
    Case { name, stream: STREAM.to_string(), events, refusal: None, pulls }
}

fn cases() -> Vec<Case> {
    let type_256 = "\u{e9}".repeat(128);
    let type_256_shown = "\u{e9}".repeat(64) + "...";
    let empty_type = format!("{:?}", Error::InvalidEventType { event_type: String::new(), reason: "it is empty" });
    let long_type =
        format!("{:?}", Error::InvalidEventType { event_type: type_256_shown, reason: "it is longer than 255 bytes" });
    let metadata = format!("{:?}", Error::MetadataTooLarge { size: 65_536, max: 65_535 });
    let largest = MAX - record(0);
    let bad_meta = || Event::new("T", vec![1]).with_metadata(vec![0; 65_536]);
    vec![
        // No events.
        refused("no events", vec![], format!("{:?}", Error::EmptyAppend), 1),
        Case {
            name: "no events to an empty stream id",
            stream: String::new(),
            events: vec![],
            refusal: Some(format!("{:?}", Error::InvalidStreamId { stream: String::new(), reason: "it is empty" })),
            pulls: 0,
        },
        Case {
            name: "one event to a 256-byte stream id",
            stream: "x".repeat(256),
            events: vec![good(1)],
            refusal: Some(format!(
                "{:?}",
                Error::InvalidStreamId { stream: "x".repeat(64) + "...", reason: "it is longer than 255 bytes" }
            )),
            pulls: 0,
        },
        // One event.
        refused("one event, empty type", vec![Event::new("", vec![1])], empty_type.clone(), 1),
        refused("one event, 256-byte type", vec![Event::new(type_256.clone(), vec![1])], long_type.clone(), 1),
        refused("one event, 65,536 bytes of metadata", vec![bad_meta()], metadata.clone(), 1),
        refused("one event one byte too large", vec![good(largest + 1)], event_too_large(MAX + 1), 1),
        refused(
            "one event twice a group",
            vec![good(2 * GROUP_BYTES_MAX)],
            event_too_large(record(2 * GROUP_BYTES_MAX)),
            1,
        ),
        accepted("one event of exactly the largest size", vec![good(largest)]),
        accepted("one empty event", vec![good(0)]),
        // Two events.
        refused("two, the first too large", vec![good(largest + 1), good(1)], event_too_large(MAX + 1), 1),
        refused("two, the second too large", vec![good(1), good(largest + 7)], event_too_large(MAX + 7), 2),
        refused(
            "two, the largest one and one more byte",
            vec![good(largest), good(0)],
            append_too_large(2, MAX + record(0), MAX),
            2,
        ),
        refused(
            "two, the first with an empty type",
            vec![Event::new("", vec![]), good(largest + 1)],
            empty_type.clone(),
            1,
        ),
        refused(
            "two, the second with a long type",
            vec![good(3), Event::new(type_256.clone(), vec![])],
            long_type.clone(),
            2,
        ),
        refused(
            "two, the first too large, the second bad",
            vec![good(largest + 1), bad_meta()],
            event_too_large(MAX + 1),
            1,
        ),
        refused("two, the second with too much metadata", vec![good(largest), bad_meta()], metadata.clone(), 2),
        accepted("two that fill an append exactly", vec![good(MAX / 2 - record(0)), good(MAX / 2 - record(0))]),
        // Five: past the inline capacity of the collection.
        refused(
            "five, the last too large",
            vec![good(1), good(2), good(3), good(4), good(largest + 1)],
            event_too_large(MAX + 1),
            5,
        ),
        refused(
            "five, the last one byte past the append",
            vec![good(0), good(0), good(0), good(0), good(largest - 4 * record(0) + 1)],
            append_too_large(5, MAX + 1, MAX),
            5,
        ),
        refused(
            "five, the third past the append",
            vec![good(MAX / 2), good(MAX / 3), good(MAX / 3), good(largest + 1), good(0)],
            append_too_large(3, record(MAX / 2) + 2 * record(MAX / 3), MAX),
            3,
        ),
        refused(
            "five, the last with an empty type",
            vec![good(1), good(1), good(1), good(1), Event::new("", vec![])],
            empty_type,
            5,
        ),
        accepted("five small ones", vec![good(10), good(0), good(20), good(30), good(40)]),
        accepted("five that fill an append exactly", {
            let mut events: Vec<_> = (0..4).map(|_| good(100)).collect();
            events.push(good(MAX - 4 * record(100) - record(0)));
            events
        }),
    ]
}

/// The log and the stream's version, which a refused append must leave as they were.
fn state(store: &Store) -> (u64, Option<u64>, usize) {
    (store.durable_position(), store.stream_version(STREAM), read_all(store).len())
}

#[test]
fn refusals_of_zero_one_two_and_five_events_report_what_they_did_before() {
    let _watchdog = watchdog("refusals_of_zero_one_two_and_five_events_report_what_they_did_before", 60);
    let dir = temp_dir("attack8-refusals");
    let store = Store::open(dir.path(), options()).expect("open");
    let mut expected_log: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut failures = Vec::new();
    for case in cases() {
        let before = state(&store);
        let sizes: Vec<(usize, Vec<u8>)> = case.events.iter().map(|e| (e.event_type.len(), e.data.to_vec())).collect();
        let count = case.events.len() as u64;
        let (outcome, pulls) = attempt(&store, &case.stream, case.events);
        let expected = match &case.refusal {
            Some(refusal) => refusal.clone(),
            None => format!("ok {} {}", before.0, before.1.map_or(0, |v| v + 1) + count - 1),
        };
        if outcome != expected || pulls != case.pulls {
            failures.push(format!(
                "{}: got {outcome} after {pulls} pulls, expected {expected} after {} pulls",
                case.name, case.pulls
            ));
        }
        if case.refusal.is_some() {
            assert_eq!(state(&store), before, "{}: the refused append left a trace", case.name);
        } else {
            expected_log.extend(sizes);
        }
        // The store still takes an append after each case (and its expected version holds).
        let version = store.stream_version(STREAM);
        let next = match version {
            None => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(v),
        };
        let after = store.append(STREAM, next, [Event::new("After", case.name)]).expect("accepted").wait();
        let after = after.unwrap_or_else(|e| panic!("{}: the append after it failed: {e}", case.name));
        assert_eq!(after.version, version.map_or(0, |v| v + 1), "{}", case.name);
        expected_log.push((5, case.name.as_bytes().to_vec()));
    }
    assert!(failures.is_empty(), "append behaves differently:\n{}", failures.join("\n"));
    let check = |store: &Store, when: &str| {
        let log = read_all(store);
        let got: Vec<(usize, Vec<u8>)> = log.iter().map(|e| (e.event_type.len(), e.data.clone())).collect();
        assert!(got == expected_log, "{when}: the log holds other events than the accepted ones");
        for (k, event) in log.iter().enumerate() {
            assert_eq!((event.position, event.version, event.stream.as_str()), (k as u64, k as u64, STREAM), "{when}");
        }
    };
    check(&store, "before the reopen");
    store.close().expect("close");
    let store = Store::open(dir.path(), options()).expect("reopen");
    check(&store, "after the reopen");
    store.close().expect("close");
}

/// An iterator that yields its events with `None` between some of them: a `for` loop stops at
/// the first `None`, and so must append (for one event and for several).
#[test]
fn a_non_fused_iterator_is_read_up_to_its_first_none() {
    let _watchdog = watchdog("a_non_fused_iterator_is_read_up_to_its_first_none", 30);
    let dir = temp_dir("attack8-non-fused");
    let store = Store::open(dir.path(), options()).expect("open");
    for (shape, expected) in
        [(vec![Some(0u8), None, Some(1)], 1usize), (vec![Some(2), Some(3), None, Some(4), Some(5)], 2)]
    {
        let mut items = shape.into_iter();
        let pulls = Cell::new(0usize);
        let events = std::iter::from_fn(|| {
            pulls.set(pulls.get() + 1);
            items.next().flatten().map(|b| Event::new("T", vec![b]))
        });
        let before = store.durable_position();
        let appended = store.append(STREAM, ExpectedVersion::Any, events).expect("accepted").wait().expect("durable");
        assert_eq!(pulls.get(), expected + 1, "pulled past the first None");
        assert_eq!(appended.position, before);
        assert_eq!(store.durable_position(), before + expected as u64);
    }
    let data: Vec<Vec<u8>> = read_all(&store).into_iter().map(|e| e.data).collect();
    assert_eq!(data, vec![vec![0], vec![2], vec![3]]);
    store.close().expect("close");
}

/// `APPEND_EVENTS_MAX` events go in one append; one more is refused by count before that event
/// is even looked at (an oversized or invalid extra event does not change the error), with the
/// bytes of the events before it; a longer iterator is not read past the extra event.
#[test]
fn the_event_count_limit_reports_what_it_did_before() {
    let _watchdog = watchdog("the_event_count_limit_reports_what_it_did_before", 60);
    let dir = temp_dir("attack8-count");
    let mut options = small_options(Backend::Portable);
    options.group_bytes_max = 4 << 20;
    options.segment_bytes = 16 << 20;
    let max = options.group_bytes_max - 32;
    let store = Store::open(dir.path(), options.clone()).expect("open");
    let huge = vec![7u8; 5 << 20];
    let empty = |n: usize| (0..n).map(|_| Event::new("T", &[][..])).collect::<Vec<_>>();
    let with_last = |n: usize, last: Event<'static>| {
        let mut events = empty(n - 1);
        events.push(last);
        events
    };
    let huge_event =
        || Event { event_type: Cow::Borrowed("T"), data: Cow::Owned(huge.clone()), metadata: Cow::Borrowed(&[]) };
    let over = APPEND_EVENTS_MAX + 1;
    let count_refusal = append_too_large(over, APPEND_EVENTS_MAX * record(0), max);
    let cases: Vec<(&str, Vec<Event<'_>>, String, usize)> = vec![
        ("one more than the limit", empty(over), count_refusal.clone(), over),
        ("twice the limit", empty(2 * APPEND_EVENTS_MAX), count_refusal.clone(), over),
        ("one more, the extra one too large", with_last(over, huge_event()), count_refusal.clone(), over),
        ("one more, the extra one with an empty type", with_last(over, Event::new("", &[][..])), count_refusal, over),
        (
            "the limit, the last too large",
            with_last(APPEND_EVENTS_MAX, huge_event()),
            format!("{:?}", Error::EventTooLarge { size: record(5 << 20), max }),
            APPEND_EVENTS_MAX,
        ),
        (
            "the limit, the last past the append",
            with_last(APPEND_EVENTS_MAX, Event::new("T", vec![0; max - APPEND_EVENTS_MAX * record(0) + 1])),
            append_too_large(APPEND_EVENTS_MAX, max + 1, max),
            APPEND_EVENTS_MAX,
        ),
    ];
    for (name, events, expected, expected_pulls) in cases {
        let (outcome, pulls) = attempt(&store, STREAM, events);
        assert_eq!((outcome.as_str(), pulls), (expected.as_str(), expected_pulls), "{name}");
        assert_eq!(store.durable_position(), 0, "{name}: the refused append left a trace");
        assert_eq!(store.stream_version(STREAM), None, "{name}");
    }
    // Exactly the limit, the last filling the append to the byte.
    let last = Event::new("Last", vec![9; max - (APPEND_EVENTS_MAX - 1) * record(0) - 32 - STREAM.len() - 4]);
    let (outcome, pulls) = attempt(&store, STREAM, with_last(APPEND_EVENTS_MAX, last));
    assert_eq!((outcome.as_str(), pulls), (format!("ok 0 {}", APPEND_EVENTS_MAX - 1).as_str(), APPEND_EVENTS_MAX + 1));
    let (outcome, _) = attempt(&store, STREAM, empty(2));
    assert_eq!(outcome, format!("ok {} {}", APPEND_EVENTS_MAX, APPEND_EVENTS_MAX + 1));
    store.close().expect("close");
    let store = Store::open(dir.path(), options).expect("reopen");
    let log = read_all(&store);
    assert_eq!(log.len(), APPEND_EVENTS_MAX + 2);
    assert_eq!(log[APPEND_EVENTS_MAX - 1].event_type, "Last");
    assert!(log.iter().enumerate().all(|(k, e)| e.position == k as u64 && e.version == k as u64));
    store.close().expect("close");
}
