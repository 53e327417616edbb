//! The client's seam: the little of an async runtime it needs (time,
//! detached tasks, the stop signals a broker's or a tool's main loop waits
//! for) and its gRPC endpoints. The one file of the crate that knows two
//! flavours: tokio's in production; madsim's (the same API, virtual time, no
//! TLS) when the simulator builds the client with `--cfg madsim`.

// The seam itself: the one place of the client that names tokio's clock and spawn.
#![allow(clippy::disallowed_methods)]

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;

#[cfg(not(madsim))]
use crate::tls::error_chain;
use crate::tls::{TlsError, TlsSettings};

pub(crate) use tokio::time::Instant;

/// Monotonic now.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Waits for `duration` of (possibly virtual) time.
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// Runs `future` for at most `duration`. A plain function, not an `async fn`,
/// so the (large) call future is not copied into a wrapper state first.
pub(crate) fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> impl Future<Output = Result<F::Output, tokio::time::error::Elapsed>> {
    tokio::time::timeout(duration, future)
}

/// Spawns a background task of the client; it ends by itself (its receiver
/// or handle dropped), so nothing joins it.
pub(crate) fn spawn_detached<F>(name: &'static str, future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(tokio::spawn(future.instrument(tracing::debug_span!("task", name))));
}

/// Completes when the process is asked to stop (SIGINT or SIGTERM; under
/// madsim, the simulator's ctrl-c stands in for both). The handlers are installed
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

/// A client endpoint for `addr` (`host:port`): `http://`, or `https://` that
/// verifies the server against `tls`'s CA and presents `tls`'s identity.
#[cfg(not(madsim))]
pub fn endpoint(addr: &str, tls: Option<&TlsSettings>) -> Result<tonic::transport::Endpoint, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let bad = |e: tonic::transport::Error| TlsError::Config(format!("address {addr}: {}", error_chain(&e)));
    let Some(tls) = tls else { return Endpoint::from_shared(format!("http://{addr}")).map_err(bad) };
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = &tls.ca {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    Endpoint::from_shared(format!("https://{addr}")).map_err(bad)?.tls_config(config).map_err(bad)
}

/// See the production definition: the simulation has no TLS.
#[cfg(madsim)]
pub fn endpoint(addr: &str, tls: Option<&TlsSettings>) -> Result<tonic::transport::Endpoint, TlsError> {
    if tls.is_some() {
        return Err(TlsError::Config("the simulation does not model TLS".into()));
    }
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| TlsError::Config(format!("address {addr}: {e}")))
}
