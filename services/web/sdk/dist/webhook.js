const MAX_HEADER = 4096;
const PART = /^([a-z0-9]+)=([^=,\s]+)$/;
const encoder = new TextEncoder();
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
export async function verifyWebhook(opts) {
    if (!opts || typeof opts !== "object")
        throw new TypeError("verifyWebhook: pass { secret, body, signature }");
    const { secret, body, signature } = opts;
    if (typeof secret !== "string" || !secret)
        throw new TypeError("verifyWebhook: secret must be the webhook's signing secret");
    const tolerance = opts.toleranceSeconds ?? 300;
    if (typeof tolerance !== "number" || !(tolerance >= 0))
        throw new TypeError("verifyWebhook: toleranceSeconds must be a number >= 0");
    const bytes = bodyBytes(body);
    const nowMs = opts.now === undefined ? Date.now() : opts.now instanceof Date ? opts.now.getTime() : opts.now;
    if (typeof nowMs !== "number" || !Number.isFinite(nowMs))
        throw new TypeError("verifyWebhook: now must be a Date or milliseconds since the epoch");
    const subtle = globalThis.crypto?.subtle;
    if (!subtle)
        throw new Error("verifyWebhook needs WebCrypto (globalThis.crypto.subtle): Node.js >= 20, or a browser page in a secure context");
    const parsed = parseSignature(signature);
    if (!parsed)
        return false;
    if (Math.abs(nowMs / 1000 - parsed.t) > tolerance)
        return false;
    const key = await subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    const prefix = encoder.encode(`${parsed.t}.`);
    const signed = new Uint8Array(prefix.length + bytes.length);
    signed.set(prefix, 0);
    signed.set(bytes, prefix.length);
    const expected = new Uint8Array(await subtle.sign("HMAC", key, signed));
    let ok = false;
    // Every candidate is compared in full, whatever an earlier one gave.
    for (const v1 of parsed.v1)
        ok = equalConstantTime(expected, v1) || ok;
    return ok;
}
/** `t` and the `v1` digests of a `Telepath-Signature` header, or null when it is malformed. */
function parseSignature(header) {
    if (typeof header !== "string" || !header || header.length > MAX_HEADER)
        return null;
    let t;
    const v1 = [];
    for (const raw of header.split(",")) {
        const m = PART.exec(raw.trim());
        if (!m)
            return null;
        const [, k, v] = m;
        if (k === "t") {
            if (t !== undefined || !/^\d{1,15}$/.test(v))
                return null;
            t = Number(v);
        }
        else if (k === "v1") {
            const digest = hexBytes(v);
            if (!digest)
                return null;
            v1.push(digest);
        }
    }
    if (t === undefined || v1.length === 0)
        return null;
    return { t, v1 };
}
/** 32 bytes from 64 hex digits, or null. */
function hexBytes(hex) {
    if (!/^[0-9a-fA-F]{64}$/.test(hex))
        return null;
    const out = new Uint8Array(32);
    for (let i = 0; i < 32; i++)
        out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    return out;
}
/** Whether two byte strings are equal, in time that depends on their lengths only. */
function equalConstantTime(a, b) {
    if (a.length !== b.length)
        return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++)
        diff |= a[i] ^ b[i];
    return diff === 0;
}
function bodyBytes(body) {
    if (typeof body === "string")
        return encoder.encode(body);
    if (body instanceof Uint8Array)
        return body;
    if (body instanceof ArrayBuffer)
        return new Uint8Array(body);
    if (ArrayBuffer.isView(body)) {
        const view = body;
        return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    }
    throw new TypeError("verifyWebhook: body must be the raw body as received (a string, Uint8Array or ArrayBuffer), not a parsed object");
}
