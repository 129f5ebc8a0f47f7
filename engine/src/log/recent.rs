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
//! - Bounded: at most `RECENT_GROUP_BYTES_MAX` bytes of copies are kept, oldest dropped first; a
//!   reader (or an envelope) holding a copy keeps it alive (an `Arc`), and a dropped copy that
//!   no one holds goes back to the pool, so that steady state allocates nothing.
//! - With no subscription open the submitter copies nothing: the cost is paid only by stores that
//!   have live readers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::constants::{RECENT_GROUP_BYTES_MAX, RECENT_POOL_BUFFERS_MAX};

struct Kept {
    segment: u64,
    offset: u64,
    bytes: Arc<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    kept: VecDeque<Kept>,
    kept_bytes: usize,
    /// Buffers of dropped copies, for the next pushes.
    pool: Vec<Vec<u8>>,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct RecentGroups {
    subscribers: AtomicUsize,
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
            inner.pool.clear();
        }
    }

    /// Whether the submitter should copy the groups it publishes.
    pub(crate) fn wanted(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// Keeps a copy of the durable group whose header is at (`segment`, `offset`).
    pub(crate) fn push(&self, segment: u64, offset: u64, group: &[u8]) {
        if group.len() > RECENT_GROUP_BYTES_MAX || !self.wanted() {
            return;
        }
        let mut inner = self.lock();
        while inner.kept_bytes + group.len() > RECENT_GROUP_BYTES_MAX {
            let Some(oldest) = inner.kept.pop_front() else { break };
            inner.kept_bytes -= oldest.bytes.len();
            if let Ok(buffer) = Arc::try_unwrap(oldest.bytes) {
                if inner.pool.len() < RECENT_POOL_BUFFERS_MAX {
                    inner.pool.push(buffer);
                }
            }
        }
        let mut buffer = inner.pool.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(group);
        inner.kept_bytes += buffer.len();
        inner.kept.push_back(Kept { segment, offset, bytes: Arc::new(buffer) });
    }

    /// The copy of the group whose header is at (`segment`, `offset`), if it is still kept.
    pub(crate) fn find(&self, segment: u64, offset: u64) -> Option<Arc<Vec<u8>>> {
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
        assert_eq!(recent.find(0, 4096), None);
        let group = vec![7u8; RECENT_GROUP_BYTES_MAX / 4];
        for k in 0..6u64 {
            recent.push(1, 4096 * (k + 1), &group);
        }
        // The bound holds four: the first two were dropped.
        assert_eq!(recent.find(1, 4096), None);
        assert_eq!(recent.find(1, 8192), None);
        assert_eq!(recent.find(1, 4096 * 3).as_deref(), Some(&group));
        assert_eq!(recent.find(1, 4096 * 6).as_deref(), Some(&group));
        assert_eq!(recent.find(2, 4096), None);
        recent.unsubscribe();
        assert_eq!(recent.find(1, 4096 * 6), None);
    }
}
