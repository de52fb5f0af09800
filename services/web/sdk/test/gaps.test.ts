// Holes in a room's seqs (pub/sub between gateways is at-most-once): the
// client against a scripted fake gateway and a fake history. A message past
// the next seq due is held while the hole is read over REST; the app sees
// each room in seq order with no hole and no repeat; acks never pass a hole;
// a failed read falls back to a rejoin with since.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { Telepath, TelepathError, type GapEvent, type HistoryQuery, type MessagePage, type RoomMessage, type TelepathOptions } from "../dist/index.js";
import { fakeServer, replyOk, welcomeFrame, type FakeConn } from "./fake.js";
import { sleep, waitFor } from "./helpers.js";

const ROOM = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";

const clients: Telepath[] = [];
after(() => {
  for (const c of clients) c.close();
});

/** A room message as the socket carries it. */
function msg(seq: number) {
  return {
    type: "message",
    room: ROOM,
    id: `id${seq}`,
    seq,
    from: { id: "u2", name: "bob" },
    body: `m${seq}`,
    kind: "text",
    ts: new Date(1_700_000_000_000 + seq).toISOString(),
  };
}

/** The same message as REST history gives it (no `type`). */
function restMsg(seq: number): RoomMessage {
  const { type: _type, ...m } = msg(seq);
  return m;
}

/**
 * A fake `GET /rooms/{id}/messages`: every seq from 1 exists; `after` (with
 * `before`) gives the oldest `limit` above it, like the api. `hold()` makes
 * calls wait until `release()`; `fail` makes them reject.
 */
function fakeHistory() {
  const calls: HistoryQuery[] = [];
  let held = false;
  let waiting: (() => void)[] = [];
  const h = {
    calls,
    fail: undefined as TelepathError | undefined,
    hold() {
      held = true;
    },
    release() {
      held = false;
      for (const w of waiting.splice(0)) w();
    },
    get waiting() {
      return waiting.length;
    },
    fn: async (room: string, q: HistoryQuery): Promise<MessagePage> => {
      assert.equal(room, ROOM);
      calls.push({ ...q });
      if (held) await new Promise<void>((r) => waiting.push(r));
      if (h.fail) throw h.fail;
      const from = (q.after ?? 0) + 1;
      const below = q.before ?? Number.MAX_SAFE_INTEGER;
      const limit = q.limit ?? 50;
      const messages: RoomMessage[] = [];
      for (let s = from; s < below && messages.length < limit; s++) messages.push(restMsg(s));
      const last = messages.at(-1)?.seq ?? q.after ?? 0;
      return { messages, has_more: last + 1 < below };
    },
  };
  return h;
}

type JoinScript = (conn: FakeConn, frame: Record<string, any>, nth: number) => void;

/**
 * A fake gateway whose joins are answered by `onJoin`, and a client on it
 * (immediate acks, the fake history) that has joined ROOM. `written` is
 * every frame the client wrote, with the seqs delivered to the app by then.
 */
async function setup(onJoin: JoinScript, opts: Partial<TelepathOptions> = {}) {
  let joins = 0;
  const srv = await fakeServer((conn) => {
    conn.send(welcomeFrame({ conn_id: `c${conn.index}` }));
    conn.onFrame = (f) => {
      if (f["type"] === "join") onJoin(conn, f, joins++);
    };
  });
  after(() => srv.stop());
  const history = fakeHistory();
  const got: number[] = [];
  const messages: RoomMessage[] = [];
  const written: { frame: Record<string, any>; delivered: number[] }[] = [];
  class Spy extends WebSocket {
    override send(data: string) {
      written.push({ frame: JSON.parse(data), delivered: [...got] });
      super.send(data);
    }
  }
  const tp = new Telepath({
    url: srv.url,
    token: "t",
    WebSocket: Spy,
    ackThrottleMs: 0,
    history: history.fn,
    reconnect: { initialDelayMs: 10, maxDelayMs: 10 },
    ...opts,
  });
  clients.push(tp);
  tp.on("message", (m) => {
    got.push(m.seq);
    messages.push(m);
  });
  let frames = 0;
  tp.on("frame", (f) => {
    if (f.type === "message") frames++;
  });
  const gaps: GapEvent[] = [];
  tp.on("gap", (g) => gaps.push(g));
  await tp.connect();
  await tp.join(ROOM);
  const conn = () => srv.conns.at(-1)!;
  return {
    srv,
    tp,
    history,
    got,
    messages,
    gaps,
    written,
    /** Sends room messages with these seqs and waits until the client has handled them. */
    async push(...seqs: number[]) {
      const want = frames + seqs.length;
      for (const s of seqs) conn().send(msg(s));
      await waitFor(() => frames >= want, `the client got ${seqs.join(",")}`);
    },
    acks: () => written.filter((w) => w.frame["type"] === "ack" && w.frame["room"] === ROOM),
    joinFrames: () => written.filter((w) => w.frame["type"] === "join").map((w) => w.frame),
  };
}

/** Every room ack the client wrote carried a seq it had delivered, with nothing missing below it. */
function assertAcksContiguous(acks: { frame: Record<string, any>; delivered: number[] }[]) {
  for (const { frame, delivered } of acks) {
    const seq = frame["seq"] as number;
    assert.ok(delivered.includes(seq), `ack ${seq} was written before ${seq} was delivered (delivered: ${delivered.join(",")})`);
  }
}

const join5: JoinScript = (c, f) => replyOk(c, f, { room: ROOM, seq: 5, recovered: true });

describe("holes in a room's seqs", () => {
  it("a jump is held while the hole is read over REST, then all go out in seq order; acks never pass the hole", async () => {
    const t = await setup(join5);
    t.history.hold();
    await t.push(6, 8, 9); // 7 was lost between gateways
    assert.deepEqual(t.got, [6], "8 and 9 wait behind the hole");
    assert.deepEqual(t.history.calls, [{ after: 6, before: 8, limit: 500 }]);
    assert.deepEqual(t.gaps, [{ room: ROOM, after: 6, before: 8, action: "fetch" }]);
    await sleep(50);
    assert.deepEqual(
      t.acks().map((a) => a.frame["seq"]),
      [6],
      "no ack past the hole",
    );
    assert.equal(t.tp.lastSeq(ROOM), 6);

    t.history.release();
    await waitFor(() => t.got.length === 4, "7, 8 and 9");
    assert.deepEqual(t.got, [6, 7, 8, 9]);
    // The message from history looks like one from the socket.
    const seven = t.messages[1]!;
    assert.equal(seven.type, "message");
    assert.equal(seven.room, ROOM);
    assert.equal(seven.body, "m7");
    assert.deepEqual(t.gaps.at(-1), { room: ROOM, after: 6, before: 8, action: "filled" });
    await waitFor(() => t.acks().at(-1)?.frame["seq"] === 9, "the ack of 9");
    assertAcksContiguous(t.acks());
    assert.equal(t.tp.lastSeq(ROOM), 9);
    assert.equal(t.history.calls.length, 1);
  });

  it("repeats are dropped silently, without a fetch", async () => {
    const t = await setup(join5);
    await t.push(6, 6, 5, 3, 7, 7, 6);
    await sleep(30);
    assert.deepEqual(t.got, [6, 7]);
    assert.equal(t.history.calls.length, 0);
    assert.deepEqual(t.gaps, []);
  });

  it("the gateway repairing the hole before the fetch returns: each message once, the late page changes nothing", async () => {
    const t = await setup(join5);
    t.history.hold();
    await t.push(6, 8);
    assert.deepEqual(t.got, [6]);
    // The gateway's own repair: the missing 7, then 8 again, then live 9.
    await t.push(7, 8, 9);
    assert.deepEqual(t.got, [6, 7, 8, 9]);
    assert.deepEqual(
      t.gaps.map((g) => g.action),
      ["fetch", "filled"],
    );
    t.history.release();
    await sleep(50);
    assert.deepEqual(t.got, [6, 7, 8, 9], "no repeat from the late page");
    assert.equal(t.joinFrames().length, 1, "no rejoin");
    assertAcksContiguous(t.acks());
  });

  it("a hole larger than a page is read page by page", async () => {
    const t = await setup(join5);
    await t.push(6, 1300);
    await waitFor(() => t.got.length === 1295, "6..1300", 5000);
    assert.deepEqual(
      t.got,
      Array.from({ length: 1295 }, (_, i) => 6 + i),
    );
    assert.deepEqual(t.history.calls, [
      { after: 6, before: 1300, limit: 500 },
      { after: 506, before: 1300, limit: 500 },
      { after: 1006, before: 1300, limit: 500 },
    ]);
    assertAcksContiguous(t.acks());
  });

  it("a failing fetch is retried, then the room is joined again with since = the contiguous seq", async () => {
    const t = await setup(
      (c, f, nth) => {
        if (nth === 0) return join5(c, f, nth);
        // The rejoin: the reply, then the replay of (since, 9].
        replyOk(c, f, { room: ROOM, seq: 9, recovered: true });
        for (let s = (f["since"] as number) + 1; s <= 9; s++) c.send(msg(s));
      },
      { gapFetchRetries: 1 },
    );
    t.history.fail = new TelepathError("unavailable", "the api is down", 503);
    const joined: { rejoin: boolean; seq: number }[] = [];
    t.tp.on("joined", (j) => joined.push({ rejoin: j.rejoin, seq: j.seq }));
    await t.push(6, 8);
    await waitFor(() => t.got.length === 4, "6..9 after the rejoin");
    assert.deepEqual(t.got, [6, 7, 8, 9]);
    assert.equal(t.history.calls.length, 2, "one try and one retry");
    const rejoin = t.joinFrames()[1]!;
    assert.equal(rejoin["since"], 6);
    assert.equal(t.srv.conns.length, 1, "on the same connection");
    assert.deepEqual(joined, [{ rejoin: true, seq: 9 }]);
    assert.deepEqual(
      t.gaps.map((g) => g.action),
      ["fetch", "rejoin"],
    );
    assert.equal(t.gaps[1]!.after, 6);
    assert.equal(t.gaps[1]!.error?.code, "unavailable");
    assertAcksContiguous(t.acks());
  });

  it("a fetch that gets no answer in time counts as failed", async () => {
    const t = await setup(
      (c, f, nth) => {
        if (nth === 0) return join5(c, f, nth);
        replyOk(c, f, { room: ROOM, seq: 8, recovered: true });
        c.send(msg(7));
        c.send(msg(8));
      },
      { gapFetchRetries: 0, gapFetchTimeoutMs: 100 },
    );
    t.history.hold();
    await t.push(6, 8);
    await waitFor(() => t.got.length === 3, "7 and 8 after the rejoin");
    assert.deepEqual(t.got, [6, 7, 8]);
    assert.equal(t.gaps[1]!.action, "rejoin");
    assert.equal(t.gaps[1]!.error?.code, "timeout");
    t.history.release();
    await sleep(30);
    assert.deepEqual(t.got, [6, 7, 8]);
  });

  it("too much held behind a hole: rejoin with since; recovered:false is handled as before", async () => {
    const t = await setup(
      (c, f, nth) => {
        if (nth === 0) return join5(c, f, nth);
        replyOk(c, f, { room: ROOM, seq: 11, recovered: false });
      },
      { gapHoldMax: 3 },
    );
    const recoveries = [] as { room: string; recovered: false; seq: number }[];
    t.tp.on("recovery", (r) => recoveries.push(r));
    t.history.hold();
    await t.push(6, 8, 9, 10);
    assert.equal(t.joinFrames().length, 1, "three held: still waiting for the fetch");
    await t.push(11);
    await waitFor(() => recoveries.length === 1, "the recovery event");
    assert.equal(t.joinFrames()[1]!["since"], 6);
    assert.deepEqual(recoveries[0], { room: ROOM, recovered: false, seq: 11 });
    assert.equal(t.tp.lastSeq(ROOM), 11);
    assert.deepEqual(t.got, [6], "the app pages (6, 11] itself");
    await t.push(12);
    assert.deepEqual(t.got, [6, 12]);
    t.history.release();
    await sleep(30);
    assert.deepEqual(t.got, [6, 12], "the abandoned fetch delivers nothing");
  });

  it("a drop while the hole is read: the rejoin resumes from the contiguous seq, the late page changes nothing", async () => {
    const t = await setup((c, f, nth) => {
      if (nth === 0) return join5(c, f, nth);
      replyOk(c, f, { room: ROOM, seq: 8, recovered: true });
      for (let s = (f["since"] as number) + 1; s <= 8; s++) c.send(msg(s));
    });
    t.history.hold();
    await t.push(6, 8);
    t.srv.conns[0]!.close(1012, "restart");
    await waitFor(() => t.got.length === 3, "the replay after the reconnect");
    assert.deepEqual(t.got, [6, 7, 8]);
    assert.equal(t.srv.conns.length, 2);
    assert.equal(t.joinFrames()[1]!["since"], 6);
    t.history.release();
    await sleep(30);
    assert.deepEqual(t.got, [6, 7, 8]);
    assertAcksContiguous(t.acks());
  });

  it("a join without since: the replay from the cursor sets where the room continues", async () => {
    const t = await setup((c, f) => {
      // The participant's cursor is 2: the reply, then the replay of (2, 5].
      replyOk(c, f, { room: ROOM, seq: 5, recovered: true });
      for (const s of [3, 4, 5]) c.send(msg(s));
    });
    await waitFor(() => t.got.length === 3, "the replay");
    assert.deepEqual(t.got, [3, 4, 5]);
    await t.push(7);
    await waitFor(() => t.got.length === 5, "6 from history, then 7");
    assert.deepEqual(t.got, [3, 4, 5, 6, 7]);
    assert.deepEqual(t.history.calls, [{ after: 5, before: 7, limit: 500 }]);
  });

  it("a join without since and nothing to replay: a first message past the reply's seq is a jump", async () => {
    const t = await setup(join5);
    await t.push(7);
    await waitFor(() => t.got.length === 2, "6 from history, then 7");
    assert.deepEqual(t.got, [6, 7]);
    assert.deepEqual(t.history.calls, [{ after: 5, before: 7, limit: 500 }]);
  });

  it("ackRoom is capped at the contiguous seq", async () => {
    const t = await setup(join5, { autoAck: false });
    t.history.hold();
    await t.push(6, 8);
    t.tp.ackRoom(ROOM, 8);
    await waitFor(() => t.acks().length === 1, "the ack");
    assert.equal(t.acks()[0]!.frame["seq"], 6);
  });

  it("by default the hole is read from GET /rooms/{id}/messages on the url's origin, with the socket's token", async () => {
    const requests: { url: string; auth: string | undefined }[] = [];
    const srv = await fakeServer(
      (conn) => {
        conn.send(welcomeFrame());
        conn.onFrame = (f) => {
          if (f["type"] === "join") {
            replyOk(conn, f, { room: ROOM, seq: 5, recovered: true });
            conn.send(msg(6));
            conn.send(msg(8));
          }
        };
      },
      (req, res) => {
        requests.push({ url: req.url ?? "", auth: req.headers["authorization"] });
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ messages: [restMsg(7)], has_more: false }));
      },
    );
    after(() => srv.stop());
    const tp = new Telepath({ url: srv.url, token: "tok-1" });
    clients.push(tp);
    const got: number[] = [];
    tp.on("message", (m) => got.push(m.seq));
    await tp.connect();
    await tp.join(ROOM);
    await waitFor(() => got.length === 3, "6, 7, 8");
    assert.deepEqual(got, [6, 7, 8]);
    assert.deepEqual(requests, [{ url: `/rooms/${ROOM}/messages?before=8&after=6&limit=500`, auth: "Bearer tok-1" }]);
    tp.close();
  });
});
