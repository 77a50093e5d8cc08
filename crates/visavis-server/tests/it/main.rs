//! Integration tests: real WebSocket clients against the real server on an ephemeral port.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use visavis_server::Settings;

mod binary;
mod churn;
mod group;
mod reliability;
mod turn;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    turn: Option<visavis_server::TurnAddrs>,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
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
        let settings = Settings::parse_from(
            std::iter::once("visavis")
                .chain(default_turn.iter().copied())
                .chain(args.iter().copied()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let app = visavis_server::App::start(listener, settings, shutdown.clone())
            .await
            .expect("start");
        let turn = app.turn_addrs();
        let task = tokio::spawn(app.serve());
        Self {
            addr,
            turn,
            shutdown,
            task,
        }
    }

    async fn client(&self) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.addr))
            .await
            .expect("connect");
        Client { ws, last_sn: 0 }
    }

    /// A client joined to `room` as `name`; returns it with its member id.
    async fn joined(&self, room: &str, name: &str) -> (Client, u64) {
        let mut c = self.client().await;
        c.send(json!({"type": "join", "version": 1, "room": room, "name": name}))
            .await;
        let joined = c.expect("joined").await;
        let id = joined["you"]["id"].as_u64().expect("member id");
        (c, id)
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr.to_string(), path).await
    }

    async fn health(&self) -> Value {
        let (status, body) = self.get("/healthz").await;
        assert_eq!(status, 200);
        serde_json::from_str(&body).expect("healthz json")
    }
}

/// A plain HTTP/1.1 GET: status and body.
async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = String::new();
    tcp.read_to_string(&mut buf).await.expect("read");
    let status = buf[9..12].parse().expect("status");
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The last session sequence number received.
    last_sn: u64,
}

impl Client {
    async fn send(&mut self, msg: Value) {
        self.send_text(msg.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next JSON message (skipping control frames and heartbeats), without its session
    /// sequence number `sn` (checked to count up by one).
    async fn recv(&mut self) -> Value {
        loop {
            let mut msg = self.recv_raw().await;
            if msg["type"] == "ping" {
                let ack = self.last_sn;
                self.send(json!({"type": "pong", "ack": ack})).await;
                continue;
            }
            if let Some(sn) = msg.as_object_mut().and_then(|m| m.remove("sn")) {
                let sn = sn.as_u64().expect("sn is a number");
                assert_eq!(sn, self.last_sn + 1, "sequence numbers count up by one: {msg}");
                self.last_sn = sn;
                // Acknowledge every 64 messages, as clients do.
                if sn % 64 == 0 {
                    self.send(json!({"type": "pong", "ack": sn})).await;
                }
            }
            return msg;
        }
    }

    /// The next JSON message exactly as sent.
    async fn recv_raw(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a message")
                .expect("connection ended")
                .expect("websocket error");
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("server sent JSON");
            }
        }
    }

    /// Reads until a message of `kind` arrives, skipping presence and other chatter.
    async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let msg = self.recv().await;
            if msg["type"] == kind {
                return msg;
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        let msg = self.recv().await;
        assert_eq!(msg["type"], kind, "got {msg}");
        msg
    }

    async fn expect_error(&mut self, code: &str) -> Value {
        let msg = self.expect("error").await;
        assert_eq!(msg["code"], code, "got {msg}");
        assert!(msg["message"].as_str().is_some_and(|m| !m.is_empty()));
        msg
    }

    /// Nothing arrives for a short while.
    async fn expect_silence(&mut self) {
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(200), self.ws.next()).await
        {
            panic!("expected nothing, got {t}");
        }
    }

    /// The close frame the server ends the connection with.
    async fn expect_close(&mut self) -> CloseCode {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for close")
            {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code,
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

/// Alice and Bob in `room`, with an accepted call; returns (alice, a, bob, b, call id).
async fn call_pair(server: &Server, room: &str) -> (Client, u64, Client, u64, u64) {
    let (mut alice, a) = server.joined(room, "Alice").await;
    let (mut bob, b) = server.joined(room, "Bob").await;
    alice.expect("member_joined").await;
    alice.send(json!({"type": "invite", "to": b})).await;
    let ringing = alice.expect("ringing").await;
    let call = ringing["callId"].as_u64().expect("call id");
    let incoming = bob.expect("incoming").await;
    assert_eq!(
        (incoming["from"].as_u64(), incoming["name"].as_str()),
        (Some(a), Some("Alice"))
    );
    bob.send(json!({"type": "accept", "callId": call})).await;
    assert_eq!(alice.expect("accepted").await["polite"], false);
    assert_eq!(bob.expect("accepted").await["polite"], true);
    (alice, a, bob, b, call)
}

#[tokio::test]
async fn join_presence_and_leave() {
    let server = Server::start(&[]).await;
    let (mut alice, a) = server.joined("room-1", "Alice").await;
    let mut bob = server.client().await;
    bob.send(json!({"type": "join", "version": 1, "room": "room-1", "name": " 鲍勃 "}))
        .await;
    let joined = bob.expect("joined").await;
    assert_eq!(joined["version"], 1);
    assert_eq!(joined["you"]["name"], "鲍勃");
    assert_eq!(joined["members"], json!([{"id": a, "name": "Alice"}]));
    // STUN + TURN over UDP and TCP, with a credential of this member's own.
    let urls = joined["iceServers"][0]["urls"].as_array().expect("urls");
    assert_eq!(urls.len(), 3, "{urls:?}");
    assert!(joined["iceServers"][0]["username"]
        .as_str()
        .is_some_and(|u| u.ends_with(":m2")));
    assert_eq!(joined["ringTimeoutMs"], 30_000);
    let b = joined["you"]["id"].as_u64().expect("id");
    assert_eq!(
        alice.expect("member_joined").await["member"],
        json!({"id": b, "name": "鲍勃"})
    );
    assert_eq!(
        server.health().await,
        json!({"status": "ok", "sessions": 2, "reconnecting": 0, "members": 2, "rooms": 1, "calls": 0, "turnAllocations": 0})
    );

    // Closing the connection (a close frame: the person left) removes the member at once.
    bob.ws.close(None).await.expect("close");
    assert_eq!(alice.expect("member_left").await["id"], b);
    alice.send(json!({"type": "leave"})).await;
    assert_eq!(alice.expect("left").await["room"], "room-1");
    let health = server.health().await;
    assert_eq!(
        (health["members"].as_u64(), health["rooms"].as_u64()),
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
        .send(json!({"type": "description", "callId": call, "description": offer, "from": 999}))
        .await;
    let got = bob.expect("description").await;
    assert_eq!((got["from"].as_u64(), &got["description"]), (Some(a), &offer));

    let cand = json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    bob.send(json!({"type": "candidate", "callId": call, "candidate": cand}))
        .await;
    let got = alice.expect("candidate").await;
    assert_eq!((got["from"].as_u64(), &got["candidate"]), (Some(b), &cand));

    bob.send(json!({"type": "media", "callId": call, "audio": false, "video": true}))
        .await;
    let got = alice.expect("media").await;
    assert_eq!(
        (got["audio"].as_bool(), got["video"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(server.health().await["calls"], 1);

    bob.send(json!({"type": "hangup", "callId": call})).await;
    for (client, peer) in [(&mut alice, b), (&mut bob, a)] {
        let ended = client.expect("call_ended").await;
        assert_eq!(
            ended,
            json!({"type": "call_ended", "callId": call, "peer": peer, "reason": "hangup", "by": b})
        );
    }
    assert_eq!(server.health().await["calls"], 0);
}

#[tokio::test]
async fn peer_vanishing_mid_call_ends_it_for_the_other_after_the_grace_period() {
    let server = Server::start(&["--resume-grace", "1"]).await;
    let (mut alice, _a, bob, b, call) = call_pair(&server, "r").await;
    drop(bob); // no close frame: as if the network went away
    let state = alice.expect("member_state").await;
    assert_eq!(
        (state["id"].as_u64(), state["state"].as_str()),
        (Some(b), Some("reconnecting"))
    );
    let ended = alice.expect("call_ended").await;
    assert_eq!(
        (ended["callId"].as_u64(), ended["reason"].as_str()),
        (Some(call), Some("left"))
    );
    assert_eq!(alice.expect("member_left").await["id"], b);
}

#[tokio::test]
async fn ring_timeout_ends_as_no_answer_for_both() {
    let server = Server::start(&["--ring-timeout", "1"]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    alice.expect("member_joined").await;
    alice.send(json!({"type": "invite", "to": b})).await;
    alice.expect("ringing").await;
    bob.expect("incoming").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.expect("call_ended").await["reason"], "no_answer");
    }
}

#[tokio::test]
async fn decline_cancel_and_busy() {
    let server = Server::start(&[]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    let (mut carol, _c) = server.joined("r", "Carol").await;
    alice.expect("member_joined").await;
    alice.expect("member_joined").await;
    bob.expect("member_joined").await;

    alice.send(json!({"type": "invite", "to": b})).await;
    let call = alice.expect("ringing").await["callId"].clone();
    bob.expect("incoming").await;
    // Carol calls Bob while he rings: busy, and only Carol hears of it.
    carol.send(json!({"type": "invite", "to": b})).await;
    let busy = carol.expect("call_ended").await;
    assert_eq!(
        (busy["reason"].as_str(), busy["peer"].as_u64()),
        (Some("busy"), Some(b))
    );
    bob.send(json!({"type": "decline", "callId": call})).await;
    assert_eq!(alice.expect("call_ended").await["reason"], "declined");
    assert_eq!(bob.expect("call_ended").await["reason"], "declined");
    bob.expect_silence().await;

    alice.send(json!({"type": "invite", "to": b})).await;
    let call = alice.expect("ringing").await["callId"].clone();
    bob.expect("incoming").await;
    alice.send(json!({"type": "cancel", "callId": call})).await;
    assert_eq!(alice.expect("call_ended").await["reason"], "cancelled");
    assert_eq!(bob.expect("call_ended").await["reason"], "cancelled");
}

#[tokio::test]
async fn both_calling_each_other_at_once_gives_one_call() {
    let server = Server::start(&[]).await;
    let (mut alice, a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    alice.expect("member_joined").await;
    // Both invites are on the wire before either side has read anything.
    alice.send(json!({"type": "invite", "to": b})).await;
    bob.send(json!({"type": "invite", "to": a})).await;
    let mut accepted = Vec::new();
    for client in [&mut alice, &mut bob] {
        loop {
            let msg = client.recv().await;
            match msg["type"].as_str() {
                Some("ringing" | "incoming") => continue,
                Some("accepted") => {
                    accepted.push(msg["callId"].clone());
                    break;
                }
                _ => panic!("unexpected {msg}"),
            }
        }
    }
    assert_eq!(accepted[0], accepted[1], "one call id for both");
    assert_eq!(server.health().await["calls"], 1);
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
        c.send(json!({"type": "join", "version": 1, "room": "r", "name": format!("racer {i}")}))
            .await;
    }
    let mut joined = 0;
    let mut full = 0;
    for c in &mut racers {
        let msg = c.recv().await;
        match (msg["type"].as_str(), msg["code"].as_str()) {
            (Some("joined"), _) => joined += 1,
            (Some("error"), Some("room_full")) => full += 1,
            _ => panic!("unexpected {msg}"),
        }
    }
    assert_eq!((joined, full), (1, 39));
    assert_eq!(server.health().await["members"], 2);
}

#[tokio::test]
async fn bad_input_gets_a_specific_error_and_the_connection_survives() {
    let server = Server::start(&[]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    let (_xi, x) = server.joined("other-room", "Xi").await;
    alice.expect("member_joined").await;

    alice.send_text("{not json".into()).await;
    alice.expect_error("bad_message").await;
    alice.send(json!({"type": "teleport"})).await;
    assert_eq!(alice.expect_error("unknown_type").await["request"], "teleport");
    alice.send(json!({"type": "invite"})).await;
    alice.expect_error("bad_message").await;
    alice
        .send_text(format!(
            r#"{{"type":"invite","pad":"{}"}}"#,
            "x".repeat(100 * 1024)
        ))
        .await;
    alice.expect_error("message_too_large").await;
    alice.ws.send(Message::binary(vec![1, 2, 3])).await.expect("send");
    alice.expect_error("bad_message").await;
    alice.send(json!({"type": "invite", "to": x})).await;
    alice.expect_error("unknown_member").await;
    alice
        .send(json!({"type": "description", "callId": 1, "description": {"type": "offer", "sdp": ""}}))
        .await;
    alice.expect_error("unknown_call").await;
    alice
        .send(json!({"type": "join", "version": 1, "room": "r", "name": "again"}))
        .await;
    alice.expect_error("already_joined").await;

    // An offer while the call only rings is refused too.
    alice.send(json!({"type": "invite", "to": b})).await;
    let call = alice.expect("ringing").await["callId"].clone();
    bob.expect("incoming").await;
    alice
        .send(json!({"type": "description", "callId": call, "description": {"type": "offer", "sdp": ""}}))
        .await;
    alice.expect_error("invalid_call_state").await;
    bob.expect_silence().await;

    // After all that, the connection still works.
    alice.send(json!({"type": "cancel", "callId": call})).await;
    assert_eq!(alice.expect("call_ended").await["reason"], "cancelled");

    let mut fresh = server.client().await;
    fresh.send(json!({"type": "invite", "to": b})).await;
    fresh.expect_error("not_joined").await;
    fresh
        .send(json!({"type": "join", "version": 2, "room": "r", "name": "n"}))
        .await;
    fresh.expect_error("unsupported_version").await;
    fresh
        .send(json!({"type": "join", "version": 1, "room": "a/b", "name": "n"}))
        .await;
    fresh.expect_error("invalid_room").await;
    fresh
        .send(json!({"type": "join", "version": 1, "room": "r", "name": "   "}))
        .await;
    fresh.expect_error("invalid_name").await;
}

#[tokio::test]
async fn abusive_frame_closes_only_that_connection() {
    let server = Server::start(&["--max-message-size", "1024", "--resume-grace", "1"]).await;
    let (mut alice, _a) = server.joined("r", "Alice").await;
    let (mut bob, b) = server.joined("r", "Bob").await;
    alice.expect("member_joined").await;
    // 64 KiB is over 16 × the 1 KiB limit: the connection is dropped.
    let _ = bob.ws.send(Message::text("x".repeat(64 * 1024))).await;
    assert_eq!(alice.expect("member_state").await["id"], b);
    assert_eq!(alice.expect("member_left").await["id"], b);
    alice.send(json!({"type": "leave"})).await;
    alice.expect("left").await;
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
    let server = Server::start(&[]).await;
    let (status, index) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(index.contains("<title>visavis</title>"), "{index}");
    let (status, room_page) = server.get("/r/consult-42").await;
    assert_eq!((status, room_page), (200, index));
    let (status, body) = server.get("/no/such/file.js").await;
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).expect("json error body");
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn no_turn_means_no_ice_servers_and_turn_url_hands_out_external_ones() {
    let server = Server::start(&["--no-turn"]).await;
    let (mut c, _) = (server.client().await, 0);
    c.send(json!({"type": "join", "version": 1, "room": "r", "name": "A"}))
        .await;
    assert_eq!(c.expect("joined").await["iceServers"], json!([]));

    let server = Server::start(&[
        "--turn-url",
        "turn:turn.example.org:3478?transport=udp",
        "--turn-secret",
        "shh",
    ])
    .await;
    let mut c = server.client().await;
    c.send(json!({"type": "join", "version": 1, "room": "r", "name": "A"}))
        .await;
    let ice = c.expect("joined").await["iceServers"][0].clone();
    assert_eq!(ice["urls"], json!(["turn:turn.example.org:3478?transport=udp"]));
    let username = ice["username"].as_str().expect("username");
    assert_eq!(
        ice["credential"],
        visavis_turn::RestSecret::new("shh").password(username)
    );
    assert_eq!(
        server.health().await["turnAllocations"],
        Value::Null,
        "embedded server off"
    );
}
