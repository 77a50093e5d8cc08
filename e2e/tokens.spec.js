// @ts-check
//! A product's links on an `--access token` server: `visavis token` (the real binary) mints a
//! host link for the doctor and a guest link for the patient; each page enters by itself under
//! the token's name, the patient knocks and is let in, and someone without a link, or with an
//! expired one, is told why not.
import { execFileSync } from 'node:child_process';
import { test, expect } from '@playwright/test';
import { closeContexts, startServer, stopServer } from './support.js';

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
