// @ts-check
//! Reloading the page keeps you in: the tab takes its session back (sessionStorage, resume with
//! `reloaded`), in the same room, the same call (new peer connections on both sides) and with
//! the chat as it was; the other side sees "reconnecting", never "left".
import { test, expect } from '@playwright/test';
import { closeContexts, expectDecoding, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

/**
 * Records, on `page`, whether it ever shows someone leaving or a call ending, from now on.
 * @param {import('@playwright/test').Page} page
 */
function watchForLeaving(page) {
  return page.evaluate(() => {
    const seen = /** @type {string[]} */ ([]);
    // @ts-ignore: a test's own record
    window.leavingSeen = seen;
    const check = () => {
      const text = document.body.innerText;
      for (const what of ['left the room', 'hung up', 'Call ended']) if (text.includes(what)) seen.push(what);
      if (!document.querySelector('#in-call')?.hasAttribute('open')) seen.push('call closed');
    };
    new MutationObserver(check).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

/** @param {import('@playwright/test').Page} page */
const leavingSeen = (page) => page.evaluate(() => /** @type {any} */ (window).leavingSeen);

/** @param {import('@playwright/test').Page} page */
const seconds = async (page) => {
  const [mm, ss] = (await page.locator('#call-duration').innerText()).split(':').map(Number);
  return mm * 60 + ss;
};

test('reloading during a 1:1 call returns to the same call, video both ways, chat intact', async ({ browser }) => {
  const room = roomName('reload');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  // On a laptop the chat is open beside the room.
  await bob.getByLabel('Message').fill('before the reload');
  await bob.getByRole('button', { name: 'Send' }).click();
  await expect(bob.locator('#chat-log')).toContainText('before the reload');
  await startCall(alice, bob, 'Alice', 'Bob');
  await expectDecoding(alice, 'Bob');
  await expectDecoding(bob, 'Alice');
  const callId = await alice.evaluate(() => window.visavis.callId);
  const bobId = await bob.evaluate(() => window.visavis.memberId);
  await alice.waitForTimeout(2000);
  const before = await seconds(alice);
  expect(before).toBeGreaterThanOrEqual(2);

  await watchForLeaving(alice);
  const reloaded = Date.now();
  await bob.reload();
  // Back in the same call, as the same member, within a few seconds.
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeVisible({ timeout: 5000 });
  expect(await bob.evaluate(() => window.visavis.callId)).toBe(callId);
  expect(await bob.evaluate(() => window.visavis.memberId)).toBe(bobId);
  await expectDecoding(bob, 'Alice');
  await expectDecoding(alice, 'Bob');
  const back = Date.now() - reloaded;
  console.log(`reload → video decoding again on both sides: ${back} ms`);
  await expect(bob.getByRole('status').filter({ hasText: 'Connected' })).toBeVisible();
  await expect(alice.getByRole('status').filter({ hasText: 'Connected' })).toBeVisible();
  // The duration went on from the call's start, not from the reload.
  expect(await seconds(bob)).toBeGreaterThanOrEqual(before);
  // Alice never saw Bob leave, nor her call end; Bob shows as himself, not as "Bob (2)".
  expect(await leavingSeen(alice)).toEqual([]);
  await expect(alice.getByRole('dialog', { name: 'Call with Bob' })).toBeVisible();
  // The chat is as it was, beside the call.
  await expect(bob.getByRole('log')).toContainText('before the reload');
  // The call still works as a call: hanging up ends it for both.
  await alice.getByRole('button', { name: 'Hang up' }).click();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeHidden();
  await expect(bob.getByText('Alice hung up.')).toBeVisible();
});

test('reloading in the room (no call) keeps the room, the membership and the chat', async ({ browser }) => {
  const room = roomName('reload-room');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  await alice.getByLabel('Message').fill('hello Bob');
  await alice.getByRole('button', { name: 'Send' }).click();
  await expect(bob.getByRole('log')).toContainText('hello Bob');
  const bobId = await bob.evaluate(() => window.visavis.memberId);

  await bob.reload();
  await expect(bob.getByText('You are Bob')).toBeVisible({ timeout: 5000 });
  expect(await bob.evaluate(() => window.visavis.memberId)).toBe(bobId);
  await expect(bob.getByRole('heading', { name: `Room ${room}` })).toBeVisible();
  await expect(bob.getByRole('log')).toContainText('hello Bob');
  // Alice still sees one Bob, online, and can call him.
  await expect(alice.locator('#members li')).toHaveCount(1);
  await expect(alice.locator('#members')).not.toContainText('reconnecting');
  await startCall(alice, bob, 'Alice', 'Bob');
  await expectDecoding(bob, 'Alice');
  // A second tab opened from this one (which copies its sessionStorage) does not take the
  // session over: it starts at the landing form.
  const [copy] = await Promise.all([bob.context().waitForEvent('page'), bob.evaluate(() => { window.open(location.href); })]);
  await expect(copy.getByLabel('Your name')).toBeVisible();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeVisible();
});
