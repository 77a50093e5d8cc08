//! The pre-call network check's endpoints against a real server: credentials that open a relay
//! on the embedded TURN server (with `--access token`, only for a page holding a token),
//! bounded bodies, the per-address budget, and the switch that turns it off — each with its
//! error code.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;
use visavis_protocol::{RoomMsg, ServerMsg};
use visavis_turn::stun::Class;

use super::turn::RawClient;
use super::{tokens, Server};

/// Sends `request` as if from `ip`; the status, the `retry-after` header and the body.
async fn send(server: &Server, ip: [u8; 4], request: Request<Body>) -> (StatusCode, Option<String>, Vec<u8>) {
    let router = server
        .router
        .clone()
        .layer(MockConnectInfo(SocketAddr::from((ip, 4000))));
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, retry, body.to_vec())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

fn with_bearer(uri: &str, token: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

fn post(uri: &str, bytes: usize) -> Request<Body> {
    Request::post(uri)
        .body(Body::from(vec![7u8; bytes]))
        .expect("request")
}

fn error_code(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).expect("json error body");
    body["error"].as_str().expect("code").to_owned()
}

const HERE: [u8; 4] = [127, 0, 0, 1];

// The raw TURN client blocks on its socket: the server runs on other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checks_credentials_open_a_relay_for_a_minute_and_token_servers_give_them_to_token_holders_alone()
{
    let server = Server::start(&["--turn-listen", "127.0.0.1:0", "--turn-secret", "it-secret"]).await;
    let port = server.turn.expect("TURN is on").udp.port();
    let (status, _, body) = send(&server, HERE, get("/netcheck/ice")).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(body["maxBytes"], 1_048_576);
    let ice = &body["iceServers"][0];
    let urls: Vec<&str> = ice["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        urls,
        [
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp")
        ]
    );
    let username = ice["username"].as_str().expect("username");
    let (expiry, user) = username.split_once(':').expect("<expiry>:<user>");
    assert!(user.starts_with("netcheck-"), "no member's name: {user}");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().expect("expiry");
    assert!(
        (now + 55..=now + 65).contains(&expiry),
        "a minute: {expiry} at {now}"
    );
    // They open a relay on the embedded server, with no member behind them.
    let mut turn = RawClient::new(port);
    let nonce = turn.challenge();
    let password = ice["credential"].as_str().expect("credential");
    assert_eq!(turn.allocate(username, password, &nonce), (Class::Success, None));

    let server = Server::start(&[
        "--turn-listen",
        "127.0.0.1:0",
        "--access",
        "token",
        "--api-key",
        tokens::KEY,
        "--api-secret",
        tokens::SECRET,
    ])
    .await;
    let port = server.turn.expect("TURN is on").udp.port();
    // A page holding an access token (for any room: it has not joined yet) may relay, as it
    // may once it joins: the check gets TURN credentials that open a relay.
    let (patient, _) = tokens::mint(&["--room", "visit-7", "--name", "Patient Li"]);
    let (status, _, body) = send(&server, HERE, with_bearer("/netcheck/ice", &patient)).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("json");
    let ice = &body["iceServers"][0];
    assert!(
        ice["urls"]
            .as_array()
            .expect("urls")
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.starts_with("turn:"))),
        "{body}"
    );
    let mut turn = RawClient::new(port);
    let nonce = turn.challenge();
    let (username, password) = (
        ice["username"].as_str().expect("username"),
        ice["credential"].as_str().expect("credential"),
    );
    assert!(username.contains(":netcheck-"), "{username}");
    assert_eq!(turn.allocate(username, password, &nonce), (Class::Success, None));
    // A token that is not this server's, or has expired, is refused with join's codes.
    let (forged, _) = tokens::mint_with(
        "another-secret-of-at-least-32-chars!",
        &["--room", "visit-7", "--name", "X"],
    );
    let (status, _, body) = send(&server, HERE, with_bearer("/netcheck/ice", &forged)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "token_invalid")
    );
    let (short, _) = tokens::mint(&["--room", "visit-7", "--name", "Late", "--ttl", "1s"]);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = send(&server, HERE, with_bearer("/netcheck/ice", &short)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    // Removed from its room for good, a token's holder gets no relay from the check either.
    let (doctor, _) = tokens::mint(&["--room", "visit-7", "--name", "Dr. Zhang", "--role", "host"]);
    let mut host = server.client().await;
    tokens::join_with(&mut host, "visit-7", &doctor).await;
    expect!(host, ServerMsg::Joined { .. });
    let mut knocking = server.client().await;
    tokens::join_with(&mut knocking, "visit-7", &patient).await;
    let id = expect!(knocking, ServerMsg::Waiting { you, .. } => you.id);
    next_of!(host, ServerMsg::Knock { .. });
    host.send(RoomMsg::Admit { id }).await;
    next_of!(knocking, ServerMsg::Joined { .. });
    host.send(RoomMsg::Remove { id }).await;
    next_of!(knocking, ServerMsg::Removed { .. });
    let (status, _, body) = send(&server, HERE, with_bearer("/netcheck/ice", &patient)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::FORBIDDEN, "token_revoked")
    );
    // Without a token: STUN alone, no credentials.
    let (status, _, body) = send(&server, HERE, get("/netcheck/ice")).await;
    assert_eq!(status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&body).expect("json");
    let servers = body["iceServers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1);
    assert!(servers[0].get("username").is_none_or(Value::is_null), "{body}");
    let urls = servers[0]["urls"].as_array().expect("urls");
    assert!(
        urls.iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with("stun:"))),
        "{body}"
    );
}

#[tokio::test]
async fn bodies_are_bounded_and_each_address_has_a_budget_per_minute() {
    let server = Server::start(&[
        "--no-turn",
        "--netcheck-per-minute",
        "5",
        "--netcheck-max-bytes",
        "2048",
    ])
    .await;
    let (status, _, body) = send(&server, HERE, get("/netcheck/download?bytes=2048")).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 2048));
    let (status, _, body) = send(&server, HERE, get("/netcheck/download?bytes=2049")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "netcheck_too_large")
    );
    let (status, _, body) = send(&server, HERE, post("/netcheck/upload", 1500)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["bytes"],
        1500
    );
    let (status, _, body) = send(&server, HERE, post("/netcheck/upload", 3000)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "netcheck_too_large")
    );
    // Without TURN there is nothing to try.
    let (status, _, body) = send(&server, HERE, get("/netcheck/ice")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["iceServers"],
        Value::Array(vec![])
    );
    // The sixth request this minute is refused, with when to come back; another address is not.
    let (status, retry, body) = send(&server, HERE, get("/netcheck/download?bytes=1")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "netcheck_rate_limited")
    );
    let retry: u64 = retry.expect("retry-after").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let (status, _, _) = send(&server, [127, 0, 0, 2], get("/netcheck/download?bytes=1")).await;
    assert_eq!(status, StatusCode::OK);

    let off = Server::start(&["--no-turn", "--netcheck-per-minute", "0"]).await;
    for request in [
        get("/netcheck/ice"),
        get("/netcheck/download?bytes=1"),
        post("/netcheck/upload", 1),
    ] {
        let (status, _, body) = send(&off, HERE, request).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (StatusCode::NOT_FOUND, "netcheck_off")
        );
    }
}
