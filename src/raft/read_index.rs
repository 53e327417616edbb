//! ReadIndex batching. Confirming leadership costs the leader one round of
//! messages to a quorum; under load, many reads (and lease renewals, and
//! heartbeats of brokers) want it at once. Callers that arrive while a round
//! is in flight wait for the next round, which starts after they arrived, so
//! the index it returns was committed no earlier than their arrival and the
//! leadership it confirms was held after it: exactly what each of them
//! alone would have got. One round then serves them all.

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};

use super::node::{NodeError, RaftNode};
use super::types::Raft;
use crate::runtime;

/// What one round answers: the read index, `None` when this node does not
/// lead (or could not confirm it), `Err` when Raft has stopped.
type Answer = Result<Option<u64>, ()>;

/// Callers waiting for the next round (one task runs rounds).
pub(super) type ReadIndexBatch = super::batch::Queue<tokio::sync::oneshot::Sender<Answer>>;

impl RaftNode {
    /// The read index if this node is the leader and confirms it with a
    /// quorum; `None` if it is not the leader. Batched (see the module).
    pub async fn leader_read_index(&self) -> Result<Option<u64>, NodeError> {
        if self.transferring() {
            return Ok(None);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.read_index.push(tx, 1) {
            runtime::spawn_detached("read-index-rounds", rounds(self.raft.clone(), self.read_index.clone()));
        }
        match rx.await {
            Ok(Ok(index)) => Ok(index),
            Ok(Err(())) | Err(_) => Err(NodeError::Stopped),
        }
    }
}

/// Runs rounds while callers wait; each round serves everyone who arrived
/// before it started.
async fn rounds(raft: Raft, batch: Arc<ReadIndexBatch>) {
    while let Some(callers) = batch.next_batch(|waiting| waiting.drain(..).collect()) {
        let answer = match raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(Some(read_log_id.map_or(0, |id| id.index))),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_))) => Ok(None),
            // Leadership could not be confirmed right now: let the callers retry.
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => Ok(None),
            Err(RaftError::Fatal(_)) => Err(()),
        };
        for caller in callers {
            let _ = caller.send(answer);
        }
    }
}
