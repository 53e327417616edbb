//! A client of Placement Center, for brokers and for our own tools
//! (placement-ctl, placement-bench, the tests and the simulator). It depends
//! on the wire types ([`proto`], re-exported) and tonic only: no RocksDB, no
//! Raft, no system libraries.
//!
//! - **Endpoints**: any members' client addresses; channels connect lazily.
//! - **Leader discovery**: [`Client::discover_leader`] asks the members who
//!   leads and sends calls there first, saving writes the forwarding hop.
//! - **Retries**: an idempotent call (reads, heartbeats, ...) that fails with
//!   Unavailable or a deadline is retried on the next endpoint with
//!   exponential backoff; any other call only when it certainly never reached
//!   a server (no connection, or the server said nothing was applied).
//! - **Keep-alive**: [`Client::keep_alive`] heartbeats for a registered node
//!   in the background and reports when the registration is lost.
//! - **etcd v3**: the typed stubs of etcd's services ([`Client::kv`],
//!   [`Client::watch`], ...) over the same channels, through [`Client::call`].
//!
//! A broker's life: register, stay registered, learn who else serves.
//!
//! ```no_run
//! use placement_client::proto::placement::v1::RegisterNodeRequest;
//! use placement_client::{Client, ClientOptions};
//!
//! # async fn broker() -> Result<(), placement_client::ClientError> {
//! let client = Client::new(&["127.0.0.1:2379".to_string()], ClientOptions::default())?;
//! let registration = client
//!     .register(RegisterNodeRequest {
//!         cluster: "mqtt".into(),
//!         node_id: 1,
//!         roles: vec!["broker".into()],
//!         addresses: [("mqtt".to_string(), "10.0.0.1:1883".to_string())].into(),
//!         ..Default::default()
//!     })
//!     .await?;
//! let mut keep_alive = client.keep_alive(&registration);
//! let mut events = client.watch_nodes("mqtt", 0);
//! loop {
//!     tokio::select! {
//!         lost = keep_alive.lost() => {
//!             eprintln!("registration lost: {lost:?}");
//!             break;
//!         }
//!         Some(event) = events.recv() => println!("{:?}", event?.events),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod assignments;
mod keepalive;
mod rt;
pub mod tls;
mod topics;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Status};

pub use assignments::Assignments;
pub use keepalive::{KeepAlive, Lost};
pub use placement_proto as proto;
pub use rt::shutdown_signal;
pub use tls::{TlsError, TlsSettings};
/// The gRPC library the stubs are built on, for its `Channel`, `Request` and
/// `Status` (same version as this crate's).
pub use tonic;

use crate::proto::etcdserverpb::auth_client::AuthClient;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::proto::etcdserverpb::lease_client::LeaseClient;
use crate::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use crate::proto::etcdserverpb::watch_client::WatchClient;
use crate::proto::etcdserverpb::{AuthenticateRequest, MemberListRequest, StatusRequest};
use crate::proto::placement::v1::placement_client::PlacementClient;
use crate::proto::placement::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, FetchOffsetsRequest, FetchOffsetsResponse, HeartbeatRequest,
    HeartbeatResponse, ListNodesRequest, ListNodesResponse, NodeInfo, RegisterNodeRequest, RegisterNodeResponse,
    UnregisterNodeRequest, WatchNodesRequest, WatchNodesResponse,
};

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was given no endpoint.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint that is not `host:port`.
    #[error("invalid endpoint {endpoint:?}: {cause}")]
    BadEndpoint {
        /// As given.
        endpoint: String,
        /// What is wrong with it.
        cause: String,
    },
    /// The server's answer (or the transport's, after the retries).
    #[error("{}", .status.message())]
    Status {
        /// The endpoint that answered last.
        endpoint: String,
        /// Its status.
        status: Status,
    },
}

impl ClientError {
    /// The gRPC code (Unavailable for errors that are the client's own).
    pub fn code(&self) -> Code {
        match self {
            ClientError::Status { status, .. } => status.code(),
            ClientError::NoEndpoints | ClientError::BadEndpoint { .. } => Code::InvalidArgument,
        }
    }
}

/// Whether a call may be repeated without changing the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and calls whose repetition is harmless: retried on any
    /// transient failure.
    Idempotent,
    /// Writes: retried only when they certainly did not happen.
    OnlyIfNotSent,
}

/// Tunables of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long connecting to one endpoint may take.
    pub connect_timeout: Duration,
    /// How long one attempt of a unary call may take.
    pub request_timeout: Duration,
    /// Attempts of one call in all (over every endpoint).
    pub attempts: u32,
    /// Pause after the first failed attempt; doubles up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// TLS to the members (their CA, and a client certificate when they
    /// require one); `None`: plain TCP, unless an endpoint says `https://`.
    pub tls: Option<TlsSettings>,
    /// A user to authenticate as (clusters with auth on); `None`: none.
    pub credentials: Option<Credentials>,
}

/// A user name and password (the password is never printed).
#[derive(Clone)]
pub struct Credentials {
    /// The user.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            attempts: 6,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            tls: None,
            credentials: None,
        }
    }
}

/// A client of a Placement Center cluster. Cheap to share (`Arc`).
pub struct Client {
    /// `host:port` of each endpoint, as given.
    endpoints: Vec<String>,
    /// A lazily connecting channel per endpoint.
    channels: Vec<Channel>,
    /// The endpoint tried first: the leader's when known, else the last one
    /// that answered.
    preferred: AtomicUsize,
    options: ClientOptions,
    /// The auth token calls carry, once authenticated.
    token: std::sync::RwLock<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>,
}

impl Client {
    /// A client of the members at `endpoints` (`host:port`, `http://host:port`,
    /// or `https://host:port`: TLS, with `options.tls` or the defaults).
    /// Connects on first use.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use placement_client::{Client, ClientOptions, Credentials, TlsSettings};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Three members over TLS, trusting their CA, as user "broker".
    /// let tls = TlsSettings::for_client(Some("ca.pem".as_ref()), None, None)?;
    /// let options = ClientOptions {
    ///     tls,
    ///     credentials: Some(Credentials { user: "broker".into(), password: "secret".into() }),
    ///     request_timeout: Duration::from_secs(5),
    ///     ..ClientOptions::default()
    /// };
    /// let client = Client::new(&["https://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379".to_string()], options)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(endpoints: &[String], mut options: ClientOptions) -> Result<Arc<Self>, ClientError> {
        let endpoints: Vec<&str> = endpoints.iter().flat_map(|e| e.split(',')).map(str::trim).collect();
        if options.tls.is_none() && endpoints.iter().any(|e| e.starts_with("https://")) {
            options.tls = Some(TlsSettings::default());
        }
        let endpoints: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let mut channels = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let bad = |cause: String| ClientError::BadEndpoint { endpoint: endpoint.clone(), cause };
            if !endpoint.contains(':') {
                return Err(bad("expected host:port".to_string()));
            }
            let channel = tls::endpoint(endpoint, options.tls.as_ref())
                .map_err(|e| bad(e.to_string()))?
                .connect_timeout(options.connect_timeout)
                .connect_lazy();
            channels.push(channel);
        }
        Ok(Arc::new(Self {
            endpoints,
            channels,
            preferred: AtomicUsize::new(0),
            options,
            token: std::sync::RwLock::new(None),
        }))
    }

    /// The endpoints, as normalised.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The tunables.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The channel to the preferred endpoint (for streams, which the caller
    /// resumes itself) and its address.
    pub fn channel(&self) -> (Channel, &str) {
        let i = self.preferred.load(Ordering::Relaxed) % self.channels.len();
        (self.channels[i].clone(), &self.endpoints[i])
    }

    /// Moves on to the next endpoint (after a stream broke).
    pub fn rotate(&self) {
        let i = self.preferred.load(Ordering::Relaxed);
        self.preferred.store((i + 1) % self.channels.len(), Ordering::Relaxed);
    }

    /// `message` as a request carrying this client's auth token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = self.token.read().unwrap_or_else(|e| e.into_inner()).clone() {
            request.metadata_mut().insert("token", token);
        }
        request
    }

    /// Authenticates with the credentials of the options (none: does
    /// nothing); later calls carry the token.
    pub async fn authenticate(&self) -> Result<(), ClientError> {
        let Some(credentials) = &self.options.credentials else { return Ok(()) };
        let req = AuthenticateRequest { name: credentials.user.clone(), password: credentials.password.clone() };
        let resp = self
            .call_once_authenticated(Retry::Idempotent, |ch| {
                let req = req.clone();
                async move { AuthClient::new(ch).authenticate(req).await }
            })
            .await?;
        let token = resp.token.parse().map_err(|_| ClientError::Status {
            endpoint: String::new(),
            status: Status::internal("the server's auth token is not ASCII"),
        })?;
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(token);
        Ok(())
    }

    /// Runs `call` on the preferred endpoint, and per `retry` on the others,
    /// backing off between attempts. With credentials, authenticates first,
    /// and again when the server says the token is no longer valid.
    ///
    /// Any etcd v3 call goes through it, with the stubs of [`proto`]:
    ///
    /// ```no_run
    /// use placement_client::proto::etcdserverpb::{PutRequest, RangeRequest};
    /// use placement_client::{Client, Retry};
    ///
    /// # async fn example(client: &Client) -> Result<(), placement_client::ClientError> {
    /// let put = PutRequest { key: b"/mq/topics/orders".to_vec(), value: b"3".to_vec(), ..Default::default() };
    /// // A write: retried only if it certainly did not reach a member.
    /// client
    ///     .call(Retry::OnlyIfNotSent, |ch| {
    ///         let req = client.request(put.clone());
    ///         async move { Client::kv(ch).put(req).await }
    ///     })
    ///     .await?;
    /// // A linearizable read: retried on any transient failure.
    /// let range = RangeRequest { key: b"/mq/topics/orders".to_vec(), ..Default::default() };
    /// let got = client
    ///     .call(Retry::Idempotent, |ch| {
    ///         let req = client.request(range.clone());
    ///         async move { Client::kv(ch).range(req).await }
    ///     })
    ///     .await?;
    /// assert_eq!(got.kvs[0].value, b"3");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn call<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        if self.options.credentials.is_none() {
            return self.call_once_authenticated(retry, call).await;
        }
        if self.token.read().unwrap_or_else(|e| e.into_inner()).is_none() {
            self.authenticate().await?;
        }
        match self.call_once_authenticated(retry, &mut call).await {
            Err(e) if stale_token(&e) => {
                self.authenticate().await?;
                self.call_once_authenticated(retry, call).await
            }
            answer => answer,
        }
    }

    /// [`call`](Self::call) without authenticating.
    async fn call_once_authenticated<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 1;
        loop {
            let i = self.preferred.load(Ordering::Relaxed) % self.channels.len();
            // Boxed: a call future is several KiB, and inline it would be
            // copied into this loop's state and every caller's.
            let answer = rt::timeout(self.options.request_timeout, Box::pin(call(self.channels[i].clone())))
                .await
                .unwrap_or_else(|_| Err(Status::deadline_exceeded("request timed out (client side)")));
            let status = match answer {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(status) => status,
            };
            let transient = match retry {
                Retry::Idempotent => {
                    matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Unknown)
                }
                Retry::OnlyIfNotSent => never_sent(&status) || status.metadata().contains_key(NOT_APPLIED_METADATA),
            };
            if !transient || attempt >= self.options.attempts {
                return Err(ClientError::Status { endpoint: self.endpoints[i].clone(), status });
            }
            tracing::debug!(endpoint = %self.endpoints[i], cause = %status.message(), attempt, "retrying on the next endpoint");
            self.preferred.store((i + 1) % self.channels.len(), Ordering::Relaxed);
            rt::sleep(backoff).await;
            backoff = (backoff * 2).min(self.options.max_backoff);
            attempt += 1;
        }
    }

    /// Asks the members who leads and prefers that member's endpoint when it
    /// is one of ours. Returns the leader's id (0: none known).
    ///
    /// ```no_run
    /// # async fn example(client: &placement_client::Client) -> Result<(), placement_client::ClientError> {
    /// // Writes now go straight to the leader, without a forwarding hop.
    /// let leader = client.discover_leader().await?;
    /// println!("member {leader:x} leads");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn discover_leader(&self) -> Result<u64, ClientError> {
        let status = self
            .call(Retry::Idempotent, |ch| {
                let req = self.request(StatusRequest {});
                async move { MaintenanceClient::new(ch).status(req).await }
            })
            .await?;
        if status.leader == 0 {
            return Ok(0);
        }
        let members = self
            .call(Retry::Idempotent, |ch| async move {
                ClusterClient::new(ch).member_list(MemberListRequest { linearizable: false }).await
            })
            .await?;
        let leader_addrs: Vec<String> = members
            .members
            .iter()
            .filter(|m| m.id == status.leader)
            .flat_map(|m| m.client_ur_ls.iter().map(|u| u.trim_start_matches("http://").to_string()))
            .collect();
        if let Some(i) = self.endpoints.iter().position(|e| leader_addrs.contains(e)) {
            self.preferred.store(i, Ordering::Relaxed);
        }
        Ok(status.leader)
    }

    /// etcd's KV service on `channel`.
    pub fn kv(channel: Channel) -> KvClient<Channel> {
        KvClient::new(channel)
    }

    /// etcd's Lease service on `channel`.
    pub fn lease(channel: Channel) -> LeaseClient<Channel> {
        LeaseClient::new(channel)
    }

    /// etcd's Cluster service on `channel`.
    pub fn cluster(channel: Channel) -> ClusterClient<Channel> {
        ClusterClient::new(channel)
    }

    /// etcd's Watch service on `channel`.
    pub fn watch(channel: Channel) -> WatchClient<Channel> {
        WatchClient::new(channel)
    }

    /// The placement service on `channel`.
    pub fn placement(channel: Channel) -> PlacementClient<Channel> {
        PlacementClient::new(channel)
    }

    /// Registers a node. Not retried once sent: a repeated registration
    /// would only make another epoch, but the caller must learn the last one.
    pub async fn register(&self, req: RegisterNodeRequest) -> Result<Registration, ClientError> {
        let resp: RegisterNodeResponse = self
            .call(Retry::OnlyIfNotSent, |ch| {
                let req = self.request(req.clone());
                async move { PlacementClient::new(ch).register_node(req).await }
            })
            .await?;
        let node = resp.node.unwrap_or_default();
        Ok(Registration {
            node,
            heartbeat_interval: Duration::from_secs(u64::from(resp.heartbeat_interval_secs.max(1))),
            expiry: Duration::from_secs(u64::from(resp.expiry_secs)),
        })
    }

    /// Unregisters a node (`epoch` 0: whatever is registered under its id;
    /// else only that epoch, FailedPrecondition if it is stale). Returns
    /// whether something was removed. Idempotent: retried.
    pub async fn unregister(&self, req: UnregisterNodeRequest) -> Result<bool, ClientError> {
        let resp = self
            .call(Retry::Idempotent, |ch| {
                let req = self.request(req.clone());
                async move { PlacementClient::new(ch).unregister_node(req).await }
            })
            .await?;
        Ok(resp.removed)
    }

    /// The registered nodes of `cluster` ("": every cluster) with `role`
    /// ("": any), linearizable (idempotent: retried).
    ///
    /// ```no_run
    /// # async fn example(client: &placement_client::Client) -> Result<(), placement_client::ClientError> {
    /// for node in client.list_nodes("mqtt", "mqtt").await?.nodes {
    ///     println!("node {} serves MQTT at {:?}", node.node_id, node.addresses.get("mqtt"));
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn list_nodes(&self, cluster: &str, role: &str) -> Result<ListNodesResponse, ClientError> {
        let req = ListNodesRequest { cluster: cluster.to_string(), role: role.to_string() };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).list_nodes(req).await }
        })
        .await
    }

    /// One heartbeat for a registration (idempotent: retried).
    pub async fn heartbeat(&self, node: &NodeInfo) -> Result<HeartbeatResponse, ClientError> {
        let req = HeartbeatRequest { cluster: node.cluster.clone(), node_id: node.node_id, epoch: node.epoch };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).heartbeat(req).await }
        })
        .await
    }

    /// Commits a consumer group's offsets, all or none; with a generation
    /// (not 0), refused with FailedPrecondition if the group has seen a
    /// higher one. Retried only when it certainly did not reach a member:
    /// a retry of one that was applied could meet a newer generation and
    /// report as refused a commit that took effect.
    ///
    /// ```no_run
    /// use placement_client::proto::placement::v1::{CommitOffsetsRequest, ShardOffset};
    ///
    /// # async fn example(client: &placement_client::Client) -> Result<(), placement_client::ClientError> {
    /// let offsets = (0..4)
    ///     .map(|shard| ShardOffset { topic: "orders".into(), shard, offset: 1200, metadata: String::new() })
    ///     .collect();
    /// let req = CommitOffsetsRequest { cluster: "mq".into(), group: "billing".into(), generation: 7, offsets };
    /// client.commit_offsets(req).await?;
    /// let fetched = client.fetch_offsets("mq", "billing", "orders").await?;
    /// assert_eq!(fetched.generation, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn commit_offsets(&self, req: CommitOffsetsRequest) -> Result<CommitOffsetsResponse, ClientError> {
        self.call(Retry::OnlyIfNotSent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).commit_offsets(req).await }
        })
        .await
    }

    /// `group`'s committed offsets of `topic` ("": every topic) and its
    /// generation, linearizable (idempotent: retried).
    pub async fn fetch_offsets(
        &self,
        cluster: &str,
        group: &str,
        topic: &str,
    ) -> Result<FetchOffsetsResponse, ClientError> {
        let req =
            FetchOffsetsRequest { cluster: cluster.to_string(), group: group.to_string(), topic: topic.to_string() };
        self.call(Retry::Idempotent, |ch| {
            let req = self.request(req.clone());
            async move { PlacementClient::new(ch).fetch_offsets(req).await }
        })
        .await
    }

    /// The node events of `cluster` ("": every cluster) from `start_revision`
    /// on (0: from now), resumed on another endpoint from the last revision
    /// seen when a stream breaks. Ends with the error that cannot be resumed
    /// (e.g. the start revision was compacted).
    pub fn watch_nodes(
        self: &Arc<Self>,
        cluster: &str,
        start_revision: i64,
    ) -> tokio::sync::mpsc::Receiver<Result<WatchNodesResponse, ClientError>> {
        let client = self.clone();
        let cluster = cluster.to_string();
        let pin = {
            let (client, cluster) = (client.clone(), cluster.clone());
            // "From now" must survive a broken stream: pin now to a revision.
            async move { client.list_nodes(&cluster, "").await.map(|r| r.header.map_or(0, |h| h.revision + 1)) }
        };
        self.resumed_stream("client-watch-nodes", start_revision, pin, move |channel, next| {
            let req = client.request(WatchNodesRequest { cluster: cluster.clone(), start_revision: next });
            async move { PlacementClient::new(channel).watch_nodes(req).await }
        })
    }

    /// A server stream that is resumed on another endpoint from the last
    /// revision seen when it breaks: `open` starts it from a revision, and
    /// `pin` (run once, when `start_revision` is 0) says which revision
    /// "from now" is. Ends with the error that cannot be resumed.
    fn resumed_stream<R, P, O, F>(
        self: &Arc<Self>,
        name: &'static str,
        start_revision: i64,
        pin: P,
        open: O,
    ) -> tokio::sync::mpsc::Receiver<Result<R, ClientError>>
    where
        R: Revisioned + Send + 'static,
        P: Future<Output = Result<i64, ClientError>> + Send + 'static,
        O: Fn(Channel, i64) -> F + Send + 'static,
        F: Future<Output = Result<tonic::Response<tonic::Streaming<R>>, Status>> + Send,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let client = self.clone();
        rt::spawn_detached(name, async move {
            let mut next = start_revision;
            if next <= 0 {
                match pin.await {
                    Ok(pinned) => next = pinned,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            let mut backoff = client.options.initial_backoff;
            loop {
                let (channel, endpoint) = client.channel();
                let endpoint = endpoint.to_string();
                let broke = match open(channel, next).await {
                    Ok(stream) => {
                        let mut stream = stream.into_inner();
                        loop {
                            match stream.message().await {
                                Ok(Some(resp)) => {
                                    backoff = client.options.initial_backoff;
                                    if let Some(revision) = resp.revision() {
                                        next = revision + 1;
                                    }
                                    if tx.send(Ok(resp)).await.is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => break Status::unavailable("watch stream ended"),
                                Err(status) => break status,
                            }
                        }
                    }
                    Err(status) => status,
                };
                if !matches!(broke.code(), Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled)
                {
                    let _ = tx.send(Err(ClientError::Status { endpoint, status: broke })).await;
                    return;
                }
                client.rotate();
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = rt::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(client.options.max_backoff);
            }
        });
        rx
    }
}

/// A streamed response that says which revision it reflects.
pub trait Revisioned {
    /// The revision of the response's header, if it has one.
    fn revision(&self) -> Option<i64>;
}

impl Revisioned for WatchNodesResponse {
    fn revision(&self) -> Option<i64> {
        self.header.as_ref().map(|h| h.revision)
    }
}

/// The metadata key a member sets on an error when the request was certainly
/// not applied (refused before it was proposed), so a write may be retried.
pub const NOT_APPLIED_METADATA: &str = "pc-not-applied";

/// Whether a call failed before any member could have received it (the
/// connection could not be made): repeating it cannot apply it twice. tonic
/// reports this as Unavailable with a connect error; madsim's tonic as
/// "transport error".
pub fn never_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable
        && (status.message() == "transport error" || status.message().contains("connect error"))
}

/// Whether the server refused a call for its token: expired, or issued
/// before an auth change (etcd's clients authenticate again on both).
fn stale_token(e: &ClientError) -> bool {
    let message = match e {
        ClientError::Status { status, .. } => status.message(),
        _ => return false,
    };
    message == "etcdserver: invalid auth token" || message == "etcdserver: revision of auth store is old"
}

/// A node's registration as the keep-alive helper needs it.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The node as registered, with its epoch and lease.
    pub node: NodeInfo,
    /// How often to heartbeat.
    pub heartbeat_interval: Duration,
    /// How long the registration lives without a heartbeat.
    pub expiry: Duration,
}
