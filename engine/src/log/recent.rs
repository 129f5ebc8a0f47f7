//! The last durable groups, kept in memory for live readers.
//!
//! Why: the log is written with O_DIRECT, which bypasses the page cache and drops any cached
//! page over the range it writes. A subscriber that reads a group the instant it becomes durable
//! through the mapping therefore faults and waits for a disk read of bytes the process had in a
//! buffer a moment before: profiles of live delivery showed that read (and the virtio kick that
//! starts it) on the subscriber's thread, and a p50 of one disk read.
//!
//! Layout: while at least one subscription is open (`subscribers`), the submitter copies each
//! group it publishes (header and records, no padding) into a buffer taken from a small pool and
//! pushes it here, keyed by (segment, offset of the group header), before it moves the
//! watermarks. A cursor that reaches a group asks here first and reads the copy if it is still
//! kept, else the mapping, exactly as before.
//!
//! Invariants:
//! - Only durable groups are pushed (at publication), in log order; a copy holds exactly the
//!   bytes of the group on disk, so a reader checks it (CRC32C, positions) as it checks the
//!   mapping.
//! - Bounded: at most `RECENT_GROUP_BYTES_MAX` bytes of copies are kept here, oldest dropped
//!   first. A reader or an envelope holding a copy keeps it alive (an `Arc`) after it is dropped
//!   here, so every copy alive, kept or held, is counted (`live_bytes`, by capacity, decremented
//!   when the last holder drops it), and the submitter makes no new copy while they add up to
//!   `RECENT_LIVE_BYTES_MAX`: readers then read that group through the mapping, as before. An
//!   envelope kept from many groups thus costs at most that bound, never a heap copy per group.
//! - With no subscription open the submitter copies nothing: the cost is paid only by stores that
//!   have live readers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::constants::{RECENT_GROUP_BYTES_MAX, RECENT_LIVE_BYTES_MAX};

/// The bytes of one group, counted in `live_bytes` while they exist.
pub(crate) struct GroupCopy {
    bytes: Vec<u8>,
    live_bytes: Arc<AtomicUsize>,
}

impl std::ops::Deref for GroupCopy {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for GroupCopy {
    fn drop(&mut self) {
        self.live_bytes.fetch_sub(self.bytes.capacity(), Ordering::Relaxed);
    }
}

struct Kept {
    segment: u64,
    offset: u64,
    bytes: Arc<GroupCopy>,
}

#[derive(Default)]
struct Inner {
    kept: VecDeque<Kept>,
    kept_bytes: usize,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct RecentGroups {
    subscribers: AtomicUsize,
    /// Capacity of every copy alive, kept here or held by a reader.
    live_bytes: Arc<AtomicUsize>,
    inner: Mutex<Inner>,
}

impl RecentGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here is left half-done by a panic that matters: a lost copy is read from disk.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A subscription opened: groups published from now on are kept.
    pub(crate) fn subscribe(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    /// A subscription closed; the last one empties the copies.
    pub(crate) fn unsubscribe(&self) {
        if self.subscribers.fetch_sub(1, Ordering::Relaxed) == 1 {
            let mut inner = self.lock();
            inner.kept.clear();
            inner.kept_bytes = 0;
        }
    }

    /// Whether the submitter should copy the groups it publishes.
    pub(crate) fn wanted(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Bytes of every copy alive (kept or held by readers), by capacity.
    #[cfg(test)]
    pub(crate) fn live_bytes(&self) -> usize {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Keeps a copy of the durable group whose header is at (`segment`, `offset`), unless the
    /// copies alive would pass `RECENT_LIVE_BYTES_MAX`.
    pub(crate) fn push(&self, segment: u64, offset: u64, group: &[u8]) {
        if group.len() > RECENT_GROUP_BYTES_MAX || !self.wanted() {
            return;
        }
        let mut inner = self.lock();
        while inner.kept_bytes + group.len() > RECENT_GROUP_BYTES_MAX {
            let Some(oldest) = inner.kept.pop_front() else { break };
            inner.kept_bytes -= oldest.bytes.len();
        }
        if self.live_bytes.load(Ordering::Relaxed) + group.len() > RECENT_LIVE_BYTES_MAX {
            // Readers hold older copies: this group is read through the mapping. Nothing kept
            // may follow a gap, or `find` would hand a copy of a group after one that is missing
            // (harmless, but the order keeps the binary search simple): start over after it.
            inner.kept.clear();
            inner.kept_bytes = 0;
            return;
        }
        let bytes = group.to_vec();
        self.live_bytes.fetch_add(bytes.capacity(), Ordering::Relaxed);
        inner.kept_bytes += bytes.len();
        inner.kept.push_back(Kept {
            segment,
            offset,
            bytes: Arc::new(GroupCopy { bytes, live_bytes: self.live_bytes.clone() }),
        });
    }

    /// The copy of the group whose header is at (`segment`, `offset`), if it is still kept.
    pub(crate) fn find(&self, segment: u64, offset: u64) -> Option<Arc<GroupCopy>> {
        if !self.wanted() {
            return None;
        }
        let inner = self.lock();
        // Kept in log order: a binary search by (segment, offset).
        let at = inner.kept.partition_point(|k| (k.segment, k.offset) < (segment, offset));
        inner.kept.get(at).filter(|k| k.segment == segment && k.offset == offset).map(|k| k.bytes.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_recent_groups_within_the_bound_and_finds_them_by_place() {
        let recent = RecentGroups::default();
        recent.push(0, 4096, b"ignored: no subscriber");
        recent.subscribe();
        assert!(recent.find(0, 4096).is_none());
        let group = vec![7u8; RECENT_GROUP_BYTES_MAX / 4];
        for k in 0..6u64 {
            recent.push(1, 4096 * (k + 1), &group);
        }
        // The bound holds four: the first two were dropped.
        assert!(recent.find(1, 4096).is_none());
        assert!(recent.find(1, 8192).is_none());
        assert_eq!(recent.find(1, 4096 * 3).as_deref().map(|c| &c[..]), Some(&group[..]));
        assert_eq!(recent.find(1, 4096 * 6).as_deref().map(|c| &c[..]), Some(&group[..]));
        assert!(recent.find(2, 4096).is_none());
        recent.unsubscribe();
        assert!(recent.find(1, 4096 * 6).is_none());
        assert_eq!(recent.live_bytes(), 0, "every copy freed");
    }

    #[test]
    fn copies_held_by_readers_count_and_stop_new_copies_at_the_bound() {
        let recent = RecentGroups::default();
        recent.subscribe();
        let group = vec![1u8; RECENT_GROUP_BYTES_MAX / 2];
        let mut held = Vec::new();
        for k in 0..40u64 {
            recent.push(0, 4096 * (k + 1), &group);
            if let Some(copy) = recent.find(0, 4096 * (k + 1)) {
                held.push(copy);
            }
            assert!(recent.live_bytes() <= RECENT_LIVE_BYTES_MAX, "copies alive stay within the bound");
        }
        assert!(held.len() < 40, "held copies stopped new ones");
        drop(held);
        recent.push(0, 4096 * 100, &group);
        assert!(recent.find(0, 4096 * 100).is_some(), "copies resume once readers let go");
    }
}
