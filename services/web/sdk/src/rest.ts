import { enc, query, requestJson, type JsonRequest, type Method } from "./http.js";
import type {
  Announcement,
  ApiKeyInfo,
  AnnouncementList,
  AuditPage,
  Ban,
  ConnectionAnalytics,
  ConnectTicket,
  CreateAnnouncement,
  CreateApiKey,
  CreatedApiKey,
  CreateRoom,
  DirectMessage,
  DmConversation,
  DmPage,
  DmQuery,
  DmState,
  HistoryQuery,
  Invite,
  InviteLink,
  JoinedRoom,
  LoginResponse,
  MarkNotificationsRead,
  MessagePage,
  NotificationList,
  NotificationQuery,
  NotificationsRead,
  OnlineUser,
  Participant,
  Profile,
  ProfilePatch,
  Room,
  RoomPatch,
  RoomMessage,
  RoomRole,
  SearchPage,
  SendMessageOptions,
  SearchQuery,
  ThreadPage,
  ThreadQuery,
  User,
  UserHits,
} from "./types.js";

export interface TelepathRestOptions {
  /** The api's origin, e.g. `http://127.0.0.1:8080` ("" for the page's own origin in a browser). */
  baseUrl: string;
  /** A token, or a callback giving one (called for every request). */
  token?: string | (() => string | Promise<string>);
  /** fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/**
 * The REST api over fetch. Every non-2xx answer rejects with
 * TelepathError(code, message, status) from the `{"error":{code,message}}`
 * body; a failed fetch rejects with code `network`.
 */
export class TelepathRest {
  private readonly baseUrl: string;
  private readonly tokenSource?: string | (() => string | Promise<string>);
  private readonly fetchImpl?: typeof fetch;

  constructor(opts: TelepathRestOptions) {
    if (typeof opts === "string") {
      throw new TypeError('TelepathRest: pass an options object, not a string: new TelepathRest({ baseUrl: "http://host:8080", token })');
    }
    if (!opts || typeof opts !== "object") throw new TypeError("TelepathRest: pass an options object: new TelepathRest({ baseUrl, token })");
    if (opts.baseUrl !== undefined && typeof opts.baseUrl !== "string") throw new TypeError("TelepathRest: opts.baseUrl must be a string");
    if (opts.token !== undefined && typeof opts.token !== "string" && typeof opts.token !== "function") {
      throw new TypeError("TelepathRest: opts.token must be a string or a function returning one");
    }
    if (opts.fetch !== undefined && typeof opts.fetch !== "function") throw new TypeError("TelepathRest: opts.fetch must be a function");
    this.baseUrl = (opts.baseUrl ?? "").replace(/\/+$/, "");
    if (opts.token !== undefined) this.tokenSource = opts.token;
    if (opts.fetch !== undefined) this.fetchImpl = opts.fetch;
  }

  /** Dev login (`TELEPATH_DEV_LOGIN`): creates the user if new. */
  static async login(baseUrl: string, username: string, role?: "user" | "admin"): Promise<{ token: string; user: User }> {
    const body: Record<string, string> = { username };
    if (role !== undefined) body["role"] = role;
    return new TelepathRest({ baseUrl }).call<LoginResponse>("POST", "/auth/login", body, false);
  }

  /**
   * A connect ticket (`POST /auth/ticket`): a single-use secret, valid 30 s,
   * for `GET /connect?ticket=` instead of the token in the URL. `Telepath`
   * asks for one before every (re)connect with `auth: "ticket"` (the
   * default in browsers).
   */
  ticket(): Promise<ConnectTicket> {
    return this.call<ConnectTicket>("POST", "/auth/ticket");
  }

  /** Active public rooms and the caller's rooms; the caller's carry `unread`, `unread_capped` and `read_seq`. */
  async listRooms(): Promise<Room[]> {
    return (await this.call<{ rooms: Room[] }>("GET", "/rooms")).rooms;
  }

  createRoom(r: CreateRoom): Promise<Room> {
    return this.call<Room>("POST", "/rooms", r);
  }

  /** Becomes a participant (409 `room_full`, 404 for private rooms). */
  joinRoom(id: string): Promise<Participant> {
    return this.call<Participant>("POST", `/rooms/${enc(id)}/join`);
  }

  async leaveRoom(id: string): Promise<void> {
    await this.call<void>("DELETE", `/rooms/${enc(id)}/leave`);
  }

  /** The owner or an admin closes the room. */
  async closeRoom(id: string): Promise<void> {
    await this.call<void>("DELETE", `/rooms/${enc(id)}`);
  }

  /**
   * Sends a room message over REST (`POST /rooms/{id}/messages`, the `send`
   * frame's twin): resolves once it is committed with the message as the
   * room's `message` event carries it (`id`, `seq`, `from`, `body`, `kind`,
   * `ts`, `reply_to`), published to the room like any message. Only
   * participants may send (`forbidden` 403: join first; also a closed room
   * or a muted member). Errors: `bad_request` 400, `forbidden` 403,
   * `not_found` 404 (a private room the caller is not in, or a `replyTo`
   * naming no message of the room), `conflict` 409 (a `clientId` used for a
   * DM), `too_large` 413 (over 4096 characters or the server's byte limit),
   * `rate_limited` 429 (the sender's budget, shared with their connections;
   * `retryAfter` seconds). With `clientId` a retry is safe: a repeat (over
   * REST or the socket) answers the first message and stores nothing.
   * `Telepath.send` stays the way to send from a connected client (queued
   * while offline, resent after drops).
   */
  sendMessage(room: string, body: string, opts: SendMessageOptions = {}): Promise<RoomMessage> {
    const payload: Record<string, string> = { body };
    if (opts.kind !== undefined) payload["kind"] = opts.kind;
    if (opts.clientId !== undefined) payload["client_id"] = opts.clientId;
    if (opts.replyTo !== undefined) payload["reply_to"] = opts.replyTo;
    return this.call<RoomMessage>("POST", `/rooms/${enc(room)}/messages`, payload);
  }

  /** A page of history in seq order: `before` alone gives the newest below it, `after` the oldest above it. */
  history(room: string, q: HistoryQuery = {}): Promise<MessagePage> {
    const params = new URLSearchParams();
    if (q.before !== undefined) params.set("before", String(q.before));
    if (q.after !== undefined) params.set("after", String(q.after));
    if (q.limit !== undefined) params.set("limit", String(q.limit));
    const qs = params.toString();
    return this.call<MessagePage>("GET", `/rooms/${enc(room)}/messages${qs ? `?${qs}` : ""}`);
  }

  /** The message (`parent`, as it is now) and a page of its replies in seq order; `before`/`after`/`limit` like history (404 for a message not in the room). */
  thread(room: string, messageId: string, q: ThreadQuery = {}): Promise<ThreadPage> {
    const qs = query({ before: q.before, after: q.after, limit: q.limit });
    return this.call<ThreadPage>("GET", `/rooms/${enc(room)}/messages/${enc(messageId)}/thread${qs}`);
  }

  /**
   * Full-text search over the caller's rooms and DMs: every word must occur
   * (the last as a prefix); snippets mark matches with « and ». Page with
   * `offset` = the previous page's `next_offset`.
   */
  search(q: string, opts: SearchQuery = {}): Promise<SearchPage> {
    const before = opts.before instanceof Date ? opts.before.toISOString() : opts.before;
    const qs = query({ q, room: opts.room, before, limit: opts.limit, offset: opts.offset });
    return this.call<SearchPage>("GET", `/search${qs}`);
  }

  /** The caller's conversation with one user (id or name), both directions, a page in time order; DM ids as `before`/`after` anchors. */
  dmConversation(withUser: string, q: DmQuery = {}): Promise<DmPage> {
    const qs = query({ with: withUser, before: q.before, after: q.after, limit: q.limit });
    return this.call<DmPage>("GET", `/dms${qs}`);
  }

  /** The caller's conversations, most recent first (at most 200), each with its last DM and unread count. */
  async dmConversations(): Promise<DmConversation[]> {
    return (await this.call<{ conversations: DmConversation[] }>("GET", "/dms")).conversations;
  }

  /** Each participant carries `read_seq`, their read cursor. */
  async participants(room: string): Promise<Participant[]> {
    return (await this.call<{ participants: Participant[] }>("GET", `/rooms/${enc(room)}/participants`)).participants;
  }

  async online(): Promise<OnlineUser[]> {
    return (await this.call<{ users: OnlineUser[] }>("GET", "/presence/online")).users;
  }

  /** The caller's DMs not acked yet, oldest first. */
  async pendingDms(): Promise<DirectMessage[]> {
    return (await this.call<{ messages: DirectMessage[] }>("GET", "/dms/pending")).messages;
  }

  /** Where one DM stands (sender or recipient only). */
  dmState(id: string): Promise<DmState> {
    return this.call<DmState>("GET", `/dms/${enc(id)}`);
  }

  // ---------------------------------------------------------------------
  // Rooms people can run: settings, roles, invitations, moderation, profiles
  // ---------------------------------------------------------------------

  /**
   * One room with `member_count`, `online_count`, `topic` and the caller's
   * `role` (absent when not a participant); 404 for a private room the caller
   * is not in, and for one they were kicked or banned from.
   */
  getRoom(id: string): Promise<Room> {
    return this.call<Room>("GET", `/rooms/${enc(id)}`);
  }

  /** Owner/moderators: changes any of name, description, topic, max_participants, private (`""` clears description/topic); `room_updated` follows. */
  updateRoom(id: string, patch: RoomPatch): Promise<Room> {
    return this.call<Room>("PATCH", `/rooms/${enc(id)}`, patch);
  }

  /**
   * Owner/admins: sets a participant's role (`userId`: the user's id, or their username);
   * `owner` hands the room over (the old owner becomes a moderator).
   * Resolves with the participant.
   */
  setRole(room: string, userId: string, role: RoomRole): Promise<Participant> {
    return this.call<Participant>("PATCH", `/rooms/${enc(room)}/participants/${enc(userId)}`, { role });
  }

  /** Owner/moderators: invites a user (id or username); the pending invitation if there is one already. */
  invite(room: string, user: string): Promise<Invite> {
    return this.call<Invite>("POST", `/rooms/${enc(room)}/invites`, { user });
  }

  /** The caller's pending invitations into open rooms, newest first. */
  async invites(): Promise<Invite[]> {
    return (await this.call<{ invites: Invite[] }>("GET", "/invites")).invites;
  }

  /** The invitee joins the room (even a private one). */
  acceptInvite(id: string): Promise<JoinedRoom> {
    return this.call<JoinedRoom>("POST", `/invites/${enc(id)}/accept`);
  }

  async declineInvite(id: string): Promise<void> {
    await this.call<void>("POST", `/invites/${enc(id)}/decline`);
  }

  /**
   * Owner/moderators: a link anyone can join the room with. `maxUses`
   * 1–100000 (default unlimited), `expiresIn` seconds 60–2592000 (default 7
   * days). The token is shown once.
   */
  createInviteLink(room: string, opts: { maxUses?: number; expiresIn?: number } = {}): Promise<InviteLink> {
    const body: Record<string, number> = {};
    if (opts.maxUses !== undefined) body["max_uses"] = opts.maxUses;
    if (opts.expiresIn !== undefined) body["expires_in"] = opts.expiresIn;
    return this.call<InviteLink>("POST", `/rooms/${enc(room)}/invite-links`, body);
  }

  /** Joins the room of an invite link (a participant already: the same answer, no use counted). */
  joinByLink(token: string): Promise<JoinedRoom> {
    return this.call<JoinedRoom>("POST", `/join/${enc(token)}`);
  }

  /** Owner/moderators: removes a participant (`member` `left` `reason: "kicked"`); they may join a public room again. */
  async kick(room: string, user: string): Promise<void> {
    await this.call<void>("POST", `/rooms/${enc(room)}/kick`, { user });
  }

  /** Owner/moderators: bans a user (`duration` in seconds; absent: until lifted), removing them if they take part. */
  async ban(room: string, user: string, opts: { duration?: number } = {}): Promise<void> {
    const body: Record<string, unknown> = { user };
    if (opts.duration !== undefined) body["duration"] = opts.duration;
    await this.call<void>("POST", `/rooms/${enc(room)}/ban`, body);
  }

  async unban(room: string, user: string): Promise<void> {
    await this.call<void>("DELETE", `/rooms/${enc(room)}/ban/${enc(user)}`);
  }

  /** Owner/moderators: the bans in force, newest first. */
  async bans(room: string): Promise<Ban[]> {
    return (await this.call<{ bans: Ban[] }>("GET", `/rooms/${enc(room)}/bans`)).bans;
  }

  /** Owner/moderators: a participant may read but not send, edit, react or type (`duration` seconds; absent: until lifted). */
  async mute(room: string, user: string, opts: { duration?: number } = {}): Promise<void> {
    const body: Record<string, unknown> = { user };
    if (opts.duration !== undefined) body["duration"] = opts.duration;
    await this.call<void>("POST", `/rooms/${enc(room)}/mute`, body);
  }

  async unmute(room: string, user: string): Promise<void> {
    await this.call<void>("DELETE", `/rooms/${enc(room)}/mute/${enc(user)}`);
  }

  /** Owner/moderators: the room's audit log, newest first; `before` an entry id, `limit` 1–200 (default 50). */
  audit(room: string, q: { before?: number; limit?: number } = {}): Promise<AuditPage> {
    return this.call<AuditPage>("GET", `/rooms/${enc(room)}/audit${query({ before: q.before, limit: q.limit })}`);
  }

  /** A user's profile, by id or username (404 for an unknown user). */
  user(idOrName: string): Promise<Profile> {
    return this.call<Profile>("GET", `/users/${enc(idOrName)}`);
  }

  /** The caller's profile. */
  me(): Promise<Profile> {
    return this.call<Profile>("GET", "/users/me");
  }

  /** Changes the caller's profile (`""`/`[]` clears a field); resolves with it, and a `profile` event follows. */
  updateProfile(patch: ProfilePatch): Promise<Profile> {
    return this.call<Profile>("PATCH", "/users/me", patch);
  }

  /** Users whose username starts with `q` (case-sensitive), by username; pass `next` as `after` for the next page. `limit` 1–50 (default 20). */
  searchUsers(q: string, opts: { after?: string; limit?: number } = {}): Promise<UserHits> {
    return this.call<UserHits>("GET", `/users${query({ q, after: opts.after, limit: opts.limit })}`);
  }

  // ---------------------------------------------------------------------
  // Notifications and announcements
  // ---------------------------------------------------------------------

  /**
   * The caller's notifications, newest first, with their `read` flag, the
   * `unread` total and `has_more`: `unread` true/false for unread or read
   * ones only, `before` a notification id (the last one of the previous
   * page), `limit` 1–100 (default 50).
   */
  notifications(opts: NotificationQuery = {}): Promise<NotificationList> {
    const qs = query({ unread: opts.unread === undefined ? undefined : String(opts.unread), before: opts.before, limit: opts.limit });
    return this.call<NotificationList>("GET", `/notifications${qs}`);
  }

  /**
   * Marks notifications read: `{ids}` (1–500; unknown ids are ignored) or
   * `{up_to}` (every one up to that id, included). Resolves with the new
   * `unread` total; every connection of the user gets `notifications_read`.
   */
  markNotificationsRead(which: MarkNotificationsRead): Promise<NotificationsRead> {
    const body = "ids" in which ? { ids: which.ids } : { up_to: which.up_to };
    return this.call<NotificationsRead>("POST", "/notifications/read", body);
  }

  /** The active announcements, newest first, each with `dismissed` (whether the caller dismissed it). */
  async announcements(): Promise<Announcement[]> {
    return (await this.call<AnnouncementList>("GET", "/announcements")).announcements;
  }

  /** Admins only: an announcement to everyone (`announcement` events follow). */
  createAnnouncement(a: CreateAnnouncement): Promise<Announcement> {
    const body: Record<string, string> = { title: a.title, body: a.body, level: a.level };
    if (a.expires_at !== undefined) body["expires_at"] = a.expires_at instanceof Date ? a.expires_at.toISOString() : a.expires_at;
    return this.call<Announcement>("POST", "/announcements", body);
  }

  /** Dismisses an announcement for the caller on every device (`announcement_dismissed` follows). */
  async dismissAnnouncement(id: string): Promise<void> {
    await this.call<void>("POST", `/announcements/${enc(id)}/dismiss`);
  }

  /** Admins only. */
  broadcast(body: string): Promise<{ id: string }> {
    return this.call<{ id: string }>("POST", "/messages/broadcast", { body });
  }

  /** Admins only: closes every connection of the user with 4003. */
  disconnectUser(userId: string): Promise<{ disconnected: number }> {
    return this.call<{ disconnected: number }>("POST", "/admin/disconnect", { user_id: userId });
  }

  /**
   * Admins only: every token of the user issued before now is refused from
   * now on (REST 401, handshake 401), and their live connections close with
   * `bye` `token_revoked` and 4001 on every gateway.
   */
  revokeUser(userId: string): Promise<{ user_id: string; valid_after: number }> {
    return this.call<{ user_id: string; valid_after: number }>(
      "POST",
      `/admin/users/${encodeURIComponent(userId)}/revoke`,
    );
  }

  /**
   * Admins only: an API key for the server API (`POST /admin/api-keys`;
   * `TelepathServer` uses it). Its secret (`key`, `tpk_…`) is in this
   * answer only: the server stores its hash.
   */
  createApiKey(k: CreateApiKey): Promise<CreatedApiKey> {
    const body: Record<string, unknown> = { name: k.name, scopes: k.scopes };
    if (k.room_prefix !== undefined) body["room_prefix"] = k.room_prefix;
    return this.call<CreatedApiKey>("POST", "/admin/api-keys", body);
  }

  /** Admins only: every API key, newest first, revoked ones too (never their secrets). */
  async listApiKeys(): Promise<ApiKeyInfo[]> {
    return (await this.call<{ keys: ApiKeyInfo[] }>("GET", "/admin/api-keys")).keys;
  }

  /** Admins only: the key is refused (401 `revoked_api_key`) from now on; 404 for an unknown id. */
  async revokeApiKey(id: string): Promise<void> {
    await this.call<void>("DELETE", `/admin/api-keys/${enc(id)}`);
  }

  /** Admins only. */
  analytics(): Promise<ConnectionAnalytics> {
    return this.call<ConnectionAnalytics>("GET", "/analytics/connections");
  }

  /** Any route: JSON in, JSON out (undefined for 204). */
  async call<T>(method: Method, path: string, body?: unknown, auth = true): Promise<T> {
    let token: string | undefined;
    if (auth && this.tokenSource !== undefined) {
      const src = this.tokenSource;
      token = (typeof src === "function" ? await src() : src) || undefined;
    }
    const req: JsonRequest = {
      fetch: this.fetchImpl ?? globalThis.fetch,
      method,
      url: `${this.baseUrl}${path}`,
      // What error messages name: the path, with an invite link's token left out.
      label: `${method} ${safePath(path)}`,
      body,
      secrets: [linkSecret(path)],
    };
    if (token !== undefined) req.bearer = token;
    return requestJson<T>(req);
  }
}

/** A route for error messages: an invite link's token (`/join/{token}`) is a secret. */
function safePath(path: string): string {
  return path.replace(/^\/join\/[^/?#]+/, "/join/[redacted]");
}

/** The invite link token in a `/join/{token}` path (as encoded there), else undefined. */
function linkSecret(path: string): string | undefined {
  return /^\/join\/([^/?#]+)/.exec(path)?.[1];
}


