//! The one place errors become `tonic::Status`, with etcd's codes and messages
//! (clients such as clientv3 match on the message text).

use tonic::{Code, Status};

use crate::placement::PlacementError;
use crate::raft::membership::MemberError;
use crate::raft::NodeError;
use crate::state::{AuthError, StateError};

/// Metadata key on an error whose request certainly had no effect (the
/// client retries such writes: see the client crate).
pub use placement_client::NOT_APPLIED_METADATA;

/// Errors of the API layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is larger than `max_request_bytes`.
    #[error("request is too large")]
    RequestTooLarge,
    /// The state machine refused the request.
    #[error(transparent)]
    State(#[from] StateError),
    /// Raft could not serve the request.
    #[error(transparent)]
    Node(NodeError),
    /// The placement API refused the request.
    #[error(transparent)]
    Placement(#[from] PlacementError),
    /// The apply result is of another kind than the request: a bug, never
    /// the client's fault.
    #[error("unexpected apply result {0}")]
    UnexpectedResult(String),
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Refused(refused) => ApiError::State(refused),
            other => ApiError::Node(other),
        }
    }
}

fn state_status(e: &StateError) -> Status {
    let (code, msg) = match e {
        StateError::EmptyKey => (Code::InvalidArgument, "etcdserver: key is not provided"),
        StateError::TooManyOps => (Code::InvalidArgument, "etcdserver: too many operations in txn request"),
        StateError::DuplicateKey => (Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
        StateError::FutureRevision => (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision"),
        StateError::Compacted => (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
        StateError::KeyNotFound => (Code::InvalidArgument, "etcdserver: key not found"),
        StateError::ValueProvided => (Code::InvalidArgument, "etcdserver: value is provided"),
        StateError::LeaseProvided => (Code::InvalidArgument, "etcdserver: lease is provided"),
        StateError::LeaseNotFound => (Code::NotFound, "etcdserver: requested lease not found"),
        StateError::EmptyCommand => (Code::InvalidArgument, "etcdserver: request is empty"),
        StateError::LeaseExists => (Code::FailedPrecondition, "etcdserver: lease already exists"),
        StateError::LeaseTtlTooLarge => (Code::OutOfRange, "etcdserver: too large lease TTL"),
        StateError::Auth(auth) => return auth_status(auth),
        StateError::NoSpace => (Code::ResourceExhausted, "etcdserver: mvcc: database space exceeded"),
        StateError::NoAlarm => (Code::InvalidArgument, "etcdserver: alarm type is not given"),
        StateError::AlarmDisarmedSince => (Code::FailedPrecondition, "etcdserver: alarm raise decided before a disarm"),
        StateError::Corrupt => (Code::DataLoss, "etcdserver: corrupt cluster"),
        StateError::TooManyRequests => (Code::ResourceExhausted, "etcdserver: too many requests"),
    };
    Status::new(code, msg)
}

/// etcd's codes and messages (api/v3rpc/rpctypes) for auth refusals.
pub fn auth_status(e: &AuthError) -> Status {
    let code = match e {
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::PermissionNotGiven
        | AuthError::InvalidAuthMgmt
        | AuthError::OldRevision => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidToken => Code::Unauthenticated,
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::AuthNotEnabled => Code::FailedPrecondition,
    };
    Status::new(code, format!("etcdserver: {e}"))
}

fn member_status(e: MemberError) -> Status {
    let (code, msg) = match e {
        MemberError::NotFound => (Code::NotFound, "etcdserver: member not found"),
        MemberError::PeerAddrExists => (Code::FailedPrecondition, "etcdserver: Peer URLs already exists"),
        MemberError::NotLearner => (Code::FailedPrecondition, "etcdserver: can only promote a learner member"),
        MemberError::LearnerNotReady => {
            (Code::FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader")
        }
        MemberError::LastVoter => (Code::FailedPrecondition, "etcdserver: cannot remove the last voting member"),
        MemberError::NotEnoughStarted => {
            (Code::FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members")
        }
        MemberError::TooManyLearners => (Code::FailedPrecondition, "etcdserver: too many learner members in cluster"),
        MemberError::ChangeInProgress => (Code::Unavailable, "etcdserver: another membership change is in progress"),
        MemberError::BadAddress => (Code::InvalidArgument, "etcdserver: given member URLs are invalid"),
    };
    Status::new(code, msg)
}

fn placement_status(e: &PlacementError) -> Status {
    let code = match e {
        PlacementError::BadCluster(_)
        | PlacementError::NoNodeId
        | PlacementError::BadField { .. }
        | PlacementError::NoEpoch
        | PlacementError::BadConfig(_) => Code::InvalidArgument,
        PlacementError::NotRegistered { .. }
        | PlacementError::TopicNotFound { .. }
        | PlacementError::ShardNotFound { .. } => Code::NotFound,
        PlacementError::TopicExists { .. } => Code::AlreadyExists,
        PlacementError::StaleEpoch { .. }
        | PlacementError::NoLease { .. }
        | PlacementError::StaleGeneration { .. }
        | PlacementError::Changed { .. }
        | PlacementError::StaleLeaderEpoch { .. }
        | PlacementError::NotShardLeader { .. }
        | PlacementError::BadMove { .. } => Code::FailedPrecondition,
        PlacementError::Compacted { .. } => Code::OutOfRange,
        PlacementError::Raced { .. } | PlacementError::GenerationRaced { .. } | PlacementError::WriteRaced { .. } => {
            Code::Aborted
        }
    };
    Status::new(code, format!("placement: {e}"))
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::RequestTooLarge => Status::invalid_argument("etcdserver: request is too large"),
            ApiError::State(refused) => state_status(&refused),
            ApiError::Placement(refused) => placement_status(&refused),
            ApiError::UnexpectedResult(what) => Status::internal(format!("etcdserver: unexpected apply result {what}")),
            ApiError::Node(node) => match node {
                NodeError::NoLeader => Status::unavailable("etcdserver: no leader"),
                NodeError::Timeout => Status::unavailable("etcdserver: request timed out"),
                NodeError::Stopped => Status::unavailable("etcdserver: server stopped"),
                NodeError::StoppedBeforeProposing => {
                    // etcd's message; the metadata tells clients that know it
                    // that nothing happened, so retrying elsewhere is safe.
                    let mut status = Status::unavailable("etcdserver: server stopped");
                    status
                        .metadata_mut()
                        .insert(NOT_APPLIED_METADATA, tonic::metadata::MetadataValue::from_static("1"));
                    status
                }
                NodeError::LeaderUnreachable(_) => {
                    Status::unavailable("etcdserver: request timed out, possibly due to connection lost")
                }
                NodeError::Refused(refused) => state_status(&refused),
                NodeError::Member(refused) => member_status(refused),
                NodeError::NotLeader => Status::failed_precondition("etcdserver: not leader"),
                NodeError::BadTransferee => Status::failed_precondition("etcdserver: bad leader transferee"),
                other => {
                    tracing::error!(cause = %other, "request failed inside raft");
                    Status::internal(format!("etcdserver: {other}"))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_etcds_exact_codes_and_messages() {
        let cases: Vec<(ApiError, Code, &str)> = vec![
            (StateError::EmptyKey.into(), Code::InvalidArgument, "etcdserver: key is not provided"),
            (StateError::TooManyOps.into(), Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (StateError::Compacted.into(), Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted"),
            (
                StateError::FutureRevision.into(),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (ApiError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (NodeError::Member(MemberError::NotFound).into(), Code::NotFound, "etcdserver: member not found"),
            (
                NodeError::Member(MemberError::LearnerNotReady).into(),
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (NodeError::Timeout.into(), Code::Unavailable, "etcdserver: request timed out"),
            (
                NodeError::Refused(StateError::LeaseNotFound).into(),
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                PlacementError::StaleEpoch { cluster: "mq".into(), node_id: 3, given: 5, current: 9 }.into(),
                Code::FailedPrecondition,
                "placement: stale epoch 5 for node 3 of cluster mq: the current registration has epoch 9",
            ),
            (
                PlacementError::NotRegistered { cluster: "mq".into(), node_id: 3 }.into(),
                Code::NotFound,
                "placement: node 3 of cluster mq is not registered (expired or unregistered): register it again",
            ),
            (
                PlacementError::NoNodeId.into(),
                Code::InvalidArgument,
                "placement: node_id must be set (0 is not a node id)",
            ),
        ];
        for (err, code, msg) in cases {
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (code, msg));
        }
    }
}
