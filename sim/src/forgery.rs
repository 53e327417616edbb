//! The forge-peer fault: someone on the peer network sends a follower Raft
//! messages it must refuse. Each refusal is expected; a forged message that
//! the follower takes stops the run, since it means anyone who can reach a
//! peer port can write a member's log or stop its Raft.

use std::time::Duration;

use placement_center::proto::raft::v1 as pb;
use placement_center::proto::raft::v1::raft_client::RaftClient;
use placement_center::raft::network::Sender;
use placement_center::runtime;
use tonic::Code;

/// How long the forger waits for each answer (links may be slow or lossy).
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// What the forger knows: the target's address and the ids anyone can read
/// in a client response header, plus, as an insider would, the token and
/// who leads in which term.
pub struct Forgery {
    /// The follower's peer address.
    pub peer_addr: String,
    /// The cluster id (public: in every response header).
    pub cluster_id: u64,
    /// The cluster token (the secret).
    pub token: Vec<u8>,
    /// The leader's member id and its term.
    pub leader: u64,
    pub term: u64,
    /// A member that is not the leader.
    pub other: u64,
}

/// Sends the forged messages; returns what became of each. Panics if the
/// target takes one.
pub async fn forge(f: Forgery) -> String {
    let Ok(endpoint) = runtime::endpoint(&f.peer_addr, None) else { return "bad address".into() };
    let mut raft = RaftClient::new(endpoint.connect_lazy());
    let vote = Some(pb::Vote { term: f.term, node_id: f.leader, committed: true });
    let outsider = Sender { cluster_id: f.cluster_id, node_id: f.leader, token: Vec::new().into() };
    let member = Sender { cluster_id: f.cluster_id, node_id: f.other, token: f.token.clone().into() };
    let as_leader = Sender { cluster_id: f.cluster_id, node_id: f.leader, token: f.token.into() };
    let append = pb::AppendEntriesRequest { vote, ..Default::default() };
    let chunk = |offset: u64, data: Vec<u8>, done: bool| pb::InstallSnapshotRequest {
        vote,
        meta: Some(pb::SnapshotMeta {
            snapshot_id: "forged".into(),
            last_membership: Some(pb::StoredMembership { log_id: None, membership: Some(Default::default()) }),
            last_log_id: None,
        }),
        offset,
        data,
        done,
    };
    let mut outcomes = Vec::new();
    let answer = runtime::timeout(ANSWER_WAIT, raft.append_entries(outsider.request(append.clone()))).await;
    outcomes.push(judge("no token", answer.map(|a| a.map(|_| None)), Code::PermissionDenied));
    let answer = runtime::timeout(ANSWER_WAIT, raft.append_entries(member.request(append))).await;
    outcomes.push(judge("not the leader", answer.map(|a| a.map(|_| None)), Code::PermissionDenied));
    let answer =
        runtime::timeout(ANSWER_WAIT, raft.install_snapshot(as_leader.request(chunk(0, vec![0xff; 64], true)))).await;
    let outranked = |r: tonic::Response<pb::InstallSnapshotResponse>| r.into_inner().vote.map(|v| v.term);
    outcomes.push(judge_snapshot("undecodable snapshot", answer.map(|a| a.map(outranked)), f.term));
    let answer =
        runtime::timeout(ANSWER_WAIT, raft.install_snapshot(as_leader.request(chunk(1 << 40, vec![7; 16], false))))
            .await;
    outcomes.push(judge_snapshot("chunk at 2^40", answer.map(|a| a.map(outranked)), f.term));
    // A snapshot that decodes, with one bit flipped after it was sealed.
    let state = pb::StateSnapshot { revision: 7, ..Default::default() };
    let mut sealed = placement_center::raft::state_store::seal_snapshot(prost::Message::encode_to_vec(&state));
    sealed[1] ^= 0x01;
    let answer = runtime::timeout(ANSWER_WAIT, raft.install_snapshot(as_leader.request(chunk(0, sealed, true)))).await;
    outcomes.push(judge_snapshot("bad checksum", answer.map(|a| a.map(outranked)), f.term));
    outcomes.join(", ")
}

type Answer = Result<Result<Option<u64>, tonic::Status>, runtime::Elapsed>;

fn judge(what: &str, answer: Answer, refusal: Code) -> String {
    match answer {
        Err(_) => format!("{what}: unanswered"),
        Ok(Err(status)) if status.code() == refusal => format!("{what}: refused"),
        // Lost on the way or the node is down: nothing was taken.
        Ok(Err(status)) if matches!(status.code(), Code::Unavailable | Code::Unknown) => format!("{what}: unanswered"),
        Ok(Err(status)) => panic!("forged message ({what}) refused with {status:?}, expected {refusal:?}"),
        Ok(Ok(_)) => panic!("forged message ({what}) was taken"),
    }
}

/// A snapshot chunk may also be answered with a vote that outranks the
/// forged one (a stale leader's chunks are ignored so), never taken.
fn judge_snapshot(what: &str, answer: Answer, term: u64) -> String {
    match answer {
        Ok(Ok(Some(higher))) if higher > term => format!("{what}: outranked"),
        other => judge(what, other, Code::InvalidArgument),
    }
}
