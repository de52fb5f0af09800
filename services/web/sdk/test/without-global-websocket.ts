// The SDK on Node.js without a global WebSocket (Node 20 without
// --experimental-websocket, or --no-experimental-websocket on later ones),
// against a real all-in-one: it says so when no WebSocket is passed, and
// works with the `ws` package's (every auth mode, a server restart, a
// handshake that never answers). Not named *.test.*: `npm run test:sdk`
// runs with the flag; `npm run test:sdk:node` runs this file without it.
import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";

import { WebSocket as WsWebSocket } from "ws";

import { Telepath, type RoomMessage } from "../dist/index.js";
import { closeAll, createRoom, login, record, startServer, track, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
before(async () => {
  s = await startServer();
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** The ws package's WebSocket, recording every URL it is given. */
function spyWs() {
  const urls: string[] = [];
  class Spy extends WsWebSocket {
    constructor(...args: ConstructorParameters<typeof WsWebSocket>) {
      super(...args);
      urls.push(String(args[0]));
    }
  }
  return { WebSocket: Spy, urls };
}

const param = (url: string, name: string) => new URL(url).searchParams.get(name);

describe("Node.js without a global WebSocket", () => {
  it("has none (run without --experimental-websocket)", () => {
    assert.equal(typeof (globalThis as { WebSocket?: unknown }).WebSocket, "undefined");
  });

  it("new Telepath() without opts.WebSocket says there is none and how to pass one", () => {
    assert.throws(
      () => new Telepath({ url: s.ws, token: "t" }),
      (e: Error) => {
        assert.ok(e instanceof TypeError);
        assert.equal(
          e.message,
          "Telepath: no WebSocket implementation: this runtime has no global WebSocket (Node.js 20 has none without --experimental-websocket). " +
            'Pass one as opts.WebSocket, e.g. `npm install ws`, then `import { WebSocket } from "ws"` and `new Telepath({ url, token, WebSocket })`',
        );
        return true;
      },
    );
  });

  it("a URL where the options belong is a TypeError that does not quote it", () => {
    assert.throws(
      () => new Telepath(`${s.ws}?token=SeCrEt` as any),
      (e: Error) => e instanceof TypeError && /options object, not a URL/.test(e.message) && !e.message.includes("SeCrEt"),
    );
  });

  it("with ws's WebSocket: ticket, token and header auth chat, and come back after a server restart", async () => {
    const { room } = await createRoom(s, uname("own"));
    const modes = ["ticket", "token", "header"] as const;
    const peers = await Promise.all(
      modes.map(async (auth) => {
        const { token } = await login(s, uname(auth));
        const spy = spyWs();
        const tp = track(
          new Telepath({ url: s.ws, token, auth, WebSocket: spy.WebSocket, reconnect: { initialDelayMs: 50, maxDelayMs: 300 } }),
        );
        await tp.connect();
        await tp.join(room.id);
        return { auth, token, tp, spy, got: record(tp, "message") };
      }),
    );
    const [ticket, token, header] = peers;
    const bodies = (got: RoomMessage[]) => got.map((m) => m.body);
    await ticket!.tp.send(room.id, "one");
    await token!.tp.send(room.id, "two");
    await header!.tp.send(room.id, "three");
    for (const p of peers) await waitFor(() => p.got.length === 3, `three messages at ${p.auth}`);

    await s.kill();
    for (const p of peers) await waitFor(() => p.tp.state === "reconnecting", `${p.auth} reconnecting`);
    await s.start();
    for (const p of peers) await waitFor(() => p.tp.state === "open", `${p.auth} open again`, 15_000);
    await header!.tp.send(room.id, "four");
    for (const p of peers) {
      await waitFor(() => p.got.length === 4, `four messages at ${p.auth}`);
      assert.deepEqual(bodies(p.got), ["one", "two", "three", "four"]);
    }

    assert.ok(ticket!.spy.urls.length >= 2);
    const tickets = ticket!.spy.urls.map((u) => param(u, "ticket"));
    assert.equal(new Set(tickets).size, tickets.length, "a fresh ticket per connect");
    for (const u of ticket!.spy.urls) {
      assert.match(param(u, "ticket") ?? "", /^[A-Za-z0-9_-]{43}$/);
      assert.ok(!u.includes(ticket!.token));
    }
    for (const u of token!.spy.urls) assert.equal(param(u, "token"), token!.token);
    for (const u of header!.spy.urls) assert.equal(u, s.ws);
  });

  it("a handshake that never answers is given up after connectTimeoutMs and retried (no stray ws error)", async () => {
    const held = new Set<Socket>();
    const silent = createServer((sock) => {
      held.add(sock);
      sock.on("close", () => held.delete(sock));
    });
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const port = (silent.address() as { port: number }).port;
    let onNew: ((ws: WsWebSocket) => void) | undefined;
    class Hooked extends WsWebSocket {
      constructor(...args: ConstructorParameters<typeof WsWebSocket>) {
        super(...args);
        onNew?.(this);
      }
    }
    try {
      const tp = track(
        new Telepath({
          url: `ws://127.0.0.1:${port}/connect`,
          token: "t",
          WebSocket: Hooked,
          connectTimeoutMs: 100,
          reconnect: { initialDelayMs: 20, maxDelayMs: 40 },
        }),
      );
      const states = record(tp, "state");
      const connecting = tp.connect();
      connecting.catch(() => {});
      await waitFor(() => states.filter((x) => x.state === "reconnecting").length >= 3, "three retries");
      assert.ok(states.every((x) => x.state !== "reconnecting" || x.reason === "no welcome in time"));
      // Closed while a handshake is under way: ws reports that socket's abort as an error event.
      const closedWhile = new Promise<number>((resolve) => {
        onNew = (ws) => {
          onNew = undefined;
          setTimeout(() => {
            const readyState = ws.readyState;
            tp.close();
            resolve(readyState);
          }, 20);
        };
      });
      assert.equal(await closedWhile, WsWebSocket.CONNECTING);
      await assert.rejects(connecting, /closed/);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      for (const sock of held) sock.destroy();
      await new Promise((r) => silent.close(() => r(undefined)));
    }
  });
});
