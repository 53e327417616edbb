//! Leadership transfer (etcd's MoveLeader, and a leader's graceful shutdown),
//! on openraft's own: once the transferee's log matches the leader's, the
//! leader pauses writes and reads and tells every member
//! (`trigger().transfer_leader`); the transferee campaigns as soon as it
//! holds the leader's last entry, and the others grant it their vote without
//! waiting out the old leader's lease. The transfer runs in a task of its
//! own, so a caller that goes away (a MoveLeader whose client hung up or ran
//! out of time) never leaves it half done: it ends, landed or timed out, and
//! writes resume.

use openraft::async_runtime::WatchReceiver as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::node::{matched_index, NodeError, RaftNode};
use super::types::NodeId;
use crate::runtime;

/// How often the leader repeats the transfer request while it has not landed
/// (a member that missed it, or was not ready, hears it again).
const RETRY_EVERY: Duration = Duration::from_millis(300);

/// Writes and reads paused for a transfer; resumed when dropped, so a
/// transfer that fails or times out never leaves them paused.
struct Paused<'a>(&'a RaftNode);

impl<'a> Paused<'a> {
    fn pause(node: &'a RaftNode) -> Self {
        node.transferring.store(true, Ordering::Release);
        Paused(node)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
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
    pub async fn transfer_leadership(self: &Arc<Self>, target: NodeId) -> Result<(), NodeError> {
        if !self.is_leader() {
            return Err(NodeError::NotLeader);
        }
        if target == self.id {
            return Ok(());
        }
        let voter = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
            let is_voter = metrics.membership_config.membership().voter_ids().any(|id| id == target);
            is_voter
        };
        if !voter || self.member(target).is_none() {
            return Err(NodeError::BadTransferee);
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        let node = self.clone();
        runtime::spawn_detached("leader-transfer", async move {
            let _ = done.send(node.transfer(target).await);
        });
        outcome.await.unwrap_or(Err(NodeError::Stopped))
    }

    /// The transfer itself, in its own task (see the module).
    async fn transfer(&self, target: NodeId) -> Result<(), NodeError> {
        let (_, lease_max) = self.election_timeout();
        // Catch-up, one election, and margin.
        let deadline = self.request_timeout() + lease_max * 3;
        // One transfer at a time: a second would resume writes when it
        // ends, in the middle of the first.
        let _one_at_a_time = self.transfer_lock.lock().await;
        let attempt = async {
            self.wait_caught_up(target).await?;
            let _paused = Paused::pause(self);
            loop {
                self.raft.trigger().transfer_leader(target).await.map_err(|_| NodeError::Stopped)?;
                let waited = runtime::timeout(RETRY_EVERY, async {
                    let mut metrics = self.raft.metrics();
                    loop {
                        let (leader, leading) = {
                            let m = metrics.borrow_watched();
                            (m.current_leader, m.state.is_leader())
                        };
                        if leader == Some(target) {
                            return Ok(());
                        }
                        if !leading && leader.is_some() && leader != Some(self.id) {
                            // Another member won: the transfer did not land where asked.
                            return Err(NodeError::NotLeader);
                        }
                        if metrics.changed().await.is_err() {
                            return Err(NodeError::Stopped);
                        }
                    }
                })
                .await;
                match waited {
                    Ok(result) => return result,
                    Err(_) if self.raft_stopped() => return Err(NodeError::Stopped),
                    Err(_) => {}
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
    pub async fn hand_over_leadership(self: &Arc<Self>) -> Result<(), NodeError> {
        let (election_min, _) = self.election_timeout();
        let quorum_recent = {
            let metrics = self.raft.metrics();
            let since = super::node::since_quorum_ack(self.id, &metrics.borrow_watched());
            since.is_some_and(|since| since < election_min)
        };
        if !self.is_leader() || !quorum_recent {
            return Ok(());
        }
        let best = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow_watched();
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
                let metrics = metrics.borrow_watched();
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
        self.raft.trigger().elect(false).await.map_err(|_| NodeError::Stopped)
    }
}
