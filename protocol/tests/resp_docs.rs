//! docs/resp.md's limits table must hold the values of `resp::constants`,
//! and its command table must name every top-level command of the table.

use jube_protocol::resp::constants as c;
use jube_protocol::resp::table;

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/resp.md");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

#[test]
fn limits_table_matches_constants() {
    let doc = doc();
    let limits: [(&str, u64); 7] = [
        ("BULK_SIZE_MAX", c::BULK_SIZE_MAX as u64),
        ("ARRAY_LENGTH_MAX", c::ARRAY_LENGTH_MAX as u64),
        ("REQUEST_SIZE_MAX", c::REQUEST_SIZE_MAX as u64),
        ("INLINE_SIZE_MAX", c::INLINE_SIZE_MAX as u64),
        ("HEADER_SIZE_MAX", c::HEADER_SIZE_MAX as u64),
        ("EXPIRE_IN_MS_MAX", c::EXPIRE_IN_MS_MAX as u64),
        ("EXPIRE_AT_UNIX_MS_MAX", c::EXPIRE_AT_UNIX_MS_MAX as u64),
    ];
    for (name, value) in limits {
        let row = format!("| `{name}` | {value} |");
        assert!(doc.contains(&row), "docs/resp.md lacks the row {row}");
    }
}

#[test]
fn command_table_names_every_command() {
    let doc = doc().to_ascii_lowercase();
    for spec in table::top_level() {
        assert!(
            doc.contains(&format!("`{}", spec.name)),
            "docs/resp.md lacks {}",
            spec.name
        );
    }
}
