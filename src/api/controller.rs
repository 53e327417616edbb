//! The controller: one task per member that acts only while the member
//! leads. After every applied change to brokers, topics or shards (and once
//! per [`REBALANCE_PAUSE`] for rebalancing) it brings its views of the
//! state up to date ([`Views`]: only what changed is read again), asks
//! [`controller::decide`] what to write for each cluster with topics, and
//! proposes the decisions as transactions conditioned on what they were
//! decided from. A decision made on a view that changed meanwhile fails its
//! compares and is decided again from the new view; a new leader simply
//! resumes from the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::context::ApiContext;
use super::topics::{brokers, mod_is, put};
use crate::placement::controller::{self, Decision, Reason, View};
use crate::placement::topics::{self, ShardRecord, TopicRecord};
use crate::placement::{self, NODES_PREFIX};
use crate::proto::etcdserverpb::{RangeRequest, TxnRequest};
use crate::proto::mvccpb::event::EventType;
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::proto::raft::v1::{command, Command};
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{KeyRange, KvState, MAX_TXN_OPS};

/// How often the controller considers rebalancing (moves are rate limited
/// to [`REBALANCE_MOVES`] per pause, so a broker joining does not move a
/// flood of shards at once).
pub const REBALANCE_PAUSE: Duration = Duration::from_secs(1);
/// Rebalancing moves per pause at most.
pub const REBALANCE_MOVES: usize = 16;
/// Decision transactions in flight at once: placing a 10,000-shard topic is
/// about a hundred transactions, pipelined rather than one at a time.
const IN_FLIGHT: usize = 8;

/// The controller's loop: runs on every member until shutdown, decides only
/// on the leader.
pub async fn run(ctx: Arc<ApiContext>) {
    let mut shutdown = ctx.shutdown.clone();
    let mut applied = ctx.node.applied_revision();
    // Empty whenever this member does not lead: the first round after it
    // becomes leader reads them whole.
    let mut views = Views::default();
    let mut last_rebalance = runtime::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            changed = applied.changed() => if changed.is_err() { return },
            _ = runtime::sleep(REBALANCE_PAUSE) => {}
        }
        if !ctx.node.is_leader() {
            views = Views::default();
            continue;
        }
        let rebalance = runtime::now().duration_since(last_rebalance) >= REBALANCE_PAUSE;
        let changed = views.update(&read_state(ctx.node.state()));
        if !rebalance && !changed {
            continue;
        }
        if rebalance {
            last_rebalance = runtime::now();
        }
        let moves = if rebalance { REBALANCE_MOVES } else { 0 };
        for view in views.all() {
            let decisions = controller::decide(view, moves);
            if !decisions.is_empty() {
                write(&ctx, &view.cluster, &decisions).await;
            }
        }
    }
}

/// The controller's views of every cluster with topics, kept from one round
/// to the next. A round reads again only the records that changed since the
/// views' revision (the history's events), so it costs what changed, not a
/// decode of every shard of every cluster under the state's lock (10,000
/// shards were read whole after each change and at every rebalancing pause).
/// They are read whole when there is no such history (the first round, or
/// the history compacted) and when a cluster gets its first topic. In
/// builds with debug assertions (the tests, the simulator) every update is
/// checked against the views read whole.
#[derive(Debug, Default)]
pub struct Views {
    /// The revision the views are at (0: not read yet).
    revision: i64,
    by_cluster: BTreeMap<String, View>,
}

impl Views {
    /// Brings the views up to `state`. True if anything they are made of
    /// changed since the last update (always when they were read whole).
    pub fn update(&mut self, state: &KvState) -> bool {
        let changed = match self.revision {
            0 => None,
            at if at == state.revision() => Some(false),
            _ => self.apply_changes(state),
        };
        let changed = changed.unwrap_or_else(|| {
            self.by_cluster = views(state).into_iter().map(|v| (v.cluster.clone(), v)).collect();
            true
        });
        self.revision = state.revision();
        for view in self.by_cluster.values_mut() {
            view.revision = self.revision;
        }
        debug_assert_eq!(
            self.by_cluster.values().collect::<Vec<_>>(),
            views(state).iter().collect::<Vec<_>>(),
            "the controller's views drifted from the state"
        );
        changed
    }

    /// The views, one per cluster with topics, by cluster name.
    pub fn all(&self) -> impl Iterator<Item = &View> {
        self.by_cluster.values()
    }

    /// Applies the events after `self.revision` to the views, as
    /// [`views`] would read them; `None` if they must be read whole instead.
    fn apply_changes(&mut self, state: &KvState) -> Option<bool> {
        let mut changed = false;
        let mut brokers_changed = BTreeSet::new();
        for (_, events) in state.events_from(self.revision + 1).ok()? {
            for event in events {
                let Some(kv) = &event.kv else { continue };
                let deleted = event.r#type == EventType::Delete as i32;
                if kv.key.starts_with(NODES_PREFIX.as_bytes()) {
                    changed = true;
                    let under = |cluster: &String| inside(placement::nodes_range(cluster), &kv.key);
                    brokers_changed.extend(self.by_cluster.keys().filter(|c| under(c)).cloned());
                } else if kv.key.starts_with(topics::TOPICS_PREFIX.as_bytes()) {
                    changed = true;
                    let Some((cluster, name)) = topics::parse_topic_key(&kv.key) else { continue };
                    let record = if deleted { None } else { TopicRecord::decode(&kv.value).ok() };
                    match (record, self.by_cluster.get_mut(cluster)) {
                        (Some(record), Some(view)) => {
                            view.topics.insert(name.to_string(), (record, kv.mod_revision));
                        }
                        // A cluster's first topic: read whole.
                        (Some(_), None) => return None,
                        (None, Some(view)) => {
                            view.topics.remove(name);
                            if view.topics.is_empty() {
                                self.by_cluster.remove(cluster);
                            }
                        }
                        (None, None) => {}
                    }
                } else if kv.key.starts_with(topics::SHARDS_PREFIX.as_bytes()) {
                    changed = true;
                    let Some((_, topic, shard)) = topics::parse_shard_key(&kv.key) else { continue };
                    let record = if deleted { None } else { ShardRecord::decode(&kv.value).ok() };
                    let under = |view: &View| inside(topics::shards_range(&view.cluster, ""), &kv.key);
                    for view in self.by_cluster.values_mut().filter(|v| under(v)) {
                        let at = (topic.to_string(), shard);
                        match &record {
                            Some(record) => view.shards.insert(at, (record.clone(), kv.mod_revision)),
                            None => view.shards.remove(&at),
                        };
                    }
                }
            }
        }
        for cluster in brokers_changed {
            if let Some(view) = self.by_cluster.get_mut(&cluster) {
                view.brokers = brokers(state, &cluster);
            }
        }
        Some(changed)
    }
}

/// Whether `inner` is inside the range (`key`, `range_end`), taken as the
/// reads of [`views`] and [`brokers`] take it, so an update covers exactly
/// the keys they read.
fn inside((key, range_end): (Vec<u8>, Vec<u8>), inner: &[u8]) -> bool {
    KeyRange::new(&key, &range_end).contains(inner)
}

/// The view of every cluster with topics in `state`, read whole.
pub fn views(state: &KvState) -> Vec<View> {
    let (key, range_end) = topics::topics_range("");
    let found = state.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs);
    let mut by_cluster: BTreeMap<String, View> = BTreeMap::new();
    for kv in found.unwrap_or_default() {
        let Some((cluster, name)) = topics::parse_topic_key(&kv.key) else { continue };
        let Ok(record) = TopicRecord::decode(&kv.value) else {
            tracing::warn!(cluster, topic = name, "unreadable topic record (written by hand?): not placed");
            continue;
        };
        let view = by_cluster.entry(cluster.to_string()).or_insert_with(|| View {
            cluster: cluster.to_string(),
            revision: state.revision(),
            ..Default::default()
        });
        view.topics.insert(name.to_string(), (record, kv.mod_revision));
    }
    for view in by_cluster.values_mut() {
        view.brokers = brokers(state, &view.cluster);
        let (key, range_end) = topics::shards_range(&view.cluster, "");
        let found = state.range(&RangeRequest { key, range_end, ..Default::default() }).map(|r| r.kvs);
        for kv in found.unwrap_or_default() {
            let Some((_, topic, shard)) = topics::parse_shard_key(&kv.key) else { continue };
            // An unreadable record (written by hand) is placed anew.
            if let Ok(record) = ShardRecord::decode(&kv.value) {
                view.shards.insert((topic.to_string(), shard), (record, kv.mod_revision));
            }
        }
    }
    by_cluster.into_values().collect()
}

/// The decisions as transactions of at most `MAX_TXN_OPS` compares and puts
/// each (a decision's conditions and record in one transaction).
pub fn transactions(cluster: &str, decisions: &[Decision]) -> Vec<TxnRequest> {
    let mut txns = Vec::new();
    let mut conditions: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    let mut puts = Vec::new();
    for d in decisions {
        let added = d.conditions.keys().filter(|k| !conditions.contains_key(*k)).count();
        if !puts.is_empty() && (conditions.len() + added > MAX_TXN_OPS || puts.len() == MAX_TXN_OPS) {
            txns.push(txn(std::mem::take(&mut conditions), std::mem::take(&mut puts)));
        }
        conditions.extend(d.conditions.iter().map(|(k, v)| (k.clone(), *v)));
        puts.push(put(&topics::shard_key(cluster, &d.topic, d.shard), d.record.encode()));
    }
    if !puts.is_empty() {
        txns.push(txn(conditions, puts));
    }
    txns
}

fn txn(conditions: BTreeMap<Vec<u8>, i64>, success: Vec<crate::proto::etcdserverpb::RequestOp>) -> TxnRequest {
    TxnRequest { compare: conditions.iter().map(|(k, rev)| mod_is(k, *rev)).collect(), success, failure: Vec::new() }
}

/// Proposes `cluster`'s `decisions` (while this member leads), a few
/// transactions at once.
async fn write(ctx: &ApiContext, cluster: &str, decisions: &[Decision]) {
    let count = |reason| decisions.iter().filter(|d| d.reason == reason).count();
    let placed = count(Reason::Place);
    let (repaired, failed_over) = (count(Reason::Repair), count(Reason::Failover));
    let (leaderless, moved) = (count(Reason::Leaderless), count(Reason::Rebalance));
    let txns = transactions(cluster, decisions);
    let results: Vec<bool> = futures::stream::iter(txns)
        .map(|t| async move {
            let command = Command { auth_revision: None, alarm_disarms: None, request: Some(command::Request::Txn(t)) };
            if let Err(e) = KvState::validate(&command) {
                debug_assert!(false, "the controller made an invalid transaction: {e}");
                tracing::error!(cause = %e, "the controller made an invalid transaction");
                return false;
            }
            match ctx.node.propose_as_leader(command).await {
                Ok(Some(applied)) => matches!(applied.response, Some(Applied::Txn(ref t)) if t.succeeded),
                Ok(None) => false, // no longer leading
                Err(e) => {
                    tracing::debug!(cause = %e, "controller decisions not written");
                    false
                }
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let written = results.iter().filter(|ok| **ok).count();
    if written > 0 && failed_over > 0 {
        runtime::coverage::reached("shard-failed-over");
    }
    if written > 0 && leaderless > 0 {
        runtime::coverage::reached("shard-left-without-leader");
    }
    tracing::info!(
        cluster,
        placed,
        repaired,
        failed_over,
        leaderless,
        moved,
        transactions = results.len(),
        written,
        "controller decisions proposed"
    );
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::placement::{node_key, NodeRecord};
    use crate::proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest, PutRequest};

    /// A change to the keys the controller reads (and to one it does not).
    #[derive(Debug, Clone)]
    enum Change {
        Topic { cluster: u8, topic: u8, readable: bool },
        Shard { cluster: u8, topic: u8, shard: u32, leader: u64, readable: bool },
        Node { cluster: u8, node: u64 },
        Delete { prefix: u8, cluster: u8, topic: u8 },
        Other,
        Compact,
    }

    fn change() -> impl Strategy<Value = Change> {
        // Cluster 3 has the empty name, as a key written by hand may have.
        let cluster = 0..4u8;
        prop_oneof![
            (cluster.clone(), 0..3u8, any::<bool>()).prop_map(|(cluster, topic, readable)| Change::Topic {
                cluster,
                topic,
                readable
            }),
            (cluster.clone(), 0..3u8, 0..4u32, 0..4u64, prop::bool::weighted(0.9)).prop_map(
                |(cluster, topic, shard, leader, readable)| Change::Shard { cluster, topic, shard, leader, readable }
            ),
            (cluster.clone(), 1..4u64).prop_map(|(cluster, node)| Change::Node { cluster, node }),
            (0..3u8, cluster, 0..3u8).prop_map(|(prefix, cluster, topic)| Change::Delete { prefix, cluster, topic }),
            Just(Change::Other),
            Just(Change::Compact),
        ]
    }

    fn command(request: command::Request) -> Command {
        Command { auth_revision: None, alarm_disarms: None, request: Some(request) }
    }

    fn put(key: Vec<u8>, value: Vec<u8>) -> Command {
        command(command::Request::Put(PutRequest { key, value, ..Default::default() }))
    }

    fn make(state: &mut KvState, change: &Change) {
        let cluster = |c: u8| if c == 3 { String::new() } else { format!("c{c}") };
        let cmd = match change {
            Change::Topic { cluster: c, topic, readable } => {
                let record =
                    TopicRecord { shards: 4, replication_factor: 2, role: String::new(), spread_label: String::new() };
                let value = if *readable { record.encode() } else { b"{not json".to_vec() };
                put(topics::topic_key(&cluster(*c), &format!("t{topic}")), value)
            }
            Change::Shard { cluster: c, topic, shard, leader, readable } => {
                let record = ShardRecord { replicas: vec![*leader], leader: *leader, ..Default::default() };
                let value = if *readable { record.encode() } else { b"[".to_vec() };
                put(topics::shard_key(&cluster(*c), &format!("t{topic}"), *shard), value)
            }
            Change::Node { cluster: c, node } => {
                let record = NodeRecord {
                    cluster: cluster(*c),
                    node_id: *node,
                    roles: Vec::new(),
                    addresses: BTreeMap::new(),
                    labels: BTreeMap::new(),
                };
                put(node_key(&cluster(*c), *node), record.encode())
            }
            Change::Delete { prefix, cluster: c, topic } => {
                let (key, range_end) = match prefix {
                    0 => topics::topics_range(&cluster(*c)),
                    1 => topics::shards_range(&cluster(*c), &format!("t{topic}")),
                    _ => crate::placement::nodes_range(&cluster(*c)),
                };
                command(command::Request::DeleteRange(DeleteRangeRequest { key, range_end, ..Default::default() }))
            }
            Change::Other => put(b"/elsewhere".to_vec(), b"v".to_vec()),
            Change::Compact if state.compact_revision() >= state.revision() => return,
            Change::Compact => command(command::Request::Compaction(CompactionRequest {
                revision: state.revision(),
                ..Default::default()
            })),
        };
        state.apply(&cmd).expect("the change applies");
    }

    proptest! {
        /// After any run of changes, the views brought up to date are the
        /// views read whole, and an update reports a change exactly when a
        /// key they are made of changed.
        #[test]
        fn updated_views_equal_the_views_read_whole(steps in prop::collection::vec(prop::collection::vec(change(), 0..4), 1..40)) {
            let mut state = KvState::new();
            let mut views = Views::default();
            prop_assert!(views.update(&state), "the first update reads them whole");
            for batch in &steps {
                for change in batch {
                    make(&mut state, change);
                }
                let before: Vec<View> = views.all().cloned().collect();
                let changed = views.update(&state);
                let whole = super::views(&state);
                prop_assert_eq!(views.all().cloned().collect::<Vec<_>>(), whole.clone());
                // A compaction may take the history the update reads: the
                // views are read whole then, and count as changed.
                if batch.iter().all(|c| matches!(c, Change::Other)) {
                    prop_assert!(!changed, "nothing the views are made of changed");
                }
                if before.iter().zip(&whole).any(|(a, b)| a.topics != b.topics || a.shards != b.shards || a.brokers != b.brokers) || before.len() != whole.len() {
                    prop_assert!(changed, "the views changed but the update said not");
                }
            }
        }
    }

    /// Views at a revision whose history was compacted away are read whole.
    #[test]
    fn views_behind_a_compaction_are_read_whole() {
        let mut state = KvState::new();
        make(&mut state, &Change::Topic { cluster: 0, topic: 0, readable: true });
        let mut views = Views::default();
        views.update(&state);
        make(&mut state, &Change::Shard { cluster: 0, topic: 0, shard: 1, leader: 2, readable: true });
        make(&mut state, &Change::Other);
        make(&mut state, &Change::Compact);
        assert!(state.events_from(views.revision + 1).is_err(), "the history the views need is gone");
        assert!(views.update(&state));
        assert_eq!(views.all().cloned().collect::<Vec<_>>(), super::views(&state));
        assert_eq!(views.all().next().map(|v| v.shards.len()), Some(1));
    }
}
