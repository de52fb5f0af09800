// The server dies (SIGKILL) and comes back on the same port and database:
// the client reconnects by itself, resumes every room with since, and what
// was sent while it was down lands exactly once, in order.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, type RoomMessage, type SendReply, type StateChange } from "../dist/index.js";
import { client, closeAll, createRoom, login, record, rest, startServer, track, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
before(async () => {
  s = await startServer();
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** A token callback that logs in anew each time, and can be held shut. */
function gatedToken(server: Server, name: string) {
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const g = {
    calls: 0,
    hold() {
      gate = new Promise<void>((r) => (open = r));
    },
    release() {
      gate = undefined;
      open?.();
    },
    token: async () => {
      g.calls++;
      if (gate) await gate;
      return (await login(server, name)).token;
    },
  };
  return g;
}

/**
 * A WebSocket that loses the replies to sends whose body is in `bodies`, as
 * if the server committed them and died before the reply got out.
 */
function replyLosingWebSocket(bodies: Set<string>) {
  const refs = new Set<string>();
  const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage")!;
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      Object.defineProperty(this, "onmessage", {
        configurable: true,
        get: () => desc.get!.call(this),
        set: (fn: ((ev: MessageEvent) => void) | null) =>
          desc.set!.call(
            this,
            fn &&
              ((ev: MessageEvent) => {
                const f = JSON.parse(String(ev.data));
                if (f.type === "reply" && refs.has(f.ref)) return;
                fn(ev);
              }),
          ),
      });
    }
    override send(data: string) {
      const f = JSON.parse(data);
      // Only the first attempt's reply is lost.
      if (f.type === "send" && bodies.delete(f.body)) refs.add(f.ref);
      super.send(data);
    }
  };
}

function assertContiguous(msgs: RoomMessage[], who: string) {
  const seqs = msgs.map((m) => m.seq);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1]! + 1, `${who}: gap or repeat at ${seqs[i - 1]} -> ${seqs[i]} in ${seqs}`);
  assert.equal(new Set(msgs.map((m) => m.id)).size, msgs.length, `${who}: repeated ids`);
}

describe("server restart", () => {
  it("SIGKILL + restart: reconnect, queued and in-flight sends land once in order, no gap, no repeat", async () => {
    const { room } = await createRoom(s, uname("own"));
    const aName = uname("alice");
    const gate = gatedToken(s, aName);
    const a = track(
      new Telepath({
        url: s.ws,
        token: gate.token,
        reconnect: { initialDelayMs: 50, maxDelayMs: 300 },
        WebSocket: replyLosingWebSocket(new Set(["committed"])),
      }),
    );
    const b = await client(s, uname("bob"));
    const aStates: StateChange[] = record(a, "state");
    const aMsgs = record(a, "message");
    const bMsgs = record(b.tp, "message");
    const aJoined = record(a, "joined");
    await Promise.all([a.connect(), b.tp.connect()]);
    await a.join(room.id);
    await b.tp.join(room.id);
    await a.send(room.id, "before");
    await waitFor(() => aMsgs.length === 1 && bMsgs.length === 1, "before at both");

    // Down: one send committed whose reply is lost, one written as the
    // process dies (it may or may not get there), three more while it is down.
    gate.hold();
    const sends: Promise<SendReply>[] = [a.send(room.id, "committed")];
    const committed = await waitFor(() => bMsgs.find((m) => m.body === "committed"), "committed at B");
    sends.push(a.send(room.id, "inflight"));
    await s.kill("SIGKILL");
    await waitFor(() => a.state === "reconnecting" && b.tp.state === "reconnecting", "both reconnecting");
    for (const body of ["down-1", "down-2", "down-3"]) sends.push(a.send(room.id, body));
    // "inflight" may have been answered just before the process died.
    let settled = 0;
    for (const p of sends) void p.then(() => settled++, () => settled++);
    await new Promise((r) => setTimeout(r, 0));
    assert.equal(a.pending(), sends.length - settled);
    assert.ok(a.pending() >= 4);

    // Back on the same port and database; another client talks before A rejoins.
    await s.start();
    const c = await client(s, uname("carol"));
    await c.tp.connect();
    await c.tp.join(room.id);
    for (const body of ["after-1", "after-2", "after-3"]) await c.tp.send(room.id, body);
    assert.equal(a.state, "reconnecting", "A is still held at the token gate");
    gate.release();

    const replies = await Promise.all(sends);
    for (let i = 1; i < replies.length; i++) assert.ok(replies[i]!.seq > replies[i - 1]!.seq, "sends keep their order");
    assert.equal(a.pending(), 0);
    // The resent "committed" got the first reply back: same id and seq.
    assert.equal(replies[0]!.id, committed.id);
    assert.equal(replies[0]!.seq, committed.seq);
    const total = 2 + 4 + 3;
    await waitFor(() => aMsgs.length === total && bMsgs.length === total, `all ${total} messages at A and B`, 10_000);

    const fromA = (ms: RoomMessage[]) => ms.filter((m) => m.from.name === aName).map((m) => m.body);
    assert.deepEqual(fromA(bMsgs), ["before", "committed", "inflight", "down-1", "down-2", "down-3"]);
    assert.deepEqual(fromA(aMsgs), ["before", "committed", "inflight", "down-1", "down-2", "down-3"]);
    for (const [who, ms] of [
      ["A", aMsgs],
      ["B", bMsgs],
    ] as const) {
      assertContiguous(ms, who);
      assert.deepEqual(
        ms.filter((m) => m.body?.startsWith("after-")).map((m) => m.body),
        ["after-1", "after-2", "after-3"],
        `${who} got C's messages from before its rejoin`,
      );
    }
    // The room holds each message exactly once.
    const history = await (await rest(s, uname("reader"))).api.history(room.id, { after: 0, limit: 100 });
    const bodies = history.messages.map((m) => m.body).sort();
    assert.deepEqual(bodies, ["after-1", "after-2", "after-3", "before", "committed", "down-1", "down-2", "down-3", "inflight"]);

    const drop = aStates.find((x) => x.state === "reconnecting")!;
    assert.ok(drop.attempt! >= 1 && drop.delayMs! >= 0 && drop.delayMs! <= 300);
    assert.equal(drop.code, 1006);
    assert.equal(aStates.at(-1)!.state, "open");
    assert.ok(gate.calls >= 2, "the token callback ran again on reconnect");
    assert.ok(aJoined.some((j) => j.rejoin && j.room === room.id && j.recovered));
    assert.equal(a.lastSeq(room.id), history.messages.at(-1)!.seq);
    a.close();
    b.tp.close();
    c.tp.close();
  });

  it("SIGTERM: bye restart and 1012, then reconnect and resume", async () => {
    if (!s.proc) await s.start(); // whatever the test before left
    const { room } = await createRoom(s, uname("own"));
    const a = await client(s, uname("dora"));
    const byes = record(a.tp, "bye");
    const states = record(a.tp, "state");
    const msgs = record(a.tp, "message");
    const presence = record(a.tp, "presence");
    await a.tp.connect();
    await a.tp.join(room.id);
    await a.tp.setStatus("busy", "afk");
    await waitFor(() => presence.some((p) => p.user.id === a.user.id && p.status === "busy"), "our own busy");
    const beforeKill = presence.length;
    await s.kill("SIGTERM");
    await waitFor(() => states.some((x) => x.state === "reconnecting"), "reconnecting");
    assert.equal(byes[0]?.reason, "restart");
    assert.equal(states.find((x) => x.state === "reconnecting")!.code, 1012);
    await s.start();
    const e = await client(s, uname("eve"));
    await e.tp.connect();
    await e.tp.join(room.id);
    await e.tp.send(room.id, "while you were out");
    await waitFor(() => msgs.length === 1, "the message after the restart", 10_000);
    assert.equal(msgs[0]!.body, "while you were out");
    assert.equal(a.tp.state, "open");
    // The restarted server forgot the chosen status; the client applied it again.
    const mine = () => presence.slice(beforeKill).filter((p) => p.user.id === a.user.id);
    await waitFor(() => mine().some((p) => p.status === "busy"), "busy again after the restart");
    const again = mine().find((p) => p.status === "busy")!;
    assert.equal(again.text, "afk");
    a.tp.close();
    e.tp.close();
  });
});
