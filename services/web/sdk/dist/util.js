/** A random id for `client_id`: crypto.randomUUID where there is one. */
export function randomId() {
    const c = globalThis.crypto;
    if (c && typeof c.randomUUID === "function")
        return c.randomUUID();
    const bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function")
        c.getRandomValues(bytes);
    else
        for (let i = 0; i < 16; i++)
            bytes[i] = Math.floor(Math.random() * 256);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
/** The payload of a JWT (not verified: the server does that), or undefined. */
export function decodeJwtPayload(token) {
    const parts = token.split(".");
    if (parts.length !== 3 || !parts[1])
        return undefined;
    try {
        const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
        const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
        const binary = atob(padded);
        const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
        const json = JSON.parse(new TextDecoder().decode(bytes));
        return json && typeof json === "object" ? json : undefined;
    }
    catch {
        return undefined;
    }
}
/** A JWT's `exp` in Unix seconds, or undefined. */
export function tokenExpiry(token) {
    const exp = decodeJwtPayload(token)?.["exp"];
    return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
}
/** A bounded set: the oldest entries are forgotten past `max`. */
export class BoundedSet {
    max;
    items = new Set();
    constructor(max) {
        this.max = max;
    }
    has(v) {
        return this.items.has(v);
    }
    add(v) {
        if (this.items.has(v))
            return;
        this.items.add(v);
        while (this.items.size > this.max) {
            const oldest = this.items.values().next().value;
            this.items.delete(oldest);
        }
    }
    get size() {
        return this.items.size;
    }
}
/**
 * ws(s):// URL of the gateway: http(s) becomes ws(s), an empty path becomes
 * /connect, and `credential` (when given) goes in the query as `?token=` or
 * `?ticket=`.
 */
export function socketUrl(url, credential) {
    const base = globalThis.location?.href;
    const u = base ? new URL(url, base) : new URL(url);
    if (u.protocol === "http:")
        u.protocol = "ws:";
    else if (u.protocol === "https:")
        u.protocol = "wss:";
    if (u.pathname === "" || u.pathname === "/")
        u.pathname = "/connect";
    if (credential)
        u.searchParams.set(credential.param, credential.value);
    return u.toString();
}
/**
 * `message` with every secret in `secrets`, every `token=`/`ticket=`
 * query value, anything shaped like a JWT and any API key (`tpk_…`)
 * replaced by `[redacted]`: what the SDK puts in an error or
 * event that quotes a foreign message (a WebSocket constructor's error names
 * the URL it was given, which carries the token or the ticket).
 */
export function redact(message, secrets = []) {
    let out = String(message);
    for (const s of secrets)
        if (s)
            out = out.split(s).join("[redacted]");
    return out
        .replace(/([?&;](?:access_)?(?:token|ticket)=)[^&#\s'"`<>]+/gi, "$1[redacted]")
        .replace(/\beyJ[\w-]*\.[\w-]+\.[\w-]*/g, "[redacted]")
        .replace(/\btpk_[\w-]+/g, "[redacted]");
}
/** Whether this looks like a browser (a window or a worker): where the default `auth` is `ticket`. */
export function isBrowser() {
    const g = globalThis;
    return typeof g.document === "object" || typeof g.importScripts === "function";
}
/** A bounded map: the oldest keys (by first insertion) are forgotten past `max`. */
export class BoundedMap {
    max;
    items = new Map();
    constructor(max) {
        this.max = max;
    }
    get(k) {
        return this.items.get(k);
    }
    has(k) {
        return this.items.has(k);
    }
    set(k, v) {
        this.items.set(k, v);
        while (this.items.size > this.max) {
            const oldest = this.items.keys().next().value;
            this.items.delete(oldest);
        }
    }
    get size() {
        return this.items.size;
    }
}
