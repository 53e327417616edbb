//! TLS at the edges: the gRPC server builder, with or without TLS, and the
//! certificates a peer presented. The settings and the client endpoint are
//! the client crate's (members are clients of each other). Production uses tonic's
//! rustls (the `tls-ring` feature: ring builds from a little C and assembly in
//! seconds, where aws-lc-rs needs cmake and minutes; no native or webpki
//! roots, since members and clients trust the CA they are given). The
//! simulation does not model TLS: a simulated node configured with it fails
//! to start, and no simulated request carries certificates.

#[cfg(not(madsim))]
use placement_client::tls::error_chain;
pub use placement_client::tls::{endpoint, TlsError, TlsSettings};

/// A gRPC server builder: plain TCP, or TLS with `tls`'s identity (and client
/// certificates required when it says so).
#[cfg(not(madsim))]
pub fn server_builder(tls: Option<&TlsSettings>) -> Result<tonic::transport::Server, TlsError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    // HTTP/2 keepalive finds and closes dead connections (a client host
    // gone without a FIN holds its streams otherwise), and a connection may
    // open only so many streams at once (etcd's --max-concurrent-streams).
    let builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS));
    let Some(tls) = tls.filter(|t| t.serves()) else { return Ok(builder) };
    let (cert, key) = tls.identity.clone().ok_or_else(|| TlsError::Config("no server certificate".into()))?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.ca {
        config = config.client_ca_root(Certificate::from_pem(ca)).client_auth_optional(!tls.require_client_cert);
    }
    builder.tls_config(config).map_err(|e| TlsError::Config(error_chain(&e)))
}

/// The client port's server builder: gRPC and, on the same listener, the
/// HTTP requests `gateway` answers (HTTP/1.1 accepted beside h2).
#[cfg(not(madsim))]
pub fn client_server_builder<L>(
    tls: Option<&TlsSettings>,
    gateway: L,
) -> Result<tonic::transport::Server<tower_layer::Stack<L, tower_layer::Identity>>, TlsError> {
    Ok(server_builder(tls)?.accept_http1(true).layer(gateway))
}

/// See the production definition: the simulated network carries gRPC
/// only, so there is no HTTP to route to the gateway.
#[cfg(madsim)]
pub fn client_server_builder<L>(tls: Option<&TlsSettings>, _gateway: L) -> Result<tonic::transport::Server, TlsError> {
    server_builder(tls)
}

/// Streams one client connection may have open at once.
#[cfg(not(madsim))]
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;

/// See the production definition: the simulation has no TLS.
#[cfg(madsim)]
pub fn server_builder(tls: Option<&TlsSettings>) -> Result<tonic::transport::Server, TlsError> {
    match tls.filter(|t| t.serves()) {
        None => Ok(tonic::transport::Server::builder()),
        Some(_) => Err(TlsError::Config("the simulation does not model TLS".into())),
    }
}

/// The certificate chain (DER, leaf first) the client of `req` presented over
/// TLS, if it presented one.
#[cfg(not(madsim))]
pub fn peer_certificates<T>(req: &tonic::Request<T>) -> Option<Vec<Vec<u8>>> {
    req.peer_certs().map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
}

/// See the production definition: the simulation has no TLS.
#[cfg(madsim)]
pub fn peer_certificates<T>(_req: &tonic::Request<T>) -> Option<Vec<Vec<u8>>> {
    None
}
