//! The session layer written down to outlive the process: [`Signalling::snapshot`] copies out
//! every joined session (token, `sn`/`cn` positions, the messages its client has not
//! acknowledged) with the room core's snapshot, and [`Signalling::restore`] builds a
//! `Signalling` from it in a later process, where every session waits, detached, for its
//! client to `resume`. No IO: the server's state store decides where the bytes go.
//!
//! Two kinds of snapshot:
//! - **complete**: taken after [`Signalling::handle_shutdown`] (a graceful stop), so nothing
//!   happened after it; the next process continues every session exactly where it stopped;
//! - **periodic** (the write-behind while serving): the process may die after it, having sent
//!   messages it never wrote down. The next process makes each session's numbering jump ahead
//!   by [`CRASH_SN_GAP`], so that no new message reuses an `sn` the client may already have
//!   seen (it would skip it as a replay); the jump is what the client sees of the loss.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use visavis_protocol::MemberId;
use visavis_room::{Core, CoreSnapshot, SessionId};
use visavis_sansio::Now;

use crate::session::Session;
use crate::{Config, Signalling, TokenSource};

/// How far a session's numbering jumps after a crash: more than a session can be sent between
/// two periodic snapshots (a few hundred milliseconds), and small enough that `sn` stays an
/// exact JavaScript number for billions of restarts.
pub const CRASH_SN_GAP: u64 = 1 << 20;

/// Everything of a [`Signalling`] that outlives a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Taken after a graceful shutdown: nothing was sent after it.
    pub complete: bool,
    /// When it was taken, Unix ms.
    pub taken_at: u64,
    pub next_session: SessionId,
    pub sessions: Vec<SessionSnapshot>,
    pub core: CoreSnapshot,
}

/// One joined session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    pub id: SessionId,
    pub ip: IpAddr,
    pub token: String,
    pub next_sn: u64,
    pub last_cn: u64,
    /// Unacknowledged messages, `(sn, frame)`, oldest first.
    pub log: Vec<(u64, Frame)>,
    /// When its grace ends (Unix ms), if its own connection had dropped before the snapshot;
    /// `None` if it was connected or detached by the shutdown.
    pub grace_until: Option<u64>,
}

/// A text frame kept for replay: shared with the session's log (copying a snapshot out costs
/// a reference count, not the bytes), written as a JSON string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Bytes);

impl Serialize for Frame {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Frames are the JSON text the server wrote, so always UTF-8.
        let text = std::str::from_utf8(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Frame(Bytes::from(s)))
    }
}

impl Signalling {
    /// Everything that outlives the process, at `now`. Sessions that have not joined a room
    /// are left out: nothing could resume them.
    pub fn snapshot(&self, now: Now) -> Snapshot {
        let mut sessions: Vec<SessionSnapshot> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let token = s.token.clone()?;
                let grace_until = match (s.conn, s.stopped) {
                    (None, false) => self.grace.get(*id).map(|at| now.unix_ms_of(at)),
                    _ => None,
                };
                Some(SessionSnapshot {
                    id: *id,
                    ip: s.ip,
                    token,
                    next_sn: s.next_sn(),
                    last_cn: s.last_cn,
                    log: s.log_entries().map(|(sn, f)| (*sn, Frame(f.clone()))).collect(),
                    grace_until,
                })
            })
            .collect();
        sessions.sort_by_key(|s| s.id);
        Snapshot {
            complete: self.stopped,
            taken_at: now.unix_ms,
            next_session: self.next_session,
            sessions,
            core: self.core.snapshot(now),
        }
    }

    /// A `Signalling` holding what `snapshot` wrote down, at `now` of this process; `core` is
    /// the restored room core (`Core::restore`). Every session is detached: one that was
    /// connected (or detached by the shutdown) gets a whole grace period from `now`, and the
    /// others in its room are told it is `reconnecting` (into their replay logs); one whose
    /// own connection had dropped keeps the grace it had left. A member without a session, or a
    /// session without a member, cannot resume and is dropped.
    pub fn restore(core: Core, config: Config, tokens: TokenSource, snapshot: Snapshot, now: Now) -> Self {
        let mut sig = Signalling::new(core, config, tokens);
        sig.next_session = snapshot.next_session.max(1);
        let members: Vec<_> = snapshot.core.members.iter().map(|m| m.id).collect();
        sig.absorb(snapshot.sessions, snapshot.complete, &members, now);
        sig
    }

    /// Takes the rooms of `snapshot` (one or more rooms another node of a cluster wrote down,
    /// see [`Snapshot::split`]) into this running `Signalling`, at `now`, as [`Signalling::restore`]
    /// takes a whole one: the room core adopts the rooms (`Core::adopt`), and every session of
    /// them waits, detached, for its client to `resume` here. Session ids are numbered anew
    /// (they are each node's own); rooms already held here are left alone.
    pub fn adopt(&mut self, mut snapshot: Snapshot, now: Now) {
        snapshot
            .core
            .rooms
            .retain(|r| !self.core.room_ids().any(|id| id == r.id));
        let rooms: HashSet<&str> = snapshot.core.rooms.iter().map(|r| r.id.as_str()).collect();
        let mut renumbered: HashMap<SessionId, SessionId> = HashMap::new();
        snapshot.core.members.retain(|m| rooms.contains(m.room.as_str()));
        for m in &mut snapshot.core.members {
            let id = self.next_session;
            self.next_session += 1;
            renumbered.insert(m.session, id);
            m.session = id;
        }
        snapshot.core.calls.retain(|c| rooms.contains(c.room.as_str()));
        let sessions: Vec<SessionSnapshot> = snapshot
            .sessions
            .into_iter()
            .filter_map(|mut s| {
                s.id = *renumbered.get(&s.id)?;
                Some(s)
            })
            .collect();
        let members: Vec<_> = snapshot.core.members.iter().map(|m| m.id).collect();
        self.core.adopt(snapshot.core, now);
        self.absorb(sessions, snapshot.complete, &members, now);
    }

    /// What `restore` and `adopt` share: the sessions of `members` (just taken into the core)
    /// come back detached; members without a session are gone for good.
    fn absorb(&mut self, sessions: Vec<SessionSnapshot>, complete: bool, members: &[MemberId], now: Now) {
        let sig = self;
        let gap = if complete { 0 } else { CRASH_SN_GAP };
        let mut announce = Vec::new();
        for s in sessions {
            if sig.core.member_of(s.id).is_none() || sig.by_token.contains_key(&s.token) {
                continue;
            }
            let log: VecDeque<(u64, Bytes)> = s.log.into_iter().map(|(sn, frame)| (sn, frame.0)).collect();
            let session = Session::restored(s.ip, s.token.clone(), s.next_sn + gap, s.last_cn, log);
            sig.log_total += session.log_bytes();
            sig.sources.add_session(now.mono, s.ip);
            sig.by_token.insert(s.token, s.id);
            sig.sessions.insert(s.id, session);
            sig.next_session = sig.next_session.max(s.id + 1);
            let until = match s.grace_until {
                Some(until) => now.instant_of(until),
                None => {
                    announce.push(s.id);
                    now.mono + sig.config.grace
                }
            };
            sig.grace.insert(s.id, until);
        }
        // Members whose session did not come back are gone for good.
        let members: HashSet<MemberId> = members.iter().copied().collect();
        let orphans: Vec<SessionId> = sig
            .core
            .member_ids()
            .filter(|(member, _)| members.contains(member))
            .map(|(_, session)| session)
            .filter(|session| !sig.sessions.contains_key(session))
            .collect();
        for session in orphans {
            sig.core.handle_disconnect(now, session);
        }
        announce.sort_unstable();
        for session in announce {
            sig.core.handle_detach(session);
        }
        sig.deliver(now);
    }
}

impl Snapshot {
    /// One snapshot per room, each with the room's members, calls and sessions (and the
    /// no-redial pairs of its members): what a cluster keeps per room, so that a room can move
    /// to another node alone. Sorted by room id.
    pub fn split(&self) -> Vec<(String, Snapshot)> {
        let mut by_room: HashMap<&str, Snapshot> = HashMap::new();
        for r in &self.core.rooms {
            let mut core = CoreSnapshot {
                rooms: vec![r.clone()],
                members: Vec::new(),
                calls: Vec::new(),
                no_redial: Vec::new(),
                next_serial: 0,
            };
            core.next_serial = r.serial + 1;
            by_room.insert(
                &r.id,
                Snapshot {
                    complete: self.complete,
                    taken_at: self.taken_at,
                    next_session: 0,
                    sessions: Vec::new(),
                    core,
                },
            );
        }
        let mut room_of_session: HashMap<SessionId, &str> = HashMap::new();
        let mut room_of_member: HashMap<MemberId, &str> = HashMap::new();
        for m in &self.core.members {
            if let Some(snap) = by_room.get_mut(m.room.as_str()) {
                snap.core.members.push(m.clone());
                room_of_session.insert(m.session, &m.room);
                room_of_member.insert(m.id, &m.room);
            }
        }
        for c in &self.core.calls {
            if let Some(snap) = by_room.get_mut(c.room.as_str()) {
                snap.core.calls.push(c.clone());
            }
        }
        for pair in &self.core.no_redial {
            if let Some(snap) = room_of_member.get(&pair.0).and_then(|r| by_room.get_mut(r)) {
                snap.core.no_redial.push(*pair);
            }
        }
        for s in &self.sessions {
            if let Some(snap) = room_of_session.get(&s.id).and_then(|r| by_room.get_mut(r)) {
                snap.next_session = snap.next_session.max(s.id + 1);
                snap.sessions.push(s.clone());
            }
        }
        let mut rooms: Vec<(String, Snapshot)> = by_room
            .into_iter()
            .map(|(id, snap)| (id.to_owned(), snap))
            .collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        rooms
    }
}
