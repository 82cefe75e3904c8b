//! Slotted pages: the byte layout of branch and leaf pages, edited in place.
//!
//! A page is `[header | slot array -> ... free ... <- records]`. Slots are `u16` offsets of
//! records, kept in key order; records grow down from the end of the page. Removing a record leaves
//! its bytes as garbage, counted in the header, and a later insert that does not fit the contiguous
//! gap compacts the page first. An update by a record of the same size overwrites the old record
//! in place ([`replace_record`]). The layout is specified byte by byte in docs/format.md.
//!
//! Invariants (checked by [`validate`] after every read and before every write):
//! - the CRC32C at offset 0 covers every other byte of the page;
//! - type, format version, page id and level agree with where the page was found;
//! - `HEADER + 2*count <= heap_start <= page_size`, every record lies inside `[heap_start, page_size)`
//!   and `sum(record sizes) + garbage == page_size - heap_start`;
//! - keys are strictly increasing; a leaf value is inline, or (format 2) a value-log pointer of
//!   exactly `VLOG_POINTER_SIZE` bytes; a branch's children are not `NO_PAGE`;
//! - the free space between the slot array and the heap is zero.

use crate::constants::{
    BRANCH_RECORD_HEADER_SIZE, FORMAT_VERSION, FORMAT_VERSION_MIN, KEY_SIZE_MAX,
    LEAF_RECORD_HEADER_SIZE, PAGE_HEADER_SIZE, SLOT_SIZE, VLOG_POINTER_SIZE,
};
pub use crate::constants::{VALUE_KIND_INLINE, VALUE_KIND_POINTER};
use std::cmp::Ordering;

/// A page's number: page `id` lives at `PAGES_OFFSET + id * page_size` in the page file.
pub type PageId = u64;

/// The child id a leaf stores in the branch-only header field.
pub const NO_PAGE: PageId = u64::MAX;

/// What a page holds (byte 4 of the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageType {
    Leaf = 1,
    Branch = 2,
}

mod off {
    pub const CRC: usize = 0;
    pub const TYPE: usize = 4;
    pub const VERSION: usize = 5;
    pub const LEVEL: usize = 6;
    pub const ID: usize = 8;
    pub const COUNT: usize = 16;
    pub const RESERVED_A: usize = 18;
    pub const HEAP_START: usize = 20;
    pub const GARBAGE: usize = 24;
    pub const RESERVED_B: usize = 28;
    pub const CHILD0: usize = 32;
}

/// Header offsets, exported for the format-table test.
pub const HEADER_FIELD_OFFSETS: [(&str, usize); 11] = [
    ("crc32c", off::CRC),
    ("page_type", off::TYPE),
    ("format_version", off::VERSION),
    ("level", off::LEVEL),
    ("page_id", off::ID),
    ("count", off::COUNT),
    ("reserved_a", off::RESERVED_A),
    ("heap_start", off::HEAP_START),
    ("garbage_bytes", off::GARBAGE),
    ("reserved_b", off::RESERVED_B),
    ("child0", off::CHILD0),
];

const _: () = assert!(off::CHILD0 + 8 == PAGE_HEADER_SIZE);

fn get_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Clears `buf` and writes an empty page's header.
pub fn init(buf: &mut [u8], page_type: PageType, level: u16, id: PageId) {
    assert_eq!(
        page_type == PageType::Leaf,
        level == 0,
        "leaves are level 0, branches above"
    );
    buf.fill(0);
    buf[off::TYPE] = page_type as u8;
    buf[off::VERSION] = FORMAT_VERSION as u8;
    put_u16(buf, off::LEVEL, level);
    put_u64(buf, off::ID, id);
    put_u32(
        buf,
        off::HEAP_START,
        u32::try_from(buf.len()).expect("page size fits u32"),
    );
    put_u64(
        buf,
        off::CHILD0,
        if page_type == PageType::Leaf {
            0
        } else {
            NO_PAGE
        },
    );
}

pub fn page_type(buf: &[u8]) -> PageType {
    if buf[off::TYPE] == PageType::Leaf as u8 {
        PageType::Leaf
    } else {
        PageType::Branch
    }
}

pub fn is_leaf(buf: &[u8]) -> bool {
    page_type(buf) == PageType::Leaf
}

pub fn level(buf: &[u8]) -> u16 {
    get_u16(buf, off::LEVEL)
}

pub fn page_id(buf: &[u8]) -> PageId {
    get_u64(buf, off::ID)
}

/// Rewrites the page id, when a page is copied to a new id (copy-on-write).
pub fn set_page_id(buf: &mut [u8], id: PageId) {
    put_u64(buf, off::ID, id);
}

pub fn count(buf: &[u8]) -> usize {
    get_u16(buf, off::COUNT) as usize
}

fn heap_start(buf: &[u8]) -> usize {
    get_u32(buf, off::HEAP_START) as usize
}

fn garbage(buf: &[u8]) -> usize {
    get_u32(buf, off::GARBAGE) as usize
}

fn slot(buf: &[u8], index: usize) -> usize {
    get_u16(buf, PAGE_HEADER_SIZE + SLOT_SIZE * index) as usize
}

/// Size of the record starting at `at` (its header tells).
fn record_size_at(buf: &[u8], at: usize) -> usize {
    if is_leaf(buf) {
        LEAF_RECORD_HEADER_SIZE + get_u16(buf, at + 2) as usize + get_u32(buf, at + 4) as usize
    } else {
        BRANCH_RECORD_HEADER_SIZE + get_u16(buf, at + 8) as usize
    }
}

/// The raw bytes of record `index`.
pub fn record(buf: &[u8], index: usize) -> &[u8] {
    let at = slot(buf, index);
    &buf[at..at + record_size_at(buf, at)]
}

/// The key of a raw record of a page of type `page_type`.
pub fn record_key(page_type: PageType, rec: &[u8]) -> &[u8] {
    match page_type {
        PageType::Leaf => {
            let key_size = get_u16(rec, 2) as usize;
            &rec[LEAF_RECORD_HEADER_SIZE..LEAF_RECORD_HEADER_SIZE + key_size]
        }
        PageType::Branch => &rec[BRANCH_RECORD_HEADER_SIZE..],
    }
}

pub fn key(buf: &[u8], index: usize) -> &[u8] {
    key_at(buf, is_leaf(buf), index)
}

/// The key of record `index`, reading only the key length (the hot path of every search).
#[inline]
fn key_at(buf: &[u8], leaf: bool, index: usize) -> &[u8] {
    let at = slot(buf, index);
    let (size_at, fixed) = if leaf {
        (at + 2, LEAF_RECORD_HEADER_SIZE)
    } else {
        (at + 8, BRANCH_RECORD_HEADER_SIZE)
    };
    let start = at + fixed;
    &buf[start..start + get_u16(buf, size_at) as usize]
}

/// Bytes taken by records and slots: what a merge would have to move.
pub fn used_bytes(buf: &[u8]) -> usize {
    buf.len() - heap_start(buf) - garbage(buf) + SLOT_SIZE * count(buf)
}

/// Lexicographic byte order, the same as `<[u8]>::cmp`, eight bytes at a time: keys are short,
/// so this beats a call to the C library's `memcmp` on every step of every search.
#[inline]
pub fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    let common = a.len().min(b.len());
    let (a_head, b_head) = (&a[..common], &b[..common]);
    let mut a_words = a_head.chunks_exact(8);
    let mut b_words = b_head.chunks_exact(8);
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        let x = u64::from_be_bytes(x.try_into().expect("8-byte chunk"));
        let y = u64::from_be_bytes(y.try_into().expect("8-byte chunk"));
        if x != y {
            return x.cmp(&y);
        }
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Binary search: `Ok(index)` of `key`, or `Err(index)` where it would be inserted.
#[inline]
pub fn search(buf: &[u8], key: &[u8]) -> Result<usize, usize> {
    let (mut low, mut high) = (0, count(buf));
    let leaf = is_leaf(buf);
    while low < high {
        let mid = low + (high - low) / 2;
        match compare_keys(key_at(buf, leaf, mid), key) {
            Ordering::Less => low = mid + 1,
            Ordering::Greater => high = mid,
            Ordering::Equal => return Ok(mid),
        }
    }
    Err(low)
}

/// Inserts a raw record at slot `index`, compacting first if the gap is too small. Returns false
/// (and leaves the page unchanged) when the record does not fit at all.
pub fn insert_record(buf: &mut [u8], index: usize, rec: &[u8]) -> bool {
    let n = count(buf);
    assert!(index <= n, "insert index {index} past count {n}");
    let needed = rec.len() + SLOT_SIZE;
    let slots_end = PAGE_HEADER_SIZE + SLOT_SIZE * n;
    if heap_start(buf) - slots_end < needed {
        if heap_start(buf) - slots_end + garbage(buf) < needed {
            return false;
        }
        compact(buf);
    }
    let at = heap_start(buf) - rec.len();
    buf[at..at + rec.len()].copy_from_slice(rec);
    let slot_at = PAGE_HEADER_SIZE + SLOT_SIZE * index;
    buf.copy_within(slot_at..slots_end, slot_at + SLOT_SIZE);
    put_u16(
        buf,
        slot_at,
        u16::try_from(at).expect("offset inside a page"),
    );
    put_u16(
        buf,
        off::COUNT,
        u16::try_from(n + 1).expect("count fits u16"),
    );
    put_u32(
        buf,
        off::HEAP_START,
        u32::try_from(at).expect("offset fits u32"),
    );
    true
}

/// Overwrites record `index` with `rec` where it lies, if both have the same size (an update of
/// a key with a value of the same length: the common case of a cache or counter workload).
/// Returns false, leaving the page unchanged, if the sizes differ. The caller keeps key order:
/// `rec` holds the same key as the record it replaces.
pub fn replace_record(buf: &mut [u8], index: usize, rec: &[u8]) -> bool {
    let n = count(buf);
    assert!(index < n, "replace index {index} past count {n}");
    let at = slot(buf, index);
    if record_size_at(buf, at) != rec.len() {
        return false;
    }
    debug_assert_eq!(
        record_key(page_type(buf), rec),
        key_at(buf, is_leaf(buf), index),
        "a replacing record keeps the key"
    );
    buf[at..at + rec.len()].copy_from_slice(rec);
    true
}

/// Removes record `index`; its bytes become garbage until the next compaction.
pub fn remove_record(buf: &mut [u8], index: usize) {
    let n = count(buf);
    assert!(index < n, "remove index {index} past count {n}");
    let at = slot(buf, index);
    let size = record_size_at(buf, at);
    let slot_at = PAGE_HEADER_SIZE + SLOT_SIZE * index;
    let slots_end = PAGE_HEADER_SIZE + SLOT_SIZE * n;
    buf.copy_within(slot_at + SLOT_SIZE..slots_end, slot_at);
    put_u16(buf, slots_end - SLOT_SIZE, 0);
    put_u16(
        buf,
        off::COUNT,
        u16::try_from(n - 1).expect("count fits u16"),
    );
    if at == heap_start(buf) {
        put_u32(
            buf,
            off::HEAP_START,
            u32::try_from(at + size).expect("offset fits u32"),
        );
    } else {
        put_u32(
            buf,
            off::GARBAGE,
            u32::try_from(garbage(buf) + size).expect("fits u32"),
        );
    }
    buf[at..at + size].fill(0);
}

/// Rewrites the page with the same records and no garbage.
fn compact(buf: &mut [u8]) {
    // One copy of the page to rebuild from, not one allocation per record.
    let before = buf.to_vec();
    let child0 = get_u64(&before, off::CHILD0);
    let (page_type, level, id) = (page_type(&before), level(&before), page_id(&before));
    rebuild(
        buf,
        page_type,
        level,
        id,
        child0,
        (0..count(&before)).map(|index| record(&before, index)),
    );
}

/// Writes a page from scratch. Panics if the records do not fit: callers size them first.
pub fn rebuild<'a>(
    buf: &mut [u8],
    page_type: PageType,
    level: u16,
    id: PageId,
    child0: PageId,
    records: impl Iterator<Item = &'a [u8]>,
) {
    init(buf, page_type, level, id);
    if page_type == PageType::Branch {
        put_u64(buf, off::CHILD0, child0);
    }
    for (index, rec) in records.enumerate() {
        assert!(
            insert_record(buf, index, rec),
            "rebuilt page {id} overflows"
        );
    }
}

/// Child `index` of a branch: 0 is the header's `child0`, `i >= 1` the child of record `i - 1`.
pub fn branch_child(buf: &[u8], index: usize) -> PageId {
    debug_assert!(!is_leaf(buf));
    if index == 0 {
        get_u64(buf, off::CHILD0)
    } else {
        get_u64(buf, slot(buf, index - 1))
    }
}

pub fn set_branch_child(buf: &mut [u8], index: usize, child: PageId) {
    assert!(!is_leaf(buf), "set_branch_child on a leaf");
    if index == 0 {
        put_u64(buf, off::CHILD0, child);
    } else {
        let at = slot(buf, index - 1);
        put_u64(buf, at, child);
    }
}

/// Number of children of a branch.
pub fn branch_children(buf: &[u8]) -> usize {
    count(buf) + 1
}

/// Which child of a branch covers `key`: the number of separators `<= key`.
pub fn branch_child_index(buf: &[u8], key: &[u8]) -> usize {
    match search(buf, key) {
        Ok(index) => index + 1,
        Err(index) => index,
    }
}

/// A branch record: child id, key length, separator key.
pub fn branch_record(child: PageId, key: &[u8]) -> Vec<u8> {
    assert!(
        key.len() <= KEY_SIZE_MAX,
        "separator longer than KEY_SIZE_MAX"
    );
    let mut rec = Vec::with_capacity(BRANCH_RECORD_HEADER_SIZE + key.len());
    rec.extend_from_slice(&child.to_le_bytes());
    rec.extend_from_slice(
        &u16::try_from(key.len())
            .expect("key fits u16")
            .to_le_bytes(),
    );
    rec.extend_from_slice(key);
    rec
}

/// The child id of a raw branch record.
pub fn branch_record_child(rec: &[u8]) -> PageId {
    get_u64(rec, 0)
}

/// A leaf record's fields, borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafRecord<'a> {
    /// [`VALUE_KIND_INLINE`] or [`VALUE_KIND_POINTER`].
    pub kind: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub expiry_ms: u64,
    pub version: u64,
}

impl LeafRecord<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut rec = Vec::new();
        self.encode_into(&mut rec);
        rec
    }

    /// Encodes the record into `rec`, replacing what it held (the tree reuses one buffer for
    /// every put instead of allocating a record per put).
    pub fn encode_into(&self, rec: &mut Vec<u8>) {
        rec.clear();
        rec.reserve(LEAF_RECORD_HEADER_SIZE + self.key.len() + self.value.len());
        rec.resize(LEAF_RECORD_HEADER_SIZE, 0);
        assert!(
            self.kind == VALUE_KIND_INLINE
                || (self.kind == VALUE_KIND_POINTER && self.value.len() == VLOG_POINTER_SIZE),
            "leaf record of value kind {} with {} value bytes",
            self.kind,
            self.value.len()
        );
        rec[0] = self.kind;
        put_u16(
            rec,
            2,
            u16::try_from(self.key.len()).expect("key length checked"),
        );
        put_u32(
            rec,
            4,
            u32::try_from(self.value.len()).expect("value length checked"),
        );
        put_u64(rec, 8, self.expiry_ms);
        put_u64(rec, 16, self.version);
        rec.extend_from_slice(self.key);
        rec.extend_from_slice(self.value);
    }

    /// Parses a record that [`validate`] has accepted.
    pub fn parse(rec: &[u8]) -> LeafRecord<'_> {
        let key_size = get_u16(rec, 2) as usize;
        let key_end = LEAF_RECORD_HEADER_SIZE + key_size;
        LeafRecord {
            kind: rec[0],
            key: &rec[LEAF_RECORD_HEADER_SIZE..key_end],
            value: &rec[key_end..],
            expiry_ms: get_u64(rec, 8),
            version: get_u64(rec, 16),
        }
    }
}

pub fn leaf_record(buf: &[u8], index: usize) -> LeafRecord<'_> {
    debug_assert!(is_leaf(buf));
    LeafRecord::parse(record(buf, index))
}

/// Computes and stores the CRC32C of the page (everything after the CRC field). Every page
/// written is stamped with the current format version: a format-1 page copied on write becomes
/// a format-2 page (whose leaves may then hold value-log pointers).
pub fn seal(buf: &mut [u8]) {
    buf[off::VERSION] = FORMAT_VERSION as u8;
    let crc = crc32c::crc32c(&buf[off::CRC + 4..]);
    put_u32(buf, off::CRC, crc);
}

/// Checks a page read from (or about to be written to) page `expected_id`. The error is a
/// sentence saying what is wrong; the pager adds file, offset and page id.
pub fn validate(buf: &[u8], expected_id: PageId) -> Result<(), String> {
    if buf.len() < PAGE_HEADER_SIZE {
        return Err(format!(
            "page buffer of {} bytes is shorter than a header",
            buf.len()
        ));
    }
    let stored = get_u32(buf, off::CRC);
    let computed = crc32c::crc32c(&buf[off::CRC + 4..]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    validate_header(buf, expected_id)?;
    validate_records(buf)
}

fn validate_header(buf: &[u8], expected_id: PageId) -> Result<(), String> {
    let page_type = buf[off::TYPE];
    if page_type != PageType::Leaf as u8 && page_type != PageType::Branch as u8 {
        return Err(format!("unknown page type {page_type}"));
    }
    let version = u32::from(buf[off::VERSION]);
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return Err(format!(
            "format version {version} (this build reads {FORMAT_VERSION_MIN} to {FORMAT_VERSION})"
        ));
    }
    if page_id(buf) != expected_id {
        return Err(format!(
            "header names page {} (misdirected write?)",
            page_id(buf)
        ));
    }
    let leaf = page_type == PageType::Leaf as u8;
    if leaf != (level(buf) == 0) {
        return Err(format!("page type {page_type} at level {}", level(buf)));
    }
    if get_u16(buf, off::RESERVED_A) != 0 || get_u32(buf, off::RESERVED_B) != 0 {
        return Err("reserved header bytes are not zero".to_string());
    }
    let child0 = get_u64(buf, off::CHILD0);
    if (leaf && child0 != 0) || (!leaf && child0 == NO_PAGE) {
        return Err(format!(
            "header child0 {child0:#x} is invalid for this page type"
        ));
    }
    let slots_end = PAGE_HEADER_SIZE + SLOT_SIZE * count(buf);
    let heap_start = heap_start(buf);
    if slots_end > heap_start || heap_start > buf.len() {
        return Err(format!(
            "slot array end {slots_end} and heap start {heap_start} overlap"
        ));
    }
    // Free space is always zero (init zeroes the page, removals zero what they free), so any
    // other byte there is a bug or damage that happened to keep the checksum.
    if let Some(at) = buf[slots_end..heap_start].iter().position(|&b| b != 0) {
        return Err(format!("free space is not zero at byte {}", slots_end + at));
    }
    Ok(())
}

fn validate_records(buf: &[u8]) -> Result<(), String> {
    let heap_start = heap_start(buf);
    let leaf = is_leaf(buf);
    let fixed = if leaf {
        LEAF_RECORD_HEADER_SIZE
    } else {
        BRANCH_RECORD_HEADER_SIZE
    };
    let mut record_bytes = 0usize;
    for index in 0..count(buf) {
        let at = slot(buf, index);
        if at < heap_start || at + fixed > buf.len() {
            return Err(format!(
                "slot {index} points at {at}, outside the record heap"
            ));
        }
        let size = record_size_at(buf, at);
        if at + size > buf.len() {
            return Err(format!(
                "record {index} at {at} of {size} bytes runs past the page"
            ));
        }
        let key_size = if leaf {
            get_u16(buf, at + 2)
        } else {
            get_u16(buf, at + 8)
        } as usize;
        if key_size > KEY_SIZE_MAX {
            return Err(format!(
                "record {index} has a key of {key_size} bytes (max {KEY_SIZE_MAX})"
            ));
        }
        if leaf {
            let (kind, flags) = (buf[at], buf[at + 1]);
            let value_size = get_u32(buf, at + 4) as usize;
            let pointer_ok = kind == VALUE_KIND_POINTER
                && buf[off::VERSION] >= 2
                && value_size == VLOG_POINTER_SIZE;
            if (kind != VALUE_KIND_INLINE && !pointer_ok) || flags != 0 {
                return Err(format!(
                    "record {index} has value kind {kind} flags {flags} value size {value_size}"
                ));
            }
        }
        if !leaf && get_u64(buf, at) == NO_PAGE {
            return Err(format!("branch record {index} has no child"));
        }
        if index > 0 && key(buf, index - 1) >= key(buf, index) {
            return Err(format!("keys {} and {index} are out of order", index - 1));
        }
        record_bytes += size;
    }
    if record_bytes + garbage(buf) != buf.len() - heap_start {
        return Err(format!(
            "records ({record_bytes} bytes) and garbage ({}) do not fill the heap ({} bytes)",
            garbage(buf),
            buf.len() - heap_start
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
