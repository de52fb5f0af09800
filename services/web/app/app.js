// Telepath demo app: every feature of the SDK on one page, no framework.
// All user-provided text goes into the page through textContent only, and no
// style is set from script (the CSP allows same-origin scripts and styles only).

import { Telepath, TelepathRest, TelepathServer, TelepathError } from '/sdk/index.js';

const SESSION_KEY = 'telepath.session';
const LAST_ROOM_KEY = 'telepath.room';
const HISTORY_PAGE = 50;
const THREAD_PAGE = 500;
const TYPING_SHOWN_MS = 8000; // the server sends active:false after 6 s; a safety net
const REFRESH_PEOPLE_MS = 10000;
const REFRESH_ROOMS_MS = 15000;
const ROLE_RANK = { member: 0, moderator: 1, owner: 2 };
const AUDIT_PAGE = 20;
const READ_DELAY_MS = 150; // coalesces the read cursor of a burst of messages
const EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '👀'];
const NOTIFICATION_PAGE = 50;
const TOAST_MS = 5000;
const TOASTS_SHOWN = 4;
const KIND_LABEL = { mention: 'mention', reply: 'reply', reaction: 'reaction', invite: 'invite', dm: 'DM', app: 'app' };
const KIND_VERB = {
  mention: 'mentioned you', reply: 'replied to you', reaction: 'reacted to your message', invite: 'invited you', dm: 'sent you a message',
  app: 'notified you',
};
const DELIVERY_PAGE = 20;
const REFRESH_DELIVERIES_MS = 3000;
const LEVEL_RANK = { critical: 0, warning: 1, info: 2 };

const $ = (id) => document.getElementById(id);
/** Replaces a node's children, skipping null and undefined (replaceChildren would write them as text). */
const fill = (node, ...children) => node.replaceChildren(...children.filter((c) => c != null));
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null) continue;
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
  // key -> {messages: Map<id, msg>, pending: Map<clientId, msg>, notices, hasMore, unread, ...}
  conversations: new Map(),
  current: null,
  people: new Map(), // user id -> {id, name, status, text, last_seen}
  typing: new Map(), // room id -> Map<user id, {name, at}>
  reads: new Map(), // room id -> Map<user id, {name, seq}>: read cursors (participants, receipts)
  dms: new Map(), // user id -> {user, last}: DM conversations (GET /dms and live)
  editing: null, // {key, id, draft}
  picker: null, // message id whose emoji picker is open
  thread: null, // {room, id, loading, error}
  search: null, // {q, offset, results, next}
  readTimers: new Map(), // room id -> timer
  timers: [],
  invites: new Map(), // invitation id -> invite (pending ones)
  profiles: new Map(), // user id -> profile, as last read or announced
  profileShown: null, // the user id (or name) whose card is open
  panel: null, // the room panel: {room, participants, bans, audit, auditMore, dirty, status}
  pendingLink: null, // an invite-link token from the URL (#join=...), joined once logged in
  roomClock: 0, // counts changes to state.rooms, so a GET /rooms answer does not undo a newer one
  roomTouched: new Map(), // room id -> roomClock of its latest change from an event or an action
  leftHere: new Set(), // rooms this page left (their member left event needs no notice)
  // Notifications as far as read (GET /notifications and live): id -> notification with `read`.
  notes: { items: new Map(), more: false, loaded: false, loading: false, error: null },
  announcements: new Map(), // id -> active announcement not dismissed
  dismissed: new Set(), // announcement ids dismissed here or on another device
  // Admins: API keys with the webhooks scope made (or pasted) on this page, in memory only
  // (never in storage: a key's secret is shown once); and the webhooks one of them manages.
  hookKeys: new Map(), // key id -> {id, name, key}
  hookKey: null, // the key id in use
  hooks: { list: [], open: null, deliveries: [], error: null, timer: null, asked: 0 },
};

/** Marks a room as changed now: a GET /rooms asked before this does not overwrite it. */
const touchRoom = (id) => state.roomTouched.set(id, ++state.roomClock);

const me = () => state.session.user;

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
  // A connect ticket (POST /auth/ticket) before every connect: the token never goes in a URL.
  const tp = new Telepath({ url: url.href, token: () => currentToken(), auth: 'ticket' });
  state.tp = tp;
  window.telepath = tp; // for the console (and the browser test)

  let opened = 0;
  tp.on('state', ({ state: s, attempt, delayMs }) => {
    const badge = $('connection');
    badge.dataset.state = s;
    badge.textContent =
      s === 'open' ? 'connected'
        : s === 'reconnecting' ? `reconnecting${attempt ? ` (#${attempt}${delayMs != null ? `, ${Math.round(delayMs / 100) / 10}s` : ''})` : ''}`
          : s;
    if (s === 'open') {
      refreshPeople();
      loadInvites();
      loadAnnouncements();
      // Back after a drop: unread counts, DM conversations and read cursors may have moved meanwhile.
      if (opened++ > 0) {
        loadRooms();
        loadDms();
        if (state.current?.startsWith('dm:')) loadDmHistory(state.current.slice(3), { reset: true });
        if (state.current?.startsWith('room:')) scheduleRead(state.current.slice(5));
      }
    }
  });
  tp.on('message', onMessage);
  tp.on('message_edited', onEdited);
  tp.on('message_deleted', onDeleted);
  tp.on('reaction', onReaction);
  tp.on('receipt', onReceipt);
  tp.on('dm', onDm);
  tp.on('dm_updated', onDmUpdated);
  tp.on('typing', onTyping);
  tp.on('presence', onPresence);
  tp.on('member', onMember);
  tp.on('invite', onInvite);
  tp.on('room_created', onRoomCreated);
  tp.on('room_updated', onRoomUpdated);
  tp.on('profile', onProfile);
  tp.on('welcome', onWelcome);
  tp.on('notification', onNotification);
  tp.on('notifications_read', onNotificationsRead);
  tp.on('notifications_unread', renderBell);
  tp.on('announcement', onAnnouncement);
  tp.on('announcement_dismissed', ({ id }) => hideAnnouncement(id));
  tp.on('rejoin_error', ({ room, error }) => {
    // Closed, or we were removed while away: the SDK forgot it.
    state.joined.delete(room);
    const r = state.rooms.get(room);
    if (r && (error.code === 'not_found' || error.code === 'forbidden')) {
      touchRoom(room);
      delete r.role;
      if (r.private) state.rooms.delete(room);
      if (state.current === `room:${room}`) leaveView(room, `You are no longer in # ${r.name}.`);
      renderRooms();
    }
  });
  tp.on('broadcast', (b) => notice(state.current, `📢 ${b.from?.name ?? 'admin'}: ${b.body}`));
  tp.on('room_closed', (c) => {
    state.joined.delete(c.room);
    const room = state.rooms.get(c.room);
    if (room) room.is_active = false;
    touchRoom(c.room);
    // Public rooms' closings reach everyone: only a room this page has opened gets a notice.
    if (state.conversations.has(`room:${c.room}`)) notice(`room:${c.room}`, `This room was closed by ${c.by.name}.`);
    if (state.panel?.room === c.room) closePanel();
    if (state.current === `room:${c.room}`) {
      $('message-input').disabled = true;
      $('composer').querySelector('button').disabled = true;
      $('room-panel-open').hidden = true;
    }
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
  loadRooms().then(() => {
    if (state.pendingLink) {
      const token = state.pendingLink;
      state.pendingLink = null;
      joinByLink(token);
    }
  });
  loadDms();
  state.timers.push(setInterval(refreshPeople, REFRESH_PEOPLE_MS));
  // Rooms this page has not joined get no live messages: their unread counts come from GET /rooms.
  state.timers.push(setInterval(() => {
    loadRooms({ quiet: true });
    loadInvites(); // accepted or declined on another device
  }, REFRESH_ROOMS_MS));
  state.timers.push(setInterval(renderPeople, 30_000)); // "last seen" ages
  state.timers.push(setInterval(() => {
    renderAnnouncements(); // expired ones go
    if (!$('notifications-panel').hidden) renderNotifications(); // ages
  }, 30_000));
  renderAdmin();
}

// ---------------------------------------------------------------- rooms

async function loadRooms({ quiet = false } = {}) {
  try {
    const asked = state.roomClock;
    const rooms = await state.rest.listRooms();
    // The server's list is the truth (rooms closed, turned private or left meanwhile drop out),
    // except for rooms an event or an action changed since it was asked for.
    const newer = (id) => (state.roomTouched.get(id) ?? 0) > asked;
    const listed = new Set(rooms.map((r) => r.id));
    for (const id of [...state.rooms.keys()]) if (!listed.has(id) && !newer(id)) state.rooms.delete(id);
    for (const r of rooms) {
      if (!newer(r.id)) state.rooms.set(r.id, r);
      // The server counts what is above our read cursor; the room on screen is being read.
      const key = `room:${r.id}`;
      if (typeof r.unread === 'number') {
        conversation(key).unread = state.current === key ? 0 : r.unread;
        conversation(key).unreadIds.clear(); // counted by the server now
      }
      if (typeof r.unread === 'number') conversation(key).unreadCapped = r.unread_capped === true || r.unread >= 10000;
    }
    renderRooms();
    const last = localStorage.getItem(LAST_ROOM_KEY);
    if (!state.current && last && state.rooms.has(last) && !state.pendingLink) openRoom(last);
    if (state.current?.startsWith('room:')) updateTitle();
  } catch (e) {
    if (!quiet) notice(null, `Could not list rooms: ${e.message}`);
  }
}

/** Rooms the user takes part in carry their `role` (GET /rooms, GET /rooms/{id}); the others are public rooms to join. */
function renderRooms() {
  const rooms = [...state.rooms.values()].filter((r) => r.is_active !== false)
    .sort((a, b) => a.name.localeCompare(b.name));
  const item = (r) => {
    const key = `room:${r.id}`;
    const conv = state.conversations.get(key);
    const unread = conv?.unread || 0;
    const li = el('li', {
      'data-room-id': r.id, 'data-role': r.role ?? '', 'data-private': String(r.private === true),
      'aria-current': String(state.current === key), title: r.topic || r.description || undefined,
    },
    el('span', { text: `# ${r.name}` }),
    r.private ? el('span', { class: 'muted', text: '🔒' }) : null,
    r.role === 'owner' || r.role === 'moderator' ? el('span', { class: `tag ${r.role}`, text: r.role }) : null,
    unread ? el('span', { class: 'unread', 'data-testid': 'unread', text: conv.unreadCapped ? `${unread}+` : String(unread) }) : null);
    li.addEventListener('click', () => openRoom(r.id));
    return li;
  };
  const mine = rooms.filter(isMember);
  const open = rooms.filter((r) => !isMember(r) && !r.private);
  $('my-rooms').replaceChildren(...(mine.length ? mine.map(item) : [el('li', { class: 'muted empty', text: 'None yet: create one or join one.' })]));
  $('public-rooms').replaceChildren(...(open.length ? open.map(item) : [el('li', { class: 'muted empty', text: 'No other public rooms.' })]));
}

async function createRoom(event) {
  event.preventDefault();
  const input = $('room-create-name');
  const name = input.value.trim();
  if (!name) return;
  try {
    const priv = $('room-create-private').checked;
    const room = await state.rest.createRoom(priv ? { name, private: true } : { name });
    mergeRoom({ role: 'owner', ...room });
    input.value = '';
    $('room-create-private').checked = false;
    renderRooms();
    await openRoom(room.id);
  } catch (e) {
    notice(state.current, `Could not create the room: ${e.message}`);
  }
}

async function openRoom(id) {
  closeMenu();
  const key = `room:${id}`;
  if (state.thread && state.thread.room !== id) closeThread();
  setCurrent(key);
  if (!state.joined.has(id)) {
    try {
      await state.tp.join(id);
      state.joined.add(id);
    } catch (e) {
      notice(key, e.code === 'forbidden' ? 'You are banned from this room.' : `Could not join: ${e.message}`);
      return;
    }
    const room = state.rooms.get(id);
    if (room && !room.role) {
      touchRoom(id);
      room.role = 'member'; // a participant now; GET /rooms/{id} says exactly
      renderRooms();
    }
    refreshRoom(id);
  }
  const conv = conversation(key);
  if (conv.messages.size === 0) await loadHistory(id, { reset: true });
  refreshParticipants(id);
  scheduleRead(id);
}

async function loadHistory(room, { reset = false } = {}) {
  const key = `room:${room}`;
  const conv = conversation(key);
  if (conv.loading) return;
  conv.loading = true;
  const seqs = [...conv.messages.values()].map((m) => m.seq).filter((s) => typeof s === 'number');
  const before = reset || seqs.length === 0 ? undefined : Math.min(...seqs);
  try {
    const page = await state.rest.history(room, { before, limit: HISTORY_PAGE });
    for (const m of page.messages) putMessage(conv, m);
    conv.hasMore = page.has_more;
    if (state.current === key) {
      renderMessages({ keepTop: before !== undefined });
      scheduleRead(room);
    }
  } catch (e) {
    notice(key, `Could not load history: ${e.message}`);
  } finally {
    conv.loading = false;
  }
}

/** The newest seq this page knows in a room (delivered by the SDK, or read from history). */
function latestSeq(room) {
  let seq = state.tp.lastSeq(room) ?? 0;
  for (const m of conversation(`room:${room}`).messages.values()) if (m.seq > seq) seq = m.seq;
  return seq;
}

/** Sends `read` for the room on screen (coalesced): its unread count goes to 0 and others see "seen by". */
function scheduleRead(room) {
  if (state.readTimers.has(room)) return;
  state.readTimers.set(room, setTimeout(() => {
    state.readTimers.delete(room);
    if (state.current !== `room:${room}` || document.hidden || !state.joined.has(room)) return;
    const seq = latestSeq(room);
    if (seq > 0) state.tp.markRead(room, seq).catch(() => { /* the next view tries again */ });
  }, READ_DELAY_MS));
}

// ---------------------------------------------------------------- conversations

function conversation(key) {
  let conv = state.conversations.get(key);
  if (!conv) {
    conv = {
      messages: new Map(), pending: new Map(), notices: [], hasMore: key.startsWith('room:'), unread: 0,
      unreadIds: new Set(), loaded: false,
    };
    state.conversations.set(key, conv);
  }
  return conv;
}

/**
 * Stores a message as the server says it is now, keeping what only this page
 * knows: which reactions are ours (the socket's messages do not say).
 */
function putMessage(conv, m) {
  const old = conv.messages.get(m.id);
  const next = { ...m };
  if (next.deleted) delete next.body;
  if (old?.reactions && Array.isArray(next.reactions)) {
    next.reactions = next.reactions.map((r) => {
      if (r.me !== undefined) return { ...r };
      const was = old.reactions.find((o) => o.emoji === r.emoji);
      return was?.me !== undefined ? { ...r, me: was.me } : { ...r };
    });
  }
  // A parent read from the socket knows nothing of replies counted here.
  if (old && next.reply_count === undefined && old.reply_count) {
    next.reply_count = old.reply_count;
    next.last_reply_at = old.last_reply_at;
  }
  conv.messages.set(m.id, next);
  return next;
}

function setCurrent(key) {
  state.current = key;
  if (key.startsWith('room:')) localStorage.setItem(LAST_ROOM_KEY, key.slice(5));
  const conv = conversation(key);
  conv.unread = 0;
  conv.unreadIds.clear();
  conv.restUnread = 0;
  state.editing = null;
  state.picker = null;
  const [kind, id] = key.split(/:(.*)/s);
  if (kind === 'room') {
    updateTitle();
    if (state.panel && state.panel.room !== id) closePanel();
  } else {
    closePanel();
    const who = state.people.get(id) ?? state.dms.get(id)?.user;
    $('conv-title').textContent = `@ ${who?.name ?? 'direct message'}`;
    $('conv-note').textContent = 'Direct messages; undelivered ones wait until they connect.';
  }
  $('room-panel-open').hidden = kind !== 'room';
  $('message-input').disabled = false;
  $('composer').querySelector('button').disabled = false;
  renderRooms();
  renderDms();
  renderPeople();
  renderMessages();
  renderTyping();
  $('message-input').focus();
}

function onMessage(m) {
  const key = `room:${m.room}`;
  const conv = conversation(key);
  const isNew = !conv.messages.has(m.id);
  putMessage(conv, m);
  if (isNew && m.reply_to) {
    const parent = conv.messages.get(m.reply_to);
    if (parent) {
      parent.reply_count = (parent.reply_count ?? 0) + 1;
      parent.last_reply_at = m.ts;
    }
  }
  const typing = state.typing.get(m.room);
  if (typing?.delete(m.from.id)) renderTyping();
  seen(m.from);
  if (state.current === key) {
    renderMessages({ stick: true });
    scheduleRead(m.room);
  } else if (isNew && m.from.id !== me().id && !m.deleted) {
    conv.unread++;
    conv.unreadIds.add(m.id);
    renderRooms();
  }
  if (state.thread?.room === m.room && (m.reply_to === state.thread.id || m.id === state.thread.id)) renderThread({ stick: true });
}

/** The conversation key and stored message for a change event (room or DM). */
function changed(e) {
  if (e.room) {
    const key = `room:${e.room}`;
    return { key, m: conversation(key).messages.get(e.id) };
  }
  const id = e.dm ?? e.id;
  const peer = e.to === me().id ? e.by?.id : e.to;
  const key = peer ? `dm:${peer}` : null;
  return { key, m: key ? conversation(key).messages.get(id) : undefined };
}

/** Re-renders what shows the message `id` of conversation `key`. */
function rerender(key, id) {
  if (state.current === key) renderMessages();
  if (state.thread && key === `room:${state.thread.room}`) renderThread();
  if (key?.startsWith('dm:')) {
    const entry = state.dms.get(key.slice(3));
    if (entry?.last?.id === id) {
      entry.last = conversation(key).messages.get(id) ?? entry.last;
      renderDms();
    }
  }
}

function onEdited(e) {
  const { key, m } = changed(e);
  if (!m || m.deleted) return;
  m.body = e.body;
  m.edited_at = e.edited_at;
  rerender(key, e.id);
  if (e.room && state.current === key) scheduleRead(e.room);
}

function onDeleted(e) {
  const { key, m } = changed(e);
  if (!m) return;
  m.deleted = true;
  delete m.body;
  delete m.reactions;
  if (state.editing?.id === e.id) state.editing = null;
  // A deleted message is no longer unread (the server's count leaves it out too).
  const conv = conversation(key);
  if (e.room && conv.unreadIds.delete(e.id) && conv.unread > 0) {
    conv.unread--;
    renderRooms();
  }
  rerender(key, e.id);
  if (e.room && state.current === key) scheduleRead(e.room);
}

function onReaction(e) {
  const { key, m } = changed(e);
  if (e.room && state.current === key) scheduleRead(e.room);
  if (!m || m.deleted) return;
  applyReaction(m, e.emoji, e.count, e.user.id === me().id ? e.on : undefined);
  rerender(key, e.id);
}

/** Sets the absolute count of `emoji` on `m` (and whether it is ours, when known). */
function applyReaction(m, emoji, count, mine) {
  const list = Array.isArray(m.reactions) ? m.reactions.map((r) => ({ ...r })) : [];
  let r = list.find((x) => x.emoji === emoji);
  if (!r) {
    r = { emoji, count: 0 };
    list.push(r);
  }
  r.count = count;
  if (mine !== undefined) r.me = mine;
  m.reactions = list.filter((x) => x.count > 0);
}

function onReceipt(r) {
  let reads = state.reads.get(r.room);
  if (!reads) state.reads.set(r.room, (reads = new Map()));
  const was = reads.get(r.user.id);
  if (!was || r.seq > was.seq) reads.set(r.user.id, { name: r.user.name, seq: r.seq });
  if (r.user.id === me().id) {
    // Read on another device of ours.
    const key = `room:${r.room}`;
    if (state.current !== key && r.seq >= latestSeq(r.room)) {
      conversation(key).unread = 0;
      renderRooms();
    }
    return;
  }
  seen(r.user);
  if (state.current === `room:${r.room}`) renderSeenBy();
}

function dmPeer(d) {
  return d.from.id === me().id ? d.to : d.from.id;
}

/** Records a DM in its conversation and in the list of conversations. */
function putDm(d) {
  const peer = dmPeer(d);
  const key = `dm:${peer}`;
  const conv = conversation(key);
  const stored = putMessage(conv, d);
  const peerUser = d.from.id === me().id ? state.people.get(peer) ?? state.dms.get(peer)?.user : d.from;
  let entry = state.dms.get(peer);
  if (!entry) state.dms.set(peer, (entry = { user: peerUser ?? { id: peer, name: 'someone' }, last: stored }));
  if (peerUser && entry.user.name === 'someone') entry.user = { id: peer, name: peerUser.name };
  if (!entry.last || dmOrder(entry.last, stored) <= 0) entry.last = stored;
  return { key, conv, stored };
}

function onDm(d) {
  const { key, conv } = putDm(d);
  seen(d.from);
  if (state.current === key) renderMessages({ stick: true });
  else if (d.from.id !== me().id && !d.deleted) {
    conv.unreadIds.add(d.id);
    renderPeople();
  }
  renderDms();
}

function onDmUpdated(d) {
  const { key } = putDm(d);
  rerender(key, d.id);
  renderDms();
}

function dmOrder(a, b) {
  return String(a.ts).localeCompare(String(b.ts)) || String(a.id).localeCompare(String(b.id));
}

function dmUnread(conv) {
  return Math.max(conv.unreadIds.size, conv.restUnread ?? 0);
}

// ---------------------------------------------------------------- DM conversations

async function loadDms() {
  if (!state.rest) return;
  try {
    const convs = await state.rest.dmConversations();
    for (const c of convs) {
      const key = `dm:${c.user.id}`;
      const entry = state.dms.get(c.user.id);
      if (entry) entry.user = c.user;
      else state.dms.set(c.user.id, { user: c.user, last: null });
      if (c.last) putDm(c.last);
      // Unacked DMs are the ones the socket is (re)delivering: the larger count wins.
      if (state.current !== key) conversation(key).restUnread = c.unread ?? 0;
      if (!state.people.has(c.user.id)) state.people.set(c.user.id, { id: c.user.id, name: c.user.name, status: 'offline' });
    }
    renderDms();
    renderPeople();
  } catch (e) {
    console.warn('could not list DM conversations', e);
  }
}

function renderDms() {
  const list = $('dm-list');
  const entries = [...state.dms.values()].filter((e) => e.last)
    .sort((a, b) => dmOrder(b.last, a.last));
  list.replaceChildren(...entries.map((e) => {
    const key = `dm:${e.user.id}`;
    const conv = state.conversations.get(key);
    const unread = conv ? dmUnread(conv) : 0;
    const preview = e.last.deleted ? 'message deleted' : `${e.last.from.id === me().id ? 'you: ' : ''}${e.last.body ?? ''}`;
    const li = el('li', { 'data-user-id': e.user.id, 'data-name': e.user.name, 'aria-current': String(state.current === key) },
      el('span', {}, `@ ${e.user.name}`, el('span', { class: 'preview', text: preview })),
      unread ? el('span', { class: 'unread', 'data-testid': 'unread', text: String(unread) }) : null);
    li.addEventListener('click', () => openDm(e.user.id));
    return li;
  }));
}

async function openDm(peer) {
  closeMenu();
  closeThread();
  const key = `dm:${peer}`;
  setCurrent(key);
  if (!conversation(key).loaded) await loadDmHistory(peer, { reset: true });
}

/** A page of the conversation with `peer` (GET /dms?with=): the newest, or older than what is shown. */
async function loadDmHistory(peer, { reset = false } = {}) {
  const key = `dm:${peer}`;
  const conv = conversation(key);
  if (conv.loading) return;
  conv.loading = true;
  const shown = [...conv.messages.values()].sort(dmOrder);
  const before = reset || !conv.loaded || shown.length === 0 ? undefined : shown[0].id;
  try {
    const page = await state.rest.dmConversation(peer, { before, limit: HISTORY_PAGE });
    for (const d of page.messages) putDm(d);
    conv.hasMore = page.has_more;
    conv.loaded = true;
    if (state.current === key) renderMessages({ keepTop: before !== undefined });
    renderDms();
  } catch (e) {
    notice(key, `Could not load the conversation: ${e.message}`);
  } finally {
    conv.loading = false;
  }
}

// ---------------------------------------------------------------- rendering

function notice(key, text) {
  if (!key) key = state.current;
  if (!key) {
    showBanner(text);
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
  const isRoom = key.startsWith('room:');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const oldHeight = box.scrollHeight;
  // A room's main list shows the top-level messages; replies live in their thread.
  const sorted = [...conv.messages.values()].filter((m) => !(isRoom && m.reply_to))
    .sort((a, b) => (isRoom ? a.seq - b.seq : dmOrder(a, b)));
  // Notices go between the messages by time; pending sends last.
  const notices = [...conv.notices];
  const rows = [];
  for (const m of sorted) {
    const at = new Date(m.ts).getTime();
    while (notices.length && notices[0].at < at) rows.push(el('li', { class: 'notice', text: notices.shift().text }));
    rows.push(messageRow(key, m, {}));
  }
  for (const n of notices) rows.push(el('li', { class: 'notice', text: n.text }));
  for (const p of conv.pending.values()) {
    if (p.threadOf) continue;
    if (!sorted.some((m) => p.id && m.id === p.id)) rows.push(messageRow(key, p, { pending: true }));
  }
  items.replaceChildren(...rows);
  $('older').hidden = !conv.hasMore || (!isRoom && !conv.loaded);
  renderSeenBy();
  focusEditor(items);
  if (keepTop) box.scrollTop = box.scrollHeight - oldHeight;
  else if (stick ? atBottom || rows.length < 3 : true) box.scrollTop = box.scrollHeight;
}

/** "Seen by …" under a room's last message: the other participants whose read cursor reached it. */
function renderSeenBy() {
  const p = $('seen-by');
  const key = state.current;
  if (!key?.startsWith('room:')) {
    p.hidden = true;
    return;
  }
  const room = key.slice(5);
  const conv = conversation(key);
  let last = null;
  for (const m of conv.messages.values()) if (!m.reply_to && !m.deleted && (!last || m.seq > last.seq)) last = m;
  const reads = state.reads.get(room);
  const names = last && reads
    ? [...reads.entries()].filter(([id, r]) => id !== me().id && id !== last.from.id && r.seq >= last.seq).map(([, r]) => r.name).sort()
    : [];
  p.hidden = names.length === 0;
  p.textContent = names.length ? `Seen by ${names.join(', ')}` : '';
}

function isAdmin() {
  return (state.tp?.user?.role ?? me().role) === 'admin';
}

function messageRow(key, m, { pending = false, inThread = false, parent = false }) {
  const isRoom = key.startsWith('room:');
  const mine = m.from.id === me().id;
  const time = m.ts ? new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
  const meta = el('span', { class: 'meta' },
    pending ? `${m.from.name} · sending…` : el('button', { type: 'button', class: 'author', 'data-action': 'profile', 'data-user-id': m.from.id, text: m.from.name }),
    pending ? null : ` · ${time}${m.seq != null ? ` · #${m.seq}` : ''}`,
    m.edited_at && !m.deleted ? el('span', { class: 'edited', 'data-testid': 'edited', text: ' · (edited)' }) : null);
  const li = el('li', {
    class: [mine ? 'mine' : '', pending ? 'pending' : '', m.deleted ? 'deleted' : ''].filter(Boolean).join(' '),
    'data-seq': m.seq != null ? String(m.seq) : '',
    'data-id': m.id ?? '',
    'data-from': m.from.name,
    'data-key': key,
  }, meta);
  const editing = !pending && state.editing?.id === m.id && state.editing.key === key;
  if (editing) {
    li.classList.add('editing');
    const input = el('input', { class: 'edit-input', 'data-testid': 'edit-input', value: state.editing.draft, maxLength: 4096, 'aria-label': 'Edit the message' });
    li.append(el('form', { class: 'edit-form', 'data-action': 'edit-save' }, input,
      el('button', { type: 'submit', 'data-testid': 'edit-save', text: 'Save' }),
      el('button', { type: 'button', class: 'link', 'data-action': 'edit-cancel', text: 'Cancel' })));
  } else {
    li.append(el('span', { class: 'body', text: m.deleted ? 'This message was deleted.' : m.body ?? '' }));
  }
  if (pending || m.deleted) {
    if (!pending && isRoom && !inThread && m.reply_count) li.append(threadLink(m));
    return li;
  }
  if (isRoom && Array.isArray(m.reactions) && m.reactions.length) {
    li.append(el('div', { class: 'reactions', 'data-testid': 'reactions' }, ...m.reactions.map((r) =>
      el('button', {
        type: 'button', class: 'reaction', 'data-action': 'react', 'data-emoji': r.emoji,
        'aria-pressed': String(r.me === true), 'data-count': String(r.count), text: `${r.emoji} ${r.count}`,
        title: r.me ? 'Click to take your reaction back' : 'Click to react too',
      }))));
  }
  if (isRoom && !inThread && !parent && m.reply_count) li.append(threadLink(m));
  const actions = [];
  if (isRoom) actions.push(el('button', { type: 'button', 'data-action': 'pick', 'aria-label': 'Add a reaction', text: '☺ React' }));
  if (isRoom && !inThread && !parent && !m.reply_to) actions.push(el('button', { type: 'button', 'data-action': 'reply', text: 'Reply in thread' }));
  if (mine) actions.push(el('button', { type: 'button', 'data-action': 'edit', text: 'Edit' }));
  const room = isRoom ? state.rooms.get(key.slice(5)) : null;
  if (mine || (isRoom && canModerate(room))) {
    actions.push(el('button', { type: 'button', 'data-action': 'delete', text: 'Delete' }));
  }
  if (actions.length && !editing) li.append(el('div', { class: 'actions' }, ...actions));
  if (state.picker === m.id && isRoom) {
    li.append(el('div', { class: 'picker', 'data-testid': 'emoji-picker' }, ...EMOJI.map((e) =>
      el('button', { type: 'button', 'data-action': 'react-pick', 'data-emoji': e, text: e }))));
  }
  return li;
}

function threadLink(m) {
  const n = m.reply_count;
  return el('button', { type: 'button', class: 'thread-link', 'data-action': 'thread', 'data-testid': 'thread-link', text: `💬 ${n} ${n === 1 ? 'reply' : 'replies'}` });
}

/** Keeps the caret in the edit box across re-renders. */
function focusEditor(container) {
  const input = container.querySelector('.edit-input');
  if (!input || document.activeElement === input) return;
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

// ---------------------------------------------------------------- message actions

/** Clicks on the buttons of message rows (main list and thread pane), delegated. */
function onMessageClick(event) {
  const button = event.target.closest('button[data-action]');
  if (button?.dataset.action === 'profile') {
    openProfile(button.dataset.userId);
    return;
  }
  const li = event.target.closest('li[data-id]');
  if (!button || !li || !li.dataset.id) return;
  const key = li.dataset.key;
  const id = li.dataset.id;
  const m = conversation(key).messages.get(id);
  if (!m) return;
  const action = button.dataset.action;
  if (action === 'edit') {
    state.editing = { key, id, draft: m.body ?? '' };
    state.picker = null;
    renderAll(key);
  } else if (action === 'edit-cancel') {
    state.editing = null;
    renderAll(key);
  } else if (action === 'delete') {
    deleteMessage(key, m);
  } else if (action === 'pick') {
    state.picker = state.picker === id ? null : id;
    renderAll(key);
  } else if (action === 'react' || action === 'react-pick') {
    const emoji = button.dataset.emoji;
    const r = m.reactions?.find((x) => x.emoji === emoji);
    state.picker = null;
    react(key, m, emoji, !(r?.me === true));
  } else if (action === 'reply' || action === 'thread') {
    openThread(key.slice(5), id);
  }
}

function renderAll(key) {
  if (state.current === key) renderMessages();
  if (state.thread && key === `room:${state.thread.room}`) renderThread();
}

function onMessageInput(event) {
  if (event.target.classList.contains('edit-input') && state.editing) state.editing.draft = event.target.value;
}

function onMessageKey(event) {
  if (event.key === 'Escape' && event.target.classList.contains('edit-input') && state.editing) {
    const key = state.editing.key;
    state.editing = null;
    renderAll(key);
  }
}

async function onMessageSubmit(event) {
  const form = event.target.closest('form[data-action="edit-save"]');
  if (!form) return;
  event.preventDefault();
  const ed = state.editing;
  if (!ed) return;
  const body = form.querySelector('input').value;
  const m = conversation(ed.key).messages.get(ed.id);
  state.editing = null;
  if (!m || !body.trim() || body === m.body) {
    renderAll(ed.key);
    return;
  }
  renderAll(ed.key);
  try {
    const reply = ed.key.startsWith('room:')
      ? await state.tp.edit(ed.key.slice(5), ed.id, body)
      : await state.tp.editDm(ed.id, body);
    if (!m.deleted) {
      m.body = body;
      m.edited_at = reply.edited_at ?? m.edited_at ?? new Date().toISOString();
    }
    rerender(ed.key, ed.id);
  } catch (e) {
    notice(ed.key, `Could not edit (${e.code ?? 'error'}): ${e.message}`);
  }
}

async function deleteMessage(key, m) {
  try {
    if (key.startsWith('room:')) await state.tp.delete(key.slice(5), m.id);
    else await state.tp.deleteDm(m.id);
    m.deleted = true;
    delete m.body;
    delete m.reactions;
    rerender(key, m.id);
  } catch (e) {
    notice(key, `Could not delete (${e.code ?? 'error'}): ${e.message}`);
  }
}

async function react(key, m, emoji, on) {
  renderAll(key);
  try {
    const reply = await state.tp.react(key.slice(5), m.id, emoji, on);
    if (!m.deleted) applyReaction(m, emoji, reply.count, on);
    renderAll(key);
  } catch (e) {
    notice(key, `Could not react (${e.code ?? 'error'}): ${e.message}`);
  }
}

// ---------------------------------------------------------------- threads

async function openThread(room, id) {
  closePanel();
  state.thread = { room, id, loading: true, error: null };
  state.picker = null;
  $('thread').hidden = false;
  $('chat').classList.add('thread-open');
  renderThread();
  const conv = conversation(`room:${room}`);
  try {
    let after;
    let count = 0;
    for (;;) {
      const page = await state.rest.thread(room, id, { after, limit: THREAD_PAGE });
      if (page.parent?.id === id && page.parent.seq != null) putMessage(conv, page.parent);
      for (const r of page.messages) putMessage(conv, r);
      count += page.messages.length;
      if (!page.has_more || page.messages.length === 0) break;
      after = page.messages.at(-1).seq;
    }
    const parent = conv.messages.get(id);
    if (parent && count > (parent.reply_count ?? 0)) parent.reply_count = count;
  } catch (e) {
    if (state.thread?.id === id) state.thread.error = e.message;
  }
  if (state.thread?.id !== id) return;
  state.thread.loading = false;
  renderThread({ stick: true });
  if (state.current === `room:${room}`) renderMessages();
  $('thread-input').focus();
}

function closeThread() {
  state.thread = null;
  $('thread').hidden = true;
  $('chat').classList.toggle('thread-open', !$('room-panel').hidden);
}

function renderThread({ stick = false } = {}) {
  const t = state.thread;
  if (!t) return;
  const key = `room:${t.room}`;
  const conv = conversation(key);
  const parent = conv.messages.get(t.id);
  $('thread-parent').replaceChildren(...(parent ? [messageRow(key, parent, { parent: true })] : []));
  const replies = [...conv.messages.values()].filter((m) => m.reply_to === t.id).sort((a, b) => a.seq - b.seq);
  const rows = replies.map((m) => messageRow(key, m, { inThread: true }));
  for (const p of conv.pending.values()) if (p.threadOf === t.id) rows.push(messageRow(key, p, { pending: true, inThread: true }));
  $('thread-items').replaceChildren(...rows);
  $('thread-note').textContent = t.error ? `Could not load the thread: ${t.error}`
    : t.loading ? 'Loading the replies…'
      : replies.length === 0 ? 'No replies yet.' : `${replies.length} ${replies.length === 1 ? 'reply' : 'replies'}`;
  focusEditor($('thread'));
  if (stick) $('thread-scroll').scrollTop = $('thread-scroll').scrollHeight;
}

async function sendThreadReply(event) {
  event.preventDefault();
  const t = state.thread;
  const input = $('thread-input');
  const body = input.value;
  if (!t || !body.trim()) return;
  input.value = '';
  const key = `room:${t.room}`;
  const conv = conversation(key);
  const clientId = globalThis.crypto?.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const pending = { body, from: { id: me().id, name: me().name }, clientId, threadOf: t.id };
  conv.pending.set(clientId, pending);
  renderThread({ stick: true });
  try {
    const reply = await state.tp.send(t.room, body, { clientId, replyTo: t.id });
    if (!conv.messages.has(reply.id)) {
      onMessage({ room: t.room, id: reply.id, seq: reply.seq, ts: reply.ts, body, kind: 'text', from: pending.from, reply_to: t.id });
    }
  } catch (e) {
    notice(key, `Reply not sent (${e.code ?? 'error'}): ${e.message}`);
  } finally {
    conv.pending.delete(clientId);
    if (state.thread?.id === t.id) renderThread({ stick: true });
  }
}

// ---------------------------------------------------------------- sending

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
  const pending = { body, from: { id: me().id, name: me().name }, clientId };
  conv.pending.set(clientId, pending);
  renderMessages({ stick: true });
  try {
    if (kind === 'room') {
      state.tp.stopTyping(id);
      const reply = await state.tp.send(id, body, { clientId });
      // The message event usually came first; if not, show the reply now.
      if (!conv.messages.has(reply.id)) {
        conv.messages.set(reply.id, { room: id, id: reply.id, seq: reply.seq, ts: reply.ts, body, kind: 'text', from: pending.from });
      }
    } else {
      const reply = await state.tp.dm(id, body, { clientId });
      if (!conv.messages.has(reply.id)) putDm({ id: reply.id, ts: reply.ts, body, from: pending.from, to: id });
      renderDms();
      if (!reply.delivered) notice(key, `${state.people.get(id)?.name ?? 'They'} will get it when they connect.`);
    }
  } catch (e) {
    notice(key, `Not sent (${e.code ?? 'error'}): ${e.message}`);
  } finally {
    conv.pending.delete(clientId);
    if (state.current === key) renderMessages({ stick: true });
  }
}

// ---------------------------------------------------------------- search

/** A snippet with its matches between « and » as text and <mark> nodes (never HTML). */
function snippetNodes(s) {
  const out = [];
  let rest = String(s ?? '');
  while (rest) {
    const i = rest.indexOf('«');
    if (i < 0) {
      out.push(rest);
      break;
    }
    if (i > 0) out.push(rest.slice(0, i));
    const j = rest.indexOf('»', i + 1);
    if (j < 0) {
      out.push(rest.slice(i + 1));
      break;
    }
    out.push(el('mark', { text: rest.slice(i + 1, j) }));
    rest = rest.slice(j + 1);
  }
  return out;
}

async function runSearch(event, { more = false } = {}) {
  event?.preventDefault();
  const q = more ? state.search?.q : $('search-input').value.trim();
  if (!q) return;
  const offset = more ? state.search.next : 0;
  $('search-box').hidden = false;
  $('search-note').textContent = 'Searching…';
  try {
    const page = await state.rest.search(q, { offset });
    const results = more ? [...state.search.results, ...page.results] : page.results;
    state.search = { q, results, next: page.next_offset ?? null };
    renderSearch();
  } catch (e) {
    $('search-note').textContent = e.code === 'bad_request' ? 'Type a word to search for.' : `Search failed: ${e.message}`;
  }
}

function renderSearch() {
  const s = state.search;
  if (!s) return;
  $('search-note').textContent = s.results.length ? `Results for “${s.q}”` : `Nothing found for “${s.q}”.`;
  $('search-more').hidden = s.next == null;
  $('search-results').replaceChildren(...s.results.map((r) => {
    const other = r.with == null ? null
      : typeof r.with === 'object' ? r.with : { id: r.with, name: state.people.get(r.with)?.name ?? state.dms.get(r.with)?.user.name ?? 'someone' };
    const where = r.room ? `# ${state.rooms.get(r.room)?.name ?? 'room'}` : `@ ${other?.name ?? 'direct message'}`;
    const time = r.ts ? new Date(r.ts).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }) : '';
    const li = el('li', { 'data-testid': 'search-result', 'data-id': r.id },
      el('span', { class: 'where', text: `${where} · ${r.from?.name ?? ''} · ${time}` }),
      el('span', { class: 'snippet' }, ...snippetNodes(r.snippet)));
    li.addEventListener('click', () => {
      if (r.room) openRoom(r.room);
      else if (other) openDm(other.id);
    });
    return li;
  }));
}

function closeSearch() {
  state.search = null;
  $('search-box').hidden = true;
  $('search-results').replaceChildren();
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
  if (t.user.id === me().id) return;
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
  if (p.user.id === me().id) {
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
    let reads = state.reads.get(room);
    if (!reads) state.reads.set(room, (reads = new Map()));
    for (const p of participants) {
      if (typeof p.read_seq === 'number') {
        const was = reads.get(p.user.id);
        if (!was || p.read_seq > was.seq) reads.set(p.user.id, { name: p.user.name, seq: p.read_seq });
      }
      const entry = state.people.get(p.user.id) ?? { id: p.user.id, name: p.user.name, status: 'offline' };
      if (p.online && entry.status === 'offline') entry.status = 'online';
      if (!p.online) entry.status = 'offline';
      state.people.set(p.user.id, entry);
    }
    renderPeople();
    if (state.current === `room:${room}`) renderSeenBy();
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
  const myId = me().id;
  const order = { online: 0, busy: 1, meditating: 2, away: 3, offline: 4 };
  const people = [...state.people.values()].sort((a, b) =>
    (a.id === myId ? -1 : b.id === myId ? 1 : 0) || (order[a.status] ?? 5) - (order[b.status] ?? 5) || a.name.localeCompare(b.name));
  list.replaceChildren(...people.map((p) => {
    const key = `dm:${p.id}`;
    const conv = state.conversations.get(key);
    const unread = conv ? dmUnread(conv) : 0;
    const sub = p.status === 'offline'
      ? (p.last_seen ? `offline · last seen ${ago(p.last_seen)}` : 'offline')
      : `${p.status}${p.text ? ` · ${p.text}` : ''}`;
    const li = el('li', {
      'data-user-id': p.id, 'data-name': p.name, 'data-status': p.status ?? 'offline',
      'aria-current': String(state.current === key),
    },
    el('span', { class: 'dot', 'data-status': p.status ?? 'offline' }),
    el('span', {}, p.id === myId ? `${p.name} (you)` : p.name, el('span', { class: 'sub', text: sub })),
    unread ? el('span', { class: 'unread', text: String(unread) }) : null);
    const info = el('button', { type: 'button', class: 'info', 'data-testid': 'profile-open', 'aria-label': `Profile of ${p.name}`, title: 'Profile', text: 'i' });
    info.addEventListener('click', (e) => {
      e.stopPropagation();
      openProfile(p.id);
    });
    li.append(info);
    if (p.id !== myId) li.addEventListener('click', () => openDm(p.id));
    else li.addEventListener('click', () => openProfile(p.id));
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

// ---------------------------------------------------------------- rooms people can run

/** The caller takes part in the room (GET /rooms and GET /rooms/{id} give participants their `role`). */
const isMember = (r) => typeof r?.role === 'string' && r.role !== '';
/** Settings, invitations, kicks, bans, mutes and the audit log: owner, moderators, admins. */
const canModerate = (r) => isAdmin() || r?.role === 'owner' || r?.role === 'moderator';
/** Roles, handing over, closing: the owner and admins. */
const isOwner = (r) => isAdmin() || r?.role === 'owner';
/** Moderation needs a role above the target's; nobody acts on the owner. */
function outranks(room, target) {
  if (target.role === 'owner' || target.user.id === me().id) return false;
  if (isAdmin()) return true;
  return (ROLE_RANK[room?.role] ?? -1) > (ROLE_RANK[target.role] ?? 0);
}

/**
 * Stores a room as the server shows it now. Directory events carry no `role`
 * or unread counts: those stay; `topic` is absent when cleared.
 */
function mergeRoom(r) {
  touchRoom(r.id);
  const old = state.rooms.get(r.id);
  const next = { ...old, ...r, topic: r.topic ?? null };
  state.rooms.set(r.id, next);
  return next;
}

function updateTitle() {
  const key = state.current;
  if (!key?.startsWith('room:')) return;
  const room = state.rooms.get(key.slice(5));
  $('conv-title').textContent = room ? `# ${room.name}` : '# room';
  $('conv-note').textContent = room?.topic || room?.description || '';
}

/** Reads one room (its role, topic and counts) and shows it. */
async function refreshRoom(id) {
  try {
    const room = await state.rest.getRoom(id);
    const next = mergeRoom(room);
    if (!room.role) delete next.role;
    renderRooms();
    updateTitle();
    if (state.panel?.room === id) renderPanel();
  } catch {
    /* gone, or not ours any more: the events say so */
  }
}

function onRoomCreated({ room, by }) {
  // The creator's own event (another device of ours, too): they own it.
  mergeRoom(by?.id === me().id ? { role: 'owner', ...room } : room);
  renderRooms();
}

function onRoomUpdated({ room }) {
  const old = state.rooms.get(room.id);
  if (room.private && !isMember(old)) {
    // Turned private, and not ours: it leaves the list.
    touchRoom(room.id);
    state.rooms.delete(room.id);
  } else {
    mergeRoom(room);
  }
  renderRooms();
  if (state.current === `room:${room.id}`) updateTitle();
  if (state.panel?.room === room.id) {
    if (!state.panel.dirty) fillSettings();
    renderPanel();
  }
}

/** A member event: about us (removed, a new role, a mute) or about someone in a room we follow. */
function onMember(m) {
  const key = `room:${m.room}`;
  const room = state.rooms.get(m.room);
  if (m.user.id === me().id) {
    if (m.action !== 'joined') touchRoom(m.room);
    if (m.action === 'left') {
      state.joined.delete(m.room);
      if (m.reason === 'kicked' || m.reason === 'banned') {
        const how = m.reason === 'banned' ? ' (banned)' : '';
        leaveView(m.room, `You were removed from # ${room?.name ?? 'a room'}${m.by ? ` by ${m.by.name}` : ''}${how}.`);
        return;
      }
      if (room) {
        delete room.role;
        if (room.private) state.rooms.delete(m.room);
      }
      if (!state.leftHere.delete(m.room)) notice(key, 'You left this room (on another device). Open it again to rejoin.');
      renderRooms();
      if (state.panel?.room === m.room) closePanel();
    } else if (m.action === 'role') {
      if (room) room.role = m.role;
      const what = m.role === 'owner' ? 'the owner' : `a ${m.role}`;
      notice(key, m.by && m.by.id !== me().id ? `${m.by.name} made you ${what} of this room.` : `You are ${what} of this room now.`);
      renderRooms();
      if (state.current === key) renderMessages();
    } else if (m.action === 'muted') {
      notice(key, `${m.by?.name ?? 'A moderator'} muted you here${m.until && !forever(m.until) ? ` until ${new Date(m.until).toLocaleString()}` : ''}: you can read, not write.`);
    } else if (m.action === 'unmuted') {
      notice(key, `${m.by?.name ?? 'A moderator'} unmuted you here.`);
    }
    if (state.panel?.room === m.room) loadPanel();
    return;
  }
  if (m.action === 'joined') seen(m.user);
  const by = m.by ? ` by ${m.by.name}` : '';
  const text = m.action === 'joined' ? `${m.user.name} joined the room.`
    : m.action === 'left' ? (m.reason ? `${m.user.name} was ${m.reason === 'banned' ? 'banned' : 'removed'}${by}.` : `${m.user.name} left the room.`)
      : m.action === 'role' ? (m.by ? `${m.by.name} made ${m.user.name} ${m.role === 'owner' ? 'the owner' : `a ${m.role}`}.` : `${m.user.name} is ${m.role === 'owner' ? 'the owner' : `a ${m.role}`} now.`)
        : m.action === 'muted' ? `${m.user.name} was muted${by}.`
          : m.action === 'unmuted' ? `${m.user.name} was unmuted${by}.` : null;
  if (text && state.conversations.has(key)) notice(key, text);
  if (state.panel?.room === m.room) loadPanel();
}

/** A mute "until lifted" ends far in the future. */
function forever(until) {
  return new Date(until).getFullYear() > new Date().getFullYear() + 50;
}

/** We are out of a room (kicked, banned, gone while away): close its view and say why. */
function leaveView(id, text) {
  const key = `room:${id}`;
  const room = state.rooms.get(id);
  touchRoom(id);
  if (room) {
    delete room.role;
    delete room.unread;
    if (room.private) state.rooms.delete(id);
  }
  state.joined.delete(id);
  state.conversations.delete(key);
  state.typing.delete(id);
  state.reads.delete(id);
  if (localStorage.getItem(LAST_ROOM_KEY) === id) localStorage.removeItem(LAST_ROOM_KEY);
  if (state.panel?.room === id) closePanel();
  if (state.thread?.room === id) closeThread();
  if (state.current === key) clearCurrent();
  showBanner(text);
  renderRooms();
}

/** No conversation on screen. */
function clearCurrent() {
  state.current = null;
  state.editing = null;
  state.picker = null;
  $('conv-title').textContent = 'Pick a room';
  $('conv-note').textContent = '';
  $('message-items').replaceChildren();
  $('older').hidden = true;
  $('seen-by').hidden = true;
  $('typing').textContent = '';
  $('message-input').value = '';
  $('message-input').disabled = true;
  $('composer').querySelector('button').disabled = true;
  $('room-panel-open').hidden = true;
  renderRooms();
  renderDms();
  renderPeople();
}

function showBanner(text) {
  $('banner-text').textContent = text;
  $('banner').hidden = false;
}

// ---------------------------------------------------------------- invitations and links

function onInvite(inv) {
  if (inv.state && inv.state !== 'pending') return;
  state.invites.set(inv.id, inv);
  renderInvites();
}

async function loadInvites() {
  if (!state.rest) return;
  try {
    const list = await state.rest.invites();
    state.invites = new Map(list.map((i) => [i.id, i]));
    renderInvites();
  } catch {
    /* the next tick tries again */
  }
}

function renderInvites() {
  const invites = [...state.invites.values()].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  $('invites-section').hidden = invites.length === 0;
  $('invite-badge').hidden = invites.length === 0;
  $('invite-count').textContent = String(invites.length);
  $('invite-list').replaceChildren(...invites.map((inv) => el('li', { 'data-invite-id': inv.id, 'data-room-name': inv.room.name },
    el('span', { text: `# ${inv.room.name}` }),
    inv.room.private ? el('span', { class: 'muted', text: '🔒' }) : null,
    el('button', { type: 'button', 'data-action': 'accept', 'data-testid': 'invite-accept', text: 'Accept' }),
    el('button', { type: 'button', class: 'link', 'data-action': 'decline', 'data-testid': 'invite-decline', text: 'Decline' }),
    el('span', { class: 'sub', text: `from ${inv.from.name} · ${ago(inv.created_at)}` }))));
}

async function onInviteClick(event) {
  const button = event.target.closest('button[data-action]');
  const li = event.target.closest('li[data-invite-id]');
  if (!button || !li) return;
  const id = li.dataset.inviteId;
  const inv = state.invites.get(id);
  if (!inv) return;
  button.disabled = true;
  try {
    if (button.dataset.action === 'accept') {
      const { room, role } = await state.rest.acceptInvite(id);
      state.invites.delete(id);
      renderInvites();
      mergeRoom({ ...room, role });
      renderRooms();
      await openRoom(room.id);
    } else {
      await state.rest.declineInvite(id);
      state.invites.delete(id);
      renderInvites();
    }
  } catch (e) {
    // Revoked, decided elsewhere, or the room closed: it is no longer pending.
    if (e.code === 'not_found' || e.code === 'forbidden') state.invites.delete(id);
    renderInvites();
    showBanner(e.code === 'forbidden' ? `You are banned from # ${inv.room.name}.`
      : e.code === 'not_found' ? `The invitation to # ${inv.room.name} is no longer valid.`
        : `Could not answer the invitation: ${e.message}`);
  }
}

function openInvites() {
  if (window.matchMedia('(max-width: 700px)').matches && !$('chat').classList.contains('menu-open')) toggleMenu();
  $('invites-section').scrollIntoView({ block: 'nearest' });
  $('invite-list').querySelector('button')?.focus();
}

/** The token of an invite link: `…#join=TOKEN`, `…/join/TOKEN`, or the token itself. */
function linkToken(text) {
  const s = String(text ?? '').trim();
  const m = s.match(/[#&?]join=([A-Za-z0-9_-]+)/) ?? s.match(/\/join\/([A-Za-z0-9_-]+)/);
  if (m) return m[1];
  return /^[A-Za-z0-9_-]{16,}$/.test(s) ? s : null;
}

/** An invite link in the page's URL (#join=TOKEN): taken out of the URL so a reload does not use it again. */
function takeLinkFromUrl() {
  const token = linkToken(location.hash);
  if (token) history.replaceState(null, '', location.pathname + location.search);
  return token;
}

async function joinByLink(token) {
  try {
    const { room, role } = await state.rest.joinByLink(token);
    mergeRoom({ ...room, role });
    renderRooms();
    $('join-link-input').value = '';
    await openRoom(room.id);
  } catch (e) {
    showBanner(e.code === 'not_found' ? 'That invite link does not work: it is unknown, expired or used up.'
      : e.code === 'forbidden' ? 'You are banned from that room.'
        : e.code === 'room_full' ? 'That room is full.' : `Could not join: ${e.message}`);
  }
}

function submitJoinLink(event) {
  event.preventDefault();
  const token = linkToken($('join-link-input').value);
  if (!token) {
    showBanner('Paste an invite link (…#join=…) or its token.');
    return;
  }
  closeMenu();
  joinByLink(token);
}

// ---------------------------------------------------------------- notifications

function onWelcome(w) {
  renderAdmin();
  // No count in the welcome (the server could not tell): the list says. An open panel is read again after a drop.
  if (typeof w.notifications_unread !== 'number' || !$('notifications-panel').hidden) loadNotifications();
  renderBell();
}

function renderBell() {
  const n = state.tp?.unreadNotifications ?? 0;
  const count = $('bell-count');
  count.textContent = n > 99 ? '99+' : String(n);
  count.hidden = n === 0;
  $('bell').dataset.unread = String(n);
  $('bell').setAttribute('aria-label', n ? `Notifications: ${n} unread` : 'Notifications');
  if (!$('notifications-panel').hidden) $('notifications-read-all').disabled = !canReadAll();
}

/** Newest first (UUIDv7 ids sort by creation). */
const byIdDesc = (a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0);

/** The newest page (or, with `more`, the page older than what is listed) of GET /notifications. */
async function loadNotifications({ more = false } = {}) {
  const notes = state.notes;
  if (!state.rest || notes.loading) return;
  notes.loading = true;
  renderNotifications();
  const listed = [...notes.items.values()].sort(byIdDesc);
  const before = more && listed.length ? listed.at(-1).id : undefined;
  try {
    const page = await state.rest.notifications({ before, limit: NOTIFICATION_PAGE });
    if (!more) {
      // The server's page is the truth (coalesced and trimmed ones drop out); live ones newer than it stay.
      const newest = page.notifications[0]?.id ?? '';
      const live = listed.filter((n) => n.id > newest);
      notes.items = new Map([...live, ...page.notifications].map((n) => [n.id, { ...n, read: n.read === true }]));
    } else {
      for (const n of page.notifications) notes.items.set(n.id, { ...n, read: n.read === true });
    }
    notes.more = page.has_more;
    notes.loaded = true;
    notes.error = null;
    if (typeof page.unread === 'number') state.tp.setUnreadNotifications(page.unread);
  } catch (e) {
    notes.error = `Could not load notifications: ${e.message}`;
  } finally {
    notes.loading = false;
  }
  renderNotifications();
}

function canReadAll() {
  return (state.tp?.unreadNotifications ?? 0) > 0 || [...state.notes.items.values()].some((n) => !n.read);
}

function renderNotifications() {
  const notes = state.notes;
  const items = [...notes.items.values()].sort(byIdDesc);
  $('notifications-note').textContent = notes.error ?? (notes.loading && items.length === 0 ? 'Loading…' : '');
  $('notification-list').replaceChildren(...(items.length ? items.map(notificationRow)
    : notes.loaded ? [el('li', { class: 'empty', text: 'Nothing yet: mentions, replies, reactions, invitations and DMs that came while you were away show here.' })] : []));
  $('notifications-more').hidden = !notes.more || items.length === 0;
  $('notifications-read-all').disabled = !canReadAll();
}

function notificationRow(n) {
  const room = n.room ? state.rooms.get(n.room) : null;
  return el('li', {
    class: `notification${n.read ? '' : ' unread'}`, 'data-id': n.id, 'data-kind': n.kind, 'data-read': String(n.read === true),
    tabIndex: 0, title: n.read ? undefined : 'Unread: open to mark it read',
  },
  el('span', { class: 'kind', text: KIND_LABEL[n.kind] ?? n.kind }),
  el('span', { class: 'from', text: n.from?.name ?? 'Telepath' }),
  el('time', { class: 'when', dateTime: n.ts, title: new Date(n.ts).toLocaleString(), text: ago(n.ts) }),
  el('span', { class: 'text', text: n.text }),
  room ? el('span', { class: 'where', text: `# ${room.name}` }) : null);
}

function onNotification(n) {
  const notes = state.notes;
  if (n.kind === 'reaction' && n.message_id) {
    // One reaction notification per message: the newer replaces the older (the server's count did not grow).
    for (const [id, old] of [...notes.items]) {
      if (id === n.id || old.kind !== 'reaction' || old.message_id !== n.message_id) continue;
      notes.items.delete(id);
      if (!old.read) state.tp.setUnreadNotifications(state.tp.unreadNotifications - 1);
    }
  }
  notes.items.set(n.id, { ...n, read: n.read === true });
  renderNotifications();
  toast(n);
}

/** Marks `ids`, or everything `up_to` an id, read in the list shown; how many of them were unread. */
function applyRead({ ids, up_to: upTo }) {
  const set = Array.isArray(ids) ? new Set(ids) : null;
  let changed = 0;
  for (const n of state.notes.items.values()) {
    if (n.read) continue;
    if ((set && set.has(n.id)) || (typeof upTo === 'string' && n.id <= upTo)) {
      n.read = true;
      changed++;
    }
  }
  return changed;
}

function onNotificationsRead(r) {
  applyRead(r);
  renderNotifications(); // the count comes with notifications_unread
}

async function markNotificationsRead(which) {
  const changed = applyRead(which);
  if ('up_to' in which) state.tp.setUnreadNotifications(0);
  else if (changed) state.tp.setUnreadNotifications(state.tp.unreadNotifications - changed);
  renderNotifications();
  try {
    const r = await state.rest.markNotificationsRead(which);
    if (typeof r?.unread === 'number') state.tp.setUnreadNotifications(r.unread);
  } catch (e) {
    state.notes.error = `Could not mark read: ${e.message}`;
    renderNotifications();
    loadNotifications(); // what the server holds
  }
}

function markAllNotificationsRead() {
  const newest = [...state.notes.items.values()].sort(byIdDesc)[0];
  if (newest) markNotificationsRead({ up_to: newest.id });
}

/** Goes where a notification points: its room, the invitation, the DM conversation; and marks it read. */
function openNotification(n) {
  closeNotifications();
  if (!n.read) markNotificationsRead({ ids: [n.id] });
  const room = n.room ? state.rooms.get(n.room) : null;
  if (n.kind === 'invite' && !isMember(room) && [...state.invites.values()].some((i) => i.room.id === n.room)) openInvites();
  else if (n.room) openRoom(n.room);
  else if (n.kind === 'dm' && n.from && n.from.id !== me().id) openDm(n.from.id);
}

function onNotificationClick(event) {
  const li = event.target.closest('li.notification[data-id]');
  const n = li && state.notes.items.get(li.dataset.id);
  if (n) openNotification(n);
}

function openNotifications() {
  $('notifications-panel').hidden = false;
  $('bell').setAttribute('aria-expanded', 'true');
  renderNotifications();
  loadNotifications();
}

function closeNotifications() {
  $('notifications-panel').hidden = true;
  $('bell').setAttribute('aria-expanded', 'false');
}

/** A new notification, shown for a few seconds (a click goes where it points). */
function toast(n) {
  const box = $('toasts');
  const t = el('div', { class: 'toast', 'data-id': n.id, 'data-kind': n.kind, title: 'Open' },
    el('span', { class: 'kind', text: `${n.from?.name ?? 'Telepath'} ${KIND_VERB[n.kind] ?? n.kind}` }),
    n.text);
  t.addEventListener('click', () => {
    t.remove();
    openNotification(state.notes.items.get(n.id) ?? n);
  });
  box.append(t);
  while (box.children.length > TOASTS_SHOWN) box.firstElementChild.remove();
  setTimeout(() => t.remove(), TOAST_MS);
}

// ---------------------------------------------------------------- announcements

function onAnnouncement(a) {
  if (a.dismissed || state.dismissed.has(a.id)) return;
  state.announcements.set(a.id, a);
  renderAnnouncements();
}

/** The active ones (the socket sends them after each welcome too; this also covers a server that could not). */
async function loadAnnouncements() {
  if (!state.rest) return;
  try {
    for (const a of await state.rest.announcements()) {
      if (a.dismissed) hideAnnouncement(a.id);
      else onAnnouncement(a);
    }
  } catch {
    /* the socket's copies are enough */
  }
}

function renderAnnouncements() {
  const now = Date.now();
  const shown = [...state.announcements.values()]
    .filter((a) => !state.dismissed.has(a.id) && !(a.expires_at && Date.parse(a.expires_at) <= now))
    .sort((a, b) => (LEVEL_RANK[a.level] ?? 3) - (LEVEL_RANK[b.level] ?? 3) || String(b.created_at).localeCompare(String(a.created_at)));
  const box = $('announcements');
  box.hidden = shown.length === 0;
  box.replaceChildren(...shown.map((a) => el('div', { class: 'announcement', 'data-id': a.id, 'data-level': a.level },
    el('strong', { class: 'title', text: a.title }),
    el('span', { class: 'body', text: a.body }),
    el('span', { class: 'by', text: `— ${a.created_by?.name ?? 'admin'}` }),
    el('button', { type: 'button', class: 'dismiss', 'data-testid': 'announcement-dismiss', 'aria-label': `Dismiss: ${a.title}`, text: 'Dismiss' }))));
}

function hideAnnouncement(id) {
  state.dismissed.add(id);
  state.announcements.delete(id);
  renderAnnouncements();
}

async function dismissAnnouncement(id) {
  state.dismissed.add(id);
  renderAnnouncements();
  try {
    await state.rest.dismissAnnouncement(id);
    state.announcements.delete(id);
  } catch (e) {
    if (e.code === 'not_found') {
      state.announcements.delete(id); // expired or deleted meanwhile
      return;
    }
    state.dismissed.delete(id);
    renderAnnouncements();
    showBanner(`Could not dismiss the announcement: ${e.message}`);
  }
}

function onAnnouncementsClick(event) {
  const box = event.target.closest('.announcement[data-id]');
  if (box && event.target.closest('.dismiss')) dismissAnnouncement(box.dataset.id);
}

/** Admins: an announcement to everyone. */
async function postAnnouncement(event) {
  event.preventDefault();
  const form = $('announce-form');
  const title = $('announce-title').value.trim();
  const body = $('announce-body').value.trim();
  if (!title || !body) return;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  $('announce-status').textContent = '';
  try {
    const a = await state.rest.createAnnouncement({ title, body, level: $('announce-level').value });
    onAnnouncement(a);
    form.reset();
    $('announce-status').textContent = 'Posted.';
  } catch (e) {
    $('announce-status').textContent = e.code === 'forbidden' ? 'Only admins may post announcements.' : `Could not post: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- admins: API keys

/** The admin-only sections: the announcement form and the API keys. */
function renderAdmin() {
  const admin = isAdmin();
  $('announce-section').hidden = !admin;
  $('apikeys-section').hidden = !admin;
  if (!admin) {
    hideApiKeySecret();
    hideWebhookSecret();
    state.hookKeys.clear();
    state.hookKey = null;
    renderHookKeys();
  } else if ($('apikeys').open) {
    loadApiKeys();
    loadWebhooks();
  }
}

let apiKeysAsked = 0;
async function loadApiKeys() {
  if (!state.rest || !isAdmin()) return;
  const asked = ++apiKeysAsked;
  try {
    const keys = await state.rest.listApiKeys();
    if (asked === apiKeysAsked) renderApiKeys(keys); // an older answer never overwrites a newer one
  } catch (e) {
    if (asked === apiKeysAsked) $('apikey-status').textContent = `Could not list the keys: ${e.message}`;
  }
}

function renderApiKeys(keys) {
  const list = $('apikey-list');
  if (keys.length === 0) {
    fill(list, el('li', { class: 'empty muted', text: 'No keys yet.' }));
    return;
  }
  fill(list, ...keys.map((k) => {
    const revoked = Boolean(k.revoked_at);
    const when = revoked ? `revoked ${ago(k.revoked_at)}` : `created ${ago(k.created_at)}`;
    const sub = `${k.scopes.join(', ')}${k.room_prefix ? ` · rooms “${k.room_prefix}…”` : ''} · ${when}`;
    return el('li', { 'data-id': k.id, 'data-name': k.name, 'data-revoked': String(revoked) },
      el('span', { class: 'name', text: k.name }),
      revoked ? el('span', { class: 'tag muted', text: 'revoked' })
        : el('button', { type: 'button', class: 'revoke', 'data-testid': 'apikey-revoke', 'aria-label': `Revoke the key ${k.name}`, text: 'Revoke' }),
      el('span', { class: 'sub', title: new Date(revoked ? k.revoked_at : k.created_at).toLocaleString(), text: sub }));
  }));
}

/** Admins: a key for the server API; its secret is shown here once (it is kept nowhere else). */
async function createApiKey(event) {
  event.preventDefault();
  const form = $('apikey-form');
  const name = $('apikey-name').value.trim();
  const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((i) => i.value);
  const prefix = $('apikey-prefix').value.trim();
  const status = $('apikey-status');
  if (!name) return;
  if (scopes.length === 0) {
    status.textContent = 'Pick at least one scope.';
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  status.textContent = '';
  try {
    const created = await state.rest.createApiKey(prefix ? { name, scopes, room_prefix: prefix } : { name, scopes });
    if (created.scopes.includes('webhooks') && !created.room_prefix) rememberHookKey(created.id, created.name, created.key);
    form.reset();
    $('apikey-secret-name').textContent = created.name;
    $('apikey-secret').textContent = created.key;
    $('apikey-secret-box').hidden = false;
    status.textContent = 'Created.';
    await loadApiKeys();
  } catch (e) {
    status.textContent = e.code === 'forbidden' ? 'Only admins may manage API keys.' : `Could not create the key: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function hideApiKeySecret() {
  $('apikey-secret').textContent = '';
  $('apikey-secret-name').textContent = '';
  $('apikey-secret-box').hidden = true;
}

/** Copies a secret shown once (the text of `codeId`), saying so in `statusId`. */
async function copySecret(codeId, statusId) {
  const code = $(codeId);
  try {
    await navigator.clipboard.writeText(code.textContent);
    $(statusId).textContent = 'Copied.';
  } catch {
    // No clipboard here: select it for the user to copy.
    const range = document.createRange();
    range.selectNodeContents(code);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    $(statusId).textContent = 'Selected: copy it with Ctrl+C.';
  }
}

async function onApiKeyClick(event) {
  const button = event.target.closest('button.revoke');
  const item = button?.closest('li[data-id]');
  if (!item) return;
  // Two clicks: a revoked key cannot be brought back.
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Really revoke? Click again';
    return;
  }
  button.disabled = true;
  try {
    await state.rest.revokeApiKey(item.dataset.id);
    $('apikey-status').textContent = `Revoked ${item.dataset.name}.`;
    forgetHookKey(item.dataset.id);
  } catch (e) {
    $('apikey-status').textContent = `Could not revoke the key: ${e.message}`;
  }
  await loadApiKeys();
}

// ---------------------------------------------------------------- admins: webhooks

/** The server API with the key in use (null without one). The key stays in memory. */
function hookServer() {
  const k = state.hookKey ? state.hookKeys.get(state.hookKey) : null;
  return k ? new TelepathServer({ url: location.origin, apiKey: k.key }) : null;
}

function rememberHookKey(id, name, key) {
  state.hookKeys.set(id, { id, name, key });
  state.hookKey = id;
  state.hooks.open = null;
  renderHookKeys();
  loadWebhooks();
}

function forgetHookKey(id) {
  if (!state.hookKeys.delete(id)) return;
  if (state.hookKey === id) {
    state.hookKey = state.hookKeys.keys().next().value ?? null;
    state.hooks.open = null;
    state.hooks.list = [];
  }
  renderHookKeys();
  loadWebhooks();
}

function renderHookKeys() {
  const select = $('webhook-key');
  const keys = [...state.hookKeys.values()];
  fill(select, ...(keys.length ? keys.map((k) => el('option', { value: k.id, text: k.name, selected: k.id === state.hookKey }))
    : [el('option', { value: '', text: 'no key with the webhooks scope yet' })]));
  select.disabled = keys.length === 0;
  $('webhook-form').hidden = !state.hookKey;
  if (!state.hookKey) {
    $('webhook-status').textContent = 'Create a key with the webhooks scope (and no room prefix) above, or paste one, to manage webhooks.';
    fill($('webhook-list'));
    stopDeliveryRefresh();
  }
}

let pastedKeys = 0;
function useHookKey(event) {
  event.preventDefault();
  const input = $('webhook-key-input');
  const key = input.value.trim();
  if (!/^tpk_[A-Za-z0-9_-]{43}$/.test(key)) {
    $('webhook-status').textContent = 'That is not an API key (tpk_ and 43 characters).';
    return;
  }
  input.value = '';
  const known = [...state.hookKeys.values()].find((k) => k.key === key);
  if (known) {
    state.hookKey = known.id;
    renderHookKeys();
    loadWebhooks();
    return;
  }
  const n = ++pastedKeys;
  rememberHookKey(`pasted-${n}`, `pasted key ${n}`, key);
}

let webhooksAsked = 0;
async function loadWebhooks() {
  const server = hookServer();
  if (!server || !isAdmin()) return;
  const asked = ++webhooksAsked;
  try {
    const list = await server.listWebhooks();
    if (asked !== webhooksAsked) return; // an older answer never overwrites a newer one
    state.hooks.list = list;
    if (state.hooks.open && !list.some((w) => w.id === state.hooks.open)) state.hooks.open = null;
    $('webhook-status').textContent = list.length ? '' : 'No webhooks yet.';
    renderWebhooks();
  } catch (e) {
    if (asked !== webhooksAsked) return;
    state.hooks.list = [];
    renderWebhooks();
    $('webhook-status').textContent = e.code === 'forbidden' ? `This key may not manage webhooks: ${e.message}.`
      : e.code === 'unauthorized' ? `This key no longer works (${e.message}).` : `Could not list the webhooks: ${e.message}`;
  }
}

function renderWebhooks() {
  const { list, open } = state.hooks;
  fill($('webhook-list'), ...list.map((w) => {
    const shown = w.id === open;
    return el('li', { 'data-id': w.id, 'data-url': w.url, 'data-pending': String(w.pending), 'data-dropped': String(w.dropped) },
      el('span', { class: 'name', text: w.url }),
      el('button', { type: 'button', class: 'link deliveries', 'data-testid': 'webhook-deliveries', 'aria-expanded': String(shown), text: shown ? 'Hide deliveries' : 'Deliveries' }),
      el('button', { type: 'button', class: 'revoke', 'data-testid': 'webhook-delete', 'aria-label': `Delete the webhook to ${w.url}`, text: 'Delete' }),
      el('span', { class: 'sub', text: w.events.join(', ') }),
      el('span', { class: 'sub counts', 'data-testid': 'webhook-counts', title: new Date(w.created_at).toLocaleString(), text: `pending ${w.pending} · dropped ${w.dropped} · added ${ago(w.created_at)}` }),
      shown ? deliveriesBox() : null);
  }));
}

function deliveriesBox() {
  const { deliveries, error } = state.hooks;
  const items = deliveries.map((d) => {
    const bits = [d.event, `${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`];
    if (d.last_status != null) bits.push(`HTTP ${d.last_status}`);
    bits.push(ago(d.delivered_at ?? d.last_attempt_at ?? d.created_at));
    return el('li', { class: 'delivery', 'data-id': String(d.id), 'data-status': d.status, 'data-event': d.event, 'data-attempts': String(d.attempts) },
      el('span', { class: 'status tag', text: d.status }),
      el('span', { class: 'what', text: `#${d.id} ${bits.join(' · ')}` }),
      d.last_error ? el('span', { class: 'sub error-text', text: d.last_error }) : null,
      d.status === 'pending' && d.next_attempt_at ? el('span', { class: 'sub', text: `next attempt ${new Date(d.next_attempt_at).toLocaleTimeString()}` }) : null);
  });
  return el('div', { class: 'deliveries-box' },
    el('div', { class: 'inline' },
      el('span', { class: 'muted', text: error ?? (deliveries.length ? `The newest ${deliveries.length}` : 'No deliveries yet.') }),
      el('button', { type: 'button', class: 'link refresh', 'data-testid': 'webhook-deliveries-refresh', text: 'Refresh' })),
    el('ul', { class: 'deliveries', 'data-testid': 'webhook-delivery-list' }, ...items));
}

let deliveriesAsked = 0;
async function loadDeliveries() {
  const server = hookServer();
  const id = state.hooks.open;
  if (!server || !id) return;
  const asked = ++deliveriesAsked;
  try {
    const [deliveries, hook] = await Promise.all([server.webhookDeliveries(id, { limit: DELIVERY_PAGE }), server.getWebhook(id)]);
    if (asked !== deliveriesAsked || state.hooks.open !== id) return;
    state.hooks.deliveries = deliveries;
    state.hooks.error = null;
    state.hooks.list = state.hooks.list.map((w) => (w.id === id ? hook : w));
  } catch (e) {
    if (asked !== deliveriesAsked || state.hooks.open !== id) return;
    state.hooks.error = `Could not list its deliveries: ${e.message}`;
    if (e.code === 'not_found') {
      state.hooks.open = null;
      loadWebhooks();
    }
  }
  renderWebhooks();
}

/** While a webhook's deliveries are shown (and the page is seen), they are read again every few seconds. */
function startDeliveryRefresh() {
  stopDeliveryRefresh();
  state.hooks.timer = setInterval(() => {
    if (!state.hooks.open || !$('apikeys').open || $('apikeys-section').hidden) {
      stopDeliveryRefresh();
      return;
    }
    if (!document.hidden) loadDeliveries();
  }, REFRESH_DELIVERIES_MS);
}

function stopDeliveryRefresh() {
  if (state.hooks.timer) clearInterval(state.hooks.timer);
  state.hooks.timer = null;
}

async function createWebhook(event) {
  event.preventDefault();
  const server = hookServer();
  if (!server) return;
  const form = $('webhook-form');
  const url = $('webhook-url').value.trim();
  const events = [...form.querySelectorAll('input[name="event"]:checked')].map((i) => i.value);
  const status = $('webhook-status');
  if (!url) return;
  if (events.length === 0) {
    status.textContent = 'Pick at least one event.';
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  status.textContent = '';
  try {
    const created = await server.createWebhook({ url, events });
    form.reset();
    $('webhook-secret-url').textContent = created.url;
    $('webhook-secret').textContent = created.secret;
    $('webhook-secret-box').hidden = false;
    status.textContent = 'Added.';
    state.hooks.open = created.id;
    state.hooks.deliveries = [];
    state.hooks.error = null;
    await loadWebhooks();
    startDeliveryRefresh();
  } catch (e) {
    status.textContent = `Could not add the webhook: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

function hideWebhookSecret() {
  $('webhook-secret').textContent = '';
  $('webhook-secret-url').textContent = '';
  $('webhook-secret-box').hidden = true;
}

async function onWebhookListClick(event) {
  const item = event.target.closest('li[data-url]');
  if (!item) return;
  const id = item.dataset.id;
  if (event.target.closest('button.refresh')) {
    loadDeliveries();
    return;
  }
  if (event.target.closest('button.deliveries')) {
    if (state.hooks.open === id) {
      state.hooks.open = null;
      stopDeliveryRefresh();
      renderWebhooks();
      return;
    }
    state.hooks.open = id;
    state.hooks.deliveries = [];
    state.hooks.error = 'Loading…';
    renderWebhooks();
    await loadDeliveries();
    startDeliveryRefresh();
    return;
  }
  const button = event.target.closest('button.revoke');
  if (!button) return;
  // Two clicks: its pending deliveries go with it.
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Really delete? Click again';
    return;
  }
  button.disabled = true;
  const server = hookServer();
  try {
    await server.deleteWebhook(id);
    $('webhook-status').textContent = `Deleted the webhook to ${item.dataset.url}.`;
    if (state.hooks.open === id) {
      state.hooks.open = null;
      stopDeliveryRefresh();
    }
  } catch (e) {
    $('webhook-status').textContent = `Could not delete the webhook: ${e.message}`;
  }
  await loadWebhooks();
}

// ---------------------------------------------------------------- the room panel

function openPanel() {
  const key = state.current;
  if (!key?.startsWith('room:')) return;
  closeThread();
  const room = key.slice(5);
  state.panel = { room, participants: [], bans: [], audit: [], auditMore: false, dirty: false, status: null };
  $('room-panel').hidden = false;
  $('chat').classList.add('thread-open');
  $('invite-link-output').hidden = true;
  $('invite-link-output').value = '';
  fillSettings();
  renderPanel();
  loadPanel();
}

function closePanel() {
  state.panel = null;
  $('room-panel').hidden = true;
  $('chat').classList.toggle('thread-open', !$('thread').hidden);
}

/** Reads what the panel shows: the room, its participants, and for moderators its bans and audit log. */
async function loadPanel() {
  const p = state.panel;
  if (!p) return;
  const id = p.room;
  try {
    const room = await state.rest.getRoom(id);
    if (state.panel !== p) return;
    const next = mergeRoom(room);
    if (!room.role) delete next.role;
    const mod = canModerate(next);
    const [participants, bans, audit] = await Promise.all([
      state.rest.participants(id),
      mod ? state.rest.bans(id) : Promise.resolve([]),
      mod ? state.rest.audit(id, { limit: AUDIT_PAGE }) : Promise.resolve({ entries: [], has_more: false }),
    ]);
    if (state.panel !== p) return;
    p.participants = participants;
    p.bans = bans;
    p.audit = audit.entries;
    p.auditMore = audit.has_more;
    if (!p.dirty) fillSettings();
    renderRooms();
    updateTitle();
    renderPanel();
  } catch (e) {
    if (state.panel === p) panelStatus(`Could not read the room: ${e.message}`, 'error');
  }
}

function panelStatus(text, kind = 'info') {
  const line = $('panel-status');
  line.textContent = text;
  line.dataset.kind = kind;
}

/** Puts the room's settings into the form (when the user is not editing it). */
function fillSettings() {
  const room = state.panel && state.rooms.get(state.panel.room);
  if (!room) return;
  $('settings-name').value = room.name ?? '';
  $('settings-topic').value = room.topic ?? '';
  $('settings-description').value = room.description ?? '';
  $('settings-private').checked = room.private === true;
  $('settings-max').value = String(room.max_participants ?? 100);
  $('settings-retention').value = room.retention != null ? String(room.retention) : '';
  // Only the owner (or an admin) sets how long messages are kept.
  $('settings-retention').disabled = !isOwner(room);
}

function renderPanel() {
  const p = state.panel;
  if (!p) return;
  const room = state.rooms.get(p.room);
  if (!room) return;
  const mod = canModerate(room);
  const owner = isOwner(room);
  $('panel-title').textContent = `# ${room.name}`;
  const counts = [
    room.private ? 'private' : 'public',
    room.member_count != null ? `${room.member_count} ${room.member_count === 1 ? 'participant' : 'participants'}` : null,
    room.online_count != null ? `${room.online_count} online` : null,
    room.role ? `you: ${room.role}` : null,
  ].filter(Boolean).join(' · ');
  fill($('panel-summary'),
    el('span', { text: counts }),
    room.topic ? el('span', { class: 'sub', text: ` — ${room.topic}` }) : null,
    room.description ? el('span', { class: 'sub', text: ` — ${room.description}` }) : null);
  $('settings-form').hidden = !mod;
  $('invite-tools').hidden = !mod;
  $('sanction-box').hidden = !mod;
  $('bans-section').hidden = !mod;
  $('audit-section').hidden = !mod;
  $('room-close').hidden = !owner;
  $('room-leave').hidden = room.role === 'owner' || !isMember(room);

  const order = { owner: 0, moderator: 1, member: 2 };
  const people = [...p.participants].sort((a, b) => (order[a.role] ?? 3) - (order[b.role] ?? 3) || a.user.name.localeCompare(b.user.name));
  $('participant-list').replaceChildren(...people.map((x) => {
    const muted = x.muted_until && new Date(x.muted_until).getTime() > Date.now();
    const acts = [];
    const act = (action, text, cls) => acts.push(el('button', { type: 'button', 'data-action': action, class: cls, text }));
    if (x.user.id !== me().id) {
      if (owner && x.role === 'member') act('promote', 'Make moderator');
      if (owner && x.role === 'moderator') act('demote', 'Make member');
      if (owner && x.role !== 'owner' && room.role === 'owner') {
        if (p.handOver === x.user.id) act('owner-confirm', 'Confirm: hand over', 'danger');
        else act('owner', 'Hand over');
      }
      if (mod && outranks(room, x)) {
        act(muted ? 'unmute' : 'mute', muted ? 'Unmute' : 'Mute');
        act('kick', 'Kick', 'danger');
        act('ban', 'Ban', 'danger');
      }
    }
    return el('li', { 'data-user-id': x.user.id, 'data-name': x.user.name, 'data-role': x.role, 'data-muted': String(!!muted) },
      el('span', { class: 'dot', 'data-status': x.online ? 'online' : 'offline' }),
      el('button', { type: 'button', class: 'who', 'data-action': 'profile', text: x.user.id === me().id ? `${x.user.name} (you)` : x.user.name }),
      x.role !== 'member' ? el('span', { class: `tag ${x.role}`, text: x.role }) : null,
      muted ? el('span', { class: 'tag muted', 'data-testid': 'muted', title: forever(x.muted_until) ? 'until lifted' : `until ${new Date(x.muted_until).toLocaleString()}`, text: 'muted' }) : null,
      !x.online && x.last_seen ? el('span', { class: 'sub', text: `last seen ${ago(x.last_seen)}` }) : null,
      acts.length ? el('span', { class: 'acts' }, ...acts) : null);
  }));
  $('ban-list').replaceChildren(...(p.bans.length ? p.bans.map((b) => el('li', { 'data-user-id': b.user.id, 'data-name': b.user.name },
    el('span', { text: b.user.name }),
    el('span', { class: 'sub', text: `by ${b.by.name}${b.until ? `, until ${new Date(b.until).toLocaleString()}` : ', until lifted'}` }),
    el('span', { class: 'acts' }, el('button', { type: 'button', 'data-action': 'unban', text: 'Lift the ban' }))))
    : [el('li', { class: 'muted', text: 'Nobody is banned.' })]));
  $('audit-list').replaceChildren(...p.audit.map((e) => el('li', { 'data-action': e.action },
    el('span', { text: auditText(e) }),
    el('span', { class: 'meta', text: new Date(e.ts).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }) }))));
  $('audit-more').hidden = !p.auditMore;
}

const AUDIT_VERBS = {
  update: 'changed the settings', role: 'changed the role of', invite: 'invited', invite_link: 'created an invite link',
  kick: 'removed', ban: 'banned', unban: 'lifted the ban of', mute: 'muted', unmute: 'unmuted', close: 'closed the room',
};

function auditText(e) {
  const detail = e.detail && typeof e.detail === 'object'
    ? Object.entries(e.detail).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`).join(', ') : '';
  return `${e.actor.name} ${AUDIT_VERBS[e.action] ?? e.action}${e.target ? ` ${e.target.name}` : ''}${detail ? ` (${detail})` : ''}`;
}

async function moreAudit() {
  const p = state.panel;
  if (!p || !p.audit.length) return;
  try {
    const page = await state.rest.audit(p.room, { before: p.audit.at(-1).id, limit: AUDIT_PAGE });
    if (state.panel !== p) return;
    p.audit.push(...page.entries);
    p.auditMore = page.has_more;
    renderPanel();
  } catch (e) {
    panelStatus(`Could not read the audit log: ${e.message}`, 'error');
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const p = state.panel;
  const room = p && state.rooms.get(p.room);
  if (!room) return;
  const patch = {};
  const name = $('settings-name').value.trim();
  const topic = $('settings-topic').value.trim();
  const description = $('settings-description').value.trim();
  const max = Number($('settings-max').value);
  if (name && name !== room.name) patch.name = name;
  if (topic !== (room.topic ?? '')) patch.topic = topic;
  if (description !== (room.description ?? '')) patch.description = description;
  if ($('settings-private').checked !== (room.private === true)) patch.private = $('settings-private').checked;
  if (Number.isFinite(max) && max !== room.max_participants) patch.max_participants = max;
  if (isOwner(room)) {
    const raw = $('settings-retention').value.trim();
    const retention = raw === '' ? 0 : Number(raw);
    if (Number.isFinite(retention) && retention !== (room.retention ?? 0)) patch.retention = retention;
  }
  if (Object.keys(patch).length === 0) {
    panelStatus('Nothing to change.');
    return;
  }
  try {
    const updated = await state.rest.updateRoom(p.room, patch);
    const next = mergeRoom(updated);
    if (!updated.role && room.role) next.role = room.role;
    p.dirty = false;
    fillSettings();
    panelStatus('Saved.');
    renderRooms();
    updateTitle();
    renderPanel();
  } catch (e) {
    panelStatus(e.code === 'conflict' ? 'There are more participants than that.' : `Not saved: ${e.message}`, 'error');
  }
}

async function inviteUser(event) {
  event.preventDefault();
  const p = state.panel;
  const user = $('invite-user-input').value.trim();
  if (!p || !user) return;
  try {
    const inv = await state.rest.invite(p.room, user);
    $('invite-user-input').value = '';
    panelStatus(`Invited ${inv.user.name}.`);
    loadPanel();
  } catch (e) {
    panelStatus(e.code === 'not_found' ? `There is no user ${user}.`
      : e.code === 'conflict' ? `${user} is already here, or banned.` : `Could not invite: ${e.message}`, 'error');
  }
}

let suggestTimer = null;
/** Usernames starting with what is typed, as suggestions for the invite box. */
function suggestUsers() {
  clearTimeout(suggestTimer);
  const q = $('invite-user-input').value.trim();
  if (!q) return;
  suggestTimer = setTimeout(async () => {
    try {
      const { users } = await state.rest.searchUsers(q, { limit: 8 });
      $('invite-user-suggestions').replaceChildren(...users.map((u) => el('option', { value: u.name, label: u.display_name ? `${u.display_name} (${u.name})` : u.name })));
    } catch {
      /* suggestions are optional */
    }
  }, 200);
}

async function createLink(event) {
  event.preventDefault();
  const p = state.panel;
  if (!p) return;
  const uses = Number($('invite-link-uses').value);
  const opts = { expiresIn: Number($('invite-link-expiry').value) };
  if ($('invite-link-uses').value && Number.isFinite(uses)) opts.maxUses = uses;
  try {
    const link = await state.rest.createInviteLink(p.room, opts);
    const url = new URL(location.href);
    url.search = '';
    url.hash = `join=${link.token}`;
    const out = $('invite-link-output');
    out.value = url.href;
    out.hidden = false;
    out.focus();
    out.select();
    panelStatus(`A link${link.max_uses ? ` for ${link.max_uses} ${link.max_uses === 1 ? 'use' : 'uses'}` : ''} until ${new Date(link.expires_at).toLocaleString()}; it is shown only now.`);
    loadPanel();
  } catch (e) {
    panelStatus(`Could not create a link: ${e.message}`, 'error');
  }
}

/** The buttons of the participant and ban lists. */
async function onPanelClick(event) {
  const button = event.target.closest('button[data-action]');
  const li = event.target.closest('li[data-user-id]');
  const p = state.panel;
  if (!button || !li || !p) return;
  const room = p.room;
  const userId = li.dataset.userId;
  const name = li.dataset.name;
  const action = button.dataset.action;
  if (action === 'profile') {
    openProfile(userId);
    return;
  }
  if (action === 'owner') {
    p.handOver = userId;
    renderPanel();
    return;
  }
  const duration = Number($('sanction-duration').value) || undefined;
  const opts = duration ? { duration } : {};
  button.disabled = true;
  try {
    if (action === 'promote') await state.rest.setRole(room, userId, 'moderator');
    else if (action === 'demote') await state.rest.setRole(room, userId, 'member');
    else if (action === 'owner-confirm') await state.rest.setRole(room, userId, 'owner');
    else if (action === 'kick') await state.rest.kick(room, userId);
    else if (action === 'ban') await state.rest.ban(room, userId, opts);
    else if (action === 'unban') await state.rest.unban(room, userId);
    else if (action === 'mute') await state.rest.mute(room, userId, opts);
    else if (action === 'unmute') await state.rest.unmute(room, userId);
    else return;
    p.handOver = null;
    const done = {
      promote: `${name} is a moderator now.`, demote: `${name} is a member now.`, 'owner-confirm': `${name} owns the room now.`,
      kick: `${name} was removed.`, ban: `${name} was banned.`, unban: `${name}'s ban was lifted.`, mute: `${name} was muted.`, unmute: `${name} was unmuted.`,
    };
    panelStatus(done[action]);
    if (action === 'owner-confirm') refreshRoom(room);
  } catch (e) {
    panelStatus(`Could not do that: ${e.message}`, 'error');
  }
  loadPanel();
}

async function leaveCurrentRoom() {
  const p = state.panel;
  if (!p) return;
  const id = p.room;
  const name = state.rooms.get(id)?.name ?? 'the room';
  try {
    state.leftHere.add(id);
    await state.tp.leave(id);
    leaveView(id, `You left # ${name}.`);
  } catch (e) {
    state.leftHere.delete(id);
    panelStatus(e.code === 'conflict' ? 'The owner hands the room over (or closes it) before leaving.' : `Could not leave: ${e.message}`, 'error');
  }
}

async function closeCurrentRoom(event) {
  const p = state.panel;
  if (!p) return;
  const button = event.currentTarget;
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Really close it? Click again';
    return;
  }
  delete button.dataset.confirm;
  button.textContent = 'Close this room for everyone';
  try {
    await state.rest.closeRoom(p.room);
  } catch (e) {
    panelStatus(`Could not close the room: ${e.message}`, 'error');
  }
}

// ---------------------------------------------------------------- profiles

function onProfile(p) {
  state.profiles.set(p.id, p);
  const entry = state.people.get(p.id);
  if (entry) entry.display_name = p.display_name ?? null;
  if (state.profileShown === p.id || state.profileShown === p.name) renderProfile(p);
}

async function openProfile(idOrName) {
  const dialog = $('profile-card');
  state.profileShown = idOrName;
  const known = state.profiles.get(idOrName);
  if (known) renderProfile(known);
  else $('profile-body').replaceChildren(el('p', { class: 'muted', text: 'Loading the profile…' }));
  $('profile-message').hidden = true;
  $('profile-edit-open').hidden = true;
  if (!dialog.open) dialog.showModal();
  try {
    const p = await state.rest.user(idOrName);
    state.profiles.set(p.id, p);
    if (state.profileShown === idOrName) renderProfile(p);
  } catch (e) {
    if (state.profileShown === idOrName) {
      $('profile-body').replaceChildren(el('p', { class: 'error', text: e.code === 'not_found' ? 'No such user.' : `Could not read the profile: ${e.message}` }));
    }
  }
}

/** An https avatar: an image when the page's Content-Security-Policy lets it load (same origin), else a link. */
function avatarNodes(p) {
  const initial = el('span', { class: 'avatar', 'aria-hidden': 'true', text: (p.display_name || p.name || '?').slice(0, 1).toUpperCase() });
  let url = null;
  try {
    url = p.avatar_url ? new URL(p.avatar_url) : null;
  } catch {
    url = null;
  }
  if (!url || url.protocol !== 'https:') return { picture: initial, link: null };
  if (url.origin === location.origin) return { picture: el('img', { class: 'avatar', src: url.href, alt: '' }), link: null };
  return { picture: initial, link: el('a', { href: url.href, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'profile-avatar-link', text: 'avatar ↗' }) };
}

function renderProfile(p) {
  state.profileShown = p.id;
  const mine = p.id === me().id;
  const { picture, link } = avatarNodes(p);
  const status = p.online ? p.status : 'offline';
  $('profile-card').dataset.userId = p.id;
  fill($('profile-body'),
    el('div', { class: 'head' }, picture,
      el('div', {},
        el('h2', { 'data-testid': 'profile-name', text: p.display_name || p.name }),
        el('span', { class: 'handle', text: `@${p.name}` }), link ? ' · ' : null, link)),
    el('p', { class: 'status', 'data-testid': 'profile-status', 'data-status': status },
      el('span', { class: 'dot', 'data-status': status }),
      `${status}${p.status_text ? ` · ${p.status_text}` : ''}${!p.online && p.last_seen ? ` · last seen ${ago(p.last_seen)}` : ''}`),
    p.bio ? el('p', { class: 'bio', 'data-testid': 'profile-bio-text', text: p.bio }) : null,
    p.abilities?.length ? el('ul', { class: 'tags', 'data-testid': 'profile-abilities-list' }, ...p.abilities.map((a) => el('li', { text: a }))) : null);
  $('profile-message').hidden = mine;
  $('profile-edit-open').hidden = !mine;
}

function closeProfile() {
  state.profileShown = null;
  $('profile-card').close();
}

const PROFILE_FIELDS = ['profile-display-name', 'profile-bio', 'profile-avatar', 'profile-abilities'];

/** The editor opens with its fields disabled until the profile is read, so nothing typed is overwritten. */
async function openProfileEditor() {
  closeProfile();
  $('profile-error').textContent = '';
  const save = $('profile-form').querySelector('button[type="submit"]');
  for (const id of PROFILE_FIELDS) $(id).disabled = true;
  save.disabled = true;
  $('profile-edit').showModal();
  try {
    const p = await state.rest.me();
    state.profiles.set(p.id, p);
    $('profile-display-name').value = p.display_name ?? '';
    $('profile-bio').value = p.bio ?? '';
    $('profile-avatar').value = p.avatar_url ?? '';
    $('profile-abilities').value = (p.abilities ?? []).join(', ');
  } catch (e) {
    // Saving blank fields would clear the profile: the form stays shut.
    $('profile-error').textContent = `Could not read your profile: ${e.message}`;
    return;
  }
  for (const id of PROFILE_FIELDS) $(id).disabled = false;
  save.disabled = false;
  $('profile-display-name').focus();
}

async function saveProfile(event) {
  event.preventDefault();
  const abilities = $('profile-abilities').value.split(',').map((a) => a.trim()).filter(Boolean);
  const patch = {
    display_name: $('profile-display-name').value.trim(),
    bio: $('profile-bio').value.trim(),
    avatar_url: $('profile-avatar').value.trim(),
    abilities,
  };
  try {
    const p = await state.rest.updateProfile(patch);
    state.profiles.set(p.id, p);
    $('profile-edit').close();
    openProfile(p.id);
  } catch (e) {
    $('profile-error').textContent = `Not saved: ${e.message}`;
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
function loadOlder() {
  const key = state.current;
  if (!key || !conversation(key).hasMore) return;
  if (key.startsWith('room:')) loadHistory(key.slice(5));
  else loadDmHistory(key.slice(3));
}
$('older').addEventListener('click', loadOlder);
$('messages').addEventListener('scroll', () => {
  if ($('messages').scrollTop === 0) loadOlder();
});
for (const id of ['message-items', 'thread-parent', 'thread-items']) {
  $(id).addEventListener('click', onMessageClick);
  $(id).addEventListener('submit', onMessageSubmit);
  $(id).addEventListener('input', onMessageInput);
  $(id).addEventListener('keydown', onMessageKey);
}
$('thread-composer').addEventListener('submit', sendThreadReply);
$('thread-close').addEventListener('click', closeThread);
$('search-form').addEventListener('submit', runSearch);
$('search-more').addEventListener('click', () => runSearch(null, { more: true }));
$('search-close').addEventListener('click', closeSearch);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && state.current?.startsWith('room:')) scheduleRead(state.current.slice(5));
});
$('menu').addEventListener('click', toggleMenu);
$('me').addEventListener('click', () => openProfile(me().id));
$('invite-badge').addEventListener('click', openInvites);
$('bell').addEventListener('click', () => ($('notifications-panel').hidden ? openNotifications() : closeNotifications()));
$('notifications-close').addEventListener('click', closeNotifications);
$('notifications-read-all').addEventListener('click', markAllNotificationsRead);
$('notifications-more').addEventListener('click', () => loadNotifications({ more: true }));
$('notification-list').addEventListener('click', onNotificationClick);
$('notification-list').addEventListener('keydown', (event) => {
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    onNotificationClick(event);
  }
});
document.addEventListener('click', (event) => {
  // A click elsewhere closes the panel.
  if ($('notifications-panel').hidden) return;
  if (!event.target.isConnected || $('notifications-panel').contains(event.target) || $('bell').contains(event.target)) return;
  closeNotifications();
});
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && !$('notifications-panel').hidden) closeNotifications();
});
$('announcements').addEventListener('click', onAnnouncementsClick);
$('announce-form').addEventListener('submit', postAnnouncement);
$('apikeys').addEventListener('toggle', () => {
  if ($('apikeys').open) {
    loadApiKeys();
    loadWebhooks();
    if (state.hooks.open) startDeliveryRefresh();
  } else {
    stopDeliveryRefresh();
  }
});
$('apikey-form').addEventListener('submit', createApiKey);
$('apikey-copy').addEventListener('click', () => copySecret('apikey-secret', 'apikey-status'));
$('apikey-secret-done').addEventListener('click', hideApiKeySecret);
$('apikey-list').addEventListener('click', onApiKeyClick);
$('webhook-key').addEventListener('change', () => {
  state.hookKey = $('webhook-key').value || null;
  state.hooks.open = null;
  state.hooks.list = [];
  stopDeliveryRefresh();
  renderHookKeys();
  renderWebhooks();
  loadWebhooks();
});
$('webhook-key-form').addEventListener('submit', useHookKey);
$('webhook-form').addEventListener('submit', createWebhook);
$('webhook-copy').addEventListener('click', () => copySecret('webhook-secret', 'webhook-status'));
$('webhook-secret-done').addEventListener('click', hideWebhookSecret);
$('webhook-list').addEventListener('click', onWebhookListClick);
renderHookKeys();
$('invite-list').addEventListener('click', onInviteClick);
$('join-link-form').addEventListener('submit', submitJoinLink);
$('banner-close').addEventListener('click', () => {
  $('banner').hidden = true;
});
$('room-panel-open').addEventListener('click', () => (state.panel ? closePanel() : openPanel()));
$('panel-close').addEventListener('click', closePanel);
$('settings-form').addEventListener('submit', saveSettings);
$('settings-form').addEventListener('input', () => {
  if (state.panel) state.panel.dirty = true;
});
$('invite-user-form').addEventListener('submit', inviteUser);
$('invite-user-input').addEventListener('input', suggestUsers);
$('invite-link-form').addEventListener('submit', createLink);
$('participant-list').addEventListener('click', onPanelClick);
$('ban-list').addEventListener('click', onPanelClick);
$('audit-more').addEventListener('click', moreAudit);
$('room-leave').addEventListener('click', leaveCurrentRoom);
$('room-close').addEventListener('click', closeCurrentRoom);
$('profile-close').addEventListener('click', closeProfile);
$('profile-card').addEventListener('close', () => {
  state.profileShown = null;
});
$('profile-message').addEventListener('click', () => {
  const id = $('profile-card').dataset.userId;
  closeProfile();
  if (id && id !== me().id) {
    const p = state.profiles.get(id);
    if (p && !state.people.has(id)) state.people.set(id, { id, name: p.name, status: p.online ? p.status : 'offline' });
    openDm(id);
  }
});
$('profile-edit-open').addEventListener('click', openProfileEditor);
$('profile-form').addEventListener('submit', saveProfile);
$('profile-cancel').addEventListener('click', () => $('profile-edit').close());
window.addEventListener('hashchange', () => {
  const token = takeLinkFromUrl();
  if (!token) return;
  if (state.rest) joinByLink(token);
  else state.pendingLink = token;
});
setInterval(renderTyping, 1000);

state.pendingLink = takeLinkFromUrl();
const saved = loadSession();
if (saved) start(saved);
else $('login').hidden = false;
