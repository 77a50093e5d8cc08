// @ts-check
//! One call's media: this person's camera and microphone (LocalMedia) and one PeerCall per
//! other participant, wired to the call's signalling messages (`description`, `candidate`,
//! `media` of docs/protocol.md), for a 1:1 call and for the room's group call (a full mesh).
//! The SDK's Client and the web app's call panel both run their calls on it, so those messages
//! are made and taken in this one place. Touches no DOM.
//!
//! A 1:1 call may start while it rings (`prepareCall`, when the server pre-connects): its peer
//! connection is negotiated with no tracks, so ICE and DTLS are done by the time the callee
//! accepts, and nothing is sent or shown until `accept` brings the camera and microphone.

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
 * @property {(id: number, state: MediaState, unavailable: import('./protocol.js').Unavailable) => void} remoteMedia
 *   their mute / camera / screen state, and which of their devices could not be opened at all
 * @property {(id: number, state: RTCPeerConnectionState) => void} connectionState
 * @property {() => void} localChange our media opened or changed (the others were told)
 * @property {(id: number, sample: import('./quality.js').QualitySample) => void} [quality] a new
 *   sample of the connection to that participant (every 2 s once it is up)
 * @property {(id: number) => void} [activeSpeaker] the server's SFU hears this participant (or
 *   us) speaking now (`active_speaker`)
 */

/** What a call that rings tells nobody. @type {CallPeersEvents} */
const QUIET = {
  remoteStream: () => {},
  remoteScreen: () => {},
  remoteMedia: () => {},
  connectionState: () => {},
  localChange: () => {},
};

export class CallPeers {
  /**
   * @param {object} options
   * @param {number} options.callId
   * @param {'direct' | 'group'} options.mode in a group call each message names its peer (`to`)
   * @param {RTCIceServer[]} options.iceServers
   * @param {RTCIceTransportPolicy} [options.iceTransportPolicy]
   * @param {Promise<OpenedMedia> | null} [options.media] camera and microphone, opening; null
   *   for a call that rings: the peers negotiate without tracks until `accept`
   * @param {{muted?: boolean, cameraOff?: boolean}} [options.start] how our media starts
   * @param {boolean} [options.resumed] a call this page picks up again after a reload (its set-up
   *   time was reported before)
   * @param {(msg: ClientMsg) => void} options.send
   * @param {CallPeersEvents} [options.events] none are told before `accept`
   * @param {boolean} [options.openPath] on `accept`, allow every ICE candidate and restart ICE
   *   (a call that pre-connected through the relay only)
   */
  constructor({ callId, mode, iceServers, iceTransportPolicy = 'all', media = null, start = {}, resumed = false, send, events = QUIET, openPath = false }) {
    this.callId = callId;
    this.mode = mode;
    this.iceServers = iceServers;
    this.iceTransportPolicy = iceTransportPolicy;
    this.send = send;
    this.events = events;
    this.openPath = openPath;
    /** @type {Map<number, PeerCall>} by the other participant's member id */
    this.peers = new Map();
    /** How each peer connection was made, to make it again. @type {Map<number, {polite: boolean, accepts: import('./protocol.js').Publish | undefined}>} */
    this.roles = new Map();
    /** @type {LocalMedia | null} set once the devices are open */
    this.local = null;
    this.closed = false;
    /** Accepted: media may flow and the owner hears of the peers (false while it rings). */
    this.accepted = false;
    /** When the call was accepted, for the set-up time reported once. */
    this.acceptedAt = Date.now();
    this.reportedConnected = false;
    this.resumed = resumed;
    /** @type {Map<number, QualityMeter>} one per connection, from when it is first up */
    this.meters = new Map();
    /** @type {QualityMeter | null} the 1:1 call's meter, kept past its peer for the report */
    this.quality = null;
    /** @type {() => void} */
    this.resolveReady = () => {};
    /** Resolves once our media is open and attached to the peers (or the call ended first). @type {Promise<void>} */
    this.ready = new Promise((resolve) => (this.resolveReady = () => resolve()));
    if (media) this.accept({ media, start });
  }

  /**
   * The call is accepted: open `media` onto the peers (on the transceivers a ringing call
   * negotiated, by replaceTrack), tell `events` what the peers already have (the remote stream,
   * the connection state), and, after a relay-only pre-connect, let ICE find a direct path.
   * @param {object} options
   * @param {Promise<OpenedMedia>} options.media camera and microphone, opening
   * @param {{muted?: boolean, cameraOff?: boolean}} [options.start] how our media starts
   * @param {CallPeersEvents} [options.events] replaces those given to the constructor
   */
  accept({ media, start = {}, events }) {
    if (this.accepted) return;
    this.accepted = true;
    if (events) this.events = events;
    this.acceptedAt = Date.now();
    // Connections made from now on (a reloaded peer's, `renew`) need no relay-only start.
    if (this.openPath) this.iceTransportPolicy = 'all';
    for (const [id, peer] of this.peers) {
      // Our candidates from now on may be direct ones (the restart below gathers them).
      if (this.openPath) peer.openPath(false);
      if (peer.remoteStream.getTracks().length) this.events.remoteStream(id, peer.remoteStream);
      this.events.connectionState(id, peer.pc.connectionState);
      if (peer.pc.connectionState === 'connected') this.connected(id, peer);
    }
    media.then((opened) => {
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
    }).finally(() => {
      // The direct path's ICE restart only once our tracks are on: its negotiation would
      // otherwise go first on the connection's chain of operations, and the media wait for it.
      if (this.openPath && !this.closed) for (const peer of this.peers.values()) peer.openPath(true);
      this.resolveReady();
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
      // While the call rings nothing is told: `accept` tells what the peer has by then.
      onRemoteStream: (stream) => this.accepted && this.events.remoteStream(id, stream),
      onRemoteScreen: (stream) => this.accepted && this.events.remoteScreen(id, stream),
      onConnectionState: (state) => {
        if (!this.accepted) return;
        if (state === 'connected') this.connected(id, peer);
        this.events.connectionState(id, state);
      },
    });
    this.peers.set(id, peer);
    this.roles.set(id, { polite, accepts });
    if (this.local) {
      this.local.attach(peer);
      this.announce(); // so the newcomer learns our mute / camera / screen state
    } else if (!this.accepted) {
      peer.start({ audio: null, video: null }); // negotiate now, send nothing
    }
    return peer;
  }

  /**
   * The other side's page was reloaded (`member_state` with `reloaded`): its peer connection is
   * gone, so ours to it is replaced by a new one with the same roles; our media carries over.
   * @param {number} id
   * @returns {PeerCall | null} the new one, or null if `id` is not in this call
   */
  renew(id) {
    const role = this.roles.get(id);
    if (!role || !this.peers.has(id)) return null;
    this.removePeer(id);
    return this.addPeer(id, role.polite, role.accepts);
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
    else {
      const unavailable = { audio: msg.unavailable?.audio ?? false, video: msg.unavailable?.video ?? false };
      this.events.remoteMedia(msg.from, { audio: msg.audio, video: msg.video, screen: msg.screen ?? false }, unavailable);
    }
    return true;
  }

  /**
   * The connection to `id` is up (or already was when the call was accepted): the set-up time
   * is reported, and the connection's quality sampled from now on.
   * @param {number} id
   * @param {PeerCall} peer
   */
  connected(id, peer) {
    this.reportConnected();
    if (!this.meters.has(id)) {
      const meter = new QualityMeter(peer.pc, (sample) => this.events.quality?.(id, sample));
      this.meters.set(id, meter);
      if (this.mode === 'direct') this.quality ??= meter;
    }
  }

  /** Accepted → connected, once, for the server's set-up time metric (1:1 calls only). */
  reportConnected() {
    if (this.mode !== 'direct' || this.reportedConnected) return;
    this.reportedConnected = true;
    // A call picked up again after a reload was reported by the page before it.
    if (!this.resumed) this.send({ type: 'call_connected', callId: this.callId, setupMs: Date.now() - this.acceptedAt });
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
    if (!this.local || this.closed) return;
    const unavailable = this.local.unavailable();
    const extra = unavailable.audio || unavailable.video ? { unavailable } : {};
    this.send({ type: 'media', callId: this.callId, ...this.local.state(), ...extra });
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
    this.resolveReady();
    this.quality?.stop();
    const report = this.quality?.summary();
    if (report) this.send({ type: 'call_quality', callId: this.callId, report });
    this.quality = null;
    for (const id of [...this.peers.keys()]) this.removePeer(id);
    this.roles.clear();
    this.local?.stop();
    this.local = null;
  }
}

/**
 * A 1:1 call's media while it rings, when the server pre-connects (`joined.preconnect`): the
 * peer connection to `peer`, negotiated without tracks, with the roles `accepted` will give
 * (the callee polite), so that ICE and DTLS are done before anyone answers. `relay` keeps to
 * relay candidates until `accept` (the other side learns none of our addresses). Null when
 * calls do not pre-connect; close it when the call ends unanswered.
 * @param {object} options
 * @param {number} options.callId
 * @param {number} options.peer the other party
 * @param {boolean} options.polite true for the callee
 * @param {import('./protocol.js').Publish} [options.accepts] what the other party may send
 * @param {import('./protocol.js').Preconnect} [options.preconnect] from `joined`
 * @param {boolean} [options.relayOnly] every call through TURN: the policy stays `relay`
 * @param {RTCIceServer[]} options.iceServers
 * @param {(msg: ClientMsg) => void} options.send
 * @param {Promise<OpenedMedia>} [options.media] the caller's camera and microphone, opening:
 *   they go on the connection now, sending nothing until `accept`
 * @returns {CallPeers | null}
 */
export function prepareCall({ callId, peer, polite, accepts, preconnect = 'off', relayOnly = false, iceServers, send, media }) {
  if (preconnect === 'off') return null;
  const relay = relayOnly || preconnect === 'relay';
  if (relay && iceServers.length === 0) return null; // nothing to relay through
  const call = new CallPeers({
    callId,
    mode: 'direct',
    iceServers,
    iceTransportPolicy: relay ? 'relay' : 'all',
    send,
    openPath: relay && !relayOnly,
  });
  const prepared = call.addPeer(peer, polite, accepts);
  media?.then((opened) => {
    if (!call.accepted && !call.closed) prepared.prime({ audio: opened.audio, video: opened.video });
  });
  return call;
}
