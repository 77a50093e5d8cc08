// @ts-check
//! The page: landing form, a private room's lobby, room view (members, host controls, group
//! call, chat), knocks, and the call dialogs. It holds the app state, reacts to signalling
//! messages, and renders state as text (never as HTML).

import { Signalling, SignallingError, defaultUrl } from '../sdk/protocol.js';
import { mediaBlocked, openLocalMedia, secureUrl } from '../sdk/media.js';
import { prepareCall } from '../sdk/peers.js';
import { Ringer } from './ring.js';
import { CallView, FORCE_RELAY, setLabel } from './call.js';
import { ChatView } from './chat.js';
import { NetcheckView } from './netcheck.js';
import { currentLang, setLang, t } from './i18n.js';
import { forgetSession, lockSession, newSessionKey, storeSession, storedSession } from './session.js';
import { PreJoin, callPrefs } from './prejoin.js';

/**
 * @typedef {import('../sdk/protocol.js').ServerMsg} ServerMsg
 * @typedef {import('../sdk/protocol.js').Member} Member
 * @typedef {import('../sdk/protocol.js').GroupCall} GroupCall
 * @typedef {import('../sdk/protocol.js').CallEndedMsg} CallEndedMsg
 * @typedef {import('../sdk/protocol.js').JoinedMsg} JoinedMsg
 * @typedef {import('../sdk/protocol.js').WaitingMsg} WaitingMsg
 * @typedef {import('../sdk/protocol.js').RoomState} RoomState
 * @typedef {import('./i18n.js').Key} Key
 * @typedef {import('../sdk/media.js').LocalMedia} OpenedMedia
 * @typedef {{key: import('./i18n.js').Key, params?: Record<string, string>}} Text
 *
 * A 1:1 call before it is accepted. `id` is null until the server confirms the invite.
 * `prepared`: its peer connection, made while it rings when the server pre-connects.
 * @typedef {{id: number | null, peer: number, peerName: string, direction: 'outgoing' | 'incoming',
 *            media: Promise<OpenedMedia> | null, cancelled: boolean, answered: boolean,
 *            prepared: import('../sdk/peers.js').CallPeers | null}} PendingCall
 */

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const dialogs = {
  outgoing: /** @type {HTMLDialogElement} */ (byId('outgoing')),
  incoming: /** @type {HTMLDialogElement} */ (byId('incoming')),
};
const nameInput = /** @type {HTMLInputElement} */ (byId('name'));
const roomInput = /** @type {HTMLInputElement} */ (byId('room'));
const joinButton = /** @type {HTMLButtonElement} */ (byId('join'));
const createButton = /** @type {HTMLButtonElement} */ (byId('create'));
const shareHistoryBox = /** @type {HTMLInputElement} */ (byId('share-history'));

/** How long a notice about the room (joined, left, knocks) stays in the call view. */
const CALL_EVENT_MS = 8000;
/** A named room's state: no hosts, no lobby. */
const NAMED_ROOM = Object.freeze({ private: false, lobby: false, locked: false, shareHistory: true });
const langSelect = /** @type {HTMLSelectElement} */ (byId('lang'));

const state = {
  /** @type {Signalling | null} */
  sig: null,
  /** @type {Member | null} we, in a room */
  me: null,
  room: '',
  /** @type {RoomState} the room's kind and settings */
  roomState: NAMED_ROOM,
  /** the key of this private room's host link, when we are a host */
  hostKey: '',
  /** @type {Member | null} we, waiting in a private room's lobby for a host to let us in */
  waiting: null,
  /** @type {Map<number, Member>} other members by id, in join order */
  members: new Map(),
  /** @type {Map<number, string>} the names of members who left, for messages that name them */
  departed: new Map(),
  /** @type {Map<number, string>} for hosts: who waits in the lobby, by id */
  knocks: new Map(),
  /** @type {{id: number, text: Text}[]} short notices shown in the call view */
  callEvents: [],
  /** the people list is open over the call */
  peopleOpen: false,
  /** "End for everyone" was pressed once and waits for confirmation */
  confirmEnd: false,
  /** @type {Text | null} the outcome of the last copy button */
  copied: null,
  /** @type {Text | null} the outcome of "Copy link" for the room's plain link */
  shared: null,
  /** @type {Set<number>} members whose connection dropped and who may come back */
  reconnecting: new Set(),
  /** @type {Set<number>} members in a 1:1 call (with someone else than us, or with us) */
  inCall: new Set(),
  /** the key of this tab's session (its Web Lock), kept across a reload */
  sessionKey: '',
  /** our own connection to the server is down and being retried */
  offline: false,
  /** @type {RTCIceServer[]} */
  iceServers: [],
  /** @type {import('../sdk/protocol.js').Preconnect} whether 1:1 calls connect while they ring */
  preconnect: /** @type {import('../sdk/protocol.js').Preconnect} */ ('off'),
  /** @type {PendingCall | null} */
  pending: null,
  /** @type {CallView | null} the call we are in, 1:1 or group */
  call: null,
  /** @type {GroupCall | null} the room's group call, whether we are in it or not */
  group: null,
  /** @type {Promise<OpenedMedia> | null} devices opening while our group_join is answered */
  joiningGroup: null,
  /** @type {Text | null} */
  notice: null,
  /** @type {Text | null} */
  landingError: null,
  /** @type {'' | 'join' | 'create' | 'resume'} a join, create, or (after a reload) resume in flight */
  joining: /** @type {'' | 'join' | 'create' | 'resume'} */ (''),
};
let callEventIds = 0;
/**
 * Opened over plain http:// from another machine, the page may not use a camera or microphone
 * at all: calls are off (a call could only look connected, with nothing to see or hear) and the
 * page says why and where to go instead. The room and its chat work as usual.
 */
const INSECURE = mediaBlocked() === 'insecure';
const ringer = new Ringer();
const chat = new ChatView((text) => state.sig?.send({ type: 'chat', text }), (id) => isHost(id));

/** For tests and debugging in the console: the live objects, read-only. */
Object.defineProperty(window, 'visavis', {
  value: Object.freeze({
    /** The peer connection of a 1:1 call (or the first one of a group call). */
    get pc() { return state.call ? [...state.call.remotes.values()][0]?.peer.pc ?? null : null; },
    /** Peer connections by the other person's name. */
    get pcs() {
      const call = state.call;
      return call ? Object.fromEntries([...call.remotes.values()].map((r) => [r.name, r.peer.pc])) : {};
    },
    get ringing() { return ringer.ringing; },
    /** The call we are in (1:1 or group), by its server id. */
    get callId() { return state.call?.callId ?? null; },
    /** Our member id in the room. */
    get memberId() { return state.me?.id ?? null; },
    /** Knock chimes sounded so far. */
    get chimes() { return ringer.chimes; },
    /** ICE restarts done by the peer connections of the current call. */
    get iceRestarts() {
      return state.call ? [...state.call.remotes.values()].reduce((n, r) => n + r.peer.iceRestarts, 0) : 0;
    },
    /** How many times the group call's SFU connection was made anew (`sfu_restart`). */
    get sfuRestarts() {
      const peers = state.call?.peers;
      return peers && 'restarts' in peers ? peers.restarts : 0;
    },
    /** Test sounds the pre-join screen played. */
    get testSounds() { return prejoin.played; },
    /** Drops the signalling connection as a network would (the session then resumes). */
    dropSignalling() { state.sig?.simulateDrop(); },
  }),
});

// ---- landing -------------------------------------------------------------------------------

function roomFromPath() {
  const match = location.pathname.match(/^\/r\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : '';
}

/**
 * Host keys by room, for this tab only (sessionStorage): a host link's key is taken out of the
 * address bar as soon as the page opens (so the address can be shared as it is), and a reload
 * still comes back as host. Keys never go into a query or to the server other than in `join`.
 */
const hostKeys = {
  /** @param {string} room */
  get: (room) => sessionStorage.getItem(`visavis.host.${room}`) ?? '',
  /** @param {string} room @param {string} key */
  set: (room, key) => sessionStorage.setItem(`visavis.host.${room}`, key),
  /** @param {string} room */
  forget: (room) => sessionStorage.removeItem(`visavis.host.${room}`),
};

/** Access tokens by room, for this tab only, kept as host keys are. */
const accessTokens = {
  /** @param {string} room */
  get: (room) => sessionStorage.getItem(`visavis.token.${room}`) ?? '',
  /** @param {string} room @param {string} token */
  set: (room, token) => sessionStorage.setItem(`visavis.token.${room}`, token),
  /** @param {string} room */
  forget: (room) => sessionStorage.removeItem(`visavis.token.${room}`),
};

/**
 * A host link (`/r/<id>#host=<key>`) or a product's link (`/r/<room>#token=<jwt>`): keep the key
 * or token for this tab, and drop it from the address bar.
 */
function takeSecretsFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const room = roomFromPath();
  const [key, token] = [fragment.get('host'), fragment.get('token')];
  if (!room || (!key && !token)) return;
  if (key) hostKeys.set(room, key);
  if (token) accessTokens.set(room, token);
  history.replaceState(null, '', `${location.pathname}${location.search}`);
}

/**
 * The display name an access token carries (the server checks the token and uses that name;
 * this only fills in the page meanwhile), or '' if it cannot be read.
 * @param {string} token
 */
function nameInToken(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims.name === 'string' ? claims.name : '';
  } catch {
    return '';
  }
}

/** With a product's link, enter at once: the token says who we are and where. */
function enterWithToken() {
  const room = roomFromPath();
  const token = room ? accessTokens.get(room) : '';
  if (!token) return;
  const name = nameInToken(token) || nameInput.value.trim() || '…';
  nameInput.value = name;
  enter('join', name, (sig) => sig.join(room, name, '', token));
}

/** The name typed in, or null after saying what is wrong with it. */
function nameTyped() {
  const name = nameInput.value.trim();
  if (name.length === 0 || [...name].length > 64) {
    state.landingError = { key: 'err.invalid_name' };
    render();
    return null;
  }
  return name;
}

/** @param {SubmitEvent} event */
function onJoin(event) {
  event.preventDefault();
  const name = nameTyped();
  if (name === null) return;
  const room = roomInput.value.trim();
  enter('join', name, (sig) => sig.join(room, name, hostKeys.get(room), accessTokens.get(room)));
}

function onCreate() {
  const name = nameTyped();
  if (name !== null) enter('create', name, (sig) => sig.create(name));
}

/** The landing errors with a message of their own; others are shown with the server's text. */
const LANDING_ERRORS = [
  'room_full', 'invalid_name', 'invalid_room', 'unreachable', 'room_locked', 'room_not_found',
  'invalid_host_key', 'private_only', 'token_required', 'token_invalid', 'token_expired',
  'token_wrong_room', 'token_revoked',
];

/**
 * Joins or creates a room (or, after a reload, takes this tab's session back), then shows it
 * (or its lobby).
 * @param {'join' | 'create' | 'resume'} how
 * @param {string} name
 * @param {(sig: Signalling) => Promise<JoinedMsg | WaitingMsg>} start
 * @param {string} [key] the session's key, when taking it back
 */
async function enter(how, name, start, key = '') {
  if (state.joining) return;
  state.joining = how;
  state.landingError = null;
  render();
  prejoin.stop();
  const sig = new Signalling(defaultUrl());
  try {
    const answer = await start(sig);
    state.sig = sig;
    state.notice = null;
    sig.onmessage = onMessage;
    sig.onstatus = onSessionStatus;
    localStorage.setItem('visavis.name', name);
    state.sessionKey = key || newSessionKey();
    if (!key) lockSession(state.sessionKey);
    keepSession();
    if (answer.type === 'joined') {
      enterRoom(answer);
      resumeCalls(answer);
    } else {
      waitInLobby(answer);
    }
    // Ask now (a click brought us here) so an incoming call can notify while the tab is hidden.
    if (how !== 'resume' && typeof Notification === 'function' && Notification.permission === 'default') {
      Notification.requestPermission().catch(() => {});
    }
    render();
    // Keyboard and screen reader users land on what they came for, not the top of the page
    // (or, back after a reload, in the call they were in).
    if (!state.call) byId(answer.type === 'joined' ? 'room-title' : 'waiting-leave').focus();
  } catch (err) {
    if (how === 'resume') {
      // The session is gone (the grace period ran out, or the server restarted without its
      // state): the landing form, filled in, to join again.
      forgetSession();
      state.landingError = null;
      return;
    }
    const code = err instanceof SignallingError ? err.code : 'generic';
    // A host link that does not fit the room is of no more use.
    if (code === 'invalid_host_key') hostKeys.forget(roomInput.value.trim());
    // Nor is a token that was refused: a fresh link is needed.
    if (code.startsWith('token_')) accessTokens.forget(roomInput.value.trim());
    state.landingError = LANDING_ERRORS.includes(code)
      ? { key: /** @type {Key} */ (`err.${code}`) }
      : { key: 'err.generic', params: { message: err instanceof Error ? err.message : String(err) } };
  } finally {
    state.joining = '';
    render();
  }
}

/** Takes the room's state from a `joined` message. @param {JoinedMsg} joined */
function enterRoom(joined) {
  state.waiting = null;
  state.me = joined.you;
  state.room = joined.room;
  state.roomState = joined.state ?? NAMED_ROOM;
  state.iceServers = joined.iceServers;
  state.preconnect = joined.preconnect ?? 'off';
  state.members = new Map(joined.members.map((m) => [m.id, m]));
  state.departed.clear();
  state.reconnecting.clear();
  state.inCall = new Set(joined.inCall ?? []);
  state.group = joined.group;
  state.knocks.clear();
  state.confirmEnd = false;
  state.copied = null;
  state.shared = null;
  if (joined.hostKey) setHostKey(joined.hostKey);
  else if (!joined.you.host) state.hostKey = '';
  chat.reset(joined.chat);
  showRoomAddress(joined.room);
}

/**
 * Back after a reload (`joined` carries our 1:1 call, and the group call lists us): pick our
 * calls up again with new peer connections; the others make theirs when they hear we reloaded.
 * @param {JoinedMsg} joined
 */
function resumeCalls(joined) {
  const c = joined.call;
  if (c?.active) {
    const call = newCall(c.callId, 'direct', openMedia(), undefined, c.since ?? Date.now());
    call?.addPeer(c.peer, c.name, !c.outgoing, state.members.get(c.peer)?.publish);
  } else if (c) {
    state.pending = {
      id: c.callId, peer: c.peer, peerName: c.name, direction: c.outgoing ? 'outgoing' : 'incoming',
      media: c.outgoing ? openMedia() : null, cancelled: false, answered: false,
      prepared: null, // the other side's was made for the page before the reload: none on Accept
    };
    if (!c.outgoing) announceIncoming(c.name);
  }
  const me = state.me?.id;
  if (me !== undefined && joined.group?.participants.includes(me)) {
    state.joiningGroup = openMedia();
    onGroupCall(joined.group);
  }
}

/** Keeps what a reload needs to take this tab's session back (the token changes over time). */
function keepSession() {
  const sig = state.sig;
  if (!sig || !state.sessionKey || !sig.token) return;
  storeSession({
    key: state.sessionKey, token: sig.token, room: sig.room, name: sig.name,
    hostKey: sig.hostKey || undefined, accessToken: sig.accessToken || undefined,
  });
}

/** A reloaded tab takes its session back: same room, same call, the chat as it was. */
async function resumeStored() {
  const stored = storedSession();
  if (!stored) return false;
  roomInput.value = stored.room;
  if (!(await lockSession(stored.key))) {
    // Another tab (this one duplicated) holds the session: this one starts afresh.
    forgetSession();
    return false;
  }
  await enter('resume', stored.name, (sig) => sig.reload(stored.token, stored), stored.key);
  return true;
}

/** In a private room's lobby: nothing of the room until a host lets us in. @param {WaitingMsg} msg */
function waitInLobby(msg) {
  endCallUi();
  state.waiting = msg.you;
  state.me = null;
  state.room = msg.room;
  state.roomState = NAMED_ROOM;
  state.members.clear();
  state.reconnecting.clear();
  state.knocks.clear();
  state.group = null;
  chat.reset([]);
  showRoomAddress(msg.room);
}

/**
 * The address bar shows the room's plain link (for a private room, the guest link: the host
 * key never shows there, so the address can be shared as it is).
 * @param {string} room
 */
function showRoomAddress(room) {
  history.replaceState(null, '', `/r/${encodeURIComponent(room)}${location.search}`);
}

/** @param {string} key */
function setHostKey(key) {
  state.hostKey = key;
  hostKeys.set(state.room, key);
}

/**
 * Opens camera and microphone, only the kinds this person may send (an access token may forbid
 * some), from the devices picked before (the pre-join screen).
 */
function openMedia() {
  const prefs = callPrefs();
  return openLocalMedia({ publish: state.me?.publish, audioInput: prefs.microphone || undefined, videoInput: prefs.camera || undefined });
}

/** @param {number} [id] a member, or we without an id */
function isHost(id) {
  if (id === undefined || id === state.me?.id) return state.me?.host ?? false;
  return state.members.get(id)?.host ?? false;
}

/**
 * A member's name, or "The host" for one we do not know (e.g. while waiting) or for none (the
 * product's back end did it, through the REST API).
 * @param {number | undefined} id
 */
function nameOf(id) {
  if (id === undefined) return t('theHost');
  if (id === state.me?.id) return state.me.name;
  return state.members.get(id)?.name ?? state.departed.get(id) ?? t('theHost');
}

/**
 * Our session's connection: dropped (we keep going: media is peer to peer), resumed, or
 * replaced by a new membership because the old one could not be resumed (in a private room's
 * lobby, perhaps: then we wait to be let in again).
 * @param {import('../sdk/protocol.js').SessionStatus} status
 * @param {JoinedMsg | WaitingMsg} [joined]
 * @param {SignallingError} [error]
 */
function onSessionStatus(status, joined, error) {
  state.offline = status === 'reconnecting';
  chat.setOffline(state.offline);
  if (status === 'rejoined') {
    if (joined?.type !== 'joined') {
      const code = error?.code ?? '';
      const known = ['room_locked', 'room_not_found', 'room_full'].includes(code);
      return resetToLanding(known ? { key: /** @type {Key} */ (`err.${code}`) } : { key: 'err.closed' });
    }
    const hadCall = state.call !== null || state.pending !== null;
    endCallUi();
    enterRoom(joined);
    state.notice = hadCall ? { key: 'rejoinedCallEnded' } : null;
  } else if (status === 'waiting' && joined?.type === 'waiting') {
    waitInLobby(joined);
  }
  render();
}

/**
 * Back to the landing form, ending whatever was going on. The room stays filled in, so that
 * someone turned away or removed can ask again.
 * @param {Text | null} error
 * @param {{goodbye?: boolean, forget?: boolean}} [options] `goodbye`: tell the server we
 *   leave (not when it already sent us out); `forget`: the room is gone, clear it too
 */
function resetToLanding(error, { goodbye = true, forget = false } = {}) {
  endCallUi();
  forgetSession();
  state.sessionKey = '';
  if (goodbye) state.sig?.close();
  else state.sig?.shutdown();
  state.sig = null;
  if (forget) {
    hostKeys.forget(state.room);
    history.replaceState(null, '', `/${location.search}`);
    roomInput.value = '';
  } else if (state.room) {
    roomInput.value = state.room;
  }
  state.me = null;
  state.waiting = null;
  state.room = '';
  state.roomState = NAMED_ROOM;
  state.hostKey = '';
  state.members.clear();
  state.reconnecting.clear();
  state.inCall.clear();
  state.knocks.clear();
  state.callEvents = [];
  state.peopleOpen = false;
  state.offline = false;
  chat.setOffline(false);
  state.group = null;
  state.landingError = error;
  render();
}

// ---- signalling ----------------------------------------------------------------------------

/** @param {ServerMsg} msg */
function onMessage(msg) {
  switch (msg.type) {
    case 'ice_servers':
      // Fresh TURN credentials: the ones from `joined` stop working for new relays.
      state.iceServers = msg.iceServers;
      state.call?.setIceServers(msg.iceServers);
      state.pending?.prepared?.setIceServers(msg.iceServers);
      return;
    case 'joined':
      // A host let us in from the lobby.
      enterRoom(msg);
      break;
    case 'member_joined':
      state.members.set(msg.member.id, msg.member);
      callEvent({ key: 'event.joined', params: { name: msg.member.name } });
      break;
    case 'member_left': {
      const name = state.members.get(msg.id)?.name;
      if (name !== undefined) state.departed.set(msg.id, name);
      state.members.delete(msg.id);
      state.reconnecting.delete(msg.id);
      state.inCall.delete(msg.id);
      if (name !== undefined) callEvent({ key: 'event.left', params: { name } });
      break;
    }
    case 'member_updated':
      if (msg.member.id === state.me?.id) state.me = msg.member;
      else state.members.set(msg.member.id, msg.member);
      break;
    case 'host_key':
      setHostKey(msg.hostKey);
      break;
    case 'room_state':
      state.roomState = { private: msg.private, lobby: msg.lobby, locked: msg.locked, shareHistory: msg.shareHistory };
      break;
    case 'knock':
      if (!state.knocks.has(msg.member.id)) ringer.chime();
      // The knock itself shows in the call view during a call.
      state.knocks.set(msg.member.id, msg.member.name);
      break;
    case 'knock_ended':
      state.knocks.delete(msg.id);
      break;
    case 'waiting':
      waitInLobby(msg);
      break;
    case 'denied':
      return resetToLanding({ key: 'out.denied' }, { goodbye: false });
    case 'removed':
      return resetToLanding({ key: 'out.removed', params: { name: nameOf(msg.by) } }, { goodbye: false });
    case 'room_ended':
      return resetToLanding(
        msg.by === state.me?.id ? { key: 'out.endedByYou' } : { key: 'out.ended', params: { name: nameOf(msg.by) } },
        { goodbye: false, forget: true },
      );
    case 'mute_request': {
      const text = /** @type {Text} */ ({ key: 'mutedBy', params: { name: nameOf(msg.by) } });
      state.call?.muteMicrophone();
      state.notice = text;
      callEvent(text);
      break;
    }
    case 'member_state':
      if (msg.state === 'reconnecting') state.reconnecting.add(msg.id);
      else state.reconnecting.delete(msg.id);
      state.call?.setReconnecting(msg.id, msg.state === 'reconnecting');
      // Their page reloaded: its peer connections are gone; make ours to it again.
      if (msg.reloaded) state.call?.renewPeer(msg.id);
      // A ringing call's connection to them is gone too: Accept makes a new one.
      if (msg.reloaded && state.pending?.peer === msg.id) {
        state.pending.prepared?.close();
        state.pending.prepared = null;
      }
      break;
    case 'member_call':
      if (msg.inCall) state.inCall.add(msg.id);
      else state.inCall.delete(msg.id);
      break;
    case 'call_attempt': {
      const text = /** @type {Text} */ ({ key: 'callAttempt', params: { name: msg.name } });
      state.notice = text;
      callEvent(text);
      break;
    }
    case 'ringing':
      if (state.pending?.direction === 'outgoing' && state.pending.peer === msg.peer) {
        state.pending.id = msg.callId;
        // Cancel pressed before the server had numbered the call.
        if (state.pending.cancelled) state.sig?.send({ type: 'cancel', callId: msg.callId });
        else state.pending.prepared = prepare(msg.callId, msg.peer, false, state.pending.media);
      }
      break;
    case 'incoming': {
      // Glare: we are calling them too, and our invite accepts this call (`accepted` follows);
      // the camera we opened for our call is this one's, and nothing rings.
      const ours = state.pending;
      const glare = ours?.direction === 'outgoing' && ours.id === null && ours.peer === msg.from;
      state.pending = {
        id: msg.callId, peer: msg.from, peerName: msg.name, direction: 'incoming',
        media: glare ? ours.media : null, cancelled: false, answered: glare,
        prepared: prepare(msg.callId, msg.from, true),
      };
      if (!glare) announceIncoming(msg.name);
      break;
    }
    case 'accepted':
      startDirectCall(msg.callId, msg.peer, msg.polite);
      break;
    case 'call_ended':
      onCallEnded(msg);
      break;
    case 'group_call':
      onGroupCall({ callId: msg.callId, participants: msg.participants, media: msg.media ?? 'mesh' });
      break;
    case 'description':
    case 'candidate':
    case 'media':
    case 'sfu_description':
    case 'sfu_restart':
    case 'active_speaker':
      if (state.call?.callId === msg.callId) state.call.handle(msg);
      else if (state.pending?.prepared?.callId === msg.callId) state.pending.prepared.handle(msg);
      return;
    case 'chat':
      chat.add(msg);
      return;
    case 'error':
      onError(msg);
      break;
  }
  render();
}

/**
 * A short notice in the call view (someone joined, left, knocks; we were muted), so that
 * people in a call, who do not see the room behind it, hear of it.
 * @param {Text} text
 */
function callEvent(text) {
  if (!state.call) return;
  const id = ++callEventIds;
  state.callEvents.push({ id, text });
  setTimeout(() => {
    state.callEvents = state.callEvents.filter((e) => e.id !== id);
    render();
  }, CALL_EVENT_MS);
}

/** Errors about the room's new rules, each with a message of its own. */
const ROOM_ERRORS = ['not_host', 'not_waiting', 'not_admitted', 'unknown_member', 'room_locked'];

/** @param {import('../sdk/protocol.js').ErrorMsg} msg */
function onError(msg) {
  if (msg.code === 'invalid_chat') return chat.refused(t('err.invalid_chat'));
  if (ROOM_ERRORS.includes(msg.code)) {
    state.notice = { key: /** @type {Key} */ (`err.${msg.code}`) };
    return;
  }
  if (msg.code === 'call_full') {
    releaseMedia(state.joiningGroup);
    state.joiningGroup = null;
    state.notice = { key: 'err.call_full' };
    return;
  }
  // A refused invite never rang: nothing is calling any more.
  const pending = state.pending;
  if (msg.request === 'invite' && pending?.direction === 'outgoing' && pending.id === null) {
    releaseMedia(pending.media);
    state.pending = null;
  }
  if (msg.code === 'rate_limited') {
    state.notice = { key: 'err.rate_limited' };
    return;
  }
  // Errors about a call that has just ended race harmlessly with its call_ended.
  if (msg.code !== 'unknown_call') state.notice = { key: 'err.generic', params: { message: msg.message } };
}

/** @param {Promise<OpenedMedia> | null} media */
function releaseMedia(media) {
  media?.then((m) => [m.audio, m.video].forEach((track) => track?.stop()));
}

// ---- 1:1 calls -----------------------------------------------------------------------------

/** @param {number} peer */
function invite(peer) {
  if (!state.sig || state.pending || state.call || INSECURE || state.offline) return;
  state.notice = null;
  state.pending = {
    id: null,
    peer,
    peerName: state.members.get(peer)?.name ?? '',
    direction: 'outgoing',
    // Open the camera while it rings, so the call starts as soon as it is accepted.
    media: openMedia(),
    cancelled: false,
    answered: false,
    prepared: null,
  };
  state.sig.send({ type: 'invite', to: peer });
  render();
}

/** The page's title when no call rings. */
const TITLE = document.title;
/** @type {Notification | null} */
let incomingNotice = null;

/**
 * A call rings here: the ring tone, the tab's title, a vibration on phones, and, while the page
 * is hidden, a system notification (if the person allowed them).
 * @param {string} name the caller
 */
function announceIncoming(name) {
  ringer.start();
  document.title = t('titleIncoming', { name });
  navigator.vibrate?.([400, 200, 400, 200, 400]);
  if (document.hidden && typeof Notification === 'function' && Notification.permission === 'granted') {
    try {
      incomingNotice = new Notification(t('incomingFrom', { name }), { tag: 'visavis-incoming', requireInteraction: true });
      incomingNotice.onclick = () => { window.focus(); incomingNotice?.close(); };
    } catch {
      incomingNotice = null; // some browsers allow notifications only from a service worker
    }
  }
}

/** The ringing stopped (answered, declined, cancelled): the title and notification go too. */
function ringingOver() {
  ringer.stop();
  document.title = TITLE;
  navigator.vibrate?.(0);
  incomingNotice?.close();
  incomingNotice = null;
}

function accept() {
  const pending = state.pending;
  if (!pending || pending.id === null || !state.sig || INSECURE) return;
  ringingOver();
  pending.answered = true;
  pending.media = openMedia();
  state.sig.send({ type: 'accept', callId: pending.id });
  render();
}

function decline() {
  const pending = state.pending;
  if (!pending || pending.id === null) return;
  ringingOver();
  pending.answered = true;
  state.sig?.send({ type: 'decline', callId: pending.id });
  render();
}

function cancel() {
  const pending = state.pending;
  if (!pending) return;
  pending.cancelled = true;
  if (pending.id !== null) state.sig?.send({ type: 'cancel', callId: pending.id });
}

/**
 * The 1:1 call rings: when the server pre-connects, its peer connection is made now (the roles
 * `accepted` will give: the callee polite), ICE and DTLS done before anyone answers; no media.
 * @param {number} callId
 * @param {number} peer
 * @param {boolean} polite
 * @param {Promise<import('../sdk/media.js').LocalMedia> | null} [media] the caller's, opening
 */
function prepare(callId, peer, polite, media) {
  const sig = state.sig;
  if (!sig || INSECURE) return null;
  return prepareCall({
    callId, peer, polite, accepts: state.members.get(peer)?.publish, preconnect: state.preconnect,
    relayOnly: FORCE_RELAY, iceServers: state.iceServers, send: (msg) => sig.send(msg), media: media ?? undefined,
  });
}

/**
 * @param {number} callId
 * @param {number} peer
 * @param {boolean} polite
 */
function startDirectCall(callId, peer, polite) {
  const pending = state.pending;
  ringingOver();
  state.pending = null;
  // The peer connection made while it rang, if the roles are those it was made with.
  let prepared = pending?.prepared ?? null;
  if (prepared && (prepared.callId !== callId || prepared.peers.get(peer)?.polite !== polite)) {
    prepared.close();
    prepared = null;
  }
  const call = newCall(callId, 'direct', pending?.media ?? openMedia(), undefined, null, prepared);
  if (!call) prepared?.close();
  call?.addPeer(peer, pending?.peerName || state.members.get(peer)?.name || '', polite, state.members.get(peer)?.publish);
}

/**
 * @param {number} callId
 * @param {'direct' | 'group'} mode
 * @param {Promise<OpenedMedia>} media
 * @param {'sfu' | 'mesh'} [groupMedia] how a group call's media flows
 * @param {number | null} [since] when the call started, for a call picked up after a reload
 * @param {import('../sdk/peers.js').CallPeers | null} [prepared] a 1:1 call's, made while it rang
 */
function newCall(callId, mode, media, groupMedia, since = null, prepared = null) {
  if (!state.sig || !state.me) return null;
  const sig = state.sig;
  chat.closeIfNarrow();
  const prefs = callPrefs();
  state.call = new CallView({
    callId,
    mode,
    groupMedia,
    myName: state.me.name,
    iceServers: state.iceServers,
    media,
    send: (msg) => sig.send(msg),
    isHost,
    publish: state.me.publish,
    start: { muted: prefs.muted, cameraOff: prefs.cameraOff },
    speaker: prefs.speaker,
    since,
    prepared,
  });
  return state.call;
}

/** @param {CallEndedMsg} msg */
function onCallEnded(msg) {
  const me = state.me?.id;
  const pending = state.pending;
  const call = state.call?.mode === 'direct' ? state.call : null;
  const name = (call && [...call.remotes.values()][0]?.name) || pending?.peerName || state.members.get(msg.peer)?.name || '';
  const incoming = pending?.direction === 'incoming';
  /** @type {Record<string, import('./i18n.js').Key>} */
  const keys = {
    declined: msg.by === me ? 'ended.declinedByYou' : 'ended.declined',
    cancelled: msg.by === me ? 'ended.cancelledByYou' : 'ended.cancelled',
    no_answer: incoming ? 'ended.missed' : 'ended.no_answer',
    busy: 'ended.busy',
    hangup: msg.by === me ? 'ended.hangupByYou' : 'ended.hangup',
    left: 'ended.left',
  };
  const mine = call?.callId === msg.callId || pending?.id === msg.callId ||
    (pending?.id === null && pending.peer === msg.peer);
  if (!mine) return;
  // The camera was opened for a call that never started: release it.
  if (!call) releaseMedia(pending?.media ?? null);
  endCallUi();
  state.notice = { key: keys[msg.reason], params: { name } };
}

function endCallUi() {
  ringingOver();
  state.call?.close();
  state.call = null;
  state.pending?.prepared?.close();
  state.pending = null;
  releaseMedia(state.joiningGroup);
  state.joiningGroup = null;
  dialogs.outgoing.close();
  dialogs.incoming.close();
}

// ---- the room's group call -----------------------------------------------------------------

function joinGroup() {
  if (!state.sig || state.pending || state.call || state.joiningGroup || INSECURE || state.offline) return;
  state.notice = null;
  state.joiningGroup = openMedia();
  state.sig.send({ type: 'group_join' });
  render();
}

function leaveGroup() {
  state.sig?.send({ type: 'group_leave' });
  endCallUi();
  render();
}

/**
 * The room's group call changed: start our side when we are in it, connect to newcomers,
 * let go of those who left. An empty participant list means the call ended.
 * @param {GroupCall} group
 */
function onGroupCall(group) {
  state.group = group.participants.length ? group : null;
  const me = state.me?.id;
  if (me === undefined || !group.participants.includes(me)) return;
  if (!state.call && state.joiningGroup) {
    newCall(group.callId, 'group', state.joiningGroup, group.media);
    state.joiningGroup = null;
  }
  const call = state.call;
  if (call?.mode !== 'group' || call.callId !== group.callId) return;
  for (const id of group.participants) {
    // Of each pair, the one with the lower id is polite (and the other one offers).
    if (id !== me) call.addPeer(id, state.members.get(id)?.name ?? '', me < id, state.members.get(id)?.publish);
  }
  for (const id of [...call.remotes.keys()]) {
    if (!group.participants.includes(id)) call.removePeer(id);
  }
}

// ---- rendering -----------------------------------------------------------------------------

/** @param {Text | null} text */
const tr = (text) => (text ? t(text.key, text.params) : '');

function render() {
  document.documentElement.lang = currentLang();
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(/** @type {Key} */ (el.getAttribute('data-i18n')));
  }
  langSelect.value = currentLang();

  const joined = state.me !== null;
  const waiting = state.waiting !== null;
  byId('landing').hidden = joined || waiting || state.joining === 'resume';
  byId('resuming').hidden = state.joining !== 'resume';
  byId('waiting').hidden = !waiting;
  byId('lobby').hidden = !joined;
  byId('chat-toggle').hidden = !joined;
  byId('landing-error').textContent = tr(state.landingError);
  const banner = byId('connection-banner');
  banner.hidden = !state.offline;
  banner.textContent = state.offline ? t('reconnectingServer') : '';
  renderInsecure();
  joinButton.disabled = createButton.disabled = state.joining !== '';
  joinButton.textContent = state.joining === 'join' ? t('joining') : t('join');
  createButton.textContent = state.joining === 'create' ? t('creating') : t('newPrivateRoom');
  const hostLink = hostKeys.get(roomInput.value.trim()) !== '';
  byId('host-link-note').hidden = !hostLink;
  byId('host-link-note').textContent = hostLink ? t('hostLinkNote') : '';

  if (state.waiting) byId('waiting-you').textContent = t('waitingYou', { name: state.waiting.name });

  if (state.me) {
    const priv = state.roomState.private;
    byId('room-title').textContent = priv ? t('privateRoomTitle') : t('roomTitle', { room: state.room });
    byId('you').textContent = withHostMark(t('you', { name: state.me.name }), state.me.host);
    byId('share').hidden = priv;
    const link = /** @type {HTMLAnchorElement} */ (byId('share-link'));
    link.href = roomUrl();
    link.textContent = link.href;
    byId('share-native').hidden = typeof navigator.share !== 'function';
    byId('share-status').textContent = tr(state.shared);
    byId('notice').textContent = tr(state.notice);
    renderHostPanel();
    renderMembers();
    renderGroup();
    chat.render();
  } else {
    byId('chat').hidden = true;
    byId('host-links').hidden = true;
    byId('host-settings').hidden = true;
  }
  renderKnocks();
  renderCallAwareness();
  prejoin.render();

  const pending = state.pending;
  showDialog(dialogs.outgoing, pending?.direction === 'outgoing');
  showDialog(dialogs.incoming, pending?.direction === 'incoming' && !pending.answered);
  if (pending) {
    byId('outgoing-text').textContent = t('callingName', { name: pending.peerName });
    byId('incoming-text').textContent = t('incomingFrom', { name: pending.peerName });
  }
  /** @type {HTMLButtonElement} */ (byId('accept')).disabled = INSECURE;
  state.call?.render();
  netcheck?.render();
}

/**
 * @param {string} text
 * @param {boolean} host
 */
const withHostMark = (text, host) => (host ? `${text} ${t('hostMark')}` : text);

/** The room's plain link: for a private room, the guest link. */
function roomUrl() {
  return `${location.origin}/r/${encodeURIComponent(state.room)}`;
}

/** The host link: the key in the fragment, which browsers never send anywhere. */
function hostUrl() {
  return `${roomUrl()}#host=${encodeURIComponent(state.hostKey)}`;
}

/** What only hosts of a private room see: the two links and the room's settings. */
function renderHostPanel() {
  const show = state.roomState.private && (state.me?.host ?? false);
  byId('host-links').hidden = !show;
  byId('host-settings').hidden = !show;
  if (!show) return;
  const guest = /** @type {HTMLAnchorElement} */ (byId('guest-link'));
  guest.href = roomUrl();
  guest.textContent = guest.href;
  const host = /** @type {HTMLAnchorElement} */ (byId('host-link'));
  /** @type {HTMLElement} */ (host.parentElement).hidden = !state.hostKey;
  host.href = state.hostKey ? hostUrl() : '';
  host.textContent = host.href;
  byId('copy-status').textContent = tr(state.copied);

  const { lobby, locked, shareHistory } = state.roomState;
  byId('room-status').textContent = [t(lobby ? 'status.lobbyOn' : 'status.lobbyOff'), locked ? t('status.locked') : '']
    .filter(Boolean).join(' ');
  byId('toggle-lobby').textContent = lobby ? t('letEveryoneIn') : t('lobbyOn');
  byId('toggle-lock').textContent = locked ? t('unlockRoom') : t('lockRoom');
  byId('toggle-lock').setAttribute('aria-pressed', String(locked));
  shareHistoryBox.checked = shareHistory;
  byId('end-room').hidden = state.confirmEnd;
  byId('end-confirm').hidden = !state.confirmEnd;
}

function busy() {
  return state.pending !== null || state.call !== null || state.joiningGroup !== null;
}

/** @param {string} label @param {() => void} onclick @param {string} [className] */
function button(label, onclick, className = '') {
  const b = document.createElement('button');
  b.textContent = label;
  b.onclick = onclick;
  if (className) b.className = className;
  return b;
}

function renderMembers() {
  const hostControls = state.roomState.private && (state.me?.host ?? false);
  const group = state.group?.participants ?? [];
  const direct = state.call?.mode === 'direct' ? [...state.call.remotes.keys()] : [];
  const items = [...state.members].map(([id, member]) => {
    const { name } = member;
    const li = document.createElement('li');
    const label = document.createElement('span');
    let text = withHostMark(name, member.host);
    if (group.includes(id)) text += ` ${t('inGroupCall')}`;
    else if (direct.includes(id)) text += ` ${t('inCallWithYou')}`;
    else if (state.inCall.has(id)) text += ` ${t('inACall')}`;
    if (state.reconnecting.has(id)) text += ` ${t('reconnectingSuffix')}`;
    label.textContent = text;
    const actions = document.createElement('span');
    actions.className = 'actions';
    const call = button(t('callName', { name }), () => invite(id));
    call.disabled = busy() || INSECURE || state.offline;
    if (INSECURE) call.setAttribute('aria-describedby', 'insecure-notice');
    else if (state.offline) call.setAttribute('aria-describedby', 'offline-reason');
    actions.append(call);
    if (hostControls) {
      actions.append(button(t('muteName', { name }), () => state.sig?.send({ type: 'mute', id }), 'secondary'));
      if (!member.host) {
        actions.append(button(t('makeHostName', { name }), () => state.sig?.send({ type: 'make_host', id }), 'secondary'));
      }
      actions.append(button(t('removeName', { name }), () => state.sig?.send({ type: 'remove', id }), 'danger'));
    }
    li.append(label, actions);
    return li;
  });
  byId('members').replaceChildren(...items);
  byId('alone').hidden = state.members.size > 0;
}

/** What the knock list shows now; it is rebuilt only when that changes (keeping focus). */
let knocksShown = '';

/**
 * For hosts: who waits in the lobby, each with Admit and Deny: at the top of the room, or in
 * the call view during a call, where the room cannot be seen.
 */
function renderKnocks() {
  const show = (state.me?.host ?? false) && state.knocks.size > 0;
  const knocksEl = byId('knocks');
  knocksEl.hidden = !show;
  const after = state.call ? byId('call-events') : byId('you');
  if (after.nextElementSibling !== knocksEl) after.after(knocksEl);
  const knocks = show ? [...state.knocks] : [];
  const shown = JSON.stringify([currentLang(), knocks]);
  if (shown === knocksShown) return;
  knocksShown = shown;
  byId('knock-list').replaceChildren(...knocks.map(([id, name]) => {
    const li = document.createElement('li');
    const text = document.createElement('p');
    text.textContent = t('knockText', { name });
    const answer = (/** @type {'admit' | 'deny'} */ type) => () => {
      state.sig?.send({ type, id });
      // knock_ended follows for every host; this one need not wait for it.
      state.knocks.delete(id);
      render();
    };
    li.append(text, button(t('admitName', { name }), answer('admit'), 'ok'), button(t('denyName', { name }), answer('deny'), 'danger'));
    return li;
  }));
}

/** In a call: the short notices about the room, and the button that opens the people list. */
function renderCallAwareness() {
  const inCall = state.call !== null;
  if (!inCall) state.peopleOpen = false;
  document.body.classList.toggle('people-open', state.peopleOpen);
  byId('people-close').hidden = !state.peopleOpen;
  const toggle = byId('people-toggle');
  setLabel(toggle, t('people', { count: state.members.size + 1 }));
  toggle.setAttribute('aria-expanded', String(state.peopleOpen));
  // During a call the chat button sits in the call's control bar; otherwise at the page's corner.
  const chatToggle = byId('chat-toggle');
  if (inCall && chatToggle.parentElement !== byId('controls')) toggle.before(chatToggle);
  if (!inCall && chatToggle.parentElement !== document.body) byId('chat').before(chatToggle);
  chatToggle.classList.toggle('in-bar', inCall);
  // The room behind the call is out of reach (and out of the tab order); the people list
  // comes back over the call when opened.
  for (const el of byId('lobby').children) {
    /** @type {HTMLElement} */ (el).inert = inCall && !(el.id === 'people' && state.peopleOpen);
  }
  byId('call-events').replaceChildren(...state.callEvents.map((e) => {
    const li = document.createElement('li');
    li.textContent = tr(e.text);
    return li;
  }));
}

function renderGroup() {
  const group = state.group;
  byId('group-status').textContent = group
    ? t('callRunning', { names: group.participants.map((id) => state.members.get(id)?.name ?? (id === state.me?.id ? state.me.name : '?')).join(', ') })
    : t('noCallRunning');
  const join = /** @type {HTMLButtonElement} */ (byId('join-call'));
  join.disabled = busy() || INSECURE || state.offline;
  if (!INSECURE) {
    if (state.offline) join.setAttribute('aria-describedby', 'offline-reason');
    else join.removeAttribute('aria-describedby');
  }
  const reason = byId('offline-reason');
  reason.hidden = !state.offline;
  reason.textContent = state.offline ? t('offlineAction') : '';
}

/**
 * The insecure-context notice, at the top of the page and in the incoming-call dialog (which is
 * modal, so the one behind it cannot be reached), with this page's https:// address as a link.
 * Rebuilt only when its text changes, so that screen readers announce it once.
 */
function renderInsecure() {
  const notices = [byId('insecure-notice'), byId('incoming-insecure')];
  for (const el of notices) el.hidden = !INSECURE;
  if (!INSECURE) return;
  const url = secureUrl();
  const [before, after = ''] = t('insecure').split('{url}');
  const text = `${before}${url}${after}`;
  for (const el of notices) {
    if (el.textContent === text) continue;
    const link = document.createElement('a');
    link.href = url;
    link.textContent = url;
    el.replaceChildren(before, link, after);
  }
}

/**
 * @param {HTMLDialogElement} dialog
 * @param {boolean} open
 */
function showDialog(dialog, open) {
  if (open && !dialog.open) dialog.showModal();
  if (!open && dialog.open) dialog.close();
}

// ---- wiring --------------------------------------------------------------------------------

/** @type {HTMLFormElement} */ (byId('join-form')).addEventListener('submit', onJoin);
createButton.onclick = onCreate;
/** @type {NetcheckView | null} made when first opened */
let netcheck = null;
byId('netcheck-open').onclick = () =>
  (netcheck ??= new NetcheckView(() => accessTokens.get(roomInput.value.trim()) || accessTokens.get(roomFromPath()))).open(byId('netcheck-open'));
roomInput.addEventListener('input', () => render());
byId('leave').onclick = () => resetToLanding(null);
byId('waiting-leave').onclick = () => resetToLanding(null);
/** @param {Partial<RoomState>} settings */
const settings = (settings) => state.sig?.send({ type: 'room_settings', ...settings });
byId('toggle-lobby').onclick = () => settings({ lobby: !state.roomState.lobby });
byId('toggle-lock').onclick = () => settings({ locked: !state.roomState.locked });
shareHistoryBox.onchange = () => settings({ shareHistory: shareHistoryBox.checked });
byId('end-room').onclick = () => { state.confirmEnd = true; render(); byId('end-no').focus(); };
byId('end-no').onclick = () => { state.confirmEnd = false; render(); byId('end-room').focus(); };
byId('end-yes').onclick = () => { state.confirmEnd = false; state.sig?.send({ type: 'end_room' }); render(); };
byId('copy-guest').onclick = () => copy(roomUrl(), 'copiedGuest');
byId('copy-link').onclick = () => copy(roomUrl(), 'linkCopied', 'shared');
byId('share-native').onclick = () => {
  navigator.share?.({ title: document.title, url: roomUrl() }).catch(() => {});
};
// The room's links are there to be shared: following one would only reload this page and lose
// the room, so a click copies the link instead.
for (const id of ['share-link', 'guest-link', 'host-link']) {
  byId(id).addEventListener('click', (event) => {
    event.preventDefault();
    if (id === 'share-link') copy(roomUrl(), 'linkCopied', 'shared');
    else copy(id === 'guest-link' ? roomUrl() : hostUrl(), id === 'guest-link' ? 'copiedGuest' : 'copiedHost');
  });
}
byId('copy-host').onclick = () => copy(hostUrl(), 'copiedHost');
byId('people-toggle').onclick = () => { state.peopleOpen = !state.peopleOpen; render(); if (state.peopleOpen) byId('people-title').focus(); };
byId('people-close').onclick = () => { state.peopleOpen = false; render(); byId('people-toggle').focus(); };
byId('cancel').onclick = cancel;
byId('accept').onclick = accept;
byId('decline').onclick = decline;
byId('join-call').onclick = joinGroup;
byId('hangup').onclick = () => {
  if (state.call?.mode === 'group') leaveGroup();
  else if (state.call) state.sig?.send({ type: 'hangup', callId: state.call.callId });
};
// Escape would close a dialog without telling the server; map it to the dialog's own action.
dialogs.outgoing.addEventListener('cancel', (e) => { e.preventDefault(); cancel(); });
dialogs.incoming.addEventListener('cancel', (e) => { e.preventDefault(); decline(); });
// Escape closes what is open over the call or the room (devices, people, the chat sheet) and
// gives the focus back to the button that opened it.
document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape' || dialogs.outgoing.open || dialogs.incoming.open) return;
  if (!byId('devices').hidden) {
    byId('devices-toggle').click();
    byId('devices-toggle').focus();
  } else if (state.peopleOpen) {
    byId('people-close').click();
  } else if (!byId('chat').hidden && window.matchMedia('(max-width: 60rem)').matches) {
    byId('chat-toggle').click();
    byId('chat-toggle').focus();
  }
});
langSelect.onchange = () => {
  setLang(/** @type {import('./i18n.js').Lang} */ (langSelect.value));
  render();
};

if (INSECURE) {
  // Disabled call buttons say why; so does a call that rings here but cannot be taken.
  byId('join-call').setAttribute('aria-describedby', 'insecure-notice');
  byId('accept').setAttribute('aria-describedby', 'incoming-insecure');
  dialogs.incoming.setAttribute('aria-describedby', 'incoming-insecure');
}

/**
 * Copies a link, and says so (or that it could not: then the link is there to select).
 * @param {string} text
 * @param {Key} done
 * @param {'copied' | 'shared'} [where] which confirmation to show: the host panel's or the
 *   room link's
 */
async function copy(text, done, where = 'copied') {
  try {
    await navigator.clipboard.writeText(text);
    state[where] = { key: done };
  } catch {
    state[where] = { key: 'copyFailed' };
  }
  render();
}

// The page goes away (a reload, or the tab closing): keep the session for the next page of this
// tab, and close the connection saying we will be back, so the others see "reconnecting", not
// "left". A closed tab therefore leaves only when the server's grace period ends.
window.addEventListener('pagehide', () => {
  keepSession();
  state.sig?.suspend();
});
document.addEventListener('visibilitychange', () => {
  if (document.hidden) keepSession();
});

const prejoin = new PreJoin();
takeSecretsFromFragment();
roomInput.value = roomFromPath();
nameInput.value = localStorage.getItem('visavis.name') ?? '';
render();
resumeStored().then((resumed) => {
  if (!resumed) enterWithToken();
});
