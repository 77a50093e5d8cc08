// @ts-check
//! Instant answer: a 1:1 call's peer connection is set up while it rings (`--preconnect`), so
//! ICE and DTLS are done before anyone answers; no media flows and the callee's camera stays
//! closed until Accept; every way a ringing call ends closes what was prepared.
//!
//! Each page is instrumented before it loads: the peer connections it makes, the remote ICE
//! candidates it is given, and how often it asked for a camera or microphone.
import { test, expect } from '@playwright/test';
import { closeContexts, expectDecoding, framesDuring, roomName, startServer, stopServer } from './support.js';

test.afterEach(closeContexts);

const BASE = Number(process.env.VISAVIS_E2E_PORT ?? 18080);

/**
 * A visavis of this file's own with its TURN server (so `--preconnect relay`, the default,
 * applies), ringing for `ringSecs`: long enough to look at a call while it rings on a busy
 * machine, or short for the no-answer case.
 * @param {number} offset port offset from the test port
 * @param {number} ringSecs
 * @param {string[]} [args]
 */
function relayServer(offset, ringSecs, args = []) {
  const port = BASE + offset;
  return startServer(`127.0.0.1:${port}`, ['--turn-listen', `127.0.0.1:${port - 4602}`, '--ring-timeout', String(ringSecs), ...args]);
}

/** @type {{url: string, proc: import('node:child_process').ChildProcess}} */
let server;
test.beforeAll(async () => {
  server = await relayServer(32, 30);
});
test.afterAll(async () => {
  await stopServer(server.proc);
});

/** Runs in the page before its scripts: records peer connections, remote candidates, getUserMedia. */
function instrument() {
  /** @type {RTCPeerConnection[]} */
  const made = [];
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    /** @param {RTCConfiguration} [config] */
    constructor(config) {
      super(config);
      made.push(this);
    }
  };
  /** @type {{at: number, candidate: string}[]} */
  const remote = [];
  const addIceCandidate = Native.prototype.addIceCandidate;
  /** @this {RTCPeerConnection} @param {RTCIceCandidateInit} [candidate] */
  Native.prototype.addIceCandidate = function (candidate) {
    if (candidate?.candidate) remote.push({ at: Date.now(), candidate: candidate.candidate });
    return addIceCandidate.call(this, candidate);
  };
  let cameraRequests = 0;
  const devices = navigator.mediaDevices;
  const getUserMedia = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (constraints) => {
    cameraRequests += 1;
    return getUserMedia(constraints);
  };
  // @ts-ignore test-only global
  window.preconnectTest = { made, remote, get cameraRequests() { return cameraRequests; } };
}

/**
 * Opens visavis for `name` in a fresh context, instrumented, and joins `room`. `lag.ms`, while
 * set, holds every message from the server back that long (in order), as a slow network would.
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 * @param {{url?: string, lag?: {ms: number}}} [options]
 */
async function person(browser, name, room, options = {}) {
  const context = await browser.newContext({ locale: 'en-US' });
  const page = await context.newPage();
  await page.addInitScript(instrument);
  const lag = options.lag;
  if (lag) {
    await page.routeWebSocket(/\/ws$/, (ws) => {
      const server = ws.connectToServer();
      server.onMessage((frame) => {
        if (lag.ms) setTimeout(() => ws.send(frame), lag.ms);
        else ws.send(frame);
      });
    });
  }
  await page.goto(options.url ?? server.url);
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Room').fill(room);
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByText(`You are ${name}`)).toBeVisible();
  return page;
}

/**
 * Each peer connection the page made: its states, the packets it sent and received, and the
 * types of its selected candidate pair.
 * @param {import('@playwright/test').Page} page
 */
function connections(page) {
  return page.evaluate(async () => {
    // @ts-ignore test-only global
    const made = /** @type {RTCPeerConnection[]} */ (window.preconnectTest.made);
    return Promise.all(made.map(async (pc) => {
      let sent = 0;
      let received = 0;
      /** @type {{local: string, remote: string} | null} */
      let pair = null;
      if (pc.signalingState !== 'closed') {
        const stats = await pc.getStats();
        stats.forEach((s) => {
          if (s.type === 'outbound-rtp') sent += s.packetsSent ?? 0;
          if (s.type === 'inbound-rtp') received += s.packetsReceived ?? 0;
          if (s.type === 'transport' && s.selectedCandidatePairId) {
            const selected = stats.get(s.selectedCandidatePairId);
            pair = { local: stats.get(selected.localCandidateId)?.candidateType, remote: stats.get(selected.remoteCandidateId)?.candidateType };
          }
        });
      }
      return { connection: pc.connectionState, signaling: pc.signalingState, sent, received, pair };
    }));
  });
}

/**
 * The caller's side of a ringing call: which tracks sit on its first connection's senders, with
 * which encodings switched on, and the bandwidth estimate its connection starts from.
 * @param {import('@playwright/test').Page} page
 */
function senders(page) {
  return page.evaluate(async () => {
    // @ts-ignore test-only global
    const [pc] = /** @type {RTCPeerConnection[]} */ (window.preconnectTest.made);
    let estimate = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated) estimate = s.availableOutgoingBitrate ?? 0;
    });
    const tracks = pc.getSenders().map((sender) => ({
      kind: sender.track?.kind ?? null,
      active: sender.getParameters().encodings.some((e) => e.active !== false),
    }));
    return { tracks: tracks.sort((a, b) => String(a.kind).localeCompare(String(b.kind))), estimate };
  });
}

/**
 * The types (`host`, `srflx`, `relay`…) of the remote candidates the page was given, and
 * whether any named a related address (the address behind a relay).
 * @param {import('@playwright/test').Page} page
 */
async function remoteCandidates(page) {
  // @ts-ignore test-only global
  const remote = /** @type {{at: number, candidate: string}[]} */ (await page.evaluate(() => window.preconnectTest.remote));
  return remote.map((r) => ({ type: / typ (\w+)/.exec(r.candidate)?.[1] ?? '?', raddr: / raddr (\S+)/.exec(r.candidate)?.[1] ?? null }));
}

/** @param {import('@playwright/test').Page} page */
const cameraRequests = (page) => page.evaluate(() => /** @type {number} */ (
  // @ts-ignore test-only global
  window.preconnectTest.cameraRequests));

/**
 * Alice calls Bob; returns once Bob's page shows the incoming call.
 * @param {import('@playwright/test').Page} alice
 * @param {import('@playwright/test').Page} bob
 */
async function ring(alice, bob) {
  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(alice.getByRole('dialog', { name: 'Calling Bob…' })).toBeVisible();
  const incoming = bob.getByRole('dialog', { name: 'Alice is calling you' });
  await expect(incoming).toBeVisible();
  return incoming;
}

/**
 * Every peer connection the page made is closed (or it made none).
 * @param {import('@playwright/test').Page} page
 */
async function expectAllClosed(page) {
  await expect.poll(async () => (await connections(page)).every((c) => c.signaling === 'closed')).toBe(true);
}

test('relay (the default): connected through the relay while it rings, no media and no camera before Accept; then media at once on the same connection, which moves to a direct path', async ({ browser }) => {
  test.setTimeout(120_000);
  const room = roomName('preconnect');
  const alice = await person(browser, 'Alice', room);
  const bob = await person(browser, 'Bob', room);
  const incoming = await ring(alice, bob);

  // ICE and DTLS complete while it still rings, through the relay on both sides.
  for (const page of [alice, bob]) {
    await expect.poll(async () => (await connections(page)).map((c) => c.connection)).toEqual(['connected']);
    const [pc] = await connections(page);
    expect(pc.pair).toEqual({ local: 'relay', remote: 'relay' });
  }
  // Alice learnt no address of Bob's: only relay candidates, with no address behind them.
  const early = await remoteCandidates(alice);
  expect(early.length).toBeGreaterThan(0);
  for (const c of early) {
    expect(c.type).toBe('relay');
    expect(c.raddr === null || c.raddr === '0.0.0.0').toBe(true);
  }
  // Nothing is sent either way, and Bob's camera and microphone were never asked for. Alice's
  // are on her connection already (her camera was open to call), switched off until Accept; her
  // connection's estimate starts at visavis's start bitrate, not Chromium's 300 kbit/s.
  await alice.waitForTimeout(1000);
  for (const page of [alice, bob]) {
    const [pc] = await connections(page);
    expect({ sent: pc.sent, received: pc.received }).toEqual({ sent: 0, received: 0 });
  }
  expect(await cameraRequests(bob)).toBe(0);
  const primed = await senders(alice);
  expect(primed.tracks).toEqual([{ kind: 'audio', active: false }, { kind: 'video', active: false }]);
  expect(primed.estimate).toBeGreaterThanOrEqual(900_000);
  await expect(incoming).toBeVisible();

  // Accept: both see each other, over the connection made while it rang.
  await incoming.getByRole('button', { name: 'Accept' }).click();
  await expect(alice.getByRole('dialog', { name: 'Call with Bob' })).toBeVisible();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeVisible();
  await expectDecoding(alice, 'Bob');
  await expectDecoding(bob, 'Alice');
  expect(await cameraRequests(bob)).toBe(1);
  for (const page of [alice, bob]) expect((await connections(page)).length).toBe(1);
  expect((await senders(alice)).tracks).toEqual([{ kind: 'audio', active: true }, { kind: 'video', active: true }]);

  // After Accept ICE may use every candidate, and finds the direct path on this machine; the
  // video goes on meanwhile.
  for (const page of [alice, bob]) {
    await expect.poll(async () => (await connections(page))[0].pair?.local, { timeout: 15_000 }).toBe('host');
  }
  expect((await remoteCandidates(alice)).some((c) => c.type === 'host')).toBe(true);
  expect(await framesDuring(alice, 'Bob', 1000)).toBeGreaterThan(10);
  expect(await framesDuring(bob, 'Alice', 1000)).toBeGreaterThan(10);
  await expect(alice.getByRole('status')).toHaveText('Connected');

  await bob.getByRole('button', { name: 'Hang up' }).click();
  await expect(alice.getByText('Bob hung up.')).toBeVisible();
  await expectAllClosed(alice);
  await expectAllClosed(bob);
});

test('decline, cancel and no answer close the prepared connection on both sides, and the callee\'s camera never opens', async ({ browser }) => {
  test.setTimeout(120_000);
  let room = roomName('unanswered');
  let alice = await person(browser, 'Alice', room);
  let bob = await person(browser, 'Bob', room);

  // Declined.
  let incoming = await ring(alice, bob);
  await expect.poll(async () => (await connections(bob)).map((c) => c.connection)).toEqual(['connected']);
  await incoming.getByRole('button', { name: 'Decline' }).click();
  await expect(alice.getByText('Bob declined the call.')).toBeVisible();
  await expectAllClosed(alice);
  await expectAllClosed(bob);
  expect(await cameraRequests(bob)).toBe(0);

  // Cancelled (Bob calls, so that the redial delay after Alice's decline does not matter).
  await bob.getByRole('button', { name: 'Call Alice' }).click();
  incoming = alice.getByRole('dialog', { name: 'Bob is calling you' });
  await expect(incoming).toBeVisible();
  await expect.poll(async () => (await connections(alice)).filter((c) => c.signaling !== 'closed').length).toBe(1);
  await bob.getByRole('dialog', { name: 'Calling Alice…' }).getByRole('button', { name: 'Cancel' }).click();
  await expect(incoming).toBeHidden();
  await expectAllClosed(alice);
  await expectAllClosed(bob);
  expect(await cameraRequests(alice)).toBe(1); // her own, for the call Bob declined

  // Not answered: the ring timeout (4 s on this server) ends it for both.
  const quick = await relayServer(33, 4);
  try {
    await closeContexts({ browser });
    room = roomName('unanswered');
    alice = await person(browser, 'Alice', room, { url: quick.url });
    bob = await person(browser, 'Bob', room, { url: quick.url });
    await ring(alice, bob);
    await expect(bob.getByText('You missed a call from Alice.')).toBeVisible({ timeout: 15_000 });
    await expectAllClosed(alice);
    await expectAllClosed(bob);
    expect((await connections(bob)).length).toBe(1); // it was prepared, then closed
    expect(await cameraRequests(bob)).toBe(0);
  } finally {
    await stopServer(quick.proc);
  }
});

test('glare: two people calling each other at once get one call, connected once, each camera opened once', async ({ browser }) => {
  const room = roomName('glare');
  // Each hears from the server half a second late, so both invites are on their way before
  // either rings.
  const lag = { ms: 0 };
  const alice = await person(browser, 'Alice', room, { lag });
  const bob = await person(browser, 'Bob', room, { lag });
  const callBob = alice.getByRole('button', { name: 'Call Bob' });
  const callAlice = bob.getByRole('button', { name: 'Call Alice' });
  await expect(callAlice).toBeEnabled();
  lag.ms = 500;
  await Promise.all([callBob.click(), callAlice.click()]);
  await expect(alice.getByRole('dialog', { name: 'Call with Bob' })).toBeVisible();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeVisible();
  await expectDecoding(alice, 'Bob');
  await expectDecoding(bob, 'Alice');
  lag.ms = 0;
  for (const page of [alice, bob]) {
    const open = (await connections(page)).filter((c) => c.signaling !== 'closed');
    expect(open.length).toBe(1);
    expect(await cameraRequests(page)).toBe(1);
  }
  await expect(alice.getByRole('dialog', { name: /is calling you/ })).toBeHidden();
  await expect(bob.getByRole('dialog', { name: /is calling you/ })).toBeHidden();
});

test('direct: every candidate while it rings; off (and relay without TURN): no peer connection until Accept, and calls still work', async ({ browser }) => {
  test.setTimeout(120_000);
  const direct = await startServer(`127.0.0.1:${BASE + 30}`, ['--preconnect', 'direct']);
  const off = await startServer(`127.0.0.1:${BASE + 31}`); // relay asked, but --no-turn: off
  try {
    let room = roomName('direct');
    let alice = await person(browser, 'Alice', room, { url: direct.url });
    let bob = await person(browser, 'Bob', room, { url: direct.url });
    let incoming = await ring(alice, bob);
    await expect.poll(async () => (await connections(alice)).map((c) => c.connection)).toEqual(['connected']);
    expect((await connections(alice))[0].pair?.local).toBe('host');
    expect((await remoteCandidates(alice)).some((c) => c.type === 'host')).toBe(true);
    expect((await connections(alice))[0].sent).toBe(0);
    expect(await cameraRequests(bob)).toBe(0);
    await incoming.getByRole('button', { name: 'Accept' }).click();
    await expectDecoding(alice, 'Bob');
    await expectDecoding(bob, 'Alice');
    await closeContexts({ browser });

    room = roomName('off');
    alice = await person(browser, 'Alice', room, { url: off.url });
    bob = await person(browser, 'Bob', room, { url: off.url });
    incoming = await ring(alice, bob);
    await alice.waitForTimeout(1000);
    expect(await connections(alice)).toEqual([]);
    expect(await connections(bob)).toEqual([]);
    await incoming.getByRole('button', { name: 'Accept' }).click();
    await expectDecoding(alice, 'Bob');
    await expectDecoding(bob, 'Alice');
  } finally {
    await stopServer(direct.proc);
    await stopServer(off.proc);
  }
});
