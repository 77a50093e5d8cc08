//! What every visavis state machine shares: the time it is given ([`Now`]), a set of deadlines
//! ([`Deadlines`]), a rate limit ([`TokenBucket`]), and the loop that drives it.
//!
//! # The drive loop
//!
//! Each core (rooms and sessions in `visavis-signal`, TURN in `visavis-turn`, later the SFU)
//! is a state machine that never reads a clock, never sleeps and never touches a socket. The
//! edge that owns the sockets drives it the same way every time:
//!
//! 1. something happens (a frame arrives, a connection closes, a deadline passes): call the
//!    matching `handle_*` method with the current [`Now`];
//! 2. drain `poll_output()` until it returns `None`, carrying out each output (send bytes,
//!    close a connection, bind a socket);
//! 3. ask `poll_timeout()` when the core next needs `handle_timeout`, and sleep until then or
//!    until the next input, whichever comes first.
//!
//! Because time only enters through `Now`, tests drive a core with a fake clock and no sockets,
//! and replay any sequence of inputs exactly.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use visavis_sansio::{Deadlines, Now};
//!
//! /// A toy core: says "ding" once per deadline that passes.
//! #[derive(Default)]
//! struct Bell {
//!     deadlines: Deadlines<u32>,
//!     out: Vec<String>,
//! }
//! impl Bell {
//!     fn handle_ring_in(&mut self, now: Now, id: u32, after: Duration) {
//!         self.deadlines.insert(id, now.mono + after);
//!     }
//!     fn handle_timeout(&mut self, now: Now) {
//!         while let Some(id) = self.deadlines.pop_due(now.mono) {
//!             self.out.push(format!("ding {id}"));
//!         }
//!     }
//!     fn poll_output(&mut self) -> Option<String> {
//!         self.out.pop()
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> {
//!         self.deadlines.next()
//!     }
//! }
//!
//! // The edge, with a fake clock: feed an input, drain outputs, sleep until poll_timeout.
//! let start = Now { mono: Instant::now(), unix_ms: 0 };
//! let mut bell = Bell::default();
//! bell.handle_ring_in(start, 7, Duration::from_secs(2));
//! assert_eq!(bell.poll_output(), None);
//! let wake = bell.poll_timeout().unwrap();
//! bell.handle_timeout(start.at(wake));
//! assert_eq!(bell.poll_output().as_deref(), Some("ding 7"));
//! assert_eq!(bell.poll_timeout(), None);
//! ```

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The time, as a core is given it: monotonic for timers, wall clock (milliseconds since the
/// Unix epoch) for what is shown or signed (chat timestamps, credential expiry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub unix_ms: u64,
}

impl Now {
    /// The system's clocks. Only edges call this; cores are handed a `Now`.
    pub fn system() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            mono: Instant::now(),
            unix_ms,
        }
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_secs(&self) -> u64 {
        self.unix_ms / 1000
    }

    /// This clock moved on to `mono`, the wall clock by as much (for fake clocks in tests and
    /// for timers that fire at a known instant).
    pub fn at(self, mono: Instant) -> Self {
        let forward = mono.saturating_duration_since(self.mono);
        let back = self.mono.saturating_duration_since(mono);
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            mono,
            unix_ms: self.unix_ms.saturating_add(ms(forward)).saturating_sub(ms(back)),
        }
    }

    /// This clock `d` later.
    pub fn after(self, d: Duration) -> Self {
        self.at(self.mono + d)
    }

    /// `instant` on the wall clock (Unix ms): how a time is written down to outlive the
    /// process, since a monotonic instant means nothing to the next one.
    pub fn unix_ms_of(&self, instant: Instant) -> u64 {
        self.at(instant).unix_ms
    }

    /// The monotonic instant of a wall-clock time (Unix ms) written down by an earlier process.
    /// A time further back than this process's clock reaches becomes `self.mono`: it is past
    /// either way, and a past deadline fires at the next timeout.
    pub fn instant_of(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.mono + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            self.mono
                .checked_sub(Duration::from_millis(self.unix_ms - unix_ms))
                .unwrap_or(self.mono)
        }
    }
}

/// One deadline per key, soonest first.
#[derive(Debug, Clone)]
pub struct Deadlines<K> {
    by_time: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            by_time: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Copy + Ord + Hash> Deadlines<K> {
    /// Sets `key`'s deadline to `at`, replacing any it had.
    pub fn insert(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key, at) {
            self.by_time.remove(&(old, key));
        }
        self.by_time.insert((at, key));
    }

    /// Drops `key`'s deadline; returns when it was, if it had one.
    pub fn remove(&mut self, key: K) -> Option<Instant> {
        let at = self.by_key.remove(&key)?;
        self.by_time.remove(&(at, key));
        Some(at)
    }

    /// `key`'s deadline.
    pub fn get(&self, key: K) -> Option<Instant> {
        self.by_key.get(&key).copied()
    }

    /// The soonest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Takes out a key whose deadline is at or before `now`, soonest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(at, key) = self.by_time.first().filter(|(at, _)| *at <= now)?;
        self.by_time.remove(&(at, key));
        self.by_key.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A rate limit: `rate` tokens per second, holding at most `burst`; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes `amount` tokens if there are that many by `now`.
    pub fn take(&mut self, now: Instant, amount: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }

    /// When tokens were last taken or refilled.
    pub fn last_used(&self) -> Instant {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_pop_in_order_and_replace_per_key() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = Deadlines::default();
        d.insert(1, t0 + s(5));
        d.insert(2, t0 + s(3));
        d.insert(1, t0 + s(1)); // replaces 5 s
        assert_eq!((d.len(), d.next()), (2, Some(t0 + s(1))));
        assert_eq!(d.pop_due(t0), None);
        assert_eq!(d.pop_due(t0 + s(4)), Some(1));
        assert_eq!(d.pop_due(t0 + s(4)), Some(2));
        assert_eq!(d.pop_due(t0 + s(4)), None);
        d.insert(3, t0);
        assert_eq!(d.remove(3), Some(t0));
        assert!(d.is_empty() && d.next().is_none());
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!((0..3).all(|_| b.take(t0, 1.0)));
        assert!(!b.take(t0, 1.0));
        assert!(
            b.take(t0 + Duration::from_millis(100), 1.0),
            "one token per 100 ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(100), 1.0));
        // A clock that goes back never adds tokens.
        assert!(!b.take(t0, 1.0));
    }

    #[test]
    fn now_moves_both_clocks_together() {
        let n = Now {
            mono: Instant::now(),
            unix_ms: 10_000,
        };
        let later = n.after(Duration::from_millis(2500));
        assert_eq!((later.unix_ms, later.unix_secs()), (12_500, 12));
        assert_eq!(later.at(n.mono), n);
    }

    #[test]
    fn times_go_to_the_wall_clock_and_back() {
        let n = Now {
            mono: Instant::now() + Duration::from_secs(100),
            unix_ms: 1_000_000,
        };
        let later = n.mono + Duration::from_millis(1500);
        assert_eq!(n.unix_ms_of(later), 1_001_500);
        assert_eq!(n.instant_of(1_001_500), later);
        let earlier = n.mono - Duration::from_millis(250);
        assert_eq!(n.unix_ms_of(earlier), 999_750);
        assert_eq!(n.instant_of(999_750), earlier);
    }
}
