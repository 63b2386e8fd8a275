//! Transparent huge pages for the large tables the packet path reads at
//! random (conntrack's key tables and slabs). With 4 KiB pages nearly every
//! lookup in a table of a million entries also misses the TLB and waits
//! for a page walk; 2 MiB pages put the whole table within the TLB's reach
//! (measured: new connections on a 1M-entry table +10 %). It lives here
//! because madvise is a foreign function.
//!
//! Each shard's slab and key table is a separate allocation of a few
//! hundred KiB, smaller than a huge page, so the advice covers the whole
//! 2 MiB pages around each: those may hold other allocations of the
//! process, which is harmless for the two advices used (see below).

const HUGE: usize = 2 << 20;

/// Asks the kernel to back `[addr, addr + len)`, widened to whole 2 MiB
/// pages, with huge pages: marks the range (MADV_HUGEPAGE, for pages not
/// yet touched) and collapses what is already there (MADV_COLLAPSE, Linux
/// 6.1+). A hint: contents and permissions stay as they were; failures
/// (older kernels, THP off, pinned pages, unmapped gaps) are ignored.
pub fn advise_huge(addr: usize, len: usize) {
    let Some((start, end)) = widened(addr, len) else {
        return;
    };
    for advice in [libc::MADV_HUGEPAGE, libc::MADV_COLLAPSE] {
        // SAFETY: madvise with these two advices changes neither the
        // contents of any page nor any mapping or protection (unlike
        // MADV_DONTNEED/FREE/REMOVE): whatever else of this process lies in
        // the widened range keeps its bytes and stays valid. The kernel
        // checks the range itself; an error only means no huge pages.
        let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
    }
}

/// `[addr, addr + len)` widened to 2 MiB boundaries; None if empty.
fn widened(addr: usize, len: usize) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    let start = addr & !(HUGE - 1);
    let end = addr.checked_add(len)?.checked_next_multiple_of(HUGE)?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_widen_to_whole_huge_pages() {
        assert_eq!(widened(0x20_0000, 0), None);
        assert_eq!(widened(0x20_0000, 1), Some((0x20_0000, 0x40_0000)));
        assert_eq!(widened(0x3f_ffff, 2), Some((0x20_0000, 0x60_0000)));
        assert_eq!(widened(0x40_0000, 0x20_0000), Some((0x40_0000, 0x60_0000)));
        assert_eq!(widened(usize::MAX - 1, 2), None);
    }

    #[test]
    fn advice_keeps_the_contents() {
        let mut v = vec![0u8; 3 << 20];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        advise_huge(v.as_ptr() as usize + 4096, v.len() - 8192);
        assert!(v.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    }
}
