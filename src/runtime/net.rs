//! Listening sockets and serving gRPC. Production binds real TCP listeners
//! (so tests can bind port 0 and learn the port before starting a node); the
//! simulated tonic serves on an address of the simulated network.

use std::future::Future;
use std::net::SocketAddr;

use tonic::transport::server::Router;

/// A bound listening address.
#[cfg(not(madsim))]
pub struct Listener(tokio::net::TcpListener);

/// A bound listening address.
#[cfg(madsim)]
pub struct Listener(SocketAddr);

#[cfg(not(madsim))]
impl Listener {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str) -> std::io::Result<Self> {
        Ok(Self(tokio::net::TcpListener::bind(addr).await?))
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

#[cfg(madsim)]
impl Listener {
    /// Records `addr`; the simulated server binds it when serving.
    pub async fn bind(addr: &str) -> std::io::Result<Self> {
        addr.parse().map(Self).map_err(std::io::Error::other)
    }

    /// The address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.0)
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
#[cfg(not(madsim))]
pub async fn serve(
    router: Router,
    listener: Listener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    use futures::StreamExt;
    // tonic sets TCP_NODELAY only on sockets it accepts itself; without it
    // small responses wait for the peer's delayed ACK (~40 ms per request).
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener.0).map(|stream| {
        if let Ok(stream) = &stream {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(cause = %e, "cannot set TCP_NODELAY");
            }
        }
        stream
    });
    router.serve_with_incoming_shutdown(incoming, shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes.
#[cfg(madsim)]
pub async fn serve(
    router: Router,
    listener: Listener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    router.serve_with_shutdown(listener.0, shutdown).await
}
