//! etcd's `KV` service: Range, Put, DeleteRange, Txn.
//!
//! Writes go through Raft (forwarded to the leader by any node). Reads are
//! linearizable (ReadIndex, then the local applied state) unless the client
//! asks for `serializable`, which reads this node's applied state as is.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::instrument;

use super::context::{unexpected, ApiContext};
use super::ApiError;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::response_op::Response as Op;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::raft::v1::{command, command_result};
use crate::raft::state_store::read_state;

/// The KV service of one node.
pub struct KvService {
    ctx: Arc<ApiContext>,
}

impl KvService {
    /// The service over a node's context.
    pub fn new(ctx: Arc<ApiContext>) -> Self {
        Self { ctx }
    }

    /// Fills the header of every response nested in a txn, as etcd does.
    fn fill_txn_headers(&self, txn: &mut TxnResponse, header: &ResponseHeader) {
        txn.header = Some(*header);
        for op in &mut txn.responses {
            match &mut op.response {
                Some(Op::ResponseRange(r)) => r.header = Some(*header),
                Some(Op::ResponsePut(r)) => r.header = Some(*header),
                Some(Op::ResponseDeleteRange(r)) => r.header = Some(*header),
                Some(Op::ResponseTxn(t)) => self.fill_txn_headers(t, header),
                None => {}
            }
        }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    #[instrument(skip_all, fields(serializable = req.get_ref().serializable))]
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        self.ctx.check_size(&req)?;
        if !req.serializable {
            self.ctx.node.read_barrier().await.map_err(ApiError::from)?;
        }
        let state = read_state(self.ctx.node.state());
        let mut resp = state.range(&req).map_err(ApiError::from)?;
        resp.header = Some(self.ctx.header(state.revision()));
        Ok(Response::new(resp))
    }

    #[instrument(skip_all)]
    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let result = self.ctx.propose(command::Request::Put(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::Put(mut resp)) => {
                resp.header = Some(self.ctx.header(result.revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }

    #[instrument(skip_all)]
    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let result = self.ctx.propose(command::Request::DeleteRange(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::DeleteRange(mut resp)) => {
                resp.header = Some(self.ctx.header(result.revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }

    #[instrument(skip_all)]
    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let result = self.ctx.propose(command::Request::Txn(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::Txn(mut resp)) => {
                let header = self.ctx.header(result.revision);
                self.fill_txn_headers(&mut resp, &header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }

    #[instrument(skip_all, fields(revision = req.get_ref().revision))]
    async fn compact(&self, req: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        // Applied on every replica as part of the command: `physical` holds.
        let result = self.ctx.propose(command::Request::Compaction(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::Compaction(mut resp)) => {
                resp.header = Some(self.ctx.header(result.revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }
}
