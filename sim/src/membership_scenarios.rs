//! Regression scenarios for membership changes: a change given up halfway,
//! and a leader lost in the middle of one (see `scenarios` for why
//! scenarios, not seeds).

use std::sync::Arc;
use std::time::Duration;

use placement_center::raft::membership::MemberChange;
use placement_center::raft::MetricsWatch as _;
use placement_center::raft::RaftNode;
use placement_center::runtime;

use crate::cluster::SimCluster;
use crate::run::wait_for;
use crate::scenarios::{nodes_led, simulate, three_nodes_led};

/// Whether the leader's membership is a joint configuration (`None`: no leader).
fn leader_joint(cluster: &SimCluster) -> Option<bool> {
    let node = cluster.node(cluster.leader()?)?;
    let joint = node.raft.metrics().borrow_watched().membership_config.membership().get_joint_config().len() > 1;
    Some(joint)
}

/// Whether member `id` is still a member, as the leader sees it.
fn leader_knows(cluster: &SimCluster, id: u64) -> bool {
    cluster.leader().and_then(|l| cluster.node(l)).is_some_and(|node| node.member(id).is_some())
}

/// Puts a new member in `slot`, whose member was removed, through the
/// leader, and waits until every slot is a running voter again.
async fn rejoin(cluster: &SimCluster, slot: u64) -> bool {
    // Not through itself: a removed leader leads until it steps down.
    if !wait_for(Duration::from_secs(20), || cluster.leader().is_some_and(|l| l != slot)).await {
        return false;
    }
    let Some(leader) = cluster.leader().filter(|l| *l != slot) else { return false };
    cluster.replace(slot, cluster.nodes[leader as usize - 1].client_addr.clone());
    let n = cluster.nodes.len() as u64;
    wait_for(Duration::from_secs(30), || (1..=n).all(|s| cluster.is_voter(s))).await
}

/// What a membership round starts from: the leader's slot and node, and the
/// follower it removes (the slot after the leader's) with its member id.
struct RoundStart {
    leader: u64,
    leader_node: Arc<RaftNode>,
    follower: u64,
    old_id: u64,
}

/// Waits up to 20 s for a leader of the `slots`-slot cluster before `round`
/// (`Err`: a violation of scenario `name`); `Ok(None)` when the leader or its
/// follower went away meanwhile, for the round to be skipped.
async fn round_start(cluster: &SimCluster, slots: u64, name: &str, round: u32) -> Result<Option<RoundStart>, String> {
    if !wait_for(Duration::from_secs(20), || cluster.leader().is_some()).await {
        return Err(format!("{name}: no leader in 20 s before round {round}"));
    }
    let Some(leader) = cluster.leader() else { return Ok(None) };
    let follower = leader % slots + 1;
    let (Some(leader_node), Some(old_id)) = (cluster.node(leader), cluster.node(follower).map(|n| n.id)) else {
        return Ok(None);
    };
    Ok(Some(RoundStart { leader, leader_node, follower, old_id }))
}

/// Rounds of the membership scenarios; each waits one step longer.
const MEMBERSHIP_ROUNDS: u32 = 80;

/// The step by which the membership scenarios move their cut.
const MEMBERSHIP_STEP: Duration = Duration::from_micros(250);

/// The step by which `leader_lost_mid_membership_change` moves its cut.
const JOINT_STEP: Duration = Duration::from_micros(100);

/// Soak seed 102634's bug class: a member change whose caller gave up (its
/// deadline, or a dropped RPC: here a learner's promotion forwarded to the
/// leader during a latency spike) stopped openraft's two-step change after
/// the joint entry was proposed and before the uniform one was. The cluster
/// stayed joint, every later change was refused "another membership change
/// is in progress", and a replaced member never joined. Each round removes
/// a follower with a caller deadline one step longer than the last; once
/// the caller gives up after the removal began, the cluster must be out of
/// the joint configuration within 3 s and the slot must join again.
pub(crate) fn membership_change_given_up() -> Vec<String> {
    const NAME: &str = "membership-change-given-up";
    simulate(|| async {
        let (cluster, _) = match three_nodes_led(NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        let mut given_up_midway = 0;
        for round in 1..=MEMBERSHIP_ROUNDS {
            let RoundStart { leader, leader_node, follower, old_id } = match round_start(&cluster, 3, NAME, round).await
            {
                Ok(Some(start)) => start,
                Ok(None) => continue,
                Err(violation) => return vec![violation],
            };
            let deadline = MEMBERSHIP_STEP * round;
            let gave_up = cluster
                .spawn_on(leader, async move {
                    runtime::timeout(deadline, leader_node.change_members(MemberChange::Remove(old_id))).await.is_err()
                })
                .await
                .unwrap_or(false);
            if !wait_for(Duration::from_secs(3), || leader_joint(&cluster) == Some(false)).await {
                return vec![format!(
                    "{NAME}: round {round}: a removal whose caller gave up after {deadline:?} left the cluster in \
                     a joint configuration for 3 s"
                )];
            }
            if leader_knows(&cluster, old_id) {
                continue;
            }
            given_up_midway += u32::from(gave_up);
            if !rejoin(&cluster, follower).await {
                return vec![format!("{NAME}: round {round}: slot {follower} never became a voter again")];
            }
            if given_up_midway >= 3 {
                return Vec::new();
            }
        }
        vec![format!(
            "{NAME}: in {MEMBERSHIP_ROUNDS} rounds, {given_up_midway} callers gave up after their removal began"
        )]
    })
}

/// The other way to stop a change between its steps: its leader dies after
/// the joint entry commits and before the uniform one does. openraft leaves
/// the cluster joint then; etcd's joint changes leave by themselves, and
/// so must ours: the next leader leaves it. Five nodes, so that the
/// survivors are a quorum of both configurations. Each round removes a
/// follower and cuts the leader's power one step later than the last;
/// once a new leader finds the joint configuration, it must leave it
/// within 10 s.
pub(crate) fn leader_lost_mid_membership_change() -> Vec<String> {
    const NAME: &str = "leader-lost-mid-membership-change";
    simulate(|| async {
        let (cluster, _) = match nodes_led(5, NAME).await {
            Ok(led) => led,
            Err(violations) => return violations,
        };
        for round in 1..=MEMBERSHIP_ROUNDS {
            let RoundStart { leader, leader_node, follower, old_id } = match round_start(&cluster, 5, NAME, round).await
            {
                Ok(Some(start)) => start,
                Ok(None) => continue,
                Err(violation) => return vec![violation],
            };
            let watched = leader_node.clone();
            let removal = cluster.spawn_on(leader, async move {
                let _ = leader_node.change_members(MemberChange::Remove(old_id)).await;
            });
            // From the joint entry's append on, one step later each round.
            let proposed = runtime::now();
            while runtime::now() - proposed < Duration::from_secs(1)
                && watched.raft.metrics().borrow_watched().membership_config.membership().get_joint_config().len() < 2
            {
                runtime::sleep(Duration::from_micros(20)).await;
            }
            runtime::sleep(JOINT_STEP * (round - 1)).await;
            cluster.power_loss_all(leader);
            drop(removal);
            // Caught between the steps: every survivor holds the joint
            // configuration, so the next leader does.
            let found_joint = (1..=5).filter(|s| *s != leader).all(|s| {
                cluster.node(s).is_some_and(|node| {
                    node.raft.metrics().borrow_watched().membership_config.membership().get_joint_config().len() > 1
                })
            });
            if !wait_for(Duration::from_secs(20), || cluster.leader().is_some_and(|l| l != leader)).await {
                return vec![format!("{NAME}: round {round}: no new leader in 20 s after the old one lost power")];
            }
            if !wait_for(Duration::from_secs(10), || leader_joint(&cluster) == Some(false)).await {
                return vec![format!(
                    "{NAME}: round {round}: the leader lost power {:?} after appending a joint configuration, and \
                     the cluster stayed in it for 10 s under the next leader",
                    JOINT_STEP * (round - 1)
                )];
            }
            cluster.restart(leader);
            let removed = !leader_knows(&cluster, old_id);
            if removed && !rejoin(&cluster, follower).await {
                return vec![format!("{NAME}: round {round}: slot {follower} never became a voter again")];
            }
            if !wait_for(Duration::from_secs(30), || (1..=5).all(|s| cluster.is_voter(s))).await {
                return vec![format!("{NAME}: round {round}: slot {leader} never ran as a voter again")];
            }
            if found_joint {
                return Vec::new();
            }
        }
        vec![format!("{NAME}: in {MEMBERSHIP_ROUNDS} rounds, no new leader found a joint configuration")]
    })
}
