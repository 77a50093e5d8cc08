//! Liveness, session resume, and every connection limit, against the real server.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::StatusCode;
use visavis_client::{Client, ClientError};
use visavis_protocol::{
    Description, EndReason, ErrorCode, Presence, RoomMsg, SdpKind, ServerMsg, SessionFields, SessionMsg,
    PROTOCOL_VERSION,
};

use super::{join, Server, TestClient};

/// Joins and returns the client, its member id and its resume token.
async fn join_with_token(server: &Server, room: &str, name: &str) -> (TestClient, u64, String) {
    let mut c = server.client().await;
    c.send(join(room, name)).await;
    // The session fields are all there, numbers where they should be.
    let (id, token) = expect!(c, ServerMsg::Joined {
        you,
        session: Some(SessionFields { token, .. }),
        ..
    } => (you.id, token));
    assert_eq!(token.len(), 32, "128 random bits");
    (c, id, token)
}

/// A `resume` by hand, for tokens that are not the client's own.
fn resume(token: &str, last_sn: u64) -> SessionMsg {
    SessionMsg::Resume {
        version: PROTOCOL_VERSION,
        token: token.into(),
        last_sn,
    }
}

fn chat(text: &str) -> RoomMsg {
    RoomMsg::Chat { text: text.into() }
}

#[tokio::test]
async fn a_silent_client_is_declared_reconnecting_within_the_heartbeat_timeout() {
    let server = Server::start(&["--heartbeat-timeout", "2", "--resume-grace", "30"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    let (_bob, bob_id, _) = join_with_token(&server, "r", "Bob").await; // never answers again
    expect!(alice, ServerMsg::MemberJoined { .. });
    let silent_since = Instant::now();
    let state = next_of!(alice, ServerMsg::MemberState { id, state } => (id, state));
    let detected = silent_since.elapsed();
    assert_eq!(state, (bob_id, Presence::Reconnecting));
    println!(
        "detection: silent client declared reconnecting after {} ms",
        detected.as_millis()
    );
    assert!(
        detected <= Duration::from_millis(2_000 + 2_000 / 3 + 300),
        "{detected:?}"
    );
    assert!(
        detected >= Duration::from_millis(1_900),
        "not before the timeout: {detected:?}"
    );
    assert_eq!(server.counts().await["reconnecting"], 1);
}

#[tokio::test]
async fn resume_replays_what_was_missed_both_ways_without_loss_or_duplicates() {
    let server = Server::start(&["--resume-grace", "10"]).await;
    let (mut alice, a, _) = join_with_token(&server, "r", "Alice").await;
    let (mut bob, b, _) = join_with_token(&server, "r", "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    assert_eq!(alice.send_numbered(RoomMsg::Invite { to: b }).await, 1);
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    assert_eq!(bob.send_numbered(RoomMsg::Accept { call_id: call }).await, 1);
    expect!(alice, ServerMsg::Accepted { .. });
    expect!(bob, ServerMsg::Accepted { .. });
    assert_eq!(bob.send_numbered(chat("before")).await, 2);
    assert_eq!(next_of!(alice, ServerMsg::Chat(entry) => entry.text), "before");
    assert_eq!(next_of!(bob, ServerMsg::Chat(entry) => entry.text), "before");

    // Bob's network goes away: no close frame.
    bob.drop_connection().await;
    let state = next_of!(alice, ServerMsg::MemberState { id, state } => (id, state));
    assert_eq!(state, (b, Presence::Reconnecting));
    // Meanwhile Alice talks to him.
    let offer = Description::new(SdpKind::Offer, "v=0\r\n");
    alice.send_numbered(chat("missed 1")).await;
    alice
        .send_numbered(RoomMsg::Description {
            call_id: call,
            to: None,
            description: offer.clone(),
        })
        .await;
    assert_eq!(alice.send_numbered(chat("missed 2")).await, 4);
    assert_eq!(next_of!(alice, ServerMsg::Chat(entry) => entry.text), "missed 1");
    assert_eq!(next_of!(alice, ServerMsg::Chat(entry) => entry.text), "missed 2");
    assert_eq!(server.counts().await["reconnecting"], 1);

    // Bob comes back on a new connection with his token and what he last received; he had
    // nothing unprocessed to send again.
    let last_sn = bob.client.last_sn();
    let old_token = bob.client.token().expect("joined").to_owned();
    let (mut bob, mut resumed) = bob.resume(&server.url).await;
    // A fresh token replaces the one just used.
    let token = resumed
        .as_object_mut()
        .and_then(|m| m.remove("token"))
        .expect("token");
    let token = token.as_str().expect("a string");
    assert!(token.len() == 32 && token != old_token, "{token}");
    assert_eq!(resumed, json!({"type": "resumed", "version": 1, "lastCn": 2}));
    // Exactly what he missed, in order, numbered on from where he was (the client is strict).
    expect!(bob, ServerMsg::Chat(entry) if entry.text == "missed 1");
    let got = expect!(bob, ServerMsg::Description { from, description, .. } => (from, description));
    assert_eq!(got, (a, offer));
    expect!(bob, ServerMsg::Chat(entry) if entry.text == "missed 2");
    assert_eq!(bob.client.last_sn(), last_sn + 3);
    bob.expect_silence().await;
    let state = next_of!(alice, ServerMsg::MemberState { id, state } => (id, state));
    assert_eq!(state, (b, Presence::Online));

    // Bob re-sends what the server had already processed (cn 2) and one new message: the
    // replayed one is not delivered twice.
    bob.send_text(r#"{"type":"chat","text":"before","cn":2}"#.into())
        .await;
    assert_eq!(bob.send_numbered(chat("after")).await, 3);
    assert_eq!(next_of!(alice, ServerMsg::Chat(entry) => entry.text), "after");

    // The call survived: hang-up still ends it on both sides.
    assert_eq!(bob.send_numbered(RoomMsg::Hangup { call_id: call }).await, 4);
    let reason = next_of!(alice, ServerMsg::CallEnded { reason, .. } => reason);
    assert_eq!(reason, EndReason::Hangup);
    let reason = next_of!(bob, ServerMsg::CallEnded { reason, .. } => reason);
    assert_eq!(reason, EndReason::Hangup);
    assert_eq!(server.counts().await["reconnecting"], 0);
}

#[tokio::test]
async fn resume_with_a_wrong_or_expired_token_is_refused() {
    let server = Server::start(&["--resume-grace", "1"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    let (bob, _, token) = join_with_token(&server, "r", "Bob").await;

    let mut stranger = server.client().await;
    stranger.send(resume(&"0".repeat(32), 0)).await;
    stranger.expect_error(ErrorCode::InvalidToken).await;
    stranger.send(resume(&token, 10_000)).await;
    stranger.expect_error(ErrorCode::InvalidToken).await;
    // A connection that has its own session cannot take another one's.
    alice.send(resume(&token, 0)).await;
    next_of!(alice, ServerMsg::Error { .. });

    drop(bob);
    next_of!(alice, ServerMsg::MemberLeft { .. }); // after the 1 s grace period
    stranger.send(resume(&token, 0)).await;
    stranger.expect_error(ErrorCode::InvalidToken).await;
    // The refused connection can still join normally.
    stranger.send(join("r", "Bob again")).await;
    expect!(stranger, ServerMsg::Joined { .. });
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_and_the_connection_survives() {
    let server = Server::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    for i in 0..20 {
        alice.send(chat(&format!("m{i}"))).await;
    }
    let (mut delivered, mut limited) = (0, 0);
    // Whatever is coming has arrived once nothing more comes for a while.
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), alice.recv()).await {
        match msg {
            ServerMsg::Chat(_) => delivered += 1,
            ServerMsg::Error { code, .. } => {
                assert_eq!(code, ErrorCode::RateLimited);
                limited += 1;
            }
            _ => {}
        }
    }
    // The burst of 5 covered the join and 4 chats (and a little refill may add one); the
    // flood is told once, not once per message.
    assert!(
        (4..=6).contains(&delivered),
        "the burst passed, the rest was refused: {delivered}"
    );
    assert_eq!(limited, 1, "one rate_limited error for the whole flood");
    tokio::time::sleep(Duration::from_millis(800)).await;
    alice.send(chat("later")).await;
    assert_eq!(next_of!(alice, ServerMsg::Chat(entry) => entry.text), "later");
}

#[tokio::test]
async fn a_slow_reader_is_cut_off_and_never_holds_up_the_room() {
    let server = Server::start(&[
        "--outbound-queue",
        "16",
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
        "--ip-rate-limit",
        "100000",
        "--ip-rate-burst",
        "100000",
        "--chat-rate-limit",
        "100000",
        "--room-chat-rate-limit",
        "100000",
    ])
    .await;
    let (mut reader, _, _) = join_with_token(&server, "r", "Reader").await;
    let (_slow, _, _) = join_with_token(&server, "r", "Slow").await; // never reads
    let text = "x".repeat(4000);
    // Were the room waiting for the slow one, the reader's next message would never come and
    // `recv` would time out: that, not a stopwatch, is what shows the room is not held up.
    for i in 0..3000 {
        reader.send(chat(&format!("{i} {text}"))).await;
        // The reader keeps up and gets every message (its own, as everyone does), in order.
        let got = next_of!(reader, ServerMsg::Chat(entry) => entry.text);
        assert!(got.starts_with(&format!("{i} ")));
    }
    // The slow one was cut off, not waited for: its outbox overflowed, and with nothing
    // acknowledged its replay log passed 1 MiB, which ends the session.
    let mut counts = server.counts().await;
    for _ in 0..50 {
        if counts["members"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        counts = server.counts().await;
    }
    assert_eq!(
        (counts["members"].as_u64(), counts["sessions"].as_u64()),
        (Some(1), Some(1)),
        "{counts}"
    );
}

/// The JSON body of a refused WebSocket upgrade, after checking its status.
fn refused(result: visavis_client::Result<Client>, status: StatusCode) -> Value {
    match result {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            assert_eq!(response.status(), status);
            serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("json body")
        }
        other => panic!("expected HTTP {status}, got {:?}", other.map(|_| ())),
    }
}

// The upgrade is refused before the WebSocket exists, but these need live connections (held
// slots, a real upgrade), so they go over sockets rather than through `App::router()`.

#[tokio::test]
async fn connections_per_address_are_limited() {
    let server = Server::start(&["--max-sessions-per-ip", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.client().await);
    }
    let body = refused(Client::connect(&server.url).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"], "too_many_sessions");
    // A slot frees up when a connection closes.
    let mut first = held.remove(0);
    first.client.close(1000).await.expect("close");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.push(server.client().await);
}

#[tokio::test]
async fn the_number_of_rooms_is_limited() {
    let server = Server::start(&["--max-rooms", "1"]).await;
    let _first = join_with_token(&server, "one", "A").await;
    let mut c = server.client().await;
    c.send(join("two", "B")).await;
    c.expect_error(ErrorCode::TooManyRooms).await;
    c.send(join("one", "B")).await;
    expect!(c, ServerMsg::Joined { .. });
}

#[tokio::test]
async fn pages_from_other_origins_cannot_open_sessions() {
    let server = Server::start(&["--allowed-origin", "https://app.example.org"]).await;
    let with_origin = |origin: &str| {
        let mut request = server.url.as_str().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        request
    };
    let body = refused(
        Client::connect_request(with_origin("https://evil.example"), None).await,
        StatusCode::FORBIDDEN,
    );
    assert_eq!(body["error"], "origin_not_allowed");
    let same = format!("http://{}", server.addr);
    for origin in [same.as_str(), "https://app.example.org"] {
        let client = Client::connect_request(with_origin(origin), None)
            .await
            .expect(origin);
        let mut c = TestClient::new(client);
        c.send(join("r", "A")).await;
        expect!(c, ServerMsg::Joined { .. });
    }
}
