//! Faults drawn from the seed: one at a time, each held for a random while and
//! then healed, until the run's fault phase ends.

use placement_center::raft::MetricsWatch as _;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use madsim::net::NetSim;
use placement_center::runtime::{self, Instant};
use placement_center::storage::sim_disk::DiskFaults;
use rand::seq::SliceRandom;
use rand::Rng;

use placement_center::proto::etcdserverpb::alarm_request::AlarmAction;
use placement_center::proto::etcdserverpb::{AlarmRequest, AlarmType};
use placement_center::proto::raft::v1::command;
use placement_center::raft::membership::MemberChange;
use placement_center::raft::state_store::read_state;

use crate::cluster::SimCluster;

/// A kind of fault the nemesis can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Split the cluster in two (a minority and a majority), both directions.
    Partition,
    /// Cut the current leader off from everyone.
    IsolateLeader,
    /// Two nodes cannot talk; a third talks to both.
    Bridge,
    /// One direction of one link drops everything.
    OneWayClog,
    /// Kill a node (process crash), restart it later.
    Kill,
    /// Kill the leader, restart it later.
    KillLeader,
    /// Power loss on a node: unsynced writes may be lost; restart later.
    PowerLoss,
    /// EIO on a node's disk writes and syncs; the node is restarted after.
    DiskError,
    /// A node's disk gets slow.
    SlowDisk,
    /// A node's state machine stalls before each write of what it applied
    /// (RocksDB's write stall, while flushes and compactions catch up): its
    /// log keeps up and it goes on voting and acknowledging appends, but it
    /// applies late, so its answers, reads and keepalives wait.
    WriteStall,
    /// Random packet loss on every link.
    PacketLoss,
    /// Much higher network latency.
    LatencySpike,
    /// A node's clock jumps forward and runs fast or slow (Raft timers only).
    ClockSkew,
    /// A follower is cut off long enough for the leader to snapshot and purge
    /// the log past it: it must catch up by InstallSnapshot.
    LagBehind,
    /// The leader hands leadership to a random other voter (etcd's
    /// MoveLeader): writes, reads and heartbeats pause during the transfer.
    MoveLeader,
    /// A follower is removed from the cluster, its data dir wiped, and it
    /// comes back as a new member: joins as a learner, catches up (by
    /// snapshot once the log was purged), is promoted. Half the time it is
    /// down while removed (a learner not yet promoted, if there is one) and
    /// first restarts on its old data dir, where nobody tells it of its
    /// removal: it must learn it from its peers within 20 s (the robustness
    /// suite found such a member left running).
    Replace,
    /// Forged Raft messages to a follower: without the token, replication in
    /// a non-leader's name, a snapshot that does not decode and a chunk far
    /// past the end in the leader's name. Each must be refused (see `forgery`).
    ForgePeer,
    /// The NOSPACE alarm is raised (as a member past its space quota does)
    /// and disarmed after a while: meanwhile no write that grows the store
    /// may succeed (see `check_nospace`).
    NoSpace,
    /// A node's device fills up: mostly to within the space a member keeps
    /// free (it must raise NOSPACE itself, see `check_nospace`), sometimes
    /// to a random point within its next 64 KiB of writes (the write that
    /// reaches it, whichever it is, fails with ENOSPC, which stops its Raft:
    /// it is restarted once the device has room again).
    /// Then room is made and the alarm disarmed.
    DiskFull,
    /// A started follower's disk is wiped and it is restarted as itself
    /// (same id, same config): it must refuse to start ("already
    /// bootstrapped"), since with an empty log it would vote and acknowledge
    /// as if it held what it had acknowledged. Then it is removed and comes
    /// back as a new member, as the refusal tells the operator to do.
    WipeRestart,
    /// A majority of the nodes, or all of them, lose power at once (a rack
    /// outage): each loses its unsynced writes, and they come back together
    /// or one after another. Nothing acknowledged may be lost.
    PowerLossMany,
    /// A node's tasks are frozen (a process stopped, a VM descheduled, a long
    /// GC pause) while the others go on, then resumed with its old view of
    /// time and leadership: a leader paused past its lease must not serve
    /// from it (etcd's stale read #20418 was of this kind).
    Pause,
    /// Swizzle-clog (FoundationDB): links among a few nodes are clogged one
    /// by one, then unclogged in another random order.
    SwizzleClog,
    /// A stopped follower's disk damages one record (a flipped bit, a torn
    /// value, a misdirected write) and it restarts: the damage must be caught
    /// by the record's checksum, never served or replicated. A record read at
    /// open (state, bookkeeping) must stop the start; a log entry may lie
    /// unread. Then it is removed and comes back as a new member, as the
    /// refusal tells the operator to do.
    CorruptDisk,
    /// Every node is restarted in turn (an operator's upgrade): killed,
    /// started again after a moment, and given a few seconds to rejoin
    /// before the next one goes.
    RollingRestart,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 25] = [
        FaultKind::Partition,
        FaultKind::IsolateLeader,
        FaultKind::Bridge,
        FaultKind::OneWayClog,
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::PowerLoss,
        FaultKind::DiskError,
        FaultKind::SlowDisk,
        FaultKind::WriteStall,
        FaultKind::PacketLoss,
        FaultKind::LatencySpike,
        FaultKind::ClockSkew,
        FaultKind::LagBehind,
        FaultKind::MoveLeader,
        FaultKind::Replace,
        FaultKind::ForgePeer,
        FaultKind::NoSpace,
        FaultKind::DiskFull,
        FaultKind::WipeRestart,
        FaultKind::PowerLossMany,
        FaultKind::Pause,
        FaultKind::SwizzleClog,
        FaultKind::CorruptDisk,
        FaultKind::RollingRestart,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::IsolateLeader => "isolate-leader",
            FaultKind::Bridge => "bridge",
            FaultKind::OneWayClog => "one-way-clog",
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::PowerLoss => "power-loss",
            FaultKind::DiskError => "disk-error",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::WriteStall => "write-stall",
            FaultKind::PacketLoss => "packet-loss",
            FaultKind::LatencySpike => "latency-spike",
            FaultKind::ClockSkew => "clock-skew",
            FaultKind::LagBehind => "lag-behind",
            FaultKind::MoveLeader => "move-leader",
            FaultKind::Replace => "replace",
            FaultKind::ForgePeer => "forge-peer",
            FaultKind::NoSpace => "nospace",
            FaultKind::DiskFull => "disk-full",
            FaultKind::WipeRestart => "wipe-restart",
            FaultKind::PowerLossMany => "power-loss-many",
            FaultKind::Pause => "pause",
            FaultKind::SwizzleClog => "swizzle-clog",
            FaultKind::CorruptDisk => "corrupt-disk",
            FaultKind::RollingRestart => "rolling-restart",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        FaultKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown fault {s:?}; known: {}", names.join(", "))
        })
    }
}

/// What the nemesis did, for the report and the trace hash.
#[derive(Debug, Default)]
pub struct NemesisLog {
    /// Each event with its virtual time.
    pub events: Vec<String>,
    /// How many times each fault kind was injected.
    pub counts: BTreeMap<FaultKind, u32>,
    /// Times (since the start) when some node's clock was skewed: leases may
    /// end early then, by design.
    pub skewed: Vec<(Duration, Duration)>,
    /// (NOSPACE raise acknowledged, disarm proposed), since the start: no
    /// write that grows the store may succeed within.
    pub nospace: Vec<(Duration, Duration)>,
    /// A disarm's outcome was unknown (it may apply inside a later window):
    /// no window is recorded after it.
    pub nospace_unsure: bool,
    /// Nodes that reported ready when they could not be (an isolated leader).
    pub health_violations: Vec<String>,
}

impl NemesisLog {
    fn note(&mut self, start: Instant, what: String) {
        let event = format!("[{:>8.3}s] {what}", (runtime::now() - start).as_secs_f64());
        // A run that panics never prints its log: with PLACEMENT_SIM_DEBUG
        // each event is printed as it happens.
        if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
            eprintln!("nemesis {event}");
        }
        self.events.push(event);
    }
}

fn millis(rng: &mut impl Rng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.gen_range(range))
}

/// [`FaultKind::DiskFull`] on `victim` for `hold`.
async fn disk_full(
    cluster: &SimCluster,
    victim: u64,
    hold: Duration,
    start: Instant,
    until: Instant,
    log: &mut NemesisLog,
) {
    use placement_center::api::context::DISK_RESERVE_BYTES;
    let disk = &cluster.nodes[victim as usize - 1].disk;
    // Tight: the device fills at a random point within the next 64 KiB of
    // writes (a log append, an apply, a snapshot, a vote), with ENOSPC.
    let tight = runtime::rng().gen_bool(0.25);
    let room = if tight { runtime::rng().gen_range(0..64 * 1024) } else { DISK_RESERVE_BYTES - 256 * 1024 };
    let capacity = disk.used_bytes() + room;
    log.note(start, format!("disk of {victim} full but {room} bytes for {hold:?}"));
    disk.set_faults(DiskFaults { capacity: Some(capacity), ..Default::default() });
    // When the alarm is seen applied on the victim, every write
    // proposed after must be refused. Only a raise seen after the victim's
    // state showed no alarm counts: a victim just restarted may not yet have
    // applied the disarm of an earlier alarm (seed 41541: restarted at
    // 26.77 s, its old alarm disarmed at 26.78 s and still applied on it at
    // 27.17 s, when writes were rightly taken again).
    let mut raised_at = None;
    let mut seen_clear = false;
    let held_until = runtime::now() + hold;
    while runtime::now() < held_until {
        let raised = cluster.node(victim).map(|n| read_state(n.state()).out_of_space());
        seen_clear |= raised == Some(false);
        if raised_at.is_none() && seen_clear && raised == Some(true) {
            raised_at = Some(runtime::now() - start);
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    disk.set_faults(DiskFaults::default());
    let disarming_at = runtime::now() - start;
    if !cluster.is_healthy(victim) {
        cluster.kill(victim);
        cluster.restart(victim);
        log.note(start, format!("room again on {victim}, stopped on ENOSPC and restarted"));
    } else {
        log.note(start, format!("room again on {victim}; NOSPACE seen at {raised_at:?}"));
    }
    if let Some(raised_at) = raised_at {
        if !log.nospace_unsure {
            log.nospace.push((raised_at, disarming_at));
        }
    } else if !tight && seen_clear && hold >= Duration::from_secs(3) {
        log.health_violations
            .push(format!("disk-full: {victim} had {room} bytes of room for {hold:?} and never raised NOSPACE"));
    }
    disarm_nospace(cluster, victim, start, until, log).await;
}

/// Whether every member is a running voter of an applied, settled
/// membership (as `leader` sees it): then the others stay a quorum while one
/// is down, as an operator's cluster must for it to be removed. A joint
/// config would need the victim for a quorum of its old half.
fn settled_voters(cluster: &SimCluster, leader: &placement_center::raft::RaftNode) -> bool {
    let n = cluster.nodes.len() as u64;
    let members = leader.members();
    let all_voters = members.len() as u64 == n && members.iter().all(|(_, m, learner)| !learner && m.started);
    let settled = {
        let metrics = leader.raft.metrics().borrow_watched().clone();
        let config = &metrics.membership_config;
        config.membership().get_joint_config().len() == 1 && config.log_id() <= &metrics.last_applied
    };
    all_voters && settled && (1..=n).all(|slot| cluster.is_voter(slot))
}

/// `victim`, removed while down, restarts on its old data dir: nobody sends
/// it its removal, and it must learn it from its peers within 20 s.
async fn learns_removal(cluster: &SimCluster, victim: u64, start: Instant, log: &mut NemesisLog) {
    cluster.restart(victim);
    let deadline = runtime::now() + Duration::from_secs(20);
    while runtime::now() < deadline {
        if cluster.node(victim).is_some_and(|node| node.removed()) {
            log.note(start, format!("{victim}, removed while down, learned it"));
            return;
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    // Only a member that knows itself a member can learn otherwise: one that
    // joined and went down before it held the membership naming it restarts
    // with none (a learner that holds nothing and serves nothing).
    let knows_itself = cluster.node(victim).is_some_and(|node| {
        node.raft.metrics().borrow_watched().membership_config.membership().get_node(&node.id).is_some()
    });
    if knows_itself {
        log.health_violations.push(format!("replace: {victim}, removed while down, did not learn it in 20 s"));
    } else {
        log.note(start, format!("{victim}, removed while down, restarted without a membership naming it"));
    }
}

/// A random follower (its slot and member id) that may go down for good
/// until it is replaced: every member is a running voter of a settled
/// membership (see [`settled_voters`]). `None`: no leader, or not settled.
fn follower_of_settled_voters(cluster: &SimCluster) -> Option<(u64, u64)> {
    let n = cluster.nodes.len() as u64;
    let leader = cluster.leader()?;
    let victim = (leader + runtime::rng().gen_range(0..n - 1)) % n + 1;
    let (leader_node, victim_node) = (cluster.node(leader)?, cluster.node(victim)?);
    settled_voters(cluster, &leader_node).then_some((victim, victim_node.id))
}

/// See [`FaultKind::WipeRestart`].
async fn wipe_restart(cluster: &SimCluster, start: Instant, log: &mut NemesisLog) {
    let Some((victim, old_id)) = follower_of_settled_voters(cluster) else { return };
    log.note(start, format!("wipe {victim} (member {old_id:x}) and restart it as itself"));
    cluster.wipe_and_restart(victim);
    // Its peers answer within 2 s whether they know it as started.
    runtime::sleep(Duration::from_secs(4)).await;
    if cluster.node(victim).is_some() {
        log.health_violations.push(format!("wipe-restart: {victim} (member {old_id:x}) started on a wiped data dir"));
        return;
    }
    log.note(start, format!("{victim} refused to start on its wiped data dir"));
    remove_and_rejoin(cluster, victim, old_id, start, log, "wipe-restart").await;
}

/// Removes member `old_id` of the stopped `victim`, then restarts `victim`
/// on an empty data dir to join as a new member (what an operator does with
/// a member that cannot start on its data).
async fn remove_and_rejoin(
    cluster: &SimCluster,
    victim: u64,
    old_id: u64,
    start: Instant,
    log: &mut NemesisLog,
    fault: &str,
) {
    // Until it is removed it stays down: retry (another change may be in
    // progress, the leader may move) until the removal applies.
    let deadline = runtime::now() + Duration::from_secs(60);
    while runtime::now() < deadline {
        let leader = cluster.leader();
        let Some((leader, leader_node)) = leader.and_then(|l| cluster.node(l).map(|n| (l, n))) else {
            runtime::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if leader_node.member(old_id).is_none() {
            cluster.replace(victim, cluster.nodes[leader as usize - 1].client_addr.clone());
            log.note(start, format!("{victim} removed, and restarted to join as a new member"));
            return;
        }
        let task = cluster.spawn_on(leader, async move {
            leader_node.change_members(MemberChange::Remove(old_id)).await.map_err(|e| e.to_string())
        });
        if let Ok(Err(e)) = task.await {
            log.note(start, format!("{fault} {victim}: remove refused or failed: {e}; retrying"));
        }
        runtime::sleep(Duration::from_millis(500)).await;
    }
    log.health_violations.push(format!("{fault}: member {old_id:x} of {victim} could not be removed in 60 s"));
}

/// See [`FaultKind::CorruptDisk`].
async fn corrupt_disk(cluster: &SimCluster, start: Instant, log: &mut NemesisLog) {
    use placement_center::raft::log_store::{CF_LOG, CF_META};
    use placement_center::storage::sim_disk::DamageKind;
    let Some((victim, old_id)) = follower_of_settled_voters(cluster) else { return };
    let kind = *[DamageKind::BitFlip, DamageKind::Torn, DamageKind::Misdirected]
        .choose(&mut runtime::rng())
        .expect("three kinds");
    cluster.kill(victim);
    let Some(damage) = cluster.nodes[victim as usize - 1].disk.damage(kind, &mut runtime::rng()) else {
        cluster.restart(victim);
        return;
    };
    log.note(start, format!("damage {victim}'s disk ({damage}) and restart it"));
    cluster.restart(victim);
    runtime::sleep(Duration::from_secs(4)).await;
    let refusal = cluster.start_error(victim);
    match (cluster.node(victim).is_some(), refusal) {
        (false, Some(refusal)) if refusal.contains("corrupt data") => {
            log.note(start, format!("{victim} refused to start: the damage was caught"));
        }
        (false, refusal) => {
            log.health_violations
                .push(format!("corrupt-disk: {victim} did not start, not for the damage: {refusal:?}"));
        }
        // The log is read from where the state machine stands, and its
        // bookkeeping lazily: a damaged record there may lie unread (and
        // fails the read that reaches it).
        (true, _) if damage.cf == CF_LOG || damage.cf == CF_META => {
            log.note(start, format!("{victim} started: the damaged {} record was not read", damage.cf));
        }
        (true, _) => {
            log.health_violations
                .push(format!("corrupt-disk: {victim} started on a damaged record read at open ({damage})"));
        }
    }
    cluster.kill(victim);
    remove_and_rejoin(cluster, victim, old_id, start, log, "corrupt-disk").await;
}

/// Disarms `member`'s NOSPACE alarm, retrying until it applies or 20 s past
/// `until`; an unknown outcome marks the log `nospace_unsure`.
async fn disarm_nospace(cluster: &SimCluster, member: u64, start: Instant, until: Instant, log: &mut NemesisLog) {
    let disarm = command::Request::Alarm(AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: member,
        alarm: AlarmType::Nospace as i32,
    });
    let disarm_until = until + Duration::from_secs(20);
    loop {
        let disarmed = cluster.propose_on_leader(disarm.clone()).await;
        log.note(start, format!("disarm NOSPACE for {member}: {:?}", disarmed.as_ref().map(|r| r.is_ok())));
        match disarmed {
            Some(Ok(_)) => break,
            None => log.nospace_unsure = true,
            Some(Err(_)) => {}
        }
        if runtime::now() >= disarm_until {
            break;
        }
        runtime::sleep(Duration::from_millis(300)).await;
    }
}

/// Cuts every link in `links` in both directions for `hold`, then restores them.
async fn cut_both_ways(
    net: &NetSim,
    links: &[(u64, u64)],
    sim_id: impl Fn(u64) -> madsim::task::NodeId,
    hold: Duration,
) {
    set_both_ways(net, links, &sim_id, true);
    runtime::sleep(hold).await;
    set_both_ways(net, links, &sim_id, false);
}

/// Clogs (`clogged`) or unclogs every link in `links`, both directions.
fn set_both_ways(net: &NetSim, links: &[(u64, u64)], sim_id: impl Fn(u64) -> madsim::task::NodeId, clogged: bool) {
    for (a, b) in links {
        for (from, to) in [(sim_id(*a), sim_id(*b)), (sim_id(*b), sim_id(*a))] {
            if clogged {
                net.clog_link(from, to);
            } else {
                net.unclog_link(from, to);
            }
        }
    }
}

/// Injects faults of `kinds` until `until`, logging each.
pub async fn run(cluster: &SimCluster, kinds: &[FaultKind], start: Instant, until: Instant, log: &mut NemesisLog) {
    if kinds.is_empty() {
        runtime::sleep(until.saturating_duration_since(runtime::now())).await;
        return;
    }
    let n = cluster.nodes.len() as u64;
    let net = NetSim::current();
    let sim_id = |id: u64| cluster.nodes[id as usize - 1].handle.id();
    while runtime::now() < until {
        let (kind, hold, pause) = {
            let mut rng = runtime::rng();
            (
                *kinds.choose(&mut rng).expect("kinds is not empty"),
                millis(&mut rng, 500..4000),
                millis(&mut rng, 200..2000),
            )
        };
        runtime::sleep(pause).await;
        if runtime::now() >= until {
            break;
        }
        let random_node = || runtime::rng().gen_range(1..=n);
        *log.counts.entry(kind).or_default() += 1;
        match kind {
            FaultKind::Partition => {
                let mut ids: Vec<u64> = (1..=n).collect();
                ids.shuffle(&mut runtime::rng());
                let minority_size = runtime::rng().gen_range(1..=(n as usize - 1) / 2);
                let (minority, majority) = ids.split_at(minority_size);
                log.note(start, format!("partition {minority:?} | {majority:?} for {hold:?}"));
                let links: Vec<(u64, u64)> =
                    minority.iter().flat_map(|a| majority.iter().map(move |b| (*a, *b))).collect();
                cut_both_ways(&net, &links, sim_id, hold).await;
                log.note(start, "healed partition".into());
            }
            FaultKind::LagBehind => {
                let Some(leader) = cluster.leader() else { continue };
                let follower = (leader % n) + 1;
                let away = millis(&mut runtime::rng(), 6000..12_000);
                log.note(start, format!("cut off follower {follower} for {away:?}"));
                net.clog_node(sim_id(follower));
                runtime::sleep(away).await;
                net.unclog_node(sim_id(follower));
                log.note(start, format!("reconnected {follower}"));
            }
            FaultKind::MoveLeader => {
                let Some(leader) = cluster.leader() else { continue };
                let target = (leader + runtime::rng().gen_range(0..n - 1)) % n + 1;
                let Some(node) = cluster.node(leader) else { continue };
                // Sometimes the caller gives up halfway, as a MoveLeader
                // client whose deadline passes does: the transfer is dropped.
                let give_up = runtime::rng().gen_bool(0.3).then(|| millis(&mut runtime::rng(), 20..1500));
                log.note(start, format!("move leader {leader} -> {target} (caller gives up after {give_up:?})"));
                // On the leader's own simulated node, as its API would run it.
                let task = cluster.spawn_on(leader, async move {
                    let transfer = node.transfer_leadership(target);
                    match give_up {
                        None => Some(transfer.await.map_err(|e| e.to_string())),
                        Some(after) => {
                            runtime::timeout(after, transfer).await.ok().map(|r| r.map_err(|e| e.to_string()))
                        }
                    }
                });
                let outcome = match task.await {
                    Ok(Some(Ok(()))) => "done".to_string(),
                    Ok(Some(Err(e))) => format!("failed: {e}"),
                    Ok(None) => "cancelled by the caller".to_string(),
                    Err(_) => "interrupted (node killed)".to_string(),
                };
                log.note(start, format!("move leader {leader} -> {target}: {outcome}"));
            }
            FaultKind::Replace => {
                let Some(leader) = cluster.leader() else { continue };
                // A member still a learner (replaced, not yet promoted) is
                // the one a leader stops sending to once it is removed.
                let learner = (1..=n).find(|slot| cluster.node(*slot).is_some_and(|node| !node.is_voter()));
                let down_while_removed = runtime::rng().gen_bool(0.5);
                let victim = match learner {
                    Some(learner) if down_while_removed => learner,
                    _ => (leader + runtime::rng().gen_range(0..n - 1)) % n + 1,
                };
                let (Some(leader_node), Some(victim_node)) = (cluster.node(leader), cluster.node(victim)) else {
                    continue;
                };
                let old_id = victim_node.id;
                // Down while removed only when the others stay a quorum.
                let missed = down_while_removed && (learner == Some(victim) || settled_voters(cluster, &leader_node));
                if missed {
                    log.note(start, format!("replace {victim}: down while member {old_id:x} is removed"));
                    cluster.kill(victim);
                } else {
                    log.note(start, format!("replace {victim}: remove member {old_id:x}"));
                }
                let task = cluster.spawn_on(leader, async move {
                    leader_node.change_members(MemberChange::Remove(old_id)).await.map_err(|e| e.to_string())
                });
                match task.await {
                    Ok(Ok(_)) => {
                        if missed {
                            learns_removal(cluster, victim, start, log).await;
                        }
                        cluster.replace(victim, cluster.nodes[leader as usize - 1].client_addr.clone());
                        log.note(start, format!("{victim} wiped and restarted to join as a new member"));
                    }
                    Ok(Err(e)) => log.note(start, format!("replace {victim}: remove refused or failed: {e}")),
                    Err(_) => log.note(start, format!("replace {victim}: interrupted (leader killed)")),
                }
                if missed && cluster.node(victim).is_none() {
                    cluster.restart(victim); // not removed after all
                }
            }
            FaultKind::WipeRestart => wipe_restart(cluster, start, log).await,
            FaultKind::CorruptDisk => corrupt_disk(cluster, start, log).await,
            FaultKind::RollingRestart => {
                let mut order: Vec<u64> = (1..=n).collect();
                order.shuffle(&mut runtime::rng());
                log.note(start, format!("rolling restart in the order {order:?}"));
                for slot in order {
                    cluster.kill(slot);
                    runtime::sleep(millis(&mut runtime::rng(), 100..1500)).await;
                    cluster.restart(slot);
                    // As an operator's script waits for the member to be back.
                    let back_by = runtime::now() + Duration::from_secs(5);
                    while runtime::now() < back_by && !cluster.is_healthy(slot) {
                        runtime::sleep(Duration::from_millis(200)).await;
                    }
                    runtime::sleep(millis(&mut runtime::rng(), 500..2000)).await;
                }
                log.note(start, "rolling restart done".into());
            }
            FaultKind::PowerLossMany => {
                let mut ids: Vec<u64> = (1..=n).collect();
                ids.shuffle(&mut runtime::rng());
                let count = runtime::rng().gen_range(n as usize / 2 + 1..=n as usize);
                let victims = &ids[..count];
                let lost: Vec<usize> =
                    victims.iter().map(|victim| cluster.power_loss(*victim, &mut runtime::rng())).collect();
                let together = runtime::rng().gen_bool(0.5);
                log.note(
                    start,
                    format!(
                        "power loss on {victims:?} at once ({lost:?} unsynced batches lost), restart {} after {hold:?}",
                        if together { "together" } else { "one by one" }
                    ),
                );
                runtime::sleep(hold).await;
                for victim in victims {
                    cluster.restart(*victim);
                    if !together {
                        runtime::sleep(millis(&mut runtime::rng(), 100..1500)).await;
                    }
                }
                log.note(start, format!("restarted {victims:?}"));
            }
            FaultKind::Pause => {
                // The leader half the time: the one whose stale view matters.
                let victim = match cluster.leader() {
                    Some(leader) if runtime::rng().gen_bool(0.5) => leader,
                    _ => random_node(),
                };
                log.note(start, format!("pause {victim} for {hold:?}"));
                madsim::runtime::Handle::current().pause(sim_id(victim));
                runtime::sleep(hold).await;
                madsim::runtime::Handle::current().resume(sim_id(victim));
                log.note(start, format!("resumed {victim}"));
            }
            FaultKind::SwizzleClog => {
                let mut ids: Vec<u64> = (1..=n).collect();
                ids.shuffle(&mut runtime::rng());
                let count = runtime::rng().gen_range(2..=n as usize);
                let chosen = ids[..count].to_vec();
                let mut links: Vec<(u64, u64)> =
                    chosen.iter().flat_map(|a| chosen.iter().filter(move |b| *b != a).map(move |b| (*a, *b))).collect();
                links.shuffle(&mut runtime::rng());
                log.note(start, format!("swizzle-clog among {chosen:?}: {} links, one by one", links.len()));
                for (from, to) in &links {
                    net.clog_link(sim_id(*from), sim_id(*to));
                    runtime::sleep(millis(&mut runtime::rng(), 50..400)).await;
                }
                runtime::sleep(hold / 2).await;
                links.shuffle(&mut runtime::rng());
                for (from, to) in &links {
                    net.unclog_link(sim_id(*from), sim_id(*to));
                    runtime::sleep(millis(&mut runtime::rng(), 50..400)).await;
                }
                log.note(start, "swizzle-clog: every link unclogged".into());
            }
            FaultKind::ForgePeer => {
                let Some(leader) = cluster.leader() else { continue };
                let target = (leader % n) + 1;
                let (Some(leader_node), Some(target_node)) = (cluster.node(leader), cluster.node(target)) else {
                    continue;
                };
                let forgery = crate::forgery::Forgery {
                    peer_addr: cluster.nodes[target as usize - 1].peer_addr.clone(),
                    cluster_id: target_node.cluster_id(),
                    token: target_node.cluster_token().to_vec(),
                    leader: leader_node.id,
                    term: leader_node.term(),
                    other: target_node.id,
                };
                log.note(start, format!("forge raft messages to {target}"));
                // Sent from the leader's simulated host, as a process there could.
                let task = cluster.spawn_on(leader, crate::forgery::forge(forgery));
                let outcome = task.await.unwrap_or_else(|_| "interrupted (host killed)".to_string());
                log.note(start, format!("forged messages to {target}: {outcome}"));
            }
            FaultKind::NoSpace => {
                let Some(leader) = cluster.leader() else { continue };
                let alarm = |action: AlarmAction| {
                    command::Request::Alarm(AlarmRequest {
                        action: action as i32,
                        member_id: leader,
                        alarm: AlarmType::Nospace as i32,
                    })
                };
                let raised = cluster.propose_on_leader(alarm(AlarmAction::Activate)).await.map(|r| r.is_ok());
                let raised_at = runtime::now() - start;
                log.note(start, format!("raise NOSPACE for {leader}: {raised:?}"));
                runtime::sleep(hold.min(Duration::from_secs(2))).await;
                let disarming_at = runtime::now() - start;
                let unsure_before = log.nospace_unsure;
                disarm_nospace(cluster, leader, start, until, log).await;
                if raised == Some(true) && !unsure_before {
                    log.nospace.push((raised_at, disarming_at));
                }
            }
            FaultKind::DiskFull => {
                let victim = random_node();
                // Boxed: inline, its state made the nemesis future overflow
                // a debug build's thread stack.
                Box::pin(disk_full(cluster, victim, hold, start, until, log)).await;
            }
            FaultKind::IsolateLeader => {
                let Some(leader) = cluster.leader() else { continue };
                // Half the time from its peers only: its clients still
                // reach it (regression seed 238's shape: a leader cut off
                // acknowledged keepalives the new leader never saw), for
                // long enough that the others elect and a lease TTL (3 s)
                // runs out there.
                let peers_only = runtime::rng().gen_bool(0.5);
                let links: Vec<(u64, u64)> = (1..=n).filter(|p| *p != leader).map(|p| (leader, p)).collect();
                let hold = if peers_only {
                    let hold = millis(&mut runtime::rng(), 3000..8000);
                    log.note(start, format!("cut leader {leader} off from its peers for {hold:?}"));
                    set_both_ways(&net, &links, sim_id, true);
                    hold
                } else {
                    log.note(start, format!("isolate leader {leader} for {hold:?}"));
                    net.clog_node(sim_id(leader));
                    hold
                };
                runtime::sleep(hold).await;
                // Cut off for over twice the longest election timeout, it
                // must no longer call itself ready (it is still its own leader).
                if let Some(node) = cluster.node(leader) {
                    let limit = node.election_timeout().1 * 2;
                    let ready = placement_center::api::health::not_ready(&node).is_none();
                    if hold > limit && node.leader() == Some(node.id) && ready {
                        log.health_violations
                            .push(format!("health: leader {leader}, isolated for {hold:?}, still reported ready"));
                    }
                }
                if peers_only {
                    set_both_ways(&net, &links, sim_id, false);
                } else {
                    net.unclog_node(sim_id(leader));
                }
                log.note(start, format!("unisolated {leader}"));
            }
            FaultKind::Bridge => {
                let mut ids: Vec<u64> = (1..=n).collect();
                ids.shuffle(&mut runtime::rng());
                let (bridge, rest) = ids.split_first().expect("nodes");
                let (left, right) = rest.split_at(rest.len() / 2);
                log.note(start, format!("bridge {bridge} between {left:?} and {right:?} for {hold:?}"));
                let links: Vec<(u64, u64)> = left.iter().flat_map(|a| right.iter().map(move |b| (*a, *b))).collect();
                cut_both_ways(&net, &links, sim_id, hold).await;
                log.note(start, "healed bridge".into());
            }
            FaultKind::OneWayClog => {
                let from = random_node();
                let to = (from % n) + 1;
                log.note(start, format!("clog {from} -> {to} for {hold:?}"));
                net.clog_link(sim_id(from), sim_id(to));
                runtime::sleep(hold).await;
                net.unclog_link(sim_id(from), sim_id(to));
                log.note(start, format!("unclogged {from} -> {to}"));
            }
            FaultKind::Kill | FaultKind::KillLeader => {
                let victim = if kind == FaultKind::KillLeader { cluster.leader() } else { Some(random_node()) };
                let Some(victim) = victim else { continue };
                log.note(start, format!("kill {victim}, restart after {hold:?}"));
                cluster.kill(victim);
                runtime::sleep(hold).await;
                cluster.restart(victim);
                log.note(start, format!("restarted {victim}"));
            }
            FaultKind::PowerLoss => {
                let victim = random_node();
                let lost = cluster.power_loss(victim, &mut runtime::rng());
                log.note(
                    start,
                    format!("power loss on {victim} ({lost} unsynced batches lost), restart after {hold:?}"),
                );
                runtime::sleep(hold).await;
                cluster.restart(victim);
                log.note(start, format!("restarted {victim}"));
            }
            FaultKind::DiskError => {
                let victim = random_node();
                let disk = &cluster.nodes[victim as usize - 1].disk;
                log.note(start, format!("disk EIO on {victim} for {hold:?}"));
                disk.set_faults(DiskFaults { fail_writes: true, fail_syncs: true, ..Default::default() });
                runtime::sleep(hold).await;
                disk.set_faults(DiskFaults::default());
                if !cluster.is_healthy(victim) {
                    // A storage error stops Raft for good: the process is restarted.
                    cluster.kill(victim);
                    cluster.restart(victim);
                    log.note(start, format!("disk healed; {victim} stopped on EIO and was restarted"));
                } else {
                    log.note(start, format!("disk healed on {victim}"));
                }
            }
            FaultKind::SlowDisk => {
                let victim = random_node();
                let latency = millis(&mut runtime::rng(), 5..80);
                let disk = &cluster.nodes[victim as usize - 1].disk;
                log.note(start, format!("slow disk on {victim} ({latency:?} per I/O) for {hold:?}"));
                disk.set_faults(DiskFaults { latency, ..Default::default() });
                runtime::sleep(hold).await;
                disk.set_faults(DiskFaults::default());
                log.note(start, format!("disk fast again on {victim}"));
            }
            FaultKind::WriteStall => {
                let victim = random_node();
                let write_stall = millis(&mut runtime::rng(), 50..1500);
                let disk = &cluster.nodes[victim as usize - 1].disk;
                log.note(start, format!("write stall on {victim} ({write_stall:?} per apply) for {hold:?}"));
                disk.set_faults(DiskFaults { write_stall, ..Default::default() });
                runtime::sleep(hold).await;
                disk.set_faults(DiskFaults::default());
                log.note(start, format!("writes flow again on {victim}"));
            }
            FaultKind::PacketLoss => {
                let rate = runtime::rng().gen_range(0.02..0.2);
                log.note(start, format!("packet loss {rate:.3} for {hold:?}"));
                net.update_config(|c| c.packet_loss_rate = rate);
                runtime::sleep(hold).await;
                net.update_config(|c| c.packet_loss_rate = 0.0);
                log.note(start, "packet loss healed".into());
            }
            FaultKind::ClockSkew => {
                let victim = random_node();
                let (jump, rate) = {
                    let mut rng = runtime::rng();
                    (
                        millis(&mut rng, 0..3000),
                        if rng.gen_bool(0.5) { rng.gen_range(0.5..0.95) } else { rng.gen_range(1.05..2.0) },
                    )
                };
                log.note(start, format!("clock of {victim} jumps {jump:?} and runs at {rate:.2}x for {hold:?}"));
                runtime::skew_clock(victim, jump, rate);
                let skewed_from = runtime::now() - start;
                runtime::sleep(hold).await;
                runtime::skew_clock(victim, Duration::ZERO, 1.0);
                // A clock that ran fast keeps the deadlines it set: excuse a TTL more.
                log.skewed.push((skewed_from, runtime::now() - start + Duration::from_secs(10)));
                log.note(start, format!("clock of {victim} back to true rate"));
            }
            FaultKind::LatencySpike => {
                let high = millis(&mut runtime::rng(), 50..400);
                log.note(start, format!("latency up to {high:?} for {hold:?}"));
                net.update_config(|c| c.send_latency = Duration::from_millis(1)..high);
                runtime::sleep(hold).await;
                net.update_config(|c| c.send_latency = Duration::from_millis(1)..Duration::from_millis(10));
                log.note(start, "latency healed".into());
            }
        }
    }
}
