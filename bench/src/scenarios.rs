//! The scenarios: each builds per-client requesters for the driver (or, for
//! watch delivery, measures on the watchers' side).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::rt::{self, receiver_stream};
use anyhow::Context;
use futures::FutureExt;
use hdrhistogram::Histogram;
use placement_client::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use placement_client::proto::etcdserverpb::kv_client::KvClient;
use placement_client::proto::etcdserverpb::lease_client::LeaseClient;
use placement_client::proto::etcdserverpb::request_op::Request;
use placement_client::proto::etcdserverpb::response_op::Response;
use placement_client::proto::etcdserverpb::watch_client::WatchClient;
use placement_client::proto::etcdserverpb::watch_request::RequestUnion;
use placement_client::proto::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use placement_client::proto::placement::v1::placement_client::PlacementClient;
use placement_client::proto::placement::v1::{
    CommitOffsetsRequest, HeartbeatRequest, RegisterNodeRequest, ShardOffset,
};
use placement_client::tonic;
use placement_client::tonic::transport::Channel;
use placement_client::{Client, ClientOptions};
use rand::Rng;

use crate::load::{drive, Measured, Requester};
use crate::report::Report;
use crate::{Args, Consistency, Scenario};

/// Runs the scenario `args` names.
pub async fn run(args: &Args, channels: &[Channel]) -> anyhow::Result<Report> {
    let load = args.load();
    let mut settings = args.settings();
    let (name, measured, unit, count) = match &args.scenario {
        Scenario::Put { sequential_keys } => {
            settings.insert("key_space", args.key_space.into());
            settings.insert("sequential_keys", (*sequential_keys).into());
            let measured = drive("put", &load, channels, |c, ch| put(args, *sequential_keys, c, ch)).await?;
            ("put", measured, "requests", None)
        }
        Scenario::Range { consistency, keys, limit } => {
            settings.insert("consistency", format!("{consistency:?}").to_lowercase().into());
            settings.insert("keys", (*keys).into());
            let measured =
                drive("range", &load, channels, |_, ch| range(args, *consistency, *keys, *limit, ch)).await?;
            ("range", measured, "requests", None)
        }
        Scenario::TxnPut => {
            // Keys of this run's own (a prefix drawn per run), so every
            // client knows their versions from the start: version 0.
            let run = format!("{:04x}/", rt::rng().gen_range(0..0x10000u32));
            let measured = drive("txn-put", &load, channels, |c, ch| txn_put(args, c, ch, &run)).await?;
            ("txn-put", measured, "requests", None)
        }
        Scenario::LeaseExpiry { ttl } => {
            settings.insert("ttl", (*ttl).into());
            let measured = drive("lease-grant", &load, channels, |c, ch| grant_with_key(*ttl, c, ch)).await?;
            let revoked = until_no_lease(channels, Duration::from_secs(*ttl as u64)).await?;
            settings.insert("revoked_after_ttl_s", revoked.as_secs_f64().into());
            eprintln!(
                "lease-expiry: the last lease was revoked {:.2} s after the last TTL ran out",
                revoked.as_secs_f64()
            );
            ("lease-grant", measured, "leases", None)
        }
        Scenario::LeaseKeepalive => {
            let measured = drive("lease-keepalive", &load, channels, |_, ch| keepalive(ch)).await?;
            ("lease-keepalive", measured, "keepalives", None)
        }
        Scenario::Heartbeat { nodes } => {
            settings.insert("nodes", (*nodes).into());
            let measured = heartbeats(args, &load, channels, *nodes).await?;
            ("heartbeat", measured, "heartbeats", None)
        }
        Scenario::OffsetCommit { groups, shards } => {
            settings.insert("groups", (*groups).into());
            settings.insert("shards", (*shards).into());
            let before = revision(&channels[0]).await?;
            let measured =
                drive("offset-commit", &load, channels, |c, ch| offset_commit(*groups, *shards, c, ch)).await?;
            let writes = revision(&channels[0]).await? - before;
            settings.insert("raft_writes", writes.into());
            let commits = measured.latency.len();
            eprintln!(
                "offset-commit: {commits} commits took {writes} writes ({:.1} commits a write)",
                commits as f64 / writes.max(1) as f64
            );
            ("offset-commit", measured, "commits", None)
        }
        Scenario::Failover { brokers, shards, replication, expiry, rounds } => {
            settings.insert("brokers", (*brokers).into());
            settings.insert("shards", (*shards).into());
            settings.insert("replication", (*replication).into());
            let endpoints: Vec<String> = args.endpoints.split(',').map(|e| e.trim().to_string()).collect();
            let found = crate::failover::run(&endpoints, *brokers, *shards, *replication, *expiry, *rounds).await?;
            settings.insert("placed_in_s", found.placed_in.as_secs_f64().into());
            ("failover", found.measured, "shards", Some(found.moved))
        }
        Scenario::WatchLatency { watchers } => {
            settings.insert("watchers", (*watchers).into());
            let (measured, events) = watch_latency(args, &load, channels, *watchers).await?;
            ("watch-latency", measured, "events", Some(events))
        }
    };
    Ok(Report { scenario: name.to_string(), settings, measured, unit, count })
}

fn put(args: &Args, sequential: bool, client: usize, channel: Channel) -> Requester {
    let kv = KvClient::new(channel);
    let value = vec![b'v'; args.val_size];
    let (clients, key_space) = (args.clients.max(1) as u64, args.key_space.max(1));
    let width = args.key_size;
    let mut mine = 0u64;
    Box::new(move |n| {
        // Sequential: each client takes every `clients`-th key, once.
        let number = if sequential {
            let number = client as u64 + mine * clients;
            mine += 1;
            number
        } else {
            let _ = n;
            rt::rng().gen_range(0..key_space)
        };
        let req = PutRequest { key: key(width, number), value: value.clone(), ..Default::default() };
        let mut kv = kv.clone();
        let req = crate::authed(req);
        async move { kv.put(req).await.map(drop) }.boxed()
    })
}

fn key(width: usize, n: u64) -> Vec<u8> {
    let width = width.max(1);
    let n = if width < 20 { n % 10u64.pow(width as u32) } else { n };
    format!("{n:0width$}").into_bytes()
}

fn range(args: &Args, consistency: Consistency, keys: u64, limit: i64, channel: Channel) -> Requester {
    let kv = KvClient::new(channel);
    let (width, key_space) = (args.key_size, args.key_space.max(1));
    Box::new(move |_| {
        let start = rt::rng().gen_range(0..key_space);
        let range_end = if keys > 1 { key(width, start + keys) } else { Vec::new() };
        let req = RangeRequest {
            key: key(width, start),
            range_end,
            limit,
            serializable: consistency == Consistency::S,
            ..Default::default()
        };
        let mut kv = kv.clone();
        let req = crate::authed(req);
        async move { kv.range(req).await.map(drop) }.boxed()
    })
}

/// Each client owns the keys `client + k * clients` (after the run's
/// prefix); it remembers each one's version, and a txn that finds another
/// re-learns it (counted as an Aborted "conflict").
fn txn_put(args: &Args, client: usize, channel: Channel, run: &str) -> Requester {
    let kv = KvClient::new(channel);
    let run = run.as_bytes().to_vec();
    let value = vec![b'v'; args.val_size];
    let clients = args.clients.max(1) as u64;
    let own = (args.key_space / clients).max(1);
    let width = args.key_size;
    let versions: Arc<std::sync::Mutex<BTreeMap<u64, i64>>> = Arc::default();
    Box::new(move |n| {
        let number = client as u64 + (n % own) * clients;
        let mut k = run.clone();
        k.extend(key(width, number));
        let known = *versions.lock().unwrap_or_else(|e| e.into_inner()).get(&number).unwrap_or(&0);
        let req = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Version as i32,
                key: k.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Version(known)),
            }],
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: k.clone(),
                    value: value.clone(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(Request::RequestRange(RangeRequest { key: k, ..Default::default() })),
            }],
        };
        let (mut kv, versions) = (kv.clone(), versions.clone());
        async move {
            let resp = kv.txn(req).await?.into_inner();
            let mut versions = versions.lock().unwrap_or_else(|e| e.into_inner());
            if resp.succeeded {
                versions.insert(number, known + 1);
                return Ok(());
            }
            let seen = resp.responses.first().and_then(|r| match &r.response {
                Some(Response::ResponseRange(range)) => Some(range.kvs.first().map_or(0, |kv| kv.version)),
                _ => None,
            });
            versions.insert(number, seen.unwrap_or(0));
            Err(tonic::Status::aborted("cas-conflict"))
        }
        .boxed()
    })
}

/// One lease per client, granted on its first request, kept alive over one
/// stream: each request is one keepalive and its answer.
/// Grants a lease of `ttl` seconds and puts a key with it.
fn grant_with_key(ttl: i64, client: usize, channel: Channel) -> Requester {
    let (lease, kv) = (LeaseClient::new(channel.clone()), KvClient::new(channel));
    Box::new(move |n| {
        let (mut lease, mut kv) = (lease.clone(), kv.clone());
        async move {
            let id = lease.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await?.into_inner().id;
            let key = format!("/lease-expiry/{client}/{n}").into_bytes();
            kv.put(PutRequest { key, value: b"x".to_vec(), lease: id, ..Default::default() }).await?;
            Ok(())
        }
        .boxed()
    })
}

/// Waits `ttl`, then until no lease is left; returns how long after `ttl`.
async fn until_no_lease(channels: &[Channel], ttl: Duration) -> anyhow::Result<Duration> {
    use placement_client::proto::etcdserverpb::LeaseLeasesRequest;
    let mut lease = LeaseClient::new(channels.first().context("no endpoint")?.clone());
    tokio::time::sleep(ttl).await;
    let start = rt::now();
    loop {
        let left = lease.lease_leases(LeaseLeasesRequest {}).await?.into_inner().leases.len();
        if left == 0 {
            return Ok(rt::now() - start);
        }
        anyhow::ensure!(rt::now() - start < Duration::from_secs(300), "{left} leases left 300 s after their TTL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn keepalive(channel: Channel) -> Requester {
    type Stream = (
        tokio::sync::mpsc::Sender<LeaseKeepAliveRequest>,
        tonic::Streaming<placement_client::proto::etcdserverpb::LeaseKeepAliveResponse>,
        i64,
    );
    let lease = LeaseClient::new(channel);
    let stream: Arc<tokio::sync::Mutex<Option<Stream>>> = Arc::default();
    Box::new(move |_| {
        let (mut lease, stream) = (lease.clone(), stream.clone());
        async move {
            let mut stream = stream.lock().await;
            let Some((tx, responses, id)) = stream.as_mut() else {
                // The first keepalive goes in before the call: a gRPC server
                // may answer the call only with its first response.
                let granted = lease.lease_grant(LeaseGrantRequest { ttl: 60, id: 0 }).await?.into_inner();
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let _ = tx.send(LeaseKeepAliveRequest { id: granted.id }).await;
                let mut responses = lease.lease_keep_alive(receiver_stream(rx)).await?.into_inner();
                let answer = kept_alive(responses.message().await?);
                *stream = Some((tx, responses, granted.id));
                return answer;
            };
            tx.send(LeaseKeepAliveRequest { id: *id })
                .await
                .map_err(|_| tonic::Status::unavailable("stream closed"))?;
            kept_alive(responses.message().await?)
        }
        .boxed()
    })
}

fn kept_alive(
    resp: Option<placement_client::proto::etcdserverpb::LeaseKeepAliveResponse>,
) -> Result<(), tonic::Status> {
    match resp {
        Some(resp) if resp.ttl > 0 => Ok(()),
        Some(_) => Err(tonic::Status::not_found("lease expired")),
        None => Err(tonic::Status::unavailable("keepalive stream ended")),
    }
}

/// Commits of client `client`: group `client % groups` (and the next ones,
/// `groups` apart, when there are fewer clients), every shard, offset `n`.
fn offset_commit(groups: u64, shards: u32, client: usize, channel: Channel) -> Requester {
    let placement = PlacementClient::new(channel);
    Box::new(move |n| {
        let group = (client as u64 + n * 7919) % groups.max(1);
        let offsets = (0..shards)
            .map(|shard| ShardOffset { topic: "orders".into(), shard, offset: n as i64, metadata: String::new() })
            .collect();
        let req = CommitOffsetsRequest { cluster: "bench".into(), group: format!("g{group}"), generation: 0, offsets };
        let mut placement = placement.clone();
        let req = crate::authed(req);
        async move { placement.commit_offsets(req).await.map(drop) }.boxed()
    })
}

/// The store's revision now (a linearizable read).
async fn revision(channel: &Channel) -> anyhow::Result<i64> {
    let req = RangeRequest { key: b"\0".to_vec(), count_only: true, ..Default::default() };
    let resp = KvClient::new(channel.clone()).range(crate::authed(req)).await?.into_inner();
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// Registers `nodes` brokers (through the client library, spread over the
/// clients), then drives heartbeats for them, round robin.
async fn heartbeats(
    args: &Args,
    load: &crate::load::Load,
    channels: &[Channel],
    nodes: u64,
) -> anyhow::Result<Measured> {
    let clients = load.clients as u64;
    let per_client = (nodes / clients).max(1);
    let endpoints: Vec<String> = args.endpoints.split(',').map(|e| e.trim().to_string()).collect();
    let started = rt::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(load.clients);
    for c in 0..clients {
        let endpoint = endpoints[c as usize % endpoints.len()].clone();
        let tx = tx.clone();
        rt::spawn_detached("bench-register", async move {
            let result = async {
                let client = Client::new(std::slice::from_ref(&endpoint), ClientOptions::default())?;
                let mut epochs = Vec::new();
                for n in 0..per_client {
                    let node_id = c * per_client + n + 1;
                    let req = RegisterNodeRequest {
                        cluster: "bench".into(),
                        node_id,
                        roles: vec!["mqtt".into()],
                        addresses: [("mqtt".to_string(), format!("10.0.0.1:{}", 1883 + n))].into(),
                        labels: Default::default(),
                    };
                    epochs.push((node_id, client.register(req).await?.node.epoch));
                }
                Ok::<_, anyhow::Error>((c, epochs))
            }
            .await;
            let _ = tx.send(result).await;
        });
    }
    drop(tx);
    let mut registered: BTreeMap<u64, Vec<(u64, i64)>> = BTreeMap::new();
    while let Some(result) = rx.recv().await {
        let (c, epochs) = result?;
        registered.insert(c, epochs);
    }
    if !args.json {
        let took = started.elapsed().as_secs_f64();
        eprintln!("registered {} brokers in {took:.2}s", per_client * clients);
    }
    drive("heartbeat", load, channels, |c, ch| {
        let placement = PlacementClient::new(ch);
        let mine = registered.remove(&(c as u64)).unwrap_or_default();
        Box::new(move |n| {
            let (node_id, epoch) = mine[n as usize % mine.len().max(1)];
            let mut placement = placement.clone();
            let req = HeartbeatRequest { cluster: "bench".into(), node_id, epoch };
            async move { placement.heartbeat(req).await.map(drop) }.boxed()
        })
    })
    .await
}

/// Watchers of one prefix; writers (the driven clients) put values carrying
/// the microsecond they were sent; each delivery's latency is measured.
/// Returns the watchers' latency and the events they received.
async fn watch_latency(
    args: &Args,
    load: &crate::load::Load,
    channels: &[Channel],
    watchers: usize,
) -> anyhow::Result<(Measured, u64)> {
    let epoch = rt::now();
    let prefix = b"/watch-latency/".to_vec();
    let mut end = prefix.clone();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers.max(1));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(watchers.max(1));
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for w in 0..watchers {
        let mut client = WatchClient::new(channels[w % channels.len()].clone());
        let (ready_tx, done_tx, mut stopped) = (ready_tx.clone(), done_tx.clone(), stopped.clone());
        let delivered = delivered.clone();
        let create = WatchCreateRequest { key: prefix.clone(), range_end: end.clone(), ..Default::default() };
        rt::spawn_detached("bench-watcher", async move {
            let result = async {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await?;
                let mut stream = client.watch(receiver_stream(rx)).await?.into_inner();
                let created = stream.message().await?.context("watch stream closed")?;
                anyhow::ensure!(created.created, "first watch response is not `created`");
                ready_tx.send(()).await?;
                let mut hist = Histogram::<u64>::new(3)?;
                loop {
                    let resp = tokio::select! {
                        _ = stopped.changed() => break,
                        resp = stream.message() => resp?.context("watch stream closed early")?,
                    };
                    let now = epoch.elapsed().as_micros() as u64;
                    for e in resp.events {
                        let sent: u64 = String::from_utf8_lossy(&e.kv.unwrap_or_default().value).parse().unwrap_or(now);
                        hist.record(now.saturating_sub(sent).max(1))?;
                        delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                drop(tx);
                Ok::<_, anyhow::Error>(hist)
            }
            .await;
            let _ = done_tx.send(result).await;
        });
    }
    drop((ready_tx, done_tx));
    for _ in 0..watchers {
        ready_rx.recv().await.context("a watcher failed to start")?;
    }
    let width = args.key_size;
    let writes = drive("watch-latency", load, channels, |c, ch| {
        let kv = KvClient::new(ch);
        let mut prefix = prefix.clone();
        prefix.extend_from_slice(format!("{c}/").as_bytes());
        Box::new(move |n| {
            let mut k = prefix.clone();
            k.extend(key(width, n));
            let value = epoch.elapsed().as_micros().to_string().into_bytes();
            let mut kv = kv.clone();
            async move { kv.put(PutRequest { key: k, value, ..Default::default() }).await.map(drop) }.boxed()
        })
    })
    .await?;
    let expected = writes.latency.len() * watchers as u64;
    // Let the last deliveries arrive (10 s at most).
    let deadline = rt::now() + Duration::from_secs(10);
    while delivered.load(std::sync::atomic::Ordering::Relaxed) < expected && rt::now() < deadline {
        rt::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let (mut received, mut latency) = (0, Histogram::<u64>::new(3)?);
    while let Some(result) = done_rx.recv().await {
        let hist = result?;
        received += hist.len();
        latency.add(hist)?;
    }
    if received < expected {
        eprintln!("warning: watchers received {received} of {expected} events");
    }
    let elapsed = writes.elapsed;
    Ok((Measured { latency, errors: writes.errors, elapsed }, received))
}
