/** Options of `verifyWebhook`. */
export interface VerifyWebhookOptions {
    /** The webhook's signing secret (`whsec_…`, or the one you chose), as `createWebhook` answered it. */
    secret: string;
    /**
     * The request's body exactly as received: the raw bytes, or their text
     * (UTF-8). Not a parsed and re-serialized object: the signature covers
     * the bytes.
     */
    body: string | Uint8Array | ArrayBuffer;
    /** The `Telepath-Signature` header (`t=<unix seconds>,v1=<hex>`); absent or malformed: not valid. */
    signature: string | null | undefined;
    /** How far `t` may be from now, seconds (default 300): older (a replay) or newer is refused. */
    toleranceSeconds?: number;
    /** The time to check `t` against: a Date, or milliseconds since the epoch like `Date.now()` (default now). */
    now?: Date | number;
}
/**
 * Checks a webhook delivery's `Telepath-Signature`: `t=<unix seconds>,v1=<hex
 * HMAC-SHA256 keyed with the secret's UTF-8 bytes over "<t>.<raw body>">`.
 * Resolves `true` only when a `v1` matches (compared in constant time) and
 * `t` is within `toleranceSeconds` of now; `false` for a missing or
 * malformed header, a wrong signature or secret, a changed body, or a stale
 * (or future) timestamp. Uses WebCrypto (`globalThis.crypto.subtle`: Node.js
 * ≥ 20, browsers in secure contexts). Several `v1` entries are allowed (any
 * may match); other schemes are ignored.
 *
 * ```ts
 * const ok = await verifyWebhook({ secret, body: rawBody, signature: req.headers["telepath-signature"] });
 * if (!ok) return res.writeHead(400).end();
 * const event = JSON.parse(rawBody) as WebhookPayload; // then drop an event.id already handled
 * ```
 *
 * Throws a TypeError for arguments it cannot use (an empty secret, a body
 * that is not a string or bytes, a negative tolerance), and an Error when
 * WebCrypto is missing.
 */
export declare function verifyWebhook(opts: VerifyWebhookOptions): Promise<boolean>;
