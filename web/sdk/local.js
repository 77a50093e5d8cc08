// @ts-check
//! This person's media in a call: microphone, camera and shared screen, applied to every peer
//! connection of the call (one in a 1:1 call, one per other participant in a group call).
//! Mute, camera off/on, device switching and screen sharing live here once. Touches no DOM.

import { openTrack } from './media.js';

/**
 * @typedef {import('./peer.js').PeerCall} PeerCall
 * Where our tracks go: a peer connection to one person (PeerCall), or the one to the SFU.
 * @typedef {Pick<PeerCall, 'start' | 'replaceTrack' | 'shareScreen'>} Sink
 * @typedef {import('./media.js').LocalMedia} OpenedMedia
 * @typedef {{audio: boolean, video: boolean, screen: boolean}} MediaState
 */

export class LocalMedia {
  /**
   * @param {OpenedMedia} opened what openLocalMedia gave
   * @param {() => void} onchange called after every change, to re-render and tell the others
   */
  constructor(opened, onchange) {
    this.audio = opened.audio;
    this.video = opened.video;
    /** @type {MediaStreamTrack | null} */
    this.screen = null;
    /** @type {import('./media.js').MediaProblem[]} */
    this.problems = [...opened.problems];
    this.audioEnabled = true;
    /** @type {Set<Sink>} */
    this.peers = new Set();
    this.onchange = onchange;
  }

  /** What the others should show: microphone live, camera on, screen shared. @returns {MediaState} */
  state() {
    return { audio: this.audio !== null && this.audioEnabled, video: this.video !== null, screen: this.screen !== null };
  }

  /**
   * Starts `peer` with our tracks, and keeps it updated from now on.
   * @param {Sink} peer
   */
  attach(peer) {
    this.peers.add(peer);
    peer.start({ audio: this.audio, video: this.video });
    if (this.screen) peer.shareScreen(this.screen);
  }

  /** @param {Sink} peer */
  detach(peer) {
    this.peers.delete(peer);
  }

  toggleMute() {
    if (!this.audio) return;
    this.audioEnabled = !this.audioEnabled;
    this.audio.enabled = this.audioEnabled;
    this.onchange();
  }

  /**
   * Stopping video releases the camera (its light goes off); starting opens it again.
   * @param {string} [deviceId]
   */
  async toggleVideo(deviceId) {
    if (this.video) {
      this.video.stop();
      this.video = null;
      await this.replace('video', null);
    } else {
      const { track } = await openTrack('video', deviceId || undefined);
      if (!track) {
        this.problems = ['no-camera'];
        return this.onchange();
      }
      this.video = track;
      await this.replace('video', track);
    }
    this.onchange();
  }

  /**
   * Switches camera or microphone live, without renegotiation.
   * @param {'audio' | 'video'} kind
   * @param {string} deviceId
   */
  async switchDevice(kind, deviceId) {
    if (kind === 'video' && !this.video) return; // applied when the camera starts again
    const { track } = await openTrack(kind, deviceId || undefined);
    if (!track) return;
    if (kind === 'audio') track.enabled = this.audioEnabled;
    const previous = this[kind];
    this[kind] = track;
    await this.replace(kind, track);
    previous?.stop(); // only once the new one is being sent
    this.onchange();
  }

  /** Shares a screen (the browser asks which), or stops sharing. */
  async toggleScreen() {
    if (this.screen) return this.stopScreen();
    /** @type {MediaStream} */
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    } catch {
      return; // the person cancelled the picker
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return;
    this.screen = track;
    // The browser's own "Stop sharing" control ends the track.
    track.addEventListener('ended', () => {
      if (this.screen === track) this.stopScreen();
    });
    await Promise.all([...this.peers].map((p) => p.shareScreen(track)));
    this.onchange();
  }

  async stopScreen() {
    const track = this.screen;
    if (!track) return;
    this.screen = null;
    track.stop();
    await Promise.all([...this.peers].map((p) => p.shareScreen(null)));
    this.onchange();
  }

  /**
   * @param {'audio' | 'video'} kind
   * @param {MediaStreamTrack | null} track
   */
  async replace(kind, track) {
    await Promise.all([...this.peers].map((p) => p.replaceTrack(kind, track)));
  }

  /** Releases every device. */
  stop() {
    for (const track of [this.audio, this.video, this.screen]) track?.stop();
    this.audio = this.video = this.screen = null;
    this.peers.clear();
  }
}
