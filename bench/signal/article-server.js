// The signalling server of the article this project compares itself with: Koa 2 + Socket.io 2,
// one-to-one video calls in rooms of two. Written from the article's description:
//   checkRoom           join a room (joinRoomSuccess, or roomFull when two are already in it)
//   toSendVideo         ask the other member for a call (it gets receiveVideo)
//   cancelSendVideo, rejectReceiveVideo, answerVideo, hangupVideo   call control, forwarded
//   receiveOffer, receiveAnsewer (sic), addIceCandidate             WebRTC signalling, forwarded
//   userLeave           to the other member when one disconnects
// Everything is forwarded with socket.to(room).emit(...), as in the article.
//
// Usage: PORT=3000 [HOST=127.0.0.1] node article-server.js
'use strict';

const http = require('http');
const Koa = require('koa');
const socketIo = require('socket.io');

const port = Number(process.env.PORT || 3000);
const host = process.env.HOST || '127.0.0.1';
const ROOM_SIZE = 2;

const app = new Koa();
app.use(async (ctx) => {
  ctx.body = { status: 'ok', connections: io.engine.clientsCount };
});

const server = http.createServer(app.callback());
const io = socketIo(server);

io.on('connection', (socket) => {
  let roomid = null;
  let userName = null;

  socket.on('checkRoom', (data) => {
    const wanted = String((data && data.roomid) || '');
    const room = io.sockets.adapter.rooms[wanted];
    const count = room ? room.length : 0;
    if (!wanted || roomid || count >= ROOM_SIZE) {
      socket.emit('roomFull', { roomid: wanted });
      return;
    }
    roomid = wanted;
    userName = String((data && data.userName) || '');
    socket.join(roomid);
    socket.emit('joinRoomSuccess', { roomid, userName, count: count + 1 });
  });

  const forward = (event, as = event) => {
    socket.on(event, (data) => {
      if (roomid) socket.to(roomid).emit(as, data);
    });
  };
  forward('toSendVideo', 'receiveVideo');
  forward('cancelSendVideo');
  forward('rejectReceiveVideo');
  forward('answerVideo');
  forward('hangupVideo');
  forward('receiveOffer');
  forward('receiveAnsewer');
  forward('addIceCandidate');

  socket.on('disconnect', () => {
    if (roomid) socket.to(roomid).emit('userLeave', { roomid, userName });
  });
});

server.listen(port, host, () => {
  console.log(`article server (Koa 2 + Socket.io 2) on http://${host}:${port}`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
