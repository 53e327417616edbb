//! The operator's view: the gRPC health service and the HTTP endpoint
//! (/metrics, /livez, /readyz, /health).

use std::time::Duration;

use placement_center::proto::etcdserverpb::watch_client::WatchClient;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use placement_center::proto::grpc::health::v1::health_check_response::ServingStatus;
use placement_center::proto::grpc::health::v1::health_client::HealthClient;
use placement_center::proto::grpc::health::v1::HealthCheckRequest;
use placement_center::runtime::{self, Listener};
use placement_center::server::{Listeners, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{put, test_config};

/// GETs `path` from `addr`; returns (status code, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// The value of the sample line `name` (with its labels) in Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_probes_and_grpc_health_describe_a_serving_node() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer, metrics) = (
        Listener::bind("127.0.0.1:0").await.unwrap(),
        Listener::bind("127.0.0.1:0").await.unwrap(),
        Listener::bind("127.0.0.1:0").await.unwrap(),
    );
    let mut config = test_config(1);
    config.client_addr = client.local_addr().unwrap().to_string();
    config.peer_addr = peer.local_addr().unwrap().to_string();
    config.metrics_addr = metrics.local_addr().unwrap().to_string();
    config.data_dir = dir.path().join("node1");
    let server = Server::start(config.clone(), Listeners { client, peer, metrics: Some(metrics) }).await.unwrap();
    let http = server.metrics_addr.expect("metrics served");
    assert_eq!(http_get(http, "/livez").await, (200, "ok\n".into()));
    // Ready once it leads and has published its client address (a member
    // list read by a client that waited for readiness shows its URL).
    let deadline = runtime::now() + Duration::from_secs(10);
    while http_get(http, "/readyz").await != (200, "ok\n".into()) {
        assert!(runtime::now() < deadline, "a single node never became ready");
        runtime::sleep(Duration::from_millis(50)).await;
    }
    let (_, me) = server.node.member(server.node.id).expect("in its membership");
    assert!(me.started && me.client_addr == config.client_addr, "ready but unpublished: {me:?}");
    assert_eq!(http_get(http, "/health").await, (200, "{\"health\":\"true\"}".into()));
    assert_eq!(http_get(http, "/nothing").await.0, 404);

    let endpoint = format!("http://{}", config.client_addr);
    let mut kv = placement_center::proto::etcdserverpb::kv_client::KvClient::connect(endpoint.clone()).await.unwrap();
    for i in 0..3 {
        put(&mut kv, &format!("k{i}"), "v").await;
    }
    // One open watcher.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"k".to_vec(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut watch = WatchClient::connect(endpoint.clone()).await.unwrap();
    let mut events = watch.watch(placement_center::api::context::receiver_stream(rx)).await.unwrap().into_inner();
    assert!(events.message().await.unwrap().unwrap().created);

    let (status, text) = http_get(http, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(sample(&text, "placement_grpc_requests_total{method=\"KV/Put\",code=\"OK\"}"), 3.0);
    assert_eq!(sample(&text, "placement_grpc_request_duration_seconds_count{method=\"KV/Put\"}"), 3.0);
    assert_eq!(sample(&text, "placement_raft_is_leader"), 1.0);
    assert_eq!(sample(&text, "placement_raft_leader_changes_total"), 1.0);
    assert!(sample(&text, "placement_raft_term") >= 1.0);
    assert_eq!(sample(&text, "placement_mvcc_keys"), 3.0);
    assert_eq!(sample(&text, "placement_mvcc_revision"), 4.0);
    assert_eq!(sample(&text, "placement_watchers"), 1.0);
    assert!(sample(&text, "placement_disk_sync_duration_seconds_count") >= 3.0, "every put's log append is synced");
    assert!(sample(&text, "placement_apply_duration_seconds_count") >= 3.0);

    let mut health = HealthClient::connect(endpoint).await.unwrap();
    let check = |service: &str| HealthCheckRequest { service: service.to_string() };
    let status = health.check(check("")).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let status = health.check(check("etcdserverpb.KV")).await.unwrap().into_inner().status;
    assert_eq!(status, ServingStatus::Serving as i32);
    let unknown = health.check(check("nope.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    let mut updates = health.watch(check("")).await.unwrap().into_inner();
    assert_eq!(updates.message().await.unwrap().unwrap().status, ServingStatus::Serving as i32);

    drop(events);
    server.shutdown().await;
}

/// A leader cut off from every follower still knows a leader (itself:
/// openraft 0.9 never steps it down), but it is no longer ready: it has not
/// heard from a quorum within an election timeout. Before, it reported
/// SERVING forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_lost_its_quorum_is_not_ready() {
    let mut cluster = crate::cluster::Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let check = |addr: String| async move {
        let mut health = HealthClient::connect(format!("http://{addr}")).await.unwrap();
        let resp = health.check(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
        ServingStatus::try_from(resp.status).unwrap()
    };
    let addr = cluster.client_addr(leader);
    let deadline = runtime::now() + Duration::from_secs(10);
    while check(addr.clone()).await != ServingStatus::Serving {
        assert!(runtime::now() < deadline, "a healthy leader never became ready");
        runtime::sleep(Duration::from_millis(100)).await;
    }
    for i in (0..3).filter(|i| *i != leader) {
        cluster.stop(i).await;
    }
    let node = cluster.nodes[leader].as_ref().unwrap().node.clone();
    assert_eq!(node.leader(), Some(node.id), "still its own leader");
    let deadline = runtime::now() + Duration::from_secs(10);
    while check(addr.clone()).await != ServingStatus::NotServing {
        assert!(runtime::now() < deadline, "a leader without a quorum stayed ready");
        runtime::sleep(Duration::from_millis(100)).await;
    }
    let why = placement_center::api::health::not_ready(&node).unwrap();
    assert!(why.contains("has not heard from a quorum"), "{why}");
}

/// etcd's `/health` is a linearizable read: a leader cut off from its
/// followers fails it at once, while its last quorum contact is still
/// recent enough for readiness; `?serializable=true` skips the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_a_linearizable_read_that_an_isolated_leader_cannot_serve() {
    use placement_center::api::health::http_answer;
    // A long election timeout: readiness trusts the last quorum contact
    // for up to twice it, long after the followers are gone.
    let mut cluster = crate::cluster::Cluster::start_with(3, |c| c.election_timeout_ms = 4_000).await;
    let leader = cluster.wait_leader().await;
    let node = cluster.nodes[leader].as_ref().unwrap().node.clone();
    let deadline = runtime::now() + Duration::from_secs(20);
    while http_answer(node.clone(), "/health".into()).await.0 != 200 {
        assert!(runtime::now() < deadline, "a healthy cluster's leader never passed /health");
        runtime::sleep(Duration::from_millis(100)).await;
    }
    for i in (0..3).filter(|i| *i != leader) {
        cluster.stop(i).await;
    }
    let (status, _, body) = http_answer(node.clone(), "/health".into()).await;
    assert_eq!(status, 503, "{body}");
    if placement_center::api::health::not_ready(&node).is_none() {
        assert!(body.contains("linearizable read"), "{body}");
        let (status, _, body) = http_answer(node.clone(), "/health?serializable=true".into()).await;
        assert_eq!((status, body.as_str()), (200, "{\"health\":\"true\"}"));
    }
}
