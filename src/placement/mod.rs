//! The placement API's data on top of the etcd key space: where node
//! registrations and cluster settings live, how they are encoded, and what
//! makes a request valid. Pure: the gRPC service (`api::placement`) reads
//! and writes these through the same state machine as the etcd API.
//!
//! Key layout (documented in proto/placement.proto, visible to etcdctl):
//! - `/placement/nodes/<cluster>/<node_id>`: a [`NodeRecord`] as JSON, put
//!   with the lease its heartbeats keep alive; its `mod_revision` is the
//!   registration's epoch (any rewrite of the record makes a new epoch).
//! - `/placement/clusters/<cluster>`: a [`ClusterConfig`] as JSON.
//! - consumer offsets and group generations: see [`offsets`].
//! - topics and shards: see [`topics`]; the controller's decisions about
//!   them: see [`controller`].

pub mod controller;
pub mod offsets;
pub mod topics;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::proto::mvccpb::KeyValue;
use crate::proto::placement::v1::{NodeInfo, RegisterNodeRequest};

/// Prefix of every node registration.
pub const NODES_PREFIX: &str = "/placement/nodes/";
/// Prefix of every cluster's settings.
pub const CLUSTERS_PREFIX: &str = "/placement/clusters/";
/// RobustMQ's default: a broker heartbeats every 3 s...
pub const DEFAULT_HEARTBEAT_INTERVAL_SECS: u32 = 3;
/// ...and expires after 30 s without one.
pub const DEFAULT_EXPIRY_SECS: u32 = 30;
/// Longest cluster name, role, address or label name.
const MAX_NAME: usize = 128;

/// Why a placement request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// A cluster name that is empty, too long or has other characters than
    /// letters, digits, '.', '_' and '-' (it is a key segment).
    #[error("invalid cluster name {0:?}: use 1 to 128 letters, digits, '.', '_' or '-'")]
    BadCluster(String),
    /// Node id 0 (the unset value).
    #[error("node_id must be set (0 is not a node id)")]
    NoNodeId,
    /// A role, address or label that cannot be stored.
    #[error("invalid {what}: {why}")]
    BadField {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A heartbeat (or unregister) without an epoch.
    #[error("epoch must be set (the epoch RegisterNode returned)")]
    NoEpoch,
    /// Heartbeat settings that cannot work.
    #[error("invalid cluster config: {0}")]
    BadConfig(String),
    /// The node is not registered (never, expired, or unregistered).
    #[error("node {node_id} of cluster {cluster} is not registered (expired or unregistered): register it again")]
    NotRegistered {
        /// The node's cluster.
        cluster: String,
        /// The node.
        node_id: u64,
    },
    /// The epoch is not the registration's: the node was registered again.
    #[error(
        "stale epoch {given} for node {node_id} of cluster {cluster}: the current registration has epoch {current}"
    )]
    StaleEpoch {
        /// The node's cluster.
        cluster: String,
        /// The node.
        node_id: u64,
        /// The epoch in the request.
        given: i64,
        /// The registration's epoch.
        current: i64,
    },
    /// A record under the node prefix without a lease: written by hand,
    /// nothing can keep it alive.
    #[error(
        "node {node_id} of cluster {cluster} was written without a lease (not by RegisterNode): register it again"
    )]
    NoLease {
        /// The node's cluster.
        cluster: String,
        /// The node.
        node_id: u64,
    },
    /// A watch from a revision whose history was compacted away.
    #[error("required revision has been compacted: watch from revision {compact_revision} or later")]
    Compacted {
        /// The oldest revision still kept.
        compact_revision: i64,
    },
    /// The registration changed while it was being removed.
    #[error("node {node_id} of cluster {cluster} changed while being unregistered: try again")]
    Raced {
        /// The node's cluster.
        cluster: String,
        /// The node.
        node_id: u64,
    },
    /// An offset commit's generation is below the group's.
    #[error("stale generation {given} for group {group} of cluster {cluster}: the group is at generation {current}")]
    StaleGeneration {
        /// The group's cluster.
        cluster: String,
        /// The consumer group.
        group: String,
        /// The generation in the request.
        given: i64,
        /// The group's generation.
        current: i64,
    },
    /// The group's generation kept changing under the commit (other members
    /// committing for it with other generations).
    #[error("group {group} of cluster {cluster} changed generation while committing: try again")]
    GenerationRaced {
        /// The group's cluster.
        cluster: String,
        /// The consumer group.
        group: String,
    },
    /// CreateTopic of a topic that exists.
    #[error("topic {topic} of cluster {cluster} already exists")]
    TopicExists {
        /// The topic's cluster.
        cluster: String,
        /// The topic.
        topic: String,
    },
    /// No such topic.
    #[error("topic {topic} of cluster {cluster} not found")]
    TopicNotFound {
        /// The topic's cluster.
        cluster: String,
        /// The topic.
        topic: String,
    },
    /// No such shard (its topic is missing or it is not placed yet).
    #[error("shard {topic}/{shard} of cluster {cluster} not found (no such topic, or not placed yet)")]
    ShardNotFound {
        /// The shard's cluster.
        cluster: String,
        /// The shard's topic.
        topic: String,
        /// The shard.
        shard: u32,
    },
    /// A compare-and-set on a record that has changed since the revision given.
    #[error("{what} of cluster {cluster} is at revision {current}, not {given}: read it again")]
    Changed {
        /// The record, e.g. "topic orders".
        what: String,
        /// Its cluster.
        cluster: String,
        /// The revision in the request.
        given: i64,
        /// The record's revision.
        current: i64,
    },
    /// A shard report whose leader epoch is not the shard's.
    #[error(
        "stale leader epoch {given} for shard {topic}/{shard} of cluster {cluster}: the shard is at leader epoch {current}"
    )]
    StaleLeaderEpoch {
        /// The shard's cluster.
        cluster: String,
        /// The shard's topic.
        topic: String,
        /// The shard.
        shard: u32,
        /// The leader epoch in the request.
        given: i64,
        /// The shard's leader epoch.
        current: i64,
    },
    /// A shard report from a broker that does not lead the shard.
    #[error("node {node_id} does not lead shard {topic}/{shard} of cluster {cluster} (its leader is {leader})")]
    NotShardLeader {
        /// The shard's cluster.
        cluster: String,
        /// The shard's topic.
        topic: String,
        /// The shard.
        shard: u32,
        /// The reporting node.
        node_id: u64,
        /// The shard's leader (0: none).
        leader: u64,
    },
    /// A move the shard cannot take.
    #[error("cannot move shard {topic}/{shard} of cluster {cluster}: {why}")]
    BadMove {
        /// The shard's cluster.
        cluster: String,
        /// The shard's topic.
        topic: String,
        /// The shard.
        shard: u32,
        /// Why.
        why: String,
    },
    /// A record changed between the read and the write: nothing was written.
    #[error("{what} of cluster {cluster} changed while being written: try again")]
    WriteRaced {
        /// The record, e.g. "shard orders/3".
        what: String,
        /// Its cluster.
        cluster: String,
    },
}

/// What is stored for a registered node (the epoch and lease are the
/// record's `mod_revision` and `lease`, not part of the value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The broker cluster.
    pub cluster: String,
    /// The node.
    pub node_id: u64,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Its named addresses.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A cluster's heartbeat settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// How often a node should heartbeat.
    pub heartbeat_interval_secs: u32,
    /// How long a node lives without a heartbeat (its lease TTL).
    pub expiry_secs: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self { heartbeat_interval_secs: DEFAULT_HEARTBEAT_INTERVAL_SECS, expiry_secs: DEFAULT_EXPIRY_SECS }
    }
}

impl ClusterConfig {
    /// Refuses settings under which a live node could expire: at least two
    /// heartbeats must fit in the expiry, and the expiry must be a lease TTL
    /// this server grants as is (`min_ttl..=max_ttl` seconds).
    pub fn validate(&self, min_ttl: i64, max_ttl: i64) -> Result<(), PlacementError> {
        let bad = |why: String| Err(PlacementError::BadConfig(why));
        if self.heartbeat_interval_secs == 0 {
            return bad("heartbeat_interval_secs must be at least 1".into());
        }
        if u64::from(self.expiry_secs) < 2 * u64::from(self.heartbeat_interval_secs) {
            return bad(format!(
                "expiry_secs {} must be at least twice heartbeat_interval_secs {}",
                self.expiry_secs, self.heartbeat_interval_secs
            ));
        }
        let expiry = i64::from(self.expiry_secs);
        if expiry < min_ttl || expiry > max_ttl {
            return bad(format!("expiry_secs {expiry} must be within {min_ttl}..={max_ttl} (the lease TTLs served)"));
        }
        Ok(())
    }

    /// The settings stored in `value`.
    pub fn decode(value: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|e| e.to_string())
    }

    /// What is stored.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Checks a cluster name (it is one key segment).
pub fn check_cluster(cluster: &str) -> Result<(), PlacementError> {
    let ok = !cluster.is_empty()
        && cluster.len() <= MAX_NAME
        && cluster.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PlacementError::BadCluster(cluster.to_string()))
    }
}

/// Checks the identity part of a request: cluster and node id.
pub fn check_node(cluster: &str, node_id: u64) -> Result<(), PlacementError> {
    check_cluster(cluster)?;
    if node_id == 0 {
        return Err(PlacementError::NoNodeId);
    }
    Ok(())
}

pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), PlacementError> {
    let why = if name.is_empty() {
        "must not be empty".to_string()
    } else if name.len() > MAX_NAME {
        format!("{:?}... is longer than {MAX_NAME} bytes", name.chars().take(16).collect::<String>())
    } else if name.chars().any(char::is_control) {
        format!("{name:?} has control characters")
    } else {
        return Ok(());
    };
    Err(PlacementError::BadField { what, why })
}

impl From<RegisterNodeRequest> for NodeRecord {
    fn from(req: RegisterNodeRequest) -> Self {
        Self {
            cluster: req.cluster,
            node_id: req.node_id,
            roles: req.roles,
            addresses: req.addresses,
            labels: req.labels,
        }
    }
}

impl NodeRecord {
    /// Checks everything a registration stores.
    pub fn validate(&self) -> Result<(), PlacementError> {
        check_node(&self.cluster, self.node_id)?;
        let mut seen = std::collections::BTreeSet::new();
        for role in &self.roles {
            check_name("role", role)?;
            if !seen.insert(role) {
                return Err(PlacementError::BadField { what: "role", why: format!("{role:?} is given twice") });
            }
        }
        for (name, addr) in &self.addresses {
            check_name("address name", name)?;
            if addr.is_empty() {
                return Err(PlacementError::BadField { what: "address", why: format!("{name:?} has no address") });
            }
        }
        for name in self.labels.keys() {
            check_name("label name", name)?;
        }
        Ok(())
    }

    /// The record's key.
    pub fn key(&self) -> Vec<u8> {
        node_key(&self.cluster, self.node_id)
    }

    /// The stored value.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The node a stored record describes, checked against its key (a record
    /// written by hand under the prefix may say anything).
    pub fn decode(kv: &KeyValue) -> Result<NodeInfo, String> {
        let record: NodeRecord = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        if record.key() != kv.key {
            return Err(format!(
                "record names node {} of cluster {:?}, which is not its key",
                record.node_id, record.cluster
            ));
        }
        Ok(NodeInfo {
            cluster: record.cluster,
            node_id: record.node_id,
            roles: record.roles,
            addresses: record.addresses,
            labels: record.labels,
            epoch: kv.mod_revision,
            lease_id: kv.lease,
        })
    }
}

/// Where node `node_id` of `cluster` is registered.
pub fn node_key(cluster: &str, node_id: u64) -> Vec<u8> {
    format!("{NODES_PREFIX}{cluster}/{node_id}").into_bytes()
}

/// The key range of `cluster`'s nodes, or of every cluster's when empty:
/// (key, range_end) as etcd's prefix reads take it.
pub fn nodes_range(cluster: &str) -> (Vec<u8>, Vec<u8>) {
    prefix_range(if cluster.is_empty() { NODES_PREFIX.to_string() } else { format!("{NODES_PREFIX}{cluster}/") })
}

/// The key range of every key under `prefix` (which ends in '/'): (key,
/// range_end) as etcd's prefix reads take it.
fn prefix_range(prefix: String) -> (Vec<u8>, Vec<u8>) {
    let key = prefix.into_bytes();
    let mut end = key.clone();
    // The prefixes end in '/', which is below 0xff: bumping the last byte is the prefix end.
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    (key, end)
}

/// Where `cluster`'s settings are.
pub fn cluster_key(cluster: &str) -> Vec<u8> {
    format!("{CLUSTERS_PREFIX}{cluster}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> NodeRecord {
        NodeRecord {
            cluster: "mq-1".into(),
            node_id: 7,
            roles: vec!["mqtt".into(), "journal".into()],
            addresses: [("grpc".to_string(), "10.0.0.5:1228".to_string())].into(),
            labels: [("zone".to_string(), "a".to_string())].into(),
        }
    }

    #[test]
    fn a_record_reads_back_with_epoch_and_lease_from_its_key_value() {
        let r = record();
        let kv = KeyValue { key: r.key(), value: r.encode(), mod_revision: 42, lease: 9, ..Default::default() };
        let info = NodeRecord::decode(&kv).unwrap();
        assert_eq!((info.cluster.as_str(), info.node_id, info.epoch, info.lease_id), ("mq-1", 7, 42, 9));
        assert_eq!(info.roles, r.roles);
        assert_eq!(info.addresses, r.addresses);
        assert_eq!(info.labels, r.labels);
    }

    #[test]
    fn a_record_under_another_key_or_not_json_is_refused() {
        let r = record();
        let moved = KeyValue { key: node_key("mq-1", 8), value: r.encode(), ..Default::default() };
        assert!(NodeRecord::decode(&moved).unwrap_err().contains("not its key"));
        let garbage = KeyValue { key: r.key(), value: b"\xff{".to_vec(), ..Default::default() };
        assert!(NodeRecord::decode(&garbage).is_err());
    }

    #[test]
    fn requests_that_cannot_be_stored_are_refused_naming_the_field() {
        let cases: Vec<(NodeRecord, &str)> = vec![
            (NodeRecord { cluster: String::new(), ..record() }, "invalid cluster name"),
            (NodeRecord { cluster: "a/b".into(), ..record() }, "invalid cluster name"),
            (NodeRecord { node_id: 0, ..record() }, "node_id must be set"),
            (NodeRecord { roles: vec!["mqtt".into(), "mqtt".into()], ..record() }, "given twice"),
            (NodeRecord { roles: vec![String::new()], ..record() }, "invalid role"),
            (NodeRecord { addresses: [("grpc".into(), String::new())].into(), ..record() }, "has no address"),
            (NodeRecord { labels: [("x".repeat(200), "v".into())].into(), ..record() }, "longer than 128"),
        ];
        for (r, expected) in cases {
            let e = r.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        record().validate().unwrap();
    }

    #[test]
    fn cluster_settings_must_leave_room_for_two_heartbeats_within_lease_limits() {
        let ok = ClusterConfig::default();
        ok.validate(3, 1000).unwrap();
        let cases = [
            (ClusterConfig { heartbeat_interval_secs: 0, expiry_secs: 30 }, "at least 1"),
            (ClusterConfig { heartbeat_interval_secs: 20, expiry_secs: 30 }, "at least twice"),
            (ClusterConfig { heartbeat_interval_secs: 1, expiry_secs: 2 }, "within 3..=1000"),
            (ClusterConfig { heartbeat_interval_secs: 1, expiry_secs: 5000 }, "within 3..=1000"),
        ];
        for (config, expected) in cases {
            let e = config.validate(3, 1000).unwrap_err().to_string();
            assert!(e.contains(expected), "{e:?} should say {expected:?}");
        }
        assert_eq!(ClusterConfig::decode(&ok.encode()), Ok(ok));
    }

    #[test]
    fn the_node_range_of_a_cluster_holds_its_nodes_only() {
        let (start, end) = nodes_range("mq");
        let inside = |k: &[u8]| k >= start.as_slice() && k < end.as_slice();
        assert!(inside(&node_key("mq", 1)));
        assert!(inside(&node_key("mq", u64::MAX)));
        assert!(!inside(&node_key("mq-2", 1)));
        assert!(!inside(&node_key("mp", 1)));
        let (all_start, all_end) = nodes_range("");
        assert!(node_key("zz", 1).as_slice() < all_end.as_slice() && node_key("a", 1) >= all_start);
    }
}
