// @ts-check
//! Calls that survive: a signalling outage in the middle of a call, a network drop that needs
//! an ICE restart, and a server restart. Times are printed for docs/reliability.md.
import { test, expect } from '@playwright/test';
import { closeContexts, expectDecoding, framesDuring, joinRoom, roomName, startCall, startServer, stopServer } from './support.js';
import { HOST_IP, chromiumInNamespace, createNetwork, removeNetwork, setLink } from './netns.js';

test.afterEach(closeContexts);

/**
 * Chat texts in `page`'s chat log.
 * @param {import('@playwright/test').Page} page
 */
const chatTexts = (page) => page.getByRole('log').locator('.text').allTextContents();

/** The restart tests' own server: the suite's port + 16 (so checkouts side by side don't meet). */
const RESTART_PORT = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 16;

/**
 * Stops `server` the way `signal` says: SIGTERM (graceful, the state flushed) or SIGKILL (a crash);
 * returns when the signal was sent (ms since the epoch).
 * @param {{ proc: import('node:child_process').ChildProcess }} server
 * @param {'SIGTERM' | 'SIGKILL'} signal
 */
async function stopWith(server, signal) {
  // Give the write-behind (every 100 ms) time to keep the latest state before a crash.
  await new Promise((r) => setTimeout(r, 500));
  const at = Date.now();
  if (signal === 'SIGTERM') {
    await stopServer(server.proc);
    return at;
  }
  const exited = new Promise((r) => server.proc.once('exit', r));
  server.proc.kill('SIGKILL');
  await exited;
  return at;
}

/**
 * Waits until every page has its session back on the restarted server, and returns how long that took.
 * @param {import('@playwright/test').Page[]} pages
 */
async function resumed(pages) {
  const started = Date.now();
  for (const page of pages) {
    await expect(page.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
  }
  return Date.now() - started;
}

test('a 10 s signalling outage: video keeps going, the session resumes, nothing is lost or doubled, hang-up works', async ({ browser }) => {
  test.setTimeout(90_000);
  const room = roomName('outage');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  await startCall(alice, bob, 'Alice', 'Bob');
  await expectDecoding(bob, 'Alice');

  // From now on Alice's attempts to reach the server fail for 10 s, as in a network outage.
  let outageUntil = Date.now() + 10_000;
  await alice.routeWebSocket(/\/ws$/, (ws) => {
    if (Date.now() < outageUntil) ws.close({ code: 4002, reason: 'outage' });
    else ws.connectToServer();
  });
  await alice.evaluate(() => window.visavis.dropSignalling());
  await expect(alice.getByRole('status').filter({ hasText: 'reconnecting' })).toBeVisible();
  await expect(bob.getByText('Alice (reconnecting…)').first()).toBeVisible();

  // Both keep seeing each other all along; messages in both directions wait for the resume.
  await bob.getByLabel('Message').fill('sent while Alice was away');
  await bob.getByRole('button', { name: 'Send' }).click();
  // Alice cannot send while she is offline: her message waits in the box (offline.spec.js).
  await alice.getByLabel('Message').fill('typed while offline');
  await expect(alice.getByRole('button', { name: 'Send' })).toBeDisabled();
  expect(await framesDuring(bob, 'Alice', 4000)).toBeGreaterThan(20);
  expect(await framesDuring(alice, 'Bob', 4000)).toBeGreaterThan(20);

  const restored = Date.now() > outageUntil ? Date.now() : outageUntil;
  await expect(alice.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
  console.log(`resume: session back ${Date.now() - restored} ms after the outage ended`);
  await alice.getByRole('button', { name: 'Send' }).click();
  await expect(bob.getByText('Alice (reconnecting…)')).toHaveCount(0);
  for (const page of [alice, bob]) {
    await expect.poll(() => chatTexts(page)).toEqual(['sent while Alice was away', 'typed while offline']);
  }
  await expectDecoding(bob, 'Alice');

  await alice.getByRole('button', { name: 'Hang up' }).click();
  await expect(bob.getByText('Alice hung up.')).toBeVisible();
  await expect(alice.getByText('Call ended.')).toBeVisible();
  outageUntil = 0;
});

test('a network drop (the link cut for several seconds) triggers an ICE restart and the video comes back', async ({ playwright }, testInfo) => {
  test.setTimeout(120_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  createNetwork();
  // Plain HTTP on the namespace's address (this test is about ICE, not TLS): the browsers are
  // told to treat that origin as secure.
  const server = await startServer(`${HOST_IP}:18095`, ['--heartbeat-timeout', '3', '--insecure-http']);
  const secure = `--unsafely-treat-insecure-origin-as-secure=${server.url}`;
  const here = await playwright.chromium.launch({ ...launch, args: [...(launch.args ?? []), secure] });
  const away = await playwright.chromium.launch(chromiumInNamespace({ ...launch, args: [...(launch.args ?? []), secure] }));
  try {
    const room = roomName('ice');
    const alice = await joinRoom(here, 'Alice', room, { url: server.url });
    const bob = await joinRoom(away, 'Bob', room, { url: server.url });
    await startCall(alice, bob, 'Alice', 'Bob');
    await expectDecoding(alice, 'Bob');
    await expectDecoding(bob, 'Alice');

    setLink(false);
    await expect(alice.getByRole('status').filter({ hasText: 'Reconnecting…' }).first()).toBeVisible({ timeout: 20_000 });
    expect(await framesDuring(alice, 'Bob', 2000)).toBeLessThan(3);
    await alice.waitForTimeout(6000);
    setLink(true);
    const restored = Date.now();
    await expect.poll(() => framesDuring(alice, 'Bob', 500), { timeout: 40_000 }).toBeGreaterThan(3);
    const decoding = Date.now() - restored;
    await expectDecoding(bob, 'Alice', 10);
    console.log(`ICE restart: video decoding again ${decoding} ms after the network came back`);
    const restarts = (await alice.evaluate(() => window.visavis.iceRestarts)) + (await bob.evaluate(() => window.visavis.iceRestarts));
    expect(restarts).toBeGreaterThan(0);
    await expect(alice.getByRole('dialog', { name: 'Call with Bob' }).getByText('Connected')).toBeVisible({ timeout: 20_000 });
    // Signalling came back too: hang-up reaches the other side.
    await bob.getByRole('button', { name: 'Hang up' }).click();
    await expect(alice.getByText('Bob hung up.')).toBeVisible({ timeout: 20_000 });
  } finally {
    await here.close();
    await away.close();
    await stopServer(server.proc);
    removeNetwork();
  }
});

test('a server restart (SIGTERM, then SIGKILL): the call goes on, video never stops, chat intact, hang-up works', async ({ playwright }, testInfo) => {
  test.setTimeout(120_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const listen = `127.0.0.1:${RESTART_PORT}`;
  let server = await startServer(listen);
  const browser = await playwright.chromium.launch(launch);
  try {
    const room = roomName('restart');
    const alice = await joinRoom(browser, 'Alice', room, { url: server.url });
    const bob = await joinRoom(browser, 'Bob', room, { url: server.url });
    await startCall(alice, bob, 'Alice', 'Bob');
    await expectDecoding(alice, 'Bob');
    await alice.getByLabel('Message').fill('before the restarts');
    await alice.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => chatTexts(bob)).toEqual(['before the restarts']);

    for (const signal of /** @type {const} */ (['SIGTERM', 'SIGKILL'])) {
      await stopWith(server, signal);
      // Media is peer to peer: the video goes on while no server runs.
      expect(await framesDuring(bob, 'Alice', 1000)).toBeGreaterThan(5);
      server = await startServer(listen, ['--data-dir', server.dataDir]);
      const took = await resumed([alice, bob]);
      console.log(`server restart (${signal}): both sessions resumed ${took} ms after the new server was up`);
      for (const page of [alice, bob]) {
        await expect(page.getByText('the call ended', { exact: false })).toHaveCount(0);
        await expect(page.getByRole('button', { name: 'Hang up' })).toBeVisible();
      }
      expect(await framesDuring(bob, 'Alice', 2000)).toBeGreaterThan(10);
      expect(await framesDuring(alice, 'Bob', 2000)).toBeGreaterThan(10);
    }
    // Chat goes on in the same room, each message once.
    await bob.getByLabel('Message').fill('after the restarts');
    await bob.getByRole('button', { name: 'Send' }).click();
    for (const page of [alice, bob]) {
      await expect.poll(() => chatTexts(page)).toEqual(['before the restarts', 'after the restarts']);
    }
    // The call is the server's still: a hang-up reaches the other side.
    await alice.getByRole('button', { name: 'Hang up' }).click();
    await expect(bob.getByText('Alice hung up.')).toBeVisible();
  } finally {
    await browser.close();
    await stopServer(server.proc);
  }
});

test('a server restart during a group call of three (SIGTERM, then SIGKILL): nobody leaves the call, every video keeps decoding', async ({ playwright }, testInfo) => {
  test.setTimeout(180_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const listen = `127.0.0.1:${RESTART_PORT + 1}`;
  // A mesh group call: its media never touches the server, so it never stops. (Through the
  // SFU, the worker process keeps it going: the next test.)
  const mesh = ['--group-media', 'mesh'];
  let server = await startServer(listen, mesh);
  const browser = await playwright.chromium.launch(launch);
  try {
    const room = roomName('group-restart');
    const names = ['Ann', 'Bob', 'Cy'];
    const pages = [];
    for (const name of names) pages.push(await joinRoom(browser, name, room, { url: server.url }));
    for (const page of pages) {
      await page.getByRole('button', { name: 'Join call' }).click();
      await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
    }
    const others = (/** @type {number} */ i) => names.filter((_, j) => j !== i);
    for (const [i, page] of pages.entries()) for (const name of others(i)) await expectDecoding(page, name, 10);

    for (const signal of /** @type {const} */ (['SIGTERM', 'SIGKILL'])) {
      await stopWith(server, signal);
      expect(await framesDuring(pages[0], 'Bob', 1000)).toBeGreaterThan(5);
      server = await startServer(listen, [...mesh, '--data-dir', server.dataDir]);
      const took = await resumed(pages);
      console.log(`server restart (${signal}) in a group call: all three sessions resumed ${took} ms after the new server was up`);
      for (const [i, page] of pages.entries()) {
        // Still in the call, still seeing both others.
        await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
        for (const name of others(i)) expect(await framesDuring(page, name, 2000)).toBeGreaterThan(10);
      }
    }
    // The server still knows the call: one leaving is seen by the others.
    await pages[2].getByRole('button', { name: 'Leave call' }).click();
    for (const page of pages.slice(0, 2)) await expect(page.getByLabel('Cy', { exact: true })).toHaveCount(0);
    await expectDecoding(pages[0], 'Bob');
    await expectDecoding(pages[1], 'Ann');
  } finally {
    await browser.close();
    await stopServer(server.proc);
  }
});

/**
 * Starts watching every remote <video> of `page`: the longest time, in ms, any of them went
 * without a new frame from now on is `window.longestStill()`.
 * @param {import('@playwright/test').Page} page
 */
function watchStills(page) {
  return page.evaluate(() => {
    /** @type {Map<string, {frames: number, at: number, longest: number}>} */
    const seen = new Map();
    setInterval(() => {
      const now = performance.now();
      for (const video of document.querySelectorAll('video[aria-label]')) {
        const name = video.getAttribute('aria-label') ?? '';
        const frames = /** @type {HTMLVideoElement} */ (video).getVideoPlaybackQuality().totalVideoFrames;
        const s = seen.get(name) ?? { frames, at: now, longest: 0 };
        if (frames !== s.frames) Object.assign(s, { frames, at: now });
        s.longest = Math.max(s.longest, now - s.at);
        seen.set(name, s);
      }
    }, 50);
    // @ts-ignore: read back by the test
    window.longestStill = () => Object.fromEntries([...seen].map(([name, s]) => [name, Math.round(s.longest)]));
  });
}

test('a server restart during an SFU group call of three (SIGTERM, then SIGKILL): the SFU worker keeps forwarding, every video keeps decoding', async ({ playwright }, testInfo) => {
  test.setTimeout(180_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const listen = `127.0.0.1:${RESTART_PORT + 2}`;
  // The SFU runs in a worker process of its own: it forwards while visavis restarts, and the
  // new process adopts it, so the calls' peer connections stay as they are.
  let server = await startServer(listen);
  const browser = await playwright.chromium.launch(launch);
  try {
    const room = roomName('sfu-restart');
    const names = ['Ann', 'Bob', 'Cy'];
    const pages = [];
    for (const name of names) pages.push(await joinRoom(browser, name, room, { url: server.url }));
    for (const page of pages) {
      await page.getByRole('button', { name: 'Join call' }).click();
      await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
    }
    const others = (/** @type {number} */ i) => names.filter((_, j) => j !== i);
    for (const [i, page] of pages.entries()) for (const name of others(i)) await expectDecoding(page, name, 10);

    for (const signal of /** @type {const} */ (['SIGTERM', 'SIGKILL'])) {
      for (const page of pages) await watchStills(page);
      await stopWith(server, signal);
      // While no visavis runs, every remote video goes on.
      await Promise.all(pages.flatMap((page, i) => others(i).map(async (name) => {
        expect(await framesDuring(page, name, 1000)).toBeGreaterThan(5);
      })));
      server = await startServer(listen, ['--data-dir', server.dataDir]);
      const took = await resumed(pages);
      for (const [i, page] of pages.entries()) {
        await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
        await expect(page.getByText('the call ended', { exact: false })).toHaveCount(0);
        for (const name of others(i)) await expectDecoding(page, name, 10);
        // The same connection to the same SFU: nobody was told to connect again.
        expect(await page.evaluate(() => window.visavis.sfuRestarts)).toBe(0);
      }
      /** @type {Record<string, number>[]} */
      const stills = await Promise.all(pages.map((page) => page.evaluate(() => /** @type {any} */ (window).longestStill())));
      const longest = Math.max(...stills.flatMap((s, i) => others(i).map((name) => s[name])));
      console.log(`SFU group call, server restart (${signal}): sessions resumed ${took} ms after the new server was up; ` +
        `longest any remote video stood still across the restart: ${longest} ms`);
      // A freeze is a second without a frame (the restart itself took several).
      expect(longest).toBeLessThan(1000);
    }
    // The new process runs the call: one leaving is seen by the others, who still see each other.
    await pages[2].getByRole('button', { name: 'Leave call' }).click();
    for (const page of pages.slice(0, 2)) await expect(page.getByLabel('Cy', { exact: true })).toHaveCount(0);
    await expectDecoding(pages[0], 'Bob');
    await expectDecoding(pages[1], 'Ann');
  } finally {
    await browser.close();
    await stopServer(server.proc);
  }
});
