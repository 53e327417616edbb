//! Consumer groups committing offsets through the client library, under the
//! faults. Each group has two consumers; now and then one of them
//! rebalances (takes the next generation from the group's coordinator, here
//! a counter), which makes the other a zombie until it rebalances in turn:
//! its commits must then be refused. Every commit is fenced (generation > 0)
//! and writes values no other commit writes, so a shard's offsets can be
//! checked as a register (the linearizability checker) and the generations
//! by the fence checker (`checker::offsets`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::client::{Client, ClientError};
use placement_center::proto::placement::v1::{CommitOffsetsRequest, ShardOffset};
use placement_center::runtime::{self, Instant};
use rand::Rng;

use crate::checker::offsets::{Commit, Ended};
use crate::history::{Call, Op, Outcome};

/// Consumer groups.
pub const GROUPS: u64 = 2;
/// Consumers per group.
const CONSUMERS: u64 = 2;
/// Shards of the one topic each commit covers.
const SHARDS: u32 = 2;
/// The broker cluster the groups belong to.
const CLUSTER: &str = "sim";
/// The topic.
const TOPIC: &str = "t";

/// What the consumers did: reads and writes per shard (as registers), and
/// every commit with its generation.
#[derive(Clone, Default)]
pub struct Recorded {
    /// Per shard key (`<group>/<topic>/<shard>`): commits as puts, fetches as reads.
    pub ops: Arc<Mutex<Vec<Op>>>,
    /// Every commit.
    pub commits: Arc<Mutex<Vec<Commit>>>,
}

/// Starts every group's consumers, each on a simulated node of its own,
/// until `until`.
pub fn start(
    addrs: &[String],
    start: Instant,
    until: Instant,
    recorded: &Recorded,
) -> Vec<madsim::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for group in 0..GROUPS {
        let coordinator = Arc::new(AtomicI64::new(1));
        for i in 0..CONSUMERS {
            let id = group * CONSUMERS + i + 1;
            let node = crate::hosts::Host::Consumer(id).node(format!("consumer{id}"));
            let consumer = Consumer {
                id,
                group: format!("g{group}"),
                coordinator: coordinator.clone(),
                client: crate::brokers::client(addrs),
                start,
                recorded: recorded.clone(),
            };
            tasks.push(node.spawn(consumer.run(until)));
        }
    }
    tasks
}

struct Consumer {
    id: u64,
    group: String,
    /// The group's generations, as its coordinator hands them out.
    coordinator: Arc<AtomicI64>,
    client: Arc<Client>,
    start: Instant,
    recorded: Recorded,
}

impl Consumer {
    async fn run(self, until: Instant) {
        let mut generation = self.coordinator.load(Ordering::Relaxed);
        let mut next = 0;
        while runtime::now() < until {
            match runtime::rng().gen_range(0..10) {
                0 => generation = self.coordinator.fetch_add(1, Ordering::Relaxed) + 1,
                1 | 2 => self.fetch().await,
                _ => {
                    next += 1;
                    self.commit(generation, self.id as i64 * 1_000_000 + next).await;
                }
            }
            runtime::sleep(Duration::from_millis(runtime::rng().gen_range(20..200))).await;
        }
    }

    fn key(&self, shard: u32) -> String {
        format!("{}/{TOPIC}/{shard}", self.group)
    }

    /// Commits `value` on every shard (the client retries it only when it
    /// certainly did not reach a member).
    async fn commit(&self, generation: i64, value: i64) {
        let offsets = (0..SHARDS)
            .map(|shard| ShardOffset { topic: TOPIC.into(), shard, offset: value, metadata: String::new() })
            .collect();
        let req = CommitOffsetsRequest { cluster: CLUSTER.into(), group: self.group.clone(), generation, offsets };
        let invoked = runtime::now();
        let call = self.client.commit_offsets(req);
        let result = runtime::timeout(crate::caller_deadline(Duration::from_secs(3)), call).await;
        let completed = runtime::now();
        let (outcome, ended) = match result {
            Ok(Ok(resp)) => (Outcome::Written, Ended::Acked(resp.generation)),
            Ok(Err(ClientError::Status { status, .. })) if definite(status.code()) => {
                let stale = status.code() == tonic::Code::FailedPrecondition;
                match status.message().rsplit_once("the group is at generation ").filter(|_| stale) {
                    Some((_, current)) => (Outcome::Failed, Ended::Stale(current.parse().unwrap_or(-1))),
                    None => (Outcome::Failed, Ended::Refused(status.message().to_string())),
                }
            }
            _ => (Outcome::Unknown, Ended::Unknown),
        };
        let (invoked, completed) = (invoked - self.start, completed - self.start);
        let mut ops = self.recorded.ops.lock().unwrap_or_else(|e| e.into_inner());
        for shard in 0..SHARDS {
            ops.push(Op {
                client: self.id as u32,
                key: self.key(shard),
                call: Call::Put(value.to_string()),
                invoked,
                completed,
                outcome: outcome.clone(),
            });
        }
        let commit = Commit { consumer: self.id, group: self.group.clone(), generation, invoked, completed, ended };
        self.recorded.commits.lock().unwrap_or_else(|e| e.into_inner()).push(commit);
    }

    /// Fetches the group's offsets (linearizable) and records each shard's.
    async fn fetch(&self) {
        let invoked = runtime::now();
        let call = self.client.fetch_offsets(CLUSTER, &self.group, TOPIC);
        let Ok(Ok(resp)) = runtime::timeout(crate::caller_deadline(Duration::from_secs(3)), call).await else { return };
        let completed = runtime::now();
        let mut ops = self.recorded.ops.lock().unwrap_or_else(|e| e.into_inner());
        for shard in 0..SHARDS {
            let seen = resp.offsets.iter().find(|o| o.shard == shard).map(|o| o.offset.to_string());
            ops.push(Op {
                client: self.id as u32,
                key: self.key(shard),
                call: Call::Get,
                invoked: invoked - self.start,
                completed: completed - self.start,
                outcome: Outcome::Read(seen),
            });
        }
    }
}

/// Whether a refusal with `code` says the commit did not happen.
fn definite(code: tonic::Code) -> bool {
    !matches!(
        code,
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}
