//! Fault injection for tests, and entry points for the fuzzer (hidden from the docs, not a
//! stable API).
//!
//! A [`FaultPlan`] is shared between a test and the store it opened. The submitter consults it
//! around every group write and every sync, on either backend, so a test can make the Nth write
//! fail with ENOSPC or EIO, make a sync fail, make segment creation fail, or pretend io_uring is
//! forbidden. Counters start at zero when the plan is created.
//!
//! [`decode_record`], [`decode_group_header`] and [`decode_segment_header`] hand the crate-private
//! decoders to the fuzz targets in `fuzz/` (`just fuzz record_decode`): each says whether its
//! input decoded, and the property fuzzed is that none of them ever panics.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

const NEVER: u64 = u64::MAX;

#[derive(Debug)]
struct FaultState {
    write_fail_after: AtomicU64,
    write_errno: AtomicI32,
    sync_fail_after: AtomicU64,
    sync_errno: AtomicI32,
    segment_errno: AtomicI32,
    io_uring_errno: AtomicI32,
    writes: AtomicU64,
    syncs: AtomicU64,
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
                segment_errno: AtomicI32::new(0),
                io_uring_errno: AtomicI32::new(0),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
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

    /// Creating new segment files fails with `errno` (0 stops failing).
    pub fn fail_segment_creation(&self, errno: i32) {
        self.state.segment_errno.store(errno, Ordering::SeqCst);
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
        s.segment_errno.store(0, Ordering::SeqCst);
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

    pub(crate) fn segment_errno(&self) -> Option<i32> {
        Some(self.state.segment_errno.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }

    pub(crate) fn io_uring_errno(&self) -> Option<i32> {
        Some(self.state.io_uring_errno.load(Ordering::SeqCst)).filter(|&e| e != 0)
    }
}

/// Fuzzing entry point: decodes and verifies the record at the start of `bytes` (see
/// docs/format.md); whether it decoded. Whatever `bytes` holds, it must not panic.
pub fn decode_record(bytes: &[u8]) -> bool {
    match crate::record::decode(bytes) {
        Ok(view) => {
            assert!(view.len <= bytes.len(), "a decoded record lies inside its input");
            true
        }
        Err(_) => false,
    }
}

/// Fuzzing entry point: decodes the group header at the start of `bytes`; whether it decoded
/// (an all-zero header, the end of a segment's groups, does not count).
///
/// Input shorter than a group header (32 bytes) is answered here with `false`, without calling
/// the decoder: `GroupHeader::decode` slices its first 32 bytes and panics on shorter input
/// today. Drop this guard once the decoder checks the length itself.
pub fn decode_group_header(bytes: &[u8]) -> bool {
    if bytes.len() < crate::constants::GROUP_HEADER_BYTES {
        return false;
    }
    crate::record::GroupHeader::decode(bytes).is_ok()
}

/// Fuzzing entry point: decodes the segment header block at the start of `bytes`; whether it
/// decoded (an all-zero block, a prepared segment never used, does not count).
///
/// Input shorter than the header block (4096 bytes) is answered here with `false`, without
/// calling the decoder: `SegmentHeader::decode` slices its first 4096 bytes and panics on
/// shorter input today (recovery checks the length before calling it). Drop this guard once the
/// decoder checks the length itself.
pub fn decode_segment_header(bytes: &[u8]) -> bool {
    if bytes.len() < crate::constants::SEGMENT_HEADER_BYTES {
        return false;
    }
    matches!(crate::segment::SegmentHeader::decode(bytes), Ok(Some(_)))
}
