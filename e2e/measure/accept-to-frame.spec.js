// @ts-check
//! Measurement, not a test of behaviour: call set-up after "Accept", for each `--preconnect`
//! mode (relay, direct, off) in the same run, calls interleaved so that the machine's load hits
//! every mode alike. Per call, on the callee's clock (both pages share the machine's):
//! the Accept click, `accept` sent and `accepted` received, the camera and microphone handed
//! over (getUserMedia resolved), the video track put on the connection (replaceTrack; the
//! caller's, primed while it rings, before the click), the camera's first frame shown locally,
//! and the first remote frame shown by each side. Run with `npm run measure:accept`; MEASURE_RUNS
//! (default 10) calls per mode, MEASURE_MODES (default `relay,direct,off`), VISAVIS_BIN for
//! another build (`target/release/visavis`).
import { test, expect } from '@playwright/test';
import { startServer, stopServer, roomName } from '../support.js';

const RUNS = Number(process.env.MEASURE_RUNS ?? 10);
const MODES = (process.env.MEASURE_MODES ?? 'relay,direct,off').split(',');
const BASE = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 40;

/**
 * Runs in each page before its scripts: timestamps (Date.now()) of what a call's set-up is
 * made of, in `window.setup`.
 */
function instrument() {
  /** @type {Record<string, number>} */
  const setup = {};
  // @ts-ignore test-only global
  window.setup = setup;
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints) => {
    setup.cameraAsked ??= Date.now();
    const stream = await getUserMedia(constraints);
    setup.cameraOpen ??= Date.now();
    return stream;
  };
  const replaceTrack = RTCRtpSender.prototype.replaceTrack;
  /** @this {RTCRtpSender} @param {MediaStreamTrack | null} track */
  RTCRtpSender.prototype.replaceTrack = function (track) {
    if (track?.kind === 'video') setup.trackOn ??= Date.now();
    return replaceTrack.call(this, track);
  };
  // The signalling: when `accept` leaves the callee, when `accepted` reaches each side (a
  // listener added before the page's own, so it times the arrival, not the handling).
  const Native = WebSocket;
  // @ts-ignore test-only replacement
  window.WebSocket = class extends Native {
    /** @param {string | URL} url @param {string | string[]} [protocols] */
    constructor(url, protocols) {
      super(url, protocols);
      this.addEventListener('message', (e) => {
        if (typeof e.data === 'string' && e.data.includes('"type":"accepted"')) setup.accepted ??= Date.now();
      });
    }
    /** @param {any} data */
    send(data) {
      if (typeof data === 'string' && data.includes('"type":"accept"')) setup.acceptSent ??= Date.now();
      super.send(data);
    }
  };
  const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
  /** @this {RTCPeerConnection} @param {MediaStreamTrack | string} what @param {RTCRtpTransceiverInit} [init] */
  RTCPeerConnection.prototype.addTransceiver = function (what, init) {
    if (typeof what !== 'string' && what.kind === 'video') setup.trackOn ??= Date.now();
    return addTransceiver.call(this, what, init);
  };
  // The first frame each <video> shows: the remote tile's, and our own (the camera's first).
  /** @param {string} selector @param {string} key */
  const firstFrame = (selector, key) => {
    const look = () => {
      const video = /** @type {HTMLVideoElement | null} */ (document.querySelector(selector));
      if (!video || !video.srcObject) return setTimeout(look, 5);
      video.requestVideoFrameCallback(() => {
        setup[key] ??= Date.now();
      });
    };
    look();
  };
  addEventListener('DOMContentLoaded', () => {
    firstFrame('.tile.remote video', 'remoteFrame');
    firstFrame('.tile.local video', 'localFrame');
    document.getElementById('accept')?.addEventListener('click', () => {
      setup.accept = Date.now();
    }, { capture: true });
  });
}

/**
 * @param {import('@playwright/test').Browser} browser
 * @param {string} url
 * @param {string} name
 * @param {string} room
 */
async function person(browser, url, name, room) {
  const page = await (await browser.newContext({ locale: 'en-US' })).newPage();
  await page.addInitScript(instrument);
  await page.goto(url);
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Room').fill(room);
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByText(`You are ${name}`)).toBeVisible();
  return page;
}

/** @param {import('@playwright/test').Page} page @returns {Promise<Record<string, number>>} */
// @ts-ignore test-only global
const setupOf = (page) => page.evaluate(() => ({ ...window.setup }));

/** @param {number[]} xs */
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : Math.round((s[s.length / 2 - 1] + s[s.length / 2]) / 2);
};

test('accept to first decoded remote frame, per preconnect mode', async ({ browser }) => {
  test.setTimeout(MODES.length * RUNS * 40_000 + 60_000);
  /** @type {Record<string, {url: string, proc: import('node:child_process').ChildProcess}>} */
  const servers = {};
  for (const [i, mode] of MODES.entries()) {
    const port = BASE + i;
    servers[mode] = await startServer(`127.0.0.1:${port}`, [
      '--preconnect', mode, '--turn-listen', `127.0.0.1:${port - 4602}`, '--state', 'none',
    ]);
  }
  /** @type {Record<string, Record<string, number[]>>} */
  const results = Object.fromEntries(MODES.map((m) => [m, {}]));
  /** @param {string} mode @param {string} key @param {number} value */
  const record = (mode, key, value) => (results[mode][key] ??= []).push(value);
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const mode of MODES) {
        const room = roomName(`measure-${mode}`);
        const alice = await person(browser, servers[mode].url, 'Alice', room);
        const bob = await person(browser, servers[mode].url, 'Bob', room);
        await alice.getByRole('button', { name: 'Call Bob' }).click();
        const accept = bob.getByRole('button', { name: 'Accept' });
        await expect(accept).toBeVisible();
        // Give a pre-connecting call the time it has while a person reaches for the button.
        await bob.waitForTimeout(1500);
        await accept.click();
        await expect.poll(async () => (await setupOf(alice)).remoteFrame && (await setupOf(bob)).remoteFrame, { timeout: 20_000 }).toBeTruthy();
        const caller = await setupOf(alice);
        const callee = await setupOf(bob);
        const at = callee.accept;
        record(mode, 'callee decodes caller', callee.remoteFrame - at);
        record(mode, 'caller decodes callee', caller.remoteFrame - at);
        record(mode, 'both ways', Math.max(callee.remoteFrame, caller.remoteFrame) - at);
        record(mode, 'caller decodes callee after their camera\'s first frame', caller.remoteFrame - callee.localFrame);
        record(mode, 'callee: getUserMedia resolved', callee.cameraOpen - at);
        record(mode, 'callee: video track on the connection', callee.trackOn - at);
        record(mode, 'callee: camera\'s first frame shown', callee.localFrame - at);
        record(mode, 'callee: accept sent', callee.acceptSent - at);
        record(mode, 'caller: accepted arrived', caller.accepted - at);
        record(mode, 'caller: video track on the connection', caller.trackOn - at);
        await alice.context().close();
        await bob.context().close();
      }
    }
  } finally {
    for (const server of Object.values(servers)) await stopServer(server.proc);
  }
  const binary = process.env.VISAVIS_BIN ?? 'target/debug/visavis';
  console.log(`\nAccept → …, ${RUNS} calls per mode, ${binary} (ms after the Accept click unless said)`);
  for (const mode of MODES) {
    console.log(`\n--preconnect ${mode}`);
    for (const [key, xs] of Object.entries(results[mode])) {
      console.log(`  ${key.padEnd(58)} median ${String(median(xs)).padStart(4)}   [${xs.join(', ')}]`);
    }
  }
});
