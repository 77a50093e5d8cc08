//! Scenario tests of sessions over connections with a fake clock and no sockets: numbering,
//! replay, resume, grace, heartbeats, limits and shutdown.

use std::time::{Duration, Instant};

use visavis_protocol::{decode_server, ServerFrame};
use visavis_room::Config as RoomConfig;

use super::*;

/// Tokens `t1`, `t2`, ... so tests can name them.
fn counter_tokens() -> TokenSource {
    let mut n = 0;
    Box::new(move |_: &str| {
        n += 1;
        format!("t{n}")
    })
}

struct World {
    sig: Signalling,
    now: Now,
}

impl World {
    fn new() -> Self {
        Self::with(Config::default())
    }

    fn with(config: Config) -> Self {
        Self {
            sig: Signalling::new(Core::new(RoomConfig::default()), config, counter_tokens()),
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        self.sig.assert_consistent();
        std::iter::from_fn(|| self.sig.poll_output()).collect()
    }

    fn open(&mut self) -> ConnId {
        self.open_from([127, 0, 0, 1])
    }

    fn open_from(&mut self, ip: [u8; 4]) -> ConnId {
        let conn = self.sig.handle_open(self.now, ip.into()).expect("admitted");
        assert!(self.drain().is_empty());
        conn
    }

    fn text(&mut self, conn: ConnId, text: &str) -> Vec<Output> {
        self.sig.handle_text(self.now, conn, text);
        self.drain()
    }

    fn close(&mut self, conn: ConnId, ending: Ending) -> Vec<Output> {
        self.sig.handle_close(self.now, conn, ending);
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now = self.now.after(by);
        self.sig.handle_timeout(self.now);
        self.drain()
    }

    /// A new connection joined to room "r" as `name`; returns it with its member id.
    fn joined(&mut self, name: &str) -> (ConnId, u64) {
        let conn = self.open();
        let out = self.text(conn, &join(name));
        match &frames(&out, conn)[0].msg {
            ServerMsg::Joined { you, .. } => (conn, you.id),
            other => panic!("expected joined, got {other:?}"),
        }
    }
}

fn join(name: &str) -> String {
    format!(r#"{{"type":"join","version":1,"room":"r","name":"{name}"}}"#)
}

fn resume(token: &str, last_sn: u64) -> String {
    format!(r#"{{"type":"resume","version":1,"token":"{token}","lastSn":{last_sn}}}"#)
}

/// The frames sent to `conn`, decoded.
fn frames(out: &[Output], conn: ConnId) -> Vec<ServerFrame> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { conn: c, frame } if *c == conn => {
                Some(decode_server(std::str::from_utf8(frame).unwrap()).unwrap())
            }
            _ => None,
        })
        .collect()
}

fn kinds(out: &[Output], conn: ConnId) -> Vec<&'static str> {
    frames(out, conn).iter().map(|f| f.msg.kind()).collect()
}

fn error_code(out: &[Output], conn: ConnId) -> ErrorCode {
    match frames(out, conn).last().map(|f| &f.msg) {
        Some(ServerMsg::Error { code, .. }) => *code,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn closes(out: &[Output]) -> Vec<(ConnId, u16)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Close { conn, code, .. } => Some((*conn, *code)),
            Output::Send { .. } | Output::Event(_) => None,
        })
        .collect()
}

#[test]
fn joined_carries_the_session_fields_and_every_message_is_numbered() {
    let mut w = World::new();
    let a = w.open();
    let out = w.text(a, r#"{"type":"invite","to":1}"#);
    assert_eq!(error_code(&out, a), ErrorCode::NotJoined);
    assert_eq!(
        frames(&out, a)[0].sn,
        Some(1),
        "errors before join are numbered too"
    );
    let out = w.text(a, &join("Ann"));
    let f = &frames(&out, a)[0];
    assert_eq!(f.sn, Some(2));
    let ServerMsg::Joined { session, .. } = &f.msg else {
        panic!("{f:?}")
    };
    assert_eq!(
        session.as_ref(),
        Some(&SessionFields {
            token: "t1".into(),
            heartbeat_ms: 10_000,
            resume_grace_ms: 30_000
        })
    );
    let (b, _) = w.joined("Bob");
    let out = w.text(b, r#"{"type":"chat","text":"hi"}"#);
    assert_eq!(frames(&out, a)[0].sn, Some(4), "member_joined was 3");
    assert_eq!(frames(&out, b)[0].sn, Some(2));
}

#[test]
fn a_reloaded_page_resumes_with_its_room_afresh_instead_of_the_replay() {
    let mut w = World::new();
    let (a, ann) = w.joined("Ann"); // t1
    let (b, _) = w.joined("Bob"); // t2
    w.text(a, r#"{"cn":1,"type":"chat","text":"from Ann"}"#);
    w.text(b, r#"{"type":"chat","text":"m1"}"#);
    // The page goes away saying it will be back (close code 4001).
    w.close(a, Ending::Dropped);
    let a2 = w.open();
    let out = w.text(
        a2,
        r#"{"type":"resume","version":1,"token":"t1","lastSn":0,"reloaded":true}"#,
    );
    let got = frames(&out, a2);
    assert!(
        matches!(got[0].msg, ServerMsg::Resumed { last_cn: 1, .. }),
        "{got:?}"
    );
    // No replay: one `joined`, numbered after everything sent before, with the chat in it and
    // a token of its own (the one in `resumed` is replaced).
    assert_eq!(got.len(), 2, "{got:?}");
    let ServerMsg::Joined {
        chat,
        session: Some(fields),
        ..
    } = &got[1].msg
    else {
        panic!("expected joined, got {got:?}");
    };
    assert_eq!(chat.len(), 2);
    assert!(got[1].sn.unwrap() > 3);
    let ServerMsg::MemberState { id, reloaded, .. } = &frames(&out, b)[0].msg else {
        panic!()
    };
    assert_eq!((*id, *reloaded), (ann, true));
    // The old token resumes nothing; the new one does.
    w.close(a2, Ending::Dropped);
    let a3 = w.open();
    assert_eq!(
        error_code(&w.text(a3, &resume("t1", 0)), a3),
        ErrorCode::InvalidToken
    );
    let out = w.text(a3, &resume(&fields.token, got[1].sn.unwrap()));
    assert!(matches!(frames(&out, a3)[0].msg, ServerMsg::Resumed { .. }));
}

#[test]
fn versions_other_than_1_are_refused_for_join_and_resume() {
    let mut w = World::new();
    let a = w.open();
    let out = w.text(a, r#"{"type":"join","version":2,"room":"r","name":"A"}"#);
    assert_eq!(error_code(&out, a), ErrorCode::UnsupportedVersion);
    let out = w.text(a, r#"{"type":"resume","version":0,"token":"x","lastSn":0}"#);
    assert_eq!(error_code(&out, a), ErrorCode::UnsupportedVersion);
}

#[test]
fn a_dropped_session_resumes_with_the_replay_of_what_was_not_acknowledged() {
    let mut w = World::new();
    let (a, ann) = w.joined("Ann"); // sn 1: joined
    let (b, _) = w.joined("Bob");
    for i in 0..3 {
        w.text(b, &format!(r#"{{"type":"chat","text":"m{i}"}}"#)); // to Ann: sn 3, 4, 5
    }
    w.text(a, r#"{"type":"pong","ack":3}"#);
    let out = w.close(a, Ending::Dropped);
    assert_eq!(kinds(&out, b), ["member_state"]);
    // Held while detached: numbered 6, sent nowhere.
    let out = w.text(b, r#"{"type":"chat","text":"m3"}"#);
    assert!(frames(&out, a).is_empty());

    let a2 = w.open();
    let out = w.text(a2, &resume("t1", 4));
    let got = frames(&out, a2);
    assert_eq!(
        got[0].msg,
        ServerMsg::Resumed {
            version: 1,
            last_cn: 0,
            token: "t3".into()
        }
    );
    assert_eq!(got[0].sn, None);
    let sns: Vec<_> = got[1..].iter().map(|f| f.sn.unwrap()).collect();
    assert_eq!(sns, [5, 6], "everything above lastSn, in order");
    let ServerMsg::MemberState { id, state, .. } = &frames(&out, b)[0].msg else {
        panic!()
    };
    assert_eq!((*id, *state), (ann, visavis_protocol::Presence::Online));
    // Numbering goes on where it left off.
    let out = w.text(b, r#"{"type":"chat","text":"m4"}"#);
    assert_eq!(frames(&out, a2)[0].sn, Some(7));
}

#[test]
fn client_messages_numbered_cn_are_processed_once_across_a_resume() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    let chat = |cn: u64| format!(r#"{{"cn":{cn},"type":"chat","text":"c{cn}"}}"#);
    assert_eq!(kinds(&w.text(a, &chat(1)), b), ["chat"]);
    assert_eq!(kinds(&w.text(a, &chat(2)), b), ["chat"]);
    w.close(a, Ending::Dropped);
    let a2 = w.open();
    let out = w.text(a2, &resume("t1", 0));
    assert_eq!(
        frames(&out, a2)[0].msg,
        ServerMsg::Resumed {
            version: 1,
            last_cn: 2,
            token: "t3".into()
        }
    );
    // The client re-sends what it is not sure about; only the new one goes through.
    assert!(w.text(a2, &chat(2)).is_empty());
    assert_eq!(kinds(&w.text(a2, &chat(3)), b), ["chat"]);
    let out = w.advance(Duration::from_secs(4));
    assert!(
        frames(&out, a2).contains(&ServerFrame {
            sn: None,
            msg: ServerMsg::Ping { ack: 3 }
        }),
        "pings acknowledge the last cn"
    );
}

#[test]
fn tokens_are_refused_when_unknown_out_of_sequence_expired_or_left() {
    let mut w = World::with(Config {
        heartbeat: Duration::from_secs(600),
        join_timeout: Duration::from_secs(600),
        ..Config::default()
    });
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    let c = w.open();
    assert_eq!(
        error_code(&w.text(c, &resume("nope", 0)), c),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        error_code(&w.text(c, &resume("t1", 99)), c),
        ErrorCode::InvalidToken
    );
    assert_eq!(
        error_code(&w.text(b, &resume("t1", 0)), b),
        ErrorCode::AlreadyJoined,
        "a joined connection cannot take another session"
    );

    w.close(a, Ending::Dropped);
    assert!(w.advance(Duration::from_secs(29)).is_empty());
    let out = w.advance(Duration::from_secs(1));
    assert_eq!(kinds(&out, b), ["member_left"], "grace over");
    assert_eq!(
        error_code(&w.text(c, &resume("t1", 0)), c),
        ErrorCode::InvalidToken
    );

    w.text(b, r#"{"type":"leave"}"#);
    w.close(b, Ending::Dropped);
    assert_eq!(
        error_code(&w.text(c, &resume("t2", 0)), c),
        ErrorCode::InvalidToken,
        "left the room"
    );
    assert_eq!(w.sig.counts().detached, 0);
}

#[test]
fn a_resume_takes_over_a_connection_whose_drop_was_not_noticed() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    let a2 = w.open();
    let out = w.text(a2, &resume("t1", 1));
    assert_eq!(closes(&out), [(a, close::TAKEN_OVER)]);
    assert!(
        frames(&out, b).is_empty(),
        "nobody saw it go, so nobody is told it is back"
    );
    // The old connection's late close changes nothing.
    assert!(w.close(a, Ending::Goodbye).is_empty());
    assert_eq!(kinds(&w.text(b, r#"{"type":"chat","text":"x"}"#), a2), ["chat"]);
}

#[test]
fn a_goodbye_ends_the_session_at_once_and_unjoined_connections_leave_nothing() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    assert_eq!(kinds(&w.close(a, Ending::Goodbye), b), ["member_left"]);
    let c = w.open();
    w.close(c, Ending::Dropped);
    assert_eq!(w.sig.sessions.len(), 1);
}

#[test]
fn heartbeats_ping_every_third_and_a_silent_connection_is_detached() {
    let mut w = World::with(Config {
        heartbeat: Duration::from_secs(9),
        ..Config::default()
    });
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    assert_eq!(w.sig.poll_timeout(), Some(w.now.mono + Duration::from_secs(3)));
    let out = w.advance(Duration::from_secs(3));
    assert_eq!((kinds(&out, a), kinds(&out, b)), (vec!["ping"], vec!["ping"]));
    // Bob keeps talking (a WebSocket ping frame counts), Ann goes silent.
    for _ in 0..2 {
        w.sig.handle_alive(w.now, b);
        let out = w.advance(Duration::from_secs(3));
        assert!(closes(&out).is_empty());
    }
    w.sig.handle_alive(w.now, b);
    let out = w.advance(Duration::from_secs(3));
    assert_eq!(closes(&out), [(a, close::AWAY)]);
    assert_eq!(kinds(&out, b), ["ping", "member_state"]);
    assert_eq!(w.sig.counts().detached, 1);
}

/// Ann and Bob in a room whose sessions keep at most 2,000 unacknowledged bytes, and a chat
/// message of about 330 bytes.
fn chatty_pair() -> (World, ConnId, ConnId, String) {
    let mut w = World::with(Config {
        log_limit: 2000,
        ..Config::default()
    });
    let (a, _) = w.joined("Ann");
    let (b, _) = w.joined("Bob");
    let chat = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(300));
    (w, a, b, chat)
}

/// Acknowledges everything `out` sent to `conn`.
fn ack_all(w: &mut World, out: &[Output], conn: ConnId) {
    if let Some(last) = frames(out, conn).last().and_then(|f| f.sn) {
        w.text(conn, &format!(r#"{{"type":"pong","ack":{last}}}"#));
    }
}

#[test]
fn acknowledged_messages_free_the_log() {
    let (mut w, a, b, chat) = chatty_pair();
    for _ in 0..30 {
        let out = w.text(b, &chat);
        assert!(closes(&out).is_empty());
        ack_all(&mut w, &out, a);
        ack_all(&mut w, &out, b);
    }
}

#[test]
fn a_session_too_far_behind_to_resume_is_ended() {
    let (mut w, a, b, chat) = chatty_pair();
    let mut ended = None;
    for i in 0..10 {
        // Bob acknowledges, Ann never does.
        let out = w.text(b, &chat);
        ack_all(&mut w, &out, b);
        if !closes(&out).is_empty() {
            assert_eq!(closes(&out), [(a, close::POLICY)]);
            assert_eq!(kinds(&out, b), ["chat", "member_left"]);
            ended = Some(i);
            break;
        }
    }
    assert!(ended.is_some_and(|i| i > 2), "ended after a few: {ended:?}");
    assert!(w.text(a, &chat).is_empty(), "the connection is forgotten");
}

#[test]
fn oversized_binary_and_too_fast_messages_get_errors_and_the_connection_lives() {
    let mut w = World::with(Config {
        max_message: 100,
        rate: 1.0,
        burst: 3.0,
        ..Config::default()
    });
    let a = w.open();
    let big = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(100));
    assert_eq!(error_code(&w.text(a, &big), a), ErrorCode::MessageTooLarge);
    // Binary frames are refused, and charged like any message.
    w.sig.handle_binary(w.now, a);
    assert_eq!(error_code(&w.drain(), a), ErrorCode::BadMessage);
    assert_eq!(error_code(&w.text(a, "{}"), a), ErrorCode::BadMessage);
    assert_eq!(error_code(&w.text(a, "{}"), a), ErrorCode::RateLimited);
    // Refusing a flood costs less than serving it: one error a second at most.
    assert!(w.text(a, "{}").is_empty());
    w.sig.handle_binary(w.now, a);
    assert!(w.drain().is_empty());
    w.now = w.now.after(Duration::from_secs(1));
    assert_eq!(kinds(&w.text(a, &join("Ann")), a), ["joined"]);
}

#[test]
fn descriptions_may_be_larger_than_other_messages_up_to_their_own_limit() {
    let mut w = World::with(Config {
        max_message: 200,
        max_description: 1000,
        ..Config::default()
    });
    let a = w.open();
    assert_eq!(kinds(&w.text(a, &join("Ann")), a), ["joined"]);
    let sdp = |n: usize| {
        format!(
            r#"{{"type":"sfu_description","callId":1,"description":{{"type":"offer","sdp":"v=0{}"}}}}"#,
            "x".repeat(n)
        )
    };
    // Over the message limit but a description within its own: it goes on to the room (which
    // has no such call).
    assert_ne!(error_code(&w.text(a, &sdp(500)), a), ErrorCode::MessageTooLarge);
    assert_eq!(error_code(&w.text(a, &sdp(1000)), a), ErrorCode::MessageTooLarge);
    let chat = format!(r#"{{"type":"chat","text":"{}"}}"#, "x".repeat(500));
    assert_eq!(error_code(&w.text(a, &chat), a), ErrorCode::MessageTooLarge);
}

#[test]
fn an_address_shares_one_message_budget_across_its_connections() {
    let mut w = World::with(Config {
        ip_rate: 1.0,
        ip_burst: 4.0,
        ..Config::default()
    });
    let (a, b) = (w.open(), w.open());
    let other = w.open_from([127, 0, 0, 2]);
    for conn in [a, b, a, b] {
        assert_eq!(error_code(&w.text(conn, "{}"), conn), ErrorCode::BadMessage);
    }
    // A fifth message from the same address is over, whichever connection it comes on, and
    // a fresh connection starts with nothing either.
    assert_eq!(error_code(&w.text(b, "{}"), b), ErrorCode::RateLimited);
    let c = w.open();
    assert_eq!(error_code(&w.text(c, "{}"), c), ErrorCode::RateLimited);
    // Another address is not affected.
    assert_eq!(error_code(&w.text(other, "{}"), other), ErrorCode::BadMessage);
}

#[test]
fn sessions_waiting_to_resume_count_against_their_address() {
    let mut w = World::with(Config {
        sessions_per_ip: 3,
        ..Config::default()
    });
    // Join and drop, as one attacker connection at a time can.
    for name in ["A", "B", "C"] {
        let (conn, _) = w.joined(name);
        w.close(conn, Ending::Dropped);
    }
    assert_eq!(w.sig.counts().detached, 3);
    assert_eq!(
        w.sig.handle_open(w.now, [127, 0, 0, 1].into()),
        Err(Refusal::SessionsPerIp(3))
    );
    assert_eq!(
        w.sig.admits([127, 0, 0, 1].into()),
        Err(Refusal::SessionsPerIp(3))
    );
    // Someone else is still let in; and once the grace ends the address is free again.
    w.open_from([127, 0, 0, 2]);
    w.advance(Duration::from_secs(30));
    assert!(w.sig.admits([127, 0, 0, 1].into()).is_ok());
}

#[test]
fn the_server_refuses_sessions_beyond_its_total() {
    let mut w = World::with(Config {
        max_sessions: 2,
        ..Config::default()
    });
    w.open();
    w.open_from([127, 0, 0, 2]);
    assert_eq!(
        w.sig.handle_open(w.now, [127, 0, 0, 3].into()),
        Err(Refusal::Sessions(2))
    );
}

#[test]
fn a_connection_that_does_not_join_in_time_is_closed() {
    let mut w = World::with(Config {
        join_timeout: Duration::from_secs(5),
        heartbeat: Duration::from_secs(600),
        ..Config::default()
    });
    let idle = w.open();
    let (joined, _) = w.joined("Ann");
    w.sig.handle_alive(w.now, idle); // WebSocket pings do not count as joining
    let out = w.advance(Duration::from_secs(5));
    assert_eq!(closes(&out), [(idle, close::POLICY)]);
    // After `leave` the clock starts again.
    w.text(joined, r#"{"type":"leave"}"#);
    let out = w.advance(Duration::from_secs(5));
    assert_eq!(closes(&out), [(joined, close::POLICY)]);
    assert_eq!(w.sig.counts().connections, 0);
}

#[test]
fn a_resume_token_works_once_and_the_next_one_comes_with_resumed() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    w.close(a, Ending::Dropped);
    let a2 = w.open();
    let out = w.text(a2, &resume("t1", 1));
    let ServerMsg::Resumed { token, .. } = &frames(&out, a2)[0].msg else {
        panic!("{out:?}")
    };
    assert_eq!(token, "t2");
    w.close(a2, Ending::Dropped);
    let thief = w.open();
    assert_eq!(
        error_code(&w.text(thief, &resume("t1", 1)), thief),
        ErrorCode::InvalidToken
    );
    let a3 = w.open();
    assert_eq!(kinds(&w.text(a3, &resume("t2", 1)), a3), ["resumed"]);
}

#[test]
fn shutdown_tells_every_connection_to_reconnect_and_closes_it() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    let c = w.open();
    w.sig.handle_shutdown(w.now);
    let out = w.drain();
    assert_eq!(
        (kinds(&out, a), kinds(&out, c)),
        (vec!["reconnect"], vec!["reconnect"])
    );
    assert_eq!(closes(&out), [(a, close::AWAY), (c, close::AWAY)]);
    assert_eq!(w.sig.counts().connections, 0);
}

#[test]
fn poll_timeout_is_the_soonest_of_heartbeats_grace_and_rings() {
    let mut w = World::with(Config {
        heartbeat: Duration::from_secs(30),
        grace: Duration::from_secs(5),
        ..Config::default()
    });
    let start = w.now.mono;
    let (a, _) = w.joined("Ann");
    let (_, bob) = w.joined("Bob");
    assert_eq!(w.sig.poll_timeout(), Some(start + Duration::from_secs(10)));
    w.text(a, &format!(r#"{{"type":"invite","to":{bob}}}"#));
    w.close(a, Ending::Dropped);
    assert_eq!(
        w.sig.poll_timeout(),
        Some(start + Duration::from_secs(5)),
        "grace"
    );
}

#[test]
fn one_address_cannot_fill_a_room() {
    let mut w = World::with(Config {
        seats_per_ip: 2,
        ..Config::default()
    });
    w.joined("A");
    let (b, _) = w.joined("B");
    w.close(b, Ending::Dropped); // still seated while it may resume
    let c = w.open();
    assert_eq!(error_code(&w.text(c, &join("C")), c), ErrorCode::TooManySeats);
    // Another room, or another address, is fine.
    let other = w.open_from([127, 0, 0, 2]);
    assert_eq!(kinds(&w.text(other, &join("D")), other), ["joined"]);
    let elsewhere = r#"{"type":"join","version":1,"room":"s","name":"C"}"#;
    assert_eq!(kinds(&w.text(c, elsewhere), c), ["joined"]);
}

#[test]
fn the_rest_api_acts_on_the_core_and_its_messages_reach_the_sessions() {
    let mut w = World::new();
    let (a, _) = w.joined("Ann");
    let (b, bob) = w.joined("Bob");
    // Bob drops and is waiting to resume when the API removes him.
    assert_eq!(kinds(&w.close(b, Ending::Dropped), a), ["member_state"]);
    let removed = w
        .sig
        .handle_api(w.now, |core, now| core.api_remove(now, "r", bob));
    assert_eq!(removed, Ok(()));
    let out = w.drain();
    assert_eq!(kinds(&out, a), ["member_left"]);
    // His session is out of the room: it resumes nothing, and holds no grace deadline.
    let c = w.open();
    assert_eq!(
        error_code(&w.text(c, &resume("t2", 0)), c),
        ErrorCode::InvalidToken
    );
    assert_eq!(w.sig.counts().detached, 0);
    let closed = w.sig.handle_api(w.now, |core, now| core.api_close(now, "r"));
    assert_eq!(closed, Ok(()));
    let out = w.drain();
    assert_eq!(kinds(&out, a), ["room_ended"]);
    assert!(w.sig.core().rooms().is_empty());
}

/// Two members in an active call with one chat message; returns (a, b, call id), their
/// tokens and the last `sn` each has seen.
fn call_and_chat(w: &mut World) -> [(ConnId, u64, String, u64); 2] {
    let mut people = Vec::new();
    for name in ["Ann", "Bob"] {
        let conn = w.open();
        let out = w.text(conn, &join(name));
        let f = &frames(&out, conn)[0];
        let ServerMsg::Joined { you, session, .. } = &f.msg else {
            panic!("{f:?}")
        };
        people.push((conn, you.id, session.as_ref().unwrap().token.clone()));
    }
    let (a, b) = (people[0].0, people[1].0);
    let out = w.text(a, &format!(r#"{{"type":"invite","to":{},"cn":1}}"#, people[1].1));
    let call = match &frames(&out, a)[0].msg {
        ServerMsg::Ringing { call_id, .. } => *call_id,
        other => panic!("{other:?}"),
    };
    w.text(b, &format!(r#"{{"type":"accept","callId":{call},"cn":1}}"#));
    w.text(a, r#"{"type":"chat","text":"hello","cn":2}"#);
    let last = |w: &World, conn: ConnId| {
        let s = w.sig.conns[&conn].session;
        w.sig.sessions[&s].last_sn()
    };
    let (la, lb) = (last(w, a), last(w, b));
    let [p, q] = [people.remove(0), people.remove(0)];
    [(p.0, p.1, p.2, la), (q.0, q.1, q.2, lb)]
}

/// A later process: a new monotonic clock, the wall clock `later` on.
fn restored(w: &World, snapshot: Snapshot, later: Duration) -> World {
    // Through the bytes, as the store keeps it.
    let bytes = serde_json::to_vec(&snapshot).unwrap();
    let snapshot: Snapshot = serde_json::from_slice(&bytes).unwrap();
    let now = Now {
        mono: Instant::now() + Duration::from_secs(1000),
        unix_ms: w.now.unix_ms + u64::try_from(later.as_millis()).unwrap(),
    };
    let core = Core::restore(RoomConfig::default(), snapshot.core.clone(), now);
    let mut sig = Signalling::restore(core, Config::default(), counter_tokens(), snapshot, now);
    sig.tokens = Box::new({
        let mut n = 100;
        move |_: &str| {
            n += 1;
            format!("t{n}")
        }
    });
    let mut w = World { sig, now };
    assert!(w.drain().is_empty(), "nothing to send before anyone is back");
    w
}

#[test]
fn a_graceful_restart_resumes_every_session_and_keeps_the_call_and_chat() {
    let mut w = World::new();
    let [(_, a_id, a_token, a_sn), (_, b_id, b_token, b_sn)] = call_and_chat(&mut w);
    w.sig.handle_shutdown(w.now);
    w.drain();
    let snapshot = w.sig.snapshot(w.now);
    assert!(snapshot.complete);
    let mut w = restored(&w, snapshot, Duration::from_secs(3));
    assert_eq!(w.sig.counts().detached, 2);

    // Ann comes back first: nothing missed, and she hears that Bob is reconnecting.
    let a = w.open();
    let out = w.text(a, &resume(&a_token, a_sn));
    let got = frames(&out, a);
    assert!(
        matches!(got[0].msg, ServerMsg::Resumed { last_cn: 2, .. }),
        "{got:?}"
    );
    assert_eq!(got[1].sn, Some(a_sn + 1), "numbering goes on without a gap");
    assert_eq!(
        got[1].msg,
        ServerMsg::MemberState {
            id: b_id,
            state: visavis_protocol::Presence::Reconnecting,
            reloaded: false
        }
    );
    assert_eq!(got.len(), 2);
    let b = w.open();
    let out = w.text(b, &resume(&b_token, b_sn));
    let kinds_b = kinds(&out, b);
    assert_eq!(
        kinds_b,
        ["resumed", "member_state", "member_state"],
        "reconnecting, online"
    );
    // The call is still active: hanging up ends it for both.
    let call = w.sig.core().snapshot(w.now).calls[0].id;
    let out = w.text(a, &format!(r#"{{"type":"hangup","callId":{call},"cn":3}}"#));
    for conn in [a, b] {
        assert!(
            frames(&out, conn).iter().any(|f| matches!(
                f.msg,
                ServerMsg::CallEnded {
                    reason: visavis_protocol::EndReason::Hangup,
                    ..
                }
            )),
            "{:?}",
            kinds(&out, conn)
        );
    }
    // The chat history is the room's: a newcomer reads it.
    let c = w.open();
    let out = w.text(c, &join("Cy"));
    let ServerMsg::Joined { chat, members, .. } = &frames(&out, c)[0].msg else {
        panic!()
    };
    assert_eq!(
        chat.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        ["hello"]
    );
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), [a_id, b_id]);
}

#[test]
fn after_a_crash_numbering_jumps_past_what_may_have_been_sent() {
    let mut w = World::new();
    let [(a, _, a_token, a_sn), (_, _, _, _)] = call_and_chat(&mut w);
    let snapshot = w.sig.snapshot(w.now);
    assert!(!snapshot.complete);
    // Sent after the snapshot, then the process died: Ann saw one more message.
    w.text(a, r#"{"type":"chat","text":"lost","cn":3}"#);
    let mut w = restored(&w, snapshot, Duration::from_millis(800));
    let a = w.open();
    let out = w.text(a, &resume(&a_token, a_sn + 1));
    let got = frames(&out, a);
    assert!(
        matches!(got[0].msg, ServerMsg::Resumed { last_cn: 2, .. }),
        "{got:?}"
    );
    assert!(
        got[1].sn.unwrap() > a_sn + 1 + 1000,
        "a message after the crash is never taken for a replay: {got:?}"
    );
    // Ann sends her last message again (cn 3 was not processed as far as this process knows).
    let out = w.text(a, r#"{"type":"chat","text":"lost","cn":3}"#);
    assert_eq!(kinds(&out, a), ["chat"]);
}

#[test]
fn grace_after_a_restart_is_whole_for_the_connected_and_what_was_left_for_the_dropped() {
    let mut w = World::new();
    let [(a, _, _, _), (_, _, b_token, b_sn)] = call_and_chat(&mut w);
    w.close(a, Ending::Dropped);
    w.advance(Duration::from_secs(20));
    let snapshot = w.sig.snapshot(w.now);
    // Down for 5 s: Ann (dropped 25 s ago) has 5 s left; Bob a whole 30 s.
    let mut w = restored(&w, snapshot, Duration::from_secs(5));
    let out = w.advance(Duration::from_secs(6));
    assert_eq!(w.sig.counts().detached, 1, "Ann's grace ran out");
    assert!(out.iter().all(|o| matches!(o, Output::Event(_))));
    let b = w.open();
    let out = w.text(b, &resume(&b_token, b_sn));
    let kinds_b = kinds(&out, b);
    assert!(kinds_b.starts_with(&["resumed"]), "{kinds_b:?}");
    assert!(
        kinds_b.contains(&"call_ended") && kinds_b.contains(&"member_left"),
        "{kinds_b:?}"
    );
}

/// A cluster: room "r" (a call and its chat) moves from a node that died to a node that
/// already serves a room of its own, whose session ids are the same numbers. The moved
/// sessions resume there with nothing lost, and the node's own room is untouched.
#[test]
fn another_node_adopts_one_room_and_its_sessions_resume_there() {
    let mut a = World::new();
    let [(_, ann, ann_token, ann_sn), (_, bob, bob_token, bob_sn)] = call_and_chat(&mut a);
    // Node B: its own room "other", with sessions 1 and 2 (the numbers the moved ones had);
    // member and call ids are random in a server, so apart here too.
    let next = std::sync::atomic::AtomicU64::new(1000);
    let ids = visavis_room::IdSource::new(move |_| next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let core = Core::new(RoomConfig {
        ids,
        ..RoomConfig::default()
    });
    let mut b = World {
        sig: Signalling::new(core, Config::default(), counter_tokens()),
        now: a.now,
    };
    b.sig.tokens = Box::new({
        let mut n = 500;
        move |room: &str| {
            n += 1;
            format!("b{n}-{room}")
        }
    });
    let mut own = Vec::new();
    for name in ["Cy", "Di"] {
        let conn = b.open();
        b.text(
            conn,
            &format!(r#"{{"type":"join","version":1,"room":"other","name":"{name}"}}"#),
        );
        own.push(conn);
    }
    // A crashed: B has its last periodic snapshot, split by room, through the bytes.
    let rooms = a.sig.snapshot(a.now).split();
    assert_eq!(rooms.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["r"]);
    let (_, room) = rooms.into_iter().next().unwrap();
    assert_eq!(room.sessions.len(), 2);
    let room: Snapshot = serde_json::from_slice(&serde_json::to_vec(&room).unwrap()).unwrap();
    b.sig.adopt(room, b.now);
    b.sig.assert_consistent();
    assert_eq!(b.sig.counts().detached, 2);
    assert_eq!(b.sig.counts().core.calls, 1, "the call moved along");
    assert!(b.drain().is_empty(), "nobody of B's own room hears of it");
    // Adopting again (a second node's late attempt, or a retry) changes nothing.
    let again = a.sig.snapshot(a.now).split().remove(0).1;
    b.sig.adopt(again, b.now);
    assert_eq!(b.sig.counts().detached, 2);

    let ann_conn = b.open();
    let out = b.text(ann_conn, &resume(&ann_token, ann_sn));
    let got = frames(&out, ann_conn);
    let ServerMsg::Resumed { token, .. } = &got[0].msg else {
        panic!("{got:?}")
    };
    assert!(token.ends_with("-r"), "the new token names its room: {token}");
    assert!(
        got[1].sn.unwrap() > ann_sn + CRASH_SN_GAP - 1,
        "a crash: numbering jumps"
    );
    assert_eq!(
        got[1].msg,
        ServerMsg::MemberState {
            id: bob,
            state: visavis_protocol::Presence::Reconnecting,
            reloaded: false
        }
    );
    let bob_conn = b.open();
    let out = b.text(bob_conn, &resume(&bob_token, bob_sn));
    assert_eq!(kinds(&out, bob_conn)[0], "resumed");
    // The call goes on: hanging up ends it for both, and B's own room hears nothing.
    let call = b
        .sig
        .core()
        .snapshot(b.now)
        .calls
        .iter()
        .find(|c| c.room == "r")
        .unwrap()
        .id;
    let out = b.text(
        ann_conn,
        &format!(r#"{{"type":"hangup","callId":{call},"cn":3}}"#),
    );
    for conn in [ann_conn, bob_conn] {
        assert!(
            kinds(&out, conn).contains(&"call_ended"),
            "{:?}",
            kinds(&out, conn)
        );
    }
    for conn in own {
        assert!(frames(&out, conn).is_empty());
    }
    let members = b.sig.core().snapshot(b.now).members;
    assert_eq!(members.iter().filter(|m| m.room == "r").count(), 2);
    assert!(members.iter().any(|m| m.id == ann));
}

#[test]
fn a_split_snapshot_holds_each_room_whole() {
    let mut w = World::new();
    call_and_chat(&mut w);
    let c = w.open();
    w.text(c, r#"{"type":"join","version":1,"room":"s","name":"Cy"}"#);
    let whole = w.sig.snapshot(w.now);
    let rooms = whole.split();
    assert_eq!(rooms.len(), 2);
    let (r, s) = (&rooms[0].1, &rooms[1].1);
    assert_eq!(
        (r.core.members.len(), r.sessions.len(), r.core.calls.len()),
        (2, 2, 1)
    );
    assert_eq!(
        (s.core.members.len(), s.sessions.len(), s.core.calls.len()),
        (1, 1, 0)
    );
    assert_eq!(r.core.rooms[0].chat.len(), 1);
    assert!(rooms.iter().all(|(_, snap)| !snap.complete));
}
