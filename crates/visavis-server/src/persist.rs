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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use visavis_room::{Config as RoomConfig, Core};
    use visavis_sansio::Now;
    use visavis_signal::{Config, Signalling};
    use visavis_store::{FileStore, StateStore};

    /// `pairs` rooms of two members in an active call, each with 20 chat messages that nobody
    /// has acknowledged yet (so every session's replay log holds them).
    fn busy(pairs: usize, now: Now) -> Signalling {
        let config = Config {
            sessions_per_ip: usize::MAX,
            max_sessions: usize::MAX,
            seats_per_ip: usize::MAX,
            ip_rate: 1e9,
            ip_burst: 1e9,
            ..Config::default()
        };
        let room = RoomConfig {
            max_rooms: usize::MAX,
            ..RoomConfig::default()
        };
        let mut n = 0u64;
        let tokens = Box::new(move |_: &str| {
            n += 1;
            format!("{n:032x}")
        });
        let mut sig = Signalling::new(Core::new(room), config, tokens);
        let ip = [127, 0, 0, 1].into();
        for p in 0..pairs {
            let mut conns = Vec::new();
            for name in ["Alice", "Bob"] {
                let conn = sig.handle_open(now, ip).expect("open");
                let join = format!(r#"{{"type":"join","version":1,"room":"room-{p}","name":"{name}"}}"#);
                sig.handle_text(now, conn, &join);
                conns.push(conn);
            }
            while sig.poll_output().is_some() {}
            // The default ids count up: members 1, 2, … and calls 1, 2, ….
            let bob = 2 * p + 2;
            sig.handle_text(now, conns[0], &format!(r#"{{"type":"invite","to":{bob}}}"#));
            let call = p + 1;
            sig.handle_text(now, conns[1], &format!(r#"{{"type":"accept","callId":{call}}}"#));
            for i in 0..10 {
                for conn in &conns {
                    let chat = format!(r#"{{"type":"chat","text":"message number {i} of this pair"}}"#);
                    sig.handle_text(now, *conn, &chat);
                }
            }
            while sig.poll_output().is_some() {}
        }
        sig
    }

    /// The cost of one write of the whole state, by its size: copying it out (under the hub's
    /// lock), encoding it, writing it to redb with fsync. For docs/benchmarks.md:
    /// `cargo test --release -p visavis-server --bin visavis -- --ignored --nocapture flush_cost`
    /// (or `--lib`).
    #[test]
    #[ignore = "a measurement; run it with --release"]
    fn flush_cost() {
        let dir = std::env::temp_dir().join(format!("visavis-flush-cost-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir.join("state.redb")).expect("store");
        let now = Now::system();
        println!(
            "| sessions | rooms (1:1 calls) | bytes | copy (lock held) | encode | write (fsync) | total |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for pairs in [10, 100, 1000, 5000] {
            let setup = Instant::now();
            let sig = busy(pairs, now);
            assert_eq!(
                sig.counts().core.calls,
                pairs,
                "every pair in a call ({:?})",
                setup.elapsed()
            );
            let runs = 20u32;
            let (mut copy, mut encode, mut write, mut bytes) =
                (Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
            for _ in 0..runs {
                let t0 = Instant::now();
                let snapshot = sig.snapshot(now);
                let t1 = Instant::now();
                let encoded = serde_json::to_vec(&snapshot).expect("encode");
                let t2 = Instant::now();
                store.save(&encoded).expect("save");
                let t3 = Instant::now();
                copy += t1 - t0;
                encode += t2 - t1;
                write += t3 - t2;
                bytes = encoded.len();
            }
            let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0 / f64::from(runs));
            println!(
                "| {} | {pairs} | {bytes} | {} | {} | {} | {} |",
                pairs * 2,
                ms(copy),
                ms(encode),
                ms(write),
                ms(copy + encode + write)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
