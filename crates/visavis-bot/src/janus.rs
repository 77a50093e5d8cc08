//! The same bot against Janus's videoroom plugin (Janus 1.1.2, Debian's `janus`), through
//! Janus's WebSocket API, so a benchmark can put the same load on both servers. Janus's model
//! differs from the SFU's: a publisher's connection carries its own media up, and a
//! subscriber's connection (Janus offers it, the bot answers) carries every other publisher's
//! media down — two peer connections a bot, where visavis needs one.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::bot::{pump, BotConfig, BotReport, STEP_TIMEOUT};
use crate::peer::{Peer, Shared};

/// Janus ends a session that sends nothing for 60 s; keep-alives go out more often.
const KEEPALIVE: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A Janus session over one WebSocket: requests with transactions, events kept for later.
struct Session {
    ws: Ws,
    id: u64,
    next: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

impl Session {
    async fn connect(url: &str, source: std::net::IpAddr) -> anyhow::Result<Self> {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let host = request.uri().host().unwrap_or("127.0.0.1");
        let addr = SocketAddr::new(host.parse()?, request.uri().port_u16().unwrap_or(8188));
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(addr).await?;
        let (ws, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
        let mut session = Self { ws, id: 0, next: 1 };
        let created = session.call(json!({"janus": "create"})).await?;
        session.id = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("Janus did not make a session: {created}"))?;
        Ok(session)
    }

    async fn send(&mut self, mut msg: Value) -> anyhow::Result<String> {
        let transaction = format!("t{}", self.next);
        self.next += 1;
        msg["transaction"] = json!(transaction);
        if self.id != 0 {
            msg["session_id"] = json!(self.id);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        Ok(transaction)
    }

    async fn recv(&mut self) -> anyhow::Result<Value> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text)?),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => anyhow::bail!("Janus closed the WebSocket"),
            }
        }
    }

    /// Sends `msg` and waits for its answer (an event for plugin messages; `ack`s are skipped).
    async fn call(&mut self, msg: Value) -> anyhow::Result<Value> {
        let transaction = self.send(msg).await?;
        tokio::time::timeout(STEP_TIMEOUT, async {
            loop {
                let reply = self.recv().await?;
                if reply["transaction"] != json!(transaction) || reply["janus"] == "ack" {
                    continue;
                }
                if reply["janus"] == "error" || !reply["plugindata"]["data"]["error"].is_null() {
                    anyhow::bail!("Janus refused: {reply}");
                }
                return Ok(reply);
            }
        })
        .await
        .map_err(|_| anyhow::anyhow!("Janus did not answer in time"))?
    }

    async fn attach(&mut self) -> anyhow::Result<u64> {
        let attached = self
            .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        attached["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("Janus did not attach: {attached}"))
    }

    async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut msg = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        self.call(msg).await
    }

    /// Tells Janus our candidates are all in the SDP already.
    async fn candidates_done(&mut self, handle: u64) -> anyhow::Result<()> {
        self.send(json!({"janus": "trickle", "handle_id": handle, "candidate": {"completed": true}}))
            .await?;
        Ok(())
    }
}

/// Runs one bot in Janus videoroom `room`: it publishes (when it has a recording) and, once
/// `feeds` other publishers are in the room, subscribes to all of them.
pub async fn run(shared: Arc<Shared>, config: BotConfig, room: u64, feeds: usize) -> BotReport {
    let mut report = BotReport {
        name: config.name.clone(),
        ..BotReport::default()
    };
    if let Err(e) = run_inner(&shared, &config, room, feeds, &mut report).await {
        report.error = Some(format!("{e:#}"));
    }
    report
}

async fn run_inner(
    shared: &Shared,
    config: &BotConfig,
    room: u64,
    feeds: usize,
    report: &mut BotReport,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut janus = Session::connect(&config.url, config.source).await?;
    let mut me = None;
    let mut publisher = None;
    if let Some(recording) = &config.recording {
        let handle = janus.attach().await?;
        let joined = janus
            .message(
                handle,
                json!({"request": "join", "ptype": "publisher", "room": room, "display": config.name}),
                None,
            )
            .await?;
        me = joined["plugindata"]["data"]["id"].as_u64();
        report.member = me;
        let socket = crate::bot::bind_udp(config.source).await?;
        let (mut peer, offer) = Peer::new(
            shared,
            Instant::now(),
            socket.local_addr()?,
            Some(recording.clone()),
            false,
        )?;
        let answer = janus
            .message(
                handle,
                json!({"request": "publish", "audio": true, "video": true}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        let sdp = answer["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("Janus did not answer the publisher's offer: {answer}"))?;
        peer.handle_answer(sdp)?;
        janus.candidates_done(handle).await?;
        report.answered_ms = Some(start.elapsed().as_millis() as u64);
        publisher = Some((peer, Arc::new(socket)));
    }

    // Wait for the other publishers, then subscribe to every one in one connection.
    let mut subscriber = None;
    if feeds > 0 {
        let handle = janus.attach().await?;
        let wait_until = Instant::now() + STEP_TIMEOUT * 3;
        let ids = loop {
            let listed = janus
                .message(handle, json!({"request": "listparticipants", "room": room}), None)
                .await?;
            let ids: Vec<u64> = listed["plugindata"]["data"]["participants"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["publisher"].as_bool() == Some(true))
                .filter_map(|p| p["id"].as_u64())
                .filter(|id| Some(*id) != me)
                .collect();
            if ids.len() >= feeds {
                break ids;
            }
            anyhow::ensure!(
                Instant::now() < wait_until,
                "only {} of {feeds} publishers came",
                ids.len()
            );
            // Keep our own connection going meanwhile (Janus lists a publisher once its
            // media is up).
            for _ in 0..10 {
                if let Some((peer, socket)) = &mut publisher {
                    let mut buf = [0u8; 2048];
                    while let Ok((n, from)) = socket.try_recv_from(&mut buf) {
                        let _ = peer.handle_datagram(Instant::now(), from, &buf[..n]);
                    }
                    pump(peer, socket)?;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        report.publishers = ids.len();
        let streams: Vec<Value> = ids.iter().map(|id| json!({"feed": id})).collect();
        let attached = janus
            .message(
                handle,
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        let sdp = attached["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("Janus offered no subscription: {attached}"))?;
        let socket = crate::bot::bind_udp(config.source).await?;
        let mut peer = Peer::answerer(shared, Instant::now(), socket.local_addr()?);
        peer.count_unnamed_video_as_camera();
        let answer = peer.handle_offer(sdp)?;
        janus
            .message(
                handle,
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        janus.candidates_done(handle).await?;
        subscriber = Some((peer, Arc::new(socket)));
    }

    // The sockets apart from the peers, so a read can wait while the peer is driven.
    let pub_socket = publisher.as_ref().map(|(_, s)| s.clone());
    let sub_socket = subscriber.as_ref().map(|(_, s)| s.clone());
    let mut pub_buf = vec![0u8; 2048];
    let mut sub_buf = vec![0u8; 2048];
    let mut deadline: Option<tokio::time::Instant> = None;
    let connect_by = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut keepalive = Instant::now() + KEEPALIVE;
    let mut counted = 0;
    let mut stop = config.meter.stop.subscribe();
    loop {
        let mut wake = Instant::now() + Duration::from_secs(1);
        let mut all_up = true;
        let mut packets = 0;
        for (peer, socket) in [&mut publisher, &mut subscriber].into_iter().flatten() {
            wake = wake.min(pump(peer, socket)?);
            all_up &= peer.is_connected();
            packets += peer.packets_received;
        }
        config.meter.packets.fetch_add(packets - counted, Relaxed);
        counted = packets;
        if all_up && deadline.is_none() {
            config.meter.connected.fetch_add(1, Relaxed);
            report.connected = true;
            report.connected_ms = Some(start.elapsed().as_millis() as u64);
            deadline = Some(tokio::time::Instant::now() + config.stay);
        }
        if Instant::now() >= keepalive {
            janus.send(json!({"janus": "keepalive"})).await?;
            keepalive = Instant::now() + KEEPALIVE;
        }
        let end = config.meter.end(deadline, connect_by);
        if tokio::time::Instant::now() >= end {
            anyhow::ensure!(deadline.is_some(), "ICE and DTLS to Janus did not come up");
            break;
        }
        let wake_at = tokio::time::Instant::from_std(wake).min(end);
        tokio::select! {
            msg = janus.recv() => { msg?; } // events (webrtcup, media, slowlink): nothing to do
            r = recv(pub_socket.as_ref(), &mut pub_buf) => {
                if let (Some((peer, _)), Ok((n, from))) = (&mut publisher, r) {
                    let _ = peer.handle_datagram(Instant::now(), from, &pub_buf[..n]);
                }
            }
            r = recv(sub_socket.as_ref(), &mut sub_buf) => {
                if let (Some((peer, _)), Ok((n, from))) = (&mut subscriber, r) {
                    let _ = peer.handle_datagram(Instant::now(), from, &sub_buf[..n]);
                }
            }
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = stop.changed() => {}
        }
    }
    if report.connected {
        config.meter.connected.fetch_sub(1, Relaxed);
    }
    if let Some((peer, _)) = &publisher {
        report.sent_video_frames = peer.sent_video_frames;
        report.sent_audio_frames = peer.sent_audio_frames;
        report.keyframe_requests = peer.keyframe_requests;
    }
    if let Some((peer, _)) = &subscriber {
        report.received = peer.totals();
        report.camera_frames_min = peer.camera_frames_min();
    }
    let _ = janus.send(json!({"janus": "destroy"})).await;
    let _ = janus.ws.close(None).await;
    Ok(())
}

/// A datagram on `socket`; never ready when there is no such socket.
async fn recv(socket: Option<&Arc<UdpSocket>>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
