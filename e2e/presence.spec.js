// @ts-check
//! Presence: who is in a call shows in the people list; a busy person hears who tried to call;
//! an incoming call changes the tab's title, vibrates, and raises a system notification while
//! the page is hidden.
import { test, expect } from '@playwright/test';
import { closeContexts, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

test('"(in a call)" in the people list; a busy person is told who tried to call', async ({ browser }) => {
  const room = roomName('presence');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  const carol = await joinRoom(browser, 'Carol', room);
  await startCall(alice, bob, 'Alice', 'Bob');
  const people = carol.locator('#members');
  await expect(people.getByText('Alice (in a call)')).toBeVisible();
  await expect(people.getByText('Bob (in a call)')).toBeVisible();
  // Someone who joins now sees it too.
  const dan = await joinRoom(browser, 'Dan', room);
  await expect(dan.locator('#members').getByText('Bob (in a call)')).toBeVisible();

  await carol.getByRole('button', { name: 'Call Bob' }).click();
  await expect(carol.getByText('Bob is busy in another call.')).toBeVisible();
  await expect(bob.locator('#call-events').getByText('Carol tried to call you.')).toBeVisible();

  await alice.getByRole('button', { name: 'Hang up' }).click();
  await expect(people.getByText('Alice', { exact: true })).toBeVisible();
  await expect(people.getByText('Bob', { exact: true })).toBeVisible();
  await expect(people).not.toContainText('in a call');
});

test('an incoming call changes the title, vibrates, and notifies while the page is hidden', async ({ browser }) => {
  const room = roomName('ringing');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room, {
    init: () => {
      const w = /** @type {any} */ (window);
      w.notes = [];
      w.vibes = [];
      w.Notification = class {
        static permission = 'granted';
        static requestPermission() { return Promise.resolve('granted'); }
        /** @param {string} title */
        constructor(title) { w.notes.push(title); }
        close() {}
      };
      navigator.vibrate = (pattern) => { w.vibes.push(pattern); return true; };
      // The tab is in the background.
      Object.defineProperty(document, 'hidden', { get: () => w.hiddenTab ?? false });
    },
  });
  await bob.evaluate(() => { /** @type {any} */ (window).hiddenTab = true; });
  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(bob.getByRole('dialog', { name: 'Alice is calling you' })).toBeVisible();
  await expect(bob).toHaveTitle('Alice is calling you — visavis');
  expect(await bob.evaluate(() => /** @type {any} */ (window).notes)).toEqual(['Alice is calling you']);
  expect((await bob.evaluate(() => /** @type {any} */ (window).vibes)).length).toBe(1);
  expect(await bob.evaluate(() => window.visavis.ringing)).toBe(true);
  await bob.getByRole('button', { name: 'Decline' }).click();
  await expect(bob).toHaveTitle('visavis');

  // In the foreground: the title and the ring, no notification.
  await bob.evaluate(() => { /** @type {any} */ (window).hiddenTab = false; });
  await alice.waitForTimeout(2500); // the redial delay after a decline (2 s here)
  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(bob).toHaveTitle('Alice is calling you — visavis');
  expect(await bob.evaluate(() => /** @type {any} */ (window).notes)).toHaveLength(1);
  await startCallAccept(bob);
  await expect(bob).toHaveTitle('visavis');
});

/** @param {import('@playwright/test').Page} bob */
async function startCallAccept(bob) {
  await bob.getByRole('dialog', { name: 'Alice is calling you' }).getByRole('button', { name: 'Accept' }).click();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeVisible();
}
