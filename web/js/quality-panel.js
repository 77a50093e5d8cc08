// @ts-check
//! The details of one connection of a call, opened from its signal bars: the latest figures as
//! text (what a screen reader reads) and small live graphs of the last minute drawn on
//! canvases (no chart library). A modal dialog: Escape or Close shut it and focus goes back to
//! the bars that opened it.

import { HISTORY_MS, levelWord, qualityLevel } from '../sdk/quality.js';
import { t } from './i18n.js';

/**
 * @typedef {import('../sdk/quality.js').QualitySample} QualitySample
 * @typedef {import('./i18n.js').Key} Key
 */

/** The graphs: what each plots, and the smallest top of its scale (so calm lines stay low). */
const GRAPHS = /** @type {const} */ ([
  { label: 'quality.rtt', unit: 'unit.ms', floor: 200, value: (/** @type {QualitySample} */ s) => s.rttMs },
  { label: 'quality.loss', unit: 'unit.percent', floor: 5,
    value: (/** @type {QualitySample} */ s) => Math.max(s.lossPermille, s.outLossPermille ?? 0) / 10 },
  { label: 'quality.bitrateIn', unit: 'unit.kbps', floor: 500, value: (/** @type {QualitySample} */ s) => s.inKbps },
  { label: 'quality.fps', unit: 'unit.fps', floor: 30, value: (/** @type {QualitySample} */ s) => s.fps },
]);

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class QualityPanel {
  constructor() {
    this.dialog = /** @type {HTMLDialogElement} */ (byId('quality-panel'));
    this.title = byId('quality-title');
    this.figures = byId('quality-figures');
    this.graphs = byId('quality-graphs');
    /** @type {{name: string, samples: () => QualitySample[], opener: HTMLElement} | null} */
    this.current = null;
    /** @type {HTMLCanvasElement[]} */
    this.canvases = [];
    /** @type {HTMLElement[]} */
    this.captions = [];
    this.graphs.replaceChildren(...GRAPHS.map(() => {
      const figure = document.createElement('figure');
      const caption = document.createElement('figcaption');
      const canvas = document.createElement('canvas');
      canvas.width = 320;
      canvas.height = 72;
      // The same figures are in the text above the graphs: the picture adds nothing to read.
      canvas.setAttribute('aria-hidden', 'true');
      this.canvases.push(canvas);
      this.captions.push(caption);
      figure.append(caption, canvas);
      return figure;
    }));
    byId('quality-close').onclick = () => this.dialog.close();
    this.dialog.addEventListener('close', () => {
      const opener = this.current?.opener;
      this.current = null;
      if (opener?.isConnected) opener.focus();
    });
  }

  /**
   * Opens the details of the connection to `name`.
   * @param {string} name
   * @param {() => QualitySample[]} samples the last minute's samples, oldest first
   * @param {HTMLElement} opener where focus returns when the panel closes
   */
  show(name, samples, opener) {
    this.current = { name, samples, opener };
    this.render();
    if (!this.dialog.open) this.dialog.showModal();
  }

  /** Closes the panel (the call ended, or that person left). */
  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** Redraws from the latest samples (a new one came, or the language changed). */
  render() {
    if (!this.current) return;
    const samples = this.current.samples();
    const s = samples.at(-1) ?? null;
    this.title.textContent = t('quality.title', { name: this.current.name });
    const word = levelWord(qualityLevel(s));
    const dash = '–';
    const ms = (/** @type {number | null | undefined} */ v) => (v == null ? dash : t('unit.ms', { n: v }));
    const pct = (/** @type {number | null | undefined} */ v) => (v == null ? dash : t('unit.percent', { n: (v / 10).toFixed(1) }));
    /** @type {[Key, string][]} */
    const rows = [
      ['quality.level', t(/** @type {Key} */ (`quality.${word}`))],
      ['quality.rtt', ms(s?.rttMs)],
      ['quality.lossIn', pct(s?.lossPermille)],
      ['quality.lossOut', pct(s?.outLossPermille)],
      ['quality.jitter', ms(s?.jitterMs)],
      ['quality.bitrateIn', s ? t('unit.kbps', { n: s.inKbps }) : dash],
      ['quality.bitrateOut', s ? t('unit.kbps', { n: s.outKbps }) : dash],
      ['quality.resolution', s?.width && s.height ? `${s.width} × ${s.height}` : dash],
      ['quality.fps', s?.fps == null ? dash : t('unit.fps', { n: s.fps })],
      ['quality.path', s?.path ? t(s.path === 'relay' ? 'quality.relay' : 'quality.direct', {
        transport: (s.transport ?? 'udp').toUpperCase(),
      }) : dash],
    ];
    this.figures.replaceChildren(...rows.flatMap(([key, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = t(key);
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }));
    const now = s?.at ?? Date.now();
    GRAPHS.forEach((graph, i) => {
      this.captions[i].textContent = t('quality.graph', { what: t(graph.label) });
      drawGraph(this.canvases[i], samples.map((x) => ({ at: x.at, v: graph.value(x) })), now, graph.floor);
    });
  }
}

/**
 * Draws a line of the points within the last minute before `now`, scaled to the largest (at
 * least `floor`), newest at the right edge, with the area below it shaded.
 * @param {HTMLCanvasElement} canvas
 * @param {{at: number, v: number | null}[]} points
 * @param {number} now
 * @param {number} floor
 */
export function drawGraph(canvas, points, now, floor) {
  const ctx = canvas.getContext('2d');
  if (!ctx) return;
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const shown = points.filter((p) => p.v !== null && p.at >= now - HISTORY_MS);
  if (!shown.length) return;
  const top = Math.max(floor, ...shown.map((p) => /** @type {number} */ (p.v))) * 1.1;
  const x = (/** @type {number} */ at) => ((at - (now - HISTORY_MS)) / HISTORY_MS) * (w - 2) + 1;
  const y = (/** @type {number} */ v) => h - 1 - (v / top) * (h - 2);
  ctx.beginPath();
  shown.forEach((p, i) => (i ? ctx.lineTo(x(p.at), y(/** @type {number} */ (p.v))) : ctx.moveTo(x(p.at), y(/** @type {number} */ (p.v)))));
  if (shown.length === 1) ctx.lineTo(w - 1, y(/** @type {number} */ (shown[0].v)));
  ctx.strokeStyle = '#2563eb';
  ctx.lineWidth = 2;
  ctx.stroke();
  ctx.lineTo(shown.length === 1 ? w - 1 : x(shown[shown.length - 1].at), h);
  ctx.lineTo(x(shown[0].at), h);
  ctx.closePath();
  ctx.fillStyle = 'rgba(37, 99, 235, 0.15)';
  ctx.fill();
}
