//! The space quota and the NOSPACE alarm, as etcd's: past
//! `quota_backend_bytes`, writes that grow the store raise NOSPACE and are
//! refused on every member with `etcdserver: mvcc: database space exceeded`,
//! while reads, deletes, compaction and defragmentation go on; `etcdctl
//! alarm disarm` opens the store again once space was freed, and no
//! acknowledged write is lost.

use placement_center::proto::etcdserverpb::PutRequest;

use crate::cluster::Cluster;
use crate::etcdctl::{etcdctl, ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_quota_nospace_refuses_growing_writes_until_space_is_freed_and_it_is_disarmed() {
    let cluster = Cluster::start_with(3, |c| {
        c.quota_backend_bytes = 2 * 1024 * 1024;
        // The history's byte budget would be a quarter of the quota, and its
        // auto-compaction could take the revision this test compacts to.
        c.auto_compaction_retention_bytes = 1 << 30;
    })
    .await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let (ep, fep) = (cluster.client_addr(leader), cluster.client_addr(follower));

    // Fill it through a follower until refused.
    let mut kv = cluster.kv(follower).await;
    let mut acknowledged = 0;
    let refusal = loop {
        let put = PutRequest {
            key: format!("/big/{acknowledged:04}").into_bytes(),
            value: vec![b'x'; 128 * 1024],
            ..Default::default()
        };
        match kv.put(put).await {
            Ok(_) => acknowledged += 1,
            Err(status) => break status,
        }
        assert!(acknowledged < 200, "25 MiB written past a 2 MiB quota");
    };
    assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refusal.message(), "etcdserver: mvcc: database space exceeded");
    assert!(acknowledged > 0, "the quota refused the first write");

    // The alarm is replicated state: every member lists it and refuses puts.
    assert!(ok(&fep, &["alarm", "list"]).contains("alarm:NOSPACE"));
    let (put_ok, _, err) = etcdctl(&ep, &["put", "/small", "1"]);
    assert!(!put_ok && err.contains("etcdserver: mvcc: database space exceeded"), "{err}");
    assert!(ok(&ep, &["endpoint", "status"]).contains("alarm:NOSPACE"));
    // Reads, deletes, compaction and defragmentation still work.
    let listed = ok(&fep, &["get", "/big/", "--prefix", "--keys-only", "-w", "fields"]);
    assert!(listed.contains(&format!("\"Count\" : {acknowledged}\n")), "{acknowledged} written, listed: {listed}");
    let deleted = ok(&ep, &["del", "/big/", "--prefix"]);
    assert_eq!(deleted.trim(), acknowledged.to_string());
    let revision: String = ok(&ep, &["get", "x", "-w", "fields"])
        .lines()
        .find(|l| l.starts_with("\"Revision\""))
        .and_then(|l| l.split(':').nth(1))
        .unwrap()
        .trim()
        .to_string();
    ok(&ep, &["compact", &revision, "--physical"]);
    for i in 0..3 {
        ok(&cluster.client_addr(i), &["defrag"]);
    }
    // Disarmed, the store takes writes again.
    ok(&ep, &["alarm", "disarm"]);
    assert_eq!(ok(&fep, &["alarm", "list"]), "");
    assert_eq!(ok(&fep, &["put", "/small", "1"]), "OK\n");
    assert_eq!(ok(&ep, &["get", "/small", "--print-value-only"]), "1\n");
}

/// History is retained by bytes too: big values written over and over
/// leave at most the budget's worth of history on every member (the
/// leader compacts the oldest revisions), however few revisions that is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_past_its_byte_budget_is_compacted_oldest_first() {
    const BUDGET: u64 = 1024 * 1024;
    let cluster = Cluster::start_with(3, |c| {
        c.auto_compaction_retention_revisions = 0;
        c.auto_compaction_retention_bytes = BUDGET;
    })
    .await;
    let leader = cluster.wait_leader().await;
    let mut kv = cluster.kv(leader).await;
    // 40 updates of a 64 KiB value: each event holds the record and the one
    // it replaced, ~128 KiB, so ~5 MiB of history against a 1 MiB budget.
    let mut last = 0;
    for i in 0..40u8 {
        let put = PutRequest { key: b"/big".to_vec(), value: vec![i; 64 * 1024], ..Default::default() };
        last = kv.put(put).await.unwrap().into_inner().header.unwrap().revision;
    }
    let first = last - 39;
    let at = |revision: i64| placement_center::proto::etcdserverpb::RangeRequest {
        key: b"/big".to_vec(),
        revision,
        serializable: true,
        ..Default::default()
    };
    let mut compacted = false;
    for _ in 0..100 {
        if kv.range(at(first)).await.is_err() {
            compacted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(compacted, "5 MiB of history was still kept 10 s after writing it with a 1 MiB budget");
    // The newest revisions, within the budget, are kept on every member.
    for i in 0..3 {
        let mut member = cluster.kv(i).await;
        let mut read = None;
        for _ in 0..50 {
            read = member.range(at(last - 4)).await.ok();
            if read.is_some() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let kvs = read.expect("a recent revision was compacted").into_inner().kvs;
        assert_eq!(kvs[0].value, vec![35u8; 64 * 1024], "member {i}");
    }
}

/// A member whose copy of the keys was damaged (here by a hand in its data
/// dir) is found by the corruption check, comparing HashKV at one revision
/// with the other members: CORRUPT is raised naming it, and every write is
/// refused with `etcdserver: corrupt cluster` until it is disarmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_keys_differ_is_named_in_a_corrupt_alarm_that_stops_writes() {
    use placement_center::proto::mvccpb::KeyValue;
    use placement_center::raft::state_store::CF_KV;
    use placement_center::storage::WriteBatch;
    use prost::Message;

    let mut cluster = Cluster::start_with(3, |c| c.corrupt_check_interval_secs = 1).await;
    let leader = cluster.wait_leader().await;
    let follower = cluster.follower().await;
    let ep = cluster.client_addr(leader);
    assert_eq!(ok(&ep, &["put", "/a", "1"]), "OK\n");
    let fep = cluster.client_addr(follower);
    let deadline = placement_center::runtime::now() + std::time::Duration::from_secs(10);
    while ok(&fep, &["get", "/a", "--consistency=s", "--print-value-only"]) != "1\n" {
        assert!(placement_center::runtime::now() < deadline, "the follower never applied /a");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    cluster.stop(follower).await;
    {
        let db = cluster.configs[follower].data_dir.join("db");
        let engine = placement_center::raft::open_data(&db).unwrap();
        let mut record = KeyValue::decode(engine.get(CF_KV, b"/a").unwrap().unwrap().as_slice()).unwrap();
        record.value = b"2".to_vec();
        let mut batch = WriteBatch::new();
        batch.put(CF_KV, b"/a".to_vec(), record.encode_to_vec());
        engine.write(batch, true).unwrap();
    }
    cluster.restart(follower).await;
    let member_id = cluster.configs[follower].node_id;
    let deadline = placement_center::runtime::now() + std::time::Duration::from_secs(30);
    loop {
        let alarms = ok(&ep, &["alarm", "list"]);
        if alarms.contains("alarm:CORRUPT") {
            assert_eq!(alarms.trim_end(), format!("memberID:{member_id} alarm:CORRUPT"));
            break;
        }
        assert!(placement_center::runtime::now() < deadline, "no CORRUPT alarm 30 s after the damage: {alarms:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (put_ok, _, err) = etcdctl(&ep, &["put", "/b", "1"]);
    assert!(!put_ok && err.contains("etcdserver: corrupt cluster"), "{err}");
    // Reads are still served, the damaged member's too.
    assert_eq!(ok(&ep, &["get", "/a", "--print-value-only"]), "1\n");
}
