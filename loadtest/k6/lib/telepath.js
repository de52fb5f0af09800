// Telepath for k6 scripts: settings from the environment, dev login and
// rooms over REST, and a WebSocket client speaking the Telepath protocol
// (docs/PROTOCOL.md) with requests answered by `ref` as promises.
//
// k6 1.1 ships the standard WebSocket API as k6/experimental/websockets.

import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { check, fail } from 'k6';
import { WebSocket } from 'k6/experimental/websockets';
import { setTimeout, clearTimeout } from 'k6/timers';

/** A setting from the environment, or `dflt`. */
export function env(name, dflt) {
  const v = __ENV[name];
  return v === undefined || v === '' ? dflt : v;
}

/** A numeric setting from the environment, or `dflt`. */
export function num(name, dflt) {
  const v = Number(env(name, dflt));
  if (!Number.isFinite(v)) fail(`${name} must be a number`);
  return v;
}

/** Telepath's base URL (the load balancer or an all-in-one), without a trailing slash. */
export const BASE = env('TELEPATH_URL', 'http://127.0.0.1:8080').replace(/\/$/, '');
const WS_BASE = BASE.replace(/^http/, 'ws');
const JSON_HEADERS = { 'content-type': 'application/json' };

/** A unique prefix for the users and rooms of one run (so runs never share state). */
export function runId() {
  return env('RUN_ID', `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`);
}

/** The namespace of user ids derived from usernames (shared/src/protocol.rs). */
const USER_NAMESPACE = '6c1f5d1e8b0a4b7e9f3c2a4d5e6f7081';

/** A username's user id: UUID v5 in Telepath's namespace, as the api derives it. */
export function userId(username) {
  const name = unescape(encodeURIComponent(username));
  const bytes = new Uint8Array(16 + name.length);
  for (let i = 0; i < 16; i++) bytes[i] = parseInt(USER_NAMESPACE.substr(i * 2, 2), 16);
  for (let i = 0; i < name.length; i++) bytes[16 + i] = name.charCodeAt(i);
  const h = crypto.sha1(bytes.buffer, 'hex').substring(0, 32).split('');
  h[12] = '5';
  h[16] = ((parseInt(h[16], 16) & 0x3) | 0x8).toString(16);
  const hex = h.join('');
  return `${hex.substr(0, 8)}-${hex.substr(8, 4)}-${hex.substr(12, 4)}-${hex.substr(16, 4)}-${hex.substr(20)}`;
}

/**
 * `{token, user}` for `username`: a token signed here when
 * TELEPATH_JWT_SECRET is set (no request at all, so ramps of thousands of
 * connections do not wait on logins), else dev login.
 */
export function user(username) {
  const secret = env('TELEPATH_JWT_SECRET', '');
  if (!secret) return login(username);
  const id = userId(username);
  const b64 = (o) => encoding.b64encode(JSON.stringify(o), 'rawurl');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const unsigned = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: id, name: username, role: 'user', exp })}`;
  const token = `${unsigned}.${crypto.hmac('sha256', secret, unsigned, 'base64rawurl')}`;
  return { token, user: { id, name: username, role: 'user' } };
}

/** Dev login (`TELEPATH_DEV_LOGIN=1`): `{token, user}`. */
export function login(username) {
  const r = http.post(`${BASE}/auth/login`, JSON.stringify({ username }), {
    headers: JSON_HEADERS,
    tags: { name: 'POST /auth/login' },
  });
  if (!check(r, { 'login 200': (x) => x.status === 200 })) {
    fail(`login ${username}: ${r.status} ${r.body}`);
  }
  return r.json();
}

/** Headers for REST calls as `token`'s user. */
export function auth(token, extra) {
  return { headers: Object.assign({ authorization: `Bearer ${token}` }, JSON_HEADERS), tags: extra };
}

/** Creates a public room; returns its id. */
export function createRoom(token, name, maxParticipants) {
  const body = { name, max_participants: maxParticipants || 100000 };
  const r = http.post(`${BASE}/rooms`, JSON.stringify(body), auth(token, { name: 'POST /rooms' }));
  if (!check(r, { 'room created': (x) => x.status === 201 })) {
    fail(`create room: ${r.status} ${r.body}`);
  }
  return r.json('id');
}

/** The room's latest seq (0 when it has no message), from REST history. */
export function latestSeq(token, room) {
  const r = http.get(`${BASE}/rooms/${room}/messages?limit=1`, auth(token, { name: 'GET /rooms/{id}/messages' }));
  check(r, { 'history 200': (x) => x.status === 200 });
  const messages = r.json('messages') || [];
  return messages.length ? messages[messages.length - 1].seq : 0;
}

/** A message body of `bytes` bytes that starts with the send time in ms. */
export function timedBody(bytes) {
  const stamp = `${Date.now()}|`;
  return stamp + 'x'.repeat(Math.max(0, bytes - stamp.length));
}

/** The send time carried by a `timedBody`. */
export function sentAt(body) {
  return Number(body.split('|', 1)[0]);
}

/**
 * One Telepath connection. `await Client.connect(token)` resolves on
 * `welcome` (rejects on a refused handshake or an early close). Frames go to
 * handlers registered with `on(type, fn)`; `request(frame)` adds a `ref` and
 * resolves with the reply's `data` (rejects with its error).
 */
export class Client {
  constructor(token) {
    this.handlers = {};
    this.pending = {};
    this.nextRef = 0;
    this.closed = false;
    this.welcome = null;
    this.ws = new WebSocket(`${WS_BASE}/connect?token=${token}`);
  }

  static connect(token, timeoutMs) {
    const client = new Client(token);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no welcome in time')), timeoutMs || 10000);
      client.ws.onmessage = (e) => client.dispatch(JSON.parse(e.data));
      client.ws.onerror = (e) => {
        clearTimeout(timer);
        reject(new Error(`websocket error: ${e.error}`));
      };
      client.ws.onclose = (e) => {
        client.closed = true;
        clearTimeout(timer);
        (client.handlers.close || []).forEach((fn) => fn(e));
        for (const ref of Object.keys(client.pending)) {
          client.pending[ref].reject(new Error('closed'));
        }
        client.pending = {};
        reject(new Error('closed before welcome'));
      };
      client.on('welcome', (w) => {
        clearTimeout(timer);
        client.welcome = w;
        resolve(client);
      });
    });
  }

  on(type, fn) {
    (this.handlers[type] = this.handlers[type] || []).push(fn);
    return this;
  }

  dispatch(frame) {
    if (frame.type === 'reply' && this.pending[frame.ref]) {
      const p = this.pending[frame.ref];
      delete this.pending[frame.ref];
      clearTimeout(p.timer);
      if (frame.ok) p.resolve(frame.data);
      else p.reject(new Error(`${frame.error.code}: ${frame.error.message}`));
      return;
    }
    (this.handlers[frame.type] || []).forEach((fn) => fn(frame));
  }

  send(frame) {
    this.ws.send(JSON.stringify(frame));
  }

  request(frame, timeoutMs) {
    const ref = `r${++this.nextRef}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        delete this.pending[ref];
        reject(new Error(`no reply to ${frame.type} in time`));
      }, timeoutMs || 10000);
      this.pending[ref] = { resolve, reject, timer };
      this.send(Object.assign({ ref }, frame));
    });
  }

  close() {
    if (!this.closed) this.ws.close();
  }
}

/**
 * Sends RATE messages per second to `room` for `durationS` seconds, open
 * loop: each send at its own time, whether earlier ones are acked or not.
 * `onSend(n)` is called for each; resolves with every send's settled
 * result (`{status: 'fulfilled' | 'rejected'}`) once all are answered.
 */
export async function publishAt(client, room, rate, durationS, bodyBytes, clientIdPrefix, onSend) {
  const total = Math.round(rate * durationS);
  const start = Date.now();
  const acks = [];
  for (let n = 0; n < total; n++) {
    await sleepMs(Math.max(0, start + (n * 1000) / rate - Date.now()));
    if (onSend) onSend(n);
    const frame = { type: 'send', room, body: timedBody(bodyBytes) };
    if (clientIdPrefix) frame.client_id = `${clientIdPrefix}-${n}`;
    acks.push(client.request(frame, 30000));
  }
  return Promise.allSettled(acks);
}

/** How many of the seqs 1..=latest are not in `seen`. */
export function missingSeqs(seen, latest) {
  let missing = 0;
  for (let seq = 1; seq <= latest; seq++) if (!seen.has(seq)) missing++;
  return missing;
}

/** Resolves after `ms`. */
export function sleepMs(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
