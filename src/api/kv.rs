//! etcd's `KV` service: Range, Put, DeleteRange, Txn.
//!
//! Writes go through Raft (forwarded to the leader by any node). Reads are
//! linearizable (ReadIndex, then the local applied state) unless the client
//! asks for `serializable`, which reads this node's applied state as is.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::ApiContext;
use super::ApiError;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::proto::raft::v1::command;
use crate::raft::state_store::read_state;
use crate::state::StateError;

/// The KV service of one node.
pub struct KvService {
    ctx: Arc<ApiContext>,
}

impl KvService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    #[instrument(skip_all, fields(serializable = req.get_ref().serializable))]
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        self.ctx
            .observe("KV/Range", async move {
                let caller = self.ctx.caller(&req).await?;
                let req = req.into_inner();
                self.ctx.check_size(&req)?;
                if !req.serializable {
                    self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
                }
                let state = read_state(self.ctx.node.state());
                // Checked after the read index: a revoke committed before
                // this read started is applied here by now.
                state.auth().check_range(caller.user(), &req).map_err(StateError::from).map_err(ApiError::from)?;
                let mut resp = state.range(&req).map_err(ApiError::from)?;
                resp.header = Some(self.ctx.header(state.revision()));
                Ok(Response::new(resp))
            })
            .await
    }

    #[instrument(skip_all)]
    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.ctx
            .observe("KV/Put", async move {
                self.ctx
                    .write(&self.ctx.caller(&req).await?, command::Request::Put(req.into_inner()))
                    .await
                    .map_err(Into::into)
            })
            .await
    }

    #[instrument(skip_all)]
    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        self.ctx
            .observe("KV/DeleteRange", async move {
                self.ctx
                    .write(&self.ctx.caller(&req).await?, command::Request::DeleteRange(req.into_inner()))
                    .await
                    .map_err(Into::into)
            })
            .await
    }

    #[instrument(skip_all)]
    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        self.ctx
            .observe("KV/Txn", async move {
                self.ctx
                    .write(&self.ctx.caller(&req).await?, command::Request::Txn(req.into_inner()))
                    .await
                    .map_err(Into::into)
            })
            .await
    }

    #[instrument(skip_all, fields(revision = req.get_ref().revision))]
    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        self.ctx
            .observe("KV/Compact", async move {
                // Applied on every replica as part of the command: `physical` holds.
                self.ctx
                    .write(&self.ctx.caller(&req).await?, command::Request::Compaction(req.into_inner()))
                    .await
                    .map_err(Into::into)
            })
            .await
    }
}
