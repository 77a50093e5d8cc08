//! The hub: the room core behind one lock, and an outbox per connected session.
//!
//! Every input (a decoded message, a closed connection, a timer firing) takes the lock, feeds
//! the core, and delivers the core's outputs to the sessions' bounded outboxes before the lock
//! is released, so all sessions see events in the one order the core produced them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use visavis_protocol::{decode_client, ServerMsg};
use visavis_room::{Core, Counts, Now, SessionId};

/// Shared by every session task and the timer task.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Wakes the timer task when the core's next deadline moved earlier.
    timer: Notify,
    next_session: AtomicU64,
    outbound_queue: usize,
}

#[derive(Debug)]
struct Inner {
    core: Core,
    outboxes: HashMap<SessionId, mpsc::Sender<Utf8Bytes>>,
}

impl Inner {
    /// Hands every pending core output to its session. A session whose outbox is full is
    /// cut off: its outbox is dropped, so its task closes the connection (code 1008).
    fn deliver(&mut self) {
        while let Some(out) = self.core.poll_output() {
            self.push(out.to, &out.msg);
        }
    }

    fn push(&mut self, to: SessionId, msg: &ServerMsg) {
        let Some(outbox) = self.outboxes.get(&to) else {
            return; // the session has gone; nothing to tell it
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = outbox.try_send(msg.to_json().into()) {
            tracing::warn!(session = to, "outbound queue full; disconnecting slow client");
            self.outboxes.remove(&to);
        }
    }
}

impl Hub {
    pub fn new(core: Core, outbound_queue: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                core,
                outboxes: HashMap::new(),
            }),
            timer: Notify::new(),
            next_session: AtomicU64::new(1),
            outbound_queue,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug, but the state is still better served than
        // every later request failing, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new connection; the receiver yields the JSON text frames to send it.
    pub fn connect(&self) -> (SessionId, mpsc::Receiver<Utf8Bytes>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.outbound_queue);
        self.lock().outboxes.insert(id, tx);
        (id, rx)
    }

    /// One text frame from `session`.
    pub fn handle_text(&self, session: SessionId, text: &str) {
        let decoded = decode_client(text);
        let mut inner = self.lock();
        match decoded {
            Ok(msg) => {
                let before = inner.core.poll_timeout();
                inner.core.handle_message(now(), session, msg);
                let after = inner.core.poll_timeout();
                inner.deliver();
                if after.is_some() && (before.is_none() || after < before) {
                    self.timer.notify_one();
                }
            }
            Err(err) => inner.push(session, &err.into_msg()),
        }
    }

    /// Sends `msg` to `session` alone, in order with everything else it is sent.
    pub fn reply(&self, session: SessionId, msg: &ServerMsg) {
        self.lock().push(session, msg);
    }

    /// The connection of `session` closed.
    pub fn disconnect(&self, session: SessionId) {
        let mut inner = self.lock();
        inner.outboxes.remove(&session);
        inner.core.handle_disconnect(session);
        inner.deliver();
    }

    pub fn counts(&self) -> (usize, Counts) {
        let inner = self.lock();
        (inner.outboxes.len(), inner.core.counts())
    }

    /// Fires the core's timers (ring timeouts) until `shutdown`.
    pub async fn run_timers(&self, shutdown: CancellationToken) {
        loop {
            let next = self.lock().core.poll_timeout();
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
                    inner.core.handle_timeout(Instant::now());
                    inner.deliver();
                }
            }
        }
    }
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
