// REST mix: VUS virtual users loop for DURATION_S over what a client app
// does besides WebSockets: list rooms, create one now and then, join the
// shared room, page its history (a writer fills it over WebSocket during
// the run), read participants, who is online and pending DMs. k6 exits
// non-zero on any unexpected status, a failed check, or a p99 over P99_MS.
//
//   k6 run -e TELEPATH_URL=... -e VUS=50 -e DURATION_S=60 loadtest/k6/rest.js

import exec from 'k6/execution';
import http from 'k6/http';
import { check } from 'k6';
import { BASE, Client, auth, createRoom, num, runId, sleepMs, timedBody, user } from './lib/telepath.js';

const VUS = num('VUS', 5);
const DURATION_S = num('DURATION_S', 10);
const P99_MS = num('P99_MS', 500);
const WRITE_RATE = num('WRITE_RATE', 20);

export const options = {
  scenarios: {
    readers: { executor: 'constant-vus', vus: VUS, duration: `${DURATION_S}s`, exec: 'reader' },
    writer: { executor: 'per-vu-iterations', vus: 1, iterations: 1, exec: 'writer' },
  },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{scenario:readers}': [`p(99)<${P99_MS}`],
  },
};

export function setup() {
  const run = runId();
  const owner = user(`${run}-owner`);
  return { run, room: createRoom(owner.token, `${run}-shared`) };
}

/** Status checks that name the route, so a failure says where. */
function ok(r, name, status) {
  return check(r, { [`${name} ${status || 200}`]: (x) => x.status === (status || 200) });
}

// Each VU logs in once and keeps its token.
let me;

export function reader(data) {
  me = me || user(`${data.run}-u${exec.vu.idInTest}`);
  const opts = (name) => auth(me.token, { name });
  ok(http.get(`${BASE}/rooms`, opts('GET /rooms')), 'GET /rooms');
  if (exec.vu.iterationInScenario % 10 === 0) {
    createRoom(me.token, `${data.run}-u${exec.vu.idInTest}-${exec.vu.iterationInScenario}`);
  }
  ok(http.post(`${BASE}/rooms/${data.room}/join`, null, opts('POST /rooms/{id}/join')), 'join');
  const latest = http.get(`${BASE}/rooms/${data.room}/messages?limit=50`, opts('GET /rooms/{id}/messages'));
  ok(latest, 'history');
  const page = latest.json('messages') || [];
  if (page.length) {
    // And one page further back.
    const before = page[0].seq;
    ok(http.get(`${BASE}/rooms/${data.room}/messages?before=${before}&limit=50`, opts('GET /rooms/{id}/messages')), 'older history');
  }
  ok(http.get(`${BASE}/rooms/${data.room}/participants`, opts('GET /rooms/{id}/participants')), 'participants');
  ok(http.get(`${BASE}/presence/online`, opts('GET /presence/online')), 'presence');
  ok(http.get(`${BASE}/dms/pending`, opts('GET /dms/pending')), 'pending DMs');
}

export async function writer(data) {
  const me = user(`${data.run}-writer`);
  const client = await Client.connect(me.token);
  await client.request({ type: 'join', room: data.room });
  const end = Date.now() + DURATION_S * 1000;
  while (Date.now() < end) {
    await client.request({ type: 'send', room: data.room, body: timedBody(100) });
    await sleepMs(1000 / WRITE_RATE);
  }
  client.close();
}
