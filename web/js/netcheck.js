// @ts-check
//! The pre-call network check: which of the server's STUN and TURN (UDP, TCP, TLS) URLs this
//! network reaches — one RTCPeerConnection per URL, gathering candidates with credentials that
//! live a minute (`/netcheck/ice`) — the round-trip time to the server, and a short download
//! and upload estimate over bounded HTTP bodies (`/netcheck/download`, `/netcheck/upload`;
//! docs/protocol.md). `runNetcheck` touches no DOM; `NetcheckView` shows it in a dialog opened
//! from the pre-join screen. On a server with `--access token` the page's token (a product's
//! link) gets it TURN credentials.

import { t } from './i18n.js';

/** How long one URL may take to give a candidate (an unreachable one gives none, ever). */
const GATHER_TIMEOUT_MS = 8000;
/** How long each throughput transfer may take. */
const TRANSFER_TIMEOUT_MS = 15_000;
/** Round trips timed to the server; the median is shown. */
const PINGS = 5;
/**
 * The detail of a TURN URL that finished gathering with no candidate and no error. Chromium
 * does that now and then for a relay it reaches (e2e/turns.spec.js saw it in about 3 runs of
 * 110), so such a URL is tried once more before it is called unreachable.
 */
const SILENT = 'silent';

/**
 * `ok`: a candidate of the kind the URL gives (server reflexive for STUN, relayed for TURN);
 * `refused`: the server answered but refused (credentials, quota); `failed`: no answer.
 * @typedef {'ok' | 'refused' | 'failed'} Reach
 * @typedef {'stun' | 'turnUdp' | 'turnTcp' | 'turnTls'} ServerKind
 * @typedef {{kind: ServerKind, url: string, reach: Reach, detail: string}} ServerResult
 * @typedef {{servers: ServerResult[], offered: Record<ServerKind, boolean>, rttMs: number | null,
 *            downMbps: number | null, upMbps: number | null}} NetcheckResult
 */

/**
 * The kind of an ICE server URL.
 * @param {string} url
 * @returns {ServerKind | null}
 */
export function kindOf(url) {
  const transport = /[?&]transport=(\w+)/.exec(url)?.[1]?.toLowerCase();
  if (url.startsWith('stun:')) return 'stun';
  if (url.startsWith('turns:')) return 'turnTls';
  if (url.startsWith('turn:')) return transport === 'tcp' ? 'turnTcp' : 'turnUdp';
  return null;
}

/**
 * What a finished check means for calls, in one sentence (an i18n key).
 * @param {NetcheckResult} r
 * @returns {'netcheck.sumGood' | 'netcheck.sumTcpOnly' | 'netcheck.sumNoRelay' | 'netcheck.sumNone' | 'netcheck.sumDirectOnly'}
 */
export function verdict(r) {
  const reached = (/** @type {ServerKind} */ kind) => r.servers.some((s) => s.kind === kind && s.reach === 'ok');
  if (!Object.values(r.offered).some(Boolean)) return 'netcheck.sumDirectOnly';
  if (reached('turnUdp')) return 'netcheck.sumGood';
  if (reached('turnTcp') || reached('turnTls')) return 'netcheck.sumTcpOnly';
  if (!r.offered.turnUdp && !r.offered.turnTcp && !r.offered.turnTls && reached('stun')) return 'netcheck.sumDirectOnly';
  return reached('stun') ? 'netcheck.sumNoRelay' : 'netcheck.sumNone';
}

/**
 * Tries one STUN or TURN URL: gathers candidates through it alone.
 * @param {string} url
 * @param {{username?: string, credential?: string}} auth
 * @returns {Promise<ServerResult>}
 */
async function tryServer(url, auth) {
  const kind = /** @type {ServerKind} */ (kindOf(url));
  const pc = new RTCPeerConnection({
    iceServers: [{ urls: [url], ...auth }],
    // TURN: relayed candidates only, so the answer is about the relay and nothing else.
    iceTransportPolicy: kind === 'stun' ? 'all' : 'relay',
  });
  try {
    return await new Promise((resolve) => {
      /** @type {string | null} */
      let refused = null;
      let failedStun = false;
      const done = (/** @type {Reach} */ reach, detail = '') => {
        clearTimeout(timer);
        resolve({ kind, url, reach, detail });
      };
      const timer = setTimeout(() => done(refused ? 'refused' : 'failed', refused ?? ''), GATHER_TIMEOUT_MS);
      pc.onicecandidate = ({ candidate }) => {
        if (candidate?.type === (kind === 'stun' ? 'srflx' : 'relay')) done('ok', candidate.address ?? '');
        if (candidate === null || pc.iceGatheringState === 'complete') {
          // STUN on the same network as the server: the reflexive address is the host one,
          // which browsers drop as a duplicate. An answer without an error is still an answer.
          if (kind === 'stun' && !refused && !failedStun) done('ok');
          else if (!refused && !failedStun) done('failed', SILENT);
          else done(refused ? 'refused' : 'failed', refused ?? '');
        }
      };
      pc.onicecandidateerror = (event) => {
        const e = /** @type {RTCPeerConnectionIceErrorEvent} */ (event);
        // 701: no answer (a timeout, or unreachable); 3xx–4xx: the server answered.
        if (e.errorCode === 701) failedStun = true;
        else if (e.errorCode >= 300 && e.errorCode < 700) refused = `${e.errorCode} ${e.errorText}`.trim();
      };
      pc.createDataChannel('netcheck');
      pc.createOffer().then((offer) => pc.setLocalDescription(offer)).catch(() => done('failed'));
    });
  } finally {
    pc.close();
  }
}

/** Milliseconds of one request's round trip to the server (a tiny, uncached answer). */
async function ping() {
  const start = performance.now();
  await fetch('/healthz', { cache: 'no-store' });
  return performance.now() - start;
}

/**
 * Megabits per second of a transfer of `bytes` that took `ms`, less one round trip.
 * @param {number} bytes
 * @param {number} ms
 * @param {number} rttMs
 */
function mbps(bytes, ms, rttMs) {
  return Math.round(((bytes * 8) / (Math.max(ms - rttMs, 1) / 1000) / 1e6) * 10) / 10;
}

/**
 * Runs the whole check. `onProgress` is told each part as it is known.
 * @param {(partial: Partial<NetcheckResult>) => void} [onProgress]
 * @param {string} [accessToken] an access token this page holds (a product's link): on a server
 *   with `--access token` only its holder gets TURN credentials, as only its holder may relay
 * @returns {Promise<NetcheckResult>}
 */
export async function runNetcheck(onProgress = () => {}, accessToken = '') {
  const headers = accessToken ? { Authorization: `Bearer ${accessToken}` } : undefined;
  const response = await fetch('/netcheck/ice', { cache: 'no-store', headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ?? `HTTP ${response.status}`);
  }
  /** @type {{iceServers: {urls: string[], username?: string, credential?: string}[], maxBytes: number}} */
  const { iceServers, maxBytes } = await response.json();
  const entries = iceServers.flatMap(({ urls, username, credential }) =>
    urls.filter((url) => kindOf(url)).map((url) => ({ url, auth: username ? { username, credential } : {} })));
  /** @type {Record<ServerKind, boolean>} */
  const offered = { stun: false, turnUdp: false, turnTcp: false, turnTls: false };
  for (const { url } of entries) offered[/** @type {ServerKind} */ (kindOf(url))] = true;
  onProgress({ offered });
  // All at once: an unreachable one waits for its timeout, the others need not.
  const servers = await Promise.all(entries.map(async ({ url, auth }) => {
    const first = await tryServer(url, auth);
    return first.detail === SILENT ? tryServer(url, auth) : first;
  }));
  onProgress({ offered, servers });

  const times = [];
  for (let i = 0; i < PINGS; i++) times.push(await ping());
  const rttMs = Math.round(times.sort((a, b) => a - b)[Math.floor(PINGS / 2)]);
  onProgress({ offered, servers, rttMs });

  let downMbps = null;
  let upMbps = null;
  try {
    const start = performance.now();
    const down = await fetch(`/netcheck/download?bytes=${maxBytes}`, { cache: 'no-store', signal: AbortSignal.timeout(TRANSFER_TIMEOUT_MS) });
    const got = (await down.arrayBuffer()).byteLength;
    if (down.ok) downMbps = mbps(got, performance.now() - start, rttMs);
    onProgress({ offered, servers, rttMs, downMbps });
    // Random bytes, so nothing on the way can compress them.
    const body = new Uint8Array(maxBytes);
    for (let i = 0; i < body.length; i += 65_536) crypto.getRandomValues(body.subarray(i, i + 65_536));
    const upStart = performance.now();
    const up = await fetch('/netcheck/upload', { method: 'POST', body, cache: 'no-store', signal: AbortSignal.timeout(TRANSFER_TIMEOUT_MS) });
    if (up.ok) upMbps = mbps((await up.json()).bytes, performance.now() - upStart, rttMs);
  } catch {
    // Too slow for the timeout, or refused (the address's budget): shown as unknown.
  }
  const result = { servers, offered, rttMs, downMbps, upMbps };
  onProgress(result);
  return result;
}

/** @param {string} id */
const byId = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** The check in its dialog: run on opening, again on "Check again"; Escape or Close shut it. */
export class NetcheckView {
  /** @param {() => string} [accessToken] the access token the page holds for its room, if any */
  constructor(accessToken = () => '') {
    this.accessToken = accessToken;
    this.dialog = /** @type {HTMLDialogElement} */ (byId('netcheck'));
    this.list = byId('netcheck-results');
    this.status = byId('netcheck-status');
    /** The last finished check's verdict, beside the button that opens the check. */
    this.summary = byId('netcheck-summary');
    /** @type {Partial<NetcheckResult> | null} */
    this.result = null;
    /** @type {string | null} */
    this.error = null;
    this.running = false;
    /** @type {HTMLElement | null} */
    this.opener = null;
    /** @type {NetcheckResult | null} the last check that ran to its end */
    this.finished = null;
    byId('netcheck-close').onclick = () => this.dialog.close();
    byId('netcheck-again').onclick = () => this.run();
    this.dialog.addEventListener('close', () => {
      if (this.opener?.isConnected) this.opener.focus();
    });
  }

  /**
   * Opens the dialog and runs the check.
   * @param {HTMLElement} opener where focus returns when it closes
   */
  open(opener) {
    this.opener = opener;
    if (!this.dialog.open) this.dialog.showModal();
    this.run();
  }

  async run() {
    if (this.running) return;
    this.running = true;
    this.result = {};
    this.error = null;
    this.render();
    try {
      this.finished = await runNetcheck((partial) => {
        this.result = partial;
        this.render();
      }, this.accessToken());
    } catch (err) {
      this.error = err instanceof Error ? err.message : String(err);
    }
    this.running = false;
    this.render();
  }

  /** Everything from the current result (also on a language change). */
  render() {
    /** @type {import('./i18n.js').Key} */
    const statusKey = this.error ? 'netcheck.error' : this.running ? 'netcheck.running' : 'netcheck.done';
    const conclusion = !this.running && !this.error && this.finished ? t(verdict(this.finished)) : '';
    this.status.textContent = [t(statusKey, { error: this.error ?? '' }), conclusion].filter(Boolean).join(' ');
    if (this.summary.textContent !== conclusion) this.summary.textContent = conclusion;
    /** @type {HTMLButtonElement} */ (byId('netcheck-again')).disabled = this.running;
    const r = this.result ?? {};
    /** @type {[string, string][]} */
    const rows = [];
    for (const kind of /** @type {ServerKind[]} */ (['stun', 'turnUdp', 'turnTcp', 'turnTls'])) {
      const label = t(/** @type {import('./i18n.js').Key} */ (`netcheck.${kind}`));
      const tried = (r.servers ?? []).filter((s) => s.kind === kind);
      if (!r.offered) rows.push([label, this.running ? t('netcheck.checking') : '–']);
      else if (!r.offered[kind]) rows.push([label, t('netcheck.notOffered')]);
      else if (!tried.length) rows.push([label, t('netcheck.checking')]);
      else {
        // Any of its URLs getting through is enough (TLS may be offered on two ports).
        const best = tried.find((s) => s.reach === 'ok') ?? tried.find((s) => s.reach === 'refused') ?? tried[0];
        rows.push([label, t(/** @type {import('./i18n.js').Key} */ (`netcheck.${best.reach}`), { detail: best.detail })]);
      }
    }
    const figure = (/** @type {number | null | undefined} */ v, /** @type {import('./i18n.js').Key} */ unit) =>
      v == null ? (this.running ? t('netcheck.checking') : '–') : t(unit, { n: v });
    rows.push([t('netcheck.rtt'), figure(r.rttMs, 'unit.ms')]);
    rows.push([t('netcheck.down'), figure(r.downMbps, 'unit.mbps')]);
    rows.push([t('netcheck.up'), figure(r.upMbps, 'unit.mbps')]);
    this.list.replaceChildren(...rows.flatMap(([term, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }));
  }
}
