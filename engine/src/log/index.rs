//! In-memory indexes, rebuilt by recovery and extended by the submitter.
//!
//! - Streams: a hash table from stream id to the locations of its records, in version order
//!   (version `v` is `locations[v]`). The submitter appends a location when it places a record,
//!   before the record is durable. Locations grow with positions (segment number, then offset),
//!   so the durable end of the log is a location too (`Shared::durable_end`): readers compare a
//!   location with it before they touch the bytes there, and never decode a record that is not
//!   durable yet (its bytes may still be zeros, or belong to a group that failed).
//! - Groups: the durable groups in log order (first position, segment, offset), appended only
//!   once a group is durable. `read_all` finds its starting group by binary search.
//! - Segments: read-only mmaps of segment files, made when a reader first needs one and kept in
//!   a cache of at most `SEGMENT_MAPS_MAX`, oldest evicted first: a store of any number of
//!   segments stays far below `vm.max_map_count` (65,530 by default). A reader holds the mapping
//!   it reads through (an `Arc`), so eviction never unmaps bytes in use.
//!
//! A location packs the segment number in the top 24 bits and the byte offset of the record in
//! the low 40 bits.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use hashbrown::HashTable;
use memmap2::Mmap;

use crate::constants::{LOCATION_OFFSET_BITS, SEGMENT_MAPS_MAX};
use crate::error::{Error, Result};
use crate::log::segment;
use crate::testing::FaultPlan;

pub(crate) fn pack_location(segment: u64, offset: u64) -> u64 {
    debug_assert!(offset < 1 << LOCATION_OFFSET_BITS);
    (segment << LOCATION_OFFSET_BITS) | offset
}

pub(crate) fn unpack_location(location: u64) -> (u64, usize) {
    (location >> LOCATION_OFFSET_BITS, (location & ((1 << LOCATION_OFFSET_BITS) - 1)) as usize)
}

/// The stream hash, computed by producers on their own core so the submitter does not have to.
pub(crate) fn stream_hash(stream: &str) -> u64 {
    // A fixed seed: the hash never leaves the process, and a fixed one keeps runs reproducible.
    foldhash::fast::FixedState::with_seed(0x5eed_e7e5_70e0_0001).hash_one(stream.as_bytes())
}

pub(crate) struct StreamEntry {
    pub name: Box<str>,
    pub hash: u64,
    pub locations: Vec<u64>,
}

#[derive(Default)]
pub(crate) struct StreamTable {
    table: HashTable<StreamEntry>,
}

impl StreamTable {
    pub(crate) fn get(&self, hash: u64, name: &[u8]) -> Option<&StreamEntry> {
        self.table.find(hash, |e| e.name.as_bytes() == name)
    }

    pub(crate) fn get_or_insert(&mut self, hash: u64, name: &[u8]) -> &mut StreamEntry {
        let entry = self.table.entry(hash, |e| e.name.as_bytes() == name, |e| e.hash);
        entry
            .or_insert_with(|| StreamEntry {
                name: String::from_utf8_lossy(name).into_owned().into_boxed_str(),
                hash,
                locations: Vec::new(),
            })
            .into_mut()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupLocation {
    pub first_position: u64,
    pub segment: u64,
    /// Byte offset of the group header in its segment.
    pub offset: u64,
}

pub(crate) struct Index {
    pub streams: Mutex<StreamTable>,
    pub groups: RwLock<Vec<GroupLocation>>,
    segments: SegmentMaps,
}

/// The cache of segment mappings (see the module docs).
struct SegmentMaps {
    dir: PathBuf,
    faults: Option<FaultPlan>,
    cache: Mutex<MapCache>,
}

#[derive(Default)]
struct MapCache {
    maps: HashMap<u64, Arc<Mmap>>,
    /// Segment numbers in the order they were mapped; the front is evicted first.
    order: VecDeque<u64>,
}

impl Index {
    pub(crate) fn new(dir: PathBuf, faults: Option<FaultPlan>) -> Index {
        Index {
            streams: Mutex::new(StreamTable::default()),
            groups: RwLock::new(Vec::new()),
            segments: SegmentMaps { dir, faults, cache: Mutex::new(MapCache::default()) },
        }
    }

    /// The mapping of segment `number`, made now if it is not cached.
    pub(crate) fn segment(&self, number: u64) -> Result<Arc<Mmap>> {
        let maps = &self.segments;
        if let Some(map) = maps.lock().maps.get(&number) {
            return Ok(map.clone());
        }
        // Mapped outside the lock: opening a file can wait on the disk, and other readers need
        // the cache meanwhile.
        let map = Arc::new(maps.map(number)?);
        let mut cache = maps.lock();
        if let Some(map) = cache.maps.get(&number) {
            return Ok(map.clone());
        }
        while cache.order.len() >= SEGMENT_MAPS_MAX {
            let oldest = cache.order.pop_front().expect("a full cache has entries");
            cache.maps.remove(&oldest);
        }
        cache.order.push_back(number);
        cache.maps.insert(number, map.clone());
        Ok(map)
    }

    /// Forgets every cached mapping (readers keep the ones they hold): the bench's cold reads.
    pub(crate) fn drop_mappings(&self) {
        let mut cache = self.segments.lock();
        cache.maps.clear();
        cache.order.clear();
    }

    /// Index into `groups` of the durable group holding `position`, or of the first group if the
    /// log starts after `position`.
    pub(crate) fn group_of(&self, position: u64) -> Option<(usize, GroupLocation)> {
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner);
        let at = groups.partition_point(|g| g.first_position <= position).max(1);
        groups.get(at - 1).map(|&group| (at - 1, group))
    }

    /// Runs `f` over the locations of `name`'s records in version order (version `v` at index
    /// `v`), or returns `None` if the stream is unknown. The read path's only way into the
    /// stream table: `f` runs under the table's lock, so it must only copy or search the
    /// locations, never touch the log.
    pub(crate) fn with_stream<R>(&self, hash: u64, name: &[u8], f: impl FnOnce(&[u64]) -> R) -> Option<R> {
        let streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.get(hash, name).map(|entry| f(&entry.locations))
    }

    pub(crate) fn group_at(&self, index: usize) -> Option<GroupLocation> {
        self.groups.read().unwrap_or_else(PoisonError::into_inner).get(index).copied()
    }
}

impl SegmentMaps {
    fn lock(&self) -> std::sync::MutexGuard<'_, MapCache> {
        // The cache holds no invariant a panic could break halfway: ignore poisoning.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn map(&self, number: u64) -> Result<Mmap> {
        let path = segment::segment_path(&self.dir, number);
        let context = || format!("mapping segment {}", path.display());
        if let Some(errno) = self.faults.as_ref().and_then(FaultPlan::map_errno) {
            return Err(Error::from_errno(context(), errno));
        }
        let file = std::fs::File::open(&path).map_err(|e| Error::io(context(), e))?;
        // SAFETY: a segment file is never truncated while the store is open (the directory lock
        // keeps every other writer out), and readers only look at bytes of durable groups, which
        // are never written again.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(context(), e))?;
        // No readahead on faults: a stream read touches one record here and one far away there,
        // and the device's readahead window (8 MiB on this machine's virtual disk) made a cold
        // 1,000-event stream read fetch megabytes per record. Sequential readers (read_all,
        // subscriptions) ask for their readahead explicitly (MADV_WILLNEED, read/reader.rs).
        // A hint only: if it is refused, reads are as correct, just slower when cold.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip() {
        let location = pack_location(12345, (1 << 40) - 1);
        assert_eq!(unpack_location(location), (12345, (1 << 40) - 1));
    }

    #[test]
    fn stream_table_finds_and_inserts() {
        let mut table = StreamTable::default();
        let hash = stream_hash("users/1");
        table.get_or_insert(hash, b"users/1").locations.push(7);
        assert_eq!(table.get(hash, b"users/1").map(|e| e.locations.clone()), Some(vec![7]));
        assert!(table.get(stream_hash("users/2"), b"users/2").is_none());
    }
}
