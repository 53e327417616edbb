//! The `placement.v1` service brokers call: register, heartbeat, list and
//! watch nodes, cluster settings and status. Every write is an etcd write
//! (lease grant, put, txn, revoke) through the same Raft log and state
//! machine, on the keys `placement` lays out; every read is linearizable.
//!
//! A registration is a lease of the cluster's expiry plus a put of the node's
//! record with that lease. The put's revision is the epoch: revisions only
//! grow, so every registration of a node id gets a higher epoch than the
//! last. A heartbeat renews the lease only if the record still carries the
//! caller's epoch, so a replaced (zombie) broker cannot keep the new
//! registration, nor its own, alive: a new registration revokes the lease of
//! the one it replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::{receiver_stream, ApiContext, Caller, ResponseStream};
use super::follow::{Follow, Respond};
use super::offsets::OffsetCommitter;
use super::topics::{mod_is, Topics};
use super::ApiError;
use crate::placement::{self, offsets, ClusterConfig, NodeRecord, PlacementError};
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::proto::placement::v1::placement_server::Placement;
use crate::proto::placement::v1::{
    node_event, ClusterConfigResponse, ClusterNodes, ClusterStatusRequest, ClusterStatusResponse, CommitOffsetsRequest,
    CommitOffsetsResponse, CreateTopicRequest, DeleteTopicRequest, DeleteTopicResponse, FetchOffsetsRequest,
    FetchOffsetsResponse, GetClusterConfigRequest, GetTopicRequest, GetTopicResponse, Header, HeartbeatRequest,
    HeartbeatResponse, ListNodesRequest, ListNodesResponse, ListShardsRequest, ListShardsResponse, ListTopicsRequest,
    ListTopicsResponse, MemberStatus, MoveShardRequest, MoveShardResponse, NodeEvent, NodeInfo, RegisterNodeRequest,
    RegisterNodeResponse, ReportShardStatusRequest, ReportShardStatusResponse, SetClusterConfigRequest, TopicResponse,
    UnregisterNodeRequest, UnregisterNodeResponse, UpdateTopicRequest, WatchAssignmentsRequest,
    WatchAssignmentsResponse, WatchNodesRequest, WatchNodesResponse,
};
use crate::proto::raft::v1::command;
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{Access, KvState, MAX_LEASE_TTL};

/// How long ClusterStatus waits for each member's own status.
const MEMBER_STATUS_TIMEOUT: Duration = Duration::from_secs(1);
/// Responses buffered for a WatchNodes client before it stops reading history.
const WATCH_BUFFER: usize = 64;

/// The Placement service of one node.
pub struct PlacementService {
    ctx: Arc<ApiContext>,
    /// Expiries below this are not served as is (the shortest lease TTL,
    /// which outlives a leader election).
    min_ttl: i64,
    /// Batches the offset commits arriving here.
    committer: OffsetCommitter,
    /// Topics and shards.
    topics: Topics,
}

impl PlacementService {
    /// The service; `min_ttl` in seconds, as the Lease service has it.
    pub fn new(ctx: Arc<ApiContext>, min_ttl: i64) -> Self {
        let committer = OffsetCommitter::start(ctx.clone());
        let topics = Topics::new(ctx.clone());
        Self { ctx, min_ttl, committer, topics }
    }

    fn header(&self, revision: i64) -> Header {
        header(&self.ctx, revision)
    }

    /// `cluster`'s settings (the defaults when never set), whether they were
    /// set, and the revision read at.
    async fn cluster_config(&self, cluster: &str) -> Result<(ClusterConfig, bool, i64), ApiError> {
        let (stored, revision) =
            self.ctx.read_caught_up(|s| (get(s, &placement::cluster_key(cluster)), s.revision())).await?;
        match stored {
            None => Ok((ClusterConfig::default(), false, revision)),
            Some(kv) => match ClusterConfig::decode(&kv.value) {
                Ok(config) => Ok((config, true, revision)),
                Err(cause) => {
                    tracing::warn!(cluster, %cause, "cluster settings unreadable (written by hand?): using the defaults");
                    Ok((ClusterConfig::default(), false, revision))
                }
            },
        }
    }

    /// Node `node_id`'s record, read linearizably.
    async fn registration(&self, cluster: &str, node_id: u64) -> Result<KeyValue, ApiError> {
        Ok(self.ctx.read_caught_up(|s| registered(s, cluster, node_id)).await??)
    }

    /// Renews the lease of node `node_id`'s registration if `epoch` is its
    /// epoch; the TTL granted.
    async fn renew_registration(&self, cluster: String, node_id: u64, epoch: i64) -> Result<i64, ApiError> {
        // The registration's lease, if `epoch` is the registration's.
        let check = |state: &KvState| {
            let kv = registered(state, &cluster, node_id)?;
            same_epoch(&kv, &cluster, node_id, epoch)?;
            if kv.lease == 0 {
                return Err(PlacementError::NoLease { cluster: cluster.clone(), node_id });
            }
            Ok(kv.lease)
        };
        // On the leader, one quorum round both reads and renews;
        // elsewhere the read and the renewal each ask the leader.
        let ttl = match self.ctx.node.renew_lease_checked(check).await? {
            Some(answer) => answer?,
            None => {
                let lease = self.ctx.read_caught_up(check).await??;
                self.ctx.node.renew_lease(lease).await?
            }
        };
        if ttl <= 0 {
            // Expired between the read and the renewal.
            return Err(PlacementError::NotRegistered { cluster, node_id }.into());
        }
        Ok(ttl)
    }

    /// Revokes a lease that is no longer wanted; one that is gone already, or
    /// a failure, only costs an unused lease until it expires.
    async fn revoke_quietly(&self, caller: &Caller, id: i64) {
        if let Err(e) = self.ctx.propose(caller, command::Request::LeaseRevoke(LeaseRevokeRequest { id })).await {
            tracing::debug!(lease = id, cause = %e, "lease of a replaced registration not revoked");
        }
    }

    /// Health and progress of member `id` as it reports them itself.
    async fn member_status(id: u64, member: crate::raft::Member, learner: bool) -> MemberStatus {
        let mut status = MemberStatus {
            id,
            name: member.name.clone(),
            peer_addr: member.peer_addr.clone(),
            client_addr: member.client_addr.clone(),
            is_learner: learner,
            ..Default::default()
        };
        if member.client_addr.is_empty() {
            status.error = "not started yet (no client address published)".to_string();
            return status;
        }
        let ask = async {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", member.client_addr))
                .map_err(|e| e.to_string())?
                .connect_timeout(MEMBER_STATUS_TIMEOUT)
                .timeout(MEMBER_STATUS_TIMEOUT);
            let channel = endpoint.connect().await.map_err(|e| format!("unreachable: {e}"))?;
            let answer = MaintenanceClient::new(channel).status(StatusRequest {}).await;
            answer.map(|r| r.into_inner()).map_err(|s| s.message().to_string())
        };
        match runtime::timeout(MEMBER_STATUS_TIMEOUT * 2, ask).await {
            Err(_) => status.error = "status timed out".to_string(),
            Ok(Err(e)) => status.error = e,
            Ok(Ok(reported)) => {
                status.applied_index = reported.raft_applied_index;
                status.raft_index = reported.raft_index;
                status.healthy = reported.errors.is_empty();
                status.error = reported.errors.join("; ");
            }
        }
        status
    }
}

/// The etcd response header, as the placement API spells it.
fn header(ctx: &ApiContext, revision: i64) -> Header {
    let h = ctx.header(revision);
    Header { cluster_id: h.cluster_id, member_id: h.member_id, revision: h.revision, raft_term: h.raft_term }
}

/// The live record of `key`.
pub(super) fn get(state: &KvState, key: &[u8]) -> Option<KeyValue> {
    let req = RangeRequest { key: key.to_vec(), ..Default::default() };
    state.range(&req).ok().and_then(|r| r.kvs.into_iter().next())
}

/// Node `node_id`'s record in `state`.
fn registered(state: &KvState, cluster: &str, node_id: u64) -> Result<KeyValue, PlacementError> {
    get(state, &placement::node_key(cluster, node_id))
        .ok_or_else(|| PlacementError::NotRegistered { cluster: cluster.to_string(), node_id })
}

/// Refuses `epoch` unless it is the registration's (its record's mod revision).
fn same_epoch(kv: &KeyValue, cluster: &str, node_id: u64, epoch: i64) -> Result<(), PlacementError> {
    if kv.mod_revision == epoch {
        return Ok(());
    }
    Err(PlacementError::StaleEpoch { cluster: cluster.to_string(), node_id, given: epoch, current: kv.mod_revision })
}

/// The registered nodes in `cluster` ("": every cluster) with `role` ("": any).
fn nodes(state: &KvState, cluster: &str, role: &str) -> Vec<NodeInfo> {
    let (key, range_end) = placement::nodes_range(cluster);
    let Ok(found) = state.range(&RangeRequest { key, range_end, ..Default::default() }) else { return Vec::new() };
    let mut nodes: Vec<NodeInfo> = found
        .kvs
        .iter()
        .filter_map(decode_logged)
        .filter(|n| role.is_empty() || n.roles.iter().any(|r| r == role))
        .collect();
    nodes.sort_by(|a, b| (&a.cluster, a.node_id).cmp(&(&b.cluster, b.node_id)));
    nodes
}

/// A node record, or `None` (logged) for one that is not (written by hand).
fn decode_logged(kv: &KeyValue) -> Option<NodeInfo> {
    NodeRecord::decode(kv)
        .inspect_err(|cause| {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), %cause, "skipping an unreadable node record");
        })
        .ok()
}

/// What a key event under the node prefix means for the node.
fn node_event(event: &Event, revision: i64) -> Option<NodeEvent> {
    let (kind, record) = if event.r#type == EventType::Delete as i32 {
        (node_event::Kind::Left, event.prev_kv.as_ref()?)
    } else if event.prev_kv.is_some() {
        (node_event::Kind::Changed, event.kv.as_ref()?)
    } else {
        (node_event::Kind::Joined, event.kv.as_ref()?)
    };
    let node = decode_logged(record)?;
    Some(NodeEvent { kind: kind as i32, node: Some(node), revision })
}

fn config_response(header: Header, cluster: String, config: ClusterConfig, configured: bool) -> ClusterConfigResponse {
    ClusterConfigResponse {
        header: Some(header),
        cluster,
        heartbeat_interval_secs: config.heartbeat_interval_secs,
        expiry_secs: config.expiry_secs,
        configured,
    }
}

#[tonic::async_trait]
impl Placement for PlacementService {
    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, node_id = req.get_ref().node_id))]
    async fn register_node(&self, req: Request<RegisterNodeRequest>) -> Result<Response<RegisterNodeResponse>, Status> {
        self.ctx
            .observe("Placement/RegisterNode", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                self.ctx.check_size(&req)?;
                let record = NodeRecord::from(req);
                record.validate().map_err(ApiError::from)?;
                let (config, _, _) = self.cluster_config(&record.cluster).await?;
                let ttl = i64::from(config.expiry_secs).max(self.min_ttl);
                let lease = self.ctx.grant_lease(&caller, ttl, 0).await?.into_inner().id;
                let put = PutRequest {
                    key: record.key(),
                    value: record.encode(),
                    lease,
                    prev_kv: true,
                    ..Default::default()
                };
                let applied = match self.ctx.propose(&caller, command::Request::Put(put)).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        self.revoke_quietly(&caller, lease).await;
                        return Err(e.into());
                    }
                };
                // A put alone is at its own revision: the epoch.
                let epoch = applied.revision;
                if let Some(Applied::Put(put)) = applied.response {
                    if let Some(previous) = put.prev_kv.filter(|kv| kv.lease != 0 && kv.lease != lease) {
                        self.revoke_quietly(&caller, previous.lease).await;
                    }
                }
                tracing::info!(epoch, lease, "node registered");
                let node = NodeInfo {
                    cluster: record.cluster,
                    node_id: record.node_id,
                    roles: record.roles,
                    addresses: record.addresses,
                    labels: record.labels,
                    epoch,
                    lease_id: lease,
                };
                Ok(Response::new(RegisterNodeResponse {
                    header: Some(self.header(epoch)),
                    node: Some(node),
                    heartbeat_interval_secs: config.heartbeat_interval_secs,
                    expiry_secs: ttl as u32,
                }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, node_id = req.get_ref().node_id))]
    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        self.ctx
            .observe("Placement/Heartbeat", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_node(&req.cluster, req.node_id).map_err(ApiError::from)?;
                // Renewing a registration writes it, as far as auth goes.
                self.ctx.check(&caller, Access::Write, &placement::node_key(&req.cluster, req.node_id), &[]).await?;
                if req.epoch <= 0 {
                    return Err(ApiError::from(PlacementError::NoEpoch).into());
                }
                let ttl = self.renew_registration(req.cluster, req.node_id, req.epoch).await?;
                let revision = read_state(self.ctx.node.state()).revision();
                Ok(Response::new(HeartbeatResponse { header: Some(self.header(revision)), ttl_secs: ttl }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, node_id = req.get_ref().node_id))]
    async fn unregister_node(
        &self,
        req: Request<UnregisterNodeRequest>,
    ) -> Result<Response<UnregisterNodeResponse>, Status> {
        self.ctx
            .observe("Placement/UnregisterNode", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_node(&req.cluster, req.node_id).map_err(ApiError::from)?;
                let (cluster, node_id) = (req.cluster, req.node_id);
                let kv = match self.registration(&cluster, node_id).await {
                    Ok(kv) => kv,
                    Err(ApiError::Placement(PlacementError::NotRegistered { .. })) => {
                        let revision = read_state(self.ctx.node.state()).revision();
                        return Ok(Response::new(UnregisterNodeResponse {
                            header: Some(self.header(revision)),
                            removed: false,
                        }));
                    }
                    Err(e) => return Err(e.into()),
                };
                if req.epoch != 0 {
                    same_epoch(&kv, &cluster, node_id, req.epoch).map_err(ApiError::from)?;
                }
                // Delete only the registration that was read: one made since wins.
                let txn = TxnRequest {
                    compare: vec![mod_is(&kv.key, kv.mod_revision)],
                    success: vec![RequestOp {
                        request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key: kv.key, ..Default::default() })),
                    }],
                    failure: Vec::new(),
                };
                let applied = self.ctx.propose(&caller, command::Request::Txn(txn)).await?;
                let succeeded = matches!(applied.response, Some(Applied::Txn(ref t)) if t.succeeded);
                if !succeeded {
                    return Err(ApiError::from(PlacementError::Raced { cluster, node_id }).into());
                }
                if kv.lease != 0 {
                    self.revoke_quietly(&caller, kv.lease).await;
                }
                tracing::info!(epoch = kv.mod_revision, "node unregistered");
                Ok(Response::new(UnregisterNodeResponse { header: Some(self.header(applied.revision)), removed: true }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, role = %req.get_ref().role))]
    async fn list_nodes(&self, req: Request<ListNodesRequest>) -> Result<Response<ListNodesResponse>, Status> {
        self.ctx
            .observe("Placement/ListNodes", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                if !req.cluster.is_empty() {
                    placement::check_cluster(&req.cluster).map_err(ApiError::from)?;
                }
                let (key, end) = placement::nodes_range(&req.cluster);
                self.ctx.check(&caller, Access::Read, &key, &end).await?;
                let (nodes, revision) =
                    self.ctx.read_caught_up(|s| (nodes(s, &req.cluster, &req.role), s.revision())).await?;
                Ok(Response::new(ListNodesResponse { header: Some(self.header(revision)), nodes }))
            })
            .await
    }

    type WatchNodesStream = ResponseStream<WatchNodesResponse>;

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, start = req.get_ref().start_revision))]
    async fn watch_nodes(&self, req: Request<WatchNodesRequest>) -> Result<Response<Self::WatchNodesStream>, Status> {
        self.ctx
            .observe("Placement/WatchNodes", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                if !req.cluster.is_empty() {
                    placement::check_cluster(&req.cluster).map_err(ApiError::from)?;
                }
                let (key, end) = placement::nodes_range(&req.cluster);
                self.ctx.check(&caller, Access::Read, &key, &end).await?;
                let (out, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
                let ctx = self.ctx.clone();
                let respond: Respond<WatchNodesResponse> = Box::new(move |revision, events| {
                    let events: Vec<NodeEvent> = events.iter().filter_map(|e| node_event(e, revision)).collect();
                    (!events.is_empty()).then(|| WatchNodesResponse { header: Some(header(&ctx, revision)), events })
                });
                let watch = Follow { ctx: self.ctx.clone(), range: (key, end), out, respond };
                runtime::spawn_detached("watch-nodes", watch.run(req.start_revision));
                let stream: Self::WatchNodesStream = Box::pin(receiver_stream(rx));
                Ok(Response::new(stream))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster))]
    async fn set_cluster_config(
        &self,
        req: Request<SetClusterConfigRequest>,
    ) -> Result<Response<ClusterConfigResponse>, Status> {
        self.ctx
            .observe("Placement/SetClusterConfig", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_cluster(&req.cluster).map_err(ApiError::from)?;
                let config = ClusterConfig {
                    heartbeat_interval_secs: req.heartbeat_interval_secs,
                    expiry_secs: req.expiry_secs,
                };
                config.validate(self.min_ttl, MAX_LEASE_TTL).map_err(ApiError::from)?;
                let put = PutRequest {
                    key: placement::cluster_key(&req.cluster),
                    value: config.encode(),
                    ..Default::default()
                };
                let applied = self.ctx.propose(&caller, command::Request::Put(put)).await?;
                Ok(Response::new(config_response(self.header(applied.revision), req.cluster, config, true)))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster))]
    async fn get_cluster_config(
        &self,
        req: Request<GetClusterConfigRequest>,
    ) -> Result<Response<ClusterConfigResponse>, Status> {
        self.ctx
            .observe("Placement/GetClusterConfig", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_cluster(&req.cluster).map_err(ApiError::from)?;
                self.ctx.check(&caller, Access::Read, &placement::cluster_key(&req.cluster), &[]).await?;
                let (config, configured, revision) = self.cluster_config(&req.cluster).await?;
                Ok(Response::new(config_response(self.header(revision), req.cluster, config, configured)))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn cluster_status(
        &self,
        req: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        self.ctx
            .observe("Placement/ClusterStatus", async move {
                let caller = self.ctx.caller(&req).await?;
                let (key, end) = placement::nodes_range("");
                self.ctx.check(&caller, Access::Read, &key, &end).await?;
                let (all, revision) = self.ctx.read_caught_up(|s| (nodes(s, "", ""), s.revision())).await?;
                let mut clusters: BTreeMap<String, ClusterNodes> = BTreeMap::new();
                for node in all {
                    let entry = clusters
                        .entry(node.cluster.clone())
                        .or_insert_with(|| ClusterNodes { cluster: node.cluster.clone(), ..Default::default() });
                    entry.nodes += 1;
                    for role in node.roles {
                        *entry.by_role.entry(role).or_default() += 1;
                    }
                }
                let asks =
                    self.ctx.node.members().into_iter().map(|(id, m, learner)| Self::member_status(id, m, learner));
                let members = futures::future::join_all(asks).await;
                Ok(Response::new(ClusterStatusResponse {
                    header: Some(self.header(revision)),
                    leader: self.ctx.node.leader().unwrap_or(0),
                    term: self.ctx.node.term(),
                    members,
                    clusters: clusters.into_values().collect(),
                }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, group = %req.get_ref().group))]
    async fn commit_offsets(
        &self,
        req: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        self.ctx
            .observe("Placement/CommitOffsets", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                self.ctx.check_size(&req)?;
                offsets::validate_commit(&req).map_err(ApiError::from)?;
                let (revision, generation) = self.committer.commit(caller, req).await?;
                Ok(Response::new(CommitOffsetsResponse { header: Some(self.header(revision)), generation }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, group = %req.get_ref().group))]
    async fn fetch_offsets(&self, req: Request<FetchOffsetsRequest>) -> Result<Response<FetchOffsetsResponse>, Status> {
        self.ctx
            .observe("Placement/FetchOffsets", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_cluster(&req.cluster).map_err(ApiError::from)?;
                offsets::check_segment("group", &req.group).map_err(ApiError::from)?;
                if !req.topic.is_empty() {
                    offsets::check_segment("topic", &req.topic).map_err(ApiError::from)?;
                }
                let (key, end) = offsets::offsets_range(&req.cluster, &req.group, &req.topic);
                self.ctx.check(&caller, Access::Read, &key, &end).await?;
                self.ctx.check(&caller, Access::Read, &offsets::group_key(&req.cluster, &req.group), &[]).await?;
                let (generation, offsets, revision) =
                    self.ctx.read_caught_up(|s| super::offsets::fetch(s, &req)).await?;
                Ok(Response::new(FetchOffsetsResponse { header: Some(self.header(revision)), generation, offsets }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn create_topic(&self, req: Request<CreateTopicRequest>) -> Result<Response<TopicResponse>, Status> {
        self.ctx
            .observe("Placement/CreateTopic", async move {
                let caller = self.ctx.caller(&req).await?;
                let (topic, revision) = self.topics.create(&caller, req.into_inner()).await?;
                tracing::info!(revision, "topic created");
                Ok(Response::new(TopicResponse { header: Some(self.header(revision)), topic: Some(topic) }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn update_topic(&self, req: Request<UpdateTopicRequest>) -> Result<Response<TopicResponse>, Status> {
        self.ctx
            .observe("Placement/UpdateTopic", async move {
                let caller = self.ctx.caller(&req).await?;
                let (topic, revision) = self.topics.update(&caller, req.into_inner()).await?;
                Ok(Response::new(TopicResponse { header: Some(self.header(revision)), topic: Some(topic) }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, topic = %req.get_ref().name))]
    async fn get_topic(&self, req: Request<GetTopicRequest>) -> Result<Response<GetTopicResponse>, Status> {
        self.ctx
            .observe("Placement/GetTopic", async move {
                let caller = self.ctx.caller(&req).await?;
                let (topic, shards, revision) = self.topics.get(&caller, req.into_inner()).await?;
                Ok(Response::new(GetTopicResponse { header: Some(self.header(revision)), topic: Some(topic), shards }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster))]
    async fn list_topics(&self, req: Request<ListTopicsRequest>) -> Result<Response<ListTopicsResponse>, Status> {
        self.ctx
            .observe("Placement/ListTopics", async move {
                let caller = self.ctx.caller(&req).await?;
                let (topics, revision) = self.topics.list(&caller, req.into_inner()).await?;
                Ok(Response::new(ListTopicsResponse { header: Some(self.header(revision)), topics }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, topic = %req.get_ref().name))]
    async fn delete_topic(&self, req: Request<DeleteTopicRequest>) -> Result<Response<DeleteTopicResponse>, Status> {
        self.ctx
            .observe("Placement/DeleteTopic", async move {
                let caller = self.ctx.caller(&req).await?;
                let (deleted, revision) = self.topics.delete(&caller, req.into_inner()).await?;
                Ok(Response::new(DeleteTopicResponse { header: Some(self.header(revision)), deleted }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, topic = %req.get_ref().topic))]
    async fn list_shards(&self, req: Request<ListShardsRequest>) -> Result<Response<ListShardsResponse>, Status> {
        self.ctx
            .observe("Placement/ListShards", async move {
                let caller = self.ctx.caller(&req).await?;
                let (shards, revision) = self.topics.list_shards(&caller, req.into_inner()).await?;
                Ok(Response::new(ListShardsResponse { header: Some(self.header(revision)), shards }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, topic = %req.get_ref().topic, shard = req.get_ref().shard))]
    async fn move_shard(&self, req: Request<MoveShardRequest>) -> Result<Response<MoveShardResponse>, Status> {
        self.ctx
            .observe("Placement/MoveShard", async move {
                let caller = self.ctx.caller(&req).await?;
                let (shard, revision) = self.topics.move_shard(&caller, req.into_inner()).await?;
                Ok(Response::new(MoveShardResponse { header: Some(self.header(revision)), shard: Some(shard) }))
            })
            .await
    }

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, node_id = req.get_ref().node_id))]
    async fn report_shard_status(
        &self,
        req: Request<ReportShardStatusRequest>,
    ) -> Result<Response<ReportShardStatusResponse>, Status> {
        self.ctx
            .observe("Placement/ReportShardStatus", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                self.ctx.check_size(&req)?;
                let revision = self.topics.report(&caller, req).await?;
                Ok(Response::new(ReportShardStatusResponse { header: Some(self.header(revision)) }))
            })
            .await
    }

    type WatchAssignmentsStream = ResponseStream<WatchAssignmentsResponse>;

    #[instrument(skip_all, fields(cluster = %req.get_ref().cluster, broker = req.get_ref().broker))]
    async fn watch_assignments(
        &self,
        req: Request<WatchAssignmentsRequest>,
    ) -> Result<Response<Self::WatchAssignmentsStream>, Status> {
        self.ctx
            .observe("Placement/WatchAssignments", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                placement::check_node(&req.cluster, req.broker).map_err(ApiError::from)?;
                let (key, end) = crate::placement::topics::shards_range(&req.cluster, "");
                self.ctx.check(&caller, Access::Read, &key, &end).await?;
                let (out, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
                let mut start = req.start_revision;
                if start <= 0 {
                    // The whole assignment first, then the changes after it.
                    self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                    let (assignments, revision) = {
                        let state = read_state(self.ctx.node.state());
                        (super::topics::assignments(&state, &req.cluster, req.broker), state.revision())
                    };
                    let first =
                        WatchAssignmentsResponse { header: Some(self.header(revision)), snapshot: true, assignments };
                    let _ = out.try_send(Ok(first));
                    start = revision + 1;
                }
                let (ctx, broker) = (self.ctx.clone(), req.broker);
                let respond: Respond<WatchAssignmentsResponse> = Box::new(move |revision, events| {
                    let assignments = super::topics::assignment_changes(broker, revision, events);
                    (!assignments.is_empty()).then(|| WatchAssignmentsResponse {
                        header: Some(header(&ctx, revision)),
                        snapshot: false,
                        assignments,
                    })
                });
                let watch = Follow { ctx: self.ctx.clone(), range: (key, end), out, respond };
                runtime::spawn_detached("watch-assignments", watch.run(start));
                let stream: Self::WatchAssignmentsStream = Box::pin(receiver_stream(rx));
                Ok(Response::new(stream))
            })
            .await
    }
}
