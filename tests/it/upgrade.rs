//! Data dirs written by earlier releases open in this one. Each fixture was
//! made by `tests/fixtures/make-datadir.sh` with the release that wrote its
//! format version; a change of the on-disk format that cannot read one is a
//! deliberate change: bump `FORMAT_VERSION`, give it an upgrade path, and add
//! the new version's fixture.

use placement_center::proto::etcdserverpb::lease_client::LeaseClient;
use placement_center::proto::etcdserverpb::{LeaseTimeToLiveRequest, RangeRequest};
use placement_center::runtime::Listener;
use placement_center::server::{Listeners, Server};

use crate::cluster::{get, put, test_config};

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_written_by_the_previous_release_opens_and_serves_its_keys() {
    opens_and_serves_its_keys(2).await;
}

/// Version 1 stored values without checksums: the first open adds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_data_dir_gets_checksums_and_serves_its_keys() {
    opens_and_serves_its_keys(1).await;
}

async fn opens_and_serves_its_keys(version: u32) {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let lease = std::fs::read_to_string(fixtures.join(format!("datadir-v{version}.txt"))).unwrap();
    let lease = i64::from_str_radix(lease.trim().trim_start_matches("lease "), 16).unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join(format!("datadir-v{version}")), &dir.path().join("data"));

    let client = Listener::bind("127.0.0.1:0").await.unwrap();
    let peer = Listener::bind("127.0.0.1:0").await.unwrap();
    let mut config = test_config(1);
    config.initial_cluster_token = "fixture-token".into();
    config.client_addr = client.local_addr().unwrap().to_string();
    config.peer_addr = peer.local_addr().unwrap().to_string();
    config.data_dir = dir.path().join("data");
    let server = Server::start(config.clone(), Listeners { client, peer, metrics: None }).await.unwrap();
    let mut kv =
        placement_center::proto::etcdserverpb::kv_client::KvClient::connect(format!("http://{}", config.client_addr))
            .await
            .unwrap();

    // What the fixture's writes left: the second version of a, b deleted,
    // the leased key, history from the compaction (revision 3) on.
    assert_eq!(get(&mut kv, "/fixture/a", false).await.unwrap().as_deref(), Some("alpha-2"));
    assert_eq!(get(&mut kv, "/fixture/b", false).await.unwrap(), None);
    assert_eq!(get(&mut kv, "/fixture/leased", false).await.unwrap().as_deref(), Some("held"));
    let at = |revision| RangeRequest { key: b"/fixture/b".to_vec(), revision, ..Default::default() };
    let old = kv.range(at(4)).await.unwrap().into_inner();
    assert_eq!(old.kvs.first().map(|kv| kv.value.as_slice()), Some(&b"beta"[..]), "b as of revision 4");
    let compacted = kv.range(at(2)).await.unwrap_err();
    assert!(compacted.message().contains("compacted"), "{compacted:?}");
    assert_eq!(old.header.unwrap().revision, 6);

    // The lease still holds its key, and the store takes new writes.
    let mut leases = LeaseClient::connect(format!("http://{}", config.client_addr)).await.unwrap();
    let ttl = leases.lease_time_to_live(LeaseTimeToLiveRequest { id: lease, keys: true }).await.unwrap().into_inner();
    assert_eq!(ttl.keys, vec![b"/fixture/leased".to_vec()]);
    assert_eq!(put(&mut kv, "/fixture/new", "v").await, 7);
    let auth = placement_center::raft::state_store::read_state(server.node.state()).auth_record();
    assert!(auth.is_some_and(|a| a.users.iter().any(|u| u.name == "root")), "the auth store's user");
    server.shutdown_without_handover().await;
}
