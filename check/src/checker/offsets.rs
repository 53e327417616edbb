//! Consumer groups' generation fence, as the committers saw it. (What the
//! offsets read back is checked as a register per shard by the
//! linearizability checker.)
//!
//! - a commit carrying generation `g` is never acknowledged once a commit
//!   with a higher generation was acknowledged before it was sent: a
//!   consumer of an older generation (a zombie after a rebalance) cannot
//!   overwrite the offsets of the newer one;
//! - an acknowledged commit reports the group's generation after it: at
//!   least its own, and at least every generation acknowledged before it
//!   was sent;
//! - a commit refused as stale names a generation above its own that some
//!   commit sent before the refusal carried (no generation is invented).

use std::fmt;
use std::time::Duration;

/// How a commit ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ended {
    /// Acknowledged, with the group's generation after it.
    Acked(i64),
    /// Refused as stale: the group's generation the refusal named.
    Stale(i64),
    /// Refused otherwise (nothing was written).
    Refused(String),
    /// Timed out or failed in transit: it may or may not have happened.
    Unknown,
}

/// One commit of one consumer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Commit {
    /// The consumer.
    pub consumer: u64,
    /// Its group.
    pub group: String,
    /// The generation it carried (> 0: every simulated commit is fenced).
    pub generation: i64,
    /// When it was sent, since the start.
    pub invoked: Duration,
    /// When it ended.
    pub completed: Duration,
    /// How.
    pub ended: Ended,
}

impl fmt::Display for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{:>9.3}s..{:>9.3}s] consumer {} group {} generation {} -> {:?}",
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.consumer,
            self.group,
            self.generation,
            self.ended
        )
    }
}

/// Checks the fence over every group's commits; one message per violation.
pub fn check(commits: &[Commit]) -> Vec<String> {
    let mut violations = Vec::new();
    let acked = |c: &&Commit| matches!(c.ended, Ended::Acked(_));
    for c in commits {
        let same_group = || commits.iter().filter(move |o| o.group == c.group);
        // The highest generation acknowledged before `c` was sent.
        let before = same_group().filter(acked).filter(|o| o.completed < c.invoked).max_by_key(|o| o.generation);
        match &c.ended {
            Ended::Acked(after) => {
                if let Some(newer) = before.filter(|o| o.generation > c.generation) {
                    violations.push(format!(
                        "offsets: a commit of a stale generation was acknowledged:\n  {c}\n  after {newer}"
                    ));
                }
                let floor = before.map_or(0, |o| o.generation).max(c.generation);
                if *after < floor {
                    violations.push(format!(
                        "offsets: an acknowledged commit reports generation {after}, below {floor}:\n  {c}"
                    ));
                }
            }
            Ended::Stale(current) => {
                let named = same_group().any(|o| o.generation >= *current && o.invoked < c.completed);
                if *current <= c.generation || !named {
                    violations.push(format!(
                        "offsets: a commit was refused as stale at generation {current}, which no commit sent before carried:\n  {c}"
                    ));
                }
            }
            Ended::Refused(_) | Ended::Unknown => {}
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(consumer: u64, generation: i64, at: (u64, u64), ended: Ended) -> Commit {
        Commit {
            consumer,
            group: "g".into(),
            generation,
            invoked: Duration::from_millis(at.0),
            completed: Duration::from_millis(at.1),
            ended,
        }
    }

    #[test]
    fn a_fenced_history_passes() {
        let history = [
            commit(1, 1, (0, 10), Ended::Acked(1)),
            commit(2, 2, (20, 30), Ended::Acked(2)),
            commit(1, 1, (40, 50), Ended::Stale(2)),
            // Concurrent with the raise: either order is fine.
            commit(1, 1, (25, 60), Ended::Acked(1)),
            commit(2, 2, (70, 80), Ended::Unknown),
        ];
        assert_eq!(check(&history), Vec::<String>::new());
    }

    #[test]
    fn a_zombie_commit_acknowledged_after_a_newer_generation_is_a_violation() {
        let history = [commit(2, 2, (0, 10), Ended::Acked(2)), commit(1, 1, (20, 30), Ended::Acked(2))];
        let found = check(&history);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("stale generation was acknowledged"), "{found:?}");
    }

    #[test]
    fn a_generation_after_below_what_was_acknowledged_or_an_invented_one_is_a_violation() {
        let lowered = [commit(2, 3, (0, 10), Ended::Acked(3)), commit(1, 3, (20, 30), Ended::Acked(1))];
        assert!(check(&lowered)[0].contains("reports generation 1, below 3"));
        let invented = [commit(1, 1, (0, 10), Ended::Acked(1)), commit(1, 1, (20, 30), Ended::Stale(5))];
        assert!(check(&invented)[0].contains("which no commit sent before carried"));
    }
}
