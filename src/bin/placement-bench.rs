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
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Operation to run.
    #[arg(value_enum, default_value = "put")]
    op: Op,
}

async fn client_loop(endpoint: String, args: std::sync::Arc<Args>, requests: usize) -> anyhow::Result<Histogram<u64>> {
    use rand::Rng;
    let mut kv =
        KvClient::connect(format!("http://{endpoint}")).await.with_context(|| format!("connect {endpoint}"))?;
    let mut hist = Histogram::<u64>::new(3)?;
    let value = vec![b'v'; args.value_size];
    for _ in 0..requests {
        let key = format!("/bench/{:08}", runtime::rng().gen_range(0..args.key_space)).into_bytes();
        let start = runtime::now();
        match args.op {
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = std::sync::Arc::new(Args::parse());
    let endpoints: Vec<String> = args.endpoints.split(',').map(|s| s.trim().to_string()).collect();
    let per_client = args.requests / args.clients.max(1);
    let started = runtime::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel(args.clients.max(1));
    for i in 0..args.clients {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let tx = tx.clone();
        let args = args.clone();
        runtime::spawn_detached("bench-client", async move {
            let _ = tx.send(client_loop(endpoint, args, per_client).await).await;
        });
    }
    drop(tx);
    let mut total = Histogram::<u64>::new(3)?;
    while let Some(result) = rx.recv().await {
        total.add(result?)?;
    }
    let elapsed = started.elapsed();
    let ms = |us: u64| Duration::from_micros(us).as_secs_f64() * 1000.0;
    println!(
        "op={:?} clients={} requests={} elapsed={:.2}s throughput={:.0}/s latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        args.op,
        args.clients,
        total.len(),
        elapsed.as_secs_f64(),
        total.len() as f64 / elapsed.as_secs_f64(),
        ms(total.value_at_quantile(0.5)),
        ms(total.value_at_quantile(0.9)),
        ms(total.value_at_quantile(0.99)),
        ms(total.max()),
    );
    Ok(())
}
