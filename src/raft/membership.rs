//! Member changes: etcd's MemberAdd, MemberPromote, MemberRemove and
//! MemberUpdate. The leader checks and makes them (one Raft membership change
//! each); a follower forwards them to the leader over raft.v1.
//!
//! Safety rules, as etcd's strict reconfiguration check has them: a change
//! that would leave fewer started voters than a quorum of the new voter set is
//! refused, as is removing the last voter; a learner is promoted only once its
//! log is within 10% of the leader's (etcd's rule), and at most one learner
//! exists at a time.

use openraft::async_runtime::WatchReceiver as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::error::NodeError;
use super::handle::{matched_index, RaftHandle};
use super::network::leader_call;
use super::types::{Member, NodeId};
use crate::proto::raft::v1 as pb;

/// etcd allows one learner at a time.
pub const MAX_LEARNERS: usize = 1;

/// A membership change still unanswered after this many request timeouts
/// is given up (see `membership_write_retain`).
const UNANSWERED_CHANGE_TIMEOUTS: u32 = 10;

/// How long the leader waits for a peer to answer when it counts started members.
const STARTED_PROBE: Duration = Duration::from_millis(500);

/// One change of the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A new member, a voter or a learner; the leader picks its id.
    Add { member: Member, learner: bool },
    /// A learner becomes a voter.
    Promote(NodeId),
    /// A member leaves (voter or learner).
    Remove(NodeId),
    /// New addresses or name of a member; `None` keeps the field. `started`:
    /// the member says it runs (false changes nothing).
    Update { id: NodeId, peer_addr: Option<String>, name: Option<String>, client_addr: Option<String>, started: bool },
}

/// Why the leader refused a member change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    #[error("member not found")]
    NotFound,
    #[error("peer address already used by a member")]
    PeerAddrExists,
    #[error("can only promote a learner member")]
    NotLearner,
    #[error("the learner is not in sync with the leader")]
    LearnerNotReady,
    #[error("cannot remove the last voting member")]
    LastVoter,
    #[error("not enough started members for the new configuration")]
    NotEnoughStarted,
    #[error("too many learner members")]
    TooManyLearners,
    #[error("another membership change is in progress")]
    ChangeInProgress,
    #[error("member address is not HOST:PORT")]
    BadAddress,
}

impl MemberError {
    /// The wire form (raft.v1 MemberRefusal).
    pub fn to_pb(self) -> pb::MemberRefusal {
        use pb::MemberRefusal as R;
        match self {
            MemberError::NotFound => R::MemberNotFound,
            MemberError::PeerAddrExists => R::PeerAddrExists,
            MemberError::NotLearner => R::NotLearner,
            MemberError::LearnerNotReady => R::LearnerNotReady,
            MemberError::LastVoter => R::LastVoter,
            MemberError::NotEnoughStarted => R::NotEnoughStarted,
            MemberError::TooManyLearners => R::TooManyLearners,
            MemberError::ChangeInProgress => R::ChangeInProgress,
            MemberError::BadAddress => R::BadAddress,
        }
    }

    /// Back from the wire form; `None` for "accepted" (and unknown values).
    pub fn from_pb(refusal: i32) -> Option<Self> {
        use pb::MemberRefusal as R;
        Some(match R::try_from(refusal).ok()? {
            R::MemberAccepted => return None,
            R::MemberNotFound => MemberError::NotFound,
            R::PeerAddrExists => MemberError::PeerAddrExists,
            R::NotLearner => MemberError::NotLearner,
            R::LearnerNotReady => MemberError::LearnerNotReady,
            R::LastVoter => MemberError::LastVoter,
            R::NotEnoughStarted => MemberError::NotEnoughStarted,
            R::TooManyLearners => MemberError::TooManyLearners,
            R::ChangeInProgress => MemberError::ChangeInProgress,
            R::BadAddress => MemberError::BadAddress,
        })
    }
}

impl MemberChange {
    /// The wire form.
    pub fn to_pb(&self) -> pb::MemberChange {
        use pb::member_change::{Add, Change, Update};
        let change = match self {
            MemberChange::Add { member, learner } => {
                Change::Add(Add { node: Some(super::codec::member_to_pb(member)), learner: *learner })
            }
            MemberChange::Promote(id) => Change::Promote(*id),
            MemberChange::Remove(id) => Change::Remove(*id),
            MemberChange::Update { id, peer_addr, name, client_addr, started } => Change::Update(Update {
                id: *id,
                peer_addr: peer_addr.clone().unwrap_or_default(),
                name: name.clone().unwrap_or_default(),
                client_addr: client_addr.clone().unwrap_or_default(),
                started: *started,
            }),
        };
        pb::MemberChange { change: Some(change) }
    }

    /// Back from the wire form; `None` for an empty message.
    pub fn from_pb(msg: pb::MemberChange) -> Option<Self> {
        use pb::member_change::Change;
        let some = |s: String| (!s.is_empty()).then_some(s);
        Some(match msg.change? {
            Change::Add(add) => {
                let node = add.node?;
                MemberChange::Add { member: super::codec::member_from_pb(&node), learner: add.learner }
            }
            Change::Promote(id) => MemberChange::Promote(id),
            Change::Remove(id) => MemberChange::Remove(id),
            Change::Update(u) => MemberChange::Update {
                id: u.id,
                peer_addr: some(u.peer_addr),
                name: some(u.name),
                client_addr: some(u.client_addr),
                started: u.started,
            },
        })
    }
}

/// Whether `addr` is HOST:PORT with a numeric port.
pub fn valid_addr(addr: &str) -> bool {
    crate::addr::parse(addr).is_ok_and(|a| !a.is_wildcard())
}

/// A fresh member id: a digest of the peer address and where the log is,
/// never 0 and never an id in use.
fn new_member_id(peer_addr: &str, log_index: u64, taken: &BTreeMap<NodeId, Member>) -> NodeId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in peer_addr.as_bytes().iter().chain(log_index.to_be_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    while h == 0 || taken.contains_key(&h) {
        h = h.wrapping_add(1);
    }
    h
}

/// Whether a learner whose log matches up to `matched` is in sync with a
/// leader whose log ends at `leader_last` (etcd: within 10%).
pub fn learner_ready(matched: Option<u64>, leader_last: u64) -> bool {
    matched.is_some_and(|m| m.saturating_mul(10) >= leader_last.saturating_mul(9))
}

/// Whether `started` of `voters` voters form a quorum.
fn quorum(started: usize, voters: usize) -> bool {
    started > voters / 2
}

/// Makes member changes, through the leader (see the module).
pub(super) struct MemberChanger {
    handle: RaftHandle,
    /// Held by the task of the membership change in flight on this node.
    in_flight: Arc<tokio::sync::Mutex<()>>,
}

impl MemberChanger {
    pub(super) fn new(handle: RaftHandle) -> Self {
        Self { handle, in_flight: Arc::default() }
    }

    /// Whether this node leads and is a voter of its newest membership. A
    /// leader that appended a membership without itself leads until that
    /// commits and then steps down: openraft would take another membership
    /// change from it meanwhile and fail an assertion ("Only leader is
    /// allowed to call update_effective_membership()"), so it makes none.
    fn leads_as_voter(&self) -> bool {
        self.handle.is_leader()
            && self
                .handle
                .raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == self.handle.id)
    }

    /// On the leader, leaves a joint configuration that a change left
    /// behind: its leader lost leadership, or its task ended, between the
    /// joint step and the uniform one. openraft leaves the cluster joint then
    /// (etcd's joint changes leave automatically), and every later change
    /// would be refused as "in progress". Voters that the joint configuration
    /// drops leave the members too: only a removal drops voters. Returns
    /// whether it left one; an error when it could not yet (the joint entry
    /// is not committed, another change is in flight, no leadership).
    pub(super) async fn leave_joint(&self) -> Result<bool, NodeError> {
        if !self.leads_as_voter() {
            return Ok(false);
        }
        let joint =
            self.handle.raft.metrics().borrow_watched().membership_config.membership().get_joint_config().len() > 1;
        if !joint {
            return Ok(false);
        }
        tracing::info!("leaving a joint membership configuration that a change left behind");
        self.membership_write_retain(ChangeMembers::AddVoterIds(BTreeSet::new()), false).await?;
        Ok(true)
    }

    /// Makes `change` through the leader; returns the id of the member it
    /// added or changed. A retried change that had in fact happened is
    /// refused the second time (e.g. an Add with PeerAddrExists), never done twice.
    pub(super) async fn change_members(&self, change: MemberChange) -> Result<NodeId, NodeError> {
        let answer = self
            .handle
            .ask_leader_in_time(
                || {
                    let change = change.clone();
                    async move {
                        match self.change_members_as_leader(change).await {
                            Ok(Some(id)) => Ok(Some(Ok(id))),
                            Ok(None) => Ok(None),
                            Err(NodeError::Member(refused)) => Ok(Some(Err(refused))),
                            Err(e) => Err(e),
                        }
                    }
                },
                |mut client, sender| {
                    let msg = change.to_pb();
                    async move {
                        leader_call(client.change_members(sender.request(msg)).await)
                            .map(|r| MemberError::from_pb(r.refusal).map_or(Ok(r.id), Err))
                    }
                },
            )
            .await?;
        answer.map_err(NodeError::Member)
    }

    /// Makes `change` if this node leads (`None` if it does not).
    pub(super) async fn change_members_as_leader(&self, change: MemberChange) -> Result<Option<NodeId>, NodeError> {
        if !self.leads_as_voter() {
            return Ok(None);
        }
        self.leave_joint().await?;
        if !self.leads_as_voter() {
            return Ok(None); // it just left the membership
        }
        let metrics = self.handle.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership().clone();
        if membership.get_joint_config().len() > 1 {
            return Err(MemberError::ChangeInProgress.into());
        }
        let nodes: BTreeMap<NodeId, Member> = membership.nodes().map(|(id, m)| (*id, m.clone())).collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let leader_last = metrics.last_log_index.unwrap_or(0);
        let (changes, id) = match change {
            MemberChange::Add { member, learner } => {
                if !valid_addr(&member.peer_addr) || !(member.client_addr.is_empty() || valid_addr(&member.client_addr))
                {
                    return Err(MemberError::BadAddress.into());
                }
                if nodes.values().any(|m| m.peer_addr == member.peer_addr) {
                    return Err(MemberError::PeerAddrExists.into());
                }
                if learner && nodes.len() - voters.len() >= MAX_LEARNERS {
                    return Err(MemberError::TooManyLearners.into());
                }
                if !learner && !quorum(self.started_voters(&voters, &nodes).await, voters.len() + 1) {
                    return Err(MemberError::NotEnoughStarted.into());
                }
                let id = new_member_id(&member.peer_addr, leader_last, &nodes);
                let added = ChangeMembers::AddNodes(BTreeMap::from([(id, member)]));
                self.membership_write(added).await?;
                if learner {
                    return Ok(Some(id));
                }
                (ChangeMembers::AddVoterIds(BTreeSet::from([id])), id)
            }
            MemberChange::Promote(id) => {
                if !nodes.contains_key(&id) {
                    return Err(MemberError::NotFound.into());
                }
                if voters.contains(&id) {
                    return Err(MemberError::NotLearner.into());
                }
                if !learner_ready(matched_index(&metrics, id), leader_last) {
                    return Err(MemberError::LearnerNotReady.into());
                }
                (ChangeMembers::AddVoterIds(BTreeSet::from([id])), id)
            }
            MemberChange::Remove(id) => {
                if !nodes.contains_key(&id) {
                    return Err(MemberError::NotFound.into());
                }
                if voters.contains(&id) {
                    let rest: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
                    if rest.is_empty() {
                        return Err(MemberError::LastVoter.into());
                    }
                    if !quorum(self.started_voters(&rest, &nodes).await, rest.len()) {
                        return Err(MemberError::NotEnoughStarted.into());
                    }
                    // Out of the voters and out of the nodes in one change.
                    let changes = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
                    self.membership_write_retain(changes, false).await?;
                    return Ok(Some(id));
                }
                (ChangeMembers::RemoveNodes(BTreeSet::from([id])), id)
            }
            MemberChange::Update { id, peer_addr, name, client_addr, started } => {
                let Some(old) = nodes.get(&id) else {
                    return Err(MemberError::NotFound.into());
                };
                let mut new = old.clone();
                if let Some(addr) = peer_addr {
                    if !valid_addr(&addr) {
                        return Err(MemberError::BadAddress.into());
                    }
                    if nodes.iter().any(|(other, m)| *other != id && m.peer_addr == addr) {
                        return Err(MemberError::PeerAddrExists.into());
                    }
                    new.peer_addr = addr;
                }
                if let Some(addr) = client_addr {
                    if !valid_addr(&addr) {
                        return Err(MemberError::BadAddress.into());
                    }
                    new.client_addr = addr;
                }
                if let Some(name) = name {
                    new.name = name;
                }
                new.started |= started;
                if new == *old {
                    return Ok(Some(id));
                }
                (ChangeMembers::SetNodes(BTreeMap::from([(id, new)])), id)
            }
        };
        self.membership_write(changes).await?;
        Ok(Some(id))
    }

    async fn membership_write(&self, changes: ChangeMembers<NodeId, Member>) -> Result<(), NodeError> {
        self.membership_write_retain(changes, true).await
    }

    /// One Raft membership change, waited for until the new configuration
    /// is committed. `retain`: removed voters stay as learners. One at a
    /// time on this node; it runs in its own task, so that a caller who
    /// gives up (a deadline, a dropped RPC) cannot stop it between its joint
    /// and its uniform step.
    async fn membership_write_retain(
        &self,
        changes: ChangeMembers<NodeId, Member>,
        retain: bool,
    ) -> Result<(), NodeError> {
        let Ok(in_flight) = self.in_flight.clone().try_lock_owned() else {
            return Err(MemberError::ChangeInProgress.into());
        };
        if !self.leads_as_voter() {
            return Err(NodeError::LeaderUnreachable("this node no longer leads as a voter".into()));
        }
        let raft = self.handle.raft.clone();
        let (done, outcome) = tokio::sync::oneshot::channel();
        // Bounded all the same: a change openraft never answered would
        // otherwise hold this node's changes for good. One cut off between
        // its steps leaves a joint configuration that `leave_joint` leaves.
        let bound = self.handle.request_timeout * UNANSWERED_CHANGE_TIMEOUTS;
        crate::runtime::spawn_detached("membership-change", async move {
            if let Ok(answer) = crate::runtime::timeout(bound, raft.change_membership(changes, retain)).await {
                let _ = done.send(answer);
            }
            drop(in_flight);
        });
        match crate::runtime::timeout(self.handle.request_timeout, outcome).await {
            Err(_) => Err(NodeError::Timeout),
            Ok(Err(_)) => Err(NodeError::Stopped),
            Ok(Ok(Ok(_))) => Ok(()),
            Ok(Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))))) => Err(match e {
                ChangeMembershipError::InProgress(_) => MemberError::ChangeInProgress.into(),
                ChangeMembershipError::EmptyMembership(_) => MemberError::LastVoter.into(),
                ChangeMembershipError::LearnerNotFound(_) => MemberError::NotFound.into(),
                ChangeMembershipError::UncommittedLeaderLog(_) => MemberError::ChangeInProgress.into(),
                other => NodeError::Raft(other.to_string()),
            }),
            // Lost leadership midway: the change may or may not commit.
            Ok(Ok(Err(RaftError::APIError(
                ClientWriteError::ForwardToLeader(_) | ClientWriteError::LogEntryDiscarded(_),
            )))) => Err(NodeError::LeaderUnreachable("leadership lost during a membership change".into())),
            Ok(Ok(Err(RaftError::APIError(e)))) => Err(NodeError::Raft(e.to_string())),
            Ok(Ok(Err(RaftError::Fatal(_)))) => Err(NodeError::Stopped),
        }
    }

    /// How many of `voters` are started: this node, and every other that
    /// answers a raft.v1 call within a short while (even with an error).
    async fn started_voters(&self, voters: &BTreeSet<NodeId>, nodes: &BTreeMap<NodeId, Member>) -> usize {
        let mut started = 0;
        for id in voters {
            if *id == self.handle.id {
                started += 1;
                continue;
            }
            let Some(member) = nodes.get(id) else { continue };
            let Ok(mut client) = self.handle.peer(&member.peer_addr) else { continue };
            let probe = client.read_index(self.handle.sender.request(pb::ReadIndexRequest {}));
            match crate::runtime::timeout(STARTED_PROBE, probe).await {
                Ok(Ok(_)) => started += 1,
                // Any answer but "could not connect" means it runs.
                Ok(Err(status)) if !super::network::never_sent(&status) => started += 1,
                _ => {}
            }
        }
        started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_is_ready_within_ten_percent_of_the_leader() {
        assert!(learner_ready(Some(90), 100));
        assert!(!learner_ready(Some(89), 100));
        assert!(!learner_ready(None, 100));
        assert!(learner_ready(Some(0), 0));
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert!(quorum(2, 3));
        assert!(!quorum(2, 4));
        assert!(quorum(3, 4));
        assert!(quorum(1, 1));
        assert!(!quorum(0, 1));
    }

    #[test]
    fn addresses_must_be_host_and_port() {
        assert!(valid_addr("127.0.0.1:2380"));
        assert!(valid_addr("node-1.local:2380"));
        assert!(!valid_addr("127.0.0.1"));
        assert!(!valid_addr("http://127.0.0.1:2380"));
        assert!(!valid_addr(":2380"));
        assert!(!valid_addr("127.0.0.1:99999"));
        assert!(!valid_addr("0.0.0.0:2380"), "nobody can dial a wildcard");
        assert!(valid_addr("[::1]:2380"));
    }

    #[test]
    fn new_ids_are_never_zero_nor_taken() {
        let mut taken = BTreeMap::new();
        let first = new_member_id("127.0.0.1:2480", 7, &taken);
        assert_ne!(first, 0);
        taken.insert(first, Member::default());
        let second = new_member_id("127.0.0.1:2480", 7, &taken);
        assert_ne!(second, first);
    }

    #[test]
    fn changes_and_refusals_survive_the_wire() {
        let changes = [
            MemberChange::Add {
                member: Member {
                    name: "n4".into(),
                    peer_addr: "127.0.0.1:2480".into(),
                    client_addr: String::new(),
                    started: true,
                },
                learner: true,
            },
            MemberChange::Promote(4),
            MemberChange::Remove(5),
            MemberChange::Update {
                id: 6,
                peer_addr: Some("127.0.0.1:1".into()),
                name: None,
                client_addr: Some("127.0.0.1:2".into()),
                started: true,
            },
        ];
        for change in changes {
            assert_eq!(MemberChange::from_pb(change.to_pb()), Some(change));
        }
        for refusal in [MemberError::NotFound, MemberError::LearnerNotReady, MemberError::BadAddress] {
            assert_eq!(MemberError::from_pb(refusal.to_pb() as i32), Some(refusal));
        }
        assert_eq!(MemberError::from_pb(0), None);
        assert_eq!(MemberChange::from_pb(pb::MemberChange { change: None }), None);
    }
}
