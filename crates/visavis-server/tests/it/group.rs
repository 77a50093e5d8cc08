//! Group calls and room chat through the real server.

use serde_json::json;

use super::Server;

#[tokio::test]
async fn group_call_membership_and_pairwise_signalling() {
    let server = Server::start(&["--mesh-limit", "3", "--resume-grace", "1"]).await;
    let mut people = Vec::new();
    for name in ["Ann", "Bob", "Cy", "Di"] {
        people.push(server.joined("team", name).await);
    }
    let ids: Vec<u64> = people.iter().map(|(_, id)| *id).collect();
    for (c, _) in &mut people[..3] {
        c.send(json!({"type": "group_join"})).await;
    }
    // Everyone in the room, in the call or not, sees the three participants.
    let mut call_id = None;
    for (c, _) in &mut people {
        loop {
            let msg = c.next_of("group_call").await;
            if msg["participants"].as_array().map(Vec::len) == Some(3) {
                assert_eq!(msg["participants"], json!(ids[..3]));
                call_id = msg["callId"].as_u64();
                break;
            }
        }
    }
    let call_id = call_id.expect("group call id");
    assert_eq!(server.health().await["calls"], 1);
    // The mesh limit refuses a fourth.
    people[3].0.send(json!({"type": "group_join"})).await;
    people[3].0.expect_error("call_full").await;

    // Ann's offer reaches Cy only, stamped with Ann's id; Di (not in the call) cannot send.
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    people[0]
        .0
        .send(json!({"type": "description", "callId": call_id, "to": ids[2], "description": offer}))
        .await;
    let got = people[2].0.next_of("description").await;
    assert_eq!(
        (got["from"].as_u64(), &got["description"]),
        (Some(ids[0]), &offer)
    );
    people[1].0.expect_silence().await;
    people[3]
        .0
        .send(json!({"type": "candidate", "callId": call_id, "to": ids[0], "candidate": null}))
        .await;
    people[3].0.expect_error("unknown_call").await;

    // Ann drops out (no goodbye): she is reconnecting, and once her grace period is over she
    // leaves the call; the other two stay in it.
    let (ann, _) = people.remove(0);
    drop(ann);
    let state = people[0].0.next_of("member_state").await;
    assert_eq!(
        (state["id"].as_u64(), state["state"].as_str()),
        (Some(ids[0]), Some("reconnecting"))
    );
    let msg = people[0].0.next_of("group_call").await;
    assert_eq!(msg["participants"], json!(ids[1..3]));
}

#[tokio::test]
async fn chat_arrives_in_one_order_for_everyone_even_when_all_send_at_once() {
    let server = Server::start(&[]).await;
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(server.joined("chat", &format!("p{i}")).await);
    }
    // Every message is on the wire before anyone reads.
    for round in 0..20 {
        for (i, (c, _)) in people.iter_mut().enumerate() {
            c.send(json!({"type": "chat", "text": format!("{i}:{round}")}))
                .await;
        }
    }
    let mut seen = Vec::new();
    for (c, _) in &mut people {
        let mut mine = Vec::new();
        while mine.len() < 100 {
            let msg = c.next_of("chat").await;
            mine.push((
                msg["seq"].as_u64().expect("seq"),
                msg["from"].clone(),
                msg["text"].clone(),
            ));
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
        let rounds: Vec<String> = seen[0]
            .iter()
            .filter(|(_, from, _)| from.as_u64() == Some(*id))
            .map(|(_, _, text)| text.as_str().unwrap_or_default().to_owned())
            .collect();
        let expected: Vec<String> = (0..20).map(|r| format!("{i}:{r}")).collect();
        assert_eq!(rounds, expected);
    }

    // A latecomer gets the last 100, and a 5 KiB message is refused.
    let mut late = server.client().await;
    late.send(json!({"type": "join", "version": 1, "room": "chat", "name": "late"}))
        .await;
    let joined = late.expect("joined").await;
    assert_eq!(joined["chat"].as_array().map(Vec::len), Some(100));
    assert_eq!(joined["chat"][99]["seq"], 100);
    late.send(json!({"type": "chat", "text": "x".repeat(5 * 1024)}))
        .await;
    late.expect_error("invalid_chat").await;
    late.send(json!({"type": "chat", "text": "from: forged", "from": 1, "name": "Boss", "at": 0}))
        .await;
    let mine = late.next_of("chat").await;
    assert_eq!(
        (mine["name"].as_str(), mine["text"].as_str()),
        (Some("late"), Some("from: forged"))
    );
    assert!(mine["at"].as_u64().is_some_and(|t| t > 1_700_000_000_000));
}
