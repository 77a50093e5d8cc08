// What one attacking address can make the embedded TURN server hold: joins a few signalling
// sessions to get member TURN credentials (and keeps them joined, answering pings, since a
// member's credentials work only while it stays in its room), then over UDP makes as many
// relay allocations as the server lets one address have (it asks for ALLOCATIONS and counts
// the refusals), fills each with as many permissions as it takes (distinct public-looking peer
// IPs, 8.8.x.y: permissions only, nothing is ever sent to a peer), and over TCP opens as many
// connections as one address may hold, each left with a partial frame (a STUN header announcing
// a frame of the largest accepted size, then all but a few hundred bytes of it), kept alive
// with a byte every 20 s. It samples the server's RSS (from /proc) throughout and prints the
// peak growth and the counts as JSON.
//
// Usage: node bench/attack/turn-memory.cjs URL SERVER_PID [SECONDS=60] [SESSIONS=4]
//          [ALLOCATIONS=64] [TCP_CONNECTIONS=20]
//   e.g. node bench/attack/turn-memory.cjs ws://127.0.0.1:18300/ws 12345 60
// The TURN address is the one the server hands out in `joined` (turn:HOST:PORT?transport=udp
// and ?transport=tcp). Run it against a fresh server with TURN on (default flags); with
// bench/attack/memory.cjs at the same time, start this one first: it takes SESSIONS of the
// address's 64 sessions and its RSS baseline is then the fresh server's.
// Loopback only: the script refuses any other signalling or TURN address. Bounded: SECONDS
// (at most 280, within the permissions' 300 s lifetime), at most 64 sessions, 256 allocation
// attempts, 128 + 1 permissions per allocation and 64 TCP connections.
'use strict';
const crypto = require('crypto');
const dgram = require('dgram');
const fs = require('fs');
const net = require('net');
const path = require('path');
const WebSocket = require(path.join(__dirname, '../signal/node_modules/ws'));

const [url, pid, secondsArg = '60', sessionsArg = '4', allocationsArg = '64', tcpArg = '20'] =
  process.argv.slice(2);
if (!url || !pid) {
  console.error(
    'usage: node bench/attack/turn-memory.cjs ws://127.0.0.1:PORT/ws SERVER_PID [SECONDS] [SESSIONS] [ALLOCATIONS] [TCP_CONNECTIONS]',
  );
  process.exit(2);
}
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1)$/;
if (!/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\//.test(url)) {
  console.error(`${url}: loopback only`);
  process.exit(2);
}
const bounded = (v, lo, hi, name) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < lo || n > hi) {
    console.error(`${name} must be an integer in ${lo}..${hi}`);
    process.exit(2);
  }
  return n;
};
const seconds = bounded(secondsArg, 5, 280, 'SECONDS');
const sessions = bounded(sessionsArg, 1, 64, 'SESSIONS');
const allocations = bounded(allocationsArg, 1, 256, 'ALLOCATIONS');
const tcpConnections = bounded(tcpArg, 0, 64, 'TCP_CONNECTIONS');
const PERMISSIONS = 128; // --turn-max-permissions default; one more is asked for, to see it refused
const PERMISSION_BATCH = 16; // XOR-PEER-ADDRESS attributes per CreatePermission
const MAX_FRAME = 64 * 1024; // largest STUN/ChannelData frame the server accepts over TCP
const TCP_FILL = MAX_FRAME - 20 - 512; // body bytes sent: the frame stays 512 bytes short
const TCP_KEEPALIVE_MS = 20_000; // well within the 60 s idle timeout

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const started = Date.now();
const deadline = started + seconds * 1000;
const before = rss();
let peak = 0;
let peakRss = before;
const stats = {
  sessionsJoined: 0,
  sessionsRefused: 0,
  sessionsClosed: 0,
  allocationAttempts: 0,
  allocationsMade: 0,
  allocationsRefused486: 0,
  allocationErrors: {},
  permissionsGranted: 0,
  permissionsRefused: 0,
  permissionErrors: {},
  tcpAttempts: 0,
  tcpHeld: 0,
  tcpRefused: 0,
  tcpClosedLater: 0,
  tcpBytesPending: 0,
};

function sample() {
  const now = rss();
  peakRss = Math.max(peakRss, now);
  peak = Math.max(peak, now - before);
}

function finish(note) {
  sample();
  const out = {
    seconds,
    rssBeforeMiB: +(before / 1024).toFixed(1),
    rssPeakMiB: +(peakRss / 1024).toFixed(1),
    peakGrowthKiB: peak,
    peakGrowthMiB: +(peak / 1024).toFixed(1),
    ...stats,
  };
  if (note) out.note = note;
  console.log(JSON.stringify(out));
  process.exit(0);
}

// ---- STUN ----

const COOKIE = 0x2112a442;
const METHOD = { ALLOCATE: 0x003, CREATE_PERMISSION: 0x008 };
const ATTR = {
  USERNAME: 0x0006,
  MESSAGE_INTEGRITY: 0x0008,
  ERROR_CODE: 0x0009,
  LIFETIME: 0x000d,
  XOR_PEER_ADDRESS: 0x0012,
  REALM: 0x0014,
  NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016,
  REQUESTED_TRANSPORT: 0x0019,
};

function attribute(type, value) {
  const padded = Buffer.alloc(4 + Math.ceil(value.length / 4) * 4);
  padded.writeUInt16BE(type, 0);
  padded.writeUInt16BE(value.length, 2);
  value.copy(padded, 4);
  return padded;
}

/// A STUN request: header, `attrs` ([type, Buffer] pairs), then MESSAGE-INTEGRITY with `key`.
function request(method, tid, attrs, key) {
  const body = Buffer.concat(attrs.map(([t, v]) => attribute(t, v)));
  const header = Buffer.alloc(20);
  header.writeUInt16BE(method, 0); // class bits 0: a request
  header.writeUInt32BE(COOKIE, 4);
  tid.copy(header, 8);
  if (!key) {
    header.writeUInt16BE(body.length, 2);
    return Buffer.concat([header, body]);
  }
  header.writeUInt16BE(body.length + 24, 2); // as if it ended after MESSAGE-INTEGRITY
  const mac = crypto.createHmac('sha1', key).update(header).update(body).digest();
  return Buffer.concat([header, body, attribute(ATTR.MESSAGE_INTEGRITY, mac)]);
}

/// The response's class ('success' | 'error' | other), error code and attributes by type.
function parse(buf) {
  if (buf.length < 20 || buf.readUInt32BE(4) !== COOKIE) return null;
  const type = buf.readUInt16BE(0);
  const cls = ((type >> 7) & 2) | ((type >> 4) & 1);
  const attrs = new Map();
  for (let at = 20; at + 4 <= buf.length; ) {
    const t = buf.readUInt16BE(at);
    const len = buf.readUInt16BE(at + 2);
    if (at + 4 + len > buf.length) break;
    if (!attrs.has(t)) attrs.set(t, buf.subarray(at + 4, at + 4 + len));
    at += 4 + Math.ceil(len / 4) * 4;
  }
  const err = attrs.get(ATTR.ERROR_CODE);
  return {
    tid: buf.subarray(8, 20),
    cls: cls === 2 ? 'success' : cls === 3 ? 'error' : 'other',
    code: err && err.length >= 4 ? (err[2] & 7) * 100 + err[3] : 0,
    attrs,
  };
}

function xorPeer(ip, port) {
  const v = Buffer.alloc(8);
  v[1] = 0x01; // IPv4
  v.writeUInt16BE(port ^ (COOKIE >>> 16), 2);
  const n = ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  v.writeUInt32BE((n ^ COOKIE) >>> 0, 4);
  return v;
}

const longTermKey = (username, realm, password) =>
  crypto.createHash('md5').update(`${username}:${realm}:${password}`).digest();

/// Sends `build(tid)` on the UDP socket until the response with that tid comes (4 tries).
function transact(sock, host, port, build) {
  const tid = crypto.randomBytes(12);
  const msg = build(tid);
  return new Promise((resolve) => {
    let tries = 0;
    let timer = null;
    const onMessage = (data) => {
      const res = parse(data);
      if (!res || !res.tid.equals(tid)) return;
      clearTimeout(timer);
      sock.off('message', onMessage);
      resolve(res);
    };
    const send = () => {
      if (tries++ >= 4) {
        sock.off('message', onMessage);
        return resolve(null);
      }
      sock.send(msg, port, host);
      timer = setTimeout(send, 500);
    };
    sock.on('message', onMessage);
    send();
  });
}

function udpSocket() {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4');
    sock.on('error', () => {});
    sock.bind({ address: '127.0.0.1', port: 0 }, () => resolve(sock));
    sock.once('error', reject);
  });
}

// ---- Signalling: members whose credentials stay valid ----

function join(i) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { localAddress: '127.0.0.1', perMessageDeflate: false });
    let lastSn = 0;
    let done = false;
    const settle = (v) => {
      if (!done) {
        done = true;
        resolve(v);
      }
    };
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'join', version: 1, room: `turnmem${i}`, name: `t${i}` }));
    });
    ws.on('message', (data) => {
      const msg = JSON.parse(String(data));
      if (typeof msg.sn === 'number') lastSn = Math.max(lastSn, msg.sn);
      if (msg.type === 'ping') ws.send(JSON.stringify({ type: 'pong', ack: lastSn }));
      if (msg.type === 'joined') {
        stats.sessionsJoined += 1;
        settle({ ws, ice: msg.iceServers });
      }
      if (msg.type === 'error' && !done) settle(null);
    });
    ws.on('unexpected-response', () => {
      stats.sessionsRefused += 1;
      settle(null);
    });
    ws.on('error', () => settle(null));
    ws.on('close', () => {
      if (done) stats.sessionsClosed += 1;
      settle(null);
    });
    setTimeout(() => settle(null), 10_000);
  });
}

function turnAddress(ice, transport) {
  for (const server of ice || []) {
    for (const u of server.urls || []) {
      const m = /^turn:(\[[^\]]+\]|[^:?]+):(\d+)\?transport=(\w+)$/.exec(u);
      if (m && m[3] === transport) {
        const host = m[1].replace(/^\[|\]$/g, '');
        if (!LOOPBACK.test(host)) {
          console.error(`${u}: loopback only`);
          process.exit(2);
        }
        return { host: host === 'localhost' ? '127.0.0.1' : host, port: Number(m[2]), server };
      }
    }
  }
  return null;
}

// ---- TCP: connections holding partial frames ----

const tcpSockets = [];

function openTcp(host, port) {
  return new Promise((resolve) => {
    stats.tcpAttempts += 1;
    const sock = net.connect({ host, port, localAddress: '127.0.0.1' });
    let state = 'connecting';
    let keepalive = null;
    sock.on('error', () => {});
    sock.on('data', () => {});
    sock.on('connect', () => {
      // A Binding request header announcing a body of MAX_FRAME - 20 bytes, then most of it.
      const header = Buffer.alloc(20);
      header.writeUInt16BE(0x0001, 0);
      header.writeUInt16BE(MAX_FRAME - 20, 2);
      header.writeUInt32BE(COOKIE, 4);
      crypto.randomBytes(12).copy(header, 8);
      sock.write(Buffer.concat([header, Buffer.alloc(TCP_FILL)]));
      // Closed within a second: refused (the server drops connections over its per-IP share).
      setTimeout(() => {
        if (state !== 'connecting') return;
        state = 'held';
        stats.tcpHeld += 1;
        stats.tcpBytesPending += 20 + TCP_FILL;
        keepalive = setInterval(() => {
          sock.write(Buffer.alloc(1));
          stats.tcpBytesPending += 1;
        }, TCP_KEEPALIVE_MS);
        resolve(true);
      }, 1000);
    });
    sock.on('close', () => {
      clearInterval(keepalive);
      if (state === 'held') {
        stats.tcpHeld -= 1;
        stats.tcpClosedLater += 1;
      } else if (state === 'connecting') {
        stats.tcpRefused += 1;
        resolve(false);
      }
      state = 'closed';
    });
    tcpSockets.push(sock);
  });
}

// ---- The attack ----

async function main() {
  // 1. Members.
  const members = (await Promise.all(Array.from({ length: sessions }, (_, i) => join(i)))).filter(Boolean);
  if (members.length === 0) return finish('no session joined');
  const udp = turnAddress(members[0].ice, 'udp');
  const tcp = turnAddress(members[0].ice, 'tcp');
  if (!udp || !tcp) return finish('no embedded TURN server in iceServers (is it --no-turn?)');
  const creds = members.map((m) => {
    const s = turnAddress(m.ice, 'udp').server;
    return { username: s.username, password: s.credential };
  });

  // 2. A realm and nonce (nonces are bound to the client IP, so one serves every socket).
  const probe = await udpSocket();
  const challenge = await transact(probe, udp.host, udp.port, (tid) =>
    request(METHOD.ALLOCATE, tid, [[ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])]]),
  );
  probe.close();
  if (!challenge || challenge.code !== 401) return finish('no 401 challenge from TURN');
  const realm = challenge.attrs.get(ATTR.REALM).toString();
  let nonce = challenge.attrs.get(ATTR.NONCE).toString();
  const auth = (c) => [
    [ATTR.USERNAME, Buffer.from(c.username)],
    [ATTR.REALM, Buffer.from(realm)],
    [ATTR.NONCE, Buffer.from(nonce)],
  ];
  const keys = creds.map((c) => longTermKey(c.username, realm, c.password));
  const count = (table, code) => {
    table[code] = (table[code] || 0) + 1;
  };

  // 3. Allocations over UDP, one socket (5-tuple) each, members taken in turn.
  const allocated = [];
  for (let k = 0; k < allocations && Date.now() < deadline; k++) {
    const m = k % creds.length;
    const sock = await udpSocket();
    stats.allocationAttempts += 1;
    let res = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      res = await transact(sock, udp.host, udp.port, (tid) =>
        request(
          METHOD.ALLOCATE,
          tid,
          [...auth(creds[m]), [ATTR.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])]],
          keys[m],
        ),
      );
      if (res && res.code === 438) nonce = res.attrs.get(ATTR.NONCE).toString();
      else break;
    }
    if (res && res.cls === 'success') {
      stats.allocationsMade += 1;
      allocated.push({ sock, m });
    } else {
      if (res && res.code === 486) stats.allocationsRefused486 += 1;
      else count(stats.allocationErrors, res ? res.code || res.cls : 'timeout');
      sock.close();
    }
  }

  // 4. Permissions: PERMISSIONS distinct peers per allocation, then one more (refused).
  for (let a = 0; a < allocated.length && Date.now() < deadline; a++) {
    const { sock, m } = allocated[a];
    for (let first = 0; first < PERMISSIONS + 1; first += PERMISSION_BATCH) {
      const n = Math.min(PERMISSION_BATCH, PERMISSIONS + 1 - first);
      const peers = Array.from({ length: n }, (_, j) => {
        const p = first + j; // 0..128
        return `8.8.${(a * 2 + (p >> 7)) & 255}.${(p & 127) + 1}`;
      });
      const res = await transact(sock, udp.host, udp.port, (tid) =>
        request(
          METHOD.CREATE_PERMISSION,
          tid,
          [...auth(creds[m]), ...peers.map((ip) => [ATTR.XOR_PEER_ADDRESS, xorPeer(ip, 3478)])],
          keys[m],
        ),
      );
      if (res && res.cls === 'success') stats.permissionsGranted += n;
      else if (res && res.code === 508) stats.permissionsRefused += n;
      else count(stats.permissionErrors, res ? res.code || res.cls : 'timeout');
    }
  }

  // 5. TCP connections, 50 ms apart so the first ones get the address's share.
  await Promise.all(
    Array.from(
      { length: tcpConnections },
      (_, i) => new Promise((r) => setTimeout(r, i * 50)).then(() => openTcp(tcp.host, tcp.port)),
    ),
  );
}

const sampler = setInterval(() => {
  sample();
  if (Date.now() > deadline) {
    clearInterval(sampler);
    finish();
  }
}, 250);
main().catch((err) => {
  console.error(err);
  finish(`failed: ${err.message}`);
});
