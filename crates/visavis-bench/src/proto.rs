//! The three signalling protocols under test, as one client type: connect, join a room of two,
//! pair with the other member, send relayed messages carrying a send timestamp, read them back.
//!
//! - `visavis`: spoken by [`visavis_client::Client`] (envelope, sequence numbers,
//!   acknowledgements, typed messages): `join`, then `invite`/`accept` for an active call;
//!   relayed messages are `description` (offer/answer) and `candidate` (docs/protocol.md).
//! - `socketio`: Socket.io 2 over Engine.IO 3 (raw WebSocket transport) against the article's
//!   server: `checkRoom`, then `receiveOffer` / `receiveAnsewer` / `addIceCandidate` events that
//!   the server forwards to the other member of the room.
//! - `peerjs`: PeerServer: connecting with an id registers it; `OFFER` / `ANSWER` / `CANDIDATE`
//!   messages go to a `dst` id.
//!
//! Relayed messages are sent from templates, the frame text before and after the payload (the
//! timestamp and padding), so that sending one costs a copy; visavis's templates are encoded
//! from typed messages.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use visavis_protocol::{CallId, Candidate, ClientFrame, Description, RoomMsg, SdpKind, ServerMsg};

use crate::net::{self, Ws};

/// Which server a run talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// visavis's `/ws`.
    Visavis,
    /// Socket.io 2 (Engine.IO 3) with the article's events.
    Socketio,
    /// PeerServer (npm `peer`).
    Peerjs,
}

/// What a relayed message stands for; it picks the message type and event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Offer,
    Answer,
    Candidate,
}

/// Starts every payload; the send timestamp (ns since [`epoch`]) follows, then `;`.
const MARKER: &str = "@vvb:";

/// Stands for the payload in a visavis frame encoded from a typed message, which is then split
/// around it into a template (no character of it is escaped in JSON).
const HOLE: &str = "vvb-payload-hole";

/// How long a handshake step may take before the connection counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// PeerServer's clients send a heartbeat this often (peerjs's default).
const PEERJS_HEARTBEAT: Duration = Duration::from_secs(5);

/// The instant all send timestamps count from; sender and receiver share the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One frame read from the server, as the load loop sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A relayed message, with the timestamp its sender embedded.
    Relay { sent_ns: u64 },
    /// Something that is not a relayed message and not a failure (pong, presence, ...).
    Other,
    /// The server refused something, or the other member left.
    Failure(String),
}

/// The connection under a [`Client`].
#[derive(Debug)]
enum Conn {
    /// visavis: the protocol's own client.
    Visavis(visavis_client::Client),
    /// Socket.io and PeerServer: a WebSocket carrying hand-written frames.
    Raw(Ws),
}

/// One client connection of a load-generator run.
#[derive(Debug)]
pub struct Client {
    conn: Conn,
    target: Target,
    /// peerjs: the peer id this client registered.
    id: String,
    /// The frame text around the payload for each [`Kind`], set by [`pair`].
    templates: [(String, String); 3],
    /// Socket.io and PeerServer: when to send the next keepalive (visavis answers `ping`).
    keepalive: Option<(Duration, Instant)>,
}

impl Client {
    /// Opens a connection to the server at `base` (e.g. `ws://127.0.0.1:8080`, loopback only)
    /// and completes the protocol's opening handshake. `ident` names the client (PeerServer's
    /// peer id).
    pub async fn connect(
        target: Target,
        base: &str,
        source: Option<IpAddr>,
        ident: &str,
    ) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/').replacen("http://", "ws://", 1);
        let url = match target {
            Target::Visavis => format!("{base}/ws"),
            Target::Socketio => format!("{base}/socket.io/?EIO=3&transport=websocket"),
            Target::Peerjs => format!("{base}/peerjs?key=peerjs&id={ident}&token=bench"),
        };
        let connecting = async {
            if target != Target::Visavis {
                return anyhow::Ok(Conn::Raw(net::connect(&url, source).await?));
            }
            net::loopback_addr(&url)?;
            if let Some(ip) = source {
                net::check_loopback(ip)?;
            }
            let client = visavis_client::Client::connect_from(&url, source)
                .await
                .with_context(|| format!("cannot connect to {url}"))?;
            Ok(Conn::Visavis(client))
        };
        let mut conn = timeout(STEP_TIMEOUT, connecting)
            .await
            .context("timed out connecting")??;
        let keepalive = match &mut conn {
            Conn::Visavis(_) => None,
            Conn::Raw(ws) => {
                // Ping a little early so that a late timer never lets the server's timeout pass.
                let every = raw_open(ws, target).await?.mul_f64(0.8);
                Some((every, Instant::now() + every))
            }
        };
        Ok(Self {
            conn,
            target,
            id: ident.to_owned(),
            templates: Default::default(),
            keepalive,
        })
    }

    /// Enters `room` (a room of two) under `name`.
    pub async fn join(&mut self, room: &str, name: &str) -> anyhow::Result<()> {
        let ws = match &mut self.conn {
            Conn::Visavis(client) => {
                timeout(STEP_TIMEOUT, client.join_room(room, name))
                    .await
                    .context("timed out waiting for joined")??;
                return Ok(());
            }
            Conn::Raw(ws) => ws,
        };
        // PeerServer has no rooms: connecting registered the peer id.
        if self.target == Target::Socketio {
            let check = serde_json::json!(["checkRoom", {"roomid": room, "userName": name}]);
            raw_send(ws, format!("42{check}")).await?;
            let reply = read_until(ws, self.target, |t| {
                t.starts_with("42[\"joinRoomSuccess\"") || t.starts_with("42[\"roomFull\"")
            })
            .await?;
            if reply.starts_with("42[\"roomFull\"") {
                bail!("room {room} is full");
            }
        }
        Ok(())
    }

    /// Sends one relayed message of about `size` bytes (the whole frame) to the other member.
    pub async fn send_relay(&mut self, kind: Kind, size: usize) -> anyhow::Result<()> {
        let frame = relay_frame(&self.templates[kind as usize], size);
        match &mut self.conn {
            Conn::Visavis(client) => client.send_text(frame).await.context("send failed"),
            Conn::Raw(ws) => raw_send(ws, frame).await,
        }
    }

    /// Sends the protocol's keepalive (or acknowledgement) when it is due.
    pub async fn keepalive_if_due(&mut self) -> anyhow::Result<()> {
        let ws = match &mut self.conn {
            Conn::Visavis(client) => return client.pong_if_due().await.context("pong failed"),
            Conn::Raw(ws) => ws,
        };
        let Some((every, due)) = self.keepalive else {
            return Ok(());
        };
        if Instant::now() < due {
            return Ok(());
        }
        self.keepalive = Some((every, Instant::now() + every));
        let ping = if self.target == Target::Socketio {
            "2"
        } else {
            "{\"type\":\"HEARTBEAT\"}"
        };
        raw_send(ws, ping.to_owned()).await
    }

    /// When the next keepalive is due (far in the future when the protocol needs none).
    pub fn keepalive_at(&self) -> Instant {
        match (&self.conn, self.keepalive) {
            (Conn::Visavis(client), _) if client.pong_due() => Instant::now(),
            (_, Some((_, at))) => at,
            _ => Instant::now() + Duration::from_secs(3600),
        }
    }

    /// The next frame, classified. An `Err` means the connection failed or closed. Cancel-safe
    /// (it only reads): the load loops `select!` over two clients.
    pub async fn recv(&mut self) -> anyhow::Result<Incoming> {
        match &mut self.conn {
            Conn::Visavis(client) => {
                let received = client.read_received().await?;
                Ok(classify_visavis(&received.msg, &received.text))
            }
            Conn::Raw(ws) => Ok(classify(self.target, &next_text(ws).await?)),
        }
    }

    /// Reads until a relayed message arrives; returns its send timestamp.
    pub async fn recv_relay(&mut self) -> anyhow::Result<u64> {
        loop {
            match self.recv().await? {
                Incoming::Relay { sent_ns } => return Ok(sent_ns),
                Incoming::Other => {}
                Incoming::Failure(text) => bail!("server: {text}"),
            }
        }
    }

    /// Closes the connection politely (bounded in time).
    pub async fn close(self) {
        let closing = async {
            match self.conn {
                Conn::Visavis(mut client) => {
                    let _ = client.close(1000).await;
                }
                Conn::Raw(mut ws) => {
                    let _ = ws.close(None).await;
                }
            }
        };
        let _ = timeout(Duration::from_secs(2), closing).await;
    }
}

/// Makes `a` and `b` (both joined to the same room) able to relay to each other: for visavis an
/// accepted call (`a` invites, `b` accepts); for PeerServer each addresses the other's id.
pub async fn pair(a: &mut Client, b: &mut Client) -> anyhow::Result<()> {
    match (&mut a.conn, &mut b.conn) {
        (Conn::Visavis(caller), Conn::Visavis(callee)) => {
            let call = accepted_call(caller, callee).await?;
            a.templates = visavis_templates(call)?;
            b.templates = a.templates.clone();
        }
        _ if a.target == Target::Socketio => {
            a.templates = socketio_templates();
            b.templates = socketio_templates();
        }
        _ => {
            a.templates = peerjs_templates(&b.id);
            b.templates = peerjs_templates(&a.id);
        }
    }
    Ok(())
}

/// `a` invites `b`, who accepts; returns the call.
async fn accepted_call(
    a: &mut visavis_client::Client,
    b: &mut visavis_client::Client,
) -> anyhow::Result<CallId> {
    let to = b.you().context("not joined")?.id;
    a.send(RoomMsg::Invite { to }).await?;
    wait_for(a, "ringing", |m| {
        matches!(m, ServerMsg::Ringing { .. }).then_some(())
    })
    .await?;
    let call = wait_for(b, "incoming", |m| match m {
        ServerMsg::Incoming { call_id, .. } => Some(*call_id),
        _ => None,
    })
    .await?;
    b.send(RoomMsg::Accept { call_id: call }).await?;
    let accepted =
        |m: &ServerMsg| matches!(m, ServerMsg::Accepted { call_id, .. } if *call_id == call).then_some(());
    wait_for(a, "accepted", accepted).await?;
    wait_for(b, "accepted", accepted).await?;
    Ok(call)
}

/// Reads (bounded in time) until `pick` takes a message; fails on a failure message.
async fn wait_for<T>(
    client: &mut visavis_client::Client,
    what: &str,
    pick: impl Fn(&ServerMsg) -> Option<T>,
) -> anyhow::Result<T> {
    let reading = async {
        loop {
            let received = client.recv_received().await?;
            if let Some(found) = pick(&received.msg) {
                return Ok(found);
            }
            if let Incoming::Failure(why) = classify_visavis(&received.msg, &received.text) {
                bail!("server: {why}");
            }
        }
    };
    timeout(STEP_TIMEOUT, reading)
        .await
        .with_context(|| format!("timed out waiting for {what}"))?
}

/// The Engine.IO / Socket.io or PeerServer opening handshake; returns the keepalive period.
async fn raw_open(ws: &mut Ws, target: Target) -> anyhow::Result<Duration> {
    if target == Target::Socketio {
        // `0{"sid":..,"pingInterval":25000,...}` (Engine.IO open), then `40` (Socket.io
        // connected to the default namespace).
        let open = read_until(ws, target, |t| t.starts_with('0')).await?;
        let info: Value = serde_json::from_str(&open[1..]).context("bad Engine.IO open")?;
        let interval = info["pingInterval"].as_u64().unwrap_or(25_000);
        read_until(ws, target, |t| t.starts_with("40")).await?;
        return Ok(Duration::from_millis(interval));
    }
    let open = read_until(ws, target, |t| t.contains("\"type\":\"")).await?;
    if !open.contains("\"OPEN\"") {
        bail!("PeerServer refused the connection: {open}");
    }
    Ok(PEERJS_HEARTBEAT)
}

async fn raw_send(ws: &mut Ws, text: String) -> anyhow::Result<()> {
    ws.send(Message::text(text)).await.context("send failed")
}

/// The next text frame; pings are answered by tungstenite, other frames skipped.
async fn next_text(ws: &mut Ws) -> anyhow::Result<Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err).context("connection failed"),
            None => bail!("connection closed"),
        }
    }
}

/// Reads (bounded in time) until a text frame satisfies `done`; fails on a failure frame.
async fn read_until(ws: &mut Ws, target: Target, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
    let reading = async {
        loop {
            let text = next_text(ws).await?;
            if done(&text) {
                return Ok(text.as_str().to_owned());
            }
            if let Incoming::Failure(why) = classify(target, &text) {
                bail!("server: {why}");
            }
        }
    };
    timeout(STEP_TIMEOUT, reading)
        .await
        .context("timed out waiting for the server")?
}

/// The frame `prefix` + timestamp + padding + `suffix`, of `size` bytes when that is enough.
fn relay_frame((prefix, suffix): &(String, String), size: usize) -> String {
    let stamp = format!("{MARKER}{};", now_ns());
    let pad = size.saturating_sub(prefix.len() + stamp.len() + suffix.len());
    let mut frame = String::with_capacity(prefix.len() + stamp.len() + pad + suffix.len());
    frame.push_str(prefix);
    frame.push_str(&stamp);
    frame.extend(std::iter::repeat_n('x', pad));
    frame.push_str(suffix);
    frame
}

/// An offer, an answer and a candidate of call `call_id`, each encoded as visavis-protocol
/// writes it and split around its payload (the SDP, the candidate line).
fn visavis_templates(call_id: CallId) -> anyhow::Result<[(String, String); 3]> {
    let description = |kind| RoomMsg::Description {
        call_id,
        to: None,
        description: Description::new(kind, HOLE),
    };
    let candidate = RoomMsg::Candidate {
        call_id,
        to: None,
        candidate: Candidate::new(HOLE, "0"),
    };
    let split = |msg: RoomMsg| {
        let mut frame = Vec::new();
        ClientFrame {
            cn: None,
            msg: msg.into(),
        }
        .encode(&mut frame);
        let frame = String::from_utf8(frame)?;
        let (prefix, suffix) = frame.split_once(HOLE).context("no payload in the frame")?;
        anyhow::Ok((prefix.to_owned(), suffix.to_owned()))
    };
    Ok([
        split(description(SdpKind::Offer))?,
        split(description(SdpKind::Answer))?,
        split(candidate)?,
    ])
}

fn socketio_templates() -> [(String, String); 3] {
    [
        (
            "42[\"receiveOffer\",{\"type\":\"offer\",\"sdp\":\"".to_owned(),
            "\"}]".to_owned(),
        ),
        (
            "42[\"receiveAnsewer\",{\"type\":\"answer\",\"sdp\":\"".to_owned(),
            "\"}]".to_owned(),
        ),
        (
            "42[\"addIceCandidate\",{\"candidate\":\"".to_owned(),
            "\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}]".to_owned(),
        ),
    ]
}

fn peerjs_templates(dst: &str) -> [(String, String); 3] {
    // The shape the peerjs client library sends for a media connection.
    let description = |upper: &str, lower: &str| {
        (
            format!("{{\"type\":\"{upper}\",\"dst\":\"{dst}\",\"payload\":{{\"sdp\":{{\"type\":\"{lower}\",\"sdp\":\""),
            "\"},\"type\":\"media\",\"connectionId\":\"mc_bench\"}}".to_owned(),
        )
    };
    [
        description("OFFER", "offer"),
        description("ANSWER", "answer"),
        (
            format!(
                "{{\"type\":\"CANDIDATE\",\"dst\":\"{dst}\",\"payload\":{{\"candidate\":{{\"candidate\":\""
            ),
            "\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0},\"type\":\"media\",\"connectionId\":\"mc_bench\"}}"
                .to_owned(),
        ),
    ]
}

/// A visavis message as the load loop sees it: a relayed description or candidate carries
/// [`MARKER`] in its payload; `text` (the frame as sent) only quotes a failure.
fn classify_visavis(msg: &ServerMsg, text: &str) -> Incoming {
    let payload = match msg {
        ServerMsg::Description { description, .. } => description.json(),
        ServerMsg::Candidate { candidate, .. } => candidate.json(),
        ServerMsg::Error { .. }
        | ServerMsg::CallEnded { .. }
        | ServerMsg::MemberLeft { .. }
        | ServerMsg::Reconnect { .. } => return Incoming::Failure(excerpt(text)),
        _ => return Incoming::Other,
    };
    stamp(payload).unwrap_or(Incoming::Other)
}

/// Tells a relayed Socket.io or PeerServer frame (it carries [`MARKER`]) from everything else
/// the server sends, without parsing the JSON: the load generator must stay cheaper than the
/// servers it measures.
fn classify(target: Target, text: &str) -> Incoming {
    if let Some(relayed) = stamp(text) {
        return relayed;
    }
    let failure = match target {
        // Typed messages: see `classify_visavis`.
        Target::Visavis => false,
        // `44`: a Socket.io error packet; `1`: Engine.IO close.
        Target::Socketio => text.starts_with("44") || text == "1" || text.starts_with("42[\"userLeave\""),
        Target::Peerjs => ["\"ERROR\"", "\"LEAVE\"", "\"EXPIRE\"", "\"ID-TAKEN\""]
            .iter()
            .any(|p| text.contains(p)),
    };
    if failure {
        Incoming::Failure(excerpt(text))
    } else {
        Incoming::Other
    }
}

/// The send timestamp after [`MARKER`] in `text`, if it has the marker.
fn stamp(text: &str) -> Option<Incoming> {
    let at = text.find(MARKER)?;
    let digits = &text[at + MARKER.len()..];
    let end = digits.find(';').unwrap_or(digits.len());
    Some(match digits[..end].parse() {
        Ok(sent_ns) => Incoming::Relay { sent_ns },
        Err(_) => Incoming::Failure(format!("unreadable timestamp in {}", excerpt(text))),
    })
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use visavis_protocol::{decode_client, decode_server, ClientMsg};

    use super::*;

    fn visavis(text: &str) -> Incoming {
        let frame = decode_server(text).unwrap();
        classify_visavis(&frame.msg, text)
    }

    #[test]
    fn relayed_messages_yield_their_timestamp() {
        let relayed = r#"{"sn":5,"type":"description","callId":3,"from":8,"description":{"type":"offer","sdp":"@vvb:12345;xxxx"}}"#;
        assert_eq!(visavis(relayed), Incoming::Relay { sent_ns: 12345 });
        // Whatever the order of the fields, in the message and in its payload.
        let relayed = r#"{"candidate":{"sdpMid":"0","candidate":"@vvb:99;x"},"from":8,"type":"candidate","callId":3,"sn":6}"#;
        assert_eq!(visavis(relayed), Incoming::Relay { sent_ns: 99 });
        let relayed = r#"42["addIceCandidate",{"candidate":"@vvb:7;x","sdpMid":"0","sdpMLineIndex":0}]"#;
        assert_eq!(
            classify(Target::Socketio, relayed),
            Incoming::Relay { sent_ns: 7 }
        );
    }

    #[test]
    fn failures_and_noise_are_told_apart() {
        let error = r#"{"type":"error","code":"invalid_call_state","message":"x"}"#;
        assert!(matches!(visavis(error), Incoming::Failure(_)));
        let numbered = r#"{"type":"error","code":"rate_limited","message":"x","sn":4}"#;
        assert!(matches!(visavis(numbered), Incoming::Failure(_)));
        assert_eq!(
            visavis(r#"{"sn":2,"type":"member_joined","member":{"id":1,"name":"a"}}"#),
            Incoming::Other
        );
        assert_eq!(visavis(r#"{"type":"ping","ack":0}"#), Incoming::Other);
        assert_eq!(classify(Target::Socketio, "3"), Incoming::Other);
        assert!(matches!(
            classify(Target::Socketio, "42[\"userLeave\",{}]"),
            Incoming::Failure(_)
        ));
        let expire = r#"{"type":"EXPIRE","src":"a","dst":"b"}"#;
        assert!(matches!(classify(Target::Peerjs, expire), Incoming::Failure(_)));
    }

    #[test]
    fn frames_are_valid_json_of_the_asked_size() {
        for templates in [
            visavis_templates(9).unwrap(),
            socketio_templates(),
            peerjs_templates("p-1"),
        ] {
            for template in &templates {
                let frame = relay_frame(template, 500);
                assert_eq!(frame.len(), 500);
                let json = frame.strip_prefix("42").unwrap_or(&frame);
                serde_json::from_str::<Value>(json).unwrap();
            }
        }
    }

    #[test]
    fn visavis_frames_decode_as_relayed_messages() {
        let [offer, answer, candidate] = visavis_templates(9).unwrap();
        let decode = |template| match decode_client(&relay_frame(template, 300)).unwrap().msg {
            ClientMsg::Room(msg) => msg,
            other => panic!("not a room message: {other:?}"),
        };
        let RoomMsg::Description {
            call_id: 9,
            to: None,
            description,
        } = decode(&offer)
        else {
            panic!("not a description");
        };
        assert!(description.json().contains(r#""type":"offer""#));
        assert!(stamp(description.json()).is_some());
        let RoomMsg::Description { description, .. } = decode(&answer) else {
            panic!("not a description");
        };
        assert!(description.json().contains(r#""type":"answer""#));
        let RoomMsg::Candidate {
            call_id: 9,
            candidate,
            ..
        } = decode(&candidate)
        else {
            panic!("not a candidate");
        };
        assert!(matches!(stamp(candidate.json()), Some(Incoming::Relay { .. })));
    }
}
