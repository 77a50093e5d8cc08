//! Group calls and room chat through the real server.

use serde_json::json;
use visavis_protocol::{Candidate, Description, ErrorCode, Presence, RoomMsg, SdpKind, ServerMsg};

use super::{join, Server};

#[tokio::test]
async fn group_call_membership_and_pairwise_signalling() {
    let server = Server::start(&[
        "--group-media",
        "mesh",
        "--mesh-limit",
        "3",
        "--resume-grace",
        "1",
    ])
    .await;
    let mut people = Vec::new();
    for name in ["Ann", "Bob", "Cy", "Di"] {
        people.push(server.joined("team", name).await);
    }
    let ids: Vec<u64> = people.iter().map(|(_, id)| *id).collect();
    for (c, _) in &mut people[..3] {
        c.send(RoomMsg::GroupJoin).await;
    }
    // Everyone in the room, in the call or not, sees the three participants.
    let mut call_id = None;
    for (c, _) in &mut people {
        loop {
            let call = next_of!(c, ServerMsg::GroupCall(call) => call);
            if call.participants.len() == 3 {
                assert_eq!(call.participants, ids[..3]);
                call_id = Some(call.call_id);
                break;
            }
        }
    }
    let call_id = call_id.expect("group call id");
    assert_eq!(server.counts().await["calls"], 1);
    // The mesh limit refuses a fourth.
    people[3].0.send(RoomMsg::GroupJoin).await;
    people[3].0.expect_error(ErrorCode::CallFull).await;

    // Ann's offer reaches Cy only, stamped with Ann's id; Di (not in the call) cannot send.
    let offer = Description::new(SdpKind::Offer, "v=0\r\n");
    people[0]
        .0
        .send(RoomMsg::Description {
            call_id,
            to: Some(ids[2]),
            description: offer.clone(),
        })
        .await;
    let got = next_of!(people[2].0, ServerMsg::Description { from, description, .. } => (from, description));
    assert_eq!(got, (ids[0], offer));
    people[1].0.expect_silence().await;
    people[3]
        .0
        .send(RoomMsg::Candidate {
            call_id,
            to: Some(ids[0]),
            candidate: Candidate::end(),
        })
        .await;
    people[3].0.expect_error(ErrorCode::UnknownCall).await;

    // Ann drops out (no goodbye): she is reconnecting, and once her grace period is over she
    // leaves the call; the other two stay in it.
    let (ann, _) = people.remove(0);
    drop(ann);
    let state = next_of!(people[0].0, ServerMsg::MemberState { id, state } => (id, state));
    assert_eq!(state, (ids[0], Presence::Reconnecting));
    let call = next_of!(people[0].0, ServerMsg::GroupCall(call) => call);
    assert_eq!(call.participants, ids[1..3]);
}

#[tokio::test]
async fn chat_arrives_in_one_order_for_everyone_even_when_all_send_at_once() {
    // 100 messages at once is over the chat rate limits this test is not about.
    let server = Server::start(&["--chat-rate-limit", "1000", "--room-chat-rate-limit", "1000"]).await;
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(server.joined("chat", &format!("p{i}")).await);
    }
    // Every message is on the wire before anyone reads.
    for round in 0..20 {
        for (i, (c, _)) in people.iter_mut().enumerate() {
            c.send(RoomMsg::Chat {
                text: format!("{i}:{round}"),
            })
            .await;
        }
    }
    let mut seen = Vec::new();
    for (c, _) in &mut people {
        let mut mine = Vec::new();
        while mine.len() < 100 {
            let entry = next_of!(c, ServerMsg::Chat(entry) => entry);
            mine.push((entry.seq, entry.from, entry.text));
        }
        seen.push(mine);
    }
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "everyone sees the same order");
    }
    let seqs: Vec<u64> = seen[0].iter().map(|(s, _, _)| *s).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    // Each sender's messages keep the order they were sent in.
    for (i, (_, id)) in people.iter().enumerate() {
        let rounds: Vec<&str> = seen[0]
            .iter()
            .filter(|(_, from, _)| from == id)
            .map(|(_, _, text)| text.as_str())
            .collect();
        let expected: Vec<String> = (0..20).map(|r| format!("{i}:{r}")).collect();
        assert_eq!(rounds, expected);
    }

    // A latecomer gets the last 100, and a 5 KiB message is refused.
    let mut late = server.client().await;
    late.send(join("chat", "late")).await;
    let chat = expect!(late, ServerMsg::Joined { chat, .. } => chat);
    assert_eq!(chat.len(), 100);
    assert_eq!(chat[99].seq, 100);
    late.send(RoomMsg::Chat {
        text: "x".repeat(5 * 1024),
    })
    .await;
    late.expect_error(ErrorCode::InvalidChat).await;
    // Fields only the server may stamp are ignored.
    late.send_json(json!({"type": "chat", "text": "from: forged", "from": 1, "name": "Boss", "at": 0}))
        .await;
    let mine = next_of!(late, ServerMsg::Chat(entry) => entry);
    assert_eq!((mine.name.as_str(), mine.text.as_str()), ("late", "from: forged"));
    assert!(mine.at > 1_700_000_000_000);
}
