//! A subscriber's bandwidth estimate from the loss its browser reports on what the SFU sends it
//! (RTCP receiver reports), the loss-based half of Google Congestion Control: over 10 % lost, the
//! estimate falls by half the loss; under 2 %, it grows by 8 % a second; in between it holds.
//!
//! Why not str0m's delay-based estimate: it takes the SFU's own queueing for a congested path,
//! so on a busy server it collapsed to ~100 kbit/s for everyone, and str0m's pacer, which paces
//! at the estimate, then held video back for seconds. Loss does not rise because the server is
//! busy, only because the path is full. Pure: the caller passes the time.

use std::time::{Duration, Instant};

/// Loss over this fraction means the path is full.
const HIGH_LOSS: f32 = 0.10;
/// Loss under this fraction means there is room.
const LOW_LOSS: f32 = 0.02;
/// Growth per second while loss is low.
const GROWTH_PER_SEC: f64 = 0.08;
/// The estimate never grows past this (bits per second).
const MAX_BPS: u64 = 20_000_000;
/// Nor falls under this: audio and the lowest layers of a few tiles.
const MIN_BPS: u64 = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct LossEstimate {
    bps: u64,
    /// Loss reported since the last update: the sum of fractions, and how many.
    loss_sum: f32,
    reports: u32,
    last: Option<Instant>,
}

impl LossEstimate {
    pub fn new(initial_bps: u64) -> Self {
        Self {
            bps: initial_bps,
            loss_sum: 0.0,
            reports: 0,
            last: None,
        }
    }

    pub fn bps(&self) -> u64 {
        self.bps
    }

    /// The fraction lost (0…1) of one forwarded stream, from the browser's latest receiver
    /// report.
    pub fn handle_loss(&mut self, loss: f32) {
        if loss.is_finite() {
            self.loss_sum += loss.clamp(0.0, 1.0);
            self.reports += 1;
        }
    }

    /// Folds in the loss reported since the last call; returns the estimate. Without reports
    /// (nothing forwarded), it holds.
    pub fn poll(&mut self, now: Instant) -> u64 {
        let elapsed = self
            .last
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.last = Some(now);
        if self.reports == 0 {
            return self.bps;
        }
        let loss = self.loss_sum / self.reports as f32;
        (self.loss_sum, self.reports) = (0.0, 0);
        let bps = self.bps as f64;
        let next = if loss > HIGH_LOSS {
            bps * (1.0 - 0.5 * f64::from(loss))
        } else if loss < LOW_LOSS {
            bps * (1.0 + GROWTH_PER_SEC * elapsed.as_secs_f64().min(2.0))
        } else {
            bps
        };
        self.bps = (next.round() as u64).clamp(MIN_BPS, MAX_BPS);
        self.bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn second(e: &mut LossEstimate, now: &mut Instant, loss: &[f32]) -> u64 {
        *now += Duration::from_secs(1);
        for &l in loss {
            e.handle_loss(l);
        }
        e.poll(*now)
    }

    #[test]
    fn heavy_loss_halves_by_the_loss_low_loss_grows_slowly_between_it_holds() {
        let mut now = Instant::now();
        let mut e = LossEstimate::new(2_000_000);
        e.poll(now);
        // 40 % lost on average over two streams: down by a fifth.
        assert_eq!(second(&mut e, &mut now, &[0.5, 0.3]), 1_600_000);
        // 5 %: holds.
        assert_eq!(second(&mut e, &mut now, &[0.05]), 1_600_000);
        // Nothing lost: 8 % a second.
        assert_eq!(second(&mut e, &mut now, &[0.0, 0.0]), 1_728_000);
        // No reports (nothing sent): holds.
        assert_eq!(second(&mut e, &mut now, &[]), 1_728_000);
    }

    #[test]
    fn it_stays_between_its_bounds_and_ignores_nonsense() {
        let mut now = Instant::now();
        let mut e = LossEstimate::new(200_000);
        e.poll(now);
        for _ in 0..20 {
            second(&mut e, &mut now, &[1.0]);
        }
        assert_eq!(e.bps(), MIN_BPS);
        e.handle_loss(f32::NAN);
        assert_eq!(e.poll(now), MIN_BPS, "NaN is no report");
        for _ in 0..200 {
            second(&mut e, &mut now, &[0.0]);
        }
        assert_eq!(e.bps(), MAX_BPS);
    }
}
