//! One seed's run: cluster, workload, nemesis, heal, convergence, checks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::RangeRequest;
use placement_center::runtime::{self, Instant};

use crate::checker::{self, raft_invariants};
use crate::cluster::SimCluster;
use crate::history::{Call, Outcome, TraceHash};
use crate::nemesis::{self, FaultKind, NemesisLog};
use crate::workload;

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
}

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
    let thread = std::thread::Builder::new().name(format!("seed-{seed}")).spawn(move || run_seed_here(&opts));
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
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || rt.block_on(run(opts2))));
    result.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".into());
        Report { seed: opts.seed, violations: vec![format!("the run panicked: {msg}")], ..Default::default() }
    })
}

async fn run(opts: RunOptions) -> Report {
    let start = runtime::now();
    let cluster = SimCluster::start(opts.nodes);
    let mut violations = Vec::new();

    wait_for(Duration::from_secs(20), || cluster.leader().is_some()).await;
    let history = Arc::new(Mutex::new(Vec::new()));
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let until = runtime::now() + opts.duration;
    let clients = workload::start_clients(opts.clients, opts.keys, &addrs, start, until, &history);

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
                    // A node's applied entries are committed. After a power loss
                    // `applied` may go back; those entries are compared again.
                    let from = checked.get(&s.node).map_or(1, |c| (c + 1).min(s.applied + 1));
                    for (index, bytes) in cluster.log_entries(s.node, from, s.applied) {
                        committed_violations.extend(committed.observe(s.node, at, index, &bytes));
                    }
                    checked.insert(s.node, s.applied);
                }
                samples.lock().unwrap_or_else(|e| e.into_inner()).extend(now);
                runtime::sleep(Duration::from_millis(50)).await;
            }
        };
        let faults = async {
            nemesis::run(&cluster, &opts.faults, start, until, &mut log).await;
            heal(&cluster, start, &mut log).await;
            for client in clients {
                let _ = client.await;
            }
            sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        };
        futures::join!(sampler, faults);
    }

    // Converged: every node serves, there is one leader, and every node ends
    // with the same revision and the same keys.
    if !wait_for(Duration::from_secs(30), || {
        cluster.leader().is_some() && (1..=opts.nodes).all(|id| cluster.is_healthy(id))
    })
    .await
    {
        violations
            .push("after heal the cluster did not recover a leader with every node running within 30 s".to_string());
    }
    final_reads(&cluster, start, &history).await;
    if let Some(problem) = convergence(&cluster).await {
        violations.push(problem);
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
    violations.extend(raft_invariants::check(&samples.lock().unwrap_or_else(|e| e.into_inner())));
    violations.extend(committed_violations);
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
    Report {
        seed: opts.seed,
        ops: history.len(),
        unknown: history.iter().filter(|op| op.outcome == Outcome::Unknown).count(),
        trace_hash: trace.value(),
        fault_counts: log.counts,
        nemesis_log: log.events,
        violations,
        virtual_time: runtime::now() - start,
    }
}

/// Polls `cond` every 100 ms for up to `limit`.
async fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
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
}

/// After heal, one linearizable read of every key (retried until answered),
/// recorded as a read of each key the history touched: a lost acknowledged
/// write then shows up as a linearizability violation. The range read is
/// atomic, so each key's projection of it is a valid read of that key.
async fn final_reads(cluster: &SimCluster, start: Instant, history: &workload::History) {
    let handle = madsim::runtime::Handle::current();
    let node = handle.create_node().name("checker").ip(crate::cluster::ip(250)).build();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let history = history.clone();
    let reader = node.spawn(async move {
        for attempt in 0..50 {
            let addr = &addrs[attempt % addrs.len()];
            let invoked = runtime::now();
            let read = async {
                let mut kv = KvClient::connect(format!("http://{addr}")).await.ok()?;
                let req = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
                runtime::timeout(Duration::from_secs(2), kv.range(req)).await.ok()?.ok()
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
    let handle = madsim::runtime::Handle::current();
    let node = handle.create_node().name("convergence").ip(crate::cluster::ip(251)).build();
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
                    let resp = runtime::timeout(Duration::from_secs(1), kv.range(req)).await.ok()?.ok()?.into_inner();
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
                    Some(format!("revision {} keys {}", resp.header.map_or(0, |h| h.revision), kvs.join(",")))
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
    check.await.unwrap_or_else(|e| Some(format!("convergence check failed: {e}")))
}
