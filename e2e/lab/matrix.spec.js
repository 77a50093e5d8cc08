// @ts-check
//! The connectivity matrix: two clients on networks of given kinds (no NAT, a home router's NAT,
//! a symmetric NAT, UDP blocked, only TCP 443), each behind its own router, call each other
//! through visavis in a "public" namespace. Every pairing must connect with video decoded both
//! ways, and take a direct path exactly where theory says one exists (relaying where a direct
//! path exists fails the test, and so does a direct path the NATs should not allow: the lab
//! would be wrong). IPv6-only clients (no NAT; open, or behind a stateful firewall) call each
//! other through a visavis on IPv6, directly and, forced, through its relay. `npm run lab` runs
//! all pairings (15 over IPv4, 3 over IPv6, the forced relay) and writes
//! e2e/lab/results/matrix.json for docs/connectivity.md; the default test run takes a quick
//! subset.
import os from 'node:os';
import { test, expect } from '@playwright/test';
import { BINARY } from '../support.js';
import { FULL, candidatePairs, labCall, pathOf, selected, writeResults } from './call.js';
import { KINDS, KINDS6, cannotRun, createLab, removeLab, startLabServer } from './network.js';

/** @typedef {import('./network.js').Kind} Kind */

/**
 * Which pairings can connect directly. Hole punching works when at least one side's NAT maps
 * a socket to one public port whatever the destination (open, cone) and the other's filter
 * lets the checks in: open takes anything; two cones punch through each other (each sends to
 * the other's server-reflexive address first). A symmetric NAT shows the peer another port
 * than the one the server saw, which a port-restricted cone drops, and two symmetric NATs
 * never meet. With UDP blocked, a direct path would be ICE over TCP to a listening (passive)
 * candidate, but Chromium offers only active TCP candidates (it listens for none), so two
 * browsers never meet over TCP: those pairings relay, whatever the other side's network. IPv6
 * has no NAT: a stateful firewall behaves like a cone keeping the address, so IPv6 clients meet
 * directly.
 * @param {Kind} a @param {Kind} b
 * @returns {'direct' | 'relay'}
 */
export function theory(a, b) {
  if (KINDS6.includes(a) && KINDS6.includes(b)) return 'direct';
  const [x, y] = [a, b].sort((p, q) => KINDS.indexOf(p) - KINDS.indexOf(q));
  if (y === 'tcp-only' || y === 'tcp443') return 'relay';
  if (x === 'open') return 'direct';
  if (x === 'cone' && y === 'cone') return 'direct';
  return 'relay';
}

/** Every unordered pairing of two kinds, same kinds included: 15 over IPv4, 3 over IPv6. */
const pairings = (/** @type {Kind[]} */ kinds) => kinds.flatMap((a, i) => kinds.slice(i).map((b) => /** @type {[Kind, Kind]} */ ([a, b])));
/** @typedef {{a: Kind, b: Kind, relayOnly?: boolean}} Pairing */
/** @type {Pairing[]} */
const ALL = [...pairings(KINDS), ...pairings(KINDS6)].map(([a, b]) => ({ a, b }));
// TURN over IPv6: a call that must take the relay (`?relay`) between two firewalled clients.
ALL.push({ a: 'ipv6-firewall', b: 'ipv6-firewall', relayOnly: true });
/** The lab's clients: two of each kind (own routers), so a pairing of a kind with itself has two NATs. */
const LAB = [...KINDS, ...KINDS6, ...KINDS, ...KINDS6];
/** The default run's subset: one direct through a NAT, one relay over UDP, one over TLS. */
/** @type {Pairing[]} */
const QUICK = [{ a: 'open', b: 'cone' }, { a: 'symmetric', b: 'symmetric' }, { a: 'cone', b: 'tcp443' }];

const why = cannotRun();
test.skip(why !== null, why ?? '');

/** @type {import('./network.js').Client[]} */
let clients = [];
/** The IPv4 clients' visavis and the IPv6 ones' (one visavis relays in one address family). */
/** @type {Awaited<ReturnType<typeof startLabServer>> | null} */
let server = null;
/** @type {Awaited<ReturnType<typeof startLabServer>> | null} */
let server6 = null;
/** @type {object[]} */
const results = [];
let chromium = '';

test.beforeAll(async () => {
  clients = createLab(LAB);
  server = await startLabServer(BINARY);
  if (FULL) server6 = await startLabServer(BINARY, { ipv6: true });
});

test.afterEach(async ({}, testInfo) => {
  if (testInfo.status !== testInfo.expectedStatus) console.log(`visavis's logs:\n${server?.log.join('')}\n${server6?.log.join('') ?? ''}`);
});

test.afterAll(async () => {
  await server?.stop();
  await server6?.stop();
  removeLab();
  if (FULL && results.length === ALL.length) writeResults('matrix.json', { date: new Date().toISOString(), chromium, kernel: os.release(), loadavg: os.loadavg().map((l) => Math.round(l * 10) / 10), results });
});

for (const { a, b, relayOnly = false } of FULL ? ALL : QUICK) {
  const expected = relayOnly ? 'relay' : theory(a, b);
  test(`${a} × ${b}${relayOnly ? ' (relay only)' : ''}: connects ${expected}, video both ways`, async ({ playwright }, testInfo) => {
    test.setTimeout(90_000);
    const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
    const alice = clients[LAB.indexOf(a)];
    const bob = clients[LAB.length / 2 + LAB.indexOf(b)];
    const call = await labCall(playwright.chromium, launch, alice, bob, { relayOnly });
    chromium = call.chromium;
    try {
      /** @type {Record<string, Awaited<ReturnType<typeof selected>>>} */
      const pairs = {};
      // ICE may nominate a first working pair and move to a better one once it is checked.
      await expect(async () => {
        for (const [name, page] of /** @type {const} */ ([['alice', call.alice], ['bob', call.bob]])) {
          const pair = await selected(page);
          pairs[name] = pair;
          expect(pair, `${name} has a selected pair`).not.toBeNull();
          expect(pathOf(/** @type {NonNullable<typeof pair>} */ (pair)), `${name}'s path (${JSON.stringify(pair)})`).toBe(expected);
        }
      }).toPass({ timeout: 20_000 }).catch(async (error) => {
        for (const [name, page] of /** @type {const} */ ([['alice', call.alice], ['bob', call.bob]])) {
          console.log(`${name}'s candidate pairs:\n  ${(await candidatePairs(page)).join('\n  ')}`);
        }
        throw error;
      });
      // The restricted networks have one way out each: TURN over TCP, or over TLS on 443.
      for (const [name, kind] of /** @type {const} */ ([['alice', a], ['bob', b]])) {
        const pair = pairs[name];
        if (kind === 'tcp443') expect(pair?.relayProtocol, `${name} relays over TLS`).toBe('tls');
        if (kind === 'tcp-only') expect(pair?.local === 'relay' ? pair.relayProtocol : pair?.protocol, `${name} uses TCP`).toBe('tcp');
      }
      const result = { a, b, relayOnly, theory: expected, path: expected, alice: { ...pairs.alice, firstFrameMs: call.firstFrameMs.alice }, bob: { ...pairs.bob, firstFrameMs: call.firstFrameMs.bob } };
      results.push(result);
      console.log(`${a} × ${b}: ${JSON.stringify(result)}`);
    } finally {
      await call.close();
    }
  });
}
