//! A real cluster on loopback for tests.

use std::time::Duration;

use placement_center::config::{Config, MemberConfig};
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::{PutRequest, RangeRequest};
use placement_center::runtime::{self, Listener};
use placement_center::server::{Listeners, Server};
use tonic::transport::Channel;

/// N nodes, each with its own data dir; nodes can be stopped and restarted.
pub struct Cluster {
    /// Each node's config (addresses fixed at first start, reused on restart).
    pub configs: Vec<Config>,
    /// Running nodes; `None` while stopped.
    pub nodes: Vec<Option<Server>>,
    /// Holds the data dirs for the cluster's lifetime.
    pub dir: tempfile::TempDir,
}

/// Timings tolerant of a loaded 2-core CI machine.
pub fn test_config(id: u64) -> Config {
    Config {
        node_id: id,
        heartbeat_interval_ms: 100,
        election_timeout_ms: 800,
        request_timeout_ms: 10_000,
        metrics_addr: String::new(),
        initial_cluster_token: "test-cluster-token".into(),
        ..Config::default()
    }
}

impl Cluster {
    /// Starts `n` nodes and waits for a leader.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Starts `n` nodes, each config adjusted by `tune`, and waits for a leader.
    pub async fn start_with(n: u64, tune: impl Fn(&mut Config)) -> Cluster {
        Self::start_prepared(n, tune, |_| {}).await
    }

    /// Starts `n` nodes whose data dirs were first seeded from the backup
    /// `file` (as an operator restores a cluster), and waits for a leader.
    pub async fn start_restored(n: u64, file: &std::path::Path) -> Cluster {
        Self::start_prepared(
            n,
            |_| {},
            |config| {
                placement_center::server::restore(config, file).unwrap();
            },
        )
        .await
    }

    /// Starts `n` nodes that listen on 127.0.0.1 and advertise their client
    /// and peer addresses as `host:PORT` (a name), and waits for a leader.
    pub async fn start_named(n: u64, host: &str) -> Cluster {
        Self::start_as(n, Some(host), |_| {}, |_| {}).await
    }

    async fn start_prepared(n: u64, tune: impl Fn(&mut Config), prepare: impl Fn(&Config)) -> Cluster {
        Self::start_as(n, None, tune, prepare).await
    }

    async fn start_as(n: u64, host: Option<&str>, tune: impl Fn(&mut Config), prepare: impl Fn(&Config)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            let client = Listener::bind("127.0.0.1:0").await.unwrap();
            let peer = Listener::bind("127.0.0.1:0").await.unwrap();
            listeners.push(Listeners { client, peer, metrics: None });
        }
        let members: std::collections::BTreeMap<u64, MemberConfig> = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let advertised = |bound: std::net::SocketAddr| match host {
                    Some(host) => format!("{host}:{}", bound.port()),
                    None => bound.to_string(),
                };
                let member = MemberConfig {
                    peer_addr: advertised(l.peer.local_addr().unwrap()),
                    client_addr: advertised(l.client.local_addr().unwrap()),
                };
                (i as u64 + 1, member)
            })
            .collect();
        let mut configs = Vec::new();
        let mut nodes = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let id = i as u64 + 1;
            let mut config = test_config(id);
            tune(&mut config);
            config.peer_addr = members[&id].peer_addr.clone();
            config.client_addr = members[&id].client_addr.clone();
            config.listen_peer_addr = l.peer.local_addr().unwrap().to_string();
            config.listen_client_addr = l.client.local_addr().unwrap().to_string();
            config.data_dir = dir.path().join(format!("node{id}"));
            config.initial_members = members.clone();
            prepare(&config);
            nodes.push(Some(Server::start(config.clone(), l).await.unwrap()));
            configs.push(config);
        }
        let cluster = Cluster { configs, nodes, dir };
        cluster.wait_leader().await;
        cluster.wait_started().await;
        cluster
    }

    /// Waits up to 30 s until every running node knows every member as
    /// started (each publishes it once it runs; until then etcdctl lists
    /// it "unstarted").
    pub async fn wait_started(&self) {
        for _ in 0..300 {
            let all = self.nodes.iter().flatten().all(|s| s.node.members().iter().all(|(_, m, _)| m.started));
            if all {
                return;
            }
            runtime::sleep(Duration::from_millis(100)).await;
        }
        panic!("members not all started within 30 s");
    }

    /// Index of the leader all running nodes agree on, waiting up to 30 s.
    pub async fn wait_leader(&self) -> usize {
        for _ in 0..300 {
            let leaders: Vec<Option<u64>> = self.nodes.iter().flatten().map(|s| s.node.leader()).collect();
            if let Some(Some(leader)) = leaders.first() {
                let running = |id: u64| self.nodes[id as usize - 1].is_some();
                if leaders.iter().all(|l| *l == Some(*leader)) && running(*leader) {
                    return *leader as usize - 1;
                }
            }
            runtime::sleep(Duration::from_millis(100)).await;
        }
        panic!("no agreed leader within 30 s");
    }

    /// Index of some running node other than the leader.
    pub async fn follower(&self) -> usize {
        let leader = self.wait_leader().await;
        (0..self.nodes.len()).find(|i| *i != leader && self.nodes[*i].is_some()).expect("a running follower")
    }

    /// The client address of node `i`.
    pub fn client_addr(&self, i: usize) -> String {
        self.configs[i].client_addr.clone()
    }

    /// A KV client to node `i`.
    pub async fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::connect(format!("http://{}", self.client_addr(i))).await.unwrap()
    }

    /// Stops node `i` (graceful: the process would exit).
    pub async fn stop(&mut self, i: usize) {
        if let Some(server) = self.nodes[i].take() {
            server.shutdown().await;
        }
    }

    /// Restarts node `i` on its old addresses and data dir.
    pub async fn restart(&mut self, i: usize) {
        self.try_restart(i).await.unwrap();
    }

    /// Restarts node `i` on its old addresses and data dir; the error if the
    /// node refuses to start (it then stays stopped).
    pub async fn try_restart(&mut self, i: usize) -> Result<(), String> {
        let config = self.configs[i].clone();
        let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
        self.nodes[i] = Some(Server::start(config, listeners).await.map_err(|e| e.to_string())?);
        Ok(())
    }

    /// Starts a new node that joins the cluster through the client address
    /// of every running node (`tune` adjusts its config); returns its index.
    pub async fn join(&mut self, tune: impl Fn(&mut Config)) -> usize {
        let client = Listener::bind("127.0.0.1:0").await.unwrap();
        let peer = Listener::bind("127.0.0.1:0").await.unwrap();
        let i = self.nodes.len();
        let mut config = test_config(0);
        config.node_id = 1;
        config.client_addr = client.local_addr().unwrap().to_string();
        config.peer_addr = peer.local_addr().unwrap().to_string();
        config.data_dir = self.dir.path().join(format!("joined{i}"));
        config.join = (0..self.nodes.len()).filter(|n| self.nodes[*n].is_some()).map(|n| self.client_addr(n)).collect();
        let bound_peer = config.peer_addr.clone();
        tune(&mut config);
        let peer = if config.peer_addr == bound_peer {
            peer
        } else {
            release(peer);
            Listener::bind(&config.peer_addr).await.unwrap()
        };
        let server = Server::start(config.clone(), Listeners { client, peer, metrics: None }).await.unwrap();
        self.nodes.push(Some(server));
        self.configs.push(config);
        i
    }

    /// Stops every node (teardown: no leadership hand-over, which would
    /// only wait for nodes that are stopping too).
    pub async fn shutdown(mut self) {
        for server in self.nodes.iter_mut().filter_map(Option::take) {
            server.shutdown_without_handover().await;
        }
    }
}

/// Closes a listener, freeing its port (`Listener` has no `Drop` of its own
/// in every flavour, so `drop` would look like a no-op).
pub fn release(_listener: Listener) {}

/// Puts `key` = `value` through `client`, returning the revision.
pub async fn put(client: &mut KvClient<Channel>, key: &str, value: &str) -> i64 {
    let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
    client.put(req).await.unwrap().into_inner().header.unwrap().revision
}

/// Reads `key` through `client`, linearizably unless `serializable`.
pub async fn get(
    client: &mut KvClient<Channel>,
    key: &str,
    serializable: bool,
) -> Result<Option<String>, tonic::Status> {
    let req = RangeRequest { key: key.into(), serializable, ..Default::default() };
    let resp = client.range(req).await?.into_inner();
    Ok(resp.kvs.first().map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}
