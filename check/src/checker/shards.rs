//! Shard placement, leadership and status reports, over the applied history
//! of the shard records and the brokers' registrations (revision by
//! revision, as the replicas applied them):
//!
//! - a shard's leader epoch never goes down, and its leader never changes
//!   without a higher leader epoch: so no two brokers lead a shard in the
//!   same leader epoch;
//! - a new leader comes from the in-sync set before it (the simulation
//!   forces no unclean election);
//! - a placement (a record whose replicas, their epochs, leader or leader
//!   epoch changed) names only brokers registered, at the revision before,
//!   with the epoch it records: no shard goes to (or stays on) a broker
//!   whose registration had expired or been replaced when the decision
//!   applied. One exception: a shard without a leader whose only in-sync
//!   replica is gone keeps it (it may come back with the shard's data).
//! - with a spread label, no two replicas of a placement share its value;
//! - an acknowledged status report was written by the shard's leader at the
//!   leader epoch it reported, while the broker was registered with the
//!   epoch it reported.
//!
//! History may have gaps (compacted before it was collected): what a gap
//! may have changed is not known until the key's next change, and nothing
//! unknown is held against the server.

use std::collections::{BTreeMap, BTreeSet};

/// A shard record as the checker needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardState {
    /// Brokers holding a replica.
    pub replicas: Vec<u64>,
    /// The registration epoch of each replica's broker when placed.
    pub broker_epochs: BTreeMap<u64, i64>,
    /// The leader (0: none).
    pub leader: u64,
    /// The leader epoch.
    pub leader_epoch: i64,
    /// The in-sync replicas.
    pub in_sync: Vec<u64>,
}

impl ShardState {
    fn placement(&self) -> (&[u64], &BTreeMap<u64, i64>, u64, i64) {
        (&self.replicas, &self.broker_epochs, self.leader, self.leader_epoch)
    }
}

/// One key's change at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A shard's record written (Some) or deleted (None).
    Shard {
        /// `<topic>/<shard>`.
        shard: String,
        /// The record after the change.
        record: Option<ShardState>,
    },
    /// A broker registered (Some(epoch)) or gone (None).
    Registration {
        /// The broker.
        broker: u64,
        /// Its epoch after the change.
        epoch: Option<i64>,
    },
}

/// How a status report ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Written at this revision.
    Acked(i64),
    /// Refused (nothing written), with the server's message.
    Refused(String),
    /// May or may not have been written.
    Unknown,
}

/// One shard's status in one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reporting broker.
    pub broker: u64,
    /// Its registration epoch, as it reported it.
    pub epoch: i64,
    /// `<topic>/<shard>`.
    pub shard: String,
    /// The leader epoch it reported.
    pub leader_epoch: i64,
    /// How it ended.
    pub ended: Reported,
}

/// What the check saw, to tell a run that checked little.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    /// Placements checked against the registrations.
    pub placements: usize,
    /// Leader changes.
    pub leader_changes: usize,
    /// Acknowledged reports checked.
    pub reports: usize,
}

/// Checks `applied` (revision order; changes of shard and registration keys
/// only, every such change of a revision) and `reports` against it.
/// `spread`: per topic with a spread constraint, each broker's label value.
pub fn check(
    applied: &[(i64, Vec<Change>)],
    reports: &[Report],
    spread: &BTreeMap<String, BTreeMap<u64, String>>,
) -> (Vec<String>, Seen) {
    let mut violations = Vec::new();
    let mut seen = Seen::default();
    // Registrations known for sure (after a gap, only those changed since).
    let mut registered: BTreeMap<u64, Option<i64>> = BTreeMap::new();
    // Whether a broker missing from `registered` is known to be unregistered.
    // The store starts at revision 1 (etcd's), so its first write is 2.
    let mut all_known = applied.first().is_some_and(|(revision, _)| *revision <= 2);
    let mut last: BTreeMap<String, ShardState> = BTreeMap::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut leaders: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut acked: BTreeMap<i64, Vec<&Report>> = BTreeMap::new();
    for r in reports {
        if let Reported::Acked(revision) = r.ended {
            acked.entry(revision).or_default().push(r);
        }
    }
    let mut previous: Option<i64> = None;
    for (revision, changes) in applied {
        if previous.is_some_and(|p| *revision != p + 1) {
            registered.clear();
            known.clear();
            all_known = false;
        }
        previous = Some(*revision);
        let before = registered.clone();
        let registration = |broker: u64| match before.get(&broker) {
            Some(epoch) => Some(*epoch),
            None if all_known => Some(None),
            None => None, // unknown
        };
        let mut written: BTreeMap<&str, &ShardState> = BTreeMap::new();
        for change in changes {
            match change {
                Change::Registration { broker, epoch } => {
                    registered.insert(*broker, *epoch);
                }
                Change::Shard { shard, record: None } => {
                    last.remove(shard);
                    known.insert(shard.clone());
                }
                Change::Shard { shard, record: Some(record) } => {
                    written.insert(shard, record);
                    let prev = last.get(shard);
                    if let Some(prev) = prev {
                        if record.leader_epoch < prev.leader_epoch {
                            violations.push(format!(
                                "shard {shard}: leader epoch went down from {} to {} at revision {revision}",
                                prev.leader_epoch, record.leader_epoch
                            ));
                        }
                        if record.leader != prev.leader && record.leader != 0 && !prev.in_sync.contains(&record.leader)
                        {
                            violations.push(format!(
                                "shard {shard}: broker {} was elected at revision {revision} from outside the in-sync set {:?}",
                                record.leader, prev.in_sync
                            ));
                        }
                        // A leader is a broker under one registration: the same
                        // broker registered again leads under a new epoch too.
                        let led_by = |r: &ShardState| (r.leader, r.broker_epochs.get(&r.leader).copied());
                        if led_by(record) != led_by(prev) {
                            seen.leader_changes += 1;
                            if record.leader_epoch <= prev.leader_epoch {
                                violations.push(format!(
                                    "shard {shard}: leader {:?} became {:?} (broker, registration) at revision {revision} without a new leader epoch ({} then {})",
                                    led_by(prev), led_by(record), prev.leader_epoch, record.leader_epoch
                                ));
                            }
                        }
                    }
                    if record.leader != 0 {
                        let first = *leaders.entry((shard.clone(), record.leader_epoch)).or_insert(record.leader);
                        if first != record.leader {
                            violations.push(format!(
                                "shard {shard}: brokers {first} and {} both led it in leader epoch {} (revision {revision})",
                                record.leader, record.leader_epoch
                            ));
                        }
                    }
                    let placed = match prev {
                        Some(prev) if known.contains(shard) => prev.placement() != record.placement(),
                        Some(_) => false, // after a gap: a report or a placement, not known
                        None => known.contains(shard) || all_known,
                    };
                    if placed {
                        seen.placements += 1;
                        // Only the last in-sync replica of a shard without a
                        // leader may be kept while its registration is gone.
                        let kept_gone = |broker: u64| record.leader == 0 && record.in_sync == [broker];
                        let checked = record.broker_epochs.iter().filter(|(broker, _)| !kept_gone(**broker));
                        for (broker, epoch) in checked {
                            match registration(*broker) {
                                Some(Some(current)) if current == *epoch => {}
                                Some(current) => violations.push(format!(
                                    "shard {shard} placed at revision {revision} on broker {broker} with epoch {epoch}, but its registration then was {current:?}"
                                )),
                                None => {}
                            }
                        }
                        let topic = shard.rsplit_once('/').map_or(shard.as_str(), |(topic, _)| topic);
                        if let Some(zones) = spread.get(topic) {
                            let mut used = BTreeSet::new();
                            // (Of replicas whose brokers are registered: a gone one
                            // kept as the last in-sync replica may be back elsewhere.)
                            let present = |b: &&u64| matches!(registration(**b), Some(Some(_)) | None);
                            for b in record.replicas.iter().filter(present) {
                                if let Some(zone) = zones.get(b) {
                                    if !used.insert(zone) {
                                        violations.push(format!(
                                            "shard {shard} at revision {revision}: replicas {:?} share zone {zone}",
                                            record.replicas
                                        ));
                                    }
                                }
                            }
                        }
                    }
                    last.insert(shard.clone(), record.clone());
                    known.insert(shard.clone());
                }
            }
        }
        for report in acked.get(revision).into_iter().flatten() {
            seen.reports += 1;
            match written.get(report.shard.as_str()) {
                Some(record) if record.leader == report.broker && record.leader_epoch == report.leader_epoch => {}
                Some(record) => violations.push(format!(
                    "broker {}'s report on shard {} at leader epoch {} was acknowledged at revision {revision}, where the shard is led by {} at leader epoch {}",
                    report.broker, report.shard, report.leader_epoch, record.leader, record.leader_epoch
                )),
                None => violations.push(format!(
                    "broker {}'s report on shard {} was acknowledged at revision {revision}, which did not write the shard",
                    report.broker, report.shard
                )),
            }
            match registration(report.broker) {
                Some(Some(current)) if current == report.epoch => {}
                Some(current) => violations.push(format!(
                    "broker {}'s report with epoch {} was acknowledged at revision {revision}, but its registration then was {current:?}",
                    report.broker, report.epoch
                )),
                None => {}
            }
        }
    }
    (violations, seen)
}

/// Failover under progress: when a shard's leader's registration goes
/// (deleted, or replaced by a new epoch) while another in-sync replica's
/// broker is registered with the epoch the shard records, the shard gets
/// another leader (or none) within `within` revisions of the change, unless
/// the collected history ends or has a gap first. Counting revisions
/// instead of time excuses whatever blocks the cluster's progress (a lost
/// quorum applies nothing), but not a controller that stops acting while
/// writes go on. The failovers checked, and the violations.
pub fn check_failover(applied: &[(i64, Vec<Change>)], within: usize) -> (usize, Vec<String>) {
    let mut violations = Vec::new();
    let mut checked = 0;
    let mut registered: BTreeMap<u64, Option<i64>> = BTreeMap::new();
    let mut records: BTreeMap<&str, &ShardState> = BTreeMap::new();
    for (i, (revision, changes)) in applied.iter().enumerate() {
        let contiguous = i == 0 || applied[i - 1].0 + 1 == *revision;
        if !contiguous {
            registered.clear();
            records.clear();
        }
        for change in changes {
            let Change::Registration { broker, epoch } = change else { continue };
            let previous = registered.insert(*broker, *epoch);
            if previous.is_none() || previous == Some(*epoch) {
                continue; // unknown before, or not a change
            }
            for (shard, record) in &records {
                if record.leader != *broker {
                    continue;
                }
                let successor = record.in_sync.iter().any(|c| {
                    let epoch = registered.get(c).copied().flatten();
                    *c != *broker && epoch.is_some() && epoch == record.broker_epochs.get(c).copied()
                });
                if !successor {
                    continue;
                }
                // Look ahead, over contiguous history only.
                let ahead = &applied[i + 1..];
                let mut last = *revision;
                let mut moved = None;
                for (seen, (next, next_changes)) in ahead.iter().enumerate() {
                    if *next != last + 1 || seen >= within {
                        break;
                    }
                    last = *next;
                    let led = next_changes.iter().find_map(|c| match c {
                        Change::Shard { shard: s, record: r } if s == shard => Some(r.as_ref()),
                        _ => None,
                    });
                    // Another leader, none, or a new leader epoch (the broker
                    // back under a new registration as the last in-sync one).
                    if let Some(now) = led {
                        if now.is_none_or(|r| r.leader != *broker || r.leader_epoch > record.leader_epoch) {
                            moved = Some(*next);
                            break;
                        }
                    }
                }
                let progressed = last - revision >= within as i64;
                match moved {
                    Some(_) => checked += 1,
                    None if progressed => violations.push(format!(
                        "shard {shard}: its leader {broker}'s registration went at revision {revision} while an in-sync replica lived, and {within} revisions later it still had no other leader"
                    )),
                    None => {}
                }
            }
        }
        for change in changes {
            match change {
                Change::Shard { shard, record: Some(record) } => {
                    records.insert(shard.as_str(), record);
                }
                Change::Shard { shard, record: None } => {
                    records.remove(shard.as_str());
                }
                Change::Registration { .. } => {}
            }
        }
    }
    (checked, violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(replicas: &[u64], epochs: &[i64], leader: u64, leader_epoch: i64) -> Change {
        Change::Shard {
            shard: "t/0".into(),
            record: Some(ShardState {
                replicas: replicas.to_vec(),
                broker_epochs: replicas.iter().copied().zip(epochs.iter().copied()).collect(),
                leader,
                leader_epoch,
                in_sync: replicas.to_vec(),
            }),
        }
    }

    fn register(broker: u64, epoch: Option<i64>) -> Change {
        Change::Registration { broker, epoch }
    }

    fn report(broker: u64, epoch: i64, leader_epoch: i64, revision: i64) -> Report {
        Report { broker, epoch, shard: "t/0".into(), leader_epoch, ended: Reported::Acked(revision) }
    }

    /// Brokers 1 and 2 register at revisions 1 and 2; the shard is placed on both at 3.
    fn placed() -> Vec<(i64, Vec<Change>)> {
        vec![(1, vec![register(1, Some(1))]), (2, vec![register(2, Some(2))]), (3, vec![shard(&[1, 2], &[1, 2], 1, 1)])]
    }

    #[test]
    fn a_failover_to_a_registered_replica_with_a_higher_epoch_and_the_new_leaders_reports_pass() {
        let mut applied = placed();
        applied.push((4, vec![register(1, None)]));
        applied.push((5, vec![shard(&[2], &[2], 2, 2)]));
        applied.push((6, vec![shard(&[2], &[2], 2, 2)]));
        let (violations, seen) = check(&applied, &[report(1, 1, 1, 3), report(2, 2, 2, 6)], &BTreeMap::new());
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!((seen.placements, seen.leader_changes), (2, 1));
    }

    #[test]
    fn a_placement_on_an_expired_or_replaced_registration_is_caught() {
        let mut expired = placed();
        expired.push((4, vec![register(1, None)]));
        expired.push((5, vec![shard(&[1, 2], &[1, 2], 2, 2)]));
        let (violations, _) = check(&expired, &[], &BTreeMap::new());
        assert!(
            violations.iter().any(|v| v.contains("broker 1 with epoch 1, but its registration then was None")),
            "{violations:?}"
        );
        let mut replaced = placed();
        replaced.push((4, vec![register(2, Some(4))]));
        replaced.push((5, vec![shard(&[1, 2], &[1, 2], 2, 2)]));
        let (violations, _) = check(&replaced, &[], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("registration then was Some(4)")), "{violations:?}");
    }

    #[test]
    fn two_leaders_in_one_epoch_and_epochs_going_down_are_caught() {
        let mut same_epoch = placed();
        same_epoch.push((4, vec![shard(&[1, 2], &[1, 2], 2, 1)]));
        let (violations, _) = check(&same_epoch, &[], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("without a new leader epoch")), "{violations:?}");
        assert!(violations.iter().any(|v| v.contains("both led it in leader epoch 1")), "{violations:?}");
        let mut down = placed();
        down.push((4, vec![shard(&[1, 2], &[1, 2], 1, 0)]));
        let (violations, _) = check(&down, &[], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("went down from 1 to 0")), "{violations:?}");
    }

    #[test]
    fn a_report_acknowledged_from_a_deposed_leader_or_a_stale_registration_is_caught() {
        let mut applied = placed();
        applied.push((4, vec![shard(&[1, 2], &[1, 2], 2, 2)]));
        applied.push((5, vec![shard(&[1, 2], &[1, 2], 2, 2)]));
        let (violations, _) = check(&applied, &[report(1, 1, 1, 5)], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("led by 2 at leader epoch 2")), "{violations:?}");
        let (violations, _) = check(&applied, &[report(2, 7, 2, 5)], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("registration then was Some(2)")), "{violations:?}");
    }

    #[test]
    fn the_last_in_sync_replica_kept_while_gone_is_not_an_assignment_but_its_return_as_leader_is() {
        let mut applied = placed();
        applied.push((4, vec![register(2, None)]));
        applied.push((5, vec![shard(&[1], &[1], 1, 1)]));
        applied.push((6, vec![register(1, None)]));
        applied.push((7, vec![shard(&[1], &[1], 0, 2)])); // kept, leaderless
        applied.push((8, vec![register(1, Some(8))]));
        applied.push((9, vec![shard(&[1], &[9], 1, 3)])); // back, under a wrong epoch
        let (violations, _) = check(&applied, &[], &BTreeMap::new());
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].contains("broker 1 with epoch 9, but its registration then was Some(8)"),
            "{violations:?}"
        );
    }

    #[test]
    fn a_leader_elected_from_outside_the_in_sync_set_is_caught() {
        let mut applied = placed();
        let lagging = Change::Shard {
            shard: "t/0".into(),
            record: Some(ShardState {
                replicas: vec![1, 2],
                broker_epochs: [(1, 1), (2, 2)].into(),
                leader: 1,
                leader_epoch: 1,
                in_sync: vec![1],
            }),
        };
        applied.push((4, vec![lagging]));
        applied.push((5, vec![shard(&[1, 2], &[1, 2], 2, 2)]));
        let (violations, _) = check(&applied, &[], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("from outside the in-sync set [1]")), "{violations:?}");
    }

    #[test]
    fn a_shard_left_on_a_gone_leader_while_writes_go_on_is_caught_and_a_stalled_cluster_is_excused() {
        let mut applied = placed();
        applied.push((4, vec![register(1, None)]));
        let filler = |from: i64, to: i64| (from..to).map(|r| (r, Vec::new())).collect::<Vec<_>>();
        let mut stuck = applied.clone();
        stuck.extend(filler(5, 20));
        let (_, violations) = check_failover(&stuck, 10);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("10 revisions later it still had no other leader"), "{violations:?}");
        let (checked, violations) = check_failover(&stuck[..8], 10);
        assert!(violations.is_empty() && checked == 0, "too little progress to tell");
        let mut moved = applied.clone();
        moved.extend(filler(5, 8));
        moved.push((8, vec![shard(&[2], &[2], 2, 2)]));
        moved.extend(filler(9, 30));
        assert_eq!(check_failover(&moved, 10), (1, Vec::new()));
    }

    #[test]
    fn the_same_broker_leading_under_a_new_registration_needs_a_new_leader_epoch() {
        let mut applied = placed();
        applied.push((4, vec![register(1, Some(4))]));
        applied.push((5, vec![shard(&[1, 2], &[4, 2], 1, 1)]));
        let (violations, _) = check(&applied, &[], &BTreeMap::new());
        assert!(violations.iter().any(|v| v.contains("without a new leader epoch (1 then 1)")), "{violations:?}");
    }

    #[test]
    fn replicas_sharing_a_zone_are_caught() {
        let zones: BTreeMap<u64, String> = [(1, "a".to_string()), (2, "a".to_string())].into();
        let (violations, _) = check(&placed(), &[], &[("t".to_string(), zones)].into());
        assert!(violations.iter().any(|v| v.contains("share zone a")), "{violations:?}");
    }

    #[test]
    fn after_a_gap_what_the_gap_may_have_changed_is_not_held_against_the_server() {
        // Revision 4 (broker 1 registering again, say) was never collected.
        let mut applied = placed();
        applied.push((5, vec![shard(&[1, 2], &[5, 2], 1, 2)]));
        let (violations, seen) = check(&applied, &[], &BTreeMap::new());
        assert!(violations.is_empty(), "{violations:?}");
        assert_eq!(seen.placements, 1, "after the gap the record's change cannot be told from a report's");
    }
}
