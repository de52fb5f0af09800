// Webhooks through TelepathServer, and verifyWebhook. Without a server: the
// signature check against HMACs made with node:crypto (a good one; a changed
// body, another secret, a stale or future timestamp, malformed headers all
// refused). Against a real all-in-one (TELEPATH_WEBHOOK_ALLOW_PRIVATE=1) with
// node:http receivers on 127.0.0.1: a key needs the `webhooks` scope and no
// room prefix; a webhook registered for message.created gets a server-API
// publish, signed (verifyWebhook accepts it, and refuses it tampered, with
// another secret or too old), with the headers and body the protocol names;
// its delivery is listed `delivered`; a failing receiver sees the same event
// again with the next attempt number while the delivery shows the status it
// answered; connections and joins reach a webhook that asked for them; the
// server's 400s and 404s; a deleted webhook is gone and gets nothing more.
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";

import {
  TelepathError,
  TelepathServer,
  verifyWebhook,
  type ApiKeyScope,
  type CreatedWebhook,
  type RoomMessage,
  type TelepathRest,
  type WebhookPayload,
} from "../dist/index.js";
import { client, closeAll, rest, sleep, startServer, uname, waitFor, type Server } from "./helpers.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NO_SUCH = "01a00000-0000-7000-8000-000000000000";
const SECRET = "whsec_unit-test-secret-0123456789";

/** `t=<t>,v1=<hex>` as the server makes it. */
function sign(secret: string, t: number, body: string | Buffer): string {
  const mac = createHmac("sha256", Buffer.from(secret, "utf8"));
  mac.update(`${t}.`);
  mac.update(body);
  return `t=${t},v1=${mac.digest("hex")}`;
}

const nowS = () => Math.floor(Date.now() / 1000);

describe("verifyWebhook (no server)", () => {
  const body = '{"id":"e-1","type":"message.created","created_at":"2026-01-01T00:00:00Z","data":{"body":"héllo"}}';

  it("accepts the server's signature over the raw body, as text or as bytes", async () => {
    const signature = sign(SECRET, nowS(), body);
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature }), true);
    const bytes = Buffer.from(body, "utf8");
    assert.equal(await verifyWebhook({ secret: SECRET, body: bytes, signature }), true, "a Buffer");
    assert.equal(await verifyWebhook({ secret: SECRET, body: new Uint8Array(bytes), signature }), true, "a Uint8Array");
    const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
    assert.equal(await verifyWebhook({ secret: SECRET, body: ab as ArrayBuffer, signature }), true, "an ArrayBuffer");
    // Spaces after the commas, upper-case hex, several v1 (one matching) and other schemes are fine.
    const [t, v1] = signature.split(",");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: `${t}, v1=${v1!.slice(3).toUpperCase()}` }), true);
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: `${t},v1=${"0".repeat(64)},${v1},v0=whatever` }), true);
  });

  it("refuses a changed body, another secret, a stale or future timestamp", async () => {
    const t = nowS();
    const signature = sign(SECRET, t, body);
    assert.equal(await verifyWebhook({ secret: SECRET, body: body.replace("héllo", "hello"), signature }), false, "tampered body");
    assert.equal(await verifyWebhook({ secret: SECRET, body: `${body} `, signature }), false, "a byte more");
    assert.equal(await verifyWebhook({ secret: `${SECRET}x`, body, signature }), false, "another secret");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t + 1, body).replace(/^t=\d+/, `t=${t}`) }), false, "another t in the MAC");

    // 5 minutes by default, both ways.
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t - 299, body) }), true, "299 s old");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t - 360, body) }), false, "6 min old: a replay");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t + 360, body) }), false, "6 min ahead");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, 1, body) }), false, "1970");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t - 360, body), toleranceSeconds: 600 }), true, "a wider tolerance");
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: sign(SECRET, t - 10, body), toleranceSeconds: 5 }), false, "a narrower one");
    // `now` as a Date or as milliseconds.
    const old = sign(SECRET, 1_700_000_000, body);
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: old, now: new Date(1_700_000_100_000) }), true);
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: old, now: 1_700_000_100_000 }), true);
    assert.equal(await verifyWebhook({ secret: SECRET, body, signature: old, now: 1_700_000_400_000 }), false);
  });

  it("refuses a missing or malformed header", async () => {
    const t = nowS();
    const good = sign(SECRET, t, body);
    const hex = good.split("v1=")[1]!;
    for (const signature of [
      undefined,
      null,
      "",
      "garbage",
      hex,
      `v1=${hex}`,
      `t=${t}`,
      `t=${t},`,
      `t=${t},v1=${hex},`,
      `t=,v1=${hex}`,
      `t=abc,v1=${hex}`,
      `t=-${t},v1=${hex}`,
      `t=${t}.5,v1=${hex}`,
      `t=${t},t=${t},v1=${hex}`,
      `t=${t},v1=${hex.slice(2)}`,
      `t=${t},v1=${hex}00`,
      `t=${t},v1=${hex.replace(/^../, "zz")}`,
      `t=${t};v1=${hex}`,
      `t=${t},v1=${hex},x`,
      `${good}${",v0=a".repeat(1000)}`,
    ]) {
      assert.equal(await verifyWebhook({ secret: SECRET, body, signature }), false, `refused: ${String(signature).slice(0, 80)}`);
    }
  });

  it("throws a TypeError for arguments it cannot use", async () => {
    const signature = sign(SECRET, nowS(), body);
    await assert.rejects(verifyWebhook({ secret: "", body, signature }), TypeError);
    await assert.rejects(verifyWebhook({ secret: SECRET, body: JSON.parse(body), signature }), TypeError, "a parsed body");
    await assert.rejects(verifyWebhook({ secret: SECRET, body, signature, toleranceSeconds: -1 }), TypeError);
    await assert.rejects(verifyWebhook({ secret: SECRET, body, signature, now: Number.NaN }), TypeError);
    await assert.rejects(verifyWebhook(undefined as unknown as { secret: string; body: string; signature: string }), TypeError);
  });
});

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  text: string;
}

/** A receiver on 127.0.0.1: records every request and answers `status(request)` (200 by default). */
async function receiver(status: (r: Received) => number = () => 200) {
  const got: Received[] = [];
  const srv = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const r = { path: req.url ?? "", headers: req.headers, body, text: body.toString("utf8") };
      got.push(r);
      res.writeHead(status(r), { "content-type": "text/plain" }).end("ok");
    });
  });
  await new Promise<void>((ok) => srv.listen(0, "127.0.0.1", ok));
  const { port } = srv.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/telepath`,
    got,
    close: () =>
      new Promise<void>((ok) => {
        srv.closeAllConnections();
        srv.close(() => ok());
      }),
  };
}
type Receiver = Awaited<ReturnType<typeof receiver>>;

/** Asserts `p` rejects with a TelepathError of `code` and HTTP `status` (and a message matching `message`). */
async function refused(p: Promise<unknown>, code: string, status: number, message?: RegExp) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TelepathError, `a TelepathError, not ${String(e)}`);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe("webhooks through TelepathServer (real server)", () => {
  let s: Server;
  let admin: TelepathRest;
  let api: TelepathServer;
  const receivers: Receiver[] = [];
  const hooks: string[] = [];

  before(async () => {
    s = await startServer();
    admin = (await rest(s, uname("root"), "admin")).api;
    api = await newKey(["webhooks", "publish", "rooms"]);
  });
  after(async () => {
    closeAll();
    for (const id of hooks) await api.deleteWebhook(id).catch(() => undefined);
    for (const r of receivers) await r.close();
    await s?.stop();
  });

  async function newKey(scopes: ApiKeyScope[], roomPrefix?: string) {
    const k = await admin.createApiKey(roomPrefix ? { name: uname("key"), scopes, room_prefix: roomPrefix } : { name: uname("key"), scopes });
    return new TelepathServer({ url: s.base, apiKey: k.key });
  }
  async function listen(status?: (r: Received) => number) {
    const r = await receiver(status);
    receivers.push(r);
    return r;
  }
  function track(w: CreatedWebhook): CreatedWebhook {
    hooks.push(w.id);
    return w;
  }

  it("needs a key with the webhooks scope and no room prefix", async () => {
    const publishOnly = await newKey(["publish"]);
    await refused(publishOnly.listWebhooks(), "forbidden", 403, /^missing scope: webhooks$/);
    await refused(publishOnly.createWebhook({ url: "http://127.0.0.1:9/x", events: ["message.created"] }), "forbidden", 403, /^missing scope: webhooks$/);
    // Webhooks hear about every room: a key limited to a prefix cannot hold the scope.
    await refused(newKey(["webhooks"], "ops-"), "bad_request", 400, /room_prefix/);
  });

  it("delivers a published message, signed; the delivery is listed delivered; deleted, it gets nothing more", async () => {
    const r = await listen();
    const w = track(await api.createWebhook({ url: r.url, events: ["message.created"] }));
    assert.match(w.id, UUID);
    assert.match(w.secret, /^whsec_[A-Za-z0-9_-]{43}$/, "a secret made by the server");
    assert.equal(w.url, r.url);
    assert.deepEqual(w.events, ["message.created"]);
    assert.equal(w.pending, 0);
    assert.equal(w.dropped, 0);
    assert.ok(!Number.isNaN(Date.parse(w.created_at)));
    const listed = (await api.listWebhooks()).find((x) => x.id === w.id);
    assert.ok(listed, "listed");
    assert.equal("secret" in listed, false, "no secret in the list");
    const { secret, ...shown } = w;
    assert.deepEqual(listed, shown);
    assert.deepEqual(await api.getWebhook(w.id), shown);
    assert.ok(!JSON.stringify(await api.listWebhooks()).includes(secret));

    const room = await api.createRoom({ name: uname("billing") });
    const bot = uname("billingbot");
    const m: RoomMessage = await api.publish(room.id, "invoice paid ✓", { as: bot, clientId: "inv-1" });
    const got = await waitFor(() => r.got[0], "the delivery at the receiver", 10_000);
    assert.equal(got.path, "/hooks/telepath");
    assert.match(String(got.headers["content-type"]), /^application\/json/);
    assert.equal(got.headers["telepath-event"], "message.created");
    assert.equal(got.headers["telepath-attempt"], "1");
    assert.match(String(got.headers["telepath-delivery"]), /^\d+$/);
    const signature = String(got.headers["telepath-signature"]);
    assert.match(signature, /^t=\d+,v1=[0-9a-f]{64}$/);
    assert.ok(Math.abs(Number(/^t=(\d+)/.exec(signature)![1]) - nowS()) < 60, "t is the attempt's time");

    // The signature holds over the raw body, and only with everything as sent.
    assert.equal(await verifyWebhook({ secret, body: got.body, signature }), true, "verified over the bytes");
    assert.equal(await verifyWebhook({ secret, body: got.text, signature }), true, "verified over the text");
    assert.equal(await verifyWebhook({ secret, body: got.text.replace("invoice paid", "invoice void"), signature }), false, "tampered");
    assert.equal(await verifyWebhook({ secret: `${secret}0`, body: got.body, signature }), false, "another secret");
    assert.equal(await verifyWebhook({ secret: SECRET, body: got.body, signature }), false, "another webhook's secret");
    assert.equal(await verifyWebhook({ secret, body: got.body, signature, now: Date.now() + 6 * 60_000 }), false, "checked 6 minutes later");
    assert.equal(await verifyWebhook({ secret, body: got.body, signature: sign(secret, nowS() - 3600, got.body) }), false, "signed an hour ago");

    const payload = JSON.parse(got.text) as WebhookPayload;
    assert.equal(payload.type, "message.created");
    assert.equal(payload.id, got.headers["telepath-event-id"]);
    assert.match(payload.id, UUID);
    assert.ok(!Number.isNaN(Date.parse(payload.created_at)));
    if (payload.type !== "message.created") throw new Error("narrowed");
    assert.deepEqual(payload.data, m, "data is the message as the message event has it");

    const d = await waitFor(async () => (await api.webhookDeliveries(w.id)).find((x) => x.status === "delivered"), "the delivery listed delivered");
    assert.equal(d.id, Number(got.headers["telepath-delivery"]));
    assert.equal(d.event_id, payload.id);
    assert.equal(d.event, "message.created");
    assert.equal(d.attempts, 1);
    assert.equal(d.last_status, 200);
    assert.equal(d.last_error ?? null, null);
    assert.equal(d.next_attempt_at ?? null, null);
    assert.ok(!Number.isNaN(Date.parse(d.delivered_at!)) && !Number.isNaN(Date.parse(d.created_at)));
    assert.deepEqual((await api.webhookDeliveries(w.id, { status: "delivered" })).map((x) => x.id), [d.id]);
    assert.deepEqual(await api.webhookDeliveries(w.id, { status: "pending" }), []);
    assert.deepEqual(await api.webhookDeliveries(w.id, { status: "failed" }), []);
    assert.equal((await api.getWebhook(w.id)).pending, 0);

    // Newest first, paged with before and limit.
    await api.publish(room.id, "second");
    await api.publish(room.id, "third");
    const all = await waitFor(async () => {
      const l = await api.webhookDeliveries(w.id);
      return l.length === 3 && l.every((x) => x.status === "delivered") ? l : undefined;
    }, "three delivered");
    assert.ok(all[0]!.id > all[1]!.id && all[1]!.id > all[2]!.id, "newest first");
    assert.deepEqual((await api.webhookDeliveries(w.id, { limit: 2 })).map((x) => x.id), [all[0]!.id, all[1]!.id]);
    assert.deepEqual((await api.webhookDeliveries(w.id, { before: all[1]!.id })).map((x) => x.id), [all[2]!.id]);
    await waitFor(() => r.got.length === 3, "three requests");
    const bodies = r.got.map((x) => (JSON.parse(x.text) as { data: RoomMessage }).data.body).sort();
    assert.deepEqual(bodies, ["invoice paid ✓", "second", "third"]);

    // A repeat of the idempotent publish is no new event.
    await api.publish(room.id, "invoice paid ✓", { as: bot, clientId: "inv-1" });
    await sleep(400);
    assert.equal(r.got.length, 3, "a retried publish is not delivered again");

    await api.deleteWebhook(w.id);
    await refused(api.getWebhook(w.id), "not_found", 404);
    await refused(api.webhookDeliveries(w.id), "not_found", 404);
    await refused(api.deleteWebhook(w.id), "not_found", 404);
    assert.ok(!(await api.listWebhooks()).some((x) => x.id === w.id), "no longer listed");
    await api.publish(room.id, "after the delete");
    await sleep(500);
    assert.equal(r.got.length, 3, "a deleted webhook gets nothing");
  });

  it("a failed attempt is retried with the same event id; the delivery shows what the receiver answered", async () => {
    let failing = true;
    const r = await listen(() => (failing ? 503 : 204));
    const secret = "my-own-secret_0123456789!";
    const w = track(await api.createWebhook({ url: `${r.url}?tenant=7`, events: ["message.created"], secret }));
    assert.equal(w.secret, secret, "the secret given is the one used");
    const room = await api.createRoom({ name: uname("retry") });
    await api.publish(room.id, "try again");

    const pending = await waitFor(async () => {
      const [d] = await api.webhookDeliveries(w.id);
      return d && d.attempts >= 1 && d.last_status === 503 ? d : undefined;
    }, "a failed attempt recorded", 10_000);
    assert.equal(pending.status, "pending");
    assert.ok(pending.next_attempt_at && !Number.isNaN(Date.parse(pending.next_attempt_at)), "the next attempt is due");
    assert.ok(pending.last_attempt_at && !Number.isNaN(Date.parse(pending.last_attempt_at)));
    assert.match(pending.last_error ?? "", /503/);
    assert.ok((await api.getWebhook(w.id)).pending >= 1, "counted pending");

    failing = false;
    const done = await waitFor(async () => (await api.webhookDeliveries(w.id, { status: "delivered" }))[0], "delivered after a retry", 15_000);
    assert.equal(done.id, pending.id);
    assert.ok(done.attempts >= 2, `${done.attempts} attempts`);
    assert.equal(done.last_status, 204, "any 2xx delivers");
    assert.equal(done.attempts, r.got.length, "one request per attempt");
    assert.deepEqual(r.got.map((x) => x.headers["telepath-attempt"]), r.got.map((_, i) => String(i + 1)));
    assert.equal(new Set(r.got.map((x) => x.headers["telepath-event-id"])).size, 1, "the same event id on every attempt");
    assert.equal(new Set(r.got.map((x) => x.headers["telepath-delivery"])).size, 1, "the same delivery");
    assert.equal(new Set(r.got.map((x) => x.text)).size, 1, "the same body");
    assert.equal(r.got[0]!.path, "/hooks/telepath?tenant=7", "the query is kept");
    for (const x of r.got) assert.equal(await verifyWebhook({ secret, body: x.body, signature: String(x.headers["telepath-signature"]) }), true);
    assert.equal((await api.getWebhook(w.id)).pending, 0);
  });

  it("tells of connections and joins when asked", async () => {
    const r = await listen();
    const w = track(await api.createWebhook({ url: r.url, events: ["user.connected", "room.joined"] }));
    const room = await api.createRoom({ name: uname("joins") });
    const c = await client(s, uname("joiner"));
    await c.tp.connect();
    await c.tp.join(room.id);
    const payloads = () => r.got.map((x) => JSON.parse(x.text) as WebhookPayload);
    const connected = await waitFor(() => payloads().find((p) => p.type === "user.connected" && p.data.user.id === c.user.id), "user.connected", 10_000);
    if (connected.type !== "user.connected") throw new Error("narrowed");
    assert.equal(connected.data.user.name, c.user.name);
    assert.equal(typeof connected.data.conn_id, "string");
    assert.equal(typeof connected.data.node, "string");
    assert.ok(!Number.isNaN(Date.parse(connected.data.at)));
    const joined = await waitFor(() => payloads().find((p) => p.type === "room.joined" && p.data.user.id === c.user.id), "room.joined", 10_000);
    if (joined.type !== "room.joined") throw new Error("narrowed");
    assert.equal(joined.data.room, room.id);
    assert.equal(joined.data.action, "joined");
    for (const x of r.got) assert.equal(await verifyWebhook({ secret: w.secret, body: x.body, signature: String(x.headers["telepath-signature"]) }), true);
    assert.ok(r.got.every((x) => ["user.connected", "room.joined"].includes(String(x.headers["telepath-event"]))), "nothing it did not ask for");
  });

  it("400 for what the server refuses, 404 for an unknown webhook", async () => {
    const url = "http://127.0.0.1:9/hook";
    await refused(api.createWebhook({ url, events: [] }), "bad_request", 400, /events/);
    await refused(api.createWebhook({ url, events: ["message.created", "message.created"] }), "bad_request", 400, /events/);
    await refused(api.createWebhook({ url, events: ["message.sent" as "message.created"] }), "bad_request", 400);
    await refused(api.createWebhook({ url, events: ["message.created"], secret: "too-short" }), "bad_request", 400, /secret/);
    await refused(api.createWebhook({ url, events: ["message.created"], secret: "has spaces in it, sixteen+" }), "bad_request", 400, /secret/);
    await refused(api.createWebhook({ url: "ftp://127.0.0.1/hook", events: ["message.created"] }), "bad_request", 400, /url/);
    await refused(api.createWebhook({ url: "http://user:pw@127.0.0.1/hook", events: ["message.created"] }), "bad_request", 400, /url/);
    await refused(api.getWebhook(NO_SUCH), "not_found", 404);
    await refused(api.deleteWebhook(NO_SUCH), "not_found", 404);
    await refused(api.webhookDeliveries(NO_SUCH), "not_found", 404);
    const w = track(await api.createWebhook({ url, events: ["message.deleted"] }));
    await refused(api.webhookDeliveries(w.id, { limit: 0 }), "bad_request", 400, /limit/);
    await refused(api.webhookDeliveries(w.id, { limit: 101 }), "bad_request", 400, /limit/);
    await refused(api.webhookDeliveries(w.id, { status: "lost" as "failed" }), "bad_request", 400);
    await api.deleteWebhook(w.id);
  });

  it("keeps a secret it was given out of error messages", async () => {
    const secret = "s3cret-that-must-not-leak-0123";
    const echo = (async () => new Response(JSON.stringify({ error: { code: "bad_request", message: `bad secret ${secret}` } }), { status: 400 })) as unknown as typeof fetch;
    const k = await admin.createApiKey({ name: uname("echo"), scopes: ["webhooks"] });
    const leaky = new TelepathServer({ url: s.base, apiKey: k.key, fetch: echo });
    await refused(leaky.createWebhook({ url: "http://127.0.0.1:9/x", events: ["message.created"], secret }), "bad_request", 400, /^bad secret \[redacted\]$/);
  });
});
