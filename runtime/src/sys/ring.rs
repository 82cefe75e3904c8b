//! One io_uring instance and the memory its in-flight operations point to.
//!
//! The safe layers above name an operation by a *slot* (an index below the table size chosen at
//! construction) and hand over the buffers it uses; the ring builds the SQE, keeps the buffers (and
//! the descriptor, and the timespec) in its `held` table until the operation's **final** completion
//! (a multishot operation's last CQE is the one without `IORING_CQE_F_MORE`), and then gives the
//! buffer back. That is the whole soundness argument for the `unsafe` pushes below:
//! - every pointer in an SQE points into heap memory owned by `held[slot]` (an `AlignedBuf`'s or a
//!   `Vec`'s heap block, or a `Box`), which does not move when the owning value moves;
//! - `held[slot]` is only emptied by the final completion of that slot;
//! - `Drop` waits for every outstanding completion; if the kernel does not
//!   answer within [`DRAIN_TIMEOUT`] the held memory is leaked, never freed under the kernel.
//!
//! Descriptors are kept alive the same way (an `Rc` clone in `held`), so a file closed by its owner
//! while an SQE still names its number cannot be confused with a newly opened file of that number.
//! A registered (fixed) file is named by its table index instead; the kernel keeps its own
//! reference to the file for every request in flight, so unregistering it while I/O runs is safe.
//!
//! Multishot receives take their memory from the ring's provided-buffer group ([`BufRing`]): a
//! completion lends its buffer to the reaper for the duration of one callback, and the buffer goes
//! back to the kernel when the reap ends.

use super::buf_ring::BufRing;
use crate::constants::DRAIN_TIMEOUT;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use jube_engine::storage::AlignedBuf;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// `user_data` of the completion another core posts into this ring with IORING_OP_MSG_RING.
pub const TOKEN_WAKE: u64 = u64::MAX;
/// `user_data` of operations whose successful completion we never see (cancels, MSG_RING sends,
/// both submitted with IOSQE_CQE_SKIP_SUCCESS); a CQE with it carries an error to log.
pub const TOKEN_INTERNAL: u64 = u64::MAX - 1;

/// The buffer group id of the ring's provided receive buffers.
const RECV_BUFFER_GROUP: u16 = 0;

/// `IORING_ENTER_GETEVENTS`: with DEFER_TASKRUN, completions are only posted by an enter carrying it.
const ENTER_GETEVENTS: u32 = 1;

/// A descriptor an operation uses, kept open until the operation is over.
pub type FdHandle = Rc<dyn AsRawFd>;

/// One operation, owning everything the kernel will read or write.
pub enum OpSpec {
    /// pread into the whole buffer.
    Read {
        fd: FdHandle,
        fixed: Option<u32>,
        offset: u64,
        buf: AlignedBuf,
    },
    /// pwrite of the whole buffer, with RWF_DSYNC when `dsync`.
    Write {
        fd: FdHandle,
        fixed: Option<u32>,
        offset: u64,
        buf: AlignedBuf,
        dsync: bool,
    },
    /// pwrite of `buf[..len]` from registered buffer `index` (IORING_OP_WRITE_FIXED); the
    /// buffer must be the very memory registered under that index on this ring.
    WriteFixed {
        fd: FdHandle,
        fixed: Option<u32>,
        offset: u64,
        buf: AlignedBuf,
        len: usize,
        index: u16,
    },
    /// fdatasync.
    SyncData { fd: FdHandle, fixed: Option<u32> },
    /// A relative timeout: completes with -ETIME when it expires.
    Timeout { after: Duration },
    /// accept4 with SOCK_CLOEXEC; `multishot` keeps it armed for many connections.
    Accept { fd: FdHandle, multishot: bool },
    /// recv into the whole `Vec` (its length, not its capacity).
    Recv { fd: FdHandle, buf: Vec<u8> },
    /// Multishot recv into the ring's provided buffers (needs [`RingFeatures::recv_buffers`]);
    /// each completion lends its bytes through [`Reaped::data`].
    RecvMulti { fd: FdHandle },
    /// send of `buf[offset..]` with MSG_NOSIGNAL.
    Send {
        fd: FdHandle,
        buf: Vec<u8>,
        offset: usize,
    },
    /// An 8-byte read of an eventfd's counter.
    ReadEventfd { fd: FdHandle },
}

/// What an operation hands back when it is over.
#[derive(Debug)]
pub enum Payload {
    None,
    Aligned(AlignedBuf),
    Bytes(Vec<u8>),
}

/// What the ring keeps for an operation in flight.
struct Held {
    _fd: Option<FdHandle>,
    payload: Payload,
    _timespec: Option<Box<types::Timespec>>,
    _counter: Option<Box<u64>>,
}

/// One completion, as the safe layers see it.
#[derive(Debug)]
pub struct Reaped<'a> {
    pub user_data: u64,
    pub result: i32,
    /// More completions will follow for this slot (multishot).
    pub more: bool,
    /// The operation's buffer, on its final completion.
    pub payload: Option<Payload>,
    /// The bytes a multishot recv received into a provided buffer (lent for this callback only).
    pub data: Option<&'a [u8]>,
}

/// Why a push failed.
#[derive(Debug)]
pub enum PushError {
    /// The submission queue is full even after submitting: reap completions and retry.
    Full(OpSpec),
}

impl std::fmt::Debug for OpSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            OpSpec::Read { .. } => "Read",
            OpSpec::Write { .. } => "Write",
            OpSpec::WriteFixed { .. } => "WriteFixed",
            OpSpec::SyncData { .. } => "SyncData",
            OpSpec::Timeout { .. } => "Timeout",
            OpSpec::Accept { .. } => "Accept",
            OpSpec::Recv { .. } => "Recv",
            OpSpec::RecvMulti { .. } => "RecvMulti",
            OpSpec::Send { .. } => "Send",
            OpSpec::ReadEventfd { .. } => "ReadEventfd",
        };
        f.write_str(name)
    }
}

/// What setup and the probe found.
#[derive(Debug, Clone, Copy)]
pub struct RingFeatures {
    /// Which setup flags the kernel accepted, for logs.
    pub setup_flags: &'static str,
    /// IORING_OP_MSG_RING is available for cross-core wakeups.
    pub msg_ring: bool,
    /// A provided-buffer ring is registered, so multishot recv can be tried (the kernel may still
    /// refuse IORING_RECV_MULTISHOT itself, before 6.0: the first completion then says EINVAL).
    pub recv_buffers: bool,
    /// A sparse fixed-file table is registered.
    pub fixed_files: bool,
}

/// Which setup flags to try; tests turn features off to reach the fallbacks.
#[derive(Debug, Clone, Copy)]
pub struct RingOptions {
    pub sq_entries: u32,
    pub cq_entries: u32,
    /// Try SINGLE_ISSUER / DEFER_TASKRUN / COOP_TASKRUN before a plain ring.
    pub taskrun_flags: bool,
    /// Use IORING_OP_MSG_RING if the probe reports it.
    pub msg_ring: bool,
    /// Provided receive buffers to register (count, bytes each); count 0 registers none.
    pub recv_buffers: (u16, usize),
    /// Entries of the sparse fixed-file table to register; 0 registers none.
    pub fixed_files: u32,
}

/// One io_uring and its table of held resources.
pub struct Ring {
    uring: IoUring,
    held: Vec<Option<Held>>,
    outstanding: usize,
    features: RingFeatures,
    recv_buffers: Option<BufRing>,
    /// Free indexes of the fixed-file table (empty when none is registered).
    fixed_free: Vec<u32>,
    /// (address, length) of each registered buffer, by index.
    registered_buffers: Vec<(usize, usize)>,
}

impl Ring {
    /// A ring with room for `slots` operations in flight. Tries the setup flags from best to
    /// plainest and falls back on EINVAL (an older kernel); any other error (ENOSYS: no io_uring;
    /// EPERM: disabled by sysctl or seccomp) is returned as is.
    pub fn new(slots: usize, options: RingOptions) -> io::Result<Ring> {
        type Setup = fn(&mut io_uring::Builder);
        let attempts: [(&'static str, Setup); 4] = [
            ("SINGLE_ISSUER|DEFER_TASKRUN", |b| {
                b.setup_single_issuer().setup_defer_taskrun();
            }),
            ("SINGLE_ISSUER|COOP_TASKRUN", |b| {
                b.setup_single_issuer().setup_coop_taskrun();
            }),
            ("COOP_TASKRUN", |b| {
                b.setup_coop_taskrun();
            }),
            ("none", |_| {}),
        ];
        let first = if options.taskrun_flags {
            0
        } else {
            attempts.len() - 1
        };
        let mut last_err = None;
        for (name, setup) in attempts.iter().skip(first) {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(options.cq_entries).setup_clamp();
            setup(&mut builder);
            match builder.build(options.sq_entries) {
                Ok(uring) => {
                    let mut probe = io_uring::Probe::new();
                    let probed = uring.submitter().register_probe(&mut probe).is_ok();
                    let msg_ring =
                        options.msg_ring && probed && probe.is_supported(opcode::MsgRingData::CODE);
                    let recv_buffers = register_recv_buffers(&uring, options.recv_buffers);
                    let fixed_free = register_fixed_files(&uring, options.fixed_files);
                    let features = RingFeatures {
                        setup_flags: name,
                        msg_ring,
                        recv_buffers: recv_buffers.is_some(),
                        fixed_files: !fixed_free.is_empty(),
                    };
                    let held = (0..slots).map(|_| None).collect();
                    return Ok(Ring {
                        uring,
                        held,
                        outstanding: 0,
                        features,
                        recv_buffers,
                        fixed_free,
                        registered_buffers: Vec::new(),
                    });
                }
                Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last_err = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
    }

    pub fn features(&self) -> RingFeatures {
        self.features
    }

    /// Puts `fd` into a free entry of the fixed-file table; None when there is no table, it is
    /// full, or the kernel refuses the update (the caller then uses the plain descriptor).
    pub fn register_file(&mut self, fd: RawFd) -> Option<u32> {
        let index = self.fixed_free.pop()?;
        match self.uring.submitter().register_files_update(index, &[fd]) {
            Ok(1) => Some(index),
            _ => {
                self.fixed_free.push(index);
                None
            }
        }
    }

    /// Registers `bufs` as the ring's fixed buffers (IORING_REGISTER_BUFFERS), pinning their pages
    /// (counted against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK). Fails with the
    /// kernel's error (ENOMEM past the limit, EBUSY if the ring already has buffers) and leaves
    /// nothing registered then.
    pub fn register_buffers(&mut self, bufs: &[AlignedBuf]) -> io::Result<()> {
        assert!(
            bufs.len() <= usize::from(u16::MAX),
            "too many buffers to register"
        );
        let iovecs: Vec<libc::iovec> = bufs
            .iter()
            .map(|buf| libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            })
            .collect();
        // SAFETY: each iovec describes a live heap block. The kernel pins its pages, so they stay
        // valid for it whatever we do with the block; and the kernel touches them only for a
        // WRITE_FIXED naming their index, which `push` allows only while the caller holds that
        // same block (checked against `registered_buffers`). A block freed by its owner is thus
        // never used by the kernel again.
        unsafe { self.uring.submitter().register_buffers(&iovecs) }?;
        self.registered_buffers = bufs
            .iter()
            .map(|buf| (buf.as_ptr() as usize, buf.len()))
            .collect();
        Ok(())
    }

    /// Empties entry `index` of the fixed-file table. Requests in flight on it keep their own
    /// reference to the file, so this is safe while they run.
    pub fn unregister_file(&mut self, index: u32) {
        match self.uring.submitter().register_files_update(index, &[-1]) {
            Ok(_) => self.fixed_free.push(index),
            // The entry stays taken (never reused), which is safe; log it, it should not happen.
            Err(err) => tracing::warn!(index, %err, "could not clear a fixed-file entry"),
        }
    }

    /// The ring's descriptor, for other cores' MSG_RING (they keep a duplicate).
    pub fn raw_fd(&self) -> RawFd {
        self.uring.as_raw_fd()
    }

    /// Operations pushed and not yet finally completed.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Queues `op` under `slot` (the SQE goes to the kernel at the next submit).
    pub fn push(&mut self, slot: u32, op: OpSpec) -> Result<(), PushError> {
        if let OpSpec::WriteFixed {
            buf, index, len, ..
        } = &op
        {
            assert!(
                *len <= buf.len(),
                "WRITE_FIXED of {len} bytes from a shorter buffer"
            );
            let registered = self.registered_buffers.get(usize::from(*index));
            assert!(
                registered.is_some_and(|&(addr, registered_len)| addr == buf.as_ptr() as usize
                    && buf.len() <= registered_len),
                "WRITE_FIXED with buffer {index}, which is not the memory registered under it"
            );
        }
        if !self.make_room(1) {
            return Err(PushError::Full(op));
        }
        let (entry, held) = build(op);
        self.hold(slot, held);
        // SAFETY: `held[slot]`, filled just above, owns every buffer, descriptor and timespec the
        // entry points to, and keeps them until this slot's final completion (module invariant).
        unsafe { self.push_entry(&entry.user_data(u64::from(slot))) };
        Ok(())
    }

    /// Queues a write linked to an fdatasync (IOSQE_IO_LINK): the sync starts only after the write
    /// completed successfully, and is cancelled (-ECANCELED) if the write failed.
    pub fn push_write_then_sync(
        &mut self,
        write_slot: u32,
        sync_slot: u32,
        fd: FdHandle,
        fixed: Option<u32>,
        offset: u64,
        buf: AlignedBuf,
    ) -> Result<(), PushError> {
        let write = OpSpec::Write {
            fd: fd.clone(),
            fixed,
            offset,
            buf,
            dsync: false,
        };
        if !self.make_room(2) {
            return Err(PushError::Full(write));
        }
        let (write_entry, write_held) = build(write);
        let (sync_entry, sync_held) = build(OpSpec::SyncData { fd, fixed });
        self.hold(write_slot, write_held);
        self.hold(sync_slot, sync_held);
        let write_entry = write_entry
            .flags(squeue::Flags::IO_LINK)
            .user_data(u64::from(write_slot));
        // SAFETY: both entries' memory is owned by `held[write_slot]` / `held[sync_slot]` until
        // their final completions; make_room(2) guaranteed both fit, so the link is not split.
        unsafe {
            self.push_entry(&write_entry);
            self.push_entry(&sync_entry.user_data(u64::from(sync_slot)));
        }
        Ok(())
    }

    /// Asks the kernel to cancel the operation in `slot`; its completion (-ECANCELED, or its
    /// normal result if it won the race) still arrives and releases the slot.
    pub fn push_cancel(&mut self, slot: u32) -> bool {
        if !self.make_room(1) {
            return false;
        }
        let entry = opcode::AsyncCancel::new(u64::from(slot))
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(TOKEN_INTERNAL);
        // SAFETY: a cancel SQE carries only a user_data value to match, no pointers.
        unsafe { self.push_entry(&entry) };
        true
    }

    /// Posts a completion with `user_data` [`TOKEN_WAKE`] into the ring whose descriptor is
    /// `target`, waking it if it sleeps in `io_uring_enter`.
    pub fn push_msg_ring(&mut self, target: RawFd) -> bool {
        if !self.make_room(1) {
            return false;
        }
        let entry = opcode::MsgRingData::new(types::Fd(target), 0, TOKEN_WAKE, None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(TOKEN_INTERNAL);
        // SAFETY: a MSG_RING SQE carries a descriptor number and two integers, no pointers; the
        // caller keeps a duplicate of the target ring's descriptor open for the ring's lifetime.
        unsafe { self.push_entry(&entry) };
        true
    }

    /// Submits queued SQEs and runs deferred completion work, without waiting.
    pub fn submit_nowait(&mut self) -> io::Result<()> {
        let to_submit = self.uring.submission().len() as u32;
        // SAFETY: a plain io_uring_enter with no argument pointer (`None`), submitting SQEs whose
        // memory is held per the module invariant.
        let result = unsafe {
            self.uring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, 0, ENTER_GETEVENTS, None)
        };
        ignore_transient(result)
    }

    /// Submits queued SQEs and sleeps until at least one completion is available.
    pub fn submit_and_wait(&mut self) -> io::Result<()> {
        ignore_transient(self.uring.submit_and_wait(1))
    }

    /// Like [`Ring::submit_and_wait`], but gives up after `timeout`.
    pub fn submit_and_wait_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = types::Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Err(err) if err.raw_os_error() == Some(libc::ETIME) => Ok(()),
            other => ignore_transient(other),
        }
    }

    /// Hands every available completion to `on`. A slot's buffer comes back with its final CQE.
    pub fn reap(&mut self, mut on: impl FnMut(Reaped)) -> usize {
        let mut count = 0;
        let Ring {
            uring,
            held,
            outstanding,
            recv_buffers,
            ..
        } = self;
        for cqe in uring.completion() {
            count += 1;
            let user_data = cqe.user_data();
            let more = cqueue::more(cqe.flags());
            let lent = cqueue::buffer_select(cqe.flags());
            let payload = if user_data < held.len() as u64 && !more {
                let index = user_data as usize;
                let entry = held[index].take();
                assert!(
                    entry.is_some(),
                    "completion for slot {index}, which holds no operation"
                );
                *outstanding -= 1;
                entry.map(|h| h.payload)
            } else {
                None
            };
            let result = cqe.result();
            let (buffers, bid) = match (recv_buffers.as_mut(), lent) {
                (Some(buffers), Some(bid)) => (buffers, bid),
                (None, Some(bid)) => {
                    panic!("completion names provided buffer {bid}, none registered")
                }
                (_, None) => {
                    on(Reaped {
                        user_data,
                        result,
                        more,
                        payload,
                        data: None,
                    });
                    continue;
                }
            };
            let len = usize::try_from(result).unwrap_or(0);
            on(Reaped {
                user_data,
                result,
                more,
                payload,
                data: Some(buffers.bytes(bid, len)),
            });
            buffers.recycle(bid);
        }
        if let Some(buffers) = recv_buffers.as_mut() {
            buffers.publish();
        }
        count
    }

    fn hold(&mut self, slot: u32, held: Held) {
        let entry = &mut self.held[slot as usize];
        assert!(
            entry.is_none(),
            "slot {slot} pushed while its previous operation is in flight"
        );
        *entry = Some(held);
        self.outstanding += 1;
    }

    /// Whether `count` SQEs fit, submitting what is queued to make room if needed.
    fn make_room(&mut self, count: usize) -> bool {
        let free = |ring: &mut IoUring| {
            let sq = ring.submission();
            sq.capacity() - sq.len()
        };
        if free(&mut self.uring) >= count {
            return true;
        }
        let _ = self.submit_nowait();
        free(&mut self.uring) >= count
    }

    /// # Safety
    /// Every pointer in `entry` must stay valid until its final completion is reaped.
    unsafe fn push_entry(&mut self, entry: &squeue::Entry) {
        // SAFETY: the caller guarantees the entry's memory; make_room guaranteed the space.
        let pushed = unsafe { self.uring.submission().push(entry) };
        assert!(
            pushed.is_ok(),
            "SQ push failed after make_room reported space"
        );
    }

    /// Waits for every outstanding completion. Nothing is cancelled here: by the time a ring is
    /// dropped its owner has abandoned every operation, cancelling those that may never complete
    /// (network, timers) and letting file I/O finish, so a write is never skipped at shutdown.
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.outstanding > 0 && Instant::now() < deadline {
            if self
                .submit_and_wait_timeout(Duration::from_millis(100))
                .is_err()
            {
                break;
            }
            self.reap(|_| {});
        }
        if self.outstanding > 0 {
            tracing::error!(
                outstanding = self.outstanding,
                "io_uring operations did not complete at shutdown; leaking their buffers"
            );
            for entry in self.held.drain(..) {
                std::mem::forget(entry);
            }
            std::mem::forget(self.recv_buffers.take());
            return;
        }
        if let Some(buffers) = self.recv_buffers.take() {
            if let Err(err) = buffers.unregister(&self.uring) {
                tracing::error!(%err, "could not unregister the receive buffer ring; leaking it");
                std::mem::forget(buffers);
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.drain();
    }
}

fn ignore_transient(result: io::Result<usize>) -> io::Result<()> {
    match result {
        Ok(_) => Ok(()),
        // Interrupted by a signal, or the CQ is momentarily full (EBUSY): the caller reaps and
        // comes back, so neither is an error.
        Err(err)
            if matches!(
                err.raw_os_error(),
                Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Builds the SQE for `op` and the record that keeps its memory alive.
fn build(op: OpSpec) -> (squeue::Entry, Held) {
    let mut held = Held {
        _fd: None,
        payload: Payload::None,
        _timespec: None,
        _counter: None,
    };
    let entry = match op {
        OpSpec::Read {
            fd,
            fixed,
            offset,
            mut buf,
        } => {
            let (ptr, len) = (buf.as_mut_ptr(), len_u32(buf.len()));
            let entry = match fixed {
                Some(index) => opcode::Read::new(types::Fixed(index), ptr, len),
                None => opcode::Read::new(types::Fd(fd.as_raw_fd()), ptr, len),
            }
            .offset(offset)
            .build();
            held._fd = Some(fd);
            held.payload = Payload::Aligned(buf);
            entry
        }
        OpSpec::Write {
            fd,
            fixed,
            offset,
            buf,
            dsync,
        } => {
            let flags = if dsync { libc::RWF_DSYNC } else { 0 };
            let (ptr, len) = (buf.as_ptr(), len_u32(buf.len()));
            let entry = match fixed {
                Some(index) => opcode::Write::new(types::Fixed(index), ptr, len),
                None => opcode::Write::new(types::Fd(fd.as_raw_fd()), ptr, len),
            }
            .offset(offset)
            .rw_flags(flags)
            .build();
            held._fd = Some(fd);
            held.payload = Payload::Aligned(buf);
            entry
        }
        OpSpec::WriteFixed {
            fd,
            fixed,
            offset,
            buf,
            len,
            index,
        } => {
            let (ptr, len) = (buf.as_ptr(), len_u32(len));
            let entry = match fixed {
                Some(file) => opcode::WriteFixed::new(types::Fixed(file), ptr, len, index),
                None => opcode::WriteFixed::new(types::Fd(fd.as_raw_fd()), ptr, len, index),
            }
            .offset(offset)
            .build();
            held._fd = Some(fd);
            held.payload = Payload::Aligned(buf);
            entry
        }
        OpSpec::SyncData { fd, fixed } => {
            let entry = match fixed {
                Some(index) => opcode::Fsync::new(types::Fixed(index)),
                None => opcode::Fsync::new(types::Fd(fd.as_raw_fd())),
            }
            .flags(types::FsyncFlags::DATASYNC)
            .build();
            held._fd = Some(fd);
            entry
        }
        OpSpec::Timeout { after } => {
            let timespec = Box::new(
                types::Timespec::new()
                    .sec(after.as_secs())
                    .nsec(after.subsec_nanos()),
            );
            let entry = opcode::Timeout::new(&*timespec as *const types::Timespec).build();
            held._timespec = Some(timespec);
            entry
        }
        OpSpec::Accept { fd, multishot } => {
            let raw = types::Fd(fd.as_raw_fd());
            let entry = if multishot {
                opcode::AcceptMulti::new(raw)
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            } else {
                opcode::Accept::new(raw, std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            };
            held._fd = Some(fd);
            entry
        }
        OpSpec::Recv { fd, mut buf } => {
            let entry = opcode::Recv::new(
                types::Fd(fd.as_raw_fd()),
                buf.as_mut_ptr(),
                len_u32(buf.len()),
            )
            .build();
            held._fd = Some(fd);
            held.payload = Payload::Bytes(buf);
            entry
        }
        OpSpec::RecvMulti { fd } => {
            let entry =
                opcode::RecvMulti::new(types::Fd(fd.as_raw_fd()), RECV_BUFFER_GROUP).build();
            held._fd = Some(fd);
            entry
        }
        OpSpec::Send { fd, buf, offset } => {
            let rest = &buf[offset.min(buf.len())..];
            let entry = opcode::Send::new(
                types::Fd(fd.as_raw_fd()),
                rest.as_ptr(),
                len_u32(rest.len()),
            )
            .flags(libc::MSG_NOSIGNAL)
            .build();
            held._fd = Some(fd);
            held.payload = Payload::Bytes(buf);
            entry
        }
        OpSpec::ReadEventfd { fd } => {
            let mut counter = Box::new(0u64);
            let entry = opcode::Read::new(
                types::Fd(fd.as_raw_fd()),
                (&mut *counter as *mut u64).cast::<u8>(),
                8,
            )
            .build();
            held._fd = Some(fd);
            held._counter = Some(counter);
            entry
        }
    };
    (entry, held)
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("a single I/O is smaller than 4 GiB")
}

/// Registers the provided receive buffers; None (logged once per process) where the kernel
/// refuses them, and the network layer then receives one submission per call.
fn register_recv_buffers(uring: &IoUring, (count, size): (u16, usize)) -> Option<BufRing> {
    if count == 0 {
        return None;
    }
    match BufRing::register(uring, RECV_BUFFER_GROUP, count, size) {
        Ok(buffers) => {
            debug_assert_eq!(buffers.group(), RECV_BUFFER_GROUP);
            Some(buffers)
        }
        Err(err) => {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::info!(%err, "provided buffer rings unavailable: one recv submission per read");
            });
            None
        }
    }
}

/// Registers a sparse fixed-file table of `entries`; returns its free indexes (empty, logged once
/// per process, where the kernel refuses it: files then use plain descriptors).
fn register_fixed_files(uring: &IoUring, entries: u32) -> Vec<u32> {
    if entries == 0 {
        return Vec::new();
    }
    match uring.submitter().register_files_sparse(entries) {
        Ok(()) => (0..entries).rev().collect(),
        Err(err) => {
            static LOGGED: std::sync::Once = std::sync::Once::new();
            LOGGED.call_once(|| {
                tracing::info!(%err, "fixed-file tables unavailable: files use plain descriptors");
            });
            Vec::new()
        }
    }
}
