//! Bad input gets a clear error and the node keeps serving.

use std::io::{Read, Write};

use placement_center::proto::etcdserverpb::request_op::Request;
use placement_center::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use placement_center::proto::raft::v1 as raftpb;
use placement_center::raft::network::Sender;
use tonic::Code;

use crate::cluster::{get, put, Cluster};

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, message: &str) {
    let status = result.expect_err("request should fail");
    assert_eq!((status.code(), status.message()), (code, message), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_etcds_errors_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let mut kv = cluster.kv(follower).await;
    let empty = "etcdserver: key is not provided";
    assert_status(kv.put(PutRequest::default()).await, Code::InvalidArgument, empty);
    assert_status(kv.range(RangeRequest::default()).await, Code::InvalidArgument, empty);
    assert_status(kv.delete_range(DeleteRangeRequest::default()).await, Code::InvalidArgument, empty);

    // Just over the 1.5 MiB limit: refused by our check, with etcd's message.
    let big = PutRequest { key: "big".into(), value: vec![b'x'; 1536 * 1024 + 1], ..Default::default() };
    assert_status(kv.put(big).await, Code::InvalidArgument, "etcdserver: request is too large");
    // Far over it: refused by the gRPC layer before decoding.
    let huge = PutRequest { key: "huge".into(), value: vec![b'x'; 4 * 1024 * 1024], ..Default::default() };
    let status = kv.put(huge).await.expect_err("huge request must fail");
    assert!(matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted), "{status:?}");

    let op = |i: usize| RequestOp {
        request: Some(Request::RequestPut(PutRequest { key: format!("k{i}").into(), ..Default::default() })),
    };
    let too_many = TxnRequest { success: (0..129).map(op).collect(), ..Default::default() };
    assert_status(kv.txn(too_many).await, Code::InvalidArgument, "etcdserver: too many operations in txn request");
    let dup = TxnRequest { success: vec![op(1), op(1)], ..Default::default() };
    assert_status(kv.txn(dup).await, Code::InvalidArgument, "etcdserver: duplicate key given in txn request");
    let ok = TxnRequest { success: (0..128).map(op).collect(), ..Default::default() };
    assert!(kv.txn(ok).await.unwrap().into_inner().succeeded);

    let future = RangeRequest { key: "k1".into(), revision: 1_000_000, ..Default::default() };
    assert_status(kv.range(future).await, Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision");
    let leased = PutRequest { key: "k".into(), lease: 42, ..Default::default() };
    assert_status(kv.put(leased).await, Code::NotFound, "etcdserver: requested lease not found");

    put(&mut kv, "still", "serving").await;
    assert_eq!(get(&mut kv, "still", false).await.unwrap().as_deref(), Some("serving"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_either_port_do_not_hurt_the_node() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    for addr in [cluster.configs[leader].client_addr.clone(), cluster.configs[leader].peer_addr.clone()] {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage \x16\x03\x01");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    let mut kv = cluster.kv(leader).await;
    put(&mut kv, "after-garbage", "ok").await;
    assert_eq!(get(&mut kv, "after-garbage", false).await.unwrap().as_deref(), Some("ok"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_messages_from_strangers_or_malformed_are_refused() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let node = &cluster.nodes[follower].as_ref().unwrap().node;
    let addr = format!("http://{}", cluster.configs[follower].peer_addr);
    let mut raft = raftpb::raft_client::RaftClient::connect(addr).await.unwrap();
    let vote = || raftpb::VoteRequest {
        vote: Some(raftpb::Vote { term: 99, node_id: 3, committed: false }),
        last_log_id: None,
        leadership_transfer: false,
    };

    // No identity, another cluster, an unknown member: refused before Raft sees them.
    let status = raft.vote(vote()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "raft message without cluster id and sender")
    );
    let token: std::sync::Arc<[u8]> = node.cluster_token().into();
    let foreign = Sender { cluster_id: node.cluster_id() ^ 1, node_id: 3, token: token.clone() };
    let status = raft.vote(foreign.request(vote())).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().starts_with("raft message from cluster"), "{status:?}");
    // Replication from another cluster too (a node whose address another
    // cluster still lists must not take its log).
    let append = raftpb::AppendEntriesRequest {
        vote: Some(raftpb::Vote { term: 99, node_id: 3, committed: true }),
        ..Default::default()
    };
    let status = raft.append_entries(foreign.request(append)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().starts_with("raft message from cluster"), "{status:?}");
    let stranger = Sender { cluster_id: node.cluster_id(), node_id: 99, token: token.clone() };
    let status = raft.vote(stranger.request(vote())).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "raft message from node 99, which is not a member")
    );

    // A member's malformed messages: clear decode errors.
    let member_id = if follower == 0 { 2 } else { 1 };
    let member = Sender { cluster_id: node.cluster_id(), node_id: member_id, token };
    let status = raft.vote(member.request(raftpb::VoteRequest::default())).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::InvalidArgument, "cannot decode VoteRequest: missing field vote")
    );
    let no_payload = raftpb::AppendEntriesRequest {
        vote: Some(raftpb::Vote { term: 1, node_id: member_id, committed: true }),
        entries: vec![raftpb::Entry { log_id: None, payload: None }],
        ..Default::default()
    };
    let status = raft.append_entries(member.request(no_payload)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // A follower refuses to act as leader for forwarded calls.
    let status = raft.read_index(member.request(raftpb::ReadIndexRequest {})).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // The term 99 vote from the stranger changed nothing: the cluster still works.
    assert!(node.term() < 99);
    let mut kv = cluster.kv(follower).await;
    put(&mut kv, "k", "v").await;
    cluster.shutdown().await;
}
