//! The SFU's edge: one UDP socket, ICE-TCP on the same port number (`sfu_tcp.rs`) and one
//! task drive `visavis_sfu::Sfu`. What the room core says about SFU calls (a participant's
//! `sfu_description`, someone leaving the call) comes in as [`Command`]s over a channel from
//! the hub's event hook, which must not block; what the SFU has to say (its descriptions, the
//! active speaker) goes out as [`Report`]s, which the room core turns into messages. The edge
//! runs in this process, or in an SFU worker process (`sfu_worker.rs`) that outlives it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use visavis_protocol::{CallId, Description, MemberId, Publish, SdpKind, SfuTrack, TrackSource, ViewTrack};
use visavis_room::{Core, Event};
use visavis_sansio::Now;
use visavis_sfu::{Output, Sfu, SfuConfig, SfuError, Source, Transport, View};

use crate::hub::Hub;
use crate::sfu_tcp::{TcpEvent, TcpLimits};
use crate::Settings;

/// Datagrams read in one go before the task looks at its other inputs again.
const BATCH: usize = 64;
/// Largest datagram taken (a WebRTC packet stays under the path MTU; 1500 on Ethernet).
const MAX_DATAGRAM: usize = 2048;

/// The SFU's settings, from the command line; an SFU worker is adopted by a new process only
/// when they are the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SfuSettings {
    pub listen: SocketAddr,
    pub public_ip: Option<IpAddr>,
    pub tcp_per_ip: u32,
    pub tcp_max: u32,
    pub idle_timeout: u64,
    pub max_sessions: u32,
    pub last_n: u32,
}

impl SfuSettings {
    /// The SFU's settings, if `settings` run one.
    pub fn of(settings: &Settings) -> Option<Self> {
        Some(Self {
            listen: settings.sfu_listen()?,
            public_ip: settings.public_ip,
            tcp_per_ip: settings.sfu_tcp_per_ip,
            tcp_max: settings.sfu_tcp_max,
            idle_timeout: settings.sfu_idle_timeout,
            max_sessions: settings.sfu_max_sessions,
            last_n: settings.sfu_last_n,
        })
    }
}

/// What the room core tells the SFU.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Command {
    Description {
        room: String,
        call_id: CallId,
        member: MemberId,
        kind: SdpKind,
        sdp: String,
        publish: Publish,
    },
    View {
        member: MemberId,
        tracks: Vec<ViewTrack>,
    },
    Left {
        member: MemberId,
    },
}

/// What the SFU tells the room core.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    /// The SFU's description for a member (`sfu_description`).
    Deliver {
        member: MemberId,
        call_id: CallId,
        kind: SdpKind,
        sdp: String,
        tracks: Vec<SfuTrack>,
    },
    ActiveSpeaker {
        member: MemberId,
    },
    /// The member sends media its token does not allow (`not_permitted`).
    NotPermitted {
        member: MemberId,
        source: String,
    },
    /// The SFU could not take the member's offer (`sfu_unavailable`).
    Refused {
        member: MemberId,
        message: String,
    },
}

impl Report {
    pub fn apply(self, core: &mut Core) {
        match self {
            Report::Deliver {
                member,
                call_id,
                kind,
                sdp,
                tracks,
            } => core.sfu_deliver(member, call_id, Description::new(kind, &sdp), tracks),
            Report::ActiveSpeaker { member } => core.sfu_active_speaker(member),
            Report::NotPermitted { member, source } => core.sfu_not_permitted(member, &source),
            Report::Refused { member, message } => core.sfu_refused(member, &message),
        }
    }
}

/// The room core's side of the SFU: [`Report`]s applied to the hub as they come.
pub async fn apply_reports(hub: Arc<Hub>, mut reports: mpsc::UnboundedReceiver<Report>) {
    while let Some(report) = reports.recv().await {
        hub.api(|core, _| report.apply(core));
    }
}

/// Hands room events to the SFU (its task here, or the link to a worker); cheap to clone into
/// the hub's event hook.
#[derive(Debug, Clone)]
pub struct SfuHandle {
    tx: mpsc::UnboundedSender<Command>,
}

impl SfuHandle {
    pub fn new(tx: mpsc::UnboundedSender<Command>) -> Self {
        Self { tx }
    }

    /// Called under the hub's lock: only passes the event on.
    pub fn handle_event(&self, event: &Event) {
        let command = match event {
            Event::SfuDescription {
                room,
                call_id,
                member,
                kind,
                sdp,
                publish,
            } => Command::Description {
                room: room.clone(),
                call_id: *call_id,
                member: *member,
                kind: *kind,
                sdp: sdp.clone(),
                publish: *publish,
            },
            Event::SfuView { member, tracks, .. } => Command::View {
                member: *member,
                tracks: tracks.clone(),
            },
            Event::GroupLeft { member, .. } => Command::Left { member: *member },
            _ => return,
        };
        // The receiver ends only at shutdown, when nobody needs the SFU any more.
        let _ = self.tx.send(command);
    }
}

/// The bound sockets and the SFU, until the hub exists to start them with.
#[derive(Debug)]
pub struct SfuEdge {
    socket: UdpSocket,
    /// ICE-TCP, unless `--sfu-tcp-per-ip 0`.
    tcp: Option<(TcpListener, TcpLimits)>,
    sfu: Sfu,
    public_addr: SocketAddr,
    /// Sessions held, as of the last turn of the task (for a worker deciding to stay).
    sessions: Arc<AtomicUsize>,
}

impl SfuEdge {
    /// Binds the SFU's socket at `listen`; its candidate advertises `--public-ip` (or the
    /// listen IP, or this machine's outbound address when that is unspecified).
    pub async fn bind(settings: &SfuSettings) -> anyhow::Result<Self> {
        let listen = settings.listen;
        let (socket, tcp_listener) = bind_both(listen, settings.tcp_per_ip > 0).await?;
        let bound = socket.local_addr()?;
        let ip = match settings.public_ip {
            Some(ip) => ip,
            None if !bound.ip().is_unspecified() => bound.ip(),
            None => crate::ice::outbound_ip(bound.is_ipv6()).context(
                "--sfu-listen is unspecified and this machine's address could not be found; set --public-ip",
            )?,
        };
        let public_addr = SocketAddr::new(ip, bound.port());
        let tcp = tcp_listener.map(|listener| {
            let limits = TcpLimits {
                per_ip: settings.tcp_per_ip as usize,
                total: settings.tcp_max as usize,
                idle: Duration::from_secs(settings.idle_timeout),
            };
            (listener, limits)
        });
        let mut config = SfuConfig::new(public_addr);
        config.ice_tcp = tcp.is_some();
        config.max_sessions = settings.max_sessions as usize;
        config.idle_timeout = Duration::from_secs(settings.idle_timeout);
        config.last_n = settings.last_n as usize;
        let sfu = Sfu::new(config).map_err(|e| anyhow::anyhow!("SFU: {e}"))?;
        tracing::info!(
            "SFU on udp {bound}{}, advertised as {public_addr}",
            if tcp.is_some() { " and tcp (ICE-TCP)" } else { "" }
        );
        Ok(Self {
            socket,
            tcp,
            sfu,
            public_addr,
            sessions: Arc::default(),
        })
    }

    /// How many sessions the SFU holds, kept up to date while it runs.
    pub fn sessions(&self) -> Arc<AtomicUsize> {
        self.sessions.clone()
    }

    /// The address in the SFU's candidates.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Runs the SFU until `shutdown`, taking `commands`, giving `reports`.
    pub fn spawn(
        mut self,
        commands: mpsc::UnboundedReceiver<Command>,
        reports: mpsc::UnboundedSender<Report>,
        shutdown: CancellationToken,
    ) {
        let (events, tcp_rx) = mpsc::channel(crate::sfu_tcp::INBOX_FRAMES);
        if let Some((listener, limits)) = self.tcp.take() {
            tokio::spawn(crate::sfu_tcp::accept(listener, limits, events, shutdown.clone()));
        }
        tokio::spawn(self.run(commands, reports, tcp_rx, shutdown));
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        reports: mpsc::UnboundedSender<Report>,
        mut tcp_rx: mpsc::Receiver<TcpEvent>,
        shutdown: CancellationToken,
    ) {
        let mut calls: HashMap<MemberId, CallId> = HashMap::new();
        // ICE-TCP connections by the browser's address: where frames for it go.
        let mut tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = self.sfu.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                command = commands.recv() => match command {
                    Some(command) => self.command(command, &mut calls, &reports),
                    None => break,
                },
                read = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = read {
                        let now = Now::system();
                        self.sfu.handle_datagram(now, source, self.public_addr, &buf[..n]);
                        // Take what else is waiting before looking at the clock and commands.
                        for _ in 1..BATCH {
                            let Ok((n, source)) = self.socket.try_recv_from(&mut buf) else { break };
                            self.sfu.handle_datagram(now, source, self.public_addr, &buf[..n]);
                        }
                    }
                }
                Some(event) = tcp_rx.recv() => {
                let now = Now::system();
                match event {
                    TcpEvent::Opened { peer, outbox } => {
                        tcp.insert(peer, outbox);
                    }
                    TcpEvent::Frame { peer, data } => {
                        self.sfu.handle_receive(now, Transport::Tcp, peer, self.public_addr, &data);
                    }
                    TcpEvent::Closed { peer } => {
                        tcp.remove(&peer);
                    }
                }
            }
                () = sleep => {}
            }
            let now = Now::system();
            if self.sfu.poll_timeout().is_some_and(|at| at <= now.mono) {
                self.sfu.handle_timeout(now);
            }
            self.drain(&mut calls, &tcp, &reports);
            self.sessions.store(self.sfu.sessions(), Ordering::Relaxed);
        }
    }

    fn command(
        &mut self,
        command: Command,
        calls: &mut HashMap<MemberId, CallId>,
        reports: &mpsc::UnboundedSender<Report>,
    ) {
        let now = Now::system();
        match command {
            Command::Description {
                room,
                call_id,
                member,
                kind,
                sdp,
                publish,
            } => {
                calls.insert(member, call_id);
                let result = match kind {
                    SdpKind::Offer => {
                        let may = may_publish(publish);
                        self.sfu.handle_offer_limited(now, &room, member, &sdp, &may)
                    }
                    _ => self.sfu.handle_answer(now, member, &sdp),
                };
                match result {
                    Ok(()) => {}
                    Err(SfuError::Unavailable) => {
                        let _ = reports.send(Report::Refused {
                            member,
                            message: "the SFU holds as many calls as it may; try later".into(),
                        });
                    }
                    Err(e) => tracing::debug!(member, error = %e, "SFU refused a description"),
                }
            }
            Command::View { member, tracks } => {
                let views: Vec<_> = tracks
                    .iter()
                    .map(|t| {
                        let view = View {
                            width: t.width,
                            height: t.height,
                            visible: t.visible,
                        };
                        (t.member, source_of(t.source), view)
                    })
                    .collect();
                self.sfu.handle_view(now, member, &views);
            }
            Command::Left { member } => {
                calls.remove(&member);
                self.sfu.handle_leave(now, member);
            }
        }
    }

    fn drain(
        &mut self,
        calls: &mut HashMap<MemberId, CallId>,
        tcp: &HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
        reports: &mpsc::UnboundedSender<Report>,
    ) {
        while let Some(out) = self.sfu.poll_output() {
            match out {
                Output::Transmit {
                    transport: Transport::Udp,
                    destination,
                    contents,
                    ..
                } => {
                    let _ = self.socket.try_send_to(&contents, destination);
                }
                Output::Transmit {
                    transport: Transport::Tcp,
                    destination,
                    contents,
                    ..
                } => {
                    // A full outbox drops the packet, as a congested UDP path would.
                    if let Some(outbox) = tcp.get(&destination) {
                        let _ = outbox.try_send(contents);
                    }
                }
                Output::Description {
                    member,
                    kind,
                    sdp,
                    tracks,
                } => {
                    let Some(&call_id) = calls.get(&member) else {
                        continue;
                    };
                    let kind = match kind {
                        visavis_sfu::SdpKind::Offer => SdpKind::Offer,
                        visavis_sfu::SdpKind::Answer => SdpKind::Answer,
                    };
                    let tracks = tracks
                        .into_iter()
                        .map(|t| SfuTrack {
                            mid: t.mid,
                            member: t.member,
                            source: match t.source {
                                Source::Audio => TrackSource::Audio,
                                Source::Camera => TrackSource::Camera,
                                Source::Screen => TrackSource::Screen,
                            },
                        })
                        .collect();
                    let _ = reports.send(Report::Deliver {
                        member,
                        call_id,
                        kind,
                        sdp,
                        tracks,
                    });
                }
                Output::Closed { member } => {
                    tracing::info!(member, "SFU session ended: nothing heard from the browser");
                }
                Output::ActiveSpeaker { member } => {
                    let _ = reports.send(Report::ActiveSpeaker { member });
                }
                Output::Refused { member, source } => {
                    tracing::info!(
                        member,
                        source = source.as_str(),
                        "SFU refused media the member may not send"
                    );
                    let _ = reports.send(Report::NotPermitted {
                        member,
                        source: source.as_str().into(),
                    });
                }
            }
        }
    }
}

fn source_of(source: TrackSource) -> Source {
    match source {
        TrackSource::Audio => Source::Audio,
        TrackSource::Camera => Source::Camera,
        TrackSource::Screen => Source::Screen,
    }
}

/// The sources a member's permissions let it publish through the SFU.
fn may_publish(publish: Publish) -> Vec<Source> {
    [
        (publish.audio, Source::Audio),
        (publish.video, Source::Camera),
        (publish.screen, Source::Screen),
    ]
    .into_iter()
    .filter_map(|(may, source)| may.then_some(source))
    .collect()
}

/// Binds the SFU's UDP socket at `listen` and, with `tcp`, a TCP listener on the same port
/// number (with buffers wide enough for bursts, [`widen_buffers`]). For port 0 the port is the UDP socket's: when TCP has that port taken already,
/// another is tried (a few times).
/// Asks for socket buffers that hold a burst: every browser's media comes to this one socket,
/// and while the SFU renegotiates a room (a join costs every member an offer), a default
/// 208 KiB receive buffer overflowed and took newcomers' ICE checks with it (bots in a 25-person
/// room failed to connect). The kernel caps the size at `net.core.rmem_max` / `wmem_max`.
fn widen_buffers(socket: &UdpSocket) {
    const WANTED: usize = 8 * 1024 * 1024;
    let sock = socket2::SockRef::from(socket);
    let _ = sock.set_recv_buffer_size(WANTED);
    let _ = sock.set_send_buffer_size(WANTED);
    // Linux reports twice what it grants (bookkeeping included).
    let granted = sock.recv_buffer_size().unwrap_or(0) / 2;
    if granted < WANTED / 2 {
        tracing::warn!(
            "SFU: the UDP receive buffer is {} KiB; raise net.core.rmem_max (to {} or more) so bursts are not dropped",
            granted / 1024,
            WANTED
        );
    }
}

async fn bind_both(listen: SocketAddr, tcp: bool) -> anyhow::Result<(UdpSocket, Option<TcpListener>)> {
    const TRIES: usize = 20;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let socket = UdpSocket::bind(listen).await.with_context(|| {
            format!("cannot bind the SFU to udp {listen}: set --sfu-listen, or --group-media mesh")
        })?;
        widen_buffers(&socket);
        if !tcp {
            return Ok((socket, None));
        }
        let bound = socket.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(listener) => return Ok((socket, Some(listener))),
            Err(e) if listen.port() == 0 && attempt < TRIES => {
                tracing::debug!(error = %e, "SFU: tcp {bound} taken, trying another port");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot bind the SFU's ICE-TCP to tcp {bound}: free that port, or --sfu-tcp-per-ip 0"
                    )
                })
            }
        }
    }
}
