//! The two-phase-commit driver of one cross-shard transaction, as a sans-IO state machine.
//!
//! The coordinator does no I/O and knows no runtime: it says what to do next ([`Step`]) and is
//! told what happened ([`Feedback`]). The server's dispatcher performs steps with mesh calls to
//! the shards' cores; the engine's multi-shard simulation performs the very same steps over a
//! simulated mesh. Driving loop:
//!
//! ```text
//! let mut coordinator = Coordinator::new(parts);
//! loop {
//!     for step in coordinator.take_steps() { issue(step) }     // may run concurrently
//!     if coordinator.is_done() { break }
//!     coordinator.feed(next_completion().await);
//! }
//! ```
//!
//! Protocol (participants sorted by shard id; coordinator shard C = the lowest):
//! 1. `Prepare` at C (it allocates the [`TxnId`]), then at each other participant in ascending
//!    shard order, one at a time: the canonical lock order, so transactions never deadlock.
//! 2. Once all are prepared, `AwaitDurable` for every prepare's `wait_lsn`.
//! 3. Writing txn: `Decide` at C, `AwaitDurable` of the Decision: the commit point. Then
//!    `Reply(Committed)`, `Finish(commit)` at every other participant, `AwaitDurable` of each
//!    Commit, and finally `Forget` at C.
//!    Read-only txn: `Reply(Committed)`, then `Finish` (release) at every participant.
//! 4. A failed assertion or op, or an error from a prepare, a durability wait of a prepare, or
//!    a decide that logged nothing (`Busy`, `NoSpace`, `Locked`...): `Finish(abort)` at every
//!    prepared participant (presumed abort: no durability wait), and `Reply` with the failure.
//!    A `Failed` decide leaves the outcome to recovery: the reply is the error, nothing else is
//!    sent (the participants stay prepared until the process restarts and resolves them).
//!
//! Invariants: exactly one `Reply` per transaction; `Decide` is issued only after every
//! prepare's record is acknowledged; `Finish(commit)` only after the Decision is acknowledged;
//! `Forget` only after every Commit is acknowledged; a `Finish(abort)` never follows a `Decide`.

use super::{PrepareReply, PrepareRequest, TxnId, TxnOutcome, TxnPart};
use crate::shard::ShardError;
use crate::wal::Lsn;

/// What the driver must do next. Every step except `Forget` and `Reply` is answered by exactly
/// one [`Feedback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Call `Shard::prepare_txn(&request)` on `shard`; feed [`Feedback::Prepared`].
    Prepare { shard: u32, request: PrepareRequest },
    /// Feed [`Feedback::Durable`] once `shard`'s `acked_lsn() >= lsn` (or the shard failed).
    AwaitDurable { shard: u32, lsn: Lsn },
    /// Call `Shard::decide_txn(id, &participants)` on `shard` (the coordinator); feed
    /// [`Feedback::Decided`].
    Decide {
        shard: u32,
        id: TxnId,
        participants: Vec<u32>,
    },
    /// Call `Shard::finish_txn(id, commit)` on `shard`; feed [`Feedback::Finished`].
    Finish { shard: u32, id: TxnId, commit: bool },
    /// Call `Shard::forget_decision(id)` on `shard` (the coordinator). No feedback.
    Forget { shard: u32, id: TxnId },
    /// Answer the client. Issued exactly once; more steps may follow it.
    Reply(Result<TxnOutcome, ShardError>),
}

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    Prepared {
        shard: u32,
        reply: Result<PrepareReply, ShardError>,
    },
    Durable {
        shard: u32,
        lsn: Lsn,
        result: Result<(), ShardError>,
    },
    Decided {
        shard: u32,
        result: Result<Lsn, ShardError>,
    },
    Finished {
        shard: u32,
        result: Result<Lsn, ShardError>,
    },
}

/// Where the transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the prepare of participant `index` (issued one at a time, in order).
    Preparing { index: usize },
    /// Every part is prepared; waiting for this many prepares to be acknowledged.
    AwaitPrepares { pending: usize },
    /// The Decide step is out.
    Deciding,
    /// The Decision is logged; waiting for it to be acknowledged.
    AwaitDecision,
    /// Committed and answered: waiting for this many Commits (or releases) to be acknowledged.
    Finishing { pending: usize },
    /// Aborting: Finish(abort) steps are out; nothing more to decide.
    Aborting,
    /// Nothing more will be issued (outstanding feedback is still counted).
    Over,
}

/// The driver of one cross-shard transaction; see the module doc.
#[derive(Debug)]
pub struct Coordinator {
    /// Participant shards, ascending; `shards[0]` is the coordinator shard.
    shards: Vec<u32>,
    /// Each participant's part, taken when its prepare is issued.
    parts: Vec<Option<TxnPart>>,
    read_only: bool,
    id: Option<TxnId>,
    phase: Phase,
    /// Whether each participant holds the txn prepared (and must be finished).
    prepared: Vec<bool>,
    /// Each participant's prepare `wait_lsn`.
    prepare_lsns: Vec<Lsn>,
    results: Vec<super::OpResult>,
    ready: Vec<Step>,
    /// Steps issued whose feedback has not arrived.
    outstanding: usize,
    /// The answer waiting for a durability wait on a failed participant (shard, lsn).
    reply_after: Option<(u32, Lsn, Result<TxnOutcome, ShardError>)>,
    replied: bool,
    /// A participant could not finish its commit: keep the decision for recovery.
    keep_decision: bool,
}

impl Coordinator {
    /// A transaction over `parts`: (shard id, that shard's part). Needs at least two distinct
    /// shards (a single-shard txn is `Shard::apply_txn`); any order, sorted here.
    pub fn new(mut parts: Vec<(u32, TxnPart)>) -> Coordinator {
        parts.sort_by_key(|(shard, _)| *shard);
        assert!(
            parts.len() >= 2,
            "a cross-shard txn has two participants or more"
        );
        assert!(
            parts.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "each participant shard appears once"
        );
        let read_only = parts.iter().all(|(_, part)| part.is_read_only());
        let count = parts.len();
        let (shards, parts): (Vec<u32>, Vec<Option<TxnPart>>) = parts
            .into_iter()
            .map(|(shard, part)| (shard, Some(part)))
            .unzip();
        let mut coordinator = Coordinator {
            shards,
            parts,
            read_only,
            id: None,
            phase: Phase::Preparing { index: 0 },
            prepared: vec![false; count],
            prepare_lsns: vec![0; count],
            results: Vec::new(),
            ready: Vec::new(),
            outstanding: 0,
            reply_after: None,
            replied: false,
            keep_decision: false,
        };
        coordinator.issue_prepare(0);
        coordinator
    }

    /// The steps to issue now, each returned once. Call after `new` and after every `feed`.
    pub fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.ready)
    }

    /// Reports the completion of a step issued earlier.
    pub fn feed(&mut self, feedback: Feedback) {
        assert!(self.outstanding > 0, "feedback without an outstanding step");
        self.outstanding -= 1;
        match feedback {
            Feedback::Prepared { shard, reply } => self.on_prepared(shard, reply),
            Feedback::Durable { shard, lsn, result } => self.on_durable(shard, lsn, result),
            Feedback::Decided { shard, result } => self.on_decided(shard, result),
            Feedback::Finished { shard, result } => self.on_finished(shard, result),
        }
    }

    /// True once every issued step was answered and nothing is left to issue.
    pub fn is_done(&self) -> bool {
        self.outstanding == 0 && self.ready.is_empty()
    }

    /// The transaction's id, once the coordinator shard allocated it.
    pub fn id(&self) -> Option<TxnId> {
        self.id
    }

    /// The participant shards, ascending; the first is the coordinator shard.
    pub fn participants(&self) -> Vec<u32> {
        self.shards.clone()
    }

    fn index_of(&self, shard: u32) -> usize {
        self.shards
            .binary_search(&shard)
            .unwrap_or_else(|_| panic!("shard {shard} is not a participant"))
    }

    fn push(&mut self, step: Step) {
        if !matches!(step, Step::Forget { .. } | Step::Reply(_)) {
            self.outstanding += 1;
        }
        if let Step::Reply(_) = step {
            assert!(!self.replied, "a transaction is answered once");
            self.replied = true;
        }
        self.ready.push(step);
    }

    fn issue_prepare(&mut self, index: usize) {
        let part = self.parts[index]
            .take()
            .expect("each part is prepared once");
        let request = PrepareRequest {
            id: self.id,
            read_only: self.read_only,
            part,
        };
        let shard = self.shards[index];
        self.push(Step::Prepare { shard, request });
    }

    fn on_prepared(&mut self, shard: u32, reply: Result<PrepareReply, ShardError>) {
        let index = self.index_of(shard);
        assert_eq!(
            self.phase,
            Phase::Preparing { index },
            "prepares are answered in order"
        );
        match reply {
            Ok(PrepareReply::Prepared {
                id,
                results,
                wait_lsn,
            }) => {
                match self.id {
                    None => self.id = Some(id),
                    Some(known) => assert_eq!(known, id, "every participant prepares one id"),
                }
                self.prepared[index] = true;
                self.prepare_lsns[index] = wait_lsn;
                self.results.extend(results);
                if index + 1 < self.shards.len() {
                    self.phase = Phase::Preparing { index: index + 1 };
                    self.issue_prepare(index + 1);
                } else {
                    self.await_prepares();
                }
            }
            Ok(PrepareReply::Failed { failure, wait_lsn }) => {
                let outcome = Ok(TxnOutcome::Failed(failure));
                self.abort(outcome, Some((shard, wait_lsn)));
            }
            Err(error) => self.abort(Err(error), None),
        }
    }

    fn await_prepares(&mut self) {
        let waits: Vec<(u32, Lsn)> = self
            .shards
            .iter()
            .zip(&self.prepare_lsns)
            .filter(|(_, &lsn)| lsn > 0)
            .map(|(&shard, &lsn)| (shard, lsn))
            .collect();
        self.phase = Phase::AwaitPrepares {
            pending: waits.len(),
        };
        for (shard, lsn) in &waits {
            self.push(Step::AwaitDurable {
                shard: *shard,
                lsn: *lsn,
            });
        }
        if waits.is_empty() {
            self.commit();
        }
    }

    /// Every prepare is acknowledged: decide (or, read-only, answer and release).
    fn commit(&mut self) {
        let id = self.id.expect("the coordinator allocated the id");
        if self.read_only {
            self.answer_committed();
            self.phase = Phase::Finishing {
                pending: self.shards.len(),
            };
            for shard in self.shards.clone() {
                self.push(Step::Finish {
                    shard,
                    id,
                    commit: true,
                });
            }
            return;
        }
        self.phase = Phase::Deciding;
        self.push(Step::Decide {
            shard: self.shards[0],
            id,
            participants: self.shards.clone(),
        });
    }

    fn answer_committed(&mut self) {
        let mut results = std::mem::take(&mut self.results);
        results.sort_by_key(|result| result.index);
        self.push(Step::Reply(Ok(TxnOutcome::Committed { results })));
    }

    /// Releases every prepared participant and answers `outcome`, after a durability wait on
    /// the participant whose failure the answer reveals, if any.
    fn abort(&mut self, outcome: Result<TxnOutcome, ShardError>, wait: Option<(u32, Lsn)>) {
        assert!(
            matches!(
                self.phase,
                Phase::Preparing { .. } | Phase::AwaitPrepares { .. } | Phase::Deciding
            ),
            "no abort after the decision"
        );
        self.phase = Phase::Aborting;
        match wait {
            Some((shard, lsn)) if lsn > 0 => {
                self.reply_after = Some((shard, lsn, outcome));
                self.push(Step::AwaitDurable { shard, lsn });
            }
            _ => self.push(Step::Reply(outcome)),
        }
        if let Some(id) = self.id {
            for index in 0..self.shards.len() {
                if self.prepared[index] {
                    let shard = self.shards[index];
                    self.push(Step::Finish {
                        shard,
                        id,
                        commit: false,
                    });
                }
            }
        }
    }

    fn on_durable(&mut self, shard: u32, lsn: Lsn, result: Result<(), ShardError>) {
        match self.phase {
            Phase::AwaitPrepares { pending } => match result {
                Ok(()) if pending == 1 => self.commit(),
                Ok(()) => {
                    self.phase = Phase::AwaitPrepares {
                        pending: pending - 1,
                    }
                }
                Err(error) => self.abort(Err(error), None),
            },
            Phase::AwaitDecision => match result {
                Ok(()) => {
                    self.answer_committed();
                    let id = self.id.expect("decided");
                    self.phase = Phase::Finishing {
                        pending: self.shards.len() - 1,
                    };
                    let others: Vec<u32> = self.shards.iter().skip(1).copied().collect();
                    for shard in others {
                        self.push(Step::Finish {
                            shard,
                            id,
                            commit: true,
                        });
                    }
                }
                Err(error) => {
                    // The Decision may or may not be durable: recovery decides.
                    self.push(Step::Reply(Err(error)));
                    self.phase = Phase::Over;
                }
            },
            Phase::Finishing { pending } => {
                if result.is_err() {
                    self.keep_decision = true;
                }
                self.finished_one(pending);
            }
            Phase::Aborting => {
                let waited_for =
                    matches!(&self.reply_after, Some((s, l, _)) if *s == shard && *l == lsn);
                if waited_for {
                    let (_, _, outcome) = self.reply_after.take().expect("matched above");
                    self.push(Step::Reply(outcome));
                }
                // Otherwise: a prepare's wait that finished after the abort; nothing to do.
            }
            Phase::Preparing { .. } | Phase::Deciding | Phase::Over => {
                panic!(
                    "unexpected durability feedback for shard {shard} in {:?}",
                    self.phase
                )
            }
        }
    }

    fn on_decided(&mut self, shard: u32, result: Result<Lsn, ShardError>) {
        assert_eq!(self.phase, Phase::Deciding, "one Decide per transaction");
        assert_eq!(shard, self.shards[0], "the coordinator shard decides");
        match result {
            Ok(lsn) => {
                self.phase = Phase::AwaitDecision;
                self.push(Step::AwaitDurable { shard, lsn });
            }
            Err(error @ ShardError::Failed { .. }) => {
                // Perhaps logged before the failure: recovery decides, nothing else is sent.
                self.push(Step::Reply(Err(error)));
                self.phase = Phase::Over;
            }
            // Refused before anything was logged: presumed abort.
            Err(error) => self.abort(Err(error), None),
        }
    }

    fn on_finished(&mut self, shard: u32, result: Result<Lsn, ShardError>) {
        let id = self.id.expect("only prepared txns are finished");
        let commit = match self.phase {
            Phase::Finishing { .. } => true,
            Phase::Aborting => false,
            _ => panic!("unexpected finish feedback in {:?}", self.phase),
        };
        match result {
            Err(ShardError::Busy { .. }) => {
                // Nothing changed on the shard: ask again (its log drains meanwhile).
                self.push(Step::Finish { shard, id, commit });
            }
            Ok(lsn) if commit && lsn > 0 => {
                self.push(Step::AwaitDurable { shard, lsn });
            }
            Ok(_) if commit => {
                let Phase::Finishing { pending } = self.phase else {
                    unreachable!("checked above")
                };
                self.finished_one(pending);
            }
            Ok(_) => {}
            Err(_) if commit => {
                self.keep_decision = true;
                let Phase::Finishing { pending } = self.phase else {
                    unreachable!("checked above")
                };
                self.finished_one(pending);
            }
            // An abort that failed: the shard is failed and recovery presumes abort.
            Err(_) => {}
        }
    }

    /// One more participant's Commit (or release) is acknowledged.
    fn finished_one(&mut self, pending: usize) {
        assert!(pending > 0, "more finishes than participants");
        if pending > 1 {
            self.phase = Phase::Finishing {
                pending: pending - 1,
            };
            return;
        }
        self.phase = Phase::Over;
        if !self.read_only && !self.keep_decision {
            let id = self.id.expect("decided");
            self.push(Step::Forget {
                shard: self.shards[0],
                id,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OpKind, OpOutput, OpResult, TxnFailure, TxnOp};
    use super::*;

    const ID: TxnId = TxnId {
        coordinator: 1,
        number: 40,
    };

    fn part(index: u32, write: bool) -> TxnPart {
        let kind = if write {
            OpKind::Delete
        } else {
            OpKind::Read {
                with_version: false,
            }
        };
        TxnPart {
            assertions: Vec::new(),
            ops: vec![TxnOp {
                index,
                key: vec![b'k', index as u8],
                kind,
            }],
        }
    }

    fn result(index: u32) -> OpResult {
        OpResult {
            index,
            output: OpOutput::Deleted { existed: true },
        }
    }

    fn prepared(shard: u32, index: u32, wait_lsn: Lsn) -> Feedback {
        Feedback::Prepared {
            shard,
            reply: Ok(PrepareReply::Prepared {
                id: ID,
                results: vec![result(index)],
                wait_lsn,
            }),
        }
    }

    fn durable(shard: u32, lsn: Lsn) -> Feedback {
        Feedback::Durable {
            shard,
            lsn,
            result: Ok(()),
        }
    }

    fn busy() -> ShardError {
        ShardError::Busy {
            detail: "full".to_string(),
        }
    }

    /// Shards 1, 4, 9 given out of order; part indexes 2, 0, 1.
    fn three_shards(write: bool) -> Coordinator {
        Coordinator::new(vec![
            (9, part(1, write)),
            (1, part(2, write)),
            (4, part(0, write)),
        ])
    }

    fn prepare_all(coordinator: &mut Coordinator) {
        for (shard, index, lsn) in [(1, 2, 40), (4, 0, 7), (9, 1, 12)] {
            let steps = coordinator.take_steps();
            assert_eq!(steps.len(), 1, "one prepare at a time: {steps:?}");
            let Step::Prepare { shard: to, request } = &steps[0] else {
                panic!("{steps:?}")
            };
            assert_eq!(*to, shard, "ascending shard order");
            assert_eq!(request.id, (shard != 1).then_some(ID), "C allocates the id");
            coordinator.feed(prepared(shard, index, lsn));
        }
    }

    #[test]
    fn a_writing_txn_prepares_in_order_decides_answers_finishes_and_forgets() {
        let mut coordinator = three_shards(true);
        assert_eq!(coordinator.participants(), vec![1, 4, 9]);
        prepare_all(&mut coordinator);
        assert_eq!(coordinator.id(), Some(ID));
        let waits = coordinator.take_steps();
        assert_eq!(
            waits,
            vec![
                Step::AwaitDurable { shard: 1, lsn: 40 },
                Step::AwaitDurable { shard: 4, lsn: 7 },
                Step::AwaitDurable { shard: 9, lsn: 12 },
            ]
        );
        coordinator.feed(durable(9, 12));
        coordinator.feed(durable(1, 40));
        assert!(
            coordinator.take_steps().is_empty(),
            "no decision before every prepare"
        );
        coordinator.feed(durable(4, 7));
        let decide = coordinator.take_steps();
        assert_eq!(
            decide,
            vec![Step::Decide {
                shard: 1,
                id: ID,
                participants: vec![1, 4, 9]
            }]
        );
        coordinator.feed(Feedback::Decided {
            shard: 1,
            result: Ok(41),
        });
        assert_eq!(
            coordinator.take_steps(),
            vec![Step::AwaitDurable { shard: 1, lsn: 41 }]
        );
        coordinator.feed(durable(1, 41));
        let steps = coordinator.take_steps();
        let results = vec![result(0), result(1), result(2)];
        assert_eq!(
            steps,
            vec![
                Step::Reply(Ok(TxnOutcome::Committed { results })),
                Step::Finish {
                    shard: 4,
                    id: ID,
                    commit: true
                },
                Step::Finish {
                    shard: 9,
                    id: ID,
                    commit: true
                },
            ]
        );
        coordinator.feed(Feedback::Finished {
            shard: 9,
            result: Err(busy()),
        });
        let retry = coordinator.take_steps();
        assert_eq!(
            retry,
            vec![Step::Finish {
                shard: 9,
                id: ID,
                commit: true
            }],
            "a busy finish is asked again"
        );
        coordinator.feed(Feedback::Finished {
            shard: 4,
            result: Ok(8),
        });
        coordinator.feed(Feedback::Finished {
            shard: 9,
            result: Ok(13),
        });
        let waits = coordinator.take_steps();
        assert_eq!(waits.len(), 2);
        coordinator.feed(durable(4, 8));
        assert!(
            coordinator.take_steps().is_empty(),
            "no forget before every Commit"
        );
        coordinator.feed(durable(9, 13));
        assert_eq!(
            coordinator.take_steps(),
            vec![Step::Forget { shard: 1, id: ID }]
        );
        assert!(coordinator.is_done());
    }

    #[test]
    fn a_failed_assertion_aborts_the_prepared_and_answers_after_its_barrier() {
        let mut coordinator = three_shards(true);
        coordinator.take_steps();
        coordinator.feed(prepared(1, 2, 40));
        coordinator.take_steps();
        coordinator.feed(prepared(4, 0, 7));
        coordinator.take_steps();
        let failure = TxnFailure::AssertionFailed {
            index: 1,
            detail: "key is absent".to_string(),
        };
        coordinator.feed(Feedback::Prepared {
            shard: 9,
            reply: Ok(PrepareReply::Failed {
                failure: failure.clone(),
                wait_lsn: 5,
            }),
        });
        let steps = coordinator.take_steps();
        assert_eq!(
            steps,
            vec![
                Step::AwaitDurable { shard: 9, lsn: 5 },
                Step::Finish {
                    shard: 1,
                    id: ID,
                    commit: false
                },
                Step::Finish {
                    shard: 4,
                    id: ID,
                    commit: false
                },
            ]
        );
        coordinator.feed(Feedback::Finished {
            shard: 1,
            result: Ok(42),
        });
        coordinator.feed(Feedback::Finished {
            shard: 4,
            result: Ok(8),
        });
        assert!(!coordinator.is_done());
        coordinator.feed(durable(9, 5));
        assert_eq!(
            coordinator.take_steps(),
            vec![Step::Reply(Ok(TxnOutcome::Failed(failure)))]
        );
        assert!(coordinator.is_done());
    }

    #[test]
    fn an_error_at_the_coordinator_shard_answers_at_once() {
        let mut coordinator = three_shards(true);
        coordinator.take_steps();
        coordinator.feed(Feedback::Prepared {
            shard: 1,
            reply: Err(busy()),
        });
        assert_eq!(coordinator.take_steps(), vec![Step::Reply(Err(busy()))]);
        assert!(coordinator.is_done());
        assert_eq!(coordinator.id(), None);
    }

    #[test]
    fn a_refused_decision_aborts_and_a_failed_one_leaves_it_to_recovery() {
        for refused in [true, false] {
            let mut coordinator = three_shards(true);
            prepare_all(&mut coordinator);
            coordinator.take_steps();
            for (shard, lsn) in [(1, 40), (4, 7), (9, 12)] {
                coordinator.feed(durable(shard, lsn));
            }
            coordinator.take_steps();
            let error = if refused {
                busy()
            } else {
                ShardError::Failed {
                    detail: "EIO".to_string(),
                }
            };
            coordinator.feed(Feedback::Decided {
                shard: 1,
                result: Err(error.clone()),
            });
            let steps = coordinator.take_steps();
            assert_eq!(steps[0], Step::Reply(Err(error)));
            if refused {
                assert_eq!(steps.len(), 4, "abort at every participant: {steps:?}");
                assert!(steps[1..]
                    .iter()
                    .all(|s| matches!(s, Step::Finish { commit: false, .. })));
                for shard in [1, 4, 9] {
                    coordinator.feed(Feedback::Finished {
                        shard,
                        result: Ok(0),
                    });
                }
            } else {
                assert_eq!(steps.len(), 1, "nothing may follow an unknown decision");
            }
            assert!(coordinator.is_done());
        }
    }

    #[test]
    fn a_read_only_txn_never_decides_and_releases_everyone() {
        let mut coordinator = three_shards(false);
        for (shard, index) in [(1, 2), (4, 0), (9, 1)] {
            let steps = coordinator.take_steps();
            let Step::Prepare { request, .. } = &steps[0] else {
                panic!("{steps:?}")
            };
            assert!(request.read_only);
            coordinator.feed(prepared(shard, index, 0));
        }
        let steps = coordinator.take_steps();
        assert!(matches!(
            steps[0],
            Step::Reply(Ok(TxnOutcome::Committed { .. }))
        ));
        assert_eq!(steps.len(), 4, "reply and three releases: {steps:?}");
        for shard in [1, 4, 9] {
            coordinator.feed(Feedback::Finished {
                shard,
                result: Ok(0),
            });
        }
        assert!(
            coordinator.take_steps().is_empty(),
            "no forget: nothing was decided"
        );
        assert!(coordinator.is_done());
    }
}
