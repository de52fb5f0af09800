import { TelepathError } from "./errors.js";
import type { Announcement, AnnouncementDismissed, Broadcast, Bye, ChosenStatus, DeleteReply, DirectMessage, DmAckVersion, DmReply, EditReply, HistoryQuery, Invite, JoinReply, MemberEvent, MessageDeletedEvent, MessageEditedEvent, MessagePage, Notification, NotificationsRead, PresenceEvent, Profile, ReactionEvent, ReactReply, ReadReply, ReceiptEvent, RoomClosed, RoomEvent, RoomMessage, SendReply, ServerError, ServerFrame, TypingEvent, Welcome } from "./types.js";
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";
/** A token, or a callback giving one (called on every (re)connect and before `exp` to `refresh`). */
export type TokenSource = string | (() => string | Promise<string>);
/**
 * How the socket proves who it is at the handshake (the token itself never
 * goes in a URL with `ticket` or `header`):
 * - `ticket` (the default in browsers): before every connect and reconnect,
 *   `POST /auth/ticket` on the REST api (`restUrl`, by default the origin of
 *   `url`) with the token in `Authorization`, then `GET /connect?ticket=`.
 *   The ticket is single-use and valid 30 s. A failed ticket request is
 *   retried with the reconnect backoff like a failed connect.
 * - `token` (the default elsewhere, e.g. Node.js): `GET /connect?token=`.
 * - `header`: `Authorization: Bearer` on the handshake request. Browsers
 *   cannot set it; it needs a WebSocket implementation that can: Node's own
 *   (called as `new WebSocket(url, { protocols, headers })`) or the `ws`
 *   package's, and any other called as `new WebSocket(url, protocols, { headers })`.
 */
export type AuthMode = "ticket" | "token" | "header";
export interface ReconnectOptions {
    initialDelayMs?: number;
    maxDelayMs?: number;
    factor?: number;
    jitter?: number;
}
export interface TelepathOptions {
    /** ws(s)://host/connect; http(s):// is accepted and converted (an empty path becomes /connect). */
    url: string;
    /** A token, or a callback called on every (re)connect and again before `exp` to send `refresh`. */
    token: TokenSource;
    /**
     * How the handshake carries the token: `ticket` (default in browsers),
     * `token` (`?token=`, default elsewhere) or `header`; see `AuthMode`.
     */
    auth?: AuthMode;
    /**
     * WebSocket constructor (default globalThis.WebSocket). Required where
     * there is none, e.g. Node.js 20 without `--experimental-websocket`:
     * `import { WebSocket } from "ws"` and pass `{ WebSocket }`.
     */
    WebSocket?: any;
    /** fetch implementation for connect tickets and history reads (default globalThis.fetch). */
    fetch?: typeof fetch;
    /** Per attempt (default 10000). */
    requestTimeoutMs?: number;
    /** How long to wait for `welcome` after opening a socket before giving up on it (default requestTimeoutMs). */
    connectTimeoutMs?: number;
    /** false: no automatic reconnect. Defaults 250, 10000, 2, 0.5. */
    reconnect?: false | ReconnectOptions;
    /** Refresh this long before `exp` (default 30000, or a third of the lifetime for short tokens). */
    refreshBeforeExpMs?: number;
    /** typing(room) sends at most one active:true per window (default 2000; the server's TTL is 6 s). */
    typingThrottleMs?: number;
    /** Ack room seqs (throttled) and DMs after emitting them (default true). */
    autoAck?: boolean;
    /** Room acks go out at most once per this window per room, latest seq (default 500). */
    ackThrottleMs?: number;
    /** Offer the `telepath.v1` subprotocol (default true). */
    subprotocol?: boolean;
    /** DM ids remembered to drop repeats (default 2000). */
    dmMemory?: number;
    /**
     * Reads one page of a room's history (`GET /rooms/{id}/messages`) to fill a
     * hole in the seqs the socket delivered. Default: `TelepathRest.history` on
     * `restUrl` with the token the socket uses.
     */
    history?: (room: string, query: HistoryQuery) => Promise<MessagePage>;
    /**
     * The REST api's base URL, for connect tickets (`auth: "ticket"`) and the
     * default `history` (default: the origin of `url`, as http(s)).
     */
    restUrl?: string;
    /** Per history request while filling a hole (default requestTimeoutMs). */
    gapFetchTimeoutMs?: number;
    /** Attempts after the first failed one before falling back to a rejoin with `since` (default 2). */
    gapFetchRetries?: number;
    /** Messages held per room behind a hole; one more makes the client rejoin the room with `since` (default 1000). */
    gapHoldMax?: number;
}
/**
 * A hole in a room's seqs: a message arrived whose seq is past the next one
 * due. `after` is the highest seq delivered without a hole, `before` the first
 * seq held behind it.
 */
export interface GapEvent {
    room: string;
    after: number;
    before: number;
    /**
     * `fetch`: the missing range is being read over REST (what arrives meanwhile
     * is held); `filled`: the hole is closed (by history or by the socket) and
     * the held messages were delivered; `rejoin`: fetching failed (`error`) or
     * too much piled up, so the room is joined again with `since = after`.
     */
    action: "fetch" | "filled" | "rejoin";
    error?: TelepathError;
}
export interface StateChange {
    state: ConnectionState;
    attempt?: number;
    delayMs?: number;
    code?: number;
    reason?: string;
}
export interface TelepathEvents {
    state: StateChange;
    welcome: Welcome;
    /** A room message, in seq order with the room's changes (each seq once, no hole). */
    message: RoomMessage;
    /**
     * A room message's body changed (`room`, `seq`: in the room's order like a
     * message), or a DM's (`dm`, `to`, no `seq`).
     */
    message_edited: MessageEditedEvent;
    /** A room message (`room`, `seq`) or a DM (`dm`, `to`) was deleted: keep a tombstone. */
    message_deleted: MessageDeletedEvent;
    /** A reaction changed (in the room's order); `count` is absolute: apply the latest. */
    reaction: ReactionEvent;
    /** A reader's read cursor in a room (not in the log, not replayed). */
    receipt: ReceiptEvent;
    /** A DM seen for the first time. */
    dm: DirectMessage;
    /**
     * A DM already seen came again in a newer state (`edited_at` later than
     * the one seen, or `deleted`): replace it by `id`. Plain repeats are dropped.
     */
    dm_updated: DirectMessage;
    broadcast: Broadcast;
    presence: PresenceEvent;
    typing: TypingEvent;
    /**
     * Joined, left (`reason` `kicked`/`banned` when a moderator removed them),
     * a new `role`, `muted` (`until`), `unmuted`. When the user is us and the
     * action is `left`, the room is forgotten (not rejoined after reconnects);
     * the server's second copy of an event about us is dropped.
     */
    member: MemberEvent;
    /** An invitation for us (live, and pending ones after each welcome): each id once per client. */
    invite: Invite;
    /** A room was created: public rooms for everyone, a private one for its creator. */
    room_created: RoomEvent;
    /** A room changed (a public one, one that just turned private, or a private one we take part in). */
    room_updated: RoomEvent;
    room_closed: RoomClosed;
    /** A profile changed: ours, or that of someone sharing a room with us. */
    profile: Profile;
    /** A new personal notification (unread), delivered to every connection of ours: each id once per client. */
    notification: Notification;
    /** Notifications were marked read (on any device of ours); `unread` is the new total. */
    notifications_read: NotificationsRead;
    /**
     * `unreadNotifications` changed: from `welcome`, +1 for a new
     * `notification`, the total of `notifications_read`, or
     * `setUnreadNotifications()`.
     */
    notifications_unread: {
        unread: number;
    };
    /**
     * An admin's announcement: live when posted, and the active ones not
     * dismissed after each welcome. Each id once per client (across reconnects).
     */
    announcement: Announcement;
    /** We dismissed an announcement on some device: hide it. */
    announcement_dismissed: AnnouncementDismissed;
    bye: Bye;
    error: ServerError;
    /** After every successful (re)join. */
    joined: JoinReply & {
        rejoin: boolean;
    };
    /** A join with since came back recovered:false: page history over REST up to `seq`. */
    recovery: {
        room: string;
        recovered: false;
        seq: number;
    };
    /** A rejoin after reconnect failed for good (the room was closed, ...): the room is forgotten. */
    rejoin_error: {
        room: string;
        error: TelepathError;
    };
    /** A hole in a room's seqs was seen, filled, or given up on for a rejoin with since (informational: delivery stays in order). */
    gap: GapEvent;
    /** Every raw server frame, before it is handled. */
    frame: ServerFrame;
}
/**
 * A Telepath WebSocket client: reconnects with backoff, rejoins rooms with
 * `since` so nothing is missed or repeated, queues sends and DMs while
 * disconnected (resent with the same `client_id`), refreshes the token, and
 * paces frames under the server's rate limit.
 *
 * Requests other than send/dm/join/status made while disconnected (ping,
 * leave, broadcast, request()) wait in the queue and go out after the next
 * welcome; their timeout starts when they are written. If the socket drops
 * after one was written, it rejects with `disconnected`.
 */
export declare class Telepath {
    private readonly opts;
    private readonly auth;
    private readonly events;
    private tokenSource;
    private _state;
    private _welcome?;
    private ws?;
    private ready;
    private stopped;
    private gen;
    private attempt;
    private openedAt;
    private currentToken?;
    private connectWaiters;
    private order;
    private refCounter;
    private outbox;
    private inflight;
    private readonly roomMap;
    private statusWanted?;
    private statusWaiters;
    private readonly seenDms;
    /** Per room: the read cursor the server last confirmed. */
    private readonly readCursor;
    private readonly acks;
    private pendingDmAcks;
    private rest?;
    private typingSentAt;
    /** Invitation ids already emitted (the server sends pending ones again after every welcome). */
    private readonly seenInvites;
    /** Per room: the last member event about us that was not `joined`, to drop the server's second copy. */
    private readonly lastSelfMember;
    /** Notification ids already emitted (and counted). */
    private readonly seenNotifications;
    /** Announcement ids already emitted or dismissed (the server sends active ones again after every welcome). */
    private readonly seenAnnouncements;
    private unreadNotes;
    private tokens;
    private capacity;
    private ratePerMs;
    private lastRefill;
    private reconnectTimer?;
    private welcomeTimer?;
    private ticketTimer?;
    private refreshTimer?;
    private pumpTimer?;
    private readonly retryTimers;
    /**
     * Throws a TypeError for options it cannot work with: not an options
     * object (a URL string, say), no `url` or `token`, an unknown `auth`, or no
     * WebSocket implementation (none given and no global one, as on Node.js
     * 20 without `--experimental-websocket`). Messages never quote the URL or
     * the token.
     */
    constructor(opts: TelepathOptions);
    get state(): ConnectionState;
    get user(): {
        id: string;
        name: string;
        role: string;
    } | undefined;
    /** The latest welcome frame. */
    get welcome(): Welcome | undefined;
    /**
     * The user's unread notifications as this client knows them: the count of
     * the latest `welcome` that carried one, +1 per new `notification` since,
     * replaced by the total of every `notifications_read`. A reaction
     * notification that replaces an earlier one still counts +1 until the
     * next `notifications_read` or welcome corrects it. 0 before anything told.
     */
    get unreadNotifications(): number;
    /**
     * Sets `unreadNotifications` from elsewhere, e.g. the `unread` of `GET
     * /notifications` when a welcome came without `notifications_unread`.
     */
    setUnreadNotifications(unread: number): void;
    /** Resolves on the first welcome (at once when open); rejects if closed before. Restarts a closed client. */
    connect(): Promise<Welcome>;
    /** Normal close (1000), no reconnect; state "closed". Everything waiting rejects with `closed`. */
    close(): void;
    /** Replaces the token (or callback) used from the next (re)connect on. */
    setToken(token: TokenSource): void;
    /** Skips the wait of a scheduled reconnect and tries now. */
    reconnectNow(): void;
    on<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): () => void;
    off<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): void;
    once<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): () => void;
    /** Sends any request with a fresh `ref`; resolves with the reply's data, rejects with TelepathError. */
    request<T = unknown>(frame: {
        type: string;
        [k: string]: unknown;
    }, opts?: {
        timeoutMs?: number;
    }): Promise<T>;
    /** Joins a room; remembered and rejoined with `since` after every reconnect. */
    join(room: string, opts?: {
        since?: number;
    }): Promise<JoinReply>;
    /**
     * Leaves a room (ends participation); it is forgotten at once, so it is not
     * rejoined. The room's owner may not leave it (`conflict`: they hand it
     * over or close it first): the room is then joined again with `since`.
     */
    leave(room: string): Promise<{
        room: string;
    }>;
    /** Sends a room message; queued while disconnected and resent after a drop with the same client_id. */
    send(room: string, body: string, opts?: {
        kind?: string;
        replyTo?: string;
        clientId?: string;
    }): Promise<SendReply>;
    /** Sends a direct message (to a user id or username); queued like send. */
    dm(to: string, body: string, opts?: {
        clientId?: string;
    }): Promise<DmReply>;
    /**
     * Edits one of our room messages (`forbidden` for another user's,
     * `not_found` for a deleted one). Queued while disconnected and written
     * again after a drop (an edit to the current body changes nothing).
     */
    edit(room: string, id: string, body: string): Promise<EditReply>;
    /** Deletes a room message (its author, the room's owner or an admin); queued like edit. */
    delete(room: string, id: string): Promise<DeleteReply>;
    /** The same as delete(). */
    deleteMessage(room: string, id: string): Promise<DeleteReply>;
    /** Adds (`on`, the default) or removes our reaction `emoji` on a room message; queued like edit. */
    react(room: string, id: string, emoji: string, on?: boolean): Promise<ReactReply>;
    /**
     * Moves our read cursor in `room` to `seq` (only forward; `receipt` events
     * tell the room). A seq at or below the cursor the server last confirmed
     * resolves at once with it, without a frame.
     */
    markRead(room: string, seq: number): Promise<ReadReply>;
    /** Edits one of our DMs (the frame names it as both `dm` and `id`). */
    editDm(id: string, body: string): Promise<EditReply>;
    /** Deletes one of our DMs. */
    deleteDm(id: string): Promise<DeleteReply>;
    /** Sets the user's status; re-applied after every reconnect. */
    setStatus(status: ChosenStatus, text?: string): Promise<{
        status: string;
    }>;
    /** Says we are typing in `room`: at most one active:true per typingThrottleMs. Dropped while disconnected. */
    typing(room: string): void;
    /** Stops the typing indicator (only if we said active on this connection). */
    stopTyping(room: string): void;
    /**
     * Moves the room's delivery cursor (throttled per room, latest seq wins;
     * kept across reconnects). Never past a hole: for a joined room the seq is
     * capped at the highest one delivered without a hole.
     */
    ackRoom(room: string, seq: number): void;
    /**
     * Acks a DM: it leaves our offline queue. With `version` (the `deleted`
     * and `edited_at` of the copy received), an edit or a delete made since
     * stays queued and comes again; without, whatever state it is in now.
     */
    ackDm(id: string, version?: DmAckVersion): void;
    /** Admins only: a broadcast to every connection. */
    broadcast(body: string): Promise<{
        id: string;
    }>;
    ping(): Promise<{
        pong: number;
    }>;
    /** The highest seq delivered to the app for `room` (else the latest join reply's seq). */
    lastSeq(room: string): number | undefined;
    /** Rooms joined (or being joined) on this client. */
    rooms(): string[];
    /** Sends and DMs queued or in flight (edits, deletes, reactions and reads are not counted). */
    pending(): number;
    private setState;
    private token;
    private openSocket;
    private detach;
    /** A connect ticket for `token` (`POST /auth/ticket`), within the connect timeout. */
    private connectTicket;
    /** The REST api's base URL: `restUrl`, else the origin of the gateway's URL. */
    private restBaseUrl;
    /** The socket is gone (or never came up): requeue, reject, and reconnect or stop. */
    private disconnected;
    /** Stops for good: state closed, everything waiting rejects with `closed`. */
    private shutdown;
    private clearConnectionTimers;
    /**
     * After a drop: sends and DMs (queued or in flight) stay queued in their
     * order; joins and status go back to their rooms/status to be redone after
     * the next welcome; other requests already written reject with `err`;
     * typing, acks and refreshes are dropped (acks are redone from state).
     */
    private salvage;
    private failItem;
    private onData;
    /**
     * A `member` event. One about us (not `joined`) also comes through our own
     * channel, so it may arrive twice: a copy identical to the previous one for
     * that room, with no successful join of the room in between, is dropped.
     * Our own `left` (on another connection, or `kicked`/`banned` by a
     * moderator) forgets the room: the server stopped relaying it to this
     * connection, and it is not rejoined after reconnects.
     */
    private onMember;
    /** A new notification: emitted and counted once per id. */
    private onNotification;
    private onNotificationsRead;
    private setUnreadNotes;
    private onWelcome;
    private onReply;
    /** Runs `fn` after `ms` on this connection; if the socket drops first, `it` goes back to the queue. */
    private later;
    private onJoinReply;
    private onMessage;
    /**
     * An edit, delete or reaction. A room's takes a seq and goes through the
     * room's log exactly like a message (dropped when repeated, held behind a
     * hole); a DM's (`dm`, no seq) goes out at once unless it is older than
     * what we have of that DM.
     */
    private onChange;
    /** Emits one item of a room's log (or a change outside it) as its own event. */
    private emitItem;
    /** The highest seq with nothing missing below it (delivered, or where the seqs continue). */
    private contiguous;
    /** Takes one item of a joined room's log (from the socket or from history): delivered, held, or dropped. */
    private ingest;
    /**
     * A join without since was answered with `reply`: the replay from the
     * participant's cursor comes first, so a first message at or below `reply`
     * starts the replay; one above it means there was nothing to replay.
     */
    private sincelessBase;
    private hold;
    private deliver;
    /** Delivers what the held messages allow, then deals with a hole that is left. */
    private settle;
    private startGap;
    /** Reads the hole over REST (paging, with retries) and delivers it; falls back to a rejoin with since. */
    private fetchGap;
    /** Gives up on filling the hole here: the room is joined again with since = the contiguous seq. */
    private rejoinForGap;
    /** `p`, or a `timeout` error after `ms`; the timer is the gap's, so cancelling the gap clears it. */
    private withTimeout;
    private readHistory;
    private armStall;
    private clearStall;
    /** Stops reading the hole (a late page is ignored). */
    private cancelGap;
    /** Forgets everything about holes: held messages, the fetch, a replay expected. */
    private resetGap;
    private onDm;
    /** Acks (when auto-acking) a DM version addressed to us. */
    private ackDmToMe;
    private forgetRoom;
    private enqueueRequest;
    private pushJoin;
    private pushStatus;
    private pushFire;
    private scheduleAck;
    /** Writes queued frames while the rate allows (a token bucket under the server's limit). */
    private pump;
    /** Puts one item on the wire; false when it was refused locally (nothing written). */
    private write;
    private onTimeout;
    private scheduleRefresh;
    private refresh;
}
