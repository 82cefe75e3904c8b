//! MANIFEST: the file at the data directory root that says what the directory is.
//!
//! It records the format version, shard count and page size (which recovery must not change
//! silently), the creation time, a random instance id (to tell two data directories apart) and
//! a random hash seed reserved for later use (stable key-to-shard and transaction hashing), and
//! the value hash that transaction assertions (`HashEquals`) use, `value_hash`: code 0 is
//! "xxh3-64" ([`crate::txn::value_hash`]). Manifests written before the field existed hold 0
//! there (the bytes were reserved and zero), so they mean xxh3-64; an unknown code refuses to
//! open, so a hash never changes silently under stored assertions.
//!
//! Invariants: the file is one [`IO_ALIGN`] block with a CRC32C over its used bytes; it is
//! written to `MANIFEST.tmp`, synced, renamed over `MANIFEST`, and the directory synced, so a
//! crash leaves either no MANIFEST or a whole one. It is never modified after creation.

use crate::clock::Clock;
use crate::storage::{AlignedBuf, IoError, IoErrorKind, OpenMode, Storage, Vfs, IO_ALIGN};
use rand::RngCore;
use std::fmt;

/// File name of the manifest in the data directory.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// Temporary name the manifest is written under before the rename.
pub const MANIFEST_TMP_NAME: &str = "MANIFEST.tmp";
/// "JUBEMANI": identifies a jube manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"JUBEMANI";
/// Format version of the whole data directory layout.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;
/// Bytes of the block covered by the CRC (the CRC itself follows).
pub const MANIFEST_USED_BYTES: usize = 60;

const _: () = assert!(MANIFEST_USED_BYTES + 4 <= IO_ALIGN);

/// `value_hash` code of XXH3-64 with seed 0, the only value hash this build knows.
pub const VALUE_HASH_XXH3_64: u32 = 0;

/// The name of a `value_hash` code, if this build knows it.
pub fn value_hash_name(code: u32) -> Option<&'static str> {
    (code == VALUE_HASH_XXH3_64).then_some(crate::txn::VALUE_HASH_NAME)
}

/// The parameters a data directory is created with and must be reopened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestParams {
    pub shard_count: u32,
    pub page_size: u32,
}

/// The decoded manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    pub format_version: u32,
    pub params: ManifestParams,
    pub created_wall_ms: u64,
    pub instance_id: [u8; 16],
    /// Reserved: a stable seed for hashing keys to shards and transactions, fixed at creation.
    pub hash_seed: u64,
    /// The value hash of `HashEquals` assertions ([`VALUE_HASH_XXH3_64`]).
    pub value_hash: u32,
}

/// Why a manifest could not be opened or created.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    Io(IoError),
    /// The file exists but is not a valid manifest.
    Corrupt {
        path: String,
        detail: String,
    },
    /// The directory was created with other parameters.
    Mismatch {
        path: String,
        detail: String,
    },
    UnsupportedVersion {
        path: String,
        version: u32,
    },
    /// The directory's value hash is not one this build computes.
    UnknownValueHash {
        path: String,
        code: u32,
    },
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::Io(e) => write!(f, "MANIFEST I/O error: {e}"),
            ManifestError::Corrupt { path, detail } => write!(f, "{path} is corrupt: {detail}"),
            ManifestError::Mismatch { path, detail } => {
                write!(f, "{path} does not match this configuration: {detail}")
            }
            ManifestError::UnsupportedVersion { path, version } => write!(
                f,
                "{path} has format version {version}; this build reads {MANIFEST_FORMAT_VERSION}"
            ),
            ManifestError::UnknownValueHash { path, code } => write!(
                f,
                "{path} names value hash {code}; this build knows only {} (code \
                 {VALUE_HASH_XXH3_64})",
                crate::txn::VALUE_HASH_NAME
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

impl From<IoError> for ManifestError {
    fn from(e: IoError) -> Self {
        ManifestError::Io(e)
    }
}

impl Manifest {
    /// Encodes into one block (layout in docs/format.md, "MANIFEST").
    pub fn encode(&self) -> AlignedBuf {
        let mut block = AlignedBuf::zeroed(IO_ALIGN);
        block[0..8].copy_from_slice(&MANIFEST_MAGIC);
        block[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        block[12..16].copy_from_slice(&self.params.shard_count.to_le_bytes());
        block[16..20].copy_from_slice(&self.params.page_size.to_le_bytes());
        block[20..24].copy_from_slice(&0u32.to_le_bytes());
        block[24..32].copy_from_slice(&self.created_wall_ms.to_le_bytes());
        block[32..48].copy_from_slice(&self.instance_id);
        block[48..56].copy_from_slice(&self.hash_seed.to_le_bytes());
        block[56..60].copy_from_slice(&self.value_hash.to_le_bytes());
        let crc = crc32c::crc32c(&block[..MANIFEST_USED_BYTES]);
        block[MANIFEST_USED_BYTES..MANIFEST_USED_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// Decodes a block; `path` names the file in errors.
    pub fn decode(block: &[u8], path: &str) -> Result<Manifest, ManifestError> {
        let corrupt = |detail: &str| ManifestError::Corrupt {
            path: path.to_string(),
            detail: detail.to_string(),
        };
        let used = block
            .get(..MANIFEST_USED_BYTES + 4)
            .ok_or_else(|| corrupt("file too short"))?;
        let u32_at = |at: usize| u32::from_le_bytes(used[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(used[at..at + 8].try_into().expect("8 bytes"));
        if used[0..8] != MANIFEST_MAGIC {
            return Err(corrupt("bad magic: not a jube MANIFEST"));
        }
        if crc32c::crc32c(&used[..MANIFEST_USED_BYTES]) != u32_at(MANIFEST_USED_BYTES) {
            return Err(corrupt("CRC mismatch"));
        }
        let format_version = u32_at(8);
        if format_version != MANIFEST_FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                path: path.to_string(),
                version: format_version,
            });
        }
        if u32_at(20) != 0 {
            return Err(corrupt("reserved bytes are not zero"));
        }
        let value_hash = u32_at(56);
        if value_hash_name(value_hash).is_none() {
            return Err(ManifestError::UnknownValueHash {
                path: path.to_string(),
                code: value_hash,
            });
        }
        Ok(Manifest {
            format_version,
            params: ManifestParams {
                shard_count: u32_at(12),
                page_size: u32_at(16),
            },
            created_wall_ms: u64_at(24),
            instance_id: used[32..48].try_into().expect("16 bytes"),
            hash_seed: u64_at(48),
            value_hash,
        })
    }

    /// Opens the manifest of the data directory `vfs`, or creates it if the directory has none.
    /// Refuses a manifest created with another shard count or page size.
    pub fn open_or_create<V: Vfs>(
        vfs: &mut V,
        expected: ManifestParams,
        clock: &dyn Clock,
        rng: &mut dyn RngCore,
    ) -> Result<Manifest, ManifestError> {
        assert!(
            expected.shard_count > 0,
            "a data directory has at least one shard"
        );
        if vfs.exists(MANIFEST_NAME) {
            let manifest = Manifest::read(vfs)?;
            manifest.check(expected, vfs.location())?;
            return Ok(manifest);
        }
        let mut instance_id = [0u8; 16];
        rng.fill_bytes(&mut instance_id);
        let manifest = Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            params: expected,
            created_wall_ms: clock.wall_ms(),
            instance_id,
            hash_seed: rng.next_u64(),
            value_hash: VALUE_HASH_XXH3_64,
        };
        manifest.write(vfs)?;
        Ok(manifest)
    }

    /// Reads and decodes the existing manifest.
    pub fn read<V: Vfs>(vfs: &mut V) -> Result<Manifest, ManifestError> {
        let mut file = vfs.open(MANIFEST_NAME, OpenMode::Existing)?;
        let (block, len) = file.read_at(0, AlignedBuf::zeroed(IO_ALIGN))?;
        if len < MANIFEST_USED_BYTES + 4 {
            let detail = format!("file holds {len} bytes, a manifest needs {IO_ALIGN}");
            return Err(ManifestError::Corrupt {
                path: file.path().to_string(),
                detail,
            });
        }
        Manifest::decode(&block, file.path())
    }

    fn check(&self, expected: ManifestParams, location: &str) -> Result<(), ManifestError> {
        let mismatch = |what: &str, found: u32, wanted: u32| ManifestError::Mismatch {
            path: format!("{location}/{MANIFEST_NAME}"),
            detail: format!(
                "the directory has {what} {found}, the configuration asks for {wanted}"
            ),
        };
        if self.params.shard_count != expected.shard_count {
            let found = self.params.shard_count;
            return Err(mismatch("shard count", found, expected.shard_count));
        }
        if self.params.page_size != expected.page_size {
            return Err(mismatch(
                "page size",
                self.params.page_size,
                expected.page_size,
            ));
        }
        Ok(())
    }

    /// Writes the manifest atomically: temp file, sync, rename, directory sync.
    fn write<V: Vfs>(&self, vfs: &mut V) -> Result<(), ManifestError> {
        match vfs.remove(MANIFEST_TMP_NAME) {
            Ok(()) => {}
            Err(e) if e.kind == IoErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let mut file = vfs.open(MANIFEST_TMP_NAME, OpenMode::CreateNew)?;
        file.write_at(0, self.encode())?;
        file.sync_data()?;
        drop(file);
        vfs.rename(MANIFEST_TMP_NAME, MANIFEST_NAME)?;
        vfs.sync_dir()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::storage::sim::{FaultConfig, SimDisk};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const PARAMS: ManifestParams = ManifestParams {
        shard_count: 4,
        page_size: 8192,
    };

    fn create(disk: &SimDisk) -> Manifest {
        let clock = ManualClock::new(1_700_000_000_000);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        Manifest::open_or_create(&mut disk.root(), PARAMS, &clock, &mut rng).expect("create")
    }

    #[test]
    fn created_then_reopened_unchanged() {
        let disk = SimDisk::new(1, FaultConfig::none());
        let created = create(&disk);
        assert_eq!(created.created_wall_ms, 1_700_000_000_000);
        disk.crash();
        let clock = ManualClock::new(5);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let reopened = Manifest::open_or_create(&mut disk.root(), PARAMS, &clock, &mut rng);
        assert_eq!(
            reopened,
            Ok(created),
            "the manifest survives a crash unchanged"
        );
        assert!(!disk.root().exists(MANIFEST_TMP_NAME));
    }

    #[test]
    fn other_shard_count_or_page_size_is_refused() {
        let disk = SimDisk::new(2, FaultConfig::none());
        create(&disk);
        let clock = ManualClock::new(5);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for params in [
            ManifestParams {
                shard_count: 8,
                ..PARAMS
            },
            ManifestParams {
                page_size: 4096,
                ..PARAMS
            },
        ] {
            let err = Manifest::open_or_create(&mut disk.root(), params, &clock, &mut rng)
                .expect_err("mismatch refused");
            assert!(matches!(err, ManifestError::Mismatch { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("MANIFEST") && text.contains("configuration asks"),
                "{text}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let manifest = create(&SimDisk::new(3, FaultConfig::none()));
        let block = manifest.encode();
        assert_eq!(Manifest::decode(&block, "m"), Ok(manifest));
        for index in 0..MANIFEST_USED_BYTES + 4 {
            let mut copy = block.to_vec();
            copy[index] ^= 0x01;
            assert!(
                Manifest::decode(&copy, "m").is_err(),
                "flip at {index} unnoticed"
            );
        }
    }

    #[test]
    fn value_hash_defaults_to_xxh3_and_unknown_codes_are_refused() {
        let manifest = create(&SimDisk::new(4, FaultConfig::none()));
        assert_eq!(manifest.value_hash, VALUE_HASH_XXH3_64);
        assert_eq!(value_hash_name(manifest.value_hash), Some("xxh3-64"));
        // A manifest from before the field: the bytes were reserved and zero, so xxh3-64.
        let mut block = manifest.encode().to_vec();
        assert_eq!(block[56..60], [0, 0, 0, 0]);
        block[56..60].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c::crc32c(&block[..MANIFEST_USED_BYTES]);
        block[MANIFEST_USED_BYTES..MANIFEST_USED_BYTES + 4].copy_from_slice(&crc.to_le_bytes());
        let err = Manifest::decode(&block, "m").expect_err("unknown hash refused");
        assert_eq!(
            err,
            ManifestError::UnknownValueHash {
                path: "m".to_string(),
                code: 7
            }
        );
        assert!(err.to_string().contains("xxh3-64"), "{err}");
    }

    #[test]
    fn a_crash_during_creation_leaves_no_manifest_or_a_whole_one() {
        for seed in 0..50 {
            let disk = SimDisk::new(seed, FaultConfig::crashes());
            let clock = ManualClock::new(7);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut root = disk.root();
            let mut file = root
                .open(MANIFEST_TMP_NAME, OpenMode::CreateNew)
                .expect("open");
            let manifest = Manifest {
                format_version: MANIFEST_FORMAT_VERSION,
                params: PARAMS,
                created_wall_ms: 1,
                instance_id: [9; 16],
                hash_seed: 3,
                value_hash: VALUE_HASH_XXH3_64,
            };
            file.write_at(0, manifest.encode()).expect("write");
            drop(file);
            disk.crash();
            let reopened = Manifest::open_or_create(&mut disk.root(), PARAMS, &clock, &mut rng);
            assert!(reopened.is_ok(), "seed {seed}: {reopened:?}");
        }
    }
}
