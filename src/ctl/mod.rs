//! placement-ctl: the command line for operators and scripts, over the
//! [`client`](crate::client) library.
//!
//! Exit codes (stable, for scripts): 0 success; 1 the cluster could not
//! answer (unavailable, timeout, internal); 2 bad usage or an argument the
//! server refused as invalid; 3 not found (a key, a node, a member); 4
//! refused in the current state (stale epoch, a lost registration, a member
//! change the cluster cannot take); 5 a revision out of range (compacted).
//! Errors go to stderr as `Error: <message>`; results to stdout.

mod output;

use std::sync::Arc;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use tonic::Code;

pub use output::Format;
use output::{
    event_json, event_line, kv_json, member_json, member_table, node_json, node_table, status_json, status_text, text,
    Table,
};

use crate::client::{Client, ClientError, ClientOptions, Credentials, Retry};
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, LeaseLeasesRequest, LeaseTimeToLiveRequest, MemberAddRequest, MemberListRequest,
    MemberPromoteRequest, MemberRemoveRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::placement::v1::{
    ClusterStatusRequest, GetClusterConfigRequest, NodeInfo, RegisterNodeRequest, SetClusterConfigRequest,
    UnregisterNodeRequest,
};
use crate::runtime;

/// Command line of placement-ctl.
#[derive(Parser, Debug)]
#[command(name = "placement-ctl", version, about = "Talk to a Placement Center cluster")]
pub struct Cli {
    /// Comma-separated client addresses of members (HOST:PORT).
    #[arg(long, global = true, env = "PLACEMENT_ENDPOINTS", default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// Seconds one request may take.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    /// TLS: the CA that signed the members' certificates (PEM), as etcdctl's --cacert.
    #[arg(id = "tls_cacert", long = "cacert", global = true, env = "PLACEMENT_CACERT")]
    pub cacert: Option<std::path::PathBuf>,
    /// TLS: this client's certificate (PEM), for members that require one.
    #[arg(id = "tls_cert", long = "cert", global = true, env = "PLACEMENT_CERT")]
    pub cert: Option<std::path::PathBuf>,
    /// TLS: the private key of --cert (PEM).
    #[arg(id = "tls_key", long = "key", global = true, env = "PLACEMENT_KEY")]
    pub key: Option<std::path::PathBuf>,
    /// Auth: the user to act as. The password comes from PLACEMENT_PASSWORD
    /// or, when that is unset, a prompt; never from a flag, which `ps` shows.
    #[arg(long, global = true, env = "PLACEMENT_USER")]
    pub user: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The credentials `--user` names: the password from the environment or a
/// prompt on the terminal.
fn credentials(user: Option<&str>) -> Result<Option<Credentials>, CtlError> {
    let Some(user) = user else { return Ok(None) };
    let bad = |message: String| CtlError { code: 2, message };
    if user.contains(':') {
        return Err(bad("--user takes a name only: pass the password in PLACEMENT_PASSWORD or at the prompt".into()));
    }
    let password = match std::env::var("PLACEMENT_PASSWORD") {
        Ok(password) => password,
        Err(_) => rpassword::prompt_password(format!("Password for {user}: "))
            .map_err(|e| bad(format!("cannot read the password: {e}")))?,
    };
    Ok(Some(Credentials { user: user.to_string(), password }))
}

/// The command groups.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Keys and values (etcd KV and Watch).
    #[command(subcommand)]
    Kv(KvCommand),
    /// Broker registrations (the placement API).
    #[command(subcommand)]
    Node(NodeCommand),
    /// The Placement Center cluster: status, members, per-cluster settings.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Leases.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Prints a shell completion script (e.g. `placement-ctl completions bash > /etc/bash_completion.d/placement-ctl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `kv` subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Reads a key (exit 3 when it does not exist) or, with --prefix, every key under it.
    Get {
        /// The key.
        key: String,
        /// Read every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Read the answering member's state without asking the leader (may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Writes a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Attach the key to this lease (hex, as `lease list` prints it).
        #[arg(long, value_parser = parse_hex)]
        lease: Option<i64>,
    },
    /// Deletes a key or, with --prefix, every key under it.
    Del {
        /// The key.
        key: String,
        /// Delete every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Prints changes to a key (or prefix) until interrupted.
    Watch {
        /// The key.
        key: String,
        /// Watch every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// Replay from this revision on (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

/// `node` subcommands.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Registers a node; prints its epoch and lease. With --keep-alive it stays
    /// and heartbeats until interrupted (then unregisters) or the
    /// registration is lost (exit 4).
    Register {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id (non-zero).
        #[arg(long)]
        id: u64,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A named address NAME=HOST:PORT (repeatable).
        #[arg(long = "address", value_parser = parse_pair)]
        addresses: Vec<(String, String)>,
        /// A label KEY=VALUE (repeatable).
        #[arg(long = "label", value_parser = parse_pair)]
        labels: Vec<(String, String)>,
        /// Stay and heartbeat.
        #[arg(long)]
        keep_alive: bool,
    },
    /// Sends one heartbeat for a registration (exit 4: stale epoch, 3: not registered).
    Heartbeat {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// The epoch `node register` printed.
        #[arg(long)]
        epoch: i64,
    },
    /// Lists registered nodes.
    List {
        /// Only this broker cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Only nodes with this role.
        #[arg(long, default_value = "")]
        role: String,
    },
    /// Prints nodes joining, changing and leaving until interrupted.
    Watch {
        /// Only this broker cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Replay from this revision on (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// Removes a registration.
    Unregister {
        /// The broker cluster.
        #[arg(long)]
        cluster: String,
        /// The node id.
        #[arg(long)]
        id: u64,
        /// Only if this is still the registration's epoch.
        #[arg(long, default_value_t = 0)]
        epoch: i64,
    },
}

/// `cluster` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, term, every member's health and applied index, nodes per broker cluster.
    Status,
    /// The members.
    Members,
    /// Adds a member by its peer address (then start it with --join).
    Add {
        /// The new member's peer address, HOST:PORT.
        peer_addr: String,
        /// Add it as a learner (promote it once caught up).
        #[arg(long)]
        learner: bool,
    },
    /// Promotes a learner (hex id, as `cluster members` prints it).
    Promote {
        /// The member id.
        #[arg(value_parser = parse_hex_u64)]
        id: u64,
    },
    /// Removes a member (hex id).
    Remove {
        /// The member id.
        #[arg(value_parser = parse_hex_u64)]
        id: u64,
    },
    /// A broker cluster's heartbeat settings.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `cluster config` subcommands.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Prints a broker cluster's heartbeat interval and expiry.
    Get {
        /// The broker cluster.
        cluster: String,
    },
    /// Sets them (for registrations from now on).
    Set {
        /// The broker cluster.
        cluster: String,
        /// Seconds between heartbeats.
        #[arg(long)]
        heartbeat_interval: u32,
        /// Seconds without a heartbeat before a node expires.
        #[arg(long)]
        expiry: u32,
    },
}

/// `lease` subcommands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Every lease id.
    List,
    /// A lease's granted and remaining TTL (exit 3 when it does not exist).
    Ttl {
        /// The lease id (hex).
        #[arg(value_parser = parse_hex)]
        id: i64,
        /// Also list the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn parse_hex_u64(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| format!("expected a hex id, got {s:?}: {e}"))
}

fn parse_hex(s: &str) -> Result<i64, String> {
    parse_hex_u64(s).map(|v| v as i64)
}

/// A failed command: what to print and the exit code.
#[derive(Debug)]
pub struct CtlError {
    /// The process exit code.
    pub code: i32,
    /// The message for stderr.
    pub message: String,
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        let code = match e.code() {
            Code::InvalidArgument => 2,
            Code::NotFound => 3,
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => 4,
            Code::OutOfRange => 5,
            _ => 1,
        };
        CtlError { code, message: e.to_string() }
    }
}

fn not_found(message: String) -> CtlError {
    CtlError { code: 3, message }
}

type Outcome = Result<(), CtlError>;

/// Runs the command line; the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match execute(cli).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {}", e.message);
            e.code
        }
    }
}

async fn execute(cli: Cli) -> Outcome {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "placement-ctl", &mut std::io::stdout());
        return Ok(());
    }
    let tls = crate::runtime::TlsSettings::for_client(cli.cacert.as_deref(), cli.cert.as_deref(), cli.key.as_deref())
        .map_err(|e| CtlError { code: 2, message: e.to_string() })?;
    let credentials = credentials(cli.user.as_deref())?;
    let options = ClientOptions {
        request_timeout: Duration::from_secs(cli.timeout),
        tls,
        credentials,
        ..ClientOptions::default()
    };
    let endpoints: Vec<String> = cli.endpoints.split(',').map(str::to_string).collect();
    let client = Client::new(&endpoints, options).map_err(|e| CtlError { code: 2, message: e.to_string() })?;
    let ctl = Ctl { client, format: cli.output };
    match cli.command {
        Command::Kv(c) => ctl.kv(c).await,
        Command::Node(c) => ctl.node(c).await,
        Command::Cluster(c) => ctl.cluster(c).await,
        Command::Lease(c) => ctl.lease(c).await,
        Command::Completions { .. } => Ok(()),
    }
}

struct Ctl {
    client: Arc<Client>,
    format: Format,
}

/// The end of the range of every key starting with `key` (etcd's prefix rule).
fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

impl Ctl {
    /// Prints `table` or `json` as the format asks.
    fn print(&self, table: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
        match self.format {
            Format::Table => print!("{}", table()),
            Format::Json => println!("{}", json()),
        }
    }

    async fn kv(&self, command: KvCommand) -> Outcome {
        match command {
            KvCommand::Get { key, prefix, serializable } => {
                let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
                let req = RangeRequest { key: key.clone().into_bytes(), range_end, serializable, ..Default::default() };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).range(req).await }
                    })
                    .await?;
                if !prefix && resp.kvs.is_empty() {
                    return Err(not_found(format!("key not found: {key}")));
                }
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                self.print(
                    || {
                        let mut t = Table::new(vec!["KEY", "VALUE", "MOD_REVISION", "LEASE"]);
                        for kv in &resp.kvs {
                            let lease = if kv.lease == 0 { String::new() } else { format!("{:x}", kv.lease) };
                            t.row(vec![text(&kv.key), text(&kv.value), kv.mod_revision.to_string(), lease]);
                        }
                        t.render()
                    },
                    || json!({"revision": revision, "kvs": resp.kvs.iter().map(kv_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            KvCommand::Put { key, value, lease } => {
                let req = PutRequest {
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                    lease: lease.unwrap_or(0),
                    ..Default::default()
                };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).put(req).await }
                    })
                    .await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                self.print(|| format!("OK revision {revision}\n"), || json!({"revision": revision}));
                Ok(())
            }
            KvCommand::Del { key, prefix } => {
                let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
                let req = DeleteRangeRequest { key: key.into_bytes(), range_end, ..Default::default() };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::kv(ch).delete_range(req).await }
                    })
                    .await?;
                let revision = resp.header.map_or(0, |h| h.revision);
                let deleted = resp.deleted;
                self.print(|| format!("deleted {deleted}\n"), || json!({"deleted": deleted, "revision": revision}));
                Ok(())
            }
            KvCommand::Watch { key, prefix, rev } => self.watch_keys(key, prefix, rev).await,
        }
    }

    async fn watch_keys(&self, key: String, prefix: bool, rev: i64) -> Outcome {
        let range_end = if prefix { prefix_end(key.as_bytes()) } else { Vec::new() };
        let create = WatchCreateRequest { key: key.into_bytes(), range_end, start_revision: rev, ..Default::default() };
        let (requests_tx, requests_rx) = tokio::sync::mpsc::channel(1);
        let request = WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) };
        let _ = requests_tx.send(request).await;
        let (channel, endpoint) = self.client.channel();
        let requests = crate::api::context::receiver_stream(requests_rx);
        let status_error = |status: tonic::Status| ClientError::Status { endpoint: endpoint.to_string(), status };
        self.client.authenticate().await?;
        let requests = self.client.request(requests);
        let mut stream = Client::watch(channel).watch(requests).await.map_err(status_error)?.into_inner();
        let mut interrupted = Box::pin(runtime::shutdown_signal());
        loop {
            let message = tokio::select! {
                _ = &mut interrupted => return Ok(()),
                m = stream.message() => m.map_err(status_error)?,
            };
            let Some(resp) = message else {
                return Err(CtlError { code: 1, message: "watch ended by the server".into() });
            };
            if resp.canceled {
                let message = format!(
                    "watch canceled: {} (compact revision {})",
                    if resp.cancel_reason.is_empty() { "compacted" } else { &resp.cancel_reason },
                    resp.compact_revision
                );
                return Err(CtlError { code: 5, message });
            }
            for e in &resp.events {
                let kv = e.kv.clone().unwrap_or_default();
                let kind = if e.r#type == EventType::Delete as i32 { "DELETE" } else { "PUT" };
                self.print(
                    || format!("{kind} {} {} revision={}\n", text(&kv.key), text(&kv.value), kv.mod_revision),
                    || json!({"type": kind, "kv": kv_json(&kv)}),
                );
            }
        }
    }

    async fn node(&self, command: NodeCommand) -> Outcome {
        match command {
            NodeCommand::Register { cluster, id, roles, addresses, labels, keep_alive } => {
                let req = RegisterNodeRequest {
                    cluster,
                    node_id: id,
                    roles,
                    addresses: addresses.into_iter().collect(),
                    labels: labels.into_iter().collect(),
                };
                // Listening before the output a script may act on (see shutdown_signal).
                let interrupted = keep_alive.then(runtime::shutdown_signal);
                let registration = self.client.register(req).await?;
                let (interval, expiry) = (registration.heartbeat_interval, registration.expiry);
                let node = registration.node.clone();
                self.print(
                    || {
                        let mut out = node_table(std::slice::from_ref(&node)).render();
                        out += &format!(
                            "heartbeat every {}s, expires after {}s without one\n",
                            interval.as_secs(),
                            expiry.as_secs()
                        );
                        out
                    },
                    || {
                        json!({
                            "node": node_json(&node),
                            "heartbeat_interval_secs": interval.as_secs(),
                            "expiry_secs": expiry.as_secs(),
                        })
                    },
                );
                match interrupted {
                    Some(interrupted) => self.keep_alive(&registration, interrupted).await,
                    None => Ok(()),
                }
            }
            NodeCommand::Heartbeat { cluster, id, epoch } => {
                let node = NodeInfo { cluster, node_id: id, epoch, ..Default::default() };
                let resp = self.client.heartbeat(&node).await?;
                let ttl = resp.ttl_secs;
                self.print(|| format!("OK ttl {ttl}s\n"), || json!({"ttl_secs": ttl}));
                Ok(())
            }
            NodeCommand::List { cluster, role } => {
                let resp = self.client.list_nodes(&cluster, &role).await?;
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                self.print(
                    || node_table(&resp.nodes).render(),
                    || json!({"revision": revision, "nodes": resp.nodes.iter().map(node_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            NodeCommand::Watch { cluster, rev } => {
                let mut events = self.client.watch_nodes(&cluster, rev);
                let mut interrupted = Box::pin(runtime::shutdown_signal());
                loop {
                    let next = tokio::select! {
                        _ = &mut interrupted => return Ok(()),
                        next = events.recv() => next,
                    };
                    let resp = match next {
                        None => return Err(CtlError { code: 1, message: "watch ended".into() }),
                        Some(resp) => resp?,
                    };
                    for e in &resp.events {
                        self.print(|| event_line(e) + "\n", || event_json(e));
                    }
                }
            }
            NodeCommand::Unregister { cluster, id, epoch } => {
                let req = UnregisterNodeRequest { cluster: cluster.clone(), node_id: id, epoch };
                let removed = self.unregister(req).await?;
                self.print(
                    || {
                        if removed {
                            format!("unregistered node {id} of cluster {cluster}\n")
                        } else {
                            format!("node {id} of cluster {cluster} was not registered\n")
                        }
                    },
                    || json!({"removed": removed}),
                );
                Ok(())
            }
        }
    }

    async fn unregister(&self, req: UnregisterNodeRequest) -> Result<bool, CtlError> {
        let resp = self
            .client
            .call(Retry::Idempotent, |ch| {
                let req = self.client.request(req.clone());
                async move { Client::placement(ch).unregister_node(req).await }
            })
            .await?;
        Ok(resp.removed)
    }

    /// Heartbeats until interrupted (then unregisters) or the registration is lost.
    async fn keep_alive(
        &self,
        registration: &crate::client::Registration,
        interrupted: impl std::future::Future<Output = ()>,
    ) -> Outcome {
        let mut keep_alive = self.client.keep_alive(registration);
        tokio::select! {
            lost = keep_alive.lost() => Err(CtlError { code: 4, message: format!("registration lost: {lost}") }),
            _ = interrupted => {
                let node = &registration.node;
                let req = UnregisterNodeRequest { cluster: node.cluster.clone(), node_id: node.node_id, epoch: node.epoch };
                self.unregister(req).await?;
                eprintln!("interrupted: unregistered node {} of cluster {}", node.node_id, node.cluster);
                Ok(())
            }
        }
    }

    async fn cluster(&self, command: ClusterCommand) -> Outcome {
        match command {
            ClusterCommand::Status => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(ClusterStatusRequest {});
                        async move { Client::placement(ch).cluster_status(req).await }
                    })
                    .await?;
                self.print(|| status_text(&resp), || status_json(&resp));
                Ok(())
            }
            ClusterCommand::Members => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(MemberListRequest { linearizable: true });
                        async move { Client::cluster(ch).member_list(req).await }
                    })
                    .await?;
                self.print(
                    || member_table(&resp.members).render(),
                    || json!({"members": resp.members.iter().map(member_json).collect::<Vec<_>>()}),
                );
                Ok(())
            }
            ClusterCommand::Add { peer_addr, learner } => {
                let url = if peer_addr.starts_with("http") { peer_addr } else { format!("http://{peer_addr}") };
                let req = MemberAddRequest { peer_ur_ls: vec![url], is_learner: learner };
                let resp = self
                    .client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::cluster(ch).member_add(req).await }
                    })
                    .await?;
                let member = resp.member.unwrap_or_default();
                let kind = if member.is_learner { "learner" } else { "voter" };
                self.print(
                    || format!("added member {:x} as a {kind}; start it with --join\n", member.id),
                    || member_json(&member),
                );
                Ok(())
            }
            ClusterCommand::Promote { id } => {
                self.client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(MemberPromoteRequest { id });
                        async move { Client::cluster(ch).member_promote(req).await }
                    })
                    .await?;
                self.print(|| format!("promoted member {id:x}\n"), || json!({"promoted": id}));
                Ok(())
            }
            ClusterCommand::Remove { id } => {
                self.client
                    .call(Retry::OnlyIfNotSent, |ch| {
                        let req = self.client.request(MemberRemoveRequest { id });
                        async move { Client::cluster(ch).member_remove(req).await }
                    })
                    .await?;
                self.print(|| format!("removed member {id:x}\n"), || json!({"removed": id}));
                Ok(())
            }
            ClusterCommand::Config(ConfigCommand::Get { cluster }) => {
                let req = GetClusterConfigRequest { cluster };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::placement(ch).get_cluster_config(req).await }
                    })
                    .await?;
                self.print_config(&resp);
                Ok(())
            }
            ClusterCommand::Config(ConfigCommand::Set { cluster, heartbeat_interval, expiry }) => {
                let req = SetClusterConfigRequest {
                    cluster,
                    heartbeat_interval_secs: heartbeat_interval,
                    expiry_secs: expiry,
                };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req.clone());
                        async move { Client::placement(ch).set_cluster_config(req).await }
                    })
                    .await?;
                self.print_config(&resp);
                Ok(())
            }
        }
    }

    fn print_config(&self, c: &crate::proto::placement::v1::ClusterConfigResponse) {
        self.print(
            || {
                let source = if c.configured { "set" } else { "defaults" };
                format!(
                    "cluster {}: heartbeat every {}s, expiry after {}s ({source})\n",
                    c.cluster, c.heartbeat_interval_secs, c.expiry_secs
                )
            },
            || {
                json!({
                    "cluster": c.cluster,
                    "heartbeat_interval_secs": c.heartbeat_interval_secs,
                    "expiry_secs": c.expiry_secs,
                    "configured": c.configured,
                })
            },
        );
    }

    async fn lease(&self, command: LeaseCommand) -> Outcome {
        match command {
            LeaseCommand::List => {
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(LeaseLeasesRequest {});
                        async move { Client::lease(ch).lease_leases(req).await }
                    })
                    .await?;
                let ids: Vec<i64> = resp.leases.iter().map(|l| l.id).collect();
                self.print(
                    || {
                        let mut t = Table::new(vec!["LEASE"]);
                        ids.iter().for_each(|id| t.row(vec![format!("{id:x}")]));
                        t.render()
                    },
                    || json!({"leases": ids}),
                );
                Ok(())
            }
            LeaseCommand::Ttl { id, keys } => {
                let req = LeaseTimeToLiveRequest { id, keys };
                let resp = self
                    .client
                    .call(Retry::Idempotent, |ch| {
                        let req = self.client.request(req);
                        async move { Client::lease(ch).lease_time_to_live(req).await }
                    })
                    .await?;
                if resp.ttl < 0 {
                    return Err(not_found(format!("lease {id:x} not found")));
                }
                let keys: Vec<String> = resp.keys.iter().map(|k| text(k)).collect();
                self.print(
                    || {
                        let mut out = format!("lease {id:x}: granted {}s, remaining {}s\n", resp.granted_ttl, resp.ttl);
                        keys.iter().for_each(|k| out += &format!("  {k}\n"));
                        out
                    },
                    || json!({"id": id, "granted_ttl": resp.granted_ttl, "ttl": resp.ttl, "keys": keys}),
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_after_every_key_with_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn the_command_line_is_well_formed_and_parses_pairs_and_hex_ids() {
        Cli::command().debug_assert();
        assert_eq!(parse_pair("grpc=1.2.3.4:5"), Ok(("grpc".into(), "1.2.3.4:5".into())));
        assert!(parse_pair("nopair").is_err());
        assert_eq!(parse_hex_u64("ff"), Ok(255));
        assert_eq!(parse_hex_u64("0x10"), Ok(16));
        assert!(parse_hex_u64("zz").is_err());
    }
}
