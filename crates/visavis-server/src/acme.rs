//! Certificates for `--domain` from an ACME CA (Let's Encrypt by default): the account and the
//! certificate kept in `--data-dir`, challenges answered by the running listeners (TLS-ALPN-01
//! on the HTTPS port, HTTP-01 on `--http-listen`), renewal ahead of expiry, and the new
//! certificate swapped in without a restart. When to try is decided by [`next_attempt`], a
//! pure function of the certificate's validity, the failures so far and the time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder,
    OrderStatus, RetryPolicy,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::AcmeChallenge;
use crate::tls::{self, CertStore};

/// Renew this long before expiry (Let's Encrypt's own advice for 90-day certificates)…
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// …or, for certificates that live less than 90 days, once two thirds of the lifetime are gone.
const RENEW_FRACTION_LEFT: u32 = 3;
/// First wait after a failed attempt; doubled after each further failure, up to
/// [`MAX_RETRY`]. Let's Encrypt allows 5 failed validations per name and hour.
const FIRST_RETRY: Duration = Duration::from_secs(60);
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Longest single sleep, so a machine that was suspended or had its clock set re-checks soon.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// How long the CA may take to validate and to issue.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// What `--domain` and the `--acme-*` options ask for.
#[derive(Debug, Clone)]
pub struct AcmeSetup {
    pub domains: Vec<String>,
    pub directory: String,
    pub email: Option<String>,
    pub ca_root: Option<PathBuf>,
    pub challenge: AcmeChallenge,
    /// `--data-dir`/acme: the account and the certificate.
    pub dir: PathBuf,
}

/// The validity period of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// When to next try to obtain a certificate: at once without one; after a failure, after a
/// back-off; otherwise when the current one is due for renewal.
pub fn next_attempt(current: Option<Validity>, failures: u32, last_failure: SystemTime) -> SystemTime {
    if failures > 0 {
        let backoff = FIRST_RETRY
            .saturating_mul(1 << (failures - 1).min(16))
            .min(MAX_RETRY);
        return last_failure + backoff;
    }
    match current {
        None => SystemTime::UNIX_EPOCH,
        Some(v) => {
            let lifetime = v.not_after.duration_since(v.not_before).unwrap_or_default();
            let before = RENEW_BEFORE.min(lifetime / RENEW_FRACTION_LEFT);
            v.not_after.checked_sub(before).unwrap_or(v.not_before)
        }
    }
}

/// HTTP-01 answers while an order runs: token → key authorization, served by the plain-HTTP
/// listener at `/.well-known/acme-challenge/<token>`.
#[derive(Debug, Default)]
pub struct HttpTokens(Mutex<HashMap<String, String>>);

impl HttpTokens {
    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    pub fn set(&self, token: &str, answer: Option<String>) {
        let mut tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match answer {
            Some(answer) => tokens.insert(token.to_owned(), answer),
            None => tokens.remove(token),
        };
    }
}

/// The certificate stored in `setup.dir`, if it covers every domain and has not expired.
pub fn stored(setup: &AcmeSetup) -> Option<(CertifiedKey, Validity)> {
    let (cert, key) = (setup.dir.join("cert.pem"), setup.dir.join("key.pem"));
    if !cert.exists() {
        return None;
    }
    let loaded = match tls::load(&cert, &key) {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::warn!("not using the stored certificate: {err:#}");
            return None;
        }
    };
    let (validity, names) = inspect(loaded.end_entity_cert().ok()?)?;
    let covers = setup.domains.iter().all(|d| names.contains(d));
    (covers && validity.not_after > SystemTime::now()).then_some((loaded, validity))
}

/// Keeps `store` holding a valid certificate for `setup.domains` until `shutdown`: obtains
/// one if `current` is `None`, then renews it when due.
pub async fn run(
    setup: AcmeSetup,
    mut current: Option<Validity>,
    store: Arc<CertStore>,
    tokens: Arc<HttpTokens>,
    shutdown: CancellationToken,
) {
    let mut failures = 0;
    let mut last_failure = SystemTime::UNIX_EPOCH;
    loop {
        let at = next_attempt(current, failures, last_failure);
        if let Ok(wait) = at.duration_since(SystemTime::now()) {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
            }
            continue; // re-check: the clock may have jumped while asleep
        }
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return,
            attempt = obtain(&setup, &store, &tokens) => attempt,
        };
        match attempt {
            Ok((key, validity)) => {
                store.replace(key);
                current = Some(validity);
                failures = 0;
                tracing::info!(
                    "new certificate for {} from {}: valid until {}, renewal due {}",
                    setup.domains.join(", "),
                    setup.directory,
                    utc(validity.not_after),
                    utc(next_attempt(current, 0, SystemTime::now())),
                );
            }
            Err(err) => {
                failures += 1;
                last_failure = SystemTime::now();
                let retry = next_attempt(current, failures, last_failure);
                tracing::warn!(
                    "cannot get a certificate for {} from {}: {err:#}; next try {}",
                    setup.domains.join(", "),
                    setup.directory,
                    utc(retry),
                );
            }
        }
    }
}

/// One ACME order: account, challenges, CSR, certificate; stored in `setup.dir`.
async fn obtain(
    setup: &AcmeSetup,
    store: &CertStore,
    tokens: &HttpTokens,
) -> anyhow::Result<(CertifiedKey, Validity)> {
    let account = account(setup).await?;
    let identifiers: Vec<_> = setup.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .context("new order")?;
    // Whatever happens below, the challenge answers go away with the order.
    let mut answered = Answered {
        store,
        tokens,
        names: Vec::new(),
        tokens_set: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.context("authorization")?;
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => anyhow::bail!("authorization is {other:?}"),
        }
        let kind = match setup.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut challenge = authorization
            .challenge(kind.clone())
            .with_context(|| format!("the CA offers no {kind:?} challenge"))?;
        let name = match challenge.identifier().identifier {
            Identifier::Dns(name) => name.clone(),
            other => anyhow::bail!("unexpected identifier {other:?}"),
        };
        let answer = challenge.key_authorization();
        match setup.challenge {
            AcmeChallenge::TlsAlpn01 => {
                store.set_challenge(
                    &name,
                    Some(validation_certificate(&name, answer.digest().as_ref())?),
                );
                answered.names.push(name);
            }
            AcmeChallenge::Http01 => {
                tokens.set(&challenge.token, Some(answer.as_str().to_owned()));
                answered.tokens_set.push(challenge.token.clone());
            }
        }
        challenge.set_ready().await.context("challenge ready")?;
    }
    let retries = RetryPolicy::new().timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&retries).await.context("validation")?;
    anyhow::ensure!(
        status == OrderStatus::Ready,
        "the CA did not validate the order: {status:?}"
    );
    drop(answered);

    let key = rcgen::KeyPair::generate().context("new key")?;
    let csr = rcgen::CertificateParams::new(setup.domains.clone())
        .context("certificate request")?
        .serialize_request(&key)
        .context("certificate request")?;
    order.finalize_csr(csr.der()).await.context("finalize")?;
    let chain_pem = order.poll_certificate(&retries).await.context("certificate")?;
    let chain = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the CA's certificate PEM")?;
    let validity = inspect(chain.first().context("empty certificate chain")?)
        .context("unreadable certificate")?
        .0;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let certified = tls::certified(chain, key_der)?;
    save(&setup.dir, &chain_pem, &key.serialize_pem())?;
    Ok((certified, validity))
}

/// Removes the challenge answers of an order when dropped.
struct Answered<'a> {
    store: &'a CertStore,
    tokens: &'a HttpTokens,
    names: Vec<String>,
    tokens_set: Vec<String>,
}

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            self.store.set_challenge(name, None);
        }
        for token in &self.tokens_set {
            self.tokens.set(token, None);
        }
    }
}

/// The account for `setup.directory`: stored in `setup.dir`, or created (and stored).
async fn account(setup: &AcmeSetup) -> anyhow::Result<Account> {
    let builder = || match &setup.ca_root {
        Some(root) => {
            Account::builder_with_root(root).with_context(|| format!("--acme-ca-root {}", root.display()))
        }
        None => Account::builder().context("HTTP client"),
    };
    // One account per directory: a test CA's account means nothing to Let's Encrypt.
    let digest = ring::digest::digest(&ring::digest::SHA256, setup.directory.as_bytes());
    let file = setup
        .dir
        .join(format!("account-{}.json", hex(&digest.as_ref()[..6])));
    if let Ok(json) = std::fs::read(&file) {
        let credentials: AccountCredentials =
            serde_json::from_slice(&json).with_context(|| format!("bad account file {}", file.display()))?;
        return builder()?.from_credentials(credentials).await.context("account");
    }
    let contact = setup.email.as_ref().map(|e| format!("mailto:{e}"));
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            setup.directory.clone(),
            None,
        )
        .await
        .context("new account")?;
    std::fs::create_dir_all(&setup.dir).with_context(|| format!("cannot create {}", setup.dir.display()))?;
    tls::write_private(&file, serde_json::to_string(&credentials)?.as_bytes())?;
    tracing::info!("ACME account {} at {}", account.id(), setup.directory);
    Ok(account)
}

/// The self-signed certificate that answers a TLS-ALPN-01 challenge for `name` (RFC 8737):
/// it carries the SHA-256 of the key authorization in the acmeIdentifier extension.
fn validation_certificate(name: &str, digest: &[u8]) -> anyhow::Result<CertifiedKey> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not through `tls::certified`: its check would refuse the critical extension, which
    // only ACME validators understand.
    let signing = tokio_rustls::rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signing))
}

/// Replaces the stored certificate and key (each file written whole, then renamed, so a
/// crash leaves either the old or the new file, never half of one).
fn save(dir: &Path, chain_pem: &str, key_pem: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, bytes) in [("key.pem", key_pem), ("cert.pem", chain_pem)] {
        let (tmp, path) = (dir.join(format!("{name}.new")), dir.join(name));
        tls::write_private(&tmp, bytes.as_bytes())?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    }
    Ok(())
}

/// The validity and DNS names of a DER certificate.
fn inspect(cert: &CertificateDer<'_>) -> Option<(Validity, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    let validity = Validity {
        not_before: time(parsed.validity().not_before),
        not_after: time(parsed.validity().not_after),
    };
    let names = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some((validity, names))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A time as the log shows it (UTC).
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    x509_parser::time::ASN1Time::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
        .map_or_else(|_| format!("{secs} s after 1970"), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn without_a_certificate_the_first_attempt_is_now() {
        assert!(next_attempt(None, 0, at(0)) <= SystemTime::now());
    }

    #[test]
    fn a_90_day_certificate_is_renewed_30_days_before_expiry() {
        let v = Validity {
            not_before: at(0),
            not_after: at(0) + 90 * DAY,
        };
        assert_eq!(next_attempt(Some(v), 0, at(0)), at(0) + 60 * DAY);
        let long = Validity {
            not_before: at(0),
            not_after: at(0) + 365 * DAY,
        };
        assert_eq!(next_attempt(Some(long), 0, at(0)), at(0) + 335 * DAY);
    }

    #[test]
    fn a_short_certificate_is_renewed_after_two_thirds_of_its_life() {
        let v = Validity {
            not_before: at(1000),
            not_after: at(1090),
        };
        assert_eq!(next_attempt(Some(v), 0, at(0)), at(1060));
        let six_days = Validity {
            not_before: at(0),
            not_after: at(0) + 6 * DAY,
        };
        assert_eq!(next_attempt(Some(six_days), 0, at(0)), at(0) + 4 * DAY);
    }

    #[test]
    fn failures_back_off_doubling_up_to_an_hour() {
        let v = Validity {
            not_before: at(0),
            not_after: at(0) + 90 * DAY,
        };
        let waits: Vec<_> = (1..=8)
            .map(|n| {
                next_attempt(Some(v), n, at(500))
                    .duration_since(at(500))
                    .unwrap()
                    .as_secs()
            })
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(next_attempt(None, 40, at(500)), at(500 + 3600), "no overflow");
    }

    #[test]
    fn a_validation_certificate_carries_the_digest_and_the_name() {
        let key = validation_certificate("visit.example.com", &[7; 32]).expect("made");
        let der = key.end_entity_cert().expect("cert");
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parses");
        let acme_id = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(acme_id.critical, "RFC 8737 makes it critical");
        assert!(acme_id.value.ends_with(&[7; 32]));
        assert_eq!(inspect(der).expect("inspects").1, ["visit.example.com"]);
    }
}
