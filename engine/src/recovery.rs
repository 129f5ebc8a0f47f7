//! Recovery at open: scan every segment, verify every record, rebuild the stream table and the
//! group directory, and cut a torn tail.
//!
//! Rules (the argument is in docs/design.md):
//! - Segments are numbered contiguously. Used segments (valid header) come first; trailing
//!   segments whose header block is zero (prepared, never used) or torn (a crash during the
//!   rollover header write) are deleted and prepared afresh.
//! - In every segment but the last, groups run from byte 4096 until a zero block. Anything
//!   invalid there is corruption: acknowledged data lies on both sides of it.
//! - In the last segment, the first invalid or zero group header ends the log. Groups that were
//!   in flight together with the lost one may lie after it (they are never acknowledged, since
//!   acknowledgement is in order); they are zeroed. A valid group further than the writer's
//!   pipeline window after the damage means acknowledged data lies beyond it: corruption.
//! - Every record must carry the next position and its stream's next version; every group must
//!   end on a record with the commit flag, so a multi-event append is all or nothing.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use memmap2::Mmap;

use crate::buffer::{round_up_block, AlignedBuf};
use crate::constants::{BLOCK_BYTES, GROUP_HEADER_BYTES, SEGMENT_HEADER_BYTES, ZERO_CHUNK_BYTES};
use crate::error::{Error, Result};
use crate::index::{pack_location, stream_hash, GroupLocation, StreamTable};
use crate::record::{self, GroupHeader, GroupHeaderError};
use crate::segment::{self, SegmentHeader};
use crate::{platform, Options};

pub(crate) struct ActiveInfo {
    pub number: u64,
    pub write_offset: u64,
}

pub(crate) struct Recovered {
    pub next_position: u64,
    pub next_seq: u64,
    pub active: Option<ActiveInfo>,
    pub next_segment_number: u64,
    pub streams: StreamTable,
    pub groups: Vec<GroupLocation>,
    pub segments: BTreeMap<u64, Arc<Mmap>>,
}

fn map_file(path: &Path) -> Result<(File, Mmap)> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    // SAFETY: nobody else writes the segment: the directory lock is held, and this process only
    // writes past the recovered end, which readers never look at.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(format!("mapping {}", path.display()), e))?;
    Ok((file, map))
}

/// Where a segment's groups stop and why.
struct SegmentEnd {
    offset: usize,
    /// `None`: a zero block, the normal end. `Some`: what was wrong there.
    damage: Option<String>,
}

struct Scan<'a> {
    streams: &'a mut StreamTable,
    groups: &'a mut Vec<GroupLocation>,
    next_position: u64,
    next_seq: u64,
}

impl Scan<'_> {
    /// Verifies and applies the groups of one segment until the first zero or bad group.
    fn segment(&mut self, number: u64, map: &Mmap) -> Result<SegmentEnd> {
        let mut offset = SEGMENT_HEADER_BYTES;
        loop {
            if offset + GROUP_HEADER_BYTES > map.len() {
                return Ok(SegmentEnd { offset, damage: None });
            }
            let header = match GroupHeader::decode(&map[offset..]) {
                Ok(header) => header,
                Err(GroupHeaderError::Zero) => return Ok(SegmentEnd { offset, damage: None }),
                Err(GroupHeaderError::Invalid(reason)) => {
                    return Ok(SegmentEnd { offset, damage: Some(reason.into()) })
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
            } else if end > map.len() || header.events == 0 {
                Some("group length out of range".to_string())
            } else {
                self.records(number, offset, &map[..end], header)?
            };
            if let Some(reason) = problem {
                return Ok(SegmentEnd { offset, damage: Some(reason) });
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
    /// returns what was wrong. A record that is intact but out of order is corruption.
    fn records(
        &mut self,
        number: u64,
        group_offset: usize,
        bytes: &[u8],
        header: GroupHeader,
    ) -> Result<Option<String>> {
        let mut at = group_offset + GROUP_HEADER_BYTES;
        let mut applied: Vec<u64> = Vec::with_capacity(header.events as usize);
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
            let entry = self.streams.get_or_insert(hash, stream);
            if view.position != position || view.version != entry.locations.len() as u64 {
                return Err(Error::Corrupted {
                    segment: number,
                    offset: at as u64,
                    reason: format!(
                        "record for {}@{} at position {} does not follow {}@{} at position {position}",
                        String::from_utf8_lossy(stream),
                        view.version,
                        view.position,
                        String::from_utf8_lossy(stream),
                        entry.locations.len()
                    ),
                });
            }
            entry.locations.push(pack_location(number, at as u64));
            applied.push(hash);
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
            // Undo: pop the locations this group pushed, newest first.
            let mut at = group_offset + GROUP_HEADER_BYTES;
            let mut names = Vec::with_capacity(applied.len());
            for _ in 0..applied.len() {
                let view = record::decode(&bytes[at..]).expect("decoded above");
                names.push(view.stream);
                at += view.len;
            }
            for (hash, name) in applied.iter().zip(names).rev() {
                self.streams.get_or_insert(*hash, name).locations.pop();
            }
        }
        Ok(problem)
    }
}

/// Recovers the store in `dir`.
pub(crate) fn recover(dir: &Path, options: &Options, direct: bool) -> Result<Recovered> {
    let files = segment::list_segments(dir)?;
    let mut used: Vec<(u64, SegmentHeader, Mmap)> = Vec::new();
    let mut unused = Vec::new();
    for (index, (number, path)) in files.iter().enumerate() {
        let (_file, map) = map_file(path)?;
        let header = if map.len() < SEGMENT_HEADER_BYTES { Ok(None) } else { SegmentHeader::decode(&map) };
        match header {
            Ok(Some(header)) => {
                if !unused.is_empty() {
                    return Err(Error::Corrupted {
                        segment: *number,
                        offset: 0,
                        reason: "segment in use after an unused one".into(),
                    });
                }
                if header.number != *number {
                    return Err(Error::Corrupted {
                        segment: *number,
                        offset: 16,
                        reason: format!("header names segment {}", header.number),
                    });
                }
                if let Some((previous, _, _)) = used.last() {
                    if *previous + 1 != *number {
                        return Err(Error::Corrupted {
                            segment: *number,
                            offset: 0,
                            reason: format!("segment {} is missing", previous + 1),
                        });
                    }
                }
                used.push((*number, header, map));
            }
            Ok(None) => unused.push(path.clone()),
            Err(reason) => {
                // Only the newest file can have a torn header (a crash while starting it).
                let later_used = files[index + 1..].iter().any(|(_, p)| {
                    map_file(p)
                        .ok()
                        .and_then(|(_, m)| (m.len() >= SEGMENT_HEADER_BYTES).then(|| SegmentHeader::decode(&m)))
                        .is_some_and(|h| !matches!(h, Ok(None)))
                });
                if later_used {
                    return Err(Error::Corrupted { segment: *number, offset: 0, reason });
                }
                tracing::warn!(segment = number, %reason, "discarding a segment whose header was torn");
                unused.push(path.clone());
            }
        }
    }
    for path in &unused {
        std::fs::remove_file(path).map_err(|e| Error::io(format!("removing unused segment {}", path.display()), e))?;
    }
    if !unused.is_empty() {
        platform::sync_dir(dir)?;
    }

    let mut streams = StreamTable::default();
    let mut groups = Vec::new();
    let mut segments = BTreeMap::new();
    let mut scan = Scan {
        streams: &mut streams,
        groups: &mut groups,
        next_position: used.first().map(|(_, h, _)| h.first_position).unwrap_or(0),
        next_seq: 0,
    };
    let mut active = None;
    let last_index = used.len().checked_sub(1);
    for (index, (number, header, map)) in used.iter().enumerate() {
        if header.first_position != scan.next_position {
            return Err(Error::Corrupted {
                segment: *number,
                offset: 24,
                reason: format!(
                    "segment starts at position {} where {} was expected",
                    header.first_position, scan.next_position
                ),
            });
        }
        if scan.next_seq == 0 && index == 0 {
            // The first group of the oldest segment sets the sequence.
            if let Ok(first) = GroupHeader::decode(&map[SEGMENT_HEADER_BYTES..]) {
                scan.next_seq = first.seq;
            }
        }
        let end = scan.segment(*number, map)?;
        let is_last = Some(index) == last_index;
        if !is_last {
            if let Some(reason) = end.damage {
                return Err(Error::Corrupted { segment: *number, offset: end.offset as u64, reason });
            }
        } else {
            let window_groups = (header.groups_in_flight_max as usize).max(options.groups_in_flight_max);
            let group_bytes = (header.group_bytes_max as usize).max(options.group_bytes_max);
            cut_tail(
                dir,
                *number,
                map,
                end.offset,
                scan.next_seq,
                window_groups,
                group_bytes,
                direct,
                end.damage.as_deref(),
            )?;
            active = Some(ActiveInfo { number: *number, write_offset: end.offset as u64 });
        }
    }
    let next_position = scan.next_position;
    let next_seq = scan.next_seq;
    for (number, _, _) in &used {
        let (_file, map) = map_file(&segment::segment_path(dir, *number))?;
        segments.insert(*number, Arc::new(map));
    }
    let next_segment_number = used.last().map(|(n, _, _)| n + 1).unwrap_or(0);
    Ok(Recovered { next_position, next_seq, active, next_segment_number, streams, groups, segments })
}

/// Handles the end of the last segment at `offset`: refuses if acknowledged groups lie beyond
/// the pipeline window, else zeroes whatever lies in the window so that no stale group can be
/// mistaken for a new one later.
#[allow(clippy::too_many_arguments)]
fn cut_tail(
    dir: &Path,
    number: u64,
    map: &Mmap,
    offset: usize,
    next_seq: u64,
    window_groups: usize,
    group_bytes: usize,
    direct: bool,
    damage: Option<&str>,
) -> Result<()> {
    let window_end = map.len().min(offset + (window_groups + 1) * group_bytes);
    let mut dirty_end = offset;
    let mut block = offset;
    while block < window_end {
        let bytes = &map[block..(block + BLOCK_BYTES).min(map.len())];
        if bytes.iter().any(|&b| b != 0) {
            dirty_end = block + bytes.len();
            if let Ok(header) = GroupHeader::decode(bytes) {
                if header.seq >= next_seq + window_groups as u64 {
                    return Err(Error::Corrupted {
                        segment: number,
                        offset: offset as u64,
                        reason: format!(
                            "{} here, yet group {} (acknowledged) follows at offset {block}",
                            damage.unwrap_or("a gap"),
                            header.seq
                        ),
                    });
                }
            }
        }
        block += BLOCK_BYTES;
    }
    if dirty_end == offset {
        return Ok(());
    }
    tracing::warn!(
        segment = number,
        offset,
        bytes = dirty_end - offset,
        reason = damage.unwrap_or("unfinished groups"),
        "cutting a torn tail"
    );
    let file = segment::open_for_write(&segment::segment_path(dir, number), direct)?;
    let zeros = AlignedBuf::new(ZERO_CHUNK_BYTES);
    let mut at = offset;
    while at < dirty_end {
        let len = (dirty_end - at).min(ZERO_CHUNK_BYTES);
        file.write_all_at(&zeros.as_slice()[..round_up_block(len)], at as u64)
            .map_err(|e| Error::io(format!("zeroing the torn tail of segment {number}"), e))?;
        at += len;
    }
    file.sync_data().map_err(|e| Error::io(format!("syncing segment {number}"), e))
}
