//! N Placement Center nodes on madsim, each on its own simulated IP with its
//! own SimDisk (which survives kill and restart), bootstrapped exactly as in
//! production: a config with the initial members, `Server::start`.
//!
//! Addresses are in 192.0.2.0/24 (TEST-NET-1) of madsim's in-process network:
//! no packet ever leaves the process.

use placement_center::raft::MetricsWatch as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use placement_center::config::{Config, MemberConfig};
use placement_center::raft::RaftNode;
use placement_center::server::{Listeners, Server};
use placement_center::storage::sim_disk::SimDisk;

use crate::checker::raft_invariants::Sample;
use crate::hosts::Host;

thread_local! {
    /// Running Raft nodes by node id, for sampling invariants (cleared per run;
    /// per thread because every seed's world has a thread of its own).
    static RUNNING: std::cell::RefCell<BTreeMap<u64, Arc<RaftNode>>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

fn running<R>(f: impl FnOnce(&mut BTreeMap<u64, Arc<RaftNode>>) -> R) -> R {
    RUNNING.with(|r| f(&mut r.borrow_mut()))
}

thread_local! {
    /// Why each slot's last start failed, if it did (cleared per run).
    static START_ERRORS: std::cell::RefCell<BTreeMap<u64, String>> = const { std::cell::RefCell::new(BTreeMap::new()) };
}

fn start_errors<R>(f: impl FnOnce(&mut BTreeMap<u64, String>) -> R) -> R {
    START_ERRORS.with(|r| f(&mut r.borrow_mut()))
}

/// One simulated node.
pub struct SimNode {
    /// Raft node id (1-based).
    pub id: u64,
    /// madsim's handle, for kill/restart and network faults.
    pub handle: NodeHandle,
    /// Its disk, kept by the harness across restarts.
    pub disk: Arc<SimDisk>,
    /// Where clients connect.
    pub client_addr: String,
    /// Where its peers connect (raft.v1).
    pub peer_addr: String,
    /// Its config, read at every (re)start: a replaced node restarts with `join`.
    config: Arc<std::sync::Mutex<Config>>,
}

/// The simulated cluster.
pub struct SimCluster {
    /// The nodes, index = id - 1.
    pub nodes: Vec<SimNode>,
}

impl SimCluster {
    /// Creates and starts `n` nodes.
    pub fn start(n: u64, history_budget_bytes: u64) -> SimCluster {
        SimDisk::clear_registry();
        placement_center::runtime::reset_clocks();
        running(|r| r.clear());
        start_errors(|r| r.clear());
        let handle = Handle::current();
        let members: BTreeMap<u64, MemberConfig> = (1..=n)
            .map(|id| {
                (
                    id,
                    MemberConfig {
                        peer_addr: format!("{}:2380", Host::Member(id).ip()),
                        client_addr: format!("{}:2379", Host::Member(id).ip()),
                    },
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let config = Config {
                node_id: id,
                client_addr: members[&id].client_addr.clone(),
                peer_addr: members[&id].peer_addr.clone(),
                data_dir: PathBuf::from(format!("/sim/node{id}")),
                initial_members: members.clone(),
                metrics_addr: String::new(),
                initial_cluster_token: "sim-cluster-token".into(),
                // Tokens outlive the run: the clients authenticate once.
                auth_token_ttl: 3600,
                heartbeat_interval_ms: 100,
                election_timeout_ms: 500,
                request_timeout_ms: 3000,
                // Small enough that compaction happens in a 30 s run and
                // watchers resuming after a partition may find it.
                auto_compaction_retention_revisions: 100,
                auto_compaction_retention_bytes: history_budget_bytes,
                // The leader compares the members' keys every 2 s: under
                // every fault, none may ever differ.
                corrupt_check_interval_secs: 2,
                watch_progress_notify_interval_ms: 1000,
                // Snapshots and log purges happen several times a run, and a
                // node that was away long enough catches up by InstallSnapshot.
                snapshot_after_entries: 200,
                log_kept_after_snapshot: 50,
                ..Config::default()
            };
            let disk = SimDisk::registered(&config.data_dir.join("db"), &placement_center::raft::COLUMN_FAMILIES);
            let config = Arc::new(std::sync::Mutex::new(config));
            let shared = config.clone();
            let node = handle
                .create_node()
                .name(format!("node{id}"))
                .ip(Host::Member(id).ip())
                .init(move || {
                    let config = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    // The node's Raft timers run on its own skewable clock.
                    placement_center::runtime::with_node_clock(id, async move {
                        let listeners = Listeners::bind(&config).await.expect("bind simulated address");
                        start_errors(|r| r.remove(&id));
                        match Server::start(config, listeners).await {
                            Ok(server) => {
                                running(|r| r.insert(id, server.node.clone()));
                                // Runs until the node is killed.
                                futures::future::pending::<()>().await;
                            }
                            Err(e) => {
                                tracing::warn!(node = id, cause = %e, "node did not start");
                                start_errors(|r| r.insert(id, e.to_string()));
                            }
                        }
                    })
                })
                .build();
            nodes.push(SimNode {
                id,
                handle: node,
                disk,
                client_addr: members[&id].client_addr.clone(),
                peer_addr: members[&id].peer_addr.clone(),
                config,
            });
        }
        SimCluster { nodes }
    }

    /// Kills node `id` (its process dies; the disk keeps unsynced writes).
    pub fn kill(&self, id: u64) {
        running(|r| r.remove(&id));
        Handle::current().kill(self.nodes[id as usize - 1].handle.id());
        self.nodes[id as usize - 1].disk.crash();
    }

    /// Kills node `id` with a power loss: a random suffix of unsynced writes is lost.
    pub fn power_loss(&self, id: u64, rng: &mut impl rand::Rng) -> usize {
        running(|r| r.remove(&id));
        Handle::current().kill(self.nodes[id as usize - 1].handle.id());
        self.nodes[id as usize - 1].disk.power_loss(rng)
    }

    /// Kills node `id` with a power loss that loses every unsynced write.
    pub fn power_loss_all(&self, id: u64) -> usize {
        running(|r| r.remove(&id));
        Handle::current().kill(self.nodes[id as usize - 1].handle.id());
        self.nodes[id as usize - 1].disk.power_loss_keeping(0)
    }

    /// Restarts a killed node from its disk.
    pub fn restart(&self, id: u64) {
        Handle::current().restart(self.nodes[id as usize - 1].handle.id());
    }

    /// The slot of the current leader as the running nodes see it (the
    /// highest term wins). Slots are 1..=n; a replaced node keeps its slot
    /// (address, disk) but has a new member id.
    pub fn leader(&self) -> Option<u64> {
        running(|nodes| {
            nodes
                .iter()
                .map(|(slot, n)| (*slot, n.raft.metrics().borrow_watched().clone()))
                .filter(|(_, m)| m.current_leader == Some(m.id) && m.state.is_leader())
                .max_by_key(|(_, m)| m.current_term)
                .map(|(slot, _)| slot)
        })
    }

    /// Replaces the node in `slot` by a new member: kills it, wipes its disk
    /// and restarts it with an empty data dir that joins through `via` (a
    /// client address). The caller removed the old member first.
    pub fn replace(&self, slot: u64, via: String) {
        self.wipe_and_restart_with(slot, |config| {
            config.initial_members.clear();
            config.join = vec![via];
        });
    }

    /// Kills the node in `slot`, wipes its disk and restarts it with its
    /// config unchanged: as the member it was, on an empty data dir.
    pub fn wipe_and_restart(&self, slot: u64) {
        self.wipe_and_restart_with(slot, |_| {});
    }

    /// Kills the node in `slot`, wipes its disk, lets `change` edit its
    /// config, and restarts it.
    fn wipe_and_restart_with(&self, slot: u64, change: impl FnOnce(&mut Config)) {
        let node = &self.nodes[slot as usize - 1];
        running(|r| r.remove(&slot));
        Handle::current().kill(node.handle.id());
        node.disk.wipe();
        change(&mut node.config.lock().unwrap_or_else(|e| e.into_inner()));
        Handle::current().restart(node.handle.id());
    }

    /// Why the node in `slot` failed its last start, if it did.
    pub fn start_error(&self, slot: u64) -> Option<String> {
        start_errors(|r| r.get(&slot).cloned())
    }

    /// Whether the node in `slot` runs and is a voter.
    pub fn is_voter(&self, slot: u64) -> bool {
        running(|r| r.get(&slot).is_some_and(|n| n.is_voter()))
    }

    /// The running Raft node `id`, if it runs.
    pub fn node(&self, id: u64) -> Option<Arc<RaftNode>> {
        running(|r| r.get(&id).cloned())
    }

    /// Proposes `request` on the leader's own simulated node, as a server
    /// call would end up there: `Some(Ok)` applied, `Some(Err)` refused,
    /// `None` unknown (no leader, or it may still apply later).
    pub async fn propose_on_leader(
        &self,
        request: placement_center::proto::raft::v1::command::Request,
    ) -> Option<Result<placement_center::proto::raft::v1::CommandResult, placement_center::state::StateError>> {
        use placement_center::proto::raft::v1::Command;
        let leader = self.leader()?;
        let node = self.node(leader)?;
        let task = self.spawn_on(leader, async move {
            node.propose(Command { auth_revision: None, alarm_disarms: None, request: Some(request) }).await
        });
        match task.await {
            Ok(Ok(result)) => Some(Ok(result)),
            Ok(Err(placement_center::raft::NodeError::Refused(refused))) => Some(Err(refused)),
            _ => None,
        }
    }

    /// Runs `task` on slot `slot`'s simulated host, as a process there would.
    /// Through a handle looked up now: the one kept from creation spawns
    /// onto the host's first life, and after a restart its tasks never run
    /// (every NOSPACE disarm after the leader's host restarted was lost so).
    pub fn spawn_on<F>(&self, slot: u64, task: F) -> madsim::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = &self.nodes[slot as usize - 1].handle;
        match Handle::current().get_node(handle.id()) {
            Some(current) => current.spawn(task),
            None => handle.spawn(task),
        }
    }

    /// Whether node `id` is running with a live Raft (not stopped by a disk error).
    pub fn is_healthy(&self, id: u64) -> bool {
        running(|r| r.get(&id).is_some_and(|n| n.raft.metrics().borrow_watched().running_state.is_ok()))
    }

    /// The encoded log entries of node `id` with index in `from..=to`, read
    /// from its disk (what survives a crash). Only called for indexes the node
    /// applied, which are committed. An entry the corrupt-disk fault damaged
    /// is left out: its checksum fails, so the node cannot read it either.
    pub fn log_entries(&self, id: u64, from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        use placement_center::raft::log_store::CF_LOG;
        use placement_center::storage::{checked, Engine};
        if from > to {
            return Vec::new();
        }
        let disk = &self.nodes[id as usize - 1].disk;
        let end = (to + 1).to_be_bytes();
        disk.scan(CF_LOG, &from.to_be_bytes(), Some(&end), usize::MAX)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| {
                let value = checked::unseal(CF_LOG, &k, v).ok()?;
                Some((u64::from_be_bytes(k.as_slice().try_into().ok()?), value))
            })
            .collect()
    }

    /// Samples every running node's Raft state. A node whose Raft stopped on a
    /// storage error is left out: its metrics are its last in-memory state,
    /// which the failed write never made durable (nor acted upon).
    pub fn sample(&self, at: Duration) -> Vec<Sample> {
        let metrics: Vec<_> = running(|r| {
            r.iter().map(|(slot, n)| (*slot, n.raft.metrics().borrow_watched().clone(), n.removed())).collect()
        });
        metrics
            .into_iter()
            .filter(|(_, m, _)| m.running_state.is_ok())
            .inspect(|(_, m, _)| {
                if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
                    eprintln!("sample {at:?} node {} term {} vote {} state {:?} leader {:?} last_log {:?} applied {:?} membership {:?}", m.id, m.current_term, m.vote, m.state, m.current_leader, m.last_log_index, m.last_applied, m.membership_config.membership());
                }
            })
            .map(|(slot, m, removed)| {
                Sample {
                    at,
                    node: m.id,
                    slot,
                    vote: (m.vote.leader_id.term, m.vote.leader_id.node_id, m.vote.committed),
                    is_leader: m.current_leader == Some(m.id) && m.state.is_leader(),
                    last_log: m.last_log_index.unwrap_or(0),
                    applied: m.last_applied.map_or(0, |id| id.index),
                    purged: m.purged.map_or(0, |id| id.index),
                    member: m.membership_config.membership().get_node(&m.id).is_some(),
                    removed,
                }
            })
            .collect()
    }

    /// Node `id`'s compact revision and its applied events from revision
    /// `from` on (empty if it is not running or `from` is compacted there).
    /// Applied events are committed.
    pub fn applied_events(&self, id: u64, from: i64) -> (i64, Vec<(i64, Vec<placement_center::proto::mvccpb::Event>)>) {
        let Some(node) = running(|r| r.get(&id).cloned()) else { return (0, Vec::new()) };
        let state = placement_center::raft::state_store::read_state(node.state());
        let events = match state.events_from(from) {
            Ok(events) => events.map(|(rev, events)| (*rev, events.clone())).collect(),
            Err(_) => Vec::new(),
        };
        (state.compact_revision(), events)
    }
}
