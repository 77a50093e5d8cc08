// @ts-check
//! Measurement, not a test of behaviour: CPU used by each Chromium (browser, GPU and renderer
//! processes together) and by visavis in a 4-person group call through the SFU, each person in
//! their own Chromium, as `measure:mesh` does for the mesh. Run with `npm run measure:sfu`.
import { test, expect, chromium } from '@playwright/test';
import config from '../../playwright.config.js';
import { expectDecoding, roomName, startServer, stopServer } from '../support.js';
import { SAMPLE_MS, cpuSeconds, processTree } from './cpu.js';

const PEOPLE = ['Ann', 'Bob', 'Cy', 'Di'];
const LISTEN = `127.0.0.1:${Number(process.env.VISAVIS_E2E_PORT ?? 18080) + 21}`;

test('CPU of one Chromium, and of visavis, in a 4-person call through the SFU', async () => {
  test.setTimeout(180_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (config.use?.launchOptions);
  const server = await startServer(LISTEN, ['--state', 'none']);
  const room = roomName('sfu');
  const people = [];
  for (const [i, name] of PEOPLE.entries()) {
    const marker = `--visavis-measure-person=${i}`;
    const browser = await chromium.launch({ ...launch, args: [...(launch.args ?? []), marker] });
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const page = await context.newPage();
    await page.goto(server.url);
    await page.getByLabel('Your name').fill(name);
    await page.getByLabel('Room').fill(room);
    await page.getByRole('button', { name: 'Join' }).click();
    await page.getByRole('button', { name: 'Join call' }).click();
    await expect(page.getByRole('dialog', { name: 'Group call' })).toBeVisible();
    people.push({ name, marker, browser, page });
  }
  for (const p of people) {
    for (const other of PEOPLE.filter((n) => n !== p.name)) await expectDecoding(p.page, other, 5);
  }
  await people[0].page.waitForTimeout(5_000); // let bandwidth estimation settle
  const trees = people.map((p) => processTree(p.marker));
  const visavis = [/** @type {number} */ (server.proc.pid)];
  const before = trees.map(cpuSeconds);
  const serverBefore = cpuSeconds(visavis);
  await people[0].page.waitForTimeout(SAMPLE_MS);
  const after = trees.map(cpuSeconds);
  const serverPercent = ((cpuSeconds(visavis) - serverBefore) / (SAMPLE_MS / 1000)) * 100;
  const percent = after.map((a, i) => ((a - before[i]) / (SAMPLE_MS / 1000)) * 100);
  console.log(`4-person call through the SFU, ${SAMPLE_MS / 1000} s sample, CPU (100% = one core):`);
  for (const [i, p] of people.entries()) console.log(`  ${p.name}: ${percent[i].toFixed(0)}% (${trees[i].length} processes)`);
  console.log(`  visavis (debug build, SFU and signalling): ${serverPercent.toFixed(0)}%`);
  const total = percent.reduce((a, b) => a + b, 0) + serverPercent;
  console.log(`  machine: ${total.toFixed(0)}% of 200% (2 cores) for all four and visavis`);
  for (const p of people) await p.browser.close();
  await stopServer(server.proc);
});
