//! etcd's JSON gateway, on the client port beside gRPC: `POST /v3/kv/range`
//! with `{"key":"Zm9v"}` answers what `etcdserverpb.KV/Range` answers, as
//! JSON. Scripts, health probes and languages without a gRPC client use it.
//!
//! The gateway is a client of the gRPC services on the same listener: a
//! request's JSON becomes the protobuf request, which is sent (with the
//! caller's `authorization` header and its connection's TLS identity) to the
//! gRPC routes in this process, and the protobuf answer becomes JSON. So
//! every check, limit and error of the gRPC API holds for the gateway too.
//!
//! The mapping is etcd's (grpc-gateway with the proto field names): bytes as
//! base64, 64-bit integers as strings, enums by name, default values left
//! out; errors as `{"error","code","message"}` with the HTTP status
//! grpc-gateway gives the gRPC code; a streaming answer as one
//! `{"result":...}` line per message (`{"error":{...}}` when it fails).
//! Routes: `method`; `/v1/placement/...` is our placement API's twin.
//! `GET /version` and `GET /health` answer as etcd's do.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use serde_json::{json, Value};
use tonic::body::Body;
use tonic::{Code, Status};

use crate::raft::RaftNode;
use crate::runtime::RoutesService;

/// How a gateway route's gRPC method streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One request, one answer.
    Unary,
    /// One request, a stream of answers.
    ServerStream,
    /// Requests (one JSON object after another in the body) and answers;
    /// `hold_open`: the gRPC request stream stays open after the body ends,
    /// until the caller hangs up (a watch made by one `curl -d` goes on).
    Bidi { hold_open: bool },
}

/// A gateway route: the gRPC method and its message codecs.
struct Method {
    grpc: &'static str,
    shape: Shape,
    /// The request's JSON as protobuf.
    encode: fn(&[u8]) -> Result<Vec<u8>, String>,
    /// An answer's protobuf as JSON text.
    decode: fn(&[u8]) -> Result<Vec<u8>, String>,
}

fn encode<T: serde::de::DeserializeOwned + prost::Message + Default>(json: &[u8]) -> Result<Vec<u8>, String> {
    let json = json.trim_ascii();
    let message: T =
        if json.is_empty() { T::default() } else { serde_json::from_slice(json).map_err(|e| e.to_string())? };
    Ok(message.encode_to_vec())
}

fn decode<T: serde::Serialize + prost::Message + Default>(proto: &[u8]) -> Result<Vec<u8>, String> {
    let message = T::decode(proto).map_err(|e| e.to_string())?;
    serde_json::to_vec(&message).map_err(|e| e.to_string())
}

macro_rules! route {
    ($grpc:literal, $shape:expr, $req:ty, $resp:ty) => {
        Method { grpc: $grpc, shape: $shape, encode: encode::<$req>, decode: decode::<$resp> }
    };
}

/// The route of `path`: etcd 3.5's gateway paths (with their `/v3/kv/lease`
/// aliases), and the placement API's under `/v1/placement`.
fn method(path: &str) -> Option<Method> {
    use crate::proto::etcdserverpb as e;
    use crate::proto::placement::v1 as p;
    use Shape::{Bidi, ServerStream, Unary};
    Some(match path {
        "/v3/kv/range" => route!("/etcdserverpb.KV/Range", Unary, e::RangeRequest, e::RangeResponse),
        "/v3/kv/put" => route!("/etcdserverpb.KV/Put", Unary, e::PutRequest, e::PutResponse),
        "/v3/kv/deleterange" => {
            route!("/etcdserverpb.KV/DeleteRange", Unary, e::DeleteRangeRequest, e::DeleteRangeResponse)
        }
        "/v3/kv/txn" => route!("/etcdserverpb.KV/Txn", Unary, e::TxnRequest, e::TxnResponse),
        "/v3/kv/compaction" => route!("/etcdserverpb.KV/Compact", Unary, e::CompactionRequest, e::CompactionResponse),
        "/v3/watch" => route!("/etcdserverpb.Watch/Watch", Bidi { hold_open: true }, e::WatchRequest, e::WatchResponse),
        "/v3/lease/grant" => {
            route!("/etcdserverpb.Lease/LeaseGrant", Unary, e::LeaseGrantRequest, e::LeaseGrantResponse)
        }
        "/v3/lease/revoke" | "/v3/kv/lease/revoke" => {
            route!("/etcdserverpb.Lease/LeaseRevoke", Unary, e::LeaseRevokeRequest, e::LeaseRevokeResponse)
        }
        "/v3/lease/keepalive" => route!(
            "/etcdserverpb.Lease/LeaseKeepAlive",
            Bidi { hold_open: false },
            e::LeaseKeepAliveRequest,
            e::LeaseKeepAliveResponse
        ),
        "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
            route!("/etcdserverpb.Lease/LeaseTimeToLive", Unary, e::LeaseTimeToLiveRequest, e::LeaseTimeToLiveResponse)
        }
        "/v3/lease/leases" | "/v3/kv/lease/leases" => {
            route!("/etcdserverpb.Lease/LeaseLeases", Unary, e::LeaseLeasesRequest, e::LeaseLeasesResponse)
        }
        "/v3/cluster/member/add" => {
            route!("/etcdserverpb.Cluster/MemberAdd", Unary, e::MemberAddRequest, e::MemberAddResponse)
        }
        "/v3/cluster/member/remove" => {
            route!("/etcdserverpb.Cluster/MemberRemove", Unary, e::MemberRemoveRequest, e::MemberRemoveResponse)
        }
        "/v3/cluster/member/update" => {
            route!("/etcdserverpb.Cluster/MemberUpdate", Unary, e::MemberUpdateRequest, e::MemberUpdateResponse)
        }
        "/v3/cluster/member/list" => {
            route!("/etcdserverpb.Cluster/MemberList", Unary, e::MemberListRequest, e::MemberListResponse)
        }
        "/v3/cluster/member/promote" => {
            route!("/etcdserverpb.Cluster/MemberPromote", Unary, e::MemberPromoteRequest, e::MemberPromoteResponse)
        }
        "/v3/maintenance/alarm" => route!("/etcdserverpb.Maintenance/Alarm", Unary, e::AlarmRequest, e::AlarmResponse),
        "/v3/maintenance/status" => {
            route!("/etcdserverpb.Maintenance/Status", Unary, e::StatusRequest, e::StatusResponse)
        }
        "/v3/maintenance/defragment" => {
            route!("/etcdserverpb.Maintenance/Defragment", Unary, e::DefragmentRequest, e::DefragmentResponse)
        }
        "/v3/maintenance/hash" => route!("/etcdserverpb.Maintenance/Hash", Unary, e::HashRequest, e::HashResponse),
        "/v3/maintenance/hashkv" => {
            route!("/etcdserverpb.Maintenance/HashKV", Unary, e::HashKvRequest, e::HashKvResponse)
        }
        "/v3/maintenance/snapshot" => {
            route!("/etcdserverpb.Maintenance/Snapshot", ServerStream, e::SnapshotRequest, e::SnapshotResponse)
        }
        "/v3/maintenance/transfer-leadership" => {
            route!("/etcdserverpb.Maintenance/MoveLeader", Unary, e::MoveLeaderRequest, e::MoveLeaderResponse)
        }
        "/v3/auth/enable" => {
            route!("/etcdserverpb.Auth/AuthEnable", Unary, e::AuthEnableRequest, e::AuthEnableResponse)
        }
        "/v3/auth/disable" => {
            route!("/etcdserverpb.Auth/AuthDisable", Unary, e::AuthDisableRequest, e::AuthDisableResponse)
        }
        "/v3/auth/status" => {
            route!("/etcdserverpb.Auth/AuthStatus", Unary, e::AuthStatusRequest, e::AuthStatusResponse)
        }
        "/v3/auth/authenticate" => {
            route!("/etcdserverpb.Auth/Authenticate", Unary, e::AuthenticateRequest, e::AuthenticateResponse)
        }
        "/v3/auth/user/add" => {
            route!("/etcdserverpb.Auth/UserAdd", Unary, e::AuthUserAddRequest, e::AuthUserAddResponse)
        }
        "/v3/auth/user/get" => {
            route!("/etcdserverpb.Auth/UserGet", Unary, e::AuthUserGetRequest, e::AuthUserGetResponse)
        }
        "/v3/auth/user/list" => {
            route!("/etcdserverpb.Auth/UserList", Unary, e::AuthUserListRequest, e::AuthUserListResponse)
        }
        "/v3/auth/user/delete" => {
            route!("/etcdserverpb.Auth/UserDelete", Unary, e::AuthUserDeleteRequest, e::AuthUserDeleteResponse)
        }
        "/v3/auth/user/changepw" => route!(
            "/etcdserverpb.Auth/UserChangePassword",
            Unary,
            e::AuthUserChangePasswordRequest,
            e::AuthUserChangePasswordResponse
        ),
        "/v3/auth/user/grant" => {
            route!("/etcdserverpb.Auth/UserGrantRole", Unary, e::AuthUserGrantRoleRequest, e::AuthUserGrantRoleResponse)
        }
        "/v3/auth/user/revoke" => route!(
            "/etcdserverpb.Auth/UserRevokeRole",
            Unary,
            e::AuthUserRevokeRoleRequest,
            e::AuthUserRevokeRoleResponse
        ),
        "/v3/auth/role/add" => {
            route!("/etcdserverpb.Auth/RoleAdd", Unary, e::AuthRoleAddRequest, e::AuthRoleAddResponse)
        }
        "/v3/auth/role/get" => {
            route!("/etcdserverpb.Auth/RoleGet", Unary, e::AuthRoleGetRequest, e::AuthRoleGetResponse)
        }
        "/v3/auth/role/list" => {
            route!("/etcdserverpb.Auth/RoleList", Unary, e::AuthRoleListRequest, e::AuthRoleListResponse)
        }
        "/v3/auth/role/delete" => {
            route!("/etcdserverpb.Auth/RoleDelete", Unary, e::AuthRoleDeleteRequest, e::AuthRoleDeleteResponse)
        }
        "/v3/auth/role/grant" => route!(
            "/etcdserverpb.Auth/RoleGrantPermission",
            Unary,
            e::AuthRoleGrantPermissionRequest,
            e::AuthRoleGrantPermissionResponse
        ),
        "/v3/auth/role/revoke" => route!(
            "/etcdserverpb.Auth/RoleRevokePermission",
            Unary,
            e::AuthRoleRevokePermissionRequest,
            e::AuthRoleRevokePermissionResponse
        ),
        "/v1/placement/nodes/register" => {
            route!("/placement.v1.Placement/RegisterNode", Unary, p::RegisterNodeRequest, p::RegisterNodeResponse)
        }
        "/v1/placement/nodes/heartbeat" => {
            route!("/placement.v1.Placement/Heartbeat", Unary, p::HeartbeatRequest, p::HeartbeatResponse)
        }
        "/v1/placement/nodes/unregister" => {
            route!("/placement.v1.Placement/UnregisterNode", Unary, p::UnregisterNodeRequest, p::UnregisterNodeResponse)
        }
        "/v1/placement/nodes/list" => {
            route!("/placement.v1.Placement/ListNodes", Unary, p::ListNodesRequest, p::ListNodesResponse)
        }
        "/v1/placement/nodes/watch" => {
            route!("/placement.v1.Placement/WatchNodes", ServerStream, p::WatchNodesRequest, p::WatchNodesResponse)
        }
        "/v1/placement/config/set" => route!(
            "/placement.v1.Placement/SetClusterConfig",
            Unary,
            p::SetClusterConfigRequest,
            p::ClusterConfigResponse
        ),
        "/v1/placement/config/get" => route!(
            "/placement.v1.Placement/GetClusterConfig",
            Unary,
            p::GetClusterConfigRequest,
            p::ClusterConfigResponse
        ),
        "/v1/placement/status" => {
            route!("/placement.v1.Placement/ClusterStatus", Unary, p::ClusterStatusRequest, p::ClusterStatusResponse)
        }
        "/v1/placement/offsets/commit" => {
            route!("/placement.v1.Placement/CommitOffsets", Unary, p::CommitOffsetsRequest, p::CommitOffsetsResponse)
        }
        "/v1/placement/offsets/fetch" => {
            route!("/placement.v1.Placement/FetchOffsets", Unary, p::FetchOffsetsRequest, p::FetchOffsetsResponse)
        }
        "/v1/placement/topics/create" => {
            route!("/placement.v1.Placement/CreateTopic", Unary, p::CreateTopicRequest, p::TopicResponse)
        }
        "/v1/placement/topics/update" => {
            route!("/placement.v1.Placement/UpdateTopic", Unary, p::UpdateTopicRequest, p::TopicResponse)
        }
        "/v1/placement/topics/get" => {
            route!("/placement.v1.Placement/GetTopic", Unary, p::GetTopicRequest, p::GetTopicResponse)
        }
        "/v1/placement/topics/list" => {
            route!("/placement.v1.Placement/ListTopics", Unary, p::ListTopicsRequest, p::ListTopicsResponse)
        }
        "/v1/placement/topics/delete" => {
            route!("/placement.v1.Placement/DeleteTopic", Unary, p::DeleteTopicRequest, p::DeleteTopicResponse)
        }
        "/v1/placement/shards/list" => {
            route!("/placement.v1.Placement/ListShards", Unary, p::ListShardsRequest, p::ListShardsResponse)
        }
        "/v1/placement/shards/move" => {
            route!("/placement.v1.Placement/MoveShard", Unary, p::MoveShardRequest, p::MoveShardResponse)
        }
        "/v1/placement/shards/report" => route!(
            "/placement.v1.Placement/ReportShardStatus",
            Unary,
            p::ReportShardStatusRequest,
            p::ReportShardStatusResponse
        ),
        "/v1/placement/assignments/watch" => route!(
            "/placement.v1.Placement/WatchAssignments",
            ServerStream,
            p::WatchAssignmentsRequest,
            p::WatchAssignmentsResponse
        ),
        _ => return None,
    })
}

/// Wraps the client port's gRPC routes with the gateway.
#[derive(Clone)]
pub struct GatewayLayer {
    node: Arc<RaftNode>,
    /// Most bytes a request body may have (the gRPC limit, as JSON is
    /// bigger than protobuf: base64 and names).
    max_body: usize,
}

impl GatewayLayer {
    /// The gateway of `node`, taking request bodies of up to `max_body` bytes.
    pub fn new(node: Arc<RaftNode>, max_body: usize) -> Self {
        Self { node, max_body }
    }
}

impl<S> tower_layer::Layer<S> for GatewayLayer {
    type Service = Gateway<S>;
    fn layer(&self, inner: S) -> Gateway<S> {
        Gateway { inner, node: self.node.clone(), max_body: self.max_body }
    }
}

/// gRPC requests go to the routes as they are; the rest to the gateway.
#[derive(Clone)]
pub struct Gateway<S> {
    inner: S,
    node: Arc<RaftNode>,
    max_body: usize,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S: RoutesService> tower_service::Service<Request<Body>> for Gateway<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    /// gRPC's own future, or the gateway's (no extra allocation on the gRPC path).
    type Future = futures::future::Either<S::Future, Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        use futures::future::Either;
        let grpc = req.headers().get(CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        if grpc {
            return Either::Left(self.inner.call(req));
        }
        // The routes polled ready are the ones to call (tower's rule).
        let fresh = self.inner.clone();
        let routes = std::mem::replace(&mut self.inner, fresh);
        let (node, max_body) = (self.node.clone(), self.max_body);
        Either::Right(Box::pin(async move { Ok(answer(routes, node, max_body, req).await) }))
    }
}

/// The gateway's answer to `req`.
async fn answer<S: RoutesService>(
    routes: S,
    node: Arc<RaftNode>,
    max_body: usize,
    req: Request<Body>,
) -> Response<Body> {
    let path = req.uri().path();
    if req.method() == http::Method::GET {
        match path {
            "/version" => {
                let v = crate::api::maintenance::ETCD_VERSION;
                let body = format!(r#"{{"etcdserver":"{v}","etcdcluster":"{v}"}}"#);
                return response(StatusCode::OK, "application/json", body.into());
            }
            "/health" => {
                let target = req.uri().path_and_query().map_or("/health", |p| p.as_str()).to_string();
                let (status, content_type, body) = crate::api::health::http_answer(node, target).await;
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return response(status, content_type, body.into());
            }
            _ => {}
        }
    }
    let Some(method) = method(path) else {
        return error_response(&Status::not_found("Not Found"), StatusCode::NOT_FOUND);
    };
    if req.method() != http::Method::POST {
        return error_response(&Status::unimplemented("Method Not Allowed"), StatusCode::METHOD_NOT_ALLOWED);
    }
    let (parts, body) = req.into_parts();
    let grpc_body = match method.shape {
        Shape::Unary | Shape::ServerStream => {
            let bytes = match Limited::new(body, max_body).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let status = Status::invalid_argument(format!("reading the request body: {e}"));
                    return error_response(&status, StatusCode::BAD_REQUEST);
                }
            };
            match (method.encode)(&bytes) {
                Ok(proto) => Body::new(Full::new(frame(&proto))),
                Err(e) => return error_response(&Status::invalid_argument(e), StatusCode::BAD_REQUEST),
            }
        }
        Shape::Bidi { hold_open } => requests(body, method.encode, max_body, hold_open),
    };
    let mut grpc = Request::builder()
        .method(http::Method::POST)
        .uri(method.grpc)
        .version(http::Version::HTTP_2)
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(grpc_body)
        .expect("a valid request");
    for name in ["authorization", "token"] {
        if let Some(value) = parts.headers.get(name) {
            grpc.headers_mut().insert(name, value.clone());
        }
    }
    // The caller's connection: its address and TLS certificates.
    *grpc.extensions_mut() = parts.extensions;
    let mut routes = routes;
    let Ok(answer) = routes.call(grpc).await;
    let mut replies = Replies::new(answer);
    match method.shape {
        Shape::Unary => match replies.next().await {
            Reply::Message(proto) => match (method.decode)(&proto) {
                Ok(json) => response(StatusCode::OK, "application/json", json.into()),
                Err(e) => error_response(&Status::internal(e), StatusCode::INTERNAL_SERVER_ERROR),
            },
            Reply::End(status) => {
                let status = if status.code() == Code::Ok { Status::internal("no answer") } else { status };
                error_response(&status, http_status(status.code()))
            }
        },
        Shape::ServerStream | Shape::Bidi { .. } => stream_response(replies, method.decode),
    }
}

/// A gRPC message frame: uncompressed, its length, the message.
fn frame(proto: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + proto.len());
    out.put_u8(0);
    out.put_u32(proto.len() as u32);
    out.put_slice(proto);
    out.freeze()
}

/// The gRPC request stream of a streaming route: each JSON object of the
/// body as it arrives, as a frame. A body that is not JSON (or not the
/// request's JSON) ends it there, as the body's end does: grpc-gateway, in
/// front of etcd, logs the decode error and closes its sending side too, so
/// the answers to the requests before it go on.
fn requests(body: Body, encode: fn(&[u8]) -> Result<Vec<u8>, String>, max_pending: usize, hold_open: bool) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    crate::runtime::spawn_detached("gateway-requests", async move {
        let mut body = body;
        let mut pending = BytesMut::new();
        'body: while let Some(Ok(chunk)) = body.frame().await {
            let Ok(data) = chunk.into_data() else { continue };
            pending.extend_from_slice(&data);
            loop {
                let mut values = serde_json::Deserializer::from_slice(&pending).into_iter::<serde::de::IgnoredAny>();
                let end = match values.next() {
                    Some(Ok(_)) => values.byte_offset(),
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        tracing::debug!(cause = %e, "gateway: a streamed request is not JSON; the requests end there");
                        break 'body;
                    }
                    None => break,
                };
                let proto = match encode(&pending[..end]) {
                    Ok(proto) => proto,
                    Err(e) => {
                        tracing::debug!(cause = %e, "gateway: a streamed request does not decode; the requests end there");
                        break 'body;
                    }
                };
                pending.advance(end);
                if tx.send(frame(&proto)).await.is_err() {
                    return;
                }
            }
            if pending.len() > max_pending {
                tracing::debug!(max_pending, "gateway: a streamed request is too large; the requests end there");
                break;
            }
        }
        if hold_open {
            tx.closed().await;
        }
    });
    let frames = super::context::receiver_stream(rx);
    Body::new(StreamBody::new(futures::StreamExt::map(frames, |b| Ok::<_, Infallible>(Frame::data(b)))))
}

/// One thing a gRPC answer holds next.
enum Reply {
    Message(Bytes),
    /// The answer's end, with its status (`Ok` when it succeeded).
    End(Status),
}

/// The messages of a gRPC answer, then its status.
struct Replies {
    body: Body,
    pending: BytesMut,
    /// The status, once the trailers (or a trailers-only answer) gave it.
    status: Option<Status>,
    done: bool,
}

impl Replies {
    fn new(answer: Response<Body>) -> Self {
        let status = Status::from_header_map(answer.headers());
        let done = status.is_some();
        Self { body: answer.into_body(), pending: BytesMut::new(), status, done }
    }

    async fn next(&mut self) -> Reply {
        loop {
            if self.pending.len() >= 5 {
                let len = u32::from_be_bytes([self.pending[1], self.pending[2], self.pending[3], self.pending[4]]);
                let len = len as usize;
                if self.pending.len() >= 5 + len {
                    self.pending.advance(5);
                    return Reply::Message(self.pending.split_to(len).freeze());
                }
            }
            if self.done {
                return Reply::End(self.status.clone().unwrap_or_else(|| Status::internal("no grpc-status")));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.pending.extend_from_slice(&data),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            self.status = Status::from_header_map(&trailers);
                        }
                    }
                },
                Some(Err(e)) => {
                    self.status = Some(Status::unavailable(e.to_string()));
                    self.done = true;
                }
                None => self.done = true,
            }
        }
    }
}

/// A streaming answer: a `{"result":...}` line per message, then an
/// `{"error":...}` line if the stream failed.
fn stream_response(replies: Replies, decode: fn(&[u8]) -> Result<Vec<u8>, String>) -> Response<Body> {
    let lines = futures::stream::unfold(Some(replies), move |replies| async move {
        let mut replies = replies?;
        let line = match replies.next().await {
            Reply::Message(proto) => match decode(&proto) {
                Ok(json) => [&b"{\"result\":"[..], &json, b"}\n"].concat().into(),
                Err(e) => return Some((line_of(&stream_error(&Status::internal(e))), None)),
            },
            Reply::End(status) if status.code() == Code::Ok => return None,
            Reply::End(status) => return Some((line_of(&stream_error(&status)), None)),
        };
        Some((line, Some(replies)))
    });
    let body = Body::new(StreamBody::new(futures::StreamExt::map(lines, |b| Ok::<_, Infallible>(Frame::data(b)))));
    let mut answer = Response::new(body);
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

fn line_of(value: &Value) -> Bytes {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line.into()
}

/// grpc-gateway's error object in a stream.
fn stream_error(status: &Status) -> Value {
    let http = http_status(status.code());
    json!({"error": {
        "grpc_code": status.code() as i32,
        "http_code": http.as_u16(),
        "message": status.message(),
        "http_status": http.canonical_reason().unwrap_or(""),
    }})
}

/// The HTTP status grpc-gateway answers a gRPC code with.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's error body: `{"error","code","message"}`.
fn error_response(status: &Status, http: StatusCode) -> Response<Body> {
    let body = json!({"error": status.message(), "code": status.code() as i32, "message": status.message()});
    json_response(http, &body)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    response(status, "application/json", value.to_string().into())
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut answer = Response::new(Body::new(Full::new(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
    use crate::proto::mvccpb::KeyValue;

    #[test]
    fn messages_map_to_json_as_etcds_gateway_writes_them() {
        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 4 }),
            kvs: vec![KeyValue { key: b"foo".to_vec(), value: b"bar".to_vec(), mod_revision: 3, ..Default::default() }],
            count: 1,
            more: false,
        };
        let json = decode::<RangeResponse>(&prost::Message::encode_to_vec(&resp)).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&json).unwrap(),
            json!({
                "header": {"cluster_id": "1", "member_id": "2", "revision": "3", "raft_term": "4"},
                "kvs": [{"key": "Zm9v", "value": "YmFy", "mod_revision": "3"}],
                "count": "1",
            })
        );
        let proto =
            encode::<RangeRequest>(br#"{"key": "Zm9v", "range_end": "Zm9w", "sort_order": "DESCEND", "limit": "2"}"#)
                .unwrap();
        let req = <RangeRequest as prost::Message>::decode(proto.as_slice()).unwrap();
        assert_eq!(
            (req.key.as_slice(), req.range_end.as_slice(), req.sort_order, req.limit),
            (&b"foo"[..], &b"fop"[..], 2, 2)
        );
        assert_eq!(encode::<RangeRequest>(b"").unwrap(), Vec::<u8>::new());
        assert!(encode::<RangeRequest>(br#"{"key": 5}"#).is_err());
    }

    #[test]
    fn grpc_codes_map_to_grpc_gateways_http_statuses() {
        assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::FailedPrecondition), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
    }
}
