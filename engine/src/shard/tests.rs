//! The shard's crash-recovery model test, and its group-commit and corruption checks.
//!
//! Strategy: drive one shard (B+tree + WAL + checkpoints) on a [`SimDisk`] with crash faults,
//! tiny pages, a cache of a few pages and tiny WAL segments, so that splits, merges, evictions,
//! spills, group commits, segment rollovers and checkpoints happen all the time. Random puts,
//! deletes, gets, scans, polls, clock advances and checkpoint requests run against a `BTreeMap`
//! model. A tenth of the values are large (up to 20 KB) and the inline threshold is 200 bytes,
//! so most values live in a value log of 32 KiB segments, whose garbage collection runs at every
//! poll in 8 KiB slices: overwrites and deletes make garbage, GC moves values and deletes
//! segments after checkpoints, and crashes land in the middle of all of it. Crashes come two
//! ways: a power cut scheduled a random number of disk operations ahead
//! (so it lands inside a group commit, between a write and its sync, during a rollover, inside a
//! checkpoint slice or during recovery itself), and an immediate crash between two operations.
//! Each crash then tears, drops, garbles or keeps every unsynced write.
//!
//! Single-shard transactions ([`Shard::apply_txn`]) join the mix: random assertions (mostly
//! true, sometimes false) and ops (reads, puts, deletes, integer adds on counter keys and, now
//! and then, on keys holding text) are checked against an independent evaluation on the model;
//! a txn that writes is exactly one LSN whose writes all survive recovery or all vanish. Its
//! values are drawn like the puts' (a tenth large), so txns put values into the value log too,
//! and GC moves them and crashes land between their values and their record.
//!
//! Invariants checked after every recovery:
//! - the recovered shard ends its log at some LSN k with `acked <= k <= issued`: every
//!   acknowledged write survived, nothing was invented;
//! - its contents equal the model after exactly the writes 1..=k (a prefix: no holes);
//! - `check_integrity` passes (the tree, and the value log's live-byte counts against the
//!   pointers in the tree).
//!
//! Between crashes, every get and scan must equal the model (the shard serves its in-memory
//! state). A failing run prints its seed; `JUBE_SEED=N` replays one seed, `JUBE_SEEDS=N` runs N
//! (from `JUBE_SEED_START`, default 0).

use super::*;
use crate::clock::ManualClock;
use crate::storage::sim::{FaultConfig, SimDisk, SimVfs};
use crate::tree::TreeConfig;
use crate::txn::{
    value_hash, Assertion, AssertionKind, Compare, OpKind, OpOutput, TxnFailure, TxnOp, TxnOutcome,
    TxnPart,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Write {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    /// One txn record: every key's final state (None: deleted).
    Txn(BTreeMap<Vec<u8>, Option<Vec<u8>>>),
}

fn small_config() -> ShardConfig {
    let mut config = ShardConfig::new(0);
    config.tree = TreeConfig {
        page_size: 4096,
        cache_bytes: 6 * 4096,
        shard_id: 0,
        ..TreeConfig::default()
    };
    config.wal.segment_size_bytes = 16 * 4096;
    config.wal.flush_bytes_max = 4 * 4096;
    config.wal.buffer_bytes_max = 8 * 4096;
    config.wal.free_segments_max = 2;
    config.checkpoint_wal_bytes = 24 * 4096;
    config.checkpoint_dirty_bytes = 8 * 4096;
    config.checkpoint_interval_ms = 50;
    config.checkpoint_slice_bytes = 2 * 4096;
    config.tree.value_inline_max = Some(200);
    config.vlog.segment_bytes = 32 * 1024;
    config.vlog.gc_slice_bytes = 8 * 1024;
    config.vlog.gc_interval_ms = 0;
    config.vlog.gc_garbage_percent = 30;
    // A value cache of a few values (the largest ones bypass it), so reads hit, miss and evict,
    // and moves and segment deletions meet cached values, across the crashes.
    config.vlog.cache_bytes = 96 * 1024;
    config
}

struct Harness {
    seed: u64,
    rng: ChaCha8Rng,
    disk: SimDisk,
    clock: ManualClock,
    config: ShardConfig,
    shard: Option<Shard<SimVfs>>,
    /// The model at LSN `base_lsn`, and the writes logged after it with their LSNs, in order.
    /// LSNs may skip: value-log moves are records that change no value.
    base: BTreeMap<Vec<u8>, Vec<u8>>,
    base_lsn: Lsn,
    history: Vec<(Lsn, Write)>,
    /// The highest LSN the shard has handed out (writes and moves).
    issued_max: Lsn,
    /// The model after every write so far (issued, acknowledged or not).
    current: BTreeMap<Vec<u8>, Vec<u8>>,
    acked_max: Lsn,
    recoveries: u64,
    /// Value-log work seen across incarnations: GC runs, bytes moved, segments deleted.
    gc_runs: u64,
    gc_bytes_moved: u64,
    segments_deleted: u64,
    /// Committed txns that put a value above the inline threshold (into the value log).
    txns_with_large_values: u64,
    /// Reads of value-log values answered by the value cache, and those that read the disk.
    cache_hits: u64,
    cache_misses: u64,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let disk = SimDisk::new(seed, FaultConfig::crashes());
        let mut harness = Harness {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5eed),
            disk,
            clock: ManualClock::new(1_700_000_000_000),
            config: ShardConfig {
                // Half the seeds flush with one RWF_DSYNC write, half write then sync.
                wal: crate::wal::WalConfig {
                    sync_mode: if seed.is_multiple_of(2) {
                        crate::wal::SyncMode::WriteDsync
                    } else {
                        crate::wal::SyncMode::WriteThenSync
                    },
                    ..small_config().wal
                },
                ..small_config()
            },
            shard: None,
            base: BTreeMap::new(),
            base_lsn: 0,
            history: Vec::new(),
            issued_max: 0,
            current: BTreeMap::new(),
            acked_max: 0,
            recoveries: 0,
            gc_runs: 0,
            gc_bytes_moved: 0,
            segments_deleted: 0,
            txns_with_large_values: 0,
            cache_hits: 0,
            cache_misses: 0,
        };
        harness.recover();
        harness
    }

    fn shard(&mut self) -> &mut Shard<SimVfs> {
        self.shard.as_mut().expect("the shard is open")
    }

    /// The LSN of the last put or delete (moves excluded).
    fn last_write_lsn(&self) -> Lsn {
        self.history.last().map_or(self.base_lsn, |(lsn, _)| *lsn)
    }

    fn note_acks(&mut self) {
        if let Some(shard) = &self.shard {
            self.acked_max = self.acked_max.max(shard.acked_lsn());
            self.issued_max = self.issued_max.max(shard.last_lsn());
        }
    }

    fn key(&mut self) -> Vec<u8> {
        let n = self.rng.gen_range(0..400u32);
        let len = 1 + (n as usize * 7) % 60;
        let mut key = format!("k{n:05}").into_bytes();
        key.resize(len.max(6), b'.');
        key
    }

    fn value(&mut self) -> Vec<u8> {
        let len = if self.rng.gen_bool(0.1) {
            self.rng.gen_range(1_000..=20_000)
        } else {
            self.rng.gen_range(0..=300)
        };
        let fill = self.rng.gen::<u8>();
        vec![fill; len]
    }

    /// Runs one random step; returns false when the shard failed (a power cut) and must crash.
    fn step(&mut self) -> bool {
        let roll = self.rng.gen_range(0..1000);
        let result = match roll {
            0..=319 => self.put(),
            320..=399 => self.txn(),
            400..=549 => self.delete(),
            550..=699 => self.get(),
            700..=749 => self.scan(),
            750..=979 => {
                let ns = self.rng.gen_range(0..2_000_000);
                self.clock.advance_ns(ns);
                self.shard().poll()
            }
            980..=989 => {
                self.shard().request_checkpoint();
                Ok(())
            }
            990..=994 => {
                let ops = self.rng.gen_range(0..60);
                self.disk.cut_power_after(ops);
                Ok(())
            }
            _ => return false,
        };
        self.note_acks();
        match result {
            Ok(()) => true,
            Err(ShardError::Failed { .. }) => {
                assert!(
                    self.disk.power_is_out(),
                    "seed {}: a failure without a power cut",
                    self.seed
                );
                false
            }
            Err(other) => panic!("seed {}: unexpected error {other}", self.seed),
        }
    }

    /// Retries a write refused with Busy after polling, as a server would.
    fn with_retry<T>(
        &mut self,
        mut op: impl FnMut(&mut Shard<SimVfs>) -> Result<T, ShardError>,
    ) -> Result<T, ShardError> {
        loop {
            match op(self.shard()) {
                Err(ShardError::Busy { .. }) => {
                    self.clock.advance_ns(100_000);
                    self.shard().poll()?;
                    self.note_acks();
                }
                other => return other,
            }
        }
    }

    fn put(&mut self) -> Result<(), ShardError> {
        let (key, value) = (self.key(), self.value());
        let lsn = self.with_retry(|shard| shard.put(&key, &value, 0))?;
        assert!(
            lsn > self.last_write_lsn(),
            "seed {}: LSNs increase",
            self.seed
        );
        self.history
            .push((lsn, Write::Put(key.clone(), value.clone())));
        self.current.insert(key, value);
        Ok(())
    }

    fn delete(&mut self) -> Result<(), ShardError> {
        let key = self.key();
        let (present, lsn) = self.with_retry(|shard| shard.delete(&key))?;
        assert_eq!(
            present,
            self.current.contains_key(&key),
            "seed {}: delete",
            self.seed
        );
        if present {
            assert!(
                lsn > self.last_write_lsn(),
                "seed {}: LSNs increase",
                self.seed
            );
            self.history.push((lsn, Write::Delete(key.clone())));
            self.current.remove(&key);
        }
        Ok(())
    }

    /// A counter key (integer values) or, now and then, an ordinary key.
    fn txn_key(&mut self) -> Vec<u8> {
        if self.rng.gen_bool(0.7) {
            format!("c{:02}", self.rng.gen_range(0..12)).into_bytes()
        } else {
            self.key()
        }
    }

    fn random_part(&mut self) -> TxnPart {
        let mut part = TxnPart::default();
        let mut index = 0;
        for _ in 0..self.rng.gen_range(0..3) {
            let key = self.txn_key();
            let value = self.current.get(&key).cloned();
            let truthful = self.rng.gen_bool(0.8);
            let kind = match (self.rng.gen_range(0..4), value) {
                (0, Some(v)) if truthful => AssertionKind::ValueEquals(v),
                (1, Some(v)) if truthful => AssertionKind::HashEquals(value_hash(&v)),
                (2, _) => AssertionKind::IntCompare {
                    op: [Compare::Ge, Compare::Lt, Compare::Ne][self.rng.gen_range(0..3)],
                    operand: self.rng.gen_range(-5..5),
                },
                (_, Some(_)) if truthful => AssertionKind::Exists,
                (_, None) if truthful => AssertionKind::Absent,
                (_, Some(_)) => AssertionKind::Absent,
                (_, None) => AssertionKind::Exists,
            };
            part.assertions.push(Assertion { index, key, kind });
            index += 1;
        }
        for _ in 0..self.rng.gen_range(1..6) {
            let key = self.txn_key();
            let kind = match self.rng.gen_range(0..10) {
                0..=1 => OpKind::Read {
                    with_version: false,
                },
                2..=3 => OpKind::Put {
                    value: if key.starts_with(b"c") {
                        self.rng.gen_range(-9..10i64).to_string().into_bytes()
                    } else if self.rng.gen_bool(0.3) {
                        // Into the value log.
                        vec![self.rng.gen::<u8>(); self.rng.gen_range(201..=12_000)]
                    } else {
                        self.value()
                    },
                    expiry_ms: 0,
                },
                4 => OpKind::Delete,
                _ => OpKind::Add {
                    delta: if self.rng.gen_bool(0.02) {
                        i64::MAX
                    } else {
                        self.rng.gen_range(-3..4)
                    },
                },
            };
            part.ops.push(TxnOp { index, key, kind });
            index += 1;
        }
        part
    }

    fn txn(&mut self) -> Result<(), ShardError> {
        let part = self.random_part();
        let expected = model_txn(&self.current, &part);
        let reply = self.with_retry(|shard| shard.apply_txn(&part))?;
        let seed = self.seed;
        let (outputs, writes) = match (expected, reply.outcome) {
            (Ok((outputs, writes)), TxnOutcome::Committed { results }) => {
                let got: Vec<ModelOutput> = results
                    .into_iter()
                    .map(|r| match r.output {
                        OpOutput::Read(value) => ModelOutput::Read(value.map(|v| v.bytes)),
                        OpOutput::Put => ModelOutput::Put,
                        OpOutput::Deleted { existed } => ModelOutput::Deleted(existed),
                        OpOutput::Added { value } => ModelOutput::Added(value),
                    })
                    .collect();
                (got, (outputs, writes))
            }
            (Err(index), TxnOutcome::Failed(failure)) => {
                let got = match failure {
                    TxnFailure::AssertionFailed { index, .. }
                    | TxnFailure::OpFailed { index, .. } => index,
                };
                assert_eq!(got, index, "seed {seed}: failed txn {part:?}");
                let last = self.shard().last_lsn();
                assert!(reply.wait_lsn <= last, "seed {seed}: a failed txn logged");
                return Ok(());
            }
            (expected, outcome) => {
                panic!("seed {seed}: txn {part:?}: model {expected:?}, shard {outcome:?}")
            }
        };
        let (expected_outputs, writes) = writes;
        assert_eq!(
            outputs, expected_outputs,
            "seed {seed}: results of {part:?}"
        );
        let writes: BTreeMap<Vec<u8>, Option<Vec<u8>>> = writes
            .into_iter()
            .filter(|(key, state)| state.is_some() || self.current.contains_key(key))
            .collect();
        if writes.is_empty() {
            let last = self.shard().last_lsn();
            assert!(reply.wait_lsn <= last, "seed {seed}: logged nothing");
            return Ok(());
        }
        // A txn is one record: the last one logged, after every earlier write.
        let last = self.shard().last_lsn();
        assert_eq!(reply.wait_lsn, last, "seed {seed}: a txn is one record");
        assert!(
            reply.wait_lsn > self.last_write_lsn(),
            "seed {seed}: LSNs increase"
        );
        let inline_max = self.config.tree.value_inline_max();
        if writes
            .values()
            .flatten()
            .any(|value| value.len() > inline_max)
        {
            self.txns_with_large_values += 1;
        }
        apply_model_writes(&mut self.current, writes.clone());
        self.history.push((reply.wait_lsn, Write::Txn(writes)));
        Ok(())
    }

    fn get(&mut self) -> Result<(), ShardError> {
        let key = self.key();
        let got = self.shard().get(&key)?.map(|v| v.bytes);
        assert_eq!(
            got.as_ref(),
            self.current.get(&key),
            "seed {}: get {key:?}",
            self.seed
        );
        Ok(())
    }

    fn scan(&mut self) -> Result<(), ShardError> {
        let (a, b) = (self.key(), self.key());
        let (start, end) = if a <= b { (a, b) } else { (b, a) };
        let reverse = self.rng.gen_bool(0.5);
        let limit = self.rng.gen_range(1..50);
        let page = self.shard().scan(
            Bound::Included(&start),
            Bound::Excluded(&end),
            limit,
            reverse,
            None,
        )?;
        let range = self
            .current
            .range::<Vec<u8>, _>((Bound::Included(&start), Bound::Excluded(&end)));
        let expected: Vec<(Vec<u8>, Vec<u8>)> = if reverse {
            range
                .rev()
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            range
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let got: Vec<(Vec<u8>, Vec<u8>)> = page
            .entries
            .into_iter()
            .map(|e| (e.key, e.value.bytes))
            .collect();
        assert_eq!(got, expected, "seed {}: scan", self.seed);
        Ok(())
    }

    /// Crashes the disk, then reopens the shard (crashing again, now and then, during recovery
    /// itself) and checks the invariants in the module doc.
    fn crash_and_recover(&mut self) {
        self.note_acks();
        if let Some(shard) = &self.shard {
            let vlog = shard.stats().vlog;
            self.gc_runs += vlog.gc_runs;
            self.gc_bytes_moved += vlog.gc_bytes_moved;
            self.segments_deleted += vlog.segments_deleted;
            self.cache_hits += vlog.cache.hits;
            self.cache_misses += vlog.cache.misses;
        }
        self.shard = None;
        self.disk.crash();
        self.recover();
    }

    fn recover(&mut self) {
        loop {
            if self.recoveries > 0 && self.rng.gen_bool(0.2) {
                let ops = self.rng.gen_range(0..40);
                self.disk.cut_power_after(ops);
            }
            let vfs = self.disk.root().subdir("shard-000").expect("subdir");
            let clock: Rc<dyn Clock> = Rc::new(self.clock.clone());
            match Shard::open(vfs, self.config.clone(), clock) {
                Ok((shard, _)) if !self.disk.power_is_out() => {
                    self.disk.cancel_power_cut();
                    self.shard = Some(shard);
                    break;
                }
                Ok(_) => self.disk.crash(),
                Err(error) => {
                    assert!(
                        self.disk.power_is_out(),
                        "seed {}: recovery failed: {error}",
                        self.seed
                    );
                    self.disk.crash();
                }
            }
        }
        self.recoveries += 1;
        self.check_recovered();
    }

    fn check_recovered(&mut self) {
        let seed = self.seed;
        let issued = self.issued_max.max(self.last_write_lsn());
        let shard = self.shard.as_mut().expect("open");
        let end = shard.stats().wal.next_lsn - 1;
        assert!(
            self.acked_max <= end && end <= issued,
            "seed {seed}: recovered to LSN {end}, but {} were acknowledged and {issued} issued",
            self.acked_max
        );
        let keep = self.history.partition_point(|(lsn, _)| *lsn <= end);
        for (_, write) in self.history.drain(..keep) {
            match write {
                Write::Put(key, value) => {
                    self.base.insert(key, value);
                }
                Write::Delete(key) => {
                    self.base.remove(&key);
                }
                Write::Txn(writes) => apply_model_writes(&mut self.base, writes),
            }
        }
        self.history.clear();
        self.base_lsn = end;
        self.issued_max = end;
        self.current = self.base.clone();
        self.acked_max = end;
        if let Err(error) = shard.check_integrity() {
            panic!("seed {seed}: integrity after recovery: {error}");
        }
        let page = shard
            .scan(Bound::Unbounded, Bound::Unbounded, usize::MAX, false, None)
            .unwrap_or_else(|e| panic!("seed {seed}: full scan: {e}"));
        let got: BTreeMap<Vec<u8>, Vec<u8>> = page
            .entries
            .into_iter()
            .map(|e| (e.key, e.value.bytes))
            .collect();
        assert_eq!(
            got, self.base,
            "seed {seed}: recovered contents differ from the model at LSN {end}"
        );
    }
}

fn apply_model_writes(
    model: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
) {
    for (key, state) in writes {
        match state {
            Some(value) => model.insert(key, value),
            None => model.remove(&key),
        };
    }
}

/// What the model expects of one op: read bytes, delete's "existed", add's new value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelOutput {
    Read(Option<Vec<u8>>),
    Put,
    Deleted(bool),
    Added(i64),
}

/// The model's own evaluation of a part (no expiry in this test): Ok(outputs, final states of
/// the written keys) or Err(index of the first failed assertion or op).
#[allow(clippy::type_complexity)]
fn model_txn(
    state: &BTreeMap<Vec<u8>, Vec<u8>>,
    part: &TxnPart,
) -> Result<(Vec<ModelOutput>, BTreeMap<Vec<u8>, Option<Vec<u8>>>), u32> {
    let int = |bytes: &[u8]| -> Option<i64> {
        let text = std::str::from_utf8(bytes).ok()?;
        if text.starts_with('+') {
            return None;
        }
        text.parse().ok()
    };
    for assertion in &part.assertions {
        let value = state.get(&assertion.key);
        let holds = match &assertion.kind {
            AssertionKind::Exists => value.is_some(),
            AssertionKind::Absent => value.is_none(),
            AssertionKind::ValueEquals(expected) => value == Some(expected),
            AssertionKind::HashEquals(hash) => value.is_some_and(|v| value_hash(v) == *hash),
            AssertionKind::IntCompare { op, operand } => value
                .and_then(|v| int(v))
                .is_some_and(|v| op.holds(v, *operand)),
            AssertionKind::VersionEquals(_) => unreachable!("not generated here"),
        };
        if !holds {
            return Err(assertion.index);
        }
    }
    let mut overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut outputs = Vec::new();
    for op in &part.ops {
        let current = match overlay.get(&op.key) {
            Some(state) => state.clone(),
            None => state.get(&op.key).cloned(),
        };
        outputs.push(match &op.kind {
            OpKind::Read { .. } => ModelOutput::Read(current),
            OpKind::Put { value, .. } => {
                overlay.insert(op.key.clone(), Some(value.clone()));
                ModelOutput::Put
            }
            OpKind::Delete => {
                overlay.insert(op.key.clone(), None);
                ModelOutput::Deleted(current.is_some())
            }
            OpKind::Add { delta } => {
                let old = match &current {
                    None => 0,
                    Some(bytes) => int(bytes).ok_or(op.index)?,
                };
                let new = old.checked_add(*delta).ok_or(op.index)?;
                overlay.insert(op.key.clone(), Some(new.to_string().into_bytes()));
                ModelOutput::Added(new)
            }
        });
    }
    Ok((outputs, overlay))
}

/// Runs one seed; returns (recoveries, GC runs, GC bytes moved, segments deleted, committed
/// txns with large values, (value-cache hits, misses)).
fn run_seed(seed: u64, steps: usize) -> (u64, u64, u64, u64, u64, (u64, u64)) {
    let mut harness = Harness::new(seed);
    for _ in 0..steps {
        if !harness.step() {
            harness.crash_and_recover();
        }
    }
    harness.crash_and_recover();
    (
        harness.recoveries,
        harness.gc_runs,
        harness.gc_bytes_moved,
        harness.segments_deleted,
        harness.txns_with_large_values,
        (harness.cache_hits, harness.cache_misses),
    )
}

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("JUBE_SEED") {
        return vec![seed.parse().expect("JUBE_SEED is a number")];
    }
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let start = var("JUBE_SEED_START", 0);
    (start..start + var("JUBE_SEEDS", 12)).collect()
}

#[test]
fn model_with_crashes_anywhere() {
    for seed in seeds() {
        eprintln!("shard model: seed {seed} (replay with JUBE_SEED={seed})");
        let (recoveries, gc_runs, moved, deleted, large_txns, (hits, misses)) =
            run_seed(seed, 10_000);
        eprintln!(
            "  {recoveries} recoveries, {gc_runs} GC runs, {moved} bytes moved, {deleted} \
             segments deleted, {large_txns} txns with value-log values, {hits} value-cache \
             hits, {misses} misses"
        );
        assert!(
            recoveries > 5,
            "seed {seed}: only {recoveries} recoveries: the test lost its teeth"
        );
        assert!(
            gc_runs > 0 && moved > 0 && deleted > 0,
            "seed {seed}: value-log GC never ran to the end: the test lost its teeth"
        );
        assert!(
            large_txns > 10,
            "seed {seed}: only {large_txns} txns put values into the value log"
        );
        assert!(
            hits > 0 && misses > 0,
            "seed {seed}: the value cache saw {hits} hits and {misses} misses: both paths must run"
        );
    }
}

fn open_fresh(disk: &SimDisk, config: ShardConfig) -> Shard<SimVfs> {
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(0));
    Shard::open(vfs, config, clock).expect("open").0
}

#[test]
fn a_thousand_writers_share_few_syncs() {
    let disk = SimDisk::new(1, FaultConfig::none());
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 1 << 20;
    let mut shard = open_fresh(&disk, config);
    let before = disk.stats().syncs;
    let mut last = 0;
    for i in 0..1000u32 {
        last = shard
            .put(format!("key{i:04}").as_bytes(), b"value", 0)
            .expect("put");
        if i % 100 == 0 {
            shard.poll().expect("poll");
        }
    }
    while shard.acked_lsn() < last {
        shard.poll().expect("poll");
    }
    let syncs = disk.stats().syncs - before;
    assert!(syncs <= 40, "1000 acknowledged writes took {syncs} syncs");
}

#[test]
fn padded_small_flushes_count_toward_the_checkpoint_trigger() {
    // Under `sync = none` every poll flushes what is staged, often one small record padded to a
    // 4 KiB block: the log's segments fill ~20x faster than its record bytes grow, and only a
    // checkpoint lets them be released. The trigger counts the bytes written to segments.
    let disk = SimDisk::new(17, FaultConfig::none());
    let mut config = ShardConfig::new(0);
    config.wal.sync_policy = crate::wal::SyncPolicy::None;
    config.checkpoint_wal_bytes = 256 * 1024;
    config.checkpoint_dirty_bytes = u64::MAX;
    config.checkpoint_interval_ms = u64::MAX;
    let mut shard = open_fresh(&disk, config);
    for i in 0..100u32 {
        shard
            .put(format!("key{i:04}").as_bytes(), b"v", 0)
            .expect("put");
        shard.poll().expect("poll");
    }
    // ~100 records of ~40 bytes (4 KB of records), in ~100 padded flushes (400 KB of log).
    let stats = shard.stats();
    assert!(stats.wal.bytes_written >= 256 * 1024, "{:?}", stats.wal);
    assert!(
        stats.checkpoints >= 1,
        "no checkpoint after {} bytes of log",
        stats.wal.bytes_written
    );
}

#[test]
fn reads_of_unacknowledged_writes_wait_for_their_lsn() {
    let disk = SimDisk::new(2, FaultConfig::none());
    let mut shard = open_fresh(&disk, ShardConfig::new(0));
    let lsn = shard.put(b"k", b"v", 0).expect("put");
    assert_eq!(shard.read_barrier(b"k"), Some(lsn));
    assert_eq!(shard.read_barrier(b"other"), None);
    assert_eq!(shard.scan_barrier(), Some(lsn));
    while shard.acked_lsn() < lsn {
        shard.poll().expect("poll");
    }
    shard.poll().expect("poll");
    assert_eq!(shard.read_barrier(b"k"), None);
    assert_eq!(shard.scan_barrier(), None);
}

#[test]
fn clean_close_leaves_nothing_to_replay() {
    let disk = SimDisk::new(3, FaultConfig::none());
    let mut shard = open_fresh(&disk, ShardConfig::new(0));
    for i in 0..500u32 {
        shard
            .put(format!("key{i:04}").as_bytes(), &[7; 100], 0)
            .expect("put");
    }
    shard.close().expect("close");
    disk.crash();
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(0));
    let (mut shard, report) = Shard::open(vfs, ShardConfig::new(0), clock).expect("reopen");
    assert_eq!(report.checkpoint_lsn, 500);
    assert_eq!(report.wal.records_replayed, 0);
    assert_eq!(
        shard.get(b"key0499").expect("get").map(|v| v.bytes),
        Some(vec![7; 100])
    );
}

#[test]
fn input_limits_are_errors_that_change_nothing() {
    let disk = SimDisk::new(4, FaultConfig::none());
    let mut shard = open_fresh(&disk, ShardConfig::new(0));
    let long_key = vec![b'k'; crate::constants::KEY_SIZE_MAX + 1];
    assert!(matches!(
        shard.put(&long_key, b"v", 0),
        Err(ShardError::KeyTooLarge { .. })
    ));
    let big = vec![0; crate::constants::VALUE_SIZE_MAX + 1];
    assert!(matches!(
        shard.put(b"k", &big, 0),
        Err(ShardError::ValueTooLarge { .. })
    ));
    assert_eq!(shard.stats().wal.next_lsn, 1, "nothing was logged");
    shard.put(b"k", b"fine", 0).expect("the shard still works");
}

/// A flipped byte in a page must surface as an error on the reads that touch it, never as
/// wrong data.
#[test]
fn a_corrupt_page_is_reported_not_served() {
    let disk = SimDisk::new(5, FaultConfig::none());
    let mut config = ShardConfig::new(0);
    config.tree.cache_bytes = 16 * 4096;
    let mut shard = open_fresh(&disk, config.clone());
    let value = |i: u32| format!("value-{i}").into_bytes();
    for i in 0..2000u32 {
        shard
            .put(format!("key{i:05}").as_bytes(), &value(i), 0)
            .expect("put");
    }
    shard.close().expect("close");
    let pages = disk.durable_image("shard-000/pages").expect("page file");
    let middle = (pages.len() / 2 / 4096 * 4096 + 1000) as u64;
    assert!(disk.flip_byte("shard-000/pages", middle));
    let vfs = disk.root().subdir("shard-000").expect("subdir");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(0));
    let (mut shard, _) = match Shard::open(vfs, config, clock) {
        Ok(opened) => opened,
        Err(error) => {
            assert!(
                error.to_string().contains("shard-000/pages"),
                "names the file: {error}"
            );
            return;
        }
    };
    let mut errors = 0;
    for i in 0..2000u32 {
        match shard.get(format!("key{i:05}").as_bytes()) {
            Ok(found) => assert_eq!(found.map(|v| v.bytes), Some(value(i)), "never wrong data"),
            Err(error) => {
                assert!(
                    error.to_string().contains("pages"),
                    "names the file: {error}"
                );
                errors += 1;
                break;
            }
        }
    }
    let integrity = shard.check_integrity();
    assert!(
        errors > 0 || integrity.is_err(),
        "the flipped byte went unnoticed"
    );
}
