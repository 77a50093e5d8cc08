//! One port for everything: telling, after the TLS handshake on the HTTPS port, a TURN client
//! (TURN over TLS, `turns:`) from a browser speaking HTTP, so that a network that lets only
//! TCP 443 out still reaches the relay.
//!
//! A client that names its protocol by ALPN is taken at its word: `stun.turn` (RFC 7443) is
//! TURN, `http/1.1` is HTTP. Chromium's TURN client sends no ALPN, so otherwise the first bytes
//! decide: a STUN message starts with two zero bits and carries the magic cookie 0x2112A442 in
//! bytes 4..8, while an HTTP request starts with the ASCII letters of its method. Those bytes
//! are then handed on ([`Prefixed`]) to whichever side serves the connection.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// ALPN protocol ids of the HTTPS port, most preferred first (rustls picks by the server's
/// order among those the client offers).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// RFC 7443's id for TURN over TLS ("STUN usage for TURN").
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// What a client on the HTTPS port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaks {
    Http,
    Turn,
    /// Neither: closed at once.
    Garbage,
}

/// What the negotiated ALPN protocol says, if it says anything.
pub fn by_alpn(alpn: Option<&[u8]>) -> Option<Speaks> {
    match alpn? {
        ALPN_TURN => Some(Speaks::Turn),
        ALPN_HTTP1 => Some(Speaks::Http),
        _ => None,
    }
}

/// Bytes [`by_first_bytes`] needs at most to decide.
pub const HEAD_LEN: usize = 8;

/// What the first bytes a client sent say; `None` until there are enough of them.
pub fn by_first_bytes(head: &[u8]) -> Option<Speaks> {
    let first = *head.first()?;
    if first & 0xC0 != 0 {
        // Not STUN (ChannelData, 0x40.., never comes first). Whether it is a well-formed
        // request is for the HTTP server to say (400 and closed if not).
        return Some(Speaks::Http);
    }
    let cookie = head.get(4..8)?;
    if cookie == visavis_turn::stun::MAGIC_COOKIE.to_be_bytes() {
        Some(Speaks::Turn)
    } else {
        Some(Speaks::Garbage)
    }
}

/// Reads from `stream` until its first bytes say what it speaks; returns that and the bytes
/// read (to be handed on with [`Prefixed`]). A client that closes first is [`Speaks::Garbage`].
/// The caller bounds the time this may take.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(Speaks, Vec<u8>)> {
    let mut head = [0u8; HEAD_LEN];
    let mut len = 0;
    loop {
        if let Some(speaks) = by_first_bytes(&head[..len]) {
            return Ok((speaks, head[..len].to_vec()));
        }
        let n = stream.read(&mut head[len..]).await?;
        if n == 0 {
            return Ok((Speaks::Garbage, Vec::new()));
        }
        len += n;
    }
}

/// A stream that yields `head` before what is still to be read from the stream itself.
#[derive(Debug)]
pub struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(head: Vec<u8>, inner: S) -> Self {
        Self { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = out.remaining().min(this.head.len() - this.at);
            out.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use visavis_turn::stun::{method, Class, MessageBuilder};

    use super::*;

    #[test]
    fn alpn_names_the_protocol_when_the_client_offers_one() {
        assert_eq!(by_alpn(Some(b"stun.turn")), Some(Speaks::Turn));
        assert_eq!(by_alpn(Some(b"http/1.1")), Some(Speaks::Http));
        assert_eq!(by_alpn(Some(b"h2")), None);
        assert_eq!(by_alpn(None), None, "Chromium's TURN client sends none");
    }

    #[test]
    fn first_bytes_tell_stun_from_http_and_from_garbage() {
        let binding = MessageBuilder::new(Class::Request, method::BINDING, [7; 12]).finish();
        assert_eq!(by_first_bytes(&binding), Some(Speaks::Turn));
        assert_eq!(
            by_first_bytes(&binding[..7]),
            None,
            "the cookie is not all there yet"
        );
        assert_eq!(by_first_bytes(b""), None);
        for request in [&b"GET / HTTP/1.1\r\n"[..], b"P", b"OPTIONS * HTTP/1.1"] {
            assert_eq!(by_first_bytes(request), Some(Speaks::Http), "{request:?}");
        }
        assert_eq!(by_first_bytes(&[0, 1, 0, 0, 1, 2, 3, 4]), Some(Speaks::Garbage));
        // ChannelData (0x40..) is never a client's first message; HTTP answers it with 400.
        assert_eq!(by_first_bytes(&[0x40, 0, 0, 4]), Some(Speaks::Http));
    }

    #[tokio::test]
    async fn the_head_is_read_in_pieces_and_handed_on_in_front_of_the_rest() {
        let (mut near, far) = tokio::io::duplex(1024);
        let binding = MessageBuilder::new(Class::Request, method::BINDING, [7; 12]).finish();
        let mut far = far;
        let reader = tokio::spawn(async move {
            let (speaks, head) = read_head(&mut far).await.unwrap();
            let mut all = Vec::new();
            Prefixed::new(head, far).read_to_end(&mut all).await.unwrap();
            (speaks, all)
        });
        // Byte by byte, as a slow client might.
        for b in &binding {
            near.write_all(&[*b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        drop(near);
        let (speaks, all) = reader.await.unwrap();
        assert_eq!(speaks, Speaks::Turn);
        assert_eq!(all, binding, "nothing lost or doubled");

        let (near, mut far) = tokio::io::duplex(64);
        drop(near);
        assert_eq!(
            read_head(&mut far).await.unwrap().0,
            Speaks::Garbage,
            "closed at once"
        );
    }
}
