//! The node the API and the raft.v1 service use: it builds each Raft
//! concern of a member and is the one place they meet. Each concern owns
//! its state and depends on the small `RaftHandle` (openraft's `Raft`, peer
//! clients, deadlines), not on the node:
//!
//! - `proposals::Proposer`: commands batched into proposals on this node;
//! - `forwards::Forwarder`: a follower's writes batched to the leader;
//! - `read_index::ReadIndexReader`: ReadIndex rounds and calls, batched;
//! - `lessor::Lessor`: the leader's lease deadlines;
//! - `transfer::LeaderTransfer`: handing leadership over;
//! - `membership::MemberChanger`: member changes through the leader;
//! - `contact::Contact`: readiness and whether this member was removed.
//!
//! What a request needs of several (a write waits out a transfer, then
//! proposes here or forwards; a keepalive needs a quorum round before the
//! lessor renews) is composed here.

use openraft::async_runtime::WatchReceiver as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Config;

use super::contact::Contact;
pub use super::error::NodeError;
use super::forwards::Forwarder;
use super::handle::RaftHandle;
use super::lessor::{LeaseTtl, Lessor};
use super::log_store::LogStore;
use super::membership::{MemberChange, MemberChanger};
use super::network::{leader_call, LeaderCall, Network, PeerClients, Sender};
use super::proposals::Proposer;
use super::read_index::ReadIndexReader;
use super::state_store::{read_state, SharedState, StateMachineStore};
use super::transfer::LeaderTransfer;
use super::types::{Member, NodeId, Raft};
use crate::proto::etcdserverpb::{LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
use crate::proto::raft::v1 as pb;
use crate::proto::raft::v1::raft_client::RaftClient;
use crate::runtime;
use crate::storage::Engine;

/// Tuning of the Raft node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub id: NodeId,
    /// The cluster this node belongs to (see `join::Identity`).
    pub cluster_id: u64,
    /// Members the cluster starts with (used only on a node with an empty
    /// log); empty for a node that joins an existing cluster.
    pub initial_members: BTreeMap<NodeId, Member>,
    /// Leader heartbeat period.
    pub heartbeat_interval: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// How long a client request may wait for Raft before it times out.
    pub request_timeout: Duration,
    /// A snapshot is taken after this many applied entries since the last.
    pub snapshot_after_entries: u64,
    /// Entries kept behind a snapshot when the log is purged (a follower that
    /// lags less than this catches up from the log, more: by snapshot).
    pub log_kept_after_snapshot: u64,
    /// The cluster token every peer message carries (see `join::Identity`).
    pub token: Vec<u8>,
    /// Peer TLS for calling peers, when the peer port uses it.
    pub peer_tls: Option<crate::runtime::TlsSettings>,
}

/// A running Raft node.
pub struct RaftNode {
    /// This node's id.
    pub id: NodeId,
    /// The openraft handle.
    pub raft: Raft,
    /// What every concern below depends on.
    handle: RaftHandle,
    /// The applied key space.
    state: SharedState,
    /// The applied revision, changed after every apply that wrote.
    applied_revision: tokio::sync::watch::Receiver<i64>,
    /// The storage engine (for size reports).
    engine: Arc<dyn Engine>,
    /// What this node measures (see `/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    proposer: Proposer,
    forwarder: Forwarder,
    reads: ReadIndexReader,
    lessor: Lessor,
    transfer: LeaderTransfer,
    members: MemberChanger,
    contact: Contact,
}

/// etcd-style cluster id: a digest of the cluster token and the initial
/// members' ids and peer addresses (two clusters of the same members with
/// different tokens get different ids).
pub fn cluster_id(members: &BTreeMap<NodeId, Member>, token: &[u8]) -> u64 {
    let members = members.iter().flat_map(|(id, m)| id.to_be_bytes().into_iter().chain(m.peer_addr.bytes()));
    token
        .iter()
        .copied()
        .chain(members)
        .fold(0xcbf2_9ce4_8422_2325, |h: u64, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl RaftNode {
    /// Starts Raft on `engine`; bootstraps the initial membership when the log is empty.
    pub async fn start(opts: NodeOptions, engine: Arc<dyn Engine>) -> Result<Arc<Self>, NodeError> {
        let config = Config {
            cluster_name: "placement-center".to_string(),
            heartbeat_interval: opts.heartbeat_interval.as_millis() as u64,
            election_timeout_min: opts.election_timeout.0.as_millis() as u64,
            election_timeout_max: opts.election_timeout.1.as_millis() as u64,
            install_snapshot_timeout: 10_000,
            snapshot_max_chunk_size: 1024 * 1024,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(opts.snapshot_after_entries),
            max_in_snapshot_log_to_keep: opts.log_kept_after_snapshot,
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(|e| NodeError::Raft(e.to_string()))?);
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let engine: Arc<dyn Engine> = Arc::new(crate::storage::Timed::new(engine, metrics.clone()));
        let engine_for_status = engine.clone();
        let loading = crate::runtime::now();
        let mut sm = StateMachineStore::open(engine.clone()).map_err(|e| NodeError::Raft(e.to_string()))?;
        {
            let shared = sm.shared_state();
            let state = super::state_store::read_state(&shared);
            let elapsed_ms = (crate::runtime::now() - loading).as_millis() as u64;
            tracing::info!(keys = state.key_count(), revision = state.revision(), elapsed_ms, "state machine loaded");
        }
        sm.set_metrics(metrics.clone());
        let state = sm.shared_state();
        let applied_revision = sm.applied_revision();
        let sender = Sender { cluster_id: opts.cluster_id, node_id: opts.id, token: opts.token.clone().into() };
        let disowned = super::network::Disowned::default();
        let network = Network {
            connect_timeout: opts.heartbeat_interval * 5,
            sender: sender.clone(),
            disowned: disowned.clone(),
            tls: opts.peer_tls.clone(),
            metrics: metrics.clone(),
        };
        super::log_store::demote_restarted_leader(&engine, opts.id).map_err(|e| NodeError::Raft(e.to_string()))?;
        sm.meta_only_at_startup();
        let raft = Raft::new(opts.id, config, network, LogStore::new(engine), sm)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let empty_log = !raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))?;
        if empty_log && !opts.initial_members.is_empty() {
            // Every initial member proposes the same membership at log index 0,
            // so whichever of them starts first, they agree.
            if let Err(e) = raft.initialize(opts.initial_members.clone()).await {
                tracing::info!(cause = %e, "not initializing the cluster");
            }
        }
        let handle = RaftHandle {
            id: opts.id,
            clock: runtime::node_clock(opts.id),
            raft: raft.clone(),
            sender: sender.clone(),
            peers: Arc::new(PeerClients::new(opts.peer_tls)),
            request_timeout: opts.request_timeout,
            election_timeout: opts.election_timeout,
        };
        Ok(Arc::new(Self {
            id: opts.id,
            proposer: Proposer::new(raft.clone(), metrics.clone(), opts.request_timeout),
            forwarder: Forwarder::new(handle.peers.clone(), sender, opts.request_timeout),
            reads: ReadIndexReader::new(raft.clone(), opts.request_timeout),
            lessor: Lessor::new(handle.clone(), state.clone()),
            transfer: LeaderTransfer::new(handle.clone()),
            members: MemberChanger::new(handle.clone()),
            contact: Contact::new(handle.clone(), disowned),
            raft,
            handle,
            state,
            applied_revision,
            metrics,
            engine: engine_for_status,
        }))
    }

    /// The applied key space (read it only after [`RaftNode::read_barrier`]
    /// for a linearizable read).
    pub fn state(&self) -> &SharedState {
        &self.state
    }

    /// Deadline for client requests.
    pub fn request_timeout(&self) -> Duration {
        self.handle.request_timeout
    }

    /// What this node measures.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The election timeout range.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        self.handle.election_timeout
    }

    /// Notes that a leader's AppendEntries was accepted just now.
    pub fn note_leader_contact(&self) {
        self.contact.note_leader_contact()
    }

    /// Whether the cluster is in touch, as this node sees it (see
    /// `Contact::quorum_contact`).
    pub fn quorum_contact(&self) -> Result<(), String> {
        self.contact.quorum_contact()
    }

    /// Whether the cluster removed this node (see `Contact::removed`).
    pub fn removed(&self) -> bool {
        self.contact.removed()
    }

    /// Asks the voters whether they still count this node a member, when no
    /// leader has reached it for long (see `Contact::ask_whether_removed`).
    pub async fn ask_whether_removed(&self) {
        self.contact.ask_whether_removed().await
    }

    /// Compacts the storage engine's files (etcd's defragment), off the
    /// async threads.
    pub async fn defragment(&self) -> Result<(), NodeError> {
        let engine = self.engine.clone();
        runtime::blocking(move || engine.defragment())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
            .map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Bytes the storage engine holds.
    pub fn storage_bytes(&self) -> Result<u64, NodeError> {
        self.engine.size_bytes().map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Bytes the engine holds for the state machine (keys, history, leases
    /// and bookkeeping; not the Raft log): what the space quota counts, as
    /// etcd's counts its bbolt file and not its WAL.
    pub fn state_bytes(&self) -> Result<u64, NodeError> {
        use super::state_store::{CF_HISTORY, CF_KV, CF_LEASE, CF_SM};
        self.engine.size_of(&[CF_KV, CF_HISTORY, CF_LEASE, CF_SM]).map_err(|e| NodeError::Raft(e.to_string()))
    }

    /// Bytes still free on the data dir's device (`None`: unknown).
    pub fn available_disk_bytes(&self) -> Option<u64> {
        self.engine.available_bytes().ok().flatten()
    }

    /// Follows the applied revision (watchers wait on it).
    pub fn applied_revision(&self) -> tokio::sync::watch::Receiver<i64> {
        self.applied_revision.clone()
    }

    /// Whether this node is the leader as far as it knows (not a linearizable
    /// check: a deposed leader may not know yet).
    pub fn is_leader(&self) -> bool {
        self.handle.is_leader()
    }

    /// This node's identity on raft.v1.
    pub fn sender(&self) -> Sender {
        self.handle.sender.clone()
    }

    /// The cluster token peers must present (empty on clusters bootstrapped
    /// before tokens existed: then none is asked for).
    pub fn cluster_token(&self) -> &[u8] {
        &self.handle.sender.token
    }

    /// The cluster id for response headers.
    pub fn cluster_id(&self) -> u64 {
        self.handle.sender.cluster_id
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.handle.term()
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.handle.leader()
    }

    /// Whether Raft has stopped (a fatal storage error, or shutdown).
    pub fn raft_stopped(&self) -> bool {
        self.handle.raft_stopped()
    }

    /// A client of the peer at `peer_addr` (its raft.v1 address).
    pub(super) fn peer(&self, peer_addr: &str) -> Result<RaftClient<tonic::transport::Channel>, NodeError> {
        self.handle.peer(peer_addr)
    }

    /// Applies `command` through the leader and returns its result.
    pub async fn propose(&self, command: pb::Command) -> Result<pb::CommandResult, NodeError> {
        runtime::timeout(self.request_timeout(), self.propose_until_done(command))
            .await
            .unwrap_or(Err(NodeError::Timeout))
    }

    async fn propose_until_done(&self, command: pb::Command) -> Result<pb::CommandResult, NodeError> {
        loop {
            if self.raft_stopped() {
                return Err(NodeError::StoppedBeforeProposing);
            }
            if self.transfer.in_progress() {
                runtime::sleep(RaftHandle::pause()).await;
                continue;
            }
            // A follower that knows its leader hands the write over at once.
            // Proposing it here first only queued it behind this node's other
            // writes for openraft to answer ForwardToLeader.
            let leader = match self.handle.remote_leader() {
                Some(leader) => leader,
                None => match self.proposer.client_write(command.clone()).await {
                    Ok(result) => return result.map_err(NodeError::Refused),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => match fwd.leader_node {
                        Some(leader) => leader,
                        None => {
                            runtime::sleep(RaftHandle::pause()).await;
                            continue;
                        }
                    },
                    // Proposed, then leadership changed: it may yet commit.
                    Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                        return Err(NodeError::LeaderUnreachable(WRITE_DISCARDED.into()))
                    }
                    Err(RaftError::APIError(e)) => return Err(NodeError::Raft(e.to_string())),
                    Err(RaftError::Fatal(_)) => return Err(NodeError::Stopped),
                },
            };
            match self.forwarder.forward(&leader.peer_addr, command.clone()).await {
                LeaderCall::Done(resp) => return super::network::forward_result(resp).map_err(NodeError::Refused),
                // Nothing happened there: safe to try again.
                LeaderCall::NotLeader => runtime::sleep(RaftHandle::pause()).await,
                // The write may have happened: never retry it blindly.
                LeaderCall::Failed(status) => return Err(NodeError::LeaderUnreachable(status.message().to_string())),
            }
        }
    }

    /// Applies `command` only if this node leads (for the ForwardBatch RPC's handler).
    pub async fn propose_as_leader(&self, command: pb::Command) -> Result<Option<pb::CommandResult>, NodeError> {
        self.propose_as_leader_in(command, None).await
    }

    /// [`RaftNode::propose_as_leader`], proposed only while this node leads
    /// in `term` (when given): `Ok(None)` otherwise.
    async fn propose_as_leader_in(
        &self,
        command: pb::Command,
        term: Option<u64>,
    ) -> Result<Option<pb::CommandResult>, NodeError> {
        if self.raft_stopped() || self.transfer.in_progress() {
            // Nothing proposed: the follower may safely try the next leader.
            return Ok(None);
        }
        let attempt = async {
            let written = match term {
                Some(term) => self.proposer.client_write_in_term(command, term).await,
                None => self.proposer.client_write(command).await,
            };
            match written {
                Ok(result) => Ok(Some(result?)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(None),
                // Proposed, then leadership changed: it may yet commit.
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    Err(NodeError::LeaderUnreachable(WRITE_DISCARDED.into()))
                }
                Err(RaftError::APIError(e)) => Err(NodeError::Raft(e.to_string())),
                Err(RaftError::Fatal(_)) => Err(NodeError::Stopped),
            }
        };
        runtime::timeout(self.request_timeout(), attempt).await.unwrap_or(Err(NodeError::Timeout))
    }

    /// Waits until this node has applied everything committed when the call
    /// began, as confirmed by a leader holding a quorum (ReadIndex). A read of
    /// the local state after this returns is linearizable.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        runtime::timeout(self.request_timeout(), async {
            let index = self
                .handle
                .until_leader_answers(
                    || self.leader_read_index(),
                    |client, sender| self.reads.remote_read_index(self.leader(), client, sender),
                )
                .await?;
            self.handle.wait_applied(index).await
        })
        .await
        .unwrap_or(Err(NodeError::Timeout))
    }

    /// The read index if this node is the leader and confirms it with a
    /// quorum; `None` if it is not the leader, or is handing leadership over.
    pub async fn leader_read_index(&self) -> Result<Option<u64>, NodeError> {
        if self.transfer.in_progress() {
            return Ok(None);
        }
        self.reads.leader_read_index().await
    }

    /// On the leader: renews lease `id` once a quorum confirmed this node
    /// still leads. `Ok(None)`: it does not; `Ok(Some(0))`: no such lease
    /// (etcd answers a keepalive so).
    ///
    /// Why the quorum check: a leader cut off from the others still believes
    /// it leads; acknowledging keepalives then would promise a lease that the
    /// real leader (which never saw them) expires. After the check, any newer
    /// leader was elected after this point and gives the lease a full TTL
    /// from its election, so the acknowledged TTL holds.
    ///
    /// Why it then waits to apply up to the read index: a revoke that an
    /// earlier leader proposed (its deadline passed while the keepalives went
    /// to this one) can sit in this leader's log and commit with this term's
    /// first entry; renewing before it applies would acknowledge a TTL that
    /// the revoke, applied next, breaks. The read index covers this term's
    /// first entry, so every such revoke has applied (the renewal then
    /// answers TTL 0) or can never commit. etcd's leader waits for its
    /// applied index before a renewal too.
    pub async fn renew_lease_as_leader(&self, id: i64) -> Result<Option<i64>, NodeError> {
        let renewed = self.renew_lease_checked(|_| Ok::<i64, std::convert::Infallible>(id)).await?;
        Ok(renewed.map(|ttl| match ttl {
            Ok(ttl) => ttl,
            Err(never) => match never {},
        }))
    }

    /// On the leader: once a quorum confirmed this node leads and it applied
    /// everything committed before (a linearizable read), runs `check` on
    /// the state and renews the lease it names. The answer: the new TTL (0
    /// if there is no such lease) or `check`'s refusal; `None` if this node
    /// does not lead. One quorum round does for both the read and the
    /// renewal (a broker's heartbeat: see `api::placement`).
    pub async fn renew_lease_checked<E>(
        &self,
        check: impl FnOnce(&crate::state::KvState) -> Result<i64, E>,
    ) -> Result<Option<Result<i64, E>>, NodeError> {
        if !self.is_leader() {
            return Ok(None);
        }
        let Some(index) = self.leader_read_index().await? else { return Ok(None) };
        self.handle.wait_applied(index).await?;
        let lease = match check(&read_state(&self.state)) {
            Ok(lease) => lease,
            Err(refused) => return Ok(Some(Err(refused))),
        };
        Ok(self.lessor.renew(lease).map(Ok))
    }

    /// On the leader: what is left of lease `id`. `None`: this node does not
    /// lead; `Some(None)`: no such lease.
    pub fn lease_ttl_locally(&self, id: i64) -> Option<Option<LeaseTtl>> {
        self.lessor.ttl(id)
    }

    /// Renews lease `id` on whichever node leads; the new TTL, 0 if there is no such lease.
    pub async fn renew_lease(&self, id: i64) -> Result<i64, NodeError> {
        self.handle
            .ask_leader_in_time(
                || self.renew_lease_as_leader(id),
                |mut client, sender| async move {
                    leader_call(client.lease_keep_alive(sender.request(LeaseKeepAliveRequest { id })).await)
                        .map(|resp| resp.ttl)
                },
            )
            .await
    }

    /// What the leader knows of lease `id` (`None`: no such lease).
    pub async fn lease_ttl(&self, id: i64) -> Result<Option<LeaseTtl>, NodeError> {
        self.handle
            .ask_leader_in_time(
                || async move { Ok(self.lessor.ttl(id)) },
                |mut client, sender| async move {
                    let ask = LeaseTimeToLiveRequest { id, keys: false };
                    leader_call(client.lease_time_to_live(sender.request(ask)).await)
                        .map(|r| (r.ttl >= 0).then_some(LeaseTtl { remaining: r.ttl, granted: r.granted_ttl }))
                },
            )
            .await
    }

    /// One expiry pass on the leader: proposes a revoke for every lease past
    /// its deadline. Returns how many were revoked.
    pub async fn expire_leases(&self) -> usize {
        self.lessor.expire(|command, term| self.propose_as_leader_in(command, Some(term))).await
    }

    /// Makes `change` through the leader; returns the id of the member it
    /// added or changed (see `MemberChanger::change_members`).
    pub async fn change_members(&self, change: MemberChange) -> Result<NodeId, NodeError> {
        self.members.change_members(change).await
    }

    /// On the leader, leaves a joint membership configuration that a change
    /// left behind (its leader lost leadership between the two steps).
    /// Whether it left one; an error when it cannot yet.
    pub async fn leave_joint_membership(&self) -> Result<bool, NodeError> {
        self.members.leave_joint().await
    }

    /// Makes `change` if this node leads (`None` if it does not).
    pub async fn change_members_as_leader(&self, change: MemberChange) -> Result<Option<NodeId>, NodeError> {
        self.members.change_members_as_leader(change).await
    }

    /// Hands leadership to `target`, a caught-up voter. Only the leader can.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), NodeError> {
        self.transfer.transfer_leadership(target).await
    }

    /// If this node leads a cluster with other voters, hands leadership to
    /// the one whose log is furthest along (before a graceful shutdown).
    pub async fn hand_over_leadership(&self) -> Result<(), NodeError> {
        self.transfer.hand_over_leadership().await
    }

    /// The transferee's side: campaign now (the Campaign RPC's handler).
    pub async fn campaign(&self) -> Result<(), NodeError> {
        self.transfer.campaign().await
    }

    /// The member record of `id` in the current membership.
    pub fn member(&self, id: NodeId) -> Option<(NodeId, Member)> {
        self.raft.metrics().borrow_watched().membership_config.membership().get_node(&id).map(|m| (id, m.clone()))
    }

    /// Every member of the current membership with whether it is a learner, by id.
    pub fn members(&self) -> Vec<(NodeId, Member, bool)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        membership.nodes().map(|(id, m)| (*id, m.clone(), !voters.contains(id))).collect()
    }

    /// The membership as this node knows it, in its wire form.
    pub fn membership_pb(&self) -> crate::proto::raft::v1::Membership {
        super::codec::membership_to_pb(self.raft.metrics().borrow_watched().membership_config.membership())
    }

    /// Whether this node has any membership yet (a node that is joining has
    /// none until the leader's first message).
    pub fn knows_members(&self) -> bool {
        self.raft.metrics().borrow_watched().membership_config.membership().nodes().next().is_some()
    }

    /// Whether this node is a voter of the current membership.
    pub fn is_voter(&self) -> bool {
        self.raft.metrics().borrow_watched().membership_config.membership().voter_ids().any(|id| id == self.id)
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "raft shutdown");
        }
    }
}

/// Why a write proposed on a leader that lost its leadership before it
/// committed has an unknown outcome (openraft's `LogEntryDiscarded`).
const WRITE_DISCARDED: &str = "leadership changed after the write was proposed; it may or may not be applied";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_members_with_other_tokens_are_other_clusters() {
        let member = |port: u16| Member {
            name: String::new(),
            peer_addr: format!("10.0.0.1:{port}"),
            client_addr: String::new(),
            started: false,
        };
        let members: BTreeMap<NodeId, Member> = [(1, member(2380)), (2, member(2381))].into_iter().collect();
        assert_eq!(cluster_id(&members, b"a"), cluster_id(&members, b"a"));
        assert_ne!(cluster_id(&members, b"a"), cluster_id(&members, b"b"));
        assert_ne!(cluster_id(&members, b"a"), cluster_id(&members, b""));
    }
}
