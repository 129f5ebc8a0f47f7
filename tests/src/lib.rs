//! Helpers shared by the integration tests: fresh directories, small options, both backends,
//! deterministic payloads, a seeded random number generator (tests print their seed so a failure
//! can be replayed), a watchdog that turns a hang into a failure, and a reader of the on-disk
//! group layout for the corruption tests. [`power_loss`] holds the simulated-disk harness of the
//! power loss tests; [`read_model`] the SQLite read model of the projection tests.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use evstore::{Appended, Backend, Error, Event, ExpectedVersion, Options, RecordedEvent, Store};

pub mod power_loss;
pub mod read_model;

/// A fresh directory under the system temp dir (ext4 here, which supports O_DIRECT).
pub fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("evstore-{name}-")).tempdir().expect("temp dir")
}

/// The backends every core test runs on.
pub fn backends() -> [Backend; 2] {
    [Backend::IoUring, Backend::Portable]
}

/// Small segments and groups, so tests rotate segments and fill groups quickly.
pub fn small_options(backend: Backend) -> Options {
    let mut options = Options::default();
    options.backend = backend;
    options.segment_bytes = 1 << 20;
    options.group_bytes_max = 64 << 10;
    // Fixed sizes: many tests build a layout segment by segment (tests/tests/segment_growth.rs
    // and the power-loss runs cover growing segments).
    options.grow_segments = false;
    options
}

/// Opens with `options`; `None` (with a line saying why) if io_uring is not available here, so
/// the caller can go on with the portable half.
pub fn open(dir: &Path, options: Options) -> Option<Store> {
    match Store::open(dir, options) {
        Ok(store) => Some(store),
        Err(Error::IoUringUnavailable { errno }) => {
            println!(
                "skipped io_uring: unavailable on this kernel or under this seccomp filter ({})",
                std::io::Error::from_raw_os_error(errno)
            );
            None
        }
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// Deterministic data for (stream, version), so any reader can check any event.
pub fn payload(stream: &str, version: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name_hash(stream));
    let pad = (rng.next_u64() % 200) as usize;
    let mut data = format!("{stream}:{version}:").into_bytes();
    data.extend((0..pad).map(|_| b'a' + (rng.next_u64() % 26) as u8));
    data
}

/// How many events the crash writer puts in the append that starts at `version` (1 to 4).
pub fn append_count(stream: &str, version: u64) -> u64 {
    let mut rng = Rng::new(version ^ name_hash(stream));
    1 + rng.below(4)
}

/// FNV-1a of a stream name: spreads names that differ in one character.
fn name_hash(stream: &str) -> u64 {
    stream.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

pub fn event(stream: &str, version: u64, seed: u64) -> Event<'static> {
    Event::new("TestEvent", payload(stream, version, seed))
}

/// Appends one event and waits.
pub fn append_one(store: &Store, stream: &str, expected: ExpectedVersion, data: &[u8]) -> evstore::Result<Appended> {
    store.append(stream, expected, [Event::new("TestEvent", data.to_vec())])?.wait()
}

/// Every durable event of `stream`, oldest first.
pub fn read_stream(store: &Store, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 0)
        .expect("read_stream")
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading {stream}: {e}"))
}

/// Every durable event, in log order.
pub fn read_all(store: &Store) -> Vec<RecordedEvent> {
    store.read_all(0).expect("read_all").collect::<Result<_, _>>().unwrap_or_else(|e| panic!("read_all: {e}"))
}

/// splitmix64: small, seeded, good enough to drive tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A seed from the environment variable `name`, or from the clock; printed either way.
pub fn seed_from_env(name: &str) -> u64 {
    let seed = std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    println!("seed {seed} (replay with {name}={seed})");
    seed
}

/// Ends the whole test process with a failure if it is still alive after a deadline. A ticket
/// that never resolves would otherwise hang CI forever instead of failing one test.
pub struct Watchdog {
    _alive: mpsc::Sender<()>,
}

/// Starts a watchdog for test `name`; drop it (at the end of the test) to call it off.
pub fn watchdog(name: &'static str, seconds: u64) -> Watchdog {
    let (alive, dead) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = dead.recv_timeout(Duration::from_secs(seconds)) {
            // Straight to the file descriptor: the test harness would swallow `eprintln!`.
            let _ = writeln!(
                std::io::stderr(),
                "WATCHDOG: test `{name}` still running after {seconds} s: the store hung (a ticket that \
                 never resolves, or a submitter that never stops); aborting the test process"
            );
            std::process::exit(101);
        }
    });
    Watchdog { _alive: alive }
}

/// Path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.evs"))
}

/// Segment files of `dir` whose header block was written (used segments), oldest first.
/// Prepared but unused segments (zero header) are left out.
pub fn used_segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|entry| {
            let path = entry.expect("dir entry").path();
            let number = path.file_name()?.to_str()?.strip_suffix(".evs")?.parse().ok()?;
            let bytes = std::fs::read(&path).ok()?;
            bytes.starts_with(b"EVSEGMNT").then_some((number, path))
        })
        .collect();
    segments.sort();
    segments
}

/// Where a group sits in a segment file (see engine/src/log/record.rs for the layout).
#[derive(Debug, Clone, Copy)]
pub struct GroupOnDisk {
    /// Byte offset of the 32-byte group header.
    pub offset: usize,
    /// Byte offset just past the group's last record.
    pub end: usize,
    pub first_position: u64,
    pub events: u32,
}

/// The groups of one segment file, read from the group headers (starting at byte 4096, each on
/// a 4 KiB boundary, ending at the first block without the group magic).
pub fn groups_on_disk(segment: &Path) -> Vec<GroupOnDisk> {
    let bytes = std::fs::read(segment).expect("read segment");
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let mut groups = Vec::new();
    let mut offset = 4096;
    while offset + 32 <= bytes.len() && &bytes[offset..offset + 4] == b"EVGR" {
        let end = offset + 32 + u32_at(offset + 24) as usize;
        groups.push(GroupOnDisk { offset, end, first_position: u64_at(offset + 16), events: u32_at(offset + 28) });
        offset = end.div_ceil(4096) * 4096;
    }
    groups
}

/// Overwrites `bytes.len()` bytes of `path` at `offset`, going around the store (plain buffered
/// write, synced).
pub fn damage(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open segment for damage");
    file.write_all_at(bytes, offset).expect("damage");
    file.sync_all().expect("sync damage");
}

/// Asserts the log reads back as positions 0..n in order, each stream with versions from 0
/// without gaps, and that read_stream agrees with read_all; returns n.
pub fn check_log_shape(store: &Store) -> u64 {
    let mut next = 0u64;
    let mut streams = HashMap::<String, Vec<RecordedEvent>>::new();
    for event in read_all(store) {
        assert_eq!(event.position, next, "positions are contiguous");
        let events = streams.entry(event.stream.clone()).or_default();
        assert_eq!(event.version, events.len() as u64, "versions of {} are contiguous", event.stream);
        events.push(event);
        next += 1;
    }
    assert_eq!(store.durable_position(), next, "read_all ends at the durable position");
    for (stream, events) in &streams {
        assert_eq!(&read_stream(store, stream), events, "read_stream({stream}) agrees with read_all");
        assert_eq!(store.stream_version(stream), Some(events.len() as u64 - 1), "stream_version({stream})");
    }
    next
}

/// Every file of `dir` by name, with its contents (sizes included), to show that an operation
/// left the directory exactly as it found it. A missing directory is empty.
pub fn dir_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Default::default() };
    entries
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (name, bytes)
        })
        .collect()
}

/// Where two snapshots of [`dir_files`] differ, one line per file, or `None` if they are equal.
pub fn dir_changes(
    before: &std::collections::BTreeMap<String, Vec<u8>>,
    after: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    let mut lines = Vec::new();
    for (name, bytes) in before {
        match after.get(name) {
            None => lines.push(format!("{name} ({} bytes) was deleted", bytes.len())),
            Some(now) if now.len() != bytes.len() => {
                lines.push(format!("{name} changed size from {} to {} bytes", bytes.len(), now.len()))
            }
            Some(now) => {
                if let Some(at) = bytes.iter().zip(now).position(|(a, b)| a != b) {
                    lines.push(format!("{name} changed contents (first at byte {at})"));
                }
            }
        }
    }
    for (name, bytes) in after {
        if !before.contains_key(name) {
            lines.push(format!("{name} ({} bytes) was created", bytes.len()));
        }
    }
    (!lines.is_empty()).then(|| lines.join("; "))
}

/// Writes segment 0 of `dir` as a used, empty segment (header only, sized and windowed as
/// `options` say) of a log that starts at `first_position`: a log near a limit, or that does not
/// start at 0, without appending that many events first.
pub fn write_empty_segment_0(dir: &Path, first_position: u64, options: &Options) {
    let mut file = vec![0u8; options.segment_bytes as usize];
    file[0..8].copy_from_slice(b"EVSEGMNT");
    file[8..12].copy_from_slice(&2u32.to_le_bytes()); // the format version
    file[24..32].copy_from_slice(&first_position.to_le_bytes());
    file[32..40].copy_from_slice(&options.segment_bytes.to_le_bytes());
    file[48..52].copy_from_slice(&(options.groups_in_flight_max as u32).to_le_bytes());
    file[52..56].copy_from_slice(&(options.group_bytes_max as u32).to_le_bytes());
    let crc = crc32c::crc32c(&file[16..56]);
    file[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(segment_path(dir, 0), file).expect("write segment 0");
}

/// The portable backend with 128 KiB segments and 64 KiB groups: a few dozen appends of
/// [`filled_store`] span several segments.
pub fn small_segment_options() -> Options {
    let mut options = small_options(Backend::Portable);
    options.segment_bytes = 128 << 10;
    options
}

/// Opens `dir` with [`small_segment_options`], appends `appends` appends of two 3,000-byte
/// events (one group of two blocks each) to streams `r-0` to `r-3`, each waited for, closes, and
/// returns the log.
pub fn filled_store(dir: &Path, appends: u32) -> Vec<RecordedEvent> {
    let store = open(dir, small_segment_options()).expect("the portable backend opens");
    for i in 0..appends {
        let events = (0..2).map(|k| Event::new("Filled", vec![(i * 2 + k) as u8; 3000]));
        store.append(&format!("r-{}", i % 4), ExpectedVersion::Any, events).expect("append").wait().expect("durable");
    }
    let events = read_all(&store);
    store.close().expect("close");
    events
}

/// For damage that costs no event (it lies outside the log, or what it destroyed can be told
/// from what follows): `open` with `options` must give back `before` exactly, or refuse, and then
/// one `Store::repair` must give it back exactly. `what` names the damage in the failure.
pub fn assert_nothing_lost_to(dir: &Path, options: &Options, before: &[RecordedEvent], what: &str) {
    if let Ok(store) = Store::open(dir, options.clone()) {
        assert_eq!(read_all(&store), before, "every event");
        store.close().expect("close");
        return;
    }
    let report = Store::repair(dir, options.clone()).expect("repair").expect("damage found");
    let store = Store::open(dir, options.clone()).expect("open after repair");
    let after = read_all(&store);
    check_log_shape(&store);
    store.close().expect("close");
    assert_eq!(
        after.len(),
        before.len(),
        "repair dropped {} of {} intact acknowledged events for {what} ({report:?})",
        before.len() - after.len(),
        before.len()
    );
    assert_eq!(after, before);
}

/// Bytes the kernel says this process has written to storage so far (`/proc/self/io`
/// `write_bytes`, every thread). A test that measures with it must be alone in its binary.
pub fn process_written_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))
        .and_then(|value| value.trim().parse().ok())
        .expect("write_bytes in /proc/self/io")
}

/// A global allocator that counts the bytes alive in [`heap_bytes_alive`]. A test binary that
/// measures heap use installs it: `#[global_allocator] static A: CountingAllocator = CountingAllocator;`.
pub struct CountingAllocator;

static HEAP_BYTES_ALIVE: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

/// Heap bytes allocated and not freed, as counted by [`CountingAllocator`] (0 if not installed).
pub fn heap_bytes_alive() -> isize {
    HEAP_BYTES_ALIVE.load(std::sync::atomic::Ordering::SeqCst)
}

// SAFETY: every method forwards to the system allocator with the caller's arguments; the count
// on the side never affects what is allocated.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_BYTES_ALIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HEAP_BYTES_ALIVE.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        HEAP_BYTES_ALIVE.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES_ALIVE.fetch_add(new_size as isize - layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

/// `small_options` where nothing but a waiting caller writes a group: room for a whole run of
/// appends in one group, the longest linger, a size threshold above the group (the tests of one
/// write per waiting producer).
pub fn waiter_only_options(backend: Backend) -> Options {
    let mut options = small_options(backend);
    options.group_bytes_max = 1 << 20;
    options.segment_bytes = 8 << 20;
    options.busy_group_bytes_min = 2 << 20;
    options.linger = evstore::LINGER_LIMIT;
    options
}

/// Wakes the thread that made it (`block_on`'s waker).
pub struct ThreadWaker(pub std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: poll, park until woken, poll again. It parks without a timeout on
/// purpose: a lost wake-up hangs the test (and its watchdog fails it) instead of passing late.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Appends `event()` to stream "task" and polls its ticket once with `waker`, until a poll is
/// pending (the waker is then registered: the submitter calls it once the append is durable, on
/// its own thread, as an inline-polling executor would); at most `tries` appends. Panics if every
/// append was durable before its first poll.
pub fn append_with_registered_waker<W: std::task::Wake + Send + Sync + 'static>(
    store: &Store,
    event: impl Fn() -> Event<'static>,
    waker: &std::sync::Arc<W>,
    tries: usize,
) -> evstore::Ticket {
    use std::future::Future as _;
    for _ in 0..tries {
        let mut ticket = store.append("task", ExpectedVersion::Any, [event()]).expect("append");
        let waker = std::task::Waker::from(waker.clone());
        if std::pin::Pin::new(&mut ticket).poll(&mut std::task::Context::from_waker(&waker)).is_pending() {
            return ticket;
        }
    }
    panic!("the task's append was always durable before its first poll");
}

/// Appends `event(i)` to stream "big" for each `i` in `range`, one at a time and waited, pushing
/// each acknowledged `i` onto `acked`, until an append fails; returns that failure (`None`: all
/// were acknowledged).
pub fn append_until_error<'a>(
    store: &Store,
    range: std::ops::Range<usize>,
    event: impl Fn(usize) -> Event<'a>,
    acked: &mut Vec<usize>,
) -> Option<Error> {
    for i in range {
        match store.append("big", ExpectedVersion::Any, [event(i)]).and_then(evstore::Ticket::wait) {
            Ok(_) => acked.push(i),
            Err(error) => return Some(error),
        }
    }
    None
}

/// The expected version of the append that makes `version` a stream's next one: `NoStream` for
/// the first event, else `Exact(version - 1)` (a chain of single-event appends).
pub fn expected_before(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version - 1)
    }
}

/// A pause of 0 to 300 us between appends: none, a yield, or a sleep.
pub fn short_pause(rng: &mut Rng) {
    match rng.below(8) {
        0 => {}
        1 => std::thread::yield_now(),
        _ => std::thread::sleep(std::time::Duration::from_micros(rng.below(301))),
    }
}

/// Reopens `dir`, retrying for up to 10 s while the last clone's submitter still holds the
/// directory lock (a clone dropped on another thread lets it go when it exits).
pub fn reopen_when_unlocked(dir: &Path, options: Options) -> Store {
    let started = std::time::Instant::now();
    loop {
        match Store::open(dir, options.clone()) {
            Ok(store) => return store,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("reopen {}: {e}", dir.display()),
        }
    }
}
