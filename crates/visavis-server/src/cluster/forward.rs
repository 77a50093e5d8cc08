//! Forwarding a connection to the node that holds its room: a WebSocket to that node's
//! `--node-url`, the client's first message sent on, then every text frame piped both ways
//! unchanged, so the client cannot tell (its messages keep their order, and the room's node
//! numbers and acknowledges them as for any connection).
//!
//! The forwarding node shows the cluster's secret and the client's address in headers, so the
//! room's node counts the client, not the forwarder, against its per-address limits. How a
//! side ends is passed on: the client's close frame (with its code, so a goodbye is a goodbye
//! and a "be right back" is not); a client that vanished is a dropped connection
//! ([`DROPPED`]); a room's node that vanished (it died) closes the client with
//! `close::RESTART`, and the client resumes through the load balancer on a node that takes the
//! room over.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::websocket::WebSocket;

/// The header with the cluster's secret: a connection showing it comes from another node.
pub const SECRET_HEADER: &str = "x-visavis-cluster";
/// The header with the client's address, trusted with the secret only.
pub const CLIENT_IP_HEADER: &str = "x-visavis-client-ip";

/// The close code upstream when the client vanished without a close frame: in the
/// "will be back" range, so the room's node keeps its session for a resume.
pub const DROPPED: u16 = 4002;

/// How long connecting to the room's node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A WebSocket to another node.
pub type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a WebSocket to the node at `node_url` (`http://host:port`) for a client at `ip`.
pub async fn connect(
    node_url: &str,
    secret: &str,
    ip: IpAddr,
    max_message: usize,
) -> anyhow::Result<Upstream> {
    let ws_url = format!(
        "{}/ws",
        node_url
            .trim_end_matches('/')
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let mut request = ws_url.as_str().into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(SECRET_HEADER, HeaderValue::from_str(secret)?);
    headers.insert(CLIENT_IP_HEADER, HeaderValue::from_str(&ip.to_string())?);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    let (upstream, _) = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("{node_url} did not answer within {CONNECT_TIMEOUT:?}"))??;
    Ok(upstream)
}

/// Sends `first` upstream, then pipes frames both ways until either side ends (or
/// `shutdown`: this node stops, and the client is told to come back through another).
pub async fn pipe(mut client: WebSocket, mut upstream: Upstream, first: String, shutdown: CancellationToken) {
    if upstream.send(Message::Text(first.into())).await.is_err() {
        let _ = close(&mut client, visavis_signal::close::RESTART, "try again").await;
        return;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = close(&mut upstream, DROPPED, "node stopping").await;
                let _ = close(&mut client, visavis_signal::close::AWAY, "server shutting down").await;
                return;
            }
            frame = client.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if upstream.send(Message::Text(text)).await.is_err() {
                        let _ = close(&mut client, visavis_signal::close::RESTART, "room moving").await;
                        return;
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    let _ = upstream.send(Message::Binary(data)).await;
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = upstream.send(Message::Close(frame)).await;
                    let _ = tokio::time::timeout(Duration::from_secs(1), upstream.close(None)).await;
                    return;
                }
                // tungstenite answers pings by itself; the session's heartbeat is in text.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(_)) | None => {
                    let _ = close(&mut upstream, DROPPED, "client dropped").await;
                    return;
                }
            },
            frame = upstream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if client.send(Message::Text(text)).await.is_err() {
                        let _ = close(&mut upstream, DROPPED, "client dropped").await;
                        return;
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = client.send(Message::Close(frame)).await;
                    return;
                }
                Some(Ok(_)) => {}
                // The room's node died: the client resumes where the room goes next.
                Some(Err(_)) | None => {
                    let _ = close(&mut client, visavis_signal::close::RESTART, "room moving").await;
                    return;
                }
            },
        }
    }
}

async fn close<S>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &'static str,
) -> Result<(), tokio_tungstenite::tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    tokio::time::timeout(Duration::from_secs(1), ws.send(Message::Close(Some(frame))))
        .await
        .unwrap_or(Ok(()))
}
