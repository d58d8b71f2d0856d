//! `--tls-cert`/`--tls-key`: a rustls server configuration from PEM files, checked at start so a
//! wrong file is a clear error before the registry listens, not a failed handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate chain {}: {message}", path.display())]
    Certificate { path: PathBuf, message: String },
    #[error("{} holds no certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("cannot read the TLS private key {}: {message}", path.display())]
    Key { path: PathBuf, message: String },
    #[error("the TLS key {} does not suit the certificate {}: {message}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf, message: String },
}

impl TlsError {
    pub fn hint(&self) -> &'static str {
        match self {
            TlsError::Certificate { .. } | TlsError::NoCertificate { .. } => {
                "--tls-cert takes a PEM file with the server certificate first, then any intermediates"
            }
            TlsError::Key { .. } => "--tls-key takes an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
            TlsError::Mismatch { .. } => "pass the private key that belongs to the certificate's public key",
        }
    }
}

/// Loads the certificate chain and key, offering HTTP/2 and HTTP/1.1.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate { path: cert.to_owned(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.to_owned() });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "the file holds no private key".to_owned(),
            other => other.to_string(),
        },
    })?;
    let mismatch = |message: String| TlsError::Mismatch { cert: cert.to_owned(), key: key.to_owned(), message };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
