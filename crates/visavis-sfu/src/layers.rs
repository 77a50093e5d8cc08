//! Simulcast: what each published layer is (its resolution, read from its keyframes, and its
//! bitrate, measured), which layer each subscriber should get of a video track (the smallest
//! that fills the tile it is shown in, then lower ones while the subscriber's bandwidth
//! estimate cannot carry them all), and the switch from one layer to another for one
//! subscriber: only on a keyframe of the new layer, with its RTP time rebased so that the
//! subscriber sees one continuous track (str0m numbers the packets). Pure: the caller passes
//! the time.

use std::time::{Duration, Instant};

use str0m::media::{MediaTime, Rid};

/// Most simulcast layers taken from one track (browsers send three).
pub const MAX_LAYERS: usize = 3;
/// A layer not heard from for this long is not chosen (the browser stopped sending it, for
/// its own bandwidth or CPU).
const INACTIVE_AFTER: Duration = Duration::from_secs(2);
/// How long bitrates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// The bitrate assumed of a layer not measured yet, by its index from the lowest (the
/// client's `maxBitrate`s, web/sdk/sfu.js).
const ASSUMED_BPS: [u64; MAX_LAYERS] = [100_000, 300_000, 900_000];
/// The height assumed of the top layer before a keyframe told it.
const ASSUMED_TOP_HEIGHT: u32 = 720;

/// One published layer, as received.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// `None` for a track without simulcast (one layer).
    pub rid: Option<Rid>,
    pub width: u32,
    pub height: u32,
    /// Bits per second over the last window.
    pub bitrate: u64,
    window_bytes: u64,
    window_start: Option<Instant>,
    pub last_seen: Option<Instant>,
    /// When a keyframe was last asked of the browser for this layer (at most one a
    /// `keyframe_interval`, however many subscribers ask).
    pub last_keyframe_request: Option<Instant>,
}

impl Layer {
    pub fn new(rid: Option<Rid>) -> Self {
        Self {
            rid,
            width: 0,
            height: 0,
            bitrate: 0,
            window_bytes: 0,
            window_start: None,
            last_seen: None,
            last_keyframe_request: None,
        }
    }

    /// A frame of this layer arrived. True when it told the layer's size for the first time, or
    /// a new one: the layers subscribers get are then worth choosing again.
    pub fn on_frame(&mut self, now: Instant, data: &[u8], keyframe: bool) -> bool {
        self.last_seen = Some(now);
        self.window_bytes += data.len() as u64;
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            self.bitrate = self.window_bytes * 8 * 1000 / (elapsed.as_millis() as u64).max(1);
            self.window_bytes = 0;
            self.window_start = Some(now);
        }
        let Some((w, h)) = keyframe.then(|| vp8_keyframe_size(data)).flatten() else {
            return false;
        };
        let size = (u32::from(w), u32::from(h));
        let resized = size != (self.width, self.height);
        (self.width, self.height) = size;
        resized
    }

    pub fn active(&self, now: Instant) -> bool {
        self.last_seen
            .is_some_and(|t| now.saturating_duration_since(t) < INACTIVE_AFTER)
    }
}

/// A VP8 keyframe's size (RFC 6386 9.1: the frame tag, the start code, then 14-bit width and
/// height).
pub(crate) fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// How a subscriber shows one of its video tracks (`sfu_view`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// CSS pixels times the device pixel ratio: what the tile needs.
    pub width: u32,
    pub height: u32,
    /// On screen (a tile on another page of the grid, or scrolled away, is not).
    pub visible: bool,
}

impl Default for View {
    /// Until the client tells: a medium tile.
    fn default() -> Self {
        Self {
            width: 640,
            height: 360,
            visible: true,
        }
    }
}

/// The height of layer `i` of `layers`: as its keyframes said, or guessed from a known one
/// (browsers halve each step down), or from an assumed top.
fn height_of(layers: &[Layer], i: usize) -> u32 {
    if layers[i].height > 0 {
        return layers[i].height;
    }
    let top = layers.len() - 1;
    match layers.iter().enumerate().find(|(_, l)| l.height > 0) {
        Some((k, l)) if k >= i => l.height >> (k - i),
        Some((k, l)) => l.height << (i - k),
        None => ASSUMED_TOP_HEIGHT >> (top - i),
    }
}

/// The layers worth choosing now: those sending (all of them before any was heard).
fn active_layers(layers: &[Layer], now: Instant) -> impl Iterator<Item = usize> + '_ {
    let any = layers.iter().any(|l| l.active(now));
    (0..layers.len()).filter(move |&i| !any || layers[i].active(now))
}

/// The layer a view wants: none when hidden; else the lowest whose height fills the tile
/// (within a tenth), or the highest there is.
pub(crate) fn wanted_layer(layers: &[Layer], view: View, now: Instant) -> Option<usize> {
    if !view.visible || layers.is_empty() {
        return None;
    }
    let mut best = None;
    for i in active_layers(layers, now) {
        best = Some(i);
        if height_of(layers, i) * 10 >= view.height * 9 {
            break;
        }
    }
    best
}

/// The bitrate of layer `i`, measured or assumed.
pub(crate) fn rate_of(layers: &[Layer], i: usize) -> u64 {
    match layers[i].bitrate {
        0 => ASSUMED_BPS[i.min(MAX_LAYERS - 1)],
        b => b,
    }
}

/// What each layer costs for [`fit_budget`]: `None` for a layer not sending while others are;
/// nothing (0) while none is (a screen not shared, a camera not started).
pub(crate) fn rates(layers: &[Layer], now: Instant) -> Vec<Option<u64>> {
    let any = layers.iter().any(|l| l.active(now));
    (0..layers.len())
        .map(|i| match (any, layers[i].active(now)) {
            (false, _) => Some(0),
            (true, true) => Some(rate_of(layers, i)),
            (true, false) => None,
        })
        .collect()
}

/// One video track of a subscriber, for [`fit_budget`]: the layer chosen and what each layer
/// costs (`None`: not sending now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    pub layer: Option<usize>,
    pub rates: Vec<Option<u64>>,
}

/// Steps layers down, the costliest first, until they fit in `budget` bits per second or are
/// all at their lowest (which is never paused for bandwidth: a frozen tile is worse than a
/// blurred one). Returns the total.
pub(crate) fn fit_budget(choices: &mut [Choice], budget: u64) -> u64 {
    let cost = |c: &Choice| c.layer.and_then(|l| c.rates[l]).unwrap_or(0);
    let mut total: u64 = choices.iter().map(cost).sum();
    while total > budget {
        let step = choices
            .iter()
            .enumerate()
            .filter_map(|(k, c)| {
                let l = c.layer?;
                let lower = (0..l).rev().find(|&i| c.rates[i].is_some())?;
                Some((k, lower, cost(c)))
            })
            .max_by_key(|&(_, _, cost)| cost);
        let Some((k, lower, before)) = step else {
            break;
        };
        choices[k].layer = Some(lower);
        total = total - before + cost(&choices[k]);
    }
    total
}

/// What [`Forwarding::admit`] says of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it, at this RTP time.
    Forward(MediaTime),
    Drop,
    /// Drop it; the layer switched to needs a keyframe.
    WantKeyframe,
}

/// One subscriber's forwarding of one video track: the layer it gets and the one it should.
#[derive(Debug, Clone, Default)]
pub(crate) struct Forwarding {
    /// What the subscriber should get (`None`: paused).
    pub target: Option<usize>,
    /// What it gets now.
    pub current: Option<usize>,
    /// Added to the layer's RTP time, so that time runs on across switches.
    offset: u64,
    /// The last frame forwarded: its RTP time out and arrival.
    last: Option<(u64, Instant)>,
    /// Layers switched, for tests and metrics.
    pub switches: u32,
}

impl Forwarding {
    /// A frame of `layer` arrived: forward it or not.
    pub fn admit(&mut self, layer: usize, keyframe: bool, time: MediaTime, arrived: Instant) -> Verdict {
        let Some(target) = self.target else {
            self.current = None;
            return Verdict::Drop;
        };
        if layer == target && self.current != Some(target) {
            if !keyframe {
                return Verdict::WantKeyframe;
            }
            // Time runs on from the last frame sent, by the time between the two arrivals.
            let rebased = match self.last {
                Some((out, at)) => {
                    let ticks = arrived.saturating_duration_since(at).as_micros() as u64
                        * u64::from(time.denom())
                        / 1_000_000;
                    out.wrapping_add(ticks.max(1))
                }
                None => time.numer(),
            };
            self.offset = rebased.wrapping_sub(time.numer());
            self.current = Some(target);
            self.switches += 1;
        } else if Some(layer) != self.current {
            return Verdict::Drop;
        }
        let out = time.numer().wrapping_add(self.offset);
        self.last = Some((out, arrived));
        Verdict::Forward(MediaTime::new(out, time.frequency()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Frequency;

    fn layers(heights: [u32; 3], now: Instant) -> Vec<Layer> {
        heights
            .iter()
            .map(|&h| {
                let mut l = Layer::new(None);
                l.height = h;
                l.width = h * 16 / 9;
                l.last_seen = Some(now);
                l
            })
            .collect()
    }

    fn view(height: u32) -> View {
        View {
            width: height * 16 / 9,
            height,
            visible: true,
        }
    }

    #[test]
    fn reads_a_vp8_keyframe_size() {
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        frame.extend_from_slice(&640u16.to_le_bytes());
        frame.extend_from_slice(&(480u16 | 0x4000).to_le_bytes()); // a scale bit set
        assert_eq!(vp8_keyframe_size(&frame), Some((640, 480)));
        frame[0] = 0x11; // an interframe
        assert_eq!(vp8_keyframe_size(&frame), None);
    }

    #[test]
    fn the_lowest_layer_that_fills_the_tile() {
        let now = Instant::now();
        let l = layers([180, 360, 720], now);
        assert_eq!(wanted_layer(&l, view(120), now), Some(0));
        assert_eq!(wanted_layer(&l, view(180), now), Some(0));
        assert_eq!(wanted_layer(&l, view(190), now), Some(0), "within a tenth");
        assert_eq!(wanted_layer(&l, view(300), now), Some(1));
        assert_eq!(wanted_layer(&l, view(700), now), Some(2));
        assert_eq!(wanted_layer(&l, view(2000), now), Some(2), "the highest there is");
        let hidden = View {
            visible: false,
            ..view(720)
        };
        assert_eq!(wanted_layer(&l, hidden, now), None);
    }

    #[test]
    fn a_layer_not_sending_is_not_chosen_and_unknown_heights_are_guessed() {
        let now = Instant::now();
        let mut l = layers([180, 360, 720], now);
        l[2].last_seen = Some(now - Duration::from_secs(3));
        assert_eq!(wanted_layer(&l, view(720), now), Some(1));
        let mut l = layers([0, 0, 480], now);
        assert_eq!(height_of(&l, 0), 120);
        assert_eq!(wanted_layer(&l, view(200), now), Some(1));
        l[2].height = 0;
        assert_eq!(height_of(&l, 1), ASSUMED_TOP_HEIGHT / 2);
    }

    #[test]
    fn layers_step_down_the_costliest_first_until_they_fit() {
        let rates = vec![Some(100), Some(400), Some(1000)];
        let mut c = vec![
            Choice {
                layer: Some(2),
                rates: rates.clone(),
            },
            Choice {
                layer: Some(1),
                rates: rates.clone(),
            },
            Choice {
                layer: None,
                rates: rates.clone(),
            },
        ];
        assert_eq!(fit_budget(&mut c.clone(), 2000), 1400, "fits as it is");
        assert_eq!(fit_budget(&mut c, 900), 800);
        assert_eq!((c[0].layer, c[1].layer), (Some(1), Some(1)));
        assert_eq!(fit_budget(&mut c, 10), 200, "never below the lowest");
        assert_eq!((c[0].layer, c[1].layer, c[2].layer), (Some(0), Some(0), None));
        // A layer that is not sending is skipped on the way down.
        let mut c = vec![Choice {
            layer: Some(2),
            rates: vec![Some(100), None, Some(1000)],
        }];
        fit_budget(&mut c, 500);
        assert_eq!(c[0].layer, Some(0));
    }

    #[test]
    fn switches_only_on_a_keyframe_of_the_target_with_time_running_on() {
        let f = Frequency::NINETY_KHZ;
        let t0 = Instant::now();
        let mut fw = Forwarding {
            target: Some(0),
            ..Default::default()
        };
        // Layer 0 from its first keyframe; layer 2 (other RTP time base) dropped.
        assert_eq!(
            fw.admit(0, false, MediaTime::new(1000, f), t0),
            Verdict::WantKeyframe
        );
        assert_eq!(
            fw.admit(0, true, MediaTime::new(4000, f), t0),
            Verdict::Forward(MediaTime::new(4000, f))
        );
        assert_eq!(fw.admit(2, true, MediaTime::new(900_000, f), t0), Verdict::Drop);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            fw.admit(0, false, MediaTime::new(13_000, f), t1),
            Verdict::Forward(MediaTime::new(13_000, f))
        );
        // Up to 2: layer 0 goes on until 2's keyframe, which continues 100 ms on.
        fw.target = Some(2);
        let t2 = t1 + Duration::from_millis(100);
        assert_eq!(
            fw.admit(2, false, MediaTime::new(909_000, f), t2),
            Verdict::WantKeyframe
        );
        assert_eq!(
            fw.admit(0, false, MediaTime::new(22_000, f), t2),
            Verdict::Forward(MediaTime::new(22_000, f))
        );
        let t3 = t2 + Duration::from_millis(100);
        assert_eq!(
            fw.admit(2, true, MediaTime::new(918_000, f), t3),
            Verdict::Forward(MediaTime::new(31_000, f))
        );
        assert_eq!(fw.admit(0, false, MediaTime::new(31_000, f), t3), Verdict::Drop);
        let t4 = t3 + Duration::from_millis(33);
        assert_eq!(
            fw.admit(2, false, MediaTime::new(921_000, f), t4),
            Verdict::Forward(MediaTime::new(34_000, f))
        );
        assert_eq!(fw.switches, 2);
        // Paused: nothing, and a resume waits for a keyframe again.
        fw.target = None;
        assert_eq!(fw.admit(2, true, MediaTime::new(924_000, f), t4), Verdict::Drop);
        fw.target = Some(2);
        assert_eq!(
            fw.admit(2, false, MediaTime::new(927_000, f), t4),
            Verdict::WantKeyframe
        );
    }
}
