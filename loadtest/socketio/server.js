// The Socket.IO side of the S1 comparison (loadtest/bench-socketio.sh):
// Socket.IO 4 with @socket.io/redis-adapter, the way its users deploy
// several nodes. It does what the benchmark needs of Telepath and no more:
//
//   emit("join", {room}, ack)        joins the room; ack({seq})
//   emit("send", {room, body}, ack)  emits "message" {room, seq, body} to the
//                                    room on every node; ack({seq})
//
// Messages are not persisted (Socket.IO has no store): the seq is a counter
// in the process that receives the send, which is enough here because each
// room has one publisher. Listens on 127.0.0.1:$PORT; Redis at $REDIS_URL.

import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';

const port = Number(process.env.PORT || 3000);
const pub = createClient({ url: process.env.REDIS_URL || 'redis://127.0.0.1:6379' });
const sub = pub.duplicate();
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer();
const io = new Server(http, { adapter: createAdapter(pub, sub), transports: ['websocket'] });
const seqs = new Map();

io.on('connection', (socket) => {
  socket.on('join', ({ room }, ack) => {
    socket.join(room);
    ack?.({ seq: seqs.get(room) || 0 });
  });
  socket.on('send', ({ room, body }, ack) => {
    const seq = (seqs.get(room) || 0) + 1;
    seqs.set(room, seq);
    io.to(room).emit('message', { room, seq, body });
    ack?.({ seq });
  });
});

http.listen(port, '127.0.0.1', () => console.log(`socket.io node on 127.0.0.1:${port}`));
process.on('SIGTERM', () => process.exit(0));
