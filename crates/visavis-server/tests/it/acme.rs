//! `--domain` against a real ACME server: Debian's pebble (with pebble-challtestsrv as the DNS
//! that sends the test's domain to 127.0.0.1) issues certificates to the real binary over
//! TLS-ALPN-01 and HTTP-01; a short-lived certificate is renewed while WebSocket sessions
//! stay connected, and a restart serves the stored certificate.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_tungstenite::tungstenite::Message;

use super::binary::Binary;
use super::outside::{free_ports, installed, join, next_of, read_all, tls, wss, Scratch};
use super::WAIT;

const DOMAIN: &str = "visit.visavis.test";
/// How long issuance may take (pebble validates in well under a second without its sleeps).
const ISSUE_WAIT: Duration = Duration::from_secs(30);

/// pebble and its DNS, killed when dropped.
struct Pebble {
    children: Vec<Child>,
    /// `https://127.0.0.1:PORT/dir`.
    directory: String,
    /// The CA that pebble's own HTTPS listeners use, for `--acme-ca-root` and this test.
    listener_ca: CertificateDer<'static>,
    management: u16,
}

impl Pebble {
    /// Starts pebble, validating on 127.0.0.1 ports `tls_port` (TLS-ALPN-01) and `http_port`
    /// (HTTP-01), issuing certificates valid for `validity` seconds (pebble's default when
    /// `None`).
    async fn start(dir: &Path, tls_port: u16, http_port: u16, validity: Option<u64>) -> Option<Self> {
        let pebble = installed("pebble", "pebble")?;
        let dns_server = installed("pebble-challtestsrv", "pebble")?;
        let [api, management, dns, dns_management] = free_ports();
        // pebble serves its API over HTTPS only and ships no certificate: make one.
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("pebble's certificate");
        std::fs::write(dir.join("pebble-cert.pem"), made.cert.pem()).expect("write");
        std::fs::write(dir.join("pebble-key.pem"), made.signing_key.serialize_pem()).expect("write");
        let mut config = json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble-cert.pem"),
            "privateKey": dir.join("pebble-key.pem"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        if let Some(validity) = validity {
            config["pebble"]["certificateValidityPeriod"] = json!(validity);
        }
        std::fs::write(dir.join("pebble.json"), config.to_string()).expect("write");
        let quiet = |command: &mut Command| {
            command.stdout(Stdio::null()).stderr(Stdio::null());
        };
        let mut dns_command = Command::new(dns_server);
        dns_command.args([
            "-dns01",
            &format!("127.0.0.1:{dns}"),
            "-management",
            &format!("127.0.0.1:{dns_management}"),
            "-http01",
            "",
            "-https01",
            "",
            "-tlsalpn01",
            "",
            "-defaultIPv4",
            "127.0.0.1",
            "-defaultIPv6",
            "",
        ]);
        quiet(&mut dns_command);
        let mut pebble_command = Command::new(pebble);
        pebble_command
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            // No random validation delays, no nonces rejected on purpose, fresh authorizations.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        quiet(&mut pebble_command);
        let mut started = Self {
            children: vec![],
            directory: format!("https://127.0.0.1:{api}/dir"),
            listener_ca: made.cert.der().clone(),
            management,
        };
        started
            .children
            .push(dns_command.spawn().expect("spawn pebble-challtestsrv"));
        started
            .children
            .push(pebble_command.spawn().expect("spawn pebble"));
        let since = Instant::now();
        while TcpStream::connect(("127.0.0.1", api)).await.is_err() {
            assert!(since.elapsed() < WAIT, "pebble does not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(started)
    }

    /// The root that pebble's issued chains lead to (a fresh one each run).
    async fn issuing_root(&self) -> CertificateDer<'static> {
        let mut stream = tls("127.0.0.1", self.management, [127, 0, 0, 1], &self.listener_ca).await;
        let request = "GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.expect("write");
        let answer = read_all(stream).await;
        let (_, pem) = answer.split_once("\r\n\r\n").expect("a body");
        let root = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("a certificate")
            .expect("PEM");
        root
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The certificate `DOMAIN:port` presents once it is one that `root` vouches for, waiting
/// up to [`ISSUE_WAIT`] for it to differ from `old`.
async fn issued(
    port: u16,
    root: &CertificateDer<'static>,
    old: Option<&CertificateDer<'static>>,
) -> CertificateDer<'static> {
    let since = Instant::now();
    loop {
        if let Ok(Ok(stream)) = tokio::time::timeout(WAIT, try_tls(port, root)).await {
            let presented = stream.get_ref().1.peer_certificates().expect("certificates")[0].clone();
            if Some(&presented) != old {
                return presented;
            }
        }
        assert!(
            since.elapsed() < ISSUE_WAIT,
            "no (new) certificate from pebble in {ISSUE_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TLS handshake with `DOMAIN` at 127.0.0.1:`port` that succeeds only if `root` vouches
/// for the certificate (until then the server presents a throwaway one).
async fn try_tls(port: u16, root: &CertificateDer<'static>) -> std::io::Result<TlsStream<TcpStream>> {
    super::outside::try_tls(DOMAIN, port, [127, 0, 0, 1], root).await
}

/// The binary's arguments for pebble's `--domain`, listening on `listen`.
fn visavis_args(pebble: &Pebble, scratch: &Scratch, listen: &str, extra: &[&str]) -> Vec<String> {
    let path = |name: &str| scratch.0.join(name).to_str().expect("UTF-8").to_owned();
    let mut args: Vec<String> = [
        "--domain",
        DOMAIN,
        "--listen",
        listen,
        "--acme-directory",
        &pebble.directory,
        "--acme-ca-root",
        &path("pebble-cert.pem"),
        "--acme-email",
        "ops@visavis.test",
        "--data-dir",
        &path("data"),
        "--no-turn",
        "--sfu-listen",
        "127.0.0.1:0",
    ]
    .map(str::to_owned)
    .into();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_over_tls_alpn_while_sessions_stay() {
    let scratch = Scratch::new("acme-alpn");
    let [https, http] = free_ports();
    // 21 s: renewed when two thirds are gone, 14 s after issuance.
    let Some(pebble) = Pebble::start(&scratch.0, https, http, Some(21)).await else {
        return;
    };
    let listen = format!("127.0.0.1:{https}");
    // The test's clients answer no heartbeats while they wait for the renewal.
    let extra = ["--acme-challenge", "tls-alpn-01", "--heartbeat-timeout", "120"];
    let args = visavis_args(&pebble, &scratch, &listen, &extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let visavis = Binary::start(&args).await;
    let root = pebble.issuing_root().await;
    let first = issued(https, &root, None).await;

    // The account and the certificate are kept, the secrets readable by the owner only.
    let acme_dir = scratch.0.join("data/acme");
    let stored = std::fs::read(acme_dir.join("cert.pem")).expect("stored certificate");
    let stored_first = rustls_pemfile::certs(&mut &stored[..])
        .next()
        .expect("one")
        .expect("PEM");
    assert_eq!(stored_first, first, "the served certificate is the stored one");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let account = std::fs::read_dir(&acme_dir)
            .expect("dir")
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().starts_with("account-"))
            .expect("an account file");
        for secret in [account.path(), acme_dir.join("key.pem")] {
            let mode = std::fs::metadata(&secret).expect("meta").permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} readable by others: {mode:o}",
                secret.display()
            );
        }
    }

    // Two people in a room over wss:// with the issued certificate...
    let origin = format!("https://{DOMAIN}:{https}");
    let mut alice = wss(DOMAIN, https, [127, 0, 0, 2], &root, &origin, None)
        .await
        .expect("Alice");
    let mut bob = wss(DOMAIN, https, [127, 0, 0, 3], &root, &origin, None)
        .await
        .expect("Bob");
    let a = join(&mut alice, "acme", "Alice").await;
    join(&mut bob, "acme", "Bob").await;

    // ...stay connected while it is renewed and swapped.
    let renewed = issued(https, &root, Some(&first)).await;
    assert_ne!(renewed, first);
    let chat = json!({"type": "chat", "text": "still here"});
    alice.send(Message::text(chat.to_string())).await.expect("send");
    let heard = next_of(&mut bob, "chat").await;
    assert_eq!(
        (heard["from"].as_u64(), heard["text"].as_str()),
        (Some(a), Some("still here"))
    );

    // A restart serves the stored certificate at once (no order needed before the first
    // handshake succeeds).
    drop(visavis);
    let stored = std::fs::read(acme_dir.join("cert.pem")).expect("stored certificate");
    let stored_now = rustls_pemfile::certs(&mut &stored[..])
        .next()
        .expect("one")
        .expect("PEM");
    let _again = Binary::start(&args).await;
    let stream = try_tls(https, &root)
        .await
        .expect("the stored certificate, trusted at once");
    let presented = stream.get_ref().1.peer_certificates().expect("certificates")[0].clone();
    assert_eq!(presented, stored_now);
}

#[tokio::test]
async fn http_01_on_the_plain_port_which_sends_everything_else_to_https() {
    let scratch = Scratch::new("acme-http");
    let [https, http] = free_ports();
    let Some(pebble) = Pebble::start(&scratch.0, https, http, None).await else {
        return;
    };
    let (listen, plain) = (format!("127.0.0.1:{https}"), format!("127.0.0.1:{http}"));
    let args = visavis_args(
        &pebble,
        &scratch,
        &listen,
        &["--acme-challenge", "http-01", "--http-listen", &plain],
    );
    let _visavis = Binary::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let root = pebble.issuing_root().await;
    issued(https, &root, None).await;

    let mut stream = TcpStream::connect(("127.0.0.1", http)).await.expect("connect");
    let request = format!("GET /r/room-1?x=1 HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let answer = read_all(stream).await.to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 308"), "{answer}");
    let location = format!("location: https://{DOMAIN}:{https}/r/room-1?x=1");
    assert!(answer.contains(&location), "{answer}");
}
