// @ts-check
//! Measurement, not a test of behaviour: time from clicking "Accept" to the first decoded
//! remote frame on each side, over 5 calls. Run with `npm run measure:accept`.
import { test, expect } from '@playwright/test';
import { joinRoom, roomName } from '../support.js';

const RUNS = 5;

/** Resolves with Date.now() when the remote <video> first shows a decoded frame. */
function watchFirstFrame() {
  // @ts-ignore test-only global
  window.firstFrameAt = new Promise((resolve) => {
    const check = () => {
      const v = /** @type {HTMLVideoElement | null} */ (document.querySelector('.tile.remote video'));
      if (v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames > 0) resolve(Date.now());
      else setTimeout(check, 2);
    };
    check();
  });
}

/** @param {number[]} xs */
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

test('accept to first decoded remote frame', async ({ browser }) => {
  test.setTimeout(RUNS * 30_000);
  const caller = [];
  const callee = [];
  for (let run = 0; run < RUNS; run++) {
    const room = roomName('measure');
    const alice = await joinRoom(browser, 'Alice', room);
    const bob = await joinRoom(browser, 'Bob', room);
    await alice.getByRole('button', { name: 'Call Bob' }).click();
    const accept = bob.getByRole('button', { name: 'Accept' });
    await expect(accept).toBeVisible();
    await alice.evaluate(watchFirstFrame);
    await bob.evaluate(watchFirstFrame);
    await bob.evaluate(() => {
      document.getElementById('accept')?.addEventListener('click', () => {
        // @ts-ignore test-only global
        window.acceptAt = Date.now();
      }, { capture: true });
    });
    await accept.click();
    // @ts-ignore test-only globals
    const acceptAt = await bob.evaluate(() => window.acceptAt);
    // @ts-ignore
    caller.push((await alice.evaluate(() => window.firstFrameAt)) - acceptAt);
    // @ts-ignore
    callee.push((await bob.evaluate(() => window.firstFrameAt)) - acceptAt);
    await alice.context().close();
    await bob.context().close();
  }
  console.log(`accept → first remote frame, ${RUNS} runs (ms)`);
  console.log(`  caller: ${caller.join(', ')}  median ${median(caller)}`);
  console.log(`  callee: ${callee.join(', ')}  median ${median(callee)}`);
});
