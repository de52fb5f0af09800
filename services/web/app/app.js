// Telepath demo app: every feature of the SDK on one page, no framework.
// All user-provided text goes into the page through textContent only.

import { Telepath, TelepathRest, TelepathError } from '/sdk/index.js';

const SESSION_KEY = 'telepath.session';
const LAST_ROOM_KEY = 'telepath.room';
const HISTORY_PAGE = 50;
const TYPING_SHOWN_MS = 8000; // the server sends active:false after 6 s; a safety net
const REFRESH_PEOPLE_MS = 10000;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
};

/** App state: conversations keyed "room:<id>" or "dm:<user id>". */
const state = {
  session: null, // {token, user}
  tp: null,
  rest: null,
  rooms: new Map(), // id -> room
  joined: new Set(), // room ids this page joined
  conversations: new Map(), // key -> {messages: Map<seq|id, msg>, pending: Map<clientId, msg>, hasMore, unread}
  current: null,
  people: new Map(), // user id -> {id, name, status, text, last_seen}
  typing: new Map(), // room id -> Map<user id, {name, at}>
  timers: [],
};

// ---------------------------------------------------------------- session

function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    if (s && typeof s.token === 'string' && s.user && typeof s.user.id === 'string') return s;
  } catch {
    /* a damaged entry is ignored */
  }
  return null;
}

function tokenExp(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof json.exp === 'number' ? json.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/** The token for every (re)connect: a fresh dev login when it is about to expire. */
async function currentToken() {
  const s = state.session;
  if (tokenExp(s.token) - Date.now() < 60_000 && s.viaLogin) {
    try {
      const fresh = await TelepathRest.login(location.origin, s.user.name);
      s.token = fresh.token;
      localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    } catch {
      /* keep the old one; the server will say if it is no good */
    }
  }
  return s.token;
}

async function login(event) {
  event.preventDefault();
  const name = $('login-name').value.trim();
  $('login-error').textContent = '';
  try {
    const { token, user } = await TelepathRest.login(location.origin, name);
    start({ token, user, viaLogin: true });
  } catch (e) {
    $('login-error').textContent =
      e instanceof TelepathError && e.code === 'not_found'
        ? 'Dev login is off on this server: use a token.'
        : `Could not log in: ${e.message}`;
    if (e instanceof TelepathError && e.code === 'not_found') $('token-login').open = true;
  }
}

async function loginWithToken() {
  const token = $('login-token').value.trim();
  $('login-error').textContent = '';
  try {
    const rest = new TelepathRest({ baseUrl: location.origin, token });
    await rest.listRooms(); // proves the token
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    start({ token, user: { id: payload.sub, name: payload.name, role: payload.role }, viaLogin: false });
  } catch (e) {
    $('login-error').textContent = `That token does not work: ${e.message}`;
  }
}

function logout() {
  state.tp?.close();
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(LAST_ROOM_KEY);
  location.reload();
}

// ---------------------------------------------------------------- start

function start(session) {
  state.session = session;
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
  $('login').hidden = true;
  $('chat').hidden = false;
  $('me').textContent = session.user.name;
  state.rest = new TelepathRest({ baseUrl: location.origin, token: () => currentToken() });
  const url = new URL('/connect', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const tp = new Telepath({ url: url.href, token: () => currentToken() });
  state.tp = tp;
  window.telepath = tp; // for the console (and the browser test)

  tp.on('state', ({ state: s, attempt, delayMs }) => {
    const badge = $('connection');
    badge.dataset.state = s;
    badge.textContent =
      s === 'open' ? 'connected'
        : s === 'reconnecting' ? `reconnecting${attempt ? ` (#${attempt}${delayMs != null ? `, ${Math.round(delayMs / 100) / 10}s` : ''})` : ''}`
          : s;
    if (s === 'open') refreshPeople();
  });
  tp.on('message', onMessage);
  tp.on('dm', onDm);
  tp.on('typing', onTyping);
  tp.on('presence', onPresence);
  tp.on('member', (m) => {
    if (m.user.id === state.session.user.id) {
      if (m.action === 'left') {
        state.joined.delete(m.room);
        notice(`room:${m.room}`, 'You left this room (on another device). Open it again to rejoin.');
      }
      return;
    }
    if (m.action === 'joined') seen(m.user);
    notice(`room:${m.room}`, `${m.user.name} ${m.action === 'joined' ? 'joined' : 'left'} the room.`);
  });
  tp.on('broadcast', (b) => notice(state.current, `📢 ${b.from?.name ?? 'admin'}: ${b.body}`));
  tp.on('room_closed', (c) => {
    state.joined.delete(c.room);
    const room = state.rooms.get(c.room);
    if (room) room.is_active = false;
    notice(`room:${c.room}`, `This room was closed by ${c.by.name}.`);
    renderRooms();
  });
  tp.on('recovery', ({ room }) => {
    // Too much was missed for a replay: start again from the newest page.
    const conv = conversation(`room:${room}`);
    conv.messages.clear();
    conv.hasMore = true;
    loadHistory(room, { reset: true });
  });
  tp.on('bye', (b) => {
    if (b.reason === 'admin') notice(state.current, 'An admin disconnected you.');
  });
  tp.on('error', (e) => console.warn('telepath error', e));

  tp.connect().catch((e) => {
    $('connection').textContent = `cannot connect: ${e.message}`;
  });
  loadRooms();
  state.timers.push(setInterval(refreshPeople, REFRESH_PEOPLE_MS));
  state.timers.push(setInterval(renderPeople, 30_000)); // "last seen" ages
}

// ---------------------------------------------------------------- rooms

async function loadRooms() {
  try {
    const rooms = await state.rest.listRooms();
    for (const r of rooms) state.rooms.set(r.id, r);
    renderRooms();
    const last = localStorage.getItem(LAST_ROOM_KEY);
    if (!state.current && last && state.rooms.has(last)) openRoom(last);
  } catch (e) {
    notice(null, `Could not list rooms: ${e.message}`);
  }
}

function renderRooms() {
  const list = $('room-list');
  list.replaceChildren();
  const rooms = [...state.rooms.values()].filter((r) => r.is_active !== false)
    .sort((a, b) => a.name.localeCompare(b.name));
  for (const r of rooms) {
    const key = `room:${r.id}`;
    const unread = state.conversations.get(key)?.unread || 0;
    const li = el('li', { 'data-room-id': r.id, 'aria-current': String(state.current === key) },
      el('span', { text: `# ${r.name}` }),
      r.private ? el('span', { class: 'muted', text: '🔒' }) : null,
      unread ? el('span', { class: 'unread', text: String(unread) }) : null);
    li.addEventListener('click', () => openRoom(r.id));
    list.append(li);
  }
}

async function createRoom(event) {
  event.preventDefault();
  const input = $('room-create-name');
  const name = input.value.trim();
  if (!name) return;
  try {
    const room = await state.rest.createRoom({ name });
    state.rooms.set(room.id, room);
    input.value = '';
    renderRooms();
    await openRoom(room.id);
  } catch (e) {
    notice(state.current, `Could not create the room: ${e.message}`);
  }
}

async function openRoom(id) {
  closeMenu();
  const key = `room:${id}`;
  setCurrent(key);
  if (!state.joined.has(id)) {
    try {
      await state.tp.join(id);
      state.joined.add(id);
    } catch (e) {
      notice(key, `Could not join: ${e.message}`);
      return;
    }
  }
  const conv = conversation(key);
  if (conv.messages.size === 0) await loadHistory(id, { reset: true });
  refreshParticipants(id);
}

async function loadHistory(room, { reset = false } = {}) {
  const key = `room:${room}`;
  const conv = conversation(key);
  if (conv.loading) return;
  conv.loading = true;
  const seqs = [...conv.messages.keys()];
  const before = reset || seqs.length === 0 ? undefined : Math.min(...seqs);
  try {
    const page = await state.rest.history(room, { before, limit: HISTORY_PAGE });
    for (const m of page.messages) conv.messages.set(m.seq, m);
    conv.hasMore = page.has_more;
    if (state.current === key) renderMessages({ keepTop: before !== undefined });
  } catch (e) {
    notice(key, `Could not load history: ${e.message}`);
  } finally {
    conv.loading = false;
  }
}

// ---------------------------------------------------------------- conversations

function conversation(key) {
  let conv = state.conversations.get(key);
  if (!conv) {
    conv = { messages: new Map(), pending: new Map(), notices: [], hasMore: key.startsWith('room:'), unread: 0 };
    state.conversations.set(key, conv);
  }
  return conv;
}

function setCurrent(key) {
  state.current = key;
  if (key.startsWith('room:')) localStorage.setItem(LAST_ROOM_KEY, key.slice(5));
  const conv = conversation(key);
  conv.unread = 0;
  const [kind, id] = key.split(/:(.*)/s);
  if (kind === 'room') {
    const room = state.rooms.get(id);
    $('conv-title').textContent = room ? `# ${room.name}` : '# room';
    $('conv-note').textContent = room?.description || '';
  } else {
    const who = state.people.get(id);
    $('conv-title').textContent = `@ ${who?.name ?? 'direct message'}`;
    $('conv-note').textContent = 'Direct messages of this session; undelivered ones wait until they connect.';
  }
  $('message-input').disabled = false;
  $('composer').querySelector('button').disabled = false;
  renderRooms();
  renderPeople();
  renderMessages();
  renderTyping();
  $('message-input').focus();
}

function onMessage(m) {
  const key = `room:${m.room}`;
  const conv = conversation(key);
  conv.messages.set(m.seq, m);
  const typing = state.typing.get(m.room);
  if (typing?.delete(m.from.id)) renderTyping();
  seen(m.from);
  if (state.current === key) renderMessages({ stick: true });
  else if (m.from.id !== state.session.user.id) {
    conv.unread++;
    renderRooms();
  }
}

function onDm(d) {
  const me = state.session.user.id;
  const peer = d.from.id === me ? d.to : d.from.id;
  const key = `dm:${peer}`;
  const conv = conversation(key);
  conv.messages.set(d.id, d);
  seen(d.from);
  if (state.current === key) renderMessages({ stick: true });
  else if (d.from.id !== me) {
    conv.unread++;
    renderPeople();
  }
}

function notice(key, text) {
  if (!key) key = state.current;
  if (!key) {
    console.warn(text);
    return;
  }
  conversation(key).notices.push({ text, at: Date.now() });
  if (state.current === key) renderMessages({ stick: true });
}

function renderMessages({ stick = false, keepTop = false } = {}) {
  const box = $('messages');
  const items = $('message-items');
  const key = state.current;
  if (!key) return;
  const conv = conversation(key);
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const oldHeight = box.scrollHeight;
  const me = state.session.user.id;
  const sorted = [...conv.messages.values()].sort((a, b) =>
    a.seq != null && b.seq != null ? a.seq - b.seq : String(a.ts).localeCompare(String(b.ts)));
  // Notices go between the messages by time; pending sends last.
  const notices = [...conv.notices];
  const rows = [];
  for (const m of sorted) {
    const at = new Date(m.ts).getTime();
    while (notices.length && notices[0].at < at) rows.push(el('li', { class: 'notice', text: notices.shift().text }));
    rows.push(messageRow(m, m.from.id === me, false));
  }
  for (const n of notices) rows.push(el('li', { class: 'notice', text: n.text }));
  for (const p of conv.pending.values()) {
    if (!sorted.some((m) => p.id && m.id === p.id)) rows.push(messageRow(p, true, true));
  }
  items.replaceChildren(...rows);
  $('older').hidden = !key.startsWith('room:') || !conv.hasMore;
  if (keepTop) box.scrollTop = box.scrollHeight - oldHeight;
  else if (stick ? atBottom || rows.length < 3 : true) box.scrollTop = box.scrollHeight;
}

function messageRow(m, mine, pending) {
  const time = m.ts ? new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  const meta = pending ? `${m.from.name} · sending…` : `${m.from.name} · ${time}${m.seq != null ? ` · #${m.seq}` : ''}`;
  return el('li', {
    class: `${mine ? 'mine' : ''} ${pending ? 'pending' : ''}`.trim(),
    'data-seq': m.seq != null ? String(m.seq) : '',
    'data-id': m.id ?? '',
    'data-from': m.from.name,
  }, el('span', { class: 'meta', text: meta }), el('span', { class: 'body', text: m.body }));
}

async function send(event) {
  event.preventDefault();
  const input = $('message-input');
  const body = input.value;
  const key = state.current;
  if (!body.trim() || !key) return;
  input.value = '';
  const [kind, id] = key.split(/:(.*)/s);
  const conv = conversation(key);
  const clientId = globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const me = state.session.user;
  const pending = { body, from: { id: me.id, name: me.name }, clientId };
  conv.pending.set(clientId, pending);
  renderMessages({ stick: true });
  try {
    if (kind === 'room') {
      state.tp.stopTyping(id);
      const reply = await state.tp.send(id, body, { clientId });
      // The message event usually came first; if not, show the reply now.
      if (!conv.messages.has(reply.seq)) {
        conv.messages.set(reply.seq, { room: id, id: reply.id, seq: reply.seq, ts: reply.ts, body, kind: 'text', from: pending.from });
      }
    } else {
      const reply = await state.tp.dm(id, body, { clientId });
      if (!conv.messages.has(reply.id)) {
        conv.messages.set(reply.id, { id: reply.id, ts: reply.ts, body, from: pending.from, to: id });
      }
      if (!reply.delivered) notice(key, `${state.people.get(id)?.name ?? 'They'} will get it when they connect.`);
    }
  } catch (e) {
    notice(key, `Not sent (${e.code ?? 'error'}): ${e.message}`);
  } finally {
    conv.pending.delete(clientId);
    if (state.current === key) renderMessages({ stick: true });
  }
}

// ---------------------------------------------------------------- typing

function onInput() {
  const key = state.current;
  if (!key?.startsWith('room:')) return;
  const room = key.slice(5);
  if ($('message-input').value) state.tp.typing(room);
  else state.tp.stopTyping(room);
}

function onTyping(t) {
  if (t.user.id === state.session.user.id) return;
  let who = state.typing.get(t.room);
  if (!who) state.typing.set(t.room, (who = new Map()));
  if (t.active) who.set(t.user.id, { name: t.user.name, at: Date.now() });
  else who.delete(t.user.id);
  seen(t.user);
  renderTyping();
}

function renderTyping() {
  const box = $('typing');
  const key = state.current;
  const who = key?.startsWith('room:') ? state.typing.get(key.slice(5)) : null;
  const now = Date.now();
  const names = who ? [...who.values()].filter((w) => now - w.at < TYPING_SHOWN_MS).map((w) => w.name) : [];
  box.textContent =
    names.length === 0 ? ''
      : names.length === 1 ? `${names[0]} is typing…`
        : names.length <= 3 ? `${names.join(', ')} are typing…` : 'Several people are typing…';
}

// ---------------------------------------------------------------- presence

function seen(user) {
  if (!user || state.people.has(user.id)) return;
  state.people.set(user.id, { id: user.id, name: user.name, status: 'online' });
  renderPeople();
}

function onPresence(p) {
  const entry = state.people.get(p.user.id) ?? { id: p.user.id, name: p.user.name };
  entry.status = p.status;
  entry.text = p.text;
  entry.last_seen = p.last_seen;
  state.people.set(p.user.id, entry);
  if (p.user.id === state.session.user.id) {
    $('status-select').value = p.status === 'offline' ? 'online' : p.status;
    if (document.activeElement !== $('status-text')) $('status-text').value = p.text ?? '';
  }
  renderPeople();
}

async function refreshPeople() {
  if (!state.rest) return;
  try {
    const online = await state.rest.online();
    const ids = new Set(online.map((u) => u.id));
    for (const u of online) {
      const entry = state.people.get(u.id) ?? { id: u.id, name: u.name };
      // The list says who is connected; a chosen status comes from presence events.
      if (!entry.status || entry.status === 'offline') entry.status = u.status;
      if (u.text != null) entry.text = u.text;
      entry.last_seen = u.last_seen;
      state.people.set(u.id, entry);
    }
    for (const entry of state.people.values()) {
      if (!ids.has(entry.id) && entry.status !== 'offline') entry.status = 'offline';
    }
    renderPeople();
  } catch {
    /* the next tick tries again */
  }
  if (state.current?.startsWith('room:')) refreshParticipants(state.current.slice(5));
}

async function refreshParticipants(room) {
  try {
    const participants = await state.rest.participants(room);
    for (const p of participants) {
      const entry = state.people.get(p.user.id) ?? { id: p.user.id, name: p.user.name, status: 'offline' };
      if (p.online && entry.status === 'offline') entry.status = 'online';
      if (!p.online) entry.status = 'offline';
      state.people.set(p.user.id, entry);
    }
    renderPeople();
  } catch {
    /* not a member any more, or presence unreachable */
  }
}

function ago(ts) {
  const s = Math.max(0, Math.round((Date.now() - new Date(ts).getTime()) / 1000));
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ts).toLocaleDateString();
}

function renderPeople() {
  const list = $('presence-list');
  const me = state.session.user.id;
  const order = { online: 0, busy: 1, meditating: 2, away: 3, offline: 4 };
  const people = [...state.people.values()].sort((a, b) =>
    (a.id === me ? -1 : b.id === me ? 1 : 0) || (order[a.status] ?? 5) - (order[b.status] ?? 5) || a.name.localeCompare(b.name));
  list.replaceChildren(...people.map((p) => {
    const key = `dm:${p.id}`;
    const unread = state.conversations.get(key)?.unread || 0;
    const sub = p.status === 'offline'
      ? (p.last_seen ? `offline · last seen ${ago(p.last_seen)}` : 'offline')
      : `${p.status}${p.text ? ` · ${p.text}` : ''}`;
    const li = el('li', {
      'data-user-id': p.id, 'data-name': p.name, 'data-status': p.status ?? 'offline',
      'aria-current': String(state.current === key),
    },
    el('span', { class: 'dot', 'data-status': p.status ?? 'offline' }),
    el('span', {}, p.id === me ? `${p.name} (you)` : p.name, el('span', { class: 'sub', text: sub })),
    unread ? el('span', { class: 'unread', text: String(unread) }) : null);
    if (p.id !== me) li.addEventListener('click', () => { closeMenu(); setCurrent(key); });
    return li;
  }));
}

async function setStatus(event) {
  event?.preventDefault();
  const status = $('status-select').value;
  const text = $('status-text').value.trim() || undefined;
  try {
    await state.tp.setStatus(status, status === 'online' ? undefined : text);
  } catch (e) {
    notice(state.current, `Could not set the status: ${e.message}`);
  }
}

// ---------------------------------------------------------------- layout

function closeMenu() {
  $('chat').classList.remove('menu-open');
  $('menu').setAttribute('aria-expanded', 'false');
}

function toggleMenu() {
  const open = $('chat').classList.toggle('menu-open');
  $('menu').setAttribute('aria-expanded', String(open));
}

$('login-form').addEventListener('submit', login);
$('login-token-submit').addEventListener('click', loginWithToken);
$('logout').addEventListener('click', logout);
$('room-create').addEventListener('submit', createRoom);
$('composer').addEventListener('submit', send);
$('message-input').addEventListener('input', onInput);
$('message-input').addEventListener('blur', () => {
  if (state.current?.startsWith('room:')) state.tp.stopTyping(state.current.slice(5));
});
$('status-select').addEventListener('change', setStatus);
$('status-form').addEventListener('submit', setStatus);
$('older').addEventListener('click', () => state.current && loadHistory(state.current.slice(5)));
$('messages').addEventListener('scroll', () => {
  const key = state.current;
  if ($('messages').scrollTop === 0 && key?.startsWith('room:') && conversation(key).hasMore) loadHistory(key.slice(5));
});
$('menu').addEventListener('click', toggleMenu);
setInterval(renderTyping, 1000);

const saved = loadSession();
if (saved) start(saved);
else $('login').hidden = false;
