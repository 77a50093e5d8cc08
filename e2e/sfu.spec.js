// @ts-check
//! Group calls through the server's SFU (the default `--group-media sfu`), as the people in
//! them see it: every browser holds exactly one peer connection, to the server, whatever the
//! number of people; everyone sees and hears everyone; leaving and joining renegotiate; a
//! shared screen is one more forwarded track.
import { test, expect } from '@playwright/test';
import { closeContexts, countPeerConnections, expectDecoding, joinRoom, openPcs, roomName, startServer, stopServer } from './support.js';

const LISTEN = `127.0.0.1:${Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 20}`;

/** @type {{proc: import('node:child_process').ChildProcess, url: string} | null} */
let server = null;

test.beforeAll(async () => {
  server = await startServer(LISTEN, ['--group-limit', '4', '--max-seats-per-ip', '100']);
});
test.afterAll(async () => {
  if (server) await stopServer(server.proc);
});
test.afterEach(closeContexts);

/**
 * Audio packets received from `name`, on the one connection, by the SFU's naming of mids.
 * @param {import('@playwright/test').Page} page
 */
function audioPackets(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its peer connections
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    if (!pc) return 0;
    let least = Infinity;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') least = Math.min(least, s.packetsReceived ?? 0);
    });
    return least === Infinity ? 0 : least;
  });
}

/**
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 */
async function person(browser, name, room) {
  return joinRoom(browser, name, room, { url: `${server?.url}/`, init: countPeerConnections });
}

/** @param {import('@playwright/test').Page} page */
async function joinCall(page) {
  await page.getByRole('button', { name: 'Join call' }).click();
  await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
}

/**
 * `page` sees each of `others` (decoded frames), hears every one of them (audio packets on
 * each of its audio tracks), through one peer connection.
 * @param {import('@playwright/test').Page} page
 * @param {string[]} others
 */
async function seesAndHears(page, others) {
  for (const name of others) await expectDecoding(page, name, 10);
  await expect.poll(() => audioPackets(page)).toBeGreaterThan(10);
  expect(await openPcs(page)).toBe(1);
}

test('a group call through the SFU: one peer connection each, everyone decodes everyone, leave and join renegotiate, the limit holds', async ({ browser }) => {
  test.setTimeout(150_000);
  const room = roomName('sfu');
  const ann = await person(browser, 'Ann', room);
  const bob = await person(browser, 'Bob', room);
  const cy = await person(browser, 'Cy', room);

  for (const page of [ann, bob, cy]) await joinCall(page);
  await expect(ann.getByText('Call in progress: Ann, Bob, Cy')).toBeVisible();
  await seesAndHears(ann, ['Bob', 'Cy']);
  await seesAndHears(bob, ['Ann', 'Cy']);
  await seesAndHears(cy, ['Ann', 'Bob']);

  // Cy leaves: her tile goes at the others, who keep seeing each other.
  await cy.getByRole('button', { name: 'Leave call' }).click();
  await expect(cy.getByRole('dialog', { name: 'Group call' })).toBeHidden();
  expect(await openPcs(cy)).toBe(0);
  await expect(ann.getByLabel('Cy', { exact: true })).toHaveCount(0);
  await expect(bob.getByLabel('Cy', { exact: true })).toHaveCount(0);
  await expectDecoding(ann, 'Bob');
  await expectDecoding(bob, 'Ann');

  // Di joins late and gets everyone; everyone gets Di; still one connection each.
  const di = await person(browser, 'Di', room);
  await joinCall(di);
  await seesAndHears(di, ['Ann', 'Bob']);
  await seesAndHears(ann, ['Bob', 'Di']);
  await seesAndHears(bob, ['Ann', 'Di']);

  // The server's group limit is 4: Cy comes back, Eve is one too many.
  await joinCall(cy);
  await seesAndHears(cy, ['Ann', 'Bob', 'Di']);
  const eve = await person(browser, 'Eve', room);
  await eve.getByRole('button', { name: 'Join call' }).click();
  await expect(eve.getByText('The group call is full.', { exact: false })).toBeVisible();
  expect(await openPcs(eve)).toBe(0);
});

test('a shared screen goes through the SFU as one more track, seen by all and stopped cleanly', async ({ browser }) => {
  test.setTimeout(90_000);
  const room = roomName('sfu-screen');
  const ann = await person(browser, 'Ann', room);
  const bob = await person(browser, 'Bob', room);
  const cy = await person(browser, 'Cy', room);
  for (const page of [ann, bob, cy]) await joinCall(page);
  await expectDecoding(bob, 'Ann');
  await expect(bob.getByLabel("Ann's screen", { exact: true })).toHaveCount(0);

  await ann.getByRole('button', { name: 'Share screen' }).click();
  await expect(ann.getByRole('button', { name: 'Stop sharing' })).toBeVisible();
  for (const page of [bob, cy]) {
    await expectDecoding(page, "Ann's screen", 2); // Chromium's fake screen sends a few frames a second
    await expectDecoding(page, 'Ann'); // the camera keeps going
    expect(await openPcs(page)).toBe(1);
  }

  await ann.getByRole('button', { name: 'Stop sharing' }).click();
  for (const page of [bob, cy]) {
    await expect(page.getByLabel("Ann's screen", { exact: true })).toHaveCount(0);
    await expectDecoding(page, 'Ann');
  }
});

/**
 * What `page` receives of the video in the tile labelled `label` (by its track's inbound RTP
 * statistics): frames so far, and their height now.
 * @param {import('@playwright/test').Page} page
 * @param {string} label
 */
function received(page, label) {
  return page.getByLabel(label, { exact: true }).evaluate(async (v) => {
    const stream = /** @type {MediaStream | null} */ (/** @type {HTMLVideoElement} */ (v).srcObject);
    const track = stream?.getVideoTracks()[0];
    // @ts-ignore: the app exposes its peer connection
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    let frames = 0;
    let height = 0;
    if (track && pc) {
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === track.id) {
          frames = s.framesReceived ?? 0;
          height = s.frameHeight ?? 0;
        }
      });
    }
    return { frames, height };
  });
}

/**
 * The simulcast layers of the page's camera (outbound RTP streams with a rid), by rid, and
 * how many of them have sent frames.
 * @param {import('@playwright/test').Page} page
 */
function sentLayers(page) {
  return page.evaluate(async () => {
    // @ts-ignore: the app exposes its peer connection
    const pc = /** @type {RTCPeerConnection | null} */ (window.visavis.pc);
    /** @type {string[]} */
    const rids = [];
    let sending = 0;
    (await pc?.getStats())?.forEach((s) => {
      if (s.type !== 'outbound-rtp' || s.kind !== 'video' || !s.rid) return;
      rids.push(s.rid);
      if ((s.framesEncoded ?? 0) > 0) sending += 1;
    });
    return `${rids.sort().join(',')} (${sending} sending)`;
  });
}

/**
 * `name`'s tile at `page` if it is highlighted as the one speaking: the tile, not its video,
 * which a busy machine's bandwidth estimate may have paused for a moment.
 * @param {import('@playwright/test').Page} page
 * @param {string} name
 */
function highlights(page, name) {
  return page.locator('.tile.speaking').filter({ has: page.getByLabel(name, { exact: true }) });
}

test('through the SFU: simulcast from each camera, the layer a tile needs, nothing to a hidden tile, the active speaker from the audio levels, one leaving seen by all', async ({ browser }) => {
  test.setTimeout(150_000);
  const room = roomName('sfu-layers');
  const ann = await person(browser, 'Ann', room);
  const bob = await person(browser, 'Bob', room);
  const cy = await person(browser, 'Cy', room);
  for (const page of [ann, bob, cy]) await joinCall(page);
  await seesAndHears(bob, ['Ann', 'Cy']);
  await seesAndHears(cy, ['Ann', 'Bob']);
  await seesAndHears(ann, ['Bob', 'Cy']);

  // Every camera goes up in three simulcast layers on the one connection (the top one only
  // while the browser's bandwidth estimate allows: three Chromiums on a busy test machine
  // often do not, so two must be sending).
  for (const page of [ann, bob, cy]) await expect.poll(() => sentLayers(page), { timeout: 20_000 }).toMatch(/^f,h,q \([23] sending\)$/);

  // At Bob, Ann pinned large and Cy in a small tile: Ann comes in a higher resolution.
  await bob.getByRole('button', { name: 'Pin Ann' }).click();
  await bob.getByLabel('Cy', { exact: true }).evaluate((v) => {
    const tile = /** @type {HTMLElement} */ (v.closest('.tile'));
    tile.style.width = '160px';
    tile.style.justifySelf = 'start';
  });
  await expect.poll(async () => {
    const [large, small] = [await received(bob, 'Ann'), await received(bob, 'Cy')];
    return small.height > 0 && large.height > small.height;
  }, { timeout: 45_000 }).toBe(true);
  await expectDecoding(bob, 'Cy', 5);

  // At Cy, Bob's tile goes off screen: its video stops coming, and comes back when shown.
  await cy.getByLabel('Bob', { exact: true }).evaluate((v) => { /** @type {HTMLElement} */ (v.closest('.tile')).style.display = 'none'; });
  await cy.waitForTimeout(1500);
  const before = (await received(cy, 'Bob')).frames;
  await cy.waitForTimeout(2000);
  expect((await received(cy, 'Bob')).frames - before).toBeLessThanOrEqual(1);
  await expect.poll(() => audioPackets(cy)).toBeGreaterThan(10); // Bob is still heard
  await cy.getByLabel('Bob', { exact: true }).evaluate((v) => { /** @type {HTMLElement} */ (v.closest('.tile')).style.display = ''; });
  await expect.poll(async () => (await received(cy, 'Bob')).frames, { timeout: 15_000 }).toBeGreaterThan(before + 10);

  // Only Ann's microphone on (Chromium's fake one beeps): she is the speaker at the others.
  for (const page of [bob, cy]) await page.getByRole('button', { name: 'Mute', exact: true }).click();
  await expect(highlights(bob, 'Ann')).toBeVisible({ timeout: 15_000 });
  await expect(highlights(cy, 'Ann')).toBeVisible();
  // Ann mutes, Cy speaks: the highlight moves to Cy.
  await ann.getByRole('button', { name: 'Mute', exact: true }).click();
  await cy.getByRole('button', { name: 'Unmute', exact: true }).click();
  await expect(highlights(bob, 'Cy')).toBeVisible({ timeout: 15_000 });
  await expect(highlights(ann, 'Cy')).toBeVisible();
  await expect(highlights(bob, 'Ann')).toHaveCount(0);

  // Cy leaves: everyone sees it, still on one connection each.
  await cy.getByRole('button', { name: 'Leave call' }).click();
  for (const page of [ann, bob]) {
    await expect(page.getByLabel('Cy', { exact: true })).toHaveCount(0);
    expect(await openPcs(page)).toBe(1);
  }
  await expectDecoding(ann, 'Bob');
});
