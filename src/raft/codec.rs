//! Conversions between openraft's types and their protobuf form, used both on
//! the wire (raft.v1) and on disk (log entries, vote, applied state).
//!
//! Decoding is total: bytes from a peer or from disk that do not describe a
//! valid value become a [`DecodeError`], never a panic.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;

use super::types::{
    Entry, EntryPayload, LeaderId, LogId, Member, Membership, NodeId, SnapshotMeta, StoredMembership, Vote,
};
use crate::proto::raft::v1 as pb;

/// Bytes that do not decode to what they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode {what}: {reason}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// Why it failed.
    pub reason: String,
}

impl DecodeError {
    fn missing(what: &'static str, field: &str) -> Self {
        Self { what, reason: format!("missing field {field}") }
    }
}

/// Decodes a protobuf message, naming it in the error.
pub fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, DecodeError> {
    M::decode(bytes).map_err(|e| DecodeError { what, reason: e.to_string() })
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(pb::LeaderId { term: id.leader_id.term, node_id: id.leader_id.node_id }),
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> Result<LogId, DecodeError> {
    let leader = id.leader_id.as_ref().ok_or_else(|| DecodeError::missing("LogId", "leader_id"))?;
    Ok(LogId::new(LeaderId { term: leader.term, node_id: leader.node_id }, id.index))
}

pub fn opt_log_id_from_pb(id: &Option<pb::LogId>) -> Result<Option<LogId>, DecodeError> {
    id.as_ref().map(log_id_from_pb).transpose()
}

pub fn vote_to_pb(v: &Vote) -> pb::Vote {
    pb::Vote { term: v.leader_id.term, node_id: v.leader_id.node_id, committed: v.committed }
}

pub fn vote_from_pb(v: &pb::Vote) -> Vote {
    if v.committed {
        Vote::new_committed(v.term, v.node_id)
    } else {
        Vote::new(v.term, v.node_id)
    }
}

fn required_vote(v: &Option<pb::Vote>, what: &'static str) -> Result<Vote, DecodeError> {
    v.as_ref().map(vote_from_pb).ok_or_else(|| DecodeError::missing(what, "vote"))
}

pub fn member_to_pb(m: &Member) -> pb::Node {
    pb::Node {
        name: m.name.clone(),
        peer_addr: m.peer_addr.clone(),
        client_addr: m.client_addr.clone(),
        started: m.started,
    }
}

pub fn member_from_pb(n: &pb::Node) -> Member {
    Member {
        name: n.name.clone(),
        peer_addr: n.peer_addr.clone(),
        client_addr: n.client_addr.clone(),
        started: n.started,
    }
}

pub fn membership_to_pb(m: &Membership) -> pb::Membership {
    pb::Membership {
        configs: m.get_joint_config().iter().map(|set| pb::NodeIdSet { ids: set.iter().copied().collect() }).collect(),
        nodes: m.nodes().map(|(id, node)| (*id, member_to_pb(node))).collect(),
    }
}

pub fn membership_from_pb(m: &pb::Membership) -> Result<Membership, DecodeError> {
    let configs: Vec<BTreeSet<NodeId>> = m.configs.iter().map(|set| set.ids.iter().copied().collect()).collect();
    let nodes: BTreeMap<NodeId, Member> = m.nodes.iter().map(|(id, n)| (*id, member_from_pb(n))).collect();
    // openraft requires every voter to have a node record.
    for id in configs.iter().flatten() {
        if !nodes.contains_key(id) {
            return Err(DecodeError { what: "Membership", reason: format!("voter {id} has no node record") });
        }
    }
    Membership::new(configs, nodes).map_err(|e| DecodeError { what: "Membership", reason: e.to_string() })
}

pub fn stored_membership_to_pb(m: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: m.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(m.membership())),
    }
}

pub fn stored_membership_from_pb(m: &pb::StoredMembership) -> Result<StoredMembership, DecodeError> {
    let membership = m.membership.as_ref().ok_or_else(|| DecodeError::missing("StoredMembership", "membership"))?;
    Ok(StoredMembership::new(opt_log_id_from_pb(&m.log_id)?, membership_from_pb(membership)?))
}

/// The entry as a message of its own (a copy of its commands: what goes on
/// the wire; the log store writes [`encode_entry`] instead).
pub fn entry_to_pb(e: &Entry) -> pb::Entry {
    let payload = match &e.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(true),
        EntryPayload::Normal(proposal) => pb::entry::Payload::Proposal(pb::Proposal::clone(proposal)),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry { log_id: Some(log_id_to_pb(&e.log_id)), payload: Some(payload) }
}

/// `pb::Entry`'s field number of a proposal (raft.proto).
const ENTRY_PROPOSAL_FIELD: u32 = 5;

/// The bytes of [`entry_to_pb`]`(e)`, without copying a proposal's commands
/// into a message first: a message's encoding is its fields' encodings one
/// after another, so the log id and then the proposal are written in turn.
pub fn encode_entry(e: &Entry) -> Vec<u8> {
    let EntryPayload::Normal(proposal) = &e.payload else {
        return entry_to_pb(e).encode_to_vec();
    };
    let mut bytes = pb::Entry { log_id: Some(log_id_to_pb(&e.log_id)), payload: None }.encode_to_vec();
    bytes.reserve(prost::encoding::message::encoded_len(ENTRY_PROPOSAL_FIELD, &**proposal));
    prost::encoding::message::encode(ENTRY_PROPOSAL_FIELD, &**proposal, &mut bytes);
    bytes
}

pub fn entry_from_pb(e: pb::Entry) -> Result<Entry, DecodeError> {
    let log_id = log_id_from_pb(e.log_id.as_ref().ok_or_else(|| DecodeError::missing("Entry", "log_id"))?)?;
    let payload = match e.payload.ok_or_else(|| DecodeError::missing("Entry", "payload"))? {
        pb::entry::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry::Payload::Normal(cmd) => EntryPayload::Normal(pb::Proposal { commands: vec![cmd] }.into()),
        pb::entry::Payload::Proposal(proposal) => EntryPayload::Normal(proposal.into()),
        pb::entry::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)?),
    };
    Ok(Entry { log_id, payload })
}

pub fn snapshot_meta_to_pb(m: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: m.last_log_id.as_ref().map(log_id_to_pb),
        last_membership: Some(stored_membership_to_pb(&m.last_membership)),
        snapshot_id: snapshot_id(m),
    }
}

/// The name a snapshot's chunks carry: snapshots with one last log id hold
/// the same state. (openraft 0.9 kept a `snapshot_id` in the metadata; the
/// field stays on the wire and on disk, and is ignored when read.)
pub fn snapshot_id(m: &SnapshotMeta) -> String {
    match &m.last_log_id {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.leader_id.node_id, id.index),
        None => "empty".to_string(),
    }
}

pub fn snapshot_meta_from_pb(m: &pb::SnapshotMeta) -> Result<SnapshotMeta, DecodeError> {
    let membership =
        m.last_membership.as_ref().ok_or_else(|| DecodeError::missing("SnapshotMeta", "last_membership"))?;
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(&m.last_log_id)?,
        last_membership: stored_membership_from_pb(membership)?,
    })
}

// ---- RPC messages ----

type AppendReq = openraft::raft::AppendEntriesRequest<super::types::TypeConfig>;
type AppendResp = openraft::raft::AppendEntriesResponse<super::types::TypeConfig>;
type StreamAppendResult = openraft::raft::StreamAppendResult<super::types::TypeConfig>;
type VoteReq = openraft::raft::VoteRequest<super::types::TypeConfig>;
type VoteResp = openraft::raft::VoteResponse<super::types::TypeConfig>;

/// One chunk of a snapshot as a leader sends it (raft.v1 InstallSnapshot).
#[derive(Debug, Clone)]
pub struct SnapReq {
    /// The sending leader's vote.
    pub vote: Vote,
    /// What the snapshot covers.
    pub meta: SnapshotMeta,
    /// The snapshot's name (see [`snapshot_id`]).
    pub snapshot_id: String,
    /// Where in the snapshot this chunk starts.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Vec<u8>,
    /// Whether this is the last chunk.
    pub done: bool,
}

pub fn append_req_to_pb(r: &AppendReq) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote: Some(vote_to_pb(&r.vote)),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to_pb),
        entries: r.entries.iter().map(entry_to_pb).collect(),
        leader_commit: r.leader_commit.as_ref().map(log_id_to_pb),
    }
}

pub fn append_req_from_pb(r: pb::AppendEntriesRequest) -> Result<AppendReq, DecodeError> {
    Ok(AppendReq {
        vote: required_vote(&r.vote, "AppendEntriesRequest")?,
        prev_log_id: opt_log_id_from_pb(&r.prev_log_id)?,
        leader_commit: opt_log_id_from_pb(&r.leader_commit)?,
        entries: r.entries.into_iter().map(entry_from_pb).collect::<Result<_, _>>()?,
    })
}

pub fn append_resp_to_pb(r: &AppendResp) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Kind;
    let mut out = pb::AppendEntriesResponse::default();
    match r {
        AppendResp::Success => out.set_kind(Kind::Success),
        AppendResp::PartialSuccess(matching) => {
            out.set_kind(Kind::PartialSuccess);
            out.matching = matching.as_ref().map(log_id_to_pb);
        }
        AppendResp::Conflict => out.set_kind(Kind::Conflict),
        AppendResp::HigherVote(v) => {
            out.set_kind(Kind::HigherVote);
            out.higher_vote = Some(vote_to_pb(v));
        }
    }
    out
}

pub fn append_resp_from_pb(r: &pb::AppendEntriesResponse) -> Result<AppendResp, DecodeError> {
    use pb::append_entries_response::Kind;
    let kind = Kind::try_from(r.kind)
        .map_err(|_| DecodeError { what: "AppendEntriesResponse", reason: format!("unknown kind {}", r.kind) })?;
    Ok(match kind {
        Kind::Success => AppendResp::Success,
        Kind::PartialSuccess => AppendResp::PartialSuccess(opt_log_id_from_pb(&r.matching)?),
        Kind::Conflict => AppendResp::Conflict,
        Kind::HigherVote => AppendResp::HigherVote(required_vote(&r.higher_vote, "AppendEntriesResponse")?),
    })
}

/// One answer of an AppendStream (see raft.proto): unlike a unary answer,
/// SUCCESS and CONFLICT name their log id.
pub fn stream_result_to_pb(r: &StreamAppendResult) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Kind;
    let mut out = pb::AppendEntriesResponse::default();
    match r {
        Ok(matching) => {
            out.set_kind(Kind::Success);
            out.matching = matching.as_ref().map(log_id_to_pb);
        }
        Err(openraft::raft::StreamAppendError::Conflict(prev)) => {
            out.set_kind(Kind::Conflict);
            out.matching = Some(log_id_to_pb(prev));
        }
        Err(openraft::raft::StreamAppendError::HigherVote(v)) => {
            out.set_kind(Kind::HigherVote);
            out.higher_vote = Some(vote_to_pb(v));
        }
    }
    out
}

pub fn stream_result_from_pb(r: &pb::AppendEntriesResponse) -> Result<StreamAppendResult, DecodeError> {
    use pb::append_entries_response::Kind;
    let what = "AppendStream answer";
    let kind = Kind::try_from(r.kind).map_err(|_| DecodeError { what, reason: format!("unknown kind {}", r.kind) })?;
    Ok(match kind {
        Kind::Success => Ok(opt_log_id_from_pb(&r.matching)?),
        Kind::Conflict => Err(openraft::raft::StreamAppendError::Conflict(
            opt_log_id_from_pb(&r.matching)?
                .ok_or_else(|| DecodeError { what, reason: "a conflict without its log id".into() })?,
        )),
        Kind::HigherVote => Err(openraft::raft::StreamAppendError::HigherVote(required_vote(&r.higher_vote, what)?)),
        Kind::PartialSuccess => {
            return Err(DecodeError { what, reason: "PARTIAL_SUCCESS is a unary answer".into() });
        }
    })
}

pub fn vote_req_to_pb(r: &VoteReq) -> pb::VoteRequest {
    pb::VoteRequest {
        vote: Some(vote_to_pb(&r.vote)),
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: r.leadership_transfer,
    }
}

pub fn vote_req_from_pb(r: &pb::VoteRequest) -> Result<VoteReq, DecodeError> {
    let mut req = VoteReq::new(required_vote(&r.vote, "VoteRequest")?, opt_log_id_from_pb(&r.last_log_id)?);
    req.leadership_transfer = r.leadership_transfer;
    Ok(req)
}

pub fn vote_resp_to_pb(r: &VoteResp) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&r.vote)),
        vote_granted: r.vote_granted,
        last_log_id: r.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_resp_from_pb(r: &pb::VoteResponse) -> Result<VoteResp, DecodeError> {
    Ok(VoteResp {
        vote: required_vote(&r.vote, "VoteResponse")?,
        vote_granted: r.vote_granted,
        last_log_id: opt_log_id_from_pb(&r.last_log_id)?,
    })
}

pub fn snapshot_req_to_pb(r: &SnapReq) -> pb::InstallSnapshotRequest {
    pb::InstallSnapshotRequest {
        vote: Some(vote_to_pb(&r.vote)),
        meta: Some(pb::SnapshotMeta { snapshot_id: r.snapshot_id.clone(), ..snapshot_meta_to_pb(&r.meta) }),
        offset: r.offset,
        data: r.data.clone(),
        done: r.done,
    }
}

pub fn snapshot_req_from_pb(r: pb::InstallSnapshotRequest) -> Result<SnapReq, DecodeError> {
    let meta = r.meta.as_ref().ok_or_else(|| DecodeError::missing("InstallSnapshotRequest", "meta"))?;
    Ok(SnapReq {
        vote: required_vote(&r.vote, "InstallSnapshotRequest")?,
        meta: snapshot_meta_from_pb(meta)?,
        snapshot_id: meta.snapshot_id.clone(),
        offset: r.offset,
        data: r.data,
        done: r.done,
    })
}

type TransferReq = openraft::raft::TransferLeaderRequest<super::types::TypeConfig>;
type TransferResp = openraft::raft::TransferLeaderResponse<super::types::TypeConfig>;

pub fn transfer_req_to_pb(r: &TransferReq) -> pb::TransferLeaderRequest {
    pb::TransferLeaderRequest {
        from_leader: Some(vote_to_pb(r.from_leader())),
        to_node_id: *r.to_node_id(),
        last_log_id: r.last_log_id().map(log_id_to_pb),
    }
}

pub fn transfer_req_from_pb(r: &pb::TransferLeaderRequest) -> Result<TransferReq, DecodeError> {
    Ok(TransferReq::new(
        required_vote(&r.from_leader, "TransferLeaderRequest")?,
        r.to_node_id,
        opt_log_id_from_pb(&r.last_log_id)?,
    ))
}

pub fn transfer_resp_to_pb(r: &TransferResp) -> pb::TransferLeaderResponse {
    use openraft::raft::TransferLeaderError as E;
    use pb::transfer_leader_response::Kind;
    let mut out = pb::TransferLeaderResponse::default();
    match r {
        Ok(()) => out.set_kind(Kind::Done),
        Err(E::VoteChanged { expected, actual }) => {
            out.set_kind(Kind::VoteChanged);
            out.expected_vote = Some(vote_to_pb(expected));
            out.actual_vote = Some(vote_to_pb(actual));
        }
        Err(E::LogNotFlushed { expected, actual }) => {
            out.set_kind(Kind::LogNotFlushed);
            out.expected_log_id = expected.as_ref().map(log_id_to_pb);
            out.actual_log_id = actual.as_ref().map(log_id_to_pb);
        }
    }
    out
}

pub fn transfer_resp_from_pb(r: &pb::TransferLeaderResponse) -> Result<TransferResp, DecodeError> {
    use openraft::raft::TransferLeaderError as E;
    use pb::transfer_leader_response::Kind;
    let kind = Kind::try_from(r.kind)
        .map_err(|_| DecodeError { what: "TransferLeaderResponse", reason: format!("unknown kind {}", r.kind) })?;
    Ok(match kind {
        Kind::Done => Ok(()),
        Kind::VoteChanged => Err(E::VoteChanged {
            expected: required_vote(&r.expected_vote, "TransferLeaderResponse")?,
            actual: required_vote(&r.actual_vote, "TransferLeaderResponse")?,
        }),
        Kind::LogNotFlushed => Err(E::LogNotFlushed {
            expected: opt_log_id_from_pb(&r.expected_log_id)?,
            actual: opt_log_id_from_pb(&r.actual_log_id)?,
        }),
    })
}

/// A state-machine refusal as carried back to a follower that forwarded a write.
pub fn refusal_to_pb(e: &crate::state::StateError) -> pb::Refusal {
    use crate::state::AuthError as A;
    use crate::state::StateError as E;
    match e {
        E::EmptyKey => pb::Refusal::EmptyKey,
        E::TooManyOps => pb::Refusal::TooManyOps,
        E::DuplicateKey => pb::Refusal::DuplicateKey,
        E::FutureRevision => pb::Refusal::FutureRevision,
        E::Compacted => pb::Refusal::Compacted,
        E::KeyNotFound => pb::Refusal::KeyNotFound,
        E::ValueProvided => pb::Refusal::ValueProvided,
        E::LeaseProvided => pb::Refusal::LeaseProvided,
        E::LeaseNotFound => pb::Refusal::LeaseNotFound,
        E::EmptyCommand => pb::Refusal::EmptyCommand,
        E::LeaseExists => pb::Refusal::LeaseExists,
        E::LeaseTtlTooLarge => pb::Refusal::LeaseTtlTooLarge,
        E::NoSpace => pb::Refusal::NoSpace,
        E::NoAlarm => pb::Refusal::NoAlarm,
        E::AlarmDisarmedSince => pb::Refusal::AlarmDisarmedSince,
        E::Corrupt => pb::Refusal::Corrupt,
        E::TooManyRequests => pb::Refusal::TooManyRequests,
        E::Auth(A::RootUserNotExist) => pb::Refusal::AuthRootUserNotExist,
        E::Auth(A::RootRoleNotExist) => pb::Refusal::AuthRootRoleNotExist,
        E::Auth(A::UserAlreadyExist) => pb::Refusal::AuthUserAlreadyExist,
        E::Auth(A::UserEmpty) => pb::Refusal::AuthUserEmpty,
        E::Auth(A::UserNotFound) => pb::Refusal::AuthUserNotFound,
        E::Auth(A::RoleAlreadyExist) => pb::Refusal::AuthRoleAlreadyExist,
        E::Auth(A::RoleNotFound) => pb::Refusal::AuthRoleNotFound,
        E::Auth(A::RoleEmpty) => pb::Refusal::AuthRoleEmpty,
        E::Auth(A::PermissionNotGiven) => pb::Refusal::AuthPermissionNotGiven,
        E::Auth(A::PermissionDenied) => pb::Refusal::AuthPermissionDenied,
        E::Auth(A::RoleNotGranted) => pb::Refusal::AuthRoleNotGranted,
        E::Auth(A::PermissionNotGranted) => pb::Refusal::AuthPermissionNotGranted,
        E::Auth(A::AuthNotEnabled) => pb::Refusal::AuthAuthNotEnabled,
        E::Auth(A::InvalidAuthMgmt) => pb::Refusal::AuthInvalidAuthMgmt,
        E::Auth(A::OldRevision) => pb::Refusal::AuthOldRevision,
        E::Auth(A::AuthFailed) => pb::Refusal::AuthAuthFailed,
        E::Auth(A::InvalidToken) => pb::Refusal::AuthInvalidToken,
    }
}

/// The inverse of [`refusal_to_pb`]; `None` for "not refused" or an unknown code.
pub fn refusal_from_pb(code: i32) -> Option<crate::state::StateError> {
    use crate::state::AuthError as A;
    use crate::state::StateError as E;
    Some(match pb::Refusal::try_from(code).ok()? {
        pb::Refusal::NotRefused => return None,
        pb::Refusal::EmptyKey => E::EmptyKey,
        pb::Refusal::TooManyOps => E::TooManyOps,
        pb::Refusal::DuplicateKey => E::DuplicateKey,
        pb::Refusal::FutureRevision => E::FutureRevision,
        pb::Refusal::Compacted => E::Compacted,
        pb::Refusal::KeyNotFound => E::KeyNotFound,
        pb::Refusal::ValueProvided => E::ValueProvided,
        pb::Refusal::LeaseProvided => E::LeaseProvided,
        pb::Refusal::LeaseNotFound => E::LeaseNotFound,
        pb::Refusal::EmptyCommand => E::EmptyCommand,
        pb::Refusal::LeaseExists => E::LeaseExists,
        pb::Refusal::LeaseTtlTooLarge => E::LeaseTtlTooLarge,
        pb::Refusal::NoSpace => E::NoSpace,
        pb::Refusal::NoAlarm => E::NoAlarm,
        pb::Refusal::AlarmDisarmedSince => E::AlarmDisarmedSince,
        pb::Refusal::Corrupt => E::Corrupt,
        pb::Refusal::TooManyRequests => E::TooManyRequests,
        pb::Refusal::AuthRootUserNotExist => E::Auth(A::RootUserNotExist),
        pb::Refusal::AuthRootRoleNotExist => E::Auth(A::RootRoleNotExist),
        pb::Refusal::AuthUserAlreadyExist => E::Auth(A::UserAlreadyExist),
        pb::Refusal::AuthUserEmpty => E::Auth(A::UserEmpty),
        pb::Refusal::AuthUserNotFound => E::Auth(A::UserNotFound),
        pb::Refusal::AuthRoleAlreadyExist => E::Auth(A::RoleAlreadyExist),
        pb::Refusal::AuthRoleNotFound => E::Auth(A::RoleNotFound),
        pb::Refusal::AuthRoleEmpty => E::Auth(A::RoleEmpty),
        pb::Refusal::AuthPermissionNotGiven => E::Auth(A::PermissionNotGiven),
        pb::Refusal::AuthPermissionDenied => E::Auth(A::PermissionDenied),
        pb::Refusal::AuthRoleNotGranted => E::Auth(A::RoleNotGranted),
        pb::Refusal::AuthPermissionNotGranted => E::Auth(A::PermissionNotGranted),
        pb::Refusal::AuthAuthNotEnabled => E::Auth(A::AuthNotEnabled),
        pb::Refusal::AuthInvalidAuthMgmt => E::Auth(A::InvalidAuthMgmt),
        pb::Refusal::AuthOldRevision => E::Auth(A::OldRevision),
        pb::Refusal::AuthAuthFailed => E::Auth(A::AuthFailed),
        pb::Refusal::AuthInvalidToken => E::Auth(A::InvalidToken),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::PutRequest;

    #[test]
    fn every_refusal_crosses_the_wire_as_itself() {
        let mut seen = 0;
        for code in 1..64 {
            let Some(refusal) = refusal_from_pb(code) else { continue };
            assert_eq!(refusal_to_pb(&refusal) as i32, code, "{refusal:?}");
            seen += 1;
        }
        assert_eq!(seen, 34, "a refusal code does not decode");
    }

    #[test]
    fn a_single_command_entry_of_older_versions_reads_as_a_proposal_of_one() {
        let cmd = pb::Command {
            auth_revision: None,
            alarm_disarms: None,
            request: Some(pb::command::Request::Put(PutRequest { key: b"k".to_vec(), ..Default::default() })),
        };
        let old = pb::Entry {
            log_id: Some(log_id_to_pb(&LogId::new(LeaderId { term: 1, node_id: 1 }, 4))),
            payload: Some(pb::entry::Payload::Normal(cmd.clone())),
        };
        let entry = entry_from_pb(old).unwrap();
        assert!(matches!(entry.payload, EntryPayload::Normal(p) if p.commands == vec![cmd]));
    }

    #[test]
    fn garbage_and_incomplete_messages_are_errors_not_panics() {
        assert!(decode::<pb::Entry>("Entry", &[0xff, 0xff, 0xff]).is_err());
        assert!(entry_from_pb(pb::Entry::default()).is_err());
        let voter_without_node =
            pb::Membership { configs: vec![pb::NodeIdSet { ids: vec![7] }], nodes: Default::default() };
        assert!(membership_from_pb(&voter_without_node).is_err());
        assert!(append_req_from_pb(pb::AppendEntriesRequest::default()).is_err());
        assert!(append_resp_from_pb(&pb::AppendEntriesResponse { kind: 42, ..Default::default() }).is_err());
    }

    #[test]
    fn transfer_leader_messages_round_trip() {
        use openraft::raft::{TransferLeaderError, TransferLeaderRequest};
        let id = |term, index| LogId::new(LeaderId { term, node_id: 1 }, index);
        let req = TransferLeaderRequest::new(Vote::new_committed(3, 1), 2, Some(id(3, 40)));
        assert_eq!(transfer_req_from_pb(&transfer_req_to_pb(&req)).unwrap(), req);
        for resp in [
            Ok(()),
            Err(TransferLeaderError::VoteChanged { expected: Vote::new_committed(3, 1), actual: Vote::new(4, 2) }),
            Err(TransferLeaderError::LogNotFlushed { expected: Some(id(3, 40)), actual: None }),
        ] {
            assert_eq!(transfer_resp_from_pb(&transfer_resp_to_pb(&resp)).unwrap(), resp);
        }
        let unknown = pb::TransferLeaderResponse { kind: 9, ..Default::default() };
        assert!(transfer_resp_from_pb(&unknown).is_err());
    }

    #[test]
    fn append_stream_answers_round_trip_and_name_their_log_ids() {
        use openraft::raft::StreamAppendError;
        let id = |term, index| LogId::new(LeaderId { term, node_id: 1 }, index);
        for result in [
            Ok(None),
            Ok(Some(id(2, 17))),
            Err(StreamAppendError::Conflict(id(1, 9))),
            Err(StreamAppendError::HigherVote(Vote::new(5, 3))),
        ] {
            assert_eq!(stream_result_from_pb(&stream_result_to_pb(&result)).unwrap(), result);
        }
        use pb::append_entries_response::Kind;
        let conflict_without_id = pb::AppendEntriesResponse { kind: Kind::Conflict as i32, ..Default::default() };
        assert!(stream_result_from_pb(&conflict_without_id).is_err());
        let partial = pb::AppendEntriesResponse { kind: Kind::PartialSuccess as i32, ..Default::default() };
        assert!(stream_result_from_pb(&partial).is_err());
    }

    #[test]
    fn votes_round_trip() {
        for vote in [Vote::new(4, 2), Vote::new_committed(5, 3), Vote::new(0, 0)] {
            assert_eq!(vote_from_pb(&vote_to_pb(&vote)), vote);
        }
    }

    mod round_trips {
        use proptest::collection::{btree_map, btree_set, vec};
        use proptest::prelude::*;

        use super::*;

        fn member() -> impl Strategy<Value = Member> {
            ("[a-z0-9-]{0,12}", "[a-z0-9.:\\[\\]]{1,24}", "[a-z0-9.:]{0,24}", any::<bool>())
                .prop_map(|(name, peer_addr, client_addr, started)| Member { name, peer_addr, client_addr, started })
        }

        /// A membership of 1-5 nodes, one or two configs (joint) of voters among them.
        fn membership() -> impl Strategy<Value = Membership> {
            btree_map(1..20u64, member(), 1..6).prop_flat_map(|nodes| {
                let ids: Vec<u64> = nodes.keys().copied().collect();
                let config = btree_set(proptest::sample::select(ids), 1..=nodes.len());
                vec(config, 1..3)
                    .prop_map(move |configs| Membership::new(configs, nodes.clone()).expect("every voter has a node"))
            })
        }

        fn command() -> impl Strategy<Value = pb::Command> {
            (vec(any::<u8>(), 1..16), vec(any::<u8>(), 0..64), any::<i64>()).prop_map(|(key, value, lease)| {
                pb::Command {
                    auth_revision: None,
                    alarm_disarms: None,
                    request: Some(pb::command::Request::Put(PutRequest { key, value, lease, ..Default::default() })),
                }
            })
        }

        fn payload() -> impl Strategy<Value = EntryPayload> {
            prop_oneof![
                Just(EntryPayload::Blank),
                vec(command(), 0..8).prop_map(|commands| EntryPayload::Normal(pb::Proposal { commands }.into())),
                membership().prop_map(EntryPayload::Membership),
            ]
        }

        fn log_id() -> impl Strategy<Value = LogId> {
            (any::<u64>(), any::<u64>(), any::<u64>())
                .prop_map(|(term, node, index)| LogId::new(LeaderId { term, node_id: node }, index))
        }

        proptest! {
            #[test]
            fn every_entry_survives_its_bytes(log_id in log_id(), payload in payload()) {
                let entry = Entry { log_id, payload };
                let bytes = entry_to_pb(&entry).encode_to_vec();
                prop_assert_eq!(&encode_entry(&entry), &bytes);
                let back = entry_from_pb(decode("Entry", &bytes).unwrap()).unwrap();
                prop_assert_eq!(back.log_id, entry.log_id);
                // (openraft's Debug of an entry does not show a normal payload's data)
                match (back.payload, entry.payload) {
                    (EntryPayload::Blank, EntryPayload::Blank) => {}
                    (EntryPayload::Normal(a), EntryPayload::Normal(b)) => prop_assert_eq!(a, b),
                    (EntryPayload::Membership(a), EntryPayload::Membership(b)) => prop_assert_eq!(a, b),
                    (a, b) => prop_assert!(false, "payload {a:?} came back as {b:?}"),
                }
            }

            #[test]
            fn votes_and_log_ids_survive_their_bytes(term in any::<u64>(), node in any::<u64>(), committed in any::<bool>(), id in log_id()) {
                let vote = if committed { Vote::new_committed(term, node) } else { Vote::new(term, node) };
                let bytes = vote_to_pb(&vote).encode_to_vec();
                prop_assert_eq!(vote_from_pb(&decode("Vote", &bytes).unwrap()), vote);
                let bytes = log_id_to_pb(&id).encode_to_vec();
                prop_assert_eq!(log_id_from_pb(&decode("LogId", &bytes).unwrap()).unwrap(), id);
            }

            #[test]
            fn snapshot_metadata_survives_its_bytes(last in proptest::option::of(log_id()), at in proptest::option::of(log_id()), membership in membership()) {
                let meta = SnapshotMeta { last_log_id: last, last_membership: StoredMembership::new(at, membership) };
                let bytes = snapshot_meta_to_pb(&meta).encode_to_vec();
                let back = snapshot_meta_from_pb(&decode("SnapshotMeta", &bytes).unwrap()).unwrap();
                prop_assert_eq!(back, meta);
            }
        }
    }
}
