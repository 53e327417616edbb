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
async fn a_learner_that_missed_its_removal_learns_it_from_the_voters() {
    let mut cluster = Cluster::start(3).await;
    let new = cluster
        .join(|c| {
            c.name = "learner".into();
            c.join_as_learner = true;
        })
        .await;
    let id = cluster.nodes[new].as_ref().unwrap().node.id;
    let listed = format!("{id:x}, started, learner,");
    wait_members(&cluster, "the learner published", |lines| lines.iter().any(|l| l.starts_with(&listed))).await;

    // Down while it is removed, it comes back to a membership that still
    // names it, and no leader sends a learner anything once it is removed.
    cluster.stop(new).await;
    ok(&cluster.client_addr(0), &["member", "remove", &format!("{id:x}")]);
    wait_members(&cluster, "the learner removed", |lines| lines.len() == 3).await;
    cluster.restart(new).await;
    let node = cluster.nodes[new].as_ref().unwrap();
    assert!(!node.removed(), "it cannot know yet");
    for _ in 0..300 {
        if node.removed() {
            break;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    assert!(node.removed(), "the removed learner never learned it");
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

/// Before the check, the wiped member bootstrapped its initial membership
/// again with an empty log and voted and acknowledged as a member in good
/// standing: with the leader and it as a quorum, writes could commit
/// without the only other copy of older ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_on_a_wiped_data_dir_is_refused_until_removed_and_added_back() {
    let mut cluster = Cluster::start(3).await;
    let mut kv = cluster.kv(0).await;
    put(&mut kv, "k", "v").await;
    let leader = cluster.wait_leader().await;
    let wiped = (0..3).find(|i| *i != leader).unwrap();
    let id = cluster.nodes[wiped].as_ref().unwrap().node.id;
    cluster.stop(wiped).await;
    std::fs::remove_dir_all(&cluster.configs[wiped].data_dir).unwrap();

    let refused = cluster.try_restart(wiped).await.expect_err("a wiped member must not start");
    assert!(refused.contains(&format!("member {id:x} has already been bootstrapped")), "{refused}");
    assert!(refused.contains("etcdctl member remove"), "{refused}");

    // The fix the message gives: remove it, then join as a new member.
    let ep = cluster.client_addr(leader);
    ok(&ep, &["member", "remove", &format!("{id:x}")]);
    std::fs::remove_dir_all(&cluster.configs[wiped].data_dir).unwrap();
    let peer_addr = cluster.configs[wiped].peer_addr.clone();
    let new = cluster.join(move |c| c.peer_addr = peer_addr.clone()).await;
    let mut on_new = cluster.kv(new).await;
    for _ in 0..100 {
        if get(&mut on_new, "k", true).await.ok().flatten().is_some() {
            break;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(get(&mut on_new, "k", false).await.unwrap().as_deref(), Some("v"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_member_on_a_wiped_data_dir_cannot_join_as_itself_again() {
    let mut cluster = Cluster::start(3).await;
    let new = cluster.join(|_| {}).await;
    let id = cluster.nodes[new].as_ref().unwrap().node.id;
    for _ in 0..300 {
        if cluster.nodes[0].as_ref().unwrap().node.member(id).is_some_and(|(_, m)| m.started) {
            break;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    cluster.stop(new).await;
    std::fs::remove_dir_all(&cluster.configs[new].data_dir).unwrap();
    let refused = cluster.try_restart(new).await.expect_err("a wiped joined member must not start");
    assert!(refused.contains(&format!("member {id:x} at http://")), "{refused}");
    assert!(refused.contains("has already been bootstrapped"), "{refused}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_by_etcdctl_is_unstarted_until_it_runs() {
    let mut cluster = Cluster::start(3).await;
    let ep = cluster.client_addr(0);
    let peer = placement_center::runtime::Listener::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    ok(&ep, &["member", "add", "late", "--learner", &format!("--peer-urls=http://{peer_addr}")]);
    let list = ok(&ep, &["member", "list"]);
    assert!(list.lines().any(|l| l.contains(", unstarted, , http://") && l.contains(&peer_addr)), "{list}");
    release(peer);
    let new = cluster.join(move |c| c.peer_addr = peer_addr.clone()).await;
    let id = cluster.nodes[new].as_ref().unwrap().node.id;
    wait_members(&cluster, "the added member started", |lines| {
        lines.iter().any(|l| l.starts_with(&format!("{id:x}, started")))
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_is_refused_to_another_member_id_or_another_clusters_token() {
    let mut cluster = Cluster::start(1).await;
    cluster.stop(0).await;
    let original = cluster.configs[0].clone();

    cluster.configs[0].node_id = 7;
    cluster.configs[0].initial_members.clear();
    let refused = cluster.try_restart(0).await.expect_err("another member id");
    assert!(refused.contains("belongs to member 1 (id 1), not to node_id 7 (7)"), "{refused}");

    cluster.configs[0] = original.clone();
    cluster.configs[0].initial_cluster_token = "another-clusters-token".into();
    let refused = cluster.try_restart(0).await.expect_err("another cluster's token");
    assert!(refused.contains("but initial_cluster_token is another cluster's"), "{refused}");

    cluster.configs[0] = original;
    cluster.restart(0).await;
    cluster.shutdown().await;
}
