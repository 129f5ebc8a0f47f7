//! In-memory indexes, rebuilt by recovery and extended by the submitter.
//!
//! - Streams: a hash table from stream id to the locations of its records, in version order
//!   (version `v` is `locations[v]`). The submitter appends a location when it encodes a record,
//!   before the record is durable; readers therefore check every record's position against the
//!   durable watermark and never return one at or past it.
//! - Groups: the durable groups in log order (first position, segment, offset), appended only
//!   once a group is durable. `read_all` finds its starting group by binary search.
//! - Segments: a read-only mmap of every segment in use, by number.
//!
//! A location packs the segment number in the top 24 bits and the byte offset of the record in
//! the low 40 bits.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, RwLock};

use hashbrown::HashTable;
use memmap2::Mmap;

use crate::constants::LOCATION_OFFSET_BITS;

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

#[derive(Default)]
pub(crate) struct Index {
    pub streams: Mutex<StreamTable>,
    pub groups: RwLock<Vec<GroupLocation>>,
    pub segments: RwLock<BTreeMap<u64, Arc<Mmap>>>,
}

impl Index {
    pub(crate) fn segment(&self, number: u64) -> Option<Arc<Mmap>> {
        self.segments.read().expect("segments lock").get(&number).cloned()
    }

    /// Index into `groups` of the group holding `position`, if it is durable.
    pub(crate) fn group_of(&self, position: u64) -> Option<(usize, GroupLocation)> {
        let groups = self.groups.read().expect("groups lock");
        let at = groups.partition_point(|g| g.first_position <= position);
        if at == 0 {
            return None;
        }
        Some((at - 1, groups[at - 1]))
    }

    pub(crate) fn group_at(&self, index: usize) -> Option<GroupLocation> {
        self.groups.read().expect("groups lock").get(index).copied()
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
