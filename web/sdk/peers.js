// @ts-check
//! One call's media: this person's camera and microphone (LocalMedia) and one PeerCall per
//! other participant, wired to the call's signalling messages (`description`, `candidate`,
//! `media` of docs/protocol.md), for a 1:1 call and for the room's group call (a full mesh).
//! The SDK's Client and the web app's call panel both run their calls on it, so those messages
//! are made and taken in this one place. Touches no DOM.

import { PeerCall } from './peer.js';
import { LocalMedia } from './local.js';
import { QualityMeter } from './quality.js';

/**
 * @typedef {import('./protocol.js').ClientMsg} ClientMsg
 * @typedef {import('./protocol.js').ServerMsg} ServerMsg
 * @typedef {import('./media.js').LocalMedia} OpenedMedia
 * @typedef {import('./local.js').MediaState} MediaState
 *
 * What a call tells its owner, each about the participant `id`.
 * @typedef {object} CallPeersEvents
 * @property {(id: number, stream: MediaStream) => void} remoteStream camera and microphone
 * @property {(id: number, stream: MediaStream) => void} remoteScreen a shared screen
 * @property {(id: number, state: MediaState) => void} remoteMedia their mute / camera / screen state
 * @property {(id: number, state: RTCPeerConnectionState) => void} connectionState
 * @property {() => void} localChange our media opened or changed (the others were told)
 * @property {(id: number, sample: import('./quality.js').QualitySample) => void} [quality] a new
 *   sample of the connection to that participant (every 2 s once it is up)
 */

export class CallPeers {
  /**
   * @param {object} options
   * @param {number} options.callId
   * @param {'direct' | 'group'} options.mode in a group call each message names its peer (`to`)
   * @param {RTCIceServer[]} options.iceServers
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]
   * @param {Promise<OpenedMedia>} options.media camera and microphone, opening
   * @param {{muted?: boolean, cameraOff?: boolean}} [options.start] how our media starts
   * @param {(msg: ClientMsg) => void} options.send
   * @param {CallPeersEvents} options.events
   */
  constructor({ callId, mode, iceServers, iceTransportPolicy = 'all', media, start = {}, send, events }) {
    this.callId = callId;
    this.mode = mode;
    this.iceServers = iceServers;
    this.iceTransportPolicy = iceTransportPolicy;
    this.send = send;
    this.events = events;
    /** @type {Map<number, PeerCall>} by the other participant's member id */
    this.peers = new Map();
    /** @type {LocalMedia | null} set once the devices are open */
    this.local = null;
    this.closed = false;
    /** When the call was accepted (calls are made then), for the set-up time reported once. */
    this.acceptedAt = Date.now();
    this.reportedConnected = false;
    /** @type {Map<number, QualityMeter>} one per connection, from when it is first up */
    this.meters = new Map();
    /** @type {QualityMeter | null} the 1:1 call's meter, kept past its peer for the report */
    this.quality = null;
    /** Resolves once our media is open and attached to the peers (or the call ended first). */
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
      for (const peer of this.peers.values()) local.attach(peer);
      this.localChanged();
    });
  }

  /**
   * Connects to another participant. `polite`: the perfect-negotiation role (from `accepted` in
   * a 1:1 call; in a group call the lower member id is polite, so every pair agrees by itself).
   * @param {number} id
   * @param {boolean} polite
   * @param {import('./protocol.js').Publish} [accepts] what that participant may send
   * @returns {PeerCall}
   */
  addPeer(id, polite, accepts) {
    const existing = this.peers.get(id);
    if (existing) return existing;
    const to = this.mode === 'group' ? id : undefined;
    const peer = new PeerCall({
      polite,
      iceServers: this.iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
      accepts,
      signal: (signal) => this.send('description' in signal
        ? { type: 'description', callId: this.callId, to, description: signal.description }
        : { type: 'candidate', callId: this.callId, to, candidate: signal.candidate }),
      onRemoteStream: (stream) => this.events.remoteStream(id, stream),
      onRemoteScreen: (stream) => this.events.remoteScreen(id, stream),
      onConnectionState: (state) => {
        if (state === 'connected') {
          this.reportConnected();
          if (!this.meters.has(id)) {
            const meter = new QualityMeter(peer.pc, (sample) => this.events.quality?.(id, sample));
            this.meters.set(id, meter);
            if (this.mode === 'direct') this.quality ??= meter;
          }
        }
        this.events.connectionState(id, state);
      },
    });
    this.peers.set(id, peer);
    if (this.local) {
      this.local.attach(peer);
      this.announce(); // so the newcomer learns our mute / camera / screen state
    }
    return peer;
  }

  /** @param {number} id */
  removePeer(id) {
    const peer = this.peers.get(id);
    if (!peer) return;
    this.local?.detach(peer);
    peer.close();
    this.peers.delete(id);
    this.meters.get(id)?.stop();
    this.meters.delete(id);
  }

  /**
   * A signalling message for this call; false when it is not one (or from no participant).
   * @param {ServerMsg} msg
   */
  handle(msg) {
    if (msg.type !== 'description' && msg.type !== 'candidate' && msg.type !== 'media') return false;
    const peer = this.peers.get(msg.from);
    if (msg.callId !== this.callId || !peer) return false;
    if (msg.type === 'description') peer.handle({ description: msg.description });
    else if (msg.type === 'candidate') peer.handle({ candidate: msg.candidate });
    else this.events.remoteMedia(msg.from, { audio: msg.audio, video: msg.video, screen: msg.screen ?? false });
    return true;
  }

  /** Accepted → connected, once, for the server's set-up time metric (1:1 calls only). */
  reportConnected() {
    if (this.mode !== 'direct' || this.reportedConnected) return;
    this.reportedConnected = true;
    this.send({ type: 'call_connected', callId: this.callId, setupMs: Date.now() - this.acceptedAt });
  }

  /**
   * How loud each participant's received audio is (0…1), by member id.
   * @returns {Promise<Map<number, number>>}
   */
  async levels() {
    /** @type {Map<number, number>} */
    const levels = new Map();
    await Promise.all([...this.peers.entries()].map(async ([id, peer]) => {
      const stats = await peer.pc.getStats().catch(() => null);
      stats?.forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio' && typeof s.audioLevel === 'number') levels.set(id, s.audioLevel);
      });
    }));
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

  /**
   * Fresh TURN credentials, for the peers to come and those open (for their ICE restarts).
   * @param {RTCIceServer[]} iceServers
   */
  setIceServers(iceServers) {
    this.iceServers = iceServers;
    for (const peer of this.peers.values()) peer.setIceServers(iceServers);
  }

  /**
   * Ends everything the call holds: peer connections and devices (also those still opening).
   * Called when the call has ended, so a 1:1 call that connected reports its quality.
   */
  close() {
    this.closed = true;
    this.quality?.stop();
    const report = this.quality?.summary();
    if (report) this.send({ type: 'call_quality', callId: this.callId, report });
    this.quality = null;
    for (const id of [...this.peers.keys()]) this.removePeer(id);
    this.local?.stop();
    this.local = null;
  }
}
