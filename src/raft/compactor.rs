//! Auto-compaction: the leader proposes `Compact` so that the history stays
//! within the configured retention: by revision count and/or by age, and
//! always within its byte budget.
//! Proposed through Raft like a client's compaction: every replica drops the
//! same history at the same point of the log.

use std::collections::VecDeque;
use std::time::Duration;

use super::node::{NodeError, RaftNode};
use super::state_store::read_state;
use crate::config::Config;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::proto::raft::v1 as pb;
use crate::runtime::{self, Instant};

/// How often the leader applies the count and age rules.
const RULE_INTERVAL: Duration = Duration::from_secs(5);

/// How often the leader checks the history's bytes against the budget: a
/// read of a counter, often enough that a burst of big values is compacted
/// before the history holds much more than its budget.
const BYTES_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The leader's auto-compaction policy and what it saw of the revision over time.
pub struct AutoCompaction {
    /// Revisions of history to keep (0: no count limit).
    keep_revisions: i64,
    /// Age of history to keep (zero: no age limit).
    keep_age: Duration,
    /// Bytes of history to keep at most.
    keep_bytes: u64,
    /// (when, revision) seen while leading, oldest first: the age rule's clock.
    samples: VecDeque<(Instant, i64)>,
    /// When the count and age rules run next.
    next_rules: Option<Instant>,
}

impl AutoCompaction {
    /// The policy from the configuration.
    pub fn new(config: &Config) -> Self {
        Self {
            keep_revisions: config.auto_compaction_retention_revisions.min(i64::MAX as u64) as i64,
            keep_age: Duration::from_secs(config.auto_compaction_retention_secs),
            keep_bytes: config.history_budget_bytes(),
            samples: VecDeque::new(),
            next_rules: None,
        }
    }

    /// How long to wait between passes.
    pub fn pass_interval(&self) -> Duration {
        BYTES_CHECK_INTERVAL
    }

    /// The revision to compact to now, if any: what the retention no longer covers.
    fn target(&mut self, now: Instant, revision: i64, compacted: i64) -> Option<i64> {
        let mut target = 0;
        if self.keep_revisions > 0 {
            target = revision - self.keep_revisions;
        }
        if !self.keep_age.is_zero() {
            self.samples.push_back((now, revision));
            // Keep one sample older than the age: the revision then is the target.
            while self.samples.len() > 1 && now.saturating_duration_since(self.samples[1].0) >= self.keep_age {
                self.samples.pop_front();
            }
            if let Some((at, old)) = self.samples.front() {
                if now.saturating_duration_since(*at) >= self.keep_age {
                    target = target.max(*old);
                }
            }
        }
        (target > compacted).then_some(target)
    }

    /// One pass: on the leader, compacts what the retention no longer covers.
    pub async fn pass(&mut self, node: &RaftNode) {
        if !node.is_leader() {
            self.samples.clear();
            self.next_rules = None;
            return;
        }
        let (revision, compacted, to_fit) = {
            let state = read_state(node.state());
            (state.revision(), state.compact_revision(), state.compaction_to_fit(self.keep_bytes))
        };
        let now = runtime::now();
        let by_rules = match self.next_rules {
            Some(next) if now < next => None,
            _ => {
                self.next_rules = Some(now + RULE_INTERVAL);
                self.target(now, revision, compacted)
            }
        };
        let Some(target) = by_rules.max(to_fit) else { return };
        let command = pb::Command {
            auth_revision: None,
            alarm_disarms: None,
            request: Some(pb::command::Request::Compaction(CompactionRequest { revision: target, physical: false })),
        };
        match node.propose_as_leader(command).await {
            Ok(_) | Err(NodeError::Refused(_)) => {}
            Err(e) => tracing::warn!(revision = target, cause = %e, "auto-compaction not proposed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(revisions: u64, secs: u64) -> AutoCompaction {
        AutoCompaction::new(&Config {
            auto_compaction_retention_revisions: revisions,
            auto_compaction_retention_secs: secs,
            ..Config::default()
        })
    }

    #[test]
    fn revision_retention_keeps_the_newest_revisions() {
        let now = runtime::now();
        let mut p = policy(100, 0);
        assert_eq!(p.target(now, 50, 0), None);
        assert_eq!(p.target(now, 150, 0), Some(50));
        assert_eq!(p.target(now, 150, 50), None);
    }

    #[test]
    fn age_retention_compacts_to_the_revision_of_that_age() {
        let start = runtime::now();
        let mut p = policy(0, 10);
        assert_eq!(p.target(start, 5, 0), None);
        assert_eq!(p.target(start + Duration::from_secs(5), 20, 0), None);
        // 10 s after the first sample, its revision is old enough to drop.
        assert_eq!(p.target(start + Duration::from_secs(10), 30, 0), Some(5));
        assert_eq!(p.target(start + Duration::from_secs(16), 40, 5), Some(20));
    }
}
