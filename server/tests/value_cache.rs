//! The value cache through a real jubed: GETs of values in the value log are answered from
//! memory after a put (the cache is filled on write), INFO counts hits, misses and bytes, and
//! `storage.value_cache_bytes_per_shard = 0` turns the cache off (every GET reads the disk).
//!
//! Strategy: values are distinct per key and compared whole; the counters are read from INFO's
//! `total` section before and after, so the figures are exact (nothing else reads values).

mod common;

use common::Server;

fn value(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Puts three 64 KiB values and reads each twice; returns (hits, misses) from INFO.
fn put_and_get_twice(server: &Server) -> (u64, u64) {
    let mut client = server.client();
    for seed in 0..3u8 {
        client
            .put(&[b'k', seed], &value(65_536, seed), None)
            .expect("put");
    }
    for _ in 0..2 {
        for seed in 0..3u8 {
            let got = client.get(&[b'k', seed]).expect("get");
            assert!(got == Some(value(65_536, seed)), "value {seed} differs");
        }
    }
    (
        server.info_metric("vlog_cache_hits"),
        server.info_metric("vlog_cache_misses"),
    )
}

#[test]
fn gets_of_large_values_hit_the_value_cache_and_a_zero_size_turns_it_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    assert_eq!(put_and_get_twice(&server), (6, 0), "filled by the puts");
    assert!(server.info_metric("vlog_cache_bytes") > 3 * 65_536);
    assert_eq!(server.info_metric("vlog_cache_entries"), 3);
    drop(server);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("jubed.toml");
    std::fs::write(&config, "[storage]\nvalue_cache_bytes_per_shard = 0\n").expect("write");
    let server = Server::start(dir.path(), &["--config", config.to_str().expect("utf-8")]);
    assert_eq!(
        put_and_get_twice(&server),
        (0, 6),
        "no cache: every GET reads"
    );
    assert_eq!(server.info_metric("vlog_cache_bytes"), 0);
}
