/** A random id for `client_id`: crypto.randomUUID where there is one. */
export function randomId(): string {
  const c = (globalThis as { crypto?: Crypto }).crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The payload of a JWT (not verified: the server does that), or undefined. */
export function decodeJwtPayload(token: string): Record<string, unknown> | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
    const binary = atob(padded);
    const bytes = Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
    const json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    return json && typeof json === "object" ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A JWT's `exp` in Unix seconds, or undefined. */
export function tokenExpiry(token: string): number | undefined {
  const exp = decodeJwtPayload(token)?.["exp"];
  return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
}

/** A bounded set: the oldest entries are forgotten past `max`. */
export class BoundedSet<T> {
  private items = new Set<T>();
  constructor(private readonly max: number) {}

  has(v: T): boolean {
    return this.items.has(v);
  }

  add(v: T): void {
    if (this.items.has(v)) return;
    this.items.add(v);
    while (this.items.size > this.max) {
      const oldest = this.items.values().next().value as T;
      this.items.delete(oldest);
    }
  }

  get size(): number {
    return this.items.size;
  }
}

/**
 * ws(s):// URL of the gateway: http(s) becomes ws(s), an empty path becomes
 * /connect, and `credential` (when given) goes in the query as `?token=` or
 * `?ticket=`.
 */
export function socketUrl(url: string, credential?: { param: "token" | "ticket"; value: string }): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/connect";
  if (credential) u.searchParams.set(credential.param, credential.value);
  return u.toString();
}

/**
 * `message` with every secret in `secrets`, every `token=`/`ticket=`
 * query value, anything shaped like a JWT and any API key (`tpk_…`)
 * replaced by `[redacted]`: what the SDK puts in an error or
 * event that quotes a foreign message (a WebSocket constructor's error names
 * the URL it was given, which carries the token or the ticket).
 */
export function redact(message: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = String(message);
  for (const s of secrets) if (s) out = out.split(s).join("[redacted]");
  return out
    .replace(/([?&;](?:access_)?(?:token|ticket)=)[^&#\s'"`<>]+/gi, "$1[redacted]")
    .replace(/\beyJ[\w-]*\.[\w-]+\.[\w-]*/g, "[redacted]")
    .replace(/\btpk_[\w-]+/g, "[redacted]");
}

/** Whether this looks like a browser (a window or a worker): where the default `auth` is `ticket`. */
export function isBrowser(): boolean {
  const g = globalThis as { document?: unknown; WorkerGlobalScope?: unknown; importScripts?: unknown };
  return typeof g.document === "object" || typeof g.importScripts === "function";
}

/** A bounded map: the oldest keys (by first insertion) are forgotten past `max`. */
export class BoundedMap<K, V> {
  private items = new Map<K, V>();
  constructor(private readonly max: number) {}

  get(k: K): V | undefined {
    return this.items.get(k);
  }

  has(k: K): boolean {
    return this.items.has(k);
  }

  set(k: K, v: V): void {
    this.items.set(k, v);
    while (this.items.size > this.max) {
      const oldest = this.items.keys().next().value as K;
      this.items.delete(oldest);
    }
  }

  get size(): number {
    return this.items.size;
  }
}
