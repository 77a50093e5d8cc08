// @ts-check
//! How a call's media is going, from one peer connection's `getStats`: samples every two
//! seconds (round-trip time, loss both ways, jitter, bitrate, received resolution and frame
//! rate, freezes, the selected candidate pair), the last minute of them for live display, the
//! summary sent as `call_quality` when the call ends (docs/protocol.md), and the pure
//! functions that turn samples into what a person is shown: a level of 0–4 bars per
//! connection, and whether one's own network is the problem. Touches no DOM.

/** How often a sample is taken. */
export const SAMPLE_EVERY_MS = 2000;
/** Packets of one kind in an interval before its loss counts on its own (a few packets of
 *  silent audio, one lost, are no 50 % loss). */
const LOSS_MIN_PACKETS = 20;
/** How much history is kept for live graphs. */
export const HISTORY_MS = 60_000;

/**
 * @typedef {import('./protocol.js').QualityReport} QualityReport
 *
 * One sample: the network as it was over the last interval.
 * @typedef {object} QualitySample
 * @property {number} at when it was taken (ms, `Date.now()`)
 * @property {number | null} rttMs the selected pair's current round-trip time
 * @property {number} lossPermille received packets lost in the interval: the worse of audio and
 *   video (a kind counts once it had LOSS_MIN_PACKETS in the interval), since video's
 *   retransmissions recover much of its loss while audio's is heard
 * @property {number | null} outLossPermille of the packets we sent, the share the other side
 *   reported lost (its latest receiver reports, the worst kind); null before any report
 * @property {number | null} jitterMs the received audio's jitter (video's when there is no
 *   audio: a video frame leaves in a burst of packets, which inflates its figure)
 * @property {number} inKbps received bitrate over the interval, all streams
 * @property {number} outKbps sent bitrate over the interval, all streams
 * @property {number | null} availableOutKbps the sender's bandwidth estimate for this path
 * @property {number | null} width received video (the largest stream), if any
 * @property {number | null} height
 * @property {number | null} fps received video frames per second
 * @property {number} freezes received video freezes so far
 * @property {QualityReport['path'] | null} path the selected local candidate's type
 * @property {QualityReport['transport'] | null} transport UDP, TCP, or TLS to a TURN server
 */

/**
 * Bars for one connection, 0 (unusable) to 4 (excellent): the worst of round-trip time, loss
 * either way and jitter, each against thresholds where a call starts to suffer (ITU-T G.114
 * puts the limit for interactive speech near 150 ms one way; a few percent loss is audible,
 * more than ten makes video freeze). Null before anything is known.
 * @param {QualitySample | null | undefined} s
 * @returns {0 | 1 | 2 | 3 | 4 | null}
 */
export function qualityLevel(s) {
  if (!s || (s.rttMs === null && s.inKbps === 0)) return null;
  const loss = Math.max(s.lossPermille, s.outLossPermille ?? 0);
  /** @param {number | null} x @param {number[]} limits ascending: 4 bars below the first */
  const grade = (x, limits) => (x === null ? 4 : 4 - limits.filter((l) => x >= l).length);
  return /** @type {0 | 1 | 2 | 3 | 4} */ (Math.min(
    grade(s.rttMs, [150, 300, 500, 1000]),
    grade(loss, [10, 30, 80, 150]),
    grade(s.jitterMs, [30, 50, 100, 200]),
  ));
}

/**
 * The latest sample with its round-trip time, loss, jitter and bandwidth estimate replaced by
 * the median of the last `n` samples: what the bars and warnings show, so that one bad
 * two-second interval (a burst of loss, a late report) neither flashes a warning nor hides a
 * lasting problem for long. Null without samples.
 * @param {QualitySample[]} samples oldest first
 * @param {number} [n]
 * @returns {QualitySample | null}
 */
export function steady(samples, n = 3) {
  const last = samples.slice(-n);
  const latest = last.at(-1);
  if (!latest) return null;
  /** @param {(s: QualitySample) => number | null} pick */
  const median = (pick) => {
    const xs = last.map(pick).filter((x) => x !== null).sort((a, b) => /** @type {number} */ (a) - /** @type {number} */ (b));
    return xs.length ? /** @type {number} */ (xs[Math.floor((xs.length - 1) / 2)]) : null;
  };
  return {
    ...latest,
    rttMs: median((s) => s.rttMs),
    lossPermille: median((s) => s.lossPermille) ?? 0,
    outLossPermille: median((s) => s.outLossPermille),
    jitterMs: median((s) => s.jitterMs),
    availableOutKbps: median((s) => s.availableOutKbps),
  };
}

/**
 * The word for a level, for the bars' accessible name and the details panel.
 * @param {number | null} level
 * @returns {'good' | 'fair' | 'poor' | 'unknown'}
 */
export function levelWord(level) {
  if (level === null) return 'unknown';
  return level >= 3 ? 'good' : level === 2 ? 'fair' : 'poor';
}

/**
 * Whose network is the trouble, from the latest sample of each connection of a call (1:1:
 * one; a group call: one per other person).
 *
 * - `own`: this side's network. Every connection is in trouble (1 bar or less), and the others
 *   report losing what we send or our bandwidth estimate is very low — or there are two
 *   connections or more, all in trouble (what they share is us). In a 1:1 call loss on the way
 *   to the other side cannot be told apart from their downlink; it is put to us, so each side
 *   is shown the direction it sends in, and the common case (a weak upload) is named right.
 * - `poor`: the others whose connection is in trouble when it is not ours: what they send us
 *   is lost or late, while what we send them gets through.
 * @template K
 * @param {Map<K, QualitySample | null | undefined>} latest
 * @returns {{own: boolean, poor: K[]}}
 */
export function diagnose(latest) {
  /** @type {{key: K, sample: QualitySample}[]} */
  const known = [];
  for (const [key, sample] of latest) if (sample && qualityLevel(sample) !== null) known.push({ key, sample });
  const troubled = known.filter(({ sample }) => /** @type {number} */ (qualityLevel(sample)) <= 1);
  const sendsBadly = (/** @type {QualitySample} */ s) =>
    (s.outLossPermille ?? 0) >= 50 || (s.availableOutKbps !== null && s.availableOutKbps < 100);
  const own = known.length > 0 && troubled.length === known.length
    && (known.length >= 2 || known.some(({ sample }) => sendsBadly(sample)));
  return { own, poor: own ? [] : troubled.map(({ key }) => key) };
}

export class QualityMeter {
  /**
   * @param {RTCPeerConnection} pc
   * @param {(sample: QualitySample) => void} [onSample] told of each sample as it is taken
   */
  constructor(pc, onSample) {
    this.pc = pc;
    this.onSample = onSample;
    /** @type {QualitySample[]} the last minute's samples, oldest first */
    this.samples = [];
    /** Running totals of the samples that saw a selected pair, for the summary. */
    this.totals = { rttSum: 0, rttCount: 0, rttMax: 0, lossSum: 0, lossMax: 0, count: 0 };
    /** @type {QualitySample | null} the last sample that saw a selected pair */
    this.lastSeen = null;
    /** Counters at the previous sample, per stream, for the interval's deltas. */
    this.counted = new Map();
    /** @type {number | null} when the previous sample was taken (stats timestamp, ms) */
    this.previousAt = null;
    this.timer = setInterval(() => this.sample().catch(() => {}), SAMPLE_EVERY_MS);
    // One sample at once: the pair is selected by now, so even a call hung up within the
    // first interval has a path to report.
    this.sample().catch(() => {});
  }

  /** Takes one sample (also called by the interval). */
  async sample() {
    if (this.pc.connectionState === 'closed') return;
    const stats = await this.pc.getStats();
    const now = performance.now();
    const seconds = this.previousAt === null ? 0 : (now - this.previousAt) / 1000;
    this.previousAt = now;
    /** @type {any} */
    let pair = null;
    /** Packets received and lost in the interval, by kind. */
    const packets = { audio: { received: 0, lost: 0 }, video: { received: 0, lost: 0 } };
    let freezes = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    /** @type {number | null} */
    let jitter = null;
    /** @type {number | null} */
    let videoJitter = null;
    /** @type {number | null} */
    let outLoss = null;
    /** @type {any} */
    let video = null;
    /** The growth of a counter since the last sample (0 the first time). */
    const delta = (/** @type {string} */ id, /** @type {string} */ field, /** @type {number} */ value) => {
      const key = `${id}/${field}`;
      const before = this.counted.get(key);
      this.counted.set(key, value);
      return before === undefined ? 0 : Math.max(0, value - before);
    };
    stats.forEach((/** @type {any} */ s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      if (s.type === 'inbound-rtp') {
        const kind = packets[s.kind === 'audio' ? 'audio' : 'video'];
        kind.received += delta(s.id, 'received', s.packetsReceived ?? 0);
        kind.lost += delta(s.id, 'lost', s.packetsLost ?? 0);
        bytesIn += delta(s.id, 'bytes', s.bytesReceived ?? 0);
        if (typeof s.jitter === 'number' && s.kind === 'audio') jitter = Math.max(jitter ?? 0, s.jitter * 1000);
        if (typeof s.jitter === 'number' && s.kind === 'video') videoJitter = Math.max(videoJitter ?? 0, s.jitter * 1000);
        if (s.kind === 'video') {
          freezes += s.freezeCount ?? 0;
          if ((s.frameWidth ?? 0) > (video?.frameWidth ?? -1)) video = s;
        }
      }
      if (s.type === 'outbound-rtp') bytesOut += delta(s.id, 'bytes', s.bytesSent ?? 0);
      if (s.type === 'remote-inbound-rtp' && typeof s.fractionLost === 'number') {
        outLoss = Math.max(outLoss ?? 0, Math.round(s.fractionLost * 1000));
      }
    });
    jitter ??= videoJitter;
    const permille = (/** @type {{received: number, lost: number}} */ p) =>
      (p.received + p.lost > 0 ? Math.round((1000 * p.lost) / (p.received + p.lost)) : 0);
    const all = { received: packets.audio.received + packets.video.received, lost: packets.audio.lost + packets.video.lost };
    const kinds = [packets.audio, packets.video].filter((p) => p.received + p.lost >= LOSS_MIN_PACKETS);
    const local = pair ? stats.get(pair.localCandidateId) : null;
    const kbps = (/** @type {number} */ bytes) => (seconds > 0 ? Math.round((bytes * 8) / seconds / 1000) : 0);
    /** @type {QualitySample} */
    const sample = {
      at: Date.now(),
      rttMs: typeof pair?.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null,
      lossPermille: kinds.length ? Math.max(...kinds.map(permille)) : permille(all),
      outLossPermille: outLoss,
      jitterMs: jitter === null ? null : Math.round(jitter),
      inKbps: kbps(bytesIn),
      outKbps: kbps(bytesOut),
      availableOutKbps: typeof pair?.availableOutgoingBitrate === 'number' ? Math.round(pair.availableOutgoingBitrate / 1000) : null,
      width: video?.frameWidth ?? null,
      height: video?.frameHeight ?? null,
      fps: video ? Math.round(video.framesPerSecond ?? 0) : null,
      freezes,
      path: local?.candidateType ?? null,
      transport: !local ? null
        : local.candidateType === 'relay' ? (local.relayProtocol ?? 'udp')
        : (local.protocol ?? 'udp'),
    };
    this.samples.push(sample);
    while (this.samples.length && this.samples[0].at < sample.at - HISTORY_MS) this.samples.shift();
    if (sample.path && sample.transport) this.count(sample);
    this.onSample?.(sample);
    return sample;
  }

  /** @param {QualitySample} s a sample that saw a selected pair */
  count(s) {
    const t = this.totals;
    t.count += 1;
    if (s.rttMs !== null) {
      const rtt = Math.min(s.rttMs, 60_000);
      t.rttSum += rtt;
      t.rttCount += 1;
      t.rttMax = Math.max(t.rttMax, rtt);
    }
    const loss = Math.min(s.lossPermille, 1000);
    t.lossSum += loss;
    t.lossMax = Math.max(t.lossMax, loss);
    this.lastSeen = s;
  }

  /** The latest sample, if any. */
  get latest() {
    return this.samples.at(-1) ?? null;
  }

  /**
   * The call's summary, from the samples so far; null if none saw a selected pair.
   * @returns {QualityReport | null}
   */
  summary() {
    const last = this.lastSeen;
    if (!last || !last.path || !last.transport) return null;
    const t = this.totals;
    return {
      path: last.path,
      transport: last.transport,
      rttAvgMs: t.rttCount ? Math.round(t.rttSum / t.rttCount) : 0,
      rttMaxMs: t.rttMax,
      lossAvgPermille: Math.round(t.lossSum / t.count),
      lossMaxPermille: t.lossMax,
      freezes: Math.min(last.freezes, 100_000),
    };
  }

  stop() {
    clearInterval(this.timer);
  }
}
