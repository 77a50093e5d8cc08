//! One member's session across connections: its sequence numbers, the log of messages not yet
//! acknowledged (replayed on resume), and the last client message processed.

use std::collections::VecDeque;

use std::net::IpAddr;

use bytes::Bytes;

use crate::ConnId;

#[derive(Debug)]
pub(crate) struct Session {
    /// The connection carrying it; `None` while detached (waiting for a resume).
    pub conn: Option<ConnId>,
    /// The address it counts against: its connection's, or its last one's while detached.
    pub ip: IpAddr,
    /// Set once it joins a room: resuming needs it.
    pub token: Option<String>,
    /// The `sn` of the next message.
    next_sn: u64,
    /// Messages numbered and not yet acknowledged, oldest first; kept only once joined.
    log: VecDeque<(u64, Bytes)>,
    log_bytes: usize,
    /// Highest client `cn` processed.
    pub last_cn: u64,
    /// Detached by the server's own shutdown (not by its network): the next process gives it
    /// a whole grace period, since its client could not come back while the server was down.
    pub stopped: bool,
}

impl Session {
    pub fn new(conn: ConnId, ip: IpAddr) -> Self {
        Self {
            conn: Some(conn),
            ip,
            token: None,
            next_sn: 1,
            log: VecDeque::new(),
            log_bytes: 0,
            last_cn: 0,
            stopped: false,
        }
    }

    /// A session written down by an earlier process, detached: numbering goes on from
    /// `next_sn`, the log holds what its client had not acknowledged.
    pub fn restored(
        ip: IpAddr,
        token: String,
        next_sn: u64,
        last_cn: u64,
        log: VecDeque<(u64, Bytes)>,
    ) -> Self {
        let log_bytes = log.iter().map(|(_, f)| f.len()).sum();
        Self {
            conn: None,
            ip,
            token: Some(token),
            next_sn,
            log,
            log_bytes,
            last_cn,
            stopped: false,
        }
    }

    /// The `sn` of the next message.
    pub fn next_sn(&self) -> u64 {
        self.next_sn
    }

    /// The logged messages, oldest first.
    pub fn log_entries(&self) -> impl Iterator<Item = &(u64, Bytes)> {
        self.log.iter()
    }

    /// The number for the next message.
    pub fn number(&mut self) -> u64 {
        let sn = self.next_sn;
        self.next_sn += 1;
        sn
    }

    /// The highest `sn` given out.
    pub fn last_sn(&self) -> u64 {
        self.next_sn - 1
    }

    /// Keeps `frame` (numbered `sn`) until it is acknowledged; false if that would take the log
    /// over `limit` bytes (the session is then too far behind to resume without loss).
    pub fn log(&mut self, sn: u64, frame: Bytes, limit: usize) -> bool {
        if self.log_bytes + frame.len() > limit {
            return false;
        }
        self.log_bytes += frame.len();
        self.log.push_back((sn, frame));
        true
    }

    /// The client has everything up to `sn`; returns the bytes this frees.
    pub fn ack(&mut self, sn: u64) -> usize {
        let before = self.log_bytes;
        while let Some((_, frame)) = self.log.front().filter(|(n, _)| *n <= sn) {
            self.log_bytes -= frame.len();
            self.log.pop_front();
        }
        before - self.log_bytes
    }

    /// Drops the whole log; returns the bytes this frees.
    pub fn clear_log(&mut self) -> usize {
        self.log.clear();
        std::mem::take(&mut self.log_bytes)
    }

    pub fn log_bytes(&self) -> usize {
        self.log_bytes
    }

    /// Logged messages numbered above `sn`, in order.
    pub fn after(&self, sn: u64) -> impl Iterator<Item = &Bytes> {
        self.log.iter().filter(move |(n, _)| *n > sn).map(|(_, f)| f)
    }

    /// Whether a client message numbered `cn` is new (to process) or a replayed duplicate.
    pub fn accept_cn(&mut self, cn: u64) -> bool {
        let new = cn > self.last_cn;
        if new {
            self.last_cn = cn;
        }
        new
    }

    /// Checks the log's bookkeeping; for tests.
    pub fn assert_consistent(&self) {
        assert_eq!(
            self.log_bytes,
            self.log.iter().map(|(_, f)| f.len()).sum::<usize>(),
            "log bytes"
        );
        assert!(
            self.log
                .iter()
                .zip(self.log.iter().skip(1))
                .all(|(a, b)| a.0 < b.0),
            "log in order"
        );
        assert!(
            self.log.back().is_none_or(|(n, _)| *n < self.next_sn),
            "log within sent"
        );
        assert!(
            self.token.is_some() || self.log.is_empty(),
            "only joined sessions log"
        );
    }
}
