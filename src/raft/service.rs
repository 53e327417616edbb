//! The server side of raft.v1: hands peers' Raft RPCs to openraft, and serves
//! the leader-only calls followers make (ForwardBatch, ReadIndex).

use openraft::async_runtime::WatchReceiver as _;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};

use super::codec;
use super::membership::MemberChange;
use super::network::NOT_LEADER_METADATA;
use super::node::{NodeError, RaftNode};
use super::peer_gate::{NodeView, PeerGate};
use super::snapshot_receiver::SnapshotReceiver;
use super::types::NodeId;
use crate::proto::raft::v1 as pb;
use crate::proto::raft::v1::raft_server::Raft as RaftRpc;
use crate::runtime;

/// The raft.v1 service of one node.
pub struct RaftService {
    /// The node whose Raft answers.
    node: Arc<RaftNode>,
    /// Who may send what (see `peer_gate`).
    gate: PeerGate,
    /// The snapshot a leader is sending this node in chunks.
    receiver: tokio::sync::Mutex<SnapshotReceiver>,
    /// Ends replication streams when the peer server stops (an idle one
    /// would hold its graceful shutdown forever).
    stop: runtime::Shutdown,
}

impl RaftService {
    /// The service for `node`, admitting peers by `gate`, until `stop`.
    pub fn new(node: Arc<RaftNode>, gate: PeerGate, stop: runtime::Shutdown) -> Self {
        Self { node, gate, receiver: Default::default(), stop }
    }

    /// Admits `req` from a member of this cluster (see `PeerGate::admit`).
    fn check_sender<T>(&self, req: &Request<T>) -> Result<NodeId, Status> {
        self.admit(req, None)
    }

    /// Admits replication only from the leader its `vote` names.
    fn check_leader<T>(&self, req: &Request<T>, vote: Option<&pb::Vote>) -> Result<NodeId, Status> {
        let leader = vote.map(|v| v.node_id).ok_or_else(|| Status::invalid_argument("replication without a vote"))?;
        self.admit(req, Some(leader))
    }

    fn admit<T>(&self, req: &Request<T>, leader: Option<NodeId>) -> Result<NodeId, Status> {
        let member = |id| self.node.member(id).map(|(_, m)| m);
        let knows_members = || self.node.knows_members();
        let view = NodeView {
            cluster_id: self.node.cluster_id(),
            token: self.node.cluster_token(),
            member: &member,
            knows_members: &knows_members,
        };
        self.gate.admit(req, &view, leader)
    }

    /// Installs a snapshot whose last chunk arrived, once its checksum holds
    /// and it decodes. Refused, the leader sends it again later.
    async fn install(
        &self,
        from: NodeId,
        rpc: codec::SnapReq,
        data: Vec<u8>,
    ) -> Result<pb::InstallSnapshotResponse, Status> {
        let checked = super::state_store::unseal_snapshot(&data).and_then(|body| {
            codec::decode::<pb::StateSnapshot>("StateSnapshot", body)
                .map_err(|e| e.to_string())
                .and_then(|snapshot| crate::state::check_snapshot(&snapshot))
        });
        if let Err(e) = checked {
            tracing::warn!(from, snapshot = %rpc.snapshot_id, cause = %e, "refused a snapshot that does not decode");
            return Err(Status::invalid_argument(format!("snapshot {} does not decode: {e}", rpc.snapshot_id)));
        }
        let snapshot = super::types::Snapshot { meta: rpc.meta, snapshot: data };
        let resp = self.node.raft.install_full_snapshot(rpc.vote, snapshot).await.map_err(raft_failure)?;
        Ok(pb::InstallSnapshotResponse { vote: Some(codec::vote_to_pb(&resp.vote)) })
    }
}

fn bad_message(e: codec::DecodeError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn raft_failure(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn not_leader() -> Status {
    let mut status = Status::unavailable("not the leader");
    status.metadata_mut().insert(NOT_LEADER_METADATA, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Peer-facing errors; the follower maps them back (see network::leader_call).
fn node_failure(e: NodeError) -> Status {
    match e {
        NodeError::Timeout => Status::deadline_exceeded(e.to_string()),
        NodeError::Stopped | NodeError::StoppedBeforeProposing | NodeError::NoLeader => {
            Status::unavailable(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn vote(&self, req: Request<pb::VoteRequest>) -> Result<Response<pb::VoteResponse>, Status> {
        self.check_sender(&req)?;
        let rpc = codec::vote_req_from_pb(req.get_ref()).map_err(bad_message)?;
        let resp = self.node.raft.vote(rpc).await.map_err(raft_failure)?;
        Ok(Response::new(codec::vote_resp_to_pb(&resp)))
    }

    async fn append_entries(
        &self,
        req: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        self.check_leader(&req, req.get_ref().vote.as_ref())?;
        let rpc = codec::append_req_from_pb(req.into_inner()).map_err(bad_message)?;
        let resp = self.node.raft.append_entries(rpc).await.map_err(raft_failure)?;
        if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
            self.node.note_leader_contact();
        }
        Ok(Response::new(codec::append_resp_to_pb(&resp)))
    }

    type AppendStreamStream = super::append_stream::Answers;

    /// A leader's replication stream (see `append_stream`): admitted once, as
    /// a unary AppendEntries would be from the node it says it comes from;
    /// every message must then name that node as its leader.
    async fn append_stream(
        &self,
        req: Request<tonic::Streaming<pb::AppendEntriesRequest>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let claimed = req
            .metadata()
            .get(super::network::FROM_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<NodeId>().ok());
        let leader = self.admit(&req, claimed)?;
        self.node.metrics().append_streams.inc();
        let node = self.node.clone();
        let contact = move || node.note_leader_contact();
        let inbound = req.into_inner();
        Ok(Response::new(super::append_stream::serve(&self.node.raft, leader, inbound, self.stop.clone(), contact)))
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::InstallSnapshotRequest>,
    ) -> Result<Response<pb::InstallSnapshotResponse>, Status> {
        let from = self.check_leader(&req, req.get_ref().vote.as_ref())?;
        let mut rpc = codec::snapshot_req_from_pb(req.into_inner()).map_err(bad_message)?;
        // A stale leader's chunks are answered with the vote that outranks it
        // (as openraft does), and never buffered.
        let my_vote = self.node.raft.metrics().borrow_watched().vote;
        if rpc.vote < my_vote {
            return Ok(Response::new(pb::InstallSnapshotResponse { vote: Some(codec::vote_to_pb(&my_vote)) }));
        }
        let mut receiver = self.receiver.lock().await;
        let data = std::mem::take(&mut rpc.data);
        let complete = receiver.accept(&rpc.snapshot_id, rpc.offset, data, rpc.done).map_err(|e| {
            tracing::warn!(from, cause = %e, "refused a snapshot chunk");
            Status::invalid_argument(e.to_string())
        })?;
        let Some(data) = complete else {
            return Ok(Response::new(pb::InstallSnapshotResponse { vote: Some(codec::vote_to_pb(&my_vote)) }));
        };
        drop(receiver);
        Ok(Response::new(self.install(from, rpc, data).await?))
    }

    async fn transfer_leader(
        &self,
        req: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        self.check_leader(&req, req.get_ref().from_leader.as_ref())?;
        let rpc = codec::transfer_req_from_pb(req.get_ref()).map_err(bad_message)?;
        let resp = self.node.raft.handle_transfer_leader(rpc).await.map_err(raft_failure)?;
        Ok(Response::new(codec::transfer_resp_to_pb(&resp)))
    }

    async fn forward_batch(&self, req: Request<pb::Proposal>) -> Result<Response<pb::ForwardBatchResponse>, Status> {
        self.check_sender(&req)?;
        // Proposed concurrently: they wait in one queue and go in one entry.
        // (A stopped or transferring leader answers each "not proposed".)
        let outcomes = futures::future::join_all(
            req.into_inner().commands.into_iter().map(|command| self.node.propose_as_leader(command)),
        )
        .await;
        let results = outcomes
            .into_iter()
            .map(|outcome| match outcome {
                Ok(Some(result)) => pb::ForwardResponse { result: Some(result), ..Default::default() },
                Ok(None) => pb::ForwardResponse { not_proposed: true, ..Default::default() },
                Err(NodeError::Refused(refused)) => {
                    pb::ForwardResponse { refused: codec::refusal_to_pb(&refused) as i32, ..Default::default() }
                }
                Err(e) => pb::ForwardResponse { failed: e.to_string(), ..Default::default() },
            })
            .collect();
        Ok(Response::new(pb::ForwardBatchResponse { results }))
    }

    async fn read_index(&self, req: Request<pb::ReadIndexRequest>) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.check_sender(&req)?;
        match self.node.leader_read_index().await {
            Ok(Some(index)) => Ok(Response::new(pb::ReadIndexResponse { index })),
            Ok(None) => Err(not_leader()),
            Err(e) => Err(node_failure(e)),
        }
    }

    async fn lease_keep_alive(
        &self,
        req: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        self.check_sender(&req)?;
        let id = req.into_inner().id;
        match self.node.renew_lease_as_leader(id).await {
            Ok(Some(ttl)) => Ok(Response::new(LeaseKeepAliveResponse { header: None, id, ttl })),
            Ok(None) => Err(not_leader()),
            Err(e) => Err(node_failure(e)),
        }
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.check_sender(&req)?;
        let id = req.into_inner().id;
        match self.node.lease_ttl_locally(id) {
            Some(ttl) => Ok(Response::new(LeaseTimeToLiveResponse {
                id,
                ttl: ttl.map_or(-1, |t| t.remaining),
                granted_ttl: ttl.map_or(0, |t| t.granted),
                ..Default::default()
            })),
            None => Err(not_leader()),
        }
    }

    async fn change_members(
        &self,
        req: Request<pb::MemberChange>,
    ) -> Result<Response<pb::MemberChangeResponse>, Status> {
        self.check_sender(&req)?;
        let change = MemberChange::from_pb(req.into_inner())
            .ok_or_else(|| Status::invalid_argument("member change without a change"))?;
        match self.node.change_members_as_leader(change).await {
            Ok(Some(id)) => Ok(Response::new(pb::MemberChangeResponse { refusal: 0, id })),
            Ok(None) => Err(not_leader()),
            Err(NodeError::Member(refused)) => {
                Ok(Response::new(pb::MemberChangeResponse { refusal: refused.to_pb() as i32, id: 0 }))
            }
            Err(e) => Err(node_failure(e)),
        }
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.check_sender(&req)?;
        let asked = req.into_inner().revision;
        let mut applied = self.node.applied_revision();
        let wanted = asked.max(0);
        // Not applied that far yet: wait a little (the asker is at it).
        let _ = runtime::timeout(super::corruption::APPLY_WAIT, applied.wait_for(|r| *r >= wanted)).await;
        let (at, hash, compact_revision) = super::state_store::scan_state(self.node.state(), move |state| {
            let at = if asked <= 0 { state.revision() } else { asked };
            (at, state.hash_kv(at), state.compact_revision())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        let hash = hash.map_err(|e| Status::out_of_range(e.to_string()))?;
        Ok(Response::new(HashKvResponse { header: None, hash, compact_revision, hash_revision: at }))
    }

    async fn members(&self, req: Request<pb::MembersRequest>) -> Result<Response<pb::MembersResponse>, Status> {
        self.check_sender(&req)?;
        Ok(Response::new(pb::MembersResponse { membership: Some(self.node.membership_pb()) }))
    }

    async fn campaign(&self, req: Request<pb::CampaignRequest>) -> Result<Response<pb::CampaignResponse>, Status> {
        self.check_sender(&req)?;
        self.node.campaign().await.map_err(node_failure)?;
        Ok(Response::new(pb::CampaignResponse {}))
    }
}
