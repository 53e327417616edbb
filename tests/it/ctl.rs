//! placement-ctl against a 3-node cluster: every command, asserted on what
//! it prints and on its exit code.

use std::process::Command;
use std::time::Duration;

use placement_center::runtime;

use crate::cluster::Cluster;
use crate::etcdctl::Watching;

/// placement-ctl's binary. It is a crate of its own (ctl/), so cargo does
/// not name it to these tests; it builds it beside them, in the same target
/// directory, when the crate is selected (it is a default member).
pub fn ctl_binary() -> std::path::PathBuf {
    let tests = std::env::current_exe().unwrap();
    // target/<profile>/deps/it-<hash> -> target/<profile>/placement-ctl
    let binary = tests.parent().and_then(|deps| deps.parent()).unwrap().join("placement-ctl");
    assert!(binary.exists(), "no {}: build it with `cargo build -p placement-ctl`", binary.display());
    binary
}

/// placement-ctl with `--endpoints` set to `endpoints`.
fn ctl_command(endpoints: &str, args: &[&str]) -> Command {
    let mut command = Command::new(ctl_binary());
    command.env_remove("PLACEMENT_ENDPOINTS").arg("--endpoints").arg(endpoints).args(args);
    command
}

/// Runs placement-ctl: (exit code, stdout, stderr).
pub fn ctl(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = ctl_command(endpoints, args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs placement-ctl, which must succeed; its stdout.
fn ok(endpoints: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = ctl(endpoints, args);
    assert_eq!(code, 0, "placement-ctl {args:?} failed: {stderr}");
    stdout
}

/// Runs placement-ctl -o json, which must succeed; its parsed output.
fn json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let mut with_json = vec!["-o", "json"];
    with_json.extend_from_slice(args);
    serde_json::from_str(&ok(endpoints, &with_json)).unwrap()
}

fn endpoints(cluster: &Cluster) -> String {
    (0..cluster.nodes.len()).map(|i| cluster.client_addr(i)).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_ctl_takes_a_broker_through_its_life() {
    let cluster = Cluster::start(3).await;
    let ep = endpoints(&cluster);
    let ep = ep.as_str();

    assert_eq!(
        ok(ep, &["cluster", "config", "get", "mq"]),
        "cluster mq: heartbeat every 3s, expiry after 30s (defaults)\n"
    );
    assert_eq!(
        ok(ep, &["cluster", "config", "set", "mq", "--heartbeat-interval", "1", "--expiry", "4"]),
        "cluster mq: heartbeat every 1s, expiry after 4s (set)\n"
    );
    let watch = Watching::spawn(ctl_command(ep, &["node", "watch", "--cluster", "mq"]));
    runtime::sleep(Duration::from_millis(500)).await; // the watch pins "now"

    let registered = ok(
        ep,
        &[
            "node",
            "register",
            "--cluster",
            "mq",
            "--id",
            "1",
            "--role",
            "mqtt",
            "--address",
            "mqtt=127.0.0.1:1883",
            "--label",
            "zone=a",
        ],
    );
    let lines: Vec<&str> = registered.lines().collect();
    assert_eq!(lines.len(), 3, "{registered}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["CLUSTER", "NODE", "EPOCH", "LEASE", "ROLES", "ADDRESSES", "LABELS"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((row[0], row[1], row[4], row[5], row[6]), ("mq", "1", "mqtt", "mqtt=127.0.0.1:1883", "zone=a"));
    let epoch = row[2].to_string();
    assert_eq!(lines[2], "heartbeat every 1s, expires after 4s without one");

    let joined = watch.next(1);
    assert_eq!(joined[0], format!("JOINED mq/1 epoch={epoch} revision={epoch} roles=mqtt"));

    let listed = json(ep, &["node", "list", "--cluster", "mq"]);
    assert_eq!(listed["nodes"][0]["epoch"].as_i64().unwrap().to_string(), epoch);
    assert_eq!(listed["nodes"][0]["addresses"]["mqtt"], "127.0.0.1:1883");
    assert_eq!(ok(ep, &["node", "heartbeat", "--cluster", "mq", "--id", "1", "--epoch", &epoch]), "OK ttl 4s\n");

    // Registered again: the old epoch is refused (exit 4), and the watch saw the change.
    let again = json(ep, &["node", "register", "--cluster", "mq", "--id", "1", "--role", "mqtt"]);
    let new_epoch = again["node"]["epoch"].as_i64().unwrap();
    assert!(new_epoch > epoch.parse().unwrap());
    let (code, _, stderr) = ctl(ep, &["node", "heartbeat", "--cluster", "mq", "--id", "1", "--epoch", &epoch]);
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        stderr,
        format!("Error: placement: stale epoch {epoch} for node 1 of cluster mq: the current registration has epoch {new_epoch}\n")
    );
    assert!(watch.next(1)[0].starts_with(&format!("CHANGED mq/1 epoch={new_epoch} ")));

    assert_eq!(ok(ep, &["node", "unregister", "--cluster", "mq", "--id", "1"]), "unregistered node 1 of cluster mq\n");
    assert!(watch.next(1)[0].starts_with(&format!("LEFT mq/1 epoch={new_epoch} ")));
    assert_eq!(
        ok(ep, &["node", "unregister", "--cluster", "mq", "--id", "1"]),
        "node 1 of cluster mq was not registered\n"
    );
    let (code, _, stderr) = ctl(ep, &["node", "heartbeat", "--cluster", "mq", "--id", "1", "--epoch", &epoch]);
    assert_eq!((code, stderr.contains("is not registered")), (3, true), "{stderr}");
    assert_eq!(ok(ep, &["node", "list", "--cluster", "mq"]).lines().count(), 1, "only the header");

    // --keep-alive heartbeats past the expiry, and says when it is replaced.
    let keeper =
        Watching::spawn(ctl_command(ep, &["node", "register", "--cluster", "mq", "--id", "2", "--keep-alive"]));
    keeper.next(3);
    runtime::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        json(ep, &["node", "list", "--cluster", "mq"])["nodes"][0]["node_id"],
        2,
        "kept alive past the 4 s expiry"
    );
    ok(ep, &["node", "register", "--cluster", "mq", "--id", "2"]);
    let (code, stderr) = keeper.wait();
    assert_eq!(code, Some(4), "{stderr}");
    assert!(stderr.contains("registration lost: registration refused: placement: stale epoch"), "{stderr}");

    // Interrupted, --keep-alive unregisters its node.
    let keeper =
        Watching::spawn(ctl_command(ep, &["node", "register", "--cluster", "mq", "--id", "3", "--keep-alive"]));
    keeper.next(3);
    let (code, stderr) = keeper.interrupt();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("interrupted: unregistered node 3 of cluster mq"), "{stderr}");
    let left: Vec<u64> = json(ep, &["node", "list", "--cluster", "mq"])["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node_id"].as_u64().unwrap())
        .collect();
    assert_eq!(left, vec![2]);

    let (code, _, stderr) = ctl(ep, &["node", "register", "--cluster", "a/b", "--id", "1"]);
    assert_eq!(
        (code, stderr.as_str()),
        (2, "Error: placement: invalid cluster name \"a/b\": use 1 to 128 letters, digits, '.', '_' or '-'\n")
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_ctl_kv_lease_and_cluster_commands_print_what_scripts_rely_on() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await as u64 + 1;
    let ep = endpoints(&cluster);
    let ep = ep.as_str();

    let put = ok(ep, &["kv", "put", "/mq/a", "1"]);
    assert!(put.starts_with("OK revision "), "{put}");
    let watch = Watching::spawn(ctl_command(ep, &["kv", "watch", "/mq/", "--prefix"]));
    runtime::sleep(Duration::from_millis(500)).await;
    let revision = json(ep, &["kv", "put", "/mq/b", "2"])["revision"].as_i64().unwrap();
    assert_eq!(watch.next(1), vec![format!("PUT /mq/b 2 revision={revision}")]);
    assert_eq!(
        ok(ep, &["kv", "get", "/mq/b"]),
        format!("KEY    VALUE  MOD_REVISION  LEASE\n/mq/b  2      {revision}\n")
    );
    let all = json(ep, &["kv", "get", "/mq/", "--prefix", "--serializable"]);
    assert_eq!(all["kvs"].as_array().unwrap().len(), 2);
    // etcdctl's spellings: -w/--write-out, and its simple format.
    assert_eq!(ok(ep, &["-w", "simple", "kv", "get", "/mq/", "--prefix"]), "/mq/a\n1\n/mq/b\n2\n");
    let written_out: serde_json::Value =
        serde_json::from_str(&ok(ep, &["kv", "get", "/mq/b", "--write-out", "json"])).unwrap();
    assert_eq!(written_out["kvs"][0]["mod_revision"], revision);
    let (code, stdout, stderr) = ctl(ep, &["kv", "get", "/missing"]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (3, "", "Error: key not found: /missing\n"));
    assert_eq!(ok(ep, &["kv", "del", "/mq/", "--prefix"]), "deleted 2\n");
    assert!(watch.next(2).iter().all(|l| l.starts_with("DELETE /mq/")));

    // Leases: a registration's lease, its TTL and its key.
    let registered = json(ep, &["node", "register", "--cluster", "mq", "--id", "9"]);
    let lease = format!("{:x}", registered["node"]["lease_id"].as_i64().unwrap());
    assert!(ok(ep, &["lease", "list"]).lines().any(|l| l == lease));
    let ttl = ok(ep, &["lease", "ttl", &lease, "--keys"]);
    assert!(ttl.starts_with(&format!("lease {lease}: granted 30s, remaining ")), "{ttl}");
    assert!(ttl.ends_with("\n  /placement/nodes/mq/9\n"), "{ttl}");
    let (code, _, stderr) = ctl(ep, &["lease", "ttl", "abcdef"]);
    assert_eq!((code, stderr.as_str()), (3, "Error: lease abcdef not found\n"));

    // Members and status.
    let members = ok(ep, &["cluster", "members"]);
    assert_eq!(members.lines().count(), 4, "{members}");
    assert_eq!(members.lines().filter(|l| l.ends_with("voter")).count(), 3, "{members}");
    let simple = ok(ep, &["cluster", "members", "-w", "simple"]);
    assert_eq!(simple.lines().count(), 3, "no header: {simple}");
    for line in simple.lines() {
        let cells: Vec<&str> = line.split(", ").collect();
        assert_eq!((cells.len(), cells[4]), (5, "voter"), "{line}");
        assert!(cells[3].starts_with("http://127.0.0.1:"), "{line}");
    }
    let status = ok(ep, &["cluster", "status"]);
    assert!(status.starts_with(&format!("leader {leader:x}, term ")), "{status}");
    assert_eq!(status.lines().filter(|l| l.contains(" true ")).count(), 3, "three healthy members: {status}");
    assert!(status.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["mq", "1"]), "{status}");
    let status = json(ep, &["cluster", "status"]);
    assert_eq!(status["leader"], leader);
    assert!(status["members"].as_array().unwrap().iter().all(|m| m["healthy"] == true));

    // A learner that never starts: added, refused promotion (exit 4), removed.
    let added = ok(ep, &["cluster", "add", "127.0.0.1:1", "--learner"]);
    let id = added.strip_prefix("added member ").and_then(|r| r.split_whitespace().next()).unwrap().to_string();
    assert!(added.ends_with("as a learner; start it with --join\n"), "{added}");
    let (code, _, stderr) = ctl(ep, &["cluster", "promote", &id]);
    assert_eq!(
        (code, stderr.as_str()),
        (4, "Error: etcdserver: can only promote a learner member which is in sync with leader\n")
    );
    assert_eq!(ok(ep, &["cluster", "remove", &id]), format!("removed member {id}\n"));
    let (code, _, _) = ctl(ep, &["cluster", "remove", &id]);
    assert_eq!(code, 3);

    // Scripts: completions, and errors that are not the server's.
    assert!(ok(ep, &["completions", "bash"]).contains("placement-ctl"));
    let (code, _, stderr) = ctl("127.0.0.1:1", &["--timeout", "2", "kv", "get", "/a"]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = ctl("nonsense", &["kv", "get", "/a"]);
    assert_eq!((code, stderr.as_str()), (2, "Error: invalid endpoint \"nonsense\": expected host:port\n"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_ctl_commits_and_gets_a_groups_offsets_and_exits_4_when_fenced() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let ep = endpoints(&cluster);
    let ep = ep.as_str();
    let commit = ["offsets", "commit", "--cluster", "mq", "--group", "billing"];
    let out = ok(ep, &[&commit[..], &["--generation", "3", "orders/0=120", "orders/1=98"]].concat());
    assert!(out.starts_with("committed 2 offsets of group billing at revision "), "{out}");
    assert!(out.ends_with(" (generation 3)\n"), "{out}");
    ok(ep, &[&commit[..], &["--metadata", "last", "refunds/0=7"]].concat());
    assert_eq!(
        ok(ep, &["offsets", "get", "--cluster", "mq", "--group", "billing"]),
        "TOPIC    SHARD  OFFSET  METADATA\norders   0      120\norders   1      98\nrefunds  0      7       last\n"
    );
    let got = json(ep, &["offsets", "get", "--cluster", "mq", "--group", "billing", "--topic", "refunds"]);
    assert_eq!(got["generation"], 3);
    assert_eq!(got["offsets"], serde_json::json!([{"topic": "refunds", "shard": 0, "offset": 7, "metadata": "last"}]));
    let (code, _, err) = ctl(ep, &[&commit[..], &["--generation", "2", "orders/0=1"]].concat());
    assert_eq!(code, 4, "{err}");
    assert_eq!(
        err,
        "Error: placement: stale generation 2 for group billing of cluster mq: the group is at generation 3\n"
    );
    let (code, _, err) = ctl(ep, &[&commit[..], &["orders=1"]].concat());
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_ctl_creates_describes_moves_and_deletes_topics_and_shards() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let ep = endpoints(&cluster);
    let ep = ep.as_str();
    for (id, zone) in [("1", "a"), ("2", "b"), ("3", "c")] {
        ok(
            ep,
            &[
                "node",
                "register",
                "--cluster",
                "mq",
                "--id",
                id,
                "--role",
                "journal",
                "--label",
                &format!("zone={zone}"),
            ],
        );
    }
    let watch = Watching::spawn(ctl_command(ep, &["shard", "watch", "--cluster", "mq", "--broker", "1"]));
    let create = ["topic", "create", "--cluster", "mq", "orders", "--shards", "3", "--replication-factor", "2"];
    let created = ok(ep, &[&create[..], &["--role", "journal", "--spread-label", "zone"]].concat());
    assert!(created.starts_with("created topic orders at revision "), "{created}");
    let (code, _, err) = ctl(ep, &create);
    assert_eq!((code, err.as_str()), (4, "Error: placement: topic orders of cluster mq already exists\n"));

    // The controller places the shards; describe shows them.
    let mut described = serde_json::Value::Null;
    for _ in 0..100 {
        described = json(ep, &["topic", "describe", "--cluster", "mq", "orders"]);
        if described["placed"].as_array().unwrap().len() == 3 {
            break;
        }
        runtime::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(described["placed"].as_array().unwrap().len(), 3, "{described}");
    let table = ok(ep, &["topic", "describe", "--cluster", "mq", "orders"]);
    assert!(
        table.starts_with(
            "NAME    SHARDS  REPLICATION  ROLE     SPREAD  REVISION\norders  3       2            journal  zone"
        ),
        "{table}"
    );
    assert!(table.contains("TOPIC   SHARD  LEADER  LEADER EPOCH  REPLICAS  IN SYNC  HIGH WATERMARK"), "{table}");
    let listed = ok(ep, &["topic", "list", "--cluster", "mq"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let of_1 = json(ep, &["shard", "list", "--cluster", "mq", "--broker", "1"]);
    let held = of_1["shards"].as_array().unwrap().len();
    assert!(held >= 1, "{of_1}");
    let lines = watch.next(held);
    assert!(lines.iter().all(|l| l.contains(" lead orders/") || l.contains(" follow orders/")), "{lines:?}");

    // Leadership of shard 0 to its other replica.
    let shard = &described["placed"][0];
    let leader = shard["leader"].as_u64().unwrap();
    let other =
        shard["replicas"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).find(|r| *r != leader).unwrap();
    let moved = ok(
        ep,
        &["shard", "move", "--cluster", "mq", "--topic", "orders", "--shard", "0", "--leader", &other.to_string()],
    );
    assert!(
        moved.starts_with(&format!("moved shard orders/0: leader {other} at leader epoch 2, replicas ")),
        "{moved}"
    );
    let (code, _, err) = ctl(ep, &["shard", "move", "--cluster", "mq", "--topic", "orders", "--shard", "0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("nothing to move"), "{err}");
    let (code, _, err) =
        ctl(ep, &["shard", "move", "--cluster", "mq", "--topic", "orders", "--shard", "9", "--leader", "1"]);
    assert_eq!(code, 3, "{err}");

    // A follower's replica to the broker without one. The controller may
    // move the shard meanwhile (rebalancing leaderships): read it again then.
    let mut replica_moved = serde_json::Value::Null;
    for _ in 0..5 {
        let now = json(ep, &["shard", "list", "--cluster", "mq", "--topic", "orders"])["shards"][0].clone();
        let replicas: Vec<u64> = now["replicas"].as_array().unwrap().iter().map(|r| r.as_u64().unwrap()).collect();
        let follower = *replicas.iter().find(|r| Some(**r) != now["leader"].as_u64()).unwrap();
        let third = (1..=3u64).find(|b| !replicas.contains(b)).unwrap();
        let (from, to, rev) = (follower.to_string(), third.to_string(), now["revision"].to_string());
        let args =
            ["shard", "move", "--cluster", "mq", "--topic", "orders", "--shard", "0", "--from", &from, "--to", &to];
        let (code, out, err) = ctl(ep, &[&["-o", "json"][..], &args, &["--revision", &rev]].concat());
        if code == 0 {
            replica_moved = serde_json::from_str(&out).unwrap();
            assert!(replica_moved["replicas"].as_array().unwrap().iter().any(|r| r.as_u64() == Some(third)));
            break;
        }
        assert_eq!(code, 4, "{err}");
    }
    assert!(!replica_moved.is_null(), "the replica never moved");
    // More shards, at the revision read.
    let revision =
        json(ep, &["topic", "describe", "--cluster", "mq", "orders"])["revision"].as_i64().unwrap().to_string();
    let updated = ok(ep, &["topic", "update", "--cluster", "mq", "orders", "--revision", &revision, "--shards", "4"]);
    assert!(updated.starts_with("updated topic orders at revision "), "{updated}");
    let (code, _, err) =
        ctl(ep, &["topic", "update", "--cluster", "mq", "orders", "--revision", &revision, "--shards", "5"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("is at revision") && err.contains(&format!("not {revision}")), "{err}");

    assert!(
        ok(ep, &["topic", "delete", "--cluster", "mq", "orders"]).starts_with("deleted topic orders and its shards")
    );
    let (code, _, err) = ctl(ep, &["topic", "describe", "--cluster", "mq", "orders"]);
    assert_eq!((code, err.as_str()), (3, "Error: placement: topic orders of cluster mq not found\n"));
    let (code, _, _) = ctl(ep, &["topic", "delete", "--cluster", "mq", "orders"]);
    assert_eq!(code, 3);
    assert!(ok(ep, &["shard", "list", "--cluster", "mq"]).lines().count() == 1, "only the header");
    let (code, _, err) = ctl(ep, &["topic", "create", "--cluster", "mq", "bad", "--shards", "0"]);
    assert_eq!(code, 2, "{err}");
}
