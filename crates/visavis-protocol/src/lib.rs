//! The visavis signalling wire format: every message a client sends or receives, typed once.
//!
//! Messages are JSON objects sent as WebSocket text frames: an optional sequence number (`cn`
//! from the client, `sn` from the server), `type`, then the message's fields. The enums here
//! are the one list of message kinds: serde names each from its variant (snake_case), with
//! camelCase fields; [`ClientMsg::kinds`] and [`ServerMsg::kinds`] list them and `kind()` names
//! one. `docs/protocol.md` is the normative description; a test checks that it, these types and
//! the JSDoc typedefs in `web/sdk/protocol.js` name the same messages and fields.
//!
//! Client messages come in two scopes: [`SessionMsg`] (`join`, `resume`, `pong`: about the
//! session and its connection) and [`RoomMsg`] (everything the room core handles). Relayed
//! payloads ([`Description`], [`Candidate`]) stay the JSON text the sender wrote. This crate
//! does no IO.

mod envelope;
mod payload;
pub mod schema;

use serde::{Deserialize, Serialize};

pub use envelope::DecodeError;
pub use payload::{Candidate, Description, SdpKind};

/// The protocol version a client must send in its `join`, echoed in `joined`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A member of a room, as the server identifies it. Unique on this server for its lifetime.
pub type MemberId = u64;

/// A call between two members. Unique on this server for its lifetime.
pub type CallId = u64;

/// A client message and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The client's sequence number, when it numbers its messages (processed once each).
    pub cn: Option<u64>,
    pub msg: ClientMsg,
}

/// A server message and its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    /// The session's sequence number; `ping` and `resumed`, which are about the connection,
    /// have none.
    pub sn: Option<u64>,
    pub msg: ServerMsg,
}

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    Session(SessionMsg),
    Room(RoomMsg),
}

/// Client messages about the session and its connection, handled by the session layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum SessionMsg {
    /// Enter a room. Must be the first message (or `create`); carries the protocol version.
    /// In a private room, a guest waits in its lobby until a host admits it; `host_key` (from
    /// the host link) enters as a host.
    Join {
        version: u32,
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_key: Option<String>,
        /// An access token (JWT) from the product's back end: required with `--access token`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        access_token: Option<String>,
    },
    /// Instead of `join`: make a new private room, with an unguessable id, and enter it as its
    /// host.
    Create { version: u32, name: String },
    /// Instead of `join` on a new connection: take back a session whose connection dropped.
    Resume {
        version: u32,
        token: String,
        /// The highest `sn` this client has received.
        last_sn: u64,
        /// The page was reloaded: it kept its token but nothing else, so instead of the
        /// replay it gets the room afresh (`joined`, with its call), and the others make new
        /// peer connections to it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reloaded: bool,
    },
    /// The answer to `ping`, acknowledging every message up to `ack` (an `sn`).
    Pong { ack: u64 },
}

/// Client messages for the room core, once joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum RoomMsg {
    /// Leave the room (the connection stays open and may join again).
    Leave,
    /// Ring another member of the same room.
    Invite { to: MemberId },
    /// The caller withdraws a ringing invite.
    Cancel { call_id: CallId },
    /// The callee accepts a ringing call.
    Accept { call_id: CallId },
    /// The callee declines a ringing call.
    Decline { call_id: CallId },
    /// Either party ends an accepted call.
    Hangup { call_id: CallId },
    /// A party of an accepted 1:1 call tells how long its peer connection took to reach
    /// `connected` after `accepted` (milliseconds, its own clock): once per side, for the
    /// setup-time metric and the `call_ended` webhook.
    CallConnected { call_id: CallId, setup_ms: u64 },
    /// A party of a 1:1 call that was accepted tells, once, how its media went, within
    /// [`QUALITY_REPORT_WINDOW`] after the call ended: for the server's log and metrics.
    CallQuality { call_id: CallId, report: QualityReport },
    /// An SDP offer or answer for the peer connection of an accepted call. In a group call
    /// `to` names the participant the peer connection is with.
    Description {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<MemberId>,
        description: Description,
    },
    /// A trickled ICE candidate; `null` marks the end of candidates. `to` as for `description`.
    Candidate {
        call_id: CallId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<MemberId>,
        #[serde(default)]
        candidate: Candidate,
    },
    /// The sender's microphone / camera / screen-share state, shown to the other parties.
    Media {
        call_id: CallId,
        audio: bool,
        video: bool,
        #[serde(default)]
        screen: bool,
        /// Devices that could not be opened (missing, or access refused), not just turned off.
        #[serde(default, skip_serializing_if = "Unavailable::is_none")]
        unavailable: Unavailable,
    },
    /// The session description of this member's one peer connection to the server's SFU, in a
    /// group call whose `media` is `sfu`: the first offer, then answers to the SFU's offers.
    SfuDescription {
        call_id: CallId,
        description: Description,
    },
    /// How this member shows the videos the SFU forwards to it, so that each gets the layer
    /// its tile needs and none when off screen. Each (member, source) listed replaces what
    /// was said of it; at most [`MAX_VIEW_TRACKS`] entries.
    SfuView { call_id: CallId, tracks: Vec<ViewTrack> },
    /// Join the room's group call, starting it if none is running.
    GroupJoin,
    /// Leave the room's group call.
    GroupLeave,
    /// A chat message to everyone in the room.
    Chat { text: String },
    /// Host: let a member waiting in the lobby in.
    Admit { id: MemberId },
    /// Host: turn a member waiting in the lobby away.
    Deny { id: MemberId },
    /// Host: take a member out of the room; it must knock to come back.
    Remove { id: MemberId },
    /// Host: ask a member to mute its microphone (it may unmute itself).
    Mute { id: MemberId },
    /// Host: make another member a host too.
    MakeHost { id: MemberId },
    /// Host: change the room's settings; fields left out stay as they are.
    RoomSettings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lobby: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        share_history: Option<bool>,
    },
    /// Host: end the room for everyone.
    EndRoom,
}

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum ServerMsg {
    /// Reply to `join`: who you are, who is already here, and how to reach them.
    Joined {
        /// Filled in by the session layer, which owns tokens and timing.
        #[serde(flatten)]
        session: Option<SessionFields>,
        version: u32,
        room: String,
        you: Member,
        members: Vec<Member>,
        ice_servers: Vec<IceServer>,
        ring_timeout_ms: u64,
        /// Whether 1:1 calls connect while they ring, and how (absent from an older server:
        /// `off`).
        #[serde(default)]
        preconnect: Preconnect,
        /// The room's group call, if one is running.
        group: Option<GroupCall>,
        /// The room's recent chat, oldest first (in a private room, what this member may read).
        chat: Vec<ChatEntry>,
        /// Private or named, and its settings.
        state: RoomState,
        /// To hosts of a private room: the key of the host link (`null` for everyone else).
        #[serde(default)]
        host_key: Option<String>,
        /// The members (of `members`) in a 1:1 call now.
        #[serde(default)]
        in_call: Vec<MemberId>,
        /// After a reloaded `resume`: this member's 1:1 call, ringing or active (`null` otherwise).
        #[serde(default)]
        call: Option<Box<CurrentCall>>,
    },
    /// Reply to `join` in a private room with its lobby on: wait for a host to admit you
    /// (`joined` follows) or deny you (`denied`). The session may resume while it waits.
    Waiting {
        /// Filled in by the session layer, as in `joined`.
        #[serde(flatten)]
        session: Option<SessionFields>,
        room: String,
        you: Member,
    },
    /// To the hosts: someone waits in the lobby.
    Knock { member: Member },
    /// To the hosts: a knock is over (admitted, denied, or the knocker left).
    KnockEnded {
        id: MemberId,
        outcome: KnockOutcome,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<MemberId>,
    },
    /// To a member waiting in the lobby: a host turned it away. It is out of the room.
    Denied { room: String },
    /// To a member a host (or the product's back end, through the REST API: no `by`) removed.
    /// It is out of the room.
    Removed {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<MemberId>,
    },
    /// To a member a host (or the REST API: no `by`) asked to mute its microphone.
    MuteRequest {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<MemberId>,
    },
    /// To everyone in the room: a member's details changed (it became a host).
    MemberUpdated { member: Member },
    /// To a member made host: the key of the host link.
    HostKey { host_key: String },
    /// To everyone in the room when a host changes its settings.
    RoomState(RoomState),
    /// To everyone in the room and its lobby: a host ended it (or the REST API, or its time
    /// ran out: no `by`). Everyone is out.
    RoomEnded {
        room: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<MemberId>,
    },
    /// Reply to `resume`: the session is back; messages it missed follow (their `sn`s continue
    /// where it left off). The client re-sends its own messages numbered above `last_cn`.
    /// `token` replaces the one just used, which no longer works.
    Resumed {
        version: u32,
        last_cn: u64,
        token: String,
    },
    /// Heartbeat; answer with `pong`. `ack` is the highest client `cn` processed.
    Ping { ack: u64 },
    /// Fresh TURN credentials, sent while the member stays, before the previous ones expire:
    /// use them for every peer connection from now on (the ones in `joined` then stop
    /// allocating new relays).
    IceServers { ice_servers: Vec<IceServer> },
    /// The server is about to restart: reconnect (with backoff) and join again.
    Reconnect { reason: String },
    /// Reply to `leave`.
    Left { room: String },
    /// Someone entered your room.
    MemberJoined { member: Member },
    /// Someone left your room (or their connection closed).
    MemberLeft { id: MemberId },
    /// Someone in your room lost their connection and may come back (`reconnecting`), or came
    /// back (`online`). After the grace period without coming back, `member_left` follows.
    MemberState {
        id: MemberId,
        state: Presence,
        /// With `online`: its page was reloaded, so its peer connections are gone; the others
        /// make new ones to it in the calls they share.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reloaded: bool,
    },
    /// To everyone else in the room: a member's 1:1 call became active (`in_call`), or ended.
    MemberCall { id: MemberId, in_call: bool },
    /// To a member who was busy (ringing or in a call): `from` tried to call it.
    CallAttempt { from: MemberId, name: String },
    /// To the caller: the invite is ringing at `peer`.
    Ringing { call_id: CallId, peer: MemberId },
    /// To the callee: `from` is calling.
    Incoming {
        call_id: CallId,
        from: MemberId,
        name: String,
    },
    /// To both parties: the call is accepted; set up the peer connection.
    /// `polite` is the perfect-negotiation role (the callee is polite).
    Accepted {
        call_id: CallId,
        peer: MemberId,
        polite: bool,
    },
    /// To both parties (or just the caller when the callee was busy): the call is over.
    CallEnded {
        call_id: CallId,
        peer: MemberId,
        reason: EndReason,
        /// Who caused the end, when a member did (hang-up, cancel, decline, leave).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        by: Option<MemberId>,
    },
    /// Relayed from the other party of the call.
    Description {
        call_id: CallId,
        from: MemberId,
        description: Description,
    },
    /// Relayed from the other party of the call.
    Candidate {
        call_id: CallId,
        from: MemberId,
        candidate: Candidate,
    },
    /// Relayed from the other party of the call.
    Media {
        call_id: CallId,
        from: MemberId,
        audio: bool,
        video: bool,
        screen: bool,
        #[serde(default, skip_serializing_if = "Unavailable::is_none")]
        unavailable: Unavailable,
    },
    /// To every member of the room whenever its group call starts, changes or ends (an empty
    /// `participants` list means it ended).
    GroupCall(GroupCall),
    /// From the server's SFU: its answer to the member's offer, or an offer of its own when
    /// the tracks it forwards change; `tracks` names every forwarded track by its mid.
    SfuDescription {
        call_id: CallId,
        description: Description,
        tracks: Vec<SfuTrack>,
    },
    /// To every participant of an SFU group call: `member` is speaking now (from the audio
    /// levels its microphone packets carry, smoothed).
    ActiveSpeaker { call_id: CallId, member: MemberId },
    /// To a participant of an SFU group call: the SFU no longer holds its peer connection (the
    /// server restarted, or the room moved to another node of a cluster), but the call goes on.
    /// Make a new peer connection and offer again (`sfu_description`), as when joining.
    SfuRestart { call_id: CallId },
    /// A chat message, stamped by the server, to everyone in the room (the sender too).
    Chat(ChatEntry),
    /// A request was refused; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        /// The `type` of the client message that caused it, when known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request: Option<String>,
    },
}

/// The session fields of `joined`: how to resume, and the timing the client needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionFields {
    /// For `resume`: 128 random bits, hex.
    pub token: String,
    /// Silence after which either side counts the connection as dropped.
    pub heartbeat_ms: u64,
    /// How long a dropped session may come back.
    pub resume_grace_ms: u64,
}

/// Which of a member's devices could not be opened at all (none there, or access refused), as
/// opposed to turned off: the others say "camera unavailable" rather than "camera off".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unavailable {
    #[serde(default)]
    pub audio: bool,
    #[serde(default)]
    pub video: bool,
}

impl Unavailable {
    pub const NONE: Self = Self {
        audio: false,
        video: false,
    };

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }
}

/// A member's 1:1 call as `joined` gives it after a reload, so the page picks it up again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentCall {
    pub call_id: CallId,
    /// The other party, and its name.
    pub peer: MemberId,
    pub name: String,
    /// `true` when this member called (it is then the impolite side, as in `accepted`).
    pub outgoing: bool,
    /// Still ringing, or accepted.
    pub active: bool,
    /// When it was accepted, server time in milliseconds since the Unix epoch (for the call's
    /// duration), `null` while it rings.
    pub since: Option<u64>,
}

/// A room's group call: a full mesh between its participants, or one peer connection each to
/// the server's SFU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCall {
    pub call_id: CallId,
    /// In the order they joined.
    pub participants: Vec<MemberId>,
    /// How media flows (`--group-media`); calls kept from before the SFU were meshes.
    #[serde(default)]
    pub media: GroupMedia,
}

/// How a group call's media flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupMedia {
    /// Every browser to every other (`--mesh-limit` people at most).
    #[default]
    Mesh,
    /// Every browser to the server's SFU, which forwards (`--group-limit` people at most).
    Sfu,
}

/// One track the SFU forwards to a member: the mid of its m-line there, whose it is, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SfuTrack {
    pub mid: String,
    pub member: MemberId,
    pub source: TrackSource,
}

/// Most entries of one `sfu_view`.
pub const MAX_VIEW_TRACKS: usize = 100;
/// Largest width or height a `sfu_view` may give, device pixels.
pub const MAX_VIEW_PIXELS: u32 = 16_384;

/// How a member shows one forwarded video (`sfu_view`): its tile's size in device pixels, and
/// whether it is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ViewTrack {
    pub member: MemberId,
    pub source: TrackSource,
    pub width: u32,
    pub height: u32,
    pub visible: bool,
}

/// What a published track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Audio,
    Camera,
    Screen,
}

/// A room's kind and settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomState {
    /// Made with `create`: only people with the link find it, and hosts are in charge.
    pub private: bool,
    /// Guests wait in the lobby until a host admits them.
    pub lobby: bool,
    /// Nobody new may enter, not even the lobby (hosts with the host key may).
    pub locked: bool,
    /// People admitted later read the chat from before they came.
    pub share_history: bool,
}

/// How a knock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KnockOutcome {
    Admitted,
    Denied,
    /// The knocker left (or its connection ended).
    Left,
}

/// One chat message as the server stamped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEntry {
    /// Position in the room's chat, from 1; everyone sees the same order.
    pub seq: u64,
    pub from: MemberId,
    /// The sender's display name.
    pub name: String,
    pub text: String,
    /// Server time, milliseconds since the Unix epoch.
    pub at: u64,
}

/// How the two browsers of a 1:1 call connect while it rings (`--preconnect`): the server then
/// relays `description` and `candidate` between the parties of a ringing call, so that ICE and
/// DTLS are done by the time the callee accepts. No media flows before `accepted`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preconnect {
    /// Through the TURN relay only (`iceTransportPolicy: 'relay'`), so neither side learns the
    /// other's addresses before accept; after it, ICE restarts with every candidate and may
    /// move to a direct path.
    Relay,
    /// With every candidate from the start (the callee's addresses reach the caller while it
    /// rings).
    Direct,
    /// Not at all: the peer connections are made on `accepted`.
    #[default]
    Off,
}

impl Preconnect {
    /// Whether ringing calls carry negotiation.
    pub fn enabled(self) -> bool {
        self != Self::Off
    }
}

/// Whether a member's connection is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Online,
    Reconnecting,
}

/// A member as others see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    /// Unique in the room: the server appends " (2)" and so on to a name already there.
    pub name: String,
    /// A host of a private room.
    #[serde(default)]
    pub host: bool,
    /// What the member may send in calls; absent when everything is allowed.
    #[serde(default, skip_serializing_if = "Publish::is_all")]
    pub publish: Publish,
}

/// How long after a call ended its parties may still send their `call_quality` report.
pub const QUALITY_REPORT_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// How one party's media went in a 1:1 call, from its peer connection's statistics
/// (`call_quality`): the path the media took and summaries of the samples taken while it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QualityReport {
    /// The selected local candidate's type: how directly the media went.
    pub path: CandidatePath,
    /// How it went to the other side (or to the TURN server, when relayed).
    pub transport: MediaTransport,
    /// Round-trip time: the average and the worst sample, milliseconds.
    pub rtt_avg_ms: u32,
    pub rtt_max_ms: u32,
    /// Received packets lost, per mille: the average and the worst sample.
    pub loss_avg_permille: u32,
    pub loss_max_permille: u32,
    /// Times the received video froze.
    pub freezes: u32,
}

impl QualityReport {
    /// Longest round trip a report may claim, milliseconds: more is a broken clock or a lie.
    pub const MAX_RTT_MS: u32 = 60_000;
    /// Most freezes a report may claim.
    pub const MAX_FREEZES: u32 = 100_000;

    /// Why this report cannot be true, if it cannot.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.rtt_avg_ms > self.rtt_max_ms || self.rtt_max_ms > Self::MAX_RTT_MS {
            Some("rttAvgMs must be at most rttMaxMs, and rttMaxMs at most 60000")
        } else if self.loss_avg_permille > self.loss_max_permille || self.loss_max_permille > 1000 {
            Some("lossAvgPermille must be at most lossMaxPermille, and that at most 1000")
        } else if self.freezes > Self::MAX_FREEZES {
            Some("freezes must be at most 100000")
        } else {
            None
        }
    }
}

/// An ICE candidate type, as `getStats` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CandidatePath {
    Host,
    Srflx,
    Prflx,
    Relay,
}

/// The transport media took: UDP, TCP, or TLS (TURN over TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaTransport {
    Udp,
    Tcp,
    Tls,
}

/// What a member may send in calls: an access token's `audio`, `video` and `screen`
/// permissions. The server refuses `media` states beyond them, and the other browsers play no
/// track of a kind the sender may not send (media flows peer to peer, past the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
}

impl Default for Publish {
    fn default() -> Self {
        Self::ALL
    }
}

impl Publish {
    pub const ALL: Self = Self {
        audio: true,
        video: true,
        screen: true,
    };

    pub fn is_all(&self) -> bool {
        *self == Self::ALL
    }

    /// Whether a `media` state of microphone `audio` on, camera `video` on and `screen` shared
    /// stays within these permissions.
    pub fn allows(&self, audio: bool, video: bool, screen: bool) -> bool {
        (self.audio || !audio) && (self.video || !video) && (self.screen || !screen)
    }
}

/// An `RTCIceServer` as the browser takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub credential: Option<String>,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The callee declined.
    Declined,
    /// The caller cancelled while it rang.
    Cancelled,
    /// Nobody answered within the ring timeout.
    NoAnswer,
    /// The callee was already ringing or in a call.
    Busy,
    /// A party hung up an accepted call.
    Hangup,
    /// A party left the room or lost its connection.
    Left,
}

/// Stable error codes; the `message` beside them is for people and may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, or a known type with missing or invalid fields.
    BadMessage,
    /// A `type` this server does not know.
    UnknownType,
    /// The frame is larger than the server accepts.
    MessageTooLarge,
    /// `join.version` is not one this server speaks.
    UnsupportedVersion,
    /// A room message before `join`.
    NotJoined,
    /// `join` while already in a room.
    AlreadyJoined,
    /// The display name is empty, too long or has control characters.
    InvalidName,
    /// The room id is empty, too long or has characters other than letters, digits, `-_.`.
    InvalidRoom,
    /// The room has reached its capacity.
    RoomFull,
    /// The addressed member is not in your room.
    UnknownMember,
    /// You cannot call yourself.
    InvalidTarget,
    /// You are already ringing or in a call.
    AlreadyInCall,
    /// No call with that id that you are a party of.
    UnknownCall,
    /// The call is not in a state where that message is allowed.
    InvalidCallState,
    /// You are not in the room's group call.
    NotInCall,
    /// The group call has reached its mesh limit (`--mesh-limit`) or group limit (`--group-limit`).
    CallFull,
    /// The server's SFU holds as many sessions as it may (`--sfu-max-sessions`), or it is off.
    SfuUnavailable,
    /// A `sfu_view` with more than [`MAX_VIEW_TRACKS`] entries, or a size over
    /// [`MAX_VIEW_PIXELS`].
    InvalidView,
    /// A chat message that is empty or larger than 4 KiB.
    InvalidChat,
    /// Joining would create a room beyond the server's limit of rooms.
    TooManyRooms,
    /// Your address already holds its share of seats in that room.
    TooManySeats,
    /// More messages than the per-connection rate allows; the message was dropped.
    RateLimited,
    /// `resume` with a token that is unknown, expired, or not this session's.
    InvalidToken,
    /// Only a host of the room may do that.
    NotHost,
    /// Waiting in the lobby: nothing but `leave` until a host admits you.
    NotAdmitted,
    /// The room is locked: nobody new may enter.
    RoomLocked,
    /// No private room with that id (it ended, or never existed).
    RoomNotFound,
    /// `join` with a host key that is not this room's.
    InvalidHostKey,
    /// This server makes private rooms only (`--access private`): use `create`.
    PrivateOnly,
    /// The member is not waiting in the lobby.
    NotWaiting,
    /// This server admits only holders of an access token (`--access token`).
    TokenRequired,
    /// The access token is malformed or not signed with this server's API secret.
    TokenInvalid,
    /// The access token has expired.
    TokenExpired,
    /// The access token is for another room.
    TokenWrongRoom,
    /// A host removed the token's identity from this room.
    TokenRevoked,
    /// The access token does not allow that (chat).
    NotPermitted,
}

impl ClientMsg {
    /// Every client message kind: session messages, then room messages.
    pub fn kinds() -> impl Iterator<Item = &'static str> {
        SessionMsg::kinds().iter().chain(RoomMsg::kinds()).copied()
    }

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        envelope::kind_of(self)
    }
}

impl Serialize for ClientMsg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Session(msg) => msg.serialize(s),
            Self::Room(msg) => msg.serialize(s),
        }
    }
}

impl From<SessionMsg> for ClientMsg {
    fn from(msg: SessionMsg) -> Self {
        Self::Session(msg)
    }
}

impl From<RoomMsg> for ClientMsg {
    fn from(msg: RoomMsg) -> Self {
        Self::Room(msg)
    }
}

impl SessionMsg {
    pub fn kinds() -> &'static [&'static str] {
        envelope::kinds::<Self>()
    }
}

impl RoomMsg {
    pub fn kinds() -> &'static [&'static str] {
        envelope::kinds::<Self>()
    }

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        envelope::kind_of(self)
    }
}

impl ServerMsg {
    pub fn kinds() -> &'static [&'static str] {
        envelope::kinds::<Self>()
    }

    /// This message's `type`.
    pub fn kind(&self) -> &'static str {
        envelope::kind_of(self)
    }

    /// Appends this message, numbered `sn` when given, to `out` as one JSON object.
    pub fn encode(&self, sn: Option<u64>, out: &mut Vec<u8>) {
        envelope::encode(self, sn.map(|n| ("sn", n)), out);
    }

    /// About how many bytes the encoded message takes, so that it is written into a buffer
    /// that does not need to grow.
    pub fn size_hint(&self) -> usize {
        let variable = match self {
            Self::Description { description, .. } => description.json().len(),
            Self::SfuDescription {
                description, tracks, ..
            } => description.json().len() + 48 * tracks.len(),
            Self::Candidate { candidate, .. } => candidate.json().len(),
            Self::Chat(entry) => entry.text.len() + entry.name.len(),
            Self::Joined { members, chat, .. } => 600 + 72 * members.len() + 4200 * chat.len().min(4),
            Self::Error { message, .. } => message.len(),
            _ => 0,
        };
        variable + 112
    }

    /// The JSON text of this message without a sequence number.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.encode(None, &mut out);
        // serde_json writes UTF-8 only.
        String::from_utf8(out).unwrap_or_default()
    }

    /// An `error` answering a message of kind `request`.
    pub fn error(code: ErrorCode, message: String, request: Option<&str>) -> Self {
        Self::Error {
            code,
            message,
            request: request.map(str::to_owned),
        }
    }
}

impl ClientFrame {
    /// Appends this frame to `out` as one JSON object.
    pub fn encode(&self, out: &mut Vec<u8>) {
        envelope::encode(&self.msg, self.cn.map(|n| ("cn", n)), out);
    }
}

impl DecodeError {
    /// The `error` message that answers this failure.
    pub fn into_msg(self) -> ServerMsg {
        ServerMsg::Error {
            code: self.code,
            message: self.message,
            request: self.request,
        }
    }
}

/// Decodes one text frame from a client, telling malformed input from an unknown type.
pub fn decode_client(text: &str) -> Result<ClientFrame, DecodeError> {
    let parts = envelope::Parts::parse(text, "cn")?;
    let cn = parts.seq;
    let msg = if SessionMsg::kinds().contains(&parts.kind.as_str()) {
        ClientMsg::Session(parts.into_msg()?)
    } else {
        ClientMsg::Room(parts.into_msg()?)
    };
    Ok(ClientFrame { cn, msg })
}

/// Decodes one text frame from the server (for clients).
pub fn decode_server(text: &str) -> Result<ServerFrame, DecodeError> {
    let parts = envelope::Parts::parse(text, "sn")?;
    let sn = parts.seq;
    Ok(ServerFrame {
        sn,
        msg: parts.into_msg()?,
    })
}

#[cfg(test)]
mod tests;
