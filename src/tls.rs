//! TLS for the one listener: PEM files, or a self-signed chain generated into the data dir.
//!
//! Self-signed mode keeps a CA in `<data-dir>/tls/ca.pem` across restarts (clients trust
//! it once) and issues a fresh leaf for the listen host, `localhost` and the public-URL
//! host at every start. ALPN offers only `http/1.1`: the KVS C SDK pins it, and the
//! signaling WebSocket needs HTTP/1.1 upgrades.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsMode;

/// TLS setup failures; each names the file or step at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no usable PEM {what} in {path}")]
    Pem { what: &'static str, path: PathBuf },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

/// File name of the generated CA certificate inside `<data-dir>/tls/`.
pub const CA_FILE: &str = "ca.pem";

/// Build the rustls server config for `mode`; `None` when TLS is off.
/// `hosts` are the names/IPs the generated leaf certificate must cover.
pub fn server_config(
    mode: &TlsMode,
    data_dir: &Path,
    hosts: &[String],
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let (chain, key) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
        TlsMode::SelfSigned => self_signed(&data_dir.join("tls"), hosts)?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source })?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::Pem { what: "certificate", path: path.into() });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { path: path.into(), source })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| TlsError::Pem { what: "private key", path: path.into() })
}

/// Write a generated file; `private` ones (keys) are created 0600 and renamed into place
/// (see [`crate::private_fs::write_private`]), never written into a readable file first.
fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    let err = |source| TlsError::Write { path: path.into(), source };
    if private { crate::private_fs::write_private(path, contents.as_bytes()) } else { std::fs::write(path, contents) }
        .map_err(err)
}

/// Parameters of the generated CA (the same at every start, so a persisted CA key
/// keeps signing leaves that chain to the persisted CA certificate).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "reel local CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Load or create the CA, then issue a leaf for `hosts`.
fn self_signed(
    dir: &Path,
    hosts: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    crate::private_fs::create_private_dir(dir).map_err(|source| TlsError::Write { path: dir.into(), source })?;
    let ca_cert_path = dir.join(CA_FILE);
    let ca_key_path = dir.join("ca-key.pem");
    let (ca_pem, ca_key) = match (std::fs::read_to_string(&ca_cert_path), std::fs::read_to_string(&ca_key_path)) {
        (Ok(cert), Ok(key)) => (cert, KeyPair::from_pem(&key)?),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write(&ca_key_path, &key.serialize_pem(), true)?;
            write(&ca_cert_path, &cert.pem(), false)?;
            (cert.pem(), key)
        }
    };
    // The issuer is identified by its name and key; both are stable across restarts.
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut names: Vec<String> = hosts.to_vec();
    names.push("localhost".into());
    names.sort();
    names.dedup();
    let leaf_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, "reel");
    let leaf = params.signed_by(&leaf_key, &issuer)?;
    write(&dir.join("cert.pem"), &format!("{}{}", leaf.pem(), ca_pem), false)?;
    write(&dir.join("key.pem"), &leaf_key.serialize_pem(), true)?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|_| TlsError::Pem { what: "certificate", path: ca_cert_path.clone() })?;
    let key = PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes())
        .map_err(|_| TlsError::Pem { what: "private key", path: dir.join("key.pem") })?;
    Ok((vec![leaf.der().clone(), ca_der], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_ca_survives_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hosts = vec!["127.0.0.1".to_string()];
        let first = server_config(&TlsMode::SelfSigned, dir.path(), &hosts).expect("tls");
        assert!(first.is_some());
        let ca1 = std::fs::read(dir.path().join("tls").join(CA_FILE)).expect("ca");
        server_config(&TlsMode::SelfSigned, dir.path(), &hosts).expect("tls again");
        let ca2 = std::fs::read(dir.path().join("tls").join(CA_FILE)).expect("ca");
        assert_eq!(ca1, ca2);
    }

    #[test]
    fn generated_keys_are_private_from_the_start() {
        use std::io::Read;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        std::fs::create_dir(&tls).expect("tls dir");
        // A leftover world-readable key.pem that someone holds open.
        let key = tls.join("key.pem");
        std::fs::write(&key, "old").expect("old key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut held = std::fs::File::open(&key).expect("open");
        server_config(&TlsMode::SelfSigned, dir.path(), &["127.0.0.1".to_string()]).expect("tls");
        let mut seen = String::new();
        held.read_to_string(&mut seen).expect("read");
        assert_eq!(seen, "old", "the new key was never written into the readable file");
        for name in ["key.pem", "ca-key.pem"] {
            let mode = std::fs::metadata(tls.join(name)).expect("key").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
    }

    #[test]
    fn missing_files_are_named() {
        let mode = TlsMode::Files { cert: "/nonexistent/c.pem".into(), key: "/nonexistent/k.pem".into() };
        let err = server_config(&mode, Path::new("/tmp"), &[]).expect_err("must fail");
        assert!(err.to_string().contains("/nonexistent/c.pem"));
    }
}
