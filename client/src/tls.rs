//! TLS to the members: the settings (PEM read from files) and the gRPC
//! endpoint that uses them (in the runtime seam, `rt`, since the simulation
//! has its own). rustls with ring (tonic's `tls-ring`): no cmake, no system
//! libraries, and no native or webpki roots, since members and clients
//! trust the CA they are given. The simulation does not model TLS: an
//! endpoint with TLS fails there.

use std::path::{Path, PathBuf};

pub use crate::rt::endpoint;

/// Certificates and keys for one side of TLS connections, as PEM read from
/// files at startup.
#[derive(Clone, Default)]
pub struct TlsSettings {
    /// Our certificate chain and its private key: what a server serves, and
    /// what a client presents when the server asks (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The CA the other side's certificate must chain to: a client's (when a
    /// server requires one) or a server's.
    pub ca: Option<Vec<u8>>,
    /// A server refuses clients without a certificate signed by `ca`.
    pub require_client_cert: bool,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TlsSettings")
            .field("identity", &self.identity.is_some())
            .field("ca", &self.ca.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish()
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read.
    #[error("cannot read {what} {path}: {cause}")]
    Read { what: &'static str, path: PathBuf, cause: std::io::Error },
    /// The material does not make a usable TLS configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl TlsSettings {
    /// Reads the PEM files: `cert` and `key` (both or neither), `ca` (if set).
    /// Empty paths are "not set".
    pub fn from_files(cert: &Path, key: &Path, ca: &Path, require_client_cert: bool) -> Result<Self, TlsError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|cause| TlsError::Read { what, path: path.to_path_buf(), cause })
        };
        let set = |p: &Path| !p.as_os_str().is_empty();
        let identity = match (set(cert), set(key)) {
            (true, true) => Some((read("certificate", cert)?, read("key", key)?)),
            (false, false) => None,
            _ => {
                return Err(TlsError::Config(
                    "a certificate file needs its key file, and a key file its certificate".into(),
                ))
            }
        };
        let ca = if set(ca) { Some(read("CA certificate", ca)?) } else { None };
        if require_client_cert && ca.is_none() {
            return Err(TlsError::Config("client certificate auth needs a trusted CA file".into()));
        }
        Ok(Self { identity, ca, require_client_cert })
    }

    /// A client's TLS from etcdctl-style `--cacert`, `--cert`, `--key`:
    /// `None` (plain TCP) when none of them is given.
    pub fn for_client(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Option<Self>, TlsError> {
        if ca.is_none() && cert.is_none() && key.is_none() {
            return Ok(None);
        }
        let unset = Path::new("");
        Self::from_files(cert.unwrap_or(unset), key.unwrap_or(unset), ca.unwrap_or(unset), false).map(Some)
    }

    /// Whether there is anything to do: a server needs its identity.
    pub fn serves(&self) -> bool {
        self.identity.is_some()
    }
}

/// An error and its sources in one line (rustls's reason is in the source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
