// @ts-check
//! Group calls (full mesh), screen sharing and room chat, as the people in them see it.
import { test, expect } from '@playwright/test';
import { closeContexts, expectDecoding, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

/**
 * Audio packets this page has received from `name` so far.
 * @param {import('@playwright/test').Page} page
 * @param {string} name
 */
function audioFrom(page, name) {
  return page.evaluate(async (name) => {
    // @ts-ignore: the app exposes its peer connections by the other person's name
    const pc = /** @type {RTCPeerConnection | undefined} */ (window.visavis.pcs[name]);
    if (!pc) return 0;
    let packets = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') packets = s.packetsReceived ?? 0;
    });
    return packets;
  }, name);
}

/**
 * `page` sees and hears each of `others`.
 * @param {import('@playwright/test').Page} page
 * @param {string[]} others
 */
async function seesAndHears(page, others) {
  for (const name of others) {
    await expectDecoding(page, name, 10);
    await expect.poll(() => audioFrom(page, name)).toBeGreaterThan(10);
  }
}

/** @param {import('@playwright/test').Page} page */
async function joinCall(page) {
  await page.getByRole('button', { name: 'Join call' }).click();
  await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
}

test('three people in a group call; one leaves, the others carry on; latecomers connect to all; the mesh limit holds', async ({ browser }) => {
  test.setTimeout(120_000);
  const room = roomName('group');
  const ann = await joinRoom(browser, 'Ann', room);
  const bob = await joinRoom(browser, 'Bob', room);
  const cy = await joinRoom(browser, 'Cy', room);

  await joinCall(ann);
  await expect(bob.getByText('Call in progress: Ann')).toBeVisible();
  await joinCall(bob);
  await joinCall(cy);
  await expect(ann.getByText('Call in progress: Ann, Bob, Cy')).toBeVisible();
  await seesAndHears(ann, ['Bob', 'Cy']);
  await seesAndHears(bob, ['Ann', 'Cy']);
  await seesAndHears(cy, ['Ann', 'Bob']);
  await ann.screenshot({ path: 'docs/screenshots/group-call.png' });

  // Cy leaves: her tile goes, Ann and Bob keep seeing each other.
  await cy.getByRole('button', { name: 'Leave call' }).click();
  await expect(cy.getByRole('dialog', { name: 'Group call' })).toBeHidden();
  await expect(ann.getByLabel('Cy', { exact: true })).toHaveCount(0);
  await expect(bob.getByLabel('Cy', { exact: true })).toHaveCount(0);
  await expectDecoding(ann, 'Bob');
  await expectDecoding(bob, 'Ann');

  // Di joins the room and the call late, and connects to everyone in it.
  const di = await joinRoom(browser, 'Di', room);
  await expect(di.getByText('Call in progress: Ann, Bob')).toBeVisible();
  await joinCall(di);
  await seesAndHears(di, ['Ann', 'Bob']);
  await seesAndHears(ann, ['Di']);
  await seesAndHears(bob, ['Di']);

  // The test server's mesh limit is 4: Cy comes back, Eve is one too many.
  await joinCall(cy);
  const eve = await joinRoom(browser, 'Eve', room);
  await eve.getByRole('button', { name: 'Join call' }).click();
  await expect(eve.getByText('The group call is full.', { exact: false })).toBeVisible();
  await expect(eve.getByRole('dialog', { name: 'Group call' })).toHaveCount(0);
  await expectDecoding(cy, 'Di');
});

test('a shared screen is seen by everyone in the call, labelled, and stops cleanly', async ({ browser }) => {
  test.setTimeout(90_000);
  const room = roomName('screen');
  const ann = await joinRoom(browser, 'Ann', room);
  const bob = await joinRoom(browser, 'Bob', room);
  const cy = await joinRoom(browser, 'Cy', room);
  for (const page of [ann, bob, cy]) await joinCall(page);
  await expectDecoding(bob, 'Ann');

  await ann.getByRole('button', { name: 'Share screen' }).click();
  await expect(ann.getByRole('button', { name: 'Stop sharing' })).toBeVisible();
  for (const page of [bob, cy]) {
    await expectDecoding(page, "Ann's screen", 2); // Chromium's fake screen sends a few frames a second
    await expectDecoding(page, 'Ann'); // the camera keeps going
  }
  await bob.screenshot({ path: 'docs/screenshots/screen-share.png' });

  await ann.getByRole('button', { name: 'Stop sharing' }).click();
  for (const page of [bob, cy]) {
    await expect(page.getByLabel("Ann's screen", { exact: true })).toHaveCount(0);
    await expectDecoding(page, 'Ann');
  }
  await expect(ann.getByRole('button', { name: 'Share screen' })).toBeVisible();
});

test('screen sharing works in a 1:1 call too', async ({ browser }) => {
  const room = roomName('screen1');
  const ann = await joinRoom(browser, 'Ann', room);
  const bob = await joinRoom(browser, 'Bob', room);
  await startCall(ann, bob, 'Ann', 'Bob');
  await bob.getByRole('button', { name: 'Share screen' }).click();
  await expectDecoding(ann, "Bob's screen", 2);
  await expectDecoding(ann, 'Bob');
  await bob.getByRole('button', { name: 'Stop sharing' }).click();
  await expect(ann.getByLabel("Bob's screen", { exact: true })).toHaveCount(0);
});

test('chat: same order for all, history for latecomers, 5 KiB refused, text stays text, unread count', async ({ browser }) => {
  const room = roomName('chat');
  const ann = await joinRoom(browser, 'Ann', room);
  const bob = await joinRoom(browser, 'Bob', room);
  let dialogs = 0;
  for (const page of [ann, bob]) page.on('dialog', (d) => { dialogs += 1; d.dismiss(); });

  /** @param {import('@playwright/test').Page} page @param {string} text */
  const say = async (page, text) => {
    await page.getByLabel('Message').fill(text);
    await page.getByRole('button', { name: 'Send' }).click();
  };
  const evil = '<img src=x onerror=alert(1)>';
  await say(ann, 'hello from Ann');
  await say(bob, evil);
  await say(ann, 'see https://example.org/doc for details');
  const log = (/** @type {import('@playwright/test').Page} */ page) => page.getByRole('log');
  for (const page of [ann, bob]) {
    await expect(log(page).locator('li')).toHaveCount(3);
    await expect(log(page).locator('.text')).toHaveText(['hello from Ann', evil, 'see https://example.org/doc for details']);
    await expect(log(page).locator('.who')).toHaveText(['Ann', 'Bob', 'Ann']);
    await expect(log(page).getByRole('link', { name: 'https://example.org/doc' })).toHaveAttribute('href', 'https://example.org/doc');
    expect(await log(page).locator('img').count()).toBe(0);
  }

  // A latecomer gets the history.
  const cy = await joinRoom(browser, 'Cy', room);
  await expect(log(cy).locator('.text')).toHaveText(['hello from Ann', evil, 'see https://example.org/doc for details']);

  // Over 4 KiB is refused with a clear message, and nobody receives it.
  await say(cy, 'x'.repeat(5 * 1024));
  await expect(cy.getByRole('alert').filter({ hasText: 'That message is too long' })).toBeVisible();
  await expect(log(ann).locator('li')).toHaveCount(3);

  // With the chat closed, new messages are counted.
  await bob.getByRole('button', { name: 'Chat', exact: true }).click();
  await expect(bob.getByRole('log')).toBeHidden();
  await say(ann, 'one');
  await say(cy, 'two');
  await expect(bob.getByRole('button', { name: 'Chat (2 unread)' })).toBeVisible();
  await bob.getByRole('button', { name: 'Chat (2 unread)' }).click();
  await expect(log(bob).locator('.text').last()).toHaveText('two');
  await expect(bob.getByRole('button', { name: 'Chat', exact: true })).toBeVisible();
  expect(dialogs).toBe(0);
});
