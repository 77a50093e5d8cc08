//! Signalling sessions over connections, sans-IO: the room core and every session in one state
//! machine that the server's WebSocket edge drives (see `visavis_sansio` for the drive loop).
//!
//! A **connection** is one WebSocket ([`ConnId`], numbered here). A **session** is a member's
//! presence across connections ([`SessionId`]): every connection starts a fresh session; once
//! it has joined a room it holds a resume token, and when its connection drops without a
//! goodbye it is *detached* until it resumes on a new connection (taking that connection over)
//! or its grace period ends. This file owns all of that:
//!
//! - inputs: [`Signalling::handle_open`], [`handle_text`](Signalling::handle_text),
//!   [`handle_binary`](Signalling::handle_binary), [`handle_alive`](Signalling::handle_alive),
//!   [`handle_close`](Signalling::handle_close), [`handle_timeout`](Signalling::handle_timeout),
//!   [`handle_shutdown`](Signalling::handle_shutdown), each with the current [`Now`];
//! - outputs: [`Output::Send`] (a finished text frame for a connection) and [`Output::Close`];
//! - per connection: message size and rate limits, heartbeats (`ping` every third of the
//!   timeout, closed when silent for the whole timeout);
//! - per session: sequence numbers (`sn`), the replay log bounded in bytes, acknowledgements,
//!   duplicate suppression of client messages (`cn`), token minting, resume and grace.
//!
//! Every server message is serialised once, with its `sn`, into the buffer that is sent and
//! kept for replay.

mod session;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use visavis_protocol::{
    decode_client, ClientMsg, ErrorCode, ServerMsg, SessionFields, SessionMsg, PROTOCOL_VERSION,
};
pub use visavis_room::SessionId;
use visavis_room::{Core, Counts};
use visavis_sansio::{Deadlines, Now, TokenBucket};

use session::Session;

/// One WebSocket connection, numbered by [`Signalling::handle_open`].
pub type ConnId = u64;

/// Close codes the server uses (docs/protocol.md, "Close codes").
pub mod close {
    /// Shutting down, or the heartbeat timed out.
    pub const AWAY: u16 = 1001;
    /// Too slow: the outbound queue overflowed, or too far behind to resume.
    pub const POLICY: u16 = 1008;
    /// A frame far over the message limit.
    pub const TOO_BIG: u16 = 1009;
    /// The session was resumed on another connection.
    pub const TAKEN_OVER: u16 = 4009;
}

/// Limits and timing of sessions and connections.
#[derive(Debug, Clone)]
pub struct Config {
    /// Silence after which a connection counts as dropped; `ping` goes out every third of it.
    pub heartbeat: Duration,
    /// How long a detached session may resume.
    pub grace: Duration,
    /// Unacknowledged bytes kept per session; a session further behind is ended.
    pub log_limit: usize,
    /// Largest text frame accepted (larger ones get `message_too_large`).
    pub max_message: usize,
    /// Messages per second per connection, and the burst allowed above it.
    pub rate: f64,
    pub burst: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            log_limit: 4 * 1024 * 1024,
            max_message: 64 * 1024,
            rate: 50.0,
            burst: 200.0,
        }
    }
}

/// Something for the edge to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this text frame (UTF-8 JSON) on the connection.
    Send { conn: ConnId, frame: Bytes },
    /// Close the connection with this code and reason; it is forgotten here.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
}

/// How a connection ended, as the edge saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame (the person left or closed the tab): the session ends at once.
    Goodbye,
    /// No close frame (a network drop, an error, the edge gave up on a slow reader), or a close
    /// code of 4000-4999 (the client will be back): a joined session may resume.
    Dropped,
}

/// Makes resume tokens: 128 random bits as 32 hex digits in the server, a counter in tests.
pub type TokenSource = Box<dyn FnMut() -> String + Send>;

#[derive(Debug)]
struct Conn {
    session: SessionId,
    /// Last frame of any kind from the client.
    heard: Instant,
    bucket: TokenBucket,
}

/// The room core and every session and connection of one server.
pub struct Signalling {
    core: Core,
    config: Config,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<SessionId, Session>,
    by_token: HashMap<String, SessionId>,
    /// When each detached session's grace period ends.
    grace: Deadlines<SessionId>,
    /// When each connection's next heartbeat check is due.
    beats: Deadlines<ConnId>,
    next_conn: ConnId,
    next_session: SessionId,
    tokens: TokenSource,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for Signalling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signalling")
            .field("conns", &self.conns.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// What the server holds, for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignallingCounts {
    pub connections: usize,
    /// Sessions waiting for a resume.
    pub detached: usize,
    pub core: Counts,
}

impl Signalling {
    pub fn new(core: Core, config: Config, tokens: TokenSource) -> Self {
        Self {
            core,
            config,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            by_token: HashMap::new(),
            grace: Deadlines::default(),
            beats: Deadlines::default(),
            next_conn: 1,
            next_session: 1,
            tokens,
            out: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A new connection, with a fresh session.
    pub fn handle_open(&mut self, now: Now) -> ConnId {
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = self.new_session(conn);
        self.conns.insert(
            conn,
            Conn {
                session,
                heard: now.mono,
                bucket: TokenBucket::new(self.config.rate, self.config.burst, now.mono),
            },
        );
        self.beats.insert(conn, now.mono + self.config.heartbeat / 3);
        conn
    }

    fn new_session(&mut self, conn: ConnId) -> SessionId {
        let session = self.next_session;
        self.next_session += 1;
        self.sessions.insert(session, Session::new(conn));
        session
    }

    /// A text frame from `conn`.
    pub fn handle_text(&mut self, now: Now, conn: ConnId, text: &str) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.heard = now.mono;
        let session = c.session;
        if !c.bucket.take(now.mono, 1.0) {
            let message = format!(
                "more than {} messages per second; this one was dropped",
                self.config.rate
            );
            return self.error(session, ErrorCode::RateLimited, message, None);
        }
        if text.len() > self.config.max_message {
            let message = format!(
                "message of {} bytes is over the limit of {} bytes",
                text.len(),
                self.config.max_message
            );
            return self.error(session, ErrorCode::MessageTooLarge, message, None);
        }
        let frame = match decode_client(text) {
            Ok(frame) => frame,
            Err(err) => return self.send(session, err.into_msg()),
        };
        match frame.msg {
            ClientMsg::Session(SessionMsg::Pong { ack }) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.ack(ack);
                }
            }
            ClientMsg::Session(SessionMsg::Resume {
                version,
                token,
                last_sn,
            }) => self.resume(conn, session, version, &token, last_sn),
            msg => {
                // Messages the client numbers are processed once, even when it sends them
                // again after a resume.
                let fresh = match (frame.cn, self.sessions.get_mut(&session)) {
                    (Some(cn), Some(s)) => s.accept_cn(cn),
                    _ => true,
                };
                if !fresh {
                    return;
                }
                match msg {
                    ClientMsg::Session(SessionMsg::Join { version, room, name }) => {
                        if self.check_version(session, version, "join") {
                            self.core.handle_join(session, &room, &name);
                        }
                    }
                    ClientMsg::Room(msg) => self.core.handle_message(now, session, msg),
                    ClientMsg::Session(_) => {}
                }
                self.deliver();
            }
        }
    }

    /// A binary frame from `conn`: not part of the protocol.
    pub fn handle_binary(&mut self, now: Now, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.heard = now.mono;
            let session = c.session;
            let message = "binary frames are not part of the protocol; send JSON text".into();
            self.error(session, ErrorCode::BadMessage, message, None);
        }
    }

    /// Any other sign of life from `conn` (a WebSocket ping or pong frame).
    pub fn handle_alive(&mut self, now: Now, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.heard = now.mono;
        }
    }

    /// `conn` ended. A goodbye ends its session; a drop detaches a joined session.
    pub fn handle_close(&mut self, now: Now, conn: ConnId, ending: Ending) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.beats.remove(conn);
        match ending {
            Ending::Goodbye => self.end_session(c.session),
            Ending::Dropped => self.detach(now, c.session),
        }
        self.deliver();
    }

    /// Time has passed: heartbeats, grace periods and the room core's timers.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(conn) = self.beats.pop_due(now.mono) {
            let Some(&Conn { session, heard, .. }) = self.conns.get(&conn) else {
                continue;
            };
            if now.mono.saturating_duration_since(heard) > self.config.heartbeat {
                // Gone quiet: as good as a dropped network.
                self.close(conn, close::AWAY, "heartbeat timeout");
                self.conns.remove(&conn);
                self.detach(now, session);
                continue;
            }
            let ack = self.sessions.get(&session).map_or(0, |s| s.last_cn);
            let frame = encode(&ServerMsg::Ping { ack }, None);
            self.out.push_back(Output::Send { conn, frame });
            self.beats.insert(conn, now.mono + self.config.heartbeat / 3);
        }
        while let Some(session) = self.grace.pop_due(now.mono) {
            self.end_session(session);
        }
        self.core.handle_timeout(now);
        self.deliver();
    }

    /// The server is stopping: every connection is told to reconnect and closed. Joined
    /// sessions are detached without telling anyone (everyone is leaving), the others end.
    pub fn handle_shutdown(&mut self, now: Now) {
        let reconnect = encode(
            &ServerMsg::Reconnect {
                reason: "the server is restarting".into(),
            },
            None,
        );
        let mut conns: Vec<ConnId> = self.conns.keys().copied().collect();
        conns.sort_unstable();
        for conn in conns {
            self.out.push_back(Output::Send {
                conn,
                frame: reconnect.clone(),
            });
            self.close(conn, close::AWAY, "server shutting down");
            if let Some(c) = self.conns.remove(&conn) {
                self.beats.remove(conn);
                match self.sessions.get_mut(&c.session) {
                    Some(s) if s.token.is_some() => {
                        s.conn = None;
                        self.grace.insert(c.session, now.mono + self.config.grace);
                    }
                    _ => {
                        self.sessions.remove(&c.session);
                    }
                }
            }
        }
    }

    /// The next thing for the edge to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Signalling::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.beats.next(), self.grace.next(), self.core.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn counts(&self) -> SignallingCounts {
        SignallingCounts {
            connections: self.conns.len(),
            detached: self.grace.len(),
            core: self.core.counts(),
        }
    }

    fn check_version(&mut self, session: SessionId, version: u32, request: &str) -> bool {
        if version == PROTOCOL_VERSION {
            return true;
        }
        let message =
            format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}");
        self.error(session, ErrorCode::UnsupportedVersion, message, Some(request));
        false
    }

    fn resume(&mut self, conn: ConnId, current: SessionId, version: u32, token: &str, last_sn: u64) {
        if !self.check_version(current, version, "resume") {
            return;
        }
        if self.sessions.get(&current).is_some_and(|s| s.token.is_some()) {
            let message = "this connection already has a session".into();
            return self.error(current, ErrorCode::AlreadyJoined, message, Some("resume"));
        }
        let Some((&session, s)) = self
            .by_token
            .get(token)
            .and_then(|id| self.sessions.get_key_value(id))
        else {
            let message = "unknown or expired session token; join again".into();
            return self.error(current, ErrorCode::InvalidToken, message, Some("resume"));
        };
        if last_sn > s.last_sn() {
            let message = "that sequence number was never sent; join again".into();
            return self.error(current, ErrorCode::InvalidToken, message, Some("resume"));
        }
        // The connection's own fresh session had not joined: nothing else knows it.
        self.sessions.remove(&current);
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.ack(last_sn);
        // A connection still holding the session (its drop not noticed yet) gives way.
        let previous = s.conn.replace(conn);
        let last_cn = s.last_cn;
        let replay: Vec<Bytes> = s.after(last_sn).cloned().collect();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = session;
        }
        match previous {
            Some(old) => {
                self.close(old, close::TAKEN_OVER, "resumed on another connection");
                self.conns.remove(&old);
                self.beats.remove(old);
            }
            None => {
                self.grace.remove(session);
            }
        }
        let resumed = ServerMsg::Resumed {
            version: PROTOCOL_VERSION,
            last_cn,
        };
        self.out.push_back(Output::Send {
            conn,
            frame: encode(&resumed, None),
        });
        for frame in replay {
            self.out.push_back(Output::Send { conn, frame });
        }
        if previous.is_none() {
            self.core.handle_reattach(session);
        }
        self.deliver();
    }

    /// Hands every output of the room core to its session.
    fn deliver(&mut self) {
        while let Some(out) = self.core.poll_output() {
            let mut msg = out.msg;
            match &mut msg {
                ServerMsg::Joined { session, .. } => {
                    *session = Some(self.issue_token(out.to));
                }
                ServerMsg::Left { .. } => self.revoke_token(out.to),
                _ => {}
            }
            self.send(out.to, msg);
        }
    }

    fn issue_token(&mut self, session: SessionId) -> SessionFields {
        let token = (self.tokens)();
        if let Some(s) = self.sessions.get_mut(&session) {
            if let Some(old) = s.token.replace(token.clone()) {
                self.by_token.remove(&old);
            }
            self.by_token.insert(token.clone(), session);
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SessionFields {
            token,
            heartbeat_ms: ms(self.config.heartbeat),
            resume_grace_ms: ms(self.config.grace),
        }
    }

    /// The session left its room: its token resumes nothing, and nothing is kept for replay.
    fn revoke_token(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if let Some(token) = s.token.take() {
                self.by_token.remove(&token);
            }
            s.clear_log();
        }
    }

    /// Numbers `msg` for `session`, keeps it for replay if the session can resume, and sends it
    /// if the session is attached.
    fn send(&mut self, session: SessionId, msg: ServerMsg) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        let sn = s.number();
        let frame = encode(&msg, Some(sn));
        // `joined` itself is never replayed: a client can only resume with the token it
        // carried, so it has it.
        let keep = s.token.is_some() && !matches!(msg, ServerMsg::Joined { .. });
        if keep && !s.log(sn, frame.clone(), self.config.log_limit) {
            if let Some(conn) = s.conn {
                self.close(conn, close::POLICY, "too far behind");
                self.conns.remove(&conn);
                self.beats.remove(conn);
            }
            self.end_session(session);
            return;
        }
        if let Some(conn) = s.conn {
            self.out.push_back(Output::Send { conn, frame });
        }
    }

    fn error(&mut self, session: SessionId, code: ErrorCode, message: String, request: Option<&str>) {
        self.send(session, ServerMsg::error(code, message, request));
    }

    fn close(&mut self, conn: ConnId, code: u16, reason: &'static str) {
        self.out.push_back(Output::Close { conn, code, reason });
    }

    /// A joined session waits for a resume; any other is over.
    fn detach(&mut self, now: Now, session: SessionId) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.token.is_none() {
            self.sessions.remove(&session);
            return;
        }
        s.conn = None;
        self.grace.insert(session, now.mono + self.config.grace);
        self.core.handle_detach(session);
    }

    /// The session is over: it leaves its room (ending its call) and is forgotten.
    fn end_session(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            if let Some(token) = s.token {
                self.by_token.remove(&token);
            }
        }
        self.grace.remove(session);
        self.core.handle_disconnect(session);
    }

    /// Checks that the tables agree with each other and with the room core; panics with a
    /// description if not. For tests and fuzzing; never called on the serving path.
    pub fn assert_consistent(&self) {
        self.core.assert_consistent();
        assert_eq!(self.beats.len(), self.conns.len(), "one heartbeat per connection");
        for (conn, c) in &self.conns {
            let s = &self.sessions[&c.session];
            assert_eq!(s.conn, Some(*conn), "connection and session point at each other");
        }
        for (id, s) in &self.sessions {
            s.assert_consistent();
            match s.conn {
                Some(conn) => {
                    assert_eq!(self.conns[&conn].session, *id, "session's connection");
                    assert!(self.grace.get(*id).is_none(), "attached session in grace");
                }
                None => assert!(
                    self.grace.get(*id).is_some() && s.token.is_some(),
                    "a detached session is joined and has a grace deadline"
                ),
            }
            assert_eq!(
                s.token.is_some(),
                self.core.member_of(*id).is_some(),
                "joined here iff a member in the core"
            );
            if let Some(token) = &s.token {
                assert_eq!(self.by_token.get(token), Some(id), "token index");
            }
        }
        assert_eq!(
            self.by_token.len(),
            self.sessions.values().filter(|s| s.token.is_some()).count()
        );
        assert!(self.grace.len() <= self.sessions.len());
    }
}

/// `msg` as the text frame that is sent (and kept for replay).
fn encode(msg: &ServerMsg, sn: Option<u64>) -> Bytes {
    let mut buf = Vec::with_capacity(msg.size_hint());
    msg.encode(sn, &mut buf);
    // Exactly sized (usually a shrink in place): `Bytes` then needs no separate header, and
    // the replay log holds no slack.
    Bytes::from(buf.into_boxed_slice())
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
