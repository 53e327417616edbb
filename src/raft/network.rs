//! The client side of raft.v1: openraft's `RaftNetwork` over tonic, plus the
//! calls a follower makes to its leader. Every RPC has a timeout (a clogged
//! link delays, it does not fail by itself).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use super::types::{Member, NodeId, Snapshot, SnapshotData, TypeConfig, Vote};
use super::{append_stream, codec};
use crate::proto::raft::v1 as pb;
use crate::proto::raft::v1::raft_client::RaftClient;
use crate::runtime::{self, TlsError, TlsSettings};

/// A lazily connecting client to a peer's raft.v1 service, over TLS when
/// `tls` is set (peer TLS: verifies the peer against the peer CA, presents
/// this member's certificate).
pub fn connect(
    peer_addr: &str,
    connect_timeout: Duration,
    tls: Option<&TlsSettings>,
) -> Result<RaftClient<Channel>, TlsError> {
    let endpoint = crate::runtime::endpoint(peer_addr, tls)?.connect_timeout(connect_timeout);
    Ok(RaftClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX))
}

/// The largest raft.v1 message a member decodes. It holds the largest
/// client request (`MAX_REQUEST_BYTES_LIMIT`, alone in its log entry) with
/// room to spare, and more than [`MAX_APPEND_BYTES`].
pub const MAX_PEER_MESSAGE_BYTES: usize = 96 * 1024 * 1024;

/// AppendEntries carry at most this many bytes of entries, unless a single
/// entry is larger (it then goes alone). openraft batches up to 300 entries
/// with no byte limit: at 1 MiB each a batch was past what a follower
/// decodes, and the leader sent it again forever.
pub const MAX_APPEND_BYTES: usize = 16 * 1024 * 1024;

const _: () = assert!(crate::config::MAX_REQUEST_BYTES_LIMIT + 1024 * 1024 <= MAX_PEER_MESSAGE_BYTES);
const _: () = assert!(MAX_APPEND_BYTES < MAX_PEER_MESSAGE_BYTES);

/// How many leading entries of `req` fit in [`MAX_APPEND_BYTES`] (at least
/// one), when not all of them do.
pub fn entries_that_fit(req: &pb::AppendEntriesRequest) -> Option<u64> {
    use prost::Message;
    if req.entries.len() <= 1 || req.encoded_len() <= MAX_APPEND_BYTES {
        return None;
    }
    let mut bytes = 0;
    let fitting = req
        .entries
        .iter()
        .take_while(|entry| {
            bytes += entry.encoded_len() + 8;
            bytes <= MAX_APPEND_BYTES
        })
        .count();
    Some(fitting.max(1) as u64)
}

/// How long a follower's call to its leader (or any leader-only call to a
/// peer) waits for the connection.
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Clients to peers by address, connected on first use and reused.
#[derive(Default)]
pub struct PeerClients {
    clients: Mutex<BTreeMap<String, RaftClient<Channel>>>,
    /// Peer TLS, when the peer port uses it.
    tls: Option<TlsSettings>,
}

impl PeerClients {
    /// Clients that connect with `tls` (peer TLS) when it is set.
    pub fn new(tls: Option<TlsSettings>) -> Self {
        Self { clients: Mutex::default(), tls }
    }

    /// The client for `peer_addr`.
    pub fn get(&self, peer_addr: &str, connect_timeout: Duration) -> Result<RaftClient<Channel>, TlsError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(peer_addr) {
            return Ok(client.clone());
        }
        let client = connect(peer_addr, connect_timeout, self.tls.as_ref())?;
        clients.insert(peer_addr.to_string(), client.clone());
        Ok(client)
    }
}

/// Metadata keys every raft.v1 request carries: the sender's cluster and node,
/// and the cluster token (see `peer_gate`).
pub const CLUSTER_ID_METADATA: &str = "pc-cluster-id";
/// See [`CLUSTER_ID_METADATA`].
pub const FROM_METADATA: &str = "pc-from";
/// See [`CLUSTER_ID_METADATA`]; binary metadata, so any bytes go.
pub const TOKEN_METADATA: &str = "pc-cluster-token-bin";

/// Puts the cluster `token` into request or response metadata (nothing when
/// it is empty: a cluster bootstrapped before tokens has none).
pub fn put_token(metadata: &mut tonic::metadata::MetadataMap, token: &[u8]) {
    if !token.is_empty() {
        metadata.insert_bin(TOKEN_METADATA, tonic::metadata::MetadataValue::from_bytes(token));
    }
}

/// The cluster token in `metadata`, if there is one.
pub fn token_in(metadata: &tonic::metadata::MetadataMap) -> Option<bytes::Bytes> {
    metadata.get_bin(TOKEN_METADATA).and_then(|v| v.to_bytes().ok())
}

/// Who is sending raft.v1 requests: peers refuse messages of another cluster
/// and messages without the cluster's token.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The sender's cluster id.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node_id: NodeId,
    /// The cluster token (empty on clusters bootstrapped before tokens).
    pub token: std::sync::Arc<[u8]>,
}

impl Sender {
    /// Wraps `message` in a request carrying the sender's identity.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        let md = req.metadata_mut();
        md.insert(CLUSTER_ID_METADATA, self.cluster_id.to_string().parse().expect("digits are valid metadata"));
        md.insert(FROM_METADATA, self.node_id.to_string().parse().expect("digits are valid metadata"));
        put_token(md, &self.token);
        req
    }
}

/// Peers that refused this node's Raft messages because it is not a member
/// of their membership: how a removed node that never received its removal
/// learns of it (see `RaftNode::removed`).
pub type Disowned = std::sync::Arc<Mutex<std::collections::BTreeSet<NodeId>>>;

/// The message of a peer's refusal to a non-member (see `RaftService`).
pub const NOT_A_MEMBER: &str = "which is not a member";

/// openraft's network factory.
pub struct Network {
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// This node, as it introduces itself to peers.
    pub sender: Sender,
    /// Shared with the node.
    pub disowned: Disowned,
    /// Peer TLS, when the peer port uses it.
    pub tls: Option<TlsSettings>,
    /// Where each peer's round-trip times go.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        PeerNetwork {
            target,
            sender: self.sender.clone(),
            disowned: self.disowned.clone(),
            client: connect(&node.peer_addr, self.connect_timeout, self.tls.as_ref()).map_err(|e| e.to_string()),
            unary_only: Default::default(),
            round_trip: self.metrics.peer_round_trip(target),
        }
    }
}

/// The connection to one peer.
pub struct PeerNetwork {
    /// The peer's node id, for error reports.
    target: NodeId,
    /// This node's identity, sent with every request.
    sender: Sender,
    /// Peers that said this node is not a member.
    disowned: Disowned,
    /// The client, or why the peer address is unusable.
    client: Result<RaftClient<Channel>, String>,
    /// The peer does not serve AppendStream (a version before it): replicate
    /// one message at a time.
    unary_only: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Time from a replication message to its answer.
    round_trip: crate::metrics::Latency,
}

/// Why a call to a peer failed.
#[derive(Debug)]
enum CallError {
    /// Nothing reached the peer, or no answer came in time: back off.
    Unreachable(String),
    /// The peer answered with an error.
    Network(tonic::Status),
}

impl From<CallError> for RPCError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(msg) => RPCError::Unreachable(Unreachable::from_string(msg)),
            CallError::Network(status) => RPCError::Network(NetworkError::new(&status)),
        }
    }
}

impl From<CallError> for StreamingError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(msg) => StreamingError::Unreachable(Unreachable::from_string(msg)),
            CallError::Network(status) => StreamingError::Network(NetworkError::new(&status)),
        }
    }
}

fn bad_answer(e: super::codec::DecodeError) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::new(&e))
}

impl PeerNetwork {
    fn client(&self) -> Result<RaftClient<Channel>, CallError> {
        self.client.clone().map_err(CallError::Unreachable)
    }

    /// Sends one RPC with a deadline and maps transport failures. The call's
    /// future is boxed at once: a tonic call future is several KiB, and held
    /// inline it would be copied again into every future that awaits this
    /// one (openraft moves each AppendEntries future it makes).
    fn call<'a, T, F>(&'a self, ttl: Duration, fut: F) -> impl std::future::Future<Output = Result<T, CallError>> + 'a
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + 'a,
    {
        let fut = Box::pin(fut);
        async move {
            match crate::runtime::timeout(ttl, fut).await {
                Err(_) => Err(self.silent(ttl)),
                Ok(answer) => answered(&self.disowned, self.target, answer.map(tonic::Response::into_inner)),
            }
        }
    }

    fn silent(&self, ttl: Duration) -> CallError {
        CallError::Unreachable(format!("rpc to node {} timed out after {ttl:?}", self.target))
    }
}

/// Opens an AppendStream carrying `body` (see `append_stream`).
fn open_stream(
    mut client: RaftClient<Channel>,
    body: tonic::Request<append_stream::Body>,
    ttl: Duration,
) -> append_stream::Opening {
    Box::pin(async move {
        match crate::runtime::timeout(ttl, client.append_stream(body)).await {
            Err(_) => Err(append_stream::Stopped::Silent(ttl)),
            Ok(Err(status)) => Err(append_stream::Stopped::Failed(status)),
            Ok(Ok(opened)) => Ok(opened.into_inner()),
        }
    })
}

/// Maps a peer's answer (or its failure), and notes whether it refused this
/// node as a non-member (see [`Disowned`]).
fn answered<T>(disowned: &Disowned, target: NodeId, answer: Result<T, tonic::Status>) -> Result<T, CallError> {
    let refused =
        matches!(&answer, Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains(NOT_A_MEMBER));
    if refused || answer.is_ok() {
        let mut set = disowned.lock().unwrap_or_else(|e| e.into_inner());
        if refused {
            set.insert(target);
        } else {
            set.remove(&target);
        }
    }
    match answer {
        Err(status) if status.code() == tonic::Code::Unavailable => Err(CallError::Unreachable(status.to_string())),
        Err(status) => Err(CallError::Network(status)),
        Ok(answer) => Ok(answer),
    }
}

/// The size of the chunks a snapshot is sent in.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = SnapshotData;

    /// Sends `rpc`, or only the leading entries that fit in
    /// [`MAX_APPEND_BYTES`]: then a follower's success is reported as a
    /// partial one up to the last entry sent, and openraft sends the rest next.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut req = codec::append_req_to_pb(&rpc);
        let mut cut_after = None;
        if let Some(fitting) = entries_that_fit(&req) {
            let fitting = fitting as usize;
            req.entries.truncate(fitting);
            cut_after = Some(rpc.entries[fitting - 1].log_id);
        }
        let mut client = self.client()?;
        let sent = runtime::now();
        let resp = self.call(option.hard_ttl(), client.append_entries(self.sender.request(req))).await?;
        self.round_trip.observe(runtime::now() - sent);
        let resp = codec::append_resp_from_pb(&resp).map_err(bad_answer)?;
        Ok(match (resp, cut_after) {
            (AppendEntriesResponse::Success, Some(last)) => AppendEntriesResponse::PartialSuccess(Some(last)),
            (resp, _) => resp,
        })
    }

    /// Pipelines `input` on one AppendStream (see `append_stream`). A stream
    /// that holds a single message (openraft's heartbeats) goes as a unary
    /// AppendEntries instead, as does everything to a peer without streams.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>, RPCError<TypeConfig>>,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + openraft::OptionalSend + Unpin + 'static,
    {
        if self.unary_only.load(Ordering::Relaxed) || input.size_hint().1 == Some(1) {
            return openraft::network::stream_append_sequential(self, input, option);
        }
        Box::pin(async move {
            use futures::StreamExt;
            let ttl = option.hard_ttl();
            let client = self.client()?;
            let (sender, unary_only) = (self.sender.clone(), self.unary_only.clone());
            let (disowned, target) = (self.disowned.clone(), self.target);
            let open = move |body| open_stream(client, sender.request(body), ttl);
            let answers =
                append_stream::answers(input, ttl, self.round_trip.clone(), open).map(move |answer| match answer {
                    Ok(result) => answered(&disowned, target, Ok(result)).map_err(RPCError::from),
                    Err(append_stream::Stopped::Silent(ttl)) => Err(RPCError::Unreachable(Unreachable::from_string(
                        format!("node {target} answered no AppendStream message within {ttl:?}"),
                    ))),
                    Err(append_stream::Stopped::Failed(status)) if status.code() == tonic::Code::Unimplemented => {
                        unary_only.store(true, Ordering::Relaxed);
                        Err(RPCError::Unreachable(Unreachable::from_string(format!(
                            "node {target} does not serve AppendStream: replicating to it one message at a time"
                        ))))
                    }
                    Err(append_stream::Stopped::Failed(status)) => {
                        answered(&disowned, target, Err(status)).map_err(RPCError::from)
                    }
                    Err(append_stream::Stopped::BadAnswer(why)) => {
                        Err(RPCError::Network(NetworkError::from_string(format!("node {target}: {why}"))))
                    }
                });
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut client = self.client()?;
        let resp = self.call(option.hard_ttl(), client.vote(self.sender.request(codec::vote_req_to_pb(&rpc)))).await?;
        codec::vote_resp_from_pb(&resp).map_err(bad_answer)
    }

    /// Tells the member about a leadership transfer (see `transfer`).
    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut client = self.client()?;
        let resp = self
            .call(option.hard_ttl(), client.transfer_leader(self.sender.request(codec::transfer_req_to_pb(&req))))
            .await?;
        codec::transfer_resp_from_pb(&resp).map_err(bad_answer)
    }

    /// Sends the snapshot in chunks of [`SNAPSHOT_CHUNK_BYTES`] (each with
    /// the RPC's deadline), which the follower puts together and checks
    /// (see `snapshot_receiver`). A follower whose vote is higher stops it.
    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut cancel = std::pin::pin!(cancel);
        let data = snapshot.snapshot;
        let snapshot_id = codec::snapshot_id(&snapshot.meta);
        let mut offset = 0;
        loop {
            let end = (offset + SNAPSHOT_CHUNK_BYTES).min(data.len());
            let chunk = codec::SnapReq {
                vote,
                meta: snapshot.meta.clone(),
                snapshot_id: snapshot_id.clone(),
                offset: offset as u64,
                data: data[offset..end].to_vec(),
                done: end == data.len(),
            };
            if crate::runtime::buggify::buggify("snapshot-chunk-lost") {
                return Err(StreamingError::Network(NetworkError::from_string(format!(
                    "snapshot chunk at {offset} to node {} lost (simulated)",
                    self.target
                ))));
            }
            let mut client = self.client()?;
            let send = self.call(
                option.hard_ttl(),
                client.install_snapshot(self.sender.request(codec::snapshot_req_to_pb(&chunk))),
            );
            let resp = tokio::select! {
                closed = &mut cancel => return Err(StreamingError::Closed(closed)),
                resp = send => resp?,
            };
            let their_vote = resp.vote.as_ref().map(codec::vote_from_pb).ok_or_else(|| {
                StreamingError::Network(NetworkError::from_string(format!(
                    "node {} answered a snapshot chunk without its vote",
                    self.target
                )))
            })?;
            if their_vote > vote || chunk.done {
                return Ok(SnapshotResponse::new(their_vote));
            }
            offset = end;
        }
    }
}

/// Metadata key a leader-only call carries back when the callee is not the leader.
pub const NOT_LEADER_METADATA: &str = "pc-not-leader";

/// What a follower learns from a leader-only call.
#[derive(Debug, Clone)]
pub enum LeaderCall<T> {
    /// The callee answered.
    Done(T),
    /// The callee is not (or no longer) the leader: nothing happened there.
    NotLeader,
    /// The call failed; for a write the outcome is unknown.
    Failed(tonic::Status),
}

impl<T> LeaderCall<T> {
    /// Converts the answer, keeping the failure kinds.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> LeaderCall<U> {
        match self {
            LeaderCall::Done(t) => LeaderCall::Done(f(t)),
            LeaderCall::NotLeader => LeaderCall::NotLeader,
            LeaderCall::Failed(status) => LeaderCall::Failed(status),
        }
    }
}

/// Whether a failed call never reached the peer: the client crate's test,
/// which members share since they are clients of each other.
pub use placement_client::never_sent;

/// Classifies a leader-only call's result.
pub fn leader_call<T>(result: Result<tonic::Response<T>, tonic::Status>) -> LeaderCall<T> {
    match result {
        Ok(resp) => LeaderCall::Done(resp.into_inner()),
        // Nothing happened at the callee: as safe to retry as "not leader".
        Err(status) if status.metadata().contains_key(NOT_LEADER_METADATA) || never_sent(&status) => {
            LeaderCall::NotLeader
        }
        Err(status) => LeaderCall::Failed(status),
    }
}

/// The Forward response as the follower's result type.
pub fn forward_result(resp: pb::ForwardResponse) -> Result<pb::CommandResult, crate::state::StateError> {
    match codec::refusal_from_pb(resp.refused) {
        Some(refused) => Err(refused),
        None => Ok(resp.result.unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sizes: &[usize]) -> pb::AppendEntriesRequest {
        let entries = sizes
            .iter()
            .map(|size| pb::Entry {
                log_id: None,
                payload: Some(pb::entry::Payload::Proposal(pb::Proposal {
                    commands: vec![pb::Command {
                        auth_revision: None,
                        alarm_disarms: None,
                        request: Some(pb::command::Request::Put(crate::proto::etcdserverpb::PutRequest {
                            key: b"k".to_vec(),
                            value: vec![0; *size],
                            ..Default::default()
                        })),
                    }],
                })),
            })
            .collect();
        pb::AppendEntriesRequest { entries, ..Default::default() }
    }

    #[test]
    fn append_entries_past_the_byte_cap_are_cut_to_the_entries_that_fit() {
        const MIB: usize = 1024 * 1024;
        assert_eq!(entries_that_fit(&request(&[MIB; 10])), None);
        assert_eq!(entries_that_fit(&request(&[MIB; 40])), Some(15));
        assert_eq!(entries_that_fit(&request(&[40 * MIB])), None, "a lone entry goes as it is");
        assert_eq!(entries_that_fit(&request(&[40 * MIB, MIB])), Some(1));
    }
}
