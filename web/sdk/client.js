// @ts-check
//! The SDK's client: one person in one room, and their 1:1 call, as an EventTarget a product's
//! page can drive without knowing the wire protocol. Built from the same modules the web app
//! runs on (protocol.js for the session, peers.js for the call's media and signalling, media.js
//! to open the camera and microphone); it adds only the bookkeeping of one person's room and
//! 1:1 call (ringing, who called whom). Touches no DOM: the product puts the streams into its
//! own <video> elements.

import { Signalling, SignallingError } from './protocol.js';
import { CallPeers, prepareCall } from './peers.js';
import { qualityLevel } from './quality.js';
import { openLocalMedia } from './media.js';

/**
 * @typedef {import('./protocol.js').Member} Member
 * @typedef {import('./protocol.js').ServerMsg} ServerMsg
 * @typedef {import('./protocol.js').JoinedMsg} JoinedMsg
 * @typedef {import('./protocol.js').WaitingMsg} WaitingMsg
 * @typedef {import('./protocol.js').RoomState} RoomState
 * @typedef {import('./protocol.js').ChatEntry} ChatEntry
 * @typedef {import('./protocol.js').EndReason} EndReason
 * @typedef {import('./media.js').LocalMedia} OpenedMedia
 * @typedef {import('./media.js').MediaProblem} MediaProblem
 *
 * @typedef {object} ConnectOptions
 * @property {string} [url] the visavis server (`https://host`) or its WebSocket endpoint
 *   (`wss://host/ws`); by default the server this module was loaded from
 * @property {string} [room] the room (a name or a private id); with `token`, the token's room
 * @property {string} [name] the display name; with `token`, the server takes the token's
 * @property {string} [token] an access token from the product's back end (`POST /api/v1/tokens`)
 * @property {string} [hostKey] a private room's host key (enters as a host)
 * @property {boolean} [relayOnly] relay every call through TURN (`iceTransportPolicy: 'relay'`)
 *
 * `waiting`: in a private room's lobby until a host admits us; `admitted`: in the room;
 * `denied`, `removed`, `room_ended`, `left`: out, for good (make a new client to come back).
 * @typedef {'new' | 'joining' | 'waiting' | 'admitted' | 'denied' | 'removed' | 'room_ended' | 'left'} RoomStatus
 *
 * @typedef {{state: 'admitted' | 'waiting', room: string, you: Member, members: Member[]}} JoinResult
 *
 * `ringing`: invited, not yet answered (either direction); `accepted`: both agreed, media
 * connecting; `connected`: media flows.
 * @typedef {{id: number | null, peer: number, peerName: string, direction: 'outgoing' | 'incoming',
 *            status: 'ringing' | 'accepted' | 'connected'}} CallInfo
 *
 * @typedef {{audio: boolean, video: boolean, screen: boolean}} MediaState
 *
 * Every event's `detail`, by event type.
 * @typedef {object} ClientEvents
 * @property {{state: RoomStatus, by?: number}} state
 * @property {{status: 'online' | 'reconnecting' | 'rejoined'}} connection
 * @property {{member: Member}} member_joined
 * @property {{member: Member}} member_left
 * @property {{member: Member}} member_updated
 * @property {{id: number, state: 'online' | 'reconnecting'}} member_state
 * @property {{id: number, inCall: boolean}} member_call
 * @property {{from: number, name: string}} call_attempt
 * @property {{member: Member}} knock
 * @property {{id: number, outcome: import('./protocol.js').KnockOutcome, by?: number}} knock_ended
 * @property {RoomState} room_state
 * @property {{callId: number, from: number, name: string}} incoming
 * @property {{callId: number, peer: number}} ringing
 * @property {{callId: number, peer: number}} accepted
 * @property {{callId: number, peer: number}} connected
 * @property {{callId: number | null, peer: number, reason: EndReason, by?: number}} call_ended
 * @property {{stream: MediaStream | null}} local_stream
 * @property {MediaState & {problems: MediaProblem[]}} local_media
 * @property {{peer: number, stream: MediaStream}} remote_stream
 * @property {{peer: number, stream: MediaStream | null}} remote_screen
 * @property {{peer: number, unavailable: {audio: boolean, video: boolean}} & MediaState} remote_media
 * @property {{peer: number, state: RTCPeerConnectionState}} connection_state
 * @property {{peer: number, level: 0 | 1 | 2 | 3 | 4 | null, sample: import('./quality.js').QualitySample}} quality
 * @property {ChatEntry & {history: boolean}} chat
 * @property {{by?: number}} mute_request
 * @property {{code: string, message: string, request?: string}} error
 */

/**
 * The WebSocket endpoint for `url`: a server's http(s) address becomes its ws(s) `/ws`.
 * @param {string | undefined} url
 * @param {string} base where this module came from: its server is the default
 */
export function socketUrl(url, base = import.meta.url) {
  const u = new URL(url ?? '/ws', base);
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/ws';
  }
  u.hash = '';
  return u.href;
}

/**
 * A claim of an access token, read without checking it (the server checks it): the room a
 * product's page joins needs no second parameter.
 * @param {string} token
 * @param {string} claim
 */
function tokenClaim(token, claim) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const value = JSON.parse(new TextDecoder().decode(bytes))[claim];
    return typeof value === 'string' ? value : '';
  } catch {
    return '';
  }
}

/**
 * One person in one room. Make it with `connect`, listen (`on` or `addEventListener`), then
 * `join`.
 */
export class Client extends EventTarget {
  /** What `on` added, so that `off` finds it: per listener, the wrapper per event type. */
  /** @type {WeakMap<Function, Map<string, EventListener>>} */
  #listeners = new WeakMap();

  /** @param {ConnectOptions} options */
  constructor(options) {
    super();
    const token = options.token ?? '';
    /** @type {string} the room; the server's id for it once joined */
    this.room = options.room ?? (token ? tokenClaim(token, 'room') : '');
    if (!this.room) throw new TypeError('connect: `room` is required without an access token');
    this.name = options.name ?? (token ? tokenClaim(token, 'name') : '');
    this.token = token;
    this.hostKey = options.hostKey ?? '';
    this.relayOnly = options.relayOnly ?? false;
    this.sig = new Signalling(socketUrl(options.url));
    /** @type {RoomStatus} */
    this.state = 'new';
    /** @type {Member | null} we, once in the room or its lobby */
    this.you = null;
    /** @type {Map<number, Member>} the others in the room, in join order */
    this.memberMap = new Map();
    /** @type {Map<number, Member>} for hosts: who knocks at the lobby */
    this.knockMap = new Map();
    /** @type {Set<number>} the members in a call (1:1 or the group's), us included */
    this.inCallIds = new Set();
    /** @type {RoomState | null} */
    this.roomState = null;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    /** @type {import('./protocol.js').Preconnect} whether calls connect while they ring */
    this.preconnect = 'off';
    /** @type {(CallInfo & {media: Promise<OpenedMedia> | null, cancelled: boolean}) | null} */
    this.current = null;
    /** @type {CallPeers | null} the call's media: once accepted, or while it rings when it pre-connects */
    this.media = null;
    /** @type {MediaStream | null} our camera and microphone during a call */
    this.localStream = null;
    /** @type {MediaStream | null} the other person's camera and microphone */
    this.remoteStream = null;
    /** @type {MediaStream | null} the other person's shared screen */
    this.remoteScreen = null;
    /** `local_stream` went out for this call's stream. */
    this.localAnnounced = false;
    /** What the person chose before the call's media opened (even once accepted: a call that
     * pre-connected is up before the camera is): read when it opens. */
    this.prefs = { muted: false, cameraOff: false };
  }

  /**
   * Calls `listener` with each `type` event's detail; returns a function that stops it.
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {(detail: ClientEvents[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    const wrapped = /** @type {EventListener} */ ((event) => listener(/** @type {CustomEvent} */ (event).detail));
    let listeners = this.#listeners.get(listener);
    if (!listeners) this.#listeners.set(listener, (listeners = new Map()));
    listeners.set(type, wrapped);
    this.addEventListener(type, wrapped);
    return () => this.off(type, listener);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {(detail: ClientEvents[K]) => void} listener
   */
  off(type, listener) {
    const wrapped = this.#listeners.get(listener)?.get(type);
    if (wrapped) this.removeEventListener(type, wrapped);
    this.#listeners.get(listener)?.delete(type);
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} type
   * @param {ClientEvents[K]} detail
   */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** The others in the room, in join order. @returns {Member[]} */
  get members() {
    return [...this.memberMap.values()];
  }

  /** The ids of the members in a call (1:1 or the room's group call), us included: busy. @returns {number[]} */
  get inCall() {
    return [...this.inCallIds];
  }

  /** For hosts: who waits in the lobby, in knock order. @returns {Member[]} */
  get knocks() {
    return [...this.knockMap.values()];
  }

  /** The 1:1 call, ringing or running, or null. @returns {CallInfo | null} */
  get activeCall() {
    const c = this.current;
    return c && { id: c.id, peer: c.peer, peerName: c.peerName, direction: c.direction, status: c.status };
  }

  /**
   * Opens the session and enters the room. Resolves with `admitted` (in the room) or `waiting`
   * (in a private room's lobby: a `state` event says `admitted` or `denied` later). Rejects with
   * a SignallingError whose `code` is the server's (`token_expired`, `room_full`…) or
   * `unreachable`.
   * @returns {Promise<JoinResult>}
   */
  async join() {
    if (this.state !== 'new') throw new SignallingError('already_joined', 'this client has joined already');
    this.state = 'joining';
    // A session that failed to join is closed for good: a retry needs a new one.
    if (this.sig.phase !== 'joining') this.sig = new Signalling(this.sig.url);
    this.sig.onmessage = (msg) => this.receive(msg);
    this.sig.onstatus = (status, joined, error) => this.sessionStatus(status, joined, error);
    /** @type {JoinedMsg | WaitingMsg} */
    let answer;
    try {
      answer = await this.sig.join(this.room, this.name, this.hostKey, this.token);
    } catch (err) {
      this.state = 'new';
      throw err;
    }
    this.enter(answer);
    return { state: answer.type === 'joined' ? 'admitted' : 'waiting', room: this.room, you: answer.you, members: this.members };
  }

  /**
   * Takes the room from `joined` (or the lobby from `waiting`).
   * @param {JoinedMsg | WaitingMsg} msg
   */
  enter(msg) {
    this.room = msg.room;
    this.you = msg.you;
    this.memberMap.clear();
    this.knockMap.clear();
    this.inCallIds.clear();
    if (msg.type === 'waiting') {
      this.state = 'waiting';
      this.emit('state', { state: 'waiting' });
      return;
    }
    this.state = 'admitted';
    this.iceServers = msg.iceServers;
    this.preconnect = msg.preconnect ?? 'off';
    this.roomState = msg.state;
    if (msg.hostKey) this.hostKey = msg.hostKey;
    for (const m of msg.members) this.memberMap.set(m.id, m);
    for (const id of msg.inCall ?? []) this.inCallIds.add(id);
    this.emit('state', { state: 'admitted' });
    for (const entry of msg.chat) this.emit('chat', { ...entry, history: true });
  }

  /**
   * @param {import('./protocol.js').SessionStatus} status
   * @param {JoinedMsg | WaitingMsg} [joined]
   * @param {SignallingError} [error]
   */
  sessionStatus(status, joined, error) {
    if (status === 'online' || status === 'reconnecting') return this.emit('connection', { status });
    // The old session is gone (the server restarted, or we were away too long): its call too.
    this.endCall('left');
    if (joined) {
      this.enter(joined);
      this.emit('connection', { status: 'rejoined' });
    } else {
      if (error) this.emit('error', { code: error.code, message: error.message });
      this.out('left');
    }
  }

  /**
   * Out of the room for good.
   * @param {'denied' | 'removed' | 'room_ended' | 'left'} state
   * @param {number} [by]
   */
  out(state, by) {
    this.endCall('left', true);
    this.sig.shutdown();
    this.state = state;
    this.emit('state', by === undefined ? { state } : { state, by });
  }

  /** @param {ServerMsg} msg */
  receive(msg) {
    switch (msg.type) {
      case 'joined':
        return this.enter(msg); // a host admitted us
      case 'waiting':
        return this.enter(msg);
      case 'denied':
        return this.out('denied');
      case 'removed':
        return this.out('removed', msg.by);
      case 'room_ended':
        return this.out('room_ended', msg.by);
      case 'left':
        return;
      case 'ice_servers':
        this.iceServers = msg.iceServers;
        this.media?.setIceServers(msg.iceServers);
        return;
      case 'member_joined':
        this.memberMap.set(msg.member.id, msg.member);
        return this.emit('member_joined', { member: msg.member });
      case 'member_left': {
        const member = this.memberMap.get(msg.id) ?? { id: msg.id, name: '', host: false };
        this.memberMap.delete(msg.id);
        this.inCallIds.delete(msg.id);
        return this.emit('member_left', { member });
      }
      case 'member_updated':
        if (msg.member.id === this.you?.id) this.you = msg.member;
        else this.memberMap.set(msg.member.id, msg.member);
        return this.emit('member_updated', { member: msg.member });
      case 'member_state':
        // Their page reloaded: its end of our peer connection is gone; make ours again.
        if (msg.reloaded && this.current?.peer === msg.id) this.media?.renew(msg.id);
        return this.emit('member_state', { id: msg.id, state: msg.state });
      case 'member_call':
        if (msg.inCall) this.inCallIds.add(msg.id);
        else this.inCallIds.delete(msg.id);
        return this.emit('member_call', { id: msg.id, inCall: msg.inCall });
      case 'call_attempt':
        // Someone rang while we were busy: the server told them `busy`, and us who it was.
        return this.emit('call_attempt', { from: msg.from, name: msg.name });
      case 'host_key':
        this.hostKey = msg.hostKey;
        return;
      case 'room_state': {
        const { type: _, ...state } = msg;
        this.roomState = state;
        return this.emit('room_state', state);
      }
      case 'knock':
        this.knockMap.set(msg.member.id, msg.member);
        return this.emit('knock', { member: msg.member });
      case 'knock_ended':
        this.knockMap.delete(msg.id);
        return this.emit('knock_ended', msg.by === undefined ? { id: msg.id, outcome: msg.outcome } : { id: msg.id, outcome: msg.outcome, by: msg.by });
      case 'mute_request':
        this.setMicrophoneMuted(true);
        return this.emit('mute_request', msg.by === undefined ? {} : { by: msg.by });
      case 'chat': {
        const { type: _, ...entry } = msg;
        return this.emit('chat', { ...entry, history: false });
      }
      case 'ringing':
        if (this.current?.direction === 'outgoing' && this.current.peer === msg.peer) {
          this.current.id = msg.callId;
          // hangUp() before the server had numbered the call.
          if (this.current.cancelled) return this.sig.send({ type: 'cancel', callId: msg.callId });
          this.prepare(msg.callId, msg.peer, false, this.current.media);
          this.emit('ringing', { callId: msg.callId, peer: msg.peer });
        }
        return;
      case 'incoming': {
        // Glare: we are calling them too, and our invite will accept this call (`accepted`
        // follows); the camera we opened for our call is this one's.
        const c = this.current;
        const glare = c?.direction === 'outgoing' && c.id === null && c.peer === msg.from;
        this.current = {
          id: msg.callId, peer: msg.from, peerName: msg.name, direction: 'incoming', status: 'ringing',
          media: glare ? c.media : null, cancelled: false,
        };
        this.prepare(msg.callId, msg.from, true);
        if (glare) return;
        return this.emit('incoming', { callId: msg.callId, from: msg.from, name: msg.name });
      }
      case 'accepted':
        return this.startCall(msg.callId, msg.peer, msg.polite);
      case 'call_ended':
        if (this.current && (this.current.id === msg.callId || (this.current.id === null && this.current.peer === msg.peer))) {
          this.endCall(msg.reason, false, msg.by);
        }
        return;
      case 'description':
      case 'candidate':
      case 'media':
        this.media?.handle(msg);
        return;
      case 'group_call':
        return; // group calls: the web app has them; this SDK does 1:1 calls for now
      case 'error': {
        // A refused invite never rang: there is no call.
        if (msg.request === 'invite' && this.current?.direction === 'outgoing' && this.current.id === null) {
          releaseMedia(this.current.media);
          this.current = null;
        }
        const detail = { code: msg.code, message: msg.message };
        return this.emit('error', msg.request === undefined ? detail : { ...detail, request: msg.request });
      }
    }
  }

  /** @param {string} what */
  mustBeIn(what) {
    if (this.state !== 'admitted') throw new SignallingError('not_joined', `${what}: not in the room`);
  }

  /**
   * Rings `memberId`. The camera and microphone open while it rings, so the call starts as soon
   * as it is accepted. Events: `ringing`, then `accepted` or `call_ended`.
   * @param {number} memberId
   */
  call(memberId) {
    this.mustBeIn('call');
    if (this.current) throw new SignallingError('already_in_call', 'call: already in a call');
    this.current = {
      id: null, peer: memberId, peerName: this.memberMap.get(memberId)?.name ?? '', direction: 'outgoing',
      status: 'ringing', media: openLocalMedia({ publish: this.you?.publish }), cancelled: false,
    };
    this.sig.send({ type: 'invite', to: memberId });
  }

  /** Takes the incoming call. */
  accept() {
    const c = this.current;
    if (!c || c.direction !== 'incoming' || c.status !== 'ringing' || c.id === null) return;
    c.media ??= openLocalMedia({ publish: this.you?.publish });
    this.sig.send({ type: 'accept', callId: c.id });
  }

  /** Turns the incoming call down. */
  decline() {
    const c = this.current;
    if (!c || c.direction !== 'incoming' || c.status !== 'ringing' || c.id === null) return;
    this.sig.send({ type: 'decline', callId: c.id });
  }

  /** Ends the call: cancels it while it rings out, declines it while it rings in. */
  hangUp() {
    const c = this.current;
    if (!c) return;
    if (c.status !== 'ringing') {
      if (c.id !== null) this.sig.send({ type: 'hangup', callId: c.id });
    } else if (c.direction === 'incoming') {
      this.decline();
    } else if (c.id === null) {
      c.cancelled = true;
    } else {
      this.sig.send({ type: 'cancel', callId: c.id });
    }
  }

  /**
   * The call rings: when the server pre-connects, its peer connection is set up now (no media).
   * @param {number} callId
   * @param {number} peer
   * @param {boolean} polite
   * @param {Promise<import('./media.js').LocalMedia> | null} [media] the caller's, opening
   */
  prepare(callId, peer, polite, media) {
    this.media?.close();
    this.media = prepareCall({
      callId, peer, polite, accepts: this.memberMap.get(peer)?.publish, preconnect: this.preconnect,
      relayOnly: this.relayOnly, iceServers: this.iceServers, send: (msg) => this.sig.send(msg), media: media ?? undefined,
    });
  }

  /**
   * Both agreed: the peer connection (made now, or while it rang) gets our media.
   * @param {number} callId
   * @param {number} peer
   * @param {boolean} polite
   */
  startCall(callId, peer, polite) {
    const pending = this.current;
    this.current = {
      id: callId, peer, peerName: pending?.peerName || this.memberMap.get(peer)?.name || '',
      direction: pending?.direction ?? 'outgoing', status: 'accepted', media: null, cancelled: false,
    };
    const call = this.current;
    this.remoteStream = null;
    this.remoteScreen = null;
    this.localStream = new MediaStream();
    this.localAnnounced = false;
    const opening = pending?.media ?? openLocalMedia({ publish: this.you?.publish });
    /** @type {CallPeers | null} */
    let media = null;
    /** @type {import('./peers.js').CallPeersEvents} */
    const events = {
      remoteStream: (id, stream) => {
        this.remoteStream = stream;
        this.emit('remote_stream', { peer: id, stream });
      },
      remoteScreen: (id, stream) => {
        this.remoteScreen = stream;
        this.emit('remote_screen', { peer: id, stream });
      },
      remoteMedia: (id, state, unavailable) => {
        if (!state.screen && this.remoteScreen) {
          this.remoteScreen = null;
          this.emit('remote_screen', { peer: id, stream: null });
        }
        // `unavailable`: their camera or microphone could not open (not merely turned off).
        this.emit('remote_media', { peer: id, ...state, unavailable });
      },
      quality: (id, sample) => this.emit('quality', { peer: id, level: qualityLevel(sample), sample }),
      connectionState: (id, state) => {
        this.emit('connection_state', { peer: id, state });
        if (state === 'connected' && call.status === 'accepted' && this.current === call) {
          call.status = 'connected';
          this.emit('connected', { callId, peer });
        }
      },
      localChange: () => media && this.localChanged(media),
    };
    const prepared = this.media;
    // The peer connection made while it rang, if the roles are those it was made with.
    if (prepared?.callId === callId && prepared.peers.get(peer)?.polite === polite) {
      media = prepared;
      this.emit('accepted', { callId, peer });
      prepared.accept({ media: opening, start: this.prefs, events });
      return;
    }
    prepared?.close();
    media = new CallPeers({
      callId,
      mode: 'direct',
      iceServers: this.iceServers,
      iceTransportPolicy: this.relayOnly ? 'relay' : 'all',
      media: opening,
      start: this.prefs,
      send: (msg) => this.sig.send(msg),
      events,
    });
    this.media = media;
    media.addPeer(peer, polite, this.memberMap.get(peer)?.publish);
    this.emit('accepted', { callId, peer });
  }

  /**
   * Our media opened or changed: keep `localStream` current (the same stream all call long, so
   * a <video> showing it follows), tell the page.
   * @param {CallPeers} media
   */
  localChanged(media) {
    const local = media.local;
    const stream = this.localStream;
    if (!local || !stream || this.media !== media) return;
    const first = !this.localAnnounced;
    this.localAnnounced = true;
    const want = [local.audio, local.video].filter((t) => t !== null);
    for (const track of stream.getTracks()) if (!want.includes(track)) stream.removeTrack(track);
    for (const track of want) if (!stream.getTracks().includes(track)) stream.addTrack(track);
    if (first) this.emit('local_stream', { stream });
    this.emit('local_media', { ...local.state(), problems: [...local.problems] });
  }

  /**
   * The call is over: release the devices and the peer connection.
   * @param {EndReason} reason
   * @param {boolean} [silent] no `call_ended` (the room is gone: `state` says why)
   * @param {number} [by]
   */
  endCall(reason, silent = false, by) {
    const c = this.current;
    if (!c) return;
    this.current = null;
    this.media?.close(); // devices too, also those still opening
    this.media = null;
    releaseMedia(c.media); // opened for a call that was never accepted
    this.localStream = this.remoteStream = this.remoteScreen = null;
    this.emit('local_stream', { stream: null });
    if (!silent) this.emit('call_ended', by === undefined ? { callId: c.id, peer: c.peer, reason } : { callId: c.id, peer: c.peer, reason, by });
  }

  /**
   * Mutes or unmutes the microphone (the other side sees it). Before a call: how the next one
   * starts.
   * @param {boolean} muted
   */
  setMicrophoneMuted(muted) {
    this.prefs.muted = muted;
    const local = this.media?.local;
    if (local?.audio && local.audioEnabled === muted) local.toggleMute();
  }

  /**
   * Stops the camera (its light goes off; the other side sees a camera-off state) or starts it
   * again. Before a call: how the next one starts.
   * @param {boolean} off
   * @returns {Promise<void>}
   */
  async setCameraOff(off) {
    this.prefs.cameraOff = off;
    const local = this.media?.local;
    if (local && (local.video === null) !== off) await local.toggleVideo();
  }

  /**
   * Shares a screen (the browser asks which) or stops sharing. Only during a call.
   * @param {boolean} [on]
   * @returns {Promise<void>}
   */
  async shareScreen(on = true) {
    const local = this.media?.local;
    if (local && (local.screen !== null) !== on) await local.toggleScreen();
  }

  /** @param {string} text a chat message to everyone in the room */
  sendChat(text) {
    this.mustBeIn('sendChat');
    this.sig.send({ type: 'chat', text });
  }

  /** For hosts: lets someone in from the lobby. @param {number} id */
  admit(id) {
    this.sig.send({ type: 'admit', id });
  }

  /** For hosts: turns someone in the lobby away. @param {number} id */
  deny(id) {
    this.sig.send({ type: 'deny', id });
  }

  /** For hosts: takes someone out of the room (they must knock to come back). @param {number} id */
  remove(id) {
    this.sig.send({ type: 'remove', id });
  }

  /** For hosts: ends the room for everyone. */
  endRoom() {
    this.sig.send({ type: 'end_room' });
  }

  /** Leaves the room (ending any call) and closes the connection. */
  leave() {
    if (this.state === 'left') return;
    this.endCall('left', true);
    this.sig.close();
    this.state = 'left';
    this.emit('state', { state: 'left' });
  }
}

/** @param {Promise<OpenedMedia> | null} media */
function releaseMedia(media) {
  media?.then((m) => [m.audio, m.video].forEach((track) => track?.stop()));
}

/**
 * A client for one person in one room; nothing is sent until `join()`.
 * @param {ConnectOptions} options
 * @returns {Client}
 */
export function connect(options) {
  return new Client(options);
}
