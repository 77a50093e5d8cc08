//! Attacks from one address (127.0.0.1) with default limits, each bounded in count and time:
//! what the attacker can no longer do, and that people on other addresses (127.0.0.2,
//! 127.0.0.3) are served throughout.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use visavis_client::{Client, ClientError};
use visavis_protocol::{ErrorCode, RoomMsg, ServerMsg};

use super::{get_over_socket, join, Server, TestClient, WAIT};

const ATTACKER: [u8; 4] = [127, 0, 0, 1];
const DOCTOR: [u8; 4] = [127, 0, 0, 2];
const PATIENT: [u8; 4] = [127, 0, 0, 3];

async fn connect_from(server: &Server, ip: [u8; 4]) -> Result<Client, ClientError> {
    Client::connect_from(&server.url, Some(IpAddr::from(ip))).await
}

/// A client from `ip` joined to `room` as `name`.
async fn joined_from(server: &Server, ip: [u8; 4], room: &str, name: &str) -> TestClient {
    let mut c = TestClient::new(connect_from(server, ip).await.expect("connect"));
    c.send(join(room, name)).await;
    next_of!(c, ServerMsg::Joined { .. });
    c
}

/// Reads `c` until the chat message `text` arrives (others' messages may come first).
async fn chat_until(c: &mut TestClient, text: &str) {
    loop {
        if next_of!(c, ServerMsg::Chat(entry) => entry.text) == text {
            return;
        }
    }
}

/// The HTTP status of a refused WebSocket upgrade.
fn refused_status(result: Result<Client, ClientError>) -> Option<StatusCode> {
    match result {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Some(response.status())
        }
        _ => None,
    }
}

/// Finding 1: sessions waiting to resume used to escape the per-address cap (one address held
/// 1,000 members through a single connection at a time). Now they count.
#[tokio::test]
async fn dropped_sessions_count_against_the_address() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4"]).await;
    let mut held = 0;
    let started = Instant::now();
    // Join and vanish, one connection at a time, as often as the server lets us (bounded).
    while held < 200 && started.elapsed() < Duration::from_secs(20) {
        let Ok(mut c) = connect_from(&server, ATTACKER).await else {
            break;
        };
        c.join_room(&format!("flood{held}"), "x").await.expect("join");
        c.drop_connection().await.expect("drop");
        held += 1;
    }
    assert_eq!(
        held, 64,
        "the default cap of sessions per address (--max-sessions-per-ip)"
    );
    assert_eq!(
        refused_status(connect_from(&server, ATTACKER).await),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
    // Someone on another address is not affected.
    let mut doctor = joined_from(&server, DOCTOR, "consult", "Dr. Zhang").await;
    doctor.send(RoomMsg::Leave).await;
}

/// Finding 6: reconnecting used to buy a full burst each time (54,339 chat messages a second
/// from one client against a limit of 50), and binary frames were free. Now an address has one
/// budget, and a room takes chat at its own pace, so the readers are never cut off.
#[tokio::test]
async fn floods_from_one_address_reach_nobody_and_cut_nobody_off() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4"]).await;
    let mut reader = joined_from(&server, PATIENT, "r", "Patient").await;
    let started = Instant::now();
    let mut sent = 0;
    // Five rounds of: connect, join, flood 300 chat messages and 300 binary frames, vanish.
    // Later rounds may not even get to join: the address's budget is spent, or its seats in
    // the room are taken by the earlier rounds, which wait to resume.
    for round in 0..5 {
        let mut c = connect_from(&server, ATTACKER).await.expect("connect");
        match c.join_room("r", &format!("flood{round}")).await {
            Ok(_) => {}
            Err(ClientError::Refused { code, .. }) => {
                assert!(
                    matches!(code, ErrorCode::RateLimited | ErrorCode::TooManySeats),
                    "{code:?}"
                );
                c.drop_connection().await.expect("drop");
                continue;
            }
            Err(err) => panic!("{err}"),
        }
        for i in 0..300 {
            c.send(RoomMsg::Chat {
                text: format!("{round}-{i}"),
            })
            .await
            .expect("send");
            c.ws().send(Message::binary(vec![0u8; 64])).await.expect("send");
            sent += 1;
        }
        c.drop_connection().await.expect("drop");
    }
    let flood_time = started.elapsed();
    // What reached the reader: at most the room's burst plus its rate over the flood.
    let mut chats = 0;
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(500), reader.client.recv()).await {
        if let ServerMsg::Chat(_) = msg.expect("the reader stays connected") {
            chats += 1;
        }
    }
    let allowed = 30 + (10.0 * (flood_time.as_secs_f64() + 1.0)) as usize;
    assert!(
        chats <= allowed,
        "{chats} of {sent} chat messages reached the reader (allowed {allowed})"
    );
    assert!(chats > 0, "the room still works");
    // The reader was never cut off, and still talks.
    reader
        .send(RoomMsg::Chat {
            text: "still here".into(),
        })
        .await;
    chat_until(&mut reader, "still here").await;
}

/// Finding 7: anyone could keep a member ringing and re-ring at once after each decline
/// (100 rings in 0.05 s).
#[tokio::test]
async fn a_declined_caller_cannot_keep_a_member_ringing() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4"]).await;
    let mut victim = joined_from(&server, PATIENT, "r", "Patient").await;
    let mut pest = joined_from(&server, ATTACKER, "r", "Pest").await;
    let victim_id = victim.client.you().expect("joined").id;
    let mut rang = 0;
    for _ in 0..100 {
        pest.send(RoomMsg::Invite { to: victim_id }).await;
        match pest.recv().await {
            ServerMsg::Ringing { call_id, .. } => {
                rang += 1;
                let call = next_of!(victim, ServerMsg::Incoming { call_id: c, .. } => c);
                assert_eq!(call, call_id);
                victim.send(RoomMsg::Decline { call_id }).await;
                next_of!(pest, ServerMsg::CallEnded { .. });
            }
            ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::RateLimited),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        rang, 1,
        "after a decline, the same caller is refused for --redial-delay"
    );
    // The victim heard the one call end, and nothing rang again.
    while let Ok(msg) = tokio::time::timeout(Duration::from_millis(300), victim.client.recv()).await {
        let msg = msg.expect("a message");
        assert!(!matches!(msg, ServerMsg::Incoming { .. }), "rang again: {msg:?}");
    }
}

/// Finding 10: a resume token worked forever, so a stolen one took over the session and kept
/// working. Now each works once.
#[tokio::test]
async fn a_stolen_token_works_at_most_once() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4"]).await;
    let mut patient = joined_from(&server, PATIENT, "r", "Patient").await;
    let stolen = patient.client.token().expect("joined").to_owned();
    patient.drop_connection().await;
    // The thief resumes with it once...
    let mut thief = connect_from(&server, ATTACKER).await.expect("connect");
    let resume = |token: &str| visavis_protocol::SessionMsg::Resume {
        version: 1,
        token: token.into(),
        last_sn: 1,
        reloaded: false,
    };
    thief.send(resume(&stolen)).await.expect("send");
    let got = tokio::time::timeout(WAIT, thief.recv())
        .await
        .expect("answer")
        .expect("message");
    assert!(matches!(got, ServerMsg::Resumed { .. }), "{got:?}");
    thief.drop_connection().await.expect("drop");
    // ...and never again.
    let mut again = connect_from(&server, ATTACKER).await.expect("connect");
    again.send(resume(&stolen)).await.expect("send");
    let got = tokio::time::timeout(WAIT, again.recv())
        .await
        .expect("answer")
        .expect("message");
    assert!(
        matches!(
            got,
            ServerMsg::Error {
                code: ErrorCode::InvalidToken,
                ..
            }
        ),
        "{got:?}"
    );
}

/// Finding 3, in part: a WebSocket that never joins used to live forever if it sent ping
/// frames. Now it must join within --join-timeout.
#[tokio::test]
async fn a_connection_that_never_joins_is_closed() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4", "--join-timeout", "1"]).await;
    let mut idle = TestClient::new(connect_from(&server, ATTACKER).await.expect("connect"));
    let started = Instant::now();
    for _ in 0..5 {
        idle.client
            .ws()
            .send(Message::Ping(vec![1].into()))
            .await
            .expect("ping");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(idle.expect_close().await, CloseCode::Policy);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Everything above at once from one address, while a doctor and a patient on two others
/// join, call, chat and hang up: every step of theirs succeeds.
#[tokio::test]
async fn a_consultation_goes_ahead_during_an_attack() {
    let server = Server::start(&["--no-turn", "--max-seats-per-ip", "4"]).await;
    let url = server.url.clone();
    let attack = tokio::spawn(async move {
        let started = Instant::now();
        let mut round = 0;
        // Bounded: at most 8 s or 500 rounds.
        while started.elapsed() < Duration::from_secs(8) && round < 500 {
            round += 1;
            let Ok(mut c) = Client::connect_from(&url, Some(IpAddr::from(ATTACKER))).await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            if c.join_room("consult", &format!("pest{round}")).await.is_err() {
                let _ = c.join_room(&format!("own{round}"), "pest").await;
            }
            for i in 0..50 {
                let _ = c
                    .send(RoomMsg::Chat {
                        text: format!("spam {i}"),
                    })
                    .await;
                let _ = c.send(RoomMsg::Invite { to: i }).await;
            }
            let _ = c.drop_connection().await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut doctor = joined_from(&server, DOCTOR, "consult", "Dr. Zhang").await;
    let mut patient = joined_from(&server, PATIENT, "consult", "Patient Li").await;
    let patient_id = patient.client.you().expect("joined").id;
    doctor.send(RoomMsg::Invite { to: patient_id }).await;
    let call = next_of!(doctor, ServerMsg::Ringing { call_id, .. } => call_id);
    assert_eq!(
        next_of!(patient, ServerMsg::Incoming { call_id, .. } => call_id),
        call
    );
    patient.send(RoomMsg::Accept { call_id: call }).await;
    next_of!(doctor, ServerMsg::Accepted { .. });
    let offer = visavis_protocol::Description::new(visavis_protocol::SdpKind::Offer, "v=0\r\n");
    doctor
        .send(RoomMsg::Description {
            call_id: call,
            to: None,
            description: offer.clone(),
        })
        .await;
    let got = next_of!(patient, ServerMsg::Description { description, .. } => description);
    assert_eq!(got, offer);
    doctor
        .send(RoomMsg::Chat {
            text: "How are you feeling?".into(),
        })
        .await;
    chat_until(&mut patient, "How are you feeling?").await;
    patient.send(RoomMsg::Hangup { call_id: call }).await;
    next_of!(doctor, ServerMsg::CallEnded { .. });
    attack.await.expect("attacker task");
    // Neither was cut off along the way.
    doctor.send(RoomMsg::Leave).await;
    next_of!(doctor, ServerMsg::Left { .. });
    patient.send(RoomMsg::Leave).await;
    next_of!(patient, ServerMsg::Left { .. });
}

/// Finding 3: half-sent HTTP requests used to be held forever (axum ran hyper without a timer),
/// so 1,100 of them exhausted a server with 1,024 file descriptors. Now headers must arrive
/// within --http-header-timeout, and one address holds at most --max-pending-per-ip
/// connections that are not WebSockets.
#[tokio::test]
async fn half_sent_requests_are_closed_and_bounded_per_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    let server = Server::start(&[
        "--no-turn",
        "--http-header-timeout",
        "1",
        "--max-pending-per-ip",
        "8",
    ])
    .await;
    let connect = |ip: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind((IpAddr::from(ip), 0).into()).expect("bind");
        socket.connect(server.addr).await.expect("connect")
    };
    // Half a request: the server gives up on it after the timeout.
    let mut slow = connect(ATTACKER).await;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(WAIT, slow.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(n, Ok(0) | Err(_)) || buf.starts_with(b"HTTP/1.1 408"),
        "{n:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Eight idle connections are all one address may hold; the ninth is closed at once...
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(connect(ATTACKER).await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = connect(ATTACKER).await;
    let n = tokio::time::timeout(Duration::from_millis(500), ninth.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "{n:?}");
    // ...while another address is served as usual.
    let body = get_over_socket(server.addr, DOCTOR, "/healthz").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    drop(idle);
}

/// A WebSocket request to `server` with these extra headers.
fn request_with(
    server: &Server,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = server.url.as_str().into_client_request().expect("request");
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).expect("name");
        request.headers_mut().insert(name, value.parse().expect("value"));
    }
    request
}

/// Finding 9, the Origin half: the check compared Origin with the unvalidated Host, so a page
/// on a domain the attacker re-points at this server (DNS rebinding) passed.
#[tokio::test]
async fn a_rebound_domain_cannot_open_sessions() {
    let server = Server::start(&["--no-turn"]).await;
    let rebound = [
        ("Host", "rebind.evil.example:8080"),
        ("Origin", "http://rebind.evil.example:8080"),
    ];
    assert_eq!(
        refused_status(Client::connect_request(request_with(&server, &rebound), None).await),
        Some(StatusCode::FORBIDDEN)
    );
    // Configured, the domain works (and only it).
    let server = Server::start(&["--no-turn", "--public-origin", "https://consult.example.org"]).await;
    let ours = [("Origin", "https://consult.example.org")];
    assert!(Client::connect_request(request_with(&server, &ours), None)
        .await
        .is_ok());
    let rebound = [("Origin", "https://rebind.evil.example")];
    assert_eq!(
        refused_status(Client::connect_request(request_with(&server, &rebound), None).await),
        Some(StatusCode::FORBIDDEN)
    );
}

/// Finding 9, the proxy half: behind a reverse proxy every client had the proxy's address, so
/// the per-address cap became a global one. With --trusted-proxy, the forwarded address counts;
/// from anyone else, the header is ignored.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    let server = Server::start(&[
        "--no-turn",
        "--trusted-proxy",
        "127.0.0.1",
        "--max-sessions-per-ip",
        "1",
    ])
    .await;
    let from = |client: &str| [("X-Forwarded-For", client.to_owned())];
    let connect = |client: &str| {
        let headers = from(client);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        Client::connect_request(request_with(&server, &headers), Some(IpAddr::from(ATTACKER)))
    };
    let _a = connect("203.0.113.1").await.expect("first client");
    let _b = connect("203.0.113.2")
        .await
        .expect("another client behind the same proxy");
    assert_eq!(
        refused_status(connect("203.0.113.1").await),
        Some(StatusCode::TOO_MANY_REQUESTS),
        "the first client's own cap"
    );
    // Not from the proxy: the header is the client's own claim and changes nothing.
    let _c = Client::connect_from(&server.url, Some(IpAddr::from(DOCTOR)))
        .await
        .expect("connect");
    let spoof = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(
        refused_status(
            Client::connect_request(request_with(&server, &spoof), Some(IpAddr::from(DOCTOR))).await
        ),
        Some(StatusCode::TOO_MANY_REQUESTS)
    );
}

/// Findings 3 and 5, TURN over TCP: idle connections had no timeout and no cap per address.
#[tokio::test]
async fn turn_tcp_connections_are_capped_per_address_and_closed_when_idle() {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpSocket;

    let server = Server::start(&[
        "--turn-listen",
        "127.0.0.1:0",
        "--turn-tcp-per-ip",
        "2",
        "--turn-tcp-idle-timeout",
        "1",
    ])
    .await;
    let turn = server.turn.expect("TURN runs").tcp;
    let connect = |ip: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.bind((IpAddr::from(ip), 0).into()).expect("bind");
        socket.connect(turn).await.expect("connect")
    };
    let mut buf = [0u8; 64];
    let (mut a, _b) = (connect(ATTACKER).await, connect(ATTACKER).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = connect(ATTACKER).await;
    let n = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0) | Err(_))),
        "the third is closed at once: {n:?}"
    );
    // Another address is not affected...
    let mut other = connect(DOCTOR).await;
    // ...and a connection that sends nothing is closed after the idle timeout.
    let started = Instant::now();
    for conn in [&mut a, &mut other] {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A port free for both UDP and TCP on 127.0.0.1 (for a TURN server started as a binary).
fn free_turn_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The open-file limit is shared out: a flood of HTTP connections leaves TURN the descriptors
/// for its relays (and the surplus is told 503 `server_full`), and a flood of TURN TCP
/// connections leaves HTTP its own. Before, either flood took every descriptor: relays failed
/// with 508 and the page stopped answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_turn_each_keep_their_share_of_file_descriptors() {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    let turn_port = free_turn_port();
    let turn_listen = format!("127.0.0.1:{turn_port}");
    // 256 descriptors: 64 spare, 144 for HTTP and WebSockets, 48 for TURN. Per-address caps are
    // lifted: many addresses would do the same.
    let server = super::binary::Binary::start_with_open_files(
        Some(256),
        &[
            "--turn-listen",
            &turn_listen,
            "--turn-secret",
            "fd-secret",
            "--max-pending-per-ip",
            "1000",
            "--turn-tcp-per-ip",
            "1000",
        ],
    )
    .await;
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(TcpStream::connect(&server.addr).await.expect("connect"));
    }
    // The connections over the share are told why, and closed.
    for late in flood.iter_mut().rev().take(100) {
        let mut answer = String::new();
        tokio::time::timeout(WAIT, late.read_to_string(&mut answer))
            .await
            .expect("answered at once")
            .expect("read");
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains(r#""error":"server_full""#),
            "{answer}"
        );
    }
    // TURN still has descriptors for a relay.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (username, password) = visavis_turn::RestSecret::new("fd-secret").mint("backend", unix, 600);
    let allocated = tokio::task::spawn_blocking(move || {
        let mut turn = super::turn::RawClient::new(turn_port);
        let nonce = turn.challenge();
        turn.allocate(&username, &password, &nonce)
    })
    .await
    .expect("allocate");
    assert_eq!(allocated.0, visavis_turn::stun::Class::Success, "{allocated:?}");
    drop(flood);

    // Now TURN is flooded: 300 TCP connections. The page is still served.
    let mut turn_flood = Vec::new();
    for _ in 0..300 {
        turn_flood.push(TcpStream::connect(&turn_listen).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = server.addr.parse().expect("addr");
    let answer = get_over_socket(addr, DOCTOR, "/").await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    drop(turn_flood);
}
