//! What every client-facing service shares: the node, the request size
//! limit, response headers and the path of a write through Raft.

use std::sync::Arc;

use prost::Message;
use rand::Rng;

use super::ApiError;
use crate::proto::etcdserverpb::response_op::Response as Op;
use crate::proto::etcdserverpb::{
    CompactionResponse, DeleteRangeResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeResponse, PutResponse,
    ResponseHeader, TxnResponse,
};
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::proto::raft::v1::{command, Command, CommandResult};
use crate::raft::RaftNode;
use crate::runtime::Shutdown;
use crate::state::{KvState, StateError};

/// A server-streaming response, as the generated service traits want it.
pub type ResponseStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// Shared by the services of one node.
pub struct ApiContext {
    /// The Raft node requests go through.
    pub node: Arc<RaftNode>,
    /// Requests larger than this are refused (etcd's --max-request-bytes).
    pub max_request_bytes: usize,
    /// Ends long-lived streams (watch, keepalive) when the node shuts down:
    /// the gRPC server waits for open streams before it stops.
    pub shutdown: Shutdown,
}

impl ApiContext {
    /// The context over `node`.
    pub fn new(node: Arc<RaftNode>, max_request_bytes: usize, shutdown: Shutdown) -> Arc<Self> {
        Arc::new(Self { node, max_request_bytes, shutdown })
    }

    /// Runs one gRPC call's `work`, counting it and its latency under `method`.
    pub async fn observe<T>(
        &self,
        method: &'static str,
        work: impl std::future::Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        let started = crate::runtime::now();
        let result = work.await;
        let code = result.as_ref().err().map_or("OK", |s| crate::metrics::code_name(s.code()));
        self.node.metrics().request(method, code, crate::runtime::now() - started);
        result
    }

    /// A response header at `revision`.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.node.cluster_id(),
            member_id: self.node.id,
            revision,
            raft_term: self.node.term(),
        }
    }

    /// Refuses a request above the size limit.
    pub fn check_size(&self, req: &impl Message) -> Result<(), ApiError> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(ApiError::RequestTooLarge);
        }
        Ok(())
    }

    /// Checks and proposes a write; the size limit applies to what is proposed.
    pub async fn propose(&self, request: command::Request) -> Result<CommandResult, ApiError> {
        let command = Command { request: Some(request) };
        self.check_size(&command)?;
        // Refuse before a Raft round trip what every replica would refuse.
        KvState::validate(&command)?;
        Ok(self.node.propose(command).await?)
    }
}

impl ApiContext {
    /// Proposes a write and answers with its response, header filled in.
    pub async fn write<T: WriteResponse>(&self, request: command::Request) -> Result<tonic::Response<T>, ApiError> {
        let CommandResult { revision, response } = self.propose(request).await?;
        match response.map(T::pick) {
            Some(Ok(mut resp)) => {
                resp.set_header(self.header(revision));
                Ok(tonic::Response::new(resp))
            }
            Some(Err(other)) => Err(ApiError::UnexpectedResult(format!("{other:?}"))),
            None => Err(ApiError::UnexpectedResult("none".to_string())),
        }
    }
}

impl ApiContext {
    /// Grants a lease of `ttl` seconds with id `id`, or with an id picked here
    /// when `id` is 0: the proposer picks it, so every replica applies the
    /// same one, and a random pick that collides is retried with another.
    pub async fn grant_lease(&self, ttl: i64, id: i64) -> Result<tonic::Response<LeaseGrantResponse>, ApiError> {
        let attempts = if id == 0 { 3 } else { 1 };
        for attempt in 1..=attempts {
            let id = if id == 0 { crate::runtime::rng().gen_range(1..i64::MAX) } else { id };
            match self.write(command::Request::LeaseGrant(LeaseGrantRequest { ttl, id })).await {
                Err(ApiError::State(StateError::LeaseExists)) if attempt < attempts => continue,
                answer => return answer,
            }
        }
        Err(ApiError::State(StateError::LeaseExists))
    }
}

/// A response to a write, as carried in the apply result.
pub trait WriteResponse: Sized {
    /// This kind of response out of an apply result (or the result back).
    fn pick(applied: Applied) -> Result<Self, Applied>;
    /// Sets the header (and those of nested responses, as etcd does).
    fn set_header(&mut self, header: ResponseHeader);
}

macro_rules! write_response {
    ($($variant:ident => $ty:ty),* $(,)?) => {$(
        impl WriteResponse for $ty {
            fn pick(applied: Applied) -> Result<Self, Applied> {
                match applied {
                    Applied::$variant(resp) => Ok(resp),
                    other => Err(other),
                }
            }
            fn set_header(&mut self, header: ResponseHeader) {
                self.header = Some(header);
            }
        }
    )*};
}

write_response!(
    Put => PutResponse,
    DeleteRange => DeleteRangeResponse,
    Compaction => CompactionResponse,
    LeaseGrant => LeaseGrantResponse,
    LeaseRevoke => LeaseRevokeResponse,
);

impl WriteResponse for TxnResponse {
    fn pick(applied: Applied) -> Result<Self, Applied> {
        match applied {
            Applied::Txn(resp) => Ok(resp),
            other => Err(other),
        }
    }

    fn set_header(&mut self, header: ResponseHeader) {
        self.header = Some(header);
        for op in &mut self.responses {
            match &mut op.response {
                Some(Op::ResponseRange(r)) => r.header = Some(header),
                Some(Op::ResponsePut(r)) => r.header = Some(header),
                Some(Op::ResponseDeleteRange(r)) => r.header = Some(header),
                Some(Op::ResponseTxn(t)) => t.set_header(header),
                None => {}
            }
        }
    }
}

/// The items of `rx` as a stream (a gRPC streaming response).
pub fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
