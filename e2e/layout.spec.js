// @ts-check
//! The layout from a phone (390×844, touch; and 844×390 held sideways) to a laptop (1280×720): after joining, the people
//! list and the Call buttons are in view; in a 1:1 and a group call every control is in view
//! without scrolling; chat opens over the call (or beside it) and closes back to it.
import { test, expect } from '@playwright/test';
import { SIZES, closeContexts, expectOnScreen, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

/**
 * A screenshot for the README (times and the duration masked, so they stay the same).
 * @param {import('@playwright/test').Page} page
 * @param {string} file
 */
async function screenshot(page, file) {
  await page.waitForTimeout(500);
  await page.screenshot({
    path: `docs/screenshots/${file}`,
    mask: [page.locator('#chat-log time'), page.locator('#call-duration')],
    maskColor: '#6b7280',
  });
}

/**
 * The call's controls, by their accessible names.
 * @param {import('@playwright/test').Page} page
 * @param {'direct' | 'group'} mode
 */
function controls(page, mode) {
  const call = page.locator('#in-call');
  return [
    call.getByRole('button', { name: 'Mute', exact: true }),
    call.getByRole('button', { name: 'Stop video' }),
    call.getByRole('button', { name: 'Share screen' }),
    call.getByRole('button', { name: /^Chat/ }),
    call.getByRole('button', { name: /^People/ }),
    call.getByRole('button', { name: mode === 'group' ? 'Leave call' : 'Hang up' }),
  ];
}

/** The sizes of the other tests, and a phone held sideways. */
const LAYOUTS = { ...SIZES, 'phone-landscape': { viewport: { width: 844, height: 390 }, hasTouch: true, isMobile: true } };

for (const [size, context] of Object.entries(LAYOUTS)) {
  /** Chat and people are sheets over the call below 60rem (960 px). */
  const narrow = context.viewport.width < 960;
  test.describe(`${size} (${context.viewport.width}×${context.viewport.height})`, () => {
    test('after joining: the header, the people list and the Call button are in view', async ({ browser }) => {
      const room = roomName('layout');
      const alice = await joinRoom(browser, 'Alice', room, { context });
      await joinRoom(browser, 'Bob', room, { context });
      await expectOnScreen(alice.getByRole('heading', { name: `Room ${room}` }));
      await expectOnScreen(alice.getByText('visavis', { exact: true }));
      await expectOnScreen(alice.getByLabel('Language'));
      await expectOnScreen(alice.getByRole('heading', { name: 'People in this room' }));
      await expectOnScreen(alice.getByRole('button', { name: 'Call Bob' }));
      await expectOnScreen(alice.getByRole('button', { name: 'Join call' }));
      await expectOnScreen(alice.getByRole('button', { name: 'Copy link' }));
      await expectOnScreen(alice.getByRole('button', { name: 'Chat', exact: true }));
      // Focus went to the room, not the top of the page.
      await expect(alice.getByRole('heading', { name: `Room ${room}` })).toBeFocused();
    });

    test('a 1:1 call: every control in view; chat opens over or beside the call and closes back to it', async ({ browser }) => {
      const room = roomName('layout-call');
      const alice = await joinRoom(browser, 'Alice', room, { context });
      const bob = await joinRoom(browser, 'Bob', room, { context });
      await startCall(alice, bob, 'Alice', 'Bob');
      for (const page of [alice, bob]) {
        for (const control of controls(page, 'direct')) await expectOnScreen(control);
      }
      await expect(alice.getByLabel('Bob', { exact: true })).toBeInViewport();

      // The devices panel opens above the bar, in view.
      await alice.getByRole('button', { name: 'Devices' }).click();
      await expectOnScreen(alice.locator('#devices').getByLabel('Camera'));
      await expectOnScreen(alice.locator('#devices').getByLabel('Speaker'));
      await alice.keyboard.press('Escape');
      await expect(alice.locator('#devices').getByLabel('Camera')).toBeHidden();
      await expect(alice.getByRole('button', { name: 'Devices' })).toBeFocused();

      const chatButton = alice.locator('#in-call').getByRole('button', { name: /^Chat/ });
      if (narrow) {
        // The call comes first on a phone: the chat is closed, and a message counts as unread.
        await expect(alice.getByRole('log')).toBeHidden();
        await bob.getByRole('button', { name: /^Chat/ }).click();
        await bob.getByLabel('Message').fill('hello from Bob');
        await bob.getByRole('button', { name: 'Send' }).click();
        await expect(chatButton).toHaveAccessibleName('Chat (1 unread)');
        await expect(alice.locator('#chat-badge')).toHaveText('1');
        await chatButton.click();
        // Over the call, not behind it; read, so no longer unread; the controls still in view.
        await expectOnScreen(alice.getByRole('log').getByText('hello from Bob'));
        await expectOnScreen(alice.getByLabel('Message'));
        await expect(chatButton).toHaveAccessibleName('Chat');
        for (const control of controls(alice, 'direct')) await expectOnScreen(control);
        await alice.keyboard.press('Escape');
        await expect(alice.getByRole('log')).toBeHidden();
        await expect(chatButton).toBeFocused();
        await expectOnScreen(alice.locator('#call-stage .tile.remote video'));
        if (size === 'phone') await screenshot(alice, 'call-phone.png');
      } else {
        // Beside the call on a wide screen: messages are read as they arrive.
        await expectOnScreen(alice.getByRole('log'));
        await bob.getByLabel('Message').fill('hello from Bob');
        await bob.getByRole('button', { name: 'Send' }).click();
        await expectOnScreen(alice.getByRole('log').getByText('hello from Bob'));
        await expect(chatButton).toHaveAccessibleName('Chat');
        await expectOnScreen(alice.locator('#call-stage .tile.remote video'));
        if (size === 'desktop') await screenshot(alice, 'call-desktop.png');
        await chatButton.click();
        await expect(alice.getByRole('log')).toBeHidden();
        for (const control of controls(alice, 'direct')) await expectOnScreen(control);
      }

      // The people list opens over the call (phone) or beside it, and the bar stays in view.
      await alice.locator('#in-call').getByRole('button', { name: /^People/ }).click();
      await expectOnScreen(alice.getByRole('heading', { name: 'People in this room' }));
      for (const control of controls(alice, 'direct')) await expectOnScreen(control);
      await alice.locator('#in-call').getByRole('button', { name: /^People/ }).click();
      // Closed: the call is in front again (the room behind it is out of reach).
      await expect(alice.locator('#in-call').getByRole('button', { name: /^People/ })).toHaveAttribute('aria-expanded', 'false');
      await expectOnScreen(alice.locator('#call-stage .tile.remote video'));
      await expect(alice.locator('#people')).toHaveJSProperty('inert', true);
    });

    test('a group call: every control in view', async ({ browser }) => {
      const room = roomName('layout-group');
      const ann = await joinRoom(browser, 'Ann', room, { context });
      const ben = await joinRoom(browser, 'Ben', room, { context });
      await ann.getByRole('button', { name: 'Join call' }).click();
      await expect(ann.getByRole('dialog', { name: 'Group call' })).toBeVisible();
      await ben.getByRole('button', { name: 'Join call' }).click();
      await expect(ben.getByRole('dialog', { name: 'Group call' })).toBeVisible();
      await expect(ann.getByLabel('Ben', { exact: true })).toBeVisible();
      for (const page of [ann, ben]) {
        for (const control of controls(page, 'group')) await expectOnScreen(control);
      }
    });
  });
}
