// @ts-check
//! The session this tab holds, kept across a reload: its resume token and how it entered, in
//! sessionStorage (per tab, gone with the tab), and a Web Lock per session so that a duplicated
//! tab, which copies sessionStorage, never takes over the session of the tab it came from. When
//! the page goes away its connection closes with 4001 ("coming back"), so the server keeps the
//! member for the grace period and the reloaded page resumes it: room, call and chat.

const KEY = 'visavis.session';
/** A reloaded page may start before the old one let go of the lock: ask again for this long. */
const LOCK_WAIT_MS = 2000;
const LOCK_RETRY_MS = 100;

/**
 * `key`: names this session's Web Lock (random, made at join); `token`: the current resume token
 * (single-use: the latest one); `room`, `name`, `hostKey`, `accessToken`: how to join again if
 * the session is lost later.
 * @typedef {{key: string, token: string, room: string, name: string, hostKey?: string, accessToken?: string}} Stored
 */

/** The session a previous page of this tab left, or null. @returns {Stored | null} */
export function storedSession() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) ?? 'null');
    return stored && typeof stored.token === 'string' && typeof stored.key === 'string' ? stored : null;
  } catch {
    return null;
  }
}

/** @param {Stored} stored */
export function storeSession(stored) {
  sessionStorage.setItem(KEY, JSON.stringify(stored));
}

/** We left (or the session is gone): a reload starts afresh. */
export function forgetSession() {
  sessionStorage.removeItem(KEY);
}

/** A new key for a new session. */
export function newSessionKey() {
  return crypto.getRandomValues(new Uint32Array(4)).join('-');
}

/**
 * Holds this session's Web Lock for as long as the page lives; false if another tab holds it
 * (a duplicate of this one). Browsers without Web Locks (or insecure pages) are let through.
 * @param {string} key
 * @returns {Promise<boolean>}
 */
export async function lockSession(key) {
  const locks = navigator.locks;
  if (!locks) return true;
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const held = await new Promise((resolve) => {
      locks.request(`visavis.session.${key}`, { ifAvailable: true }, (lock) => {
        resolve(lock !== null);
        // Held until the page goes away.
        return lock ? new Promise(() => {}) : undefined;
      }).catch(() => resolve(true));
    });
    if (held || Date.now() > deadline) return /** @type {boolean} */ (held);
    await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
  }
}
