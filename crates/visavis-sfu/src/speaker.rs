//! Who is speaking in a room, from the audio level each microphone packet carries (RFC 6464,
//! `-dBov`): per member a loudness that follows the peaks and decays over about a second (so
//! speech, with its pauses between syllables and words, keeps it up), and a change of speaker
//! only when someone else has been clearly the loudest for a while, so that a cough or two
//! people talking over each other do not make the highlight flicker. Silence (muted, or Opus
//! DTX sending nothing) decays the loudness with time. Also keeps the room's members in
//! order of when they last spoke, for "last N". Pure: the caller passes the time.

use std::time::{Duration, Instant};

use crate::MemberId;

/// Levels at or below this many dB under full scale count as silence (background noise).
const SILENCE_DBOV: u8 = 70;
/// Time constant of the decay.
const TAU: Duration = Duration::from_millis(1000);
/// Least smoothed loudness (0…1) of a speaker.
const MIN_SCORE: f32 = 0.12;
/// How much louder than the current speaker a newcomer must be to take over.
const TAKEOVER: f32 = 1.3;
/// How long a newcomer must be the loudest before it takes over.
const HOLD: Duration = Duration::from_millis(800);
/// How often the decision is made (levels come every 20 ms per member).
const DECIDE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
struct Level {
    member: MemberId,
    score: f32,
    at: Instant,
}

impl Level {
    /// The loudness decayed to `now` (no packet since means silence).
    fn at(&self, now: Instant) -> f32 {
        self.score * decay(now.saturating_duration_since(self.at))
    }
}

fn decay(d: Duration) -> f32 {
    (-d.as_secs_f32() / TAU.as_secs_f32()).exp()
}

/// One room's active speaker.
#[derive(Debug, Clone, Default)]
pub struct Speakers {
    levels: Vec<Level>,
    current: Option<MemberId>,
    /// The loudest one that is not the speaker, and since when it has been.
    challenger: Option<(MemberId, Instant)>,
    last_decision: Option<Instant>,
    /// Members, most recent speaker first (those who never spoke, in the order they came).
    recent: Vec<MemberId>,
}

impl Speakers {
    /// The speaker now.
    #[cfg(test)]
    pub fn current(&self) -> Option<MemberId> {
        self.current
    }

    /// Members by how recently they were the speaker, most recent first.
    pub fn recent(&self) -> &[MemberId] {
        &self.recent
    }

    pub fn add(&mut self, member: MemberId) {
        if !self.recent.contains(&member) {
            self.recent.push(member);
        }
    }

    pub fn remove(&mut self, member: MemberId) {
        self.recent.retain(|m| *m != member);
        self.levels.retain(|l| l.member != member);
        if self.current == Some(member) {
            self.current = None;
        }
        if self.challenger.is_some_and(|(m, _)| m == member) {
            self.challenger = None;
        }
    }

    /// One audio packet's level from `member`: `dbov` dB under full scale (0 loudest, 127
    /// silence). Returns the new speaker when it changed.
    pub fn handle_level(&mut self, now: Instant, member: MemberId, dbov: u8) -> Option<MemberId> {
        let loudness = f32::from(SILENCE_DBOV.saturating_sub(dbov)) / f32::from(SILENCE_DBOV);
        match self.levels.iter_mut().find(|l| l.member == member) {
            Some(level) => {
                level.score = level.at(now).max(loudness);
                level.at = now;
            }
            None => self.levels.push(Level {
                member,
                score: loudness,
                at: now,
            }),
        }
        self.poll(now)
    }

    /// Decides, at most every [`DECIDE_EVERY`]; returns the new speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<MemberId> {
        if self
            .last_decision
            .is_some_and(|t| now.saturating_duration_since(t) < DECIDE_EVERY)
        {
            return None;
        }
        self.last_decision = Some(now);
        let (loudest, score) = self
            .levels
            .iter()
            .map(|l| (l.member, l.at(now)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        let current_score = self
            .current
            .and_then(|c| self.levels.iter().find(|l| l.member == c))
            .map_or(0.0, |l| l.at(now));
        if Some(loudest) == self.current || score < MIN_SCORE || score < current_score * TAKEOVER {
            self.challenger = None;
            return None;
        }
        let since = match self.challenger {
            Some((m, since)) if m == loudest => since,
            _ => {
                self.challenger = Some((loudest, now));
                now
            }
        };
        // Nobody speaking yet: the first voice takes it at once.
        if self.current.is_some() && now.saturating_duration_since(since) < HOLD {
            return None;
        }
        self.current = Some(loudest);
        self.challenger = None;
        self.recent.retain(|m| *m != loudest);
        self.recent.insert(0, loudest);
        Some(loudest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `who` speak at `dbov` (the others are silent: DTX sends nothing) for `d`, 20 ms packets.
    fn talk(s: &mut Speakers, now: &mut Instant, who: &[(MemberId, u8)], d: Duration) -> Vec<MemberId> {
        let mut changes = Vec::new();
        let end = *now + d;
        while *now < end {
            *now += Duration::from_millis(20);
            for &(m, level) in who {
                changes.extend(s.handle_level(*now, m, level));
            }
            changes.extend(s.poll(*now));
        }
        changes
    }

    #[test]
    fn the_first_voice_is_the_speaker_and_a_clear_other_takes_over_after_a_while() {
        let mut s = Speakers::default();
        let mut now = Instant::now();
        for m in [1, 2, 3] {
            s.add(m);
        }
        assert_eq!(s.recent(), &[1, 2, 3]);
        let changes = talk(&mut s, &mut now, &[(2, 20), (1, 127)], Duration::from_secs(1));
        assert_eq!(changes, vec![2]);
        assert_eq!(s.recent(), &[2, 1, 3]);
        // 3 starts, 2 stops: 3 takes over, not at once.
        let changes = talk(&mut s, &mut now, &[(3, 25)], Duration::from_millis(300));
        assert!(changes.is_empty(), "not within the hold time");
        let changes = talk(&mut s, &mut now, &[(3, 25)], Duration::from_millis(1500));
        assert_eq!(changes, vec![3]);
        assert_eq!(s.current(), Some(3));
        assert_eq!(s.recent(), &[3, 2, 1]);
    }

    #[test]
    fn a_short_noise_does_not_take_over_nor_does_noise_below_the_floor() {
        let mut s = Speakers::default();
        let mut now = Instant::now();
        talk(&mut s, &mut now, &[(1, 25)], Duration::from_secs(1));
        assert_eq!(s.current(), Some(1));
        // 2 coughs for 200 ms while 1 goes on.
        let changes = talk(&mut s, &mut now, &[(1, 25), (2, 5)], Duration::from_millis(200));
        assert!(changes.is_empty());
        let changes = talk(&mut s, &mut now, &[(1, 25)], Duration::from_secs(1));
        assert!(changes.is_empty());
        // Background noise of someone else, 1 silent: no change either.
        let changes = talk(&mut s, &mut now, &[(2, 75)], Duration::from_secs(2));
        assert!(changes.is_empty());
        assert_eq!(
            s.current(),
            Some(1),
            "the last speaker stays highlighted through silence"
        );
    }

    #[test]
    fn two_talking_alike_do_not_flip_the_speaker() {
        let mut s = Speakers::default();
        let mut now = Instant::now();
        talk(&mut s, &mut now, &[(1, 30)], Duration::from_secs(1));
        let changes = talk(&mut s, &mut now, &[(1, 30), (2, 29)], Duration::from_secs(3));
        assert!(changes.is_empty());
    }

    #[test]
    fn one_who_leaves_is_forgotten() {
        let mut s = Speakers::default();
        let mut now = Instant::now();
        s.add(1);
        s.add(2);
        talk(&mut s, &mut now, &[(1, 20)], Duration::from_secs(1));
        s.remove(1);
        assert_eq!(s.current(), None);
        assert_eq!(s.recent(), &[2]);
        let changes = talk(&mut s, &mut now, &[(2, 20)], Duration::from_millis(200));
        assert_eq!(changes, vec![2]);
    }

    #[test]
    fn a_voice_with_pauses_takes_over_like_a_steady_one() {
        // Chromium's fake microphone: a 20 ms beep every 500 ms.
        let mut s = Speakers::default();
        let mut now = Instant::now();
        talk(&mut s, &mut now, &[(1, 20)], Duration::from_secs(1));
        let mut changes = Vec::new();
        for i in 0..150 {
            now += Duration::from_millis(20);
            let level = if i % 25 == 0 { 10 } else { 127 };
            changes.extend(s.handle_level(now, 2, level));
        }
        assert_eq!(changes, vec![2]);
    }
}
