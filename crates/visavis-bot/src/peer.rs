//! One bot's WebRTC peer connection, sans-IO around str0m: it offers what a browser offers
//! the SFU (microphone, camera, screen — all `sendonly`), answers the SFU's offers, publishes
//! its recording on schedule, and counts what it receives. The caller moves datagrams and
//! time; nothing here blocks or reads a clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::{CryptoProvider, DtlsCert};
use str0m::format::PayloadParams;
use str0m::media::{Direction, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

use crate::media::{Kind, Recorder, Recording, Replay};
use crate::stats::{Totals, TrackStats};

/// What every bot of a process shares: the crypto provider and one DTLS certificate (a key
/// generation per bot would cost more than the rest of joining).
#[derive(Debug, Clone)]
pub struct Shared {
    pub crypto: Arc<CryptoProvider>,
    pub cert: DtlsCert,
}

impl Shared {
    pub fn new() -> anyhow::Result<Self> {
        let crypto = str0m::crypto::from_feature_flags();
        let cert = crypto
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| anyhow::anyhow!("cannot make a DTLS certificate"))?;
        Ok(Self {
            crypto: Arc::new(crypto),
            cert,
        })
    }
}

/// How loud a bot is: the audio-level header extension's value (dBov below full scale, 127 is
/// silence) and whether it marks voice, as a browser sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    pub dbov: i8,
    pub voice: bool,
}

impl Level {
    pub const SPEAKING: Self = Self {
        dbov: -20,
        voice: true,
    };
    pub const SILENT: Self = Self {
        dbov: -127,
        voice: false,
    };
}

/// What the peer asks of its caller.
#[derive(Debug)]
pub enum PeerOut {
    Transmit {
        source: SocketAddr,
        destination: SocketAddr,
        contents: Vec<u8>,
    },
    /// Nothing more until this time (or a datagram or description comes).
    Wait(Instant),
}

#[derive(Debug)]
pub struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    /// Our sending m-lines: microphone and camera (a screen one stays idle); none for a peer
    /// that only receives.
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    /// Received video without a name from the signalling counts as a camera (Janus names
    /// nothing; its subscriber connections carry cameras only).
    unnamed_video_is_camera: bool,
    audio_pt: Option<PayloadParams>,
    video_pt: Option<PayloadParams>,
    connected_at: Option<Instant>,
    /// Publishing starts when connected; `None` for a bot that only listens.
    recording: Option<Arc<Recording>>,
    audio: Replay,
    video: Replay,
    pub level: Level,
    pub sent_video_frames: u64,
    pub sent_audio_frames: u64,
    pub keyframe_requests: u64,
    /// RTP packets received on every track together, counted as frames complete (for a
    /// process-wide rate while bots run).
    pub packets_received: u64,
    /// What each received mid carries: (publisher, video?) as the signalling said.
    pub received: HashMap<Mid, TrackStats>,
    /// When set, frames of the first remote camera and microphone are stored here.
    pub recorder: Option<(Recorder, Option<Mid>, Option<Mid>)>,
    start: Instant,
}

impl Peer {
    /// A peer reachable at `local` (its one host candidate) that offers a microphone and a
    /// camera, and a screen after them when `screen` (as a browser offers the SFU), and
    /// publishes `recording` on them once connected (or nothing). Returns the offer too.
    pub fn new(
        shared: &Shared,
        now: Instant,
        local: SocketAddr,
        recording: Option<Arc<Recording>>,
        screen: bool,
    ) -> anyhow::Result<(Self, String)> {
        let mut peer = Self::answerer(shared, now, local);
        peer.recording = recording;
        let mut change = peer.rtc.sdp_api();
        // The order the SFU names published tracks by (docs/protocol.md, `sfu_description`).
        let audio_mid = change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let video_mid = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        if screen {
            change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        }
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| anyhow::anyhow!("nothing to offer"))?;
        peer.audio_mid = Some(audio_mid);
        peer.video_mid = Some(video_mid);
        peer.pending = Some(pending);
        Ok((peer, offer.to_sdp_string()))
    }

    /// A peer that publishes nothing and waits for the remote side's offer.
    pub fn answerer(shared: &Shared, now: Instant, local: SocketAddr) -> Self {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(shared.crypto.clone())
            .set_dtls_cert(shared.cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_stats_interval(None)
            .build(now);
        // A host candidate for a bound socket address is always valid.
        if let Ok(candidate) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(candidate);
        }
        Self {
            rtc,
            local,
            pending: None,
            audio_mid: None,
            video_mid: None,
            unnamed_video_is_camera: false,
            audio_pt: None,
            video_pt: None,
            connected_at: None,
            recording: None,
            audio: Replay::new(Kind::Audio),
            video: Replay::new(Kind::Video),
            level: Level::SILENT,
            sent_video_frames: 0,
            sent_audio_frames: 0,
            keyframe_requests: 0,
            packets_received: 0,
            received: HashMap::new(),
            recorder: None,
            start: now,
        }
    }

    /// Received video nobody named counts as a camera (for Janus's subscriber connections).
    pub fn count_unnamed_video_as_camera(&mut self) {
        self.unnamed_video_is_camera = true;
    }

    /// The remote side's answer to our offer.
    pub fn handle_answer(&mut self, sdp: &str) -> anyhow::Result<()> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| anyhow::anyhow!("an answer without an offer out"))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(sdp)?)?;
        Ok(())
    }

    /// The remote side's offer (tracks added or stopped); returns our answer.
    pub fn handle_offer(&mut self, sdp: &str) -> anyhow::Result<String> {
        let answer = self.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(sdp)?)?;
        Ok(answer.to_sdp_string())
    }

    /// Names a received mid's content (from `sfu_description`'s `tracks`): tracks named here
    /// are counted as video or audio; the first remote camera and microphone are what
    /// a recorder stores.
    pub fn name_track(&mut self, mid: Mid, video: bool, camera: bool) {
        self.received
            .entry(mid)
            .or_insert_with(|| TrackStats::new(video))
            .camera = camera;
        if let Some((_, audio, camera)) = &mut self.recorder {
            let slot = if video { camera } else { audio };
            slot.get_or_insert(mid);
        }
    }

    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        contents: &[u8],
    ) -> anyhow::Result<()> {
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents: contents.try_into()?,
            },
        );
        Ok(self.rtc.handle_input(input)?)
    }

    pub fn is_connected(&self) -> bool {
        self.connected_at.is_some()
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }

    /// Advances time: publishes the frames now due, then returns the next thing to do. Call
    /// until it returns [`PeerOut::Wait`].
    pub fn poll(&mut self, now: Instant) -> anyhow::Result<PeerOut> {
        self.rtc.handle_input(Input::Timeout(now))?;
        self.publish(now)?;
        loop {
            match self.rtc.poll_output()? {
                Output::Transmit(t) => {
                    return Ok(PeerOut::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    })
                }
                Output::Timeout(at) => {
                    let next = self.next_frame().map_or(at, |f| f.min(at));
                    return Ok(PeerOut::Wait(next.max(now)));
                }
                Output::Event(event) => self.handle_event(now, event),
            }
        }
    }

    fn next_frame(&mut self) -> Option<Instant> {
        let (Some(rec), Some(since)) = (&self.recording, self.connected_at) else {
            return None;
        };
        let a = self.audio.next_due(rec);
        let v = self.video.next_due(rec);
        [a, v].into_iter().flatten().min().map(|d| since + d)
    }

    fn handle_event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected => {
                self.connected_at = Some(now);
            }
            Event::KeyframeRequest(req) if Some(req.mid) == self.video_mid => {
                self.keyframe_requests += 1;
                self.video.want_keyframe();
            }
            Event::MediaData(data) => {
                let video = data.params.spec().codec.is_video();
                let keyframe = data.is_keyframe();
                let seqs = (**data.seq_range.start(), **data.seq_range.end());
                self.packets_received += seqs.1.saturating_sub(seqs.0) + 1;
                let camera = video && self.unnamed_video_is_camera;
                self.received
                    .entry(data.mid)
                    .or_insert_with(|| {
                        let mut t = TrackStats::new(video);
                        t.camera = camera;
                        t
                    })
                    .frame(now, keyframe, data.data.len(), seqs);
                if let Some((rec, audio, camera)) = &mut self.recorder {
                    let kind = if Some(data.mid) == *camera {
                        Some(Kind::Video)
                    } else if Some(data.mid) == *audio {
                        Some(Kind::Audio)
                    } else {
                        None
                    };
                    if let Some(kind) = kind {
                        rec.push(kind, keyframe, now - self.start, &data.data);
                    }
                }
            }
            _ => {}
        }
    }

    /// Asks every received camera for a keyframe (a recorder does this each second, so its
    /// recording can be entered often).
    pub fn request_keyframes(&mut self) {
        let mids: Vec<Mid> = self
            .received
            .iter()
            .filter(|(_, t)| t.video)
            .map(|(m, _)| *m)
            .collect();
        for mid in mids {
            if let Some(mut w) = self.rtc.writer(mid) {
                let _ = w.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli);
            }
        }
    }

    fn publish(&mut self, now: Instant) -> anyhow::Result<()> {
        let (Some(rec), Some(since)) = (self.recording.clone(), self.connected_at) else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(since);
        let (Some(audio_mid), Some(video_mid)) = (self.audio_mid, self.video_mid) else {
            return Ok(());
        };
        if self.audio_pt.is_none() {
            self.audio_pt = self.pt(audio_mid);
            self.video_pt = self.pt(video_mid);
        }
        while let Some(due) = self.audio.poll(&rec, elapsed) {
            let Some(params) = self.audio_pt else { break };
            let time = MediaTime::from_micros(due.time.as_micros() as u64).rebase(params.spec().clock_rate);
            if let Some(w) = self.rtc.writer(audio_mid) {
                w.audio_level(self.level.dbov, self.level.voice).write(
                    params.pt(),
                    since + due.time,
                    time,
                    due.frame.data.clone(),
                )?;
                self.sent_audio_frames += 1;
            }
        }
        while let Some(due) = self.video.poll(&rec, elapsed) {
            let Some(params) = self.video_pt else { break };
            let time = MediaTime::from_micros(due.time.as_micros() as u64).rebase(params.spec().clock_rate);
            if let Some(w) = self.rtc.writer(video_mid) {
                w.write(params.pt(), since + due.time, time, due.frame.data.clone())?;
                self.sent_video_frames += 1;
            }
        }
        Ok(())
    }

    fn pt(&mut self, mid: Mid) -> Option<PayloadParams> {
        self.rtc
            .writer(mid)
            .and_then(|w| w.payload_params().next().copied())
    }

    /// The fewest frames received on any camera track (`None` before there is one): zero
    /// means some participant's video never arrived.
    pub fn camera_frames_min(&self) -> Option<u64> {
        self.received
            .values()
            .filter(|t| t.camera)
            .map(|t| t.frames)
            .min()
    }

    /// How many camera tracks have brought at least `frames` frames.
    pub fn cameras_receiving(&self, frames: u64) -> usize {
        self.received
            .values()
            .filter(|t| t.camera && t.frames >= frames)
            .count()
    }

    /// Totals of what was received.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for t in self.received.values() {
            totals.add_track(t);
        }
        totals
    }

    /// How long since the peer was made.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    pub fn close(&mut self) {
        self.rtc.disconnect();
    }
}
