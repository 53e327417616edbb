//! The errors of the Raft layer, as the API sees them.

use crate::state::StateError;

/// Errors of the Raft layer, as the API sees them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No leader is known (election in progress or no quorum).
    #[error("no leader")]
    NoLeader,
    /// The request did not finish in time; a write may or may not have happened.
    #[error("request timed out")]
    Timeout,
    /// This node is shutting down or has stopped; a write may or may not have happened.
    #[error("server stopped")]
    Stopped,
    /// This node's Raft had stopped before the request: nothing was proposed.
    #[error("server stopped")]
    StoppedBeforeProposing,
    /// The state machine refused the command.
    #[error(transparent)]
    Refused(#[from] StateError),
    /// The leader could not be asked; a write may or may not have happened.
    #[error("leader unreachable: {0}")]
    LeaderUnreachable(String),
    /// Only the leader can do this (etcd's ErrNotLeader).
    #[error("not leader")]
    NotLeader,
    /// Leadership can only go to a voter (etcd's ErrBadLeaderTransferee).
    #[error("bad leader transferee")]
    BadTransferee,
    /// The leader refused a member change.
    #[error(transparent)]
    Member(#[from] super::membership::MemberError),
    /// Raft could not start or hit a fatal storage error.
    #[error("raft: {0}")]
    Raft(String),
}
