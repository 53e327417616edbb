//! Who this node is in which cluster, kept in its data dir, and how a new
//! node joins an existing cluster.
//!
//! A node that starts a cluster derives the cluster id from the initial
//! members. A node started with `join` and an empty data dir asks a member
//! (through the etcd Cluster API, as `etcdctl member add` would) to add it as
//! a learner, or finds itself already added by an operator; it learns its id
//! and the cluster id there. Either way the identity is stored on first start
//! and wins afterwards. A joined node never bootstraps a membership of its
//! own: it waits for the leader. Once it has caught up, [`settle`] publishes
//! its name and client address and has it promoted to voter.

use std::time::Duration;

use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::{MemberAddRequest, MemberListRequest, MemberUpdateRequest};
use crate::raft::membership::{MemberChange, MemberError};
use crate::raft::network::{put_token, token_in};
use crate::raft::state_store::CF_SM;
use crate::raft::{NodeError, NodeId, RaftNode};
use crate::runtime::{self, Shutdown};
use crate::storage::{Engine, StorageError, WriteBatch};

const KEY_IDENTITY: &[u8] = b"identity";

/// How long a joining node keeps trying the members it was given.
const JOIN_DEADLINE: Duration = Duration::from_secs(60);

/// Longest cluster token, bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// This node's place, as stored in its data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub node_id: NodeId,
    /// Joined an existing cluster (never bootstraps a membership).
    pub joined: bool,
    /// The cluster token (see `Config::initial_cluster_token`); empty in data
    /// dirs made before tokens, whose clusters run without one.
    pub token: Vec<u8>,
}

impl Identity {
    /// cluster id, node id (8 bytes BE each), joined (1 byte), then the
    /// token's length (2 bytes BE) and the token. Data dirs made before
    /// tokens stop after `joined`.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(19 + self.token.len());
        out.extend_from_slice(&self.cluster_id.to_be_bytes());
        out.extend_from_slice(&self.node_id.to_be_bytes());
        out.push(u8::from(self.joined));
        debug_assert!(self.token.len() <= MAX_TOKEN_BYTES);
        out.extend_from_slice(&(self.token.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.token);
        out
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let (cluster, rest) = b.split_first_chunk::<8>()?;
        let (node, rest) = rest.split_first_chunk::<8>()?;
        let (joined, rest) = rest.split_first()?;
        let token = match rest.split_first_chunk::<2>() {
            None if rest.is_empty() => Vec::new(),
            None => return None,
            Some((len, token)) if usize::from(u16::from_be_bytes(*len)) == token.len() => token.to_vec(),
            Some(_) => return None,
        };
        Some(Self {
            cluster_id: u64::from_be_bytes(*cluster),
            node_id: u64::from_be_bytes(*node),
            joined: *joined == 1,
            token,
        })
    }

    /// The stored identity, if this data dir has one.
    pub fn load(engine: &dyn Engine) -> Result<Option<Self>, StorageError> {
        match engine.get(CF_SM, KEY_IDENTITY)? {
            None => Ok(None),
            Some(b) => Self::from_bytes(&b)
                .map(Some)
                .ok_or_else(|| StorageError::Io(format!("stored identity is {} bytes, not 17", b.len()))),
        }
    }

    /// Stores it durably.
    pub fn store(&self, engine: &dyn Engine) -> Result<(), StorageError> {
        let mut batch = WriteBatch::new();
        batch.put(CF_SM, KEY_IDENTITY.to_vec(), self.to_bytes());
        engine.write(batch, true)
    }
}

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot join through {addrs}: {cause}")]
pub struct JoinError {
    addrs: String,
    cause: String,
}

/// What a node learns by joining.
#[derive(Debug, Clone)]
pub struct Joined {
    pub cluster_id: u64,
    pub node_id: NodeId,
    /// The cluster token (empty: the cluster has none).
    pub token: Vec<u8>,
}

/// Asks the members at `addrs` (client addresses, reached over TLS with
/// `tls` when set) to add the node whose peer address is `peer_addr` as a
/// learner, or finds it already added. A non-empty `token` goes with the
/// request: a cluster with another token refuses before adding anything.
pub async fn ask_to_join(
    addrs: &[String],
    peer_addr: &str,
    tls: Option<&runtime::TlsSettings>,
    token: &[u8],
) -> Result<Joined, JoinError> {
    let peer_url = format!("http://{peer_addr}");
    let mut last_error = String::from("no member answered");
    let attempt = async {
        loop {
            for addr in addrs {
                match try_join(addr, &peer_url, tls, token).await {
                    Ok(found) => return Ok(found),
                    // Asking again will not change the cluster's token, nor
                    // make a started member unstarted.
                    Err(status)
                        if matches!(status.code(), tonic::Code::PermissionDenied | tonic::Code::AlreadyExists) =>
                    {
                        return Err(format!("{}: {}", addr, status.message()))
                    }
                    Err(status) => {
                        tracing::warn!(member = %addr, cause = %status.message(), "join attempt failed, retrying");
                        last_error = format!("{}: {}", addr, status.message());
                    }
                }
            }
            runtime::sleep(Duration::from_millis(500)).await;
        }
    };
    match runtime::timeout(JOIN_DEADLINE, attempt).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(cause)) => Err(JoinError { addrs: addrs.join(","), cause }),
        Err(_) => Err(JoinError { addrs: addrs.join(","), cause: last_error }),
    }
}

async fn try_join(
    addr: &str,
    peer_url: &str,
    tls: Option<&runtime::TlsSettings>,
    token: &[u8],
) -> Result<Joined, tonic::Status> {
    // The token goes both ways in metadata: ours with the request, the
    // cluster's with the answer (a member hands it to a caller that could
    // change the membership anyway).
    fn with<T>(token: &[u8], message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        put_token(req.metadata_mut(), token);
        req
    }
    let endpoint = runtime::endpoint(addr, tls)
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10));
    let channel = endpoint.connect().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = ClusterClient::new(channel);
    let list = client.member_list(MemberListRequest { linearizable: true }).await?.into_inner();
    let cluster_id = list.header.map(|h| h.cluster_id).unwrap_or(0);
    if let Some(me) = list.members.iter().find(|m| m.peer_ur_ls.iter().any(|u| u == peer_url)) {
        // A member that started before (it has a name) and now has an
        // empty data dir lost its data: taking its place would vote with an
        // empty log.
        if !me.name.is_empty() {
            return Err(tonic::Status::already_exists(format!(
                "member {:x} at {peer_url} has already been bootstrapped: the cluster knows it as started, \
                 but this data dir is empty, so its data was lost. Remove the member (etcdctl member \
                 remove {:x}) and join again as a new one (a backup of its old data dir would lack what \
                 it acknowledged since)",
                me.id, me.id
            )));
        }
        // Added by an operator and never started: restating its peer URL
        // changes nothing and hands over the token, as an add does.
        let update = MemberUpdateRequest { id: me.id, peer_ur_ls: vec![peer_url.to_string()] };
        let answer = client.member_update(with(token, update)).await?;
        return Ok(Joined { cluster_id, node_id: me.id, token: token_of(answer.metadata()) });
    }
    let add = MemberAddRequest { peer_ur_ls: vec![peer_url.to_string()], is_learner: true };
    let answer = client.member_add(with(token, add)).await?;
    let token = token_of(answer.metadata());
    let added = answer.into_inner();
    let id = added.member.map(|m| m.id).ok_or_else(|| tonic::Status::internal("member add answered no member"))?;
    Ok(Joined { cluster_id, node_id: id, token })
}

/// How often a settled member checks that its published record still holds.
const SETTLED_PAUSE: Duration = Duration::from_secs(5);

/// How long a member starting on an empty data dir waits for each peer to
/// say whether it knows it as started.
const STARTED_ASK_WAIT: Duration = Duration::from_secs(2);

/// Refuses to bootstrap `me` on an empty data dir when a peer among
/// `members` knows it as started (etcd's "member has already been
/// bootstrapped"): its data was lost, and with an empty log it would vote
/// and acknowledge as if it held what it had acknowledged before, so a
/// committed write could be lost. Peers that do not answer in time (a new
/// cluster whose members start together) are not waited for.
pub async fn refuse_if_started(
    members: &std::collections::BTreeMap<NodeId, crate::raft::Member>,
    sender: &crate::raft::network::Sender,
    peer_tls: Option<&runtime::TlsSettings>,
    data_dir: &std::path::Path,
) -> Result<(), String> {
    use crate::proto::raft::v1::raft_client::RaftClient;
    use crate::proto::raft::v1::MembersRequest;
    let me = sender.node_id;
    let asks = members.iter().filter(|(id, _)| **id != me).map(|(_, peer)| async move {
        let ask = async {
            let endpoint = runtime::endpoint(&peer.peer_addr, peer_tls).ok()?.connect_timeout(STARTED_ASK_WAIT);
            let mut client = RaftClient::new(endpoint.connect().await.ok()?);
            let answer = client.members(sender.request(MembersRequest {})).await.ok()?.into_inner();
            let membership = answer.membership?;
            Some(membership.nodes.get(&me).is_some_and(|node| node.started))
        };
        runtime::timeout(STARTED_ASK_WAIT, ask).await.ok().flatten().filter(|started| *started).map(|_| peer)
    });
    let knowing: Vec<String> =
        futures::future::join_all(asks).await.into_iter().flatten().map(|m| m.peer_addr.clone()).collect();
    if knowing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "member {me:x} has already been bootstrapped: its peers ({}) know it as started, but its data dir {} \
         is empty, so its data was lost. Remove the member (etcdctl member remove {me:x}) and add it back \
         as a new one (start it with --join); a backup of its old data dir would lack what it acknowledged \
         since",
        knowing.join(", "),
        data_dir.display()
    ))
}

/// The cluster token in a membership answer's metadata (empty when none).
fn token_of(metadata: &tonic::metadata::MetadataMap) -> Vec<u8> {
    token_in(metadata).map(|b| b.to_vec()).filter(|t| t.len() <= MAX_TOKEN_BYTES).unwrap_or_default()
}

/// Runs until this node is a published member: its name and client address
/// are in the membership and, unless it stays a learner, it is a voter.
/// Harmless on a node that already is (the initial members). While it leads,
/// it also leaves a joint membership configuration that a change left
/// behind, as etcd's joint changes leave by themselves.
pub async fn settle(
    node: std::sync::Arc<RaftNode>,
    name: String,
    client_addr: String,
    promote: bool,
    mut stop: Shutdown,
) {
    let mut pause = Duration::from_millis(500);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait() => return,
            _ = runtime::sleep(pause) => {}
        }
        match node.leave_joint_membership().await {
            Ok(true) => tracing::info!("left a joint membership configuration"),
            Ok(false) => {}
            Err(e) => tracing::info!(cause = %e, "leaving a joint membership configuration: will retry"),
        }
        let Some((_, me)) = node.member(node.id) else { continue };
        if me.name != name || me.client_addr != client_addr || !me.started {
            let change = MemberChange::Update {
                id: node.id,
                peer_addr: None,
                name: Some(name.clone()),
                client_addr: Some(client_addr.clone()),
                started: true,
            };
            if let Err(e) = node.change_members(change).await {
                tracing::info!(cause = %e, "publishing this member's name and address: will retry");
            }
            continue;
        }
        // Settled: keep looking, more slowly. A membership written by a
        // release that does not know `started` drops it, and it must come
        // back (the wiped-member check and MemberList rely on it).
        if !promote || node.is_voter() {
            pause = SETTLED_PAUSE;
            continue;
        }
        match node.change_members(MemberChange::Promote(node.id)).await {
            Ok(_) => tracing::info!("promoted to voter"),
            Err(NodeError::Member(MemberError::LearnerNotReady)) => {}
            Err(e) => tracing::info!(cause = %e, "promotion: will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_and_garbage_does_not() {
        let id = Identity { cluster_id: 0xdead_beef, node_id: 42, joined: true, token: b"s3cret".to_vec() };
        assert_eq!(Identity::from_bytes(&id.to_bytes()), Some(id.clone()));
        assert_eq!(Identity::from_bytes(&[1, 2, 3]), None);
        assert_eq!(Identity::from_bytes(&[0; 18]), None);
        let mut bad_length = id.to_bytes();
        bad_length.pop();
        assert_eq!(Identity::from_bytes(&bad_length), None);
    }

    #[test]
    fn an_identity_stored_before_tokens_reads_with_an_empty_token() {
        let mut old = 7u64.to_be_bytes().to_vec();
        old.extend_from_slice(&3u64.to_be_bytes());
        old.push(0);
        let read = Identity::from_bytes(&old).unwrap();
        assert_eq!((read.cluster_id, read.node_id, read.joined, read.token.len()), (7, 3, false, 0));
    }
}
