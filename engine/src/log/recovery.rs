//! Recovery at open: classify the segment files, verify every group and record, rebuild the
//! stream table and the group directory, and cut a torn tail; or refuse to open on damage.
//!
//! With a usable index checkpoint (checkpoint.rs), the stream table and the group directory of
//! the log it covers come from it, and only the groups after it are verified record by record;
//! everything else is checked as without it: every file's header, size and number, the end
//! markers and the bytes after them in every finished segment, the torn tail. A checkpoint is
//! usable only if it covers the same segment files (number, first position, creation time) and
//! the last group it covers is still in the log byte for byte; otherwise (and when it is missing
//! or damaged) recovery scans the whole log, with a warning, and removes it once the log checked
//! out. Damage found after a checkpoint is confirmed by a full scan, so the damage reported (and
//! where `repair` cuts) is the first in the log, as without a checkpoint.
//!
//! The rule (the argument is in docs/design.md, "Recovery"): a crash can only leave
//! - trailing segment files that were never used: `.evs.partial` leftovers of a preparation, and
//!   `.evs` files whose header block is zero or torn with nothing written after it (a header is
//!   durable before anything else goes into its segment), and only if no segment vouches for
//!   them: a rollover writes the next header, then a "continued" end marker into the segment it
//!   leaves, then groups into the next one;
//! - a segment without that marker, if the crash came between those two writes: then the next
//!   segment is the last and holds no group (recovery writes the missing marker);
//! - a torn tail in the last used segment: the groups that were in flight, at most
//!   `groups_in_flight_max` of them, right after the last durable group. A valid group numbered
//!   `groups_in_flight_max` or more past the first bad one proves that the bad one was durable
//!   (the writer never has more groups in flight), and a "closed" end marker further on proves
//!   the store closed cleanly after it: either way it is damage, not a tear. A crash tears
//!   writes but never moves them: a valid group where no write could have put it is damage too.
//!
//! Anything else that is wrong is damage: `open` reports the first damage in log order as
//! `Error::Corrupted { segment, offset, reason }`, and deletes or rewrites nothing. Only once the
//! whole log checked out does recovery change files: it zeroes a torn tail (so that no stale
//! group can be mistaken for a new one later), writes a marker a crash kept from being written,
//! and removes unused trailing files.
//!
//! Invariants: every length read from disk is checked before it is used (no file content makes
//! recovery panic, no file type makes it hang); at most one segment is mapped at a time (a store
//! of 100,000 segments opens under `vm.max_map_count`); nothing is written before the scan of
//! every segment succeeded. [`repair`] is the operator's explicit way out: it saves the damaged
//! files aside and cuts the log at the first damage.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use memmap2::Mmap;

use crate::buffer::{round_up_block, AlignedBuf};
use crate::constants::STREAMS_MAX;
use crate::constants::{BLOCK_BYTES, GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_NUMBER_MAX, ZERO_CHUNK_BYTES};
use crate::error::{Error, Result};
use crate::log::checkpoint::{self, Checkpoint};
use crate::log::index::{pack_location, stream_hash, GroupLocation, SegmentSummary, StreamTable};
use crate::log::record::{self, EndMarker, GroupHeader, GroupHeaderError, MarkerKind};
use crate::log::segment::{self, SegmentHeader};
use crate::{platform, Options};

pub(crate) struct ActiveInfo {
    pub number: u64,
    pub write_offset: u64,
    /// The segment's size, from its header (a reopen with other options keeps it).
    pub segment_bytes: u64,
    /// The pipeline window its header names: recovery judges its tail by it (and today's
    /// options), so a writer with a larger window must not continue it.
    pub groups_in_flight_max: usize,
    pub group_bytes_max: usize,
}

pub(crate) struct Recovered {
    pub next_position: u64,
    pub next_seq: u64,
    pub active: Option<ActiveInfo>,
    pub next_segment_number: u64,
    pub streams: StreamTable,
    pub groups: Vec<GroupLocation>,
    /// Every used segment, oldest first; the last one is the active segment (no end yet).
    pub segments: Vec<SegmentSummary>,
    /// Location (see log/index.rs) just past the last durable group: every record below it is durable.
    pub durable_end: u64,
    /// The position the checkpoint on disk covers, if recovery used one, and its size.
    pub checkpoint_position: Option<u64>,
    pub checkpoint_bytes: u64,
}

/// How `repair` mends a damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fix {
    /// Cut the log at (`cut_segment`, `cut_offset`): zero the rest of that segment (0: drop it
    /// whole) and drop every later segment.
    Cut,
    /// Give `cut_segment` back the size its header names (it was extended); nothing is dropped.
    Resize,
    /// Write this end marker at (`cut_segment`, `cut_offset`): the marker was lost or damaged,
    /// but the next segment's header and groups say what it said; nothing is dropped.
    Rewrite(EndMarker),
}

/// The first thing wrong in the log that a crash cannot explain, and where a repair would cut.
#[derive(Debug, Clone)]
struct Damage {
    segment: u64,
    offset: u64,
    reason: String,
    /// Where a cut for this damage starts: the first byte of `cut_segment` that it drops (0 drops
    /// the whole segment); every later segment goes too. Usually the damaged segment itself.
    cut_segment: u64,
    cut_offset: u64,
    /// What a repair does here.
    fix: Fix,
    /// The first position that a cut here drops.
    position: u64,
}

impl Damage {
    fn into_error(self) -> Error {
        Error::Corrupted { segment: self.segment, offset: self.offset, reason: self.reason }
    }
}

enum Failure {
    Io(Error),
    Damage(Damage),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Io(error)
    }
}

type Scanned<T> = std::result::Result<T, Failure>;

/// What the first blocks of a segment file say it is.
enum Kind {
    Used(SegmentHeader),
    /// Header block all zero: prepared and never used.
    Unused,
    /// Something is in the header block, but not a valid header.
    Torn(String),
    /// Not a regular file at all (a directory, a FIFO, a dangling link): damage.
    NotAFile(String),
}

struct SegmentFile {
    number: u64,
    path: PathBuf,
    len: u64,
    kind: Kind,
    /// Whether the block after the header holds anything (where the first group goes).
    written_after_header: bool,
    /// Its modification time, ns since the epoch (compared with a checkpoint's).
    modified_ns: u64,
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

fn inspect(number: u64, path: &Path) -> Result<SegmentFile> {
    // Looked at before opening: opening a FIFO named like a segment would block forever, and a
    // directory cannot be read. Either is damage that `repair` can move aside.
    let metadata = std::fs::metadata(path);
    if !metadata.as_ref().is_ok_and(|m| m.is_file()) {
        let what = match metadata {
            Ok(m) if m.is_dir() => "a directory".to_string(),
            Ok(_) => "not a regular file".to_string(),
            Err(e) => format!("unreadable ({e})"),
        };
        return Ok(SegmentFile {
            number,
            path: path.to_path_buf(),
            len: 0,
            kind: Kind::NotAFile(format!("the segment's name is taken by {what}")),
            written_after_header: false,
            modified_ns: 0,
        });
    }
    let file = open_read(path)?;
    let len = file.metadata().map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?.len();
    let mut prefix = vec![0u8; (2 * BLOCK_BYTES as u64).min(len) as usize];
    file.read_exact_at(&mut prefix, 0).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let kind = match SegmentHeader::decode(&prefix) {
        Ok(Some(header)) => Kind::Used(header),
        Ok(None) => Kind::Unused,
        Err(reason) => Kind::Torn(reason),
    };
    let written_after_header = prefix.get(SEGMENT_HEADER_BYTES..).is_some_and(|b| b.iter().any(|&x| x != 0));
    let modified_ns = checkpoint::modified_ns_of(path)?;
    Ok(SegmentFile { number, path: path.to_path_buf(), len, kind, written_after_header, modified_ns })
}

fn map_file(path: &Path) -> Result<Mmap> {
    let file = open_read(path)?;
    // SAFETY: the directory lock is held, so no other store writes the file, and this process
    // writes nothing until the scan is over (then only past what it mapped for the scan).
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(format!("mapping {}", path.display()), e))
}

/// A damage found while classifying the files, reported only if no earlier damage (in log order)
/// turns up while scanning the used segments before it.
struct Pending {
    segment: u64,
    offset: u64,
    reason: String,
    /// The file is longer than its header says: giving it back its size drops nothing.
    extended: bool,
}

struct Classified {
    used: Vec<(SegmentFile, SegmentHeader)>,
    unused: Vec<(u64, PathBuf)>,
    pending: Option<Pending>,
}

/// Sorts the files into the used prefix of the log, unused trailing files, and the first damage
/// that the file headers alone show.
fn classify(files: Vec<SegmentFile>) -> Classified {
    let mut used: Vec<(SegmentFile, SegmentHeader)> = Vec::new();
    let mut unused: Vec<SegmentFile> = Vec::new();
    let mut pending = None;
    let damage = |segment: u64, offset: u64, reason: String| Some(Pending { segment, offset, reason, extended: false });
    for file in files {
        if file.number > SEGMENT_NUMBER_MAX {
            pending = damage(file.number, 0, format!("segment number out of range (at most {SEGMENT_NUMBER_MAX})"));
            break;
        }
        match &file.kind {
            Kind::NotAFile(reason) => {
                pending = damage(file.number, 0, reason.clone());
                break;
            }
            Kind::Used(header) => {
                if let Some(first) = unused.first() {
                    let what = match &first.kind {
                        Kind::Torn(reason) => format!("its header is invalid ({reason})"),
                        _ => "its header block is zero".to_string(),
                    };
                    pending =
                        damage(first.number, 0, format!("{what}, yet segment {} after it is in use", file.number));
                    break;
                }
                if header.number != file.number {
                    pending = damage(file.number, 16, format!("the header names segment {}", header.number));
                    break;
                }
                if used.is_empty() && file.number != 0 {
                    // There is no retention: the log's first segment is segment 0.
                    pending =
                        damage(0, 0, format!("segment file missing: the oldest segment found is {}", file.number));
                    break;
                }
                if let Some((previous, _)) = used.last() {
                    if previous.number + 1 != file.number {
                        pending = damage(
                            previous.number + 1,
                            0,
                            format!("segment file missing, though segment {} follows", file.number),
                        );
                        break;
                    }
                }
                if file.len != header.segment_bytes {
                    // A crash cannot do this: a segment is allocated in full and fsynced before
                    // its header is written. Its groups up to the cut are still checked.
                    pending = Some(Pending {
                        segment: file.number,
                        offset: file.len.min(header.segment_bytes),
                        reason: format!(
                            "the file is {} bytes long, its header says {}: it was truncated or extended",
                            file.len, header.segment_bytes
                        ),
                        extended: file.len > header.segment_bytes,
                    });
                    let header = *header;
                    used.push((file, header));
                    break;
                }
                let header = *header;
                used.push((file, header));
            }
            Kind::Unused | Kind::Torn(_) => {
                if file.len < MIN_SEGMENT_BYTES {
                    // Segments are prepared under another name and renamed once whole: a short
                    // `.evs` file was cut, not left half-prepared by a crash.
                    pending = damage(file.number, 0, format!("the file is only {} bytes long: truncated", file.len));
                    break;
                }
                if file.written_after_header {
                    let what = match &file.kind {
                        Kind::Torn(reason) => format!("the header is invalid ({reason})"),
                        _ => "the header block is zero".to_string(),
                    };
                    pending = damage(file.number, 0, format!("{what}, yet a group was written after it"));
                    break;
                }
                if let (Kind::Torn(reason), false) = (&file.kind, unused.is_empty()) {
                    // Only the segment being started when the crash came can have a torn header,
                    // and no segment after it was ever started.
                    pending = damage(file.number, 0, format!("a second torn segment header ({reason})"));
                    break;
                }
                unused.push(file);
            }
        }
    }
    Classified { used, unused: unused.into_iter().map(|f| (f.number, f.path)).collect(), pending }
}

/// The smallest segment a header may name (see `SegmentHeader::check`).
const MIN_SEGMENT_BYTES: u64 = 3 * BLOCK_BYTES as u64;

/// Where the groups of a segment stop and why.
struct SegmentEnd {
    offset: usize,
    /// `None`: a zero block, the end of the file or a close marker: a normal end. `Some`: what was
    /// wrong.
    damage: Option<String>,
    /// The end marker found where the groups end (closed cleanly there, or continued in the next
    /// segment).
    marker: Option<EndMarker>,
    /// A block with an end marker's magic but a bad checksum: damage, never a torn write (the
    /// marker lies in one sector of a block that was zero before).
    broken_marker: bool,
}

struct Scan {
    /// The size the header of the segment being scanned names.
    segment_bytes: usize,
    streams: StreamTable,
    groups: Vec<GroupLocation>,
    next_position: u64,
    next_seq: u64,
}

impl Scan {
    /// An end marker where the groups end must name exactly that end (and a "continued" one the
    /// next segment).
    fn check_marker(&self, number: u64, end: &SegmentEnd) -> Scanned<()> {
        let Some(marker) = end.marker else { return Ok(()) };
        let wrong_next = marker.kind == MarkerKind::Continued && marker.value != number + 1;
        if marker.next_seq != self.next_seq || marker.next_position != self.next_position || wrong_next {
            return Err(self.damage(
                number,
                end.offset as u64,
                format!(
                    "the end marker here ({marker:?}) does not match the end of the groups, at position {} (group {})",
                    self.next_position, self.next_seq
                ),
                end.offset as u64,
            ));
        }
        Ok(())
    }

    fn damage(&self, segment: u64, offset: u64, reason: String, cut_offset: u64) -> Failure {
        self.damage_cut(segment, offset, reason, segment, cut_offset)
    }

    fn damage_cut(&self, segment: u64, offset: u64, reason: String, cut_segment: u64, cut_offset: u64) -> Failure {
        Failure::Damage(Damage {
            segment,
            offset,
            reason,
            cut_segment,
            cut_offset,
            fix: Fix::Cut,
            position: self.next_position,
        })
    }

    /// Verifies and applies the groups of one segment from `offset` (the first group, or where
    /// a checkpoint ends) until the first zero or bad group.
    fn segment(&mut self, number: u64, map: &[u8], mut offset: usize) -> Scanned<SegmentEnd> {
        loop {
            let header = match GroupHeader::decode(map.get(offset..).unwrap_or(&[])) {
                Ok(header) => header,
                Err(GroupHeaderError::Zero) => {
                    return Ok(SegmentEnd { offset, damage: None, marker: None, broken_marker: false })
                }
                Err(GroupHeaderError::Invalid(reason)) => {
                    let bytes = map.get(offset..).unwrap_or(&[]);
                    let marker = EndMarker::decode(bytes);
                    let broken_marker = marker.is_none() && record::has_marker_magic(bytes);
                    let damage = match (marker, broken_marker) {
                        (Some(_), _) => None,
                        (None, true) => Some("an end marker with a bad checksum".to_string()),
                        (None, false) => Some(reason.to_string()),
                    };
                    return Ok(SegmentEnd { offset, damage, marker, broken_marker });
                }
            };
            let end = offset + GROUP_HEADER_BYTES + header.body_bytes as usize;
            let problem = if header.seq != self.next_seq {
                Some(format!("group sequence {} where {} was expected", header.seq, self.next_seq))
            } else if header.first_position != self.next_position {
                Some(format!(
                    "group starts at position {} where {} was expected",
                    header.first_position, self.next_position
                ))
            } else if end > map.len() {
                Some("group runs past the end of the segment".to_string())
            } else {
                self.records(number, offset, &map[..end], header)?
            };
            if let Some(reason) = problem {
                return Ok(SegmentEnd { offset, damage: Some(reason), marker: None, broken_marker: false });
            }
            if round_up_block(end) + BLOCK_BYTES > self.segment_bytes {
                // A valid group that no writer could have put there: the last block of a segment
                // is kept for its end marker.
                return Err(self.damage(
                    number,
                    offset as u64,
                    "a group reaches into the last block of the segment, which is kept for its end marker".into(),
                    offset as u64,
                ));
            }
            self.groups.push(GroupLocation {
                first_position: header.first_position,
                segment: number,
                offset: offset as u64,
            });
            self.next_seq += 1;
            self.next_position += header.events as u64;
            offset = round_up_block(end);
        }
    }

    /// Checks the records of one group and applies them; on a bad record, undoes the group and
    /// returns what was wrong. A record that is intact but out of order is damage: a crash tears
    /// writes, it does not write valid records with wrong numbers.
    fn records(
        &mut self,
        number: u64,
        group_offset: usize,
        bytes: &[u8],
        header: GroupHeader,
    ) -> Scanned<Option<String>> {
        let mut at = group_offset + GROUP_HEADER_BYTES;
        // `GroupHeader::decode` bounds `events` by the group's length, and the length by the map.
        let mut applied: Vec<u32> = Vec::with_capacity(header.events as usize);
        let mut last_commit = false;
        let mut problem = None;
        for k in 0..header.events as u64 {
            let view = match record::decode(&bytes[at..]) {
                Ok(view) => view,
                Err(reason) => {
                    problem = Some(format!("record {k} of the group: {reason}"));
                    break;
                }
            };
            let position = header.first_position + k;
            let stream = view.stream;
            let hash = stream_hash(std::str::from_utf8(stream).unwrap_or(""));
            let Some(id) = self.streams.get_or_insert(hash, stream) else {
                return Err(Failure::Io(Error::LogFull { what: "stream table", max: STREAMS_MAX as u64 }));
            };
            let entry = self.streams.entry_mut(id);
            if view.position != position || view.version != entry.locations.len() as u64 {
                let reason = format!(
                    "record for {}@{} at position {} does not follow {}@{} at position {position}",
                    String::from_utf8_lossy(stream),
                    view.version,
                    view.position,
                    String::from_utf8_lossy(stream),
                    entry.locations.len()
                );
                self.undo(&applied);
                return Err(self.damage(number, at as u64, reason, group_offset as u64));
            }
            entry.locations.push(pack_location(number, at as u64));
            applied.push(id);
            last_commit = view.commit;
            at += view.len;
        }
        if problem.is_none() && at != bytes.len() {
            problem = Some("group length does not match its records".into());
        }
        if problem.is_none() && !last_commit {
            problem = Some("group ends inside an append".into());
        }
        if problem.is_some() {
            self.undo(&applied);
        }
        Ok(problem)
    }

    /// Pops the locations a group pushed, newest first.
    fn undo(&mut self, applied: &[u32]) {
        for &id in applied.iter().rev() {
            self.streams.entry_mut(id).locations.pop();
        }
    }
}

/// The result of a scan that found no damage, and what must still be written to finish it.
struct Clean {
    recovered: Recovered,
    /// Bytes of the last segment to zero: what the torn tail left behind.
    dirty_tail: Option<(u64, Range<usize>)>,
    /// The "continued" marker a crash kept a rollover from writing: (segment, offset, marker).
    missing_marker: Option<(u64, u64, EndMarker)>,
    unused: Vec<PathBuf>,
    segments: usize,
    /// Whether the checkpoint given to the scan was used.
    used_checkpoint: bool,
}

/// Cuts `checkpoint` back to the start of its covered segment `index` (which stays covered, with
/// no group): the tables keep only what lies before it.
fn cut_back(checkpoint: &mut Checkpoint, index: usize) {
    let start = pack_location(checkpoint.segments[index].number, 0);
    checkpoint.segments.truncate(index + 1);
    checkpoint.modified_ns.truncate(index + 1);
    let groups = checkpoint.groups.partition_point(|g| pack_location(g.segment, g.offset) < start);
    checkpoint.groups.truncate(groups);
    checkpoint.streams.truncate_to(start);
}

/// Why `checkpoint` does not describe a prefix of the log whose used segments are `used`, if it
/// does not.
fn checkpoint_misfit(
    dir: &Path,
    checkpoint: &Checkpoint,
    used: &[(SegmentFile, SegmentHeader)],
) -> Result<Option<String>> {
    if checkpoint.segments.len() > used.len() {
        return Ok(Some(format!(
            "it covers {} segments, the log has {} (cut or removed since)",
            checkpoint.segments.len(),
            used.len()
        )));
    }
    for (covered, (file, header)) in checkpoint.segments.iter().zip(used) {
        if covered.number != file.number
            || covered.first_position != header.first_position
            || covered.created_us != header.created_us
        {
            return Ok(Some(format!(
                "segment {} is not the file it covered (another log, or written again)",
                file.number
            )));
        }
        if covered.end_offset < SEGMENT_HEADER_BYTES as u64
            || covered.end_offset + BLOCK_BYTES as u64 > header.segment_bytes
        {
            return Ok(Some(format!(
                "it ends segment {} at offset {}, outside the segment",
                file.number, covered.end_offset
            )));
        }
    }
    if !checkpoint::last_group_matches(dir, checkpoint)? {
        return Ok(Some("the last group it covers is not in the log (cut or written again since)".into()));
    }
    checkpoint::streams_match(dir, checkpoint)
}

/// Reads the whole log without changing anything; with `checkpoint`, only what comes after it,
/// if it fits the log (else it is ignored, with a warning).
fn scan(dir: &Path, options: &Options, checkpoint: Option<Checkpoint>) -> Scanned<Clean> {
    let mut files = Vec::new();
    for (number, path) in segment::list_segments(dir)? {
        files.push(inspect(number, &path)?);
    }
    let Classified { used, unused, pending } = classify(files);
    if used.is_empty() && pending.is_none() {
        // No segment vouches for these (see the end markers below): only a crash while the very
        // first segment was being started leaves them, and then nothing was written in them.
        // Rare, so the whole file is read.
        for (number, path) in &unused {
            if let Some(at) = first_nonzero_after_header(path)? {
                return Err(Failure::Damage(Damage {
                    segment: *number,
                    offset: 0,
                    reason: format!("the header block is not a valid header, yet bytes follow at offset {at}"),
                    cut_segment: *number,
                    cut_offset: 0,
                    fix: Fix::Cut,
                    position: 0,
                }));
            }
        }
    }
    let mut unused: Vec<PathBuf> = unused.into_iter().map(|(_, path)| path).collect();
    unused.extend(segment::list_partials(dir)?);
    let segments = used.len();
    let checkpoint = match checkpoint {
        Some(checkpoint) => match checkpoint_misfit(dir, &checkpoint, &used)? {
            None => Some(checkpoint),
            Some(reason) => {
                tracing::warn!(%reason, "the index checkpoint does not fit the log; scanning the whole log");
                None
            }
        },
        None => None,
    };
    let used_checkpoint = checkpoint.is_some();
    let mut scan = Scan {
        segment_bytes: 0,
        streams: StreamTable::default(),
        groups: Vec::new(),
        next_position: used.first().map(|(_, h)| h.first_position).unwrap_or(0),
        next_seq: 0,
    };
    // Per covered segment: where its scan resumes, and the log's next position and group there.
    let mut resume: Vec<(usize, u64, u64)> = Vec::new();
    if let Some(mut checkpoint) = checkpoint {
        // A covered segment file written since the checkpoint (a reopened store appending to
        // its active segment, or anything else writing into the log) is scanned again from its
        // start, and so is everything after it: the checkpoint is cut back to where it began.
        let changed = checkpoint.modified_ns.iter().zip(&used).position(|(&ns, (file, _))| ns != file.modified_ns);
        if let Some(changed) = changed {
            tracing::info!(
                segment = checkpoint.segments[changed].number,
                "a segment was written after the index checkpoint: scanning it again"
            );
            cut_back(&mut checkpoint, changed);
        }
        let covered = &checkpoint.segments;
        for (index, segment) in covered.iter().enumerate() {
            resume.push(match covered.get(index + 1) {
                Some(next) => (segment.end_offset as usize, next.first_position, next.first_seq),
                None if changed.is_some() => (SEGMENT_HEADER_BYTES, segment.first_position, segment.first_seq),
                None => {
                    let (_, end_offset) = crate::log::index::unpack_location(checkpoint.end_location);
                    (end_offset, checkpoint.next_position, checkpoint.next_seq)
                }
            });
        }
        scan.next_seq = covered[0].first_seq;
        scan.streams = checkpoint.streams;
        scan.groups = checkpoint.groups;
    }
    let mut summaries: Vec<SegmentSummary> = Vec::with_capacity(used.len());
    let mut active = None;
    let mut dirty_tail = None;
    let mut previous_end: Option<(u64, usize)> = None;
    // The segment before the last, if it has no "continued" marker: (number, end, position).
    let mut unvouched: Option<(u64, usize, u64, u64)> = None;
    let mut groups_before_last = 0;
    for (index, (file, header)) in used.iter().enumerate() {
        let number = file.number;
        if header.first_position != scan.next_position {
            return Err(match previous_end {
                Some((previous, end)) if header.first_position > scan.next_position => scan.damage(
                    previous,
                    end as u64,
                    format!(
                        "groups are missing: this segment's groups end at position {}, yet segment {number} starts at {}",
                        scan.next_position, header.first_position
                    ),
                    end as u64,
                ),
                // The segment goes whole, and with it the previous one's "continued" marker.
                _ => {
                    let (cut_segment, cut_offset) = previous_end.map_or((number, 0), |(p, e)| (p, e as u64));
                    scan.damage_cut(
                        number,
                        24,
                        format!(
                            "segment starts at position {} where {} was expected",
                            header.first_position, scan.next_position
                        ),
                        cut_segment,
                        cut_offset,
                    )
                }
            });
        }
        if index + 1 == used.len() {
            // Groups are in log order (a checkpoint may hold some of the last segment's).
            groups_before_last = scan.groups.partition_point(|g| g.segment < number);
        }
        let file_map = map_file(&file.path)?;
        // Only the bytes the header names are the segment: an extension is damage of its own
        // (classify), and must not make its bytes look like the segment's.
        let map = &file_map[..file_map.len().min(header.segment_bytes as usize)];
        scan.segment_bytes = header.segment_bytes as usize;
        if index == 0 && header.first_position != 0 && resume.is_empty() {
            // The oldest segment of a log that does not start at 0: its first group sets the
            // sequence. (A log that starts at 0 starts with group 0.)
            if let Ok(first) = GroupHeader::decode(map.get(SEGMENT_HEADER_BYTES..).unwrap_or(&[])) {
                scan.next_seq = first.seq;
            }
        }
        summaries.push(SegmentSummary {
            number,
            created_us: header.created_us,
            first_position: header.first_position,
            first_seq: scan.next_seq,
            end_offset: 0,
        });
        let start = match resume.get(index) {
            Some(&(offset, position, seq)) => {
                // Covered by the checkpoint up to `offset`: its groups and records are in the
                // tables already. What lies at and after `offset` is checked as without it.
                scan.next_position = position;
                scan.next_seq = seq;
                offset
            }
            None => SEGMENT_HEADER_BYTES,
        };
        let end = scan.segment(number, map, start)?;
        // The next segment's header says where this one's groups must end: with it, a lost or
        // damaged "continued" marker can be written again without dropping anything.
        let next_agrees = used.get(index + 1).is_some_and(|(_, next)| next.first_position == scan.next_position);
        let rewrite = |scan: &Scan, reason: String| {
            Failure::Damage(Damage {
                segment: number,
                offset: end.offset as u64,
                reason,
                cut_segment: number,
                cut_offset: end.offset as u64,
                fix: Fix::Rewrite(EndMarker {
                    kind: MarkerKind::Continued,
                    next_seq: scan.next_seq,
                    next_position: scan.next_position,
                    value: number + 1,
                }),
                position: scan.next_position,
            })
        };
        let is_last = index + 1 == used.len() && pending.is_none();
        if !is_last {
            if let Some(reason) = end.damage {
                if end.broken_marker && next_agrees {
                    return Err(rewrite(&scan, reason));
                }
                return Err(scan.damage(number, end.offset as u64, reason, end.offset as u64));
            }
            scan.check_marker(number, &end)?;
            // The writer moved to the next segment before writing past its last group here (but
            // for a close marker), and recovery zeroed whatever a crash had left there: the rest
            // of the segment is zero.
            // Only the pipeline window after the end is read: groups that were lost there leave
            // their successors inside it (and the next segment's first position shows any gap),
            // and a segment's slack can be large when options changed between runs.
            let rest = (end.offset + if end.marker.is_some() { BLOCK_BYTES } else { 0 }).min(map.len());
            let rest_end = map.len().min(rest.saturating_add(window(header, options)));
            if let Some(at) = map[rest..rest_end].iter().position(|&b| b != 0) {
                return Err(scan.damage(
                    number,
                    end.offset as u64,
                    format!("the groups of this finished segment stop here, yet bytes follow at offset {}", rest + at),
                    end.offset as u64,
                ));
            }
            previous_end = Some((number, end.offset));
            summaries.last_mut().expect("pushed above").end_offset = end.offset as u64;
            let continued = end.marker.is_some_and(|m| m.kind == MarkerKind::Continued);
            if !continued && index + 1 < used.len() {
                // A rollover writes the next segment's header, then this marker, and only then
                // groups into the next segment. Without the marker the next segment may exist (a
                // crash between the two writes) but must be the last and hold no group.
                if index + 2 == used.len() {
                    unvouched = Some((number, end.offset, scan.next_position, scan.next_seq));
                } else if next_agrees {
                    return Err(rewrite(
                        &scan,
                        format!("the end marker that continues the log in segment {} is missing", number + 1),
                    ));
                } else {
                    return Err(scan.damage(
                        number,
                        end.offset as u64,
                        format!("the end marker that continues the log in segment {} is missing", number + 1),
                        end.offset as u64,
                    ));
                }
            }
        } else {
            scan.check_marker(number, &end)?;
            if end.marker.is_some_and(|m| m.kind == MarkerKind::Continued) {
                // The marker is written only once the next segment's header is durable.
                return Err(scan.damage_cut(
                    number + 1,
                    0,
                    format!(
                        "segment {number} says the log goes on in segment {} (end marker at offset {}), but that segment has no valid header or is missing",
                        number + 1,
                        end.offset
                    ),
                    number,
                    end.offset as u64,
                ));
            }
            let window_groups = (header.groups_in_flight_max as usize).max(options.groups_in_flight_max);
            if end.broken_marker {
                return Err(scan.damage(
                    number,
                    end.offset as u64,
                    "an end marker with a bad checksum ends the last segment: whether the log went on cannot be told"
                        .into(),
                    end.offset as u64,
                ));
            }
            let dirty = check_tail(&scan, number, map, &end, window_groups, window(header, options))?;
            if dirty.end > dirty.start {
                tracing::warn!(
                    segment = number,
                    offset = end.offset,
                    bytes = dirty.end - dirty.start,
                    reason = end.damage.as_deref().unwrap_or("unfinished groups"),
                    "cutting a torn tail"
                );
                dirty_tail = Some((number, dirty));
            }
            active = Some(ActiveInfo {
                number,
                write_offset: end.offset as u64,
                segment_bytes: header.segment_bytes,
                groups_in_flight_max: header.groups_in_flight_max as usize,
                group_bytes_max: header.group_bytes_max as usize,
            });
        }
    }
    let mut missing_marker = None;
    if let Some((number, end, position, next_seq)) = unvouched {
        if scan.groups.len() == groups_before_last {
            // A crash between the two writes of a rollover: finish it (below, once nothing else
            // is wrong), so that every segment but the last ends with its marker from now on.
            missing_marker = Some((
                number,
                end as u64,
                EndMarker {
                    kind: MarkerKind::Continued,
                    next_seq: scan.next_seq,
                    next_position: scan.next_position,
                    value: number + 1,
                },
            ));
        } else {
            return Err(Failure::Damage(Damage {
                segment: number,
                offset: end as u64,
                reason: format!(
                    "the end marker that continues the log in segment {} is missing, yet that segment holds groups",
                    number + 1
                ),
                cut_segment: number,
                cut_offset: end as u64,
                // The next segment's header agreed (it was scanned from this end on).
                fix: Fix::Rewrite(EndMarker {
                    kind: MarkerKind::Continued,
                    next_seq,
                    next_position: position,
                    value: number + 1,
                }),
                position,
            }));
        }
    }
    if let Some(pending) = pending {
        // The cut starts where the last segment scanned ends: a truncated segment (scanned last)
        // keeps its whole groups; any other segment named here goes whole, with the "continued"
        // marker of the one before it. With nothing scanned, the damaged segment goes whole.
        let (cut_segment, cut_offset) = match previous_end {
            Some((number, end)) => (number, end as u64),
            None => (pending.segment, 0),
        };
        if pending.extended {
            return Err(Failure::Damage(Damage {
                segment: pending.segment,
                offset: pending.offset,
                reason: pending.reason,
                cut_segment: pending.segment,
                cut_offset: pending.offset,
                fix: Fix::Resize,
                position: scan.next_position,
            }));
        }
        return Err(scan.damage_cut(pending.segment, pending.offset, pending.reason, cut_segment, cut_offset));
    }
    let durable_end = active.as_ref().map(|a| pack_location(a.number, a.write_offset)).unwrap_or(0);
    let next_segment_number = used.last().map(|(f, _)| f.number + 1).unwrap_or(0);
    Ok(Clean {
        missing_marker,
        recovered: Recovered {
            next_position: scan.next_position,
            next_seq: scan.next_seq,
            active,
            next_segment_number,
            streams: scan.streams,
            groups: scan.groups,
            segments: summaries,
            durable_end,
            checkpoint_position: None,
            checkpoint_bytes: 0,
        },
        dirty_tail,
        unused,
        segments,
        used_checkpoint,
    })
}

/// Bytes after the end of the valid groups in which groups that were in flight can lie, plus one
/// group: `(w + 1) × g`, with the larger of the writer's window (segment header) and today's
/// options, since a reopen with other options goes on writing into the same segment.
fn window(header: &SegmentHeader, options: &Options) -> usize {
    let window_groups = (header.groups_in_flight_max as usize).max(options.groups_in_flight_max);
    let group_bytes = (header.group_bytes_max as usize).max(options.group_bytes_max);
    (window_groups + 1).saturating_mul(group_bytes)
}

/// Looks at what lies after the end of the last segment's groups: bytes of groups that were in
/// flight (returned, to be zeroed), or a group the writer could only have written once the one at
/// the end was durable (damage).
fn check_tail(
    scan: &Scan,
    number: u64,
    map: &[u8],
    end: &SegmentEnd,
    window_groups: usize,
    window_bytes: usize,
) -> Scanned<Range<usize>> {
    scan.check_marker(number, end)?;
    let start = end.offset.min(map.len());
    let window_end = map.len().min(start.saturating_add(window_bytes));
    let mut dirty_end = start;
    // A close marker where the groups end is kept, unless a later run's torn writes follow it.
    let mut block = if end.marker.is_some() { start + BLOCK_BYTES } else { start };
    while block < window_end {
        let bytes = &map[block..(block + BLOCK_BYTES).min(map.len())];
        if bytes.iter().any(|&b| b != 0) {
            dirty_end = block + bytes.len();
            if let Some(marker) = EndMarker::decode(bytes) {
                if marker.next_position > scan.next_position || marker.next_seq > scan.next_seq {
                    return Err(scan.damage(
                        number,
                        start as u64,
                        format!(
                            "{} here at position {}, yet an end marker ({:?}, at offset {block}) says the log went on to position {}: acknowledged groups are missing",
                            end.damage.as_deref().unwrap_or("the log ends"),
                            scan.next_position,
                            marker.kind,
                            marker.next_position
                        ),
                        start as u64,
                    ));
                }
            }
            if let Ok(header) = GroupHeader::decode(bytes) {
                // A crash tears writes; it does not move them. The group that should have come
                // next starts exactly where the valid groups end, and no earlier group can lie
                // after them: a valid header that says otherwise is a misdirected write.
                let misplaced = if block == start {
                    header.seq != scan.next_seq || header.first_position != scan.next_position
                } else {
                    header.seq <= scan.next_seq
                };
                if misplaced {
                    return Err(scan.damage(
                        number,
                        start as u64,
                        format!(
                            "{} here, and group {} (position {}) lies at offset {block}, where no write of the log could have put it",
                            end.damage.as_deref().unwrap_or("the log ends"),
                            header.seq,
                            header.first_position
                        ),
                        start as u64,
                    ));
                }
                if header.seq >= scan.next_seq.saturating_add(window_groups as u64) {
                    return Err(scan.damage(
                        number,
                        start as u64,
                        format!(
                            "{} here, yet group {} follows at offset {block}: the writer never has more than {window_groups} groups in flight, so the groups here were acknowledged",
                            end.damage.as_deref().unwrap_or("the log ends"),
                            header.seq
                        ),
                        start as u64,
                    ));
                }
            }
        }
        block += BLOCK_BYTES;
    }
    Ok(start..dirty_end)
}

/// Where the first non-zero byte after the header block of a file is, reading all of it.
fn first_nonzero_after_header(path: &Path) -> Result<Option<u64>> {
    let file = open_read(path)?;
    let mut buf = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = SEGMENT_HEADER_BYTES as u64;
    loop {
        let n = file.read_at(&mut buf, at).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
            return Ok(Some(at + i as u64));
        }
        at += n as u64;
    }
}

/// Recovers the store in `dir`: `Error::Corrupted` on damage, with nothing changed.
pub(crate) fn recover(dir: &Path, options: &Options, direct: bool) -> Result<Recovered> {
    let started = Instant::now();
    let (checkpoint, checkpoint_found) = match checkpoint::load(dir)? {
        None => (None, false),
        Some(Ok(checkpoint)) => (Some(checkpoint), true),
        Some(Err(reason)) => {
            tracing::warn!(%reason, "the index checkpoint is damaged; scanning the whole log");
            (None, true)
        }
    };
    let checkpoint_covers = checkpoint.as_ref().map(|c| (c.next_position, c.file_bytes));
    let mut clean = match scan(dir, options, checkpoint) {
        Ok(clean) => clean,
        Err(Failure::Io(error)) => return Err(error),
        Err(Failure::Damage(_)) if checkpoint_covers.is_some() => {
            // The damage reported, and where `repair` would cut, must be the first in the log, as
            // without a checkpoint: a full scan finds it.
            tracing::warn!("damage after the index checkpoint; scanning the whole log to find the first damage");
            match scan(dir, options, None) {
                Ok(clean) => clean,
                Err(Failure::Io(error)) => return Err(error),
                Err(Failure::Damage(damage)) => return Err(damage.into_error()),
            }
        }
        Err(Failure::Damage(damage)) => return Err(damage.into_error()),
    };
    if clean.used_checkpoint {
        let (position, bytes) = checkpoint_covers.expect("a checkpoint was given");
        clean.recovered.checkpoint_position = Some(position);
        clean.recovered.checkpoint_bytes = bytes;
    } else if checkpoint_found {
        // Stale or damaged: never to be trusted again. A new one is written at the next
        // checkpoint (at the latest at close).
        checkpoint::remove(dir)?;
    } else if clean.segments > 0 {
        tracing::warn!("no index checkpoint; scanned the whole log");
    }
    if dir.join(checkpoint::TEMP_FILE_NAME).exists() {
        // A checkpoint whose writer crashed before its rename: never complete.
        checkpoint::remove_temp(dir)?;
    }
    if let Some((number, range)) = &clean.dirty_tail {
        zero_range(&segment::segment_path(dir, *number), range.clone(), direct)?;
    }
    if let Some((number, offset, marker)) = &clean.missing_marker {
        tracing::info!(segment = number, "finishing a rollover a crash interrupted");
        write_marker(&segment::segment_path(dir, *number), *offset, marker, direct)?;
    }
    for path in &clean.unused {
        std::fs::remove_file(path).map_err(|e| Error::io(format!("removing unused segment {}", path.display()), e))?;
    }
    if !clean.unused.is_empty() {
        platform::sync_dir(dir)?;
    }
    let tail_cut_bytes = clean.dirty_tail.as_ref().map_or(0, |(_, range)| range.len());
    tracing::info!(
        path = %dir.display(),
        segments = clean.segments,
        events = clean.recovered.next_position,
        from_checkpoint = clean.used_checkpoint,
        checkpoint_position = clean.recovered.checkpoint_position,
        unused_removed = clean.unused.len(),
        tail_cut_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered the log"
    );
    if let Some((number, range)) = &clean.dirty_tail {
        tracing::info!(
            segment = number,
            offset = range.start,
            bytes = range.len(),
            "cut a torn tail a crash left (groups in flight, never acknowledged)"
        );
    }
    Ok(clean.recovered)
}

/// Writes zeros over `range` of a segment and syncs it.
fn zero_range(path: &Path, range: Range<usize>, direct: bool) -> Result<()> {
    let file = segment::open_for_write(path, direct)?;
    let zeros = AlignedBuf::new(ZERO_CHUNK_BYTES);
    let mut at = range.start;
    while at < range.end {
        let len = (range.end - at).min(ZERO_CHUNK_BYTES);
        file.write_all_at(&zeros.as_slice()[..round_up_block(len)], at as u64)
            .map_err(|e| Error::io(format!("zeroing bytes of {}", path.display()), e))?;
        at += len;
    }
    file.sync_data().map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// What [`Store::repair`](crate::Store::repair) found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// The segment where the first damage is.
    pub segment: u64,
    /// Its offset in that segment.
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// Positions of the events dropped by the cut: from the first event at the damage to the end
    /// of the log as the group and segment headers after the damage tell it (events whose headers
    /// were destroyed too cannot be counted).
    pub dropped: Range<u64>,
    /// Where the files that were changed or removed were saved first.
    pub saved_to: PathBuf,
}

impl RepairReport {
    /// How many events the cut dropped (see [`RepairReport::dropped`]).
    pub fn dropped_events(&self) -> u64 {
        self.dropped.end - self.dropped.start
    }
}

/// Cuts the log in `dir` at its first damage, saving every file it changes or removes in a new
/// directory `damaged-<microseconds>` inside `dir` first. `Ok(None)` if there is no damage.
pub(crate) fn repair(dir: &Path, options: &Options) -> Result<Option<RepairReport>> {
    let mut report: Option<RepairReport> = None;
    // Whether the report names a damage that dropped events yet (it names the first that did,
    // else the first damage found).
    let mut names_a_drop = false;
    // Each pass mends the first damage: a cut, or a fix that drops nothing (an extended segment
    // resized, a lost marker written again), after which the next pass goes on past it. Every
    // pass mends one segment file, so the number of files bounds the number of passes.
    let passes = segment::list_segments(dir)?.len() + 2;
    for _ in 0..passes {
        let damage = match scan(dir, options, None) {
            Ok(_) => return Ok(report),
            Err(Failure::Io(error)) => return Err(error),
            Err(Failure::Damage(damage)) => damage,
        };
        let dropped_end =
            if damage.fix == Fix::Cut { claimed_end(dir, &damage)?.max(damage.position) } else { damage.position };
        let saved_to = match &report {
            Some(report) => report.saved_to.clone(),
            None => {
                let saved_to = dir.join(format!("damaged-{}", platform::now_us()));
                std::fs::create_dir(&saved_to).map_err(|e| Error::io(format!("creating {}", saved_to.display()), e))?;
                platform::sync_dir(dir)?;
                // The index checkpoint may cover what the cut drops: it goes with the saved files
                // before any segment changes (the next open scans the whole log).
                let covering = checkpoint::path(dir);
                if covering.exists() {
                    std::fs::rename(&covering, saved_to.join(checkpoint::FILE_NAME))
                        .map_err(|e| Error::io(format!("moving {} aside", covering.display()), e))?;
                    platform::sync_dir(&saved_to)?;
                    platform::sync_dir(dir)?;
                }
                saved_to
            }
        };
        mend(dir, &damage, &saved_to)?;
        tracing::warn!(?damage, "repair: mended the first damage of the log");
        let dropped = damage.position..dropped_end;
        let drops = !dropped.is_empty();
        let this = RepairReport {
            segment: damage.segment,
            offset: damage.offset,
            reason: damage.reason,
            dropped: dropped.clone(),
            saved_to,
        };
        match &mut report {
            None => {
                names_a_drop = drops;
                report = Some(this);
            }
            Some(report) if drops => {
                let union = if report.dropped.is_empty() {
                    dropped
                } else {
                    report.dropped.start.min(dropped.start)..report.dropped.end.max(dropped.end)
                };
                if !names_a_drop {
                    names_a_drop = true;
                    *report = this;
                }
                report.dropped = union;
            }
            Some(_) => {}
        }
    }
    match scan(dir, options, None) {
        Ok(_) => Ok(report),
        Err(Failure::Io(error)) => Err(error),
        Err(Failure::Damage(damage)) => Err(damage.into_error()),
    }
}

/// Mends `damage` (see `Fix`), saving into `saved_to` (durably) every file before it is changed or
/// moved. A file an earlier pass saved already keeps its first copy: that is the one as it was.
fn mend(dir: &Path, damage: &Damage, saved_to: &Path) -> Result<()> {
    for (number, path) in segment::list_segments(dir)? {
        if number < damage.cut_segment || (damage.fix != Fix::Cut && number > damage.cut_segment) {
            continue;
        }
        let name = path.file_name().expect("a segment file name");
        let saved = saved_to.join(name);
        let changed_in_place = number == damage.cut_segment && (damage.cut_offset > 0 || damage.fix != Fix::Cut);
        if changed_in_place {
            if !saved.exists() {
                // The copy is durable (its bytes and its directory entry) before the original changes.
                std::fs::copy(&path, &saved).map_err(|e| Error::io(format!("saving {}", path.display()), e))?;
                File::open(&saved)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io(format!("syncing {}", saved.display()), e))?;
                platform::sync_dir(saved_to)?;
            }
            match damage.fix {
                Fix::Cut | Fix::Resize => cut_segment(&path, damage.cut_offset)?,
                Fix::Rewrite(marker) => write_marker(&path, damage.cut_offset, &marker, false)?,
            }
        } else if saved.exists() {
            // Only an earlier pass's changes are lost with it: its original is saved.
            std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else {
            std::fs::rename(&path, &saved).map_err(|e| Error::io(format!("moving {} aside", path.display()), e))?;
        }
    }
    platform::sync_dir(saved_to)?;
    platform::sync_dir(dir)
}

/// Writes `marker` in the block at `offset` of a segment, synced (O_DIRECT when `direct`).
fn write_marker(path: &Path, offset: u64, marker: &EndMarker, direct: bool) -> Result<()> {
    let mut block = AlignedBuf::new(BLOCK_BYTES);
    marker.encode(block.as_mut_slice());
    let file = segment::open_for_write(path, direct)?;
    file.write_all_at(block.as_slice(), offset)
        .and_then(|()| file.sync_data())
        .map_err(|e| Error::io(format!("writing an end marker into {}", path.display()), e))
}

/// Zeroes a segment from `cut_offset` on, and gives it the size its header names again.
fn cut_segment(path: &Path, cut_offset: u64) -> Result<()> {
    let context = |what: &str| format!("{what} {}", path.display());
    let file =
        std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io(context("opening"), e))?;
    let len = file.metadata().map_err(|e| Error::io(context("reading the size of"), e))?.len();
    let mut header_block = vec![0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut header_block, 0).map_err(|e| Error::io(context("reading"), e))?;
    // A cut inside a segment is only made behind a valid header; refuse rather than guess.
    let Ok(Some(header)) = SegmentHeader::decode(&header_block) else {
        return Err(Error::Corrupted { segment: u64::MAX, offset: 0, reason: context("no valid header in") });
    };
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut at = cut_offset;
    let end = len.min(header.segment_bytes);
    while at < end {
        let n = (end - at).min(ZERO_CHUNK_BYTES as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| Error::io(context("zeroing"), e))?;
        at += n as u64;
    }
    if len != header.segment_bytes {
        file.set_len(header.segment_bytes).map_err(|e| Error::io(context("resizing"), e))?;
    }
    file.sync_all().map_err(|e| Error::io(context("syncing"), e))
}

/// The end of the log as the headers after `damage` tell it: the largest end of a valid group
/// header, or start of a valid segment header, at or after the cut.
fn claimed_end(dir: &Path, damage: &Damage) -> Result<u64> {
    let mut end = damage.position;
    // What the bytes after the cut can hold at most (every record takes a header's bytes): a
    // header or marker with a valid CRC can still lie about its position.
    let mut bytes_after = 0u64;
    for (number, path) in segment::list_segments(dir)? {
        if number < damage.cut_segment {
            continue;
        }
        // Only regular files: opening a FIFO would block.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        let Ok(map) = map_file(&path) else { continue };
        let from = if number == damage.cut_segment { damage.cut_offset as usize } else { 0 };
        bytes_after += (map.len() as u64).saturating_sub(from as u64);
        let mut block = from - from % BLOCK_BYTES;
        while block < map.len() {
            let bytes = &map[block..];
            if block == 0 {
                if let Ok(Some(header)) = SegmentHeader::decode(bytes) {
                    end = end.max(header.first_position);
                }
            } else if let Ok(header) = GroupHeader::decode(bytes) {
                end = end.max(header.first_position + header.events as u64);
            } else if let Some(marker) = EndMarker::decode(bytes) {
                end = end.max(marker.next_position.min(crate::constants::POSITION_MAX));
            }
            block += BLOCK_BYTES;
        }
    }
    Ok(end.min(damage.position + bytes_after / crate::constants::RECORD_HEADER_BYTES as u64))
}
