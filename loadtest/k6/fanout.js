// Room fan-out: ROOMS rooms with MEMBERS members each, spread by the load
// balancer over the gateways; one publisher per room sends RATE messages/s
// for DURATION. Each member records the latency from the send time carried
// in the body, and counts lost, repeated and out-of-order seqs against the
// room's history. k6 exits non-zero when any is not zero, when a check
// fails, or when the p99 latency is over P99_MS.
//
//   k6 run -e TELEPATH_URL=http://127.0.0.1:8080 -e ROOMS=10 -e MEMBERS=100 -e RATE=20 loadtest/k6/fanout.js
//
// A publisher is one connection: RATE above the gateways' per-connection
// limit (TELEPATH_MAX_RATE_PER_S, default 50) is refused with rate_limited.

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import {
  Client,
  createRoom,
  latestSeq,
  missingSeqs,
  num,
  publishAt,
  runId,
  sentAt,
  sleepMs,
  user,
} from './lib/telepath.js';

const ROOMS = num('ROOMS', 2);
const MEMBERS = num('MEMBERS', 5);
const RATE = num('RATE', 5);
const DURATION_S = num('DURATION_S', 10);
const BODY_BYTES = num('BODY_BYTES', 100);
const P99_MS = num('P99_MS', 250);
// Members join during the first JOIN_S seconds; publishers start after it.
const JOIN_S = num('JOIN_S', 3);
// How long members wait after the last send for the last deliveries.
const DRAIN_S = num('DRAIN_S', 3);

const latency = new Trend('fanout_latency_ms', true);
const delivered = new Counter('fanout_delivered');
const lost = new Counter('fanout_lost');
const duplicated = new Counter('fanout_duplicated');
const outOfOrder = new Counter('fanout_out_of_order');
const sent = new Counter('fanout_sent');
const acked = new Counter('fanout_acked');
const refused = new Counter('fanout_refused');

export const options = {
  scenarios: {
    members: { executor: 'per-vu-iterations', vus: ROOMS * MEMBERS, iterations: 1, exec: 'member' },
    publishers: {
      executor: 'per-vu-iterations',
      vus: ROOMS,
      iterations: 1,
      exec: 'publisher',
      startTime: `${JOIN_S}s`,
    },
  },
  thresholds: {
    checks: ['rate==1'],
    fanout_latency_ms: [`p(99)<${P99_MS}`],
    fanout_lost: ['count==0'],
    fanout_duplicated: ['count==0'],
    fanout_out_of_order: ['count==0'],
    fanout_refused: ['count==0'],
  },
};

export function setup() {
  const run = runId();
  const owner = user(`${run}-owner`);
  const rooms = [];
  for (let i = 0; i < ROOMS; i++) rooms.push(createRoom(owner.token, `${run}-room-${i}`));
  return { run, rooms };
}

export async function member(data) {
  const i = exec.scenario.iterationInTest;
  const room = data.rooms[i % ROOMS];
  const me = user(`${data.run}-m${i}`);
  const client = await Client.connect(me.token);
  const seen = new Set();
  let last = 0;
  client.on('message', (m) => {
    if (m.room !== room) return;
    if (seen.has(m.seq)) duplicated.add(1);
    else seen.add(m.seq);
    if (m.seq < last) outOfOrder.add(1);
    last = Math.max(last, m.seq);
    latency.add(Date.now() - sentAt(m.body));
  });
  const joined = await client.request({ type: 'join', room });
  check(joined, { 'joined before any message': (d) => d.seq === 0 });
  // Until the publishers are done, and the last deliveries are in.
  const endAt = exec.scenario.startTime + (JOIN_S + DURATION_S + DRAIN_S) * 1000;
  await sleepMs(Math.max(0, endAt - Date.now()));
  const latest = latestSeq(me.token, room);
  lost.add(missingSeqs(seen, latest));
  delivered.add(seen.size);
  duplicated.add(0);
  outOfOrder.add(0);
  check(latest, { 'the room got messages': (n) => n > 0 });
  client.close();
}

export async function publisher(data) {
  const i = exec.scenario.iterationInTest;
  const room = data.rooms[i];
  const me = user(`${data.run}-p${i}`);
  const client = await Client.connect(me.token);
  await client.request({ type: 'join', room });
  const results = await publishAt(client, room, RATE, DURATION_S, BODY_BYTES, `${data.run}-${i}`, () => sent.add(1));
  for (const r of results) {
    if (r.status === 'fulfilled') acked.add(1);
    else refused.add(1);
  }
  refused.add(0);
  client.close();
}
