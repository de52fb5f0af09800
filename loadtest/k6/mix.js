// Messages that live (issue 20): ROOMS rooms with MEMBERS members each,
// spread by the load balancer over the gateways. The first ACTIVE members of
// each room issue RATE operations per second per room in all (open loop),
// by default 70% `send`, 15% `react` (on/off toggles of a small emoji set on
// the room's recent messages), 10% `read` (the member's latest contiguous
// seq) and 5% `edit` (of its own recent messages); MIX changes the shares
// and may add `delete`. Every member checks that it gets every seq of the
// room's log (messages and the change events message_edited,
// message_deleted and reaction share one seq sequence) once and in order,
// up to the room's latest seq at the end (a `read` far past the end is
// clamped to it). k6 exits non-zero on a lost, repeated or out-of-order
// seq, a refused or unanswered op, a failed check, or an ack p99 over
// P99_MS. Mirrors `telepath-load mix`.
//
//   k6 run -e TELEPATH_URL=http://127.0.0.1:8080 -e ROOMS=10 -e MEMBERS=20 -e ACTIVE=5 -e RATE=20 loadtest/k6/mix.js

import exec from 'k6/execution';
import { check, fail } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { Client, createRoom, env, num, runId, sentAt, sleepMs, timedBody, user } from './lib/telepath.js';

const ROOMS = num('ROOMS', 2);
const MEMBERS = num('MEMBERS', 4);
const ACTIVE = Math.min(num('ACTIVE', 2), MEMBERS);
const RATE = num('RATE', 10);
const DURATION_S = num('DURATION_S', 5);
const BODY_BYTES = num('BODY_BYTES', 100);
const P99_MS = num('P99_MS', 500);
// Members join during the first JOIN_S seconds; ops start after it.
const JOIN_S = num('JOIN_S', 2);
// How long members wait after the last op for the last replies and events.
const DRAIN_S = num('DRAIN_S', 3);
const OPS = ['send', 'react', 'read', 'edit', 'delete'];
const MIX = parseMix(env('MIX', 'send=70,react=15,read=10,edit=5'));
const EMOJI = ['👍', '❤️', '😂', '🎉', '👀', '🙏'];
const LOG_KINDS = ['message', 'message_edited', 'message_deleted', 'reaction'];

const ack = new Trend('mix_ack_ms', true);
const ackByOp = Object.fromEntries(OPS.map((op) => [op, new Trend(`mix_${op}_ack_ms`, true)]));
const deliveryMs = new Trend('mix_delivery_ms', true);
const issued = new Counter('mix_ops');
const acked = new Counter('mix_acked');
const refused = new Counter('mix_refused');
const raced = new Counter('mix_raced_delete');
const unanswered = new Counter('mix_unanswered');
const delivered = new Counter('mix_delivered');
const lost = new Counter('mix_lost');
const duplicated = new Counter('mix_duplicated');
const outOfOrder = new Counter('mix_out_of_order');
const receipts = new Counter('mix_receipts');

export const options = {
  scenarios: {
    members: { executor: 'per-vu-iterations', vus: ROOMS * MEMBERS, iterations: 1, exec: 'member', maxDuration: `${JOIN_S + DURATION_S + DRAIN_S + 60}s` },
  },
  thresholds: {
    checks: ['rate==1'],
    mix_ack_ms: [`p(99)<${P99_MS}`],
    mix_lost: ['count==0'],
    mix_duplicated: ['count==0'],
    mix_out_of_order: ['count==0'],
    mix_refused: ['count==0'],
    mix_unanswered: ['count==0'],
    mix_acked: ['count>0'],
  },
};

/** `send=70,react=15,...` as [[op, upto], ...] cumulative percentages. */
function parseMix(text) {
  let upto = 0;
  const out = [];
  for (const part of text.split(',')) {
    const [op, share] = part.split('=').map((s) => s.trim());
    if (!OPS.includes(op)) fail(`MIX: unknown op ${op}`);
    upto += Number(share);
    out.push([op, upto]);
  }
  if (upto !== 100) fail(`MIX adds up to ${upto}, not 100`);
  return out;
}

function pick() {
  const r = Math.random() * 100;
  for (const [op, upto] of MIX) if (r < upto) return op;
  return 'send';
}

export function setup() {
  const run = runId();
  const owner = user(`${run}-owner`);
  const rooms = [];
  for (let i = 0; i < ROOMS; i++) rooms.push(createRoom(owner.token, `${run}-room-${i}`));
  return { run, rooms };
}

export async function member(data) {
  // An exception in an iteration does not fail k6 by itself: a failed check does.
  try {
    await memberRun(data);
  } catch (e) {
    console.error(`member: ${e.message || e}`);
    check(e, { 'the member ran to the end': () => false });
  }
}

async function memberRun(data) {
  const i = exec.scenario.iterationInTest;
  const room = data.rooms[i % ROOMS];
  const rank = Math.floor(i / ROOMS);
  const me = user(`${data.run}-m${i}`);
  const client = await Client.connect(me.token);
  const deletes = MIX.some(([op, upto], k) => op === 'delete' && upto > (k ? MIX[k - 1][1] : 0));

  const seen = new Set();
  // The join's seq: the room's log starts above it for this member.
  let base = 0;
  let last = 0;
  let contiguous = 0;
  const recent = [];
  let mine = [];
  const reactions = {};
  client.on('receipt', (e) => {
    if (e.room === room) receipts.add(1);
  });
  for (const kind of LOG_KINDS) {
    client.on(kind, (e) => {
      if (e.room !== room) return;
      if (e.seq <= base || seen.has(e.seq)) {
        duplicated.add(1);
        return;
      }
      seen.add(e.seq);
      if (e.seq < last) outOfOrder.add(1);
      last = Math.max(last, e.seq);
      while (seen.has(contiguous + 1)) contiguous++;
      if (kind === 'message') {
        recent.push(e.id);
        if (recent.length > 32) recent.shift();
        if (e.body) deliveryMs.add(Date.now() - sentAt(e.body));
      } else if (kind === 'message_deleted') {
        const at = recent.indexOf(e.id);
        if (at >= 0) recent.splice(at, 1);
        mine = mine.filter((id) => id !== e.id);
      }
    });
  }
  const joined = await client.request({ type: 'join', room });
  base = joined.seq;
  contiguous = base;
  last = base;
  check(joined, { 'joined before any op': (d) => d.seq === 0 });

  const opsAt = exec.scenario.startTime + JOIN_S * 1000;
  await sleepMs(Math.max(0, opsAt - Date.now()));
  const answers = [];
  if (rank < ACTIVE) {
    const each = RATE / ACTIVE;
    const total = Math.round(each * DURATION_S);
    const phase = Math.random() * (1000 / each);
    for (let n = 0; n < total; n++) {
      await sleepMs(Math.max(0, opsAt + phase + (n * 1000) / each - Date.now()));
      let op = pick();
      if ((op === 'react' && !recent.length) || ((op === 'edit' || op === 'delete') && !mine.length) || (op === 'read' && contiguous <= base)) {
        op = 'send';
      }
      let frame;
      let toggled = null;
      if (op === 'send') frame = { type: 'send', room, body: timedBody(BODY_BYTES) };
      else if (op === 'react') {
        const id = recent[Math.floor(Math.random() * recent.length)];
        const e = Math.floor(Math.random() * EMOJI.length);
        const key = `${id} ${e}`;
        const on = !reactions[key];
        reactions[key] = on;
        toggled = key;
        frame = { type: 'react', room, id, emoji: EMOJI[e], on };
      } else if (op === 'read') frame = { type: 'read', room, seq: contiguous };
      else if (op === 'edit') frame = { type: 'edit', room, id: mine[Math.floor(Math.random() * mine.length)], body: timedBody(BODY_BYTES) };
      else {
        const id = mine.splice(Math.floor(Math.random() * mine.length), 1)[0];
        frame = { type: 'delete', room, id };
      }
      issued.add(1, { op });
      const t0 = Date.now();
      const asked = frame.seq;
      answers.push(
        client.request(frame, 30000).then(
          (d) => {
            const ms = Date.now() - t0;
            ack.add(ms, { op });
            ackByOp[op].add(ms);
            acked.add(1, { op });
            if (op === 'send') {
              mine.push(d.id);
              if (mine.length > 16) mine.shift();
            }
            if (op === 'read') check(d, { 'read cursor not behind the seq read': (x) => x.seq >= asked });
            else check(d, { 'a change names its seq': (x) => Number.isInteger(x.seq) && x.seq > 0 });
          },
          (err) => {
            const message = String(err.message || err);
            if (message.startsWith('no reply')) {
              unanswered.add(1, { op });
              return;
            }
            const code = message.split(':', 1)[0];
            if (deletes && code === 'not_found' && (op === 'react' || op === 'edit')) raced.add(1, { op });
            else refused.add(1, { op, code });
            if (toggled) reactions[toggled] = !reactions[toggled];
          },
        ),
      );
    }
    await Promise.all(answers);
  }
  refused.add(0);
  unanswered.add(0);

  // Until every member's ops are answered and the last events are in.
  const endAt = opsAt + (DURATION_S + DRAIN_S) * 1000;
  await sleepMs(Math.max(0, endAt - Date.now()));
  // The room's latest seq: a read past it is clamped to it.
  const end = await client.request({ type: 'read', room, seq: Number.MAX_SAFE_INTEGER });
  const latest = end.seq;
  check(latest, { 'the room log grew': (n) => n > base });
  let missing = 0;
  for (let seq = base + 1; seq <= latest; seq++) if (!seen.has(seq)) missing++;
  lost.add(missing);
  delivered.add(seen.size);
  duplicated.add(0);
  outOfOrder.add(0);
  client.close();
}
