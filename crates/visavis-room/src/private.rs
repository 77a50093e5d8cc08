//! Private rooms: made by `create` with an unguessable id, run by hosts. Guests wait in the
//! lobby until a host admits them (they see nothing of the room meanwhile); hosts remove,
//! mute and promote members, lock the room, and end it. A private room with nobody in it
//! waits [`Config::private_room_ttl`](crate::Config) for a host to come back with the host
//! link, at most a few per creating address.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use visavis_protocol::{KnockOutcome, MemberId, RoomState, ServerMsg};
use visavis_sansio::{Deadlines, Now};

use crate::{Core, RoomError};

/// What a private room has beyond a named one.
#[derive(Debug, Clone)]
pub(crate) struct Private {
    pub host_key: String,
    pub state: RoomState,
    /// Waiting members, in knock order.
    pub lobby: Vec<MemberId>,
    /// Addresses of removed members: they knock even with the lobby off.
    pub must_knock: HashSet<IpAddr>,
    /// Who made the room (empty rooms are capped per creator).
    pub creator: IpAddr,
    /// Access-token identities a host removed: their tokens no longer let them in.
    pub revoked: HashSet<String>,
}

impl Private {
    /// A new private room's: the lobby on, history private.
    pub fn new(host_key: String, creator: IpAddr) -> Self {
        Self {
            host_key,
            state: RoomState {
                private: true,
                lobby: true,
                locked: false,
                share_history: false,
            },
            lobby: Vec::new(),
            must_knock: HashSet::new(),
            creator,
            revoked: HashSet::new(),
        }
    }

    /// Compares in time independent of where the keys differ.
    pub fn key_matches(&self, key: &str) -> bool {
        let (a, b) = (self.host_key.as_bytes(), key.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Empty private rooms: when each is dropped, and each creator's in the order they emptied.
#[derive(Debug, Default)]
pub(crate) struct EmptyRooms {
    deadlines: Deadlines<u64>,
    rooms: HashMap<u64, (String, IpAddr)>,
    numbers: HashMap<String, u64>,
    by_creator: HashMap<IpAddr, VecDeque<u64>>,
    next: u64,
}

impl EmptyRooms {
    /// Records `room` (by `creator`) as empty until `until`; returns the creator's oldest empty
    /// room if that makes more than `cap`.
    pub(crate) fn insert(
        &mut self,
        room: &str,
        creator: IpAddr,
        until: Instant,
        cap: usize,
    ) -> Option<String> {
        self.next += 1;
        let number = self.next;
        self.deadlines.insert(number, until);
        self.rooms.insert(number, (room.to_owned(), creator));
        self.numbers.insert(room.to_owned(), number);
        let queue = self.by_creator.entry(creator).or_default();
        queue.push_back(number);
        let oldest = (queue.len() > cap).then(|| queue.front().copied()).flatten()?;
        let (room, _) = self.rooms.get(&oldest)?.clone();
        self.forget(&room);
        Some(room)
    }

    /// `room` is in use again (or gone).
    pub fn forget(&mut self, room: &str) {
        let Some(number) = self.numbers.remove(room) else {
            return;
        };
        self.deadlines.remove(number);
        if let Some((_, creator)) = self.rooms.remove(&number) {
            if let Some(queue) = self.by_creator.get_mut(&creator) {
                queue.retain(|n| *n != number);
                if queue.is_empty() {
                    self.by_creator.remove(&creator);
                }
            }
        }
    }

    fn pop_due(&mut self, now: Instant) -> Option<String> {
        let number = self.deadlines.pop_due(now)?;
        let (room, _) = self.rooms.get(&number)?.clone();
        self.forget(&room);
        Some(room)
    }

    pub fn next(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    pub fn contains(&self, room: &str) -> bool {
        self.numbers.contains_key(room)
    }

    /// When empty `room` is dropped, if it waits empty.
    pub fn until(&self, room: &str) -> Option<Instant> {
        self.deadlines.get(*self.numbers.get(room)?)
    }
}

impl Core {
    pub(crate) fn create(
        &mut self,
        now: Now,
        session: u64,
        name: &str,
        from: IpAddr,
    ) -> Result<(), RoomError> {
        if let Some(member) = self.sessions.get(&session) {
            return Err(RoomError::AlreadyJoined(self.members[member].room.clone()));
        }
        let name = crate::validate_name(name).map_err(RoomError::InvalidName)?;
        if self.config.access_tokens.is_some() {
            return Err(RoomError::TokenRequired);
        }
        if self.rooms.len() >= self.config.max_rooms {
            return Err(RoomError::TooManyRooms(self.config.max_rooms));
        }
        let room = loop {
            let id = format!("~{}", (self.config.secrets.0)());
            if !self.rooms.contains_key(&id) {
                break id;
            }
        };
        let private = Private::new(self.fresh_secret(), from);
        self.open_room(now, &room, Some(private));
        let id = self.add_member(now, session, &room, &name, from, true);
        self.enter(now, id);
        Ok(())
    }

    /// Member `id` waits in its room's lobby: `waiting` to it, `knock` to the hosts.
    pub(crate) fn knock(&mut self, id: MemberId) {
        let room = self.members[&id].room.clone();
        if let Some(p) = self.rooms.get_mut(&room).and_then(|r| r.private.as_mut()) {
            p.lobby.push(id);
        }
        if let Some(m) = self.members.get_mut(&id) {
            m.waiting = true;
        }
        self.record(crate::Event::Knock(self.person(id)));
        let you = self.member(id);
        self.send_member(
            id,
            ServerMsg::Waiting {
                session: None,
                room: room.clone(),
                you: you.clone(),
            },
        );
        self.tell_hosts(&room, &ServerMsg::Knock { member: you });
    }

    /// Takes waiting member `id` out of the lobby (and the core unless admitted), telling the
    /// hosts how the knock ended. Returns the room.
    pub(crate) fn leave_lobby(
        &mut self,
        id: MemberId,
        outcome: KnockOutcome,
        by: Option<MemberId>,
    ) -> String {
        let room = self.members[&id].room.clone();
        if let Some(p) = self.rooms.get_mut(&room).and_then(|r| r.private.as_mut()) {
            p.lobby.retain(|m| *m != id);
        }
        if outcome != KnockOutcome::Admitted {
            if let Some(state) = self.members.remove(&id) {
                self.sessions.remove(&state.session);
            }
        }
        self.tell_hosts(&room, &ServerMsg::KnockEnded { id, outcome, by });
        self.close_if_empty(&room);
        room
    }

    /// `me`'s room, if `me` is one of its hosts.
    fn hosted_room(&self, me: MemberId) -> Result<String, RoomError> {
        let m = &self.members[&me];
        if !m.host {
            return Err(RoomError::NotHost);
        }
        Ok(m.room.clone())
    }

    /// `id`, if it waits in the lobby of host `me`'s room.
    fn waiting_in(&self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        let room = self.hosted_room(me)?;
        match self.members.get(&id) {
            Some(m) if m.waiting && m.room == room => Ok(()),
            _ => Err(RoomError::NotWaiting(id)),
        }
    }

    /// `id`, if it is another admitted member of host `me`'s room.
    fn other_member(&self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        let room = self.hosted_room(me)?;
        if id == me {
            return Err(RoomError::InvalidTarget);
        }
        match self.members.get(&id) {
            Some(m) if !m.waiting && m.room == room => Ok(()),
            _ => Err(RoomError::UnknownMember(id)),
        }
    }

    pub(crate) fn admit(&mut self, now: Now, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        self.waiting_in(me, id)?;
        self.leave_lobby(id, KnockOutcome::Admitted, Some(me));
        self.enter(now, id);
        Ok(())
    }

    pub(crate) fn deny(&mut self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        self.waiting_in(me, id)?;
        let session = self.members[&id].session;
        let room = self.leave_lobby(id, KnockOutcome::Denied, Some(me));
        self.send(session, ServerMsg::Denied { room });
        Ok(())
    }

    pub(crate) fn remove(&mut self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        self.other_member(me, id)?;
        self.expel(id, Some(me));
        Ok(())
    }

    /// Whether `identity` (a token's `sub`) was removed from `room` for good: its token is
    /// refused there (`token_revoked`), and by what else would serve it (the network check).
    pub fn identity_revoked(&self, room: &str, identity: &str) -> bool {
        self.rooms
            .get(room)
            .and_then(|r| r.private.as_ref())
            .is_some_and(|p| p.revoked.contains(identity))
    }

    /// Takes member `id` out of its room, or its lobby, for good (`by` a host, or the REST API):
    /// it gets `removed`, its address must knock to come back and its token's identity is
    /// refused.
    pub(crate) fn expel(&mut self, id: MemberId, by: Option<MemberId>) {
        let m = &self.members[&id];
        let (session, from, waiting) = (m.session, m.from, m.waiting);
        let (room, identity) = (m.room.clone(), m.identity.clone());
        if let Some(p) = self.rooms.get_mut(&room).and_then(|r| r.private.as_mut()) {
            p.must_knock.insert(from);
            p.revoked.extend(identity);
        }
        if waiting {
            self.leave_lobby(id, KnockOutcome::Denied, by);
        } else {
            self.remove_member(id);
        }
        self.send(session, ServerMsg::Removed { room, by });
    }

    pub(crate) fn mute(&mut self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        self.other_member(me, id)?;
        self.send_member(id, ServerMsg::MuteRequest { by: Some(me) });
        Ok(())
    }

    pub(crate) fn make_host(&mut self, me: MemberId, id: MemberId) -> Result<(), RoomError> {
        self.other_member(me, id)?;
        let room = self.members[&id].room.clone();
        if let Some(m) = self.members.get_mut(&id) {
            m.host = true;
        }
        let host_key = self.rooms[&room].private.as_ref().map(|p| p.host_key.clone());
        if let Some(host_key) = host_key {
            self.send_member(id, ServerMsg::HostKey { host_key });
        }
        let member = self.member(id);
        self.broadcast(&room, &ServerMsg::MemberUpdated { member });
        self.show_knocks(id);
        Ok(())
    }

    /// Tells host `id`, new to the role or the room, of everyone already waiting.
    pub(crate) fn show_knocks(&mut self, id: MemberId) {
        let room = &self.members[&id].room;
        let waiting: Vec<MemberId> = self.rooms[room]
            .private
            .iter()
            .flat_map(|p| p.lobby.clone())
            .collect();
        for knocker in waiting {
            let member = self.member(knocker);
            self.send_member(id, ServerMsg::Knock { member });
        }
    }

    pub(crate) fn room_settings(
        &mut self,
        now: Now,
        me: MemberId,
        lobby: Option<bool>,
        locked: Option<bool>,
        share_history: Option<bool>,
    ) -> Result<(), RoomError> {
        let room = self.hosted_room(me)?;
        let Some(p) = self.rooms.get_mut(&room).and_then(|r| r.private.as_mut()) else {
            return Err(RoomError::NotHost);
        };
        let state = &mut p.state;
        state.lobby = lobby.unwrap_or(state.lobby);
        state.locked = locked.unwrap_or(state.locked);
        state.share_history = share_history.unwrap_or(state.share_history);
        let state = *state;
        // The lobby off lets in those waiting (in the order they knocked).
        let admitted = if state.lobby { Vec::new() } else { p.lobby.clone() };
        self.broadcast(&room, &ServerMsg::RoomState(state));
        for id in admitted {
            self.leave_lobby(id, KnockOutcome::Admitted, Some(me));
            self.enter(now, id);
        }
        Ok(())
    }

    pub(crate) fn end_room(&mut self, me: MemberId) -> Result<(), RoomError> {
        let room = self.hosted_room(me)?;
        self.end_room_for_all(&room, Some(me));
        Ok(())
    }

    /// Ends `room` (`by` a host; by the REST API or its time limit: `None`). Everyone (members
    /// and the lobby) gets `room_ended` and nothing else: not the `member_left`, `call_ended`
    /// or `knock_ended` that taking them out one by one would send.
    pub(crate) fn end_room_for_all(&mut self, room: &str, by: Option<MemberId>) {
        // Gone for good: its id finds nothing from now on.
        let Some(r) = self.take_room(room) else {
            return;
        };
        let ended = ServerMsg::RoomEnded {
            room: room.to_owned(),
            by,
        };
        let everyone = r
            .members
            .iter()
            .chain(r.private.iter().flat_map(|p| p.lobby.iter()));
        let mut calls = Vec::new();
        let mut left = Vec::new();
        for id in everyone {
            let Some(state) = self.members.remove(id) else {
                continue;
            };
            self.sessions.remove(&state.session);
            self.renewals.remove(*id);
            self.no_redial.retain(|(a, b), _| a != id && b != id);
            if !state.waiting {
                left.push(crate::Person {
                    room: room.to_owned(),
                    member: *id,
                    name: state.name,
                    identity: state.identity,
                });
            }
            calls.extend(state.call);
            self.send(state.session, ended.clone());
        }
        // Both parties are gone: ending their calls only tidies up (nobody left to tell). The
        // events go as if everyone had left one by one: calls end, people leave, the room ends.
        for call in calls {
            self.end_call(call, visavis_protocol::EndReason::Left, by);
        }
        for person in left {
            self.record(crate::Event::Left(person));
        }
        self.record(crate::Event::RoomFinished {
            room: room.to_owned(),
        });
    }

    /// Drops `room` when nobody is in it or its lobby: a named room at once, a private one
    /// after it waited for a host to come back.
    pub(crate) fn close_if_empty(&mut self, room: &str) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        if !r.members.is_empty() || r.private.as_ref().is_some_and(|p| !p.lobby.is_empty()) {
            return;
        }
        let Some(creator) = r.private.as_ref().map(|p| p.creator) else {
            self.drop_room(room);
            return;
        };
        if self.empty_private.contains(room) {
            return;
        }
        let Some(until) = self.clock.map(|now| now + self.config.private_room_ttl) else {
            self.drop_room(room);
            return;
        };
        // The REST API is trusted with as many as `max_rooms`; an address with a few.
        let cap = if r.api {
            usize::MAX
        } else {
            self.config.empty_private_per_ip
        };
        if let Some(oldest) = self.empty_private.insert(room, creator, until, cap) {
            self.drop_room(&oldest);
        }
    }

    pub(crate) fn expire_empty_rooms(&mut self, now: Instant) {
        while let Some(room) = self.empty_private.pop_due(now) {
            self.drop_room(&room);
        }
    }

    /// Sends `msg` to the hosts of `room` who are in it.
    fn tell_hosts(&mut self, room: &str, msg: &ServerMsg) {
        let hosts: Vec<MemberId> = self
            .rooms
            .get(room)
            .into_iter()
            .flat_map(|r| r.members.iter())
            .filter(|m| self.members.get(m).is_some_and(|m| m.host))
            .copied()
            .collect();
        for host in hosts {
            self.send_member(host, msg.clone());
        }
    }
}
