//! Snapshot and restore of the room core with a fake clock: what a later process gets back,
//! and the deadlines it rebuilds from the written times.

use super::*;
use crate::private_tests::knock;
use crate::tests::{join, World};
use std::time::Instant;
use visavis_protocol::{ClientMsg, SessionMsg};

/// The core as a later process would find it: through the bytes, a new monotonic clock, the
/// wall clock `later` on.
fn restart(w: &World, later: Duration) -> World {
    let bytes = serde_json::to_vec(&w.core.snapshot(w.now)).unwrap();
    let snapshot: CoreSnapshot = serde_json::from_slice(&bytes).unwrap();
    let now = Now {
        mono: Instant::now() + Duration::from_secs(500),
        unix_ms: w.now.unix_ms + u64::try_from(later.as_millis()).unwrap(),
    };
    let core = Core::restore(Config::default(), snapshot, now);
    let mut w = World { core, now };
    assert!(w.drain().is_empty());
    w
}

#[test]
fn rooms_members_calls_chat_and_the_lobby_come_back_as_they_were() {
    let mut w = World::new();
    let a = w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    w.join(3, "r", "Cy");
    w.send(1, RoomMsg::Chat { text: "hi".into() });
    let out = w.send(1, RoomMsg::Invite { to: b });
    let ServerMsg::Ringing { call_id, .. } = out[0].msg else {
        panic!("{out:?}")
    };
    w.send(2, RoomMsg::Accept { call_id });
    // A private room with a guest in the lobby, locked.
    let got = w.send(
        10,
        ClientMsg::from(SessionMsg::Create {
            version: PROTOCOL_VERSION,
            name: "Dr. Zhang".into(),
        }),
    );
    let ServerMsg::Joined { room, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    let room = room.clone();
    knock(&mut w, 11, &room, "Patient");
    w.send(
        10,
        RoomMsg::RoomSettings {
            lobby: None,
            locked: Some(true),
            share_history: None,
        },
    );

    let before = w.core.snapshot(w.now);
    let mut w = restart(&w, Duration::from_secs(4));
    let after = w.core.snapshot(w.now.after(Duration::ZERO));
    assert_eq!(before, after, "what comes back is what was written");
    assert_eq!(w.core.counts().calls, 1);
    assert_eq!(w.core.counts().waiting, 1);

    // The call goes on: a hangup ends it for both.
    let out = w.send(1, RoomMsg::Hangup { call_id });
    let ended: Vec<SessionId> = out
        .iter()
        .filter(|o| {
            matches!(
                o.msg,
                ServerMsg::CallEnded {
                    reason: EndReason::Hangup,
                    ..
                }
            )
        })
        .map(|o| o.to)
        .collect();
    assert_eq!(ended, [1, 2]);
    // The lock holds.
    let out = w.send(12, join(&room, "Late"));
    assert!(
        matches!(
            &out[0].msg,
            ServerMsg::Error {
                code: ErrorCode::RoomLocked,
                ..
            }
        ),
        "{out:?}"
    );
    // Ids stay unique: a newcomer gets a fresh member id.
    let d = w.join(4, "r", "Di");
    assert!(![a, b].contains(&d));
}

#[test]
fn a_ring_timeout_fires_when_it_would_have_without_the_restart() {
    let mut w = World::new();
    w.join(1, "r", "Ann");
    let b = w.join(2, "r", "Bob");
    w.send(1, RoomMsg::Invite { to: b });
    w.advance(Duration::from_secs(10));
    // Down for 5 s: 15 s of the 30 s ring are left.
    let mut w = restart(&w, Duration::from_secs(5));
    assert!(w.advance(Duration::from_secs(14)).is_empty());
    let out = w.advance(Duration::from_secs(2));
    assert!(
        out.iter().all(|o| matches!(
            o.msg,
            ServerMsg::CallEnded {
                reason: EndReason::NoAnswer,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn an_empty_private_room_still_expires_on_time() {
    let mut w = World::new();
    let got = w.send(
        1,
        ClientMsg::from(SessionMsg::Create {
            version: PROTOCOL_VERSION,
            name: "Dr. Zhang".into(),
        }),
    );
    assert!(matches!(got[0].msg, ServerMsg::Joined { .. }));
    w.send(1, RoomMsg::Leave);
    assert_eq!(w.core.counts().rooms, 1, "waits for its host");
    let mut w = restart(&w, Duration::from_secs(1800));
    w.advance(Duration::from_secs(1790));
    assert_eq!(w.core.counts().rooms, 1);
    w.advance(Duration::from_secs(20));
    assert_eq!(w.core.counts().rooms, 0, "gone an hour after it emptied");
}

#[test]
fn a_restored_sfu_group_call_tells_each_participant_to_offer_again() {
    let config = Config {
        group_media: GroupMedia::Sfu,
        ..Config::default()
    };
    let mut w = World::with(config.clone());
    w.join(1, "r", "Ann");
    w.join(2, "r", "Bob");
    w.join(3, "r", "Cy");
    w.send(1, RoomMsg::GroupJoin);
    w.send(2, RoomMsg::GroupJoin);
    let call_id = w.core.rooms["r"].group.as_ref().unwrap().call_id;
    // A mesh call in another room needs nothing from the server's media.
    let mut mesh = World::new();
    mesh.join(4, "m", "Dee");
    mesh.send(4, RoomMsg::GroupJoin);

    let snapshot = w.core.snapshot(w.now);
    let mut w = World {
        core: Core::restore(config, snapshot, w.now),
        now: w.now,
    };
    let mut told: Vec<(SessionId, ServerMsg)> = w.drain().into_iter().map(|o| (o.to, o.msg)).collect();
    told.sort_by_key(|(to, _)| *to);
    let restart = ServerMsg::SfuRestart { call_id };
    assert_eq!(
        told,
        [(1, restart.clone()), (2, restart)],
        "the participants, not Cy"
    );
    // The call itself is as it was.
    assert_eq!(w.core.rooms["r"].group.as_ref().unwrap().participants.len(), 2);

    let restored = Core::restore(Config::default(), mesh.core.snapshot(mesh.now), mesh.now);
    let mut restored = World {
        core: restored,
        now: mesh.now,
    };
    assert!(restored.drain().is_empty());
}
