// Personal notifications and announcements against a scripted fake gateway
// (no server needed): the unread counter (welcome, +1 per new notification,
// the total of notifications_read), each notification and each announcement
// emitted once per id across reconnects, dismissals; and the REST helpers
// asking the contract's routes.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";

import { Telepath, TelepathError, TelepathRest, type Announcement, type Notification } from "../dist/index.js";
import { fakeServer, welcomeFrame, type FakeConn } from "./fake.js";
import { waitFor } from "./helpers.js";

const clients: Telepath[] = [];
after(() => {
  for (const c of clients) c.close();
});

const BOB = { id: "u-bob", name: "bob" };
const ROOT = { id: "u-root", name: "root" };
const ROOM = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";

const note = (id: string, over: Record<string, unknown> = {}) => ({
  type: "notification",
  id,
  kind: "mention",
  room: ROOM,
  message_id: `m-${id}`,
  from: BOB,
  text: "@fake hello",
  ts: "2026-01-01T00:00:00Z",
  ...over,
});

const announcement = (id: string, over: Record<string, unknown> = {}) => ({
  type: "announcement",
  id,
  title: `title ${id}`,
  body: "maintenance at noon",
  level: "warning",
  created_by: ROOT,
  created_at: "2026-01-01T00:00:00Z",
  ...over,
});

/** A fake gateway whose connection `i` is welcomed with `welcomes[i]` (the last one for later ones). */
async function setup(welcomes: Record<string, unknown>[]) {
  const srv = await fakeServer((conn) => {
    conn.send(welcomeFrame({ conn_id: `c${conn.index}`, ...welcomes[Math.min(conn.index, welcomes.length - 1)] }));
  });
  after(() => srv.stop());
  const tp = new Telepath({ url: srv.url, token: "t", reconnect: { initialDelayMs: 20, maxDelayMs: 20 } });
  clients.push(tp);
  const seen: string[] = [];
  const counts: number[] = [];
  tp.on("notification", (n) => seen.push(`notification:${n.id}:${tp.unreadNotifications}`));
  tp.on("notifications_read", (r) => seen.push(`read:${r.unread}`));
  tp.on("announcement", (a) => seen.push(`announcement:${a.id}`));
  tp.on("announcement_dismissed", (d) => seen.push(`dismissed:${d.id}`));
  tp.on("notifications_unread", ({ unread }) => counts.push(unread));
  let frames = 0;
  tp.on("frame", () => frames++);
  /** Sends frames on the latest connection and waits until the client has read them all. */
  const push = async (...fs: unknown[]) => {
    const want = frames + fs.length;
    const conn: FakeConn = srv.conns.at(-1)!;
    for (const f of fs) conn.send(f);
    await waitFor(() => frames >= want, "the frames");
  };
  /** Drops the connection and waits for the next welcome. */
  const reconnect = async () => {
    const n = srv.conns.length;
    const welcomes = new Promise((r) => tp.once("welcome", r));
    srv.conns.at(-1)!.close(1012, "restart");
    await welcomes;
    assert.equal(srv.conns.length, n + 1);
  };
  return { srv, tp, seen, counts, push, reconnect };
}

describe("notifications", () => {
  it("the unread count: from welcome, +1 per new notification (each id once), the total of notifications_read", async () => {
    const t = await setup([{ notifications_unread: 3 }, { notifications_unread: 1 }, {}]);
    const welcomed: (number | undefined)[] = [];
    t.tp.on("welcome", (w) => welcomed.push(w.notifications_unread));
    assert.equal(t.tp.unreadNotifications, 0, "nothing told yet");
    const w = await t.tp.connect();
    assert.equal(w.notifications_unread, 3);
    assert.equal(t.tp.unreadNotifications, 3);

    await t.push(note("n1"), note("n2", { kind: "reply" }), note("n1"));
    assert.equal(t.tp.unreadNotifications, 5, "a repeat is not counted");
    // A reaction notification replacing an earlier one (a new id) counts until the next total corrects it.
    await t.push(note("n3", { kind: "reaction", message_id: "m-x" }), note("n4", { kind: "reaction", message_id: "m-x" }));
    assert.equal(t.tp.unreadNotifications, 7);
    await t.push({ type: "notifications_read", ids: ["n1", "n2"], unread: 4 });
    assert.equal(t.tp.unreadNotifications, 4);
    await t.push({ type: "notifications_read", up_to: "n4", unread: 0 });
    assert.equal(t.tp.unreadNotifications, 0);

    // A reconnect: the welcome's count replaces ours; a repeat of a notification seen before is still dropped.
    await t.reconnect();
    assert.equal(t.tp.unreadNotifications, 1);
    await t.push(note("n2"), note("n5", { kind: "dm", room: undefined, from: BOB }));
    assert.equal(t.tp.unreadNotifications, 2);

    // A welcome without the count (the server could not tell): the last known stands until the app says.
    await t.reconnect();
    assert.equal(t.tp.unreadNotifications, 2);
    t.tp.setUnreadNotifications(9);
    assert.equal(t.tp.unreadNotifications, 9);
    t.tp.setUnreadNotifications(9); // no change, no event
    t.tp.setUnreadNotifications(Number.NaN); // ignored

    assert.deepEqual(welcomed, [3, 1, undefined]);
    assert.deepEqual(t.seen, [
      "notification:n1:4",
      "notification:n2:5",
      "notification:n3:6",
      "notification:n4:7",
      "read:4",
      "read:0",
      "notification:n5:2",
    ]);
    assert.deepEqual(t.counts, [3, 4, 5, 6, 7, 4, 0, 1, 2, 9]);
  });

  it("a notification frame carries the contract's fields through untouched", async () => {
    const t = await setup([{ notifications_unread: 0 }]);
    const got: Notification[] = [];
    t.tp.on("notification", (n) => got.push(n));
    await t.tp.connect();
    await t.push(note("n1"), { type: "notification", kind: "mention", text: "no id: dropped", ts: "t" });
    assert.equal(got.length, 1);
    assert.deepEqual(got[0], note("n1"));
    assert.equal(t.tp.unreadNotifications, 1);
  });
});

describe("announcements", () => {
  it("each id once: live, after each welcome, across reconnects; a dismissal is emitted and a later copy stays hidden", async () => {
    const t = await setup([{}]);
    const got: Announcement[] = [];
    t.tp.on("announcement", (a) => got.push(a));
    await t.tp.connect();
    // The server's catch-up after welcome, then a live one, then the catch-up's repeat.
    await t.push(announcement("a1"), announcement("a2", { level: "critical", expires_at: "2027-01-01T00:00:00Z" }), announcement("a1"));
    assert.deepEqual(
      got.map((a) => [a.id, a.level, a.created_by.name]),
      [
        ["a1", "warning", "root"],
        ["a2", "critical", "root"],
      ],
    );
    assert.equal(got[1]!.expires_at, "2027-01-01T00:00:00Z");

    // After a reconnect the active ones come again: dropped; a new one goes out.
    await t.reconnect();
    await t.push(announcement("a1"), announcement("a2"), announcement("a3", { level: "info" }));
    // Dismissed on another device: emitted; a copy sent before the dismissal reached the server stays hidden.
    await t.push({ type: "announcement_dismissed", id: "a3" }, { type: "announcement_dismissed", id: "a4" }, announcement("a4"));
    await t.push({ type: "announcement", title: "no id" });
    assert.deepEqual(t.seen, ["announcement:a1", "announcement:a2", "announcement:a3", "dismissed:a3", "dismissed:a4"]);
    assert.deepEqual(t.counts, [], "announcements leave the notification count alone");
  });
});

describe("REST of notifications and announcements", () => {
  it("asks the contract's routes with the contract's bodies, and rejects with the error body", async () => {
    const requests: { method: string; url: string; body: unknown; auth: string | undefined }[] = [];
    const srv = await fakeServer(
      () => {},
      (req, res) => {
        let text = "";
        req.on("data", (c: Buffer) => (text += c.toString()));
        req.on("end", () => {
          const body = text ? JSON.parse(text) : undefined;
          requests.push({ method: req.method ?? "", url: req.url ?? "", body, auth: req.headers["authorization"] });
          const path = new URL(req.url ?? "", "http://x").pathname;
          const json = (status: number, b?: unknown) => {
            if (b === undefined) {
              res.writeHead(status).end();
              return;
            }
            res.writeHead(status, { "content-type": "application/json" });
            res.end(JSON.stringify(b));
          };
          if (path === "/notifications") {
            const { type: _type, ...n } = note("n9");
            json(200, { notifications: [{ ...n, read: false }], unread: 1, has_more: true });
          } else if (path === "/notifications/read") json(200, { ...body, unread: 0 });
          else if (path === "/announcements" && req.method === "GET") {
            const { type: _type, ...a } = announcement("a1");
            json(200, { announcements: [{ ...a, dismissed: false }] });
          } else if (path === "/announcements" && body?.title === "nope") json(403, { error: { code: "forbidden", message: "admins only" } });
          else if (path === "/announcements") json(201, { id: "a2", ...body, created_by: ROOT, created_at: "2026-01-01T00:00:00Z" });
          else if (path === "/announcements/a1/dismiss") json(204);
          else json(404, { error: { code: "not_found", message: "no such route" } });
        });
      },
    );
    after(() => srv.stop());
    const api = new TelepathRest({ baseUrl: srv.url.replace("ws:", "http:").replace("/connect", ""), token: "tok" });

    const list = await api.notifications({ unread: true, before: "n10", limit: 20 });
    assert.equal(list.unread, 1);
    assert.equal(list.has_more, true);
    assert.equal(list.notifications[0]!.read, false);
    assert.equal(list.notifications[0]!.kind, "mention");
    await api.notifications();
    await api.notifications({ unread: false });
    assert.deepEqual(await api.markNotificationsRead({ ids: ["n9"] }), { ids: ["n9"], unread: 0 });
    assert.deepEqual(await api.markNotificationsRead({ up_to: "n9" }), { up_to: "n9", unread: 0 });
    const active = await api.announcements();
    assert.deepEqual(
      active.map((a) => [a.id, a.dismissed]),
      [["a1", false]],
    );
    const made = await api.createAnnouncement({ title: "Heads up", body: "restart at noon", level: "info", expires_at: new Date("2030-01-01T00:00:00Z") });
    assert.equal(made.id, "a2");
    assert.equal(made.expires_at, "2030-01-01T00:00:00.000Z");
    await api.createAnnouncement({ title: "Plain", body: "b", level: "critical" });
    await assert.rejects(api.createAnnouncement({ title: "nope", body: "b", level: "info" }), (e: TelepathError) => {
      assert.ok(e instanceof TelepathError);
      assert.equal(e.code, "forbidden");
      assert.equal(e.status, 403);
      return true;
    });
    assert.equal(await api.dismissAnnouncement("a1"), undefined);

    assert.deepEqual(
      requests.map((r) => [r.method, r.url, r.body]),
      [
        ["GET", "/notifications?unread=true&before=n10&limit=20", undefined],
        ["GET", "/notifications", undefined],
        ["GET", "/notifications?unread=false", undefined],
        ["POST", "/notifications/read", { ids: ["n9"] }],
        ["POST", "/notifications/read", { up_to: "n9" }],
        ["GET", "/announcements", undefined],
        ["POST", "/announcements", { title: "Heads up", body: "restart at noon", level: "info", expires_at: "2030-01-01T00:00:00.000Z" }],
        ["POST", "/announcements", { title: "Plain", body: "b", level: "critical" }],
        ["POST", "/announcements", { title: "nope", body: "b", level: "info" }],
        ["POST", "/announcements/a1/dismiss", undefined],
      ],
    );
    assert.ok(requests.every((r) => r.auth === "Bearer tok"));
  });
});
