//! A visavis signalling client in Rust, speaking docs/protocol.md as the web client does: it
//! numbers what it sends (`cn`) and keeps it until the server acknowledges it, checks that the
//! server's `sn` count up by one and skips replayed duplicates, answers `ping` with `pong`,
//! acknowledges every 64 messages, and resumes its session on a new connection.
//!
//! Used by the server's integration tests, the churn test and `visavis-bench`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use visavis_protocol::{
    decode_server, ClientFrame, ClientMsg, DecodeError, Member, ServerFrame, ServerMsg, SessionMsg,
    PROTOCOL_VERSION,
};

/// Acknowledge at least this often, besides answering every `ping` (docs/protocol.md).
pub const ACK_EVERY: u64 = 64;

/// The WebSocket this client talks over.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("WebSocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] std::io::Error),
    #[error("the server closed the connection ({0:?})")]
    Closed(Option<CloseFrame>),
    #[error("the server sent something that is not a protocol message: {0:?}")]
    Decode(DecodeError),
    #[error("sequence numbers must count up by one: expected {expected}, got {got}")]
    Sequence { expected: u64, got: u64 },
    #[error("the server refused: {code:?}: {message}")]
    Refused {
        code: visavis_protocol::ErrorCode,
        message: String,
    },
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A message from the server, with its text as sent.
#[derive(Debug, Clone)]
pub struct Received {
    pub sn: Option<u64>,
    pub msg: ServerMsg,
    pub text: Utf8Bytes,
}

/// One signalling connection and the session it carries.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    /// Highest `sn` received, and the highest acknowledged.
    last_sn: u64,
    acked_sn: u64,
    /// The `cn` of the next numbered message, and the numbered messages the server has not
    /// acknowledged yet (re-sent after a resume).
    next_cn: u64,
    unacked: VecDeque<(u64, String)>,
    token: Option<String>,
    you: Option<Member>,
    /// A `ping` read by [`Client::read_received`] and not answered yet.
    ping_unanswered: bool,
    /// Whether a replayed duplicate is an error rather than skipped ([`Client::set_strict`]).
    strict: bool,
    /// Whether the next numbered message may jump forward ([`Client::allow_gap`]).
    gap_allowed: bool,
}

impl Client {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/ws`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_from(url, None).await
    }

    /// Opens a WebSocket to `url` from the local address `source` (port chosen by the kernel),
    /// so load tests can spread over several loopback addresses.
    pub async fn connect_from(url: &str, source: Option<IpAddr>) -> Result<Self> {
        Self::connect_request(url.into_client_request()?, source).await
    }

    /// As [`Client::connect_from`], with a request of the caller's making: for headers a
    /// browser would send, such as `Origin`, which the server checks before upgrading. A
    /// refused upgrade is [`ClientError::Ws`] with the server's HTTP response.
    pub async fn connect_request(request: Request, source: Option<IpAddr>) -> Result<Self> {
        let host = request.uri().host().unwrap_or_default().trim_matches(['[', ']']);
        let port = request.uri().port_u16().unwrap_or(80);
        let ip: IpAddr = if host == "localhost" {
            IpAddr::from([127, 0, 0, 1])
        } else {
            host.parse().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not an IP: {host}"))
            })?
        };
        let addr = SocketAddr::new(ip, port);
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(source) = source {
            socket.bind(SocketAddr::new(source, 0))?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        // Small buffers: a load generator holds thousands of mostly idle connections.
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, MaybeTlsStream::Plain(stream), Some(config))
                .await?;
        Ok(Self {
            ws,
            last_sn: 0,
            acked_sn: 0,
            next_cn: 1,
            unacked: VecDeque::new(),
            token: None,
            you: None,
            ping_unanswered: false,
            strict: false,
            gap_allowed: false,
        })
    }

    /// Connects and joins `room` as `name`; returns the client and the `joined` message.
    pub async fn join(url: &str, room: &str, name: &str) -> Result<(Self, ServerMsg)> {
        let mut client = Self::connect(url).await?;
        let joined = client.join_room(room, name).await?;
        Ok((client, joined))
    }

    /// Sends `join` and waits for `joined` (an `error` is returned as [`ClientError::Refused`]).
    pub async fn join_room(&mut self, room: &str, name: &str) -> Result<ServerMsg> {
        let join = SessionMsg::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: name.into(),
            host_key: None,
            access_token: None,
        };
        self.send(join).await?;
        loop {
            match self.recv().await? {
                msg @ ServerMsg::Joined { .. } => return Ok(msg),
                ServerMsg::Error { code, message, .. } => return Err(ClientError::Refused { code, message }),
                _ => {}
            }
        }
    }

    /// This client's member, once joined.
    pub fn you(&self) -> Option<&Member> {
        self.you.as_ref()
    }

    /// The session's resume token, once joined (or waiting in a lobby).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The highest `sn` received.
    pub fn last_sn(&self) -> u64 {
        self.last_sn
    }

    /// With `strict`, a message at or below the highest `sn` received is a
    /// [`ClientError::Sequence`] instead of a replay overlap to skip: for tests, which check
    /// that the server never sends a message twice. Carried over by [`Client::resume`].
    pub fn set_strict(&mut self, strict: bool) {
        self.strict = strict;
    }

    /// Lets numbering skip ahead once: after a server crash the resumed session's numbering
    /// jumps past what the dead process may have sent (docs/protocol.md), after the replay of
    /// what it had written down, and what was sent in its last moments is lost. Any other gap
    /// stays an error.
    pub fn allow_gap(&mut self) {
        self.gap_allowed = true;
    }

    /// The WebSocket itself, for tests that need to misbehave.
    pub fn ws(&mut self) -> &mut Ws {
        &mut self.ws
    }

    /// Sends `msg` without a number (processed whenever it arrives).
    pub async fn send(&mut self, msg: impl Into<ClientMsg>) -> Result<()> {
        let text = encode(None, msg.into());
        self.send_text(text).await
    }

    /// Sends `msg` numbered with the next `cn`: the server processes it once, and it is sent
    /// again after a resume unless the server had processed it. Returns its `cn`.
    pub async fn send_numbered(&mut self, msg: impl Into<ClientMsg>) -> Result<u64> {
        let cn = self.next_cn;
        self.next_cn += 1;
        let text = encode(Some(cn), msg.into());
        self.unacked.push_back((cn, text.clone()));
        self.send_text(text).await?;
        Ok(cn)
    }

    /// Sends any text frame as it is.
    pub async fn send_text(&mut self, text: String) -> Result<()> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// The next message for the application: `ping` is answered here, replayed duplicates are
    /// skipped, and acknowledgements go out as due.
    pub async fn recv(&mut self) -> Result<ServerMsg> {
        Ok(self.recv_received().await?.msg)
    }

    /// As [`Client::recv`], with the `sn` and the text as sent.
    pub async fn recv_received(&mut self) -> Result<Received> {
        loop {
            let received = self.read_received().await?;
            self.pong_if_due().await?;
            if !matches!(received.msg, ServerMsg::Ping { .. }) {
                return Ok(received);
            }
        }
    }

    /// The next message, read only, so it is cancel-safe: a load generator can `select!` over
    /// several clients without losing a message that had already arrived. It writes nothing:
    /// a `ping` is returned too (with its `sn` of `None`) and the `pong` it asks for, like the
    /// acknowledgement due every [`ACK_EVERY`] messages, is left to [`Client::pong_if_due`],
    /// which the caller must call soon after [`Client::pong_due`] turns true. Replayed
    /// duplicates are skipped (unless strict) and `sn`s must count up by one.
    pub async fn read_received(&mut self) -> Result<Received> {
        loop {
            let text = self.next_text().await?;
            let ServerFrame { sn, msg } = decode_server(&text).map_err(ClientError::Decode)?;
            match (&msg, sn) {
                (ServerMsg::Ping { ack }, _) => {
                    let ack = *ack;
                    self.unacked.retain(|(cn, _)| *cn > ack);
                    self.ping_unanswered = true;
                }
                (_, Some(sn)) if sn <= self.last_sn && !self.strict => continue, // a replay overlap
                // Only a real skip uses the allowance: replayed messages (their numbers as
                // first sent) may come before the jump.
                (_, Some(sn)) if sn > self.last_sn + 1 && self.gap_allowed => {
                    self.gap_allowed = false;
                    self.last_sn = sn;
                }
                (_, Some(sn)) if sn != self.last_sn + 1 => {
                    return Err(ClientError::Sequence {
                        expected: self.last_sn + 1,
                        got: sn,
                    })
                }
                (_, Some(sn)) => self.last_sn = sn,
                (_, None) => {}
            }
            match &msg {
                ServerMsg::Joined { session, you, .. } | ServerMsg::Waiting { session, you, .. } => {
                    self.token = session.as_ref().map(|s| s.token.clone());
                    self.you = Some(you.clone());
                }
                ServerMsg::Left { .. }
                | ServerMsg::Denied { .. }
                | ServerMsg::Removed { .. }
                | ServerMsg::RoomEnded { .. } => self.token = None,
                _ => {}
            }
            return Ok(Received { sn, msg, text });
        }
    }

    /// Whether a `pong` is owed: a `ping` read by [`Client::read_received`] is unanswered, or
    /// [`ACK_EVERY`] messages are unacknowledged.
    pub fn pong_due(&self) -> bool {
        self.ping_unanswered || self.last_sn >= self.acked_sn + ACK_EVERY
    }

    /// Sends the `pong` that [`Client::pong_due`] says is owed, if any.
    pub async fn pong_if_due(&mut self) -> Result<()> {
        if !self.pong_due() {
            return Ok(());
        }
        self.ping_unanswered = false;
        self.pong().await
    }

    /// Acknowledges everything received so far.
    pub async fn pong(&mut self) -> Result<()> {
        self.acked_sn = self.last_sn;
        self.send(SessionMsg::Pong { ack: self.last_sn }).await
    }

    /// Reads until the server closes the connection; returns its close code.
    pub async fn closed(&mut self) -> Result<Option<u16>> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| f.code.into())),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => return Ok(None),
            }
        }
    }

    /// Closes the connection with `code` (1000 is a goodbye; 4000-4999 means "back soon").
    pub async fn close(&mut self, code: u16) -> Result<()> {
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        match self.ws.close(Some(frame)).await {
            Ok(()) | Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }

    /// Ends the connection without a close frame, as when the network goes away (the TCP
    /// stream is shut down under the WebSocket): the server detaches the session and keeps
    /// what it sends meanwhile. [`Client::resume`] then takes the session to a new connection;
    /// apart, the two let a test watch the others see the drop before the resume.
    pub async fn drop_connection(&mut self) -> Result<()> {
        Ok(self.ws.get_mut().shutdown().await?)
    }

    /// Takes the session to a new connection to `url`, as after a network drop (this
    /// connection is dropped without a close frame): sends `resume`, waits for `resumed`, and
    /// re-sends the numbered messages the server had not processed. The missed messages then
    /// arrive through [`Client::recv`]. Returns the new client and `lastCn`.
    pub async fn resume(self, url: &str) -> Result<(Self, u64)> {
        let (client, resumed) = self.resume_received(url).await?;
        match resumed.msg {
            ServerMsg::Resumed { last_cn, .. } => Ok((client, last_cn)),
            other => Err(ClientError::Unexpected {
                expected: "resumed",
                got: format!("{other:?}"),
            }),
        }
    }

    /// As [`Client::resume`], with the `resumed` message and its text as sent, for tests of
    /// its exact shape.
    pub async fn resume_received(self, url: &str) -> Result<(Self, Received)> {
        let Some(token) = self.token.clone() else {
            return Err(ClientError::Unexpected {
                expected: "a joined session",
                got: "no token".into(),
            });
        };
        let Self {
            ws,
            last_sn,
            next_cn,
            unacked,
            you,
            strict,
            ..
        } = self;
        drop(ws);
        let mut client = Self::connect(url).await?;
        client
            .send(SessionMsg::Resume {
                version: PROTOCOL_VERSION,
                token: token.clone(),
                last_sn,
                reloaded: false,
            })
            .await?;
        let text = client.next_text().await?;
        let ServerFrame { sn, msg } = decode_server(&text).map_err(ClientError::Decode)?;
        let (last_cn, token) = match msg {
            ServerMsg::Resumed { last_cn, token, .. } => (last_cn, token),
            ServerMsg::Error { code, message, .. } => return Err(ClientError::Refused { code, message }),
            other => {
                return Err(ClientError::Unexpected {
                    expected: "resumed",
                    got: format!("{other:?}"),
                })
            }
        };
        client.last_sn = last_sn;
        client.acked_sn = last_sn;
        client.next_cn = next_cn;
        // Tokens are single-use: keep the next one.
        client.token = Some(token.clone());
        client.you = you;
        client.strict = strict;
        client.unacked = unacked.into_iter().filter(|(cn, _)| *cn > last_cn).collect();
        for (_, text) in client.unacked.clone() {
            client.send_text(text).await?;
        }
        let resumed = Received {
            sn,
            msg: ServerMsg::Resumed {
                version: PROTOCOL_VERSION,
                last_cn,
                token,
            },
            text,
        };
        Ok((client, resumed))
    }

    /// The next text frame (control frames are handled by tungstenite).
    async fn next_text(&mut self) -> Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text),
                Some(Ok(Message::Close(frame))) => return Err(ClientError::Closed(frame)),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
                None => return Err(ClientError::Closed(None)),
            }
        }
    }
}

fn encode(cn: Option<u64>, msg: ClientMsg) -> String {
    let mut out = Vec::with_capacity(128);
    ClientFrame { cn, msg }.encode(&mut out);
    // serde_json writes UTF-8 only.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;
    use tokio::time::{timeout_at, Instant};
    use tokio_util::sync::CancellationToken;
    use visavis_protocol::RoomMsg;

    use super::*;

    /// [`Client::read_received`] writes nothing; the pongs it notes go out through
    /// [`Client::pong_if_due`]: every [`ACK_EVERY`] messages, and for every `ping`, so that the
    /// connection outlives several heartbeat timeouts.
    #[tokio::test]
    async fn read_received_leaves_pongs_to_pong_if_due() {
        let settings = visavis_server::Settings::parse_from([
            "visavis",
            "--no-turn",
            "--sfu-listen",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            "2",
            // Far more chat than a person sends, which is not what this test is about.
            "--chat-rate-limit",
            "1000",
            "--room-chat-rate-limit",
            "1000",
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let app = visavis_server::App::start(listener, settings, shutdown.clone())
            .await
            .unwrap();
        let url = format!("ws://{}/ws", app.local_addr().unwrap());
        tokio::spawn(app.serve());

        let (mut ann, _) = Client::join(&url, "r", "Ann").await.unwrap();
        let chats = ACK_EVERY + 6;
        for i in 0..chats {
            ann.send(RoomMsg::Chat { text: i.to_string() }).await.unwrap();
        }
        let mut read = 0;
        while read < chats {
            if let ServerMsg::Chat(_) = ann.read_received().await.unwrap().msg {
                read += 1;
            }
            if ann.last_sn() == ACK_EVERY {
                assert!(ann.pong_due());
            }
            ann.pong_if_due().await.unwrap();
            assert!(!ann.pong_due());
        }
        assert!(ann.acked_sn >= ACK_EVERY);

        let (mut pings, until) = (0, Instant::now() + Duration::from_millis(4500));
        while let Ok(received) = timeout_at(until, ann.read_received()).await {
            if let ServerMsg::Ping { .. } = received.unwrap().msg {
                assert!(ann.pong_due());
                pings += 1;
            }
            ann.pong_if_due().await.unwrap();
        }
        assert!(pings >= 3, "{pings} pings in 4.5 s");
        shutdown.cancel();
    }
}
