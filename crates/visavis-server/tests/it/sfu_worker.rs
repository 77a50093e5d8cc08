//! The SFU's worker process (`sfu_worker.rs`) with the real binary: it outlives a crash of
//! visavis and the next process on the same data directory adopts it, so the SFU call goes on
//! (the same SFU answers, nobody is told `sfu_restart`); a process with other SFU settings ends
//! it and starts its own; stopped for good, it ends after the resume grace.

use std::time::{Duration, Instant};

use visavis_client::Client;
use visavis_protocol::{CallId, Description, RoomMsg, SdpKind, ServerMsg};

use super::binary::Binary;
use super::restart::stop;
use super::sfu::browser_offer;
use super::{join, TempDir, TestClient};

/// Whether something on this machine holds UDP `port` on 127.0.0.1.
fn held(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// Waits (at most `limit`) until UDP `port` is free.
async fn freed(port: u16, limit: Duration) -> bool {
    let started = Instant::now();
    while held(port) {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// `name` in room "r", in its group call; returns the client and the call's id.
async fn in_call(url: &str, name: &str) -> (TestClient, CallId) {
    let mut client = TestClient::new(Client::connect(url).await.expect("connect"));
    client.send(join("r", name)).await;
    expect!(client, ServerMsg::Joined { .. });
    client.send_numbered(RoomMsg::GroupJoin).await;
    let call = next_of!(client, ServerMsg::GroupCall(call) => call);
    (client, call.call_id)
}

/// Offers to the SFU; returns the UDP port of the SFU's candidate in the answer.
async fn sfu_port(client: &mut TestClient, call_id: CallId) -> u16 {
    client
        .send_numbered(RoomMsg::SfuDescription {
            call_id,
            description: Description::new(SdpKind::Offer, &browser_offer()),
        })
        .await;
    let description = next_of!(client, ServerMsg::SfuDescription { description, .. } => description);
    let (_, sdp) = description.decode().expect("an answer");
    let candidate = sdp
        .lines()
        .find(|l| l.contains("typ host") && l.contains(" udp "))
        .expect("a UDP candidate");
    let words: Vec<&str> = candidate.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "typ").expect("typ");
    words[at - 1].parse().expect("a port")
}

/// Sends a chat line and reads until it comes back; returns what came before it.
async fn until_own_chat(client: &mut TestClient, text: &str) -> Vec<ServerMsg> {
    client.send_numbered(RoomMsg::Chat { text: text.into() }).await;
    let mut before = Vec::new();
    loop {
        match client.recv().await {
            ServerMsg::Chat(entry) if entry.text == text => return before,
            other => before.push(other),
        }
    }
}

#[tokio::test]
async fn the_sfu_worker_outlives_a_crash_and_is_adopted_by_the_next_process() {
    let data = TempDir::new("sfu-worker");
    // A data directory that does not exist yet, as on a first run.
    let dir = data.0.join("data").display().to_string();
    let common = [
        "--no-turn",
        "--data-dir",
        &dir,
        "--resume-grace",
        "3",
        "--sfu-idle-timeout",
        "60",
    ];
    let mut first = Binary::start(&common).await;
    let (mut ann, call) = in_call(&first.url(), "Ann").await;
    let port = sfu_port(&mut ann, call).await;
    // The write-behind runs every 100 ms.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(&mut first, "-KILL").await;
    assert!(held(port), "the worker holds the SFU's port after visavis died");

    let addr = first.addr.clone();
    drop(first);
    let listen = ["--listen", &addr];
    let second = Binary::start(&[&common[..], &listen[..]].concat()).await;
    let (mut ann, _) = ann.resume(&second.url()).await;
    ann.client.allow_gap();
    // Bob joins the call on the new process: the same SFU answers him.
    let (mut bob, bob_call) = in_call(&second.url(), "Bob").await;
    assert_eq!(bob_call, call);
    assert_eq!(
        sfu_port(&mut bob, call).await,
        port,
        "the new process adopted the worker"
    );
    // Ann's connection to the SFU goes on: she is not told to connect again.
    let got = until_own_chat(&mut ann, "still here").await;
    assert!(
        !got.iter().any(|m| matches!(m, ServerMsg::SfuRestart { .. })),
        "{got:?}"
    );

    // A process with other SFU settings ends the old worker (its port is free) and starts its
    // own; the call's participants are told to connect to it.
    let mut second = second;
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop(&mut second, "-KILL").await;
    drop(second);
    let other = ["--sfu-last-n", "3"];
    let mut third = Binary::start(&[&common[..], &listen[..], &other[..]].concat()).await;
    assert!(freed(port, Duration::from_secs(1)).await, "the old worker ended");
    let (mut ann, _) = ann.resume(&third.url()).await;
    ann.client.allow_gap();
    next_of!(ann, ServerMsg::SfuRestart { .. });
    let new_port = sfu_port(&mut ann, call).await;
    assert_ne!(new_port, port);

    // Stopped for good: the worker keeps Ann's session for the resume grace (3 s), then ends.
    stop(&mut third, "-TERM").await;
    assert!(held(new_port), "the worker waits for a process to adopt it");
    assert!(
        freed(new_port, Duration::from_secs(10)).await,
        "the worker ended after the grace"
    );
    drop((ann, bob, data));
}
