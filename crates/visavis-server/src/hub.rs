//! The signalling state machine's edge: `visavis_signal::Signalling` behind one lock, a bounded
//! outbox per connection, and the timer task that sleeps until its next deadline.
//!
//! Every input takes the lock, feeds the state machine with the current time and hands its
//! outputs to the connections' outboxes before the lock is released, so every connection sees
//! events in the one order the state machine produced them.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use visavis_sansio::Now;
use visavis_signal::{ConnId, Ending, Output, Signalling, SignallingCounts};

/// What a connection task is told to do.
#[derive(Debug)]
pub enum Out {
    Text(Utf8Bytes),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// Shared by every connection task and the timer task.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    /// Wakes the timer task when a deadline moved earlier.
    timer: Notify,
    outbound_queue: usize,
}

#[derive(Debug)]
struct Inner {
    sig: Signalling,
    outboxes: HashMap<ConnId, mpsc::Sender<Out>>,
    /// Set once shutdown began: new connections are turned away.
    stopping: bool,
}

impl Inner {
    /// Carries out everything the state machine asked for.
    fn dispatch(&mut self, now: Now) {
        while let Some(out) = self.sig.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let Some(outbox) = self.outboxes.get(&conn) else {
                        continue;
                    };
                    // The state machine writes JSON, which is UTF-8; the check is cheap.
                    let Ok(text) = Utf8Bytes::try_from(frame) else {
                        continue;
                    };
                    if let Err(mpsc::error::TrySendError::Full(_)) = outbox.try_send(Out::Text(text)) {
                        // Dropping the outbox makes the connection's task close it (1008).
                        tracing::warn!(conn, "outbound queue full; disconnecting slow client");
                        self.outboxes.remove(&conn);
                        self.sig.handle_close(now, conn, Ending::Dropped);
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(outbox) = self.outboxes.remove(&conn) {
                        let _ = outbox.try_send(Out::Close(code, reason));
                    }
                }
            }
        }
    }
}

impl Hub {
    pub fn new(sig: Signalling, outbound_queue: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                sig,
                outboxes: HashMap::new(),
                stopping: false,
            }),
            timer: Notify::new(),
            outbound_queue,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug, but the state is still better served than
        // every later request failing, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Feeds one input to the state machine and carries out its outputs.
    fn with(&self, input: impl FnOnce(&mut Signalling, Now)) {
        let mut inner = self.lock();
        let now = Now::system();
        let before = inner.sig.poll_timeout();
        input(&mut inner.sig, now);
        inner.dispatch(now);
        let after = inner.sig.poll_timeout();
        if after.is_some() && (before.is_none() || after < before) {
            self.timer.notify_one();
        }
    }

    /// Registers a new connection; the receiver yields what to send it. `None` once the
    /// server is shutting down.
    pub fn connect(&self) -> Option<(ConnId, mpsc::Receiver<Out>)> {
        let (tx, rx) = mpsc::channel(self.outbound_queue);
        let mut conn = None;
        self.with(|sig, now| conn = Some(sig.handle_open(now)));
        let conn = conn?;
        let mut inner = self.lock();
        if inner.stopping {
            inner.sig.handle_close(Now::system(), conn, Ending::Goodbye);
            return None;
        }
        inner.outboxes.insert(conn, tx);
        Some((conn, rx))
    }

    pub fn text(&self, conn: ConnId, text: &str) {
        self.with(|sig, now| sig.handle_text(now, conn, text));
    }

    pub fn binary(&self, conn: ConnId) {
        self.with(|sig, now| sig.handle_binary(now, conn));
    }

    /// A WebSocket ping or pong frame: a sign of life.
    pub fn alive(&self, conn: ConnId) {
        self.with(|sig, now| sig.handle_alive(now, conn));
    }

    /// The connection ended (nothing happens if the server had already closed it).
    pub fn closed(&self, conn: ConnId, ending: Ending) {
        self.with(|sig, now| sig.handle_close(now, conn, ending));
        self.lock().outboxes.remove(&conn);
    }

    pub fn counts(&self) -> SignallingCounts {
        self.lock().sig.counts()
    }

    /// How long a connection may take to accept what it is sent.
    pub fn write_timeout(&self) -> std::time::Duration {
        self.lock().sig.config().heartbeat
    }

    /// Largest text frame accepted.
    pub fn max_message(&self) -> usize {
        self.lock().sig.config().max_message
    }

    /// Drives the state machine's timers until `shutdown`; then tells every connection to
    /// reconnect and closes it.
    pub async fn run_timers(&self, shutdown: CancellationToken) {
        loop {
            let next = self.lock().sig.poll_timeout();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.timer.notified() => {}
                () = sleep => self.with(|sig, now| sig.handle_timeout(now)),
            }
        }
        self.with(|sig, now| sig.handle_shutdown(now));
        self.lock().stopping = true;
    }
}
