//! Segment files: preparing the next segment (recycled from the free pool or created and
//! zero-filled) and releasing old ones.
//!
//! A segment is only ever written once it is *ready*: full size, its name durable in the
//! directory (rename or creation followed by `sync_dir`), and, when new, its zeroes synced, so
//! that the first flush into it rewrites already-allocated blocks (cheap fdatasync) and a crash
//! cannot leave records in a file whose name was lost.
//!
//! Invariant: at most one segment is being prepared, with at most one operation in flight.

use super::constants::ZERO_FILL_CHUNK_BYTES;
use super::record::{free_name, segment_name};
use crate::storage::{AlignedBuf, Completion, IoError, IoErrorKind, Op, OpenMode, Storage, Vfs};

const TAG_FILL: u64 = 10;
const TAG_FILL_SYNC: u64 = 11;

/// A released segment file waiting for reuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FreeFile {
    pub name: String,
}

/// Preparation of the next segment.
pub(super) enum Spare<F> {
    Idle,
    /// Zero-filling a new file: `offset` bytes done, one chunk write in flight when `chunk` is None.
    Filling {
        seq: u64,
        file: F,
        offset: u64,
        chunk: Option<AlignedBuf>,
    },
    Syncing {
        seq: u64,
        file: F,
    },
    Ready {
        seq: u64,
        file: F,
    },
}

impl<F: Storage> Spare<F> {
    pub fn ready_seq(&self) -> Option<u64> {
        match self {
            Spare::Ready { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    pub fn is_idle(&self) -> bool {
        matches!(self, Spare::Idle)
    }

    /// Takes the ready file, leaving `Idle`.
    pub fn take_ready(&mut self) -> Option<(u64, F)> {
        match std::mem::replace(self, Spare::Idle) {
            Spare::Ready { seq, file } => Some((seq, file)),
            other => {
                *self = other;
                None
            }
        }
    }
}

/// Starts preparing segment `seq`: a free file is renamed (blocking, cheap) and is ready at
/// once; otherwise a new file is created and zero-filled asynchronously by [`advance`].
pub(super) fn start<V: Vfs>(
    vfs: &mut V,
    pool: &mut Vec<FreeFile>,
    seq: u64,
    segment_size: u64,
) -> Result<Spare<V::File>, IoError> {
    let name = segment_name(seq);
    while let Some(free) = pool.pop() {
        vfs.rename(&free.name, &name)?;
        vfs.sync_dir()?;
        let file = vfs.open(&name, OpenMode::Existing)?;
        if file.size() == segment_size {
            return Ok(Spare::Ready { seq, file });
        }
        // A free file of another size (the configuration changed): drop it, try the next one.
        drop(file);
        vfs.remove(&name)?;
    }
    if vfs.exists(&name) {
        // Left over by a crash during an earlier preparation; its contents are irrelevant.
        vfs.remove(&name)?;
    }
    let file = vfs.open(&name, OpenMode::CreateNew)?;
    vfs.sync_dir()?;
    let chunk = AlignedBuf::zeroed(chunk_len(0, segment_size));
    Ok(Spare::Filling {
        seq,
        file,
        offset: 0,
        chunk: Some(chunk),
    })
}

fn chunk_len(offset: u64, segment_size: u64) -> usize {
    let remaining = segment_size - offset;
    usize::try_from(remaining.min(ZERO_FILL_CHUNK_BYTES as u64)).expect("chunk fits in memory")
}

/// Advances a preparation by reaping completions and submitting the next operation. Returns
/// whether the state changed (so callers can loop until nothing moves).
pub(super) fn advance<F: Storage>(
    spare: &mut Spare<F>,
    segment_size: u64,
    completions: &mut Vec<Completion>,
) -> Result<bool, IoError> {
    let mut progressed = false;
    match spare {
        Spare::Idle | Spare::Ready { .. } => {}
        Spare::Filling {
            file,
            offset,
            chunk,
            ..
        } => {
            if chunk.is_some() && *offset < segment_size {
                let buf = chunk.take().expect("checked above");
                let len = chunk_len(*offset, segment_size);
                let buf = if buf.len() == len {
                    buf
                } else {
                    AlignedBuf::zeroed(len)
                };
                file.submit(
                    TAG_FILL,
                    Op::Write {
                        offset: *offset,
                        buf,
                    },
                )?;
                progressed = true;
            }
            completions.clear();
            file.poll(completions);
            for completion in completions.drain(..) {
                assert_eq!(
                    completion.user_data, TAG_FILL,
                    "unexpected completion on a spare"
                );
                let len = completion.result?;
                *offset += len as u64;
                *chunk = completion.buf;
                progressed = true;
            }
            if *offset == segment_size && chunk.is_some() {
                file.submit(TAG_FILL_SYNC, Op::SyncData)?;
                *spare = match std::mem::replace(spare, Spare::Idle) {
                    Spare::Filling { seq, file, .. } => Spare::Syncing { seq, file },
                    _ => unreachable!("matched Filling above"),
                };
            }
        }
        Spare::Syncing { file, .. } => {
            completions.clear();
            file.poll(completions);
            assert!(completions.len() <= 1, "one sync in flight on a spare");
            if let Some(completion) = completions.pop() {
                assert_eq!(
                    completion.user_data, TAG_FILL_SYNC,
                    "unexpected completion on a spare"
                );
                completion.result?;
                *spare = match std::mem::replace(spare, Spare::Idle) {
                    Spare::Syncing { seq, file } => Spare::Ready { seq, file },
                    _ => unreachable!("matched Syncing above"),
                };
                progressed = true;
            }
        }
    }
    Ok(progressed)
}

/// Prepares segment `seq` and waits for it (used while opening, off the hot path).
pub(super) fn prepare_blocking<V: Vfs>(
    vfs: &mut V,
    pool: &mut Vec<FreeFile>,
    seq: u64,
    segment_size: u64,
) -> Result<V::File, IoError> {
    let mut spare = start(vfs, pool, seq, segment_size)?;
    let mut completions = Vec::new();
    loop {
        if let Some((_, file)) = spare.take_ready() {
            return Ok(file);
        }
        if !advance(&mut spare, segment_size, &mut completions)? {
            assert!(
                wait_one(&mut spare)?,
                "a spare being prepared has an operation to wait for"
            );
        }
    }
}

/// Blocks until the operation in flight on a preparing spare completes, and feeds it back.
/// Returns false if nothing was in flight.
pub(super) fn wait_one<F: Storage>(spare: &mut Spare<F>) -> Result<bool, IoError> {
    match spare {
        Spare::Filling {
            file,
            offset,
            chunk,
            ..
        } if chunk.is_none() => {
            let completion = file.wait(TAG_FILL);
            let len = completion.result?;
            *offset += len as u64;
            *chunk = completion.buf;
        }
        Spare::Syncing { file, .. } => {
            file.wait(TAG_FILL_SYNC).result?;
            *spare = match std::mem::replace(spare, Spare::Idle) {
                Spare::Syncing { seq, file } => Spare::Ready { seq, file },
                _ => unreachable!("matched Syncing above"),
            };
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Releases segment `seq`: renamed into the free pool if it has room, else removed. The caller
/// syncs the directory once after releasing a batch.
pub(super) fn release<V: Vfs>(
    vfs: &mut V,
    pool: &mut Vec<FreeFile>,
    seq: u64,
    free_max: usize,
) -> Result<bool, IoError> {
    let name = segment_name(seq);
    if pool.len() < free_max {
        let free = free_name(seq);
        vfs.rename(&name, &free)?;
        pool.push(FreeFile { name: free });
        Ok(true)
    } else {
        match vfs.remove(&name) {
            Ok(()) => Ok(false),
            Err(e) if e.kind == IoErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}
