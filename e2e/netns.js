// @ts-check
//! A second network for browser tests: a network namespace joined to this host by a veth pair,
//! whose link the test can cut and restore like a real network drop. Needs root (ip netns).
import { execFileSync } from 'node:child_process';
import path from 'node:path';

// VISAVIS_E2E_NET (0-9) picks another namespace and subnet, so two checkouts' suites can run
// side by side on one machine.
const NET = Number(process.env.VISAVIS_E2E_NET ?? 0);
export const HOST_IP = `10.${231 + NET}.0.1`;
export const NS_IP = `10.${231 + NET}.0.2`;
const NS = `visavis-e2e${NET || ''}`;
const HOST_IF = `vv-e2e${NET || ''}-h`;
const NS_IF = `vv-e2e${NET || ''}-n`;

/** @param {string[]} args */
const ip = (...args) => execFileSync('ip', args, { stdio: 'pipe' });

/** Creates the namespace and its link (replacing leftovers of an earlier run). */
export function createNetwork() {
  if (process.getuid?.() !== 0) throw new Error('this test needs root to create a network namespace (ip netns)');
  removeNetwork();
  ip('netns', 'add', NS);
  ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF);
  ip('link', 'set', NS_IF, 'netns', NS);
  ip('addr', 'add', `${HOST_IP}/24`, 'dev', HOST_IF);
  ip('link', 'set', HOST_IF, 'up');
  ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${NS_IP}/24`, 'dev', NS_IF);
  ip('netns', 'exec', NS, 'ip', 'link', 'set', NS_IF, 'up');
  ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
}

export function removeNetwork() {
  try { ip('link', 'del', HOST_IF); } catch { /* not there */ }
  try { ip('netns', 'del', NS); } catch { /* not there */ }
}

/** Cuts (false) or restores (true) the link, as pulling and plugging a cable. @param {boolean} up */
export function setLink(up) {
  ip('link', 'set', HOST_IF, up ? 'up' : 'down');
}

/** Launch options for a Chromium that lives in the namespace. */
export function chromiumInNamespace(/** @type {import('@playwright/test').LaunchOptions} */ base) {
  return {
    ...base,
    executablePath: path.resolve('e2e/chromium-in-netns.sh'),
    env: { ...process.env, VISAVIS_NETNS: NS, CHROMIUM_PATH: base.executablePath ?? '/usr/bin/chromium' },
  };
}
