// Handshakes per second in issue 24's shape: USERS virtual users, one per
// user (one token each), each opening CONNS connections to the gateway,
// INFLIGHT at a time, as fast as the server takes them, and holding them
// until every VU is done. A handshake is the socket's opening, the upgrade
// with the token check, and the `welcome`. handleSummary prints
// `handshakes_per_s`: connections opened / (last welcome - first open).
//
//   k6 run -e TELEPATH_URL=... -e TELEPATH_JWT_SECRET=... -e USERS=100 -e CONNS=100 loadtest/k6/handshakes.js
//
// Fails when a connection is refused or dropped before the end.

import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { Client, num, runId, sleepMs, user } from './lib/telepath.js';

const USERS = num('USERS', 10);
const CONNS = num('CONNS', 10);
const INFLIGHT = num('INFLIGHT', 2);
const HOLD_S = num('HOLD_S', 2);

const connectMs = new Trend('connect_to_welcome_ms', true);
const firstOpen = new Trend('first_open_epoch_ms');
const lastWelcome = new Trend('last_welcome_epoch_ms');
const opened = new Counter('connections_opened');
const dropped = new Counter('connections_dropped');
const failed = new Counter('connections_failed');

export const options = {
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(99)'],
  scenarios: {
    handshakes: { executor: 'per-vu-iterations', vus: USERS, iterations: 1, maxDuration: '300s' },
  },
  thresholds: {
    checks: ['rate==1'],
    connections_dropped: ['count==0'],
    connections_failed: ['count==0'],
  },
};

export function setup() {
  return { run: runId(), at: Date.now() + 1000 };
}

export default async function (data) {
  const me = user(`${data.run}-u${exec.vu.idInTest}`);
  // Every VU starts together, its token ready.
  await sleepMs(Math.max(0, data.at - Date.now()));
  const clients = [];
  let next = 0;
  let closedEarly = 0;
  const t0 = Date.now();
  firstOpen.add(t0);
  async function lane() {
    while (next < CONNS) {
      next += 1;
      const started = Date.now();
      try {
        const client = await Client.connect(me.token, 30000);
        connectMs.add(Date.now() - started);
        opened.add(1);
        client.on('close', () => {
          closedEarly += 1;
        });
        clients.push(client);
      } catch (e) {
        failed.add(1);
        console.warn(`user ${exec.vu.idInTest}: connection ${next}: ${e}`);
      }
    }
  }
  const lanes = [];
  for (let i = 0; i < INFLIGHT; i++) lanes.push(lane());
  await Promise.all(lanes);
  lastWelcome.add(Date.now());
  check(clients, { 'every connection opened': (c) => c.length === CONNS });
  await sleepMs(HOLD_S * 1000);
  dropped.add(closedEarly);
  failed.add(0);
  for (const c of clients) c.close();
}

export function handleSummary(data) {
  const m = data.metrics;
  const n = m.connections_opened ? m.connections_opened.values.count : 0;
  const span = m.last_welcome_epoch_ms && m.first_open_epoch_ms
    ? m.last_welcome_epoch_ms.values.max - m.first_open_epoch_ms.values.min
    : 0;
  const summary = {
    scenario: 'handshakes',
    users: USERS,
    conns_per_user: CONNS,
    inflight_per_user: INFLIGHT,
    opened: n,
    failed: m.connections_failed ? m.connections_failed.values.count : 0,
    handshakes_per_s: span > 0 ? Math.round((n * 1000) / span) : 0,
    p50_ms: m.connect_to_welcome_ms ? m.connect_to_welcome_ms.values.med : null,
    p99_ms: m.connect_to_welcome_ms ? m.connect_to_welcome_ms.values['p(99)'] : null,
  };
  return { stdout: `${JSON.stringify(summary)}\n` };
}
