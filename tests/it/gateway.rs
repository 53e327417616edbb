//! etcd's JSON gateway on the client port: etcd's documented curl examples,
//! answers compared with the gRPC API's for the same request, streams,
//! errors and auth tokens in the `Authorization` header.

use std::time::Duration;

use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::RangeRequest;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cluster::Cluster;

/// An HTTP/1.1 request to `addr`: (status, body). The connection closes
/// after the answer, so the body is what arrives before the close.
async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { unchunk(body) } else { body.to_string() })
}

/// The payload of a chunked HTTP/1.1 body.
fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out += &rest[..size];
        body = &rest[size + 2..];
    }
    out
}

/// POSTs `body` to `path`; (status, the answer as JSON).
async fn post(addr: &str, path: &str, body: Value) -> (u16, Value) {
    post_as(addr, path, &[], body).await
}

async fn post_as(addr: &str, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", path, headers, &body.to_string()).await;
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcds_curl_examples_answer_as_the_grpc_api_does() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let addr = cluster.client_addr(1);
    let addr = addr.as_str();

    // etcd's examples: put foo=bar, range it (base64 keys and values).
    let (status, put) = post(addr, "/v3/kv/put", json!({"key": "Zm9v", "value": "YmFy"})).await;
    assert_eq!(status, 200, "{put}");
    let revision = put["header"]["revision"].as_str().expect("int64 as a string").to_string();
    let (status, got) = post(addr, "/v3/kv/range", json!({"key": "Zm9v"})).await;
    assert_eq!(status, 200);
    assert_eq!(got["count"], "1");
    assert_eq!(got["kvs"][0]["key"], "Zm9v");
    assert_eq!(got["kvs"][0]["value"], "YmFy");
    assert_eq!(got["kvs"][0]["mod_revision"], revision.as_str());
    assert!(got["kvs"][0].get("lease").is_none(), "defaults are left out: {got}");

    // The same range over gRPC, at the same revision, says the same.
    let mut kv = KvClient::connect(format!("http://{addr}")).await.unwrap();
    let req = RangeRequest { key: b"foo".to_vec(), revision: revision.parse().unwrap(), ..Default::default() };
    let grpc = kv.range(req).await.unwrap().into_inner();
    let (_, at) = post(addr, "/v3/kv/range", json!({"key": "Zm9v", "revision": revision})).await;
    assert_eq!(at, serde_json::to_value(&grpc).unwrap());

    // etcd's txn example, in its camelCase spelling (both are accepted).
    let txn = json!({
        "compare": [{"target": "CREATE", "key": "Zm9v", "createRevision": revision}],
        "success": [{"requestPut": {"key": "Zm9v", "value": "YmFy"}}],
    });
    let (status, done) = post(addr, "/v3/kv/txn", txn).await;
    assert_eq!((status, &done["succeeded"]), (200, &json!(true)), "{done}");
    assert!(done["responses"][0]["response_put"].is_object(), "{done}");

    // A prefix range, sorted, from another member.
    for (k, v) in [("/gw/b", "2"), ("/gw/a", "1")] {
        post(addr, "/v3/kv/put", json!({"key": b64(k), "value": b64(v)})).await;
    }
    let other = cluster.client_addr(2);
    let (_, listed) = post(
        &other,
        "/v3/kv/range",
        json!({"key": b64("/gw/"), "range_end": b64("/gw0"), "sort_order": "ASCEND", "sort_target": "KEY"}),
    )
    .await;
    let keys: Vec<&str> = listed["kvs"].as_array().unwrap().iter().map(|kv| kv["key"].as_str().unwrap()).collect();
    assert_eq!(keys, [b64("/gw/a"), b64("/gw/b")]);
    let (_, deleted) = post(addr, "/v3/kv/deleterange", json!({"key": b64("/gw/"), "range_end": b64("/gw0")})).await;
    assert_eq!(deleted["deleted"], "2");

    // Leases: grant, attach, time to live with keys, revoke.
    let (_, lease) = post(addr, "/v3/lease/grant", json!({"TTL": 30})).await;
    let id = lease["ID"].as_str().unwrap().to_string();
    assert_eq!(lease["TTL"], "30");
    post(addr, "/v3/kv/put", json!({"key": b64("leased"), "value": b64("v"), "lease": id})).await;
    let (_, ttl) = post(addr, "/v3/lease/timetolive", json!({"ID": id, "keys": true})).await;
    assert_eq!((&ttl["grantedTTL"], &ttl["keys"]), (&json!("30"), &json!([b64("leased")])), "{ttl}");
    let (status, kept) = http(addr, "POST", "/v3/lease/keepalive", &[], &json!({"ID": id}).to_string()).await;
    let kept: Value = serde_json::from_str(kept.lines().next().unwrap()).unwrap();
    assert_eq!((status, &kept["result"]["TTL"]), (200, &json!("30")), "{kept}");
    let (status, _) = post(addr, "/v3/kv/lease/revoke", json!({"ID": id})).await;
    assert_eq!(status, 200);
    let (_, gone) = post(addr, "/v3/kv/range", json!({"key": b64("leased")})).await;
    assert!(gone.get("kvs").is_none(), "{gone}");

    // Cluster and maintenance.
    let (_, members) = post(addr, "/v3/cluster/member/list", json!({})).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert!(members["members"].as_array().unwrap().iter().all(|m| m["clientURLs"][0].is_string()), "{members}");
    let (_, status) = post(addr, "/v3/maintenance/status", json!({})).await;
    assert_eq!(status["version"], "3.5.0");
    assert_eq!(
        http(addr, "GET", "/version", &[], "").await,
        (200, r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#.into())
    );
    assert_eq!(http(addr, "GET", "/health", &[], "").await, (200, r#"{"health":"true"}"#.into()));

    // The placement API's twin.
    let (status, registered) =
        post(addr, "/v1/placement/nodes/register", json!({"cluster": "mq", "node_id": "7", "roles": ["mqtt"]})).await;
    assert_eq!(status, 200, "{registered}");
    let (_, nodes) = post(&other, "/v1/placement/nodes/list", json!({"cluster": "mq"})).await;
    assert_eq!(nodes["nodes"][0]["epoch"], registered["node"]["epoch"]);
}

/// Standard base64, as the gateway's bytes are.
fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_streams_result_lines_until_the_caller_hangs_up() {
    let cluster = Cluster::start(3).await;
    cluster.wait_leader().await;
    let addr = cluster.client_addr(0);
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    // A body that stops being JSON after the create request ends the
    // requests there (as grpc-gateway does), not the watch.
    let body = json!({"create_request": {"key": b64("w")}}).to_string() + "\n{not json";
    let head = format!("POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    // JSON lines among the chunk sizes of the chunked body.
    let mut next_result = async || loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await.unwrap().unwrap();
        assert!(read > 0, "the watch ended");
        if line.starts_with('{') {
            return serde_json::from_str::<Value>(&line).unwrap()["result"].clone();
        }
    };
    assert_eq!(next_result().await["created"], true);
    let writer = cluster.client_addr(2);
    post(&writer, "/v3/kv/put", json!({"key": b64("w"), "value": b64("1")})).await;
    post(&writer, "/v3/kv/deleterange", json!({"key": b64("w")})).await;
    let put = next_result().await;
    assert_eq!(put["events"][0]["kv"]["value"], b64("1"));
    assert!(put["events"][0].get("type").is_none(), "PUT is the default type: {put}");
    assert_eq!(next_result().await["events"][0]["type"], "DELETE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_grpc_gateways_shape_and_status() {
    let cluster = Cluster::start(1).await;
    cluster.wait_leader().await;
    let addr = cluster.client_addr(0);
    let addr = addr.as_str();

    let (status, err) = post(addr, "/v3/kv/range", json!({"key": b64("k"), "revision": "1000"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        err,
        json!({"error": "etcdserver: mvcc: required revision is a future revision", "code": 11,
               "message": "etcdserver: mvcc: required revision is a future revision"})
    );
    let (status, err) = post(addr, "/v3/kv/put", json!({"key": 5})).await;
    assert_eq!((status, &err["code"]), (400, &json!(3)), "{err}");
    let (status, err) = post(addr, "/v3/kv/put", json!({"value": b64("v")})).await;
    assert_eq!((status, &err["error"]), (400, &json!("etcdserver: key is not provided")), "{err}");
    let (status, err) = post(addr, "/v3/no/such/path", json!({})).await;
    assert_eq!((status, &err["code"]), (404, &json!(5)));
    let (status, _) = http(addr, "GET", "/v3/kv/range", &[], "").await;
    assert_eq!(status, 405);
    let (status, err) = post(addr, "/v3/kv/range", json!({"key": b64("k"), "limit": "x"})).await;
    assert_eq!((status, &err["code"]), (400, &json!(3)), "{err}");

    // Consumer offsets: JSON in, JSON out, and a stale generation is 400 FAILED_PRECONDITION.
    let commit = |generation: &str| {
        json!({"cluster": "mq", "group": "billing", "generation": generation,
               "offsets": [{"topic": "orders", "shard": 1, "offset": "42"}]})
    };
    let (status, done) = post(addr, "/v1/placement/offsets/commit", commit("2")).await;
    assert_eq!((status, &done["generation"]), (200, &json!("2")), "{done}");
    let (status, fetched) =
        post(addr, "/v1/placement/offsets/fetch", json!({"cluster": "mq", "group": "billing"})).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["offsets"], json!([{"topic": "orders", "shard": 1, "offset": "42"}]));
    let (status, err) = post(addr, "/v1/placement/offsets/commit", commit("1")).await;
    assert_eq!((status, &err["code"]), (400, &json!(9)), "{err}");

    // Topics: created, listed, and created again is 409 ALREADY_EXISTS.
    let topic = json!({"spec": {"cluster": "mq", "name": "orders", "shards": 2, "replicationFactor": 1}});
    let (status, created) = post(addr, "/v1/placement/topics/create", topic.clone()).await;
    assert_eq!((status, &created["topic"]["spec"]["shards"]), (200, &json!(2)), "{created}");
    let (status, listed) = post(addr, "/v1/placement/topics/list", json!({"cluster": "mq"})).await;
    assert_eq!((status, &listed["topics"][0]["spec"]["name"]), (200, &json!("orders")), "{listed}");
    let (status, err) = post(addr, "/v1/placement/topics/create", topic).await;
    assert_eq!((status, &err["code"]), (409, &json!(6)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tokens_travel_in_the_authorization_header() {
    let cluster = Cluster::start(1).await;
    cluster.wait_leader().await;
    let addr = cluster.client_addr(0);
    let addr = addr.as_str();
    // etcd's auth example, step by step.
    for (path, body) in [
        ("/v3/auth/user/add", json!({"name": "root", "password": "pass"})),
        ("/v3/auth/role/add", json!({"name": "root"})),
        ("/v3/auth/user/grant", json!({"user": "root", "role": "root"})),
        ("/v3/auth/enable", json!({})),
    ] {
        let (status, answer) = post(addr, path, body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (status, err) = post(addr, "/v3/kv/put", json!({"key": b64("k"), "value": b64("v")})).await;
    assert_eq!(status, 400, "no token: {err}");
    assert_eq!(err["error"], "etcdserver: user name is empty");
    let (_, authenticated) = post(addr, "/v3/auth/authenticate", json!({"name": "root", "password": "pass"})).await;
    let token = authenticated["token"].as_str().unwrap();
    let (status, put) =
        post_as(addr, "/v3/kv/put", &[("Authorization", token)], json!({"key": b64("k"), "value": b64("v")})).await;
    assert_eq!(status, 200, "{put}");
    let (status, err) = post_as(addr, "/v3/kv/put", &[("Authorization", "bogus")], json!({"key": b64("k")})).await;
    assert_eq!(status, 401, "{err}");
}
