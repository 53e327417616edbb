//! The node handle the API uses: propose a write (here or at the leader) and
//! make a read linearizable (ReadIndex, here or through the leader).

use openraft::async_runtime::WatchReceiver as _;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Config;

use super::log_store::LogStore;
use super::network::{LeaderCall, Network, PeerClients, Sender};
use super::state_store::{SharedState, StateMachineStore};
use super::types::{Member, NodeId, Raft};
use crate::proto::raft::v1 as pb;
use crate::proto::raft::v1::raft_client::RaftClient;
use crate::runtime;
use crate::state::StateError;
use crate::storage::Engine;

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
    /// The applied key space.
    state: SharedState,
    /// The applied revision, changed after every apply that wrote.
    applied_revision: tokio::sync::watch::Receiver<i64>,
    /// This node as it introduces itself to peers: its id, the cluster id
    /// (derived from the initial membership, equal on every member) and the
    /// cluster token.
    sender: Sender,
    /// Deadline for client requests.
    request_timeout: Duration,
    /// Clients to peers for forwarding and ReadIndex.
    pub(super) peers: Arc<PeerClients>,
    /// The storage engine (for size reports).
    engine: Arc<dyn Engine>,
    /// Election timeout range (the longest is the followers' leader lease).
    election_timeout: (Duration, Duration),
    /// What this node measures (see `/metrics`).
    metrics: Arc<crate::metrics::Metrics>,
    /// Set once this node saw itself in the membership (see `removed`).
    was_member: std::sync::atomic::AtomicBool,
    /// Peers that refused our Raft messages as from a non-member.
    disowned: super::network::Disowned,
    /// Set while this leader hands over leadership (see `transfer`).
    pub(super) transferring: std::sync::atomic::AtomicBool,
    /// Held for the whole of a leadership transfer (see `transfer`).
    pub(super) transfer_lock: tokio::sync::Mutex<()>,
    /// Lease deadlines while this node leads (see `lessor`).
    pub(super) leases: std::sync::Mutex<super::lessor::LeaderLeases>,
    /// Callers of `leader_read_index` waiting for a round (see `read_index`).
    pub(super) read_index: Arc<super::read_index::ReadIndexBatch>,
    /// Commands waiting for the next proposal (see `proposals`).
    pub(super) proposals: Arc<super::proposals::ProposalBatch>,
    /// Writes waiting to be forwarded to the leader (see `forwards`).
    pub(super) forwards: Arc<super::forwards::ForwardQueue>,
    /// Reads waiting for a ReadIndex call to the leader (see `read_index`).
    pub(super) remote_reads: Arc<super::read_index::RemoteReadQueue>,
    /// When a leader's AppendEntries (a heartbeat or entries) last reached
    /// this node and was accepted (see `quorum_contact`).
    leader_contact: std::sync::Mutex<Option<runtime::Instant>>,
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
        Ok(Arc::new(Self {
            id: opts.id,
            raft,
            state,
            applied_revision,
            sender,
            request_timeout: opts.request_timeout,
            peers: Arc::new(PeerClients::new(opts.peer_tls)),
            leases: Default::default(),
            election_timeout: opts.election_timeout,
            metrics,
            was_member: Default::default(),
            disowned,
            transferring: Default::default(),
            transfer_lock: Default::default(),
            read_index: Default::default(),
            proposals: Default::default(),
            forwards: Default::default(),
            remote_reads: Default::default(),
            leader_contact: Default::default(),
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
        self.request_timeout
    }

    /// What this node measures.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The election timeout range.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        self.election_timeout
    }

    /// Notes that a leader's AppendEntries was accepted just now.
    pub fn note_leader_contact(&self) {
        *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime::now());
    }

    /// Whether the cluster is in touch, as this node sees it: a leader has
    /// had a quorum acknowledge it, a follower has heard from the leader,
    /// within the longest election timeout. An isolated leader (openraft 0.9
    /// never steps one down) or a follower cut off from it is not ready,
    /// though it still knows a leader.
    pub fn quorum_contact(&self) -> Result<(), String> {
        let limit = self.election_timeout.1;
        let (leader, since_quorum_ack, alone) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let mut voters = m.membership_config.membership().voter_ids();
            let alone = voters.next() == Some(self.id) && voters.next().is_none();
            (m.current_leader, since_quorum_ack(self.id, &m), alone)
        };
        match leader {
            None => Err("no leader".into()),
            Some(leader) if leader == self.id => match since_quorum_ack {
                _ if alone => Ok(()),
                Some(since) if since <= limit => Ok(()),
                Some(since) => Err(format!("this leader has not heard from a quorum for {} ms", since.as_millis())),
                None => Err("this leader has not heard from a quorum yet".into()),
            },
            Some(_) => match *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(at) if runtime::now() - at <= limit => Ok(()),
                Some(at) => Err(format!("no word from the leader for {} ms", (runtime::now() - at).as_millis())),
                None => Err("no word from the leader yet".into()),
            },
        }
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
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.current_leader == Some(self.id) && m.state.is_leader()
    }

    /// This node's identity on raft.v1.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The cluster token peers must present (empty on clusters bootstrapped
    /// before tokens existed: then none is asked for).
    pub fn cluster_token(&self) -> &[u8] {
        &self.sender.token
    }

    /// The cluster id for response headers.
    pub fn cluster_id(&self) -> u64 {
        self.sender.cluster_id
    }

    /// The current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The member record of the leader this node knows of, unless that is
    /// this node.
    fn remote_leader(&self) -> Option<Member> {
        self.leader().filter(|id| *id != self.id).and_then(|id| self.member(id)).map(|(_, leader)| leader)
    }

    fn pause() -> Duration {
        Duration::from_millis(20)
    }

    /// Applies `command` through the leader and returns its result.
    pub async fn propose(&self, command: pb::Command) -> Result<pb::CommandResult, NodeError> {
        runtime::timeout(self.request_timeout, self.propose_until_done(command))
            .await
            .unwrap_or(Err(NodeError::Timeout))
    }

    /// Whether Raft has stopped (a fatal storage error, or shutdown).
    pub fn raft_stopped(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_err()
    }

    async fn propose_until_done(&self, command: pb::Command) -> Result<pb::CommandResult, NodeError> {
        loop {
            if self.raft_stopped() {
                return Err(NodeError::StoppedBeforeProposing);
            }
            if self.transferring() {
                runtime::sleep(Self::pause()).await;
                continue;
            }
            // A follower that knows its leader hands the write over at once.
            // Proposing it here first only queued it behind this node's other
            // writes for openraft to answer ForwardToLeader.
            let leader = match self.remote_leader() {
                Some(leader) => leader,
                None => match self.client_write(command.clone()).await {
                    Ok(result) => return result.map_err(NodeError::Refused),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(fwd))) => match fwd.leader_node {
                        Some(leader) => leader,
                        None => {
                            runtime::sleep(Self::pause()).await;
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
            match self.forward(&leader.peer_addr, command.clone()).await {
                LeaderCall::Done(resp) => return super::network::forward_result(resp).map_err(NodeError::Refused),
                // Nothing happened there: safe to try again.
                LeaderCall::NotLeader => runtime::sleep(Self::pause()).await,
                // The write may have happened: never retry it blindly.
                LeaderCall::Failed(status) => return Err(NodeError::LeaderUnreachable(status.message().to_string())),
            }
        }
    }

    /// Applies `command` only if this node leads (for the ForwardBatch RPC's handler).
    pub async fn propose_as_leader(&self, command: pb::Command) -> Result<Option<pb::CommandResult>, NodeError> {
        if self.raft_stopped() || self.transferring() {
            // Nothing proposed: the follower may safely try the next leader.
            return Ok(None);
        }
        let attempt = async {
            match self.client_write(command).await {
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
        runtime::timeout(self.request_timeout, attempt).await.unwrap_or(Err(NodeError::Timeout))
    }

    /// Waits until this node has applied everything committed when the call
    /// began, as confirmed by a leader holding a quorum (ReadIndex). A read of
    /// the local state after this returns is linearizable.
    pub async fn read_barrier(&self) -> Result<(), NodeError> {
        runtime::timeout(self.request_timeout, async {
            let index = self.read_index_until_done().await?;
            self.wait_applied(index).await
        })
        .await
        .unwrap_or(Err(NodeError::Timeout))
    }

    async fn read_index_until_done(&self) -> Result<u64, NodeError> {
        self.until_leader_answers(|| self.leader_read_index(), |client, sender| self.remote_read_index(client, sender))
            .await
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
                if let LeaderCall::Done(answer) = remote(client, self.sender()).await {
                    return Ok(answer);
                }
            }
            runtime::sleep(Self::pause()).await;
        }
    }

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

    /// Whether this node was removed from the cluster: it has a membership
    /// and is not in it, or a quorum of the voters it knows refused its
    /// messages as from a non-member (a removed voter is no longer sent the
    /// entry that removed it). A quorum, because a lagging peer may not yet
    /// know a member that was just added, but a quorum has the entry.
    ///
    /// Only a node that has seen itself in the membership can be removed: a
    /// joining learner first receives the older configurations (entries or
    /// a snapshot from before it was added), which do not name it.
    pub fn removed(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&self.id).is_some() {
            self.was_member.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            return self.was_member.load(std::sync::atomic::Ordering::Relaxed);
        }
        let disowned = self.disowned.lock().unwrap_or_else(|e| e.into_inner());
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let refusing = voters.iter().filter(|v| disowned.contains(v)).count();
        refusing > voters.len() / 2
    }

    /// Asks the voters this node knows whether they still count it a
    /// member, when no leader has reached it for five election timeouts:
    /// a removed learner, or a removed follower that lost the race with its
    /// removal, is sent nothing more and would otherwise wait forever (etcd's
    /// peers answer such a member "removed" when it reconnects). A refusal as
    /// a non-member counts towards `removed`, an answer clears it. A leader
    /// does not ask: it hears its removal by committing it.
    pub async fn ask_whether_removed(&self) {
        let (voters, leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            if membership.get_node(&self.id).is_none() {
                return;
            }
            let voters: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != self.id)
                .filter_map(|id| membership.get_node(&id).map(|m| (id, m.peer_addr.clone())))
                .collect();
            (voters, m.current_leader)
        };
        let last_contact = *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner());
        let quiet = last_contact.is_none_or(|at| runtime::now() - at > 5 * self.election_timeout.1);
        if leader == Some(self.id) || !quiet {
            return;
        }
        let asks = voters.into_iter().map(|(id, peer_addr)| async move {
            let Ok(mut client) = self.peer(&peer_addr) else { return (id, None) };
            let ask = client.members(self.sender().request(pb::MembersRequest {}));
            let answer = runtime::timeout(self.election_timeout.1, ask).await;
            let disowned = match answer {
                Ok(Ok(_)) => Some(false),
                Ok(Err(status))
                    if status.code() == tonic::Code::FailedPrecondition
                        && status.message().contains(super::network::NOT_A_MEMBER) =>
                {
                    Some(true)
                }
                _ => None,
            };
            (id, disowned)
        });
        let answers = futures::future::join_all(asks).await;
        let mut set = self.disowned.lock().unwrap_or_else(|e| e.into_inner());
        for (id, disowned) in answers {
            match disowned {
                Some(true) => {
                    set.insert(id);
                }
                Some(false) => {
                    set.remove(&id);
                }
                None => {}
            }
        }
    }

    pub(super) fn peer(&self, peer_addr: &str) -> Result<RaftClient<tonic::transport::Channel>, NodeError> {
        self.peers
            .get(peer_addr, super::network::PEER_CONNECT_TIMEOUT)
            .map_err(|e| NodeError::LeaderUnreachable(e.to_string()))
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(cause = %e, "raft shutdown");
        }
    }
}

/// How long ago a quorum last acknowledged node `id` as leader, from its
/// metrics (`None` unless it leads and has heard from one).
pub(super) fn since_quorum_ack(id: NodeId, metrics: &super::types::RaftMetrics) -> Option<Duration> {
    metrics.last_quorum_acked.as_ref().map(|acked| crate::runtime::raft_now(id) - **acked)
}

/// Why a write proposed on a leader that lost its leadership before it
/// committed has an unknown outcome (openraft's `LogEntryDiscarded`).
const WRITE_DISCARDED: &str = "leadership changed after the write was proposed; it may or may not be applied";

/// The last log index the leader knows `id` holds, from a leader's metrics
/// (`None` on a follower, or before `id` first answered).
pub(super) fn matched_index(metrics: &super::types::RaftMetrics, id: NodeId) -> Option<u64> {
    metrics.replication.as_ref().and_then(|r| r.get(&id).cloned().flatten()).map(|l| l.index)
}

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
