//! One WebSocket connection: frames in to the hub, its outbox out to the socket (everything
//! queued in one write), and how the connection ended.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use visavis_signal::{close, Ending};

use crate::hub::{Hub, Out};
use crate::websocket::WebSocket;

/// Serves one upgraded connection until either side closes it; `first`, the client's first
/// message if it was read already (a cluster routes by it).
pub async fn serve(mut ws: WebSocket, hub: Arc<Hub>, ip: IpAddr, first: Option<String>) {
    let (conn, wake) = match hub.connect(ip) {
        Ok(connected) => connected,
        Err((code, reason)) => {
            let _ = close_with(&mut ws, code, reason).await;
            return;
        }
    };
    tracing::debug!(conn, "connected");
    if let Some(first) = first {
        hub.text(conn, &first);
    }
    let write_timeout = hub.write_timeout();

    let (ending, closing) = loop {
        tokio::select! {
            () = wake.notified() => {
                let Some(batch) = hub.take(conn) else {
                    // The hub took our outbox away: we could not keep up with what we were sent.
                    break (Ending::Dropped, Some((close::POLICY, "outbound queue full")));
                };
                // Boxed, so that an idle connection's task does not carry the write's state.
                let (written, then_close) = Box::pin(write_batch(&mut ws, batch, write_timeout)).await;
                match written {
                    Ok(()) => {}
                    Err(Stall::Broken) => break (Ending::Dropped, None),
                    // A reader that stops reading must not hold this task forever.
                    Err(Stall::NotReading) => break (Ending::Dropped, Some((close::POLICY, "not reading"))),
                }
                if let Some(code_reason) = then_close {
                    break (Ending::Dropped, Some(code_reason));
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => hub.text(conn, &text),
                Some(Ok(Message::Binary(_))) => hub.binary(conn),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => hub.alive(conn),
                // A close frame is a goodbye unless its code says the client will be back
                // (4000-4999, its own choice), as a network drop never sends one.
                Some(Ok(Message::Close(frame))) if frame.as_ref().is_none_or(|f| u16::from(f.code) < 4000) => {
                    break (Ending::Goodbye, None);
                }
                // A frame far over the message limit is abuse, not a message to answer.
                Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                    break (Ending::Dropped, Some((close::TOO_BIG, "frame too large")));
                }
                // A "be right back" close code, no close frame at all, or a broken socket:
                // the client may come back and resume.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break (Ending::Dropped, None),
            }
        }
    };
    hub.closed(conn, ending);
    if let Some((code, reason)) = closing {
        let _ = Box::pin(tokio::time::timeout(
            Duration::from_secs(1),
            close_with(&mut ws, code, reason),
        ))
        .await;
    }
    tracing::debug!(conn, ?ending, "closed");
}

#[derive(Debug)]
enum Stall {
    Broken,
    NotReading,
}

/// Writes the frames of `batch`, then flushes once, so a burst shares a system call. Returns
/// the close the outbox asked for, if it reached one.
async fn write_batch(
    ws: &mut WebSocket,
    batch: VecDeque<Out>,
    timeout: Duration,
) -> (Result<(), Stall>, Option<(u16, &'static str)>) {
    let mut then_close = None;
    let write = async {
        for out in batch {
            match out {
                Out::Text(text) => ws.feed(Message::Text(text)).await?,
                Out::Close(code, reason) => {
                    then_close = Some((code, reason));
                    break;
                }
            }
        }
        ws.flush().await
    };
    let result = match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stall::Broken),
        Err(_) => Err(Stall::NotReading),
    };
    (result, then_close)
}

pub async fn close_with(
    ws: &mut WebSocket,
    code: u16,
    reason: &'static str,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    };
    ws.send(Message::Close(Some(frame))).await
}
