//! TLS with rustls and the ring provider: for downstream listeners (ALPN offering HTTP/2 and
//! HTTP/1.1) and to upstream endpoints ([`client_config`]).

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// Loads a certificate chain and key into a server config, or says what is wrong.
pub fn load(cert_path: &str, key_path: &str) -> Result<Arc<ServerConfig>, String> {
    if cert_path.is_empty() || key_path.is_empty() {
        return Err("TLS needs both `cert` and `key` files".into());
    }
    let certs = read_certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read a private key from `{key_path}`: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not form a valid pair: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// How the gateway speaks TLS to one service's endpoints.
#[derive(Clone, Debug)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// SNI and verification name, when not the endpoint's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
}

/// A client config trusting the CAs in `ca_file` (PEM), or the Mozilla root set without one,
/// presenting `client` (certificate chain and key files) when given. ALPN is left to the
/// connector, which offers what the service's protocol allows. Errors name the file.
pub fn client_config(ca_file: Option<&str>, client: Option<(&str, &str)>) -> Result<ClientConfig, TlsFileError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let certs = read_certs(path).map_err(TlsFileError::Ca)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsFileError::Ca(format!("`{path}` holds no usable CA certificate")));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::Ca(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let certs = read_certs(cert_path).map_err(TlsFileError::Cert)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| TlsFileError::Key(format!("cannot read a private key from `{key_path}`: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsFileError::Key(format!("client certificate and key do not form a valid pair: {e}")))
        }
    }
}

/// Which file of an upstream TLS setting is wrong, and how.
#[derive(Debug)]
pub enum TlsFileError {
    Ca(String),
    Cert(String),
    Key(String),
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificate file `{path}`: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in `{path}`: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`{path}` holds no certificate"));
    }
    Ok(certs)
}
