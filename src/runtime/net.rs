//! Listening sockets and serving gRPC. Production binds real TCP listeners
//! (so tests can bind port 0 and learn the port before starting a node); the
//! simulated tonic serves on an address of the simulated network.

use std::future::Future;
use std::net::SocketAddr;

use tonic::transport::server::Router;

use super::tls::TlsAcceptor;

/// A bound listening address.
#[cfg(not(madsim))]
pub struct Listener(tokio::net::TcpListener);

/// A bound listening address.
#[cfg(madsim)]
pub struct Listener(SocketAddr);

#[cfg(not(madsim))]
impl Listener {
    /// Binds `addr`, HOST:PORT with a name or an address (port 0 picks a
    /// free port). The error says which address of a name failed and why,
    /// in words an operator can act on.
    pub async fn bind(addr: &str) -> std::io::Result<Self> {
        use std::io::{Error, ErrorKind};
        let targets: Vec<SocketAddr> = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| Error::new(e.kind(), format!("the name does not resolve ({e})")))?
            .collect();
        let mut failed = None;
        for target in targets {
            match tokio::net::TcpListener::bind(target).await {
                Ok(listener) => return Ok(Self(listener)),
                Err(e) => failed = Some((target, e)),
            }
        }
        Err(match failed {
            None => Error::new(ErrorKind::NotFound, "the name resolves to no address"),
            Some((target, e)) if e.kind() == ErrorKind::AddrNotAvailable => Error::new(
                e.kind(),
                format!(
                    "{target} is not an address of this host: listen on one of its addresses, \
                     or on 0.0.0.0 and advertise the name others reach it by"
                ),
            ),
            Some((target, e)) => Error::new(e.kind(), format!("{target}: {e}")),
        })
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

/// Waits until `addr` (HOST:PORT) resolves, trying `attempts` times a
/// second apart (a pod's own name appears in DNS a moment after it starts);
/// the error names the address and what the resolver said.
#[cfg(not(madsim))]
pub async fn await_resolvable(addr: &str, attempts: u32) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            super::sleep(std::time::Duration::from_secs(1)).await;
        }
        match tokio::net::lookup_host(addr).await.map(|mut found| found.next()) {
            Ok(Some(_)) => return Ok(()),
            Ok(None) => last = "no address".to_string(),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{addr} does not resolve ({last})"))
}

/// The simulated network has no names: every address is an IP literal.
#[cfg(madsim)]
pub async fn await_resolvable(_addr: &str, _attempts: u32) -> Result<(), String> {
    Ok(())
}

/// Most connections one listener keeps open at once: past it, a new
/// connection is closed as soon as it is accepted (each costs a descriptor,
/// buffers and HTTP/2 state; brokers hold one each).
pub const MAX_CONNECTIONS: usize = 16_384;

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`
/// completes, with at most [`MAX_CONNECTIONS`] connections open.
#[cfg(not(madsim))]
pub async fn serve<L: RoutesLayer>(
    router: Router<L>,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_limited(router, listener, tls, MAX_CONNECTIONS, shutdown).await
}

/// What serves a connection's requests: the gRPC routes, maybe wrapped
/// (the gateway wraps them in both flavours, so this bound is in both).
pub trait RoutesService:
    tower_service::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> RoutesService for S where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// A layer around a server's gRPC routes (the client port's JSON gateway),
/// or none (`Identity`).
#[cfg(not(madsim))]
pub trait RoutesLayer: tower_layer::Layer<tonic::service::Routes, Service: RoutesService> {}

#[cfg(not(madsim))]
impl<L: tower_layer::Layer<tonic::service::Routes, Service: RoutesService>> RoutesLayer for L {}

/// [`serve`] with `limit` connections at most. A connection counts from its
/// accept, through its TLS handshake, to its close.
#[cfg(not(madsim))]
pub async fn serve_limited<L: RoutesLayer>(
    router: Router<L>,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    limit: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    use futures::StreamExt;
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(limit));
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener.0)
        .then(move |stream| {
            let open = open.clone();
            async move {
                match stream {
                    Ok(stream) => {
                        let Ok(permit) = open.try_acquire_owned() else {
                            tracing::warn!(limit, "connection refused: too many open");
                            return None;
                        };
                        // tonic sets TCP_NODELAY only on sockets it accepts itself; without it
                        // small responses wait for the peer's delayed ACK (~40 ms per request).
                        if let Err(e) = stream.set_nodelay(true) {
                            tracing::debug!(cause = %e, "cannot set TCP_NODELAY");
                        }
                        Some(Ok(Counted { stream, _permit: permit }))
                    }
                    // EMFILE and the like fail every accept until something is
                    // closed: pause instead of retrying in a tight loop.
                    Err(e) => {
                        tracing::warn!(cause = %e, "accepting a connection failed; pausing {ACCEPT_PAUSE:?}");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        Some(Err(e))
                    }
                }
            }
        })
        .filter_map(std::future::ready);
    let Some(TlsAcceptor(acceptor)) = tls else { return router.serve_with_incoming_shutdown(incoming, shutdown).await };
    // Handshakes run side by side (a slow client holds up no other), at
    // most MAX_HANDSHAKES at once, each for HANDSHAKE_TIMEOUT at most; a
    // failed one closes its connection.
    let handshaken = incoming
        .map(move |accepted| {
            let acceptor = acceptor.clone();
            async move {
                let connection = match accepted {
                    Ok(connection) => connection,
                    Err(e) => return Some(Err(e)),
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(connection)).await {
                    Ok(Ok(stream)) => Some(Ok(stream)),
                    Ok(Err(e)) => {
                        tracing::debug!(cause = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                        None
                    }
                }
            }
        })
        .buffer_unordered(MAX_HANDSHAKES)
        .filter_map(std::future::ready);
    router.serve_with_incoming_shutdown(handshaken, shutdown).await
}

/// TLS handshakes in progress at once on one listener.
#[cfg(not(madsim))]
const MAX_HANDSHAKES: usize = 1024;

/// How long a TLS handshake may take.
#[cfg(not(madsim))]
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An accepted connection holding its place among the open ones.
#[cfg(not(madsim))]
struct Counted {
    stream: tokio::net::TcpStream,
    /// Released when the connection is dropped (closed).
    _permit: tokio::sync::OwnedSemaphorePermit,
}

#[cfg(not(madsim))]
impl tonic::transport::server::Connected for Counted {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(not(madsim))]
impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

#[cfg(not(madsim))]
impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How long accepting pauses after an error.
#[cfg(not(madsim))]
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// The simulated network has no connection count: serves as [`serve`].
#[cfg(madsim)]
pub async fn serve_limited(
    router: Router,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    _limit: usize,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve(router, listener, tls, shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes (no TLS: the
/// simulation never builds an acceptor).
#[cfg(madsim)]
pub async fn serve(
    router: Router,
    listener: Listener,
    _tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    router.serve_with_shutdown(listener.0, shutdown).await
}

/// What an HTTP endpoint answers for a GET of a target (path and query):
/// (status, content type, body).
pub type HttpHandler = std::sync::Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn Future<Output = (u16, &'static str, String)> + Send>> + Send + Sync,
>;

/// Serves plain HTTP/1.1 GETs on `listener` (metrics and probes: one request
/// per connection, no keep-alive) until `shutdown` completes.
#[cfg(not(madsim))]
pub async fn serve_http(listener: Listener, handler: HttpHandler, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => return,
            accepted = listener.0.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), http_exchange(stream, handler));
                    if let Ok(Err(e)) = answer.await {
                        tracing::debug!(cause = %e, "http request failed");
                    }
                });
            }
        }
    }
}

#[cfg(not(madsim))]
async fn http_exchange(mut stream: tokio::net::TcpStream, handler: HttpHandler) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
        if request.len() > 16 * 1024 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&request);
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (status, content_type, body) = match method {
        "GET" | "HEAD" => handler(target.to_string()).await,
        _ => (405, "text/plain; charset=utf-8", "only GET is served\n".to_string()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}

/// The simulation serves no HTTP (metrics and probes are for operators):
/// waits for `shutdown`.
#[cfg(madsim)]
pub async fn serve_http(_listener: Listener, _handler: HttpHandler, shutdown: impl Future<Output = ()>) {
    shutdown.await
}
