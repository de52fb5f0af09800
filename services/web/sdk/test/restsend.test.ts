// TelepathRest.sendMessage (POST /rooms/{id}/messages) against a real
// all-in-one: the message it resolves with is the one the room's `message`
// event carries, a client_id makes it idempotent (one key space with the
// socket's send), and every refusal maps to a TelepathError with the
// server's code and the HTTP status.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { TelepathError, TelepathRest, type RoomMessage } from "../dist/index.js";
import { client, closeAll, createRoom, record, rest, sleep, startServer, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
let slow: Server;
before(async () => {
  [s, slow] = await Promise.all([startServer(), startServer({ TELEPATH_USER_RATE_PER_S: "1" })]);
});
after(async () => {
  closeAll();
  await Promise.all([s?.stop(), slow?.stop()]);
});

/** Asserts `p` rejects with a TelepathError of `code` and HTTP `status`. */
async function refused(p: Promise<unknown>, code: string, status: number, message?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TelepathError, `a TelepathError, not ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe("TelepathRest.sendMessage (real server)", () => {
  it("resolves with the message as the room's message event carries it, delivered once", async () => {
    const { room } = await createRoom(s, uname("own"));
    const sender = await rest(s, uname("rs"));
    await sender.api.joinRoom(room.id);
    const reader = await client(s, uname("rd"));
    await reader.tp.connect();
    await reader.tp.join(room.id);
    const events = record(reader.tp, "message");

    const m: RoomMessage = await sender.api.sendMessage(room.id, "over REST", { kind: "note" });
    assert.equal(m.room, room.id);
    assert.equal(m.body, "over REST");
    assert.equal(m.kind, "note");
    assert.deepEqual(m.from, { id: sender.user.id, name: sender.user.name });
    assert.ok(m.id && m.seq > 0 && !Number.isNaN(Date.parse(m.ts)));
    await waitFor(() => events.length === 1, "the message event");
    const { type, ...event } = events[0]!;
    assert.equal(type, "message");
    assert.deepEqual(event, m, "the same shape and values as the message event");

    const plain = await sender.api.sendMessage(room.id, "no kind");
    assert.equal(plain.kind, "text");
    assert.equal(plain.seq, m.seq + 1);
    const reply = await sender.api.sendMessage(room.id, "in the thread", { replyTo: m.id });
    assert.equal(reply.reply_to, m.id);
    await waitFor(() => events.length === 3, "three events");
    await sleep(200);
    assert.equal(events.length, 3, "each once");
  });

  it("is idempotent by clientId, one key space with the socket's send", async () => {
    const { room } = await createRoom(s, uname("own"));
    const { tp } = await client(s, uname("idem"));
    await tp.connect();
    await tp.join(room.id);
    const events = record(tp, "message");
    const name = tp.user!.name;
    const api = new TelepathRest({ baseUrl: s.base, token: (await rest(s, name)).token });

    const first = await api.sendMessage(room.id, "once", { clientId: "c-1" });
    const again = await api.sendMessage(room.id, "once", { clientId: "c-1" });
    assert.deepEqual(again, first, "a repeat answers the first message");
    const viaSocket = await tp.send(room.id, "once", { clientId: "c-1" });
    assert.deepEqual(viaSocket, { id: first.id, seq: first.seq, ts: viaSocket.ts });
    const socketFirst = await tp.send(room.id, "socket first", { clientId: "c-2" });
    const restAfter = await api.sendMessage(room.id, "socket first", { clientId: "c-2" });
    assert.equal(restAfter.id, socketFirst.id);
    assert.equal(restAfter.seq, socketFirst.seq);
    assert.equal(socketFirst.seq, first.seq + 1, "the repeats stored nothing");
    await waitFor(() => events.length === 2, "two events");
    await sleep(200);
    assert.deepEqual(
      events.map((e) => e.body),
      ["once", "socket first"],
      "the repeats delivered nothing",
    );
  });

  it("maps every refusal to a TelepathError with the code and the status", async () => {
    const { room, api: owner } = await createRoom(s, uname("own"));
    const priv = await owner.createRoom({ name: uname("priv"), private: true });
    const member = await rest(s, uname("mem"));
    await member.api.joinRoom(room.id);
    const outsider = await rest(s, uname("out"));

    await refused(member.api.sendMessage(room.id, ""), "bad_request", 400);
    await refused(member.api.sendMessage(room.id, "x", { kind: "k".repeat(33) }), "bad_request", 400);
    await refused(member.api.sendMessage("not-a-room-id", "x"), "bad_request", 400);
    await refused(member.api.sendMessage(room.id, "x".repeat(4097)), "too_large", 413);
    await refused(outsider.api.sendMessage(room.id, "join first"), "forbidden", 403);
    await refused(outsider.api.sendMessage(priv.id, "let me in"), "not_found", 404);
    await refused(member.api.sendMessage(room.id, "x", { replyTo: "01a00000-0000-7000-8000-000000000000" }), "not_found", 404);
    await refused(member.api.sendMessage("01a00000-0000-7000-8000-000000000000", "x"), "not_found", 404);
    await refused(new TelepathRest({ baseUrl: s.base, token: "bad" }).sendMessage(room.id, "x"), "unauthorized", 401);

    // A client_id the sender gave a DM.
    const dmer = await client(s, uname("dmer"));
    await dmer.tp.connect();
    await dmer.tp.dm(outsider.user.id, "psst", { clientId: "taken-by-a-dm" });
    const dmerApi = new TelepathRest({ baseUrl: s.base, token: (await rest(s, dmer.user.name)).token });
    await dmerApi.joinRoom(room.id);
    await refused(dmerApi.sendMessage(room.id, "x", { clientId: "taken-by-a-dm" }), "conflict", 409);

    // A muted member.
    await owner.mute(room.id, member.user.id);
    await refused(member.api.sendMessage(room.id, "mmph"), "forbidden", 403);
    await owner.unmute(room.id, member.user.id);
    await member.api.sendMessage(room.id, "free again");

    // A closed room (PROTOCOL.md says 403; this server answers 404 "no such room").
    await owner.closeRoom(room.id);
    await assert.rejects(member.api.sendMessage(room.id, "too late"), (e: TelepathError) => {
      assert.ok(
        (e.code === "forbidden" && e.status === 403) || (e.code === "not_found" && e.status === 404),
        `${e.code} ${e.status}`,
      );
      return true;
    });
  });

  it("rate_limited 429 with retryAfter over the sender's budget", async () => {
    const { room } = await createRoom(slow, uname("own"));
    const sender = await rest(slow, uname("fast"));
    await sender.api.joinRoom(room.id);
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => sender.api.sendMessage(room.id, `burst ${i}`)));
    const ok = results.filter((r) => r.status === "fulfilled");
    const limited = results.flatMap((r) => (r.status === "rejected" ? [r.reason as TelepathError] : []));
    assert.ok(ok.length >= 1, "the burst allowance went through");
    assert.ok(limited.length >= 1, "the rest was refused");
    for (const e of limited) {
      assert.equal(e.code, "rate_limited");
      assert.equal(e.status, 429);
      assert.equal(e.retryAfter, 1);
    }
  });
});
