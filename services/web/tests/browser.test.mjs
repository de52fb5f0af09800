// The demo app in headless Chromium against a real all-in-one process.
//
//   node --experimental-websocket --test services/web/tests/browser.test.mjs
//
// Env: TELEPATH_BIN (default target/debug/telepath), CHROMIUM (default
// /usr/bin/chromium), TELEPATH_ARTIFACTS (where the screenshots go, default
// target/artifacts/browser). Two browser contexts (two users) log in and
// join one room; a message from one appears in the other; typing shows and
// clears; both show the other online; then the server is SIGKILLed and
// started again on the same port and database, and the pages reconnect by
// themselves and show the messages sent meanwhile, each once, in order.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Telepath, TelepathRest } from '../sdk/dist/index.js';
import { repoRoot, startServer } from './server.mjs';

const ARTIFACTS = process.env.TELEPATH_ARTIFACTS ?? path.join(repoRoot, 'target/artifacts/browser');
const WAIT = { timeout: 15_000 };
// Elements that may sit in the closed drawer of the phone layout.
const PRESENT = { ...WAIT, state: 'attached' };

let server;
let browser;

const WEB = path.join(repoRoot, 'services/web');
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml' };

/**
 * The pages run the app and SDK of this tree (services/web/app and
 * sdk/dist), which the binary under test may embed an older build of; the
 * server's own headers (its Content-Security-Policy above all) are kept.
 */
async function serveTree(context) {
  await context.route((url) => url.pathname === '/' || /^\/(app|sdk)\/[^/]+$/.test(url.pathname), async (route) => {
    const { pathname } = new URL(route.request().url());
    const file = pathname === '/' ? path.join(WEB, 'app/index.html')
      : pathname.startsWith('/app/') ? path.join(WEB, 'app', path.basename(pathname))
        : path.join(WEB, 'sdk/dist', path.basename(pathname));
    const response = await route.fetch({ headers: { ...route.request().headers(), 'if-none-match': '' } });
    if (!existsSync(file)) return route.fulfill({ response });
    const headers = { ...response.headers() };
    delete headers.etag;
    delete headers['content-length'];
    headers['content-type'] = TYPES[path.extname(file)] ?? headers['content-type'];
    return route.fulfill({ status: 200, headers, body: readFileSync(file) });
  });
}

/** A browser context on the tree's app, and a page whose errors (uncaught, or refused by the CSP) are collected. */
async function newPage(viewport = { width: 1100, height: 720 }, context = null) {
  context ??= await browser.newContext({ viewport });
  if (!context.servesTree) {
    await serveTree(context);
    context.servesTree = true;
  }
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content.Security.Policy/i.test(m.text())) errors.push(new Error(m.text()));
  });
  return { context, page, errors };
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // LocalNetworkAccessChecks: a document served by a route (serveTree) counts
    // as public, and Chromium would then refuse its WebSocket to 127.0.0.1.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-features=LocalNetworkAccessChecks'],
  });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** A new browser context (its own storage: its own user) logged in as `name`. */
async function loggedIn(name, viewport = { width: 1100, height: 720 }) {
  const { context, page, errors } = await newPage(viewport);
  await page.goto(server.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  return { context, page, errors };
}

const committed = '[data-testid="messages"] li[data-seq]:not([data-seq=""])';
const messageBodies = (page) => page.locator(`${committed} .body`).allTextContents();
const messageSeqs = async (page) =>
  (await page.locator(committed).evaluateAll((els) => els.map((e) => e.dataset.seq))).map(Number);

const person = (page, name) => page.locator(`[data-testid="presence-list"] li[data-name="${name}"]`);

test('two users chat, type, see each other, and survive a server restart', async () => {
  const alice = 'alice';
  const bob = 'bob';
  const roomName = 'lobby';

  const a = await loggedIn(alice);
  await a.page.getByTestId('room-create-name').fill(roomName);
  await a.page.getByTestId('room-create-submit').click();
  await a.page.locator('#conv-title', { hasText: roomName }).waitFor(WAIT);

  const b = await loggedIn(bob, { width: 390, height: 844 }); // a phone
  await b.page.locator('#menu').click();
  await b.page.getByTestId('room-list').locator('li', { hasText: roomName }).click();
  await b.page.locator('#conv-title', { hasText: roomName }).waitFor(WAIT);

  // A message from one appears in the other.
  await b.page.getByTestId('message-input').fill('hello from bob');
  await b.page.getByTestId('message-send').click();
  await a.page.getByTestId('messages').getByText('hello from bob').waitFor(WAIT);
  await a.page.getByTestId('message-input').fill('hi bob');
  await a.page.getByTestId('message-send').click();
  await b.page.getByTestId('messages').getByText('hi bob').waitFor(WAIT);

  // Typing shows, then clears when the typist empties the box.
  await a.page.getByTestId('message-input').fill('typing something');
  await b.page.getByTestId('typing-indicator').getByText(`${alice} is typing`).waitFor(WAIT);
  await a.page.getByTestId('message-input').fill('');
  await b.page.locator('[data-testid="typing-indicator"]:empty').waitFor(PRESENT);

  // Both appear online, in each other's list; a chosen status travels.
  await person(a.page, bob).and(a.page.locator('[data-status="online"]')).waitFor(PRESENT);
  await person(b.page, alice).and(b.page.locator('[data-status="online"]')).waitFor(PRESENT);
  await b.page.getByTestId('status-text').fill('deep breaths');
  await b.page.getByTestId('status-select').selectOption('meditating');
  await person(a.page, bob).and(a.page.locator('[data-status="meditating"]')).waitFor(PRESENT);
  await person(a.page, bob).getByText('deep breaths').waitFor(PRESENT);

  // The server dies. Bob writes while it is down: the SDK holds the send.
  await server.kill();
  await a.page.locator('[data-testid="connection-state"]:not([data-state="open"])').waitFor(WAIT);
  await b.page.locator('[data-testid="connection-state"]:not([data-state="open"])').waitFor(WAIT);
  await b.page.getByTestId('message-input').fill('sent while the server was down');
  await b.page.getByTestId('message-send').click();
  await b.page.locator('[data-testid="messages"] li.pending').waitFor(WAIT);

  // It comes back; a third user posts at once, before the pages are back.
  await server.start();
  const { token } = await TelepathRest.login(server.url, 'carol');
  const roomId = await a.page.getByTestId('room-list').locator('li', { hasText: roomName }).getAttribute('data-room-id');
  const carol = new Telepath({ url: server.wsUrl, token, reconnect: false });
  await carol.connect();
  await carol.join(roomId);
  for (let i = 1; i <= 3; i++) await carol.send(roomId, `after the restart ${i}`);
  carol.close();

  await a.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  await b.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  const expected = [
    'hello from bob',
    'hi bob',
    'sent while the server was down',
    'after the restart 1',
    'after the restart 2',
    'after the restart 3',
  ];
  const shown = [];
  for (const { page } of [a, b]) {
    await page.getByTestId('messages').getByText('after the restart 3').waitFor(WAIT);
    await page.getByTestId('messages').getByText('sent while the server was down').waitFor(WAIT);
    const bodies = await messageBodies(page);
    // Bob's held message and Carol's race for the seqs after the restart.
    assert.deepEqual([...bodies].sort(), [...expected].sort(), 'every message once');
    assert.deepEqual(await messageSeqs(page), [1, 2, 3, 4, 5, 6], 'in seq order, no gap');
    assert.equal(await page.locator('[data-testid="messages"] li.pending').count(), 0);
    shown.push(bodies);
  }
  assert.deepEqual(shown[0], shown[1], 'both pages show one order');

  await a.page.screenshot({ path: path.join(ARTIFACTS, 'app.png') });
  await b.page.screenshot({ path: path.join(ARTIFACTS, 'app-phone.png') });
  assert.deepEqual(a.errors, [], 'no uncaught errors in the page');
  assert.deepEqual(b.errors, [], 'no uncaught errors in the page');
  await a.context.close();
  await b.context.close();
});

test('a message lost on the way to the page is read from history: shown in order, never acked past the hole', async () => {
  const { context, page, errors } = await newPage();
  // The gateway's frames pass through, but one message gets lost (as pub/sub between gateways may lose it).
  const LOST = 'lost on the way';
  const acks = [];
  await context.routeWebSocket(/\/connect/, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => {
      const f = JSON.parse(m);
      if (f.type === 'ack' && f.room) acks.push(f.seq);
      server.send(m);
    });
    server.onMessage((m) => {
      if (typeof m === 'string' && JSON.parse(m).body === LOST) return;
      ws.send(m);
    });
  });
  // The page's read of the hole waits until the test lets it through.
  let letThrough;
  const gate = new Promise((r) => (letThrough = r));
  const holeReads = [];
  await context.route((url) => url.pathname.endsWith('/messages') && url.searchParams.has('after'), async (route) => {
    holeReads.push(new URL(route.request().url()).search);
    await gate;
    await route.continue();
  });

  await page.goto(server.url);
  await page.getByTestId('login-name').fill('gwen');
  await page.getByTestId('login-submit').click();
  await page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  // The app's own first page of history (empty) must be in before anything is sent.
  const firstPage = page.waitForResponse((r) => {
    const u = new URL(r.url());
    return u.pathname.endsWith('/messages') && !u.searchParams.has('after');
  }, WAIT);
  await page.getByTestId('room-create-name').fill('lossy');
  await page.getByTestId('room-create-submit').click();
  await page.locator('#conv-title', { hasText: 'lossy' }).waitFor(WAIT);
  await firstPage;
  const roomId = await page.getByTestId('room-list').locator('li', { hasText: 'lossy' }).getAttribute('data-room-id');

  const { token } = await TelepathRest.login(server.url, 'hank');
  const hank = new Telepath({ url: server.wsUrl, token, reconnect: false });
  await hank.connect();
  await hank.join(roomId);
  const sent = [];
  for (const body of ['before the hole', LOST, 'after the hole']) sent.push((await hank.send(roomId, body)).seq);
  await page.getByTestId('messages').getByText('before the hole').waitFor(WAIT);
  await page.waitForTimeout(800); // longer than the ack window
  assert.deepEqual(await messageSeqs(page), [sent[0]], 'the message after the hole waits for it');
  assert.deepEqual(holeReads, [`?before=${sent[2]}&after=${sent[0]}&limit=500`]);
  assert.ok(acks.every((seq) => seq <= sent[0]), `acks ${acks} stay below the hole`);

  letThrough();
  await page.getByTestId('messages').getByText('after the hole').waitFor(WAIT);
  assert.deepEqual(await messageBodies(page), ['before the hole', LOST, 'after the hole']);
  assert.deepEqual(await messageSeqs(page), sent);
  await page.waitForFunction(([room, seq]) => window.telepath.lastSeq(room) === seq, [roomId, sent[2]], WAIT);
  // Once the hole is filled the cursor moves on to the last one.
  for (let i = 0; i < 100 && acks.at(-1) !== sent[2]; i++) await page.waitForTimeout(50);
  assert.equal(acks.at(-1), sent[2]);
  hank.close();
  assert.deepEqual(errors, []);
  await context.close();
});

test('the app is served with its security headers, and unknown files are a JSON 404', async () => {
  const index = await fetch(server.url);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.match(index.headers.get('content-security-policy'), /script-src 'self'/);
  const etag = index.headers.get('etag');
  assert.ok(etag);
  assert.equal((await fetch(server.url, { headers: { 'if-none-match': etag } })).status, 304);
  const sdk = await fetch(`${server.url}/sdk/index.js`);
  assert.equal(sdk.status, 200);
  assert.match(sdk.headers.get('content-type'), /^text\/javascript/);
  for (const bad of ['/app/..%2F..%2FCargo.toml', '/app/../Cargo.toml', '/sdk/%2Fetc%2Fpasswd', '/app/nope.js']) {
    const r = await fetch(`${server.url}${bad}`);
    assert.equal(r.status, 404, bad);
    assert.equal((await r.json()).error.code, 'not_found');
  }
});

test('scroll-back pages through history, and a DM sent while offline waits for its reader', async () => {
  const erinName = 'erin';
  const daveName = 'dave';
  const { token } = await TelepathRest.login(server.url, erinName);
  await TelepathRest.login(server.url, daveName); // dave exists, and is offline
  const rest = new TelepathRest({ baseUrl: server.url, token });
  const room = await rest.createRoom({ name: 'archive' });
  const erin = new Telepath({ url: server.wsUrl, token, reconnect: false });
  await erin.connect();
  await erin.join(room.id);
  for (let i = 1; i <= 120; i++) await erin.send(room.id, `old ${i}`);
  const offline = await erin.dm(daveName, 'psst, read this when you are back');
  assert.equal(offline.delivered, false);

  const d = await loggedIn(daveName);
  // The DM from the offline queue: an unread mark on Erin, then the message.
  const fromErin = person(d.page, erinName);
  await fromErin.locator('.unread').waitFor(WAIT);
  await fromErin.click();
  await d.page.getByTestId('messages').getByText('psst, read this when you are back').waitFor(WAIT);
  const dmSeen = new Promise((resolve) => erin.on('dm', resolve));
  await d.page.getByTestId('message-input').fill('got it');
  await d.page.getByTestId('message-send').click();
  const answer = await dmSeen;
  assert.equal(answer.body, 'got it');
  assert.equal(answer.from.name, daveName);

  // The newest page first, then older pages on demand, until the start.
  await d.page.getByTestId('room-list').locator('li', { hasText: 'archive' }).click();
  await d.page.getByTestId('messages').getByText('old 120').waitFor(WAIT);
  assert.equal((await messageSeqs(d.page)).length, 50);
  const older = d.page.locator('#older');
  await older.click();
  await d.page.getByTestId('messages').getByText('old 21', { exact: true }).waitFor(WAIT);
  await older.click();
  await d.page.getByTestId('messages').getByText('old 1', { exact: true }).waitFor(WAIT);
  assert.deepEqual(await messageSeqs(d.page), Array.from({ length: 120 }, (_, i) => i + 1));
  await older.waitFor({ ...WAIT, state: 'hidden' });

  erin.close();
  assert.deepEqual(d.errors, []);
  await d.context.close();
});
