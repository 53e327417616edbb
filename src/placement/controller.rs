//! The controller's decisions: given one cluster's topics, shards and live
//! brokers, which shard records to write. Pure and deterministic (ordered
//! maps, ties broken by broker id): the same view gives the same decisions,
//! so the simulator can replay them and a new Raft leader simply resumes.
//!
//! A replica is live while its broker is registered with the epoch it had
//! when the replica was placed and still fits the topic (role, label). Per
//! shard, in order:
//! 1. a shard without a record is placed on the eligible brokers holding the
//!    fewest replicas, with distinct values of the spread label; all of them
//!    in sync, the one leading the fewest shards its leader, leader epoch 1;
//! 2. replicas that are not live leave the replica and in-sync sets; a
//!    leader that is not live (or left the in-sync set) is replaced by the
//!    in-sync replica leading the fewest shards: never by a replica that may
//!    have missed data. When no in-sync replica lives, the last one stays in
//!    the in-sync set, the shard without a leader, until that broker
//!    registers again and leads it again (or an operator forces an unclean
//!    election). Any change of leader bumps the leader epoch, which fences
//!    the old leader's reports;
//! 3. missing replicas are added (out of sync until the leader reports them)
//!    while the shard has a leader;
//! 4. only when nothing needed repair: at most `moves` rebalancing moves, one
//!    per shard, of shards whose replicas are all in sync: a replica from a
//!    broker holding the most to the eligible one holding the fewest, or a
//!    leadership from a broker leading the most to the in-sync replica
//!    leading the fewest, while they differ by two or more.
//!
//! Each decision records the view's revision (`decided_at`) and carries the
//! conditions it relies on: its shard's record and
//! topic unchanged, and every broker it places a replica on still registered
//! with the epoch seen. Written as one transaction, a decision made on a
//! stale view never applies.

use std::collections::{BTreeMap, BTreeSet};

use super::node_key;
use super::topics::{shard_key, topic_key, ShardRecord, TopicRecord};

/// A registered broker as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Broker {
    /// Its registration epoch.
    pub epoch: i64,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// One cluster's placement state, as read at one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct View {
    /// The cluster.
    pub cluster: String,
    /// The revision the view was read at (each decision records it).
    pub revision: i64,
    /// Topics by name, with their records' mod revisions.
    pub topics: BTreeMap<String, (TopicRecord, i64)>,
    /// Shards by (topic, number), with their records' mod revisions.
    pub shards: BTreeMap<(String, u32), (ShardRecord, i64)>,
    /// Registered brokers by node id.
    pub brokers: BTreeMap<u64, Broker>,
}

/// Why a shard record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A shard placed for the first time.
    Place,
    /// Replicas lost or missing; the leader kept.
    Repair,
    /// The leader lost, another in-sync replica elected (or the last one
    /// back).
    Failover,
    /// The leader lost with no in-sync replica alive: none leads.
    Leaderless,
    /// A rebalancing move.
    Rebalance,
}

/// One shard record to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The shard's topic.
    pub topic: String,
    /// The shard.
    pub shard: u32,
    /// Its new record.
    pub record: ShardRecord,
    /// Why.
    pub reason: Reason,
    /// Keys whose mod revision must still be these for the write to apply
    /// (0: the key must not exist).
    pub conditions: BTreeMap<Vec<u8>, i64>,
}

/// Replicas and leaderships per broker, kept current as decisions are made.
#[derive(Debug, Default)]
struct Load {
    replicas: BTreeMap<u64, usize>,
    leaders: BTreeMap<u64, usize>,
}

impl Load {
    fn of(view: &View) -> Self {
        let mut load = Load::default();
        for &b in view.brokers.keys() {
            load.replicas.insert(b, 0);
            load.leaders.insert(b, 0);
        }
        for (record, _) in view.shards.values() {
            load.add(record, 1);
        }
        load
    }

    /// Counts `record`'s replicas and leader (`sign` 1) or uncounts them (-1),
    /// for brokers that are registered.
    fn add(&mut self, record: &ShardRecord, sign: isize) {
        for b in &record.replicas {
            if let Some(n) = self.replicas.get_mut(b) {
                *n = n.saturating_add_signed(sign);
            }
        }
        if let Some(n) = self.leaders.get_mut(&record.leader) {
            *n = n.saturating_add_signed(sign);
        }
    }

    fn replicas(&self, b: u64) -> usize {
        self.replicas.get(&b).copied().unwrap_or(0)
    }

    fn leaders(&self, b: u64) -> usize {
        self.leaders.get(&b).copied().unwrap_or(0)
    }

    /// Of `candidates`, the one leading the fewest shards (then the lowest id).
    fn least_leading(&self, candidates: impl Iterator<Item = u64>) -> Option<u64> {
        candidates.min_by_key(|&b| (self.leaders(b), b))
    }
}

/// Whether `broker` may hold a replica of `topic`.
pub(super) fn eligible(topic: &TopicRecord, broker: &Broker) -> bool {
    (topic.role.is_empty() || broker.roles.contains(&topic.role))
        && (topic.spread_label.is_empty() || broker.labels.contains_key(&topic.spread_label))
}

/// The spread label's value on `broker` (None without a constraint).
pub(super) fn zone<'a>(topic: &TopicRecord, broker: &'a Broker) -> Option<&'a str> {
    (!topic.spread_label.is_empty()).then(|| broker.labels.get(&topic.spread_label).map(String::as_str).unwrap_or(""))
}

/// The decisions for `view`, with at most `moves` rebalancing moves.
pub fn decide(view: &View, moves: usize) -> Vec<Decision> {
    let mut load = Load::of(view);
    let mut decisions = Vec::new();
    for (name, (topic, topic_revision)) in &view.topics {
        for shard in 0..topic.shards {
            let current = view.shards.get(&(name.clone(), shard));
            let Some((record, reason)) = repair(view, topic, current.map(|(r, _)| r), &mut load) else { continue };
            let revision = current.map_or(0, |(_, rev)| *rev);
            decisions.push(decision(view, name, shard, *topic_revision, revision, record, reason));
        }
    }
    if decisions.is_empty() {
        decisions = rebalance(view, &mut load, moves);
    }
    decisions
}

fn decision(
    view: &View,
    topic: &str,
    shard: u32,
    topic_revision: i64,
    shard_revision: i64,
    record: ShardRecord,
    reason: Reason,
) -> Decision {
    let mut record = record;
    record.decided_at = view.revision;
    let mut conditions = BTreeMap::new();
    conditions.insert(topic_key(&view.cluster, topic), topic_revision);
    conditions.insert(shard_key(&view.cluster, topic, shard), shard_revision);
    // Every replica's registration as seen: the epoch placed with, or for a
    // last in-sync replica kept while gone, whatever is there now (none, or
    // a registration it may not hold shards under).
    for (&b, &epoch) in &record.broker_epochs {
        let seen = view.brokers.get(&b).map_or(0, |broker| broker.epoch);
        conditions.insert(node_key(&view.cluster, b), if seen == epoch { epoch } else { seen });
    }
    Decision { topic: topic.to_string(), shard, record, reason, conditions }
}

/// `current` (None: not placed yet) made whole, or None when it is as it
/// should be (or nothing can be done for it now).
fn repair(
    view: &View,
    topic: &TopicRecord,
    current: Option<&ShardRecord>,
    load: &mut Load,
) -> Option<(ShardRecord, Reason)> {
    let live = |b: &u64, record: &ShardRecord| {
        view.brokers
            .get(b)
            .is_some_and(|broker| record.broker_epochs.get(b) == Some(&broker.epoch) && eligible(topic, broker))
    };
    let Some(current) = current else {
        let mut record = ShardRecord { leader_epoch: 0, ..Default::default() };
        fill(view, topic, &mut record, load);
        if record.replicas.is_empty() {
            return None; // no eligible broker yet
        }
        record.in_sync = record.replicas.clone();
        record.leader = load.least_leading(record.replicas.iter().copied()).unwrap_or(0);
        record.leader_epoch = 1;
        load.add(&record, 1);
        return Some((record, Reason::Place));
    };
    let mut next = current.clone();
    // When no in-sync replica lives, the last one stays in the in-sync set
    // (and its replica in place) although it is gone: it may come back
    // with everything the shard had, and none other can lead without losing
    // data (Kafka keeps its last in-sync replica the same way).
    let last_in_sync = if current.in_sync.iter().any(|b| live(b, current)) {
        None
    } else if current.in_sync.contains(&current.leader) {
        Some(current.leader)
    } else {
        current.in_sync.first().copied()
    };
    // Replicas that are gone, changed or no longer fit; then, with a spread
    // constraint, later replicas sharing an earlier one's value.
    let mut zones = BTreeSet::new();
    next.replicas.retain(|b| {
        Some(*b) == last_in_sync
            || (live(b, current) && zone(topic, &view.brokers[b]).is_none_or(|z| zones.insert(z.to_string())))
    });
    // Too many replicas (the replication factor went down): drop those out
    // of sync first, never the leader.
    while next.replicas.len() > topic.replication_factor as usize {
        let drop = next
            .replicas
            .iter()
            .rposition(|b| *b != next.leader && !next.in_sync.contains(b))
            .or_else(|| next.replicas.iter().rposition(|b| *b != next.leader))
            .unwrap_or(next.replicas.len() - 1);
        next.replicas.remove(drop);
    }
    next.broker_epochs.retain(|b, _| next.replicas.contains(b));
    next.in_sync.retain(|b| next.replicas.contains(b));
    match last_in_sync {
        // The last in-sync replica is back (registered again, still fit):
        // it leads again, under its new registration.
        Some(b) if view.brokers.get(&b).is_some_and(|broker| eligible(topic, broker)) => {
            let back = &view.brokers[&b];
            next.broker_epochs.insert(b, back.epoch);
            next.leader = b;
            // It may be back in another zone: it keeps its replica, one
            // sharing the zone goes.
            if let Some(z) = zone(topic, back) {
                next.replicas.retain(|r| *r == b || view.brokers.get(r).and_then(|o| zone(topic, o)) != Some(z));
                next.broker_epochs.retain(|r, _| next.replicas.contains(r));
                next.in_sync.retain(|r| next.replicas.contains(r));
            }
        }
        // Gone: no leader, and no new replica (none could catch up without
        // a leader, and the gone one's zone is not known to keep apart).
        Some(_) => next.leader = 0,
        None if next.in_sync.contains(&next.leader) => {}
        None => next.leader = load.least_leading(next.in_sync.iter().copied()).unwrap_or(0),
    }
    if next.leader != 0 {
        fill(view, topic, &mut next, load);
    }
    if next.placement() == current.placement() && next.broker_epochs == current.broker_epochs {
        return None;
    }
    // A new leader, or the same broker leading under a new registration (it
    // came back as the last in-sync replica): a new leader epoch either way.
    let led_by = |r: &ShardRecord| (r.leader, r.broker_epochs.get(&r.leader).copied());
    let new_leader = led_by(&next) != led_by(current);
    if new_leader {
        next.leader_epoch = current.leader_epoch + 1;
    }
    load.add(current, -1);
    load.add(&next, 1);
    let reason = match next.leader {
        _ if !new_leader => Reason::Repair,
        0 => Reason::Leaderless,
        _ => Reason::Failover,
    };
    Some((next, reason))
}

/// Adds replicas to `record` up to the topic's replication factor: eligible
/// brokers holding the fewest replicas, with values of the spread label
/// that none of its replicas has.
fn fill(view: &View, topic: &TopicRecord, record: &mut ShardRecord, load: &Load) {
    while record.replicas.len() < topic.replication_factor as usize {
        let Some(b) = candidate(view, topic, record, None, load) else { return };
        record.replicas.push(b);
        record.broker_epochs.insert(b, view.brokers[&b].epoch);
    }
}

/// The eligible broker holding the fewest replicas (then the lowest id)
/// that could join `record`'s replicas, `leaving` replaced by it.
fn candidate(view: &View, topic: &TopicRecord, record: &ShardRecord, leaving: Option<u64>, load: &Load) -> Option<u64> {
    let taken: BTreeSet<&str> = record
        .replicas
        .iter()
        .filter(|b| Some(**b) != leaving)
        .filter_map(|b| view.brokers.get(b).and_then(|broker| zone(topic, broker)))
        .collect();
    view.brokers
        .iter()
        .filter(|(b, broker)| {
            !record.replicas.contains(b)
                && eligible(topic, broker)
                && zone(topic, broker).is_none_or(|z| !taken.contains(z))
        })
        .map(|(b, _)| *b)
        .min_by_key(|b| (load.replicas(*b), *b))
}

/// A shard by (topic, number).
type ShardId = (String, u32);

/// Up to `moves` moves, one per shard: a replica from a broker holding the
/// most to an eligible one holding at least two fewer, else a leadership
/// from a broker leading the most to an in-sync replica leading at least
/// two fewer. Only shards whose replicas are all in sync move.
fn rebalance(view: &View, load: &mut Load, moves: usize) -> Vec<Decision> {
    // Which shards each broker holds and leads, as the view has them (a
    // shard moved here is skipped after: at most one move per shard).
    let mut holding: BTreeMap<u64, Vec<&ShardId>> = BTreeMap::new();
    let mut leading: BTreeMap<u64, Vec<&ShardId>> = BTreeMap::new();
    for (id, (record, _)) in &view.shards {
        for b in &record.replicas {
            holding.entry(*b).or_default().push(id);
        }
        leading.entry(record.leader).or_default().push(id);
    }
    let settled = |record: &ShardRecord| record.leader != 0 && record.in_sync.len() == record.replicas.len();
    let mut decisions: Vec<Decision> = Vec::new();
    let mut moved: BTreeSet<ShardId> = BTreeSet::new();
    while decisions.len() < moves {
        let replica_move = || {
            for (count, from) in most_first(&load.replicas) {
                for id in holding.get(&from).into_iter().flatten() {
                    let (record, _) = &view.shards[*id];
                    let Some((topic, _)) = view.topics.get(&id.0) else { continue };
                    // A leader moves only with another in-sync replica to take over.
                    if moved.contains(*id) || !settled(record) || (from == record.leader && record.in_sync.len() < 2) {
                        continue;
                    }
                    let Some(to) = candidate(view, topic, record, Some(from), load) else { continue };
                    if count >= load.replicas(to) + 2 {
                        return Some(((*id).clone(), moved_replica(record, from, to, view, load)));
                    }
                }
            }
            None
        };
        let leader_move = || {
            for (count, from) in most_first(&load.leaders) {
                for id in leading.get(&from).into_iter().flatten() {
                    let (record, _) = &view.shards[*id];
                    if moved.contains(*id) || !settled(record) || !view.topics.contains_key(&id.0) {
                        continue;
                    }
                    let others = record.in_sync.iter().copied().filter(|b| *b != from);
                    let Some(to) = load.least_leading(others) else { continue };
                    if count >= load.leaders(to) + 2 {
                        let mut next = record.clone();
                        next.leader = to;
                        next.leader_epoch += 1;
                        return Some(((*id).clone(), next));
                    }
                }
            }
            None
        };
        let Some((id, next)) = replica_move().or_else(leader_move) else { break };
        let (current, revision) = &view.shards[&id];
        load.add(current, -1);
        load.add(&next, 1);
        let topic_revision = view.topics[&id.0].1;
        decisions.push(decision(view, &id.0, id.1, topic_revision, *revision, next, Reason::Rebalance));
        moved.insert(id);
    }
    decisions
}

/// The brokers of `counts` that could give a move (two or more above the
/// fewest), most first (then by id).
fn most_first(counts: &BTreeMap<u64, usize>) -> Vec<(usize, u64)> {
    let floor = counts.values().min().copied().unwrap_or(0);
    let mut brokers: Vec<(usize, u64)> =
        counts.iter().filter(|(_, n)| **n >= floor + 2).map(|(b, n)| (*n, *b)).collect();
    brokers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    brokers
}

/// `record` with `from`'s replica on `to` (out of sync), and a new leader
/// if `from` led it.
fn moved_replica(record: &ShardRecord, from: u64, to: u64, view: &View, load: &Load) -> ShardRecord {
    let mut next = record.clone();
    for b in next.replicas.iter_mut() {
        if *b == from {
            *b = to;
        }
    }
    next.broker_epochs.remove(&from);
    next.broker_epochs.insert(to, view.brokers[&to].epoch);
    next.in_sync.retain(|b| *b != from);
    if next.leader == from {
        next.leader = load.least_leading(next.in_sync.iter().copied()).unwrap_or(0);
        next.leader_epoch += 1;
    }
    next
}

#[cfg(test)]
mod tests;
