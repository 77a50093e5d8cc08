// @ts-check
//! The pre-join screen, beside the landing form: a camera preview, a microphone level meter,
//! the camera / microphone / speaker pickers (labelled once the browser allowed access), a test
//! sound on the chosen speaker, and the "Join muted" / "Join with camera off" choices. Every
//! call starts with those choices and devices, and they are remembered on this device
//! (localStorage). Without a camera it says why (no secure context, access refused, none there).

import { listDevices, openLocalMedia } from '../sdk/media.js';
import { t } from './i18n.js';

const STORAGE_KEY = 'visavis.callPrefs';
/** How often the level meter reads the microphone. */
const METER_MS = 100;
/** What the meter keeps of its value from one sample to the next (it falls to a tenth in 1.4 s). */
const METER_FALLOFF = 0.85;

/**
 * How calls start: muted, camera off, and the devices picked ('' for the default).
 * @typedef {{muted: boolean, cameraOff: boolean, camera: string, microphone: string, speaker: string}} CallPrefs
 */

/** The choices made on the pre-join screen (remembered on this device). @returns {CallPrefs} */
export function callPrefs() {
  /** @type {CallPrefs} */
  const prefs = { muted: false, cameraOff: false, camera: '', microphone: '', speaker: '' };
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}');
    for (const key of /** @type {(keyof CallPrefs)[]} */ (Object.keys(prefs))) {
      if (typeof saved[key] === typeof prefs[key]) /** @type {any} */ (prefs)[key] = saved[key];
    }
  } catch {
    // nothing remembered, or something unreadable: the defaults
  }
  return prefs;
}

/** @param {Partial<CallPrefs>} change */
function savePrefs(change) {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ ...callPrefs(), ...change }));
}

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class PreJoin {
  constructor() {
    this.video = /** @type {HTMLVideoElement} */ (byId('preview'));
    this.meter = /** @type {HTMLMeterElement} */ (byId('mic-level'));
    this.toggle = /** @type {HTMLButtonElement} */ (byId('prejoin-toggle'));
    this.cameraSelect = /** @type {HTMLSelectElement} */ (byId('pj-camera'));
    this.micSelect = /** @type {HTMLSelectElement} */ (byId('pj-microphone'));
    this.speakerSelect = /** @type {HTMLSelectElement} */ (byId('pj-speaker'));
    this.mutedBox = /** @type {HTMLInputElement} */ (byId('join-muted'));
    this.cameraOffBox = /** @type {HTMLInputElement} */ (byId('join-camera-off'));
    /** The preview runs (or is opening). */
    this.running = false;
    /** @type {MediaStreamTrack[]} */
    this.tracks = [];
    /** @type {import('../sdk/media.js').MediaProblem[]} */
    this.problems = [];
    /** @type {AudioContext | null} */
    this.audio = null;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    /** Test sounds played, for the browser tests. */
    this.played = 0;

    const prefs = callPrefs();
    this.mutedBox.checked = prefs.muted;
    this.cameraOffBox.checked = prefs.cameraOff;
    this.mutedBox.onchange = () => savePrefs({ muted: this.mutedBox.checked });
    this.cameraOffBox.onchange = () => savePrefs({ cameraOff: this.cameraOffBox.checked });
    this.toggle.onclick = () => (this.running ? this.stop() : this.start());
    this.cameraSelect.onchange = () => this.pick({ camera: this.cameraSelect.value });
    this.micSelect.onchange = () => this.pick({ microphone: this.micSelect.value });
    this.speakerSelect.onchange = () => savePrefs({ speaker: this.speakerSelect.value });
    byId('test-sound').onclick = () => this.testSound();
    this.render();
  }

  /** Opens the camera and microphone picked (the defaults at first) for the preview. */
  async start() {
    this.running = true;
    this.problems = [];
    this.render();
    const prefs = callPrefs();
    const opened = await openLocalMedia({ audioInput: prefs.microphone || undefined, videoInput: prefs.camera || undefined });
    const tracks = /** @type {MediaStreamTrack[]} */ ([opened.audio, opened.video].filter((x) => x !== null));
    if (!this.running) {
      for (const track of tracks) track.stop(); // stopped (or joined) meanwhile
      return;
    }
    this.tracks = tracks;
    this.problems = opened.problems;
    this.video.srcObject = opened.video ? new MediaStream([opened.video]) : null;
    if (opened.audio) this.listen(opened.audio);
    // With access granted, the devices have their names.
    await this.refreshDevices();
    this.render();
    byId('prejoin-devices').querySelector('select')?.focus();
  }

  /**
   * The microphone level, as a meter that moves with the voice (the RMS of the samples).
   * @param {MediaStreamTrack} track
   */
  listen(track) {
    const Ctx = window.AudioContext;
    if (!Ctx) return;
    const ctx = new Ctx();
    this.audio = ctx;
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 1024;
    ctx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    this.timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
      // Speech sits around 0.02–0.2 RMS: scaled so a normal voice fills most of the meter.
      // The meter falls back slowly (like a VU meter) so short sounds, which land between two
      // samples' windows, are seen rather than flickering by.
      this.meter.value = Math.max(Math.min(1, rms * 5), this.meter.value * METER_FALLOFF);
    }, METER_MS);
  }

  /** Releases the camera and microphone (on "Stop the check", and when joining). */
  stop() {
    this.running = false;
    clearInterval(this.timer);
    this.audio?.close().catch(() => {});
    this.audio = null;
    for (const track of this.tracks) track.stop();
    this.tracks = [];
    this.video.srcObject = null;
    this.meter.value = 0;
    this.render();
  }

  /**
   * Another camera or microphone picked: remembered, and the preview shows it.
   * @param {Partial<CallPrefs>} change
   */
  async pick(change) {
    savePrefs(change);
    if (!this.running) return;
    this.stop();
    await this.start();
  }

  async refreshDevices() {
    const { cameras, microphones, speakers } = await listDevices();
    const prefs = callPrefs();
    const current = (/** @type {'audio' | 'video'} */ kind) =>
      this.tracks.find((track) => track.kind === kind)?.getSettings().deviceId ?? '';
    fill(this.cameraSelect, cameras, prefs.camera || current('video'));
    fill(this.micSelect, microphones, prefs.microphone || current('audio'));
    fill(this.speakerSelect, speakers, prefs.speaker);
    byId('pj-speaker-row').hidden = speakers.length === 0;
  }

  /** A short chime on the chosen speaker. */
  async testSound() {
    const sound = /** @type {HTMLAudioElement & {setSinkId?: (id: string) => Promise<void>}} */ (new Audio(chimeUrl()));
    const speaker = callPrefs().speaker;
    if (speaker && sound.setSinkId) await sound.setSinkId(speaker).catch(() => {});
    try {
      await sound.play();
      this.played += 1;
      byId('test-sound-status').textContent = t('testSoundPlayed');
    } catch (err) {
      console.warn('test sound', err);
    }
  }

  /** Every text from the current state (also on a language change). */
  render() {
    this.toggle.textContent = this.running ? t('prejoinStop') : t('prejoinStart');
    this.toggle.setAttribute('aria-expanded', String(this.running));
    this.video.setAttribute('aria-label', t('preview'));
    byId('prejoin-devices').hidden = !this.running;
    byId('preview-box').hidden = !this.running;
    const problem = this.problems[0];
    byId('prejoin-problem').textContent = problem ? t(`prejoin.${problem}`) : '';
    for (const select of [this.cameraSelect, this.micSelect, this.speakerSelect]) {
      const first = select.options[0];
      if (first && first.value === '') first.textContent = t('defaultDevice');
    }
  }
}

/**
 * Refills a picker, keeping `selected`. The first option is the browser's default device.
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices
 * @param {string} selected
 */
function fill(select, devices, selected) {
  const options = [new Option(t('defaultDevice'), '')];
  devices.forEach((d, i) => options.push(new Option(d.label || `${i + 1}`, d.deviceId)));
  select.replaceChildren(...options);
  if (devices.some((d) => d.deviceId === selected)) select.value = selected;
}

/** @type {string | null} */
let chime = null;

/** A WAV file of a soft two-tone chime, made once in memory (nothing is fetched). */
function chimeUrl() {
  if (chime) return chime;
  const rate = 16000;
  const seconds = 0.8;
  const n = Math.floor(rate * seconds);
  const buffer = new ArrayBuffer(44 + n * 2);
  const view = new DataView(buffer);
  const text = (/** @type {number} */ at, /** @type {string} */ s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, 'RIFF');
  view.setUint32(4, 36 + n * 2, true);
  text(8, 'WAVEfmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, 'data');
  view.setUint32(40, n * 2, true);
  for (let i = 0; i < n; i++) {
    const time = i / rate;
    const freq = time < seconds / 2 ? 660 : 880;
    const envelope = Math.min(1, time * 50) * Math.exp(-4 * (time % (seconds / 2)));
    view.setInt16(44 + i * 2, Math.round(Math.sin(2 * Math.PI * freq * time) * envelope * 0.4 * 32767), true);
  }
  chime = URL.createObjectURL(new Blob([buffer], { type: 'audio/wav' }));
  return chime;
}
