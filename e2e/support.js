// @ts-check
//! Helpers shared by the browser tests: joining a room as a person, and reading what a person
//! would see and hear (decoded frames on a labelled <video>, received audio in getStats).
import { expect } from '@playwright/test';

/**
 * Opens visavis in a fresh browser context (its own permissions and storage) and joins `room`.
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 * @param {{locale?: string, init?: () => void, url?: string}} [options] `url`: where to open
 *   visavis (default: the test server's root)
 */
export async function joinRoom(browser, name, room, options = {}) {
  const context = await browser.newContext({ locale: options.locale ?? 'en-US' });
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
  const start = await framesShown(page, label);
  await expect.poll(() => framesShown(page, label), { timeout: 15_000 }).toBeGreaterThan(start + count);
  const size = await page.getByLabel(label, { exact: true }).evaluate((v) => /** @type {HTMLVideoElement} */ (v).videoWidth);
  expect(size).toBeGreaterThan(0);
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
