//! TCP on the ring: per-core SO_REUSEPORT listeners with multishot accept, and connections whose
//! recv and send are ring operations on owned buffers.
//!
//! Receiving: a connection arms one multishot recv (IORING_RECV_MULTISHOT, Linux 6.0) that draws
//! from its core's ring of provided buffers ([`crate::constants::RECV_BUFFER_COUNT`] buffers of
//! [`crate::constants::RECV_BUFFER_SIZE`] bytes); the reactor copies each completion's bytes into
//! the connection's queue and returns the buffer at once, and [`TcpStream::recv`] copies from that
//! queue. One submission then serves every read of the connection until it ends.
//!
//! Invariants:
//! - every buffer handed to a recv or send stays with the ring until the operation is over, even
//!   if the future is dropped (the reactor cancels it and keeps the buffer until the final CQE);
//! - a connection's bytes reach its reader exactly once and in order: one multishot is armed at a
//!   time, its completions are queued in CQE order, and a dropped `recv` future loses nothing
//!   (the bytes stay queued for the next call);
//! - an empty buffer ring (ENOBUFS) ends the multishot with the data still in the socket: that
//!   call reads once with a one-shot recv (so it always makes progress) and the next call re-arms;
//!   a queue past [`crate::constants::RECV_QUEUED_BYTES_MAX`] cancels the multishot, and the next
//!   call that finds the queue empty re-arms it;
//! - where the kernel refuses provided buffer rings (before 5.19) or multishot recv (EINVAL on the
//!   first one, before 6.0), the core falls back to one recv submission per call, logged once;
//! - a listener keeps at most one multishot accept armed; completions it has not yet handed out
//!   are bounded by [`crate::constants::ACCEPT_BACKLOG_MAX`] (past it the reactor cancels the
//!   multishot and the kernel's listen backlog holds further connections until it is re-armed);
//! - where the kernel rejects multishot accept (EINVAL, before 5.19) the listener falls back to
//!   one accept submission per connection.

use crate::constants::LISTEN_BACKLOG;
use crate::executor;
pub use crate::reactor::RecvStats;
use crate::reactor::{submit_async, OpId, QueueFull, Reactor, RecvEvent};
use crate::sys::fd::adopt;
use crate::sys::ring::{FdHandle, OpSpec, Payload};
use crate::sys::socket::{listen_reuseport, set_nodelay};
use std::cell::Cell;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Once;

static MULTISHOT_RECV_REFUSED: Once = Once::new();

/// The receive counters of the current core (multishot completions, exhaustions, fallbacks).
/// Must be called on a core.
pub fn recv_stats() -> RecvStats {
    executor::current().reactor.recv_stats()
}

/// A listening socket owned by one core.
pub struct TcpListener {
    socket: Rc<std::net::TcpListener>,
    reactor: Rc<Reactor>,
    multishot: Option<OpId>,
    multishot_supported: bool,
}

impl TcpListener {
    /// Binds `addr` with SO_REUSEPORT on the current core. Every core binds the same address; the
    /// kernel spreads connections over the listeners. Port 0 picks an ephemeral port: bind it on
    /// one core, then bind the others to the returned [`TcpListener::local_addr`].
    pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
        let socket = listen_reuseport(addr, LISTEN_BACKLOG)?;
        let reactor = executor::current().reactor.clone();
        Ok(TcpListener {
            socket: Rc::new(socket),
            reactor,
            multishot: None,
            multishot_supported: true,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits for the next connection.
    pub async fn accept(&mut self) -> io::Result<TcpStream> {
        loop {
            if !self.multishot_supported {
                let fd: FdHandle = self.socket.clone();
                let op = submit_async(
                    &self.reactor,
                    OpSpec::Accept {
                        fd,
                        multishot: false,
                    },
                )
                .await;
                let (result, _) = op.await;
                return self.adopt(result);
            }
            let id = match self.multishot {
                Some(id) => id,
                None => self.arm().await,
            };
            let reactor = self.reactor.clone();
            match poll_fn(|cx| reactor.poll_stream(id, cx)).await {
                Some(result) if result == -libc::EINVAL => {
                    tracing::info!("multishot accept unsupported: one accept per connection");
                    self.multishot_supported = false;
                }
                Some(result) => return self.adopt(result),
                // The multishot ended (cancelled at the backlog bound, or an error): re-arm.
                None => self.multishot = None,
            }
        }
    }

    async fn arm(&mut self) -> OpId {
        loop {
            let fd: FdHandle = self.socket.clone();
            match self.reactor.submit_stream(OpSpec::Accept {
                fd,
                multishot: true,
            }) {
                Ok(id) => {
                    self.multishot = Some(id);
                    return id;
                }
                Err(QueueFull(_)) => executor::yield_now().await,
            }
        }
    }

    fn adopt(&self, result: i32) -> io::Result<TcpStream> {
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        TcpStream::from_fd(adopt(result), self.reactor.clone())
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        if let Some(id) = self.multishot.take() {
            self.reactor.cancel(id);
        }
    }
}

/// A connected TCP socket owned by one core. One task reads it at a time (concurrent `recv`
/// calls would share one multishot and one waker); sends may run alongside.
pub struct TcpStream {
    socket: Rc<std::net::TcpStream>,
    reactor: Rc<Reactor>,
    /// The armed multishot recv, if any.
    multishot: Cell<Option<OpId>>,
}

impl TcpStream {
    fn from_fd(fd: OwnedFd, reactor: Rc<Reactor>) -> io::Result<TcpStream> {
        set_nodelay(&fd)?;
        Ok(TcpStream {
            socket: Rc::new(std::net::TcpStream::from(fd)),
            reactor,
            multishot: Cell::new(None),
        })
    }

    /// Adopts a connected std socket (for example from a blocking `connect`) on the current core.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nodelay(true)?;
        Ok(TcpStream {
            socket: Rc::new(stream),
            reactor: executor::current().reactor.clone(),
            multishot: Cell::new(None),
        })
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// Receives into `buf[..buf.len()]`; returns the byte count (0: the peer closed) and the buffer.
    /// Through the multishot recv where the core has it (see the module doc), otherwise one recv
    /// submission. Dropping the future loses no received bytes on the multishot path.
    pub async fn recv(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let mut buf = buf;
        if buf.is_empty() {
            return (Ok(0), buf);
        }
        loop {
            if !self.reactor.multishot_recv() && self.multishot.get().is_none() {
                return self.recv_once(buf).await;
            }
            let id = match self.multishot.get() {
                Some(id) => id,
                None => match self.arm_recv() {
                    Some(id) => id,
                    None => {
                        executor::yield_now().await;
                        continue;
                    }
                },
            };
            let reactor = self.reactor.clone();
            let event = poll_fn(|cx| reactor.poll_recv(id, &mut buf, cx)).await;
            let result = match event {
                RecvEvent::Data(count) => return (Ok(count), buf),
                RecvEvent::Ended => {
                    // Cancelled at the queue bound and drained: re-arm.
                    self.multishot.set(None);
                    continue;
                }
                RecvEvent::Result { result, ended } => {
                    if ended {
                        self.multishot.set(None);
                    }
                    result
                }
            };
            if result == -libc::EINVAL && !self.reactor.multishot_recv_confirmed() {
                MULTISHOT_RECV_REFUSED.call_once(|| {
                    tracing::info!(
                        "multishot recv unsupported by this kernel: one recv submission per read"
                    );
                });
                self.reactor.disable_multishot_recv();
                continue;
            }
            if result == -libc::ENOBUFS {
                // The core's buffer ring ran dry: the bytes are still in the socket. Read them
                // once into the caller's buffer (progress even if the ring stays dry); the next
                // call re-arms the multishot.
                self.reactor.count_recv(|s| s.buffer_exhaustions += 1);
                return self.recv_once(buf).await;
            }
            return (count(result), buf);
        }
    }

    fn arm_recv(&self) -> Option<OpId> {
        let fd: FdHandle = self.socket.clone();
        let id = self.reactor.submit_stream(OpSpec::RecvMulti { fd }).ok()?;
        self.reactor.count_recv(|s| s.multishot_arms += 1);
        self.multishot.set(Some(id));
        Some(id)
    }

    async fn recv_once(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let fd: FdHandle = self.socket.clone();
        self.reactor.count_recv(|s| s.oneshot_recvs += 1);
        let (result, payload) = submit_async(&self.reactor, OpSpec::Recv { fd, buf })
            .await
            .await;
        (count(result), bytes(payload))
    }

    /// Sends `buf[offset..]` once; returns how many bytes went out.
    pub async fn send(&self, buf: Vec<u8>, offset: usize) -> (io::Result<usize>, Vec<u8>) {
        let fd: FdHandle = self.socket.clone();
        let (result, payload) = submit_async(&self.reactor, OpSpec::Send { fd, buf, offset })
            .await
            .await;
        (count(result), bytes(payload))
    }

    /// Sends all of `buf`, resubmitting after partial sends.
    pub async fn send_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let mut buf = buf;
        let mut offset = 0;
        while offset < buf.len() {
            let (result, back) = self.send(buf, offset).await;
            buf = back;
            match result {
                Ok(0) => return (Err(io::Error::from(io::ErrorKind::WriteZero)), buf),
                Ok(sent) => offset += sent,
                Err(err) => return (Err(err), buf),
            }
        }
        (Ok(()), buf)
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // The multishot is cancelled in the kernel; the ring keeps the descriptor until its final
        // completion, and completions that arrive meanwhile return their buffers unread.
        if let Some(id) = self.multishot.take() {
            self.reactor.cancel(id);
        }
    }
}

fn count(result: i32) -> io::Result<usize> {
    if result < 0 {
        Err(io::Error::from_raw_os_error(-result))
    } else {
        Ok(result as usize)
    }
}

fn bytes(payload: Payload) -> Vec<u8> {
    match payload {
        Payload::Bytes(buf) => buf,
        other => panic!("a socket operation returned {other:?} instead of its byte buffer"),
    }
}
