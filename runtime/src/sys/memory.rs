//! Memory advice to the kernel for large, long-lived arenas.
//!
//! Invariant: advice never changes the contents or the validity of the memory it names, only how
//! the kernel backs it; a refusal (transparent huge pages disabled, an old kernel) is not an error.

use crate::constants::HUGE_PAGE_SIZE;

/// Asks the kernel to back the `HUGE_PAGE_SIZE`-aligned interior of `region` with transparent
/// huge pages (`MADV_HUGEPAGE`): pages first touched afterwards fault in as huge pages, and
/// khugepaged may merge pages touched before. Returns whether the kernel accepted the advice
/// (false too when `region` holds no aligned huge page).
pub fn advise_huge_pages(region: &[u8]) -> bool {
    let start = region.as_ptr() as usize;
    let end = start + region.len();
    let aligned_start = start.next_multiple_of(HUGE_PAGE_SIZE);
    let aligned_end = end / HUGE_PAGE_SIZE * HUGE_PAGE_SIZE;
    if aligned_end <= aligned_start {
        return false;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the range (it preserves
    // the bytes and never unmaps them); the range lies inside `region`, a live allocation
    // borrowed for the duration of the call, and starts on a page boundary as madvise requires.
    let result = unsafe {
        libc::madvise(
            aligned_start as *mut libc::c_void,
            aligned_end - aligned_start,
            libc::MADV_HUGEPAGE,
        )
    };
    result == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_keeps_the_contents_and_skips_regions_without_a_huge_page() {
        let mut arena = vec![0u8; 3 * HUGE_PAGE_SIZE];
        arena[0] = 1;
        arena[HUGE_PAGE_SIZE + 7] = 2;
        // Accepted or refused depending on the kernel's THP setting; never harmful.
        let _ = advise_huge_pages(&arena);
        assert_eq!((arena[0], arena[HUGE_PAGE_SIZE + 7]), (1, 2));
        arena[2 * HUGE_PAGE_SIZE] = 3;
        assert_eq!(arena[2 * HUGE_PAGE_SIZE], 3);
        assert!(!advise_huge_pages(&arena[..HUGE_PAGE_SIZE / 2]));
    }
}
