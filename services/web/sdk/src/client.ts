import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { TelepathError } from "./errors.js";
import { TelepathRest } from "./rest.js";
import type {
  Announcement,
  AnnouncementDismissed,
  Broadcast,
  Bye,
  ChosenStatus,
  DeleteReply,
  DirectMessage,
  DmAckVersion,
  DmReply,
  EditReply,
  HistoryQuery,
  Invite,
  JoinReply,
  MemberEvent,
  MessageDeletedEvent,
  MessageEditedEvent,
  MessagePage,
  Notification,
  NotificationsRead,
  PresenceEvent,
  Profile,
  ReactionEvent,
  ReactReply,
  ReadReply,
  ReceiptEvent,
  Reply,
  RoomChange,
  RoomClosed,
  RoomEvent,
  RoomMessage,
  SendReply,
  ServerError,
  ServerFrame,
  TypingEvent,
  User,
  Welcome,
} from "./types.js";
import { BoundedMap, isBrowser, randomId, redact, socketUrl, tokenExpiry, decodeJwtPayload } from "./util.js";

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
  notifications_unread: { unread: number };
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
  joined: JoinReply & { rejoin: boolean };
  /** A join with since came back recovered:false: page history over REST up to `seq`. */
  recovery: { room: string; recovered: false; seq: number };
  /** A rejoin after reconnect failed for good (the room was closed, ...): the room is forgotten. */
  rejoin_error: { room: string; error: TelepathError };
  /** A hole in a room's seqs was seen, filled, or given up on for a rejoin with since (informational: delivery stays in order). */
  gap: GapEvent;
  /** Every raw server frame, before it is handled. */
  frame: ServerFrame;
}

type Frame = { type: string; [k: string]: unknown };
type Waiter<T> = { resolve: (v: T) => void; reject: (e: TelepathError) => void };

/**
 * `change`: edit, delete, react and read: idempotent on the server (a repeat
 * changes nothing), so like sends they stay queued across drops and are
 * written again after the reconnect.
 */
type ItemKind = "send" | "dm" | "change" | "join" | "status" | "request" | "refresh" | "fire";

/** What travels in a room's ordered log: messages and the changes that take a seq. */
type LogItem = (RoomMessage & { type?: "message" }) | RoomChange;

/** What the client knows of a DM's state, to tell a repeat from an update. */
interface DmVersion {
  deleted: boolean;
  /** edited_at in ms (0: never edited). */
  edited: number;
  /** edited_at as the server wrote it: orders two edits within one ms. */
  at?: string;
}

interface Item {
  /** Creation order: restores the queue's order after a drop. */
  order: number;
  kind: ItemKind;
  frame: Frame;
  timeoutMs: number;
  /** send, dm, request, refresh: the caller's promise. */
  waiter?: Waiter<any>;
  /** join and status: everyone waiting for this attempt. */
  waiters?: Waiter<any>[];
  room?: string;
  since?: number;
  retries?: number;
  timer?: ReturnType<typeof setTimeout>;
  onWrite?: () => void;
}

interface RoomEntry {
  room: string;
  /** Highest seq emitted to the app with no hole below it (the room's messages go out in seq order). */
  delivered?: number;
  /** Where the seqs continue when nothing was delivered yet: the since of the join, or where a sinceless join's replay began. */
  base?: number;
  /** A join without since was answered with this seq: its first message tells where the replay began. */
  sincelessReply?: number;
  /** Messages and changes past a hole, by seq, until it is filled. */
  held: Map<number, LogItem>;
  /** A join's replay is due up to this seq: holes below it are the replay's to fill. */
  replayUntil?: number;
  /** A stalled replay: fetch the hole anyway when this fires. */
  stallTimer?: ReturnType<typeof setTimeout>;
  /** The hole being read over REST. */
  gap?: Gap;
  /** Where to resume when nothing was delivered: an explicit since, or a recovery point. */
  resumeFrom?: number;
  /** The latest join reply's seq. */
  replySeq?: number;
  /** A join succeeded at least once (later joins are rejoins). */
  joined: boolean;
  /** join() calls not answered yet and not attached to an item on the wire. */
  waiters: Waiter<JoinReply>[];
  /** The join of this connection still waiting for its reply. */
  inflight?: Item;
  rejoinFailures: number;
  rejoinTimer?: ReturnType<typeof setTimeout>;
}

interface Gap {
  after: number;
  before: number;
  timer?: ReturnType<typeof setTimeout>;
}

interface AckState {
  wanted: number;
  sent?: number;
  lastAt: number;
  timer?: ReturnType<typeof setTimeout>;
}

const TRANSIENT = new Set(["unavailable", "internal", "rate_limited", "timeout"]);
/** History errors not worth a retry: the room is gone or not ours; the rejoin says so. */
const GAP_FINAL = new Set(["not_found", "forbidden"]);
/** The largest history page the api serves. */
const HISTORY_PAGE = 500;
/** A connection that stayed up this long resets the backoff. */
const STABLE_MS = 5000;
const MAX_TIMER_MS = 2_147_483_647;
/** How long a socket that erred before its welcome may take to close before it is given up. */
const ERROR_CLOSE_GRACE_MS = 100;
/** A member event about us identical to the previous one within this window is the server's second copy. */
const SELF_MEMBER_REPEAT_MS = 10_000;
const NO_WEBSOCKET =
  "no WebSocket implementation: this runtime has no global WebSocket (Node.js 20 has none without --experimental-websocket). " +
  'Pass one as opts.WebSocket, e.g. `npm install ws`, then `import { WebSocket } from "ws"` and `new Telepath({ url, token, WebSocket })`';

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
export class Telepath {
  private readonly opts: TelepathOptions;
  private readonly auth: AuthMode;
  private readonly events = new Emitter<TelepathEvents>();
  private tokenSource: TokenSource;
  private _state: ConnectionState = "idle";
  private _welcome?: Welcome;
  private ws?: any;
  private ready = false;
  private stopped = true;
  private gen = 0;
  private attempt = 0;
  private openedAt = 0;
  private currentToken?: string;
  private connectWaiters: Waiter<Welcome>[] = [];

  private order = 0;
  private refCounter = 0;
  private outbox: Item[] = [];
  private inflight = new Map<string, Item>();
  private readonly roomMap = new Map<string, RoomEntry>();
  private statusWanted?: { status: ChosenStatus; text?: string };
  private statusWaiters: Waiter<{ status: string }>[] = [];
  private readonly seenDms: BoundedMap<string, DmVersion>;
  /** Per room: the read cursor the server last confirmed. */
  private readonly readCursor = new Map<string, number>();
  private readonly acks = new Map<string, AckState>();
  private pendingDmAcks = new Map<string, DmAckVersion | undefined>();
  private rest?: TelepathRest;
  private typingSentAt = new Map<string, number>();
  /** Invitation ids already emitted (the server sends pending ones again after every welcome). */
  private readonly seenInvites: BoundedMap<string, true>;
  /** Per room: the last member event about us that was not `joined`, to drop the server's second copy. */
  private readonly lastSelfMember = new Map<string, { key: string; at: number }>();
  /** Notification ids already emitted (and counted). */
  private readonly seenNotifications: BoundedMap<string, true>;
  /** Announcement ids already emitted or dismissed (the server sends active ones again after every welcome). */
  private readonly seenAnnouncements = new Set<string>();
  private unreadNotes = 0;

  private tokens = 0;
  private capacity = 40;
  private ratePerMs = 0.045;
  private lastRefill = 0;

  private reconnectTimer?: ReturnType<typeof setTimeout>;
  private welcomeTimer?: ReturnType<typeof setTimeout>;
  private ticketTimer?: ReturnType<typeof setTimeout>;
  private refreshTimer?: ReturnType<typeof setTimeout>;
  private pumpTimer?: ReturnType<typeof setTimeout>;
  private readonly retryTimers = new Set<ReturnType<typeof setTimeout>>();

  /**
   * Throws a TypeError for options it cannot work with: not an options
   * object (a URL string, say), no `url` or `token`, an unknown `auth`, or no
   * WebSocket implementation (none given and no global one, as on Node.js
   * 20 without `--experimental-websocket`). Messages never quote the URL or
   * the token.
   */
  constructor(opts: TelepathOptions) {
    if (typeof opts === "string" || (opts as unknown) instanceof URL) {
      throw new TypeError(
        'Telepath: the constructor takes an options object, not a URL: new Telepath({ url: "wss://host/connect", token })',
      );
    }
    if (!opts || typeof opts !== "object") throw new TypeError('Telepath: the constructor takes an options object: new Telepath({ url: "wss://host/connect", token })');
    if (typeof opts.url !== "string" || opts.url === "") throw new TypeError("Telepath: opts.url is required (a string: the gateway's ws(s):// or http(s):// URL)");
    if (typeof opts.token !== "string" && typeof opts.token !== "function") {
      throw new TypeError("Telepath: opts.token is required (a string, or a function returning one)");
    }
    const auth = opts.auth ?? (isBrowser() ? "ticket" : "token");
    if (auth !== "ticket" && auth !== "token" && auth !== "header") {
      throw new TypeError('Telepath: opts.auth must be "ticket", "token" or "header"');
    }
    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket;
    if (typeof WS !== "function") {
      throw new TypeError(
        opts.WebSocket !== undefined
          ? "Telepath: opts.WebSocket must be a WebSocket constructor"
          : `Telepath: ${NO_WEBSOCKET}`,
      );
    }
    if (auth === "header" && opts.WebSocket === undefined && isBrowser()) {
      throw new TypeError('Telepath: auth "header" needs a WebSocket that can set headers, and a browser\'s cannot: use auth "ticket"');
    }
    if (opts.fetch !== undefined && typeof opts.fetch !== "function") throw new TypeError("Telepath: opts.fetch must be a function");
    this.auth = auth;
    this.opts = { ...opts };
    this.tokenSource = opts.token;
    this.seenDms = new BoundedMap(opts.dmMemory ?? 2000);
    this.seenInvites = new BoundedMap(1000);
    this.seenNotifications = new BoundedMap(2000);
  }

  // -------------------------------------------------------------------------
  // Public API
  // -------------------------------------------------------------------------

  get state(): ConnectionState {
    return this._state;
  }

  get user(): { id: string; name: string; role: string } | undefined {
    return this._welcome?.user;
  }

  /** The latest welcome frame. */
  get welcome(): Welcome | undefined {
    return this._welcome;
  }

  /**
   * The user's unread notifications as this client knows them: the count of
   * the latest `welcome` that carried one, +1 per new `notification` since,
   * replaced by the total of every `notifications_read`. A reaction
   * notification that replaces an earlier one still counts +1 until the
   * next `notifications_read` or welcome corrects it. 0 before anything told.
   */
  get unreadNotifications(): number {
    return this.unreadNotes;
  }

  /**
   * Sets `unreadNotifications` from elsewhere, e.g. the `unread` of `GET
   * /notifications` when a welcome came without `notifications_unread`.
   */
  setUnreadNotifications(unread: number): void {
    if (typeof unread !== "number" || !Number.isFinite(unread)) return;
    this.setUnreadNotes(unread);
  }

  /** Resolves on the first welcome (at once when open); rejects if closed before. Restarts a closed client. */
  connect(): Promise<Welcome> {
    if (this._state === "open" && this._welcome) return Promise.resolve(this._welcome);
    const p = new Promise<Welcome>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this.stopped) {
      this.stopped = false;
      this.attempt = 0;
      void this.openSocket();
    }
    return p;
  }

  /** Normal close (1000), no reconnect; state "closed". Everything waiting rejects with `closed`. */
  close(): void {
    if (this.stopped && this._state !== "idle") return;
    this.shutdown(1000, "closed by the client");
  }

  /** Replaces the token (or callback) used from the next (re)connect on. */
  setToken(token: TokenSource): void {
    this.tokenSource = token;
  }

  /** Skips the wait of a scheduled reconnect and tries now. */
  reconnectNow(): void {
    if (this.stopped || this.ws || !this.reconnectTimer) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    void this.openSocket();
  }

  on<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): () => void {
    return this.events.on(event, fn);
  }

  off<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): void {
    this.events.off(event, fn);
  }

  once<E extends keyof TelepathEvents>(event: E, fn: (payload: TelepathEvents[E]) => void): () => void {
    return this.events.once(event, fn);
  }

  /** Sends any request with a fresh `ref`; resolves with the reply's data, rejects with TelepathError. */
  request<T = unknown>(frame: { type: string; [k: string]: unknown }, opts?: { timeoutMs?: number }): Promise<T> {
    return this.enqueueRequest<T>("request", frame, opts?.timeoutMs);
  }

  /** Joins a room; remembered and rejoined with `since` after every reconnect. */
  join(room: string, opts?: { since?: number }): Promise<JoinReply> {
    if (this._state === "closed") return Promise.reject(new TelepathError("closed", "the client is closed"));
    const since = opts?.since;
    return new Promise<JoinReply>((resolve, reject) => {
      const waiter = { resolve, reject };
      let entry = this.roomMap.get(room);
      if (!entry) {
        entry = { room, joined: false, waiters: [], rejoinFailures: 0, held: new Map() };
        this.roomMap.set(room, entry);
      }
      if (since !== undefined) {
        entry.resumeFrom = since;
        // An explicit since restarts the replay from there.
        if (entry.delivered !== undefined && since < entry.delivered) entry.delivered = undefined;
        entry.base = undefined;
      }
      if (!this.ready) {
        entry.waiters.push(waiter);
        return;
      }
      if (entry.inflight && since === undefined) {
        entry.inflight.waiters!.push(waiter);
        return;
      }
      entry.waiters.push(waiter);
      this.pushJoin(entry);
      this.pump();
    });
  }

  /**
   * Leaves a room (ends participation); it is forgotten at once, so it is not
   * rejoined. The room's owner may not leave it (`conflict`: they hand it
   * over or close it first): the room is then joined again with `since`.
   */
  leave(room: string): Promise<{ room: string }> {
    const entry = this.roomMap.get(room);
    const since = entry?.joined ? this.contiguous(entry) : undefined;
    if (entry) this.forgetRoom(entry, new TelepathError("cancelled", "left the room"));
    const p = this.enqueueRequest<{ room: string }>("request", { type: "leave", room });
    if (entry?.joined) {
      p.catch((err: TelepathError) => {
        if (err?.code !== "conflict" || this.roomMap.has(room) || this._state === "closed") return;
        this.join(room, since !== undefined ? { since } : undefined).catch(() => {
          /* rejoin_error and the join's own failure say enough */
        });
      });
    }
    return p;
  }

  /** Sends a room message; queued while disconnected and resent after a drop with the same client_id. */
  send(room: string, body: string, opts?: { kind?: string; replyTo?: string; clientId?: string }): Promise<SendReply> {
    const frame: Frame = { type: "send", room, body, client_id: opts?.clientId ?? randomId() };
    if (opts?.kind !== undefined) frame["kind"] = opts.kind;
    if (opts?.replyTo !== undefined) frame["reply_to"] = opts.replyTo;
    return this.enqueueRequest("send", frame);
  }

  /** Sends a direct message (to a user id or username); queued like send. */
  dm(to: string, body: string, opts?: { clientId?: string }): Promise<DmReply> {
    return this.enqueueRequest("dm", { type: "dm", to, body, client_id: opts?.clientId ?? randomId() });
  }

  /**
   * Edits one of our room messages (`forbidden` for another user's,
   * `not_found` for a deleted one). Queued while disconnected and written
   * again after a drop (an edit to the current body changes nothing).
   */
  edit(room: string, id: string, body: string): Promise<EditReply> {
    return this.enqueueRequest("change", { type: "edit", room, id, body });
  }

  /** Deletes a room message (its author, the room's owner or an admin); queued like edit. */
  delete(room: string, id: string): Promise<DeleteReply> {
    return this.enqueueRequest("change", { type: "delete", room, id });
  }

  /** The same as delete(). */
  deleteMessage(room: string, id: string): Promise<DeleteReply> {
    return this.delete(room, id);
  }

  /** Adds (`on`, the default) or removes our reaction `emoji` on a room message; queued like edit. */
  react(room: string, id: string, emoji: string, on = true): Promise<ReactReply> {
    return this.enqueueRequest("change", { type: "react", room, id, emoji, on });
  }

  /**
   * Moves our read cursor in `room` to `seq` (only forward; `receipt` events
   * tell the room). A seq at or below the cursor the server last confirmed
   * resolves at once with it, without a frame.
   */
  markRead(room: string, seq: number): Promise<ReadReply> {
    const cursor = this.readCursor.get(room);
    if (cursor !== undefined && seq <= cursor) return Promise.resolve({ room, seq: cursor });
    return this.enqueueRequest<ReadReply>("change", { type: "read", room, seq }).then((r) => {
      if (typeof r?.seq === "number") this.readCursor.set(room, Math.max(this.readCursor.get(room) ?? 0, r.seq));
      return r;
    });
  }

  /** Edits one of our DMs (the frame names it as both `dm` and `id`). */
  editDm(id: string, body: string): Promise<EditReply> {
    return this.enqueueRequest("change", { type: "edit", dm: id, id, body });
  }

  /** Deletes one of our DMs. */
  deleteDm(id: string): Promise<DeleteReply> {
    return this.enqueueRequest("change", { type: "delete", dm: id, id });
  }

  /** Sets the user's status; re-applied after every reconnect. */
  setStatus(status: ChosenStatus, text?: string): Promise<{ status: string }> {
    if (this._state === "closed") return Promise.reject(new TelepathError("closed", "the client is closed"));
    this.statusWanted = text === undefined ? { status } : { status, text };
    return new Promise((resolve, reject) => {
      this.statusWaiters.push({ resolve, reject });
      if (this.ready) {
        this.pushStatus();
        this.pump();
      }
    });
  }

  /** Says we are typing in `room`: at most one active:true per typingThrottleMs. Dropped while disconnected. */
  typing(room: string): void {
    if (!this.ready) return;
    const now = Date.now();
    const last = this.typingSentAt.get(room);
    if (last !== undefined && now - last < (this.opts.typingThrottleMs ?? 2000)) return;
    this.typingSentAt.set(room, now);
    this.pushFire({ type: "typing", room, active: true });
  }

  /** Stops the typing indicator (only if we said active on this connection). */
  stopTyping(room: string): void {
    if (!this.typingSentAt.has(room)) return;
    this.typingSentAt.delete(room);
    if (this.ready) this.pushFire({ type: "typing", room, active: false });
  }

  /**
   * Moves the room's delivery cursor (throttled per room, latest seq wins;
   * kept across reconnects). Never past a hole: for a joined room the seq is
   * capped at the highest one delivered without a hole.
   */
  ackRoom(room: string, seq: number): void {
    const entry = this.roomMap.get(room);
    const upto = entry ? this.contiguous(entry) : undefined;
    if (upto !== undefined && seq > upto) seq = upto;
    let st = this.acks.get(room);
    if (!st) {
      st = { wanted: seq, lastAt: 0 };
      this.acks.set(room, st);
    } else if (seq <= st.wanted && st.sent !== undefined && seq <= st.sent) {
      return;
    } else {
      st.wanted = Math.max(st.wanted, seq);
    }
    this.scheduleAck(room, st);
  }

  /**
   * Acks a DM: it leaves our offline queue. With `version` (the `deleted`
   * and `edited_at` of the copy received), an edit or a delete made since
   * stays queued and comes again; without, whatever state it is in now.
   */
  ackDm(id: string, version?: DmAckVersion): void {
    if (this.ready) this.pushFire(dmAckFrame(id, version));
    else this.pendingDmAcks.set(id, version);
  }

  /** Admins only: a broadcast to every connection. */
  broadcast(body: string): Promise<{ id: string }> {
    return this.enqueueRequest("request", { type: "broadcast", body });
  }

  ping(): Promise<{ pong: number }> {
    return this.enqueueRequest("request", { type: "ping" });
  }

  /** The highest seq delivered to the app for `room` (else the latest join reply's seq). */
  lastSeq(room: string): number | undefined {
    const e = this.roomMap.get(room);
    return e ? e.delivered ?? e.replySeq ?? e.resumeFrom : undefined;
  }

  /** Rooms joined (or being joined) on this client. */
  rooms(): string[] {
    return [...this.roomMap.keys()];
  }

  /** Sends and DMs queued or in flight (edits, deletes, reactions and reads are not counted). */
  pending(): number {
    let n = 0;
    for (const it of this.outbox) if (it.kind === "send" || it.kind === "dm") n++;
    for (const it of this.inflight.values()) if (it.kind === "send" || it.kind === "dm") n++;
    return n;
  }

  // -------------------------------------------------------------------------
  // Connection lifecycle
  // -------------------------------------------------------------------------

  private setState(state: ConnectionState, extra: Omit<StateChange, "state"> = {}): void {
    const changed = this._state !== state;
    this._state = state;
    // Reconnecting is announced on every scheduled attempt, the rest on change.
    if (changed || state === "reconnecting") this.events.emit("state", { state, ...extra });
  }

  private async token(): Promise<string> {
    const src = this.tokenSource;
    const t = typeof src === "function" ? await src() : src;
    if (typeof t !== "string" || t === "") throw new TelepathError("unauthorized", "the token callback gave no token");
    return t;
  }

  private async openSocket(): Promise<void> {
    const gen = ++this.gen;
    this.reconnectTimer = undefined;
    if (this._state !== "reconnecting") this.setState("connecting");
    let token: string;
    try {
      token = await this.token();
    } catch (err) {
      if (gen !== this.gen || this.stopped) return;
      this.disconnected(undefined, `token: ${redact((err as Error)?.message ?? String(err))}`, false);
      return;
    }
    if (gen !== this.gen || this.stopped) return;
    const WS = this.opts.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket;
    if (typeof WS !== "function") {
      this.shutdown(1006, NO_WEBSOCKET);
      return;
    }
    let credential: { param: "token" | "ticket"; value: string } | undefined;
    if (this.auth === "ticket") {
      let ticket: string;
      try {
        ticket = await this.connectTicket(token);
      } catch (err) {
        if (gen !== this.gen || this.stopped) return;
        const e = err instanceof TelepathError ? err : new TelepathError("network", String(err));
        const reason = `ticket: ${redact(e.message, [token])}${e.status ? ` (${e.status})` : ""}`;
        // The token itself was refused: a static one will not get better.
        if (e.status === 401 && typeof this.tokenSource !== "function") {
          this.shutdown(4001, reason);
          return;
        }
        this.disconnected(undefined, reason, false);
        return;
      }
      if (gen !== this.gen || this.stopped) return;
      credential = { param: "ticket", value: ticket };
    } else if (this.auth === "token") {
      credential = { param: "token", value: token };
    }
    let ws: any;
    try {
      const url = socketUrl(this.opts.url, credential);
      const protocols = this.opts.subprotocol === false ? undefined : ["telepath.v1"];
      if (this.auth === "header") {
        const headers = { authorization: `Bearer ${token}` };
        ws = isNodeWebSocket(WS)
          ? new (WS as any)(url, protocols ? { protocols, headers } : { headers })
          : new (WS as any)(url, protocols ?? [], { headers });
      } else {
        ws = protocols ? new (WS as any)(url, protocols) : new (WS as any)(url);
      }
    } catch (err) {
      // A constructor's error may quote the URL, which carries the token or the ticket.
      this.disconnected(undefined, `socket: ${redact((err as Error)?.message ?? String(err), [token, credential?.value])}`, false);
      return;
    }
    this.ws = ws;
    this.currentToken = token;
    ws.onmessage = (ev: { data: unknown }) => {
      if (this.ws === ws) this.onData(ev.data);
    };
    ws.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.ws !== ws) return;
      this.detach(ws);
      this.disconnected(ev.code ?? 1006, ev.reason ?? "", this.ready);
    };
    ws.onerror = () => {
      // Browsers follow an error with a close event. Node 20's WebSocket does
      // not when the handshake fails (refused, reset: a server restarting),
      // which would leave the attempt waiting for the welcome timeout: a
      // socket that errs before its welcome and gets no close is given up.
      if (this.ws !== ws || this.ready) return;
      setTimeout(() => {
        if (this.ws !== ws || this.ready) return;
        this.detach(ws);
        try {
          ws.close();
        } catch {
          /* not open yet */
        }
        this.disconnected(undefined, "the connection failed", false);
      }, ERROR_CLOSE_GRACE_MS);
    };
    const connectTimeout = this.opts.connectTimeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    this.welcomeTimer = setTimeout(() => {
      this.welcomeTimer = undefined;
      if (this.ws !== ws || this.ready) return;
      this.detach(ws);
      try {
        ws.close(4000, "no welcome");
      } catch {
        /* ignore */
      }
      this.disconnected(undefined, "no welcome in time", false);
    }, connectTimeout);
  }

  private detach(ws: any): void {
    if (this.ws === ws) this.ws = undefined;
    ws.onmessage = null;
    ws.onclose = null;
    // Not null: the ws package throws an 'error' event nobody listens to (closing
    // a socket still connecting emits one).
    ws.onerror = ignore;
  }

  /** A connect ticket for `token` (`POST /auth/ticket`), within the connect timeout. */
  private connectTicket(token: string): Promise<string> {
    const opts: ConstructorParameters<typeof TelepathRest>[0] = { baseUrl: this.restBaseUrl(), token };
    if (this.opts.fetch) opts.fetch = this.opts.fetch;
    const rest = new TelepathRest(opts);
    const ms = this.opts.connectTimeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    return new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.ticketTimer === timer) this.ticketTimer = undefined;
        reject(new TelepathError("timeout", `POST /auth/ticket: no answer within ${ms} ms`));
      }, ms);
      this.ticketTimer = timer;
      const done = () => {
        clearTimeout(timer);
        if (this.ticketTimer === timer) this.ticketTimer = undefined;
      };
      rest.ticket().then(
        (r) => {
          done();
          if (r && typeof r.ticket === "string" && r.ticket !== "") resolve(r.ticket);
          else reject(new TelepathError("bad_response", "POST /auth/ticket: no ticket in the answer"));
        },
        (e) => {
          done();
          reject(e);
        },
      );
    });
  }

  /** The REST api's base URL: `restUrl`, else the origin of the gateway's URL. */
  private restBaseUrl(): string {
    return this.opts.restUrl ?? restBase(this.opts.url);
  }

  /** The socket is gone (or never came up): requeue, reject, and reconnect or stop. */
  private disconnected(code: number | undefined, reason: string, wasReady: boolean): void {
    this.ready = false;
    this.clearConnectionTimers();
    this.salvage(new TelepathError("disconnected", `the connection dropped${code ? ` (${code})` : ""}`));
    if (this.stopped) return;
    if (code === 4003) {
      this.shutdown(code, reason || "disconnected by an admin");
      return;
    }
    if (code === 4001 && typeof this.tokenSource !== "function") {
      this.shutdown(code, reason || "token expired (a static token cannot be refreshed)");
      return;
    }
    const rc = this.opts.reconnect;
    if (rc === false) {
      this.shutdown(code ?? 1006, reason || "connection lost");
      return;
    }
    if (wasReady && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    this.attempt++;
    const backoff: BackoffOptions = { ...DEFAULT_BACKOFF, ...(rc ?? {}) };
    let delayMs = backoffDelay(this.attempt, backoff);
    // Rate-limit abuse (and too many connections): at least the cap.
    if (code === 4008 || code === 4009) delayMs = Math.max(delayMs, backoff.maxDelayMs ?? DEFAULT_BACKOFF.maxDelayMs);
    const extra: Omit<StateChange, "state"> = { attempt: this.attempt, delayMs };
    if (code !== undefined) extra.code = code;
    if (reason) extra.reason = reason;
    this.setState("reconnecting", extra);
    this.reconnectTimer = setTimeout(() => void this.openSocket(), delayMs);
  }

  /** Stops for good: state closed, everything waiting rejects with `closed`. */
  private shutdown(code: number, reason: string): void {
    this.stopped = true;
    this.gen++;
    this.ready = false;
    const ws = this.ws;
    if (ws) {
      this.detach(ws);
      try {
        ws.close(1000, "bye");
      } catch {
        /* ignore */
      }
    }
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.clearConnectionTimers();
    const err = new TelepathError("closed", `the client is closed: ${reason}`);
    this.salvage(err);
    for (const it of this.outbox) this.failItem(it, err);
    this.outbox = [];
    for (const e of this.roomMap.values()) {
      for (const w of e.waiters.splice(0)) w.reject(err);
      if (e.rejoinTimer) clearTimeout(e.rejoinTimer);
      e.rejoinTimer = undefined;
      // Rooms never joined are forgotten; joined ones are rejoined by a later connect().
      if (!e.joined) this.roomMap.delete(e.room);
    }
    for (const w of this.statusWaiters.splice(0)) w.reject(err);
    for (const st of this.acks.values()) {
      if (st.timer) clearTimeout(st.timer);
      st.timer = undefined;
    }
    for (const w of this.connectWaiters.splice(0)) w.reject(err);
    this.setState("closed", { code, reason });
  }

  private clearConnectionTimers(): void {
    if (this.ticketTimer) clearTimeout(this.ticketTimer);
    this.ticketTimer = undefined;
    if (this.welcomeTimer) clearTimeout(this.welcomeTimer);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    this.welcomeTimer = this.refreshTimer = this.pumpTimer = undefined;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    for (const e of this.roomMap.values()) {
      if (e.rejoinTimer) clearTimeout(e.rejoinTimer);
      e.rejoinTimer = undefined;
      // The next connection's rejoin (since = the contiguous seq) replays what was held or missing.
      this.resetGap(e);
    }
    this.typingSentAt.clear();
  }

  /**
   * After a drop: sends and DMs (queued or in flight) stay queued in their
   * order; joins and status go back to their rooms/status to be redone after
   * the next welcome; other requests already written reject with `err`;
   * typing, acks and refreshes are dropped (acks are redone from state).
   */
  private salvage(err: TelepathError): void {
    const keep: Item[] = [];
    const reattach = (it: Item) => {
      if (it.timer) clearTimeout(it.timer);
      it.timer = undefined;
      if (it.kind === "join") {
        const e = it.room !== undefined ? this.roomMap.get(it.room) : undefined;
        if (e) {
          if (e.inflight === it) e.inflight = undefined;
          e.waiters.push(...it.waiters!);
        } else for (const w of it.waiters!) w.reject(err);
        return true;
      }
      if (it.kind === "status") {
        this.statusWaiters.push(...it.waiters!);
        return true;
      }
      return false;
    };
    for (const it of this.inflight.values()) {
      if (reattach(it)) continue;
      if (it.kind === "send" || it.kind === "dm" || it.kind === "change") keep.push(it);
      else if (it.kind === "fire") continue;
      else this.failItem(it, err);
    }
    this.inflight.clear();
    for (const it of this.outbox) {
      if (reattach(it)) continue;
      if (it.kind === "fire" || it.kind === "refresh") {
        if (it.kind === "refresh") this.failItem(it, err);
        continue;
      }
      keep.push(it);
    }
    keep.sort((a, b) => a.order - b.order);
    this.outbox = keep;
    for (const e of this.roomMap.values()) e.inflight = undefined;
  }

  private failItem(it: Item, err: TelepathError): void {
    if (it.timer) clearTimeout(it.timer);
    it.timer = undefined;
    it.waiter?.reject(err);
    if (it.waiters) for (const w of it.waiters.splice(0)) w.reject(err);
  }

  // -------------------------------------------------------------------------
  // Incoming frames
  // -------------------------------------------------------------------------

  private onData(data: unknown): void {
    if (typeof data !== "string") return;
    let frame: ServerFrame;
    try {
      frame = JSON.parse(data) as ServerFrame;
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object" || typeof (frame as { type?: unknown }).type !== "string") return;
    this.events.emit("frame", frame);
    switch (frame.type) {
      case "welcome":
        this.onWelcome(frame);
        break;
      case "reply":
        this.onReply(frame);
        break;
      case "message":
        this.onMessage(frame);
        break;
      case "message_edited":
      case "message_deleted":
      case "reaction":
        this.onChange(frame);
        break;
      case "receipt":
        this.events.emit("receipt", frame);
        break;
      case "dm":
        this.onDm(frame);
        break;
      case "broadcast":
        this.events.emit("broadcast", frame);
        break;
      case "presence":
        this.events.emit("presence", frame);
        break;
      case "typing":
        this.events.emit("typing", frame);
        break;
      case "member":
        this.onMember(frame);
        break;
      case "invite":
        if (typeof frame.id !== "string" || this.seenInvites.has(frame.id)) break;
        this.seenInvites.set(frame.id, true);
        this.events.emit("invite", frame);
        break;
      case "room_created":
        this.events.emit("room_created", frame);
        break;
      case "room_updated":
        this.events.emit("room_updated", frame);
        break;
      case "profile":
        this.events.emit("profile", frame);
        break;
      case "notification":
        this.onNotification(frame);
        break;
      case "notifications_read":
        this.onNotificationsRead(frame);
        break;
      case "announcement":
        if (typeof frame.id !== "string" || this.seenAnnouncements.has(frame.id)) break;
        this.seenAnnouncements.add(frame.id);
        this.events.emit("announcement", frame);
        break;
      case "announcement_dismissed":
        if (typeof frame.id !== "string") break;
        // A copy that comes later (sent before the dismissal) is not shown again.
        this.seenAnnouncements.add(frame.id);
        this.events.emit("announcement_dismissed", frame);
        break;
      case "room_closed": {
        const e = this.roomMap.get(frame.room);
        if (e) this.forgetRoom(e, new TelepathError("not_found", "the room was closed"));
        this.events.emit("room_closed", frame);
        break;
      }
      case "bye":
        this.events.emit("bye", frame);
        break;
      case "error":
        this.events.emit("error", frame);
        break;
    }
  }

  /**
   * A `member` event. One about us (not `joined`) also comes through our own
   * channel, so it may arrive twice: a copy identical to the previous one for
   * that room, with no successful join of the room in between, is dropped.
   * Our own `left` (on another connection, or `kicked`/`banned` by a
   * moderator) forgets the room: the server stopped relaying it to this
   * connection, and it is not rejoined after reconnects.
   */
  private onMember(frame: MemberEvent): void {
    const me = this.user?.id;
    if (me === undefined || frame.user?.id !== me || frame.action === "joined") {
      this.events.emit("member", frame);
      return;
    }
    const key = JSON.stringify([frame.action, frame.reason ?? null, frame.by?.id ?? null, frame.role ?? null, frame.until ?? null]);
    const last = this.lastSelfMember.get(frame.room);
    const now = Date.now();
    if (last && last.key === key && now - last.at < SELF_MEMBER_REPEAT_MS) return;
    this.lastSelfMember.set(frame.room, { key, at: now });
    if (this.lastSelfMember.size > 1000) this.lastSelfMember.delete(this.lastSelfMember.keys().next().value!);
    if (frame.action === "left") {
      const e = this.roomMap.get(frame.room);
      // Removed by a moderator: forget even a join still under way (its room is not ours any more).
      const removed = frame.reason === "kicked" || frame.reason === "banned";
      if (e && (e.joined || removed)) {
        const err = removed
          ? new TelepathError("forbidden", `removed from the room (${frame.reason})`)
          : new TelepathError("cancelled", "left the room on another connection");
        this.forgetRoom(e, err);
      }
    }
    this.events.emit("member", frame);
  }

  /** A new notification: emitted and counted once per id. */
  private onNotification(n: Notification): void {
    if (typeof n.id !== "string" || this.seenNotifications.has(n.id)) return;
    this.seenNotifications.set(n.id, true);
    const before = this.unreadNotes;
    if (n.read !== true) this.unreadNotes++;
    this.events.emit("notification", n);
    if (this.unreadNotes !== before) this.events.emit("notifications_unread", { unread: this.unreadNotes });
  }

  private onNotificationsRead(r: NotificationsRead): void {
    const before = this.unreadNotes;
    if (typeof r.unread === "number" && Number.isFinite(r.unread)) this.unreadNotes = Math.max(0, r.unread);
    this.events.emit("notifications_read", r);
    if (this.unreadNotes !== before) this.events.emit("notifications_unread", { unread: this.unreadNotes });
  }

  private setUnreadNotes(unread: number): void {
    const next = Math.max(0, Math.floor(unread));
    if (next === this.unreadNotes) return;
    this.unreadNotes = next;
    this.events.emit("notifications_unread", { unread: next });
  }

  private onWelcome(w: Welcome): void {
    if (this.welcomeTimer) clearTimeout(this.welcomeTimer);
    this.welcomeTimer = undefined;
    this._welcome = w;
    this.ready = true;
    this.openedAt = Date.now();
    const rate = Number(w.limits?.max_rate_per_s) > 0 ? Number(w.limits.max_rate_per_s) : 50;
    this.capacity = Math.max(1, Math.floor(rate * 0.8));
    this.ratePerMs = (rate * 0.9) / 1000;
    this.tokens = this.capacity;
    this.lastRefill = Date.now();

    // Rejoin every room (with since), re-apply the status, re-send acks, then the queue.
    const rest = this.outbox;
    this.outbox = [];
    for (const e of this.roomMap.values()) this.pushJoin(e);
    if (this.statusWanted) this.pushStatus();
    for (const [room, st] of this.acks) {
      if (!this.roomMap.has(room)) continue;
      st.sent = undefined;
      this.pushFire({ type: "ack", room, seq: st.wanted }, () => {
        st.sent = st.wanted;
        st.lastAt = Date.now();
      });
    }
    for (const [id, version] of this.pendingDmAcks) this.pushFire(dmAckFrame(id, version));
    this.pendingDmAcks.clear();
    this.outbox.push(...rest);

    const unreadBefore = this.unreadNotes;
    // Absent when the server could not tell: the last known count stands (setUnreadNotifications() corrects it).
    if (typeof w.notifications_unread === "number" && Number.isFinite(w.notifications_unread)) {
      this.unreadNotes = Math.max(0, Math.floor(w.notifications_unread));
    }

    this.setState("open");
    this.events.emit("welcome", w);
    if (this.unreadNotes !== unreadBefore) this.events.emit("notifications_unread", { unread: this.unreadNotes });
    for (const c of this.connectWaiters.splice(0)) c.resolve(w);
    if (this.currentToken) this.scheduleRefresh(this.currentToken);
    this.pump();
  }

  private onReply(r: Reply): void {
    const it = this.inflight.get(r.ref);
    if (!it) return;
    this.inflight.delete(r.ref);
    if (it.timer) clearTimeout(it.timer);
    it.timer = undefined;
    const err = r.ok ? undefined : new TelepathError(r.error?.code ?? "internal", r.error?.message ?? "request failed");
    const data = r.ok ? r.data : undefined;
    switch (it.kind) {
      case "join":
        this.onJoinReply(it, data as JoinReply | undefined, err);
        return;
      case "status":
        for (const w of it.waiters!.splice(0)) err ? w.reject(err) : w.resolve(data);
        return;
      case "send":
      case "dm":
      case "change":
        // Idempotent (by client_id, or by nature for changes): a rate-limited attempt is retried.
        if (err && err.code === "rate_limited" && (it.retries ?? 0) < 5) {
          it.retries = (it.retries ?? 0) + 1;
          this.later(500 * it.retries, () => {
            this.outbox.unshift(it);
            this.pump();
          }, it);
          return;
        }
        err ? it.waiter?.reject(err) : it.waiter?.resolve(data);
        return;
      default:
        err ? it.waiter?.reject(err) : it.waiter?.resolve(data);
    }
  }

  /** Runs `fn` after `ms` on this connection; if the socket drops first, `it` goes back to the queue. */
  private later(ms: number, fn: () => void, it?: Item): void {
    if (it) this.inflight.set(`retry:${it.order}`, it);
    const t = setTimeout(() => {
      this.retryTimers.delete(t);
      if (it) this.inflight.delete(`retry:${it.order}`);
      fn();
    }, ms);
    this.retryTimers.add(t);
  }

  private onJoinReply(it: Item, data: JoinReply | undefined, err: TelepathError | undefined): void {
    const entry = it.room !== undefined ? this.roomMap.get(it.room) : undefined;
    const waiters = it.waiters!.splice(0);
    if (!entry) {
      // Left (or closed) meanwhile: the waiters were rejected then.
      for (const w of waiters) w.reject(err ?? new TelepathError("cancelled", "left the room"));
      return;
    }
    if (entry.inflight === it) entry.inflight = undefined;
    if (err || !data) {
      const e = err ?? new TelepathError("bad_response", "join reply without data");
      if (entry.joined && TRANSIENT.has(e.code)) {
        // A rejoin that failed for now: try again on this connection.
        entry.waiters.push(...waiters);
        entry.rejoinFailures++;
        const gen = this.gen;
        entry.rejoinTimer = setTimeout(() => {
          entry.rejoinTimer = undefined;
          if (gen !== this.gen || !this.ready || this.roomMap.get(entry.room) !== entry) return;
          this.pushJoin(entry);
          this.pump();
        }, backoffDelay(entry.rejoinFailures, { ...DEFAULT_BACKOFF, ...(this.opts.reconnect || {}) }));
        return;
      }
      for (const w of waiters) w.reject(e);
      if (entry.joined) {
        this.forgetRoom(entry, e);
        this.events.emit("rejoin_error", { room: entry.room, error: e });
      } else if (!entry.inflight) {
        for (const w of entry.waiters.splice(0)) w.reject(e);
        this.roomMap.delete(entry.room);
      }
      return;
    }
    const rejoin = entry.joined;
    // A participant again: the next member event about us is news, even if it looks like the last one.
    this.lastSelfMember.delete(entry.room);
    entry.joined = true;
    entry.rejoinFailures = 0;
    entry.replySeq = data.seq;
    entry.sincelessReply = undefined;
    entry.replayUntil = undefined;
    if (data.recovered === false) {
      // Nothing was replayed: the app pages (since, seq] over REST; live messages continue after seq.
      entry.delivered = data.seq;
      entry.resumeFrom = data.seq;
    } else if (it.since !== undefined && data.seq < it.since) {
      // The room's history is behind what we saw (a restored database): follow the server.
      entry.delivered = data.seq;
      entry.resumeFrom = data.seq;
      entry.held.clear();
    } else if (it.since !== undefined) {
      // The replay of (since, seq] follows the reply.
      if (entry.delivered === undefined) entry.base = it.since;
      if (data.seq > this.contiguous(entry)!) entry.replayUntil = data.seq;
    } else if (this.contiguous(entry) === undefined) {
      // The server replays from the participant's cursor, which we do not know: the first message says.
      entry.sincelessReply = data.seq;
    }
    for (const w of waiters) w.resolve(data);
    this.events.emit("joined", { ...data, rejoin });
    if (data.recovered === false) this.events.emit("recovery", { room: data.room ?? entry.room, recovered: false, seq: data.seq });
    this.settle(entry);
  }

  private onMessage(m: RoomMessage): void {
    const entry = this.roomMap.get(m.room);
    if (!entry || typeof m.seq !== "number") {
      this.events.emit("message", m);
      return;
    }
    this.ingest(entry, m);
    this.settle(entry);
  }

  /**
   * An edit, delete or reaction. A room's takes a seq and goes through the
   * room's log exactly like a message (dropped when repeated, held behind a
   * hole); a DM's (`dm`, no seq) goes out at once unless it is older than
   * what we have of that DM.
   */
  private onChange(f: MessageEditedEvent | MessageDeletedEvent | ReactionEvent): void {
    const c = f as LogItem & { dm?: string };
    if (typeof c.room === "string" && typeof c.seq === "number") {
      const entry = this.roomMap.get(c.room);
      if (entry) {
        this.ingest(entry, c);
        this.settle(entry);
        return;
      }
    } else if (typeof c.dm === "string" && c.type !== "reaction") {
      // The changed DM went back into our offline queue: this copy is its
      // current state, acked as such (a later change stays queued).
      this.ackDmToMe(c.id, (c as { to?: string }).to, c.type === "message_deleted" ? { deleted: true } : { deleted: false, edited_at: c.edited_at });
      const prev = this.seenDms.get(c.id);
      if (prev) {
        const next: DmVersion =
          c.type === "message_deleted"
            ? { ...prev, deleted: true }
            : { deleted: prev.deleted, edited: editedMs(c.edited_at), at: c.edited_at ?? undefined };
        if (!newerDm(next, prev)) return;
        this.seenDms.set(c.id, next);
      }
    }
    this.emitItem(c);
  }

  /** Emits one item of a room's log (or a change outside it) as its own event. */
  private emitItem(c: LogItem): void {
    switch (c.type) {
      case "message_edited":
        this.events.emit("message_edited", c);
        return;
      case "message_deleted":
        this.events.emit("message_deleted", c);
        return;
      case "reaction":
        this.events.emit("reaction", c);
        return;
      default:
        this.events.emit("message", c);
    }
  }

  // -------------------------------------------------------------------------
  // Room order: each room's messages reach the app in seq order, without
  // holes or repeats. A message past the next seq due is held while the
  // missing range is read over REST; acks carry the contiguous seq only.
  // -------------------------------------------------------------------------

  /** The highest seq with nothing missing below it (delivered, or where the seqs continue). */
  private contiguous(entry: RoomEntry): number | undefined {
    return entry.delivered ?? entry.base;
  }

  /** Takes one item of a joined room's log (from the socket or from history): delivered, held, or dropped. */
  private ingest(entry: RoomEntry, m: LogItem): void {
    let upto = this.contiguous(entry);
    if (upto === undefined) {
      if (entry.sincelessReply !== undefined) {
        this.sincelessBase(entry, m.seq);
      } else if (entry.inflight) {
        // The join's reply says where the room continues.
        this.hold(entry, m);
        return;
      } else {
        // Nothing tells where the room starts (a message before any reply): take it as the start.
        entry.base = m.seq - 1;
      }
      upto = this.contiguous(entry)!;
    }
    // Repeats across a reconnect seam, a replay overlapping live frames, a hole filled twice: dropped.
    if (m.seq <= upto) return;
    if (m.seq === upto + 1) this.deliver(entry, m);
    else this.hold(entry, m);
  }

  /**
   * A join without since was answered with `reply`: the replay from the
   * participant's cursor comes first, so a first message at or below `reply`
   * starts the replay; one above it means there was nothing to replay.
   */
  private sincelessBase(entry: RoomEntry, first: number): void {
    const reply = entry.sincelessReply!;
    entry.sincelessReply = undefined;
    if (first <= reply) {
      entry.base = first - 1;
      entry.replayUntil = reply;
    } else {
      entry.base = reply;
    }
  }

  private hold(entry: RoomEntry, m: LogItem): void {
    if (!entry.held.has(m.seq)) entry.held.set(m.seq, m);
  }

  private deliver(entry: RoomEntry, m: LogItem): void {
    entry.delivered = m.seq;
    if (entry.replayUntil !== undefined && m.seq >= entry.replayUntil) entry.replayUntil = undefined;
    this.emitItem(m);
    if ((this.opts.autoAck ?? true) && this.roomMap.get(entry.room) === entry) this.ackRoom(entry.room, m.seq);
  }

  /** Delivers what the held messages allow, then deals with a hole that is left. */
  private settle(entry: RoomEntry): void {
    const live = () => this.roomMap.get(entry.room) === entry;
    if (!live()) return;
    if (this.contiguous(entry) === undefined && entry.sincelessReply !== undefined && entry.held.size > 0) {
      this.sincelessBase(entry, Math.min(...entry.held.keys()));
    }
    let upto = this.contiguous(entry);
    if (upto === undefined) return;
    for (const seq of entry.held.keys()) if (seq <= upto) entry.held.delete(seq);
    for (;;) {
      const next = entry.held.get(upto + 1);
      if (!next) break;
      entry.held.delete(upto + 1);
      this.deliver(entry, next);
      if (!live()) return;
      upto = this.contiguous(entry);
      if (upto === undefined) return;
    }
    const gap = entry.gap;
    if (gap && upto >= gap.before - 1) {
      this.cancelGap(entry);
      this.events.emit("gap", { room: entry.room, after: gap.after, before: gap.before, action: "filled" });
      if (!live()) return;
    }
    if (entry.held.size === 0) {
      this.clearStall(entry);
      return;
    }
    const max = Math.max(1, this.opts.gapHoldMax ?? 1000);
    if (entry.inflight) {
      // A join is under way: its replay covers everything relayed before it.
      if (entry.held.size > max) {
        const extra = [...entry.held.keys()].sort((a, b) => b - a).slice(0, entry.held.size - max);
        for (const seq of extra) entry.held.delete(seq);
      }
      return;
    }
    if (entry.held.size > max) {
      this.rejoinForGap(entry);
      return;
    }
    if (entry.gap || !this.ready) return;
    if (entry.replayUntil !== undefined && upto < entry.replayUntil) {
      // The join's replay is still coming: give it time before reading history.
      this.armStall(entry);
      return;
    }
    this.clearStall(entry);
    this.startGap(entry, upto, Math.min(...entry.held.keys()));
  }

  private startGap(entry: RoomEntry, after: number, before: number): void {
    const gap: Gap = { after, before };
    entry.gap = gap;
    this.events.emit("gap", { room: entry.room, after, before, action: "fetch" });
    if (entry.gap !== gap) return;
    void this.fetchGap(entry, gap);
  }

  /** Reads the hole over REST (paging, with retries) and delivers it; falls back to a rejoin with since. */
  private async fetchGap(entry: RoomEntry, gap: Gap): Promise<void> {
    const live = () => entry.gap === gap && this.roomMap.get(entry.room) === entry;
    const retries = Math.max(0, this.opts.gapFetchRetries ?? 2);
    const timeoutMs = this.opts.gapFetchTimeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    const backoff = { ...DEFAULT_BACKOFF, ...(this.opts.reconnect || {}) };
    let error: TelepathError | undefined;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0) {
        await new Promise<void>((r) => (gap.timer = setTimeout(r, backoffDelay(attempt, backoff))));
        gap.timer = undefined;
        if (!live()) return;
      }
      try {
        for (;;) {
          const after = this.contiguous(entry)!;
          const page = await this.withTimeout(gap, this.readHistory(entry.room, { after, before: gap.before, limit: HISTORY_PAGE }), timeoutMs);
          if (!live()) return;
          const messages = Array.isArray(page?.messages) ? page.messages : [];
          let progress = false;
          for (const m of messages) {
            if (typeof m?.seq !== "number" || m.seq <= after || m.seq >= gap.before) continue;
            this.hold(entry, { type: "message", ...m, room: entry.room } as RoomMessage);
            progress = true;
          }
          this.settle(entry);
          if (!live()) return; // filled (or given up, or left)
          if (!page?.has_more) {
            // History has all it holds of the range, and seqs are still
            // missing: edits, deletes and reactions take seqs but are not
            // history items. A join with since replays them in order.
            this.rejoinForGap(entry);
            return;
          }
          if (!progress) break;
        }
        error = new TelepathError("bad_response", `history has no seq ${this.contiguous(entry)! + 1} in room ${entry.room}`);
      } catch (err) {
        if (!live()) return;
        error = err instanceof TelepathError ? err : new TelepathError("network", redact((err as Error)?.message ?? String(err), [this.currentToken]));
        if (GAP_FINAL.has(error.code)) break;
      }
    }
    if (live()) this.rejoinForGap(entry, error);
  }

  /** Gives up on filling the hole here: the room is joined again with since = the contiguous seq. */
  private rejoinForGap(entry: RoomEntry, error?: TelepathError): void {
    const after = this.contiguous(entry)!;
    const before = entry.held.size > 0 ? Math.min(...entry.held.keys()) : after + 1;
    this.resetGap(entry);
    const ev: GapEvent = { room: entry.room, after, before, action: "rejoin" };
    if (error) ev.error = error;
    this.events.emit("gap", ev);
    if (this.roomMap.get(entry.room) !== entry || !this.ready || entry.inflight) return;
    this.pushJoin(entry);
    this.pump();
  }

  /** `p`, or a `timeout` error after `ms`; the timer is the gap's, so cancelling the gap clears it. */
  private withTimeout<T>(gap: Gap, p: Promise<T>, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new TelepathError("timeout", `no history page within ${ms} ms`)), ms);
      gap.timer = t;
      const done = () => {
        clearTimeout(t);
        if (gap.timer === t) gap.timer = undefined;
      };
      p.then(
        (v) => {
          done();
          resolve(v);
        },
        (e) => {
          done();
          reject(e);
        },
      );
    });
  }

  private readHistory(room: string, query: HistoryQuery): Promise<MessagePage> {
    if (this.opts.history) return this.opts.history(room, query);
    if (!this.rest) {
      const opts: ConstructorParameters<typeof TelepathRest>[0] = {
        baseUrl: this.restBaseUrl(),
        token: () => this.currentToken ?? this.token(),
      };
      if (this.opts.fetch) opts.fetch = this.opts.fetch;
      this.rest = new TelepathRest(opts);
    }
    return this.rest.history(room, query);
  }

  private armStall(entry: RoomEntry): void {
    if (entry.stallTimer) return;
    const gen = this.gen;
    entry.stallTimer = setTimeout(() => {
      entry.stallTimer = undefined;
      if (gen !== this.gen || this.roomMap.get(entry.room) !== entry) return;
      entry.replayUntil = undefined;
      this.settle(entry);
    }, this.opts.gapFetchTimeoutMs ?? this.opts.requestTimeoutMs ?? 10_000);
  }

  private clearStall(entry: RoomEntry): void {
    if (entry.stallTimer) clearTimeout(entry.stallTimer);
    entry.stallTimer = undefined;
  }

  /** Stops reading the hole (a late page is ignored). */
  private cancelGap(entry: RoomEntry): void {
    if (entry.gap?.timer) clearTimeout(entry.gap.timer);
    entry.gap = undefined;
  }

  /** Forgets everything about holes: held messages, the fetch, a replay expected. */
  private resetGap(entry: RoomEntry): void {
    this.cancelGap(entry);
    this.clearStall(entry);
    entry.held.clear();
    entry.replayUntil = undefined;
    entry.sincelessReply = undefined;
  }

  private onDm(d: DirectMessage): void {
    const prev = this.seenDms.get(d.id);
    const version: DmVersion = { deleted: d.deleted === true, edited: editedMs(d.edited_at) };
    if (typeof d.edited_at === "string") version.at = d.edited_at;
    if (!prev) {
      this.seenDms.set(d.id, version);
      this.events.emit("dm", d);
    } else if (newerDm(version, prev)) {
      // An edited or deleted DM is queued again in its current state: an update, not a repeat.
      this.seenDms.set(d.id, version);
      this.events.emit("dm_updated", d);
    }
    // Only the recipient's ack counts (the sender's other devices get copies too).
    // Repeats are acked again: the server re-sends a DM until its ack lands.
    this.ackDmToMe(d.id, d.to, { deleted: d.deleted === true, edited_at: d.edited_at ?? null });
  }

  /** Acks (when auto-acking) a DM version addressed to us. */
  private ackDmToMe(id: string, to: string | undefined, version: DmAckVersion): void {
    const me = this._welcome?.user;
    if ((this.opts.autoAck ?? true) && me && to === me.id) this.ackDm(id, version);
  }

  private forgetRoom(entry: RoomEntry, err: TelepathError): void {
    this.roomMap.delete(entry.room);
    this.resetGap(entry);
    if (entry.rejoinTimer) clearTimeout(entry.rejoinTimer);
    for (const w of entry.waiters.splice(0)) w.reject(err);
    if (entry.inflight) for (const w of entry.inflight.waiters!.splice(0)) w.reject(err);
    const st = this.acks.get(entry.room);
    if (st?.timer) clearTimeout(st.timer);
    this.acks.delete(entry.room);
    this.typingSentAt.delete(entry.room);
  }

  // -------------------------------------------------------------------------
  // Outgoing frames
  // -------------------------------------------------------------------------

  private enqueueRequest<T>(kind: ItemKind, frame: Frame, timeoutMs?: number): Promise<T> {
    if (this._state === "closed") return Promise.reject(new TelepathError("closed", "the client is closed"));
    return new Promise<T>((resolve, reject) => {
      const it: Item = {
        order: ++this.order,
        kind,
        frame,
        timeoutMs: timeoutMs ?? this.opts.requestTimeoutMs ?? 10_000,
        waiter: { resolve, reject },
      };
      this.outbox.push(it);
      this.pump();
    });
  }

  private pushJoin(entry: RoomEntry): void {
    // The join's replay fills any hole: no need to read it over REST too.
    this.cancelGap(entry);
    this.clearStall(entry);
    const since = this.contiguous(entry) ?? entry.resumeFrom;
    const frame: Frame = { type: "join", room: entry.room };
    if (since !== undefined) frame["since"] = since;
    const it: Item = {
      order: ++this.order,
      kind: "join",
      frame,
      timeoutMs: this.opts.requestTimeoutMs ?? 10_000,
      waiters: entry.waiters.splice(0),
      room: entry.room,
    };
    if (since !== undefined) it.since = since;
    entry.inflight = it;
    this.outbox.push(it);
  }

  private pushStatus(): void {
    const s = this.statusWanted!;
    const frame: Frame = { type: "status", status: s.status };
    if (s.text !== undefined) frame["text"] = s.text;
    this.outbox.push({
      order: ++this.order,
      kind: "status",
      frame,
      timeoutMs: this.opts.requestTimeoutMs ?? 10_000,
      waiters: this.statusWaiters.splice(0),
    });
  }

  private pushFire(frame: Frame, onWrite?: () => void): void {
    const it: Item = { order: ++this.order, kind: "fire", frame, timeoutMs: 0 };
    if (onWrite) it.onWrite = onWrite;
    this.outbox.push(it);
    this.pump();
  }

  private scheduleAck(room: string, st: AckState): void {
    if (st.timer) return;
    const window = this.opts.ackThrottleMs ?? 500;
    const wait = Math.max(0, st.lastAt + window - Date.now());
    const flush = () => {
      st.timer = undefined;
      if (this.acks.get(room) !== st) return;
      if (st.sent !== undefined && st.wanted <= st.sent) return;
      if (!this.ready) return; // sent after the next welcome
      const seq = st.wanted;
      st.lastAt = Date.now();
      this.pushFire({ type: "ack", room, seq }, () => {
        st.sent = Math.max(st.sent ?? 0, seq);
      });
    };
    if (wait === 0) flush();
    else st.timer = setTimeout(flush, wait);
  }

  /** Writes queued frames while the rate allows (a token bucket under the server's limit). */
  private pump(): void {
    if (!this.ws || !this.ready || this.pumpTimer) return;
    while (this.outbox.length > 0) {
      const now = Date.now();
      this.tokens = Math.min(this.capacity, this.tokens + (now - this.lastRefill) * this.ratePerMs);
      this.lastRefill = now;
      if (this.tokens < 1) {
        const wait = Math.max(1, Math.ceil((1 - this.tokens) / this.ratePerMs));
        this.pumpTimer = setTimeout(() => {
          this.pumpTimer = undefined;
          this.pump();
        }, wait);
        return;
      }
      const it = this.outbox.shift()!;
      if (!this.write(it)) continue;
      this.tokens -= 1;
      if (!this.ws || !this.ready) return;
    }
  }

  /** Puts one item on the wire; false when it was refused locally (nothing written). */
  private write(it: Item): boolean {
    const ws = this.ws;
    const isRequest = it.kind !== "fire";
    const ref = isRequest ? String(++this.refCounter) : undefined;
    const text = JSON.stringify(ref ? { ...it.frame, ref } : it.frame);
    const max = Number(this._welcome?.limits?.max_frame_bytes) || 0;
    if (max > 0 && utf8Length(text) > max) {
      // The server would close the connection (1009) and a resend would do it again.
      this.failItem(it, new TelepathError("too_large", `frame is over ${max} bytes`));
      return false;
    }
    if (ref) {
      this.inflight.set(ref, it);
      it.timer = setTimeout(() => this.onTimeout(ref), it.timeoutMs);
    }
    try {
      ws.send(text);
    } catch {
      // The socket is closing; its close event requeues or rejects what is in flight.
    }
    it.onWrite?.();
    return true;
  }

  private onTimeout(ref: string): void {
    const it = this.inflight.get(ref);
    if (!it) return;
    this.inflight.delete(ref);
    it.timer = undefined;
    const err = new TelepathError("timeout", `no reply to ${String(it.frame["type"])} within ${it.timeoutMs} ms`);
    if (it.kind === "join") {
      this.onJoinReply(it, undefined, err);
      return;
    }
    this.failItem(it, err);
  }

  // -------------------------------------------------------------------------
  // Token refresh
  // -------------------------------------------------------------------------

  private scheduleRefresh(token: string): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (typeof this.tokenSource !== "function") return;
    const exp = tokenExpiry(token);
    if (exp === undefined) return;
    const now = Date.now();
    const iat = decodeJwtPayload(token)?.["iat"];
    const lifetime = Math.max(0, exp * 1000 - (typeof iat === "number" ? iat * 1000 : now));
    const remaining = exp * 1000 - now;
    const lead = Math.min(this.opts.refreshBeforeExpMs ?? 30_000, lifetime / 3, Math.max(0, remaining) / 2 + 1);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, remaining - lead));
    const gen = this.gen;
    this.refreshTimer = setTimeout(() => void this.refresh(gen, exp), delay);
  }

  private async refresh(gen: number, oldExp: number): Promise<void> {
    this.refreshTimer = undefined;
    if (gen !== this.gen || !this.ready) return;
    const retry = () => {
      if (gen !== this.gen || !this.ready) return;
      const left = oldExp * 1000 - Date.now();
      if (left <= 0) return; // the server closes 4001; the reconnect gets a fresh token
      this.refreshTimer = setTimeout(() => void this.refresh(gen, oldExp), Math.max(100, Math.min(1000, left / 3)));
    };
    let token: string;
    try {
      token = await this.token();
    } catch {
      retry();
      return;
    }
    if (gen !== this.gen || !this.ready) return;
    const exp = tokenExpiry(token);
    if (exp !== undefined && exp <= oldExp) {
      // The callback gave the same (or an older) token: ask again a little later.
      retry();
      return;
    }
    try {
      await this.enqueueRequest("refresh", { type: "refresh", token });
    } catch {
      retry();
      return;
    }
    if (gen !== this.gen) return;
    this.currentToken = token;
    this.scheduleRefresh(token);
  }
}

/** An `ack` of a DM, naming the version received when there is one. */
function dmAckFrame(id: string, version?: DmAckVersion): Frame {
  if (!version) return { type: "ack", dm: id };
  const frame: Frame = { type: "ack", dm: id, deleted: version.deleted };
  if (typeof version.edited_at === "string") frame.edited_at = version.edited_at;
  return frame;
}

/** edited_at in ms; 0 when absent, 1 when it does not parse (edited, time unknown). */
function editedMs(at: string | null | undefined): number {
  if (typeof at !== "string" || at === "") return 0;
  const t = Date.parse(at);
  return Number.isFinite(t) ? Math.max(1, t) : 1;
}

/** Whether `next` is a later state of a DM than `prev`: deleted since, or edited later. */
function newerDm(next: DmVersion, prev: DmVersion): boolean {
  if (prev.deleted) return false;
  if (next.deleted) return true;
  if (next.edited !== prev.edited) return next.edited > prev.edited;
  // The same ms: the server's own text of the time (finer digits) decides.
  return next.at !== undefined && prev.at !== undefined && next.at > prev.at;
}

function ignore(): void {
  /* nothing */
}

/**
 * Node's own WebSocket (undici's), or a subclass: it takes headers as
 * `new WebSocket(url, { protocols, headers })`. The ws package's (which has
 * `Server`) and others take `(url, protocols, { headers })`.
 */
function isNodeWebSocket(WS: unknown): boolean {
  const g = globalThis as { WebSocket?: unknown; process?: { versions?: { node?: string } } };
  const native = g.WebSocket;
  if (!g.process?.versions?.node || typeof native !== "function" || "Server" in native) return false;
  return WS === native || (typeof WS === "function" && WS.prototype instanceof (native as typeof WebSocket));
}

/** The REST api's origin for a gateway URL: ws(s) becomes http(s), the path goes. */
function restBase(url: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "ws:") u.protocol = "http:";
  else if (u.protocol === "wss:") u.protocol = "https:";
  return u.origin;
}

function utf8Length(s: string): number {
  // Fast path for ASCII; TextEncoder otherwise.
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(s)) return s.length;
  return new TextEncoder().encode(s).length;
}
