//! The raw-disk baseline: io_uring O_DIRECT writes of a given size into a pre-written file,
//! `depth` at a time, each made durable the same way the engine does (RWF_DSYNC, or a linked
//! fdatasync). This is what the disk gives for the same bytes and the same group size.

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use io_uring::{opcode, squeue, types, IoUring};

use crate::report::{histogram, Outcome};

const ALIGN: usize = 4096;

struct Aligned {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl Aligned {
    fn new(len: usize) -> Aligned {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).expect("layout");
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "allocation failed");
        // Non-zero content, so nothing could shortcut writing zeros.
        // SAFETY: ptr is valid for len bytes.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, len) };
        Aligned { ptr, layout }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

pub struct RawPlan {
    pub total_bytes: u64,
    pub write_bytes: usize,
    pub depth: usize,
    /// true: RWF_DSYNC writes; false: write + linked fdatasync; None-mode callers pass `sync: false`.
    pub dsync: bool,
    pub sync: bool,
}

pub fn run(dir: &Path, plan: &RawPlan) -> std::io::Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let write_bytes = plan.write_bytes.div_ceil(ALIGN) * ALIGN;
    let writes = plan.total_bytes.div_ceil(write_bytes as u64).max(1);
    let file_bytes = writes * write_bytes as u64;
    let path = dir.join("raw.dat");
    // Pre-write the file (untimed), as the engine pre-writes its segments.
    {
        let file = std::fs::File::create(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < file_bytes {
            let n = (file_bytes - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        file.sync_all()?;
    }
    let file = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(&path)?;
    let fd = types::Fd(file.as_raw_fd());
    let depth = plan.depth.max(1);
    let buffers: Vec<Aligned> = (0..depth).map(|_| Aligned::new(write_bytes)).collect();
    let mut ring = IoUring::new((depth as u32 * 2).next_power_of_two().max(8))?;
    let mut started: Vec<Option<Instant>> = vec![None; depth];
    let mut pending = vec![0u8; depth];
    let mut latency_us = histogram();
    let mut next_write = 0u64;
    let mut done_writes = 0u64;
    let mut syncs = 0u64;
    let t0 = Instant::now();
    let submit =
        |ring: &mut IoUring, slot: usize, index: u64, started: &mut Vec<Option<Instant>>, pending: &mut Vec<u8>| {
            let flags = if plan.sync && plan.dsync { libc::RWF_DSYNC } else { 0 };
            let write = opcode::Write::new(fd, buffers[slot].ptr, write_bytes as u32)
                .offset(index * write_bytes as u64)
                .rw_flags(flags as _)
                .build()
                .user_data(slot as u64);
            let linked = plan.sync && !plan.dsync;
            // SAFETY: the buffer outlives the ring's use of it (we reap every completion below).
            unsafe {
                if linked {
                    let fsync =
                        opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(slot as u64);
                    ring.submission()
                        .push_multiple(&[write.flags(squeue::Flags::IO_LINK), fsync])
                        .expect("room in the ring");
                } else {
                    ring.submission().push(&write).expect("room in the ring");
                }
            }
            started[slot] = Some(Instant::now());
            pending[slot] = if linked { 2 } else { 1 };
        };
    for slot in 0..depth.min(writes as usize) {
        submit(&mut ring, slot, next_write, &mut started, &mut pending);
        next_write += 1;
    }
    while done_writes < writes {
        ring.submit_and_wait(1)?;
        let completions: Vec<(usize, i32)> = ring.completion().map(|c| (c.user_data() as usize, c.result())).collect();
        for (slot, result) in completions {
            if result < 0 {
                return Err(std::io::Error::from_raw_os_error(-result));
            }
            pending[slot] -= 1;
            if pending[slot] > 0 {
                continue;
            }
            if plan.sync {
                syncs += 1;
            }
            let elapsed = started[slot].take().expect("started").elapsed();
            latency_us.record(elapsed.as_micros().max(1) as u64).expect("in range");
            done_writes += 1;
            if next_write < writes {
                submit(&mut ring, slot, next_write, &mut started, &mut pending);
                next_write += 1;
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    drop(ring);
    let bytes = writes * write_bytes as u64;
    Ok(Outcome {
        system: "raw".into(),
        sync: if !plan.sync {
            "none (NOT DURABLE)".into()
        } else if plan.dsync {
            "dsync".into()
        } else {
            "fdatasync".into()
        },
        producers: 1,
        events: writes,
        seconds,
        payload_bytes: bytes,
        disk_bytes: bytes,
        record_bytes: bytes,
        syncs,
        groups: writes,
        latency_us,
    })
}
