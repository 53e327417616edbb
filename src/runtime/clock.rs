//! Time. Monotonic time drives timeouts and (later) lease expiry; wall time is
//! for display only. Under madsim, tokio's time is madsim's virtual time.

use std::future::Future;
use std::time::Duration;

pub use tokio::time::error::Elapsed;
pub use tokio::time::Instant;

/// Monotonic now.
pub fn now() -> Instant {
    Instant::now()
}

/// Waits for `duration` of (possibly virtual) time.
pub async fn sleep(duration: Duration) {
    #[cfg(not(madsim))]
    tokio::time::sleep(duration).await;
    #[cfg(madsim)]
    super::sim_time::sleep(duration).await;
}

/// Runs `future` for at most `duration`. A plain function, not an `async fn`:
/// an `async fn` would hold `future` in a state of its own, and every call
/// would copy the whole future once more (callers pass futures of several KiB).
pub fn timeout<F: Future>(duration: Duration, future: F) -> impl Future<Output = Result<F::Output, Elapsed>> {
    #[cfg(not(madsim))]
    return tokio::time::timeout(duration, future);
    #[cfg(madsim)]
    return super::sim_time::timeout(duration, future);
}

/// Milliseconds since the UNIX epoch, for display and logs only.
pub fn wall_clock_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
