// @ts-check
//! One video tile of a call: a labelled <video>, a camera-off placeholder, a muted badge, an
//! optional pin button, the connection's signal bars (a remote person's tile), and the
//! active-speaker highlight. Text only, never HTML.

import { t } from './i18n.js';

export class Tile {
  /**
   * @param {object} options
   * @param {'remote' | 'local' | 'screen'} options.kind
   * @param {() => void} [options.onpin] shows a pin button when given
   * @param {() => void} [options.onquality] shows the connection's bars (once they are known),
   *   a button that opens the details
   */
  constructor({ kind, onpin, onquality }) {
    this.kind = kind;
    this.el = document.createElement('div');
    this.el.className = `tile ${kind}`;
    this.video = document.createElement('video');
    this.video.autoplay = true;
    this.video.playsInline = true;
    // Our own camera and every screen are silent here; remote audio plays from the remote tile.
    this.video.muted = kind !== 'remote';
    this.placeholder = document.createElement('div');
    this.placeholder.className = 'placeholder';
    this.placeholder.hidden = true;
    this.caption = document.createElement('span');
    this.caption.className = 'caption';
    this.mutedBadge = document.createElement('span');
    this.mutedBadge.className = 'muted-badge';
    this.mutedBadge.setAttribute('role', 'img');
    this.mutedBadge.append(mutedIcon());
    this.mutedBadge.hidden = true;
    this.el.append(this.video, this.placeholder, this.caption, this.mutedBadge);
    /** @type {HTMLButtonElement | null} */
    this.pinButton = null;
    if (onpin) {
      this.pinButton = document.createElement('button');
      this.pinButton.className = 'pin';
      this.pinButton.onclick = onpin;
      this.el.append(this.pinButton);
    }
    /** @type {HTMLButtonElement | null} */
    this.signal = null;
    if (onquality) {
      this.signal = document.createElement('button');
      this.signal.className = 'signal';
      this.signal.hidden = true;
      this.signal.setAttribute('aria-haspopup', 'dialog');
      this.signal.onclick = onquality;
      for (let i = 1; i <= 4; i++) {
        const bar = document.createElement('span');
        bar.className = `bar b${i}`;
        this.signal.append(bar);
      }
      this.el.append(this.signal);
    }
  }

  /**
   * The connection's bars: `level` 0–4 (null: not known yet, hidden) and their accessible name.
   * @param {number | null} level
   * @param {string} label
   */
  setQuality(level, label) {
    if (!this.signal) return;
    this.signal.hidden = level === null;
    this.signal.dataset.level = String(level ?? 0);
    if (this.signal.getAttribute('aria-label') !== label) this.signal.setAttribute('aria-label', label);
    this.el.classList.toggle('has-signal', level !== null);
  }

  /** @param {MediaStream | null} stream */
  setStream(stream) {
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
  }

  /**
   * @param {object} state
   * @param {string} state.name the person's name
   * @param {boolean} state.audio microphone live
   * @param {boolean} state.video camera on
   * @param {boolean} [state.speaking]
   * @param {boolean} [state.pinned]
   * @param {boolean} [state.reconnecting] their signalling connection dropped
   * @param {boolean} [state.host] a host of the private room: the caption says so
   */
  render({ name, audio, video, speaking = false, pinned = false, reconnecting = false, host = false }) {
    const label = this.kind === 'screen' ? t('screenOf', { name }) : name;
    this.video.setAttribute('aria-label', label);
    let caption = this.kind === 'local' ? t('youSuffix', { name }) : label;
    if (host && this.kind !== 'screen') caption = `${caption} ${t('hostMark')}`;
    this.caption.textContent = reconnecting ? `${caption} ${t('reconnectingSuffix')}` : caption;
    this.placeholder.hidden = this.kind === 'screen' || video;
    this.placeholder.textContent = this.kind === 'local' ? t('yourCameraOff') : t('cameraOff', { name });
    this.mutedBadge.hidden = this.kind !== 'remote' || audio;
    this.mutedBadge.setAttribute('aria-label', t('isMuted', { name }));
    this.el.classList.toggle('speaking', speaking);
    this.el.classList.toggle('pinned', pinned);
    if (this.pinButton) {
      this.pinButton.textContent = pinned ? t('unpin', { name: label }) : t('pin', { name: label });
      this.pinButton.setAttribute('aria-pressed', String(pinned));
    }
  }

  remove() {
    this.video.srcObject = null;
    this.el.remove();
  }
}

/** A crossed-out microphone, drawn as inline SVG (no emoji, no icon font). */
function mutedIcon() {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', 'icon');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  for (const d of ['M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z', 'M5 11a7 7 0 0 0 14 0M12 18v3', 'M4 4l16 16']) {
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', d);
    svg.append(path);
  }
  return svg;
}
