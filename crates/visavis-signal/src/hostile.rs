//! Hostile input: arbitrary frames and connection events from many clients, with timers
//! firing in between. Nothing may panic, and every table (sessions, connections, tokens,
//! deadlines, the room core) must agree after every step.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use visavis_room::Config as RoomConfig;

use super::*;

/// Frames that are often valid and hit real members, calls and tokens.
fn frame() -> impl Strategy<Value = String> {
    let id = 0u64..8;
    prop_oneof![
        (
            0u32..3,
            prop_oneof![Just("r"), Just("s"), Just("a/b")],
            "[A-Za-z ]{0,6}"
        )
            .prop_map(|(v, room, name)| format!(
                r#"{{"type":"join","version":{v},"room":"{room}","name":"{name}"}}"#
            )),
        (1u64..6, 0u64..12)
            .prop_map(|(t, sn)| format!(r#"{{"type":"resume","version":1,"token":"t{t}","lastSn":{sn}}}"#)),
        (0u64..20).prop_map(|ack| format!(r#"{{"type":"pong","ack":{ack}}}"#)),
        Just(r#"{"type":"leave"}"#.to_owned()),
        id.clone()
            .prop_map(|to| format!(r#"{{"type":"invite","to":{to}}}"#)),
        (
            prop_oneof![Just("accept"), Just("decline"), Just("cancel"), Just("hangup")],
            id.clone()
        )
            .prop_map(|(t, c)| format!(r#"{{"type":"{t}","callId":{c}}}"#)),
        (id.clone(), proptest::option::of(id.clone())).prop_map(|(c, to)| format!(
            r#"{{"type":"description","callId":{c},{}"description":{{"type":"offer","sdp":"v=0\r\n"}}}}"#,
            to.map(|t| format!(r#""to":{t},"#)).unwrap_or_default()
        )),
        (id.clone(), any::<bool>()).prop_map(|(c, end)| format!(
            r#"{{"type":"candidate","callId":{c},"candidate":{}}}"#,
            if end {
                "null"
            } else {
                r#"{"candidate":"candidate:1","sdpMid":"0"}"#
            }
        )),
        Just(r#"{"type":"group_join"}"#.to_owned()),
        Just(r#"{"type":"group_leave"}"#.to_owned()),
        (proptest::option::of(0u64..5), "\\PC{0,20}").prop_map(|(cn, text)| format!(
            r#"{{{}"type":"chat","text":{}}}"#,
            cn.map(|n| format!(r#""cn":{n},"#)).unwrap_or_default(),
            serde_json_string(&text)
        )),
        private_room_frame(),
        "\\PC{0,60}",
        Just(r#"{"type":"invite","to":"x"}"#.to_owned()),
        Just(r#"{"type":"description","callId":1,"description":{"type":"offer","sdp":7}}"#.to_owned()),
    ]
}

/// Frames of private rooms: creating them, knocking on them (the test core's ids and keys
/// count up: `~0…01` with key `0…02`, `~0…03` with key `0…04`), and every host power.
fn private_room_frame() -> impl Strategy<Value = String> {
    let id = 0u64..8;
    let secret = |n: u64| format!("{n:022}");
    prop_oneof![
        "[A-Za-z]{1,4}".prop_map(|name| format!(r#"{{"type":"create","version":1,"name":"{name}"}}"#)),
        (0u64..3, proptest::option::of(0u64..3), "[A-Za-z]{1,4}").prop_map(move |(room, key, name)| {
            let key = key
                .map(|k| format!(r#","hostKey":"{}""#, secret(2 * k + 2)))
                .unwrap_or_default();
            format!(
                r#"{{"type":"join","version":1,"room":"~{}","name":"{name}"{key}}}"#,
                secret(2 * room + 1)
            )
        }),
        (
            prop_oneof![
                Just("admit"),
                Just("deny"),
                Just("remove"),
                Just("mute"),
                Just("make_host")
            ],
            id
        )
            .prop_map(|(t, id)| format!(r#"{{"type":"{t}","id":{id}}}"#)),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>())
        )
            .prop_map(|(lobby, locked, history)| {
                let field =
                    |name: &str, v: Option<bool>| v.map(|v| format!(r#","{name}":{v}"#)).unwrap_or_default();
                format!(
                    r#"{{"type":"room_settings"{}{}{}}}"#,
                    field("lobby", lobby),
                    field("locked", locked),
                    field("shareHistory", history)
                )
            }),
        Just(r#"{"type":"end_room"}"#.to_owned()),
    ]
}

/// `text` as a JSON string literal (quotes and backslashes escaped, controls as \u).
fn serde_json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Debug, Clone)]
enum Step {
    /// A connection from 127.0.0.n.
    Open(u8),
    /// A frame on the n-th connection opened (modulo how many there are).
    Text(usize, String),
    Binary(usize),
    Close(usize, bool),
    Wait(u64),
    Shutdown,
}

fn step() -> impl Strategy<Value = Step> {
    let conn = 0usize..8;
    prop_oneof![
        2 => (1u8..4).prop_map(Step::Open),
        8 => (conn.clone(), frame()).prop_map(|(c, f)| Step::Text(c, f)),
        1 => conn.clone().prop_map(Step::Binary),
        2 => (conn, any::<bool>()).prop_map(|(c, goodbye)| Step::Close(c, goodbye)),
        2 => (0u64..40_000).prop_map(Step::Wait),
        1 => Just(Step::Shutdown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_clients_never_break_signalling(steps in proptest::collection::vec(step(), 1..80)) {
        let core = Core::new(RoomConfig {
            room_capacity: 3,
            mesh_limit: 3,
            chat_history: 4,
            max_rooms: 2,
            ..RoomConfig::default()
        });
        let config = Config {
            heartbeat: Duration::from_secs(9),
            grace: Duration::from_secs(20),
            log_limit: 3000,
            log_total: 8000,
            max_message: 400,
            max_description: 800,
            rate: 5.0,
            burst: 10.0,
            ip_rate: 8.0,
            ip_burst: 16.0,
            sessions_per_ip: 3,
            max_sessions: 7,
            seats_per_ip: 2,
            join_timeout: Duration::from_secs(5),
        };
        let mut n = 0;
        let tokens: TokenSource = Box::new(move |_: &str| { n += 1; format!("t{n}") });
        let mut sig = Signalling::new(core, config, tokens);
        let mut now = Now { mono: Instant::now(), unix_ms: 0 };
        let mut conns: Vec<ConnId> = Vec::new();
        let pick = |conns: &[ConnId], i: usize| (!conns.is_empty()).then(|| conns[i % conns.len()]);
        // The members as the edge learns of them: every join told once, every leave once.
        let mut members = std::collections::HashSet::new();
        for step in steps {
            match step {
                Step::Open(n) => {
                    if let Ok(conn) = sig.handle_open(now, [127, 0, 0, n].into()) {
                        conns.push(conn);
                    }
                }
                Step::Text(i, text) => if let Some(c) = pick(&conns, i) { sig.handle_text(now, c, &text) },
                Step::Binary(i) => if let Some(c) = pick(&conns, i) { sig.handle_binary(now, c) },
                Step::Close(i, goodbye) => if let Some(c) = pick(&conns, i) {
                    sig.handle_close(now, c, if goodbye { Ending::Goodbye } else { Ending::Dropped });
                },
                Step::Wait(ms) => {
                    now = now.after(Duration::from_millis(ms));
                    sig.handle_timeout(now);
                }
                Step::Shutdown => sig.handle_shutdown(now),
            }
            while let Some(out) = sig.poll_output() {
                match out {
                    Output::Send { frame, .. } => {
                        // Every frame is one JSON object the client decoder understands.
                        let text = std::str::from_utf8(&frame).expect("UTF-8");
                        prop_assert!(visavis_protocol::decode_server(text).is_ok(), "{}", text);
                    }
                    Output::Event(event) => match event.member() {
                        Some(MemberEvent::Joined(id)) => prop_assert!(members.insert(id)),
                        Some(MemberEvent::Left(id)) => prop_assert!(members.remove(&id)),
                        None => {}
                    },
                    Output::Close { .. } => {}
                }
            }
            sig.assert_consistent();
            prop_assert_eq!(members.len(), sig.counts().core.members);
        }
    }
}
