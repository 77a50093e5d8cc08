//! One browser's connection to the SFU: its str0m `Rtc`, the tracks it publishes (with their
//! simulcast layers), the tracks of others it receives (with the layer each gets), how it
//! shows them (`sfu_view`), its bandwidth estimate, and the SDP offer it has out (at most one:
//! the SFU offers every change after the browser's first offer, so the two sides never offer
//! at once).

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid, Simulcast};
use str0m::Rtc;

use crate::estimate::LossEstimate;
use crate::layers::{Forwarding, Layer, View, MAX_LAYERS};
use crate::{MemberId, Route, Sid, Source, TrackInfo};

/// How many addresses one session may be reached from (ICE candidate pairs the browser
/// tried); more are not remembered, so a session cannot fill the address table.
pub(crate) const MAX_ADDRS: usize = 8;

/// A track the browser publishes.
#[derive(Debug)]
pub(crate) struct TrackIn {
    pub mid: Mid,
    pub source: Source,
    /// Its simulcast layers, lowest first (the order of the browser's `a=simulcast`), or one
    /// layer without a rid.
    pub layers: Vec<Layer>,
    /// Of a source the member may not publish: never forwarded.
    pub refused: bool,
    /// Media has come on it: it is forwarded. A transceiver the browser offered but sends
    /// nothing on (no screen shared, no camera) costs the others no m-line.
    pub live: bool,
    /// Whether media on a refused track was reported (once).
    pub reported: bool,
}

impl TrackIn {
    /// The index of the layer a frame with `rid` belongs to.
    pub fn layer_of(&self, rid: Option<str0m::media::Rid>) -> Option<usize> {
        self.layers.iter().position(|l| l.rid == rid)
    }
}

/// Media on a published track: forwarded (the first time, the track is offered to the room),
/// or (a refused source) dropped, reported the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    Forward,
    Publish,
    Drop,
    Report(Source),
}

/// How many (member, source) views one session may tell (more are ignored): bounds its table.
pub(crate) const MAX_VIEWS: usize = 256;

/// An open forwarded track, as the hot path needs it.
#[derive(Debug)]
pub(crate) struct Out {
    /// The mid it is written to.
    pub mid: Mid,
    /// Video only: the layer forwarded and the one wanted.
    pub video: Option<Forwarding>,
}

/// Where a forwarded track stands in the SDP negotiation with this session's browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Waiting for the next offer.
    ToOpen,
    /// In the offer out now.
    Negotiating(Mid),
    /// Answered: media flows.
    Open(Mid),
    /// Its publisher left; the next offer stops it.
    ToStop(Mid),
    /// Stopped in the offer out now.
    Stopping(Mid),
}

impl OutState {
    pub fn mid(self) -> Option<Mid> {
        match self {
            Self::ToOpen => None,
            Self::Negotiating(m) | Self::Open(m) | Self::ToStop(m) | Self::Stopping(m) => Some(m),
        }
    }
}

/// Another session's track, forwarded to this one.
#[derive(Debug)]
pub(crate) struct TrackOut {
    pub origin: Sid,
    pub origin_mid: Mid,
    pub origin_member: MemberId,
    pub source: Source,
    pub state: OutState,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub member: MemberId,
    pub room: u64,
    pub ufrag: String,
    pub rtc: Rtc,
    /// Addresses datagrams came from (and were accepted by the `Rtc`).
    pub addrs: Vec<Route>,
    /// The last datagram from the browser, for the idle timeout.
    pub last_rx: Instant,
    pub pending: Option<SdpPendingOffer>,
    pub tracks_in: Vec<TrackIn>,
    pub tracks_out: Vec<TrackOut>,
    /// Open forwarded tracks by (publisher, publisher's mid): the mid to write them to. The
    /// forwarding hot path looks here, once per subscriber and packet.
    pub out_by_source: HashMap<(Sid, Mid), Out>,
    /// How the browser shows each video it gets (`sfu_view`); not told: [`View::default`].
    pub views: HashMap<(MemberId, Source), View>,
    /// The bandwidth estimate towards the browser, from the loss it reports.
    pub estimate: LossEstimate,
    /// What the member may publish (its access token's permissions).
    pub may_publish: Vec<Source>,
    /// For tests: `estimate` was set by hand, and the loss reported does not change it.
    #[cfg(test)]
    pub estimate_pinned: bool,
}

impl Session {
    pub fn new(member: MemberId, room: u64, ufrag: String, rtc: Rtc, now: Instant) -> Self {
        Self {
            member,
            room,
            ufrag,
            rtc,
            addrs: Vec::new(),
            last_rx: now,
            pending: None,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            out_by_source: HashMap::new(),
            views: HashMap::new(),
            estimate: LossEstimate::new(crate::INITIAL_ESTIMATE_BPS),
            may_publish: Source::ALL.to_vec(),
            #[cfg(test)]
            estimate_pinned: false,
        }
    }

    /// A track the browser offered to send: the first audio is its microphone, the first
    /// video its camera and the second video its screen (the order sfu.js creates them in).
    /// A source the member may not publish is kept, refused, so that the order still names the
    /// others. A camera may come in simulcast layers (`simulcast`, our side
    /// of it: the layers we receive).
    pub fn publish(
        &mut self,
        mid: Mid,
        kind: MediaKind,
        direction: Direction,
        simulcast: Option<&Simulcast>,
    ) {
        // Our side of the m-line: a track the browser sends is one we receive.
        if !direction.is_receiving() {
            return;
        }
        let videos = self
            .tracks_in
            .iter()
            .filter(|t| t.source != Source::Audio)
            .count();
        let audios = self.tracks_in.len() - videos;
        let source = match kind {
            MediaKind::Audio if audios == 0 => Source::Audio,
            MediaKind::Video if videos == 0 => Source::Camera,
            MediaKind::Video if videos == 1 => Source::Screen,
            _ => return,
        };
        let layers = match simulcast {
            Some(s) if !s.recv.is_empty() => s
                .recv
                .iter()
                .take(MAX_LAYERS)
                .map(|l| Layer::new(Some(l.rid)))
                .collect(),
            _ => vec![Layer::new(None)],
        };
        let refused = !self.may_publish.contains(&source);
        self.tracks_in.push(TrackIn {
            mid,
            source,
            layers,
            refused,
            reported: false,
            live: false,
        });
    }

    /// What to do with media the browser sent on `mid`.
    pub fn admit(&mut self, mid: Mid) -> Admit {
        match self.tracks_in.iter_mut().find(|t| t.mid == mid) {
            Some(t) if t.refused && !t.reported => {
                t.reported = true;
                Admit::Report(t.source)
            }
            Some(t) if t.refused => Admit::Drop,
            Some(t) if !t.live => {
                t.live = true;
                Admit::Publish
            }
            _ => Admit::Forward,
        }
    }

    /// Starts forwarding another session's track to this one (at the next offer).
    pub fn subscribe(&mut self, origin: Sid, origin_member: MemberId, mid: Mid, source: Source) {
        self.tracks_out.push(TrackOut {
            origin,
            origin_mid: mid,
            origin_member,
            source,
            state: OutState::ToOpen,
        });
    }

    /// Stops forwarding everything `origin` published (it left).
    pub fn unsubscribe(&mut self, origin: Sid) {
        self.out_by_source.retain(|(sid, _), _| *sid != origin);
        self.tracks_out.retain_mut(|t| {
            if t.origin != origin {
                return true;
            }
            match t.state {
                OutState::ToOpen => return false,
                OutState::Negotiating(m) | OutState::Open(m) => t.state = OutState::ToStop(m),
                OutState::ToStop(_) | OutState::Stopping(_) => {}
            }
            true
        });
    }

    /// Makes the next offer, if anything changed and no offer is out. Returns its SDP and
    /// the tracks it carries.
    pub fn offer(&mut self) -> Option<(String, Vec<TrackInfo>)> {
        if self.pending.is_some() {
            return None;
        }
        let mut change = self.rtc.sdp_api();
        for track in &mut self.tracks_out {
            match track.state {
                OutState::ToOpen => {
                    let kind = match track.source {
                        Source::Audio => MediaKind::Audio,
                        Source::Camera | Source::Screen => MediaKind::Video,
                    };
                    // Track ids unique in the connection, as browsers' statistics name tracks by them.
                    let stream = format!("m{}", track.origin_member);
                    let id = format!("{}-{}", track.source.as_str(), track.origin_member);
                    let mid = change.add_media(kind, Direction::SendOnly, Some(stream), Some(id), None);
                    track.state = OutState::Negotiating(mid);
                }
                OutState::ToStop(mid) => {
                    change.stop_media(mid);
                    track.state = OutState::Stopping(mid);
                }
                _ => {}
            }
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        Some((offer.to_sdp_string(), self.track_infos()))
    }

    /// The browser answered our offer: what was negotiated flows (video paused until its
    /// layer is chosen), what was stopped is gone.
    pub fn answered(&mut self) {
        self.tracks_out.retain_mut(|t| match t.state {
            OutState::Negotiating(mid) => {
                t.state = OutState::Open(mid);
                let video = (t.source != Source::Audio).then(Forwarding::default);
                self.out_by_source
                    .insert((t.origin, t.origin_mid), Out { mid, video });
                true
            }
            OutState::Stopping(_) => false,
            _ => true,
        });
    }

    /// Our offer was overtaken (the browser offered anew): what it carried goes in the next.
    pub fn offer_dropped(&mut self) {
        self.pending = None;
        for t in &mut self.tracks_out {
            match t.state {
                OutState::Negotiating(_) => t.state = OutState::ToOpen,
                OutState::Stopping(m) => t.state = OutState::ToStop(m),
                _ => {}
            }
        }
    }

    /// Every forwarded track the browser has or is being offered, for the client to name its
    /// tiles by.
    pub fn track_infos(&self) -> Vec<TrackInfo> {
        self.tracks_out
            .iter()
            .filter_map(|t| match t.state {
                OutState::Negotiating(mid) | OutState::Open(mid) => Some(TrackInfo {
                    mid: mid.to_string(),
                    member: t.origin_member,
                    source: t.source,
                }),
                _ => None,
            })
            .collect()
    }

    /// The publisher's track a forwarded mid carries, and the layer of it forwarded now.
    pub fn origin_of(&self, mid: Mid) -> Option<(Sid, Mid, Option<usize>)> {
        let t = self.tracks_out.iter().find(|t| t.state.mid() == Some(mid))?;
        let layer = self
            .out_by_source
            .get(&(t.origin, t.origin_mid))
            .and_then(|o| o.video.as_ref()?.current);
        Some((t.origin, t.origin_mid, layer))
    }

    pub fn remember_addr(&mut self, addr: Route) -> bool {
        if self.addrs.contains(&addr) || self.addrs.len() >= MAX_ADDRS {
            return false;
        }
        self.addrs.push(addr);
        true
    }
}
