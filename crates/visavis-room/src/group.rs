//! The room's group call: one full mesh of peer connections between its participants, up to
//! the mesh limit. The server tracks who is in it and relays each pair's negotiation; media
//! flows peer to peer. Joining, leaving and dropping out are told to everyone in the room.

use visavis_protocol::{GroupCall, MemberId, ServerMsg};

use crate::{Core, RoomError};

impl Core {
    /// The group call of `me`'s room, if `me` is in it.
    pub(crate) fn group_of(&self, me: MemberId) -> Option<&GroupCall> {
        let state = self.members.get(&me).filter(|m| m.in_group)?;
        self.rooms.get(&state.room)?.group.as_ref()
    }

    /// `to`, if it is another participant of `me`'s group call.
    pub(crate) fn group_peer(&self, me: MemberId, to: Option<MemberId>) -> Result<MemberId, RoomError> {
        let group = self.group_of(me).ok_or(RoomError::NotInCall)?;
        match to {
            Some(to) if to != me && group.participants.contains(&to) => Ok(to),
            Some(to) => Err(RoomError::UnknownMember(to)),
            None => Err(RoomError::UnknownMember(0)),
        }
    }

    /// Sends `msg` to every participant of `me`'s group call but `me`.
    pub(crate) fn group_broadcast(&mut self, me: MemberId, msg: ServerMsg) {
        let others: Vec<MemberId> = self
            .group_of(me)
            .map(|g| g.participants.iter().copied().filter(|p| *p != me).collect())
            .unwrap_or_default();
        for p in others {
            self.send_member(p, msg.clone());
        }
    }

    pub(crate) fn group_join(&mut self, me: MemberId) -> Result<(), RoomError> {
        let state = &self.members[&me];
        if let Some(call) = state.call {
            return Err(RoomError::AlreadyInCall(call));
        }
        let room_id = state.room.clone();
        let mesh_limit = self.config.mesh_limit;
        let new_call = match self.rooms.get(&room_id) {
            Some(room) if room.group.is_none() => self.fresh_call_id(),
            _ => 0,
        };
        let room = self.rooms.get_mut(&room_id).ok_or(RoomError::NotJoined)?;
        let group = room.group.get_or_insert_with(|| GroupCall {
            call_id: new_call,
            participants: Vec::new(),
        });
        if group.participants.contains(&me) {
            return Err(RoomError::AlreadyInCall(group.call_id));
        }
        if group.participants.len() >= mesh_limit {
            return Err(RoomError::CallFull(mesh_limit));
        }
        group.participants.push(me);
        let msg = ServerMsg::GroupCall(group.clone());
        if let Some(m) = self.members.get_mut(&me) {
            m.in_group = true;
        }
        self.broadcast(&room_id, &msg);
        Ok(())
    }

    pub(crate) fn group_leave(&mut self, me: MemberId) -> Result<(), RoomError> {
        if self.group_of(me).is_none() {
            return Err(RoomError::NotInCall);
        }
        let room_id = self.members[&me].room.clone();
        if let Some(m) = self.members.get_mut(&me) {
            m.in_group = false;
        }
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return Ok(());
        };
        let Some(group) = room.group.as_mut() else {
            return Ok(());
        };
        group.participants.retain(|p| *p != me);
        let msg = ServerMsg::GroupCall(group.clone());
        if group.participants.is_empty() {
            room.group = None;
        }
        self.broadcast(&room_id, &msg);
        Ok(())
    }
}
