//! The selective forwarding unit's core, sans-IO: one str0m `Rtc` per browser (ICE-lite, one
//! UDP address for all), datagrams demultiplexed to sessions in O(1) (by source address once
//! ICE has seen it, by the STUN USERNAME's ufrag before), every publisher's tracks forwarded
//! to every other session of its room, renegotiation when people come and go, keyframe
//! requests throttled per published track, and sessions that fall silent dropped.
//!
//! The edge (`visavis-server`'s `sfu.rs`) owns the socket and the clock: it calls the
//! `handle_*` methods, drains [`Sfu::poll_output`] and sleeps until [`Sfu::poll_timeout`].
//! Descriptions come and go through signalling (`sfu_description`); the browser offers once,
//! then the SFU offers every change, so offers never cross.

mod demux;
mod session;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, IceConnectionState, IceCreds, Input, Output as RtcOutput, Rtc};
use visavis_sansio::{Deadlines, Now};

use session::Session;

pub use demux::stun_local_ufrag;

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
    /// Fewest time between two keyframe requests to one published track.
    pub keyframe_interval: Duration,
    /// Whether the edge takes ICE-TCP on `public_addr`'s port: then every session offers a
    /// passive TCP candidate there too (RFC 6544), for browsers whose UDP is blocked.
    pub ice_tcp: bool,
}

/// Defaults of the flags, defined once.
pub const DEFAULT_PORT: u16 = 3479;
pub const DEFAULT_MAX_SESSIONS: u32 = 500;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 15;
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// How often sessions are checked for silence.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

impl SfuConfig {
    pub fn new(public_addr: SocketAddr) -> Self {
        Self {
            public_addr,
            max_sessions: DEFAULT_MAX_SESSIONS as usize,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
            keyframe_interval: KEYFRAME_INTERVAL,
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
    /// A track was published: forward it to the room.
    Published(Mid),
    /// Media to forward to the room.
    Media(MediaData),
    /// A subscriber wants a keyframe of this publisher's track.
    Keyframe {
        origin: Sid,
        mid: Mid,
        kind: KeyframeRequestKind,
    },
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
    rooms: HashMap<u64, Vec<Sid>>,
    next_room: u64,
    timeouts: Deadlines<Sid>,
    next_sweep: Option<Instant>,
    out: VecDeque<Output>,
    /// Scratch lists reused on the hot path, so forwarding does not allocate.
    props: Vec<(Sid, Propagate)>,
    dirty: Vec<Sid>,
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
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_crypto_provider(self.crypto.clone())
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: random_token(24),
            })
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now.mono);
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
        for &other in peers.iter() {
            if let Some(o) = self.sessions[other].as_ref() {
                for track in o.tracks_in.iter().filter(|t| !t.refused) {
                    session.subscribe(other, o.member, track);
                }
            }
        }
        peers.push(sid);
        self.sessions[sid] = Some(session);
        self.live += 1;
        self.by_ufrag.insert(ufrag, sid);
        self.by_member.insert(member, sid);
        self.out.push_back(Output::Description {
            member,
            kind: SdpKind::Answer,
            sdp: answer.to_sdp_string(),
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
        let opened = session.answered();
        for (origin, mid) in opened {
            self.request_keyframe(now.mono, origin, mid, KeyframeRequestKind::Pli);
            self.dirty.push(origin);
        }
        self.drive(now.mono, sid);
        Ok(())
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
            peers.retain(|s| *s != sid);
            if peers.is_empty() {
                self.rooms.remove(&room);
                self.room_keys.retain(|_, k| *k != room);
            } else {
                for &other in peers.iter() {
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
                        let published = session.publish(added.mid, added.kind, added.direction);
                        if published.is_some() {
                            self.props.push((sid, Propagate::Published(added.mid)));
                        }
                    }
                    Event::MediaData(data) => {
                        match session.admit(data.mid) {
                            session::Admit::Forward => {}
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
                            self.props.push((
                                sid,
                                Propagate::Keyframe {
                                    origin: sid,
                                    mid: data.mid,
                                    kind: KeyframeRequestKind::Pli,
                                },
                            ));
                        }
                        self.props.push((sid, Propagate::Media(data)));
                    }
                    Event::KeyframeRequest(req) => {
                        if let Some((origin, mid)) = session.origin_of(req.mid) {
                            self.props.push((
                                sid,
                                Propagate::Keyframe {
                                    origin,
                                    mid,
                                    kind: req.kind,
                                },
                            ));
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
            Propagate::Media(data) => self.forward(origin, &data),
            Propagate::Keyframe { origin, mid, kind } => {
                self.request_keyframe(now, origin, mid, kind);
                self.dirty.push(origin);
            }
            Propagate::Published(mid) => {
                let Some(session) = self.sessions[origin].as_ref() else {
                    return;
                };
                let room = session.room;
                let member = session.member;
                let Some(track) = session.tracks_in.iter().find(|t| t.mid == mid) else {
                    return;
                };
                let track = session::TrackIn {
                    mid: track.mid,
                    source: track.source,
                    last_keyframe_request: None,
                    refused: false,
                    reported: false,
                };
                let peers = self.rooms.get(&room).map(Vec::len).unwrap_or(0);
                for i in 0..peers {
                    let other = self.rooms[&room][i];
                    if other == origin {
                        continue;
                    }
                    if let Some(o) = self.sessions[other].as_mut() {
                        o.subscribe(origin, member, &track);
                        self.dirty.push(other);
                    }
                }
            }
        }
    }

    /// The hot path: one published packet (a frame) to every subscriber of the room.
    fn forward(&mut self, origin: Sid, data: &MediaData) {
        let Some(room) = self.sessions[origin].as_ref().map(|s| s.room) else {
            return;
        };
        let Some(peers) = self.rooms.get(&room) else {
            return;
        };
        for &other in peers {
            if other == origin {
                continue;
            }
            let Some(session) = self.sessions[other].as_mut() else {
                continue;
            };
            let Some(&mid) = session.out_by_source.get(&(origin, data.mid)) else {
                continue;
            };
            let Some(writer) = session.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
                tracing::debug!(member = session.member, error = %e, "SFU write failed");
                continue;
            }
            self.forwarded_media += 1;
            self.dirty.push(other);
        }
    }

    /// Asks the publisher for a keyframe of one track, at most once a `keyframe_interval`
    /// (every subscriber asks when it starts or loses packets; the publisher needs one).
    fn request_keyframe(&mut self, now: Instant, origin: Sid, mid: Mid, kind: KeyframeRequestKind) {
        let interval = self.config.keyframe_interval;
        let Some(session) = self.sessions.get_mut(origin).and_then(Option::as_mut) else {
            return;
        };
        let Some(track) = session.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.source == Source::Audio
            || track
                .last_keyframe_request
                .is_some_and(|t| now.saturating_duration_since(t) < interval)
        {
            return;
        }
        if let Some(mut writer) = session.rtc.writer(mid) {
            if writer.request_keyframe(None, kind).is_ok() {
                track.last_keyframe_request = Some(now);
            }
        }
    }

    /// For tests: keyframe requests made of a member's published video, so far.
    #[cfg(test)]
    fn last_keyframe_request(&self, member: MemberId) -> Option<Instant> {
        let sid = *self.by_member.get(&member)?;
        let session = self.sessions[sid].as_ref()?;
        session.tracks_in.iter().find_map(|t| t.last_keyframe_request)
    }
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
