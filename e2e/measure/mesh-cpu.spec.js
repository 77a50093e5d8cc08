// @ts-check
//! Measurement, not a test of behaviour: CPU used by one Chromium (browser, GPU and renderer
//! processes together) in a 4-person group call, each person in their own Chromium as in real
//! life. Run with `npm run measure:mesh`.
import { test, expect, chromium } from '@playwright/test';
import config from '../../playwright.config.js';
import { expectDecoding, roomName } from '../support.js';
import { SAMPLE_MS, cpuSeconds, processTree } from './cpu.js';

const PEOPLE = ['Ann', 'Bob', 'Cy', 'Di'];
test('CPU of one Chromium in a 4-person mesh', async () => {
  test.setTimeout(180_000);
  const launch = /** @type {import('@playwright/test').LaunchOptions} */ (config.use?.launchOptions);
  const baseURL = /** @type {string} */ (config.use?.baseURL);
  const room = roomName('mesh');
  const people = [];
  for (const [i, name] of PEOPLE.entries()) {
    const marker = `--visavis-measure-person=${i}`;
    const browser = await chromium.launch({ ...launch, args: [...(launch.args ?? []), marker] });
    const context = await browser.newContext({ permissions: ['camera', 'microphone'] });
    const page = await context.newPage();
    await page.goto(baseURL);
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
  const before = trees.map(cpuSeconds);
  await people[0].page.waitForTimeout(SAMPLE_MS);
  const after = trees.map(cpuSeconds);
  const percent = after.map((a, i) => ((a - before[i]) / (SAMPLE_MS / 1000)) * 100);
  console.log(`4-person mesh, ${SAMPLE_MS / 1000} s sample, CPU of each Chromium (100% = one core):`);
  for (const [i, p] of people.entries()) console.log(`  ${p.name}: ${percent[i].toFixed(0)}% (${trees[i].length} processes)`);
  console.log(`  machine: ${(percent.reduce((a, b) => a + b, 0)).toFixed(0)}% of 200% (2 cores) for all four`);
  for (const p of people) await p.browser.close();
});
