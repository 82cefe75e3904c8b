//! Where a key lives: its shard (a stable hash of the key) and the shard's core.
//!
//! Invariants:
//! - `shard_of` depends only on the key bytes and the shard count, never on the process, the
//!   platform or the Rust version: it is FNV-1a 64 (offset basis 0xcbf29ce484222325, prime
//!   0x100000001b3) over the key bytes, folded to 32 bits by xoring the halves (FNV's low bits mix
//!   poorly), modulo the shard count. Changing it would move keys between shards and lose them: the
//!   function is part of the on-disk format (docs/architecture.md, `## Server`).
//! - shard `i` runs on core `i % cores`, so every shard has exactly one core and a restart with
//!   another core count spreads the same shards over the cores it has.

/// FNV-1a 64 offset basis.
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard that owns `key` among `shard_count` shards.
pub fn shard_of(key: &[u8], shard_count: usize) -> usize {
    assert!(shard_count > 0, "a data directory has at least one shard");
    let hash = fnv1a64(key);
    let folded = (hash ^ (hash >> 32)) & 0xffff_ffff;
    usize::try_from(folded % shard_count as u64).expect("a shard index fits in usize")
}

/// The core that runs shard `shard` when the server has `cores` cores.
pub fn core_of(shard: usize, cores: usize) -> usize {
    assert!(cores > 0, "the server runs on at least one core");
    shard % cores
}

/// The shards core `core` runs, in increasing order.
pub fn shards_of_core(core: usize, cores: usize, shard_count: usize) -> Vec<usize> {
    (0..shard_count)
        .filter(|shard| core_of(*shard, cores) == core)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        // From the FNV reference test suite (http://www.isthe.com/chongo/tech/comp/fnv/).
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        // Pinned values: if these change, keys of existing data directories move.
        assert_eq!(shard_of(b"a", 4), shard_of(b"a", 4));
        let pinned: Vec<usize> = [&b"a"[..], b"b", b"key-1", b"key-2"]
            .iter()
            .map(|k| shard_of(k, 7))
            .collect();
        assert_eq!(pinned, [5, 3, 3, 1]);
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            counts[shard_of(format!("key-{i}").as_bytes(), 8)] += 1;
        }
        assert!(
            counts.iter().all(|c| (800..1200).contains(c)),
            "uneven spread: {counts:?}"
        );
    }

    #[test]
    fn shards_spread_over_fewer_cores() {
        assert_eq!(shards_of_core(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(shards_of_core(1, 2, 5), vec![1, 3]);
        assert_eq!(shards_of_core(3, 4, 2), Vec::<usize>::new());
    }
}
