//! Liveness, session resume, and every connection limit, against the real server.

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

use super::{Client, Server};

/// Joins and returns the client, its member id and its resume token.
async fn join_with_token(server: &Server, room: &str, name: &str) -> (Client, u64, String) {
    let mut c = server.client().await;
    c.send(json!({"type": "join", "version": 1, "room": room, "name": name}))
        .await;
    let joined = c.expect("joined").await;
    assert!(joined["heartbeatMs"].as_u64().is_some() && joined["resumeGraceMs"].as_u64().is_some());
    let token = joined["token"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 32, "128 random bits");
    (c, joined["you"]["id"].as_u64().expect("id"), token)
}

#[tokio::test]
async fn a_silent_client_is_declared_reconnecting_within_the_heartbeat_timeout() {
    let server = Server::start(&["--heartbeat-timeout", "2", "--resume-grace", "30"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    let (_bob, bob_id, _) = join_with_token(&server, "r", "Bob").await; // never answers again
    alice.expect("member_joined").await;
    let silent_since = Instant::now();
    let state = alice.next_of("member_state").await;
    let detected = silent_since.elapsed();
    assert_eq!(
        (state["id"].as_u64(), state["state"].as_str()),
        (Some(bob_id), Some("reconnecting"))
    );
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
    assert_eq!(server.health().await["reconnecting"], 1);
}

#[tokio::test]
async fn resume_replays_what_was_missed_both_ways_without_loss_or_duplicates() {
    let server = Server::start(&["--resume-grace", "10"]).await;
    let (mut alice, a, _) = join_with_token(&server, "r", "Alice").await;
    let (mut bob, b, token) = join_with_token(&server, "r", "Bob").await;
    alice.expect("member_joined").await;
    alice.send(json!({"type": "invite", "to": b, "cn": 1})).await;
    let call = alice.expect("ringing").await["callId"].clone();
    bob.expect("incoming").await;
    bob.send(json!({"type": "accept", "callId": call, "cn": 1})).await;
    alice.expect("accepted").await;
    bob.expect("accepted").await;
    bob.send(json!({"type": "chat", "text": "before", "cn": 2})).await;
    assert_eq!(alice.next_of("chat").await["text"], "before");
    let bob_seen = bob.next_of("chat").await;
    assert_eq!(bob_seen["text"], "before");
    let last_sn = bob.last_sn;

    // Bob's network goes away: no close frame.
    drop(bob);
    let state = alice.next_of("member_state").await;
    assert_eq!(
        (state["id"].as_u64(), state["state"].as_str()),
        (Some(b), Some("reconnecting"))
    );
    // Meanwhile Alice talks to him.
    alice
        .send(json!({"type": "chat", "text": "missed 1", "cn": 2}))
        .await;
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    alice
        .send(json!({"type": "description", "callId": call, "description": offer, "cn": 3}))
        .await;
    alice
        .send(json!({"type": "chat", "text": "missed 2", "cn": 4}))
        .await;
    assert_eq!(alice.next_of("chat").await["text"], "missed 1");
    assert_eq!(alice.next_of("chat").await["text"], "missed 2");
    assert_eq!(server.health().await["reconnecting"], 1);

    // Bob comes back on a new connection with his token and what he last received.
    let mut bob = server.client().await;
    bob.send(json!({"type": "resume", "version": 1, "token": token, "lastSn": last_sn}))
        .await;
    let resumed = bob.recv_raw().await;
    assert_eq!(resumed, json!({"type": "resumed", "version": 1, "lastCn": 2}));
    bob.last_sn = last_sn;
    // Exactly what he missed, in order, numbered on from where he was.
    let got: Vec<Value> = vec![bob.recv().await, bob.recv().await, bob.recv().await];
    assert_eq!(
        (got[0]["type"].as_str(), got[0]["text"].as_str()),
        (Some("chat"), Some("missed 1"))
    );
    assert_eq!(
        (got[1]["type"].as_str(), got[1]["from"].as_u64()),
        (Some("description"), Some(a))
    );
    assert_eq!(
        (got[2]["type"].as_str(), got[2]["text"].as_str()),
        (Some("chat"), Some("missed 2"))
    );
    bob.expect_silence().await;
    let state = alice.next_of("member_state").await;
    assert_eq!(
        (state["id"].as_u64(), state["state"].as_str()),
        (Some(b), Some("online"))
    );

    // Bob re-sends what the server had already processed (cn 2) and one new message: the
    // replayed one is not delivered twice.
    bob.send(json!({"type": "chat", "text": "before", "cn": 2})).await;
    bob.send(json!({"type": "chat", "text": "after", "cn": 3})).await;
    assert_eq!(alice.next_of("chat").await["text"], "after");

    // The call survived: hang-up still ends it on both sides.
    bob.send(json!({"type": "hangup", "callId": call, "cn": 4})).await;
    assert_eq!(alice.next_of("call_ended").await["reason"], "hangup");
    assert_eq!(bob.next_of("call_ended").await["reason"], "hangup");
    assert_eq!(server.health().await["reconnecting"], 0);
}

#[tokio::test]
async fn resume_with_a_wrong_or_expired_token_is_refused() {
    let server = Server::start(&["--resume-grace", "1"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    let (bob, _, token) = join_with_token(&server, "r", "Bob").await;

    let mut stranger = server.client().await;
    stranger
        .send(json!({"type": "resume", "version": 1, "token": "0".repeat(32), "lastSn": 0}))
        .await;
    stranger.expect_error("invalid_token").await;
    stranger
        .send(json!({"type": "resume", "version": 1, "token": token, "lastSn": 10_000}))
        .await;
    stranger.expect_error("invalid_token").await;
    // A connection that has its own session cannot take another one's.
    alice
        .send(json!({"type": "resume", "version": 1, "token": token, "lastSn": 0}))
        .await;
    alice.next_of("error").await;

    drop(bob);
    alice.next_of("member_left").await; // after the 1 s grace period
    stranger
        .send(json!({"type": "resume", "version": 1, "token": token, "lastSn": 0}))
        .await;
    stranger.expect_error("invalid_token").await;
    // The refused connection can still join normally.
    stranger
        .send(json!({"type": "join", "version": 1, "room": "r", "name": "Bob again"}))
        .await;
    stranger.expect("joined").await;
}

#[tokio::test]
async fn messages_over_the_rate_are_refused_and_the_connection_survives() {
    let server = Server::start(&["--rate-limit", "5", "--rate-burst", "5"]).await;
    let (mut alice, _, _) = join_with_token(&server, "r", "Alice").await;
    for i in 0..20 {
        alice.send(json!({"type": "chat", "text": format!("m{i}")})).await;
    }
    let mut delivered = 0;
    let mut limited = 0;
    while delivered + limited < 20 {
        let msg = alice.recv().await;
        match msg["type"].as_str() {
            Some("chat") => delivered += 1,
            Some("error") => {
                assert_eq!(msg["code"], "rate_limited");
                limited += 1;
            }
            _ => {}
        }
    }
    // The burst of 5 covered the join and 4 chats (and a little refill may add one).
    assert!(
        (4..=6).contains(&delivered),
        "the burst passed, the rest was refused: {delivered}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    alice.send(json!({"type": "chat", "text": "later"})).await;
    assert_eq!(alice.next_of("chat").await["text"], "later");
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
    ])
    .await;
    let (mut reader, _, _) = join_with_token(&server, "r", "Reader").await;
    let (_slow, _, _) = join_with_token(&server, "r", "Slow").await; // never reads
    let text = "x".repeat(4000);
    let started = Instant::now();
    for i in 0..3000 {
        reader
            .send(json!({"type": "chat", "text": format!("{i} {text}")}))
            .await;
        // The reader keeps up and gets every message (its own, as everyone does), in order.
        let msg = reader.next_of("chat").await;
        assert!(msg["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("{i} "))));
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    // The slow one was cut off, not waited for: its outbox overflowed, and with nothing
    // acknowledged its replay log passed 4 MiB, which ends the session.
    let mut health = server.health().await;
    for _ in 0..50 {
        if health["members"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = server.health().await;
    }
    assert_eq!(
        (health["members"].as_u64(), health["sessions"].as_u64()),
        (Some(1), Some(1)),
        "{health}"
    );
}

#[tokio::test]
async fn connections_per_address_are_limited() {
    let server = Server::start(&["--max-connections-per-ip", "3"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(server.client().await);
    }
    let url = format!("ws://{}/ws", server.addr);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("json body");
            assert_eq!(body["error"], "too_many_connections");
        }
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    // A slot frees up when a connection closes.
    let mut first = held.remove(0);
    first.ws.close(None).await.expect("close");
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.push(server.client().await);
}

#[tokio::test]
async fn the_number_of_rooms_is_limited() {
    let server = Server::start(&["--max-rooms", "1"]).await;
    let _first = join_with_token(&server, "one", "A").await;
    let mut c = server.client().await;
    c.send(json!({"type": "join", "version": 1, "room": "two", "name": "B"}))
        .await;
    c.expect_error("too_many_rooms").await;
    c.send(json!({"type": "join", "version": 1, "room": "one", "name": "B"}))
        .await;
    c.expect("joined").await;
}

#[tokio::test]
async fn pages_from_other_origins_cannot_open_sessions() {
    let server = Server::start(&["--allowed-origin", "https://app.example.org"]).await;
    let url = format!("ws://{}/ws", server.addr);
    let with_origin = |origin: &str| {
        let mut request = url.as_str().into_client_request().expect("request");
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header"));
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).expect("json body");
            assert_eq!(body["error"], "origin_not_allowed");
        }
        other => panic!("expected HTTP 403, got {:?}", other.map(|_| ())),
    }
    let same = format!("http://{}", server.addr);
    for origin in [same.as_str(), "https://app.example.org"] {
        let (mut ws, _) = tokio_tungstenite::connect_async(with_origin(origin))
            .await
            .expect(origin);
        ws.send(Message::text(
            json!({"type": "join", "version": 1, "room": "r", "name": "A"}).to_string(),
        ))
        .await
        .expect("send");
    }
}
