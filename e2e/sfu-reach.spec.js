// @ts-check
//! The SFU reached where UDP to it is not an option: a relay-only browser joins a group call
//! through the embedded TURN server, over UDP, TCP and TLS in turn. The SFU listens on
//! loopback, a range the relay refuses to reach for anyone else, so this also checks that the
//! TURN server lets its own SFU through (and only it: see the TURN core's tests).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';
import { expectDecoding, joinRoom, roomName, selectedPair, startServer, stopServer } from './support.js';

const BASE = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 40;
const LISTEN = `127.0.0.1:${BASE}`;
const TURN = `127.0.0.1:${BASE + 1}`;
const TURN_TLS = `127.0.0.1:${BASE + 2}`;

/** @type {{proc: import('node:child_process').ChildProcess, url: string} | null} */
let server = null;
/** @type {import('@playwright/test').Browser | null} */
let chromium = null;
const certDir = mkdtempSync(join(tmpdir(), 'visavis-sfu-reach-'));

test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ playwright }, testInfo) => {
  // A certificate for TURN over TLS on loopback; Chromium is told to accept it.
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', join(certDir, 'key.pem'), '-out', join(certDir, 'cert.pem'),
  ], { stdio: 'ignore' });
  server = await startServer(LISTEN, [
    '--turn-listen', TURN, '--turn-tls-listen', TURN_TLS,
    '--turn-tls-cert', join(certDir, 'cert.pem'), '--turn-tls-key', join(certDir, 'key.pem'),
    '--max-seats-per-ip', '100',
  ]);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  chromium = await playwright.chromium.launch({ ...launch, args: [...(launch.args ?? []), '--ignore-certificate-errors'] });
});

test.afterAll(async () => {
  await chromium?.close();
  if (server) await stopServer(server.proc);
  rmSync(certDir, { recursive: true, force: true });
});

/**
 * Keeps only the TURN servers of one transport (`?only=udp|tcp|tls` in the page address) in
 * every peer connection the page makes: runs before the app.
 */
function onlyTransport() {
  const only = new URLSearchParams(location.search).get('only');
  if (!only) return;
  const keep = (/** @type {string} */ url) =>
    only === 'tls' ? url.startsWith('turns:') : url.startsWith('turn:') && url.endsWith(`transport=${only}`);
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Original {
    /** @param {RTCConfiguration} [config] */
    constructor(config) {
      const iceServers = (config?.iceServers ?? [])
        .map((s) => ({ ...s, urls: [s.urls].flat().filter(keep) }))
        .filter((s) => s.urls.length > 0);
      super({ ...config, iceServers });
    }
  };
}

/** @param {import('@playwright/test').Page} page */
async function joinCall(page) {
  await page.getByRole('button', { name: 'Join call' }).click();
  await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
}

for (const transport of ['udp', 'tcp', 'tls']) {
  test(`a relay-only browser joining the SFU through TURN over ${transport} sees and is seen`, async () => {
    test.setTimeout(90_000);
    const browser = /** @type {import('@playwright/test').Browser} */ (chromium);
    const room = roomName(`sfu-${transport}`);
    // Ann reaches the SFU directly; Bob only through the relay, over one transport.
    const ann = await joinRoom(browser, 'Ann', room, { url: `${server?.url}/` });
    const bob = await joinRoom(browser, 'Bob', room, { url: `${server?.url}/?relay&only=${transport}`, init: onlyTransport });
    try {
      await joinCall(ann);
      await joinCall(bob);
      await expectDecoding(bob, 'Ann');
      await expectDecoding(ann, 'Bob');
      const pair = await selectedPair(bob);
      expect(pair?.local).toBe('relay');
      expect(pair?.relayProtocol).toBe(transport);
      expect(pair?.url).toBe(transport === 'tls' ? `turns:${TURN_TLS}?transport=tcp` : `turn:${TURN}?transport=${transport}`);
      // Ann's path to the SFU is direct.
      expect((await selectedPair(ann))?.local).toBe('host');
    } finally {
      await Promise.all([ann.context().close(), bob.context().close()]);
    }
  });
}
