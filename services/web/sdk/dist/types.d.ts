/** A user as frames and REST bodies show it. */
export interface UserRef {
    id: string;
    name: string;
}
export type Role = "user" | "admin";
/** A user with a role (`welcome`, `POST /auth/login`). */
export interface User extends UserRef {
    role: Role | string;
}
/** Statuses a user may choose. */
export type ChosenStatus = "online" | "away" | "busy" | "meditating";
/** Every status a presence event may carry (`offline` is set by the server only). */
export type PresenceStatus = ChosenStatus | "offline";
/** The protocol's error codes (replies, `error` frames, REST error bodies). */
export type ServerErrorCode = "bad_request" | "unauthorized" | "forbidden" | "not_found" | "room_full" | "rate_limited" | "too_large" | "conflict" | "unavailable" | "internal";
/** Codes the SDK itself uses for failures that are not the server's answer. */
export type ClientErrorCode = "timeout" | "disconnected" | "closed" | "cancelled" | "network" | "bad_response";
export interface Limits {
    max_frame_bytes: number;
    max_rate_per_s: number;
    /** Sends, DMs, edits, deletes, reactions and typing per second over all of the user's connections (burst twice that; 0: none). */
    max_user_rate_per_s?: number;
    max_body_bytes: number;
    max_rooms_per_conn: number;
    [k: string]: unknown;
}
/** Always the first frame on a connection. */
export interface Welcome {
    type: "welcome";
    conn_id: string;
    user: User;
    node: string;
    heartbeat_ms: number;
    limits: Limits;
    /**
     * The user's unread notifications when they connected; absent when the
     * server could not tell in time (read `GET /notifications` then).
     */
    notifications_unread?: number;
}
export interface ErrorBody {
    code: ServerErrorCode | string;
    message: string;
}
export interface ReplyOk<T = unknown> {
    type: "reply";
    ref: string;
    ok: true;
    data: T;
}
export interface ReplyErr {
    type: "reply";
    ref: string;
    ok: false;
    error: ErrorBody;
}
/** The answer to a request that carried a `ref`. */
export type Reply<T = unknown> = ReplyOk<T> | ReplyErr;
/** One emoji on a message: how many users put it there; `me` (REST only) whether the caller did. */
export interface ReactionSummary {
    emoji: string;
    count: number;
    me?: boolean;
}
/**
 * A room message (`message` frame). The REST form is the same without `type`.
 * It is the message's state when it was read: `edited_at` once edited; a
 * deleted message is a tombstone (`deleted: true`, no `body`); `reactions`
 * when it has any; a thread parent carries `reply_count` and `last_reply_at`.
 */
export interface RoomMessage {
    type?: "message";
    room: string;
    id: string;
    seq: number;
    from: UserRef;
    /** Absent on a tombstone (`deleted: true`). */
    body?: string;
    kind: string;
    /** RFC 3339. */
    ts: string;
    /** The thread parent's id for a reply in a thread. */
    reply_to?: string | null;
    /** RFC 3339, when the body was last edited. */
    edited_at?: string | null;
    deleted?: boolean;
    reactions?: ReactionSummary[];
    reply_count?: number;
    last_reply_at?: string | null;
}
/** A direct message (`dm` frame; also `GET /dms/pending`, `GET /dms?with=`). */
export interface DirectMessage {
    type?: "dm";
    id: string;
    from: UserRef;
    /** The recipient's user id. */
    to: string;
    /** Absent when deleted. */
    body?: string;
    ts: string;
    /** RFC 3339, when the body was last edited. */
    edited_at?: string | null;
    deleted?: boolean;
}
/**
 * The version of a DM an ack names (`ack` `dm` with `deleted` and
 * `edited_at`, as the DM or its change event carried them): an edit or a
 * delete made after that version stays in the offline queue.
 */
export interface DmAckVersion {
    deleted: boolean;
    /** RFC 3339; null or absent for a DM never edited. */
    edited_at?: string | null;
}
/**
 * A message's body changed (`message_edited` frame). A room's carries `room`
 * and `seq` (it takes the room's next seq, like a message); a DM's carries
 * `dm` (= `id`) and `to` instead.
 */
export interface MessageEditedEvent {
    type?: "message_edited";
    room?: string;
    seq?: number;
    dm?: string;
    to?: string;
    id: string;
    body: string;
    edited_at: string;
    by: UserRef;
}
/** A message was deleted (`message_deleted` frame); room or DM as for `message_edited`. */
export interface MessageDeletedEvent {
    type?: "message_deleted";
    room?: string;
    seq?: number;
    dm?: string;
    to?: string;
    id: string;
    by: UserRef;
}
/** A reaction was added (`on`) or removed (`reaction` frame); `count` is absolute after the change. */
export interface ReactionEvent {
    type?: "reaction";
    room: string;
    id: string;
    seq: number;
    emoji: string;
    user: UserRef;
    on: boolean;
    count: number;
}
/** A reader's read cursor moved (`receipt` frame; not in the log: `seq` is the cursor). */
export interface ReceiptEvent {
    type?: "receipt";
    room: string;
    user: UserRef;
    seq: number;
}
/** A room change that takes a seq in the room's log (room `message_edited`, `message_deleted`, `reaction`). */
export type RoomChange = (MessageEditedEvent & {
    type: "message_edited";
    room: string;
    seq: number;
}) | (MessageDeletedEvent & {
    type: "message_deleted";
    room: string;
    seq: number;
}) | (ReactionEvent & {
    type: "reaction";
});
/** An admin broadcast (`broadcast` frame). */
export interface Broadcast {
    type?: "broadcast";
    id: string;
    from: UserRef;
    body: string;
    ts: string;
}
/** A user's presence changed (`presence` frame). */
export interface PresenceEvent {
    type?: "presence";
    user: UserRef;
    status: PresenceStatus | string;
    text?: string | null;
    last_seen: string;
}
/** Someone started or stopped typing (`typing` frame). */
export interface TypingEvent {
    type?: "typing";
    room: string;
    user: UserRef;
    active: boolean;
}
/** A participant's role in a room. */
export type RoomRole = "owner" | "moderator" | "member";
/**
 * Someone joined or left a room, or a moderator changed their standing
 * (`member` frame). `left` carries `reason` when a moderator caused it
 * (`kicked`, `banned`); `by` names who did it when it was not the user;
 * `role` is the new role (action `role`); `until` the end of a mute (absent:
 * until lifted). Every action but `joined` also goes to every connection of
 * the user concerned (the SDK drops the repeat of one it just emitted).
 */
export interface MemberEvent {
    type?: "member";
    room: string;
    user: UserRef;
    action: "joined" | "left" | "role" | "muted" | "unmuted";
    reason?: "kicked" | "banned";
    by?: UserRef;
    role?: RoomRole;
    /** RFC 3339 (action `muted`); absent: until lifted. */
    until?: string | null;
}
/** A room as an invitation or an invite link shows it. */
export interface RoomRef {
    id: string;
    name: string;
    private: boolean;
}
/**
 * An invitation of `user` into a room (`invite` frame, `GET /invites`,
 * `POST /rooms/{id}/invites`). A pending one is sent again after every
 * `welcome` until accepted, declined or revoked (the SDK emits each id once).
 */
export interface Invite {
    type?: "invite";
    id: string;
    room: RoomRef;
    /** The invitee. */
    user: UserRef;
    /** Who invited them. */
    from: UserRef;
    state: "pending" | "accepted" | "declined" | "revoked" | string;
    created_at: string;
}
/** A room was created (`room_created`) or changed (`room_updated`): the room as it is now, and who did it. */
export interface RoomEvent {
    type?: "room_created" | "room_updated";
    room: Room;
    by: UserRef;
}
/**
 * A user's profile (`GET /users/{user}`, `PATCH /users/me`, and the
 * `profile` frame). `status` is `offline` unless the user has a connection;
 * `last_seen` is persisted.
 */
export interface Profile {
    type?: "profile";
    id: string;
    name: string;
    display_name?: string | null;
    bio?: string | null;
    /** `https://` only. */
    avatar_url?: string | null;
    abilities: string[];
    status: PresenceStatus | string;
    status_text?: string | null;
    last_seen?: string | null;
    online: boolean;
}
/** What a notification is about (`app`: sent by an application's backend, `TelepathServer.publishToUser` with `kind: "notification"`). */
export type NotificationKind = "mention" | "reply" | "reaction" | "invite" | "dm" | "app";
/**
 * One personal notification (`notification` frame, `GET /notifications`).
 * A new one is unread; `read` is in lists only. A `reaction` notification
 * is one per message: a later one for the same `message_id` replaces the
 * earlier (with a new id; the old id leaves the list).
 */
export interface Notification {
    type?: "notification";
    /** A UUIDv7: ids sort by creation. */
    id: string;
    kind: NotificationKind;
    /** The room it is about (mentions, replies, reactions, invitations). */
    room?: string | null;
    /** The message it is about (a room message, or the DM). */
    message_id?: string | null;
    /** Who caused it (for `app`: the bot user it was sent as, or `system`). */
    from?: UserRef | null;
    /** What to show (at most 200 characters of the message it is about; for `app`, the body as sent). */
    text: string;
    /** RFC 3339. */
    ts: string;
    /** `GET /notifications` only: whether the user marked it read. */
    read?: boolean;
}
/** `GET /notifications`: newest first; page with `before` = the last one's id. */
export interface NotificationList {
    notifications: Notification[];
    /** The user's unread notifications in all. */
    unread: number;
    has_more: boolean;
}
/** `GET /notifications` query. */
export interface NotificationQuery {
    /** true: unread ones only; false: read ones only; absent: all. */
    unread?: boolean;
    /** Older than this notification id. */
    before?: string;
    /** 1–100 (default 50). */
    limit?: number;
}
/**
 * Notifications were marked read (`notifications_read` frame, on every
 * connection of the user; also the answer to `POST /notifications/read`):
 * these `ids`, or all `up_to` an id (included). `unread` is the new total.
 */
export interface NotificationsRead {
    type?: "notifications_read";
    ids?: string[];
    up_to?: string;
    unread: number;
}
/** `POST /notifications/read`: exactly one of these. */
export type MarkNotificationsRead = {
    ids: string[];
} | {
    up_to: string;
};
/** How loud an announcement is. */
export type AnnouncementLevel = "info" | "warning" | "critical";
/**
 * An admin's announcement to everyone (`announcement` frame, `GET
 * /announcements`, `POST /announcements`). Sent live when posted, and again
 * after every `welcome` while active and not dismissed (the SDK emits each
 * id once).
 */
export interface Announcement {
    type?: "announcement";
    id: string;
    title: string;
    body: string;
    level: AnnouncementLevel;
    created_by: UserRef;
    /** RFC 3339. */
    created_at: string;
    /** RFC 3339; absent: until deleted. */
    expires_at?: string | null;
    /** `GET /announcements` only: whether the caller dismissed it. */
    dismissed?: boolean;
}
/** `GET /announcements`: the active ones, newest first. */
export interface AnnouncementList {
    announcements: Announcement[];
}
/** `POST /announcements` (admins only). */
export interface CreateAnnouncement {
    /** 1–200 characters. */
    title: string;
    /** 1–4000 characters. */
    body: string;
    level: AnnouncementLevel;
    /** When it stops being shown (RFC 3339 or a Date; in the future); absent: until deleted. */
    expires_at?: string | Date;
}
/** The user dismissed an announcement on some device (`announcement_dismissed` frame). */
export interface AnnouncementDismissed {
    type?: "announcement_dismissed";
    id: string;
}
/** A failing request without `ref` (`error` frame). */
export interface ServerError {
    type?: "error";
    code: ServerErrorCode | string;
    message: string;
}
/** Sent just before the server closes the connection. */
export interface Bye {
    type?: "bye";
    reason: "admin" | "restart" | "token_expired" | "token_revoked" | "slow_consumer" | "replaced" | string;
}
/** A room was closed by its owner or an admin (Telepath's own frame). */
export interface RoomClosed {
    type?: "room_closed";
    room: string;
    by: UserRef;
}
export type WelcomeFrame = Welcome;
export type ReplyFrame = Reply;
export type MessageFrame = RoomMessage & {
    type: "message";
};
export type DmFrame = DirectMessage & {
    type: "dm";
};
export type BroadcastFrame = Broadcast & {
    type: "broadcast";
};
export type PresenceFrame = PresenceEvent & {
    type: "presence";
};
export type TypingFrame = TypingEvent & {
    type: "typing";
};
export type MemberFrame = MemberEvent & {
    type: "member";
};
export type ErrorFrame = ServerError & {
    type: "error";
};
export type ByeFrame = Bye & {
    type: "bye";
};
export type RoomClosedFrame = RoomClosed & {
    type: "room_closed";
};
export type InviteFrame = Invite & {
    type: "invite";
};
export type RoomCreatedFrame = RoomEvent & {
    type: "room_created";
};
export type RoomUpdatedFrame = RoomEvent & {
    type: "room_updated";
};
export type ProfileFrame = Profile & {
    type: "profile";
};
export type MessageEditedFrame = MessageEditedEvent & {
    type: "message_edited";
};
export type MessageDeletedFrame = MessageDeletedEvent & {
    type: "message_deleted";
};
export type ReactionFrame = ReactionEvent & {
    type: "reaction";
};
export type ReceiptFrame = ReceiptEvent & {
    type: "receipt";
};
export type NotificationFrame = Notification & {
    type: "notification";
};
export type NotificationsReadFrame = NotificationsRead & {
    type: "notifications_read";
};
export type AnnouncementFrame = Announcement & {
    type: "announcement";
};
export type AnnouncementDismissedFrame = AnnouncementDismissed & {
    type: "announcement_dismissed";
};
/** Every frame the server sends, tagged by `type`. */
export type ServerFrame = WelcomeFrame | ReplyFrame | MessageFrame | DmFrame | BroadcastFrame | PresenceFrame | TypingFrame | MemberFrame | ErrorFrame | ByeFrame | RoomClosedFrame | InviteFrame | RoomCreatedFrame | RoomUpdatedFrame | ProfileFrame | MessageEditedFrame | MessageDeletedFrame | ReactionFrame | ReceiptFrame | NotificationFrame | NotificationsReadFrame | AnnouncementFrame | AnnouncementDismissedFrame;
export type ServerFrameType = ServerFrame["type"];
export type ClientFrame = {
    type: "join";
    ref?: string;
    room: string;
    since?: number;
} | {
    type: "leave";
    ref?: string;
    room: string;
} | {
    type: "send";
    ref?: string;
    room: string;
    body: string;
    kind?: string;
    client_id?: string;
    reply_to?: string;
} | {
    type: "dm";
    ref?: string;
    to: string;
    body: string;
    client_id?: string;
} | {
    type: "broadcast";
    ref?: string;
    body: string;
} | {
    type: "typing";
    ref?: string;
    room: string;
    active: boolean;
} | {
    type: "status";
    ref?: string;
    status: ChosenStatus;
    text?: string;
} | {
    type: "ack";
    ref?: string;
    room: string;
    seq: number;
} | {
    type: "ack";
    ref?: string;
    dm: string;
    deleted?: boolean;
    edited_at?: string | null;
} | {
    type: "refresh";
    ref?: string;
    token: string;
} | {
    type: "ping";
    ref?: string;
} | {
    type: "edit";
    ref?: string;
    room: string;
    id: string;
    body: string;
} | {
    type: "edit";
    ref?: string;
    dm: string;
    id: string;
    body: string;
} | {
    type: "delete";
    ref?: string;
    room: string;
    id: string;
} | {
    type: "delete";
    ref?: string;
    dm: string;
    id: string;
} | {
    type: "react";
    ref?: string;
    room: string;
    id: string;
    emoji: string;
    on: boolean;
} | {
    type: "read";
    ref?: string;
    room: string;
    seq: number;
};
/** `join` reply data: `seq` is the room's latest; `recovered` false means the gap was over the replay cap. */
export interface JoinReply {
    room: string;
    seq: number;
    recovered: boolean;
}
export interface SendReply {
    id: string;
    seq: number;
    ts: string;
}
export interface DmReply {
    id: string;
    ts: string;
    /** Whether the recipient had a live connection. */
    delivered: boolean;
}
/**
 * `edit` reply data (`seq` absent for a DM). An edit that changed nothing
 * names the seq of the change that produced the current state (0 if none).
 */
export interface EditReply {
    id: string;
    seq?: number;
    edited_at: string;
}
/** `delete` reply data (`seq` absent for a DM). */
export interface DeleteReply {
    id: string;
    seq?: number;
}
/** `react` reply data: `count` users have that emoji on the message now. */
export interface ReactReply {
    id: string;
    seq: number;
    count: number;
}
/** `read` reply data: the caller's read cursor after the call (it only moves forward). */
export interface ReadReply {
    room: string;
    seq: number;
}
export interface Room {
    id: string;
    name: string;
    description: string | null;
    max_participants: number;
    private: boolean;
    created_by: string;
    created_at: string;
    is_active: boolean;
    /** For rooms the caller takes part in: messages above their read cursor, not their own, not deleted. */
    unread?: number;
    /** `unread` stopped counting (at 10,000). */
    unread_capped?: boolean;
    /** The caller's read cursor. */
    read_seq?: number;
    /** ≤ 256 characters (`PATCH /rooms/{id}`). */
    topic?: string | null;
    /** Participants (`GET /rooms/{id}`, `room_created`, `room_updated`, ...). */
    member_count?: number;
    /** Participants with a live connection (`GET /rooms/{id}`). */
    online_count?: number;
    /** The caller's role; absent when not a participant (and on directory events). */
    role?: RoomRole;
    /** Days its messages are kept (set by the owner); absent: the server's default. */
    retention?: number;
}
/** `PATCH /rooms/{id}` (owner/moderators): the fields to change; `""` clears `description`/`topic`. */
export interface RoomPatch {
    name?: string;
    description?: string;
    topic?: string;
    /** 1–100000, not below the current participants (409). */
    max_participants?: number;
    private?: boolean;
    /** Owner only: days messages are kept, 1–36500; 0 returns to the server's default. */
    retention?: number;
}
export interface CreateRoom {
    name: string;
    description?: string;
    max_participants?: number;
    private?: boolean;
}
export interface Participant {
    user: UserRef;
    role: RoomRole | string;
    joined_at: string;
    online: boolean;
    /** The participant's read cursor. */
    read_seq?: number;
    /** When the user was last seen online (persisted). */
    last_seen?: string | null;
    /** Until when the participant is muted (far in the future: until lifted). */
    muted_until?: string | null;
}
/** An invite link (`POST /rooms/{id}/invite-links`): the token is shown once. */
export interface InviteLink {
    /** 43 URL-safe characters: whoever holds it joins with `joinByLink(token)`. */
    token: string;
    room: RoomRef;
    /** Absent: no limit. */
    max_uses?: number | null;
    expires_at: string;
}
/** The room joined (`acceptInvite`, `joinByLink`). */
export interface JoinedRoom {
    room: Room;
    role: RoomRole;
}
/** A ban in force (`GET /rooms/{id}/bans`). */
export interface Ban {
    user: UserRef;
    by: UserRef;
    /** Absent: until lifted. */
    until?: string | null;
    created_at: string;
}
/** One line of a room's audit log. */
export interface AuditEntry {
    id: number;
    /** `update`, `role`, `invite`, `invite_link`, `kick`, `ban`, `unban`, `mute`, `unmute`, `close`. */
    action: string;
    actor: UserRef;
    target?: UserRef | null;
    /** What the action set (a role, a duration, the changed fields). */
    detail?: Record<string, unknown> | null;
    ts: string;
}
/** `GET /rooms/{id}/audit`: newest first; page with `before` = the last entry's id. */
export interface AuditPage {
    entries: AuditEntry[];
    has_more: boolean;
}
/** `PATCH /users/me`: the fields to change; `""` (or `[]`) clears one. */
export interface ProfilePatch {
    /** ≤ 64 characters, no control characters or outer spaces. */
    display_name?: string;
    /** ≤ 1024 characters. */
    bio?: string;
    /** `https://` only, ≤ 512 bytes, no spaces. */
    avatar_url?: string;
    /** ≤ 16 tags of 1–32 characters (repeats dropped). */
    abilities?: string[];
}
/** One user found by `searchUsers`. */
export interface UserHit {
    id: string;
    name: string;
    display_name?: string | null;
}
/** `GET /users?q=`: users whose username starts with `q`, by username; `next` is the `after` of the next page (absent on the last). */
export interface UserHits {
    users: UserHit[];
    next?: string | null;
}
export interface OnlineUser {
    id: string;
    name: string;
    status: PresenceStatus | string;
    text?: string | null;
    last_seen: string;
    connections: number;
}
export interface MessagePage {
    messages: RoomMessage[];
    has_more: boolean;
}
export interface HistoryQuery {
    before?: number;
    after?: number;
    limit?: number;
}
/** `GET /rooms/{id}/messages/{message_id}/thread`: like history (`before`/`after`/`limit`). */
export type ThreadQuery = HistoryQuery;
/** A page of a thread: the parent as it is now, and a page of its replies in seq order. */
export interface ThreadPage extends MessagePage {
    parent: RoomMessage;
}
export interface SearchQuery {
    /** Only this room (404 if the caller is not in it). */
    room?: string;
    /** Only messages sent before this time (RFC 3339, or a Date). */
    before?: string | Date;
    /** 1–50 (default 20). */
    limit?: number;
    /** 0–1000: the `next_offset` of the previous page. */
    offset?: number;
}
/**
 * One search hit: a room message (`room`, `seq`) or a DM (`with`: the other
 * user). `snippet` is an excerpt with the matches between `«` and `»`.
 */
export interface SearchResult {
    id: string;
    room?: string;
    seq?: number;
    with?: UserRef | string;
    from: UserRef;
    ts: string;
    snippet: string;
}
export interface SearchPage {
    results: SearchResult[];
    next_offset?: number | null;
}
/**
 * `GET /dms?with=`, paged like room history with DM ids (time-ordered) as
 * anchors: none gives the newest `limit`, `before` the newest older than it,
 * `after` the oldest newer than it; a page is in time order.
 */
export interface DmQuery {
    before?: string;
    after?: string;
    /** 1–500 (default 50). */
    limit?: number;
}
export interface DmPage {
    messages: DirectMessage[];
    has_more: boolean;
}
/** One conversation of `GET /dms`: its latest DM, and the other user's DMs not acked yet. */
export interface DmConversation {
    user: UserRef;
    last: DirectMessage;
    unread: number;
}
export interface LoginResponse {
    token: string;
    user: User;
}
/** `POST /auth/ticket`: a single-use secret for `GET /connect?ticket=`, valid `expires_in` seconds (30). */
export interface ConnectTicket {
    ticket: string;
    expires_in: number;
}
/** Options of `TelepathRest.sendMessage` (`POST /rooms/{id}/messages`), as for the `send` frame. */
export interface SendMessageOptions {
    /** 1–32 characters (the server stores `text` when absent). */
    kind?: string;
    /** The thread parent: a message of the same room (`not_found` otherwise). */
    replyTo?: string;
    /**
     * 1–128 characters: a repeat with the same `clientId` (over REST or the
     * socket) answers the message the first one stored, and stores and
     * delivers nothing; one the sender used for a DM is `conflict`.
     */
    clientId?: string;
}
export interface DmState {
    id: string;
    from: UserRef;
    to: string;
    ts: string;
    delivered: boolean;
    delivered_at: string | null;
    queued: boolean;
}
export interface ConnectionAnalytics {
    online_users: number;
    connections: number;
    by_node: Record<string, number>;
    connects_total: number;
    disconnects_total: number;
    messages_per_minute?: number;
    active_rooms?: number;
    rooms_total?: number;
    [k: string]: unknown;
}
/**
 * What an API key may do: `publish` (to rooms and to users), `presence`
 * (read it), `rooms` (create rooms, add members), `users` (disconnect),
 * `webhooks` (manage every webhook: only a key without a `room_prefix`).
 */
export type ApiKeyScope = "publish" | "presence" | "rooms" | "users" | "webhooks";
/** `POST /admin/api-keys` (admins only; `TelepathRest.createApiKey`). */
export interface CreateApiKey {
    /** 1–64 characters. */
    name: string;
    /** At least one. */
    scopes: ApiKeyScope[];
    /** Limits the key to rooms whose name starts with this (1–64 characters). */
    room_prefix?: string;
}
/** An API key as listed (`GET /admin/api-keys`): never its secret. */
export interface ApiKeyInfo {
    id: string;
    name: string;
    scopes: (ApiKeyScope | string)[];
    room_prefix?: string | null;
    /** RFC 3339. */
    created_at: string;
    /** RFC 3339; absent while the key works. */
    revoked_at?: string | null;
    /** RFC 3339. */
    last_used_at?: string | null;
}
/** A new API key (`POST /admin/api-keys`): `key` is its secret, shown this once (only its hash is stored). */
export interface CreatedApiKey extends ApiKeyInfo {
    /** `tpk_` and 43 characters: `new TelepathServer({ url, apiKey: key })`. */
    key: string;
}
/** Options of `TelepathServer.publish` and of a batch item. */
export interface PublishOptions {
    /** 1–32 characters (the server stores `text` when absent). */
    kind?: string;
    /**
     * 1–128 characters: a repeat by the same sender (the same `as`) answers
     * the message the first one stored, and stores and delivers nothing.
     */
    clientId?: string;
    /** The bot user it is sent as (a username, created if new); absent: the `system` user. */
    as?: string;
}
/** One item of `TelepathServer.publishBatch` (`POST /api/publish`). */
export interface PublishItem extends PublishOptions {
    /** Room id. */
    room: string;
    body: string;
}
/** One outcome of a batch, in the order of the items: the message, or why that item was refused. */
export interface PublishOutcome {
    message?: RoomMessage;
    error?: ErrorBody;
}
/** What `TelepathServer.publishToUser` sends: a direct message (the default) or a notification of kind `app`. */
export type PublishToUserKind = "dm" | "notification";
/** Options of `TelepathServer.publishToUser`. */
export interface PublishToUserOptions {
    /** `dm` (the default) or `notification`. */
    kind?: PublishToUserKind;
    /**
     * 1–128 characters: a repeat by the same sender answers the first DM (or
     * the first notification) and stores and delivers nothing. DMs and
     * notifications keep their `client_id`s apart.
     */
    clientId?: string;
    /** The bot user it is sent as (a username, created if new); absent: the `system` user. */
    as?: string;
}
/** `POST /api/users/{id}/publish` as the wire has it: `dm` or `notification`, as sent. */
export interface PublishedToUser {
    dm?: DmReply;
    notification?: Notification;
}
/** `GET /api/presence` and `GET /api/rooms/{id}/presence`. */
export interface ApiPresence {
    /** The users asked about who are online, with their status and connections. */
    online: OnlineUser[];
    /** The ids of those who are not. */
    offline: string[];
}
/** `POST /api/rooms`: a room owned by the `system` user. */
export type ApiCreateRoom = CreateRoom;
/** `POST /api/users/{id}/disconnect` (and `TelepathRest.disconnectUser`). */
export interface DisconnectResult {
    /** Connections told to close (with 4003), as presence knew them. */
    disconnected: number;
}
/** What a webhook can be told about. */
export type WebhookEvent = "user.connected" | "user.disconnected" | "room.joined" | "room.left" | "message.created" | "message.edited" | "message.deleted" | "presence.changed";
/** `POST /api/webhooks` (`TelepathServer.createWebhook`). */
export interface CreateWebhook {
    /**
     * `http://` or `https://`, at most 2048 characters, no user info. Its host
     * must resolve to public addresses only, unless the server sets
     * `TELEPATH_WEBHOOK_ALLOW_PRIVATE=1`.
     */
    url: string;
    /** 1–8 events, each once. */
    events: WebhookEvent[];
    /**
     * The signing secret: 16–128 printable ASCII characters without spaces.
     * Absent: the server makes one (`whsec_` and 43 characters) and answers
     * it this once.
     */
    secret?: string;
}
/** A webhook as listed (`GET /api/webhooks`, `GET /api/webhooks/{id}`): never its secret. */
export interface Webhook {
    id: string;
    url: string;
    events: (WebhookEvent | string)[];
    /** RFC 3339. */
    created_at: string;
    /** Deliveries waiting (not yet delivered, not given up). */
    pending: number;
    /** Events not queued because `pending` was at its bound (`TELEPATH_WEBHOOK_MAX_PENDING`). */
    dropped: number;
}
/** A new webhook (`POST /api/webhooks`): `secret` signs every delivery and is shown this once. */
export interface CreatedWebhook extends Webhook {
    secret: string;
}
/** Where a delivery stands: `failed` once its retries ran out (`TELEPATH_WEBHOOK_RETRY_FOR`). */
export type DeliveryStatus = "pending" | "delivered" | "failed";
/** One event's delivery to one webhook (`GET /api/webhooks/{id}/deliveries`). */
export interface WebhookDelivery {
    /** Increasing in the order events were queued; the `Telepath-Delivery` header. */
    id: number;
    /** The event's id: the body's `id` and `Telepath-Event-Id`, the same on every attempt and for every webhook. */
    event_id: string;
    event: WebhookEvent | string;
    status: DeliveryStatus | string;
    /** Attempts made so far. */
    attempts: number;
    /** RFC 3339, when it was queued. */
    created_at: string;
    /** RFC 3339, when the next attempt is due (pending only). */
    next_attempt_at?: string | null;
    last_attempt_at?: string | null;
    /** The HTTP status of the last attempt (absent when it got no answer). */
    last_status?: number | null;
    /** Why the last attempt failed. */
    last_error?: string | null;
    delivered_at?: string | null;
}
/** `TelepathServer.webhookDeliveries` query. */
export interface WebhookDeliveryQuery {
    /** Only deliveries in this state. */
    status?: DeliveryStatus;
    /** A delivery id: only older ones (the next page). */
    before?: number;
    /** 1–100 (default 50). */
    limit?: number;
}
/** `data` of `user.connected` (and, with `reason`, of `user.disconnected`). */
export interface WebhookConnection {
    user: UserRef;
    conn_id: string;
    /** The gateway's node id. */
    node: string;
    /** RFC 3339. */
    at: string;
    /** `user.disconnected` only: the close code. */
    reason?: string | number;
}
/** What `data` holds for each event. */
export interface WebhookEventData {
    "user.connected": WebhookConnection;
    "user.disconnected": WebhookConnection;
    "room.joined": MemberEvent;
    "room.left": MemberEvent;
    "message.created": RoomMessage;
    "message.edited": MessageEditedEvent;
    "message.deleted": MessageDeletedEvent;
    "presence.changed": PresenceEvent;
}
/**
 * The JSON body of a delivery (parse it after `verifyWebhook` accepted the
 * raw bytes). Drop an `id` already handled: delivery is at least once.
 */
export type WebhookPayload = {
    [E in WebhookEvent]: {
        /** The event's id (= `Telepath-Event-Id`). */
        id: string;
        type: E;
        /** RFC 3339. */
        created_at: string;
        data: WebhookEventData[E];
    };
}[WebhookEvent];
