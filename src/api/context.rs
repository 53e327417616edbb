//! What every client-facing service shares: the node, the request size
//! limit, response headers and the path of a write through Raft.

use std::sync::Arc;

use prost::Message;

use super::ApiError;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::raft::v1::{command, Command, CommandResult};
use crate::raft::RaftNode;
use crate::runtime::Shutdown;
use crate::state::KvState;

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

/// An apply result of another kind than the request's: a bug, never a client error.
pub fn unexpected(result: &CommandResult) -> tonic::Status {
    tonic::Status::internal(format!("etcdserver: unexpected apply result {:?}", result.response))
}

/// The items of `rx` as a stream (a gRPC streaming response).
pub fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
