// The server API (`/api/`, an API key) through TelepathServer, and its keys
// through TelepathRest's admin methods, against a real all-in-one: a key made
// by an admin (its secret once, listed without it); a publish as a bot
// reaching a connected client as its `message` event, idempotent by
// client_id per sender; a batch with one refused item; a DM to a user; a
// notification (kind `app`) to a user, as their client's `notification` event;
// presence of users and of a room; a room created and members added;
// a disconnect closing the user's client with 4003; 403 for a missing scope
// or a room outside the key's prefix; 401 for a revoked or unknown key, for
// no key and for a user's token; and the key never in an error or a dump.
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { after, before, describe, it } from "node:test";

import { TelepathError, TelepathRest, TelepathServer, type ApiKeyScope, type DmReply, type Notification, type RoomMessage, type StateChange } from "../dist/index.js";
import { client, closeAll, login, record, rest, sleep, startServer, uname, waitFor, type Server } from "./helpers.js";

const ALL: ApiKeyScope[] = ["publish", "presence", "rooms", "users"];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NO_SUCH = "01a00000-0000-7000-8000-000000000000";

let s: Server;
let admin: TelepathRest;
before(async () => {
  s = await startServer();
  admin = (await rest(s, uname("root"), "admin")).api;
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** A key made by the admin, and a TelepathServer using it. */
async function newKey(scopes: ApiKeyScope[] = ALL, roomPrefix?: string) {
  const created = await admin.createApiKey(roomPrefix === undefined ? { name: uname("key"), scopes } : { name: uname("key"), scopes, room_prefix: roomPrefix });
  return { created, api: new TelepathServer({ url: s.base, apiKey: created.key }) };
}

/** Asserts `p` rejects with a TelepathError of `code`, HTTP `status` and (if given) a message matching `message`. */
async function refused(p: Promise<unknown>, code: string, status: number, message?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TelepathError, `a TelepathError, not ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** A connected client that joined `room` (when given), and its message events. */
async function reader(room?: string) {
  const c = await client(s, uname("rd"));
  await c.tp.connect();
  if (room) await c.tp.join(room);
  return { ...c, messages: record(c.tp, "message") };
}

describe("TelepathServer: the server API (real server)", () => {
  it("an admin makes a key: its secret shown once, listed without it; a user may not", async () => {
    const name = uname("ops");
    const created = await admin.createApiKey({ name, scopes: ["publish", "presence"], room_prefix: "ops-" });
    assert.match(created.key, /^tpk_[A-Za-z0-9_-]{43}$/);
    assert.match(created.id, UUID);
    assert.equal(created.name, name);
    assert.deepEqual(created.scopes, ["publish", "presence"]);
    assert.equal(created.room_prefix, "ops-");
    assert.ok(!Number.isNaN(Date.parse(created.created_at)));
    assert.equal(created.revoked_at ?? null, null);

    const keys = await admin.listApiKeys();
    const listed = keys.find((k) => k.id === created.id);
    assert.ok(listed, "the new key is listed");
    assert.equal(listed.name, name);
    assert.deepEqual(listed.scopes, ["publish", "presence"]);
    assert.equal("key" in listed, false, "no secret in the list");
    assert.ok(!JSON.stringify(keys).includes(created.key), "the secret is nowhere in the list");

    await refused(admin.createApiKey({ name: uname("none"), scopes: [] }), "bad_request", 400);
    await refused(admin.createApiKey({ name: "", scopes: ["publish"] }), "bad_request", 400);
    const user = (await rest(s, uname("plain"))).api;
    await refused(user.createApiKey({ name: uname("mine"), scopes: ["publish"] }), "forbidden", 403);
    await refused(user.listApiKeys(), "forbidden", 403);
    await refused(user.revokeApiKey(created.id), "forbidden", 403);
  });

  it("publishes as a bot: the message reaches a connected client as its message event; client_id makes a retry safe", async () => {
    const { api } = await newKey();
    const room = await api.createRoom({ name: uname("news") });
    const r = await reader(room.id);
    const bot = uname("deploybot");

    const m: RoomMessage = await api.publish(room.id, "deploy finished", { as: bot, kind: "note", clientId: "deploy-1" });
    assert.equal(m.room, room.id);
    assert.equal(m.body, "deploy finished");
    assert.equal(m.kind, "note");
    assert.equal(m.from.name, bot);
    assert.match(m.from.id, UUID);
    assert.ok(m.seq > 0 && !Number.isNaN(Date.parse(m.ts)));
    await waitFor(() => r.messages.length === 1, "the message event");
    const { type, ...event } = r.messages[0]!;
    assert.equal(type, "message");
    assert.deepEqual(event, m, "the same shape and values as the message event");

    // A retry (same sender, same client_id) answers the first message and stores nothing.
    const again = await api.publish(room.id, "deploy finished", { as: bot, kind: "note", clientId: "deploy-1" });
    assert.deepEqual(again, m);
    // Idempotency is per sender: the system user's deploy-1 is another message.
    const system = await api.publish(room.id, "from the system", { clientId: "deploy-1" });
    assert.notEqual(system.id, m.id);
    assert.equal(system.seq, m.seq + 1, "the retry took no seq");
    assert.equal(system.from.name, "system");
    assert.equal(system.from.id, room.created_by, "the system user owns the rooms the API creates");
    assert.equal(system.kind, "text");
    await waitFor(() => r.messages.length === 2, "two events");
    await sleep(200);
    assert.deepEqual(r.messages.map((e) => e.body), ["deploy finished", "from the system"], "the retry delivered nothing");

    await refused(api.publish(room.id, ""), "bad_request", 400);
    await refused(api.publish(room.id, "x", { as: "not a name!" }), "bad_request", 400);
    await refused(api.publish(room.id, "x".repeat(4097)), "too_large", 413);
    await refused(api.publish(NO_SUCH, "x"), "not_found", 404);
    await refused(api.publish("not-a-room-id", "x"), "bad_request", 400);
  });

  it("publishes a batch: one outcome per item in order, a refused item holding nothing back", async () => {
    const { api } = await newKey();
    const room = await api.createRoom({ name: uname("batch") });
    const r = await reader(room.id);
    const bot = uname("batchbot");

    const results = await api.publishBatch([
      { room: room.id, body: "first", as: bot },
      { room: NO_SUCH, body: "nowhere" },
      { room: room.id, body: "third", kind: "note", clientId: "b-3" },
    ]);
    assert.equal(results.length, 3);
    assert.equal(results[0]!.message?.body, "first");
    assert.equal(results[0]!.message?.from.name, bot);
    assert.equal(results[0]!.error, undefined);
    assert.equal(results[1]!.message, undefined);
    assert.equal(results[1]!.error?.code, "not_found");
    assert.equal(typeof results[1]!.error?.message, "string");
    assert.equal(results[2]!.message?.kind, "note");
    assert.equal(results[2]!.message?.from.name, "system");
    assert.equal(results[2]!.message?.seq, results[0]!.message!.seq + 1);
    await waitFor(() => r.messages.length === 2, "two events");
    assert.deepEqual(r.messages.map((e) => e.body), ["first", "third"]);
    assert.deepEqual(r.messages.map((e) => e.id), [results[0]!.message!.id, results[2]!.message!.id]);

    // A repeat of the batch's idempotent item answers the stored message.
    const [repeat] = await api.publishBatch([{ room: room.id, body: "third", kind: "note", clientId: "b-3" }]);
    assert.deepEqual(repeat!.message, results[2]!.message);

    await refused(api.publishBatch([]), "bad_request", 400, /items/);
    await refused(api.publishBatch(Array.from({ length: 101 }, (_, i) => ({ room: room.id, body: `m${i}` }))), "bad_request", 400, /items/);
  });

  it("sends a DM to a user: live when connected, queued when not", async () => {
    const { api } = await newKey(["publish"]);
    const bot = uname("reportbot");
    const online = await reader();
    const dms = record(online.tp, "dm");

    const sent = await api.publishToUser(online.user.id, "your report is ready", { as: bot, clientId: "report-1" });
    assert.match(sent.id, UUID);
    assert.equal(sent.delivered, true);
    assert.ok(!Number.isNaN(Date.parse(sent.ts)));
    await waitFor(() => dms.length === 1, "the dm event");
    assert.equal(dms[0]!.id, sent.id);
    assert.equal(dms[0]!.body, "your report is ready");
    assert.equal(dms[0]!.from.name, bot);
    assert.equal(dms[0]!.to, online.user.id);
    const again = await api.publishToUser(online.user.id, "your report is ready", { as: bot, clientId: "report-1" });
    assert.equal(again.id, sent.id, "a retry answers the first DM");
    await sleep(200);
    assert.equal(dms.length, 1, "and delivers nothing");

    const offline = await rest(s, uname("away"));
    const queued = await api.publishToUser(offline.user.id, "while you were away");
    assert.equal(queued.delivered, false);
    const pending = await offline.api.pendingDms();
    assert.deepEqual(pending.map((d) => [d.id, d.body, d.from.name]), [[queued.id, "while you were away", "system"]]);

    await refused(api.publishToUser(NO_SUCH, "nobody"), "not_found", 404);
    await refused(api.publishToUser("not-a-user-id", "x"), "bad_request", 400);
  });

  it("sends a notification to a user: a connected client gets it as a notification event of kind app", async () => {
    const { api } = await newKey(["publish"]);
    const bot = uname("exportbot");
    const online = await reader();
    const notes = record(online.tp, "notification");
    const counts = record(online.tp, "notifications_unread");

    const n: Notification = await api.publishToUser(online.user.id, "your export is ready", { kind: "notification", as: bot, clientId: "export-1" });
    assert.match(n.id, UUID);
    assert.equal(n.kind, "app");
    assert.equal(n.text, "your export is ready");
    assert.equal(n.from?.name, bot);
    assert.equal(n.room ?? null, null);
    assert.equal(n.message_id ?? null, null);
    assert.ok(!Number.isNaN(Date.parse(n.ts)));
    await waitFor(() => notes.length === 1, "the notification event");
    assert.equal(notes[0]!.id, n.id);
    assert.equal(notes[0]!.kind, "app");
    assert.equal(notes[0]!.text, "your export is ready");
    assert.equal(notes[0]!.from?.name, bot);
    await waitFor(() => online.tp.unreadNotifications === 1 && counts.at(-1)?.unread === 1, "the unread count");

    // A repeat of its client_id answers the first and publishes nothing.
    const again = await api.publishToUser(online.user.id, "your export is ready (again)", { kind: "notification", as: bot, clientId: "export-1" });
    assert.equal(again.id, n.id);
    assert.equal(again.text, "your export is ready");
    await sleep(300);
    assert.equal(notes.length, 1, "the repeat delivered nothing");

    // Kept for later, like any notification; the DM is still the default (and `kind: "dm"` says so).
    const { token } = await login(s, online.user.name);
    const list = await new TelepathRest({ baseUrl: s.base, token }).notifications();
    assert.deepEqual(list.notifications.filter((x) => x.kind === "app").map((x) => [x.id, x.text, x.read]), [[n.id, "your export is ready", false]]);
    const dm: DmReply = await api.publishToUser(online.user.id, "a DM after all", { kind: "dm", as: bot });
    assert.equal(dm.delivered, true);
    assert.equal((await api.publishToUser(online.user.id, "and another")).delivered, true);
    await refused(api.publishToUser(NO_SUCH, "nobody", { kind: "notification" }), "not_found", 404);
    await refused(api.publishToUser(online.user.id, "x", { kind: "shout" as "dm" }), "bad_request", 400);
  });

  it("reads presence of users and of a room's participants", async () => {
    const { api } = await newKey(["presence", "rooms"]);
    const on = await reader();
    const off = await rest(s, uname("off"));
    const room = await api.createRoom({ name: uname("present") });
    assert.deepEqual((await api.addMembers(room.id, [on.user.id, off.user.id])).sort(), [on.user.id, off.user.id].sort());

    const p = await waitFor(async () => {
      const p = await api.presence([on.user.id, off.user.id]);
      return p.online.length === 1 ? p : undefined;
    }, "the connected user online");
    assert.equal(p.online[0]!.id, on.user.id);
    assert.equal(p.online[0]!.name, on.user.name);
    assert.ok(p.online[0]!.connections >= 1);
    assert.equal(typeof p.online[0]!.status, "string");
    assert.deepEqual(p.offline, [off.user.id]);

    const rp = await api.roomPresence(room.id);
    assert.deepEqual(rp.online.map((u) => u.id), [on.user.id]);
    assert.ok(rp.offline.includes(off.user.id), "the member not connected is offline");
    assert.ok(rp.offline.includes(room.created_by), "the system user (the owner) is a participant, offline");

    await refused(api.presence([]), "bad_request", 400);
    await refused(api.presence(["not-an-id"]), "bad_request", 400);
    await refused(api.roomPresence(NO_SUCH), "not_found", 404);
  });

  it("creates a private room and adds members: they see it and get what is published there", async () => {
    const { api } = await newKey(["rooms", "publish"]);
    const name = uname("team");
    const room = await api.createRoom({ name, description: "made by the backend", private: true, max_participants: 10 });
    assert.match(room.id, UUID);
    assert.equal(room.name, name);
    assert.equal(room.description, "made by the backend");
    assert.equal(room.private, true);
    assert.equal(room.max_participants, 10);
    assert.equal(room.is_active, true);

    const u = await rest(s, uname("mem"));
    await refused(u.api.getRoom(room.id), "not_found", 404);
    assert.deepEqual(await api.addMembers(room.id, [u.user.id]), [u.user.id]);
    assert.deepEqual(await api.addMembers(room.id, [u.user.id]), [], "a participant already");
    const seen = await u.api.getRoom(room.id);
    assert.equal(seen.role, "member");
    assert.ok((await u.api.participants(room.id)).some((p) => p.user.id === u.user.id));

    const c = await client(s, u.user.name);
    await c.tp.connect();
    await c.tp.join(room.id);
    const got = record(c.tp, "message");
    const m = await api.publish(room.id, "welcome to the team");
    await waitFor(() => got.some((e) => e.id === m.id), "the member gets the message");

    await refused(api.addMembers(room.id, [NO_SUCH]), "not_found", 404);
    await refused(api.addMembers(room.id, []), "bad_request", 400);
    await refused(api.addMembers(NO_SUCH, [u.user.id]), "not_found", 404);
    await refused(api.createRoom({ name: "" }), "bad_request", 400);
  });

  it("disconnects a user: their client closes with 4003 and does not come back", async () => {
    const { api } = await newKey(["users"]);
    const c = await client(s, uname("kicked"));
    const states = record(c.tp, "state");
    await c.tp.connect();
    const other = await reader();

    const { disconnected } = await api.disconnect(c.user.id);
    assert.ok(disconnected >= 1, `${disconnected} connections told to close`);
    await waitFor(() => c.tp.state === "closed", "the client closed");
    const last: StateChange = states.at(-1)!;
    assert.equal(last.state, "closed");
    assert.equal(last.code, 4003);
    await sleep(300);
    assert.equal(c.tp.state, "closed", "no reconnect after 4003");
    assert.equal(other.tp.state, "open", "other users stay connected");
    await waitFor(async () => (await api.disconnect(c.user.id)).disconnected === 0, "nothing left to disconnect");
  });

  it("403 without the scope a route needs, or for a room outside the key's prefix", async () => {
    const full = (await newKey()).api;
    const room = await full.createRoom({ name: uname("general") });
    const user = await rest(s, uname("u"));

    const presenceOnly = (await newKey(["presence"])).api;
    await refused(presenceOnly.publish(room.id, "x"), "forbidden", 403, /^missing scope: publish$/);
    await refused(presenceOnly.publishBatch([{ room: room.id, body: "x" }]), "forbidden", 403, /^missing scope: publish$/);
    await refused(presenceOnly.publishToUser(user.user.id, "x"), "forbidden", 403, /^missing scope: publish$/);
    await refused(presenceOnly.createRoom({ name: uname("r") }), "forbidden", 403, /^missing scope: rooms$/);
    await refused(presenceOnly.addMembers(room.id, [user.user.id]), "forbidden", 403, /^missing scope: rooms$/);
    await refused(presenceOnly.disconnect(user.user.id), "forbidden", 403, /^missing scope: users$/);
    const publishOnly = (await newKey(["publish"])).api;
    await refused(publishOnly.presence([user.user.id]), "forbidden", 403, /^missing scope: presence$/);
    await refused(publishOnly.roomPresence(room.id), "forbidden", 403, /^missing scope: presence$/);

    const prefixed = (await newKey(["publish", "rooms", "presence"], "ops-")).api;
    const ops = await prefixed.createRoom({ name: `ops-${uname("x")}` });
    await prefixed.publish(ops.id, "inside the prefix");
    await refused(prefixed.createRoom({ name: uname("general") }), "forbidden", 403, /prefix/);
    await refused(prefixed.publish(room.id, "outside"), "forbidden", 403, /prefix/);
    await refused(prefixed.roomPresence(room.id), "forbidden", 403, /prefix/);
    await refused(prefixed.addMembers(room.id, [user.user.id]), "forbidden", 403);
    const [inside, outside] = await prefixed.publishBatch([
      { room: ops.id, body: "in" },
      { room: room.id, body: "out" },
    ]);
    assert.equal(inside!.message?.body, "in");
    assert.equal(outside!.error?.code, "forbidden");
  });

  it("401 for a revoked or unknown key, no key, or a user's token; an API key is no user token either", async () => {
    const { api, created } = await newKey(["publish", "rooms"]);
    const room = await api.createRoom({ name: uname("rev") });
    await api.publish(room.id, "still works");

    await admin.revokeApiKey(created.id);
    await refused(api.publish(room.id, "revoked"), "unauthorized", 401, /^revoked_api_key$/);
    await refused(api.createRoom({ name: uname("rev") }), "unauthorized", 401, /^revoked_api_key$/);
    const listed = (await admin.listApiKeys()).find((k) => k.id === created.id);
    assert.ok(listed?.revoked_at && !Number.isNaN(Date.parse(listed.revoked_at)), "listed as revoked");
    await admin.revokeApiKey(created.id); // again: still revoked
    await refused(admin.revokeApiKey(NO_SUCH), "not_found", 404);

    const unknown = new TelepathServer({ url: s.base, apiKey: `tpk_${"A".repeat(43)}` });
    await refused(unknown.publish(room.id, "x"), "unauthorized", 401, /^unknown_api_key$/);

    const { token } = await login(s, uname("user"));
    const withUserToken = new TelepathServer({ url: s.base, apiKey: token });
    await refused(withUserToken.publish(room.id, "x"), "unauthorized", 401, /^not_an_api_key$/);
    await refused(withUserToken.presence([NO_SUCH]), "unauthorized", 401, /^not_an_api_key$/);

    const noKey = new TelepathServer({ url: s.base, apiKey: () => "" });
    await refused(noKey.publish(room.id, "x"), "unauthorized", 401, /^missing_api_key$/);
    const raw = await fetch(`${s.base}/api/rooms/${room.id}/publish`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"body":"x"}' });
    assert.equal(raw.status, 401);
    assert.deepEqual(await raw.json(), { error: { code: "unauthorized", message: "missing_api_key" } });

    // A working key on a user route: refused like any bad token.
    const live = await newKey(["publish"]);
    await refused(new TelepathRest({ baseUrl: s.base, token: live.created.key }).listRooms(), "unauthorized", 401);
  });

  it("never shows the key: not in an error, a dump or JSON", async () => {
    const { created } = await newKey(["publish"]);
    const key = created.key;
    // A fetch whose failure quotes everything it was given.
    const leaky = (async (url: string, init: RequestInit) => {
      throw new Error(`connect ECONNREFUSED ${url} ${JSON.stringify(init.headers)} ${key}`);
    }) as unknown as typeof fetch;
    const api = new TelepathServer({ url: s.base, apiKey: key, fetch: leaky });
    await assert.rejects(api.publish(NO_SUCH, "x"), (e: unknown) => {
      assert.ok(e instanceof TelepathError);
      assert.equal(e.code, "network");
      assert.ok(!e.message.includes(key), e.message);
      assert.ok(!/tpk_/.test(e.message), e.message);
      assert.match(e.message, /^POST \/api\/rooms\/[^ ]+\/publish: connect ECONNREFUSED/);
      return true;
    });
    // An answer quoting it (a misbehaving proxy) is redacted too.
    const echo = (async () => new Response(JSON.stringify({ error: { code: "unauthorized", message: `bad key ${key}` } }), { status: 401 })) as unknown as typeof fetch;
    await assert.rejects(new TelepathServer({ url: s.base, apiKey: key, fetch: echo }).presence([NO_SUCH]), (e: TelepathError) => {
      assert.equal(e.status, 401);
      assert.equal(e.message, "bad key [redacted]");
      return true;
    });
    const good = new TelepathServer({ url: `${s.base}/`, apiKey: key });
    assert.equal(good.url, s.base, "the trailing slash goes");
    assert.ok(!inspect(good, { depth: 5, showHidden: true }).includes(key), "util.inspect");
    assert.ok(!JSON.stringify(good).includes(key), "JSON.stringify");
    assert.ok(!String(Object.values(good)).includes(key), "own properties");

    // Options it cannot use are a TypeError.
    assert.throws(() => new TelepathServer(s.base as unknown as { url: string; apiKey: string }), TypeError);
    assert.throws(() => new TelepathServer({ url: s.base } as unknown as { url: string; apiKey: string }), TypeError);
    assert.throws(() => new TelepathServer({ url: "", apiKey: key }), TypeError);
  });
});
