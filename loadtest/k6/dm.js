// Direct messages: PAIRS senders each send COUNT DMs (RATE per second) to
// their own recipient. Half the recipients are online from the start; the
// other half connect only after every DM was sent, and must get them all
// from their offline queue. Every recipient acks what it receives. k6
// exits non-zero when a DM is missing or repeated, a send is refused, a
// `delivered` flag is wrong, or a check fails.
//
//   k6 run -e TELEPATH_URL=... -e PAIRS=50 -e COUNT=20 loadtest/k6/dm.js

import exec from 'k6/execution';
import { check } from 'k6';
import http from 'k6/http';
import { Counter, Trend } from 'k6/metrics';
import { BASE, Client, auth, createRoom, env, num, runId, sentAt, sleepMs, timedBody, user } from './lib/telepath.js';

const PAIRS = num('PAIRS', 4);
const COUNT = num('COUNT', 10);
const RATE = num('RATE', 10);
const BODY_BYTES = num('BODY_BYTES', 100);
const JOIN_S = num('JOIN_S', 2);
const SEND_S = Math.ceil(COUNT / RATE) + 2;
const ONLINE = Math.ceil(PAIRS / 2);

// Send to receipt for online recipients; for the others it includes the offline wait.
const latency = new Trend('dm_latency_ms', true);
const offlineWait = new Trend('dm_offline_wait_ms', true);
const missing = new Counter('dm_missing');
const repeated = new Counter('dm_repeated');
const refused = new Counter('dm_refused');
const wrongFlag = new Counter('dm_wrong_delivered_flag');

export const options = {
  scenarios: {
    online: { executor: 'per-vu-iterations', vus: ONLINE, iterations: 1, exec: 'onlineRecipient' },
    senders: { executor: 'per-vu-iterations', vus: PAIRS, iterations: 1, exec: 'sender', startTime: `${JOIN_S}s` },
    offline: {
      executor: 'per-vu-iterations',
      vus: Math.max(1, PAIRS - ONLINE),
      iterations: 1,
      exec: 'offlineRecipient',
      startTime: `${JOIN_S + SEND_S}s`,
    },
  },
  thresholds: {
    checks: ['rate==1'],
    dm_missing: ['count==0'],
    dm_repeated: ['count==0'],
    dm_refused: ['count==0'],
    dm_wrong_delivered_flag: ['count==0'],
  },
};

export function setup() {
  const run = runId();
  // Recipients must exist before DMs name them. Dev login creates the user;
  // a token signed here creates nobody until it is used for a write, so
  // then every recipient joins one room (the first one creates it).
  let room = null;
  for (let i = 0; i < PAIRS; i++) {
    const r = user(`${run}-r${i}`);
    if (!env('TELEPATH_JWT_SECRET', '')) continue;
    if (room === null) {
      room = createRoom(r.token, `${run}-recipients`);
    } else {
      const j = http.post(`${BASE}/rooms/${room}/join`, null, auth(r.token, { name: 'POST /rooms/{id}/join' }));
      check(j, { 'recipient joined': (x) => x.status === 200 });
    }
  }
  return { run };
}

export async function sender(data) {
  const i = exec.scenario.iterationInTest;
  const online = i < ONLINE;
  const client = await Client.connect(user(`${data.run}-s${i}`).token);
  const start = Date.now();
  const sends = [];
  for (let n = 0; n < COUNT; n++) {
    await sleepMs(Math.max(0, start + (n * 1000) / RATE - Date.now()));
    const dm = { type: 'dm', to: `${data.run}-r${i}`, body: timedBody(BODY_BYTES), client_id: `${data.run}-${i}-${n}` };
    sends.push(
      client
        .request(dm, 30000)
        .then((d) => {
          if (d.delivered !== online) wrongFlag.add(1);
        })
        .catch(() => refused.add(1)),
    );
  }
  await Promise.all(sends);
  refused.add(0);
  wrongFlag.add(0);
  client.close();
}

/** Connects as recipient `i`, acks every DM from its sender, and counts them. */
async function receive(data, i, waitS, trend) {
  const client = await Client.connect(user(`${data.run}-r${i}`).token);
  const from = `${data.run}-s${i}`;
  const got = new Set();
  let done;
  const all = new Promise((resolve) => (done = resolve));
  client.on('dm', (dm) => {
    if (dm.from.name !== from) return;
    if (got.has(dm.id)) repeated.add(1);
    got.add(dm.id);
    trend.add(Date.now() - sentAt(dm.body));
    client.send({ type: 'ack', dm: dm.id });
    if (got.size === COUNT) done();
  });
  await Promise.race([all, sleepMs(waitS * 1000)]);
  missing.add(COUNT - got.size);
  repeated.add(0);
  check(got.size, { 'every DM arrived': (n) => n === COUNT });
  // Let the acks reach the api before the connection goes.
  await sleepMs(500);
  client.close();
}

export async function onlineRecipient(data) {
  await receive(data, exec.scenario.iterationInTest, JOIN_S + SEND_S + 10, latency);
}

export async function offlineRecipient(data) {
  const i = ONLINE + exec.scenario.iterationInTest;
  if (i >= PAIRS) return;
  await receive(data, i, 15, offlineWait);
}
