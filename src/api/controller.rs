//! The controller: one task per member that acts only while the member
//! leads. After every applied change to brokers, topics or shards (and once
//! per [`REBALANCE_PAUSE`] for rebalancing) it reads the state, asks
//! [`controller::decide`] what to write for each cluster with topics, and
//! proposes the decisions as transactions conditioned on what they were
//! decided from. A decision made on a view that changed meanwhile fails its
//! compares and is decided again from the new view; a new leader simply
//! resumes from the state.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::context::ApiContext;
use super::topics::{brokers, mod_is, put};
use crate::placement::controller::{self, Decision, Reason, View};
use crate::placement::topics::{self, ShardRecord, TopicRecord};
use crate::placement::NODES_PREFIX;
use crate::proto::etcdserverpb::{RangeRequest, TxnRequest};
use crate::proto::raft::v1::command_result::Response as Applied;
use crate::proto::raft::v1::{command, Command};
use crate::raft::state_store::read_state;
use crate::runtime;
use crate::state::{KvState, MAX_TXN_OPS};

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
    // The revision decided at last (0: none since leading).
    let mut decided_at = 0;
    let mut last_rebalance = runtime::now();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => return,
            changed = applied.changed() => if changed.is_err() { return },
            _ = runtime::sleep(REBALANCE_PAUSE) => {}
        }
        if !ctx.node.is_leader() {
            decided_at = 0;
            continue;
        }
        let rebalance = runtime::now().duration_since(last_rebalance) >= REBALANCE_PAUSE;
        let views = {
            let state = read_state(ctx.node.state());
            if !rebalance && decided_at > 0 && !changed_since(&state, decided_at) {
                continue;
            }
            decided_at = state.revision();
            views(&state)
        };
        if rebalance {
            last_rebalance = runtime::now();
        }
        let moves = if rebalance { REBALANCE_MOVES } else { 0 };
        for view in &views {
            let decisions = controller::decide(view, moves);
            if !decisions.is_empty() {
                write(&ctx, &view.cluster, &decisions).await;
            }
        }
    }
}

/// Whether anything the controller decides from changed after `revision`
/// (also when that history is compacted).
fn changed_since(state: &KvState, revision: i64) -> bool {
    let Ok(mut events) = state.events_from(revision + 1) else { return true };
    let watched = [NODES_PREFIX, topics::TOPICS_PREFIX, topics::SHARDS_PREFIX];
    events.any(|(_, events)| {
        events
            .iter()
            .any(|e| e.kv.as_ref().is_some_and(|kv| watched.iter().any(|prefix| kv.key.starts_with(prefix.as_bytes()))))
    })
}

/// The view of every cluster with topics in `state`.
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
