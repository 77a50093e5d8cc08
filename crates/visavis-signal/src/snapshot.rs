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

use std::collections::VecDeque;
use std::net::IpAddr;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
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
        let gap = if snapshot.complete { 0 } else { CRASH_SN_GAP };
        let mut announce = Vec::new();
        for s in snapshot.sessions {
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
        let orphans: Vec<SessionId> = sig
            .core
            .member_ids()
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
        sig
    }
}
