//! Owned, aligned I/O buffers.
//!
//! O_DIRECT needs buffers aligned to the logical block size. We get alignment without `unsafe` by
//! over-allocating a `Vec<u8>` and starting the usable window at the first aligned address inside
//! it. A `Vec`'s heap block never moves while the `Vec` is not resized, so the window stays aligned
//! when the buffer is moved into an operation and handed back by its completion.

use super::IO_ALIGN;
use std::ops::{Deref, DerefMut};

/// A zero-initialised byte buffer whose first byte is aligned to [`IO_ALIGN`] and whose length is
/// a multiple of it. Its length may be shortened and grown back up to the capacity it was created
/// with ([`AlignedBuf::set_len`]), so one allocation can carry I/O of varying sizes.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
    capacity: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes. Panics unless `len` is a positive multiple of [`IO_ALIGN`]:
    /// buffer sizes come from constants, never from input.
    pub fn zeroed(len: usize) -> AlignedBuf {
        assert!(
            len > 0 && len.is_multiple_of(IO_ALIGN),
            "buffer length {len} is not a multiple of {IO_ALIGN}"
        );
        let raw = vec![0u8; len + IO_ALIGN];
        let misalignment = raw.as_ptr() as usize % IO_ALIGN;
        let start = (IO_ALIGN - misalignment) % IO_ALIGN;
        let buf = AlignedBuf {
            raw,
            start,
            len,
            capacity: len,
        };
        debug_assert_eq!(buf.as_ptr() as usize % IO_ALIGN, 0);
        buf
    }

    /// A buffer holding `data`, zero-padded up to the next multiple of [`IO_ALIGN`].
    pub fn from_slice_padded(data: &[u8]) -> AlignedBuf {
        let len = data.len().div_ceil(IO_ALIGN).max(1) * IO_ALIGN;
        let mut buf = AlignedBuf::zeroed(len);
        buf[..data.len()].copy_from_slice(data);
        buf
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The length the buffer was created with: the most [`AlignedBuf::set_len`] accepts.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Shortens or regrows the usable window. Bytes past the old length keep what they held
    /// (they are not zeroed again). Panics unless `len` is a positive multiple of [`IO_ALIGN`]
    /// within the capacity: lengths come from the engine's own bookkeeping, never from input.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len > 0 && len.is_multiple_of(IO_ALIGN) && len <= self.capacity,
            "buffer length {len} is not a multiple of {IO_ALIGN} within {}",
            self.capacity
        );
        self.len = len;
    }

    /// Sets every byte to zero.
    pub fn clear(&mut self) {
        self.fill(0);
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for pages in 1..8 {
            let buf = AlignedBuf::zeroed(pages * IO_ALIGN);
            assert_eq!(buf.as_ptr() as usize % IO_ALIGN, 0);
            assert_eq!(buf.len(), pages * IO_ALIGN);
            assert!(buf.iter().all(|&b| b == 0));
            let moved = buf;
            assert_eq!(moved.as_ptr() as usize % IO_ALIGN, 0);
        }
    }

    #[test]
    fn set_len_shortens_and_regrows_within_capacity() {
        let mut buf = AlignedBuf::zeroed(4 * IO_ALIGN);
        buf[3 * IO_ALIGN] = 9;
        buf.set_len(IO_ALIGN);
        assert_eq!(buf.len(), IO_ALIGN);
        assert_eq!(buf.capacity(), 4 * IO_ALIGN);
        buf.set_len(4 * IO_ALIGN);
        assert_eq!(buf[3 * IO_ALIGN], 9, "regrowing keeps the bytes");
        assert!(std::panic::catch_unwind(move || buf.set_len(5 * IO_ALIGN)).is_err());
    }

    #[test]
    fn padded_copy_rounds_up() {
        let buf = AlignedBuf::from_slice_padded(b"hello");
        assert_eq!(buf.len(), IO_ALIGN);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(buf[5], 0);
    }
}
