// @ts-check
//! Accessibility: axe-core on every screen of a 1:1 call's way (landing, room, the outgoing and
//! incoming call dialogs, the call, the chat open), on a phone and a laptop, in English and in
//! Chinese, and a group call in both. The pre-join screen (preview, level meter, device
//! pickers) is checked with the landing; the network check, the connection details and the
//! private room's screens (waiting, knock, host controls) in their own specs. Any serious or
//! critical violation fails the test.
import { test, expect } from '@playwright/test';
import { SIZES, closeContexts, expectAccessible, roomName } from './support.js';
import { COTURN_APP_PORT } from '../playwright.config.js';

// The second visavis of playwright.config.js rings for the default 30 s (the first one gives up
// after 3 s, for the no-answer tests); axe on both call dialogs can take longer than 3 s on a
// busy machine.
test.use({ baseURL: `http://127.0.0.1:${COTURN_APP_PORT}` });
test.afterEach(closeContexts);

/**
 * Opens visavis and joins `room` by the form's ids (the labels depend on the language).
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 * @param {import('@playwright/test').BrowserContextOptions} options
 * @param {boolean} [check] run axe on the landing page first
 */
async function join(browser, name, room, options, check = false) {
  const page = await (await browser.newContext(options)).newPage();
  await page.goto('/');
  await expect(page.locator('#join')).toBeVisible();
  if (check) {
    await expectAccessible(page, 'landing');
    // The pre-join screen, with the preview running and the device pickers filled in.
    await page.locator('#prejoin-toggle').click();
    await expect(page.locator('#preview')).toBeVisible();
    await expect(page.locator('#pj-camera option')).not.toHaveCount(1);
    await expectAccessible(page, 'pre-join');
  }
  await page.locator('#name').fill(name);
  await page.locator('#room').fill(room);
  await page.locator('#join').click();
  await expect(page.locator('#lobby')).toBeVisible();
  return page;
}

for (const [size, context] of Object.entries(SIZES)) {
  for (const locale of ['en-US', 'zh-CN']) {
    test(`axe: landing, room, call dialogs, 1:1 call and chat — ${size}, ${locale}`, async ({ browser }) => {
      // Seven axe runs, five of them on pages with a live call: seconds each on a busy machine.
      test.setTimeout(180_000);
      const options = { ...context, locale };
      const room = roomName('a11y');
      const alice = await join(browser, 'Alice', room, options, true);
      const bob = await join(browser, 'Bob', room, options);
      await expect(alice.locator('#members button').first()).toBeVisible();
      await expectAccessible(alice, 'room');

      await alice.locator('#members button').first().click();
      await expect(alice.locator('#outgoing')).toBeVisible();
      await expect(bob.locator('#incoming')).toBeVisible();
      await expectAccessible(alice, 'outgoing call dialog');
      await expectAccessible(bob, 'incoming call dialog');

      await bob.locator('#accept').click();
      await expect(alice.locator('#in-call')).toBeVisible();
      await expect(bob.locator('#in-call')).toBeVisible();
      await expect(alice.locator('#call-stage .tile.remote')).toBeVisible();
      await expect(alice.locator('#mute')).toBeEnabled();
      await expectAccessible(alice, '1:1 call');

      // Mute shows on the other side (an SVG icon with a name, not an emoji).
      await alice.locator('#mute').click();
      await expect(bob.locator('.tile.remote .muted-badge')).toBeVisible();
      await expectAccessible(bob, '1:1 call, other side muted');

      const chatOpen = await alice.locator('#chat').isVisible();
      if (!chatOpen) await alice.locator('#chat-toggle').click();
      await expect(alice.getByRole('log')).toBeVisible();
      await expectAccessible(alice, '1:1 call with the chat open');

      await alice.locator('#devices-toggle').click();
      await expectAccessible(alice, '1:1 call with the devices open');
    });
  }
}

for (const [size, context] of Object.entries(SIZES)) {
  test(`axe: a group call in Chinese — ${size}`, async ({ browser }) => {
    const options = { ...context, locale: 'zh-CN' };
    const room = roomName('a11y-group-zh');
    const ann = await join(browser, '安', room, options);
    const ben = await join(browser, '本', room, options);
    await ann.locator('#join-call').click();
    await ben.locator('#join-call').click();
    await expect(ann.getByLabel('本', { exact: true })).toBeVisible();
    await expect(ann.locator('#mute')).toBeEnabled();
    await expectAccessible(ann, 'group call, Chinese');
  });

  test(`axe: a group call — ${size}; Tab never reaches the room behind a call`, async ({ browser }) => {
    const room = roomName('a11y-group');
    const ann = await join(browser, 'Ann', room, context);
    const ben = await join(browser, 'Ben', room, context);
    await ann.getByRole('button', { name: 'Join call' }).click();
    await ben.getByRole('button', { name: 'Join call' }).click();
    await expect(ann.getByLabel('Ben', { exact: true })).toBeVisible();
    await expect(ann.locator('#mute')).toBeEnabled();
    await expectAccessible(ann, 'group call');

    // Everything reachable by Tab is in the call, its bar, the header or the open chat.
    /** @type {string[]} */
    const reached = [];
    for (let i = 0; i < 40; i++) {
      await ann.keyboard.press('Tab');
      reached.push(await ann.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return 'body';
        return el.closest('#lobby') ? `lobby: ${el.outerHTML.slice(0, 80)}` : el.id || el.tagName;
      }));
    }
    expect(reached.filter((r) => r.startsWith('lobby'))).toEqual([]);
    expect(reached).toContain('hangup');
  });
}

/**
 * Presses Tab until `locator` has the focus (as a keyboard user would), failing after 40 presses.
 * @param {import('@playwright/test').Page} page
 * @param {import('@playwright/test').Locator} locator
 */
async function tabTo(page, locator) {
  for (let i = 0; i < 40; i++) {
    if (await locator.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  await expect(locator).toBeFocused();
}

/**
 * Joins with the keyboard alone.
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 */
async function joinByKeyboard(browser, name, room) {
  const page = await (await browser.newContext()).newPage();
  await page.goto('/');
  await tabTo(page, page.getByLabel('Your name'));
  await page.keyboard.type(name);
  await page.keyboard.press('Tab');
  await expect(page.getByLabel('Room')).toBeFocused();
  await page.keyboard.type(room);
  // Through the pre-join screen: start the check, then back to Join.
  const check = page.getByRole('button', { name: 'Check camera and microphone' });
  await tabTo(page, check);
  await page.keyboard.press('Enter');
  await expect(page.getByLabel('Your camera preview')).toBeVisible();
  await expect(page.locator('#prejoin-devices').getByLabel('Camera')).toBeFocused();
  await tabTo(page, page.getByLabel('Join muted'));
  await tabTo(page, page.getByRole('button', { name: 'Join', exact: true }));
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { name: `Room ${room}` })).toBeFocused();
  return page;
}

test('keyboard only: join, call, accept, mute, hang up', async ({ browser }) => {
  const room = roomName('keys');
  const alice = await joinByKeyboard(browser, 'Alice', room);
  const bob = await joinByKeyboard(browser, 'Bob', room);

  await tabTo(alice, alice.getByRole('button', { name: 'Call Bob' }));
  await alice.keyboard.press('Enter');
  const incoming = bob.getByRole('dialog', { name: 'Alice is calling you' });
  await expect(incoming).toBeVisible();
  await tabTo(bob, incoming.getByRole('button', { name: 'Accept' }));
  await bob.keyboard.press('Enter');
  await expect(alice.getByRole('dialog', { name: 'Call with Bob' })).toBeVisible();

  const mute = alice.getByRole('button', { name: 'Mute', exact: true });
  await expect(mute).toBeEnabled();
  await tabTo(alice, mute);
  await alice.keyboard.press('Enter');
  await expect(bob.getByRole('img', { name: 'Alice is muted' })).toBeVisible();
  await expect(alice.getByRole('button', { name: 'Unmute' })).toBeFocused();

  await tabTo(alice, alice.getByRole('button', { name: 'Hang up' }));
  await alice.keyboard.press('Enter');
  await expect(bob.getByText('Alice hung up.')).toBeVisible();
  await expect(alice.getByText('Call ended.')).toBeVisible();
});
