//! The data directory: a MANIFEST at the root and one subdirectory per shard.
//!
//! ```text
//! DATA_DIR/
//!   MANIFEST            format version, shard count, page size, creation time, instance id
//!   shard-000/pages     the shard's page file (superblocks A/B, then pages)
//!   shard-000/wal-...   its WAL segments
//!   shard-001/...
//! ```
//!
//! Creation order makes a half-created directory recognisable: every shard is created (and
//! synced) first, the MANIFEST last, through a temporary file and a rename. So a directory with a
//! MANIFEST has all its shards, and one without is a creation that never finished: its shard
//! files are ours to remove and create again. Files we did not write are never removed: a
//! directory holding them is refused.

use super::{Shard, ShardConfig, ShardError};
use crate::clock::Clock;
use crate::constants::PAGE_FILE_NAME;
use crate::manifest::{Manifest, ManifestError, ManifestParams, MANIFEST_NAME, MANIFEST_TMP_NAME};
use crate::storage::Vfs;
use rand::RngCore;
use std::rc::Rc;

/// The name of shard `shard_id`'s directory.
pub fn shard_dir_name(shard_id: u32) -> String {
    format!("shard-{shard_id:03}")
}

/// Whether `name` is a file a shard directory may hold (so an unfinished creation may remove
/// it).
fn is_shard_file(name: &str) -> bool {
    name == PAGE_FILE_NAME || name.starts_with("wal-") || name.starts_with("free-")
}

/// Opens the data directory `root`, or creates it with `shard_count` shards of `page_size`
/// pages when it has no MANIFEST. Returns the MANIFEST: its shard count is the directory's, not
/// `shard_count` (a restart with another core count keeps the shards it has). A directory made
/// with another page size is refused; so is a MANIFEST whose shard directories are missing.
pub fn prepare<V: Vfs + Clone>(
    root: &mut V,
    shard_count: u32,
    shard_config: impl Fn(u32) -> ShardConfig,
    clock: Rc<dyn Clock>,
    rng: &mut dyn RngCore,
) -> Result<Manifest, ShardError> {
    let open_err = |detail: String| ShardError::Open { detail };
    let page_size = u32::try_from(shard_config(0).tree.page_size).expect("page size fits u32");
    if root.exists(MANIFEST_NAME) {
        let manifest = Manifest::read(root).map_err(|e| open_err(e.to_string()))?;
        if manifest.params.page_size != page_size {
            return Err(open_err(format!(
                "{}/{MANIFEST_NAME}: the directory has page size {}, the configuration asks for \
                 {page_size}; page size is fixed when a data directory is created",
                root.location(),
                manifest.params.page_size
            )));
        }
        for shard_id in 0..manifest.params.shard_count {
            let mut dir = root
                .subdir(&shard_dir_name(shard_id))
                .map_err(|e| open_err(e.to_string()))?;
            if !dir.exists(PAGE_FILE_NAME) {
                return Err(open_err(format!(
                    "{}/{PAGE_FILE_NAME} is missing although {MANIFEST_NAME} lists shard {shard_id}",
                    dir.location()
                )));
            }
        }
        return Ok(manifest);
    }
    assert!(shard_count > 0, "a data directory has at least one shard");
    let names = root.list().map_err(|e| open_err(e.to_string()))?;
    if let Some(foreign) = names.iter().find(|name| name.as_str() != MANIFEST_TMP_NAME) {
        return Err(open_err(format!(
            "{}/{foreign} is not a jube file, and there is no {MANIFEST_NAME}: is this the right \
             data directory?",
            root.location()
        )));
    }
    for shard_id in 0..shard_count {
        let mut dir = root
            .subdir(&shard_dir_name(shard_id))
            .map_err(|e| open_err(e.to_string()))?;
        clear_unfinished(&mut dir)?;
        let (shard, _) = Shard::open(dir, shard_config(shard_id), clock.clone())?;
        shard.close()?;
    }
    if root.exists(MANIFEST_TMP_NAME) {
        root.remove(MANIFEST_TMP_NAME)
            .map_err(|e| open_err(e.to_string()))?;
    }
    let params = ManifestParams {
        shard_count,
        page_size,
    };
    Manifest::open_or_create(root, params, clock.as_ref(), rng)
        .map_err(|e: ManifestError| open_err(e.to_string()))
}

/// Removes what an unfinished creation left in a shard directory; refuses foreign files.
fn clear_unfinished<V: Vfs>(dir: &mut V) -> Result<(), ShardError> {
    let open_err = |detail: String| ShardError::Open { detail };
    let names = dir.list().map_err(|e| open_err(e.to_string()))?;
    if let Some(foreign) = names.iter().find(|name| !is_shard_file(name)) {
        return Err(open_err(format!(
            "{}/{foreign} is not a jube file, and there is no {MANIFEST_NAME}: is this the right \
             data directory?",
            dir.location()
        )));
    }
    if names.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        dir = dir.location(),
        files = names.len(),
        "removing an unfinished shard creation"
    );
    for name in &names {
        dir.remove(name).map_err(|e| open_err(e.to_string()))?;
    }
    dir.sync_dir().map_err(|e| open_err(e.to_string()))
}
