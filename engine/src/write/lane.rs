//! Lanes: the bounded queues between producers and the submitter, one per producer handle.
//!
//! A lane is a single-producer, single-consumer ring of bytes (`queue_bytes`, allocated when
//! the lane is made) plus a ring of `LANE_RESULT_SLOTS` result slots. A producer (a `Store`
//! clone, through its `Local`) validates an append, encodes its records straight into the
//! ring (header and body CRC32C on the producer's core; position, version and timestamp are
//! sealed by the submitter) and publishes the ring's tail: no allocation, no reference count
//! shared with other producers, no queue tail shared with other cores per append. The submitter
//! drains every lane, places each append in the open group and writes its outcome into the
//! append's result slot; a ticket reads its outcome there.
//!
//! Ring layout: entries one after another at 32-byte-aligned offsets (offsets are byte counts
//! since the lane was made, taken modulo the capacity). An entry is a 32-byte header
//! ([`EntryHeader`]) then, for an inline append, its unsealed records padded to 32 bytes, or, for
//! an append larger than a quarter of the ring, the address of a heap copy of them (indirect).
//! An entry never wraps: a `Skip` entry fills the end of the ring instead.
//!
//! Invariants:
//! - One producer at a time per lane (`producing`, a spin lock held for one append, nearly
//!   always uncontended: a handle used by one thread). Only the producer moves `tail`, only the
//!   submitter moves `head`; bytes between them belong to the submitter, the rest to the producer.
//! - Appends of one lane are placed in the order they were published: per-stream order from one
//!   producer handle holds. Appends through different handles are ordered only by their tickets
//!   (an append made after another's ticket resolved is placed after it).
//! - The ring never grows: a full ring blocks its producer (backpressure) until the submitter
//!   drains it. Lanes are made on a handle's first append, kept for reuse when it is dropped,
//!   and at most `LANES_MAX` exist; past that, new handles share existing lanes.
//! - Result slot `seq % LANE_RESULT_SLOTS` holds append `seq`'s outcome from when the submitter
//!   placed it until append `seq + LANE_RESULT_SLOTS` is published. A ticket still alive then has
//!   its outcome moved to the lane's `held` map first (by the producer, which waits for the
//!   placement if needed), so no outcome is ever lost, however many tickets a caller keeps.
//!   Failed appends' errors live in `held` while their ticket is alive; a dropped ticket takes
//!   its entry with it.

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_utils::CachePadded;

use crate::constants::*;
use crate::error::Error;
use crate::ExpectedVersion;

/// An entry's bytes in the ring: header and records, padded to 8.
pub(crate) const ENTRY_HEADER_BYTES: usize = 32;
/// Entries start at multiples of this: a skip entry at the end of the ring always has room for
/// a whole header.
const ENTRY_ALIGN: usize = ENTRY_HEADER_BYTES;

/// Entries `held` may keep room for once it is empty again.
const HELD_CAPACITY_KEPT: usize = 64;
/// `position` of a failed append's result slot.
const FAILED: u64 = u64::MAX;
/// `alive` of a slot whose ticket is gone (or never existed).
const FREE: u64 = u64::MAX;
/// Set in `alive` when the submitter stored the append's error in `held`.
const FAIL_BIT: u64 = 1 << 63;
/// `seq` of a result slot being rewritten.
const WRITING: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum EntryKind {
    Inline = 1,
    Indirect = 2,
    Skip = 3,
}

/// The fixed part of an entry. Layout (little-endian): entry bytes u32, kind u8, expected kind
/// u8, stream id length u16, events u32, record bytes u32, stream hash u64, expected version u64.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryHeader {
    pub entry_bytes: u32,
    pub kind: EntryKind,
    pub expected: ExpectedVersion,
    pub stream_len: u16,
    pub events: u32,
    pub record_bytes: u32,
    pub hash: u64,
}

impl EntryHeader {
    #[inline]
    fn encode(&self, out: &mut [u8]) {
        let (expected_kind, expected_value) = match self.expected {
            ExpectedVersion::Any => (0u8, 0u64),
            ExpectedVersion::NoStream => (1, 0),
            ExpectedVersion::StreamExists => (2, 0),
            ExpectedVersion::Exact(v) => (3, v),
        };
        let mut h = [0u8; ENTRY_HEADER_BYTES];
        h[0..4].copy_from_slice(&self.entry_bytes.to_le_bytes());
        h[4] = self.kind as u8;
        h[5] = expected_kind;
        h[6..8].copy_from_slice(&self.stream_len.to_le_bytes());
        h[8..12].copy_from_slice(&self.events.to_le_bytes());
        h[12..16].copy_from_slice(&self.record_bytes.to_le_bytes());
        h[16..24].copy_from_slice(&self.hash.to_le_bytes());
        h[24..32].copy_from_slice(&expected_value.to_le_bytes());
        out[..ENTRY_HEADER_BYTES].copy_from_slice(&h);
    }

    #[inline]
    fn decode(h: &[u8]) -> EntryHeader {
        let u32_at = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(h[at..at + 8].try_into().expect("8 bytes"));
        let kind = match h[4] {
            1 => EntryKind::Inline,
            2 => EntryKind::Indirect,
            _ => EntryKind::Skip,
        };
        let expected = match h[5] {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::NoStream,
            2 => ExpectedVersion::StreamExists,
            _ => ExpectedVersion::Exact(u64_at(24)),
        };
        EntryHeader {
            entry_bytes: u32_at(0),
            kind,
            expected,
            stream_len: u16::from_le_bytes([h[6], h[7]]),
            events: u32_at(8),
            record_bytes: u32_at(12),
            hash: u64_at(16),
        }
    }
}

/// Bytes an append of `record_bytes` takes in a ring of `capacity` bytes, and whether it goes
/// inline.
#[inline]
pub(crate) fn entry_bytes(record_bytes: usize, capacity: usize) -> (usize, bool) {
    let inline = (ENTRY_HEADER_BYTES + record_bytes).next_multiple_of(ENTRY_ALIGN);
    if inline <= capacity / 4 {
        (inline, true)
    } else {
        // An indirect entry holds only its copy's address, but it takes as much of the ring as
        // the largest inline entry: so the ring bounds the heap copies queued too (at most four
        // per lane, each at most an append). At 64 bytes each, a 64 KiB ring held a thousand
        // copies of up to `group_bytes_max` each before its producer felt any backpressure
        // (tests/tests/attack4_large_appends_queue_unbounded_heap_copies.rs).
        debug_assert!(capacity / 4 >= ENTRY_HEADER_BYTES + ENTRY_ALIGN);
        (capacity / 4, false)
    }
}

/// One append's outcome, written by the submitter when it places the append.
#[derive(Default)]
struct ResultSlot {
    /// The append this slot speaks for (`WRITING` while rewritten).
    seq: AtomicU64,
    /// Its first position, or `FAILED`.
    position: AtomicU64,
    /// Its last event's version.
    version: AtomicU64,
}

/// What a ticket learns about its append.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Not placed yet.
    Pending,
    /// Placed at `position` (first event) with `version` (last event); durable once the
    /// watermark passes it.
    Placed {
        position: u64,
        version: u64,
    },
    Failed(Error),
}

/// Outcomes kept aside, by sequence number: (first position, last version), or the error.
type Held = HashMap<u64, Result<(u64, u64), Error>>;

pub(crate) struct Lane {
    ring: Box<[UnsafeCell<u8>]>,
    mask: u64,
    /// Bytes published by producers (only the producer holding `producing` stores it).
    pub(crate) tail: CachePadded<AtomicU64>,
    /// Bytes the submitter has consumed (only the submitter stores it).
    head: CachePadded<AtomicU64>,
    /// Appends placed (or refused) by the submitter: every `seq` below it has its outcome.
    placed: CachePadded<AtomicU64>,
    /// Producer side: held while one append is encoded and published.
    producing: CachePadded<AtomicBool>,
    /// Producer side, under `producing`: the sequence number of the next append.
    next_seq: UnsafeCell<u64>,
    results: Box<[ResultSlot]>,
    /// Per result slot: the sequence number of the live ticket that owns it (with `FAIL_BIT`
    /// once its error is in `held`), or `FREE`. Apart from `results` because the producer and its
    /// tickets write it and the submitter (nearly) never does: kept on the producer's core.
    alive: Box<[AtomicU64]>,
    /// Outcomes moved out of reused result slots, and errors, keyed by sequence number.
    held: Mutex<Held>,
    /// Callers blocked on a ticket of this lane (see the submitter's flush rule).
    pub blocked: AtomicU32,
    /// The flush mark: one more than the highest sequence number a caller blocked on a ticket
    /// of this lane waits for (0: none yet). Only grows. The submitter cuts the open group for
    /// a blocked caller only if that append is in it: a caller waiting for an append already
    /// being written does not make groups smaller.
    pub flush_mark: AtomicU64,
    /// One more than the highest sequence number a producer waits to see placed: one of another
    /// lane (it appends to a stream this lane appended to last; see `Lanes::order`), or this
    /// lane's own, waiting for a result slot (`Producer::claim`). Only grows.
    drain_mark: AtomicU64,
    /// When (monotonic ns) the producer published into this lane while it was empty: the start of
    /// the run of appends the submitter has not seen drained yet. It counts their linger time from
    /// there, not from when it first looks (it does not look while it lingers on another lane).
    run_started_ns: AtomicU64,
    /// Its index in the store's lanes (below `LANES_MAX`).
    pub id: u32,
}

// SAFETY: the ring's bytes and `next_seq` are only touched under the protocol above: the
// producer holding `producing` writes bytes outside [head, tail) and `next_seq`; the submitter
// reads bytes inside [head, tail); `tail`/`head` are stored with Release after those accesses
// and loaded with Acquire before them.
unsafe impl Sync for Lane {}
// SAFETY: the raw pointers of indirect entries are owned heap copies (Box<[u8]>), sendable.
unsafe impl Send for Lane {}

impl Lane {
    pub(crate) fn new(capacity: usize, id: u32) -> Lane {
        assert!(capacity.is_power_of_two() && capacity >= 4 * (ENTRY_HEADER_BYTES + 8));
        Lane {
            ring: (0..capacity).map(|_| UnsafeCell::new(0)).collect(),
            mask: capacity as u64 - 1,
            tail: CachePadded::new(AtomicU64::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            placed: CachePadded::new(AtomicU64::new(0)),
            producing: CachePadded::new(AtomicBool::new(false)),
            next_seq: UnsafeCell::new(0),
            results: (0..LANE_RESULT_SLOTS)
                .map(|_| ResultSlot { seq: AtomicU64::new(WRITING), ..ResultSlot::default() })
                .collect(),
            alive: (0..LANE_RESULT_SLOTS).map(|_| AtomicU64::new(FREE)).collect(),
            held: Mutex::new(HashMap::new()),
            blocked: AtomicU32::new(0),
            flush_mark: AtomicU64::new(0),
            drain_mark: AtomicU64::new(0),
            run_started_ns: AtomicU64::new(0),
            id,
        }
    }

    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.ring.len()
    }

    #[inline]
    fn slot(&self, seq: u64) -> &ResultSlot {
        &self.results[(seq % LANE_RESULT_SLOTS as u64) as usize]
    }

    #[inline]
    fn alive(&self, seq: u64) -> &AtomicU64 {
        &self.alive[(seq % LANE_RESULT_SLOTS as u64) as usize]
    }

    fn lock_held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the submitter has consumed everything published.
    #[cfg(test)]
    fn is_drained(&self) -> bool {
        self.head.load(Ordering::SeqCst) == self.tail.load(Ordering::SeqCst)
    }

    #[inline]
    fn ring_ptr(&self, offset: u64) -> *mut u8 {
        self.ring[(offset & self.mask) as usize].get()
    }

    // ----- producer side -----

    /// Takes the producer side. `spin_only`: give up (None) rather than wait long, for a caller
    /// that must not block (the submitter thread itself).
    #[inline]
    pub(crate) fn produce(&self, spin_only: bool) -> Option<Producer<'_>> {
        let mut spins = 0u32;
        while self.producing.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spin_only && spins > 1000 {
                return None;
            }
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Some(Producer { lane: self, claimed: false, starts_run: false })
    }

    // ----- consumer side (the submitter) -----

    /// The entry at `head`, if one is published. Skip entries are passed over (and `head`
    /// moved past them); returns the header and the offset of its body.
    #[inline]
    pub(crate) fn peek(&self, head: &mut u64, tail: u64) -> Option<(EntryHeader, u64)> {
        loop {
            if *head == tail {
                return None;
            }
            // SAFETY: [head, tail) is published (tail loaded with Acquire by the caller) and no
            // producer writes there until `head` moves past it; an entry never wraps.
            let header =
                unsafe { EntryHeader::decode(std::slice::from_raw_parts(self.ring_ptr(*head), ENTRY_HEADER_BYTES)) };
            if header.kind == EntryKind::Skip {
                *head += header.entry_bytes as u64;
                continue;
            }
            return Some((header, *head + ENTRY_HEADER_BYTES as u64));
        }
    }

    /// The published tail.
    #[inline]
    pub(crate) fn tail(&self) -> u64 {
        self.tail.load(Ordering::Acquire)
    }

    /// The records of the entry whose body starts at `body`.
    ///
    /// # Safety
    /// The entry must be published and not yet released with [`Lane::release`].
    #[inline]
    pub(crate) unsafe fn records(&self, header: &EntryHeader, body: u64) -> &[u8] {
        let len = header.record_bytes as usize;
        match header.kind {
            // SAFETY: the body lies inside the published entry, which does not wrap.
            EntryKind::Inline => unsafe { std::slice::from_raw_parts(self.ring_ptr(body), len) },
            // SAFETY: the producer leaked a Box<[u8]> of `len` bytes there; it is freed only by
            // `consumed` (or the lane's drop), after this borrow ends.
            _ => unsafe { &*self.indirect_copy(header, body) },
        }
    }

    /// The heap copy of the indirect entry whose body starts at `body`.
    fn indirect_copy(&self, header: &EntryHeader, body: u64) -> *mut [u8] {
        let mut address = [0u8; 8];
        // SAFETY: the 8 bytes at an indirect entry's body are its copy's address.
        unsafe { std::ptr::copy_nonoverlapping(self.ring_ptr(body), address.as_mut_ptr(), 8) };
        std::ptr::slice_from_raw_parts_mut(usize::from_le_bytes(address) as *mut u8, header.record_bytes as usize)
    }

    /// The submitter is done with the entry whose body starts at `body`: frees an indirect
    /// entry's heap copy. (Its ring bytes go back to the producer with the next `set_head`.)
    ///
    /// # Safety
    /// Once per entry, after its records are no longer used.
    #[inline]
    pub(crate) unsafe fn consumed(&self, header: &EntryHeader, body: u64) {
        if header.kind == EntryKind::Indirect {
            // SAFETY: made by `Box::into_raw` of a boxed slice of `record_bytes` in
            // `write_indirect`, freed once (the caller's contract).
            drop(unsafe { Box::from_raw(self.indirect_copy(header, body)) });
        }
    }

    /// Hands the ring bytes below `head` back to the producer (once per drain, not per entry:
    /// the producer's core reads `head`).
    #[inline]
    pub(crate) fn set_head(&self, head: u64) {
        self.head.store(head, Ordering::Release);
    }

    /// Records append `seq`'s outcome: placed at `position` with last version `version`.
    #[inline]
    pub(crate) fn set_placed(&self, seq: u64, position: u64, version: u64) {
        let slot = self.slot(seq);
        slot.seq.store(WRITING, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        slot.position.store(position, Ordering::Relaxed);
        slot.version.store(version, Ordering::Relaxed);
        slot.seq.store(seq, Ordering::Release);
        self.placed.store(seq + 1, Ordering::Release);
    }

    /// Records append `seq`'s failure. Its ticket, if alive, finds the error in `held`.
    pub(crate) fn set_failed(&self, seq: u64, error: Error) {
        let slot = self.slot(seq);
        {
            let mut held = self.lock_held();
            if self.alive(seq).compare_exchange(seq, seq | FAIL_BIT, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                held.insert(seq, Err(error));
            }
            slot.seq.store(WRITING, Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Release);
            slot.position.store(FAILED, Ordering::Relaxed);
            // SeqCst: pairs with a waiter's registration (see shared.rs), as the watermark does.
            slot.seq.store(seq, Ordering::SeqCst);
        }
        self.placed.store(seq + 1, Ordering::Release);
    }

    /// Whether someone waits on this lane: a caller blocked on one of its tickets (the lane is
    /// then drained whole, so that its group holds the caller's whole run of appends), or a
    /// producer waiting for an append at or after `placed` (the number of its appends placed so
    /// far): one of another lane ordered behind it, or its own producer waiting for a result
    /// slot. The submitter drains such a lane at once; others wait for their linger time
    /// (write/submitter.rs).
    #[inline]
    pub(crate) fn awaited(&self, placed: u64) -> bool {
        self.blocked.load(Ordering::SeqCst) > 0 || self.drain_mark.load(Ordering::SeqCst) > placed
    }

    /// When the producer last published into this lane while it was empty (0: never).
    #[inline]
    pub(crate) fn run_started_ns(&self) -> u64 {
        self.run_started_ns.load(Ordering::Acquire)
    }

    // ----- tickets -----

    /// Append `seq`'s outcome as known now (for its live ticket).
    #[inline]
    pub(crate) fn outcome(&self, seq: u64) -> Outcome {
        let slot = self.slot(seq);
        let first = slot.seq.load(Ordering::SeqCst);
        if first == seq {
            let position = slot.position.load(Ordering::Relaxed);
            let version = slot.version.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == seq && position != FAILED {
                return Outcome::Placed { position, version };
            }
        } else if first != WRITING && first < seq {
            // The slot still speaks for an earlier append: this one is not placed yet.
            return Outcome::Pending;
        }
        if self.placed.load(Ordering::SeqCst) <= seq {
            return Outcome::Pending;
        }
        // Failed (the error is in `held`), or the slot moved on (the outcome was moved to
        // `held` before that, see `Producer::claim`), or it is being written for this append.
        match self.lock_held().get(&seq) {
            Some(Ok((position, version))) => Outcome::Placed { position: *position, version: *version },
            Some(Err(error)) => Outcome::Failed(error.clone()),
            None => self.outcome_retry(seq),
        }
    }

    /// The slot was caught between two stores: read it again once settled.
    #[cold]
    fn outcome_retry(&self, seq: u64) -> Outcome {
        let slot = self.slot(seq);
        loop {
            if slot.seq.load(Ordering::Acquire) == seq {
                let position = slot.position.load(Ordering::Relaxed);
                let version = slot.version.load(Ordering::Relaxed);
                std::sync::atomic::fence(Ordering::Acquire);
                if slot.seq.load(Ordering::Relaxed) == seq && position != FAILED {
                    return Outcome::Placed { position, version };
                }
            }
            match self.lock_held().get(&seq) {
                Some(Ok((position, version))) => return Outcome::Placed { position: *position, version: *version },
                Some(Err(error)) => return Outcome::Failed(error.clone()),
                None => {}
            }
            std::thread::yield_now();
        }
    }

    /// The first position of append `seq` if it is placed and its result slot still speaks for
    /// it (the submitter's flush rule; an append 4,096 back is long written).
    pub(crate) fn placed_position(&self, seq: u64) -> Option<u64> {
        let slot = self.slot(seq);
        if slot.seq.load(Ordering::Acquire) != seq {
            return None;
        }
        let position = slot.position.load(Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Acquire);
        (slot.seq.load(Ordering::Relaxed) == seq && position != FAILED).then_some(position)
    }

    /// The ticket of append `seq` is dropped.
    #[inline]
    pub(crate) fn release_ticket(&self, seq: u64) {
        let alive = self.alive(seq);
        if alive.compare_exchange(seq, FREE, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            return;
        }
        // Its outcome was moved to `held`, or its error stored there.
        let mut held = self.lock_held();
        held.remove(&seq);
        if held.is_empty() && held.capacity() > HELD_CAPACITY_KEPT {
            // A burst of kept tickets (or of refused appends) is over: give its table back
            // rather than keep its peak size for the lane's life.
            *held = HashMap::new();
        }
        let _ = alive.compare_exchange(seq | FAIL_BIT, FREE, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// Outcomes kept in `held` (tests: nothing leaks).
    #[cfg(test)]
    fn held_len(&self) -> usize {
        self.lock_held().len()
    }

    /// Entries `held` has room for (tests: a burst's table is given back).
    #[cfg(test)]
    fn held_capacity(&self) -> usize {
        self.lock_held().capacity()
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // Entries never consumed (a store poisoned or closed under them) may own heap copies.
        let tail = *self.tail.get_mut();
        let mut head = *self.head.get_mut();
        while let Some((header, body)) = self.peek(&mut head, tail) {
            // SAFETY: each unconsumed entry once, nothing reads it any more.
            unsafe { self.consumed(&header, body) };
            head += header.entry_bytes as u64;
        }
    }
}

/// The producer side of a lane, held for one append.
pub(crate) struct Producer<'a> {
    lane: &'a Lane,
    /// The next append's result slot is claimed ([`Producer::claim`]) and the append not
    /// published yet.
    claimed: bool,
    /// The lane was empty (all drained) when the entry was reserved: its publication starts a run.
    starts_run: bool,
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        if self.claimed {
            // The append was given up after its slot was claimed (refused on the submitter
            // thread, which must not wait for the order table): no ticket will ever release the
            // claim, and the handle's next append (the same sequence number) would find its own
            // slot owned by an append "not placed yet" and wait forever. Free it. An earlier
            // ticket whose outcome the claim moved to `held` still finds it there, and its
            // release (which then fails its first compare-and-swap) removes it.
            self.lane.alive(self.next_seq()).store(FREE, Ordering::Release);
        }
        self.lane.producing.store(false, Ordering::Release);
    }
}

/// Why a producer could not go on without waiting for the submitter.
pub(crate) enum Wait {
    /// The ring has no room for the entry yet.
    Room,
    /// The result slot's previous append is not placed yet.
    Slot,
}

impl Producer<'_> {
    /// The sequence number the next published append gets.
    #[inline]
    pub(crate) fn next_seq(&self) -> u64 {
        // SAFETY: only the holder of `producing` touches `next_seq`.
        unsafe { *self.lane.next_seq.get() }
    }

    /// Makes room for an entry of `bytes` (see [`entry_bytes`]) at the tail, writing a skip
    /// entry over the end of the ring if the entry would wrap. Returns the entry's offset, or
    /// what it waits for.
    #[inline]
    pub(crate) fn reserve(&mut self, bytes: usize) -> Result<u64, Wait> {
        let lane = self.lane;
        let capacity = lane.capacity() as u64;
        let tail = lane.tail.load(Ordering::Relaxed);
        let head = lane.head.load(Ordering::Acquire);
        let to_end = capacity - (tail & lane.mask);
        let skip = if (bytes as u64) > to_end { to_end } else { 0 };
        if tail + skip + bytes as u64 - head > capacity {
            return Err(Wait::Room);
        }
        self.starts_run = tail == head;
        if skip > 0 {
            let header = EntryHeader {
                entry_bytes: skip as u32,
                kind: EntryKind::Skip,
                expected: ExpectedVersion::Any,
                stream_len: 0,
                events: 0,
                record_bytes: 0,
                hash: 0,
            };
            // SAFETY: [tail, tail + skip) is free (checked above) and belongs to the producer;
            // `skip` is a multiple of 32, so the header fits before the end of the ring.
            header.encode(unsafe { std::slice::from_raw_parts_mut(lane.ring_ptr(tail), ENTRY_HEADER_BYTES) });
            // The skip entry is published together with the entry after it.
        }
        Ok(tail + skip)
    }

    /// The ring bytes of the entry reserved at `entry`.
    #[inline]
    pub(crate) fn entry_mut(&mut self, entry: u64, bytes: usize) -> &mut [u8] {
        // SAFETY: reserved by `reserve`: free, not wrapping, owned by the producer until it is
        // published.
        unsafe { std::slice::from_raw_parts_mut(self.lane.ring_ptr(entry), bytes) }
    }

    /// Claims the result slot of the next append for its ticket. If the slot's previous append
    /// still has a live ticket, its outcome is moved to `held` first, which needs that append
    /// placed: `Err(Wait::Slot)` until it is.
    #[inline]
    pub(crate) fn claim(&mut self) -> Result<(), Wait> {
        let lane = self.lane;
        let seq = self.next_seq();
        let slot = lane.slot(seq);
        let alive = lane.alive(seq);
        let old = alive.load(Ordering::Acquire);
        debug_assert!(!self.claimed, "the slot is claimed once per append");
        if old == FREE {
            alive.store(seq, Ordering::Release);
            self.claimed = true;
            return Ok(());
        }
        let old_seq = old & !FAIL_BIT;
        if lane.placed.load(Ordering::Acquire) <= old_seq {
            // This producer waits for its own lane's append `old_seq` to be placed: the lane is
            // awaited (drained now, not at its linger time; the doorbell the caller rings wakes
            // the submitter). Its ring may be far from half full: 4,096 small appends.
            lane.drain_mark.fetch_max(old_seq + 1, Ordering::SeqCst);
            return Err(Wait::Slot);
        }
        let mut held = lane.lock_held();
        let old = alive.load(Ordering::Acquire);
        if old & FAIL_BIT != 0 && old != FREE {
            // Its error is in `held` already; the dropped ticket's cleanup takes `held`'s lock.
            alive.store(seq, Ordering::Release);
        } else if old == old_seq {
            let position = slot.position.load(Ordering::Acquire);
            let version = slot.version.load(Ordering::Acquire);
            debug_assert_eq!(slot.seq.load(Ordering::Acquire), old_seq);
            debug_assert_ne!(position, FAILED);
            held.insert(old_seq, Ok((position, version)));
            if alive.compare_exchange(old_seq, seq, Ordering::AcqRel, Ordering::Acquire).is_err() {
                // Its ticket was dropped meanwhile.
                held.remove(&old_seq);
                alive.store(seq, Ordering::Release);
            }
        } else {
            // Dropped since the first look.
            alive.store(seq, Ordering::Release);
        }
        self.claimed = true;
        Ok(())
    }

    /// Publishes the entry of `bytes` reserved at `entry` (its header and records written) as
    /// the next append. Returns the append's sequence number.
    #[inline]
    pub(crate) fn publish(&mut self, entry: u64, bytes: usize) -> u64 {
        let seq = self.next_seq();
        // SAFETY: only the holder of `producing` touches `next_seq`.
        unsafe { *self.lane.next_seq.get() = seq + 1 };
        self.claimed = false;
        if self.starts_run {
            // Read by the submitter after it loads the tail (Acquire).
            self.lane.run_started_ns.store(crate::platform::monotonic_ns(), Ordering::Release);
        }
        // SeqCst: pairs with the submitter's SeqCst store of its sleeping flag before its last
        // look at the lanes (see `Shared::ring_doorbell`): either it sees this entry, or this
        // producer sees it asleep.
        self.lane.tail.store(entry + bytes as u64, Ordering::SeqCst);
        seq
    }

    /// Whether the ring is more than half full.
    #[inline]
    pub(crate) fn half_full(&self) -> bool {
        let lane = self.lane;
        lane.tail.load(Ordering::Relaxed) - lane.head.load(Ordering::Relaxed) > lane.capacity() as u64 / 2
    }

    /// Writes an entry's header at `entry`.
    #[inline]
    pub(crate) fn write_header(&mut self, entry: u64, header: &EntryHeader) {
        header.encode(self.entry_mut(entry, ENTRY_HEADER_BYTES));
    }

    /// Writes an indirect entry's body: the address of `records`, leaked until the submitter
    /// consumes the entry (or the lane is dropped).
    pub(crate) fn write_indirect(&mut self, entry: u64, records: Box<[u8]>) {
        let ptr = Box::into_raw(records) as *mut u8 as usize;
        self.entry_mut(entry + ENTRY_HEADER_BYTES as u64, 8).copy_from_slice(&(ptr as u64).to_le_bytes());
    }
}

/// Every lane of a store. Lanes are only ever added (at most `LANES_MAX`); a dropped handle's
/// lane waits in `idle` for the next handle.
///
/// Order across lanes (`order`): an append made after another to the same stream returned is
/// placed after it, whatever lanes they went through (two handles used by one thread, an async
/// task moved to another thread). A table of `ORDER_BUCKETS` words, indexed by the stream's
/// hash, holds the lane and sequence number of the last append to a stream of that bucket; an
/// append through another lane first waits until that one is placed, then puts itself there
/// (compare-and-swap, before it is published). By induction along the bucket's history, every
/// append that returned before this one started is placed before it. Appends from one lane to
/// one bucket (the common case: a handle per producer) only touch a cache line their core holds.
pub(crate) struct Lanes {
    all: Mutex<Vec<Arc<Lane>>>,
    /// `all.len()`, for the submitter to notice new lanes without the lock.
    pub count: AtomicUsize,
    /// The lanes by id, for `order`'s look at another lane's placements.
    by_id: Box<[std::sync::OnceLock<Arc<Lane>>]>,
    buckets: Box<[AtomicU64]>,
    idle: Mutex<Vec<Arc<Lane>>>,
    /// Round-robin choice of a lane to share once `LANES_MAX` exist.
    next_shared: AtomicUsize,
    capacity: usize,
    /// The submitter has exited (closed, poisoned, or panicked): nothing will be placed any
    /// more, so `order` must not wait for a placement.
    stopped: AtomicBool,
}

/// Buckets of the cross-lane order table (8 bytes each, allocated at open).
const ORDER_BUCKETS: usize = 1 << 12;
/// An order bucket no append used yet.
const NO_APPEND: u64 = u64::MAX;
/// Bits of an order bucket's word that hold the sequence number (the rest: the lane id).
const ORDER_SEQ_BITS: u32 = 56;

impl Lanes {
    pub(crate) fn new(capacity: usize) -> Lanes {
        Lanes {
            all: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            by_id: (0..LANES_MAX).map(|_| std::sync::OnceLock::new()).collect(),
            buckets: (0..ORDER_BUCKETS).map(|_| AtomicU64::new(NO_APPEND)).collect(),
            idle: Mutex::new(Vec::new()),
            next_shared: AtomicUsize::new(0),
            capacity,
            stopped: AtomicBool::new(false),
        }
    }

    /// The submitter is gone: appends waiting in `order` for a placement stop waiting.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Orders append `seq` of `lane` (about to be published) after every earlier append to a
    /// stream of the bucket of `hash` (see the type's doc). `Err(())` if it would have to wait
    /// and `may_wait` is false. `wait` is called between looks.
    #[inline]
    pub(crate) fn order(
        &self,
        hash: u64,
        lane: &Lane,
        seq: u64,
        may_wait: bool,
        mut wait: impl FnMut(),
    ) -> Result<(), ()> {
        debug_assert!(seq < 1 << ORDER_SEQ_BITS);
        let bucket = &self.buckets[(hash >> 40) as usize % ORDER_BUCKETS];
        let mine = (lane.id as u64) << ORDER_SEQ_BITS | seq;
        loop {
            let last = bucket.load(Ordering::Acquire);
            if last != NO_APPEND {
                let (id, last_seq) = ((last >> ORDER_SEQ_BITS) as usize, last & ((1 << ORDER_SEQ_BITS) - 1));
                if id != lane.id as usize {
                    let other = self.by_id[id].get().expect("a lane in the order table exists");
                    if other.placed.load(Ordering::Acquire) <= last_seq {
                        // Ask the submitter to drain that lane now rather than at its linger
                        // time (the doorbell the caller rings in `wait` wakes it).
                        other.drain_mark.fetch_max(last_seq + 1, Ordering::SeqCst);
                        if self.stopped.load(Ordering::SeqCst) {
                            // The submitter exited (a poisoned or closed store) and will never
                            // place that append: waiting would spin forever. Nothing is placed
                            // any more, so no order is at stake; the caller's append is published
                            // into a lane nobody drains and its ticket reports why (`Poisoned`,
                            // `Closed`), as tickets of appends queued too late always do.
                            return Ok(());
                        }
                        if !may_wait {
                            return Err(());
                        }
                        wait();
                        continue;
                    }
                }
            }
            if bucket.compare_exchange_weak(last, mine, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Ok(());
            }
        }
    }

    /// A lane for a new handle: an idle one, a new one, or (at `LANES_MAX`) a shared one.
    /// Returns whether the handle owns it (and should give it back).
    pub(crate) fn acquire(&self) -> (Arc<Lane>, bool) {
        if let Some(lane) = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop() {
            return (lane, true);
        }
        let mut all = self.all.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if all.len() < LANES_MAX {
            let lane = Arc::new(Lane::new(self.capacity, all.len() as u32));
            let _ = self.by_id[all.len()].set(lane.clone());
            all.push(lane.clone());
            self.count.store(all.len(), Ordering::SeqCst);
            return (lane, true);
        }
        let at = self.next_shared.fetch_add(1, Ordering::Relaxed) % all.len();
        (all[at].clone(), false)
    }

    /// A handle that owned `lane` is gone.
    pub(crate) fn give_back(&self, lane: Arc<Lane>) {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(lane);
    }

    /// Copies the lanes from index `from` on into `out`.
    pub(crate) fn snapshot_from(&self, from: usize, out: &mut Vec<Arc<Lane>>) {
        let all = self.all.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        out.extend(all[from.min(all.len())..].iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(lane: &Lane, records: &[u8]) -> u64 {
        let (bytes, inline) = entry_bytes(records.len(), lane.capacity());
        let mut producer = lane.produce(false).expect("free");
        let entry = producer.reserve(bytes).ok().expect("room");
        producer.claim().ok().expect("slot");
        producer.write_header(
            entry,
            &EntryHeader {
                entry_bytes: bytes as u32,
                kind: if inline { EntryKind::Inline } else { EntryKind::Indirect },
                expected: ExpectedVersion::Exact(7),
                stream_len: 3,
                events: 1,
                record_bytes: records.len() as u32,
                hash: 42,
            },
        );
        if inline {
            producer.entry_mut(entry + ENTRY_HEADER_BYTES as u64, records.len()).copy_from_slice(records);
        } else {
            producer.write_indirect(entry, records.to_vec().into_boxed_slice());
        }
        producer.publish(entry, bytes)
    }

    fn pop(lane: &Lane, head: &mut u64) -> Option<Vec<u8>> {
        let (header, body) = lane.peek(head, lane.tail())?;
        assert_eq!(header.expected, ExpectedVersion::Exact(7));
        assert_eq!((header.stream_len, header.hash), (3, 42));
        // SAFETY: published, not yet consumed.
        let records = unsafe { lane.records(&header, body) }.to_vec();
        unsafe { lane.consumed(&header, body) };
        *head += header.entry_bytes as u64;
        lane.set_head(*head);
        Some(records)
    }

    #[test]
    fn held_gives_its_table_back_once_empty() {
        let lane = Lane::new(1 << 16, 0);
        let appends = 2000u64;
        for seq in 0..appends {
            let mut producer = lane.produce(false).expect("free");
            producer.claim().ok().expect("fresh slots are free");
            unsafe { *lane.next_seq.get() = seq + 1 };
            producer.claimed = false; // published by hand
                                      // Refused with its ticket alive: the error waits in `held`.
            lane.set_failed(seq, Error::Closed);
        }
        assert_eq!(lane.held_len(), appends as usize);
        assert!(lane.held_capacity() >= appends as usize);
        for seq in 0..appends {
            lane.release_ticket(seq);
        }
        assert_eq!(lane.held_len(), 0);
        assert!(lane.held_capacity() <= HELD_CAPACITY_KEPT, "kept room for {} entries", lane.held_capacity());
    }

    #[test]
    fn entries_come_out_in_order_across_wraps_inline_and_indirect() {
        let lane = Lane::new(1024, 0);
        let mut head = 0;
        let mut expected = std::collections::VecDeque::new();
        for round in 0..200u32 {
            let len = [8usize, 100, 300, 37][round as usize % 4];
            let records: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            let (bytes, _) = entry_bytes(len, lane.capacity());
            while lane.tail() + bytes as u64 + 256 - head > 1024 {
                assert_eq!(pop(&lane, &mut head), expected.pop_front());
            }
            push(&lane, &records);
            expected.push_back(records);
        }
        while let Some(e) = expected.pop_front() {
            assert_eq!(pop(&lane, &mut head), Some(e));
        }
        assert!(lane.is_drained());
    }

    #[test]
    fn a_full_ring_says_so_and_the_slot_waits_for_placement() {
        let lane = Lane::new(1024, 0);
        let mut n = 0;
        loop {
            let mut producer = lane.produce(false).expect("free");
            match producer.reserve(128) {
                Ok(entry) => {
                    producer.claim().ok().expect("slot");
                    producer.write_header(
                        entry,
                        &EntryHeader {
                            entry_bytes: 128,
                            kind: EntryKind::Inline,
                            expected: ExpectedVersion::Any,
                            stream_len: 0,
                            events: 1,
                            record_bytes: 96,
                            hash: 0,
                        },
                    );
                    producer.publish(entry, 128);
                    n += 1;
                }
                Err(Wait::Room) => break,
                Err(Wait::Slot) => unreachable!(),
            }
        }
        assert_eq!(n, 8, "1024 bytes hold 8 entries of 128");
        // Appends whose tickets live past LANE_RESULT_SLOTS keep their outcome.
        let lane = Lane::new(1 << 16, 0);
        let slots = LANE_RESULT_SLOTS as u64;
        for seq in 0..slots {
            let mut producer = lane.produce(false).expect("free");
            producer.claim().ok().expect("fresh slots are free");
            unsafe { *lane.next_seq.get() = seq + 1 };
            producer.claimed = false; // published by hand
            lane.set_placed(seq, 1000 + seq, seq);
        }
        lane.set_failed(slots - 1, Error::Closed); // overwritten below as failed
        {
            let mut producer = lane.produce(false).expect("free");
            // Slot 0's ticket is alive and placed: its outcome moves to `held`.
            producer.claim().ok().expect("placed");
            producer.claimed = false; // published by hand, below
        }
        assert_eq!(lane.held_len(), 2, "append 0's outcome and append {}'s error", slots - 1);
        unsafe { *lane.next_seq.get() = slots + 1 };
        lane.set_placed(slots, 5, 5);
        assert!(matches!(lane.outcome(0), Outcome::Placed { position: 1000, version: 0 }));
        assert!(matches!(lane.outcome(slots), Outcome::Placed { position: 5, version: 5 }));
        assert!(matches!(lane.outcome(slots - 1), Outcome::Failed(Error::Closed)));
        lane.release_ticket(0);
        lane.release_ticket(slots - 1);
        lane.release_ticket(slots);
        assert_eq!(lane.held_len(), 0, "dropped tickets take their held outcomes along");
        // A slot whose append is not placed yet makes the producer wait.
        let lane = Lane::new(1 << 16, 0);
        for _ in 0..slots {
            let mut producer = lane.produce(false).expect("free");
            producer.claim().ok().expect("free");
            let seq = producer.next_seq();
            unsafe { *lane.next_seq.get() = seq + 1 };
            producer.claimed = false; // published by hand
        }
        let mut producer = lane.produce(false).expect("free");
        assert!(matches!(producer.claim(), Err(Wait::Slot)));
        drop(producer);
        lane.release_ticket(0);
        assert!(lane.produce(false).expect("free").claim().is_ok(), "free once its ticket is dropped");
    }
}
