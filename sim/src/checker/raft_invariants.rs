//! Raft invariants over samples of every node's metrics taken during a run.

use std::collections::BTreeMap;
use std::time::Duration;

/// One node's Raft state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Virtual time of the sample.
    pub at: Duration,
    /// The node sampled.
    pub node: u64,
    /// Its current term.
    pub term: u64,
    /// Whether it considers itself leader.
    pub is_leader: bool,
    /// Index of its last log entry.
    pub last_log: u64,
    /// Index of its last applied entry.
    pub applied: u64,
}

/// Checks: at most one leader per term; a node's term never goes back;
/// applied ≤ last log.
pub fn check(samples: &[Sample]) -> Vec<String> {
    let mut violations = Vec::new();
    let mut leader_of_term: BTreeMap<u64, &Sample> = BTreeMap::new();
    let mut last_term: BTreeMap<u64, &Sample> = BTreeMap::new();
    for s in samples {
        if s.is_leader {
            match leader_of_term.get(&s.term) {
                Some(other) if other.node != s.node => {
                    violations.push(format!(
                        "two leaders in term {}: node {} at {:?} and node {} at {:?}",
                        s.term, other.node, other.at, s.node, s.at
                    ));
                }
                Some(_) => {}
                None => {
                    leader_of_term.insert(s.term, s);
                }
            }
        }
        if let Some(prev) = last_term.get(&s.node) {
            if s.term < prev.term {
                violations.push(format!(
                    "node {} term went back from {} at {:?} to {} at {:?}",
                    s.node, prev.term, prev.at, s.term, s.at
                ));
            }
        }
        last_term.insert(s.node, s);
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

    fn s(at: u64, node: u64, term: u64, is_leader: bool) -> Sample {
        Sample { at: Duration::from_millis(at), node, term, is_leader, last_log: 10, applied: 5 }
    }

    #[test]
    fn healthy_samples_pass() {
        assert!(check(&[s(0, 1, 1, true), s(0, 2, 1, false), s(10, 2, 2, true), s(10, 1, 2, false)]).is_empty());
    }

    #[test]
    fn violations_are_reported() {
        assert_eq!(check(&[s(0, 1, 3, true), s(5, 2, 3, true)]).len(), 1, "two leaders in one term");
        assert_eq!(check(&[s(0, 1, 3, false), s(5, 1, 2, false)]).len(), 1, "term went back");
        let mut bad = s(0, 1, 1, false);
        bad.applied = 11;
        assert_eq!(check(&[bad]).len(), 1, "applied beyond log");
    }
}
