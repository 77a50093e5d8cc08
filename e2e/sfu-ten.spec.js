// @ts-check
//! Ten people in one group call through the SFU: three Chromiums and seven load bots
//! (crates/visavis-bot) replaying what the first Chromium's fake camera and microphone sent,
//! recorded here by a bot. Every browser holds one peer connection and decodes every other
//! participant's video, the bots' too; every bot receives every other participant's video.
import { test, expect } from '@playwright/test';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeContexts, countPeerConnections, expectAllDecoding, joinRoom, openPcs, roomName, startServer, stopServer } from './support.js';

const PORT = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 44;
const LISTEN = `127.0.0.1:${PORT}`;
const BOT = process.env.VISAVIS_BOT_BIN ?? 'target/debug/visavis-bot';
/** The bots' first source address, apart from other runs' (127.0.0.0/8 is all loopback). */
const SOURCE = `127.${Number(process.env.VISAVIS_E2E_NET ?? 0)}.1.2`;

/** @type {{proc: import('node:child_process').ChildProcess, url: string} | null} */
let server = null;
let dir = '';

test.beforeAll(async () => {
  server = await startServer(LISTEN, ['--max-seats-per-ip', '100']);
  dir = mkdtempSync(join(tmpdir(), 'visavis-bot-'));
});
test.afterAll(async () => {
  if (server) await stopServer(server.proc);
  if (dir) rmSync(dir, { recursive: true, force: true });
});
test.afterEach(closeContexts);

/**
 * Runs the bot binary with `args`; resolves with its JSON summary when it exits (0 or not:
 * the test reads why from the summary), and kills it if it outlives `limitMs`. `seeing`
 * resolves when the bots say every one of them sees everyone (`--see-cameras`). `stop()`
 * ends the bots' stay now (SIGTERM): they leave and print their summary.
 * @param {string[]} args
 * @param {number} limitMs
 * @returns {{done: Promise<any>, seeing: Promise<void>, stop: () => void}}
 */
function runBot(args, limitMs) {
  const proc = spawn(BOT, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  /** @type {() => void} */
  let seen = () => {};
  const seeing = new Promise((resolve) => (seen = () => resolve(undefined)));
  proc.stdout?.on('data', (d) => (out += d));
  proc.stderr?.on('data', (d) => {
    err += d;
    if (err.includes('seeing: ')) seen();
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs);
  const done = new Promise((resolve, reject) => {
    proc.on('exit', (code) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`visavis-bot ${args[0]} exited ${code}: ${err}${out}`));
      }
    });
  });
  return { done, seeing, stop: () => proc.kill('SIGTERM') };
}

/**
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 */
async function joinGroupCall(browser, name, room) {
  const page = await joinRoom(browser, name, room, { url: `${server?.url}/`, init: countPeerConnections });
  await page.getByRole('button', { name: 'Join call' }).click();
  await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
  return page;
}

test('ten people through the SFU: 3 browsers and 7 bots, one peer connection each, everyone decodes everyone', async ({ browser }) => {
  test.setTimeout(180_000);
  const room = roomName('ten');
  const common = ['--url', `${server?.url.replace('http', 'ws')}/ws`, '--room', room, '--source', SOURCE];

  // Ann's camera and microphone, as the SFU forwards them, become the bots' media.
  const ann = await joinGroupCall(browser, 'Ann', room);
  const recording = join(dir, 'ann.rec');
  const recorded = await runBot(['record', ...common, '--out', recording, '--seconds', '5'], 30_000).done;
  expect(recorded.keyframes).toBeGreaterThan(0);
  expect(recorded.videoFrames).toBeGreaterThan(10);
  await expect(ann.getByLabel('recorder', { exact: true })).toHaveCount(0); // it left

  // Seven bots stay until the checks below are done and each bot has a second of video from
  // the nine other cameras (stop()), however long a busy machine makes that take, within the
  // test's time.
  const bots = runBot(['run', ...common, '--bots', '7', '--replay', recording, '--seconds', '170', '--name', 'Bot ', '--join-gap-ms', '100', '--see-cameras', '9'], 175_000);
  const bob = await joinGroupCall(browser, 'Bob', room);
  const cy = await joinGroupCall(browser, 'Cy', room);

  const people = ['Ann', ...Array.from({ length: 7 }, (_, i) => `Bot ${i + 1}`), 'Bob', 'Cy'];
  const pages = /** @type {const} */ ([['Ann', ann], ['Bob', bob], ['Cy', cy]]);
  const checking = Date.now();
  for (const [me, page] of pages) {
    // The call's line of names has everyone (in join order: the bots join side by side).
    const line = page.getByText(/^Call in progress: /);
    await expect.poll(async () => ((await line.textContent()) ?? '').replace('Call in progress: ', '').split(', ').sort(), { timeout: 30_000 })
      .toEqual([...people].sort());
    await test.step(`${me} sees everyone`, () => expectAllDecoding(page, people.filter((p) => p !== me), 5));
    expect(await openPcs(page)).toBe(1);
  }

  console.log(`ten people: every page decoded every other participant within ${Date.now() - checking} ms`);
  await Promise.race([bots.seeing, bots.done]);
  console.log(`ten people: every bot received every other camera within ${Date.now() - checking} ms`);
  bots.stop();
  const summary = await bots.done;
  expect(summary.errors).toEqual([]);
  expect(summary.connected).toBe(7);
  // Every bot got the tracks of the nine others, and frames from every camera among them.
  expect(summary.publishersSeenMin).toBeGreaterThanOrEqual(9);
  expect(summary.cameraFramesMin).toBeGreaterThanOrEqual(30); // --see-cameras: a second (visavis-bot SEEING_FRAMES)
});
