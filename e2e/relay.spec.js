// @ts-check
//! Calls forced through TURN (`?relay` makes the page use iceTransportPolicy 'relay'): through
//! visavis's embedded TURN server, and through a real coturn with credentials minted by visavis.
import { test, expect } from '@playwright/test';
import { COTURN_APP_PORT, METRICS_PORT } from '../playwright.config.js';
import { closeContexts, expectDecoding, joinRoom, roomName, selectedPair, startCall } from './support.js';

test.afterEach(closeContexts);

/**
 * @param {import('@playwright/test').Browser} browser
 * @param {string} url
 */
async function relayedCall(browser, url) {
  const room = roomName('relay');
  const alice = await joinRoom(browser, 'Alice', room, { url });
  const bob = await joinRoom(browser, 'Bob', room, { url });
  await startCall(alice, bob, 'Alice', 'Bob');
  await expectDecoding(alice, 'Bob');
  await expectDecoding(bob, 'Alice');
  const pairs = [];
  for (const page of [alice, bob]) {
    await expect.poll(() => selectedPair(page)).not.toBeNull();
    const pair = await selectedPair(page);
    expect(pair?.local).toBe('relay');
    expect(pair?.remote).toBe('relay');
    pairs.push(pair);
  }
  return { alice, bob, pairs };
}

test('a relay-only call connects through the embedded TURN server, and both sides report it relayed when it ends', async ({ browser, baseURL }) => {
  const { alice, bob, pairs } = await relayedCall(browser, '/?relay');
  const turnPort = Number(new URL(/** @type {string} */ (baseURL)).port) - 4602;
  for (const pair of pairs) expect(pair?.url).toContain(`127.0.0.1:${turnPort}`);
  const metrics = async () => (await alice.request.get(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
  const allocations = Number(/^visavis_turn_allocations (\d+)$/m.exec(await metrics())?.[1]);
  expect(allocations).toBeGreaterThanOrEqual(2);

  // Each side's call_quality report says the media went through the relay over UDP.
  const relayed = async () =>
    Number(/^visavis_call_paths_total\{path="relay",transport="udp"\} (\d+)$/m.exec(await metrics())?.[1] ?? 0);
  const before = await relayed();
  await alice.waitForTimeout(2500); // a quality sample or more on both sides
  await bob.getByRole('button', { name: 'Hang up' }).click();
  await expect.poll(relayed).toBe(before + 2);
});

test('a relay-only call connects through coturn with credentials minted by visavis', async ({ browser }) => {
  const { pairs } = await relayedCall(browser, `http://127.0.0.1:${COTURN_APP_PORT}/?relay`);
  const coturnPort = COTURN_APP_PORT - 4602;
  for (const pair of pairs) expect(pair?.url).toContain(`127.0.0.1:${coturnPort}`);
});
