// @ts-check
//! The ring tone of an incoming call, synthesised with Web Audio (no sound file to ship).

export class Ringer {
  constructor() {
    /** @type {AudioContext | null} */
    this.ctx = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    /** Chimes sounded so far. */
    this.chimes = 0;
  }

  /** Rings (two short tones every two seconds) until `stop`. */
  start() {
    this.stop();
    try {
      this.ctx = new AudioContext();
    } catch {
      return; // no audio output: the dialog alone has to do
    }
    const burst = () => {
      const ctx = this.ctx;
      if (!ctx) return;
      for (const [offset, freq] of [[0, 440], [0.45, 480]]) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = freq;
        gain.gain.value = 0.15;
        osc.connect(gain).connect(ctx.destination);
        osc.start(ctx.currentTime + offset);
        osc.stop(ctx.currentTime + offset + 0.4);
      }
    };
    burst();
    this.timer = setInterval(burst, 2000);
  }

  /**
   * One short two-tone chime (someone knocks at a private room), apart from the ring tone.
   * Counted in `chimes`, so tests can tell it sounded.
   */
  chime() {
    this.chimes += 1;
    /** @type {AudioContext} */
    let ctx;
    try {
      ctx = new AudioContext();
    } catch {
      return;
    }
    for (const [offset, freq] of [[0, 660], [0.18, 880]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.12;
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + offset);
      osc.stop(ctx.currentTime + offset + 0.15);
    }
    setTimeout(() => ctx.close().catch(() => {}), 600);
  }

  /** True while ringing: tests and the UI can tell. */
  get ringing() {
    return this.ctx !== null;
  }

  stop() {
    clearInterval(this.timer);
    this.ctx?.close().catch(() => {});
    this.ctx = null;
  }
}
