//! The load driver: clients sharing connections, a total or a duration, an
//! optional rate, one latency histogram, errors by kind, a progress line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rt::{self, Instant};
use futures::future::BoxFuture;
use hdrhistogram::Histogram;
use placement_client::tonic;
use placement_client::tonic::transport::Channel;

/// How much load, how fast.
#[derive(Debug, Clone)]
pub struct Load {
    /// Concurrent clients (each one request at a time).
    pub clients: usize,
    /// Requests in all; with `duration`, whichever comes first.
    pub total: Option<u64>,
    /// How long to run.
    pub duration: Option<Duration>,
    /// Requests per second over all clients (open loop: latency counts from
    /// when a request was due, so falling behind shows).
    pub rate: Option<f64>,
}

/// What a run measured.
pub struct Measured {
    /// Latency of the successful requests, in microseconds.
    pub latency: Histogram<u64>,
    /// Failed requests by gRPC code (or "timeout").
    pub errors: BTreeMap<String, u64>,
    /// Wall time from the first request to the last answer.
    pub elapsed: Duration,
}

/// One client's request maker: request number `n` as a future.
pub type Requester = Box<dyn FnMut(u64) -> BoxFuture<'static, Result<(), tonic::Status>> + Send>;

/// Runs `load`: client `c` uses `channels[c % channels.len()]` through the
/// requester `make(c, channel)` returns. `label` names the progress line.
pub async fn drive(
    label: &str,
    load: &Load,
    channels: &[Channel],
    mut make: impl FnMut(usize, Channel) -> Requester,
) -> anyhow::Result<Measured> {
    anyhow::ensure!(load.total.is_some() || load.duration.is_some(), "give --total or --duration");
    anyhow::ensure!(!channels.is_empty(), "no endpoint");
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let started = rt::now();
    let deadline = load.duration.map(|d| started + d);
    let (tx, mut rx) = tokio::sync::mpsc::channel(load.clients.max(1));
    for c in 0..load.clients.max(1) {
        let mut request = make(c, channels[c % channels.len()].clone());
        let (next, done, errors, tx) = (next.clone(), done.clone(), errors.clone(), tx.clone());
        let (total, rate) = (load.total, load.rate);
        rt::spawn_detached("bench-client", async move {
            let result = async {
                let mut hist = Histogram::<u64>::new(3)?;
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if total.is_some_and(|t| n >= t) || deadline.is_some_and(|d| rt::now() >= d) {
                        return Ok::<_, anyhow::Error>(hist);
                    }
                    let due = match rate {
                        Some(rate) => {
                            let due = started + Duration::from_secs_f64(n as f64 / rate);
                            rt::sleep(due.saturating_duration_since(rt::now())).await;
                            due
                        }
                        None => rt::now(),
                    };
                    match request(n).await {
                        Ok(()) => hist.record((due.elapsed().as_micros() as u64).max(1))?,
                        Err(status) => {
                            let kind = format!("{:?}", status.code());
                            *errors.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            .await;
            let _ = tx.send(result).await;
        });
    }
    drop(tx);
    let progress = progress(label.to_string(), done.clone(), load.total, started);
    let mut latency = Histogram::<u64>::new(3)?;
    let mut first_error = None;
    while let Some(result) = rx.recv().await {
        match result {
            Ok(hist) => latency.add(hist)?,
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[K");
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Measured { latency, errors, elapsed })
}

/// On a terminal, a progress line on stderr every half second.
fn progress(label: String, done: Arc<AtomicU64>, total: Option<u64>, started: Instant) -> Progress {
    let (stop, mut stopped) = tokio::sync::watch::channel(());
    if std::io::stderr().is_terminal() {
        rt::spawn_detached("bench-progress", async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = rt::sleep(Duration::from_millis(500)) => {}
                }
                let n = done.load(Ordering::Relaxed);
                let rate = n as f64 / started.elapsed().as_secs_f64().max(0.001);
                let of = total.map_or(String::new(), |t| format!("/{t}"));
                eprint!("\r\x1b[K{label}: {n}{of} requests, {rate:.0}/s");
            }
        });
    }
    Progress { _stop: stop }
}

/// Stops the progress line when aborted or dropped.
struct Progress {
    _stop: tokio::sync::watch::Sender<()>,
}

impl Progress {
    fn abort(self) {}
}
