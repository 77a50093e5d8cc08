// @ts-check
//! The call panel: one call (a 1:1 call, or the room's group call), run by the SDK's CallPeers
//! (local media, one peer connection per other person, the call's signalling) or, for a group
//! call through the server's SFU, by its SfuCall (one peer connection for everyone),
//! with their tiles and the controls (mute, camera, screen sharing, device pickers, duration,
//! connection state, hang-up / leave), and how each connection is going: bars on each remote
//! tile, their details panel, and a warning when the network is poor (ours or theirs).
//! Through the SFU: the active speaker as the server hears it, a grid paged PAGE_SIZE people
//! at a time, and each tile's size and visibility told to the SFU (`setView`), so that it
//! forwards the layer a tile needs and nothing to a tile off screen.

import { CallPeers } from '../sdk/peers.js';
import { SfuCall } from '../sdk/sfu.js';
import { listDevices } from '../sdk/media.js';
import { Tile } from './tile.js';
import { t } from './i18n.js';
import { diagnose, levelWord, qualityLevel, steady } from '../sdk/quality.js';
import { QualityPanel } from './quality-panel.js';

/**
 * @typedef {import('../sdk/protocol.js').ClientMsg} ClientMsg
 * @typedef {import('../sdk/protocol.js').ServerMsg} ServerMsg
 * @typedef {import('../sdk/media.js').LocalMedia} OpenedMedia
 * @typedef {{name: string, peer: {pc: RTCPeerConnection, iceRestarts: number}, tile: Tile, screen: Tile | null,
 *            state: import('../sdk/local.js').MediaState, connection: RTCPeerConnectionState,
 *            level: number, reconnecting: boolean, polite: boolean,
 *            unavailable: import('../sdk/protocol.js').Unavailable,
 *            sample: import('../sdk/quality.js').QualitySample | null}} Remote
 * (`sample`: the connection's last few samples, steadied, for the bars and the warning)
 */

/** People's tiles on one page of a group call's grid (screens are always shown). */
export const PAGE_SIZE = 9;
/** Most entries of one `sfu_view` (visavis-protocol's MAX_VIEW_TRACKS). */
const MAX_VIEW_TRACKS = 100;

/** @type {QualityPanel | null} made once, for every call of the page */
let panel = null;

/** `?relay` in the page address forces relay-only ICE, for checking a TURN setup. */
export const FORCE_RELAY = new URLSearchParams(location.search).has('relay');

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

export class CallView {
  /**
   * @param {object} options
   * @param {number} options.callId
   * @param {'direct' | 'group'} options.mode a 1:1 call, or the room's group call
   * @param {'sfu' | 'mesh'} [options.groupMedia] how a group call's media flows
   * @param {string} options.myName
   * @param {RTCIceServer[]} options.iceServers
   * @param {Promise<OpenedMedia>} options.media local camera/microphone, opening
   * @param {(msg: ClientMsg) => void} options.send
   * @param {(id?: number) => boolean} [options.isHost] whether a member (we, without an id) is a
   *   host of the private room, for the tiles' captions
   * @param {import('../sdk/protocol.js').Publish} [options.publish] what we may send: the
   *   controls for anything else are not shown
   * @param {{muted?: boolean, cameraOff?: boolean}} [options.start] how our media starts (the
   *   pre-join choices)
   * @param {string} [options.speaker] the speaker to play the others on
   * @param {number | null} [options.since] when the call started (a call picked up again after
   *   a reload): the duration counts from there
   * @param {CallPeers | null} [options.prepared] the 1:1 call's peer connection, made while it
   *   rang (`prepareCall`): it gets our media once its person's tile is there
   */
  constructor({ callId, mode, groupMedia = 'mesh', myName, iceServers, media, send, isHost = () => false, publish, start = {}, speaker = '', since = null, prepared = null }) {
    this.callId = callId;
    this.mode = mode;
    this.myName = myName;
    this.isHost = isHost;
    /** @type {Map<number, Remote>} */
    this.remotes = new Map();
    /** @type {number | null} when the duration starts: connected, or the call's start before a reload */
    this.connectedAt = since === null ? null : Math.min(since, Date.now());
    this.speaker = speaker;
    /** @type {string | null} the pinned tile: `<member id>` or `<member id>:screen` */
    this.pinned = null;
    /** @type {number | null} whose connection the details panel shows */
    this.panelFor = null;
    /** The page of the grid shown (from 0). */
    this.page = 0;
    /** @type {number | null} who the SFU hears speaking */
    this.speakerId = null;
    byId('page-prev').onclick = () => this.turnPage(-1);
    byId('page-next').onclick = () => this.turnPage(1);

    this.dialog = /** @type {HTMLDialogElement} */ (byId('in-call'));
    this.stage = byId('call-stage');
    this.stage.className = `stage ${mode}`;
    this.localTile = new Tile({ kind: 'local' });
    this.localScreen = new Tile({ kind: 'screen' });
    this.stage.replaceChildren(this.localTile.el);
    this.cameraSelect = /** @type {HTMLSelectElement} */ (byId('camera-select'));
    this.micSelect = /** @type {HTMLSelectElement} */ (byId('microphone-select'));
    this.speakerSelect = /** @type {HTMLSelectElement} */ (byId('speaker-select'));

    byId('mute').onclick = () => this.local?.toggleMute();
    byId('video-toggle').onclick = () => this.local?.toggleVideo(this.cameraSelect.value);
    byId('screen-toggle').onclick = () => this.local?.toggleScreen();
    byId('mute').hidden = publish?.audio === false;
    byId('video-toggle').hidden = publish?.video === false;
    byId('screen-toggle').hidden = publish?.screen === false;
    this.cameraSelect.onchange = () => this.local?.switchDevice('video', this.cameraSelect.value);
    this.micSelect.onchange = () => this.local?.switchDevice('audio', this.micSelect.value);
    this.speakerSelect.onchange = () => this.setSpeaker(this.speakerSelect.value);
    const devicesToggle = byId('devices-toggle');
    devicesToggle.onclick = () => {
      const devices = byId('devices');
      devices.hidden = !devices.hidden;
      devicesToggle.setAttribute('aria-expanded', String(!devices.hidden));
      if (!devices.hidden) this.cameraSelect.focus();
    };
    if (navigator.mediaDevices) navigator.mediaDevices.ondevicechange = () => this.refreshDevices();
    this.ticker = setInterval(() => this.tick(), 500);

    /** @param {number} id */
    const remote = (id) => this.remotes.get(id);
    this.media = media;
    /** The pre-join choices, for a prepared call's media too. */
    this.start = start;
    /** @type {import('../sdk/peers.js').CallPeersEvents} */
    const events = {
        remoteStream: (id, stream) => remote(id)?.tile.setStream(stream),
        remoteScreen: (id, stream) => {
          const r = remote(id);
          if (!r) return;
          r.screen ??= new Tile({ kind: 'screen', onpin: () => this.togglePin(`${id}:screen`) });
          r.screen.setStream(stream);
          this.render();
        },
        remoteMedia: (id, state, unavailable) => this.remoteMedia(id, state, unavailable),
        connectionState: (id, state) => {
          const r = remote(id);
          if (!r) return;
          r.connection = state;
          if (state === 'connected' && this.connectedAt === null) this.connectedAt = Date.now();
          this.render();
        },
        localChange: () => this.onLocalChange(),
        activeSpeaker: (id) => {
          this.speakerId = id;
          this.render();
        },
        quality: (id, sample) => {
          const r = remote(id);
          if (!r) return;
          r.sample = steady(this.peers.meters.get(id)?.samples ?? [sample]);
          this.render();
          if (this.panelFor === id) panel?.render();
        },
    };
    this.events = events;
    /** The 1:1 call's peer connection made while it rang, until it gets our media. */
    this.prepared = prepared;
    const iceTransportPolicy = FORCE_RELAY ? 'relay' : 'all';
    this.peers = prepared ?? (mode === 'group' && groupMedia === 'sfu'
      ? new SfuCall({ callId, iceServers, iceTransportPolicy, media, start, send, events })
      : new CallPeers({ callId, mode, iceServers, iceTransportPolicy, media, start, resumed: since !== null, send, events }));

    this.render();
    this.dialog.show(); // not modal: the room and its chat stay usable during a call
    this.ready = this.peers.ready.then(() => this.refreshDevices());
  }

  /** Our media, once the devices are open. */
  get local() {
    return this.peers.local;
  }

  /**
   * Fresh TURN credentials, for the peers to come and those open (for their ICE restarts).
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    this.peers.setIceServers(iceServers);
  }

  /**
   * Connects to another person of the call. In a group call the one with the lower member id
   * is polite, so every pair agrees on its roles without asking the server.
   * @param {number} id
   * @param {string} name
   * @param {boolean} polite
   * @param {import('../sdk/protocol.js').Publish} [publish] what they may send
   */
  addPeer(id, name, polite, publish) {
    if (this.remotes.has(id)) return;
    const tile = new Tile({
      kind: 'remote',
      onpin: () => this.togglePin(String(id)),
      onquality: () => this.showQuality(id),
    });
    // The tile is there before the peer connection can report anything about it.
    /** @type {Omit<Remote, 'peer'> & {peer?: Remote['peer']}} */
    const remote = {
      name,
      tile,
      screen: null,
      state: { audio: true, video: true, screen: false },
      connection: 'new',
      level: 0,
      reconnecting: false,
      polite,
      unavailable: { audio: false, video: false },
      sample: null,
    };
    this.remotes.set(id, /** @type {Remote} */ (remote));
    remote.peer = this.peers.addPeer(id, polite, publish);
    if (this.speaker) this.setSinkOf(tile);
    // A call prepared while it rang: now that the tile is there, our media and its events.
    if (this.prepared && !this.prepared.accepted) this.prepared.accept({ media: this.media, start: this.start, events: this.events });
    this.render();
  }

  /**
   * The other person's page was reloaded: its end of our peer connection is gone, so a new one
   * replaces ours (same roles); the tile stays and shows the new stream when it arrives.
   * @param {number} id
   */
  renewPeer(id) {
    const remote = this.remotes.get(id);
    const peer = remote && 'renew' in this.peers ? this.peers.renew(id) : null;
    if (!remote || !peer) return;
    remote.peer = peer;
    remote.connection = 'new';
    remote.reconnecting = false;
    remote.screen?.remove();
    remote.screen = null;
    this.render();
  }

  /** @param {number} id */
  removePeer(id) {
    const remote = this.remotes.get(id);
    if (!remote) return;
    if (this.panelFor === id) panel?.close();
    this.peers.removePeer(id);
    remote.tile.remove();
    remote.screen?.remove();
    this.remotes.delete(id);
    this.render();
  }

  /**
   * A signalling message for this call, from the person it names.
   * @param {ServerMsg} msg
   */
  handle(msg) {
    this.peers.handle(msg);
  }

  /**
   * The other person's microphone / camera / screen state.
   * @param {number} id
   * @param {import('../sdk/local.js').MediaState} state
   * @param {import('../sdk/protocol.js').Unavailable} unavailable
   */
  remoteMedia(id, state, unavailable) {
    const remote = this.remotes.get(id);
    if (!remote) return;
    remote.state = state;
    remote.unavailable = unavailable;
    if (!state.screen && remote.screen) {
      remote.screen.remove();
      remote.screen = null;
      if (this.pinned === `${id}:screen`) this.pinned = null;
    }
    this.render();
  }

  /**
   * A host asked us to mute: mute the microphone (once the devices are open), and tell the
   * others as for our own Mute. We may unmute ourselves later.
   */
  async muteMicrophone() {
    await this.ready;
    if (this.local?.audio && this.local.audioEnabled) this.local.toggleMute();
  }

  /** Our media opened or changed (CallPeers told the others). */
  onLocalChange() {
    this.localTile.setStream(this.local?.video ? new MediaStream([this.local.video]) : null);
    this.localScreen.setStream(this.local?.screen ? new MediaStream([this.local.screen]) : null);
    this.render();
  }

  /**
   * The other person's signalling dropped (their media may well go on).
   * @param {number} id
   * @param {boolean} reconnecting
   */
  setReconnecting(id, reconnecting) {
    const remote = this.remotes.get(id);
    if (remote) remote.reconnecting = reconnecting;
    this.render();
  }

  /**
   * Opens the details of the connection to `id`, from its bars.
   * @param {number} id
   */
  showQuality(id) {
    const remote = this.remotes.get(id);
    if (!remote?.tile.signal) return;
    panel ??= new QualityPanel();
    this.panelFor = id;
    panel.dialog.addEventListener('close', () => (this.panelFor = null), { once: true });
    panel.show(remote.name, () => this.peers.meters.get(id)?.samples ?? [], remote.tile.signal);
  }

  /** @param {string} key */
  togglePin(key) {
    this.pinned = this.pinned === key ? null : key;
    this.render();
  }

  /** @param {string} deviceId */
  async setSpeaker(deviceId) {
    this.speaker = deviceId;
    await Promise.all([...this.remotes.values()].map((remote) => this.setSinkOf(remote.tile)));
  }

  /** Plays a tile's sound on the chosen speaker. @param {Tile} tile */
  async setSinkOf(tile) {
    const video = /** @type {HTMLVideoElement & {setSinkId?: (id: string) => Promise<void>}} */ (tile.video);
    if (video.setSinkId) await video.setSinkId(this.speaker).catch((err) => console.warn('setSinkId', err));
  }

  async refreshDevices() {
    const { cameras, microphones, speakers } = await listDevices();
    fillSelect(this.cameraSelect, cameras, this.local?.video?.getSettings().deviceId ?? this.cameraSelect.value);
    fillSelect(this.micSelect, microphones, this.local?.audio?.getSettings().deviceId ?? this.micSelect.value);
    fillSelect(this.speakerSelect, speakers, this.speaker || this.speakerSelect.value);
  }

  /** @param {number} step */
  turnPage(step) {
    this.page += step;
    this.render();
    this.reportView();
  }

  /**
   * Through the SFU: tells it how big each remote tile is and whether it is on screen (on this
   * page, inside the stage's scrolled view), visible ones first.
   */
  reportView() {
    if (!(this.peers instanceof SfuCall)) return;
    const stage = this.stage.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    /** @type {import('../sdk/protocol.js').ViewTrack[]} */
    const tracks = [];
    /**
     * @param {number} member
     * @param {'camera' | 'screen'} source
     * @param {Tile} tile
     */
    const add = (member, source, tile) => {
      const r = tile.el.getBoundingClientRect();
      const visible = tile.el.isConnected && r.width > 0 && r.height > 0
        && r.bottom > stage.top && r.top < stage.bottom && r.right > stage.left && r.left < stage.right;
      tracks.push({
        member, source, visible,
        width: Math.min(16384, Math.round(r.width * ratio)),
        height: Math.min(16384, Math.round(r.height * ratio)),
      });
    };
    for (const [id, remote] of this.remotes) {
      add(id, 'camera', remote.tile);
      if (remote.screen) add(id, 'screen', remote.screen);
    }
    tracks.sort((a, b) => Number(b.visible) - Number(a.visible));
    this.peers.setView(tracks.slice(0, MAX_VIEW_TRACKS));
  }

  /** Twice a second: the duration, who is speaking (loudest received audio), the tiles' view. */
  async tick() {
    this.renderDuration();
    if (this.mode !== 'group') return;
    this.reportView();
    if (this.peers instanceof SfuCall) return; // the SFU says who speaks
    const levels = await this.peers.levels();
    for (const [id, remote] of this.remotes) remote.level = levels.get(id) ?? 0;
    this.render();
  }

  renderDuration() {
    const seconds = this.connectedAt === null ? 0 : Math.floor((Date.now() - this.connectedAt) / 1000);
    const mm = String(Math.floor(seconds / 60)).padStart(2, '0');
    const ss = String(seconds % 60).padStart(2, '0');
    byId('call-duration').textContent = `${mm}:${ss}`;
  }

  /** The connection state shown: the worst of the peer connections. */
  connection() {
    const states = [...this.remotes.values()].map((r) => r.connection);
    for (const worst of /** @type {RTCPeerConnectionState[]} */ (['failed', 'disconnected', 'connecting', 'new'])) {
      if (states.includes(worst)) return worst;
    }
    return states.length ? 'connected' : 'new';
  }

  /** Renders every text, tile and indicator from the current state (also on language change). */
  render() {
    const only = this.remotes.size === 1 ? [...this.remotes.values()][0] : null;
    byId('call-title').textContent =
      this.mode === 'group' ? t('groupCall') : t('callWith', { name: only?.name ?? '' });
    byId('call-state').textContent = t(/** @type {import('./i18n.js').Key} */ (`state.${this.connection()}`));
    byId('call-duration').setAttribute('aria-label', t('duration'));
    this.renderDuration();

    const state = this.local?.state() ?? { audio: false, video: false, screen: false };
    const mute = /** @type {HTMLButtonElement} */ (byId('mute'));
    const muted = this.local?.audioEnabled === false;
    setLabel(mute, muted ? t('unmute') : t('mute'), muted || !this.local?.audio ? 'off' : 'on');
    mute.disabled = !this.local?.audio;
    setLabel(byId('video-toggle'), state.video ? t('stopVideo') : t('startVideo'), state.video ? 'on' : 'off');
    setLabel(byId('screen-toggle'), state.screen ? t('stopSharing') : t('shareScreen'), state.screen ? 'on' : 'off');
    setLabel(byId('hangup'), this.mode === 'group' ? t('leaveCall') : t('hangUp'));
    byId('media-notice').textContent = (this.local?.problems ?? []).map((p) => t(`media.${p}`)).join(' ');
    for (const select of [this.cameraSelect, this.micSelect, this.speakerSelect]) {
      const first = select.options[0];
      if (first && first.value === '') first.textContent = t('defaultDevice');
    }

    // Tiles: shared screens first (large), then people; the pinned one leads.
    const loudest = this.peers instanceof SfuCall ? this.speakerId : [...this.remotes.entries()].reduce(
      (best, [id, r]) => (r.level > 0.02 && r.level > best.level ? { id, level: r.level } : best),
      { id: -1, level: 0 },
    ).id;
    // A large group's people come a page at a time: the pinned one and the speaker first.
    const people = [...this.remotes.keys()].sort((a, b) =>
      Number(String(b) === this.pinned) - Number(String(a) === this.pinned) || Number(b === loudest) - Number(a === loudest));
    const pages = Math.max(1, Math.ceil(people.length / PAGE_SIZE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    const shown = new Set(people.slice(this.page * PAGE_SIZE, (this.page + 1) * PAGE_SIZE));
    byId('call-pager').hidden = pages === 1;
    byId('page-label').textContent = t('pageOf', { page: String(this.page + 1), pages: String(pages) });
    byId('page-prev').setAttribute('aria-label', t('pagePrev'));
    byId('page-next').setAttribute('aria-label', t('pageNext'));
    /** @type {HTMLButtonElement} */ (byId('page-prev')).disabled = this.page === 0;
    /** @type {HTMLButtonElement} */ (byId('page-next')).disabled = this.page === pages - 1;
    /** @type {{key: string, el: HTMLElement}[]} */
    const order = [];
    if (this.local?.screen) {
      this.localScreen.render({ name: this.myName, audio: true, video: true });
      order.push({ key: 'me:screen', el: this.localScreen.el });
    }
    for (const [id, remote] of this.remotes) {
      if (remote.screen) {
        remote.screen.render({ name: remote.name, audio: true, video: true, pinned: this.pinned === `${id}:screen` });
        order.push({ key: `${id}:screen`, el: remote.screen.el });
      }
    }
    for (const [id, remote] of this.remotes) {
      remote.tile.render({
        name: remote.name,
        reconnecting: remote.reconnecting,
        audio: remote.state.audio,
        video: remote.state.video,
        unavailable: remote.unavailable,
        speaking: id === loudest,
        pinned: this.pinned === String(id),
        host: this.isHost(id),
      });
      if (shown.has(id)) order.push({ key: String(id), el: remote.tile.el });
    }
    this.localTile.render({ name: this.myName, audio: state.audio, video: state.video, host: this.isHost() });
    this.renderQuality();
    order.push({ key: 'me', el: this.localTile.el });
    order.sort((a, b) => Number(b.key === this.pinned) - Number(a.key === this.pinned));
    this.stage.dataset.count = String(order.length);
    const els = order.map((o) => o.el);
    if (els.some((el, i) => this.stage.children[i] !== el) || this.stage.children.length !== els.length) {
      this.stage.replaceChildren(...els);
    }
  }

  /** Each remote tile's bars, and a warning when a network is poor: ours, or someone's. */
  renderQuality() {
    for (const remote of this.remotes.values()) {
      const level = remote.connection === 'connected' ? qualityLevel(remote.sample) : null;
      const word = t(/** @type {import('./i18n.js').Key} */ (`quality.${levelWord(level)}`));
      remote.tile.setQuality(level, t('quality.label', { name: remote.name, level: word }));
    }
    const connected = [...this.remotes.entries()].filter(([, r]) => r.connection === 'connected');
    const { own, poor } = diagnose(new Map(connected.map(([id, r]) => [id, r.sample])));
    const text = own ? t('quality.ownUnstable')
      : poor.map((id) => t('quality.peerPoor', { name: this.remotes.get(id)?.name ?? '' })).join(' ');
    const warning = byId('quality-warning');
    if (warning.textContent !== text) warning.textContent = text;
    warning.hidden = !text;
    if (this.panelFor !== null) panel?.render();
  }

  /** Ends everything this call holds: devices, peer connections, the panel. */
  close() {
    clearInterval(this.ticker);
    panel?.close();
    for (const id of [...this.remotes.keys()]) this.removePeer(id);
    // Devices too, also those still opening.
    this.peers.close();
    this.localTile.remove();
    this.localScreen.remove();
    if (navigator.mediaDevices) navigator.mediaDevices.ondevicechange = null;
    byId('devices').hidden = true;
    byId('devices-toggle').setAttribute('aria-expanded', 'false');
    this.dialog.close();
  }
}

/**
 * A control bar button's text (its accessible name; shown beside the icon where there is room)
 * and which of its icons shows.
 * @param {HTMLElement} button
 * @param {string} text
 * @param {'on' | 'off'} [state]
 */
export function setLabel(button, text, state) {
  const label = button.querySelector('.label');
  if (label && label.textContent !== text) label.textContent = text;
  if (state) button.dataset.state = state;
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
