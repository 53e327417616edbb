//! openraft's type configuration for Placement Center.

use std::fmt;
use std::io::Cursor;

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

/// What applying one command returns to its proposer.
pub type ApplyResult = Result<CommandResult, StateError>;

/// What applying one log entry returns: one result per command of its
/// proposal, in order (none for a blank or membership entry).
pub type EntryResults = Vec<ApplyResult>;

openraft::declare_raft_types!(
    /// Placement Center's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = EntryResults,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = PlacementRuntime,
);

/// A Raft node id (etcd's member id).
pub type NodeId = u64;
/// openraft's log id for our types.
pub type LogId = openraft::LogId<NodeId>;
/// openraft's vote for our types.
pub type Vote = openraft::Vote<NodeId>;
/// openraft's log entry for our types.
pub type Entry = openraft::Entry<TypeConfig>;
/// openraft's membership for our types.
pub type Membership = openraft::Membership<NodeId, Member>;
/// openraft's stored membership for our types.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
/// openraft's snapshot metadata for our types.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// openraft's storage error for our types.
pub type StorageError = openraft::StorageError<NodeId>;
