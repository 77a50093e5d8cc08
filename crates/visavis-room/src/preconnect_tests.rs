//! Scenario tests of pre-connecting while a call rings (`Config::preconnect`): negotiation is
//! relayed between the two parties of a ringing call and nobody else, media state is not, every
//! way a ringing call ends tells both parties (whose clients then close what they prepared), and
//! glare keeps the one call that was being prepared.

use super::*;
use crate::tests::{error_code, out, World};
use visavis_protocol::{Candidate, Description, SdpKind, Unavailable};

fn offer(call_id: CallId) -> RoomMsg {
    RoomMsg::Description {
        call_id,
        to: None,
        description: Description::new(SdpKind::Offer, "v=0"),
    }
}

fn candidate(call_id: CallId) -> RoomMsg {
    RoomMsg::Candidate {
        call_id,
        to: None,
        candidate: Candidate::end(),
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

#[test]
fn joined_tells_how_calls_preconnect() {
    for mode in [Preconnect::Relay, Preconnect::Direct, Preconnect::Off] {
        let mut w = World::with(Config {
            preconnect: mode,
            ..Config::default()
        });
        let got = w.send(1, crate::tests::join("r", "Ann"));
        match &got[0].msg {
            ServerMsg::Joined { preconnect, .. } => assert_eq!(*preconnect, mode),
            other => panic!("expected joined, got {other:?}"),
        }
    }
}

#[test]
fn a_ringing_call_relays_negotiation_both_ways_but_no_media_state() {
    for mode in [Preconnect::Relay, Preconnect::Direct] {
        let (mut w, a, b, call) = World::ringing_pair_with(Config {
            preconnect: mode,
            ..Config::default()
        });
        assert_eq!(
            w.send(1, offer(call)),
            vec![out(
                2,
                ServerMsg::Description {
                    call_id: call,
                    from: a,
                    description: Description::new(SdpKind::Offer, "v=0"),
                }
            )]
        );
        assert_eq!(
            w.send(2, candidate(call)),
            vec![out(
                1,
                ServerMsg::Candidate {
                    call_id: call,
                    from: b,
                    candidate: Candidate::end(),
                }
            )]
        );
        // Mute and camera state mean nothing before Accept: no media flows yet.
        let media = RoomMsg::Media {
            call_id: call,
            audio: true,
            video: true,
            screen: false,
            unavailable: Unavailable::NONE,
        };
        assert_eq!(error_code(&w.send(1, media)), ErrorCode::InvalidCallState);
        // Nobody else in the room can reach the ringing call.
        w.join(3, "r", "Cy");
        assert_eq!(error_code(&w.send(3, offer(call))), ErrorCode::UnknownCall);
        assert_eq!(error_code(&w.send(3, candidate(call))), ErrorCode::UnknownCall);
    }
}

#[test]
fn without_preconnect_a_ringing_call_relays_nothing() {
    let (mut w, _, _, call) = World::ringing_pair_with(Config {
        preconnect: Preconnect::Off,
        ..Config::default()
    });
    assert_eq!(error_code(&w.send(1, offer(call))), ErrorCode::InvalidCallState);
    assert_eq!(
        error_code(&w.send(2, candidate(call))),
        ErrorCode::InvalidCallState
    );
}

#[test]
fn decline_cancel_and_no_answer_end_the_prepared_call_for_both_and_stop_the_relay() {
    // Decline.
    let (mut w, a, b, call) = World::ringing_pair();
    w.send(1, offer(call));
    assert_eq!(
        w.send(2, RoomMsg::Decline { call_id: call }),
        vec![
            out(1, ended(call, b, EndReason::Declined, Some(b))),
            out(2, ended(call, a, EndReason::Declined, Some(b))),
        ]
    );
    assert_eq!(error_code(&w.send(1, candidate(call))), ErrorCode::UnknownCall);
    assert_eq!(error_code(&w.send(2, candidate(call))), ErrorCode::UnknownCall);

    // Cancel.
    let (mut w, a, b, call) = World::ringing_pair();
    w.send(2, candidate(call));
    assert_eq!(
        w.send(1, RoomMsg::Cancel { call_id: call }),
        vec![
            out(1, ended(call, b, EndReason::Cancelled, Some(a))),
            out(2, ended(call, a, EndReason::Cancelled, Some(a))),
        ]
    );
    assert_eq!(error_code(&w.send(2, offer(call))), ErrorCode::UnknownCall);

    // No answer.
    let (mut w, a, b, call) = World::ringing_pair();
    w.send(1, offer(call));
    let got = w.advance(Config::default().ring_timeout);
    assert_eq!(
        got,
        vec![
            out(1, ended(call, b, EndReason::NoAnswer, None)),
            out(2, ended(call, a, EndReason::NoAnswer, None)),
        ]
    );
    assert_eq!(error_code(&w.send(1, offer(call))), ErrorCode::UnknownCall);
}

#[test]
fn accept_keeps_relaying_on_the_prepared_call() {
    let (mut w, _, b, call) = World::ringing_pair();
    w.send(1, offer(call));
    w.send(2, RoomMsg::Accept { call_id: call });
    // The caller's ICE restart after Accept, and the media state, go through.
    assert_eq!(w.send(1, offer(call)).len(), 1);
    let media = RoomMsg::Media {
        call_id: call,
        audio: true,
        video: true,
        screen: false,
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
                video: true,
                screen: false,
                unavailable: Unavailable::NONE,
            }
        )]
    );
}

#[test]
fn glare_accepts_the_call_being_prepared_and_makes_no_second_one() {
    let (mut w, a, b, call) = World::ringing_pair();
    // Both sides negotiate the ringing call...
    w.send(1, offer(call));
    w.send(2, candidate(call));
    // ...when Bob calls Ann back at the same moment: his invite accepts her call.
    let got = w.send(2, RoomMsg::Invite { to: a });
    assert_eq!(
        got,
        vec![
            out(
                1,
                ServerMsg::Accepted {
                    call_id: call,
                    peer: b,
                    polite: false,
                }
            ),
            out(
                2,
                ServerMsg::Accepted {
                    call_id: call,
                    peer: a,
                    polite: true,
                }
            ),
        ]
    );
    assert_eq!(w.core.counts().calls, 1);
    assert_eq!(w.send(2, candidate(call)).len(), 1);
}

#[test]
fn a_party_leaving_a_ringing_call_ends_it_for_the_other() {
    let (mut w, _, b, call) = World::ringing_pair();
    w.send(1, offer(call));
    let got = w.send(2, RoomMsg::Leave);
    assert!(
        got.contains(&out(1, ended(call, b, EndReason::Left, Some(b)))),
        "{got:?}"
    );
    assert_eq!(error_code(&w.send(1, offer(call))), ErrorCode::UnknownCall);
}
