//! The state that outlives a process: the real binary restarted on the same port and data
//! directory during a 1:1 call, gracefully (SIGTERM) and with SIGKILL. Both clients resume
//! with their tokens, nothing is lost or doubled (the clients are strict about `sn`), the call
//! goes on and the chat is still the room's.

use std::process::Command;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use visavis_client::Client;
use visavis_protocol::{Description, EndReason, Presence, RoomMsg, SdpKind, ServerMsg};

use super::binary::Binary;
use super::{join, TempDir, TestClient};

async fn joined(url: &str, name: &str) -> (TestClient, u64) {
    let mut client = TestClient::new(Client::connect(url).await.expect("connect"));
    client.send(join("r", name)).await;
    let id = expect!(client, ServerMsg::Joined { you, .. } => you.id);
    (client, id)
}

/// Sends `signal` to the binary and waits (at most 10 s) for it to exit.
pub(super) async fn stop(binary: &mut Binary, signal: &str) {
    let sent = Command::new("kill")
        .args([signal, &binary.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let started = Instant::now();
    while binary.child.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after {signal}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn restart_keeps_the_call(signal: &str) {
    let data = TempDir::new("restart");
    let dir = data.0.display().to_string();
    let mut first = Binary::start(&["--no-turn", "--data-dir", &dir]).await;
    let url = first.url();
    let (mut alice, a) = joined(&url, "Alice").await;
    let (mut bob, b) = joined(&url, "Bob").await;
    expect!(alice, ServerMsg::MemberJoined { .. });
    alice.send_numbered(RoomMsg::Invite { to: b }).await;
    let call = expect!(alice, ServerMsg::Ringing { call_id, .. } => call_id);
    expect!(bob, ServerMsg::Incoming { .. });
    bob.send_numbered(RoomMsg::Accept { call_id: call }).await;
    expect!(alice, ServerMsg::Accepted { .. });
    expect!(bob, ServerMsg::Accepted { .. });
    // One after the other, so the room's order is known.
    for (sender, text) in [(0, "hello"), (1, "hi")] {
        let clients = [&mut alice, &mut bob];
        let [first, second] = clients;
        if sender == 0 { first } else { second }
            .send_numbered(RoomMsg::Chat { text: text.into() })
            .await;
        for client in [&mut alice, &mut bob] {
            expect!(client, ServerMsg::Chat(entry) if entry.text == text);
        }
    }
    // The write-behind runs every 100 ms: what a crash may lose is only what came after it.
    tokio::time::sleep(Duration::from_millis(400)).await;

    stop(&mut first, signal).await;
    if signal == "-TERM" {
        for client in [&mut alice, &mut bob] {
            expect!(client, ServerMsg::Reconnect { .. });
            assert_eq!(client.expect_close().await, CloseCode::Away);
        }
    }
    let addr = first.addr.clone();
    drop(first);

    let started = Instant::now();
    let second = Binary::start(&["--no-turn", "--listen", &addr, "--data-dir", &dir]).await;
    let up = started.elapsed();
    let (mut alice, resumed) = alice.resume(&second.url()).await;
    assert_eq!(
        resumed["lastCn"], 2,
        "invite and chat were processed once: {resumed}"
    );
    let (mut bob, resumed) = bob.resume(&second.url()).await;
    assert_eq!(resumed["lastCn"], 2, "accept and chat: {resumed}");
    let resumed_in = started.elapsed();
    println!(
        "{signal}: new process serving {} ms after its start, both sessions resumed after {} ms",
        up.as_millis(),
        resumed_in.as_millis()
    );
    if signal == "-KILL" {
        // What the dead process may have sent after its last write is skipped over, once.
        alice.client.allow_gap();
        bob.client.allow_gap();
    }
    // Each sees the other reconnecting, then back: never `member_left`.
    for (client, other) in [(&mut alice, b), (&mut bob, a)] {
        for state in [Presence::Reconnecting, Presence::Online] {
            expect!(client, ServerMsg::MemberState { id, state: got, .. } if id == other && got == state);
        }
    }

    // The call is still active: negotiation is relayed, and a hangup ends it for both.
    alice
        .send_numbered(RoomMsg::Description {
            call_id: call,
            to: None,
            description: Description::new(SdpKind::Offer, "v=0"),
        })
        .await;
    expect!(bob, ServerMsg::Description { from, .. } if from == a);
    bob.send_numbered(RoomMsg::Hangup { call_id: call }).await;
    for client in [&mut alice, &mut bob] {
        expect!(client, ServerMsg::CallEnded { call_id, reason: EndReason::Hangup, .. } if call_id == call);
    }
    // The chat is the room's, each message once.
    let (mut carol, _) = {
        let mut client = TestClient::new(Client::connect(&second.url()).await.expect("connect"));
        client.send(join("r", "Carol")).await;
        let (chat, members) = expect!(client, ServerMsg::Joined { chat, members, .. } => (chat, members));
        let texts: Vec<&str> = chat.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["hello", "hi"]);
        assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [a, b]);
        (client, ())
    };
    carol.expect_silence().await;
    drop(data);
}

#[tokio::test]
async fn a_graceful_restart_keeps_the_call_and_the_chat() {
    restart_keeps_the_call("-TERM").await;
}

#[tokio::test]
async fn a_crash_keeps_the_call_and_the_chat() {
    restart_keeps_the_call("-KILL").await;
}
