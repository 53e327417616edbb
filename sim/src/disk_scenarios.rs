//! Regression scenarios for failing disks: a NOSPACE alarm raised again
//! after its disarm, and members whose disk fails every write and sync (EIO)
//! (see `scenarios` for why scenarios, not seeds).

use std::time::Duration;

use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::PutResponse;
use placement_center::runtime;

use crate::cluster::SimCluster;
use crate::run::wait_for;
use crate::scenarios::{scenario_client, scenario_put, simulate, three_nodes_led, until_it_succeeds};

/// Rounds of `nospace_raised_after_its_disarm`.
const NOSPACE_ROUNDS: u32 = 12;

/// Soak seed 100668's bug class: a member's disk fills and it raises
/// NOSPACE; room comes back and the operator disarms at once. A write on
/// that member, refused by a free-space reading cached from before the room
/// came back, raised the alarm again after the disarm, and it stayed raised
/// (every write and broker heartbeat failed until the end of the run).
/// Each round fills the victim's disk while a client writes through it,
/// waits for the alarm, frees the disk and disarms 5 ms later than the last
/// round; the alarm must stay down.
pub(crate) fn nospace_raised_after_its_disarm() -> Vec<String> {
    use placement_center::proto::etcdserverpb::alarm_request::AlarmAction;
    use placement_center::proto::etcdserverpb::{AlarmRequest, AlarmType};
    use placement_center::raft::state_store::read_state;
    use placement_center::storage::sim_disk::DiskFaults;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Arc;
    const NAME: &str = "nospace-raised-after-its-disarm";
    simulate(|| async {
        let (cluster, leader) = match three_nodes_led(NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let victim = leader % 3 + 1;
        let raised = |cluster: &SimCluster| {
            cluster.leader().and_then(|l| cluster.node(l)).is_some_and(|node| {
                read_state(node.state())
                    .alarms()
                    .iter()
                    .any(|a| a.member_id == victim && a.alarm == AlarmType::Nospace as i32)
            })
        };
        // A client writes through the victim every 2 ms.
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicU32::new(0));
        let client = scenario_client();
        let addr = cluster.nodes[victim as usize - 1].client_addr.clone();
        let (writing, counted) = (stop.clone(), acknowledged.clone());
        let writer = client.spawn(async move {
            let mut kv = KvClient::new(crate::channel(&addr));
            let mut i = 0u32;
            while !writing.load(Ordering::Relaxed) {
                i += 1;
                if let Ok(Ok(_)) = runtime::timeout(Duration::from_millis(500), kv.put(scenario_put(i))).await {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                runtime::sleep(Duration::from_millis(2)).await;
            }
        });
        let disk = cluster.nodes[victim as usize - 1].disk.clone();
        let disarm = placement_center::proto::raft::v1::command::Request::Alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: victim,
            alarm: AlarmType::Nospace as i32,
        });
        let mut violations = Vec::new();
        for round in 1..=NOSPACE_ROUNDS {
            let room = placement_center::api::context::DISK_RESERVE_BYTES - 256 * 1024;
            disk.set_faults(DiskFaults { capacity: Some(disk.used_bytes() + room), ..Default::default() });
            if !wait_for(Duration::from_secs(5), || raised(&cluster)).await {
                violations.push(format!("{NAME}: round {round}: a full disk raised no NOSPACE in 5 s"));
                break;
            }
            runtime::sleep(Duration::from_millis(300)).await;
            disk.set_faults(DiskFaults::default());
            runtime::sleep(Duration::from_millis(5) * (round - 1)).await;
            let disarmed = until_it_succeeds(20, Duration::from_millis(100), || async {
                matches!(cluster.propose_on_leader(disarm.clone()).await, Some(Ok(_)))
            });
            if !disarmed.await {
                violations.push(format!("{NAME}: round {round}: the disarm never applied"));
                break;
            }
            let before = acknowledged.load(Ordering::Relaxed);
            runtime::sleep(Duration::from_millis(1500)).await;
            if raised(&cluster) {
                violations.push(format!(
                    "{NAME}: round {round}: NOSPACE raised again after room came back and it was disarmed {:?} later",
                    Duration::from_millis(5) * (round - 1)
                ));
                break;
            }
            if acknowledged.load(Ordering::Relaxed) == before {
                violations.push(format!("{NAME}: round {round}: no write went through after the disarm"));
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = writer.await;
        violations
    })
}

/// Makes every write and sync of `slot`'s disk fail with EIO.
fn fail_disk(cluster: &SimCluster, slot: u64) {
    use placement_center::storage::sim_disk::DiskFaults;
    let faults = DiskFaults { fail_writes: true, fail_syncs: true, ..Default::default() };
    cluster.nodes[slot as usize - 1].disk.set_faults(faults);
}

/// A put of `scenario/k` = `i` through `addr`, made from `client`, given `wait`.
fn put_on(
    client: &madsim::runtime::NodeHandle,
    addr: String,
    i: u32,
    wait: Duration,
) -> madsim::task::JoinHandle<Result<Result<tonic::Response<PutResponse>, tonic::Status>, runtime::Elapsed>> {
    client.spawn(async move {
        let mut kv = KvClient::new(crate::channel(&addr));
        runtime::timeout(wait, kv.put(scenario_put(i))).await
    })
}

/// Writes with `put` (numbered from 1, `tries` at most) until `slot`'s Raft
/// stops; the last number used, or `None` if it never stopped.
async fn write_until_stopped<F: std::future::Future>(
    cluster: &SimCluster,
    slot: u64,
    tries: u32,
    mut put: impl FnMut(u32) -> F,
) -> Option<u32> {
    let mut i = 0;
    while cluster.is_healthy(slot) && i < tries {
        i += 1;
        let _ = put(i).await;
    }
    (!cluster.is_healthy(slot)).then_some(i)
}

/// Regression seed 10007's bug class: a follower's disk fails with EIO and
/// its Raft stops. It answered every client call "etcdserver: server
/// stopped" without saying that nothing was proposed, so clients held its
/// writes as unknown outcomes (and the linearizability search blew up).
/// Here every put through it, once its Raft has stopped, must be refused
/// as not applied (`pc-not-applied`), and the others must go on writing.
pub(crate) fn writes_to_a_member_stopped_by_eio() -> Vec<String> {
    use placement_center::api::error::NOT_APPLIED_METADATA;
    const NAME: &str = "writes-to-a-member-stopped-by-eio";
    simulate(|| async {
        let (cluster, leader) = match three_nodes_led(NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let follower = leader % 3 + 1;
        fail_disk(&cluster, follower);
        let client = scenario_client();
        let put_via = |addr: String, i: u32| put_on(&client, addr, i, Duration::from_secs(5));
        // Writes through the leader reach the follower's failing disk.
        let leader_addr = cluster.nodes[leader as usize - 1].client_addr.clone();
        let Some(mut i) = write_until_stopped(&cluster, follower, 200, |i| put_via(leader_addr.clone(), i)).await
        else {
            return vec![format!("{NAME}: {follower}'s Raft never stopped on its failing disk")];
        };
        let follower_addr = cluster.nodes[follower as usize - 1].client_addr.clone();
        let mut violations = Vec::new();
        for round in 1..=5 {
            i += 1;
            match put_via(follower_addr.clone(), i).await {
                Ok(Ok(Err(status))) if status.metadata().contains_key(NOT_APPLIED_METADATA) => {}
                other => violations.push(format!(
                    "{NAME}: put {round} through {follower}, whose Raft stopped, was not refused as not applied: \
                     {other:?}"
                )),
            }
        }
        i += 1;
        if !matches!(put_via(leader_addr, i).await, Ok(Ok(Ok(_)))) {
            violations.push(format!("{NAME}: the leader took no write once {follower} had stopped"));
        }
        violations
    })
}

/// Puts `forwards_to_a_leader_stopped_by_eio` sends through the follower
/// once the leader's Raft has stopped, 100 ms apart.
const PUTS_PAST_A_STOPPED_LEADER: u32 = 30;

/// Regression seed 120's bug class: the leader's disk fails with EIO and its
/// Raft stops, while the followers still take it for the leader until their
/// election timeout runs out. A write forwarded to it meanwhile was answered
/// as failed, so the follower reported an unknown outcome ("possibly due to
/// connection lost") for a write nobody proposed. Here every put through a
/// follower after the leader stopped must be applied (the follower tries the
/// next leader) or refused as not applied; at least one must have been
/// forwarded while the follower still took the stopped node for its leader.
pub(crate) fn forwards_to_a_leader_stopped_by_eio() -> Vec<String> {
    use placement_center::api::error::NOT_APPLIED_METADATA;
    const NAME: &str = "forwards-to-a-leader-stopped-by-eio";
    simulate(|| async {
        let (cluster, leader) = match three_nodes_led(NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let follower = leader % 3 + 1;
        let client = scenario_client();
        let put_via = |addr: String, i: u32| put_on(&client, addr, i, Duration::from_secs(10));
        let leader_addr = cluster.nodes[leader as usize - 1].client_addr.clone();
        let follower_addr = cluster.nodes[follower as usize - 1].client_addr.clone();
        if !until_it_succeeds(50, Duration::from_millis(100), || {
            let put = put_via(follower_addr.clone(), 0);
            async move { matches!(put.await, Ok(Ok(Ok(_)))) }
        })
        .await
        {
            return vec![format!("{NAME}: no put through {follower} succeeded before the fault")];
        }
        fail_disk(&cluster, leader);
        // A write on the leader reaches its failing disk.
        let Some(mut i) = write_until_stopped(&cluster, leader, 100, |i| put_via(leader_addr.clone(), i)).await else {
            return vec![format!("{NAME}: {leader}'s Raft never stopped on its failing disk")];
        };
        let takes_stopped_for_leader = || cluster.node(follower).is_some_and(|node| node.leader() == Some(leader));
        let mut puts = Vec::new();
        let mut met_the_stopped_leader = 0;
        for _ in 0..PUTS_PAST_A_STOPPED_LEADER {
            i += 1;
            met_the_stopped_leader += u32::from(takes_stopped_for_leader());
            puts.push((i, put_via(follower_addr.clone(), i)));
            runtime::sleep(Duration::from_millis(100)).await;
        }
        let mut violations = Vec::new();
        for (i, put) in puts {
            match put.await {
                Ok(Ok(Ok(_))) => {}
                Ok(Ok(Err(status))) if status.metadata().contains_key(NOT_APPLIED_METADATA) => {}
                other => violations.push(format!(
                    "{NAME}: put {i} through {follower}, sent after {leader}'s Raft stopped, has no definite \
                     outcome: {other:?}"
                )),
            }
        }
        if met_the_stopped_leader == 0 {
            violations.push(format!("{NAME}: {follower} had left the stopped {leader} before the first put"));
        }
        violations
    })
}
