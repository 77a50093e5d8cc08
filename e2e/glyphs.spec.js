// @ts-check
//! Chinese pages without missing-glyph boxes: on the landing, pre-join, room, ringing and call
//! screens in Chinese, every character of the visible text is drawn with a real glyph in the
//! font its element uses — not the "tofu" box a font stack without CJK faces falls back to
//! (Debian's fonts-noto-cjk gives them; scripts/test.sh installs it). A control run in a
//! Chromium whose fontconfig hides the CJK fonts shows that the check finds boxes when they are
//! there.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, expect, chromium } from '@playwright/test';
import { SIZES, closeContexts, roomName } from './support.js';

test.afterEach(closeContexts);

/**
 * Runs in the page: the characters of the visible text (text nodes of rendered elements, the
 * shown option of each picker, typed values and placeholders) that the page's fonts have no
 * glyph for, with where they were seen. A character is drawn on a canvas in its element's font
 * and compared, pixel for pixel, with a code point no font has (U+10FFFD, private use): the
 * browser draws both as the same missing-glyph box, or the character has a glyph.
 * @returns {{char: string, code: string, font: string, where: string}[]}
 */
function missingGlyphs() {
  /** @type {Map<string, Map<string, string>>} font → character → where */
  const byFont = new Map();
  /** @param {Element} el @param {string} text */
  const take = (el, text) => {
    const style = getComputedStyle(el);
    const font = `${style.fontStyle} ${style.fontWeight} 32px ${style.fontFamily}`;
    const chars = byFont.get(font) ?? new Map();
    byFont.set(font, chars);
    for (const char of text) {
      // Spaces, controls and invisible format characters are drawn as nothing by design.
      if (/[\s\p{Cc}\p{Cf}]/u.test(char)) continue;
      if (!chars.has(char)) chars.set(char, (el.id ? `#${el.id}` : el.tagName.toLowerCase()) + ` "${text.trim().slice(0, 30)}"`);
    }
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || !node.textContent?.trim() || el.closest('script, style, option')) continue;
    if (!el.checkVisibility({ visibilityProperty: true })) continue;
    take(el, node.textContent);
  }
  for (const el of document.querySelectorAll('select, input, textarea')) {
    if (!el.checkVisibility({ visibilityProperty: true })) continue;
    if (el instanceof HTMLSelectElement) take(el, el.selectedOptions[0]?.text ?? '');
    else if (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement) take(el, `${el.value}${el.placeholder}`);
  }

  const canvas = document.createElement('canvas');
  canvas.width = 48;
  canvas.height = 48;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d', { willReadFrequently: true }));
  /** @param {string} char @param {string} font */
  const draw = (char, font) => {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.font = font;
    ctx.fillText(char, 4, 38);
    return ctx.getImageData(0, 0, canvas.width, canvas.height).data.join(',');
  };
  const missing = [];
  for (const [font, chars] of byFont) {
    const box = draw('\u{10FFFD}', font);
    for (const [char, where] of chars) {
      if (draw(char, font) === box) {
        missing.push({ char, code: `U+${char.codePointAt(0)?.toString(16).toUpperCase().padStart(4, '0')}`, font, where });
      }
    }
  }
  return missing;
}

/**
 * Expects every visible character of `page` to have a glyph; also checks that the screen has
 * Chinese text to check at all.
 * @param {import('@playwright/test').Page} page
 * @param {string} screen
 */
async function expectNoBoxes(page, screen) {
  expect(await page.evaluate(() => /\p{Script=Han}/u.test(document.body.innerText)), `Chinese text on ${screen}`).toBe(true);
  expect(await page.evaluate(missingGlyphs), `missing glyphs on ${screen}`).toEqual([]);
}

/**
 * Opens visavis in Chinese and joins `room` (by the form's ids: the labels are Chinese).
 * @param {import('@playwright/test').Browser} browser
 * @param {string} name
 * @param {string} room
 * @param {import('@playwright/test').BrowserContextOptions} context
 * @param {(page: import('@playwright/test').Page) => Promise<void>} [before] checks on the landing
 */
async function joinInChinese(browser, name, room, context, before) {
  const page = await (await browser.newContext({ ...context, locale: 'zh-CN' })).newPage();
  await page.goto('/');
  await expect(page.locator('#join')).toHaveText('加入');
  if (before) await before(page);
  await page.locator('#name').fill(name);
  await page.locator('#room').fill(room);
  await page.locator('#join').click();
  await expect(page.locator('#lobby')).toBeVisible();
  return page;
}

for (const [size, context] of Object.entries(SIZES)) {
  test(`Chinese pages show no missing-glyph boxes: landing, pre-join, room, call — ${size}`, async ({ browser }) => {
    test.setTimeout(120_000);
    const room = roomName('字形');
    const doctor = await joinInChinese(browser, '李医生', room, context, async (page) => {
      await expectNoBoxes(page, 'landing');
      await page.locator('#prejoin-toggle').click();
      await expect(page.locator('#preview')).toBeVisible();
      await expect(page.locator('#pj-camera option')).not.toHaveCount(1);
      await expectNoBoxes(page, 'pre-join');
    });
    const patient = await joinInChinese(browser, '王小明', room, context);
    await expect(doctor.locator('#members button').first()).toBeVisible();
    await expectNoBoxes(doctor, 'room');

    await doctor.locator('#members button').first().click();
    await expect(patient.locator('#incoming')).toBeVisible();
    await expectNoBoxes(doctor, 'outgoing call');
    await expectNoBoxes(patient, 'incoming call');
    await patient.locator('#accept').click();
    await expect(doctor.locator('#call-stage .tile.remote')).toBeVisible();
    await expect(doctor.locator('#mute')).toBeEnabled();
    await doctor.locator('#mute').click();
    await expect(patient.locator('.tile.remote .muted-badge')).toBeVisible();
    await expectNoBoxes(patient, 'call, other side muted');
    if (!(await doctor.locator('#chat').isVisible())) await doctor.locator('#chat-toggle').click();
    await doctor.locator('#chat-input').fill('您好，请问哪里不舒服？');
    await doctor.locator('#chat-send').click();
    await expect(doctor.locator('#chat-log li')).toHaveCount(1);
    await expectNoBoxes(doctor, 'call with the chat open');
  });
}

test('the check finds the boxes of a browser without CJK fonts', async () => {
  // Fontconfig as the system has it, minus every font that covers Chinese.
  const dir = mkdtempSync(join(tmpdir(), 'visavis-fonts-'));
  const config = join(dir, 'fonts.conf');
  writeFileSync(config, `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <selectfont><rejectfont><pattern><patelt name="lang"><string>zh-cn</string></patelt></pattern></rejectfont></selectfont>
  <cachedir>${dir}/cache</cachedir>
</fontconfig>
`);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu'],
    env: { ...process.env, FONTCONFIG_FILE: config },
  });
  try {
    const page = await (await browser.newContext({ locale: 'zh-CN', baseURL: test.info().project.use.baseURL })).newPage();
    await page.goto('/');
    await expect(page.locator('#join')).toHaveText('加入');
    const missing = await page.evaluate(missingGlyphs);
    expect(missing.map((m) => m.char)).toContain('加');
    // Latin letters still have their glyphs: only what lacks a font is reported.
    expect(missing.map((m) => m.char)).not.toContain('v');
  } finally {
    await browser.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
