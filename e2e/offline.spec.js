// @ts-check
//! Offline honesty: while the server cannot be reached, what needs it (Call, Join call, Send) is
//! disabled with the reason shown, and a chat message typed meanwhile stays in the box; once
//! the page is back, it can be sent.
import { test, expect } from '@playwright/test';
import { closeContexts, joinRoom, roomName, startServer, stopServer } from './support.js';

test.afterEach(closeContexts);

const LISTEN = `127.0.0.1:${Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 10}`;

test('while the server is unreachable, Call, Join call and Send are disabled with the reason; typed chat is kept', async ({ browser }) => {
  test.setTimeout(90_000);
  let server = await startServer(LISTEN);
  try {
    const room = roomName('offline');
    const alice = await joinRoom(browser, 'Alice', room, { url: server.url });
    const bob = await joinRoom(browser, 'Bob', room, { url: server.url });
    const call = alice.getByRole('button', { name: 'Call Bob' });
    const joinCall = alice.getByRole('button', { name: 'Join call' });
    const send = alice.getByRole('button', { name: 'Send' });
    await expect(call).toBeEnabled();

    await stopServer(server.proc);
    await expect(alice.getByText('Connection to the server lost', { exact: false })).toBeVisible();
    const reason = 'Not connected to the server: calls wait until the connection is back.';
    await expect(alice.getByText(reason)).toBeVisible();
    await expect(call).toBeDisabled();
    await expect(call).toHaveAccessibleDescription(reason);
    await expect(joinCall).toBeDisabled();
    await expect(joinCall).toHaveAccessibleDescription(reason);

    // A message typed now is not sent, nor thrown away: it stays, and the page says why.
    await alice.getByLabel('Message').fill('typed while the server was down');
    await expect(send).toBeDisabled();
    await alice.getByLabel('Message').press('Enter');
    await expect(alice.getByLabel('Message')).toHaveValue('typed while the server was down');
    await expect(alice.getByRole('alert').filter({ hasText: 'your message stays here' })).toBeVisible();

    // The server is back: the page rejoins, everything works again, the message can be sent.
    server = await startServer(LISTEN);
    await expect(alice.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
    await expect(alice.getByText(reason)).toBeHidden();
    await expect(alice.getByRole('button', { name: 'Call Bob' })).toBeEnabled({ timeout: 20_000 });
    await expect(joinCall).toBeEnabled();
    await expect(alice.getByLabel('Message')).toHaveValue('typed while the server was down');
    await expect(bob.getByRole('button', { name: 'Call Alice' })).toBeEnabled({ timeout: 20_000 });
    await send.click();
    await expect(alice.getByLabel('Message')).toHaveValue('');
    await expect(bob.getByRole('log').getByText('typed while the server was down')).toBeVisible();
  } finally {
    await stopServer(server.proc);
  }
});
