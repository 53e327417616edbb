//! Shards in the simulation: topics whose shards the controller places on
//! the simulated brokers (one zone each), which lead them and report their
//! status (`brokers`); the checks over the applied history of the shard
//! records and registrations (`checker::shards`), and the replay of every
//! controller decision from the state it was decided from.

use std::collections::BTreeMap;
use std::time::Duration;

use placement_center::api::controller::REBALANCE_MOVES;
use placement_center::placement::controller::{decide, View};
use placement_center::placement::topics::{self, ShardRecord, TopicRecord};
use placement_center::placement::{self as placement, NodeRecord, NODES_PREFIX};
use placement_center::proto::mvccpb::KeyValue;
use placement_center::proto::placement::v1::TopicSpec;
use placement_center::runtime;

use crate::brokers::{client, CLUSTER};
use crate::checker::shards::{Change, ShardState};
use crate::checker::watch::WatchEvent;

/// The topics the brokers serve: (name, shards, replication factor, spread
/// label). Two replicas in distinct zones leave a broker free to take a
/// gone one's place; three (every broker) make elections choose between
/// in-sync and lagging replicas.
pub const TOPICS: [(&str, u32, u32, &str); 2] = [("s", 4, 2, "zone"), ("r", 2, 3, "")];

/// Creates the topics (retried until done).
pub async fn create_topic(addrs: Vec<String>) {
    let client = client(&addrs);
    for (name, shards, replication_factor, spread_label) in TOPICS {
        let spec = TopicSpec {
            cluster: CLUSTER.into(),
            name: name.into(),
            shards,
            replication_factor,
            role: "mqtt".into(),
            spread_label: spread_label.into(),
        };
        let mut created = false;
        for _ in 0..50 {
            match client.create_topic(spec.clone()).await {
                Ok(_) => created = true,
                Err(e) if e.code() == tonic::Code::AlreadyExists => created = true,
                Err(_) => runtime::sleep(Duration::from_millis(200)).await,
            }
            if created {
                break;
            }
        }
        assert!(created, "the simulated brokers' topic {name} could not be created");
    }
}

/// Per topic with a spread label, the brokers' values of it (`zones`: each
/// broker's zone), as the shard checker takes them.
pub fn spread(zones: &BTreeMap<u64, String>) -> BTreeMap<String, BTreeMap<u64, String>> {
    TOPICS.iter().filter(|t| !t.3.is_empty()).map(|t| (t.0.to_string(), zones.clone())).collect()
}

fn state(record: &ShardRecord) -> ShardState {
    ShardState {
        replicas: record.replicas.clone(),
        broker_epochs: record.broker_epochs.clone(),
        leader: record.leader,
        leader_epoch: record.leader_epoch,
        in_sync: record.in_sync.clone(),
    }
}

/// The changes of the brokers' cluster's shard records and registrations,
/// revision by revision, from the replicas' applied history.
pub fn history(events: &BTreeMap<i64, Vec<WatchEvent>>) -> Vec<(i64, Vec<Change>)> {
    let nodes = format!("{NODES_PREFIX}{CLUSTER}/");
    let shards = format!("{}{CLUSTER}/", topics::SHARDS_PREFIX);
    let mut applied = Vec::new();
    for (revision, events) in events {
        let mut changes = Vec::new();
        for e in events {
            if let Some(id) = e.key.strip_prefix(&nodes) {
                let Ok(broker) = id.parse() else { continue };
                changes.push(Change::Registration { broker, epoch: e.put.then_some(e.revision) });
            } else if let Some(shard) = e.key.strip_prefix(&shards) {
                let record = if e.put { ShardRecord::decode(e.value.as_bytes()).ok().map(|r| state(&r)) } else { None };
                changes.push(Change::Shard { shard: shard.to_string(), record });
            }
        }
        // Every revision counts, with or without such a change: a gap is a
        // revision missing from the collected history.
        applied.push((*revision, changes));
    }
    applied
}

/// Replays every decision of the controller from the state it was decided
/// from (`decided_at`), where the collected history holds that state whole:
/// the record written must be the one `decide` gives. The number replayed,
/// and the mismatches.
pub fn replay(events: &BTreeMap<i64, Vec<WatchEvent>>) -> (usize, Vec<String>) {
    let prefixes = [
        format!("{NODES_PREFIX}{CLUSTER}/"),
        format!("{}{CLUSTER}/", topics::TOPICS_PREFIX),
        format!("{}{CLUSTER}/", topics::SHARDS_PREFIX),
    ];
    // The placement keys after each revision, while the history is whole.
    let mut keys: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut at: BTreeMap<i64, BTreeMap<String, (String, i64)>> = BTreeMap::new();
    // The store starts at revision 1; its first write is revision 2.
    let mut whole = events.keys().next() == Some(&2);
    let mut previous = 1;
    let mut written: Vec<(i64, String, ShardRecord, Option<ShardRecord>)> = Vec::new();
    for (revision, events) in events {
        if *revision != previous + 1 {
            whole = false;
        }
        previous = *revision;
        for e in events.iter().filter(|e| prefixes.iter().any(|p| e.key.starts_with(p.as_str()))) {
            let before = keys.get(&e.key).and_then(|(v, _)| ShardRecord::decode(v.as_bytes()).ok());
            if e.put {
                keys.insert(e.key.clone(), (e.value.clone(), e.revision));
            } else {
                keys.remove(&e.key);
            }
            if let (true, Some(record)) = (e.put, ShardRecord::decode(e.value.as_bytes()).ok()) {
                if e.key.starts_with(prefixes[2].as_str()) {
                    written.push((*revision, e.key.clone(), record, before));
                }
            }
        }
        if whole {
            at.insert(*revision, keys.clone());
        }
    }
    let mut replayed = 0;
    let mut mismatches = Vec::new();

    for (revision, key, record, before) in written {
        // A decision: a new decided_at (reports keep the one they found).
        let decided = record.decided_at > 0 && before.as_ref().is_none_or(|b| b.decided_at != record.decided_at);
        let Some(state) = at.get(&record.decided_at).filter(|_| decided) else { continue };
        let view = view(record.decided_at, state);
        let Some((_, topic, shard)) = topics::parse_shard_key(key.as_bytes()) else { continue };
        let found = [0, REBALANCE_MOVES].iter().find_map(|moves| {
            decide(&view, *moves).into_iter().find(|d| d.topic == topic && d.shard == shard).map(|d| d.record)
        });
        replayed += 1;
        if found.as_ref() != Some(&record) {
            mismatches.push(format!(
                "the controller wrote {key} at revision {revision} as {record:?}, but deciding again from revision {} gives {found:?}",
                record.decided_at
            ));
        }
    }
    (replayed, mismatches)
}

/// The controller's view of the brokers' cluster from its placement keys.
fn view(revision: i64, keys: &BTreeMap<String, (String, i64)>) -> View {
    let mut view = View { cluster: CLUSTER.to_string(), revision, ..Default::default() };
    for (key, (value, mod_revision)) in keys {
        let bytes = key.as_bytes();
        if let Some((_, name)) = topics::parse_topic_key(bytes) {
            if let Ok(record) = TopicRecord::decode(value.as_bytes()) {
                view.topics.insert(name.to_string(), (record, *mod_revision));
            }
        } else if let Some((_, topic, shard)) = topics::parse_shard_key(bytes) {
            if let Ok(record) = ShardRecord::decode(value.as_bytes()) {
                view.shards.insert((topic.to_string(), shard), (record, *mod_revision));
            }
        } else {
            let kv = KeyValue {
                key: bytes.to_vec(),
                value: value.as_bytes().to_vec(),
                mod_revision: *mod_revision,
                ..Default::default()
            };
            if let Ok(node) = NodeRecord::decode(&kv) {
                let broker =
                    placement::controller::Broker { epoch: node.epoch, roles: node.roles, labels: node.labels };
                view.brokers.insert(node.node_id, broker);
            }
        }
    }
    view
}
