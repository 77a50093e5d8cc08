//! Scenario tests of the room core with a fake clock and no sockets.

use super::*;
use visavis_protocol::{SdpKind, SessionDescription};

struct World {
    core: Core,
    now: Instant,
}

impl World {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            core: Core::new(config),
            now: Instant::now(),
        }
    }

    fn send(&mut self, session: SessionId, msg: ClientMsg) -> Vec<Output> {
        self.core.handle_message(self.now, session, msg);
        self.drain()
    }

    fn drain(&mut self) -> Vec<Output> {
        self.core.assert_consistent();
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// Joins `session` to `room` and returns its member id.
    fn join(&mut self, session: SessionId, room: &str, name: &str) -> MemberId {
        let out = self.send(session, join(room, name));
        match &out[0].msg {
            ServerMsg::Joined { you, .. } => you.id,
            other => panic!("expected joined, got {other:?}"),
        }
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now += by;
        self.core.handle_timeout(self.now);
        self.drain()
    }

    /// Two members in one room with a call from 1 to 2 ringing; returns the call id.
    fn ringing_pair() -> (Self, MemberId, MemberId, CallId) {
        let mut w = Self::new();
        let a = w.join(1, "r", "Ann");
        let b = w.join(2, "r", "Bob");
        let out = w.send(1, ClientMsg::Invite { to: b });
        let call = match out[0].msg {
            ServerMsg::Ringing { call_id, .. } => call_id,
            ref other => panic!("expected ringing, got {other:?}"),
        };
        (w, a, b, call)
    }

    fn active_pair() -> (Self, MemberId, MemberId, CallId) {
        let (mut w, a, b, call) = Self::ringing_pair();
        w.send(2, ClientMsg::Accept { call_id: call });
        (w, a, b, call)
    }
}

fn join(room: &str, name: &str) -> ClientMsg {
    ClientMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
    }
}

fn error_code(out: &[Output]) -> ErrorCode {
    match out {
        [Output {
            msg: ServerMsg::Error { code, .. },
            ..
        }] => *code,
        other => panic!("expected one error, got {other:?}"),
    }
}

fn ended(call_id: CallId, peer: MemberId, reason: EndReason, by: Option<MemberId>) -> ServerMsg {
    ServerMsg::CallEnded {
        call_id,
        peer,
        reason,
        by,
    }
}

fn out(to: SessionId, msg: ServerMsg) -> Output {
    Output { to, msg }
}

#[test]
fn join_gets_member_list_and_others_are_told() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let got = w.send(2, join("r", "  Bob "));
    assert_eq!(got.len(), 2);
    let ServerMsg::Joined {
        you,
        members,
        room,
        version,
        ..
    } = &got[0].msg
    else {
        panic!("{got:?}")
    };
    assert_eq!((got[0].to, room.as_str(), *version), (2, "r", PROTOCOL_VERSION));
    assert_eq!(you.name, "Bob", "name is trimmed");
    assert_eq!(
        members,
        &vec![Member {
            id: a,
            name: "Ann".into()
        }]
    );
    assert_eq!(got[1], out(1, ServerMsg::MemberJoined { member: you.clone() }));
    // A different room sees nothing of this one.
    let other = w.send(3, join("elsewhere", "Cy"));
    let ServerMsg::Joined { members, .. } = &other[0].msg else {
        panic!()
    };
    assert!(members.is_empty());
    assert_eq!(other.len(), 1);
    assert_eq!(
        w.core.counts(),
        Counts {
            members: 3,
            rooms: 2,
            calls: 0
        }
    );
}

#[test]
fn each_member_gets_its_own_ice_servers() {
    let mut w = World::with(Config {
        ice_servers: IceServerSource::new(|member| {
            vec![IceServer {
                urls: vec!["turn:example.org:3478".into()],
                username: Some(format!("9999:{member}")),
                credential: Some("pw".into()),
            }]
        }),
        ..Config::default()
    });
    let got = w.send(1, join("r", "Ann"));
    let ServerMsg::Joined { you, ice_servers, .. } = &got[0].msg else {
        panic!()
    };
    assert_eq!(ice_servers[0].username, Some(format!("9999:{}", you.id)));
}

#[test]
fn disconnect_removes_member_at_once_and_empty_rooms_vanish() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    w.join(2, "r", "Bob");
    w.core.handle_disconnect(1);
    assert_eq!(w.drain(), vec![out(2, ServerMsg::MemberLeft { id: a })]);
    w.core.handle_disconnect(2);
    assert!(w.drain().is_empty());
    assert_eq!(w.core.counts(), Counts::default());
    // Disconnecting a session that never joined is harmless.
    w.core.handle_disconnect(99);
    assert!(w.drain().is_empty());
}

#[test]
fn leave_replies_and_allows_joining_again() {
    let mut w = World::new();
    w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    let got = w.send(2, ClientMsg::Leave);
    assert_eq!(
        got,
        vec![
            out(1, ServerMsg::MemberLeft { id: b }),
            out(2, ServerMsg::Left { room: "r".into() })
        ]
    );
    let b2 = w.join(2, "r2", "Bob");
    assert_ne!(b, b2, "a new membership gets a new id");
}

#[test]
fn join_errors() {
    let mut w = World::with(Config {
        room_capacity: 2,
        ..Config::default()
    });
    let bad_version = ClientMsg::Join {
        version: 99,
        room: "r".into(),
        name: "A".into(),
    };
    assert_eq!(error_code(&w.send(1, bad_version)), ErrorCode::UnsupportedVersion);
    assert_eq!(error_code(&w.send(1, join("r", " "))), ErrorCode::InvalidName);
    assert_eq!(
        error_code(&w.send(1, join("r", &"x".repeat(65)))),
        ErrorCode::InvalidName
    );
    assert_eq!(error_code(&w.send(1, join("a/b", "A"))), ErrorCode::InvalidRoom);
    assert_eq!(
        error_code(&w.send(1, ClientMsg::Invite { to: 1 })),
        ErrorCode::NotJoined
    );
    w.join(1, "r", "A");
    assert_eq!(error_code(&w.send(1, join("r", "A"))), ErrorCode::AlreadyJoined);
    w.join(2, "r", "B");
    let full = w.send(3, join("r", "C"));
    assert_eq!(error_code(&full), ErrorCode::RoomFull);
    // A seat frees up when someone leaves.
    w.core.handle_disconnect(2);
    w.drain();
    w.join(3, "r", "C");
}

#[test]
fn last_seat_goes_to_exactly_one() {
    let mut w = World::with(Config {
        room_capacity: 3,
        ..Config::default()
    });
    w.join(1, "r", "A");
    w.join(2, "r", "B");
    let mut admitted = 0;
    for session in 10..60 {
        w.core.handle_message(w.now, session, join("r", "racer"));
        for o in w.drain() {
            if o.to == session && matches!(o.msg, ServerMsg::Joined { .. }) {
                admitted += 1;
            }
        }
    }
    assert_eq!(admitted, 1);
    assert_eq!(w.core.counts().members, 3);
}

#[test]
fn invite_rings_both_sides_then_accept_activates() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    let got = w.send(1, ClientMsg::Invite { to: b });
    assert_eq!(
        got,
        vec![
            out(1, ServerMsg::Ringing { call_id: 1, peer: b }),
            out(
                2,
                ServerMsg::Incoming {
                    call_id: 1,
                    from: a,
                    name: "Ann".into()
                }
            ),
        ]
    );
    assert!(w.core.poll_timeout().is_some());
    let got = w.send(2, ClientMsg::Accept { call_id: 1 });
    assert_eq!(
        got,
        vec![
            out(
                1,
                ServerMsg::Accepted {
                    call_id: 1,
                    peer: b,
                    polite: false
                }
            ),
            out(
                2,
                ServerMsg::Accepted {
                    call_id: 1,
                    peer: a,
                    polite: true
                }
            ),
        ]
    );
    assert_eq!(w.core.poll_timeout(), None, "an accepted call has no ring timer");
}

#[test]
fn decline_ends_for_both() {
    let (mut w, a, b, call) = World::ringing_pair();
    let got = w.send(2, ClientMsg::Decline { call_id: call });
    assert_eq!(
        got,
        vec![
            out(1, ended(call, b, EndReason::Declined, Some(b))),
            out(2, ended(call, a, EndReason::Declined, Some(b))),
        ]
    );
    assert_eq!(w.core.counts().calls, 0);
}

#[test]
fn cancel_ends_for_both() {
    let (mut w, a, b, call) = World::ringing_pair();
    let got = w.send(1, ClientMsg::Cancel { call_id: call });
    assert_eq!(
        got,
        vec![
            out(1, ended(call, b, EndReason::Cancelled, Some(a))),
            out(2, ended(call, a, EndReason::Cancelled, Some(a))),
        ]
    );
}

#[test]
fn ring_timeout_ends_as_no_answer() {
    let (mut w, a, b, call) = World::ringing_pair();
    assert!(w.advance(Duration::from_secs(29)).is_empty());
    let got = w.advance(Duration::from_secs(1));
    assert_eq!(
        got,
        vec![
            out(1, ended(call, b, EndReason::NoAnswer, None)),
            out(2, ended(call, a, EndReason::NoAnswer, None)),
        ]
    );
    assert_eq!(w.core.poll_timeout(), None);
    // Accepting after the timeout is refused: the call is gone.
    assert_eq!(
        error_code(&w.send(2, ClientMsg::Accept { call_id: call })),
        ErrorCode::UnknownCall
    );
}

#[test]
fn ring_timeout_is_configurable() {
    let mut w = World::with(Config {
        ring_timeout: Duration::from_secs(2),
        ..Config::default()
    });
    w.join(1, "r", "A");
    let b = w.join(2, "r", "B");
    w.send(1, ClientMsg::Invite { to: b });
    assert_eq!(w.core.poll_timeout(), Some(w.now + Duration::from_secs(2)));
    assert_eq!(w.advance(Duration::from_secs(2)).len(), 2);
}

#[test]
fn invite_to_a_member_in_a_call_is_busy() {
    let (mut w, _a, b, _call) = World::active_pair();
    let c = w.join(3, "r", "Cy");
    let got = w.send(3, ClientMsg::Invite { to: b });
    assert_eq!(got, vec![out(3, ended(2, b, EndReason::Busy, None))]);
    // Also busy while the callee is only ringing.
    let d = w.join(4, "r", "Di");
    w.send(3, ClientMsg::Invite { to: d });
    let e = w.join(5, "r", "Ed");
    let got = w.send(5, ClientMsg::Invite { to: d });
    assert!(matches!(
        got[..],
        [Output {
            to: 5,
            msg: ServerMsg::CallEnded {
                reason: EndReason::Busy,
                ..
            }
        }]
    ));
    // The busy attempt did not disturb the ringing call.
    assert!(w.send(4, ClientMsg::Accept { call_id: 3 }).len() == 2);
    let _ = (c, e);
}

#[test]
fn caller_already_in_a_call_cannot_invite() {
    let (mut w, _a, _b, call) = World::active_pair();
    let c = w.join(3, "r", "Cy");
    assert_eq!(
        error_code(&w.send(1, ClientMsg::Invite { to: c })),
        ErrorCode::AlreadyInCall
    );
    let _ = call;
}

#[test]
fn glare_resolves_to_one_call() {
    let (mut w, a, b, call) = World::ringing_pair();
    // Bob invites Ann while Ann's invite rings at Bob: that is an accept.
    let got = w.send(2, ClientMsg::Invite { to: a });
    assert_eq!(
        got,
        vec![
            out(
                1,
                ServerMsg::Accepted {
                    call_id: call,
                    peer: b,
                    polite: false
                }
            ),
            out(
                2,
                ServerMsg::Accepted {
                    call_id: call,
                    peer: a,
                    polite: true
                }
            ),
        ]
    );
    assert_eq!(w.core.counts().calls, 1);
}

#[test]
fn hangup_by_either_side_ends_for_both() {
    for (hanger, session) in [(0, 1), (1, 2)] {
        let (mut w, a, b, call) = World::active_pair();
        let by = [a, b][hanger];
        let got = w.send(session, ClientMsg::Hangup { call_id: call });
        assert_eq!(
            got,
            vec![
                out(1, ended(call, b, EndReason::Hangup, Some(by))),
                out(2, ended(call, a, EndReason::Hangup, Some(by))),
            ]
        );
        // Both are free to call again.
        assert!(matches!(
            w.send(2, ClientMsg::Invite { to: a })[0].msg,
            ServerMsg::Ringing { .. }
        ));
    }
}

#[test]
fn hangup_while_ringing_means_cancel_or_decline() {
    let (mut w, a, _b, call) = World::ringing_pair();
    let got = w.send(1, ClientMsg::Hangup { call_id: call });
    assert!(
        matches!(got[0].msg, ServerMsg::CallEnded { reason: EndReason::Cancelled, by, .. } if by == Some(a))
    );
    let (mut w, _a, b, call) = World::ringing_pair();
    let got = w.send(2, ClientMsg::Hangup { call_id: call });
    assert!(
        matches!(got[0].msg, ServerMsg::CallEnded { reason: EndReason::Declined, by, .. } if by == Some(b))
    );
}

#[test]
fn leaving_while_ringing_ends_the_call() {
    let (mut w, a, b, call) = World::ringing_pair();
    w.core.handle_disconnect(2);
    assert_eq!(
        w.drain(),
        vec![
            out(1, ended(call, b, EndReason::Left, Some(b))),
            // Addressed to the closed session; the edge drops it.
            out(2, ended(call, a, EndReason::Left, Some(b))),
            out(1, ServerMsg::MemberLeft { id: b }),
        ]
    );
    assert_eq!(w.core.poll_timeout(), None, "the ring timer went with the call");
}

#[test]
fn leaving_mid_call_ends_the_call() {
    let (mut w, a, b, call) = World::active_pair();
    let got = w.send(1, ClientMsg::Leave);
    assert_eq!(
        got,
        vec![
            out(1, ended(call, b, EndReason::Left, Some(a))),
            out(2, ended(call, a, EndReason::Left, Some(a))),
            out(2, ServerMsg::MemberLeft { id: a }),
            out(1, ServerMsg::Left { room: "r".into() }),
        ]
    );
}

#[test]
fn invalid_transitions_are_refused() {
    let (mut w, _a, _b, call) = World::ringing_pair();
    let cases = [
        (1, ClientMsg::Accept { call_id: call }),
        (1, ClientMsg::Decline { call_id: call }),
        (2, ClientMsg::Cancel { call_id: call }),
    ];
    for (session, msg) in cases {
        assert_eq!(error_code(&w.send(session, msg)), ErrorCode::InvalidCallState);
    }
    w.send(2, ClientMsg::Accept { call_id: call });
    for (session, msg) in [
        (2, ClientMsg::Accept { call_id: call }),
        (1, ClientMsg::Cancel { call_id: call }),
        (2, ClientMsg::Decline { call_id: call }),
    ] {
        assert_eq!(error_code(&w.send(session, msg)), ErrorCode::InvalidCallState);
    }
    // A stranger knows nothing of the call.
    w.join(3, "r", "Cy");
    assert_eq!(
        error_code(&w.send(3, ClientMsg::Hangup { call_id: call })),
        ErrorCode::UnknownCall
    );
    assert_eq!(
        error_code(&w.send(3, ClientMsg::Accept { call_id: 777 })),
        ErrorCode::UnknownCall
    );
}

#[test]
fn addressing_is_limited_to_your_room() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let x = w.join(2, "other", "Xi");
    assert_eq!(
        error_code(&w.send(1, ClientMsg::Invite { to: x })),
        ErrorCode::UnknownMember
    );
    assert_eq!(
        error_code(&w.send(1, ClientMsg::Invite { to: 4242 })),
        ErrorCode::UnknownMember
    );
    assert_eq!(
        error_code(&w.send(1, ClientMsg::Invite { to: a })),
        ErrorCode::InvalidTarget
    );
}

#[test]
fn signalling_is_relayed_only_inside_an_active_call_with_from_stamped() {
    let (mut w, a, b, call) = World::ringing_pair();
    let offer = SessionDescription {
        kind: SdpKind::Offer,
        sdp: "v=0".into(),
    };
    let early = ClientMsg::Description {
        call_id: call,
        description: offer.clone(),
    };
    assert_eq!(error_code(&w.send(1, early.clone())), ErrorCode::InvalidCallState);
    w.send(2, ClientMsg::Accept { call_id: call });
    assert_eq!(
        w.send(1, early),
        vec![out(
            2,
            ServerMsg::Description {
                call_id: call,
                from: a,
                description: offer
            }
        )]
    );
    assert_eq!(
        w.send(
            2,
            ClientMsg::Candidate {
                call_id: call,
                candidate: None
            }
        ),
        vec![out(
            1,
            ServerMsg::Candidate {
                call_id: call,
                from: b,
                candidate: None
            }
        )]
    );
    assert_eq!(
        w.send(
            2,
            ClientMsg::Media {
                call_id: call,
                audio: false,
                video: true
            }
        ),
        vec![out(
            1,
            ServerMsg::Media {
                call_id: call,
                from: b,
                audio: false,
                video: true
            }
        )]
    );
    // A third member of the room cannot inject into the call.
    w.join(3, "r", "Cy");
    let inject = ClientMsg::Candidate {
        call_id: call,
        candidate: None,
    };
    assert_eq!(error_code(&w.send(3, inject)), ErrorCode::UnknownCall);
}
