//! Leadership transfer (etcd's MoveLeader, and a leader's graceful shutdown).
//!
//! openraft 0.9 has no transfer: a follower refuses to vote while its leader
//! lease (the longest election timeout since it last heard from the leader)
//! runs. So the leader waits for the transferee's log to match its own,
//! pauses writes, reads and heartbeats (nothing then renews the followers'
//! leases), and asks the transferee to campaign until it wins. The others'
//! own election timers fire only after lease plus election timeout, so the
//! transferee, holding the longest log, wins first. Writes pause for about
//! one lease; a transfer that does not land in time resumes the old leader.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::node::{matched_index, NodeError, RaftNode};
use super::types::NodeId;
use crate::proto::raft::v1 as pb;
use crate::runtime;

/// How often the leader asks the transferee to campaign.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(100);

/// Writes, reads and heartbeats paused for a transfer; resumed when dropped,
/// so a transfer whose caller goes away (a MoveLeader whose client hung up or
/// ran out of time drops the handler's future) never leaves them paused.
struct Paused<'a>(&'a RaftNode);

impl<'a> Paused<'a> {
    fn pause(node: &'a RaftNode) -> Self {
        node.transferring.store(true, Ordering::Release);
        node.raft.runtime_config().heartbeat(false);
        Paused(node)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.raft.runtime_config().heartbeat(true);
        self.0.transferring.store(false, Ordering::Release);
    }
}

impl RaftNode {
    /// Whether a leadership transfer is under way here: writes, reads and
    /// lease renewals wait (they are not served by a leader about to leave).
    pub(super) fn transferring(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// Hands leadership to `target`, a caught-up voter. Only the leader can.
    pub async fn transfer_leadership(&self, target: NodeId) -> Result<(), NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader);
        }
        if target == self.id {
            return Ok(());
        }
        let voter = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let is_voter = metrics.membership_config.membership().voter_ids().any(|id| id == target);
            is_voter
        };
        let Some((_, member)) = self.member(target).filter(|_| voter) else {
            return Err(NodeError::BadTransferee);
        };
        let (_, lease_max) = self.election_timeout();
        // The transfer itself: catch-up, one lease, one election, and margin.
        let deadline = self.request_timeout() + lease_max * 3;
        // One transfer at a time: a second would resume writes and
        // heartbeats when it ends, in the middle of the first.
        let _one_at_a_time = self.transfer_lock.lock().await;
        let attempt = async {
            self.wait_caught_up(target).await?;
            let _paused = Paused::pause(self);
            loop {
                if let Ok(mut client) = self.peer(&member.peer_addr) {
                    let _ = runtime::timeout(
                        CAMPAIGN_EVERY,
                        client.campaign(self.sender().request(pb::CampaignRequest {})),
                    )
                    .await;
                }
                runtime::sleep(CAMPAIGN_EVERY).await;
                let metrics = self.raft.metrics();
                let leader = metrics.borrow().current_leader;
                if leader == Some(target) {
                    return Ok(());
                }
                if self.raft_stopped() {
                    return Err(NodeError::Stopped);
                }
            }
        };
        runtime::timeout(deadline, attempt).await.unwrap_or(Err(NodeError::Timeout))
    }

    /// If this node leads a cluster with other voters, hands leadership to
    /// the one whose log is furthest along (before a graceful shutdown, so
    /// the cluster does not wait out an election timeout).
    /// Skipped when the leader has not heard from a quorum lately (no one
    /// could take over).
    pub async fn hand_over_leadership(&self) -> Result<(), NodeError> {
        let (election_min, _) = self.election_timeout();
        let quorum_recent = {
            let metrics = self.raft.metrics();
            let since = metrics.borrow().millis_since_quorum_ack;
            since.is_some_and(|ms| u128::from(ms) < election_min.as_millis())
        };
        if !self.is_leader() || !quorum_recent {
            return Ok(());
        }
        let best = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
            voters.into_iter().filter(|id| *id != self.id).max_by_key(|id| matched_index(&metrics, *id))
        };
        match best {
            Some(target) => {
                tracing::info!(to = target, "handing over leadership before shutdown");
                self.transfer_leadership(target).await
            }
            None => Ok(()),
        }
    }

    /// Waits until `target`'s log matches this leader's.
    async fn wait_caught_up(&self, target: NodeId) -> Result<(), NodeError> {
        loop {
            {
                let metrics = self.raft.metrics();
                let metrics = metrics.borrow();
                if !metrics.state.is_leader() {
                    return Err(NodeError::NotLeader);
                }
                if matched_index(&metrics, target) >= metrics.last_log_index {
                    return Ok(());
                }
            }
            runtime::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The transferee's side: campaign now (the Campaign RPC's handler).
    pub async fn campaign(&self) -> Result<(), NodeError> {
        self.raft.trigger().elect().await.map_err(|_| NodeError::Stopped)
    }
}
