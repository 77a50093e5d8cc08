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
//!   timeout, closed when silent for the whole timeout), a deadline to join;
//! - per source address ([`sources`]): sessions, connected or waiting to resume, one message
//!   budget shared by all its connections, and seats in a room;
//! - per session: sequence numbers (`sn`), the replay log bounded in bytes, acknowledgements,
//!   duplicate suppression of client messages (`cn`), token minting (a fresh token with every
//!   resume), resume and grace; replay-log bytes in total.
//!
//! Every server message is serialised once, with its `sn`, into the buffer that is sent and
//! kept for replay.

mod session;
mod snapshot;
mod sources;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use visavis_protocol::{
    decode_client, ClientMsg, ErrorCode, RoomMsg, ServerMsg, SessionFields, SessionMsg, PROTOCOL_VERSION,
};
pub use visavis_room::SessionId;
use visavis_room::{Core, Counts};
pub use visavis_room::{Event, MemberEvent};
use visavis_sansio::{Deadlines, Now, TokenBucket};

use session::Session;
pub use snapshot::{Frame, SessionSnapshot, Snapshot, CRASH_SN_GAP};
use sources::Sources;

/// One WebSocket connection, numbered by [`Signalling::handle_open`].
pub type ConnId = u64;

/// Close codes the server uses (docs/protocol.md, "Close codes").
pub mod close {
    /// Shutting down, or the heartbeat timed out.
    pub const AWAY: u16 = 1001;
    /// Too slow (the outbound queue overflowed, or too far behind to resume), or did not
    /// join in time.
    pub const POLICY: u16 = 1008;
    /// A frame far over the message limit.
    pub const TOO_BIG: u16 = 1009;
    /// In a cluster: the room's node went away or the room is moving; resume (through the
    /// load balancer) on the node that takes it.
    pub const RESTART: u16 = 1012;
    /// The server holds as many sessions as it may; try again later.
    pub const TRY_LATER: u16 = 1013;
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
    /// Unacknowledged bytes kept by all sessions together; a session whose message would go
    /// over it is ended, as if it were too far behind.
    pub log_total: usize,
    /// Largest text frame accepted (larger ones get `message_too_large`), but for
    /// descriptions.
    pub max_message: usize,
    /// Largest `description` or `sfu_description` accepted: an SFU call's SDP grows with the
    /// room, by about a kilobyte per forwarded track.
    pub max_description: usize,
    /// Messages per second per connection, and the burst allowed above it.
    pub rate: f64,
    pub burst: f64,
    /// Messages per second per source address, all its connections together, and the burst.
    pub ip_rate: f64,
    pub ip_burst: f64,
    /// Sessions (connected, or detached and waiting to resume) per source address.
    pub sessions_per_ip: usize,
    /// Sessions in all.
    pub max_sessions: usize,
    /// Members one source address may have in one room, so that one address cannot fill a
    /// room (its members stay seated while they wait to resume).
    pub seats_per_ip: usize,
    /// How long a connection may stay without joining a room (or resuming).
    pub join_timeout: Duration,
}

impl Config {
    /// Frames over this close the connection (those between the limits and this get
    /// `message_too_large` and the connection lives).
    pub fn frame_cap(&self) -> usize {
        frame_cap(self.max_message, self.max_description)
    }
}

/// The frame size over which a connection is closed: 16 times the message limit, and never
/// less than a description may be.
pub fn frame_cap(max_message: usize, max_description: usize) -> usize {
    max_message.saturating_mul(16).max(max_description)
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            log_limit: 1024 * 1024,
            log_total: 512 * 1024 * 1024,
            max_message: 64 * 1024,
            max_description: 512 * 1024,
            rate: 50.0,
            burst: 200.0,
            ip_rate: 400.0,
            ip_burst: 1000.0,
            sessions_per_ip: 64,
            max_sessions: 16_384,
            seats_per_ip: 4,
            join_timeout: Duration::from_secs(10),
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
    /// Something happened in a room (for the TURN credentials the edge ties to members, the
    /// metrics and the webhooks).
    Event(Event),
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

/// Makes resume tokens for a session in the given room: 128 random bits as 32 hex digits in
/// the server (and, in a cluster, the room's name after them, so that the node a `resume`
/// reaches knows where the session lives), a counter in tests.
pub type TokenSource = Box<dyn FnMut(&str) -> String + Send>;

/// Why a new connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address holds its share of sessions (connected or waiting to resume).
    SessionsPerIp(usize),
    /// The server holds as many sessions as it may.
    Sessions(usize),
}

impl Refusal {
    /// A stable code, as in the protocol's HTTP errors.
    pub fn code(self) -> &'static str {
        match self {
            Self::SessionsPerIp(_) => "too_many_sessions",
            Self::Sessions(_) => "server_full",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SessionsPerIp(n) => write!(
                f,
                "this address holds {n} sessions (open or reconnecting), the most one address may"
            ),
            Self::Sessions(n) => write!(
                f,
                "the server holds {n} sessions, the most it may; try again later"
            ),
        }
    }
}

#[derive(Debug)]
struct Conn {
    session: SessionId,
    ip: IpAddr,
    /// Last frame of any kind from the client.
    heard: Instant,
    bucket: TokenBucket,
    /// When this connection was last told it is over its rate: once a second at most, so
    /// that refusing a flood costs less than serving it.
    limited_at: Option<Instant>,
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
    /// When each connection whose session has not joined must have joined.
    joins: Deadlines<ConnId>,
    sources: Sources,
    /// Bytes in every session's replay log.
    log_total: usize,
    totals: SignallingTotals,
    next_conn: ConnId,
    next_session: SessionId,
    tokens: TokenSource,
    out: VecDeque<Output>,
    /// `handle_shutdown` ran: a snapshot taken now is complete.
    stopped: bool,
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

/// What the session layer has done since it started, for metrics.
#[derive(Debug, Clone, Default)]
pub struct SignallingTotals {
    /// `error` messages sent, by code.
    pub errors: HashMap<ErrorCode, u64>,
    /// Sessions taken back with `resume`.
    pub resumes: u64,
}

impl Signalling {
    pub fn new(core: Core, config: Config, tokens: TokenSource) -> Self {
        Self {
            core,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            by_token: HashMap::new(),
            grace: Deadlines::default(),
            beats: Deadlines::default(),
            joins: Deadlines::default(),
            sources: Sources::new(config.sessions_per_ip, config.ip_rate, config.ip_burst),
            log_total: 0,
            totals: SignallingTotals::default(),
            next_conn: 1,
            next_session: 1,
            tokens,
            out: VecDeque::new(),
            stopped: false,
            config,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether a connection from `ip` would be taken now (the edge asks before it upgrades).
    pub fn admits(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.sessions.len() >= self.config.max_sessions {
            return Err(Refusal::Sessions(self.config.max_sessions));
        }
        if !self.sources.admits(ip) {
            return Err(Refusal::SessionsPerIp(self.config.sessions_per_ip));
        }
        Ok(())
    }

    /// A new connection from `ip`, with a fresh session.
    pub fn handle_open(&mut self, now: Now, ip: IpAddr) -> Result<ConnId, Refusal> {
        self.admits(ip)?;
        let conn = self.next_conn;
        self.next_conn += 1;
        let session = self.new_session(now, conn, ip);
        self.conns.insert(
            conn,
            Conn {
                session,
                ip,
                heard: now.mono,
                bucket: TokenBucket::new(self.config.rate, self.config.burst, now.mono),
                limited_at: None,
            },
        );
        self.beats.insert(conn, now.mono + self.config.heartbeat / 3);
        self.joins.insert(conn, now.mono + self.config.join_timeout);
        Ok(conn)
    }

    fn new_session(&mut self, now: Now, conn: ConnId, ip: IpAddr) -> SessionId {
        let session = self.next_session;
        self.next_session += 1;
        self.sessions.insert(session, Session::new(conn, ip));
        self.sources.add_session(now.mono, ip);
        session
    }

    /// Removes a session from every table but the room core's.
    fn forget_session(&mut self, now: Now, session: SessionId) -> Option<Session> {
        let s = self.sessions.remove(&session)?;
        if let Some(token) = &s.token {
            self.by_token.remove(token);
        }
        self.grace.remove(session);
        self.sources.remove_session(now.mono, s.ip);
        self.log_total -= s.log_bytes();
        Some(s)
    }

    fn too_large(&mut self, now: Now, session: SessionId, len: usize) {
        let message = format!(
            "message of {len} bytes is over the limit of {} bytes ({} for a description)",
            self.config.max_message, self.config.max_description
        );
        self.error(now, session, ErrorCode::MessageTooLarge, message, None);
    }

    /// A text frame from `conn`.
    pub fn handle_text(&mut self, now: Now, conn: ConnId, text: &str) {
        let Some(session) = self.conns.get(&conn).map(|c| c.session) else {
            return;
        };
        if !self.charge(now, conn) {
            return;
        }
        // Over the message limit, only a description (within its own limit) goes on.
        let oversized = text.len() > self.config.max_message;
        if oversized && text.len() > self.config.max_description {
            return self.too_large(now, session, text.len());
        }
        let frame = match decode_client(text) {
            Ok(frame) => frame,
            Err(_) if oversized => return self.too_large(now, session, text.len()),
            Err(err) => return self.send(now, session, err.into_msg()),
        };
        let description = matches!(
            frame.msg,
            ClientMsg::Room(RoomMsg::Description { .. } | RoomMsg::SfuDescription { .. })
        );
        if oversized && !description {
            return self.too_large(now, session, text.len());
        }
        match frame.msg {
            ClientMsg::Session(SessionMsg::Pong { ack }) => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    self.log_total -= s.ack(ack);
                }
            }
            ClientMsg::Session(SessionMsg::Resume {
                version,
                token,
                last_sn,
                reloaded,
            }) => self.resume(now, conn, session, version, &token, last_sn, reloaded),
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
                    ClientMsg::Session(SessionMsg::Join {
                        version,
                        room,
                        name,
                        host_key,
                        access_token,
                    }) => {
                        if self.check_version(now, session, version, "join")
                            && self.has_seat(now, session, &room)
                        {
                            let from = self.sessions[&session].ip;
                            let entry = visavis_room::Entry {
                                room: &room,
                                name: &name,
                                host_key: host_key.as_deref(),
                                access_token: access_token.as_deref(),
                                from,
                            };
                            self.core.handle_join(now, session, entry);
                        }
                    }
                    ClientMsg::Session(SessionMsg::Create { version, name }) => {
                        if self.check_version(now, session, version, "create") {
                            let from = self.sessions[&session].ip;
                            self.core.handle_create(now, session, &name, from);
                        }
                    }
                    ClientMsg::Room(msg) => self.core.handle_message(now, session, msg),
                    ClientMsg::Session(_) => {}
                }
                self.deliver(now);
            }
        }
    }

    /// A binary frame from `conn`: not part of the protocol, and charged like any message.
    pub fn handle_binary(&mut self, now: Now, conn: ConnId) {
        let Some(session) = self.conns.get(&conn).map(|c| c.session) else {
            return;
        };
        if self.charge(now, conn) {
            let message = "binary frames are not part of the protocol; send JSON text".into();
            self.error(now, session, ErrorCode::BadMessage, message, None);
        }
    }

    /// Takes a message from `conn`'s budget and its address's; false (after telling the
    /// client, at most once a second) if either is spent.
    fn charge(&mut self, now: Now, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        c.heard = now.mono;
        // Both are charged, so a connection's flood also spends its address's budget.
        let own = c.bucket.take(now.mono, 1.0);
        let shared = self.sources.take(now.mono, c.ip);
        if own && shared {
            return true;
        }
        if c.limited_at
            .is_some_and(|at| now.mono.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return false;
        }
        c.limited_at = Some(now.mono);
        let session = c.session;
        let message = if own {
            format!(
                "more than {} messages per second from your address; dropped",
                self.config.ip_rate
            )
        } else {
            format!("more than {} messages per second; dropped", self.config.rate)
        };
        self.error(now, session, ErrorCode::RateLimited, message, None);
        false
    }

    /// Any other sign of life from `conn` (a WebSocket ping or pong frame).
    pub fn handle_alive(&mut self, now: Now, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.heard = now.mono;
        }
    }

    /// `conn` ended. A goodbye ends its session; a drop detaches a joined session.
    pub fn handle_close(&mut self, now: Now, conn: ConnId, ending: Ending) {
        let Some(c) = self.forget_conn(conn) else {
            return;
        };
        match ending {
            Ending::Goodbye => self.end_session(now, c.session),
            Ending::Dropped => self.detach(now, c.session),
        }
        self.deliver(now);
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
                self.forget_conn(conn);
                self.detach(now, session);
                continue;
            }
            let ack = self.sessions.get(&session).map_or(0, |s| s.last_cn);
            let frame = encode(&ServerMsg::Ping { ack }, None);
            self.out.push_back(Output::Send { conn, frame });
            self.beats.insert(conn, now.mono + self.config.heartbeat / 3);
        }
        while let Some(conn) = self.joins.pop_due(now.mono) {
            // Neither joined nor resumed in time: it holds a connection for nothing.
            self.close(conn, close::POLICY, "join timeout");
            if let Some(c) = self.forget_conn(conn) {
                self.forget_session(now, c.session);
            }
        }
        while let Some(session) = self.grace.pop_due(now.mono) {
            self.end_session(now, session);
        }
        self.sources.handle_timeout(now.mono);
        self.core.handle_timeout(now);
        self.deliver(now);
    }

    /// Removes a connection from every table; returns it.
    fn forget_conn(&mut self, conn: ConnId) -> Option<Conn> {
        self.beats.remove(conn);
        self.joins.remove(conn);
        self.conns.remove(&conn)
    }

    /// The server is stopping: every connection is told to reconnect and closed. Joined
    /// sessions are detached without telling anyone (everyone is leaving), the others end.
    /// In a cluster: `room` is now another node's (this node's lease was refused). Each of its
    /// connections here is told to `reconnect` and closed with [`close::RESTART`], so its
    /// client resumes on that node; what stays here detaches and runs out with its grace
    /// (the lease fences off its writes to the shared store).
    pub fn handle_evict(&mut self, now: Now, room: &str) {
        let reconnect = encode(
            &ServerMsg::Reconnect {
                reason: "the room moved to another node".into(),
            },
            None,
        );
        let sessions: Vec<SessionId> = self.core.sessions_in(room).collect();
        for session in sessions {
            let Some(conn) = self.sessions.get(&session).and_then(|s| s.conn) else {
                continue;
            };
            self.out.push_back(Output::Send {
                conn,
                frame: reconnect.clone(),
            });
            self.close(conn, close::RESTART, "room moved to another node");
            self.forget_conn(conn);
            self.detach(now, session);
        }
        self.deliver(now);
    }

    pub fn handle_shutdown(&mut self, now: Now) {
        self.stopped = true;
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
            if let Some(c) = self.forget_conn(conn) {
                match self.sessions.get_mut(&c.session) {
                    Some(s) if s.token.is_some() => {
                        s.conn = None;
                        s.stopped = true;
                        self.grace.insert(c.session, now.mono + self.config.grace);
                    }
                    _ => {
                        self.forget_session(now, c.session);
                    }
                }
            }
        }
    }

    /// A request of the REST API: `f` acts on the room core (its `api_*` methods) at `now`, and
    /// what the core sends is then delivered as after a client's message (a removed member's
    /// session leaves the room, and so on).
    pub fn handle_api<R>(&mut self, now: Now, f: impl FnOnce(&mut Core, Now) -> R) -> R {
        let result = f(&mut self.core, now);
        self.deliver(now);
        result
    }

    /// The room core, to read (the REST API's listings).
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The next thing for the edge to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Signalling::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.beats.next(),
            self.joins.next(),
            self.grace.next(),
            self.sources.poll_timeout(),
            self.core.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What the session layer and the room core have done since they started.
    pub fn totals(&self) -> (&SignallingTotals, &visavis_room::Totals) {
        (&self.totals, self.core.totals())
    }

    pub fn counts(&self) -> SignallingCounts {
        SignallingCounts {
            connections: self.conns.len(),
            detached: self.grace.len(),
            core: self.core.counts(),
        }
    }

    /// Whether `session`'s address may take one more seat in `room`.
    fn has_seat(&mut self, now: Now, session: SessionId, room: &str) -> bool {
        let Some(ip) = self.sessions.get(&session).map(|s| s.ip) else {
            return false;
        };
        let seated = self
            .core
            .sessions_in(room)
            .filter(|s| self.sessions.get(s).is_some_and(|s| s.ip == ip))
            .count();
        if seated < self.config.seats_per_ip {
            return true;
        }
        let message =
            format!("your address already holds {seated} seats in this room, the most one address may");
        self.error(now, session, ErrorCode::TooManySeats, message, Some("join"));
        false
    }

    fn check_version(&mut self, now: Now, session: SessionId, version: u32, request: &str) -> bool {
        if version == PROTOCOL_VERSION {
            return true;
        }
        let message =
            format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}");
        self.error(
            now,
            session,
            ErrorCode::UnsupportedVersion,
            message,
            Some(request),
        );
        false
    }

    /// Takes a session back on a new connection: replays what it missed, or, for a reloaded
    /// page (`reloaded`), which holds nothing of the session but its token, drops the replay
    /// and has the room core show it its room afresh.
    #[allow(clippy::too_many_arguments)]
    fn resume(
        &mut self,
        now: Now,
        conn: ConnId,
        current: SessionId,
        version: u32,
        token: &str,
        last_sn: u64,
        reloaded: bool,
    ) {
        if !self.check_version(now, current, version, "resume") {
            return;
        }
        if self.sessions.get(&current).is_some_and(|s| s.token.is_some()) {
            let message = "this connection already has a session".into();
            return self.error(now, current, ErrorCode::AlreadyJoined, message, Some("resume"));
        }
        let Some((&session, s)) = self
            .by_token
            .get(token)
            .and_then(|id| self.sessions.get_key_value(id))
        else {
            let message = "unknown or expired session token; join again".into();
            return self.error(now, current, ErrorCode::InvalidToken, message, Some("resume"));
        };
        if last_sn > s.last_sn() {
            let message = "that sequence number was never sent; join again".into();
            return self.error(now, current, ErrorCode::InvalidToken, message, Some("resume"));
        }
        let old_ip = s.ip;
        let Some(ip) = self.conns.get(&conn).map(|c| c.ip) else {
            return;
        };
        // The connection's own fresh session had not joined: nothing else knows it.
        self.forget_session(now, current);
        // The session now counts against the address it came back from.
        self.sources.remove_session(now.mono, old_ip);
        self.sources.add_session(now.mono, ip);
        // Tokens are single-use: whoever resumes gets the only one that works from now on.
        let room = self.core.room_of(session).unwrap_or_default().to_owned();
        let fresh = (self.tokens)(&room);
        self.by_token.remove(token);
        self.by_token.insert(fresh.clone(), session);
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        s.ip = ip;
        s.token = Some(fresh.clone());
        s.stopped = false;
        // A reloaded page starts from a fresh `joined`: nothing before it is worth replaying.
        let acked = if reloaded { s.last_sn() } else { last_sn };
        self.log_total -= s.ack(acked);
        // A connection still holding the session (its drop not noticed yet) gives way.
        let previous = s.conn.replace(conn);
        let last_cn = s.last_cn;
        let replay: Vec<Bytes> = s.after(acked).cloned().collect();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = session;
        }
        self.joins.remove(conn);
        match previous {
            Some(old) => {
                self.close(old, close::TAKEN_OVER, "resumed on another connection");
                self.forget_conn(old);
            }
            None => {
                self.grace.remove(session);
            }
        }
        self.totals.resumes += 1;
        let resumed = ServerMsg::Resumed {
            version: PROTOCOL_VERSION,
            last_cn,
            token: fresh,
        };
        self.out.push_back(Output::Send {
            conn,
            frame: encode(&resumed, None),
        });
        for frame in replay {
            self.out.push_back(Output::Send { conn, frame });
        }
        if reloaded {
            self.core.handle_reload(now, session);
        } else if previous.is_none() {
            self.core.handle_reattach(session);
        }
        self.deliver(now);
    }

    /// Hands every output of the room core to its session.
    fn deliver(&mut self, now: Now) {
        while let Some(out) = self.core.poll_output() {
            let mut msg = out.msg;
            match &mut msg {
                ServerMsg::Joined { session, .. } | ServerMsg::Waiting { session, .. } => {
                    *session = Some(self.issue_token(out.to));
                }
                // Out of the room: the session may join again, but not resume this one.
                ServerMsg::Left { .. }
                | ServerMsg::Denied { .. }
                | ServerMsg::Removed { .. }
                | ServerMsg::RoomEnded { .. } => self.revoke_token(now, out.to),
                _ => {}
            }
            self.send(now, out.to, msg);
        }
        while let Some(event) = self.core.poll_event() {
            self.out.push_back(Output::Event(event));
        }
    }

    fn issue_token(&mut self, session: SessionId) -> SessionFields {
        let room = self.core.room_of(session).unwrap_or_default().to_owned();
        let token = (self.tokens)(&room);
        if let Some(s) = self.sessions.get_mut(&session) {
            if let Some(old) = s.token.replace(token.clone()) {
                self.by_token.remove(&old);
            }
            self.by_token.insert(token.clone(), session);
            if let Some(conn) = s.conn {
                self.joins.remove(conn);
            }
        }
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SessionFields {
            token,
            heartbeat_ms: ms(self.config.heartbeat),
            resume_grace_ms: ms(self.config.grace),
        }
    }

    /// The session left its room: its token resumes nothing, nothing is kept for replay, and
    /// its connection must join again in time. A detached session (a member removed while it
    /// was reconnecting) is over: nothing could take it back.
    fn revoke_token(&mut self, now: Now, session: SessionId) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if let Some(token) = s.token.take() {
                self.by_token.remove(&token);
            }
            self.log_total -= s.clear_log();
            match s.conn {
                Some(conn) => self.joins.insert(conn, now.mono + self.config.join_timeout),
                None => {
                    self.forget_session(now, session);
                }
            }
        }
    }

    /// Numbers `msg` for `session`, keeps it for replay if the session can resume, and sends it
    /// if the session is attached.
    fn send(&mut self, now: Now, session: SessionId, msg: ServerMsg) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if let ServerMsg::Error { code, .. } = &msg {
            *self.totals.errors.entry(*code).or_default() += 1;
        }
        let sn = s.number();
        let frame = encode(&msg, Some(sn));
        // `joined` and `waiting` are never replayed: a client can only resume with the token
        // they carried, so it has them.
        let keep = s.token.is_some() && !matches!(msg, ServerMsg::Joined { .. } | ServerMsg::Waiting { .. });
        if keep {
            let fits = self.log_total + frame.len() <= self.config.log_total
                && s.log(sn, frame.clone(), self.config.log_limit);
            if !fits {
                if let Some(conn) = s.conn {
                    self.close(conn, close::POLICY, "too far behind");
                    self.forget_conn(conn);
                }
                self.end_session(now, session);
                return;
            }
            self.log_total += frame.len();
        }
        if let Some(conn) = s.conn {
            self.out.push_back(Output::Send { conn, frame });
        }
    }

    fn error(
        &mut self,
        now: Now,
        session: SessionId,
        code: ErrorCode,
        message: String,
        request: Option<&str>,
    ) {
        self.send(now, session, ServerMsg::error(code, message, request));
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
            self.forget_session(now, session);
            return;
        }
        s.conn = None;
        self.grace.insert(session, now.mono + self.config.grace);
        self.core.handle_detach(session);
    }

    /// The session is over: it leaves its room (ending its call) and is forgotten.
    fn end_session(&mut self, now: Now, session: SessionId) {
        self.forget_session(now, session);
        self.core.handle_disconnect(now, session);
    }

    /// Checks that the tables agree with each other and with the room core; panics with a
    /// description if not. For tests and fuzzing; never called on the serving path.
    pub fn assert_consistent(&self) {
        self.core.assert_consistent();
        assert_eq!(self.beats.len(), self.conns.len(), "one heartbeat per connection");
        for (conn, c) in &self.conns {
            let s = &self.sessions[&c.session];
            assert_eq!(s.conn, Some(*conn), "connection and session point at each other");
            assert_eq!(s.ip, c.ip, "a session counts against its connection's address");
            assert_eq!(
                self.joins.get(*conn).is_some(),
                s.token.is_none(),
                "a join deadline exactly while not joined"
            );
        }
        let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
        for s in self.sessions.values() {
            *per_ip.entry(s.ip).or_default() += 1;
        }
        self.sources.assert_consistent(&per_ip);
        assert_eq!(
            self.log_total,
            self.sessions.values().map(Session::log_bytes).sum::<usize>(),
            "replay-log bytes in total"
        );
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
        assert!(self.sessions.len() <= self.config.max_sessions, "sessions in all");
        assert!(
            per_ip.values().all(|n| *n <= self.config.sessions_per_ip),
            "sessions per address"
        );
    }
}

/// `msg` as the text frame that is sent (and kept for replay).
fn encode(msg: &ServerMsg, sn: Option<u64>) -> Bytes {
    let mut buf = Vec::with_capacity(msg.size_hint());
    msg.encode(sn, &mut buf);
    // Exactly sized (usually a shrink in place), so the replay log holds no slack.
    Bytes::from(buf.into_boxed_slice())
}

#[cfg(test)]
mod hostile;
#[cfg(test)]
mod tests;
