//! Load generator for the etcd KV API: runs against Placement Center or etcd
//! alike (same protocol), so both can be measured side by side.
//!
//! `placement-bench --endpoints 127.0.0.1:2379 --clients 1 --requests 2000 put`

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use placement_center::proto::etcdserverpb::kv_client::KvClient;
use placement_center::proto::etcdserverpb::{PutRequest, RangeRequest};
use placement_center::runtime;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Op {
    /// Put a value to a random key of the key space.
    Put,
    /// Linearizable get of a random key.
    Get,
    /// Serializable get of a random key.
    GetSerializable,
    /// `--watchers` watch one prefix while `--clients` put `--requests` keys
    /// under it: events delivered per second and delivery latency.
    WatchFanout,
    /// Registers `--nodes` brokers (placement API), then `--clients` send
    /// `--requests` heartbeats for them, round robin: heartbeats per second.
    Heartbeat,
}

/// Flags.
#[derive(Parser, Debug)]
#[command(name = "placement-bench", about = "Load generator for the etcd KV API")]
struct Args {
    /// Comma-separated client addresses; clients are spread over them.
    #[arg(long, env = "PLACEMENT_ENDPOINTS", default_value = "127.0.0.1:2379")]
    endpoints: String,
    /// Concurrent clients (one connection each).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Total requests over all clients.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1000)]
    key_space: u64,
    /// Write each key of 0..requests once (client c takes c, c+clients, ...)
    /// instead of random keys of the key space: loads a data set.
    #[arg(long)]
    sequential_keys: bool,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Watchers of the prefix (watch-fanout), spread over the endpoints.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Registered brokers (heartbeat).
    #[arg(long, default_value_t = 10_000)]
    nodes: u64,
    /// Operation to run.
    #[arg(value_enum, default_value = "put")]
    op: Op,
}

async fn client_loop(
    endpoint: String,
    args: std::sync::Arc<Args>,
    client: usize,
    requests: usize,
) -> anyhow::Result<Histogram<u64>> {
    use rand::Rng;
    let mut kv =
        KvClient::connect(format!("http://{endpoint}")).await.with_context(|| format!("connect {endpoint}"))?;
    let mut hist = Histogram::<u64>::new(3)?;
    let value = vec![b'v'; args.value_size];
    for n in 0..requests {
        let number = if args.sequential_keys {
            (client + n * args.clients.max(1)) as u64
        } else {
            runtime::rng().gen_range(0..args.key_space)
        };
        let key = format!("/bench/{number:08}").into_bytes();
        let start = runtime::now();
        match args.op {
            Op::WatchFanout | Op::Heartbeat => anyhow::bail!("{:?} has its own loop", args.op),
            Op::Put => {
                kv.put(PutRequest { key, value: value.clone(), ..Default::default() }).await?;
            }
            Op::Get | Op::GetSerializable => {
                let serializable = matches!(args.op, Op::GetSerializable);
                kv.range(RangeRequest { key, serializable, ..Default::default() }).await?;
            }
        }
        hist.record(start.elapsed().as_micros() as u64)?;
    }
    Ok(hist)
}

/// Watch fan-out: every watcher must see every put; the value carries the
/// time it was sent, so each delivery's latency is measured.
async fn watch_fanout(args: std::sync::Arc<Args>, endpoints: &[String]) -> anyhow::Result<()> {
    use placement_center::api::context::receiver_stream;
    use placement_center::proto::etcdserverpb::watch_client::WatchClient;
    use placement_center::proto::etcdserverpb::watch_request::RequestUnion;
    use placement_center::proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let started = runtime::now();
    let puts = (args.requests / args.clients.max(1)) * args.clients.max(1);
    let mut channels = Vec::new();
    for endpoint in endpoints {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))?.connect().await?;
        channels.push(channel);
    }
    let (done_tx, done_rx) = tokio::sync::mpsc::channel(args.watchers.max(1));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(args.watchers.max(1));
    for i in 0..args.watchers {
        let mut client = WatchClient::new(channels[i % channels.len()].clone());
        let (done_tx, ready_tx) = (done_tx.clone(), ready_tx.clone());
        runtime::spawn_detached("bench-watcher", async move {
            let result = async {
                let (tx, rx) = tokio::sync::mpsc::channel(1);
                let create = WatchCreateRequest {
                    key: b"/fanout/".to_vec(),
                    range_end: b"/fanout0".to_vec(),
                    ..Default::default()
                };
                tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await?;
                let mut stream = client.watch(receiver_stream(rx)).await?.into_inner();
                let created = stream.message().await?.context("watch stream closed")?;
                anyhow::ensure!(created.created, "first watch response is not `created`");
                ready_tx.send(()).await?;
                let mut hist = Histogram::<u64>::new(3)?;
                while (hist.len() as usize) < puts {
                    let resp = stream.message().await?.context("watch stream closed early")?;
                    let now = started.elapsed().as_micros() as u64;
                    for e in resp.events {
                        let sent: u64 = String::from_utf8_lossy(&e.kv.unwrap_or_default().value).parse().unwrap_or(now);
                        hist.record(now.saturating_sub(sent).max(1))?;
                    }
                }
                drop(tx);
                Ok::<_, anyhow::Error>(hist)
            }
            .await;
            let _ = done_tx.send(result).await;
        });
    }
    drop((done_tx, ready_tx));
    for _ in 0..args.watchers {
        ready_rx.recv().await.context("a watcher failed to start")?;
    }
    let writes_started = runtime::now();
    let (wtx, mut wrx) = tokio::sync::mpsc::channel(args.clients.max(1));
    for c in 0..args.clients.max(1) {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let wtx = wtx.clone();
        let per_client = puts / args.clients.max(1);
        runtime::spawn_detached("bench-writer", async move {
            let result = async {
                let mut kv = KvClient::connect(format!("http://{endpoint}")).await?;
                for n in 0..per_client {
                    let key = format!("/fanout/{c}/{n}").into_bytes();
                    let value = started.elapsed().as_micros().to_string().into_bytes();
                    kv.put(PutRequest { key, value, ..Default::default() }).await?;
                }
                Ok::<_, anyhow::Error>(())
            }
            .await;
            let _ = wtx.send(result).await;
        });
    }
    drop(wtx);
    while let Some(result) = wrx.recv().await {
        result?;
    }
    let total = merged(done_rx).await?;
    let elapsed = writes_started.elapsed();
    println!(
        "op=WatchFanout watchers={} puts={} events={} elapsed={:.2}s delivered={:.0} events/s {}",
        args.watchers,
        puts,
        total.len(),
        elapsed.as_secs_f64(),
        total.len() as f64 / elapsed.as_secs_f64(),
        latencies(&total),
    );
    Ok(())
}

/// Heartbeat throughput: every client registers its share of `--nodes`
/// brokers, then, once all are registered, heartbeats for them round robin.
async fn heartbeats(args: std::sync::Arc<Args>, endpoints: &[String]) -> anyhow::Result<()> {
    use placement_center::client::{Client, ClientOptions};
    use placement_center::proto::placement::v1::placement_client::PlacementClient;
    use placement_center::proto::placement::v1::{HeartbeatRequest, RegisterNodeRequest};

    let clients = args.clients.max(1);
    let per_client = args.requests / clients;
    let nodes_per_client = (args.nodes / clients as u64).max(1);
    let registered = std::sync::Arc::new(tokio::sync::Barrier::new(clients + 1));
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(clients + 1));
    let (tx, rx) = tokio::sync::mpsc::channel(clients);
    for c in 0..clients {
        let endpoint = endpoints[c % endpoints.len()].clone();
        let (registered, go, tx) = (registered.clone(), go.clone(), tx.clone());
        runtime::spawn_detached("bench-heartbeater", async move {
            let result = async {
                // Registration through the client library (retries, as a broker
                // would); heartbeats on one plain connection, measured.
                let client = Client::new(std::slice::from_ref(&endpoint), ClientOptions::default())?;
                let mut placement = PlacementClient::connect(format!("http://{endpoint}")).await?;
                let mut epochs = Vec::new();
                for n in 0..nodes_per_client {
                    let node_id = c as u64 * nodes_per_client + n + 1;
                    let req = RegisterNodeRequest {
                        cluster: "bench".into(),
                        node_id,
                        roles: vec!["mqtt".into()],
                        addresses: [("mqtt".to_string(), format!("10.0.0.1:{}", 1883 + n))].into(),
                        labels: Default::default(),
                    };
                    epochs.push((node_id, client.register(req).await?.node.epoch));
                }
                registered.wait().await;
                go.wait().await;
                let mut hist = Histogram::<u64>::new(3)?;
                for n in 0..per_client {
                    let (node_id, epoch) = epochs[n % epochs.len()];
                    let start = runtime::now();
                    placement.heartbeat(HeartbeatRequest { cluster: "bench".into(), node_id, epoch }).await?;
                    hist.record(start.elapsed().as_micros() as u64)?;
                }
                Ok::<_, anyhow::Error>(hist)
            }
            .await;
            if result.is_err() {
                // Do not leave the others waiting at a barrier.
                registered.wait().await;
                go.wait().await;
            }
            let _ = tx.send(result).await;
        });
    }
    drop(tx);
    let started = runtime::now();
    registered.wait().await;
    let registering = started.elapsed();
    let started = runtime::now();
    go.wait().await;
    let total = merged(rx).await?;
    let elapsed = started.elapsed();
    println!(
        "op=Heartbeat nodes={} registered_in={:.2}s ({:.0}/s) clients={} heartbeats={} elapsed={:.2}s throughput={:.0}/s {}",
        nodes_per_client * clients as u64,
        registering.as_secs_f64(),
        (nodes_per_client * clients as u64) as f64 / registering.as_secs_f64(),
        clients,
        total.len(),
        elapsed.as_secs_f64(),
        total.len() as f64 / elapsed.as_secs_f64(),
        latencies(&total),
    );
    Ok(())
}

/// Every task's histogram, merged (the first failure wins).
async fn merged(mut rx: tokio::sync::mpsc::Receiver<anyhow::Result<Histogram<u64>>>) -> anyhow::Result<Histogram<u64>> {
    let mut total = Histogram::<u64>::new(3)?;
    while let Some(result) = rx.recv().await {
        total.add(result?)?;
    }
    Ok(total)
}

/// Latency percentiles of a histogram of microseconds, in milliseconds.
fn latencies(h: &Histogram<u64>) -> String {
    let ms = |us: u64| Duration::from_micros(us).as_secs_f64() * 1000.0;
    format!(
        "latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = std::sync::Arc::new(Args::parse());
    let endpoints: Vec<String> = args.endpoints.split(',').map(|s| s.trim().to_string()).collect();
    match args.op {
        Op::WatchFanout => return watch_fanout(args.clone(), &endpoints).await,
        Op::Heartbeat => return heartbeats(args.clone(), &endpoints).await,
        _ => {}
    }
    let per_client = args.requests / args.clients.max(1);
    let started = runtime::now();
    let (tx, rx) = tokio::sync::mpsc::channel(args.clients.max(1));
    for i in 0..args.clients {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let tx = tx.clone();
        let args = args.clone();
        runtime::spawn_detached("bench-client", async move {
            let _ = tx.send(client_loop(endpoint, args, i, per_client).await).await;
        });
    }
    drop(tx);
    let total = merged(rx).await?;
    let elapsed = started.elapsed();
    println!(
        "op={:?} clients={} requests={} elapsed={:.2}s throughput={:.0}/s {}",
        args.op,
        args.clients,
        total.len(),
        elapsed.as_secs_f64(),
        total.len() as f64 / elapsed.as_secs_f64(),
        latencies(&total),
    );
    Ok(())
}
