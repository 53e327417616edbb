//! etcd's `Lease` service. Grant and revoke go through Raft; keepalives and
//! time-to-live are answered by the leader, which alone keeps deadlines (see
//! `raft::lessor`); a follower asks it.

use std::sync::Arc;

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::instrument;

use super::context::{receiver_stream, ApiContext};
use super::ApiError;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::proto::raft::v1::command;
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{Access, StateError};

/// The Lease service of one node.
pub struct LeaseService {
    ctx: Arc<ApiContext>,
    /// Shorter TTLs are raised to this (etcd: 1.5 election timeouts, in whole
    /// seconds), so that a lease survives a leader election.
    min_ttl: i64,
}

impl LeaseService {
    /// The service; `min_ttl` in seconds.
    pub fn new(ctx: Arc<ApiContext>, min_ttl: i64) -> Self {
        Self { ctx, min_ttl }
    }

    fn current_revision(&self) -> i64 {
        read_state(self.ctx.node.state()).revision()
    }
}

type KeepAliveStream = super::context::ResponseStream<LeaseKeepAliveResponse>;

#[tonic::async_trait]
impl Lease for LeaseService {
    #[instrument(skip_all, fields(ttl = req.get_ref().ttl, id = req.get_ref().id))]
    async fn lease_grant(&self, req: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        self.ctx
            .observe("Lease/LeaseGrant", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                self.ctx.grant_lease(&caller, req.ttl.max(self.min_ttl), req.id).await.map_err(Into::into)
            })
            .await
    }

    #[instrument(skip_all, fields(id = req.get_ref().id))]
    async fn lease_revoke(&self, req: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.ctx
            .observe("Lease/LeaseRevoke", async move {
                self.ctx
                    .write(&self.ctx.caller(&req).await?, command::Request::LeaseRevoke(req.into_inner()))
                    .await
                    .map_err(Into::into)
            })
            .await
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.ctx
            .observe("Lease/LeaseKeepAlive", async move {
                self.ctx.authenticated(&req).await?;
                let (out, rx) = tokio::sync::mpsc::channel(16);
                runtime::spawn_detached("lease-keepalive", keep_alive(self.ctx.clone(), req.into_inner(), out));
                let stream: Self::LeaseKeepAliveStream = Box::pin(receiver_stream(rx));
                Ok(Response::new(stream))
            })
            .await
    }

    #[instrument(skip_all, fields(id = req.get_ref().id))]
    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.ctx
            .observe("Lease/LeaseTimeToLive", async move {
                let caller = self.ctx.authenticated(&req).await?;
                let req = req.into_inner();
                let ttl = self.ctx.node.lease_ttl(req.id).await.map_err(ApiError::from)?;
                let Some(ttl) = ttl else {
                    // etcd answers an unknown lease with TTL -1, not an error.
                    return Ok(Response::new(LeaseTimeToLiveResponse {
                        header: Some(self.ctx.header(self.current_revision())),
                        id: req.id,
                        ttl: -1,
                        ..Default::default()
                    }));
                };
                let keys = if req.keys {
                    self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                    let state = read_state(self.ctx.node.state());
                    let keys: Vec<Vec<u8>> =
                        state.leases().get(&req.id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default();
                    // Listing a lease's keys reads them (etcd 3.5's rule).
                    for key in &keys {
                        state
                            .auth()
                            .check(caller.user(), Access::Read, key, &[])
                            .map_err(|e| ApiError::from(StateError::from(e)))?;
                    }
                    keys
                } else {
                    Vec::new()
                };
                Ok(Response::new(LeaseTimeToLiveResponse {
                    header: Some(self.ctx.header(self.current_revision())),
                    id: req.id,
                    ttl: ttl.remaining,
                    granted_ttl: ttl.granted,
                    keys,
                }))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn lease_leases(&self, req: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.ctx
            .observe("Lease/LeaseLeases", async move {
                self.ctx.authenticated(&req).await?;
                self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                let state = read_state(self.ctx.node.state());
                let leases = state.leases().keys().map(|id| LeaseStatus { id: *id }).collect();
                Ok(Response::new(LeaseLeasesResponse { header: Some(self.ctx.header(state.revision())), leases }))
            })
            .await
    }
}

/// Answers one keepalive stream, one response per request in order, until
/// the client closes it, an error ends it, or the node shuts down.
async fn keep_alive(
    ctx: Arc<ApiContext>,
    mut requests: Streaming<LeaseKeepAliveRequest>,
    out: tokio::sync::mpsc::Sender<Result<LeaseKeepAliveResponse, Status>>,
) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let req = tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            req = requests.next() => req,
        };
        let answer = match req {
            None => return,
            Some(Err(status)) => Err(status),
            Some(Ok(req)) => match ctx.node.renew_lease(req.id).await {
                Ok(ttl) => {
                    let revision = read_state(ctx.node.state()).revision();
                    Ok(LeaseKeepAliveResponse { header: Some(ctx.header(revision)), id: req.id, ttl })
                }
                Err(e) => Err(ApiError::from(e).into()),
            },
        };
        let failed = answer.is_err();
        if out.send(answer).await.is_err() || failed {
            return;
        }
    }
}
