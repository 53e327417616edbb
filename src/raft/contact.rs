//! Whether this member is in touch with its cluster: when a leader last
//! reached it (readiness, `/readyz`), and whether the cluster removed it
//! (a member that is no longer sent anything must find out by asking).

use openraft::async_runtime::WatchReceiver as _;
use std::sync::atomic::{AtomicBool, Ordering};

use super::handle::{since_quorum_ack, RaftHandle};
use super::network::Disowned;
use super::types::NodeId;
use crate::proto::raft::v1 as pb;
use crate::runtime;

/// See the module.
pub(super) struct Contact {
    handle: RaftHandle,
    /// When a leader's AppendEntries (a heartbeat or entries) last reached
    /// this node and was accepted.
    leader_contact: std::sync::Mutex<Option<runtime::Instant>>,
    /// Set once this node saw itself in the membership (see `removed`).
    was_member: AtomicBool,
    /// Peers that refused our Raft messages as from a non-member.
    disowned: Disowned,
}

impl Contact {
    pub(super) fn new(handle: RaftHandle, disowned: Disowned) -> Self {
        Self { handle, leader_contact: Default::default(), was_member: Default::default(), disowned }
    }

    /// Notes that a leader's AppendEntries was accepted just now.
    pub(super) fn note_leader_contact(&self) {
        *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) = Some(runtime::now());
    }

    /// Whether the cluster is in touch, as this node sees it: a leader has
    /// had a quorum acknowledge it, a follower has heard from the leader,
    /// within the longest election timeout. An isolated leader (openraft 0.9
    /// never steps one down) or a follower cut off from it is not ready,
    /// though it still knows a leader.
    pub(super) fn quorum_contact(&self) -> Result<(), String> {
        let limit = self.handle.election_timeout.1;
        let (leader, since_quorum_ack, alone) = {
            let metrics = self.handle.raft.metrics();
            let m = metrics.borrow_watched();
            let mut voters = m.membership_config.membership().voter_ids();
            let alone = voters.next() == Some(self.handle.id) && voters.next().is_none();
            (m.current_leader, since_quorum_ack(self.handle.clock, &m), alone)
        };
        match leader {
            None => Err("no leader".into()),
            Some(leader) if leader == self.handle.id => match since_quorum_ack {
                _ if alone => Ok(()),
                Some(since) if since <= limit => Ok(()),
                Some(since) => Err(format!("this leader has not heard from a quorum for {} ms", since.as_millis())),
                None => Err("this leader has not heard from a quorum yet".into()),
            },
            Some(_) => match *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(at) if runtime::now() - at <= limit => Ok(()),
                Some(at) => Err(format!("no word from the leader for {} ms", (runtime::now() - at).as_millis())),
                None => Err("no word from the leader yet".into()),
            },
        }
    }

    /// Whether this node was removed from the cluster: it has a membership
    /// and is not in it, or a quorum of the voters it knows refused its
    /// messages as from a non-member (a removed voter is no longer sent the
    /// entry that removed it). A quorum, because a lagging peer may not yet
    /// know a member that was just added, but a quorum has the entry.
    ///
    /// Only a node that has seen itself in the membership can be removed: a
    /// joining learner first receives the older configurations (entries or
    /// a snapshot from before it was added), which do not name it.
    pub(super) fn removed(&self) -> bool {
        let metrics = self.handle.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&self.handle.id).is_some() {
            self.was_member.store(true, Ordering::Relaxed);
        } else {
            return self.was_member.load(Ordering::Relaxed);
        }
        let disowned = self.disowned.lock().unwrap_or_else(|e| e.into_inner());
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let refusing = voters.iter().filter(|v| disowned.contains(v)).count();
        refusing > voters.len() / 2
    }

    /// Asks the voters this node knows whether they still count it a
    /// member, when no leader has reached it for five election timeouts:
    /// a removed learner, or a removed follower that lost the race with its
    /// removal, is sent nothing more and would otherwise wait forever (etcd's
    /// peers answer such a member "removed" when it reconnects). A refusal as
    /// a non-member counts towards `removed`, an answer clears it. A leader
    /// does not ask: it hears its removal by committing it.
    pub(super) async fn ask_whether_removed(&self) {
        let (voters, leader) = {
            let metrics = self.handle.raft.metrics();
            let m = metrics.borrow_watched();
            let membership = m.membership_config.membership();
            if membership.get_node(&self.handle.id).is_none() {
                return;
            }
            let voters: Vec<(NodeId, String)> = membership
                .voter_ids()
                .filter(|id| *id != self.handle.id)
                .filter_map(|id| membership.get_node(&id).map(|m| (id, m.peer_addr.clone())))
                .collect();
            (voters, m.current_leader)
        };
        let last_contact = *self.leader_contact.lock().unwrap_or_else(|e| e.into_inner());
        let quiet = last_contact.is_none_or(|at| runtime::now() - at > 5 * self.handle.election_timeout.1);
        if leader == Some(self.handle.id) || !quiet {
            return;
        }
        let asks = voters.into_iter().map(|(id, peer_addr)| async move {
            let Ok(mut client) = self.handle.peer(&peer_addr) else { return (id, None) };
            let ask = client.members(self.handle.sender.request(pb::MembersRequest {}));
            let answer = runtime::timeout(self.handle.election_timeout.1, ask).await;
            let disowned = match answer {
                Ok(Ok(_)) => Some(false),
                Ok(Err(status))
                    if status.code() == tonic::Code::FailedPrecondition
                        && status.message().contains(super::network::NOT_A_MEMBER) =>
                {
                    Some(true)
                }
                _ => None,
            };
            (id, disowned)
        });
        let answers = futures::future::join_all(asks).await;
        let mut set = self.disowned.lock().unwrap_or_else(|e| e.into_inner());
        for (id, disowned) in answers {
            match disowned {
                Some(true) => {
                    set.insert(id);
                }
                Some(false) => {
                    set.remove(&id);
                }
                None => {}
            }
        }
    }
}
