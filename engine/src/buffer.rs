//! Aligned buffers for O_DIRECT.
//!
//! Invariants: the address and the capacity are multiples of [`BLOCK_BYTES`]; the memory is
//! zeroed at allocation and owned by the buffer until drop. Buffers are allocated at open and
//! reused; the hot path never allocates one.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use crate::constants::BLOCK_BYTES;

pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    capacity: usize,
}

// SAFETY: the buffer owns its allocation exclusively; moving it between threads is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read through `as_slice`.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub(crate) fn new(capacity: usize) -> AlignedBuf {
        assert!(capacity > 0 && capacity % BLOCK_BYTES == 0, "capacity {capacity} not block-aligned");
        let layout = Layout::from_size_align(capacity, BLOCK_BYTES).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, capacity }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is valid for `capacity` initialised (zeroed at allocation) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.capacity) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.capacity) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.capacity, BLOCK_BYTES).expect("valid layout");
        // SAFETY: allocated in `new` with this very layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}

/// Rounds `bytes` up to the next block boundary.
pub(crate) const fn round_up_block(bytes: usize) -> usize {
    bytes.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let buf = AlignedBuf::new(3 * BLOCK_BYTES);
        assert_eq!(buf.as_ptr() as usize % BLOCK_BYTES, 0);
        assert!(buf.as_slice().iter().all(|&b| b == 0));
        assert_eq!(round_up_block(1), BLOCK_BYTES);
        assert_eq!(round_up_block(BLOCK_BYTES), BLOCK_BYTES);
        assert_eq!(round_up_block(0), 0);
    }
}
