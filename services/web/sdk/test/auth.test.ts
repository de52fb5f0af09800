// How the socket authenticates, against a real all-in-one: connect tickets
// (POST /auth/ticket before every connect and reconnect, ?ticket= on the
// URL, retried with the backoff when the request fails), ?token=, and the
// Authorization header; that no URL, error, state reason or console line
// carries the token or a ticket; and the constructor's TypeErrors.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { request } from "node:http";
import { after, before, describe, it } from "node:test";

import { Telepath, TelepathError, TelepathRest, type StateChange } from "../dist/index.js";
import { closeAll, createRoom, login, record, rest, startServer, track, uname, waitFor, type Server } from "./helpers.js";

let s: Server;
/** Every token and ticket the tests handled: none may reach the console. */
const secrets = new Set<string>();
const logged: string[] = [];
const methods = ["log", "info", "warn", "error", "debug", "trace", "dir"] as const;
const saved = new Map<string, (...args: unknown[]) => void>();

before(async () => {
  s = await startServer();
  for (const m of methods) {
    saved.set(m, (console as any)[m]);
    (console as any)[m] = (...args: unknown[]) => {
      logged.push(args.map((a) => (a instanceof Error ? `${a.message} ${a.stack}` : typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    };
  }
});
after(async () => {
  for (const [m, fn] of saved) (console as any)[m] = fn;
  closeAll();
  await s?.stop();
});

/** A WebSocket that records the URL of every socket it opens, and can drop the live ones (the client reconnects). */
function spyWebSocket() {
  const urls: string[] = [];
  const live = new Set<WebSocket>();
  class Spy extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      urls.push(String(url));
      live.add(this);
      this.addEventListener("close", () => live.delete(this));
    }
  }
  return {
    WebSocket: Spy,
    urls,
    drop() {
      for (const ws of live) ws.close(4000, "test drop");
    },
  };
}

interface TicketCall {
  url: string;
  auth: string | null;
  at: number;
}

/**
 * A fetch that records every POST /auth/ticket (and the tickets it hands
 * out); `fail(n)` may answer the n-th (1-based) itself: a Response, an
 * exception, or a promise that never settles.
 */
function ticketFetch(fail?: (n: number) => Response | Error | "hang" | undefined) {
  const calls: TicketCall[] = [];
  const tickets: string[] = [];
  const f: typeof fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.endsWith("/auth/ticket")) return fetch(input, init);
    const auth = new Headers(init?.headers).get("authorization");
    calls.push({ url, auth, at: Date.now() });
    const planned = fail?.(calls.length);
    if (planned === "hang") return new Promise<Response>(() => {});
    if (planned instanceof Error) throw planned;
    if (planned) return planned;
    const res = await fetch(input, init);
    const body = await res.clone().json().catch(() => undefined);
    if (typeof body?.ticket === "string") {
      tickets.push(body.ticket);
      secrets.add(body.ticket);
    }
    return res;
  };
  return { fetch: f, calls, tickets };
}

/** The HTTP status of a WebSocket handshake to `url` (101 when it upgrades). */
function handshake(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(url.replace(/^ws/, "http")), {
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        ...headers,
      },
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 101);
    });
    req.on("response", (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

async function user(prefix: string) {
  const r = await login(s, uname(prefix));
  secrets.add(r.token);
  return r;
}

const param = (url: string, name: string) => new URL(url).searchParams.get(name);

describe("connect tickets (real server)", () => {
  it("TelepathRest.ticket() gives a single-use ticket; ?token= and the header still work", async () => {
    const { token } = await user("tix");
    const api = new TelepathRest({ baseUrl: s.base, token });
    const t = await api.ticket();
    secrets.add(t.ticket);
    assert.equal(t.expires_in, 30);
    assert.match(t.ticket, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(await handshake(`${s.ws}?ticket=${t.ticket}`), 101);
    assert.equal(await handshake(`${s.ws}?ticket=${t.ticket}`), 401, "used up");
    assert.equal(await handshake(`${s.ws}?ticket=${"A".repeat(43)}`), 401, "made up");
    assert.equal(await handshake(`${s.ws}?token=${token}`), 101);
    assert.equal(await handshake(s.ws, { authorization: `Bearer ${token}` }), 101);
    await assert.rejects(new TelepathRest({ baseUrl: s.base, token: "nope" }).ticket(), (e: TelepathError) => {
      assert.equal(e.code, "unauthorized");
      assert.equal(e.status, 401);
      return true;
    });
  });

  it("auth ticket: every connect and reconnect asks for a ticket; URLs carry ?ticket=, never the token", async () => {
    const { room } = await createRoom(s, uname("own"));
    const { token, user: me } = await user("tkt");
    const spy = spyWebSocket();
    const tf = ticketFetch();
    const tp = track(
      new Telepath({ url: s.ws, token, auth: "ticket", WebSocket: spy.WebSocket, fetch: tf.fetch, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } }),
    );
    const w = await tp.connect();
    assert.equal(w.user.id, me.id);
    await tp.join(room.id);
    const first = await tp.send(room.id, "before the drop");

    spy.drop();
    await waitFor(() => tp.state === "reconnecting", "reconnecting");
    await waitFor(() => tp.state === "open", "open again");
    const second = await tp.send(room.id, "after the drop");
    assert.equal(second.seq, first.seq + 1);

    assert.equal(tf.calls.length, 2, "one ticket per connect");
    for (const c of tf.calls) {
      assert.equal(c.url, `${s.base}/auth/ticket`, "the REST base is the gateway URL's origin");
      assert.equal(c.auth, `Bearer ${token}`);
    }
    assert.equal(spy.urls.length, 2);
    assert.deepEqual(spy.urls.map((u) => param(u, "ticket")), tf.tickets);
    assert.notEqual(tf.tickets[0], tf.tickets[1]);
    for (const u of spy.urls) {
      assert.equal(param(u, "token"), null);
      assert.ok(!u.includes(token), "no URL carries the token");
    }
  });

  it("a failed ticket request is retried with the reconnect backoff", async () => {
    const { token } = await user("retry");
    const spy = spyWebSocket();
    const tf = ticketFetch((n) =>
      n === 1
        ? new TypeError("fetch failed")
        : n === 2
          ? new Response(JSON.stringify({ error: { code: "unavailable", message: "not now" } }), {
              status: 503,
              headers: { "content-type": "application/json", "retry-after": "1" },
            })
          : n === 3
            ? "hang"
            : undefined,
    );
    const tp = track(
      new Telepath({
        url: s.ws,
        token,
        auth: "ticket",
        WebSocket: spy.WebSocket,
        fetch: tf.fetch,
        connectTimeoutMs: 300,
        reconnect: { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0 },
      }),
    );
    const states = record(tp, "state");
    await tp.connect();
    assert.equal(tf.calls.length, 4);
    const retries = states.filter((x) => x.state === "reconnecting") as Required<StateChange>[];
    assert.deepEqual(
      retries.map((x) => [x.attempt, x.delayMs]),
      [
        [1, 100],
        [2, 200],
        [3, 400],
      ],
    );
    assert.match(retries[0]!.reason, /^ticket: POST \/auth\/ticket: fetch failed/);
    assert.match(retries[1]!.reason, /^ticket: not now \(503\)/);
    assert.match(retries[2]!.reason, /^ticket: POST \/auth\/ticket: no answer within 300 ms/);
    // Each retry waited its delay (the third also its 300 ms timeout).
    assert.ok(tf.calls[1]!.at - tf.calls[0]!.at >= 95, "waited the first delay");
    assert.ok(tf.calls[2]!.at - tf.calls[1]!.at >= 195, "waited the second delay");
    assert.ok(tf.calls[3]!.at - tf.calls[2]!.at >= 300 + 395, "waited the timeout, then the third delay");
    assert.equal(spy.urls.length, 1, "no socket without a ticket");
    assert.equal(param(spy.urls[0]!, "ticket"), tf.tickets[0]);
    assert.deepEqual(states.at(-1), { state: "open" });
  });

  it("a refused token: a static one closes the client (4001), a callback is asked again", async () => {
    const bad = "not.a.token";
    const tf = ticketFetch();
    const stat = track(new Telepath({ url: s.ws, token: bad, auth: "ticket", fetch: tf.fetch, reconnect: { initialDelayMs: 20, maxDelayMs: 50 } }));
    const states = record(stat, "state");
    await assert.rejects(stat.connect(), (e: TelepathError) => {
      assert.equal(e.code, "closed");
      assert.ok(!e.message.includes(bad));
      return true;
    });
    assert.equal(stat.state, "closed");
    const closed = states.at(-1)!;
    assert.equal(closed.code, 4001);
    assert.match(closed.reason!, /^ticket: .*\(401\)$/);
    assert.equal(tf.calls.length, 1);

    const { token } = await user("cb");
    let asked = 0;
    const cb = track(
      new Telepath({
        url: s.ws,
        token: () => (++asked === 1 ? bad : token),
        auth: "ticket",
        fetch: tf.fetch,
        reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
      }),
    );
    const cbStates = record(cb, "state");
    await cb.connect();
    assert.equal(asked, 2);
    assert.ok(cbStates.some((x) => x.state === "reconnecting" && /\(401\)$/.test(x.reason ?? "")));
  });

  it("restUrl chooses where tickets come from; http(s) gateway URLs work too", async () => {
    const { token } = await user("resturl");
    const tf = ticketFetch();
    const viaOption = track(
      new Telepath({ url: `ws://localhost:${s.port}/connect`, restUrl: `http://127.0.0.1:${s.port}/`, token, auth: "ticket", fetch: tf.fetch }),
    );
    await viaOption.connect();
    assert.equal(tf.calls.at(-1)!.url, `http://127.0.0.1:${s.port}/auth/ticket`);
    viaOption.close();
    const httpUrl = track(new Telepath({ url: s.base, token, auth: "ticket", fetch: tf.fetch }));
    await httpUrl.connect();
    assert.equal(tf.calls.at(-1)!.url, `${s.base}/auth/ticket`);
    httpUrl.close();
  });

  it("auth token (the default outside browsers) puts ?token=; auth header puts nothing in the URL", async () => {
    const { token, user: me } = await user("modes");
    const tokenSpy = spyWebSocket();
    const byDefault = track(new Telepath({ url: s.ws, token, WebSocket: tokenSpy.WebSocket }));
    await byDefault.connect();
    assert.equal(param(tokenSpy.urls[0]!, "token"), token);
    assert.equal(param(tokenSpy.urls[0]!, "ticket"), null);
    byDefault.close();

    const headerSpy = spyWebSocket();
    const tf = ticketFetch();
    const header = track(new Telepath({ url: s.ws, token, auth: "header", WebSocket: headerSpy.WebSocket, fetch: tf.fetch }));
    const w = await header.connect();
    assert.equal(w.user.id, me.id);
    assert.equal(headerSpy.urls[0], s.ws, "neither token nor ticket on the URL");
    assert.equal(tf.calls.length, 0);
    // Node's own WebSocket, not a subclass, is recognised too.
    const plain = track(new Telepath({ url: s.ws, token, auth: "header" }));
    assert.equal((await plain.connect()).user.id, me.id);
    header.close();
    plain.close();
  });

  it("a WebSocket constructor's error that quotes the URL is redacted in the state's reason", async () => {
    const { token } = await user("redact");
    const tf = ticketFetch();
    let n = 0;
    class Throwing extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        if (++n === 1) throw new SyntaxError(`Failed to construct 'WebSocket': The URL '${String(url)}' is invalid.`);
        super(url, protocols);
      }
    }
    for (const auth of ["ticket", "token"] as const) {
      n = 0;
      const tp = track(new Telepath({ url: s.ws, token, auth, WebSocket: Throwing, fetch: tf.fetch, reconnect: { initialDelayMs: 10, maxDelayMs: 20 } }));
      const states = record(tp, "state");
      await tp.connect();
      const failed = states.find((x) => x.state === "reconnecting")!;
      assert.match(failed.reason!, /^socket: Failed to construct 'WebSocket': The URL 'ws:\/\/127\.0\.0\.1:\d+\/connect\?(ticket|token)=\[redacted\]' is invalid\.$/);
      assert.ok(!failed.reason!.includes(token));
      for (const t of tf.tickets) assert.ok(!failed.reason!.includes(t));
      tp.close();
    }
  });

  it("REST errors never quote the token, nor an invite link's token", async () => {
    const { token } = await user("resterr");
    const refusing: typeof fetch = async (input) => {
      throw new TypeError(`request to ${String(input)} failed (Authorization: Bearer ${token})`);
    };
    const api = new TelepathRest({ baseUrl: s.base, token, fetch: refusing });
    const link = "L1nkT0kenSecret";
    await assert.rejects(api.joinByLink(link), (e: TelepathError) => {
      assert.equal(e.code, "network");
      assert.ok(!e.message.includes(token), e.message);
      assert.ok(!e.message.includes(link), e.message);
      assert.match(e.message, /^POST \/join\/\[redacted\]: /);
      return true;
    });
    // A link that does not exist: the server's own message, no token in it.
    const real = new TelepathRest({ baseUrl: s.base, token });
    await assert.rejects(real.joinByLink(link), (e: TelepathError) => e.status === 404 && !e.message.includes(link));
  });

  it("the constructors refuse what they cannot use with a TypeError that quotes nothing", () => {
    const secretUrl = "ws://127.0.0.1:1/connect?token=SeCrEt.ToKeN.x";
    assert.throws(() => new Telepath(secretUrl as any), (e: Error) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /options object, not a URL/);
      assert.match(e.message, /new Telepath\(\{ url: .*, token \}\)/);
      assert.ok(!e.message.includes("SeCrEt"));
      return true;
    });
    assert.throws(() => new Telepath(new URL(secretUrl) as any), /options object, not a URL/);
    assert.throws(() => new Telepath(undefined as any), TypeError);
    assert.throws(() => new Telepath({ url: s.ws } as any), /opts\.token is required/);
    assert.throws(() => new Telepath({ token: "t" } as any), /opts\.url is required/);
    assert.throws(() => new Telepath({ url: s.ws, token: "t", auth: "cookie" as any }), /opts\.auth must be "ticket", "token" or "header"/);
    assert.throws(() => new Telepath({ url: s.ws, token: "t", WebSocket: {} }), /opts\.WebSocket must be a WebSocket constructor/);
    assert.throws(() => new TelepathRest(secretUrl as any), (e: Error) => e instanceof TypeError && !e.message.includes("SeCrEt"));
  });
});

describe("browsers default to tickets", () => {
  it("with a document (a page), the default auth is ticket", async () => {
    const { api, token } = await rest(s, uname("page"));
    await api.listRooms();
    secrets.add(token);
    const g = globalThis as { document?: unknown };
    const spy = spyWebSocket();
    const tf = ticketFetch();
    g.document = {};
    let tp: Telepath;
    try {
      tp = track(new Telepath({ url: s.ws, token, WebSocket: spy.WebSocket, fetch: tf.fetch }));
      // And a header cannot be set by a browser's own WebSocket.
      assert.throws(() => new Telepath({ url: s.ws, token, auth: "header" }), /use auth "ticket"/);
    } finally {
      delete g.document;
    }
    await tp.connect();
    assert.equal(tf.calls.length, 1);
    assert.equal(param(spy.urls[0]!, "ticket"), tf.tickets[0]);
    assert.equal(param(spy.urls[0]!, "token"), null);
    tp.close();
  });
});

describe("the console", () => {
  it("the SDK never wrote to it, least of all a token or a ticket", () => {
    assert.ok(secrets.size >= 5);
    for (const line of logged) for (const secret of secrets) assert.ok(!line.includes(secret), "a secret in the console");
    assert.deepEqual(logged, []);
  });
});
