//! The client against the real server: join, numbered messages, a dropped connection resumed
//! with nothing lost or doubled in either direction.

use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use visavis_client::{Client, ClientError};
use visavis_protocol::{ErrorCode, RoomMsg, ServerMsg};

async fn server() -> (String, CancellationToken) {
    // Several servers side by side, none restarted: no state file (it is locked per process).
    let settings = visavis_server::Settings::parse_from([
        "visavis",
        "--no-turn",
        "--state",
        "none",
        // The SFU's default port is fixed; servers side by side need one each.
        "--sfu-listen",
        "127.0.0.1:0",
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let shutdown = CancellationToken::new();
    let app = visavis_server::App::start(listener, settings, shutdown.clone())
        .await
        .expect("start");
    let url = format!("ws://{}/ws", app.local_addr().expect("addr"));
    tokio::spawn(app.serve());
    (url, shutdown)
}

async fn next_chat(c: &mut Client) -> String {
    loop {
        if let ServerMsg::Chat(entry) = c.recv().await.expect("recv") {
            return entry.text;
        }
    }
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_nothing_lost_or_doubled() {
    let (url, _stop) = server().await;
    let (mut ann, _) = Client::join(&url, "r", "Ann").await.unwrap();
    let (mut bob, _) = Client::join(&url, "r", "Bob").await.unwrap();
    assert!(matches!(
        ann.recv().await.unwrap(),
        ServerMsg::MemberJoined { .. }
    ));
    let chat = |t: &str| RoomMsg::Chat { text: t.into() };

    ann.send_numbered(chat("one")).await.unwrap();
    assert_eq!(next_chat(&mut bob).await, "one");
    assert_eq!(next_chat(&mut ann).await, "one");
    // Bob says two things while Ann's network is gone; Ann says one the server never sees
    // acknowledged, so she sends it again after resuming, and it must arrive once.
    ann.send_numbered(chat("two")).await.unwrap();
    let (mut ann, last_cn) = ann.resume(&url).await.unwrap();
    assert_eq!(last_cn, 2, "the server had processed both");
    bob.send(chat("three")).await.unwrap();
    let got: Vec<String> = [next_chat(&mut ann).await, next_chat(&mut ann).await].into();
    assert_eq!(got, ["two", "three"]);
    assert_eq!(next_chat(&mut bob).await, "two");
    assert_eq!(next_chat(&mut bob).await, "three");
    // A message numbered at or below what the server processed is a duplicate: dropped.
    ann.send_text(r#"{"cn":2,"type":"chat","text":"two again"}"#.into())
        .await
        .expect("start");
    ann.send_numbered(chat("four")).await.unwrap();
    assert_eq!(next_chat(&mut bob).await, "four");
}

#[tokio::test]
async fn a_refused_join_and_an_unknown_token_are_errors_with_their_codes() {
    let (url, _stop) = server().await;
    let mut c = Client::connect(&url).await.unwrap();
    match c.join_room("a/b", "Ann").await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, ErrorCode::InvalidRoom),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        c.resume(&url).await,
        Err(ClientError::Unexpected { .. })
    ));
}
