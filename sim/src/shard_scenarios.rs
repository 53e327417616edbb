//! Regression scenarios for shard placement: explicit schedules of brokers
//! leaving and coming back (see `scenarios` for why scenarios, not seeds).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use placement_center::client::{Client, KeepAlive};
use placement_center::proto::placement::v1::{RegisterNodeRequest, Shard};
use placement_center::runtime::{self, Instant};

use crate::brokers::{client, zone, CLUSTER};
use crate::cluster::SimCluster;
use crate::run::wait_for;
use crate::scenarios::{scenario_client, simulate};

/// Longest a shard may wait for a new leader once its leader's registration
/// is gone (the controller acts on the applied deletion; in virtual time).
const FAILOVER_BOUND: Duration = Duration::from_secs(1);
/// How often the scenario looks at the shards.
const POLL: Duration = Duration::from_millis(20);

/// Registers broker `id` (zone label, role mqtt) and keeps it alive.
async fn live_broker(client: &Arc<Client>, id: u64) -> Option<(i64, KeepAlive)> {
    let req = RegisterNodeRequest {
        cluster: CLUSTER.into(),
        node_id: id,
        roles: vec!["mqtt".into()],
        labels: BTreeMap::from([("zone".to_string(), zone(id))]),
        ..Default::default()
    };
    let registration = client.register(req).await.ok()?;
    Some((registration.node.epoch, client.keep_alive(&registration)))
}

async fn shards(client: &Client) -> Vec<Shard> {
    client.list_shards(CLUSTER, "", 0).await.map(|r| r.shards).unwrap_or_default()
}

/// Whether broker `id` is registered.
async fn listed(client: &Client, id: u64) -> bool {
    client.list_nodes(CLUSTER, "").await.map(|r| r.nodes.iter().any(|n| n.node_id == id)).unwrap_or(true)
}

/// Waits (up to `limit`) until `done` holds of the shards; the shards then.
async fn shards_when(client: &Client, limit: Duration, done: impl Fn(&[Shard]) -> bool) -> Option<Vec<Shard>> {
    let deadline = runtime::now() + limit;
    while runtime::now() < deadline {
        let now = shards(client).await;
        if done(&now) {
            return Some(now);
        }
        runtime::sleep(POLL).await;
    }
    None
}

/// Waits until broker `id` is no longer listed; when that was seen.
async fn gone(client: &Client, id: u64, limit: Duration) -> Option<Instant> {
    let deadline = runtime::now() + limit;
    while runtime::now() < deadline {
        if !listed(client, id).await {
            return Some(runtime::now());
        }
        runtime::sleep(POLL).await;
    }
    None
}

/// Brokers leave one by one: every shard the first one led gets an in-sync
/// leader within the bound after its registration is gone; when the last
/// in-sync replica of a shard leaves, the shard waits without a leader,
/// and when that broker registers again it leads again under a higher
/// leader epoch. (The simulator found the drain: brokers registering again
/// emptied the in-sync sets until no shard could ever be led again.)
pub fn shard_failover_and_last_in_sync_return() -> Vec<String> {
    const NAME: &str = "shard-failover-and-last-in-sync-return";
    simulate(|| async {
        let cluster = SimCluster::start(3, 0);
        if !wait_for(Duration::from_secs(20), || cluster.leader().is_some()).await {
            return vec![format!("{NAME}: no leader in 20 s")];
        }
        let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr.clone()).collect();
        let work = scenario_client().spawn(async move {
            crate::brokers::configure(addrs.clone()).await;
            let client = client(&addrs);
            let mut alive = BTreeMap::new();
            for id in 1..=3 {
                match live_broker(&client, id).await {
                    Some(broker) => alive.insert(id, broker),
                    None => return vec![format!("{NAME}: broker {id} could not register")],
                };
            }
            crate::shards::create_topic(addrs.clone()).await;
            let total: u32 = crate::shards::TOPICS.iter().map(|t| t.1).sum();
            let placed = |s: &[Shard]| s.len() == total as usize && s.iter().all(|s| s.leader != 0);
            let Some(before) = shards_when(&client, Duration::from_secs(10), placed).await else {
                return vec![format!("{NAME}: the topics were not placed with leaders in 10 s")];
            };
            let mut violations = Vec::new();

            // 1. The leader of s/0 goes silent.
            let victim = before[0].leader;
            alive.remove(&victim);
            let Some(left) = gone(&client, victim, Duration::from_secs(10)).await else {
                return vec![format!("{NAME}: broker {victim} still registered 10 s after going silent")];
            };
            let led: Vec<&Shard> = before.iter().filter(|s| s.leader == victim).collect();
            let moved = |now: &[Shard]| {
                led.iter().all(|old| {
                    now.iter()
                        .any(|s| (&s.topic, s.shard) == (&old.topic, old.shard) && s.leader != victim && s.leader != 0)
                })
            };
            match shards_when(&client, Duration::from_secs(10), moved).await {
                None => violations.push(format!("{NAME}: the shards {victim} led got no new leader in 10 s")),
                Some(after) => {
                    let took = runtime::now() - left;
                    if std::env::var_os("PLACEMENT_SIM_DEBUG").is_some() {
                        eprintln!(
                            "{NAME}: {victim} led {} shards; they had new leaders {took:?} after it was gone",
                            led.len()
                        );
                    }
                    if took > FAILOVER_BOUND + POLL {
                        violations.push(format!("{NAME}: failover took {took:?} after the registration was gone"));
                    }
                    for old in &led {
                        let new = after.iter().find(|s| (&s.topic, s.shard) == (&old.topic, old.shard)).unwrap();
                        if !old.in_sync.contains(&new.leader) || new.leader_epoch <= old.leader_epoch {
                            violations.push(format!("{NAME}: {old:?} failed over to {new:?}"));
                        }
                    }
                }
            }

            // 2. The two others leave, one after the other: r/0 (every
            // broker a replica) keeps the last one in sync, without a leader.
            let order: Vec<u64> = alive.keys().copied().collect();
            let (first, last) = (order[0], order[1]);
            alive.remove(&first);
            gone(&client, first, Duration::from_secs(10)).await;
            runtime::sleep(Duration::from_secs(1)).await;
            let (_, keep) = alive.remove(&last).unwrap();
            drop(keep);
            gone(&client, last, Duration::from_secs(10)).await;
            let leaderless = |now: &[Shard]| now.iter().any(|s| s.topic == "r" && s.shard == 0 && s.leader == 0);
            let Some(now) = shards_when(&client, Duration::from_secs(5), leaderless).await else {
                violations.push(format!("{NAME}: r/0 still has a leader with every broker gone"));
                return violations;
            };
            let waiting = now.iter().find(|s| s.topic == "r" && s.shard == 0).unwrap().clone();
            if waiting.in_sync != vec![last] {
                violations
                    .push(format!("{NAME}: with every broker gone r/0 is {waiting:?}, not kept in sync on {last}"));
            }

            // 3. The last in-sync one registers again: it leads again.
            let Some(back) = live_broker(&client, last).await else {
                violations.push(format!("{NAME}: broker {last} could not register again"));
                return violations;
            };
            let led_again = |now: &[Shard]| now.iter().any(|s| s.topic == "r" && s.shard == 0 && s.leader == last);
            match shards_when(&client, Duration::from_secs(5), led_again).await {
                None => violations
                    .push(format!("{NAME}: r/0 got no leader after {last}, its last in-sync replica, came back")),
                Some(now) => {
                    let again = now.iter().find(|s| s.topic == "r" && s.shard == 0).unwrap();
                    if again.leader_epoch <= waiting.leader_epoch || again.broker_epochs.get(&last) != Some(&back.0) {
                        violations.push(format!("{NAME}: r/0 led again as {again:?} after {waiting:?}"));
                    }
                }
            }
            violations
        });
        work.await.unwrap_or_else(|_| vec![format!("{NAME}: the scenario panicked")])
    })
}
