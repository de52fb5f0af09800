// The client against a real all-in-one: welcome, rooms, errors, typing,
// presence, DMs and the offline queue, close(), REST.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, TelepathError, TelepathRest, type RoomMessage, type StateChange } from "../dist/index.js";
import { client, closeAll, createRoom, record, rest, sleep, startServer, track, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
before(async () => {
  s = await startServer({ TELEPATH_TYPING_TTL_MS: "6000" });
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** A WebSocket that records what the client writes. */
function spyingWebSocket(sent: Record<string, any>[]) {
  return class extends WebSocket {
    override send(data: string) {
      sent.push(JSON.parse(data));
      super.send(data);
    }
  };
}

describe("telepath client (real server)", () => {
  it("connect resolves with welcome; state goes connecting -> open", async () => {
    const { tp, user } = await client(s, uname("ada"));
    const states = record(tp, "state");
    const welcomes = record(tp, "welcome");
    assert.equal(tp.state, "idle");
    const w = await tp.connect();
    assert.equal(w.type, "welcome");
    assert.equal(w.user.id, user.id);
    assert.ok(w.conn_id && w.node && w.heartbeat_ms > 0);
    assert.ok(w.limits.max_rate_per_s > 0 && w.limits.max_body_bytes > 0);
    assert.equal(tp.state, "open");
    assert.deepEqual(tp.user, w.user);
    assert.equal(tp.welcome, w);
    assert.deepEqual(
      states.map((x) => x.state),
      ["connecting", "open"],
    );
    assert.equal(welcomes.length, 1);
    // connect() again while open resolves at once with the same welcome.
    assert.equal(await tp.connect(), w);
    const pong = await tp.ping();
    assert.ok(Math.abs(pong.pong - Date.now()) < 5000);
    tp.close();
  });

  it("two clients join one room; a message arrives once, with every field", async () => {
    const { room } = await createRoom(s, uname("own"));
    const a = await client(s, uname("ann"));
    const b = await client(s, uname("bob"));
    await Promise.all([a.tp.connect(), b.tp.connect()]);
    const joinedA = record(a.tp, "joined");
    const ja = await a.tp.join(room.id);
    const jb = await b.tp.join(room.id);
    assert.equal(ja.room, room.id);
    assert.equal(ja.recovered, true);
    assert.equal(typeof jb.seq, "number");
    assert.deepEqual(joinedA, [{ ...ja, rejoin: false }]);
    assert.deepEqual(a.tp.rooms(), [room.id]);

    // A thread's parent first: reply_to must name a message of the room.
    const parent = await b.tp.send(room.id, "the parent");
    await waitFor(() => a.tp.lastSeq(room.id) === parent.seq && b.tp.lastSeq(room.id) === parent.seq, "the parent at both");
    const atB = record(b.tp, "message");
    const atA = record(a.tp, "message");
    const reply = await a.tp.send(room.id, "hello there", { kind: "note", replyTo: parent.id });
    assert.ok(reply.id && reply.seq > 0 && reply.ts);
    await waitFor(() => atB.length >= 1 && atA.length >= 1, "the message at both");
    await sleep(300);
    assert.equal(atB.length, 1, "exactly once");
    assert.equal(atA.length, 1, "the sender gets it too, once");
    const m = atB[0] as RoomMessage;
    assert.equal(m.type, "message");
    assert.equal(m.room, room.id);
    assert.equal(m.id, reply.id);
    assert.equal(m.seq, reply.seq);
    assert.deepEqual(m.from, { id: a.user.id, name: a.user.name });
    assert.equal(m.body, "hello there");
    assert.equal(m.kind, "note");
    assert.equal(m.reply_to, parent.id);
    assert.ok(!Number.isNaN(Date.parse(m.ts)));
    assert.equal(b.tp.lastSeq(room.id), reply.seq);

    // The default kind is text; REST history has both in seq order.
    const r2 = await b.tp.send(room.id, "second");
    await waitFor(() => atA.length === 2, "second at A");
    assert.equal(atA[1]!.kind, "text");
    const page = await new TelepathRest({ baseUrl: s.base, token: (await rest(s, uname("reader"))).token }).history(room.id, { after: 0 });
    assert.deepEqual(
      page.messages.map((x) => [x.seq, x.body]),
      [
        [parent.seq, "the parent"],
        [reply.seq, "hello there"],
        [r2.seq, "second"],
      ],
    );
    assert.equal(page.has_more, false);
    a.tp.close();
    b.tp.close();
  });

  it("error replies reject with the server's code", async () => {
    const { room } = await createRoom(s, uname("own"));
    const { tp } = await client(s, uname("err"));
    await tp.connect();
    const errors = record(tp, "error");
    await assert.rejects(tp.join("0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f"), (e: unknown) => {
      assert.ok(e instanceof TelepathError);
      assert.equal(e.code, "not_found");
      return true;
    });
    // A failed first join is not remembered.
    assert.deepEqual(tp.rooms(), []);
    await assert.rejects(tp.join("not-a-uuid"), { code: "bad_request" });
    await assert.rejects(tp.send(room.id, "not a member yet"), { code: "forbidden" });
    await tp.join(room.id);
    await assert.rejects(tp.send(room.id, "x".repeat(17_000)), { code: "too_large" });
    await assert.rejects(tp.send(room.id, "é".repeat(4097)), { code: "too_large" });
    await assert.rejects(tp.broadcast("not an admin"), { code: "forbidden" });
    await assert.rejects(tp.request({ type: "nope" }), { code: "bad_request" });
    // A failing frame without ref comes back as an `error` event.
    tp.typing("0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f");
    await waitFor(() => errors.length === 1, "an error frame");
    assert.equal(errors[0]!.code, "forbidden");
    assert.equal(tp.state, "open");
    assert.equal(tp.pending(), 0);
    tp.close();
  });

  it("typing: a burst sends one active:true, stopTyping sends active:false", async () => {
    const { room } = await createRoom(s, uname("own"));
    const sent: Record<string, any>[] = [];
    const a = await client(s, uname("typer"), { WebSocket: spyingWebSocket(sent) });
    const b = await client(s, uname("watch"));
    await Promise.all([a.tp.connect(), b.tp.connect()]);
    await a.tp.join(room.id);
    await b.tp.join(room.id);
    const seen = record(b.tp, "typing");
    for (let i = 0; i < 25; i++) {
      a.tp.typing(room.id);
      await sleep(10);
    }
    await waitFor(() => seen.length >= 1, "typing at B");
    await sleep(300);
    assert.equal(sent.filter((f) => f["type"] === "typing").length, 1, "one frame for the burst");
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0], { type: "typing", room: room.id, user: { id: a.user.id, name: a.user.name }, active: true });
    a.tp.stopTyping(room.id);
    a.tp.stopTyping(room.id); // twice: only one frame
    await waitFor(() => seen.length >= 2, "typing stop at B");
    assert.equal(seen[1]!.active, false);
    assert.deepEqual(
      sent.filter((f) => f["type"] === "typing").map((f) => f["active"]),
      [true, false],
    );
    a.tp.close();
    b.tp.close();
  });

  it("setStatus(meditating, deep) reaches another client as presence", async () => {
    const { room } = await createRoom(s, uname("own"));
    const a = await client(s, uname("monk"));
    const b = await client(s, uname("peer"));
    await Promise.all([a.tp.connect(), b.tp.connect()]);
    await b.tp.join(room.id);
    await a.tp.join(room.id);
    const seen = record(b.tp, "presence");
    const r = await a.tp.setStatus("meditating", "deep");
    assert.deepEqual(r, { status: "meditating" });
    const p = await waitFor(() => seen.find((x) => x.user.id === a.user.id && x.status === "meditating"), "presence at B");
    assert.equal(p.text, "deep");
    assert.equal(p.user.name, a.user.name);
    assert.ok(!Number.isNaN(Date.parse(p.last_seen)));
    const online = await (await rest(s, uname("look"))).api.online();
    assert.ok(online.some((u) => u.id === a.user.id));
    a.tp.close();
    b.tp.close();
  });

  it("a DM to an offline user arrives when they connect, is auto-acked, and not delivered again", async () => {
    const a = await client(s, uname("sender"));
    const cName = uname("offline");
    const c = await rest(s, cName); // the user exists, never connected
    await a.tp.connect();
    const r = await a.tp.dm(cName, "psst");
    assert.equal(r.delivered, false);
    assert.ok(r.id && r.ts);
    assert.equal((await c.api.pendingDms()).length, 1);

    const c1 = track(new Telepath({ url: s.ws, token: c.token }));
    const dms1 = record(c1, "dm");
    await c1.connect();
    await waitFor(() => dms1.length === 1, "the queued DM");
    assert.equal(dms1[0]!.id, r.id);
    assert.equal(dms1[0]!.body, "psst");
    assert.equal(dms1[0]!.to, c.user.id);
    assert.deepEqual(dms1[0]!.from, { id: a.user.id, name: a.user.name });
    // The ack is written in batches (200 ms): wait until the queue is empty.
    await waitFor(async () => (await c.api.pendingDms()).length === 0, "the ack to land", 5000, 100);
    c1.close();

    const c2 = track(new Telepath({ url: s.ws, token: c.token }));
    const frames = record(c2, "frame");
    await c2.connect();
    await c2.ping();
    await sleep(300);
    assert.equal(frames.filter((f) => f.type === "dm").length, 0, "not delivered again");

    // Online now: a DM arrives live with delivered:true, once.
    const dms2 = record(c2, "dm");
    const r2 = await a.tp.dm(c.user.id, "live");
    assert.equal(r2.delivered, true);
    await waitFor(() => dms2.length === 1, "the live DM");
    await sleep(200);
    assert.equal(dms2.length, 1);
    c2.close();
    a.tp.close();
  });

  it("join, send and setStatus made before connect() wait and go out after the welcome", async () => {
    const { room } = await createRoom(s, uname("own"));
    const { tp } = await client(s, uname("early"));
    const msgs = record(tp, "message");
    const joined = tp.join(room.id);
    const sent = tp.send(room.id, "queued before connect");
    const status = tp.setStatus("away");
    assert.equal(tp.pending(), 1);
    assert.deepEqual(tp.rooms(), [room.id]);
    await tp.connect();
    const j = await joined;
    const r = await sent;
    assert.deepEqual(await status, { status: "away" });
    assert.equal(r.seq, j.seq + 1, "the join went out before the send");
    await waitFor(() => msgs.length === 1, "our message");
    assert.equal(msgs[0]!.id, r.id);
    assert.equal(tp.pending(), 0);
    tp.close();
  });

  it("close() stops reconnecting and rejects what waits", async () => {
    const { room } = await createRoom(s, uname("own"));
    const { tp } = await client(s, uname("closer"));
    const states: StateChange[] = record(tp, "state");
    await tp.connect();
    await tp.join(room.id);
    tp.close();
    assert.equal(tp.state, "closed");
    await assert.rejects(tp.ping(), { code: "closed" });
    await assert.rejects(tp.send(room.id, "late"), { code: "closed" });
    await sleep(500);
    assert.deepEqual(
      states.map((x) => x.state),
      ["connecting", "open", "closed"],
    );
    assert.equal(states.at(-1)!.code, 1000);

    // Closing while the first connect is under way rejects connect().
    const { tp: tp2 } = await client(s, uname("quick"));
    const p = tp2.connect();
    tp2.close();
    await assert.rejects(p, { code: "closed" });
    await sleep(300);
    assert.equal(tp2.state, "closed");
  });

  it("an admin broadcast reaches every connection; REST errors carry code and status", async () => {
    const admin = await rest(s, uname("root"), "admin");
    const a = await client(s, uname("all"));
    await a.tp.connect();
    const seen = record(a.tp, "broadcast");
    const tpAdmin = track(new Telepath({ url: s.ws, token: admin.token }));
    await tpAdmin.connect();
    const { id } = await tpAdmin.broadcast("hear ye");
    await waitFor(() => seen.length === 1, "broadcast");
    assert.equal(seen[0]!.id, id);
    assert.equal(seen[0]!.body, "hear ye");
    assert.equal(seen[0]!.from.id, admin.user.id);

    const u = await rest(s, uname("plain"));
    await assert.rejects(u.api.history("0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f"), (e: TelepathError) => {
      assert.equal(e.code, "not_found");
      assert.equal(e.status, 404);
      return true;
    });
    await assert.rejects(u.api.broadcast("x"), { code: "forbidden", status: 403 });
    await assert.rejects(new TelepathRest({ baseUrl: s.base }).listRooms(), { code: "unauthorized", status: 401 });
    const room = await u.api.createRoom({ name: uname("r"), description: "d", max_participants: 2 });
    assert.equal(room.max_participants, 2);
    assert.ok((await u.api.listRooms()).some((r) => r.id === room.id));
    const v = await rest(s, uname("v"));
    await v.api.joinRoom(room.id);
    const w = await rest(s, uname("w"));
    await assert.rejects(w.api.joinRoom(room.id), { code: "room_full", status: 409 });
    assert.equal((await u.api.participants(room.id)).length, 2);
    await v.api.leaveRoom(room.id);
    await u.api.closeRoom(room.id);
    await assert.rejects(u.api.history(room.id), { code: "not_found" });
    a.tp.close();
    tpAdmin.close();
  });

  it("room_closed forgets the room; leave() ends it", async () => {
    const { room, api } = await createRoom(s, uname("own"));
    const { tp } = await client(s, uname("member"));
    await tp.connect();
    await tp.join(room.id);
    const closed = record(tp, "room_closed");
    await api.closeRoom(room.id);
    await waitFor(() => closed.length === 1, "room_closed");
    assert.equal(closed[0]!.room, room.id);
    assert.deepEqual(tp.rooms(), []);

    const other = await createRoom(s, uname("own"));
    await tp.join(other.room.id);
    assert.deepEqual(await tp.leave(other.room.id), { room: other.room.id });
    assert.deepEqual(tp.rooms(), []);
    tp.close();
  });
});
