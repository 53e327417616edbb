//! etcdctl (v3 API, Debian's etcd-client) against a 3-node cluster, each
//! command asserted on its output. etcdctl must be installed (ci/setup.sh does).

use std::process::Command;

use crate::cluster::Cluster;

/// Runs etcdctl against `endpoint`; returns (success, stdout, stderr).
pub fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=15s")
        .args(args)
        .output()
        .expect("etcdctl must be installed (apt-get install etcd-client; ci/setup.sh does it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(endpoint: &str, args: &[&str]) -> String {
    let (success, stdout, stderr) = etcdctl(endpoint, args);
    assert!(success, "etcdctl {args:?} failed: {stderr}");
    stdout
}

fn json_number(json: &str, field: &str) -> i64 {
    let at = json.find(&format!("\"{field}\":")).unwrap_or_else(|| panic!("no {field} in {json}"));
    json[at + field.len() + 3..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_put_get_del_and_txn_work_against_a_follower() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(follower);
    let ep = ep.as_str();

    assert_eq!(ok(ep, &["put", "/mq/a", "1"]), "OK\n");
    assert_eq!(ok(ep, &["put", "/mq/b", "2"]), "OK\n");
    assert_eq!(ok(ep, &["put", "/mq/c", "3"]), "OK\n");
    assert_eq!(ok(ep, &["put", "/other", "x"]), "OK\n");

    assert_eq!(ok(ep, &["get", "/mq/a"]), "/mq/a\n1\n");
    assert_eq!(ok(ep, &["get", "/missing"]), "");
    assert_eq!(ok(ep, &["get", "--prefix", "/mq/"]), "/mq/a\n1\n/mq/b\n2\n/mq/c\n3\n");
    assert_eq!(ok(ep, &["get", "--from-key", "/mq/c"]), "/mq/c\n3\n/other\nx\n");
    assert_eq!(ok(ep, &["get", "--prefix", "/mq/", "--limit", "2"]), "/mq/a\n1\n/mq/b\n2\n");
    assert_eq!(ok(ep, &["get", "--prefix", "/mq/", "--keys-only"]), "/mq/a\n\n/mq/b\n\n/mq/c\n\n");
    assert_eq!(ok(ep, &["get", "--prefix", "/mq/", "--print-value-only"]), "1\n2\n3\n");
    assert_eq!(ok(ep, &["get", "/mq/a", "--consistency=s"]), "/mq/a\n1\n");

    // -w json shows the revisions: 4 puts after the initial revision 1.
    let json = ok(ep, &["get", "/mq/b", "-w", "json"]);
    assert_eq!(json_number(&json, "revision"), 5, "{json}");
    assert_eq!(json_number(&json, "create_revision"), 3, "{json}");
    assert_eq!(json_number(&json, "mod_revision"), 3, "{json}");
    assert_eq!(json_number(&json, "version"), 1, "{json}");
    assert_eq!(json_number(&json, "member_id"), follower as i64 + 1, "{json}");
    ok(ep, &["put", "/mq/b", "22"]);
    let json = ok(ep, &["get", "/mq/b", "-w", "json"]);
    assert_eq!((json_number(&json, "mod_revision"), json_number(&json, "version")), (6, 2), "{json}");

    assert_eq!(ok(ep, &["del", "/other"]), "1\n");
    assert_eq!(ok(ep, &["del", "/missing"]), "0\n");
    assert_eq!(ok(ep, &["del", "--prev-kv", "/mq/c"]), "1\n/mq/c\n3\n");
    assert_eq!(ok(ep, &["del", "--prefix", "/mq/"]), "2\n");
    assert_eq!(ok(ep, &["get", "--prefix", "/"]), "");

    // txn: compare on value, then/else branches.
    ok(ep, &["put", "lock", "free"]);
    let run_txn = |script: &str| {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={ep}"))
            .args(["txn"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    assert_eq!(run_txn("value(\"lock\") = \"free\"\n\nput lock taken\n\nget lock\n\n"), "SUCCESS\n\nOK\n");
    // The same compare now fails: the else branch runs.
    assert_eq!(run_txn("value(\"lock\") = \"free\"\n\nput lock again\n\nget lock\n\n"), "FAILURE\n\nlock\ntaken\n");
    // Version and revision compares.
    assert_eq!(run_txn("version(\"lock\") = \"2\"\nmod(\"lock\") > \"0\"\n\nput lock v3\n\n\n"), "SUCCESS\n\nOK\n");
    assert_eq!(run_txn("create(\"nokey\") = \"0\"\n\nput nokey created\n\n\n"), "SUCCESS\n\nOK\n");
    assert_eq!(ok(ep, &["get", "lock", "--print-value-only"]), "v3\n");

    let (success, _, stderr) = etcdctl(ep, &["put", "", "x"]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: key is not provided"), "{stderr}");
    cluster.shutdown().await;
}

/// A running command (a watch) whose output lines are read as they come.
pub struct Watching {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watching {
    fn start(endpoint: &str, args: &[&str]) -> Watching {
        let mut command = Command::new("etcdctl");
        command.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).arg("watch").args(args);
        Self::spawn(command)
    }

    /// Starts `command`, reading its stdout line by line.
    pub fn spawn(mut command: Command) -> Watching {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the command must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        // A plain thread reads the child's pipe (this test runs on real tokio).
        #[allow(clippy::disallowed_methods)]
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watching { child, lines }
    }

    /// The next `n` lines, waiting up to 15 s for them.
    pub fn next(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.lines
                    .recv_timeout(std::time::Duration::from_secs(15))
                    .unwrap_or_else(|_| panic!("watch printed only {i} of {n} lines"))
            })
            .collect()
    }
}

impl Watching {
    /// Waits for the command to exit by itself: its exit code and stderr.
    pub fn wait(mut self) -> (Option<i32>, String) {
        use std::io::Read;
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        (status.code(), stderr)
    }

    /// Sends the command SIGINT (Ctrl-C) and waits for it: its exit code and stderr.
    pub fn interrupt(self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        self.wait()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_follows_puts_and_deletes_of_a_key_or_prefix_from_a_revision() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(follower);
    let leader_ep = cluster.client_addr(cluster.wait_leader().await);
    let ep = ep.as_str();

    ok(ep, &["put", "/mq/before", "0"]); // revision 2
                                         // From the next revision on (3): what they print does not depend on how
                                         // fast etcdctl starts on a loaded machine. Watches "from now" are covered
                                         // by tests/it/watch.rs, which waits for `created`.
    let prefix = Watching::start(ep, &["--rev", "3", "--prefix", "/mq/"]);
    let single = Watching::start(ep, &["--rev", "3", "--prev-kv", "/mq/a"]);
    ok(&leader_ep, &["put", "/mq/a", "1"]); // 3
    ok(&leader_ep, &["put", "/other", "x"]); // 4: outside both
    ok(&leader_ep, &["put", "/mq/a", "2"]); // 5
    ok(&leader_ep, &["del", "/mq/a"]); // 6
    assert_eq!(prefix.next(9), ["PUT", "/mq/a", "1", "PUT", "/mq/a", "2", "DELETE", "/mq/a", ""]);
    // With --prev-kv each event shows the record it replaced first.
    let with_prev = ["PUT", "/mq/a", "1", "PUT", "/mq/a", "1", "/mq/a", "2", "DELETE", "/mq/a", "2", "/mq/a", ""];
    assert_eq!(single.next(with_prev.len()), with_prev);

    // From a past revision: the history replays, then new events follow.
    let replay = Watching::start(ep, &["--rev", "2", "--prefix", "/mq/"]);
    assert_eq!(replay.next(3), ["PUT", "/mq/before", "0"]);
    assert_eq!(replay.next(6), ["PUT", "/mq/a", "1", "PUT", "/mq/a", "2"]);
    assert_eq!(replay.next(3), ["DELETE", "/mq/a", ""]);
    cluster.shutdown().await;
}

fn lease_id(granted: &str) -> String {
    // "lease 694d7b8d8b0f2a0c granted with TTL(60s)"
    granted.split_whitespace().nth(1).unwrap_or_else(|| panic!("no lease id in {granted:?}")).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_grant_attach_keepalive_timetolive_list_and_revoke() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(follower);
    let ep = ep.as_str();

    let granted = ok(ep, &["lease", "grant", "60"]);
    assert!(granted.ends_with(" granted with TTL(60s)\n"), "{granted}");
    let id = lease_id(&granted);
    assert_eq!(ok(ep, &["put", "--lease", &id, "/brokers/1", "up"]), "OK\n");
    assert_eq!(ok(ep, &["put", "--lease", &id, "/brokers/2", "up"]), "OK\n");

    let ttl = ok(ep, &["lease", "timetolive", &id, "--keys"]);
    assert!(ttl.starts_with(&format!("lease {id} granted with TTL(60s), remaining(")), "{ttl}");
    assert!(ttl.ends_with("attached keys([/brokers/1 /brokers/2])\n"), "{ttl}");
    assert_eq!(ok(ep, &["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(60)\n"));
    let list = ok(ep, &["lease", "list"]);
    assert_eq!(list, format!("found 1 leases\n{id}\n"));

    // A TTL below the minimum is raised to it (2 s with a 1 s election timeout).
    let short = ok(ep, &["lease", "grant", "1"]);
    assert!(short.ends_with(" granted with TTL(2s)\n"), "{short}");

    assert_eq!(ok(ep, &["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(ep, &["get", "--prefix", "/brokers/"]), "");
    assert_eq!(ok(ep, &["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    let (success, _, stderr) = etcdctl(ep, &["lease", "revoke", &id]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: requested lease not found"), "{stderr}");
    let (success, _, stderr) = etcdctl(ep, &["put", "--lease", "1234abcd", "/k", "v"]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: requested lease not found"), "{stderr}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_without_keepalives_expires_and_takes_its_keys() {
    let cluster = Cluster::start(3).await;
    let ep = cluster.client_addr(cluster.follower().await);
    let ep = ep.as_str();
    let id = lease_id(&ok(ep, &["lease", "grant", "2"]));
    ok(ep, &["put", "--lease", &id, "/alive", "1"]);
    let deadline = placement_center::runtime::now() + std::time::Duration::from_secs(20);
    while ok(ep, &["get", "/alive", "--print-value-only"]) == "1\n" {
        assert!(placement_center::runtime::now() < deadline, "the key outlived its 2 s lease by far");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ok(ep, &["lease", "timetolive", &id]), format!("lease {id} already expired\n"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_get_rev_reads_the_past_until_compaction_removes_it() {
    let cluster = Cluster::start(3).await;
    let ep = cluster.client_addr(cluster.follower().await);
    let ep = ep.as_str();
    ok(ep, &["put", "k", "v1"]); // revision 2
    ok(ep, &["put", "k", "v2"]); // 3
    ok(ep, &["put", "k", "v3"]); // 4
    assert_eq!(ok(ep, &["get", "k", "--rev", "2"]), "k\nv1\n");
    assert_eq!(ok(ep, &["get", "k", "--rev", "3"]), "k\nv2\n");
    assert_eq!(ok(ep, &["get", "k", "--rev", "1"]), "");
    let (success, _, stderr) = etcdctl(ep, &["get", "k", "--rev", "9"]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: mvcc: required revision is a future revision"), "{stderr}");

    assert_eq!(ok(ep, &["compaction", "3"]), "compacted revision 3\n");
    let (success, _, stderr) = etcdctl(ep, &["get", "k", "--rev", "2"]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: mvcc: required revision has been compacted"), "{stderr}");
    assert_eq!(ok(ep, &["get", "k", "--rev", "3"]), "k\nv2\n");
    let (success, _, stderr) = etcdctl(ep, &["compaction", "3"]);
    assert!(!success);
    assert!(stderr.contains("etcdserver: mvcc: required revision has been compacted"), "{stderr}");

    // A watch from a compacted revision is canceled with the compact revision.
    let out = Command::new("timeout")
        .args(["15", "etcdctl", &format!("--endpoints={ep}"), "watch", "k", "--rev", "2"])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("watch was canceled (etcdserver: mvcc: required revision has been compacted)"), "{stderr}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_member_list_and_endpoint_status_and_health_describe_the_cluster() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(follower);

    // "ID, started, name, peer URLs, client URLs, learner", ids in hex.
    let members = ok(&ep, &["member", "list"]);
    let lines: Vec<&str> = members.lines().collect();
    assert_eq!(lines.len(), 3, "{members}");
    for (i, line) in lines.iter().enumerate() {
        let want = format!(
            "{:x}, started, node{}, http://{}, http://{}, false",
            i + 1,
            i + 1,
            cluster.configs[i].peer_addr,
            cluster.configs[i].client_addr
        );
        assert_eq!(*line, want);
    }

    // "endpoint, ID, version, db size, is leader, is learner, raft term,
    // raft index, raft applied index, errors".
    ok(&ep, &["put", "k", "v"]);
    let all: Vec<String> = (0..3).map(|i| cluster.client_addr(i)).collect();
    let status = ok(&all.join(","), &["endpoint", "status"]);
    let rows: Vec<Vec<&str>> = status.lines().map(|l| l.split(", ").collect()).collect();
    assert_eq!(rows.len(), 3, "{status}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], all[i]);
        assert_eq!(row[1], format!("{:x}", i + 1));
        assert_eq!(row[2], "3.5.0");
        assert_eq!(row[4], if i == leader { "true" } else { "false" }, "{status}");
        assert_eq!(row[5], "false");
        let (index, applied): (u64, u64) = (row[7].parse().unwrap(), row[8].parse().unwrap());
        assert!(index >= 2 && applied >= 1, "{status}");
    }
    // etcdctl 3.4 prints health to stderr.
    let (success, stdout, stderr) = etcdctl(&all.join(","), &["endpoint", "health"]);
    let health = format!("{stdout}{stderr}");
    assert!(success, "{health}");
    assert_eq!(
        health.lines().filter(|l| l.contains(" is healthy: successfully committed proposal")).count(),
        3,
        "{health}"
    );
    cluster.shutdown().await;
}
