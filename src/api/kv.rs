//! etcd's `KV` service: Range, Put, DeleteRange, Txn.
//!
//! Writes go through Raft (forwarded to the leader by any node). Reads are
//! linearizable (ReadIndex, then the local applied state) unless the client
//! asks for `serializable`, which reads this node's applied state as is.

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::ApiError;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::response_op::Response as Op;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, ResponseHeader,
    TxnRequest, TxnResponse,
};
use crate::proto::raft::v1::{command, command_result, Command, CommandResult};
use crate::raft::state_store::read_state;
use crate::raft::RaftNode;
use crate::state::KvState;

/// The KV service of one node.
pub struct KvService {
    /// The Raft node requests go through.
    node: Arc<RaftNode>,
    /// Requests larger than this are refused (etcd's --max-request-bytes).
    max_request_bytes: usize,
}

impl KvService {
    /// The service over `node`.
    pub fn new(node: Arc<RaftNode>, max_request_bytes: usize) -> Self {
        Self { node, max_request_bytes }
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.id,
            revision,
            raft_term: self.node.term(),
        }
    }

    fn check_size(&self, req: &impl Message) -> Result<(), ApiError> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(())
    }

    /// Checks and proposes a write; the size limit applies to what is proposed.
    async fn write(&self, request: command::Request) -> Result<CommandResult, ApiError> {
        let command = Command { request: Some(request) };
        self.check_size(&command)?;
        // Refuse before a Raft round trip what every replica would refuse.
        KvState::validate(&command)?;
        Ok(self.node.propose(command).await?)
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

fn unexpected(result: &CommandResult) -> Status {
    Status::internal(format!("etcdserver: unexpected apply result {:?}", result.response))
}

#[tonic::async_trait]
impl Kv for KvService {
    #[instrument(skip_all, fields(serializable = req.get_ref().serializable))]
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let req = req.into_inner();
        self.check_size(&req)?;
        if !req.serializable {
            self.node.read_barrier().await.map_err(ApiError::from)?;
        }
        let state = read_state(self.node.state());
        let mut resp = state.range(&req).map_err(ApiError::from)?;
        resp.header = Some(self.header(state.revision()));
        Ok(Response::new(resp))
    }

    #[instrument(skip_all)]
    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let result = self.write(command::Request::Put(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::Put(mut resp)) => {
                resp.header = Some(self.header(result.revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }

    #[instrument(skip_all)]
    async fn delete_range(&self, req: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        let result = self.write(command::Request::DeleteRange(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::DeleteRange(mut resp)) => {
                resp.header = Some(self.header(result.revision));
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }

    #[instrument(skip_all)]
    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let result = self.write(command::Request::Txn(req.into_inner())).await?;
        match result.response {
            Some(command_result::Response::Txn(mut resp)) => {
                let header = self.header(result.revision);
                self.fill_txn_headers(&mut resp, &header);
                Ok(Response::new(resp))
            }
            _ => Err(unexpected(&result)),
        }
    }
}
