//! Rooms, presence and the 1:1 call state machine, as a sans-IO core.
//!
//! The server edge feeds in what happened ([`Core::handle_message`],
//! [`Core::handle_disconnect`], [`Core::handle_timeout`]) with the current time, then drains
//! what to send with [`Core::poll_output`] and learns when to wake it next from
//! [`Core::poll_timeout`]. The core never reads a clock, spawns a task or touches a socket, so
//! every transition is tested deterministically with a fake clock.
//!
//! Call states: an `invite` creates a call that is *ringing*; it becomes *active* on
//! `accept`, and ends on `decline`, `cancel`, the ring timeout, `hangup`, or a party leaving.
//! An invite to a member who is ringing or in a call ends at once as *busy*. Two members
//! inviting each other at the same moment get one call: the second invite accepts the first.
//!
//! Rooms are named (made by their first `join`, equal members) or private (made by `create`,
//! with hosts, a lobby and host powers: see `private.rs`).

mod api;
mod chat;
mod event;
mod group;
mod private;
mod snapshot;
mod validate;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use visavis_protocol::{
    CallId, CandidatePath, ChatEntry, CurrentCall, EndReason, ErrorCode, GroupCall, GroupMedia, IceServer,
    MediaTransport, Member, MemberId, Preconnect, Presence, Publish, QualityReport, RoomMsg, RoomState,
    ServerMsg, PROTOCOL_VERSION, QUALITY_REPORT_WINDOW,
};
use visavis_sansio::{Deadlines, Now, TokenBucket};

pub use api::{ApiError, Participant, RoomDetail, RoomInfo, RoomOptions, MAX_DURATION};
pub use event::{CallSummary, Event, Person};
use private::Private;
pub use snapshot::{CallSnapshot, CoreSnapshot, MemberSnapshot, PrivateSnapshot, RoomSnapshot};
pub use validate::{is_private_id, validate_name, validate_room, MAX_NAME_CHARS, MAX_ROOM_CHARS};

/// A member's session, numbered by the session layer: it outlives the connections that carry
/// it (a dropped connection resumes the same session).
pub type SessionId = u64;

/// Longest accept-to-connected time a party may report (`call_connected`).
pub const MAX_CONNECT_SETUP: Duration = Duration::from_secs(120);

/// Settings of the core; the server maps its command line onto these.
#[derive(Debug, Clone)]
pub struct Config {
    /// Most members one room holds.
    pub room_capacity: usize,
    /// How long an invite rings before it ends as `no_answer`.
    pub ring_timeout: Duration,
    /// The ICE servers handed to each member on join.
    pub ice_servers: IceServerSource,
    /// Most participants in a room's group call when it is a full mesh (n·(n−1)/2 peer
    /// connections).
    pub mesh_limit: usize,
    /// How group calls carry media: a mesh, or the server's SFU (`--group-media`).
    pub group_media: GroupMedia,
    /// Most participants in a group call through the SFU (`--group-limit`).
    pub group_limit: usize,
    /// Chat messages a room keeps for people who join later.
    pub chat_history: usize,
    /// Largest chat message, in bytes of UTF-8.
    pub chat_max_bytes: usize,
    /// Most rooms the server holds at once.
    pub max_rooms: usize,
    /// Invites per second one member may send, and the burst above it.
    pub invite_rate: f64,
    pub invite_burst: f64,
    /// Offers to the SFU per second one member may send, and the burst above it: each starts
    /// its session over and renegotiates the room's other connections.
    pub sfu_offer_rate: f64,
    pub sfu_offer_burst: f64,
    /// After a decline, how long the caller may not ring the same member again.
    pub redial_delay: Duration,
    /// Where member and call ids come from.
    pub ids: IdSource,
    /// Chat messages per second one member may send, and the burst above it.
    pub chat_member_rate: f64,
    pub chat_member_burst: f64,
    /// Chat messages per second one room takes from everyone together, and the burst above
    /// it: a flood slows the flooders instead of filling everyone's connection.
    pub chat_rate: f64,
    pub chat_burst: f64,
    /// Where private room ids and host keys come from: 22 URL-safe base64 characters of 128
    /// random bits each (the server's); tests count.
    pub secrets: SecretSource,
    /// Whether `join` may make named rooms (`--access open`); if not, only `create` makes
    /// rooms (`--access private`).
    pub named_rooms: bool,
    /// How long a private room with nobody in it waits for a host to come back (host link).
    pub private_room_ttl: Duration,
    /// Empty private rooms kept per creating address; when one more empties, its oldest goes.
    pub empty_private_per_ip: usize,
    /// With `--access token`: checks a join's access token; without, anyone may join.
    pub access_tokens: Option<TokenCheck>,
    /// Whether 1:1 calls connect while they ring (`description` and `candidate` are relayed
    /// in a ringing call), and how the clients do it; told to each member in `joined`.
    pub preconnect: Preconnect,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            room_capacity: 16,
            ring_timeout: Duration::from_secs(30),
            ice_servers: IceServerSource::none(),
            mesh_limit: 6,
            group_media: GroupMedia::Mesh,
            group_limit: 50,
            chat_history: 100,
            chat_max_bytes: 4096,
            max_rooms: 10_000,
            invite_rate: 0.2,
            invite_burst: 5.0,
            sfu_offer_rate: 0.5,
            sfu_offer_burst: 10.0,
            redial_delay: Duration::from_secs(30),
            ids: IdSource::counter(),
            chat_member_rate: 2.0,
            chat_member_burst: 10.0,
            chat_rate: 10.0,
            chat_burst: 30.0,
            secrets: SecretSource::counter(),
            named_rooms: true,
            private_room_ttl: Duration::from_secs(3600),
            empty_private_per_ip: 8,
            access_tokens: None,
            preconnect: Preconnect::Relay,
        }
    }
}

/// What an access token lets its holder do in one room, once the edge has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The product's id for the person: a host removes identities, not connections.
    pub identity: String,
    /// The display name the product gives.
    pub name: String,
    pub host: bool,
    /// Straight in, past the lobby.
    pub skip_lobby: bool,
    pub chat: bool,
    /// What the person may send in calls.
    pub publish: Publish,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    Invalid,
    Expired,
    WrongRoom,
}

/// Checks an access token for a room at a time (Unix seconds). Verifying a signature needs the
/// API secret, which belongs to the edge, so the edge supplies the function.
#[derive(Clone)]
pub struct TokenCheck(std::sync::Arc<CheckToken>);

/// token, room, Unix seconds → what the token grants there.
type CheckToken = dyn Fn(&str, &str, u64) -> Result<Grant, TokenRefusal> + Send + Sync;

impl TokenCheck {
    pub fn new(f: impl Fn(&str, &str, u64) -> Result<Grant, TokenRefusal> + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck")
    }
}

/// Makes the secrets of private rooms: their ids (after the `~`) and host keys, each
/// [`validate::PRIVATE_ID_CHARS`] URL-safe characters.
#[derive(Clone)]
pub struct SecretSource(std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl SecretSource {
    pub fn new(f: impl Fn() -> String + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }

    /// `0000000000000000000001`, `…02`, …: predictable, for tests.
    pub fn counter() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let next = AtomicU64::new(1);
        Self::new(move || format!("{:022}", next.fetch_add(1, Ordering::Relaxed)))
    }
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSource")
    }
}

/// A request to enter a room: `join`'s fields and the address it came from (a member a host
/// removed must knock again from that address).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub room: &'a str,
    pub name: &'a str,
    pub host_key: Option<&'a str>,
    pub access_token: Option<&'a str>,
    pub from: IpAddr,
}

/// Gives the ICE servers (with fresh TURN credentials) for a member: when it joins and, if
/// the credentials expire, again every `renew_every` while it stays. Minting credentials needs
/// a secret, which belongs to the edge, so the edge supplies the function; the core gives it
/// the member and the current Unix time in seconds.
#[derive(Clone)]
pub struct IceServerSource {
    mint: std::sync::Arc<dyn Fn(MemberId, u64) -> Vec<IceServer> + Send + Sync>,
    renew_every: Option<Duration>,
}

impl IceServerSource {
    /// Servers whose credentials do not expire while a member stays.
    pub fn new(f: impl Fn(MemberId, u64) -> Vec<IceServer> + Send + Sync + 'static) -> Self {
        Self {
            mint: std::sync::Arc::new(f),
            renew_every: None,
        }
    }

    /// Servers whose credentials are minted again every `every` (before they expire) and
    /// sent in an `ice_servers` message.
    pub fn renewed(
        every: Duration,
        f: impl Fn(MemberId, u64) -> Vec<IceServer> + Send + Sync + 'static,
    ) -> Self {
        Self {
            renew_every: Some(every),
            ..Self::new(f)
        }
    }

    /// No ICE servers: host candidates only.
    pub fn none() -> Self {
        Self::new(|_, _| Vec::new())
    }

    pub fn for_member(&self, member: MemberId, now: Now) -> Vec<IceServer> {
        (self.mint)(member, now.unix_secs())
    }
}

impl std::fmt::Debug for IceServerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IceServerSource")
    }
}

/// Makes member and call ids. The server draws them at random below 2^53 (unpredictable, so
/// nobody can count members or calls from them, and exact as JavaScript numbers); by default
/// they count up from 1, which tests read more easily. The core skips ids that are in use and
/// zero, so a source must not keep repeating itself.
#[derive(Clone)]
pub struct IdSource(std::sync::Arc<dyn Fn(IdKind) -> u64 + Send + Sync>);

/// What an id is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Member,
    Call,
}

impl IdSource {
    pub fn new(f: impl Fn(IdKind) -> u64 + Send + Sync + 'static) -> Self {
        Self(std::sync::Arc::new(f))
    }

    /// 1, 2, 3, ... for members and, separately, for calls.
    pub fn counter() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        let next = [AtomicU64::new(1), AtomicU64::new(1)];
        Self::new(move |kind| next[kind as usize].fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Debug for IdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdSource")
    }
}

/// Why a client request was refused. Each maps to a stable wire [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("join a room first")]
    NotJoined,
    #[error("already in room {0:?}; leave it first")]
    AlreadyJoined(String),
    #[error("{0}")]
    InvalidName(&'static str),
    #[error("{0}")]
    InvalidRoom(&'static str),
    #[error("room {room:?} is full ({capacity} members)")]
    RoomFull { room: String, capacity: usize },
    #[error("member {0} is not in your room")]
    UnknownMember(MemberId),
    #[error("you cannot call yourself")]
    InvalidTarget,
    #[error("you are already ringing or in call {0}")]
    AlreadyInCall(CallId),
    #[error("no call {0} of yours")]
    UnknownCall(CallId),
    #[error("call {call} is {state}; {action} is not allowed")]
    InvalidCallState {
        call: CallId,
        state: &'static str,
        action: &'static str,
    },
    #[error("you are not in the room's group call")]
    NotInCall,
    #[error("the group call is full ({0} people)")]
    CallFull(usize),
    #[error("{0}")]
    InvalidChat(String),
    #[error("{0}")]
    InvalidView(String),
    #[error("the server holds its maximum of {0} rooms; join an existing room or try later")]
    TooManyRooms(usize),
    #[error("{0}")]
    RateLimited(String),
    #[error("only a host of this room may do that")]
    NotHost,
    #[error("waiting for a host to let you in; only leave is possible")]
    NotAdmitted,
    #[error("the room is locked: nobody new may enter")]
    RoomLocked,
    #[error("no private room with that id: it ended, or never existed")]
    RoomNotFound,
    #[error("that host key is not this room's")]
    InvalidHostKey,
    #[error("this server makes private rooms only: create one")]
    PrivateOnly,
    #[error("member {0} is not waiting to come in")]
    NotWaiting(MemberId),
    #[error("this server admits only holders of an access token")]
    TokenRequired,
    #[error("the access token is malformed or not signed by this server's API secret")]
    TokenInvalid,
    #[error("the access token has expired")]
    TokenExpired,
    #[error("the access token is for another room")]
    TokenWrongRoom,
    #[error("a host removed you from this room")]
    TokenRevoked,
    #[error("your access token does not allow {0}")]
    NotPermitted(&'static str),
    #[error("you already reported call {0} connected")]
    AlreadyReported(CallId),
    #[error("{0}")]
    BadValue(String),
}

impl RoomError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJoined => ErrorCode::NotJoined,
            Self::AlreadyJoined(_) => ErrorCode::AlreadyJoined,
            Self::InvalidName(_) => ErrorCode::InvalidName,
            Self::InvalidRoom(_) => ErrorCode::InvalidRoom,
            Self::RoomFull { .. } => ErrorCode::RoomFull,
            Self::UnknownMember(_) => ErrorCode::UnknownMember,
            Self::InvalidTarget => ErrorCode::InvalidTarget,
            Self::AlreadyInCall(_) => ErrorCode::AlreadyInCall,
            Self::UnknownCall(_) => ErrorCode::UnknownCall,
            Self::InvalidCallState { .. } => ErrorCode::InvalidCallState,
            Self::NotInCall => ErrorCode::NotInCall,
            Self::CallFull(_) => ErrorCode::CallFull,
            Self::InvalidChat(_) => ErrorCode::InvalidChat,
            Self::InvalidView(_) => ErrorCode::InvalidView,
            Self::TooManyRooms(_) => ErrorCode::TooManyRooms,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::NotHost => ErrorCode::NotHost,
            Self::NotAdmitted => ErrorCode::NotAdmitted,
            Self::RoomLocked => ErrorCode::RoomLocked,
            Self::RoomNotFound => ErrorCode::RoomNotFound,
            Self::InvalidHostKey => ErrorCode::InvalidHostKey,
            Self::PrivateOnly => ErrorCode::PrivateOnly,
            Self::NotWaiting(_) => ErrorCode::NotWaiting,
            Self::TokenRequired => ErrorCode::TokenRequired,
            Self::TokenInvalid => ErrorCode::TokenInvalid,
            Self::TokenExpired => ErrorCode::TokenExpired,
            Self::TokenWrongRoom => ErrorCode::TokenWrongRoom,
            Self::TokenRevoked => ErrorCode::TokenRevoked,
            Self::NotPermitted(_) => ErrorCode::NotPermitted,
            Self::AlreadyReported(_) => ErrorCode::InvalidCallState,
            Self::BadValue(_) => ErrorCode::BadMessage,
        }
    }
}

/// A message for one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub to: SessionId,
    pub msg: ServerMsg,
}

/// A member came or went, for what else the edge ties to members (TURN credentials); read
/// off [`Event::member`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberEvent {
    Joined(MemberId),
    Left(MemberId),
}

/// How much the core holds, for health and metrics endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Admitted members.
    pub members: usize,
    /// Members waiting in private rooms' lobbies.
    pub waiting: usize,
    pub rooms: usize,
    pub private_rooms: usize,
    /// 1:1 calls and group calls.
    pub calls: usize,
    /// 1:1 calls still ringing.
    pub ringing: usize,
    pub group_calls: usize,
}

/// What the core has done since it started, for metrics.
#[derive(Debug, Clone)]
pub struct Totals {
    /// 1:1 calls ended, by reason.
    pub calls_ended: HashMap<EndReason, u64>,
    /// Knocks on private rooms' lobbies.
    pub knocks: u64,
    /// Negotiation and media-state messages relayed between members, and their payload bytes.
    pub relayed_messages: u64,
    pub relayed_bytes: u64,
    /// Time from `invite` to `accept` of 1:1 calls.
    pub answer_time: Histogram,
    /// Time from `accept` to the peer connection up, as the parties report it.
    pub connect_time: Histogram,
    /// From the parties' `call_quality` reports: average round-trip time and loss of each,
    /// freezes, and the paths media took (candidate type, transport).
    pub quality_rtt: Histogram,
    pub quality_loss: Histogram,
    pub quality_freezes: u64,
    pub quality_paths: HashMap<(CandidatePath, MediaTransport), u64>,
}

impl Default for Totals {
    fn default() -> Self {
        Self {
            calls_ended: HashMap::new(),
            knocks: 0,
            relayed_messages: 0,
            relayed_bytes: 0,
            answer_time: Histogram::new(Histogram::CALL_SECONDS),
            connect_time: Histogram::new(Histogram::CALL_SECONDS),
            quality_rtt: Histogram::new(Histogram::RTT_SECONDS),
            quality_loss: Histogram::new(Histogram::LOSS_RATIO),
            quality_freezes: 0,
            quality_paths: HashMap::new(),
        }
    }
}

/// Values counted into fixed buckets: what a Prometheus histogram holds.
#[derive(Debug, Clone)]
pub struct Histogram {
    /// Upper bounds of the buckets; the last catches the rest (`f64::MAX` is what
    /// prometheus-client writes as `+Inf`).
    pub bounds: &'static [f64; 10],
    /// Observations at most each bound (not cumulative).
    pub buckets: [u64; 10],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    /// Call set-up times, seconds.
    pub const CALL_SECONDS: &'static [f64; 10] = &[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, f64::MAX];
    /// Round-trip times of calls' media, seconds.
    pub const RTT_SECONDS: &'static [f64; 10] = &[0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, f64::MAX];
    /// Packet loss of calls' media, a ratio.
    pub const LOSS_RATIO: &'static [f64; 10] =
        &[0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.25, f64::MAX];

    pub fn new(bounds: &'static [f64; 10]) -> Self {
        Self {
            bounds,
            buckets: [0; 10],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len() - 1);
        self.buckets[i] += 1;
        self.sum += value;
        self.count += 1;
    }
}

#[derive(Debug)]
struct MemberState {
    session: SessionId,
    name: String,
    room: String,
    /// A host of its (private) room.
    host: bool,
    /// In the room's lobby, not (yet) admitted: sees and sends nothing of the room.
    waiting: bool,
    /// The room's chat `seq` when it was admitted: in a private room it reads only later
    /// messages, unless the room shares its history.
    first_seq: u64,
    /// The address it joined from.
    from: IpAddr,
    /// The identity of its access token, if it came with one.
    identity: Option<String>,
    /// May send chat messages (access tokens may forbid it).
    may_chat: bool,
    /// What it may send in calls (access tokens may forbid some of it).
    publish: Publish,
    /// A 1:1 call, ringing or active.
    call: Option<CallId>,
    /// In the room's group call.
    in_group: bool,
    /// Invites and chat messages this member may still send.
    invites: TokenBucket,
    chats: TokenBucket,
    /// Offers to the SFU it may still send.
    sfu_offers: TokenBucket,
}

impl MemberState {
    /// Ringing, in a 1:1 call or in the group call: not free for another.
    fn busy(&self) -> bool {
        self.call.is_some() || self.in_group
    }
}

/// A room: its members in join order, its group call and its recent chat.
#[derive(Debug)]
struct Room {
    /// Numbers the room for its time limit (a name may be used again by a later room).
    serial: u64,
    /// Made by the REST API: kept while empty like a private room, with no cap per creator.
    api: bool,
    /// Most members it holds (and most waiting in its lobby): `Config::room_capacity` or less.
    capacity: usize,
    /// When it was made, Unix seconds.
    created_at: u64,
    /// When its time limit ends it, Unix seconds (the deadline is in `Core::time_limits`).
    ends_at: Option<u64>,
    /// Admitted members (the lobby is in `private`).
    members: Vec<MemberId>,
    /// Hosts, lobby and settings of a private room.
    private: Option<Private>,
    group: Option<GroupCall>,
    /// The SFU's last active speaker in the group call (call id, member): told to those who
    /// join the call later, who missed the change. Not stored: the SFU starts afresh too.
    speaker: Option<(CallId, MemberId)>,
    chat: VecDeque<ChatEntry>,
    chat_seq: u64,
    chat_bucket: TokenBucket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Ringing,
    Active,
}

#[derive(Debug)]
struct Call {
    caller: MemberId,
    callee: MemberId,
    state: CallState,
    /// The room it rings or runs in (its parties may be gone when it ends with the room).
    room: String,
    invited_at: Instant,
    accepted_at: Option<Instant>,
    /// Accept to peer connection up, as the caller and the callee reported it.
    caller_connect: Option<Duration>,
    callee_connect: Option<Duration>,
}

impl Call {
    fn other(&self, me: MemberId) -> MemberId {
        if me == self.caller {
            self.callee
        } else {
            self.caller
        }
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            CallState::Ringing => "ringing",
            CallState::Active => "active",
        }
    }
}

/// The room and call state of one server.
#[derive(Debug)]
pub struct Core {
    config: Config,
    /// Joined sessions and their member id.
    sessions: HashMap<SessionId, MemberId>,
    members: HashMap<MemberId, MemberState>,
    rooms: HashMap<String, Room>,
    calls: HashMap<CallId, Call>,
    /// When each ringing call times out.
    ring_deadlines: Deadlines<CallId>,
    /// Parties of accepted calls that ended, until when each may send its `call_quality`.
    quality_due: Deadlines<(CallId, MemberId)>,
    /// (caller, callee) → until when the caller may not ring that callee again (it declined).
    no_redial: HashMap<(MemberId, MemberId), Instant>,
    /// When each member's ICE servers are next renewed (if their credentials expire).
    renewals: Deadlines<MemberId>,
    out: VecDeque<Output>,
    events: VecDeque<Event>,
    /// Empty private rooms, by number, and when each is dropped.
    empty_private: private::EmptyRooms,
    /// The time of the input being handled, for what it schedules deep down.
    clock: Option<Instant>,
    totals: Totals,
    /// Rooms with a time limit (by serial), and when each ends.
    time_limits: Deadlines<u64>,
    limited: HashMap<u64, String>,
    next_serial: u64,
}

impl Core {
    pub fn new(config: Config) -> Self {
        Self {
            empty_private: private::EmptyRooms::default(),
            clock: None,
            totals: Totals::default(),
            time_limits: Deadlines::default(),
            limited: HashMap::new(),
            next_serial: 0,
            config,
            sessions: HashMap::new(),
            members: HashMap::new(),
            rooms: HashMap::new(),
            calls: HashMap::new(),
            ring_deadlines: Deadlines::default(),
            quality_due: Deadlines::default(),
            no_redial: HashMap::new(),
            renewals: Deadlines::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// `session` asks to enter a room (the session layer has checked the protocol version).
    /// Refusals become an `error` output to that session.
    pub fn handle_join(&mut self, now: Now, session: SessionId, entry: Entry<'_>) {
        self.clock = Some(now.mono);
        if let Err(err) = self.join(now, session, entry) {
            self.refuse(session, &err, "join");
        }
    }

    /// `session` asks for a new private room, as its host.
    pub fn handle_create(&mut self, now: Now, session: SessionId, name: &str, from: IpAddr) {
        self.clock = Some(now.mono);
        if let Err(err) = self.create(now, session, name, from) {
            self.refuse(session, &err, "create");
        }
    }

    /// A room message from `session`. Refusals become an `error` output to that session.
    pub fn handle_message(&mut self, now: Now, session: SessionId, msg: RoomMsg) {
        self.clock = Some(now.mono);
        let request = msg.kind();
        if let Err(err) = self.dispatch(now, session, msg) {
            self.refuse(session, &err, request);
        }
    }

    fn refuse(&mut self, session: SessionId, err: &RoomError, request: &str) {
        self.send(
            session,
            ServerMsg::error(err.code(), err.to_string(), Some(request)),
        );
    }

    /// `session` is gone for good (it left, closed cleanly, or its resume grace ran out): it
    /// leaves its room at once and its call ends.
    pub fn handle_disconnect(&mut self, now: Now, session: SessionId) {
        self.clock = Some(now.mono);
        if let Some(member) = self.sessions.get(&session).copied() {
            self.remove_member(member);
        }
    }

    /// `session` lost its connection but may resume: the room sees it as reconnecting; its
    /// calls go on (media is peer to peer).
    pub fn handle_detach(&mut self, session: SessionId) {
        self.announce_presence(session, Presence::Reconnecting, false);
    }

    /// `session` resumed on a new connection.
    pub fn handle_reattach(&mut self, session: SessionId) {
        self.announce_presence(session, Presence::Online, false);
    }

    /// `session` resumed from a reloaded page, which kept its token and nothing else: it gets
    /// its room afresh (`joined`, with its 1:1 call if it has one; `waiting` in a lobby), and
    /// the others learn it is back and must make new peer connections to it. Its membership,
    /// calls and group call go on untouched.
    pub fn handle_reload(&mut self, now: Now, session: SessionId) {
        self.clock = Some(now.mono);
        let Some(id) = self.sessions.get(&session).copied() else {
            return;
        };
        let state = &self.members[&id];
        if state.waiting {
            let msg = ServerMsg::Waiting {
                session: None,
                room: state.room.clone(),
                you: self.member(id),
            };
            self.send(session, msg);
            return;
        }
        let call = state.call.and_then(|call_id| {
            let call = self.calls.get(&call_id)?;
            let peer = call.other(id);
            Some(Box::new(CurrentCall {
                call_id,
                peer,
                name: self
                    .members
                    .get(&peer)
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
                outgoing: call.caller == id,
                active: call.state == CallState::Active,
                since: call.accepted_at.map(|at| now.unix_ms_of(at)),
            }))
        });
        let first_seq = state.first_seq;
        let msg = self.joined_msg(now, id, first_seq, call);
        self.send(session, msg);
        self.announce_presence(session, Presence::Online, true);
    }

    fn announce_presence(&mut self, session: SessionId, state: Presence, reloaded: bool) {
        let Some(member) = self.sessions.get(&session).copied() else {
            return;
        };
        if self.members[&member].waiting {
            return;
        }
        let room = self.members[&member].room.clone();
        let others: Vec<MemberId> = self.rooms[&room]
            .members
            .iter()
            .copied()
            .filter(|m| *m != member)
            .collect();
        for other in others {
            self.send_member(
                other,
                ServerMsg::MemberState {
                    id: member,
                    state,
                    reloaded,
                },
            );
        }
    }

    /// Tells everyone else in the room of a 1:1 call's `parties` that they are in a call now
    /// (or no longer): the parties know it already.
    fn announce_call(&mut self, parties: [MemberId; 2], in_call: bool) {
        let Some(room) = parties
            .iter()
            .find_map(|p| self.members.get(p))
            .map(|m| m.room.clone())
        else {
            return;
        };
        let others: Vec<MemberId> = self
            .rooms
            .get(&room)
            .map(|r| {
                r.members
                    .iter()
                    .copied()
                    .filter(|m| !parties.contains(m))
                    .collect()
            })
            .unwrap_or_default();
        let present: Vec<MemberId> = parties
            .into_iter()
            .filter(|p| self.members.contains_key(p))
            .collect();
        for other in others {
            for &id in &present {
                self.send_member(other, ServerMsg::MemberCall { id, in_call });
            }
        }
    }

    /// Time has passed: ring timeouts up to `now` fire; members whose credentials are due
    /// get fresh ones; rooms whose time is up end.
    pub fn handle_timeout(&mut self, now: Now) {
        self.clock = Some(now.mono);
        while let Some(call) = self.ring_deadlines.pop_due(now.mono) {
            self.end_call(call, EndReason::NoAnswer, None);
        }
        while let Some(serial) = self.time_limits.pop_due(now.mono) {
            if let Some(room) = self.limited.remove(&serial) {
                self.end_room_for_all(&room, None);
            }
        }
        while let Some(member) = self.renewals.pop_due(now.mono) {
            self.renew_ice_servers(now, member);
        }
        while self.quality_due.pop_due(now.mono).is_some() {}
        self.expire_empty_rooms(now.mono);
    }

    /// The next message to send, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Core::handle_timeout`] next has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.ring_deadlines.next(),
            self.quality_due.next(),
            self.renewals.next(),
            self.empty_private.next(),
            self.time_limits.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends `member` fresh ICE servers and schedules the next renewal.
    fn renew_ice_servers(&mut self, now: Now, member: MemberId) {
        let Some(every) = self.config.ice_servers.renew_every else {
            return;
        };
        let ice_servers = self.config.ice_servers.for_member(member, now);
        self.send_member(member, ServerMsg::IceServers { ice_servers });
        self.renewals.insert(member, now.mono + every);
    }

    /// An id of `kind` from the configured source that is not zero and not `taken`.
    fn fresh_id(&self, kind: IdKind, taken: impl Fn(&Self, u64) -> bool) -> u64 {
        loop {
            let id = (self.config.ids.0)(kind);
            if id != 0 && !taken(self, id) {
                return id;
            }
        }
    }

    /// An id for a new 1:1 or group call. Only live 1:1 calls are checked: the source never
    /// repeats (counter) or practically never (random, 53 bits), and a 1:1 call is only ever
    /// looked up among its own parties' calls, so it cannot be mistaken for a group call.
    pub(crate) fn fresh_call_id(&self) -> CallId {
        self.fresh_id(IdKind::Call, |core, id| core.calls.contains_key(&id))
    }

    /// The member `session` is, if it has joined a room.
    pub fn member_of(&self, session: SessionId) -> Option<MemberId> {
        self.sessions.get(&session).copied()
    }

    /// The room `session`'s member is in (or waits at), if it has joined one.
    pub fn room_of(&self, session: SessionId) -> Option<&str> {
        let member = self.sessions.get(&session)?;
        self.members.get(member).map(|m| m.room.as_str())
    }

    /// The sessions of the members of `room` (as a client names it), in join order, then
    /// those waiting in its lobby.
    pub fn sessions_in(&self, room: &str) -> impl Iterator<Item = SessionId> + '_ {
        let room = validate_room(room).ok().and_then(|r| self.rooms.get(r));
        room.into_iter()
            .flat_map(|r| {
                r.members
                    .iter()
                    .chain(r.private.iter().flat_map(|p| p.lobby.iter()))
            })
            .filter_map(|m| self.members.get(m).map(|m| m.session))
    }

    pub fn counts(&self) -> Counts {
        let waiting = self.members.values().filter(|m| m.waiting).count();
        let group_calls = self.rooms.values().filter(|r| r.group.is_some()).count();
        let ringing = self.ring_deadlines.len();
        Counts {
            members: self.members.len() - waiting,
            waiting,
            rooms: self.rooms.len(),
            private_rooms: self.rooms.values().filter(|r| r.private.is_some()).count(),
            calls: self.calls.len() + group_calls,
            ringing,
            group_calls,
        }
    }

    /// What the core has done since it started.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn dispatch(&mut self, now: Now, session: SessionId, msg: RoomMsg) -> Result<(), RoomError> {
        let me = *self.sessions.get(&session).ok_or(RoomError::NotJoined)?;
        if self.members[&me].waiting && msg != RoomMsg::Leave {
            return Err(RoomError::NotAdmitted);
        }
        match msg {
            RoomMsg::Leave => {
                let room = self.remove_member(me);
                self.send(session, ServerMsg::Left { room });
                Ok(())
            }
            RoomMsg::Invite { to } => self.invite(now.mono, me, to),
            RoomMsg::Cancel { call_id } => {
                self.ringing_call_as(me, call_id, Role::Caller, "cancel")?;
                self.end_call(call_id, EndReason::Cancelled, Some(me));
                Ok(())
            }
            RoomMsg::Decline { call_id } => {
                self.ringing_call_as(me, call_id, Role::Callee, "decline")?;
                // The caller may not ring straight back.
                let caller = self.calls[&call_id].caller;
                self.no_redial
                    .insert((caller, me), now.mono + self.config.redial_delay);
                self.end_call(call_id, EndReason::Declined, Some(me));
                Ok(())
            }
            RoomMsg::Accept { call_id } => {
                self.ringing_call_as(me, call_id, Role::Callee, "accept")?;
                self.activate(call_id);
                Ok(())
            }
            RoomMsg::CallConnected { call_id, setup_ms } => {
                self.call_connected(now.mono, me, call_id, setup_ms)
            }
            RoomMsg::CallQuality { call_id, report } => self.call_quality(me, call_id, report),
            RoomMsg::Hangup { call_id } => {
                let call = self.call_of(me, call_id)?;
                // Hanging up a call that still rings is what the user meant by cancel/decline.
                let reason = match (call.state, call.caller == me) {
                    (CallState::Active, _) => EndReason::Hangup,
                    (CallState::Ringing, true) => EndReason::Cancelled,
                    (CallState::Ringing, false) => EndReason::Declined,
                };
                self.end_call(call_id, reason, Some(me));
                Ok(())
            }
            RoomMsg::Description {
                call_id,
                to,
                description,
            } => self.relay_in_call(me, call_id, to, Relay::Negotiation, |from| {
                ServerMsg::Description {
                    call_id,
                    from,
                    description,
                }
            }),
            RoomMsg::Candidate {
                call_id,
                to,
                candidate,
            } => self.relay_in_call(me, call_id, to, Relay::Candidate, |from| ServerMsg::Candidate {
                call_id,
                from,
                candidate,
            }),
            RoomMsg::Media {
                call_id,
                audio,
                video,
                screen,
                unavailable,
            } => {
                if !self.members[&me].publish.allows(audio, video, screen) {
                    return Err(RoomError::NotPermitted("media"));
                }
                let msg = |from| ServerMsg::Media {
                    call_id,
                    from,
                    audio,
                    video,
                    screen,
                    unavailable,
                };
                if self.group_of(me).is_some_and(|g| g.call_id == call_id) {
                    self.group_broadcast(me, msg(me));
                    Ok(())
                } else {
                    self.relay_in_call(me, call_id, None, Relay::Media, msg)
                }
            }
            RoomMsg::SfuDescription { call_id, description } => {
                self.sfu_description(now.mono, me, call_id, &description)
            }
            RoomMsg::SfuView { call_id, tracks } => self.sfu_view(me, call_id, tracks),
            RoomMsg::GroupJoin => self.group_join(me),
            RoomMsg::GroupLeave => self.group_leave(me),
            RoomMsg::Chat { text } => self.chat(now, me, text),
            RoomMsg::Admit { id } => self.admit(now, me, id),
            RoomMsg::Deny { id } => self.deny(me, id),
            RoomMsg::Remove { id } => self.remove(me, id),
            RoomMsg::Mute { id } => self.mute(me, id),
            RoomMsg::MakeHost { id } => self.make_host(me, id),
            RoomMsg::RoomSettings {
                lobby,
                locked,
                share_history,
            } => self.room_settings(now, me, lobby, locked, share_history),
            RoomMsg::EndRoom => self.end_room(me),
        }
    }

    fn join(&mut self, now: Now, session: SessionId, entry: Entry<'_>) -> Result<(), RoomError> {
        if let Some(member) = self.sessions.get(&session) {
            return Err(RoomError::AlreadyJoined(self.members[member].room.clone()));
        }
        let room = validate_room(entry.room).map_err(RoomError::InvalidRoom)?;
        let grant = self.grant(now, room, entry.access_token)?;
        let name =
            validate_name(grant.as_ref().map_or(entry.name, |g| &g.name)).map_err(RoomError::InvalidName)?;
        let private = is_private_id(room);
        if private && !self.rooms.contains_key(room) {
            return Err(RoomError::RoomNotFound);
        }
        // Run by hosts: private rooms, and named ones a token or the REST API made.
        let hosted = self.rooms.get(room).is_some_and(|r| r.private.is_some());
        if !private && !self.config.named_rooms && grant.is_none() && !hosted {
            return Err(RoomError::PrivateOnly);
        }
        if !hosted && entry.host_key.is_some() {
            return Err(RoomError::InvalidHostKey);
        }
        if !self.rooms.contains_key(room) && self.rooms.len() >= self.config.max_rooms {
            return Err(RoomError::TooManyRooms(self.config.max_rooms));
        }
        // Where the newcomer goes: in as a host (host key, host token), into the lobby, or in.
        let held = self.rooms.get(room).and_then(|r| r.private.as_ref());
        let (host, waiting) = match (&grant, held) {
            (Some(g), Some(p)) if p.revoked.contains(&g.identity) => return Err(RoomError::TokenRevoked),
            (Some(g), _) if g.host => (true, false),
            (Some(_), Some(p)) if p.state.locked => return Err(RoomError::RoomLocked),
            (Some(g), p) => (false, !g.skip_lobby && p.is_none_or(|p| p.state.lobby)),
            (None, None) => (false, false),
            (None, Some(p)) => match entry.host_key {
                Some(key) if p.key_matches(key) => (true, false),
                Some(_) => return Err(RoomError::InvalidHostKey),
                None if p.state.locked => return Err(RoomError::RoomLocked),
                None => (false, p.state.lobby || p.must_knock.contains(&entry.from)),
            },
        };
        let occupants = self.rooms.get(room).map_or(0, |r| {
            if waiting {
                r.private.as_ref().map_or(0, |p| p.lobby.len())
            } else {
                r.members.len()
            }
        });
        let capacity = self
            .rooms
            .get(room)
            .map_or(self.config.room_capacity, |r| r.capacity);
        if occupants >= capacity {
            return Err(RoomError::RoomFull {
                room: room.to_owned(),
                capacity,
            });
        }
        let room = room.to_owned();
        // A product's room (token access) is run like a private room: hosts and a lobby.
        let managed = grant
            .as_ref()
            .map(|_| private::Private::new(self.fresh_secret(), entry.from));
        self.open_room(now, &room, managed);
        let id = self.add_member(now, session, &room, &name, entry.from, host);
        if let (Some(g), Some(m)) = (grant, self.members.get_mut(&id)) {
            m.may_chat = g.chat;
            m.publish = g.publish;
            m.identity = Some(g.identity);
        }
        if waiting {
            self.knock(id);
        } else {
            self.enter(now, id);
        }
        Ok(())
    }

    /// Makes `room` if it does not exist (private with `private`), and keeps it if it was
    /// waiting empty. Returns it.
    fn open_room(&mut self, now: Now, room: &str, private: Option<Private>) -> &mut Room {
        self.empty_private.forget(room);
        let (chat_rate, chat_burst) = (self.config.chat_rate, self.config.chat_burst);
        let capacity = self.config.room_capacity;
        let serial = self.next_serial;
        if !self.rooms.contains_key(room) {
            self.record(Event::RoomStarted {
                room: room.to_owned(),
            });
        }
        let room = self.rooms.entry(room.to_owned()).or_insert_with(|| Room {
            serial,
            api: false,
            capacity,
            created_at: now.unix_secs(),
            ends_at: None,
            members: Vec::new(),
            private,
            group: None,
            speaker: None,
            chat: VecDeque::new(),
            chat_seq: 0,
            chat_bucket: TokenBucket::new(chat_rate, chat_burst, now.mono),
        });
        if room.serial == serial {
            self.next_serial += 1;
        }
        room
    }

    /// Forgets `room` and everything kept about it: it is over.
    fn drop_room(&mut self, room: &str) {
        if self.take_room(room).is_some() {
            self.record(Event::RoomFinished {
                room: room.to_owned(),
            });
        }
    }

    /// Takes `room` out, with its time limit and its place among the empty rooms; returns it.
    fn take_room(&mut self, room: &str) -> Option<Room> {
        self.empty_private.forget(room);
        let r = self.rooms.remove(room)?;
        if self.limited.remove(&r.serial).is_some() {
            self.time_limits.remove(r.serial);
        }
        Some(r)
    }

    /// A new member of `room`, outside it still: [`Core::enter`] or [`Core::knock`] next.
    fn add_member(
        &mut self,
        now: Now,
        session: SessionId,
        room: &str,
        name: &str,
        from: IpAddr,
        host: bool,
    ) -> MemberId {
        let id = self.fresh_id(IdKind::Member, |core, id| core.members.contains_key(&id));
        let name = self.unique_name(room, name);
        self.sessions.insert(session, id);
        self.members.insert(
            id,
            MemberState {
                session,
                name,
                room: room.to_owned(),
                host,
                waiting: false,
                first_seq: 0,
                from,
                identity: None,
                may_chat: true,
                publish: Publish::ALL,
                call: None,
                in_group: false,
                invites: TokenBucket::new(self.config.invite_rate, self.config.invite_burst, now.mono),
                sfu_offers: TokenBucket::new(
                    self.config.sfu_offer_rate,
                    self.config.sfu_offer_burst,
                    now.mono,
                ),
                chats: TokenBucket::new(
                    self.config.chat_member_rate,
                    self.config.chat_member_burst,
                    now.mono,
                ),
            },
        );
        id
    }

    /// The grant of `token` for `room`, if this server admits by token.
    fn grant(&self, now: Now, room: &str, token: Option<&str>) -> Result<Option<Grant>, RoomError> {
        let Some(check) = &self.config.access_tokens else {
            return Ok(None);
        };
        let token = token.ok_or(RoomError::TokenRequired)?;
        match (check.0)(token, room, now.unix_secs()) {
            Ok(grant) => Ok(Some(grant)),
            Err(TokenRefusal::Invalid) => Err(RoomError::TokenInvalid),
            Err(TokenRefusal::Expired) => Err(RoomError::TokenExpired),
            Err(TokenRefusal::WrongRoom) => Err(RoomError::TokenWrongRoom),
        }
    }

    /// A fresh secret (host key) from the configured source.
    fn fresh_secret(&self) -> String {
        (self.config.secrets.0)()
    }

    /// `name`, or with " (2)", " (3)"… appended if someone in `room` or its lobby has it.
    fn unique_name(&self, room: &str, name: &str) -> String {
        let taken: std::collections::HashSet<String> = self
            .rooms
            .get(room)
            .into_iter()
            .flat_map(|r| {
                r.members
                    .iter()
                    .chain(r.private.iter().flat_map(|p| p.lobby.iter()))
            })
            .filter_map(|m| self.members.get(m))
            .map(|m| validate::name_key(&m.name))
            .collect();
        (1..)
            .map(|n| {
                if n == 1 {
                    name.to_owned()
                } else {
                    format!("{name} ({n})")
                }
            })
            .find(|candidate| !taken.contains(&validate::name_key(candidate)))
            .unwrap_or_default()
    }

    /// Takes member `id` into its room: `joined` to it, `member_joined` to the others.
    fn enter(&mut self, now: Now, id: MemberId) {
        let room_id = self.members[&id].room.clone();
        let first_seq = self.rooms[&room_id].chat_seq;
        let you = self.member(id);
        let joined = self.joined_msg(now, id, first_seq, None);
        let others_now = self.rooms[&room_id].members.clone();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.push(id);
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.first_seq = first_seq;
            m.waiting = false;
        }
        let session = self.members[&id].session;
        self.send(session, joined);
        for other in others_now {
            self.send_member(other, ServerMsg::MemberJoined { member: you.clone() });
        }
        if let Some(every) = self.config.ice_servers.renew_every {
            self.renewals.insert(id, now.mono + every);
        }
        self.record(Event::Joined(self.person(id)));
        if you.host {
            self.show_knocks(id);
        }
    }

    /// The `joined` that shows member `id` its room: the others in it, the chat it may read
    /// (from `first_seq` on, unless the room shares its history), and `call`.
    fn joined_msg(
        &self,
        now: Now,
        id: MemberId,
        first_seq: u64,
        call: Option<Box<CurrentCall>>,
    ) -> ServerMsg {
        let room_id = self.members[&id].room.clone();
        let room = &self.rooms[&room_id];
        let you = self.member(id);
        let others = room.members.iter().copied().filter(|m| *m != id);
        let members: Vec<Member> = others.clone().map(|m| self.member(m)).collect();
        let in_call = others
            .filter(|m| {
                self.members[m]
                    .call
                    .and_then(|c| self.calls.get(&c))
                    .is_some_and(|c| c.state == CallState::Active)
            })
            .collect();
        let history = room.private.as_ref().is_none_or(|p| p.state.share_history);
        let chat = room
            .chat
            .iter()
            .filter(|c| history || c.seq > first_seq)
            .cloned()
            .collect();
        let state = room.private.as_ref().map_or(
            RoomState {
                private: false,
                lobby: false,
                locked: false,
                share_history: true,
            },
            |p| p.state,
        );
        let host_key = room
            .private
            .as_ref()
            .filter(|_| you.host)
            .map(|p| p.host_key.clone());
        ServerMsg::Joined {
            session: None,
            version: PROTOCOL_VERSION,
            room: room_id,
            you,
            members,
            ice_servers: self.config.ice_servers.for_member(id, now),
            ring_timeout_ms: u64::try_from(self.config.ring_timeout.as_millis()).unwrap_or(u64::MAX),
            preconnect: self.config.preconnect,
            group: room.group.clone(),
            chat,
            state,
            host_key,
            in_call,
            call,
        }
    }

    /// Member `id` as events name it.
    fn person(&self, id: MemberId) -> Person {
        let m = &self.members[&id];
        Person {
            room: m.room.clone(),
            member: id,
            name: m.name.clone(),
            identity: m.identity.clone(),
        }
    }

    /// Member `id` as others see it.
    fn member(&self, id: MemberId) -> Member {
        let m = &self.members[&id];
        Member {
            id,
            name: m.name.clone(),
            host: m.host,
            publish: m.publish,
        }
    }

    fn invite(&mut self, now: Instant, me: MemberId, to: MemberId) -> Result<(), RoomError> {
        let my_room = &self.members[&me].room;
        let callee = self
            .members
            .get(&to)
            .filter(|m| &m.room == my_room)
            .ok_or(RoomError::UnknownMember(to))?;
        if to == me {
            return Err(RoomError::InvalidTarget);
        }
        let callee_busy = callee.busy();
        if let Some(&until) = self.no_redial.get(&(me, to)) {
            if now < until {
                let secs = until.saturating_duration_since(now).as_secs() + 1;
                return Err(RoomError::RateLimited(format!(
                    "{} declined your call; you can call again in {secs} s",
                    callee.name
                )));
            }
            self.no_redial.remove(&(me, to));
        }
        let invites = &mut self.members.get_mut(&me).ok_or(RoomError::NotJoined)?.invites;
        if !invites.take(now, 1.0) {
            return Err(RoomError::RateLimited(format!(
                "too many calls; at most {} every minute",
                self.config.invite_rate * 60.0
            )));
        }
        if let Some(existing) = self.members[&me].call {
            let call = &self.calls[&existing];
            // Glare: they are ringing me right now, so my invite answers theirs.
            if call.caller == to && matches!(call.state, CallState::Ringing) {
                self.activate(existing);
                return Ok(());
            }
            return Err(RoomError::AlreadyInCall(existing));
        }
        if let Some(group) = self.group_of(me) {
            return Err(RoomError::AlreadyInCall(group.call_id));
        }

        let call_id = self.fresh_call_id();
        if callee_busy {
            // The busy one hears of it, so it can call back.
            let name = self.members[&me].name.clone();
            self.send_member(to, ServerMsg::CallAttempt { from: me, name });
            self.send_member(
                me,
                ServerMsg::CallEnded {
                    call_id,
                    peer: to,
                    reason: EndReason::Busy,
                    by: None,
                },
            );
            return Ok(());
        }
        let deadline = now + self.config.ring_timeout;
        self.calls.insert(
            call_id,
            Call {
                caller: me,
                callee: to,
                state: CallState::Ringing,
                room: self.members[&me].room.clone(),
                invited_at: now,
                accepted_at: None,
                caller_connect: None,
                callee_connect: None,
            },
        );
        self.ring_deadlines.insert(call_id, deadline);
        for member in [me, to] {
            if let Some(m) = self.members.get_mut(&member) {
                m.call = Some(call_id);
            }
        }
        self.send_member(me, ServerMsg::Ringing { call_id, peer: to });
        let name = self.members[&me].name.clone();
        self.send_member(
            to,
            ServerMsg::Incoming {
                call_id,
                from: me,
                name,
            },
        );
        Ok(())
    }

    /// The call `call_id` of `me`, which must be ringing with `me` in `role`.
    fn ringing_call_as(
        &self,
        me: MemberId,
        call_id: CallId,
        role: Role,
        action: &'static str,
    ) -> Result<(), RoomError> {
        let call = self.call_of(me, call_id)?;
        let is_role = match role {
            Role::Caller => call.caller == me,
            Role::Callee => call.callee == me,
        };
        if !is_role || !matches!(call.state, CallState::Ringing) {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: call.state_name(),
                action,
            });
        }
        Ok(())
    }

    /// Relays a message to the other party of `me`'s 1:1 call, or to participant `to` of the
    /// room's group call, stamped `from: me`. A 1:1 call must be active, or ringing for
    /// negotiation when the server pre-connects.
    fn relay_in_call(
        &mut self,
        me: MemberId,
        call_id: CallId,
        to: Option<MemberId>,
        kind: Relay,
        msg: impl FnOnce(MemberId) -> ServerMsg,
    ) -> Result<(), RoomError> {
        let to = match self.group_of(me) {
            Some(group) if group.call_id == call_id => self.group_peer(me, to)?,
            _ => {
                let ringing_too = kind != Relay::Media && self.config.preconnect.enabled();
                self.call_peer(me, call_id, kind.action(), ringing_too)?
            }
        };
        let msg = msg(me);
        self.totals.relayed_messages += 1;
        self.totals.relayed_bytes += match &msg {
            ServerMsg::Description { description, .. } => description.json().len(),
            ServerMsg::Candidate { candidate, .. } => candidate.json().len(),
            _ => 0,
        } as u64;
        self.send_member(to, msg);
        Ok(())
    }

    /// `me` reports its peer connection of call `call_id` up `setup_ms` after accept: once,
    /// while the call is active, and no longer than the call has been accepted (with a second
    /// for the messages' travel), so one client cannot skew the metric with made-up numbers.
    fn call_connected(
        &mut self,
        now: Instant,
        me: MemberId,
        call_id: CallId,
        setup_ms: u64,
    ) -> Result<(), RoomError> {
        let call = self.call_of(me, call_id)?;
        let Some(accepted_at) = call.accepted_at.filter(|_| call.state == CallState::Active) else {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: call.state_name(),
                action: "call_connected",
            });
        };
        let reported = if call.caller == me {
            call.caller_connect
        } else {
            call.callee_connect
        };
        if reported.is_some() {
            return Err(RoomError::AlreadyReported(call_id));
        }
        let setup = Duration::from_millis(setup_ms);
        let since_accept = now.saturating_duration_since(accepted_at) + Duration::from_secs(1);
        if setup > MAX_CONNECT_SETUP || setup > since_accept {
            return Err(RoomError::BadValue(format!(
                "setupMs {setup_ms} is more than {} ms, or than the call has been accepted",
                MAX_CONNECT_SETUP.as_millis()
            )));
        }
        let room = call.room.clone();
        if let Some(call) = self.calls.get_mut(&call_id) {
            if call.caller == me {
                call.caller_connect = Some(setup);
            } else {
                call.callee_connect = Some(setup);
            }
        }
        self.record(Event::CallConnected {
            room,
            call_id,
            member: me,
            setup,
        });
        Ok(())
    }

    /// `me` tells how its media went in call `call_id`, which has ended: once, and within
    /// [`QUALITY_REPORT_WINDOW`] (so what a client may claim is bounded by the calls it had).
    fn call_quality(
        &mut self,
        me: MemberId,
        call_id: CallId,
        report: QualityReport,
    ) -> Result<(), RoomError> {
        if let Some(call) = self
            .calls
            .get(&call_id)
            .filter(|c| c.caller == me || c.callee == me)
        {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: call.state_name(),
                action: "call_quality",
            });
        }
        if let Some(why) = report.invalid() {
            return Err(RoomError::BadValue(why.to_owned()));
        }
        if self.quality_due.remove((call_id, me)).is_none() {
            return Err(RoomError::UnknownCall(call_id));
        }
        let room = self.members[&me].room.clone();
        self.record(Event::CallQuality {
            room,
            call_id,
            member: me,
            report,
        });
        Ok(())
    }

    /// The other party of `me`'s call `call_id`, which must be active (or ringing, when
    /// `ringing_too`).
    fn call_peer(
        &self,
        me: MemberId,
        call_id: CallId,
        action: &'static str,
        ringing_too: bool,
    ) -> Result<MemberId, RoomError> {
        let call = self.call_of(me, call_id)?;
        let allowed = call.state == CallState::Active || (ringing_too && call.state == CallState::Ringing);
        if !allowed {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: call.state_name(),
                action,
            });
        }
        Ok(call.other(me))
    }

    fn call_of(&self, me: MemberId, call_id: CallId) -> Result<&Call, RoomError> {
        self.calls
            .get(&call_id)
            .filter(|c| c.caller == me || c.callee == me)
            .ok_or(RoomError::UnknownCall(call_id))
    }

    fn activate(&mut self, call_id: CallId) {
        let Some(call) = self.calls.get_mut(&call_id) else {
            return;
        };
        self.ring_deadlines.remove(call_id);
        call.state = CallState::Active;
        let now = self.clock.unwrap_or(call.invited_at);
        call.accepted_at = Some(now);
        let (caller, callee) = (call.caller, call.callee);
        let started = Event::CallStarted {
            room: call.room.clone(),
            call_id,
            caller,
            callee,
            setup: now.saturating_duration_since(call.invited_at),
        };
        self.record(started);
        self.announce_call([caller, callee], true);
        self.send_member(
            caller,
            ServerMsg::Accepted {
                call_id,
                peer: callee,
                polite: false,
            },
        );
        self.send_member(
            callee,
            ServerMsg::Accepted {
                call_id,
                peer: caller,
                polite: true,
            },
        );
    }

    /// Ends a call and tells both parties why.
    fn end_call(&mut self, call_id: CallId, reason: EndReason, by: Option<MemberId>) {
        let Some(call) = self.calls.remove(&call_id) else {
            return;
        };
        let now = self.clock.unwrap_or(call.invited_at);
        self.record(Event::CallEnded(CallSummary {
            room: call.room.clone(),
            call_id,
            caller: call.caller,
            callee: call.callee,
            reason,
            by,
            setup: call
                .accepted_at
                .map(|at| at.saturating_duration_since(call.invited_at)),
            duration: call.accepted_at.map(|at| now.saturating_duration_since(at)),
            caller_connect: call.caller_connect,
            callee_connect: call.callee_connect,
        }));
        self.ring_deadlines.remove(call_id);
        if call.accepted_at.is_some() {
            for party in [call.caller, call.callee] {
                self.quality_due
                    .insert((call_id, party), now + QUALITY_REPORT_WINDOW);
            }
        }
        if call.accepted_at.is_some() {
            self.announce_call([call.caller, call.callee], false);
        }
        for (me, peer) in [(call.caller, call.callee), (call.callee, call.caller)] {
            if let Some(m) = self.members.get_mut(&me) {
                m.call = None;
            }

            self.send_member(
                me,
                ServerMsg::CallEnded {
                    call_id,
                    peer,
                    reason,
                    by,
                },
            );
        }
    }

    /// Takes `member` out of its room or lobby (ending its call) and tells the others.
    /// Returns the room.
    fn remove_member(&mut self, member: MemberId) -> String {
        if self.members.get(&member).is_some_and(|m| m.waiting) {
            return self.leave_lobby(member, visavis_protocol::KnockOutcome::Left, None);
        }
        self.no_redial
            .retain(|(caller, callee), _| *caller != member && *callee != member);
        if let Some(call) = self.members.get(&member).and_then(|m| m.call) {
            self.end_call(call, EndReason::Left, Some(member));
        }
        if self.members.get(&member).is_some_and(|m| m.in_group) {
            let _ = self.group_leave(member);
        }
        let Some(state) = self.members.remove(&member) else {
            return String::new();
        };
        self.renewals.remove(member);
        self.record(Event::Left(Person {
            room: state.room.clone(),
            member,
            name: state.name.clone(),
            identity: state.identity.clone(),
        }));
        self.sessions.remove(&state.session);
        if let Some(room) = self.rooms.get_mut(&state.room) {
            room.members.retain(|m| *m != member);
            for other in room.members.clone() {
                self.send_member(other, ServerMsg::MemberLeft { id: member });
            }
        }
        self.close_if_empty(&state.room);
        state.room
    }

    /// Sends `msg` to every member of `room`.
    fn broadcast(&mut self, room: &str, msg: &ServerMsg) {
        let Some(members) = self.rooms.get(room).map(|r| r.members.clone()) else {
            return;
        };
        for m in members {
            self.send_member(m, msg.clone());
        }
    }

    pub(crate) fn send_member(&mut self, member: MemberId, msg: ServerMsg) {
        if let Some(m) = self.members.get(&member) {
            let to = m.session;
            self.send(to, msg);
        }
    }

    fn send(&mut self, to: SessionId, msg: ServerMsg) {
        self.out.push_back(Output { to, msg });
    }

    /// Checks that the indexes agree with each other; panics with a description if not.
    /// For tests and fuzzing; never called on the serving path.
    pub fn assert_consistent(&self) {
        assert_eq!(self.sessions.len(), self.members.len(), "sessions vs members");
        for (session, member) in &self.sessions {
            let state = &self.members[member];
            assert_eq!(state.session, *session);
            let room = &self.rooms[&state.room];
            let lobby = room.private.as_ref().is_some_and(|p| p.lobby.contains(member));
            assert_eq!(state.waiting, lobby, "waiting exactly when in the lobby");
            assert!(
                room.members.contains(member) != lobby,
                "member in its room or lobby"
            );
            assert!(
                !(state.waiting && (state.busy() || state.host)),
                "nothing for the lobby"
            );
            assert!(
                !state.host || room.private.is_some(),
                "hosts only in private rooms"
            );
            let in_group = room
                .group
                .as_ref()
                .is_some_and(|g| g.participants.contains(member));
            assert_eq!(
                state.in_group, in_group,
                "group flag matches the room's group call"
            );
            assert!(!(state.in_group && state.call.is_some()), "never in two calls");
            if let Some(call) = state.call {
                let c = &self.calls[&call];
                assert!(c.caller == *member || c.callee == *member, "call has member");
            }
        }
        for (id, room) in &self.rooms {
            let lobby = room.private.as_ref().map_or(0, |p| p.lobby.len());
            let empty = room.members.is_empty() && lobby == 0;
            assert_eq!(
                empty && room.private.is_some(),
                self.empty_private.contains(id),
                "an empty private room {id} waits to expire, and only then"
            );
            assert!(!empty || room.private.is_some(), "empty room {id} kept");
            assert!(
                room.group.is_none() || !room.members.is_empty(),
                "group call of nobody"
            );
            assert!(
                room.members.len() <= room.capacity && room.capacity <= self.config.room_capacity,
                "room over capacity"
            );
            assert!(
                room.private.is_some() || !room.api,
                "the REST API's rooms are hosted"
            );
            assert_eq!(
                self.limited.contains_key(&room.serial),
                room.ends_at.is_some(),
                "a time limit exactly when the room has an end"
            );
            if let Some(group) = &room.group {
                assert!(!group.participants.is_empty(), "empty group call kept");
                assert!(
                    group.participants.len() <= self.config.mesh_limit,
                    "mesh over limit"
                );
            }
            assert!(
                room.chat.len() <= self.config.chat_history,
                "chat history over limit"
            );
        }
        let ringing = self
            .calls
            .values()
            .filter(|c| matches!(c.state, CallState::Ringing))
            .count();
        assert_eq!(
            ringing,
            self.ring_deadlines.len(),
            "one deadline per ringing call"
        );
        assert_eq!(
            self.limited.len(),
            self.time_limits.len(),
            "one deadline per time limit"
        );
        for (serial, room) in &self.limited {
            assert_eq!(
                self.rooms.get(room).map(|r| r.serial),
                Some(*serial),
                "a time limit of a room that is gone"
            );
        }
        for (id, call) in &self.calls {
            for m in [call.caller, call.callee] {
                assert_eq!(self.members[&m].call, Some(*id), "both parties point at the call");
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Role {
    Caller,
    Callee,
}

/// What a party of a call relays to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relay {
    /// `description`: negotiation, relayed while it rings too when the server pre-connects.
    Negotiation,
    /// `candidate`: as `description`.
    Candidate,
    /// `media`: mute, camera and screen state, only once the call is active (nothing is sent
    /// before Accept).
    Media,
}

impl Relay {
    fn action(self) -> &'static str {
        match self {
            Self::Negotiation => "description",
            Self::Candidate => "candidate",
            Self::Media => "media",
        }
    }
}

#[cfg(test)]
mod api_tests;
#[cfg(test)]
mod preconnect_tests;
#[cfg(test)]
mod private_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
