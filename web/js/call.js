// @ts-check
//! The in-call dialog: one accepted call's local media, peer connection and controls
//! (mute, camera, device pickers, duration, connection state, hang-up).

import { PeerCall } from './peer.js';
import { listDevices, openTrack } from './media.js';
import { t } from './i18n.js';

/**
 * @typedef {import('./protocol.js').ClientMsg} ClientMsg
 * @typedef {import('./media.js').LocalMedia} LocalMedia
 */

/** `?relay` in the page address forces relay-only ICE, for checking a TURN setup. */
const FORCE_RELAY = new URLSearchParams(location.search).has('relay');

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class CallView {
  /**
   * @param {object} options
   * @param {number} options.callId
   * @param {string} options.myName
   * @param {string} options.peerName
   * @param {boolean} options.polite
   * @param {RTCIceServer[]} options.iceServers
   * @param {Promise<LocalMedia>} options.media local camera/microphone, opening
   * @param {(msg: ClientMsg) => void} options.send
   */
  constructor({ callId, myName, peerName, polite, iceServers, media, send }) {
    this.callId = callId;
    this.myName = myName;
    this.peerName = peerName;
    this.send = send;
    /** @type {LocalMedia} */
    this.media = { audio: null, video: null, problems: [] };
    this.audioEnabled = true;
    /** @type {RTCPeerConnectionState} */
    this.connection = 'new';
    /** @type {number | null} */
    this.connectedAt = null;
    this.remote = { audio: true, video: true };

    this.dialog = /** @type {HTMLDialogElement} */ (byId('in-call'));
    this.remoteVideo = /** @type {HTMLVideoElement} */ (byId('remote-video'));
    this.localVideo = /** @type {HTMLVideoElement} */ (byId('local-video'));
    this.cameraSelect = /** @type {HTMLSelectElement} */ (byId('camera-select'));
    this.micSelect = /** @type {HTMLSelectElement} */ (byId('microphone-select'));
    this.speakerSelect = /** @type {HTMLSelectElement} */ (byId('speaker-select'));

    this.peer = new PeerCall({
      polite,
      iceServers,
      iceTransportPolicy: FORCE_RELAY ? 'relay' : 'all',
      signal: (signal) =>
        this.send('description' in signal
          ? { type: 'description', callId, description: signal.description }
          : { type: 'candidate', callId, candidate: signal.candidate }),
      onRemoteStream: (stream) => {
        if (this.remoteVideo.srcObject !== stream) this.remoteVideo.srcObject = stream;
      },
      onConnectionState: (state) => {
        this.connection = state;
        if (state === 'connected' && this.connectedAt === null) this.connectedAt = Date.now();
        this.render();
      },
    });

    byId('mute').onclick = () => this.toggleMute();
    byId('video-toggle').onclick = () => this.toggleVideo();
    this.cameraSelect.onchange = () => this.switchDevice('video', this.cameraSelect.value);
    this.micSelect.onchange = () => this.switchDevice('audio', this.micSelect.value);
    this.speakerSelect.onchange = () => this.setSpeaker(this.speakerSelect.value);
    if (navigator.mediaDevices) navigator.mediaDevices.ondevicechange = () => this.refreshDevices();
    this.ticker = setInterval(() => this.renderDuration(), 1000);

    this.remoteVideo.srcObject = null;
    this.render();
    this.dialog.showModal();
    this.ready = media.then((local) => this.start(local));
  }

  /** @param {LocalMedia} local */
  async start(local) {
    this.media = local;
    this.showLocal();
    this.peer.start({ audio: local.audio, video: local.video });
    this.announceMedia();
    this.render();
    await this.refreshDevices();
  }

  /**
   * A signalling message for this call.
   * @param {import('./protocol.js').ServerMsg} msg
   */
  handle(msg) {
    if (msg.type === 'description') this.peer.handle({ description: msg.description });
    else if (msg.type === 'candidate') this.peer.handle({ candidate: msg.candidate });
    else if (msg.type === 'media') {
      this.remote = { audio: msg.audio, video: msg.video };
      this.render();
    }
  }

  toggleMute() {
    if (!this.media.audio) return;
    this.audioEnabled = !this.audioEnabled;
    this.media.audio.enabled = this.audioEnabled;
    this.announceMedia();
    this.render();
  }

  /** Stopping video releases the camera (its light goes off); starting opens it again. */
  async toggleVideo() {
    if (this.media.video) {
      this.media.video.stop();
      this.media.video = null;
      await this.peer.replaceTrack('video', null);
    } else {
      const { track } = await openTrack('video', this.cameraSelect.value || undefined);
      if (!track) {
        this.media.problems = ['no-camera'];
        this.render();
        return;
      }
      this.media.video = track;
      await this.peer.replaceTrack('video', track);
    }
    this.showLocal();
    this.announceMedia();
    this.render();
  }

  /**
   * Switches camera or microphone live, without renegotiation.
   * @param {'audio' | 'video'} kind
   * @param {string} deviceId
   */
  async switchDevice(kind, deviceId) {
    if (kind === 'video' && !this.media.video) return; // applied when the camera starts again
    const { track } = await openTrack(kind, deviceId || undefined);
    if (!track) return;
    if (kind === 'audio') track.enabled = this.audioEnabled;
    const previous = this.media[kind];
    this.media[kind] = track;
    await this.peer.replaceTrack(kind, track);
    previous?.stop(); // only once the new one is being sent
    this.showLocal();
    this.announceMedia();
    this.render();
  }

  /** @param {string} deviceId */
  async setSpeaker(deviceId) {
    const video = /** @type {HTMLVideoElement & {setSinkId?: (id: string) => Promise<void>}} */ (this.remoteVideo);
    if (video.setSinkId) await video.setSinkId(deviceId).catch((err) => console.warn('setSinkId', err));
  }

  async refreshDevices() {
    const { cameras, microphones, speakers } = await listDevices();
    const currentCamera = this.media.video?.getSettings().deviceId ?? this.cameraSelect.value;
    const currentMic = this.media.audio?.getSettings().deviceId ?? this.micSelect.value;
    fillSelect(this.cameraSelect, cameras, currentCamera);
    fillSelect(this.micSelect, microphones, currentMic);
    fillSelect(this.speakerSelect, speakers, this.speakerSelect.value);
  }

  showLocal() {
    const tracks = [this.media.video].filter((tr) => tr !== null);
    this.localVideo.srcObject = tracks.length ? new MediaStream(/** @type {MediaStreamTrack[]} */ (tracks)) : null;
  }

  announceMedia() {
    this.send({
      type: 'media',
      callId: this.callId,
      audio: this.media.audio !== null && this.audioEnabled,
      video: this.media.video !== null,
    });
  }

  renderDuration() {
    const seconds = this.connectedAt === null ? 0 : Math.floor((Date.now() - this.connectedAt) / 1000);
    const mm = String(Math.floor(seconds / 60)).padStart(2, '0');
    const ss = String(seconds % 60).padStart(2, '0');
    byId('call-duration').textContent = `${mm}:${ss}`;
  }

  /** Renders every text and indicator from the current state (also on language change). */
  render() {
    byId('call-title').textContent = t('callWith', { name: this.peerName });
    byId('call-state').textContent = t(/** @type {import('./i18n.js').Key} */ (`state.${this.connection}`));
    byId('call-duration').setAttribute('aria-label', t('duration'));
    this.renderDuration();
    this.remoteVideo.setAttribute('aria-label', this.peerName);
    this.localVideo.setAttribute('aria-label', this.myName);

    const mute = /** @type {HTMLButtonElement} */ (byId('mute'));
    mute.textContent = this.audioEnabled ? t('mute') : t('unmute');
    mute.disabled = !this.media.audio;
    byId('video-toggle').textContent = this.media.video ? t('stopVideo') : t('startVideo');

    const remoteOff = byId('remote-camera-off');
    remoteOff.hidden = this.remote.video;
    remoteOff.textContent = t('cameraOff', { name: this.peerName });
    const remoteMuted = byId('remote-muted');
    remoteMuted.hidden = this.remote.audio;
    remoteMuted.setAttribute('aria-label', t('isMuted', { name: this.peerName }));
    const localOff = byId('local-camera-off');
    localOff.hidden = this.media.video !== null;
    localOff.textContent = t('yourCameraOff');

    byId('media-notice').textContent = this.media.problems.map((p) => t(`media.${p}`)).join(' ');
    for (const select of [this.cameraSelect, this.micSelect, this.speakerSelect]) {
      const first = select.options[0];
      if (first && first.value === '') first.textContent = t('defaultDevice');
    }
  }

  /** Ends everything this call holds: devices, peer connection, dialog. */
  close() {
    clearInterval(this.ticker);
    this.media.audio?.stop();
    this.media.video?.stop();
    this.ready.then(() => {
      // Media that was still opening when the call ended is released too.
      this.media.audio?.stop();
      this.media.video?.stop();
    });
    this.peer.close();
    this.remoteVideo.srcObject = null;
    this.localVideo.srcObject = null;
    if (navigator.mediaDevices) navigator.mediaDevices.ondevicechange = null;
    this.dialog.close();
  }
}

/**
 * Refills a device picker, keeping the selection. The first option is the default device.
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} devices
 * @param {string} selected
 */
function fillSelect(select, devices, selected) {
  const options = [new Option(t('defaultDevice'), '')];
  devices.forEach((d, i) => options.push(new Option(d.label || `${i + 1}`, d.deviceId)));
  select.replaceChildren(...options);
  if (devices.some((d) => d.deviceId === selected)) select.value = selected;
}

