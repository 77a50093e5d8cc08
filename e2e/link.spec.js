// @ts-check
//! The room's link: "Copy link" puts it on the clipboard and says so; where the browser has a
//! share sheet there is a Share button; the link itself never navigates the tab away.
import { test, expect } from '@playwright/test';
import { closeContexts, joinRoom, roomName } from './support.js';

test.afterEach(closeContexts);

const permissions = ['camera', 'microphone', 'clipboard-read', 'clipboard-write'];

test('Copy link copies the room link with a confirmation; clicking the link keeps you in the room', async ({ browser, baseURL }) => {
  const room = roomName('link');
  const alice = await joinRoom(browser, 'Alice', room, { context: { permissions } });
  const link = `${baseURL}/r/${room}`;

  await alice.getByRole('button', { name: 'Copy link' }).click();
  await expect(alice.getByRole('status').filter({ hasText: 'Link copied.' })).toBeVisible();
  expect(await alice.evaluate(() => navigator.clipboard.readText())).toBe(link);

  // Following the link would reload the page and lose the room: it copies instead.
  await alice.evaluate(() => navigator.clipboard.writeText('something else'));
  await alice.getByRole('link', { name: link }).click();
  await alice.waitForTimeout(500);
  await expect(alice).toHaveURL(link);
  await expect(alice.getByText('You are Alice')).toBeVisible();
  expect(await alice.evaluate(() => navigator.clipboard.readText())).toBe(link);

  // No share sheet in this browser: no Share button.
  if (!(await alice.evaluate(() => 'share' in navigator))) {
    await expect(alice.getByRole('button', { name: 'Share…' })).toHaveCount(0);
  }
});

test('where the browser has a share sheet, Share offers the room link', async ({ browser, baseURL }) => {
  const room = roomName('share');
  const alice = await joinRoom(browser, 'Alice', room, {
    context: { permissions },
    init: () => {
      Object.defineProperty(navigator, 'share', {
        configurable: true,
        value: async (/** @type {ShareData} */ data) => {
          // @ts-ignore: recorded for the test
          window.sharedData = data;
        },
      });
    },
  });
  await alice.getByRole('button', { name: 'Share…' }).click();
  // @ts-ignore: recorded by the stub above
  await expect.poll(() => alice.evaluate(() => window.sharedData?.url)).toBe(`${baseURL}/r/${room}`);
  await expect(alice.getByText('You are Alice')).toBeVisible();
});
