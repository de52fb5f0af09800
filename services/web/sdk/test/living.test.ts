// Messages that live against a real all-in-one: edits, deletes and reactions
// take the room's seqs and reach every member in order, also one who was away
// (the rejoin with since replays them), and a hole of lost changes is
// repaired; idempotent repeats change nothing; read cursors, receipts and
// unread counts; threads; search; DM edits reach a recipient who was away.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, TelepathError, type DirectMessage, type MessageEditedEvent, type ReceiptEvent } from "../dist/index.js";
import { client, closeAll, createRoom, record, rest, startServer, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
before(async () => {
  s = await startServer();
});
after(async () => {
  closeAll();
  await s?.stop();
});

/** Every room-log event a client emits, as "<type>:<seq>", and the payloads. */
function logOf(tp: Telepath) {
  const seqs: string[] = [];
  const items: Record<string, any>[] = [];
  for (const ev of ["message", "message_edited", "message_deleted", "reaction"] as const) {
    tp.on(ev, (p: any) => {
      seqs.push(`${ev}:${p.seq}`);
      items.push(p);
    });
  }
  return { seqs, items, numbers: () => seqs.map((x) => Number(x.split(":")[1])) };
}

/** A WebSocket that loses the frames `lose` picks (as pub/sub between gateways may). */
function lossyWebSocket(lose: (frame: Record<string, any>) => boolean) {
  return class Lossy extends WebSocket {
    override get onmessage() {
      return super.onmessage;
    }
    override set onmessage(fn: ((this: WebSocket, ev: MessageEvent) => any) | null) {
      super.onmessage = fn
        ? (ev: MessageEvent) => {
            if (lose(JSON.parse(String(ev.data)))) return;
            fn.call(this, ev);
          }
        : null;
    }
  };
}

const contiguous = (ns: number[]) => ns.every((n, i) => i === 0 || n === ns[i - 1]! + 1);

describe("messages that live", () => {
  it("changes take seqs and reach members in order; one who was away gets them replayed; repeats change nothing", async () => {
    const owner = uname("own");
    const { room } = await createRoom(s, owner);
    const a = await client(s, owner);
    const b = await client(s, uname("bea"));
    const aLog = logOf(a.tp);
    const bLog = logOf(b.tp);
    await a.tp.connect();
    await b.tp.connect();
    await a.tp.join(room.id);
    await b.tp.join(room.id);

    const m1 = await a.tp.send(room.id, "one");
    const m2 = await a.tp.send(room.id, "two");
    const e1 = await a.tp.edit(room.id, m1.id, "one, edited");
    assert.equal(e1.seq, m2.seq + 1, "an edit takes the next seq");
    assert.ok(e1.edited_at);
    const r1 = await b.tp.react(room.id, m1.id, "👍", true);
    assert.deepEqual([r1.seq, r1.count], [e1.seq! + 1, 1]);
    const d2 = await a.tp.delete(room.id, m2.id);
    assert.equal(d2.seq, r1.seq + 1);
    await waitFor(() => bLog.seqs.length === 5 && aLog.seqs.length === 5, "five log items on both");
    assert.deepEqual(bLog.seqs, [
      `message:${m1.seq}`,
      `message:${m2.seq}`,
      `message_edited:${e1.seq}`,
      `reaction:${r1.seq}`,
      `message_deleted:${d2.seq}`,
    ]);
    assert.deepEqual(aLog.seqs, bLog.seqs);
    const edited = bLog.items[2] as MessageEditedEvent;
    assert.equal(edited.id, m1.id);
    assert.equal(edited.body, "one, edited");
    assert.equal(edited.by.name, owner);
    assert.equal(b.tp.lastSeq(room.id), d2.seq);

    // Natural idempotency: no seq, no event, the reply names the seq of the current state.
    const again = await a.tp.edit(room.id, m1.id, "one, edited");
    assert.equal(again.seq, e1.seq);
    const reactAgain = await b.tp.react(room.id, m1.id, "👍", true);
    assert.deepEqual([reactAgain.seq, reactAgain.count], [r1.seq, 1]);
    const deleteAgain = await a.tp.delete(room.id, m2.id);
    assert.equal(deleteAgain.seq, d2.seq);
    // The refusals of the contract.
    await assert.rejects(b.tp.edit(room.id, m1.id, "not mine"), (e: TelepathError) => e.code === "forbidden");
    await assert.rejects(a.tp.edit(room.id, m2.id, "deleted"), (e: TelepathError) => e.code === "not_found");
    await assert.rejects(b.tp.react(room.id, m2.id, "👍", true), (e: TelepathError) => e.code === "not_found");

    // Bea goes away; Ann changes things; Bea comes back and gets them replayed, once each, in order.
    b.tp.close();
    const m3 = await a.tp.send(room.id, "three");
    const e3 = await a.tp.edit(room.id, m3.id, "three, edited");
    const r3 = await a.tp.react(room.id, m3.id, "🎉", true);
    const r1b = await a.tp.react(room.id, m1.id, "👍", true);
    assert.equal(r1b.count, 2);
    const before = bLog.seqs.length;
    await b.tp.connect();
    await waitFor(() => b.tp.lastSeq(room.id) === r1b.seq, "the replay up to the last change");
    const replayed = bLog.seqs.slice(before);
    assert.deepEqual(replayed, [`message:${m3.seq}`, `message_edited:${e3.seq}`, `reaction:${r3.seq}`, `reaction:${r1b.seq}`]);
    assert.ok(contiguous(bLog.numbers()), `no hole, no repeat: ${bLog.seqs.join(" ")}`);

    // History is each message as it is now; changes are not items of it.
    const page = await (await rest(s, owner)).api.history(room.id, { after: 0 });
    const byId = new Map(page.messages.map((m) => [m.id, m]));
    assert.deepEqual(page.messages.map((m) => m.seq), [m1.seq, m2.seq, m3.seq]);
    assert.equal(byId.get(m1.id)!.body, "one, edited");
    assert.ok(byId.get(m1.id)!.edited_at);
    assert.deepEqual(byId.get(m1.id)!.reactions?.map((r) => [r.emoji, r.count, r.me]), [["👍", 2, true]]);
    assert.equal(byId.get(m2.id)!.deleted, true);
    assert.equal(byId.get(m2.id)!.body, undefined, "a tombstone has no body");
  });

  it("a hole made of lost changes is repaired: each change once, in order, the cursor never past the hole", async () => {
    const owner = uname("own");
    const { room } = await createRoom(s, owner);
    const a = await client(s, owner);
    // Cid's socket loses the first edit and the first reaction.
    let lost = 0;
    const Lossy = lossyWebSocket((f) => {
      if ((f["type"] !== "message_edited" && f["type"] !== "reaction") || lost >= 2) return false;
      lost++;
      return true;
    });
    const c = await client(s, uname("cid"), { WebSocket: Lossy });
    const cLog = logOf(c.tp);
    await a.tp.connect();
    await c.tp.connect();
    await a.tp.join(room.id);
    await c.tp.join(room.id);
    const m1 = await a.tp.send(room.id, "hello");
    const e1 = await a.tp.edit(room.id, m1.id, "hello, edited");
    const r1 = await a.tp.react(room.id, m1.id, "👀", true);
    const m2 = await a.tp.send(room.id, "after the hole");
    await waitFor(() => c.tp.lastSeq(room.id) === m2.seq, "Cid past the hole");
    assert.equal(lost, 2, "two frames were lost");
    assert.deepEqual(cLog.seqs, [`message:${m1.seq}`, `message_edited:${e1.seq}`, `reaction:${r1.seq}`, `message:${m2.seq}`]);
    assert.equal((cLog.items[1] as MessageEditedEvent).body, "hello, edited");
  });

  it("read cursors: read replies with the cursor, receipts reach the room, GET /rooms counts unread, participants carry read_seq", async () => {
    const owner = uname("own");
    const { room } = await createRoom(s, owner);
    const a = await client(s, owner);
    const dName = uname("dee");
    const d = await client(s, dName);
    const receipts = record(a.tp, "receipt");
    await a.tp.connect();
    await d.tp.connect();
    await a.tp.join(room.id);
    await d.tp.join(room.id);
    const sent: { id: string; seq: number }[] = [];
    for (const body of ["u1", "u2", "u3"]) sent.push(await a.tp.send(room.id, body));
    const del = await a.tp.delete(room.id, sent[1]!.id);
    const dApi = (await rest(s, dName)).api;
    const listed = (await dApi.listRooms()).find((r) => r.id === room.id)!;
    assert.equal(listed.unread, 2, "two not deleted, not her own, above her cursor");
    assert.equal(listed.read_seq, 0);
    const read = await d.tp.markRead(room.id, sent[0]!.seq);
    assert.deepEqual(read, { room: room.id, seq: sent[0]!.seq });
    await waitFor(() => receipts.some((r: ReceiptEvent) => r.user.name === dName && r.seq === sent[0]!.seq), "Ann gets the receipt");
    assert.equal((await dApi.listRooms()).find((r) => r.id === room.id)!.unread, 1);
    // A seq past the latest is clamped; the cursor never goes back.
    const far = await d.tp.markRead(room.id, 1_000_000);
    const latest = del.seq!;
    assert.equal(far.seq, latest);
    const back = await d.tp.request<{ seq: number }>({ type: "read", room: room.id, seq: 1 });
    assert.equal(back.seq, latest);
    assert.equal((await dApi.listRooms()).find((r) => r.id === room.id)!.unread, 0);
    const parts = await (await rest(s, owner)).api.participants(room.id);
    assert.equal(parts.find((p) => p.user.name === dName)!.read_seq, latest);
  });

  it("threads: a reply names its parent, the thread route lists replies, the parent counts them; a reply to another room's message is not_found", async () => {
    const owner = uname("own");
    const { room } = await createRoom(s, owner);
    const { room: other } = await createRoom(s, owner);
    const a = await client(s, owner);
    await a.tp.connect();
    await a.tp.join(room.id);
    await a.tp.join(other.id);
    const parent = await a.tp.send(room.id, "parent");
    const r1 = await a.tp.send(room.id, "reply one", { replyTo: parent.id });
    const r2 = await a.tp.send(room.id, "reply two", { replyTo: parent.id });
    await assert.rejects(a.tp.send(other.id, "elsewhere", { replyTo: parent.id }), (e: TelepathError) => e.code === "not_found");
    const api = (await rest(s, owner)).api;
    const thread = await api.thread(room.id, parent.id);
    assert.equal(thread.parent.id, parent.id);
    assert.equal(thread.parent.reply_count, 2);
    assert.deepEqual(thread.messages.map((m) => [m.id, m.reply_to]), [
      [r1.id, parent.id],
      [r2.id, parent.id],
    ]);
    const page = await api.history(room.id, { after: 0 });
    const p = page.messages.find((m) => m.id === parent.id)!;
    assert.equal(p.reply_count, 2);
    assert.ok(p.last_reply_at);
    await assert.rejects(api.thread(other.id, parent.id), (e: TelepathError) => e.status === 404);
  });

  it("search: every word, the last as a prefix, snippets marked; FTS syntax is only a separator; deleted text is gone", async () => {
    const owner = uname("own");
    const { room } = await createRoom(s, owner);
    const a = await client(s, owner);
    await a.tp.connect();
    await a.tp.join(room.id);
    const keep = await a.tp.send(room.id, "the quick brown fox jumps");
    const gone = await a.tp.send(room.id, "a quick secret zebra");
    await a.tp.delete(room.id, gone.id);
    const api = (await rest(s, owner)).api;
    const found = await api.search("quick bro");
    assert.deepEqual(found.results.map((r) => r.id), [keep.id]);
    assert.equal(found.results[0]!.room, room.id);
    assert.match(found.results[0]!.snippet, /«quick»/);
    assert.equal((await api.search("zebra")).results.length, 0, "a deleted message is out of the index");
    assert.deepEqual((await api.search('"quick":fox -bro*')).results.map((r) => r.id), [keep.id]);
    assert.equal((await api.search("* :")).results.length, 0, "no word finds nothing");
    await assert.rejects(api.search(""), (e: TelepathError) => e.status === 400);
    const stranger = (await rest(s, uname("eve"))).api;
    assert.equal((await stranger.search("quick")).results.length, 0, "only the caller's rooms");
  });

  it("DMs: an edit and a delete reach the recipient live, and one who was away gets the current state again; GET /dms and /dms?with=", async () => {
    const aName = uname("ann");
    const bName = uname("bob");
    const a = await client(s, aName);
    const b = await client(s, bName);
    const bDms: DirectMessage[] = record(b.tp, "dm");
    const bUpdates: DirectMessage[] = record(b.tp, "dm_updated");
    const bEdits = record(b.tp, "message_edited");
    await a.tp.connect();
    await b.tp.connect();
    const d1 = await a.tp.dm(bName, "first draft");
    await waitFor(() => bDms.length === 1, "the DM");
    const e1 = await a.tp.editDm(d1.id, "second draft");
    assert.equal(e1.seq, undefined);
    await waitFor(() => bEdits.length === 1, "the live edit");
    assert.deepEqual([bEdits[0]!.dm, bEdits[0]!.to, bEdits[0]!.body], [d1.id, b.user.id, "second draft"]);

    // Bob goes away; Ann edits and deletes; Bob comes back to the current states.
    b.tp.close();
    const d2 = await a.tp.dm(bName, "to be deleted");
    await a.tp.editDm(d1.id, "final draft");
    await a.tp.deleteDm(d2.id);
    await assert.rejects(b.tp.editDm(d1.id, "x"), (e: TelepathError) => e.code === "closed");
    await b.tp.connect();
    await waitFor(() => bUpdates.some((d) => d.id === d1.id && d.body === "final draft"), "the edited DM as an update");
    const d2seen = [...bDms, ...bUpdates].filter((d) => d.id === d2.id);
    assert.ok(d2seen.length >= 1 && d2seen.at(-1)!.deleted === true && d2seen.at(-1)!.body === undefined, JSON.stringify(d2seen));

    const bob = (await rest(s, bName)).api;
    const conv = await bob.dmConversation(aName);
    const ids = conv.messages.map((m) => m.id);
    assert.deepEqual(new Set(ids), new Set([d1.id, d2.id]));
    const first = conv.messages.find((m) => m.id === d1.id)!;
    assert.equal(first.body, "final draft");
    assert.ok(first.edited_at);
    assert.equal(conv.messages.find((m) => m.id === d2.id)!.deleted, true);
    const convs = await bob.dmConversations();
    assert.equal(convs[0]!.user.name, aName);
    assert.equal(convs[0]!.last.id, d2.id);
    await assert.rejects(bob.dmConversation(uname("nobody")), (e: TelepathError) => e.status === 404);
    const found = await bob.search("final");
    assert.equal(found.results[0]?.id, d1.id);
    assert.equal(found.results[0]?.with, a.user.id);
  });
});
