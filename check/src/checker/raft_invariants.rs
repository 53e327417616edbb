//! Raft invariants over samples of every node's metrics taken during a run.
//!
//! openraft (0.9, default mode) identifies a leader by (term, node id): several
//! nodes may lead in one term, one after another, each with a distinct, totally
//! ordered leader id. So the invariants are stated over votes:
//! - at most one node ever leads under a given leader id (term, node);
//! - a node's vote never goes back, across restarts too (votes are fsynced
//!   before any reply depends on them; a lost vote would let a node vote twice).
//!   One exception: a leader restarts with its own vote no longer committed
//!   (`demote_restarted_leader`), so it leads again only through an election;
//!   it still votes for nobody else in that term;
//! - applied ≤ last log index.
//!
//! (Standard Raft's "one leader per term" was tried with openraft's
//! single-term-leader mode; see the note on why we do not run it.)

use std::collections::BTreeMap;
use std::time::Duration;

/// One node's Raft state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Virtual time of the sample.
    pub at: Duration,
    /// The node sampled (its member id).
    pub node: u64,
    /// The harness slot it runs in (its address and disk; a replaced node
    /// keeps the slot with a new member id).
    pub slot: u64,
    /// Its vote: (term, node voted for, committed).
    pub vote: (u64, u64, bool),
    /// Whether it is leader (under its committed vote).
    pub is_leader: bool,
    /// Index of its last log entry.
    pub last_log: u64,
    /// Index of its last applied entry.
    pub applied: u64,
    /// Index of the last entry purged from its log (openraft's view: a purge
    /// the log store put off until the state machine holds that far counts).
    pub purged: u64,
    /// Whether it is in its own view of the membership.
    pub member: bool,
    /// Whether it considers itself removed from the cluster.
    pub removed: bool,
}

/// Checks the invariants above; returns one line per violation.
pub fn check(samples: &[Sample]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut leader_of: BTreeMap<(u64, u64), &Sample> = BTreeMap::new();
    let mut last_vote: BTreeMap<u64, &Sample> = BTreeMap::new();
    let mut removed_at: BTreeMap<u64, &Sample> = BTreeMap::new();
    for s in samples {
        // A member that said it was removed never takes it back (a joining
        // node must not take an older configuration for its removal). One
        // removed while down still names itself in the membership it kept,
        // with nobody left to send it the change: it learns of it from its
        // peers' refusals and stays removed.
        if let Some(r) = removed_at.get(&s.node) {
            if s.member && !s.removed {
                violations.push(format!(
                    "node {} said it was removed at {:?} but is a member again at {:?}",
                    s.node, r.at, s.at
                ));
            }
        }
        if s.removed {
            removed_at.entry(s.node).or_insert(s);
        }
        if s.is_leader {
            let id = (s.vote.0, s.vote.1);
            match leader_of.get(&id) {
                Some(other) if other.node != s.node => violations.push(format!(
                    "two leaders under leader id {id:?}: node {} at {:?} and node {} at {:?}",
                    other.node, other.at, s.node, s.at
                )),
                Some(_) => {}
                None => {
                    leader_of.insert(id, s);
                }
            }
        }
        if let Some(prev) = last_vote.get(&s.node) {
            // openraft's vote order: by leader id (term, node), and under one
            // leader id committed > uncommitted (but see the module on a
            // node's own vote).
            let (pt, pn, pc) = prev.vote;
            let (t, n, c) = s.vote;
            let went_back = (t, n) < (pt, pn) || ((t, n) == (pt, pn) && pc && !c && n != s.node);
            if went_back {
                violations.push(format!(
                    "node {} vote went back from {:?} at {:?} to {:?} at {:?}",
                    s.node, prev.vote, prev.at, s.vote, s.at
                ));
            }
        }
        last_vote.insert(s.node, s);
        if s.applied > s.last_log {
            violations.push(format!(
                "node {} applied {} beyond its last log {} at {:?}",
                s.node, s.applied, s.last_log, s.at
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, node: u64, vote: (u64, u64, bool), is_leader: bool) -> Sample {
        Sample {
            at: Duration::from_millis(at),
            node,
            slot: node,
            vote,
            is_leader,
            last_log: 10,
            applied: 5,
            purged: 0,
            member: true,
            removed: false,
        }
    }

    #[test]
    fn healthy_samples_pass() {
        let samples = [
            s(0, 1, (1, 1, true), true),
            s(0, 2, (1, 1, true), false),
            s(10, 2, (2, 2, false), false),
            s(20, 2, (2, 2, true), true),
            s(20, 1, (2, 2, true), false),
        ];
        assert!(check(&samples).is_empty());
        // Seed 108: openraft's leader ids are (term, node), so two nodes may
        // each lead under their own id in one term; one leader per term is
        // not an invariant of ours.
        assert!(
            check(&[s(0, 1, (3, 1, true), true), s(5, 2, (3, 2, true), true)]).is_empty(),
            "two leader ids, one term"
        );
    }

    #[test]
    fn violations_are_reported() {
        assert_eq!(check(&[s(0, 1, (3, 1, true), true), s(5, 2, (3, 1, true), true)]).len(), 1, "two leaders, one id");
        assert_eq!(check(&[s(0, 1, (3, 2, false), false), s(5, 1, (2, 2, false), false)]).len(), 1, "term went back");
        assert_eq!(check(&[s(0, 1, (3, 2, true), false), s(5, 1, (3, 2, false), false)]).len(), 1, "uncommitted again");
        assert!(check(&[s(0, 2, (3, 2, true), true), s(5, 2, (3, 2, false), false)]).is_empty(), "a leader restarted");
        assert_eq!(check(&[s(0, 1, (3, 3, false), false), s(5, 1, (3, 2, false), false)]).len(), 1, "lower leader id");
        assert!(check(&[s(0, 1, (3, 2, true), false), s(5, 1, (3, 3, false), false)]).is_empty(), "higher leader id");
        let mut bad = s(0, 1, (1, 1, false), false);
        bad.applied = 11;
        assert_eq!(check(&[bad]).len(), 1, "applied beyond log");
        let removed = |at, member, removed| Sample { member, removed, ..s(at, 1, (1, 2, true), false) };
        assert_eq!(check(&[removed(0, false, true), removed(5, true, false)]).len(), 1, "a member again");
        assert!(
            check(&[removed(0, true, true), removed(5, true, true)]).is_empty(),
            "removed while down: told by its peers, its own membership still names it"
        );
    }
}

/// The indexes of `s`'s log to compare next, given the highest index compared
/// on its slot before (`checked`): its applied entries not compared yet, and
/// again those an `applied` that went back (a power loss) covers, but none at
/// or below its purge point. Entries there are no longer in its log even while
/// the disk still holds them: after a snapshot install the log store puts the
/// deletion off until the state machine holds the snapshot, and a stale entry
/// from an old term may sit there meanwhile, which openraft never reads again.
/// After a restart the purge point is the one on disk, so such an entry that
/// survived a crash is compared.
pub fn to_compare(checked: Option<u64>, s: &Sample) -> std::ops::RangeInclusive<u64> {
    let from = checked.map_or(1, |c| (c + 1).min(s.applied + 1));
    from.max(s.purged + 1)..=s.applied
}

/// Committed entries never change: the first bytes seen at a committed index
/// (on any node) must be what every node holds there ever after.
#[derive(Debug, Default)]
pub struct CommittedLog {
    /// index -> (entry bytes, node that first showed it, when)
    seen: BTreeMap<u64, (Vec<u8>, u64, Duration)>,
}

impl CommittedLog {
    /// Records that `node` holds `bytes` at committed `index`; a violation if
    /// they differ from what was seen there before.
    pub fn observe(&mut self, node: u64, at: Duration, index: u64, bytes: &[u8]) -> Option<String> {
        match self.seen.get(&index) {
            None => {
                self.seen.insert(index, (bytes.to_vec(), node, at));
                None
            }
            Some((first, _, _)) if first == bytes => None,
            Some((_, first_node, first_at)) => Some(format!(
                "committed entry {index} changed: node {first_node} held one entry at {first_at:?}, node {node} another at {at:?}"
            )),
        }
    }

    /// How many committed indexes were checked.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing was checked.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod committed_tests {
    use super::*;

    fn at(applied: u64, purged: u64) -> Sample {
        Sample {
            at: Duration::ZERO,
            node: 2,
            slot: 2,
            vote: (6, 1, true),
            is_leader: false,
            last_log: applied,
            applied,
            purged,
            member: true,
            removed: false,
        }
    }

    #[test]
    fn entries_compared_are_the_applied_ones_above_the_purge_point() {
        assert_eq!(to_compare(None, &at(5, 0)), 1..=5, "first sample: all applied");
        assert_eq!(to_compare(Some(5), &at(9, 0)), 6..=9, "then only the new ones");
        assert!(to_compare(Some(9), &at(7, 0)).is_empty(), "applied went back: nothing new yet");
        assert_eq!(to_compare(Some(7), &at(9, 0)), 8..=9, "and what it applies again is compared again");
        // Seed 10219 (3 nodes, at 85fb892): node 2 restarted holding a term-5
        // entry at 541 that the term-6 leader had replaced, then installed a
        // snapshot up to 614. Its state machine said 614 applied while the
        // log store's deletion of 541 waited: that entry is no longer its log.
        assert!(to_compare(Some(540), &at(614, 614)).is_empty(), "snapshot installed: nothing of the old log");
        assert_eq!(to_compare(Some(540), &at(620, 614)), 615..=620);
    }

    #[test]
    fn a_committed_entry_that_changes_is_reported() {
        let mut log = CommittedLog::default();
        let t = Duration::from_millis(1);
        assert!(log.observe(1, t, 5, b"a").is_none());
        assert!(log.observe(2, t, 5, b"a").is_none(), "same entry on another node");
        assert!(log.observe(1, t, 6, b"b").is_none());
        assert!(log.observe(3, t, 5, b"x").is_some(), "different entry at a committed index");
    }
}
