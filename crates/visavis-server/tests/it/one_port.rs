//! One port for everything: the HTTPS port also carries TURN over TLS (told apart from HTTP by
//! ALPN or by the first bytes after the handshake), and members are told so.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use visavis_turn::stun::{self, attr, method, Class, Message, MessageBuilder};

use super::https::{connect_offering, write_certificate};
use super::turn::{allocate_request, challenge_nonce};
use super::{Server, WAIT};

const SECRET: &str = "one-port-secret";

/// A server with HTTPS (a certificate for 127.0.0.1) and the embedded TURN server; returns it
/// and the certificate to trust.
async fn https_and_turn(name: &str, extra: &[&str]) -> (Server, rustls::pki_types::CertificateDer<'static>) {
    let dir = std::env::temp_dir().join(format!("visavis-one-port-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cert = write_certificate(&dir);
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let mut args = vec![
        "--turn-secret",
        SECRET,
        "--tls-cert",
        cert_path.to_str().expect("path"),
        "--tls-key",
        key_path.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let server = Server::start(&args).await;
    (server, cert)
}

/// A TLS connection to the HTTPS port offering no ALPN, as Chromium's TURN client.
async fn tls(
    server: &Server,
    cert: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connect_offering(server, cert, &[]).await.expect("TLS")
}

/// Sends one STUN message over `stream` and reads the one that answers it.
async fn roundtrip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(len) = stun::frame_len(&buf) {
                if buf.len() >= len {
                    buf.truncate(len);
                    return buf;
                }
            }
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before answering");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("an answer in time")
}

/// A Binding over `stream` is answered with the address it came from.
async fn binding<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, tid: u8) -> std::net::SocketAddr {
    let request = MessageBuilder::new(Class::Request, method::BINDING, [tid; 12]).finish();
    let reply = roundtrip(stream, &request).await;
    let msg = Message::parse(&reply).expect("stun");
    assert_eq!(msg.class, Class::Success);
    msg.xor_address(attr::XOR_MAPPED_ADDRESS).expect("mapped address")
}

/// An HTTP request over a fresh TLS connection; the whole answer.
async fn https_get(server: &Server, cert: &rustls::pki_types::CertificateDer<'static>, path: &str) -> String {
    let mut stream = connect_offering(server, cert, &[b"h2", b"http/1.1"])
        .await
        .expect("TLS");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    answer
}

/// Waits until the other side closes `stream` (end of stream or an error); how long it took.
async fn closed<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 256];
    tokio::time::timeout(within, async {
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("closed in time");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_port_allocates_with_a_members_credentials_and_still_serves_https() {
    let (server, cert) = https_and_turn("allocate", &[]).await;
    let https_port = server.addr.port();

    // A member joins over wss:// on the port and is told about TURN over TLS on it, after the
    // UDP and TCP entries.
    let ws = tls(&server, &cert).await;
    let url = format!("wss://{}/ws", server.addr);
    let (mut member, _) = tokio_tungstenite::client_async(url.as_str(), ws)
        .await
        .expect("wss");
    member
        .send(WsMessage::text(
            r#"{"type":"join","version":1,"room":"one-port","name":"Alice"}"#,
        ))
        .await
        .expect("send");
    let joined: serde_json::Value = loop {
        let frame = member.next().await.expect("frame").expect("message");
        let value: serde_json::Value = serde_json::from_str(frame.to_text().expect("text")).expect("JSON");
        if value["type"] == "joined" {
            break value;
        }
    };
    let ice = &joined["iceServers"][0];
    let urls: Vec<&str> = ice["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .map(|u| u.as_str().expect("url"))
        .collect();
    let turn_port = server.turn.expect("TURN is on").udp.port();
    assert_eq!(
        urls,
        [
            format!("stun:127.0.0.1:{turn_port}"),
            format!("turn:127.0.0.1:{turn_port}?transport=udp"),
            format!("turn:127.0.0.1:{turn_port}?transport=tcp"),
            format!("turns:127.0.0.1:{https_port}?transport=tcp"),
        ]
    );
    let username = ice["username"].as_str().expect("username");
    let password = ice["credential"].as_str().expect("credential");

    // TURN over TLS on the HTTPS port, no ALPN (Chromium's way): a Binding, the 401
    // challenge, then an allocation with the member's credentials.
    let mut turn = tls(&server, &cert).await;
    let local = turn.get_ref().0.local_addr().expect("addr");
    assert_eq!(turn.get_ref().1.alpn_protocol(), None);
    assert_eq!(binding(&mut turn, 1).await, local);
    let nonce = challenge_nonce(&roundtrip(&mut turn, &allocate_request([2; 12], None)).await);
    let reply = roundtrip(
        &mut turn,
        &allocate_request([3; 12], Some((username, password, &nonce))),
    )
    .await;
    let allocated = Message::parse(&reply).expect("stun");
    assert_eq!(
        allocated.class,
        Class::Success,
        "code {:?}",
        allocated.error_code()
    );
    assert!(allocated.xor_address(attr::XOR_RELAYED_ADDRESS).is_some());
    assert_eq!(server.counts().await["turnAllocations"], 1);

    // Plain HTTPS on the same port, meanwhile.
    let page = https_get(&server, &cert, "/healthz").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.ends_with(r#"{"status":"ok"}"#), "{page}");

    // A client that names TURN by ALPN (RFC 7443) is served as TURN too.
    let mut named = connect_offering(&server, &cert, &[b"stun.turn"])
        .await
        .expect("TLS");
    assert_eq!(named.get_ref().1.alpn_protocol(), Some(&b"stun.turn"[..]));
    assert_eq!(
        binding(&mut named, 4).await,
        named.get_ref().0.local_addr().expect("addr")
    );

    // The allocation lives as long as its connection.
    drop(turn);
    let started = Instant::now();
    while server.counts().await["turnAllocations"] != 0 {
        assert!(started.elapsed() < WAIT, "allocation outlived its connection");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_or_silence_after_the_handshake_is_closed_and_others_go_on() {
    let (server, cert) = https_and_turn("garbage", &["--http-header-timeout", "1"]).await;
    let mut turn = tls(&server, &cert).await;
    binding(&mut turn, 1).await;

    // Two zero bits but no magic cookie: neither STUN nor HTTP, closed at once.
    let mut garbage = tls(&server, &cert).await;
    garbage
        .write_all(&[0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0])
        .await
        .expect("write");
    let took = closed(&mut garbage, WAIT).await;
    assert!(took < Duration::from_millis(900), "closed after {took:?}");

    // Bytes that are not a request: the HTTP side answers 400 and closes.
    let mut junk = tls(&server, &cert).await;
    junk.write_all(b"\x7f\xff\xfe not http\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, junk.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // Silence after the handshake: closed after the header timeout.
    let mut silent = tls(&server, &cert).await;
    let took = closed(&mut silent, WAIT).await;
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");

    // The TURN client and HTTPS clients are unaffected.
    binding(&mut turn, 2).await;
    let page = https_get(&server, &cert, "/healthz").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_client_on_the_https_port_is_counted_once_in_turns_limits() {
    // One connection per address for each side.
    let (server, cert) =
        https_and_turn("limits", &["--turn-tcp-per-ip", "1", "--max-pending-per-ip", "1"]).await;
    let mut turn = tls(&server, &cert).await;
    binding(&mut turn, 1).await;

    // It holds this address's one TURN place: a second TURN client is closed...
    let mut second = tls(&server, &cert).await;
    let request = MessageBuilder::new(Class::Request, method::BINDING, [2; 12]).finish();
    second.write_all(&request).await.expect("write");
    closed(&mut second, WAIT).await;
    drop(second);
    // ...and no longer its HTTP place: HTTPS requests from the address are served (once the
    // refused one has given that place back, which may come just after it is closed).
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let page = https_get(&server, &cert, "/healthz").await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    }
    binding(&mut turn, 3).await;

    // Once it is gone, the place is free for another TURN client.
    drop(turn);
    let started = Instant::now();
    loop {
        let mut again = tls(&server, &cert).await;
        let request = MessageBuilder::new(Class::Request, method::BINDING, [4; 12]).finish();
        again.write_all(&request).await.expect("write");
        let mut chunk = [0u8; 256];
        match tokio::time::timeout(WAIT, again.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => break,
            _ => assert!(started.elapsed() < WAIT, "the place was not given back"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
