//! Index checkpoints: the stream table and the group directory as of a durable log end, in one
//! file, so that `Store::open` reads them and scans only the log written after that end.
//!
//! Layout of `<dir>/index.checkpoint` (all integers little-endian; byte by byte in
//! docs/format.md): a 128-byte header (magic `EVCHECKP`, format version, CRC32C of the header,
//! body length and CRC32C of the body, the end it covers: next position, next group sequence
//! number and end location, the section counts, and the length and CRC32C of the last group it
//! covers), then the body: the covered segments (40 bytes each), the group directory (16 bytes
//! per group) and the streams (name, count, locations).
//!
//! Protocol:
//! - Written from the readers' stream table, which holds durable records only. The writer reads
//!   the end it covers (`durable_end`, `durable`, the group count) under the table's read lock,
//!   which the submitter holds while it publishes a group, so the three agree; then it copies the
//!   streams in chunks of `CHECKPOINT_CHUNK_LOCATIONS` locations, one short read lock each,
//!   keeping only locations below that end. Tables only grow and locations grow with positions,
//!   so the chunks add up to the table exactly as it was at that end, while the submitter goes on
//!   publishing between them: a checkpoint never stalls the hot path for more than one chunk.
//! - Written atomically: a temporary file (made durable a MiB at a time, so that the syncs of
//!   groups written meanwhile do not wait for all of it at once), fsync, rename over the old one, fsync of the
//!   directory. A crash leaves the old checkpoint or the new one, never a mix; a leftover
//!   temporary file is removed at open.
//! - Written by a background thread (`evstore-checkpointer`, at low priority) once the log has
//!   grown by `Options::checkpoint_log_bytes` and by at least the size of the last checkpoint
//!   (so that checkpoints never write more than the log does), at a clean close, and on
//!   `Store::checkpoint`. One writer at a time. Never with `SyncMode::None` (its groups are not
//!   known to be durable) or on a poisoned store.
//!
//! Invariants: a checkpoint covers only durable groups, so a log that holds what was
//! acknowledged holds everything it covers. Recovery trusts it only if its checksums hold, the
//! segments it covers are the same files (number, first position and creation time from their
//! headers), and the last group it covers is still there, byte for byte (its CRC32C); anything
//! else falls back to a full scan with a warning, never to an answer from the checkpoint.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::buffer::round_up_block;
use crate::constants::{CHECKPOINT_CHUNK_LOCATIONS, CHECKPOINT_SYNC_BYTES, GROUP_HEADER_BYTES};
use crate::error::{Error, Result};
use crate::log::index::{pack_location, unpack_location, GroupLocation, Locations, SegmentSummary, StreamTable};
use crate::log::record::{self, GroupHeader};
use crate::log::{index, segment};
use crate::shared::Shared;
use crate::testing::FaultPlan;
use crate::{platform, SyncMode};

pub(crate) const FILE_NAME: &str = "index.checkpoint";
pub(crate) const TEMP_FILE_NAME: &str = "index.checkpoint.tmp";
const MAGIC: &[u8; 8] = b"EVCHECKP";
const VERSION: u32 = 1;
pub(crate) const HEADER_BYTES: usize = 128;
const SEGMENT_ENTRY_BYTES: usize = 48;
const GROUP_ENTRY_BYTES: usize = 16;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// What a checkpoint file holds, decoded and checked against itself (not yet against the log).
pub(crate) struct Checkpoint {
    pub next_position: u64,
    pub next_seq: u64,
    /// Location just past the last group it covers.
    pub end_location: u64,
    pub segments: Vec<SegmentSummary>,
    /// Per covered segment, its file's modification time (ns since the epoch) when the
    /// checkpoint was written: a file written since then is scanned again.
    pub modified_ns: Vec<u64>,
    pub groups: Vec<GroupLocation>,
    pub streams: StreamTable,
    /// `32 + body_bytes` of the last group it covers, and the CRC32C of those bytes.
    pub last_group_bytes: u64,
    pub last_group_crc: u32,
    pub file_bytes: u64,
}

/// The checkpoint bookkeeping of an open store (in `Index`).
pub(crate) struct CheckpointState {
    /// One writer at a time: the background thread, `Store::checkpoint` and the close.
    writing: Mutex<()>,
    /// The position the checkpoint on disk covers (`u64::MAX`: none known).
    pub covered_position: AtomicU64,
    /// Its size in bytes.
    pub file_bytes: AtomicU64,
    /// Set by the submitter as it exits, under `writing`: the directory lock goes with it, and
    /// no checkpoint may be written after that.
    closed: AtomicBool,
}

impl CheckpointState {
    pub(crate) fn new(covered_position: Option<u64>, file_bytes: u64) -> CheckpointState {
        CheckpointState {
            writing: Mutex::new(()),
            covered_position: AtomicU64::new(covered_position.unwrap_or(u64::MAX)),
            file_bytes: AtomicU64::new(file_bytes),
            closed: AtomicBool::new(false),
        }
    }

    /// No checkpoint is written from now on (the submitter is about to release the directory
    /// lock); waits for one being written.
    pub(crate) fn close(&self) {
        let _writing = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.closed.store(true, Ordering::SeqCst);
    }
}

struct Header {
    body_bytes: u64,
    body_crc: u32,
    next_position: u64,
    next_seq: u64,
    end_location: u64,
    segment_count: u64,
    group_count: u64,
    stream_count: u64,
    last_group_bytes: u64,
    last_group_crc: u32,
    written_us: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut out = [0u8; HEADER_BYTES];
        out[0..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[24..28].copy_from_slice(&self.body_crc.to_le_bytes());
        out[32..40].copy_from_slice(&self.next_position.to_le_bytes());
        out[40..48].copy_from_slice(&self.next_seq.to_le_bytes());
        out[48..56].copy_from_slice(&self.end_location.to_le_bytes());
        out[56..64].copy_from_slice(&self.segment_count.to_le_bytes());
        out[64..72].copy_from_slice(&self.group_count.to_le_bytes());
        out[72..80].copy_from_slice(&self.stream_count.to_le_bytes());
        out[80..88].copy_from_slice(&self.last_group_bytes.to_le_bytes());
        out[88..92].copy_from_slice(&self.last_group_crc.to_le_bytes());
        out[96..104].copy_from_slice(&self.written_us.to_le_bytes());
        let crc = crc32c::crc32c(&out[16..]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<Header, String> {
        if bytes.len() < HEADER_BYTES {
            return Err(format!("the file is {} bytes long, shorter than its header", bytes.len()));
        }
        if &bytes[0..8] != MAGIC {
            return Err("bad magic".into());
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(format!("format version {version}, this build reads {VERSION}"));
        }
        let crc = crc32c::crc32c(&bytes[16..HEADER_BYTES]);
        if crc != u32_at(bytes, 12) {
            return Err("the header's checksum does not match".into());
        }
        Ok(Header {
            body_bytes: u64_at(bytes, 16),
            body_crc: u32_at(bytes, 24),
            next_position: u64_at(bytes, 32),
            next_seq: u64_at(bytes, 40),
            end_location: u64_at(bytes, 48),
            segment_count: u64_at(bytes, 56),
            group_count: u64_at(bytes, 64),
            stream_count: u64_at(bytes, 72),
            last_group_bytes: u64_at(bytes, 80),
            last_group_crc: u32_at(bytes, 88),
            written_us: u64_at(bytes, 96),
        })
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Takes bytes off the front of a body, refusing to read past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if n > self.bytes.len() {
            return Err("a section runs past the end of the file".into());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64_at(self.take(8)?, 0))
    }
}

/// Reads and checks `<dir>/index.checkpoint`. `Ok(None)`: there is none. `Err(reason)`: it is
/// there but unusable (damaged, cut, or saying something impossible).
pub(crate) fn load(dir: &Path) -> Result<Option<std::result::Result<Checkpoint, String>>> {
    let path = path(dir);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let len = file.metadata().map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?.len();
    if len == 0 {
        return Ok(Some(Err("the file is empty".into())));
    }
    // Mapped, not read: the bytes are decoded once, straight from the page cache (a read would
    // first copy tens of megabytes into fresh memory, which was a third of a clean open).
    // SAFETY: the directory lock is held, so no other store writes the file, and this process
    // replaces it only by renaming a new file over it, which leaves the mapped one intact.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
        .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
    Ok(Some(decode(&map)))
}

fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    let header = Header::decode(bytes)?;
    let body = &bytes[HEADER_BYTES..];
    if header.body_bytes != body.len() as u64 {
        return Err(format!("the header says {} bytes follow it, the file holds {}", header.body_bytes, body.len()));
    }
    if crc32c::crc32c(body) != header.body_crc {
        return Err("the body's checksum does not match".into());
    }
    let mut cursor = Cursor { bytes: body };
    let count = |n: u64, each: usize| -> std::result::Result<usize, String> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n.checked_mul(each).is_some_and(|b| b <= body.len()))
            .ok_or_else(|| format!("a count of {n} cannot fit in the file"))
    };
    let segment_count = count(header.segment_count, SEGMENT_ENTRY_BYTES)?;
    let group_count = count(header.group_count, GROUP_ENTRY_BYTES)?;
    let stream_count = count(header.stream_count, 10)?;
    if segment_count == 0 || group_count == 0 {
        return Err("it covers no group".into());
    }
    let mut segments = Vec::with_capacity(segment_count);
    let mut modified_ns = Vec::with_capacity(segment_count);
    for _ in 0..segment_count {
        segments.push(SegmentSummary {
            number: cursor.u64()?,
            created_us: cursor.u64()?,
            first_position: cursor.u64()?,
            first_seq: cursor.u64()?,
            end_offset: cursor.u64()?,
        });
        modified_ns.push(cursor.u64()?);
    }
    let mut groups = Vec::with_capacity(group_count);
    for _ in 0..group_count {
        let first_position = cursor.u64()?;
        let (segment, offset) = unpack_location(cursor.u64()?);
        groups.push(GroupLocation { first_position, segment, offset: offset as u64 });
    }
    let (end_segment, end_offset) = unpack_location(header.end_location);
    let first_position = segments[0].first_position;
    let ordered =
        segments.windows(2).all(|w| w[0].number + 1 == w[1].number && w[0].first_position <= w[1].first_position)
            && groups.windows(2).all(|w| w[0].first_position < w[1].first_position)
            && segments.last().is_some_and(|s| s.number == end_segment)
            && groups.last().is_some_and(|g| g.segment == end_segment && (g.offset as usize) < end_offset)
            && header.next_position > first_position;
    if !ordered {
        return Err("its segments, groups and end do not follow each other".into());
    }
    let mut streams = StreamTable::with_capacity(stream_count);
    let mut events = 0u64;
    for _ in 0..stream_count {
        let name_len = cursor.take(1)?[0] as usize;
        let name = std::str::from_utf8(cursor.take(name_len)?).map_err(|_| "a stream name is not UTF-8".to_string())?;
        let n = cursor.u64()?;
        let n = count(n, 8)?;
        let raw = cursor.take(n * 8)?;
        let mut locations = Locations::with_capacity(n);
        locations.extend(raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))));
        let increasing = locations.windows(2).all(|w| w[0] < w[1]);
        if name.is_empty() || n == 0 || !increasing || locations[n - 1] >= header.end_location {
            return Err(format!("stream {name:?} is not a valid entry"));
        }
        if streams.get(index::stream_hash(name), name.as_bytes()).is_some() {
            return Err(format!("stream {name:?} is there twice"));
        }
        let id = streams.len() as u32;
        streams.push_new(id, Arc::from(name), locations);
        events += n as u64;
    }
    if !cursor.bytes.is_empty() {
        return Err("bytes follow the last stream".into());
    }
    if events != header.next_position - first_position {
        return Err(format!(
            "its streams hold {events} events, its end says {}",
            header.next_position - first_position
        ));
    }
    Ok(Checkpoint {
        next_position: header.next_position,
        next_seq: header.next_seq,
        end_location: header.end_location,
        segments,
        modified_ns,
        groups,
        streams,
        last_group_bytes: header.last_group_bytes,
        last_group_crc: header.last_group_crc,
        file_bytes: bytes.len() as u64,
    })
}

/// Writes a checkpoint of the durable state now, on this thread. Returns its size in bytes, or
/// `None` when there is nothing to write (no group, `SyncMode::None`, the checkpoint on disk
/// already covers this end, a poisoned store).
pub(crate) fn write(shared: &Shared) -> Result<Option<u64>> {
    if shared.options.sync == SyncMode::None || shared.poisoned.get().is_some() {
        return Ok(None);
    }
    let state = &shared.index.checkpoints;
    let _writing = state.writing.lock().unwrap_or_else(PoisonError::into_inner);
    if state.closed.load(Ordering::SeqCst) {
        return Err(Error::Closed);
    }
    let index = &shared.index;
    // The end this checkpoint covers: read under the stream table's read lock, which the
    // submitter holds while it publishes a group (streams, group, `durable_end`, `durable`), so
    // the three agree.
    let (end_location, next_position, group_count, stream_count) = {
        let streams = index.read_streams();
        let end_location = shared.durable_end.load(Ordering::SeqCst);
        let next_position = shared.durable.load(Ordering::SeqCst);
        let group_count = index.groups.read().unwrap_or_else(PoisonError::into_inner).len();
        (end_location, next_position, group_count, streams.len())
    };
    if group_count == 0 || state.covered_position.load(Ordering::SeqCst) == next_position {
        return Ok(None);
    }
    let groups: Vec<GroupLocation> =
        index.groups.read().unwrap_or_else(PoisonError::into_inner)[..group_count].to_vec();
    let last = *groups.last().expect("at least one group");
    let (end_segment, end_offset) = unpack_location(end_location);
    // The last group, read back from the log: its length and checksum let recovery tell that the
    // log still holds what this checkpoint covers.
    let map = index.segment(last.segment)?;
    let bytes = map.get(last.offset as usize..).unwrap_or(&[]);
    let group =
        GroupHeader::decode(bytes).map_err(|e| bug(format!("the last durable group does not decode: {e:?}")))?;
    let last_group_bytes = GROUP_HEADER_BYTES + group.body_bytes as usize;
    let agrees = last.segment == end_segment
        && last.offset as usize + round_up_block(last_group_bytes) == end_offset
        && group.first_position + group.events as u64 == next_position
        && bytes.len() >= last_group_bytes;
    if !agrees {
        return Err(bug(format!("the last durable group {last:?} does not end at the durable end {end_location:#x}")));
    }
    let last_group_crc = crc32c::crc32c(&bytes[..last_group_bytes]);
    drop(map);
    let mut segments: Vec<SegmentSummary> =
        index.log_segments().iter().copied().filter(|s| s.number <= end_segment).collect();
    match segments.last_mut() {
        Some(covered) if covered.number == end_segment => covered.end_offset = end_offset as u64,
        _ => return Err(bug(format!("no summary of segment {end_segment}"))),
    }
    if segments.iter().rev().skip(1).any(|s| s.end_offset == 0) {
        return Err(bug("a finished segment has no end".into()));
    }
    // Taken now, after the end was read: a write to a covered segment after this point changes
    // its time (see `wait_past` below), and recovery scans that segment again.
    let mut modified_ns = Vec::with_capacity(segments.len());
    for s in &segments {
        modified_ns.push(modified_ns_of(&segment::segment_path(&shared.dir, s.number))?);
    }

    let temp = shared.dir.join(TEMP_FILE_NAME);
    let context = |what: &str| format!("{what} {}", temp.display());
    let file = File::create(&temp).map_err(|e| Error::io(context("creating"), e))?;
    let faults = shared.options.faults.as_ref();
    let mut out =
        Body { writer: BufWriter::with_capacity(1 << 20, &file), file: &file, faults, crc: 0, bytes: 0, synced: 0 };
    let io = |e| Error::io(context("writing"), e);
    out.write(&[0u8; HEADER_BYTES]).map_err(io)?;
    out.crc = 0;
    out.bytes = 0;
    for (s, &modified) in segments.iter().zip(&modified_ns) {
        for value in [s.number, s.created_us, s.first_position, s.first_seq, s.end_offset, modified] {
            out.write(&value.to_le_bytes()).map_err(io)?;
        }
    }
    for g in &groups {
        out.write(&g.first_position.to_le_bytes()).map_err(io)?;
        out.write(&pack_location(g.segment, g.offset).to_le_bytes()).map_err(io)?;
    }
    let mut written_streams = 0u64;
    let mut chunk: Vec<u8> = Vec::with_capacity(CHECKPOINT_CHUNK_LOCATIONS * 8 + 4096);
    let mut id = 0usize;
    while id < stream_count {
        chunk.clear();
        {
            // One short hold of the read lock per chunk: the submitter publishes in between.
            let streams = index.read_streams();
            let entries = streams.entries();
            let mut copied = 0usize;
            while id < stream_count && copied < CHECKPOINT_CHUNK_LOCATIONS {
                let entry = &entries[id];
                id += 1;
                let covered = entry.locations.partition_point(|&l| l < end_location);
                if covered == 0 {
                    continue;
                }
                chunk.push(entry.name.len() as u8);
                chunk.extend_from_slice(entry.name.as_bytes());
                chunk.extend_from_slice(&(covered as u64).to_le_bytes());
                for &location in &entry.locations[..covered] {
                    chunk.extend_from_slice(&location.to_le_bytes());
                }
                copied += covered + 1;
                written_streams += 1;
            }
        }
        out.write(&chunk).map_err(io)?;
    }
    let (body_crc, body_bytes) = (out.crc, out.bytes);
    out.writer.flush().map_err(io)?;
    drop(out);
    let header = Header {
        body_bytes,
        body_crc,
        next_position,
        next_seq: group.seq + 1,
        end_location,
        segment_count: segments.len() as u64,
        group_count: groups.len() as u64,
        stream_count: written_streams,
        last_group_bytes: last_group_bytes as u64,
        last_group_crc,
        written_us: platform::now_us(),
    };
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    sync_checkpoint_file(&file, faults, File::sync_all).map_err(|e| Error::io(context("syncing"), e))?;
    drop(file);
    let target = path(&shared.dir);
    std::fs::rename(&temp, &target).map_err(|e| Error::io(context("renaming"), e))?;
    platform::sync_dir(&shared.dir)?;
    wait_past(modified_ns.iter().copied().max().unwrap_or(0));
    let file_bytes = HEADER_BYTES as u64 + body_bytes;
    state.covered_position.store(next_position, Ordering::SeqCst);
    state.file_bytes.store(file_bytes, Ordering::SeqCst);
    tracing::debug!(position = next_position, bytes = file_bytes, "wrote an index checkpoint");
    Ok(Some(file_bytes))
}

/// A file's modification time, in nanoseconds since the epoch.
pub(crate) fn modified_ns_of(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let metadata =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading the times of {}", path.display()), e))?;
    Ok((metadata.mtime().max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(metadata.mtime_nsec().max(0) as u64))
}

/// Returns once the kernel's coarse clock, from which it stamps file modification times, has
/// passed `modified_ns`: a later write to a covered segment then gets a later time, which
/// recovery sees (without this, a write within the same clock tick, a few milliseconds, would
/// keep the time the checkpoint recorded). Bounded: a clock that jumped back is not waited for.
fn wait_past(modified_ns: u64) {
    for _ in 0..100 {
        let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes into the timespec we own; failure leaves it zero.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
        let now_ns = (now.tv_sec.max(0) as u64).saturating_mul(1_000_000_000) + now.tv_nsec.max(0) as u64;
        if now_ns > modified_ns {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn bug(reason: String) -> Error {
    Error::Poisoned {
        cause: format!("index checkpoint not written, the index disagrees with the log (a bug): {reason}"),
    }
}

/// The body's writer: counts and checksums what goes through it.
/// The checkpoint's body as it is written: its CRC32C and length so far, made durable every
/// `CHECKPOINT_SYNC_BYTES`.
struct Body<'a> {
    writer: BufWriter<&'a File>,
    file: &'a File,
    faults: Option<&'a FaultPlan>,
    crc: u32,
    bytes: u64,
    synced: u64,
}

impl Body<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.bytes += bytes.len() as u64;
        self.writer.write_all(bytes)?;
        if self.bytes - self.synced >= CHECKPOINT_SYNC_BYTES {
            // A slice at a time: a disk's volatile write cache is flushed as a whole, so a
            // group's sync that lands while a whole checkpoint is flushed waits for all of it.
            // With a checkpoint every half second of an open loop (`evstore-bench latency
            // --checkpoint-every-ms 500`), one sync at the end gave a p99 of 25-124 ms, 1 MiB
            // slices 3.2-4.8 ms, for checkpoints that take as long to write.
            self.writer.flush()?;
            sync_checkpoint_file(self.file, self.faults, File::sync_data)?;
            self.synced = self.bytes;
        }
        Ok(())
    }
}

/// Syncs a checkpoint file with `sync` (tests may make it fail: `FaultPlan::fail_checkpoint_syncs_after`).
fn sync_checkpoint_file(
    file: &File,
    faults: Option<&FaultPlan>,
    sync: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if let Some(errno) = faults.and_then(FaultPlan::on_checkpoint_sync) {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    sync(file)
}

/// Removes a checkpoint (a stale one after a full scan, or before a repair cuts the log),
/// durably.
pub(crate) fn remove(dir: &Path) -> Result<()> {
    for name in [FILE_NAME, TEMP_FILE_NAME] {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", dir.join(name).display()), e)),
        }
    }
    platform::sync_dir(dir)
}

/// Removes the temporary file of a checkpoint whose writer did not finish.
pub(crate) fn remove_temp(dir: &Path) -> Result<()> {
    let temp = dir.join(TEMP_FILE_NAME);
    std::fs::remove_file(&temp).map_err(|e| Error::io(format!("removing {}", temp.display()), e))?;
    platform::sync_dir(dir)
}

/// Whether the segment files still hold, byte for byte, the last group `checkpoint` covers:
/// what tells the log it was written from from a log cut since, or another log.
pub(crate) fn last_group_matches(dir: &Path, checkpoint: &Checkpoint) -> Result<bool> {
    let last = *checkpoint.groups.last().expect("decode refuses a checkpoint without groups");
    let Ok(len) = usize::try_from(checkpoint.last_group_bytes) else { return Ok(false) };
    if len < GROUP_HEADER_BYTES {
        return Ok(false);
    }
    let path = segment::segment_path(dir, last.segment);
    let file = File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut bytes = vec![0u8; len];
    match file.read_exact_at(&mut bytes, last.offset) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    }
    let Ok(header) = GroupHeader::decode(&bytes) else { return Ok(false) };
    Ok(crc32c::crc32c(&bytes) == checkpoint.last_group_crc
        && header.seq + 1 == checkpoint.next_seq
        && header.first_position + header.events as u64 == checkpoint.next_position
        && header.body_bytes as usize + GROUP_HEADER_BYTES == len
        && pack_location(last.segment, last.offset + round_up_block(len) as u64) == checkpoint.end_location)
}

/// Streams whose last record [`streams_match`] reads at open. A sample: those records were
/// written with O_DIRECT and are seldom in the page cache, so each is a disk read, and a read
/// per stream (10,000 of them) made a clean open of the seed's store 2.7 times slower.
const STREAMS_CHECKED_MAX: usize = 128;

/// Whether a sample of the checkpoint's streams (`STREAMS_CHECKED_MAX` of them, evenly spread
/// from a random start, so that repeated opens look at different ones; all of them in a small
/// store) finds, at each one's last location, an intact record of that stream with its last
/// version. The CRCs of the file only say that the file is what its writer wrote; this says that
/// what it wrote agrees with the log, catching a writer's bug that shifts or swaps locations
/// (which would otherwise give wrong versions and refuse good appends). It is a sample: a file
/// crafted with valid checksums can still lie about a stream outside it, as crafted segment files
/// with valid checksums can lie too. `Ok(None)`: it agrees; else the first disagreement.
pub(crate) fn streams_match(dir: &Path, checkpoint: &Checkpoint) -> Result<Option<String>> {
    let entries = checkpoint.streams.entries();
    let step = entries.len().div_ceil(STREAMS_CHECKED_MAX).max(1);
    let start = if step > 1 { (platform::now_us() as usize) % step } else { 0 };
    let mut maps: Vec<(u64, memmap2::Mmap)> = Vec::new();
    for entry in entries.iter().skip(start).step_by(step) {
        let Some(&location) = entry.locations.last() else {
            return Ok(Some(format!("stream {:?} has no location", entry.name)));
        };
        let version = entry.locations.len() as u64 - 1;
        let (segment, offset) = unpack_location(location);
        if location >= checkpoint.end_location {
            return Ok(Some(format!("stream {:?} has a location past the end it covers", entry.name)));
        }
        let map = match maps.iter().position(|(number, _)| *number == segment) {
            Some(at) => &maps[at].1,
            None => {
                let path = segment::segment_path(dir, segment);
                let file = File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                // SAFETY: recovery holds the directory lock, so no other store writes or cuts the
                // file while it is mapped; the mapping lives only for this check.
                let map = unsafe { memmap2::Mmap::map(&file) }
                    .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
                // One page per record, not the device's readahead window (8 MiB here): a hint.
                let _ = map.advise(memmap2::Advice::Random);
                maps.push((segment, map));
                &maps.last().expect("just pushed").1
            }
        };
        let Some(bytes) = map.get(offset..) else {
            return Ok(Some(format!("stream {:?}: no record at segment {segment} offset {offset}", entry.name)));
        };
        match record::decode(bytes) {
            Ok(view) if view.stream == entry.name.as_bytes() && view.version == version => {}
            Ok(_) => {
                return Ok(Some(format!(
                    "stream {:?}: the record at segment {segment} offset {offset} is not its version {version}",
                    entry.name
                )))
            }
            Err(reason) => {
                return Ok(Some(format!("stream {:?}: segment {segment} offset {offset}: {reason}", entry.name)))
            }
        }
    }
    Ok(None)
}

/// The background checkpoint writer.
pub(crate) struct Checkpointer {
    handle: JoinHandle<()>,
    signals: Arc<Signals>,
}

#[derive(Default)]
struct Signals {
    wanted: AtomicBool,
    stop: AtomicBool,
}

/// Nice value of the checkpointer: it must yield to producers and the submitter.
const CHECKPOINTER_NICE: libc::c_int = 10;

impl Checkpointer {
    pub(crate) fn start(shared: Arc<Shared>) -> Result<Checkpointer> {
        let signals = Arc::new(Signals::default());
        let thread_signals = signals.clone();
        let handle = std::thread::Builder::new()
            .name("evstore-checkpointer".into())
            .spawn(move || {
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::gettid() };
                // SAFETY: setpriority on our own thread id; failure is reported through the return
                // value, and a lower priority needs no privilege.
                let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, CHECKPOINTER_NICE) };
                while !thread_signals.stop.load(Ordering::SeqCst) {
                    if thread_signals.wanted.swap(false, Ordering::SeqCst) {
                        if let Err(error) = write(&shared) {
                            // Not fatal: the log is the truth, and the next open scans more of it.
                            tracing::warn!(%error, "could not write an index checkpoint");
                        }
                        continue;
                    }
                    std::thread::park();
                }
            })
            .map_err(|e| Error::io("spawning the checkpointer thread", e))?;
        Ok(Checkpointer { handle, signals })
    }

    /// Asks for a checkpoint; returns at once (a request while one is being written is merged).
    pub(crate) fn request(&self) {
        self.signals.wanted.store(true, Ordering::SeqCst);
        self.handle.thread().unpark();
    }

    /// Stops the thread, after the checkpoint it may be writing.
    pub(crate) fn stop(self) {
        self.signals.stop.store(true, Ordering::SeqCst);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_every_flip_is_caught() {
        let header = Header {
            body_bytes: 1,
            body_crc: 2,
            next_position: 3,
            next_seq: 4,
            end_location: 5,
            segment_count: 6,
            group_count: 7,
            stream_count: 8,
            last_group_bytes: 9,
            last_group_crc: 10,
            written_us: 11,
        };
        let bytes = header.encode();
        let decoded = Header::decode(&bytes).expect("decodes");
        assert_eq!((decoded.next_position, decoded.stream_count, decoded.written_us), (3, 8, 11));
        for bit in 0..HEADER_BYTES * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(Header::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn decode_never_panics_on_a_cut_file() {
        let header = Header {
            body_bytes: 0,
            body_crc: crc32c::crc32c(&[]),
            next_position: 1,
            next_seq: 1,
            end_location: 1 << 20,
            segment_count: u64::MAX,
            group_count: 1,
            stream_count: 1,
            last_group_bytes: 64,
            last_group_crc: 0,
            written_us: 0,
        };
        let bytes = header.encode();
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
        assert!(decode(&bytes).is_err());
    }
}
