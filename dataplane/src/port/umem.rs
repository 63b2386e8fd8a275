//! UMEM memory and the frame pool that tracks who owns each frame.
//!
//! A UMEM is one page-aligned anonymous mapping cut into `frame_size`
//! chunks ("aligned chunk mode": a frame's address is its offset in the
//! mapping, and the kernel may hand back any address inside a frame, e.g. the
//! frame base plus its receive headroom). The memory is shared (`Arc`) by every
//! socket registered on it, and stays mapped until the last of them is gone.
//!
//! Every frame is, at any moment, in exactly one place:
//! - the kernel: on a fill ring or being received into (`in_fill` of its
//!   socket), or on a TX ring or being sent (`in_tx`);
//! - held by us: lent to an `rx_batch` callback, or queued for TX and not
//!   yet committed to a ring;
//! - free: on the pool's free list.
//!
//! [`FramePool`] owns the free list; the sockets count what they gave the
//! kernel. The sum is checked in debug builds after every batch.

use std::sync::Arc;

use super::sys::Mapping;

/// The UMEM's memory and geometry.
pub(crate) struct UmemArea {
    mapping: Arc<Mapping>,
    frame_size: u32,
    frames: u32,
}

impl UmemArea {
    pub(crate) fn new(mapping: Arc<Mapping>, frame_size: u32) -> UmemArea {
        let frames = (mapping.len() / frame_size as usize).min(u32::MAX as usize) as u32;
        UmemArea {
            mapping,
            frame_size,
            frames,
        }
    }

    pub(crate) fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// The base address (UMEM offset) of the frame that contains `addr`,
    /// or `None` if `addr` is outside the UMEM.
    #[inline]
    pub(crate) fn frame_base(&self, addr: u64) -> Option<u64> {
        let index = addr / u64::from(self.frame_size);
        (index < u64::from(self.frames)).then(|| index * u64::from(self.frame_size))
    }

    /// Starts loading the cache line at `addr` (a hint: nothing if `addr`
    /// is outside the UMEM).
    #[inline]
    pub(crate) fn prefetch(&self, addr: u64) {
        if addr < u64::from(self.frames) * u64::from(self.frame_size) {
            let at = self.mapping.base().as_ptr() as usize + addr as usize;
            crate::hint::prefetch::prefetch_line(at);
        }
    }

    /// The bytes from `addr` to the end of its frame, checked to hold at
    /// least `len` bytes; `None` for an address outside the UMEM or a
    /// length past the frame's end.
    ///
    /// # Safety
    ///
    /// The caller must own the frame that contains `addr` (it is neither on
    /// a ring nor lent anywhere else), for as long as the returned slice
    /// lives: no other reference to those bytes may exist and the kernel must
    /// not be writing them.
    #[inline]
    pub(crate) unsafe fn frame_mut(&mut self, addr: u64, len: usize) -> Option<&mut [u8]> {
        let base = self.frame_base(addr)?;
        let offset = usize::try_from(addr - base).ok()?;
        let cap = (self.frame_size as usize).checked_sub(offset)?;
        if len > cap {
            return None;
        }
        let start = usize::try_from(addr).ok()?;
        // SAFETY: `base` is a frame inside the mapping (`frame_base` checked
        // the index against the frame count, which was derived from the
        // mapping's length), so `start .. start + cap` lies within it; the
        // mapping is alive as long as `self` holds its `Arc`; the caller
        // guarantees exclusive ownership of the frame.
        unsafe {
            let ptr = self.mapping.base().as_ptr().add(start);
            Some(std::slice::from_raw_parts_mut(ptr, cap))
        }
    }
}

/// The free frames of one UMEM.
pub(crate) struct FramePool {
    pub(crate) area: UmemArea,
    /// Frame base addresses; allocated once with room for every frame.
    free: Vec<u64>,
    /// Frames the kernel handed back at addresses we could not place (never
    /// expected; counted so the books still balance).
    lost: u32,
}

impl FramePool {
    /// A pool whose free list holds every frame of `area`.
    pub(crate) fn new(area: UmemArea) -> FramePool {
        let size = u64::from(area.frame_size);
        let mut free = Vec::with_capacity(area.frames as usize);
        free.extend((0..u64::from(area.frames)).rev().map(|i| i * size));
        FramePool {
            area,
            free,
            lost: 0,
        }
    }

    pub(crate) fn total(&self) -> u32 {
        self.area.frames
    }

    pub(crate) fn free_count(&self) -> u32 {
        self.free.len() as u32
    }

    pub(crate) fn lost(&self) -> u32 {
        self.lost
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns the frame containing `addr` to the free list.
    #[inline]
    pub(crate) fn push(&mut self, addr: u64) {
        match self.area.frame_base(addr) {
            // The capacity is the frame count, so this never reallocates.
            Some(base) if self.free.len() < self.free.capacity() => self.free.push(base),
            _ => self.lost += 1,
        }
    }

    /// Takes up to `n` free frames off the top of the free list.
    pub(crate) fn take(&mut self, n: usize) -> std::vec::Drain<'_, u64> {
        let start = self.free.len().saturating_sub(n);
        self.free.drain(start..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(frames: usize) -> FramePool {
        let mapping = Mapping::anonymous(frames * 2048).expect("mmap");
        FramePool::new(UmemArea::new(Arc::new(mapping), 2048))
    }

    #[test]
    fn frames_are_placed_and_bounded() {
        let mut pool = pool(4);
        assert_eq!(pool.total(), 4);
        assert_eq!(pool.free_count(), 4);
        assert_eq!(pool.area.frame_base(2048 + 256), Some(2048));
        assert_eq!(pool.area.frame_base(4 * 2048), None);
        let a = pool.pop().expect("a frame");
        assert_eq!(a, 0, "lowest address first");
        // SAFETY: `a` was just popped from the free list: we own it.
        let buf = unsafe { pool.area.frame_mut(a + 256, 100) }.expect("in bounds");
        assert_eq!(buf.len(), 2048 - 256);
        buf[0] = 1;
        // SAFETY: as above; a length past the frame end is refused.
        assert!(unsafe { pool.area.frame_mut(a + 256, 2048) }.is_none());
        pool.push(a + 256);
        assert_eq!(pool.free_count(), 4);
        pool.push(99 * 2048);
        assert_eq!(pool.lost(), 1);
        let taken: Vec<u64> = pool.take(3).collect();
        assert_eq!(taken.len(), 3);
        assert_eq!(pool.free_count(), 1);
    }
}
