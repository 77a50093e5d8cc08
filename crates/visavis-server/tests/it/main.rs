//! Integration tests: `visavis_client` clients against the real server on an ephemeral port,
//! and its HTTP routes called through `App::router()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use clap::Parser;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use visavis_client::{Client, Received};
use visavis_protocol::{
    Candidate, ClientMsg, Description, EndReason, ErrorCode, Preconnect, Presence, RoomMsg, SdpKind,
    ServerMsg, SessionMsg, PROTOCOL_VERSION,
};
use visavis_server::Settings;

/// A folder of its own for one test, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `visavis-it-NAME-PID-N` in the temporary directory: unique to this call, so tests that
    /// run side by side never share one (a server's state file is locked by its process).
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("visavis-it-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    /// Writes `text` to `name` in it; returns the path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    }

    pub fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Defined before the modules so that they can use them too.

/// The next message of `$client` (a [`TestClient`]) must match `$pattern` (a [`ServerMsg`]
/// pattern, with an optional guard); evaluates to `$value` with the pattern's bindings, or `()`.
macro_rules! expect {
    ($client:expr, $pattern:pat $(if $guard:expr)? $(=> $value:expr)?) => {
        match $client.recv().await {
            $pattern $(if $guard)? => { $($value)? }
            other => panic!("expected {}, got {other:?}", stringify!($pattern $(if $guard)?)),
        }
    };
}

/// Reads `$client` until a message matches `$pattern`, skipping presence and other chatter;
/// evaluates as [`expect!`]. Match on the kind only and assert on the fields afterwards, so
/// that no message of that kind is skipped.
macro_rules! next_of {
    ($client:expr, $pattern:pat $(=> $value:expr)?) => {
        loop {
            if let $pattern = $client.recv().await {
                break $($value)?;
            }
        }
    };
}

mod acme;
mod api;
mod attack;
mod binary;
mod churn;
mod cluster;
mod config;
mod group;
mod https;
mod netcheck;
mod nginx;
mod one_port;
mod outside;
mod private;
mod reliability;
mod restart;
mod sfu;
mod sfu_worker;
mod systemd;
mod tokens;
mod turn;
mod webhooks;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    /// `ws://ADDR/ws`.
    url: String,
    /// The served app's routes, sharing its state: HTTP tests call them without a socket.
    router: Router,
    /// The metrics routes (`--metrics-listen`), likewise.
    metrics: Router,
    turn: Option<visavis_server::TurnAddrs>,
    /// The SFU's UDP (and ICE-TCP) address, if group calls use it.
    sfu: Option<std::net::SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// Its `--data-dir`, removed when the server is dropped.
    _data: TempDir,
}

impl Server {
    /// Starts a server with `args`; its TURN server gets an ephemeral port unless `args` say
    /// otherwise, so tests can run side by side.
    async fn start(args: &[&str]) -> Self {
        let turn_given = args
            .iter()
            .any(|a| a.starts_with("--turn-listen") || *a == "--no-turn" || *a == "--turn-url");
        let default_turn = if turn_given {
            &[][..]
        } else {
            &["--turn-listen", "127.0.0.1:0"][..]
        };
        // Most tests seat several members from this one test address in a room; the attack
        // tests, which are about that limit, set it themselves.
        let default_seats = if args.contains(&"--max-seats-per-ip") {
            &[][..]
        } else {
            &["--max-seats-per-ip", "1000"][..]
        };
        // A data directory of its own: tests run side by side, and the state file is locked.
        let data = TempDir::new("server");
        let data_dir = data.0.display().to_string();
        let default_data = if args.contains(&"--data-dir") {
            vec![]
        } else {
            vec!["--data-dir", &data_dir]
        };
        // The SFU too: its default port is fixed (3479).
        let default_sfu = if args
            .iter()
            .any(|a| a.starts_with("--sfu-listen") || a.starts_with("--group-media"))
        {
            &[][..]
        } else {
            &["--sfu-listen", "127.0.0.1:0"][..]
        };
        let settings = Settings::parse_from(
            std::iter::once("visavis")
                .chain(default_turn.iter().copied())
                .chain(default_sfu.iter().copied())
                .chain(default_seats.iter().copied())
                .chain(default_data)
                .chain(args.iter().copied()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let shutdown = CancellationToken::new();
        let app = visavis_server::App::start(listener, settings, shutdown.clone())
            .await
            .expect("start");
        let addr = app.local_addr().expect("addr");
        let (router, metrics, turn) = (app.router(), app.metrics_router(), app.turn_addrs());
        let sfu = app.sfu_addr();
        let task = tokio::spawn(app.serve());
        Self {
            addr,
            url: format!("ws://{addr}/ws"),
            router,
            metrics,
            turn,
            sfu,
            shutdown,
            task,
            _data: data,
        }
    }

    async fn client(&self) -> TestClient {
        TestClient::new(Client::connect(&self.url).await.expect("connect"))
    }

    /// A client joined to `room` as `name`; returns it with its member id.
    async fn joined(&self, room: &str, name: &str) -> (TestClient, u64) {
        let mut c = self.client().await;
        c.send(join(room, name)).await;
        let id = expect!(c, ServerMsg::Joined { you, .. } => you.id);
        (c, id)
    }

    /// GET `path` through the app's routes: status and body.
    async fn get(&self, path: &str) -> (StatusCode, String) {
        get(&self.router, path).await
    }

    /// The live counts, from the metrics (see [`counts_from_metrics`]).
    async fn counts(&self) -> Value {
        let (status, body) = get(&self.metrics, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        counts_from_metrics(&body)
    }
}

/// GET `path` through `router`: status and body.
async fn get(router: &Router, path: &str) -> (StatusCode, String) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8(body.to_vec()).expect("UTF-8 body"))
}

/// `GET path` over a real socket from `from` (a loopback address) to `addr`, the connection
/// closed after the answer: the whole response, within [`WAIT`].
async fn get_over_socket(addr: SocketAddr, from: [u8; 4], path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind((std::net::IpAddr::from(from), 0).into())
        .expect("bind");
    let mut tcp = socket.connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut response))
        .await
        .expect("answered")
        .expect("read");
    response
}

/// The counts in Prometheus text `metrics`, under short names: `sessions` (connected and
/// detached), `reconnecting` (detached), `members`, `rooms`, `calls`, `turnAllocations` (null
/// when the embedded TURN server is off).
fn counts_from_metrics(metrics: &str) -> Value {
    let values: std::collections::HashMap<&str, u64> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name, value.parse().ok()?))
        })
        .collect();
    let get = |name: &str| values.get(name).copied();
    let (connected, detached) = (
        get("visavis_sessions{state=\"connected\"}").expect("connected sessions"),
        get("visavis_sessions{state=\"detached\"}").expect("detached sessions"),
    );
    json!({
        "sessions": connected + detached,
        "reconnecting": detached,
        "members": get("visavis_members"),
        "rooms": get("visavis_rooms"),
        "calls": get("visavis_calls"),
        "turnAllocations": get("visavis_turn_allocations"),
    })
}

/// `join` with this protocol version.
fn join(room: &str, name: &str) -> SessionMsg {
    SessionMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        host_key: None,
        access_token: None,
    }
}

/// A [`visavis_client::Client`] for tests: every read has a timeout, every failure panics, and
/// `sn`s must count up by one with no message twice (the client is strict).
struct TestClient {
    client: Client,
}

impl TestClient {
    fn new(mut client: Client) -> Self {
        client.set_strict(true);
        Self { client }
    }

    async fn send(&mut self, msg: impl Into<ClientMsg>) {
        self.client.send(msg).await.expect("send");
    }

    /// Sends `msg` numbered with the next `cn`, which it returns.
    async fn send_numbered(&mut self, msg: impl Into<ClientMsg>) -> u64 {
        self.client.send_numbered(msg).await.expect("send")
    }

    /// Sends JSON the typed messages cannot express: fields a client may not set, bad input.
    async fn send_json(&mut self, msg: Value) {
        self.send_text(msg.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.client.send_text(text).await.expect("send");
    }

    /// The next message, with its text as sent (`ping` is answered and not returned).
    async fn recv_received(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.client.recv_received())
            .await
            .expect("timed out waiting for a message")
            .expect("a message in sequence")
    }

    async fn recv(&mut self) -> ServerMsg {
        self.recv_received().await.msg
    }

    /// The next message, which must be of `kind`, as JSON without its `sn`: for checks of the
    /// exact wire shape.
    async fn expect_json(&mut self, kind: &str) -> Value {
        let received = self.recv_received().await;
        let mut msg: Value = serde_json::from_str(received.text.as_str()).expect("JSON");
        msg.as_object_mut().expect("an object").remove("sn");
        assert_eq!(msg["type"], kind, "got {msg}");
        msg
    }

    /// The next message is an `error` with `code` and a message for people; returns its
    /// `request`.
    async fn expect_error(&mut self, code: ErrorCode) -> Option<String> {
        let (got, message, request) =
            expect!(self, ServerMsg::Error { code: got, message, request } => (got, message, request));
        assert_eq!(got, code, "{message}");
        assert!(!message.is_empty());
        request
    }

    /// Nothing arrives for a short while.
    async fn expect_silence(&mut self) {
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(200), self.client.recv()).await {
            panic!("expected nothing, got {got:?}");
        }
    }

    /// The close frame the server ends the connection with.
    async fn expect_close(&mut self) -> CloseCode {
        let code = tokio::time::timeout(WAIT, self.client.closed())
            .await
            .expect("timed out waiting for close")
            .expect("a clean close");
        CloseCode::from(code.expect("a close frame with a code"))
    }

    /// Ends the connection without a close frame, as when the network goes away.
    async fn drop_connection(&mut self) {
        self.client.drop_connection().await.expect("shutdown");
    }

    /// Takes the session to a new connection to `url`; returns the new client and `resumed`
    /// exactly as sent.
    async fn resume(self, url: &str) -> (Self, Value) {
        let (client, resumed) = tokio::time::timeout(WAIT, self.client.resume_received(url))
            .await
            .expect("timed out resuming")
            .expect("resumed");
        let resumed = serde_json::from_str(resumed.text.as_str()).expect("JSON");
        (Self { client }, resumed)
    }
}

/// Alice and Bob in `room`, with an accepted call; returns (alice, a, bob, b, call id).
async fn call_pair(server: &Server, room: &str) -> (TestClient, u64, TestClient, u64, u64) {
    let (mut alice, a) = server.joined(room, "Alice").await;
    let (mut bob, b) = server.joined(room, "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    alice.send(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    let incoming = expect!(bob, ServerMsg::Incoming { from, name, .. } => (from, name));
    assert_eq!(incoming, (a, "Alice".to_owned()));
    bob.send(RoomMsg::Accept { call_id: call }).await;
    expect!(alice, ServerMsg::Accepted { polite: false, .. });
    expect!(bob, ServerMsg::Accepted { polite: true, .. });
    (alice, a, bob, b, call)
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let server = Server::start(&["--frame-ancestors", "https://clinic.example.org"]).await;
    for path in [
        "/",
        "/r/room-1",
        "/js/app.js",
        "/style.css",
        "/healthz",
        "/no-such-file",
        "/ws",
    ] {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let response = server.router.clone().oneshot(request).await.expect("infallible");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .to_owned()
        };
        let csp = header("content-security-policy");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert!(
            csp.contains("frame-ancestors 'self' https://clinic.example.org"),
            "{csp}"
        );
        let permissions = header("permissions-policy");
        assert!(
            permissions.contains(r#"camera=(self "https://clinic.example.org")"#),
            "{permissions}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("referrer-policy"), "no-referrer");
        // Plain HTTP: no HSTS (it would pin a host to HTTPS that does not serve it).
        assert!(response.headers().get("strict-transport-security").is_none());
    }
}

#[tokio::test]
async fn the_sdk_is_served_with_cors_and_its_types() {
    let server = Server::start(&[]).await;
    let fetch = |path: &'static str| {
        let router = server.router.clone();
        async move {
            let request = Request::get(path)
                .header("origin", "https://clinic.example.org")
                .body(Body::empty())
                .expect("request");
            router.oneshot(request).await.expect("infallible")
        }
    };
    let header = |response: &axum::response::Response, name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    for (path, mime) in [
        ("/sdk/visavis.js", "javascript"),
        ("/sdk/client.js", "javascript"),
        ("/sdk/protocol.js", "javascript"),
        ("/sdk/visavis.d.ts", "application/typescript"),
    ] {
        let response = fetch(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let content_type = header(&response, "content-type").unwrap_or_default();
        assert!(content_type.contains(mime), "{path}: {content_type}");
        assert_eq!(
            header(&response, "access-control-allow-origin").as_deref(),
            Some("*"),
            "{path}"
        );
        assert_eq!(
            header(&response, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
    }
    // Only the SDK: the app's own files and pages stay same-origin.
    for path in ["/", "/js/app.js", "/sdk/no-such-file.js"] {
        let response = fetch(path).await;
        assert!(
            header(&response, "access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn frame_ancestors_must_be_origins() {
    for bad in ["https://x.org; script-src *", "clinic.example.org", "https://"] {
        let settings = Settings::parse_from([
            "visavis",
            "--no-turn",
            "--state",
            "none",
            "--frame-ancestors",
            bad,
        ]);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let started = visavis_server::App::start(listener, settings, CancellationToken::new()).await;
        assert!(started.is_err(), "{bad} accepted");
    }
}

#[tokio::test]
async fn health_says_only_up_and_counts_are_metrics_on_their_own_port() {
    let server = Server::start(&[]).await;
    let (_alice, _) = server.joined("room-1", "Alice").await;
    // Anyone may probe health; nobody learns from it how busy the server is.
    assert_eq!(
        server.get("/healthz").await,
        (StatusCode::OK, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(server.get("/metrics").await.0, StatusCode::NOT_FOUND);
    let (status, text) = get(&server.metrics, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "visavis_members 1",
        "visavis_rooms 1",
        "visavis_sessions{state=\"connected\"} 1",
        "# TYPE visavis_turn_relayed_packets counter",
        "visavis_turn_allocations 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn metrics_count_calls_by_outcome_errors_by_code_and_answer_times() {
    let server = Server::start(&["--no-turn"]).await;
    let (mut alice, _, mut bob, _, call) = call_pair(&server, "metrics").await;
    bob.send(RoomMsg::Hangup { call_id: call }).await;
    next_of!(alice, ServerMsg::CallEnded { .. });
    next_of!(bob, ServerMsg::CallEnded { .. });
    alice.send(RoomMsg::Hangup { call_id: call }).await;
    next_of!(alice, ServerMsg::Error { .. });
    // The wire shape of a quality report, after the call ended.
    alice
        .send_json(json!({"type": "call_quality", "callId": call, "report": {
            "path": "srflx", "transport": "udp", "rttAvgMs": 30, "rttMaxMs": 90,
            "lossAvgPermille": 20, "lossMaxPermille": 80, "freezes": 3}}))
        .await;
    alice.send(RoomMsg::Hangup { call_id: call }).await;
    next_of!(alice, ServerMsg::Error { .. }); // in order: the report before it was taken
    let (_, text) = get(&server.metrics, "/metrics").await;
    for line in [
        "visavis_call_rtt_seconds_count 1",
        "visavis_call_rtt_seconds_bucket{le=\"0.05\"} 1",
        "visavis_call_loss_ratio_count 1",
        "visavis_call_freezes_total 3",
        "visavis_call_paths_total{path=\"srflx\",transport=\"udp\"} 1",
        "visavis_calls_ended_total{reason=\"hangup\"} 1",
        "visavis_errors_total{code=\"unknown_call\"} 2",
        "visavis_call_answer_seconds_count 1",
        "visavis_call_answer_seconds_bucket{le=\"+Inf\"} 1",
        "visavis_calls 0",
        "visavis_lobby_waiting 0",
        "# TYPE visavis_relayed_messages counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
}

#[tokio::test]
async fn join_presence_and_leave() {
    let server = Server::start(&[]).await;
    let (mut alice, a) = server.joined("room-1", "Alice").await;
    let mut bob = server.client().await;
    bob.send(join("room-1", " 鲍勃 ")).await;
    // The wire shape of `joined`, field by field.
    let joined = bob.expect_json("joined").await;
    assert_eq!(joined["version"], 1);
    assert_eq!(joined["you"]["name"], "鲍勃");
    assert_eq!(
        joined["members"],
        json!([{"id": a, "name": "Alice", "host": false}])
    );
    // STUN + TURN over UDP and TCP, with a credential of this member's own.
    let urls = joined["iceServers"][0]["urls"].as_array().expect("urls");
    assert_eq!(urls.len(), 3, "{urls:?}");
    let id = joined["you"]["id"].as_u64().expect("an id");
    assert!(joined["iceServers"][0]["username"]
        .as_str()
        .is_some_and(|u| u.ends_with(&format!(":m{id}"))));
    // Ids are unpredictable, and exact as JavaScript numbers.
    assert!(id < 1 << 53 && a < 1 << 53 && id != a + 1, "{a} then {id}");
    assert_eq!(joined["ringTimeoutMs"], 30_000);
    let b = joined["you"]["id"].as_u64().expect("id");
    assert_eq!(
        alice.expect_json("member_joined").await["member"],
        json!({"id": b, "name": "鲍勃", "host": false})
    );
    assert_eq!(
        server.counts().await,
        json!({"sessions": 2, "reconnecting": 0, "members": 2, "rooms": 1, "calls": 0, "turnAllocations": 0})
    );

    // Closing the connection (a close frame, here without a code: the person left) removes
    // the member at once.
    bob.client.ws().close(None).await.expect("close");
    assert_eq!(expect!(alice, ServerMsg::MemberLeft { id } => id), b);
    alice.send(RoomMsg::Leave).await;
    assert_eq!(expect!(alice, ServerMsg::Left { room } => room), "room-1");
    let counts = server.counts().await;
    assert_eq!(
        (counts["members"].as_u64(), counts["rooms"].as_u64()),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn full_call_relays_signalling_with_from_stamped() {
    let server = Server::start(&[]).await;
    let (mut alice, a, mut bob, b, call) = call_pair(&server, "r").await;

    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    // The client tries to forge `from`; the server stamps the truth.
    alice
        .send_json(json!({"type": "description", "callId": call, "description": offer, "from": 999}))
        .await;
    let got = bob.expect_json("description").await;
    assert_eq!((got["from"].as_u64(), &got["description"]), (Some(a), &offer));

    let cand: Candidate = serde_json::from_str(
        r#"{"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}"#,
    )
    .expect("candidate");
    bob.send(RoomMsg::Candidate {
        call_id: call,
        to: None,
        candidate: cand.clone(),
    })
    .await;
    // Relayed as it was written, to the byte.
    let got = expect!(alice, ServerMsg::Candidate { from, candidate, .. } => (from, candidate));
    assert_eq!(got, (b, cand));

    bob.send(RoomMsg::Media {
        call_id: call,
        audio: false,
        video: true,
        screen: false,
        unavailable: Default::default(),
    })
    .await;
    let got = expect!(alice, ServerMsg::Media { audio, video, .. } => (audio, video));
    assert_eq!(got, (false, true));
    assert_eq!(server.counts().await["calls"], 1);

    bob.send(RoomMsg::Hangup { call_id: call }).await;
    for (client, peer) in [(&mut alice, b), (&mut bob, a)] {
        let ended = client.expect_json("call_ended").await;
        assert_eq!(
            ended,
            json!({"type": "call_ended", "callId": call, "peer": peer, "reason": "hangup", "by": b})
        );
    }
    assert_eq!(server.counts().await["calls"], 0);
}

#[tokio::test]
async fn peer_vanishing_mid_call_ends_it_for_the_other_after_the_grace_period() {
    let server = Server::start(&["--resume-grace", "1"]).await;
    let (mut alice, _a, bob, b, call) = call_pair(&server, "r").await;
    drop(bob); // no close frame: as if the network went away
    let state = expect!(alice, ServerMsg::MemberState { id, state, .. } => (id, state));
    assert_eq!(state, (b, Presence::Reconnecting));
    let ended = expect!(alice, ServerMsg::CallEnded { call_id, reason, .. } => (call_id, reason));
    assert_eq!(ended, (call, EndReason::Left));
    assert_eq!(expect!(alice, ServerMsg::MemberLeft { id } => id), b);
}

#[tokio::test]
async fn ring_timeout_ends_as_no_answer_for_both() {
    let server = Server::start(&["--ring-timeout", "1"]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    alice.send(RoomMsg::Invite { to: b }).await;
    expect!(alice, ServerMsg::Ringing { .. });
    expect!(bob, ServerMsg::Incoming { .. });
    for client in [&mut alice, &mut bob] {
        expect!(
            client,
            ServerMsg::CallEnded {
                reason: EndReason::NoAnswer,
                ..
            }
        );
    }
}

#[tokio::test]
async fn decline_cancel_and_busy() {
    let server = Server::start(&["--redial-delay", "0"]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    let (mut carol, c) = server.joined("r", "Carol").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    expect!(alice, ServerMsg::MemberJoined { .. });
    expect!(bob, ServerMsg::MemberJoined { .. });

    alice.send(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    // Carol calls Bob while he rings: busy for Carol; Bob only hears that she tried.
    carol.send(RoomMsg::Invite { to: b }).await;
    let busy = expect!(carol, ServerMsg::CallEnded { reason, peer, .. } => (reason, peer));
    assert_eq!(busy, (EndReason::Busy, b));
    let tried = expect!(bob, ServerMsg::CallAttempt { from, name } => (from, name));
    assert_eq!(tried, (c, "Carol".to_owned()));
    bob.send(RoomMsg::Decline { call_id: call }).await;
    expect!(
        alice,
        ServerMsg::CallEnded {
            reason: EndReason::Declined,
            ..
        }
    );
    expect!(
        bob,
        ServerMsg::CallEnded {
            reason: EndReason::Declined,
            ..
        }
    );
    bob.expect_silence().await;

    alice.send(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    alice.send(RoomMsg::Cancel { call_id: call }).await;
    expect!(
        alice,
        ServerMsg::CallEnded {
            reason: EndReason::Cancelled,
            ..
        }
    );
    expect!(
        bob,
        ServerMsg::CallEnded {
            reason: EndReason::Cancelled,
            ..
        }
    );
}

#[tokio::test]
async fn both_calling_each_other_at_once_gives_one_call() {
    let server = Server::start(&[]).await;
    let (mut alice, a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    // Both invites are on the wire before either side has read anything.
    alice.send(RoomMsg::Invite { to: b }).await;
    bob.send(RoomMsg::Invite { to: a }).await;
    let mut accepted = Vec::new();
    for client in [&mut alice, &mut bob] {
        loop {
            match client.recv().await {
                ServerMsg::Ringing { .. } | ServerMsg::Incoming { .. } => continue,
                ServerMsg::Accepted { call_id, .. } => {
                    accepted.push(call_id);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(accepted[0], accepted[1], "one call id for both");
    assert_eq!(server.counts().await["calls"], 1);
}

#[tokio::test]
async fn capacity_race_admits_exactly_one_for_the_last_seat() {
    let server = Server::start(&["--room-capacity", "2"]).await;
    let (_alice, _) = server.joined("r", "Alice").await;
    let mut racers = Vec::new();
    for _ in 0..40 {
        racers.push(server.client().await);
    }
    // Send every join before reading any reply.
    for (i, c) in racers.iter_mut().enumerate() {
        c.send(join("r", &format!("racer {i}"))).await;
    }
    let mut joined = 0;
    let mut full = 0;
    for c in &mut racers {
        match c.recv().await {
            ServerMsg::Joined { .. } => joined += 1,
            ServerMsg::Error {
                code: ErrorCode::RoomFull,
                ..
            } => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((joined, full), (1, 39));
    assert_eq!(server.counts().await["members"], 2);
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_the_connection_survives() {
    // Without pre-connecting, so that an offer in a ringing call is out of place.
    let server = Server::start(&["--preconnect", "off"]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    let (_xi, x) = server.joined("other-room", "Xi").await;
    expect!(alice, ServerMsg::MemberJoined { .. });

    alice.send_text("{not json".into()).await;
    alice.expect_error(ErrorCode::BadMessage).await;
    alice.send_json(json!({"type": "teleport"})).await;
    assert_eq!(
        alice.expect_error(ErrorCode::UnknownType).await.as_deref(),
        Some("teleport")
    );
    alice.send_json(json!({"type": "invite"})).await;
    alice.expect_error(ErrorCode::BadMessage).await;
    alice
        .send_text(format!(
            r#"{{"type":"invite","pad":"{}"}}"#,
            "x".repeat(100 * 1024)
        ))
        .await;
    alice.expect_error(ErrorCode::MessageTooLarge).await;
    alice
        .client
        .ws()
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("send");
    alice.expect_error(ErrorCode::BadMessage).await;
    alice.send(RoomMsg::Invite { to: x }).await;
    alice.expect_error(ErrorCode::UnknownMember).await;
    let offer = || Description::new(SdpKind::Offer, "");
    alice
        .send(RoomMsg::Description {
            call_id: 1,
            to: None,
            description: offer(),
        })
        .await;
    alice.expect_error(ErrorCode::UnknownCall).await;
    alice.send(join("r", "again")).await;
    alice.expect_error(ErrorCode::AlreadyJoined).await;

    // An offer while the call only rings is refused too.
    alice.send(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    alice
        .send(RoomMsg::Description {
            call_id: call,
            to: None,
            description: offer(),
        })
        .await;
    alice.expect_error(ErrorCode::InvalidCallState).await;
    bob.expect_silence().await;

    // After all that, the connection still works.
    alice.send(RoomMsg::Cancel { call_id: call }).await;
    expect!(
        alice,
        ServerMsg::CallEnded {
            reason: EndReason::Cancelled,
            ..
        }
    );

    let mut fresh = server.client().await;
    fresh.send(RoomMsg::Invite { to: b }).await;
    fresh.expect_error(ErrorCode::NotJoined).await;
    fresh
        .send(SessionMsg::Join {
            version: 2,
            room: "r".into(),
            name: "n".into(),
            host_key: None,
            access_token: None,
        })
        .await;
    fresh.expect_error(ErrorCode::UnsupportedVersion).await;
    fresh.send(join("a/b", "n")).await;
    fresh.expect_error(ErrorCode::InvalidRoom).await;
    fresh.send(join("r", "   ")).await;
    fresh.expect_error(ErrorCode::InvalidName).await;
}

#[tokio::test]
async fn abusive_frame_closes_only_that_connection() {
    let server = Server::start(&[
        "--max-message-size",
        "1024",
        "--max-description-size",
        "2048",
        "--resume-grace",
        "1",
    ])
    .await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    // 64 KiB is over 16 × the 1 KiB limit (and the description limit): the connection is
    // closed with 1009.
    let _ = bob.client.send_text("x".repeat(64 * 1024)).await;
    assert_eq!(bob.expect_close().await, CloseCode::Size);
    assert_eq!(expect!(alice, ServerMsg::MemberState { id, .. } => id), b);
    assert_eq!(expect!(alice, ServerMsg::MemberLeft { id } => id), b);
    alice.send(RoomMsg::Leave).await;
    expect!(alice, ServerMsg::Left { .. });
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1001_and_returns() {
    let server = Server::start(&[]).await;
    let (mut alice, _) = server.joined("r", "Alice").await;
    let mut idle = server.client().await;
    let started = std::time::Instant::now();
    server.shutdown.cancel();
    assert_eq!(alice.expect_close().await, CloseCode::Away);
    assert_eq!(idle.expect_close().await, CloseCode::Away);
    let result = tokio::time::timeout(WAIT, server.task)
        .await
        .expect("run returned in time");
    assert!(result.expect("no panic").is_ok());
    assert!(started.elapsed() < WAIT);
}

#[tokio::test]
async fn serves_the_web_app_and_json_errors() {
    let server = Server::start(&["--no-turn"]).await;
    let (status, index) = server.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(index.contains("<title>visavis</title>"), "{index}");
    let (status, room_page) = server.get("/r/consult-42").await;
    assert_eq!((status, room_page), (StatusCode::OK, index));
    let (status, body) = server.get("/no/such/file.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body: Value = serde_json::from_str(&body).expect("json error body");
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn requests_that_are_not_websocket_handshakes_get_json_errors() {
    let server = Server::start(&["--no-turn"]).await;
    let ws = |version: &str| {
        Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(Body::empty())
            .expect("request")
    };
    let cases = [
        (
            Request::get("/ws").body(Body::empty()).expect("request"),
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
        ),
        (
            ws("8"),
            StatusCode::UPGRADE_REQUIRED,
            "unsupported_websocket_version",
        ),
        // Without a connection to take over (no hyper upgrade), nothing can be switched.
        (ws("13"), StatusCode::UPGRADE_REQUIRED, "cannot_upgrade"),
    ];
    // `/ws` needs the peer's address, which a socketless request does not have.
    let peer = axum::extract::connect_info::MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1)));
    let router = server.router.clone().layer(peer);
    for (request, status, code) in cases {
        let response = router.clone().oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), status, "{code}");
        if status == StatusCode::UPGRADE_REQUIRED && code != "cannot_upgrade" {
            assert_eq!(response.headers()["sec-websocket-version"], "13");
        }
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&body).expect("json error body");
        assert_eq!(body["error"], code);
    }
}

#[tokio::test]
async fn a_ringing_call_preconnects_through_the_relay_by_default_and_not_without_turn() {
    let server = Server::start(&[]).await;
    let mut alice = server.client().await;
    alice.send(join("r", "Alice")).await;
    let preconnect = expect!(alice, ServerMsg::Joined { preconnect, .. } => preconnect);
    assert_eq!(preconnect, Preconnect::Relay);
    let (mut bob, b) = server.joined("r", "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    alice.send(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    let offer = Description::new(SdpKind::Offer, "v=0");
    alice
        .send(RoomMsg::Description {
            call_id: call,
            to: None,
            description: offer.clone(),
        })
        .await;
    let got = expect!(bob, ServerMsg::Description { description, .. } => description);
    assert_eq!(got, offer);
    bob.send(RoomMsg::Decline { call_id: call }).await;
    expect!(alice, ServerMsg::CallEnded { .. });

    let server = Server::start(&["--no-turn"]).await;
    let mut c = server.client().await;
    c.send(join("r", "Alice")).await;
    let preconnect = expect!(c, ServerMsg::Joined { preconnect, .. } => preconnect);
    assert_eq!(preconnect, Preconnect::Off);
}

#[tokio::test]
async fn no_turn_means_no_ice_servers_and_turn_url_hands_out_external_ones() {
    let server = Server::start(&["--no-turn"]).await;
    let mut c = server.client().await;
    c.send(join("r", "A")).await;
    let ice = expect!(c, ServerMsg::Joined { ice_servers, .. } => ice_servers);
    assert!(ice.is_empty(), "{ice:?}");

    let server = Server::start(&[
        "--turn-url",
        "turn:turn.example.org:3478?transport=udp",
        "--turn-secret",
        "shh",
    ])
    .await;
    let mut c = server.client().await;
    c.send(join("r", "A")).await;
    let ice = expect!(c, ServerMsg::Joined { ice_servers, .. } => ice_servers);
    assert_eq!(ice[0].urls, ["turn:turn.example.org:3478?transport=udp"]);
    let username = ice[0].username.as_deref().expect("username");
    assert_eq!(
        ice[0].credential.as_deref(),
        Some(visavis_turn::RestSecret::new("shh").password(username).as_str())
    );
    assert_eq!(
        server.counts().await["turnAllocations"],
        Value::Null,
        "embedded server off"
    );
}
