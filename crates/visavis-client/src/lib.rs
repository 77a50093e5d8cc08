//! A visavis signalling client in Rust, speaking docs/protocol.md as the web client does: it
//! numbers what it sends (`cn`) and keeps it until the server acknowledges it, checks that the
//! server's `sn` count up by one and skips replayed duplicates, answers `ping` with `pong`,
//! acknowledges every 64 messages, and resumes its session on a new connection.
//!
//! Used by the server's integration tests, the churn test and `visavis-bench`.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
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
}

impl Client {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/ws`).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_from(url, None).await
    }

    /// Opens a WebSocket to `url` from the local address `source` (port chosen by the kernel),
    /// so load tests can spread over several loopback addresses.
    pub async fn connect_from(url: &str, source: Option<IpAddr>) -> Result<Self> {
        let request = url.into_client_request()?;
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

    /// The session's resume token, once joined.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The highest `sn` received.
    pub fn last_sn(&self) -> u64 {
        self.last_sn
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
            let text = self.next_text().await?;
            let ServerFrame { sn, msg } = decode_server(&text).map_err(ClientError::Decode)?;
            match (&msg, sn) {
                (ServerMsg::Ping { ack }, _) => {
                    let ack = *ack;
                    self.unacked.retain(|(cn, _)| *cn > ack);
                    self.pong().await?;
                    continue;
                }
                (_, Some(sn)) if sn <= self.last_sn => continue, // a replay overlap
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
                ServerMsg::Joined { session, you, .. } => {
                    self.token = session.as_ref().map(|s| s.token.clone());
                    self.you = Some(you.clone());
                }
                ServerMsg::Left { .. } => self.token = None,
                _ => {}
            }
            if self.last_sn >= self.acked_sn + ACK_EVERY {
                self.pong().await?;
            }
            return Ok(Received { sn, msg, text });
        }
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

    /// Takes the session to a new connection to `url`, as after a network drop (this
    /// connection is dropped without a close frame): sends `resume`, waits for `resumed`, and
    /// re-sends the numbered messages the server had not processed. The missed messages then
    /// arrive through [`Client::recv`]. Returns the new client and `lastCn`.
    pub async fn resume(self, url: &str) -> Result<(Self, u64)> {
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
            ..
        } = self;
        drop(ws);
        let mut client = Self::connect(url).await?;
        client
            .send(SessionMsg::Resume {
                version: PROTOCOL_VERSION,
                token: token.clone(),
                last_sn,
            })
            .await?;
        let text = client.next_text().await?;
        let last_cn = match decode_server(&text).map_err(ClientError::Decode)?.msg {
            ServerMsg::Resumed { last_cn, .. } => last_cn,
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
        client.token = Some(token);
        client.you = you;
        client.unacked = unacked.into_iter().filter(|(cn, _)| *cn > last_cn).collect();
        for (_, text) in client.unacked.clone() {
            client.send_text(text).await?;
        }
        Ok((client, last_cn))
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
