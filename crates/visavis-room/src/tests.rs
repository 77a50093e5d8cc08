//! Scenario tests of the room core with a fake clock and no sockets.

use super::*;
use std::time::Instant;

use visavis_protocol::{Candidate, ClientMsg, Description, SdpKind, SessionMsg, Unavailable};

pub(crate) struct World {
    pub core: Core,
    pub now: Now,
}

impl World {
    pub(crate) fn new() -> Self {
        Self::with(Config::default())
    }

    pub(crate) fn with(config: Config) -> Self {
        Self {
            core: Core::new(config),
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    pub(crate) fn send(&mut self, session: SessionId, msg: impl Into<ClientMsg>) -> Vec<Output> {
        feed(&mut self.core, self.now, session, msg.into());
        self.drain()
    }

    pub(crate) fn drain(&mut self) -> Vec<Output> {
        self.core.assert_consistent();
        std::iter::from_fn(|| self.core.poll_output()).collect()
    }

    /// Joins `session` to `room` and returns its member id.
    pub(crate) fn join(&mut self, session: SessionId, room: &str, name: &str) -> MemberId {
        let out = self.send(session, join(room, name));
        match &out[0].msg {
            ServerMsg::Joined { you, .. } => you.id,
            other => panic!("expected joined, got {other:?}"),
        }
    }

    pub(crate) fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now = self.now.after(by);
        self.core.handle_timeout(self.now);
        self.drain()
    }

    /// Two members in one room with a call from 1 to 2 ringing; returns the call id.
    pub(crate) fn ringing_pair() -> (Self, MemberId, MemberId, CallId) {
        Self::ringing_pair_with(Config::default())
    }

    /// As [`World::ringing_pair`], with `config`.
    pub(crate) fn ringing_pair_with(config: Config) -> (Self, MemberId, MemberId, CallId) {
        let mut w = Self::with(config);
        let a = w.join(1, "r", "Ann");
        let b = w.join(2, "r", "Bob");
        let out = w.send(1, RoomMsg::Invite { to: b });
        let call = match out[0].msg {
            ServerMsg::Ringing { call_id, .. } => call_id,
            ref other => panic!("expected ringing, got {other:?}"),
        };
        (w, a, b, call)
    }

    fn active_pair() -> (Self, MemberId, MemberId, CallId) {
        let (mut w, a, b, call) = Self::ringing_pair();
        w.send(2, RoomMsg::Accept { call_id: call });
        (w, a, b, call)
    }
}

/// What the session layer hands the core for a client message.
pub(crate) fn feed(core: &mut Core, now: Now, session: SessionId, msg: ClientMsg) {
    match msg {
        ClientMsg::Session(SessionMsg::Join {
            room,
            name,
            host_key,
            access_token,
            ..
        }) => {
            let entry = Entry {
                room: &room,
                name: &name,
                host_key: host_key.as_deref(),
                access_token: access_token.as_deref(),
                from: address(session),
            };
            core.handle_join(now, session, entry)
        }
        ClientMsg::Session(SessionMsg::Create { name, .. }) => {
            core.handle_create(now, session, &name, address(session))
        }
        ClientMsg::Session(_) => {}
        ClientMsg::Room(msg) => core.handle_message(now, session, msg),
    }
}

/// Each session comes from an address of its own: 10.0.0.<session>.
pub(crate) fn address(session: SessionId) -> IpAddr {
    IpAddr::from([10, 0, 0, session as u8])
}

pub(crate) fn join(room: &str, name: &str) -> ClientMsg {
    SessionMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        host_key: None,
        access_token: None,
    }
    .into()
}

pub(crate) fn error_code(out: &[Output]) -> ErrorCode {
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

pub(crate) fn out(to: SessionId, msg: ServerMsg) -> Output {
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
            name: "Ann".into(),
            host: false,
            publish: Publish::ALL,
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
            ..Counts::default()
        }
    );
}

#[test]
fn each_member_gets_its_own_ice_servers_renewed_while_it_stays() {
    let mut w = World::with(Config {
        ice_servers: IceServerSource::renewed(Duration::from_secs(300), |member, unix_now| {
            vec![IceServer {
                urls: vec!["turn:example.org:3478".into()],
                username: Some(format!("{}:{member}", unix_now + 600)),
                credential: Some("pw".into()),
            }]
        }),
        ..Config::default()
    });
    let unix = w.now.unix_secs();
    let got = w.send(1, join("r", "Ann"));
    let ServerMsg::Joined { you, ice_servers, .. } = &got[0].msg else {
        panic!()
    };
    let ann = you.id;
    assert_eq!(ice_servers[0].username, Some(format!("{}:{ann}", unix + 600)));
    let bob = w.join(2, "r", "Bob");
    assert!(w.advance(Duration::from_secs(299)).is_empty());
    // Both joined at the same instant: their fresh credentials come at the same time.
    let renewed = w.advance(Duration::from_secs(1));
    let [Output {
        to: 1,
        msg: ServerMsg::IceServers { ice_servers },
    }, Output { to: 2, .. }] = &renewed[..]
    else {
        panic!("{renewed:?}")
    };
    assert_eq!(ice_servers[0].username, Some(format!("{}:{ann}", unix + 900)));
    let members = [ann, bob].map(MemberEvent::Joined).to_vec();
    assert_eq!(member_events(&mut w), members);
    w.core.handle_disconnect(w.now, 1);
    assert_eq!(member_events(&mut w), [MemberEvent::Left(ann)]);
    // Ann left: Bob alone keeps getting them.
    let later = w.advance(Duration::from_secs(300));
    assert!(
        later.iter().all(|o| o.to == 2)
            && later
                .iter()
                .any(|o| matches!(o.msg, ServerMsg::IceServers { .. })),
        "{later:?}"
    );
}

#[test]
fn disconnect_removes_member_at_once_and_empty_rooms_vanish() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    w.join(2, "r", "Bob");
    w.core.handle_disconnect(w.now, 1);
    assert_eq!(w.drain(), vec![out(2, ServerMsg::MemberLeft { id: a })]);
    w.core.handle_disconnect(w.now, 2);
    assert!(w.drain().is_empty());
    assert_eq!(w.core.counts(), Counts::default());
    // Disconnecting a session that never joined is harmless.
    w.core.handle_disconnect(w.now, 99);
    assert!(w.drain().is_empty());
}

#[test]
fn leave_replies_and_allows_joining_again() {
    let mut w = World::new();
    w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    let got = w.send(2, RoomMsg::Leave);
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
    assert_eq!(error_code(&w.send(1, join("r", " "))), ErrorCode::InvalidName);
    assert_eq!(
        error_code(&w.send(1, join("r", &"x".repeat(65)))),
        ErrorCode::InvalidName
    );
    assert_eq!(error_code(&w.send(1, join("a/b", "A"))), ErrorCode::InvalidRoom);
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: 1 })),
        ErrorCode::NotJoined
    );
    w.join(1, "r", "A");
    assert_eq!(error_code(&w.send(1, join("r", "A"))), ErrorCode::AlreadyJoined);
    w.join(2, "r", "B");
    let full = w.send(3, join("r", "C"));
    assert_eq!(error_code(&full), ErrorCode::RoomFull);
    // A seat frees up when someone leaves.
    w.core.handle_disconnect(w.now, 2);
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
        feed(&mut w.core, w.now, session, join("r", "racer"));
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
    let got = w.send(1, RoomMsg::Invite { to: b });
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
    let got = w.send(2, RoomMsg::Accept { call_id: 1 });
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
    let got = w.send(2, RoomMsg::Decline { call_id: call });
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
    let got = w.send(1, RoomMsg::Cancel { call_id: call });
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
        error_code(&w.send(2, RoomMsg::Accept { call_id: call })),
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
    w.send(1, RoomMsg::Invite { to: b });
    assert_eq!(w.core.poll_timeout(), Some(w.now.mono + Duration::from_secs(2)));
    assert_eq!(w.advance(Duration::from_secs(2)).len(), 2);
}

#[test]
fn invite_to_a_member_in_a_call_is_busy() {
    let (mut w, _a, b, _call) = World::active_pair();
    let c = w.join(3, "r", "Cy");
    let got = w.send(3, RoomMsg::Invite { to: b });
    // The busy one hears who tried, so it can call back.
    let attempt = ServerMsg::CallAttempt {
        from: c,
        name: "Cy".into(),
    };
    assert_eq!(
        got,
        vec![out(2, attempt), out(3, ended(2, b, EndReason::Busy, None))]
    );
    // Also busy while the callee is only ringing.
    let d = w.join(4, "r", "Di");
    w.send(3, RoomMsg::Invite { to: d });
    let e = w.join(5, "r", "Ed");
    let got = w.send(5, RoomMsg::Invite { to: d });
    assert!(matches!(
        got[..],
        [
            Output {
                to: 4,
                msg: ServerMsg::CallAttempt { .. }
            },
            Output {
                to: 5,
                msg: ServerMsg::CallEnded {
                    reason: EndReason::Busy,
                    ..
                }
            }
        ]
    ));
    // The busy attempt did not disturb the ringing call: accepted, both parties are told, and
    // the three others learn that Cy and Di are in a call now.
    let got = w.send(4, RoomMsg::Accept { call_id: 3 });
    let accepted = got
        .iter()
        .filter(|o| matches!(o.msg, ServerMsg::Accepted { .. }))
        .count();
    assert_eq!(accepted, 2);
    let mut told: Vec<(SessionId, MemberId)> = got
        .iter()
        .filter_map(|o| match o.msg {
            ServerMsg::MemberCall { id, in_call: true } => Some((o.to, id)),
            _ => None,
        })
        .collect();
    told.sort_unstable();
    assert_eq!(told, [(1, c), (1, d), (2, c), (2, d), (5, c), (5, d)]);
    let _ = (c, e);
}

#[test]
fn caller_already_in_a_call_cannot_invite() {
    let (mut w, _a, _b, call) = World::active_pair();
    let c = w.join(3, "r", "Cy");
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: c })),
        ErrorCode::AlreadyInCall
    );
    let _ = call;
}

#[test]
fn glare_resolves_to_one_call() {
    let (mut w, a, b, call) = World::ringing_pair();
    // Bob invites Ann while Ann's invite rings at Bob: that is an accept.
    let got = w.send(2, RoomMsg::Invite { to: a });
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
        let got = w.send(session, RoomMsg::Hangup { call_id: call });
        assert_eq!(
            got,
            vec![
                out(1, ended(call, b, EndReason::Hangup, Some(by))),
                out(2, ended(call, a, EndReason::Hangup, Some(by))),
            ]
        );
        // Both are free to call again.
        assert!(matches!(
            w.send(2, RoomMsg::Invite { to: a })[0].msg,
            ServerMsg::Ringing { .. }
        ));
    }
}

#[test]
fn hangup_while_ringing_means_cancel_or_decline() {
    let (mut w, a, _b, call) = World::ringing_pair();
    let got = w.send(1, RoomMsg::Hangup { call_id: call });
    assert!(
        matches!(got[0].msg, ServerMsg::CallEnded { reason: EndReason::Cancelled, by, .. } if by == Some(a))
    );
    let (mut w, _a, b, call) = World::ringing_pair();
    let got = w.send(2, RoomMsg::Hangup { call_id: call });
    assert!(
        matches!(got[0].msg, ServerMsg::CallEnded { reason: EndReason::Declined, by, .. } if by == Some(b))
    );
}

#[test]
fn leaving_while_ringing_ends_the_call() {
    let (mut w, a, b, call) = World::ringing_pair();
    w.core.handle_disconnect(w.now, 2);
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
    let got = w.send(1, RoomMsg::Leave);
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
        (1, RoomMsg::Accept { call_id: call }),
        (1, RoomMsg::Decline { call_id: call }),
        (2, RoomMsg::Cancel { call_id: call }),
    ];
    for (session, msg) in cases {
        assert_eq!(error_code(&w.send(session, msg)), ErrorCode::InvalidCallState);
    }
    w.send(2, RoomMsg::Accept { call_id: call });
    for (session, msg) in [
        (2, RoomMsg::Accept { call_id: call }),
        (1, RoomMsg::Cancel { call_id: call }),
        (2, RoomMsg::Decline { call_id: call }),
    ] {
        assert_eq!(error_code(&w.send(session, msg)), ErrorCode::InvalidCallState);
    }
    // A stranger knows nothing of the call.
    w.join(3, "r", "Cy");
    assert_eq!(
        error_code(&w.send(3, RoomMsg::Hangup { call_id: call })),
        ErrorCode::UnknownCall
    );
    assert_eq!(
        error_code(&w.send(3, RoomMsg::Accept { call_id: 777 })),
        ErrorCode::UnknownCall
    );
}

#[test]
fn addressing_is_limited_to_your_room() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let x = w.join(2, "other", "Xi");
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: x })),
        ErrorCode::UnknownMember
    );
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: 4242 })),
        ErrorCode::UnknownMember
    );
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: a })),
        ErrorCode::InvalidTarget
    );
}

#[test]
fn signalling_is_relayed_only_inside_an_active_call_with_from_stamped() {
    let (mut w, a, b, call) = World::ringing_pair_with(Config {
        preconnect: Preconnect::Off,
        ..Config::default()
    });
    let offer = Description::new(SdpKind::Offer, "v=0");
    let early = RoomMsg::Description {
        call_id: call,
        to: None,
        description: offer.clone(),
    };
    assert_eq!(error_code(&w.send(1, early.clone())), ErrorCode::InvalidCallState);
    w.send(2, RoomMsg::Accept { call_id: call });
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
            RoomMsg::Candidate {
                call_id: call,
                to: None,
                candidate: Candidate::end()
            }
        ),
        vec![out(
            1,
            ServerMsg::Candidate {
                call_id: call,
                from: b,
                candidate: Candidate::end()
            }
        )]
    );
    assert_eq!(
        w.send(
            2,
            RoomMsg::Media {
                call_id: call,
                audio: false,
                video: true,
                screen: true,
                unavailable: Unavailable::NONE,
            }
        ),
        vec![out(
            1,
            ServerMsg::Media {
                call_id: call,
                from: b,
                audio: false,
                video: true,
                screen: true,
                unavailable: Unavailable::NONE,
            }
        )]
    );
    // A third member of the room cannot inject into the call.
    w.join(3, "r", "Cy");
    let inject = RoomMsg::Candidate {
        call_id: call,
        to: None,
        candidate: Candidate::end(),
    };
    assert_eq!(error_code(&w.send(3, inject)), ErrorCode::UnknownCall);
}

// ---- group calls ---------------------------------------------------------------------------

fn group_of(msg: &ServerMsg) -> Option<(CallId, Vec<MemberId>)> {
    match msg {
        ServerMsg::GroupCall(call) => Some((call.call_id, call.participants.clone())),
        _ => None,
    }
}

/// Three members of room "r" (sessions 1, 2, 3).
fn trio() -> (World, MemberId, MemberId, MemberId) {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    let c = w.join(3, "r", "Cy");
    (w, a, b, c)
}

#[test]
fn group_call_is_announced_to_the_whole_room_as_people_join_and_leave() {
    let (mut w, a, b, c) = trio();
    let got = w.send(1, RoomMsg::GroupJoin);
    assert_eq!(got.len(), 3, "everyone in the room hears of it: {got:?}");
    let (call, people) = group_of(&got[0].msg).unwrap();
    assert_eq!(people, vec![a]);
    assert!(got.iter().all(|o| group_of(&o.msg) == Some((call, vec![a]))));
    w.send(2, RoomMsg::GroupJoin);
    let got = w.send(3, RoomMsg::GroupJoin);
    assert!(got
        .iter()
        .all(|o| group_of(&o.msg) == Some((call, vec![a, b, c]))));
    assert_eq!(w.core.counts().calls, 1);

    // A late member of the room learns of the running call on join.
    let late = w.send(4, join("r", "Di"));
    let ServerMsg::Joined { group, .. } = &late[0].msg else {
        panic!()
    };
    assert_eq!(
        group.as_ref().map(|g| g.participants.clone()),
        Some(vec![a, b, c])
    );

    // Leaving, and dropping out, leave the others in the call.
    let got = w.send(2, RoomMsg::GroupLeave);
    assert!(got.iter().all(|o| group_of(&o.msg) == Some((call, vec![a, c]))));
    w.core.handle_disconnect(w.now, 1);
    let got = w.drain();
    assert!(got.iter().any(|o| group_of(&o.msg) == Some((call, vec![c]))));
    let got = w.send(3, RoomMsg::GroupLeave);
    assert!(
        got.iter().all(|o| group_of(&o.msg) == Some((call, vec![]))),
        "an empty list: ended"
    );
    assert_eq!(w.core.counts().calls, 0);
    assert_eq!(error_code(&w.send(3, RoomMsg::GroupLeave)), ErrorCode::NotInCall);
}

#[test]
fn group_signalling_goes_only_between_two_participants() {
    let (mut w, a, b, c) = trio();
    let call = group_of(&w.send(1, RoomMsg::GroupJoin)[0].msg).unwrap().0;
    w.send(2, RoomMsg::GroupJoin);
    let offer = Description::new(SdpKind::Offer, "v=0");
    let to_b = RoomMsg::Description {
        call_id: call,
        to: Some(b),
        description: offer.clone(),
    };
    assert_eq!(
        w.send(1, to_b),
        vec![out(
            2,
            ServerMsg::Description {
                call_id: call,
                from: a,
                description: offer.clone()
            }
        )]
    );
    // Cy is in the room but not in the call: she can neither send nor be addressed.
    let to_c = RoomMsg::Description {
        call_id: call,
        to: Some(c),
        description: offer.clone(),
    };
    assert_eq!(error_code(&w.send(1, to_c)), ErrorCode::UnknownMember);
    let from_c = RoomMsg::Candidate {
        call_id: call,
        to: Some(a),
        candidate: Candidate::end(),
    };
    assert_eq!(error_code(&w.send(3, from_c)), ErrorCode::UnknownCall);
    let no_to = RoomMsg::Candidate {
        call_id: call,
        to: None,
        candidate: Candidate::end(),
    };
    assert_eq!(error_code(&w.send(1, no_to)), ErrorCode::UnknownMember);
    // Media state goes to every other participant.
    let media = RoomMsg::Media {
        call_id: call,
        audio: true,
        video: false,
        screen: true,
        unavailable: Unavailable::NONE,
    };
    assert_eq!(
        w.send(2, media),
        vec![out(
            1,
            ServerMsg::Media {
                call_id: call,
                from: b,
                audio: true,
                video: false,
                screen: true,
                unavailable: Unavailable::NONE,
            }
        )]
    );
}

#[test]
fn mesh_limit_refuses_one_more() {
    let mut w = World::with(Config {
        mesh_limit: 2,
        ..Config::default()
    });
    w.join(1, "r", "A");
    w.join(2, "r", "B");
    w.join(3, "r", "C");
    w.send(1, RoomMsg::GroupJoin);
    w.send(2, RoomMsg::GroupJoin);
    assert_eq!(error_code(&w.send(3, RoomMsg::GroupJoin)), ErrorCode::CallFull);
    assert_eq!(
        error_code(&w.send(2, RoomMsg::GroupJoin)),
        ErrorCode::AlreadyInCall
    );
}

#[test]
fn group_and_one_to_one_calls_exclude_each_other() {
    let (mut w, a, b, c) = trio();
    w.send(1, RoomMsg::GroupJoin);
    // Calling someone in the group call: busy. Calling from it: refused.
    let got = w.send(2, RoomMsg::Invite { to: a });
    assert!(matches!(
        got[..],
        [
            Output {
                to: 1,
                msg: ServerMsg::CallAttempt { .. }
            },
            Output {
                msg: ServerMsg::CallEnded {
                    reason: EndReason::Busy,
                    ..
                },
                ..
            }
        ]
    ));
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: b })),
        ErrorCode::AlreadyInCall
    );
    // Someone ringing or in a 1:1 call cannot join the group call.
    w.send(2, RoomMsg::Invite { to: c });
    assert_eq!(
        error_code(&w.send(3, RoomMsg::GroupJoin)),
        ErrorCode::AlreadyInCall
    );
}

// ---- chat ----------------------------------------------------------------------------------

fn chat(text: &str) -> RoomMsg {
    RoomMsg::Chat { text: text.into() }
}

#[test]
fn chat_is_stamped_by_the_server_and_reaches_everyone_in_one_order() {
    let (mut w, a, b, _c) = trio();
    w.join(9, "elsewhere", "Xi");
    let got = w.send(1, chat("hello <b>all</b>"));
    assert_eq!(
        got.iter().map(|o| o.to).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the room, sender included"
    );
    let ServerMsg::Chat(entry) = &got[0].msg else {
        panic!()
    };
    assert_eq!((entry.seq, entry.from, entry.name.as_str()), (1, a, "Ann"));
    assert_eq!(
        (entry.text.as_str(), entry.at),
        ("hello <b>all</b>", w.now.unix_ms)
    );
    w.advance(Duration::from_millis(5));
    let got = w.send(2, chat("hi"));
    let ServerMsg::Chat(entry) = &got[0].msg else {
        panic!()
    };
    assert_eq!((entry.seq, entry.from, entry.at), (2, b, w.now.unix_ms));
}

#[test]
fn chat_history_is_bounded_and_given_to_whoever_joins() {
    let mut w = World::with(Config {
        chat_history: 3,
        ..Config::default()
    });
    w.join(1, "r", "A");
    for i in 1..=5 {
        w.send(1, chat(&format!("m{i}")));
    }
    let got = w.send(2, join("r", "B"));
    let ServerMsg::Joined { chat, .. } = &got[0].msg else {
        panic!()
    };
    let texts: Vec<_> = chat.iter().map(|e| (e.seq, e.text.as_str())).collect();
    assert_eq!(texts, vec![(3, "m3"), (4, "m4"), (5, "m5")]);
}

#[test]
fn oversized_or_empty_chat_is_refused() {
    let mut w = World::new();
    w.join(1, "r", "A");
    w.join(2, "r", "B");
    assert_eq!(
        error_code(&w.send(1, chat(&"x".repeat(4097)))),
        ErrorCode::InvalidChat
    );
    assert_eq!(
        error_code(&w.send(1, chat(&"é".repeat(2049)))),
        ErrorCode::InvalidChat,
        "bytes, not chars"
    );
    assert_eq!(error_code(&w.send(1, chat("  \n "))), ErrorCode::InvalidChat);
    assert_eq!(
        w.send(1, chat(&"x".repeat(4096))).len(),
        2,
        "exactly 4 KiB is fine"
    );
}

// ---- presence across reconnects, limits ----------------------------------------------------

#[test]
fn a_detached_member_is_reconnecting_and_keeps_its_call() {
    let (mut w, a, _b, call) = World::active_pair();
    w.core.handle_detach(1);
    assert_eq!(
        w.drain(),
        vec![out(
            2,
            ServerMsg::MemberState {
                id: a,
                state: Presence::Reconnecting,
                reloaded: false
            }
        )]
    );
    assert_eq!(w.core.counts().calls, 1, "the call goes on");
    w.core.handle_reattach(1);
    assert_eq!(
        w.drain(),
        vec![out(
            2,
            ServerMsg::MemberState {
                id: a,
                state: Presence::Online,
                reloaded: false
            }
        )]
    );
    // Signalling flows again on the same call.
    let got = w.send(1, RoomMsg::Hangup { call_id: call });
    assert_eq!(got.len(), 2);
    // Detaching a session that never joined is harmless.
    w.core.handle_detach(77);
    assert!(w.drain().is_empty());
}

#[test]
fn the_number_of_rooms_is_limited() {
    let mut w = World::with(Config {
        max_rooms: 2,
        ..Config::default()
    });
    w.join(1, "r1", "A");
    w.join(2, "r2", "B");
    assert_eq!(error_code(&w.send(3, join("r3", "C"))), ErrorCode::TooManyRooms);
    w.join(3, "r1", "C"); // existing rooms still take people
    w.core.handle_disconnect(w.now, 2);
    w.drain();
    w.join(4, "r3", "D");
}

// ---- limits that stop harassment and floods --------------------------------------------------

#[test]
fn a_declined_caller_cannot_ring_straight_back() {
    let (mut w, _a, b, call) = World::ringing_pair();
    w.send(2, RoomMsg::Decline { call_id: call });
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: b })),
        ErrorCode::RateLimited
    );
    // Someone else may still be called, and after the delay the callee may be called again.
    let c = w.join(3, "r", "Cy");
    assert!(matches!(
        w.send(1, RoomMsg::Invite { to: c })[0].msg,
        ServerMsg::Ringing { .. }
    ));
    w.send(1, RoomMsg::Hangup { call_id: 2 });
    w.advance(Duration::from_secs(30));
    assert!(matches!(
        w.send(1, RoomMsg::Invite { to: b })[0].msg,
        ServerMsg::Ringing { .. }
    ));
}

#[test]
fn invites_are_limited_per_caller() {
    let (mut w, _a, b, call) = World::ringing_pair(); // one invite spent
    w.send(1, RoomMsg::Cancel { call_id: call });
    for call_id in 2..=5 {
        assert!(matches!(
            w.send(1, RoomMsg::Invite { to: b })[0].msg,
            ServerMsg::Ringing { .. }
        ));
        w.send(1, RoomMsg::Cancel { call_id });
    }
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Invite { to: b })),
        ErrorCode::RateLimited
    );
    w.advance(Duration::from_secs(5)); // one more every 5 s
    assert!(matches!(
        w.send(1, RoomMsg::Invite { to: b })[0].msg,
        ServerMsg::Ringing { .. }
    ));
}

#[test]
fn a_chat_flood_slows_the_flooders_not_the_room() {
    let (mut w, _a, _b, _c) = trio();
    for i in 0..10 {
        assert_eq!(
            w.send(1, chat(&format!("{i}"))).len(),
            3,
            "the burst goes to everyone"
        );
    }
    // One member's budget is spent; the others still talk.
    assert_eq!(error_code(&w.send(1, chat("more"))), ErrorCode::RateLimited);
    assert_eq!(w.send(2, chat("hi")).len(), 3);
    // Flooders together spend the room's budget; then nothing more reaches the readers.
    for i in 0..9 {
        w.send(2, chat(&format!("{i}")));
    }
    for i in 0..10 {
        w.send(3, chat(&format!("{i}")));
    }
    assert_eq!(error_code(&w.send(3, chat("more"))), ErrorCode::RateLimited);
    w.advance(Duration::from_secs(1));
    assert_eq!(w.send(1, chat("later")).len(), 3);
}

/// The member events among the core's events so far (what the TURN server is told).
fn member_events(w: &mut World) -> Vec<MemberEvent> {
    std::iter::from_fn(|| w.core.poll_event())
        .filter_map(|e| e.member())
        .collect()
}

/// The core's events so far, each named by its kind.
fn event_kinds(w: &mut World) -> Vec<&'static str> {
    std::iter::from_fn(|| w.core.poll_event())
        .map(|e| match e {
            Event::RoomStarted { .. } => "room_started",
            Event::RoomFinished { .. } => "room_finished",
            Event::Joined(_) => "joined",
            Event::Left(_) => "left",
            Event::Knock(_) => "knock",
            Event::CallStarted { .. } => "call_started",
            Event::CallConnected { .. } => "call_connected",
            Event::CallEnded(_) => "call_ended",
            Event::CallQuality { .. } => "call_quality",
            Event::SfuDescription { .. } => "sfu_description",
            Event::SfuView { .. } => "sfu_view",
            Event::GroupLeft { .. } => "group_left",
        })
        .collect()
}

#[test]
fn a_session_makes_its_events_in_order_and_the_totals_count_the_same_events() {
    let (mut w, a, b, call) = World::ringing_pair();
    w.now = w.now.after(Duration::from_millis(1500));
    w.send(2, RoomMsg::Accept { call_id: call });
    w.now = w.now.after(Duration::from_secs(1));
    assert!(w
        .send(
            1,
            RoomMsg::CallConnected {
                call_id: call,
                setup_ms: 800
            }
        )
        .is_empty());
    w.now = w.now.after(Duration::from_secs(60));
    w.send(2, RoomMsg::Hangup { call_id: call });
    let events: Vec<Event> = std::iter::from_fn(|| w.core.poll_event()).collect();
    assert_eq!(
        events.iter().map(Event::room).collect::<Vec<_>>(),
        ["r"; 6],
        "{events:?}"
    );
    assert_eq!(events[0], Event::RoomStarted { room: "r".into() });
    assert!(matches!(&events[1], Event::Joined(p) if p.member == a && p.name == "Ann"));
    assert!(matches!(&events[2], Event::Joined(p) if p.member == b));
    assert!(
        matches!(&events[3], Event::CallStarted { caller, callee, setup, .. }
            if (*caller, *callee, *setup) == (a, b, Duration::from_millis(1500)))
    );
    assert!(matches!(&events[4], Event::CallConnected { member, setup, .. }
            if (*member, *setup) == (a, Duration::from_millis(800))));
    let Event::CallEnded(summary) = &events[5] else {
        panic!("{events:?}")
    };
    assert_eq!(
        summary,
        &CallSummary {
            room: "r".into(),
            call_id: call,
            caller: a,
            callee: b,
            reason: EndReason::Hangup,
            by: Some(b),
            setup: Some(Duration::from_millis(1500)),
            duration: Some(Duration::from_secs(61)),
            caller_connect: Some(Duration::from_millis(800)),
            callee_connect: None,
        }
    );
    w.send(1, RoomMsg::Leave);
    w.send(2, RoomMsg::Leave);
    assert_eq!(event_kinds(&mut w), ["left", "left", "room_finished"]);
    let totals = w.core.totals();
    assert_eq!(totals.calls_ended.get(&EndReason::Hangup), Some(&1));
    assert_eq!((totals.answer_time.count, totals.connect_time.count), (1, 1));
    assert_eq!(totals.connect_time.sum, 0.8);
}

#[test]
fn an_unanswered_call_ends_without_setup_or_duration() {
    let (mut w, _a, _b, call) = World::ringing_pair();
    event_kinds(&mut w);
    w.send(2, RoomMsg::Decline { call_id: call });
    let Some(Event::CallEnded(summary)) = w.core.poll_event() else {
        panic!()
    };
    assert_eq!(summary.reason, EndReason::Declined);
    assert_eq!((summary.setup, summary.duration), (None, None));
}

#[test]
fn call_connected_only_from_a_party_once_per_side_within_bounds() {
    let (mut w, _a, _b, call) = World::ringing_pair();
    let c = w.join(3, "r", "Cy");
    let connected = |setup_ms| RoomMsg::CallConnected {
        call_id: call,
        setup_ms,
    };
    // Not before accept.
    assert_eq!(error_code(&w.send(1, connected(10))), ErrorCode::InvalidCallState);
    w.send(2, RoomMsg::Accept { call_id: call });
    // Not from someone else, nor longer than the call has been accepted (plus a second).
    assert_eq!(error_code(&w.send(3, connected(10))), ErrorCode::UnknownCall);
    assert_eq!(error_code(&w.send(1, connected(2000))), ErrorCode::BadMessage);
    w.now = w.now.after(Duration::from_secs(600));
    assert_eq!(error_code(&w.send(1, connected(120_001))), ErrorCode::BadMessage);
    // Once per side.
    assert!(w.send(1, connected(900)).is_empty());
    assert_eq!(
        error_code(&w.send(1, connected(900))),
        ErrorCode::InvalidCallState
    );
    assert!(w.send(2, connected(1200)).is_empty());
    assert_eq!(w.core.totals().connect_time.count, 2);
    let _ = c;
}

fn quality(rtt_avg_ms: u32, loss_avg_permille: u32) -> QualityReport {
    QualityReport {
        path: CandidatePath::Relay,
        transport: MediaTransport::Tls,
        rtt_avg_ms,
        rtt_max_ms: 400,
        loss_avg_permille,
        loss_max_permille: 100,
        freezes: 2,
    }
}

#[test]
fn call_quality_once_per_party_of_an_accepted_call_after_it_ended_within_the_window() {
    let (mut w, _a, _b, call) = World::active_pair();
    let c = w.join(3, "r", "Cy");
    let report = |rtt, loss| RoomMsg::CallQuality {
        call_id: call,
        report: quality(rtt, loss),
    };
    // Not while the call goes on.
    assert_eq!(
        error_code(&w.send(1, report(40, 10))),
        ErrorCode::InvalidCallState
    );
    w.send(1, RoomMsg::Hangup { call_id: call });
    event_kinds(&mut w);
    // Not from someone who was not in it; nothing that cannot be true.
    assert_eq!(error_code(&w.send(3, report(40, 10))), ErrorCode::UnknownCall);
    assert_eq!(error_code(&w.send(1, report(401, 10))), ErrorCode::BadMessage);
    assert_eq!(error_code(&w.send(1, report(40, 101))), ErrorCode::BadMessage);
    // Once per party.
    assert!(w.send(1, report(40, 10)).is_empty());
    assert_eq!(error_code(&w.send(1, report(40, 10))), ErrorCode::UnknownCall);
    assert_eq!(event_kinds(&mut w), ["call_quality"]);
    // The other party's window closes.
    w.advance(QUALITY_REPORT_WINDOW + Duration::from_secs(1));
    assert_eq!(error_code(&w.send(2, report(60, 30))), ErrorCode::UnknownCall);
    let totals = w.core.totals();
    assert_eq!(totals.quality_rtt.count, 1);
    assert!((totals.quality_rtt.sum - 0.04).abs() < 1e-9);
    assert!((totals.quality_loss.sum - 0.01).abs() < 1e-9);
    assert_eq!(totals.quality_freezes, 2);
    assert_eq!(
        totals
            .quality_paths
            .get(&(CandidatePath::Relay, MediaTransport::Tls)),
        Some(&1)
    );
    let _ = c;
}

#[test]
fn a_call_never_accepted_has_no_quality_to_report() {
    let (mut w, _a, _b, call) = World::ringing_pair();
    w.send(2, RoomMsg::Decline { call_id: call });
    let msg = RoomMsg::CallQuality {
        call_id: call,
        report: quality(40, 10),
    };
    assert_eq!(error_code(&w.send(1, msg)), ErrorCode::UnknownCall);
    assert_eq!(w.core.poll_timeout(), None);
}

#[test]
fn ending_a_room_for_all_ends_calls_then_members_then_the_room() {
    let (mut w, _a, _b, call) = World::active_pair();
    event_kinds(&mut w);
    w.core.end_room_for_all("r", None);
    assert_eq!(
        event_kinds(&mut w),
        ["call_ended", "left", "left", "room_finished"]
    );
    let _ = call;
}

// ---- presence and reloads ------------------------------------------------------------------

#[test]
fn others_learn_who_is_in_a_call_and_newcomers_see_it_in_joined() {
    let (mut w, a, b, call) = World::active_pair();
    let out = w.send(3, join("r", "Cy"));
    let ServerMsg::Joined {
        in_call, call: none, ..
    } = &out[0].msg
    else {
        panic!("expected joined, got {out:?}");
    };
    assert_eq!((in_call.clone(), none.clone()), (vec![a, b], None));
    // The call ends: the third member is told, the parties get call_ended only.
    let got = w.send(1, RoomMsg::Hangup { call_id: call });
    let told: Vec<_> = got
        .iter()
        .filter(|o| matches!(o.msg, ServerMsg::MemberCall { .. }))
        .map(|o| (o.to, o.msg.clone()))
        .collect();
    assert_eq!(
        told,
        [
            (
                3,
                ServerMsg::MemberCall {
                    id: a,
                    in_call: false
                }
            ),
            (
                3,
                ServerMsg::MemberCall {
                    id: b,
                    in_call: false
                }
            )
        ]
    );
    let out = w.send(4, join("r", "Di"));
    let ServerMsg::Joined { in_call, .. } = &out[0].msg else {
        panic!("expected joined");
    };
    assert!(in_call.is_empty());
}

#[test]
fn a_reloaded_member_gets_its_room_and_call_afresh_and_the_others_rebuild() {
    let (mut w, a, b, call) = World::active_pair();
    w.send(
        1,
        RoomMsg::Chat {
            text: "before".into(),
        },
    );
    let accepted_at = w.now.unix_ms;
    w.advance(Duration::from_secs(5));
    w.core.handle_detach(1);
    w.drain();
    w.core.handle_reload(w.now, 1);
    let got = w.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    let ServerMsg::Joined {
        you,
        members,
        chat,
        call: Some(current),
        ..
    } = &got[0].msg
    else {
        panic!("expected joined with the call, got {got:?}");
    };
    assert_eq!((got[0].to, you.id, members.len()), (1, a, 1));
    assert_eq!(
        chat.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["before"]
    );
    assert_eq!(
        **current,
        CurrentCall {
            call_id: call,
            peer: b,
            name: "Bob".into(),
            outgoing: true,
            active: true,
            since: Some(accepted_at),
        }
    );
    assert_eq!(
        got[1],
        out(
            2,
            ServerMsg::MemberState {
                id: a,
                state: Presence::Online,
                reloaded: true
            }
        )
    );
    // Nothing else changed: no member_joined, the call goes on.
    assert_eq!(w.core.counts().calls, 1);
    assert_eq!(w.core.counts().members, 2);
}

#[test]
fn a_reloaded_callee_of_a_ringing_call_sees_it_ring_again() {
    let (mut w, a, b, call) = World::ringing_pair();
    w.core.handle_reload(w.now, 2);
    let got = w.drain();
    let ServerMsg::Joined {
        call: Some(current),
        you,
        ..
    } = &got[0].msg
    else {
        panic!("expected joined with the call, got {got:?}");
    };
    assert_eq!(you.id, b);
    assert_eq!(
        (
            current.call_id,
            current.peer,
            current.outgoing,
            current.active,
            current.since
        ),
        (call, a, false, false, None)
    );
}

/// The events of the SFU among the core's events so far.
fn sfu_events(w: &mut World) -> Vec<Event> {
    std::iter::from_fn(|| w.core.poll_event())
        .filter(|e| matches!(e, Event::SfuDescription { .. } | Event::GroupLeft { .. }))
        .collect()
}

#[test]
fn an_sfu_group_call_hands_descriptions_to_the_sfu_and_its_answers_to_the_member() {
    let mut w = World::with(Config {
        group_media: GroupMedia::Sfu,
        group_limit: 2,
        ..Config::default()
    });
    let a = w.join(1, "r", "Ann");
    w.join(2, "r", "Bob");
    w.join(3, "r", "Cy");
    let got = w.send(1, RoomMsg::GroupJoin);
    let ServerMsg::GroupCall(group) = &got[0].msg else {
        panic!("{got:?}")
    };
    assert_eq!(group.media, GroupMedia::Sfu);
    let call = group.call_id;
    w.send(2, RoomMsg::GroupJoin);
    // The group limit, not the mesh limit, holds through the SFU.
    assert_eq!(error_code(&w.send(3, RoomMsg::GroupJoin)), ErrorCode::CallFull);

    let offer = RoomMsg::SfuDescription {
        call_id: call,
        description: Description::new(SdpKind::Offer, "v=0 offer"),
    };
    assert_eq!(
        w.send(1, offer.clone()),
        vec![],
        "nothing is relayed to the others"
    );
    assert_eq!(
        sfu_events(&mut w),
        vec![Event::SfuDescription {
            room: "r".into(),
            call_id: call,
            member: a,
            kind: SdpKind::Offer,
            sdp: "v=0 offer".into(),
            publish: visavis_protocol::Publish::ALL,
        }]
    );
    assert_eq!(error_code(&w.send(3, offer)), ErrorCode::NotInCall);
    let wrong_call = RoomMsg::SfuDescription {
        call_id: call + 1,
        description: Description::new(SdpKind::Answer, "v=0"),
    };
    assert_eq!(error_code(&w.send(1, wrong_call)), ErrorCode::UnknownCall);

    // The SFU's answer reaches Ann only; its refusal names the request.
    w.core
        .sfu_deliver(a, call, Description::new(SdpKind::Answer, "v=0 answer"), vec![]);
    let got = w.drain();
    assert_eq!(got.len(), 1);
    assert!(matches!(&got[0].msg, ServerMsg::SfuDescription { call_id, .. } if *call_id == call));
    w.core.sfu_refused(a, "full");
    assert_eq!(error_code(&w.drain()), ErrorCode::SfuUnavailable);

    // Leaving the call, or the room, ends the member's SFU session.
    w.send(1, RoomMsg::GroupLeave);
    w.core.handle_disconnect(w.now, 2);
    w.drain();
    let left: Vec<_> = sfu_events(&mut w)
        .into_iter()
        .filter_map(|e| match e {
            Event::GroupLeft { member, .. } => Some(member),
            _ => None,
        })
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    // An answer for a member no longer in the call goes nowhere.
    w.core
        .sfu_deliver(a, call, Description::new(SdpKind::Offer, "v=0"), vec![]);
    assert!(w.drain().is_empty());
}

#[test]
fn a_mesh_group_call_refuses_sfu_descriptions() {
    let (mut w, _, _, _) = trio();
    let call = group_of(&w.send(1, RoomMsg::GroupJoin)[0].msg).unwrap().0;
    let offer = RoomMsg::SfuDescription {
        call_id: call,
        description: Description::new(SdpKind::Offer, "v=0"),
    };
    assert_eq!(error_code(&w.send(1, offer)), ErrorCode::InvalidCallState);
    assert!(sfu_events(&mut w).is_empty());
}

#[test]
fn offers_to_the_sfu_are_rate_limited_per_member_but_answers_are_not() {
    let mut w = World::with(Config {
        group_media: GroupMedia::Sfu,
        sfu_offer_rate: 1.0,
        sfu_offer_burst: 3.0,
        ..Config::default()
    });
    w.join(1, "r", "Ann");
    let call = group_of(&w.send(1, RoomMsg::GroupJoin)[0].msg).unwrap().0;
    let description = |kind| RoomMsg::SfuDescription {
        call_id: call,
        description: Description::new(kind, "v=0"),
    };
    for _ in 0..3 {
        assert!(w.send(1, description(SdpKind::Offer)).is_empty());
    }
    assert_eq!(
        error_code(&w.send(1, description(SdpKind::Offer))),
        ErrorCode::RateLimited
    );
    assert!(
        w.send(1, description(SdpKind::Answer)).is_empty(),
        "answers are the SFU's pace"
    );
    assert_eq!(
        sfu_events(&mut w).len(),
        4,
        "three offers and the answer reached the SFU"
    );
    w.advance(Duration::from_secs(1));
    assert!(
        w.send(1, description(SdpKind::Offer)).is_empty(),
        "one more a second"
    );
}

#[test]
fn sfu_views_go_to_the_sfu_bounded_and_the_active_speaker_to_every_participant_and_later_joiners() {
    let mut w = World::with(Config {
        group_media: GroupMedia::Sfu,
        ..Config::default()
    });
    let a = w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    w.join(3, "r", "Cy");
    let call = group_of(&w.send(1, RoomMsg::GroupJoin)[0].msg).unwrap().0;
    w.send(2, RoomMsg::GroupJoin);
    w.drain();
    let track = visavis_protocol::ViewTrack {
        member: b,
        source: visavis_protocol::TrackSource::Camera,
        width: 320,
        height: 180,
        visible: true,
    };
    let view = |tracks| RoomMsg::SfuView {
        call_id: call,
        tracks,
    };
    assert_eq!(w.send(1, view(vec![track])), vec![]);
    let events: Vec<_> = std::iter::from_fn(|| w.core.poll_event())
        .filter(|e| matches!(e, Event::SfuView { .. }))
        .collect();
    assert_eq!(
        events,
        vec![Event::SfuView {
            room: "r".into(),
            call_id: call,
            member: a,
            tracks: vec![track],
        }]
    );
    let too_many = vec![track; visavis_protocol::MAX_VIEW_TRACKS + 1];
    assert_eq!(error_code(&w.send(1, view(too_many))), ErrorCode::InvalidView);
    let huge = visavis_protocol::ViewTrack {
        height: visavis_protocol::MAX_VIEW_PIXELS + 1,
        ..track
    };
    assert_eq!(error_code(&w.send(1, view(vec![huge]))), ErrorCode::InvalidView);
    assert_eq!(error_code(&w.send(3, view(vec![track]))), ErrorCode::NotInCall);

    // The SFU's speaker reaches both participants, not Cy outside the call.
    w.core.sfu_active_speaker(b);
    let got = w.drain();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|o| o.msg
        == ServerMsg::ActiveSpeaker {
            call_id: call,
            member: b
        }
        && o.to != 3));

    // Cy joins the call later: told the speaker now, not at the next change of speaker.
    let joined = w.send(3, RoomMsg::GroupJoin);
    let to_cy: Vec<_> = joined.iter().filter(|o| o.to == 3).map(|o| &o.msg).collect();
    assert!(matches!(to_cy[0], ServerMsg::GroupCall(_)), "{to_cy:?}");
    assert_eq!(
        to_cy[1..],
        [&ServerMsg::ActiveSpeaker {
            call_id: call,
            member: b
        }]
    );
    // A later call of the room starts with no speaker.
    for c in 1..=3 {
        w.send(c, RoomMsg::GroupLeave);
    }
    w.send(3, RoomMsg::GroupJoin);
    let second: Vec<_> = w.drain().into_iter().filter(|o| o.to == 3).collect();
    assert!(
        second
            .iter()
            .all(|o| !matches!(o.msg, ServerMsg::ActiveSpeaker { .. })),
        "{second:?}"
    );
}
