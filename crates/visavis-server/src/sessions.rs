//! Signalling sessions across connections, sans-IO: resume tokens, sequence numbers, the log of
//! messages not yet acknowledged (replayed on resume), duplicate suppression of client messages,
//! and the grace period of a session whose connection dropped.
//!
//! A session is what the room core knows as a `SessionId`; a connection is one WebSocket. A
//! joined session whose connection drops is *detached* until it resumes on a new connection
//! with its token, or its grace period ends and it is gone for good.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use visavis_room::SessionId;

/// Why a resume was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeError {
    /// No live session holds that token (never issued, expired, or the session left).
    UnknownToken,
    /// The client claims to have received messages that were never sent.
    BadSequence,
}

#[derive(Debug)]
struct Session {
    /// Set once the session joins a room; resuming needs it.
    token: Option<String>,
    /// Detached since: the grace period runs from here.
    detached: Option<Instant>,
    next_sn: u64,
    /// Messages sent (or queued while detached) and not yet acknowledged, oldest first.
    log: VecDeque<(u64, Utf8Bytes)>,
    /// Bytes in `log`.
    log_bytes: usize,
    /// Highest client sequence number processed.
    last_cn: u64,
}

/// Every session of the server, attached or detached.
#[derive(Debug)]
pub struct SessionTable {
    sessions: HashMap<SessionId, Session>,
    by_token: HashMap<String, SessionId>,
    deadlines: BTreeSet<(Instant, SessionId)>,
    grace: Duration,
    /// Unacknowledged bytes kept per session; a session that falls further behind cannot be
    /// resumed without loss, so it is ended instead.
    log_limit: usize,
}

/// What happened to a message for a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// Numbered and logged; send these bytes now.
    Send(Utf8Bytes),
    /// Numbered and logged for replay; the session is detached.
    Held,
    /// The session is too far behind to resume losslessly: end it.
    Overflow,
    /// No such session.
    Gone,
}

impl SessionTable {
    pub fn new(grace: Duration, log_limit: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            by_token: HashMap::new(),
            deadlines: BTreeSet::new(),
            grace,
            log_limit,
        }
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// A new connection's session.
    pub fn open(&mut self, session: SessionId) {
        self.sessions.insert(
            session,
            Session {
                token: None,
                detached: None,
                next_sn: 1,
                log: VecDeque::new(),
                log_bytes: 0,
                last_cn: 0,
            },
        );
    }

    /// The session joined a room: from now on it can be resumed with `token`.
    pub fn issue_token(&mut self, session: SessionId, token: String) {
        if let Some(s) = self.sessions.get_mut(&session) {
            if let Some(old) = s.token.replace(token.clone()) {
                self.by_token.remove(&old);
            }
            self.by_token.insert(token, session);
        }
    }

    /// The session left its room: its token no longer resumes anything.
    pub fn revoke_token(&mut self, session: SessionId) {
        if let Some(token) = self.sessions.get_mut(&session).and_then(|s| s.token.take()) {
            self.by_token.remove(&token);
        }
        if let Some(s) = self.sessions.get_mut(&session) {
            s.log.clear();
            s.log_bytes = 0;
        }
    }

    pub fn is_joined(&self, session: SessionId) -> bool {
        self.sessions.get(&session).is_some_and(|s| s.token.is_some())
    }

    /// Numbers `json` (a serialised message object) for `session`, logs it for replay if the
    /// session can resume, and says what to do with it.
    pub fn outgoing(&mut self, session: SessionId, json: &str) -> Outgoing {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Outgoing::Gone;
        };
        let sn = s.next_sn;
        s.next_sn += 1;
        let framed: Utf8Bytes = with_field(json, "sn", &sn.to_string()).into();
        if s.token.is_some() {
            if s.log_bytes + framed.len() > self.log_limit {
                return Outgoing::Overflow;
            }
            s.log_bytes += framed.len();
            s.log.push_back((sn, framed.clone()));
        }
        if s.detached.is_some() {
            Outgoing::Held
        } else {
            Outgoing::Send(framed)
        }
    }

    /// The client has everything up to `sn`.
    pub fn ack(&mut self, session: SessionId, sn: u64) {
        if let Some(s) = self.sessions.get_mut(&session) {
            while let Some((_, text)) = s.log.front().filter(|(n, _)| *n <= sn) {
                s.log_bytes -= text.len();
                s.log.pop_front();
            }
        }
    }

    /// Whether a client message numbered `cn` is new (to process) or a replayed duplicate.
    pub fn accept_cn(&mut self, session: SessionId, cn: u64) -> bool {
        match self.sessions.get_mut(&session) {
            Some(s) if cn > s.last_cn => {
                s.last_cn = cn;
                true
            }
            _ => false,
        }
    }

    pub fn last_cn(&self, session: SessionId) -> u64 {
        self.sessions.get(&session).map_or(0, |s| s.last_cn)
    }

    /// The connection dropped without a goodbye. A joined session waits for a resume; returns
    /// false (and forgets the session) if it had not joined.
    pub fn detach(&mut self, session: SessionId, now: Instant) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else {
            return false;
        };
        if s.token.is_none() {
            self.close(session);
            return false;
        }
        if s.detached.is_none() {
            s.detached = Some(now);
            self.deadlines.insert((now + self.grace, session));
        }
        true
    }

    /// A new connection presents `token` and the last sequence number it received. On success
    /// the session is attached again; returns it with the last client message processed and the
    /// messages to replay. The connection's own provisional session `provisional` is dropped.
    pub fn resume(
        &mut self,
        token: &str,
        last_sn: u64,
        provisional: SessionId,
    ) -> Result<(SessionId, u64, Vec<Utf8Bytes>), ResumeError> {
        let session = *self.by_token.get(token).ok_or(ResumeError::UnknownToken)?;
        let s = self.sessions.get_mut(&session).ok_or(ResumeError::UnknownToken)?;
        if last_sn >= s.next_sn {
            return Err(ResumeError::BadSequence);
        }
        if let Some(since) = s.detached.take() {
            self.deadlines.remove(&(since + self.grace, session));
        }
        let replay = s
            .log
            .iter()
            .filter(|(n, _)| *n > last_sn)
            .map(|(_, m)| m.clone())
            .collect();
        let last_cn = s.last_cn;
        if provisional != session {
            self.close(provisional);
        }
        Ok((session, last_cn, replay))
    }

    /// The session is over (it left, closed cleanly, or was ended).
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            if let Some(token) = s.token {
                self.by_token.remove(&token);
            }
            if let Some(since) = s.detached {
                self.deadlines.remove(&(since + self.grace, session));
            }
        }
    }

    /// Detached sessions whose grace period has ended by `now`; they are forgotten.
    pub fn expire(&mut self, now: Instant) -> Vec<SessionId> {
        let mut gone = Vec::new();
        while let Some(&(deadline, session)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.close(session);
            gone.push(session);
        }
        gone
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Live sessions (attached or detached).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn detached(&self) -> usize {
        self.deadlines.len()
    }
}

/// `json` (an object) with `"name":value` added as its first field.
pub fn with_field(json: &str, name: &str, value: &str) -> String {
    let body = json.strip_prefix('{').unwrap_or(json);
    let sep = if body.starts_with('}') { "" } else { "," };
    format!("{{\"{name}\":{value}{sep}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(o: Outgoing) -> String {
        match o {
            Outgoing::Send(b) => b.as_str().to_owned(),
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn messages_are_numbered_and_framed() {
        let mut t = SessionTable::new(Duration::from_secs(30), 100);
        t.open(1);
        assert_eq!(
            sent(t.outgoing(1, r#"{"type":"error"}"#)),
            r#"{"sn":1,"type":"error"}"#
        );
        assert_eq!(sent(t.outgoing(1, "{}")), r#"{"sn":2}"#);
        assert_eq!(t.outgoing(9, "{}"), Outgoing::Gone);
    }

    #[test]
    fn a_detached_session_resumes_with_replay_of_what_was_not_acknowledged() {
        let now = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(30), 100);
        t.open(1);
        t.issue_token(1, "tok".into());
        for i in 0..5 {
            t.outgoing(1, &format!(r#"{{"i":{i}}}"#));
        }
        t.ack(1, 2);
        assert!(t.accept_cn(1, 1) && t.accept_cn(1, 2));
        assert!(!t.accept_cn(1, 2), "a replayed client message is a duplicate");
        assert!(t.detach(1, now));
        assert_eq!(t.outgoing(1, r#"{"i":5}"#), Outgoing::Held);
        assert_eq!(t.detached(), 1);

        t.open(2); // the new connection's provisional session
        let (session, last_cn, replay) = t.resume("tok", 3, 2).unwrap();
        assert_eq!((session, last_cn), (1, 2));
        let replay: Vec<&str> = replay.iter().map(Utf8Bytes::as_str).collect();
        assert_eq!(
            replay,
            vec![r#"{"sn":4,"i":3}"#, r#"{"sn":5,"i":4}"#, r#"{"sn":6,"i":5}"#]
        );
        assert_eq!(t.detached(), 0);
        assert_eq!(t.len(), 1, "the provisional session is gone");
        assert_eq!(sent(t.outgoing(1, "{}")), r#"{"sn":7}"#);
    }

    #[test]
    fn tokens_are_refused_when_unknown_expired_revoked_or_out_of_sequence() {
        let now = Instant::now();
        let mut t = SessionTable::new(Duration::from_secs(30), 100);
        t.open(1);
        t.issue_token(1, "tok".into());
        t.outgoing(1, "{}");
        assert_eq!(t.resume("nope", 0, 5), Err(ResumeError::UnknownToken));
        assert_eq!(t.resume("tok", 99, 5), Err(ResumeError::BadSequence));
        t.detach(1, now);
        assert!(t.expire(now + Duration::from_secs(29)).is_empty());
        assert_eq!(t.expire(now + Duration::from_secs(30)), vec![1]);
        assert_eq!(t.resume("tok", 0, 5), Err(ResumeError::UnknownToken), "expired");

        t.open(3);
        t.issue_token(3, "tok3".into());
        t.revoke_token(3);
        assert_eq!(
            t.resume("tok3", 0, 5),
            Err(ResumeError::UnknownToken),
            "left the room"
        );
    }

    #[test]
    fn unjoined_sessions_are_not_kept_and_the_log_is_bounded_in_bytes() {
        // Each `{}` is logged as `{"sn":N}`: 8 bytes.
        let mut t = SessionTable::new(Duration::from_secs(30), 16);
        t.open(1);
        assert!(!t.detach(1, Instant::now()));
        assert_eq!(t.len(), 0);
        t.open(2);
        t.issue_token(2, "t".into());
        t.outgoing(2, "{}");
        t.outgoing(2, "{}");
        assert_eq!(t.outgoing(2, "{}"), Outgoing::Overflow);
        t.ack(2, 1); // frees 8 bytes
        assert!(matches!(t.outgoing(2, "{}"), Outgoing::Send(_)));
    }
}
