//! Fuzzes page and superblock decoding: arbitrary bytes must be rejected with an error or
//! accepted as a page every accessor can read, never a panic or an out-of-bounds access.
//!
//! Strategy: the input becomes one 4 KiB page (truncated or zero-padded). It is checked twice:
//! as is (almost always a checksum failure), and after sealing a correct CRC into it, so the
//! fuzzer explores the structural checks behind the checksum. A page that validates is then read
//! through every accessor the tree uses. The same bytes are also decoded as a superblock slot.

#![no_main]

use jube_engine::tree::page::{self, PageType};
use jube_engine::tree::superblock::Superblock;
use libfuzzer_sys::fuzz_target;

const PAGE_SIZE: usize = 4096;

fn exercise(buf: &[u8], id: u64) {
    if page::validate(buf, id).is_err() {
        return;
    }
    let n = page::count(buf);
    let _ = page::used_bytes(buf);
    for index in 0..n {
        let key = page::key(buf, index).to_vec();
        assert_eq!(
            page::search(buf, &key),
            Ok(index),
            "a validated page finds its own keys"
        );
        match page::page_type(buf) {
            PageType::Leaf => {
                let rec = page::leaf_record(buf, index);
                assert_eq!(rec.key, key.as_slice());
            }
            PageType::Branch => {
                let _ = page::branch_child(buf, index + 1);
                let _ = page::branch_child_index(buf, &key);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; PAGE_SIZE];
    let n = data.len().min(PAGE_SIZE);
    buf[..n].copy_from_slice(&data[..n]);
    let id = page::page_id(&buf);
    exercise(&buf, id);
    page::seal(&mut buf);
    exercise(&buf, id);
    let _ = Superblock::decode(&buf);
});
