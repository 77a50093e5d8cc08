// @ts-check
//! The room chat panel: the log (sender, time, text), the "Message" box and "Send", an unread
//! count while the panel is closed or covered. Messages are text; only http(s) links become clickable.

import { t } from './i18n.js';

/** @typedef {import('../sdk/protocol.js').ChatEntry} ChatEntry */

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const LINK = /\bhttps?:\/\/[^\s<>"']+/g;

/** Narrow screens: the chat is a sheet over the room or the call, so it starts closed. */
const NARROW = '(max-width: 60rem)';

export class ChatView {
  /**
   * @param {(text: string) => void} send
   * @param {(id: number) => boolean} [isHost] whether the sender is a host of the private
   *   room: its messages are marked "(host)"
   */
  constructor(send, isHost = () => false) {
    this.isHost = isHost;
    /** @type {ChatEntry[]} */
    this.entries = [];
    this.open = !window.matchMedia(NARROW).matches;
    /** our connection to the server is down: nothing can be sent (what is typed stays) */
    this.offline = false;
    this.unread = 0;
    /** @type {string} a refusal to show, e.g. a message over 4 KiB */
    this.error = '';
    this.log = byId('chat-log');
    this.input = /** @type {HTMLTextAreaElement} */ (byId('chat-input'));
    this.toggle = byId('chat-toggle');
    /** @type {HTMLFormElement} */ (byId('chat-form')).addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.input.value;
      if (!text.trim() || this.offline) return;
      send(text);
      this.input.value = '';
      this.error = '';
      this.render();
    });
    // Enter sends, Shift+Enter makes a new line.
    this.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        /** @type {HTMLFormElement} */ (byId('chat-form')).requestSubmit();
      }
    });
    this.toggle.onclick = () => {
      this.open = !this.open;
      this.render();
      if (this.open) this.input.focus();
    };
  }

  /** @param {ChatEntry[]} entries the history given on join */
  reset(entries) {
    this.entries = [...entries];
    this.open = !window.matchMedia(NARROW).matches;
    this.unread = 0;
    this.error = '';
    this.log.replaceChildren(...entries.map(entryElement));
    this.render();
  }

  /** @param {ChatEntry} entry */
  add(entry) {
    this.entries.push(entry);
    this.log.append(entryElement(entry));
    this.log.lastElementChild?.scrollIntoView({ block: 'end' });
    if (!this.visible()) this.unread += 1;
    this.render();
  }

  /** @param {string} message */
  refused(message) {
    this.error = message;
    this.render();
  }

  /**
   * Whether the chat can actually be seen: open, and not covered by anything (the call, the
   * people list). Only then are messages read.
   */
  visible() {
    const panel = byId('chat');
    if (panel.hidden) return false;
    const box = panel.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return false;
    const x = Math.min(Math.max(box.left + box.width / 2, 0), window.innerWidth - 1);
    const y = Math.min(Math.max(box.top + box.height / 2, 0), window.innerHeight - 1);
    return panel.contains(document.elementFromPoint(x, y));
  }

  /** A call starts: on a narrow screen the call comes first (the chat is one tap away). */
  closeIfNarrow() {
    if (window.matchMedia(NARROW).matches) this.open = false;
  }

  /** @param {boolean} offline */
  setOffline(offline) {
    this.offline = offline;
  }

  render() {
    const panel = byId('chat');
    panel.hidden = !this.open;
    if (this.unread > 0 && this.visible()) this.unread = 0;
    const label = /** @type {HTMLElement} */ (this.toggle.querySelector('.label'));
    label.textContent = this.unread > 0 ? t('chatUnread', { count: this.unread }) : t('chat');
    const badge = byId('chat-badge');
    badge.hidden = this.unread === 0;
    badge.textContent = String(this.unread);
    this.toggle.setAttribute('aria-expanded', String(this.open));
    const send = /** @type {HTMLButtonElement} */ (byId('chat-send'));
    send.disabled = this.offline;
    byId('chat-error').textContent = this.offline ? t('chatOffline') : this.error;
    byId('chat-empty').hidden = this.entries.length > 0;
    byId('chat-empty').textContent = t('chatEmpty');
    // Hosts can change (and so can the language): mark each sender as it is now.
    for (const li of this.log.children) {
      const mark = /** @type {HTMLElement | null} */ (li.querySelector('.host-mark'));
      if (!mark) continue;
      const host = this.isHost(Number(mark.dataset.from));
      mark.hidden = !host;
      mark.textContent = host ? ` ${t('hostMark')}` : '';
    }
  }
}

/** @param {ChatEntry} entry */
function entryElement(entry) {
  const li = document.createElement('li');
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = entry.name;
  const mark = document.createElement('span');
  mark.className = 'host-mark';
  mark.dataset.from = String(entry.from);
  mark.hidden = true;
  const when = document.createElement('time');
  when.dateTime = new Date(entry.at).toISOString();
  when.textContent = new Date(entry.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const text = document.createElement('p');
  text.className = 'text';
  text.append(...linkify(entry.text));
  li.append(who, mark, ' ', when, text);
  return li;
}

/**
 * Text nodes, with http(s) URLs as links. Nothing is ever parsed as HTML.
 * @param {string} text
 * @returns {Node[]}
 */
function linkify(text) {
  /** @type {Node[]} */
  const nodes = [];
  let at = 0;
  for (const match of text.matchAll(LINK)) {
    const index = match.index ?? 0;
    if (index > at) nodes.push(document.createTextNode(text.slice(at, index)));
    const a = document.createElement('a');
    a.href = match[0];
    a.textContent = match[0];
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    nodes.push(a);
    at = index + match[0].length;
  }
  if (at < text.length) nodes.push(document.createTextNode(text.slice(at)));
  return nodes;
}
