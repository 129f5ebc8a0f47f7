//! The io_uring backend.
//!
//! Each group is one write SQE (`WRITE_FIXED` into a registered buffer when registration
//! worked), carrying `RWF_DSYNC` in `Dsync` mode, or followed by an `FSYNC(DATASYNC)` SQE linked
//! to it with `IOSQE_IO_LINK` in `Fdatasync` mode, so the flush starts only after its write
//! succeeded (a failed or short write cancels it). `user_data` is the slot index; a slot is
//! complete once all of its SQEs have completed. The ring is created on the submitter thread
//! (single issuer) and the buffers it writes from are owned by the submitter's pool, which
//! outlives the ring.

use io_uring::{opcode, squeue, types, IoUring};

use super::{Completion, GroupWrite, IoBackend, Stage};
use crate::SyncMode;

struct SlotState {
    /// SQEs of this slot still to complete.
    pending: u8,
    len: usize,
    result: Result<(), (Stage, i32)>,
    synced: bool,
}

pub(crate) struct UringIo {
    ring: IoUring,
    slots: Vec<SlotState>,
    /// Whether the pool's buffers are registered (then `WRITE_FIXED` is used).
    fixed: bool,
    in_flight: usize,
    /// Whether a futex wait on the doorbell is armed in the ring (its completion not reaped).
    doorbell_armed: bool,
    /// The kernel refused the futex wait (before Linux 6.7): `sleep` is not offered.
    doorbell_unsupported: bool,
}

/// `user_data` of the doorbell's futex wait: no slot has this index.
const DOORBELL: u64 = u64::MAX;

impl UringIo {
    /// Sets up a ring for `slots` concurrent groups. `buffers` are the pool's (address, length);
    /// they are registered if the kernel and the memlock limit allow it.
    pub(crate) fn new(slots: usize, buffers: &[(*const u8, usize)]) -> std::io::Result<UringIo> {
        // Two entries per slot (write and linked sync) and one for the doorbell's futex wait.
        let entries = ((slots * 2 + 1) as u32).next_power_of_two().max(8);
        let ring =
            match IoUring::builder().setup_single_issuer().setup_coop_taskrun().setup_taskrun_flag().build(entries) {
                Ok(ring) => ring,
                // Older kernels lack these flags; they are optimisations only.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries)?,
                Err(e) => return Err(e),
            };
        let iovecs: Vec<libc::iovec> = buffers
            .iter()
            .map(|&(ptr, len)| libc::iovec { iov_base: ptr as *mut libc::c_void, iov_len: len })
            .collect();
        // SAFETY: the buffers belong to the submitter's pool, which lives longer than the ring
        // (the submitter drops the backend before the pool).
        let fixed = unsafe { ring.submitter().register_buffers(&iovecs) }.is_ok();
        if !fixed {
            tracing::debug!("io_uring buffer registration failed; using plain writes");
        }
        let slots = (0..slots).map(|_| SlotState { pending: 0, len: 0, result: Ok(()), synced: false }).collect();
        Ok(UringIo { ring, slots, fixed, in_flight: 0, doorbell_armed: false, doorbell_unsupported: false })
    }
}

impl IoBackend for UringIo {
    fn submit(&mut self, write: GroupWrite, sync: SyncMode) -> std::io::Result<()> {
        assert_eq!(write.buf as usize % crate::constants::BLOCK_BYTES, 0, "unaligned buffer");
        assert_eq!(write.len % crate::constants::BLOCK_BYTES, 0, "unaligned length");
        assert_eq!(write.offset % crate::constants::BLOCK_BYTES as u64, 0, "unaligned offset");
        let slot = &mut self.slots[write.slot];
        assert_eq!(slot.pending, 0, "slot {} submitted twice", write.slot);
        let rw_flags = if sync == SyncMode::Dsync { libc::RWF_DSYNC } else { 0 };
        let fd = types::Fd(write.fd);
        let entry = if self.fixed {
            opcode::WriteFixed::new(fd, write.buf, write.len as u32, write.slot as u16)
                .offset(write.offset)
                .rw_flags(rw_flags as _)
                .build()
        } else {
            opcode::Write::new(fd, write.buf, write.len as u32).offset(write.offset).rw_flags(rw_flags as _).build()
        };
        let user_data = write.slot as u64;
        let linked_sync = sync == SyncMode::Fdatasync;
        let mut sq = self.ring.submission();
        if linked_sync {
            let write_entry = entry.flags(squeue::Flags::IO_LINK).user_data(user_data);
            let sync_entry = opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build().user_data(user_data);
            // SAFETY: the buffer stays valid and untouched until both completions are reaped;
            // the ring has room for 2 entries per slot.
            unsafe {
                sq.push_multiple(&[write_entry, sync_entry])
                    .map_err(|_| std::io::Error::other("submission queue full"))?;
            }
        } else {
            // SAFETY: as above.
            unsafe {
                sq.push(&entry.user_data(user_data)).map_err(|_| std::io::Error::other("submission queue full"))?;
            }
        }
        drop(sq);
        *slot =
            SlotState { pending: if linked_sync { 2 } else { 1 }, len: write.len, result: Ok(()), synced: linked_sync };
        self.in_flight += 1;
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EAGAIN) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn complete(&mut self, wait_for: usize, out: &mut Vec<Completion>) -> std::io::Result<()> {
        let mut finished = 0usize;
        loop {
            for cqe in self.ring.completion() {
                if cqe.user_data() == DOORBELL {
                    self.doorbell_armed = false;
                    if cqe.result() == -libc::EINVAL || cqe.result() == -libc::EOPNOTSUPP {
                        self.doorbell_unsupported = true;
                    }
                    continue;
                }
                let index = cqe.user_data() as usize;
                let slot = &mut self.slots[index];
                assert!(slot.pending > 0, "completion for idle slot {index}");
                let res = cqe.result();
                // The first SQE of a slot to complete is its write (links keep order); a sync
                // cancelled because its write failed reports -ECANCELED, which we ignore in
                // favour of the write's own error.
                let stage = if slot.synced && slot.pending == 1 { Stage::Sync } else { Stage::Write };
                if slot.result.is_ok() {
                    if res < 0 {
                        slot.result = Err((stage, -res));
                    } else if stage == Stage::Write && (res as usize) < slot.len {
                        slot.result = Err((Stage::Write, libc::EIO));
                    }
                }
                slot.pending -= 1;
                if slot.pending == 0 {
                    out.push(Completion { slot: index, result: slot.result, synced: slot.synced });
                    self.in_flight -= 1;
                    finished += 1;
                }
            }
            if finished >= wait_for || self.in_flight == 0 {
                return Ok(());
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn poll(&mut self) -> std::io::Result<()> {
        // The ring is set up with COOP_TASKRUN: a finished write's completion is posted by task
        // work that runs when this thread next enters or leaves the kernel (the caller's
        // `yield_now` often does it). With TASKRUN_FLAG the kernel says when such work waits
        // (IORING_SQ_TASKRUN): enter only then (`submit` always enters), else this is a load.
        // (A ring set up without those flags posts completions by itself.)
        if !self.ring.submission().taskrun() {
            return Ok(());
        }
        match self.ring.submit() {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn sleep(&mut self, word: &std::sync::atomic::AtomicU32, value: u32) -> std::io::Result<bool> {
        if self.doorbell_unsupported {
            return Ok(false);
        }
        if !self.doorbell_armed {
            // FUTEX2_SIZE_U32 | FUTEX2_PRIVATE, matching the producers' FUTEX_WAKE_PRIVATE.
            const FUTEX2_SIZE_U32: u32 = 0x02;
            const FUTEX2_PRIVATE: u32 = 128;
            let entry =
                opcode::FutexWait::new(word.as_ptr(), value as u64, u32::MAX as u64, FUTEX2_SIZE_U32 | FUTEX2_PRIVATE)
                    .build()
                    .user_data(DOORBELL);
            // SAFETY: the futex word lives in the store's shared state, which outlives the ring
            // (the ring is dropped with the submitter, before the last `Arc<Shared>`).
            if unsafe { self.ring.submission().push(&entry) }.is_err() {
                return Ok(false);
            }
            self.doorbell_armed = true;
        }
        // One completion: a write's, or the doorbell's (the futex wait completes at once if the
        // word already changed).
        match self.ring.submit_and_wait(1) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) || e.raw_os_error() == Some(libc::EBUSY) => Ok(true),
            Err(e) => Err(e),
        }
    }
}
