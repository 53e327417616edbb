//! etcd's `Maintenance` service: Status, what `etcdctl endpoint status` shows.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::ApiContext;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{StatusRequest, StatusResponse};
use crate::raft::state_store::read_state;

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
        let node = &self.ctx.node;
        let metrics = node.raft.metrics().borrow().clone();
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
            (state.revision(), state.size_bytes())
        };
        let learner = !metrics.membership_config.membership().voter_ids().any(|id| id == node.id);
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
    }
}
