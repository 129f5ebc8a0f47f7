//! Simulated power loss, the ALICE / CrashMonkey way: record the I/O of a real run, build the
//! files a crash at any moment of it could leave, and check what the real `Store::open` makes of
//! them.
//!
//! A run ([`record`]) opens a fresh store with the hidden I/O journal on
//! (`FaultPlan::record_io`) and drives a seeded random workload through it from 1 to 3 producer
//! threads. The journal lists, in the order they happened, the segment files that became durable,
//! every write issued (with its bytes) and every write that became durable; each acknowledged
//! append remembers the journal's length right after its ticket resolved. A crash at journal
//! index `t` (entries `[0, t)` happened) may leave: the segments created before `t` (zeros), every
//! write durable before `t`, any subset of the writes issued but not durable by `t`, each whole or
//! torn to any subset of its 512-byte sectors, and perhaps a next segment cut short while it was
//! being prepared ([`CrashImage`]). Whatever of these the files hold, every append acknowledged at
//! an index `<= t` must come back, and nothing else may change.
//!
//! The oracle ([`Oracle`]) is the run's own log, read back before the run closed its store and
//! checked against what the producers appended: every event traces back to its append (the data
//! starts with `a<append id>.<event index>|`), every acknowledged append sits at its acknowledged
//! position and versions, no refused append appears, every append is whole. A recovered image
//! must then hold a prefix of that log ending between two appends and no earlier than the end of
//! the appends acknowledged by `t` ([`verify_store`]).
//!
//! The same journal gives images of acknowledged state to damage ([`DiskImage`], [`Layout`],
//! [`damage`], [`classify`]): a crash can only tear the last `groups_in_flight_max` groups of
//! the last segment, so anything else wrong there is damage that `open` must refuse with
//! `Error::Corrupted`, changing no file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use evstore::testing::{FaultPlan, JournalEntry};
use evstore::{
    Backend, Error, Event, ExpectedVersion, Options, RecordedEvent, SegmentPrepare, Store, SyncMode, Ticket,
};

use crate::{segment_path, Rng};

/// The unit a disk writes atomically: a torn write keeps any subset of its sectors.
pub const SECTOR_BYTES: usize = 512;
/// Groups and segment headers start on these boundaries.
pub const BLOCK_BYTES: usize = 4096;
/// Bytes of a segment header that mean something (the rest of its block is zero).
pub const SEGMENT_HEADER_USED_BYTES: usize = 56;
/// Bytes of a group header.
pub const GROUP_HEADER_BYTES: usize = 32;
/// The stream of the events appended to every recovered image, to check that the log goes on.
/// Short, with empty events, so that a probe holds as many events as any group of a run.
pub const PROBE_STREAM: &str = "probe";
/// Largest group of the runs: appends are sized to fit.
const GROUP_BYTES_MAX: usize = 16 << 10;

/// Where images are built: `/dev/shm` when it exists (tmpfs: images only test recovery logic,
/// not durability, and tmpfs makes thousands of them cheap), else the system temp dir.
pub fn image_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A fresh directory under `root`, removed when dropped.
pub fn fresh_dir(root: &Path, name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("evstore-{name}-")).tempdir_in(root).expect("image dir")
}

/// Where an image that failed a check is rebuilt for a human to look at (kept after the test).
pub fn kept_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("evstore-power-loss-kept").join(label);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("kept image dir");
    dir
}

/// A seed from `EVSTORE_POWER_LOSS_SEED`, or the clock; printed either way.
pub fn seed() -> u64 {
    crate::seed_from_env("EVSTORE_POWER_LOSS_SEED")
}

/// `EVSTORE_POWER_LOSS_RUN=<n>`: replay only run `n` of the seed.
pub fn only_run() -> Option<usize> {
    std::env::var("EVSTORE_POWER_LOSS_RUN").ok().and_then(|s| s.parse().ok())
}

/// Whether io_uring can be set up here; says so once if not.
pub fn io_uring_works() -> bool {
    let root = image_root();
    let dir = fresh_dir(&root, "pl-probe");
    let mut options = Options::default();
    options.backend = Backend::IoUring;
    options.allow_volatile = true;
    options.allow_buffered_io = true;
    options.segment_bytes = 64 << 10;
    options.group_bytes_max = GROUP_BYTES_MAX;
    match Store::open(dir.path(), options) {
        Ok(store) => store.close().is_ok(),
        Err(Error::IoUringUnavailable { errno }) => {
            let cause = std::io::Error::from_raw_os_error(errno);
            println!("skipped io_uring: unavailable here ({cause}); every run uses the portable backend");
            false
        }
        Err(e) => panic!("io_uring probe: {e}"),
    }
}

/// splitmix64 of a seed and a number: independent seeds for runs, threads and images.
pub fn mix(seed: u64, n: u64) -> u64 {
    Rng::new(seed ^ n.wrapping_mul(0xd6e8_feb8_6659_fd93)).next_u64()
}

fn shuffle<T>(rng: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

// ---------------------------------------------------------------------------------------------
// Runs

/// One recorded run: its options and its workload.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub run: usize,
    pub seed: u64,
    pub backend: Backend,
    pub sync: SyncMode,
    pub groups_in_flight_max: usize,
    pub segment_bytes: u64,
    pub busy_group_bytes_min: usize,
    pub segment_prepare: SegmentPrepare,
    pub threads: usize,
    pub appends_per_thread: usize,
    /// Percent of appends whose ticket is waited for at once (the rest wait in batches).
    pub wait_at_once_percent: u64,
    /// Tickets a producer lets pile up before it waits for them all.
    pub pending_max: usize,
    /// End with `close()` rather than dropping the last clone.
    pub close: bool,
    /// Record on the real disk (the temp dir) rather than under `image_root()`: device latency
    /// keeps more groups in flight at once.
    pub on_disk: bool,
}

impl RunConfig {
    /// Run `run` of `seed`. Backends and sync modes take turns, so that every four runs cover
    /// all four pairs; the rest is drawn from the run's own seed.
    pub fn new(seed: u64, run: usize, uring: bool) -> RunConfig {
        let run_seed = mix(seed, run as u64);
        let mut rng = Rng::new(run_seed);
        let threads = 1 + rng.below(3) as usize;
        RunConfig {
            run,
            seed: run_seed,
            backend: if uring && run.is_multiple_of(2) { Backend::IoUring } else { Backend::Portable },
            sync: if (run / 2).is_multiple_of(2) { SyncMode::Dsync } else { SyncMode::Fdatasync },
            groups_in_flight_max: 1 + rng.below(8) as usize,
            segment_bytes: [64u64, 96, 128][rng.below(3) as usize] << 10,
            busy_group_bytes_min: [4usize, 8, 16, 256][rng.below(4) as usize] << 10,
            segment_prepare: if rng.below(4) == 0 { SegmentPrepare::Fallocated } else { SegmentPrepare::Zeroed },
            threads,
            appends_per_thread: (150 + rng.below(100) as usize) / threads,
            wait_at_once_percent: [5, 20, 40][rng.below(3) as usize],
            pending_max: [8, 32][rng.below(2) as usize],
            close: rng.below(2) == 0,
            on_disk: run % 4 != 1,
        }
    }

    /// The options of the run (without the fault plan).
    pub fn options(&self) -> Options {
        let mut options = Options::default();
        options.backend = self.backend;
        options.sync = self.sync;
        options.segment_bytes = self.segment_bytes;
        options.group_bytes_max = GROUP_BYTES_MAX;
        options.groups_in_flight_max = self.groups_in_flight_max;
        options.busy_group_bytes_min = self.busy_group_bytes_min;
        options.segment_prepare = self.segment_prepare;
        options.allow_volatile = true;
        options.allow_buffered_io = true;
        options
    }

    /// The options an image is opened with: the run's, on any backend.
    pub fn image_options(&self, backend: Backend) -> Options {
        let mut options = self.options();
        options.backend = backend;
        options
    }

    pub fn describe(&self) -> String {
        format!(
            "run {} ({:?}, {}, groups_in_flight_max {}, segment_bytes {}, busy_group_bytes_min {}, {:?}, \
             {} producer(s) x {} appends, {}% waited at once, at most {} pending, {}{})",
            self.run,
            self.backend,
            self.sync.label(),
            self.groups_in_flight_max,
            self.segment_bytes,
            self.busy_group_bytes_min,
            self.segment_prepare,
            self.threads,
            self.appends_per_thread,
            self.wait_at_once_percent,
            self.pending_max,
            if self.close { "closed" } else { "dropped" },
            if self.on_disk { ", recorded on disk" } else { "" },
        )
    }
}

/// One event as appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// What an append's ticket said.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Durable: the first event's position, the last event's version, and the journal's length
    /// read right after the ticket resolved.
    Acked { position: u64, version: u64, journal_len: usize },
    /// `WrongExpectedVersion`.
    Refused,
    /// Anything else (never in a healthy run).
    Unknown(String),
}

/// One append of a run.
#[derive(Debug, Clone)]
pub struct AppendRecord {
    pub id: u64,
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<EventSpec>,
    /// On a producer's own streams, whether the expected version holds (the producer knows its
    /// streams); `None` on the streams all producers share.
    pub predicted_ok: Option<bool>,
    pub outcome: Outcome,
}

/// A run's journal, appends and log.
pub struct Recording {
    pub config: RunConfig,
    pub journal: Vec<JournalEntry>,
    pub appends: Vec<AppendRecord>,
    /// The run's log, read before its store was closed, once every ticket had resolved.
    pub log: Vec<RecordedEvent>,
}

const EVENT_TYPES: [&str; 5] = ["Created", "Renamed", "Moved", "Tagged", "Deleted"];

/// The events of one append: 1 to 5, mostly small, at most one of several KiB (so that an
/// append always fits a 16 KiB group). The data starts with `a<id>.<index>|`.
fn random_events(rng: &mut Rng, id: u64) -> Vec<EventSpec> {
    let count = 1 + rng.below(5) as usize;
    let mut big = false;
    (0..count)
        .map(|k| {
            let size = match rng.below(20) {
                0..=13 => rng.below(200),
                14..=17 => 200 + rng.below(1300),
                _ if !big => {
                    big = true;
                    2000 + rng.below(4000)
                }
                _ => rng.below(100),
            } as usize;
            let mut data = format!("a{id}.{k}|").into_bytes();
            data.extend((0..size).map(|_| b'a' + rng.below(26) as u8));
            let metadata = if rng.below(3) == 0 {
                let mut metadata = format!("m{id}.{k}").into_bytes();
                metadata.extend((0..rng.below(40)).map(|_| b'A' + rng.below(26) as u8));
                metadata
            } else {
                Vec::new()
            };
            EventSpec { event_type: EVENT_TYPES[rng.below(5) as usize].to_string(), data, metadata }
        })
        .collect()
}

/// An expected version for a stream of `len` events that only this producer writes, and
/// whether it holds. About one in six is deliberately wrong.
fn pick_expected(rng: &mut Rng, len: u64) -> (ExpectedVersion, bool) {
    match rng.below(20) {
        0..=6 => match len.checked_sub(1) {
            Some(last) => (ExpectedVersion::Exact(last), true),
            None => (ExpectedVersion::NoStream, true),
        },
        7..=8 => (ExpectedVersion::StreamExists, len > 0),
        9..=10 => (ExpectedVersion::NoStream, len == 0),
        11..=13 => {
            // Wrong on purpose: past the end, or (when there is room) behind it.
            let version = if len >= 2 && rng.below(2) == 0 { len - 2 } else { len + rng.below(3) };
            (ExpectedVersion::Exact(version), false)
        }
        _ => (ExpectedVersion::Any, true),
    }
}

fn resolve(plan: &FaultPlan, record: &mut AppendRecord, ticket: Ticket) {
    let result = ticket.wait();
    let journal_len = plan.journal_len();
    record.outcome = match result {
        Ok(appended) => Outcome::Acked { position: appended.position, version: appended.version, journal_len },
        Err(Error::WrongExpectedVersion { .. }) => Outcome::Refused,
        Err(e) => Outcome::Unknown(e.to_string()),
    };
}

/// One producer thread: its own streams `p<thread>-s<j>` with expected-version chains, and the
/// shared streams `shared-<j>` with `Any`; some tickets waited at once, some later in batches
/// (in any order), so that groups pile up in flight.
fn produce(store: Store, plan: FaultPlan, thread: usize, config: &RunConfig, seed: u64) -> Vec<AppendRecord> {
    let appends = config.appends_per_thread;
    let mut rng = Rng::new(seed);
    let own: Vec<String> = (0..4).map(|j| format!("p{thread}-s{j}")).collect();
    let mut lengths = vec![0u64; own.len()];
    let mut records: Vec<AppendRecord> = Vec::with_capacity(appends);
    let mut pending: Vec<(usize, Ticket)> = Vec::new();
    for k in 0..appends {
        let id = ((thread as u64 + 1) << 32) | k as u64;
        let events = random_events(&mut rng, id);
        let (stream, expected, predicted_ok) = if rng.below(5) == 0 {
            (format!("shared-{}", rng.below(3)), ExpectedVersion::Any, None)
        } else {
            let j = rng.below(own.len() as u64) as usize;
            let (expected, ok) = pick_expected(&mut rng, lengths[j]);
            if ok {
                // Appends to one stream are placed in the order they were made, so the next
                // expectation can rest on this one before its ticket resolved.
                lengths[j] += events.len() as u64;
            }
            (own[j].clone(), expected, Some(ok))
        };
        let result = store.append(
            &stream,
            expected,
            events
                .iter()
                .map(|e| Event::new(e.event_type.as_str(), e.data.as_slice()).with_metadata(e.metadata.as_slice())),
        );
        let index = records.len();
        records.push(AppendRecord {
            id,
            stream,
            expected,
            events,
            predicted_ok,
            outcome: Outcome::Unknown("never resolved".into()),
        });
        match result {
            Ok(ticket) => pending.push((index, ticket)),
            Err(e) => records[index].outcome = Outcome::Unknown(format!("append() failed: {e}")),
        }
        let roll = rng.below(100);
        if roll < config.wait_at_once_percent {
            if let Some((index, ticket)) = pending.pop() {
                resolve(&plan, &mut records[index], ticket);
            }
        } else if roll < config.wait_at_once_percent + 5 || pending.len() >= config.pending_max {
            shuffle(&mut rng, &mut pending);
            for (index, ticket) in pending.drain(..) {
                resolve(&plan, &mut records[index], ticket);
            }
        }
    }
    shuffle(&mut rng, &mut pending);
    for (index, ticket) in pending.drain(..) {
        resolve(&plan, &mut records[index], ticket);
    }
    records
}

/// Runs `config` on a fresh store in `dir` with the journal on. Problems of the run itself (an
/// outcome the producer did not predict, an append that failed) go to `problems`.
pub fn record(config: &RunConfig, dir: &Path, problems: &mut Vec<String>) -> Recording {
    let plan = FaultPlan::new();
    plan.record_io();
    let mut options = config.options();
    options.faults = Some(plan.clone());
    let store = Store::open(dir, options).unwrap_or_else(|e| panic!("{}: open for recording: {e}", config.describe()));
    let producers: Vec<_> = (0..config.threads)
        .map(|thread| {
            let store = store.clone();
            let plan = plan.clone();
            let seed = mix(config.seed, 1000 + thread as u64);
            let config = config.clone();
            std::thread::spawn(move || produce(store, plan, thread, &config, seed))
        })
        .collect();
    let mut appends = Vec::new();
    for producer in producers {
        appends.extend(producer.join().expect("producer thread panicked"));
    }
    let log = match store.read_all(0).and_then(|events| events.collect::<evstore::Result<Vec<_>>>()) {
        Ok(log) => log,
        Err(e) => {
            problems.push(format!("{}: reading the run's own log failed: {e}", config.describe()));
            Vec::new()
        }
    };
    if config.close {
        if let Err(e) = store.close() {
            problems.push(format!("{}: close failed: {e}", config.describe()));
        }
    } else {
        drop(store);
    }
    for append in &appends {
        let what = || {
            format!("{}: append a{} to {} expecting {}", config.describe(), append.id, append.stream, append.expected)
        };
        match (&append.outcome, append.predicted_ok) {
            (Outcome::Unknown(e), _) => problems.push(format!("{}: {e}", what())),
            (Outcome::Refused, Some(true)) | (Outcome::Refused, None) => {
                problems.push(format!("{}: refused, yet the expectation held", what()))
            }
            (Outcome::Acked { .. }, Some(false)) => {
                problems.push(format!("{}: acknowledged, yet the expectation was wrong", what()))
            }
            _ => {}
        }
    }
    Recording { config: config.clone(), journal: plan.journal(), appends, log }
}

// ---------------------------------------------------------------------------------------------
// The oracle

/// `(append id, event index)` from an event's data.
fn trace(data: &[u8]) -> Option<(u64, usize)> {
    let rest = data.strip_prefix(b"a")?;
    let bar = rest.iter().position(|&b| b == b'|')?;
    let text = std::str::from_utf8(&rest[..bar]).ok()?;
    let (id, k) = text.split_once('.')?;
    Some((id.parse().ok()?, k.parse().ok()?))
}

/// What a recovered image must look like, from a run's own log.
pub struct Oracle {
    /// The run's log, checked against its appends.
    pub truth: Vec<RecordedEvent>,
    /// Log ends that fall between two appends (0 and the end of every append in the log).
    pub boundaries: BTreeSet<u64>,
    /// (journal length when acknowledged, end of the append), sorted by journal length, the end
    /// turned into a running maximum.
    acks: Vec<(usize, u64)>,
    /// Every stream of the run.
    pub streams: BTreeSet<String>,
    /// Per position, the append that holds it (id, event index).
    owners: Vec<(u64, usize)>,
    /// Events of the run's group that starts at a position, by position.
    pub group_events: BTreeMap<u64, usize>,
}

impl Oracle {
    /// Checks the run's log against its appends (problems go to `problems`) and keeps it.
    pub fn new(recording: &Recording, problems: &mut Vec<String>) -> Oracle {
        let run = recording.config.describe();
        let mut problem = |text: String| problems.push(format!("{run}: the run's own log: {text}"));
        let by_id: HashMap<u64, &AppendRecord> = recording.appends.iter().map(|a| (a.id, a)).collect();
        let mut versions: HashMap<&str, u64> = HashMap::new();
        let mut boundaries = BTreeSet::from([0u64]);
        let mut owners = Vec::with_capacity(recording.log.len());
        // Where each append was found: (first position, last version, events seen).
        let mut found: HashMap<u64, (u64, u64, usize)> = HashMap::new();
        let mut open: Option<(u64, usize)> = None;
        for (index, event) in recording.log.iter().enumerate() {
            let position = index as u64;
            if event.position != position {
                problem(format!("event {index} has position {}", event.position));
            }
            let version = versions.entry(event.stream.as_str()).or_insert(0);
            if event.version != *version {
                problem(format!(
                    "{}@{} at position {position}, expected version {version}",
                    event.stream, event.version
                ));
            }
            *version = event.version + 1;
            let Some((id, k)) = trace(&event.data) else {
                problem(format!("{}@{} at position {position} was never appended", event.stream, event.version));
                owners.push((u64::MAX, 0));
                continue;
            };
            owners.push((id, k));
            let Some(append) = by_id.get(&id) else {
                problem(format!("position {position} holds event {k} of append a{id}, which was never made"));
                continue;
            };
            if matches!(append.outcome, Outcome::Refused) {
                problem(format!("position {position} holds refused append a{id}"));
            }
            let spec = append.events.get(k);
            if append.stream != event.stream
                || spec.is_none_or(|s| {
                    s.event_type != event.event_type || s.data != event.data || s.metadata != event.metadata
                })
            {
                problem(format!("position {position} holds event {k} of append a{id}, but not as appended"));
            }
            // Appends are contiguous: event 0 opens one, the next events continue it.
            match open {
                Some((open_id, next)) if open_id == id && next == k => {}
                Some((open_id, next)) => {
                    problem(format!("position {position}: event {k} of a{id} where event {next} of a{open_id} belongs"))
                }
                None if k != 0 => problem(format!("position {position}: a{id} starts at event {k}")),
                None => {}
            }
            let seen = found.entry(id).or_insert((position, event.version, 0));
            seen.1 = event.version;
            seen.2 += 1;
            if k + 1 == append.events.len() {
                open = None;
                boundaries.insert(position + 1);
            } else {
                open = Some((id, k + 1));
            }
        }
        if let Some((id, next)) = open {
            problem(format!("the log ends inside a{id}, before its event {next}"));
        }
        let mut acks = Vec::new();
        for append in &recording.appends {
            if let Outcome::Acked { position, version, journal_len } = append.outcome {
                match found.get(&append.id) {
                    Some(&(first, last_version, _)) if first == position && last_version == version => {}
                    Some(&(first, last_version, _)) => problem(format!(
                        "a{} acknowledged at position {position} version {version}, found at {first} \
                         version {last_version}",
                        append.id
                    )),
                    None => problem(format!("acknowledged a{} is not in the log", append.id)),
                }
                acks.push((journal_len, position + append.events.len() as u64));
            }
        }
        acks.sort_unstable();
        let mut end = 0;
        for ack in &mut acks {
            end = end.max(ack.1);
            ack.1 = end;
        }
        let streams = recording.appends.iter().map(|a| a.stream.clone()).collect();
        let group_events = recording
            .journal
            .iter()
            .filter_map(|entry| match entry {
                JournalEntry::Write { offset, data, .. } if *offset != 0 => GroupHeader::decode(data),
                _ => None,
            })
            .map(|group| (group.first_position, group.events as usize))
            .collect();
        Oracle { truth: recording.log.clone(), boundaries, acks, streams, owners, group_events }
    }

    /// The end of the appends acknowledged at journal index `t` or before: a crash at `t` keeps
    /// at least the log up to here.
    pub fn required_end(&self, t: usize) -> u64 {
        match self.acks.partition_point(|&(journal_len, _)| journal_len <= t) {
            0 => 0,
            n => self.acks[n - 1].1,
        }
    }

    /// `stream@version (event k of append a<id>) at position p`.
    pub fn describe(&self, position: u64) -> String {
        match (self.truth.get(position as usize), self.owners.get(position as usize)) {
            (Some(event), Some(&(id, k))) => {
                format!("{}@{} (event {k} of append a{id}) at position {position}", event.stream, event.version)
            }
            _ => format!("position {position} (past the run's log)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The journal as a timeline

/// A group header, from the bytes of a group write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeader {
    pub seq: u64,
    pub first_position: u64,
    /// Header and records, without the padding.
    pub bytes: usize,
    pub events: u32,
}

impl GroupHeader {
    pub fn decode(data: &[u8]) -> Option<GroupHeader> {
        if data.len() < GROUP_HEADER_BYTES || &data[0..4] != b"EVGR" {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
        Some(GroupHeader {
            seq: u64_at(8),
            first_position: u64_at(16),
            bytes: GROUP_HEADER_BYTES + u32_at(24) as usize,
            events: u32_at(28),
        })
    }

    pub fn end_position(&self) -> u64 {
        self.first_position + self.events as u64
    }
}

/// One write of the journal.
#[derive(Debug, Clone)]
pub struct WriteInfo {
    /// Journal index of its `Write` entry.
    pub index: usize,
    /// Journal index of its `Durable` entry.
    pub durable_at: Option<usize>,
    pub segment: u64,
    pub offset: u64,
    pub len: usize,
    /// `None` for a segment header write or a close marker.
    pub group: Option<GroupHeader>,
    /// An end marker (engine/src/log/record.rs): "closed", written by a clean close after the last
    /// group, or "continued", written into a segment when the log moves on to the next.
    pub marker: bool,
    /// It is the "closed" one.
    pub closes: bool,
}

impl WriteInfo {
    pub fn issued_by(&self, t: usize) -> bool {
        self.index < t
    }

    pub fn durable_by(&self, t: usize) -> bool {
        self.durable_at.is_some_and(|at| at < t)
    }
}

/// The journal, indexed.
pub struct Timeline {
    /// (journal index, segment, bytes) of every `Created`.
    pub created: Vec<(usize, u64, u64)>,
    /// Every write, by id.
    pub writes: Vec<WriteInfo>,
    /// Per crash index `t` (0..=len), how many writes are in flight (issued, not durable).
    pub in_flight: Vec<usize>,
    pub len: usize,
}

impl Timeline {
    pub fn new(journal: &[JournalEntry]) -> Timeline {
        let mut created = Vec::new();
        let mut writes: Vec<WriteInfo> = Vec::new();
        let mut in_flight = Vec::with_capacity(journal.len() + 1);
        let mut count = 0usize;
        for (index, entry) in journal.iter().enumerate() {
            in_flight.push(count);
            match entry {
                JournalEntry::Created { segment, bytes } => created.push((index, *segment, *bytes)),
                JournalEntry::Write { id, segment, offset, data } => {
                    assert_eq!(*id as usize, writes.len(), "write ids count the writes");
                    writes.push(WriteInfo {
                        index,
                        durable_at: None,
                        segment: *segment,
                        offset: *offset,
                        len: data.len(),
                        group: if *offset == 0 { None } else { GroupHeader::decode(data) },
                        marker: *offset != 0 && (data.starts_with(b"EVCL") || data.starts_with(b"EVNX")),
                        closes: *offset != 0 && data.starts_with(b"EVCL"),
                    });
                    count += 1;
                }
                JournalEntry::Durable { id } => {
                    let write = &mut writes[*id as usize];
                    assert!(write.durable_at.is_none(), "write {id} durable twice");
                    write.durable_at = Some(index);
                    count -= 1;
                }
            }
        }
        in_flight.push(count);
        Timeline { created, writes, in_flight, len: journal.len() }
    }

    /// The bytes of write `id`.
    pub fn data<'a>(&self, journal: &'a [JournalEntry], id: usize) -> &'a [u8] {
        match &journal[self.writes[id].index] {
            JournalEntry::Write { data, .. } => data,
            other => panic!("journal entry of write {id} is {other:?}"),
        }
    }

    /// Crash indices with at least one write in flight.
    pub fn in_flight_points(&self) -> Vec<usize> {
        (0..=self.len).filter(|&t| self.in_flight[t] > 0).collect()
    }

    /// Crash indices where every write issued is durable and at least one segment is in use.
    pub fn quiescent_points(&self) -> Vec<usize> {
        (0..=self.len)
            .filter(|&t| self.in_flight[t] == 0 && self.writes.iter().any(|w| w.group.is_some() && w.durable_by(t)))
            .collect()
    }

    /// The segment a crash at `t` may find half prepared: the one after the last created.
    pub fn next_segment(&self, t: usize) -> u64 {
        self.created.iter().filter(|c| c.0 < t).map(|c| c.1 + 1).max().unwrap_or(0)
    }
}

// ---------------------------------------------------------------------------------------------
// Crash images

/// Writes in flight listed in a failure report; the image kept on disk has them all.
const IN_FLIGHT_SHOWN: usize = 12;

/// The files a crash at journal index `t` leaves, as a list of what to apply.
#[derive(Debug, Clone)]
pub struct CrashImage {
    pub t: usize,
    /// Writes applied, in order: (write id, `None` whole or `Some(sectors)` torn).
    pub applied: Vec<(usize, Option<Vec<usize>>)>,
    /// A segment whose preparation a crash interrupted: (number, length of zeros, renamed). Not
    /// renamed: `<number>.evs.partial` of any length; renamed: a whole `<number>.evs` of zeros.
    pub partial: Option<(u64, u64, bool)>,
}

impl CrashImage {
    /// A random crash image at `t`: every write durable by `t`, in order; then each write in
    /// flight at `t` with probability 1/2, whole or torn (each 512-byte sector kept with
    /// probability 1/2), in random order; one time in four, a half-prepared next segment.
    pub fn random(timeline: &Timeline, t: usize, segment_bytes: u64, rng: &mut Rng) -> CrashImage {
        let mut applied: Vec<(usize, Option<Vec<usize>>)> = Vec::new();
        let mut in_flight = Vec::new();
        for (id, write) in timeline.writes.iter().enumerate() {
            if write.durable_by(t) {
                applied.push((id, None));
            } else if write.issued_by(t) {
                in_flight.push(id);
            }
        }
        shuffle(rng, &mut in_flight);
        for id in in_flight {
            if rng.below(2) == 0 {
                continue;
            }
            if rng.below(2) == 0 {
                applied.push((id, None));
            } else {
                let sectors = timeline.writes[id].len.div_ceil(SECTOR_BYTES);
                applied.push((id, Some((0..sectors).filter(|_| rng.below(2) == 0).collect())));
            }
        }
        let partial = (rng.below(4) == 0).then(|| {
            // The preparer works on `<number>.evs.partial` and renames it once it is whole and
            // synced; the rename itself may or may not have reached the disk.
            let len = match rng.below(5) {
                0 => 0,
                1 => rng.below(2 * BLOCK_BYTES as u64),
                2 => rng.below(segment_bytes / BLOCK_BYTES as u64 + 1) * BLOCK_BYTES as u64,
                3 => rng.below(segment_bytes + 1),
                _ => return (timeline.next_segment(t), segment_bytes, true),
            };
            (timeline.next_segment(t), len, false)
        });
        CrashImage { t, applied, partial }
    }

    /// Writes the image's files into the empty directory `dir`.
    pub fn write(&self, journal: &[JournalEntry], timeline: &Timeline, dir: &Path) {
        let mut files: HashMap<u64, File> = HashMap::new();
        for &(index, segment, bytes) in &timeline.created {
            if index < self.t {
                let file = File::create(segment_path(dir, segment)).expect("create segment");
                // Sparse, so it reads as zeros without writing them.
                file.set_len(bytes).expect("size segment");
                files.insert(segment, file);
            }
        }
        for (id, sectors) in &self.applied {
            let write = &timeline.writes[*id];
            let data = timeline.data(journal, *id);
            let file = files.get(&write.segment).expect("a write lands in a segment created before it");
            match sectors {
                None => file.write_all_at(data, write.offset).expect("apply write"),
                Some(sectors) => {
                    for &sector in sectors {
                        let range = sector * SECTOR_BYTES..((sector + 1) * SECTOR_BYTES).min(data.len());
                        file.write_all_at(&data[range.clone()], write.offset + range.start as u64)
                            .expect("apply torn write");
                    }
                }
            }
        }
        if let Some((segment, len, renamed)) = self.partial {
            let path =
                if renamed { segment_path(dir, segment) } else { dir.join(format!("{segment:020}.evs.partial")) };
            let file = File::create(path).expect("create partial segment");
            file.set_len(len).expect("size partial segment");
        }
    }

    /// The end of the last group with any byte in the image: a recovered log shorter than this
    /// was cut.
    pub fn written_end(&self, timeline: &Timeline) -> u64 {
        self.applied
            .iter()
            .filter(|(_, sectors)| sectors.as_ref().is_none_or(|s| !s.is_empty()))
            .filter_map(|(id, _)| timeline.writes[*id].group.map(|g| g.end_position()))
            .max()
            .unwrap_or(0)
    }

    /// What the image holds, for a failure report.
    pub fn describe(&self, timeline: &Timeline) -> String {
        let mut text = format!("crash at journal index {} of {}", self.t, timeline.len);
        let segments: Vec<u64> = timeline.created.iter().filter(|c| c.0 < self.t).map(|c| c.1).collect();
        text += &format!("; segments created {segments:?}");
        let mut in_flight = Vec::new();
        let mut durable = 0;
        for (id, sectors) in &self.applied {
            let write = &timeline.writes[*id];
            if write.durable_by(self.t) {
                durable += 1;
                continue;
            }
            let what = match write.group {
                Some(g) => format!("group seq {} positions {}..{}", g.seq, g.first_position, g.end_position()),
                None if write.closes => "close marker".to_string(),
                None if write.marker => "continued marker".to_string(),
                None => "segment header".to_string(),
            };
            let how = match sectors {
                None => "whole".to_string(),
                Some(s) => format!("torn, sectors {s:?} of {}", write.len.div_ceil(SECTOR_BYTES)),
            };
            in_flight.push(format!("write {id} ({what}) at segment {} offset {}: {how}", write.segment, write.offset));
        }
        text += &format!("; {durable} durable writes applied");
        if in_flight.is_empty() {
            text += "; no write in flight applied";
        } else {
            // The writes in flight are in random order; the newest matter most.
            let shown = in_flight.len().min(IN_FLIGHT_SHOWN);
            in_flight
                .sort_by_key(|line| std::cmp::Reverse(line.split(' ').nth(1).and_then(|id| id.parse::<usize>().ok())));
            text += &format!("; in flight applied (newest first): [{}", in_flight[..shown].join("; "));
            if in_flight.len() > shown {
                text += &format!("; and {} older", in_flight.len() - shown);
            }
            text += "]";
        }
        let dropped: Vec<usize> = timeline
            .writes
            .iter()
            .enumerate()
            .filter(|(id, w)| w.issued_by(self.t) && !w.durable_by(self.t) && !self.applied.iter().any(|a| a.0 == *id))
            .map(|(id, _)| id)
            .collect();
        if !dropped.is_empty() {
            let newest = &dropped[dropped.len().saturating_sub(IN_FLIGHT_SHOWN)..];
            text += &format!("; {} in flight lost (newest: writes {newest:?})", dropped.len());
        }
        if let Some((segment, len, renamed)) = self.partial {
            let name = if renamed { "renamed" } else { ".partial" };
            text += &format!("; half-prepared segment {segment} of {len} bytes ({name})");
        }
        text
    }
}

// ---------------------------------------------------------------------------------------------
// Opening and checking

thread_local! {
    /// Where the last panic on this thread happened (`file:line:column`).
    static PANIC_LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Makes panics remember their location, for [`panic_message`]; the default hook still runs.
fn remember_panic_locations() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
            PANIC_LOCATION.with(|last| *last.borrow_mut() = location);
            default(info);
        }));
    });
}

/// `Store::open`, with a panic turned into `Err(message and location)`.
pub fn open_catching(dir: &Path, options: Options) -> Result<evstore::Result<Store>, String> {
    remember_panic_locations();
    catch_unwind(AssertUnwindSafe(|| Store::open(dir, options))).map_err(panic_message)
}

/// The message of a caught panic, with its location when known.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    };
    match PANIC_LOCATION.with(|last| last.borrow_mut().take()) {
        Some(location) => format!("panicked at {location}: {message}"),
        None => format!("panicked: {message}"),
    }
}

fn read_all_checked(store: &Store) -> Result<Vec<RecordedEvent>, String> {
    store.read_all(0).and_then(|events| events.collect::<evstore::Result<Vec<_>>>()).map_err(|e| e.to_string())
}

fn short(event: &RecordedEvent) -> String {
    let data = String::from_utf8_lossy(&event.data[..event.data.len().min(24)]).into_owned();
    format!(
        "{}@{} at {} type {} data {data:?}.. ({} bytes) metadata {} bytes",
        event.stream,
        event.version,
        event.position,
        event.event_type,
        event.data.len(),
        event.metadata.len()
    )
}

/// A check that failed: its kind (one line, the same for every failure of that kind) and what
/// exactly was wrong.
pub type Problem = (&'static str, String);

/// Checks a store opened on an image: its log is a prefix of the run's log (nothing invented or
/// changed) that ends between two appends, holds at least `required_end` events and no more than
/// `limit`; the durable position, `read_stream` and `stream_version` agree with it; an append
/// goes on at its end; closing and reopening gives the same log. Returns the log's length.
pub fn verify_store(
    store: Store,
    dir: &Path,
    options: &Options,
    oracle: &Oracle,
    required_end: u64,
    limit: u64,
) -> Result<u64, Problem> {
    remember_panic_locations();
    catch_unwind(AssertUnwindSafe(|| verify_inner(store, dir, options, oracle, required_end, limit)))
        .unwrap_or_else(|payload| Err(("checking the recovered store panicked", panic_message(payload))))
}

fn first(problems: Vec<Problem>) -> Result<(), Problem> {
    let mut problems = problems.into_iter();
    match problems.next() {
        None => Ok(()),
        Some((kind, detail)) => {
            let rest: Vec<String> = problems.map(|(_, d)| d).collect();
            Err((kind, if rest.is_empty() { detail } else { format!("{detail}\n    {}", rest.join("\n    ")) }))
        }
    }
}

fn verify_inner(
    store: Store,
    dir: &Path,
    options: &Options,
    oracle: &Oracle,
    required_end: u64,
    limit: u64,
) -> Result<u64, Problem> {
    let log = read_all_checked(&store).map_err(|e| ("read_all failed on the recovered store", e))?;
    let n = log.len() as u64;
    let mut problems: Vec<Problem> = Vec::new();
    if let Some(index) = log.iter().zip(&oracle.truth).position(|(found, truth)| found != truth) {
        problems.push((
            "an event was changed",
            format!("found {}, the run wrote {}", short(&log[index]), short(&oracle.truth[index])),
        ));
    }
    if n > oracle.truth.len() as u64 || n > limit {
        problems.push((
            "events were invented",
            format!("the log holds {n} events, the image at most {}", limit.min(oracle.truth.len() as u64)),
        ));
    } else if !oracle.boundaries.contains(&n) {
        problems.push(("the log ends inside an append", format!("its last event is {}", oracle.describe(n - 1))));
    }
    if n < required_end {
        problems.push((
            "acknowledged appends lost",
            format!(
                "the log ends at {n}, the appends acknowledged by then end at {required_end}; the first lost is {}",
                oracle.describe(n)
            ),
        ));
    }
    if store.durable_position() != n {
        problems.push((
            "durable_position disagrees with read_all",
            format!("durable_position() is {}, read_all holds {n} events", store.durable_position()),
        ));
    }
    first(problems)?;
    let mut problems: Vec<Problem> = Vec::new();
    let mut by_stream: BTreeMap<&str, Vec<&RecordedEvent>> = BTreeMap::new();
    for event in &log {
        by_stream.entry(event.stream.as_str()).or_default().push(event);
    }
    for stream in &oracle.streams {
        let expected: Vec<&RecordedEvent> = by_stream.get(stream.as_str()).cloned().unwrap_or_default();
        match store.read_stream(stream, 0).and_then(|events| events.collect::<evstore::Result<Vec<_>>>()) {
            Ok(events) if events.iter().eq(expected.iter().copied()) => {}
            Ok(events) => problems.push((
                "read_stream disagrees with read_all",
                format!("read_stream({stream}) gives {} events, read_all {}", events.len(), expected.len()),
            )),
            Err(e) => {
                problems.push(("read_stream failed on the recovered store", format!("read_stream({stream}): {e}")))
            }
        }
        let version = expected.last().map(|e| e.version);
        if store.stream_version(stream) != version {
            problems.push((
                "stream_version disagrees with read_all",
                format!("stream_version({stream}) is {:?}, read_all says {version:?}", store.stream_version(stream)),
            ));
        }
    }
    // The log goes on where recovery ended it, and that survives a reopen. The probe is one
    // append of as many events as the run's group that started at this position had, so it
    // becomes a group with the same sequence number and end position: if recovery left that
    // group's successors behind (writes that were in flight), the next one now continues the
    // log exactly as it did in the run, and a reopen would take it for new data.
    let probe_events = oracle.group_events.get(&n).copied().unwrap_or(1);
    let probe = store
        .append(PROBE_STREAM, ExpectedVersion::NoStream, (0..probe_events).map(|_| Event::new("P", b"".as_slice())))
        .and_then(Ticket::wait);
    match probe {
        Ok(appended) if appended.position == n && appended.version + 1 == probe_events as u64 => {}
        Ok(appended) => problems.push((
            "an append after recovery landed elsewhere",
            format!("it landed at {appended:?}, not at position {n}"),
        )),
        Err(e) => problems.push(("an append after recovery failed", e.to_string())),
    }
    if let Err(e) = store.close() {
        problems.push(("close after recovery failed", e.to_string()));
    }
    first(problems)?;
    let store = match open_catching(dir, options.clone()) {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => return Err(("reopening the recovered store failed", e.to_string())),
        Err(panic) => return Err(("reopening the recovered store panicked", panic)),
    };
    let again = read_all_checked(&store).map_err(|e| ("read_all failed after a reopen", e))?;
    let _ = store.close();
    let same = again.len() == log.len() + probe_events
        && again[..log.len()] == log[..]
        && again[log.len()..].iter().all(|e| e.stream == PROBE_STREAM);
    if !same {
        return Err((
            "a reopen gives another log",
            format!(
                "the reopened store holds {} events, not the {n} recovered plus the {probe_events} of the probe (first \
                 difference at {})",
                again.len(),
                again.iter().zip(&log).position(|(a, b)| a != b).unwrap_or(log.len().min(again.len()))
            ),
        ));
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Failure reports

/// Records run `run` of `config` (on disk or under `root`, as the config says) and builds its
/// oracle; problems with the run itself go to `failures`.
pub fn record_run(config: &RunConfig, root: &Path, run: usize, failures: &mut Failures) -> (Recording, Oracle) {
    let record_root = if config.on_disk { std::env::temp_dir() } else { root.to_path_buf() };
    let dir = fresh_dir(&record_root, "pl-run");
    let mut problems = Vec::new();
    let recording = record(config, dir.path(), &mut problems);
    for problem in problems {
        failures.add("the recorded run itself", run, || problem);
    }
    let mut problems = Vec::new();
    let oracle = Oracle::new(&recording, &mut problems);
    for problem in problems {
        failures.add("the recorded run's own log", run, || problem);
    }
    (recording, oracle)
}

/// Collects check failures: prints the first few of each kind in full (with a reproduction),
/// counts the rest, and fails the test at the end.
pub struct Failures {
    test: &'static str,
    replay: String,
    kinds: BTreeMap<String, usize>,
    shown: usize,
}

/// Full reports per kind of failure (the first of each kind is always shown); the rest are
/// counted.
const SHOWN_PER_KIND: usize = 2;
const SHOWN_MAX: usize = 24;

impl Failures {
    pub fn new(test: &'static str, seed: u64) -> Failures {
        let replay = format!("EVSTORE_POWER_LOSS_SEED={seed} cargo test -p evstore-tests --test {test} -- --nocapture");
        Failures { test, replay, kinds: BTreeMap::new(), shown: 0 }
    }

    pub fn count(&self) -> usize {
        self.kinds.values().sum()
    }

    /// Records a failure of `kind`; `detail` (which may keep a copy of the image and say where)
    /// is only built for the ones shown.
    pub fn add(&mut self, kind: &str, run: usize, detail: impl FnOnce() -> String) {
        let seen = self.kinds.entry(kind.to_string()).or_insert(0);
        *seen += 1;
        // The first of every kind, then a few more while the report is short.
        if *seen == 1 || (*seen <= SHOWN_PER_KIND && self.shown < SHOWN_MAX) {
            self.shown += 1;
            println!(
                "FAILED ({}) {kind}\n  {}\n  replay the run: EVSTORE_POWER_LOSS_RUN={run} {} (the workload and \
                 options replay exactly; the journal depends on thread timing, the kept image does not)",
                self.test,
                detail(),
                self.replay
            );
        }
    }

    /// Prints the counts per kind and panics if there were any.
    pub fn finish(&self) {
        if self.kinds.is_empty() {
            return;
        }
        println!("{}: {} check failures:", self.test, self.count());
        for (kind, count) in &self.kinds {
            println!("  {count:5} x {kind}");
        }
        panic!("{}: {} check failures (details above); replay with {}", self.test, self.count(), self.replay);
    }
}

// ---------------------------------------------------------------------------------------------
// Damage

/// The segment files of an image, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    pub segments: BTreeMap<u64, Vec<u8>>,
}

impl DiskImage {
    /// The files at a quiescent crash index `t`: every segment created and every write durable.
    pub fn durable_state(journal: &[JournalEntry], timeline: &Timeline, t: usize) -> DiskImage {
        let mut segments = BTreeMap::new();
        for &(index, segment, bytes) in &timeline.created {
            if index < t {
                segments.insert(segment, vec![0u8; bytes as usize]);
            }
        }
        for (id, write) in timeline.writes.iter().enumerate() {
            if write.durable_by(t) {
                let file = segments.get_mut(&write.segment).expect("a write lands in a created segment");
                let at = write.offset as usize;
                file[at..at + write.len].copy_from_slice(timeline.data(journal, id));
            }
        }
        DiskImage { segments }
    }

    pub fn write_to(&self, dir: &Path) {
        for (number, bytes) in &self.segments {
            std::fs::write(segment_path(dir, *number), bytes).expect("write segment");
        }
    }

    /// The segment files (`*.evs`) of `dir` by name.
    pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .expect("read image dir")
            .filter_map(|entry| {
                let path = entry.expect("dir entry").path();
                let name = path.file_name()?.to_str()?.to_string();
                name.ends_with(".evs").then(|| (name, std::fs::read(&path).expect("read segment")))
            })
            .collect()
    }
}

/// One group of an image.
#[derive(Debug, Clone, Copy)]
pub struct PlacedGroup {
    pub segment: u64,
    pub offset: usize,
    pub header: GroupHeader,
    /// Bytes written: header, records and padding to the next block.
    pub padded: usize,
    /// The write that put it there.
    pub write: usize,
}

/// Where things are in an image of acknowledged state.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Groups in log order.
    pub groups: Vec<PlacedGroup>,
    /// Segments whose header was written, and the write that did it.
    pub headers: BTreeMap<u64, usize>,
    pub window: usize,
    /// The store was closed cleanly: its close marker is durable after the last group, so no
    /// group is in a crash window.
    pub closed: bool,
}

impl Layout {
    pub fn at(timeline: &Timeline, t: usize, window: usize) -> Layout {
        let mut closed = false;
        let mut groups = Vec::new();
        let mut headers = BTreeMap::new();
        for (id, write) in timeline.writes.iter().enumerate() {
            if !write.durable_by(t) {
                continue;
            }
            match write.group {
                Some(header) => groups.push(PlacedGroup {
                    segment: write.segment,
                    offset: write.offset as usize,
                    header,
                    padded: write.len,
                    write: id,
                }),
                None if write.marker => closed |= write.closes,
                None => {
                    headers.insert(write.segment, id);
                }
            }
        }
        groups.sort_by_key(|g| g.header.seq);
        Layout { groups, headers, window, closed }
    }

    pub fn last_segment(&self) -> Option<u64> {
        self.headers.keys().next_back().copied()
    }

    pub fn end_position(&self) -> u64 {
        self.groups.last().map_or(0, |g| g.header.end_position())
    }

    /// Whether damage to group `index` can only be corruption: the store was closed cleanly (its
    /// close marker says where the log ends), or the group is in an earlier segment than the
    /// last, or at least `window` groups follow it (a crash tears at most the last `window`).
    pub fn group_protected(&self, index: usize) -> bool {
        self.closed
            || Some(self.groups[index].segment) != self.last_segment()
            || self.groups.len() - 1 - index >= self.window
    }

    /// Where the groups a crash may tear begin: the first of the last `window` groups that are in
    /// the last segment (the log's end if there are none).
    pub fn window_start(&self) -> u64 {
        (0..self.groups.len())
            .find(|&index| !self.group_protected(index))
            .map_or(self.end_position(), |index| self.groups[index].header.first_position)
    }

    /// Whether damage to the header of `segment` can only be corruption: groups follow it.
    pub fn header_protected(&self, segment: u64) -> bool {
        Some(segment) != self.last_segment() || self.groups.iter().any(|g| g.segment == segment)
    }
}

/// The kinds of damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DamageKind {
    /// One bit of a group's header or records.
    FlipRecordBit,
    /// One bit of the zero padding after a group's records.
    FlipPaddingBit,
    /// A 4 KiB block of a group zeroed.
    ZeroBlock,
    /// One bit of a used segment's header.
    FlipHeaderBit,
    /// A used segment's header block zeroed.
    ZeroHeader,
    /// A group write landed at another block of a used segment; its own place kept its zeros.
    Misdirected,
    /// A used segment file cut short (not something a crash does: segments are allocated and
    /// made durable at full size before use).
    Truncated,
}

pub const DAMAGE_KINDS: [DamageKind; 7] = [
    DamageKind::FlipRecordBit,
    DamageKind::FlipPaddingBit,
    DamageKind::ZeroBlock,
    DamageKind::FlipHeaderBit,
    DamageKind::ZeroHeader,
    DamageKind::Misdirected,
    DamageKind::Truncated,
];

/// Applies damage of `kind` to `image`; returns what was done, or `None` if the layout has
/// nothing to damage that way.
pub fn damage(
    image: &mut DiskImage,
    layout: &Layout,
    timeline: &Timeline,
    journal: &[JournalEntry],
    kind: DamageKind,
    rng: &mut Rng,
) -> Option<String> {
    if layout.groups.is_empty() {
        return None;
    }
    let pick = |rng: &mut Rng| layout.groups[rng.below(layout.groups.len() as u64) as usize];
    match kind {
        DamageKind::FlipRecordBit => {
            let group = pick(rng);
            let at = group.offset + rng.below(group.header.bytes as u64) as usize;
            let bit = rng.below(8);
            image.segments.get_mut(&group.segment)?[at] ^= 1 << bit;
            Some(format!(
                "flipped bit {bit} of byte {at} of segment {} (group seq {})",
                group.segment, group.header.seq
            ))
        }
        DamageKind::FlipPaddingBit => {
            let padded: Vec<PlacedGroup> =
                layout.groups.iter().copied().filter(|g| g.padded > g.header.bytes).collect();
            if padded.is_empty() {
                return None;
            }
            let group = padded[rng.below(padded.len() as u64) as usize];
            let at = group.offset + group.header.bytes + rng.below((group.padded - group.header.bytes) as u64) as usize;
            let bit = rng.below(8);
            image.segments.get_mut(&group.segment)?[at] ^= 1 << bit;
            Some(format!(
                "flipped bit {bit} of byte {at} of segment {} (padding of group seq {})",
                group.segment, group.header.seq
            ))
        }
        DamageKind::ZeroBlock => {
            let group = pick(rng);
            let block = group.offset + rng.below((group.padded / BLOCK_BYTES) as u64) as usize * BLOCK_BYTES;
            image.segments.get_mut(&group.segment)?[block..block + BLOCK_BYTES].fill(0);
            Some(format!("zeroed block at {block} of segment {} (group seq {})", group.segment, group.header.seq))
        }
        DamageKind::FlipHeaderBit | DamageKind::ZeroHeader => {
            let segments: Vec<u64> = layout.headers.keys().copied().collect();
            let segment = segments[rng.below(segments.len() as u64) as usize];
            let file = image.segments.get_mut(&segment)?;
            if kind == DamageKind::ZeroHeader {
                file[..BLOCK_BYTES].fill(0);
                return Some(format!("zeroed the header block of segment {segment}"));
            }
            // Mostly the bytes that mean something; sometimes the zeros after them.
            let at = if rng.below(5) == 0 {
                SEGMENT_HEADER_USED_BYTES + rng.below((BLOCK_BYTES - SEGMENT_HEADER_USED_BYTES) as u64) as usize
            } else {
                rng.below(SEGMENT_HEADER_USED_BYTES as u64) as usize
            };
            let bit = rng.below(8);
            file[at] ^= 1 << bit;
            Some(format!("flipped bit {bit} of byte {at} of the header of segment {segment}"))
        }
        DamageKind::Truncated => {
            let segments: Vec<u64> = layout.headers.keys().copied().collect();
            let segment = segments[rng.below(segments.len() as u64) as usize];
            let file = image.segments.get_mut(&segment)?;
            // Inside the groups of the segment mostly, sometimes just past a block boundary (less
            // than a group header left in the last block); else anywhere, block-aligned or not.
            let used_end = layout.groups.iter().filter(|g| g.segment == segment).map(|g| g.offset + g.padded).max();
            let len = match (used_end, rng.below(4)) {
                (Some(end), 0) => rng.below(end as u64) as usize,
                (Some(end), 1) => {
                    rng.below((end / BLOCK_BYTES) as u64) as usize * BLOCK_BYTES + 1 + rng.below(31) as usize
                }
                (_, 2) => rng.below((file.len() / BLOCK_BYTES) as u64) as usize * BLOCK_BYTES,
                _ => rng.below(file.len() as u64) as usize,
            };
            let was = file.len();
            file.truncate(len);
            Some(format!("cut segment {segment} from {was} to {len} bytes"))
        }
        DamageKind::Misdirected => {
            let group = pick(rng);
            let data = timeline.data(journal, group.write);
            // Land on a block of the log: of the same segment mostly, else of another used one.
            let targets: Vec<&PlacedGroup> = if rng.below(3) == 0 {
                layout.groups.iter().filter(|g| g.segment != group.segment).collect()
            } else {
                layout.groups.iter().filter(|g| g.segment == group.segment).collect()
            };
            let mut blocks: Vec<(u64, usize)> = targets
                .iter()
                .flat_map(|g| (0..g.padded / BLOCK_BYTES).map(move |b| (g.segment, g.offset + b * BLOCK_BYTES)))
                .filter(|&(segment, at)| segment != group.segment || at != group.offset)
                .collect();
            // One time in four, past the end of the log instead (a crash never moves a write
            // there either; an earlier recovery took such a stray group for a torn tail).
            if rng.below(4) == 0 {
                if let Some(last) = layout.groups.last() {
                    let tail = last.offset + last.padded + if layout.closed { BLOCK_BYTES } else { 0 };
                    blocks = vec![(last.segment, tail + rng.below(4) as usize * BLOCK_BYTES)];
                }
            }
            blocks.retain(|&(segment, at)| at + data.len() <= image.segments[&segment].len());
            if blocks.is_empty() {
                return None;
            }
            let (segment, at) = blocks[rng.below(blocks.len() as u64) as usize];
            image.segments.get_mut(&group.segment)?[group.offset..group.offset + data.len()].fill(0);
            image.segments.get_mut(&segment)?[at..at + data.len()].copy_from_slice(data);
            Some(format!(
                "the write of group seq {} ({} bytes, segment {} offset {}) landed at segment {segment} offset \
                 {at} instead",
                group.header.seq,
                data.len(),
                group.segment,
                group.offset
            ))
        }
    }
}

/// What a damaged image must give.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Damage that no crash could leave: `open` must say `Corrupted`.
    pub must_corrupt: bool,
    /// If it opens: the log must keep at least this many events.
    pub required_end: u64,
    /// Per segment, the first and last changed byte.
    pub changed: BTreeMap<u64, (usize, usize)>,
    /// Where the changed bytes are, for the report.
    pub places: Vec<String>,
}

/// Compares `before` and `after` and sorts every changed byte: in a protected place (the records
/// of a group or the header of a segment that a crash cannot tear, or past the last group of an
/// earlier segment) the image must be refused; in one of the last `window` groups of the last
/// segment, or past its last group, it may be cut as a torn tail (every acknowledged event
/// before those groups must stay); in the padding of a protected group, it may open with every
/// acknowledged event intact.
pub fn classify(before: &DiskImage, after: &DiskImage, layout: &Layout, acked_end: u64) -> Verdict {
    let mut verdict =
        Verdict { must_corrupt: false, required_end: acked_end, changed: BTreeMap::new(), places: Vec::new() };
    let mut places = BTreeSet::new();
    for (&segment, old) in &before.segments {
        let new = &after.segments[&segment];
        if new.len() != old.len() {
            places.insert(format!("segment {segment} cut to {} bytes", new.len()));
            // A cut always changes the segment (recovery must see its size), even where it only
            // drops zeros.
            verdict.changed.entry(segment).or_insert((new.len(), new.len()));
        }
        // Bytes a cut dropped count as changed where they were not zero.
        let byte = |at: usize| new.get(at).copied().unwrap_or(0);
        for block in (0..old.len()).step_by(BLOCK_BYTES) {
            let end = (block + BLOCK_BYTES).min(old.len());
            if end <= new.len() && old[block..end] == new[block..end] {
                continue;
            }
            for (at, &was) in old.iter().enumerate().take(end).skip(block) {
                if was == byte(at) {
                    continue;
                }
                let range = verdict.changed.entry(segment).or_insert((at, at));
                range.0 = range.0.min(at);
                range.1 = range.1.max(at);
                let place = if at < BLOCK_BYTES {
                    let protected = layout.header_protected(segment);
                    if at < SEGMENT_HEADER_USED_BYTES {
                        verdict.must_corrupt |= protected;
                        format!(
                            "segment {segment} header ({})",
                            if protected { "groups follow" } else { "no groups yet" }
                        )
                    } else {
                        format!("segment {segment} header padding")
                    }
                } else if let Some(index) = layout
                    .groups
                    .iter()
                    .position(|g| g.segment == segment && g.offset <= at && at < g.offset + g.padded)
                {
                    let group = &layout.groups[index];
                    let protected = layout.group_protected(index);
                    let records = at < group.offset + group.header.bytes;
                    if records {
                        verdict.must_corrupt |= protected;
                    }
                    if !protected {
                        // Treated as a torn tail, the damage may take the whole window with it.
                        verdict.required_end = verdict.required_end.min(layout.window_start());
                    }
                    format!(
                        "segment {segment} group seq {} {} ({} groups after it)",
                        group.header.seq,
                        if records { "records" } else { "padding" },
                        layout.groups.len() - 1 - index
                    )
                } else {
                    let protected = Some(segment) != layout.last_segment();
                    verdict.must_corrupt |= protected;
                    format!("segment {segment} past its last group")
                };
                places.insert(place);
            }
        }
    }
    verdict.places = places.into_iter().collect();
    verdict
}

/// Whether `Corrupted { segment, offset }` points at the damage: a segment with changed bytes,
/// at or before its last changed byte.
pub fn points_at_damage(verdict: &Verdict, segment: u64, offset: u64) -> bool {
    verdict.changed.get(&segment).is_some_and(|&(_, last)| offset <= last as u64)
}

/// How the segment files differ between `before` and `after` (by name), for a report, and
/// whether the only change is that segments that were never used (zero header block) are gone.
pub fn file_changes(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) -> (Vec<String>, bool) {
    let mut changes = Vec::new();
    let mut only_unused = true;
    for (name, bytes) in before {
        let unused = bytes.len() < BLOCK_BYTES || bytes[..BLOCK_BYTES].iter().all(|&b| b == 0);
        match after.get(name) {
            None => {
                only_unused &= unused;
                changes.push(format!("{name} removed{}", if unused { " (never used)" } else { "" }));
            }
            Some(now) if now.len() != bytes.len() => {
                only_unused = false;
                changes.push(format!("{name} resized from {} to {} bytes", bytes.len(), now.len()))
            }
            Some(now) if now != bytes => {
                only_unused = false;
                let first = bytes.iter().zip(now).position(|(a, b)| a != b).unwrap_or(0);
                changes.push(format!("{name} rewritten from byte {first}"))
            }
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|name| !before.contains_key(*name)) {
        only_unused = false;
        changes.push(format!("{name} created"));
    }
    (changes, only_unused)
}
