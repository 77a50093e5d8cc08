// @ts-check
//! The page: landing form, room view (members, group call, chat), and the call dialogs. It
//! holds the app state, reacts to signalling messages, and renders state as text (never as
//! HTML).

import { Signalling, SignallingError, defaultUrl } from './protocol.js';
import { mediaBlocked, openLocalMedia, secureUrl } from './media.js';
import { Ringer } from './ring.js';
import { CallView } from './call.js';
import { ChatView } from './chat.js';
import { currentLang, setLang, t } from './i18n.js';

/**
 * @typedef {import('./protocol.js').ServerMsg} ServerMsg
 * @typedef {import('./protocol.js').Member} Member
 * @typedef {import('./protocol.js').GroupCall} GroupCall
 * @typedef {import('./protocol.js').CallEndedMsg} CallEndedMsg
 * @typedef {import('./media.js').LocalMedia} OpenedMedia
 * @typedef {{key: import('./i18n.js').Key, params?: Record<string, string>}} Text
 *
 * A 1:1 call before it is accepted. `id` is null until the server confirms the invite.
 * @typedef {{id: number | null, peer: number, peerName: string, direction: 'outgoing' | 'incoming',
 *            media: Promise<OpenedMedia> | null, cancelled: boolean, answered: boolean}} PendingCall
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
const langSelect = /** @type {HTMLSelectElement} */ (byId('lang'));

const state = {
  /** @type {Signalling | null} */
  sig: null,
  /** @type {Member | null} */
  me: null,
  room: '',
  /** @type {Map<number, string>} other members by id, in join order */
  members: new Map(),
  /** @type {Set<number>} members whose connection dropped and who may come back */
  reconnecting: new Set(),
  /** our own connection to the server is down and being retried */
  offline: false,
  /** @type {RTCIceServer[]} */
  iceServers: [],
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
  joining: false,
};
/**
 * Opened over plain http:// from another machine, the page may not use a camera or microphone
 * at all: calls are off (a call could only look connected, with nothing to see or hear) and the
 * page says why and where to go instead. The room and its chat work as usual.
 */
const INSECURE = mediaBlocked() === 'insecure';
const ringer = new Ringer();
const chat = new ChatView((text) => state.sig?.send({ type: 'chat', text }));

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
    /** ICE restarts done by the peer connections of the current call. */
    get iceRestarts() {
      return state.call ? [...state.call.remotes.values()].reduce((n, r) => n + r.peer.iceRestarts, 0) : 0;
    },
    /** Drops the signalling connection as a network would (the session then resumes). */
    dropSignalling() { state.sig?.simulateDrop(); },
  }),
});

// ---- landing -------------------------------------------------------------------------------

function roomFromPath() {
  const match = location.pathname.match(/^\/r\/([^/]+)$/);
  return match ? decodeURIComponent(match[1]) : '';
}

/** @param {SubmitEvent} event */
async function onJoin(event) {
  event.preventDefault();
  const name = nameInput.value.trim();
  const room = roomInput.value.trim();
  if (name.length === 0 || [...name].length > 64) {
    state.landingError = { key: 'err.invalid_name' };
    return render();
  }
  state.joining = true;
  state.landingError = null;
  render();
  const sig = new Signalling(defaultUrl());
  try {
    const joined = await sig.join(room, name);
    state.sig = sig;
    state.notice = null;
    enterRoom(joined);
    sig.onmessage = onMessage;
    sig.onstatus = onSessionStatus;
    localStorage.setItem('visavis.name', name);
    history.replaceState(null, '', `/r/${encodeURIComponent(joined.room)}${location.search}`);
  } catch (err) {
    const code = err instanceof SignallingError ? err.code : 'generic';
    const known = ['room_full', 'invalid_name', 'invalid_room', 'unreachable'];
    state.landingError = known.includes(code)
      ? { key: /** @type {import('./i18n.js').Key} */ (`err.${code}`) }
      : { key: 'err.generic', params: { message: err instanceof Error ? err.message : String(err) } };
  } finally {
    state.joining = false;
    render();
  }
}

/** Takes the room's state from a `joined` message. @param {import('./protocol.js').JoinedMsg} joined */
function enterRoom(joined) {
  state.me = joined.you;
  state.room = joined.room;
  state.iceServers = joined.iceServers;
  state.members = new Map(joined.members.map((m) => [m.id, m.name]));
  state.reconnecting.clear();
  state.group = joined.group;
  chat.reset(joined.chat);
}

/**
 * Our session's connection: dropped (we keep going: media is peer to peer), resumed, or
 * replaced by a new membership because the old one could not be resumed.
 * @param {import('./protocol.js').SessionStatus} status
 * @param {import('./protocol.js').JoinedMsg} [joined]
 */
function onSessionStatus(status, joined) {
  state.offline = status === 'reconnecting';
  if (status === 'rejoined') {
    if (!joined) return resetToLanding({ key: 'err.closed' });
    const hadCall = state.call !== null || state.pending !== null;
    endCallUi();
    enterRoom(joined);
    state.notice = hadCall ? { key: 'rejoinedCallEnded' } : null;
  }
  render();
}

/** Back to the landing form, ending whatever was going on. @param {Text | null} error */
function resetToLanding(error) {
  endCallUi();
  state.sig?.close();
  state.sig = null;
  state.me = null;
  state.members.clear();
  state.reconnecting.clear();
  state.offline = false;
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
      return;
    case 'member_joined':
      state.members.set(msg.member.id, msg.member.name);
      break;
    case 'member_left':
      state.members.delete(msg.id);
      state.reconnecting.delete(msg.id);
      break;
    case 'member_state':
      if (msg.state === 'reconnecting') state.reconnecting.add(msg.id);
      else state.reconnecting.delete(msg.id);
      state.call?.setReconnecting(msg.id, msg.state === 'reconnecting');
      break;
    case 'ringing':
      if (state.pending?.direction === 'outgoing' && state.pending.peer === msg.peer) {
        state.pending.id = msg.callId;
        // Cancel pressed before the server had numbered the call.
        if (state.pending.cancelled) state.sig?.send({ type: 'cancel', callId: msg.callId });
      }
      break;
    case 'incoming':
      state.pending = {
        id: msg.callId, peer: msg.from, peerName: msg.name, direction: 'incoming',
        media: null, cancelled: false, answered: false,
      };
      ringer.start();
      break;
    case 'accepted':
      startDirectCall(msg.callId, msg.peer, msg.polite);
      break;
    case 'call_ended':
      onCallEnded(msg);
      break;
    case 'group_call':
      onGroupCall({ callId: msg.callId, participants: msg.participants });
      break;
    case 'description':
    case 'candidate':
    case 'media':
      if (state.call?.callId === msg.callId) state.call.handle(msg);
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

/** @param {import('./protocol.js').ErrorMsg} msg */
function onError(msg) {
  if (msg.code === 'invalid_chat') return chat.refused(t('err.invalid_chat'));
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
  if (!state.sig || state.pending || state.call || INSECURE) return;
  state.notice = null;
  state.pending = {
    id: null,
    peer,
    peerName: state.members.get(peer) ?? '',
    direction: 'outgoing',
    // Open the camera while it rings, so the call starts as soon as it is accepted.
    media: openLocalMedia(),
    cancelled: false,
    answered: false,
  };
  state.sig.send({ type: 'invite', to: peer });
  render();
}

function accept() {
  const pending = state.pending;
  if (!pending || pending.id === null || !state.sig || INSECURE) return;
  ringer.stop();
  pending.answered = true;
  pending.media = openLocalMedia();
  state.sig.send({ type: 'accept', callId: pending.id });
  render();
}

function decline() {
  const pending = state.pending;
  if (!pending || pending.id === null) return;
  ringer.stop();
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
 * @param {number} callId
 * @param {number} peer
 * @param {boolean} polite
 */
function startDirectCall(callId, peer, polite) {
  const pending = state.pending;
  ringer.stop();
  state.pending = null;
  const call = newCall(callId, 'direct', pending?.media ?? openLocalMedia());
  call?.addPeer(peer, pending?.peerName || state.members.get(peer) || '', polite);
}

/**
 * @param {number} callId
 * @param {'direct' | 'group'} mode
 * @param {Promise<OpenedMedia>} media
 */
function newCall(callId, mode, media) {
  if (!state.sig || !state.me) return null;
  const sig = state.sig;
  state.call = new CallView({
    callId,
    mode,
    myName: state.me.name,
    iceServers: state.iceServers,
    media,
    send: (msg) => sig.send(msg),
  });
  return state.call;
}

/** @param {CallEndedMsg} msg */
function onCallEnded(msg) {
  const me = state.me?.id;
  const pending = state.pending;
  const call = state.call?.mode === 'direct' ? state.call : null;
  const name = (call && [...call.remotes.values()][0]?.name) || pending?.peerName || state.members.get(msg.peer) || '';
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
  ringer.stop();
  state.call?.close();
  state.call = null;
  state.pending = null;
  releaseMedia(state.joiningGroup);
  state.joiningGroup = null;
  dialogs.outgoing.close();
  dialogs.incoming.close();
}

// ---- the room's group call -----------------------------------------------------------------

function joinGroup() {
  if (!state.sig || state.pending || state.call || state.joiningGroup || INSECURE) return;
  state.notice = null;
  state.joiningGroup = openLocalMedia();
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
    newCall(group.callId, 'group', state.joiningGroup);
    state.joiningGroup = null;
  }
  const call = state.call;
  if (call?.mode !== 'group' || call.callId !== group.callId) return;
  for (const id of group.participants) {
    // Of each pair, the one with the lower id is polite (and the other one offers).
    if (id !== me) call.addPeer(id, state.members.get(id) ?? '', me < id);
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
    el.textContent = t(/** @type {import('./i18n.js').Key} */ (el.getAttribute('data-i18n')));
  }
  langSelect.value = currentLang();

  const joined = state.me !== null;
  byId('landing').hidden = joined;
  byId('lobby').hidden = !joined;
  byId('chat-toggle').hidden = !joined;
  byId('landing-error').textContent = tr(state.landingError);
  const banner = byId('connection-banner');
  banner.hidden = !state.offline;
  banner.textContent = state.offline ? t('reconnectingServer') : '';
  renderInsecure();
  joinButton.disabled = state.joining;
  joinButton.textContent = state.joining ? t('joining') : t('join');

  if (state.me) {
    byId('room-title').textContent = t('roomTitle', { room: state.room });
    byId('you').textContent = t('you', { name: state.me.name });
    const link = /** @type {HTMLAnchorElement} */ (byId('share-link'));
    link.href = `${location.origin}/r/${encodeURIComponent(state.room)}`;
    link.textContent = link.href;
    byId('notice').textContent = tr(state.notice);
    renderMembers();
    renderGroup();
    chat.render();
  } else {
    byId('chat').hidden = true;
  }

  const pending = state.pending;
  showDialog(dialogs.outgoing, pending?.direction === 'outgoing');
  showDialog(dialogs.incoming, pending?.direction === 'incoming' && !pending.answered);
  if (pending) {
    byId('outgoing-text').textContent = t('callingName', { name: pending.peerName });
    byId('incoming-text').textContent = t('incomingFrom', { name: pending.peerName });
  }
  /** @type {HTMLButtonElement} */ (byId('accept')).disabled = INSECURE;
  state.call?.render();
}

function busy() {
  return state.pending !== null || state.call !== null || state.joiningGroup !== null;
}

function renderMembers() {
  const items = [...state.members].map(([id, name]) => {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = state.reconnecting.has(id) ? `${name} ${t('reconnectingSuffix')}` : name;
    const button = document.createElement('button');
    button.textContent = t('callName', { name });
    button.disabled = busy() || INSECURE;
    if (INSECURE) button.setAttribute('aria-describedby', 'insecure-notice');
    button.onclick = () => invite(id);
    li.append(label, button);
    return li;
  });
  byId('members').replaceChildren(...items);
  byId('alone').hidden = state.members.size > 0;
}

function renderGroup() {
  const group = state.group;
  const nameOf = (/** @type {number} */ id) => (id === state.me?.id ? state.me.name : state.members.get(id) ?? '?');
  byId('group-status').textContent = group
    ? t('callRunning', { names: group.participants.map(nameOf).join(', ') })
    : t('noCallRunning');
  const join = /** @type {HTMLButtonElement} */ (byId('join-call'));
  join.disabled = busy() || INSECURE;
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
byId('leave').onclick = () => resetToLanding(null);
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

roomInput.value = roomFromPath();
nameInput.value = localStorage.getItem('visavis.name') ?? '';
render();
