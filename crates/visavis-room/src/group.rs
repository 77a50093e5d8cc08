//! The room's group call: one full mesh of peer connections between its participants (up to
//! the mesh limit), or one peer connection from each to the server's SFU (up to the group
//! limit). The server tracks who is in it and relays each pair's negotiation, or hands the
//! SFU's descriptions on. Joining, leaving and dropping out are told to everyone in the room.

use visavis_protocol::{
    CallId, Description, ErrorCode, GroupCall, GroupMedia, MemberId, SdpKind, ServerMsg, SfuTrack, ViewTrack,
    MAX_VIEW_PIXELS, MAX_VIEW_TRACKS,
};

use crate::{Core, Event, RoomError};

impl Core {
    /// The group call of `me`'s room, if `me` is in it.
    pub(crate) fn group_of(&self, me: MemberId) -> Option<&GroupCall> {
        let state = self.members.get(&me).filter(|m| m.in_group)?;
        self.rooms.get(&state.room)?.group.as_ref()
    }

    /// `me`'s group call `call_id`, if it goes through the SFU: what `action` needs.
    fn sfu_group(
        &self,
        me: MemberId,
        call_id: CallId,
        action: &'static str,
    ) -> Result<&GroupCall, RoomError> {
        let group = self.group_of(me).ok_or(RoomError::NotInCall)?;
        if group.call_id != call_id {
            return Err(RoomError::UnknownCall(call_id));
        }
        if group.media != GroupMedia::Sfu {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: "a mesh",
                action,
            });
        }
        Ok(group)
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
        let media = self.config.group_media;
        let limit = match media {
            GroupMedia::Mesh => self.config.mesh_limit,
            GroupMedia::Sfu => self.config.group_limit,
        };
        let new_call = match self.rooms.get(&room_id) {
            Some(room) if room.group.is_none() => self.fresh_call_id(),
            _ => 0,
        };
        let room = self.rooms.get_mut(&room_id).ok_or(RoomError::NotJoined)?;
        let group = room.group.get_or_insert_with(|| GroupCall {
            call_id: new_call,
            participants: Vec::new(),
            media,
        });
        if group.participants.contains(&me) {
            return Err(RoomError::AlreadyInCall(group.call_id));
        }
        if group.participants.len() >= limit {
            return Err(RoomError::CallFull(limit));
        }
        group.participants.push(me);
        let msg = ServerMsg::GroupCall(group.clone());
        let speaker = room
            .speaker
            .filter(|(call, _)| *call == group.call_id)
            .map(|(call_id, member)| ServerMsg::ActiveSpeaker { call_id, member });
        if let Some(m) = self.members.get_mut(&me) {
            m.in_group = true;
        }
        self.broadcast(&room_id, &msg);
        if let Some(speaker) = speaker {
            self.send_member(me, speaker);
        }
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
        let (call_id, media) = (group.call_id, group.media);
        if group.participants.is_empty() {
            room.group = None;
        }
        if media == GroupMedia::Sfu {
            self.record(Event::GroupLeft {
                room: room_id.clone(),
                call_id,
                member: me,
            });
        }
        self.broadcast(&room_id, &msg);
        Ok(())
    }

    /// `sfu_description`: handed to the SFU (as an event), for a participant of an SFU call.
    pub(crate) fn sfu_description(
        &mut self,
        now: std::time::Instant,
        me: MemberId,
        call_id: CallId,
        description: &Description,
    ) -> Result<(), RoomError> {
        self.sfu_group(me, call_id, "sfu_description")?;
        let (kind, sdp) = description.decode().ok_or(RoomError::InvalidCallState {
            call: call_id,
            state: "sfu",
            action: "a description without SDP",
        })?;
        if !matches!(kind, SdpKind::Offer | SdpKind::Answer) {
            return Err(RoomError::InvalidCallState {
                call: call_id,
                state: "sfu",
                action: "a pranswer or rollback",
            });
        }
        if kind == SdpKind::Offer {
            let offers = &mut self.members.get_mut(&me).ok_or(RoomError::NotJoined)?.sfu_offers;
            if !offers.take(now, 1.0) {
                return Err(RoomError::RateLimited(format!(
                    "too many offers to the SFU; at most {} a minute",
                    self.config.sfu_offer_rate * 60.0
                )));
            }
        }
        let (room, publish) = (self.members[&me].room.clone(), self.members[&me].publish);
        self.record(Event::SfuDescription {
            room,
            call_id,
            member: me,
            kind,
            sdp,
            publish,
        });
        Ok(())
    }

    /// `sfu_view`: how a participant of an SFU call shows its videos, handed to the SFU (as an
    /// event). Bounded in entries and sizes; its rate is the connection's message budget.
    pub(crate) fn sfu_view(
        &mut self,
        me: MemberId,
        call_id: CallId,
        tracks: Vec<ViewTrack>,
    ) -> Result<(), RoomError> {
        self.sfu_group(me, call_id, "sfu_view")?;
        if tracks.len() > MAX_VIEW_TRACKS {
            return Err(RoomError::InvalidView(format!(
                "at most {MAX_VIEW_TRACKS} tracks in one sfu_view"
            )));
        }
        if tracks
            .iter()
            .any(|t| t.width > MAX_VIEW_PIXELS || t.height > MAX_VIEW_PIXELS)
        {
            return Err(RoomError::InvalidView(format!(
                "a tile is at most {MAX_VIEW_PIXELS} pixels wide and high"
            )));
        }
        let room = self.members[&me].room.clone();
        self.record(Event::SfuView {
            room,
            call_id,
            member: me,
            tracks,
        });
        Ok(())
    }

    /// The SFU heard `member` become its call's active speaker: every participant is told,
    /// and the room keeps it for those who join later.
    pub fn sfu_active_speaker(&mut self, member: MemberId) {
        let Some(room) = self
            .members
            .get(&member)
            .filter(|m| m.in_group)
            .and_then(|m| self.rooms.get_mut(&m.room))
        else {
            return;
        };
        let Some(group) = room.group.as_ref().filter(|g| g.media == GroupMedia::Sfu) else {
            return;
        };
        room.speaker = Some((group.call_id, member));
        let msg = ServerMsg::ActiveSpeaker {
            call_id: group.call_id,
            member,
        };
        for p in group.participants.clone() {
            self.send_member(p, msg.clone());
        }
    }

    /// The SFU's description for `member` (its answer, or an offer of its own), sent on if
    /// the member is still in that SFU call.
    pub fn sfu_deliver(
        &mut self,
        member: MemberId,
        call_id: CallId,
        description: Description,
        tracks: Vec<SfuTrack>,
    ) {
        if self.group_of(member).is_some_and(|g| g.call_id == call_id) {
            self.send_member(
                member,
                ServerMsg::SfuDescription {
                    call_id,
                    description,
                    tracks,
                },
            );
        }
    }

    /// The SFU no longer holds the SFU call `group`'s media sessions (restored here from a
    /// snapshot whose SFU stayed behind, or a worker that ended): every participant is told to
    /// offer again (`sfu_restart`), which waits in its session's replay log until it resumes.
    fn sfu_restart(&mut self, group: &GroupCall) {
        for &p in &group.participants {
            self.send_member(
                p,
                ServerMsg::SfuRestart {
                    call_id: group.call_id,
                },
            );
        }
    }

    /// The SFU lost its sessions (its worker process ended): every SFU call's participants
    /// are told to connect again.
    pub fn sfu_restart_all(&mut self) {
        self.sfu_restart_where(|_| true);
    }

    /// The SFU calls of the rooms `pick` names: their participants are told to connect again.
    pub(crate) fn sfu_restart_where(&mut self, pick: impl Fn(&str) -> bool) {
        let groups: Vec<GroupCall> = self
            .rooms
            .iter()
            .filter(|(id, _)| pick(id))
            .filter_map(|(_, r)| r.group.clone())
            .filter(|g| g.media == GroupMedia::Sfu)
            .collect();
        for group in &groups {
            self.sfu_restart(group);
        }
    }

    /// The member sent media its access token does not allow (`not_permitted`): the SFU
    /// forwards none of it.
    pub fn sfu_not_permitted(&mut self, member: MemberId, source: &str) {
        self.send_member(
            member,
            ServerMsg::error(
                ErrorCode::NotPermitted,
                format!("your access does not allow sending {source}; it is not forwarded"),
                Some("sfu_description"),
            ),
        );
    }

    /// The SFU could not take the member's offer (`sfu_unavailable`).
    pub fn sfu_refused(&mut self, member: MemberId, message: &str) {
        self.send_member(
            member,
            ServerMsg::error(
                ErrorCode::SfuUnavailable,
                message.to_owned(),
                Some("sfu_description"),
            ),
        );
    }
}
