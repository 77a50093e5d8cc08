// @ts-check
//! Helpers shared by the browser tests: joining a room as a person, reading what a person would
//! see and hear (decoded frames on a labelled <video>, received audio in getStats), and a visavis
//! of a test's own.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';

/**
 * Opens visavis in a fresh browser context (its own permissions and storage) and joins `room`.
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 * @param {{locale?: string, init?: () => void, url?: string, context?: import('@playwright/test').BrowserContextOptions}} [options]
 *   `url`: where to open visavis (default: the test server's root); `context`: more options for
 *   the browser context (a phone's viewport and touch, say)
 */
export async function joinRoom(browser, name, room, options = {}) {
  const context = await browser.newContext({ locale: options.locale ?? 'en-US', ...options.context });
  const page = await context.newPage();
  if (options.init) await page.addInitScript(options.init);
  await page.goto(options.url ?? '/');
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Room').fill(room);
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByText(`You are ${name}`)).toBeVisible();
  return page;
}

/**
 * Closes every browser context a test opened, so its calls stop using the CPU before the next
 * test starts. Use as `test.afterEach(closeContexts)`.
 * @param {{browser: import('@playwright/test').Browser}} fixtures
 */
export async function closeContexts({ browser }) {
  await Promise.all(browser.contexts().map((c) => c.close()));
}

/** A unique room per test, so tests never see each other's members. */
export function roomName(prefix = 'room') {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6)}`;
}

/**
 * Caller clicks "Call <callee>", callee accepts; both end up in the call dialog.
 * @param {import('@playwright/test').Page} caller
 * @param {import('@playwright/test').Page} callee
 * @param {string} callerName
 * @param {string} calleeName
 */
export async function startCall(caller, callee, callerName, calleeName) {
  await caller.getByRole('button', { name: `Call ${calleeName}` }).click();
  await expect(caller.getByRole('dialog', { name: `Calling ${calleeName}…` })).toBeVisible();
  const incoming = callee.getByRole('dialog', { name: `${callerName} is calling you` });
  await expect(incoming).toBeVisible();
  await incoming.getByRole('button', { name: 'Accept' }).click();
  await expect(caller.getByRole('dialog', { name: `Call with ${calleeName}` })).toBeVisible();
  await expect(callee.getByRole('dialog', { name: `Call with ${callerName}` })).toBeVisible();
}

/**
 * Frames shown so far by the <video> labelled `label`.
 * @param {import('@playwright/test').Page} page
 * @param {string} label
 */
export function framesShown(page, label) {
  return page
    .getByLabel(label, { exact: true })
    .evaluate((v) => /** @type {HTMLVideoElement} */ (v).getVideoPlaybackQuality().totalVideoFrames);
}

/**
 * Waits until the <video> labelled `label` shows at least `count` more frames.
 * @param {import('@playwright/test').Page} page
 * @param {string} label
 */
export async function expectDecoding(page, label, count = 15) {
  let last = await framesShown(page, label);
  let shown = 0;
  await expect.poll(async () => {
    const now = await framesShown(page, label);
    // A new stream on the element (a reconnected SFU call) counts its frames from zero.
    shown += now >= last ? now - last : now;
    last = now;
    return shown;
  }, { timeout: 15_000 }).toBeGreaterThan(count);
  const size = await page.getByLabel(label, { exact: true }).evaluate((v) => /** @type {HTMLVideoElement} */ (v).videoWidth);
  expect(size).toBeGreaterThan(0);
}

/**
 * Waits until every <video> labelled with one of `labels` shows more than `count` more
 * frames: one look at all of them per poll, so a page with many tiles is checked at once.
 * @param {import('@playwright/test').Page} page
 * @param {string[]} labels
 */
export async function expectAllDecoding(page, labels, count = 15) {
  const frames = () => page.evaluate((names) => names.map((name) => {
    const video = /** @type {HTMLVideoElement | null} */ (document.querySelector(`video[aria-label="${CSS.escape(name)}"]`));
    return video && video.videoWidth > 0 ? video.getVideoPlaybackQuality().totalVideoFrames : -1;
  }), labels);
  const first = await frames();
  // Labels whose video has not yet shown `count` frames more than at first (or is gone).
  await expect.poll(async () => {
    const now = await frames();
    return labels.filter((_, i) => now[i] < 0 || now[i] - Math.max(first[i], 0) <= count);
  }, { timeout: 15_000 }).toEqual([]);
}

/**
 * Frames the <video> labelled `label` shows during `ms` milliseconds.
 * @param {import('@playwright/test').Page} page
 * @param {string} label
 */
export async function framesDuring(page, label, ms = 1500) {
  const start = await framesShown(page, label);
  await page.waitForTimeout(ms);
  return (await framesShown(page, label)) - start;
}

/**
 * The inbound RTP statistics of this page's call for `kind`.
 * @param {import('@playwright/test').Page} page
 * @param {'audio' | 'video'} kind
 * @returns {Promise<{packets: number, energy: number, frames: number}>}
 */
export function inbound(page, kind) {
  return page.evaluate(async (kind) => {
    // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    if (!pc) return { packets: 0, energy: 0, frames: 0 };
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === kind) {
        return { packets: s.packetsReceived ?? 0, energy: s.totalAudioEnergy ?? 0, frames: s.framesDecoded ?? 0 };
      }
    }
    return { packets: 0, energy: 0, frames: 0 };
  }, kind);
}

/**
 * Audio energy received during `ms` milliseconds (0 when the other side is muted).
 * @param {import('@playwright/test').Page} page
 */
export async function audioEnergyDuring(page, ms = 2000) {
  const before = await inbound(page, 'audio');
  await page.waitForTimeout(ms);
  const after = await inbound(page, 'audio');
  return { energy: after.energy - before.energy, packets: after.packets - before.packets };
}

/**
 * The candidate types of the pair ICE selected, the TURN server URL of the local one and the
 * protocol between this browser and that server (`relayProtocol`: udp, tcp or tls).
 * @param {import('@playwright/test').Page} page
 */
export function selectedPair(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
    const stats = await /** @type {RTCPeerConnection} */ (window.visavis.pc).getStats();
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return { local: local?.candidateType, remote: remote?.candidateType, url: local?.url ?? '', relayProtocol: local?.relayProtocol };
  });
}

/** The visavis binary the tests start: the debug build, or `VISAVIS_BIN` (another build to try). */
export const BINARY = process.env.VISAVIS_BIN ?? 'target/debug/visavis';

/** Data dirs startServer made: removed when the test run ends (a restart reuses one until then). */
const madeDataDirs = /** @type {string[]} */ ([]);
process.once('exit', () => {
  for (const dir of madeDataDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * Starts a visavis of its own for a test (debug build, or `VISAVIS_BIN`), with no TURN server
 * unless `args` give `--turn-listen`, and waits until it serves. It keeps its
 * state in a new temporary `--data-dir` (its state file is locked, so servers side by side each
 * need one), unless `args` name one: a restart passes the `dataDir` of the server it replaces.
 * @param {string} listen
 * @param {string[]} args
 * @param {{https?: boolean}} [options] `https`: it serves HTTPS (any certificate is accepted
 *   while waiting for it)
 */
export async function startServer(listen, args = [], options = {}) {
  let dataDir;
  if (args.includes('--data-dir')) dataDir = args[args.indexOf('--data-dir') + 1];
  else {
    dataDir = mkdtempSync(join(tmpdir(), 'visavis-e2e-'));
    madeDataDirs.push(dataDir);
  }
  const data = args.includes('--data-dir') ? [] : ['--data-dir', dataDir];
  // No TURN server unless the test asks for one.
  const turn = args.includes('--turn-listen') ? [] : ['--no-turn'];
  // The SFU on a port of its own, so servers side by side do not all want 3479.
  const sfu = args.some((a) => a === '--sfu-listen' || a === '--group-media') ? [] : ['--sfu-listen', `${listen.replace(/:\d+$/, '')}:0`];
  const proc = spawn(BINARY, ['--listen', listen, ...turn, ...data, ...sfu, ...args], { stdio: 'ignore' });
  const url = `${options.https ? 'https' : 'http'}://${listen.replace(/:443$/, '')}`;
  for (let i = 0; i < 100; i++) {
    try {
      if (await healthy(`${url}/healthz`)) return { proc, url, dataDir };
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  proc.kill('SIGKILL');
  throw new Error(`visavis on ${listen} did not start`);
}

/**
 * Whether `url` answers 200, over HTTP or HTTPS (any certificate accepted).
 * @param {string} url
 * @returns {Promise<boolean>}
 */
function healthy(url) {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? https.get : http.get;
    const request = get(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy());
  });
}

/** @param {import('node:child_process').ChildProcess} proc */
export function stopServer(proc) {
  return new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(null);
    proc.once('exit', resolve);
    proc.kill('SIGTERM');
  });
}

/** A phone in portrait (touch) and a laptop, for the layout and accessibility tests. */
export const SIZES = {
  phone: { viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true },
  desktop: { viewport: { width: 1280, height: 720 } },
};

/**
 * Expects the element to be entirely within the viewport, without scrolling, and not covered by
 * anything else at its centre (what a person would see and could tap).
 * @param {import('@playwright/test').Locator} locator
 */
export async function expectOnScreen(locator) {
  await expect(locator).toBeInViewport({ ratio: 1 });
  const covered = await locator.evaluate((el) => {
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return hit && el.contains(hit) ? null : (hit?.outerHTML.slice(0, 120) ?? 'nothing');
  });
  expect(covered, 'covered by').toBeNull();
}

/**
 * Runs axe on the page as it is and fails on serious or critical violations (listed).
 * @param {import('@playwright/test').Page} page
 * @param {string} screen
 */
export async function expectAccessible(page, screen) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']).analyze();
  const bad = results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help}\n    ${v.nodes.map((n) => `${n.target.join(' ')} — ${n.failureSummary?.split('\n').slice(1, 2).join('')}`).join('\n    ')}`);
  expect(bad, `axe on ${screen}`).toEqual([]);
}

/** Counts the peer connections the page makes (an `init` script: it runs before the app). */
export function countPeerConnections() {
  const Original = window.RTCPeerConnection;
  /** @type {RTCPeerConnection[]} */
  const made = [];
  // @ts-ignore: for the test to read
  window.madePcs = made;
  window.RTCPeerConnection = class extends Original {
    /** @param {RTCConfiguration} [config] */
    constructor(config) {
      super(config);
      made.push(this);
    }
  };
}

/**
 * Peer connections the page holds open (with `countPeerConnections` as its init script).
 * @param {import('@playwright/test').Page} page
 */
export function openPcs(page) {
  // @ts-ignore: set by countPeerConnections
  return page.evaluate(() => window.madePcs.filter((/** @type {RTCPeerConnection} */ pc) => pc.signalingState !== 'closed').length);
}
