//! Regression scenarios for auth on a follower whose auth store is behind
//! the leader's (see `scenarios` for why scenarios, not seeds).

use std::sync::Arc;
use std::time::Duration;

use madsim::runtime::NodeHandle;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::{PutRequest, PutResponse};
use placement_center::raft::RaftNode;
use placement_center::runtime;
use placement_center::storage::sim_disk::{DiskFaults, SimDisk};
use tonic::metadata::{Ascii, MetadataValue};

use crate::cluster::SimCluster;
use crate::run::wait_for;
use crate::scenarios::{caught_up, scenario_client, simulate, three_nodes_led, until_it_succeeds};

/// What both scenarios start from: a 3-node cluster with auth on (root and
/// the prober, as the auth seeds set it up), the follower the prober puts
/// through, and the prober's token.
struct Setup {
    cluster: SimCluster,
    leader: u64,
    follower: u64,
    /// The follower's disk.
    disk: Arc<SimDisk>,
    /// The follower's client address.
    addr: String,
    client: NodeHandle,
    token: MetadataValue<Ascii>,
}

/// Starts `scenario`'s [`Setup`], or says why it cannot go on.
async fn set_up(scenario: &str) -> Result<Setup, Vec<String>> {
    let (cluster, leader) = three_nodes_led(scenario).await?;
    let client = scenario_client();
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
    let token = client
        .spawn(async move {
            if !crate::auth::setup(addrs.clone()).await {
                return None;
            }
            crate::auth::prober_token(&addrs).await
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| vec![format!("{scenario}: auth could not be set up")])?;
    let follower = leader % 3 + 1;
    let node = &cluster.nodes[follower as usize - 1];
    let (disk, addr) = (node.disk.clone(), node.client_addr.clone());
    Ok(Setup { cluster, leader, follower, disk, addr, client, token })
}

/// Whether `node`'s auth store lets the prober write the scenarios' key now.
fn prober_may_write(node: &RaftNode) -> bool {
    placement_center::raft::state_store::read_state(node.state())
        .auth()
        .check(Some("prober"), placement_center::state::Access::Write, KEY, b"")
        .is_ok()
}

/// The key the prober puts.
const KEY: &[u8] = b"probe/scenario";

/// A put of `KEY` as the prober (its `token`) through `addr`, given 5 s.
async fn prober_put(
    addr: &str,
    token: MetadataValue<Ascii>,
    round: u32,
) -> Result<Result<tonic::Response<PutResponse>, tonic::Status>, runtime::Elapsed> {
    let mut kv = KvClient::new(crate::channel(addr));
    let mut req = tonic::Request::new(PutRequest {
        key: KEY.to_vec(),
        value: round.to_string().into_bytes(),
        ..Default::default()
    });
    req.metadata_mut().insert("token", token);
    runtime::timeout(Duration::from_secs(5), kv.put(req)).await
}

/// Rounds of `revoked_put_through_a_lagging_follower`.
const REVOKE_ROUNDS: u32 = 10;

/// A round of scenario `name` ends once `follower` has caught up with
/// `leader` again (10 s at most), so the next round starts level.
async fn round_end(cluster: &SimCluster, follower: u64, leader: u64, name: &str, round: u32) -> Result<(), String> {
    if wait_for(Duration::from_secs(10), || caught_up(cluster, follower, leader)).await {
        Ok(())
    } else {
        Err(format!("{name}: round {round}: the follower never caught up"))
    }
}

/// Regression seeds 10005 and 10033's bug class (auth on): a follower's
/// slow disk keeps its applied auth store behind the leader's. A put sent
/// to it right after the writer's role was revoked passes the follower's
/// permission check on its stale store; without the apply-time check of
/// the auth revision the put carries, it was applied after the revoke.
/// Each round slows the follower's disk, revokes the prober's role, puts
/// through the follower 1 ms later than the last round, and grants the
/// role back; no put may succeed between the revoke's acknowledgement and
/// the grant.
pub(crate) fn revoked_put_through_a_lagging_follower() -> Vec<String> {
    const NAME: &str = "revoked-put-through-a-lagging-follower";
    simulate(|| async {
        let Setup { cluster, leader, follower, disk, addr, client, token } = match set_up(NAME).await {
            Ok(setup) => setup,
            Err(violations) => return violations,
        };
        let mut stale_checks = 0;
        for round in 1..=REVOKE_ROUNDS {
            disk.set_faults(DiskFaults { latency: Duration::from_millis(30), ..Default::default() });
            if !matches!(crate::auth::set_prober_role(&cluster, false).await, Some(Ok(_))) {
                disk.set_faults(DiskFaults::default());
                runtime::sleep(Duration::from_millis(500)).await;
                continue;
            }
            let (to, token) = (addr.clone(), token.clone());
            let delay = Duration::from_millis(u64::from(round - 1));
            let behind = cluster.node(follower);
            let put = client.spawn(async move {
                runtime::sleep(delay).await;
                // Whether the follower will check the put on a store from
                // before the revoke.
                let stale = behind.is_some_and(|node| prober_may_write(&node));
                (stale, prober_put(&to, token, round).await)
            });
            let Ok((stale, answer)) = put.await else {
                return vec![format!("{NAME}: round {round}: the client task failed")];
            };
            disk.set_faults(DiskFaults::default());
            let granted = until_it_succeeds(20, Duration::from_millis(200), || async {
                matches!(crate::auth::set_prober_role(&cluster, true).await, Some(Ok(_)))
            });
            if !granted.await {
                return vec![format!("{NAME}: round {round}: the role was never granted back")];
            }
            match answer {
                Ok(Ok(_)) => {
                    return vec![format!(
                        "{NAME}: round {round}: a put through follower {follower} {delay:?} after the writer's role \
                         was revoked succeeded"
                    )]
                }
                Ok(Err(_)) => stale_checks += u32::from(stale),
                Err(_) => {}
            }
            if let Err(violation) = round_end(&cluster, follower, leader, NAME, round).await {
                return vec![violation];
            }
        }
        if stale_checks == 0 {
            return vec![format!("{NAME}: no put met a follower whose auth store was still behind the revoke")];
        }
        Vec::new()
    })
}

/// Rounds of `granted_put_through_a_lagging_follower`.
const GRANT_ROUNDS: u32 = 5;
/// How long the follower's state machine waits before each write of what
/// it applied, while the role is granted back.
const GRANT_STALL: Duration = Duration::from_millis(800);

/// The auth follower race (the simulator's grant windows: 30 of the 100
/// auth seeds in 10000..10399, from 10005, 10049 and 10053 on): a
/// follower whose state machine is behind refused the prober a write the
/// leader had granted and acknowledged, on its own auth store from before
/// the grant. Each round revokes the prober's role, lets the follower catch
/// up, stalls the follower's state machine (its log keeps up), grants the
/// role back on the leader and puts through the follower right after the
/// grant's acknowledgement: the put must not be refused for want of
/// permission. At least one put must have met a follower whose store still
/// refused the prober when it was sent.
pub(crate) fn granted_put_through_a_lagging_follower() -> Vec<String> {
    const NAME: &str = "granted-put-through-a-lagging-follower";
    simulate(|| async {
        let Setup { cluster, leader, follower, disk, addr, client, token } = match set_up(NAME).await {
            Ok(setup) => setup,
            Err(violations) => return violations,
        };
        let mut met_stale = 0;
        for round in 1..=GRANT_ROUNDS {
            let revoked = until_it_succeeds(20, Duration::from_millis(200), || async {
                matches!(crate::auth::set_prober_role(&cluster, false).await, Some(Ok(_)))
            });
            if !revoked.await {
                return vec![format!("{NAME}: round {round}: the role was never revoked")];
            }
            if !wait_for(Duration::from_secs(10), || caught_up(&cluster, follower, leader)).await {
                return vec![format!("{NAME}: round {round}: the follower never caught up with the revoke")];
            }
            disk.set_faults(DiskFaults { write_stall: GRANT_STALL, ..Default::default() });
            if !matches!(crate::auth::set_prober_role(&cluster, true).await, Some(Ok(_))) {
                disk.set_faults(DiskFaults::default());
                continue;
            }
            let (to, token) = (addr.clone(), token.clone());
            let behind = cluster.node(follower);
            let put = client.spawn(async move {
                // Whether the follower's store still refuses the prober.
                let stale = behind.is_some_and(|node| !prober_may_write(&node));
                (stale, prober_put(&to, token, round).await)
            });
            let Ok((stale, answer)) = put.await else {
                return vec![format!("{NAME}: round {round}: the client task failed")];
            };
            disk.set_faults(DiskFaults::default());
            match answer {
                Ok(Err(status)) if status.code() == tonic::Code::PermissionDenied => {
                    return vec![format!(
                        "{NAME}: round {round}: a put through follower {follower} right after the writer's role was \
                         granted back was refused: {}",
                        status.message()
                    )]
                }
                Ok(Ok(_)) => met_stale += u32::from(stale),
                _ => {}
            }
            if let Err(violation) = round_end(&cluster, follower, leader, NAME, round).await {
                return vec![violation];
            }
        }
        if met_stale == 0 {
            return vec![format!("{NAME}: no put met a follower whose auth store was still behind the grant")];
        }
        Vec::new()
    })
}

/// Rounds of `new_user_token_on_a_lagging_follower`.
const NEW_USER_ROUNDS: u32 = 3;

/// The token side of the auth follower race, which the seeds do not reach
/// (their users exist before the workload starts): a follower that had not
/// applied a user the leader added refused that user's token as "invalid
/// auth token", on its auth store from before the user. Each round stalls
/// the follower's state machine (its log keeps up), adds a user with the
/// prober's role on the leader, authenticates it there and puts through the
/// follower with its token at once: the put must not be refused. At least
/// one put must have met a follower that did not know the user yet.
pub(crate) fn new_user_token_on_a_lagging_follower() -> Vec<String> {
    const NAME: &str = "new-user-token-on-a-lagging-follower";
    simulate(|| async {
        let Setup { cluster, leader, follower, disk, addr, client, .. } = match set_up(NAME).await {
            Ok(setup) => setup,
            Err(violations) => return violations,
        };
        let leader_addr = cluster.nodes[leader as usize - 1].client_addr.clone();
        let mut met_stale = 0;
        for round in 1..=NEW_USER_ROUNDS {
            disk.set_faults(DiskFaults { write_stall: GRANT_STALL, ..Default::default() });
            let (to, on_leader, user) = (addr.clone(), leader_addr.clone(), format!("newcomer-{round}"));
            let behind = cluster.node(follower);
            let put = client.spawn(async move {
                let token = crate::auth::add_prober_like(&[on_leader], &user, "newcomer-password").await?;
                let stale = behind.is_some_and(|node| {
                    placement_center::raft::state_store::read_state(node.state()).auth().user(&user).is_none()
                });
                Some((stale, prober_put(&to, token, round).await))
            });
            let Ok(Some((stale, answer))) = put.await else {
                return vec![format!("{NAME}: round {round}: the user could not be added")];
            };
            disk.set_faults(DiskFaults::default());
            match answer {
                Ok(Err(status))
                    if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) =>
                {
                    return vec![format!(
                        "{NAME}: round {round}: a put through follower {follower} with the token of a user the \
                         leader had just added was refused: {}",
                        status.message()
                    )]
                }
                Ok(Ok(_)) => met_stale += u32::from(stale),
                _ => {}
            }
            if let Err(violation) = round_end(&cluster, follower, leader, NAME, round).await {
                return vec![violation];
            }
        }
        if met_stale == 0 {
            return vec![format!("{NAME}: no put met a follower that did not know its user yet")];
        }
        Vec::new()
    })
}
