//! What the REST API does to rooms, on behalf of the product's back end: make a room (run like
//! a private room: hosts come by token or host key, guests knock), read rooms and who is in
//! them, remove or mute a participant, close a room. A room may have a time limit, after which
//! it ends as if closed. The edge authenticates the caller and speaks HTTP; the rules are here.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use visavis_protocol::{CallId, MemberId, ServerMsg};
use visavis_sansio::Now;

use crate::private::Private;
use crate::{is_private_id, validate_room, Core};

/// The longest time limit a room may have.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);

/// The creator the REST API's rooms are filed under among empty rooms (no address made them).
const API_CREATOR: IpAddr = IpAddr::V6(Ipv6Addr::UNSPECIFIED);

/// A room the REST API asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOptions {
    /// Its name, as in `join`; none for a private room, whose id the core makes.
    pub name: Option<String>,
    /// A private id (`~` and 128 random bits) rather than a name; by default when no name is
    /// given.
    pub private: Option<bool>,
    /// Guests knock and wait for a host.
    pub lobby: bool,
    /// Most members, at most `Config::room_capacity` (the default).
    pub capacity: Option<usize>,
    /// Ended for everyone this long after it was made.
    pub max_duration: Option<Duration>,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            name: None,
            private: None,
            lobby: true,
            capacity: None,
            max_duration: None,
        }
    }
}

/// A room as the REST API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: String,
    /// Its id is a private one (`~…`).
    pub private: bool,
    /// Run by hosts, with a lobby: private rooms, and named rooms a token or the API made.
    pub hosted: bool,
    pub lobby: bool,
    pub locked: bool,
    pub capacity: usize,
    /// Admitted members, and those waiting in the lobby.
    pub participants: usize,
    pub waiting: usize,
    /// Unix seconds.
    pub created_at: u64,
    pub ends_at: Option<u64>,
    /// The key of the host link, for hosted rooms.
    pub host_key: Option<String>,
}

/// A room with everyone in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomDetail {
    pub room: RoomInfo,
    /// In join order.
    pub participants: Vec<Participant>,
    /// In knock order.
    pub waiting: Vec<Participant>,
}

/// Someone in a room or its lobby.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: MemberId,
    pub name: String,
    pub host: bool,
    /// The identity (`sub`) of the access token it came with.
    pub identity: Option<String>,
    /// The 1:1 call it rings or talks in, or the room's group call it is in.
    pub call: Option<CallId>,
}

/// Why the REST API's request was refused; each has a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("no room {0:?}")]
    RoomNotFound(String),
    #[error("room {0:?} already exists")]
    RoomExists(String),
    #[error("{0}")]
    InvalidRoom(&'static str),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("nobody with id {0} is in that room or its lobby")]
    UnknownMember(MemberId),
    #[error("the server holds its maximum of {0} rooms")]
    TooManyRooms(usize),
}

impl ApiError {
    /// The stable code of the error body (docs/api.md).
    pub fn code(&self) -> &'static str {
        match self {
            Self::RoomNotFound(_) => "room_not_found",
            Self::RoomExists(_) => "room_exists",
            Self::InvalidRoom(_) => "invalid_room",
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnknownMember(_) => "unknown_member",
            Self::TooManyRooms(_) => "too_many_rooms",
        }
    }
}

impl Core {
    /// Makes a room for the REST API: hosted like a private room, kept an hour while nobody is
    /// in it, ended when its time limit runs out.
    pub fn api_create_room(&mut self, now: Now, options: RoomOptions) -> Result<RoomDetail, ApiError> {
        self.clock = Some(now.mono);
        let private = options.private.unwrap_or(options.name.is_none());
        let capacity = options.capacity.unwrap_or(self.config.room_capacity);
        if capacity == 0 || capacity > self.config.room_capacity {
            return Err(ApiError::InvalidRequest(format!(
                "capacity is 1 to {} (--room-capacity)",
                self.config.room_capacity
            )));
        }
        if let Some(d) = options.max_duration {
            if d.is_zero() || d > MAX_DURATION {
                return Err(ApiError::InvalidRequest(format!(
                    "maxDuration is 1 to {} seconds",
                    MAX_DURATION.as_secs()
                )));
            }
        }
        let name = match (options.name, private) {
            (None, true) => loop {
                let id = format!("~{}", self.fresh_secret());
                if !self.rooms.contains_key(&id) {
                    break id;
                }
            },
            (None, false) => {
                return Err(ApiError::InvalidRequest(
                    "a room that is not private needs a name".into(),
                ))
            }
            (Some(_), true) => {
                return Err(ApiError::InvalidRequest(
                    "a private room's id is made by the server: leave out the name".into(),
                ))
            }
            (Some(name), false) => {
                if is_private_id(&name) {
                    return Err(ApiError::InvalidRoom(
                        "ids of that form are private rooms' and made by the server",
                    ));
                }
                match validate_room(&name) {
                    Ok(valid) if valid == name => {}
                    Ok(_) => return Err(ApiError::InvalidRoom("room has whitespace around it")),
                    Err(err) => return Err(ApiError::InvalidRoom(err)),
                }
                if self.rooms.contains_key(&name) {
                    return Err(ApiError::RoomExists(name));
                }
                name
            }
        };
        if self.rooms.len() >= self.config.max_rooms {
            return Err(ApiError::TooManyRooms(self.config.max_rooms));
        }
        let mut hosted = Private::new(self.fresh_secret(), API_CREATOR);
        hosted.state.lobby = options.lobby;
        let room = self.open_room(now, &name, Some(hosted));
        room.api = true;
        room.capacity = capacity;
        let serial = room.serial;
        if let Some(d) = options.max_duration {
            room.ends_at = Some(now.unix_secs() + d.as_secs());
            self.time_limits.insert(serial, now.mono + d);
            self.limited.insert(serial, name.clone());
        }
        // Nobody is in it yet: it waits for its people like an empty private room.
        self.close_if_empty(&name);
        self.room(&name).ok_or(ApiError::RoomNotFound(name))
    }

    /// Every room, by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self.rooms.keys().filter_map(|r| self.room_info(r)).collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        rooms
    }

    /// `room` (its exact name) with everyone in it and in its lobby.
    pub fn room(&self, room: &str) -> Option<RoomDetail> {
        let info = self.room_info(room)?;
        let r = &self.rooms[room];
        let people = |ids: &[MemberId]| -> Vec<Participant> {
            ids.iter()
                .filter_map(|id| {
                    let m = self.members.get(id)?;
                    let group = r.group.as_ref().filter(|_| m.in_group).map(|g| g.call_id);
                    Some(Participant {
                        id: *id,
                        name: m.name.clone(),
                        host: m.host,
                        identity: m.identity.clone(),
                        call: m.call.or(group),
                    })
                })
                .collect()
        };
        let lobby = r.private.as_ref().map_or(&[][..], |p| &p.lobby[..]);
        Some(RoomDetail {
            room: info,
            participants: people(&r.members),
            waiting: people(lobby),
        })
    }

    fn room_info(&self, name: &str) -> Option<RoomInfo> {
        let r = self.rooms.get(name)?;
        let state = r.private.as_ref().map(|p| p.state);
        Some(RoomInfo {
            name: name.to_owned(),
            private: is_private_id(name),
            hosted: r.private.is_some(),
            lobby: state.is_some_and(|s| s.lobby),
            locked: state.is_some_and(|s| s.locked),
            capacity: r.capacity,
            participants: r.members.len(),
            waiting: r.private.as_ref().map_or(0, |p| p.lobby.len()),
            created_at: r.created_at,
            ends_at: r.ends_at,
            host_key: r.private.as_ref().map(|p| p.host_key.clone()),
        })
    }

    /// The member `id` of `room` or its lobby.
    fn api_member(&self, room: &str, id: MemberId) -> Result<&crate::MemberState, ApiError> {
        if !self.rooms.contains_key(room) {
            return Err(ApiError::RoomNotFound(room.to_owned()));
        }
        self.members
            .get(&id)
            .filter(|m| m.room == room)
            .ok_or(ApiError::UnknownMember(id))
    }

    /// Takes `id` out of `room` (or its lobby) for good, as a host's `remove` does: it gets
    /// `removed`, and in a hosted room its address must knock and its token's identity is
    /// refused from then on.
    pub fn api_remove(&mut self, now: Now, room: &str, id: MemberId) -> Result<(), ApiError> {
        self.clock = Some(now.mono);
        self.api_member(room, id)?;
        self.expel(id, None);
        Ok(())
    }

    /// Asks `id` in `room` to mute its microphone (`mute_request`).
    pub fn api_mute(&mut self, now: Now, room: &str, id: MemberId) -> Result<(), ApiError> {
        self.clock = Some(now.mono);
        if self.api_member(room, id)?.waiting {
            return Err(ApiError::UnknownMember(id));
        }
        self.send_member(id, ServerMsg::MuteRequest { by: None });
        Ok(())
    }

    /// Ends `room` for everyone in it and its lobby (`room_ended`); its name finds nothing
    /// from then on (a named room may be made again).
    pub fn api_close(&mut self, now: Now, room: &str) -> Result<(), ApiError> {
        self.clock = Some(now.mono);
        if !self.rooms.contains_key(room) {
            return Err(ApiError::RoomNotFound(room.to_owned()));
        }
        self.end_room_for_all(room, None);
        Ok(())
    }
}
