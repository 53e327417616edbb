//! The placement API through the client library: registration, epochs,
//! heartbeats, expiry, watches, cluster settings and status.

use std::sync::Arc;
use std::time::Duration;

use placement_center::client::{Client, ClientOptions, Lost, Retry};
use placement_center::proto::etcdserverpb::{CompactionRequest, RangeRequest};
use placement_center::proto::placement::v1::node_event::Kind;
use placement_center::proto::placement::v1::placement_client::PlacementClient;
use placement_center::proto::placement::v1::{
    ClusterStatusRequest, GetClusterConfigRequest, HeartbeatRequest, NodeEvent, NodeInfo, RegisterNodeRequest,
    SetClusterConfigRequest, UnregisterNodeRequest, WatchNodesResponse,
};
use placement_center::runtime;
use tonic::Code;

use crate::cluster::Cluster;

fn client(cluster: &Cluster) -> Arc<Client> {
    let endpoints: Vec<String> = (0..cluster.nodes.len()).map(|i| cluster.client_addr(i)).collect();
    Client::new(&endpoints, ClientOptions::default()).unwrap()
}

fn broker(cluster: &str, node_id: u64) -> RegisterNodeRequest {
    RegisterNodeRequest {
        cluster: cluster.into(),
        node_id,
        roles: vec!["mqtt".into(), "journal".into()],
        addresses: [("grpc".to_string(), format!("127.0.0.1:{}", 1228 + node_id))].into(),
        labels: [("zone".to_string(), "a".to_string())].into(),
    }
}

async fn list(client: &Client, cluster: &str, role: &str) -> Vec<NodeInfo> {
    client.list_nodes(cluster, role).await.unwrap().nodes
}

async fn heartbeat(client: &Client, cluster: &str, node_id: u64, epoch: i64) -> Result<i64, tonic::Status> {
    let req = HeartbeatRequest { cluster: cluster.into(), node_id, epoch };
    let mut placement = PlacementClient::new(client.channel().0);
    placement.heartbeat(req).await.map(|r| r.into_inner().ttl_secs)
}

/// The next node event from `events`, waiting up to `within`.
async fn next_event(
    events: &mut tokio::sync::mpsc::Receiver<Result<WatchNodesResponse, placement_center::client::ClientError>>,
    within: Duration,
) -> NodeEvent {
    let resp = runtime::timeout(within, events.recv()).await.expect("a node event in time").expect("stream open");
    let mut resp = resp.expect("no watch error");
    assert_eq!(resp.events.len(), 1, "one event per registration change: {resp:?}");
    resp.events.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_node_is_listed_and_watched_lives_by_its_heartbeats_and_expires_without_them() {
    let cluster = Cluster::start(3).await;
    let client = client(&cluster);
    // Short settings so the test sees an expiry: the shortest lease TTL here is 2 s.
    let set = SetClusterConfigRequest { cluster: "mq".into(), heartbeat_interval_secs: 1, expiry_secs: 3 };
    let mut placement = PlacementClient::new(client.channel().0);
    let config = placement.set_cluster_config(set).await.unwrap().into_inner();
    assert!(config.configured);
    let mut events = client.watch_nodes("mq", 0);
    // The watch pins "now" before the registration below.
    runtime::sleep(Duration::from_millis(300)).await;

    let registration = client.register(broker("mq", 7)).await.unwrap();
    assert_eq!(
        (registration.heartbeat_interval, registration.expiry),
        (Duration::from_secs(1), Duration::from_secs(3))
    );
    let node = registration.node.clone();
    assert!(node.epoch > 0 && node.lease_id != 0);

    let joined = next_event(&mut events, Duration::from_secs(10)).await;
    assert_eq!((joined.kind, joined.revision), (Kind::Joined as i32, node.epoch));
    assert_eq!(joined.node.as_ref().unwrap(), &node);
    assert_eq!(list(&client, "mq", "").await, vec![node.clone()]);
    assert_eq!(list(&client, "mq", "journal").await.len(), 1);
    assert!(list(&client, "mq", "kafka").await.is_empty());
    assert!(list(&client, "other", "").await.is_empty());

    // Heartbeats for twice the expiry keep it registered.
    let keep_alive = client.keep_alive(&registration);
    runtime::sleep(Duration::from_secs(6)).await;
    assert!(keep_alive.is_lost().is_none());
    assert!(keep_alive.acknowledged() >= 3, "{} heartbeats acknowledged", keep_alive.acknowledged());
    assert_eq!(list(&client, "mq", "").await.len(), 1);

    // Silence: the node expires and the watch says it left.
    drop(keep_alive);
    let left = next_event(&mut events, Duration::from_secs(15)).await;
    assert_eq!(left.kind, Kind::Left as i32);
    assert_eq!(left.node.unwrap().epoch, node.epoch);
    assert!(list(&client, "mq", "").await.is_empty());
    let err = heartbeat(&client, "mq", 7, node.epoch).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("node 7 of cluster mq is not registered"), "{}", err.message());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_again_gets_a_higher_epoch_and_the_replaced_epoch_is_refused() {
    let cluster = Cluster::start(3).await;
    let client = client(&cluster);
    let first = client.register(broker("mq", 1)).await.unwrap();
    let mut keep_first = client.keep_alive(&first);
    let second = client.register(broker("mq", 1)).await.unwrap();
    assert!(second.node.epoch > first.node.epoch, "{} then {}", first.node.epoch, second.node.epoch);
    assert_ne!(second.node.lease_id, first.node.lease_id);

    // The zombie's heartbeats are refused, and its keep-alive says so.
    let err = heartbeat(&client, "mq", 1, first.node.epoch).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let expected = format!(
        "placement: stale epoch {} for node 1 of cluster mq: the current registration has epoch {}",
        first.node.epoch, second.node.epoch
    );
    assert_eq!(err.message(), expected);
    match runtime::timeout(Duration::from_secs(15), keep_first.lost()).await.unwrap() {
        Lost::Refused { code, .. } => assert_eq!(code, Code::FailedPrecondition),
        other => panic!("lost for another reason: {other}"),
    }
    // The replaced lease was revoked: nothing keeps the old registration alive.
    let ttl = client
        .call(Retry::Idempotent, |ch| async move {
            let req =
                placement_center::proto::etcdserverpb::LeaseTimeToLiveRequest { id: first.node.lease_id, keys: false };
            Client::lease(ch).lease_time_to_live(req).await
        })
        .await
        .unwrap();
    assert_eq!(ttl.ttl, -1, "the replaced registration's lease is gone");
    assert!(heartbeat(&client, "mq", 1, second.node.epoch).await.unwrap() > 0);

    // Unregistering: only the current epoch, once.
    let mut placement = PlacementClient::new(client.channel().0);
    let stale = UnregisterNodeRequest { cluster: "mq".into(), node_id: 1, epoch: first.node.epoch };
    assert_eq!(placement.unregister_node(stale).await.unwrap_err().code(), Code::FailedPrecondition);
    let current = UnregisterNodeRequest { cluster: "mq".into(), node_id: 1, epoch: second.node.epoch };
    assert!(placement.unregister_node(current.clone()).await.unwrap().into_inner().removed);
    assert!(!placement.unregister_node(current).await.unwrap().into_inner().removed);
    assert_eq!(heartbeat(&client, "mq", 1, second.node.epoch).await.unwrap_err().code(), Code::NotFound);

    // Registrations are plain keys: an etcd client sees the record as JSON.
    let third = client.register(broker("mq", 1)).await.unwrap();
    assert!(third.node.epoch > second.node.epoch);
    let mut kv = cluster.kv(0).await;
    let range = RangeRequest { key: b"/placement/nodes/mq/1".to_vec(), ..Default::default() };
    let record = kv.range(range).await.unwrap().into_inner().kvs.remove(0);
    let json: serde_json::Value = serde_json::from_slice(&record.value).unwrap();
    assert_eq!(json["node_id"], 1);
    assert_eq!(json["addresses"]["grpc"], "127.0.0.1:1229");
    assert_eq!((record.mod_revision, record.lease), (third.node.epoch, third.node.lease_id));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_placement_requests_are_refused_naming_the_problem() {
    let cluster = Cluster::start(1).await;
    let client = client(&cluster);
    let mut placement = PlacementClient::new(client.channel().0);
    let mut dup_roles = broker("mq", 1);
    dup_roles.roles = vec!["mqtt".into(), "mqtt".into()];
    let mut no_addr = broker("mq", 1);
    no_addr.addresses.insert("mqtt".into(), String::new());
    let cases = [
        (broker("a/b", 1), "invalid cluster name \"a/b\""),
        (broker("", 1), "invalid cluster name \"\""),
        (broker("mq", 0), "node_id must be set"),
        (dup_roles, "invalid role: \"mqtt\" is given twice"),
        (no_addr, "invalid address: \"mqtt\" has no address"),
    ];
    for (req, expected) in cases {
        let err = placement.register_node(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(expected), "{:?} should say {expected:?}", err.message());
    }
    let no_epoch = HeartbeatRequest { cluster: "mq".into(), node_id: 1, epoch: 0 };
    assert_eq!(placement.heartbeat(no_epoch).await.unwrap_err().code(), Code::InvalidArgument);
    let bad_config = SetClusterConfigRequest { cluster: "mq".into(), heartbeat_interval_secs: 10, expiry_secs: 15 };
    let err = placement.set_cluster_config(bad_config).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("expiry_secs 15 must be at least twice heartbeat_interval_secs 10"), "{err:?}");
    let defaults = placement.get_cluster_config(GetClusterConfigRequest { cluster: "mq".into() }).await.unwrap();
    let defaults = defaults.into_inner();
    assert_eq!((defaults.heartbeat_interval_secs, defaults.expiry_secs, defaults.configured), (3, 30, false));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_reports_the_leader_every_member_and_nodes_per_cluster() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await as u64 + 1;
    let client = client(&cluster);
    assert_eq!(client.discover_leader().await.unwrap(), leader);
    for (name, id) in [("mq", 1), ("mq", 2), ("kafka", 1)] {
        client.register(broker(name, id)).await.unwrap();
    }
    let mut placement = PlacementClient::new(client.channel().0);
    let status = placement.cluster_status(ClusterStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.leader, leader);
    assert!(status.term > 0);
    assert_eq!(status.members.len(), 3);
    for m in &status.members {
        assert!(m.healthy, "{m:?}");
        assert!(m.applied_index > 0 && !m.is_learner, "{m:?}");
    }
    let counts: Vec<(String, u64, u64)> =
        status.clusters.iter().map(|c| (c.cluster.clone(), c.nodes, c.by_role["journal"])).collect();
    assert_eq!(counts, vec![("kafka".into(), 1, 1), ("mq".into(), 2, 2)]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watch_replays_from_a_past_revision_and_refuses_a_compacted_one() {
    let cluster = Cluster::start(1).await;
    let client = client(&cluster);
    let one = client.register(broker("mq", 1)).await.unwrap();
    let two = client.register(broker("mq", 2)).await.unwrap();
    let again = client.register(broker("mq", 1)).await.unwrap();

    let mut events = client.watch_nodes("mq", one.node.epoch);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut events, Duration::from_secs(10)).await;
        seen.push((e.kind, e.node.unwrap().node_id, e.revision));
    }
    let expected = vec![
        (Kind::Joined as i32, 1, one.node.epoch),
        (Kind::Joined as i32, 2, two.node.epoch),
        (Kind::Changed as i32, 1, again.node.epoch),
    ];
    assert_eq!(seen, expected);

    let compact = CompactionRequest { revision: again.node.epoch, physical: false };
    client.call(Retry::Idempotent, |ch| async move { Client::kv(ch).compact(compact).await }).await.unwrap();
    let mut refused = client.watch_nodes("mq", one.node.epoch);
    let err = runtime::timeout(Duration::from_secs(10), refused.recv()).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    assert!(err.to_string().contains("has been compacted"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_moves_past_a_dead_endpoint_and_prefers_the_leader() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    // A port nothing listens on comes first.
    let dead = {
        let l = placement_center::runtime::Listener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        crate::cluster::release(l);
        addr
    };
    let mut endpoints = vec![dead];
    endpoints.extend((0..3).map(|i| cluster.client_addr(i)));
    let client = Client::new(&endpoints, ClientOptions::default()).unwrap();
    assert_eq!(client.channel().1, endpoints[0]);
    // An idempotent call moves on; a write that never reached a server too.
    assert!(list(&client, "", "").await.is_empty());
    let registration = client.register(broker("mq", 5)).await.unwrap();
    assert!(registration.node.epoch > 0);
    assert_eq!(client.discover_leader().await.unwrap(), leader as u64 + 1);
    assert_eq!(client.channel().1, cluster.client_addr(leader), "calls go to the leader first");
    cluster.shutdown().await;
}
