//! Member changes on a real cluster: join, learners, promotion, removal,
//! leadership transfer, and the Maintenance calls etcdctl makes.

use std::time::Duration;

use placement_center::runtime;

use crate::cluster::{get, put, release, Cluster};
use crate::etcdctl::{etcdctl, ok};

/// Waits up to 60 s for `done` to hold of etcdctl's member list (via node 0).
async fn wait_members(cluster: &Cluster, what: &str, done: impl Fn(&[&str]) -> bool) -> String {
    let ep = cluster.client_addr(0);
    for _ in 0..300 {
        let list = ok(&ep, &["member", "list"]);
        if done(&list.lines().collect::<Vec<_>>()) {
            return list;
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what}: never happened; member list:\n{}", ok(&ep, &["member", "list"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_with_join_catches_up_is_promoted_serves_and_stops_when_removed() {
    let mut cluster = Cluster::start(3).await;
    let mut kv = cluster.kv(0).await;
    for i in 0..50 {
        put(&mut kv, &format!("/before/{i}"), "x").await;
    }
    let new = cluster.join(|c| c.name = "joiner".into()).await;
    let new_id = cluster.nodes[new].as_ref().unwrap().node.id;
    let peer = cluster.configs[new].peer_addr.clone();
    let client = cluster.configs[new].client_addr.clone();
    let want = format!("{new_id:x}, started, joiner, http://{peer}, http://{client}, false");
    wait_members(&cluster, "the joined node published and promoted", |lines| {
        lines.len() == 4 && lines.contains(&want.as_str())
    })
    .await;

    // It has every key written before it joined, and serves new ones.
    let mut on_new = cluster.kv(new).await;
    assert_eq!(get(&mut on_new, "/before/49", false).await.unwrap().as_deref(), Some("x"));
    put(&mut on_new, "/after", "y").await;
    assert_eq!(get(&mut kv, "/after", false).await.unwrap().as_deref(), Some("y"));

    // Removed, it learns it and stops serving.
    let ep = cluster.client_addr(0);
    let out = ok(&ep, &["member", "remove", &format!("{new_id:x}")]);
    // etcdctl prints the id with Go's %16x: space-padded to 16.
    assert!(out.contains(&format!("Member {new_id:16x} removed from cluster")), "{out}");
    wait_members(&cluster, "the node removed", |lines| lines.len() == 3).await;
    for _ in 0..100 {
        if cluster.nodes[new].as_ref().unwrap().removed() {
            break;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    assert!(cluster.nodes[new].as_ref().unwrap().removed(), "the removed node does not know it");
    put(&mut kv, "/after-removal", "z").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_member_add_learner_then_promote_and_bad_changes_are_refused() {
    let mut cluster = Cluster::start(3).await;
    let ep = cluster.client_addr(0);
    let ep = ep.as_str();

    // Refusals, with etcd's messages.
    let refused = |args: &[&str], want: &str| {
        let (success, _, stderr) = etcdctl(ep, args);
        assert!(!success, "{args:?} should fail");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    };
    refused(&["member", "promote", "2"], "can only promote a learner member");
    refused(&["member", "remove", "abc123"], "member not found");
    let taken = format!("--peer-urls=http://{}", cluster.configs[1].peer_addr);
    refused(&["member", "add", "x", &taken], "Peer URLs already exists");

    // An operator adds a learner, then starts it.
    let peer = runtime::Listener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    release(peer);
    let out = ok(ep, &["member", "add", "n4", "--learner", &format!("--peer-urls=http://{peer_addr}")]);
    assert!(out.contains("added to cluster"), "{out}");
    assert!(out.contains("ETCD_INITIAL_CLUSTER_STATE=\"existing\""), "{out}");
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    // A second learner is refused while one exists.
    refused(&["member", "add", "n5", "--learner", "--peer-urls=http://127.0.0.1:1"], "too many learner members");

    let new = cluster
        .join(|c| {
            c.peer_addr = peer_addr.clone();
            c.name = "n4".into();
            c.join_as_learner = true;
        })
        .await;
    let learner_line =
        format!("{id}, started, n4, http://{peer_addr}, http://{}, true", cluster.configs[new].client_addr);
    wait_members(&cluster, "the learner published", |lines| lines.contains(&learner_line.as_str())).await;

    // Promoted once in sync (retry while it catches up, as an operator would).
    let mut promoted = String::new();
    for _ in 0..100 {
        let (success, stdout, _) = etcdctl(ep, &["member", "promote", &id]);
        if success {
            promoted = stdout;
            break;
        }
        runtime::sleep(Duration::from_millis(200)).await;
    }
    assert!(promoted.contains("promoted in cluster"), "{promoted}");
    let list = wait_members(&cluster, "4 voters", |lines| lines.iter().all(|l| l.ends_with("false"))).await;
    assert_eq!(list.lines().count(), 4, "{list}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_voter_cannot_be_removed() {
    let cluster = Cluster::start(1).await;
    let (success, _, stderr) = etcdctl(&cluster.client_addr(0), &["member", "remove", "1"]);
    assert!(!success);
    assert!(stderr.contains("cannot remove the last voting member"), "{stderr}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_move_leader_snapshot_save_hashkv_and_defrag() {
    let mut cluster = Cluster::start(3).await;
    let all: Vec<String> = (0..3).map(|i| cluster.client_addr(i)).collect();
    let all = all.join(",");
    let mut kv = cluster.kv(0).await;
    for i in 0..20 {
        put(&mut kv, &format!("/k/{i}"), &format!("v{i}")).await;
    }

    let leader = cluster.wait_leader().await;
    let target = (leader + 1) % 3;
    let out = ok(&all, &["move-leader", &format!("{:x}", target + 1)]);
    assert!(out.contains(&format!("Leadership transferred from {:x} to {:x}", leader + 1, target + 1)), "{out}");
    assert_eq!(cluster.wait_leader().await, target);
    put(&mut kv, "/k/after-move", "x").await;
    let (success, _, stderr) = etcdctl(&all, &["move-leader", "99"]);
    assert!(!success && stderr.contains("bad leader transferee"), "{stderr}");

    // hashkv: the same digest on every member.
    let hashes = ok(&all, &["endpoint", "hashkv"]);
    let values: Vec<&str> = hashes.lines().map(|l| l.rsplit(", ").next().unwrap()).collect();
    assert_eq!(values.len(), 3, "{hashes}");
    assert!(values.iter().all(|h| *h == values[0]), "{hashes}");

    let out = ok(&all, &["defrag"]);
    assert_eq!(out.lines().filter(|l| l.starts_with("Finished defragmenting etcd member")).count(), 3, "{out}");

    // A backup holds every key and reads back.
    let file = cluster.dir.path().join("backup.db");
    let file = file.to_str().unwrap();
    let out = ok(&cluster.client_addr(1), &["snapshot", "save", file]);
    assert!(out.contains("Snapshot saved at"), "{out}");
    let state = placement_center::backup::decode(&std::fs::read(file).unwrap()).unwrap();
    assert_eq!(state.kvs.len(), 21);
    assert!(state.kvs.iter().any(|kv| kv.key == b"/k/after-move"));

    // Restored into a new cluster, the backup serves every key, at its revision.
    let backup_dir = tempfile::tempdir().unwrap();
    let kept = backup_dir.path().join("backup.db");
    std::fs::copy(file, &kept).unwrap();
    let restored = Cluster::start_restored(3, &kept).await;
    let leader = restored.wait_leader().await;
    let mut on_restored = restored.kv(leader).await;
    assert_eq!(get(&mut on_restored, "/k/after-move", false).await.unwrap().as_deref(), Some("x"));
    assert_eq!(get(&mut on_restored, "/k/7", false).await.unwrap().as_deref(), Some("v7"));
    let revision = put(&mut on_restored, "/k/new", "n").await;
    assert_eq!(revision, state.revision + 1, "the restored cluster goes on from the backup's revision");
    let (ok_again, _, stderr) = etcdctl(&restored.client_addr(0), &["get", "/k/new"]);
    assert!(ok_again, "{stderr}");
    let mut restored = restored;
    restored.stop(0).await;
    let refused = placement_center::server::restore(&restored.configs[0], &kept).unwrap_err().to_string();
    assert!(refused.contains("is not empty; restore needs a new one"), "{refused}");
    restored.shutdown().await;

    // A leader stopped gracefully hands over; the rest keep serving.
    let leader = cluster.wait_leader().await;
    cluster.stop(leader).await;
    let next = cluster.wait_leader().await;
    assert_ne!(next, leader);
    let mut kv = cluster.kv(next).await;
    put(&mut kv, "/k/after-stop", "y").await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_leader_cancelled_mid_transfer_leaves_the_leader_serving() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let target = (leader + 1) % 3;
    let endpoint = cluster.client_addr(leader);
    // The transferee is down but caught up: the leader pauses writes and
    // heartbeats and asks it to campaign until the client gives up.
    cluster.stop(target).await;
    let (success, _, stderr) =
        etcdctl(&endpoint, &["--command-timeout=1s", "move-leader", &format!("{:x}", target + 1)]);
    assert!(!success, "the transfer to a stopped member succeeded: {stderr}");
    // The cancelled transfer resumed what it paused: the node that led
    // serves writes and linearizable reads (it refused them until a restart).
    let (written, _, stderr) = etcdctl(&endpoint, &["put", "/after-cancel", "v"]);
    assert!(written, "write after a cancelled transfer: {stderr}");
    assert_eq!(ok(&endpoint, &["get", "/after-cancel", "--print-value-only"]), "v\n");
    cluster.shutdown().await;
}
