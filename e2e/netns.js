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
  // No IPv6 link-local addresses: the kernel would add them a second or two after the links
  // come up (duplicate address detection), and Chromium, started by then, aborts what it has
  // in flight on any address change (net::ERR_NETWORK_CHANGED: the page, the WebSocket).
  ip('link', 'set', HOST_IF, 'addrgenmode', 'none');
  ip('link', 'set', NS_IF, 'netns', NS);
  ip('netns', 'exec', NS, 'ip', 'link', 'set', NS_IF, 'addrgenmode', 'none');
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

/**
 * A strict firewall in the namespace, as some corporate and hotel networks have: it may send
 * only TCP to `port` of `host`. Everything else going out is dropped: all UDP (STUN and TURN on
 * 3478, the relay ports), TCP to any other port or address, even to the namespace's own
 * address, so that two browsers in it cannot reach each other directly. Undone with the
 * namespace (`removeNetwork`).
 * @param {string} host
 * @param {number} port
 */
export function allowOnlyTcpOut(host, port) {
  const rules = `table inet visavis_e2e_firewall {
    chain out {
      type filter hook output priority 0; policy drop;
      ip daddr ${host} tcp dport ${port} accept
    }
  }`;
  execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] });
}

/**
 * A firewall in the namespace that drops every UDP packet going out (some corporate and guest
 * networks): only TCP leaves. Undone with the namespace (`removeNetwork`).
 */
export function blockUdpOut() {
  const rules = `table inet visavis_e2e_no_udp {
    chain out {
      type filter hook output priority 0; policy accept;
      meta l4proto udp drop
    }
  }`;
  execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Launch options for a Chromium that lives in the namespace. */
export function chromiumInNamespace(/** @type {import('@playwright/test').LaunchOptions} */ base) {
  return {
    ...base,
    executablePath: path.resolve('e2e/chromium-in-netns.sh'),
    env: { ...process.env, VISAVIS_NETNS: NS, CHROMIUM_PATH: base.executablePath ?? '/usr/bin/chromium' },
  };
}

/**
 * Drops `percent` of the UDP packets leaving the namespace, at random (what a bad Wi-Fi or
 * mobile uplink does to a call's media), or none again with 0. Signalling (TCP) is untouched.
 * @param {number} percent
 */
export function loseUdpOut(percent) {
  const nft = (/** @type {string} */ rules) =>
    execFileSync('ip', ['netns', 'exec', NS, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'pipe', 'pipe'] });
  try { nft('delete table inet visavis_e2e_loss'); } catch { /* not there */ }
  if (percent <= 0) return;
  nft(`table inet visavis_e2e_loss {
    chain out {
      type filter hook output priority 0; policy accept;
      meta l4proto udp numgen random mod 100 < ${Math.round(percent)} drop
    }
  }`);
}
