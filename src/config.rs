//! One configuration tree. Sources, lowest precedence first: built-in defaults,
//! a TOML file, `PLACEMENT_*` environment variables, command-line flags (the
//! binary maps env and flags onto [`Overrides`]). [`Config::validate`] runs at
//! startup and names what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The largest `max_request_bytes` allowed: a request this large, alone in
/// its log entry, still fits what a member decodes from a peer
/// (`raft::network::MAX_PEER_MESSAGE_BYTES`).
pub const MAX_REQUEST_BYTES_LIMIT: usize = 64 * 1024 * 1024;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {cause}")]
    Parse { path: PathBuf, cause: String },
    /// A value or a combination of values is not allowed.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Another member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// HOST:PORT of its raft.v1 service (a name or an address).
    pub peer_addr: String,
    /// HOST:PORT of its client API (shown to clients; may be empty).
    #[serde(default)]
    pub client_addr: String,
}

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id (etcd's member id); non-zero, unique in the cluster.
    pub node_id: u64,
    /// Human-readable member name; defaults to `node<id>`.
    pub name: String,
    /// Where clients (etcdctl, brokers) connect, HOST:PORT (a name or an
    /// address): what this member advertises to clients and peers (etcd's
    /// `--advertise-client-urls`), and where it listens unless
    /// `listen_client_addr` says otherwise. Default 127.0.0.1:2379, etcd's.
    pub client_addr: String,
    /// Where the client port listens, when not at `client_addr` (etcd's
    /// `--listen-client-urls`), e.g. `0.0.0.0:2379`. Empty: `client_addr`.
    pub listen_client_addr: String,
    /// Where peers connect for Raft traffic, HOST:PORT: what this member
    /// advertises (etcd's `--initial-advertise-peer-urls`), and where it
    /// listens unless `listen_peer_addr` says otherwise. Default
    /// 127.0.0.1:2380, etcd's.
    pub peer_addr: String,
    /// Where the peer port listens, when not at `peer_addr` (etcd's
    /// `--listen-peer-urls`). Empty: `peer_addr`.
    pub listen_peer_addr: String,
    /// Where /metrics (Prometheus), /livez, /readyz and /health listen
    /// (etcd's `--listen-metrics-urls`). Default 127.0.0.1:2381; empty: none.
    pub metrics_addr: String,
    /// Directory of this node's data; created when missing.
    pub data_dir: PathBuf,
    /// The members a new cluster starts with, by node id. Empty: a single-node
    /// cluster of this node alone. (TOML keys are strings: `[initial_members.2]`.)
    #[serde(with = "id_keys")]
    pub initial_members: BTreeMap<u64, MemberConfig>,
    /// Client addresses (HOST:PORT) of members of an existing cluster to join.
    /// A node with an empty data dir asks one of them to add it as a learner,
    /// catches up, then asks to be promoted to voter. Excludes `initial_members`;
    /// ignored once the node has joined (its data dir knows the cluster).
    pub join: Vec<String>,
    /// After joining, stay a learner (promote with `etcdctl member promote`).
    pub join_as_learner: bool,
    /// Leader heartbeat period, milliseconds (etcd: 100).
    pub heartbeat_interval_ms: u64,
    /// Smallest election timeout, milliseconds (etcd: 1000); the largest is twice it.
    pub election_timeout_ms: u64,
    /// How long a client request may wait for the cluster, milliseconds.
    pub request_timeout_ms: u64,
    /// Largest client request accepted, bytes (etcd: 1.5 MiB).
    pub max_request_bytes: usize,
    /// How long an auth token stays valid after its last use, seconds
    /// (etcd's `--auth-token-ttl`, default 300).
    pub auth_token_ttl: u64,
    /// The space quota of the data dir, bytes (etcd's `--quota-backend-bytes`;
    /// 0: the default, 2 GiB): past it, writes that grow the store raise the
    /// NOSPACE alarm and are refused until it is disarmed.
    pub quota_backend_bytes: u64,
    /// Auto-compaction keeps this many revisions of history (0: not by count).
    /// The history lives in memory and on disk until compacted.
    pub auto_compaction_retention_revisions: u64,
    /// Auto-compaction keeps this many seconds of history (0: not by age).
    pub auto_compaction_retention_secs: u64,
    /// Auto-compaction keeps at most this many bytes of history, oldest
    /// revisions compacted first (0: a quarter of the space quota). Always
    /// on: each event holds its record and the one it replaced, in memory.
    pub auto_compaction_retention_bytes: u64,
    /// How often the leader compares the members' keys (HashKV at one
    /// revision) and raises CORRUPT for a member that differs from the
    /// majority, seconds (0: only the check each member makes at startup).
    pub corrupt_check_interval_secs: u64,
    /// A snapshot of the state machine is taken after this many applied
    /// entries since the last one; the log behind it is then purged.
    pub snapshot_after_entries: u64,
    /// Log entries kept behind a snapshot, so that a briefly lagging follower
    /// catches up from the log rather than by snapshot.
    pub log_kept_after_snapshot: u64,
    /// How often a watch created with `progress_notify` hears the revision
    /// when nothing happened, milliseconds (etcd: 10 minutes).
    pub watch_progress_notify_interval_ms: u64,
    /// A secret shared by the members of one cluster: it goes with every peer
    /// message, and a member refuses messages without it, so that two
    /// clusters built from the same member list never talk to each other and
    /// a client that learned the cluster id cannot forge Raft traffic. A
    /// single-node cluster draws a random one when empty; a cluster started
    /// with several initial members needs the same value on each. The data
    /// dir keeps it; a data dir whose token differs from a non-empty one
    /// here belongs to another cluster, and is refused.
    pub initial_cluster_token: String,
    /// Client port TLS (etcd's `--cert-file`): this node's certificate, PEM.
    /// Empty: the client port speaks plain TCP.
    pub cert_file: PathBuf,
    /// The private key of `cert_file`, PEM (etcd's `--key-file`).
    pub key_file: PathBuf,
    /// The CA whose certificates clients present (etcd's `--trusted-ca-file`).
    pub trusted_ca_file: PathBuf,
    /// Clients must present a certificate signed by `trusted_ca_file`
    /// (etcd's `--client-cert-auth`).
    pub client_cert_auth: bool,
    /// Peer port TLS (etcd's `--peer-cert-file`): this member's certificate,
    /// served to peers and presented when calling them. Empty: plain TCP.
    pub peer_cert_file: PathBuf,
    /// The private key of `peer_cert_file`, PEM.
    pub peer_key_file: PathBuf,
    /// The CA that signs every member's peer certificate.
    pub peer_trusted_ca_file: PathBuf,
    /// Peers must present a certificate signed by `peer_trusted_ca_file`
    /// (mutual TLS); the sender of a message is then the member its
    /// certificate names, not what the message says.
    pub peer_client_cert_auth: bool,
    /// Peer certificates must carry one of these common names (empty: any).
    pub peer_cert_allowed_cn: Vec<String>,
    /// Peer certificates must carry one of these DNS or IP subject
    /// alternative names (empty: any).
    pub peer_cert_allowed_hostname: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: 1,
            name: String::new(),
            client_addr: "127.0.0.1:2379".to_string(),
            listen_client_addr: String::new(),
            peer_addr: "127.0.0.1:2380".to_string(),
            listen_peer_addr: String::new(),
            metrics_addr: "127.0.0.1:2381".to_string(),
            data_dir: PathBuf::from("default.placement"),
            initial_members: BTreeMap::new(),
            join: Vec::new(),
            join_as_learner: false,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            request_timeout_ms: 5000,
            max_request_bytes: 1536 * 1024,
            auth_token_ttl: 300,
            quota_backend_bytes: 0,
            auto_compaction_retention_revisions: 10_000,
            auto_compaction_retention_secs: 0,
            auto_compaction_retention_bytes: 0,
            corrupt_check_interval_secs: 300,
            watch_progress_notify_interval_ms: 600_000,
            snapshot_after_entries: 10_000,
            log_kept_after_snapshot: 1_000,
            initial_cluster_token: String::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            trusted_ca_file: PathBuf::new(),
            client_cert_auth: false,
            peer_cert_file: PathBuf::new(),
            peer_key_file: PathBuf::new(),
            peer_trusted_ca_file: PathBuf::new(),
            peer_client_cert_auth: false,
            peer_cert_allowed_cn: Vec::new(),
            peer_cert_allowed_hostname: Vec::new(),
        }
    }
}

/// TOML table keys are strings; node ids are numbers.
mod id_keys {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::MemberConfig;

    pub fn serialize<S: Serializer>(map: &BTreeMap<u64, MemberConfig>, s: S) -> Result<S::Ok, S::Error> {
        let by_name: BTreeMap<String, &MemberConfig> = map.iter().map(|(id, m)| (id.to_string(), m)).collect();
        by_name.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, MemberConfig>, D::Error> {
        let by_name = BTreeMap::<String, MemberConfig>::deserialize(d)?;
        by_name
            .into_iter()
            .map(|(key, m)| {
                let id = key.parse::<u64>().map_err(|_| {
                    serde::de::Error::custom(format!("initial member key {key:?} is not a node id (a number)"))
                })?;
                Ok((id, m))
            })
            .collect()
    }
}

/// Values from env or flags that override the file: the server binary's
/// flags, each also read from a `PLACEMENT_*` environment variable (flags win).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// This node's id, non-zero.
    #[arg(long, env = "PLACEMENT_NODE_ID")]
    pub node_id: Option<u64>,
    /// Member name.
    #[arg(long, env = "PLACEMENT_NAME")]
    pub name: Option<String>,
    /// Client API address, HOST:PORT: listened on and advertised.
    #[arg(long, env = "PLACEMENT_CLIENT_ADDR")]
    pub client_addr: Option<String>,
    /// The client address advertised to clients and peers (etcd's flag; one
    /// URL or HOST:PORT).
    #[arg(long, env = "PLACEMENT_ADVERTISE_CLIENT_URLS", conflicts_with = "client_addr")]
    pub advertise_client_urls: Option<String>,
    /// Where the client port listens, e.g. http://0.0.0.0:2379 (etcd's flag).
    #[arg(long, env = "PLACEMENT_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    /// Peer (Raft) address, HOST:PORT: listened on and advertised.
    #[arg(long, env = "PLACEMENT_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// The peer address advertised to the other members (etcd's flag).
    #[arg(long, env = "PLACEMENT_INITIAL_ADVERTISE_PEER_URLS", conflicts_with = "peer_addr")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Where the peer port listens, e.g. http://0.0.0.0:2380 (etcd's flag).
    #[arg(long, env = "PLACEMENT_LISTEN_PEER_URLS")]
    pub listen_peer_urls: Option<String>,
    /// HTTP address for /metrics, /livez, /readyz, /health, HOST:PORT ("" for none).
    #[arg(long, env = "PLACEMENT_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// The same as --metrics-addr (etcd's flag).
    #[arg(long, env = "PLACEMENT_LISTEN_METRICS_URLS", conflicts_with = "metrics_addr")]
    pub listen_metrics_urls: Option<String>,
    /// Data directory.
    #[arg(long, env = "PLACEMENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial members: `ID=PEER_ADDR[@CLIENT_ADDR],...`
    #[arg(long, env = "PLACEMENT_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// The secret every initial member shares (see `Config::initial_cluster_token`).
    #[arg(long, env = "PLACEMENT_INITIAL_CLUSTER_TOKEN", hide_env_values = true)]
    pub initial_cluster_token: Option<String>,
    /// Join an existing cluster through any member's client address: `CLIENT_ADDR,...`
    #[arg(long, env = "PLACEMENT_JOIN")]
    pub join: Option<String>,
    /// After joining, stay a learner until promoted.
    #[arg(long, env = "PLACEMENT_JOIN_AS_LEARNER")]
    pub join_as_learner: bool,
    /// Leader heartbeat period in milliseconds.
    #[arg(long, env = "PLACEMENT_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Election timeout in milliseconds.
    #[arg(long, env = "PLACEMENT_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Client request timeout in milliseconds.
    #[arg(long, env = "PLACEMENT_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Largest client request in bytes.
    #[arg(long, env = "PLACEMENT_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Seconds an auth token stays valid after its last use.
    #[arg(long, env = "PLACEMENT_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: Option<u64>,
    /// The data dir's space quota in bytes (0: 2 GiB).
    #[arg(long, env = "PLACEMENT_QUOTA_BACKEND_BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// Client port TLS: this node's certificate (PEM).
    #[arg(long, env = "PLACEMENT_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Client port TLS: the certificate's private key (PEM).
    #[arg(long, env = "PLACEMENT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Client port TLS: the CA that signs client certificates (PEM).
    #[arg(long, env = "PLACEMENT_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client port TLS: require a client certificate signed by the trusted CA.
    #[arg(long, env = "PLACEMENT_CLIENT_CERT_AUTH")]
    pub client_cert_auth: bool,
    /// Peer port TLS: this member's certificate (PEM), served and presented to peers.
    #[arg(long, env = "PLACEMENT_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Peer port TLS: the certificate's private key (PEM).
    #[arg(long, env = "PLACEMENT_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Peer port TLS: the CA that signs members' certificates (PEM).
    #[arg(long, env = "PLACEMENT_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Peer port TLS: require a certificate from every peer, signed by the peer CA.
    #[arg(long, env = "PLACEMENT_PEER_CLIENT_CERT_AUTH")]
    pub peer_client_cert_auth: bool,
    /// Peer port TLS: a peer certificate must carry one of these common names (comma-separated).
    #[arg(long, env = "PLACEMENT_PEER_CERT_ALLOWED_CN", value_delimiter = ',')]
    pub peer_cert_allowed_cn: Vec<String>,
    /// Peer port TLS: a peer certificate must carry one of these DNS or IP subject
    /// alternative names (comma-separated).
    #[arg(long, env = "PLACEMENT_PEER_CERT_ALLOWED_HOSTNAME", value_delimiter = ',')]
    pub peer_cert_allowed_hostname: Vec<String>,
}

/// Parses `ID=PEER_ADDR[@CLIENT_ADDR]` items separated by commas.
pub fn parse_initial_cluster(spec: &str) -> Result<BTreeMap<u64, MemberConfig>, ConfigError> {
    let mut members = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || ConfigError::Invalid(format!("initial cluster item {item:?} is not ID=PEER_ADDR[@CLIENT_ADDR]"));
        let (id, addrs) = item.split_once('=').ok_or_else(bad)?;
        let id: u64 = id.trim().parse().map_err(|_| bad())?;
        let (peer, client) = addrs.split_once('@').unwrap_or((addrs, ""));
        // etcd's URL form is welcome; what is not an address is left for
        // `validate` to name.
        let addr = |a: &str| crate::addr::from_url(a).unwrap_or_else(|_| a.trim().to_string());
        let client = if client.trim().is_empty() { String::new() } else { addr(client) };
        let member = MemberConfig { peer_addr: addr(peer), client_addr: client };
        if members.insert(id, member).is_some() {
            return Err(ConfigError::Invalid(format!("node id {id} appears twice in the initial cluster")));
        }
    }
    Ok(members)
}

impl Config {
    /// Defaults, then the file (if any), then the overrides. Not yet validated.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Self, ConfigError> {
        let mut config = match file {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|cause| ConfigError::Read { path: path.to_path_buf(), cause })?;
                Self::from_toml(&text).map_err(|cause| ConfigError::Parse { path: path.to_path_buf(), cause })?
            }
        };
        let o = overrides;
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(v) = o.$field {
                    config.$field = v;
                }
            )*};
        }
        set!(node_id, name, client_addr, peer_addr, metrics_addr, data_dir, initial_cluster_token);
        set!(heartbeat_interval_ms, election_timeout_ms, request_timeout_ms, max_request_bytes, auth_token_ttl);
        set!(quota_backend_bytes);
        let url = |flag: &str, value: &str| {
            crate::addr::from_url(value).map_err(|e| ConfigError::Invalid(format!("--{flag}: {e}")))
        };
        if let Some(v) = &o.advertise_client_urls {
            config.client_addr = url("advertise-client-urls", v)?;
        }
        if let Some(v) = &o.listen_client_urls {
            config.listen_client_addr = url("listen-client-urls", v)?;
        }
        if let Some(v) = &o.initial_advertise_peer_urls {
            config.peer_addr = url("initial-advertise-peer-urls", v)?;
        }
        if let Some(v) = &o.listen_peer_urls {
            config.listen_peer_addr = url("listen-peer-urls", v)?;
        }
        if let Some(v) = &o.listen_metrics_urls {
            config.metrics_addr = if v.is_empty() { String::new() } else { url("listen-metrics-urls", v)? };
        }
        set!(cert_file, key_file, trusted_ca_file, peer_cert_file, peer_key_file, peer_trusted_ca_file);
        if let Some(spec) = o.initial_cluster {
            config.initial_members = parse_initial_cluster(&spec)?;
        }
        if let Some(spec) = o.join {
            config.join = spec.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        config.join_as_learner |= o.join_as_learner;
        config.client_cert_auth |= o.client_cert_auth;
        config.peer_client_cert_auth |= o.peer_client_cert_auth;
        if !o.peer_cert_allowed_cn.is_empty() {
            config.peer_cert_allowed_cn = o.peer_cert_allowed_cn;
        }
        if !o.peer_cert_allowed_hostname.is_empty() {
            config.peer_cert_allowed_hostname = o.peer_cert_allowed_hostname;
        }
        Ok(config)
    }

    /// Parses a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The member name, defaulted from the id.
    pub fn member_name(&self) -> String {
        if self.name.is_empty() {
            format!("node{}", self.node_id)
        } else {
            self.name.clone()
        }
    }

    /// The initial members, this node alone when none are configured.
    pub fn effective_members(&self) -> BTreeMap<u64, MemberConfig> {
        if self.initial_members.is_empty() {
            let me = MemberConfig { peer_addr: self.peer_addr.clone(), client_addr: self.client_addr.clone() };
            return [(self.node_id, me)].into_iter().collect();
        }
        self.initial_members.clone()
    }

    /// Heartbeat period.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// Election timeout range.
    pub fn election_timeout(&self) -> (Duration, Duration) {
        (Duration::from_millis(self.election_timeout_ms), Duration::from_millis(self.election_timeout_ms * 2))
    }

    /// Client request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Shortest lease TTL in whole seconds: 1.5 election timeouts rounded up
    /// (etcd's rule), so a lease outlives a leader election.
    pub fn min_lease_ttl(&self) -> i64 {
        (self.election_timeout_ms * 3).div_ceil(2000) as i64
    }

    /// The space quota in bytes: `quota_backend_bytes`, or 2 GiB when 0.
    pub fn quota_backend_bytes(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            2 * 1024 * 1024 * 1024
        } else {
            self.quota_backend_bytes
        }
    }

    /// The history's byte budget: `auto_compaction_retention_bytes`, or a
    /// quarter of the space quota when 0.
    pub fn history_budget_bytes(&self) -> u64 {
        if self.auto_compaction_retention_bytes == 0 {
            self.quota_backend_bytes() / 4
        } else {
            self.auto_compaction_retention_bytes
        }
    }

    /// Period of progress notifications to quiet watchers.
    pub fn watch_progress_interval(&self) -> Duration {
        Duration::from_millis(self.watch_progress_notify_interval_ms)
    }

    /// Rejects what cannot work, naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.join.is_empty() && !self.initial_members.is_empty() {
            return invalid(
                "join and initial_members exclude each other: a node either starts a cluster or joins one".into(),
            );
        }
        if let Some(bad) = self.join.iter().find(|a| !crate::addr::valid(a)) {
            return invalid(format!("join address {bad:?} is not HOST:PORT"));
        }
        if self.snapshot_after_entries == 0 {
            return invalid("snapshot_after_entries must be positive".into());
        }
        if self.watch_progress_notify_interval_ms == 0 {
            return invalid("watch_progress_notify_interval_ms must be positive".into());
        }
        if self.node_id == 0 {
            return invalid("node_id must be at least 1".into());
        }
        self.validate_addresses()?;
        if !self.initial_members.is_empty() {
            let Some(me) = self.initial_members.get(&self.node_id) else {
                let ids: Vec<String> = self.initial_members.keys().map(u64::to_string).collect();
                return invalid(format!(
                    "node_id {} is not among the initial members ({})",
                    self.node_id,
                    ids.join(", ")
                ));
            };
            if me.peer_addr != self.peer_addr {
                return invalid(format!(
                    "initial member {} has peer address {} but this node's peer_addr is {}",
                    self.node_id, me.peer_addr, self.peer_addr
                ));
            }
            let mut seen = BTreeMap::new();
            for (id, m) in &self.initial_members {
                if *id == 0 {
                    return invalid("initial member id 0 is not allowed".into());
                }
                match crate::addr::parse(&m.peer_addr) {
                    Err(e) => return invalid(format!("initial member {id} peer address: {e}")),
                    Ok(a) if a.is_wildcard() => {
                        return invalid(format!(
                            "initial member {id} peer address {} is a wildcard no peer can dial: \
                             give its name or address",
                            m.peer_addr
                        ))
                    }
                    Ok(_) => {}
                }
                if let Some(other) = seen.insert(m.peer_addr.clone(), *id) {
                    return invalid(format!("initial members {other} and {id} share peer address {}", m.peer_addr));
                }
            }
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.election_timeout_ms {
            return invalid(format!(
                "heartbeat_interval_ms ({}) must be positive and below election_timeout_ms ({})",
                self.heartbeat_interval_ms, self.election_timeout_ms
            ));
        }
        if self.request_timeout_ms == 0 {
            return invalid("request_timeout_ms must be positive".into());
        }
        if self.auth_token_ttl == 0 {
            return invalid("auth_token_ttl must be positive".into());
        }
        if self.max_request_bytes == 0 || self.max_request_bytes > MAX_REQUEST_BYTES_LIMIT {
            return invalid(format!("max_request_bytes ({}) must be between 1 and 64 MiB", self.max_request_bytes));
        }
        if self.initial_cluster_token.len() > crate::join::MAX_TOKEN_BYTES {
            return invalid(format!("initial_cluster_token is longer than {} bytes", crate::join::MAX_TOKEN_BYTES));
        }
        self.validate_tls()
    }

    /// Where this node listens for clients: `listen_client_addr`, else
    /// `client_addr`.
    pub fn client_listen_addr(&self) -> &str {
        if self.listen_client_addr.is_empty() {
            &self.client_addr
        } else {
            &self.listen_client_addr
        }
    }

    /// Where this node listens for peers: `listen_peer_addr`, else `peer_addr`.
    pub fn peer_listen_addr(&self) -> &str {
        if self.listen_peer_addr.is_empty() {
            &self.peer_addr
        } else {
            &self.listen_peer_addr
        }
    }

    /// Every address is HOST:PORT; the advertised ones can be dialled (no
    /// wildcard: that is for listening, with an advertised address beside
    /// it); no two listeners share an address.
    fn validate_addresses(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let advertised = [
            ("client_addr", &self.client_addr, "listen_client_addr (--listen-client-urls)", "--advertise-client-urls"),
            ("peer_addr", &self.peer_addr, "listen_peer_addr (--listen-peer-urls)", "--initial-advertise-peer-urls"),
        ];
        for (what, addr, listen, flag) in advertised {
            match crate::addr::parse(addr) {
                Err(e) => return invalid(format!("{what}: {e}")),
                Ok(a) if a.is_wildcard() => {
                    return invalid(format!(
                        "{what} {addr} is advertised to clients and peers, who cannot dial a wildcard: \
                         listen on it with {listen} and advertise this host's name or address as {what} ({flag})"
                    ))
                }
                Ok(_) => {}
            }
        }
        let listeners = [
            ("listen_client_addr", &self.listen_client_addr),
            ("listen_peer_addr", &self.listen_peer_addr),
            ("metrics_addr", &self.metrics_addr),
        ];
        for (what, addr) in listeners {
            if let (false, Err(e)) = (addr.is_empty(), crate::addr::parse(addr)) {
                return invalid(format!("{what}: {e} (or empty for none)"));
            }
        }
        // Listening for other hosts while advertising loopback: they would
        // be told an address that is theirs, not this host's (etcd requires
        // the advertise flags with explicit listen ones).
        let pairs = [
            (
                "listen_client_addr",
                &self.listen_client_addr,
                "client_addr",
                &self.client_addr,
                "--advertise-client-urls",
            ),
            ("listen_peer_addr", &self.listen_peer_addr, "peer_addr", &self.peer_addr, "--initial-advertise-peer-urls"),
        ];
        for (listen_what, listen, what, advertised, flag) in pairs {
            let wildcard = crate::addr::parse(listen).is_ok_and(|a| a.is_wildcard());
            let loopback = crate::addr::parse(advertised).is_ok_and(|a| a.ip().is_some_and(|ip| ip.is_loopback()));
            if wildcard && loopback {
                return invalid(format!(
                    "{listen_what} {listen} listens for other hosts, but {what} advertises {advertised}, which \
                     they cannot reach: set {what} ({flag}) to this host's name or address"
                ));
            }
        }
        if self.client_addr == self.peer_addr {
            return invalid(format!("client_addr and peer_addr both advertise {}", self.client_addr));
        }
        let (client, peer) = (self.client_listen_addr(), self.peer_listen_addr());
        if client == peer {
            return invalid(format!("the client and peer ports both listen on {client}"));
        }
        let port_zero = self.metrics_addr.ends_with(":0");
        if !self.metrics_addr.is_empty() && !port_zero && (self.metrics_addr == client || self.metrics_addr == peer) {
            return invalid(format!("metrics_addr {} is also the client or peer address", self.metrics_addr));
        }
        Ok(())
    }

    /// TLS settings that go together: a certificate and its key; client
    /// certificate auth with a CA to check them against and TLS to carry them.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let set = |p: &Path| !p.as_os_str().is_empty();
        for (side, cert, key, ca, auth) in [
            ("", &self.cert_file, &self.key_file, &self.trusted_ca_file, self.client_cert_auth),
            (
                "peer_",
                &self.peer_cert_file,
                &self.peer_key_file,
                &self.peer_trusted_ca_file,
                self.peer_client_cert_auth,
            ),
        ] {
            if set(cert) != set(key) {
                return invalid(format!("{side}cert_file and {side}key_file go together: set both or neither"));
            }
            if auth && !(set(cert) && set(ca)) {
                return invalid(format!(
                    "{side}client_cert_auth needs TLS ({side}cert_file, {side}key_file) and {side}trusted_ca_file"
                ));
            }
        }
        // A member calling a peer over TLS checks the peer's certificate
        // against the peer CA: there is no other trust anchor.
        if set(&self.peer_cert_file) && !set(&self.peer_trusted_ca_file) {
            return invalid("peer TLS (peer_cert_file) needs peer_trusted_ca_file to check peers by".into());
        }
        if !self.peer_client_cert_auth
            && (!self.peer_cert_allowed_cn.is_empty() || !self.peer_cert_allowed_hostname.is_empty())
        {
            return invalid("peer_cert_allowed_cn and peer_cert_allowed_hostname need peer_client_cert_auth".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Config {
        Config {
            node_id: 2,
            peer_addr: "127.0.0.1:2382".into(),
            client_addr: "127.0.0.1:2381".into(),
            metrics_addr: "127.0.0.1:2383".into(),
            initial_members: parse_initial_cluster("1=127.0.0.1:2380,2=127.0.0.1:2382@127.0.0.1:2381,3=127.0.0.1:2384")
                .unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn example_cluster_configs_are_valid() {
        for n in 1..=3 {
            let path = format!("{}/examples/cluster/node{n}.toml", env!("CARGO_MANIFEST_DIR"));
            let c = Config::load(Some(Path::new(&path)), Overrides::default()).unwrap();
            c.validate().unwrap();
            assert_eq!((c.node_id, c.initial_members.len()), (n, 3));
        }
    }

    #[test]
    fn defaults_are_a_valid_single_node_on_etcd_ports() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.client_addr, "127.0.0.1:2379");
        assert_eq!(c.effective_members().len(), 1);
    }

    #[test]
    fn file_then_overrides_take_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "node_id = 3\nclient_addr = \"127.0.0.1:3000\"\n[initial_members.3]\npeer_addr = \"127.0.0.1:2380\"\n",
        )
        .unwrap();
        let c =
            Config::load(Some(&path), Overrides { client_addr: Some("127.0.0.1:4000".into()), ..Default::default() })
                .unwrap();
        assert_eq!((c.node_id, c.client_addr.as_str()), (3, "127.0.0.1:4000"));
        assert_eq!(c.initial_members[&3].peer_addr, "127.0.0.1:2380");
        c.validate().unwrap();
    }

    #[test]
    fn bad_configs_are_rejected_with_the_reason() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.node_id = 0), "node_id must be at least 1"),
            (Box::new(|c| c.node_id = 7), "node_id 7 is not among the initial members (1, 2, 3)"),
            (Box::new(|c| c.client_addr = "nowhere".into()), "client_addr: \"nowhere\" is not HOST:PORT"),
            (Box::new(|c| c.client_addr = c.peer_addr.clone()), "client_addr and peer_addr both advertise"),
            (
                Box::new(|c| {
                    c.listen_client_addr = c.peer_addr.clone();
                    c.client_addr = "pc-2:2379".into();
                }),
                "the client and peer ports both listen on",
            ),
            (Box::new(|c| c.metrics_addr = "metrics".into()), "metrics_addr: \"metrics\" is not HOST:PORT"),
            (Box::new(|c| c.client_addr = "0.0.0.0:2379".into()), "listen on it with listen_client_addr"),
            (Box::new(|c| c.listen_peer_addr = "::1:2380".into()), "write an IPv6 address in brackets"),
            (Box::new(|c| c.listen_client_addr = "0.0.0.0:2379".into()), "set client_addr (--advertise-client-urls)"),
            (Box::new(|c| c.listen_peer_addr = "[::]:2380".into()), "set peer_addr (--initial-advertise-peer-urls)"),
            (Box::new(|c| c.metrics_addr = c.client_addr.clone()), "is also the client or peer address"),
            (Box::new(|c| c.peer_addr = "127.0.0.1:9999".into()), "initial member 2 has peer address 127.0.0.1:2382"),
            (Box::new(|c| c.heartbeat_interval_ms = 5000), "heartbeat_interval_ms (5000) must be positive and below"),
            (Box::new(|c| c.max_request_bytes = 0), "max_request_bytes (0)"),
            (Box::new(|c| c.auth_token_ttl = 0), "auth_token_ttl must be positive"),
            (
                Box::new(|c| c.initial_members.get_mut(&3).unwrap().peer_addr = "127.0.0.1:2380".into()),
                "share peer address",
            ),
            (Box::new(|c| c.join = vec!["127.0.0.1:2379".into()]), "join and initial_members exclude each other"),
            (
                Box::new(|c| {
                    c.initial_members.clear();
                    c.join = vec!["http://127.0.0.1:2379".into()];
                }),
                "join address \"http://127.0.0.1:2379\" is not HOST:PORT",
            ),
        ];
        for (mutate, want) in cases {
            let mut c = three();
            c.validate().unwrap();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should contain {want:?}");
        }
    }

    #[test]
    fn tls_settings_that_cannot_work_are_rejected() {
        let with = |f: fn(&mut Config)| {
            let mut c = Config::default();
            f(&mut c);
            c.validate().map_err(|e| e.to_string())
        };
        assert!(with(|c| {
            c.cert_file = "s.pem".into();
            c.key_file = "s.key".into();
        })
        .is_ok());
        type Case = (fn(&mut Config), &'static str);
        let cases: [Case; 5] = [
            (|c| c.cert_file = "s.pem".into(), "cert_file and key_file go together"),
            (|c| c.client_cert_auth = true, "client_cert_auth needs TLS"),
            (
                |c| {
                    c.peer_cert_file = "p.pem".into();
                    c.peer_key_file = "p.key".into();
                },
                "needs peer_trusted_ca_file",
            ),
            (|c| c.peer_cert_allowed_cn = vec!["n1".into()], "need peer_client_cert_auth"),
            (|c| c.initial_cluster_token = "x".repeat(2000), "initial_cluster_token is longer"),
        ];
        for (f, expected) in cases {
            let err = with(f).unwrap_err();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }
    }

    #[test]
    fn unknown_fields_and_bad_cluster_specs_are_errors() {
        assert!(Config::from_toml("node_idd = 1").unwrap_err().contains("unknown field"));
        assert!(Config::from_toml("[initial_members.x]\npeer_addr = \"127.0.0.1:1\"")
            .unwrap_err()
            .contains("not a node id"));
        assert!(parse_initial_cluster("1=a,1=b").is_err());
        assert!(parse_initial_cluster("x=127.0.0.1:1").is_err());
        assert!(parse_initial_cluster("127.0.0.1:1").is_err());
    }

    mod round_trips {
        use proptest::collection::{btree_map, vec};
        use proptest::prelude::*;

        use super::*;

        /// TOML integers are i64: every number a config can hold in a file.
        fn num() -> impl Strategy<Value = u64> {
            0..=i64::MAX as u64
        }

        fn addr() -> impl Strategy<Value = String> {
            "[a-z0-9.-]{1,20}:[0-9]{1,5}"
        }

        fn member() -> impl Strategy<Value = MemberConfig> {
            (addr(), prop_oneof![Just(String::new()), addr()])
                .prop_map(|(peer_addr, client_addr)| MemberConfig { peer_addr, client_addr })
        }

        prop_compose! {
            fn config()(
                ids in (num(), num(), num()),
                name in "\\PC{0,16}",
                addrs in (addr(), addr(), prop_oneof![Just(String::new()), addr()]),
                listen in (prop_oneof![Just(String::new()), addr()], prop_oneof![Just(String::new()), addr()]),
                data_dir in "[^\\x00]{1,30}",
                initial_members in btree_map(any::<u64>(), member(), 0..4),
                join in vec(addr(), 0..3),
                join_as_learner in any::<bool>(),
                timings in (num(), num(), num(), num(), num(), num(), num(), num(), num()),
                max_request_bytes in 0..=i64::MAX as usize,
                token in "\\PC{0,20}",
                files in vec("[^\\x00]{0,12}", 6),
                auth in (any::<bool>(), any::<bool>()),
                allowed in (vec("\\PC{1,8}", 0..3), vec("[a-z0-9.]{1,8}", 0..3)),
            ) -> Config {
                Config {
                    node_id: ids.0,
                    name,
                    client_addr: addrs.0,
                    listen_client_addr: listen.0,
                    peer_addr: addrs.1,
                    listen_peer_addr: listen.1,
                    metrics_addr: addrs.2,
                    data_dir: PathBuf::from(data_dir),
                    initial_members,
                    join,
                    join_as_learner,
                    heartbeat_interval_ms: timings.0,
                    election_timeout_ms: timings.1,
                    request_timeout_ms: timings.2,
                    max_request_bytes,
                    auth_token_ttl: timings.0,
                    quota_backend_bytes: timings.1,
                    auto_compaction_retention_revisions: timings.3,
                    auto_compaction_retention_secs: timings.4,
                    auto_compaction_retention_bytes: timings.8,
                    corrupt_check_interval_secs: timings.7,
                    snapshot_after_entries: timings.5,
                    log_kept_after_snapshot: timings.6,
                    watch_progress_notify_interval_ms: timings.7,
                    initial_cluster_token: token,
                    cert_file: PathBuf::from(&files[0]),
                    key_file: PathBuf::from(&files[1]),
                    trusted_ca_file: PathBuf::from(&files[2]),
                    client_cert_auth: auth.0,
                    peer_cert_file: PathBuf::from(&files[3]),
                    peer_key_file: PathBuf::from(&files[4]),
                    peer_trusted_ca_file: PathBuf::from(&files[5]),
                    peer_client_cert_auth: auth.1,
                    peer_cert_allowed_cn: allowed.0,
                    peer_cert_allowed_hostname: allowed.1,
                }
            }
        }

        proptest! {
            /// Whatever a config holds, written as TOML it reads back the same
            /// (valid or not: validation is a separate step).
            #[test]
            fn every_config_survives_toml(config in config()) {
                let text = toml::to_string(&config).unwrap();
                prop_assert_eq!(Config::from_toml(&text).unwrap(), config);
            }

            /// `--initial-cluster` written from members parses back to them.
            #[test]
            fn an_initial_cluster_spec_round_trips(members in btree_map(any::<u64>(), member(), 1..6)) {
                let spec: Vec<String> = members
                    .iter()
                    .map(|(id, m)| if m.client_addr.is_empty() {
                        format!("{id}={}", m.peer_addr)
                    } else {
                        format!("{id}={}@{}", m.peer_addr, m.client_addr)
                    })
                    .collect();
                prop_assert_eq!(parse_initial_cluster(&spec.join(",")).unwrap(), members);
            }
        }

        #[test]
        fn a_number_toml_cannot_hold_is_an_error_not_a_panic() {
            let config = Config { snapshot_after_entries: u64::MAX, ..Default::default() };
            assert!(toml::to_string(&config).is_err());
            assert!(Config::from_toml("snapshot_after_entries = 18446744073709551615").is_err());
        }
    }
}
