//! Accepting HTTP connections: each is served by hyper with a header-read timeout (so a client
//! that sends half a request, or idles between requests, is closed), and one address may hold
//! only so many connections that have not become WebSockets.
//!
//! axum's own `serve` runs hyper without a timer, so its header-read timeout never fires and
//! half-sent requests held the server's file descriptors for as long as the sender liked.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::fd_budget::FdPool;
use crate::per_ip::PerIp;
use crate::sniff;
use crate::turn::Turn;

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
    /// Descriptors HTTP and WebSocket connections may hold, all together.
    pub fds: Arc<FdPool>,
}

/// What a connection over the descriptor share is told, in one write, before it is closed.
fn server_full() -> &'static [u8] {
    static RESPONSE: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
        let body = serde_json::json!({
            "error": "server_full",
            "message": "the server holds all the connections it can; try again shortly",
        })
        .to_string();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    &RESPONSE
}

/// Serves `router` on `listener` (over TLS with `tls`) until `shutdown`; then lets requests
/// in flight finish. Connection tasks are tracked by `tasks`, which the caller waits for.
///
/// With TLS and `turn`, a client that speaks STUN after the handshake (see [`crate::sniff`])
/// is handed to the TURN server. Until then (handshake and first bytes, within the header
/// timeout) it counts as an HTTP connection; from then on as a TURN client only, in TURN's
/// limits (`--turn-tcp-per-ip`, TURN's share of descriptors), as if it had come to TURN's own
/// TLS listener: TURN takes its places first, then HTTP gives its own back. Over TURN's limits
/// it is closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    turn: Option<Arc<Turn>>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let pending = PerIp::new(limits.per_ip);
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
            let Some(slot) = pending.acquire(peer.ip()) else {
                // Closing at once costs the least; the address already holds its share.
                drop(stream);
                continue;
            };
            Some(slot)
        };
        let Some(fd) = limits.fds.try_take() else {
            let _ = stream.try_write(server_full());
            continue;
        };
        // The descriptor stays counted as long as the socket lives: a WebSocket takes it over.
        let fd = Arc::new(fd);
        // Signalling messages are small and latency matters more than packing: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let shutdown = shutdown.clone();
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        let turn = turn.clone();
        tasks.spawn(async move {
            // Held by the task (until the end, or until TURN takes the connection over).
            let slot = slot;
            let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                request.extensions_mut().insert(fd.clone());
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
            let Some(tls) = tls else {
                return serve_connection(stream, service, header_timeout, &shutdown).await;
            };
            // The handshake, and then the first bytes if they must say what the client
            // speaks, get the time of a request's headers.
            let deadline = tokio::time::Instant::now() + header_timeout;
            let mut stream = match tokio::time::timeout_at(deadline, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => return tracing::debug!("TLS handshake with {peer}: {err}"),
                Err(_) => return tracing::debug!("TLS handshake with {peer} timed out"),
            };
            let Some(turn) = turn else {
                return serve_connection(stream, service, header_timeout, &shutdown).await;
            };
            let (speaks, head) = match sniff::by_alpn(stream.get_ref().1.alpn_protocol()) {
                Some(speaks) => (speaks, Vec::new()),
                None => {
                    let read = tokio::select! {
                        () = shutdown.cancelled() => return,
                        read = tokio::time::timeout_at(deadline, sniff::read_head(&mut stream)) => read,
                    };
                    match read {
                        Ok(Ok(read)) => read,
                        Ok(Err(err)) => return tracing::debug!("reading from {peer}: {err}"),
                        Err(_) => return tracing::debug!("{peer} sent nothing after the TLS handshake"),
                    }
                }
            };
            let stream = sniff::Prefixed::new(head, stream);
            match speaks {
                sniff::Speaks::Http => serve_connection(stream, service, header_timeout, &shutdown).await,
                sniff::Speaks::Turn => {
                    let Some(turn_slot) = turn.admit(peer.ip()) else {
                        return tracing::debug!("TURN over TLS from {peer}: over TURN's limits; closing");
                    };
                    // TURN counts it from here on: HTTP's places go back (the service held
                    // the only other reference to the descriptor's).
                    drop((slot, service));
                    turn.serve_handed_over(stream, peer, turn_slot).await;
                }
                sniff::Speaks::Garbage => tracing::debug!("{peer} speaks neither HTTP nor STUN; closing"),
            }
            // Whatever else was held (`slot`) goes back here: the HTTP part is over (closed,
            // or handed over as a WebSocket, which the signalling budgets count from here on).
        });
    }
}

/// Serves HTTP/1.1 requests on one connection (plain or TLS) until it closes, is upgraded, or
/// `shutdown` asks it to finish.
async fn serve_connection<IO, S>(io: IO, service: S, header_timeout: Duration, shutdown: &CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
        hyper::Request<Incoming>,
        Response = axum::response::Response,
        Error = Infallible,
    >,
    S::Future: Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}
