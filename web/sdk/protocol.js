// @ts-check
//! The signalling client: one WebSocket to `/ws` at a time, typed messages in and out, and a
//! session that survives the connection: heartbeats, reconnection with backoff and jitter,
//! resume with the session token, sequence numbers and acknowledgements so that no message is
//! lost or duplicated in either direction. Touches no DOM.
//! The message shapes mirror docs/protocol.md and crates/visavis-protocol.

export const PROTOCOL_VERSION = 1;

/**
 * `host`: a host of a private room (named rooms have none).
 * What a member may send in calls (an access token's permissions); absent: everything.
 * @typedef {{audio: boolean, video: boolean, screen: boolean}} Publish
 * @typedef {{path: 'host' | 'srflx' | 'prflx' | 'relay', transport: 'udp' | 'tcp' | 'tls',
 *   rttAvgMs: number, rttMaxMs: number, lossAvgPermille: number, lossMaxPermille: number,
 *   freezes: number}} QualityReport
 * @typedef {{id: number, name: string, host: boolean, publish?: Publish}} Member
 * @typedef {{urls: string[], username?: string, credential?: string}} IceServer
 * @typedef {'declined'|'cancelled'|'no_answer'|'busy'|'hangup'|'left'} EndReason
 * `media`: `sfu`, one peer connection to the server's SFU; `mesh`, one to every other participant.
 * @typedef {{callId: number, participants: number[], media: 'sfu' | 'mesh'}} GroupCall
 * A track the SFU forwards: the mid of its m-line in our peer connection, whose, and what.
 * @typedef {{mid: string, member: number, source: 'audio' | 'camera' | 'screen'}} SfuTrack
 * How we show one forwarded video (`sfu_view`): its tile's size in device pixels, on screen or not.
 * @typedef {{member: number, source: 'camera' | 'screen', width: number, height: number, visible: boolean}} ViewTrack
 * @typedef {{seq: number, from: number, name: string, text: string, at: number}} ChatEntry
 * A room's kind and settings: made with `create` (private), guests wait in the lobby, nobody
 * new may enter (locked), people admitted later read the chat from before (shareHistory).
 * @typedef {{private: boolean, lobby: boolean, locked: boolean, shareHistory: boolean}} RoomState
 * @typedef {'admitted' | 'denied' | 'left'} KnockOutcome
 * Devices that could not be opened at all (none there, or refused), not just turned off.
 * @typedef {{audio: boolean, video: boolean}} Unavailable
 * After a reloaded resume, the member's 1:1 call: `outgoing` (we called: impolite), `active`
 * (accepted; else ringing), `since` (accepted at, server ms since the epoch; null while ringing).
 * @typedef {{callId: number, peer: number, name: string, outgoing: boolean, active: boolean,
 *            since: number | null}} CurrentCall
 *
 * How 1:1 calls connect while they ring (`--preconnect`): through the TURN relay only, with
 * every candidate, or not at all (the peer connections are made on `accepted`).
 * @typedef {'relay' | 'direct' | 'off'} Preconnect
 *
 * `hostKey`: to hosts of a private room, the key of the host link; `null` for everyone else.
 * `preconnect`: absent from an older server, which means `off`.
 * @typedef {{type: 'joined', version: number, room: string, you: Member, members: Member[],
 *            iceServers: IceServer[], ringTimeoutMs: number, preconnect?: Preconnect, group: GroupCall | null,
 *            chat: ChatEntry[], state: RoomState, hostKey: string | null,
 *            inCall: number[], call: CurrentCall | null,
 *            token: string, heartbeatMs: number, resumeGraceMs: number}} JoinedMsg
 * @typedef {{type: 'ice_servers', iceServers: IceServer[]}} IceServersMsg
 * @typedef {{type: 'left', room: string}} LeftMsg
 * @typedef {{type: 'member_joined', member: Member}} MemberJoinedMsg
 * @typedef {{type: 'member_left', id: number}} MemberLeftMsg
 * `reloaded`: its page reloaded, its peer connections are gone: make new ones to it.
 * @typedef {{type: 'member_state', id: number, state: 'online' | 'reconnecting', reloaded?: boolean}} MemberStateMsg
 * @typedef {{type: 'member_call', id: number, inCall: boolean}} MemberCallMsg
 * @typedef {{type: 'call_attempt', from: number, name: string}} CallAttemptMsg
 * In a private room's lobby; the session fields as in `joined`, so the place in the lobby
 * survives a dropped connection.
 * @typedef {{type: 'waiting', room: string, you: Member,
 *            token: string, heartbeatMs: number, resumeGraceMs: number}} WaitingMsg
 * @typedef {{type: 'knock', member: Member}} KnockMsg
 * @typedef {{type: 'knock_ended', id: number, outcome: KnockOutcome, by?: number}} KnockEndedMsg
 * @typedef {{type: 'denied', room: string}} DeniedMsg
 * @typedef {{type: 'removed', room: string, by?: number}} RemovedMsg
 * @typedef {{type: 'room_ended', room: string, by?: number}} RoomEndedMsg
 * @typedef {{type: 'mute_request', by?: number}} MuteRequestMsg
 * @typedef {{type: 'member_updated', member: Member}} MemberUpdatedMsg
 * @typedef {{type: 'host_key', hostKey: string}} HostKeyMsg
 * @typedef {{type: 'room_state'} & RoomState} RoomStateMsg
 * @typedef {{type: 'ringing', callId: number, peer: number}} RingingMsg
 * @typedef {{type: 'incoming', callId: number, from: number, name: string}} IncomingMsg
 * @typedef {{type: 'accepted', callId: number, peer: number, polite: boolean}} AcceptedMsg
 * @typedef {{type: 'call_ended', callId: number, peer: number, reason: EndReason, by?: number}} CallEndedMsg
 * @typedef {{type: 'description', callId: number, from: number, description: RTCSessionDescriptionInit}} DescriptionMsg
 * @typedef {{type: 'candidate', callId: number, from: number, candidate: RTCIceCandidateInit | null}} CandidateMsg
 * @typedef {{type: 'media', callId: number, from: number, audio: boolean, video: boolean, screen: boolean,
 *            unavailable?: Unavailable}} MediaMsg
 * @typedef {{type: 'group_call'} & GroupCall} GroupCallMsg
 * @typedef {{type: 'sfu_description', callId: number, description: RTCSessionDescriptionInit, tracks: SfuTrack[]}} SfuDescriptionMsg
 * @typedef {{type: 'active_speaker', callId: number, member: number}} ActiveSpeakerMsg
 * @typedef {{type: 'sfu_restart', callId: number}} SfuRestartMsg
 * @typedef {{type: 'chat'} & ChatEntry} ChatMsg
 * @typedef {{type: 'error', code: string, message: string, request?: string}} ErrorMsg
 *
 * @typedef {JoinedMsg | IceServersMsg | LeftMsg | MemberJoinedMsg | MemberLeftMsg | MemberStateMsg |
 *           MemberCallMsg | CallAttemptMsg |
 *           WaitingMsg | KnockMsg | KnockEndedMsg | DeniedMsg | RemovedMsg | RoomEndedMsg |
 *           MuteRequestMsg | MemberUpdatedMsg | HostKeyMsg | RoomStateMsg |
 *           RingingMsg | IncomingMsg | AcceptedMsg | CallEndedMsg | DescriptionMsg | CandidateMsg |
 *           MediaMsg | GroupCallMsg | SfuDescriptionMsg | ActiveSpeakerMsg | SfuRestartMsg | ChatMsg | ErrorMsg} ServerMsg
 *
 * Session-level messages, handled here and never passed on:
 * @typedef {{type: 'ping', ack: number} | {type: 'resumed', version: number, lastCn: number, token: string}
 *   | {type: 'reconnect', reason: string}} SessionMsg
 *
 * Everything a client sends. `join`, `create`, `resume` and `pong` are about the session: this
 * module sends them itself, unnumbered.
 * @typedef {{type: 'join', version: number, room: string, name: string, hostKey?: string, accessToken?: string}
 *   | {type: 'create', version: number, name: string}
 *   | {type: 'resume', version: number, token: string, lastSn: number, reloaded?: boolean}
 *   | {type: 'pong', ack: number}
 *   | {type: 'leave'}
 *   | {type: 'invite', to: number}
 *   | {type: 'cancel' | 'accept' | 'decline' | 'hangup', callId: number}
 *   | {type: 'call_connected', callId: number, setupMs: number}
 *   | {type: 'call_quality', callId: number, report: QualityReport}
 *   | {type: 'description', callId: number, to?: number, description: RTCSessionDescriptionInit}
 *   | {type: 'candidate', callId: number, to?: number, candidate: RTCIceCandidateInit | null}
 *   | {type: 'media', callId: number, audio: boolean, video: boolean, screen: boolean, unavailable?: Unavailable}
 *   | {type: 'sfu_description', callId: number, description: RTCSessionDescriptionInit}
 *   | {type: 'sfu_view', callId: number, tracks: ViewTrack[]}
 *   | {type: 'group_join' | 'group_leave'}
 *   | {type: 'chat', text: string}
 *   | {type: 'admit' | 'deny' | 'remove' | 'mute' | 'make_host', id: number}
 *   | {type: 'room_settings', lobby?: boolean, locked?: boolean, shareHistory?: boolean}
 *   | {type: 'end_room'}} ClientMsg
 *
 * The envelope, written once per direction: on the wire a message is one JSON object with its
 * `type`, its fields and, when numbered, a sequence number: `sn` from the server (on every
 * message to a session but `ping` and `resumed`), `cn` from the client (on what `send` sends).
 * ServerFrame and ClientFrame are everything each side sends;
 * crates/visavis-protocol/tests/spec.rs checks that they name the same messages and fields as
 * the Rust types and docs/protocol.md.
 * @typedef {(ServerMsg | SessionMsg) & {sn?: number}} ServerFrame
 * @typedef {ClientMsg & {cn?: number}} ClientFrame
 *
 * How the session is doing: `online`; `reconnecting` (the connection dropped, we are trying
 * again); `rejoined` (the old session could not be resumed — e.g. the server restarted — so
 * we joined the room again as a new member; calls are gone); `waiting` (we joined again, but a
 * private room's lobby holds us until a host admits us: `joined` follows through `onmessage`).
 * @typedef {'online' | 'reconnecting' | 'rejoined' | 'waiting'} SessionStatus
 */

/** A refusal from the server (an `error` message), or a failure to reach it. */
export class SignallingError extends Error {
  /**
   * @param {string} code a stable code from docs/protocol.md, or `unreachable`
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The WebSocket endpoint of the server that served this page. */
export function defaultUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** Acknowledge at least every this many messages (besides every ping). */
const ACK_EVERY = 64;

/** How long one connection attempt may take. */
const CONNECT_TIMEOUT_MS = 5000;

/** Close code telling the server we will be back (it keeps our session for the grace period). */
const BE_RIGHT_BACK = 4001;

export class Signalling {
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** Called with every server message other than the reply to `join`. @type {(msg: ServerMsg) => void} */
    this.onmessage = () => {};
    /** Called when the session's state changes; with the new `joined` after a rejoin, or
     * with `waiting` when a private room's lobby holds us again, or
     * with the refusal when joining again failed (then `joined` is undefined and we are done).
     * @type {(status: SessionStatus, joined?: JoinedMsg | WaitingMsg, error?: SignallingError) => void} */
    this.onstatus = () => {};
    this.room = '';
    this.name = '';
    /** The key of a private room's host link, once we have one: a rejoin comes back as host. */
    this.hostKey = '';
    /** an access token from a product's link (`--access token` servers) */
    this.accessToken = '';
    /** The first handshake makes a private room (`create`) rather than joining one. */
    this.creating = false;
    this.token = '';
    /** Highest server sequence number received. */
    this.lastSn = 0;
    /** Next client sequence number. */
    this.nextCn = 1;
    /** Sent (or waiting to be sent) and not yet acknowledged. @type {{cn: number, text: string}[]} */
    this.unacked = [];
    this.heartbeatMs = 10_000;
    this.graceMs = 30_000;
    this.lastHeard = 0;
    /** `reloading`: a reloaded page takes its session back (`resume` with `reloaded`).
     * @type {'joining' | 'reloading' | 'online' | 'resuming' | 'rejoining' | 'closed'} */
    this.phase = 'joining';
    /** In a private room's lobby: a session (it resumes like any other), not yet in the room. */
    this.waiting = false;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.watchdog = undefined;
    /** When the connection dropped, to stop resuming once the grace period is surely over. */
    this.droppedAt = 0;
  }

  /**
   * Opens the connection and joins `room` as `name` (as a host with a private room's
   * `hostKey`). Resolves with `joined`, or with `waiting` in a private room's lobby: then
   * `joined` (admitted) or `denied` follows through `onmessage`.
   * Rejects with a SignallingError: `unreachable`, or the server's error code.
   * @param {string} room
   * @param {string} name
   * @param {string} [hostKey]
   * @param {string} [accessToken] from a product's link; the server takes the name from it
   * @returns {Promise<JoinedMsg | WaitingMsg>}
   */
  join(room, name, hostKey = '', accessToken = '') {
    this.room = room;
    this.name = name;
    this.hostKey = hostKey;
    this.accessToken = accessToken;
    return this.start();
  }

  /**
   * Opens the connection and makes a private room, with us as its host. Resolves with its
   * `joined` (which carries the room's id and `hostKey`); rejects as `join`.
   * @param {string} name
   * @returns {Promise<JoinedMsg | WaitingMsg>}
   */
  create(name) {
    this.name = name;
    this.creating = true;
    return this.start();
  }

  /**
   * Takes back the session of a page that was reloaded: it kept `token` and nothing else, so
   * the server answers with the room afresh (`joined`, with our call in `call`, or `waiting`)
   * rather than a replay. Rejects as `join` (`invalid_token`: the session is gone).
   * @param {string} token
   * @param {{room: string, name: string, hostKey?: string, accessToken?: string}} entry how to
   *   join again should the session be lost later
   * @returns {Promise<JoinedMsg | WaitingMsg>}
   */
  reload(token, entry) {
    this.token = token;
    this.room = entry.room;
    this.name = entry.name;
    this.hostKey = entry.hostKey ?? '';
    this.accessToken = entry.accessToken ?? '';
    this.phase = 'reloading';
    return this.start();
  }

  /** @returns {Promise<JoinedMsg | WaitingMsg>} */
  start() {
    return new Promise((resolve, reject) => {
      this.firstJoin = { resolve, reject };
      this.connect();
    });
  }

  /** The handshake that enters the room: `create` the first time, else `join` (as host when
   * we hold the host key), so a rejoin after a lost session finds the same private room. */
  hello() {
    this.raw(this.creating
      ? { type: 'create', version: PROTOCOL_VERSION, name: this.name }
      : {
        type: 'join', version: PROTOCOL_VERSION, room: this.room, name: this.name,
        ...(this.hostKey ? { hostKey: this.hostKey } : {}),
        ...(this.accessToken ? { accessToken: this.accessToken } : {}),
      });
  }

  /** Opens a WebSocket and starts the handshake the current phase needs. */
  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    // A connection attempt into a dead network can hang for a long time; give up on it early
    // so the next attempt goes out as soon as the network is back.
    const giveUp = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(giveUp);
      this.lastHeard = Date.now();
      if (this.phase === 'resuming') {
        this.raw({ type: 'resume', version: PROTOCOL_VERSION, token: this.token, lastSn: this.lastSn });
      } else if (this.phase === 'reloading') {
        this.raw({ type: 'resume', version: PROTOCOL_VERSION, token: this.token, lastSn: 0, reloaded: true });
      } else {
        this.hello();
      }
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      try {
        this.receive(JSON.parse(event.data));
      } catch (err) {
        console.warn('bad message from server', err);
      }
    };
    ws.onclose = () => this.dropped(ws);
  }

  /** @param {ServerFrame} msg */
  receive(msg) {
    if (msg.type === 'ping') {
      this.acknowledged(msg.ack);
      this.raw({ type: 'pong', ack: this.lastSn });
      return;
    }
    if (msg.type === 'reconnect') return; // the close follows; we come back by ourselves
    if (msg.type === 'resumed' && this.phase === 'reloading') {
      // Our numbering goes on from the server's count; `joined` (or `waiting`) follows.
      this.token = msg.token;
      this.nextCn = msg.lastCn + 1;
      return;
    }
    if (msg.type === 'resumed') {
      // Tokens are single-use: the one just used no longer works.
      this.token = msg.token;
      this.phase = 'online';
      this.attempt = 0;
      this.acknowledged(msg.lastCn);
      for (const m of this.unacked) this.ws?.send(m.text);
      this.onstatus('online');
      return;
    }
    if (typeof msg.sn === 'number') {
      // Replayed messages we already have are skipped; sequence numbers belong to the session.
      if (this.phase === 'online' && msg.sn <= this.lastSn) return;
      this.lastSn = msg.sn;
      // Acknowledge busy streams before the next ping, so the server's replay log stays small.
      if (msg.sn % ACK_EVERY === 0) this.raw({ type: 'pong', ack: msg.sn });
    }
    if (this.phase === 'joining' || this.phase === 'rejoining' || this.phase === 'reloading') return this.answerToJoin(msg);
    if (this.phase === 'resuming') {
      if (msg.type === 'error') {
        // The session is gone (expired, or the server restarted): join again as someone new.
        this.phase = 'rejoining';
        this.unacked = [];
        this.hello();
      }
      return;
    }
    if (msg.type === 'joined') this.entered(msg); // a host let us in from the lobby
    if (msg.type === 'host_key') this.hostKey = msg.hostKey; // we were made a host
    this.onmessage(/** @type {ServerMsg} */ (msg));
  }

  /**
   * We have a session that can be resumed: in the room, or in its lobby.
   * @param {JoinedMsg | WaitingMsg} msg
   */
  entered(msg) {
    this.phase = 'online';
    this.attempt = 0;
    this.creating = false;
    this.waiting = msg.type === 'waiting';
    this.room = msg.room;
    if (msg.type === 'joined' && msg.hostKey) this.hostKey = msg.hostKey;
    this.token = msg.token;
    this.heartbeatMs = msg.heartbeatMs ?? this.heartbeatMs;
    this.graceMs = msg.resumeGraceMs ?? this.graceMs;
    this.startWatchdog();
  }

  /** @param {ServerMsg} msg */
  answerToJoin(msg) {
    const rejoined = this.phase === 'rejoining';
    if (msg.type === 'joined') {
      this.entered(msg);
      if (rejoined) this.onstatus('rejoined', msg);
      else this.firstJoin?.resolve(msg);
    } else if (msg.type === 'waiting') {
      // A private room's lobby: `joined` follows when a host admits us.
      this.entered(msg);
      if (rejoined) this.onstatus('waiting', msg);
      else this.firstJoin?.resolve(msg);
    } else if (msg.type === 'error') {
      const error = new SignallingError(msg.code, msg.message);
      if (this.phase === 'joining' || this.phase === 'reloading') {
        this.firstJoin?.reject(error);
        this.shutdown();
      } else {
        // Rejoining failed (say, the room filled up or was ended meanwhile): this session is over.
        this.shutdown();
        this.onstatus('rejoined', undefined, error);
      }
    }
  }

  /** The server has processed our messages up to `cn`. @param {number} cn */
  acknowledged(cn) {
    while (this.unacked.length && this.unacked[0].cn <= cn) this.unacked.shift();
  }

  /** A heartbeat watchdog: a server silent for longer than the heartbeat timeout is gone. */
  startWatchdog() {
    clearInterval(this.watchdog);
    this.watchdog = setInterval(() => {
      if (this.phase === 'online' && this.ws && Date.now() - this.lastHeard > this.heartbeatMs) {
        this.ws.close(BE_RIGHT_BACK, 'server silent');
      }
    }, 1000);
  }

  /** @param {WebSocket} ws */
  dropped(ws) {
    if (ws !== this.ws || this.phase === 'closed') return;
    this.ws = null;
    if (this.phase === 'joining' || this.phase === 'reloading') {
      this.firstJoin?.reject(new SignallingError('unreachable', `cannot reach ${this.url}`));
      this.shutdown();
      return;
    }
    if (this.phase === 'online') {
      this.droppedAt = Date.now();
      this.onstatus('reconnecting');
    }
    // Within the grace period we resume; after it the session is surely gone, so rejoin (in a
    // private room that may mean knocking again).
    this.phase = Date.now() - this.droppedAt < this.graceMs ? 'resuming' : 'rejoining';
    if (this.phase === 'rejoining') this.unacked = [];
    const delay = Math.min(4000, 500 * 2 ** this.attempt) * (0.5 + Math.random());
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * Sends an app message, numbered, kept until the server acknowledges it, and re-sent after
   * a resume if the connection dropped before it arrived.
   * @param {ClientMsg} msg
   */
  send(msg) {
    if (this.phase === 'closed') return;
    const cn = this.nextCn++;
    const text = JSON.stringify({ ...msg, cn });
    this.unacked.push({ cn, text });
    if (this.phase === 'online' && this.ws?.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /** Sends a session-level message (not numbered, not kept). @param {ClientMsg} msg */
  raw(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(msg));
  }

  /** Leaves the room and closes the connection for good, without calling `onstatus`. */
  close() {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'leave' }));
    this.shutdown();
  }

  shutdown() {
    this.phase = 'closed';
    clearTimeout(this.retryTimer);
    clearInterval(this.watchdog);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
  }

  /**
   * The page is going away (reloaded, or closed): close saying we will be back (4001), so the
   * server keeps the session for its grace period and a reloaded page can take it back. If the
   * page stays after all (restored from the back-forward cache), the session resumes as after a
   * drop.
   */
  suspend() {
    if (this.phase === 'online') this.ws?.close(BE_RIGHT_BACK, 'page hidden');
  }

  /** For tests: drop the connection as a network would, without a goodbye. */
  simulateDrop() {
    this.ws?.close(BE_RIGHT_BACK, 'simulated drop');
  }
}
