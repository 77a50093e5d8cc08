// @ts-check
//! How a call's media is going, from one peer connection's `getStats`: samples every two
//! seconds (round-trip time, received loss, freezes, the selected candidate pair) and the
//! summary sent as `call_quality` when the call ends (docs/protocol.md). Touches no DOM.

/** How often a sample is taken. */
export const SAMPLE_EVERY_MS = 2000;

/**
 * @typedef {import('./protocol.js').QualityReport} QualityReport
 *
 * One sample: the network as it was over the last interval.
 * @typedef {object} QualitySample
 * @property {number | null} rttMs the selected pair's current round-trip time
 * @property {number} lossPermille received packets lost in the interval, all kinds together
 * @property {number} freezes received video freezes so far
 * @property {QualityReport['path'] | null} path the selected local candidate's type
 * @property {QualityReport['transport'] | null} transport UDP, TCP, or TLS to a TURN server
 */

export class QualityMeter {
  /** @param {RTCPeerConnection} pc */
  constructor(pc) {
    this.pc = pc;
    /** @type {QualitySample[]} */
    this.samples = [];
    /** Packets received and lost so far, per inbound stream, for the next interval's loss. */
    this.counted = new Map();
    this.timer = setInterval(() => this.sample().catch(() => {}), SAMPLE_EVERY_MS);
    // One sample at once: the pair is selected by now, so even a call hung up within the
    // first interval has a path to report.
    this.sample().catch(() => {});
  }

  /** Takes one sample (also called by the interval). */
  async sample() {
    if (this.pc.connectionState === 'closed') return;
    const stats = await this.pc.getStats();
    /** @type {any} */
    let pair = null;
    let received = 0;
    let lost = 0;
    let freezes = 0;
    stats.forEach((/** @type {any} */ s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      if (s.type === 'inbound-rtp') {
        const before = this.counted.get(s.id) ?? { received: 0, lost: 0 };
        received += (s.packetsReceived ?? 0) - before.received;
        lost += Math.max(0, (s.packetsLost ?? 0) - before.lost);
        this.counted.set(s.id, { received: s.packetsReceived ?? 0, lost: s.packetsLost ?? 0 });
        if (s.kind === 'video') freezes += s.freezeCount ?? 0;
      }
    });
    const local = pair ? stats.get(pair.localCandidateId) : null;
    /** @type {QualitySample} */
    const sample = {
      rttMs: typeof pair?.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null,
      lossPermille: received + lost > 0 ? Math.round((1000 * lost) / (received + lost)) : 0,
      freezes,
      path: local?.candidateType ?? null,
      transport: !local ? null
        : local.candidateType === 'relay' ? (local.relayProtocol ?? 'udp')
        : (local.protocol ?? 'udp'),
    };
    this.samples.push(sample);
    return sample;
  }

  /**
   * The call's summary, from the samples so far; null if none saw a selected pair.
   * @returns {QualityReport | null}
   */
  summary() {
    const seen = this.samples.filter((s) => s.path && s.transport);
    const last = seen.at(-1);
    if (!last || !last.path || !last.transport) return null;
    const rtts = seen.map((s) => s.rttMs).filter((r) => r !== null).map((r) => Math.min(r ?? 0, 60_000));
    const losses = seen.map((s) => Math.min(s.lossPermille, 1000));
    const average = (/** @type {number[]} */ xs) => (xs.length ? Math.round(xs.reduce((a, b) => a + b, 0) / xs.length) : 0);
    return {
      path: last.path,
      transport: last.transport,
      rttAvgMs: average(rtts),
      rttMaxMs: Math.max(0, ...rtts),
      lossAvgPermille: average(losses),
      lossMaxPermille: Math.max(0, ...losses),
      freezes: Math.min(last.freezes, 100_000),
    };
  }

  stop() {
    clearInterval(this.timer);
  }
}
