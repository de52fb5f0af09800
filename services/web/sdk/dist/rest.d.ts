import { type Method } from "./http.js";
import type { Announcement, ApiKeyInfo, AuditPage, Ban, ConnectionAnalytics, ConnectTicket, CreateAnnouncement, CreateApiKey, CreatedApiKey, CreateRoom, DirectMessage, DmConversation, DmPage, DmQuery, DmState, HistoryQuery, Invite, InviteLink, JoinedRoom, MarkNotificationsRead, MessagePage, NotificationList, NotificationQuery, NotificationsRead, OnlineUser, Participant, Profile, ProfilePatch, Room, RoomPatch, RoomMessage, RoomRole, SearchPage, SendMessageOptions, SearchQuery, ThreadPage, ThreadQuery, User, UserHits } from "./types.js";
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
export declare class TelepathRest {
    private readonly baseUrl;
    private readonly tokenSource?;
    private readonly fetchImpl?;
    constructor(opts: TelepathRestOptions);
    /** Dev login (`TELEPATH_DEV_LOGIN`): creates the user if new. */
    static login(baseUrl: string, username: string, role?: "user" | "admin"): Promise<{
        token: string;
        user: User;
    }>;
    /**
     * A connect ticket (`POST /auth/ticket`): a single-use secret, valid 30 s,
     * for `GET /connect?ticket=` instead of the token in the URL. `Telepath`
     * asks for one before every (re)connect with `auth: "ticket"` (the
     * default in browsers).
     */
    ticket(): Promise<ConnectTicket>;
    /** Active public rooms and the caller's rooms; the caller's carry `unread`, `unread_capped` and `read_seq`. */
    listRooms(): Promise<Room[]>;
    createRoom(r: CreateRoom): Promise<Room>;
    /** Becomes a participant (409 `room_full`, 404 for private rooms). */
    joinRoom(id: string): Promise<Participant>;
    leaveRoom(id: string): Promise<void>;
    /** The owner or an admin closes the room. */
    closeRoom(id: string): Promise<void>;
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
    sendMessage(room: string, body: string, opts?: SendMessageOptions): Promise<RoomMessage>;
    /** A page of history in seq order: `before` alone gives the newest below it, `after` the oldest above it. */
    history(room: string, q?: HistoryQuery): Promise<MessagePage>;
    /** The message (`parent`, as it is now) and a page of its replies in seq order; `before`/`after`/`limit` like history (404 for a message not in the room). */
    thread(room: string, messageId: string, q?: ThreadQuery): Promise<ThreadPage>;
    /**
     * Full-text search over the caller's rooms and DMs: every word must occur
     * (the last as a prefix); snippets mark matches with « and ». Page with
     * `offset` = the previous page's `next_offset`.
     */
    search(q: string, opts?: SearchQuery): Promise<SearchPage>;
    /** The caller's conversation with one user (id or name), both directions, a page in time order; DM ids as `before`/`after` anchors. */
    dmConversation(withUser: string, q?: DmQuery): Promise<DmPage>;
    /** The caller's conversations, most recent first (at most 200), each with its last DM and unread count. */
    dmConversations(): Promise<DmConversation[]>;
    /** Each participant carries `read_seq`, their read cursor. */
    participants(room: string): Promise<Participant[]>;
    online(): Promise<OnlineUser[]>;
    /** The caller's DMs not acked yet, oldest first. */
    pendingDms(): Promise<DirectMessage[]>;
    /** Where one DM stands (sender or recipient only). */
    dmState(id: string): Promise<DmState>;
    /**
     * One room with `member_count`, `online_count`, `topic` and the caller's
     * `role` (absent when not a participant); 404 for a private room the caller
     * is not in, and for one they were kicked or banned from.
     */
    getRoom(id: string): Promise<Room>;
    /** Owner/moderators: changes any of name, description, topic, max_participants, private (`""` clears description/topic); `room_updated` follows. */
    updateRoom(id: string, patch: RoomPatch): Promise<Room>;
    /**
     * Owner/admins: sets a participant's role (`userId`: the user's id, or their username);
     * `owner` hands the room over (the old owner becomes a moderator).
     * Resolves with the participant.
     */
    setRole(room: string, userId: string, role: RoomRole): Promise<Participant>;
    /** Owner/moderators: invites a user (id or username); the pending invitation if there is one already. */
    invite(room: string, user: string): Promise<Invite>;
    /** The caller's pending invitations into open rooms, newest first. */
    invites(): Promise<Invite[]>;
    /** The invitee joins the room (even a private one). */
    acceptInvite(id: string): Promise<JoinedRoom>;
    declineInvite(id: string): Promise<void>;
    /**
     * Owner/moderators: a link anyone can join the room with. `maxUses`
     * 1–100000 (default unlimited), `expiresIn` seconds 60–2592000 (default 7
     * days). The token is shown once.
     */
    createInviteLink(room: string, opts?: {
        maxUses?: number;
        expiresIn?: number;
    }): Promise<InviteLink>;
    /** Joins the room of an invite link (a participant already: the same answer, no use counted). */
    joinByLink(token: string): Promise<JoinedRoom>;
    /** Owner/moderators: removes a participant (`member` `left` `reason: "kicked"`); they may join a public room again. */
    kick(room: string, user: string): Promise<void>;
    /** Owner/moderators: bans a user (`duration` in seconds; absent: until lifted), removing them if they take part. */
    ban(room: string, user: string, opts?: {
        duration?: number;
    }): Promise<void>;
    unban(room: string, user: string): Promise<void>;
    /** Owner/moderators: the bans in force, newest first. */
    bans(room: string): Promise<Ban[]>;
    /** Owner/moderators: a participant may read but not send, edit, react or type (`duration` seconds; absent: until lifted). */
    mute(room: string, user: string, opts?: {
        duration?: number;
    }): Promise<void>;
    unmute(room: string, user: string): Promise<void>;
    /** Owner/moderators: the room's audit log, newest first; `before` an entry id, `limit` 1–200 (default 50). */
    audit(room: string, q?: {
        before?: number;
        limit?: number;
    }): Promise<AuditPage>;
    /** A user's profile, by id or username (404 for an unknown user). */
    user(idOrName: string): Promise<Profile>;
    /** The caller's profile. */
    me(): Promise<Profile>;
    /** Changes the caller's profile (`""`/`[]` clears a field); resolves with it, and a `profile` event follows. */
    updateProfile(patch: ProfilePatch): Promise<Profile>;
    /** Users whose username starts with `q` (case-sensitive), by username; pass `next` as `after` for the next page. `limit` 1–50 (default 20). */
    searchUsers(q: string, opts?: {
        after?: string;
        limit?: number;
    }): Promise<UserHits>;
    /**
     * The caller's notifications, newest first, with their `read` flag, the
     * `unread` total and `has_more`: `unread` true/false for unread or read
     * ones only, `before` a notification id (the last one of the previous
     * page), `limit` 1–100 (default 50).
     */
    notifications(opts?: NotificationQuery): Promise<NotificationList>;
    /**
     * Marks notifications read: `{ids}` (1–500; unknown ids are ignored) or
     * `{up_to}` (every one up to that id, included). Resolves with the new
     * `unread` total; every connection of the user gets `notifications_read`.
     */
    markNotificationsRead(which: MarkNotificationsRead): Promise<NotificationsRead>;
    /** The active announcements, newest first, each with `dismissed` (whether the caller dismissed it). */
    announcements(): Promise<Announcement[]>;
    /** Admins only: an announcement to everyone (`announcement` events follow). */
    createAnnouncement(a: CreateAnnouncement): Promise<Announcement>;
    /** Dismisses an announcement for the caller on every device (`announcement_dismissed` follows). */
    dismissAnnouncement(id: string): Promise<void>;
    /** Admins only. */
    broadcast(body: string): Promise<{
        id: string;
    }>;
    /** Admins only: closes every connection of the user with 4003. */
    disconnectUser(userId: string): Promise<{
        disconnected: number;
    }>;
    /**
     * Admins only: every token of the user issued before now is refused from
     * now on (REST 401, handshake 401), and their live connections close with
     * `bye` `token_revoked` and 4001 on every gateway.
     */
    revokeUser(userId: string): Promise<{
        user_id: string;
        valid_after: number;
    }>;
    /**
     * Admins only: an API key for the server API (`POST /admin/api-keys`;
     * `TelepathServer` uses it). Its secret (`key`, `tpk_…`) is in this
     * answer only: the server stores its hash.
     */
    createApiKey(k: CreateApiKey): Promise<CreatedApiKey>;
    /** Admins only: every API key, newest first, revoked ones too (never their secrets). */
    listApiKeys(): Promise<ApiKeyInfo[]>;
    /** Admins only: the key is refused (401 `revoked_api_key`) from now on; 404 for an unknown id. */
    revokeApiKey(id: string): Promise<void>;
    /** Admins only. */
    analytics(): Promise<ConnectionAnalytics>;
    /** Any route: JSON in, JSON out (undefined for 204). */
    call<T>(method: Method, path: string, body?: unknown, auth?: boolean): Promise<T>;
}
