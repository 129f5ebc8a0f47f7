//! Reads through mmap: one stream by version, the whole log by position, forwards or backwards,
//! as owned [`RecordedEvent`]s or as [`EventRef`]s that borrow the mapped bytes.
//!
//! Invariants:
//! - Only durable records are decoded. A log read snapshots the durable watermark (a position)
//!   and walks the durable-group directory, which holds durable groups only. A stream read
//!   snapshots the durable end as a location (`Shared::durable_end`) and keeps only the stream's
//!   locations below it, before decoding anything. The stream table only ever holds durable
//!   records (the submitter adds a group's locations as it publishes the group), so the bound
//!   only makes a read a snapshot: it ignores groups published after it was made. Subscriptions
//!   use the same cursors with an end that moves.
//! - Every record is checked against its CRC32C, and against the position or version the
//!   reader expects there, before it is returned; a mismatch is [`Error::Corrupted`].
//! - No lock is held while a reader touches the mapping: stream locations are copied out in
//!   chunks of `CHUNK_EVENTS` under the stream table lock, groups are looked up one at a time.
//!   Readers never block the writer for longer than that copy.
//! - Decoding allocates nothing per event: [`EventRef`] borrows the mapping, held by the
//!   iterator (an `Arc`, so the segment map cache may evict it meanwhile). Only the owned
//!   `Iterator` items copy the fields out.
//! - Readers ignore lock poisoning: a submitter that panicked poisons the store, and durable
//!   events must stay readable after that; what it left half-done lies past the durable end.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use memmap2::Mmap;

use crate::constants::{GROUP_HEADER_BYTES, RECORD_HEADER_BYTES};
use crate::error::{Error, Result};
use crate::log::index::{stream_hash, unpack_location, GroupLocation};
use crate::log::recent::GroupCopy;
use crate::log::record::{self, GroupHeader, RecordView};
use crate::shared::Shared;
use crate::RecordedEvent;

/// Stream locations copied per visit to the stream table.
const CHUNK_EVENTS: usize = 1024;

/// How many records ahead a stream read prefetches. A stream's records lie far apart in the log
/// (other streams' records between them), so each is a cache miss and usually a TLB miss; the
/// locations are known in advance, so the misses can overlap instead of queueing.
const PREFETCH_AHEAD: usize = 8;

/// How far ahead a sequential reader asks the kernel to read a segment (`MADV_WILLNEED`): the
/// mappings are `MADV_RANDOM` (see log/index.rs), so without it every 4 KiB page of a cold log
/// would be its own synchronous read.
const READAHEAD_BYTES: usize = 4 << 20;

/// Hints the CPU to fetch the cache line at `bytes[offset]` (nothing if it is out of range).
#[inline]
fn prefetch(bytes: &[u8], offset: usize) {
    #[cfg(target_arch = "x86_64")]
    if offset < bytes.len() {
        // SAFETY: the pointer is within `bytes` (checked above); a prefetch reads nothing the
        // program can observe and never faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(bytes.as_ptr().add(offset).cast())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, offset);
}

/// A durable event read in place: its fields borrow the mapped log, nothing is copied. Valid
/// while the iterator that returned it lives (until its next call); [`EventRef::to_recorded`]
/// copies it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    position: u64,
    version: u64,
    timestamp_us: u64,
    stream: &'a str,
    event_type: &'a str,
    data: &'a [u8],
    metadata: &'a [u8],
}

impl<'a> EventRef<'a> {
    /// Position in the log (events count from 0).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Version in its stream (versions count from 0 per stream).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The stream id.
    pub fn stream(&self) -> &'a str {
        self.stream
    }

    /// The event type.
    pub fn event_type(&self) -> &'a str {
        self.event_type
    }

    /// The event's data.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The event's metadata (empty if none was given).
    pub fn metadata(&self) -> &'a [u8] {
        self.metadata
    }

    /// When the group holding the event was built, in microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }

    /// The event copied out of the mapping.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            stream: self.stream.to_string(),
            version: self.version,
            event_type: self.event_type.to_string(),
            data: self.data.to_vec(),
            metadata: self.metadata.to_vec(),
            timestamp_us: self.timestamp_us,
        }
    }
}

pub(crate) fn corrupted(segment: u64, offset: usize, reason: String) -> Error {
    Error::Corrupted { segment, offset: offset as u64, reason }
}

/// `error` with its offset moved by `base`: for records read from a copy of their group.
fn rebase(error: Error, base: usize) -> Error {
    match error {
        Error::Corrupted { segment, offset, reason } => {
            Error::Corrupted { segment, offset: offset + base as u64, reason }
        }
        other => other,
    }
}

fn decode_at(map: &[u8], segment: u64, offset: usize) -> Result<RecordView<'_>> {
    let bytes =
        map.get(offset..).ok_or_else(|| corrupted(segment, offset, "record offset past the segment end".into()))?;
    record::decode(bytes).map_err(|reason| corrupted(segment, offset, reason))
}

/// A record that was found, checked (CRC32C, expected position or version, UTF-8 stream id and
/// event type) and measured: where its fields lie in the mapping of its segment. Cursors return
/// it from their mutable step, and the event is then sliced out of the mapping they hold, so
/// that a record is decoded and checked once, and a failure can be noted before anything
/// borrows the mapping.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Located {
    pub offset: usize,
    pub position: u64,
    pub version: u64,
    pub timestamp_us: u64,
    stream_len: u8,
    type_len: u8,
    metadata_len: u16,
    data_len: u32,
}

impl Located {
    fn new(view: &RecordView<'_>, segment: u64, offset: usize) -> Result<Located> {
        for (bytes, what) in [(view.stream, "stream id"), (view.event_type, "event type")] {
            if std::str::from_utf8(bytes).is_err() {
                return Err(corrupted(segment, offset, format!("{what} is not UTF-8")));
            }
        }
        Ok(Located {
            offset,
            position: view.position,
            version: view.version,
            timestamp_us: view.timestamp_us,
            stream_len: view.stream.len() as u8,
            type_len: view.event_type.len() as u8,
            metadata_len: view.metadata.len() as u16,
            data_len: view.data.len() as u32,
        })
    }

    /// The event, sliced out of `map`, the mapping of its segment that it was checked in.
    pub(crate) fn event<'a>(&self, map: &'a [u8]) -> EventRef<'a> {
        let stream_at = self.offset + RECORD_HEADER_BYTES;
        let type_at = stream_at + self.stream_len as usize;
        let metadata_at = type_at + self.type_len as usize;
        let data_at = metadata_at + self.metadata_len as usize;
        let data_end = data_at + self.data_len as usize;
        let text = |bytes: &'a [u8]| {
            // SAFETY: `Located::new` checked that these very bytes are UTF-8, and they cannot
            // have changed since: the mapping is read-only and the bytes of a durable group are
            // never written again while the store's directory lock is held (the same argument as
            // the mapping's own SAFETY note in log/index.rs).
            unsafe { std::str::from_utf8_unchecked(bytes) }
        };
        EventRef {
            position: self.position,
            version: self.version,
            timestamp_us: self.timestamp_us,
            stream: text(&map[stream_at..type_at]),
            event_type: text(&map[type_at..metadata_at]),
            metadata: &map[metadata_at..data_at],
            data: &map[data_at..data_end],
        }
    }
}

/// Bytes a record is read from: a segment's mapping, or the in-memory copy of a recent group
/// (log/recent.rs). Cloning it is a reference count, never a copy.
#[derive(Clone)]
pub(crate) enum Held {
    Map(Arc<Mmap>),
    Copy(Arc<GroupCopy>),
}

impl std::ops::Deref for Held {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Held::Map(map) => map,
            Held::Copy(bytes) => bytes,
        }
    }
}

/// The mapping of the segment read last.
#[derive(Default)]
pub(crate) struct SegmentCache {
    number: u64,
    map: Option<Arc<Mmap>>,
}

impl SegmentCache {
    fn load(&mut self, shared: &Shared, number: u64) -> Result<&Mmap> {
        if self.map.is_none() || self.number != number {
            let map = shared.index.segment(number)?;
            self.number = number;
            self.map = Some(map);
        }
        Ok(self.map())
    }

    /// The mapping loaded last: the one every `Located` a cursor returned last lies in.
    pub(crate) fn map(&self) -> &Arc<Mmap> {
        self.map.as_ref().expect("a segment is loaded before a record of it is returned")
    }
}

fn group_header(map: &[u8], group: &GroupLocation) -> Result<GroupHeader> {
    group_header_at(map, 0, group)
}

/// The header of `group`, in `bytes` that start at byte `base` of its segment.
fn group_header_at(bytes: &[u8], base: usize, group: &GroupLocation) -> Result<GroupHeader> {
    let offset = group.offset as usize - base;
    let at = group.offset as usize;
    let bytes = bytes
        .get(offset..offset + GROUP_HEADER_BYTES)
        .ok_or_else(|| corrupted(group.segment, at, "group past the segment end".into()))?;
    GroupHeader::decode(bytes).map_err(|e| corrupted(group.segment, at, format!("bad group header: {e:?}")))
}

/// A walk forwards through the log by position, over durable groups. The end (a position, at
/// most the durable watermark) is given at each step, so a subscription can move it.
pub(crate) struct LogCursor {
    next_position: u64,
    started: bool,
    group_index: usize,
    segment: u64,
    /// Next record offset in the current group's segment, and the end of the group's records.
    offset: usize,
    group_end: usize,
    /// Segment and offset up to which readahead was requested.
    readahead: (u64, usize),
    cache: SegmentCache,
    /// The current group's bytes, and the segment offset where they start (0 for the mapping,
    /// the group's offset for an in-memory copy): `offset` and `group_end` index `held`.
    held: Option<Held>,
    base: usize,
}

impl LogCursor {
    pub(crate) fn new(from_position: u64) -> LogCursor {
        LogCursor {
            next_position: from_position,
            started: false,
            group_index: 0,
            segment: 0,
            offset: 0,
            group_end: 0,
            readahead: (0, 0),
            cache: SegmentCache::default(),
            held: None,
            base: 0,
        }
    }

    /// Position of the next record this cursor returns.
    pub(crate) fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The bytes every `Located` this cursor returned last lies in.
    pub(crate) fn held(&self) -> &Held {
        self.held.as_ref().expect("a group is loaded before a record of it is returned")
    }

    /// Moves to the next group (or the one holding `next_position` at the start).
    fn advance_group(&mut self, shared: &Shared) -> Result<bool> {
        let found = if self.started {
            shared.index.group_at(self.group_index + 1).map(|g| (self.group_index + 1, g))
        } else {
            shared.index.group_of(self.next_position)
        };
        let Some((index, group)) = found else { return Ok(false) };
        // A group published moments ago is still in memory: reading it through the mapping
        // would wait for a disk read of bytes the writer had in a buffer (log/recent.rs).
        let (held, base) = match shared.index.recent.find(group.segment, group.offset) {
            Some(copy) => (Held::Copy(copy), group.offset as usize),
            None => {
                self.cache.load(shared, group.segment)?;
                (Held::Map(self.cache.map().clone()), 0)
            }
        };
        let header = group_header_at(&held, base, &group)?;
        let from_memory = matches!(held, Held::Copy(_));
        self.held = Some(held);
        self.base = base;
        if !self.started {
            // A log need not start at position 0 (its first segment names where it starts).
            self.next_position = self.next_position.max(group.first_position);
            self.started = true;
        }
        self.group_index = index;
        self.segment = group.segment;
        self.offset = group.offset as usize - base + GROUP_HEADER_BYTES;
        self.group_end = self.offset + header.body_bytes as usize;
        let segment_end = group.offset as usize + GROUP_HEADER_BYTES + header.body_bytes as usize;
        if !from_memory && (self.readahead.0 != group.segment || self.readahead.1 < segment_end) {
            // One madvise per window, not per group: at low load a group is one small event.
            let map = self.cache.map();
            let end = (group.offset as usize + READAHEAD_BYTES).max(segment_end).min(map.len());
            let start = group.offset as usize & !(4095);
            // A hint: refused, the read is as correct, only slower when cold.
            let _ = map.advise_range(memmap2::Advice::WillNeed, start, end - start);
            self.readahead = (group.segment, end);
        }
        Ok(true)
    }

    /// The next record below position `end` (which must be durable), or `None` at `end`; the
    /// record lies in [`LogCursor::map`].
    pub(crate) fn advance(&mut self, shared: &Shared, end: u64) -> Result<Option<Located>> {
        loop {
            if self.next_position >= end {
                return Ok(None);
            }
            if !self.started || self.offset >= self.group_end {
                if !self.advance_group(shared)? {
                    return Ok(None);
                }
                continue;
            }
            let at = self.offset;
            let held = self.held.as_deref().expect("a current group");
            // Errors name the offset in the segment, wherever the bytes were read from.
            let view = decode_at(held, self.segment, at).map_err(|e| rebase(e, self.base))?;
            self.offset += view.len;
            if view.position < self.next_position {
                continue;
            }
            if view.position != self.next_position {
                return Err(corrupted(
                    self.segment,
                    at + self.base,
                    format!("expected position {}, found {}", self.next_position, view.position),
                ));
            }
            let located = Located::new(&view, self.segment, at).map_err(|e| rebase(e, self.base))?;
            self.next_position += 1;
            return Ok(Some(located));
        }
    }
}

/// A walk forwards through one stream by version, over its locations below an end location.
pub(crate) struct StreamCursor {
    stream: Box<str>,
    hash: u64,
    next_version: u64,
    chunk: Vec<u64>,
    chunk_at: usize,
    cache: SegmentCache,
}

impl StreamCursor {
    pub(crate) fn new(stream: &str, from_version: u64) -> StreamCursor {
        StreamCursor {
            stream: stream.into(),
            hash: stream_hash(stream),
            next_version: from_version,
            chunk: Vec::new(),
            chunk_at: 0,
            cache: SegmentCache::default(),
        }
    }

    pub(crate) fn map(&self) -> &Arc<Mmap> {
        self.cache.map()
    }

    /// How many of the stream's events from the next version on lie below `end_location`.
    pub(crate) fn backlog(&self, shared: &Shared, end_location: u64) -> u64 {
        let buffered = (self.chunk.len() - self.chunk_at) as u64;
        let from = self.next_version + buffered;
        let more = shared
            .index
            .with_stream(self.hash, self.stream.as_bytes(), |all| {
                let from = (from as usize).min(all.len());
                all[from..].partition_point(|&location| location < end_location)
            })
            .unwrap_or(0);
        buffered + more as u64
    }

    fn refill(&mut self, shared: &Shared, end_location: u64) {
        self.chunk.clear();
        self.chunk_at = 0;
        let (chunk, next_version) = (&mut self.chunk, self.next_version);
        shared.index.with_stream(self.hash, self.stream.as_bytes(), |all| {
            let from = (next_version as usize).min(all.len());
            let to = (from + CHUNK_EVENTS).min(all.len());
            let locations = &all[from..to];
            // Locations grow with versions: the durable ones are a prefix.
            let durable = locations.partition_point(|&location| location < end_location);
            chunk.extend_from_slice(&locations[..durable]);
        });
    }

    /// The stream's next record located below `end_location`, or `None` if there is none yet;
    /// the record lies in [`StreamCursor::map`].
    pub(crate) fn advance(&mut self, shared: &Shared, end_location: u64) -> Result<Option<Located>> {
        if self.chunk_at == self.chunk.len() {
            self.refill(shared, end_location);
            if self.chunk.is_empty() {
                return Ok(None);
            }
        }
        let located = self.check(shared, self.chunk[self.chunk_at], self.next_version)?;
        self.chunk_at += 1;
        self.next_version += 1;
        Ok(Some(located))
    }

    /// Decodes the record at `location`, which must be `version` of this stream, and prefetches
    /// the record `PREFETCH_AHEAD` places further in the chunk (forwards or backwards alike: the
    /// chunk is in reading order).
    fn check(&mut self, shared: &Shared, location: u64, version: u64) -> Result<Located> {
        let (segment, offset) = unpack_location(location);
        let map = self.cache.load(shared, segment)?;
        if let Some(&ahead) = self.chunk.get(self.chunk_at + PREFETCH_AHEAD) {
            let (ahead_segment, ahead_offset) = unpack_location(ahead);
            if ahead_segment == segment {
                prefetch(map, ahead_offset);
            }
        }
        let view = decode_at(map, segment, offset)?;
        if view.version != version || view.stream != self.stream.as_bytes() {
            return Err(corrupted(
                segment,
                offset,
                format!("expected {}@{version}, found another record", self.stream),
            ));
        }
        Located::new(&view, segment, offset)
    }
}

/// Reads to the end (`u64::MAX`): the last event, for `from_version`/`from_position` of the
/// backward reads, which start at the newest durable event at or below it.
pub const END: u64 = u64::MAX;

/// Iterator over one stream's durable events in version order, or in reverse order (see
/// [`crate::Store::read_stream_backwards`]). It sees the events durable when it was made.
///
/// Each item is an owned [`RecordedEvent`]; [`StreamEvents::next_ref`] reads without copying.
pub struct StreamEvents {
    shared: Arc<Shared>,
    backwards: bool,
    /// Forwards: the cursor. Backwards: its stream, hash and chunk (read in reverse).
    cursor: StreamCursor,
    /// Backwards: the next version to return, plus one (0: done).
    below: u64,
    /// Location of the durable end when the iterator was made: only records below it are read.
    durable_end: u64,
    remaining: u64,
    failed: bool,
}

impl StreamEvents {
    pub(crate) fn new(shared: Arc<Shared>, stream: &str, from_version: u64, backwards: bool) -> StreamEvents {
        let durable_end = shared.durable_end.load(Ordering::Acquire);
        let mut cursor = StreamCursor::new(stream, from_version);
        let mut below = 0;
        if backwards {
            let durable = shared
                .index
                .with_stream(cursor.hash, stream.as_bytes(), |all| {
                    all.partition_point(|&location| location < durable_end) as u64
                })
                .unwrap_or(0);
            below = from_version.saturating_add(1).min(durable);
            cursor.next_version = below;
        }
        StreamEvents { shared, backwards, cursor, below, durable_end, remaining: u64::MAX, failed: false }
    }

    /// Returns at most `count` events.
    pub fn max_count(mut self, count: u64) -> StreamEvents {
        self.remaining = count;
        self
    }

    fn refill_backwards(&mut self) {
        let cursor = &mut self.cursor;
        cursor.chunk.clear();
        cursor.chunk_at = 0;
        let to = self.below as usize;
        let from = to.saturating_sub(CHUNK_EVENTS);
        let chunk = &mut cursor.chunk;
        self.shared.index.with_stream(cursor.hash, cursor.stream.as_bytes(), |all| {
            if to <= all.len() {
                chunk.extend(all[from..to].iter().rev());
            }
        });
    }

    fn advance(&mut self) -> Result<Option<Located>> {
        if !self.backwards {
            return self.cursor.advance(&self.shared, self.durable_end);
        }
        if self.below == 0 {
            return Ok(None);
        }
        if self.cursor.chunk_at == self.cursor.chunk.len() {
            self.refill_backwards();
            if self.cursor.chunk.is_empty() {
                return Ok(None);
            }
        }
        let version = self.below - 1;
        let location = self.cursor.chunk[self.cursor.chunk_at];
        let located = self.cursor.check(&self.shared, location, version)?;
        self.cursor.chunk_at += 1;
        self.below = version;
        Ok(Some(located))
    }

    /// The next event, borrowing the mapped log (valid until the next call): no copy, no
    /// allocation. Mixing it with [`Iterator::next`] is fine; they share one position.
    pub fn next_ref(&mut self) -> Option<Result<EventRef<'_>>> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        match self.advance() {
            Ok(Some(located)) => {
                self.remaining -= 1;
                Some(Ok(located.event(self.cursor.map())))
            }
            Ok(None) => {
                self.remaining = 0;
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for StreamEvents {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(|event| event.to_recorded()))
    }
}

/// Version of the last durable event of `stream`. Locations grow with versions, so the durable
/// ones are a prefix, found by comparing locations with the durable end: no record is decoded
/// and no page of the log touched while the stream table lock is held.
pub(crate) fn last_durable_version(shared: &Shared, stream: &str) -> Option<u64> {
    let durable_end = shared.durable_end.load(Ordering::Acquire);
    let durable_count = shared.index.with_stream(stream_hash(stream), stream.as_bytes(), |locations| {
        locations.partition_point(|&location| location < durable_end)
    })?;
    (durable_count as u64).checked_sub(1)
}

/// Iterator over the whole log in position order, or in reverse order (see
/// [`crate::Store::read_all_backwards`]). It sees the events durable when it was made.
///
/// Each item is an owned [`RecordedEvent`]; [`AllEvents::next_ref`] reads without copying.
pub struct AllEvents {
    shared: Arc<Shared>,
    /// Durable watermark when the iterator was made.
    durable: u64,
    forwards: LogCursor,
    backwards: Option<Backwards>,
    remaining: u64,
    failed: bool,
}

/// The state of a backward log read: the group being read, its record offsets (read forwards,
/// returned from the back), and the next position to return plus one.
struct Backwards {
    started: bool,
    group_index: usize,
    /// The records of the group being read, up to the target, checked.
    offsets: Vec<Located>,
    below: u64,
    cache: SegmentCache,
}

impl AllEvents {
    pub(crate) fn new(shared: Arc<Shared>, from_position: u64, backwards: bool) -> AllEvents {
        let durable = shared.durable.load(Ordering::Acquire);
        let backwards = backwards.then(|| Backwards {
            started: false,
            group_index: 0,
            offsets: Vec::new(),
            below: from_position.saturating_add(1).min(durable),
            cache: SegmentCache::default(),
        });
        AllEvents {
            shared,
            durable,
            forwards: LogCursor::new(from_position),
            backwards,
            remaining: u64::MAX,
            failed: false,
        }
    }

    /// Returns at most `count` events.
    pub fn max_count(mut self, count: u64) -> AllEvents {
        self.remaining = count;
        self
    }

    fn advance(&mut self) -> Result<Option<Located>> {
        match self.backwards.as_mut() {
            None => self.forwards.advance(&self.shared, self.durable),
            Some(backwards) => backwards.advance(&self.shared),
        }
    }

    /// The next event, borrowing the mapped log (valid until the next call): no copy, no
    /// allocation. Mixing it with [`Iterator::next`] is fine; they share one position.
    pub fn next_ref(&mut self) -> Option<Result<EventRef<'_>>> {
        if self.failed || self.remaining == 0 {
            return None;
        }
        match self.advance() {
            Ok(Some(located)) => {
                self.remaining -= 1;
                let map = match &self.backwards {
                    None => &**self.forwards.held(),
                    Some(backwards) => &**backwards.cache.map(),
                };
                Some(Ok(located.event(map)))
            }
            Ok(None) => {
                self.remaining = 0;
                None
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Backwards {
    /// Loads the group holding position `below - 1` and the offsets of its records up to it.
    fn load_group(&mut self, shared: &Shared) -> Result<bool> {
        let target = self.below - 1;
        let found = if self.started {
            self.group_index.checked_sub(1).and_then(|index| shared.index.group_at(index).map(|g| (index, g)))
        } else {
            shared.index.group_of(target)
        };
        let Some((index, group)) = found else { return Ok(false) };
        if group.first_position > target {
            // The log starts after `target`.
            return Ok(false);
        }
        self.started = true;
        self.group_index = index;
        let map = self.cache.load(shared, group.segment)?;
        let header = group_header(map, &group)?;
        self.offsets.clear();
        let mut at = group.offset as usize + GROUP_HEADER_BYTES;
        let end = at + header.body_bytes as usize;
        let mut position = group.first_position;
        while at < end && position <= target {
            let view = decode_at(map, group.segment, at)?;
            if view.position != position {
                return Err(corrupted(
                    group.segment,
                    at,
                    format!("expected position {position}, found {}", view.position),
                ));
            }
            self.offsets.push(Located::new(&view, group.segment, at)?);
            at += view.len;
            position += 1;
        }
        if position <= target {
            return Err(corrupted(
                group.segment,
                group.offset as usize,
                format!("group ends before position {target}"),
            ));
        }
        Ok(true)
    }

    /// The record at `below - 1`; it lies in `self.cache.map()`.
    fn advance(&mut self, shared: &Shared) -> Result<Option<Located>> {
        if self.below == 0 {
            return Ok(None);
        }
        if self.offsets.is_empty() && !self.load_group(shared)? {
            self.below = 0;
            return Ok(None);
        }
        let located = self.offsets.pop().expect("a loaded group has records up to the target");
        self.below -= 1;
        Ok(Some(located))
    }
}

impl Iterator for AllEvents {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_ref().map(|r| r.map(|event| event.to_recorded()))
    }
}
