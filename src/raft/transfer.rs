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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::error::NodeError;
use super::handle::{matched_index, since_quorum_ack, RaftHandle};
use super::types::NodeId;
use crate::runtime;

/// How often the leader repeats the transfer request while it has not landed
/// (a member that missed it, or was not ready, hears it again).
const RETRY_EVERY: Duration = Duration::from_millis(300);

/// Writes and reads paused for a transfer; resumed when dropped, so a
/// transfer that fails or times out never leaves them paused.
struct Paused<'a>(&'a AtomicBool);

impl<'a> Paused<'a> {
    fn pause(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::Release);
        Paused(flag)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Hands this leader's leadership over (see the module). Clones share the
/// transfer under way.
#[derive(Clone)]
pub(super) struct LeaderTransfer {
    handle: RaftHandle,
    /// Set while this leader hands over leadership.
    transferring: Arc<AtomicBool>,
    /// Held for the whole of a transfer.
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl LeaderTransfer {
    pub(super) fn new(handle: RaftHandle) -> Self {
        Self { handle, transferring: Default::default(), one_at_a_time: Default::default() }
    }

    /// Whether a leadership transfer is under way here: writes, reads and
    /// lease renewals wait (they are not served by a leader about to leave).
    pub(super) fn in_progress(&self) -> bool {
        self.transferring.load(Ordering::Acquire)
    }

    /// Hands leadership to `target`, a caught-up voter. Only the leader can.
    pub(super) async fn transfer_leadership(&self, target: NodeId) -> Result<(), NodeError> {
        let handle = &self.handle;
        if !handle.is_leader() {
            return Err(NodeError::NotLeader);
        }
        if target == handle.id {
            return Ok(());
        }
        let voter = {
            let metrics = handle.raft.metrics();
            let metrics = metrics.borrow_watched();
            let is_voter = metrics.membership_config.membership().voter_ids().any(|id| id == target);
            is_voter
        };
        if !voter || handle.member(target).is_none() {
            return Err(NodeError::BadTransferee);
        }
        let (done, outcome) = tokio::sync::oneshot::channel();
        let transfer = self.clone();
        runtime::spawn_detached("leader-transfer", async move {
            let _ = done.send(transfer.transfer(target).await);
        });
        outcome.await.unwrap_or(Err(NodeError::Stopped))
    }

    /// The transfer itself, in its own task (see the module).
    async fn transfer(&self, target: NodeId) -> Result<(), NodeError> {
        let handle = &self.handle;
        let (_, lease_max) = handle.election_timeout;
        // Catch-up, one election, and margin.
        let deadline = handle.request_timeout + lease_max * 3;
        // One transfer at a time: a second would resume writes when it
        // ends, in the middle of the first.
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let attempt = async {
            self.wait_caught_up(target).await?;
            let _paused = Paused::pause(&self.transferring);
            loop {
                handle.raft.trigger().transfer_leader(target).await.map_err(|_| NodeError::Stopped)?;
                let waited = runtime::timeout(RETRY_EVERY, async {
                    let mut metrics = handle.raft.metrics();
                    loop {
                        let (leader, leading) = {
                            let m = metrics.borrow_watched();
                            (m.current_leader, m.state.is_leader())
                        };
                        if leader == Some(target) {
                            runtime::coverage::reached("leader-transfer-landed");
                            return Ok(());
                        }
                        if !leading && leader.is_some() && leader != Some(handle.id) {
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
                    Err(_) if handle.raft_stopped() => return Err(NodeError::Stopped),
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
    pub(super) async fn hand_over_leadership(&self) -> Result<(), NodeError> {
        let handle = &self.handle;
        let (election_min, _) = handle.election_timeout;
        let quorum_recent = {
            let metrics = handle.raft.metrics();
            let since = since_quorum_ack(handle.clock, &metrics.borrow_watched());
            since.is_some_and(|since| since < election_min)
        };
        if !handle.is_leader() || !quorum_recent {
            return Ok(());
        }
        let best = {
            let metrics = handle.raft.metrics();
            let metrics = metrics.borrow_watched();
            let voters: Vec<NodeId> = metrics.membership_config.membership().voter_ids().collect();
            voters.into_iter().filter(|id| *id != handle.id).max_by_key(|id| matched_index(&metrics, *id))
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
                let metrics = self.handle.raft.metrics();
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
    pub(super) async fn campaign(&self) -> Result<(), NodeError> {
        self.handle.raft.trigger().elect(false).await.map_err(|_| NodeError::Stopped)
    }
}
