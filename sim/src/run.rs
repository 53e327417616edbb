//! One seed's run: cluster, workload, nemesis, heal, convergence, checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::cluster_client::ClusterClient;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use placement_center::proto::etcdserverpb::{AlarmType, HashRequest, MemberListRequest, RangeRequest, StatusRequest};
use placement_center::runtime::{self, Instant};

use crate::checker::{self, raft_invariants};
use crate::cluster::SimCluster;
use crate::history::{Call, Outcome, TraceHash};
use crate::hosts::Helper;
use crate::nemesis::{self, FaultKind, NemesisLog};
use crate::{auth, brokers, consumers, shards, watchers, workload};

/// Watch clients per run.
const WATCHERS: u32 = 2;
/// Lease clients per run. Two, not one: the seed-238 bug class (a leader
/// cut off from its peers acknowledging keepalives) needs a lease holder on
/// the cut-off leader; with one, 1 of 1,000 seeds caught it, with two 4.
const LEASE_CLIENTS: u32 = 2;
/// Brokers registering through the placement API per run.
const BROKERS: u64 = 3;
/// Revisions applied after a shard's leader's registration went within which
/// the shard must have another leader (while an in-sync replica lives): the
/// workload writes some 50 revisions a second, the controller acts on the
/// first the leader applies.
const FAILOVER_WITHIN: usize = 300;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The seed: everything below is drawn from it.
    pub seed: u64,
    /// Cluster size (3 or 5).
    pub nodes: u64,
    /// Virtual seconds of workload under faults.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: u32,
    /// Distinct keys.
    pub keys: u32,
    /// Faults the nemesis may inject.
    pub faults: Vec<FaultKind>,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Operations recorded.
    pub ops: usize,
    /// Operations whose outcome stayed unknown.
    pub unknown: usize,
    /// Digest of the history and the nemesis log: equal for a replayed seed.
    pub trace_hash: u64,
    /// Faults injected, by kind.
    pub fault_counts: BTreeMap<FaultKind, u32>,
    /// The nemesis's events, in order.
    pub nemesis_log: Vec<String>,
    /// Every violation found (empty: the seed passed).
    pub violations: Vec<String>,
    /// Virtual time the run took.
    pub virtual_time: Duration,
    /// Watch events received (all watchers, all sessions).
    pub watch_events: usize,
    /// Watch sessions (streams) opened.
    pub watch_sessions: usize,
    /// Sessions canceled because their start revision was compacted.
    pub watch_compacted: usize,
    /// Lease keepalives acknowledged.
    pub lease_acks: usize,
    /// Leases granted (episodes of the lease clients).
    pub leases: usize,
    /// Broker registrations acknowledged.
    pub registrations: usize,
    /// Broker heartbeats acknowledged.
    pub heartbeats: usize,
    /// Node events the node watcher saw leave (expired or unregistered).
    pub nodes_left: usize,
    /// Offset commits acknowledged.
    pub offset_commits: usize,
    /// Offset commits refused for a stale generation (the fence at work).
    pub offset_commits_fenced: usize,
    /// Shard placements checked against the registrations.
    pub shard_placements: usize,
    /// Shard leader changes.
    pub shard_leader_changes: usize,
    /// Shard status reports acknowledged (and checked), and refused.
    pub shard_reports: (usize, usize),
    /// Controller decisions replayed from the state they were decided from.
    pub decisions_replayed: usize,
    /// Failovers of a gone leader checked to have happened under progress.
    pub shard_failovers: usize,
    /// Whether auth was on.
    pub auth: bool,
    /// Times the prober's role was revoked (and the window checked).
    pub revocation_windows: usize,
    /// Prober requests that failed (denied while revoked, or faults).
    pub probes_denied: usize,
    /// The rare paths the server reached, with how often (see
    /// `placement_center::runtime::coverage`).
    pub coverage: BTreeMap<String, u64>,
}

/// Stack of a seed's thread: the whole simulated world's futures are polled
/// on it, and unoptimized (test) builds of them passed std's default 2 MiB.
const SEED_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs one seed in a fresh simulated world, on a thread of its own.
///
/// std's `HashMap` keys are drawn once per thread (madsim makes that draw
/// depend on the seed): a second seed on the same thread would inherit the
/// first one's keys, and a seed found failing in a sweep would replay
/// differently alone. A fresh thread per seed makes every run equal to
/// `--seed S`.
pub fn run_seed(opts: &RunOptions) -> Report {
    let opts = opts.clone();
    let seed = opts.seed;
    // Outside the simulation: the harness's own thread, not the server's.
    #[allow(clippy::disallowed_methods)]
    let thread = std::thread::Builder::new()
        .name(format!("seed-{seed}"))
        .stack_size(SEED_STACK_BYTES)
        .spawn(move || run_seed_here(&opts));
    match thread.map(|t| t.join()) {
        Ok(Ok(report)) => report,
        Ok(Err(_)) => Report { seed, violations: vec!["the seed's thread panicked".into()], ..Default::default() },
        Err(e) => {
            Report { seed, violations: vec![format!("could not start the seed's thread: {e}")], ..Default::default() }
        }
    }
}

fn run_seed_here(opts: &RunOptions) -> Report {
    let mut rt = madsim::runtime::Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
    rt.set_time_limit(opts.duration + Duration::from_secs(300));
    let opts2 = opts.clone();
    // The seed's world runs on this thread: the points it reaches count here.
    let _ = placement_center::runtime::coverage::take_reached();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || rt.block_on(run(opts2))));
    let mut report = result.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        Report { seed: opts.seed, violations: vec![format!("the run panicked: {msg}")], ..Default::default() }
    });
    report.coverage = placement_center::runtime::coverage::take_reached();
    report
}

async fn run(opts: RunOptions) -> Report {
    let start = runtime::now();
    // A third of the seeds keep only ~8 KiB of history (60 revisions or so
    // of the workload's): the byte budget, not the revision count, drives
    // their auto-compaction.
    let history_budget = if opts.seed.is_multiple_of(3) { 8 * 1024 } else { 0 };
    let cluster = SimCluster::start(opts.nodes, history_budget);
    let mut violations = Vec::new();

    wait_for(Duration::from_secs(20), || cluster.leader().is_some()).await;
    let history = Arc::new(Mutex::new(Vec::new()));
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    // A quarter of the seeds run with auth on (sim/src/auth.rs).
    let auth_on = auth::enabled_for(opts.seed);
    if auth_on && !on_own_node(Helper::AuthSetup, auth::setup(addrs.clone())).await {
        violations.push("auth could not be set up before the faults began".to_string());
    }
    on_own_node(Helper::Configure, brokers::configure(addrs.clone())).await;
    on_own_node(Helper::Topic, shards::create_topic(addrs.clone())).await;
    let until = runtime::now() + opts.duration;
    let broker_history = Arc::new(Mutex::new(Vec::new()));
    let observed = Arc::new(Mutex::new(checker::brokers::Observed::default()));
    let (stop_observer, observer_stop) = tokio::sync::watch::channel(false);
    let observer = on_own_node(Helper::NodeWatcher, brokers::observe(addrs.clone(), observed.clone(), observer_stop));
    let clients = workload::start_clients(opts.clients, opts.keys, &addrs, start, until, &history);
    let sessions = Arc::new(Mutex::new(Vec::new()));
    let episodes = Arc::new(Mutex::new(Vec::new()));
    let mut others = watchers::start_watchers(WATCHERS, &addrs, until, &sessions);
    others.extend(watchers::start_lease_clients(LEASE_CLIENTS, &addrs, start, until, &episodes));
    let shard_reports = brokers::ShardReports::default();
    others.extend(brokers::start(BROKERS, &addrs, start, until, &broker_history, &shard_reports));
    let consumed = consumers::Recorded::default();
    others.extend(consumers::start(&addrs, start, until, &consumed));
    let probes = Arc::new(Mutex::new(Vec::new()));
    if auth_on {
        let node = Helper::Prober.node();
        others.push(node.spawn(auth::probe(addrs.clone(), start, until, probes.clone())));
    }
    let mut revocations = auth::Revocations::default();
    // What happened, by revision, from the replicas' applied history.
    let mut truth = checker::watch::Truth { from: 1, ..Default::default() };
    let mut truth_cursor: BTreeMap<u64, i64> = BTreeMap::new();

    // Sample Raft invariants throughout.
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));

    let mut log = NemesisLog::default();
    let mut committed = raft_invariants::CommittedLog::default();
    let mut committed_violations = Vec::new();
    {
        let sampler = async {
            // Per node, the highest committed index whose entry was compared.
            let mut checked: BTreeMap<u64, u64> = BTreeMap::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let at = runtime::now() - start;
                let now = cluster.sample(at);
                for s in &now {
                    // A node's applied entries are committed (see `to_compare`).
                    let range = raft_invariants::to_compare(checked.get(&s.slot).copied(), s);
                    for (index, bytes) in cluster.log_entries(s.slot, *range.start(), *range.end()) {
                        committed_violations.extend(committed.observe(s.node, at, index, &bytes));
                    }
                    checked.insert(s.slot, s.applied);
                }
                for s in &now {
                    collect_truth(&cluster, s.slot, &mut truth, &mut truth_cursor, &mut committed_violations);
                }
                samples.lock().unwrap_or_else(|e| e.into_inner()).extend(now);
                runtime::sleep(Duration::from_millis(50)).await;
            }
        };
        let faults = async {
            let revoking = async {
                if auth_on {
                    auth::revoke_and_grant(&cluster, start, until, &mut revocations).await;
                }
            };
            futures::join!(nemesis::run(&cluster, &opts.faults, start, until, &mut log), revoking);
            heal(&cluster, start, &mut log).await;
            for client in clients.into_iter().chain(others) {
                let _ = client.await;
            }
            sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        };
        futures::join!(sampler, faults);
    }

    // Converged: every node serves as a voter (a replaced node has joined and
    // been promoted), there is one leader, and every node ends with the same
    // revision and the same keys.
    if !wait_for(Duration::from_secs(30), || {
        cluster.leader().is_some() && (1..=opts.nodes).all(|id| cluster.is_healthy(id) && cluster.is_voter(id))
    })
    .await
    {
        let voters: Vec<u64> = (1..=opts.nodes).filter(|id| cluster.is_voter(*id)).collect();
        violations.push(format!(
            "after heal the cluster did not recover a leader with every node running as a voter within 30 s (voters: {voters:?})"
        ));
    }
    final_reads(&cluster, start, &history).await;
    violations.extend(every_node_serves(&cluster).await);
    if let Some(problem) = convergence(&cluster).await {
        violations.push(problem);
    }
    if let Some(problem) = leases_expire(&cluster).await {
        violations.push(problem);
    }
    // Every broker has been silent since the end of the workload: longer
    // than the expiry by now. Their registrations must be gone, and the
    // node watcher must have seen them leave.
    let broker_history = broker_history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let listed = on_own_node(Helper::BrokerChecker, {
        let addrs = addrs.clone();
        async move { brokers::still_listed(&addrs).await }
    })
    .await;
    let gone = |observed: &checker::brokers::Observed| match &listed {
        Ok(listed) => checker::brokers::check_gone(&broker_history, observed, listed),
        Err(problem) => vec![checker::brokers::BrokerViolation(problem.clone())],
    };
    let deadline = runtime::now() + Duration::from_secs(10);
    while runtime::now() < deadline && !gone(&observed.lock().unwrap_or_else(|e| e.into_inner())).is_empty() {
        runtime::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_observer.send(true);
    let _ = observer.await;
    let observed = observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(gone(&observed).into_iter().map(|v| v.to_string()));
    for id in 1..=opts.nodes {
        collect_truth(&cluster, id, &mut truth, &mut truth_cursor, &mut committed_violations);
    }

    let history = history.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Ok(key) = std::env::var("PLACEMENT_SIM_DUMP_KEY") {
        for op in history.iter().filter(|op| op.key == key) {
            eprintln!("  {op}");
        }
    }
    for v in checker::linearizability::check(&history) {
        violations.push(v.to_string());
    }
    violations.extend(checker::check_serializable_reads(&history));
    violations.extend(check_nospace(&log.nospace, &history));
    violations.extend(log.health_violations.iter().cloned());
    // No fault of the simulation damages a member's keys: every member kept
    // the same ones at every revision, so a CORRUPT alarm is a bug (in the
    // state machine, the storage or the check).
    for id in 1..=opts.nodes {
        if let Some(node) = cluster.node(id) {
            let alarms = placement_center::raft::state_store::read_state(node.state()).alarms();
            let corrupt = alarms.iter().filter(|a| a.alarm == AlarmType::Corrupt as i32);
            violations.extend(corrupt.map(|a| format!("node {id} lists member {} as CORRUPT", a.member_id)));
        }
    }
    violations.extend(raft_invariants::check(&samples.lock().unwrap_or_else(|e| e.into_inner())));
    violations.extend(committed_violations);
    let sessions = sessions.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let watched = |key: &str| key.as_bytes() >= watchers::WATCHED.0 && key.as_bytes() < watchers::WATCHED.1;
    violations.extend(checker::watch::check(&sessions, &truth, watched).into_iter().map(|v| v.to_string()));
    let episodes = episodes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Leases: only a skewed clock excuses an early end (see checker::lease).
    violations.extend(checker::lease::check(&episodes, &log.skewed).into_iter().map(|v| v.to_string()));
    let mut excused = log.skewed.clone();
    excused.extend(leader_changes(&samples.lock().unwrap_or_else(|e| e.into_inner())));
    violations.extend(
        checker::brokers::check(&broker_history, &observed, brokers::EXPIRY, &excused)
            .into_iter()
            .map(|v| v.to_string()),
    );
    let registrations = broker_history
        .iter()
        .filter(|op| {
            matches!(op.call, checker::brokers::Call::Register(Some(_))) && op.answer == checker::brokers::Answer::Ok
        })
        .count();
    let heartbeats = broker_history
        .iter()
        .filter(|op| {
            matches!(op.call, checker::brokers::Call::Heartbeat(_)) && op.answer == checker::brokers::Answer::Ok
        })
        .count();
    let nodes_left = observed.streams.iter().flat_map(|(_, events)| events).filter(|e| e.0 == "LEFT").count();
    if registrations == 0 || heartbeats == 0 {
        violations.push(format!(
            "the brokers made {registrations} registrations and {heartbeats} heartbeats: the broker checks checked nothing"
        ));
    }
    let events_seen: usize = sessions.iter().flat_map(|s| &s.responses).map(Vec::len).sum();
    if events_seen == 0 {
        violations.push("the watchers saw no event: the watch check checked nothing".to_string());
    }
    // Consumer groups: each shard's offsets as a register, and the fence.
    let offset_ops = consumed.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::linearizability::check(&offset_ops).into_iter().map(|v| format!("offsets: {v}")));
    let commits = consumed.commits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(checker::offsets::check(&commits));
    let offset_commits = commits.iter().filter(|c| matches!(c.ended, checker::offsets::Ended::Acked(_))).count();
    if offset_commits == 0 {
        violations.push("the consumers had no commit acknowledged: the offsets checks checked nothing".to_string());
    }
    // Shards: epochs, placements on live registrations, zones, fenced
    // reports; and every decision replayed.
    let shard_reports = shard_reports.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let zones: BTreeMap<u64, String> = (1..=BROKERS).map(|id| (id, brokers::zone(id))).collect();
    let shard_history = shards::history(&truth.events);
    let (shard_violations, shards_seen) =
        checker::shards::check(&shard_history, &shard_reports, &shards::spread(&zones));
    violations.extend(shard_violations.into_iter().map(|v| format!("shards: {v}")));
    let (failovers, stuck) = checker::shards::check_failover(&shard_history, FAILOVER_WITHIN);
    // The shard records and registrations as applied, to follow a shard violation.
    if std::env::var_os("PLACEMENT_SIM_DUMP_SHARDS").is_some() {
        for (r, c) in &shard_history {
            if !c.is_empty() {
                eprintln!("{r}: {c:?}");
            }
        }
    }
    violations.extend(stuck.into_iter().map(|v| format!("shards: {v}")));
    let (decisions_replayed, mismatches) = shards::replay(&truth.events);
    violations.extend(mismatches.into_iter().map(|v| format!("controller replay: {v}")));
    if shards_seen.placements == 0 {
        violations.push("no shard was ever placed: the shard checks checked nothing".to_string());
    }
    let probes = probes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    violations.extend(auth::check(&revocations, &probes));
    if auth_on && (revocations.windows.is_empty() || !probes.iter().any(|p| p.succeeded)) {
        log.events.push(format!(
            "auth: {} revocation windows, {} successful probes: the revocation check checked little",
            revocations.windows.len(),
            probes.iter().filter(|p| p.succeeded).count()
        ));
    }
    log.events.extend(revocations.events);
    if committed.is_empty() {
        violations.push("no committed entry was ever compared: the committed-log check saw nothing".to_string());
    }

    let mut trace = TraceHash::default();
    for op in &history {
        trace.feed_display(op);
    }
    for event in &log.events {
        trace.feed_display(event);
    }
    for session in &sessions {
        trace.feed_display(&format!("{session:?}"));
    }
    for episode in &episodes {
        trace.feed_display(&format!("{episode:?}"));
    }
    for op in &broker_history {
        trace.feed_display(op);
    }
    for op in &offset_ops {
        trace.feed_display(op);
    }
    for commit in &commits {
        trace.feed_display(commit);
    }
    for report in &shard_reports {
        trace.feed_display(&format!("{report:?}"));
    }
    trace.feed_display(&format!("{observed:?}"));
    Report {
        seed: opts.seed,
        ops: history.len(),
        unknown: history.iter().filter(|op| op.outcome == Outcome::Unknown).count(),
        trace_hash: trace.value(),
        fault_counts: log.counts,
        nemesis_log: log.events,
        violations,
        virtual_time: runtime::now() - start,
        watch_events: events_seen,
        watch_sessions: sessions.len(),
        watch_compacted: sessions.iter().filter(|s| s.compacted.is_some()).count(),
        lease_acks: episodes.iter().map(|e| e.acks.len()).sum(),
        leases: episodes.len(),
        registrations,
        heartbeats,
        nodes_left,
        offset_commits,
        offset_commits_fenced: commits.iter().filter(|c| matches!(c.ended, checker::offsets::Ended::Stale(_))).count(),
        shard_placements: shards_seen.placements,
        shard_leader_changes: shards_seen.leader_changes,
        shard_reports: (
            shards_seen.reports,
            shard_reports.iter().filter(|r| matches!(r.ended, checker::shards::Reported::Refused(_))).count(),
        ),
        decisions_replayed,
        shard_failovers: failovers,
        auth: auth_on,
        revocation_windows: revocations.windows.len(),
        probes_denied: probes.iter().filter(|p| !p.succeeded).count(),
        // Filled in by `run_seed_here`, which owns the thread's counts.
        coverage: BTreeMap::new(),
    }
}

/// Runs `work` on a simulated node of its own (with an address, so it can
/// reach the cluster) and waits for it.
fn on_own_node<T: Send + 'static>(
    helper: Helper,
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let node = helper.node();
    let handle = node.spawn(work);
    async move { handle.await.expect("the task on its own node panicked") }
}

/// Polls `cond` every 100 ms for up to `limit`.
pub(crate) async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = runtime::now() + limit;
    while runtime::now() < deadline {
        if cond() {
            return true;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

/// Removes every fault: network back to normal, disks fixed, dead nodes restarted.
async fn heal(cluster: &SimCluster, start: Instant, log: &mut NemesisLog) {
    let net = madsim::net::NetSim::current();
    net.update_config(|c| {
        c.packet_loss_rate = 0.0;
        c.send_latency = Duration::from_millis(1)..Duration::from_millis(10);
    });
    for node in &cluster.nodes {
        net.unclog_node(node.handle.id());
        node.disk.set_faults(Default::default());
    }
    for node in &cluster.nodes {
        if !cluster.is_healthy(node.id) {
            cluster.kill(node.id);
            cluster.restart(node.id);
            log.events.push(format!("[{:>8.3}s] heal: restarted {}", (runtime::now() - start).as_secs_f64(), node.id));
        }
    }
    // Alarms a NOSPACE fault left raised (its disarm's outcome unknown).
    let deadline = runtime::now() + Duration::from_secs(30);
    while runtime::now() < deadline {
        let raised: Vec<_> = (1..=cluster.nodes.len() as u64)
            .filter_map(|id| cluster.node(id))
            .flat_map(|node| placement_center::raft::state_store::read_state(node.state()).alarms())
            .collect();
        if raised.is_empty() {
            break;
        }
        for alarm in raised {
            use placement_center::proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest};
            let disarm =
                AlarmRequest { action: AlarmAction::Deactivate as i32, member_id: alarm.member_id, alarm: alarm.alarm };
            let request = placement_center::proto::raft::v1::command::Request::Alarm(disarm);
            let outcome = cluster.propose_on_leader(request).await.map(|r| r.is_ok());
            log.events.push(format!(
                "[{:>8.3}s] heal: disarm {alarm:?}: {outcome:?}",
                (runtime::now() - start).as_secs_f64()
            ));
        }
        runtime::sleep(Duration::from_millis(300)).await;
    }
}

/// No write that grows the store succeeds while NOSPACE is raised: none that
/// started after a raise was acknowledged and ended before its disarm was
/// proposed (a CAS is refused whatever its compare finds).
fn check_nospace(windows: &[(Duration, Duration)], history: &[crate::history::Op]) -> Vec<String> {
    history
        .iter()
        .filter(|op| matches!(op.call, Call::Put(_) | Call::Cas { .. }))
        .filter(|op| matches!(op.outcome, Outcome::Written | Outcome::Swapped(_)))
        .filter(|op| windows.iter().any(|(from, to)| op.invoked >= *from && op.completed <= *to))
        .map(|op| format!("nospace: a write succeeded while NOSPACE was raised: {op}"))
        .collect()
}

/// How long after heal each node has to answer a linearizable read.
const SERVE_AFTER_HEAL: Duration = Duration::from_secs(10);

/// After heal, every node answers a linearizable read through its own client
/// port: a node left refusing requests (a leader wedged by a cancelled
/// transfer kept its writes and reads paused until restarted) fails the run.
async fn every_node_serves(cluster: &SimCluster) -> Vec<String> {
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    on_own_node(Helper::ServeChecker, async move {
        let mut problems = Vec::new();
        for addr in addrs {
            let deadline = runtime::now() + SERVE_AFTER_HEAL;
            loop {
                let read = async {
                    let mut kv = KvClient::connect(format!("http://{addr}")).await.map_err(|e| e.to_string())?;
                    let req = RangeRequest { key: b"k".to_vec(), limit: 1, ..Default::default() };
                    match runtime::timeout(Duration::from_secs(2), kv.range(auth::request(req))).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(status)) => Err(status.message().to_string()),
                        Err(_) => Err("timed out".to_string()),
                    }
                };
                let Err(last) = read.await else { break };
                if runtime::now() >= deadline {
                    problems.push(format!(
                        "after heal {addr} answered no linearizable read within {SERVE_AFTER_HEAL:?}: {last}"
                    ));
                    break;
                }
                runtime::sleep(Duration::from_millis(200)).await;
            }
        }
        problems
    })
    .await
}

/// After heal, one linearizable read of every key (retried until answered),
/// recorded as a read of each key the history touched: a lost acknowledged
/// write then shows up as a linearizability violation. The range read is
/// atomic, so each key's projection of it is a valid read of that key.
async fn final_reads(cluster: &SimCluster, start: Instant, history: &workload::History) {
    let node = Helper::Checker.node();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let history = history.clone();
    let reader = node.spawn(async move {
        for attempt in 0..50 {
            let addr = &addrs[attempt % addrs.len()];
            let invoked = runtime::now();
            let read = async {
                let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
                let req = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
                runtime::timeout(Duration::from_secs(2), kv.range(auth::request(req))).await.ok()?.ok()
            };
            if let Some(resp) = read.await {
                let values: BTreeMap<String, String> = resp
                    .into_inner()
                    .kvs
                    .into_iter()
                    .map(|kv| {
                        (String::from_utf8_lossy(&kv.key).into_owned(), String::from_utf8_lossy(&kv.value).into_owned())
                    })
                    .collect();
                let completed = runtime::now();
                let mut history = history.lock().unwrap_or_else(|e| e.into_inner());
                let keys: std::collections::BTreeSet<String> = history.iter().map(|op| op.key.clone()).collect();
                for key in keys {
                    history.push(crate::history::Op {
                        client: u32::MAX,
                        outcome: Outcome::Read(values.get(&key).cloned()),
                        key,
                        call: Call::Get,
                        invoked: invoked - start,
                        completed: completed - start,
                    });
                }
                return;
            }
            runtime::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!("final read never succeeded");
    });
    let _ = reader.await;
}

/// Every node's keys and revision, read locally (serializable), must agree.
async fn convergence(cluster: &SimCluster) -> Option<String> {
    let node = Helper::Convergence.node();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let check = node.spawn(async move {
        let mut last = String::new();
        for _ in 0..50 {
            let mut states = Vec::new();
            for addr in &addrs {
                let state = async {
                    let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
                    let req =
                        RangeRequest { key: vec![0], range_end: vec![0], serializable: true, ..Default::default() };
                    let resp = runtime::timeout(Duration::from_secs(1), kv.range(auth::request(req)))
                        .await
                        .ok()?
                        .ok()?
                        .into_inner();
                    let kvs: Vec<String> = resp
                        .kvs
                        .iter()
                        .map(|kv| {
                            format!(
                                "{:?}={:?}@{}/{}/{}",
                                String::from_utf8_lossy(&kv.key),
                                String::from_utf8_lossy(&kv.value),
                                kv.create_revision,
                                kv.mod_revision,
                                kv.version
                            )
                        })
                        .collect();
                    // Every node agrees on who leads and on the members (Maintenance.Status, Cluster.MemberList).
                    let channel =
                        tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect_lazy();
                    let mut maintenance = MaintenanceClient::new(channel.clone());
                    let status = runtime::timeout(Duration::from_secs(1), maintenance.status(StatusRequest {}))
                        .await
                        .ok()?
                        .ok()?
                        .into_inner();
                    // The digest of the whole state machine: besides the keys,
                    // history, leases, users, roles and raised alarms.
                    let digest =
                        runtime::timeout(Duration::from_secs(1), maintenance.hash(auth::request(HashRequest {})))
                            .await
                            .ok()?
                            .ok()?
                            .into_inner()
                            .hash;
                    let mut cluster = ClusterClient::new(channel);
                    let list = MemberListRequest { linearizable: false };
                    let members = runtime::timeout(Duration::from_secs(1), cluster.member_list(list))
                        .await
                        .ok()?
                        .ok()?
                        .into_inner();
                    let ids: Vec<u64> = members.members.iter().map(|m| m.id).collect();
                    Some(format!(
                        "revision {} leader {} term {} members {ids:?} errors {:?} digest {digest:x} keys {}",
                        resp.header.map_or(0, |h| h.revision),
                        status.leader,
                        status.raft_term,
                        status.errors,
                        kvs.join(",")
                    ))
                }
                .await;
                states.push(state.unwrap_or_else(|| "unreachable".into()));
            }
            if states.iter().all(|s| *s == states[0] && s != "unreachable") {
                return None;
            }
            last =
                states.iter().enumerate().map(|(i, s)| format!("  node {}: {s}", i + 1)).collect::<Vec<_>>().join("\n");
            runtime::sleep(Duration::from_millis(200)).await;
        }
        Some(format!("nodes did not converge within 10 s after heal:\n{last}"))
    });
    let verdict = check.await.unwrap_or_else(|e| Some(format!("convergence check failed: {e}")));
    // A node that is not running says why its last start failed.
    verdict.map(|mut verdict| {
        for slot in 1..=cluster.nodes.len() as u64 {
            if let Some(why) = cluster.start_error(slot) {
                verdict.push_str(&format!("\n  node {slot} did not start: {why}"));
            }
        }
        verdict
    })
}

/// Adds node `id`'s newly applied events to `truth`; replicas must agree on
/// every revision they both applied.
fn collect_truth(
    cluster: &SimCluster,
    id: u64,
    truth: &mut checker::watch::Truth,
    cursor: &mut BTreeMap<u64, i64>,
    violations: &mut Vec<String>,
) {
    let from = cursor.get(&id).map_or(1, |c| c + 1);
    let (compacted, applied) = cluster.applied_events(id, from);
    truth.compacted = truth.compacted.max(compacted);
    for (revision, events) in applied {
        let events: Vec<_> = events.iter().map(watchers::watch_event).collect();
        // The events at the compact revision no longer hold the records
        // they replaced (see `Truth::compacted`): the fuller copy is truth.
        let strip = |events: &[checker::watch::WatchEvent]| -> Vec<checker::watch::WatchEvent> {
            events.iter().map(|e| checker::watch::WatchEvent { prev: None, ..e.clone() }).collect()
        };
        let at_boundary = revision == compacted;
        match truth.events.get_mut(&revision) {
            Some(known) if *known == events => {}
            Some(known) if at_boundary && strip(known) == events => {}
            Some(known) if truth.without_prev.contains(&revision) && strip(&events) == *known => {
                *known = events.clone();
                truth.without_prev.remove(&revision);
            }
            Some(known) => violations
                .push(format!("node {id} applied {events:?} at revision {revision}, another replica {known:?}")),
            None => {
                if at_boundary {
                    truth.without_prev.insert(revision);
                }
                truth.events.insert(revision, events);
            }
        }
        cursor.insert(id, revision);
    }
}

/// When the leader changed, as sampled: a lease may end early around then
/// (keepalives acknowledged by a deposed leader do not count).
fn leader_changes(samples: &[raft_invariants::Sample]) -> Vec<(Duration, Duration)> {
    let mut term = 0;
    let mut changes = Vec::new();
    for s in samples {
        if s.vote.0 > term {
            term = s.vote.0;
            changes.push((s.at.saturating_sub(Duration::from_millis(200)), s.at));
        }
    }
    changes
}

/// After heal, every lease (their clients stopped keeping them alive) must be
/// gone within its TTL plus an election and an expiry pass, with its keys.
async fn leases_expire(cluster: &SimCluster) -> Option<String> {
    use placement_center::proto::etcdserverpb::lease_client::LeaseClient;
    use placement_center::proto::etcdserverpb::LeaseLeasesRequest;
    runtime::sleep(Duration::from_secs(watchers::LEASE_TTL as u64 + 2)).await;
    let node = Helper::LeaseChecker.node();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let check = node.spawn(async move {
        for attempt in 0..30 {
            let addr = &addrs[attempt % addrs.len()];
            let found = async {
                let mut leases = LeaseClient::connect(format!("http://{addr}")).await.ok()?;
                let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
                let list =
                    runtime::timeout(Duration::from_secs(2), leases.lease_leases(auth::request(LeaseLeasesRequest {})))
                        .await
                        .ok()?
                        .ok()?
                        .into_inner();
                let prefix = watchers::LEASE_KEY_PREFIX.as_bytes();
                let mut end = prefix.to_vec();
                *end.last_mut()? += 1;
                let req = RangeRequest { key: prefix.to_vec(), range_end: end, ..Default::default() };
                let keys = runtime::timeout(Duration::from_secs(2), kv.range(auth::request(req)))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                Some((list.leases.len(), keys.kvs.len()))
            };
            match found.await {
                Some((0, 0)) => return None,
                Some((leases, keys)) => {
                    return Some(format!(
                        "after heal and a TTL, {leases} leases and {keys} leased keys are still there"
                    ))
                }
                None => runtime::sleep(Duration::from_millis(500)).await,
            }
        }
        Some("after heal no node answered the lease check".to_string())
    });
    check.await.unwrap_or_else(|_| Some("the lease check panicked".to_string()))
}
