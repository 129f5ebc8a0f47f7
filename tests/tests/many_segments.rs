//! A store of many segments must open and read without one memory mapping per segment: the
//! kernel allows a process about 65,000 mappings (`vm.max_map_count`), and a store of 64 MiB
//! segments reaches that many at 4 TiB, or far sooner with small segments. Here about 1,500 tiny
//! segments are written, the store is reopened and read through (`read_all`, then `read_stream`
//! of every stream), and the number of mappings of the process (lines of `/proc/self/maps`) must
//! not grow by more than 600 over the whole open and read. Without this, recovery held two
//! mappings per segment while it scanned and the store kept one per segment for its life, so a
//! large enough store failed to open (or failed later, in some unrelated `mmap` of the process).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use evstore::{Backend, Event, ExpectedVersion, Options, Store};
use evstore_tests::{temp_dir, used_segments, watchdog};

/// Appends; each fills one segment (see `options`).
const APPENDS: usize = 1_550;
const STREAMS: usize = 10;
/// How far the mapping count may grow over the reopen and the reads.
const MAPPINGS_GROWTH_MAX: usize = 600;

/// The smallest segments there are: one 8 KiB group after the header block, and one spare block,
/// too small for the next 8 KiB group, so every append below starts a segment of its own.
fn options() -> Options {
    let mut options = Options::default();
    options.backend = Backend::Portable;
    options.group_bytes_max = 8192;
    options.segment_bytes = 8192 + 8192;
    // On tmpfs, where preparing 1,500 segments costs no disk flushes.
    options.allow_volatile = true;
    options.allow_buffered_io = true;
    options
}

fn store_dir() -> tempfile::TempDir {
    if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::Builder::new().prefix("evstore-many-segments-").tempdir_in("/dev/shm").expect("tmpfs dir")
    } else {
        temp_dir("many-segments")
    }
}

/// The number `i` of the append whose data `data` is (see [`data`]).
fn number(data: &[u8]) -> usize {
    let text = std::str::from_utf8(&data[..data.iter().position(|&b| b == b':').expect("a colon")]).expect("UTF-8");
    let i = text.strip_prefix("event ").expect("event").parse().expect("a number");
    assert!(data == self::data(i), "the data of event {i} is intact");
    i
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").lines().count()
}

fn data(i: usize) -> Vec<u8> {
    let mut data = format!("event {i}:").into_bytes();
    data.resize(6000, b'.');
    data
}

#[test]
fn a_store_of_many_segments_opens_and_reads_with_few_mappings() {
    let _watchdog = watchdog("a_store_of_many_segments_opens_and_reads_with_few_mappings", 300);
    let dir = store_dir();
    let started = Instant::now();
    {
        let store = Store::open(dir.path(), options()).expect("open");
        let mut tickets = std::collections::VecDeque::new();
        for i in 0..APPENDS {
            let stream = format!("m-{}", i % STREAMS);
            tickets.push_back(store.append(&stream, ExpectedVersion::Any, [Event::new("M", data(i))]).expect("append"));
            if tickets.len() > 64 {
                tickets.pop_front().expect("ticket").wait().expect("durable");
            }
        }
        for ticket in tickets {
            ticket.wait().expect("durable");
        }
        store.close().expect("close");
    }
    let segments = used_segments(dir.path()).len();
    println!("wrote {segments} segments in {:?}", started.elapsed());
    assert!(segments >= APPENDS, "one segment per append: {segments} segments for {APPENDS} appends");

    let before = mappings();
    // Recovery's own mappings come and go within the open: count them from another thread.
    let opening = Arc::new(AtomicBool::new(true));
    let sampler = {
        let opening = opening.clone();
        std::thread::spawn(move || {
            let mut most = mappings();
            while opening.load(Ordering::SeqCst) {
                most = most.max(mappings());
            }
            most
        })
    };
    let store = Store::open(dir.path(), options()).expect("reopen");
    opening.store(false, Ordering::SeqCst);
    let after_open = mappings();
    let mut most = sampler.join().expect("sampler").max(after_open);
    let most_in_open = most;
    let mut numbers = Vec::new();
    for event in store.read_all(0).expect("read_all") {
        numbers.push(number(&event.expect("event").data));
        if numbers.len() % 100 == 0 {
            most = most.max(mappings());
        }
    }
    numbers.sort();
    assert!(numbers == (0..APPENDS).collect::<Vec<_>>(), "read_all returns every append once");
    most = most.max(mappings());
    for s in 0..STREAMS {
        let stream = format!("m-{s}");
        let numbers: Vec<usize> =
            store.read_stream(&stream, 0).expect("read_stream").map(|e| number(&e.expect("event").data)).collect();
        assert!(numbers == (s..APPENDS).step_by(STREAMS).collect::<Vec<_>>(), "{stream} holds its appends in order");
        most = most.max(mappings());
    }
    println!(
        "{segments} segments: {before} mappings before the open, at most {most_in_open} during it, {after_open} \
         after it, at most {most} while reading; writing, opening and reading took {:?} in all",
        started.elapsed()
    );
    assert!(
        most - before <= MAPPINGS_GROWTH_MAX,
        "the mappings grew from {before} to {most} (by {}) for a store of {segments} segments; at most \
         {MAPPINGS_GROWTH_MAX} more are allowed",
        most - before
    );
    store.close().expect("close");
}
