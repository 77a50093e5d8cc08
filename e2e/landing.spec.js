// @ts-check
//! The landing page and room view: shared links, clear errors, text never run as HTML, Chinese UI.
import { test, expect } from '@playwright/test';
import { closeContexts, expectDecoding, joinRoom, roomName, startCall } from './support.js';

test.afterEach(closeContexts);

test('a /r/<room> link opens with the room filled in, and joining puts the link in the address bar', async ({ page }) => {
  const room = roomName('link');
  await page.goto(`/r/${room}`);
  await expect(page.getByLabel('Room')).toHaveValue(room);
  await page.getByLabel('Your name').fill('Dr. Zhang');
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByText('You are Dr. Zhang')).toBeVisible();
  await expect(page.getByRole('heading', { name: `Room ${room}` })).toBeVisible();
  await expect(page.getByRole('link', { name: new RegExp(`/r/${room}$`) })).toBeVisible();
  expect(new URL(page.url()).pathname).toBe(`/r/${room}`);
  await expect(page.getByText('Nobody else is here yet.', { exact: false })).toBeVisible();
});

test('invalid name and invalid room get clear messages', async ({ page }) => {
  await page.goto('/');
  await page.getByLabel('Your name').fill('   ');
  await page.getByLabel('Room').fill('ok-room');
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'Please enter a name of 1 to 64 characters.' })).toBeVisible();
  await page.getByLabel('Your name').fill('Ann');
  await page.getByLabel('Room').fill('no spaces/allowed');
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'Room names may use letters' })).toBeVisible();
});

test('a full room says so', async ({ browser }) => {
  // The test server keeps the default capacity of 16; fill a room with plain WebSocket members.
  const room = roomName('full');
  const page = await (await browser.newContext()).newPage();
  await page.goto('/');
  await page.evaluate(async (room) => {
    const joins = Array.from({ length: 16 }, (_, i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/ws`);
      ws.onopen = () => ws.send(JSON.stringify({ type: 'join', version: 1, room, name: `member ${i}` }));
      ws.onmessage = (e) => (JSON.parse(e.data).type === 'joined' ? resolve(null) : reject(new Error(e.data)));
      // @ts-ignore keep the sockets open for the rest of the test
      (window.held ??= []).push(ws);
    }));
    await Promise.all(joins);
  }, room);
  const late = await (await browser.newContext()).newPage();
  await late.goto(`/r/${room}`);
  await late.getByLabel('Your name').fill('Late');
  await late.getByRole('button', { name: 'Join' }).click();
  await expect(late.getByRole('alert').filter({ hasText: 'This room is full.' })).toBeVisible();
  await expect(late.getByRole('button', { name: 'Join' })).toBeEnabled();
});

test('an unreachable server is reported', async ({ page }) => {
  await page.routeWebSocket(/\/ws$/, (ws) => ws.close());
  await page.goto('/');
  await page.getByLabel('Your name').fill('Ann');
  await page.getByLabel('Room').fill('anywhere');
  await page.getByRole('button', { name: 'Join' }).click();
  await expect(page.getByRole('alert').filter({ hasText: 'Cannot reach the visavis server.' })).toBeVisible();
});

test('names are shown as text and never run as HTML', async ({ browser }) => {
  const room = roomName('xss');
  const evil = '<img src=x onerror=alert(1)>';
  const victim = await joinRoom(browser, 'Victim', room);
  let dialogs = 0;
  victim.on('dialog', (d) => { dialogs += 1; d.dismiss(); });
  const attacker = await joinRoom(browser, evil, room);
  await expect(victim.getByRole('button', { name: `Call ${evil}` })).toBeVisible();
  await expect(victim.getByText(evil, { exact: true })).toBeVisible();
  await startCall(attacker, victim, evil, 'Victim');
  await expect(victim.getByRole('dialog', { name: `Call with ${evil}` })).toBeVisible();
  expect(await victim.locator('img').count()).toBe(0);
  expect(dialogs).toBe(0);
});

test('Chinese browsers get the Chinese UI, and the switch changes language', async ({ browser }) => {
  const context = await browser.newContext({ locale: 'zh-CN' });
  const page = await context.newPage();
  await page.goto('/');
  await expect(page.getByRole('button', { name: '加入' })).toBeVisible();
  await expect(page.getByLabel('你的名字')).toBeVisible();
  await page.getByLabel('语言').selectOption('en');
  await expect(page.getByRole('button', { name: 'Join' })).toBeVisible();
  await page.reload();
  await expect(page.getByRole('button', { name: 'Join' })).toBeVisible(); // the choice is remembered
  await page.getByLabel('Language').selectOption('zh-CN');
  await page.getByLabel('你的名字').fill('张医生');
  await page.getByLabel('房间').fill(roomName('zh'));
  await page.getByRole('button', { name: '加入' }).click();
  await expect(page.getByText('你是 张医生')).toBeVisible();
});

test('without camera or microphone permission the call still goes ahead, receive-only', async ({ browser }) => {
  const room = roomName('denied');
  const doctor = await joinRoom(browser, 'Doctor', room);
  // The patient's browser refuses access, as when the person clicks "Block".
  const patient = await joinRoom(browser, 'Patient', room, {
    init: () => {
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    },
  });
  await startCall(doctor, patient, 'Doctor', 'Patient');
  await expect(patient.getByRole('alert').filter({ hasText: 'Camera and microphone access was denied.' })).toBeVisible();
  await expectDecoding(patient, 'Doctor');
  // The doctor sees that the patient has no camera or microphone, not that they turned them off.
  await expect(doctor.getByText('Patient: camera unavailable')).toBeVisible();
  await expect(doctor.getByRole('img', { name: 'Patient has no microphone' })).toBeVisible();
  await expect(patient.getByRole('button', { name: 'Mute' })).toBeDisabled();
});
