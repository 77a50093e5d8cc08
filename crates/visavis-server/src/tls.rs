//! HTTPS: the certificate the server presents (from `--tls-cert`/`--tls-key`, reloaded when the
//! files change or on SIGHUP without dropping anyone, or a self-signed one kept in
//! `--data-dir`, or one from ACME), the certificates answering ACME TLS-ALPN-01 challenges,
//! and the rustls configuration with *ring* as the one crypto provider.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::ring::default_provider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

/// How often the certificate files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Reads a certificate chain and its private key from PEM files.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot open {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("bad certificate PEM in {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot open {}", key.display()))?,
    ))
    .with_context(|| format!("bad key PEM in {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    certified(certs, key)
}

/// A certificate chain (DER) with its private key, checked to belong together.
pub fn certified(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> anyhow::Result<CertifiedKey> {
    CertifiedKey::from_der(chain, key, &default_provider()).context("certificate and key do not match")
}

/// A rustls server configuration presenting whatever `resolver` holds.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The ALPN protocol of ACME's TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The certificate presented to every new connection (replaced whole when reloaded or
/// renewed), and the ones answering TLS-ALPN-01 challenges while an ACME order runs.
#[derive(Debug)]
pub struct CertStore {
    current: RwLock<Arc<CertifiedKey>>,
    /// Per DNS name, presented only to a client that asks for [`ACME_TLS_ALPN`].
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
            challenges: RwLock::default(),
        })
    }

    /// Presents `key` to every connection from now on; connections already open keep theirs.
    pub fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
    }

    /// Answers TLS-ALPN-01 validation for `name` with `key` (or no longer, with `None`).
    pub fn set_challenge(&self, name: &str, key: Option<CertifiedKey>) {
        let mut challenges = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        match key {
            Some(key) => challenges.insert(name.to_owned(), Arc::new(key)),
            None => challenges.remove(name),
        };
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let validation = hello.alpn().is_some_and(|mut p| p.any(|p| p == ACME_TLS_ALPN));
        if validation {
            // Only the challenge certificate may answer (RFC 8737 §3); none is a failed
            // handshake, never the real certificate.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&name)
                .cloned();
        }
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Reloads `cert`/`key` into `store` when either file changes or on SIGHUP, until `shutdown`.
/// A pair that fails to load is logged and the current certificate kept (a renewal script may
/// be half-way through writing them).
pub async fn watch(store: Arc<CertStore>, cert: PathBuf, key: PathBuf, shutdown: CancellationToken) {
    let stamp = |paths: [&Path; 2]| paths.map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let mut seen: [Option<SystemTime>; 2] = stamp([&cert, &key]);
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        let forced = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(WATCH_INTERVAL) => false,
            _ = signalled => true,
        };
        let now = stamp([&cert, &key]);
        if now == seen && !forced {
            continue;
        }
        seen = now;
        match load(&cert, &key) {
            Ok(loaded) => {
                store.replace(loaded);
                tracing::info!("reloaded the certificate from {}", cert.display());
            }
            Err(err) => tracing::warn!("keeping the current certificate: {err:#}"),
        }
    }
}

/// The self-signed certificate in `data_dir` (made on first use and kept, so browsers that
/// were told to trust it keep doing so), for `names` (host names and IP addresses). Returns
/// the paths of the certificate and key.
pub fn self_signed(data_dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = data_dir.join("self-signed-cert.pem");
    let key = data_dir.join("self-signed-key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let generated =
        rcgen::generate_simple_self_signed(names.to_vec()).context("cannot make a certificate")?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    Ok((cert, key))
}

/// Writes a secret readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The SHA-256 fingerprint of `key`'s certificate, as browsers show it (`AB:CD:…`).
pub fn fingerprint(key: &CertifiedKey) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        key.end_entity_cert().map_or(&[][..], |c| c.as_ref()),
    );
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Names a self-signed certificate for `listen` should carry: localhost, the loopback
/// addresses, the listen address and the public one if known.
pub fn self_signed_names(listen: IpAddr, public: Option<IpAddr>) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    for ip in [Some(listen), public].into_iter().flatten() {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_self_signed_certificate_is_made_once_kept_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("visavis-self-signed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let names = self_signed_names("0.0.0.0".parse().unwrap(), Some("203.0.113.5".parse().unwrap()));
        assert_eq!(names, ["localhost", "127.0.0.1", "::1", "203.0.113.5"]);
        let (cert, key) = self_signed(&dir, &names).expect("made");
        let first = fingerprint(&load(&cert, &key).expect("loads"));
        assert_eq!(first.len(), 32 * 3 - 1, "{first}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        // A restart presents the same certificate, so browsers that accepted it still do.
        let (cert, key) = self_signed(&dir, &names).expect("kept");
        assert_eq!(fingerprint(&load(&cert, &key).expect("loads")), first);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("visavis-mismatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        std::fs::write(dir.join("a.pem"), a.cert.pem()).unwrap();
        std::fs::write(dir.join("b.key"), b.signing_key.serialize_pem()).unwrap();
        let err = load(&dir.join("a.pem"), &dir.join("b.key")).unwrap_err();
        assert!(format!("{err:#}").contains("do not match"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
