import { TelepathError } from "./errors.js";
import { enc, query, requestJson, type JsonRequest, type Method } from "./http.js";
import type {
  ApiCreateRoom,
  ApiPresence,
  CreatedWebhook,
  CreateWebhook,
  DisconnectResult,
  DmReply,
  Notification,
  PublishedToUser,
  PublishItem,
  PublishOptions,
  PublishOutcome,
  PublishToUserOptions,
  Room,
  RoomMessage,
  Webhook,
  WebhookDelivery,
  WebhookDeliveryQuery,
} from "./types.js";

/** An API key, or a callback giving one (called for every request). */
export type ApiKeySource = string | (() => string | Promise<string>);

export interface TelepathServerOptions {
  /** The api's origin, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** An API key (`tpk_…`, made by an admin: `TelepathRest.createApiKey`), or a callback giving one. */
  apiKey: ApiKeySource;
  /** fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
}

/**
 * The server API (`/api/`) for application backends, over fetch, with an
 * API key sent as `Authorization: Bearer tpk_…`. Keep the key on a server:
 * it is not a user's token and must never reach a browser.
 *
 * Every non-2xx answer rejects with TelepathError(code, message, status,
 * retryAfter) like `TelepathRest`: `unauthorized` 401 (message
 * `missing_api_key`, `not_an_api_key` for a user's token, `unknown_api_key`,
 * `revoked_api_key`), `forbidden` 403 (`missing scope: <scope>`, or a room
 * outside the key's `room_prefix`), `bad_request` 400, `not_found` 404,
 * `conflict` 409, `too_large` 413, `unavailable` 503; a failed fetch
 * rejects with `network`. The key is never in an error message, and the
 * object does not show it (it is held in a private field).
 */
export class TelepathServer {
  readonly url: string;
  readonly #apiKey: ApiKeySource;
  readonly #fetch?: typeof fetch;

  constructor(opts: TelepathServerOptions) {
    if (typeof opts === "string") {
      throw new TypeError('TelepathServer: pass an options object, not a string: new TelepathServer({ url: "http://host:8080", apiKey })');
    }
    if (!opts || typeof opts !== "object") throw new TypeError("TelepathServer: pass an options object: new TelepathServer({ url, apiKey })");
    if (typeof opts.url !== "string" || !opts.url) throw new TypeError("TelepathServer: opts.url must be the server's origin, e.g. http://127.0.0.1:8080");
    if ((typeof opts.apiKey !== "string" || !opts.apiKey) && typeof opts.apiKey !== "function") {
      throw new TypeError("TelepathServer: opts.apiKey must be an API key (tpk_…) or a function returning one");
    }
    if (opts.fetch !== undefined && typeof opts.fetch !== "function") throw new TypeError("TelepathServer: opts.fetch must be a function");
    this.url = opts.url.replace(/\/+$/, "");
    this.#apiKey = opts.apiKey;
    if (opts.fetch !== undefined) this.#fetch = opts.fetch;
  }

  /**
   * Publishes a room message (`POST /api/rooms/{id}/publish`, scope
   * `publish`) as the bot user `as` (a username, created if new) or the
   * `system` user; neither needs to be a participant. Resolves once it is
   * committed, with the message as the room's `message` event carries it.
   * With `clientId` a retry is safe: a repeat by the same sender answers
   * the first message and stores nothing. 404 for a room that does not
   * exist or is closed.
   */
  publish(room: string, body: string, opts: PublishOptions = {}): Promise<RoomMessage> {
    return this.call<RoomMessage>("POST", `/api/rooms/${enc(room)}/publish`, publishBody(body, opts));
  }

  /**
   * Publishes 1–100 room messages in one call (`POST /api/publish`, scope
   * `publish`): one outcome per item, in order, `{message}` or `{error:
   * {code, message}}` (a refused item does not hold the others back).
   */
  async publishBatch(items: PublishItem[]): Promise<PublishOutcome[]> {
    const wire = items.map(({ room, body, ...opts }) => ({ room, ...publishBody(body, opts) }));
    return (await this.call<{ results: PublishOutcome[] }>("POST", "/api/publish", { items: wire })).results;
  }

  /**
   * A direct message to a user (`POST /api/users/{id}/publish`, scope
   * `publish`) from the bot user `as` or the `system` user, stored and
   * delivered like any DM (queued while the user is offline). Resolves with
   * `{id, ts, delivered}` (`delivered`: the user had a live connection).
   *
   * With `kind: "notification"` it is a personal notification of kind `app`
   * instead (the `notification` event on every live connection of the user,
   * kept in their `GET /notifications` and unread count), and resolves with
   * that notification. With `clientId`, a repeat by the same sender answers
   * the first DM or notification and delivers nothing.
   */
  publishToUser(userId: string, body: string, opts: PublishToUserOptions & { kind: "notification" }): Promise<Notification>;
  publishToUser(userId: string, body: string, opts?: PublishToUserOptions & { kind?: "dm" }): Promise<DmReply>;
  publishToUser(userId: string, body: string, opts?: PublishToUserOptions): Promise<DmReply | Notification>;
  async publishToUser(userId: string, body: string, opts: PublishToUserOptions = {}): Promise<DmReply | Notification> {
    const payload: Record<string, string> = { body };
    if (opts.kind !== undefined) payload["kind"] = opts.kind;
    if (opts.clientId !== undefined) payload["client_id"] = opts.clientId;
    if (opts.as !== undefined) payload["as"] = opts.as;
    const res = await this.call<PublishedToUser>("POST", `/api/users/${enc(userId)}/publish`, payload);
    const out = opts.kind === "notification" ? res?.notification : res?.dm;
    if (!out) throw new TelepathError("bad_response", `POST /api/users/{id}/publish: no ${opts.kind ?? "dm"} in the answer`, 201);
    return out;
  }

  /** Which of these users (1–1000 ids) are online (`GET /api/presence?users=`, scope `presence`). */
  presence(userIds: string[]): Promise<ApiPresence> {
    const users = userIds.map(enc).join(",");
    return this.call<ApiPresence>("GET", `/api/presence?users=${users}`);
  }

  /** Which of a room's participants are online (`GET /api/rooms/{id}/presence`, scope `presence`). */
  roomPresence(room: string): Promise<ApiPresence> {
    return this.call<ApiPresence>("GET", `/api/rooms/${enc(room)}/presence`);
  }

  /** A room owned by the `system` user (`POST /api/rooms`, scope `rooms`; the name within the key's prefix). */
  createRoom(r: ApiCreateRoom): Promise<Room> {
    return this.call<Room>("POST", "/api/rooms", r);
  }

  /**
   * Makes users (1–1000 ids of known users) participants of a room, private
   * rooms too (`POST /api/rooms/{id}/members`, scope `rooms`). Resolves with
   * the ids of those who were not participants before. 404 for an unknown
   * user, 409 for a full room or a banned user.
   */
  async addMembers(room: string, userIds: string[]): Promise<string[]> {
    return (await this.call<{ added: string[] }>("POST", `/api/rooms/${enc(room)}/members`, { users: userIds })).added;
  }

  /** Closes every connection of a user with 4003 (`bye` `admin`) on every gateway (`POST /api/users/{id}/disconnect`, scope `users`). */
  disconnect(userId: string): Promise<DisconnectResult> {
    return this.call<DisconnectResult>("POST", `/api/users/${enc(userId)}/disconnect`);
  }

  /**
   * Registers a webhook (`POST /api/webhooks`, scope `webhooks`; a key
   * limited to a room prefix gets 403): Telepath POSTs each of `events` to
   * `url`, signed (check with `verifyWebhook`), retried with backoff until a
   * 2xx answer. Resolves with the webhook and its signing `secret` (the one
   * given, or `whsec_…` made by the server): shown this once, keep it. 400
   * for a URL, events or secret it refuses (a host that resolves to a
   * private address among them), or when 64 webhooks exist.
   */
  createWebhook(w: CreateWebhook): Promise<CreatedWebhook> {
    const body: CreateWebhook = { url: w.url, events: w.events };
    if (w.secret !== undefined) body.secret = w.secret;
    return this.#request<CreatedWebhook>("POST", "/api/webhooks", body, [w.secret]);
  }

  /** Every webhook, oldest first, with its `pending` and `dropped` counts; never a secret (`GET /api/webhooks`). */
  async listWebhooks(): Promise<Webhook[]> {
    return (await this.call<{ webhooks: Webhook[] }>("GET", "/api/webhooks")).webhooks;
  }

  /** One webhook (`GET /api/webhooks/{id}`); 404 for an unknown id. */
  getWebhook(id: string): Promise<Webhook> {
    return this.call<Webhook>("GET", `/api/webhooks/${enc(id)}`);
  }

  /** Deletes a webhook with its deliveries: pending ones are not sent (`DELETE /api/webhooks/{id}`); 404 for an unknown id. */
  async deleteWebhook(id: string): Promise<void> {
    await this.call<void>("DELETE", `/api/webhooks/${enc(id)}`);
  }

  /**
   * A webhook's deliveries, newest first (`GET /api/webhooks/{id}/deliveries`):
   * status, attempts, the last attempt's HTTP status and error. Page with
   * `before` = the last one's `id`; `status` filters; `limit` 1–100
   * (default 50). 400 on a bad parameter, 404 for an unknown webhook.
   */
  async webhookDeliveries(id: string, q: WebhookDeliveryQuery = {}): Promise<WebhookDelivery[]> {
    const qs = query({ status: q.status, before: q.before, limit: q.limit });
    return (await this.call<{ deliveries: WebhookDelivery[] }>("GET", `/api/webhooks/${enc(id)}/deliveries${qs}`)).deliveries;
  }

  /** Any route with the API key: JSON in, JSON out (undefined for 204). */
  call<T>(method: Method, path: string, body?: unknown): Promise<T> {
    return this.#request<T>(method, path, body);
  }

  async #request<T>(method: Method, path: string, body?: unknown, secrets?: ReadonlyArray<string | undefined>): Promise<T> {
    const src = this.#apiKey;
    const key = typeof src === "function" ? await src() : src;
    const req: JsonRequest = {
      fetch: this.#fetch ?? globalThis.fetch,
      method,
      url: `${this.url}${path}`,
      label: `${method} ${path.replace(/\?.*$/, "")}`,
      body,
    };
    if (key) req.bearer = key;
    if (secrets) req.secrets = secrets;
    return requestJson<T>(req);
  }

  /** What `JSON.stringify` shows (the url only): never the key. */
  toJSON(): { url: string } {
    return { url: this.url };
  }
}

function publishBody(body: string, opts: PublishOptions): Record<string, string> {
  const payload: Record<string, string> = { body };
  if (opts.kind !== undefined) payload["kind"] = opts.kind;
  if (opts.clientId !== undefined) payload["client_id"] = opts.clientId;
  if (opts.as !== undefined) payload["as"] = opts.as;
  return payload;
}
