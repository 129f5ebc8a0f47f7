//! Fault injection for tests, and entry points for the fuzzer (hidden from the docs, not a
//! stable API).
//!
//! A [`FaultPlan`] is shared between a test and the store it opened. The submitter consults it
//! around every group write and every sync, on either backend, so a test can make the Nth write
//! fail with ENOSPC or EIO, make a sync fail, make segment creation fail, or pretend io_uring is
//! forbidden. Counters start at zero when the plan is created.
//!
//! It can also keep an I/O journal ([`FaultPlan::record_io`]): every segment that became durable,
//! every write the engine issued (with its bytes) and every write that became durable, in the
//! order they happened. A test replays a prefix of it, plus any subset of the writes still in
//! flight at that point, to build the files a power loss could leave (the ALICE / CrashMonkey
//! approach). Durability is recorded conservatively: a write counts as durable only through its
//! own sync (RWF_DSYNC, its linked fdatasync, or the fdatasync after a segment header), never
//! through a later sync of the same file. Only a store opened fresh with the plan is recorded
//! whole: recovery's own writes (cutting a torn tail, removing unused segments) are not journaled.
//!
//! [`decode_record`], [`decode_group_header`] and [`decode_segment_header`] hand the crate-private
//! decoders to the fuzz targets in `fuzz/` (`just fuzz record_decode`): each says whether its
//! input decoded, and the property fuzzed is that none of them ever panics.
//!
//! [`bench`] gives the bench binary what its baselines and latency figures need from inside a
//! store: where a stream's records lie (for the `pread` baseline), a way to drop the read
//! mappings (cold reads), and when the durable watermark last moved (live delivery).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const NEVER: u64 = u64::MAX;

#[derive(Debug)]
struct FaultState {
    write_fail_after: AtomicU64,
    write_errno: AtomicI32,
    sync_fail_after: AtomicU64,
    sync_errno: AtomicI32,
    checkpoint_sync_fail_after: AtomicU64,
    checkpoint_sync_errno: AtomicI32,
    checkpoint_syncs: AtomicU64,
    segment_errno: AtomicI32,
    map_errno: AtomicI32,
    io_uring_errno: AtomicI32,
    writes: AtomicU64,
    syncs: AtomicU64,
    recording: AtomicBool,
    journal: Journal,
}

/// One entry of the I/O journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEntry {
    /// Segment file `segment` became durable (allocated, zeroed, fsynced, its directory entry
    /// fsynced): from here on it exists and holds `bytes` zero bytes.
    Created { segment: u64, bytes: u64 },
    /// A write of `data` at `offset` of segment `segment` was issued. Until its `Durable` entry
    /// any subset of its sectors may or may not be on the disk.
    Write { id: u64, segment: u64, offset: u64, data: Vec<u8> },
    /// Write `id` is durable: the engine may acknowledge what it holds from here on.
    Durable { id: u64 },
}

/// The entries, behind a lock so that the submitter and the preparer threads record them in one
/// order. Its `Debug` prints only the length: options are printed in test failures, and a copy of
/// every byte written would bury them.
#[derive(Default)]
struct Journal {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    list: Vec<JournalEntry>,
    /// `Write` entries so far: the id of the next one.
    writes: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({} entries)", self.lock().list.len())
    }
}

impl Journal {
    /// A test that panicked while holding the lock leaves the entries intact: ignore poisoning.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Which faults to inject. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    state: Arc<FaultState>,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::new()
    }
}

impl FaultPlan {
    pub fn new() -> FaultPlan {
        FaultPlan {
            state: Arc::new(FaultState {
                write_fail_after: AtomicU64::new(NEVER),
                write_errno: AtomicI32::new(0),
                sync_fail_after: AtomicU64::new(NEVER),
                sync_errno: AtomicI32::new(0),
                checkpoint_sync_fail_after: AtomicU64::new(NEVER),
                checkpoint_sync_errno: AtomicI32::new(0),
                checkpoint_syncs: AtomicU64::new(0),
                segment_errno: AtomicI32::new(0),
                map_errno: AtomicI32::new(0),
                io_uring_errno: AtomicI32::new(0),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                recording: AtomicBool::new(false),
                journal: Journal::default(),
            }),
        }
    }

    /// Group writes after the first `ok_writes` (counted from now) fail with `errno`, without
    /// writing anything.
    pub fn fail_writes_after(&self, ok_writes: u64, errno: i32) {
        let s = &self.state;
        s.write_errno.store(errno, Ordering::SeqCst);
        s.write_fail_after.store(s.writes.load(Ordering::SeqCst) + ok_writes, Ordering::SeqCst);
    }

    /// Syncs after the first `ok_syncs` (counted from now) report `errno`. The data was written
    /// (as after a real failed fdatasync, nobody knows what reached the disk).
    pub fn fail_syncs_after(&self, ok_syncs: u64, errno: i32) {
        let s = &self.state;
        s.sync_errno.store(errno, Ordering::SeqCst);
        s.sync_fail_after.store(s.syncs.load(Ordering::SeqCst) + ok_syncs, Ordering::SeqCst);
    }

    /// The syncs of index checkpoint files (the 1 MiB slices and the final one) after the first
    /// `ok_syncs` (counted from now) fail with `errno`, without syncing.
    pub fn fail_checkpoint_syncs_after(&self, ok_syncs: u64, errno: i32) {
        let s = &self.state;
        s.checkpoint_sync_errno.store(errno, Ordering::SeqCst);
        s.checkpoint_sync_fail_after.store(s.checkpoint_syncs.load(Ordering::SeqCst) + ok_syncs, Ordering::SeqCst);
    }

    /// Creating new segment files fails with `errno` (0 stops failing).
    pub fn fail_segment_creation(&self, errno: i32) {
        self.state.segment_errno.store(errno, Ordering::SeqCst);
    }

    /// Mapping segment files for reads fails with `errno`, as under RLIMIT_AS or when
    /// `vm.max_map_count` is reached (0 stops failing).
    pub fn fail_mapping(&self, errno: i32) {
        self.state.map_errno.store(errno, Ordering::SeqCst);
    }

    /// Setting up io_uring fails with `errno`, as under a seccomp filter (0 stops failing).
    pub fn deny_io_uring(&self, errno: i32) {
        self.state.io_uring_errno.store(errno, Ordering::SeqCst);
    }

    /// Stop injecting anything.
    pub fn clear(&self) {
        let s = &self.state;
        s.write_fail_after.store(NEVER, Ordering::SeqCst);
        s.sync_fail_after.store(NEVER, Ordering::SeqCst);
        s.checkpoint_sync_fail_after.store(NEVER, Ordering::SeqCst);
        s.segment_errno.store(0, Ordering::SeqCst);
        s.map_errno.store(0, Ordering::SeqCst);
        s.io_uring_errno.store(0, Ordering::SeqCst);
    }

    /// Group writes seen so far.
    pub fn writes(&self) -> u64 {
        self.state.writes.load(Ordering::SeqCst)
    }

    /// Syncs seen so far.
    pub fn syncs(&self) -> u64 {
        self.state.syncs.load(Ordering::SeqCst)
    }

    /// Starts keeping the I/O journal. Call it before `Store::open`, so that the first segment's
    /// creation is in it.
    pub fn record_io(&self) {
        self.state.recording.store(true, Ordering::SeqCst);
    }

    /// A copy of the journal so far.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.state.journal.lock().list.clone()
    }

    /// Entries in the journal so far. Read right after a ticket resolved, it bounds the index of
    /// the `Durable` entries its acknowledgement rests on: a crash at or after it must keep the
    /// append.
    pub fn journal_len(&self) -> usize {
        self.state.journal.lock().list.len()
    }

    pub(crate) fn recording(&self) -> bool {
        self.state.recording.load(Ordering::SeqCst)
    }

    pub(crate) fn record_created(&self, segment: u64, bytes: u64) {
        if self.recording() {
            self.state.journal.lock().list.push(JournalEntry::Created { segment, bytes });
        }
    }

    /// Records an issued write; returns its id (`None` when not recording). Call it before the
    /// write is handed to the kernel: from then on its bytes may reach the disk.
    pub(crate) fn record_write(&self, segment: u64, offset: u64, data: &[u8]) -> Option<u64> {
        if !self.recording() {
            return None;
        }
        let mut journal = self.state.journal.lock();
        let id = journal.writes;
        journal.writes += 1;
        journal.list.push(JournalEntry::Write { id, segment, offset, data: data.to_vec() });
        Some(id)
    }

    /// Records that write `id` is durable. Call it before anything that rests on it is
    /// acknowledged.
    pub(crate) fn record_durable(&self, id: u64) {
        self.state.journal.lock().list.push(JournalEntry::Durable { id });
    }

    /// Counts a write; returns the errno to fail it with, if any.
    pub(crate) fn on_write(&self) -> Option<i32> {
        let s = &self.state;
        let n = s.writes.fetch_add(1, Ordering::SeqCst);
        (n >= s.write_fail_after.load(Ordering::SeqCst)).then(|| s.write_errno.load(Ordering::SeqCst))
    }

    /// Counts a sync; returns the errno to fail it with, if any.
    pub(crate) fn on_sync(&self) -> Option<i32> {
        let s = &self.state;
        let n = s.syncs.fetch_add(1, Ordering::SeqCst);
        (n >= s.sync_fail_after.load(Ordering::SeqCst)).then(|| s.sync_errno.load(Ordering::SeqCst))
    }

    /// Counts a checkpoint file's sync; returns the errno to fail it with, if any.
    pub(crate) fn on_checkpoint_sync(&self) -> Option<i32> {
        let s = &self.state;
        let n = s.checkpoint_syncs.fetch_add(1, Ordering::SeqCst);
        (n >= s.checkpoint_sync_fail_after.load(Ordering::SeqCst))
            .then(|| s.checkpoint_sync_errno.load(Ordering::SeqCst))
    }

    pub(crate) fn segment_errno(&self) -> Option<i32> {
        Some(self.state.segment_errno.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }

    pub(crate) fn map_errno(&self) -> Option<i32> {
        Some(self.state.map_errno.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }

    pub(crate) fn io_uring_errno(&self) -> Option<i32> {
        Some(self.state.io_uring_errno.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }
}

/// Fuzzing entry point: decodes and verifies the record at the start of `bytes` (see
/// docs/format.md); whether it decoded. Whatever `bytes` holds, it must not panic.
pub fn decode_record(bytes: &[u8]) -> bool {
    match crate::log::record::decode(bytes) {
        Ok(view) => {
            assert!(view.len <= bytes.len(), "a decoded record lies inside its input");
            true
        }
        Err(_) => false,
    }
}

/// Fuzzing entry point: decodes the group header at the start of `bytes`, of any length;
/// whether it decoded (an all-zero header, the end of a segment's groups, does not count).
pub fn decode_group_header(bytes: &[u8]) -> bool {
    crate::log::record::GroupHeader::decode(bytes).is_ok()
}

/// Fuzzing entry point: decodes the segment header block at the start of `bytes`, of any
/// length; whether it decoded (an all-zero block, a prepared segment never used, does not count).
pub fn decode_segment_header(bytes: &[u8]) -> bool {
    matches!(crate::log::segment::SegmentHeader::decode(bytes), Ok(Some(_)))
}

/// Hooks for the bench binary (see the module docs). Not a stable API.
pub mod bench {
    use std::path::PathBuf;
    use std::sync::atomic::Ordering;

    use crate::log::index::{stream_hash, unpack_location};
    use crate::log::segment::segment_path;
    use crate::Store;

    /// Where each durable record of `stream` lies, in version order: (segment file, offset,
    /// length).
    pub fn stream_record_spans(store: &Store, stream: &str) -> crate::Result<Vec<(PathBuf, u64, usize)>> {
        let shared = store.shared();
        let end = shared.durable_end.load(Ordering::Acquire);
        let locations = shared
            .index
            .with_stream(stream_hash(stream), stream.as_bytes(), |all| {
                all.iter().copied().take_while(|&location| location < end).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut spans = Vec::with_capacity(locations.len());
        for location in locations {
            let (segment, offset) = unpack_location(location);
            let map = shared.index.segment(segment)?;
            let view = crate::log::record::decode(&map[offset..]).map_err(|reason| crate::Error::Corrupted {
                segment,
                offset: offset as u64,
                reason,
            })?;
            spans.push((segment_path(&shared.dir, segment), offset as u64, view.len));
        }
        Ok(spans)
    }

    /// Drops the store's cached segment mappings, so that `posix_fadvise(DONTNEED)` can evict
    /// the pages and the next read maps and faults them in again.
    pub fn drop_mappings(store: &Store) {
        store.shared().index.drop_mappings();
    }

    /// CLOCK_MONOTONIC now, in nanoseconds.
    pub fn now_ns() -> u64 {
        crate::platform::monotonic_ns()
    }

    /// When the durable watermark last moved (CLOCK_MONOTONIC, nanoseconds; 0: not since open).
    pub fn published_ns(store: &Store) -> u64 {
        store.shared().published_ns.load(Ordering::Relaxed)
    }
}
