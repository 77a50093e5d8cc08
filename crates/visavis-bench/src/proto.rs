//! The three signalling protocols under test, as one client type: connect, join a room of two,
//! pair with the other member, send relayed messages carrying a send timestamp, read them back.
//!
//! - `visavis`: `join`, then `invite`/`accept` for an active call; relayed messages are
//!   `description` (offer/answer) and `candidate` (docs/protocol.md).
//! - `socketio`: Socket.io 2 over Engine.IO 3 (raw WebSocket transport) against the article's
//!   server: `checkRoom`, then `receiveOffer` / `receiveAnsewer` / `addIceCandidate` events that
//!   the server forwards to the other member of the room.
//! - `peerjs`: PeerServer: connecting with an id registers it; `OFFER` / `ANSWER` / `CANDIDATE`
//!   messages go to a `dst` id.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

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

/// How long a handshake step may take before the connection counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// PeerServer's clients send a heartbeat this often (peerjs's default).
const PEERJS_HEARTBEAT: Duration = Duration::from_secs(5);

/// visavis servers that number their messages (`sn`) keep them until the client acknowledges
/// them (`pong`): acknowledge at least this often, besides answering every `ping`.
const ACK_EVERY: u64 = 64;

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

/// One client connection of a load-generator run.
#[derive(Debug)]
pub struct Client {
    ws: Ws,
    target: Target,
    /// visavis: the member id from `joined`; peerjs: the peer id this client registered.
    id: String,
    /// The frame text around the payload for each [`Kind`], set by [`pair`].
    templates: [(String, String); 3],
    /// When to send the next keepalive, if the protocol needs one.
    keepalive: Option<(Duration, Instant)>,
    /// visavis: the highest `sn` received and the highest acknowledged, and whether a `pong`
    /// should go out (the server pinged, or many messages are unacknowledged).
    last_sn: u64,
    acked_sn: u64,
    pong_due: bool,
}

impl Client {
    /// Opens a connection to the server at `base` (e.g. `ws://127.0.0.1:8080`) and completes the
    /// protocol's opening handshake. `ident` names the client (PeerServer's peer id).
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
        let ws = tokio::time::timeout(STEP_TIMEOUT, net::connect(&url, source))
            .await
            .context("timed out connecting")??;
        let mut client = Self {
            ws,
            target,
            id: ident.to_owned(),
            templates: Default::default(),
            keepalive: None,
            last_sn: 0,
            acked_sn: 0,
            pong_due: false,
        };
        match target {
            Target::Visavis => {}
            Target::Socketio => {
                // `0{"sid":..,"pingInterval":25000,...}` (Engine.IO open), then `40` (Socket.io
                // connected to the default namespace).
                let open = client.read_until(|t| t.starts_with('0')).await?;
                let info: Value = serde_json::from_str(&open[1..]).context("bad Engine.IO open")?;
                let interval = info["pingInterval"].as_u64().unwrap_or(25_000);
                client.set_keepalive(Duration::from_millis(interval));
                client.read_until(|t| t.starts_with("40")).await?;
            }
            Target::Peerjs => {
                let open = client.read_until(|t| t.contains("\"type\":\"")).await?;
                if !open.contains("\"OPEN\"") {
                    bail!("PeerServer refused the connection: {open}");
                }
                client.set_keepalive(PEERJS_HEARTBEAT);
            }
        }
        Ok(client)
    }

    fn set_keepalive(&mut self, every: Duration) {
        // Ping a little early so that a late timer never lets the server's timeout pass.
        let every = every.mul_f64(0.8);
        self.keepalive = Some((every, Instant::now() + every));
    }

    /// Enters `room` (a room of two) under `name`.
    pub async fn join(&mut self, room: &str, name: &str) -> anyhow::Result<()> {
        match self.target {
            Target::Visavis => {
                let join = serde_json::json!({"type": "join", "version": 1, "room": room, "name": name});
                self.send_text(join.to_string()).await?;
                let joined = self.read_json_of("joined").await?;
                self.id = joined["you"]["id"]
                    .as_u64()
                    .context("joined without you.id")?
                    .to_string();
            }
            Target::Socketio => {
                let check = serde_json::json!(["checkRoom", {"roomid": room, "userName": name}]);
                self.send_text(format!("42{check}")).await?;
                let reply = self
                    .read_until(|t| {
                        t.starts_with("42[\"joinRoomSuccess\"") || t.starts_with("42[\"roomFull\"")
                    })
                    .await?;
                if reply.starts_with("42[\"roomFull\"") {
                    bail!("room {room} is full");
                }
            }
            // Connecting registered the peer id; PeerServer has no rooms.
            Target::Peerjs => {}
        }
        Ok(())
    }

    /// Sends one relayed message of about `size` bytes (the whole frame) to the other member.
    pub async fn send_relay(&mut self, kind: Kind, size: usize) -> anyhow::Result<()> {
        let (prefix, suffix) = &self.templates[kind as usize];
        let stamp = format!("{MARKER}{};", now_ns());
        let pad = size.saturating_sub(prefix.len() + stamp.len() + suffix.len());
        let mut frame = String::with_capacity(prefix.len() + stamp.len() + pad + suffix.len());
        frame.push_str(prefix);
        frame.push_str(&stamp);
        frame.extend(std::iter::repeat_n('x', pad));
        frame.push_str(suffix);
        self.send_text(frame).await
    }

    /// Sends the protocol's keepalive (or acknowledgement) when it is due.
    pub async fn keepalive_if_due(&mut self) -> anyhow::Result<()> {
        if self.pong_due {
            self.pong_due = false;
            self.acked_sn = self.last_sn;
            self.send_text(format!("{{\"type\":\"pong\",\"ack\":{}}}", self.last_sn))
                .await?;
        }
        let Some((every, due)) = self.keepalive else {
            return Ok(());
        };
        if Instant::now() < due {
            return Ok(());
        }
        self.keepalive = Some((every, Instant::now() + every));
        let ping = match self.target {
            Target::Socketio => "2",
            Target::Peerjs => "{\"type\":\"HEARTBEAT\"}",
            Target::Visavis => return Ok(()),
        };
        self.send_text(ping.to_owned()).await
    }

    /// When the next keepalive is due (far in the future when the protocol needs none).
    pub fn keepalive_at(&self) -> Instant {
        if self.pong_due {
            return Instant::now();
        }
        self.keepalive
            .map_or_else(|| Instant::now() + Duration::from_secs(3600), |(_, at)| at)
    }

    /// The next frame, classified. An `Err` means the connection failed or closed.
    pub async fn recv(&mut self) -> anyhow::Result<Incoming> {
        let text = self.next_text().await?;
        Ok(classify(self.target, &text))
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
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }

    async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await.context("send failed")
    }

    /// The next text frame; pings are answered by tungstenite, other frames skipped.
    async fn next_text(&mut self) -> anyhow::Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    if self.target == Target::Visavis {
                        self.note_visavis_session(&text);
                    }
                    return Ok(text);
                }
                Some(Ok(Message::Close(frame))) => bail!("closed by the server: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err).context("connection failed"),
                None => bail!("connection closed"),
            }
        }
    }

    /// Follows the message numbers (`sn`) and heartbeats of visavis servers that have them.
    fn note_visavis_session(&mut self, text: &str) {
        if let Some(sn) = text
            .strip_prefix("{\"sn\":")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse::<u64>().ok())
        {
            self.last_sn = sn;
            if sn.saturating_sub(self.acked_sn) >= ACK_EVERY {
                self.pong_due = true;
            }
        }
        if text.len() < 100 && text.contains("\"type\":\"ping\"") {
            self.pong_due = true;
        }
    }

    /// Reads (bounded in time) until a text frame satisfies `done`; fails on a failure frame.
    async fn read_until(&mut self, done: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let target = self.target;
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let text = self.next_text().await?;
                if done(&text) {
                    return Ok(text.as_str().to_owned());
                }
                if let Incoming::Failure(why) = classify(target, &text) {
                    bail!("server: {why}");
                }
            }
        })
        .await
        .context("timed out waiting for the server")?
    }

    /// Reads a visavis message of type `kind`.
    async fn read_json_of(&mut self, kind: &str) -> anyhow::Result<Value> {
        let text = self.read_until(|t| json_type(t).as_deref() == Some(kind)).await?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Makes `a` and `b` (both joined to the same room) able to relay to each other: for visavis an
/// accepted call (`a` invites, `b` accepts); for PeerServer each addresses the other's id.
pub async fn pair(a: &mut Client, b: &mut Client) -> anyhow::Result<()> {
    match a.target {
        Target::Visavis => {
            let to: u64 = b.id.parse()?;
            a.send_text(format!("{{\"type\":\"invite\",\"to\":{to}}}"))
                .await?;
            a.read_json_of("ringing").await?;
            let incoming = b.read_json_of("incoming").await?;
            let call = incoming["callId"].as_u64().context("incoming without callId")?;
            b.send_text(format!("{{\"type\":\"accept\",\"callId\":{call}}}"))
                .await?;
            a.read_json_of("accepted").await?;
            b.read_json_of("accepted").await?;
            a.templates = visavis_templates(call);
            b.templates = visavis_templates(call);
        }
        Target::Socketio => {
            a.templates = socketio_templates();
            b.templates = socketio_templates();
        }
        Target::Peerjs => {
            a.templates = peerjs_templates(&b.id);
            b.templates = peerjs_templates(&a.id);
        }
    }
    Ok(())
}

fn visavis_templates(call: u64) -> [(String, String); 3] {
    let description = |kind: &str| {
        (
            format!("{{\"type\":\"description\",\"callId\":{call},\"description\":{{\"type\":\"{kind}\",\"sdp\":\""),
            "\"}}".to_owned(),
        )
    };
    [
        description("offer"),
        description("answer"),
        (
            format!("{{\"type\":\"candidate\",\"callId\":{call},\"candidate\":{{\"candidate\":\""),
            "\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}}".to_owned(),
        ),
    ]
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

/// Tells a relayed message (it carries [`MARKER`]) from everything else a server sends, without
/// parsing the JSON: the load generator must stay cheaper than the servers it measures.
pub fn classify(target: Target, text: &str) -> Incoming {
    if let Some(at) = text.find(MARKER) {
        let digits = &text[at + MARKER.len()..];
        let end = digits.find(';').unwrap_or(digits.len());
        return match digits[..end].parse() {
            Ok(sent_ns) => Incoming::Relay { sent_ns },
            Err(_) => Incoming::Failure(format!("unreadable timestamp in {}", excerpt(text))),
        };
    }
    let failure = match target {
        Target::Visavis => ["error", "call_ended", "member_left", "reconnect"]
            .iter()
            .any(|t| text.contains(&format!("\"type\":\"{t}\""))),
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

/// The `type` field of a JSON object (handshake only: this parses the whole text).
fn json_type(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    Some(value.get("type")?.as_str()?.to_owned())
}

fn excerpt(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_messages_yield_their_timestamp() {
        let relayed = r#"{"type":"description","callId":3,"from":8,"description":{"type":"offer","sdp":"@vvb:12345;xxxx"}}"#;
        assert_eq!(
            classify(Target::Visavis, relayed),
            Incoming::Relay { sent_ns: 12345 }
        );
        let relayed = r#"42["addIceCandidate",{"candidate":"@vvb:7;x","sdpMid":"0","sdpMLineIndex":0}]"#;
        assert_eq!(
            classify(Target::Socketio, relayed),
            Incoming::Relay { sent_ns: 7 }
        );
    }

    #[test]
    fn failures_and_noise_are_told_apart() {
        let error = r#"{"type":"error","code":"invalid_call_state","message":"x"}"#;
        assert!(matches!(classify(Target::Visavis, error), Incoming::Failure(_)));
        assert_eq!(
            classify(Target::Visavis, r#"{"type":"member_joined","member":{}}"#),
            Incoming::Other
        );
        let numbered = r#"{"sn":4,"type":"error","code":"rate_limited","message":"x"}"#;
        assert!(matches!(
            classify(Target::Visavis, numbered),
            Incoming::Failure(_)
        ));
        assert_eq!(json_type(numbered).as_deref(), Some("error"));
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
            visavis_templates(9),
            socketio_templates(),
            peerjs_templates("p-1"),
        ] {
            for (prefix, suffix) in &templates {
                let frame = format!("{prefix}{MARKER}1;xx{suffix}");
                let json = frame.strip_prefix("42").unwrap_or(&frame);
                serde_json::from_str::<Value>(json).unwrap();
            }
        }
    }
}
