// @ts-check
//! A page opened over plain http:// from another machine is not a secure context, so the browser
//! gives it no camera or microphone. It must say so (with the https:// address to open), keep
//! calls off rather than show a call with nothing in it as "Connected", and still do the rest.
import { test, expect } from '@playwright/test';
import { closeContexts, joinRoom, roomName, startServer, stopServer } from './support.js';
import { HOST_IP, chromiumInNamespace, createNetwork, removeNetwork } from './netns.js';

const LISTEN = `${HOST_IP}:18097`;
/** @type {Awaited<ReturnType<typeof startServer>>} */
let server;

test.beforeAll(async () => {
  createNetwork();
  // Plain HTTP on the namespace host's address: not loopback, so not a trustworthy origin.
  server = await startServer(LISTEN, ['--insecure-http']);
});
test.afterAll(async () => {
  if (server) await stopServer(server.proc);
  removeNetwork();
});
test.afterEach(closeContexts);

/** @param {import('@playwright/test').TestInfo} testInfo */
const launchOptions = (testInfo) => /** @type {import('@playwright/test').LaunchOptions} */ (testInfo.project.use.launchOptions);

/** @param {import('@playwright/test').Page} page */
async function expectInsecureContext(page) {
  expect(await page.evaluate(() => window.isSecureContext)).toBe(false);
  expect(await page.evaluate(() => typeof navigator.mediaDevices)).toBe('undefined');
}

test('over plain http from another machine: the page says https is needed, with the link, and calls are off', async ({ playwright }, testInfo) => {
  const launch = launchOptions(testInfo);
  // Bob's browser lives in the namespace and opens the server as any other machine would.
  const away = await playwright.chromium.launch(chromiumInNamespace(launch));
  // Alice's browser is told to trust the origin, so she can call (as from an https page).
  const secure = `--unsafely-treat-insecure-origin-as-secure=${server.url}`;
  const here = await playwright.chromium.launch({ ...launch, args: [...(launch.args ?? []), secure] });
  try {
    const room = roomName('insecure');
    const landing = await (await away.newContext({ locale: 'en-US' })).newPage();
    await landing.goto(server.url);
    await expectInsecureContext(landing);
    const notice = landing.getByRole('alert').filter({ hasText: 'Camera and microphone need a secure connection: open' });
    await expect(notice).toBeVisible();
    await expect(notice).toContainText('the server must first be set up to serve HTTPS');
    await expect(notice.getByRole('link')).toHaveAttribute('href', `https://${LISTEN}/`);

    const bob = await joinRoom(away, 'Bob', room, { url: server.url });
    const alice = await joinRoom(here, 'Alice', room, { url: server.url });
    expect(await alice.evaluate(() => window.isSecureContext)).toBe(true);
    await expectInsecureContext(bob);
    // Once in the room, the link leads to the room.
    const link = bob.getByRole('alert').getByRole('link', { name: `https://${LISTEN}/r/${room}` });
    await expect(link).toBeVisible();
    await expect(link).toHaveAttribute('href', `https://${LISTEN}/r/${room}`);

    // Bob cannot start a call, and the buttons say why.
    for (const name of ['Call Alice', 'Join call']) {
      const button = bob.getByRole('button', { name });
      await expect(button).toBeDisabled();
      await expect(button).toHaveAccessibleDescription(/Camera and microphone need a secure connection/);
    }
    await expect(alice.getByRole('button', { name: 'Call Bob' })).toBeEnabled();

    // A call to him rings, but cannot be taken there: the dialog says why, and he declines.
    await alice.getByRole('button', { name: 'Call Bob' }).click();
    const incoming = bob.getByRole('dialog', { name: 'Alice is calling you' });
    await expect(incoming).toBeVisible();
    await expect(incoming.getByRole('button', { name: 'Accept' })).toBeDisabled();
    await expect(incoming.getByText('Camera and microphone need a secure connection', { exact: false })).toBeVisible();
    await expect(incoming.getByRole('link', { name: `https://${LISTEN}/r/${room}` })).toBeVisible();
    await incoming.getByRole('button', { name: 'Decline' }).click();
    await expect(alice.getByText('Bob declined the call.')).toBeVisible();

    // Nothing ever looked like a working call, nor claimed there were no devices.
    await expect(bob.getByRole('dialog', { name: 'Call with Alice' })).toBeHidden();
    await expect(bob.getByText('Connected')).toHaveCount(0);
    await expect(bob.getByText('No camera or microphone found', { exact: false })).toHaveCount(0);

    // The room and its chat work as usual.
    await bob.getByLabel('Message').fill('I will open the https link');
    await bob.getByRole('button', { name: 'Send' }).click();
    await expect(alice.getByRole('log').getByText('I will open the https link')).toBeVisible();
  } finally {
    await here.close();
    await away.close();
  }
});

test('the same in Chinese', async ({ playwright }, testInfo) => {
  const away = await playwright.chromium.launch(chromiumInNamespace(launchOptions(testInfo)));
  try {
    const page = await (await away.newContext({ locale: 'zh-CN' })).newPage();
    await page.goto(server.url);
    await expectInsecureContext(page);
    const notice = page.getByRole('alert').filter({ hasText: '摄像头和麦克风需要安全连接：请打开' });
    await expect(notice).toBeVisible();
    await expect(notice).toContainText('需要先让服务器提供 HTTPS');
    await expect(notice.getByRole('link')).toHaveAttribute('href', `https://${LISTEN}/`);
    await page.getByLabel('你的名字').fill('病人');
    await page.getByLabel('房间').fill(roomName('insecure-zh'));
    await page.getByRole('button', { name: '加入' }).click();
    await expect(page.getByText('你是 病人')).toBeVisible();
    await expect(page.getByRole('button', { name: '加入通话' })).toBeDisabled();
    await expect(page.getByText('未找到摄像头或麦克风', { exact: false })).toHaveCount(0);
    await expect(page.getByText('Camera and microphone', { exact: false })).toHaveCount(0);
  } finally {
    await away.close();
  }
});
