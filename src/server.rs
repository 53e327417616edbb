//! Wires one node: config → engine → Raft → gRPC services, and shuts it down
//! in a declared order. The caller binds the listeners and decides when to
//! stop (the binary: on SIGINT/SIGTERM; tests: when they like).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::{ApiContext, ClusterService, KvService, LeaseService, MaintenanceService, WatchService};
use crate::config::{Config, ConfigError};
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::raft::v1::raft_server::RaftServer;
use crate::raft::compactor::AutoCompaction;
use crate::raft::service::RaftService;
use crate::raft::{Member, NodeError, NodeOptions, RaftNode, COLUMN_FAMILIES};
use crate::runtime::{self, Listener, TaskGroup};
use crate::storage::StorageError;

/// How often the leader looks for expired leases (etcd: 500 ms).
const LEASE_EXPIRY_PASS: std::time::Duration = std::time::Duration::from_millis(500);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listening address could not be bound.
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
    /// The data directory could not be opened.
    #[error("cannot open data dir {dir}: {cause}")]
    Storage { dir: String, cause: StorageError },
    /// Raft did not start.
    #[error(transparent)]
    Raft(#[from] NodeError),
}

/// The two listening sockets of a node.
pub struct Listeners {
    /// For clients (etcd API).
    pub client: Listener,
    /// For peers (raft.v1).
    pub peer: Listener,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let bind = |addr: String| async move {
            Listener::bind(&addr).await.map_err(|cause| ServerError::Bind { addr, cause })
        };
        Ok(Self { client: bind(config.client_addr.clone()).await?, peer: bind(config.peer_addr.clone()).await? })
    }
}

/// A running node.
pub struct Server {
    /// The Raft node (tests inspect leadership and state through it).
    pub node: Arc<RaftNode>,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// The client-facing server: stopped first, so no request starts during shutdown.
    client_tasks: TaskGroup,
    /// The peer-facing server: stopped last, so peers can finish with us.
    peer_tasks: TaskGroup,
}

impl Server {
    /// Starts a node on already-bound listeners.
    pub async fn start(config: Config, listeners: Listeners) -> Result<Self, ServerError> {
        config.validate()?;
        let client_addr = listeners
            .client
            .local_addr()
            .map_err(|cause| ServerError::Bind { addr: config.client_addr.clone(), cause })?;
        let peer_addr =
            listeners.peer.local_addr().map_err(|cause| ServerError::Bind { addr: config.peer_addr.clone(), cause })?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::Storage {
            dir: config.data_dir.display().to_string(),
            cause: StorageError::Io(e.to_string()),
        })?;
        let db_dir = config.data_dir.join("db");
        let engine = runtime::open_engine(&db_dir, &COLUMN_FAMILIES)
            .map_err(|cause| ServerError::Storage { dir: db_dir.display().to_string(), cause })?;

        let initial_members = config
            .effective_members()
            .into_iter()
            .map(|(id, m)| {
                let name = if id == config.node_id { config.member_name() } else { format!("node{id}") };
                (id, Member { name, peer_addr: m.peer_addr, client_addr: m.client_addr })
            })
            .collect();
        let opts = NodeOptions {
            id: config.node_id,
            initial_members,
            heartbeat_interval: config.heartbeat_interval(),
            election_timeout: config.election_timeout(),
            request_timeout: config.request_timeout(),
            snapshot_after_entries: config.snapshot_after_entries,
            log_kept_after_snapshot: config.log_kept_after_snapshot,
        };

        // Peers must reach Raft before it can elect: serve raft.v1 right away.
        let node = RaftNode::start(opts, engine).await?;
        let peer_tasks = TaskGroup::new();
        let peer_router = tonic::transport::Server::builder()
            .add_service(RaftServer::new(RaftService::new(node.clone())).max_decoding_message_size(64 * 1024 * 1024));
        let mut stop = peer_tasks.shutdown_signal();
        peer_tasks.spawn("peer-grpc", async move {
            if let Err(e) = runtime::serve(peer_router, listeners.peer, async move { stop.wait().await }).await {
                tracing::error!(cause = %e, "peer server failed");
            }
        });

        let client_tasks = TaskGroup::new();
        // gRPC framing allows some overhead above the request size limit, as in
        // etcd; the exact limit is checked (with etcd's message) per request.
        let ctx = ApiContext::new(node.clone(), config.max_request_bytes, client_tasks.shutdown_signal());
        let max_message = config.max_request_bytes + 512 * 1024;
        let kv = KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_message);
        let watch = WatchServer::new(WatchService::new(ctx.clone(), config.watch_progress_interval()))
            .max_decoding_message_size(max_message);
        let lease = LeaseServer::new(LeaseService::new(ctx.clone(), config.min_lease_ttl()))
            .max_decoding_message_size(max_message);
        let client_router = tonic::transport::Server::builder()
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())))
            .add_service(MaintenanceServer::new(MaintenanceService::new(ctx.clone())));
        // The leader's lease expiry and auto-compaction run on every node and
        // act only while it leads.
        let expiry_node = node.clone();
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("lease-expiry", async move {
            while !stop.is_requested() {
                expiry_node.expire_leases().await;
                tokio::select! {
                    biased;
                    _ = stop.wait() => return,
                    _ = runtime::sleep(LEASE_EXPIRY_PASS) => {}
                }
            }
        });
        let compactor = AutoCompaction::new(&config);
        if compactor.enabled() {
            let compact_node = node.clone();
            let mut stop = client_tasks.shutdown_signal();
            client_tasks.spawn("auto-compaction", async move {
                let mut compactor = compactor;
                loop {
                    tokio::select! {
                        biased;
                        _ = stop.wait() => return,
                        _ = runtime::sleep(compactor.pass_interval()) => {}
                    }
                    compactor.pass(&compact_node).await;
                }
            });
        }
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("client-grpc", async move {
            if let Err(e) = runtime::serve(client_router, listeners.client, async move { stop.wait().await }).await {
                tracing::error!(cause = %e, "client server failed");
            }
        });
        tracing::info!(node_id = config.node_id, %client_addr, %peer_addr, data_dir = %config.data_dir.display(), "node started");
        Ok(Self { node, client_addr, peer_addr, client_tasks, peer_tasks })
    }

    /// Stops the node: client API first, then Raft, then the peer API.
    pub async fn shutdown(self) {
        self.client_tasks.shutdown().await;
        self.node.shutdown().await;
        self.peer_tasks.shutdown().await;
        tracing::info!(node_id = self.node.id, "node stopped");
    }
}

/// Binds, starts, runs until `shutdown` completes, then stops in order.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
    config.validate()?;
    let listeners = Listeners::bind(&config).await?;
    let server = Server::start(config, listeners).await?;
    shutdown.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}
