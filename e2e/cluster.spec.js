// @ts-check
//! A cluster in the browser: two visavis nodes on one Redis behind haproxy, two Chromiums whose
//! connections reach different nodes (one frontend prefers each node, the other as its backup),
//! in a call; the room's node is killed mid-call and both resume on the survivor: the video
//! never stops, the call and the chat go on, hang-up works. And a group call through the SFU
//! with three Chromiums spread over both nodes: its media goes through the room's node's SFU,
//! also for the members connected to the other node, and moves to the survivor's SFU when the
//! room's node dies. Times are printed for docs/benchmarks.md.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect } from '@playwright/test';
import { expectDecoding, framesDuring, joinRoom, roomName, startCall, startServer, stopServer } from './support.js';

/** This spec's ports: the suite's port + 30 to + 36 (so checkouts side by side don't meet). */
const BASE = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 30;
const [FRONT_A, FRONT_B, NODE_1, NODE_2, REDIS] = [BASE, BASE + 1, BASE + 2, BASE + 3, BASE + 4];
/** Each node's SFU (UDP), known so that the test can tell which node carries the media. */
const [SFU_1, SFU_2] = [BASE + 5, BASE + 6];

/**
 * Chat texts in `page`'s chat log.
 * @param {import('@playwright/test').Page} page
 */
const chatTexts = (page) => page.getByRole('log').locator('.text').allTextContents();

/** A cluster needs Debian's redis-server and haproxy: missing, the test fails (it never skips). */
function expectClusterParts() {
  expect(installed('redis-server') && installed('/usr/sbin/haproxy'), 'redis-server and haproxy (scripts/test.sh installs them)').toBe(true);
}

/**
 * Whether `program` runs here (`-v` prints its version).
 * @param {string} program
 */
function installed(program) {
  try {
    execFileSync(program, ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until 127.0.0.1:`port` answers HTTP (or, with `tcp`, accepts a connection).
 * @param {number} port
 * @param {boolean} [tcp]
 */
async function listening(port, tcp = false) {
  const net = await import('node:net');
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok && (tcp || (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

/**
 * Redis and haproxy for a cluster of two nodes: frontend A prefers node 1, B node 2; each falls
 * back to the other (haproxy's backup).
 */
function startInfra() {
  const dir = mkdtempSync(join(tmpdir(), 'visavis-e2e-cluster-'));
  const redis = spawn('redis-server', ['--port', String(REDIS), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const config = [
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout tunnel 1h',
    '  retries 3',
    '  option redispatch 1',
    'frontend a',
    `  bind 127.0.0.1:${FRONT_A}`,
    '  default_backend prefer1',
    'frontend b',
    `  bind 127.0.0.1:${FRONT_B}`,
    '  default_backend prefer2',
    'backend prefer1',
    `  server node1 127.0.0.1:${NODE_1} check inter 300 fall 2 rise 1`,
    `  server node2 127.0.0.1:${NODE_2} check inter 300 fall 2 rise 1 backup`,
    'backend prefer2',
    `  server node2 127.0.0.1:${NODE_2} check inter 300 fall 2 rise 1`,
    `  server node1 127.0.0.1:${NODE_1} check inter 300 fall 2 rise 1 backup`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'haproxy.cfg'), config);
  const haproxy = spawn('/usr/sbin/haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: 'ignore' });
  return { dir, redis, haproxy };
}

test('a cluster of two nodes: a call across nodes survives the death of the room\'s node, video never stops', async ({ playwright }, testInfo) => {
  expectClusterParts();
  test.setTimeout(120_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const { dir, redis, haproxy } = startInfra();
  const cluster = ['--redis', `redis://127.0.0.1:${REDIS}/`, '--lease-ttl-ms', '2000', '--lease-renew-ms', '500', '--max-seats-per-ip', '100'];
  /** @type {{ proc: import('node:child_process').ChildProcess } | undefined} */
  let node1;
  /** @type {{ proc: import('node:child_process').ChildProcess } | undefined} */
  let node2;
  const browser = await playwright.chromium.launch(launch);
  try {
    await listening(REDIS, true);
    node1 = await startServer(`127.0.0.1:${NODE_1}`, cluster);
    node2 = await startServer(`127.0.0.1:${NODE_2}`, cluster);
    await listening(FRONT_A);
    await listening(FRONT_B);
    const room = roomName('cluster');
    // Alice first, on node 1: the room lives there; Bob's connection reaches node 2, which
    // forwards it.
    const alice = await joinRoom(browser, 'Alice', room, { url: `http://127.0.0.1:${FRONT_A}/` });
    const bob = await joinRoom(browser, 'Bob', room, { url: `http://127.0.0.1:${FRONT_B}/` });
    await startCall(alice, bob, 'Alice', 'Bob');
    await expectDecoding(alice, 'Bob');
    await expectDecoding(bob, 'Alice');
    await bob.getByLabel('Message').fill('before the failover');
    await bob.getByRole('button', { name: 'Send' }).click();
    await expect.poll(() => chatTexts(alice)).toEqual(['before the failover']);

    // The room's node dies. Media is peer to peer: the video goes on meanwhile.
    await new Promise((r) => setTimeout(r, 500));
    const killed = Date.now();
    const exited = new Promise((r) => node1?.proc.once('exit', r));
    node1.proc.kill('SIGKILL');
    await exited;
    node1 = undefined;
    expect(await framesDuring(bob, 'Alice', 1000)).toBeGreaterThan(5);
    for (const page of [alice, bob]) {
      await expect(page.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
    }
    console.log(`cluster: the room's node killed, both sessions resumed on the other node after ${Date.now() - killed} ms`);
    for (const page of [alice, bob]) {
      await expect(page.getByText('the call ended', { exact: false })).toHaveCount(0);
      await expect(page.getByRole('button', { name: 'Hang up' })).toBeVisible();
    }
    expect(await framesDuring(bob, 'Alice', 2000)).toBeGreaterThan(10);
    expect(await framesDuring(alice, 'Bob', 2000)).toBeGreaterThan(10);
    await expect(bob.getByText('Alice (reconnecting…)')).toHaveCount(0);

    // The chat is the room's, each message once; the call is the surviving node's now.
    await alice.getByLabel('Message').fill('after the failover');
    await alice.getByRole('button', { name: 'Send' }).click();
    for (const page of [alice, bob]) {
      await expect.poll(() => chatTexts(page)).toEqual(['before the failover', 'after the failover']);
    }
    await alice.getByRole('button', { name: 'Hang up' }).click();
    await expect(bob.getByText('Alice hung up.')).toBeVisible();
  } finally {
    await browser.close();
    if (node1) await stopServer(node1.proc);
    if (node2) await stopServer(node2.proc);
    haproxy.kill('SIGKILL');
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The UDP port of the far end of `page`'s group call connection (the SFU it sends to), once
 * ICE has picked a pair.
 * @param {import('@playwright/test').Page} page
 */
function sfuPort(page) {
  return page.evaluate(async () => {
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    if (!pc) return 0;
    const stats = await pc.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'transport' || !s.selectedCandidatePairId) continue;
      const pair = stats.get(s.selectedCandidatePairId);
      return pair ? stats.get(pair.remoteCandidateId)?.port ?? 0 : 0;
    }
    return 0;
  });
}

test('an SFU group call across two nodes: everyone\'s media goes through the room\'s node, and moves to the survivor when it dies', async ({ playwright }, testInfo) => {
  expectClusterParts();
  test.setTimeout(180_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);
  const { dir, redis, haproxy } = startInfra();
  const cluster = ['--redis', `redis://127.0.0.1:${REDIS}/`, '--lease-ttl-ms', '2000', '--lease-renew-ms', '500', '--max-seats-per-ip', '100'];
  /** @type {{ proc: import('node:child_process').ChildProcess } | undefined} */
  let node1;
  /** @type {{ proc: import('node:child_process').ChildProcess } | undefined} */
  let node2;
  const browser = await playwright.chromium.launch(launch);
  try {
    await listening(REDIS, true);
    node1 = await startServer(`127.0.0.1:${NODE_1}`, [...cluster, '--sfu-listen', `127.0.0.1:${SFU_1}`]);
    node2 = await startServer(`127.0.0.1:${NODE_2}`, [...cluster, '--sfu-listen', `127.0.0.1:${SFU_2}`]);
    await listening(FRONT_A);
    await listening(FRONT_B);
    const room = roomName('cluster-sfu');
    // Ann first, on node 1: the room lives there. Bob and Cy reach node 2, which forwards them.
    const names = ['Ann', 'Bob', 'Cy'];
    const fronts = [FRONT_A, FRONT_B, FRONT_B];
    const pages = [];
    for (const [i, name] of names.entries()) pages.push(await joinRoom(browser, name, room, { url: `http://127.0.0.1:${fronts[i]}/` }));
    for (const page of pages) {
      await page.getByRole('button', { name: 'Join call' }).click();
      await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
    }
    const others = (/** @type {number} */ i) => names.filter((_, j) => j !== i);
    for (const [i, page] of pages.entries()) for (const name of others(i)) await expectDecoding(page, name, 10);
    // One SFU carries the call, the room's node's: Bob and Cy send theirs to node 1's too.
    for (const page of pages) expect(await sfuPort(page)).toBe(SFU_1);

    // The room's node dies: the room moves to node 2, whose SFU takes the call (`sfu_restart`).
    await new Promise((r) => setTimeout(r, 500));
    const killed = Date.now();
    const exited = new Promise((r) => node1?.proc.once('exit', r));
    node1.proc.kill('SIGKILL');
    await exited;
    node1 = undefined;
    const gaps = await Promise.all(pages.flatMap((page, i) => others(i).map(async (name) => {
      await expect.poll(() => framesDuring(page, name, 300), { timeout: 40_000, intervals: [0] }).toBeGreaterThan(2);
      return Date.now() - killed;
    })));
    console.log(`cluster, SFU group call of three: the room's node killed, every remote video decoding again through the other node's SFU after ${Math.max(...gaps)} ms (the first after ${Math.min(...gaps)} ms)`);
    for (const [i, page] of pages.entries()) {
      await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
      for (const name of others(i)) await expectDecoding(page, name, 10);
      await expect.poll(() => sfuPort(page)).toBe(SFU_2);
    }
    const restarts = await Promise.all(pages.map((page) => page.evaluate(() => window.visavis.sfuRestarts)));
    console.log(`cluster, SFU group call of three: SFU connections made anew per page: ${restarts.join(', ')}`);
    for (const n of restarts) expect(n).toBeGreaterThan(0);
    // The call is node 2's now: one leaving is seen by the others.
    await pages[2].getByRole('button', { name: 'Leave call' }).click();
    for (const page of pages.slice(0, 2)) await expect(page.getByLabel('Cy', { exact: true })).toHaveCount(0);
    await expectDecoding(pages[0], 'Bob');
  } finally {
    await browser.close();
    if (node1) await stopServer(node1.proc);
    if (node2) await stopServer(node2.proc);
    haproxy.kill('SIGKILL');
    redis.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
