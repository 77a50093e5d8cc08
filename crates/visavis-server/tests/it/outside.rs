//! What the tests that run other programs (nginx, pebble) share: scratch directories, free
//! ports, finding the program, and TLS and `wss://` clients that trust one certificate.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use visavis_protocol::PROTOCOL_VERSION;

use super::WAIT;

/// A directory of its own under the system's temporary one, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("visavis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `N` distinct loopback ports that were free a moment ago.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held = [(); N].map(|()| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"));
    held.map(|l| l.local_addr().expect("addr").port())
}

/// The program `name` (looked up in PATH and the sbin directories, where Debian puts servers),
/// or `None` when it is not installed and `CI` is not set: the test is then skipped with a
/// message. In CI a missing program fails the test (`scripts/test.sh` installs them all).
pub fn installed(name: &str, package: &str) -> Option<String> {
    let found = [
        name.to_owned(),
        format!("/usr/sbin/{name}"),
        format!("/usr/bin/{name}"),
    ]
    .into_iter()
    .find(|path| {
        Command::new(path)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if found.is_none() {
        let missing =
            format!("{name} is not installed (Debian package {package}; scripts/test.sh installs it)");
        assert!(std::env::var_os("CI").is_none(), "{missing}");
        eprintln!("skipped: {missing}; with CI set this fails");
    }
    found
}

/// A TLS handshake from the loopback address `from` to 127.0.0.1:`port` for the name `host`,
/// trusting only `root`.
pub async fn try_tls(
    host: &str,
    port: u16,
    from: [u8; 4],
    root: &CertificateDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    try_tls_offering(host, port, from, root, &[]).await
}

/// As [`try_tls`], offering the ALPN protocols `alpn`.
pub async fn try_tls_offering(
    host: &str,
    port: u16,
    from: [u8; 4],
    root: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = TcpSocket::new_v4()?;
    socket.bind((from, 0).into())?;
    let tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
    let name = ServerName::try_from(host.to_owned()).expect("name");
    TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}

/// As [`try_tls`], which must succeed.
pub async fn tls(
    host: &str,
    port: u16,
    from: [u8; 4],
    root: &CertificateDer<'static>,
) -> TlsStream<TcpStream> {
    try_tls(host, port, from, root).await.expect("TLS handshake")
}

/// Reads `stream` to its end: the whole response.
pub async fn read_all(mut stream: impl AsyncReadExt + Unpin) -> String {
    let mut bytes = Vec::new();
    // A peer that closes without TLS close_notify ends the read with an error; what came
    // before it is the answer.
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .expect("answered");
    String::from_utf8(bytes).expect("UTF-8 response")
}

pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A WebSocket to `wss://host:port/ws` from `from`, as a browser's page at `origin` opens it,
/// with an `X-Forwarded-For` of the client's own making if `forged`.
pub async fn wss(
    host: &str,
    port: u16,
    from: [u8; 4],
    cert: &CertificateDer<'static>,
    origin: &str,
    forged: Option<&str>,
) -> Result<Wss, tungstenite::Error> {
    let mut request = format!("wss://{host}:{port}/ws").into_client_request()?;
    let headers = request.headers_mut();
    headers.insert("origin", origin.parse().expect("origin"));
    if let Some(forged) = forged {
        headers.insert("x-forwarded-for", forged.parse().expect("address"));
    }
    let stream = tls(host, port, from, cert).await;
    tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("upgrade answered")
        .map(|(ws, _)| ws)
}

/// The HTTP status and JSON `error` of a refused upgrade.
pub fn refusal(result: Result<Wss, tungstenite::Error>) -> (u16, String) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                .unwrap_or_else(|_| panic!("a JSON body: {response:?}"));
            (
                response.status().as_u16(),
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
        other => panic!("expected a refused upgrade, got {:?}", other.map(|_| ())),
    }
}

/// The next message of `kind` on `ws`, skipping others.
pub async fn next_of(ws: &mut Wss, kind: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = ws.next().await.expect("open").expect("a frame");
            if let Message::Text(text) = frame {
                let msg: Value = serde_json::from_str(&text).expect("JSON");
                if msg["type"] == kind {
                    return msg;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} in time"))
}

/// Joins `room` as `name`; returns the member id.
pub async fn join(ws: &mut Wss, room: &str, name: &str) -> u64 {
    let join = json!({"type": "join", "version": PROTOCOL_VERSION, "room": room, "name": name});
    ws.send(Message::text(join.to_string())).await.expect("send");
    next_of(ws, "joined").await["you"]["id"].as_u64().expect("an id")
}
