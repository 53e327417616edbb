//! openraft's type configuration for Placement Center.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::proto::raft::v1::{CommandResult, Proposal};
use crate::runtime::PlacementRuntime;
use crate::state::StateError;

/// A cluster member as Raft knows it (carried in membership log entries).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Human-readable name (etcd's member name).
    pub name: String,
    /// host:port of the member's raft.v1 service.
    pub peer_addr: String,
    /// host:port of the member's client API.
    pub client_addr: String,
    /// The member itself published that it runs (etcd's "started"): set
    /// once, never cleared. A member whose data dir is empty but whom the
    /// cluster knows as started lost its data, and must not vote.
    pub started: bool,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(peer={}, client={})", self.name, self.peer_addr, self.client_addr)
    }
}

/// A log entry's commands, shared rather than copied. An entry is read back
/// several times after it is written: by the state machine and, on the
/// leader, by each follower's replication; with the commands owned, each of
/// those reads and the log write's encoding copied every key and value of the
/// entry (seven copies on the leader, three on a follower).
#[derive(Clone, PartialEq)]
pub struct SharedProposal(Arc<Proposal>);

impl From<Proposal> for SharedProposal {
    fn from(proposal: Proposal) -> Self {
        Self(Arc::new(proposal))
    }
}

impl Deref for SharedProposal {
    type Target = Proposal;

    fn deref(&self) -> &Proposal {
        &self.0
    }
}

impl fmt::Debug for SharedProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedProposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// What applying one command returns to its proposer.
pub type ApplyResult = Result<CommandResult, StateError>;

/// What applying one log entry returns: one result per command of its
/// proposal, in order (none for a blank or membership entry).
pub type EntryResults = Vec<ApplyResult>;

openraft::declare_raft_types!(
    /// Placement Center's Raft types (leader ids as in openraft 0.9's
    /// default: a term and the node that leads it).
    pub TypeConfig:
        D = SharedProposal,
        R = EntryResults,
        NodeId = u64,
        Node = Member,
        AsyncRuntime = PlacementRuntime,
);

/// A Raft node id (etcd's member id).
pub type NodeId = u64;
/// openraft's leader id (a term and its leader) for our types.
pub type LeaderId = openraft::alias::LeaderIdOf<TypeConfig>;
/// openraft's log id for our types.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// openraft's vote for our types.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// openraft's log entry for our types.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// openraft's entry payload for our types.
pub type EntryPayload = openraft::alias::EntryPayloadOf<TypeConfig>;
/// openraft's membership for our types.
pub type Membership = openraft::Membership<NodeId, Member>;
/// openraft's stored membership for our types.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// openraft's snapshot metadata for our types.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot as openraft hands it around: its metadata and its bytes.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
/// A snapshot's bytes (the sealed `StateSnapshot`, see `state_store`).
pub type SnapshotData = Vec<u8>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig, super::state_store::StateMachineStore>;
/// openraft's metrics for our types.
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
/// The receiving end of openraft's metrics (`Raft::metrics`).
pub type MetricsReceiver = openraft::alias::WatchReceiverOf<TypeConfig, RaftMetrics>;

/// What openraft's storage traits fail with.
pub type StorageError = std::io::Error;
