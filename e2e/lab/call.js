// @ts-check
//! A call between two lab clients: one Chromium in each client's namespace, Alice calls Bob at
//! the lab's visavis, Bob accepts; what each side then sees (first decoded frame, the ICE pair
//! it selected, its inbound media) read from the page and its getStats.
import fs from 'node:fs';
import path from 'node:path';
import { expect } from '@playwright/test';
import { joinRoom, roomName } from '../support.js';
import { chromiumIn } from './network.js';

/** `npm run lab` (VISAVIS_LAB=full): every pairing, every bad network, results kept for the doc. */
export const FULL = process.env.VISAVIS_LAB === 'full';

/** Where a full run keeps its figures, which e2e/lab/report.js turns into docs/connectivity.md. */
export const RESULTS_DIR = path.resolve('e2e/lab/results');

/** @param {string} name @param {unknown} data */
export function writeResults(name, data) {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  fs.writeFileSync(path.join(RESULTS_DIR, name), `${JSON.stringify(data, null, 2)}\n`);
}

/** In the page: resolves with Date.now() once the remote <video> shows a decoded frame. */
function watchFirstFrame() {
  // @ts-ignore test-only global
  window.labFirstFrame = new Promise((resolve) => {
    const check = () => {
      const v = /** @type {HTMLVideoElement | null} */ (document.querySelector('.tile.remote video'));
      if (v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0) resolve(Date.now());
      else setTimeout(check, 5);
    };
    check();
  });
}

/**
 * Alice (in `a`'s namespace) calls Bob (in `b`'s); returns both pages, each side's time from the
 * click on "Accept" to its first decoded remote frame, and `close` to end both browsers.
 * @param {import('@playwright/test').BrowserType} chromium
 * @param {import('@playwright/test').LaunchOptions} launch
 * @param {import('./network.js').Client} a
 * @param {import('./network.js').Client} b
 * @param {{relayOnly?: boolean}} [options] `relayOnly`: the page's `?relay` (relay candidates only)
 */
export async function labCall(chromium, launch, a, b, { relayOnly = false } = {}) {
  const browsers = await Promise.all([chromium.launch(chromiumIn(a, launch)), chromium.launch(chromiumIn(b, launch))]);
  const close = () => Promise.all(browsers.map((browser) => browser.close()));
  try {
    const room = roomName('lab');
    const url = `${a.origin}/${relayOnly ? '?relay' : ''}`;
    const alice = await joinRoom(browsers[0], 'Alice', room, { url });
    const bob = await joinRoom(browsers[1], 'Bob', room, { url });
    await alice.getByRole('button', { name: 'Call Bob' }).click();
    const incoming = bob.getByRole('dialog', { name: 'Alice is calling you' });
    await expect(incoming).toBeVisible();
    await alice.evaluate(watchFirstFrame);
    await bob.evaluate(watchFirstFrame);
    // The clock of the click is the callee's page's own (both Chromiums share the machine's).
    await bob.evaluate(() => {
      document.getElementById('accept')?.addEventListener('click', () => {
        // @ts-ignore test-only global
        window.labAcceptAt = Date.now();
      }, { capture: true });
    });
    await incoming.getByRole('button', { name: 'Accept' }).click();
    // @ts-ignore test-only globals
    const acceptAt = await bob.evaluate(() => window.labAcceptAt);
    const firstFrame = async (/** @type {import('@playwright/test').Page} */ page) =>
      // @ts-ignore test-only global
      (await page.evaluate(() => Promise.race([window.labFirstFrame, new Promise((r) => setTimeout(() => r(null), 30_000))])));
    const [aliceFrame, bobFrame] = await Promise.all([firstFrame(alice), firstFrame(bob)]);
    expect(aliceFrame, 'Alice decodes Bob\'s video').not.toBeNull();
    expect(bobFrame, 'Bob decodes Alice\'s video').not.toBeNull();
    return {
      alice, bob, close, chromium: browsers[0].version(),
      firstFrameMs: { alice: aliceFrame - acceptAt, bob: bobFrame - acceptAt },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/**
 * The pair ICE selected on `page`: both candidates' types, the local one's protocol and, for a
 * relay candidate, the protocol between the browser and the TURN server.
 * @param {import('@playwright/test').Page} page
 * @returns {Promise<{local: string, remote: string, protocol: string, relayProtocol: string | null} | null>}
 */
export function selected(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    if (!pc) return null;
    const stats = await pc.getStats();
    /** @type {any} */
    let pair = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
    });
    if (!pair) return null;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return {
      local: local?.candidateType,
      remote: remote?.candidateType,
      protocol: local?.protocol,
      relayProtocol: local?.candidateType === 'relay' ? local?.relayProtocol ?? null : null,
    };
  });
}

/**
 * Every candidate pair `page`'s ICE agent has, with its state and both candidates, for a
 * failure's log.
 * @param {import('@playwright/test').Page} page
 */
export function candidatePairs(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    if (!pc) return [];
    const stats = await pc.getStats();
    /** @type {string[]} */
    const out = [];
    const show = (/** @type {any} */ c) => c ? `${c.candidateType} ${c.protocol} ${c.address}:${c.port}${c.relayProtocol ? ` (${c.relayProtocol})` : ''}` : '?';
    stats.forEach((/** @type {any} */ s) => {
      if (s.type !== 'candidate-pair') return;
      out.push(`${show(stats.get(s.localCandidateId))} → ${show(stats.get(s.remoteCandidateId))}: ${s.state}${s.nominated ? ' nominated' : ''}, requests ${s.requestsSent}/${s.responsesReceived} responses, ${s.requestsReceived} requests in`);
    });
    return out;
  });
}

/** Direct or through the relay, from one side's selected pair. @param {{local: string, remote: string}} pair */
export const pathOf = (pair) => (pair.local === 'relay' || pair.remote === 'relay' ? 'relay' : 'direct');

/**
 * `page`'s media so far, from getStats: received video (frames, freezes, size, fps, bytes) and
 * audio (packets, concealed and total samples), and its sent camera video (size, target bitrate,
 * time limited by bandwidth).
 * @param {import('@playwright/test').Page} page
 */
export function received(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    const out = {
      at: Date.now(), framesDecoded: 0, freezeCount: 0, totalFreezesDuration: 0, frameWidth: 0, frameHeight: 0,
      framesPerSecond: 0, videoBytes: 0, audioPackets: 0, audioPacketsLost: 0, concealedSamples: 0, totalSamplesReceived: 0,
      sentWidth: 0, sentHeight: 0, sentTargetKbps: 0, limitedByBandwidthS: 0,
      rttMs: /** @type {number | null} */ (null), connectionState: pc?.connectionState ?? 'none',
    };
    if (!pc) return out;
    const stats = await pc.getStats();
    stats.forEach((/** @type {any} */ s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.framesDecoded = s.framesDecoded ?? 0;
        out.freezeCount = s.freezeCount ?? 0;
        out.totalFreezesDuration = s.totalFreezesDuration ?? 0;
        out.frameWidth = s.frameWidth ?? 0;
        out.frameHeight = s.frameHeight ?? 0;
        out.framesPerSecond = s.framesPerSecond ?? 0;
        out.videoBytes = s.bytesReceived ?? 0;
      }
      // The camera's own outgoing video: what the encoder settled on, and for how long it was
      // held back by the bandwidth estimate.
      if (s.type === 'outbound-rtp' && s.kind === 'video' && (s.frameHeight ?? 0) >= out.sentHeight) {
        out.sentWidth = s.frameWidth ?? 0;
        out.sentHeight = s.frameHeight ?? 0;
        out.sentTargetKbps = Math.round((s.targetBitrate ?? 0) / 1000);
        out.limitedByBandwidthS = s.qualityLimitationDurations?.bandwidth ?? 0;
      }
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audioPackets = s.packetsReceived ?? 0;
        out.audioPacketsLost = s.packetsLost ?? 0;
        out.concealedSamples = s.concealedSamples ?? 0;
        out.totalSamplesReceived = s.totalSamplesReceived ?? 0;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        if (typeof pair?.currentRoundTripTime === 'number') out.rttMs = Math.round(pair.currentRoundTripTime * 1000);
      }
    });
    return out;
  });
}
