//! etcd's `Maintenance` service: Status (what `etcdctl endpoint status`
//! shows), Hash and HashKV (compare members), Defragment, and Snapshot (a
//! consistent backup, see `backup`).

use openraft::async_runtime::WatchReceiver as _;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::ApiContext;
use super::ApiError;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, HashKvRequest,
    HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::proto::raft::v1::command;
use crate::raft::state_store::{read_state, scan_state, snapshot_bytes};

/// Bytes of backup per Snapshot stream message (etcd sends 32 KiB).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// An alarm as Status lists it among a member's errors.
fn alarm_text(alarm: &AlarmMember) -> String {
    let name = AlarmType::try_from(alarm.alarm).map_or("UNKNOWN", |t| t.as_str_name());
    format!("memberID:{} alarm:{name}", alarm.member_id)
}

/// Folds a 64-bit digest into etcd's 32-bit hash field.
fn fold(h: u64) -> u32 {
    (h >> 32) as u32 ^ h as u32
}

/// The etcd API version we speak: clients that check the server version
/// (clientv3, etcdctl) accept 3.5.
pub const ETCD_VERSION: &str = "3.5.0";

/// The Maintenance service of one node.
pub struct MaintenanceService {
    ctx: Arc<ApiContext>,
}

impl MaintenanceService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    #[instrument(skip_all)]
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.ctx
            .observe("Maintenance/Status", async move {
                let node = &self.ctx.node;
                let metrics = node.raft.metrics().borrow_watched().clone();
                let mut errors = Vec::new();
                if let Err(e) = &metrics.running_state {
                    errors.push(format!("raft stopped: {e}"));
                }
                if metrics.current_leader.is_none() {
                    errors.push("etcdserver: no leader".to_string());
                }
                let db_size = node.storage_bytes().unwrap_or_else(|e| {
                    errors.push(format!("storage size unknown: {e}"));
                    0
                });
                let (revision, in_use) = {
                    let state = read_state(node.state());
                    // etcd lists raised alarms among a member's errors.
                    errors.extend(state.alarms().iter().map(alarm_text));
                    (state.revision(), state.size_bytes())
                };
                let learner = !node.is_voter();
                Ok(Response::new(StatusResponse {
                    header: Some(self.ctx.header(revision)),
                    version: ETCD_VERSION.to_string(),
                    db_size: db_size as i64,
                    leader: metrics.current_leader.unwrap_or(0),
                    // openraft's metrics carry no commit index: the last log index
                    // is this member's Raft index (committed or not).
                    raft_index: metrics.last_log_index.unwrap_or(0),
                    raft_term: metrics.current_term,
                    raft_applied_index: metrics.last_applied.map_or(0, |id| id.index),
                    errors,
                    db_size_in_use: in_use as i64,
                    is_learner: learner,
                }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn defragment(&self, req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.ctx
            .observe("Maintenance/Defragment", async move {
                // Root only, as in etcd.
                self.ctx.admin(&req).await?;
                let node = self.ctx.node.clone();
                node.defragment().await.map_err(ApiError::from)?;
                let revision = read_state(node.state()).revision();
                Ok(Response::new(DefragmentResponse { header: Some(self.ctx.header(revision)) }))
            })
            .await
    }

    /// A digest of this member's whole state machine (keys, history, leases)
    /// at its applied index: equal on members that applied the same entries.
    #[instrument(skip_all)]
    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.ctx
            .observe("Maintenance/Hash", async move {
                self.ctx.admin(&req).await?;
                let (revision, hash) = scan_state(self.ctx.node.state(), |state| (state.revision(), state.hash()))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                Ok(Response::new(HashResponse { header: Some(self.ctx.header(revision)), hash: fold(hash) }))
            })
            .await
    }

    /// A digest of the keys as of `revision` (0: now): members agree on it for
    /// any revision they all keep, whatever else they applied since.
    #[instrument(skip_all)]
    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.ctx
            .observe("Maintenance/HashKV", async move {
                self.ctx.admin(&req).await?;
                let asked = req.into_inner().revision;
                let (current, at, hash, compact_revision) = scan_state(self.ctx.node.state(), move |state| {
                    let current = state.revision();
                    let at = if asked <= 0 { current } else { asked };
                    (current, at, state.hash_kv(at), state.compact_revision())
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
                let hash = hash.map_err(ApiError::from)?;
                Ok(Response::new(HashKvResponse {
                    header: Some(self.ctx.header(current)),
                    hash,
                    compact_revision,
                    hash_revision: at,
                }))
            })
            .await
    }

    type SnapshotStream = super::context::ResponseStream<SnapshotResponse>;

    /// A backup of the state machine as of now, in 32 KiB messages; the first
    /// header's revision is the revision of the backup.
    #[instrument(skip_all)]
    async fn snapshot(&self, req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.ctx
            .observe("Maintenance/Snapshot", async move {
                self.ctx.admin(&req).await?;
                let (revision, file) = scan_state(self.ctx.node.state(), |state| {
                    (state.revision(), crate::backup::encode(&snapshot_bytes(&state)))
                })
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
                let header = self.ctx.header(revision);
                let total = file.len();
                let messages: Vec<Result<SnapshotResponse, Status>> = file
                    .chunks(SNAPSHOT_CHUNK)
                    .scan(0usize, |sent, chunk| {
                        *sent += chunk.len();
                        Some(Ok(SnapshotResponse {
                            header: Some(header),
                            remaining_bytes: (total - *sent) as u64,
                            blob: chunk.to_vec(),
                            version: ETCD_VERSION.to_string(),
                        }))
                    })
                    .collect();
                let stream: Self::SnapshotStream = Box::pin(futures::stream::iter(messages));
                Ok(Response::new(stream))
            })
            .await
    }

    /// etcd's Alarm: GET lists the raised alarms (linearizably); ACTIVATE and
    /// DEACTIVATE raise and clear one (root only with auth on), replicated.
    #[instrument(skip_all)]
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        self.ctx
            .observe("Maintenance/Alarm", async move {
                let caller = self.ctx.admin(&req).await?;
                let req = req.into_inner();
                if AlarmAction::try_from(req.action) == Ok(AlarmAction::Get) {
                    self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                    let state = read_state(self.ctx.node.state());
                    let alarms = state
                        .alarms()
                        .into_iter()
                        .filter(|a| req.member_id == 0 || a.member_id == req.member_id)
                        .filter(|a| req.alarm == AlarmType::None as i32 || a.alarm == req.alarm)
                        .collect();
                    return Ok(Response::new(AlarmResponse {
                        header: Some(self.ctx.header(state.revision())),
                        alarms,
                    }));
                }
                Ok(self.ctx.write(&caller, command::Request::Alarm(req)).await?)
            })
            .await
    }

    #[instrument(skip_all)]
    async fn move_leader(&self, req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.ctx
            .observe("Maintenance/MoveLeader", async move {
                self.ctx.admin(&req).await?;
                let target = req.into_inner().target_id;
                self.ctx.node.transfer_leadership(target).await.map_err(ApiError::from)?;
                let revision = read_state(self.ctx.node.state()).revision();
                Ok(Response::new(MoveLeaderResponse { header: Some(self.ctx.header(revision)) }))
            })
            .await
    }
}
