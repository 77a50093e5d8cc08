//! HTTPS on the main port: a certificate from files, served with HSTS, carrying WebSocket
//! sessions, and reloaded when the files change without dropping anyone.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;

use super::outside::try_tls_offering;
use super::{Server, WAIT};

/// A fresh self-signed certificate for 127.0.0.1, written as `cert.pem`/`key.pem` in `dir`;
/// returns the certificate (DER) for clients to trust.
pub fn write_certificate(dir: &Path) -> rustls::pki_types::CertificateDer<'static> {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    // Written to a temporary name and renamed, as renewal tools do: the server never reads a
    // half-written pair.
    std::fs::write(dir.join("key.tmp"), made.signing_key.serialize_pem()).expect("key");
    std::fs::write(dir.join("cert.tmp"), made.cert.pem()).expect("cert");
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).expect("rename");
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).expect("rename");
    made.cert.der().clone()
}

/// A TLS connection to `server` from a client that trusts only `cert`.
async fn connect(
    server: &Server,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    connect_offering(server, cert, &[]).await
}

/// As [`connect`], offering the ALPN protocols `alpn`.
pub async fn connect_offering(
    server: &Server,
    cert: &rustls::pki_types::CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    try_tls_offering("127.0.0.1", server.addr.port(), [127, 0, 0, 1], cert, alpn).await
}

#[tokio::test]
async fn https_from_certificate_files_reloads_them_without_dropping_sessions() {
    let dir = std::env::temp_dir().join(format!("visavis-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let first = write_certificate(&dir);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let server = Server::start(&[
        "--no-turn",
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ])
    .await;

    // The page, over HTTPS, with HSTS.
    let mut page = connect(&server, &first)
        .await
        .expect("TLS with the first certificate");
    page.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = String::new();
    page.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age="),
        "{answer}"
    );

    // A WebSocket session over it.
    let url = format!("wss://{}/ws", server.addr);
    let tls = connect(&server, &first).await.expect("TLS");
    let (mut alice, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("wss");
    let join = |name: &str| {
        Message::text(format!(
            r#"{{"type":"join","version":1,"room":"tls","name":"{name}"}}"#
        ))
    };
    alice.send(join("Alice")).await.expect("send");
    let joined = alice.next().await.expect("frame").expect("joined");
    assert!(
        joined.to_text().expect("text").contains(r#""type":"joined""#),
        "{joined}"
    );

    // New files: new connections get the new certificate within a few seconds...
    let second = write_certificate(&dir);
    let started = Instant::now();
    while connect(&server, &second).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(5), "not reloaded");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        connect(&server, &first).await.is_err(),
        "the old certificate is gone"
    );
    // ...and the session on the old one goes on: it hears Bob, who came with the new one.
    let tls = connect(&server, &second).await.expect("TLS");
    let (mut bob, _) = tokio_tungstenite::client_async(url.as_str(), tls)
        .await
        .expect("wss");
    bob.send(join("Bob")).await.expect("send");
    let heard = tokio::time::timeout(WAIT, async {
        loop {
            let frame = alice.next().await.expect("frame").expect("message");
            if frame.to_text().is_ok_and(|t| t.contains("member_joined")) {
                return frame;
            }
        }
    })
    .await
    .expect("Alice still connected");
    assert!(heard.to_text().expect("text").contains("Bob"), "{heard}");
    let _ = std::fs::remove_dir_all(&dir);
}
