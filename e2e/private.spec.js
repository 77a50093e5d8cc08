// @ts-check
//! Private rooms as a doctor and the people at the door see them: a room made with "New private
//! room", its guest and host links, the waiting room (knock, admit, deny), the host's controls
//! (remove, mute, make host, lock, let everyone in, end for everyone), and a call inside it. The
//! people-facing texts are checked in English and in Simplified Chinese.
import { test, expect } from '@playwright/test';
import { closeContexts, expectAccessible, expectDecoding, startCall } from './support.js';

test.afterEach(closeContexts);

/** @typedef {import('@playwright/test').Page} Page */
/** @typedef {import('@playwright/test').Browser} Browser */

/** What people see, per language: the app's own words, so the tests read as the person does. */
const TEXT = {
  en: {
    locale: 'en-US',
    doctor: 'Dr. Zhang',
    patient: 'Patient Li',
    stranger: 'Stranger',
    yourName: 'Your name',
    join: 'Join',
    create: 'New private room',
    waiting: 'Waiting for the host to let you in',
    leave: 'Leave',
    people: 'People in this room',
    /** @param {string} n */ you: (n) => `You are ${n}`,
    host: '(host)',
    /** @param {string} n */ wants: (n) => `${n} wants to join`,
    /** @param {string} n */ admit: (n) => `Admit ${n}`,
    /** @param {string} n */ deny: (n) => `Deny ${n}`,
    denied: 'The host did not let you in.',
    /** @param {string} n */ remove: (n) => `Remove ${n}`,
    /** @param {string} h */ removed: (h) => `${h} removed you from the room`,
    /** @param {string} n */ mute: (n) => `Mute ${n}`,
    /** @param {string} h */ mutedBy: (h) => `${h} muted you`,
    /** @param {string} n */ makeHost: (n) => `Make ${n} host`,
    /** @param {string} n */ call: (n) => `Call ${n}`,
    lock: 'Lock room',
    unlock: 'Unlock room',
    locked: 'This room is locked',
    letIn: 'Let everyone in',
    lobbyOn: 'Turn the waiting room back on',
    end: 'End for everyone',
    endYes: 'Yes, end for everyone',
    endedByYou: 'You ended the room for everyone',
    /** @param {string} h */ ended: (h) => `${h} ended the room for everyone`,
    shareHistory: 'Share chat history with people who join',
    message: 'Message',
    send: 'Send',
  },
  zh: {
    locale: 'zh-CN',
    doctor: '张医生',
    patient: '李患者',
    stranger: '陌生人',
    yourName: '你的名字',
    join: '加入',
    create: '新建私密房间',
    waiting: '正在等待主持人允许你进入',
    leave: '离开',
    people: '房间里的人',
    /** @param {string} n */ you: (n) => `你是 ${n}`,
    host: '（主持人）',
    /** @param {string} n */ wants: (n) => `${n} 请求加入`,
    /** @param {string} n */ admit: (n) => `允许 ${n} 进入`,
    /** @param {string} n */ deny: (n) => `拒绝 ${n}`,
    denied: '主持人没有允许你进入。',
    /** @param {string} n */ remove: (n) => `移出 ${n}`,
    /** @param {string} h */ removed: (h) => `${h} 将你移出了房间`,
    /** @param {string} n */ mute: (n) => `将 ${n} 静音`,
    /** @param {string} h */ mutedBy: (h) => `${h} 将你静音了`,
    /** @param {string} n */ makeHost: (n) => `设 ${n} 为主持人`,
    /** @param {string} n */ call: (n) => `呼叫 ${n}`,
    lock: '锁定房间',
    unlock: '解锁房间',
    locked: '此房间已锁定',
    letIn: '让所有人直接进入',
    lobbyOn: '重新开启等候室',
    end: '为所有人结束',
    endYes: '确定，为所有人结束',
    endedByYou: '你已为所有人结束了房间',
    /** @param {string} h */ ended: (h) => `${h} 已为所有人结束了房间`,
    shareHistory: '与新加入的人共享聊天记录',
    message: '消息',
    send: '发送',
  },
};
/** @typedef {typeof TEXT.en} Text */

/** The guest link as shown to hosts: `…/r/~<id>`. */
const GUEST_LINK = /\/r\/~[A-Za-z0-9_-]+$/;
/** The host link: the key in the fragment. */
const HOST_LINK = /\/r\/~[A-Za-z0-9_-]+#host=[A-Za-z0-9_%-]+$/;

/**
 * A fresh browser context (own storage, own permissions) on `url`.
 * @param {Browser} browser
 * @param {Text} tx
 * @param {string} url
 * @param {string[]} [permissions]
 */
async function open(browser, tx, url, permissions) {
  const context = await browser.newContext({ locale: tx.locale, ...(permissions ? { permissions } : {}) });
  const page = await context.newPage();
  await page.goto(url);
  return page;
}

/**
 * The doctor makes a private room and becomes its host.
 * @param {Browser} browser
 * @param {Text} tx
 * @param {string[]} [permissions]
 */
async function createRoom(browser, tx, permissions) {
  const doctor = await open(browser, tx, '/', permissions);
  await doctor.getByLabel(tx.yourName).fill(tx.doctor);
  await doctor.getByRole('button', { name: tx.create }).click();
  await expect(doctor.getByText(`${tx.you(tx.doctor)} ${tx.host}`)).toBeVisible();
  const guestLink = /** @type {string} */ (await doctor.getByRole('link', { name: GUEST_LINK }).getAttribute('href'));
  const hostLink = /** @type {string} */ (await doctor.getByRole('link', { name: HOST_LINK }).getAttribute('href'));
  // The address bar holds the guest link, never the key.
  expect(doctor.url()).toBe(guestLink);
  expect(hostLink.startsWith(`${guestLink}#host=`)).toBe(true);
  return { doctor, guestLink, hostLink };
}

/**
 * Someone opens the guest link and asks to come in; they wait.
 * @param {Browser} browser
 * @param {Text} tx
 * @param {string} guestLink
 * @param {string} name
 */
async function knock(browser, tx, guestLink, name) {
  const page = await open(browser, tx, guestLink);
  await page.getByLabel(tx.yourName).fill(name);
  await page.getByRole('button', { name: tx.join, exact: true }).click();
  await expect(page.getByRole('heading', { name: tx.waiting })).toBeVisible();
  return page;
}

/**
 * The host lets `name` in from the knock notice, and they are in the room.
 * @param {Page} host
 * @param {Page} guest
 * @param {Text} tx
 * @param {string} name
 */
async function admit(host, guest, tx, name) {
  await expect(host.getByText(tx.wants(name))).toBeVisible();
  await host.getByRole('button', { name: tx.admit(name) }).click();
  await expect(guest.getByText(tx.you(name))).toBeVisible();
  await expect(host.getByText(tx.wants(name))).toBeHidden();
}

/**
 * The people list (its heading is "People in this room").
 * @param {Page} page @param {Text} tx
 */
const people = (page, tx) => page.locator('#people').filter({ has: page.getByRole('heading', { name: tx.people }) });

/** @param {Page} page @param {Text} tx @param {string} text */
async function say(page, tx, text) {
  await page.getByLabel(tx.message).fill(text);
  await page.getByRole('button', { name: tx.send, exact: true }).click();
}

/**
 * Screenshots for the README: the links, the room's id and chat times change every run, so
 * they are masked.
 * @param {Page} page
 * @param {string} path
 */
async function screenshot(page, path) {
  await page.setViewportSize({ width: 1280, height: 860 });
  await page.screenshot({ path, mask: [page.locator('#host-links a'), page.locator('#chat-log time')], maskColor: '#d1d5db' });
}

for (const [lang, tx] of Object.entries(TEXT)) {
  test(`[${lang}] a doctor makes a private room; a patient knocks and is let in; a stranger is turned away`, async ({ browser }) => {
    const { doctor, guestLink } = await createRoom(browser, tx);
    await say(doctor, tx, 'notes before anyone came');

    const patient = await knock(browser, tx, guestLink, tx.patient);
    // In the lobby: nothing of the room — no people, no chat, not even the host's name.
    await expect(people(patient, tx)).toBeHidden();
    await expect(patient.getByRole('log')).toBeHidden();
    await expect(patient.getByText(tx.doctor)).toHaveCount(0);
    await expect(patient.getByText('notes before anyone came')).toHaveCount(0);

    // The doctor sees and hears the knock.
    await expect(doctor.getByText(tx.wants(tx.patient))).toBeVisible();
    expect(await doctor.evaluate(() => window.visavis.chimes)).toBeGreaterThan(0);
    if (lang === 'en') await screenshot(doctor, 'docs/screenshots/waiting-room.png');
    // axe on both sides of a knock: the waiting screen, and the host's room with the knock.
    await expectAccessible(patient, `waiting room (${lang})`);
    await expectAccessible(doctor, `host with a knock (${lang})`);
    await admit(doctor, patient, tx, tx.patient);

    // Let in: the patient sees the room and the doctor, marked as host, but not the chat from
    // before (history is not shared unless the host says so).
    await expect(people(patient, tx).getByText(`${tx.doctor} ${tx.host}`)).toBeVisible();
    await expect(patient.getByRole('button', { name: tx.call(tx.doctor) })).toBeVisible();
    await expect(doctor.getByRole('button', { name: tx.call(tx.patient) })).toBeVisible();
    await expect(patient.getByRole('log')).toBeVisible();
    await expect(patient.getByText('notes before anyone came')).toHaveCount(0);
    await say(patient, tx, 'hello doctor');
    await expect(doctor.getByRole('log').getByText('hello doctor')).toBeVisible();
    // Host controls are the host's alone.
    await expect(doctor.getByRole('button', { name: tx.remove(tx.patient) })).toBeVisible();
    await expect(patient.getByRole('button', { name: tx.remove(tx.doctor) })).toHaveCount(0);
    await expect(patient.getByRole('button', { name: tx.lock })).toHaveCount(0);
    if (lang === 'en') await screenshot(doctor, 'docs/screenshots/host-controls.png');
    await expectAccessible(doctor, `host controls (${lang})`);

    // A stranger with the guest link knocks and is turned away, and is told so.
    const stranger = await knock(browser, tx, guestLink, tx.stranger);
    await expect(doctor.getByText(tx.wants(tx.stranger))).toBeVisible();
    await doctor.getByRole('button', { name: tx.deny(tx.stranger) }).click();
    await expect(stranger.getByRole('alert').filter({ hasText: tx.denied })).toBeVisible();
    await expect(stranger.getByRole('button', { name: tx.join, exact: true })).toBeVisible();
    await expect(doctor.getByText(tx.wants(tx.stranger))).toBeHidden();
    await expect(people(doctor, tx).getByText(tx.stranger)).toHaveCount(0);
    await expect(stranger.getByText('hello doctor')).toHaveCount(0);

    // The host shares the history: the next person let in reads what was said before.
    await doctor.getByLabel(tx.shareHistory).check();
    const nurse = await knock(browser, tx, guestLink, tx.stranger);
    await admit(doctor, nurse, tx, tx.stranger);
    await expect(nurse.getByRole('log').getByText('notes before anyone came')).toBeVisible();
    await expect(nurse.getByRole('log').getByText('hello doctor')).toBeVisible();
    await expect(doctor.getByLabel(tx.shareHistory)).toBeChecked();
  });

  test(`[${lang}] the doctor removes someone, who must knock again; locks the room against strangers; ends it for everyone`, async ({ browser }) => {
    const { doctor, guestLink } = await createRoom(browser, tx);
    const patient = await knock(browser, tx, guestLink, tx.patient);
    await admit(doctor, patient, tx, tx.patient);

    // Removed: told so, back at the start; even with the waiting room off, they knock again.
    await doctor.getByRole('button', { name: tx.remove(tx.patient) }).click();
    await expect(patient.getByRole('alert').filter({ hasText: tx.removed(tx.doctor) })).toBeVisible();
    await expect(people(doctor, tx).getByText(tx.patient)).toHaveCount(0);
    await doctor.getByRole('button', { name: tx.letIn }).click();
    await expect(doctor.getByRole('button', { name: tx.lobbyOn })).toBeVisible();
    await patient.getByRole('button', { name: tx.join, exact: true }).click();
    await expect(patient.getByRole('heading', { name: tx.waiting })).toBeVisible();
    await admit(doctor, patient, tx, tx.patient);

    // Locked: a stranger cannot even knock, and is told why.
    await doctor.getByRole('button', { name: tx.lock }).click();
    await expect(doctor.getByRole('button', { name: tx.unlock })).toBeVisible();
    const stranger = await open(browser, tx, guestLink);
    await stranger.getByLabel(tx.yourName).fill(tx.stranger);
    await stranger.getByRole('button', { name: tx.join, exact: true }).click();
    await expect(stranger.getByRole('alert').filter({ hasText: tx.locked })).toBeVisible();
    await expect(doctor.getByText(tx.wants(tx.stranger))).toHaveCount(0);

    // Unlocked, and the waiting room back on: the stranger may knock again.
    await doctor.getByRole('button', { name: tx.unlock }).click();
    await doctor.getByRole('button', { name: tx.lobbyOn }).click();
    await expect(doctor.getByRole('button', { name: tx.letIn })).toBeVisible();
    await stranger.getByRole('button', { name: tx.join, exact: true }).click();
    await expect(stranger.getByRole('heading', { name: tx.waiting })).toBeVisible();
    await expect(doctor.getByText(tx.wants(tx.stranger))).toBeVisible();

    // End for everyone (after a confirmation): members and those waiting are out, told why.
    await doctor.getByRole('button', { name: tx.end }).click();
    await doctor.getByRole('button', { name: tx.endYes }).click();
    await expect(doctor.getByRole('alert').filter({ hasText: tx.endedByYou })).toBeVisible();
    await expect(patient.getByRole('alert').filter({ hasText: tx.ended(tx.doctor) })).toBeVisible();
    await expect(stranger.getByRole('button', { name: tx.join, exact: true })).toBeVisible();
    await expect(doctor.getByRole('button', { name: tx.create })).toBeVisible();
    expect(new URL(doctor.url()).pathname).toBe('/');
  });
}

test('the host link brings the host back from another browser, as host; a wrong key is refused; copy buttons copy', async ({ browser }) => {
  const tx = TEXT.en;
  const clipboard = ['camera', 'microphone', 'clipboard-read', 'clipboard-write'];
  const { doctor, guestLink, hostLink } = await createRoom(browser, tx, clipboard);
  await doctor.getByRole('button', { name: 'Copy guest link' }).click();
  await expect(doctor.getByText('Guest link copied.')).toBeVisible();
  expect(await doctor.evaluate(() => navigator.clipboard.readText())).toBe(guestLink);
  await doctor.getByRole('button', { name: 'Copy host link' }).click();
  await expect(doctor.getByText('Host link copied.')).toBeVisible();
  expect(await doctor.evaluate(() => navigator.clipboard.readText())).toBe(hostLink);

  const patient = await knock(browser, tx, guestLink, tx.patient);
  await admit(doctor, patient, tx, tx.patient);
  await doctor.getByRole('button', { name: 'Leave room' }).click();
  await doctor.context().close();
  await expect(people(patient, tx).getByText(tx.doctor)).toHaveCount(0);

  // On another device: the host link, and the key leaves the address bar at once.
  const laptop = await open(browser, tx, hostLink);
  expect(laptop.url()).toBe(guestLink);
  await expect(laptop.getByText('You opened a host link')).toBeVisible();
  await laptop.getByLabel(tx.yourName).fill(tx.doctor);
  await laptop.getByRole('button', { name: tx.join, exact: true }).click();
  await expect(laptop.getByText(`${tx.you(tx.doctor)} ${tx.host}`)).toBeVisible();
  await expect(laptop.getByRole('button', { name: tx.remove(tx.patient) })).toBeVisible();
  await expect(laptop.getByRole('link', { name: HOST_LINK })).toHaveAttribute('href', hostLink);
  await expect(people(patient, tx).getByText(`${tx.doctor} ${tx.host}`)).toBeVisible();
  // A reload in that tab keeps the host's place: the tab takes its session back by itself.
  await laptop.reload();
  await expect(laptop.getByText(`${tx.you(tx.doctor)} ${tx.host}`)).toBeVisible();
  await expect(people(patient, tx).getByText(`${tx.doctor} ${tx.host}`)).toHaveCount(1);

  // A host link with a wrong key gets a clear refusal.
  const forged = await open(browser, tx, hostLink.replace(/#host=.*/, '#host=AAAAAAAAAAAAAAAAAAAAAA'));
  await forged.getByLabel(tx.yourName).fill('Forger');
  await forged.getByRole('button', { name: tx.join, exact: true }).click();
  await expect(forged.getByRole('alert').filter({ hasText: 'This host link is not valid for this room.' })).toBeVisible();

  // A room id that never existed.
  const lost = await open(browser, tx, '/r/~AAAAAAAAAAAAAAAAAAAAAA');
  await lost.getByLabel(tx.yourName).fill('Lost');
  await lost.getByRole('button', { name: tx.join, exact: true }).click();
  await expect(lost.getByRole('alert').filter({ hasText: 'This room does not exist or has ended.' })).toBeVisible();
});

test('a call in a private room: video both ways; knocks, arrivals and a mute request reach people in the call; the people list opens over it', async ({ browser }) => {
  test.setTimeout(90_000);
  const tx = TEXT.en;
  const { doctor, guestLink } = await createRoom(browser, tx);
  const patient = await knock(browser, tx, guestLink, tx.patient);
  await admit(doctor, patient, tx, tx.patient);
  await startCall(doctor, patient, tx.doctor, tx.patient);
  await expectDecoding(doctor, tx.patient);
  await expectDecoding(patient, tx.doctor);
  const call = (/** @type {Page} */ page, /** @type {string} */ with_) => page.getByRole('dialog', { name: `Call with ${with_}` });
  await expect(call(patient, tx.doctor).getByText(`${tx.doctor} ${tx.host}`)).toBeVisible(); // the tile's caption

  // Someone knocks during the call: the doctor sees it above the call and lets them in there.
  const nurse = await knock(browser, tx, guestLink, 'Nurse Wu');
  await expect(call(doctor, tx.patient).getByText(tx.wants('Nurse Wu'))).toBeVisible();
  await doctor.getByRole('button', { name: tx.admit('Nurse Wu') }).click();
  await expect(nurse.getByText(tx.you('Nurse Wu'))).toBeVisible();
  await expect(call(doctor, tx.patient).getByText('Nurse Wu joined the room')).toBeVisible();
  await expect(call(patient, tx.doctor).getByText('Nurse Wu joined the room')).toBeVisible();

  // The people list, from inside the call: who is in a call, who is host, and the controls.
  await doctor.getByRole('button', { name: 'People (3)' }).click();
  const list = people(doctor, tx);
  await expect(list.getByText(`${tx.patient} (in a call with you)`)).toBeVisible();
  await expect(list.getByText('Nurse Wu', { exact: true })).toBeVisible();
  await list.getByRole('button', { name: tx.mute(tx.patient) }).click();
  await expect(call(patient, tx.doctor).getByText(tx.mutedBy(tx.doctor))).toBeVisible();
  await expect(doctor.getByRole('img', { name: `${tx.patient} is muted` })).toBeVisible();
  // They can unmute themselves.
  await patient.getByRole('button', { name: 'Unmute', exact: true }).click();
  await expect(doctor.getByRole('img', { name: `${tx.patient} is muted` })).toBeHidden();

  // Made host: everyone sees it, and the nurse now has the host's controls.
  await list.getByRole('button', { name: tx.makeHost('Nurse Wu') }).click();
  await expect(list.getByText(`Nurse Wu ${tx.host}`)).toBeVisible();
  await expect(nurse.getByText(`${tx.you('Nurse Wu')} ${tx.host}`)).toBeVisible();
  await expect(nurse.getByRole('button', { name: tx.lock })).toBeVisible();
  await expect(nurse.getByRole('link', { name: HOST_LINK })).toBeVisible();
  await doctor.getByRole('button', { name: 'Close', exact: true }).click();
  await expect(doctor.getByRole('button', { name: 'People (3)' })).toHaveAttribute('aria-expanded', 'false');
  await expect(doctor.getByRole('button', { name: 'Close', exact: true })).toBeHidden();

  // The nurse leaves: the people in the call hear of it; the call goes on.
  await nurse.getByRole('button', { name: 'Leave room' }).click();
  await expect(call(doctor, tx.patient).getByText('Nurse Wu left the room')).toBeVisible();
  await expectDecoding(patient, tx.doctor);
  await patient.getByRole('button', { name: 'Hang up' }).click();
  await expect(doctor.getByText('Patient Li hung up.')).toBeVisible();
});

/**
 * From now on, `page`'s new signalling connections go through this test, which records what the
 * page sends and, while `refuse.resume` is set, answers `resume` itself as a server that lost
 * the session would (`invalid_token`), so that the page has to join again.
 * @param {Page} page
 */
async function interceptSignalling(page) {
  /** @type {Record<string, unknown>[]} */
  const sent = [];
  const refuse = { resume: false };
  await page.routeWebSocket(/\/ws$/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((frame) => {
      const msg = JSON.parse(String(frame));
      sent.push(msg);
      if (msg.type === 'resume' && refuse.resume) {
        ws.send(JSON.stringify({ type: 'error', code: 'invalid_token', message: 'session lost (test)', request: 'resume' }));
      } else {
        server.send(frame);
      }
    });
  });
  return { sent, refuse };
}

test('dropped connections: a place in the lobby survives; a host resumes as host, or joins again with the host key; a guest who cannot resume knocks again', async ({ browser }) => {
  test.setTimeout(90_000);
  const tx = TEXT.en;
  const { doctor, guestLink } = await createRoom(browser, tx);
  const patient = await knock(browser, tx, guestLink, tx.patient);
  await expect(doctor.getByText(tx.wants(tx.patient))).toBeVisible();

  // Waiting in the lobby, the patient's connection drops: the place is kept, no second knock.
  await patient.evaluate(() => window.visavis.dropSignalling());
  await expect(patient.getByText('Connection to the server lost', { exact: false })).toBeVisible();
  await expect(patient.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
  await expect(patient.getByRole('heading', { name: tx.waiting })).toBeVisible();
  await expect(doctor.getByRole('button', { name: /^Admit / })).toHaveCount(1);
  await admit(doctor, patient, tx, tx.patient);
  const room = new URL(guestLink).pathname.slice(3);

  // A short drop: the session resumes, still the host's.
  const host = await interceptSignalling(doctor);
  await doctor.evaluate(() => window.visavis.dropSignalling());
  await expect.poll(() => host.sent.some((m) => m.type === 'resume')).toBe(true);
  await expect(doctor.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
  await expect(doctor.getByRole('button', { name: tx.lock })).toBeVisible();
  await say(patient, tx, 'still there?');
  await expect(doctor.getByRole('log').getByText('still there?')).toBeVisible();

  // The session is lost: the page joins the private room again, with its host key.
  host.refuse.resume = true;
  await doctor.evaluate(() => window.visavis.dropSignalling());
  await expect.poll(() => host.sent.find((m) => m.type === 'join')).toMatchObject({ room, hostKey: expect.any(String) });
  await expect(doctor.getByText('Connection to the server lost', { exact: false })).toBeHidden({ timeout: 20_000 });
  await expect(doctor.getByText(tx.host, { exact: false }).first()).toBeVisible();
  await expect(doctor.getByRole('button', { name: tx.lock })).toBeVisible();
  await expect(doctor.getByRole('link', { name: HOST_LINK })).toBeVisible();

  // A guest whose session is lost has no key: they wait in the lobby again until let in.
  const guest = await interceptSignalling(patient);
  guest.refuse.resume = true;
  await patient.evaluate(() => window.visavis.dropSignalling());
  await expect(patient.getByRole('heading', { name: tx.waiting })).toBeVisible({ timeout: 20_000 });
  expect(guest.sent.find((m) => m.type === 'join')).not.toHaveProperty('hostKey');
  const knocker = doctor.getByRole('button', { name: /^Admit Patient Li/ });
  await expect(knocker).toBeVisible();
  await knocker.click();
  await expect(patient.getByText(tx.you(tx.patient))).toBeVisible();
  await expect(patient.getByRole('heading', { name: tx.waiting })).toBeHidden();
});
