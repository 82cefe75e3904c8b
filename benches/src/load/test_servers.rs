//! Servers for the end-to-end tests (test builds only): a fake jube server
//! that speaks the native protocol through jube-protocol's decoder over a
//! `BTreeMap`, and a real `redis-server` started on an ephemeral port.
//!
//! Both stop by themselves when dropped: the fake server's threads poll a
//! stop flag, and Redis is killed and reaped. Both listen on 127.0.0.1 only.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Bound;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use jube_protocol::{
    decode_request, encode_response, Decoded, Entry, GetReply, Operation, Reply, Request, Response,
    ScanReply, Status,
};

use super::resp;

/// How the fake server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// Every `n`th put (counted over all connections) fails with `Busy`.
    FailEveryNthPut(u64),
    /// Answers this many requests (over all connections), then goes silent.
    SilentAfter(u64),
}

/// What the fake server saw, shared with its threads.
#[derive(Debug, Default)]
pub struct Seen {
    pub store: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    pub requests: AtomicU64,
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub scans: AtomicU64,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// How often blocked server threads look at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

impl FakeServer {
    pub fn start(behaviour: Behaviour) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Seen::default());
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            thread::spawn(move || accept_loop(&listener, &seen, &stop, behaviour))
        };
        FakeServer {
            addr,
            seen,
            stop,
            accept: Some(accept),
        }
    }

    pub fn key_count(&self) -> usize {
        self.seen.store.lock().expect("store lock").len()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    seen: &Arc<Seen>,
    stop: &Arc<AtomicBool>,
    behaviour: Behaviour,
) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (seen, stop) = (Arc::clone(seen), Arc::clone(stop));
                conns.push(thread::spawn(move || {
                    serve(stream, &seen, &stop, behaviour)
                }));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("fake server accept failed: {e}"),
        }
    }
    for conn in conns {
        let _ = conn.join();
    }
}

fn serve(mut stream: TcpStream, seen: &Seen, stop: &AtomicBool, behaviour: Behaviour) {
    stream
        .set_read_timeout(Some(STOP_POLL))
        .expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(count) => buf.extend_from_slice(&chunk[..count]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return,
        }
        let mut consumed = 0;
        while let Decoded::Frame { len, message } = decode_request(&buf[consumed..]) {
            consumed += len;
            let number = seen.requests.fetch_add(1, Ordering::Relaxed) + 1;
            if let Behaviour::SilentAfter(limit) = behaviour {
                if number > limit {
                    continue;
                }
            }
            let response = answer(&message, seen, behaviour);
            out.extend(encode_response(&response).expect("encodable response"));
        }
        buf.drain(..consumed);
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        out.clear();
    }
}

fn answer(request: &Request, seen: &Seen, behaviour: Behaviour) -> Response {
    let mut store = seen.store.lock().expect("store lock");
    let id = request.id;
    match &request.op {
        Operation::Ping => Response::ok(id, Reply::Ping),
        Operation::Get(get) => {
            seen.gets.fetch_add(1, Ordering::Relaxed);
            match store.get(&get.key) {
                Some(value) => Response::ok(
                    id,
                    Reply::Get(GetReply {
                        value: value.clone(),
                        version: None,
                        ttl_remaining_ms: None,
                    }),
                ),
                None => Response::error(id, Status::NotFound, "no such key"),
            }
        }
        Operation::Put(entry) => {
            let number = seen.puts.fetch_add(1, Ordering::Relaxed) + 1;
            if let Behaviour::FailEveryNthPut(n) = behaviour {
                if number.checked_rem(n) == Some(0) {
                    return Response::error(id, Status::Busy, "fake server is busy");
                }
            }
            store.insert(entry.key.clone(), entry.value.clone());
            Response::ok(id, Reply::Put)
        }
        Operation::Scan(scan) => {
            seen.scans.fetch_add(1, Ordering::Relaxed);
            let range = (scan.start.clone(), Bound::Unbounded);
            let entries = store
                .range::<Vec<u8>, _>(range)
                .take(scan.limit_effective() as usize)
                .map(|(key, value)| Entry::new(key.clone(), value.clone()))
                .collect();
            Response::ok(
                id,
                Reply::Scan(ScanReply {
                    entries,
                    continuation: None,
                }),
            )
        }
        other => Response::error(
            id,
            Status::UnknownOperation,
            format!("fake: {:?}", other.kind()),
        ),
    }
}

/// A 127.0.0.1 port that nothing listens on (it was free a moment ago).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A `redis-server` of our own: no persistence, in a temporary directory,
/// killed on drop.
pub struct Redis {
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Panics with an install hint if redis-server is missing.
    pub fn start() -> Redis {
        match Command::new("redis-server").arg("--version").output() {
            Ok(output) if output.status.success() => {}
            _ => panic!(
                "redis-server is not installed: the RESP end-to-end test needs it. \
                 Install it with `apt-get install -y redis-server` (.ci/run does)."
            ),
        }
        let mut last_error = String::new();
        // The free port may be taken between probing and binding: retry.
        for _ in 0..3 {
            match Redis::try_start() {
                Ok(redis) => return redis,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn try_start() -> Result<Redis, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server exited with {status}"));
            }
            if redis_command(addr, &[b"PING"]).is_ok() {
                return Ok(Redis {
                    addr,
                    child,
                    _dir: dir,
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("no PING answer on port {port} within 5 s"))
    }

    pub fn command(&self, args: &[&[u8]]) -> String {
        redis_command(self.addr, args).expect("redis command")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command and renders the reply as text (integers as digits,
/// errors prefixed with `-`).
pub fn redis_command(addr: SocketAddr, args: &[&[u8]]) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut request = Vec::new();
    resp::encode_command(args, &mut request);
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let count = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if count == 0 {
            return Err("closed".into());
        }
        reply.extend_from_slice(&chunk[..count]);
        match resp::parse(&reply).map_err(|e| e.to_string())? {
            resp::Parsed::NeedMore => {}
            resp::Parsed::Value { value, .. } => {
                return Ok(match value {
                    resp::Value::Simple(text) => String::from_utf8_lossy(text).into_owned(),
                    resp::Value::Error(text) => format!("-{}", String::from_utf8_lossy(text)),
                    resp::Value::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
            }
        }
    }
}
