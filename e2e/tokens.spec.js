// @ts-check
//! A product's links on an `--access token` server: `visavis token` (the real binary) mints a
//! host link for the doctor and a guest link for the patient; each page enters by itself under
//! the token's name, the patient knocks and is let in, and someone without a link, or with an
//! expired one, is told why not.
import { execFileSync } from 'node:child_process';
import { test, expect } from '@playwright/test';
import { audioEnergyDuring, closeContexts, expectDecoding, inbound, startCall, startServer, stopServer } from './support.js';

test.afterEach(closeContexts);

const PORT = Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 7;
const LISTEN = `127.0.0.1:${PORT}`;
const CREDENTIALS = ['--api-key', 'vv_e2e', '--api-secret', 'e2e-secret-of-at-least-32-characters!'];

/**
 * A link from `visavis token` (its second line) for `args`.
 * @param {string[]} args
 */
function link(args) {
  const out = execFileSync('target/debug/visavis', ['token', ...args, ...CREDENTIALS, '--public-origin', `http://${LISTEN}`]);
  const [, url] = out.toString().trim().split('\n');
  return url;
}

test('a doctor and a patient enter by their links; the patient knocks; no link, no entry', async ({ browser }) => {
  const server = await startServer(LISTEN, ['--access', 'token', ...CREDENTIALS, '--allowed-origin', `http://${LISTEN}`]);
  try {
    const room = `visit-${Date.now().toString(36)}`;
    const doctorLink = link(['--room', room, '--name', 'Dr. Zhang', '--role', 'host']);
    const patientLink = link(['--room', room, '--name', 'Patient Li']);
    expect(doctorLink).toMatch(new RegExp(`^http://${LISTEN}/r/${room}#token=`));

    const doctor = await (await browser.newContext()).newPage();
    await doctor.goto(doctorLink);
    await expect(doctor.getByText('You are Dr. Zhang')).toBeVisible();
    // The token left the address bar at once: the address can be shared as it is.
    expect(doctor.url()).toBe(`http://${LISTEN}/r/${room}`);

    const patient = await (await browser.newContext()).newPage();
    await patient.goto(patientLink);
    await expect(patient.getByText('Waiting for the host to let you in')).toBeVisible();
    await doctor.getByRole('button', { name: 'Admit Patient Li' }).click();
    await expect(patient.getByText('You are Patient Li')).toBeVisible();
    await expect(patient.getByText('Dr. Zhang', { exact: false }).first()).toBeVisible();

    // Without a link: told that this server needs one.
    const stranger = await (await browser.newContext()).newPage();
    await stranger.goto(`http://${LISTEN}/r/${room}`);
    await stranger.getByLabel('Your name').fill('Stranger');
    await stranger.getByRole('button', { name: 'Join' }).click();
    await expect(stranger.getByText('This server admits only people with a link')).toBeVisible();

    // An expired link: told so, in Chinese too.
    const late = link(['--room', room, '--name', 'Late', '--ttl', '1s']);
    await new Promise((r) => setTimeout(r, 1500));
    const latecomer = await (await browser.newContext({ locale: 'zh-CN' })).newPage();
    await latecomer.goto(late);
    await expect(latecomer.getByText('此链接已过期。请索取新的链接。')).toBeVisible();
  } finally {
    await stopServer(server.proc);
  }
});

test('a patient whose link allows no video and no screen: no camera, no such buttons, and a video forced into the call is not shown', async ({ browser }) => {
  const server = await startServer(LISTEN, ['--access', 'token', ...CREDENTIALS, '--allowed-origin', `http://${LISTEN}`]);
  try {
    const room = `visit-${Date.now().toString(36)}`;
    const doctor = await (await browser.newContext()).newPage();
    await doctor.goto(link(['--room', room, '--name', 'Dr. Zhang', '--role', 'host']));
    await expect(doctor.getByText('You are Dr. Zhang')).toBeVisible();
    const patient = await (await browser.newContext()).newPage();
    await patient.goto(link(['--room', room, '--name', 'Patient Li', '--skip-lobby', '--no-video', '--no-screen']));
    await expect(patient.getByText('You are Patient Li')).toBeVisible();

    await startCall(doctor, patient, 'Dr. Zhang', 'Patient Li');
    await expectDecoding(patient, 'Dr. Zhang');
    // The patient's camera was never opened and its controls are not offered; the microphone is.
    await expect(patient.getByRole('button', { name: 'Mute' })).toBeVisible();
    await expect(patient.getByRole('button', { name: 'Stop video' })).toBeHidden();
    await expect(patient.getByRole('button', { name: 'Share screen' })).toBeHidden();
    const sending = () => patient.evaluate(() =>
      // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
      /** @type {RTCPeerConnection} */ (window.visavis.pc).getSenders().map((s) => s.track?.kind).filter(Boolean).sort());
    expect(await sending()).toEqual(['audio']);
    await expect.poll(async () => (await audioEnergyDuring(doctor, 1000)).packets).toBeGreaterThan(0);

    // A patient's browser that sends video anyway (here: a canvas stream added by hand, as a
    // modified page could): the doctor's browser plays none of it.
    await patient.evaluate(() => {
      const canvas = Object.assign(document.createElement('canvas'), { width: 160, height: 120 });
      const paint = canvas.getContext('2d');
      setInterval(() => { if (paint) { paint.fillStyle = `hsl(${Date.now() % 360} 80% 50%)`; paint.fillRect(0, 0, 160, 120); } }, 40);
      const track = canvas.captureStream(25).getVideoTracks()[0];
      // @ts-ignore: the app exposes its live peer connection as window.visavis.pc
      /** @type {RTCPeerConnection} */ (window.visavis.pc).addTrack(track, new MediaStream([track]));
    });
    await expect.poll(sending).toEqual(['audio', 'video']);
    // The video does arrive at the doctor's browser (so the check below can see a difference)...
    await expect.poll(async () => (await inbound(doctor, 'video')).packets, { timeout: 15_000 }).toBeGreaterThan(0);
    // ...and is not shown: the patient's tile has no video track and decodes no frames.
    const shown = () => doctor.getByLabel('Patient Li', { exact: true }).evaluate((v) => {
      const stream = /** @type {MediaStream | null} */ (/** @type {HTMLVideoElement} */ (v).srcObject);
      return { tracks: stream?.getVideoTracks().length ?? 0, frames: /** @type {HTMLVideoElement} */ (v).getVideoPlaybackQuality().totalVideoFrames };
    });
    await doctor.waitForTimeout(1500);
    expect(await shown()).toEqual({ tracks: 0, frames: 0 });
  } finally {
    await stopServer(server.proc);
  }
});

test('with a product\'s link the network check on the pre-join screen reaches the relay too (the token gets it TURN credentials)', async ({ browser }) => {
  const turnPort = PORT - 4602;
  const server = await startServer(LISTEN, ['--access', 'token', ...CREDENTIALS, '--allowed-origin', `http://${LISTEN}`, '--turn-listen', `127.0.0.1:${turnPort}`]);
  try {
    const room = `visit-${Date.now().toString(36)}`;
    const page = await (await browser.newContext()).newPage();
    await page.goto(link(['--room', room, '--name', 'Patient Li', '--skip-lobby']));
    await expect(page.getByText('You are Patient Li')).toBeVisible();
    // Back on the pre-join screen, the page still holds its link's token.
    await page.getByRole('button', { name: 'Leave room' }).click();
    await page.getByRole('region', { name: 'Before you join' }).getByRole('button', { name: 'Test my connection' }).click();
    const dialog = page.getByRole('dialog', { name: 'Your connection' });
    await expect(dialog.getByRole('status')).toHaveText(/^Check finished\./, { timeout: 30_000 });
    await expect(dialog.locator('dt:text-is("Relay over UDP") + dd')).toHaveText('reachable');
    await expect(dialog.locator('dt:text-is("Relay over TCP") + dd')).toHaveText('reachable');
    await expect(dialog.getByRole('status')).toContainText('calls should connect');

    // Without a token, on the same server: STUN alone (the relay is for the links' holders).
    const stranger = await (await browser.newContext()).newPage();
    await stranger.goto(`http://${LISTEN}/`);
    await stranger.getByRole('button', { name: 'Test my connection' }).click();
    const theirs = stranger.getByRole('dialog', { name: 'Your connection' });
    await expect(theirs.getByRole('status')).toHaveText(/^Check finished\./, { timeout: 30_000 });
    await expect(theirs.locator('dt:text-is("Relay over UDP") + dd')).toHaveText('not offered by this server');
  } finally {
    await stopServer(server.proc);
  }
});
