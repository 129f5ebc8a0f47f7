//! In-memory indexes, rebuilt by recovery (from a checkpoint and the log after it, see
//! checkpoint.rs) and extended by the submitter.
//!
//! - Streams, two tables that share their names (`Arc<str>`) and their dense stream ids (`u32`,
//!   given in the order of a stream's first event in the log):
//!   - the readers' [`StreamTable`] (behind an `RwLock` in [`Index`]): stream id -> the locations
//!     of its *durable* records in version order (version `v` is `locations[v]`). The submitter
//!     adds a group's locations under one write lock when the group becomes durable, before it
//!     moves `Shared::durable_end` and `Shared::durable`, so a caller whose ticket resolved finds
//!     its events in a stream read. Readers reach it only through [`Index::with_stream`].
//!   - the submitter's own [`VersionTable`]: stream id -> the next version, counting records
//!     placed in groups that are not durable yet. No lock: only the submitter thread touches it,
//!     so the expected-version check never waits for a reader.
//!
//!   Locations grow with positions (segment number, then offset), so the durable end of the log
//!   is a location too (`Shared::durable_end`); a reader that snapshots it keeps exactly the
//!   durable prefix of a stream's locations, however far the table has moved on since.
//! - Groups: the durable groups in log order (first position, segment, offset), appended only
//!   once a group is durable. `read_all` finds its starting group by binary search.
//! - Segments: what the log's segments hold (first position and group, where their groups end),
//!   for checkpoints; and read-only mmaps of segment files, made when a reader first needs one
//!   and kept in a cache of at most `SEGMENT_MAPS_MAX`, oldest evicted first: a store of any
//!   number of segments stays far below `vm.max_map_count` (65,530 by default). A reader holds
//!   the mapping it reads through (an `Arc`), so eviction never unmaps bytes in use.
//!
//! Invariants: a stream's locations only grow and are strictly increasing; stream ids are dense
//! and never reused; the readers' table holds nothing past `durable_end`; the submitter's table
//! gives a stream a version for every record placed, durable or not (placed appends become
//! durable in order, or the store is poisoned and nothing after them is acknowledged).
//!
//! A location packs the segment number in the top 24 bits and the byte offset of the record in
//! the low 40 bits.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use memmap2::Mmap;
use smallvec::SmallVec;

use crate::constants::{LOCATION_OFFSET_BITS, SEGMENT_MAPS_MAX, STREAMS_MAX};
use crate::error::{Error, Result};
use crate::log::checkpoint::CheckpointState;
use crate::log::recent::RecentGroups;
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
#[inline]
pub(crate) fn stream_hash(stream: &str) -> u64 {
    // A fixed seed: the hash never leaves the process, and a fixed one keeps runs reproducible.
    foldhash::fast::FixedState::with_seed(0x5eed_e7e5_70e0_0001).hash_one(stream.as_bytes())
}

/// A stream's record locations. Two fit inline (the vector is 24 bytes either way), so a store
/// of many one-event streams allocates nothing per stream for them.
pub(crate) type Locations = SmallVec<[u64; 2]>;

/// Heap bytes of a stream name shared as `Arc<str>`: the two counts and the bytes, as the
/// allocator rounds them (16-byte steps, 32 at least).
fn name_bytes(name: &str) -> usize {
    (16 + name.len() + 8).div_ceil(16).max(2) * 16
}

/// Bytes of a hash table of ids: one id and one control byte per bucket.
fn lookup_bytes(lookup: &HashTable<u32>) -> usize {
    lookup.capacity() * (std::mem::size_of::<u32>() + 1)
}

pub(crate) struct StreamEntry {
    pub name: Arc<str>,
    pub locations: Locations,
}

/// The readers' stream table: ids index `streams`; `lookup` finds an id by hash and name.
#[derive(Default)]
pub(crate) struct StreamTable {
    lookup: HashTable<u32>,
    streams: Vec<StreamEntry>,
}

impl StreamTable {
    pub(crate) fn with_capacity(streams: usize) -> StreamTable {
        StreamTable { lookup: HashTable::with_capacity(streams), streams: Vec::with_capacity(streams) }
    }

    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn get(&self, hash: u64, name: &[u8]) -> Option<&StreamEntry> {
        let streams = &self.streams;
        self.lookup.find(hash, |&id| streams[id as usize].name.as_bytes() == name).map(|&id| &streams[id as usize])
    }

    pub(crate) fn entry_mut(&mut self, id: u32) -> &mut StreamEntry {
        &mut self.streams[id as usize]
    }

    pub(crate) fn entries(&self) -> &[StreamEntry] {
        &self.streams
    }

    /// The id of `name`, a new one (with no locations) on first sight; `None` when the table
    /// holds `STREAMS_MAX` streams already.
    pub(crate) fn get_or_insert(&mut self, hash: u64, name: &[u8]) -> Option<u32> {
        let streams = &mut self.streams;
        let entry = self.lookup.entry(
            hash,
            |&id| streams[id as usize].name.as_bytes() == name,
            |&id| stream_hash(&streams[id as usize].name),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(found) => Some(*found.get()),
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                if streams.len() >= STREAMS_MAX {
                    return None;
                }
                let id = streams.len() as u32;
                // A stream id came from a `&str` (an append) or a record whose CRC held: UTF-8
                // either way; a lossy conversion only guards against a bug.
                let name: Arc<str> = Arc::from(String::from_utf8_lossy(name).as_ref());
                streams.push(StreamEntry { name, locations: Locations::new() });
                vacant.insert(id);
                Some(id)
            }
        }
    }

    /// Adds stream `id`, which must be the next id, under a name the submitter's table shares.
    pub(crate) fn push_new(&mut self, id: u32, name: Arc<str>, locations: Locations) {
        assert_eq!(id as usize, self.streams.len(), "stream ids are given in log order");
        let streams = &self.streams;
        let hash = stream_hash(&name);
        self.lookup.insert_unique(hash, id, |&id| stream_hash(&streams[id as usize].name));
        self.streams.push(StreamEntry { name, locations });
    }

    /// Drops every location at or past `end` (streams left without one stay, empty: they read as
    /// streams without events).
    pub(crate) fn truncate_to(&mut self, end: u64) {
        for entry in &mut self.streams {
            let keep = entry.locations.partition_point(|&l| l < end);
            entry.locations.truncate(keep);
        }
    }

    /// Resident bytes, estimated from capacities; names are counted here (the submitter's table
    /// shares them).
    pub(crate) fn resident_bytes(&self) -> usize {
        let entries = self.streams.capacity() * std::mem::size_of::<StreamEntry>();
        let heap: usize = self
            .streams
            .iter()
            .map(|s| {
                let spilled = if s.locations.spilled() { s.locations.capacity() * 8 } else { 0 };
                spilled + name_bytes(&s.name)
            })
            .sum();
        lookup_bytes(&self.lookup) + entries + heap
    }
}

/// The submitter's own table: stream id -> next version (records placed, durable or not). Ids
/// and names are those of the readers' table.
#[derive(Default)]
pub(crate) struct VersionTable {
    lookup: HashTable<u32>,
    streams: Vec<(Arc<str>, u64)>,
}

impl VersionTable {
    /// The table that goes with the recovered readers' table: same ids, same names.
    pub(crate) fn from_streams(table: &StreamTable) -> VersionTable {
        let mut versions =
            VersionTable { lookup: HashTable::with_capacity(table.len()), streams: Vec::with_capacity(table.len()) };
        for (id, entry) in table.entries().iter().enumerate() {
            versions.streams.push((entry.name.clone(), entry.locations.len() as u64));
            let streams = &versions.streams;
            versions
                .lookup
                .insert_unique(stream_hash(&entry.name), id as u32, |&id| stream_hash(&streams[id as usize].0));
        }
        versions
    }

    pub(crate) fn find(&self, hash: u64, name: &[u8]) -> Option<u32> {
        let streams = &self.streams;
        self.lookup.find(hash, |&id| streams[id as usize].0.as_bytes() == name).copied()
    }

    pub(crate) fn next_version(&self, id: u32) -> u64 {
        self.streams[id as usize].1
    }

    pub(crate) fn advance(&mut self, id: u32, events: u64) {
        self.streams[id as usize].1 += events;
    }

    pub(crate) fn name(&self, id: u32) -> &Arc<str> {
        &self.streams[id as usize].0
    }

    /// Adds a stream `find` did not know, with version 0 next. `None` when the table holds
    /// `STREAMS_MAX` streams already.
    pub(crate) fn insert(&mut self, hash: u64, name: &str) -> Option<u32> {
        if self.streams.len() >= STREAMS_MAX {
            return None;
        }
        let id = self.streams.len() as u32;
        self.streams.push((Arc::from(name), 0));
        let streams = &self.streams;
        self.lookup.insert_unique(hash, id, |&id| stream_hash(&streams[id as usize].0));
        Some(id)
    }

    /// Resident bytes, estimated from capacities, without the names (shared, counted once in
    /// the readers' table).
    pub(crate) fn resident_bytes(&self) -> usize {
        lookup_bytes(&self.lookup) + self.streams.capacity() * std::mem::size_of::<(Arc<str>, u64)>()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupLocation {
    pub first_position: u64,
    pub segment: u64,
    /// Byte offset of the group header in its segment.
    pub offset: u64,
}

/// What one segment of the log holds, as a checkpoint records it (checkpoint.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub number: u64,
    /// From its header: with `number` and `first_position`, what tells this segment file from
    /// another one of the same number (a different log, or a segment written again).
    pub created_us: u64,
    pub first_position: u64,
    /// Sequence number of its first group (the groups before it).
    pub first_seq: u64,
    /// Where its groups end, once the log has moved on to the next segment; 0 while it is the
    /// active one.
    pub end_offset: u64,
}

pub(crate) struct Index {
    streams: RwLock<StreamTable>,
    pub groups: RwLock<Vec<GroupLocation>>,
    /// The log's segments, oldest first: the submitter adds one at every rollover.
    pub log_segments: Mutex<Vec<SegmentSummary>>,
    /// The submitter's `VersionTable::resident_bytes`, published when it grows.
    pub version_table_bytes: AtomicUsize,
    /// What the checkpoint on disk covers, and the lock its writers take (checkpoint.rs).
    pub checkpoints: CheckpointState,
    /// Copies of the last durable groups while subscriptions are open (log/recent.rs).
    pub recent: RecentGroups,
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
            streams: RwLock::new(StreamTable::default()),
            groups: RwLock::new(Vec::new()),
            log_segments: Mutex::new(Vec::new()),
            version_table_bytes: AtomicUsize::new(0),
            checkpoints: CheckpointState::new(None, 0),
            recent: RecentGroups::default(),
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

    /// Runs `f` over the locations of `name`'s durable records in version order (version `v`
    /// at index `v`), or returns `None` if the stream is unknown. The read path's only way into
    /// the stream table: `f` runs under the table's read lock, which the submitter needs (once
    /// per durable group) to publish, so it must only copy or search the locations, never touch
    /// the log.
    pub(crate) fn with_stream<R>(&self, hash: u64, name: &[u8], f: impl FnOnce(&[u64]) -> R) -> Option<R> {
        let streams = self.read_streams();
        streams.get(hash, name).map(|entry| f(&entry.locations))
    }

    pub(crate) fn group_at(&self, index: usize) -> Option<GroupLocation> {
        self.groups.read().unwrap_or_else(PoisonError::into_inner).get(index).copied()
    }

    /// The readers' table, read-locked. Poisoning is ignored: the table is only changed by the
    /// submitter, whose panic poisons the store; what it left is still the durable state.
    pub(crate) fn read_streams(&self) -> RwLockReadGuard<'_, StreamTable> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The readers' table, write-locked: the submitter's publication, once per durable group.
    pub(crate) fn write_streams(&self) -> RwLockWriteGuard<'_, StreamTable> {
        self.streams.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn log_segments(&self) -> std::sync::MutexGuard<'_, Vec<SegmentSummary>> {
        self.log_segments.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resident bytes of the stream tables and the group directory, estimated from their
    /// capacities (the mapping cache is the page cache's, not counted). Walks every stream
    /// under the read lock: a diagnostic, not for a hot loop.
    pub(crate) fn resident_bytes(&self) -> usize {
        let streams = self.read_streams().resident_bytes();
        let groups = self.groups.read().unwrap_or_else(PoisonError::into_inner).capacity()
            * std::mem::size_of::<GroupLocation>();
        let segments = self.log_segments().capacity() * std::mem::size_of::<SegmentSummary>();
        streams + groups + segments + self.version_table_bytes.load(Ordering::Relaxed)
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
        let id = table.get_or_insert(hash, b"users/1").expect("room");
        table.entry_mut(id).locations.push(7);
        assert_eq!(table.get_or_insert(hash, b"users/1"), Some(id));
        assert_eq!(table.get(hash, b"users/1").map(|e| e.locations.to_vec()), Some(vec![7]));
        assert!(table.get(stream_hash("users/2"), b"users/2").is_none());
    }

    #[test]
    fn the_two_tables_share_ids_and_names() {
        let mut readers = StreamTable::default();
        for i in 0..100 {
            let name = format!("s{i}");
            let id = readers.get_or_insert(stream_hash(&name), name.as_bytes()).expect("room");
            readers.entry_mut(id).locations.extend((0..i).map(|v| v as u64));
        }
        let mut versions = VersionTable::from_streams(&readers);
        assert_eq!(versions.find(stream_hash("s42"), b"s42"), Some(42));
        assert_eq!(versions.next_version(42), 42);
        assert!(Arc::ptr_eq(versions.name(42), &readers.entries()[42].name));
        let id = versions.insert(stream_hash("new"), "new").expect("room");
        assert_eq!(id, 100);
        versions.advance(id, 3);
        readers.push_new(id, versions.name(id).clone(), Locations::from_slice(&[1, 2, 3]));
        assert_eq!(readers.get(stream_hash("new"), b"new").map(|e| e.locations.len()), Some(3));
        assert!(readers.resident_bytes() > 100 * std::mem::size_of::<StreamEntry>());
    }
}
