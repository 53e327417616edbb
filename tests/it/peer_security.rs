//! The peer port without TLS: only members of this cluster that present its
//! token get through, replication only from the leader the vote names, and
//! snapshot chunks only in order and only when they decode. Each forged
//! message is refused and the node keeps serving without growing.

use placement_center::proto::raft::v1 as raftpb;
use placement_center::raft::network::Sender;
use tonic::Code;

use crate::cluster::{get, put, Cluster};

/// The resident set of this process, bytes (the test's nodes run in it).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_peer_messages_are_refused_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3).await;
    let leader_index = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let node = cluster.nodes[follower].as_ref().unwrap().node.clone();
    let leader = cluster.nodes[leader_index].as_ref().unwrap().node.id;
    let other = (1..=3).find(|id| *id != leader && *id != node.id).unwrap();
    let addr = format!("http://{}", cluster.configs[follower].peer_addr);
    let mut raft = raftpb::raft_client::RaftClient::connect(addr).await.unwrap();
    let token: std::sync::Arc<[u8]> = node.cluster_token().into();
    assert!(!token.is_empty());
    let term = node.term();
    let vote = |id: u64| Some(raftpb::Vote { term, node_id: id, committed: true });

    // The cluster id is in every client response header; the token is not.
    let without_token = Sender { cluster_id: node.cluster_id(), node_id: leader, token: Vec::new().into() };
    let append = raftpb::AppendEntriesRequest { vote: vote(leader), ..Default::default() };
    let status = raft.append_entries(without_token.request(append.clone())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("without this cluster's token"), "{status:?}");
    let wrong_token = Sender { token: b"guess".to_vec().into(), ..without_token.clone() };
    let status = raft.vote(wrong_token.request(raftpb::VoteRequest::default())).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // A member that is not the leader the vote names may not replicate.
    let not_leader = Sender { cluster_id: node.cluster_id(), node_id: other, token: token.clone() };
    let status = raft.append_entries(not_leader.request(append.clone())).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::PermissionDenied,
            format!("replication from node {other} for leader {leader}: only the leader replicates").as_str()
        )
    );
    // The same on a replication stream: refused as it opens without the
    // token, and at the first message whose vote names another leader.
    let one = |m: &raftpb::AppendEntriesRequest| futures::stream::iter(vec![m.clone()]);
    let status = raft.append_stream(without_token.request(one(&append))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let mut answers = raft.append_stream(not_leader.request(one(&append))).await.unwrap().into_inner();
    let status = answers.message().await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::PermissionDenied,
            format!("replication from node {other} for leader {leader}: only the leader replicates").as_str()
        )
    );
    let snapshot = |offset: u64, data: Vec<u8>, done: bool| raftpb::InstallSnapshotRequest {
        vote: vote(leader),
        meta: Some(raftpb::SnapshotMeta {
            snapshot_id: "forged".into(),
            last_membership: Some(raftpb::StoredMembership { log_id: None, membership: Some(Default::default()) }),
            last_log_id: None,
        }),
        offset,
        data,
        done,
    };
    let status = raft.install_snapshot(not_leader.request(snapshot(0, vec![1], true))).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Even in the leader's name: a snapshot that does not decode, and a chunk
    // far past the end, are refused before openraft sees them.
    let as_leader = Sender { cluster_id: node.cluster_id(), node_id: leader, token };
    let garbage = vec![0xff; 4096];
    let status = raft.install_snapshot(as_leader.request(snapshot(0, garbage, true))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("snapshot forged does not decode"), "{status:?}");
    let before = rss_bytes();
    for _ in 0..3 {
        let status = raft.install_snapshot(as_leader.request(snapshot(1 << 40, vec![7; 16], false))).await.unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "snapshot forged chunk at offset 1099511627776, expected offset 0")
        );
    }
    let status =
        raft.install_snapshot(as_leader.request(snapshot(u64::MAX - 4, vec![7; 16], false))).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 << 20, "refusing chunks grew the process by {grown} bytes");

    // Nothing stopped: the follower still applies and answers.
    let mut kv = cluster.kv(follower).await;
    put(&mut kv, "after-forgery", "ok").await;
    assert_eq!(get(&mut kv, "after-forgery", false).await.unwrap().as_deref(), Some("ok"));
    assert_eq!(node.term(), term, "forged messages changed the term");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_cluster_draws_a_random_token() {
    let cluster = Cluster::start_with(1, |c| c.initial_cluster_token.clear()).await;
    let node = &cluster.nodes[0].as_ref().unwrap().node;
    // A single node draws a random token of its own.
    assert_eq!(node.cluster_token().len(), 32);
    assert_ne!(node.cluster_token(), b"test-cluster-token");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_clusters_token_cannot_join_and_adds_no_member() {
    let cluster = Cluster::start(3).await;
    let mut config = crate::cluster::test_config(1);
    config.initial_cluster_token = "some-other-cluster".into();
    config.peer_addr = "127.0.0.2:0".into();
    config.client_addr = "127.0.0.3:0".into();
    config.data_dir = cluster.dir.path().join("stranger");
    config.join = vec![cluster.client_addr(0)];
    let started = placement_center::server::run(config, std::future::pending()).await;
    let err = started.expect_err("joined with another cluster's token").to_string();
    assert!(err.contains("initial_cluster_token is not this cluster's"), "{err}");
    let members = cluster.nodes[0].as_ref().unwrap().node.members();
    assert_eq!(members.len(), 3, "{members:?}");
    cluster.shutdown().await;
}
