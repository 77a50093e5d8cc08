// @ts-check
//! The SDK as a product's page uses it: two clients made with `connect` from /sdk/visavis.js in
//! a real Chromium (fake devices) against the test server: presence, chat, a declined call, an
//! accepted one with media both ways, mute seen by the other side, hang-up, refusals with the
//! protocol's error codes, leaving; presence (who is in a call, who tried to call the busy one)
//! and a camera that is unavailable rather than off.
import { test, expect } from '@playwright/test';
import { closeContexts, roomName } from './support.js';

test.afterEach(closeContexts);

test('two SDK clients: chat, a declined call, a call with video both ways, mute, hang-up, errors', async ({ page }) => {
  await page.goto('/');
  const result = await page.evaluate(async (room) => {
    /** @type {typeof import('../web/sdk/visavis.js')} */
    const sdk = await import('/sdk/visavis.js');
    /** @type {string[]} */
    const log = [];
    /**
     * Resolves with the next `type` event's detail on `client`.
     * @template {keyof import('../web/sdk/visavis.js').ClientEvents} K
     * @param {import('../web/sdk/visavis.js').Client} client
     * @param {K} type
     * @returns {Promise<import('../web/sdk/visavis.js').ClientEvents[K]>}
     */
    const next = (client, type) => new Promise((resolve) => {
      const stop = client.on(type, (detail) => { stop(); resolve(detail); });
    });
    const ann = sdk.connect({ room, name: 'Ann' });
    const bob = sdk.connect({ room, name: 'Bob' });
    for (const [who, c] of /** @type {const} */ ([['ann', ann], ['bob', bob]])) {
      for (const type of /** @type {const} */ (['ringing', 'incoming', 'accepted', 'connected', 'call_ended'])) {
        c.on(type, () => log.push(`${who} ${type}`));
      }
    }
    const joinedAnn = await ann.join();
    const arrived = next(ann, 'member_joined');
    const joinedBob = await bob.join();
    const bobSeen = (await arrived).member;

    // Chat, stamped by the server.
    const chat = next(bob, 'chat');
    ann.sendChat('hello Bob');
    const message = await chat;

    // Ann calls, Bob declines.
    const incoming = next(bob, 'incoming');
    const declined = next(ann, 'call_ended');
    const bobEnded = next(bob, 'call_ended'); // Bob's client, too, must know before it calls
    ann.call(bobSeen.id);
    const ring = await incoming;
    bob.decline();
    const decline = await declined;
    await bobEnded;

    // Bob calls back, Ann accepts: both connected, video both ways.
    const annIncoming = next(ann, 'incoming');
    const connected = Promise.all([next(ann, 'connected'), next(bob, 'connected')]);
    bob.call(joinedAnn.you.id);
    await annIncoming;
    ann.accept();
    await connected;
    // Video flows: the remote track is unmuted once its packets arrive (a call that connected
    // while it rang has the track, muted, from before Accept).
    const flowing = (/** @type {import('../web/sdk/visavis.js').Client} */ c) => c.remoteStream?.getVideoTracks().filter((t) => !t.muted) ?? [];
    const videoArrived = async (/** @type {import('../web/sdk/visavis.js').Client} */ c) => {
      for (let i = 0; i < 150 && !flowing(c).length; i++) await new Promise((r) => setTimeout(r, 100));
      return flowing(c).length;
    };
    const video = [await videoArrived(ann), await videoArrived(bob)];
    // How the connection goes, every 2 s: bars from a real sample (the first, taken at once,
    // may know nothing yet).
    let quality = await next(bob, 'quality');
    for (let i = 0; i < 5 && quality.level === null; i++) quality = await next(bob, 'quality');
    const localTracks = ann.localStream?.getTracks().map((t) => t.kind).sort() ?? [];

    // Ann mutes: Bob is told.
    /** @type {Promise<{audio: boolean}>} */
    const muted = new Promise((resolve) => {
      const stop = bob.on('remote_media', (d) => { if (!d.audio) { stop(); resolve(d); } });
    });
    ann.setMicrophoneMuted(true);
    const mute = await muted;

    // Ann hangs up: both hear of it, both let go of their devices.
    const ended = Promise.all([next(ann, 'call_ended'), next(bob, 'call_ended')]);
    ann.hangUp();
    const hangup = await ended;

    // Refusals carry the protocol's codes.
    const refused = next(bob, 'error');
    bob.call(999_999);
    const unknown = await refused;
    /** @type {string} */
    let joinError = '';
    try {
      await sdk.connect({ room: 'no spaces allowed', name: 'Cy' }).join();
    } catch (err) {
      joinError = err instanceof sdk.SignallingError ? err.code : String(err);
    }

    // Leaving: the other sees it.
    const left = next(bob, 'member_left');
    ann.leave();
    const gone = (await left).member.name;
    bob.leave();

    return {
      admitted: [joinedAnn.state, joinedBob.state], bobSeen: bobSeen.name,
      message: { text: message.text, name: message.name, history: message.history },
      ringName: ring.name, decline, video, localTracks, mute: mute.audio,
      quality: { fromAnn: quality.peer === joinedAnn.you.id, level: quality.level, path: quality.sample.path },
      hangup: hangup.map((h) => h.reason), afterCall: [ann.activeCall, ann.localStream, bob.remoteStream],
      unknown: { code: unknown.code, request: unknown.request }, bobCall: bob.activeCall,
      joinError, gone, states: [ann.state, bob.state], log,
    };
  }, roomName('sdk'));

  expect(result.admitted).toEqual(['admitted', 'admitted']);
  expect(result.bobSeen).toBe('Bob');
  expect(result.message).toEqual({ text: 'hello Bob', name: 'Ann', history: false });
  expect(result.ringName).toBe('Ann');
  expect(result.decline).toMatchObject({ reason: 'declined' });
  expect(result.video).toEqual([1, 1]);
  expect(result.localTracks).toEqual(['audio', 'video']);
  expect(result.mute).toBe(false);
  expect(result.quality).toMatchObject({ fromAnn: true, path: 'host' });
  expect(result.quality.level).toBeGreaterThanOrEqual(2);
  expect(result.hangup).toEqual(['hangup', 'hangup']);
  expect(result.afterCall).toEqual([null, null, null]);
  expect(result.unknown).toEqual({ code: 'unknown_member', request: 'invite' });
  expect(result.bobCall).toBeNull();
  expect(result.joinError).toBe('invalid_room');
  expect(result.gone).toBe('Ann');
  expect(result.states).toEqual(['left', 'left']);
  // Each side's events in order (between the two, the order is the network's).
  const of = (/** @type {string} */ who) => result.log.filter((e) => e.startsWith(who)).map((e) => e.split(' ')[1]);
  expect(of('ann')).toEqual(['ringing', 'call_ended', 'incoming', 'accepted', 'connected', 'call_ended']);
  expect(of('bob')).toEqual(['incoming', 'call_ended', 'ringing', 'accepted', 'connected', 'call_ended']);
});

test('SDK presence: who is in a call, "tried to call you" for the busy one, and media unavailable rather than off', async ({ page }) => {
  await page.goto('/');
  const result = await page.evaluate(async (room) => {
    /** @type {typeof import('../web/sdk/visavis.js')} */
    const sdk = await import('/sdk/visavis.js');
    /**
     * Resolves with the first `type` event's detail on `client` that `match` accepts.
     * @template {keyof import('../web/sdk/visavis.js').ClientEvents} K
     * @param {import('../web/sdk/visavis.js').Client} client
     * @param {K} type
     * @param {(detail: import('../web/sdk/visavis.js').ClientEvents[K]) => boolean} [match]
     * @returns {Promise<import('../web/sdk/visavis.js').ClientEvents[K]>}
     */
    const next = (client, type, match = () => true) => new Promise((resolve) => {
      const stop = client.on(type, (detail) => { if (match(detail)) { stop(); resolve(detail); } });
    });
    const ann = sdk.connect({ room, name: 'Ann' });
    const bob = sdk.connect({ room, name: 'Bob' });
    const cy = sdk.connect({ room, name: 'Cy' });
    const annId = (await ann.join()).you.id;
    const bobId = (await bob.join()).you.id;
    await cy.join();
    /** @type {{id: number, inCall: boolean}[]} */
    const seenByCy = [];
    cy.on('member_call', (d) => seenByCy.push(d));

    // Ann calls Bob; Bob's camera and microphone cannot be opened (access refused).
    const incoming = next(bob, 'incoming');
    ann.call(bobId);
    await incoming;
    const getUserMedia = navigator.mediaDevices.getUserMedia;
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    const bothBusy = Promise.all([
      next(cy, 'member_call', (d) => d.id === annId && d.inCall),
      next(cy, 'member_call', (d) => d.id === bobId && d.inCall),
    ]);
    const unavailable = next(ann, 'remote_media', (d) => d.unavailable.audio || d.unavailable.video);
    bob.accept();
    await bothBusy;
    const media = await unavailable;
    navigator.mediaDevices.getUserMedia = getUserMedia;
    const busyNow = cy.inCall.sort((a, b) => a - b);

    // Cy calls Bob, who is busy: Cy hears `busy`, Bob is told Cy tried.
    const attempt = next(bob, 'call_attempt');
    const busy = next(cy, 'call_ended');
    cy.call(bobId);
    const tried = await attempt;
    const refused = await busy;

    // The call ends: both are free again, for Cy too.
    const free = Promise.all([
      next(cy, 'member_call', (d) => d.id === annId && !d.inCall),
      next(cy, 'member_call', (d) => d.id === bobId && !d.inCall),
    ]);
    ann.hangUp();
    await free;
    const busyAfter = cy.inCall;
    for (const c of [ann, bob, cy]) c.leave();
    return {
      busyNow, expectBusy: [annId, bobId].sort((a, b) => a - b), busyAfter, seenByCy: seenByCy.length,
      media: { audio: media.audio, video: media.video, unavailable: media.unavailable },
      tried, cyId: cy.you?.id, refused: refused.reason,
    };
  }, roomName('sdk-presence'));

  expect(result.busyNow).toEqual(result.expectBusy);
  expect(result.busyAfter).toEqual([]);
  expect(result.seenByCy).toBeGreaterThanOrEqual(4);
  expect(result.media).toEqual({ audio: false, video: false, unavailable: { audio: true, video: true } });
  expect(result.tried).toEqual({ from: result.cyId, name: 'Cy' });
  expect(result.refused).toBe('busy');
});
