//! The raw-disk baseline: io_uring O_DIRECT writes of a given size into a pre-written file,
//! `depth` at a time, each made durable the way the engine does it (an RWF_DSYNC write, or a write
//! followed by a linked fdatasync). This is what the disk gives for the same bytes and group size.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use crate::progress::Progress;
use crate::report::{histogram, Outcome};

/// O_DIRECT needs buffers, lengths and offsets aligned to the logical block size; 4096 covers it.
const ALIGN: usize = 4096;

/// A heap buffer aligned for O_DIRECT.
struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len.max(ALIGN), ALIGN).expect("4096 is a power of two");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // Non-zero content, so nothing along the way can shortcut writing zeros.
        // SAFETY: `ptr` is valid for writes of `layout.size()` bytes.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, layout.size()) };
        Aligned { ptr, layout }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RawSync {
    /// Each write carries RWF_DSYNC.
    Dsync,
    /// Each write is followed by an fdatasync linked after it (IOSQE_IO_LINK).
    Fdatasync,
    /// NOT DURABLE: plain O_DIRECT writes.
    None,
}

impl RawSync {
    fn label(self) -> &'static str {
        match self {
            RawSync::Dsync => "dsync",
            RawSync::Fdatasync => "fdatasync",
            RawSync::None => "none (NOT DURABLE)",
        }
    }
}

pub struct RawPlan {
    pub total_bytes: u64,
    /// Rounded up to 4096.
    pub write_bytes: usize,
    /// Writes in flight at once.
    pub depth: usize,
    pub sync: RawSync,
}

impl RawPlan {
    pub fn write_bytes(&self) -> usize {
        self.write_bytes.max(1).div_ceil(ALIGN) * ALIGN
    }

    /// Writes the plan makes: the total rounded up to whole writes, at least one.
    pub fn writes(&self) -> u64 {
        self.total_bytes.div_ceil(self.write_bytes() as u64).max(1)
    }
}

/// The writes in flight: slot i has at most one write (and its fdatasync) in flight at a time.
struct Slots {
    buffers: Vec<Aligned>,
    started: Vec<Option<Instant>>,
    /// Completions still expected for the slot's current write.
    outstanding: Vec<u8>,
    fd: types::Fd,
    write_bytes: usize,
    linked: bool,
    rw_flags: i32,
}

impl Slots {
    fn submit(&mut self, ring: &mut IoUring, slot: usize, index: u64) {
        let write = opcode::Write::new(self.fd, self.buffers[slot].ptr, self.write_bytes as u32)
            .offset(index * self.write_bytes as u64)
            .rw_flags(self.rw_flags as _)
            .build()
            .user_data(slot as u64 * 2);
        // SAFETY: the slot's buffer stays allocated until `run` has reaped every completion (or
        // is leaked if the ring itself fails), so the kernel never reads freed memory; a slot is
        // only resubmitted once its previous write completed. The ring has room: it holds at
        // least two entries per slot and is submitted before slots are reused.
        let pushed = unsafe {
            if self.linked {
                let fsync = opcode::Fsync::new(self.fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build()
                    .user_data(slot as u64 * 2 + FSYNC_TAG);
                ring.submission().push_multiple(&[write.flags(squeue::Flags::IO_LINK), fsync])
            } else {
                ring.submission().push(&write)
            }
        };
        pushed.expect("the ring holds two entries per slot");
        self.started[slot] = Some(Instant::now());
        self.outstanding[slot] = if self.linked { 2 } else { 1 };
    }
}

/// Completion tags: the slot index times two, plus one for the fdatasync of a linked pair.
const FSYNC_TAG: u64 = 1;

pub fn run(dir: &Path, plan: &RawPlan, progress: &Progress) -> io::Result<Outcome> {
    let write_bytes = plan.write_bytes();
    let writes = plan.writes();
    let path = dir.join("raw.dat");
    prepare(&path, writes * write_bytes as u64)?;
    let file = OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path)?;
    let fd = types::Fd(file.as_raw_fd());
    let depth = plan.depth.clamp(1, writes as usize);
    let linked = plan.sync == RawSync::Fdatasync;
    let rw_flags = if plan.sync == RawSync::Dsync { libc::RWF_DSYNC } else { 0 };

    let mut slots = Slots {
        buffers: (0..depth).map(|_| Aligned::new(write_bytes)).collect(),
        started: vec![None; depth],
        outstanding: vec![0; depth],
        fd,
        write_bytes,
        linked,
        rw_flags,
    };
    let mut ring = IoUring::new((depth as u32 * 2).next_power_of_two().max(8))?;
    let mut latency_us = histogram();
    let mut next_write = 0u64;
    let mut slots_busy = 0usize;
    let mut first_error: Option<io::Error> = None;

    let cpu_start = crate::report::process_cpu_seconds();
    let t0 = Instant::now();
    for slot in 0..depth {
        slots.submit(&mut ring, slot, next_write);
        next_write += 1;
        slots_busy += 1;
    }
    while slots_busy > 0 {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // We cannot tell whether the kernel is done with the buffers: leak them.
                std::mem::forget(slots);
                return Err(e);
            }
        }
        let completions: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (tag, result) in completions {
            let slot = (tag / 2) as usize;
            let is_fsync = tag % 2 == FSYNC_TAG;
            let expected = if is_fsync { 0 } else { write_bytes as i32 };
            if result != expected && first_error.is_none() {
                first_error = Some(if result < 0 {
                    io::Error::from_raw_os_error(-result)
                } else {
                    io::Error::other(format!("short write: {result} of {write_bytes} bytes"))
                });
            }
            slots.outstanding[slot] -= 1;
            if slots.outstanding[slot] > 0 {
                continue;
            }
            let elapsed = slots.started[slot].take().expect("a busy slot has a start time").elapsed();
            latency_us.saturating_record(elapsed.as_micros() as u64);
            progress.add(1);
            // After an error, stop submitting and drain what is in flight.
            if next_write < writes && first_error.is_none() {
                slots.submit(&mut ring, slot, next_write);
                next_write += 1;
            } else {
                slots_busy -= 1;
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        return Err(e);
    }
    let cpu_seconds = crate::report::process_cpu_seconds() - cpu_start;
    Ok(outcome(plan, plan.sync.label(), "io_uring O_DIRECT", depth, seconds, latency_us, cpu_seconds))
}

/// A raw run's outcome: its events are writes, its payload the bytes written.
fn outcome(
    plan: &RawPlan,
    sync: &str,
    backend: &str,
    depth: usize,
    seconds: f64,
    latency_us: hdrhistogram::Histogram<u64>,
    cpu_seconds: f64,
) -> Outcome {
    let writes = plan.writes();
    let bytes = writes * plan.write_bytes() as u64;
    Outcome {
        system: "raw".into(),
        sync: sync.into(),
        backend: backend.into(),
        producers: 1,
        in_flight: depth,
        events: writes,
        seconds,
        payload_bytes: bytes,
        disk_bytes: bytes,
        record_bytes: bytes,
        syncs: if plan.sync == RawSync::None { 0 } else { writes },
        groups: writes,
        latency_us,
        cpu_seconds: Some(cpu_seconds),
    }
}

/// Allocates and writes zeros over the whole file (untimed), as the engine pre-writes its
/// segments, so the timed writes never convert unwritten extents.
fn prepare(path: &Path, len: u64) -> io::Result<()> {
    let file = File::create(path)?;
    // SAFETY: a plain syscall on an open descriptor; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        // Some file systems cannot fallocate; the zeros below allocate the blocks anyway.
        if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(e);
        }
    }
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()
}

/// Plain buffered I/O, one write at a time: `pwrite` of `write_bytes` then `fdatasync`, each
/// timed (what the naive port does per batch). Into a pre-written file, like `run`.
pub fn run_pwrite(dir: &Path, plan: &RawPlan, progress: &Progress) -> io::Result<Outcome> {
    let write_bytes = plan.write_bytes();
    let writes = plan.writes();
    let path = dir.join("raw-pwrite.dat");
    prepare(&path, writes * write_bytes as u64)?;
    let file = OpenOptions::new().write(true).open(&path)?;
    let buffer = vec![0x5au8; write_bytes];
    let mut latency_us = histogram();
    let cpu_start = crate::report::process_cpu_seconds();
    let t0 = Instant::now();
    for index in 0..writes {
        let started = Instant::now();
        file.write_all_at(&buffer, index * write_bytes as u64)?;
        if plan.sync != RawSync::None {
            file.sync_data()?;
        }
        latency_us.saturating_record(started.elapsed().as_micros() as u64);
        progress.add(1);
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = crate::report::process_cpu_seconds() - cpu_start;
    let sync = if plan.sync == RawSync::None { "none (NOT DURABLE)" } else { "fdatasync" };
    Ok(outcome(plan, sync, "pwrite + fdatasync", 1, seconds, latency_us, cpu_seconds))
}
