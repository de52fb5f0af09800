/** A random id for `client_id`: crypto.randomUUID where there is one. */
export declare function randomId(): string;
/** The payload of a JWT (not verified: the server does that), or undefined. */
export declare function decodeJwtPayload(token: string): Record<string, unknown> | undefined;
/** A JWT's `exp` in Unix seconds, or undefined. */
export declare function tokenExpiry(token: string): number | undefined;
/** A bounded set: the oldest entries are forgotten past `max`. */
export declare class BoundedSet<T> {
    private readonly max;
    private items;
    constructor(max: number);
    has(v: T): boolean;
    add(v: T): void;
    get size(): number;
}
/**
 * ws(s):// URL of the gateway: http(s) becomes ws(s), an empty path becomes
 * /connect, and `credential` (when given) goes in the query as `?token=` or
 * `?ticket=`.
 */
export declare function socketUrl(url: string, credential?: {
    param: "token" | "ticket";
    value: string;
}): string;
/**
 * `message` with every secret in `secrets`, every `token=`/`ticket=`
 * query value, anything shaped like a JWT and any API key (`tpk_…`)
 * replaced by `[redacted]`: what the SDK puts in an error or
 * event that quotes a foreign message (a WebSocket constructor's error names
 * the URL it was given, which carries the token or the ticket).
 */
export declare function redact(message: string, secrets?: ReadonlyArray<string | undefined>): string;
/** Whether this looks like a browser (a window or a worker): where the default `auth` is `ticket`. */
export declare function isBrowser(): boolean;
/** A bounded map: the oldest keys (by first insertion) are forgotten past `max`. */
export declare class BoundedMap<K, V> {
    private readonly max;
    private items;
    constructor(max: number);
    get(k: K): V | undefined;
    has(k: K): boolean;
    set(k: K, v: V): void;
    get size(): number;
}
