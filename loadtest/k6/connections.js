// Connections: VUS clients connect one after another over RAMP_S seconds
// (a linear ramp) and stay connected, idle, until HOLD_S seconds after the
// ramp. Records the time from opening the socket to the `welcome` frame
// (the upgrade, the token check and the first frame), and fails when a
// connection is refused or dropped, or the p99 is over P99_CONNECT_MS.
//
//   k6 run -e TELEPATH_URL=... -e VUS=5000 -e RAMP_S=10 -e TELEPATH_JWT_SECRET=... loadtest/k6/connections.js
//
// With TELEPATH_JWT_SECRET the tokens are signed here (no login requests);
// without it every VU uses dev login.

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { Client, num, runId, sleepMs, user } from './lib/telepath.js';

const VUS = num('VUS', 20);
const RAMP_S = num('RAMP_S', 5);
const HOLD_S = num('HOLD_S', 5);
const P99_CONNECT_MS = num('P99_CONNECT_MS', 1000);

const connectMs = new Trend('connect_to_welcome_ms', true);
const dropped = new Counter('connections_dropped');
const failed = new Counter('connections_failed');

export const options = {
  scenarios: {
    idle: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: `${RAMP_S + HOLD_S + 60}s` },
  },
  thresholds: {
    checks: ['rate==1'],
    connect_to_welcome_ms: [`p(99)<${P99_CONNECT_MS}`],
    connections_dropped: ['count==0'],
    connections_failed: ['count==0'],
  },
};

export function setup() {
  return { run: runId() };
}

export default async function (data) {
  const i = exec.scenario.iterationInTest;
  const start = exec.scenario.startTime;
  await sleepMs(Math.max(0, start + (i * RAMP_S * 1000) / VUS - Date.now()));
  const me = user(`${data.run}-c${i}`);
  const t0 = Date.now();
  let client;
  try {
    client = await Client.connect(me.token, 30000);
  } catch (e) {
    failed.add(1);
    check(null, { 'connected': () => false });
    return;
  }
  connectMs.add(Date.now() - t0);
  check(client.welcome, { 'welcome names the user': (w) => w.user.name === me.user.name });
  let closedEarly = false;
  client.on('close', () => {
    closedEarly = true;
  });
  await sleepMs(Math.max(0, start + (RAMP_S + HOLD_S) * 1000 - Date.now()));
  if (closedEarly) dropped.add(1);
  dropped.add(0);
  failed.add(0);
  client.close();
}
