//! The handle every Raft concern of a node depends on: the openraft `Raft`,
//! this node as its peers know it, clients to them, and the deadlines. It
//! holds no state of its own: it answers from openraft's metrics (leader,
//! term, members) and asks the leader when this node does not lead.

use openraft::async_runtime::WatchReceiver as _;
use std::sync::Arc;
use std::time::Duration;

use super::error::NodeError;
use super::network::{LeaderCall, PeerClients, Sender, PEER_CONNECT_TIMEOUT};
use super::types::{Member, NodeId, Raft, RaftMetrics};
use crate::proto::raft::v1::raft_client::RaftClient;
use crate::runtime;

/// See the module.
#[derive(Clone)]
pub struct RaftHandle {
    /// This node's id.
    pub id: NodeId,
    /// The clock its timers and lease deadlines run on (`runtime::node_clock`).
    pub(super) clock: u64,
    /// The openraft handle.
    pub raft: Raft,
    /// This node as it introduces itself to peers: its id, the cluster id
    /// (derived from the initial membership, equal on every member) and the
    /// cluster token.
    pub(super) sender: Sender,
    /// Clients to peers for forwarding, ReadIndex and probes.
    pub(super) peers: Arc<PeerClients>,
    /// Deadline for client requests.
    pub(super) request_timeout: Duration,
    /// Election timeout range (the longest is the followers' leader lease).
    pub(super) election_timeout: (Duration, Duration),
}

impl RaftHandle {
    /// Whether this node is the leader as far as it knows (not a linearizable
    /// check: a deposed leader may not know yet).
    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.current_leader == Some(self.id) && m.state.is_leader()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Whether Raft has stopped (a fatal storage error, or shutdown).
    pub fn raft_stopped(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_err()
    }

    /// The member record of `id` in the current membership.
    pub fn member(&self, id: NodeId) -> Option<(NodeId, Member)> {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).map(|m| (id, m.clone()))
    }

    /// The member record of the leader this node knows of, unless that is
    /// this node.
    pub(super) fn remote_leader(&self) -> Option<Member> {
        self.leader().filter(|id| *id != self.id).and_then(|id| self.member(id)).map(|(_, leader)| leader)
    }

    /// A client of the peer at `peer_addr` (its raft.v1 address).
    pub(super) fn peer(&self, peer_addr: &str) -> Result<RaftClient<tonic::transport::Channel>, NodeError> {
        self.peers.get(peer_addr, PEER_CONNECT_TIMEOUT).map_err(|e| NodeError::LeaderUnreachable(e.to_string()))
    }

    /// The wait between two tries while there is no leader to answer.
    pub(super) fn pause() -> Duration {
        Duration::from_millis(20)
    }

    /// Waits until this node has applied log index `index`.
    pub(super) async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        if index == 0 {
            return Ok(());
        }
        self.raft
            .wait(Some(self.request_timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map(|_| ())
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => NodeError::Timeout,
                openraft::metrics::WaitError::ShuttingDown => NodeError::Stopped,
            })
    }

    /// Answers with `local` when this node leads (it returns `None` when not),
    /// else asks the leader with `remote`; retries while there is no leader or
    /// it cannot be reached. The caller bounds the wait.
    pub(super) async fn until_leader_answers<'a, T, Local, Remote>(
        &'a self,
        local: impl Fn() -> Local,
        remote: impl Fn(RaftClient<tonic::transport::Channel>, Sender) -> Remote,
    ) -> Result<T, NodeError>
    where
        Local: std::future::Future<Output = Result<Option<T>, NodeError>> + 'a,
        Remote: std::future::Future<Output = LeaderCall<T>>,
    {
        loop {
            if self.raft_stopped() {
                return Err(NodeError::Stopped);
            }
            if let Some(answer) = local().await? {
                return Ok(answer);
            }
            if let Some(leader) = self.remote_leader() {
                let client = self.peer(&leader.peer_addr)?;
                if let LeaderCall::Done(answer) = remote(client, self.sender.clone()).await {
                    return Ok(answer);
                }
            }
            runtime::sleep(Self::pause()).await;
        }
    }

    /// [`RaftHandle::until_leader_answers`] within the request timeout.
    pub(super) async fn ask_leader_in_time<'a, T, Local, Remote>(
        &'a self,
        local: impl Fn() -> Local,
        remote: impl Fn(RaftClient<tonic::transport::Channel>, Sender) -> Remote,
    ) -> Result<T, NodeError>
    where
        Local: std::future::Future<Output = Result<Option<T>, NodeError>> + 'a,
        Remote: std::future::Future<Output = LeaderCall<T>>,
    {
        runtime::timeout(self.request_timeout, self.until_leader_answers(local, remote))
            .await
            .unwrap_or(Err(NodeError::Timeout))
    }
}

/// How long ago a quorum last acknowledged the node whose Raft runs on
/// `clock` as leader, from its metrics (`None` unless it leads and has heard
/// from one).
pub(super) fn since_quorum_ack(clock: u64, metrics: &RaftMetrics) -> Option<Duration> {
    metrics.last_quorum_acked.as_ref().map(|acked| crate::runtime::raft_now(clock) - **acked)
}

/// The last log index the leader knows `id` holds, from a leader's metrics
/// (`None` on a follower, or before `id` first answered).
pub(super) fn matched_index(metrics: &RaftMetrics, id: NodeId) -> Option<u64> {
    metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index)
}
