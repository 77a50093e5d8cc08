//! The signalling state machine's edge: `visavis_signal::Signalling` behind one lock, a bounded
//! outbox per connection, and the timer task that sleeps until its next deadline.
//!
//! Every input takes the lock, feeds the state machine with the current time and hands its
//! outputs to the connections' outboxes before the lock is released, so every connection sees
//! events in the one order the state machine produced them. An outbox is a queue under the
//! same lock plus a `Notify`: its connection task takes the whole queue at once, so an idle
//! connection holds no queue memory at all (a channel would hold a block of slots each).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use visavis_sansio::Now;
use visavis_signal::{close, ConnId, Ending, Event, Output, Refusal, Signalling, SignallingCounts};

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
    /// Set by every input that may have changed what the state store keeps; cleared when a
    /// snapshot is taken for it.
    changed: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    sig: Signalling,
    outboxes: HashMap<ConnId, Outbox>,
    /// Most frames queued for one connection.
    outbound_queue: usize,
    /// Set once shutdown began: new connections are turned away.
    stopping: bool,
    /// Told of every room event, in the order the core made them, under the lock.
    on_event: EventHook,
}

/// What else must know what happens in rooms: the TURN server, which relays only for members,
/// and the webhooks. Called under the hub's lock, so it only hands the event on.
pub struct EventHook(pub Box<OnEvent>);

/// The time of the input that made the event, and the event.
type OnEvent = dyn Fn(Now, &Event) + Send + Sync;

impl std::fmt::Debug for EventHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventHook")
    }
}

/// What waits to be written to one connection.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Out>,
    /// Wakes the connection's task when the queue goes from empty to not, or the outbox is
    /// taken away.
    wake: Arc<Notify>,
}

impl Inner {
    /// Carries out everything the state machine asked for. Returns whether anything but a
    /// heartbeat `ping` went out: a timer that only sent pings changed nothing the state
    /// store keeps (a ping is not numbered and not logged), so it need not be written again.
    fn dispatch(&mut self, now: Now) -> bool {
        let mut changed = false;
        while let Some(out) = self.sig.poll_output() {
            changed |= !matches!(&out, Output::Send { frame, .. } if frame.starts_with(PING));
            let (conn, out) = match out {
                // The state machine writes JSON, which is UTF-8; the check is cheap.
                Output::Send { conn, frame } => match Utf8Bytes::try_from(frame) {
                    Ok(text) => (conn, Out::Text(text)),
                    Err(_) => continue,
                },
                Output::Close { conn, code, reason } => (conn, Out::Close(code, reason)),
                Output::Event(event) => {
                    (self.on_event.0)(now, &event);
                    continue;
                }
            };
            let Some(outbox) = self.outboxes.get_mut(&conn) else {
                continue;
            };
            if outbox.queue.len() >= self.outbound_queue {
                // Taking the outbox away makes the connection's task close it (1008).
                tracing::warn!(conn, "outbound queue full; disconnecting slow client");
                if let Some(outbox) = self.outboxes.remove(&conn) {
                    outbox.wake.notify_one();
                }
                self.sig.handle_close(now, conn, Ending::Dropped);
                continue;
            }
            if outbox.queue.is_empty() {
                outbox.wake.notify_one();
            }
            outbox.queue.push_back(out);
        }
        changed
    }
}

/// How every `ping` frame starts (visavis-protocol writes `type` first, and a ping has no `sn`).
const PING: &[u8] = br#"{"type":"ping","#;

impl Hub {
    pub fn new(sig: Signalling, outbound_queue: usize, on_event: EventHook) -> Self {
        Self {
            inner: Mutex::new(Inner {
                sig,
                outboxes: HashMap::new(),
                outbound_queue,
                stopping: false,
                on_event,
            }),
            timer: Notify::new(),
            changed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug, but the state is still better served than
        // every later request failing, so a poisoned lock is used as is.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Feeds one input to the state machine (and the edge's tables) and carries out the
    /// outputs, all under one lock.
    fn with<R>(&self, input: impl FnOnce(&mut Inner, Now) -> R) -> R {
        let mut inner = self.lock();
        let now = Now::system();
        let before = inner.sig.poll_timeout();
        let result = input(&mut inner, now);
        inner.dispatch(now);
        self.changed.store(true, Ordering::Relaxed);
        let after = inner.sig.poll_timeout();
        if after.is_some() && (before.is_none() || after < before) {
            self.timer.notify_one();
        }
        result
    }

    /// As [`Hub::with`] for the timer: only a timeout that sent more than pings counts as a
    /// change for the state store (heartbeats are due every few milliseconds on a busy server).
    fn with_timer(&self) {
        let mut inner = self.lock();
        let now = Now::system();
        inner.sig.handle_timeout(now);
        if inner.dispatch(now) {
            self.changed.store(true, Ordering::Relaxed);
        }
        // The timer task asks for the next deadline itself before it sleeps again.
    }

    /// Whether a connection from `ip` would be taken now.
    pub fn admits(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.lock().sig.admits(ip)
    }

    /// Registers a new connection from `ip`; the `Notify` wakes its task when [`Hub::take`]
    /// has something for it. Refused (with the close code and reason to send) once the server
    /// is shutting down, or if `ip` or the server reached its sessions since it was admitted.
    pub fn connect(&self, ip: IpAddr) -> Result<(ConnId, Arc<Notify>), (u16, &'static str)> {
        self.with(|inner, now| {
            if inner.stopping {
                return Err((close::AWAY, "server shutting down"));
            }
            let conn = inner
                .sig
                .handle_open(now, ip)
                .map_err(|_| (close::TRY_LATER, "too many sessions"))?;
            let outbox = Outbox::default();
            let wake = outbox.wake.clone();
            inner.outboxes.insert(conn, outbox);
            Ok((conn, wake))
        })
    }

    /// Everything queued for `conn`, oldest first; `None` if its outbox was taken away
    /// because it could not keep up.
    pub fn take(&self, conn: ConnId) -> Option<VecDeque<Out>> {
        let mut inner = self.lock();
        inner
            .outboxes
            .get_mut(&conn)
            .map(|o| std::mem::take(&mut o.queue))
    }

    pub fn text(&self, conn: ConnId, text: &str) {
        self.with(|inner, now| inner.sig.handle_text(now, conn, text));
    }

    pub fn binary(&self, conn: ConnId) {
        self.with(|inner, now| inner.sig.handle_binary(now, conn));
    }

    /// A WebSocket ping or pong frame: a sign of life.
    pub fn alive(&self, conn: ConnId) {
        // Changes nothing the store keeps, sends nothing, moves no deadline.
        self.lock().sig.handle_alive(Now::system(), conn);
    }

    /// The connection ended (nothing happens if the server had already closed it).
    pub fn closed(&self, conn: ConnId, ending: Ending) {
        self.with(|inner, now| {
            inner.outboxes.remove(&conn);
            inner.sig.handle_close(now, conn, ending);
        });
    }

    /// A request of the REST API: `f` acts on the room core under the lock, and what the core
    /// sends then reaches the connections, as after a client's message.
    pub fn api<R>(&self, f: impl FnOnce(&mut visavis_room::Core, Now) -> R) -> R {
        self.with(|inner, now| inner.sig.handle_api(now, f))
    }

    /// What the state store keeps, if any input may have changed it since the last call (or
    /// always, with `force`). Copied out under the lock; encoding and writing happen after.
    pub fn snapshot(&self, force: bool) -> Option<visavis_signal::Snapshot> {
        if !self.changed.swap(false, Ordering::Relaxed) && !force {
            return None;
        }
        Some(self.lock().sig.snapshot(Now::system()))
    }

    /// In a cluster: takes the rooms of `snapshot` (from another node) in; their sessions wait
    /// for their clients to resume here. Returns the members taken in.
    pub fn adopt(&self, snapshot: visavis_signal::Snapshot) -> Vec<visavis_protocol::MemberId> {
        self.with(|inner, now| {
            let before: std::collections::HashSet<_> =
                inner.sig.core().member_ids().map(|(m, _)| m).collect();
            inner.sig.adopt(snapshot, now);
            inner
                .sig
                .core()
                .member_ids()
                .map(|(m, _)| m)
                .filter(|m| !before.contains(m))
                .collect()
        })
    }

    /// In a cluster: `room` is another node's now; its clients are sent there.
    pub fn evict(&self, room: &str) {
        self.with(|inner, now| inner.sig.handle_evict(now, room));
    }

    /// The rooms held, sorted.
    pub fn room_ids(&self) -> Vec<String> {
        let inner = self.lock();
        let mut rooms: Vec<String> = inner.sig.core().room_ids().map(str::to_owned).collect();
        rooms.sort_unstable();
        rooms
    }

    /// Reads the room core under the lock (the REST API's listings).
    pub fn read<R>(&self, f: impl FnOnce(&visavis_room::Core) -> R) -> R {
        f(self.lock().sig.core())
    }

    pub fn counts(&self) -> SignallingCounts {
        self.lock().sig.counts()
    }

    /// What signalling has done since start (copied out, so the lock is held briefly).
    pub fn totals(&self) -> (visavis_signal::SignallingTotals, visavis_room::Totals) {
        let inner = self.lock();
        let (signalling, core) = inner.sig.totals();
        (signalling.clone(), core.clone())
    }

    /// How long a connection may take to accept what it is sent.
    pub fn write_timeout(&self) -> std::time::Duration {
        self.lock().sig.config().heartbeat
    }

    /// Frames over this close the connection.
    pub fn frame_cap(&self) -> usize {
        self.lock().sig.config().frame_cap()
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
                () = sleep => self.with_timer(),
            }
        }
        self.with(|inner, now| {
            inner.stopping = true;
            inner.sig.handle_shutdown(now);
        });
    }
}
