//! Wires one node: config → engine → Raft → gRPC services, and shuts it down
//! in a declared order. The caller binds the listeners and decides when to
//! stop (the binary: on SIGINT/SIGTERM; tests: when they like).

use openraft::async_runtime::WatchReceiver as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::api::health::{count_leader_changes, http_answer, HealthService};
use crate::api::{
    ApiContext, AuthService, ClusterService, KvService, LeaseService, MaintenanceService, PlacementService,
    WatchService,
};
use crate::config::{Config, ConfigError};
use crate::join::Identity;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::grpc::health::v1::health_server::HealthServer;
use crate::proto::placement::v1::placement_server::PlacementServer;
use crate::proto::raft::v1::raft_server::RaftServer;
use crate::raft::compactor::AutoCompaction;
use crate::raft::node::cluster_id;
use crate::raft::peer_gate::PeerGate;
use crate::raft::service::RaftService;
use crate::raft::types::MetricsReceiver;
use crate::raft::{Member, NodeError, NodeOptions, RaftNode};
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
    /// The data dir belongs to another node, or joining failed.
    #[error("{0}")]
    Identity(String),
    /// A backup could not be restored.
    #[error("cannot restore {file}: {cause}")]
    Restore { file: String, cause: String },
    /// A certificate, key or CA could not be used.
    #[error("{what}: {cause}")]
    Tls { what: &'static str, cause: runtime::TlsError },
    /// The cluster removed this member: it stopped serving.
    #[error("this member (id {0:x}) was removed from the cluster; it stopped serving. Start a new member with an empty data dir to take its place")]
    Removed(u64),
    /// Raft stopped on a storage error; a restart resumes from the data dir.
    #[error("raft stopped: {0}. Exiting so that the service manager restarts this member; its data dir holds everything it acknowledged")]
    RaftStopped(String),
}

/// The listening sockets of a node.
pub struct Listeners {
    /// For clients (etcd API).
    pub client: Listener,
    /// For peers (raft.v1).
    pub peer: Listener,
    /// For /metrics and the HTTP probes, if served.
    pub metrics: Option<Listener>,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let bind = |addr: String| async move {
            Listener::bind(&addr).await.map_err(|cause| ServerError::Bind { addr, cause })
        };
        let metrics = match config.metrics_addr.as_str() {
            "" => None,
            addr => Some(bind(addr.to_string()).await?),
        };
        Ok(Self {
            client: bind(config.client_listen_addr().to_string()).await?,
            peer: bind(config.peer_listen_addr().to_string()).await?,
            metrics,
        })
    }
}

/// How many times, a second apart, a starting member tries to resolve the
/// names it advertises before it gives up.
const ADVERTISED_RESOLVE_ATTEMPTS: u32 = 10;

/// How long a stopping node waits for its storage to close.
const ENGINE_CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A running node.
pub struct Server {
    /// The Raft node (tests inspect leadership and state through it).
    pub node: Arc<RaftNode>,
    /// Where clients connect.
    pub client_addr: SocketAddr,
    /// Where peers connect.
    pub peer_addr: SocketAddr,
    /// Where /metrics and the probes are served, if they are.
    pub metrics_addr: Option<SocketAddr>,
    /// The client-facing server: stopped first, so no request starts during shutdown.
    client_tasks: TaskGroup,
    /// The peer-facing server: stopped last, so peers can finish with us.
    peer_tasks: TaskGroup,
    /// The storage engine, to see it closed when the node stops.
    engine: std::sync::Weak<dyn crate::storage::Engine>,
}

impl Server {
    /// Starts a node on already-bound listeners.
    pub async fn start(config: Config, listeners: Listeners) -> Result<Self, ServerError> {
        config.validate()?;
        let client_addr = listeners
            .client
            .local_addr()
            .map_err(|cause| ServerError::Bind { addr: config.client_listen_addr().to_string(), cause })?;
        let peer_addr = listeners
            .peer
            .local_addr()
            .map_err(|cause| ServerError::Bind { addr: config.peer_listen_addr().to_string(), cause })?;
        // What this member advertises must resolve, here too: peers and
        // clients will dial it (they resolve again on every reconnect).
        for (what, addr) in [("client_addr", &config.client_addr), ("peer_addr", &config.peer_addr)] {
            runtime::await_resolvable(addr, ADVERTISED_RESOLVE_ATTEMPTS).await.map_err(|e| {
                ServerError::Identity(format!(
                    "the advertised {what}: {e}; advertise a name or address that clients and peers can resolve"
                ))
            })?;
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::Storage {
            dir: config.data_dir.display().to_string(),
            cause: StorageError::Io(e.to_string()),
        })?;
        let db_dir = config.data_dir.join("db");
        let opening = runtime::now();
        let engine = crate::raft::open_data(&db_dir)
            .map_err(|cause| ServerError::Storage { dir: db_dir.display().to_string(), cause })?;
        let closing = Arc::downgrade(&engine);
        tracing::info!(elapsed_ms = (runtime::now() - opening).as_millis() as u64, "storage engine opened");

        let tls = |what, cause| ServerError::Tls { what, cause };
        let client_tls = runtime::TlsSettings::from_files(
            &config.cert_file,
            &config.key_file,
            &config.trusted_ca_file,
            config.client_cert_auth,
        )
        .map_err(|e| tls("client TLS", e))?;
        let peer_tls = runtime::TlsSettings::from_files(
            &config.peer_cert_file,
            &config.peer_key_file,
            &config.peer_trusted_ca_file,
            config.peer_client_cert_auth,
        )
        .map_err(|e| tls("peer TLS", e))?;
        let peer_tls = peer_tls.serves().then_some(peer_tls);
        let client_tls = client_tls.serves().then_some(client_tls);

        let identity = Self::identity(&config, engine.as_ref(), client_tls.as_ref(), peer_tls.as_ref()).await?;
        let initial_members =
            if identity.joined { std::collections::BTreeMap::new() } else { Self::initial_members(&config) };
        let name = if config.name.is_empty() { format!("node{}", identity.node_id) } else { config.name.clone() };
        let opts = NodeOptions {
            id: identity.node_id,
            cluster_id: identity.cluster_id,
            initial_members,
            heartbeat_interval: config.heartbeat_interval(),
            election_timeout: config.election_timeout(),
            request_timeout: config.request_timeout(),
            snapshot_after_entries: config.snapshot_after_entries,
            log_kept_after_snapshot: config.log_kept_after_snapshot,
            token: identity.token.clone(),
            peer_tls: peer_tls.clone(),
        };

        // Peers must reach Raft before it can elect: serve raft.v1 right away.
        let node = RaftNode::start(opts, engine).await?;
        let peer_tasks = TaskGroup::new();
        let gate = PeerGate::new(&config);
        let peer_acceptor = runtime::acceptor(peer_tls.as_ref(), false).map_err(|e| tls("peer TLS", e))?;
        let peer_router = runtime::server_builder().add_service(
            RaftServer::new(RaftService::new(node.clone(), gate, peer_tasks.shutdown_signal()))
                .max_decoding_message_size(crate::raft::network::MAX_PEER_MESSAGE_BYTES),
        );
        let mut stop = peer_tasks.shutdown_signal();
        peer_tasks.spawn("peer-grpc", async move {
            if let Err(e) =
                runtime::serve(peer_router, listeners.peer, peer_acceptor, async move { stop.wait().await }).await
            {
                tracing::error!(cause = %e, "peer server failed");
            }
        });

        let client_tasks = TaskGroup::new();
        // gRPC framing allows some overhead above the request size limit, as in
        // etcd; the exact limit is checked (with etcd's message) per request.
        let ctx = ApiContext::new(node.clone(), &config, client_tasks.shutdown_signal());
        let max_message = config.max_request_bytes + 512 * 1024;
        let kv = KvServer::new(KvService::new(ctx.clone())).max_decoding_message_size(max_message);
        let watch = WatchServer::new(WatchService::new(ctx.clone(), config.watch_progress_interval()))
            .max_decoding_message_size(max_message);
        let lease = LeaseServer::new(LeaseService::new(ctx.clone(), config.min_lease_ttl()))
            .max_decoding_message_size(max_message);
        // etcd's JSON gateway beside gRPC (see runtime::client_server_builder).
        let gateway = crate::api::gateway::GatewayLayer::new(node.clone(), max_message);
        let client_acceptor = runtime::acceptor(client_tls.as_ref(), true).map_err(|e| tls("client TLS", e))?;
        let mut client_builder = runtime::client_server_builder(gateway);
        let client_router = client_builder
            .add_service(kv)
            .add_service(watch)
            .add_service(lease)
            .add_service(ClusterServer::new(ClusterService::new(ctx.clone())))
            .add_service(AuthServer::new(AuthService::new(ctx.clone())).max_decoding_message_size(max_message))
            .add_service(MaintenanceServer::new(MaintenanceService::new(ctx.clone())))
            .add_service(HealthServer::new(HealthService::new(ctx.clone())))
            .add_service(
                PlacementServer::new(PlacementService::new(ctx.clone(), config.min_lease_ttl()))
                    .max_decoding_message_size(max_message),
            );
        client_tasks.spawn("leader-changes", count_leader_changes(node.clone(), client_tasks.shutdown_signal()));
        let mut metrics_addr = None;
        if let Some(listener) = listeners.metrics {
            metrics_addr = Some(
                listener
                    .local_addr()
                    .map_err(|cause| ServerError::Bind { addr: config.metrics_addr.clone(), cause })?,
            );
            let http_node = node.clone();
            let handler: runtime::HttpHandler =
                Arc::new(move |target: String| Box::pin(http_answer(http_node.clone(), target)));
            let mut stop = client_tasks.shutdown_signal();
            client_tasks
                .spawn("metrics-http", runtime::serve_http(listener, handler, async move { stop.wait().await }));
        }
        // The leader's lease expiry and auto-compaction run on every node and
        // act only while it leads.
        let expiry_node = node.clone();
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("lease-expiry", async move {
            while !stop.is_requested() {
                if expiry_node.expire_leases().await >= crate::raft::lessor::MAX_REVOKES_PER_PASS {
                    continue; // more are due: no pause
                }
                tokio::select! {
                    biased;
                    _ = stop.wait() => return,
                    _ = runtime::sleep(LEASE_EXPIRY_PASS) => {}
                }
            }
        });
        // A joined (or operator-added) member publishes its name and client
        // address and gets promoted once caught up.
        let promote = identity.joined && !config.join_as_learner;
        client_tasks.spawn(
            "settle-membership",
            crate::join::settle(
                node.clone(),
                name,
                config.client_addr.clone(),
                promote,
                client_tasks.shutdown_signal(),
            ),
        );
        client_tasks.spawn("disk-space", ctx.clone().watch_disk_space(client_tasks.shutdown_signal()));
        // The startup check waits for this member to have caught up: a few
        // election timeouts after a leader is known.
        let settle = std::time::Duration::from_millis(config.election_timeout_ms * 4);
        client_tasks.spawn(
            "corruption-check",
            ctx.clone().watch_corruption(
                settle,
                std::time::Duration::from_secs(config.corrupt_check_interval_secs),
                client_tasks.shutdown_signal(),
            ),
        );
        // A removed member nobody sends to any more asks (see `ask_whether_removed`).
        let probe_node = node.clone();
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("removal-probe", async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.wait() => return,
                    _ = runtime::sleep(probe_node.election_timeout().1) => {}
                }
                probe_node.ask_whether_removed().await;
            }
        });
        // The placement controller, acting only while this member leads.
        client_tasks.spawn("placement-controller", crate::api::controller::run(ctx.clone()));
        let mut compactor = AutoCompaction::new(&config);
        let compact_node = node.clone();
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("auto-compaction", async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.wait() => return,
                    _ = runtime::sleep(compactor.pass_interval()) => {}
                }
                compactor.pass(&compact_node).await;
            }
        });
        let mut stop = client_tasks.shutdown_signal();
        client_tasks.spawn("client-grpc", async move {
            if let Err(e) =
                runtime::serve(client_router, listeners.client, client_acceptor, async move { stop.wait().await }).await
            {
                tracing::error!(cause = %e, "client server failed");
            }
        });
        tracing::info!(node_id = identity.node_id, %client_addr, %peer_addr, data_dir = %config.data_dir.display(), "node started");
        Ok(Self { node, client_addr, peer_addr, metrics_addr, client_tasks, peer_tasks, engine: closing })
    }

    /// Who this node is: as stored in its data dir, else by joining (when
    /// `join` is set), else from the initial members. Stored on first start.
    async fn identity(
        config: &Config,
        engine: &dyn crate::storage::Engine,
        client_tls: Option<&runtime::TlsSettings>,
        peer_tls: Option<&runtime::TlsSettings>,
    ) -> Result<Identity, ServerError> {
        let storage = |cause| ServerError::Storage { dir: config.data_dir.display().to_string(), cause };
        if let Some(stored) = Identity::load(engine).map_err(storage)? {
            if !stored.joined && stored.node_id != config.node_id {
                return Err(ServerError::Identity(format!(
                    "data dir {} belongs to member {} (id {:x}), not to node_id {} ({:x}): give this node its own \
                     data dir, or the node_id the data dir was made for",
                    config.data_dir.display(),
                    stored.node_id,
                    stored.node_id,
                    config.node_id,
                    config.node_id
                )));
            }
            // Another cluster's token: the data dir is another cluster's
            // (the cluster id, derived from the initial members and the
            // token, names the two clusters).
            let ours = config.initial_cluster_token.as_bytes();
            if !ours.is_empty() && !stored.token.is_empty() && ours != stored.token.as_slice() {
                let configured = cluster_id(&Self::initial_members(config), ours);
                return Err(ServerError::Identity(format!(
                    "data dir {} belongs to cluster {:x}, but initial_cluster_token is another cluster's \
                     (that of {configured:x} with these initial members): use this cluster's data dir, or \
                     this data dir's cluster's token",
                    config.data_dir.display(),
                    stored.cluster_id,
                )));
            }
            return Ok(stored);
        }
        let identity = if config.join.is_empty() {
            let members = Self::initial_members(config);
            let token = bootstrap_token(config)?;
            let identity =
                Identity { cluster_id: cluster_id(&members, &token), node_id: config.node_id, joined: false, token };
            let sender = crate::raft::network::Sender {
                cluster_id: identity.cluster_id,
                node_id: identity.node_id,
                token: identity.token.clone().into(),
            };
            crate::join::refuse_if_started(&members, &sender, peer_tls, &config.data_dir)
                .await
                .map_err(ServerError::Identity)?;
            identity
        } else {
            let ours = config.initial_cluster_token.as_bytes();
            let joined = crate::join::ask_to_join(&config.join, &config.peer_addr, client_tls, ours)
                .await
                .map_err(|e| ServerError::Identity(e.to_string()))?;
            if !ours.is_empty() && !joined.token.is_empty() && ours != joined.token.as_slice() {
                return Err(ServerError::Identity(
                    "initial_cluster_token is not the token of the cluster this node joined".to_string(),
                ));
            }
            tracing::info!(
                node_id = joined.node_id,
                cluster_id = joined.cluster_id,
                "joined: added to the cluster as a learner"
            );
            Identity { cluster_id: joined.cluster_id, node_id: joined.node_id, joined: true, token: joined.token }
        };
        identity.store(engine).map_err(storage)?;
        Ok(identity)
    }

    fn initial_members(config: &Config) -> std::collections::BTreeMap<u64, Member> {
        config
            .effective_members()
            .into_iter()
            .map(|(id, m)| {
                let name = if id == config.node_id { config.member_name() } else { format!("node{id}") };
                // Started once each member says so itself (`join::settle`).
                (id, Member { name, peer_addr: m.peer_addr, client_addr: m.client_addr, started: false })
            })
            .collect()
    }

    /// Whether the cluster removed this member (it should stop; `run` does).
    pub fn removed(&self) -> bool {
        self.node.removed()
    }

    /// Stops the node: client API first, then (if it leads) leadership goes
    /// to the most caught-up voter, then Raft, then the peer API.
    pub async fn shutdown(self) {
        self.stop(true).await
    }

    /// Stops the node without handing over leadership (what a crash does to
    /// the cluster; test teardown, where the other nodes stop too).
    pub async fn shutdown_without_handover(self) {
        self.stop(false).await
    }

    /// Returns once the data dir is closed (or after a warning that it is
    /// not), so that the same process can open it again: a restart, a restore.
    async fn stop(self, hand_over: bool) {
        let Server { node, client_tasks, peer_tasks, engine, .. } = self;
        client_tasks.shutdown().await;
        if hand_over {
            if let Err(e) = node.hand_over_leadership().await {
                tracing::warn!(cause = %e, "leadership not handed over before shutdown");
            }
        }
        node.shutdown().await;
        peer_tasks.shutdown().await;
        let id = node.id;
        drop(node);
        if !runtime::engine_closed(&engine, ENGINE_CLOSE_LIMIT).await {
            tracing::warn!(node_id = id, "storage still open {ENGINE_CLOSE_LIMIT:?} after stopping");
        }
        tracing::info!(node_id = id, "node stopped");
    }
}

/// Seeds `config`'s (empty) data dir with the backup in `file` (what
/// `etcdctl snapshot save` wrote), as the node `config` describes in a new
/// cluster; returns the restored revision. Restore every member of the new
/// cluster from the same file, then start them as usual.
pub fn restore(config: &Config, file: &std::path::Path) -> Result<i64, ServerError> {
    config.validate()?;
    let err = |cause: String| ServerError::Restore { file: file.display().to_string(), cause };
    let bytes = std::fs::read(file).map_err(|e| err(e.to_string()))?;
    let state = crate::backup::decode(&bytes).map_err(|e| err(e.to_string()))?;
    let db_dir = config.data_dir.join("db");
    std::fs::create_dir_all(&db_dir).map_err(|e| err(format!("data dir {}: {e}", db_dir.display())))?;
    let engine = crate::raft::open_data(&db_dir)
        .map_err(|cause| ServerError::Storage { dir: db_dir.display().to_string(), cause })?;
    let storage = |cause| ServerError::Storage { dir: db_dir.display().to_string(), cause };
    let used = Identity::load(engine.as_ref()).map_err(storage)?.is_some()
        || engine.last(crate::raft::state_store::CF_KV).map_err(storage)?.is_some();
    if used {
        return Err(err(format!("data dir {} is not empty; restore needs a new one", config.data_dir.display())));
    }
    let revision = crate::raft::state_store::restore_backup(&engine, state).map_err(|e| err(e.to_string()))?;
    let members = Server::initial_members(config);
    let token = bootstrap_token(config)?;
    Identity { cluster_id: cluster_id(&members, &token), node_id: config.node_id, joined: false, token }
        .store(engine.as_ref())
        .map_err(storage)?;
    Ok(revision)
}

/// The cluster token a bootstrapping node starts its cluster with: the
/// configured one, else (a single-node cluster) a random one. Several
/// initial members must be given the same token: each would draw its own.
fn bootstrap_token(config: &Config) -> Result<Vec<u8>, ServerError> {
    if !config.initial_cluster_token.is_empty() {
        return Ok(config.initial_cluster_token.as_bytes().to_vec());
    }
    if config.effective_members().len() > 1 {
        return Err(ServerError::Identity(
            "a cluster of several initial members needs initial_cluster_token (--initial-cluster-token): \
             the same secret on each member, e.g. from `openssl rand -hex 16`"
                .to_string(),
        ));
    }
    use rand::Rng;
    let bytes: [u8; 16] = runtime::rng().gen();
    Ok(crate::api::tokens::hex(&bytes).into_bytes())
}

/// Binds, starts, runs until `shutdown` completes, then stops in order.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServerError> {
    config.validate()?;
    let listeners = Listeners::bind(&config).await?;
    let server = Server::start(config, listeners).await?;
    // Listening, with its data open: systemd's Type=notify start is done
    // (readiness to serve is /readyz's business: it needs a quorum).
    runtime::notify_service_manager("READY=1");
    let removed = {
        let node = server.node.clone();
        async move {
            // The membership and the vote are in the server metrics, which
            // change only with them; the full metrics change with every log
            // write, and each change woke this task (see `count_leader_changes`).
            // Peers refusing this node's messages change nothing there: the
            // tick looks again.
            let mut metrics = node.raft.server_metrics();
            while !node.removed() {
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() {
                        std::future::pending::<()>().await;
                    },
                    _ = crate::runtime::sleep(node.election_timeout().1) => {}
                }
            }
        }
    };
    // Raft stops for good on a storage error (a full disk, EIO): the member
    // then serves nothing. It exits instead, as etcd does, so that its
    // service manager restarts it on its intact data dir (everything it
    // acknowledged is durable); the robustness suite found members left
    // stopped after a full disk had room again, and after a panic in
    // openraft's core.
    let raft_stopped = raft_stopped(server.node.raft.metrics());
    enum Ended {
        Shutdown,
        Removed,
        RaftStopped(String),
    }
    let ended = tokio::select! {
        _ = shutdown => Ended::Shutdown,
        _ = removed => Ended::Removed,
        reason = raft_stopped => Ended::RaftStopped(reason),
    };
    let id = server.node.id;
    match &ended {
        Ended::Removed => tracing::error!(node_id = id, "this member was removed from the cluster: stopping"),
        Ended::RaftStopped(reason) => tracing::error!(node_id = id, %reason, "raft stopped: exiting"),
        Ended::Shutdown => {}
    }
    tracing::info!("shutting down");
    runtime::notify_service_manager("STOPPING=1");
    server.shutdown().await;
    match ended {
        Ended::Shutdown => Ok(()),
        Ended::Removed => Err(ServerError::Removed(id)),
        Ended::RaftStopped(reason) => Err(ServerError::RaftStopped(reason)),
    }
}

/// Resolves with why Raft stopped for good: openraft's report of a fatal
/// error, or the end of its core task without one (a panic unwinds the
/// task, which drops the sender of `metrics` without a last report).
/// Looks at most twice a second: the metrics change with every log write.
async fn raft_stopped(mut metrics: MetricsReceiver) -> String {
    loop {
        if let Err(e) = &metrics.borrow_watched().running_state {
            return e.to_string();
        }
        if metrics.changed().await.is_err() {
            return match &metrics.borrow_watched().running_state {
                Err(e) => e.to_string(),
                Ok(()) => "its core task ended without a report (a panic: see the log above)".to_string(),
            };
        }
        runtime::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use openraft::async_runtime::{Watch as _, WatchSender as _};
    use openraft::error::Fatal;

    use super::*;
    use crate::raft::types::RaftMetrics;

    type MetricsWatch = <crate::runtime::PlacementRuntime as openraft::AsyncRuntime>::Watch;

    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

    #[tokio::test]
    async fn a_core_that_reports_a_fatal_error_stops_the_member() {
        let (tx, rx) = MetricsWatch::channel(RaftMetrics::new_initial(1));
        let mut last = RaftMetrics::new_initial(1);
        last.running_state = Err(Fatal::Stopped);
        tx.send(last).expect("receiver alive");
        let reason = tokio::time::timeout(PATIENCE, raft_stopped(rx)).await.expect("noticed");
        assert_eq!(reason, Fatal::<crate::raft::types::TypeConfig>::Stopped.to_string());
    }

    #[tokio::test]
    async fn a_core_that_ends_without_a_report_stops_the_member() {
        let (tx, rx) = MetricsWatch::channel(RaftMetrics::new_initial(1));
        let mut stopped = std::pin::pin!(raft_stopped(rx));
        // Still running: a change with running_state Ok keeps it waiting.
        tx.send(RaftMetrics::new_initial(1)).expect("receiver alive");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), stopped.as_mut()).await;
        assert!(waiting.is_err(), "a running core must not stop the member");
        // A panicking core drops its sender with the last report still Ok.
        drop(tx);
        let reason = tokio::time::timeout(PATIENCE, stopped).await.expect("noticed");
        assert!(reason.contains("ended without a report"), "{reason}");
    }
}
