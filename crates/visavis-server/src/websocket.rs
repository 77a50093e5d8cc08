//! Accepting a WebSocket (the RFC 6455 handshake over hyper's upgrade) onto a socket that is
//! read through a buffer which exists only while it holds unread bytes.
//!
//! axum's own `WebSocketUpgrade` hands tungstenite the bare socket, so tungstenite's read buffer
//! is the only one, and it stays allocated (and zero-filled) for the life of the connection:
//! 4 KiB of every idle connection, or more read system calls per message if it is made
//! smaller. Here tungstenite keeps a small buffer and [`LeanIo`] reads the socket in large
//! chunks into a buffer it frees as soon as it has been consumed, so a message still costs one
//! read system call and an idle connection holds no read buffer of ours at all.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::http_error::HttpError;

/// A server-side WebSocket as the connection task uses it.
pub type WebSocket = WebSocketStream<LeanIo<TokioIo<hyper::upgrade::Upgraded>>>;

/// How much one read system call asks for.
const READ_CHUNK: usize = 4096;

/// tungstenite's own read buffer: what it takes from [`LeanIo`] at a time. Small, because it
/// stays allocated for the life of the connection; reading from `LeanIo` is a memory copy.
const FRAME_BUFFER: usize = 512;

/// An accepted WebSocket upgrade: the socket to come once the 101 response has gone out.
#[derive(Debug)]
pub struct Upgrading {
    on_upgrade: OnUpgrade,
}

/// Checks that `request` asks for a WebSocket (version 13); returns the 101 response to send
/// and the socket to come.
pub fn accept(request: &mut Request) -> Result<(Response, Upgrading), HttpError> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        let message = "this address speaks WebSocket only (Connection: upgrade, Upgrade: websocket)";
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
            message.into(),
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let message = "only WebSocket version 13 is spoken here";
        return Err(HttpError::new(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported_websocket_version",
            message.into(),
        )
        .with_header(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13")));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        let message = "the WebSocket handshake lacks Sec-WebSocket-Key";
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "not_a_websocket",
            message.into(),
        ));
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        let message = "this connection cannot be upgraded (HTTP/1.1 is needed)";
        return Err(HttpError::new(
            StatusCode::UPGRADE_REQUIRED,
            "cannot_upgrade",
            message.into(),
        ));
    };
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept_key) {
        response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    let response = (StatusCode::SWITCHING_PROTOCOLS, response_headers).into_response();
    Ok((response, Upgrading { on_upgrade }))
}

impl Upgrading {
    /// The WebSocket, once the 101 response has gone out; `None` if the client went away.
    pub async fn websocket(self, max_message: usize) -> Option<WebSocket> {
        let upgraded = self.on_upgrade.await.ok()?;
        let config = WebSocketConfig::default()
            .read_buffer_size(FRAME_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let io = LeanIo::new(TokioIo::new(upgraded));
        Some(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
    }
}

/// A socket read through a buffer that exists only while it holds unread bytes.
#[derive(Debug)]
pub struct LeanIo<S> {
    io: S,
    buf: BytesMut,
}

impl<S> LeanIo<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: BytesMut::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LeanIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= READ_CHUNK {
                return Pin::new(&mut this.io).poll_read(cx, out);
            }
            this.buf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.io), cx, &mut this.buf) {
                Poll::Ready(Ok(_)) => {}
                other => {
                    this.buf = BytesMut::new();
                    return other.map_ok(|_| ());
                }
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() {
            // Consumed: give the memory back, so an idle connection holds none.
            this.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LeanIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_are_served_from_one_chunk_and_the_buffer_is_freed_when_consumed() {
        let (mut near, far) = tokio::io::duplex(64 * 1024);
        let mut lean = LeanIo::new(far);
        let message: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        near.write_all(&message).await.unwrap();
        let mut got = Vec::new();
        let mut small = [0u8; 512];
        while got.len() < message.len() {
            let n = lean.read(&mut small).await.unwrap();
            got.extend_from_slice(&small[..n]);
            if got.len() < message.len() {
                assert!(!lean.buf.is_empty(), "the rest waits in the chunk, no new read");
            }
        }
        assert_eq!(got, message);
        assert_eq!(lean.buf.capacity(), 0, "consumed: freed");
        drop(near);
        assert_eq!(
            lean.read(&mut small).await.unwrap(),
            0,
            "end of stream passes through"
        );
    }
}
