//! Consumer offsets: the committer that turns the commits arriving at this
//! member into as few Raft entries as it can, and the fetch.
//!
//! Many groups commit every second, each a few offsets. One task per member
//! takes every commit waiting (up to a batch's limits), reads the groups'
//! generations at once (linearizably), plans the batch ([`offsets::plan`]:
//! each key once, with its last value; stale generations refused) and
//! proposes it as one transaction, conditioned on the generations it relied
//! on. While a batch is in the log, the next one gathers: under load a Raft
//! entry carries hundreds of commits. If another member raised a group's
//! generation meanwhile the condition fails and the batch is planned again.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::context::{ApiContext, Caller};
use super::topics::{mod_is, put};
use super::ApiError;
use crate::placement::offsets::{self, GroupId, GroupRecord, ReadGeneration};
use crate::placement::PlacementError;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{RangeRequest, RequestOp, TxnRequest};
use crate::proto::placement::v1::{CommitOffsetsRequest, FetchOffsetsRequest};
use crate::proto::raft::v1::command;
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{Access, KvState, StateError, MAX_TXN_OPS};

/// Commits waiting for the committer at most; more are refused as "too
/// many requests" (the client backs off).
const QUEUE: usize = 4096;
/// Commits in one batch at most.
const MAX_BATCH: usize = 512;
/// Groups whose generation one batch relies on at most (each is a compare).
const MAX_FENCED_GROUPS: usize = MAX_TXN_OPS;
/// Offsets in one batch at most: nested transactions of `MAX_TXN_OPS` puts.
const MAX_BATCH_OFFSETS: usize = (MAX_TXN_OPS - 1) * MAX_TXN_OPS;
/// How often a batch is planned again when another member changed a
/// group's generation under it.
const ATTEMPTS: u32 = 3;

/// What a commit gets: the revision it was written at and the group's
/// generation after it, or the status to answer (one error may answer a
/// whole batch).
pub type Committed = Result<(i64, i64), tonic::Status>;

/// A commit waiting for its batch.
struct Waiting {
    caller: Caller,
    req: CommitOffsetsRequest,
    /// What the request weighs in the batch's transaction (bytes).
    bytes: usize,
    reply: oneshot::Sender<Committed>,
}

/// This member's offset committer.
pub struct OffsetCommitter {
    queue: mpsc::Sender<Waiting>,
}

impl OffsetCommitter {
    /// Starts the committer's task on `ctx`; it ends with the service or at
    /// shutdown.
    pub fn start(ctx: Arc<ApiContext>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        runtime::spawn_detached("offset-committer", run(ctx, rx));
        Self { queue }
    }

    /// Commits `req` (validated) for `caller` in the next batch.
    pub async fn commit(&self, caller: Caller, req: CommitOffsetsRequest) -> Committed {
        let (reply, answer) = oneshot::channel();
        let bytes = weight(&req);
        let waiting = Waiting { caller, req, bytes, reply };
        if self.queue.try_send(waiting).is_err() {
            return Err(ApiError::from(StateError::TooManyRequests).into());
        }
        answer.await.unwrap_or_else(|_| Err(ApiError::Node(crate::raft::NodeError::Stopped).into()))
    }
}

/// About how many bytes `req` adds to its batch's transaction: a put per
/// offset (its key, its JSON value and their framing) and the group's.
fn weight(req: &CommitOffsetsRequest) -> usize {
    // The group's key twice: its compare and its put.
    let group = 2 * (offsets::GROUPS_PREFIX.len() + req.cluster.len() + req.group.len()) + 64;
    let per_offset = offsets::OFFSETS_PREFIX.len() + req.cluster.len() + req.group.len() + 96;
    group + req.offsets.iter().map(|o| per_offset + o.topic.len() + o.metadata.len()).sum::<usize>()
}

/// The committer's loop: a batch of whatever waits, again and again.
async fn run(ctx: Arc<ApiContext>, mut rx: mpsc::Receiver<Waiting>) {
    let mut shutdown = ctx.shutdown.clone();
    let budget = ctx.max_request_bytes;
    let mut held: Option<Waiting> = None;
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => tokio::select! {
                biased;
                _ = shutdown.wait() => return,
                next = rx.recv() => match next {
                    Some(first) => first,
                    None => return,
                },
            },
        };
        let (mut bytes, mut count) = (first.bytes, first.req.offsets.len());
        let mut fenced: std::collections::BTreeSet<GroupId> = std::collections::BTreeSet::new();
        if first.req.generation > 0 {
            fenced.insert((first.req.cluster.clone(), first.req.group.clone()));
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Ok(next) = rx.try_recv() else { break };
            let id = (next.req.cluster.clone(), next.req.group.clone());
            let new_fence = next.req.generation > 0 && !fenced.contains(&id);
            if bytes + next.bytes > budget
                || count + next.req.offsets.len() > MAX_BATCH_OFFSETS
                || (new_fence && fenced.len() >= MAX_FENCED_GROUPS)
            {
                held = Some(next);
                break;
            }
            bytes += next.bytes;
            count += next.req.offsets.len();
            if new_fence {
                fenced.insert(id);
            }
            batch.push(next);
        }
        commit_batch(&ctx, batch).await;
    }
}

/// Commits one batch and answers each of its callers.
async fn commit_batch(ctx: &ApiContext, batch: Vec<Waiting>) {
    let mut batch: Vec<Waiting> = batch.into_iter().filter(|w| !w.reply.is_closed()).collect();
    for attempt in 1..=ATTEMPTS {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = ctx.node.read_barrier().await {
            let e = tonic::Status::from(ApiError::from(e));
            for w in batch {
                let _ = w.reply.send(Err(e.clone()));
            }
            return;
        }
        // One view of the state: permissions, the auth revision the write
        // carries, and the generations the plan relies on.
        let (auth_revision, refused, read) = {
            let state = read_state(ctx.node.state());
            let mut refused = Vec::new();
            let mut allowed = Vec::with_capacity(batch.len());
            for w in batch.drain(..) {
                match permitted(&state, &w) {
                    Ok(()) => allowed.push(w),
                    Err(e) => refused.push((w, e)),
                }
            }
            batch = allowed;
            let read: BTreeMap<GroupId, ReadGeneration> = batch
                .iter()
                .map(|w| (w.req.cluster.clone(), w.req.group.clone()))
                .map(|id| {
                    let generation = generation(&state, &id.0, &id.1);
                    (id, generation)
                })
                .collect();
            (state.auth().revision(), refused, read)
        };
        for (w, e) in refused {
            let _ = w.reply.send(Err(e.into()));
        }
        let plan = offsets::plan(&batch.iter().map(|w| &w.req).collect::<Vec<_>>(), &read);
        if plan.writes.is_empty() {
            answer(batch, plan.outcomes, 0);
            return;
        }
        let txn = transaction(&plan);
        match ctx.propose_checked(auth_revision, command::Request::Txn(txn)).await {
            Ok(applied) => {
                let succeeded = matches!(applied.response, Some(Applied::Txn(ref t)) if t.succeeded);
                if succeeded {
                    answer(batch, plan.outcomes, applied.revision);
                    return;
                }
                // A group's generation changed under the plan: plan again.
                if attempt == ATTEMPTS {
                    for w in batch {
                        let raced = PlacementError::GenerationRaced { cluster: w.req.cluster, group: w.req.group };
                        let _ = w.reply.send(Err(ApiError::from(raced).into()));
                    }
                    return;
                }
            }
            Err(e) => {
                let e = tonic::Status::from(e);
                for w in batch {
                    let _ = w.reply.send(Err(e.clone()));
                }
                return;
            }
        }
    }
}

/// Answers the batch's callers with their outcomes, the accepted ones at
/// `revision`.
fn answer(batch: Vec<Waiting>, outcomes: Vec<Result<i64, PlacementError>>, revision: i64) {
    for (w, outcome) in batch.into_iter().zip(outcomes) {
        let _ = w.reply.send(outcome.map(|generation| (revision, generation)).map_err(|e| ApiError::from(e).into()));
    }
}

/// Whether the caller may write the group's offsets and generation.
fn permitted(state: &KvState, w: &Waiting) -> Result<(), ApiError> {
    let auth = state.auth();
    let (start, end) = offsets::offsets_range(&w.req.cluster, &w.req.group, "");
    auth.check(w.caller.user(), Access::Write, &start, &end).map_err(StateError::from)?;
    let group = offsets::group_key(&w.req.cluster, &w.req.group);
    auth.check(w.caller.user(), Access::Write, &group, &[]).map_err(StateError::from)?;
    Ok(())
}

/// `group`'s generation in `state` (an unreadable record, written by hand,
/// counts as none, logged).
fn generation(state: &KvState, cluster: &str, group: &str) -> ReadGeneration {
    let Some(kv) = super::placement::get(state, &offsets::group_key(cluster, group)) else {
        return ReadGeneration::default();
    };
    let generation = GroupRecord::decode(&kv.value).map(|g| g.generation).unwrap_or_else(|cause| {
        tracing::warn!(cluster, group, %cause, "unreadable group record (written by hand?): generation 0");
        0
    });
    ReadGeneration { generation, mod_revision: kv.mod_revision }
}

/// The plan as one transaction: its conditions as compares of the groups'
/// mod revisions, its writes as puts in nested transactions of at most
/// `MAX_TXN_OPS` each.
fn transaction(plan: &offsets::Plan) -> TxnRequest {
    let compare = plan.conditions.iter().map(|(key, mod_revision)| mod_is(key, *mod_revision)).collect();
    let puts: Vec<RequestOp> = plan.writes.iter().map(|(key, value)| put(key, value.clone())).collect();
    let success = puts
        .chunks(MAX_TXN_OPS)
        .map(|chunk| RequestOp {
            request: Some(Op::RequestTxn(TxnRequest { success: chunk.to_vec(), ..Default::default() })),
        })
        .collect();
    TxnRequest { compare, success, failure: Vec::new() }
}

/// A group's offsets (of one topic, or all) and generation in `state`, with
/// the revision read at.
pub fn fetch(state: &KvState, req: &FetchOffsetsRequest) -> (i64, Vec<crate::proto::placement::v1::ShardOffset>, i64) {
    let (key, range_end) = offsets::offsets_range(&req.cluster, &req.group, &req.topic);
    let found = state.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs).unwrap_or_default();
    let mut offsets: Vec<_> = found
        .iter()
        .filter_map(|kv| {
            offsets::decode_offset(kv, &req.cluster, &req.group)
                .inspect_err(|cause| {
                    tracing::warn!(key = %String::from_utf8_lossy(&kv.key), %cause, "skipping an unreadable offset");
                })
                .ok()
        })
        .collect();
    offsets.sort_by(|a, b| (&a.topic, a.shard).cmp(&(&b.topic, b.shard)));
    (generation(state, &req.cluster, &req.group).generation, offsets, state.revision())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::placement::v1::ShardOffset;

    #[test]
    fn a_plan_of_many_writes_is_one_transaction_within_the_txn_limits() {
        let offsets: Vec<ShardOffset> = (0..1000)
            .map(|shard| ShardOffset { topic: "t".into(), shard, offset: 1, metadata: String::new() })
            .collect();
        let req = CommitOffsetsRequest { cluster: "mq".into(), group: "g".into(), generation: 2, offsets };
        let plan = offsets::plan(&[&req], &BTreeMap::new());
        let txn = transaction(&plan);
        assert_eq!(txn.compare.len(), 1);
        assert!(txn.success.len() <= MAX_TXN_OPS);
        let mut puts = 0;
        for op in &txn.success {
            let Some(Op::RequestTxn(inner)) = &op.request else { panic!("not a nested txn: {op:?}") };
            assert!(inner.success.len() <= MAX_TXN_OPS);
            puts += inner.success.len();
        }
        assert_eq!(puts, 1001, "1000 offsets and the group's generation");
        let mut state = KvState::new();
        let command = crate::proto::raft::v1::Command {
            auth_revision: None,
            alarm_disarms: None,
            request: Some(command::Request::Txn(txn)),
        };
        KvState::validate(&command).unwrap();
        state.apply(&command).unwrap();
        let fetched =
            fetch(&state, &FetchOffsetsRequest { cluster: "mq".into(), group: "g".into(), topic: "t".into() });
        assert_eq!((fetched.0, fetched.1.len()), (2, 1000));
        assert_eq!(fetched.1[999].shard, 999, "sorted by shard");
    }

    #[test]
    fn a_commits_weight_covers_what_it_adds_to_the_transaction() {
        let long = |c: char| c.to_string().repeat(128);
        for (name, metadata, count) in [("g".to_string(), String::new(), 1u32), (long('n'), "m".repeat(4096), 300)] {
            let offsets = (0..count)
                .map(|shard| ShardOffset {
                    topic: name.clone(),
                    shard: u32::MAX - shard,
                    offset: i64::MAX,
                    metadata: metadata.clone(),
                })
                .collect();
            let req =
                CommitOffsetsRequest { cluster: name.clone(), group: name.clone(), generation: i64::MAX, offsets };
            let txn = transaction(&offsets::plan(&[&req], &BTreeMap::new()));
            let command = crate::proto::raft::v1::Command {
                auth_revision: Some(u64::MAX),
                alarm_disarms: None,
                request: Some(command::Request::Txn(txn)),
            };
            let proposed = prost::Message::encoded_len(&command);
            assert!(proposed <= weight(&req), "{proposed} bytes proposed for a weight of {}", weight(&req));
        }
    }
}
