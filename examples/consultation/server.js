// @ts-check
//! A tiny clinic back end (Node, no framework, no dependencies) that runs its online
//! consultations on visavis: "Start consultation" makes a private room through visavis's REST
//! API and mints a host token for the doctor and a guest token for the patient; the doctor's and
//! the patient's pages embed the call with the SDK loaded from the visavis server; signed
//! webhooks from visavis arrive at /webhooks, are verified, logged and kept (GET /events).
//!
//! Run: VISAVIS_API_SECRET=… node examples/consultation/server.js (README.md beside it).

import { createServer } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';

const PORT = Number(process.env.PORT ?? 3000);
const HOST = process.env.HOST ?? '127.0.0.1';
/** Where visavis runs, as the browsers reach it (its REST API and its SDK are there). */
const VISAVIS = (process.env.VISAVIS_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
/** The API secret: the bearer token of the REST API, and the key of the webhooks' signature. */
const SECRET = process.env.VISAVIS_API_SECRET ?? '';
const DOCTOR = process.env.DOCTOR_NAME ?? 'Dr. Zhang';
/** Signed webhooks older (or newer) than this are refused: a captured one cannot be replayed. */
const SIGNATURE_TOLERANCE_S = 5 * 60;
/** Webhooks kept for /events; the oldest go first. */
const MAX_EVENTS = 1000;

/**
 * A consultation: its visavis room and the two people's tokens. Each page finds its own by a
 * key of its own (in the link's fragment, so never in a server log), so the patient's link
 * cannot open the doctor's page. A real clinic would know its users from their logins instead.
 * @typedef {{room: string, patientName: string, doctor: {key: string, token: string},
 *            patient: {key: string, token: string}, createdAt: number}} Consultation
 */
/** @type {Map<string, {consultation: Consultation, role: 'doctor' | 'patient'}>} by page key */
const byKey = new Map();
/** @type {Record<string, unknown>[]} verified webhooks, oldest first */
const events = [];
/** Event ids seen: visavis delivers at least once, so the same event may come twice. */
const seen = new Set();

/**
 * Calls visavis's REST API with the API secret.
 * @param {string} path under /api/v1
 * @param {unknown} body
 */
async function api(path, body) {
  const response = await fetch(`${VISAVIS}/api/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`visavis ${path}: ${response.status} ${json.error}: ${json.message}`);
  return json;
}

/**
 * A private room (an unguessable id, the lobby on, ended after two hours), a host token for
 * the doctor and a guest token for the patient. Nobody names the room: visavis makes its id.
 * @param {string} patientName
 * @returns {Promise<Consultation>}
 */
async function startConsultation(patientName) {
  const room = await api('/rooms', { maxDuration: 2 * 3600, capacity: 2 });
  const ttl = 2 * 3600;
  const doctor = await api('/tokens', { room: room.name, name: DOCTOR, role: 'host', identity: 'doctor-1', ttl });
  const patient = await api('/tokens', { room: room.name, name: patientName, role: 'guest', ttl });
  const key = () => randomBytes(16).toString('base64url');
  /** @type {Consultation} */
  const consultation = {
    room: room.name,
    patientName,
    doctor: { key: key(), token: doctor.token },
    patient: { key: key(), token: patient.token },
    createdAt: Date.now(),
  };
  byKey.set(consultation.doctor.key, { consultation, role: 'doctor' });
  byKey.set(consultation.patient.key, { consultation, role: 'patient' });
  return consultation;
}

/**
 * Whether `header` (`t=<unix seconds>,v1=<hex>`; several v1 while visavis rotates its secret)
 * signs `body` with our secret, recently.
 * @param {string | undefined} header
 * @param {Buffer} body exactly as received: re-serialised JSON would not match
 * @param {number} [nowS]
 */
export function verifySignature(header, body, secret = SECRET, nowS = Date.now() / 1000) {
  if (!header) return false;
  let t = NaN;
  /** @type {string[]} */
  const signatures = [];
  for (const part of header.split(',')) {
    const [name, value = ''] = part.trim().split('=');
    if (name === 't' && /^\d+$/.test(value)) t = Number(value);
    if (name === 'v1') signatures.push(value);
  }
  if (!Number.isFinite(t) || Math.abs(nowS - t) > SIGNATURE_TOLERANCE_S) return false;
  const want = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  // Constant time: how much of a guess matched must not show in how long the answer takes.
  return signatures.some((hex) => {
    const got = Buffer.from(hex, 'hex');
    return got.length === want.length && timingSafeEqual(got, want);
  });
}

/** @param {import('node:http').IncomingMessage} req @param {number} limit */
async function readBody(req, limit = 64 * 1024) {
  /** @type {Buffer[]} */
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw new Error('body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {unknown} body
 */
function json(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/** @param {string} text */
const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * A page of the clinic. Its script loads the SDK from the visavis server; the CSP lets it
 * import from there and open the WebSocket there, and nothing else.
 * @param {import('node:http').ServerResponse} res
 * @param {string} title
 * @param {string} body HTML
 * @param {string} [script] the module's body, after the SDK is imported as `visavis`
 */
function page(res, title, body, script = '') {
  const nonce = randomBytes(16).toString('base64');
  const ws = VISAVIS.replace(/^http/, 'ws');
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'content-security-policy': `default-src 'self'; script-src 'self' 'nonce-${nonce}' ${VISAVIS}; `
      + `connect-src 'self' ${VISAVIS} ${ws}; media-src 'self' blob:; style-src 'self' 'nonce-${nonce}'; `
      + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  });
  res.end(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">
  body { font: 16px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 1rem; max-width: 60rem; }
  .videos { display: grid; grid-template-columns: 3fr 1fr; gap: .5rem; }
  video { width: 100%; max-height: 60vh; object-fit: contain; background: #222; border-radius: .5rem; }
  button { font: inherit; padding: .5rem 1rem; margin: .25rem .25rem .25rem 0; }
  [hidden] { display: none !important; }
  #events { font: 13px/1.3 ui-monospace, monospace; }
</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
${script ? `<script type="module" nonce="${nonce}">
import * as visavis from '${VISAVIS}/sdk/visavis.js';
import { run } from '/consult.js';
${script}
</script>` : ''}
</body>
</html>`);
}

/** The call's part of both pages: who is there, the call's controls, the two videos. */
const CALL_HTML = `
<p id="status" role="status">Connecting…</p>
<section id="knocks" hidden aria-label="Waiting room"></section>
<section id="people" hidden aria-label="People"></section>
<section id="incoming" role="dialog" hidden aria-labelledby="incoming-text">
  <p id="incoming-text"></p><button id="accept">Accept</button><button id="decline">Decline</button>
</section>
<section id="call" hidden aria-label="Call">
  <div class="videos">
    <video id="remote" autoplay playsinline></video>
    <video id="local" autoplay playsinline muted aria-label="You"></video>
  </div>
  <button id="mute">Mute</button><button id="camera">Stop video</button><button id="hangup">Hang up</button>
</section>`;

/** @type {Record<string, (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => Promise<void>>} */
const routes = {
  'GET /': async (_req, res) => page(res, 'Clinic', `
<form method="post" action="/consultations">
  <label>Patient's name <input name="patient" value="Patient Li" required maxlength="64"></label>
  <button>Start consultation</button>
</form>`),

  'POST /consultations': async (req, res) => {
    const form = new URLSearchParams((await readBody(req)).toString());
    const patientName = (form.get('patient') ?? '').trim() || 'Patient';
    const consultation = await startConsultation(patientName);
    console.log(`consultation started in room ${consultation.room}`);
    // The doctor's key goes in the fragment: browsers send it to no server.
    res.writeHead(303, { location: `/doctor#k=${consultation.doctor.key}` });
    res.end();
  },

  'GET /doctor': async (_req, res) => page(res, 'Consultation (doctor)', `
<p>Send the patient this link: <a id="patient-link"></a></p>
${CALL_HTML}
<h2>Visit log (from visavis's webhooks)</h2>
<ol id="events"></ol>`, "run(visavis, 'doctor');"),

  'GET /patient': async (_req, res) => page(res, 'Your consultation', CALL_HTML, "run(visavis, 'patient');"),

  // A page's token, for its key: POSTed, so neither lands in a log or a Referer.
  'POST /session': async (req, res) => {
    const { key } = JSON.parse((await readBody(req)).toString() || '{}');
    const found = typeof key === 'string' ? byKey.get(key) : undefined;
    if (!found) return json(res, 404, { error: 'unknown_consultation' });
    const { consultation, role } = found;
    json(res, 200, {
      role,
      token: consultation[role].token,
      visavis: VISAVIS,
      room: consultation.room,
      patientName: consultation.patientName,
      ...(role === 'doctor' ? { patientKey: consultation.patient.key } : {}),
    });
  },

  'POST /webhooks': async (req, res) => {
    const body = await readBody(req);
    const header = req.headers['visavis-signature'];
    if (!verifySignature(Array.isArray(header) ? header[0] : header, body)) {
      console.warn('webhook refused: bad or stale signature');
      return json(res, 401, { error: 'bad_signature' });
    }
    const event = JSON.parse(body.toString());
    if (typeof event.id === 'string' && seen.has(event.id)) return json(res, 200, { duplicate: true });
    seen.add(event.id);
    events.push({ ...event, receivedAt: Date.now(), verified: true });
    if (events.length > MAX_EVENTS) events.shift();
    console.log(`webhook ${event.event} room=${event.room}${event.reason ? ` reason=${event.reason}` : ''}`);
    res.writeHead(204);
    res.end();
  },

  // For the doctor's page and the test. A real back end keeps these behind its login.
  'GET /events': async (_req, res) => json(res, 200, { events }),

  'GET /consult.js': async (_req, res) => {
    const code = await readFile(new URL('./public/consult.js', import.meta.url));
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-cache' });
    res.end(code);
  },
};

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  const route = routes[`${req.method} ${path}`];
  try {
    if (route) await route(req, res);
    else json(res, 404, { error: 'not_found' });
  } catch (err) {
    console.error(err);
    if (!res.headersSent) json(res, 500, { error: 'internal', message: String(err) });
  }
});

// Only when run, not when a test imports verifySignature.
if (import.meta.url === `file://${process.argv[1]}`) {
  if (SECRET.length < 32) {
    console.error('Set VISAVIS_API_SECRET to the API secret of your visavis (--api-secret, or visavis-data/api-credentials.json).');
    process.exit(1);
  }
  server.listen(PORT, HOST, () => console.log(`clinic on http://${HOST}:${PORT} (visavis at ${VISAVIS})`));
}
