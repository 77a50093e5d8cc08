// @ts-check
//! A group call through the server's SFU: one RTCPeerConnection to the server whatever the
//! number of people, with the same face as CallPeers (peers.js), so the call panel runs either.
//!
//! We offer once, with three sendonly transceivers in this order: microphone, camera, screen
//! (the SFU names published tracks by that order; the screen one carries nothing until we
//! share, so sharing needs no renegotiation). The camera goes in three simulcast layers
//! (SIMULCAST, lowest first: the SFU reads their order from our offer) and the SFU forwards
//! each person the one their tile needs: `setView` tells it the tiles' sizes and which are off
//! screen (`sfu_view`). From then on the SFU offers every change — a participant's tracks added
//! or stopped — and we answer, so offers never cross. Each of its offers comes with `tracks`,
//! which names the participant and source of every mid; `active_speaker` names who speaks. When
//! the server says the SFU lost our connection (`sfu_restart`: it restarted, or the room moved
//! to another node), we make a new connection and offer again; each participant's last frame
//! stays on screen (the old connection is kept, silent) until their new video arrives. Touches
//! no DOM.

import { LocalMedia } from './local.js';
import { QualityMeter } from './quality.js';

/**
 * @typedef {import('./protocol.js').ClientMsg} ClientMsg
 * @typedef {import('./protocol.js').ServerMsg} ServerMsg
 * @typedef {import('./protocol.js').SfuTrack} SfuTrack
 * @typedef {import('./media.js').LocalMedia} OpenedMedia
 * @typedef {import('./local.js').MediaState} MediaState
 * @typedef {import('./peers.js').CallPeersEvents} CallPeersEvents
 * @typedef {{pc: RTCPeerConnection, iceRestarts: number}} SfuPeer what the panel reads of a peer
 */

/**
 * The camera's simulcast layers, lowest first: a quarter, half and full resolution, each with
 * a bitrate cap (the SFU assumes these caps before it has measured a layer).
 * @type {RTCRtpEncodingParameters[]}
 */
export const SIMULCAST = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 100_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 300_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 900_000 },
];

/**
 * The camera's resolution through the SFU: browsers send three simulcast layers only from
 * 960×540 up (Chromium sends two at 640×480), and the SFU gives each tile the layer it needs,
 * so the top one costs only those who show it large.
 * @type {MediaTrackConstraints}
 */
export const CAMERA = { width: { ideal: 960 }, height: { ideal: 540 } };

/**
 * Asks the camera for CAMERA's resolution (a camera that cannot stays as it is).
 * @param {MediaStreamTrack | null} track
 */
function forSimulcast(track) {
  if (track?.kind === 'video') track.applyConstraints(CAMERA).catch(() => {});
}
/** How long a replaced connection is kept for the tiles' last frames at most (`restart`). */
const RETIRE_MS = 20_000;

export class SfuCall {
  /**
   * @param {object} options
   * @param {number} options.callId
   * @param {RTCIceServer[]} options.iceServers
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]
   * @param {Promise<OpenedMedia>} options.media camera and microphone, opening
   * @param {{muted?: boolean, cameraOff?: boolean}} [options.start] how our media starts
   * @param {(msg: ClientMsg) => void} options.send
   * @param {CallPeersEvents} options.events
   */
  constructor({ callId, iceServers, iceTransportPolicy = 'all', media, start = {}, send, events }) {
    this.callId = callId;
    this.send = send;
    this.events = events;
    this.closed = false;
    /** @type {RTCConfiguration} */
    this.config = { iceServers, iceTransportPolicy, bundlePolicy: 'max-bundle' };
    /**
     * The connection an `sfu_restart` replaced, kept open (and silent) so that each tile keeps
     * its last frame until the participant's new video arrives; closed when every one has
     * switched, or after RETIRE_MS.
     * @type {RTCPeerConnection | null}
     */
    this.retired = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retireTimer = undefined;
    /** @type {Set<number>} participants whose tile still shows the retired connection's stream */
    this.stale = new Set();
    /** How many times the SFU connection was made anew (`sfu_restart`), for tests. */
    this.restarts = 0;
    /** @type {Map<number, SfuPeer>} the other participants, by member id */
    this.peers = new Map();
    /** @type {Map<string, SfuTrack>} what each mid carries, as the SFU last said */
    this.tracks = new Map();
    /** @type {Map<number, MediaStream>} each participant's camera and microphone */
    this.streams = new Map();
    /** @type {Map<number, MediaStream>} each participant's screen track (shown while shared) */
    this.screens = new Map();
    /** @type {Map<number, MediaState>} what each participant said it sends */
    this.states = new Map();
    /** @type {LocalMedia | null} */
    this.local = null;
    /** Descriptions from the SFU are applied one at a time, in order. */
    this.queue = Promise.resolve();
    /** @type {RTCRtpTransceiver[]} microphone, camera, screen */
    this.senders = [];
    /** @type {string} the last `sfu_view` sent, to send only changes */
    this.lastView = '';
    /** @type {number | null} who the SFU last said speaks */
    this.speaker = null;
    /**
     * Samples the one connection (to the server) from when it is first up; each participant's
     * tile shows it, as the path their media takes to us.
     * @type {QualityMeter | null}
     */
    this.meter = null;

    this.pc = this.connect();

    this.ready = media.then((opened) => {
      if (this.closed) {
        for (const track of [opened.audio, opened.video]) track?.stop();
        return;
      }
      const local = new LocalMedia(opened, () => this.localChanged());
      if (start.muted && local.audio) {
        local.audioEnabled = false;
        local.audio.enabled = false;
      }
      if (start.cameraOff && local.video) {
        local.video.stop();
        local.video = null;
      }
      this.local = local;
      local.attach(this);
      this.localChanged();
    });
  }

  /** A new peer connection to the SFU, with our handlers. */
  connect() {
    const pc = new RTCPeerConnection(this.config);
    pc.ontrack = ({ track, transceiver }) => this.onTrack(track, transceiver.mid);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && !this.meter) {
        this.meter = new QualityMeter(pc, (sample) => {
          for (const id of this.peers.keys()) this.events.quality?.(id, sample);
        });
      }
      for (const id of this.peers.keys()) this.events.connectionState(id, pc.connectionState);
    };
    return pc;
  }

  /**
   * The SFU no longer holds our connection (`sfu_restart`): a new one, offered as at the start
   * with our current tracks. The tiles keep their streams (their last frame) until each
   * participant's new video arrives (`replaceStale`).
   */
  restart() {
    if (this.closed) return;
    this.restarts += 1;
    this.retire();
    const old = this.pc;
    old.ontrack = null;
    old.onconnectionstatechange = null;
    this.retired = old;
    this.meter?.stop();
    this.meter = null;
    for (const [id, stream] of this.streams) if (stream.getVideoTracks().length) this.stale.add(id);
    this.streams = new Map();
    this.screens = new Map();
    this.tracks = new Map();
    this.senders = [];
    this.lastView = ''; // the new session hears the tiles afresh
    this.pc = this.connect();
    for (const peer of this.peers.values()) peer.pc = this.pc;
    this.retireTimer = setTimeout(() => this.retire(), RETIRE_MS);
    for (const id of this.peers.keys()) this.events.connectionState(id, this.pc.connectionState);
    // Offer once our media is open (at once when it is): LocalMedia calls `start`.
    this.queue = this.queue.then(() => this.ready).then(() => {
      if (this.local && !this.closed) this.local.attach(this);
    }).catch((err) => console.warn('SFU restart failed', err));
  }

  /** Closes the connection an `sfu_restart` replaced, if any. */
  retire() {
    clearTimeout(this.retireTimer);
    this.retired?.close();
    this.retired = null;
    this.stale.clear();
  }

  // ---- what LocalMedia calls on a "peer" -------------------------------------------------

  /**
   * Our tracks are known: make the three transceivers and offer, once.
   * @param {{audio: MediaStreamTrack | null, video: MediaStreamTrack | null}} tracks
   */
  start(tracks) {
    if (this.senders.length) return;
    forSimulcast(tracks.video);
    this.senders = [
      this.pc.addTransceiver(tracks.audio ?? 'audio', { direction: 'sendonly' }),
      this.pc.addTransceiver(tracks.video ?? 'video', { direction: 'sendonly', sendEncodings: SIMULCAST }),
      this.pc.addTransceiver('video', { direction: 'sendonly' }),
    ];
    this.queue = this.queue.then(async () => {
      await this.pc.setLocalDescription();
      const description = this.pc.localDescription;
      if (description && !this.closed) this.send({ type: 'sfu_description', callId: this.callId, description: description.toJSON() });
    }).catch((err) => console.warn('SFU offer failed', err));
  }

  /**
   * @param {'audio' | 'video'} kind
   * @param {MediaStreamTrack | null} track
   */
  async replaceTrack(kind, track) {
    forSimulcast(track);
    await this.senders[kind === 'audio' ? 0 : 1]?.sender.replaceTrack(track);
  }

  /** @param {MediaStreamTrack | null} track */
  async shareScreen(track) {
    await this.senders[2]?.sender.replaceTrack(track);
  }

  // ---- the call's participants and messages ----------------------------------------------

  /**
   * Another participant: their tracks come on our one connection, as the SFU offers them.
   * @param {number} id
   * @returns {SfuPeer}
   */
  addPeer(id) {
    const existing = this.peers.get(id);
    if (existing) return existing;
    const peer = { pc: this.pc, iceRestarts: 0 };
    this.peers.set(id, peer);
    const stream = this.streams.get(id);
    if (stream) this.events.remoteStream(id, stream);
    this.events.connectionState(id, this.pc.connectionState);
    this.announce(); // so the newcomer learns our mute / camera / screen state
    return peer;
  }

  /** @param {number} id */
  removePeer(id) {
    this.peers.delete(id);
    this.stale.delete(id);
    this.streams.delete(id);
    this.screens.delete(id);
    this.states.delete(id);
  }

  /**
   * A signalling message for this call; false when it is not one.
   * @param {ServerMsg} msg
   */
  handle(msg) {
    if (msg.type === 'sfu_description' && msg.callId === this.callId) {
      this.queue = this.queue.then(() => this.apply(msg.description, msg.tracks)).catch((err) => console.warn('SFU description failed', err));
      return true;
    }
    if (msg.type === 'active_speaker' && msg.callId === this.callId) {
      this.speaker = msg.member;
      this.events.activeSpeaker?.(msg.member);
      return true;
    }
    if (msg.type === 'sfu_restart' && msg.callId === this.callId) {
      this.restart();
      return true;
    }
    if (msg.type === 'media' && msg.callId === this.callId && this.peers.has(msg.from)) {
      const state = { audio: msg.audio, video: msg.video, screen: msg.screen ?? false };
      this.states.set(msg.from, state);
      this.events.remoteMedia(msg.from, state, { audio: msg.unavailable?.audio ?? false, video: msg.unavailable?.video ?? false });
      this.showScreen(msg.from);
      return true;
    }
    return false;
  }

  /**
   * The SFU's answer to our offer, or an offer of its own (answered at once).
   * @param {RTCSessionDescriptionInit} description
   * @param {SfuTrack[]} tracks
   */
  async apply(description, tracks) {
    if (this.closed) return;
    if (description.type === 'offer') this.tracks = new Map(tracks.map((t) => [t.mid, t]));
    await this.pc.setRemoteDescription(description);
    if (description.type === 'offer') {
      await this.pc.setLocalDescription();
      const answer = this.pc.localDescription;
      if (answer && !this.closed) this.send({ type: 'sfu_description', callId: this.callId, description: answer.toJSON() });
    }
  }

  /**
   * @param {MediaStreamTrack} track
   * @param {string | null} mid
   */
  onTrack(track, mid) {
    const info = mid === null ? undefined : this.tracks.get(mid);
    if (!info) return;
    const streams = info.source === 'screen' ? this.screens : this.streams;
    let stream = streams.get(info.member);
    if (!stream) {
      stream = new MediaStream();
      streams.set(info.member, stream);
    }
    for (const old of stream.getTracks()) if (old.kind === track.kind) stream.removeTrack(old);
    stream.addTrack(track);
    if (info.source === 'screen') this.showScreen(info.member);
    else if (this.stale.has(info.member)) this.replaceStale(info.member, stream);
    else if (this.peers.has(info.member)) this.events.remoteStream(info.member, stream);
  }

  /**
   * After a restart, `id`'s tile keeps the retired connection's stream (its last frame) until
   * the new `stream` has video that plays; then it switches, and once no tile is left on the
   * retired connection, that one is closed.
   * @param {number} id
   * @param {MediaStream} stream
   */
  replaceStale(id, stream) {
    const video = stream.getVideoTracks()[0];
    if (!video) return; // the audio came first: the video follows
    const swap = () => {
      if (!this.stale.has(id) || this.streams.get(id) !== stream || this.closed) return;
      this.stale.delete(id);
      if (this.peers.has(id)) this.events.remoteStream(id, stream);
      if (!this.stale.size) this.retire();
    };
    if (!video.muted) swap();
    else video.addEventListener('unmute', swap, { once: true });
  }

  /**
   * A participant's screen tile is shown while they say they share (the screen track is
   * there all along, silent when not shared).
   * @param {number} id
   */
  showScreen(id) {
    const stream = this.screens.get(id);
    if (stream && this.states.get(id)?.screen && this.peers.has(id)) this.events.remoteScreen(id, stream);
  }

  /**
   * How we show the others' videos: each tile's size in device pixels and whether it is on
   * screen, so that the SFU forwards the layer it needs, or nothing. Sent when it changed.
   * @param {import('./protocol.js').ViewTrack[]} tracks
   */
  setView(tracks) {
    const text = JSON.stringify(tracks);
    if (text === this.lastView || this.closed) return;
    this.lastView = text;
    this.send({ type: 'sfu_view', callId: this.callId, tracks });
  }

  /** The quality meter of each participant's media: the one of the connection to the server. */
  get meters() {
    /** @type {Map<number, QualityMeter>} */
    const meters = new Map();
    if (this.meter) for (const id of this.peers.keys()) meters.set(id, this.meter);
    return meters;
  }

  /**
   * How loud each participant's received audio is (0…1), by member id.
   * @returns {Promise<Map<number, number>>}
   */
  async levels() {
    /** @type {Map<number, number>} */
    const levels = new Map();
    const stats = await this.pc.getStats().catch(() => null);
    stats?.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio' || typeof s.audioLevel !== 'number') return;
      const info = this.tracks.get(s.mid);
      if (info) levels.set(info.member, s.audioLevel);
    });
    return levels;
  }

  /** Tells the others our microphone / camera / screen state. */
  announce() {
    if (this.local && !this.closed) this.send({ type: 'media', callId: this.callId, ...this.local.state() });
  }

  localChanged() {
    this.announce();
    this.events.localChange();
  }

  /** @param {RTCIceServer[]} iceServers */
  setIceServers(iceServers) {
    if (this.pc.signalingState === 'closed') return;
    this.pc.setConfiguration({ ...this.pc.getConfiguration(), iceServers });
  }

  /** Ends the connection and releases the devices (also those still opening). */
  close() {
    this.closed = true;
    this.retire();
    this.meter?.stop();
    this.pc.ontrack = null;
    this.pc.onconnectionstatechange = null;
    this.pc.close();
    this.peers.clear();
    this.local?.stop();
    this.local = null;
  }
}
