// @ts-check
//! The pre-join screen beside the landing form: camera preview, microphone level, device pickers
//! with names, a test sound; "Join muted" / "Join with camera off" and the picked camera carried
//! into calls and remembered; without camera access it says why. Takes the README's screenshots
//! of it, on a phone and a laptop.
import { test, expect } from '@playwright/test';
import { SIZES, closeContexts, expectDecoding, expectOnScreen, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

test('preview, level meter, named devices, test sound; choices and camera carried into the call and remembered', async ({ browser }) => {
  const room = roomName('prejoin');
  const page = await (await browser.newContext()).newPage();
  await page.goto('/');
  await page.getByRole('button', { name: 'Check camera and microphone' }).click();
  await expectDecoding(page, 'Your camera preview');
  // Chromium's fake microphone beeps: the meter moves.
  await expect.poll(() => page.locator('#mic-level').evaluate((m) => /** @type {HTMLMeterElement} */ (m).value), { timeout: 10_000 })
    .toBeGreaterThan(0.01);
  // With access granted the devices have their names.
  const camera = page.locator('#pj-camera');
  await expect(camera).toContainText('fake_device_2');
  await camera.selectOption({ label: 'fake_device_2' });
  await expect.poll(() => page.evaluate(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview')).srcObject
    ?.getVideoTracks()[0]?.label)).toBe('fake_device_2');
  await page.getByRole('button', { name: 'Play a test sound' }).click();
  await expect(page.getByText('Played a test sound: did you hear it?')).toBeVisible();
  expect(await page.evaluate(() => window.visavis.testSounds)).toBe(1);

  // The choices are remembered on this device.
  await page.getByLabel('Join muted').check();
  await page.getByLabel('Join with camera off').check();
  await page.reload();
  await expect(page.getByLabel('Join muted')).toBeChecked();
  await expect(page.getByLabel('Join with camera off')).toBeChecked();
  await page.getByLabel('Join with camera off').uncheck();

  // Joining releases the preview; the call starts muted, from the camera picked.
  await page.getByRole('button', { name: 'Check camera and microphone' }).click();
  await expect(page.getByLabel('Your camera preview')).toBeVisible();
  await page.getByLabel('Your name').fill('Pat');
  await page.getByLabel('Room').fill(room);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await expect(page.getByText('You are Pat')).toBeVisible();
  expect(await page.evaluate(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview')).srcObject)).toBeNull();
  const doctor = await joinRoom(browser, 'Doctor', room);
  await startCall(doctor, page, 'Doctor', 'Pat');
  await expect(doctor.getByRole('img', { name: 'Pat is muted' })).toBeVisible();
  await expect(page.getByRole('button', { name: 'Unmute' })).toBeVisible();
  await expectDecoding(doctor, 'Pat');
  await expect.poll(() => page.evaluate(() => window.visavis.pc?.getSenders().find((s) => s.track?.kind === 'video')?.track?.label))
    .toBe('fake_device_2');

  // "Join with camera off": the next call starts without the camera.
  await page.getByRole('button', { name: 'Hang up' }).click();
  await page.getByRole('button', { name: 'Leave room' }).click();
  await page.getByLabel('Join with camera off').check();
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await startCall(doctor, page, 'Doctor', 'Pat');
  await expect(doctor.getByText('Pat: camera off')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Start video' })).toBeVisible();
});

test('without camera access the pre-join screen says why, and joining still works', async ({ browser }) => {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  const page = await context.newPage();
  await page.goto('/');
  await page.getByRole('button', { name: 'Check camera and microphone' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'The browser refused access to the camera and microphone.' })).toBeVisible();
  await page.getByLabel('Your name').fill('Pat');
  await page.getByLabel('Room').fill(roomName('prejoin-denied'));
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await expect(page.getByText('You are Pat')).toBeVisible();
});

for (const [size, context] of Object.entries(SIZES)) {
  test(`the pre-join screen on a ${size}: preview, level, pickers, choices and the network check in reach; README screenshot`, async ({ browser }) => {
    const page = await (await browser.newContext(context)).newPage();
    await page.goto('/');
    await page.getByLabel('Your name').fill('Patient Li');
    await page.getByLabel('Room').fill('clinic');
    const screen = page.getByRole('region', { name: 'Before you join' });
    await screen.getByRole('button', { name: 'Check camera and microphone' }).click();
    await expectDecoding(page, 'Your camera preview');
    await expect(screen.locator('#pj-camera option')).not.toHaveCount(1);
    // Everything of the screen can be reached: in view once scrolled to, and not covered.
    for (const control of [
      screen.getByLabel('Your camera preview'), screen.locator('#pj-camera'), screen.locator('#pj-microphone'),
      screen.getByRole('button', { name: 'Play a test sound' }), screen.getByLabel('Join muted'),
      screen.getByLabel('Join with camera off'), screen.getByRole('button', { name: 'Test my connection' }),
    ]) {
      await control.scrollIntoViewIfNeeded();
      await expectOnScreen(control);
    }
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(300);
    await page.screenshot({ path: `docs/screenshots/prejoin-${size}.png`, fullPage: true });
  });
}
