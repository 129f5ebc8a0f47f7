//! The append queue between producers and the submitter: a few bounded lock-free queues
//! (crossbeam `ArrayQueue`s), called shards, allocated at open.
//!
//! Layout: `shard_count` shards of `ceil(queue_appends_max / shard_count)` requests each. An
//! append goes into the shard its stream's hash picks, so producers appending to different
//! streams mostly push into different shards and do not fight over one queue tail: with a single
//! queue, the tail's compare-and-swap was the hottest instruction of `append` in profiles of the
//! seed workload (two producers on two cores).
//!
//! Invariants:
//! - Requests pushed into one shard are popped in push order. All appends to one stream go
//!   through one shard, so appends to a stream are placed in the order they were pushed, from
//!   whatever thread, `Store` clone or async task (an expected-version chain built without
//!   waiting holds). Appends to different streams may be placed in another order than they were
//!   made, unless the earlier one's ticket resolved first.
//! - The submitter visits the shards round-robin, starting one further each time, so a busy
//!   shard cannot starve the others.
//! - A full shard blocks only the producers pushing into it (backpressure); memory never grows.
//!
//! Each shard also counts the callers blocked on a ticket of one of its appends. A producer
//! thread blocked in `wait()` pushes nothing more until it is woken, so the shard's appends that
//! sit in the open group are only waiting to be written: the submitter cuts the open group short
//! for them (write/submitter.rs), instead of holding it back for more bytes. (A pending `.await` counts
//! too, although its thread may go on appending; that only makes groups smaller.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use crate::constants::RECORD_HEADER_BYTES;
use crate::error::Error;
use crate::log::record;
use crate::ExpectedVersion;

pub(crate) struct AppendQueue {
    shards: Box<[ArrayQueue<Arc<Request>>]>,
    /// Callers blocked on a ticket of each shard.
    blocked: Box<[AtomicU32]>,
}

impl AppendQueue {
    /// A queue of `capacity` requests in at most `shard_count` shards (at least one request per
    /// shard).
    pub(crate) fn new(capacity: usize, shard_count: usize) -> AppendQueue {
        assert!(capacity > 0 && shard_count > 0);
        let shard_count = shard_count.min(capacity);
        let per_shard = capacity.div_ceil(shard_count);
        AppendQueue {
            shards: (0..shard_count).map(|_| ArrayQueue::new(per_shard)).collect(),
            blocked: (0..shard_count).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The shard of every append to the stream whose hash is `stream_hash`. The high half of
    /// the hash is used: the stream table takes its bucket from the low bits.
    pub(crate) fn shard_of(&self, stream_hash: u64) -> usize {
        ((stream_hash >> 32) % self.shards.len() as u64) as usize
    }

    /// Pushes into `shard`, or hands the request back if that shard is full.
    pub(crate) fn push(&self, shard: usize, request: Arc<Request>) -> Result<(), Arc<Request>> {
        self.shards[shard].push(request)
    }

    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// A caller of `shard` is about to block on a ticket. SeqCst: either the submitter sees the
    /// count, or the caller sees the watermark the submitter published before looking.
    pub(crate) fn enter_blocked(&self, shard: usize) {
        self.blocked[shard].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave_blocked(&self, shard: usize) {
        self.blocked[shard].fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether some shard with a blocked caller satisfies `pending` (has appends not submitted).
    pub(crate) fn any_blocked(&self, mut pending: impl FnMut(usize) -> bool) -> bool {
        (0..self.blocked.len()).any(|shard| self.blocked[shard].load(Ordering::SeqCst) > 0 && pending(shard))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.shards.iter().all(ArrayQueue::is_empty)
    }

    /// Pops into `out` until it holds `max` requests or every shard is empty, visiting the
    /// shards from `*cursor` on; moves `*cursor` one shard further for next time.
    pub(crate) fn pop_into(&self, cursor: &mut usize, out: &mut Vec<Arc<Request>>, max: usize) {
        let count = self.shards.len();
        let start = *cursor % count;
        *cursor = start + 1;
        for step in 0..count {
            let shard = &self.shards[(start + step) % count];
            while out.len() < max {
                match shard.pop() {
                    Some(request) => out.push(request),
                    None => break,
                }
            }
        }
    }
}

pub(crate) const PENDING: u64 = u64::MAX;
pub(crate) const FAILED: u64 = u64::MAX - 1;

/// One append on its way to the submitter.
pub(crate) struct Request {
    pub hash: u64,
    /// The append-queue shard it was pushed into (chosen by the stream's hash).
    pub shard: usize,
    pub stream_len: usize,
    pub expected: ExpectedVersion,
    pub events: u32,
    pub payload_bytes: u64,
    /// The records, unsealed (see `record::encode_unsealed`).
    pub encoded: record::RecordBytes,
    /// `PENDING`, `FAILED`, or the position of the first event.
    pub state: AtomicU64,
    /// Version of the last event, valid once `state` holds a position.
    pub version: AtomicU64,
    pub error: OnceLock<Error>,
}

impl Request {
    pub(crate) fn stream(&self) -> &[u8] {
        &self.encoded[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + self.stream_len]
    }

    /// Records the failure. The caller must then call `Shared::wake_waiters`: nothing else
    /// wakes a waiter whose append failed (the watermark does not move for it).
    pub(crate) fn fail(&self, error: Error) {
        let _ = self.error.set(error);
        // SeqCst pairs with the waiters' SeqCst store of `wakers_waiting`: either the submitter
        // sees the waker registered, or the waiter sees FAILED before it sleeps.
        self.state.store(FAILED, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_keep_their_order_and_hold_the_capacity() {
        let queue = AppendQueue::new(10, 4);
        assert_eq!(queue.shards.len(), 4);
        assert!(queue.shards.iter().all(|shard| shard.capacity() == 3));
        let shards: Vec<usize> = (0..64u64).map(|i| queue.shard_of(i << 32)).collect();
        assert_eq!(&shards[..5], &[0, 1, 2, 3, 0], "the high half of the hash picks the shard");
        assert_eq!(queue.shard_of(7), queue.shard_of(7 | 3 << 32) ^ 3, "the low half does not");
        // Fewer requests than shards: one request per shard.
        assert_eq!(AppendQueue::new(2, 8).shards.len(), 2);
    }

    fn request(tag: u32) -> Arc<Request> {
        Arc::new(Request {
            hash: 0,
            shard: 0,
            stream_len: 0,
            expected: crate::ExpectedVersion::Any,
            events: tag,
            payload_bytes: 0,
            encoded: Default::default(),
            state: PENDING.into(),
            version: 0.into(),
            error: Default::default(),
        })
    }

    #[test]
    fn pops_visit_every_shard_in_push_order_and_rotate() {
        let queue = AppendQueue::new(8, 2);
        for tag in [1, 2, 3] {
            assert!(queue.push(0, request(tag)).is_ok(), "room");
        }
        for tag in [11, 12] {
            assert!(queue.push(1, request(tag)).is_ok(), "room");
        }
        let mut cursor = 1;
        let mut out = Vec::new();
        queue.pop_into(&mut cursor, &mut out, 4);
        let tags: Vec<u32> = out.iter().map(|r| r.events).collect();
        assert_eq!(tags, vec![11, 12, 1, 2], "shard 1 first (the cursor), each shard in push order");
        assert_eq!(cursor, 2);
        out.clear();
        queue.pop_into(&mut cursor, &mut out, 4);
        assert_eq!(out.iter().map(|r| r.events).collect::<Vec<_>>(), vec![3]);
        assert!(queue.is_empty());
        // A full shard hands the request back; the other shard still takes pushes.
        for tag in 0..4 {
            assert!(queue.push(0, request(tag)).is_ok(), "room");
        }
        assert!(queue.push(0, request(9)).is_err());
        assert!(queue.push(1, request(9)).is_ok());
    }

    #[test]
    fn blocked_callers_are_counted_per_shard() {
        let queue = AppendQueue::new(8, 4);
        assert!(!queue.any_blocked(|_| true));
        queue.enter_blocked(2);
        queue.enter_blocked(2);
        let mut asked = Vec::new();
        assert!(queue.any_blocked(|shard| {
            asked.push(shard);
            true
        }));
        assert_eq!(asked, vec![2], "only shards with a blocked caller are asked about");
        assert!(!queue.any_blocked(|_| false));
        queue.leave_blocked(2);
        assert!(queue.any_blocked(|shard| shard == 2));
        queue.leave_blocked(2);
        assert!(!queue.any_blocked(|_| true));
    }
}
