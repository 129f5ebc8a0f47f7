//! Helpers shared by the integration tests: fresh directories, small options, both backends,
//! and a seeded random number generator (tests print their seed so a failure can be replayed).

use std::path::{Path, PathBuf};

use evstore::{Backend, Error, Event, ExpectedVersion, Options, Store};

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
    options
}

/// Opens with `options`; `None` (with a line saying why) if io_uring is not available here.
pub fn open(dir: &Path, options: Options) -> Option<Store> {
    match Store::open(dir, options) {
        Ok(store) => Some(store),
        Err(Error::IoUringUnavailable { errno }) => {
            println!("skipped the io_uring half: io_uring unavailable on this kernel (errno {errno})");
            None
        }
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// Deterministic data for (stream, version), so any reader can check any event.
pub fn payload(stream: &str, version: u64, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ stream.len() as u64);
    let pad = (rng.next() % 200) as usize;
    let mut data = format!("{stream}:{version}:").into_bytes();
    data.extend((0..pad).map(|_| b'a' + (rng.next() % 26) as u8));
    data
}

/// How many events the crash writer puts in the append that starts at `version` (1 to 4).
pub fn append_count(stream: &str, version: u64) -> u64 {
    let mut rng = Rng::new(version ^ (stream.bytes().map(u64::from).sum::<u64>() << 20));
    1 + rng.below(4)
}

pub fn event(stream: &str, version: u64, seed: u64) -> Event {
    Event::new("TestEvent", payload(stream, version, seed))
}

/// Appends one event and waits.
pub fn append_one(
    store: &Store,
    stream: &str,
    expected: ExpectedVersion,
    data: &[u8],
) -> evstore::Result<evstore::Appended> {
    store.append(stream, expected, [Event::new("TestEvent", data.to_vec())])?.wait()
}

/// splitmix64: small, seeded, good enough to drive tests.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
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

/// Path of segment `number` in `dir`.
pub fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.evs"))
}

/// Asserts the log reads back as positions 0..n in order, each stream with versions from 0
/// without gaps; returns n.
pub fn check_log_shape(store: &Store) -> u64 {
    let mut next = 0u64;
    let mut versions = std::collections::HashMap::<String, u64>::new();
    for event in store.read_all(0).expect("read_all") {
        let event = event.expect("event reads back");
        assert_eq!(event.position, next, "positions are contiguous");
        let expected_version = versions.entry(event.stream.clone()).or_insert(0);
        assert_eq!(event.version, *expected_version, "versions of {} are contiguous", event.stream);
        *expected_version += 1;
        next += 1;
    }
    assert_eq!(store.durable_position(), next, "read_all ends at the durable position");
    next
}
