//! File descriptors: the process's open-file limit split between HTTP/WebSocket connections and
//! the TURN server (relay sockets and TCP/TLS clients), so that a flood of one cannot take the
//! descriptors the other needs. Each side counts what it holds in an [`FdPool`]; over its share,
//! a connection is refused at once (HTTP 503 `server_full`; TURN closes the TCP connection or
//! answers Allocate with 508) while the descriptors it needs for that are still there.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Descriptors kept out of both shares: listeners, the TURN UDP socket, the runtime's own,
/// files and logs.
pub const SPARE: u64 = 64;

/// The shares of `limit` (the soft open-file limit): HTTP/WebSocket connections and TURN.
/// `max_connections` (`--max-connections`) fixes the HTTP share; by default HTTP gets three
/// quarters of what is left after [`SPARE`] and TURN the rest, or HTTP everything without the
/// embedded TURN server.
pub fn split(limit: u64, turn: bool, max_connections: Option<u64>) -> (usize, usize) {
    let available = limit.saturating_sub(SPARE).max(2);
    let http = match (max_connections, turn) {
        (Some(n), _) => n.min(available),
        (None, true) => available / 4 * 3,
        (None, false) => available,
    };
    let turn = if turn { available - http } else { 0 };
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    (size(http), size(turn))
}

/// Descriptors one side may hold.
#[derive(Debug)]
pub struct FdPool {
    max: usize,
    used: AtomicUsize,
}

/// One descriptor's place in its pool; freed when dropped.
#[derive(Debug)]
pub struct FdSlot(Arc<FdPool>);

impl FdPool {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            used: AtomicUsize::new(0),
        })
    }

    /// A place for one more descriptor, unless the pool is full.
    pub fn try_take(self: &Arc<Self>) -> Option<FdSlot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.max).then_some(used + 1)
            })
            .ok()
            .map(|_| FdSlot(self.clone()))
    }
}

impl Drop for FdSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_leave_the_spare_and_give_turn_a_quarter() {
        assert_eq!(split(1024, true, None), (720, 240));
        assert_eq!(split(1024, false, None), (960, 0));
        assert_eq!(split(1024, true, Some(900)), (900, 60));
        assert_eq!(split(1024, true, Some(5000)), (960, 0));
        assert_eq!(
            split(10, true, None),
            (0, 2),
            "a tiny limit still splits without panicking"
        );
    }

    #[test]
    fn a_pool_refuses_over_its_share_and_frees_on_drop() {
        let pool = FdPool::new(2);
        let a = pool.try_take().expect("first");
        let _b = pool.try_take().expect("second");
        assert!(pool.try_take().is_none());
        drop(a);
        assert!(pool.try_take().is_some());
    }
}
