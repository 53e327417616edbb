//! Addresses as a multi-host deployment writes them: host names rather than
//! IP literals, listening on one address while advertising another, and a
//! clear refusal at startup of what cannot work.

use std::process::Command;

use crate::cluster::{get, put, Cluster};
use crate::etcdctl::ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_advertise_host_names_form_a_cluster_that_clients_reach_by_name() {
    let mut cluster = Cluster::start_named(3, "localhost").await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(follower);
    assert!(ep.starts_with("localhost:"), "{ep}");

    // What members list is what they advertise, names included.
    let members = ok(&ep, &["member", "list"]);
    for config in &cluster.configs {
        let want = format!("http://{}, http://{}", config.peer_addr, config.client_addr);
        assert!(members.contains(&want), "{members} should list {want}");
    }
    // A write through a follower is forwarded to the leader by name.
    ok(&ep, &["put", "named", "v1"]);
    let mut kv = cluster.kv(leader).await;
    assert_eq!(get(&mut kv, "named", false).await.unwrap().as_deref(), Some("v1"));

    // A member restarted dials its peers by name again.
    cluster.stop(follower).await;
    put(&mut kv, "while-down", "v2").await;
    cluster.restart(follower).await;
    let ep = cluster.client_addr(follower);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = ok(&ep, &["get", "while-down", "--print-value-only"]);
        if seen.trim() == "v2" {
            break;
        }
        placement_center::runtime::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen.trim(), "v2");
    cluster.shutdown().await;
}

/// Runs the server binary with `args` and a fresh data dir; it must exit
/// with an error whose one line contains `want`.
fn refused(args: &[&str], want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_placement-center"))
        .args(args)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--metrics-addr", ""])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} started: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("Error:")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains(want), "{args:?}: {line:?} should say {want:?}");
}

#[test]
fn addresses_that_cannot_work_are_refused_at_startup_with_the_fix() {
    refused(&["--client-addr", "0.0.0.0:23790"], "listen on it with listen_client_addr");
    refused(
        &["--listen-peer-urls", "http://0.0.0.0:23800", "--initial-advertise-peer-urls", "http://[::]:23800"],
        "advertise this host's name or address",
    );
    refused(&["--client-addr", "::1:23790"], "[::1]:23790");
    // Listening for other hosts with nothing but loopback to tell them.
    refused(&["--listen-client-urls", "http://0.0.0.0:23790"], "set client_addr (--advertise-client-urls)");
    refused(&["--listen-client-urls", "http://a:1,http://b:2"], "one address");
    // 198.18.0.0/15 is reserved for network tests: not an address of this host.
    refused(
        &["--listen-client-urls", "http://198.18.0.1:23790", "--advertise-client-urls", "http://localhost:23790"],
        "198.18.0.1:23790 is not an address of this host",
    );
    refused(&["--client-addr", "no-such-host.invalid:23790"], "cannot listen on no-such-host.invalid:23790");
    refused(
        &["--listen-client-urls", "127.0.0.1:0", "--advertise-client-urls", "no-such-host.invalid:23790"],
        "no-such-host.invalid:23790 does not resolve",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_ipv6_loopback_serves_clients() {
    use placement_center::runtime::Listener;
    use placement_center::server::{Listeners, Server};
    let dir = tempfile::tempdir().unwrap();
    let client = Listener::bind("[::1]:0").await.unwrap();
    let peer = Listener::bind("[::1]:0").await.unwrap();
    let mut config = crate::cluster::test_config(1);
    config.client_addr = client.local_addr().unwrap().to_string();
    config.peer_addr = peer.local_addr().unwrap().to_string();
    config.data_dir = dir.path().join("node1");
    assert!(config.client_addr.starts_with("[::1]:"), "{}", config.client_addr);
    let server = Server::start(config.clone(), Listeners { client, peer, metrics: None }).await.unwrap();
    ok(&config.client_addr, &["put", "v6", "yes"]);
    assert_eq!(ok(&config.client_addr, &["get", "v6", "--print-value-only"]).trim(), "yes");
    let members = ok(&config.client_addr, &["member", "list"]);
    assert!(members.contains(&format!("http://{}", config.peer_addr)), "{members}");
    server.shutdown_without_handover().await;
}
