//! docs/protocol.md is the protocol's reference, so its tables must match the
//! code: every limit in the "Limits" table has the value of its constant, and
//! every status in the "Status codes" table has its code. A constant or
//! status missing from the doc fails too.

use jube_protocol::constants as c;
use jube_protocol::Status;

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// The cells of each table row in the doc, trimmed, backticks removed.
fn rows(doc: &str) -> Vec<Vec<String>> {
    doc.lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('`', ""))
                .collect()
        })
        .collect()
}

fn cell_after(rows: &[Vec<String>], name: &str) -> Option<String> {
    rows.iter()
        .find(|row| row.first().map(String::as_str) == Some(name))
        .and_then(|row| row.get(1).cloned())
}

#[test]
fn limits_table_matches_constants() {
    let doc = doc();
    let rows = rows(&doc);
    let constants: [(&str, u64); 16] = [
        ("PROTOCOL_VERSION", c::PROTOCOL_VERSION.into()),
        ("PROTOCOL_VERSION_MIN", c::PROTOCOL_VERSION_MIN.into()),
        ("FRAME_SIZE_MAX", c::FRAME_SIZE_MAX as u64),
        ("KEY_SIZE_MAX", c::KEY_SIZE_MAX as u64),
        ("VALUE_SIZE_MAX", c::VALUE_SIZE_MAX as u64),
        ("BATCH_ITEMS_MAX", c::BATCH_ITEMS_MAX as u64),
        ("SCAN_LIMIT_MAX", c::SCAN_LIMIT_MAX.into()),
        ("CONTINUATION_SIZE_MAX", c::CONTINUATION_SIZE_MAX as u64),
        ("TTL_MS_MAX", c::TTL_MS_MAX),
        ("MESSAGE_SIZE_MAX", c::MESSAGE_SIZE_MAX as u64),
        ("PIPELINE_DEPTH_MAX", c::PIPELINE_DEPTH_MAX as u64),
        ("TXN_ITEMS_MAX", c::TXN_ITEMS_MAX as u64),
        ("TXN_SIZE_MAX", c::TXN_SIZE_MAX as u64),
        ("VERIFIER_DEPTH_MAX", c::VERIFIER_DEPTH_MAX as u64),
        ("VERIFIER_TABLES_MAX", c::VERIFIER_TABLES_MAX as u64),
        (
            "VERIFIER_APPARENT_SIZE_MAX",
            c::VERIFIER_APPARENT_SIZE_MAX as u64,
        ),
    ];
    for (name, value) in constants {
        let documented = cell_after(&rows, name)
            .unwrap_or_else(|| panic!("docs/protocol.md has no row for {name}"));
        assert_eq!(documented, value.to_string(), "docs/protocol.md: {name}");
    }
}

#[test]
fn status_table_matches_codes() {
    let doc = doc();
    let rows = rows(&doc);
    for status in Status::KNOWN {
        let row = rows
            .iter()
            .find(|row| row.get(1).map(String::as_str) == Some(format!("{status:?}").as_str()))
            .unwrap_or_else(|| panic!("docs/protocol.md has no row for status {status:?}"));
        assert_eq!(
            row[0],
            status.code().to_string(),
            "docs/protocol.md: code of {status:?}"
        );
    }
}
