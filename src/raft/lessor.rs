//! Lease deadlines: the leader's duty, like ReadIndex.
//!
//! Leases themselves (id, granted TTL, attached keys) are replicated state.
//! Only *when* one expires is decided here, by the leader's monotonic clock:
//! it proposes a revoke through Raft, so every replica deletes the keys at
//! the same revision. Deadlines live in the leader's memory only; a new leader
//! (or this node leading again in a new term) gives every lease a fresh TTL
//! from its own clock, so an election never causes a revocation storm and a
//! lease never expires earlier than its TTL after the last keepalive a leader
//! acknowledged.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::NodeError;
use super::handle::RaftHandle;
use super::state_store::{read_state, SharedState};
use crate::proto::raft::v1 as pb;
use crate::runtime;

/// The leader's own clock (each simulated node's own, skewable one), read the
/// same way by every task of the node.
type Instant = runtime::NodeInstant;

/// Most revokes proposed per expiry pass; a pass that found more is followed
/// by the next one at once.
pub const MAX_REVOKES_PER_PASS: usize = 2048;

/// Revokes proposed together: they share log entries (the proposal batcher
/// gathers concurrent commands), and client writes that arrive meanwhile
/// join the next batch instead of waiting behind every expired lease.
const REVOKES_IN_FLIGHT: usize = 256;

/// Deadlines of the leases, valid for one leadership term.
#[derive(Default)]
struct LeaderLeases {
    /// The term the deadlines belong to (0: not leading).
    term: u64,
    /// Lease id → when it expires unless kept alive.
    deadlines: BTreeMap<i64, Instant>,
}

/// What the leader knows of one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    /// Seconds left (rounded up).
    pub remaining: i64,
    /// TTL as granted.
    pub granted: i64,
}

/// A granted TTL as a duration, within `0..=MAX_LEASE_TTL` seconds: a
/// deadline of now plus it never overflows the clock (a TTL near `i64::MAX`
/// in a data dir of an older version panicked the expiry task).
fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(ttl.clamp(0, crate::state::MAX_LEASE_TTL) as u64)
}

/// The leader's lease deadlines (see the module).
pub(super) struct Lessor {
    handle: RaftHandle,
    /// The applied leases (their granted TTLs).
    state: SharedState,
    /// Deadlines while this node leads.
    leases: std::sync::Mutex<LeaderLeases>,
}

impl Lessor {
    pub(super) fn new(handle: RaftHandle, state: SharedState) -> Self {
        Self { handle, state, leases: Default::default() }
    }

    /// Brings the deadlines in line with leadership and the applied leases;
    /// returns the leases' granted TTLs, or `None` when this node does not lead.
    fn sync_leases(&self, leases: &mut LeaderLeases) -> Option<BTreeMap<i64, i64>> {
        let term = self.handle.term();
        if !self.handle.is_leader() {
            leases.term = 0;
            leases.deadlines.clear();
            return None;
        }
        let granted: BTreeMap<i64, i64> =
            read_state(&self.state).leases().iter().map(|(id, lease)| (*id, lease.ttl)).collect();
        let now = runtime::node_now(self.handle.clock);
        if leases.term != term {
            // A new leadership: every lease starts a full TTL from now.
            leases.term = term;
            leases.deadlines.clear();
        }
        leases.deadlines.retain(|id, _| granted.contains_key(id));
        for (id, ttl) in &granted {
            leases.deadlines.entry(*id).or_insert_with(|| now + ttl_duration(*ttl));
        }
        Some(granted)
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, LeaderLeases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadlines of this term with `id`'s granted TTL (`None`: no such
    /// lease), or `None` when this node does not lead. Costs a lookup, not a
    /// sync of every lease (keepalives are frequent; a whole sync happens
    /// on a new term and in every expiry pass).
    fn lease_locally(&self, id: i64) -> Option<(std::sync::MutexGuard<'_, LeaderLeases>, Option<i64>)> {
        let mut leases = self.lock_leases();
        if !self.handle.is_leader() || leases.term != self.handle.term() {
            self.sync_leases(&mut leases)?;
        }
        let granted = read_state(&self.state).leases().get(&id).map(|lease| lease.ttl);
        if granted.is_none() {
            leases.deadlines.remove(&id);
        }
        Some((leases, granted))
    }

    /// Renews lease `id` by this node's clock: its new TTL, 0 if there is no
    /// such lease (etcd answers a keepalive so), `None` when this node does
    /// not lead. The caller has had a quorum confirm this node leads (see
    /// `RaftNode::renew_lease_as_leader`).
    pub(super) fn renew(&self, id: i64) -> Option<i64> {
        let (mut leases, granted) = self.lease_locally(id)?;
        let now = runtime::node_now(self.handle.clock);
        match granted {
            // Past its deadline the lease is as good as revoked: the expiry
            // pass may have proposed the revoke already, and renewing it now
            // would acknowledge a TTL that the revoke is about to break.
            Some(_) if leases.deadlines.get(&id).is_some_and(|d| *d <= now) => {
                runtime::coverage::reached("keepalive-after-deadline");
                Some(0)
            }
            Some(ttl) => {
                leases.deadlines.insert(id, now + ttl_duration(ttl));
                Some(ttl)
            }
            None => Some(0),
        }
    }

    /// What is left of lease `id`. `None`: this node does not lead;
    /// `Some(None)`: no such lease.
    pub(super) fn ttl(&self, id: i64) -> Option<Option<LeaseTtl>> {
        let (mut leases, granted) = self.lease_locally(id)?;
        let now = runtime::node_now(self.handle.clock);
        Some(granted.map(|ttl| {
            // Granted since the last sync: its deadline starts now.
            let deadline = *leases.deadlines.entry(id).or_insert_with(|| now + ttl_duration(ttl));
            let left = if deadline > now { deadline - now } else { Duration::ZERO };
            LeaseTtl { remaining: left.as_secs() as i64 + i64::from(left.subsec_nanos() > 0), granted: ttl }
        }))
    }

    /// One expiry pass on the leader: proposes with `propose` (a proposal
    /// made only if this node still leads in the given term: `Ok(None)` when
    /// it does not) a revoke for every lease past its deadline. Returns how many were
    /// revoked.
    pub(super) async fn expire<F, Proposed>(&self, propose: F) -> usize
    where
        F: Fn(pb::Command, u64) -> Proposed,
        Proposed: std::future::Future<Output = Result<Option<pb::CommandResult>, NodeError>>,
    {
        let (expired, term): (Vec<i64>, u64) = {
            let mut leases = self.lock_leases();
            if self.sync_leases(&mut leases).is_none() {
                return 0;
            }
            let now = runtime::node_now(self.handle.clock);
            let expired =
                leases.deadlines.iter().filter(|(_, d)| **d <= now).map(|(id, _)| *id).take(MAX_REVOKES_PER_PASS);
            (expired.collect(), leases.term)
        };
        let mut revoked = 0;
        for chunk in expired.chunks(REVOKES_IN_FLIGHT) {
            let proposals = chunk.iter().map(|&id| {
                let command = pb::Command {
                    auth_revision: None,
                    alarm_disarms: None,
                    request: Some(pb::command::Request::LeaseRevoke(crate::proto::etcdserverpb::LeaseRevokeRequest {
                        id,
                    })),
                };
                // Proposed only in the term whose deadlines decided it.
                let proposed = propose(command, term);
                async move { (id, proposed.await) }
            });
            let mut stop = false;
            for (id, outcome) in futures::future::join_all(proposals).await {
                match outcome {
                    Ok(Some(_)) => revoked += 1,
                    Ok(None) => stop = true,         // no longer leading
                    Err(NodeError::Refused(_)) => {} // revoked meanwhile
                    Err(e) => {
                        tracing::warn!(lease = id, cause = %e, "lease expiry not proposed");
                        stop = true;
                    }
                }
            }
            if stop {
                break;
            }
        }
        revoked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_from_any_ttl_does_not_overflow_the_clock() {
        let now = runtime::node_now(1);
        for ttl in [i64::MIN, -1, 0, 1, crate::state::MAX_LEASE_TTL, i64::MAX] {
            let _ = now + ttl_duration(ttl);
        }
        assert_eq!(ttl_duration(i64::MAX), ttl_duration(crate::state::MAX_LEASE_TTL));
    }
}
