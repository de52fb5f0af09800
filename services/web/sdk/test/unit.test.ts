// Pure functions, and the client against a scripted fake gateway:
// timeouts, close codes, the rejoin seam, the in-flight resend.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { backoffDelay, decodeJwtPayload, Telepath, TelepathError, tokenExpiry, type StateChange } from "../dist/index.js";
import { redact, socketUrl } from "../dist/util.js";
import { fakeJwt, fakeServer, replyOk, welcomeFrame, type FakeConn } from "./fake.js";
import { sleep, waitFor } from "./helpers.js";

const clients: Telepath[] = [];
const make = (opts: ConstructorParameters<typeof Telepath>[0]) => {
  const tp = new Telepath(opts);
  clients.push(tp);
  return tp;
};
after(() => {
  for (const c of clients) c.close();
});

describe("backoffDelay", () => {
  it("grows by the factor, is capped, and jitter stays within bounds", () => {
    const noJitter = { initialDelayMs: 100, maxDelayMs: 1000, factor: 2, jitter: 0 };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 50, 10_000].map((n) => backoffDelay(n, noJitter)),
      [100, 200, 400, 800, 1000, 1000, 1000, 1000],
    );
    // Defaults: 250, 10000, 2, 0.5.
    assert.equal(backoffDelay(1, { random: () => 0 }), 250);
    assert.equal(backoffDelay(100, { random: () => 0 }), 10_000);
    assert.equal(backoffDelay(1, { random: () => 0.999999 }), 125);
    for (let attempt = 1; attempt <= 12; attempt++) {
      const capped = Math.min(10_000, 250 * 2 ** (attempt - 1));
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(attempt);
        assert.ok(d >= capped * 0.5 - 1 && d <= capped, `attempt ${attempt}: ${d} outside [${capped / 2}, ${capped}]`);
      }
    }
    // Full jitter spreads over [0, capped]; values really vary.
    const full = new Set(Array.from({ length: 50 }, () => backoffDelay(4, { jitter: 1 })));
    assert.ok(full.size > 10, "jittered delays vary");
    for (const d of full) assert.ok(d >= 0 && d <= 2000);
    // Nonsense input falls back to sane values.
    assert.equal(backoffDelay(0, noJitter), 100);
    assert.equal(backoffDelay(Number.NaN, noJitter), 100);
  });
});

describe("tokens", () => {
  it("decodes the JWT payload (base64url, UTF-8) without Buffer", () => {
    const t = fakeJwt({ sub: "u1", name: "zoë", exp: 1234567890, role: "user" });
    assert.equal(decodeJwtPayload(t)?.["name"], "zoë");
    assert.equal(tokenExpiry(t), 1234567890);
    assert.equal(tokenExpiry("nope"), undefined);
    assert.equal(tokenExpiry("a.%%%.c"), undefined);
  });
});

describe("secrets", () => {
  it("redact() takes tokens and tickets out of a message, known or in a query", () => {
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    assert.equal(
      redact(`The URL 'ws://h/connect?token=${jwt}' is invalid (${jwt})`, [jwt]),
      "The URL 'ws://h/connect?token=[redacted]' is invalid ([redacted])",
    );
    assert.equal(redact("ws://h/connect?a=1&ticket=abc_DEF-123&b=2"), "ws://h/connect?a=1&ticket=[redacted]&b=2");
    assert.equal(redact("GET /x?access_token=zzz failed"), "GET /x?access_token=[redacted] failed");
    assert.equal(redact("nothing to hide", [undefined, ""]), "nothing to hide");
    assert.equal(redact("bad key tpk_EC68SnbnTHy92MZVxoFlHuCxGu0ZK0FwjTwhV2iNng4 here"), "bad key [redacted] here", "an API key");
  });

  it("socketUrl() puts the token or the ticket, or nothing, in the query", () => {
    assert.equal(socketUrl("http://h:1", { param: "ticket", value: "t k" }), "ws://h:1/connect?ticket=t+k");
    assert.equal(socketUrl("wss://h/gw", { param: "token", value: "x" }), "wss://h/gw?token=x");
    assert.equal(socketUrl("https://h/"), "wss://h/connect");
  });

  it("the built SDK's only console call reports a listener's exception, redacted", async () => {
    const dist = join(dirname(fileURLToPath(import.meta.url)), "..", "dist");
    const calls = readdirSync(dist)
      .filter((n) => n.endsWith(".js"))
      .flatMap((f) => [...readFileSync(join(dist, f), "utf8").matchAll(/\bconsole\s*[.[][^\n]*/g)].map((m) => `${f}: ${m[0]}`));
    assert.deepEqual(calls, ["emitter.js: console.error(`telepath: an event listener threw: ${redact(text)}`);"]);

    const srv = await gateway();
    const tp = make({ url: srv.url, token: "t" });
    const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
    const logged: unknown[][] = [];
    const origError = console.error;
    console.error = (...args: unknown[]) => logged.push(args);
    try {
      tp.on("welcome", () => {
        throw new Error(`bad ${jwt} at ws://h/connect?ticket=abcdef`);
      });
      await tp.connect();
    } finally {
      console.error = origError;
    }
    tp.close();
    assert.equal(logged.length, 1);
    const line = String(logged[0]![0]);
    assert.match(line, /^telepath: an event listener threw: Error: bad \[redacted\] at ws:\/\/h\/connect\?ticket=\[redacted\]/);
    assert.ok(!line.includes(jwt) && !line.includes("abcdef"));
  });
});

describe("events", () => {
  it("on returns an unsubscribe, off removes once-listeners too, a throwing listener does not stop the others", async () => {
    const srv = await gateway();
    const tp = make({ url: srv.url, token: "t" });
    const seen: string[] = [];
    const un = tp.on("welcome", () => seen.push("on"));
    const onceFn = () => seen.push("once");
    tp.once("welcome", onceFn);
    tp.once("welcome", () => seen.push("once2"));
    tp.off("welcome", onceFn);
    const origError = console.error;
    console.error = () => {};
    try {
      tp.on("state", () => {
        throw new Error("listener bug");
      });
      tp.on("state", (x) => seen.push(`state:${x.state}`));
      await tp.connect();
    } finally {
      console.error = origError;
    }
    un();
    assert.deepEqual(seen, ["state:connecting", "state:open", "on", "once2"]);
    tp.close();
  });
});

/** A fake gateway that welcomes every connection and runs `script` on it. */
async function gateway(script: (conn: FakeConn) => void = () => {}) {
  const srv = await fakeServer((conn) => {
    conn.send(welcomeFrame({ conn_id: `c${conn.index}` }));
    script(conn);
  });
  after(() => srv.stop());
  return srv;
}

describe("against a fake gateway", () => {
  it("converts http URLs, puts the token in ?token= and offers telepath.v1", async () => {
    const srv = await gateway();
    const tp = make({ url: srv.url.replace("ws://", "http://").replace("/connect", ""), token: "tok en" });
    const w = await tp.connect();
    assert.equal(w.conn_id, "c0");
    assert.equal(srv.conns[0]!.url, "/connect?token=tok+en");
    tp.close();
  });

  it("a request with no reply rejects with timeout (and a send stops counting as pending)", async () => {
    const srv = await gateway();
    const tp = make({ url: srv.url, token: "t", requestTimeoutMs: 150 });
    await tp.connect();
    const t0 = Date.now();
    await assert.rejects(tp.request({ type: "ping" }, { timeoutMs: 100 }), (e: TelepathError) => {
      assert.ok(e instanceof TelepathError);
      assert.equal(e.code, "timeout");
      return true;
    });
    assert.ok(Date.now() - t0 >= 90);
    const sent = tp.send("r1", "hello");
    assert.equal(tp.pending(), 1);
    await assert.rejects(sent, { code: "timeout" });
    assert.equal(tp.pending(), 0);
    // The frames carried refs and a generated client_id.
    const frames = srv.conns[0]!.frames;
    assert.equal(frames[0]!["type"], "ping");
    assert.ok(typeof frames[0]!["ref"] === "string");
    assert.ok(typeof frames[1]!["client_id"] === "string" && frames[1]!["client_id"].length > 0);
    tp.close();
  });

  it("a socket that never says welcome is abandoned and retried", async () => {
    const srv = await fakeServer(() => {});
    after(() => srv.stop());
    const tp = make({ url: srv.url, token: "t", connectTimeoutMs: 150, reconnect: { initialDelayMs: 20, maxDelayMs: 20 } });
    const states: StateChange[] = [];
    tp.on("state", (s) => states.push(s));
    const p = tp.connect();
    await waitFor(() => srv.conns.length >= 2, "a second attempt");
    assert.equal(states[0]!.state, "connecting");
    const r = states.find((s) => s.state === "reconnecting")!;
    assert.equal(r.attempt, 1);
    assert.match(r.reason ?? "", /welcome/);
    tp.close();
    await assert.rejects(p, { code: "closed" });
    assert.equal(tp.state, "closed");
    assert.equal(states.at(-1)!.state, "closed");
  });

  it("a handshake that errs with no close event (Node 20's WebSocket when refused) is retried at once, not after the welcome timeout", async () => {
    const srv = await fakeServer((c) => c.send(welcomeFrame()));
    after(() => srv.stop());
    let attempts = 0;
    /** The first attempt only errs, as Node 20's WebSocket does for a refused connection; the next ones are real. */
    class Refused extends WebSocket {
      constructor(url: string | URL, protocols?: string | string[]) {
        if (++attempts > 1) {
          super(url, protocols);
          return;
        }
        super(srv.url.replace(/^http/, "ws"), protocols);
        const self = this as unknown as { onerror: ((ev: Event) => void) | null; onclose: unknown; onmessage: unknown };
        // Silence the real socket and report an error that no close follows.
        queueMicrotask(() => {
          self.onclose = null;
          self.onmessage = null;
          setTimeout(() => self.onerror?.(new Event("error")), 10);
        });
      }
    }
    const tp = make({ url: srv.url, token: "t", WebSocket: Refused, connectTimeoutMs: 10_000, reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
    const states: StateChange[] = [];
    tp.on("state", (s) => states.push(s));
    const started = Date.now();
    await tp.connect();
    assert.ok(Date.now() - started < 2000, `open after ${Date.now() - started} ms`);
    assert.equal(attempts, 2);
    assert.match(states.find((s) => s.state === "reconnecting")?.reason ?? "", /failed/);
    tp.close();
  });

  it("4003 (admin) closes for good; 4008 backs off at least the max delay", async () => {
    const admin = await gateway((c) => setTimeout(() => c.close(4003, "admin"), 30));
    const tp = make({ url: admin.url, token: "t", reconnect: { initialDelayMs: 10, maxDelayMs: 50 } });
    const states: StateChange[] = [];
    tp.on("state", (s) => states.push(s));
    await tp.connect();
    await waitFor(() => tp.state === "closed", "closed after 4003");
    await sleep(200);
    assert.equal(admin.conns.length, 1, "no reconnect after 4003");
    assert.deepEqual(
      states.map((s) => s.state),
      ["connecting", "open", "closed"],
    );
    assert.equal(states.at(-1)!.code, 4003);
    await assert.rejects(tp.ping(), { code: "closed" });

    const abuse = await gateway((c) => {
      if (c.index === 0) setTimeout(() => c.close(4008, "rate"), 30);
    });
    const tp2 = make({ url: abuse.url, token: "t", reconnect: { initialDelayMs: 10, maxDelayMs: 300, jitter: 0.5 } });
    const st2: StateChange[] = [];
    tp2.on("state", (s) => st2.push(s));
    await tp2.connect();
    const r = await waitFor(() => st2.find((s) => s.state === "reconnecting"), "reconnecting after 4008");
    assert.equal(r.code, 4008);
    assert.ok(r.delayMs! >= 300, `4008 waits at least maxDelayMs, got ${r.delayMs}`);
    await waitFor(() => abuse.conns.length === 2 && tp2.state === "open", "reconnected after the long wait");
    tp2.close();
  });

  it("rejoins with since = last delivered seq, drops repeats, resends the in-flight send with its client_id", async () => {
    const room = "0190f5a4-7c1e-7c3a-9d2e-1a2b3c4d5e6f";
    const msg = (seq: number, body = `m${seq}`) => ({
      type: "message",
      room,
      id: `id${seq}`,
      seq,
      from: { id: "u2", name: "bob" },
      body,
      kind: "text",
      ts: new Date().toISOString(),
    });
    let sendReplies = 0;
    const srv = await gateway((c) => {
      c.onFrame = (f) => {
        if (f["type"] === "join" && c.index === 0) {
          replyOk(c, f, { room, seq: 5, recovered: true });
          c.send(msg(6));
          c.send(msg(7));
        } else if (f["type"] === "join" && c.index === 1) {
          // Overlap on purpose: 7 again, then 8 and 9.
          replyOk(c, f, { room, seq: 9, recovered: true });
          c.send(msg(7));
          c.send(msg(8));
          c.send(msg(9));
        } else if (f["type"] === "send" && c.index === 0) {
          // Swallowed: the socket drops with the send in flight.
          setTimeout(() => c.close(1012, "restart"), 20);
        } else if (f["type"] === "send") {
          sendReplies++;
          replyOk(c, f, { id: "sent1", seq: 10, ts: new Date().toISOString() });
        }
        // ping: never answered on the first connection.
      };
    });
    const tp = make({ url: srv.url, token: "t", reconnect: { initialDelayMs: 30, maxDelayMs: 30 } });
    const got: number[] = [];
    tp.on("message", (m) => got.push(m.seq));
    const joined: { rejoin: boolean; seq: number }[] = [];
    tp.on("joined", (j) => joined.push({ rejoin: j.rejoin, seq: j.seq }));
    await tp.connect();
    const j = await tp.join(room);
    assert.deepEqual(j, { room, seq: 5, recovered: true });
    await waitFor(() => got.length === 2, "6 and 7");
    assert.equal(tp.lastSeq(room), 7);
    const ping = tp.ping();
    const sent = tp.send(room, "hello", { clientId: "cid-1" });
    await assert.rejects(ping, { code: "disconnected" });
    const reply = await sent;
    assert.equal(reply.seq, 10);
    await waitFor(() => got.length === 4, "8 and 9");
    assert.deepEqual(got, [6, 7, 8, 9]);
    assert.deepEqual(joined, [
      { rejoin: false, seq: 5 },
      { rejoin: true, seq: 9 },
    ]);
    const second = srv.conns[1]!.frames;
    const rejoin = second.find((f) => f["type"] === "join")!;
    assert.equal(rejoin["since"], 7);
    // The join goes out before the resent send, which keeps its client_id.
    const resent = second.filter((f) => f["type"] === "send");
    assert.equal(resent.length, 1);
    assert.equal(resent[0]!["client_id"], "cid-1");
    assert.ok(second.indexOf(rejoin) < second.indexOf(resent[0]!));
    assert.equal(sendReplies, 1);
    assert.equal(tp.pending(), 0);
    tp.close();
  });

  it("a static token gets closed on 4001; a callback token reconnects with a fresh one", async () => {
    const srv = await gateway((c) => setTimeout(() => c.close(4001, "token expired"), 30));
    const stat = make({ url: srv.url, token: "static", reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
    await stat.connect();
    await waitFor(() => stat.state === "closed", "static token: closed on 4001");

    let calls = 0;
    const srv2 = await gateway((c) => {
      if (c.index === 0) setTimeout(() => c.close(4001, "token expired"), 30);
    });
    const cb = make({ url: srv2.url, token: () => `tok${++calls}`, reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
    await cb.connect();
    await waitFor(() => srv2.conns.length === 2 && cb.state === "open", "reconnected");
    assert.equal(calls, 2);
    assert.equal(srv2.conns[1]!.url, "/connect?token=tok2");
    cb.close();
  });

  it("paces frames under welcome.limits.max_rate_per_s", async () => {
    const stamps: number[] = [];
    const srv = await fakeServer((c) => {
      c.send(welcomeFrame({ limits: { max_frame_bytes: 65536, max_rate_per_s: 20, max_body_bytes: 16384, max_rooms_per_conn: 100 } }));
      c.onFrame = (f) => {
        stamps.push(Date.now());
        replyOk(c, f, { id: "x", seq: stamps.length, ts: "" });
      };
    });
    after(() => srv.stop());
    const tp = make({ url: srv.url, token: "t" });
    await tp.connect();
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 40 }, (_, i) => tp.send("r", `b${i}`)));
    const took = Date.now() - t0;
    // A burst of 16 (80 %), then 18/s: about 1.3 s for 40.
    assert.ok(took >= 1000, `40 frames at 20/s took only ${took} ms`);
    // Every frame conforms to the server's limiter (GCRA, 20/s with a burst of 20).
    const interval = 1000 / 20;
    const tolerance = (20 - 1) * interval;
    let tat = stamps[0]!;
    for (const t of stamps) {
      assert.ok(t >= tat - tolerance, `a frame at +${t - stamps[0]!} ms would be rate_limited`);
      tat = Math.max(tat, t) + interval;
    }
    tp.close();
  });

  it("refuses a frame over max_frame_bytes locally instead of getting closed (1009)", async () => {
    const srv = await gateway();
    const tp = make({ url: srv.url, token: "t" });
    await tp.connect();
    await assert.rejects(tp.send("r", "x".repeat(70_000)), { code: "too_large" });
    assert.equal(srv.conns[0]!.frames.length, 0);
    assert.equal(tp.state, "open");
    tp.close();
  });
});
