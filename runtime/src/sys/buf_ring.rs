//! A ring of provided buffers (IORING_REGISTER_PBUF_RING, Linux 5.19) for multishot receives.
//!
//! The kernel picks a buffer from the ring for each receive completion and names it in the CQE
//! (`IORING_CQE_F_BUFFER`, buffer id in the upper 16 bits of the flags). Ownership of a buffer
//! moves between two parties:
//! - **kernel**: from the moment its entry is published (the tail store below) until a CQE names
//!   its id; we never create a reference to its bytes in that time;
//! - **us**: from that CQE until [`BufRing::recycle`] republishes it; the kernel never touches it
//!   then, so [`BufRing::bytes`] may lend it out as a shared slice.
//!
//! Memory: the entry array is one page-aligned allocation (the kernel requires the alignment and
//! pins it; it reads entries and the tail, which lives in the `resv` field of entry 0); the buffers
//! are one allocation of `count * size` bytes, plain memory the kernel copies into (not pinned,
//! not counted against RLIMIT_MEMLOCK). Both are freed only after the group is unregistered; a
//! ring that could not drain leaks them instead (see `Ring::drop`).

use io_uring::IoUring;
use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

/// One entry of the ring, laid out as the kernel's `struct io_uring_buf`.
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// In entry 0, the ring's tail; in the others, unused. Never written through an entry.
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawEntry>() == 16);
const PAGE_SIZE: usize = 4096;

/// A registered provided-buffer ring with its buffers.
pub struct BufRing {
    group: u16,
    count: u16,
    size: usize,
    entries: *mut RawEntry,
    entries_layout: Layout,
    buffers: *mut u8,
    buffers_layout: Layout,
    /// Our copy of the tail: entries published so far (wrapping).
    tail: u16,
    /// Recycled since the last publish.
    unpublished: u16,
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes, publishes them all, and registers the ring as
    /// buffer group `group` of `uring`. Fails (and frees everything) where the kernel refuses it:
    /// EINVAL before 5.19 or for a bad count, ENOMEM when pinning the entry page fails.
    pub fn register(uring: &IoUring, group: u16, count: u16, size: usize) -> io::Result<BufRing> {
        assert!(
            count.is_power_of_two(),
            "buffer ring size must be a power of two"
        );
        assert!(
            size > 0 && u32::try_from(size).is_ok(),
            "buffer size {size}"
        );
        let entries_bytes = (usize::from(count) * std::mem::size_of::<RawEntry>()).max(PAGE_SIZE);
        let entries_layout = Layout::from_size_align(entries_bytes, PAGE_SIZE)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let buffers_layout = Layout::from_size_align(usize::from(count) * size, 64)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1, entries >= a page).
        let (entries, buffers) = unsafe {
            (
                alloc_zeroed(entries_layout).cast::<RawEntry>(),
                alloc_zeroed(buffers_layout),
            )
        };
        if entries.is_null() || buffers.is_null() {
            // SAFETY: each non-null pointer was returned by alloc_zeroed with its layout.
            unsafe {
                if !entries.is_null() {
                    dealloc(entries.cast(), entries_layout);
                }
                if !buffers.is_null() {
                    dealloc(buffers, buffers_layout);
                }
            }
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let mut ring = BufRing {
            group,
            count,
            size,
            entries,
            entries_layout,
            buffers,
            buffers_layout,
            tail: 0,
            unpublished: 0,
        };
        for bid in 0..count {
            ring.recycle(bid);
        }
        ring.publish();
        // SAFETY: `entries` is a page-aligned array of `count` entries that stays allocated until
        // `Drop`, which runs only after the group is unregistered (or leaks it); every published
        // entry points into `buffers`, allocated for as long.
        let registered = unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(entries as u64, count, group, 0)
        };
        match registered {
            Ok(()) => Ok(ring),
            Err(err) => {
                // Not registered: the kernel holds no pointer into the memory, Drop frees it.
                Err(err)
            }
        }
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed to us.
    pub fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count, "buffer id {bid} out of range");
        assert!(
            len <= self.size,
            "completion of {len} bytes in a {}-byte buffer",
            self.size
        );
        // SAFETY: buffer `bid` lies inside the `buffers` allocation; a completion named it, so the
        // kernel has finished writing its first `len` bytes and will not touch it until
        // `recycle(bid)` republishes it, which needs `&mut self` and so ends this borrow first.
        unsafe { std::slice::from_raw_parts(self.buffers.add(usize::from(bid) * self.size), len) }
    }

    /// Queues buffer `bid` to go back to the kernel at the next [`BufRing::publish`].
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count, "buffer id {bid} out of range");
        assert!(
            self.unpublished < self.count,
            "recycled more buffers than the ring holds"
        );
        let index = usize::from(self.tail.wrapping_add(self.unpublished) & (self.count - 1));
        // SAFETY: `index < count`, inside the entry array. The entry lies past the published
        // tail, where the kernel does not read, and we write its fields one by one, never the
        // `resv` field that holds the tail in entry 0.
        unsafe {
            let entry = self.entries.add(index);
            std::ptr::addr_of_mut!((*entry).addr)
                .write(self.buffers.add(usize::from(bid) * self.size) as u64);
            std::ptr::addr_of_mut!((*entry).len).write(self.size as u32);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.unpublished += 1;
    }

    /// Hands every recycled buffer back to the kernel with one release store of the tail.
    pub fn publish(&mut self) {
        if self.unpublished == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.unpublished);
        self.unpublished = 0;
        // SAFETY: the tail is the `resv` field of entry 0, a naturally aligned u16 inside the
        // allocation; the kernel reads it with acquire semantics, so this release store makes the
        // entries written above visible before it. Only this thread writes it.
        let tail = unsafe { &*std::ptr::addr_of!((*self.entries).resv).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }

    /// Unregisters the group; after success the kernel holds no pointer into our memory.
    pub fn unregister(&self, uring: &IoUring) -> io::Result<()> {
        uring.submitter().unregister_buf_ring(self.group)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the owner (`Ring`) drops a BufRing only when it was never registered or after
        // unregistering it; otherwise it forgets it (leaks). Both pointers came from alloc_zeroed
        // with these layouts.
        unsafe {
            dealloc(self.entries.cast(), self.entries_layout);
            dealloc(self.buffers, self.buffers_layout);
        }
    }
}
