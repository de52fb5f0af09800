// The demo app in headless Chromium against a real all-in-one process.
//
//   node --experimental-websocket --test services/web/tests/browser.test.mjs
//
// Env: TELEPATH_BIN (default target/debug/telepath), CHROMIUM (default
// /usr/bin/chromium), TELEPATH_ARTIFACTS (where the screenshots go, default
// target/artifacts/browser). The pages run this tree's app and SDK (see
// serveTree). Two browser contexts (two users) log in and
// join one room; a message from one appears in the other; typing shows and
// clears; both show the other online; then the server is SIGKILLed and
// started again on the same port and database, and the pages reconnect by
// themselves and show the messages sent meanwhile, each once, in order.
// Messages that live: edits, deletes and reactions made while a user is
// away are there when they come back (after a reconnect: replayed in seq
// order; after a reload: from history); a thread reply; unread badges and
// seen-by; search; a DM conversation that survives reloads on both sides.
// Rooms people can run: an invitation into a private room arrives live and
// is accepted, and a kick takes the room off the kicked user's page at once;
// public rooms appear, change, turn private and close in another user's list
// without a reload, and an invite link (#join=…) brings them in; a profile
// edited by one user shows on another's card and follows changes live.
// Notifications and announcements: a mention made while a user was away
// rings the bell when they come back, its panel lists it and opens its room,
// a live one shows a toast; an admin's announcement shows as a banner until
// dismissed (on every tab, and after a reload), and the admin's form posts one;
// the admin makes an API key in the page (its secret shown once) and revokes it.
// Webhooks: with a key made in the page (webhooks and publish scopes, kept in
// the page's memory), the admin registers a webhook to a local receiver for
// message.created; a user's message reaches the receiver, signed with the
// secret the page showed once, and the page lists the delivery as delivered;
// the same key's notification (kind app) pops up on the user's page; the
// webhook is deleted in the page.
// Tokens stay out of URLs and logs: every page connects with a connect
// ticket (`/connect?ticket=`, a fresh one per reconnect; the SDK's default in
// a browser), and no WebSocket URL and nothing any page logs to its console
// carries a token; the SDK's REST send arrives as the message event.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { Telepath, TelepathRest, TelepathServer, verifyWebhook } from '../sdk/dist/index.js';
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

/** What every page did that could leak a token: its WebSocket URLs and its console lines. */
const audits = [];
/** Every token a page logged in with. */
const tokens = new Set();
const SESSION_KEY = 'telepath.session';
const JWT = /eyJ[\w-]*\.[\w-]+\.[\w-]+/;

/** The token of the page's session (localStorage). */
const sessionToken = (page) => page.evaluate((key) => JSON.parse(localStorage.getItem(key) ?? 'null')?.token ?? null, SESSION_KEY);

/**
 * A browser context on the tree's app, and a page whose errors (uncaught, or
 * refused by the CSP) are collected, and whose WebSocket URLs and console
 * lines go to its `audit`.
 */
async function newPage(viewport = { width: 1100, height: 720 }, context = null) {
  context ??= await browser.newContext({ viewport });
  if (!context.servesTree) {
    await serveTree(context);
    context.servesTree = true;
  }
  const page = await context.newPage();
  const errors = [];
  const audit = { wsUrls: [], console: [] };
  audits.push(audit);
  page.on('websocket', (ws) => audit.wsUrls.push(ws.url()));
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => {
    audit.console.push(`${m.type()}: ${m.text()}`);
    if (m.type() === 'error' && /Content.Security.Policy/i.test(m.text())) errors.push(new Error(m.text()));
  });
  return { context, page, errors, audit };
}

/** Asserts the page's WebSocket URLs so far each carry a ticket (distinct ones), never a token. */
function assertTickets(audit, token, atLeast = 1) {
  const urls = audit.wsUrls.filter((u) => new URL(u).pathname === '/connect');
  assert.ok(urls.length >= atLeast, `${urls.length} connects, expected ${atLeast} or more`);
  const tickets = urls.map((u) => new URL(u).searchParams.get('ticket'));
  for (const [i, u] of urls.entries()) {
    assert.match(tickets[i] ?? '', /^[A-Za-z0-9_-]{43}$/, `a ticket on ${u.replace(/\?.*/, '?…')}`);
    assert.equal(new URL(u).searchParams.get('token'), null, 'no token= on a WebSocket URL');
    assert.ok(!u.includes(token) && !JWT.test(u), 'no token in a WebSocket URL');
  }
  assert.equal(new Set(tickets).size, tickets.length, 'a fresh ticket per connect');
}

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  // root may log in as an admin (announcements).
  server = await startServer({ TELEPATH_DEV_ADMINS: 'root' });
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
  const { context, page, errors, audit } = await newPage(viewport);
  await page.goto(server.url);
  await page.getByTestId('login-name').fill(name);
  await page.getByTestId('login-submit').click();
  await page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  const token = await sessionToken(page);
  assert.match(token ?? '', JWT);
  tokens.add(token);
  return { context, page, errors, audit, token };
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

  // Each page connected with a ticket, and again with a fresh one after the restart.
  assertTickets(a.audit, a.token, 2);
  assertTickets(b.audit, b.token, 2);
  for (const { audit, token } of [a, b]) {
    for (const line of audit.console) assert.ok(!line.includes(token), 'no token in the console');
  }

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

// ---------------------------------------------------------------- messages that live

/** A message row of the main list (or of `scope`) holding `text`. */
const row = (page, text, scope = '#message-items') => page.locator(`${scope} > li[data-id]:not([data-id=""])`, { hasText: text });

/** Sends `body` from the composer and waits until it is committed on the page. */
async function say(page, body) {
  await page.getByTestId('message-input').fill(body);
  await page.getByTestId('message-send').click();
  await row(page, body).waitFor(WAIT); // pending rows have no id yet
}

/** Clicks one of a message's action buttons (they show on hover). */
async function act(page, text, action, scope) {
  const li = row(page, text, scope);
  await li.hover();
  await li.locator(`.actions button[data-action="${action}"]`).click();
}

async function openRoomIn(page, name) {
  await page.getByTestId('room-list').locator('li', { hasText: name }).click();
  await page.locator('#conv-title', { hasText: name }).waitFor(WAIT);
}

const roomIdOf = (page, name) => page.getByTestId('room-list').locator('li', { hasText: name }).getAttribute('data-room-id');

/** The reactions shown on a message: {emoji: [count, pressed]}. */
async function reactionsOf(page, text) {
  const chips = await row(page, text).locator('button.reaction').evaluateAll((els) =>
    els.map((e) => [e.dataset.emoji, Number(e.dataset.count), e.getAttribute('aria-pressed') === 'true']));
  return Object.fromEntries(chips.map(([emoji, count, pressed]) => [emoji, [count, pressed]]));
}

/** Waits until the reactions on a message are exactly `want`. */
async function waitReactions(page, text, want) {
  for (let i = 0; ; i++) {
    const got = await reactionsOf(page, text);
    try {
      assert.deepEqual(got, want);
      return;
    } catch (e) {
      if (i > 150) throw e;
    }
    await page.waitForTimeout(100);
  }
}

test('edits, deletes and reactions made while a user is away: the final state after a reconnect and after a reload', async () => {
  const a = await loggedIn('ada');
  await a.page.getByTestId('room-create-name').fill('living');
  await a.page.getByTestId('room-create-submit').click();
  await a.page.locator('#conv-title', { hasText: 'living' }).waitFor(WAIT);
  const roomId = await roomIdOf(a.page, 'living');
  const b = await loggedIn('ben');
  await openRoomIn(b.page, 'living');

  for (const body of ['first words', 'second thoughts', 'third time']) await say(a.page, body);
  for (const body of ['first words', 'second thoughts', 'third time']) await row(b.page, body).waitFor(WAIT);

  // Live: a reaction counts up on both pages, and a click on it toggles one's own.
  await act(a.page, 'first words', 'pick');
  await row(a.page, 'first words').locator('[data-testid="emoji-picker"] button[data-emoji="👍"]').click();
  await waitReactions(b.page, 'first words', { '👍': [1, false] });
  await row(b.page, 'first words').locator('button.reaction[data-emoji="👍"]').click();
  await waitReactions(b.page, 'first words', { '👍': [2, true] });
  await waitReactions(a.page, 'first words', { '👍': [2, true] });
  await row(b.page, 'first words').locator('button.reaction[data-emoji="👍"]').click();
  await waitReactions(a.page, 'first words', { '👍': [1, true] });
  await waitReactions(b.page, 'first words', { '👍': [1, false] });

  // Ben's connection goes away (the page stays).
  const benSeq = await b.page.evaluate((room) => window.telepath.lastSeq(room), roomId);
  await b.page.evaluate(() => window.telepath.close());
  await b.page.locator('[data-testid="connection-state"][data-state="closed"]').waitFor(WAIT);

  // Meanwhile Ada edits, deletes and reacts in the app, and Cara through the SDK.
  await act(a.page, 'first words', 'edit');
  await a.page.getByTestId('edit-input').fill('first words, edited');
  await a.page.getByTestId('edit-input').press('Enter');
  await row(a.page, 'first words, edited').getByTestId('edited').waitFor(WAIT);
  await act(a.page, 'second thoughts', 'delete');
  await a.page.locator('#message-items li.deleted').waitFor(WAIT);
  await row(a.page, 'first words, edited').locator('button.reaction[data-emoji="👍"]').click(); // takes hers back
  await act(a.page, 'third time', 'pick');
  await row(a.page, 'third time').locator('[data-testid="emoji-picker"] button[data-emoji="🎉"]').click();
  const { token } = await TelepathRest.login(server.url, 'cara');
  const cara = new Telepath({ url: server.wsUrl, token, reconnect: false });
  await cara.connect();
  await cara.join(roomId);
  const thirdId = await row(a.page, 'third time').getAttribute('data-id');
  await cara.react(roomId, thirdId, '👍', true);
  await cara.react(roomId, thirdId, '👀', true);
  const last = await cara.react(roomId, thirdId, '👀', false);
  assert.equal(last.count, 0);
  cara.close();
  await waitReactions(a.page, 'third time', { '🎉': [1, true], '👍': [1, false] });
  await waitReactions(a.page, 'first words, edited', {});
  assert.ok(last.seq > benSeq + 5, `the changes took seqs (${benSeq} -> ${last.seq})`);

  /** What Ben must see, whichever way he got it. */
  async function finalState(page) {
    await row(page, 'first words, edited').getByTestId('edited').waitFor(WAIT);
    const deleted = page.locator('#message-items li.deleted');
    await deleted.waitFor(WAIT);
    assert.equal(await deleted.locator('.body').textContent(), 'This message was deleted.');
    assert.equal(await row(page, 'second thoughts').count(), 0, 'the deleted body is gone');
    await waitReactions(page, 'third time', { '🎉': [1, false], '👍': [1, false] });
    await waitReactions(page, 'first words, edited', {});
    assert.deepEqual(await messageBodies(page), ['first words, edited', 'This message was deleted.', 'third time']);
  }

  // Ben's client connects again: the rejoin with since replays the changes in order.
  await b.page.evaluate(() => window.telepath.connect());
  await b.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  await finalState(b.page);
  await b.page.waitForFunction(([room, seq]) => window.telepath.lastSeq(room) === seq, [roomId, last.seq], WAIT);

  // Ben's page is closed, and opened again: the same state, from history this time.
  assert.deepEqual(b.errors, []);
  await b.page.close();
  const b2 = await newPage(undefined, b.context);
  await b2.page.goto(server.url);
  await b2.page.locator('#conv-title', { hasText: 'living' }).waitFor(WAIT);
  await finalState(b2.page);

  // Search finds the edit, not the deleted text.
  await a.page.getByTestId('search-input').fill('edited');
  await a.page.getByTestId('search-submit').click();
  const hit = a.page.getByTestId('search-result').first();
  await hit.waitFor(WAIT);
  assert.equal(await hit.locator('mark').first().textContent(), 'edited');
  assert.match(await hit.locator('.where').textContent(), /# living · ada/);
  await a.page.getByTestId('search-input').fill('thoughts');
  await a.page.getByTestId('search-submit').click();
  await a.page.locator('#search-note', { hasText: 'Nothing found' }).waitFor(WAIT);

  await a.page.screenshot({ path: path.join(ARTIFACTS, 'living.png') });
  await b2.page.screenshot({ path: path.join(ARTIFACTS, 'living-after-reload.png') });
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b2.errors, []);
  await a.context.close();
  await b.context.close();
});

test('a reply in a thread, an unread badge, seen-by, and a search', async () => {
  const f = await loggedIn('finn');
  await f.page.getByTestId('room-create-name').fill('lunch');
  await f.page.getByTestId('room-create-submit').click();
  await f.page.locator('#conv-title', { hasText: 'lunch' }).waitFor(WAIT);
  const g = await loggedIn('gina');
  await openRoomIn(g.page, 'lunch');

  await say(f.page, 'what about lunch');
  await row(g.page, 'what about lunch').waitFor(WAIT);

  // Finn answers in a thread.
  await act(f.page, 'what about lunch', 'reply');
  await f.page.getByTestId('thread-pane').waitFor(WAIT);
  await f.page.getByTestId('thread-input').fill('pizza at noon');
  await f.page.getByTestId('thread-send').click();
  await row(f.page, 'pizza at noon', '#thread-items').and(f.page.locator('[data-seq]:not([data-seq=""])')).waitFor(WAIT);

  // Gina sees the count on the parent, not the reply in the main list, and opens the thread.
  const link = row(g.page, 'what about lunch').getByTestId('thread-link');
  await link.filter({ hasText: '1 reply' }).waitFor(WAIT);
  assert.equal(await row(g.page, 'pizza at noon').count(), 0, 'replies stay in their thread');
  const threadRead = g.page.waitForResponse((r) => /\/rooms\/[^/]+\/messages\/[^/]+\/thread/.test(new URL(r.url()).pathname), WAIT);
  await link.click();
  assert.equal((await threadRead).status(), 200);
  await row(g.page, 'pizza at noon', '#thread-items').waitFor(WAIT);
  await g.page.getByTestId('thread-close').click();

  // Gina looks elsewhere; two messages make an unread badge on the room.
  await g.page.getByTestId('room-create-name').fill('elsewhere');
  await g.page.getByTestId('room-create-submit').click();
  await g.page.locator('#conv-title', { hasText: 'elsewhere' }).waitFor(WAIT);
  await say(f.page, 'are you there');
  await say(f.page, 'hello?');
  await say(f.page, 'never mind');
  const badge = g.page.getByTestId('room-list').locator('li', { hasText: 'lunch' }).getByTestId('unread');
  await badge.filter({ hasText: /^3$/ }).waitFor(WAIT);
  // A deleted message is not unread any more.
  await act(f.page, 'never mind', 'delete');
  await badge.filter({ hasText: /^2$/ }).waitFor(WAIT);
  assert.equal(await f.page.getByTestId('seen-by').isHidden(), true, 'nobody has seen the last message yet');

  // After a reload the badge comes from GET /rooms (which leaves the deleted message out too).
  await g.page.reload();
  await g.page.locator('#conv-title', { hasText: 'elsewhere' }).waitFor(WAIT);
  await badge.filter({ hasText: /^2$/ }).waitFor(WAIT);

  // Gina opens the room: her badge goes, and Finn sees that she has seen it.
  await openRoomIn(g.page, 'lunch');
  await badge.waitFor({ ...WAIT, state: 'detached' });
  await f.page.getByTestId('seen-by').filter({ hasText: 'Seen by gina' }).waitFor(WAIT);
  // And it survives Finn's reload (participants' read_seq).
  await f.page.reload();
  await f.page.locator('#conv-title', { hasText: 'lunch' }).waitFor(WAIT);
  await f.page.getByTestId('seen-by').filter({ hasText: 'Seen by gina' }).waitFor(WAIT);
  // Gina's other tab of the same room would count nothing: the server's count is 0 now.
  const { token } = await TelepathRest.login(server.url, 'gina');
  const rooms = await new TelepathRest({ baseUrl: server.url, token }).listRooms();
  const lunch = rooms.find((r) => r.name === 'lunch');
  assert.equal(lunch.unread, 0);
  assert.ok(lunch.read_seq >= 4, `read_seq ${lunch.read_seq}`);

  // A search by a prefix of a word finds the thread reply, highlighted.
  await f.page.getByTestId('search-input').fill('pizz');
  await f.page.getByTestId('search-submit').click();
  const hit = f.page.getByTestId('search-result').first();
  await hit.waitFor(WAIT);
  assert.equal(await hit.locator('mark').first().textContent(), 'pizza');
  assert.match(await hit.textContent(), /pizza at noon/);

  await f.page.screenshot({ path: path.join(ARTIFACTS, 'thread.png') });
  assert.deepEqual(f.errors, []);
  assert.deepEqual(g.errors, []);
  await f.context.close();
  await g.context.close();
});

test('a DM conversation survives a reload; an edit made while the reader is away is there when they are back', async () => {
  const i = await loggedIn('ivan');
  const h = await loggedIn('hana');
  // Ivan is online, so Hana's people list shows him: she opens a conversation.
  await person(h.page, 'ivan').click();
  await h.page.locator('#conv-title', { hasText: '@ ivan' }).waitFor(WAIT);
  await say(h.page, 'a private note');
  const fromHana = i.page.getByTestId('dm-list').locator('li[data-name="hana"]');
  await fromHana.getByTestId('unread').waitFor(WAIT);
  await fromHana.click();
  await row(i.page, 'a private note').waitFor(WAIT);

  // Ivan goes away (his page is closed); Hana edits the note and writes again.
  await i.page.close();
  await act(h.page, 'a private note', 'edit');
  await h.page.getByTestId('edit-input').fill('a private note, edited');
  await h.page.getByTestId('edit-input').press('Enter');
  await row(h.page, 'a private note, edited').getByTestId('edited').waitFor(WAIT);
  await say(h.page, 'and one more');

  // Hana reloads: the conversation is listed (GET /dms) and read back (GET /dms?with=).
  await h.page.reload();
  await h.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  const withIvan = h.page.getByTestId('dm-list').locator('li[data-name="ivan"]');
  await withIvan.filter({ hasText: 'you: and one more' }).waitFor(WAIT);
  const read = h.page.waitForResponse((r) => new URL(r.url()).pathname === '/dms' && new URL(r.url()).searchParams.has('with'), WAIT);
  await withIvan.click();
  assert.equal((await read).status(), 200);
  await row(h.page, 'a private note, edited').getByTestId('edited').waitFor(WAIT);
  await row(h.page, 'and one more').waitFor(WAIT);
  assert.deepEqual(await h.page.locator('#message-items > li[data-id] .body').allTextContents(), ['a private note, edited', 'and one more']);

  // Ivan is back: the edited note (and the new one) are there, each once.
  const i2 = await newPage(undefined, i.context);
  await i2.page.goto(server.url);
  await i2.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  await i2.page.getByTestId('dm-list').locator('li[data-name="hana"]').click();
  await row(i2.page, 'a private note, edited').getByTestId('edited').waitFor(WAIT);
  await row(i2.page, 'and one more').waitFor(WAIT);
  assert.deepEqual(await i2.page.locator('#message-items > li[data-id] .body').allTextContents(), ['a private note, edited', 'and one more']);

  // A delete reaches the other side live.
  await act(h.page, 'and one more', 'delete');
  await i2.page.locator('#message-items li.deleted').waitFor(WAIT);
  assert.equal(await row(i2.page, 'and one more').count(), 0);

  // DMs are searchable by both of their users.
  await i2.page.getByTestId('search-input').fill('private');
  await i2.page.getByTestId('search-submit').click();
  const hit = i2.page.getByTestId('search-result').first();
  await hit.waitFor(WAIT);
  assert.match(await hit.locator('.where').textContent(), /@ hana/);

  await i2.page.screenshot({ path: path.join(ARTIFACTS, 'dm.png') });
  assert.deepEqual(i.errors, []);
  assert.deepEqual(i2.errors, []);
  assert.deepEqual(h.errors, []);
  await h.context.close();
  await i.context.close();
});

// ---------------------------------------------------------------- rooms people can run

/** A room's entry in the sidebar lists (yours and public). */
const roomItem = (page, name) => page.getByTestId('room-list').locator('li[data-room-id]', { hasText: name });

test('an owner invites a user into a private room: the invite arrives live, is accepted, the two chat; a kick takes the room away at once', async () => {
  const o = await loggedIn('olga');
  const p = await loggedIn('pavel', { width: 390, height: 844 }); // a phone
  await p.page.evaluate(() => {
    window.sameDocument = true; // gone if the page reloads
  });

  // Olga creates a private room: Pavel's lists do not show it.
  await o.page.getByTestId('room-create-name').fill('hideout');
  await o.page.getByTestId('room-create-private').check();
  await o.page.getByTestId('room-create-submit').click();
  await o.page.locator('#conv-title', { hasText: 'hideout' }).waitFor(WAIT);
  const roomId = await roomItem(o.page, 'hideout').getAttribute('data-room-id');
  assert.equal(await o.page.getByTestId('my-rooms').locator(`li[data-room-id="${roomId}"][data-private="true"][data-role="owner"]`).count(), 1);
  assert.equal(await roomItem(p.page, 'hideout').count(), 0, 'a private room is not listed for others');

  // She invites Pavel by name from the room panel.
  await o.page.getByTestId('room-panel-open').click();
  await o.page.getByTestId('room-panel').waitFor(WAIT);
  await o.page.getByTestId('invite-user-input').fill('pavel');
  await o.page.getByTestId('invite-user-submit').click();
  await o.page.getByTestId('panel-status').filter({ hasText: 'Invited pavel.' }).waitFor(WAIT);

  // Pavel's inbox gets it live: a badge, then accept.
  await p.page.getByTestId('invite-count').filter({ hasText: /^1$/ }).waitFor(WAIT);
  await p.page.getByTestId('invite-badge').click();
  const invite = p.page.getByTestId('invite-list').locator('li[data-room-name="hideout"]');
  await invite.getByText('from olga').waitFor(WAIT);
  await invite.getByTestId('invite-accept').click();
  await p.page.locator('#conv-title', { hasText: 'hideout' }).waitFor(WAIT);
  await p.page.getByTestId('invite-badge').waitFor({ ...WAIT, state: 'hidden' });
  await p.page.getByTestId('my-rooms').locator(`li[data-room-id="${roomId}"][data-role="member"]`).waitFor(PRESENT);

  // The two chat.
  await say(p.page, 'thanks for having me');
  await row(o.page, 'thanks for having me').waitFor(WAIT);
  await say(o.page, 'welcome, pavel');
  await row(p.page, 'welcome, pavel').waitFor(WAIT);
  // Olga's panel lists him (live, from his join).
  const pavelThere = o.page.getByTestId('participant-list').locator('li[data-name="pavel"][data-role="member"]');
  await pavelThere.waitFor(WAIT);
  await o.page.screenshot({ path: path.join(ARTIFACTS, 'rooms-owner-panel.png') });
  // Pavel's panel shows who is who, and no moderation tools for a member.
  await p.page.getByTestId('room-panel-open').click();
  await p.page.getByTestId('participant-list').locator('li[data-name="olga"][data-role="owner"]').waitFor(WAIT);
  assert.equal(await p.page.getByTestId('room-settings').isHidden(), true);
  assert.equal(await p.page.locator('#sanction-box').isHidden(), true);
  assert.equal(await p.page.getByTestId('participant-list').locator('button[data-action="kick"]').count(), 0);

  // Olga kicks him: his page leaves the room at once, without a reload.
  await pavelThere.locator('button[data-action="kick"]').click();
  await p.page.getByTestId('banner').filter({ hasText: 'You were removed from # hideout by olga.' }).waitFor(WAIT);
  await p.page.locator('#conv-title', { hasText: 'Pick a room' }).waitFor(WAIT);
  assert.equal(await roomItem(p.page, 'hideout').count(), 0, 'the room left his lists');
  assert.equal(await p.page.locator('#message-items > li').count(), 0, 'its messages are off the screen');
  assert.equal(await p.page.getByTestId('message-input').isDisabled(), true);
  assert.equal(await p.page.getByTestId('room-panel').isHidden(), true, 'its panel closed too');
  assert.equal(await p.page.evaluate(() => window.sameDocument), true, 'no reload');
  assert.deepEqual(await p.page.evaluate(() => window.telepath.rooms()), [], 'the SDK forgot the room');
  await o.page.getByTestId('messages').getByText('pavel was removed by olga.').waitFor(WAIT);
  await pavelThere.waitFor({ ...WAIT, state: 'detached' });
  await o.page.getByTestId('audit-log').locator('li[data-action="kick"]', { hasText: 'olga removed pavel' }).waitFor(WAIT);
  // Nothing of the room reaches him any more.
  await say(o.page, 'after he left');
  await p.page.waitForTimeout(300);
  assert.equal(await p.page.getByText('after he left').count(), 0);

  await p.page.screenshot({ path: path.join(ARTIFACTS, 'rooms-kicked-phone.png') });
  assert.deepEqual(o.errors, []);
  assert.deepEqual(p.errors, []);
  await o.context.close();
  await p.context.close();
});

test('a user already on the page sees a new public room appear, change and go without a reload; an invite link brings them in', async () => {
  const q = await loggedIn('quinn');
  await q.page.evaluate(() => {
    window.sameDocument = true;
  });
  const r = await loggedIn('rosa');

  // Rosa creates a public room: it appears in Quinn's public rooms.
  await r.page.getByTestId('room-create-name').fill('greenhouse');
  await r.page.getByTestId('room-create-submit').click();
  await r.page.locator('#conv-title', { hasText: 'greenhouse' }).waitFor(WAIT);
  await q.page.getByTestId('public-rooms').locator('li', { hasText: 'greenhouse' }).waitFor(WAIT);

  // She renames it and gives it a topic: Quinn's list follows.
  await r.page.getByTestId('room-panel-open').click();
  await r.page.getByTestId('settings-name').fill('glasshouse');
  await r.page.getByTestId('settings-topic').fill('tomatoes and basil');
  await r.page.getByTestId('settings-save').click();
  await r.page.getByTestId('panel-status').filter({ hasText: 'Saved.' }).waitFor(WAIT);
  await r.page.locator('#conv-note', { hasText: 'tomatoes and basil' }).waitFor(WAIT);
  const renamed = q.page.getByTestId('public-rooms').locator('li', { hasText: 'glasshouse' });
  await renamed.waitFor(WAIT);
  assert.equal(await renamed.getAttribute('title'), 'tomatoes and basil');
  assert.equal(await roomItem(q.page, 'greenhouse').count(), 0);

  // It turns private: it leaves Quinn's list.
  await r.page.getByTestId('settings-private').check();
  await r.page.getByTestId('settings-save').click();
  await renamed.waitFor({ ...WAIT, state: 'detached' });

  // An invite link from the panel; Quinn opens it (the page's own URL with #join=…).
  await r.page.getByTestId('invite-link-create').click();
  const output = r.page.getByTestId('invite-link-output');
  await output.waitFor(WAIT);
  const link = await output.inputValue();
  assert.match(link, /#join=[A-Za-z0-9_-]{43}$/);
  await q.page.goto(link);
  await q.page.locator('#conv-title', { hasText: 'glasshouse' }).waitFor(WAIT);
  await q.page.getByTestId('my-rooms').locator('li[data-private="true"]', { hasText: 'glasshouse' }).waitFor(PRESENT);
  assert.equal(await q.page.evaluate(() => location.hash), '', 'the token leaves the URL');
  await say(q.page, 'came in through the link');
  await row(r.page, 'came in through the link').waitFor(WAIT);

  // Rosa closes it: it goes from Quinn's list too.
  await r.page.getByTestId('room-close').click();
  await r.page.getByTestId('room-close').click(); // confirm
  await q.page.getByTestId('messages').getByText('This room was closed by rosa.').waitFor(WAIT);
  await roomItem(q.page, 'glasshouse').waitFor({ ...WAIT, state: 'detached' });
  assert.equal(await q.page.evaluate(() => window.sameDocument), true, 'no reload');

  await q.page.screenshot({ path: path.join(ARTIFACTS, 'rooms-directory.png') });
  assert.deepEqual(q.errors, []);
  assert.deepEqual(r.errors, []);
  await q.context.close();
  await r.context.close();
});

test('profiles: a user edits theirs; another sees the card from a message, and it follows changes live', async () => {
  const s = await loggedIn('sana');
  await s.page.getByTestId('room-create-name').fill('studio');
  await s.page.getByTestId('room-create-submit').click();
  await s.page.locator('#conv-title', { hasText: 'studio' }).waitFor(WAIT);
  const t = await loggedIn('tomas');
  await openRoomIn(t.page, 'studio');
  await say(s.page, 'hello from sana');
  await row(t.page, 'hello from sana').waitFor(WAIT);

  // Sana edits her profile from her name in the top bar.
  await s.page.getByTestId('my-profile').click();
  await s.page.getByTestId('profile-edit-open').click();
  await s.page.getByTestId('profile-display-name').fill('Sana S.');
  await s.page.getByTestId('profile-bio').fill('draws and codes');
  await s.page.getByTestId('profile-abilities').fill('drawing, rust, drawing');
  await s.page.getByTestId('profile-avatar').fill('https://example.com/sana.png');
  await s.page.getByTestId('profile-save').click();
  const mine = s.page.getByTestId('profile-card');
  await mine.getByTestId('profile-name').filter({ hasText: 'Sana S.' }).waitFor(WAIT);
  assert.deepEqual(await mine.getByTestId('profile-abilities-list').locator('li').allTextContents(), ['drawing', 'rust']);
  await s.page.getByTestId('profile-close').click();

  // Tomas opens her card from her message.
  await row(t.page, 'hello from sana').locator('button.author').click();
  const card = t.page.getByTestId('profile-card');
  await card.getByTestId('profile-name').filter({ hasText: 'Sana S.' }).waitFor(WAIT);
  await card.getByText('@sana').waitFor(WAIT);
  assert.equal(await card.getByTestId('profile-bio-text').textContent(), 'draws and codes');
  assert.deepEqual(await card.getByTestId('profile-abilities-list').locator('li').allTextContents(), ['drawing', 'rust']);
  assert.equal(await card.getByTestId('profile-status').getAttribute('data-status'), 'online');
  // The avatar is on another origin: the page's CSP keeps images same-origin, so it is a link.
  assert.equal(await card.getByTestId('profile-avatar-link').getAttribute('href'), 'https://example.com/sana.png');
  assert.equal(await t.page.getByTestId('profile-edit-open').isHidden(), true, 'not his to edit');

  // She changes her display name: the open card follows (the profile event).
  await s.page.getByTestId('my-profile').click();
  await s.page.getByTestId('profile-edit-open').click();
  await s.page.getByTestId('profile-display-name').fill('Sana the Painter');
  await s.page.getByTestId('profile-save').click();
  await card.getByTestId('profile-name').filter({ hasText: 'Sana the Painter' }).waitFor(WAIT);

  await t.page.screenshot({ path: path.join(ARTIFACTS, 'rooms-profile.png') });
  await t.page.getByTestId('profile-close').click();
  assert.deepEqual(s.errors, []);
  assert.deepEqual(t.errors, []);
  await s.context.close();
  await t.context.close();
});

// ---------------------------------------------------------------- notifications and announcements

test('a mention made while away rings the bell; an announcement shows until dismissed, on every tab and after a reload', async () => {
  const roomName = 'bulletin';
  const ada = await TelepathRest.login(server.url, 'ada');
  const room = await new TelepathRest({ baseUrl: server.url, token: ada.token }).createRoom({ name: roomName });

  // Bob joins Ada's room in the app once, then his page closes: he is away.
  const b = await loggedIn('bob');
  await openRoomIn(b.page, roomName);
  // The next visit opens no room, so nothing is read just by coming back.
  await b.page.evaluate(() => localStorage.removeItem('telepath.room'));
  assert.deepEqual(b.errors, []);
  await b.page.close();

  // Meanwhile Ada mentions him, and an admin announces something.
  const adaTp = new Telepath({ url: server.wsUrl, token: ada.token, reconnect: false });
  await adaTp.connect();
  await adaTp.join(room.id);
  await adaTp.send(room.id, '@bob hello');
  const root = await TelepathRest.login(server.url, 'root', 'admin');
  assert.equal(root.user.role, 'admin');
  const first = await new TelepathRest({ baseUrl: server.url, token: root.token })
    .createAnnouncement({ title: 'Maintenance tonight', body: 'The server restarts at 22:00.', level: 'warning' });
  assert.equal(first.level, 'warning');

  // Bob is back: the bell shows the mention, the banner the announcement.
  const b2 = await newPage(undefined, b.context);
  await b2.page.goto(server.url);
  await b2.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  const bell = b2.page.locator('#bell');
  await b2.page.locator('#bell-count:not([hidden])').waitFor(WAIT);
  const unread = Number(await bell.getAttribute('data-unread'));
  assert.ok(unread >= 1, `the bell shows ${unread} unread`);
  assert.equal(await b2.page.locator('#bell-count').textContent(), String(unread));
  const banner = (page, title) => page.locator('#announcements .announcement', { hasText: title });
  await banner(b2.page, 'Maintenance tonight').waitFor(WAIT);
  assert.equal(await banner(b2.page, 'Maintenance tonight').getAttribute('data-level'), 'warning');
  assert.match(await banner(b2.page, 'Maintenance tonight').textContent(), /The server restarts at 22:00\.[\s\S]*root/);
  assert.equal(await b2.page.getByTestId('announce-section').isHidden(), true, 'no announcement form for a user');

  // The panel lists the mention, unread.
  await roomItem(b2.page, roomName).waitFor(PRESENT);
  await bell.click();
  await b2.page.locator('#notifications-panel').waitFor(WAIT);
  const mention = b2.page.locator('#notifications-panel .notification[data-kind="mention"]', { hasText: '@bob hello' });
  await mention.waitFor(WAIT);
  assert.equal(await mention.getAttribute('data-read'), 'false');
  assert.match(await mention.getAttribute('class'), /\bunread\b/);
  assert.equal(await mention.locator('.from').textContent(), 'ada');
  assert.equal(await mention.locator('.where').textContent(), `# ${roomName}`);
  await b2.page.screenshot({ path: path.join(ARTIFACTS, 'notifications.png') });

  // A live one: a toast for a few seconds, the badge goes up, the open panel lists it.
  await adaTp.send(room.id, '@bob are you there?');
  const toast = b2.page.locator('#toasts .toast', { hasText: '@bob are you there?' });
  await toast.waitFor(WAIT);
  assert.match(await toast.textContent(), /ada mentioned you/);
  await b2.page.locator(`#bell[data-unread="${unread + 1}"]`).waitFor(WAIT);
  await b2.page.locator('#notifications-panel .notification.unread', { hasText: 'are you there' }).waitFor(WAIT);
  await toast.waitFor({ state: 'detached', timeout: 9000 });

  // A click on the mention marks it read and opens its room.
  const mentionId = await mention.getAttribute('data-id');
  const marked = b2.page.waitForResponse((r) => new URL(r.url()).pathname === '/notifications/read', WAIT);
  await mention.click();
  const markedRes = await marked;
  assert.equal(markedRes.status(), 200);
  assert.deepEqual(JSON.parse(markedRes.request().postData()), { ids: [mentionId] });
  await b2.page.locator('#conv-title', { hasText: roomName }).waitFor(WAIT);
  await b2.page.locator('#notifications-panel').waitFor({ ...WAIT, state: 'hidden' });
  await b2.page.waitForFunction((n) => Number(document.getElementById('bell').dataset.unread) <= n, unread, WAIT);

  // Mark all read: the badge goes, and the server agrees.
  await bell.click();
  await b2.page.locator('#notifications-panel .notification', { hasText: 'are you there' }).waitFor(WAIT);
  await b2.page.getByTestId('notifications-read-all').click();
  await b2.page.locator('#bell[data-unread="0"]').waitFor(WAIT);
  await b2.page.locator('#bell-count').waitFor({ ...WAIT, state: 'hidden' });
  assert.equal(await b2.page.locator('#notifications-panel .notification.unread').count(), 0);
  const bobApi = new TelepathRest({ baseUrl: server.url, token: (await TelepathRest.login(server.url, 'bob')).token });
  const list = await bobApi.notifications();
  assert.equal(list.unread, 0);
  assert.ok(list.notifications.some((n) => n.kind === 'mention' && n.text.includes('@bob hello') && n.read === true), JSON.stringify(list));
  await b2.page.getByTestId('notifications-close').click();

  // An admin posts from the app's form: Bob's page shows it live.
  const r = await newPage();
  await r.page.addInitScript((session) => localStorage.setItem('telepath.session', session),
    JSON.stringify({ token: root.token, user: root.user, viaLogin: false }));
  await r.page.goto(server.url);
  await r.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  await r.page.getByTestId('announce-section').waitFor(WAIT);
  await r.page.getByTestId('announce-title').fill('New room');
  await r.page.getByTestId('announce-body').fill(`Say hi in # ${roomName}.`);
  await r.page.getByTestId('announce-level').selectOption('info');
  await r.page.getByTestId('announce-submit').click();
  await r.page.locator('#announce-status', { hasText: 'Posted.' }).waitFor(WAIT);
  await banner(r.page, 'New room').waitFor(WAIT);
  await banner(b2.page, 'New room').and(b2.page.locator('[data-level="info"]')).waitFor(WAIT);

  // The admin makes an API key in the page: its secret is shown once and works; revoked there, it is refused.
  assert.equal(await b2.page.getByTestId('apikeys-section').isHidden(), true, 'no API keys for a user');
  await r.page.getByTestId('apikeys-open').click();
  await r.page.getByTestId('apikey-name').fill('billing backend');
  await r.page.getByTestId('apikey-scope-presence').check();
  await r.page.getByTestId('apikey-submit').click();
  await r.page.getByTestId('apikey-secret-box').waitFor(WAIT);
  const secret = (await r.page.getByTestId('apikey-secret').textContent()) ?? '';
  assert.match(secret, /^tpk_[A-Za-z0-9_-]{43}$/);
  tokens.add(secret); // never in a WebSocket URL or a console line either
  const keyItem = r.page.locator('[data-testid="apikey-list"] li[data-revoked="false"]', { hasText: 'billing backend' });
  await keyItem.waitFor(WAIT);
  assert.match(await keyItem.textContent(), /publish, presence/);
  assert.ok(!(await r.page.getByTestId('apikey-list').textContent()).includes(secret), 'the list never shows a secret');
  const backend = new TelepathServer({ url: server.url, apiKey: secret });
  assert.deepEqual((await backend.presence([root.user.id])).online.map((u) => u.id), [root.user.id]);
  await r.page.screenshot({ path: path.join(ARTIFACTS, 'api-keys.png') });
  await r.page.getByTestId('apikey-secret-done').click();
  await r.page.getByTestId('apikey-secret-box').waitFor({ ...WAIT, state: 'hidden' });
  assert.equal(await r.page.getByTestId('apikey-secret').textContent(), '', 'the secret is gone from the page');
  const revoked = r.page.waitForResponse((res) => /^\/admin\/api-keys\/[^/]+$/.test(new URL(res.url()).pathname) && res.request().method() === 'DELETE', WAIT);
  await keyItem.getByTestId('apikey-revoke').click(); // asks again
  await keyItem.getByTestId('apikey-revoke').click();
  assert.equal((await revoked).status(), 204);
  await r.page.locator('[data-testid="apikey-list"] li[data-revoked="true"]', { hasText: 'billing backend' }).waitFor(WAIT);
  await assert.rejects(backend.presence([root.user.id]), (e) => e.status === 401 && e.message === 'revoked_api_key');

  // A second tab of Bob's; he dismisses the maintenance notice in the first: it goes from both.
  const b3 = await newPage(undefined, b.context);
  await b3.page.goto(server.url);
  await banner(b3.page, 'Maintenance tonight').waitFor(WAIT);
  await banner(b3.page, 'New room').waitFor(WAIT);
  await b2.page.screenshot({ path: path.join(ARTIFACTS, 'announcements.png') });
  const dismissed = b2.page.waitForResponse((res) => /^\/announcements\/[^/]+\/dismiss$/.test(new URL(res.url()).pathname), WAIT);
  await banner(b2.page, 'Maintenance tonight').locator('.dismiss').click();
  assert.equal((await dismissed).status(), 204);
  await banner(b2.page, 'Maintenance tonight').waitFor({ ...WAIT, state: 'detached' });
  await banner(b3.page, 'Maintenance tonight').waitFor({ ...WAIT, state: 'detached' });
  assert.equal(await banner(b3.page, 'New room').count(), 1, 'the other one stays');

  // After a reload it stays hidden; the other one is still there.
  const listed = b2.page.waitForResponse((res) => new URL(res.url()).pathname === '/announcements' && res.request().method() === 'GET', WAIT);
  await b2.page.reload();
  await b2.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);
  await banner(b2.page, 'New room').waitFor(WAIT);
  assert.equal((await listed).status(), 200);
  await b2.page.waitForTimeout(300);
  assert.equal(await banner(b2.page, 'Maintenance tonight').count(), 0, 'a dismissed announcement stays hidden');
  const active = await bobApi.announcements();
  assert.deepEqual(active.filter((a) => a.title === 'Maintenance tonight').map((a) => a.dismissed), [true]);
  assert.deepEqual(active.filter((a) => a.title === 'New room').map((a) => a.dismissed), [false]);

  adaTp.close();
  assert.deepEqual(b2.errors, []);
  assert.deepEqual(b3.errors, []);
  assert.deepEqual(r.errors, []);
  await b.context.close();
  await r.context.close();
});

/** A webhook receiver on 127.0.0.1: every request's headers and raw body. */
async function webhookReceiver() {
  const got = [];
  const srv = createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.writeHead(200).end();
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${srv.address().port}/telepath/events`,
    got,
    close: () => new Promise((resolve) => {
      srv.closeAllConnections();
      srv.close(resolve);
    }),
  };
}

test('an admin registers a webhook in the page: a message reaches the receiver, signed, and the page shows it delivered', async () => {
  const receiver = await webhookReceiver();
  try {
    const root = await TelepathRest.login(server.url, 'root', 'admin');
    const r = await newPage();
    await r.page.addInitScript((session) => localStorage.setItem('telepath.session', session),
      JSON.stringify({ token: root.token, user: root.user, viaLogin: false }));
    await r.page.goto(server.url);
    await r.page.locator('[data-testid="connection-state"][data-state="open"]').waitFor(WAIT);

    // A key with the webhooks and publish scopes, made in the page; the webhooks form appears with it.
    await r.page.getByTestId('apikeys-open').click();
    assert.equal(await r.page.getByTestId('webhook-form').isHidden(), true, 'no webhooks form without a key');
    await r.page.getByTestId('apikey-name').fill('events backend');
    await r.page.getByTestId('apikey-scope-webhooks').check();
    assert.equal(await r.page.getByTestId('apikey-scope-publish').isChecked(), true);
    await r.page.getByTestId('apikey-submit').click();
    await r.page.getByTestId('apikey-secret-box').waitFor(WAIT);
    const key = (await r.page.getByTestId('apikey-secret').textContent()) ?? '';
    assert.match(key, /^tpk_[A-Za-z0-9_-]{43}$/);
    tokens.add(key);
    await r.page.locator('[data-testid="apikey-list"] li', { hasText: 'events backend' }).getByText(/publish, webhooks/).waitFor(WAIT);
    await r.page.getByTestId('apikey-secret-done').click();
    await r.page.getByTestId('webhook-form').waitFor(WAIT);
    assert.equal(await r.page.locator('[data-testid="webhook-key"] option:checked').textContent(), 'events backend');
    const stored = await r.page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.ok(!stored.includes(key), 'the key is kept in memory only');

    // A webhook to the receiver for message.created (checked by default): its secret shown once.
    await r.page.getByTestId('webhook-url').fill(receiver.url);
    assert.equal(await r.page.getByTestId('webhook-event-message.created').isChecked(), true);
    const created = r.page.waitForResponse((res) => new URL(res.url()).pathname === '/api/webhooks' && res.request().method() === 'POST', WAIT);
    await r.page.getByTestId('webhook-submit').click();
    assert.equal((await created).status(), 201);
    await r.page.getByTestId('webhook-secret-box').waitFor(WAIT);
    const secret = (await r.page.getByTestId('webhook-secret').textContent()) ?? '';
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    tokens.add(secret);
    const hook = r.page.locator(`[data-testid="webhook-list"] li[data-url="${receiver.url}"]`);
    await hook.waitFor(WAIT);
    assert.match(await hook.textContent(), /message\.created/);
    assert.match(await hook.getByTestId('webhook-counts').textContent(), /pending 0 · dropped 0/);
    assert.ok(!(await r.page.getByTestId('webhook-list').textContent()).includes(secret), 'the list never shows the secret');
    const backend = new TelepathServer({ url: server.url, apiKey: key });
    const [registered] = await backend.listWebhooks();
    assert.deepEqual([registered?.url, registered?.events], [receiver.url, ['message.created']]);

    // A user sends a message in a room: it reaches the receiver, signed with that secret.
    const w = await loggedIn('wanda');
    await w.page.getByTestId('room-create-name').fill('hooked');
    await w.page.getByTestId('room-create-submit').click();
    await w.page.locator('#conv-title', { hasText: 'hooked' }).waitFor(WAIT);
    await say(w.page, 'ping the backend');
    const delivery = await (async () => {
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        const d = receiver.got.find((x) => x.headers['telepath-event'] === 'message.created');
        if (d) return d;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error('no delivery at the receiver');
    })();
    assert.equal(delivery.path, '/telepath/events');
    assert.equal(await verifyWebhook({ secret, body: delivery.body, signature: delivery.headers['telepath-signature'] }), true, 'signed with the secret the page showed');
    assert.equal(await verifyWebhook({ secret: key, body: delivery.body, signature: delivery.headers['telepath-signature'] }), false);
    const payload = JSON.parse(delivery.body.toString('utf8'));
    assert.equal(payload.type, 'message.created');
    assert.equal(payload.id, delivery.headers['telepath-event-id']);
    assert.equal(payload.data.body, 'ping the backend');
    assert.equal(payload.data.from.name, 'wanda');

    // The page shows the delivery delivered (its deliveries refresh by themselves while shown).
    const shown = hook.locator(`[data-testid="webhook-delivery-list"] li[data-id="${delivery.headers['telepath-delivery']}"]`);
    await shown.and(r.page.locator('[data-status="delivered"]')).waitFor(WAIT);
    assert.equal(await shown.getAttribute('data-event'), 'message.created');
    assert.match(await shown.textContent(), /delivered.*1 attempt.*HTTP 200/);
    await r.page.getByTestId('webhook-secret-done').click();
    assert.equal(await r.page.getByTestId('webhook-secret').textContent(), '', 'the secret is gone from the page');
    await hook.scrollIntoViewIfNeeded();
    await r.page.screenshot({ path: path.join(ARTIFACTS, 'webhooks.png') });

    // The same key sends Wanda a notification: her page pops it up as an app notification.
    const wanda = JSON.parse(await w.page.evaluate((k) => localStorage.getItem(k), SESSION_KEY)).user;
    const note = await backend.publishToUser(wanda.id, 'your export is ready', { kind: 'notification', as: 'exporter' });
    assert.equal(note.kind, 'app');
    const toast = w.page.locator('#toasts .toast[data-kind="app"]', { hasText: 'your export is ready' });
    await toast.waitFor(WAIT);
    assert.match(await toast.textContent(), /exporter notified you/);

    // Deleted in the page (two clicks): gone from the list and the server.
    const deleted = r.page.waitForResponse((res) => /^\/api\/webhooks\/[^/]+$/.test(new URL(res.url()).pathname) && res.request().method() === 'DELETE', WAIT);
    await hook.getByTestId('webhook-delete').click();
    await hook.getByTestId('webhook-delete').click();
    assert.equal((await deleted).status(), 204);
    await hook.waitFor({ ...WAIT, state: 'detached' });
    assert.deepEqual(await backend.listWebhooks(), []);

    assert.deepEqual(r.errors, []);
    assert.deepEqual(w.errors, []);
    await r.context.close();
    await w.context.close();
  } finally {
    await receiver.close();
  }
});

test("in a browser the SDK connects with a ticket by default; its REST client sends over POST /rooms/{id}/messages", async () => {
  const { context, page, errors, audit } = await newPage();
  await page.goto(server.url);
  const result = await page.evaluate(async () => {
    const { Telepath, TelepathRest } = await import('/sdk/index.js');
    const { token } = await TelepathRest.login(location.origin, 'uma');
    const rest = new TelepathRest({ baseUrl: location.origin, token });
    const room = await rest.createRoom({ name: 'defaults' });
    const tp = new Telepath({ url: location.origin, token }); // no auth option
    const got = new Promise((resolve) => tp.on('message', resolve));
    await tp.connect();
    await tp.join(room.id);
    const sent = await rest.sendMessage(room.id, 'posted over REST', { clientId: 'uma-1' });
    const seen = await got;
    tp.close();
    return { token, same: seen.id === sent.id && seen.body === sent.body && seen.seq === sent.seq };
  });
  tokens.add(result.token);
  assert.equal(result.same, true, 'the REST send arrived as the message event');
  assertTickets(audit, result.token, 1);
  assert.deepEqual(errors, []);
  await context.close();
});

test('no page put a token in a WebSocket URL or logged one to its console', () => {
  assert.ok(tokens.size >= 10, `${tokens.size} users logged in`);
  const connects = audits.flatMap((a) => a.wsUrls).filter((u) => new URL(u).pathname === '/connect');
  assert.ok(connects.length >= 20, `${connects.length} WebSocket connects seen`);
  for (const u of connects) {
    const params = new URL(u).searchParams;
    assert.match(params.get('ticket') ?? '', /^[A-Za-z0-9_-]{43}$/, 'every WebSocket URL carries a ticket');
    assert.equal(params.get('token'), null, 'no token= on a WebSocket URL');
  }
  const lines = audits.flatMap((a) => a.console);
  for (const text of [...connects, ...lines]) {
    assert.ok(!JWT.test(text), `a token in: ${text.replace(JWT, '<JWT>').slice(0, 200)}`);
    for (const token of tokens) assert.ok(!text.includes(token), 'a token in a URL or a console line');
  }
});

test('Swagger UI at /docs renders every operation of /openapi.json under the server CSP', async () => {
  // The binary's own /docs (not the tree's app): its files are embedded.
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  const errors = [];
  const foreign = [];
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(new Error(m.text()));
  });
  page.on('request', (r) => {
    const url = new URL(r.url());
    if (url.protocol.startsWith('http') && url.origin !== new URL(server.url).origin) foreign.push(r.url());
  });
  const response = await page.goto(`${server.url}/docs`);
  assert.equal(response.status(), 200);
  assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
  const doc = await (await fetch(`${server.url}/openapi.json`)).json();
  const operations = Object.values(doc.paths).reduce((n, item) => n + Object.keys(item).filter((k) => k !== 'parameters').length, 0);
  await page.locator('.opblock').first().waitFor(WAIT);
  await page.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n, operations, WAIT);
  assert.equal(await page.locator('.opblock').count(), operations, 'one block per operation');
  assert.ok(await page.getByText('/api/webhooks', { exact: true }).first().isVisible(), 'the webhook routes are listed');
  await page.screenshot({ path: path.join(ARTIFACTS, 'docs.png') });
  assert.deepEqual(errors.map(String), [], 'no script error and nothing refused by the CSP');
  assert.deepEqual(foreign, [], 'nothing fetched from another origin');
  const missing = await fetch(`${server.url}/docs/nope.js`);
  assert.equal(missing.status, 404);
  await context.close();
});
