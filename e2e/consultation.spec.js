// @ts-check
//! The worked example of embedding (examples/consultation): a clinic's back end makes the room
//! and the two tokens over the REST API, its doctor and patient pages run the call with the SDK
//! loaded from visavis (another origin), and visavis's signed webhooks reach the back end. Two
//! Chromiums with fake devices: nobody types a room name; both see each other; then hang up.
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { test, expect } from '@playwright/test';
import { BINARY, closeContexts, expectDecoding, startServer, stopServer } from './support.js';

const BASE = Number(process.env.VISAVIS_E2E_PORT ?? 18080);
const VISAVIS = `127.0.0.1:${BASE + 20}`;
const CLINIC = `http://127.0.0.1:${BASE + 21}`;
const SECRET = 'e2e-clinic-secret-of-at-least-32-characters';

/** @type {{proc: import('node:child_process').ChildProcess, url: string} | null} */
let visavis = null;
/** @type {import('node:child_process').ChildProcess | null} */
let clinic = null;
/** The consultation's room, once the doctor started it. */
let room = '';

/** Whether this build of visavis sends webhooks (they come from another branch). */
function hasWebhooks() {
  return new Promise((resolve) => {
    const help = spawn(BINARY, ['--help']);
    let out = '';
    help.stdout.on('data', (d) => { out += d; });
    help.on('exit', () => resolve(out.includes('--webhook-url')));
  });
}

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  const webhooks = (await hasWebhooks()) ? ['--webhook-url', `${CLINIC}/webhooks`] : [];
  visavis = await startServer(VISAVIS, [
    '--access', 'token', '--api-key', 'vv_clinic', '--api-secret', SECRET,
    // The clinic's pages are on another origin: the operator lets them open sessions.
    '--allowed-origin', CLINIC, '--public-origin', `http://${VISAVIS}`,
    ...webhooks,
  ]);
  clinic = spawn('node', ['examples/consultation/server.js'], {
    env: { ...process.env, PORT: String(BASE + 21), VISAVIS_URL: visavis.url, VISAVIS_API_SECRET: SECRET },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  for (let i = 0; i < 100; i++) {
    if (await fetch(CLINIC).then((r) => r.ok, () => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the clinic did not start');
});

test.afterAll(async () => {
  if (clinic) await stopServer(clinic);
  if (visavis) await stopServer(visavis.proc);
});

test.afterEach(closeContexts);

test('a doctor starts a consultation, admits the patient and calls; both see each other; hang up', async ({ browser }) => {
  const doctor = await (await browser.newContext()).newPage();
  await doctor.goto(CLINIC);
  await doctor.getByRole('button', { name: 'Start consultation' }).click();
  await expect(doctor.getByText('Waiting for Patient Li to arrive.')).toBeVisible();
  // The SDK came from visavis, with everything it declares.
  const exports = await doctor.evaluate(async (url) => Object.keys(await import(url)).sort(), `${visavis?.url}/sdk/visavis.js`);
  expect(exports).toEqual([
    'CallPeers', 'Client', 'LocalMedia', 'PROTOCOL_VERSION', 'PeerCall', 'QualityMeter', 'Signalling', 'SignallingError', 'connect',
    'diagnose', 'levelWord', 'listDevices', 'mediaBlocked', 'openLocalMedia', 'openTrack', 'qualityLevel', 'socketUrl', 'steady',
  ]);
  const patientLink = await doctor.getByRole('link', { name: /\/patient#k=/ }).getAttribute('href');
  expect(patientLink).toMatch(new RegExp(`^${CLINIC}/patient#k=`));
  const rooms = await fetch(`${visavis?.url}/api/v1/rooms`, { headers: { authorization: `Bearer ${SECRET}` } }).then((r) => r.json());
  room = rooms.rooms.at(-1).name;
  expect(room).toMatch(/^~/); // a private id visavis made: nobody named the room

  const patient = await (await browser.newContext()).newPage();
  await patient.goto(/** @type {string} */ (patientLink));
  await expect(patient.getByText('Waiting for the doctor to let you in')).toBeVisible();
  await doctor.getByRole('button', { name: 'Admit Patient Li' }).click();
  await expect(patient.getByText('Dr. Zhang will call you in a moment.')).toBeVisible();
  await expect(doctor.getByText('Patient Li is here.')).toBeVisible();

  await doctor.getByRole('button', { name: 'Call Patient Li' }).click();
  await expect(doctor.getByText('Calling Patient Li…')).toBeVisible();
  const incoming = patient.getByRole('dialog', { name: 'Dr. Zhang is calling you' });
  await expect(incoming).toBeVisible();
  await incoming.getByRole('button', { name: 'Accept' }).click();

  await expect(doctor.getByText('In a call with Patient Li')).toBeVisible();
  await expect(patient.getByText('In a call with Dr. Zhang')).toBeVisible();
  await expectDecoding(doctor, 'Patient Li');
  await expectDecoding(patient, 'Dr. Zhang');
  await expectDecoding(doctor, 'You');

  await doctor.getByRole('button', { name: 'Hang up' }).click();
  await expect(patient.getByText('The call has ended.')).toBeVisible();
  await expect(doctor.getByText('The call has ended.')).toBeVisible();
  await expect(doctor.getByRole('region', { name: 'Call' })).toBeHidden();
});

/**
 * POSTs a webhook signed as visavis signs them.
 * @param {object} event
 * @param {{secret?: string, t?: number}} [options]
 */
function postWebhook(event, { secret = SECRET, t = Math.floor(Date.now() / 1000) } = {}) {
  const body = JSON.stringify(event);
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return fetch(`${CLINIC}/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'visavis-signature': `t=${t},v1=${v1}` },
    body,
  });
}

test('the back end takes only webhooks signed with the API secret, recently', async () => {
  const event = { event: 'knock', id: `evt_test_${Date.now()}`, createdAt: Date.now(), room: 'test-room' };
  expect((await postWebhook(event, { secret: 'someone-else-s-secret-of-32-characters!' })).status).toBe(401);
  expect((await postWebhook(event, { t: Math.floor(Date.now() / 1000) - 301 })).status).toBe(401);
  const unsigned = await fetch(`${CLINIC}/webhooks`, { method: 'POST', body: JSON.stringify(event) });
  expect(unsigned.status).toBe(401);
  expect((await postWebhook(event)).status).toBe(204);
  expect((await postWebhook(event)).status).toBe(200); // the same event again: taken once
  const { events } = await fetch(`${CLINIC}/events`).then((r) => r.json());
  expect(events.filter((/** @type {{id: string}} */ e) => e.id === event.id)).toHaveLength(1);
});

test('visavis told the back end of the call, with signed webhooks', async () => {
  expect(room, 'the call test ran').not.toBe('');
  await expect.poll(async () => {
    const { events } = await fetch(`${CLINIC}/events`).then((r) => r.json());
    return events
      .filter((/** @type {{room: string, verified: boolean}} */ e) => e.room === room && e.verified)
      .map((/** @type {{event: string}} */ e) => e.event);
  }, { timeout: 10_000 }).toEqual(expect.arrayContaining(['call_started', 'call_ended']));
  const { events } = await fetch(`${CLINIC}/events`).then((r) => r.json());
  const ended = events.find((/** @type {{room: string, event: string}} */ e) => e.room === room && e.event === 'call_ended');
  expect(ended.reason).toBe('hangup');
  // Both pages reported when their media connected (`call_connected`, sent by the SDK's CallPeers).
  expect(ended.connectMs).toEqual({ caller: expect.any(Number), callee: expect.any(Number) });
});
