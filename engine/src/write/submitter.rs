//! The submitter: the single thread that orders, encodes, writes and acknowledges appends.
//!
//! Loop: reap finished I/O and publish the durable watermark in log order (with the locations of
//! each durable group, added to the readers' stream table under one write lock, and a checkpoint
//! requested every so often); pop up to `DRAIN_BATCH_APPENDS` requests; check each expected
//! version against the submitter's own version table (the single serialization point; no lock,
//! readers never touch it), give it positions and versions, seal its records into the current
//! group's buffer, remembering each record's stream and place in the group; submit the group when the pipeline has room (at once when nothing is
//! in flight, once it holds `busy_group_bytes_min` bytes otherwise); sleep on the ring when the
//! queue is empty and I/O is in flight, park when idle.
//!
//! Invariants:
//! - A group is one write, starts on a 4 KiB boundary and is padded with zeros to the next one;
//!   no block holding records is ever written twice.
//! - An append lies wholly in one group; groups never span segments.
//! - Groups are acknowledged (watermark advanced) strictly in submission order, each only once
//!   it and all earlier groups are durable. A failed write or sync poisons the store: the
//!   watermark never moves again.
//! - Before the first write into a new segment, every group of the previous one is durable
//!   (rollover barrier), so a torn tail can only be in the last segment.
//! - Buffers (`pool`) are allocated at start; the kernel owns a slot's buffer from submit until
//!   its completion is reaped, and the pool is dropped only after every completion came back.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::buffer::{round_up_block, AlignedBuf};
use crate::constants::*;
use crate::error::{Error, Result};
use crate::lock::DirLock;
use crate::log::checkpoint::{self, Checkpointer};
use crate::log::index::{pack_location, GroupLocation, Locations, SegmentSummary, VersionTable};
use crate::log::record::{self, GroupHeader};
use crate::log::recovery::Recovered;
use crate::log::segment::{self, Preparer, PreparerConfig, SegmentHeader};
use crate::shared::{Shared, AWAKE, IDLE, IO_WAIT, LINGERING};
use crate::write::io::{portable::PortableIo, uring::UringIo, Completion, FaultyIo, GroupWrite, IoBackend, Stage};
use crate::write::lane::{EntryHeader, EntryKind, Lane};
use crate::{platform, Backend, ExpectedVersion, SyncMode};

/// Hints the CPU to load the cache line at `address`; a no-op where there is no such hint.
#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is only a hint; it never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// How far ahead of the entry being placed the drain prefetches ring lines: a few entries of
/// small events, so that several of the misses (the producer wrote those lines on its core)
/// are in flight at once. Prefetching past the published tail only warms lines; it never faults.
const PREFETCH_AHEAD_BYTES: usize = 512;

/// Idle polling (`Submitter::idle_poll`): after a group of at most this many appends...
const IDLE_POLL_APPENDS_MAX: u64 = 8;
/// ...the submitter spins up to this long for the next append that someone waits on...
const IDLE_POLL_NS: u64 = 100_000;
/// The longest the submitter spins for the completion of a small group (`Submitter::poll_io`)
/// before it sleeps until it.
const IO_POLL_NS: u64 = 500_000;

/// Bookkeeping of one buffer of the pool.
#[derive(Default, Clone)]
struct Slot {
    /// Bytes used: group header plus records.
    len: usize,
    first_position: u64,
    end_position: u64,
    events: u32,
    appends: u64,
    payload_bytes: u64,
    segment: u64,
    offset: u64,
    padded: usize,
    done: Option<std::result::Result<(), (Stage, i32)>>,
    /// Per record placed in this group: its stream id and its byte offset in the group. Added
    /// to the readers' table when the group becomes durable. Cleared, not freed, per group.
    placed: Vec<(u32, u32)>,
}

struct ActiveSegment {
    number: u64,
    file: File,
    /// Its size, from its header: a segment recovered from a run with other options keeps it.
    bytes: u64,
    /// Where the next group starts.
    write_offset: u64,
    /// Groups this run wrote into it (with `write_offset - taken_at`: their average size, which
    /// decides how `SegmentPrepare::Auto` prepares the next segment).
    groups: u64,
    /// `write_offset` when this run took the segment (a reopened store's active segment may be
    /// part full): the next segment is asked for by what this run writes, not by what an earlier
    /// run left, or every short session would prepare a segment the next open deletes.
    taken_at: u64,
}

struct Submitter {
    shared: Arc<Shared>,
    /// Declared before `pool` so it is dropped first: the ring must be gone before the buffers
    /// it may reference.
    io: Box<dyn IoBackend>,
    pool: Vec<AlignedBuf>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Submitted slots in log order.
    in_flight: VecDeque<usize>,
    /// Submitted slots whose completion has not been reaped.
    outstanding: usize,
    current: Option<usize>,
    segment: Option<ActiveSegment>,
    preparer: Option<Preparer>,
    next_position: u64,
    /// Stream id -> next version, for the expected-version checks; only this thread uses it.
    versions: VersionTable,
    /// Bytes of log made durable since the last checkpoint was requested.
    since_checkpoint: u64,
    checkpointer: Option<Checkpointer>,
    /// Log end of the last submitted group.
    submitted_end: u64,
    next_seq: u64,
    /// Every lane (producer queue) of the store, with where this thread is in each.
    lanes: Vec<LaneCursor>,
    /// The lane the next drain starts at (round-robin, so no lane starves the others).
    lane_start: usize,
    /// When the open group got its first append (`platform::monotonic_ns`): its linger time
    /// counts from there.
    opened_ns: u64,
    /// An append was refused since the waiters were last woken.
    refused: bool,
    completions: Vec<Completion>,
    sync: SyncMode,
    depth: usize,
    group_bytes_max: usize,
    busy_group_bytes_min: usize,
    linger_ns: u64,
    polling: bool,
    /// `Options::poll_small_writes` (and not `polling`, which spins everywhere).
    poll_small_writes: bool,
    /// When to spin for the next append instead of sleeping (see `Submitter::idle_poll`).
    idle_poll: IdlePoll,
}

/// The idle-polling policy: poll once after each small group is published (at most
/// `IDLE_POLL_APPENDS_MAX` appends), but after `n` polls in a row that found nothing, skip the
/// next `2^n - 1` chances (at most 63): a caller that comes back within `IDLE_POLL_NS` keeps
/// the submitter polling; one that does not soon stops costing it anything.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct IdlePoll {
    armed: bool,
    misses: u32,
    skip: u32,
}

impl IdlePoll {
    /// A group of `appends` appends was published.
    fn published(&mut self, appends: u64) {
        self.armed = appends <= IDLE_POLL_APPENDS_MAX;
    }

    /// Whether the coming sleep polls first (once per arming).
    fn due(&mut self) -> bool {
        if !std::mem::take(&mut self.armed) {
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    fn found(&mut self) {
        self.misses = 0;
    }

    fn missed(&mut self) {
        self.misses = (self.misses + 1).min(6);
        self.skip = (1 << self.misses) - 1;
    }
}

/// The submitter's place in one lane.
struct LaneCursor {
    lane: Arc<Lane>,
    /// Where the next entry starts (the submitter alone moves the lane's head).
    head: u64,
    /// The sequence number of the lane's next append.
    seq: u64,
    /// Log end of this lane's last placed append.
    end: u64,
    /// The stream (hash, id) of this lane's last placed append: a producer's run of appends to
    /// one stream skips the table probe.
    last_stream: Option<(u64, u32)>,
    /// When the appends waiting in the lane that nobody waits for yet started to wait
    /// (monotonic ns, see `first_seen`; 0: none seen). They are drained once `linger` has passed
    /// since.
    pending_since_ns: u64,
    /// When the submitter last drained the lane empty (monotonic ns; 0: never): what it finds
    /// there later was published after that.
    drained_ns: u64,
}

impl LaneCursor {
    /// When the appends waiting in the lane, seen for the first time at `now`, started to wait:
    /// the start of the producer's run, stamped as it published into the empty lane (never
    /// before the last time the lane was drained empty: a stamp can be a run's older than that).
    fn first_seen(&self, now: u64) -> u64 {
        match self.lane.run_started_ns().max(self.drained_ns) {
            0 => now,
            since => since.min(now),
        }
    }
}

/// Whether a lane with appends up to `tail` must be drained at once rather than at the end of
/// its linger: someone waits for one of its unplaced appends, or its ring is over half full
/// (its producer rings the doorbell then too, see `Producer::half_full`).
fn lane_urgent(cursor: &LaneCursor, tail: u64) -> bool {
    ring_half_full(cursor, tail) || cursor.lane.awaited(cursor.seq)
}

/// Whether a lane with appends up to `tail` holds over half its ring undrained.
fn ring_half_full(cursor: &LaneCursor, tail: u64) -> bool {
    tail - cursor.head > cursor.lane.capacity() as u64 / 2
}

/// Whether the segment after `segment` should be zeroed under `SegmentPrepare::Auto`: while
/// this run's groups in it average under `AUTO_FALLOCATE_GROUP_BYTES` (small writes, where a
/// sync that converts extents costs most); large groups write near the disk's bandwidth, and
/// zeroing would write every byte twice.
fn zero_next(segment: &ActiveSegment) -> bool {
    let written = segment.write_offset - segment.taken_at;
    segment.groups == 0 || written / segment.groups < AUTO_FALLOCATE_GROUP_BYTES
}

/// Starts the submitter thread. The I/O backend is created on that thread (io_uring single
/// issuer); its setup error comes back here.
///
/// The thread owns the directory lock and releases it only as it exits, after its last write:
/// whoever drops the last `Store` (even this very thread, from a waker), no second store can
/// open the directory while this one may still write.
pub(crate) fn start(shared: Arc<Shared>, recovered: Recovered, lock: DirLock) -> Result<JoinHandle<()>> {
    let (ready_sender, ready_receiver) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("evstore-submitter".into())
        .spawn(move || {
            let _lock = lock;
            SUBMITTER_OF.with(|of| of.set(Arc::as_ptr(&thread_shared) as usize));
            raise_priority();
            match Submitter::new(thread_shared.clone(), recovered) {
                Ok(submitter) => {
                    let _ = ready_sender.send(Ok(()));
                    let _guard = StopGuard(thread_shared.clone());
                    submitter.run();
                }
                Err(e) => {
                    thread_shared.stopped.store(true, Ordering::SeqCst);
                    let _ = ready_sender.send(Err(e));
                }
            }
        })
        .map_err(|e| Error::io("spawning the submitter thread", e))?;
    let _ = shared.submitter_thread.set(handle.thread().clone());
    match ready_receiver.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => {
            let _ = handle.join();
            Err(Error::Poisoned { cause: "the submitter thread died during start".into() })
        }
    }
}

thread_local! {
    /// On a submitter thread: the address of its store's `Shared` (0 elsewhere).
    static SUBMITTER_OF: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether the calling thread is `shared`'s submitter (a waker polling its task inline), which
/// must never wait for itself. A thread-local read: cheaper than comparing thread handles on
/// every append.
#[inline]
pub(crate) fn on_submitter_of(shared: &Arc<Shared>) -> bool {
    SUBMITTER_OF.with(|of| of.get() == Arc::as_ptr(shared) as usize)
}

/// Makes a panicking submitter look like a failed store instead of a silent one: without it,
/// producers would keep queueing appends (and then block on a full queue) and waiters would sleep
/// forever, since nothing else would ever publish or wake them.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stopped.store(true, Ordering::SeqCst);
            self.0.lanes.stop();
            self.0.poison("the submitter thread panicked (a bug in evstore; please report it)".into());
        }
    }
}

/// Nice value asked for the submitter thread.
const SUBMITTER_NICE: libc::c_int = -10;

/// The submitter is the one serialization point: with more producer threads than cores, a fair
/// scheduler would give it only its 1/(producers + 1) share. Ask for a higher priority; without
/// CAP_SYS_NICE the kernel says no, and the store works the same, only slower under overload.
fn raise_priority() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority on our own thread id; failure is reported through the return value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, SUBMITTER_NICE) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise the submitter's priority");
    }
}

fn make_backend(shared: &Shared, pool: &[AlignedBuf]) -> Result<Box<dyn IoBackend>> {
    let options = &shared.options;
    let slots = pool.len();
    let denied = options.faults.as_ref().and_then(|f| f.io_uring_errno());
    let uring = || -> std::result::Result<UringIo, i32> {
        if let Some(errno) = denied {
            return Err(errno);
        }
        let buffers: Vec<(*const u8, usize)> = pool.iter().map(|b| (b.as_ptr(), b.capacity())).collect();
        UringIo::new(slots, &buffers).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
    };
    let (backend, chosen): (Box<dyn IoBackend>, Backend) = match options.backend {
        Backend::Portable => (Box::new(PortableIo::default()), Backend::Portable),
        Backend::IoUring => match uring() {
            Ok(ring) => (Box::new(ring), Backend::IoUring),
            Err(errno) => return Err(Error::IoUringUnavailable { errno }),
        },
        Backend::Auto => match uring() {
            Ok(ring) => (Box::new(ring), Backend::IoUring),
            Err(errno) => {
                tracing::warn!(
                    errno,
                    error = %std::io::Error::from_raw_os_error(errno),
                    "io_uring unavailable; falling back to the portable pwrite + fdatasync backend"
                );
                (Box::new(PortableIo::default()), Backend::Portable)
            }
        },
    };
    let _ = shared.backend.set(chosen);
    Ok(match &options.faults {
        Some(plan) => Box::new(FaultyIo::new(backend, plan.clone())),
        None => backend,
    })
}

impl Submitter {
    fn new(shared: Arc<Shared>, recovered: Recovered) -> Result<Submitter> {
        let options = shared.options.clone();
        let depth = options.groups_in_flight_max;
        // One buffer per group in flight, plus the one being filled.
        let pool: Vec<AlignedBuf> = (0..=depth).map(|_| AlignedBuf::new(options.group_bytes_max)).collect();
        let io = make_backend(&shared, &pool)?;
        // A segment is only ever written with a pipeline window no larger than the one its header
        // names: recovery judges a segment's torn tail by that window (and the options of the
        // open that recovers it), so a larger window here could leave groups of this run outside
        // what a later recovery looks at. With a larger window, the store moves to a new segment.
        let window_grew = recovered.active.as_ref().is_some_and(|active| {
            active.groups_in_flight_max < options.groups_in_flight_max
                || active.group_bytes_max < options.group_bytes_max
        });
        let segment = match recovered.active {
            Some(active) => Some(ActiveSegment {
                number: active.number,
                file: segment::open_for_write(&segment::segment_path(&shared.dir, active.number), shared.direct)?,
                bytes: active.segment_bytes,
                write_offset: active.write_offset,
                taken_at: active.write_offset,
                groups: 0,
            }),
            None => None,
        };
        let versions = VersionTable::from_streams(&recovered.streams);
        {
            *shared.index.write_streams() = recovered.streams;
            *shared.index.groups.write().unwrap_or_else(std::sync::PoisonError::into_inner) = recovered.groups;
            *shared.index.log_segments() = recovered.segments;
            let state = &shared.index.checkpoints;
            state.covered_position.store(recovered.checkpoint_position.unwrap_or(u64::MAX), Ordering::SeqCst);
            state.file_bytes.store(recovered.checkpoint_bytes, Ordering::SeqCst);
            shared.index.version_table_bytes.store(versions.resident_bytes(), Ordering::Relaxed);
        }
        let checkpointer = if options.checkpoint_log_bytes > 0 && options.sync != SyncMode::None {
            Some(Checkpointer::start(shared.clone())?)
        } else {
            None
        };
        // Records a group of the largest appends can hold, at the smallest record size; grown
        // (and kept) only if groups of smaller records come.
        let placed_capacity = (options.group_bytes_max / 128).min(1 << 16);
        let preparer = Preparer::start(PreparerConfig {
            dir: shared.dir.clone(),
            first_number: recovered.next_segment_number,
            segment_bytes: options.segment_bytes,
            group_bytes_max: options.group_bytes_max,
            grow: options.grow_segments,
            mode: options.segment_prepare,
            direct: shared.direct,
            faults: options.faults.clone(),
        })?;
        let mut submitter = Submitter {
            io,
            slots: (0..pool.len())
                .map(|_| Slot { placed: Vec::with_capacity(placed_capacity), ..Slot::default() })
                .collect(),
            free: (0..pool.len()).rev().collect(),
            pool,
            in_flight: VecDeque::with_capacity(depth),
            outstanding: 0,
            current: None,
            segment,
            preparer: Some(preparer),
            next_position: recovered.next_position,
            versions,
            since_checkpoint: 0,
            checkpointer,
            submitted_end: recovered.next_position,
            next_seq: recovered.next_seq,
            lanes: Vec::with_capacity(LANES_MAX),
            lane_start: 0,
            opened_ns: 0,
            refused: false,
            completions: Vec::with_capacity(depth * 2),
            sync: options.sync,
            depth,
            group_bytes_max: options.group_bytes_max,
            busy_group_bytes_min: options.busy_group_bytes_min,
            linger_ns: options.linger.as_nanos() as u64,
            polling: options.polling,
            poll_small_writes: options.poll_small_writes && !options.polling,
            idle_poll: IdlePoll::default(),
            shared,
        };
        if submitter.segment.is_none() || window_grew {
            // A fresh store (or one whose last segment is full) takes its first segment now, so
            // that `open` returns a store ready to write: otherwise the first append would wait
            // for a whole segment to be pre-zeroed (over 100 ms for 256 MiB here).
            submitter.rollover()?;
        }
        Ok(submitter)
    }

    fn poisoned(&self) -> bool {
        self.shared.poisoned.get().is_some()
    }

    fn run(mut self) {
        loop {
            self.reap(0);
            if self.poisoned() {
                break;
            }
            let placed = self.drain_lanes();
            if self.refused {
                // A refused append moves no watermark: its waiter must be woken here, or it
                // sleeps until some later group happens to be published.
                self.refused = false;
                self.shared.wake_waiters(false);
            }
            if self.maybe_submit() || placed > 0 {
                continue;
            }
            if !self.in_flight.is_empty() {
                // Nothing to place or submit, groups in flight: let the disk work.
                if self.polling {
                    std::thread::yield_now();
                } else {
                    self.sleep_on_io();
                }
            } else if self.current.is_none() && self.shared.closing.load(Ordering::SeqCst) && self.lanes_drained() {
                break;
            } else {
                self.sleep();
            }
        }
        // The kernel may still hold buffers of the pool: wait for every completion.
        while self.outstanding > 0 {
            if !self.reap(1) {
                break;
            }
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        if !self.poisoned() && self.outstanding == 0 && self.in_flight.is_empty() {
            self.write_close_marker();
            // The last checkpoint, covering the whole log: the next open reads it and scans
            // nothing but the close marker. Still under the directory lock.
            if let Err(error) = checkpoint::write(&self.shared) {
                tracing::warn!(%error, "could not write the index checkpoint at close");
            }
        }
        self.shared.index.checkpoints.close();
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Producers waiting in the order table for an append this thread will never place now
        // give up waiting (write/lane.rs); without it they spin forever on a poisoned store.
        self.shared.lanes.stop();
        self.shared.wake_waiters(true);
        if let Some(preparer) = self.preparer.take() {
            preparer.stop();
        }
    }

    /// Marks the clean end of the log (see `record::EndMarker`): every group is durable, so
    /// recovery may treat damage in the last groups as damage rather than as a torn write. Best
    /// effort: without it (a failed write, `SyncMode::None`), recovery falls back to the
    /// crash-window rule, and nothing acknowledged depends on it.
    fn write_close_marker(&mut self) {
        let Some(segment) = &self.segment else { return };
        if self.sync == SyncMode::None {
            return;
        }
        let marker = record::EndMarker {
            kind: record::MarkerKind::Closed,
            next_seq: self.next_seq,
            next_position: self.next_position,
            value: platform::now_us(),
        };
        if let Err(error) = self.write_block(&segment.file, segment.number, segment.write_offset, |b| marker.encode(b))
        {
            tracing::warn!(segment = segment.number, %error, "could not write the close marker");
        }
    }

    /// Writes one block (a segment header or an end marker) at `offset` of segment `number`,
    /// synchronously, and makes it durable (but with `SyncMode::None`). Only while no group is in
    /// flight: it borrows a free buffer of the pool.
    fn write_block(
        &self,
        file: &File,
        number: u64,
        offset: u64,
        encode: impl FnOnce(&mut [u8]),
    ) -> std::io::Result<()> {
        debug_assert!(self.in_flight.is_empty());
        let slot = *self.free.last().expect("a free buffer while nothing is in flight");
        // SAFETY: no write is in flight (so the kernel holds no buffer of the pool), and this
        // thread is the pool's only user: nothing else reads or writes this buffer meanwhile.
        let block = unsafe { std::slice::from_raw_parts_mut(self.pool[slot].as_ptr() as *mut u8, BLOCK_BYTES) };
        block.fill(0);
        encode(block);
        // Tests' I/O journal (testing.rs): issued here, durable once its sync returned.
        let faults = self.shared.options.faults.as_ref();
        let journal_id = faults.and_then(|f| f.record_write(number, offset, block));
        file.write_all_at(block, offset)?;
        if self.sync != SyncMode::None {
            file.sync_data()?;
            if let (Some(plan), Some(id)) = (faults, journal_id) {
                plan.record_durable(id);
            }
        }
        Ok(())
    }

    /// Sleeps until a producer rings (see `Shared::ring_doorbell`): lingering on the open group
    /// and on appends left in their lanes until the first linger time is up (only a caller that
    /// starts waiting, or a half-full ring, cuts that short), or idle. The sleeping state is stored (SeqCst) before the last look at the
    /// lanes, and producers store their tail (SeqCst) before they look at the state: either this
    /// thread sees their append, or they see it asleep and wake it.
    fn sleep(&mut self) {
        if self.polling {
            std::thread::yield_now();
            return;
        }
        let shared = self.shared.clone();
        let group_deadline = self.current.map(|_| self.opened_ns.saturating_add(self.linger_ns));
        let lanes_pending = self.lanes.iter().any(|cursor| cursor.pending_since_ns != 0);
        let state = if group_deadline.is_some() || lanes_pending { LINGERING } else { IDLE };
        if state == IDLE && self.poll_small_writes && self.idle_poll.due() && self.idle_poll() {
            return;
        }
        shared.submitter_sleeping.store(state, Ordering::SeqCst);
        let (urgent, lane_deadline) = self.look_at_lanes();
        // Idle, but appends came in: look again lingering (producers do not ring for each one).
        // Lingering on nothing (those appends were drained): look again idle.
        let restate = (state == IDLE) == lane_deadline.is_some() && group_deadline.is_none();
        let wanted = urgent
            || restate
            || (group_deadline.is_some() && self.blocked_caller_pending(false))
            || shared.closing.load(Ordering::SeqCst);
        let timeout = match group_deadline.into_iter().chain(lane_deadline).min() {
            Some(deadline) => std::time::Duration::from_nanos(deadline.saturating_sub(platform::monotonic_ns())),
            // Only a safety net: producers ring after each append while the submitter is idle.
            None => std::time::Duration::from_millis(100),
        };
        if !wanted && !timeout.is_zero() {
            platform::futex_wait(&shared.submitter_sleeping, state, timeout);
        }
        shared.submitter_sleeping.store(AWAKE, Ordering::SeqCst);
    }

    /// Spins (staying `AWAKE`, so producers do not ring) for up to `IDLE_POLL_NS` until a lane
    /// is due at once (a caller waits on it, or its ring is half full) or the store closes.
    /// Returns whether one is; otherwise the caller sleeps as usual.
    ///
    /// Why: a caller that appends one event and waits, again and again, finds the submitter
    /// asleep each time, and waking a halted vCPU costs this machine 20-50 us, a fifth of such a
    /// round trip (docs/results.md). Polling only after a small group, and less and less often
    /// while polls find nothing, keeps the spin to callers that come back that quickly: a
    /// producer of long runs, or one appending now and then, does not pay for it.
    fn idle_poll(&mut self) -> bool {
        let end = platform::monotonic_ns().saturating_add(IDLE_POLL_NS);
        loop {
            // A yield, not a bare spin: the caller this thread just woke may have been queued
            // on this core, and a spin at this thread's raised priority kept it waiting.
            std::thread::yield_now();
            if self.a_lane_is_urgent() || self.shared.closing.load(Ordering::SeqCst) || self.poisoned() {
                self.idle_poll.found();
                return true;
            }
            if platform::monotonic_ns() >= end {
                self.idle_poll.missed();
                return false;
            }
        }
    }

    /// Sleeps until a write completes, or a caller starts waiting on an append of the open group
    /// (or of a lane), or a ring is half full: so the next group can be written while earlier
    /// ones are in flight, instead of after them. Backends that cannot wait on both wait for a
    /// completion only.
    fn sleep_on_io(&mut self) {
        if self.io_poll_due() && self.poll_io() {
            return;
        }
        let shared = self.shared.clone();
        shared.submitter_sleeping.store(IO_WAIT, Ordering::SeqCst);
        let (urgent, _) = self.look_at_lanes();
        let wanted = urgent
            || (self.current.is_some() && self.in_flight.len() < self.depth && self.blocked_caller_pending(false));
        let slept = if wanted {
            Ok(true)
        } else if shared.closing.load(Ordering::SeqCst) {
            // Closing: nothing more to wait for but the writes in flight (below).
            Ok(false)
        } else {
            self.io.sleep(&shared.submitter_sleeping, IO_WAIT)
        };
        shared.submitter_sleeping.store(AWAKE, Ordering::SeqCst);
        if !matches!(slept, Ok(true)) {
            // No combined wait (or it failed: `reap` then meets and reports the failure).
            self.reap(1);
        }
    }

    /// Whether to spin for the oldest write's completion (`poll_io`) rather than sleep
    /// (`Options::poll_small_writes`): it is a small group (at most `IDLE_POLL_APPENDS_MAX`
    /// appends), whose callers wait on an append or two at a time, so the wake-up is a large
    /// part of their latency; and no lane holds appends (no producer is appending).
    fn io_poll_due(&self) -> bool {
        self.poll_small_writes
            && self.in_flight.front().is_some_and(|&slot| self.slots[slot].appends <= IDLE_POLL_APPENDS_MAX)
            // A producer in the middle of a run may need this core more than the write does.
            && self.lanes.iter().all(|cursor| cursor.lane.tail() == cursor.head)
    }

    /// Spins (staying `AWAKE`) for up to `IO_POLL_NS` until a write in flight completes (and is
    /// published by `reap`), a lane is due or a caller waits on the open group while the pipeline
    /// has room, or the store closes or is poisoned. Returns whether one of those happened; otherwise the caller sleeps as usual.
    ///
    /// Why: sleeping until a completion costs the wake-up of a halted vCPU (20-50 us here) on top
    /// of the write; polling mode avoids it for every write, this only for small groups.
    fn poll_io(&mut self) -> bool {
        let end = platform::monotonic_ns().saturating_add(IO_POLL_NS);
        let in_flight = self.in_flight.len();
        loop {
            // A yield, not a bare spin: the caller this thread just woke may have been queued
            // on this core, and a spin at this thread's raised priority kept it waiting.
            std::thread::yield_now();
            if self.io.poll().is_err() {
                // `reap`, below or at the next turn, meets the failure and reports it.
                return true;
            }
            if !self.reap(0) || self.in_flight.len() < in_flight || self.poisoned() {
                return true;
            }
            if self.shared.closing.load(Ordering::SeqCst) {
                return true;
            }
            if self.in_flight.len() < self.depth {
                let lane_due = self.a_lane_is_urgent();
                // A caller waiting on an append of the open group (the sleep below would wake
                // for it: this thread, awake, is not rung).
                if lane_due || (self.current.is_some() && self.blocked_caller_pending(false)) {
                    return true;
                }
            }
            if platform::monotonic_ns() >= end {
                return false;
            }
        }
    }

    /// Whether a lane (new ones included) holds appends that are due at once: someone waits on
    /// one of them, or its ring is half full (`lane_urgent`). The polls' exit test.
    fn a_lane_is_urgent(&mut self) -> bool {
        self.refresh_lanes();
        self.lanes.iter().any(|cursor| {
            let tail = cursor.lane.tail.load(Ordering::SeqCst);
            tail != cursor.head && lane_urgent(cursor, tail)
        })
    }

    /// Adds the lanes made since the last look.
    fn refresh_lanes(&mut self) {
        // SeqCst: read after the sleeping state is stored, so a producer on a brand-new lane is
        // seen (as its tail is) or sees the submitter asleep.
        let count = self.shared.lanes.count.load(Ordering::SeqCst);
        if count != self.lanes.len() {
            let mut new = Vec::new();
            self.shared.lanes.snapshot_from(self.lanes.len(), &mut new);
            self.lanes.extend(new.into_iter().map(|lane| LaneCursor {
                lane,
                head: 0,
                seq: 0,
                end: 0,
                last_stream: None,
                pending_since_ns: 0,
                drained_ns: 0,
            }));
        }
    }

    /// Whether every lane is drained (SeqCst: see `sleep`).
    fn lanes_drained(&mut self) -> bool {
        self.refresh_lanes();
        self.lanes.iter().all(|cursor| cursor.lane.tail.load(Ordering::SeqCst) == cursor.head)
    }

    /// Whether a caller blocked on a ticket has an append not yet submitted (in the open group,
    /// or still in its lane): it will not append more until woken, so its appends must go now.
    /// Callers whose appends are all in groups being written already do not count: cutting the
    /// open group short for them would only make groups smaller without shortening any wait.
    /// With `drained`, only lanes whose every append is placed count: the group is then written
    /// with all of the caller's appends, not cut in the middle of its lane.
    ///
    /// Which append a caller waits for is the lane's flush mark: the group is cut only if that
    /// append is in it (placed, at or after the end of what was submitted). A caller waiting for
    /// an append already being written (a waiter thread behind a producer that goes on
    /// appending) lets the open group fill until that write completes.
    fn blocked_caller_pending(&self, drained: bool) -> bool {
        let submitted_end = self.submitted_end;
        self.lanes.iter().any(|cursor| {
            let lane = &cursor.lane;
            if lane.blocked.load(Ordering::SeqCst) == 0 {
                return false;
            }
            let undrained = lane.tail.load(Ordering::SeqCst) != cursor.head;
            let mark = lane.flush_mark.load(Ordering::SeqCst);
            // The awaited append, once placed: is it still unsubmitted?
            let awaited_open = mark > 0
                && mark <= cursor.seq
                && lane.placed_position(mark - 1).is_some_and(|position| position >= submitted_end);
            let awaited_unplaced = mark > cursor.seq;
            if drained {
                !undrained && awaited_open
            } else {
                (undrained && awaited_unplaced) || awaited_open
            }
        })
    }

    /// Places every published append of every lane (up to `DRAIN_LANE_BYTES` of ring per lane,
    /// lanes taken round-robin). Returns the number of appends taken.
    fn drain_lanes(&mut self) -> usize {
        self.refresh_lanes();
        let count = self.lanes.len();
        if count == 0 {
            return 0;
        }
        let start = self.lane_start % count;
        self.lane_start = start + 1;
        let mut taken = 0;
        let mut timestamp_us = None;
        let closing = self.shared.closing.load(Ordering::SeqCst);
        let mut now_ns = None;
        for step in 0..count {
            if self.poisoned() {
                break;
            }
            let index = (start + step) % count;
            let due = self.lane_due(index, &mut now_ns);
            // When its appends started to wait: the open group's age counts from its oldest
            // append (`linger` bounds how long one stays unwritten, in its lane and in the group
            // together).
            let since = self.lanes[index].pending_since_ns;
            let budget = match due {
                // Someone waits on it: all of it, so that its waiter's run of appends is not cut
                // in two by a group that fills up meanwhile (`busy_group_bytes_min`).
                Some(true) => u64::MAX,
                Some(false) => DRAIN_LANE_BYTES,
                None if closing => DRAIN_LANE_BYTES,
                None => continue,
            };
            taken += self.drain_lane(index, budget, &mut timestamp_us);
            if since != 0 && self.current.is_some() {
                self.opened_ns = self.opened_ns.min(since);
            }
        }
        taken
    }

    /// Whether lane `index` has appends to drain now (`Some(true)`: someone waits for one of
    /// them, a blocked caller or a producer ordered behind them; `Some(false)`: its ring is over
    /// half full, or they have waited `linger` since their run started). Otherwise
    /// (`None`) they stay in the ring: a producer's run of appends is placed whole when it
    /// starts waiting, in one group, instead of being cut into the group written for another
    /// producer (which made a third to a half of the seed workload's runs wait for two writes).
    /// `now_ns` is read once per drain.
    fn lane_due(&mut self, index: usize, now_ns: &mut Option<u64>) -> Option<bool> {
        let linger_ns = self.linger_ns;
        let cursor = &mut self.lanes[index];
        let tail = cursor.lane.tail();
        if tail == cursor.head {
            cursor.pending_since_ns = 0;
            return None;
        }
        if cursor.lane.awaited(cursor.seq) {
            return Some(true);
        }
        if linger_ns == 0 || ring_half_full(cursor, tail) {
            return Some(false);
        }
        let now = *now_ns.get_or_insert_with(platform::monotonic_ns);
        if cursor.pending_since_ns == 0 {
            cursor.pending_since_ns = cursor.first_seen(now);
        }
        (now.saturating_sub(cursor.pending_since_ns) >= linger_ns).then_some(false)
    }

    /// Looks at the lanes before sleeping (after the sleeping state is stored): whether one must
    /// be drained now, and the earliest time one's linger ends (appends seen for the first time
    /// start theirs now).
    fn look_at_lanes(&mut self) -> (bool, Option<u64>) {
        self.refresh_lanes();
        let mut now_ns = None;
        let mut urgent = false;
        let mut deadline: Option<u64> = None;
        for cursor in &mut self.lanes {
            let tail = cursor.lane.tail.load(Ordering::SeqCst);
            if tail == cursor.head {
                cursor.pending_since_ns = 0;
                continue;
            }
            urgent |= lane_urgent(cursor, tail);
            if cursor.pending_since_ns == 0 {
                cursor.pending_since_ns = cursor.first_seen(*now_ns.get_or_insert_with(platform::monotonic_ns));
            }
            let end = cursor.pending_since_ns.saturating_add(self.linger_ns);
            deadline = Some(deadline.map_or(end, |d| d.min(end)));
        }
        (urgent, deadline)
    }

    /// Places the appends of lane `index` published so far, up to `budget` bytes of its ring.
    fn drain_lane(&mut self, index: usize, budget: u64, timestamp_us: &mut Option<u64>) -> usize {
        let lane = self.lanes[index].lane.clone();
        let tail = lane.tail();
        let mut head = self.lanes[index].head;
        if head == tail {
            return 0;
        }
        // One clock read per drain: every record of it gets the same timestamp.
        let timestamp_us = *timestamp_us.get_or_insert_with(platform::now_us);
        let budget_end = head.saturating_add(budget);
        let mut taken = 0;
        while head < budget_end && !self.poisoned() {
            let Some((header, body)) = lane.peek(&mut head, tail) else { break };
            let seq = self.lanes[index].seq;
            // SAFETY: the entry is published and consumed only below, after its records are
            // copied into the group.
            let records = unsafe { lane.records(&header, body) };
            // Pull the entries a few hundred bytes on over from the producer's core while this
            // one is placed (a miss per line otherwise: the producer wrote them on its core).
            let ahead = records.as_ptr().wrapping_add(records.len());
            for line in [PREFETCH_AHEAD_BYTES, PREFETCH_AHEAD_BYTES + 64] {
                prefetch(ahead.wrapping_add(line));
            }
            self.place(index, &lane, seq, &header, records, timestamp_us);
            // SAFETY: the entry's records were copied into the group; it is consumed once.
            unsafe { lane.consumed(&header, body) };
            head += header.entry_bytes as u64;
            if header.kind == EntryKind::Indirect {
                // Its heap copy is freed: hand the entry back now, so that the lane's drop (after
                // a panic of this thread, say) cannot free it a second time. Rare and large.
                lane.set_head(head);
            }
            self.lanes[index].seq = seq + 1;
            taken += 1;
        }
        lane.set_head(head);
        let cursor = &mut self.lanes[index];
        cursor.head = head;
        if head == tail {
            // Drained: the linger of whatever comes next starts with its run (`first_seen`).
            cursor.pending_since_ns = 0;
            cursor.drained_ns = platform::monotonic_ns();
        }
        taken
    }

    /// Whether `bytes` more fit in the current group (or a new one) of the active segment.
    fn fits(&self, bytes: usize) -> bool {
        let Some(segment) = &self.segment else { return false };
        let (len, offset) = match self.current {
            Some(slot) => (self.slots[slot].len, self.slots[slot].offset),
            None => (GROUP_HEADER_BYTES, segment.write_offset),
        };
        // The last block of a segment stays free for its end marker (log/record.rs).
        len + bytes <= self.group_bytes_max
            && offset + (round_up_block(len + bytes) + BLOCK_BYTES) as u64 <= segment.bytes
    }

    /// Starts a new group in a free buffer at the active segment's write offset.
    fn open_group(&mut self) -> usize {
        debug_assert!(self.current.is_none());
        let slot = self.free.pop().expect("a free buffer: at most `depth` are in flight");
        let segment = self.segment.as_ref().expect("an active segment");
        let mut placed = std::mem::take(&mut self.slots[slot].placed);
        placed.clear();
        self.slots[slot] = Slot {
            len: GROUP_HEADER_BYTES,
            first_position: self.next_position,
            end_position: self.next_position,
            segment: segment.number,
            offset: segment.write_offset,
            placed,
            ..Slot::default()
        };
        self.current = Some(slot);
        self.opened_ns = platform::monotonic_ns();
        slot
    }

    /// Checks append `seq` of lane `index` (its entry `header`, its unsealed `records`) and
    /// places it in the open group, or refuses it; either way its outcome goes into its result
    /// slot.
    fn place(&mut self, index: usize, lane: &Lane, seq: u64, header: &EntryHeader, records: &[u8], timestamp_us: u64) {
        let bytes = records.len();
        if !self.fits(bytes) {
            // The append does not fit: close the group, or move to a new segment.
            if let Err(error) = self.make_room(bytes) {
                self.refused = true;
                lane.set_failed(seq, error);
                return;
            }
        }
        let stream = &records[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + header.stream_len as usize];
        let events = header.events as u64;
        // One probe of the submitter's own table (none for another append to the lane's last
        // stream); a stream is added only once an append to it is accepted, so stream ids
        // follow the log.
        let id = match self.lanes[index].last_stream {
            Some((hash, id)) if hash == header.hash && self.versions.name(id).as_bytes() == stream => Some(id),
            _ => self.versions.find(header.hash, stream),
        };
        let known = id.map_or(0, |id| self.versions.next_version(id));
        let actual = known.checked_sub(1);
        let ok = match header.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::StreamExists => actual.is_some(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if !ok {
            self.refused = true;
            lane.set_failed(
                seq,
                Error::WrongExpectedVersion {
                    stream: String::from_utf8_lossy(stream).into_owned(),
                    expected: header.expected,
                    actual,
                },
            );
            return;
        }
        let first_version = known;
        // Positions and versions are stored in 48 bits: an append that would go past them is
        // refused (a recovered log may start anywhere below the limit).
        let end_limit = POSITION_MAX + 1;
        let full = if first_version + events > end_limit {
            Some(("stream", end_limit))
        } else if self.next_position + events > end_limit {
            Some(("log", end_limit))
        } else {
            None
        };
        if let Some((what, max)) = full {
            self.refused = true;
            lane.set_failed(seq, Error::LogFull { what, max });
            return;
        }
        let id = match id {
            Some(id) => id,
            None => {
                let name = std::str::from_utf8(stream).expect("a stream id is a &str");
                match self.versions.insert(header.hash, name) {
                    Some(id) => {
                        let resident = self.versions.resident_bytes();
                        self.shared.index.version_table_bytes.store(resident, Ordering::Relaxed);
                        id
                    }
                    None => {
                        self.refused = true;
                        lane.set_failed(seq, Error::LogFull { what: "stream table", max: STREAMS_MAX as u64 });
                        return;
                    }
                }
            }
        };
        let slot = match self.current {
            Some(slot) => slot,
            None => self.open_group(),
        };
        let meta = &mut self.slots[slot];
        let buf = self.pool[slot].as_mut_slice();
        let start = meta.len;
        let first_position = self.next_position;
        let mut at = start;
        for k in 0..events {
            let from = at - start;
            let len = record::seal_into(
                &mut buf[at..],
                &records[from..],
                first_position + k,
                first_version + k,
                timestamp_us,
            );
            // `at` < group_bytes_max <= GROUP_BYTES_LIMIT < 2^32.
            meta.placed.push((id, at as u32));
            at += len;
        }
        debug_assert_eq!(at, start + bytes);
        self.versions.advance(id, events);
        self.next_position += events;
        meta.len += bytes;
        meta.events += header.events;
        meta.end_position = self.next_position;
        meta.appends += 1;
        meta.payload_bytes += (bytes - RECORD_HEADER_BYTES * events as usize) as u64;
        self.lanes[index].end = self.next_position;
        self.lanes[index].last_stream = Some((header.hash, id));
        lane.set_placed(seq, first_position, first_version + events - 1);
    }

    fn make_room(&mut self, bytes: usize) -> Result<()> {
        if self.current.is_some() {
            while self.in_flight.len() >= self.depth {
                self.reap(1);
                if let Some(cause) = self.shared.poisoned.get() {
                    return Err(Error::Poisoned { cause: cause.clone() });
                }
            }
            self.submit_current();
        }
        if !self.fits(bytes) {
            self.rollover()?;
        }
        Ok(())
    }

    /// Submits the open group if the pipeline has room and the group is due: a caller waits on
    /// an append of it (or of a lane: it pushes nothing more until woken), it holds
    /// `busy_group_bytes_min` bytes, its linger time is up, or the store is closing. Returns
    /// whether it did.
    fn maybe_submit(&mut self) -> bool {
        let Some(slot) = self.current else { return false };
        if self.in_flight.len() >= self.depth {
            return false;
        }
        let due = self.slots[slot].len >= self.busy_group_bytes_min
            || self.blocked_caller_pending(true)
            || platform::monotonic_ns().saturating_sub(self.opened_ns) >= self.linger_ns
            || self.shared.closing.load(Ordering::SeqCst);
        if due {
            self.submit_current();
        }
        due
    }

    fn submit_current(&mut self) {
        let Some(slot) = self.current.take() else { return };
        let segment = self.segment.as_mut().expect("an active segment");
        let meta = &mut self.slots[slot];
        let header = GroupHeader {
            seq: self.next_seq,
            first_position: meta.first_position,
            body_bytes: (meta.len - GROUP_HEADER_BYTES) as u32,
            events: meta.events,
        };
        self.next_seq += 1;
        self.submitted_end = meta.end_position;
        let padded = round_up_block(meta.len);
        let buf = self.pool[slot].as_mut_slice();
        header.encode(&mut buf[..GROUP_HEADER_BYTES]);
        // The buffer is reused: clear old bytes in the padding so the tail block is clean.
        buf[meta.len..padded].fill(0);
        meta.padded = padded;
        meta.done = None;
        debug_assert_eq!(meta.offset, segment.write_offset);
        segment.write_offset = meta.offset + padded as u64;
        segment.groups += 1;
        assert!(segment.write_offset + BLOCK_BYTES as u64 <= segment.bytes);
        let quarter = segment.bytes / 4;
        if segment.write_offset - segment.taken_at >= quarter || segment.bytes - segment.write_offset < quarter {
            // A quarter of the segment written by this run, or less than a quarter left: the next
            // segment (up to twice this size) is zeroed while the rest is written, and is ready
            // at the rollover. (Counting from where this run took the segment: a reopened store
            // whose segment was already a quarter full would otherwise prepare one at the first
            // append of every short session, for the next open to delete.)
            let zeroed = zero_next(segment);
            if let Some(preparer) = self.preparer.as_mut() {
                preparer.request(zeroed);
            }
        }
        let write = GroupWrite {
            slot,
            fd: segment.file.as_raw_fd(),
            segment: segment.number,
            buf: self.pool[slot].as_ptr(),
            len: padded,
            offset: meta.offset,
        };
        self.in_flight.push_back(slot);
        match self.io.submit(write, self.sync) {
            Ok(()) => self.outstanding += 1,
            Err(e) => {
                self.slots[slot].done = Some(Err((Stage::Write, e.raw_os_error().unwrap_or(libc::EIO))));
            }
        }
    }

    /// Reaps completions (blocking for `wait_for`) and publishes what became durable.
    /// Returns false if the backend itself failed.
    fn reap(&mut self, wait_for: usize) -> bool {
        self.completions.clear();
        let wait_for = wait_for.min(self.outstanding);
        if let Err(e) = self.io.complete(wait_for, &mut self.completions) {
            self.shared.poison(format!("the I/O backend failed: {e}"));
            // We cannot know what the kernel still holds: leak the pool rather than free it.
            std::mem::forget(std::mem::take(&mut self.pool));
            self.outstanding = 0;
            return false;
        }
        for completion in &self.completions {
            self.outstanding -= 1;
            self.slots[completion.slot].done = Some(completion.result);
            let synced = completion.synced || (self.sync == SyncMode::Dsync && completion.result.is_ok());
            if synced {
                self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut published = false;
        while let Some(&slot) = self.in_flight.front() {
            let Some(result) = self.slots[slot].done else { break };
            if let Err((stage, errno)) = result {
                if !self.poisoned() {
                    let what = if stage == Stage::Write { "write" } else { "sync" };
                    self.shared.poison(format!(
                        "{what} of segment {} at offset {} failed: {}",
                        self.slots[slot].segment,
                        self.slots[slot].offset,
                        std::io::Error::from_raw_os_error(errno)
                    ));
                }
            }
            if !self.poisoned() {
                self.publish(slot);
                published = true;
            }
            self.in_flight.pop_front();
            self.free.push(slot);
        }
        if published {
            self.shared.wake_waiters(false);
        }
        true
    }

    /// Makes a durable group visible: its records' locations in the readers' stream table, the
    /// group in the directory, then `durable_end` and `durable`, all under one write lock of the
    /// stream table (a checkpoint writer reads the three ends under its read lock and must find
    /// them in agreement). The locations go in before the watermarks: a caller whose ticket
    /// resolved finds its events in a stream read.
    fn publish(&mut self, slot: usize) {
        let meta = &self.slots[slot];
        self.idle_poll.published(meta.appends);
        let shared = &self.shared;
        {
            let mut streams = shared.index.write_streams();
            for &(id, at) in &meta.placed {
                let location = pack_location(meta.segment, meta.offset + at as u64);
                if (id as usize) < streams.len() {
                    streams.entry_mut(id).locations.push(location);
                } else {
                    // Stream ids are given in log order and groups published in log order: a
                    // new stream is always the next id.
                    streams.push_new(id, self.versions.name(id).clone(), Locations::from_slice(&[location]));
                }
            }
            if shared.index.recent.wanted() {
                // Subscriptions read this group in the next microseconds: from memory, not
                // from the disk that O_DIRECT left it on (log/recent.rs).
                shared.index.recent.push(meta.segment, meta.offset, &self.pool[slot].as_slice()[..meta.len]);
            }
            shared.index.groups.write().unwrap_or_else(std::sync::PoisonError::into_inner).push(GroupLocation {
                first_position: meta.first_position,
                segment: meta.segment,
                offset: meta.offset,
            });
            // Before `durable`: a reader that sees a position as durable finds its location below
            // the durable end too.
            shared.durable_end.store(pack_location(meta.segment, meta.offset + meta.padded as u64), Ordering::SeqCst);
            shared.published_ns.store(platform::monotonic_ns(), Ordering::Relaxed);
            // SeqCst pairs with the waiters' SeqCst store of `wakers_waiting` (see shared.rs).
            shared.durable.store(meta.end_position, Ordering::SeqCst);
        }
        let c = &shared.counters;
        c.events.fetch_add(meta.events as u64, Ordering::Relaxed);
        c.appends.fetch_add(meta.appends, Ordering::Relaxed);
        c.groups.fetch_add(1, Ordering::Relaxed);
        c.disk_bytes.fetch_add(meta.padded as u64, Ordering::Relaxed);
        c.record_bytes.fetch_add((meta.len - GROUP_HEADER_BYTES) as u64, Ordering::Relaxed);
        c.payload_bytes.fetch_add(meta.payload_bytes, Ordering::Relaxed);
        self.since_checkpoint += meta.padded as u64;
        // Normally at a rollover (below); this only for segments much larger than the interval.
        self.maybe_checkpoint(2);
    }

    /// Asks the checkpointer for a checkpoint once `factor` intervals of log became durable
    /// since the last request. The interval is `checkpoint_log_bytes`, or the size of the last
    /// checkpoint if larger: checkpoints never write more than the log does.
    fn maybe_checkpoint(&mut self, factor: u64) {
        let Some(checkpointer) = &self.checkpointer else { return };
        let index = &self.shared.index;
        let due = self.shared.options.checkpoint_log_bytes.max(index.checkpoints.file_bytes.load(Ordering::Relaxed));
        if self.since_checkpoint >= due.saturating_mul(factor) {
            self.since_checkpoint = 0;
            checkpointer.request();
        }
    }

    /// Moves to the next prepared segment once every group of the current one is durable.
    fn rollover(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.reap(1);
            if let Some(cause) = self.shared.poisoned.get() {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
        }
        let preparer = self.preparer.as_mut().expect("preparer runs while the submitter does");
        let lost = || Error::Poisoned { cause: "the segment preparer thread stopped".into() };
        // A failure may be stale (prepared before space was freed): one more receive is a fresh try.
        let zeroed = self.segment.as_ref().is_none_or(zero_next);
        let prepared = match preparer.take(zeroed).map_err(|_| lost())? {
            Ok(prepared) => prepared,
            Err(_) => preparer.take(zeroed).map_err(|_| lost())??,
        };
        if prepared.number > SEGMENT_NUMBER_MAX {
            // Locations hold 24 bits of segment number. The file is unused: the next open
            // removes it.
            return Err(Error::LogFull { what: "segment numbering", max: SEGMENT_NUMBER_MAX + 1 });
        }
        let header = SegmentHeader {
            number: prepared.number,
            first_position: self.next_position,
            segment_bytes: prepared.bytes,
            created_us: platform::now_us(),
            groups_in_flight_max: self.depth as u32,
            group_bytes_max: self.group_bytes_max as u32,
        };
        // The header first, durable; then the marker in the segment that ends here, durable; only
        // then groups in the new segment (log/recovery.rs relies on this order: a "continued" marker
        // proves the next header was written, and no group of the next segment exists without it).
        tracing::debug!(
            segment = prepared.number,
            first_position = self.next_position,
            "rolling over to a new segment"
        );
        let written =
            self.write_block(&prepared.file, prepared.number, 0, |block| header.encode(block)).and_then(|()| {
                let Some(previous) = &self.segment else { return Ok(()) };
                let marker = record::EndMarker {
                    kind: record::MarkerKind::Continued,
                    next_seq: self.next_seq,
                    next_position: self.next_position,
                    value: prepared.number,
                };
                self.write_block(&previous.file, previous.number, previous.write_offset, |block| marker.encode(block))
            });
        if let Err(e) = written {
            let cause = format!("starting segment {} failed: {e}", prepared.number);
            self.shared.poison(cause.clone());
            return Err(Error::Poisoned { cause });
        }
        // Nothing after the header write can fail: readers map the segment when they first need
        // it (log/index.rs), so a failed mapping (RLIMIT_AS, ENOMEM) fails a read, never a rollover
        // that would leave a used, empty segment behind for each append that tried.
        self.shared.counters.segments.fetch_add(1, Ordering::Relaxed);
        {
            let mut segments = self.shared.index.log_segments();
            if let (Some(previous), Some(summary)) = (&self.segment, segments.last_mut()) {
                debug_assert_eq!(summary.number, previous.number);
                summary.end_offset = previous.write_offset;
            }
            segments.push(SegmentSummary {
                number: prepared.number,
                created_us: header.created_us,
                first_position: self.next_position,
                first_seq: self.next_seq,
                end_offset: 0,
            });
        }
        self.segment = Some(ActiveSegment {
            number: prepared.number,
            file: prepared.file,
            bytes: prepared.bytes,
            write_offset: SEGMENT_HEADER_BYTES as u64,
            taken_at: SEGMENT_HEADER_BYTES as u64,
            groups: 0,
        });
        // The segment just left is finished and never written again: a checkpoint taken now
        // covers it whole, and a recovery after a crash scans from its end on.
        self.maybe_checkpoint(1);
        Ok(())
    }
}

#[cfg(test)]
mod idle_poll_tests {
    use super::{IdlePoll, IDLE_POLL_APPENDS_MAX};

    #[test]
    fn polls_once_per_small_group_and_backs_off_while_polls_find_nothing() {
        let mut policy = IdlePoll::default();
        assert!(!policy.due(), "nothing published yet");
        policy.published(IDLE_POLL_APPENDS_MAX + 1);
        assert!(!policy.due(), "a large group does not arm it");
        policy.published(1);
        assert!(policy.due());
        assert!(!policy.due(), "once per publication");

        // Misses in a row skip 1, 3, 7, ... chances, up to 63.
        for (misses, skipped) in [(1, 1), (2, 3), (3, 7), (4, 15), (5, 31), (6, 63), (7, 63)] {
            policy.missed();
            for _ in 0..skipped {
                policy.published(1);
                assert!(!policy.due(), "after {misses} misses");
            }
            policy.published(1);
            assert!(policy.due(), "after {misses} misses, {skipped} chances skipped");
        }

        // One poll that finds an append resets the count: the next miss skips one chance.
        policy.found();
        policy.missed();
        policy.published(1);
        assert!(!policy.due());
        policy.published(1);
        assert!(policy.due());
    }
}
