//! Scenario tests of private rooms: creation, the lobby, every host power and who may use it,
//! names, history, and the races the issue names (a knock racing the lock, a host removed
//! while admitting, the last host leaving).

use super::*;
use crate::tests::{error_code, join, out, World};
use visavis_protocol::{ClientMsg, KnockOutcome, SessionMsg, Unavailable};

fn create(name: &str) -> ClientMsg {
    SessionMsg::Create {
        version: PROTOCOL_VERSION,
        name: name.into(),
    }
    .into()
}

pub(crate) fn join_with_key(room: &str, name: &str, key: &str) -> ClientMsg {
    SessionMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: name.into(),
        host_key: Some(key.into()),
        access_token: None,
    }
    .into()
}

/// A doctor (session 1) in a new private room: (world, room id, host key, doctor's id).
fn clinic() -> (World, String, String, MemberId) {
    let mut w = World::new();
    let got = w.send(1, create("Dr. Zhang"));
    let ServerMsg::Joined {
        room,
        you,
        state,
        host_key,
        members,
        ..
    } = &got[0].msg
    else {
        panic!("expected joined, got {got:?}");
    };
    assert!(is_private_id(room), "{room}");
    assert!(you.host && members.is_empty());
    assert_eq!(
        *state,
        RoomState {
            private: true,
            lobby: true,
            locked: false,
            share_history: false
        }
    );
    let key = host_key.clone().expect("the host gets the key");
    (w, room.clone(), key, you.id)
}

/// `session` knocks on `room` as `name`; returns its member id (the hosts' knock checked).
pub(crate) fn knock(w: &mut World, session: SessionId, room: &str, name: &str) -> MemberId {
    let got = w.send(session, join(room, name));
    let ServerMsg::Waiting { you, .. } = &got[0].msg else {
        panic!("expected waiting, got {got:?}");
    };
    assert_eq!(got[0].to, session);
    assert!(
        got[1..]
            .iter()
            .all(|o| matches!(&o.msg, ServerMsg::Knock { member } if member.id == you.id)),
        "the hosts, and only they, hear the knock: {got:?}"
    );
    you.id
}

/// Host session `host` admits `id`; the outputs, the admitted member's `joined` first.
fn admitted(w: &mut World, host: SessionId, id: MemberId) -> Vec<Output> {
    let mut got = w.send(host, RoomMsg::Admit { id });
    got.sort_by_key(|o| !matches!(o.msg, ServerMsg::Joined { .. }));
    got
}

#[test]
fn a_guest_waits_sees_nothing_and_comes_in_when_admitted() {
    let (mut w, room, _, doctor) = clinic();
    w.send(
        1,
        RoomMsg::Chat {
            text: "notes before anyone came".into(),
        },
    );
    let patient = knock(&mut w, 2, &room, "Patient Li");
    // Waiting: nothing of the room reaches the guest, and it can do nothing but leave.
    let chat = w.send(
        1,
        RoomMsg::Chat {
            text: "one moment".into(),
        },
    );
    assert!(
        chat.iter().all(|o| o.to == 1),
        "the lobby reads no chat: {chat:?}"
    );
    for msg in [
        RoomMsg::Chat {
            text: "hello?".into(),
        },
        RoomMsg::Invite { to: doctor },
        RoomMsg::GroupJoin,
    ] {
        assert_eq!(error_code(&w.send(2, msg)), ErrorCode::NotAdmitted);
    }
    let got = admitted(&mut w, 1, patient);
    let ServerMsg::Joined { members, chat, .. } = &got[0].msg else {
        panic!("expected joined, got {got:?}");
    };
    assert_eq!(got[0].to, 2);
    assert_eq!(
        members.iter().map(|m| (m.id, m.host)).collect::<Vec<_>>(),
        [(doctor, true)]
    );
    assert!(chat.is_empty(), "what was said before is not the guest's to read");
    assert!(got.contains(&out(
        1,
        ServerMsg::KnockEnded {
            id: patient,
            outcome: KnockOutcome::Admitted,
            by: Some(doctor),
        }
    )));
    assert!(got
        .iter()
        .any(|o| o.to == 1 && matches!(&o.msg, ServerMsg::MemberJoined { member } if member.id == patient)));
    // Now in: chat flows both ways.
    let hello = w.send(2, RoomMsg::Chat { text: "hello".into() });
    assert_eq!(hello.len(), 2);
}

#[test]
fn shared_history_shows_what_was_said_before() {
    let (mut w, room, _, _) = clinic();
    w.send(
        1,
        RoomMsg::Chat {
            text: "agenda".into(),
        },
    );
    w.send(
        1,
        RoomMsg::RoomSettings {
            lobby: None,
            locked: None,
            share_history: Some(true),
        },
    );
    let nurse = knock(&mut w, 2, &room, "Nurse");
    let got = admitted(&mut w, 1, nurse);
    let ServerMsg::Joined { chat, state, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert_eq!(
        chat.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
        ["agenda"]
    );
    assert!(state.share_history);
}

#[test]
fn a_denied_guest_is_told_and_out_and_may_knock_again() {
    let (mut w, room, _, doctor) = clinic();
    let stranger = knock(&mut w, 3, &room, "Stranger");
    let got = w.send(1, RoomMsg::Deny { id: stranger });
    assert!(got.contains(&out(3, ServerMsg::Denied { room: room.clone() })));
    assert!(got.contains(&out(
        1,
        ServerMsg::KnockEnded {
            id: stranger,
            outcome: KnockOutcome::Denied,
            by: Some(doctor)
        }
    )));
    assert_eq!(w.core.member_of(3), None, "out of the core");
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Admit { id: stranger })),
        ErrorCode::NotWaiting
    );
    knock(&mut w, 3, &room, "Stranger");
}

#[test]
fn only_hosts_have_host_powers() {
    let (mut w, room, _, doctor) = clinic();
    let patient = knock(&mut w, 2, &room, "Patient");
    admitted(&mut w, 1, patient);
    let waiting = knock(&mut w, 3, &room, "Other");
    for msg in [
        RoomMsg::Admit { id: waiting },
        RoomMsg::Deny { id: waiting },
        RoomMsg::Remove { id: doctor },
        RoomMsg::Mute { id: doctor },
        RoomMsg::MakeHost { id: patient },
        RoomMsg::RoomSettings {
            lobby: Some(false),
            locked: None,
            share_history: None,
        },
        RoomMsg::EndRoom,
    ] {
        let kind = msg.kind();
        assert_eq!(error_code(&w.send(2, msg)), ErrorCode::NotHost, "{kind}");
    }
    // Nor in a named room, which has no hosts at all.
    w.join(5, "named", "A");
    let b = w.join(6, "named", "B");
    assert_eq!(
        error_code(&w.send(5, RoomMsg::Remove { id: b })),
        ErrorCode::NotHost
    );
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Remove { id: b })),
        ErrorCode::UnknownMember,
        "a host of one room has no power in another"
    );
    assert_eq!(
        error_code(&w.send(1, RoomMsg::Remove { id: doctor })),
        ErrorCode::InvalidTarget
    );
}

#[test]
fn a_removed_member_is_told_and_must_knock_even_with_the_lobby_off() {
    let (mut w, room, _, doctor) = clinic();
    w.send(
        1,
        RoomMsg::RoomSettings {
            lobby: Some(false),
            locked: None,
            share_history: None,
        },
    );
    let got = w.send(2, join(&room, "Guest"));
    let ServerMsg::Joined { you, .. } = &got[0].msg else {
        panic!("lobby off: straight in, {got:?}")
    };
    let guest = you.id;
    let got = w.send(1, RoomMsg::Remove { id: guest });
    assert!(got.contains(&out(
        2,
        ServerMsg::Removed {
            room: room.clone(),
            by: Some(doctor)
        }
    )));
    assert!(got.contains(&out(1, ServerMsg::MemberLeft { id: guest })));
    assert_eq!(w.core.member_of(2), None);
    // From the same address it knocks, though the lobby is off; others still walk in.
    knock(&mut w, 2, &room, "Guest");
    assert!(matches!(
        w.send(4, join(&room, "Colleague"))[0].msg,
        ServerMsg::Joined { .. }
    ));
}

#[test]
fn mute_asks_the_member_and_make_host_hands_over_the_key() {
    let (mut w, room, key, doctor) = clinic();
    let nurse = knock(&mut w, 2, &room, "Nurse");
    admitted(&mut w, 1, nurse);
    assert_eq!(
        w.send(1, RoomMsg::Mute { id: nurse }),
        [out(2, ServerMsg::MuteRequest { by: Some(doctor) })]
    );
    let got = w.send(1, RoomMsg::MakeHost { id: nurse });
    assert!(got.contains(&out(2, ServerMsg::HostKey { host_key: key })));
    let updated = ServerMsg::MemberUpdated {
        member: Member {
            id: nurse,
            name: "Nurse".into(),
            host: true,
            publish: Publish::ALL,
        },
    };
    assert!(got.contains(&out(1, updated.clone())) && got.contains(&out(2, updated)));
    // The new host hears knocks and admits.
    let patient = knock(&mut w, 3, &room, "Patient");
    assert!(matches!(
        admitted(&mut w, 2, patient)[0].msg,
        ServerMsg::Joined { .. }
    ));
}

#[test]
fn a_host_who_arrives_later_hears_the_knocks_already_waiting() {
    let (mut w, room, key, _) = clinic();
    let early = knock(&mut w, 2, &room, "Early");
    let got = w.send(3, join_with_key(&room, "Dr. Wang", &key));
    let knocks = got
        .iter()
        .filter(|o| o.to == 3 && matches!(&o.msg, ServerMsg::Knock { member } if member.id == early))
        .count();
    assert_eq!(knocks, 1, "{got:?}");
    // And a member made host hears them too.
    let nurse = knock(&mut w, 4, &room, "Nurse");
    admitted(&mut w, 1, nurse);
    let got = w.send(1, RoomMsg::MakeHost { id: nurse });
    let told = got
        .iter()
        .any(|o| o.to == 4 && matches!(&o.msg, ServerMsg::Knock { member } if member.id == early));
    assert!(told, "{got:?}");
}

#[test]
fn a_knock_racing_the_lock_waits_for_the_host_and_later_ones_are_refused() {
    let (mut w, room, key, _) = clinic();
    let early = knock(&mut w, 2, &room, "Early");
    let got = w.send(
        1,
        RoomMsg::RoomSettings {
            lobby: None,
            locked: Some(true),
            share_history: None,
        },
    );
    assert_eq!(
        got,
        [out(
            1,
            ServerMsg::RoomState(RoomState {
                private: true,
                lobby: true,
                locked: true,
                share_history: false
            })
        )],
        "the lobby hears nothing of the room's settings"
    );
    assert_eq!(error_code(&w.send(3, join(&room, "Late"))), ErrorCode::RoomLocked);
    assert!(
        matches!(admitted(&mut w, 1, early)[0].msg, ServerMsg::Joined { .. }),
        "the early knock is let in"
    );
    // A host with the key comes in, locked or not; a wrong key is refused as such.
    assert_eq!(
        error_code(&w.send(4, join_with_key(&room, "Dr. Wang", "nope"))),
        ErrorCode::InvalidHostKey
    );
    let got = w.send(4, join_with_key(&room, "Dr. Wang", &key));
    assert!(matches!(&got[0].msg, ServerMsg::Joined { you, .. } if you.host));
}

#[test]
fn turning_the_lobby_off_lets_everyone_waiting_in() {
    let (mut w, room, _, _) = clinic();
    let a = knock(&mut w, 2, &room, "A");
    let b = knock(&mut w, 3, &room, "B");
    let got = w.send(
        1,
        RoomMsg::RoomSettings {
            lobby: Some(false),
            locked: None,
            share_history: None,
        },
    );
    let joined: Vec<SessionId> = got
        .iter()
        .filter(|o| matches!(o.msg, ServerMsg::Joined { .. }))
        .map(|o| o.to)
        .collect();
    assert_eq!(joined, [2, 3], "in the order they knocked");
    for id in [a, b] {
        assert!(got.contains(&out(
            1,
            ServerMsg::KnockEnded {
                id,
                outcome: KnockOutcome::Admitted,
                by: w.core.member_of(1)
            }
        )));
    }
}

#[test]
fn a_host_removed_while_admitting_admits_nobody() {
    let (mut w, room, key, _) = clinic();
    let wang = match &w.send(2, join_with_key(&room, "Dr. Wang", &key))[0].msg {
        ServerMsg::Joined { you, .. } => you.id,
        other => panic!("{other:?}"),
    };
    let guest = knock(&mut w, 3, &room, "Guest");
    // Dr. Zhang removes Dr. Wang; Wang's admit, sent at the same moment, arrives after.
    w.send(1, RoomMsg::Remove { id: wang });
    assert_eq!(
        error_code(&w.send(2, RoomMsg::Admit { id: guest })),
        ErrorCode::NotJoined
    );
    assert!(w.core.sessions_in(&room).any(|s| s == 3), "still waiting");
    assert!(matches!(
        admitted(&mut w, 1, guest)[0].msg,
        ServerMsg::Joined { .. }
    ));
}

#[test]
fn the_room_outlives_its_last_host_who_comes_back_with_the_key() {
    let (mut w, room, key, _) = clinic();
    let patient = knock(&mut w, 2, &room, "Patient");
    admitted(&mut w, 1, patient);
    let waiting = knock(&mut w, 3, &room, "Waiting");
    w.send(1, RoomMsg::Leave);
    // Nobody hosts now: the room runs on; the knock waits for a host.
    assert_eq!(
        w.send(
            2,
            RoomMsg::Chat {
                text: "still here".into()
            }
        )
        .len(),
        1
    );
    let got = w.send(4, join_with_key(&room, "Dr. Zhang", &key));
    assert!(matches!(&got[0].msg, ServerMsg::Joined { you, .. } if you.host));
    assert!(matches!(
        admitted(&mut w, 4, waiting)[0].msg,
        ServerMsg::Joined { .. }
    ));
}

#[test]
fn ending_the_room_puts_everyone_out_and_its_id_finds_nothing() {
    let (mut w, room, key, doctor) = clinic();
    let patient = knock(&mut w, 2, &room, "Patient");
    admitted(&mut w, 1, patient);
    knock(&mut w, 3, &room, "Waiting");
    w.send(2, RoomMsg::Invite { to: doctor });
    let got = w.send(1, RoomMsg::EndRoom);
    let ended = ServerMsg::RoomEnded {
        room: room.clone(),
        by: Some(doctor),
    };
    let expected = [
        out(1, ended.clone()),
        out(2, ended.clone()),
        out(3, ended.clone()),
    ];
    assert_eq!(got, expected, "that and nothing else");
    for session in [1, 2, 3] {
        assert_eq!(w.core.member_of(session), None);
    }
    assert_eq!(
        error_code(&w.send(4, join(&room, "Late"))),
        ErrorCode::RoomNotFound
    );
    assert_eq!(
        error_code(&w.send(1, join_with_key(&room, "Dr. Zhang", &key))),
        ErrorCode::RoomNotFound
    );
    assert_eq!(w.core.counts().rooms, 0);
}

#[test]
fn an_empty_private_room_waits_for_its_host_then_goes() {
    let (mut w, room, key, _) = clinic();
    w.send(1, RoomMsg::Leave);
    assert_eq!(w.core.counts().rooms, 1, "kept for the host link");
    w.advance(Duration::from_secs(3000));
    let got = w.send(2, join_with_key(&room, "Dr. Zhang", &key));
    assert!(matches!(&got[0].msg, ServerMsg::Joined { you, .. } if you.host));
    w.send(2, RoomMsg::Leave);
    w.advance(Duration::from_secs(3599));
    assert_eq!(w.core.counts().rooms, 1);
    w.advance(Duration::from_secs(1));
    assert_eq!(w.core.counts().rooms, 0);
    assert_eq!(
        error_code(&w.send(3, join_with_key(&room, "Dr. Zhang", &key))),
        ErrorCode::RoomNotFound
    );
}

#[test]
fn one_address_keeps_only_a_few_empty_private_rooms() {
    let mut w = World::new();
    let mut rooms = Vec::new();
    for _ in 0..10 {
        // All from session 1's address: create, leave, create again.
        let got = w.send(1, create("Host"));
        let ServerMsg::Joined { room, .. } = &got[0].msg else {
            panic!("{got:?}")
        };
        rooms.push(room.clone());
        w.send(1, RoomMsg::Leave);
    }
    assert_eq!(w.core.counts().rooms, 8, "Config::empty_private_per_ip");
    assert_eq!(
        error_code(&w.send(2, join(&rooms[0], "Late"))),
        ErrorCode::RoomNotFound,
        "the oldest went"
    );
    assert!(matches!(
        w.send(2, join(&rooms[9], "Guest"))[0].msg,
        ServerMsg::Waiting { .. }
    ));
}

#[test]
fn names_are_unique_in_a_room_and_its_lobby() {
    let (mut w, room, _, _) = clinic();
    let got = w.send(2, join(&room, "dr. zhang"));
    let ServerMsg::Waiting { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert_eq!(you.name, "dr. zhang (2)", "a second Dr. Zhang is told apart");
    let got = w.send(3, join(&room, "DR. ZHANG"));
    let ServerMsg::Waiting { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert_eq!(you.name, "DR. ZHANG (3)");
    assert_eq!(
        error_code(&w.send(4, join(&room, "Dr.\u{202e}Zhang"))),
        ErrorCode::InvalidName,
        "no bidirectional overrides"
    );
    // Named rooms too.
    w.join(5, "named", "Ann");
    let got = w.send(6, join("named", "ann"));
    assert!(matches!(&got[0].msg, ServerMsg::Joined { you, .. } if you.name == "ann (2)"));
}

#[test]
fn a_knocker_who_leaves_ends_the_knock() {
    let (mut w, room, _, _) = clinic();
    let guest = knock(&mut w, 2, &room, "Guest");
    w.core.handle_disconnect(w.now, 2);
    let got = w.drain();
    assert_eq!(
        got,
        [out(
            1,
            ServerMsg::KnockEnded {
                id: guest,
                outcome: KnockOutcome::Left,
                by: None
            }
        )]
    );
    let again = knock(&mut w, 3, &room, "Other");
    let got = w.send(3, RoomMsg::Leave);
    assert!(got.contains(&out(
        1,
        ServerMsg::KnockEnded {
            id: again,
            outcome: KnockOutcome::Left,
            by: None
        }
    )));
}

#[test]
fn private_ids_cannot_be_made_by_join_and_private_only_refuses_named_rooms() {
    let mut w = World::new();
    assert_eq!(
        error_code(&w.send(1, join("~0000000000000000000042", "A"))),
        ErrorCode::RoomNotFound
    );
    let mut w = World::with(Config {
        named_rooms: false,
        ..Config::default()
    });
    assert_eq!(
        error_code(&w.send(1, join("consult-42", "A"))),
        ErrorCode::PrivateOnly
    );
    assert!(matches!(w.send(1, create("A"))[0].msg, ServerMsg::Joined { .. }));
}

#[test]
fn counts_tell_the_lobby_from_the_room_and_totals_count_knocks() {
    let (mut w, room, _, _) = clinic();
    knock(&mut w, 2, &room, "A");
    knock(&mut w, 3, &room, "B");
    let counts = w.core.counts();
    assert_eq!((counts.members, counts.waiting, counts.private_rooms), (1, 2, 1));
    assert_eq!(w.core.totals().knocks, 2);
}

/// A core that admits by token. Tokens here are `room|identity|name|role|flags` (flags: `s` skips
/// the lobby, `q` may not chat, `a`, `v`, `x` may not send audio, video, a screen); `expired`
/// and `forged` are refused as such.
pub(crate) fn by_token() -> World {
    World::with(Config {
        access_tokens: Some(TokenCheck::new(|token, room, _now| {
            match token {
                "expired" => return Err(TokenRefusal::Expired),
                "forged" => return Err(TokenRefusal::Invalid),
                _ => {}
            }
            let parts: Vec<&str> = token.split('|').collect();
            let [for_room, identity, name, role, flags] = parts[..] else {
                return Err(TokenRefusal::Invalid);
            };
            if for_room != room {
                return Err(TokenRefusal::WrongRoom);
            }
            Ok(Grant {
                identity: identity.into(),
                name: name.into(),
                host: role == "host",
                skip_lobby: flags.contains('s'),
                chat: !flags.contains('q'),
                publish: Publish {
                    audio: !flags.contains('a'),
                    video: !flags.contains('v'),
                    screen: !flags.contains('x'),
                },
            })
        })),
        ..Config::default()
    })
}

pub(crate) fn join_with_token(room: &str, token: &str) -> ClientMsg {
    SessionMsg::Join {
        version: PROTOCOL_VERSION,
        room: room.into(),
        name: "ignored".into(),
        host_key: None,
        access_token: Some(token.into()),
    }
    .into()
}

#[test]
fn with_token_access_nobody_enters_without_a_valid_token_for_the_room() {
    let mut w = by_token();
    assert_eq!(
        error_code(&w.send(1, join("visit-7", "A"))),
        ErrorCode::TokenRequired
    );
    assert_eq!(error_code(&w.send(1, create("A"))), ErrorCode::TokenRequired);
    assert_eq!(
        error_code(&w.send(1, join_with_token("visit-7", "forged"))),
        ErrorCode::TokenInvalid
    );
    assert_eq!(
        error_code(&w.send(1, join_with_token("visit-7", "expired"))),
        ErrorCode::TokenExpired
    );
    assert_eq!(
        error_code(&w.send(1, join_with_token("visit-7", "visit-8|p|Pat|guest|"))),
        ErrorCode::TokenWrongRoom
    );
    // The doctor's host token opens the room; the name is the token's.
    let got = w.send(1, join_with_token("visit-7", "visit-7|dr|Dr. Zhang|host|"));
    let ServerMsg::Joined { you, state, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert!(you.host && you.name == "Dr. Zhang" && state.private && state.lobby);
    // A guest token knocks; one that skips the lobby walks in.
    let got = w.send(2, join_with_token("visit-7", "visit-7|pat|Patient Li|guest|"));
    assert!(matches!(got[0].msg, ServerMsg::Waiting { .. }), "{got:?}");
    let got = w.send(3, join_with_token("visit-7", "visit-7|nurse|Nurse|guest|s"));
    assert!(matches!(got[0].msg, ServerMsg::Joined { .. }), "{got:?}");
}

#[test]
fn a_token_may_forbid_chat_and_a_removed_identity_cannot_come_back() {
    let mut w = by_token();
    w.send(1, join_with_token("visit-7", "visit-7|dr|Dr. Zhang|host|"));
    let got = w.send(2, join_with_token("visit-7", "visit-7|obs|Observer|guest|sq"));
    let ServerMsg::Joined { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let observer = you.id;
    assert_eq!(
        error_code(&w.send(2, RoomMsg::Chat { text: "hi".into() })),
        ErrorCode::NotPermitted
    );
    w.send(1, RoomMsg::Remove { id: observer });
    // The same token, replayed from another address: refused for its identity.
    assert_eq!(
        error_code(&w.send(9, join_with_token("visit-7", "visit-7|obs|Observer|guest|sq"))),
        ErrorCode::TokenRevoked
    );
}

#[test]
fn a_token_may_forbid_video_and_screen_everyone_is_told_and_media_states_beyond_it_are_refused() {
    let mut w = by_token();
    let got = w.send(1, join_with_token("visit-7", "visit-7|dr|Dr. Zhang|host|"));
    let ServerMsg::Joined { you: doctor, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert!(doctor.publish.is_all());
    let got = w.send(2, join_with_token("visit-7", "visit-7|pt|Patient|guest|svx"));
    let ServerMsg::Joined { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let limited = Publish {
        audio: true,
        video: false,
        screen: false,
    };
    assert_eq!(you.publish, limited);
    let patient = you.id;
    assert!(
        got.iter().any(|o| o.to == 1
            && matches!(&o.msg, ServerMsg::MemberJoined { member } if member.publish == limited)),
        "the doctor learns what the patient may send: {got:?}"
    );

    let rung = w.send(1, RoomMsg::Invite { to: patient });
    let call_id = rung
        .iter()
        .find_map(|o| match o.msg {
            ServerMsg::Ringing { call_id, .. } => Some(call_id),
            _ => None,
        })
        .expect("ringing");
    w.send(2, RoomMsg::Accept { call_id });
    let media = |audio, video, screen| RoomMsg::Media {
        call_id,
        audio,
        video,
        screen,
        unavailable: Unavailable::NONE,
    };
    assert_eq!(
        error_code(&w.send(2, media(true, true, false))),
        ErrorCode::NotPermitted
    );
    assert_eq!(
        error_code(&w.send(2, media(true, false, true))),
        ErrorCode::NotPermitted
    );
    assert_eq!(
        w.send(2, media(true, false, false)),
        vec![out(
            1,
            ServerMsg::Media {
                call_id,
                from: patient,
                audio: true,
                video: false,
                screen: false,
                unavailable: Unavailable::NONE,
            }
        )]
    );
    // The doctor's token allows everything.
    assert_eq!(w.send(1, media(true, true, true)).len(), 1);
}
