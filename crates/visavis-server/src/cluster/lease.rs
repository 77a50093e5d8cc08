//! Room ownership leases as this node sees them: which rooms it holds and until when, which
//! to renew, take or give back in the next round. Pure (an injected clock); the Redis edge
//! (`cluster::Cluster`) carries out what it says.
//!
//! A room lives on one node, the holder of its lease in Redis (`SET … PX ttl`). The holder
//! renews every lease it holds each `renew_every` (a third of the TTL by default), so two
//! renewals can fail before the lease lapses; a node that dies stops renewing, and another
//! node takes the room over once the TTL has passed. A lease is counted as valid from when the
//! renewal was *sent*, never from when it was answered, so this node never believes in a lease
//! longer than Redis does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The leases this node holds.
#[derive(Debug)]
pub struct Leases {
    ttl: Duration,
    renew_every: Duration,
    held: HashMap<String, Held>,
    next_round: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    /// Redis keeps the lease at least until then.
    valid_until: Instant,
    /// When this node took it (a room is given back only once it had time to start here).
    acquired_at: Instant,
}

/// What one round asks of Redis.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Renew these (or take them, if nobody holds them: a room made here, or after Redis lost
    /// its data).
    pub renew: Vec<String>,
    /// Give these back: they no longer live here.
    pub release: Vec<String>,
}

/// What a renewal's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewed {
    Kept,
    /// Another node holds the room now: this node must stop serving it.
    Lost,
    /// Another node holds it, and this node knew already (what is left of a room sent away).
    Elsewhere,
}

impl Leases {
    pub fn new(ttl: Duration, renew_every: Duration, now: Instant) -> Self {
        Self {
            ttl,
            renew_every,
            held: HashMap::new(),
            next_round: now,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Whether this node holds `room` (taken, adopted and not lost).
    pub fn holds(&self, room: &str) -> bool {
        self.held.contains_key(room)
    }

    /// Every room held.
    pub fn held(&self) -> impl Iterator<Item = &str> + '_ {
        self.held.keys().map(String::as_str)
    }

    /// The lease on `room` was taken with a request sent at `sent_at`.
    pub fn handle_acquired(&mut self, room: &str, sent_at: Instant) {
        self.held.insert(
            room.to_owned(),
            Held {
                valid_until: sent_at + self.ttl,
                acquired_at: sent_at,
            },
        );
    }

    /// When the next round is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_round
    }

    /// The round due at `now` (none before [`Leases::poll_timeout`]), given the rooms that
    /// live in this node's core now: renew every one of them, give back the held ones that no
    /// longer live here (after a TTL since they were taken, so a lease taken for a `join` still
    /// on its way to the core is not given back under it).
    pub fn poll_round<'a>(
        &mut self,
        now: Instant,
        local: impl IntoIterator<Item = &'a str>,
    ) -> Option<Round> {
        if now < self.next_round {
            return None;
        }
        self.next_round = now + self.renew_every;
        let mut round = Round::default();
        let mut live = std::collections::HashSet::new();
        for room in local {
            live.insert(room);
            round.renew.push(room.to_owned());
        }
        for (room, held) in &self.held {
            if !live.contains(room.as_str()) && now >= held.acquired_at + self.ttl {
                round.release.push(room.clone());
            }
        }
        round.renew.sort();
        round.release.sort();
        Some(round)
    }

    /// Redis answered the renewal of `room` sent at `sent_at`: `granted` if this node holds it
    /// (again) until `sent_at` + TTL.
    pub fn handle_renewed(&mut self, room: &str, sent_at: Instant, granted: bool) -> Renewed {
        if !granted {
            return match self.held.remove(room) {
                Some(_) => Renewed::Lost,
                None => Renewed::Elsewhere,
            };
        }
        let held = self.held.entry(room.to_owned()).or_insert(Held {
            valid_until: sent_at,
            acquired_at: sent_at,
        });
        held.valid_until = held.valid_until.max(sent_at + self.ttl);
        Renewed::Kept
    }

    /// `room` was given back (or its release was sent: Redis gives it to nobody but its holder).
    pub fn handle_released(&mut self, room: &str) {
        self.held.remove(room);
    }

    /// Rooms whose lease has run out at `now` without a renewal getting through: Redis was
    /// unreachable. They are still served (no other node can have taken them while Redis could
    /// not answer it either); the next renewal takes them again or says they are lost.
    pub fn lapsed(&self, now: Instant) -> Vec<&str> {
        let mut rooms: Vec<&str> = self
            .held
            .iter()
            .filter(|(_, h)| now >= h.valid_until)
            .map(|(r, _)| r.as_str())
            .collect();
        rooms.sort_unstable();
        rooms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(3);
    const RENEW: Duration = Duration::from_secs(1);

    #[test]
    fn rounds_come_every_renewal_interval_and_renew_what_lives_here() {
        let t0 = Instant::now();
        let mut leases = Leases::new(TTL, RENEW, t0);
        leases.handle_acquired("a", t0);
        let round = leases.poll_round(t0, ["a", "b"]).unwrap();
        assert_eq!(
            round.renew,
            ["a", "b"],
            "b was made here (create): taken by renewal"
        );
        assert!(round.release.is_empty());
        assert_eq!(leases.poll_round(t0 + RENEW / 2, ["a"]), None, "not due yet");
        assert_eq!(leases.poll_timeout(), t0 + RENEW);
        assert!(leases.poll_round(t0 + RENEW, ["a"]).is_some());
    }

    #[test]
    fn a_lease_counts_from_when_the_renewal_was_sent() {
        let t0 = Instant::now();
        let mut leases = Leases::new(TTL, RENEW, t0);
        leases.handle_acquired("a", t0);
        assert!(leases.lapsed(t0 + TTL - Duration::from_millis(1)).is_empty());
        assert_eq!(leases.lapsed(t0 + TTL), ["a"], "no renewal got through");
        // A renewal sent at 2 s and answered late keeps it until 5 s, not answer + TTL.
        assert_eq!(leases.handle_renewed("a", t0 + 2 * RENEW, true), Renewed::Kept);
        assert!(leases.lapsed(t0 + TTL).is_empty());
        assert_eq!(leases.lapsed(t0 + 2 * RENEW + TTL), ["a"]);
        // An old answer arriving after a newer one does not shorten it.
        leases.handle_renewed("a", t0, true);
        assert!(leases.lapsed(t0 + TTL + RENEW).is_empty());
    }

    #[test]
    fn a_refused_renewal_means_another_node_holds_the_room() {
        let t0 = Instant::now();
        let mut leases = Leases::new(TTL, RENEW, t0);
        leases.handle_acquired("a", t0);
        assert_eq!(leases.handle_renewed("a", t0 + RENEW, false), Renewed::Lost);
        assert!(!leases.holds("a"));
        assert!(leases.lapsed(t0 + 10 * TTL).is_empty());
        // What is left of it here is renewed in vain, quietly.
        assert_eq!(
            leases.handle_renewed("a", t0 + 2 * RENEW, false),
            Renewed::Elsewhere
        );
    }

    #[test]
    fn a_room_that_left_is_given_back_once_it_had_time_to_start() {
        let t0 = Instant::now();
        let mut leases = Leases::new(TTL, RENEW, t0);
        // Taken for a join still on its way to the core: kept.
        leases.handle_acquired("new", t0);
        let round = leases.poll_round(t0 + RENEW, std::iter::empty()).unwrap();
        assert!(round.release.is_empty());
        // A TTL later it never started (the join was refused): given back.
        let round = leases.poll_round(t0 + TTL, std::iter::empty()).unwrap();
        assert_eq!(round.release, ["new"]);
        leases.handle_released("new");
        assert!(!leases.holds("new"));
        assert_eq!(leases.held().count(), 0);
    }
}
