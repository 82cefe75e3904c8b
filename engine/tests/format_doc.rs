//! Checks the byte tables of docs/format.md against the code's offsets and sizes, so the format
//! document cannot drift from what the code writes.
//!
//! Strategy: find each section's table by its heading, parse its rows (`| offset | size | field |
//! ...`), and compare every field the code declares with the row of the same name; rows must also
//! tile their structure without gaps or overlaps.

use jube_engine::constants::{
    BRANCH_RECORD_HEADER_SIZE, LEAF_RECORD_HEADER_SIZE, PAGE_HEADER_SIZE, SUPERBLOCK_SIZE,
    VLOG_POINTER_SIZE, VLOG_RECORD_HEADER_SIZE, VLOG_SEGMENT_HEADER_SIZE,
};
use jube_engine::shard::vlog::format::{
    POINTER_FIELDS, RECORD_HEADER_FIELDS, SEGMENT_HEADER_FIELDS, SEGMENT_HEADER_USED_BYTES,
};
use jube_engine::tree::page::HEADER_FIELD_OFFSETS;
use jube_engine::tree::superblock::field;
use jube_engine::txn::record::WRITE_PUT_HEADER_BYTES;

/// Rows `(offset, size, field)` of the first table after `heading`, skipping the variable-size
/// rows (whose offset or size is an expression like `24 + key_size`); their size is then `None`.
fn table(doc: &str, heading: &str) -> Vec<(usize, Option<usize>, String)> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/format.md lacks {heading:?}"));
    doc[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let offset = cells[1].parse().ok()?;
            Some((offset, cells[2].parse().ok(), cells[3].to_string()))
        })
        .collect()
}

fn check(
    rows: &[(usize, Option<usize>, String)],
    code: &[(&str, usize)],
    total: usize,
    what: &str,
) {
    for (name, offset) in code {
        let row = rows
            .iter()
            .find(|r| r.2 == *name)
            .unwrap_or_else(|| panic!("{what}: no row for {name}"));
        assert_eq!(row.0, *offset, "{what}: offset of {name}");
    }
    let mut end = 0;
    for (offset, size, name) in rows {
        assert_eq!(*offset, end, "{what}: gap or overlap before {name}");
        end = offset + size.unwrap_or_else(|| panic!("{what}: size of {name}"));
    }
    assert_eq!(end, total, "{what}: rows do not cover the structure");
}

#[test]
fn format_tables_match_the_code() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/format.md"))
        .expect("docs/format.md");
    check(
        &table(&doc, "### Superblock"),
        &field::OFFSETS,
        SUPERBLOCK_SIZE,
        "superblock",
    );
    check(
        &table(&doc, "### Page header"),
        &HEADER_FIELD_OFFSETS,
        PAGE_HEADER_SIZE,
        "page header",
    );
    let leaf: Vec<_> = table(&doc, "### Leaf record")
        .into_iter()
        .filter(|r| r.1.is_some())
        .collect();
    let leaf_fields = [
        ("value_kind", 0),
        ("flags", 1),
        ("key_size", 2),
        ("value_size", 4),
        ("expiry_ms", 8),
        ("version", 16),
    ];
    check(&leaf, &leaf_fields, LEAF_RECORD_HEADER_SIZE, "leaf record");
    let branch: Vec<_> = table(&doc, "### Branch record")
        .into_iter()
        .filter(|r| r.1.is_some())
        .collect();
    check(
        &branch,
        &[("child", 0), ("key_size", 8)],
        BRANCH_RECORD_HEADER_SIZE,
        "branch record",
    );
    let write: Vec<_> = table(&doc, "### Transaction write entry")
        .into_iter()
        .filter(|r| r.1.is_some())
        .collect();
    let write_fields = [
        ("kind: 1 = put, 2 = delete, 3 = put pointer", 0),
        ("key length", 1),
        ("expiry ms (put only): absolute wall-clock ms, 0 = none", 3),
        ("value length (put only)", 11),
    ];
    check(
        &write,
        &write_fields,
        WRITE_PUT_HEADER_BYTES,
        "txn write entry",
    );
    check(
        &table(&doc, "### Value-log pointer"),
        &POINTER_FIELDS,
        VLOG_POINTER_SIZE,
        "value-log pointer",
    );
    let header: Vec<_> = table(&doc, "### Value-log segment header")
        .into_iter()
        .filter(|r| r.2 != "zero")
        .collect();
    check(
        &header,
        &SEGMENT_HEADER_FIELDS,
        SEGMENT_HEADER_USED_BYTES,
        "value-log segment header",
    );
    let zero_row = table(&doc, "### Value-log segment header")
        .into_iter()
        .find(|r| r.2 == "zero")
        .expect("the header's zero tail");
    assert_eq!(
        zero_row.0 + zero_row.1.expect("size"),
        VLOG_SEGMENT_HEADER_SIZE,
        "the header fills one block"
    );
    let record: Vec<_> = table(&doc, "### Value-log record")
        .into_iter()
        .filter(|r| r.1.is_some())
        .collect();
    check(
        &record,
        &RECORD_HEADER_FIELDS,
        VLOG_RECORD_HEADER_SIZE,
        "value-log record",
    );
}
