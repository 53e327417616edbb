//! Lease safety, exact: a keepalive acknowledged with a positive TTL that
//! was sent at time t promises the lease (and the keys attached to it) lives
//! until t + TTL, whatever happens to the leader. The leader that renewed it
//! did so after t, once a quorum had confirmed it still leads; any leader
//! elected later was elected after that confirmation and gives every lease a
//! full TTL from its election. So a leader change excuses nothing: only a
//! node clock that ran fast (the deadlines live in the leader's memory,
//! measured by its clock) may end a lease early.
//!
//! (Until issue 23 the checker dated a promise from the acknowledgement and
//! excused every leader change: the bug of regression seed 238, a leader cut
//! off acknowledging keepalives the new leader never saw, hid behind it.)

use std::fmt;
use std::time::Duration;

/// One lease's life as its client saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LeaseEpisode {
    /// Client number.
    pub client: u32,
    /// The lease id.
    pub id: i64,
    /// Granted TTL, seconds.
    pub ttl: i64,
    /// Whether the put attaching the key was acknowledged.
    pub key_written: bool,
    /// When each keepalive that was then acknowledged with a positive TTL
    /// was sent (the leader renewed the lease no earlier).
    pub acks: Vec<Duration>,
    /// Linearizable reads of the key: (invoked, completed, present).
    pub reads: Vec<(Duration, Duration, bool)>,
}

/// A time range during which leases may end early: a node's clock ran fast.
pub type Excused = (Duration, Duration);

/// A key that vanished while its lease was kept alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseViolation(pub String);

impl fmt::Display for LeaseViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease safety: {}", self.0)
    }
}

/// Slack for message delays and whole-second rounding.
const SLACK: Duration = Duration::from_secs(1);

/// Checks every episode; `excused`: windows of skewed clocks.
pub fn check(episodes: &[LeaseEpisode], excused: &[Excused]) -> Vec<LeaseViolation> {
    let mut violations = Vec::new();
    for ep in episodes.iter().filter(|ep| ep.key_written) {
        let ttl = Duration::from_secs(ep.ttl.max(0) as u64);
        for (invoked, completed, present) in &ep.reads {
            if *present {
                continue;
            }
            // The last acknowledged keepalive sent before the read began.
            let Some(ack) = ep.acks.iter().filter(|a| **a <= *invoked).max() else { continue };
            if *ack + ttl < *completed + SLACK {
                continue; // the lease may have run out: its promise ended before the read did
            }
            let window = (ack.saturating_sub(ttl), *completed);
            if excused.iter().any(|(from, to)| *from <= window.1 && window.0 <= *to) {
                continue;
            }
            violations.push(LeaseViolation(format!(
                "client {} lease {:x} (TTL {}s): key gone at a read [{:.3}s..{:.3}s] though a keepalive sent at {:.3}s was acknowledged",
                ep.client,
                ep.id,
                ep.ttl,
                invoked.as_secs_f64(),
                completed.as_secs_f64(),
                ack.as_secs_f64()
            )));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn episode(read_at: f64) -> LeaseEpisode {
        LeaseEpisode {
            client: 0,
            id: 1,
            ttl: 3,
            key_written: true,
            acks: vec![s(1.0), s(2.0)],
            reads: vec![(s(read_at), s(read_at + 0.1), false)],
        }
    }

    #[test]
    fn a_key_gone_right_after_a_keepalive_is_a_violation() {
        assert_eq!(check(&[episode(2.5)], &[]).len(), 1);
    }

    #[test]
    fn a_leader_change_does_not_excuse_a_key_gone_within_the_promise() {
        // Acknowledged keepalives sent at 1 s and 2 s promise the lease to 5 s;
        // no window but a skewed clock's excuses the key gone at 4 s.
        assert_eq!(check(&[episode(3.8)], &[]).len(), 1);
    }

    #[test]
    fn a_key_gone_after_the_ttl_or_in_an_excused_window_is_fine() {
        assert!(check(&[episode(6.0)], &[]).is_empty());
        assert!(check(&[episode(2.5)], &[(s(1.5), s(1.6))]).is_empty());
    }
}
