//! A cache prefetch hint for the packet path (conntrack prefetches the
//! lines a batch's lookups will touch, so that their misses overlap).
//! It lives here because the instruction's intrinsic is an unsafe fn.

/// Starts loading the cache line holding `addr` into all cache levels. A
/// hint: it reads nothing the program can see and any address is fine
/// (elsewhere than x86_64 it does nothing).
#[inline(always)]
pub fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` requires SSE, which every x86_64 target has
    // (it is part of the base ABI). PREFETCHT0 never faults and has no
    // architectural effect, whatever the address: no memory is read or
    // written from the program's point of view.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// [`prefetch_line`] for every line of the `bytes` bytes at `addr` (which
/// starts a line): an IPv6 entry's slot or key bucket is three.
#[inline(always)]
pub fn prefetch_span(addr: usize, bytes: usize) {
    let mut off = 0;
    while off < bytes {
        prefetch_line(addr + off);
        off += 64;
    }
}
