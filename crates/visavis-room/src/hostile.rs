//! Hostile input: arbitrary frames through the decoder and arbitrary message sequences from
//! many sessions into the core, with connections dropping, resuming and timers firing in
//! between. Nothing may panic, and the core's indexes must agree after every step.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use visavis_protocol::{decode_client, ClientMsg, IceCandidate, SdpKind, SessionDescription};

use crate::{Config, Core, Now};

/// Small ids, so that generated messages often hit real members and calls.
fn id() -> impl Strategy<Value = u64> {
    0u64..10
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("  ".to_owned()),
        "[a-z]{1,8}",
        "\\PC{0,80}",
        Just("x".repeat(5000)),
        Just("<img src=x onerror=alert(1)>".to_owned()),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        (
            0u32..3,
            prop_oneof![Just("r".to_owned()), Just("s".to_owned()), text()],
            text()
        )
            .prop_map(|(version, room, name)| ClientMsg::Join { version, room, name }),
        Just(ClientMsg::Leave),
        id().prop_map(|to| ClientMsg::Invite { to }),
        id().prop_map(|call_id| ClientMsg::Cancel { call_id }),
        id().prop_map(|call_id| ClientMsg::Accept { call_id }),
        id().prop_map(|call_id| ClientMsg::Decline { call_id }),
        id().prop_map(|call_id| ClientMsg::Hangup { call_id }),
        (id(), proptest::option::of(id())).prop_map(|(call_id, to)| ClientMsg::Description {
            call_id,
            to,
            description: SessionDescription {
                kind: SdpKind::Offer,
                sdp: "v=0".into()
            },
        }),
        (id(), proptest::option::of(id()), any::<bool>()).prop_map(|(call_id, to, end)| {
            ClientMsg::Candidate {
                call_id,
                to,
                candidate: (!end).then(|| IceCandidate {
                    candidate: "candidate:1".into(),
                    sdp_mid: None,
                    sdp_m_line_index: None,
                    username_fragment: None,
                }),
            }
        }),
        (id(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(call_id, audio, video, screen)| {
            ClientMsg::Media {
                call_id,
                audio,
                video,
                screen,
            }
        }),
        Just(ClientMsg::GroupJoin),
        Just(ClientMsg::GroupLeave),
        text().prop_map(|text| ClientMsg::Chat { text }),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    /// A structured message from a session.
    Msg(u64, ClientMsg),
    /// A raw frame from a session, through the decoder.
    Frame(u64, String),
    Drop(u64),
    Detach(u64),
    Reattach(u64),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let session = 1u64..7;
    prop_oneof![
        6 => (session.clone(), client_msg()).prop_map(|(s, m)| Step::Msg(s, m)),
        2 => (session.clone(), prop_oneof![
            "\\PC{0,60}",
            Just(r#"{"type":"invite","to":"x"}"#.to_owned()),
            Just(r#"{"type":"chat"}"#.to_owned()),
            Just(r#"{"type":"join","version":1,"room":"r","name":"n","extra":[1,2]}"#.to_owned()),
        ]).prop_map(|(s, f)| Step::Frame(s, f)),
        1 => session.clone().prop_map(Step::Drop),
        1 => session.clone().prop_map(Step::Detach),
        1 => session.prop_map(Step::Reattach),
        1 => (0u64..40).prop_map(Step::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn arbitrary_sessions_never_break_the_core(steps in proptest::collection::vec(step(), 1..60)) {
        let mut core = Core::new(Config {
            room_capacity: 3,
            mesh_limit: 3,
            chat_history: 4,
            max_rooms: 3,
            ring_timeout: Duration::from_secs(30),
            ..Config::default()
        });
        let mut now = Now { mono: Instant::now(), unix_ms: 0 };
        for step in steps {
            match step {
                Step::Msg(s, msg) => core.handle_message(now, s, msg),
                Step::Frame(s, frame) => {
                    if let Ok(msg) = decode_client(&frame) {
                        core.handle_message(now, s, msg);
                    }
                }
                Step::Drop(s) => core.handle_disconnect(s),
                Step::Detach(s) => core.handle_detach(s),
                Step::Reattach(s) => core.handle_reattach(s),
                Step::Wait(secs) => {
                    now.mono += Duration::from_secs(secs);
                    now.unix_ms += secs * 1000;
                    core.handle_timeout(now.mono);
                }
            }
            while core.poll_output().is_some() {}
            core.assert_consistent();
        }
    }
}
