//! Scenario tests of what the REST API does to rooms: making them (and every option it may
//! refuse), reading them with who is in them, removing and muting participants, closing rooms,
//! time limits, and how long an empty room made by the API is kept.

use super::*;
use crate::private_tests::{by_token, join_with_key, join_with_token, knock};
use crate::tests::{error_code, join, out, World};
use visavis_protocol::KnockOutcome;

fn named(name: &str) -> RoomOptions {
    RoomOptions {
        name: Some(name.into()),
        ..RoomOptions::default()
    }
}

fn create(w: &mut World, options: RoomOptions) -> Result<RoomDetail, ApiError> {
    let made = w.core.api_create_room(w.now, options);
    w.core.assert_consistent();
    made
}

#[test]
fn a_room_without_a_name_gets_a_private_id_and_a_host_key() {
    let mut w = World::new();
    let made = create(&mut w, RoomOptions::default()).expect("made");
    let room = &made.room;
    assert!(is_private_id(&room.name), "{}", room.name);
    assert!(room.private && room.hosted && room.lobby && !room.locked);
    assert_eq!((room.capacity, room.participants, room.waiting), (16, 0, 0));
    assert_eq!((room.created_at, room.ends_at), (w.now.unix_secs(), None));
    assert!(made.participants.is_empty() && made.waiting.is_empty());
    // Nobody is told anything: nobody is there.
    assert!(w.drain().is_empty());
    assert_eq!(w.core.rooms(), std::slice::from_ref(room));
    assert_eq!(w.core.room(&room.name).as_ref(), Some(&made));
    // Its host key lets a host in; a guest knocks.
    let key = room.host_key.clone().expect("a host key");
    let got = w.send(1, join_with_key(&room.name, "Dr. Zhang", &key));
    assert!(
        matches!(&got[0].msg, ServerMsg::Joined { you, .. } if you.host),
        "{got:?}"
    );
    knock(&mut w, 2, &room.name, "Patient Li");
}

#[test]
fn options_are_checked() {
    let mut w = World::with(Config {
        room_capacity: 8,
        max_rooms: 3,
        ..Config::default()
    });
    w.join(1, "lounge", "Ann");
    let refused = |w: &mut World, options: RoomOptions| create(w, options).expect_err("refused").code();
    let invalid = [
        RoomOptions {
            capacity: Some(0),
            ..named("a")
        },
        RoomOptions {
            capacity: Some(9),
            ..named("a")
        },
        RoomOptions {
            max_duration: Some(Duration::ZERO),
            ..named("a")
        },
        RoomOptions {
            max_duration: Some(MAX_DURATION + Duration::from_secs(1)),
            ..named("a")
        },
        RoomOptions {
            private: Some(true),
            ..named("a")
        },
        RoomOptions {
            private: Some(false),
            ..RoomOptions::default()
        },
    ];
    for options in invalid {
        assert_eq!(refused(&mut w, options.clone()), "invalid_request", "{options:?}");
    }
    for name in ["", " a", "a/b", "...", "~0000000000000000000001", &"x".repeat(65)] {
        assert_eq!(refused(&mut w, named(name)), "invalid_room", "{name:?}");
    }
    // A name in use, whoever made it.
    assert_eq!(refused(&mut w, named("lounge")), "room_exists");
    let made = create(
        &mut w,
        RoomOptions {
            capacity: Some(8),
            max_duration: Some(MAX_DURATION),
            ..named("Приём-7")
        },
    )
    .expect("made");
    assert!(!made.room.private && made.room.hosted);
    assert_eq!(refused(&mut w, named("Приём-7")), "room_exists");
    create(&mut w, RoomOptions::default()).expect("the third room");
    assert_eq!(refused(&mut w, named("b")), "too_many_rooms");
}

#[test]
fn a_room_lists_its_participants_and_those_waiting() {
    let mut w = by_token();
    create(
        &mut w,
        RoomOptions {
            capacity: Some(3),
            ..named("visit-7")
        },
    )
    .expect("made");
    let got = w.send(1, join_with_token("visit-7", "visit-7|dr|Dr. Zhang|host|"));
    let ServerMsg::Joined { you, state, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let doctor = you.id;
    assert!(you.host && state.lobby);
    let got = w.send(2, join_with_token("visit-7", "visit-7|pat|Patient Li|guest|"));
    let ServerMsg::Waiting { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let patient = you.id;
    w.send(3, join_with_token("visit-7", "visit-7|nurse|Nurse|guest|s"));
    let detail = w.core.room("visit-7").expect("listed");
    let who = |list: &[Participant]| -> Vec<(String, bool, Option<String>)> {
        list.iter()
            .map(|p| (p.name.clone(), p.host, p.identity.clone()))
            .collect()
    };
    assert_eq!(
        who(&detail.participants),
        [
            ("Dr. Zhang".into(), true, Some("dr".into())),
            ("Nurse".into(), false, Some("nurse".into()))
        ]
    );
    assert_eq!(detail.participants[0].id, doctor);
    assert_eq!(
        who(&detail.waiting),
        [("Patient Li".into(), false, Some("pat".into()))]
    );
    assert_eq!(detail.waiting[0].id, patient);
    assert_eq!((detail.room.participants, detail.room.waiting), (2, 1));
    // A call shows.
    let nurse = detail.participants[1].id;
    let got = w.send(1, RoomMsg::Invite { to: nurse });
    let ServerMsg::Ringing { call_id, .. } = got[0].msg else {
        panic!("{got:?}")
    };
    let detail = w.core.room("visit-7").expect("listed");
    assert!(detail.participants.iter().all(|p| p.call == Some(call_id)));
    // The room's capacity, not the server's, is what fills it.
    w.send(1, RoomMsg::Admit { id: patient });
    assert_eq!(
        error_code(&w.send(4, join_with_token("visit-7", "visit-7|x|X|guest|s"))),
        ErrorCode::RoomFull
    );
    assert_eq!(w.core.room("visit-8"), None);
}

#[test]
fn removing_takes_a_participant_out_for_good() {
    let mut w = by_token();
    create(&mut w, named("visit-7")).expect("made");
    w.send(1, join_with_token("visit-7", "visit-7|dr|Dr. Zhang|host|"));
    let got = w.send(2, join_with_token("visit-7", "visit-7|pat|Patient Li|guest|s"));
    let ServerMsg::Joined { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let patient = you.id;
    w.drain();
    assert_eq!(
        w.core.api_remove(w.now, "visit-8", patient),
        Err(ApiError::RoomNotFound("visit-8".into()))
    );
    assert_eq!(
        w.core.api_remove(w.now, "visit-7", patient + 1000),
        Err(ApiError::UnknownMember(patient + 1000))
    );
    w.core.api_remove(w.now, "visit-7", patient).expect("removed");
    let got = w.drain();
    assert!(got.contains(&out(
        2,
        ServerMsg::Removed {
            room: "visit-7".into(),
            by: None
        }
    )));
    assert!(got.contains(&out(1, ServerMsg::MemberLeft { id: patient })));
    assert_eq!(w.core.member_of(2), None);
    // Its token no longer lets it in, from any address.
    assert_eq!(
        error_code(&w.send(9, join_with_token("visit-7", "visit-7|pat|Patient Li|guest|s"))),
        ErrorCode::TokenRevoked
    );
    // Someone waiting can be removed too: the hosts hear the knock was denied.
    let got = w.send(3, join_with_token("visit-7", "visit-7|x|X|guest|"));
    let ServerMsg::Waiting { you, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let x = you.id;
    w.core.api_remove(w.now, "visit-7", x).expect("removed");
    let got = w.drain();
    assert!(got.contains(&out(
        3,
        ServerMsg::Removed {
            room: "visit-7".into(),
            by: None
        }
    )));
    assert!(got.contains(&out(
        1,
        ServerMsg::KnockEnded {
            id: x,
            outcome: KnockOutcome::Denied,
            by: None
        }
    )));
    assert_eq!(w.core.room("visit-7").expect("room").waiting, []);
}

#[test]
fn a_removed_address_knocks_even_with_the_lobby_off() {
    let mut w = World::new();
    let made = create(
        &mut w,
        RoomOptions {
            lobby: false,
            ..RoomOptions::default()
        },
    )
    .expect("made");
    let room = made.room.name;
    let guest = w.join(2, &room, "Guest");
    w.core.api_remove(w.now, &room, guest).expect("removed");
    w.drain();
    knock(&mut w, 2, &room, "Guest");
    w.join(3, &room, "Other");
}

#[test]
fn muting_asks_the_participant_only() {
    let mut w = World::new();
    create(
        &mut w,
        RoomOptions {
            lobby: false,
            ..named("class")
        },
    )
    .expect("made");
    w.join(1, "class", "Ann");
    let bob = w.join(2, "class", "Bob");
    w.drain();
    w.core.api_mute(w.now, "class", bob).expect("asked");
    assert_eq!(w.drain(), [out(2, ServerMsg::MuteRequest { by: None })]);
    assert_eq!(
        w.core.api_mute(w.now, "lounge", bob),
        Err(ApiError::RoomNotFound("lounge".into()))
    );
    // In another room, or waiting: not a participant of this one.
    let carol = w.join(3, "lounge", "Carol");
    assert_eq!(
        w.core.api_mute(w.now, "class", carol),
        Err(ApiError::UnknownMember(carol))
    );
    let made = create(&mut w, RoomOptions::default()).expect("made");
    let waiting = knock(&mut w, 4, &made.room.name, "Dan");
    assert_eq!(
        w.core.api_mute(w.now, &made.room.name, waiting),
        Err(ApiError::UnknownMember(waiting))
    );
}

#[test]
fn closing_puts_everyone_out_and_a_name_may_be_used_again() {
    let mut w = World::new();
    let made = create(&mut w, named("visit-7")).expect("made");
    let key = made.room.host_key.expect("key");
    w.send(1, join_with_key("visit-7", "Dr. Zhang", &key));
    let patient = knock(&mut w, 2, "visit-7", "Patient Li");
    w.send(1, RoomMsg::Admit { id: patient });
    knock(&mut w, 3, "visit-7", "Waiting");
    // A plain named room anyone opened: the API may close it too.
    w.join(4, "lounge", "Ann");
    w.core.api_close(w.now, "visit-7").expect("closed");
    let got = w.drain();
    let ended = ServerMsg::RoomEnded {
        room: "visit-7".into(),
        by: None,
    };
    for session in [1, 2, 3] {
        assert!(got.contains(&out(session, ended.clone())), "{session}: {got:?}");
        assert_eq!(w.core.member_of(session), None);
    }
    assert_eq!(w.core.room("visit-7"), None);
    assert_eq!(
        w.core.api_close(w.now, "visit-7"),
        Err(ApiError::RoomNotFound("visit-7".into()))
    );
    w.core.api_close(w.now, "lounge").expect("closed");
    assert_eq!(
        w.drain(),
        [out(
            4,
            ServerMsg::RoomEnded {
                room: "lounge".into(),
                by: None
            }
        )]
    );
    assert!(w.core.rooms().is_empty());
    create(&mut w, named("visit-7")).expect("made again");
}

#[test]
fn a_room_ends_when_its_time_is_up() {
    let mut w = World::new();
    let hour = Duration::from_secs(3600);
    let made = create(
        &mut w,
        RoomOptions {
            lobby: false,
            max_duration: Some(hour),
            ..named("visit-7")
        },
    )
    .expect("made");
    assert_eq!(made.room.ends_at, Some(w.now.unix_secs() + 3600));
    assert_eq!(w.core.poll_timeout(), Some(w.now.mono + hour));
    w.join(1, "visit-7", "Ann");
    w.join(2, "visit-7", "Bob");
    w.drain();
    assert!(w.advance(hour - Duration::from_secs(1)).is_empty());
    let got = w.advance(Duration::from_secs(1));
    let ended = ServerMsg::RoomEnded {
        room: "visit-7".into(),
        by: None,
    };
    assert_eq!(got, [out(1, ended.clone()), out(2, ended)]);
    assert_eq!(w.core.room("visit-7"), None);
    assert_eq!(w.core.poll_timeout(), None);
}

#[test]
fn a_time_limit_goes_with_its_room() {
    let mut w = World::new();
    let minute = Duration::from_secs(60);
    create(
        &mut w,
        RoomOptions {
            lobby: false,
            max_duration: Some(minute),
            ..named("visit-7")
        },
    )
    .expect("made");
    w.core.api_close(w.now, "visit-7").expect("closed");
    assert_eq!(w.core.poll_timeout(), None);
    // The name used again, by anyone: the old limit does not end the new room.
    w.join(1, "visit-7", "Ann");
    assert!(w.advance(2 * minute).is_empty());
    assert!(w.core.room("visit-7").is_some());
}

#[test]
fn an_empty_room_waits_an_hour_for_its_people_however_many_the_api_made() {
    let mut w = World::new();
    for i in 0..20 {
        let options = RoomOptions {
            lobby: false,
            ..named(&format!("visit-{i}"))
        };
        create(&mut w, options).expect("made");
    }
    assert_eq!(w.core.rooms().len(), 20, "no cap per creator for the API");
    w.advance(Duration::from_secs(1800));
    // Someone comes and goes: the hour starts again for that room.
    w.join(1, "visit-0", "Ann");
    w.send(1, RoomMsg::Leave);
    w.advance(Duration::from_secs(1800));
    assert_eq!(
        w.core.rooms().iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["visit-0"]
    );
    w.advance(Duration::from_secs(1800));
    assert!(w.core.rooms().is_empty());
}

#[test]
fn with_private_access_the_api_s_named_rooms_may_be_joined() {
    let mut w = World::with(Config {
        named_rooms: false,
        ..Config::default()
    });
    assert_eq!(
        error_code(&w.send(1, join("lounge", "Ann"))),
        ErrorCode::PrivateOnly
    );
    create(
        &mut w,
        RoomOptions {
            lobby: false,
            ..named("visit-7")
        },
    )
    .expect("made");
    w.join(1, "visit-7", "Ann");
}
