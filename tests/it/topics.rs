//! Topics and shards on a real cluster: the controller places a topic's
//! shards on live brokers, moves the leaderships of a broker that leaves,
//! fences the old leader's reports by epoch, and tells brokers their work
//! through the assignment watch; operators' calls are compare-and-set.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use placement_center::client::{Assignments, Client, ClientError, ClientOptions};
use placement_center::proto::placement::v1::assignment::Role;
use placement_center::proto::placement::v1::{
    MoveShardRequest, RegisterNodeRequest, ReportShardStatusRequest, Shard, ShardStatus, TopicSpec,
    UnregisterNodeRequest,
};
use placement_center::runtime;
use tonic::Code;

use crate::cluster::Cluster;

fn client_of(cluster: &Cluster, i: usize) -> Arc<Client> {
    Client::new(&[cluster.client_addr(i)], ClientOptions::default()).unwrap()
}

fn spec(name: &str, shards: u32, replication_factor: u32) -> TopicSpec {
    TopicSpec {
        cluster: "mq".into(),
        name: name.into(),
        shards,
        replication_factor,
        role: "journal".into(),
        spread_label: "zone".into(),
    }
}

/// Registers broker `id` in `zone`; its epoch.
async fn register(client: &Client, id: u64, zone: &str) -> i64 {
    let req = RegisterNodeRequest {
        cluster: "mq".into(),
        node_id: id,
        roles: vec!["journal".into()],
        labels: [("zone".to_string(), zone.to_string())].into(),
        ..Default::default()
    };
    client.register(req).await.unwrap().node.epoch
}

fn refused(e: ClientError) -> (Code, String) {
    (e.code(), e.to_string())
}

/// The topic's shards once `done` holds of all of them, waiting up to 20 s.
async fn shards_when(client: &Client, topic: &str, done: impl Fn(&[Shard]) -> bool) -> Vec<Shard> {
    for _ in 0..200 {
        let shards = client.get_topic("mq", topic).await.unwrap().shards;
        if done(&shards) {
            return shards;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    panic!("the controller did not get there in 20 s: {:?}", client.get_topic("mq", topic).await.unwrap().shards);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_is_placed_on_live_brokers_across_zones_and_a_departed_leader_is_replaced_and_fenced() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let client = client_of(&cluster, cluster.follower().await);
    let mut epochs = std::collections::BTreeMap::new();
    for (id, zone) in [(1, "a"), (2, "b"), (3, "c"), (4, "a")] {
        epochs.insert(id, register(&client, id, zone).await);
    }
    let created = client.create_topic(spec("orders", 8, 3)).await.unwrap().topic.unwrap();
    assert!(created.revision > 0);
    let (code, message) = refused(client.create_topic(spec("orders", 8, 3)).await.unwrap_err());
    assert_eq!((code, message.as_str()), (Code::AlreadyExists, "placement: topic orders of cluster mq already exists"));

    let placed = shards_when(&client, "orders", |s| s.len() == 8).await;
    for shard in &placed {
        assert_eq!(shard.replicas.len(), 3, "{shard:?}");
        assert_eq!(shard.leader_epoch, 1);
        assert!(shard.in_sync.contains(&shard.leader));
        assert!(!(shard.holds_both(1, 4)), "brokers 1 and 4 share zone a: {shard:?}");
        for (b, epoch) in &shard.broker_epochs {
            assert_eq!(epochs[b], *epoch, "placed with the registration's epoch");
        }
    }
    // Broker 2's assignment watch starts with its whole work.
    let mut watch = client.watch_assignments("mq", 2, 0);
    let mut work = Assignments::default();
    work.apply(&watch.recv().await.unwrap().unwrap());
    let expected: BTreeSet<u32> = placed.iter().filter(|s| s.replicas.contains(&2)).map(|s| s.shard).collect();
    assert_eq!(work.shards.keys().map(|(_, s)| *s).collect::<BTreeSet<_>>(), expected);

    // The leader of shard 0 leaves: an in-sync replica takes over at a higher epoch.
    let before = placed[0].clone();
    let old = before.leader;
    let unregister = UnregisterNodeRequest { cluster: "mq".into(), node_id: old, epoch: 0 };
    assert!(client.unregister(unregister).await.unwrap());
    let after = shards_when(&client, "orders", |s| s.iter().all(|s| !s.replicas.contains(&old))).await;
    let moved = &after[0];
    assert_ne!(moved.leader, old);
    assert!(before.in_sync.contains(&moved.leader));
    assert_eq!(moved.leader_epoch, before.leader_epoch + 1);
    for shard in after.iter().filter(|s| placed[s.shard as usize].leader == old) {
        assert_eq!(shard.leader_epoch, 2, "every shard {old} led has a new leader: {shard:?}");
    }

    // The old leader's report is fenced; the new leader's is taken.
    let report = |node_id: u64, leader_epoch: i64, in_sync: Vec<u64>| ReportShardStatusRequest {
        cluster: "mq".into(),
        node_id,
        epoch: epochs[&node_id],
        shards: vec![ShardStatus { topic: "orders".into(), shard: 0, leader_epoch, in_sync, high_watermark: 42 }],
    };
    let (code, message) = refused(client.report_shard_status(report(old, 1, vec![old])).await.unwrap_err());
    assert_eq!(code, Code::NotFound, "{message}: its registration is gone");
    let new = moved.leader;
    let (code, message) = refused(client.report_shard_status(report(new, 1, vec![new])).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert_eq!(
        message,
        "placement: stale leader epoch 1 for shard orders/0 of cluster mq: the shard is at leader epoch 2"
    );
    let all = moved.replicas.clone();
    client.report_shard_status(report(new, 2, all.clone())).await.unwrap();
    let reported = &client.get_topic("mq", "orders").await.unwrap().shards[0];
    assert_eq!((reported.in_sync.len(), reported.high_watermark), (3, 42));
    let follower = *all.iter().find(|b| **b != new).unwrap();
    let (code, message) = refused(client.report_shard_status(report(follower, 2, all)).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains(&format!("node {follower} does not lead shard orders/0")), "{message}");
    drop(watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_move_leaders_and_replicas_and_change_or_delete_topics_by_revision() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let client = client_of(&cluster, 0);
    for (id, zone) in [(1, "a"), (2, "b"), (3, "c")] {
        register(&client, id, zone).await;
    }
    let topic = client.create_topic(spec("t", 1, 2)).await.unwrap().topic.unwrap();
    let shard = shards_when(&client, "t", |s| s.len() == 1).await.remove(0);
    let mut watch = client.watch_assignments("mq", shard.leader, 0);
    let mut work = Assignments::default();
    work.apply(&watch.recv().await.unwrap().unwrap());
    assert_eq!(work.led().count(), 1);

    let other = *shard.replicas.iter().find(|b| **b != shard.leader).unwrap();
    let outsider = (1..=3).find(|b| !shard.replicas.contains(b)).unwrap();
    let req = |leader, from, to| MoveShardRequest {
        cluster: "mq".into(),
        topic: "t".into(),
        shard: 0,
        leader,
        from,
        to,
        ..Default::default()
    };
    let moved = client.move_shard(req(other, 0, 0)).await.unwrap().shard.unwrap();
    assert_eq!((moved.leader, moved.leader_epoch), (other, 2));
    // The old leader hears it follows now.
    let change = watch.recv().await.unwrap().unwrap();
    let changes = work.apply(&change);
    assert_eq!(changes.len(), 1);
    assert_eq!((changes[0].0, changes[0].1.leader_epoch), (Role::Follower, 2));
    // A replica to the outsider: out of sync, so it cannot lead unless unclean.
    let moved = client.move_shard(req(0, shard.leader, outsider)).await.unwrap().shard.unwrap();
    assert!(moved.replicas.contains(&outsider) && !moved.in_sync.contains(&outsider));
    let changes = work.apply(&watch.recv().await.unwrap().unwrap());
    assert_eq!(changes[0].0, Role::Removed, "the old leader no longer holds it");
    let (code, message) = refused(client.move_shard(req(outsider, 0, 0)).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains("not in sync") && message.contains("unclean"), "{message}");
    let forced = client.move_shard(MoveShardRequest { unclean: true, ..req(outsider, 0, 0) }).await.unwrap();
    let forced = forced.shard.unwrap();
    assert_eq!((forced.leader, forced.in_sync.clone()), (outsider, vec![outsider]));
    let (code, message) = refused(client.move_shard(req(0, 0, 0)).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition, "{message}");

    // Compare-and-set on the topic's revision.
    let stale = client.update_topic(spec("t", 2, 2), topic.revision - 1).await.unwrap_err();
    let (code, message) = refused(stale);
    assert_eq!(code, Code::FailedPrecondition);
    assert!(message.contains(&format!("is at revision {}", topic.revision)), "{message}");
    let (code, message) = refused(client.update_topic(spec("t", 0, 2), topic.revision).await.unwrap_err());
    assert_eq!(code, Code::InvalidArgument, "{message}");
    let grown = client.update_topic(spec("t", 3, 2), topic.revision).await.unwrap().topic.unwrap();
    shards_when(&client, "t", |s| s.len() == 3).await;
    let listed = client.list_topics("mq").await.unwrap().topics;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec.as_ref().unwrap().shards, 3);
    let (code, _) = refused(client.delete_topic("mq", "t", topic.revision).await.unwrap_err());
    assert_eq!(code, Code::FailedPrecondition);
    assert!(client.delete_topic("mq", "t", grown.revision).await.unwrap().deleted);
    assert!(client.list_shards("mq", "", 0).await.unwrap().shards.is_empty(), "its shards go with it");
    assert!(!client.delete_topic("mq", "t", 0).await.unwrap().deleted);
    let (code, _) = refused(client.get_topic("mq", "t").await.unwrap_err());
    assert_eq!(code, Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_resumes_on_a_new_leader() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let survivor = (leader + 1) % 3;
    let client = client_of(&cluster, survivor);
    for (id, zone) in [(1, "a"), (2, "b"), (3, "c")] {
        register(&client, id, zone).await;
    }
    client.create_topic(spec("t", 4, 2)).await.unwrap();
    let placed = shards_when(&client, "t", |s| s.len() == 4).await;
    cluster.stop(leader).await;
    cluster.wait_leader().await;
    let gone = placed[0].leader;
    client.unregister(UnregisterNodeRequest { cluster: "mq".into(), node_id: gone, epoch: 0 }).await.unwrap();
    let after = shards_when(&client, "t", |s| s.iter().all(|s| !s.replicas.contains(&gone))).await;
    assert!(after.iter().all(|s| s.leader != gone && s.replicas.len() == 2), "{after:?}");
}

trait Holds {
    fn holds_both(&self, a: u64, b: u64) -> bool;
}

impl Holds for Shard {
    fn holds_both(&self, a: u64, b: u64) -> bool {
        self.replicas.contains(&a) && self.replicas.contains(&b)
    }
}
