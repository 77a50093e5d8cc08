// @ts-check
//! The room chat panel: the log (sender, time, text), the "Message" box and "Send", an unread
//! count while the panel is closed. Messages are text; only http(s) links become clickable.

import { t } from './i18n.js';

/** @typedef {import('./protocol.js').ChatEntry} ChatEntry */

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

const LINK = /\bhttps?:\/\/[^\s<>"']+/g;

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
    this.open = true;
    this.unread = 0;
    /** @type {string} a refusal to show, e.g. a message over 4 KiB */
    this.error = '';
    this.log = byId('chat-log');
    this.input = /** @type {HTMLTextAreaElement} */ (byId('chat-input'));
    this.toggle = byId('chat-toggle');
    /** @type {HTMLFormElement} */ (byId('chat-form')).addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.input.value;
      if (!text.trim()) return;
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
      if (this.open) this.unread = 0;
      this.render();
    };
  }

  /** @param {ChatEntry[]} entries the history given on join */
  reset(entries) {
    this.entries = [...entries];
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
    if (!this.open) this.unread += 1;
    this.render();
  }

  /** @param {string} message */
  refused(message) {
    this.error = message;
    this.render();
  }

  render() {
    byId('chat').hidden = !this.open;
    this.toggle.textContent = this.unread > 0 ? t('chatUnread', { count: this.unread }) : t('chat');
    this.toggle.setAttribute('aria-expanded', String(this.open));
    byId('chat-error').textContent = this.error;
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
