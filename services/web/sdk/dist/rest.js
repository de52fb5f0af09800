import { enc, query, requestJson } from "./http.js";
/**
 * The REST api over fetch. Every non-2xx answer rejects with
 * TelepathError(code, message, status) from the `{"error":{code,message}}`
 * body; a failed fetch rejects with code `network`.
 */
export class TelepathRest {
    baseUrl;
    tokenSource;
    fetchImpl;
    constructor(opts) {
        if (typeof opts === "string") {
            throw new TypeError('TelepathRest: pass an options object, not a string: new TelepathRest({ baseUrl: "http://host:8080", token })');
        }
        if (!opts || typeof opts !== "object")
            throw new TypeError("TelepathRest: pass an options object: new TelepathRest({ baseUrl, token })");
        if (opts.baseUrl !== undefined && typeof opts.baseUrl !== "string")
            throw new TypeError("TelepathRest: opts.baseUrl must be a string");
        if (opts.token !== undefined && typeof opts.token !== "string" && typeof opts.token !== "function") {
            throw new TypeError("TelepathRest: opts.token must be a string or a function returning one");
        }
        if (opts.fetch !== undefined && typeof opts.fetch !== "function")
            throw new TypeError("TelepathRest: opts.fetch must be a function");
        this.baseUrl = (opts.baseUrl ?? "").replace(/\/+$/, "");
        if (opts.token !== undefined)
            this.tokenSource = opts.token;
        if (opts.fetch !== undefined)
            this.fetchImpl = opts.fetch;
    }
    /** Dev login (`TELEPATH_DEV_LOGIN`): creates the user if new. */
    static async login(baseUrl, username, role) {
        const body = { username };
        if (role !== undefined)
            body["role"] = role;
        return new TelepathRest({ baseUrl }).call("POST", "/auth/login", body, false);
    }
    /**
     * A connect ticket (`POST /auth/ticket`): a single-use secret, valid 30 s,
     * for `GET /connect?ticket=` instead of the token in the URL. `Telepath`
     * asks for one before every (re)connect with `auth: "ticket"` (the
     * default in browsers).
     */
    ticket() {
        return this.call("POST", "/auth/ticket");
    }
    /** Active public rooms and the caller's rooms; the caller's carry `unread`, `unread_capped` and `read_seq`. */
    async listRooms() {
        return (await this.call("GET", "/rooms")).rooms;
    }
    createRoom(r) {
        return this.call("POST", "/rooms", r);
    }
    /** Becomes a participant (409 `room_full`, 404 for private rooms). */
    joinRoom(id) {
        return this.call("POST", `/rooms/${enc(id)}/join`);
    }
    async leaveRoom(id) {
        await this.call("DELETE", `/rooms/${enc(id)}/leave`);
    }
    /** The owner or an admin closes the room. */
    async closeRoom(id) {
        await this.call("DELETE", `/rooms/${enc(id)}`);
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
    sendMessage(room, body, opts = {}) {
        const payload = { body };
        if (opts.kind !== undefined)
            payload["kind"] = opts.kind;
        if (opts.clientId !== undefined)
            payload["client_id"] = opts.clientId;
        if (opts.replyTo !== undefined)
            payload["reply_to"] = opts.replyTo;
        return this.call("POST", `/rooms/${enc(room)}/messages`, payload);
    }
    /** A page of history in seq order: `before` alone gives the newest below it, `after` the oldest above it. */
    history(room, q = {}) {
        const params = new URLSearchParams();
        if (q.before !== undefined)
            params.set("before", String(q.before));
        if (q.after !== undefined)
            params.set("after", String(q.after));
        if (q.limit !== undefined)
            params.set("limit", String(q.limit));
        const qs = params.toString();
        return this.call("GET", `/rooms/${enc(room)}/messages${qs ? `?${qs}` : ""}`);
    }
    /** The message (`parent`, as it is now) and a page of its replies in seq order; `before`/`after`/`limit` like history (404 for a message not in the room). */
    thread(room, messageId, q = {}) {
        const qs = query({ before: q.before, after: q.after, limit: q.limit });
        return this.call("GET", `/rooms/${enc(room)}/messages/${enc(messageId)}/thread${qs}`);
    }
    /**
     * Full-text search over the caller's rooms and DMs: every word must occur
     * (the last as a prefix); snippets mark matches with « and ». Page with
     * `offset` = the previous page's `next_offset`.
     */
    search(q, opts = {}) {
        const before = opts.before instanceof Date ? opts.before.toISOString() : opts.before;
        const qs = query({ q, room: opts.room, before, limit: opts.limit, offset: opts.offset });
        return this.call("GET", `/search${qs}`);
    }
    /** The caller's conversation with one user (id or name), both directions, a page in time order; DM ids as `before`/`after` anchors. */
    dmConversation(withUser, q = {}) {
        const qs = query({ with: withUser, before: q.before, after: q.after, limit: q.limit });
        return this.call("GET", `/dms${qs}`);
    }
    /** The caller's conversations, most recent first (at most 200), each with its last DM and unread count. */
    async dmConversations() {
        return (await this.call("GET", "/dms")).conversations;
    }
    /** Each participant carries `read_seq`, their read cursor. */
    async participants(room) {
        return (await this.call("GET", `/rooms/${enc(room)}/participants`)).participants;
    }
    async online() {
        return (await this.call("GET", "/presence/online")).users;
    }
    /** The caller's DMs not acked yet, oldest first. */
    async pendingDms() {
        return (await this.call("GET", "/dms/pending")).messages;
    }
    /** Where one DM stands (sender or recipient only). */
    dmState(id) {
        return this.call("GET", `/dms/${enc(id)}`);
    }
    // ---------------------------------------------------------------------
    // Rooms people can run: settings, roles, invitations, moderation, profiles
    // ---------------------------------------------------------------------
    /**
     * One room with `member_count`, `online_count`, `topic` and the caller's
     * `role` (absent when not a participant); 404 for a private room the caller
     * is not in, and for one they were kicked or banned from.
     */
    getRoom(id) {
        return this.call("GET", `/rooms/${enc(id)}`);
    }
    /** Owner/moderators: changes any of name, description, topic, max_participants, private (`""` clears description/topic); `room_updated` follows. */
    updateRoom(id, patch) {
        return this.call("PATCH", `/rooms/${enc(id)}`, patch);
    }
    /**
     * Owner/admins: sets a participant's role (`userId`: the user's id, or their username);
     * `owner` hands the room over (the old owner becomes a moderator).
     * Resolves with the participant.
     */
    setRole(room, userId, role) {
        return this.call("PATCH", `/rooms/${enc(room)}/participants/${enc(userId)}`, { role });
    }
    /** Owner/moderators: invites a user (id or username); the pending invitation if there is one already. */
    invite(room, user) {
        return this.call("POST", `/rooms/${enc(room)}/invites`, { user });
    }
    /** The caller's pending invitations into open rooms, newest first. */
    async invites() {
        return (await this.call("GET", "/invites")).invites;
    }
    /** The invitee joins the room (even a private one). */
    acceptInvite(id) {
        return this.call("POST", `/invites/${enc(id)}/accept`);
    }
    async declineInvite(id) {
        await this.call("POST", `/invites/${enc(id)}/decline`);
    }
    /**
     * Owner/moderators: a link anyone can join the room with. `maxUses`
     * 1–100000 (default unlimited), `expiresIn` seconds 60–2592000 (default 7
     * days). The token is shown once.
     */
    createInviteLink(room, opts = {}) {
        const body = {};
        if (opts.maxUses !== undefined)
            body["max_uses"] = opts.maxUses;
        if (opts.expiresIn !== undefined)
            body["expires_in"] = opts.expiresIn;
        return this.call("POST", `/rooms/${enc(room)}/invite-links`, body);
    }
    /** Joins the room of an invite link (a participant already: the same answer, no use counted). */
    joinByLink(token) {
        return this.call("POST", `/join/${enc(token)}`);
    }
    /** Owner/moderators: removes a participant (`member` `left` `reason: "kicked"`); they may join a public room again. */
    async kick(room, user) {
        await this.call("POST", `/rooms/${enc(room)}/kick`, { user });
    }
    /** Owner/moderators: bans a user (`duration` in seconds; absent: until lifted), removing them if they take part. */
    async ban(room, user, opts = {}) {
        const body = { user };
        if (opts.duration !== undefined)
            body["duration"] = opts.duration;
        await this.call("POST", `/rooms/${enc(room)}/ban`, body);
    }
    async unban(room, user) {
        await this.call("DELETE", `/rooms/${enc(room)}/ban/${enc(user)}`);
    }
    /** Owner/moderators: the bans in force, newest first. */
    async bans(room) {
        return (await this.call("GET", `/rooms/${enc(room)}/bans`)).bans;
    }
    /** Owner/moderators: a participant may read but not send, edit, react or type (`duration` seconds; absent: until lifted). */
    async mute(room, user, opts = {}) {
        const body = { user };
        if (opts.duration !== undefined)
            body["duration"] = opts.duration;
        await this.call("POST", `/rooms/${enc(room)}/mute`, body);
    }
    async unmute(room, user) {
        await this.call("DELETE", `/rooms/${enc(room)}/mute/${enc(user)}`);
    }
    /** Owner/moderators: the room's audit log, newest first; `before` an entry id, `limit` 1–200 (default 50). */
    audit(room, q = {}) {
        return this.call("GET", `/rooms/${enc(room)}/audit${query({ before: q.before, limit: q.limit })}`);
    }
    /** A user's profile, by id or username (404 for an unknown user). */
    user(idOrName) {
        return this.call("GET", `/users/${enc(idOrName)}`);
    }
    /** The caller's profile. */
    me() {
        return this.call("GET", "/users/me");
    }
    /** Changes the caller's profile (`""`/`[]` clears a field); resolves with it, and a `profile` event follows. */
    updateProfile(patch) {
        return this.call("PATCH", "/users/me", patch);
    }
    /** Users whose username starts with `q` (case-sensitive), by username; pass `next` as `after` for the next page. `limit` 1–50 (default 20). */
    searchUsers(q, opts = {}) {
        return this.call("GET", `/users${query({ q, after: opts.after, limit: opts.limit })}`);
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
    notifications(opts = {}) {
        const qs = query({ unread: opts.unread === undefined ? undefined : String(opts.unread), before: opts.before, limit: opts.limit });
        return this.call("GET", `/notifications${qs}`);
    }
    /**
     * Marks notifications read: `{ids}` (1–500; unknown ids are ignored) or
     * `{up_to}` (every one up to that id, included). Resolves with the new
     * `unread` total; every connection of the user gets `notifications_read`.
     */
    markNotificationsRead(which) {
        const body = "ids" in which ? { ids: which.ids } : { up_to: which.up_to };
        return this.call("POST", "/notifications/read", body);
    }
    /** The active announcements, newest first, each with `dismissed` (whether the caller dismissed it). */
    async announcements() {
        return (await this.call("GET", "/announcements")).announcements;
    }
    /** Admins only: an announcement to everyone (`announcement` events follow). */
    createAnnouncement(a) {
        const body = { title: a.title, body: a.body, level: a.level };
        if (a.expires_at !== undefined)
            body["expires_at"] = a.expires_at instanceof Date ? a.expires_at.toISOString() : a.expires_at;
        return this.call("POST", "/announcements", body);
    }
    /** Dismisses an announcement for the caller on every device (`announcement_dismissed` follows). */
    async dismissAnnouncement(id) {
        await this.call("POST", `/announcements/${enc(id)}/dismiss`);
    }
    /** Admins only. */
    broadcast(body) {
        return this.call("POST", "/messages/broadcast", { body });
    }
    /** Admins only: closes every connection of the user with 4003. */
    disconnectUser(userId) {
        return this.call("POST", "/admin/disconnect", { user_id: userId });
    }
    /**
     * Admins only: every token of the user issued before now is refused from
     * now on (REST 401, handshake 401), and their live connections close with
     * `bye` `token_revoked` and 4001 on every gateway.
     */
    revokeUser(userId) {
        return this.call("POST", `/admin/users/${encodeURIComponent(userId)}/revoke`);
    }
    /**
     * Admins only: an API key for the server API (`POST /admin/api-keys`;
     * `TelepathServer` uses it). Its secret (`key`, `tpk_…`) is in this
     * answer only: the server stores its hash.
     */
    createApiKey(k) {
        const body = { name: k.name, scopes: k.scopes };
        if (k.room_prefix !== undefined)
            body["room_prefix"] = k.room_prefix;
        return this.call("POST", "/admin/api-keys", body);
    }
    /** Admins only: every API key, newest first, revoked ones too (never their secrets). */
    async listApiKeys() {
        return (await this.call("GET", "/admin/api-keys")).keys;
    }
    /** Admins only: the key is refused (401 `revoked_api_key`) from now on; 404 for an unknown id. */
    async revokeApiKey(id) {
        await this.call("DELETE", `/admin/api-keys/${enc(id)}`);
    }
    /** Admins only. */
    analytics() {
        return this.call("GET", "/analytics/connections");
    }
    /** Any route: JSON in, JSON out (undefined for 204). */
    async call(method, path, body, auth = true) {
        let token;
        if (auth && this.tokenSource !== undefined) {
            const src = this.tokenSource;
            token = (typeof src === "function" ? await src() : src) || undefined;
        }
        const req = {
            fetch: this.fetchImpl ?? globalThis.fetch,
            method,
            url: `${this.baseUrl}${path}`,
            // What error messages name: the path, with an invite link's token left out.
            label: `${method} ${safePath(path)}`,
            body,
            secrets: [linkSecret(path)],
        };
        if (token !== undefined)
            req.bearer = token;
        return requestJson(req);
    }
}
/** A route for error messages: an invite link's token (`/join/{token}`) is a secret. */
function safePath(path) {
    return path.replace(/^\/join\/[^/?#]+/, "/join/[redacted]");
}
/** The invite link token in a `/join/{token}` path (as encoded there), else undefined. */
function linkSecret(path) {
    return /^\/join\/([^/?#]+)/.exec(path)?.[1];
}
