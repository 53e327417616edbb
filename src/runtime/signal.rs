//! Process signals: SIGINT or SIGTERM ask the server to stop. Under madsim the
//! simulator's ctrl-c stands in for both.

/// Completes when the process is asked to stop.
#[cfg(not(madsim))]
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(cause = %e, "cannot listen for SIGTERM; SIGINT still works");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        biased;
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Completes when the simulated node gets ctrl-c.
#[cfg(madsim)]
pub async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
