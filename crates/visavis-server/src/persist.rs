//! The state store's edge: loading what an earlier process left at start, and the
//! write-behind that keeps it current while serving.
//!
//! Every [`FLUSH_EVERY`], if any input reached the hub since the last look, the signalling
//! state is copied out under the hub's lock (`Signalling::snapshot`), encoded as JSON and
//! written by a blocking task, outside the lock. A write that would change nothing (only
//! heartbeats happened) is skipped. So a crash (SIGKILL) loses at most the last interval plus
//! one write, and the final flush after the graceful shutdown (`Signalling::handle_shutdown`
//! has detached every session) loses nothing. One snapshot of everything, not a log of
//! changes: simple, and a later process never replays anything twice; its cost grows with the
//! state (docs/benchmarks.md measures it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use visavis_sansio::Now;
use visavis_signal::Snapshot;
use visavis_store::StateStore;

use crate::hub::Hub;

/// How often the state is written while it changes: the most a crash loses (and a write's
/// time on top).
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The snapshot an earlier process left in `store`, if any and readable. A file that cannot be
/// read as a snapshot (from an incompatible version) is logged and ignored, rather than
/// keeping the server from starting.
pub fn load(store: &dyn StateStore) -> anyhow::Result<Option<Snapshot>> {
    let Some(bytes) = store.load()? else {
        return Ok(None);
    };
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(snapshot) => {
            let age = Now::system().unix_ms.saturating_sub(snapshot.taken_at);
            tracing::info!(
                "restoring {} sessions in {} rooms from {} ({} bytes, {}, {:.1} s old)",
                snapshot.sessions.len(),
                snapshot.core.rooms.len(),
                store.describe(),
                bytes.len(),
                if snapshot.complete {
                    "saved at a graceful stop"
                } else {
                    "saved while running: the process did not stop gracefully"
                },
                age as f64 / 1000.0
            );
            Ok(Some(snapshot))
        }
        Err(err) => {
            tracing::warn!(
                "{}: the saved state cannot be read ({err}); starting empty",
                store.describe()
            );
            Ok(None)
        }
    }
}

/// Writes the state while it changes, until `shutdown`; then returns (the caller does the
/// final [`flush`] once nothing can change any more).
pub async fn run(hub: Arc<Hub>, store: Arc<dyn StateStore>, shutdown: CancellationToken) -> Writer {
    let mut writer = Writer {
        store,
        last: Vec::new(),
    };
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => writer.flush(&hub, false).await,
        }
    }
    writer
}

/// Writes snapshots to the store, skipping those equal to the last one written.
#[derive(Debug)]
pub struct Writer {
    store: Arc<dyn StateStore>,
    last: Vec<u8>,
}

impl Writer {
    /// Writes the state if it may have changed (or always, with `force`).
    pub async fn flush(&mut self, hub: &Hub, force: bool) {
        let started = Instant::now();
        let Some(snapshot) = hub.snapshot(force) else {
            return;
        };
        let copied = started.elapsed();
        let bytes = match serde_json::to_vec(&snapshot) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::error!("cannot encode the state: {err}");
                return;
            }
        };
        if bytes == self.last && !force {
            return;
        }
        let store = self.store.clone();
        let encoded = started.elapsed();
        let written = tokio::task::spawn_blocking(move || store.save(&bytes).map(|()| bytes)).await;
        match written {
            Ok(Ok(bytes)) => {
                tracing::debug!(
                    bytes = bytes.len(),
                    copy_us = copied.as_micros() as u64,
                    encode_us = (encoded - copied).as_micros() as u64,
                    write_us = (started.elapsed() - encoded).as_micros() as u64,
                    "state written"
                );
                self.last = bytes;
            }
            Ok(Err(err)) => tracing::error!("cannot write the state: {err}"),
            Err(err) => tracing::error!("the state writer failed: {err}"),
        }
    }
}
