//! The hub: the room core and the session table behind one lock, and an outbox per attached
//! connection.
//!
//! Every input (a decoded message, a dropped or closed connection, a timer) takes the lock,
//! feeds the core, and hands the core's outputs to the sessions (numbered and logged for
//! replay) and to their connections' bounded outboxes before the lock is released, so all
//! sessions see events in the one order the core produced them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use visavis_protocol::{decode_client, ClientMsg, ErrorCode, ServerMsg, PROTOCOL_VERSION};
use visavis_room::{Core, Counts, Now, SessionId};

use crate::sessions::{with_field, Outgoing, ResumeError, SessionTable};

/// What a connection task is told to do.
#[derive(Debug)]
pub enum Out {
    Text(Utf8Bytes),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// How a connection ended, as its task saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame (the person left or closed the tab): leave at once.
    Goodbye,
    /// No close frame (a network drop, an error, a heartbeat timeout), or a close code of
    /// 4000-4999 (the client will be back): the session may resume within the grace period.
    Dropped,
    /// The server ended it (shutdown, too slow, taken over by a resume): nothing more to do
    /// for the room than for a drop.
    ServerClosed,
}

/// Shared by every connection task and the timer task.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Wakes the timer task when a deadline moved earlier.
    timer: Notify,
    next_session: AtomicU64,
    outbound_queue: usize,
    pub heartbeat: Duration,
}

/// A connection, numbered like the session it opened with.
pub type ConnId = u64;

#[derive(Debug)]
struct Inner {
    core: Core,
    table: SessionTable,
    /// The connection serving each attached session.
    outboxes: HashMap<SessionId, (ConnId, mpsc::Sender<Out>)>,
}

impl Inner {
    /// Hands every pending core output to its session.
    fn deliver(&mut self, heartbeat: Duration) {
        while let Some(out) = self.core.poll_output() {
            let mut json = out.msg.to_json();
            if let ServerMsg::Joined { .. } = out.msg {
                // Session fields: the resume token and the timing the client needs.
                let token = new_token();
                json = with_field(
                    &json,
                    "resumeGraceMs",
                    &self.table.grace().as_millis().to_string(),
                );
                json = with_field(&json, "heartbeatMs", &heartbeat.as_millis().to_string());
                json = with_field(&json, "token", &format!("\"{token}\""));
                self.table.issue_token(out.to, token);
            } else if let ServerMsg::Left { .. } = out.msg {
                self.table.revoke_token(out.to);
            }
            self.push(out.to, &json);
        }
    }

    fn push(&mut self, to: SessionId, json: &str) {
        match self.table.outgoing(to, json) {
            Outgoing::Send(text) => self.send_now(to, Out::Text(text)),
            Outgoing::Held | Outgoing::Gone => {}
            Outgoing::Overflow => {
                tracing::warn!(session = to, "too far behind to resume; ending the session");
                self.send_now(to, Out::Close(1008, "too far behind"));
                self.outboxes.remove(&to);
                self.table.close(to);
                self.core.handle_disconnect(to);
            }
        }
    }

    /// Straight to the connection; a full outbox cuts the connection off (its task closes it
    /// with 1008 when it finds the outbox dropped).
    fn send_now(&mut self, to: SessionId, out: Out) {
        if let Some((_, outbox)) = self.outboxes.get(&to) {
            if let Err(mpsc::error::TrySendError::Full(_)) = outbox.try_send(out) {
                tracing::warn!(session = to, "outbound queue full; disconnecting slow client");
                self.outboxes.remove(&to);
            }
        }
    }

    fn error(&mut self, to: SessionId, code: ErrorCode, message: String, request: Option<String>) {
        let json = ServerMsg::Error {
            code,
            message,
            request,
        }
        .to_json();
        self.push(to, &json);
    }
}

impl Hub {
    pub fn new(core: Core, table: SessionTable, outbound_queue: usize, heartbeat: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                core,
                table,
                outboxes: HashMap::new(),
            }),
            timer: Notify::new(),
            next_session: AtomicU64::new(1),
            outbound_queue,
            heartbeat,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug, but the state is still better served than
        // every later request failing, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection with a fresh session (both numbered `id`); the receiver
    /// yields what to send it.
    pub fn connect(&self) -> (ConnId, mpsc::Receiver<Out>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.outbound_queue);
        let mut inner = self.lock();
        inner.table.open(id);
        inner.outboxes.insert(id, (id, tx));
        (id, rx)
    }

    /// One text frame from the connection serving `session`. Returns the session the
    /// connection serves from now on (another one after a successful `resume`).
    pub fn handle_text(&self, session: SessionId, text: &str) -> SessionId {
        let decoded = decode_client(text);
        let mut inner = self.lock();
        let msg = match decoded {
            Ok(msg) => msg,
            Err(err) => {
                inner.error(session, err.code, err.message, err.request);
                return session;
            }
        };
        match msg {
            ClientMsg::Pong { ack } => inner.table.ack(session, ack),
            ClientMsg::Resume {
                version,
                token,
                last_sn,
            } => return self.resume(&mut inner, session, version, &token, last_sn),
            msg => {
                // Messages numbered by the client are processed once, even when replayed.
                if let Some(cn) = client_seq(text) {
                    if !inner.table.accept_cn(session, cn) {
                        return session;
                    }
                }
                let before = inner.core.poll_timeout();
                inner.core.handle_message(now(), session, msg);
                let after = inner.core.poll_timeout();
                inner.deliver(self.heartbeat);
                if after.is_some() && (before.is_none() || after < before) {
                    self.timer.notify_one();
                }
            }
        }
        session
    }

    fn resume(
        &self,
        inner: &mut Inner,
        provisional: SessionId,
        version: u32,
        token: &str,
        last_sn: u64,
    ) -> SessionId {
        if version != PROTOCOL_VERSION {
            let message =
                format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}");
            inner.error(
                provisional,
                ErrorCode::UnsupportedVersion,
                message,
                Some("resume".into()),
            );
            return provisional;
        }
        if inner.table.is_joined(provisional) {
            inner.error(
                provisional,
                ErrorCode::AlreadyJoined,
                "this connection already has a session".into(),
                Some("resume".into()),
            );
            return provisional;
        }
        match inner.table.resume(token, last_sn, provisional) {
            Ok((session, last_cn, replay)) => {
                let Some(outbox) = inner.outboxes.remove(&provisional) else {
                    return provisional;
                };
                // A connection still holding the session (its drop not noticed yet) gives way.
                if let Some((_, old)) = inner.outboxes.insert(session, outbox) {
                    let _ = old.try_send(Out::Close(4009, "resumed on another connection"));
                }
                let reply = ServerMsg::Resumed {
                    version: PROTOCOL_VERSION,
                    last_cn,
                }
                .to_json();
                inner.send_now(session, Out::Text(reply.into()));
                for text in replay {
                    inner.send_now(session, Out::Text(text));
                }
                inner.core.handle_reattach(session);
                inner.deliver(self.heartbeat);
                session
            }
            Err(err) => {
                let message = match err {
                    ResumeError::UnknownToken => "unknown or expired session token; join again",
                    ResumeError::BadSequence => "that sequence number was never sent; join again",
                };
                inner.error(
                    provisional,
                    ErrorCode::InvalidToken,
                    message.into(),
                    Some("resume".into()),
                );
                provisional
            }
        }
    }

    /// Sends `msg` to `session`'s connection, in order with everything else it is sent.
    pub fn reply(&self, session: SessionId, msg: &ServerMsg) {
        let json = msg.to_json();
        self.lock().push(session, &json);
    }

    /// A heartbeat for the connection serving `session` (not logged: it is about this
    /// connection, not the session).
    pub fn ping(&self, session: SessionId) {
        let mut inner = self.lock();
        let ack = inner.table.last_cn(session);
        let json = ServerMsg::Ping { ack }.to_json();
        inner.send_now(session, Out::Text(json.into()));
    }

    /// Connection `conn`, serving `session`, ended. If a newer connection has taken the session
    /// over meanwhile, this changes nothing.
    pub fn disconnect(&self, session: SessionId, conn: ConnId, ending: Ending) {
        let mut inner = self.lock();
        if inner.outboxes.get(&session).is_some_and(|(c, _)| *c != conn) {
            return;
        }
        inner.outboxes.remove(&session);
        match ending {
            Ending::Goodbye => {
                inner.table.close(session);
                inner.core.handle_disconnect(session);
            }
            Ending::Dropped | Ending::ServerClosed => {
                if inner.table.detach(session, Instant::now()) {
                    inner.core.handle_detach(session);
                    self.timer.notify_one();
                } else {
                    inner.core.handle_disconnect(session);
                }
            }
        }
        inner.deliver(self.heartbeat);
    }

    /// Attached connections, sessions waiting to resume, and the room core's counts.
    pub fn counts(&self) -> (usize, usize, Counts) {
        let inner = self.lock();
        (inner.outboxes.len(), inner.table.detached(), inner.core.counts())
    }

    /// Fires the core's timers (ring timeouts) and ends sessions whose grace ran out, until
    /// `shutdown`.
    pub async fn run_timers(&self, shutdown: CancellationToken) {
        loop {
            let next = {
                let inner = self.lock();
                match (inner.core.poll_timeout(), inner.table.poll_timeout()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            };
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.timer.notified() => continue,
                () = sleep => {
                    let mut inner = self.lock();
                    let now = Instant::now();
                    inner.core.handle_timeout(now);
                    for session in inner.table.expire(now) {
                        inner.core.handle_disconnect(session);
                    }
                    inner.deliver(self.heartbeat);
                }
            }
        }
    }
}

/// The client's sequence number `cn`, if the message carries one. Only messages that mention
/// it pay for the second, small parse.
fn client_seq(text: &str) -> Option<u64> {
    if !text.contains("\"cn\"") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Seq {
        cn: Option<u64>,
    }
    serde_json::from_str::<Seq>(text).ok().and_then(|s| s.cn)
}

/// A resume token: 128 random bits, hex.
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // Linux always has randomness; should it ever fail, the token is the clock's, which is
        // guessable, so say so loudly rather than fail the join.
        tracing::error!("no randomness for a resume token ({err}); using the clock");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now {
        mono: Instant::now(),
        unix_ms,
    }
}
