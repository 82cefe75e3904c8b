//! A blocking jube client over `std::net::TcpStream`, shared by `jubectl`,
//! tests and the load generator.
//!
//! Two ways to use it:
//! - one call per operation (`ping`, `get`, `put`, ...), each a round trip;
//! - pipelining: `send` many requests, then `receive` their responses, which
//!   arrive in request order.
//!
//! Invariants:
//! - Request ids are nonzero (0 means "unknown" in responses) and increase
//!   per connection; every response must carry the id of the oldest request
//!   in flight and a reply of the same operation, or the client reports a
//!   protocol error.
//! - At most `ClientOptions::pipeline_depth` requests are unanswered on the
//!   wire: before sending more, `send` reads the oldest response into a local
//!   queue. Servers accept at least `PIPELINE_DEPTH_MAX` in flight, so
//!   client and server never both block on writes.
//! - After an I/O or protocol error the connection's position in the stream
//!   is unknown, so every later call fails with `ClientError::Broken`.
//! - Requests are validated (`Request::validate`) before they are sent, so a
//!   key or value past the limits fails locally and sends nothing.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::constants::PIPELINE_DEPTH_MAX;
use crate::frame::{decode_response, encode_request, Decoded, EncodeError};
use crate::message::{
    CheckpointReply, Entry, Failure, Get, GetReply, InfoReply, Operation, OperationKind, Reply,
    Request, Response, Scan, ScanReply, Status, Txn, TxnOutcome,
};

/// How the client connects and waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Longest wait for the TCP connection to each resolved address.
    pub connect_timeout: Duration,
    /// Longest wait for one read or write; `None` waits forever.
    pub io_timeout: Option<Duration>,
    /// Most requests in flight; at most `PIPELINE_DEPTH_MAX`.
    pub pipeline_depth: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            io_timeout: Some(Duration::from_secs(30)),
            pipeline_depth: PIPELINE_DEPTH_MAX,
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Closed,
    /// The server answered with a status other than Ok.
    #[error("{status}: {message}")]
    Server { status: Status, message: String },
    /// The request broke a protocol limit and was not sent.
    #[error("request not sent: {status}: {message}")]
    Invalid { status: Status, message: String },
    #[error("request not sent: {0}")]
    Encode(#[from] EncodeError),
    /// The server's bytes broke the protocol (bad frame, wrong id or reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A one-shot call was made while pipelined requests are unanswered.
    #[error("{in_flight} pipelined requests are unanswered: receive them first")]
    Pipelined { in_flight: usize },
    /// `receive` was called with nothing in flight.
    #[error("no request is in flight")]
    NothingInFlight,
    #[error("the connection is unusable after an earlier error")]
    Broken,
}

impl ClientError {
    /// The protocol status, for errors that have one.
    pub fn status(&self) -> Option<Status> {
        match self {
            ClientError::Server { status, .. } | ClientError::Invalid { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    fn from_failure(failure: Failure) -> ClientError {
        ClientError::Server {
            status: failure.status,
            message: failure.message,
        }
    }
}

/// Bytes asked of the socket per read while no frame of known larger size
/// is awaited.
const READ_CHUNK_SIZE: usize = 64 * 1024;

/// Capacity the read and write buffers keep between requests; a large frame
/// (a 16 MiB value) grows them to its size once, and they shrink back to this
/// after it, so that one large value does not pin its memory for the life
/// of the connection.
const BUFFER_RETAINED_SIZE: usize = 4 * READ_CHUNK_SIZE;

/// A connection to a jube server. See the module docs.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    pipeline_depth: usize,
    id_next: u64,
    /// Sent and not yet read, oldest first.
    pending: VecDeque<(u64, OperationKind)>,
    /// Read (to keep within `pipeline_depth`) and not yet returned.
    ready: VecDeque<Response>,
    /// Encoded requests not yet written.
    write_buf: Vec<u8>,
    /// Bytes read: `read_buf[read_start..read_end]` is not yet decoded; the
    /// rest is initialised space to read into (so a large frame's space is
    /// zeroed once, not at every read).
    read_buf: Vec<u8>,
    read_start: usize,
    read_end: usize,
    broken: bool,
}

impl Client {
    /// Connects with the default options.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_with(addr, &ClientOptions::default())
    }

    /// Connects to the first address of `addr` that accepts within
    /// `options.connect_timeout`. Panics if `options.pipeline_depth` is
    /// outside `1..=PIPELINE_DEPTH_MAX` (a configuration bug).
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        options: &ClientOptions,
    ) -> Result<Client, ClientError> {
        assert!(
            (1..=PIPELINE_DEPTH_MAX).contains(&options.pipeline_depth),
            "pipeline_depth must be in 1..={PIPELINE_DEPTH_MAX}"
        );
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|source| ClientError::Connect {
                addr: "(unresolved)".to_owned(),
                source,
            })?
            .collect();
        let mut last_error = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, options.connect_timeout) {
                Ok(stream) => return Client::from_stream(stream, options),
                Err(source) => {
                    last_error = Some(ClientError::Connect {
                        addr: addr.to_string(),
                        source,
                    })
                }
            }
        }
        Err(last_error.unwrap_or_else(|| ClientError::Connect {
            addr: "(no address)".to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ),
        }))
    }

    /// Wraps an already connected stream. Panics, like `connect_with`, if
    /// `options.pipeline_depth` is outside `1..=PIPELINE_DEPTH_MAX`.
    pub fn from_stream(stream: TcpStream, options: &ClientOptions) -> Result<Client, ClientError> {
        assert_pipeline_depth(options);
        stream.set_nodelay(true)?;
        stream.set_read_timeout(options.io_timeout)?;
        stream.set_write_timeout(options.io_timeout)?;
        Ok(Client {
            stream,
            pipeline_depth: options.pipeline_depth,
            id_next: 1,
            pending: VecDeque::new(),
            ready: VecDeque::new(),
            write_buf: Vec::new(),
            read_buf: Vec::new(),
            read_start: 0,
            read_end: 0,
            broken: false,
        })
    }

    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.call(Operation::Ping).map(|_| ())
    }

    /// The value of `key`, or `None` if it has none.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self.get_with(Get::new(key))?.map(|reply| reply.value))
    }

    /// A Get with its options; `None` if the key has no value.
    pub fn get_with(&mut self, get: Get) -> Result<Option<GetReply>, ClientError> {
        match self.call(Operation::Get(get)) {
            Ok(Reply::Get(reply)) => Ok(Some(reply)),
            Ok(other) => Err(unexpected(&other)),
            Err(ClientError::Server {
                status: Status::NotFound,
                ..
            }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Stores `value` under `key`, expiring after `ttl` (rounded up to whole
    /// milliseconds) if given.
    pub fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let entry = Entry {
            key: key.to_vec(),
            value: value.to_vec(),
            ttl_ms: ttl.map(ttl_ms),
        };
        self.call(Operation::Put(entry)).map(|_| ())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), ClientError> {
        self.call(Operation::Delete { key: key.to_vec() })
            .map(|_| ())
    }

    /// One value per key, in order; `None` for missing keys.
    pub fn multi_get<K: AsRef<[u8]>>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>, ClientError> {
        let keys = keys.iter().map(|key| key.as_ref().to_vec()).collect();
        match self.call(Operation::MultiGet { keys })? {
            Reply::MultiGet { values } => Ok(values),
            other => Err(unexpected(&other)),
        }
    }

    pub fn multi_put(&mut self, entries: Vec<Entry>) -> Result<(), ClientError> {
        self.call(Operation::MultiPut { entries }).map(|_| ())
    }

    /// One page of a scan; continue with `reply.continuation` if present.
    pub fn scan(&mut self, scan: Scan) -> Result<ScanReply, ClientError> {
        match self.call(Operation::Scan(scan))? {
            Reply::Scan(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        }
    }

    pub fn info(&mut self) -> Result<InfoReply, ClientError> {
        match self.call(Operation::Info)? {
            Reply::Info(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        }
    }

    pub fn checkpoint(&mut self) -> Result<CheckpointReply, ClientError> {
        match self.call(Operation::Checkpoint)? {
            Reply::Checkpoint(reply) => Ok(reply),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs `txn` (built with `Txn::new()` and its methods) atomically.
    /// An assertion that fails or an op that cannot apply is an `Ok` outcome
    /// (`TxnOutcome::AssertionFailed` / `OpFailed`, naming the index);
    /// `Err` means the server refused or could not run it (`Busy` when a key
    /// is locked by too many waiting transactions: retry).
    pub fn txn(&mut self, txn: Txn) -> Result<TxnOutcome, ClientError> {
        match self.call(Operation::Txn(txn))? {
            Reply::Txn(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    /// One round trip: the reply, or the server's failure as
    /// `ClientError::Server`. Refused while pipelined requests are unanswered.
    pub fn call(&mut self, op: Operation) -> Result<Reply, ClientError> {
        self.check_usable()?;
        let in_flight = self.in_flight();
        if in_flight > 0 {
            return Err(ClientError::Pipelined { in_flight });
        }
        self.send(op)?;
        self.receive()?.outcome.map_err(ClientError::from_failure)
    }

    /// Requests sent (or queued to send) whose responses `receive` has not
    /// yet returned.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.ready.len()
    }

    /// Queues a request and returns its id. Requests are written when
    /// `flush` or `receive` is called, or when the pipeline is full (then the
    /// oldest response is read and kept for `receive`).
    pub fn send(&mut self, op: Operation) -> Result<u64, ClientError> {
        self.check_usable()?;
        let request = Request {
            id: self.id_next,
            op,
        };
        request.validate().map_err(|failure| ClientError::Invalid {
            status: failure.status,
            message: failure.message,
        })?;
        let frame = encode_request(&request)?;
        if self.pending.len() >= self.pipeline_depth {
            self.flush()?;
            let response = self.read_response()?;
            self.ready.push_back(response);
        }
        if self.write_buf.is_empty() {
            // A large value is not copied a second time.
            self.write_buf = frame;
        } else {
            self.write_buf.extend_from_slice(&frame);
        }
        self.pending.push_back((request.id, request.op.kind()));
        // Never 0: 0 is the "unknown request" id.
        self.id_next = self.id_next.checked_add(1).unwrap_or(1);
        Ok(request.id)
    }

    /// Writes every queued request.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        self.check_usable()?;
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let result = self
            .stream
            .write_all(&self.write_buf)
            .and_then(|()| self.stream.flush());
        self.write_buf.clear();
        self.write_buf.shrink_to(BUFFER_RETAINED_SIZE);
        result.map_err(|error| self.fail(ClientError::Io(error)))
    }

    /// The response to the oldest request in flight. A server failure is
    /// returned inside the `Response`, not as an `Err`.
    pub fn receive(&mut self) -> Result<Response, ClientError> {
        self.check_usable()?;
        if let Some(response) = self.ready.pop_front() {
            return Ok(response);
        }
        if self.pending.is_empty() {
            return Err(ClientError::NothingInFlight);
        }
        self.flush()?;
        self.read_response()
    }

    /// Sends every operation and returns their responses in order.
    pub fn pipeline(&mut self, ops: Vec<Operation>) -> Result<Vec<Response>, ClientError> {
        let count = ops.len();
        for op in ops {
            self.send(op)?;
        }
        (0..count).map(|_| self.receive()).collect()
    }

    fn check_usable(&self) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        Ok(())
    }

    /// Marks the connection unusable and passes `error` through.
    fn fail(&mut self, error: ClientError) -> ClientError {
        self.broken = true;
        error
    }

    /// Reads and checks the response to `pending.front()`.
    fn read_response(&mut self) -> Result<Response, ClientError> {
        self.check_usable()?;
        let (id_expected, kind_expected) = match self.pending.front() {
            Some(front) => *front,
            None => return Err(ClientError::NothingInFlight),
        };
        let response = loop {
            let unread = self
                .read_buf
                .get(self.read_start..self.read_end)
                .unwrap_or_default();
            match decode_response(unread) {
                Decoded::Frame { len, message } => {
                    self.consume(len);
                    break message;
                }
                Decoded::NeedMore(count) => self.read_more(count)?,
                Decoded::Error(error) => {
                    return Err(self.fail(ClientError::Protocol(format!(
                        "bad response frame: {error}"
                    ))))
                }
            }
        };
        if response.request_id != id_expected {
            // A server that could not read a request answers with id 0 and
            // then may close; surface its status rather than a bare mismatch.
            return Err(match response.outcome {
                Err(failure) if response.request_id == 0 => {
                    self.fail(ClientError::from_failure(failure))
                }
                _ => self.fail(ClientError::Protocol(format!(
                    "response id {} does not match the oldest request {id_expected}",
                    response.request_id
                ))),
            });
        }
        if let Ok(reply) = &response.outcome {
            if reply.kind() != kind_expected {
                let message = format!(
                    "request {id_expected} was {kind_expected:?} but the reply is {:?}",
                    reply.kind()
                );
                return Err(self.fail(ClientError::Protocol(message)));
            }
        }
        self.pending.pop_front();
        Ok(response)
    }

    /// Drops `count` decoded bytes; shrinks the buffer back after a large
    /// frame.
    fn consume(&mut self, count: usize) {
        self.read_start += count;
        assert!(self.read_start <= self.read_end, "consumed more than read");
        if self.read_start == self.read_end {
            self.read_start = 0;
            self.read_end = 0;
            if self.read_buf.len() > BUFFER_RETAINED_SIZE {
                self.read_buf.truncate(BUFFER_RETAINED_SIZE);
                self.read_buf.shrink_to_fit();
            }
        }
    }

    /// Reads at least one byte of the `missing` bytes the frame being
    /// decoded still lacks, making room for all of them first.
    fn read_more(&mut self, missing: usize) -> Result<(), ClientError> {
        let want = missing.max(READ_CHUNK_SIZE);
        if self.read_buf.len() - self.read_end < want {
            // Move the unread bytes to the front, then grow once to fit.
            self.read_buf.copy_within(self.read_start..self.read_end, 0);
            self.read_end -= self.read_start;
            self.read_start = 0;
            if self.read_buf.len() < self.read_end + want {
                self.read_buf.resize(self.read_end + want, 0);
            }
        }
        let result = loop {
            match self
                .stream
                .read(self.read_buf.get_mut(self.read_end..).unwrap_or_default())
            {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => Err(self.fail(ClientError::Closed)),
            Ok(count) => {
                self.read_end += count;
                Ok(())
            }
            Err(error) => Err(self.fail(ClientError::Io(error))),
        }
    }
}

fn assert_pipeline_depth(options: &ClientOptions) {
    assert!(
        (1..=PIPELINE_DEPTH_MAX).contains(&options.pipeline_depth),
        "pipeline_depth {} is outside 1..={PIPELINE_DEPTH_MAX}",
        options.pipeline_depth
    );
}

fn unexpected(reply: &Reply) -> ClientError {
    // read_response already checks reply kinds, so this is a bug here.
    ClientError::Protocol(format!("unexpected reply {:?}", reply.kind()))
}

/// A TTL in whole milliseconds, rounded up so that a TTL never ends early. A
/// zero duration gives 0, which validation rejects.
fn ttl_ms(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}
