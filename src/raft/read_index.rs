//! ReadIndex batching. Confirming leadership costs the leader one round of
//! messages to a quorum; under load, many reads (and lease renewals, and
//! heartbeats of brokers) want it at once. Callers that arrive while a round
//! is in flight wait for the next round, which starts after they arrived, so
//! the index it returns was committed no earlier than their arrival and the
//! leadership it confirms was held after it: exactly what each of them
//! alone would have got. One round then serves them all.
//!
//! Followers batch the same way: reads that arrive while this follower's
//! ReadIndex call to the leader is in flight share the next call, which is
//! sent after they arrived. One call per read cost a gRPC exchange on the
//! follower and on the leader for each of two reads in three.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{LinearizableReadError, RaftError};

use super::batch::{take_fitting, Queue};
use super::error::NodeError;
use super::network::{leader_call, LeaderCall, Sender};
use super::types::{NodeId, Raft};
use crate::proto::raft::v1 as pb;
use crate::proto::raft::v1::raft_client::RaftClient;
use crate::runtime;

/// What one round answers: the read index, `None` when this node does not
/// lead (or could not confirm it), `Err` when Raft has stopped.
type Answer = Result<Option<u64>, ()>;

/// Callers waiting for the next round (one task runs rounds).
type ReadIndexBatch = Queue<tokio::sync::oneshot::Sender<Answer>>;

/// Reads on this follower waiting for the next ReadIndex call to the leader.
type RemoteReadQueue = Queue<RemoteRead>;

struct RemoteRead {
    /// The leader when the read was queued, and a client of it.
    leader: Option<NodeId>,
    client: RaftClient<tonic::transport::Channel>,
    sender: Sender,
    reply: tokio::sync::oneshot::Sender<LeaderCall<u64>>,
}

/// Finds read indexes, batched: as the leader by a quorum round, as a
/// follower by a call to the leader (see the module).
pub(super) struct ReadIndexReader {
    raft: Raft,
    request_timeout: Duration,
    /// Callers of `leader_read_index` waiting for a round.
    rounds: Arc<ReadIndexBatch>,
    /// Reads waiting for a ReadIndex call to the leader.
    remote: Arc<RemoteReadQueue>,
}

impl ReadIndexReader {
    pub(super) fn new(raft: Raft, request_timeout: Duration) -> Self {
        Self { raft, request_timeout, rounds: Default::default(), remote: Default::default() }
    }

    /// The read index if this node is the leader and confirms it with a
    /// quorum; `None` if it is not the leader. Batched (see the module).
    pub(super) async fn leader_read_index(&self) -> Result<Option<u64>, NodeError> {
        if runtime::buggify::buggify("read-index-not-now") {
            return Ok(None);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        match self.rounds.push(tx, 1) {
            Ok(true) => runtime::spawn_detached("read-index-rounds", rounds(self.raft.clone(), self.rounds.clone())),
            Ok(false) => {}
            Err(_) => return Err(NodeError::Refused(crate::state::StateError::TooManyRequests)),
        }
        match rx.await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(())) | Err(_) => Err(NodeError::Stopped),
        }
    }

    /// The read index of `leader`, asked through `client` in one call for
    /// every read of this follower that waits for it (see the module).
    pub(super) async fn remote_read_index(
        &self,
        leader: Option<NodeId>,
        client: RaftClient<tonic::transport::Channel>,
        sender: Sender,
    ) -> LeaderCall<u64> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let read = RemoteRead { leader, client, sender, reply };
        match self.remote.push(read, 1) {
            Ok(true) => {
                runtime::spawn_detached("remote-read-index", remote_calls(self.remote.clone(), self.request_timeout))
            }
            Ok(false) => {}
            Err(_) => return LeaderCall::Failed(tonic::Status::resource_exhausted("etcdserver: too many requests")),
        }
        rx.await.unwrap_or_else(|_| LeaderCall::Failed(tonic::Status::unavailable("server stopped")))
    }
}

/// Calls the leader while reads wait; each call answers the waiting reads
/// that were queued for the same leader.
async fn remote_calls(queue: Arc<RemoteReadQueue>, timeout: Duration) {
    let same_leader = |waiting: &mut std::collections::VecDeque<RemoteRead>| {
        let leader = waiting.front().map(|r| r.leader);
        take_fitting(waiting, usize::MAX, usize::MAX, |_| 0, |r| Some(r.leader) == leader)
    };
    while let Some(reads) = queue.next_batch(same_leader) {
        let mut client = reads[0].client.clone();
        let call = client.read_index(reads[0].sender.request(pb::ReadIndexRequest {}));
        let answer = match runtime::timeout(timeout, call).await {
            Ok(result) => leader_call(result).map(|r| r.index),
            Err(_) => LeaderCall::Failed(tonic::Status::deadline_exceeded("ReadIndex call to the leader timed out")),
        };
        for read in reads {
            let _ = read.reply.send(answer.clone());
        }
    }
}

/// Runs rounds while callers wait; each round serves everyone who arrived
/// before it started.
async fn rounds(raft: Raft, batch: Arc<ReadIndexBatch>) {
    while let Some(callers) = batch.next_batch(|waiting| waiting.drain(..).collect()) {
        let answer = match raft.get_read_log_id(openraft::ReadPolicy::ReadIndex).await {
            Ok((read_log_id, _)) => Ok(Some(read_log_id.index())),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => Ok(None),
            // Leadership could not be confirmed right now: let the callers retry.
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                runtime::coverage::reached("read-index-without-quorum");
                Ok(None)
            }
            Err(RaftError::Fatal(_)) => Err(()),
        };
        for caller in callers {
            let _ = caller.send(answer);
        }
    }
}
