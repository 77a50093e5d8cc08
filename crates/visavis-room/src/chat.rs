//! Room chat: the server stamps each message (sender, name, time, sequence), relays it to
//! everyone in the room in one order, and keeps the last few for people who join later.

use visavis_protocol::{ChatEntry, MemberId, ServerMsg};

use visavis_sansio::Now;

use crate::{Core, RoomError};

impl Core {
    pub(crate) fn chat(&mut self, now: Now, me: MemberId, text: String) -> Result<(), RoomError> {
        if text.trim().is_empty() {
            return Err(RoomError::InvalidChat("the message is empty".into()));
        }
        let max = self.config.chat_max_bytes;
        if text.len() > max {
            return Err(RoomError::InvalidChat(format!(
                "the message is {} bytes; the limit is {max} bytes",
                text.len()
            )));
        }
        let state = self.members.get_mut(&me).ok_or(RoomError::NotJoined)?;
        if !state.may_chat {
            return Err(RoomError::NotPermitted("chat"));
        }
        if !state.chats.take(now.mono, 1.0) {
            return Err(RoomError::RateLimited(format!(
                "at most {} chat messages a second; this one was not sent",
                self.config.chat_member_rate
            )));
        }
        let (room_id, name) = (state.room.clone(), state.name.clone());
        let history = self.config.chat_history;
        let room = self.rooms.get_mut(&room_id).ok_or(RoomError::NotJoined)?;
        if !room.chat_bucket.take(now.mono, 1.0) {
            return Err(RoomError::RateLimited(format!(
                "the room takes at most {} chat messages a second from everyone; this one was not sent",
                self.config.chat_rate
            )));
        }
        room.chat_seq += 1;
        let entry = ChatEntry {
            seq: room.chat_seq,
            from: me,
            name,
            text,
            at: now.unix_ms,
        };
        room.chat.push_back(entry.clone());
        while room.chat.len() > history {
            room.chat.pop_front();
        }
        self.broadcast(&room_id, &ServerMsg::Chat(entry));
        Ok(())
    }
}
