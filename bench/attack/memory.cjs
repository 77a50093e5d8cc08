// What one attacking address can make visavis hold: opens as many sessions as the server lets
// one address have, seats them four to a room, fills every room's chat history and every
// session's replay log (it never acknowledges anything, but keeps each connection alive), and
// grows each connection's WebSocket read buffer with a frame just under the abuse limit. It
// samples the server's RSS (from /proc) throughout and prints the peak growth as JSON.
//
// Usage: node bench/attack/memory.cjs URL SERVER_PID [SECONDS=60] [MAX_MESSAGE=65536]
// Loopback only: the script refuses any other address. Bounded: SECONDS, and at most 1,000
// connection attempts.
'use strict';
const fs = require('fs');
const path = require('path');
const WebSocket = require(path.join(__dirname, '../signal/node_modules/ws'));

const [url, pid, seconds = '60', maxMessage = '65536'] = process.argv.slice(2);
if (!url || !pid) {
  console.error('usage: node bench/attack/memory.cjs ws://127.0.0.1:PORT/ws SERVER_PID [SECONDS] [MAX_MESSAGE]');
  process.exit(2);
}
if (!/^ws:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\//.test(url)) {
  console.error(`${url}: loopback only`);
  process.exit(2);
}
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
const started = Date.now();
const deadline = started + Number(seconds) * 1000;
const text = 'x'.repeat(4000);
const big = JSON.stringify({ type: 'chat', text: 'y'.repeat(16 * Number(maxMessage) - 100) });
const stats = { attempts: 0, joined: 0, refused: 0, closed: 0, chats: 0 };
let peak = 0;
const before = rss();

function open(i) {
  if (Date.now() > deadline || stats.attempts >= 1000) return;
  stats.attempts += 1;
  const ws = new WebSocket(url, { localAddress: '127.0.0.1', perMessageDeflate: false });
  let timer = null;
  ws.on('open', () => {
    ws.send(JSON.stringify({ type: 'join', version: 1, room: `mem${Math.floor(i / 4)}`, name: `m${i}` }));
  });
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data));
    if (msg.type === 'joined') {
      stats.joined += 1;
      // One frame just under the abuse limit: refused, but read into the buffer first.
      ws.send(big);
      timer = setInterval(() => {
        // Alive (a pong that acknowledges nothing), and 2 chat messages a second.
        ws.send(JSON.stringify({ type: 'pong', ack: 0 }));
        ws.send(JSON.stringify({ type: 'chat', text }));
        ws.send(JSON.stringify({ type: 'chat', text }));
        stats.chats += 2;
      }, 1000);
    }
  });
  ws.on('unexpected-response', () => {
    stats.refused += 1;
    setTimeout(() => open(i), 500);
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    clearInterval(timer);
    stats.closed += 1;
    // Take the place again (a session that fell too far behind was ended).
    setTimeout(() => open(i), 200);
  });
}

for (let i = 0; i < 64; i++) setTimeout(() => open(i), i * 20);
const sampler = setInterval(() => {
  peak = Math.max(peak, rss() - before);
  if (Date.now() > deadline) {
    clearInterval(sampler);
    console.log(JSON.stringify({ seconds: Number(seconds), rssBeforeKiB: before, peakGrowthKiB: peak, peakGrowthMiB: +(peak / 1024).toFixed(1), ...stats }));
    process.exit(0);
  }
}, 250);
