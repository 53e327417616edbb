//! Shard failover: `--brokers` brokers (three zones) registered and kept
//! alive, a topic of `--shards` shards placed on them, then, `--rounds`
//! times, one broker goes silent: the time from its registration leaving
//! (as WatchNodes reports it) to each shard it led having a new leader (as
//! its own WatchAssignments reports the shard taken from it).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use placement_client::proto::placement::v1::assignment::Role;
use placement_client::proto::placement::v1::node_event::Kind;
use placement_client::proto::placement::v1::{RegisterNodeRequest, SetClusterConfigRequest, TopicSpec};
use placement_client::{Client, ClientOptions, KeepAlive, Retry};

use crate::load::Measured;
use crate::rt;

/// The broker cluster and topic the measurement uses (deleted first).
const CLUSTER: &str = "bench-failover";
const TOPIC: &str = "failover";
/// The brokers' heartbeat interval, seconds.
const HEARTBEAT_SECS: u32 = 1;
/// Longest wait for the controller to place the topic, or to move a
/// broker's shards.
const PATIENCE: Duration = Duration::from_secs(120);

/// What the measurement found besides the failover latencies.
pub struct Failover {
    /// Per-shard failover latency (from the registration leaving).
    pub measured: Measured,
    /// Shards moved in all rounds.
    pub moved: u64,
    /// How long placing the whole topic took.
    pub placed_in: Duration,
}

async fn register(client: &Arc<Client>, id: u64) -> anyhow::Result<KeepAlive> {
    let req = RegisterNodeRequest {
        cluster: CLUSTER.into(),
        node_id: id,
        roles: vec!["journal".into()],
        labels: BTreeMap::from([("zone".to_string(), ["a", "b", "c"][(id % 3) as usize].to_string())]),
        ..Default::default()
    };
    let registration = client.register(req).await?;
    Ok(client.keep_alive(&registration))
}

/// Runs the measurement against the cluster at `endpoints`.
pub async fn run(
    endpoints: &[String],
    brokers: u64,
    shards: u32,
    replication: u32,
    expiry: u32,
    rounds: u64,
) -> anyhow::Result<Failover> {
    anyhow::ensure!(rounds < brokers, "--rounds must be below --brokers");
    let client = Client::new(endpoints, ClientOptions::default())?;
    let config = SetClusterConfigRequest {
        cluster: CLUSTER.into(),
        heartbeat_interval_secs: HEARTBEAT_SECS,
        expiry_secs: expiry,
    };
    client
        .call(Retry::Idempotent, |ch| {
            let req = client.request(config.clone());
            async move { Client::placement(ch).set_cluster_config(req).await }
        })
        .await?;
    client.delete_topic(CLUSTER, TOPIC, 0).await?;
    let mut alive = BTreeMap::new();
    for id in 1..=brokers {
        alive.insert(id, register(&client, id).await?);
    }
    let spec = TopicSpec {
        cluster: CLUSTER.into(),
        name: TOPIC.into(),
        shards,
        replication_factor: replication,
        role: "journal".into(),
        spread_label: "zone".into(),
    };
    let started = rt::now();
    client.create_topic(spec).await?;
    loop {
        let placed = client.list_shards(CLUSTER, TOPIC, 0).await?.shards;
        if placed.len() == shards as usize
            && placed.iter().all(|s| s.leader != 0 && s.replicas.len() == replication as usize)
        {
            break;
        }
        anyhow::ensure!(rt::now() - started < PATIENCE, "the topic was not placed in {PATIENCE:?}");
        rt::sleep(Duration::from_millis(100)).await;
    }
    let placed_in = rt::now() - started;
    eprintln!(
        "failover: {shards} shards x {replication} placed on {brokers} brokers in {:.2} s",
        placed_in.as_secs_f64()
    );

    let mut latency = Histogram::<u64>::new(3)?;
    let mut moved = 0;
    let measuring = rt::now();
    for victim in 1..=rounds {
        let mut assignments = client.watch_assignments(CLUSTER, victim, 0);
        let whole = rt::timeout(PATIENCE, assignments.recv()).await?.context("assignment watch ended")??;
        let mut waiting: BTreeSet<u32> = whole
            .assignments
            .iter()
            .filter(|a| a.role == Role::Leader as i32)
            .filter_map(|a| a.shard.as_ref().map(|s| s.shard))
            .collect();
        let led = waiting.len();
        let mut nodes = client.watch_nodes(CLUSTER, 0);
        alive.remove(&victim); // its heartbeats stop
                               // The revision and time its registration was seen leaving; shard
                               // changes up to that revision were rebalancing, not failover.
        let mut left: Option<(i64, rt::Instant)> = None;
        let mut early: Vec<(i64, rt::Instant, Vec<u32>)> = Vec::new();
        let mut counted = 0;
        while !waiting.is_empty() {
            tokio::select! {
                resp = nodes.recv(), if left.is_none() => {
                    let resp = resp.context("node watch ended")??;
                    let gone = resp.events.iter().find(|e| {
                        e.kind == Kind::Left as i32 && e.node.as_ref().is_some_and(|n| n.node_id == victim)
                    });
                    if let Some(e) = gone {
                        let at = rt::now();
                        left = Some((e.revision, at));
                        for (revision, seen, shards) in early.drain(..) {
                            for shard in shards {
                                if waiting.remove(&shard) && revision > e.revision {
                                    latency.record(seen.saturating_duration_since(at).as_micros() as u64)?;
                                    counted += 1;
                                }
                            }
                        }
                    }
                }
                resp = assignments.recv() => {
                    let resp = resp.context("assignment watch ended")??;
                    let now = rt::now();
                    let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                    let lost: Vec<u32> = resp
                        .assignments
                        .iter()
                        .filter(|a| a.role != Role::Leader as i32)
                        .filter_map(|a| a.shard.as_ref().map(|s| s.shard))
                        .collect();
                    match left {
                        None => early.push((revision, now, lost)),
                        Some((left_at, at)) => {
                            for shard in lost {
                                if waiting.remove(&shard) && revision > left_at {
                                    latency.record((now - at).as_micros() as u64)?;
                                    counted += 1;
                                }
                            }
                        }
                    }
                }
                _ = rt::sleep(PATIENCE) => anyhow::bail!("broker {victim}'s shards did not move in {PATIENCE:?}"),
            }
        }
        moved += counted;
        eprintln!(
            "failover: round {victim}: broker {victim} led {led} shards, {counted} of them failed over; the slowest so far took {:.1} ms",
            latency.max() as f64 / 1000.0
        );
        // Back, for the next round's balance.
        alive.insert(victim, register(&client, victim).await?);
    }
    let measured = Measured { latency, errors: BTreeMap::new(), elapsed: rt::now() - measuring };
    client.delete_topic(CLUSTER, TOPIC, 0).await?;
    Ok(Failover { measured, moved, placed_in })
}
