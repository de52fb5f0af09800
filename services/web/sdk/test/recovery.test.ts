// Resuming rooms across drops against a real server with a small replay cap:
// within the cap the gap is replayed; over it `recovery` says page over REST.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, type RoomMessage } from "../dist/index.js";
import { client, closeAll, createRoom, droppableWebSocket, login, record, rest, sleep, startServer, track, uname, waitFor, type Server } from "./helpers.js";

const CAP = 5;
let s: Server;
before(async () => {
  s = await startServer({ TELEPATH_REPLAY_CAP: String(CAP) });
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** A WebSocket that loses the `message` frames whose body `lose` picks (as pub/sub between gateways may). */
function lossyWebSocket(lose: (body: string) => boolean) {
  return class Lossy extends WebSocket {
    override get onmessage() {
      return super.onmessage;
    }
    override set onmessage(fn: ((this: WebSocket, ev: MessageEvent) => any) | null) {
      super.onmessage = fn
        ? (ev: MessageEvent) => {
            const f = JSON.parse(String(ev.data));
            if (f.type === "message" && lose(f.body)) return;
            fn.call(this, ev);
          }
        : null;
    }
  };
}

/** Login per call, held while `hold()` is in force. */
function gatedToken(name: string) {
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  return {
    hold() {
      gate = new Promise<void>((r) => (open = r));
    },
    release() {
      gate = undefined;
      open?.();
    },
    token: async () => {
      if (gate) await gate;
      return (await login(s, name)).token;
    },
  };
}

describe("resume", () => {
  it("over the replay cap: recovered:false, a recovery event, lastSeq moves to the reply's seq; within it: replayed", async () => {
    const { room } = await createRoom(s, uname("own"));
    const aName = uname("ann");
    const gate = gatedToken(aName);
    const sock = droppableWebSocket();
    const a = track(new Telepath({ url: s.ws, token: gate.token, WebSocket: sock.WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } }));
    const b = await client(s, uname("bob"));
    const msgs = record(a, "message");
    const recoveries = record(a, "recovery");
    const joined = record(a, "joined");
    await Promise.all([a.connect(), b.tp.connect()]);
    await a.join(room.id);
    await b.tp.join(room.id);
    const first = await b.tp.send(room.id, "m-1");
    await waitFor(() => msgs.length === 1, "m-1");
    assert.equal(a.lastSeq(room.id), first.seq);

    // Miss more than the cap.
    gate.hold();
    sock.drop();
    await waitFor(() => a.state === "reconnecting", "A reconnecting");
    let last = first.seq;
    for (let i = 0; i < CAP + 3; i++) last = (await b.tp.send(room.id, `gap-${i}`)).seq;
    gate.release();
    await waitFor(() => recoveries.length === 1, "recovery event");
    assert.deepEqual(recoveries[0], { room: room.id, recovered: false, seq: last });
    const rejoin = joined.at(-1)!;
    assert.equal(rejoin.rejoin, true);
    assert.equal(rejoin.recovered, false);
    assert.equal(rejoin.seq, last);
    await sleep(200);
    assert.equal(msgs.length, 1, "nothing partial is replayed");
    assert.equal(a.lastSeq(room.id), last);
    // The app pages the hole over REST.
    const api = (await rest(s, uname("pager"))).api;
    const hole = await api.history(room.id, { after: first.seq, before: last + 1 });
    assert.equal(hole.messages.length, CAP + 3);
    // Live messages continue after the reply's seq.
    const live = await b.tp.send(room.id, "live");
    await waitFor(() => msgs.length === 2, "live after recovery");
    assert.equal(msgs[1]!.seq, live.seq);

    // Within the cap: the gap is replayed in order, no recovery event.
    gate.hold();
    sock.drop();
    await waitFor(() => a.state === "reconnecting", "A reconnecting again");
    const missed: number[] = [];
    for (let i = 0; i < CAP - 1; i++) missed.push((await b.tp.send(room.id, `small-${i}`)).seq);
    gate.release();
    await waitFor(() => msgs.length === 2 + missed.length, "the replay");
    assert.deepEqual(
      msgs.slice(2).map((m: RoomMessage) => m.seq),
      missed,
    );
    assert.equal(recoveries.length, 1);
    assert.equal(joined.at(-1)!.recovered, true);
    a.close();
    b.tp.close();
  });

  it("auto-acks move the room cursor: a new client joining without since gets only what it missed", async () => {
    const { room } = await createRoom(s, uname("own"));
    const name = uname("multi");
    const b = await client(s, uname("talker"));
    await b.tp.connect();
    await b.tp.join(room.id);
    const a1 = track(new Telepath({ url: s.ws, token: (await login(s, name)).token, ackThrottleMs: 50 }));
    const m1 = record(a1, "message");
    await a1.connect();
    await a1.join(room.id);
    for (let i = 0; i < 3; i++) await b.tp.send(room.id, `seen-${i}`);
    await waitFor(() => m1.length === 3, "three at a1");
    // Acks are batched by the gateway (200 ms).
    await sleep(600);
    a1.close();
    const missed = [await b.tp.send(room.id, "missed-1"), await b.tp.send(room.id, "missed-2")];

    const a2 = track(new Telepath({ url: s.ws, token: (await login(s, name)).token }));
    const m2 = record(a2, "message");
    await a2.connect();
    const j = await a2.join(room.id); // no since: the server resumes from the cursor
    assert.equal(j.seq, missed[1]!.seq);
    await waitFor(() => m2.length === 2, "the two missed");
    await sleep(200);
    assert.deepEqual(
      m2.map((m) => m.body),
      ["missed-1", "missed-2"],
    );
    assert.equal(a2.lastSeq(room.id), missed[1]!.seq);
    a2.close();
    b.tp.close();
  });

  it("a message lost on the way is read from the api's history, in order; the cursor never passes the hole", async () => {
    const { room } = await createRoom(s, uname("own"));
    const name = uname("lossy");
    const b = await client(s, uname("talker"));
    await b.tp.connect();
    await b.tp.join(room.id);

    // The default history: GET /rooms/{id}/messages on the server, with the socket's token.
    const a = track(new Telepath({ url: s.ws, token: (await login(s, name)).token, WebSocket: lossyWebSocket((body) => body === "lost-1"), ackThrottleMs: 20 }));
    const got = record(a, "message");
    const gaps = record(a, "gap");
    await a.connect();
    await a.join(room.id);
    const sent = [];
    for (const body of ["one", "lost-1", "three"]) sent.push(await b.tp.send(room.id, body));
    await waitFor(() => got.length === 3, "all three at A");
    assert.deepEqual(
      got.map((m) => m.body),
      ["one", "lost-1", "three"],
    );
    assert.deepEqual(
      got.map((m) => m.seq),
      sent.map((r) => r.seq),
    );
    assert.deepEqual(
      gaps.map((g) => g.action),
      ["fetch", "filled"],
    );
    await sleep(600); // the acks reach the api
    a.close();

    // History that never answers: the hole stays open, so the cursor stays below it.
    const a2 = track(
      new Telepath({
        url: s.ws,
        token: (await login(s, name)).token,
        WebSocket: lossyWebSocket((body) => body === "lost-2"),
        history: () => new Promise(() => {}),
        gapFetchTimeoutMs: 60_000,
        ackThrottleMs: 20,
      }),
    );
    const got2 = record(a2, "message");
    await a2.connect();
    await a2.join(room.id);
    for (const body of ["four", "lost-2", "six", "seven"]) await b.tp.send(room.id, body);
    await waitFor(() => got2.length >= 1, "four at A2");
    // Acks are batched by the gateway (200 ms).
    await sleep(600);
    assert.deepEqual(
      got2.map((m) => m.body),
      ["four"],
    );
    a2.close();

    // A new client joining without since resumes from the cursor: what A2 never saw comes again.
    const a3 = track(new Telepath({ url: s.ws, token: (await login(s, name)).token }));
    const got3 = record(a3, "message");
    await a3.connect();
    await a3.join(room.id);
    await waitFor(() => got3.length === 3, "the replay from the cursor");
    assert.deepEqual(
      got3.map((m) => m.body),
      ["lost-2", "six", "seven"],
    );
    a3.close();
    b.tp.close();
  });
});
