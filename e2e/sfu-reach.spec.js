// @ts-check
//! The SFU reached where UDP to it is not an option: a relay-only browser joins a group call
//! through the embedded TURN server, over UDP, TCP and TLS in turn (the SFU listens on
//! loopback, a range the relay refuses to reach for anyone else, so this also checks that the
//! TURN server lets its own SFU through, and only it: see the TURN core's tests); and a browser
//! in a network namespace whose UDP is blocked, with no TURN server at all, joins over ICE-TCP
//! on the SFU's port.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';
import { expectDecoding, joinRoom, roomName, selectedPair, startServer, stopServer } from './support.js';
import { HOST_IP, chromiumInNamespace, createNetwork, removeNetwork, blockUdpOut } from './netns.js';

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

test('a browser whose UDP is blocked, with no TURN server, joins the SFU over ICE-TCP on its port', async ({ playwright }, testInfo) => {
  test.setTimeout(120_000);
  createNetwork();
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const options = { ...launch, args: [...(launch.args ?? []), '--ignore-certificate-errors'] };
  /** @type {import('@playwright/test').Browser | null} */
  let inside = null;
  // HTTPS with its self-signed certificate (off loopback), the SFU on UDP and TCP of one
  // port, no TURN server.
  const own = await startServer(`${HOST_IP}:${BASE + 3}`, ['--max-seats-per-ip', '100'], { https: true });
  try {
    blockUdpOut();
    inside = await playwright.chromium.launch(chromiumInNamespace(options));
    const room = roomName('sfu-tcp');
    const ann = await joinRoom(/** @type {import('@playwright/test').Browser} */ (chromium), 'Ann', room, { url: `${own.url}/` });
    const bob = await joinRoom(inside, 'Bob', room, { url: `${own.url}/` });
    await joinCall(ann);
    await joinCall(bob);
    await expectDecoding(bob, 'Ann');
    await expectDecoding(ann, 'Bob');
    const pair = await bob.evaluate(async () => {
      // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
      const stats = await /** @type {RTCPeerConnection} */ (window.visavis.pc).getStats();
      let found = null;
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const p = stats.get(s.selectedCandidatePairId);
          const remote = stats.get(p.remoteCandidateId);
          found = { protocol: remote?.protocol, type: remote?.candidateType, port: remote?.port, tcpType: remote?.tcpType };
        }
      });
      return found;
    });
    expect(pair).toMatchObject({ protocol: 'tcp', type: 'host' });
    await ann.context().close();
  } finally {
    await inside?.close();
    await stopServer(own.proc);
    removeNetwork();
  }
});
