//! Topics and their shards on the key space: where they live, how they are
//! encoded and what a topic may be. Pure: the service (`api::topics`) and
//! the controller (`api::controller`, deciding with [`super::controller`])
//! read and write these through the same state machine as everything else.
//!
//! - `/placement/topics/<cluster>/<topic>`: a [`TopicRecord`] as JSON,
//!   written by CreateTopic and UpdateTopic.
//! - `/placement/shards/<cluster>/<topic>/<shard>`: a [`ShardRecord`] as
//!   JSON, written by the controller (placement, failover, rebalancing),
//!   MoveShard, and the shard's leader reporting its status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::controller::Broker;
use super::offsets::check_segment;
use super::{check_cluster, prefix_range, PlacementError};
use crate::proto::mvccpb::KeyValue;
use crate::proto::placement::v1::{MoveShardRequest, Shard, ShardStatus, Topic, TopicSpec};

/// Prefix of every topic.
pub const TOPICS_PREFIX: &str = "/placement/topics/";
/// Prefix of every shard.
pub const SHARDS_PREFIX: &str = "/placement/shards/";
/// Most shards one topic may have: the controller places a topic's shards
/// in transactions of bounded size, and a describe answers all of them.
pub const MAX_SHARDS: u32 = 10_000;
/// Most replicas of one shard.
pub const MAX_REPLICATION: u32 = 7;
/// Most shards one status report may hold: its transaction compares each
/// shard and the broker's registration, within a transaction's 128.
pub const MAX_REPORTED_SHARDS: usize = 127;

/// What is stored for a topic (its cluster and name are its key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// How many shards it has.
    pub shards: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// Only brokers with this role hold its shards ("": any).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Replicas of a shard have distinct values of this broker label ("":
    /// no constraint).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spread_label: String,
}

/// What is stored for a shard (its cluster, topic and number are its key).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShardRecord {
    /// Brokers holding a replica, in placement order.
    pub replicas: Vec<u64>,
    /// The registration epoch of each replica's broker when it was placed.
    pub broker_epochs: BTreeMap<u64, i64>,
    /// The leading broker; 0: none.
    pub leader: u64,
    /// Grows with every change of leader.
    pub leader_epoch: i64,
    /// The replicas in sync with the leader.
    pub in_sync: Vec<u64>,
    /// The high watermark the leader last reported.
    #[serde(default)]
    pub high_watermark: i64,
    /// The revision of the state the controller decided this placement
    /// from (0: an operator's move), so that a decision can be replayed.
    #[serde(default)]
    pub decided_at: i64,
}

impl TopicRecord {
    /// The record of `spec`, checked.
    pub fn from_spec(spec: &TopicSpec) -> Result<Self, PlacementError> {
        check_cluster(&spec.cluster)?;
        check_segment("topic", &spec.name)?;
        let bad = |what, why: String| Err(PlacementError::BadField { what, why });
        if spec.shards == 0 || spec.shards > MAX_SHARDS {
            return bad("shards", format!("{} shards: use 1 to {MAX_SHARDS}", spec.shards));
        }
        if spec.replication_factor == 0 || spec.replication_factor > MAX_REPLICATION {
            return bad("replication_factor", format!("{}: use 1 to {MAX_REPLICATION}", spec.replication_factor));
        }
        for (what, name) in [("role", &spec.role), ("spread_label", &spec.spread_label)] {
            if !name.is_empty() {
                super::check_name(what, name)?;
            }
        }
        Ok(Self {
            shards: spec.shards,
            replication_factor: spec.replication_factor,
            role: spec.role.clone(),
            spread_label: spec.spread_label.clone(),
        })
    }

    /// Refuses a change a topic cannot take: fewer shards (their data and
    /// offsets would be orphaned).
    pub fn check_update(&self, next: &TopicRecord) -> Result<(), PlacementError> {
        if next.shards < self.shards {
            return Err(PlacementError::BadField {
                what: "shards",
                why: format!(
                    "{} is fewer than the topic's {}: a topic's shard count only grows",
                    next.shards, self.shards
                ),
            });
        }
        Ok(())
    }

    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored in `value`.
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    /// The topic as answered, from its stored key value.
    pub fn to_topic(&self, cluster: &str, name: &str, kv: &KeyValue) -> Topic {
        Topic {
            spec: Some(TopicSpec {
                cluster: cluster.to_string(),
                name: name.to_string(),
                shards: self.shards,
                replication_factor: self.replication_factor,
                role: self.role.clone(),
                spread_label: self.spread_label.clone(),
            }),
            revision: kv.mod_revision,
            create_revision: kv.create_revision,
        }
    }
}

impl ShardRecord {
    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record stored in `value`.
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    /// The shard as answered.
    pub fn to_shard(&self, topic: &str, shard: u32, revision: i64) -> Shard {
        Shard {
            topic: topic.to_string(),
            shard,
            replicas: self.replicas.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            in_sync: self.in_sync.clone(),
            high_watermark: self.high_watermark,
            broker_epochs: self.broker_epochs.clone().into_iter().collect(),
            revision,
        }
    }

    /// Whether `broker` holds a replica.
    pub fn holds(&self, broker: u64) -> bool {
        self.replicas.contains(&broker)
    }

    /// The record without what only its leader's reports change: equal for
    /// two versions the controller and the replicas see as the same.
    pub fn placement(&self) -> (&[u64], u64, i64, &[u64]) {
        (&self.replicas, self.leader, self.leader_epoch, &self.in_sync)
    }
}

/// `record` with the status its leader `node_id` reports, or why the report
/// is refused: the reporter must lead the shard at the reported leader
/// epoch, and report an in-sync set of replicas that holds itself.
pub fn with_status(
    cluster: &str,
    node_id: u64,
    record: &ShardRecord,
    status: &ShardStatus,
) -> Result<ShardRecord, PlacementError> {
    let (topic, shard) = (status.topic.clone(), status.shard);
    if status.leader_epoch != record.leader_epoch {
        return Err(PlacementError::StaleLeaderEpoch {
            cluster: cluster.to_string(),
            topic,
            shard,
            given: status.leader_epoch,
            current: record.leader_epoch,
        });
    }
    if record.leader != node_id {
        return Err(PlacementError::NotShardLeader {
            cluster: cluster.to_string(),
            topic,
            shard,
            node_id,
            leader: record.leader,
        });
    }
    let bad = |why: String| PlacementError::BadField { what: "in_sync", why: format!("shard {topic}/{shard}: {why}") };
    if !status.in_sync.contains(&node_id) {
        return Err(bad(format!("the leader {node_id} is not in it")));
    }
    if let Some(b) = status.in_sync.iter().find(|b| !record.holds(**b)) {
        return Err(bad(format!("{b} is not a replica (replicas: {:?})", record.replicas)));
    }
    let mut next = record.clone();
    // In replica order, each once.
    next.in_sync = record.replicas.iter().copied().filter(|b| status.in_sync.contains(b)).collect();
    next.high_watermark = status.high_watermark;
    Ok(next)
}

/// `current` moved as an operator asks: a replica from `req.from` to
/// `req.to`, then the leadership to `req.leader` (an in-sync replica, or
/// with `unclean` any live replica). `brokers`: the registered brokers.
pub fn moved(
    topic: &TopicRecord,
    current: &ShardRecord,
    brokers: &BTreeMap<u64, Broker>,
    req: &MoveShardRequest,
) -> Result<ShardRecord, PlacementError> {
    let refuse = |why: String| {
        Err(PlacementError::BadMove { cluster: req.cluster.clone(), topic: req.topic.clone(), shard: req.shard, why })
    };
    let live = |b: u64, record: &ShardRecord| {
        brokers.get(&b).is_some_and(|broker| record.broker_epochs.get(&b) == Some(&broker.epoch))
    };
    let mut next = current.clone();
    match (req.from, req.to) {
        (0, 0) if req.leader == 0 => return refuse("nothing to move: give a leader, or from and to".into()),
        (0, 0) => {}
        (from, to) if from == 0 || to == 0 => return refuse(format!("from {from} and to {to}: give both")),
        (from, to) => {
            if !current.holds(from) {
                return refuse(format!("{from} holds no replica of it (replicas: {:?})", current.replicas));
            }
            if current.holds(to) {
                return refuse(format!("{to} holds a replica of it already"));
            }
            let Some(broker) = brokers.get(&to).filter(|b| super::controller::eligible(topic, b)) else {
                return refuse(format!("{to} is not a registered broker this topic may be placed on"));
            };
            if let Some(z) = super::controller::zone(topic, broker) {
                let shared = current
                    .replicas
                    .iter()
                    .filter(|b| **b != from)
                    .any(|b| brokers.get(b).and_then(|o| super::controller::zone(topic, o)) == Some(z));
                if shared {
                    return refuse(format!("{to} has {}={z}, as another replica has", topic.spread_label));
                }
            }
            for b in next.replicas.iter_mut() {
                if *b == from {
                    *b = to;
                }
            }
            next.broker_epochs.remove(&from);
            next.broker_epochs.insert(to, broker.epoch);
            next.in_sync.retain(|b| *b != from);
            if next.leader == from && req.leader == 0 {
                return refuse(format!("{from} leads it: give the leader to move it to as well"));
            }
        }
    }
    if req.leader != 0 && req.leader != current.leader {
        let target = req.leader;
        if !next.holds(target) || !live(target, &next) {
            return refuse(format!("{target} is not a live replica of it (replicas: {:?})", next.replicas));
        }
        if !next.in_sync.contains(&target) {
            if !req.unclean {
                return refuse(format!(
                    "{target} is not in sync (in sync: {:?}): ask for an unclean election to force it",
                    next.in_sync
                ));
            }
            next.in_sync = vec![target];
        }
        next.leader = target;
        next.leader_epoch = current.leader_epoch + 1;
    }
    next.decided_at = 0;
    Ok(next)
}

/// Where `topic` of `cluster` is.
pub fn topic_key(cluster: &str, topic: &str) -> Vec<u8> {
    format!("{TOPICS_PREFIX}{cluster}/{topic}").into_bytes()
}

/// Where shard `shard` of `topic` is.
pub fn shard_key(cluster: &str, topic: &str, shard: u32) -> Vec<u8> {
    format!("{SHARDS_PREFIX}{cluster}/{topic}/{shard}").into_bytes()
}

/// The key range of `cluster`'s topics (every cluster's when empty).
pub fn topics_range(cluster: &str) -> (Vec<u8>, Vec<u8>) {
    prefix_range(if cluster.is_empty() { TOPICS_PREFIX.to_string() } else { format!("{TOPICS_PREFIX}{cluster}/") })
}

/// The key range of `cluster`'s shards, of `topic` only when given.
pub fn shards_range(cluster: &str, topic: &str) -> (Vec<u8>, Vec<u8>) {
    prefix_range(if topic.is_empty() {
        format!("{SHARDS_PREFIX}{cluster}/")
    } else {
        format!("{SHARDS_PREFIX}{cluster}/{topic}/")
    })
}

/// The (cluster, topic) a topic key names.
pub fn parse_topic_key(key: &[u8]) -> Option<(&str, &str)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(TOPICS_PREFIX)?;
    let (cluster, topic) = rest.split_once('/')?;
    (!topic.contains('/')).then_some((cluster, topic))
}

/// The (cluster, topic, shard) a shard key names.
pub fn parse_shard_key(key: &[u8]) -> Option<(&str, &str, u32)> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(SHARDS_PREFIX)?;
    let (cluster, rest) = rest.split_once('/')?;
    let (topic, shard) = rest.split_once('/')?;
    Some((cluster, topic, shard.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TopicSpec {
        TopicSpec {
            cluster: "mq".into(),
            name: "orders".into(),
            shards: 8,
            replication_factor: 3,
            role: "journal".into(),
            spread_label: "zone".into(),
        }
    }

    #[test]
    fn topics_that_cannot_be_placed_are_refused_naming_the_field() {
        let cases = [
            (TopicSpec { shards: 0, ..spec() }, "use 1 to 10000"),
            (TopicSpec { shards: MAX_SHARDS + 1, ..spec() }, "use 1 to 10000"),
            (TopicSpec { replication_factor: 0, ..spec() }, "invalid replication_factor"),
            (TopicSpec { replication_factor: 8, ..spec() }, "use 1 to 7"),
            (TopicSpec { name: "a/b".into(), ..spec() }, "invalid topic"),
            (TopicSpec { cluster: String::new(), ..spec() }, "invalid cluster name"),
            (TopicSpec { spread_label: "\n".into(), ..spec() }, "invalid spread_label"),
        ];
        for (s, expected) in cases {
            let e = TopicRecord::from_spec(&s).unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        let record = TopicRecord::from_spec(&spec()).unwrap();
        assert_eq!(TopicRecord::decode(&record.encode()), Ok(record.clone()));
        let fewer = TopicRecord { shards: 4, ..record.clone() };
        assert!(record.check_update(&fewer).unwrap_err().to_string().contains("only grows"));
        record.check_update(&TopicRecord { shards: 9, replication_factor: 1, ..record.clone() }).unwrap();
    }

    #[test]
    fn keys_parse_back_into_their_names_and_ranges_hold_only_their_own() {
        assert_eq!(parse_topic_key(&topic_key("mq", "t-1")), Some(("mq", "t-1")));
        assert_eq!(parse_shard_key(&shard_key("mq", "t-1", 42)), Some(("mq", "t-1", 42)));
        assert_eq!(parse_shard_key(b"/placement/shards/mq/t/x"), None);
        let (start, end) = shards_range("mq", "t");
        let inside = |k: &[u8]| k >= start.as_slice() && k < end.as_slice();
        assert!(inside(&shard_key("mq", "t", 0)) && inside(&shard_key("mq", "t", u32::MAX)));
        assert!(!inside(&shard_key("mq", "t2", 0)) && !inside(&shard_key("mq2", "t", 0)));
        let (start, end) = topics_range("mq");
        assert!(topic_key("mq", "a").as_slice() >= start.as_slice() && topic_key("mq", "a") < end);
        for other in [topic_key("mq-2", "a"), topic_key("mr", "a"), topic_key("m", "a")] {
            assert!(other < start || other >= end, "{other:?}");
        }
    }
}
