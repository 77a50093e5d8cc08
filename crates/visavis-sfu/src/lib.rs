//! The selective forwarding unit's core, sans-IO: one str0m `Rtc` per browser (ICE-lite, one
//! UDP address for all), datagrams demultiplexed to sessions in O(1) (by source address once
//! ICE has seen it, by the STUN USERNAME's ufrag before), every publisher's tracks forwarded
//! to every other session of its room, renegotiation when people come and go, and sessions
//! that fall silent dropped.
//!
//! Cameras come in simulcast layers; each subscriber gets one layer of each (`layers.rs`): the
//! smallest that fills its tile (`sfu_view`), lower while its bandwidth estimate cannot carry
//! them, none for a tile off screen or a camera beyond the room's last N speakers. The active
//! speaker comes from the microphones' audio levels (`speaker.rs`). Keyframe requests are
//! aggregated per published layer: at most one a `keyframe_interval` however many ask.
//!
//! The edge (`visavis-server`'s `sfu.rs`) owns the socket and the clock: it calls the
//! `handle_*` methods, drains [`Sfu::poll_output`] and sleeps until [`Sfu::poll_timeout`].
//! Descriptions come and go through signalling (`sfu_description`); the browser offers once,
//! then the SFU offers every change, so offers never cross.

mod demux;
mod estimate;
mod layers;
mod session;
mod speaker;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaData, Mid, Pt};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};
use visavis_sansio::{Deadlines, Now};

use layers::{Choice, Verdict};
use session::Session;
use speaker::Speakers;

pub use demux::stun_local_ufrag;
pub use layers::View;

/// A member id of the signalling core (`visavis-protocol`'s `MemberId`).
pub type MemberId = u64;

/// A session's slot.
pub(crate) type Sid = usize;

/// The SFU's limits.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// The address browsers reach the SFU at (its one ICE candidate).
    pub public_addr: SocketAddr,
    /// Most sessions at once; more get [`SfuError::Unavailable`] (`--sfu-max-sessions`).
    pub max_sessions: usize,
    /// A session that receives nothing for this long is dropped (`--sfu-idle-timeout`).
    pub idle_timeout: Duration,
    /// Fewest time between two keyframe requests to one published layer.
    pub keyframe_interval: Duration,
    /// Cameras forwarded to a subscriber: those of the most recent speakers (`--sfu-last-n`).
    pub last_n: usize,
    /// Whether the edge takes ICE-TCP on `public_addr`'s port: then every session offers a
    /// passive TCP candidate there too (RFC 6544), for browsers whose UDP is blocked.
    pub ice_tcp: bool,
}

/// Defaults of the flags, defined once.
pub const DEFAULT_PORT: u16 = 3479;
pub const DEFAULT_MAX_SESSIONS: u32 = 500;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 15;
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_LAST_N: u32 = 9;
/// The bandwidth estimate a subscriber starts with, before the loss it reports refines it
/// (`estimate.rs`): enough for a few medium layers.
const INITIAL_ESTIMATE_BPS: u64 = 2_500_000;
/// The bitrate a browser's camera starts at (`x-google-start-bitrate` in our answer), so that
/// all three simulcast layers flow from the start rather than after the browser's bandwidth
/// estimate has crept up for tens of seconds; its estimate lowers it where the network is slow.
const START_BITRATE_KBPS: u32 = 2_000;
/// Opus's payload type in the SFU's SDP (Chromium's too).
const PT_OPUS: u8 = 111;
/// How often sessions are checked for silence.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl SfuConfig {
    pub fn new(public_addr: SocketAddr) -> Self {
        Self {
            public_addr,
            max_sessions: DEFAULT_MAX_SESSIONS as usize,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            keyframe_interval: KEYFRAME_INTERVAL,
            last_n: DEFAULT_LAST_N as usize,
            ice_tcp: false,
        }
    }
}

/// How a datagram came or goes: over the SFU's UDP socket, or framed (RFC 4571) on an ICE-TCP
/// connection to the same port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn protocol(self) -> Protocol {
        match self {
            Self::Udp => Protocol::Udp,
            Self::Tcp => Protocol::Tcp,
        }
    }
}

/// Where a session is reached: the transport and the browser's address on it.
pub(crate) type Route = (Transport, SocketAddr);

/// What a published track is, as the client shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Audio,
    Camera,
    Screen,
}

impl Source {
    /// Every source, for a member who may publish anything.
    pub const ALL: [Source; 3] = [Source::Audio, Source::Camera, Source::Screen];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Camera => "camera",
            Self::Screen => "screen",
        }
    }
}

/// One forwarded track of a session's peer connection: its mid there, and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub mid: String,
    pub member: MemberId,
    pub source: Source,
}

/// `offer` or `answer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    Offer,
    Answer,
}

/// What the edge must do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram (over TCP: framed, on the connection from `destination`).
    Transmit {
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Send this description to the member through signalling (`sfu_description`).
    Description {
        member: MemberId,
        kind: SdpKind,
        sdp: String,
        tracks: Vec<TrackInfo>,
    },
    /// The member's session ended without it leaving (silent past the idle timeout, or its
    /// connection failed).
    Closed { member: MemberId },
    /// `member` became the active speaker of its room's call (`active_speaker`).
    ActiveSpeaker { member: MemberId },
    /// The member sends media of a source it may not publish (its access token's permissions):
    /// none of it is forwarded. Once per track.
    Refused { member: MemberId, source: Source },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SfuError {
    /// The SFU holds `--sfu-max-sessions` sessions (`sfu_unavailable`).
    #[error("the SFU is full")]
    Unavailable,
    /// The SDP could not be parsed or negotiated.
    #[error("bad session description: {0}")]
    BadDescription(String),
    /// An answer with no offer out, or from a member without a session.
    #[error("no offer to answer")]
    NoOffer,
}

/// What one session's output asks of the others.
// Media is by far the most common, and the list of these is reused: boxing it would allocate
// once a packet instead.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Propagate {
    /// A track's first media came: forward it to the room.
    Published(Mid),
    /// Media to forward to the room.
    Media(MediaData),
    /// A subscriber wants a keyframe of this publisher's track (of one layer).
    Keyframe {
        origin: Sid,
        mid: Mid,
        layer: Option<usize>,
        kind: KeyframeRequestKind,
    },
}

/// The sessions of one room's call, and who speaks in it.
#[derive(Debug, Default)]
struct Room {
    sessions: Vec<Sid>,
    speakers: Speakers,
}

/// The SFU.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<CryptoProvider>,
    /// One certificate for every session: making one per browser would cost a key generation
    /// each (the fingerprint is in each answer, so browsers do not care).
    cert: DtlsCert,
    sessions: Vec<Option<Session>>,
    free: Vec<Sid>,
    live: usize,
    by_addr: HashMap<Route, Sid>,
    by_ufrag: HashMap<String, Sid>,
    by_member: HashMap<MemberId, Sid>,
    /// Room name → key, and key → its sessions.
    room_keys: HashMap<String, u64>,
    rooms: HashMap<u64, Room>,
    next_room: u64,
    timeouts: Deadlines<Sid>,
    next_sweep: Option<Instant>,
    out: VecDeque<Output>,
    /// Scratch lists reused on the hot path, so forwarding does not allocate.
    props: Vec<(Sid, Propagate)>,
    dirty: Vec<Sid>,
    /// Keyframes wanted by subscribers switching layers: (publisher, mid, layer).
    wanted: Vec<(Sid, Mid, usize)>,
    /// Sessions whose layers are to be chosen again.
    realloc: Vec<Sid>,
    /// Datagrams forwarded (written to a subscriber), for the benchmark and metrics.
    pub forwarded_media: u64,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("sessions", &self.live)
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// Makes the DTLS certificate, once.
    pub fn new(config: SfuConfig) -> Result<Self, SfuError> {
        let crypto = str0m::crypto::from_feature_flags();
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| SfuError::BadDescription("no DTLS certificate".into()))?;
        Ok(Self {
            config,
            crypto: Arc::new(crypto),
            cert,
            sessions: Vec::new(),
            free: Vec::new(),
            live: 0,
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_member: HashMap::new(),
            room_keys: HashMap::new(),
            rooms: HashMap::new(),
            next_room: 0,
            timeouts: Deadlines::default(),
            next_sweep: None,
            out: VecDeque::new(),
            props: Vec::new(),
            dirty: Vec::new(),
            wanted: Vec::new(),
            realloc: Vec::new(),
            forwarded_media: 0,
        })
    }

    /// Sessions held.
    pub fn sessions(&self) -> usize {
        self.live
    }

    /// A browser's offer for its one peer connection to the SFU, in `room`. Its answer comes
    /// out as [`Output::Description`]; then the SFU offers the room's tracks. A member with a
    /// session already starts over (a reload, or its connection broke).
    pub fn handle_offer(
        &mut self,
        now: Now,
        room: &str,
        member: MemberId,
        sdp: &str,
    ) -> Result<(), SfuError> {
        self.handle_offer_limited(now, room, member, sdp, &Source::ALL)
    }

    /// [`Sfu::handle_offer`] for a member who may publish only `may_publish`: tracks of other
    /// sources are never forwarded (nobody subscribes to them), and media sent on them comes
    /// out once as [`Output::Refused`].
    pub fn handle_offer_limited(
        &mut self,
        now: Now,
        room: &str,
        member: MemberId,
        sdp: &str,
        may_publish: &[Source],
    ) -> Result<(), SfuError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::BadDescription(e.to_string()))?;
        if let Some(&old) = self.by_member.get(&member) {
            self.remove(old);
        }
        if self.live >= self.config.max_sessions {
            return Err(SfuError::Unavailable);
        }
        let ufrag = random_token(8);
        let mut builder = Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(24),
            })
            .clear_codecs()
            .enable_vp8(true)
            // No str0m bandwidth estimate, hence no pacer holding media back to it; the loss
            // each browser reports, every second, makes our estimate instead (`estimate.rs`).
            .set_stats_interval(Some(SWEEP_INTERVAL));
        // Opus with DTX: a silent microphone sends next to nothing, which with many people in
        // a room is most of the audio (NACK and RTX come with str0m's VP8).
        builder.codec_config().add_config(
            Pt::new_with_value(PT_OPUS),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                use_dtx: Some(true),
                ..Default::default()
            },
        );
        let mut rtc = builder.build(now.mono);
        let candidate = Candidate::host(self.config.public_addr, "udp")
            .map_err(|e| SfuError::BadDescription(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        if self.config.ice_tcp {
            let tcp = Candidate::builder()
                .tcp()
                .host(self.config.public_addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| SfuError::BadDescription(e.to_string()))?;
            rtc.add_local_candidate(tcp);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadDescription(e.to_string()))?;

        let room = self.room_key(room);
        let sid = match self.free.pop() {
            Some(sid) => sid,
            None => {
                self.sessions.push(None);
                self.sessions.len() - 1
            }
        };
        let mut session = Session::new(member, room, ufrag.clone(), rtc, now.mono);
        session.may_publish = may_publish.to_vec();
        // Everything the room already publishes goes in the SFU's first offer.
        let peers = self.rooms.entry(room).or_default();
        for &other in peers.sessions.iter() {
            if let Some(o) = self.sessions[other].as_ref() {
                for track in o.tracks_in.iter().filter(|t| t.live) {
                    session.subscribe(other, o.member, track.mid, track.source);
                }
            }
        }
        peers.sessions.push(sid);
        peers.speakers.add(member);
        self.sessions[sid] = Some(session);
        self.live += 1;
        self.by_ufrag.insert(ufrag, sid);
        self.by_member.insert(member, sid);
        self.out.push_back(Output::Description {
            member,
            kind: SdpKind::Answer,
            sdp: with_start_bitrate(&answer.to_sdp_string(), START_BITRATE_KBPS),
            tracks: Vec::new(),
        });
        self.next_sweep.get_or_insert(now.mono + SWEEP_INTERVAL);
        self.drive(now.mono, sid);
        Ok(())
    }

    /// The browser's answer to the SFU's last offer.
    pub fn handle_answer(&mut self, now: Now, member: MemberId, sdp: &str) -> Result<(), SfuError> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadDescription(e.to_string()))?;
        let sid = *self.by_member.get(&member).ok_or(SfuError::NoOffer)?;
        let session = self.session(sid).ok_or(SfuError::NoOffer)?;
        let pending = session.pending.take().ok_or(SfuError::NoOffer)?;
        if let Err(e) = session.rtc.sdp_api().accept_answer(pending, answer) {
            // What the offer carried is offered again.
            session.offer_dropped();
            self.drive(now.mono, sid);
            return Err(SfuError::BadDescription(e.to_string()));
        }
        session.answered();
        // The tracks just opened get their layers, and a keyframe of each.
        self.allocate(now.mono, sid);
        self.drive(now.mono, sid);
        Ok(())
    }

    /// How the member shows the videos it gets (`sfu_view`): each (member, source) told
    /// replaces what was told of it before; the layers are chosen again.
    pub fn handle_view(&mut self, now: Now, member: MemberId, views: &[(MemberId, Source, View)]) {
        let Some(&sid) = self.by_member.get(&member) else {
            return;
        };
        let Some(session) = self.session(sid) else {
            return;
        };
        for &(of, source, view) in views {
            if session.views.len() < session::MAX_VIEWS || session.views.contains_key(&(of, source)) {
                session.views.insert((of, source), view);
            }
        }
        self.allocate(now.mono, sid);
        self.flush(now.mono);
    }

    /// The member left the group call (or the room): its session ends and the others stop
    /// receiving its tracks.
    pub fn handle_leave(&mut self, now: Now, member: MemberId) {
        if let Some(&sid) = self.by_member.get(&member) {
            self.remove(sid);
            self.flush(now.mono);
        }
    }

    /// A datagram arrived on the SFU's UDP socket.
    pub fn handle_datagram(
        &mut self,
        now: Now,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        self.handle_receive(now, Transport::Udp, source, destination, datagram);
    }

    /// A datagram arrived over `transport` (for TCP: one RFC 4571 frame, from the connection
    /// whose remote address is `source`).
    pub fn handle_receive(
        &mut self,
        now: Now,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        let route = (transport, source);
        let sid = match self.by_addr.get(&route) {
            Some(&sid) => sid,
            None => match stun_local_ufrag(datagram).and_then(|u| self.by_ufrag.get(u)) {
                Some(&sid) => sid,
                None => return,
            },
        };
        let Ok(contents) = datagram.try_into() else {
            return;
        };
        let input = Input::Receive(
            now.mono,
            Receive {
                proto: transport.protocol(),
                source,
                destination,
                contents,
            },
        );
        let Some(session) = self.session(sid) else {
            return;
        };
        if !session.rtc.accepts(&input) {
            return;
        }
        session.last_rx = now.mono;
        let new_addr = session.remember_addr(route);
        if let Err(e) = session.rtc.handle_input(input) {
            tracing::debug!(member = session.member, error = %e, "SFU session failed");
            session.rtc.disconnect();
        }
        if new_addr {
            self.by_addr.insert(route, sid);
        }
        self.drive(now.mono, sid);
    }

    /// Drives the sessions whose time has come, and drops those that fell silent.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(sid) = self.timeouts.pop_due(now.mono) {
            if let Some(session) = self.session(sid) {
                if let Err(e) = session.rtc.handle_input(Input::Timeout(now.mono)) {
                    tracing::debug!(member = session.member, error = %e, "SFU session failed");
                    session.rtc.disconnect();
                }
                self.dirty.push(sid);
            }
        }
        if self.next_sweep.is_some_and(|t| t <= now.mono) {
            self.next_sweep = (self.live > 0).then_some(now.mono + SWEEP_INTERVAL);
            let idle = self.config.idle_timeout;
            let silent: Vec<Sid> = (0..self.sessions.len())
                .filter(|&sid| {
                    self.sessions[sid].as_ref().is_some_and(|s| {
                        now.mono.saturating_duration_since(s.last_rx) >= idle || !s.rtc.is_alive()
                    })
                })
                .collect();
            for sid in silent {
                if let Some(member) = self.remove(sid) {
                    self.out.push_back(Output::Closed { member });
                }
            }
            // Estimates, bitrates and active layers were measured anew: choose again.
            for sid in 0..self.sessions.len() {
                if let Some(session) = self.sessions[sid].as_mut() {
                    #[cfg(test)]
                    let pinned = session.estimate_pinned;
                    #[cfg(not(test))]
                    let pinned = false;
                    if !pinned {
                        session.estimate.poll(now.mono);
                    }
                    self.allocate(now.mono, sid);
                }
            }
        }
        self.flush(now.mono);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.timeouts.next(), self.next_sweep) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn session(&mut self, sid: Sid) -> Option<&mut Session> {
        self.sessions.get_mut(sid)?.as_mut()
    }

    fn room_key(&mut self, room: &str) -> u64 {
        if let Some(&key) = self.room_keys.get(room) {
            return key;
        }
        self.next_room += 1;
        self.room_keys.insert(room.to_owned(), self.next_room);
        self.next_room
    }

    /// Ends a session and tells the room's other sessions to stop its tracks. Returns its
    /// member.
    fn remove(&mut self, sid: Sid) -> Option<MemberId> {
        let mut session = self.sessions.get_mut(sid)?.take()?;
        session.rtc.disconnect();
        self.live -= 1;
        self.free.push(sid);
        self.timeouts.remove(sid);
        for addr in &session.addrs {
            self.by_addr.remove(addr);
        }
        self.by_ufrag.remove(&session.ufrag);
        if self.by_member.get(&session.member) == Some(&sid) {
            self.by_member.remove(&session.member);
        }
        let room = session.room;
        if let Some(peers) = self.rooms.get_mut(&room) {
            peers.sessions.retain(|s| *s != sid);
            peers.speakers.remove(session.member);
            if peers.sessions.is_empty() {
                self.rooms.remove(&room);
                self.room_keys.retain(|_, k| *k != room);
            } else {
                for &other in peers.sessions.iter() {
                    if let Some(o) = self.sessions[other].as_mut() {
                        o.unsubscribe(sid);
                        self.dirty.push(other);
                    }
                }
            }
        }
        Some(session.member)
    }

    /// Drives one session, then whatever its output touched.
    fn drive(&mut self, now: Instant, sid: Sid) {
        self.dirty.push(sid);
        self.flush(now);
    }

    /// Polls every dirty session until each waits for time or input, carrying out what they
    /// ask of each other (forwarding, keyframes, new tracks), then offers what changed.
    fn flush(&mut self, now: Instant) {
        // Bounded: every round polls each session to its timeout, and propagation only makes
        // sessions dirty again by writing media into them, which they send on being polled.
        let mut rounds = 0;
        while let Some(sid) = self.dirty.pop() {
            rounds += 1;
            if rounds > 100_000 {
                tracing::warn!("SFU flush did not settle");
                self.dirty.clear();
                break;
            }
            self.poll_session(now, sid);
            let mut props = std::mem::take(&mut self.props);
            for (origin, prop) in props.drain(..) {
                self.propagate(now, origin, prop);
            }
            self.props = props;
            while let Some(sid) = self.realloc.pop() {
                self.allocate(now, sid);
            }
        }
    }

    fn poll_session(&mut self, now: Instant, sid: Sid) {
        let Some(session) = self.sessions.get_mut(sid).and_then(Option::as_mut) else {
            return;
        };
        if let Some((sdp, tracks)) = session.offer() {
            self.out.push_back(Output::Description {
                member: session.member,
                kind: SdpKind::Offer,
                sdp,
                tracks,
            });
        }
        loop {
            if !session.rtc.is_alive() {
                self.timeouts.remove(sid);
                // Dropped at the next sweep.
                self.next_sweep = Some(now);
                return;
            }
            match session.rtc.poll_output() {
                Ok(RtcOutput::Transmit(t)) => self.out.push_back(Output::Transmit {
                    transport: match t.proto {
                        Protocol::Udp => Transport::Udp,
                        _ => Transport::Tcp,
                    },
                    source: t.source,
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(RtcOutput::Timeout(at)) => {
                    self.timeouts.insert(sid, at.max(now));
                    return;
                }
                Ok(RtcOutput::Event(event)) => match event {
                    Event::MediaAdded(added) => {
                        // Offered to the room once media comes on it (`Admit::Publish`).
                        session.publish(added.mid, added.kind, added.direction, added.simulcast.as_ref());
                    }
                    Event::MediaData(data) => {
                        match session.admit(data.mid) {
                            session::Admit::Forward => {}
                            session::Admit::Publish => self.props.push((sid, Propagate::Published(data.mid))),
                            session::Admit::Drop => continue,
                            session::Admit::Report(source) => {
                                self.out.push_back(Output::Refused {
                                    member: session.member,
                                    source,
                                });
                                continue;
                            }
                        }
                        if !data.contiguous {
                            let layer = session
                                .tracks_in
                                .iter()
                                .find(|t| t.mid == data.mid)
                                .and_then(|t| t.layer_of(data.rid));
                            self.props.push((
                                sid,
                                Propagate::Keyframe {
                                    origin: sid,
                                    mid: data.mid,
                                    layer,
                                    kind: KeyframeRequestKind::Pli,
                                },
                            ));
                        }
                        self.props.push((sid, Propagate::Media(data)));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some((origin, mid, layer)) = session.origin_of(req.mid) {
                            self.props.push((
                                sid,
                                Propagate::Keyframe {
                                    origin,
                                    mid,
                                    layer,
                                    kind: req.kind,
                                },
                            ));
                        }
                    }
                    Event::MediaEgressStats(stats) => {
                        if let Some(loss) = stats.loss {
                            session.estimate.handle_loss(loss);
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        // ICE-lite cannot restart on its own; the idle timeout decides.
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(member = session.member, error = %e, "SFU session failed");
                    session.rtc.disconnect();
                }
            }
        }
    }

    fn propagate(&mut self, now: Instant, origin: Sid, prop: Propagate) {
        match prop {
            Propagate::Media(data) => {
                self.forward(now, origin, &data);
                let mut wanted = std::mem::take(&mut self.wanted);
                for (origin, mid, layer) in wanted.drain(..) {
                    self.request_keyframe(now, origin, mid, Some(layer), KeyframeRequestKind::Pli);
                }
                self.wanted = wanted;
            }
            Propagate::Keyframe {
                origin,
                mid,
                layer,
                kind,
            } => self.request_keyframe(now, origin, mid, layer, kind),
            Propagate::Published(mid) => {
                let Some(session) = self.sessions[origin].as_ref() else {
                    return;
                };
                let room = session.room;
                let member = session.member;
                let Some(source) = session.tracks_in.iter().find(|t| t.mid == mid).map(|t| t.source) else {
                    return;
                };
                let peers = self.rooms.get(&room).map_or(0, |r| r.sessions.len());
                for i in 0..peers {
                    let other = self.rooms[&room].sessions[i];
                    if other == origin {
                        continue;
                    }
                    if let Some(o) = self.sessions[other].as_mut() {
                        o.subscribe(origin, member, mid, source);
                        self.dirty.push(other);
                    }
                }
            }
        }
    }

    /// The hot path: one published frame to every subscriber of the room, video in the layer
    /// each gets. A microphone's audio level feeds the room's active speaker.
    fn forward(&mut self, now: Instant, origin: Sid, data: &MediaData) {
        let Some(session) = self.sessions[origin].as_mut() else {
            return;
        };
        let (room, member) = (session.room, session.member);
        let Some(track) = session.tracks_in.iter_mut().find(|t| t.mid == data.mid) else {
            return;
        };
        let video = track.source != Source::Audio;
        let keyframe = video && data.is_keyframe();
        let (layer, resized) = if video {
            let Some(layer) = track.layer_of(data.rid) else {
                return;
            };
            (
                layer,
                track.layers[layer].on_frame(data.network_time, &data.data, keyframe),
            )
        } else {
            (0, false)
        };
        let Some(peers) = self.rooms.get_mut(&room) else {
            return;
        };
        if resized {
            // A layer's size is known now (or changed): the subscribers choose again, rather
            // than at the next sweep.
            self.realloc
                .extend(peers.sessions.iter().copied().filter(|&s| s != origin));
        }
        if !video {
            if let Some(level) = data.ext_vals.audio_level {
                let dbov = level.unsigned_abs().min(127);
                if let Some(speaker) = peers.speakers.handle_level(now, member, dbov) {
                    self.out.push_back(Output::ActiveSpeaker { member: speaker });
                    // The last N changed: every subscriber of the room chooses again.
                    self.realloc.extend(peers.sessions.iter().copied());
                }
            }
        }
        for &other in &peers.sessions {
            if other == origin {
                continue;
            }
            let Some(session) = self.sessions[other].as_mut() else {
                continue;
            };
            let Some(out) = session.out_by_source.get_mut(&(origin, data.mid)) else {
                continue;
            };
            let time = match out.video.as_mut() {
                None => data.time,
                Some(fwd) => match fwd.admit(layer, keyframe, data.time, data.network_time) {
                    Verdict::Forward(time) => time,
                    Verdict::Drop => continue,
                    Verdict::WantKeyframe => {
                        self.wanted.push((origin, data.mid, layer));
                        continue;
                    }
                },
            };
            let Some(writer) = session.rtc.writer(out.mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if let Err(e) = writer.write(pt, data.network_time, time, data.data.clone()) {
                tracing::debug!(member = session.member, error = %e, "SFU write failed");
                continue;
            }
            self.forwarded_media += 1;
            self.dirty.push(other);
        }
    }

    /// Chooses the layer of every video `sid` receives: the one its tile wants (none when off
    /// screen or beyond the last N speakers), stepped down to fit the bandwidth estimate. A
    /// track that needs another layer asks its publisher for a keyframe of it.
    fn allocate(&mut self, now: Instant, sid: Sid) {
        let Some(session) = self.sessions.get(sid).and_then(Option::as_ref) else {
            return;
        };
        let Some(room) = self.rooms.get(&session.room) else {
            return;
        };
        let last_n: Vec<MemberId> = room
            .speakers
            .recent()
            .iter()
            .copied()
            .filter(|m| *m != session.member)
            .take(self.config.last_n)
            .collect();
        let mut keys = Vec::new();
        let mut choices = Vec::new();
        for t in &session.tracks_out {
            if t.source == Source::Audio || !matches!(t.state, session::OutState::Open(_)) {
                continue;
            }
            let Some(origin) = self.sessions.get(t.origin).and_then(Option::as_ref) else {
                continue;
            };
            let Some(track) = origin.tracks_in.iter().find(|x| x.mid == t.origin_mid) else {
                continue;
            };
            let mut view = session
                .views
                .get(&(t.origin_member, t.source))
                .copied()
                .unwrap_or_default();
            if t.source == Source::Camera && !last_n.contains(&t.origin_member) {
                view.visible = false;
            }
            let layer = layers::wanted_layer(&track.layers, view, now);
            let rates = layers::rates(&track.layers, now);
            keys.push((t.origin, t.origin_mid));
            choices.push(Choice { layer, rates });
        }
        layers::fit_budget(&mut choices, session.estimate.bps());
        let Some(session) = self.sessions.get_mut(sid).and_then(Option::as_mut) else {
            return;
        };
        for (key, choice) in keys.into_iter().zip(choices) {
            let Some(fwd) = session.out_by_source.get_mut(&key).and_then(|o| o.video.as_mut()) else {
                continue;
            };
            fwd.target = choice.layer;
            let sending = choice.rates.iter().any(|r| r.is_some_and(|r| r > 0));
            if let Some(layer) = choice.layer.filter(|l| sending && fwd.current != Some(*l)) {
                self.wanted.push((key.0, key.1, layer));
            }
        }
        let mut wanted = std::mem::take(&mut self.wanted);
        for (origin, mid, layer) in wanted.drain(..) {
            self.request_keyframe(now, origin, mid, Some(layer), KeyframeRequestKind::Pli);
        }
        self.wanted = wanted;
    }

    /// Asks the publisher for a keyframe of one layer of a track (`None`: the track's only
    /// or lowest one), at most once a `keyframe_interval` however many subscribers ask.
    fn request_keyframe(
        &mut self,
        now: Instant,
        origin: Sid,
        mid: Mid,
        layer: Option<usize>,
        kind: KeyframeRequestKind,
    ) {
        let interval = self.config.keyframe_interval;
        let Some(session) = self.sessions.get_mut(origin).and_then(Option::as_mut) else {
            return;
        };
        let Some(track) = session.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.source == Source::Audio {
            return;
        }
        let Some(layer) = track.layers.get_mut(layer.unwrap_or(0)) else {
            return;
        };
        if layer
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < interval)
        {
            return;
        }
        if let Some(mut writer) = session.rtc.writer(mid) {
            if writer.request_keyframe(layer.rid, kind).is_ok() {
                layer.last_keyframe_request = Some(now);
                self.dirty.push(origin);
            }
        }
    }

    /// For tests: the bandwidth estimate of a member's session, from now on.
    #[cfg(test)]
    fn set_estimate(&mut self, now: Now, member: MemberId, bps: u64) {
        let sid = self.by_member[&member];
        if let Some(s) = self.session(sid) {
            s.estimate = estimate::LossEstimate::new(bps);
            s.estimate_pinned = true;
        }
        self.allocate(now.mono, sid);
        self.flush(now.mono);
    }

    /// For tests: the room's active speaker.
    #[cfg(test)]
    fn speaker_of(&self, room: &str) -> Option<MemberId> {
        self.rooms.get(self.room_keys.get(room)?)?.speakers.current()
    }

    /// For tests: keyframe requests made of a member's published video, so far.
    #[cfg(test)]
    fn last_keyframe_request(&self, member: MemberId) -> Option<Instant> {
        let sid = *self.by_member.get(&member)?;
        let session = self.sessions[sid].as_ref()?;
        session
            .tracks_in
            .iter()
            .flat_map(|t| &t.layers)
            .filter_map(|l| l.last_keyframe_request)
            .max()
    }
}

/// `sdp` with `x-google-start-bitrate` on its VP8 payload types (Chromium's hint for where its
/// send-side bandwidth estimate starts; others ignore it).
fn with_start_bitrate(sdp: &str, kbps: u32) -> String {
    let vp8: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=rtpmap:"))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, codec)| codec.starts_with("VP8/"))
        .map(|(pt, _)| pt)
        .collect();
    let param = format!("x-google-start-bitrate={kbps}");
    let mut out = String::with_capacity(sdp.len() + 64 * vp8.len());
    for line in sdp.split_inclusive("\r\n") {
        let body = line.trim_end_matches("\r\n");
        if body
            .strip_prefix("a=fmtp:")
            .and_then(|l| l.split_once(' '))
            .is_some_and(|(pt, _)| vp8.contains(&pt))
        {
            out.push_str(&format!("{body};{param}\r\n"));
            continue;
        }
        out.push_str(line);
        if let Some(pt) = body
            .strip_prefix("a=rtpmap:")
            .and_then(|l| l.split_once(' '))
            .map(|(pt, _)| pt)
            .filter(|pt| vp8.contains(pt) && !sdp.contains(&format!("a=fmtp:{pt} ")))
        {
            out.push_str(&format!("a=fmtp:{pt} {param}\r\n"));
        }
    }
    out
}

/// `len` random characters of ICE's alphabet (letters and digits), for ufrag and password.
fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = vec![0u8; len];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the ufrag only routes datagrams (str0m checks the password-keyed
        // integrity), so a clock-seeded fallback still works, if guessably.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> (i % 16 * 8)) as u8 ^ i as u8;
        }
    }
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}
