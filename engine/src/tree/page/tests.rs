use super::*;
use crate::constants::PAGE_SIZE_MIN;

fn leaf_with(keys: &[&[u8]]) -> Vec<u8> {
    let mut buf = vec![0u8; PAGE_SIZE_MIN];
    init(&mut buf, PageType::Leaf, 0, 7);
    for (i, key) in keys.iter().enumerate() {
        let rec = LeafRecord {
            kind: VALUE_KIND_INLINE,
            key,
            value: b"value",
            expiry_ms: i as u64,
            version: 100 + i as u64,
        }
        .encode();
        assert!(insert_record(&mut buf, i, &rec));
    }
    seal(&mut buf);
    buf
}

#[test]
fn leaf_round_trip() {
    let buf = leaf_with(&[b"a", b"b", b"c"]);
    assert_eq!(validate(&buf, 7), Ok(()));
    assert_eq!(count(&buf), 3);
    let rec = leaf_record(&buf, 1);
    assert_eq!(
        (rec.key, rec.value, rec.expiry_ms, rec.version),
        (&b"b"[..], &b"value"[..], 1, 101)
    );
    assert_eq!(search(&buf, b"b"), Ok(1));
    assert_eq!(search(&buf, b"bb"), Err(2));
    assert_eq!(search(&buf, b""), Err(0));
}

#[test]
fn every_corrupted_byte_is_detected() {
    let buf = leaf_with(&[b"alpha", b"beta", b"gamma"]);
    for at in 0..buf.len() {
        let mut bad = buf.clone();
        bad[at] ^= 0x01;
        assert!(
            validate(&bad, 7).is_err(),
            "flip at byte {at} went unnoticed"
        );
    }
}

#[test]
fn wrong_page_id_is_a_misdirected_write() {
    let buf = leaf_with(&[b"a"]);
    let err = validate(&buf, 8).expect_err("page 7 read as page 8");
    assert!(err.contains("header names page 7"), "{err}");
}

#[test]
fn structural_errors_are_named_even_with_a_good_checksum() {
    let mut buf = leaf_with(&[b"a", b"b"]);
    // Swap the two slots: keys out of order.
    let (s0, s1) = (
        get_u16(&buf, PAGE_HEADER_SIZE),
        get_u16(&buf, PAGE_HEADER_SIZE + 2),
    );
    put_u16(&mut buf, PAGE_HEADER_SIZE, s1);
    put_u16(&mut buf, PAGE_HEADER_SIZE + 2, s0);
    seal(&mut buf);
    assert!(validate(&buf, 7)
        .expect_err("unordered")
        .contains("out of order"));
    let mut buf = leaf_with(&[b"a"]);
    buf[off::TYPE] = 9;
    seal(&mut buf);
    assert!(validate(&buf, 7)
        .expect_err("bad type")
        .contains("unknown page type"));
}

#[test]
fn remove_and_reinsert_reuses_space_by_compaction() {
    let mut buf = vec![0u8; PAGE_SIZE_MIN];
    init(&mut buf, PageType::Leaf, 0, 1);
    let value = vec![7u8; 300];
    let mut n = 0;
    loop {
        let key = format!("key{n:04}");
        let rec = LeafRecord {
            kind: VALUE_KIND_INLINE,
            key: key.as_bytes(),
            value: &value,
            expiry_ms: 0,
            version: 1,
        }
        .encode();
        if !insert_record(&mut buf, n, &rec) {
            break;
        }
        n += 1;
    }
    assert!(
        n >= 10,
        "a 4 KiB page holds at least ten 330-byte records, held {n}"
    );
    // Free one record in the middle (garbage), then an equal one must fit again after compaction.
    remove_record(&mut buf, n / 2);
    let rec = LeafRecord {
        kind: VALUE_KIND_INLINE,
        key: b"key0000x",
        value: &value,
        expiry_ms: 0,
        version: 2,
    }
    .encode();
    assert!(insert_record(&mut buf, 1, &rec));
    seal(&mut buf);
    assert_eq!(validate(&buf, 1), Ok(()));
    assert_eq!(count(&buf), n);
}

#[test]
fn branch_children_and_child_index() {
    let mut buf = vec![0u8; PAGE_SIZE_MIN];
    init(&mut buf, PageType::Branch, 1, 3);
    set_branch_child(&mut buf, 0, 10);
    assert!(insert_record(&mut buf, 0, &branch_record(11, b"m")));
    assert!(insert_record(&mut buf, 1, &branch_record(12, b"t")));
    seal(&mut buf);
    assert_eq!(validate(&buf, 3), Ok(()));
    assert_eq!(branch_children(&buf), 3);
    let child = |key: &[u8]| branch_child(&buf, branch_child_index(&buf, key));
    assert_eq!(
        (
            child(b"a"),
            child(b"m"),
            child(b"s"),
            child(b"t"),
            child(b"z")
        ),
        (10, 11, 11, 12, 12)
    );
    set_branch_child(&mut buf, 1, 21);
    assert_eq!(branch_child(&buf, 1), 21);
}

/// The fuzz target's property on stable, in the default run: a valid page with random bytes
/// overwritten and a correct CRC sealed in is either rejected or readable through every accessor.
#[test]
fn mutated_pages_are_rejected_or_readable() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let base = leaf_with(&[b"alpha", b"beta", b"delta", b"gamma"]);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut buf = base.clone();
        for _ in 0..rng.gen_range(1..4) {
            let at = rng.gen_range(0..PAGE_HEADER_SIZE + 64).min(buf.len() - 1);
            let at = if rng.gen_bool(0.5) {
                at
            } else {
                rng.gen_range(0..buf.len())
            };
            buf[at] = rng.gen();
        }
        seal(&mut buf);
        if validate(&buf, 7).is_err() {
            continue;
        }
        accepted += 1;
        for index in 0..count(&buf) {
            let key = key(&buf, index).to_vec();
            assert_eq!(search(&buf, &key), Ok(index));
            assert_eq!(leaf_record(&buf, index).key, key.as_slice());
        }
        let _ = used_bytes(&buf);
    }
    assert!(
        accepted > 0,
        "some mutations (e.g. of free space... or values) stay valid"
    );
}

proptest::proptest! {
    /// The word-at-a-time comparison is exactly the byte order of `<[u8]>::cmp`, including
    /// prefixes and keys that share their first words (short alphabets make ties likely).
    #[test]
    fn compare_keys_is_byte_order(
        a in proptest::collection::vec(0u8..3, 0..40),
        b in proptest::collection::vec(0u8..3, 0..40),
    ) {
        proptest::prop_assert_eq!(compare_keys(&a, &b), a.cmp(&b));
        proptest::prop_assert_eq!(compare_keys(&a, &a), std::cmp::Ordering::Equal);
    }
}

#[test]
fn a_same_size_record_is_replaced_in_place_and_another_size_is_refused() {
    let mut buf = leaf_with(&[b"a", b"b", b"c"]);
    let heap_before = heap_start(&buf);
    let same = LeafRecord {
        kind: VALUE_KIND_INLINE,
        key: b"b",
        value: b"VALUE",
        expiry_ms: 9,
        version: 200,
    }
    .encode();
    assert!(replace_record(&mut buf, 1, &same));
    assert_eq!(heap_start(&buf), heap_before, "nothing moved");
    assert_eq!(garbage(&buf), 0, "no garbage left behind");
    seal(&mut buf);
    assert_eq!(validate(&buf, 7), Ok(()));
    let rec = leaf_record(&buf, 1);
    assert_eq!(
        (rec.key, rec.value, rec.expiry_ms, rec.version),
        (&b"b"[..], &b"VALUE"[..], 9, 200)
    );
    assert_eq!(leaf_record(&buf, 0).value, b"value");
    assert_eq!(leaf_record(&buf, 2).value, b"value");
    let longer = LeafRecord {
        kind: VALUE_KIND_INLINE,
        key: b"b",
        value: b"longer value",
        expiry_ms: 0,
        version: 201,
    }
    .encode();
    let before = buf.clone();
    assert!(!replace_record(&mut buf, 1, &longer));
    assert_eq!(buf, before, "a refused replace leaves the page unchanged");
}

#[test]
fn compaction_keeps_every_record_and_reclaims_garbage() {
    let mut buf = leaf_with(&[b"a", b"b", b"c", b"d"]);
    remove_record(&mut buf, 1);
    remove_record(&mut buf, 1);
    assert!(garbage(&buf) > 0);
    compact(&mut buf);
    assert_eq!(garbage(&buf), 0);
    assert_eq!(count(&buf), 2);
    seal(&mut buf);
    assert_eq!(validate(&buf, 7), Ok(()));
    assert_eq!(leaf_record(&buf, 0).key, b"a");
    assert_eq!(leaf_record(&buf, 1).key, b"d");
}
