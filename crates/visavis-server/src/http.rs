//! Accepting HTTP connections: each is served by hyper with a header-read timeout (so a client
//! that sends half a request, or idles between requests, is closed), and one address may hold
//! only so many connections that have not become WebSockets.
//!
//! axum's own `serve` runs hyper without a timer, so its header-read timeout never fires and
//! half-sent requests held the server's file descriptors for as long as the sender liked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Limits of HTTP connections before any upgrade.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, the first or the next one on
    /// a kept-alive connection.
    pub header_timeout: Duration,
    /// Connections one address may hold that are not (yet) WebSockets.
    pub per_ip: usize,
    /// Reverse proxies, which carry many clients' connections: not limited per address here
    /// (what they forward is, once the request is read).
    pub trusted_proxies: Arc<[visavis_turn::Cidr]>,
}

/// Serves `router` on `listener` until `shutdown`; then lets requests in flight finish.
/// Connection tasks are tracked by `tasks`, which the caller waits for.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let pending = Pending::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, most likely: the kernel keeps the connection
                    // queued; try again shortly instead of spinning.
                    tracing::warn!("cannot accept: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let proxy = limits.trusted_proxies.iter().any(|c| c.contains(peer.ip()));
        let slot = if proxy {
            None
        } else {
            let Some(slot) = pending.acquire(peer.ip(), limits.per_ip) else {
                // Closing at once costs the least; the address already holds its share.
                drop(stream);
                continue;
            };
            Some(slot)
        };
        // Signalling messages are small and latency matters more than packing: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let header_timeout = limits.header_timeout;
        tasks.spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(
                        router
                            .oneshot(request.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|never| match never {}),
                    )
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            // The HTTP part is over (closed, or handed over as a WebSocket, which the
            // signalling budgets count from here on).
            drop(slot);
        });
    }
}

/// Connections per address that have not become WebSockets.
#[derive(Debug, Clone, Default)]
struct Pending(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One connection's place; freed when dropped.
#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    pending: Pending,
}

impl Pending {
    fn acquire(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            ip,
            pending: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.pending.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_address_and_freed() {
        let pending = Pending::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = pending.acquire(ip, 2).unwrap();
        let _b = pending.acquire(ip, 2).unwrap();
        assert!(pending.acquire(ip, 2).is_none());
        assert!(pending.acquire("127.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(pending.acquire(ip, 2).is_some());
    }
}
