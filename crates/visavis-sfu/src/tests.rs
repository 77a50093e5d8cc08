//! Scenario tests on a fake clock: browsers played by str0m clients (full ICE, as a browser
//! is), datagrams passed by hand between them and the SFU, no sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use visavis_sansio::Now;

use super::*;

const SFU: &str = "10.0.0.1:3479";
const STEP: Duration = Duration::from_millis(5);
/// The simulcast layers test browsers send, lowest first, with their sizes.
const RIDS: [&str; 3] = ["q", "h", "f"];
const SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// A browser: one peer connection to the SFU, publishing a microphone and a camera.
struct Client {
    member: MemberId,
    addr: SocketAddr,
    /// Reaches the SFU over ICE-TCP only (its one candidate is an active TCP one).
    tcp: bool,
    rtc: Rtc,
    pending: Option<SdpPendingOffer>,
    audio: Mid,
    video: Mid,
    /// Media frames received, by the SFU's track info of their mid.
    received: HashMap<(MemberId, Source), usize>,
    /// Video frames received by the layer they were sent in (written in the frame).
    layers: HashMap<(MemberId, Source), [usize; 3]>,
    /// The RTP time of the last frame per mid, and how often it went back or leapt (> 1 s).
    times: HashMap<String, u64>,
    time_jumps: usize,
    /// The SFU's last word on which mid carries what.
    tracks: Vec<TrackInfo>,
    connected: bool,
    /// Publishes its camera in three layers.
    simulcast: bool,
    /// Layers the SFU asked a keyframe of (by rid; `None` without simulcast).
    keyframe_asked: Vec<Option<Rid>>,
    keyframe_requests: usize,
    /// The microphone's level, dB under full scale (127: silence).
    level: u8,
    /// Sends nothing on the tracks it offered (a listener, or camera and microphone off).
    silent: bool,
    /// Once connected, one datagram from the SFU in this many is lost on the way (0: none).
    lose_every: usize,
    datagrams: usize,
}

struct World {
    now: Now,
    sfu: Sfu,
    clients: Vec<Client>,
    crypto: Arc<CryptoProvider>,
    /// Active speakers the SFU announced, in order.
    speakers: Vec<MemberId>,
    /// Steps sent so far (the clients' media clock).
    frames: u32,
    /// What the SFU refused to forward, as it reported it.
    refused: Vec<(MemberId, Source)>,
    /// The longest description the SFU sent, and that description.
    longest: String,
}

impl World {
    fn new(config: impl FnOnce(&mut SfuConfig)) -> Self {
        let mut cfg = SfuConfig::new(SFU.parse().unwrap());
        config(&mut cfg);
        Self {
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_800_000_000_000,
            },
            sfu: Sfu::new(cfg).unwrap(),
            clients: Vec::new(),
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            speakers: Vec::new(),
            frames: 0,
            refused: Vec::new(),
            longest: String::new(),
        }
    }

    /// A browser joins `room`'s call: offers its microphone and camera.
    fn join(&mut self, room: &str, member: MemberId) -> Result<usize, SfuError> {
        self.join_with(room, member, false, &Source::ALL)
    }

    /// [`World::join`] for a member who may publish only `may_publish` (it sends its
    /// microphone and camera all the same, as a hostile client would).
    fn join_limited(
        &mut self,
        room: &str,
        member: MemberId,
        may_publish: &[Source],
    ) -> Result<usize, SfuError> {
        self.join_as(room, member, may_publish, false)
    }

    /// A browser joins, its camera in three simulcast layers or one.
    fn join_with(
        &mut self,
        room: &str,
        member: MemberId,
        simulcast: bool,
        may_publish: &[Source],
    ) -> Result<usize, SfuError> {
        self.join_full(room, member, simulcast, may_publish, false)
    }

    fn join_as(
        &mut self,
        room: &str,
        member: MemberId,
        may_publish: &[Source],
        tcp: bool,
    ) -> Result<usize, SfuError> {
        self.join_full(room, member, false, may_publish, tcp)
    }

    fn join_full(
        &mut self,
        room: &str,
        member: MemberId,
        simulcast: bool,
        may_publish: &[Source],
        tcp: bool,
    ) -> Result<usize, SfuError> {
        let addr: SocketAddr = format!("10.0.1.{}:5000", member).parse().unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(self.now.mono);
        let candidate = if tcp {
            Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Active)
                .build()
                .unwrap()
        } else {
            Candidate::host(addr, "udp").unwrap()
        };
        rtc.add_local_candidate(candidate);
        let mut change = rtc.sdp_api();
        let audio = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let layers = simulcast.then(|| {
            let mut s = Simulcast::new();
            for rid in RIDS {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let (offer, pending) = change.apply().unwrap();
        self.sfu
            .handle_offer_limited(self.now, room, member, &offer.to_sdp_string(), may_publish)?;
        self.clients.push(Client {
            member,
            addr,
            tcp,
            rtc,
            pending: Some(pending),
            audio,
            video,
            received: HashMap::new(),
            layers: HashMap::new(),
            times: HashMap::new(),
            time_jumps: 0,
            tracks: Vec::new(),
            connected: false,
            simulcast,
            keyframe_asked: Vec::new(),
            keyframe_requests: 0,
            level: 127,
            silent: false,
            lose_every: 0,
            datagrams: 0,
        });
        self.pump();
        Ok(self.clients.len() - 1)
    }

    fn leave(&mut self, member: MemberId) {
        let i = self.clients.iter().position(|c| c.member == member).unwrap();
        let c = self.clients.remove(i);
        self.sfu.handle_leave(self.now, c.member);
        self.pump();
    }

    /// Carries the SFU's outputs to the clients and the clients' to the SFU until all is quiet.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(out) = self.sfu.poll_output() {
                busy = true;
                match out {
                    Output::Transmit {
                        transport,
                        source,
                        destination,
                        contents,
                    } => {
                        if let Some(c) = self.clients.iter_mut().find(|c| c.addr == destination) {
                            assert_eq!(transport == Transport::Tcp, c.tcp, "the way it came");
                            c.datagrams += 1;
                            if c.connected && c.lose_every > 0 && c.datagrams % c.lose_every == 0 {
                                continue;
                            }
                            let input = Input::Receive(
                                self.now.mono,
                                Receive {
                                    proto: transport.protocol(),
                                    source,
                                    destination,
                                    contents: contents.as_slice().try_into().unwrap(),
                                },
                            );
                            c.rtc.handle_input(input).unwrap();
                        }
                    }
                    Output::Description {
                        member,
                        kind,
                        sdp,
                        tracks,
                    } => {
                        let Some(c) = self.clients.iter_mut().find(|c| c.member == member) else {
                            continue;
                        };
                        c.tracks = tracks;
                        if sdp.len() > self.longest.len() {
                            self.longest = sdp.clone();
                        }
                        match kind {
                            SdpKind::Answer => {
                                let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                                let pending = c.pending.take().unwrap();
                                c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
                            }
                            SdpKind::Offer => {
                                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                                let answer = c.rtc.sdp_api().accept_offer(offer).unwrap();
                                self.sfu
                                    .handle_answer(self.now, member, &answer.to_sdp_string())
                                    .unwrap();
                            }
                        }
                    }
                    Output::Closed { .. } => {}
                    Output::ActiveSpeaker { member } => self.speakers.push(member),
                    Output::Refused { member, source } => self.refused.push((member, source)),
                }
            }
            let sfu_addr: SocketAddr = SFU.parse().unwrap();
            for c in &mut self.clients {
                loop {
                    match c.rtc.poll_output().unwrap() {
                        RtcOutput::Transmit(t) => {
                            busy = true;
                            if t.destination == sfu_addr {
                                let transport = match t.proto {
                                    Protocol::Udp => Transport::Udp,
                                    _ => Transport::Tcp,
                                };
                                self.sfu.handle_receive(
                                    self.now,
                                    transport,
                                    t.source,
                                    t.destination,
                                    &t.contents,
                                );
                            }
                        }
                        RtcOutput::Timeout(_) => break,
                        RtcOutput::Event(Event::Connected) => c.connected = true,
                        RtcOutput::Event(Event::MediaData(d)) => {
                            let mid = d.mid.to_string();
                            if let Some(t) = c.tracks.iter().find(|t| t.mid == mid) {
                                *c.received.entry((t.member, t.source)).or_default() += 1;
                                if t.source != Source::Audio {
                                    let layer = if d.data[0] & 1 == 0 { d.data[10] } else { d.data[1] };
                                    c.layers.entry((t.member, t.source)).or_default()[usize::from(layer)] +=
                                        1;
                                    let time = d.time.numer();
                                    if let Some(last) = c.times.insert(mid, time) {
                                        if time <= last || time - last > 90_000 {
                                            c.time_jumps += 1;
                                        }
                                    }
                                }
                            }
                        }
                        RtcOutput::Event(Event::KeyframeRequest(r)) => {
                            c.keyframe_requests += 1;
                            c.keyframe_asked.push(r.rid);
                        }
                        RtcOutput::Event(_) => {}
                    }
                }
            }
            if !busy {
                return;
            }
        }
        panic!("pump did not settle");
    }

    /// Lets `d` pass in steps, every client sending a camera frame and an audio frame each
    /// step once connected.
    fn run(&mut self, d: Duration, send: bool) {
        let end = self.now.mono + d;
        while self.now.mono < end {
            self.now = self.now.after(STEP);
            self.frames += 1;
            let n = self.frames;
            for c in &mut self.clients {
                c.rtc.handle_input(Input::Timeout(self.now.mono)).unwrap();
                if send && c.connected && !c.silent {
                    send_frames(c, self.now.mono, n);
                }
            }
            if self.sfu.poll_timeout().is_some_and(|t| t <= self.now.mono) {
                self.sfu.handle_timeout(self.now);
            }
            self.pump();
        }
    }

    fn client(&self, member: MemberId) -> &Client {
        self.clients.iter().find(|c| c.member == member).unwrap()
    }
}

/// One VP8 frame (per layer) and one Opus frame; only the frame's first bytes matter to
/// forwarding: a keyframe (bit 0 of byte 0 clear, every 2 s or when asked) carries the VP8
/// size header and its layer at byte 10, an interframe its layer at byte 1.
fn send_frames(c: &mut Client, now: Instant, n: u32) {
    let video_pt = pt_of(c, c.video, Codec::Vp8);
    let audio_pt = pt_of(c, c.audio, Codec::Opus);
    let layers: &[Option<&str>] = if c.simulcast {
        &[Some("q"), Some("h"), Some("f")]
    } else {
        &[None]
    };
    for (i, rid) in layers.iter().enumerate() {
        let Some(pt) = video_pt else { break };
        let rid = rid.map(Rid::from);
        let asked = c.keyframe_asked.contains(&rid);
        let mut data = vec![0x11u8; 300];
        data[1] = i as u8;
        if n % 400 == 1 || asked {
            c.keyframe_asked.retain(|r| *r != rid);
            let (w, h) = SIZES[if c.simulcast { i } else { 2 }];
            data[..6].copy_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            data[6..8].copy_from_slice(&w.to_le_bytes());
            data[8..10].copy_from_slice(&h.to_le_bytes());
            data[10] = i as u8;
        }
        // Each layer has its own RTP time base, as in browsers.
        let time = MediaTime::new(
            u64::from(n) * 90_000 / 200 + i as u64 * 1_000_000,
            str0m::media::Frequency::NINETY_KHZ,
        );
        let Some(mut writer) = c.rtc.writer(c.video) else {
            break;
        };
        if let Some(rid) = rid {
            writer = writer.rid(rid);
        }
        writer.write(pt, now, time, data).unwrap();
    }
    if let (Some(pt), Some(writer)) = (audio_pt, c.rtc.writer(c.audio)) {
        let time = MediaTime::new(
            u64::from(n) * 48_000 / 200,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
        );
        let level = c.level;
        writer
            .audio_level(-(level as i8), level < 127)
            .write(pt, now, time, vec![0x11u8; 80])
            .unwrap();
    }
}

fn pt_of(c: &mut Client, mid: Mid, codec: Codec) -> Option<str0m::media::Pt> {
    let writer = c.rtc.writer(mid)?;
    let pt = writer.payload_params().find(|p| p.spec().codec == codec)?.pt();
    Some(pt)
}

#[test]
fn three_people_each_receive_the_other_two() {
    let mut w = World::new(|_| {});
    w.join("r", 1).unwrap();
    w.join("r", 2).unwrap();
    w.join("r", 3).unwrap();
    w.run(Duration::from_secs(2), true);
    for me in [1, 2, 3] {
        let c = w.client(me);
        assert!(c.connected, "{me} connected");
        for other in [1, 2, 3].into_iter().filter(|o| *o != me) {
            for source in [Source::Audio, Source::Camera] {
                let got = c.received.get(&(other, source)).copied().unwrap_or(0);
                assert!(got > 50, "{me} got {got} {source:?} frames of {other}");
            }
        }
        assert!(
            !c.received.contains_key(&(me, Source::Camera)),
            "no echo of one's own camera"
        );
        assert_eq!(c.tracks.len(), 4, "two tracks of each other person");
    }
    assert_eq!(w.sfu.sessions(), 3);
}

#[test]
fn rooms_are_apart() {
    let mut w = World::new(|_| {});
    w.join("a", 1).unwrap();
    w.join("b", 2).unwrap();
    w.run(Duration::from_secs(1), true);
    assert!(w.client(1).received.is_empty());
    assert!(w.client(2).received.is_empty());
    assert!(w.client(1).tracks.is_empty());
}

#[test]
fn a_browser_without_udp_reaches_the_sfu_over_ice_tcp() {
    let mut w = World::new(|c| c.ice_tcp = true);
    w.join("r", 1).unwrap();
    w.join_as("r", 2, &Source::ALL, true).unwrap();
    w.run(Duration::from_secs(2), true);
    for (me, other) in [(1, 2), (2, 1)] {
        let c = w.client(me);
        assert!(c.connected, "{me} connected");
        for source in [Source::Audio, Source::Camera] {
            let got = c.received.get(&(other, source)).copied().unwrap_or(0);
            assert!(got > 50, "{me} got {got} {source:?} frames of {other}");
        }
    }
}

#[test]
fn without_ice_tcp_a_tcp_only_browser_does_not_connect() {
    let mut w = World::new(|_| {});
    w.join_as("r", 2, &Source::ALL, true).unwrap();
    w.run(Duration::from_secs(1), true);
    assert!(!w.client(2).connected);
}

#[test]
fn media_a_member_may_not_publish_is_not_forwarded_and_is_reported_once() {
    let mut w = World::new(|_| {});
    w.join("r", 1).unwrap();
    // Member 2's token allows its microphone only; it sends its camera anyway.
    w.join_limited("r", 2, &[Source::Audio]).unwrap();
    w.join("r", 3).unwrap();
    w.run(Duration::from_secs(2), true);
    for me in [1, 3] {
        let c = w.client(me);
        assert!(
            c.received.get(&(2, Source::Audio)).is_some_and(|n| *n > 50),
            "{me} hears 2"
        );
        assert!(
            !c.received.contains_key(&(2, Source::Camera)),
            "{me} never gets 2's camera"
        );
        assert!(
            !c.tracks
                .iter()
                .any(|t| t.member == 2 && t.source == Source::Camera),
            "{me} is not even offered 2's camera"
        );
    }
    assert!(
        w.client(2)
            .received
            .get(&(1, Source::Camera))
            .is_some_and(|n| *n > 50),
        "2 still sees 1"
    );
    assert_eq!(w.refused, vec![(2, Source::Camera)]);
}

#[test]
fn leaving_stops_the_tracks_at_the_others_and_joining_adds_them() {
    let mut w = World::new(|_| {});
    w.join("r", 1).unwrap();
    w.join("r", 2).unwrap();
    w.join("r", 3).unwrap();
    w.run(Duration::from_secs(1), true);
    assert_eq!(w.client(1).tracks.len(), 4);
    w.leave(2);
    w.run(Duration::from_millis(200), true);
    let c1 = w.client(1);
    assert_eq!(c1.tracks.len(), 2, "only 3's tracks are left");
    assert!(c1.tracks.iter().all(|t| t.member == 3));
    w.join("r", 4).unwrap();
    w.run(Duration::from_secs(1), true);
    assert_eq!(w.client(4).tracks.len(), 4, "the late joiner gets 1 and 3");
    assert!(
        w.client(4)
            .received
            .get(&(1, Source::Camera))
            .copied()
            .unwrap_or(0)
            > 20
    );
    assert!(
        w.client(1)
            .received
            .get(&(4, Source::Camera))
            .copied()
            .unwrap_or(0)
            > 20
    );
    assert_eq!(w.sfu.sessions(), 3);
}

#[test]
fn a_track_is_offered_to_the_others_once_media_comes_on_it() {
    let mut w = World::new(|_| {});
    for m in 1..=2 {
        w.join("r", m).unwrap();
    }
    // 3 offers a microphone and a camera but sends nothing: a listener.
    let listener = w.join("r", 3).unwrap();
    w.clients[listener].silent = true;
    w.run(Duration::from_secs(2), true);
    for m in [1, 2] {
        assert!(
            w.client(m).tracks.iter().all(|t| t.member != 3),
            "{m} gets no m-line for a track nothing comes on"
        );
    }
    assert!(w.count(3, 1, Source::Audio) > 50, "the listener hears the others");
    // 3 starts sending: its tracks go to the others.
    w.clients[listener].silent = false;
    w.run(Duration::from_secs(2), true);
    for m in [1, 2] {
        assert!(w.count(m, 3, Source::Audio) > 50, "{m} hears 3");
        assert!(w.count(m, 3, Source::Camera) > 50, "{m} sees 3");
    }
}

#[test]
fn the_session_limit_refuses_with_unavailable() {
    let mut w = World::new(|c| c.max_sessions = 2);
    w.join("r", 1).unwrap();
    w.join("r", 2).unwrap();
    assert_eq!(w.join("r", 3).err(), Some(SfuError::Unavailable));
    w.leave(1);
    assert!(w.join("r", 3).is_ok(), "a seat freed");
}

#[test]
fn a_silent_session_is_dropped_after_the_idle_timeout() {
    let mut w = World::new(|c| c.idle_timeout = Duration::from_secs(3));
    w.join("r", 1).unwrap();
    w.join("r", 2).unwrap();
    w.run(Duration::from_secs(1), true);
    // 2's network goes away: it still runs, but nothing of it reaches the SFU.
    let gone = w.clients.iter().position(|c| c.member == 2).unwrap();
    w.clients[gone].addr = "10.9.9.9:1".parse().unwrap();
    let c = w.clients.remove(gone);
    w.run(Duration::from_secs(5), true);
    assert_eq!(w.sfu.sessions(), 1);
    assert!(w.client(1).tracks.is_empty(), "2's tracks were stopped at 1");
    drop(c);
}

#[test]
fn bad_descriptions_are_refused() {
    let mut w = World::new(|_| {});
    assert!(matches!(
        w.sfu.handle_offer(w.now, "r", 1, "not sdp"),
        Err(SfuError::BadDescription(_))
    ));
    w.join("r", 1).unwrap();
    // 1 has answered everything: an answer now answers nothing.
    assert!(w.sfu.handle_answer(w.now, 1, "v=0").is_err());
    assert_eq!(w.sfu.sessions(), 1, "the session lives on");
}

#[test]
fn keyframe_requests_reach_the_publisher_at_most_once_a_second() {
    let mut w = World::new(|_| {});
    w.join("r", 1).unwrap();
    w.join("r", 2).unwrap();
    w.run(Duration::from_millis(500), true);
    let first = w
        .sfu
        .last_keyframe_request(1)
        .expect("a keyframe was asked for 2's new track");
    // Newcomers within the second each want one: the publisher is not asked again.
    for m in 3..6 {
        w.join("r", m).unwrap();
        w.run(Duration::from_millis(100), true);
    }
    assert_eq!(w.sfu.last_keyframe_request(1), Some(first));
    w.run(Duration::from_secs(1), true);
    w.join("r", 6).unwrap();
    w.run(Duration::from_millis(200), true);
    let later = w.sfu.last_keyframe_request(1).unwrap();
    assert!(
        later.duration_since(first) >= KEYFRAME_INTERVAL,
        "asked again after the interval"
    );
}

fn view(height: u32, visible: bool) -> View {
    View {
        width: height * 16 / 9,
        height,
        visible,
    }
}

impl World {
    fn layers(&self, me: MemberId, of: MemberId) -> [usize; 3] {
        self.client(me)
            .layers
            .get(&(of, Source::Camera))
            .copied()
            .unwrap_or_default()
    }

    /// Frames `me` received of `of`'s `source`.
    fn count(&self, me: MemberId, of: MemberId, source: Source) -> usize {
        self.client(me).received.get(&(of, source)).copied().unwrap_or(0)
    }

    fn clear_counts(&mut self) {
        for c in &mut self.clients {
            c.layers.clear();
            c.received.clear();
        }
    }
}

#[test]
fn simulcast_one_layer_per_subscriber_by_tile_size_switching_on_keyframes_with_time_running_on() {
    let mut w = World::new(|_| {});
    for m in 1..=3 {
        w.join_with("r", m, true, &Source::ALL).unwrap();
    }
    // 2 shows 1 small, 3 shows 1 large.
    w.sfu
        .handle_view(w.now, 2, &[(1, Source::Camera, view(90, true))]);
    // (2 small at 3, so that the two fit in the bandwidth estimate.)
    w.sfu.handle_view(
        w.now,
        3,
        &[
            (1, Source::Camera, view(720, true)),
            (2, Source::Camera, view(90, true)),
        ],
    );
    w.run(Duration::from_secs(2), true);
    let [q, h, f] = w.layers(2, 1);
    assert!(
        q > 100 && h == 0 && f == 0,
        "2 gets 1's lowest layer only: {q} {h} {f}"
    );
    let [q, h, f] = w.layers(3, 1);
    assert!(f > 100 && h == 0, "3 gets 1's top layer: {q} {h} {f}");
    assert!(q < 50, "at most until the top layer's first keyframe: {q}");
    // 2's tile grows: it switches up on a keyframe asked of that layer.
    let asked = w.client(1).keyframe_requests;
    w.clear_counts();
    w.sfu
        .handle_view(w.now, 2, &[(1, Source::Camera, view(360, true))]);
    w.run(Duration::from_millis(500), true);
    assert!(w.client(1).keyframe_requests > asked, "a keyframe was asked of 1");
    w.clear_counts();
    w.run(Duration::from_millis(500), true);
    let [q, h, f] = w.layers(2, 1);
    assert!(
        h > 50 && q == 0 && f == 0,
        "2 now gets the middle layer: {q} {h} {f}"
    );
    for c in &w.clients {
        assert_eq!(c.time_jumps, 0, "{}'s RTP time ran on across switches", c.member);
    }
}

#[test]
fn a_hidden_tile_gets_no_video_and_resumes_when_shown() {
    let mut w = World::new(|_| {});
    for m in 1..=2 {
        w.join_with("r", m, true, &Source::ALL).unwrap();
    }
    w.run(Duration::from_secs(1), true);
    assert!(w.layers(2, 1).iter().sum::<usize>() > 50);
    w.sfu
        .handle_view(w.now, 2, &[(1, Source::Camera, view(720, false))]);
    w.run(Duration::from_millis(100), true);
    w.clear_counts();
    w.run(Duration::from_secs(1), true);
    assert_eq!(w.layers(2, 1), [0, 0, 0], "no video for a hidden tile");
    assert!(
        w.client(2)
            .received
            .get(&(1, Source::Audio))
            .copied()
            .unwrap_or(0)
            > 100,
        "the audio goes on"
    );
    w.sfu
        .handle_view(w.now, 2, &[(1, Source::Camera, view(720, true))]);
    w.run(Duration::from_secs(1), true);
    assert!(w.layers(2, 1)[2] > 50, "back, in the top layer");
}

/// Three people publishing simulcast, 3 showing 1 and 2 in large tiles, 2 s on.
fn large_tiles_at_3() -> World {
    let mut w = World::new(|_| {});
    for m in 1..=3 {
        w.join_with("r", m, true, &Source::ALL).unwrap();
    }
    let large = [
        (1, Source::Camera, view(720, true)),
        (2, Source::Camera, view(720, true)),
    ];
    w.sfu.handle_view(w.now, 3, &large);
    w.run(Duration::from_secs(2), true);
    w
}

#[test]
fn a_low_bandwidth_estimate_steps_layers_down() {
    let mut w = large_tiles_at_3();
    assert!(
        w.layers(3, 1)[2] > 50 && w.layers(3, 2)[2] > 50,
        "large tiles get the top: {:?} {:?}",
        w.layers(3, 1),
        w.layers(3, 2)
    );
    // 300 kbit/s carries two low layers only.
    w.sfu.set_estimate(w.now, 3, 300_000);
    w.run(Duration::from_millis(300), true);
    w.clear_counts();
    w.run(Duration::from_secs(1), true);
    for of in [1, 2] {
        let [q, h, f] = w.layers(3, of);
        assert!(q > 50 && h == 0 && f == 0, "3 gets {of}'s lowest: {q} {h} {f}");
        assert!(
            w.layers(2, of)[1] > 50 || of == 2,
            "2's estimate is untouched (medium tiles)"
        );
    }
}

#[test]
fn a_subscriber_whose_path_loses_packets_gets_lower_layers() {
    let mut w = large_tiles_at_3();
    assert!(w.layers(3, 1)[2] > 50, "large tiles get the top");
    // Half of what goes to 3 is lost (its receiver reports say about 40 % once NACKs have
    // repaired what they can): its estimate falls by a fifth a second, under what two top
    // layers take, and its tiles step down.
    let i = w.clients.iter().position(|c| c.member == 3).unwrap();
    w.clients[i].lose_every = 2;
    w.run(Duration::from_secs(15), true);
    w.clear_counts();
    w.run(Duration::from_secs(1), true);
    for of in [1, 2] {
        let [_, _, f] = w.layers(3, of);
        assert_eq!(f, 0, "3 no longer gets {of}'s top layer: {:?}", w.layers(3, of));
    }
    assert!(
        w.layers(2, 1)[1] > 50,
        "2's path is fine: a medium tile, a medium layer"
    );
}

#[test]
fn the_active_speaker_is_announced_and_only_the_last_n_speakers_cameras_are_forwarded() {
    let mut w = World::new(|c| c.last_n = 1);
    for m in 1..=3 {
        w.join_with("r", m, false, &Source::ALL).unwrap();
    }
    w.clients[1].level = 20; // 2 speaks
    w.run(Duration::from_secs(2), true);
    assert_eq!(w.speakers, vec![2]);
    assert_eq!(w.sfu.speaker_of("r"), Some(2));
    w.clear_counts();
    w.run(Duration::from_secs(1), true);
    assert!(w.layers(1, 2)[0] > 50, "1 sees 2, the last speaker");
    assert_eq!(w.layers(1, 3), [0, 0, 0], "not 3, beyond the last 1");
    assert!(w.layers(3, 2)[0] > 50);
    // 2 falls silent, 3 speaks.
    w.clients[1].level = 127;
    w.clients[2].level = 25;
    w.run(Duration::from_secs(2), true);
    assert_eq!(w.speakers, vec![2, 3]);
    // The test browsers' str0m hands over frames it had buffered for a while after the switch.
    w.run(Duration::from_secs(1), true);
    w.clear_counts();
    w.run(Duration::from_secs(1), true);
    assert!(w.layers(1, 3)[0] > 50, "1 now sees 3");
    assert_eq!(w.layers(1, 2), [0, 0, 0]);
    assert!(w.layers(3, 2)[0] > 50, "3's last other speaker is 2");
    for c in &w.clients {
        for other in [1, 2, 3].into_iter().filter(|o| *o != c.member) {
            assert!(
                c.received.get(&(other, Source::Audio)).copied().unwrap_or(0) > 100,
                "all audio flows"
            );
        }
    }
}

#[test]
fn the_answer_asks_for_opus_dtx() {
    let mut w = World::new(|_| {});
    let mut rtc = Rtc::builder()
        .set_crypto_provider(w.crypto.clone())
        .build(w.now.mono);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _) = change.apply().unwrap();
    w.sfu.handle_offer(w.now, "r", 1, &offer.to_sdp_string()).unwrap();
    let Some(Output::Description { sdp, .. }) = w.sfu.poll_output() else {
        panic!("an answer")
    };
    assert!(sdp.contains("usedtx=1"), "{sdp}");
    assert!(sdp.contains("ssrc-audio-level"), "audio levels negotiated");
}

#[test]
fn the_answer_starts_browsers_cameras_at_a_bitrate_for_all_layers() {
    let sdp = "v=0\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP8/90000\r\na=fmtp:98 x=1\r\n";
    assert_eq!(
        with_start_bitrate(sdp, 2000),
        "v=0\r\na=rtpmap:96 VP8/90000\r\na=fmtp:96 x-google-start-bitrate=2000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:98 VP8/90000\r\na=fmtp:98 x=1;x-google-start-bitrate=2000\r\n"
    );
}

/// `cargo test --release -p visavis-sfu forwarding_benchmark -- --ignored --nocapture`:
/// datagrams forwarded per second of this thread's time, 1 publisher of camera and microphone
/// to 9 subscribers (the clients' own work is left out of the time).
#[test]
#[ignore = "benchmark"]
fn forwarding_benchmark() {
    let mut w = World::new(|_| {});
    for m in 1..=10 {
        w.join("r", m).unwrap();
    }
    // Media first, so that every track is offered and forwarded (and keyframes went through).
    w.run(Duration::from_secs(2), true);
    let sfu_addr: SocketAddr = SFU.parse().unwrap();
    // Record the publisher's datagrams once, then replay them timed.
    let mut datagrams = Vec::new();
    let publisher = w.clients.iter().position(|c| c.member == 1).unwrap();
    for n in 0..2000u32 {
        w.now = w.now.after(STEP);
        let c = &mut w.clients[publisher];
        c.rtc.handle_input(Input::Timeout(w.now.mono)).unwrap();
        send_frames(c, w.now.mono, w.frames + n + 1);
        while let Ok(out) = c.rtc.poll_output() {
            match out {
                RtcOutput::Transmit(t) if t.destination == sfu_addr => {
                    datagrams.push((t.source, t.contents.to_vec()))
                }
                RtcOutput::Timeout(_) => break,
                _ => {}
            }
        }
    }
    let before = w.sfu.forwarded_media;
    let mut sent = 0u64;
    let start = Instant::now();
    for (i, (source, datagram)) in datagrams.iter().enumerate() {
        // The recording's own pace (two datagrams a step), the SFU's timers run as they fall due.
        if i % 2 == 0 {
            w.now = w.now.after(STEP);
            if w.sfu.poll_timeout().is_some_and(|t| t <= w.now.mono) {
                w.sfu.handle_timeout(w.now);
            }
        }
        w.sfu.handle_datagram(w.now, *source, sfu_addr, datagram);
        while let Some(out) = w.sfu.poll_output() {
            if matches!(out, Output::Transmit { .. }) {
                sent += 1;
            }
        }
    }
    let elapsed = start.elapsed();
    let forwarded = w.sfu.forwarded_media - before;
    println!(
        "forwarding_benchmark: {} datagrams in, {forwarded} frames forwarded, {sent} datagrams out in {:.3} s: {:.0} datagrams out/s",
        datagrams.len(),
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64()
    );
    assert!(forwarded > 0);
}
