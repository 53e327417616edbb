//! Brokers living through the placement API with the client library as a
//! real broker would: register, heartbeat, list, sometimes go silent for
//! longer than the expiry (then register again, and check that the replaced
//! epoch is refused), sometimes unregister. A node watcher follows every
//! registration. In the simulator each broker runs on a node of its own and
//! goes silent by being cut off from the network; in the robustness suite
//! they are tasks of the runner and go silent by not sending.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::client::{Assignments, Client, ClientError, ClientOptions, Registration, Retry};
use placement_center::proto::placement::v1::node_event::Kind;
use placement_center::proto::placement::v1::{
    NodeInfo, RegisterNodeRequest, ReportShardStatusRequest, SetClusterConfigRequest, ShardStatus,
    UnregisterNodeRequest, WatchAssignmentsResponse,
};
use placement_center::runtime::{self, Instant};
use rand::Rng;

use crate::checker::brokers::{Answer, BrokerOp, Call, Observed};
use crate::checker::shards::{Report, Reported};

/// The broker cluster the simulated brokers belong to.
pub const CLUSTER: &str = "sim";
/// Heartbeat every second...
pub const HEARTBEAT_SECS: u32 = 1;
/// ...and expire after three without one (the registrations' lease TTL).
pub const EXPIRY: Duration = Duration::from_secs(3);

/// What the brokers did, shared by them.
pub type BrokerHistory = Arc<Mutex<Vec<BrokerOp>>>;
/// The shard statuses the brokers reported, shared by them.
pub type ShardReports = Arc<Mutex<Vec<Report>>>;
/// How often a broker reports the status of the shards it leads, per heartbeat.
const REPORT_CHANCE: f64 = 0.5;
/// How often a report leaves a follower out of the in-sync set.
const LAGGING_FOLLOWER: f64 = 0.3;

/// Broker `id`'s zone label: three zones, round robin.
pub fn zone(id: u64) -> String {
    ["a", "b", "c"][(id % 3) as usize].to_string()
}

/// A client as the simulated brokers and consumers use it: short timeouts,
/// few attempts, and root's credentials on auth seeds.
pub(crate) fn client(addrs: &[String]) -> Arc<Client> {
    let options = ClientOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        attempts: 3,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        tls: None,
        #[cfg(madsim)]
        credentials: crate::auth::credentials(),
        #[cfg(not(madsim))]
        credentials: None,
    };
    Client::new(addrs, options).expect("valid member addresses")
}

fn answer<T>(result: &Result<Result<T, ClientError>, runtime::Elapsed>) -> Answer {
    match result {
        Ok(Ok(_)) => Answer::Ok,
        Ok(Err(ClientError::Status { status, .. }))
            if !matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Cancelled
            ) =>
        {
            Answer::Refused(status.code() as i32, status.message().to_string())
        }
        _ => Answer::Unknown,
    }
}

/// Sets the brokers' cluster settings (retried until done): short, so that
/// a run sees expiries.
pub async fn configure(addrs: Vec<String>) {
    let client = client(&addrs);
    let req = SetClusterConfigRequest {
        cluster: CLUSTER.into(),
        heartbeat_interval_secs: HEARTBEAT_SECS,
        expiry_secs: EXPIRY.as_secs() as u32,
    };
    for _ in 0..50 {
        let set = client
            .call(Retry::Idempotent, |ch| {
                let req = client.request(req.clone());
                async move { Client::placement(ch).set_cluster_config(req).await }
            })
            .await;
        if set.is_ok() {
            return;
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    panic!("the brokers' cluster settings could not be set");
}

/// Starts `n` brokers (node ids 1..=n), each on its own simulated node,
/// until `until`.
#[cfg(madsim)]
pub fn start(
    n: u64,
    addrs: &[String],
    start: Instant,
    until: Instant,
    history: &BrokerHistory,
    reports: &ShardReports,
) -> Vec<madsim::task::JoinHandle<()>> {
    (1..=n)
        .map(|id| {
            let node = crate::hosts::Host::Broker(id).node(format!("broker{id}"));
            let broker = Broker {
                id,
                net_id: node.id(),
                client: client(addrs),
                start,
                history: history.clone(),
                reports: reports.clone(),
            };
            node.spawn(broker.run(until))
        })
        .collect()
}

/// Runs `n` brokers (node ids 1..=n) as tasks until `until`.
#[cfg(not(madsim))]
pub async fn run(
    n: u64,
    addrs: &[String],
    start: Instant,
    until: Instant,
    history: &BrokerHistory,
    reports: &ShardReports,
) {
    futures::future::join_all((1..=n).map(|id| {
        let broker = Broker { id, client: client(addrs), start, history: history.clone(), reports: reports.clone() };
        broker.run(until)
    }))
    .await;
}

/// The address a broker advertises (never dialled).
fn advertised(id: u64) -> String {
    #[cfg(madsim)]
    return format!("10.0.1.{id}:1883");
    #[cfg(not(madsim))]
    format!("198.18.1.{id}:1883")
}

struct Broker {
    id: u64,
    /// Its simulated node, for cutting it off.
    #[cfg(madsim)]
    net_id: madsim::task::NodeId,
    client: Arc<Client>,
    start: Instant,
    history: BrokerHistory,
    reports: ShardReports,
}

impl Broker {
    fn record(&self, call: Call, invoked: Instant, answer: Answer) {
        let op = BrokerOp {
            broker: self.id,
            call,
            invoked: invoked - self.start,
            completed: runtime::now() - self.start,
            answer,
        };
        self.history.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    async fn run(self, until: Instant) {
        let mut previous: Option<NodeInfo> = None;
        while runtime::now() < until {
            let Some(registration) = self.register().await else {
                runtime::sleep(Duration::from_millis(300)).await;
                continue;
            };
            if let Some(old) = previous.take() {
                // The replaced registration: its epoch must be refused now.
                self.heartbeat(&old).await;
            }
            let node = registration.node.clone();
            self.live(&registration, until).await;
            previous = Some(node);
        }
    }

    async fn register(&self) -> Option<Registration> {
        let req = RegisterNodeRequest {
            cluster: CLUSTER.into(),
            node_id: self.id,
            roles: vec!["mqtt".into()],
            addresses: [("mqtt".to_string(), advertised(self.id))].into(),
            labels: BTreeMap::from([("zone".to_string(), zone(self.id))]),
        };
        let invoked = runtime::now();
        let result = runtime::timeout(crate::caller_deadline(Duration::from_secs(5)), self.client.register(req)).await;
        let epoch = result.as_ref().ok().and_then(|r| r.as_ref().ok()).map(|r| r.node.epoch);
        self.record(Call::Register(epoch), invoked, answer(&result));
        result.ok()?.ok()
    }

    /// One heartbeat; whether the registration is still there as far as it knows.
    async fn heartbeat(&self, node: &NodeInfo) -> bool {
        let invoked = runtime::now();
        let result =
            runtime::timeout(crate::caller_deadline(Duration::from_secs(2)), self.client.heartbeat(node)).await;
        let answer = answer(&result);
        self.record(Call::Heartbeat(node.epoch), invoked, answer.clone());
        !matches!(answer, Answer::Refused(..))
    }

    async fn list(&self) {
        let invoked = runtime::now();
        let result = runtime::timeout(Duration::from_secs(2), self.client.list_nodes(CLUSTER, "")).await;
        let found = result
            .as_ref()
            .ok()
            .and_then(|r| r.as_ref().ok())
            .and_then(|r| r.nodes.iter().find(|n| n.node_id == self.id).map(|n| n.epoch));
        self.record(Call::List(found), invoked, answer(&result));
    }

    /// The replicas it reports in sync for `shard`: now and then a follower
    /// has fallen behind (so elections meet out-of-sync replicas).
    fn in_sync(&self, shard: &placement_center::proto::placement::v1::Shard) -> Vec<u64> {
        let mut in_sync = shard.replicas.clone();
        if runtime::rng().gen_bool(LAGGING_FOLLOWER) {
            let followers: Vec<u64> = in_sync.iter().copied().filter(|b| *b != self.id).collect();
            if !followers.is_empty() {
                let behind = followers[runtime::rng().gen_range(0..followers.len())];
                in_sync.retain(|b| *b != behind);
            }
        }
        in_sync
    }

    /// Reports the status of the shards `work` says it leads (its in-sync
    /// set, a high watermark that grows), recording each shard's outcome.
    async fn report(&self, node: &NodeInfo, work: &Assignments) {
        let led: Vec<ShardStatus> = work
            .led()
            .map(|s| ShardStatus {
                topic: s.topic.clone(),
                shard: s.shard,
                leader_epoch: s.leader_epoch,
                in_sync: self.in_sync(s),
                high_watermark: (runtime::now() - self.start).as_millis() as i64,
            })
            .collect();
        if led.is_empty() {
            return;
        }
        let req = ReportShardStatusRequest {
            cluster: CLUSTER.into(),
            node_id: self.id,
            epoch: node.epoch,
            shards: led.clone(),
        };
        let result =
            runtime::timeout(crate::caller_deadline(Duration::from_secs(2)), self.client.report_shard_status(req))
                .await;
        let ended = match (&result, answer(&result)) {
            (Ok(Ok(resp)), _) => Reported::Acked(resp.header.as_ref().map_or(0, |h| h.revision)),
            (_, Answer::Refused(_, message)) => Reported::Refused(message),
            _ => Reported::Unknown,
        };
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        for s in led {
            reports.push(Report {
                broker: self.id,
                epoch: node.epoch,
                shard: format!("{}/{}", s.topic, s.shard),
                leader_epoch: s.leader_epoch,
                ended: ended.clone(),
            });
        }
    }

    /// Heartbeats and lists until the registration ends: lost, cut off,
    /// unregistered, or replaced by the next registration. Meanwhile it
    /// follows its assignment and reports on the shards it leads.
    async fn live(&self, registration: &Registration, until: Instant) {
        let node = &registration.node;
        let end = (runtime::now() + Duration::from_millis(runtime::rng().gen_range(2000..10000))).min(until);
        let mut assignments = self.client.watch_assignments(CLUSTER, self.id, 0);
        let mut work = Assignments::default();
        // Lists fall between heartbeats, where a registration that was not
        // really renewed would be seen gone.
        let half = registration.heartbeat_interval / 2;
        while runtime::now() < end {
            runtime::sleep(half).await;
            if runtime::rng().gen_bool(0.7) {
                self.list().await;
            }
            runtime::sleep(half).await;
            if !self.heartbeat(node).await {
                return; // lost: register again
            }
            if !follow(&mut assignments, &mut work) {
                assignments = self.client.watch_assignments(CLUSTER, self.id, 0);
            }
            if runtime::rng().gen_bool(REPORT_CHANCE) {
                self.report(node, &work).await;
            }
        }
        match runtime::rng().gen_range(0..4) {
            0 => {
                // Silent for longer than the expiry; then, as a zombie, it
                // reports on the shards it led (to be fenced).
                self.go_silent(EXPIRY + Duration::from_millis(runtime::rng().gen_range(500..3000))).await;
                self.report(node, &work).await;
                self.heartbeat(node).await;
                self.list().await;
            }
            1 => {
                let req = UnregisterNodeRequest { cluster: CLUSTER.into(), node_id: self.id, epoch: node.epoch };
                let invoked = runtime::now();
                let result = runtime::timeout(Duration::from_secs(2), self.client.unregister(req)).await;
                self.record(Call::Unregister(node.epoch), invoked, answer(&result));
            }
            _ => {} // registers again while alive
        }
    }
}

/// Applies what the assignment watch has delivered to `work`; false when
/// the watch ended (it is started again, from a whole assignment).
fn follow(
    assignments: &mut tokio::sync::mpsc::Receiver<Result<WatchAssignmentsResponse, ClientError>>,
    work: &mut Assignments,
) -> bool {
    loop {
        match assignments.try_recv() {
            Ok(Ok(resp)) => {
                work.apply(&resp);
            }
            Ok(Err(_)) | Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                *work = Assignments::default();
                return false;
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return true,
        }
    }
}

impl Broker {
    /// Cut off from everything (its requests and their answers lost) for `how_long`.
    #[cfg(madsim)]
    async fn go_silent(&self, how_long: Duration) {
        let net = madsim::net::NetSim::current();
        net.clog_node(self.net_id);
        runtime::sleep(how_long).await;
        net.unclog_node(self.net_id);
    }

    /// Sends nothing for `how_long` (a stalled broker process).
    #[cfg(not(madsim))]
    async fn go_silent(&self, how_long: Duration) {
        runtime::sleep(how_long).await;
    }
}

/// Follows every node event of the brokers' cluster from the start until
/// `stop` says to, recording each stream.
pub async fn observe(addrs: Vec<String>, observed: Arc<Mutex<Observed>>, stop: tokio::sync::watch::Receiver<bool>) {
    let client = client(&addrs);
    let mut from = 1;
    while !*stop.borrow() {
        let mut events = client.watch_nodes(CLUSTER, from);
        observed.lock().unwrap_or_else(|e| e.into_inner()).streams.push((from, Vec::new()));
        let mut stop = stop.clone();
        loop {
            let next = tokio::select! {
                _ = stop.changed() => return,
                next = events.recv() => next,
            };
            match next {
                Some(Ok(resp)) => {
                    let mut observed = observed.lock().unwrap_or_else(|e| e.into_inner());
                    let Some((_, seen)) = observed.streams.last_mut() else { return };
                    for e in &resp.events {
                        let kind = match Kind::try_from(e.kind) {
                            Ok(Kind::Joined) => "JOINED",
                            Ok(Kind::Changed) => "CHANGED",
                            Ok(Kind::Left) => "LEFT",
                            Err(_) => "UNKNOWN",
                        };
                        let node = e.node.clone().unwrap_or_default();
                        seen.push((kind.to_string(), node.node_id, node.epoch, e.revision));
                    }
                }
                // Compacted (or the client gave up): start over from now.
                Some(Err(_)) | None => {
                    from = 0;
                    break;
                }
            }
        }
        if from == 0 {
            // A fresh stream "from now": pin now through a list.
            from = current_revision(&client).await + 1;
        }
    }
}

async fn current_revision(client: &Client) -> i64 {
    loop {
        if let Ok(resp) = client.list_nodes(CLUSTER, "").await {
            return resp.header.map_or(0, |h| h.revision);
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
}

/// After heal and silence: the (broker, epoch) pairs ListNodes still lists.
pub async fn still_listed(addrs: &[String]) -> Result<Vec<(u64, i64)>, String> {
    let client = client(addrs);
    for _ in 0..30 {
        if let Ok(resp) = client.list_nodes(CLUSTER, "").await {
            return Ok(resp.nodes.iter().map(|n| (n.node_id, n.epoch)).collect());
        }
        runtime::sleep(Duration::from_millis(300)).await;
    }
    Err("after heal no node answered ListNodes".to_string())
}
