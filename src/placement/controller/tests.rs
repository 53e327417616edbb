use proptest::prelude::*;

use super::*;

fn broker(epoch: i64, zone: &str) -> Broker {
    Broker { epoch, roles: vec!["journal".into()], labels: [("zone".to_string(), zone.to_string())].into() }
}

fn topic(shards: u32, replication_factor: u32, spread: bool) -> TopicRecord {
    TopicRecord {
        shards,
        replication_factor,
        role: "journal".into(),
        spread_label: if spread { "zone".into() } else { String::new() },
    }
}

/// A view of `brokers` (id, zone) registered at epoch 10 + id, and `topics`.
fn view(brokers: &[(u64, &str)], topics: &[(&str, TopicRecord)]) -> View {
    View {
        cluster: "mq".into(),
        revision: 100,
        topics: topics.iter().map(|(n, t)| (n.to_string(), (t.clone(), 1))).collect(),
        shards: BTreeMap::new(),
        brokers: brokers.iter().map(|(id, z)| (*id, broker(10 + *id as i64, z))).collect(),
    }
}

/// Writes `decisions` into `view` as if applied, at increasing revisions.
fn apply(view: &mut View, decisions: &[Decision]) {
    let mut revision = view.shards.values().map(|(_, r)| *r).max().unwrap_or(100);
    for d in decisions {
        revision += 1;
        view.shards.insert((d.topic.clone(), d.shard), (d.record.clone(), revision));
    }
    view.revision = revision;
}

/// Decides and applies until nothing is left to do (every leader reporting
/// all its replicas in sync when `report`), at most `rounds` times.
fn settle(view: &mut View, moves: usize, report: bool, rounds: usize) -> usize {
    for round in 0..rounds {
        if report {
            for (record, _) in view.shards.values_mut() {
                if record.leader != 0 {
                    record.in_sync = record.replicas.clone();
                }
            }
        }
        let decisions = decide(view, moves);
        if decisions.is_empty() {
            return round;
        }
        apply(view, &decisions);
    }
    panic!("still deciding after {rounds} rounds");
}

fn replicas_per_broker(view: &View) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = view.brokers.keys().map(|b| (*b, 0)).collect();
    for (record, _) in view.shards.values() {
        for b in &record.replicas {
            *count.entry(*b).or_default() += 1;
        }
    }
    count
}

fn leaders_per_broker(view: &View) -> BTreeMap<u64, usize> {
    let mut count: BTreeMap<u64, usize> = view.brokers.keys().map(|b| (*b, 0)).collect();
    for (record, _) in view.shards.values() {
        *count.entry(record.leader).or_default() += 1;
    }
    count
}

fn spread(counts: &BTreeMap<u64, usize>) -> usize {
    counts.values().max().unwrap_or(&0) - counts.values().min().unwrap_or(&0)
}

/// What must hold of every shard record the controller writes.
fn check_record(view: &View, topic: &TopicRecord, record: &ShardRecord) {
    let unique: BTreeSet<_> = record.replicas.iter().collect();
    assert_eq!(unique.len(), record.replicas.len(), "a broker twice in {record:?}");
    assert!(record.replicas.len() <= topic.replication_factor as usize);
    assert!(record.in_sync.iter().all(|b| record.replicas.contains(b)), "{record:?}");
    assert!(record.leader == 0 || record.in_sync.contains(&record.leader), "{record:?}");
    assert_eq!(record.broker_epochs.keys().copied().collect::<BTreeSet<_>>(), unique.into_iter().copied().collect());
    if !topic.spread_label.is_empty() {
        // (A gone broker's zone is not known: the one kept as the last in-sync replica.)
        let known: Vec<_> = record.replicas.iter().filter_map(|b| view.brokers.get(b)).collect();
        let zones: BTreeSet<_> = known.iter().map(|b| &b.labels["zone"]).collect();
        assert_eq!(zones.len(), known.len(), "replicas share a zone: {record:?}");
    }
}

#[test]
fn a_new_topic_is_spread_over_zones_and_balanced_by_replicas_and_leaders() {
    let brokers = [(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")];
    let mut v = view(&brokers, &[("orders", topic(12, 3, true))]);
    let decisions = decide(&v, 0);
    assert_eq!(decisions.len(), 12);
    for d in &decisions {
        assert_eq!((d.reason, d.record.leader_epoch, d.record.decided_at), (Reason::Place, 1, 100));
        assert_eq!(d.record.in_sync, d.record.replicas, "a new shard's replicas start in sync");
        assert_eq!(d.conditions[&shard_key("mq", "orders", d.shard)], 0, "placed only if still unplaced");
        for b in &d.record.replicas {
            assert_eq!(d.conditions[&node_key("mq", *b)], 10 + *b as i64, "placed only on the registration seen");
        }
        check_record(&v, &v.topics["orders"].0, &d.record);
    }
    apply(&mut v, &decisions);
    assert_eq!(spread(&replicas_per_broker(&v)), 0, "{:?}", replicas_per_broker(&v));
    assert_eq!(spread(&leaders_per_broker(&v)), 0, "{:?}", leaders_per_broker(&v));
    assert!(decide(&v, 8).is_empty(), "a placed, balanced topic needs nothing");
}

#[test]
fn a_leader_whose_registration_expired_is_replaced_by_an_in_sync_replica_with_a_higher_epoch() {
    let brokers = [(1, "a"), (2, "b"), (3, "c"), (4, "a")];
    let mut v = view(&brokers, &[("t", topic(4, 3, true))]);
    settle(&mut v, 0, false, 3);
    let led: Vec<u32> = v.shards.iter().filter(|(_, (r, _))| r.leader == 1).map(|((_, s), _)| *s).collect();
    assert!(!led.is_empty());
    v.brokers.remove(&1);
    let decisions = decide(&v, 0);
    for d in &decisions {
        let (before, revision) = &v.shards[&(d.topic.clone(), d.shard)];
        assert!(matches!(d.reason, Reason::Repair | Reason::Failover), "{:?}", d.reason);
        assert_eq!(d.conditions[&shard_key("mq", "t", d.shard)], *revision);
        assert!(!d.record.holds(1));
        if before.leader == 1 {
            assert!(before.in_sync.contains(&d.record.leader) && d.record.leader != 1);
            assert_eq!(d.record.leader_epoch, before.leader_epoch + 1);
        } else {
            assert_eq!((d.record.leader, d.record.leader_epoch), (before.leader, before.leader_epoch));
        }
        // Broker 4 is the only other zone-a broker: it takes 1's replica, out of sync.
        assert!(d.record.holds(4) && !d.record.in_sync.contains(&4), "{:?}", d.record);
        check_record(&v, &v.topics["t"].0, &d.record);
    }
    let touched: BTreeSet<u32> = decisions.iter().map(|d| d.shard).collect();
    assert!(led.iter().all(|s| touched.contains(s)), "every shard 1 led moves");
}

#[test]
fn a_broker_registered_again_loses_its_shards_leadership_and_the_out_of_sync_replica_is_never_elected() {
    let mut v = view(&[(1, "a"), (2, "b")], &[("t", topic(1, 2, false))]);
    settle(&mut v, 0, false, 3);
    let key = ("t".to_string(), 0);
    let leader = v.shards[&key].0.leader;
    let other = if leader == 1 { 2 } else { 1 };
    // The follower is registered again: it leaves, and comes back out of sync.
    v.brokers.get_mut(&other).unwrap().epoch += 100;
    let decisions = decide(&v, 0);
    let record = &decisions[0].record;
    assert_eq!((record.leader, record.leader_epoch), (leader, 1), "the leader stays: {record:?}");
    assert_eq!(record.in_sync, vec![leader]);
    assert_eq!(record.broker_epochs[&other], v.brokers[&other].epoch, "placed again as a new replica");
    apply(&mut v, &decisions);
    // The leader goes: the out-of-sync replica may have missed data, so
    // none leads, and the leader stays the last in-sync replica.
    let gone = v.brokers.remove(&leader).unwrap();
    let decisions = decide(&v, 0);
    assert_eq!(decisions.len(), 1);
    let record = &decisions[0].record;
    assert_eq!((record.leader, record.leader_epoch), (0, 2), "the old leader is fenced all the same: {record:?}");
    assert_eq!(record.in_sync, vec![leader]);
    assert!(record.holds(leader) && record.holds(other), "no replica replaced while leaderless: {record:?}");
    assert_eq!(decisions[0].conditions[&node_key("mq", leader)], 0, "decided on its registration being gone");
    apply(&mut v, &decisions);
    assert!(decide(&v, 4).is_empty(), "a shard without a live in-sync replica waits");
    // It registers again: it leads again, under its new epoch.
    v.brokers.insert(leader, Broker { epoch: gone.epoch + 500, ..gone });
    let decisions = decide(&v, 0);
    let record = &decisions[0].record;
    assert_eq!((record.leader, record.leader_epoch), (leader, 3), "{record:?}");
    assert_eq!(record.broker_epochs[&leader], v.brokers[&leader].epoch);
}

#[test]
fn a_leader_registered_again_as_the_last_in_sync_replica_leads_under_a_new_leader_epoch() {
    let mut v = view(&[(1, "a"), (2, "b")], &[("t", topic(1, 2, false))]);
    settle(&mut v, 0, false, 3);
    let key = ("t".to_string(), 0);
    let before = v.shards[&key].0.clone();
    let other = if before.leader == 1 { 2 } else { 1 };
    // Seed 10045: the follower is gone and the leader registered again before the controller looked.
    v.brokers.remove(&other);
    v.brokers.get_mut(&before.leader).unwrap().epoch += 100;
    let decisions = decide(&v, 0);
    let record = &decisions[0].record;
    assert_eq!(record.leader, before.leader, "{record:?}");
    assert_eq!(record.leader_epoch, before.leader_epoch + 1, "its old registration is fenced: {record:?}");
    assert_eq!(decisions[0].reason, Reason::Failover);
}

#[test]
fn with_too_few_zones_a_shard_gets_fewer_replicas_never_two_in_one_zone() {
    let mut v = view(&[(1, "a"), (2, "a"), (3, "b")], &[("t", topic(3, 3, true))]);
    settle(&mut v, 0, false, 3);
    for (record, _) in v.shards.values() {
        assert_eq!(record.replicas.len(), 2);
        check_record(&v, &v.topics["t"].0, record);
    }
    v.brokers.insert(4, broker(14, "c"));
    let decisions = decide(&v, 0);
    assert_eq!(decisions.len(), 3, "a third zone joining completes every shard");
    assert!(decisions.iter().all(|d| d.record.holds(4) && !d.record.in_sync.contains(&4)));
}

#[test]
fn brokers_of_other_roles_or_without_the_spread_label_hold_nothing() {
    let mut v = view(&[(1, "a"), (2, "b")], &[("t", topic(4, 2, true))]);
    v.brokers.insert(3, Broker { roles: vec!["mqtt".into()], ..broker(13, "c") });
    v.brokers.insert(4, Broker { labels: BTreeMap::new(), ..broker(14, "") });
    settle(&mut v, 4, true, 5);
    assert!(v.shards.values().all(|(r, _)| !r.holds(3) && !r.holds(4)));
}

#[test]
fn a_joining_broker_takes_replicas_and_leaderships_a_few_moves_at_a_time() {
    let mut v = view(&[(1, "a"), (2, "a"), (3, "a")], &[("t", topic(30, 2, false))]);
    settle(&mut v, 0, false, 3);
    v.brokers.insert(4, broker(14, "a"));
    let first = decide(&v, 3);
    assert_eq!(first.len(), 3, "the rate limit");
    let shards: BTreeSet<u32> = first.iter().map(|d| d.shard).collect();
    assert_eq!(shards.len(), 3, "one move per shard");
    for d in &first {
        assert_eq!(d.reason, Reason::Rebalance);
        assert!(d.record.holds(4) && !d.record.in_sync.contains(&4), "the new replica catches up first");
    }
    apply(&mut v, &first);
    // Without reports, the moved shards are not moved again.
    let again = decide(&v, 30);
    assert!(again.iter().all(|d| !shards.contains(&d.shard)));
    let rounds = settle(&mut v, 3, true, 60);
    assert!(rounds > 3, "rebalancing took {rounds} rounds: not rate limited");
    assert!(spread(&replicas_per_broker(&v)) <= 1, "{:?}", replicas_per_broker(&v));
    assert!(spread(&leaders_per_broker(&v)) <= 1, "{:?}", leaders_per_broker(&v));
}

#[test]
fn a_lower_replication_factor_drops_out_of_sync_replicas_first_and_never_the_leader() {
    let mut v = view(&[(1, "a"), (2, "b"), (3, "c")], &[("t", topic(1, 3, false))]);
    settle(&mut v, 0, false, 3);
    let key = ("t".to_string(), 0);
    let record = v.shards[&key].0.clone();
    let leader = record.leader;
    let lagging = *record.replicas.iter().find(|b| **b != leader).unwrap();
    v.shards.get_mut(&key).unwrap().0.in_sync.retain(|b| *b != lagging);
    v.topics.get_mut("t").unwrap().0.replication_factor = 2;
    let decisions = decide(&v, 0);
    assert_eq!(decisions.len(), 1);
    let next = &decisions[0].record;
    assert!(!next.holds(lagging) && next.holds(leader) && next.replicas.len() == 2, "{next:?}");
    assert_eq!(next.leader_epoch, record.leader_epoch, "the leader stays");
}

fn arbitrary_view() -> impl Strategy<Value = (View, Vec<u64>, Vec<u64>)> {
    (
        proptest::collection::btree_map(1u64..12, (0usize..3, any::<bool>()), 1..10),
        1u32..20,
        1u32..4,
        any::<bool>(),
        proptest::collection::vec(1u64..12, 0..4),
        proptest::collection::vec(1u64..12, 0..4),
    )
        .prop_map(|(brokers, shards, rf, spread, gone, renewed)| {
            let zones = ["a", "b", "c"];
            let mut v = view(&[], &[("t", topic(shards, rf, spread))]);
            for (id, (zone, journal)) in brokers {
                let mut b = broker(10 + id as i64, zones[zone]);
                if !journal {
                    b.roles = vec!["mqtt".into()];
                }
                v.brokers.insert(id, b);
            }
            (v, gone, renewed)
        })
}

proptest! {
    /// Whatever happens to brokers between rounds, every record written is
    /// well formed, leader epochs never go down, a leader only changes to an
    /// in-sync replica (or none), and repeated rounds settle.
    #[test]
    fn every_decision_keeps_the_shard_invariants((mut v, gone, renewed) in arbitrary_view()) {
        settle(&mut v, 2, true, 200);
        for b in gone {
            v.brokers.remove(&b);
        }
        for b in renewed {
            if let Some(broker) = v.brokers.get_mut(&b) {
                broker.epoch += 1000;
            }
        }
        let before = v.shards.clone();
        let decisions = decide(&v, 2);
        prop_assert_eq!(decide(&v, 2), decisions.clone(), "the same view decides the same");
        for d in &decisions {
            check_record(&v, &v.topics["t"].0, &d.record);
            for b in &d.record.replicas {
                // Every replica is registered with the epoch recorded, but
                // the last in-sync replica kept while its broker is gone.
                let kept = d.record.leader == 0 && d.record.in_sync == vec![*b];
                prop_assert!(kept || v.brokers.get(b).map(|x| x.epoch) == Some(d.record.broker_epochs[b]), "{:?}", d.record);
            }
            if let Some((old, _)) = before.get(&(d.topic.clone(), d.shard)) {
                prop_assert!(d.record.leader_epoch >= old.leader_epoch);
                if d.record.leader != old.leader {
                    prop_assert!(d.record.leader_epoch > old.leader_epoch);
                    prop_assert!(d.record.leader == 0 || old.in_sync.contains(&d.record.leader));
                }
            }
        }
        apply(&mut v, &decisions);
        settle(&mut v, 2, true, 200);
    }
}
