// Reconnect storm: CLIENTS members of one room receive what a publisher
// sends at RATE per second for DURATION_S. STORM_AT_S seconds in, every
// client drops its connection at once and comes back (within JITTER_MS)
// with `join` + `since` = the last seq it saw, as the SDK does. Each
// client must end with every seq of the room exactly once: k6 exits
// non-zero on any gap, repeat, `recovered:false`, or when the slowest
// client needs more than BACK_MS to be back (reconnected and rejoined).
//
//   k6 run -e TELEPATH_URL=... -e CLIENTS=2000 -e TELEPATH_JWT_SECRET=... loadtest/k6/reconnect.js

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { Client, createRoom, latestSeq, missingSeqs, num, publishAt, runId, sleepMs, user } from './lib/telepath.js';

const CLIENTS = num('CLIENTS', 20);
const RATE = num('RATE', 10);
const DURATION_S = num('DURATION_S', 10);
const JOIN_S = num('JOIN_S', 3);
const STORM_AT_S = num('STORM_AT_S', 4);
const JITTER_MS = num('JITTER_MS', 500);
const BACK_MS = num('BACK_MS', 10000);
const DRAIN_S = num('DRAIN_S', 3);

const back = new Trend('reconnect_back_ms', true);
const gaps = new Counter('reconnect_gaps');
const repeats = new Counter('reconnect_repeats');
const unrecovered = new Counter('reconnect_unrecovered');
const failed = new Counter('reconnect_failed');

export const options = {
  scenarios: {
    clients: { executor: 'per-vu-iterations', vus: CLIENTS, iterations: 1, exec: 'client' },
    publisher: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'publisher', startTime: `${JOIN_S}s` },
  },
  thresholds: {
    checks: ['rate==1'],
    reconnect_gaps: ['count==0'],
    reconnect_repeats: ['count==0'],
    reconnect_unrecovered: ['count==0'],
    reconnect_failed: ['count==0'],
    reconnect_back_ms: [`max<${BACK_MS}`],
  },
};

export function setup() {
  const run = runId();
  const owner = user(`${run}-owner`);
  return { run, room: createRoom(owner.token, `${run}-storm`) };
}

/** Connects and joins `room` after `since`; frames go to `onMessage`. */
async function attach(token, room, since, onMessage) {
  const client = await Client.connect(token, 30000);
  client.on('message', onMessage);
  const frame = { type: 'join', room };
  if (since !== undefined) frame.since = since;
  const joined = await client.request(frame, 30000);
  if (!joined.recovered) unrecovered.add(1);
  return client;
}

export async function client(data) {
  const me = user(`${data.run}-c${exec.scenario.iterationInTest}`);
  const seen = new Set();
  let last = 0;
  const onMessage = (m) => {
    if (m.room !== data.room) return;
    if (seen.has(m.seq)) repeats.add(1);
    seen.add(m.seq);
    last = Math.max(last, m.seq);
  };
  const start = exec.scenario.startTime;
  let conn = await attach(me.token, data.room, undefined, onMessage);
  await sleepMs(Math.max(0, start + STORM_AT_S * 1000 - Date.now()));
  // The storm: drop, and come back with what we saw.
  const dropped = Date.now();
  conn.close();
  await sleepMs(Math.random() * JITTER_MS);
  try {
    conn = await attach(me.token, data.room, last, onMessage);
    back.add(Date.now() - dropped);
  } catch (e) {
    failed.add(1);
    return;
  }
  await sleepMs(Math.max(0, start + (JOIN_S + DURATION_S + DRAIN_S) * 1000 - Date.now()));
  const latest = latestSeq(me.token, data.room);
  gaps.add(missingSeqs(seen, latest));
  repeats.add(0);
  unrecovered.add(0);
  failed.add(0);
  check(latest, { 'messages flowed through the storm': (n) => n > 0 });
  conn.close();
}

export async function publisher(data) {
  const me = user(`${data.run}-publisher`);
  const conn = await Client.connect(me.token);
  await conn.request({ type: 'join', room: data.room });
  const results = await publishAt(conn, data.room, RATE, DURATION_S, 100);
  check(results, { 'every send acked': (r) => r.every((x) => x.status === 'fulfilled') });
  conn.close();
}
