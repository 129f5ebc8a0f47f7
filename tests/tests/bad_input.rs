//! Bad input is refused at once, with a typed error that names the problem, and leaves no trace:
//! invalid stream ids and event types, empty and oversized appends, oversized metadata, appends
//! after close, a directory on a volatile file system, a directory already open, and invalid
//! options. Without this, a caller could not tell its own mistake from a disk failure, a 2 GiB
//! event would be copied before being refused, an oversized record could be written that
//! recovery then rejects as corruption, or two stores could write the same directory at once.

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store, Ticket};
use evstore_tests::{append_one, backends, open, read_all, small_options, temp_dir, watchdog};

/// Group size of the validation tests: large enough that 65,535 bytes of metadata fit.
const GROUP_BYTES_MAX: usize = 256 << 10;

fn options(backend: Backend) -> Options {
    let mut options = small_options(backend);
    options.group_bytes_max = GROUP_BYTES_MAX;
    options
}

fn refused(result: evstore::Result<Ticket>) -> Error {
    match result {
        Err(error) => error,
        Ok(ticket) => panic!("accepted an invalid append (resolved to {:?})", ticket.wait()),
    }
}

fn one(event_type: &str, data: Vec<u8>) -> [Event<'_>; 1] {
    [Event::new(event_type, data)]
}

#[test]
fn invalid_appends_are_refused_at_once() {
    let _watchdog = watchdog("invalid_appends_are_refused_at_once", 30);
    for backend in backends() {
        let dir = temp_dir("bad-input");
        let Some(store) = open(dir.path(), options(backend)) else { continue };
        let any = ExpectedVersion::Any;

        let error = refused(store.append("", any, one("T", vec![1])));
        assert!(matches!(error, Error::InvalidStreamId { .. }), "empty stream id: {error:?}");
        let error = refused(store.append(&"s".repeat(256), any, one("T", vec![1])));
        assert!(matches!(error, Error::InvalidStreamId { .. }), "256-byte stream id: {error:?}");
        assert!(matches!(store.read_stream("", 0), Err(Error::InvalidStreamId { .. })), "reading an empty id");

        let error = refused(store.append("s", any, one("", vec![1])));
        assert!(matches!(error, Error::InvalidEventType { .. }), "empty event type: {error:?}");
        let error = refused(store.append("s", any, one(&"t".repeat(256), vec![1])));
        assert!(matches!(error, Error::InvalidEventType { .. }), "256-byte event type: {error:?}");
        // The bad event may come after good ones: the whole append is refused.
        let mixed = [Event::new("T", vec![1]), Event::new("", vec![2])];
        assert!(matches!(refused(store.append("s", any, mixed)), Error::InvalidEventType { .. }));

        assert!(matches!(refused(store.append("s", any, Vec::new())), Error::EmptyAppend));

        // One byte more than a whole group can carry: refused by size, before any copy.
        let error = refused(store.append("s", any, one("T", vec![0; GROUP_BYTES_MAX + 1])));
        match error {
            Error::EventTooLarge { size, max } => {
                assert!(size > max && max <= GROUP_BYTES_MAX, "EventTooLarge {{ size: {size}, max: {max} }}")
            }
            other => panic!("event larger than a group: {other:?}"),
        }

        // Each event fits, together they do not fit in one group.
        let batch: Vec<_> = (0..8).map(|_| Event::new("T", vec![7; GROUP_BYTES_MAX / 6])).collect();
        match refused(store.append("s", any, batch)) {
            Error::AppendTooLarge { size, max, .. } => {
                assert!(size > max, "AppendTooLarge {{ size: {size}, max: {max} }}")
            }
            other => panic!("append larger than a group: {other:?}"),
        }

        let error = refused(store.append("s", any, [Event::new("T", vec![1]).with_metadata(vec![0; 65_536])]));
        match error {
            Error::MetadataTooLarge { size, max } => assert_eq!((size, max), (65_536, 65_535)),
            other => panic!("65,536 bytes of metadata: {other:?}"),
        }
        // The largest metadata is fine.
        let largest = store
            .append("s", any, [Event::new("T", vec![1]).with_metadata(vec![9; 65_535])])
            .expect("65,535 bytes of metadata")
            .wait()
            .expect("durable");

        // Nothing refused left a trace: the only event is the good one, at position 0.
        assert_eq!((largest.position, largest.version), (0, 0));
        let log = read_all(&store);
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].metadata, vec![9; 65_535]);

        // After close, another handle's appends are refused (reads of what is durable still work).
        let other = store.clone();
        store.close().expect("close");
        assert!(matches!(refused(other.append("s", any, one("T", vec![1]))), Error::Closed));
    }
}

#[test]
fn too_many_events_in_one_append_are_refused() {
    let _watchdog = watchdog("too_many_events_in_one_append_are_refused", 30);
    for backend in backends() {
        let dir = temp_dir("bad-input-count");
        // Groups large enough for the bytes, so only the event count is over the limit.
        let mut options = small_options(backend);
        options.group_bytes_max = 8 << 20;
        options.segment_bytes = 16 << 20;
        let Some(store) = open(dir.path(), options) else { continue };
        let events = (0..=evstore::APPEND_EVENTS_MAX).map(|_| Event::new("T", Vec::new()));
        match refused(store.append("s", ExpectedVersion::Any, events)) {
            Error::AppendTooLarge { events_max, .. } => assert_eq!(events_max, evstore::APPEND_EVENTS_MAX),
            other => panic!("{} events: {other:?}", evstore::APPEND_EVENTS_MAX + 1),
        }
        assert_eq!(store.durable_position(), 0);
    }
}

#[test]
fn a_directory_can_be_open_only_once() {
    let _watchdog = watchdog("a_directory_can_be_open_only_once", 30);
    for backend in backends() {
        let dir = temp_dir("bad-input-lock");
        let Some(first) = open(dir.path(), small_options(backend)) else { continue };
        match Store::open(dir.path(), small_options(backend)) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            other => panic!("second open of the same directory: {other:?}"),
        }
        append_one(&first, "s", ExpectedVersion::Any, b"still works").expect("the first store is unharmed");
        first.close().expect("close");
        let second = Store::open(dir.path(), small_options(backend)).expect("open after close");
        assert_eq!(read_all(&second).len(), 1);
    }
}

#[test]
fn a_volatile_file_system_is_refused_unless_allowed() {
    let _watchdog = watchdog("a_volatile_file_system_is_refused_unless_allowed", 30);
    if !std::path::Path::new("/dev/shm").is_dir() {
        println!("skipped: /dev/shm does not exist here");
        return;
    }
    for backend in backends() {
        let dir = tempfile::Builder::new().prefix("evstore-volatile-").tempdir_in("/dev/shm").expect("tmpfs dir");
        match Store::open(dir.path(), small_options(backend)) {
            Err(Error::VolatileFileSystem { path, fs }) => {
                assert_eq!(path, dir.path());
                assert_eq!(fs, "tmpfs");
            }
            Err(Error::IoUringUnavailable { .. }) => continue,
            other => panic!("open on tmpfs: {other:?}"),
        }
        let mut options = small_options(backend);
        options.allow_volatile = true;
        let store = match Store::open(dir.path(), options.clone()) {
            Ok(store) => store,
            // An older tmpfs refuses O_DIRECT: allowed with buffered I/O.
            Err(Error::DirectIoUnsupported { .. }) => {
                options.allow_buffered_io = true;
                Store::open(dir.path(), options).expect("open on tmpfs with allow_volatile and allow_buffered_io")
            }
            Err(other) => panic!("open on tmpfs with allow_volatile: {other:?}"),
        };
        append_one(&store, "s", ExpectedVersion::NoStream, b"in memory").expect("append on tmpfs");
        assert_eq!(read_all(&store)[0].data, b"in memory");
        store.close().expect("close");
    }
}

/// One change that makes `Options` invalid.
type Change = fn(&mut Options);

#[test]
fn invalid_options_are_refused() {
    let _watchdog = watchdog("invalid_options_are_refused", 30);
    let dir = temp_dir("bad-input-options");
    let cases: [(&str, Change); 8] = [
        ("group_bytes_max", |o| o.group_bytes_max = (64 << 10) + 1),
        ("group_bytes_max", |o| o.group_bytes_max = 0),
        ("groups_in_flight_max", |o| o.groups_in_flight_max = 0),
        ("segment_bytes", |o| o.segment_bytes = (1 << 20) + 100),
        ("segment_bytes", |o| o.segment_bytes = (o.group_bytes_max as u64) + 4096),
        ("queue_bytes", |o| o.queue_bytes = 0),
        ("queue_bytes", |o| o.queue_bytes = (64 << 10) + 4096),
        ("linger", |o| o.linger = std::time::Duration::from_secs(2)),
    ];
    for backend in backends() {
        for (name, change) in cases {
            let mut options = small_options(backend);
            change(&mut options);
            match Store::open(dir.path(), options.clone()) {
                Err(Error::InvalidOption { name: got, reason }) => {
                    assert_eq!(got, name, "{options:?} refused, but for {got}: {reason}")
                }
                other => panic!("{options:?} was not refused as an invalid {name}: {other:?}"),
            }
        }
    }
    // The smallest valid segment (one group plus the segment header and one spare block) works.
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = (options.group_bytes_max as u64) + 8192;
    let store = Store::open(dir.path(), options).expect("smallest valid segment");
    append_one(&store, "s", ExpectedVersion::Any, b"fits").expect("append");
    store.close().expect("close");
}

#[test]
fn a_path_that_is_a_file_is_not_a_directory() {
    let dir = temp_dir("not-a-dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a store").unwrap();
    for path in [file.clone(), file.join("below")] {
        match Store::open(&path, Options::default()) {
            Err(Error::NotADirectory { path: reported }) => assert_eq!(reported, path),
            other => panic!("open {}: expected NotADirectory, got {other:?}", path.display()),
        }
        match Store::repair(&path, Options::default()) {
            Err(Error::NotADirectory { .. }) => {}
            other => panic!("repair {}: expected NotADirectory, got {other:?}", path.display()),
        }
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store", "the file is left alone");
}
