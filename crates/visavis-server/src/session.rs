//! One WebSocket connection: frames in to the hub, the session's outbox out to the socket.

use std::sync::Arc;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket};
use tokio_util::sync::CancellationToken;
use visavis_protocol::{ErrorCode, ServerMsg};

use crate::hub::Hub;

/// Serves one upgraded connection until either side closes it or the server shuts down.
pub async fn serve(mut ws: WebSocket, hub: Arc<Hub>, shutdown: CancellationToken, max_message: usize) {
    let (id, mut outbox) = hub.connect();
    tracing::debug!(session = id, "connected");
    let close = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
            out = outbox.recv() => match out {
                Some(text) => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        break None;
                    }
                }
                // The hub dropped our outbox: we could not keep up with what we were sent.
                None => break Some((close_code::POLICY, "outbound queue full")),
            },
            frame = ws.recv() => match frame {
                Some(Ok(Message::Text(text))) if text.len() > max_message => hub.reply(id, &error(
                    ErrorCode::MessageTooLarge,
                    format!("message of {} bytes is over the limit of {max_message} bytes", text.len()),
                )),
                Some(Ok(Message::Text(text))) => hub.handle_text(id, &text),
                Some(Ok(Message::Binary(_))) => hub.reply(id, &error(
                    ErrorCode::BadMessage,
                    "binary frames are not part of the protocol; send JSON text".into(),
                )),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
        }
    };
    hub.disconnect(id);
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = ws.send(Message::Close(Some(frame))).await;
    }
    tracing::debug!(session = id, "closed");
}

fn error(code: ErrorCode, message: String) -> ServerMsg {
    ServerMsg::Error {
        code,
        message,
        request: None,
    }
}
