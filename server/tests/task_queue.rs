//! The task-queue scenario end to end against a real jubed, across kill -9 and restart.
//!
//! Strategy: a pool of `TASKS` tasks (`task-N` = "open") and `AGENTS` concurrent agents. An agent
//! walks the pool from its own starting point; for each task it reads as "open" it sends one
//! assert-guarded transaction: assert `task-N` == "open", put `task-N` = its name, add 1 to its
//! counter `count-A` (task and counter keys spread over both shards, so about half the claims are
//! cross-shard two-phase commits). Each agent remembers the claims the server acknowledged, and
//! the claim in flight when the server died (its outcome unknown).
//!
//! Crash harness: in each of `CRASH_ROUNDS` rounds the agents run until the server is killed -9
//! at a random moment; after the restart a checker compares the state with the reference model:
//! - no task is claimed twice: each claimed task names exactly one agent, and no two agents'
//!   acknowledged claims share a task;
//! - no acknowledged claim is lost: every acknowledged claim is still the task's value;
//! - nothing is invented: a claimed task was acknowledged to its agent or was that agent's claim
//!   in flight at a crash;
//! - atomicity across shards and crashes: each agent's counter equals the number of tasks that
//!   name it (the put and the add were one transaction);
//! - none is lost: every task is "open" or claimed. A last round without a crash claims the rest,
//!   and then no task is open.
//!
//! The seed is printed; a failure replays the same agent orders and kill times with it (the
//! interleaving itself is up to the scheduler).

mod common;

use common::Server;
use jube_protocol::{Client, ClientOptions, Status, Txn, TxnOutcome};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TASKS: usize = 1000;
const AGENTS: usize = 6;
const CRASH_ROUNDS: usize = 3;

fn task(i: usize) -> Vec<u8> {
    format!("task-{i}").into_bytes()
}

fn agent_name(agent: usize) -> Vec<u8> {
    format!("agent-{agent}").into_bytes()
}

fn counter(agent: usize) -> Vec<u8> {
    format!("count-{agent}").into_bytes()
}

/// What one agent knows after a round.
#[derive(Default)]
struct AgentLog {
    acked: BTreeSet<usize>,
    /// The claim whose answer never came (the server died).
    in_doubt: Option<usize>,
    conflicts: u64,
}

fn connect(addr: std::net::SocketAddr) -> Option<Client> {
    let options = ClientOptions {
        io_timeout: Some(Duration::from_secs(20)),
        ..ClientOptions::default()
    };
    Client::connect_with(addr, &options).ok()
}

/// Claims open tasks until it has walked the pool once or the server goes away.
fn run_agent(addr: std::net::SocketAddr, agent: usize, seed: u64) -> AgentLog {
    let mut log = AgentLog::default();
    let Some(mut client) = connect(addr) else {
        return log;
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let start = rng.gen_range(0..TASKS);
    for step in 0..TASKS {
        let i = (start + step) % TASKS;
        match client.get(&task(i)) {
            Ok(Some(value)) if value == b"open" => {}
            Ok(_) => continue,
            Err(_) => return log,
        }
        let claim = Txn::new()
            .assert_value(task(i), "open")
            .put(task(i), agent_name(agent))
            .add(counter(agent), 1);
        match client.txn(claim) {
            Ok(TxnOutcome::Committed(_)) => {
                log.acked.insert(i);
            }
            Ok(TxnOutcome::AssertionFailed { index: 0, .. }) => log.conflicts += 1,
            Ok(other) => panic!("agent {agent}: unexpected outcome {other:?}"),
            Err(error) if error.status() == Some(Status::Busy) => log.conflicts += 1,
            Err(_) => {
                // The server died with this claim in flight: its outcome is unknown.
                log.in_doubt = Some(i);
                return log;
            }
        }
    }
    log
}

/// Runs every agent; if `kill_after` is set, kills the server -9 then. Returns the agents' logs.
fn round(server: &mut Server, seed: u64, kill_after: Option<Duration>) -> Vec<AgentLog> {
    let addr = server.addr;
    let agents: Vec<_> = (0..AGENTS)
        .map(|agent| {
            let seed = seed.wrapping_mul(1000).wrapping_add(agent as u64);
            std::thread::spawn(move || run_agent(addr, agent, seed))
        })
        .collect();
    if let Some(delay) = kill_after {
        std::thread::sleep(delay);
        server.kill9();
    }
    agents
        .into_iter()
        .map(|agent| agent.join().expect("agent"))
        .collect()
}

/// The reference model: what each agent was told, and what may have happened in doubt.
#[derive(Default)]
struct Model {
    acked: BTreeMap<usize, usize>,
    in_doubt: BTreeSet<(usize, usize)>,
}

impl Model {
    fn absorb(&mut self, logs: Vec<AgentLog>) -> u64 {
        let mut conflicts = 0;
        for (agent, log) in logs.into_iter().enumerate() {
            for task in log.acked {
                let previous = self.acked.insert(task, agent);
                assert!(
                    previous.is_none(),
                    "task {task} acknowledged to agents {previous:?} and {agent}"
                );
            }
            if let Some(task) = log.in_doubt {
                self.in_doubt.insert((task, agent));
            }
            conflicts += log.conflicts;
        }
        conflicts
    }

    /// Checks the server's state (see the module doc); returns the count of open tasks.
    fn check(&mut self, client: &mut Client) -> usize {
        let mut open = 0;
        let mut named = [0i64; AGENTS];
        for i in 0..TASKS {
            let value = client
                .get(&task(i))
                .expect("get")
                .expect("a task is never lost");
            if value == b"open" {
                assert!(
                    !self.acked.contains_key(&i),
                    "acknowledged claim of task {i} lost"
                );
                open += 1;
                continue;
            }
            let agent = (0..AGENTS)
                .find(|agent| value == agent_name(*agent))
                .unwrap_or_else(|| panic!("task {i} holds {value:?}"));
            named[agent] += 1;
            match self.acked.get(&i) {
                Some(owner) => assert_eq!(*owner, agent, "task {i} claimed twice"),
                None => {
                    assert!(
                        self.in_doubt.contains(&(i, agent)),
                        "task {i} names agent {agent}, who was never told it claimed it"
                    );
                    // Recovery kept the claim that was in flight: from now on it is known.
                    self.acked.insert(i, agent);
                }
            }
        }
        for (agent, count) in named.iter().enumerate() {
            let stored = client.get(&counter(agent)).expect("get").map_or(0, |v| {
                std::str::from_utf8(&v).unwrap().parse::<i64>().unwrap()
            });
            assert_eq!(
                stored, *count,
                "agent {agent}: counter and claimed tasks disagree (half a transaction)"
            );
        }
        self.in_doubt.clear();
        open
    }
}

#[test]
fn agents_never_claim_a_task_twice_nor_lose_one_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), &[]);
    let mut fill = Txn::new();
    for i in 0..TASKS {
        fill = fill.put(task(i), "open");
    }
    assert!(matches!(
        server.client().txn(fill),
        Ok(TxnOutcome::Committed(_))
    ));

    let seed: u64 = rand::thread_rng().gen();
    eprintln!("task queue seed {seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut conflicts = 0;
    for crash in 0..CRASH_ROUNDS {
        let kill_after = Duration::from_millis(rng.gen_range(50..400));
        conflicts += model.absorb(round(
            &mut server,
            seed.wrapping_add(crash as u64),
            Some(kill_after),
        ));
        server = Server::start(dir.path(), &[]);
        let open = model.check(&mut server.client());
        eprintln!(
            "after crash {crash}: {} claimed, {open} open",
            model.acked.len()
        );
    }
    // Finish the pool without a crash: every task ends claimed exactly once.
    for attempt in 0..5 {
        conflicts += model.absorb(round(&mut server, seed.wrapping_add(100 + attempt), None));
        if model.check(&mut server.client()) == 0 {
            break;
        }
    }
    assert_eq!(model.check(&mut server.client()), 0, "tasks left open");
    assert_eq!(model.acked.len(), TASKS);
    eprintln!("conflicts {conflicts}");
}
