//! etcd's `Cluster` service (read side): the members as Raft's membership
//! has them. Changing membership (add, promote, remove) is not served yet:
//! those calls answer gRPC Unimplemented.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::ApiContext;
use super::ApiError;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{Member, MemberListRequest, MemberListResponse};
use crate::raft::state_store::read_state;

/// The Cluster service of one node.
pub struct ClusterService {
    ctx: Arc<ApiContext>,
}

impl ClusterService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }
}

/// A member as etcd describes it: URLs with their scheme.
pub fn member(id: u64, m: &crate::raft::Member, learner: bool) -> Member {
    Member {
        id,
        name: m.name.clone(),
        peer_ur_ls: vec![format!("http://{}", m.peer_addr)],
        client_ur_ls: if m.client_addr.is_empty() { Vec::new() } else { vec![format!("http://{}", m.client_addr)] },
        is_learner: learner,
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    #[instrument(skip_all)]
    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if req.into_inner().linearizable {
            self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
        }
        let metrics = self.ctx.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership.nodes().map(|(id, m)| member(*id, m, !voters.contains(id))).collect();
        let revision = read_state(self.ctx.node.state()).revision();
        Ok(Response::new(MemberListResponse { header: Some(self.ctx.header(revision)), members }))
    }
}
