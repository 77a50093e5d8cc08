// @ts-check
//! The clinic's pages in the browser: the doctor's and the patient's view of one consultation,
//! built on the visavis SDK (passed in by the page, which imports it from the visavis server).
//! The doctor admits the patient from the waiting room and calls; the patient accepts; both see
//! each other in the page's own <video> elements. Names are shown as text, never as HTML.

/**
 * @typedef {typeof import('../../../web/sdk/visavis.js')} Sdk
 * @typedef {import('../../../web/sdk/visavis.js').Client} Client
 * @typedef {import('../../../web/sdk/visavis.js').EndReason} EndReason
 * @typedef {{role: 'doctor' | 'patient', token: string, visavis: string, room: string,
 *            patientName: string, patientKey?: string}} Session
 */

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** What the other side hears of a call's end. @type {Record<EndReason, string>} */
const ENDED = {
  hangup: 'The call has ended.',
  declined: 'The call was declined.',
  cancelled: 'The call was cancelled.',
  no_answer: 'No answer.',
  busy: 'Busy.',
  left: 'The other person left.',
};

/** @param {string} label @param {() => void} onclick */
function button(label, onclick) {
  const b = document.createElement('button');
  b.textContent = label;
  b.onclick = onclick;
  return b;
}

/**
 * The page's key: from the link's fragment the first time, then from this tab's storage (so a
 * reload keeps working, and the address bar no longer shows it).
 */
function pageKey() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get('k');
  if (fromLink) {
    sessionStorage.setItem('clinic.key', fromLink);
    history.replaceState(null, '', location.pathname);
  }
  return sessionStorage.getItem('clinic.key') ?? '';
}

/**
 * @param {Sdk} visavis
 * @param {'doctor' | 'patient'} role
 */
export async function run(visavis, role) {
  const response = await fetch('/session', { method: 'POST', body: JSON.stringify({ key: pageKey() }) });
  if (!response.ok) {
    $('status').textContent = 'This link is not valid (any more).';
    return;
  }
  /** @type {Session} */
  const session = await response.json();
  const client = visavis.connect({ url: session.visavis, token: session.token });
  /** @type {string} the last thing that happened, shown under the status */
  let note = '';

  if (role === 'doctor' && session.patientKey) {
    const link = /** @type {HTMLAnchorElement} */ ($('patient-link'));
    link.href = `${location.origin}/patient#k=${session.patientKey}`;
    link.textContent = link.href;
    pollEvents(session.room);
  }

  const remote = /** @type {HTMLVideoElement} */ ($('remote'));
  const local = /** @type {HTMLVideoElement} */ ($('local'));

  function render() {
    const call = client.activeCall;
    const others = client.members;
    const other = others[0];
    /** @type {string} */
    let status;
    if (client.state === 'joining' || client.state === 'new') status = 'Connecting…';
    else if (client.state === 'waiting') status = 'Waiting for the doctor to let you in…';
    else if (client.state !== 'admitted') status = 'The consultation has ended.';
    else if (call?.status === 'ringing') status = call.direction === 'outgoing' ? `Calling ${call.peerName}…` : `${call.peerName} is calling you`;
    else if (call) status = call.status === 'connected' ? `In a call with ${call.peerName}` : `Connecting to ${call.peerName}…`;
    else if (role === 'doctor') status = other ? `${other.name} is here.` : `Waiting for ${session.patientName} to arrive.`;
    else status = other ? `${other.name} will call you in a moment.` : 'Waiting for the doctor.';
    $('status').textContent = note ? `${status} ${note}` : status;

    // The doctor lets the patient in from the waiting room.
    const knocks = role === 'doctor' ? client.knocks : [];
    $('knocks').hidden = knocks.length === 0;
    $('knocks').replaceChildren(...knocks.map((m) => {
      const p = document.createElement('p');
      p.append(`${m.name} is waiting. `, button(`Admit ${m.name}`, () => client.admit(m.id)), button(`Deny ${m.name}`, () => client.deny(m.id)));
      return p;
    }));

    // The doctor calls; while it rings, the doctor may cancel.
    const people = role === 'doctor' && client.state === 'admitted' && (others.length > 0 || call);
    $('people').hidden = !people;
    if (people) {
      $('people').replaceChildren(...(call?.status === 'ringing' && call.direction === 'outgoing'
        ? [button('Cancel', () => client.hangUp())]
        : call ? [] : others.map((m) => button(`Call ${m.name}`, () => client.call(m.id)))));
    }

    const incoming = call?.status === 'ringing' && call.direction === 'incoming';
    $('incoming').hidden = !incoming;
    if (incoming) $('incoming-text').textContent = `${call.peerName} is calling you`;

    $('call').hidden = !call || call.status === 'ringing';
    if (call) remote.setAttribute('aria-label', call.peerName);
  }

  client.on('state', render);
  client.on('member_joined', render);
  client.on('member_left', render);
  client.on('knock', render);
  client.on('knock_ended', render);
  client.on('incoming', () => { note = ''; render(); });
  client.on('ringing', () => { note = ''; render(); });
  client.on('accepted', render);
  client.on('connected', render);
  client.on('call_ended', ({ reason }) => {
    note = ENDED[reason];
    remote.srcObject = null;
    render();
  });
  client.on('remote_stream', ({ stream }) => { if (remote.srcObject !== stream) remote.srcObject = stream; });
  client.on('local_stream', ({ stream }) => { local.srcObject = stream; });
  client.on('local_media', ({ audio, video }) => {
    $('mute').textContent = audio ? 'Mute' : 'Unmute';
    $('camera').textContent = video ? 'Stop video' : 'Start video';
  });
  client.on('connection', ({ status }) => {
    note = status === 'reconnecting' ? 'Reconnecting…' : '';
    render();
  });
  client.on('error', ({ code, message }) => {
    console.warn('visavis error', code, message);
    note = `(${message})`;
    render();
  });

  $('accept').onclick = () => client.accept();
  $('decline').onclick = () => client.decline();
  $('hangup').onclick = () => client.hangUp();
  $('mute').onclick = () => client.setMicrophoneMuted($('mute').textContent === 'Mute');
  $('camera').onclick = () => client.setCameraOff($('camera').textContent === 'Stop video');

  render();
  try {
    await client.join();
  } catch (err) {
    const code = err instanceof visavis.SignallingError ? err.code : 'generic';
    $('status').textContent = code === 'token_expired' ? 'This link has expired.' : `Could not join (${code}).`;
    return;
  }
  render();
}

/**
 * The doctor's visit log: the webhooks visavis sent the clinic about this room, as the back
 * end received and verified them.
 * @param {string} room
 */
function pollEvents(room) {
  const list = $('events');
  const refresh = async () => {
    try {
      const { events } = await (await fetch('/events')).json();
      /** @type {{event: string, createdAt: number, room: string, reason?: string, participant?: {name: string}}[]} */
      const mine = events.filter((/** @type {{room: string}} */ e) => e.room === room);
      list.replaceChildren(...mine.map((e) => {
        const li = document.createElement('li');
        const when = new Date(e.createdAt).toLocaleTimeString();
        li.textContent = [when, e.event, e.participant?.name, e.reason].filter(Boolean).join(' ');
        return li;
      }));
    } catch {
      // the clinic's server is restarting: try again at the next tick
    }
  };
  refresh();
  setInterval(refresh, 2000);
}
