//! The media a bot publishes: recordings (frames as a Chromium sent them, stored by
//! `visavis-bot record`), a synthetic stand-in for tests without a browser, and the replay
//! schedule that loops a recording and jumps to a keyframe when one is asked for.
//!
//! File format (little-endian): the magic line, then for each frame: kind (0 audio, 1 video),
//! keyframe flag, offset in microseconds from the recording's first keyframe, length, bytes.

use std::io::{Read, Write};
use std::time::Duration;

/// The first bytes of a recording file.
pub const MAGIC: &[u8] = b"VISAVIS-BOT-REC 1\n";
/// Largest frame accepted when reading a recording (a 720p VP8 keyframe is well under this).
pub const MAX_FRAME: usize = 1 << 20;
/// Largest recording read, in frames (ten minutes of 30 fps video with 50 fps audio).
pub const MAX_FRAMES: usize = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Audio,
    Video,
}

/// One encoded frame, as a depacketizer hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub keyframe: bool,
    /// From the start of the recording.
    pub offset: Duration,
    pub data: Vec<u8>,
}

/// A recording: frames in time order, starting with a video keyframe.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub frames: Vec<Frame>,
}

impl Recording {
    /// How long one pass takes: the last frame's offset plus one video frame interval, so a
    /// loop does not show the last and first frames at once.
    pub fn duration(&self) -> Duration {
        self.frames
            .last()
            .map_or(Duration::ZERO, |f| f.offset + Duration::from_millis(33))
    }

    pub fn write_to(&self, mut out: impl Write) -> std::io::Result<()> {
        out.write_all(MAGIC)?;
        for f in &self.frames {
            out.write_all(&[matches!(f.kind, Kind::Video) as u8, f.keyframe as u8])?;
            out.write_all(&(f.offset.as_micros() as u64).to_le_bytes())?;
            out.write_all(&(f.data.len() as u32).to_le_bytes())?;
            out.write_all(&f.data)?;
        }
        out.flush()
    }

    pub fn read_from(mut input: impl Read) -> std::io::Result<Self> {
        let bad = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
        let mut magic = vec![0; MAGIC.len()];
        input.read_exact(&mut magic)?;
        if magic != MAGIC {
            return Err(bad("not a visavis-bot recording"));
        }
        let mut frames = Vec::new();
        loop {
            let mut head = [0u8; 14];
            match input.read_exact(&mut head[..1]) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                r => r?,
            }
            input.read_exact(&mut head[1..])?;
            let len = u32::from_le_bytes([head[10], head[11], head[12], head[13]]) as usize;
            if len > MAX_FRAME || frames.len() >= MAX_FRAMES {
                return Err(bad("frame or recording too large"));
            }
            let mut data = vec![0; len];
            input.read_exact(&mut data)?;
            let mut offset = [0u8; 8];
            offset.copy_from_slice(&head[2..10]);
            frames.push(Frame {
                kind: if head[0] == 1 { Kind::Video } else { Kind::Audio },
                keyframe: head[1] == 1,
                offset: Duration::from_micros(u64::from_le_bytes(offset)),
                data,
            });
        }
        if !frames.iter().any(|f| f.kind == Kind::Video && f.keyframe) {
            return Err(bad("the recording holds no video keyframe"));
        }
        Ok(Self { frames })
    }

    /// Media no decoder would show, but shaped like the real thing for the SFU and the
    /// receiving bots: 30 fps VP8 with a keyframe a second (valid VP8 frame headers, 1,200-byte
    /// keyframes, 400-byte others, about 100 kbit/s) and 50 fps Opus-sized audio. For tests and
    /// benchmarks that run without a browser to record from.
    pub fn synthetic(seconds: u32) -> Self {
        let mut frames = Vec::new();
        for ms in (0..seconds * 1000).step_by(20) {
            // Opus TOC 0xf8: CELT fullband 20 ms, one frame; then filler.
            let mut data = vec![0xf8, 0xff, 0xfe];
            data.resize(60, 0);
            frames.push(Frame {
                kind: Kind::Audio,
                keyframe: false,
                offset: Duration::from_millis(ms as u64),
                data,
            });
        }
        for i in 0..seconds * 30 {
            let keyframe = i % 30 == 0;
            // VP8 frame tag: bit 0 clear for a keyframe, show_frame set; a keyframe carries
            // the start code and a 640x480 size.
            let mut data = if keyframe {
                vec![0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]
            } else {
                vec![0x51, 0x01, 0x00]
            };
            data.resize(if keyframe { 1200 } else { 400 }, (i % 251) as u8);
            frames.push(Frame {
                kind: Kind::Video,
                keyframe,
                offset: Duration::from_micros(i as u64 * 1_000_000 / 30),
                data,
            });
        }
        frames.sort_by_key(|f| (f.offset, f.kind == Kind::Audio));
        Self { frames }
    }
}

/// Collects frames into a recording: everything before the first video keyframe is dropped,
/// and offsets count from it.
#[derive(Debug, Default)]
pub struct Recorder {
    start: Option<Duration>,
    pub recording: Recording,
}

impl Recorder {
    /// `at` is the frame's time on any one clock (the receive time).
    pub fn push(&mut self, kind: Kind, keyframe: bool, at: Duration, data: &[u8]) {
        if self.start.is_none() && kind == Kind::Video && keyframe {
            self.start = Some(at);
        }
        let Some(start) = self.start else { return };
        if self.recording.frames.len() >= MAX_FRAMES {
            return;
        }
        self.recording.frames.push(Frame {
            kind,
            keyframe,
            offset: at.saturating_sub(start),
            data: data.to_vec(),
        });
    }

    pub fn video_frames(&self) -> usize {
        self.recording
            .frames
            .iter()
            .filter(|f| f.kind == Kind::Video)
            .count()
    }
}

/// Where one of a bot's tracks (audio or video) is in its recording: which frame is next, and
/// how far its timeline has moved (whole loops, and jumps to a keyframe). Pure: the caller says
/// what time it is (since the bot started publishing).
#[derive(Debug, Clone)]
pub struct Replay {
    kind: Kind,
    next: usize,
    /// Microseconds added to recorded offsets; negative after a jump ahead to a keyframe.
    shift_us: i64,
    keyframe_wanted: bool,
}

/// A frame due now, and the media time to stamp it with (never going back).
#[derive(Debug, Clone, Copy)]
pub struct Due<'a> {
    pub frame: &'a Frame,
    pub time: Duration,
}

impl Replay {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            next: 0,
            shift_us: 0,
            keyframe_wanted: false,
        }
    }

    /// A receiver lost the picture: video continues from the recording's next keyframe (a
    /// recording cannot make one on demand).
    pub fn want_keyframe(&mut self) {
        self.keyframe_wanted = self.kind == Kind::Video;
    }

    fn time(&self, frame: &Frame) -> Duration {
        Duration::from_micros((frame.offset.as_micros() as i64 + self.shift_us).max(0) as u64)
    }

    /// When this track's next frame is due (`None` for a recording without one).
    pub fn next_due(&mut self, rec: &Recording) -> Option<Duration> {
        self.skip_others(rec)?;
        Some(self.time(&rec.frames[self.next]))
    }

    /// Moves to this track's next frame; `None` when the recording has none of its kind.
    fn skip_others(&mut self, rec: &Recording) -> Option<()> {
        for _ in 0..=rec.frames.len() {
            let frame = rec.frames.get(self.next)?;
            if frame.kind == self.kind {
                return Some(());
            }
            self.advance(rec);
        }
        None
    }

    /// The next frame if it is due at `elapsed`; call until `None`.
    pub fn poll<'a>(&mut self, rec: &'a Recording, elapsed: Duration) -> Option<Due<'a>> {
        self.skip_others(rec)?;
        let frame = &rec.frames[self.next];
        let time = self.time(frame);
        if time > elapsed {
            return None;
        }
        if self.keyframe_wanted && !frame.keyframe {
            // Jump to the next keyframe of this pass, stamped with this frame's time, so the
            // timeline goes on smoothly; with none left, the next pass starts on one.
            if let Some(k) = (self.next..rec.frames.len())
                .find(|&i| rec.frames[i].kind == Kind::Video && rec.frames[i].keyframe)
            {
                self.shift_us -= (rec.frames[k].offset - frame.offset).as_micros() as i64;
                self.next = k;
            }
        }
        let frame = &rec.frames[self.next];
        if frame.keyframe {
            self.keyframe_wanted = false;
        }
        self.advance(rec);
        Some(Due { frame, time })
    }

    fn advance(&mut self, rec: &Recording) {
        self.next += 1;
        if self.next == rec.frames.len() {
            self.next = 0;
            self.shift_us += rec.duration().as_micros() as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_survives_its_file_format() {
        let rec = Recording::synthetic(2);
        let mut buf = Vec::new();
        rec.write_to(&mut buf).unwrap();
        let back = Recording::read_from(&buf[..]).unwrap();
        assert_eq!(back.frames, rec.frames);
        assert!(Recording::read_from(&b"nonsense"[..]).is_err());
        assert!(Recording::read_from(&buf[..40]).is_err());
    }

    #[test]
    fn the_recorder_starts_at_the_first_video_keyframe() {
        let mut r = Recorder::default();
        r.push(Kind::Audio, false, Duration::from_millis(5), b"a");
        r.push(Kind::Video, false, Duration::from_millis(10), b"d");
        r.push(Kind::Video, true, Duration::from_millis(40), b"k");
        r.push(Kind::Audio, false, Duration::from_millis(50), b"a");
        let f = &r.recording.frames;
        assert_eq!(f.len(), 2);
        assert!(f[0].keyframe);
        assert_eq!(f[1].offset, Duration::from_millis(10));
    }

    #[test]
    fn replay_loops_with_rising_times_and_jumps_to_a_keyframe_when_asked() {
        let rec = Recording::synthetic(2);
        for kind in [Kind::Audio, Kind::Video] {
            let mut replay = Replay::new(kind);
            let mut last = None;
            let mut count = 0;
            // Three passes: times never go back, and every frame comes out once a pass.
            for ms in 0..6000 {
                while let Some(due) = replay.poll(&rec, Duration::from_millis(ms)) {
                    assert_eq!(due.frame.kind, kind);
                    assert!(last.is_none_or(|l| due.time >= l));
                    last = Some(due.time);
                    count += 1;
                }
            }
            let expected = if kind == Kind::Video { 178..=181 } else { 298..=301 };
            assert!(expected.contains(&count), "{kind:?} {count}");
        }

        // Asked for a keyframe mid-second: the next video frame out is one, on time.
        let mut replay = Replay::new(Kind::Video);
        while replay.poll(&rec, Duration::from_millis(300)).is_some() {}
        replay.want_keyframe();
        let due = replay.poll(&rec, Duration::from_millis(5000)).unwrap();
        assert!(due.frame.keyframe);
        assert!(due.time <= Duration::from_millis(334), "{:?}", due.time);
        // And the frames after it follow at the recorded pace.
        let after = replay.poll(&rec, Duration::from_millis(5000)).unwrap();
        assert_eq!(after.time - due.time, Duration::from_micros(33_333));
    }
}
