//! The visavis signalling wire format: every message a client sends or receives, typed once.
//!
//! Messages are JSON objects with a `type` field, sent as WebSocket text frames.
//! `docs/protocol.md` is the normative description; the names here match it field for field.
//! This crate does no IO: it only defines the types and how to decode client input.

use serde::{Deserialize, Serialize};

/// The protocol version a client must send in its `join`, echoed in `joined`.
pub const PROTOCOL_VERSION: u32 = 1;

/// A member of a room, as the server identifies it. Unique on this server for its lifetime.
pub type MemberId = u64;

/// A call between two members. Unique on this server for its lifetime.
pub type CallId = u64;

/// Messages a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum ClientMsg {
    /// Enter a room. Must be the first message; carries the protocol version.
    Join {
        version: u32,
        room: String,
        name: String,
    },
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
    /// An SDP offer or answer for the peer connection of an accepted call. In a group call
    /// `to` names the participant the peer connection is with.
    Description {
        call_id: CallId,
        #[serde(default)]
        to: Option<MemberId>,
        description: SessionDescription,
    },
    /// A trickled ICE candidate; `null` marks the end of candidates. `to` as for `description`.
    Candidate {
        call_id: CallId,
        #[serde(default)]
        to: Option<MemberId>,
        candidate: Option<IceCandidate>,
    },
    /// The sender's microphone / camera / screen-share state, shown to the other parties.
    Media {
        call_id: CallId,
        audio: bool,
        video: bool,
        #[serde(default)]
        screen: bool,
    },
    /// Instead of `join` on a new connection: take back a session whose connection dropped.
    Resume {
        version: u32,
        token: String,
        /// The highest `sn` this client has received.
        last_sn: u64,
    },
    /// The answer to `ping`, acknowledging every message up to `ack` (an `sn`).
    Pong { ack: u64 },
    /// Join the room's group call, starting it if none is running.
    GroupJoin,
    /// Leave the room's group call.
    GroupLeave,
    /// A chat message to everyone in the room.
    Chat { text: String },
}

/// Every client message type, for telling an unknown type from a malformed known one.
pub const CLIENT_MSG_TYPES: &[&str] = &[
    "join",
    "leave",
    "invite",
    "cancel",
    "accept",
    "decline",
    "hangup",
    "description",
    "candidate",
    "media",
    "group_join",
    "group_leave",
    "chat",
    "resume",
    "pong",
];

/// Messages the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", rename_all_fields = "camelCase")]
pub enum ServerMsg {
    /// Reply to `join`: who you are, who is already here, and how to reach them.
    Joined {
        version: u32,
        room: String,
        you: Member,
        members: Vec<Member>,
        ice_servers: Vec<IceServer>,
        ring_timeout_ms: u64,
        /// The room's group call, if one is running.
        group: Option<GroupCall>,
        /// The room's recent chat, oldest first.
        chat: Vec<ChatEntry>,
    },
    /// Reply to `resume`: the session is back; messages it missed follow (their `sn`s continue
    /// where it left off). The client re-sends its own messages numbered above `last_cn`.
    Resumed { version: u32, last_cn: u64 },
    /// Heartbeat; answer with `pong`. `ack` is the highest client `cn` processed.
    Ping { ack: u64 },
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
    MemberState { id: MemberId, state: Presence },
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
        description: SessionDescription,
    },
    /// Relayed from the other party of the call.
    Candidate {
        call_id: CallId,
        from: MemberId,
        candidate: Option<IceCandidate>,
    },
    /// Relayed from the other party of the call.
    Media {
        call_id: CallId,
        from: MemberId,
        audio: bool,
        video: bool,
        screen: bool,
    },
    /// To every member of the room whenever its group call starts, changes or ends (an empty
    /// `participants` list means it ended).
    GroupCall {
        #[serde(flatten)]
        call: GroupCall,
    },
    /// A chat message, stamped by the server, to everyone in the room (the sender too).
    Chat {
        #[serde(flatten)]
        entry: ChatEntry,
    },
    /// A request was refused; the connection stays open.
    Error {
        code: ErrorCode,
        message: String,
        /// The `type` of the client message that caused it, when known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        request: Option<String>,
    },
}

/// A room's group call: a full mesh between its participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCall {
    pub call_id: CallId,
    /// In the order they joined.
    pub participants: Vec<MemberId>,
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
    pub name: String,
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

/// `RTCSessionDescriptionInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    #[serde(rename = "type")]
    pub kind: SdpKind,
    #[serde(default)]
    pub sdp: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    Offer,
    Answer,
    Pranswer,
    Rollback,
}

/// `RTCIceCandidateInit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sdp_mid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sdp_m_line_index: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub username_fragment: Option<String>,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The group call has reached its mesh limit.
    CallFull,
    /// A chat message that is empty or larger than 4 KiB.
    InvalidChat,
    /// Joining would create a room beyond the server's limit of rooms.
    TooManyRooms,
    /// More messages than the per-connection rate allows; the message was dropped.
    RateLimited,
    /// `resume` with a token that is unknown, expired, or not this session's.
    InvalidToken,
}

/// Why a text frame could not be decoded into a [`ClientMsg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
    /// The `type` field, when the frame had a readable one.
    pub request: Option<String>,
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

/// Decodes one text frame, telling malformed input from an unknown message type.
pub fn decode_client(text: &str) -> Result<ClientMsg, DecodeError> {
    serde_json::from_str(text).map_err(|err| {
        #[derive(Deserialize)]
        struct TypeOnly {
            #[serde(rename = "type")]
            kind: String,
        }
        match serde_json::from_str::<TypeOnly>(text) {
            Ok(TypeOnly { kind }) if !CLIENT_MSG_TYPES.contains(&kind.as_str()) => DecodeError {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type {kind:?}"),
                request: Some(kind),
            },
            Ok(TypeOnly { kind }) => DecodeError {
                code: ErrorCode::BadMessage,
                message: format!("invalid {kind:?} message: {err}"),
                request: Some(kind),
            },
            Err(_) => DecodeError {
                code: ErrorCode::BadMessage,
                message: format!("expected a JSON object with a string \"type\": {err}"),
                request: None,
            },
        }
    })
}

impl ServerMsg {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no foreign types.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_round_trips_in_camel_case() {
        let msg = decode_client(r#"{"type":"join","version":1,"room":"r1","name":"Ann"}"#);
        assert_eq!(
            msg,
            Ok(ClientMsg::Join {
                version: 1,
                room: "r1".into(),
                name: "Ann".into()
            })
        );
        let accept = decode_client(r#"{"type":"accept","callId":7}"#);
        assert_eq!(accept, Ok(ClientMsg::Accept { call_id: 7 }));
    }

    #[test]
    fn candidate_null_means_end_of_candidates() {
        let msg = decode_client(r#"{"type":"candidate","callId":3,"candidate":null}"#);
        assert_eq!(
            msg,
            Ok(ClientMsg::Candidate {
                call_id: 3,
                to: None,
                candidate: None
            })
        );
    }

    #[test]
    fn every_listed_type_is_decodable_and_nothing_else() {
        // A known type with no fields must be BadMessage (or valid), never UnknownType.
        for kind in CLIENT_MSG_TYPES {
            let res = decode_client(&format!(r#"{{"type":"{kind}"}}"#));
            if let Err(e) = res {
                assert_eq!(e.code, ErrorCode::BadMessage, "{kind}");
            }
        }
        let err = decode_client(r#"{"type":"teleport"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownType);
        assert_eq!(err.request.as_deref(), Some("teleport"));
    }

    #[test]
    fn malformed_input_is_bad_message() {
        for text in [
            "",
            "nope",
            "[]",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"invite","to":"x"}"#,
        ] {
            assert_eq!(
                decode_client(text).unwrap_err().code,
                ErrorCode::BadMessage,
                "{text}"
            );
        }
    }

    #[test]
    fn server_messages_use_documented_names() {
        let msg = ServerMsg::CallEnded {
            call_id: 1,
            peer: 2,
            reason: EndReason::NoAnswer,
            by: None,
        };
        assert_eq!(
            msg.to_json(),
            r#"{"type":"call_ended","callId":1,"peer":2,"reason":"no_answer"}"#
        );
        let err = ServerMsg::Error {
            code: ErrorCode::RoomFull,
            message: "full".into(),
            request: Some("join".into()),
        };
        assert_eq!(
            err.to_json(),
            r#"{"type":"error","code":"room_full","message":"full","request":"join"}"#
        );
    }
}
