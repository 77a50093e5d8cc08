//! What a bot counts of the media it receives, per track: frames, keyframes, freezes (a gap
//! between video frames longer than [`FREEZE`]), and RTP packets received and lost (from the
//! sequence numbers the depacketizer reports). Pure: times come from the caller.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A gap between two video frames longer than this is a freeze a person would notice (the
/// receiving browser's own `freezeCount` uses a similar bound).
pub const FREEZE: Duration = Duration::from_millis(500);

/// One received track.
#[derive(Debug, Clone, Default)]
pub struct TrackStats {
    pub video: bool,
    /// Named by the signalling as a participant's camera (not a screen, not unnamed).
    pub camera: bool,
    pub frames: u64,
    pub keyframes: u64,
    pub bytes: u64,
    pub freezes: u64,
    pub frozen: Duration,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// RTP packets the frames were made of, and the sequence-number span they covered.
    pub packets: u64,
    lowest: Option<u64>,
    highest: Option<u64>,
}

impl TrackStats {
    pub fn new(video: bool) -> Self {
        Self {
            video,
            ..Self::default()
        }
    }

    /// A frame arrived at `at`, made of the packets `seqs` (extended sequence numbers).
    pub fn frame(&mut self, at: Instant, keyframe: bool, bytes: usize, seqs: (u64, u64)) {
        if let Some(last) = self.last {
            let gap = at.saturating_duration_since(last);
            if self.video && gap > FREEZE {
                self.freezes += 1;
                self.frozen += gap;
            }
        }
        self.first.get_or_insert(at);
        self.last = Some(at);
        self.frames += 1;
        self.keyframes += keyframe as u64;
        self.bytes += bytes as u64;
        self.packets += seqs.1.saturating_sub(seqs.0) + 1;
        self.lowest = Some(self.lowest.map_or(seqs.0, |l| l.min(seqs.0)));
        self.highest = Some(self.highest.map_or(seqs.1, |h| h.max(seqs.1)));
    }

    /// Packets never made into a frame: the span of sequence numbers seen less those
    /// received (lost, or dropped by the depacketizer as part of an incomplete frame).
    pub fn lost(&self) -> u64 {
        match (self.lowest, self.highest) {
            (Some(l), Some(h)) => (h - l + 1).saturating_sub(self.packets),
            _ => 0,
        }
    }
}

/// The totals over many tracks (one bot's, or every bot's).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub tracks: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub keyframes: u64,
    pub bytes: u64,
    pub freezes: u64,
    pub frozen_ms: u64,
    pub packets: u64,
    pub lost: u64,
}

impl Totals {
    pub fn add_track(&mut self, t: &TrackStats) {
        // Tracks that carried nothing (a screen nobody shares) are not counted.
        self.tracks += (t.frames > 0) as u64;
        if t.video {
            self.video_frames += t.frames;
        } else {
            self.audio_frames += t.frames;
        }
        self.keyframes += t.keyframes;
        self.bytes += t.bytes;
        self.freezes += t.freezes;
        self.frozen_ms += t.frozen.as_millis() as u64;
        self.packets += t.packets;
        self.lost += t.lost();
    }

    pub fn add(&mut self, o: &Totals) {
        self.tracks += o.tracks;
        self.video_frames += o.video_frames;
        self.audio_frames += o.audio_frames;
        self.keyframes += o.keyframes;
        self.bytes += o.bytes;
        self.freezes += o.freezes;
        self.frozen_ms += o.frozen_ms;
        self.packets += o.packets;
        self.lost += o.lost;
    }

    pub fn loss_ratio(&self) -> f64 {
        let all = self.packets + self.lost;
        if all == 0 {
            0.0
        } else {
            self.lost as f64 / all as f64
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "tracks": self.tracks,
            "videoFrames": self.video_frames,
            "audioFrames": self.audio_frames,
            "keyframes": self.keyframes,
            "bytes": self.bytes,
            "freezes": self.freezes,
            "frozenMs": self.frozen_ms,
            "packets": self.packets,
            "lost": self.lost,
            "lossRatio": self.loss_ratio(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_over_half_a_second_are_freezes_and_missing_sequence_numbers_are_loss() {
        let t0 = Instant::now();
        let ms = |m| t0 + Duration::from_millis(m);
        let mut v = TrackStats::new(true);
        v.frame(ms(0), true, 1000, (10, 12));
        v.frame(ms(33), false, 300, (13, 13));
        v.frame(ms(633), false, 300, (16, 16)); // a 600 ms gap; 14 and 15 never came
        v.frame(ms(666), false, 300, (17, 17));
        assert_eq!((v.frames, v.keyframes, v.freezes), (4, 1, 1));
        assert_eq!(v.frozen, Duration::from_millis(600));
        assert_eq!((v.packets, v.lost()), (6, 2));

        // Audio pauses (DTX) are no freezes.
        let mut a = TrackStats::new(false);
        a.frame(ms(0), false, 50, (1, 1));
        a.frame(ms(2000), false, 50, (2, 2));
        assert_eq!(a.freezes, 0);

        let mut totals = Totals::default();
        totals.add_track(&v);
        totals.add_track(&a);
        assert_eq!((totals.video_frames, totals.audio_frames, totals.lost), (4, 2, 2));
        assert!((totals.loss_ratio() - 0.2).abs() < 1e-9);
    }
}
