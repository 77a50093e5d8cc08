//! One WebSocket connection: frames in to the hub, its outbox out to the socket, heartbeats,
//! the per-connection message rate, and how the connection ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use tokio_util::sync::CancellationToken;
use visavis_protocol::{ErrorCode, ServerMsg};

use crate::hub::{Ending, Hub, Out};

/// Limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_message: usize,
    /// Messages per second, and the burst allowed above it.
    pub rate: f64,
    pub burst: f64,
}

/// Serves one upgraded connection until either side closes it, it goes quiet for longer than
/// the heartbeat timeout, or the server shuts down.
pub async fn serve(mut ws: WebSocket, hub: Arc<Hub>, shutdown: CancellationToken, limits: ConnLimits) {
    let (conn, mut outbox) = hub.connect();
    let mut session = conn;
    tracing::debug!(conn, "connected");
    let timeout = hub.heartbeat;
    let mut heartbeat = tokio::time::interval(timeout / 3);
    heartbeat.tick().await; // the first tick is immediate
    let mut heard = Instant::now();
    let mut tokens = limits.burst;
    let mut refilled = Instant::now();

    let (ending, close) = loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                // Tell the client to come back (to the next process on this address).
                while let Ok(Out::Text(text)) = outbox.try_recv() {
                    let _ = ws.send(Message::Text(text)).await;
                }
                let notice = ServerMsg::Reconnect { reason: "the server is restarting".into() }.to_json();
                let _ = ws.send(Message::Text(notice.into())).await;
                break (Ending::ServerClosed, Some((close_code::AWAY, "server shutting down")));
            }
            _ = heartbeat.tick() => {
                if heard.elapsed() > timeout {
                    // Gone quiet: as good as a dropped network.
                    break (Ending::Dropped, Some((close_code::AWAY, "heartbeat timeout")));
                }
                hub.ping(session);
            }
            out = outbox.recv() => match out {
                Some(Out::Text(text)) => {
                    // A reader that stops reading must not hold this task forever.
                    match tokio::time::timeout(timeout, ws.send(Message::Text(text))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break (Ending::Dropped, None),
                        Err(_) => break (Ending::ServerClosed, Some((close_code::POLICY, "not reading"))),
                    }
                }
                Some(Out::Close(code, reason)) => break (Ending::ServerClosed, Some((code, reason))),
                // The hub dropped our outbox: we could not keep up with what we were sent.
                None => break (Ending::ServerClosed, Some((close_code::POLICY, "outbound queue full"))),
            },
            frame = ws.recv() => {
                heard = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        let now = Instant::now();
                        tokens = (tokens + now.duration_since(refilled).as_secs_f64() * limits.rate).min(limits.burst);
                        refilled = now;
                        if tokens < 1.0 {
                            hub.reply(session, &error(ErrorCode::RateLimited, format!(
                                "more than {} messages per second; this one was dropped", limits.rate,
                            )));
                        } else if text.len() > limits.max_message {
                            tokens -= 1.0;
                            hub.reply(session, &error(ErrorCode::MessageTooLarge, format!(
                                "message of {} bytes is over the limit of {} bytes", text.len(), limits.max_message,
                            )));
                        } else {
                            tokens -= 1.0;
                            session = hub.handle_text(session, &text);
                        }
                    }
                    Some(Ok(Message::Binary(_))) => hub.reply(session, &error(
                        ErrorCode::BadMessage,
                        "binary frames are not part of the protocol; send JSON text".into(),
                    )),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    // A close frame is a goodbye unless its code says the client will be back
                    // (4000-4999, its own choice), as a network drop never sends one.
                    Some(Ok(Message::Close(frame))) if frame.as_ref().is_none_or(|f| f.code < 4000) => {
                        break (Ending::Goodbye, None);
                    }
                    // A "be right back" close code, no close frame at all, or a broken socket:
                    // the client may come back and resume.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break (Ending::Dropped, None),
                }
            }
        }
    };
    hub.disconnect(session, conn, ending);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.send(Message::Close(Some(frame)))).await;
    }
    tracing::debug!(conn, session, ?ending, "closed");
}

fn error(code: ErrorCode, message: String) -> ServerMsg {
    ServerMsg::Error {
        code,
        message,
        request: None,
    }
}
