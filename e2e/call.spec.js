// @ts-check
//! A full 1:1 call between two people, through the dialogs, checking what each one sees and hears.
import { test, expect } from '@playwright/test';
import {
  closeContexts, audioEnergyDuring, expectDecoding, framesDuring, inbound, joinRoom, roomName, startCall, startServer,
  stopServer,
} from './support.js';

test.afterEach(closeContexts);

/** A visavis of this file's own, with a short grace period. */
const GRACE_LISTEN = `127.0.0.1:${Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 11}`;

test('two people call: video and audio both ways, mute, camera off, camera switch, hang-up', async ({ browser }) => {
  const room = roomName('call');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  await expect(alice.getByRole('button', { name: 'Call Bob' })).toBeVisible();

  await startCall(alice, bob, 'Alice', 'Bob');

  // Each sees the other large, and themselves small, each labelled with the person's name.
  await expectDecoding(alice, 'Bob');
  await expectDecoding(bob, 'Alice');
  await expectDecoding(alice, 'Alice');
  await expect(alice.getByRole('status')).toHaveText('Connected');
  for (const page of [alice, bob]) {
    const audio = await inbound(page, 'audio');
    expect(audio.packets).toBeGreaterThan(0);
  }
  const speaking = (await audioEnergyDuring(alice)).energy;
  expect(speaking).toBeGreaterThan(0);

  // Bob mutes: Alice sees it and hears silence (what is left in her jitter buffer aside);
  // unmuting brings the sound back.
  await bob.getByRole('button', { name: 'Mute' }).click();
  await expect(alice.getByRole('img', { name: 'Bob is muted' })).toBeVisible();
  await alice.waitForTimeout(1000);
  expect((await audioEnergyDuring(alice)).energy).toBeLessThan(speaking / 100);
  await bob.getByRole('button', { name: 'Unmute' }).click();
  await expect(alice.getByRole('img', { name: 'Bob is muted' })).toBeHidden();
  await expect.poll(async () => (await audioEnergyDuring(alice, 1000)).energy).toBeGreaterThan(0);

  // Bob stops his camera: Alice sees the placeholder and no more frames arrive.
  await bob.getByRole('button', { name: 'Stop video' }).click();
  await expect(alice.getByText('Bob: camera off')).toBeVisible();
  await expect(bob.getByText('Your camera is off')).toBeVisible();
  await alice.waitForTimeout(500);
  expect(await framesDuring(alice, 'Bob')).toBeLessThan(3);
  await bob.getByRole('button', { name: 'Start video' }).click();
  await expect(alice.getByText('Bob: camera off')).toBeHidden();
  await expect(bob.getByText('Your camera is off')).toBeHidden();
  await expectDecoding(alice, 'Bob');

  // Alice switches camera: the call goes on, now from the other device. Chromium's fake
  // devices cycle pixel formats and fake_device_1 is a Y16 depth camera, so take the third.
  await alice.getByRole('button', { name: 'Devices' }).click();
  const camera = alice.locator('#devices').getByLabel('Camera');
  await expect(camera.locator('option')).toHaveCount(4); // "Default" + three fake cameras
  const senderCamera = () =>
    alice.evaluate(() => window.visavis.pc.getSenders().find((s) => s.track?.kind === 'video')?.track?.label);
  expect(await senderCamera()).not.toBe('fake_device_2');
  await camera.selectOption({ label: 'fake_device_2' });
  await expect.poll(senderCamera).toBe('fake_device_2');
  await expectDecoding(bob, 'Alice');
  await expect(bob.getByRole('status')).toHaveText('Connected');

  // Bob hangs up: both calls end, each side says so.
  await bob.getByRole('button', { name: 'Hang up' }).click();
  await expect(alice.getByRole('dialog', { name: 'Call with Bob' })).toBeHidden();
  await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeHidden();
  await expect(alice.getByText('Bob hung up.')).toBeVisible();
  await expect(bob.getByText('Call ended.')).toBeVisible();
  expect(await alice.evaluate(() => window.visavis.pc)).toBeNull();
});

test('declined, cancelled and unanswered calls each say so', async ({ browser }) => {
  const room = roomName('outcomes');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  const incoming = bob.getByRole('dialog', { name: 'Alice is calling you' });

  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(incoming).toBeVisible();
  expect(await bob.evaluate(() => window.visavis.ringing)).toBe(true);
  await incoming.getByRole('button', { name: 'Decline' }).click();
  await expect(alice.getByText('Bob declined the call.')).toBeVisible();
  await expect(alice.getByRole('dialog')).toHaveCount(0);
  await expect(incoming).toBeHidden();
  expect(await bob.evaluate(() => window.visavis.ringing)).toBe(false);

  // Ringing straight back after a decline is refused (the test server's --redial-delay is 2 s),
  // and says so; nothing is left calling.
  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(alice.getByText('Too many attempts in a short time.')).toBeVisible();
  await expect(alice.getByRole('dialog')).toHaveCount(0);
  await expect(incoming).toBeHidden();
  await alice.waitForTimeout(2_000);

  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(incoming).toBeVisible();
  await alice.getByRole('dialog', { name: 'Calling Bob…' }).getByRole('button', { name: 'Cancel' }).click();
  await expect(bob.getByText('Alice cancelled the call.')).toBeVisible();
  await expect(incoming).toBeHidden();
  await expect(alice.getByText('Call cancelled.')).toBeVisible();

  // The test server rings for 3 s (--ring-timeout 3).
  await alice.getByRole('button', { name: 'Call Bob' }).click();
  await expect(incoming).toBeVisible();
  await expect(alice.getByText('Bob did not answer.')).toBeVisible({ timeout: 10_000 });
  await expect(bob.getByText('You missed a call from Alice.')).toBeVisible();
  await expect(incoming).toBeHidden();
});

test('a person already in a call is busy', async ({ browser }) => {
  const room = roomName('busy');
  const alice = await joinRoom(browser, 'Alice', room);
  const bob = await joinRoom(browser, 'Bob', room);
  const carol = await joinRoom(browser, 'Carol', room);
  await startCall(alice, bob, 'Alice', 'Bob');
  await carol.getByRole('button', { name: 'Call Bob' }).click();
  await expect(carol.getByText('Bob is busy in another call.')).toBeVisible();
  await expect(bob.getByRole('dialog', { name: 'Carol is calling you' })).toHaveCount(0);
});

test('a person who closes the tab mid-call is reconnecting, then leaves when the grace period ends', async ({ browser }) => {
  // A closed tab cannot be told from a reload, which keeps the session (reload.spec.js): the
  // member leaves when the server's grace period ends, here 2 s.
  const server = await startServer(GRACE_LISTEN, ['--resume-grace', '2']);
  try {
    const room = roomName('vanish');
    const alice = await joinRoom(browser, 'Alice', room, { url: server.url });
    const bob = await joinRoom(browser, 'Bob', room, { url: server.url });
    await startCall(alice, bob, 'Alice', 'Bob');
    await bob.context().close();
    await expect(alice.getByText('Bob (reconnecting…)').first()).toBeVisible();
    await expect(alice.getByText('Bob left the room; the call ended.')).toBeVisible();
    await expect(alice.getByRole('button', { name: 'Call Bob' })).toHaveCount(0);
  } finally {
    await stopServer(server.proc);
  }
});
