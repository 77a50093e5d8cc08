//! The room core written down to outlive the process: [`Core::snapshot`] copies out everything
//! a call needs to go on (rooms with their settings, hosts, lobby and lock; members; 1:1 and
//! group calls; chat history) as plain serde data, and [`Core::restore`] builds a core from it
//! in a later process. No IO here: the server's state store decides where the bytes go.
//!
//! Times are written as wall-clock milliseconds ([`Now::unix_ms_of`]), since a monotonic
//! instant means nothing to the next process; on restore each deadline is rebuilt from them
//! (a ring timeout that passed while the server was down fires at the next timeout). Rate-limit
//! buckets start full and the metrics' totals start at zero: neither is worth a call.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use visavis_protocol::{CallId, ChatEntry, GroupCall, MemberId, Publish, RoomState};
use visavis_sansio::{Now, TokenBucket};

use crate::private::Private;
use crate::{Call, CallState, Config, Core, MemberState, Room, SessionId, Totals};

/// Everything of a [`Core`] that outlives a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreSnapshot {
    pub rooms: Vec<RoomSnapshot>,
    pub members: Vec<MemberSnapshot>,
    pub calls: Vec<CallSnapshot>,
    /// (caller, callee, until Unix ms): a declined caller may not ring straight back.
    pub no_redial: Vec<(MemberId, MemberId, u64)>,
    pub next_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSnapshot {
    pub id: String,
    pub serial: u64,
    pub api: bool,
    pub capacity: usize,
    pub created_at: u64,
    pub ends_at: Option<u64>,
    pub members: Vec<MemberId>,
    pub private: Option<PrivateSnapshot>,
    pub group: Option<GroupCall>,
    pub chat: Vec<ChatEntry>,
    pub chat_seq: u64,
    /// When an empty private room is dropped (Unix ms), if it waits empty.
    pub empty_until: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateSnapshot {
    pub host_key: String,
    pub state: RoomState,
    pub lobby: Vec<MemberId>,
    pub must_knock: Vec<IpAddr>,
    pub creator: IpAddr,
    pub revoked: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSnapshot {
    pub id: MemberId,
    pub session: SessionId,
    pub name: String,
    pub room: String,
    pub host: bool,
    pub waiting: bool,
    pub first_seq: u64,
    pub from: IpAddr,
    pub identity: Option<String>,
    pub may_chat: bool,
    /// What the member's token lets it send (all, when absent from an older snapshot).
    #[serde(default)]
    pub publish: Publish,
    pub call: Option<CallId>,
    pub in_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSnapshot {
    pub id: CallId,
    pub caller: MemberId,
    pub callee: MemberId,
    pub active: bool,
    pub room: String,
    /// Unix ms.
    pub invited_at: u64,
    pub accepted_at: Option<u64>,
    pub caller_connect_ms: Option<u64>,
    pub callee_connect_ms: Option<u64>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Core {
    /// Everything that outlives the process, at `now`. Sorted by id, so equal states give
    /// equal snapshots (and bytes).
    pub fn snapshot(&self, now: Now) -> CoreSnapshot {
        let mut rooms: Vec<RoomSnapshot> = self
            .rooms
            .iter()
            .map(|(id, r)| RoomSnapshot {
                id: id.clone(),
                serial: r.serial,
                api: r.api,
                capacity: r.capacity,
                created_at: r.created_at,
                ends_at: r.ends_at,
                members: r.members.clone(),
                private: r.private.as_ref().map(|p| PrivateSnapshot {
                    host_key: p.host_key.clone(),
                    state: p.state,
                    lobby: p.lobby.clone(),
                    must_knock: sorted(p.must_knock.iter().copied()),
                    creator: p.creator,
                    revoked: sorted(p.revoked.iter().cloned()),
                }),
                group: r.group.clone(),
                chat: r.chat.iter().cloned().collect(),
                chat_seq: r.chat_seq,
                empty_until: self.empty_private.until(id).map(|at| now.unix_ms_of(at)),
            })
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        let mut members: Vec<MemberSnapshot> = self
            .members
            .iter()
            .map(|(id, m)| MemberSnapshot {
                id: *id,
                session: m.session,
                name: m.name.clone(),
                room: m.room.clone(),
                host: m.host,
                waiting: m.waiting,
                first_seq: m.first_seq,
                from: m.from,
                identity: m.identity.clone(),
                may_chat: m.may_chat,
                publish: m.publish,
                call: m.call,
                in_group: m.in_group,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        let mut calls: Vec<CallSnapshot> = self
            .calls
            .iter()
            .map(|(id, c)| CallSnapshot {
                id: *id,
                caller: c.caller,
                callee: c.callee,
                active: c.state == CallState::Active,
                room: c.room.clone(),
                invited_at: now.unix_ms_of(c.invited_at),
                accepted_at: c.accepted_at.map(|at| now.unix_ms_of(at)),
                caller_connect_ms: c.caller_connect.map(ms),
                callee_connect_ms: c.callee_connect.map(ms),
            })
            .collect();
        calls.sort_by_key(|c| c.id);
        let mut no_redial: Vec<(MemberId, MemberId, u64)> = self
            .no_redial
            .iter()
            .map(|(&(a, b), &until)| (a, b, now.unix_ms_of(until)))
            .collect();
        no_redial.sort_unstable();
        CoreSnapshot {
            rooms,
            members,
            calls,
            no_redial,
            next_serial: self.next_serial,
        }
    }

    /// A core with `config` holding what `snapshot` wrote down, at `now` of this process.
    /// Deadlines are rebuilt from the written times: ring timeouts from when each call was
    /// invited, time limits from each room's end, empty private rooms from when they expire.
    /// Members whose ICE credentials expire get fresh ones at the first timeout (the TURN
    /// secret may be new with this process).
    /// The participants of SFU calls are told to connect to the SFU again (`sfu_restart`): its
    /// sessions lived in the process that wrote the snapshot.
    pub fn restore(config: Config, snapshot: CoreSnapshot, now: Now) -> Self {
        Self::restore_with(config, snapshot, now, true)
    }

    /// As [`Core::restore`], for an SFU that still holds the sessions of the snapshot's SFU
    /// calls (a worker process that outlived the one that wrote it): they go on as they are.
    pub fn restore_keeping_sfu(config: Config, snapshot: CoreSnapshot, now: Now) -> Self {
        Self::restore_with(config, snapshot, now, false)
    }

    fn restore_with(config: Config, snapshot: CoreSnapshot, now: Now, restart_sfu: bool) -> Self {
        let mut core = Core::new(config);
        core.next_serial = snapshot.next_serial;
        core.absorb(snapshot, now, false);
        if restart_sfu {
            core.sfu_restart_where(|_| true);
        }
        core.totals = Totals::default();
        core
    }

    /// Takes the rooms of `snapshot` (written by another node of a cluster, whose lease on
    /// them ran out or was handed over) into this running core, at `now`, as [`Core::restore`]
    /// would. Rooms this core already holds are left as they are (with their members and calls:
    /// a room lives on one node). Serials are this core's own, so they are numbered anew;
    /// member and call ids are random, so they stay. The sessions named in `snapshot` must not
    /// be this core's (`Signalling::adopt` numbers them anew first).
    pub fn adopt(&mut self, mut snapshot: CoreSnapshot, now: Now) {
        let held: HashSet<String> = snapshot
            .rooms
            .iter()
            .filter(|r| self.rooms.contains_key(&r.id))
            .map(|r| r.id.clone())
            .collect();
        snapshot.rooms.retain(|r| !held.contains(&r.id));
        snapshot.members.retain(|m| !held.contains(&m.room));
        snapshot.calls.retain(|c| !held.contains(&c.room));
        let adopted: HashSet<String> = snapshot.rooms.iter().map(|r| r.id.clone()).collect();
        self.absorb(snapshot, now, true);
        // Their SFU calls' media sessions stayed with the node that wrote them down.
        self.sfu_restart_where(|room| adopted.contains(room));
    }

    /// What `restore` and `adopt` share: every room, member and call of `snapshot` into this
    /// core; with `renumber`, rooms get fresh serials.
    fn absorb(&mut self, snapshot: CoreSnapshot, now: Now, renumber: bool) {
        let core = self;
        let (chat_rate, chat_burst) = (core.config.chat_rate, core.config.chat_burst);
        let mut empty: Vec<(u64, String, IpAddr, bool)> = Vec::new();
        for mut r in snapshot.rooms {
            if renumber {
                r.serial = core.next_serial;
            }
            if let Some(ends_at) = r.ends_at {
                let at = now.instant_of(ends_at.saturating_mul(1000));
                core.time_limits.insert(r.serial, at);
                core.limited.insert(r.serial, r.id.clone());
            }
            if let (Some(until), Some(p)) = (r.empty_until, &r.private) {
                empty.push((until, r.id.clone(), p.creator, r.api));
            }
            core.next_serial = core.next_serial.max(r.serial + 1);
            let room = Room {
                serial: r.serial,
                api: r.api,
                capacity: r.capacity.min(core.config.room_capacity),
                created_at: r.created_at,
                ends_at: r.ends_at,
                members: r.members,
                private: r.private.map(|p| Private {
                    host_key: p.host_key,
                    state: p.state,
                    lobby: p.lobby,
                    must_knock: p.must_knock.into_iter().collect::<HashSet<_>>(),
                    creator: p.creator,
                    revoked: p.revoked.into_iter().collect::<HashSet<_>>(),
                }),
                group: r.group,
                speaker: None,
                chat: {
                    let mut chat: VecDeque<ChatEntry> = r.chat.into();
                    while chat.len() > core.config.chat_history {
                        chat.pop_front();
                    }
                    chat
                },
                chat_seq: r.chat_seq,
                chat_bucket: TokenBucket::new(chat_rate, chat_burst, now.mono),
            };
            core.rooms.insert(r.id, room);
        }
        // Oldest first, as they emptied; nothing is dropped for a cap (they were all kept).
        empty.sort();
        for (until, room, creator, _) in empty {
            core.empty_private
                .insert(&room, creator, now.instant_of(until), usize::MAX);
        }
        for m in snapshot.members {
            core.sessions.insert(m.session, m.id);
            if core.config.ice_servers.renew_every.is_some() {
                core.renewals.insert(m.id, now.mono);
            }
            core.members.insert(
                m.id,
                MemberState {
                    session: m.session,
                    name: m.name,
                    room: m.room,
                    host: m.host,
                    waiting: m.waiting,
                    first_seq: m.first_seq,
                    from: m.from,
                    identity: m.identity,
                    may_chat: m.may_chat,
                    publish: m.publish,
                    call: m.call,
                    in_group: m.in_group,
                    invites: TokenBucket::new(core.config.invite_rate, core.config.invite_burst, now.mono),
                    chats: TokenBucket::new(
                        core.config.chat_member_rate,
                        core.config.chat_member_burst,
                        now.mono,
                    ),
                    // Full: a restored call's participants all offer again at once.
                    sfu_offers: TokenBucket::new(
                        core.config.sfu_offer_rate,
                        core.config.sfu_offer_burst,
                        now.mono,
                    ),
                },
            );
        }
        for c in snapshot.calls {
            let invited_at = now.instant_of(c.invited_at);
            if !c.active {
                core.ring_deadlines
                    .insert(c.id, invited_at + core.config.ring_timeout);
            }
            core.calls.insert(
                c.id,
                Call {
                    caller: c.caller,
                    callee: c.callee,
                    state: if c.active {
                        CallState::Active
                    } else {
                        CallState::Ringing
                    },
                    room: c.room,
                    invited_at,
                    accepted_at: c.accepted_at.map(|at| now.instant_of(at)),
                    caller_connect: c.caller_connect_ms.map(Duration::from_millis),
                    callee_connect: c.callee_connect_ms.map(Duration::from_millis),
                },
            );
        }
        core.no_redial.extend(
            snapshot
                .no_redial
                .into_iter()
                .map(|(a, b, until)| ((a, b), now.instant_of(until))),
        );
    }

    /// The ids of the rooms held, for what ties rooms to the edge (a cluster's leases).
    pub fn room_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.rooms.keys().map(String::as_str)
    }

    /// Every member (admitted or waiting) and its session, for what the edge ties to members
    /// (the TURN server's relays) after a restore.
    pub fn member_ids(&self) -> impl Iterator<Item = (MemberId, SessionId)> + '_ {
        self.members.iter().map(|(id, m)| (*id, m.session))
    }
}

fn sorted<T: Ord>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = items.collect();
    v.sort_unstable();
    v
}
