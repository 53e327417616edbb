//! etcdctl (v3 API, Debian's etcd-client) against a 3-node cluster, each
//! command asserted on its output. etcdctl must be installed (ci/setup.sh does).

use std::process::Command;

use crate::cluster::Cluster;

/// Runs etcdctl against `endpoint`; returns (success, stdout, stderr).
fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String, String) {
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

fn ok(endpoint: &str, args: &[&str]) -> String {
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
