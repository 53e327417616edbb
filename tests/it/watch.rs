//! The Watch service through the generated gRPC client: several watchers on
//! one stream, filters, txn atomicity, cancel, progress, a slow reader.

use std::time::Duration;

use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::request_op::Request as Op;
use placement_center::proto::etcdserverpb::watch_client::WatchClient;
use placement_center::proto::etcdserverpb::watch_create_request::FilterType;
use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
use placement_center::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use placement_center::proto::mvccpb::event::EventType;
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::cluster::{put, Cluster};

struct Stream {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(cluster: &Cluster, node: usize) -> Stream {
        let mut client = WatchClient::connect(format!("http://{}", cluster.client_addr(node))).await.unwrap();
        let (requests, rx) = mpsc::channel(16);
        let responses = client.watch(placement_center::api::context::receiver_stream(rx)).await.unwrap().into_inner();
        Stream { requests, responses }
    }

    async fn send(&self, request: RequestUnion) {
        self.requests.send(WatchRequest { request_union: Some(request) }).await.unwrap();
    }

    async fn create(&self, create: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(create)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(15), self.responses.message())
            .await
            .expect("a watch response within 15 s")
            .unwrap()
            .expect("the stream stays open")
    }
}

fn prefix(p: &str) -> (Vec<u8>, Vec<u8>) {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    (p.as_bytes().to_vec(), end)
}

fn keys(resp: &WatchResponse) -> Vec<(i32, String)> {
    resp.events.iter().map(|e| (e.r#type, String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_one_stream_get_their_events_with_filters_txns_whole_cancel_and_progress() {
    let cluster = Cluster::start(3).await;
    let follower = cluster.follower().await;
    let mut kv = cluster.kv(cluster.wait_leader().await).await;
    let mut s = Stream::open(&cluster, follower).await;
    let (key, range_end) = prefix("/a/");

    s.create(WatchCreateRequest { key: key.clone(), range_end: range_end.clone(), ..Default::default() }).await;
    let created = s.next().await;
    assert!(created.created && !created.canceled);
    assert_eq!(created.watch_id, 0, "ids are handed out from 0, as etcd does");
    let nodelete = FilterType::Nodelete as i32;
    s.create(WatchCreateRequest { key, range_end, filters: vec![nodelete], watch_id: 8, ..Default::default() }).await;
    assert_eq!((s.next().await.watch_id, true), (8, true));
    // A second watcher with id 8 on this stream is refused.
    s.create(WatchCreateRequest { key: b"/a/x".to_vec(), watch_id: 8, ..Default::default() }).await;
    let dup = s.next().await;
    assert!(dup.created && dup.canceled, "{dup:?}");
    assert_eq!(dup.cancel_reason, "mvcc: duplicate watch ID provided on the WatchStream");

    // Two puts in one txn: one revision, one response per watcher with both events.
    let put_op = |k: &str| RequestOp {
        request: Some(Op::RequestPut(PutRequest { key: k.into(), value: b"v".to_vec(), ..Default::default() })),
    };
    let txn = TxnRequest { success: vec![put_op("/a/x"), put_op("/a/y")], ..Default::default() };
    let revision = kv.txn(txn).await.unwrap().into_inner().header.unwrap().revision;
    let put_type = EventType::Put as i32;
    for _ in 0..2 {
        let resp = s.next().await;
        assert_eq!(keys(&resp), [(put_type, "/a/x".to_string()), (put_type, "/a/y".to_string())], "{resp:?}");
        assert!(resp.events.iter().all(|e| e.kv.as_ref().unwrap().mod_revision == revision));
    }
    kv.delete_range(DeleteRangeRequest { key: b"/a/x".to_vec(), ..Default::default() }).await.unwrap();
    let deleted = s.next().await;
    assert_eq!((deleted.watch_id, keys(&deleted)), (0, vec![(EventType::Delete as i32, "/a/x".to_string())]));

    s.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 0 })).await;
    let canceled = s.next().await;
    assert_eq!((canceled.watch_id, canceled.canceled), (0, true));
    let last = put(&mut kv, "/a/z", "z").await;
    // Only watcher 8 is left, and it sees puts.
    let resp = s.next().await;
    assert_eq!((resp.watch_id, keys(&resp)), (8, vec![(put_type, "/a/z".to_string())]));

    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {})).await;
    let progress = s.next().await;
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty());
    assert!(progress.header.unwrap().revision >= last);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_reads_slowly_misses_nothing_and_does_not_slow_writes() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.wait_leader().await;
    let mut kv = cluster.kv(leader).await;
    let mut s = Stream::open(&cluster, cluster.follower().await).await;
    let (key, range_end) = prefix("/load/");
    s.create(WatchCreateRequest { key, range_end, prev_kv: true, ..Default::default() }).await;
    assert!(s.next().await.created);

    // Far more responses than the stream buffers, written while nobody reads.
    let first = put(&mut kv, "/load/k", "0").await;
    for i in 1..300 {
        put(&mut kv, "/load/k", &i.to_string()).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 300 {
        let resp = s.next().await;
        for e in resp.events {
            let kv = e.kv.unwrap();
            let prev = e.prev_kv.map(|p| String::from_utf8_lossy(&p.value).into_owned());
            seen.push((kv.mod_revision, String::from_utf8_lossy(&kv.value).into_owned(), prev));
        }
    }
    for (i, (revision, value, prev)) in seen.iter().enumerate() {
        assert_eq!(*revision, first + i as i64, "in order, no gap, no duplicate");
        assert_eq!(*value, i.to_string());
        assert_eq!(*prev, (i > 0).then(|| (i - 1).to_string()));
    }
    cluster.shutdown().await;
}

/// etcd keeps a watch stream going after the client closed its sending side
/// (grpc-gateway does so after a `curl -d` body): the events still come.
/// Before, the stream ended with the client's half-close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_goes_on_after_the_client_closes_its_sending_side() {
    let cluster = Cluster::start(1).await;
    cluster.wait_leader().await;
    let mut stream = Stream::open(&cluster, 0).await;
    stream.create(WatchCreateRequest { key: b"half".to_vec(), ..Default::default() }).await;
    assert!(stream.next().await.created);
    drop(stream.requests);
    let mut kv = KvClient::connect(format!("http://{}", cluster.client_addr(0))).await.unwrap();
    put(&mut kv, "half", "1").await;
    let mut responses = stream.responses;
    let event = tokio::time::timeout(Duration::from_secs(15), responses.message())
        .await
        .expect("an event within 15 s")
        .unwrap()
        .expect("the stream stays open after the half-close");
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"1");
}
