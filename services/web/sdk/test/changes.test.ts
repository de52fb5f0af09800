// Messages that live (edits, deletes, reactions, receipts, threads, search,
// DM history) against a scripted fake gateway and a fake history: a room
// change takes a seq and travels in the room's one ordered log exactly like a
// message (deduped by seq, held behind a hole, the seq the rejoin resumes
// from); a DM already seen that comes again edited or deleted is an update.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import {
  Telepath,
  TelepathRest,
  type DirectMessage,
  type GapEvent,
  type HistoryQuery,
  type MessagePage,
  type RoomMessage,
  type TelepathOptions,
} from "../dist/index.js";
import { fakeServer, replyOk, welcomeFrame, type FakeConn } from "./fake.js";
import { sleep, waitFor } from "./helpers.js";

const ROOM = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
const ME = { id: "u-fake", name: "fake" };
const BOB = { id: "u2", name: "bob" };

const clients: Telepath[] = [];
after(() => {
  for (const c of clients) c.close();
});

type Item = Record<string, any> & { seq: number };

function msg(seq: number, over: Record<string, unknown> = {}): Item {
  return {
    type: "message",
    room: ROOM,
    id: `id${seq}`,
    seq,
    from: BOB,
    body: `m${seq}`,
    kind: "text",
    ts: new Date(1_700_000_000_000 + seq).toISOString(),
    ...over,
  };
}
const edit = (seq: number, of: number, body: string): Item => ({
  type: "message_edited",
  room: ROOM,
  id: `id${of}`,
  seq,
  body,
  edited_at: new Date(1_700_000_100_000 + seq).toISOString(),
  by: BOB,
});
const del = (seq: number, of: number): Item => ({ type: "message_deleted", room: ROOM, id: `id${of}`, seq, by: BOB });
const react = (seq: number, of: number, emoji: string, on: boolean, count: number): Item => ({
  type: "reaction",
  room: ROOM,
  id: `id${of}`,
  seq,
  emoji,
  user: BOB,
  on,
  count,
});

/**
 * The room's log: seq -> item. History (`GET /rooms/{id}/messages`) lists
 * only its messages, so a range may skip the seqs of changes, as the api's does.
 */
function fakeLog(items: Item[]) {
  const log = new Map<number, Item>(items.map((i) => [i.seq, i]));
  const calls: HistoryQuery[] = [];
  return {
    log,
    calls,
    history: async (room: string, q: HistoryQuery): Promise<MessagePage> => {
      assert.equal(room, ROOM);
      calls.push({ ...q });
      const below = q.before ?? Number.MAX_SAFE_INTEGER;
      const limit = q.limit ?? 50;
      const seqs = [...log.keys()].filter((s) => s > (q.after ?? 0) && s < below).sort((a, b) => a - b);
      const messages: RoomMessage[] = [];
      let last = q.after ?? 0;
      for (const s of seqs) {
        if (messages.length >= limit) break;
        last = s;
        const it = log.get(s)!;
        if (it["type"] !== "message") continue;
        const { type: _t, ...m } = it;
        messages.push(m as RoomMessage);
      }
      return { messages, has_more: seqs.some((s) => s > last) };
    },
    /** The replay a `join … since` gets: every item above since, in order. */
    replay(since: number): Item[] {
      return [...log.keys()].filter((s) => s > since).sort((a, b) => a - b).map((s) => log.get(s)!);
    },
  };
}

type JoinScript = (conn: FakeConn, frame: Record<string, any>, nth: number) => void;

/** A fake gateway, a client on it that joined ROOM, and everything the client emitted and wrote. */
async function setup(onJoin: JoinScript, history: (room: string, q: HistoryQuery) => Promise<MessagePage>, opts: Partial<TelepathOptions> = {}) {
  let joins = 0;
  const srv = await fakeServer((conn) => {
    conn.send(welcomeFrame({ conn_id: `c${conn.index}` }));
    conn.onFrame = (f) => {
      if (f["type"] === "join") onJoin(conn, f, joins++);
    };
  });
  after(() => srv.stop());
  const written: Record<string, any>[] = [];
  class Spy extends WebSocket {
    override send(data: string) {
      written.push(JSON.parse(data));
      super.send(data);
    }
  }
  const tp = new Telepath({
    url: srv.url,
    token: "t",
    WebSocket: Spy,
    ackThrottleMs: 0,
    history,
    reconnect: { initialDelayMs: 10, maxDelayMs: 10 },
    ...opts,
  });
  clients.push(tp);
  /** Everything emitted for the room's log, in order: "<type>:<seq>". */
  const got: string[] = [];
  const items: Record<string, any>[] = [];
  for (const ev of ["message", "message_edited", "message_deleted", "reaction"] as const) {
    tp.on(ev, (p: any) => {
      got.push(`${ev}:${p.seq}`);
      items.push(p);
    });
  }
  const gaps: GapEvent[] = [];
  tp.on("gap", (g) => gaps.push(g));
  let frames = 0;
  tp.on("frame", (f) => {
    if ("seq" in f && "room" in f && f.type !== "receipt") frames++;
  });
  await tp.connect();
  await tp.join(ROOM);
  const conn = () => srv.conns.at(-1)!;
  return {
    srv,
    tp,
    got,
    items,
    gaps,
    written,
    conn,
    /** Sends these log items on the socket and waits until the client has taken them. */
    async push(...list: Item[]) {
      const want = frames + list.length;
      for (const i of list) conn().send(i);
      await waitFor(() => frames >= want, `the client got ${list.map((i) => i.seq).join(",")}`);
    },
    acks: () => written.filter((f) => f["type"] === "ack" && f["room"] === ROOM).map((f) => f["seq"] as number),
    joins: () => written.filter((f) => f["type"] === "join"),
  };
}

const join5: JoinScript = (c, f) => replyOk(c, f, { room: ROOM, seq: 5, recovered: true });

describe("room changes in the ordered log", () => {
  it("an edit, a reaction and a delete each move the room's seq like a message: emitted in order, acked, resumed from", async () => {
    const log = fakeLog([msg(6), edit(7, 6, "m6 fixed"), react(8, 6, "👍", true, 1), del(9, 6)]);
    const t = await setup((c, f, nth) => {
      if (nth === 0) return join5(c, f, nth);
      replyOk(c, f, { room: ROOM, seq: 10, recovered: true });
      for (const i of log.replay(f["since"] as number)) c.send(i);
    }, log.history);
    await t.push(msg(6), edit(7, 6, "m6 fixed"), react(8, 6, "👍", true, 1), del(9, 6));
    assert.deepEqual(t.got, ["message:6", "message_edited:7", "reaction:8", "message_deleted:9"]);
    assert.equal(t.tp.lastSeq(ROOM), 9);
    const edited = t.items[1]!;
    assert.equal(edited["type"], "message_edited");
    assert.equal(edited["id"], "id6");
    assert.equal(edited["body"], "m6 fixed");
    assert.equal(t.items[2]!["count"], 1);
    await waitFor(() => t.acks().at(-1) === 9, "the ack of 9");
    assert.equal(log.calls.length, 0, "no hole, no history read");

    // A reconnect resumes after the change, not after the last message.
    log.log.set(10, msg(10));
    t.conn().close(1012, "restart");
    await waitFor(() => t.got.length === 5, "10 after the rejoin");
    assert.equal(t.joins()[1]!["since"], 9);
    assert.deepEqual(t.got.at(-1), "message:10");
  });

  it("repeated changes are dropped by seq; a change of a room not joined goes out as is", async () => {
    const t = await setup(join5, fakeLog([]).history);
    await t.push(msg(6), react(7, 6, "🎉", true, 1), react(7, 6, "🎉", true, 1), msg(6), edit(8, 6, "x"), react(7, 6, "🎉", true, 1));
    assert.deepEqual(t.got, ["message:6", "reaction:7", "message_edited:8"]);
    const other = { ...edit(3, 1, "elsewhere"), room: "0190f5a4-0000-7000-8000-000000000000" };
    t.conn().send(other);
    await waitFor(() => t.got.length === 4, "the other room's edit");
    assert.equal(t.items.at(-1)!["room"], other.room);
  });

  it("a hole made of changes is repaired: history lacks them, so the room is joined again with since and the replay fills it", async () => {
    const log = fakeLog([msg(6), edit(7, 6, "m6 v2"), react(8, 6, "👍", true, 1), msg(9)]);
    const t = await setup((c, f, nth) => {
      if (nth === 0) return join5(c, f, nth);
      replyOk(c, f, { room: ROOM, seq: 9, recovered: true });
      for (const i of log.replay(f["since"] as number)) c.send(i);
    }, log.history);
    await t.push(msg(6), msg(9)); // 7 (an edit) and 8 (a reaction) were lost on the way
    await waitFor(() => t.got.length === 4, "7, 8 and 9");
    assert.deepEqual(t.got, ["message:6", "message_edited:7", "reaction:8", "message:9"]);
    assert.deepEqual(log.calls, [{ after: 6, before: 9, limit: 500 }], "one read of history, without retries");
    assert.equal(t.joins().length, 2);
    assert.equal(t.joins()[1]!["since"], 6);
    assert.equal(t.srv.conns.length, 1, "on the same connection");
    assert.deepEqual(
      t.gaps.map((g) => g.action),
      ["fetch", "rejoin"],
    );
    assert.equal(t.gaps[1]!.error, undefined);
    // Acks never passed the hole: none above 6 before the rejoin.
    const rejoinAt = t.written.indexOf(t.joins()[1]!);
    const early = t.written.slice(0, rejoinAt).filter((f) => f["type"] === "ack" && f["room"] === ROOM);
    for (const f of early) assert.ok(f["seq"] <= 6, `ack ${f["seq"]} before the hole was filled`);
    await waitFor(() => t.acks().at(-1) === 9, "the ack of 9");
  });

  it("a hole of messages and changes: history fills the messages, the rejoin the changes after them", async () => {
    const log = fakeLog([msg(6), msg(7), del(8, 7), msg(9)]);
    const t = await setup((c, f, nth) => {
      if (nth === 0) return join5(c, f, nth);
      replyOk(c, f, { room: ROOM, seq: 9, recovered: true });
      for (const i of log.replay(f["since"] as number)) c.send(i);
    }, log.history);
    await t.push(msg(6), msg(9));
    await waitFor(() => t.got.length === 4, "7, 8 and 9");
    assert.deepEqual(t.got, ["message:6", "message:7", "message_deleted:8", "message:9"]);
    assert.equal(t.joins()[1]!["since"], 7, "history delivered 7 first");
  });

  it("a replayed edit is applied once: the replay overlapping live copies changes nothing", async () => {
    const t = await setup((c, f, nth) => {
      if (nth === 0) return join5(c, f, nth);
      // The seam after a reconnect: the reply, the replay from an older point, live copies again.
      replyOk(c, f, { room: ROOM, seq: 8, recovered: true });
      for (const i of [edit(7, 6, "v2"), edit(8, 6, "v3")]) c.send(i);
      c.send(edit(7, 6, "v2"));
      c.send(edit(8, 6, "v3"));
    }, fakeLog([]).history);
    await t.push(msg(6), edit(7, 6, "v2"));
    t.conn().close(1011, "gone");
    await waitFor(() => t.got.length === 3, "the edit 8");
    await sleep(50);
    assert.deepEqual(t.got, ["message:6", "message_edited:7", "message_edited:8"]);
    assert.equal(t.joins()[1]!["since"], 7);
  });

  it("receipts are not in the log: emitted at once, the seq untouched", async () => {
    const t = await setup(join5, fakeLog([]).history);
    const receipts: unknown[] = [];
    t.tp.on("receipt", (r) => receipts.push(r));
    t.conn().send({ type: "receipt", room: ROOM, user: BOB, seq: 42 });
    await waitFor(() => receipts.length === 1, "the receipt");
    assert.deepEqual(receipts[0], { type: "receipt", room: ROOM, user: BOB, seq: 42 });
    assert.equal(t.tp.lastSeq(ROOM), 5);
    await t.push(msg(6));
    assert.deepEqual(t.got, ["message:6"]);
  });
});

describe("requests of messages that live", () => {
  it("edit, delete, react, read, DM edit and delete, and send with replyTo write the contract's frames", async () => {
    const srv = await fakeServer((conn) => {
      conn.send(welcomeFrame());
      conn.onFrame = (f) => {
        switch (f["type"]) {
          case "edit":
            return replyOk(conn, f, { id: f["id"], ...(f["room"] ? { seq: 7 } : {}), edited_at: "2026-01-01T00:00:00Z" });
          case "delete":
            return replyOk(conn, f, { id: f["id"], ...(f["room"] ? { seq: 8 } : {}) });
          case "react":
            return replyOk(conn, f, { id: f["id"], seq: 9, count: f["on"] ? 1 : 0 });
          case "read":
            return replyOk(conn, f, { room: f["room"], seq: Math.min(f["seq"], 9) });
          case "send":
            return replyOk(conn, f, { id: "id10", seq: 10, ts: "2026-01-01T00:00:00Z" });
        }
      };
    });
    after(() => srv.stop());
    const tp = new Telepath({ url: srv.url, token: "t", reconnect: false });
    clients.push(tp);
    await tp.connect();
    assert.deepEqual(await tp.edit(ROOM, "id6", "new"), { id: "id6", seq: 7, edited_at: "2026-01-01T00:00:00Z" });
    assert.deepEqual(await tp.delete(ROOM, "id6"), { id: "id6", seq: 8 });
    assert.deepEqual(await tp.deleteMessage(ROOM, "id5"), { id: "id5", seq: 8 });
    assert.deepEqual(await tp.react(ROOM, "id4", "👍", true), { id: "id4", seq: 9, count: 1 });
    assert.deepEqual(await tp.react(ROOM, "id4", "👍", false), { id: "id4", seq: 9, count: 0 });
    assert.deepEqual(await tp.markRead(ROOM, 20), { room: ROOM, seq: 9 });
    assert.deepEqual(await tp.markRead(ROOM, 9), { room: ROOM, seq: 9 }, "at or below the cursor: no frame");
    assert.deepEqual(await tp.editDm("dm1", "fixed"), { id: "dm1", edited_at: "2026-01-01T00:00:00Z" });
    assert.deepEqual(await tp.deleteDm("dm1"), { id: "dm1" });
    await tp.send(ROOM, "in the thread", { replyTo: "id4", clientId: "c1" });
    const frames = srv.conns[0]!.frames.map(({ ref: _ref, ...f }) => f);
    assert.deepEqual(frames, [
      { type: "edit", room: ROOM, id: "id6", body: "new" },
      { type: "delete", room: ROOM, id: "id6" },
      { type: "delete", room: ROOM, id: "id5" },
      { type: "react", room: ROOM, id: "id4", emoji: "👍", on: true },
      { type: "react", room: ROOM, id: "id4", emoji: "👍", on: false },
      { type: "read", room: ROOM, seq: 20 },
      { type: "edit", dm: "dm1", id: "dm1", body: "fixed" },
      { type: "delete", dm: "dm1", id: "dm1" },
      { type: "send", room: ROOM, body: "in the thread", client_id: "c1", reply_to: "id4" },
    ]);
  });

  it("an edit in flight when the socket drops is written again after the reconnect, after the rejoin", async () => {
    const srv = await fakeServer((conn) => {
      conn.send(welcomeFrame({ conn_id: `c${conn.index}` }));
      conn.onFrame = (f) => {
        if (f["type"] === "join") replyOk(conn, f, { room: ROOM, seq: 5, recovered: true });
        // The first connection never answers the edit.
        if (f["type"] === "edit" && conn.index > 0) replyOk(conn, f, { id: f["id"], seq: 6, edited_at: "2026-01-01T00:00:00Z" });
      };
    });
    after(() => srv.stop());
    const tp = new Telepath({ url: srv.url, token: "t", reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
    clients.push(tp);
    await tp.connect();
    await tp.join(ROOM);
    const p = tp.edit(ROOM, "id5", "again");
    await waitFor(() => srv.conns[0]!.frames.some((f) => f["type"] === "edit"), "the edit on the wire");
    srv.conns[0]!.close(1012, "restart");
    const reply = await p;
    assert.equal(reply.seq, 6);
    const types = srv.conns[1]!.frames.map((f) => f["type"]);
    assert.deepEqual(types.slice(0, 2), ["join", "edit"]);
  });
});

describe("DM updates", () => {
  const dm = (over: Partial<DirectMessage> = {}) => ({
    type: "dm",
    id: "dm-1",
    from: BOB,
    to: ME.id,
    body: "hello",
    ts: "2026-01-01T00:00:00Z",
    ...over,
  });

  it("a DM seen before that comes again edited or deleted is an update; plain repeats and older states are dropped", async () => {
    const srv = await fakeServer((conn) => conn.send(welcomeFrame()));
    after(() => srv.stop());
    const written: Record<string, any>[] = [];
    class Spy extends WebSocket {
      override send(data: string) {
        written.push(JSON.parse(data));
        super.send(data);
      }
    }
    const tp = new Telepath({ url: srv.url, token: "t", WebSocket: Spy, reconnect: false });
    clients.push(tp);
    const seen: string[] = [];
    tp.on("dm", (d) => seen.push(`dm:${d.body ?? "-"}`));
    tp.on("dm_updated", (d) => seen.push(`updated:${d.deleted ? "deleted" : d.body}`));
    tp.on("message_edited", (e) => seen.push(`edited:${e.body}`));
    tp.on("message_deleted", (e) => seen.push(`deleted:${e.id}`));
    await tp.connect();
    const c = srv.conns[0]!;
    let n = 0;
    const frames = () => n;
    tp.on("frame", () => n++);
    const send = async (f: unknown) => {
      const want = frames() + 1;
      c.send(f);
      await waitFor(() => frames() >= want, "the frame");
    };
    await send(dm());
    await send(dm()); // a repeat (the offline queue, a catch-up)
    await send(dm({ body: "hello, edited", edited_at: "2026-01-01T00:01:00Z" }));
    await send(dm({ body: "hello, edited", edited_at: "2026-01-01T00:01:00Z" }));
    // A live edit event of the DM, then the offline queue's copy of the same state.
    await send({ type: "message_edited", dm: "dm-1", to: ME.id, id: "dm-1", body: "third", edited_at: "2026-01-01T00:02:00Z", by: BOB });
    await send(dm({ body: "third", edited_at: "2026-01-01T00:02:00Z" }));
    await send(dm({ body: "hello, edited", edited_at: "2026-01-01T00:01:00Z" })); // older: dropped
    await send(dm({ deleted: true, body: undefined }));
    await send({ type: "message_deleted", dm: "dm-1", to: ME.id, id: "dm-1", by: BOB }); // already deleted
    await send(dm({ body: "third", edited_at: "2026-01-01T00:02:00Z" }));
    // An edit of a DM this client never saw goes out; its DM comes later as a first sighting.
    await send({ type: "message_edited", dm: "dm-2", to: ME.id, id: "dm-2", body: "new", edited_at: "2026-01-01T00:03:00Z", by: BOB });
    await send(dm({ id: "dm-2", body: "new", edited_at: "2026-01-01T00:03:00Z" }));
    // Two edits within one millisecond: the server's finer digits order them.
    await send(dm({ id: "dm-3", body: "v1" }));
    await send(dm({ id: "dm-3", body: "v2", edited_at: "2026-01-01T00:05:00.000100Z" }));
    await send(dm({ id: "dm-3", body: "v3", edited_at: "2026-01-01T00:05:00.000200Z" }));
    await send(dm({ id: "dm-3", body: "v2", edited_at: "2026-01-01T00:05:00.000100Z" }));
    assert.deepEqual(seen, [
      "dm:hello",
      "updated:hello, edited",
      "edited:third",
      "updated:deleted",
      "edited:new",
      "dm:new",
      "dm:v1",
      "updated:v2",
      "updated:v3",
    ]);
    // Each copy addressed to us is acked, repeats and live changes included (the
    // server queues a DM again until acked), each ack naming the version it got.
    await sleep(30);
    const dmAcks = written.filter((f) => f["type"] === "ack" && f["dm"] === "dm-1").map((f) => [f["deleted"], f["edited_at"] ?? null]);
    const [e1, e2] = ["2026-01-01T00:01:00Z", "2026-01-01T00:02:00Z"];
    assert.deepEqual(dmAcks, [
      [false, null],
      [false, null],
      [false, e1],
      [false, e1],
      [false, e2], // the live message_edited
      [false, e2],
      [false, e1],
      [true, null],
      [true, null], // the live message_deleted
      [false, e2],
    ]);
  });
});

describe("REST of messages that live", () => {
  it("thread, search, dmConversation and dmConversations ask the contract's routes", async () => {
    const requests: string[] = [];
    const srv = await fakeServer(
      () => {},
      (req, res) => {
        requests.push(req.url ?? "");
        const path = new URL(req.url ?? "", "http://x").pathname;
        const body =
          path === "/search"
            ? { results: [{ id: "id6", room: ROOM, seq: 6, from: BOB, ts: "2026-01-01T00:00:00Z", snippet: "a «cat»" }], next_offset: 20 }
            : path === "/dms" && (req.url ?? "").includes("with=")
              ? { messages: [], has_more: false }
              : path === "/dms"
                ? { conversations: [{ user: BOB, last: { id: "d", from: BOB, to: ME.id, body: "x", ts: "t" }, unread: 2 }] }
                : {
                    parent: { room: ROOM, id: "id6", seq: 6, from: BOB, body: "parent", kind: "text", ts: "t", reply_count: 1 },
                    messages: [{ room: ROOM, id: "id7", seq: 7, from: BOB, body: "reply", kind: "text", ts: "t", reply_to: "id6" }],
                    has_more: false,
                  };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      },
    );
    after(() => srv.stop());
    const api = new TelepathRest({ baseUrl: srv.url.replace("ws:", "http:").replace("/connect", ""), token: "tok" });
    const thread = await api.thread(ROOM, "id6", { after: 3, limit: 10 });
    assert.equal(thread.messages[0]!.reply_to, "id6");
    assert.equal(thread.parent.reply_count, 1);
    const found = await api.search("cat «NEAR» *", { room: ROOM, before: new Date("2026-01-02T00:00:00Z"), limit: 20, offset: 0 });
    assert.equal(found.results[0]!.snippet, "a «cat»");
    assert.equal(found.next_offset, 20);
    await api.dmConversation("bob", { before: "dm-9", limit: 5 });
    const convs = await api.dmConversations();
    assert.equal(convs[0]!.unread, 2);
    assert.deepEqual(requests, [
      `/rooms/${ROOM}/messages/id6/thread?after=3&limit=10`,
      `/search?q=cat+%C2%ABNEAR%C2%BB+*&room=${ROOM}&before=2026-01-02T00%3A00%3A00.000Z&limit=20&offset=0`,
      "/dms?with=bob&before=dm-9&limit=5",
      "/dms",
    ]);
  });
});
