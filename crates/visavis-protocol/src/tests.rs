//! Decoding and encoding of every message shape, the envelope, and raw payloads.

use super::*;

fn room(text: &str) -> RoomMsg {
    match decode_client(text) {
        Ok(ClientFrame {
            msg: ClientMsg::Room(msg),
            ..
        }) => msg,
        other => panic!("expected a room message from {text}, got {other:?}"),
    }
}

fn code(text: &str) -> ErrorCode {
    decode_client(text).unwrap_err().code
}

#[test]
fn join_and_room_messages_decode_in_camel_case_with_their_envelope() {
    let frame = decode_client(r#"{"type":"join","version":1,"room":"r1","name":"Ann"}"#).unwrap();
    assert_eq!(
        frame,
        ClientFrame {
            cn: None,
            msg: ClientMsg::Session(SessionMsg::Join {
                version: 1,
                room: "r1".into(),
                name: "Ann".into(),
                host_key: None,
                access_token: None,
            })
        }
    );
    // `cn` may come anywhere in the object, even after the fields.
    let frame = decode_client(r#"{"callId":7,"type":"accept","cn":12}"#).unwrap();
    assert_eq!(frame.cn, Some(12));
    assert_eq!(frame.msg, ClientMsg::Room(RoomMsg::Accept { call_id: 7 }));
    assert_eq!(room(r#"{"type":"group_join","extra":[1,2]}"#), RoomMsg::GroupJoin);
}

#[test]
fn candidate_null_or_missing_means_end_of_candidates() {
    for text in [
        r#"{"type":"candidate","callId":3,"candidate":null}"#,
        r#"{"type":"candidate","callId":3}"#,
    ] {
        let RoomMsg::Candidate { candidate, to, .. } = room(text) else {
            panic!("{text}")
        };
        assert!(candidate.is_end() && to.is_none(), "{text}");
    }
}

#[test]
fn relayed_payloads_keep_the_senders_text_byte_for_byte() {
    // Escapes as the sender wrote them (`\u000d`, `\/`) survive: nothing is re-encoded.
    let desc = r#"{"type":"offer","sdp":"v=0\u000d\nm=audio 9 \/x","x-extra":{"a":[1]}}"#;
    let cand = r#"{"candidate":"candidate:1 1 udp 1 192.0.2.1 5 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":null}"#;
    let RoomMsg::Description { description, to, .. } = room(&format!(
        r#"{{"type":"description","callId":3,"to":9,"description":{desc}}}"#
    )) else {
        panic!()
    };
    assert_eq!((description.json(), to), (desc, Some(9)));
    let RoomMsg::Candidate { candidate, .. } = room(&format!(
        r#"{{"type":"candidate","callId":3,"candidate":{cand}}}"#
    )) else {
        panic!()
    };
    assert_eq!(candidate.json(), cand);

    let relayed = ServerMsg::Description {
        call_id: 3,
        from: 8,
        description,
    };
    let mut out = Vec::new();
    relayed.encode(Some(41), &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(r#"{{"sn":41,"type":"description","callId":3,"from":8,"description":{desc}}}"#)
    );
}

#[test]
fn payloads_of_the_wrong_shape_are_bad_messages() {
    for payload in [
        r#""description":"v=0""#,
        r#""description":{"sdp":"v=0"}"#,
        r#""description":{"type":"teleport","sdp":"v=0"}"#,
        r#""description":{"type":"offer","sdp":5}"#,
    ] {
        let text = format!(r#"{{"type":"description","callId":1,{payload}}}"#);
        assert_eq!(code(&text), ErrorCode::BadMessage, "{text}");
    }
    for payload in [
        r#""candidate":{}"#,
        r#""candidate":{"candidate":7}"#,
        r#""candidate":{"candidate":"c","sdpMLineIndex":-1}"#,
        r#""candidate":"c""#,
    ] {
        let text = format!(r#"{{"type":"candidate","callId":1,{payload}}}"#);
        assert_eq!(code(&text), ErrorCode::BadMessage, "{text}");
    }
}

#[test]
fn every_kind_is_decodable_or_a_bad_message_and_nothing_else_is_known() {
    for kind in ClientMsg::kinds() {
        if let Err(e) = decode_client(&format!(r#"{{"type":"{kind}"}}"#)) {
            assert_eq!(e.code, ErrorCode::BadMessage, "{kind}");
            assert_eq!(e.request.as_deref(), Some(kind));
        }
    }
    let err = decode_client(r#"{"type":"teleport"}"#).unwrap_err();
    assert_eq!(err.code, ErrorCode::UnknownType);
    assert_eq!(err.request.as_deref(), Some("teleport"));
    // A server message's kind is not a client message.
    assert_eq!(code(r#"{"type":"joined"}"#), ErrorCode::UnknownType);
}

#[test]
fn malformed_input_is_a_bad_message() {
    for text in [
        "",
        "nope",
        "[]",
        "{}",
        r#"{"type":5}"#,
        r#"{"type":"invite","to":"x"}"#,
        r#"{"type":"invite","to":1,"to":2}"#,
        r#"{"type":"leave","type":"leave"}"#,
        r#"{"type":"leave","cn":-1}"#,
        r#"{"type":"leave"} trailing"#,
    ] {
        assert_eq!(code(text), ErrorCode::BadMessage, "{text}");
    }
}

#[test]
fn server_messages_are_flat_objects_with_the_sequence_number_first() {
    let msg = ServerMsg::CallEnded {
        call_id: 1,
        peer: 2,
        reason: EndReason::NoAnswer,
        by: None,
    };
    assert_eq!(
        msg.to_json(),
        r#"{"type":"call_ended","callId":1,"peer":2,"reason":"no_answer"}"#
    );
    let err = ServerMsg::error(ErrorCode::RoomFull, "full".into(), Some("join"));
    let mut out = Vec::new();
    err.encode(Some(7), &mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"sn":7,"type":"error","code":"room_full","message":"full","request":"join"}"#
    );
    let group = ServerMsg::GroupCall(GroupCall {
        call_id: 5,
        participants: vec![7, 8],
        media: GroupMedia::Sfu,
    });
    assert_eq!(
        group.to_json(),
        r#"{"type":"group_call","callId":5,"participants":[7,8],"media":"sfu"}"#
    );
    assert_eq!(
        ServerMsg::SfuRestart { call_id: 5 }.to_json(),
        r#"{"type":"sfu_restart","callId":5}"#
    );
}

fn joined(session: Option<SessionFields>) -> ServerMsg {
    ServerMsg::Joined {
        session,
        version: 1,
        room: "r".into(),
        you: Member {
            id: 2,
            name: "Bo".into(),
            host: true,
            publish: Publish::ALL,
        },
        members: vec![Member {
            id: 1,
            name: "Al".into(),
            host: false,
            publish: Publish::ALL,
        }],
        ice_servers: vec![],
        ring_timeout_ms: 30_000,
        preconnect: Preconnect::Relay,
        group: None,
        chat: vec![ChatEntry {
            seq: 1,
            from: 1,
            name: "Al".into(),
            text: "hi".into(),
            at: 5,
        }],
        state: RoomState {
            private: true,
            lobby: true,
            locked: false,
            share_history: false,
        },
        host_key: Some("Xb1m0VqN3yR5eWc8ZtP2uA".into()),
        in_call: vec![1],
        call: Some(Box::new(CurrentCall {
            call_id: 3,
            peer: 1,
            name: "Al".into(),
            outgoing: false,
            active: true,
            since: Some(4),
        })),
    }
}

#[test]
fn joined_carries_the_session_fields_at_the_top_level() {
    let msg = joined(Some(SessionFields {
        token: "ab".into(),
        heartbeat_ms: 10_000,
        resume_grace_ms: 30_000,
    }));
    let json = msg.to_json();
    assert!(
        json.starts_with(
            r#"{"type":"joined","token":"ab","heartbeatMs":10000,"resumeGraceMs":30000,"version":1"#
        ),
        "{json}"
    );
    assert!(!joined(None).to_json().contains("token"));
}

#[test]
fn every_server_message_round_trips_through_the_client_decoder() {
    let msgs = vec![
        joined(Some(SessionFields {
            token: "t".into(),
            heartbeat_ms: 1,
            resume_grace_ms: 2,
        })),
        ServerMsg::Resumed {
            version: 1,
            last_cn: 4,
            token: "u".into(),
        },
        ServerMsg::Ping { ack: 3 },
        ServerMsg::IceServers {
            ice_servers: vec![IceServer {
                urls: vec!["turn:h:3478".into()],
                username: Some("1:m1".into()),
                credential: Some("c".into()),
            }],
        },
        ServerMsg::Left { room: "r".into() },
        ServerMsg::MemberState {
            id: 1,
            state: Presence::Reconnecting,
            reloaded: false,
        },
        ServerMsg::MemberState {
            id: 1,
            state: Presence::Online,
            reloaded: true,
        },
        ServerMsg::MemberCall { id: 1, in_call: true },
        ServerMsg::CallAttempt {
            from: 1,
            name: "Al".into(),
        },
        ServerMsg::Candidate {
            call_id: 1,
            from: 2,
            candidate: Candidate::new("candidate:1", "0"),
        },
        ServerMsg::Description {
            call_id: 1,
            from: 2,
            description: Description::new(SdpKind::Answer, "v=0\r\n"),
        },
        ServerMsg::Chat(ChatEntry {
            seq: 3,
            from: 1,
            name: "Al".into(),
            text: "x".into(),
            at: 9,
        }),
        ServerMsg::GroupCall(GroupCall {
            call_id: 5,
            participants: vec![],
            media: GroupMedia::Mesh,
        }),
        ServerMsg::Waiting {
            session: Some(SessionFields {
                token: "w".into(),
                heartbeat_ms: 1,
                resume_grace_ms: 2,
            }),
            room: "~q3Zl0fW1bX9e7TtYp2K4aA".into(),
            you: Member {
                id: 9,
                name: "Li".into(),
                host: false,
                publish: Publish::ALL,
            },
        },
        ServerMsg::KnockEnded {
            id: 9,
            outcome: KnockOutcome::Denied,
            by: Some(8),
        },
        ServerMsg::RoomState(RoomState {
            private: true,
            lobby: false,
            locked: true,
            share_history: true,
        }),
        ServerMsg::RoomEnded {
            room: "~q3Zl0fW1bX9e7TtYp2K4aA".into(),
            by: Some(8),
        },
        ServerMsg::RoomEnded {
            room: "visit-7".into(),
            by: None,
        },
        ServerMsg::Removed {
            room: "visit-7".into(),
            by: None,
        },
        ServerMsg::MuteRequest { by: None },
    ];
    for (i, msg) in msgs.into_iter().enumerate() {
        let mut out = Vec::new();
        msg.encode(Some(i as u64 + 1), &mut out);
        let frame = decode_server(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(frame.sn, Some(i as u64 + 1));
        assert_eq!(frame.msg, msg);
    }
}

#[test]
fn client_frames_encode_with_cn_and_decode_back() {
    let frames = [
        ClientFrame {
            cn: Some(3),
            msg: RoomMsg::Candidate {
                call_id: 1,
                to: None,
                candidate: Candidate::end(),
            }
            .into(),
        },
        ClientFrame {
            cn: None,
            msg: SessionMsg::Resume {
                version: 1,
                token: "t".into(),
                last_sn: 9,
                reloaded: true,
            }
            .into(),
        },
        ClientFrame {
            cn: Some(1),
            msg: RoomMsg::Leave.into(),
        },
    ];
    for frame in frames {
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(decode_client(std::str::from_utf8(&out).unwrap()), Ok(frame));
    }
    let mut out = Vec::new();
    ClientFrame {
        cn: Some(2),
        msg: RoomMsg::Invite { to: 4 }.into(),
    }
    .encode(&mut out);
    assert_eq!(out, br#"{"cn":2,"type":"invite","to":4}"#);
}

#[test]
fn kinds_are_listed_once_per_scope_and_named_by_kind() {
    assert_eq!(SessionMsg::kinds(), ["join", "create", "resume", "pong"]);
    assert!(RoomMsg::kinds().contains(&"group_leave"));
    assert!(!RoomMsg::kinds().iter().any(|k| SessionMsg::kinds().contains(k)));
    assert_eq!(RoomMsg::Chat { text: "x".into() }.kind(), "chat");
    assert_eq!(ClientMsg::from(SessionMsg::Pong { ack: 1 }).kind(), "pong");
    assert_eq!(ServerMsg::Ping { ack: 0 }.kind(), "ping");
    assert_eq!(ServerMsg::kinds().len(), 34);
}

#[test]
fn sfu_view_and_active_speaker_on_the_wire() {
    let frame = decode_client(
        r#"{"type":"sfu_view","callId":5,"tracks":[{"member":7,"source":"camera","width":320,"height":180,"visible":false}]}"#,
    )
    .unwrap();
    assert_eq!(
        frame.msg,
        ClientMsg::Room(RoomMsg::SfuView {
            call_id: 5,
            tracks: vec![ViewTrack {
                member: 7,
                source: TrackSource::Camera,
                width: 320,
                height: 180,
                visible: false,
            }],
        })
    );
    assert_eq!(
        ServerMsg::ActiveSpeaker {
            call_id: 5,
            member: 8
        }
        .to_json(),
        r#"{"type":"active_speaker","callId":5,"member":8}"#
    );
}
