// Rooms people can run, against a real all-in-one: invitations (live, sent
// again after each welcome, emitted once), invite links, kicks and bans
// (the removed client forgets the room and does not rejoin it), mutes,
// roles and the audit log, directory events for clients that joined
// nothing, profiles and user search, and the refusals as TelepathError.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, TelepathError, type MemberEvent, type ServerError } from "../dist/index.js";
import { client, closeAll, createRoom, droppableWebSocket, login, record, rest, sleep, startServer, track, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
before(async () => {
  s = await startServer();
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** A client of a fresh user whose socket the test can drop. */
async function droppable(name: string) {
  const sock = droppableWebSocket();
  const { token, user } = await login(s, name);
  const tp = track(new Telepath({ url: s.ws, token, WebSocket: sock.WebSocket, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } }));
  return { tp, user, drop: () => sock.drop() };
}

/** Rejects with a TelepathError of `code` (and HTTP `status` when given). */
async function refused(p: Promise<unknown>, code: string, status?: number): Promise<TelepathError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TelepathError, `a TelepathError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (status !== undefined) assert.equal(e.status, status);
    return e;
  }
  assert.fail(`expected ${code}, it succeeded`);
}

/** The member events a client emits about one user. */
const about = (events: MemberEvent[], userId: string) => events.filter((m) => m.user.id === userId);

/** Waits until a drop and the reconnect after it are over (a fresh welcome). */
async function dropAndReconnect(c: { tp: Telepath; drop: () => void }) {
  const welcomes = record(c.tp, "welcome");
  c.drop();
  await waitFor(() => welcomes.length === 1 && c.tp.state === "open", "the reconnect");
}

describe("rooms people can run", () => {
  it("invitations: live, once per id across reconnects, accepted into a private room; declined; invite links", async () => {
    const { room, api: owner, user: ownerUser } = await createRoom(s, uname("own"));
    await owner.updateRoom(room.id, { private: true });
    const ownerTp = (await client(s, ownerUser.name)).tp;
    const bob = await droppable(uname("bob"));
    const invites = record(bob.tp, "invite");
    await Promise.all([ownerTp.connect(), bob.tp.connect()]);
    await ownerTp.join(room.id);

    const inv = await owner.invite(room.id, bob.user.name);
    assert.equal(inv.state, "pending");
    assert.deepEqual(inv.room, { id: room.id, name: room.name, private: true });
    assert.equal(inv.user.id, bob.user.id);
    await waitFor(() => invites.length === 1, "the invite event");
    assert.equal(invites[0]!.id, inv.id);
    assert.equal(invites[0]!.from.id, ownerUser.id);
    // Inviting again answers with the pending one.
    assert.equal((await owner.invite(room.id, bob.user.id)).id, inv.id);

    // The server sends it again after every welcome: the SDK emits it once.
    const frames = record(bob.tp, "frame");
    await dropAndReconnect(bob);
    await waitFor(() => frames.some((f) => f.type === "invite"), "the invite sent again after welcome");
    await sleep(100);
    assert.equal(invites.length, 1, "one invite event per id");

    const bobApi = (await rest(s, bob.user.name)).api;
    assert.deepEqual((await bobApi.invites()).map((i) => i.id), [inv.id]);
    // Only the invitee may accept.
    await refused(owner.acceptInvite(inv.id), "not_found", 404);
    await refused(bobApi.getRoom(room.id), "not_found", 404);
    const joined = await bobApi.acceptInvite(inv.id);
    assert.equal(joined.role, "member");
    assert.equal(joined.room.id, room.id);
    assert.equal((await bobApi.getRoom(room.id)).role, "member");
    assert.deepEqual(await bobApi.invites(), []);
    await refused(bobApi.acceptInvite(inv.id), "not_found", 404);

    // The two chat.
    await bob.tp.join(room.id);
    const ownerMsgs = record(ownerTp, "message");
    await bob.tp.send(room.id, "thanks for the invite");
    await waitFor(() => ownerMsgs.some((m) => m.body === "thanks for the invite"), "bob's message at the owner");

    // A declined invitation is gone.
    const cat = await rest(s, uname("cat"));
    const inv2 = await owner.invite(room.id, cat.user.name);
    await cat.api.declineInvite(inv2.id);
    assert.deepEqual(await cat.api.invites(), []);
    await refused(cat.api.acceptInvite(inv2.id), "not_found", 404);
    // Inviting a participant is a conflict, an unknown user not found.
    await refused(owner.invite(room.id, bob.user.name), "conflict", 409);
    await refused(owner.invite(room.id, uname("nobody")), "not_found", 404);

    // An invite link with one use: the first joins the private room, the second is too late.
    const link = await owner.createInviteLink(room.id, { maxUses: 1, expiresIn: 3600 });
    assert.match(link.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(link.max_uses, 1);
    assert.equal(link.room.id, room.id);
    assert.ok(Date.parse(link.expires_at) > Date.now() + 3500_000);
    const dee = await rest(s, uname("dee"));
    const viaLink = await dee.api.joinByLink(link.token);
    assert.deepEqual([viaLink.room.id, viaLink.role], [room.id, "member"]);
    assert.deepEqual(await dee.api.joinByLink(link.token).then((j) => j.role), "member", "a participant already: the same answer");
    const eve = await rest(s, uname("eve"));
    await refused(eve.api.joinByLink(link.token), "not_found", 404);
    await refused(eve.api.joinByLink("x".repeat(43)), "not_found", 404);
    assert.equal((await owner.getRoom(room.id)).member_count, 3);
  });

  it("kick: one member left (kicked) at the kicked client, which forgets the room and does not rejoin it after a reconnect; ban", async () => {
    const { room, api: owner, user: ownerUser } = await createRoom(s, uname("own")); // public: a rejoin would succeed
    const ownerTp = (await client(s, ownerUser.name)).tp;
    const bob = await droppable(uname("bob"));
    const bobMembers = record(bob.tp, "member");
    const bobMsgs = record(bob.tp, "message");
    const ownerMembers = record(ownerTp, "member");
    await Promise.all([ownerTp.connect(), bob.tp.connect()]);
    await ownerTp.join(room.id);
    await bob.tp.join(room.id);
    const bobJoins = record(bob.tp, "joined");
    await ownerTp.send(room.id, "before the kick");
    await waitFor(() => bobMsgs.length === 1, "bob gets the room");

    await owner.kick(room.id, bob.user.name);
    await waitFor(() => about(bobMembers, bob.user.id).some((m) => m.action === "left"), "bob's left event");
    await waitFor(() => about(ownerMembers, bob.user.id).some((m) => m.action === "left"), "the owner sees bob leave");
    await sleep(300); // the server's second copy (from bob's own channel) comes meanwhile
    const left = about(bobMembers, bob.user.id).filter((m) => m.action === "left");
    assert.equal(left.length, 1, "emitted once");
    assert.equal(left[0]!.reason, "kicked");
    assert.equal(left[0]!.by?.id, ownerUser.id);
    assert.equal(about(ownerMembers, bob.user.id).at(-1)!.reason, "kicked");
    assert.deepEqual(bob.tp.rooms(), [], "the room is forgotten");
    assert.equal(bob.tp.lastSeq(room.id), undefined);
    await refused(bob.tp.send(room.id, "still here?"), "forbidden");

    // A reconnect does not bring it back, and the room's messages no longer reach bob.
    await dropAndReconnect(bob);
    await sleep(200);
    assert.deepEqual(bob.tp.rooms(), []);
    assert.equal(bobJoins.length, 0, "no rejoin");
    await ownerTp.send(room.id, "after the kick");
    await sleep(200);
    assert.deepEqual(bobMsgs.map((m) => m.body), ["before the kick"]);

    // A kicked user may come back to a public room; a banned one may not.
    await bob.tp.join(room.id);
    assert.deepEqual(bob.tp.rooms(), [room.id]);
    await owner.ban(room.id, bob.user.id, { duration: 600 });
    await waitFor(() => about(bobMembers, bob.user.id).filter((m) => m.action === "left").length === 2, "the ban's left event");
    await sleep(300);
    const banned = about(bobMembers, bob.user.id).filter((m) => m.action === "left");
    assert.equal(banned.length, 2, "the ban's left is news (a join came between), and emitted once");
    assert.equal(banned[1]!.reason, "banned");
    assert.deepEqual(bob.tp.rooms(), []);
    const bobApi = (await rest(s, bob.user.name)).api;
    await refused(bobApi.joinRoom(room.id), "forbidden", 403);
    await refused(bob.tp.join(room.id), "forbidden");
    await refused(bobApi.getRoom(room.id), "not_found", 404);
    const bans = await owner.bans(room.id);
    assert.deepEqual(bans.map((b) => [b.user.id, b.by.id]), [[bob.user.id, ownerUser.id]]);
    assert.ok(bans[0]!.until && Date.parse(bans[0]!.until) > Date.now());
    await owner.unban(room.id, bob.user.name);
    await refused(owner.unban(room.id, bob.user.name), "not_found", 404);
    assert.deepEqual(await owner.bans(room.id), []);
    assert.equal((await bobApi.joinRoom(room.id)).role, "member");
  });

  it("mute: typing and sends refused with forbidden; participants show muted_until; unmute lifts it", async () => {
    const { room, api: owner, user: ownerUser } = await createRoom(s, uname("own"));
    const bob = await client(s, uname("bob"));
    const members = record(bob.tp, "member");
    const errors = record(bob.tp, "error");
    await bob.tp.connect();
    await bob.tp.join(room.id);

    await owner.mute(room.id, bob.user.name, { duration: 120 });
    await waitFor(() => members.some((m) => m.action === "muted"), "the muted event");
    await sleep(300);
    const muted = members.filter((m) => m.action === "muted");
    assert.equal(muted.length, 1, "emitted once");
    assert.equal(muted[0]!.by?.id, ownerUser.id);
    assert.ok(muted[0]!.until && Date.parse(muted[0]!.until) > Date.now() + 100_000);
    const p = (await owner.participants(room.id)).find((x) => x.user.id === bob.user.id)!;
    assert.ok(p.muted_until && Date.parse(p.muted_until) > Date.now());

    const e = await refused(bob.tp.send(room.id, "can I speak?"), "forbidden");
    assert.match(e.message, /muted/);
    bob.tp.typing(room.id);
    await waitFor(() => errors.length > 0, "an error frame for the typing");
    assert.equal((errors[0] as ServerError).code, "forbidden");
    await refused(bob.tp.request({ type: "typing", room: room.id, active: true }), "forbidden");

    await owner.unmute(room.id, bob.user.id);
    await waitFor(() => members.some((m) => m.action === "unmuted"), "the unmuted event");
    await bob.tp.send(room.id, "thank you");
    await bob.tp.request({ type: "typing", room: room.id, active: true });
    assert.equal((await owner.participants(room.id)).find((x) => x.user.id === bob.user.id)!.muted_until ?? undefined, undefined);
  });

  it("roles: promote, what a moderator may do, hand over; the audit log pages newest first", async () => {
    const { room, api: owner, user: ownerUser } = await createRoom(s, uname("own"));
    const bob = await rest(s, uname("bob"));
    const cat = await rest(s, uname("cat"));
    const bobTp = (await client(s, bob.user.name)).tp;
    const members = record(bobTp, "member");
    await bobTp.connect();
    await bobTp.join(room.id);
    await cat.api.joinRoom(room.id);

    // A member may not moderate.
    await refused(bob.api.kick(room.id, cat.user.name), "forbidden", 403);
    await refused(bob.api.updateRoom(room.id, { topic: "mine now" }), "forbidden", 403);

    const promoted = await owner.setRole(room.id, bob.user.id, "moderator");
    assert.equal(promoted.role, "moderator");
    await waitFor(() => members.some((m) => m.action === "role" && m.user.id === bob.user.id), "the role event");
    assert.equal(members.find((m) => m.action === "role")!.role, "moderator");
    assert.equal((await bob.api.getRoom(room.id)).role, "moderator");

    // A moderator acts on members, not on the owner, and may not change roles.
    const updated = await bob.api.updateRoom(room.id, { topic: "running rooms", description: "a test" });
    assert.equal(updated.topic, "running rooms");
    await bob.api.mute(room.id, cat.user.id);
    await bob.api.unmute(room.id, cat.user.id);
    await refused(bob.api.kick(room.id, ownerUser.name), "forbidden", 403);
    await refused(bob.api.setRole(room.id, cat.user.id, "moderator"), "forbidden", 403);
    await bob.api.kick(room.id, cat.user.name);

    // The owner cannot leave (a client that tried follows the room again); they hand it over and become a moderator.
    await refused(owner.leaveRoom(room.id), "conflict", 409);
    const ownerTp = (await client(s, ownerUser.name)).tp;
    await ownerTp.connect();
    await ownerTp.join(room.id);
    const ownerMsgs = record(ownerTp, "message");
    await refused(ownerTp.leave(room.id), "conflict");
    await waitFor(() => ownerTp.rooms().includes(room.id), "the owner's client back in the room");
    await bobTp.send(room.id, "still yours");
    await waitFor(() => ownerMsgs.some((m) => m.body === "still yours"), "the room's messages at the owner");
    await owner.setRole(room.id, bob.user.id, "owner");
    assert.equal((await bob.api.getRoom(room.id)).role, "owner");
    assert.equal((await owner.getRoom(room.id)).role, "moderator");
    await owner.leaveRoom(room.id);

    const all = await bob.api.audit(room.id);
    assert.equal(all.has_more, false);
    assert.deepEqual(all.entries.map((e) => e.action), ["role", "kick", "unmute", "mute", "update", "role"]);
    assert.deepEqual(all.entries.map((e) => e.id), [...all.entries.map((e) => e.id)].sort((a, b) => b - a), "newest first");
    assert.equal(all.entries[1]!.actor.id, bob.user.id);
    assert.equal(all.entries[1]!.target?.id, cat.user.id);
    const first = await bob.api.audit(room.id, { limit: 2 });
    assert.equal(first.has_more, true);
    const rest2 = await bob.api.audit(room.id, { before: first.entries.at(-1)!.id, limit: 10 });
    assert.deepEqual([...first.entries, ...rest2.entries].map((e) => e.id), all.entries.map((e) => e.id));
    await refused(cat.api.audit(room.id), "forbidden", 403);
  });

  it("room_created and room_updated reach a client that joined nothing; private rooms stay with their members", async () => {
    const watcher = await client(s, uname("wat"));
    const created = record(watcher.tp, "room_created");
    const updated = record(watcher.tp, "room_updated");
    const closed = record(watcher.tp, "room_closed");
    await watcher.tp.connect();
    const owner = await rest(s, uname("own"));
    const ownerTp = (await client(s, owner.user.name)).tp;
    const ownerCreated = record(ownerTp, "room_created");
    await ownerTp.connect();

    const hidden = await owner.api.createRoom({ name: uname("hid"), private: true });
    const pub = await owner.api.createRoom({ name: uname("pub") });
    await waitFor(() => created.some((e) => e.room.id === pub.id), "room_created of the public room");
    const ev = created.find((e) => e.room.id === pub.id)!;
    assert.equal(ev.room.name, pub.name);
    assert.equal(ev.room.member_count, 1);
    assert.equal(ev.by.id, owner.user.id);
    await waitFor(() => ownerCreated.length === 2, "the creator gets both");
    assert.ok(ownerCreated.some((e) => e.room.id === hidden.id && e.room.private));
    assert.ok(!created.some((e) => e.room.id === hidden.id), "a private room is not announced to others");

    await owner.api.updateRoom(pub.id, { topic: "news", name: `${pub.name}-2` });
    await waitFor(() => updated.some((e) => e.room.topic === "news"), "room_updated");
    assert.equal(updated.at(-1)!.room.name, `${pub.name}-2`);
    await owner.api.updateRoom(pub.id, { private: true });
    await waitFor(() => updated.some((e) => e.room.private), "room_updated as it turns private");
    await owner.api.updateRoom(hidden.id, { topic: "secret" });
    await owner.api.updateRoom(pub.id, { private: false });
    await waitFor(() => updated.filter((e) => e.room.id === pub.id).length === 3, "room_updated as it turns public");
    assert.ok(!updated.some((e) => e.room.id === hidden.id), "a private room's update is not announced to others");
    await owner.api.closeRoom(pub.id);
    await waitFor(() => closed.some((c) => c.room === pub.id), "room_closed of a public room");
  });

  it("profiles: updateProfile, the profile event to those who share a room, user() and me(); searchUsers pages", async () => {
    const { room, api: annApi, user: ann } = await createRoom(s, uname("ann"));
    const bob = await client(s, uname("bob"));
    const annTp = (await client(s, ann.name)).tp;
    const bobProfiles = record(bob.tp, "profile");
    const annProfiles = record(annTp, "profile");
    await Promise.all([bob.tp.connect(), annTp.connect()]);
    await bob.tp.join(room.id);

    const mine = await annApi.updateProfile({
      display_name: "Ann Example",
      bio: "runs rooms",
      avatar_url: "https://example.com/ann.png",
      abilities: ["rust", "typescript", "rust"],
    });
    assert.equal(mine.display_name, "Ann Example");
    assert.deepEqual(mine.abilities, ["rust", "typescript"], "repeats dropped");
    await waitFor(() => bobProfiles.some((p) => p.id === ann.id), "the profile event at bob");
    await waitFor(() => annProfiles.some((p) => p.id === ann.id), "the profile event at ann");
    const ev = bobProfiles.find((p) => p.id === ann.id)!;
    assert.equal(ev.display_name, "Ann Example");
    assert.equal(ev.bio, "runs rooms");
    assert.equal(ev.online, true);

    const byName = await (await rest(s, bob.user.name)).api.user(ann.name);
    const byId = await (await rest(s, bob.user.name)).api.user(ann.id);
    assert.deepEqual(byName, byId);
    assert.equal(byName.avatar_url, "https://example.com/ann.png");
    assert.equal(byName.status, "online");
    assert.ok(byName.last_seen);
    assert.deepEqual(await annApi.me().then((p) => p.display_name), "Ann Example");
    // "" clears a field.
    assert.equal((await annApi.updateProfile({ bio: "" })).bio ?? undefined, undefined);
    await refused(annApi.updateProfile({ avatar_url: "http://example.com/a.png" }), "bad_request", 400);
    await refused(annApi.updateProfile({ nickname: "x" } as never), "bad_request", 400);
    await refused(annApi.user(uname("nobody")), "not_found", 404);

    // Five users under one prefix, two per page.
    const prefix = `zq${Date.now() % 100000}`;
    const names = ["a", "b", "c", "d", "e"].map((x) => `${prefix}${x}`);
    for (const n of names) await login(s, n);
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await annApi.searchUsers(prefix, { after, limit: 2 });
      seen.push(...page.users.map((u) => u.name));
      after = page.next ?? undefined;
      pages++;
    } while (after && pages < 10);
    assert.deepEqual(seen, names);
    assert.equal(pages, 3);
    await refused(annApi.searchUsers(""), "bad_request", 400);
  });

  it("refusals surface as TelepathError codes: 403 for a member, 404 for an outsider of a private room", async () => {
    const { room, api: owner, user: ownerUser } = await createRoom(s, uname("own"));
    await owner.updateRoom(room.id, { private: true });
    const member = await rest(s, uname("mem"));
    const outsider = await rest(s, uname("out"));
    const inv = await owner.invite(room.id, member.user.name);
    await member.api.acceptInvite(inv.id);

    await refused(member.api.kick(room.id, ownerUser.name), "forbidden", 403);
    await refused(member.api.ban(room.id, ownerUser.id), "forbidden", 403);
    await refused(member.api.createInviteLink(room.id), "forbidden", 403);
    await refused(member.api.bans(room.id), "forbidden", 403);
    await refused(owner.kick(room.id, ownerUser.id), "forbidden", 403);
    await refused(outsider.api.getRoom(room.id), "not_found", 404);
    await refused(outsider.api.kick(room.id, member.user.name), "not_found", 404);
    await refused(outsider.api.updateRoom(room.id, { topic: "x" }), "not_found", 404);
    await refused(outsider.api.audit(room.id), "not_found", 404);
    await refused(outsider.api.joinRoom(room.id), "not_found", 404);
    await refused(owner.updateRoom(room.id, { max_participants: 0 }), "bad_request", 400);
    await refused(owner.updateRoom(room.id, { max_participants: 1 }), "conflict", 409);
    await refused(owner.createInviteLink(room.id, { expiresIn: 5 }), "bad_request", 400);
    await refused(owner.kick(room.id, outsider.user.name), "not_found", 404);
    await refused(owner.setRole(room.id, ownerUser.id, "member"), "forbidden", 403);
  });
});
