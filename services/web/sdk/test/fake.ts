// A scripted stand-in for the gateway (RFC 6455 by hand, test only): it
// accepts the upgrade and does exactly what a test tells it, so timeouts,
// close codes and resume seams can be checked deterministically.
import { createHash } from "node:crypto";
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";

export interface FakeConn {
  index: number;
  url: string;
  frames: Record<string, any>[];
  send(frame: unknown): void;
  close(code: number, reason?: string): void;
  destroy(): void;
  onFrame?: (frame: Record<string, any>) => void;
}

export interface FakeServer {
  url: string;
  conns: FakeConn[];
  stop(): Promise<void>;
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

function encode(opcode: number, payload: Buffer): Buffer {
  const len = payload.length;
  let head: Buffer;
  if (len < 126) {
    head = Buffer.from([0x80 | opcode, len]);
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

export function welcomeFrame(over: Record<string, unknown> = {}) {
  return {
    type: "welcome",
    conn_id: "fake-conn",
    user: { id: "u-fake", name: "fake", role: "user" },
    node: "fake",
    heartbeat_ms: 15000,
    limits: { max_frame_bytes: 65536, max_rate_per_s: 50, max_body_bytes: 16384, max_rooms_per_conn: 100 },
    ...over,
  };
}

/** Starts a fake gateway; `onConnect` scripts each connection, `onHttp` (if any) answers plain HTTP requests (else 426). */
export function fakeServer(
  onConnect: (conn: FakeConn) => void,
  onHttp?: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<FakeServer> {
  const conns: FakeConn[] = [];
  const sockets = new Set<Duplex>();
  const http: HttpServer = createServer((req, res) => {
    if (onHttp) onHttp(req, res);
    else res.writeHead(426).end();
  });
  http.on("upgrade", (req, socket: Duplex) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const key = String(req.headers["sec-websocket-key"] ?? "");
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    const proto = String(req.headers["sec-websocket-protocol"] ?? "")
      .split(",")
      .map((s) => s.trim())
      .includes("telepath.v1");
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\n` +
        (proto ? "Sec-WebSocket-Protocol: telepath.v1\r\n" : "") +
        "\r\n",
    );
    let closed = false;
    const conn: FakeConn = {
      index: conns.length,
      url: req.url ?? "",
      frames: [],
      send(frame) {
        if (!closed) socket.write(encode(0x1, Buffer.from(JSON.stringify(frame))));
      },
      close(code, reason = "") {
        if (closed) return;
        closed = true;
        const body = Buffer.alloc(2 + Buffer.byteLength(reason));
        body.writeUInt16BE(code, 0);
        body.write(reason, 2);
        socket.write(encode(0x8, body));
        socket.end();
        setTimeout(() => socket.destroy(), 200).unref();
      },
      destroy() {
        closed = true;
        socket.destroy();
      },
    };
    conns.push(conn);
    let buf = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        if (buf.length < 2) return;
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        const masked = (buf[1]! & 0x80) !== 0;
        const mask = masked ? buf.subarray(off, off + 4) : undefined;
        if (masked) off += 4;
        if (buf.length < off + len) return;
        const payload = Buffer.from(buf.subarray(off, off + len));
        buf = buf.subarray(off + len);
        if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
        if (opcode === 0x1) {
          const frame = JSON.parse(payload.toString("utf8"));
          conn.frames.push(frame);
          conn.onFrame?.(frame);
        } else if (opcode === 0x8) {
          if (!closed) {
            closed = true;
            socket.write(encode(0x8, payload.subarray(0, 2)));
            socket.end();
          }
        } else if (opcode === 0x9) {
          socket.write(encode(0xa, payload));
        }
      }
    });
    onConnect(conn);
  });
  return new Promise((ok) => {
    http.listen(0, "127.0.0.1", () => {
      const addr = http.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      ok({
        url: `ws://127.0.0.1:${port}/connect`,
        conns,
        stop: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            http.close(() => done());
          }),
      });
    });
  });
}

/** Replies ok to `frame` with `data`. */
export function replyOk(conn: FakeConn, frame: Record<string, any>, data: unknown) {
  conn.send({ type: "reply", ref: frame["ref"], ok: true, data });
}

/** A fake JWT (unsigned: the fake server does not check it) with these claims. */
export function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
  return `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}.sig`;
}
