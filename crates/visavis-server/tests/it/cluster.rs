//! Several nodes sharing rooms through Redis (`--redis`), with the real parts started here:
//! Debian's `redis-server`, `haproxy` as the load balancer, and the real binary as each node.
//! Members of one room on different nodes call and chat; the last seat holds across nodes;
//! the room's node killed (SIGKILL) or stopped (SIGTERM) → its clients resume on another node
//! with the call and chat kept; three nodes under 200 clients in 50 rooms, one killed → every
//! session resumes; Redis restarted → the service goes on and a later failover still finds
//! the rooms' state.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use visavis_client::{Client, ClientError};
use visavis_protocol::{
    Description, EndReason, ErrorCode, KnockOutcome, Presence, RoomMsg, SdpKind, ServerMsg, SessionMsg,
    PROTOCOL_VERSION,
};

use super::binary::Binary;
use super::outside::{free_ports, installed, Scratch};
use super::{join, TestClient};

/// Lease settings for the tests: a dead node's rooms move after 2 s (the default is 3 s), with
/// three renewals that may fail first (a busy machine).
const LEASE: [&str; 4] = ["--lease-ttl-ms", "2000", "--lease-renew-ms", "500"];

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 5 s) until 127.0.0.1:`port` accepts connections.
async fn listening(port: u16, what: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} does not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `redis-server` on `port`, keeping nothing on disk (a restart loses everything: the hardest
/// case for the cluster).
async fn redis(port: u16, dir: &Path) -> Proc {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn redis-server");
    listening(port, "redis-server").await;
    Proc(child)
}

/// haproxy on `port` in front of the nodes on `nodes`, round robin, as docs/scaling.md has it.
async fn haproxy(port: u16, nodes: &[u16], dir: &Path) -> Proc {
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server node{i} 127.0.0.1:{p} check inter 300 fall 2 rise 1\n"))
        .collect();
    let config = format!(
        "global\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  \
         timeout tunnel 1h\n  retries 3\n  option redispatch 1\n\
         frontend visavis\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
         backend nodes\n  balance roundrobin\n{servers}"
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy.cfg");
    let child = Command::new(installed("haproxy", "haproxy").expect("haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn haproxy");
    listening(port, "haproxy").await;
    Proc(child)
}

/// A node on `port` of the cluster on Redis `redis` (the tests' clients all come from
/// 127.0.0.1, through haproxy or not: the per-address limits are raised).
async fn node(port: u16, redis: u16, extra: &[&str]) -> Binary {
    let listen = format!("127.0.0.1:{port}");
    let redis = format!("redis://127.0.0.1:{redis}/");
    let mut args = vec![
        "--no-turn",
        "--listen",
        &listen,
        "--redis",
        &redis,
        "--max-seats-per-ip",
        "1000",
        "--max-sessions-per-ip",
        "10000",
        "--ip-rate-limit",
        "100000",
        "--ip-rate-burst",
        "100000",
    ];
    if !extra.contains(&"--lease-ttl-ms") {
        args.extend(LEASE);
    }
    args.extend(extra);
    Binary::start(&args).await
}

/// Whether the tests can run: redis-server and haproxy installed (in CI they must be).
fn parts() -> bool {
    installed("redis-server", "redis-server").is_some() && installed("haproxy", "haproxy").is_some()
}

async fn joined(url: &str, room: &str, name: &str) -> (TestClient, u64) {
    let mut client = TestClient::new(Client::connect(url).await.expect("connect"));
    client.send(join(room, name)).await;
    let id = expect!(client, ServerMsg::Joined { you, .. } => you.id);
    (client, id)
}

/// Sends `signal` to the node and waits (at most 10 s) for it to exit.
async fn stop(node: &mut Binary, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &node.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let started = Instant::now();
    while node.child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after {signal}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alice on node `a`, Bob on node `b` (the room lives on `a`: Alice came first), in a call,
/// with one chat message each; returns them with their ids and the call.
async fn cross_node_call(a: &str, b: &str, room: &str) -> (TestClient, u64, TestClient, u64, u64) {
    let (mut alice, a_id) = joined(a, room, "Alice").await;
    let (mut bob, b_id) = joined(b, room, "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { member } if member.id == b_id);
    alice.send_numbered(RoomMsg::Invite { to: b_id }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { from, .. } if from == a_id);
    bob.send_numbered(RoomMsg::Accept { call_id: call }).await;
    expect!(alice, ServerMsg::Accepted { .. });
    expect!(bob, ServerMsg::Accepted { .. });
    for (sender, text) in [(0, "hello"), (1, "hi")] {
        let [first, second] = [&mut alice, &mut bob];
        if sender == 0 { first } else { second }
            .send_numbered(RoomMsg::Chat { text: text.into() })
            .await;
        for client in [&mut alice, &mut bob] {
            expect!(client, ServerMsg::Chat(entry) if entry.text == text);
        }
    }
    (alice, a_id, bob, b_id, call)
}

/// The call goes on: an offer is relayed, and a hangup ends it for both.
async fn call_goes_on(alice: &mut TestClient, a: u64, bob: &mut TestClient, call: u64) {
    alice
        .send_numbered(RoomMsg::Description {
            call_id: call,
            to: None,
            description: Description::new(SdpKind::Offer, "v=0"),
        })
        .await;
    expect!(bob, ServerMsg::Description { from, .. } if from == a);
    bob.send_numbered(RoomMsg::Hangup { call_id: call }).await;
    for client in [alice, bob] {
        expect!(client, ServerMsg::CallEnded { call_id, reason: EndReason::Hangup, .. } if call_id == call);
    }
}

#[tokio::test]
async fn members_on_two_nodes_call_chat_and_share_the_last_seat() {
    if !parts() {
        return;
    }
    let dir = Scratch::new("cluster-two");
    let [redis_port, p1, p2] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let n1 = node(p1, redis_port, &["--room-capacity", "3"]).await;
    let n2 = node(p2, redis_port, &["--room-capacity", "3"]).await;
    let (mut alice, a, mut bob, _, call) = cross_node_call(&n1.url(), &n2.url(), "r").await;
    // Bob's connection is forwarded to the room's node: one room, one order, one member list.
    call_goes_on(&mut alice, a, &mut bob, call).await;

    // One seat is left; Carol (on node 1) and Dave (on node 2) race for it: one gets it.
    let mut carol = TestClient::new(Client::connect(&n1.url()).await.expect("connect"));
    let mut dave = TestClient::new(Client::connect(&n2.url()).await.expect("connect"));
    let (c, d) = tokio::join!(carol.send(join("r", "Carol")), dave.send(join("r", "Dave")));
    let _ = (c, d);
    let mut seated = 0;
    for client in [&mut carol, &mut dave] {
        match client.recv().await {
            ServerMsg::Joined { members, chat, .. } => {
                seated += 1;
                assert_eq!(members.len(), 2, "Alice and Bob, from either node");
                let texts: Vec<&str> = chat.iter().map(|e| e.text.as_str()).collect();
                assert_eq!(texts, ["hello", "hi"], "the room's chat, from either node");
            }
            ServerMsg::Error { code, .. } => assert_eq!(code, ErrorCode::RoomFull),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seated, 1, "the last seat went to one of them");
}

/// A client of node `url` from 127.0.0.`n` (so that per-address rules such as "must knock
/// again" see people apart, through the forwarding too).
async fn from(url: &str, n: u8) -> TestClient {
    let source = Some(std::net::IpAddr::from([127, 0, 0, n]));
    TestClient::new(Client::connect_from(url, source).await.expect("connect"))
}

/// A private room made on node 1, its guests on node 2 (forwarded to the room's node): the
/// lobby, admit and deny, the lock, the host link and the capacity (of the room and of its
/// lobby) hold as on one node; a guest who knocks at once, before the creating node's next lease
/// round, still reaches the room.
#[tokio::test]
async fn a_private_room_across_nodes_keeps_its_lobby_lock_and_capacity() {
    if !parts() {
        return;
    }
    let dir = Scratch::new("cluster-private");
    let [redis_port, p1, p2] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let n1 = node(p1, redis_port, &["--room-capacity", "2"]).await;
    let n2 = node(p2, redis_port, &["--room-capacity", "2"]).await;
    let (u1, u2) = (n1.url(), n2.url());

    let mut doctor = from(&u1, 2).await;
    doctor
        .send(SessionMsg::Create {
            version: PROTOCOL_VERSION,
            name: "Dr. Zhang".into(),
        })
        .await;
    let (room, key, doctor_id) =
        expect!(doctor, ServerMsg::Joined { room, host_key, you, .. } => (room, host_key, you.id));
    let key = key.expect("the host's key");

    // At once, on the other node: the patient waits in the room's lobby, seeing nothing of it.
    let mut patient = from(&u2, 3).await;
    patient.send(join(&room, "Patient Li")).await;
    let patient_id = expect!(patient, ServerMsg::Waiting { you, .. } => you.id);
    expect!(doctor, ServerMsg::Knock { member } if member.id == patient_id);
    patient
        .send_numbered(RoomMsg::Chat {
            text: "hello?".into(),
        })
        .await;
    expect!(
        patient,
        ServerMsg::Error {
            code: ErrorCode::NotAdmitted,
            ..
        }
    );

    // A stranger (node 2) knocks and is denied; the lobby holds two at most (the capacity).
    let mut stranger = from(&u2, 4).await;
    stranger.send(join(&room, "Stranger")).await;
    let stranger_id = expect!(stranger, ServerMsg::Waiting { you, .. } => you.id);
    expect!(doctor, ServerMsg::Knock { member } if member.id == stranger_id);
    let mut third = from(&u2, 5).await;
    third.send(join(&room, "Third")).await;
    expect!(
        third,
        ServerMsg::Error {
            code: ErrorCode::RoomFull,
            ..
        }
    );
    doctor.send_numbered(RoomMsg::Deny { id: stranger_id }).await;
    expect!(stranger, ServerMsg::Denied { .. });
    expect!(
        doctor,
        ServerMsg::KnockEnded {
            outcome: KnockOutcome::Denied,
            ..
        }
    );

    // Admitted (from node 1), the patient (node 2) is in the room.
    doctor.send_numbered(RoomMsg::Admit { id: patient_id }).await;
    let members = expect!(patient, ServerMsg::Joined { members, .. } => members);
    assert_eq!(
        members.iter().map(|m| (m.id, m.host)).collect::<Vec<_>>(),
        [(doctor_id, true)]
    );
    expect!(
        doctor,
        ServerMsg::KnockEnded {
            outcome: KnockOutcome::Admitted,
            ..
        }
    );
    expect!(doctor, ServerMsg::MemberJoined { member } if member.id == patient_id);

    // Full: even the host's second device (node 2) gets no seat.
    let host_join = |name: &str| SessionMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.clone(),
        name: name.into(),
        host_key: Some(key.clone()),
        access_token: None,
    };
    let mut second_device = from(&u2, 6).await;
    second_device.send(host_join("Dr. Zhang")).await;
    expect!(
        second_device,
        ServerMsg::Error {
            code: ErrorCode::RoomFull,
            ..
        }
    );

    // Locked (from node 2's patient's view too): a newcomer on node 2 is refused.
    doctor
        .send_numbered(RoomMsg::RoomSettings {
            lobby: None,
            locked: Some(true),
            share_history: None,
        })
        .await;
    expect!(doctor, ServerMsg::RoomState(state) if state.locked);
    expect!(patient, ServerMsg::RoomState(state) if state.locked);
    let mut late = from(&u2, 7).await;
    late.send(join(&room, "Late")).await;
    expect!(
        late,
        ServerMsg::Error {
            code: ErrorCode::RoomLocked,
            ..
        }
    );

    // The patient leaves: the seat is free again, and the host link (node 2) takes it, locked
    // or not.
    patient.send_numbered(RoomMsg::Leave).await;
    expect!(doctor, ServerMsg::MemberLeft { .. });
    let mut second_device = from(&u2, 6).await;
    second_device.send(host_join("Dr. Zhang")).await;
    expect!(second_device, ServerMsg::Joined { you, .. } if you.host && you.name == "Dr. Zhang (2)");
}

/// The room's node dies (SIGKILL) or stops (SIGTERM) during a cross-node call: both clients
/// resume through haproxy on the other node, with the call and the chat kept.
async fn failover(signal: &str) {
    if !parts() {
        return;
    }
    let dir = Scratch::new(&format!("cluster-failover{signal}"));
    let [redis_port, p1, p2, lb] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let mut n1 = node(p1, redis_port, &[]).await;
    let n2 = node(p2, redis_port, &[]).await;
    let _lb = haproxy(lb, &[p1, p2], &dir.0).await;
    let lb_url = format!("ws://127.0.0.1:{lb}/ws");
    let (mut alice, a, mut bob, b, call) = cross_node_call(&n1.url(), &n2.url(), "r").await;
    // The write-behind runs every 100 ms: a crash loses only what came after it.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let started = Instant::now();
    stop(&mut n1, signal).await;
    if signal == "-TERM" {
        // Both told to come back, Bob through his node's forwarding.
        for client in [&mut alice, &mut bob] {
            expect!(client, ServerMsg::Reconnect { .. });
            assert_eq!(client.expect_close().await, CloseCode::Away);
        }
    } else {
        // Bob's node tells him his room's node is gone.
        assert_eq!(bob.expect_close().await, CloseCode::Restart);
    }
    let (mut alice, resumed) = alice.resume(&lb_url).await;
    assert_eq!(resumed["lastCn"], 2, "invite and chat processed once: {resumed}");
    let (mut bob, resumed) = bob.resume(&lb_url).await;
    assert_eq!(resumed["lastCn"], 2, "accept and chat: {resumed}");
    println!(
        "{signal} of the room's node: both sessions resumed on the other node after {} ms",
        started.elapsed().as_millis()
    );
    if signal == "-KILL" {
        alice.client.allow_gap();
        bob.client.allow_gap();
    }
    for (client, other) in [(&mut alice, b), (&mut bob, a)] {
        for state in [Presence::Reconnecting, Presence::Online] {
            expect!(client, ServerMsg::MemberState { id, state: got, .. } if id == other && got == state);
        }
    }
    call_goes_on(&mut alice, a, &mut bob, call).await;
    // The chat is the room's, each message once, for someone joining through haproxy.
    let mut carol = TestClient::new(Client::connect(&lb_url).await.expect("connect"));
    carol.send(join("r", "Carol")).await;
    let (chat, members) = expect!(carol, ServerMsg::Joined { chat, members, .. } => (chat, members));
    let texts: Vec<&str> = chat.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["hello", "hi"]);
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [a, b]);
    drop(n2);
}

#[tokio::test]
async fn the_rooms_node_killed_its_clients_resume_on_another_with_the_call() {
    failover("-KILL").await;
}

#[tokio::test]
async fn the_rooms_node_stopped_hands_the_room_over_with_the_call() {
    failover("-TERM").await;
}

/// One client of the load test: reads until `deadline`; if its connection ends, resumes
/// through `lb`. Returns it, and whether it resumed.
async fn ride_out(mut client: Client, lb: &str, deadline: Instant) -> (Client, bool) {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, client.read_received()).await {
            Err(_) => return (client, false),
            Ok(Ok(_)) => client.pong_if_due().await.unwrap_or(()),
            Ok(Err(ClientError::Closed(_) | ClientError::Ws(_))) => {
                // Through the load balancer, as a browser would; the node it reaches waits for
                // the room's lease if the room's node died.
                let token = client.token().unwrap_or_default().to_owned();
                return match tokio::time::timeout(Duration::from_secs(15), client.resume(lb)).await {
                    Ok(Ok((mut resumed, _))) => {
                        resumed.allow_gap();
                        (resumed, true)
                    }
                    Ok(Err(err)) => panic!("resume of {token} failed: {err}"),
                    Err(_) => panic!("resume of {token} timed out"),
                };
            }
            Ok(Err(err)) => panic!("{err}"),
        }
    }
}

#[tokio::test]
async fn three_nodes_200_clients_one_killed_every_session_resumes() {
    if !parts() {
        return;
    }
    three_nodes(&[], "-KILL").await;
}

/// Time from one node's death (SIGKILL, the default leases) or stop (SIGTERM) to every client
/// resumed, three nodes, 200 clients in 50 rooms, for docs/benchmarks.md:
/// `cargo test -p visavis-server --test it -- --ignored --nocapture failover_times`.
#[tokio::test]
#[ignore = "a measurement"]
async fn failover_times() {
    if !parts() {
        return;
    }
    let defaults = ["--lease-ttl-ms", "3000", "--lease-renew-ms", "1000"];
    for signal in ["-KILL", "-TERM"] {
        three_nodes(&defaults, signal).await;
    }
}

/// Three nodes behind haproxy, 200 clients in 50 rooms with calls and chat; the first node
/// gets `signal`: every client whose connection ends resumes, and every room goes on.
async fn three_nodes(extra: &[&str], signal: &str) {
    const ROOMS: usize = 50;
    const PER_ROOM: usize = 4;
    let dir = Scratch::new("cluster-three");
    let [redis_port, p1, p2, p3, lb] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let mut nodes = Vec::new();
    for port in [p1, p2, p3] {
        nodes.push(node(port, redis_port, extra).await);
    }
    let _lb = haproxy(lb, &[p1, p2, p3], &dir.0).await;
    let lb_url = format!("ws://127.0.0.1:{lb}/ws");

    // 50 rooms of 4 through haproxy (round robin: each room's members on different nodes);
    // in each, the first two in a call, and one chat message.
    let mut rooms: Vec<Vec<(Client, u64)>> = Vec::new();
    let mut calls = Vec::new();
    for r in 0..ROOMS {
        let room = format!("room-{r}");
        let mut members = Vec::new();
        for m in 0..PER_ROOM {
            let (client, joined) = Client::join(&lb_url, &room, &format!("p{m}"))
                .await
                .expect("join");
            let ServerMsg::Joined { you, .. } = joined else {
                panic!("{joined:?}")
            };
            members.push((client, you.id));
        }
        let callee = members[1].1;
        members[0]
            .0
            .send_numbered(RoomMsg::Invite { to: callee })
            .await
            .expect("invite");
        let call = loop {
            if let ServerMsg::Ringing { call_id, .. } = members[0].0.recv().await.expect("recv") {
                break call_id;
            }
        };
        loop {
            if let ServerMsg::Incoming { .. } = members[1].0.recv().await.expect("recv") {
                break;
            }
        }
        members[1]
            .0
            .send_numbered(RoomMsg::Accept { call_id: call })
            .await
            .expect("accept");
        members[0]
            .0
            .send_numbered(RoomMsg::Chat {
                text: format!("before {r}"),
            })
            .await
            .expect("chat");
        calls.push(call);
        rooms.push(members);
    }
    // Every member has everything so far (presence, the call, the chat).
    for members in &mut rooms {
        for (client, _) in members.iter_mut() {
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(5), client.recv()).await;
                if let ServerMsg::Chat(_) = msg.expect("in time").expect("recv") {
                    break;
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Kill the first node; every client rides it out, resuming where its connection ended.
    let started = Instant::now();
    let mut victim = nodes.remove(0);
    stop(&mut victim, signal).await;
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for members in rooms {
        for (client, id) in members {
            let lb_url = lb_url.clone();
            tasks.push(tokio::spawn(async move {
                let (client, resumed) = ride_out(client, &lb_url, deadline).await;
                (client, id, resumed, started.elapsed())
            }));
        }
    }
    let mut rooms: Vec<Vec<(Client, u64)>> = (0..ROOMS).map(|_| Vec::new()).collect();
    let (mut resumed, mut last) = (0, Duration::ZERO);
    for (i, task) in tasks.into_iter().enumerate() {
        let (client, id, did, at) = task.await.expect("client task");
        if did {
            resumed += 1;
            last = last.max(at);
        }
        rooms[i / PER_ROOM].push((client, id));
    }
    println!(
        "{signal} of one of three nodes ({}): {resumed} of {} sessions resumed, the last {} ms after",
        if extra.is_empty() {
            "lease 2 s"
        } else {
            "default leases"
        },
        ROOMS * PER_ROOM,
        last.as_millis()
    );
    assert!(
        resumed >= ROOMS * PER_ROOM / 3,
        "a third of the clients at least were on it"
    );

    // Every room goes on: the call relays an offer, and a chat message reaches all four once
    // (the clients are strict about sn: nothing lost or doubled).
    for (r, members) in rooms.iter_mut().enumerate() {
        let caller = members[0].1;
        members[0]
            .0
            .send_numbered(RoomMsg::Description {
                call_id: calls[r],
                to: None,
                description: Description::new(SdpKind::Offer, "v=0"),
            })
            .await
            .expect("offer");
        members[2]
            .0
            .send_numbered(RoomMsg::Chat {
                text: format!("after {r}"),
            })
            .await
            .expect("chat");
        let mut offered = false;
        for (i, (client, _)) in members.iter_mut().enumerate() {
            // The offer and the chat come from two members: in either order.
            let mut chatted = false;
            while !chatted || (i == 1 && !offered) {
                let msg = tokio::time::timeout(Duration::from_secs(5), client.recv()).await;
                match msg
                    .unwrap_or_else(|_| panic!("room {r}: member {i} heard nothing"))
                    .expect("recv")
                {
                    ServerMsg::Description { from, .. } if i == 1 => offered |= from == caller,
                    ServerMsg::Chat(entry) if entry.text.starts_with("after") => {
                        assert_eq!(entry.text, format!("after {r}"));
                        assert!(!chatted, "once");
                        chatted = true;
                    }
                    _ => {}
                }
            }
        }
        assert!(offered, "room {r}: the call survived");
    }
    drop(nodes);
}

#[tokio::test]
async fn a_redis_restart_leaves_calls_running_and_a_later_failover_still_works() {
    if !parts() {
        return;
    }
    let dir = Scratch::new("cluster-redis-restart");
    let [redis_port, p1, p2, lb] = free_ports();
    let mut redis_proc = redis(redis_port, &dir.0).await;
    let mut n1 = node(p1, redis_port, &[]).await;
    let n2 = node(p2, redis_port, &[]).await;
    let _lb = haproxy(lb, &[p1, p2], &dir.0).await;
    let lb_url = format!("ws://127.0.0.1:{lb}/ws");
    let (mut alice, a, mut bob, b, call) = cross_node_call(&n1.url(), &n2.url(), "r").await;

    // Redis goes away for a second and comes back empty.
    drop(redis_proc);
    alice
        .send_numbered(RoomMsg::Chat {
            text: "while redis is down".into(),
        })
        .await;
    for client in [&mut alice, &mut bob] {
        expect!(client, ServerMsg::Chat(entry) if entry.text == "while redis is down");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    redis_proc = redis(redis_port, &dir.0).await;
    // The nodes notice within a heartbeat and write their rooms again; a newcomer on the other
    // node finds the room.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (carol, _) = joined(&n2.url(), "r", "Carol").await;
    for client in [&mut alice, &mut bob] {
        next_of!(client, ServerMsg::MemberJoined { .. });
    }
    // And the room's state is back in Redis: the room's node dies, everyone resumes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(&mut n1, "-KILL").await;
    let mut resumed = Vec::new();
    for client in [alice, bob, carol] {
        let (mut client, _) = client.resume(&lb_url).await;
        client.client.allow_gap();
        resumed.push(client);
    }
    let [mut alice, mut bob, _carol] = <[TestClient; 3]>::try_from(resumed).ok().expect("three");
    for client in [&mut alice, &mut bob] {
        // Presence of the others (reconnecting, online) in whatever order they came back.
        client.client.set_strict(true);
    }
    alice
        .send_numbered(RoomMsg::Description {
            call_id: call,
            to: None,
            description: Description::new(SdpKind::Offer, "v=0"),
        })
        .await;
    next_of!(bob, ServerMsg::Description { .. });
    bob.send_numbered(RoomMsg::Hangup { call_id: call }).await;
    for client in [&mut alice, &mut bob] {
        next_of!(client, ServerMsg::CallEnded { .. });
    }
    let _ = (a, b);
    drop((redis_proc, n2));
}

/// Message relay latency, one node against two (same run, alternating): Alice sends a chat
/// message, the time until Bob has it; Bob on Alice's node, or on another node that forwards
/// his connection. For docs/benchmarks.md:
/// `cargo test -p visavis-server --test it -- --ignored --nocapture relay_latency`.
#[tokio::test]
#[ignore = "a measurement"]
async fn relay_latency() {
    if !parts() {
        return;
    }
    const ROUNDS: usize = 20;
    const PER_ROUND: usize = 100;
    let dir = Scratch::new("cluster-latency");
    let [redis_port, p1, p2] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let fast = [
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
        "--chat-rate-limit",
        "100000",
        "--room-chat-rate-limit",
        "100000",
    ];
    let n1 = node(p1, redis_port, &fast).await;
    let n2 = node(p2, redis_port, &fast).await;
    let mut pairs = Vec::new();
    for (room, bob_node) in [("same", &n1), ("cross", &n2)] {
        let (alice, _) = joined(&n1.url(), room, "Alice").await;
        let (mut bob, _) = joined(&bob_node.url(), room, "Bob").await;
        let _ = &mut bob;
        pairs.push((alice, bob));
    }
    for (alice, _) in &mut pairs {
        next_of!(alice, ServerMsg::MemberJoined { .. });
    }
    let pids = [n1.child.id(), n2.child.id()];
    let mut samples: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // CPU of both nodes (all their threads) while each room's messages were relayed: exact
    // (scheduler nanoseconds), and utime + stime (clock ticks) as a cross-check.
    let mut cpu_ns = [0u64; 2];
    let mut cpu_ticks = [0u64; 2];
    for round in 0..ROUNDS {
        for (which, (alice, bob)) in pairs.iter_mut().enumerate() {
            let (ns_before, ticks_before) = (cpu_ns_of(&pids), cpu_ticks_of(&pids));
            for i in 0..PER_ROUND {
                let text = format!("{round}-{i}");
                let sent = Instant::now();
                alice.send(RoomMsg::Chat { text: text.clone() }).await;
                next_of!(bob, ServerMsg::Chat(entry) => assert_eq!(entry.text, text));
                samples[which].push(sent.elapsed());
                next_of!(alice, ServerMsg::Chat(_));
            }
            cpu_ns[which] += cpu_ns_of(&pids) - ns_before;
            cpu_ticks[which] += cpu_ticks_of(&pids) - ticks_before;
        }
    }
    // The background (lease renewals, heartbeats, the last writes), for comparison: 2 s idle.
    let idle_before = cpu_ns_of(&pids);
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "relay latency: both nodes idle use {:.2} ms of CPU a second",
        (cpu_ns_of(&pids) - idle_before) as f64 / 2e6
    );
    let ticks_per_s = clock_ticks_per_second();
    for (which, (name, mut s)) in ["one node", "across two nodes"]
        .into_iter()
        .zip(samples)
        .enumerate()
    {
        s.sort();
        let pct = |p: f64| s[((s.len() as f64 * p) as usize).min(s.len() - 1)].as_secs_f64() * 1000.0;
        let messages = s.len() as f64;
        println!(
            "relay latency, {name}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} messages); \
             CPU of both nodes per relayed message: {:.1} µs (utime+stime: {:.1} µs)",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            s.len(),
            cpu_ns[which] as f64 / 1000.0 / messages,
            cpu_ticks[which] as f64 * 1e6 / ticks_per_s / messages,
        );
    }
}

/// Nanoseconds the processes `pids` have run on a CPU so far, all threads (the first field of
/// each `/proc/<pid>/task/<tid>/schedstat`).
fn cpu_ns_of(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// utime + stime of the processes `pids` so far, in clock ticks (`/proc/<pid>/stat`, fields
/// 14 and 15; the name in parentheses may hold spaces, so fields count from its end).
fn cpu_ticks_of(pids: &[u32]) -> u64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
            field(11) + field(12)
        })
        .sum()
}

/// The kernel's clock ticks per second for `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// An API request to the node at `addr` (raw HTTP/1.1, `Connection: close`): status and body.
async fn api(addr: &str, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {API_SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_string(&mut response))
        .await
        .expect("answered")
        .expect("read");
    let status = response[9..12].parse().expect("a status");
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

const API_SECRET: &str = "0123456789abcdef0123456789abcdef-cluster";

/// The REST API through any node: a room living on node 1 is read, its participant muted and
/// the room ended through node 2 (which forwards to node 1 with the cluster's secret); the list
/// through either node has both nodes' rooms; making a room through node 2 with the name of
/// node 1's room is refused as it would be on node 1.
#[tokio::test]
async fn the_rest_api_reaches_every_room_through_any_node() {
    if !parts() {
        return;
    }
    let dir = Scratch::new("cluster-api");
    let [redis_port, p1, p2] = free_ports();
    let _redis = redis(redis_port, &dir.0).await;
    let credentials = ["--api-key", "clinic", "--api-secret", API_SECRET];
    let n1 = node(p1, redis_port, &credentials).await;
    let n2 = node(p2, redis_port, &credentials).await;
    let (mut alice, a) = joined(&n1.url(), "on-one", "Alice").await;
    let (_bob, _) = joined(&n2.url(), "on-two", "Bob").await;

    let (status, room) = api(&n2.addr, "GET", "/api/v1/rooms/on-one", "").await;
    assert_eq!(status, 200, "{room}");
    let ids: Vec<u64> = room["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    assert_eq!(ids, [a], "{room}");
    // Nodes learn of each other by their heartbeats (every second).
    for addr in [&n1.addr, &n2.addr] {
        let started = Instant::now();
        loop {
            let (status, list) = api(addr, "GET", "/api/v1/rooms", "").await;
            assert_eq!(status, 200);
            let mut names: Vec<String> = list["rooms"]
                .as_array()
                .expect("rooms")
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect();
            names.sort_unstable();
            if names == ["on-one", "on-two"] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "through {addr}: {list}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (status, refused) = api(&n2.addr, "POST", "/api/v1/rooms", r#"{"name":"on-one"}"#).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (409, Some("room_exists")),
        "{refused}"
    );

    let mute = format!("/api/v1/rooms/on-one/participants/{a}/mute");
    assert_eq!(api(&n2.addr, "POST", &mute, "").await.0, 204);
    next_of!(alice, ServerMsg::MuteRequest { .. });
    assert_eq!(api(&n2.addr, "DELETE", "/api/v1/rooms/on-one", "").await.0, 204);
    next_of!(alice, ServerMsg::RoomEnded { .. });
    assert_eq!(api(&n2.addr, "GET", "/api/v1/rooms/on-one", "").await.0, 404);
}
