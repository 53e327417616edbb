//! The little of an async runtime the client needs: time and detached tasks.
//! tokio's in production; madsim's (the same API, virtual time) when the
//! simulator builds the client with `--cfg madsim`.

// The seam itself: the one place of the client that names tokio's clock and spawn.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

pub(crate) use tokio::time::Instant;

/// Monotonic now.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Waits for `duration` of (possibly virtual) time.
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Runs `future` for at most `duration`.
pub(crate) async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(duration, future).await
}

/// Spawns a background task of the client; it ends by itself (its receiver
/// or handle dropped), so nothing joins it.
pub(crate) fn spawn_detached<F>(name: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(tokio::spawn(future.instrument(tracing::debug_span!("task", name))));
}
