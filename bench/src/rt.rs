//! Time, tasks and randomness for the load generator. It measures real
//! processes in real time and never runs in the simulator, so it uses tokio's
//! clock and spawn and the thread's generator directly: the one place that
//! names them (the workspace's clippy.toml steers the rest to seams).
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::time::Duration;

pub use tokio::time::Instant;

/// Monotonic now.
pub fn now() -> Instant {
    Instant::now()
}

/// `future`'s output, or Elapsed after `duration`.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(duration, future).await
}

/// Waits for `duration`.
pub async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Spawns a task nothing joins (it reports through channels or counters).
pub fn spawn_detached<F>(_name: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(tokio::spawn(future));
}

/// A random number generator for keys and run ids.
pub fn rng() -> impl rand::Rng {
    rand::thread_rng()
}

/// The items of `rx` as a stream (a request stream for gRPC).
pub fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}
