// @ts-check
//! The signalling client: one WebSocket to `/ws`, typed messages in and out. Touches no DOM.
//! The message shapes mirror docs/protocol.md and crates/visavis-protocol.

export const PROTOCOL_VERSION = 1;

/**
 * @typedef {{id: number, name: string}} Member
 * @typedef {{urls: string[], username?: string, credential?: string}} IceServer
 * @typedef {'declined'|'cancelled'|'no_answer'|'busy'|'hangup'|'left'} EndReason
 *
 * @typedef {{callId: number, participants: number[]}} GroupCall
 * @typedef {{seq: number, from: number, name: string, text: string, at: number}} ChatEntry
 * @typedef {{type: 'joined', version: number, room: string, you: Member, members: Member[],
 *            iceServers: IceServer[], ringTimeoutMs: number, group: GroupCall | null,
 *            chat: ChatEntry[]}} JoinedMsg
 * @typedef {{type: 'left', room: string}} LeftMsg
 * @typedef {{type: 'member_joined', member: Member}} MemberJoinedMsg
 * @typedef {{type: 'member_left', id: number}} MemberLeftMsg
 * @typedef {{type: 'ringing', callId: number, peer: number}} RingingMsg
 * @typedef {{type: 'incoming', callId: number, from: number, name: string}} IncomingMsg
 * @typedef {{type: 'accepted', callId: number, peer: number, polite: boolean}} AcceptedMsg
 * @typedef {{type: 'call_ended', callId: number, peer: number, reason: EndReason, by?: number}} CallEndedMsg
 * @typedef {{type: 'description', callId: number, from: number, description: RTCSessionDescriptionInit}} DescriptionMsg
 * @typedef {{type: 'candidate', callId: number, from: number, candidate: RTCIceCandidateInit | null}} CandidateMsg
 * @typedef {{type: 'media', callId: number, from: number, audio: boolean, video: boolean, screen: boolean}} MediaMsg
 * @typedef {{type: 'group_call'} & GroupCall} GroupCallMsg
 * @typedef {{type: 'chat'} & ChatEntry} ChatMsg
 * @typedef {{type: 'error', code: string, message: string, request?: string}} ErrorMsg
 *
 * @typedef {JoinedMsg | LeftMsg | MemberJoinedMsg | MemberLeftMsg | RingingMsg | IncomingMsg |
 *           AcceptedMsg | CallEndedMsg | DescriptionMsg | CandidateMsg | MediaMsg | GroupCallMsg |
 *           ChatMsg | ErrorMsg} ServerMsg
 *
 * @typedef {{type: 'join', version: number, room: string, name: string}
 *   | {type: 'leave'}
 *   | {type: 'invite', to: number}
 *   | {type: 'cancel' | 'accept' | 'decline' | 'hangup', callId: number}
 *   | {type: 'description', callId: number, to?: number, description: RTCSessionDescriptionInit}
 *   | {type: 'candidate', callId: number, to?: number, candidate: RTCIceCandidateInit | null}
 *   | {type: 'media', callId: number, audio: boolean, video: boolean, screen: boolean}
 *   | {type: 'group_join' | 'group_leave'}
 *   | {type: 'chat', text: string}} ClientMsg
 */

/** A refusal from the server (an `error` message), or a failure to reach it. */
export class SignallingError extends Error {
  /**
   * @param {string} code a stable code from docs/protocol.md, or `unreachable` / `closed`
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

export class Signalling {
  /** @param {string} url */
  constructor(url) {
    this.url = url;
    /** @type {WebSocket | null} */
    this.ws = null;
    /** Called with every server message other than the reply to `join`. @type {(msg: ServerMsg) => void} */
    this.onmessage = () => {};
    /** Called once when an open connection ends. @type {(code: number, reason: string) => void} */
    this.onclose = () => {};
  }

  /**
   * Opens the connection and joins `room` as `name`.
   * Rejects with a SignallingError: `unreachable`, or the server's error code.
   * @param {string} room
   * @param {string} name
   * @returns {Promise<JoinedMsg>}
   */
  join(room, name) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let joined = false;
      ws.onopen = () => this.send({ type: 'join', version: PROTOCOL_VERSION, room, name });
      ws.onmessage = (event) => {
        /** @type {ServerMsg} */
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return;
        }
        if (joined) {
          this.onmessage(msg);
        } else if (msg.type === 'joined') {
          joined = true;
          resolve(msg);
        } else if (msg.type === 'error') {
          reject(new SignallingError(msg.code, msg.message));
          ws.close(1000);
        }
      };
      ws.onclose = (event) => {
        if (joined) {
          this.onclose(event.code, event.reason);
        } else {
          reject(new SignallingError('unreachable', `cannot reach ${this.url}`));
        }
      };
    });
  }

  /** @param {ClientMsg} msg */
  send(msg) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(msg));
    }
  }

  /** Leaves the room and closes the connection without calling `onclose`. */
  close() {
    if (!this.ws) return;
    this.ws.onclose = null;
    this.send({ type: 'leave' });
    this.ws.close(1000);
    this.ws = null;
  }
}
