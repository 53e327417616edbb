//! The robustness suite: real `placement-center` processes (real RocksDB,
//! fsync, sockets, signals and clocks), each in a network namespace of its
//! own, under real faults drawn from a seed. The simulator's clients record
//! the history and `placement-check` judges it, as in the simulator.
//!
//! `ci/robustness.sh` makes the namespaces (tests/netns/lib.sh) and runs this
//! inside the client's; members are reached by their namespaces' addresses
//! (198.18.0.11..) and every rule a fault adds lives inside a member's
//! namespace. Faults come one at a time, each undone before the next.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use placement_center::proto::etcdserverpb::watch_client::WatchClient;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{HashKvRequest, WatchCreateRequest, WatchRequest};
use placement_center::runtime;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::checker::{self, watch::Truth};
use crate::history::{Call, Outcome};
use crate::{brokers, watchers, workload};

mod cluster;
mod faults;

use cluster::channel;
pub use cluster::Cluster;

/// Brokers registering through the placement API during a run.
const BROKERS: u64 = 3;

/// The faults, each a function below with its own log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL one member, restart it.
    Kill,
    /// SIGKILL the leader, restart it.
    KillLeader,
    /// SIGKILL every member at once, restart them.
    KillAll,
    /// SIGSTOP a member (the leader half the time) past the election
    /// timeout, then SIGCONT.
    Pause,
    /// A member cut off from the others both ways (nftables).
    Partition,
    /// A member that hears nothing from the others but still sends.
    OneWay,
    /// A member losing 20% of its packets to and from the others.
    Loss,
    /// A member's link throttled to 256 kbit/s (tc tbf: queueing latency).
    SlowLink,
    /// The disk of the member whose data dir is a small tmpfs filled up.
    DiskFull,
    /// The disk of the member whose data dir is an ext4 image on a loop
    /// device throttled to 10 writes and 1 MiB a second (blkio cgroup).
    SlowDisk,
    /// The clock of the member started under libfaketime jumps forward
    /// (for good: a monotonic clock never goes back), or runs fast (1.2-3x)
    /// for a while.
    Clock,
    /// A member removed, its data dir wiped, added back with `--join`.
    Rejoin,
    /// Every member restarted in turn (SIGTERM), each back before the next.
    Rolling,
}

impl Fault {
    /// Every fault kind.
    pub const ALL: [Fault; 13] = [
        Fault::Kill,
        Fault::KillLeader,
        Fault::KillAll,
        Fault::Pause,
        Fault::Partition,
        Fault::OneWay,
        Fault::Loss,
        Fault::SlowLink,
        Fault::DiskFull,
        Fault::SlowDisk,
        Fault::Clock,
        Fault::Rejoin,
        Fault::Rolling,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::KillLeader => "kill-leader",
            Fault::KillAll => "kill-all",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::OneWay => "one-way",
            Fault::Loss => "loss",
            Fault::SlowLink => "slow-link",
            Fault::DiskFull => "disk-full",
            Fault::SlowDisk => "slow-disk",
            Fault::Clock => "clock",
            Fault::Rejoin => "rejoin",
            Fault::Rolling => "rolling-restart",
        }
    }

    /// Parses a comma-separated list, `all` or `none`.
    pub fn parse_list(list: &str) -> Result<Vec<Fault>, String> {
        match list {
            "all" => Ok(Self::ALL.to_vec()),
            "none" | "" => Ok(Vec::new()),
            _ => list
                .split(',')
                .map(|name| {
                    Self::ALL.into_iter().find(|f| f.name() == name.trim()).ok_or_else(|| {
                        let known: Vec<_> = Self::ALL.iter().map(|f| f.name()).collect();
                        format!("unknown fault {name:?}; known: {}", known.join(","))
                    })
                })
                .collect(),
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `placement-center` binary.
    pub bin: PathBuf,
    /// Where data dirs and logs go.
    pub work: PathBuf,
    /// The members' network namespaces, member 1 first.
    pub namespaces: Vec<String>,
    /// Seconds of workload under faults.
    pub duration: u64,
    /// Seed of the fault schedule and the workload's choices of target.
    pub seed: u64,
    /// The faults to draw from.
    pub faults: Vec<Fault>,
    /// Concurrent KV clients.
    pub clients: u32,
    /// Distinct keys per generation.
    pub keys: u32,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Operations recorded (final reads included).
    pub ops: usize,
    /// Writes whose outcome is unknown.
    pub unknown: usize,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u32>,
    /// SIGKILLs sent (every member of a kill-all counts).
    pub sigkills: u32,
    /// Watch events seen, sessions; lease episodes, keepalive acks.
    pub watch_events: usize,
    /// Watch sessions.
    pub watch_sessions: usize,
    /// Lease episodes.
    pub leases: usize,
    /// Keepalives acknowledged.
    pub lease_acks: usize,
    /// Broker registrations and heartbeats acknowledged.
    pub broker_acks: (usize, usize),
    /// Every broken guarantee.
    pub violations: Vec<String>,
    /// How long the checkers took.
    pub check_time: Duration,
    /// Wall time of the whole run.
    pub wall: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k}={n}")).collect();
        writeln!(
            f,
            "robustness {}: ops={} unknown={} watch={}/{} leases={}/{} brokers={}/{} sigkills={} faults: {} wall={:.0}s check={:.1}s",
            if self.violations.is_empty() { "ok" } else { "FAIL" },
            self.ops,
            self.unknown,
            self.watch_events,
            self.watch_sessions,
            self.leases,
            self.lease_acks,
            self.broker_acks.0,
            self.broker_acks.1,
            self.sigkills,
            faults.join(" "),
            self.wall.as_secs_f64(),
            self.check_time.as_secs_f64()
        )?;
        for v in &self.violations {
            writeln!(f, "  violation: {v}")?;
        }
        Ok(())
    }
}

/// Every member's watch history of the workload's keys up to `revision`,
/// from revision 1 (the suite's members keep their history: see `member.toml`).
async fn applied_history(addr: &str, revision: i64) -> Result<BTreeMap<i64, Vec<checker::watch::WatchEvent>>, String> {
    let mut client = WatchClient::new(channel(addr));
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let create = WatchCreateRequest {
        key: watchers::WATCHED.0.to_vec(),
        range_end: watchers::WATCHED.1.to_vec(),
        start_revision: 1,
        prev_kv: true,
        progress_notify: true,
        ..Default::default()
    };
    tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) })
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = client
        .watch(placement_center::api::context::receiver_stream(rx))
        .await
        .map_err(|e| format!("watch on {addr}: {e}"))?
        .into_inner();
    let mut events: BTreeMap<i64, Vec<checker::watch::WatchEvent>> = BTreeMap::new();
    loop {
        let next = runtime::timeout(Duration::from_secs(10), stream.message()).await;
        let resp = match next {
            Ok(Ok(Some(resp))) => resp,
            other => return Err(format!("the history watch on {addr} ended: {other:?}")),
        };
        if resp.canceled || resp.compact_revision > 0 {
            return Err(format!("the history watch on {addr} was canceled (compacted to {})", resp.compact_revision));
        }
        for e in &resp.events {
            let event = watchers::watch_event(e);
            if event.revision <= revision {
                events.entry(event.revision).or_default().push(event);
            }
        }
        let reached = resp.events.last().map_or(0, |e| e.kv.as_ref().map_or(0, |kv| kv.mod_revision));
        if reached >= revision
            || (!resp.created && resp.events.is_empty() && resp.header.map_or(0, |h| h.revision) >= revision)
        {
            return Ok(events);
        }
        if resp.events.is_empty() {
            let progress = WatchRequest {
                request_union: Some(RequestUnion::ProgressRequest(
                    placement_center::proto::etcdserverpb::WatchProgressRequest {},
                )),
            };
            let _ = tx.send(progress).await;
        }
    }
}

/// Runs the workload under faults, heals, and checks. The cluster must be
/// started.
pub async fn run(cluster: &Cluster, opts: &Options) -> Report {
    let began = runtime::now();
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let addrs = cluster.addrs();
    let start = cluster.start;
    let until = runtime::now() + Duration::from_secs(opts.duration);
    let history: workload::History = Arc::new(Mutex::new(Vec::new()));
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let episodes = Arc::new(Mutex::new(Vec::new()));
    brokers::configure(addrs.clone()).await;
    let broker_history: brokers::BrokerHistory = Arc::new(Mutex::new(Vec::new()));
    let observed = Arc::new(Mutex::new(checker::brokers::Observed::default()));
    let (stop_observer, observer_stop) = tokio::sync::watch::channel(false);
    let (observer_done, observer) = tokio::sync::oneshot::channel();
    runtime::spawn_detached("node-watcher", {
        let watch = brokers::observe(addrs.clone(), observed.clone(), observer_stop);
        async move {
            watch.await;
            let _ = observer_done.send(());
        }
    });

    let clients = futures::future::join_all((0..opts.clients).map(|i| {
        let client = workload::Client::new(i, &addrs, start, history.clone());
        workload::client_loop(client, opts.keys, until)
    }));
    let watch =
        futures::future::join_all((0..2).map(|i| watchers::watcher_loop(i, addrs.clone(), until, sessions.clone())));
    let leases = futures::future::join_all(
        (0..2).map(|i| watchers::lease_loop(i, addrs.clone(), start, until, episodes.clone())),
    );
    let nemesis = async {
        // Every fault once per round, in an order drawn from the seed.
        let mut round = Vec::new();
        runtime::sleep(Duration::from_secs(2)).await;
        while runtime::now() + Duration::from_secs(3) < until && !opts.faults.is_empty() {
            if round.is_empty() {
                round = opts.faults.clone();
                round.shuffle(&mut rng);
            }
            let fault = round.pop().expect("refilled");
            cluster.inject(fault, &mut rng).await;
            let quiet = Duration::from_millis(rng.gen_range(500..2500));
            runtime::sleep(quiet).await;
        }
    };
    let shard_reports = brokers::ShardReports::default();
    let brokers = brokers::run(BROKERS, &addrs, start, until, &broker_history, &shard_reports);
    futures::join!(clients, watch, leases, brokers, nemesis, cluster.supervise(until));
    cluster.heal().await;
    cluster.note("heal: every fault undone; waiting for every member to serve");

    let mut violations = Vec::new();
    let n = addrs.len();
    if !cluster.wait_serving(1..=n, Duration::from_secs(60)).await {
        let down: Vec<usize> = {
            let mut down = Vec::new();
            for slot in 1..=n {
                if !cluster.serves(slot).await {
                    down.push(slot);
                }
            }
            down
        };
        violations.push(format!("members {down:?} do not serve a linearizable read 60 s after heal"));
    }
    // No member left unhealthy: each says SERVING and lists no alarm (within
    // 10 s more: health needs a leader's word since the last election).
    for slot in 1..=n {
        let deadline = runtime::now() + Duration::from_secs(10);
        let mut problem = cluster.unhealthy(slot).await;
        while problem.is_some() && runtime::now() < deadline {
            runtime::sleep(Duration::from_millis(500)).await;
            problem = cluster.unhealthy(slot).await;
        }
        violations.extend(problem);
    }
    // No acknowledged write lost: a final linearizable read of every key,
    // through every member in turn, joins the history.
    let keys: BTreeSet<String> =
        history.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|op| op.key.clone()).collect();
    let mut reader = workload::Client::new(opts.clients, &addrs, start, history.clone());
    for (i, key) in keys.iter().enumerate() {
        let mut read = false;
        for attempt in 0..10 {
            if matches!(reader.run((i + attempt) % n, key, Call::Get).await, Outcome::Read(_)) {
                read = true;
                break;
            }
        }
        if !read {
            violations.push(format!("final read of {key} failed on every member"));
        }
    }

    // Converged: every member at one revision, with one HashKV there.
    let checks_began = runtime::now();
    let mut revision = 0;
    let deadline = runtime::now() + Duration::from_secs(30);
    while runtime::now() < deadline {
        let mut revisions = BTreeSet::new();
        for slot in 1..=n {
            revisions.insert(cluster.status(slot).await.and_then(|s| s.header).map_or(-1, |h| h.revision));
        }
        if revisions.len() == 1 && !revisions.contains(&-1) {
            revision = *revisions.iter().next().expect("one");
            break;
        }
        runtime::sleep(Duration::from_millis(300)).await;
    }
    if revision == 0 {
        violations.push("the members did not reach one revision within 30 s of the final reads".into());
    } else {
        let mut hashes = BTreeMap::new();
        for (slot, addr) in addrs.iter().enumerate() {
            let mut client = MaintenanceClient::new(channel(addr));
            let hash = runtime::timeout(Duration::from_secs(5), client.hash_kv(HashKvRequest { revision })).await;
            match hash {
                Ok(Ok(resp)) => {
                    hashes.insert(slot + 1, resp.into_inner().hash);
                }
                other => violations.push(format!("HashKV at {revision} on m{}: {other:?}", slot + 1)),
            }
        }
        if hashes.values().collect::<BTreeSet<_>>().len() > 1 {
            violations.push(format!("members differ at revision {revision}: HashKV {hashes:?}"));
        }
    }

    // The applied history, as each member tells it, is one; the watchers'
    // sessions are checked against it.
    let mut truth = Truth { from: 1, ..Default::default() };
    if revision > 0 {
        let mut first: Option<(usize, BTreeMap<i64, Vec<checker::watch::WatchEvent>>)> = None;
        for (slot, addr) in addrs.iter().enumerate() {
            match applied_history(addr, revision).await {
                Ok(events) => match &first {
                    Some((other, known)) if *known != events => {
                        let differs = known.iter().find(|(rev, e)| events.get(rev) != Some(e)).map(|(rev, _)| *rev);
                        violations.push(format!(
                            "m{} and m{} applied different histories (first difference at revision {differs:?})",
                            other + 1,
                            slot + 1
                        ));
                    }
                    Some(_) => {}
                    None => first = Some((slot, events)),
                },
                Err(e) => violations.push(e),
            }
        }
        if let Some((_, events)) = first {
            truth.events = events;
        }
    }
    let history = history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::linearizability::check(&history).into_iter().map(|v| v.to_string()));
    violations.extend(checker::check_serializable_reads(&history));
    let sessions = sessions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let watched = |key: &str| key.as_bytes() >= watchers::WATCHED.0 && key.as_bytes() < watchers::WATCHED.1;
    if revision > 0 {
        violations.extend(checker::watch::check(&sessions, &truth, watched).into_iter().map(|v| v.to_string()));
    }
    let episodes = episodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Leases: only a moved clock excuses an early end (see checker::lease).
    let skewed = cluster.skewed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::lease::check(&episodes, &skewed).into_iter().map(|v| v.to_string()));
    let excused = cluster.excused.lock().unwrap_or_else(|e| e.into_inner()).clone();

    // Every broker has been silent since the workload ended, longer than
    // the expiry by now: its registrations must be gone, and the node
    // watcher must have seen each broker's last one leave.
    // (A short run gets here within the expiry: asked again until 10 s
    // past it.)
    let broker_history = broker_history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let gone = |observed: &checker::brokers::Observed, listed: &Result<Vec<(u64, i64)>, String>| match listed {
        Ok(listed) => checker::brokers::check_gone(&broker_history, observed, listed),
        Err(problem) => vec![checker::brokers::BrokerViolation(problem.clone())],
    };
    let deadline = until.max(runtime::now()) + brokers::EXPIRY + Duration::from_secs(10);
    let mut listed = brokers::still_listed(&addrs).await;
    while runtime::now() < deadline && !gone(&observed.lock().unwrap_or_else(|e| e.into_inner()), &listed).is_empty() {
        runtime::sleep(Duration::from_millis(500)).await;
        listed = brokers::still_listed(&addrs).await;
    }
    let _ = stop_observer.send(true);
    let _ = observer.await;
    let observed = observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(gone(&observed, &listed).into_iter().map(|v| v.to_string()));
    violations.extend(
        checker::brokers::check(&broker_history, &observed, brokers::EXPIRY, &excused)
            .into_iter()
            .map(|v| v.to_string()),
    );
    let acknowledged = |registration: bool| {
        broker_history
            .iter()
            .filter(|op| op.answer == checker::brokers::Answer::Ok)
            .filter(|op| {
                if registration {
                    matches!(op.call, checker::brokers::Call::Register(Some(_)))
                } else {
                    matches!(op.call, checker::brokers::Call::Heartbeat(_))
                }
            })
            .count()
    };
    let broker_acks = (acknowledged(true), acknowledged(false));
    if broker_acks.0 == 0 || broker_acks.1 == 0 {
        violations.push(format!(
            "the brokers made {} registrations and {} heartbeats: the broker checks checked nothing",
            broker_acks.0, broker_acks.1
        ));
    }
    let events_seen: usize = sessions.iter().flat_map(|s| &s.responses).map(Vec::len).sum();
    if events_seen == 0 {
        violations.push("the watchers saw no event: the watch check checked nothing".into());
    }
    let counts = cluster.counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for fault in &opts.faults {
        if !counts.contains_key(fault.name()) {
            violations.push(format!("fault {} never ran: the run was too short for every fault", fault.name()));
        }
    }
    violations.extend(cluster.harness_errors.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned());
    if history.iter().filter(|op| op.outcome == Outcome::Written).count() == 0 {
        violations.push("no write was acknowledged: the checks checked nothing".into());
    }
    Report {
        ops: history.len(),
        unknown: history.iter().filter(|op| op.outcome == Outcome::Unknown).count(),
        faults: counts,
        sigkills: *cluster.sigkills.lock().unwrap_or_else(|e| e.into_inner()),
        watch_events: events_seen,
        watch_sessions: sessions.len(),
        leases: episodes.len(),
        lease_acks: episodes.iter().map(|e| e.acks.len()).sum(),
        broker_acks,
        violations,
        check_time: runtime::now() - checks_began,
        wall: runtime::now() - began,
    }
}
