//! Process signals: SIGINT or SIGTERM ask the server to stop. Under madsim the
//! simulator's ctrl-c stands in for both.

/// Completes when the process is asked to stop. The handlers are installed
/// when this is called, not when the future is first polled: a signal that
/// comes in between (say, right after a command printed what a script waits
/// for) is not lost, and does not kill the process the default way.
#[cfg(not(madsim))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => {
                tokio::select! {
                    biased;
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            }
            (Ok(mut interrupt), Err(e)) => {
                tracing::warn!(cause = %e, "cannot listen for SIGTERM; SIGINT still works");
                interrupt.recv().await;
            }
            (Err(e), _) => {
                tracing::warn!(cause = %e, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Completes when the simulated node gets ctrl-c.
#[cfg(madsim)]
pub async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
