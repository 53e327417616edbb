//! Load generator for the etcd v3 API (and the placement API): it runs
//! against Placement Center and etcd alike, so both can be measured side by
//! side by the same client (see ci/bench.sh).
//!
//! `placement-bench --endpoints 127.0.0.1:2379 --clients 100 --total 100000 put --val-size 256`

mod failover;
mod load;
mod report;
mod rt;
mod scenarios;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use placement_client::tonic;
use placement_client::tonic::transport::Channel;
use placement_client::TlsSettings;

use load::Load;

/// Flags every scenario takes.
#[derive(Parser, Debug)]
#[command(name = "placement-bench", version, about = "Load generator for the etcd v3 API (and the placement API)")]
pub struct Args {
    /// Comma-separated client addresses; connections are spread over them.
    #[arg(long, global = true, env = "PLACEMENT_ENDPOINTS", default_value = "127.0.0.1:2379")]
    pub endpoints: String,
    /// gRPC connections shared by the clients (0: one per client).
    #[arg(long, global = true, default_value_t = 0)]
    pub conns: usize,
    /// Concurrent clients, one request in flight each.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Requests in all (default 1000 when no --duration).
    #[arg(long, global = true, alias = "requests")]
    pub total: Option<u64>,
    /// Run for this many seconds instead (or as well: whichever ends first).
    #[arg(long, global = true)]
    pub duration: Option<f64>,
    /// Requests per second over all clients (default: as fast as they go).
    #[arg(long, global = true)]
    pub rate: Option<f64>,
    /// Print one JSON object instead of a line of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Key length in bytes (keys are zero-padded numbers).
    #[arg(long, global = true, default_value_t = 8)]
    pub key_size: usize,
    /// Value length in bytes.
    #[arg(long, global = true, alias = "value-size", default_value_t = 256)]
    pub val_size: usize,
    /// Distinct keys written or read.
    #[arg(long, global = true, default_value_t = 100_000)]
    pub key_space: u64,
    /// TLS: the CA that signed the members' certificates (PEM); turns TLS on.
    #[arg(long, global = true)]
    pub cacert: Option<std::path::PathBuf>,
    /// TLS: a client certificate (PEM), for members that require one.
    #[arg(long, global = true)]
    pub cert: Option<std::path::PathBuf>,
    /// TLS: the private key of --cert (PEM).
    #[arg(id = "tls_key", long = "key", global = true)]
    pub key: Option<std::path::PathBuf>,
    /// Auth: the user to run as (put and range scenarios); the password comes
    /// from PLACEMENT_PASSWORD.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// The scenario.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The auth token requests carry (`--user`), set once before the load.
static TOKEN: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> = std::sync::OnceLock::new();

/// `message` as a request with the auth token, if any.
pub fn authed<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = TOKEN.get() {
        request.metadata_mut().insert("token", token.clone());
    }
    request
}

/// Authenticates as `user` with the password in PLACEMENT_PASSWORD.
async fn authenticate(user: &str, channel: Channel) -> anyhow::Result<()> {
    use placement_client::proto::etcdserverpb::{auth_client::AuthClient, AuthenticateRequest};
    let password =
        std::env::var("PLACEMENT_PASSWORD").map_err(|_| anyhow::anyhow!("--user needs PLACEMENT_PASSWORD"))?;
    let req = AuthenticateRequest { name: user.to_string(), password };
    let token = AuthClient::new(channel).authenticate(req).await?.into_inner().token;
    let _ = TOKEN.set(token.parse()?);
    Ok(())
}

/// Read consistency, as etcd's benchmark names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable (a ReadIndex round through the leader).
    L,
    /// Serializable (the answering member's state).
    S,
}

/// What to measure.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Puts to random keys of the key space (or each key once, in order).
    Put {
        /// Write keys 0, 1, 2, ... once each instead of random ones: loads a data set.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Range reads of random keys.
    Range {
        /// l: linearizable, s: serializable.
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Keys per range (consecutive from a random one).
        #[arg(long, default_value_t = 1)]
        keys: u64,
        /// At most this many keys per answer (0: no limit).
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Compare-and-swap: a txn that puts a key only if its version is the
    /// one the client last saw (each client has keys of its own).
    TxnPut,
    /// Watch delivery: `--watchers` watch one prefix while the clients put
    /// under it (at `--rate`): events per second and delivery latency.
    WatchLatency {
        /// Watchers, spread over the connections.
        #[arg(long, default_value_t = 100)]
        watchers: usize,
    },
    /// Lease expiry: grants `--total` leases of `--ttl` seconds, each with a
    /// key, lets them all run out, and reports (on stderr) how long after
    /// the last TTL ended the last one was revoked.
    LeaseExpiry {
        /// TTL of every lease, seconds.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
    },
    /// Lease keepalives: every client keeps its own lease alive over one stream.
    LeaseKeepalive,
    /// Placement API: registers `--nodes` brokers, then the clients heartbeat
    /// for them round robin.
    Heartbeat {
        /// Registered brokers.
        #[arg(long, default_value_t = 10_000)]
        nodes: u64,
    },
    /// Consumer offsets: each client commits the offsets of `--shards`
    /// shards for one of `--groups` groups, again and again; reports (on
    /// stderr) how many Raft writes (revisions) the commits took.
    OffsetCommit {
        /// Consumer groups, spread over the clients.
        #[arg(long, default_value_t = 1000)]
        groups: u64,
        /// Shards each commit covers.
        #[arg(long, default_value_t = 4)]
        shards: u32,
    },
    /// Shard failover: `--brokers` brokers kept alive, a topic of
    /// `--shards` shards placed on them; then `--rounds` brokers go silent
    /// one at a time. Latency: from a broker's registration leaving to each
    /// shard it led having a new leader (the flags of the load are unused).
    Failover {
        /// Brokers registered (three zones, round robin).
        #[arg(long, default_value_t = 100)]
        brokers: u64,
        /// Shards of the topic.
        #[arg(long, default_value_t = 10_000)]
        shards: u32,
        /// Replicas per shard.
        #[arg(long, default_value_t = 3)]
        replication: u32,
        /// The brokers' expiry, seconds.
        #[arg(long, default_value_t = 5)]
        expiry: u32,
        /// Brokers that go silent, one after the other.
        #[arg(long, default_value_t = 5)]
        rounds: u64,
    },
}

impl Args {
    fn load(&self) -> Load {
        let total = match (self.total, self.duration) {
            (None, None) => Some(1000),
            (total, _) => total,
        };
        Load {
            clients: self.clients.max(1),
            total,
            duration: self.duration.map(Duration::from_secs_f64),
            rate: self.rate,
        }
    }

    fn settings(&self) -> BTreeMap<&'static str, serde_json::Value> {
        let mut s = BTreeMap::new();
        s.insert("clients", self.clients.into());
        s.insert("conns", self.conns().into());
        if let Some(rate) = self.rate {
            s.insert("rate", rate.into());
        }
        s.insert("key_size", self.key_size.into());
        s.insert("val_size", self.val_size.into());
        s
    }

    fn conns(&self) -> usize {
        if self.conns == 0 {
            self.clients.max(1)
        } else {
            self.conns
        }
    }

    /// The connections, spread over the endpoints.
    async fn channels(&self) -> anyhow::Result<Vec<Channel>> {
        let endpoints: Vec<&str> = self.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        anyhow::ensure!(!endpoints.is_empty(), "no endpoint given");
        // --cacert turns TLS on (--cert and --key alone do not).
        let tls = match &self.cacert {
            None => None,
            Some(ca) => TlsSettings::for_client(Some(ca), self.cert.as_deref(), self.key.as_deref())?,
        };
        let mut channels = Vec::new();
        for i in 0..self.conns() {
            let endpoint = endpoints[i % endpoints.len()];
            let channel = placement_client::tls::endpoint(endpoint, tls.as_ref())?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect to {endpoint}: {e}"))?;
            channels.push(channel);
        }
        Ok(channels)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channels = args.channels().await?;
    if let (Some(user), Some(channel)) = (&args.user, channels.first()) {
        authenticate(user, channel.clone()).await?;
    }
    let report = scenarios::run(&args, &channels).await?;
    if args.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.line());
    }
    Ok(())
}
