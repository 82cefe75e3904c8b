//! Recovery: scan a shard's WAL directory, replay records from the checkpoint, and decide where
//! the log ends.
//!
//! How a torn tail is told from corruption (the argument is in docs/format.md, "Recovery
//! argument (WAL)"):
//! - Segments from the one holding `replay_from` onward must have consecutive sequence numbers
//!   and valid headers, each starting at the LSN after the previous one's last valid record.
//!   A bad record in a segment that has a successor is therefore corruption (a gap), unless the
//!   successor starts exactly where the bad record was: that is a tail torn by an earlier crash,
//!   after which the writer went on in a new segment.
//! - In the last segment, a bad record ends the log only if no valid record found beyond it (in
//!   that segment, or in a trailing segment whose header was torn) claims, through its
//!   synced-LSN hint, that the bad record was durable. Records of one flush may reach the disk
//!   in any order, so valid records after a hole are normal in a torn flush; a record written
//!   after a *synced* record names it in its hint.
//!
//! Invariant: every record handed to `redo` is valid and has the next contiguous LSN.
//!
//! Segments are read through a [`SegmentWindow`] of [`RECOVERY_WINDOW_BYTES`] plus one largest
//! record, so recovery's memory does not grow with the segment size.

use super::constants::{RECORD_HEADER_BYTES, RECOVERY_WINDOW_BYTES, SEGMENT_HEADER_BYTES};
use super::record::{decode_record, free_name, parse_name, segment_name, FileKind, SegmentHeader};
use super::segment::FreeFile;
use super::{Lsn, RedoRecord, WalConfig, WalError};
use crate::storage::{AlignedBuf, IoError, OpenMode, Storage, Vfs, IO_ALIGN};
use std::collections::BTreeMap;

/// A live segment known to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentInfo {
    pub seq: u64,
    pub first_lsn: Lsn,
}

/// Where recovery found a torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: String,
    pub offset: u64,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Records handed to the redo callback.
    pub records_replayed: u64,
    /// The last valid LSN in the log (0 if empty).
    pub end_lsn: Lsn,
    /// The first LSN the writer will assign.
    pub next_lsn: Lsn,
    pub segments_scanned: u64,
    /// Set when the last segment ended in a torn or partially written flush (truncated).
    pub torn_tail: Option<TornTail>,
    pub segments_created: u64,
}

pub(super) struct Recovered {
    pub segments: Vec<SegmentInfo>,
    pub next_lsn: Lsn,
    pub pool: Vec<FreeFile>,
    pub seq_max: u64,
    pub report: RecoveryReport,
}

/// Where the walk over one segment stopped.
struct Stop {
    /// Offset of the first byte that is not part of a valid record.
    offset: u64,
    /// The LSN the next record would have had.
    next_lsn: Lsn,
}

enum Header {
    Valid(SegmentHeader),
    Invalid(&'static str),
}

fn corrupt(path: String, offset: u64, detail: String) -> WalError {
    WalError::Corrupt {
        path,
        offset,
        detail,
    }
}

fn read_file<F: Storage>(file: &mut F, len: u64) -> Result<AlignedBuf, IoError> {
    let len = usize::try_from(len.div_ceil(IO_ALIGN as u64) * IO_ALIGN as u64).expect("fits");
    let (buf, _) = file.read_at(0, AlignedBuf::zeroed(len.max(IO_ALIGN)))?;
    Ok(buf)
}

/// A read window over one segment file: bytes are loaded on demand, at most the window's
/// capacity at a time (`RECOVERY_WINDOW_BYTES` plus one largest record, less for a smaller file).
struct SegmentWindow<F: Storage> {
    file: F,
    path: String,
    size: u64,
    /// Taken only while a read is in flight.
    buf: Option<AlignedBuf>,
    /// File offset of the window's first byte; `len` bytes from there are loaded.
    start: u64,
    len: usize,
    /// Bytes `at` shows at least (unless the file ends first): a record header and the largest
    /// payload, so a record that starts in view is wholly in view.
    reach: usize,
}

impl<F: Storage> SegmentWindow<F> {
    fn new(file: F, config: &WalConfig) -> SegmentWindow<F> {
        let reach = RECORD_HEADER_BYTES + config.payload_bytes_max();
        let size = file.size();
        let file_blocks = usize::try_from(size.next_multiple_of(IO_ALIGN as u64))
            .unwrap_or(usize::MAX)
            .max(IO_ALIGN);
        let capacity = (RECOVERY_WINDOW_BYTES + reach)
            .next_multiple_of(IO_ALIGN)
            .min(file_blocks);
        SegmentWindow {
            path: file.path().to_string(),
            file,
            size,
            buf: Some(AlignedBuf::zeroed(capacity)),
            start: 0,
            len: 0,
            reach,
        }
    }

    /// The file's bytes from `offset` on, at least `reach` of them unless the file ends first;
    /// and whether they run to the end of the file.
    fn at(&mut self, offset: u64) -> Result<(&[u8], bool), IoError> {
        let wanted_end = offset.saturating_add(self.reach as u64).min(self.size);
        if offset < self.start || wanted_end > self.start + self.len as u64 {
            let start = offset / IO_ALIGN as u64 * IO_ALIGN as u64;
            let remaining = self.size.saturating_sub(start);
            let mut buf = self.buf.take().expect("no read in flight");
            let read_len = usize::try_from(remaining.next_multiple_of(IO_ALIGN as u64))
                .unwrap_or(usize::MAX)
                .clamp(IO_ALIGN, buf.capacity());
            buf.set_len(read_len);
            let (buf, _) = self.file.read_at(start, buf)?;
            self.buf = Some(buf);
            self.start = start;
            self.len = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(read_len);
        }
        let buf = self.buf.as_ref().expect("no read in flight");
        let from = usize::try_from(offset - self.start)
            .unwrap_or(usize::MAX)
            .min(self.len);
        let eof = self.start + self.len as u64 >= self.size;
        Ok((&buf[from..self.len], eof))
    }
}

fn read_header<V: Vfs>(vfs: &mut V, seq: u64, config: &WalConfig) -> Result<Header, WalError> {
    let name = segment_name(seq);
    let mut file = vfs.open(&name, OpenMode::Existing)?;
    let block = read_file(&mut file, SEGMENT_HEADER_BYTES as u64)?;
    Ok(match SegmentHeader::decode(&block) {
        Err(why) => Header::Invalid(why),
        Ok(h) if h.seq != seq => Header::Invalid("sequence number differs from the file name"),
        Ok(h) if h.shard_id != config.shard_id => {
            let detail = format!(
                "segment of shard {} in the directory of shard {}",
                h.shard_id, config.shard_id
            );
            return Err(corrupt(file.path().to_string(), 0, detail));
        }
        Ok(h) => Header::Valid(h),
    })
}

/// Scans the directory, replays records with LSN >= `replay_from` (with `retained`: every
/// record of the contiguous run of segments that ends in the log, from the oldest one still
/// present), and moves trailing and unusable segment files into the free pool. See the module
/// docs for the rules.
pub(super) fn recover<V, F>(
    vfs: &mut V,
    config: &WalConfig,
    replay_from: Lsn,
    retained: bool,
    redo: &mut F,
) -> Result<Recovered, WalError>
where
    V: Vfs,
    F: FnMut(RedoRecord<'_>) -> Result<(), String>,
{
    assert!(replay_from >= 1, "LSNs start at 1");
    let mut headers: BTreeMap<u64, Header> = BTreeMap::new();
    let mut pool = Vec::new();
    let mut seq_max = 0;
    for name in vfs.list()? {
        match parse_name(&name) {
            Some(FileKind::Segment(seq)) => {
                headers.insert(seq, read_header(vfs, seq, config)?);
                seq_max = seq_max.max(seq);
            }
            Some(FileKind::Free(seq)) => {
                pool.push(FreeFile { name });
                seq_max = seq_max.max(seq);
            }
            None => {}
        }
    }
    let mut report = RecoveryReport::default();
    let valid: Vec<SegmentHeader> = headers
        .values()
        .filter_map(|h| match h {
            Header::Valid(h) => Some(*h),
            Header::Invalid(_) => None,
        })
        .collect();
    let Some(start) = valid.iter().rposition(|h| h.first_lsn <= replay_from) else {
        if let Some(first) = valid.first() {
            let detail = format!(
                "the log starts at LSN {}, after the replay point {replay_from}",
                first.first_lsn
            );
            return Err(corrupt(vfs_path(vfs, first.seq), 0, detail));
        }
        if replay_from > 1 {
            let detail =
                format!("no valid WAL segment, but the checkpoint needs LSN {replay_from}");
            return Err(corrupt(vfs.location().to_string(), 0, detail));
        }
        pool_files(vfs, &mut pool, headers.keys().copied())?;
        report.next_lsn = replay_from;
        return Ok(Recovered {
            segments: Vec::new(),
            next_lsn: replay_from,
            pool,
            seq_max,
            report,
        });
    };
    let start = if retained {
        retained_start(vfs, config, &headers, &valid, start)?
    } else {
        start
    };
    let chain = &valid[start..];
    check_chain(vfs, &headers, chain)?;
    let from = ReplayFrom {
        lsn: replay_from,
        retained,
    };
    let next_lsn = replay_chain(vfs, config, chain, from, redo, &mut report)?;
    let last_seq = chain.last().expect("chain is not empty").seq;
    let unusable: Vec<u64> = headers
        .iter()
        .filter(|(_, h)| matches!(h, Header::Invalid(_)))
        .map(|(seq, _)| *seq)
        .collect();
    check_trailing(vfs, config, &unusable, last_seq, next_lsn)?;
    pool_files(vfs, &mut pool, unusable.into_iter())?;
    report.end_lsn = next_lsn - 1;
    let mut next_lsn = next_lsn;
    if replay_from > next_lsn {
        let end = report.end_lsn;
        tracing::warn!(
            replay_from,
            end,
            "the checkpoint is ahead of the WAL; continuing after the checkpoint"
        );
        next_lsn = replay_from;
    }
    report.next_lsn = next_lsn;
    let segments = valid
        .iter()
        .map(|h| SegmentInfo {
            seq: h.seq,
            first_lsn: h.first_lsn,
        })
        .collect();
    // The recovered records may sit in the OS cache only (a process crash): make them durable
    // before new records claim, through their hints, that they are.
    let mut last = vfs.open(&segment_name(last_seq), OpenMode::Existing)?;
    last.sync_data()?;
    Ok(Recovered {
        segments,
        next_lsn,
        pool,
        seq_max,
        report,
    })
}

/// The oldest segment from which the log is contiguous up to `valid[start]`: walking back, a
/// segment joins while its valid records end exactly where the next one begins (an empty one,
/// left by an open that crashed, begins where the next one does), with no
/// invalid header between them. Segments are released oldest first, so what is still present
/// is normally one contiguous run; a segment whose release a crash undid while a newer one's
/// release stuck leaves an LSN gap, and it and everything older are left out (they hold only
/// records every retained structure has moved past).
fn retained_start<V: Vfs>(
    vfs: &mut V,
    config: &WalConfig,
    headers: &BTreeMap<u64, Header>,
    valid: &[SegmentHeader],
    start: usize,
) -> Result<usize, WalError> {
    let mut start = start;
    while start > 0 {
        let (older, newer) = (&valid[start - 1], &valid[start]);
        let gap_header = headers
            .range(older.seq + 1..newer.seq)
            .any(|(_, h)| matches!(h, Header::Invalid(_)));
        if gap_header || older.first_lsn > newer.first_lsn {
            break;
        }
        let file = vfs.open(&segment_name(older.seq), OpenMode::Existing)?;
        let mut window = SegmentWindow::new(file, config);
        let mut report = RecoveryReport::default();
        let nothing = ReplayFrom {
            lsn: Lsn::MAX,
            retained: false,
        };
        let mut skip = |_: RedoRecord<'_>| Ok(());
        let stop = walk_segment(config, &mut window, older, nothing, &mut skip, &mut report);
        match stop {
            Ok(stop) if stop.next_lsn == newer.first_lsn => start -= 1,
            _ => break,
        }
    }
    Ok(start)
}

fn vfs_path<V: Vfs>(vfs: &V, seq: u64) -> String {
    format!("{}/{}", vfs.location(), segment_name(seq))
}

/// Segment files between the first and last valid segment of the chain must have valid
/// headers. (Sequence numbers may skip: an unused spare is moved to the free pool by recovery.
/// A missing segment that held records shows up as an LSN gap in `replay_chain`.)
fn check_chain<V: Vfs>(
    vfs: &V,
    headers: &BTreeMap<u64, Header>,
    chain: &[SegmentHeader],
) -> Result<(), WalError> {
    let first = chain[0].seq;
    let last = chain[chain.len() - 1].seq;
    for (seq, header) in headers.range(first..=last) {
        if let Header::Invalid(why) = header {
            let detail = format!("invalid header in the middle of the log: {why}");
            return Err(corrupt(vfs_path(vfs, *seq), 0, detail));
        }
    }
    Ok(())
}

/// Which records go to the redo callback: those from `lsn` on, or with `retained` all of them
/// (only those from `lsn` on count as replayed).
#[derive(Debug, Clone, Copy)]
struct ReplayFrom {
    lsn: Lsn,
    retained: bool,
}

/// Walks the chain, replaying records; returns the LSN after the last valid one.
fn replay_chain<V, F>(
    vfs: &mut V,
    config: &WalConfig,
    chain: &[SegmentHeader],
    replay_from: ReplayFrom,
    redo: &mut F,
    report: &mut RecoveryReport,
) -> Result<Lsn, WalError>
where
    V: Vfs,
    F: FnMut(RedoRecord<'_>) -> Result<(), String>,
{
    let mut expected = chain[0].first_lsn;
    for (index, header) in chain.iter().enumerate() {
        let file = vfs.open(&segment_name(header.seq), OpenMode::Existing)?;
        let mut window = SegmentWindow::new(file, config);
        let path = window.path.clone();
        let stop = walk_segment(config, &mut window, header, replay_from, redo, report)?;
        report.segments_scanned += 1;
        expected = stop.next_lsn;
        match chain.get(index + 1) {
            Some(next) if next.first_lsn == expected => {}
            Some(next) => {
                let missing = if next.seq == header.seq + 1 {
                    String::new()
                } else {
                    format!(
                        " (segments {} to {} are absent)",
                        header.seq + 1,
                        next.seq - 1
                    )
                };
                let detail = format!(
                    "no valid record with LSN {expected} here, but the next segment {} starts at \
                     LSN {}{missing}",
                    segment_name(next.seq),
                    next.first_lsn
                );
                return Err(corrupt(path, stop.offset, detail));
            }
            None => check_tail(config, &mut window, header.seq, &stop, report)?,
        }
    }
    Ok(expected)
}

/// Replays the valid records of one segment; stops at the first position without the next one.
fn walk_segment<F, S>(
    config: &WalConfig,
    window: &mut SegmentWindow<S>,
    header: &SegmentHeader,
    replay_from: ReplayFrom,
    redo: &mut F,
    report: &mut RecoveryReport,
) -> Result<Stop, WalError>
where
    F: FnMut(RedoRecord<'_>) -> Result<(), String>,
    S: Storage,
{
    let payload_max = config.payload_bytes_max();
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut lsn = header.first_lsn;
    'records: loop {
        // The next record starts here or, after a flush's zero padding, at the next block.
        let aligned = offset.next_multiple_of(IO_ALIGN as u64);
        for (at, first) in [(offset, true), (aligned, false)] {
            if !first && aligned == offset {
                break;
            }
            let (data, _) = window.at(at)?;
            match decode_record(data, 0, header.seq, payload_max) {
                Some(record) if record.lsn == lsn => {
                    if replay_from.retained || lsn >= replay_from.lsn {
                        let redo_record = RedoRecord {
                            lsn,
                            record_type: record.record_type,
                            payload: record.payload,
                        };
                        redo(redo_record).map_err(|detail| WalError::Redo { lsn, detail })?;
                        if lsn >= replay_from.lsn {
                            report.records_replayed += 1;
                        }
                    }
                    offset = at + record.encoded_len() as u64;
                    lsn += 1;
                    continue 'records;
                }
                Some(record) if first => {
                    let detail =
                        format!("record has LSN {} where LSN {lsn} was expected", record.lsn);
                    return Err(corrupt(window.path.clone(), offset, detail));
                }
                _ => {}
            }
        }
        return Ok(Stop {
            offset,
            next_lsn: lsn,
        });
    }
}

/// Decides whether the end of the last segment is a torn tail (truncate) or corruption.
fn check_tail<S: Storage>(
    config: &WalConfig,
    window: &mut SegmentWindow<S>,
    seq: u64,
    stop: &Stop,
    report: &mut RecoveryReport,
) -> Result<(), WalError> {
    let size = window.size;
    let found = scan_beyond(config, window, seq, stop.offset + 1, size, stop.next_lsn)?;
    let path = window.path.clone();
    if let Some((offset, lsn, synced)) = found.claims_durable {
        let detail = format!(
            "no valid record with LSN {} here, but the record at offset {offset} (LSN {lsn}) was \
             written after LSN {synced} was durable",
            stop.next_lsn
        );
        return Err(corrupt(path, stop.offset, detail));
    }
    let block_end = stop.offset.next_multiple_of(IO_ALIGN as u64).min(size);
    let (rest, _) = window.at(stop.offset)?;
    let rest_len = usize::try_from(block_end.saturating_sub(stop.offset)).unwrap_or(usize::MAX);
    let dirty_block = rest.iter().take(rest_len).any(|&b| b != 0);
    if found.any_valid || dirty_block {
        tracing::warn!(
            path,
            offset = stop.offset,
            next_lsn = stop.next_lsn,
            "truncating a torn WAL tail"
        );
        report.torn_tail = Some(TornTail {
            path,
            offset: stop.offset,
        });
    }
    Ok(())
}

struct Beyond {
    any_valid: bool,
    /// A record (offset, LSN, synced hint) whose hint covers the missing LSN.
    claims_durable: Option<(u64, Lsn, Lsn)>,
}

/// Looks at every byte offset in `from..end` for a valid record of segment `seq` that lies
/// wholly before `end`.
fn scan_beyond<S: Storage>(
    config: &WalConfig,
    window: &mut SegmentWindow<S>,
    seq: u64,
    from: u64,
    end: u64,
    missing: Lsn,
) -> Result<Beyond, WalError> {
    let payload_max = config.payload_bytes_max();
    let reach = window.reach;
    let mut beyond = Beyond {
        any_valid: false,
        claims_durable: None,
    };
    let mut offset = from;
    while offset + RECORD_HEADER_BYTES as u64 <= end {
        let (data, eof) = window.at(offset)?;
        let before_end = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let data = &data[..data.len().min(before_end)];
        let complete = eof || data.len() == before_end;
        // Offsets whose largest possible record is wholly in `data`; at the end, every offset
        // with room for a header (decoding checks the rest).
        let count = if complete {
            (data.len() + 1).saturating_sub(RECORD_HEADER_BYTES)
        } else {
            data.len() + 1 - reach
        };
        if count == 0 {
            break;
        }
        for at in 0..count {
            // Cheap filter before the CRC: the type byte of a record is never zero.
            if data[at + 24] == 0 {
                continue;
            }
            if let Some(r) = decode_record(data, at, seq, payload_max) {
                beyond.any_valid = true;
                if r.synced_lsn >= missing && beyond.claims_durable.is_none() {
                    beyond.claims_durable = Some((offset + at as u64, r.lsn, r.synced_lsn));
                }
            }
        }
        offset += count as u64;
    }
    Ok(beyond)
}

/// Trailing segments with torn headers may hold records of their first flush; if any claims
/// that a record past the end of the log was durable, the log lost durable records.
fn check_trailing<V: Vfs>(
    vfs: &mut V,
    config: &WalConfig,
    unusable: &[u64],
    last_seq: u64,
    next_lsn: Lsn,
) -> Result<(), WalError> {
    for &seq in unusable.iter().filter(|&&seq| seq > last_seq) {
        let file = vfs.open(&segment_name(seq), OpenMode::Existing)?;
        let mut window = SegmentWindow::new(file, config);
        // Only the first flush can hold records when the header itself is torn.
        let end = window
            .size
            .min((SEGMENT_HEADER_BYTES + config.flush_bytes_max) as u64);
        let found = scan_beyond(
            config,
            &mut window,
            seq,
            SEGMENT_HEADER_BYTES as u64,
            end,
            next_lsn,
        )?;
        if let Some((offset, lsn, synced)) = found.claims_durable {
            let detail = format!(
                "segment header is invalid but its record LSN {lsn} says LSN {synced} was durable; \
                 the log ends before LSN {next_lsn}"
            );
            return Err(corrupt(window.path, offset, detail));
        }
    }
    Ok(())
}

/// Renames unusable segment files (torn new segments, old garbage) into the free pool.
fn pool_files<V: Vfs>(
    vfs: &mut V,
    pool: &mut Vec<FreeFile>,
    seqs: impl Iterator<Item = u64>,
) -> Result<(), WalError> {
    let mut moved = false;
    for seq in seqs {
        let name = free_name(seq);
        vfs.rename(&segment_name(seq), &name)?;
        pool.push(FreeFile { name });
        moved = true;
    }
    if moved {
        vfs.sync_dir()?;
    }
    Ok(())
}
