//! One bot's IO: its signalling connection (joins the room and the group call, carries
//! `sfu_description` both ways) and its UDP socket, driven around a [`Peer`] until its time is
//! up. Many run as tasks of one process.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use str0m::media::Mid;
use tokio::net::UdpSocket;
use visavis_client::Client;
use visavis_protocol::{
    Description, GroupMedia, RoomMsg, SdpKind, ServerMsg, SessionMsg, TrackSource, ViewTrack,
    PROTOCOL_VERSION,
};

use crate::media::Recording;
use crate::peer::{Level, Peer, PeerOut, Shared};
use crate::stats::Totals;

/// How long a bot waits for each step of joining (the room, the call, the SFU's answer).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// A recorder asks for a keyframe this often, so its recording can be entered often.
pub const RECORD_KEYFRAME_EVERY: Duration = Duration::from_secs(1);

/// Frames from a camera track that make it seen (`Meter::seeing`): a second of video.
pub const SEEING_FRAMES: u64 = 30;

/// The bot acknowledges (`pong`) at least this often, ping or not: any message is a sign of
/// life to the server, so a bot stays in even where pings to it come late.
pub const KEEPALIVE: Duration = Duration::from_secs(3);

/// Who speaks when: bot `index` of `count` speaks during its `period` in turn (the audio
/// level it sends says voice), the others are silent.
#[derive(Debug, Clone, Copy)]
pub struct Speak {
    pub index: usize,
    pub count: usize,
    pub period: Duration,
}

impl Speak {
    pub fn level(&self, elapsed: Duration) -> Level {
        let turn = (elapsed.as_millis() / self.period.as_millis().max(1)) as usize;
        if turn % self.count.max(1) == self.index {
            Level::SPEAKING
        } else {
            Level::SILENT
        }
    }
}

/// What every bot of a process adds to as it runs, for a rate over a window of time: packets
/// received, and bots connected now; how many see everyone; and the signal that ends every
/// bot's stay early.
#[derive(Debug, Default)]
pub struct Meter {
    pub packets: std::sync::atomic::AtomicU64,
    pub connected: std::sync::atomic::AtomicUsize,
    /// How many camera tracks a bot must receive (`SEEING_FRAMES` frames each) to count in
    /// `seeing`; 0: nobody counts.
    pub see_cameras: usize,
    /// Bots that have received that many cameras.
    pub seeing: std::sync::atomic::AtomicUsize,
    /// Set to true to end every bot's stay now (SIGTERM): they leave and report as usual.
    pub stop: tokio::sync::watch::Sender<bool>,
}

impl Meter {
    /// When a bot's stay ends: `deadline` (connected) or `connect_by` (not yet), or now
    /// when a stop was asked for.
    pub(crate) fn end(
        &self,
        deadline: Option<tokio::time::Instant>,
        connect_by: tokio::time::Instant,
    ) -> tokio::time::Instant {
        if *self.stop.borrow() {
            tokio::time::Instant::now()
        } else {
            deadline.unwrap_or(connect_by)
        }
    }
}

#[derive(Debug, Clone)]
pub struct BotConfig {
    /// The signalling WebSocket, e.g. `ws://127.0.0.1:8080/ws`.
    pub url: String,
    pub room: String,
    /// An access token for a room that asks for one.
    pub token: Option<String>,
    pub name: String,
    /// The loopback address the bot's TCP and UDP come from.
    pub source: IpAddr,
    /// How long the bot stays in the call once it has joined.
    pub stay: Duration,
    /// What it publishes (`None`: it only listens).
    pub recording: Option<Arc<Recording>>,
    pub speak: Option<Speak>,
    /// Store the first remote camera and microphone received (`visavis-bot record`).
    pub record: bool,
    /// The tile size (width, height) it tells the SFU it shows every camera at (`sfu_view`),
    /// which picks the simulcast layer it gets; `None`: it never tells (a medium tile).
    pub view: Option<(u32, u32)>,
    pub meter: Arc<Meter>,
}

/// A bot's UDP socket on `ip`, with a receive buffer that holds the bursts of a large room
/// while the bot's task waits its turn (a default one overflowed with dozens of bots per core).
pub(crate) async fn bind_udp(ip: IpAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(1024 * 1024);
    Ok(socket)
}

/// What one bot did and saw.
#[derive(Debug, Default)]
pub struct BotReport {
    pub name: String,
    pub member: Option<u64>,
    pub connected: bool,
    /// From start to the SFU's answer, and to ICE and DTLS being up.
    pub answered_ms: Option<u64>,
    pub connected_ms: Option<u64>,
    pub sent_video_frames: u64,
    pub sent_audio_frames: u64,
    pub keyframe_requests: u64,
    pub received: Totals,
    /// The fewest frames received from any one participant's camera.
    pub camera_frames_min: Option<u64>,
    /// Publishers heard (distinct members whose tracks were forwarded to this bot).
    pub publishers: usize,
    pub error: Option<String>,
    pub recording: Option<Recording>,
}

impl BotReport {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "member": self.member,
            "connected": self.connected,
            "answeredMs": self.answered_ms,
            "connectedMs": self.connected_ms,
            "sentVideoFrames": self.sent_video_frames,
            "sentAudioFrames": self.sent_audio_frames,
            "keyframeRequests": self.keyframe_requests,
            "publishers": self.publishers,
            "received": self.received.to_json(),
            "cameraFramesMin": self.camera_frames_min,
            "error": self.error,
        })
    }
}

/// Runs one bot to the end; failures are in the report, not returned.
pub async fn run(shared: Arc<Shared>, config: BotConfig) -> BotReport {
    let mut report = BotReport {
        name: config.name.clone(),
        ..BotReport::default()
    };
    if let Err(e) = run_inner(&shared, &config, &mut report).await {
        report.error = Some(format!("{e:#}"));
    }
    report
}

async fn step<T>(what: &str, f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
}

async fn run_inner(shared: &Shared, config: &BotConfig, report: &mut BotReport) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut client = step("the WebSocket", async {
        Ok(Client::connect_from(&config.url, Some(config.source)).await?)
    })
    .await?;
    client
        .send(SessionMsg::Join {
            version: PROTOCOL_VERSION,
            room: config.room.clone(),
            name: config.name.clone(),
            host_key: None,
            access_token: config.token.clone(),
        })
        .await?;
    let me = step("joined", async {
        loop {
            match client.recv().await? {
                ServerMsg::Joined { you, .. } => return Ok(you.id),
                ServerMsg::Error { code, message, .. } => anyhow::bail!("join refused: {code:?}: {message}"),
                _ => {}
            }
        }
    })
    .await?;
    report.member = Some(me);
    client.send(RoomMsg::GroupJoin).await?;
    let call_id = step("group_call", async {
        loop {
            match client.recv().await? {
                ServerMsg::GroupCall(call) if call.participants.contains(&me) => {
                    anyhow::ensure!(
                        call.media == GroupMedia::Sfu,
                        "the group call is a mesh, not through the SFU"
                    );
                    return Ok(call.call_id);
                }
                ServerMsg::Error { code, message, .. } => {
                    anyhow::bail!("group_join refused: {code:?}: {message}")
                }
                _ => {}
            }
        }
    })
    .await?;

    let socket = bind_udp(config.source).await?;
    let local = socket.local_addr()?;
    let (mut peer, offer) = Peer::new(shared, Instant::now(), local, config.recording.clone(), true)?;
    if config.record {
        peer.recorder = Some(Default::default());
    }
    client
        .send(RoomMsg::SfuDescription {
            call_id,
            description: Description::new(SdpKind::Offer, &offer),
        })
        .await?;

    let mut buf = vec![0u8; 2048];
    let mut deadline: Option<tokio::time::Instant> = None;
    let answer_by = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut publishers = std::collections::HashSet::new();
    let mut next_pli = Instant::now() + RECORD_KEYFRAME_EVERY;
    let mut last_pong = Instant::now();
    let mut counted = 0;
    let mut stop = config.meter.stop.subscribe();
    let mut seeing = false;
    loop {
        // Drive the peer: send what it has, learn when to come back.
        let wake = pump(&mut peer, &socket)?;
        let packets = peer.packets_received;
        config.meter.packets.fetch_add(packets - counted, Relaxed);
        counted = packets;
        if peer.is_connected() && report.connected_ms.is_none() {
            config.meter.connected.fetch_add(1, Relaxed);
            report.connected = true;
            report.connected_ms = Some(start.elapsed().as_millis() as u64);
            deadline = Some(tokio::time::Instant::now() + config.stay);
        }
        let cameras = config.meter.see_cameras;
        if !seeing && cameras > 0 && peer.cameras_receiving(SEEING_FRAMES) >= cameras {
            seeing = true;
            config.meter.seeing.fetch_add(1, Relaxed);
        }
        if let Some(speak) = config.speak {
            peer.level = speak.level(start.elapsed());
        }
        if config.record && Instant::now() >= next_pli {
            peer.request_keyframes();
            next_pli = Instant::now() + RECORD_KEYFRAME_EVERY;
        }
        client.pong_if_due().await?;
        if last_pong.elapsed() >= KEEPALIVE {
            client.pong().await?;
            last_pong = Instant::now();
        }
        let end = config.meter.end(deadline, answer_by);
        if tokio::time::Instant::now() >= end {
            anyhow::ensure!(deadline.is_some(), "ICE and DTLS to the SFU did not come up");
            break;
        }
        let wake_at = tokio::time::Instant::from_std(wake).min(end);
        tokio::select! {
            received = client.read_received() => {
                let received = received?;
                match received.msg {
                    ServerMsg::SfuDescription { description, tracks, .. } => {
                        if let Some((width, height)) = config.view {
                            let cameras = tracks.iter().filter(|t| t.source == TrackSource::Camera);
                            let views = cameras.map(|t| ViewTrack {
                                member: t.member,
                                source: t.source,
                                width,
                                height,
                                visible: true,
                            });
                            client.send(RoomMsg::SfuView { call_id, tracks: views.collect() }).await?;
                        }
                        for t in &tracks {
                            publishers.insert(t.member);
                            peer.name_track(
                                Mid::from(t.mid.as_str()),
                                t.source != TrackSource::Audio,
                                t.source == TrackSource::Camera,
                            );
                        }
                        let (kind, sdp) = description
                            .decode()
                            .ok_or_else(|| anyhow::anyhow!("an sfu_description without SDP"))?;
                        match kind {
                            SdpKind::Answer => {
                                peer.handle_answer(&sdp)?;
                                report.answered_ms.get_or_insert(start.elapsed().as_millis() as u64);
                            }
                            SdpKind::Offer => {
                                let answer = peer.handle_offer(&sdp)?;
                                client
                                    .send(RoomMsg::SfuDescription {
                                        call_id,
                                        description: Description::new(SdpKind::Answer, &answer),
                                    })
                                    .await?;
                            }
                            _ => {}
                        }
                    }
                    ServerMsg::Error { code, message, .. } => {
                        anyhow::bail!("the server refused: {code:?}: {message}")
                    }
                    _ => {}
                }
            }
            r = socket.recv_from(&mut buf) => {
                let (n, from) = r?;
                // A datagram str0m does not take (a stray STUN, say) is not the bot's end.
                let _ = peer.handle_datagram(Instant::now(), from, &buf[..n]);
            }
            _ = tokio::time::sleep_until(wake_at) => {}
            _ = stop.changed() => {}
        }
    }

    if report.connected {
        config.meter.connected.fetch_sub(1, Relaxed);
    }
    report.sent_video_frames = peer.sent_video_frames;
    report.sent_audio_frames = peer.sent_audio_frames;
    report.keyframe_requests = peer.keyframe_requests;
    report.received = peer.totals();
    report.camera_frames_min = peer.camera_frames_min();
    report.publishers = publishers.len();
    if let Some((recorder, ..)) = peer.recorder.take() {
        report.recording = Some(recorder.recording);
    }
    peer.close();
    let _ = client.send(RoomMsg::GroupLeave).await;
    let _ = client.close(1000).await;
    Ok(())
}

/// Drives `peer` now: sends what it has; returns when it wants to be driven next.
pub(crate) fn pump(peer: &mut Peer, socket: &UdpSocket) -> anyhow::Result<Instant> {
    loop {
        match peer.poll(Instant::now())? {
            PeerOut::Transmit {
                destination,
                contents,
                ..
            } => {
                // A full socket buffer drops the datagram, as the network would.
                let _ = socket.try_send_to(&contents, destination);
            }
            PeerOut::Wait(at) => return Ok(at),
        }
    }
}
