//! The DICOM TLS profile (PS3.15 B.1) through dicom-ul's rustls support (feature `tls`):
//! rustls client and server configurations from PEM files, with the `ring` crypto provider,
//! TLS 1.2 and 1.3, and mutual authentication: rtopt presents its certificate and requires the
//! peer's to chain to the trusted certificates, in both directions.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::config::TlsSettings;
use crate::error::{Error, Result};

fn bad(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let v = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(path, format!("cannot read PEM certificates: {e}")))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("cannot read PEM certificates: {e}")))?;
    if v.is_empty() {
        return Err(bad(path, "no PEM certificate in the file"));
    }
    Ok(v)
}

fn roots(path: &Path) -> Result<Arc<RootCertStore>> {
    let mut store = RootCertStore::empty();
    for c in certificates(path)? {
        store
            .add(c)
            .map_err(|e| bad(path, format!("not a usable trusted certificate: {e}")))?;
    }
    Ok(Arc::new(store))
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| bad(path, format!("cannot read the PEM private key: {e}")))
}

/// ring: rustls 0.23.48 marks it deprecated for lacking post-quantum key exchange, which no
/// DICOM TLS profile asks for; aws-lc-rs, the alternative, needs a C toolchain with CMake.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The error of a certificate and key that do not belong together.
fn misfit(t: &TlsSettings, e: rustls::Error) -> Error {
    bad(
        &t.private_key,
        format!("certificate and key do not fit: {e}"),
    )
}

/// rtopt as a TLS client: trusts `trusted`, presents its certificate.
pub fn client_config(t: &TlsSettings) -> Result<Arc<ClientConfig>> {
    let c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&t.certificate, e))?
        .with_root_certificates(roots(&t.trusted)?)
        .with_client_auth_cert(certificates(&t.certificate)?, key(&t.private_key)?)
        .map_err(|e| misfit(t, e))?;
    Ok(Arc::new(c))
}

/// rtopt as a TLS server: requires a client certificate chaining to `trusted`.
pub fn server_config(t: &TlsSettings) -> Result<Arc<ServerConfig>> {
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(&t.trusted)?, provider())
            .build()
            .map_err(|e| bad(&t.trusted, e))?;
    let c = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&t.certificate, e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&t.certificate)?, key(&t.private_key)?)
        .map_err(|e| misfit(t, e))?;
    Ok(Arc::new(c))
}
