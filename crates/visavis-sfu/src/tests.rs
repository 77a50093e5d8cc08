//! Scenario tests on a fake clock: browsers played by str0m clients (full ICE, as a browser
//! is), datagrams passed by hand between them and the SFU, no sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::CryptoProvider;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use visavis_sansio::Now;

use super::*;

const SFU: &str = "10.0.0.1:3479";
const STEP: Duration = Duration::from_millis(5);

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
    /// The SFU's last word on which mid carries what.
    tracks: Vec<TrackInfo>,
    connected: bool,
}

struct World {
    now: Now,
    sfu: Sfu,
    clients: Vec<Client>,
    crypto: Arc<CryptoProvider>,
    /// What the SFU refused to forward, as it reported it.
    refused: Vec<(MemberId, Source)>,
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
            refused: Vec::new(),
        }
    }

    /// A browser joins `room`'s call: offers its microphone and camera.
    fn join(&mut self, room: &str, member: MemberId) -> Result<usize, SfuError> {
        self.join_limited(room, member, &Source::ALL)
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

    fn join_as(
        &mut self,
        room: &str,
        member: MemberId,
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
        let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
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
            tracks: Vec::new(),
            connected: false,
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
                            }
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
        let mut n = 0u32;
        while self.now.mono < end {
            self.now = self.now.after(STEP);
            n += 1;
            for c in &mut self.clients {
                c.rtc.handle_input(Input::Timeout(self.now.mono)).unwrap();
                if send && c.connected {
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

/// One VP8 frame and one Opus frame (their content does not matter to forwarding).
fn send_frames(c: &mut Client, now: Instant, n: u32) {
    for (mid, codec, clock, size) in [
        (c.video, Codec::Vp8, 90_000, 900),
        (c.audio, Codec::Opus, 48_000, 80),
    ] {
        let Some(writer) = c.rtc.writer(mid) else {
            continue;
        };
        let Some(pt) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
        else {
            continue;
        };
        // A VP8 keyframe's first byte has bit 0 clear; the rest are interframes.
        let mut data = vec![0x11u8; size];
        if n % 50 == 1 {
            data[0] = 0x10;
        }
        let time = MediaTime::new(
            u64::from(n) * clock / 200,
            str0m::media::Frequency::new(clock as u32).unwrap(),
        );
        writer.write(pt, now, time, data).unwrap();
    }
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
    w.run(Duration::from_secs(1), false);
    let sfu_addr: SocketAddr = SFU.parse().unwrap();
    // Record the publisher's datagrams once, then replay them timed.
    let mut datagrams = Vec::new();
    let publisher = w.clients.iter().position(|c| c.member == 1).unwrap();
    for n in 0..2000u32 {
        w.now = w.now.after(STEP);
        let c = &mut w.clients[publisher];
        c.rtc.handle_input(Input::Timeout(w.now.mono)).unwrap();
        send_frames(c, w.now.mono, n + 1);
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
        // The recording's own pace (two datagrams a step): the SFU's pacer sends on time.
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
