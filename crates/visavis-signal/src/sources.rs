//! What each source address holds: its sessions (connected or waiting to resume) and one
//! message budget shared by all its connections, so that opening more connections, or
//! reconnecting, buys an address nothing. An address's entry outlives its last session until
//! its budget would have refilled, so a quick reconnect finds it as drained as it left it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use visavis_sansio::{Deadlines, TokenBucket};

#[derive(Debug)]
struct Source {
    sessions: usize,
    bucket: TokenBucket,
}

#[derive(Debug)]
pub(crate) struct Sources {
    by_ip: HashMap<IpAddr, Source>,
    /// When an address without sessions is forgotten.
    idle: Deadlines<IpAddr>,
    max_sessions: usize,
    rate: f64,
    burst: f64,
}

impl Sources {
    pub fn new(max_sessions: usize, rate: f64, burst: f64) -> Self {
        Self {
            by_ip: HashMap::new(),
            idle: Deadlines::default(),
            max_sessions,
            rate,
            burst,
        }
    }

    /// Whether `ip` may hold one more session.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.sessions(ip) < self.max_sessions
    }

    pub fn sessions(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&ip).map_or(0, |s| s.sessions)
    }

    pub fn add_session(&mut self, now: Instant, ip: IpAddr) {
        let (rate, burst) = (self.rate, self.burst);
        let source = self.by_ip.entry(ip).or_insert_with(|| Source {
            sessions: 0,
            bucket: TokenBucket::new(rate, burst, now),
        });
        source.sessions += 1;
        self.idle.remove(ip);
    }

    pub fn remove_session(&mut self, now: Instant, ip: IpAddr) {
        let Some(source) = self.by_ip.get_mut(&ip) else {
            return;
        };
        source.sessions = source.sessions.saturating_sub(1);
        if source.sessions == 0 {
            let refill = Duration::from_secs_f64((self.burst / self.rate).clamp(0.0, 3600.0));
            self.idle.insert(ip, now + refill);
        }
    }

    /// Takes one message from `ip`'s budget.
    pub fn take(&mut self, now: Instant, ip: IpAddr) -> bool {
        self.by_ip.get_mut(&ip).is_some_and(|s| s.bucket.take(now, 1.0))
    }

    /// Forgets addresses that have been without sessions long enough to be full again.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(ip) = self.idle.pop_due(now) {
            if self.by_ip.get(&ip).is_some_and(|s| s.sessions == 0) {
                self.by_ip.remove(&ip);
            }
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.idle.next()
    }

    /// Checks the counts against `actual`, the sessions per address counted from the sessions
    /// themselves; for tests.
    pub fn assert_consistent(&self, actual: &HashMap<IpAddr, usize>) {
        for (ip, source) in &self.by_ip {
            assert_eq!(
                source.sessions,
                actual.get(ip).copied().unwrap_or(0),
                "sessions of {ip}"
            );
            assert_eq!(
                source.sessions == 0,
                self.idle.get(*ip).is_some(),
                "an address is idle exactly when it has no sessions"
            );
        }
        for ip in actual.keys() {
            assert!(self.by_ip.contains_key(ip), "{ip} has sessions but no entry");
        }
    }
}
