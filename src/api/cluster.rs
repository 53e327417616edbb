//! etcd's `Cluster` service: the members as Raft's membership has them, and
//! member changes (add, promote, remove, update), which the leader checks and
//! makes (see `raft::membership`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::ApiContext;
use super::ApiError;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::raft::membership::MemberChange;
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

/// A member as etcd describes it: URLs with their scheme; until the member
/// itself published that it runs, no name and no client URLs (etcdctl then
/// shows it "unstarted", and a node joining as it knows it may take it).
pub fn member(id: u64, m: &crate::raft::Member, learner: bool) -> Member {
    let client_ur_ls =
        if m.client_addr.is_empty() || !m.started { Vec::new() } else { vec![format!("http://{}", m.client_addr)] };
    Member {
        id,
        name: if m.started { m.name.clone() } else { String::new() },
        peer_ur_ls: vec![format!("http://{}", m.peer_addr)],
        client_ur_ls,
        is_learner: learner,
    }
}

/// The one peer address of a member change request, from its URL
/// (`http://host:port`); etcd's error when there is not exactly one.
pub fn peer_addr(urls: &[String]) -> Result<String, Status> {
    let bad = || Status::invalid_argument("etcdserver: given member URLs are invalid");
    let [url] = urls else { return Err(bad()) };
    let addr = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or_else(bad)?;
    let addr = addr.trim_end_matches('/');
    if !crate::raft::membership::valid_addr(addr) {
        return Err(bad());
    }
    Ok(addr.to_string())
}

impl ClusterService {
    /// Hands the cluster token to a caller that could change the membership
    /// (a joining node learns it so: see `join`).
    fn with_token<T>(&self, mut response: Response<T>) -> Response<T> {
        crate::raft::network::put_token(response.metadata_mut(), self.ctx.node.cluster_token());
        response
    }

    /// Refuses a membership request that names another cluster's token (a
    /// node joining the wrong cluster), before anything changes.
    fn check_token<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(theirs) = crate::raft::network::token_in(req.metadata()) else { return Ok(()) };
        let ours = self.ctx.node.cluster_token();
        if ours.is_empty() || crate::raft::peer_gate::same_secret(&theirs, ours) {
            return Ok(());
        }
        Err(Status::permission_denied("the joining node's initial_cluster_token is not this cluster's"))
    }

    /// Membership changes are root's (etcd's rule), or a joining node's:
    /// one that proves it holds this cluster's token.
    async fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let ours = self.ctx.node.cluster_token();
        let joining = crate::raft::network::token_in(req.metadata())
            .is_some_and(|theirs| !ours.is_empty() && crate::raft::peer_gate::same_secret(&theirs, ours));
        if !joining {
            self.ctx.admin(req).await?;
        }
        Ok(())
    }

    /// Makes `change` through the leader.
    async fn change(&self, change: MemberChange) -> Result<u64, Status> {
        Ok(self.ctx.node.change_members(change).await.map_err(ApiError::from)?)
    }

    /// The header and every member, as this node sees them after it has
    /// caught up with the leader (so a change just made is included).
    async fn members(&self, after_change: bool) -> Result<(ResponseHeader, Vec<Member>), Status> {
        if after_change {
            self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
        }
        let members = self.ctx.node.members().iter().map(|(id, m, learner)| member(*id, m, *learner)).collect();
        let revision = read_state(self.ctx.node.state()).revision();
        Ok((self.ctx.header(revision), members))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    #[instrument(skip_all)]
    async fn member_list(&self, req: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        self.ctx
            .observe("Cluster/MemberList", async move {
                let (header, members) = self.members(req.into_inner().linearizable).await?;
                Ok(Response::new(MemberListResponse { header: Some(header), members }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn member_add(&self, req: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.ctx
            .observe("Cluster/MemberAdd", async move {
                self.check_token(&req)?;
                self.authorize(&req).await?;
                let req = req.into_inner();
                let peer_addr = peer_addr(&req.peer_ur_ls)?;
                // etcd: a member's name and client URLs are empty until it starts.
                let new =
                    crate::raft::Member { name: String::new(), peer_addr, client_addr: String::new(), started: false };
                let id = self.change(MemberChange::Add { member: new, learner: req.is_learner }).await?;
                let (header, members) = self.members(true).await?;
                let added = members.iter().find(|m| m.id == id).cloned();
                Ok(self.with_token(Response::new(MemberAddResponse { header: Some(header), member: added, members })))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn member_remove(&self, req: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        self.ctx
            .observe("Cluster/MemberRemove", async move {
                self.ctx.admin(&req).await?;
                self.change(MemberChange::Remove(req.into_inner().id)).await?;
                let (header, members) = self.members(true).await?;
                Ok(Response::new(MemberRemoveResponse { header: Some(header), members }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn member_update(&self, req: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        self.ctx
            .observe("Cluster/MemberUpdate", async move {
                self.check_token(&req)?;
                self.authorize(&req).await?;
                let req = req.into_inner();
                let peer_addr = peer_addr(&req.peer_ur_ls)?;
                let change = MemberChange::Update {
                    id: req.id,
                    peer_addr: Some(peer_addr),
                    name: None,
                    client_addr: None,
                    started: false,
                };
                self.change(change).await?;
                let (header, members) = self.members(true).await?;
                Ok(self.with_token(Response::new(MemberUpdateResponse { header: Some(header), members })))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.ctx
            .observe("Cluster/MemberPromote", async move {
                self.ctx.admin(&req).await?;
                self.change(MemberChange::Promote(req.into_inner().id)).await?;
                let (header, members) = self.members(true).await?;
                Ok(Response::new(MemberPromoteResponse { header: Some(header), members }))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_change_takes_exactly_one_http_peer_url() {
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(peer_addr(&urls(&["http://127.0.0.1:2480"])).unwrap(), "127.0.0.1:2480");
        assert_eq!(peer_addr(&urls(&["https://10.0.0.1:2380/"])).unwrap(), "10.0.0.1:2380");
        for bad in [&[][..], &["127.0.0.1:2480"], &["http://127.0.0.1"], &["http://a:1", "http://b:2"]] {
            let status = peer_addr(&urls(bad)).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert_eq!(status.message(), "etcdserver: given member URLs are invalid");
        }
    }
}
