//! GETs of value-log values that miss the value cache (the cache is turned off) go through the
//! asynchronous read path: the shard's core submits the read and answers when it completes.
//!
//! Strategy: a real jubed (2 cores), 8 KiB and 64 KiB values distinct per key and write, read
//! whole by concurrent native and RESP clients; pipelined GET/SET/GET on one connection must
//! answer in request order with the value each GET observed (old, then new), and every value
//! must come back byte for byte. INFO's `vlog_cache_misses` proves the reads went to the disk.

mod common;

use common::Server;
use jube_protocol::{Entry, Get, Operation, Reply};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

fn value(size: usize, key: u32, round: u32) -> Vec<u8> {
    (0..size)
        .map(|i| {
            (i as u32)
                .wrapping_mul(13)
                .wrapping_add(key * 31 + round * 7) as u8
        })
        .collect()
}

fn start(dir: &std::path::Path) -> Server {
    let config = dir.join("jubed.toml");
    let text = "[storage]\nwal_segment_bytes = 4194304\nvalue_cache_bytes_per_shard = 0\n";
    std::fs::write(&config, text).expect("write");
    Server::start(dir, &["--config", config.to_str().expect("utf-8")])
}

fn size_of(key: u32) -> usize {
    if key.is_multiple_of(2) {
        8_192
    } else {
        65_536
    }
}

/// One RESP command in its array form.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one RESP reply: a bulk string (None for a null), or a simple string as bytes.
fn resp_reply(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read reply");
    match line.as_bytes().first() {
        Some(b'$') => {
            let len: i64 = line[1..].trim_end().parse().expect("bulk length");
            if len < 0 {
                return None;
            }
            let mut bytes = vec![0; len as usize + 2];
            reader.read_exact(&mut bytes).expect("bulk bytes");
            bytes.truncate(len as usize);
            Some(bytes)
        }
        Some(b'+') => Some(line[1..].trim_end().as_bytes().to_vec()),
        _ => panic!("unexpected RESP reply {line:?}"),
    }
}

#[test]
fn large_gets_read_asynchronously_through_native_and_resp_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let keys = 24u32;
    let mut client = server.client();
    for key in 0..keys {
        let name = format!("key{key:02}");
        client
            .put(name.as_bytes(), &value(size_of(key), key, 0), None)
            .expect("put");
    }
    let misses_before = server.info_metric("vlog_cache_misses");
    let async_before = server.info_metric("vlog_reads_async");
    let addr = server.addr;
    let resp_addr = server.resp_addr.expect("RESP listener");
    std::thread::scope(|scope| {
        for thread in 0..3u32 {
            // Native clients: pipelines of GETs over every key.
            scope.spawn(move || {
                let mut client = jube_protocol::Client::connect(addr).expect("connect");
                for _ in 0..4 {
                    let ops = (0..keys)
                        .map(|key| Operation::Get(Get::new(format!("key{key:02}"))))
                        .collect();
                    let responses = client.pipeline(ops).expect("pipeline");
                    for (key, response) in (0..keys).zip(responses) {
                        let Ok(Reply::Get(reply)) = response.outcome else {
                            panic!("thread {thread}: key {key}: {:?}", response.outcome);
                        };
                        assert!(reply.value == value(size_of(key), key, 0), "key {key}");
                    }
                }
            });
            // RESP clients: pipelined GETs over every key.
            scope.spawn(move || {
                let stream = TcpStream::connect(resp_addr).expect("connect");
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                for _ in 0..4 {
                    let mut batch = Vec::new();
                    for key in 0..keys {
                        batch.extend(resp_command(&[b"GET", format!("key{key:02}").as_bytes()]));
                    }
                    writer.write_all(&batch).expect("write");
                    for key in 0..keys {
                        let got = resp_reply(&mut reader).expect("present");
                        assert!(got == value(size_of(key), key, 0), "RESP key {key}");
                    }
                }
            });
        }
    });
    let misses = server.info_metric("vlog_cache_misses") - misses_before;
    assert!(
        misses >= u64::from(6 * 4 * keys),
        "{misses} reads from the disk"
    );
    let async_reads = server.info_metric("vlog_reads_async") - async_before;
    let refused = server.info_metric("vlog_reads_async_refused");
    assert_eq!(
        async_reads + refused,
        misses,
        "every miss read asynchronously, or synchronously past the limits"
    );
    assert!(
        async_reads > misses / 2,
        "{async_reads} of {misses} asynchronous"
    );

    // Pipelined GET / SET / GET of one key on one connection: answers in request order, the
    // first GET with the old value (read from the disk), the second with the new one.
    let mut client = jube_protocol::Client::connect(addr).expect("connect");
    for key in 0..keys {
        let name = format!("key{key:02}");
        let new = value(size_of(key), key, 1);
        let ops = vec![
            Operation::Get(Get::new(name.clone())),
            Operation::Put(Entry::new(name.clone(), new.clone())),
            Operation::Get(Get::new(name.clone())),
        ];
        let responses = client.pipeline(ops).expect("pipeline");
        let Ok(Reply::Get(first)) = &responses[0].outcome else {
            panic!("{:?}", responses[0].outcome);
        };
        assert!(
            first.value == value(size_of(key), key, 0),
            "old value first"
        );
        assert!(matches!(responses[1].outcome, Ok(Reply::Put)));
        let Ok(Reply::Get(second)) = &responses[2].outcome else {
            panic!("{:?}", responses[2].outcome);
        };
        assert!(second.value == new, "new value after the SET");
    }
    let stream = TcpStream::connect(resp_addr).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    for key in 0..keys {
        let name = format!("key{key:02}");
        let new = value(size_of(key), key, 2);
        let mut batch = resp_command(&[b"GET", name.as_bytes()]);
        batch.extend(resp_command(&[b"SET", name.as_bytes(), &new]));
        batch.extend(resp_command(&[b"GET", name.as_bytes()]));
        writer.write_all(&batch).expect("write");
        let first = resp_reply(&mut reader).expect("present");
        assert!(
            first == value(size_of(key), key, 1),
            "RESP: old value first"
        );
        assert_eq!(resp_reply(&mut reader), Some(b"OK".to_vec()));
        let second = resp_reply(&mut reader).expect("present");
        assert!(second == new, "RESP: new value after the SET");
    }
}
