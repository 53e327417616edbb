//! TLS at the edges: the gRPC server builders, the acceptor that terminates
//! TLS on a listener, and the certificates a peer presented. The settings
//! and the client endpoint are the client crate's (members are clients of
//! each other). Production uses rustls with ring (tonic's `tls-ring`
//! feature: ring builds from a little C and assembly in seconds, where
//! aws-lc-rs needs cmake and minutes; no native or webpki roots, since
//! members and clients trust the CA they are given). The
//! simulation does not model TLS: a simulated node configured with it fails
//! to start, and no simulated request carries certificates.

#[cfg(not(madsim))]
use placement_client::tls::error_chain;
pub use placement_client::tls::{endpoint, TlsError, TlsSettings};

/// A gRPC server builder with our HTTP/2 settings. TLS is not tonic's: the
/// listener's [`TlsAcceptor`] terminates it (see [`acceptor`]).
#[cfg(not(madsim))]
pub fn server_builder() -> tonic::transport::Server {
    // HTTP/2 keepalive finds and closes dead connections (a client host
    // gone without a FIN holds its streams otherwise), and a connection may
    // open only so many streams at once (etcd's --max-concurrent-streams).
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(MAX_CONCURRENT_STREAMS))
}

/// The client port's server builder: gRPC and, on the same listener, the
/// HTTP requests `gateway` answers (HTTP/1.1 accepted beside h2).
#[cfg(not(madsim))]
pub fn client_server_builder<L>(gateway: L) -> tonic::transport::Server<tower_layer::Stack<L, tower_layer::Identity>> {
    server_builder().accept_http1(true).layer(gateway)
}

/// See the production definition: the simulated network carries gRPC
/// only, so there is no HTTP to route to the gateway.
#[cfg(madsim)]
pub fn client_server_builder<L>(_gateway: L) -> tonic::transport::Server {
    server_builder()
}

/// Streams one client connection may have open at once.
#[cfg(not(madsim))]
pub const MAX_CONCURRENT_STREAMS: u32 = 16_384;

/// See the production definition.
#[cfg(madsim)]
pub fn server_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
}

/// TLS termination for a server port. Ours rather than tonic's, so that ALPN
/// can offer HTTP/1.1 beside h2: the client port's JSON gateway serves curl,
/// scripts and HTTP probes over HTTPS, and most of them speak HTTP/1.1.
/// tonic still learns the certificates a client presented: it reads them
/// from the TLS stream it is handed (`Request::peer_certs`).
#[cfg(not(madsim))]
#[derive(Clone)]
pub struct TlsAcceptor(pub(super) tokio_rustls::TlsAcceptor);

/// See the production definition: never built, the simulation has no TLS.
#[cfg(madsim)]
#[derive(Clone)]
pub struct TlsAcceptor(());

/// The acceptor for `tls`'s identity (none: plain TCP), requiring a client
/// certificate signed by its CA when it says so (optional otherwise, and
/// none asked for without a CA). ALPN offers h2, and HTTP/1.1 too with
/// `http1`. rustls with ring, as the client's.
#[cfg(not(madsim))]
pub fn acceptor(tls: Option<&TlsSettings>, http1: bool) -> Result<Option<TlsAcceptor>, TlsError> {
    use std::sync::Arc;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto, server::WebPkiClientVerifier, RootCertStore, ServerConfig};

    let Some(tls) = tls.filter(|t| t.serves()) else { return Ok(None) };
    let bad = |what: &str, e: &dyn std::error::Error| TlsError::Config(format!("{what}: {}", error_chain(e)));
    let certificates = |what: &str, pem: &[u8]| -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let chain = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| bad(what, &e))?;
        if chain.is_empty() {
            return Err(TlsError::Config(format!("{what}: no PEM certificate in the file")));
        }
        Ok(chain)
    };
    let (cert, key) = tls.identity.as_ref().ok_or_else(|| TlsError::Config("no server certificate".into()))?;
    let chain = certificates("server certificate", cert)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("server key", &e))?;
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?;
    let builder = match &tls.ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates("trusted CA", ca)? {
                roots.add(certificate).map_err(|e| bad("trusted CA", &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            let verifier = if tls.require_client_cert { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| bad("client certificate check", &e))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| bad("server certificate and key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    if http1 {
        config.alpn_protocols.push(b"http/1.1".to_vec());
    }
    Ok(Some(TlsAcceptor(tokio_rustls::TlsAcceptor::from(Arc::new(config)))))
}

/// See the production definition: a simulated node configured with TLS
/// fails to start.
#[cfg(madsim)]
pub fn acceptor(tls: Option<&TlsSettings>, _http1: bool) -> Result<Option<TlsAcceptor>, TlsError> {
    match tls.filter(|t| t.serves()) {
        None => Ok(None),
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
