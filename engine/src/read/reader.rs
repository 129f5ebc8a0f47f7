//! Reads through mmap: one stream by version, the whole log by position.
//!
//! Both iterators snapshot the durable end when created and never look at a record at or past
//! it, so they only ever see durable events, and every record is checked against its CRC32C
//! before it is returned. Stream reads copy the stream's locations in chunks so the stream table
//! lock is held only briefly, and keep only the locations below the durable end location
//! (`Shared::durable_end`) before decoding anything: the submitter registers a record's location
//! when it places it, while its bytes on disk are still zeros (or, after a failed write, never
//! will be). Log reads walk the durable-group directory, which holds durable groups only. No
//! lock is held while a reader touches the mapping. Readers ignore lock poisoning: a submitter
//! that panicked poisons the store, and durable events must stay readable after that; what it
//! left half-done lies past the durable end, where readers never look.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use memmap2::Mmap;

use crate::constants::GROUP_HEADER_BYTES;
use crate::error::{Error, Result};
use crate::log::index::{stream_hash, unpack_location, GroupLocation};
use crate::log::record::{self, GroupHeader, RecordView};
use crate::shared::Shared;
use crate::RecordedEvent;

const CHUNK_EVENTS: usize = 1024;

/// Caches the mapping of the segment last read.
#[derive(Default)]
struct SegmentCache {
    number: u64,
    map: Option<Arc<Mmap>>,
}

impl SegmentCache {
    fn get(&mut self, shared: &Shared, number: u64) -> Result<&Mmap> {
        if self.map.is_none() || self.number != number {
            let map = shared.index.segment(number)?;
            self.number = number;
            self.map = Some(map);
        }
        Ok(self.map.as_deref().expect("just set"))
    }
}

fn corrupted(segment: u64, offset: usize, reason: String) -> Error {
    Error::Corrupted { segment, offset: offset as u64, reason }
}

fn to_event(view: &RecordView<'_>, segment: u64, offset: usize) -> Result<RecordedEvent> {
    let text = |bytes: &[u8], what: &str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupted(segment, offset, format!("{what} is not UTF-8")))
    };
    Ok(RecordedEvent {
        position: view.position,
        stream: text(view.stream, "stream id")?,
        version: view.version,
        event_type: text(view.event_type, "event type")?,
        data: view.data.to_vec(),
        metadata: view.metadata.to_vec(),
        timestamp_us: view.timestamp_us,
    })
}

fn decode_at(map: &Mmap, segment: u64, offset: usize) -> Result<RecordView<'_>> {
    let bytes =
        map.get(offset..).ok_or_else(|| corrupted(segment, offset, "record offset past the segment end".into()))?;
    record::decode(bytes).map_err(|reason| corrupted(segment, offset, reason))
}

/// Iterator over one stream's durable events, in version order.
pub struct StreamEvents {
    shared: Arc<Shared>,
    stream: String,
    hash: u64,
    next_version: u64,
    /// Location of the durable end when the iterator was made: only records below it are read.
    durable_end: u64,
    chunk: Vec<u64>,
    chunk_at: usize,
    cache: SegmentCache,
    finished: bool,
}

impl StreamEvents {
    pub(crate) fn new(shared: Arc<Shared>, stream: &str, from_version: u64) -> StreamEvents {
        let durable_end = shared.durable_end.load(Ordering::Acquire);
        StreamEvents {
            shared,
            stream: stream.to_string(),
            hash: stream_hash(stream),
            next_version: from_version,
            durable_end,
            chunk: Vec::new(),
            chunk_at: 0,
            cache: SegmentCache::default(),
            finished: false,
        }
    }

    fn refill(&mut self) {
        self.chunk.clear();
        self.chunk_at = 0;
        let (chunk, next_version, durable_end) = (&mut self.chunk, self.next_version, self.durable_end);
        self.shared.index.with_stream(self.hash, self.stream.as_bytes(), |all| {
            let from = (next_version as usize).min(all.len());
            let to = (from + CHUNK_EVENTS).min(all.len());
            let locations = &all[from..to];
            // Locations grow with versions: the durable ones are a prefix.
            let durable = locations.partition_point(|&location| location < durable_end);
            chunk.extend_from_slice(&locations[..durable]);
        });
    }
}

impl Iterator for StreamEvents {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        if self.chunk_at == self.chunk.len() {
            self.refill();
            if self.chunk.is_empty() {
                self.finished = true;
                return None;
            }
        }
        let (segment, offset) = unpack_location(self.chunk[self.chunk_at]);
        let result = self.cache.get(&self.shared, segment).and_then(|map| {
            let view = decode_at(map, segment, offset)?;
            if view.version != self.next_version || view.stream != self.stream.as_bytes() {
                return Err(corrupted(
                    segment,
                    offset,
                    format!("expected {}@{}, found another record", self.stream, self.next_version),
                ));
            }
            to_event(&view, segment, offset)
        });
        match result {
            Ok(event) => {
                self.chunk_at += 1;
                self.next_version += 1;
                Some(Ok(event))
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

/// Version of the last durable event of `stream`. Locations grow with versions, so the durable
/// ones are a prefix, found by comparing locations with the durable end: no record is decoded
/// and no page of the log touched while the stream table lock (which the submitter needs for
/// every batch) is held.
pub(crate) fn last_durable_version(shared: &Shared, stream: &str) -> Option<u64> {
    let durable_end = shared.durable_end.load(Ordering::Acquire);
    let durable_count = shared.index.with_stream(stream_hash(stream), stream.as_bytes(), |locations| {
        locations.partition_point(|&location| location < durable_end)
    })?;
    (durable_count as u64).checked_sub(1)
}

/// Iterator over the whole log in position order.
pub struct AllEvents {
    shared: Arc<Shared>,
    next_position: u64,
    durable: u64,
    group_index: Option<usize>,
    group: Option<GroupLocation>,
    /// Next record offset in the current group's segment, and the end of the group's records.
    offset: usize,
    group_end: usize,
    cache: SegmentCache,
    finished: bool,
}

impl AllEvents {
    pub(crate) fn new(shared: Arc<Shared>, from_position: u64) -> AllEvents {
        let durable = shared.durable.load(Ordering::Acquire);
        AllEvents {
            shared,
            next_position: from_position,
            durable,
            group_index: None,
            group: None,
            offset: 0,
            group_end: 0,
            cache: SegmentCache::default(),
            finished: false,
        }
    }

    /// Moves to the next group (or the one holding `next_position` at the start).
    fn advance_group(&mut self) -> Result<bool> {
        let found = match self.group_index {
            None => self.shared.index.group_of(self.next_position),
            Some(index) => self.shared.index.group_at(index + 1).map(|g| (index + 1, g)),
        };
        let Some((index, group)) = found else { return Ok(false) };
        let map = self.cache.get(&self.shared, group.segment)?;
        let offset = group.offset as usize;
        let header = map
            .get(offset..offset + GROUP_HEADER_BYTES)
            .ok_or_else(|| corrupted(group.segment, offset, "group past the segment end".into()))
            .and_then(|bytes| {
                GroupHeader::decode(bytes)
                    .map_err(|e| corrupted(group.segment, offset, format!("bad group header: {e:?}")))
            })?;
        if self.group_index.is_none() {
            // A log need not start at position 0 (its first segment names where it starts).
            self.next_position = self.next_position.max(group.first_position);
        }
        self.group_index = Some(index);
        self.group = Some(group);
        self.offset = offset + GROUP_HEADER_BYTES;
        self.group_end = self.offset + header.body_bytes as usize;
        Ok(true)
    }

    fn next_event(&mut self) -> Result<Option<RecordedEvent>> {
        loop {
            if self.next_position >= self.durable {
                return Ok(None);
            }
            if self.group.is_none() || self.offset >= self.group_end {
                if !self.advance_group()? {
                    return Ok(None);
                }
                continue;
            }
            let group = self.group.expect("a current group");
            let map = self.cache.get(&self.shared, group.segment)?;
            let view = decode_at(map, group.segment, self.offset)?;
            let at = self.offset;
            self.offset += view.len;
            if view.position < self.next_position {
                continue;
            }
            if view.position != self.next_position {
                return Err(corrupted(
                    group.segment,
                    at,
                    format!("expected position {}, found {}", self.next_position, view.position),
                ));
            }
            self.next_position += 1;
            return to_event(&view, group.segment, at).map(Some);
        }
    }
}

impl Iterator for AllEvents {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}
