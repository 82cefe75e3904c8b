//! Helpers shared by the WAL integration tests: small configurations and opening a WAL on a
//! simulated disk while collecting the records recovery replays.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use jube_engine::clock::ManualClock;
use jube_engine::storage::sim::{SimDisk, SimVfs};
use jube_engine::storage::Vfs;
use jube_engine::wal::{Lsn, RecoveryReport, Wal, WalConfig, WalError};

pub type SimWal = Wal<SimVfs, ManualClock>;

/// A record as the tests see it.
pub type Rec = (Lsn, u8, Vec<u8>);

/// Tiny segments and buffers so that rollover, backpressure and recycling happen often.
pub fn small_config() -> WalConfig {
    let mut config = WalConfig::new(7);
    config.segment_size_bytes = 64 * 1024;
    config.flush_bytes_max = 8 * 1024;
    config.buffer_bytes_max = 32 * 1024;
    config
}

pub fn wal_dir(disk: &SimDisk) -> SimVfs {
    disk.root()
        .subdir("wal")
        .expect("the simulated disk creates directories")
}

/// Opens the WAL, replaying from `from`; returns the writer, the replayed records and the report.
pub fn open(
    disk: &SimDisk,
    clock: &ManualClock,
    config: &WalConfig,
    from: Lsn,
) -> Result<(SimWal, Vec<Rec>, RecoveryReport), WalError> {
    let mut records = Vec::new();
    let (wal, report) = Wal::open(wal_dir(disk), clock.clone(), config.clone(), from, |r| {
        records.push((r.lsn, r.record_type, r.payload.to_vec()));
        Ok(())
    })?;
    Ok((wal, records, report))
}

/// A payload that encodes its LSN, so a misplaced record is noticed.
pub fn payload(lsn: Lsn, len: usize) -> Vec<u8> {
    let mut bytes = lsn.to_le_bytes().repeat(len.div_ceil(8));
    bytes.truncate(len);
    bytes
}
