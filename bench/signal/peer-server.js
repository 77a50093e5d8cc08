// PeerServer (npm `peer`) as a standalone signalling server. Its WebSocket is at
// ws://HOST:PORT/peerjs?key=peerjs&id=ID&token=TOKEN (mount path "/").
//
// The connection limit (concurrent_limit, 5000 by default) is raised so that the idle-connection
// benchmark is bounded by the machine, not by a setting; everything else is PeerServer's default.
//
// Usage: PORT=9000 [HOST=127.0.0.1] node peer-server.js
'use strict';

const { PeerServer } = require('peer');

const port = Number(process.env.PORT || 9000);
const host = process.env.HOST || '127.0.0.1';

PeerServer({ port, host, path: '/', key: 'peerjs', concurrent_limit: 1000000 }, () => {
  console.log(`PeerServer on http://${host}:${port}/ (WebSocket /peerjs)`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
