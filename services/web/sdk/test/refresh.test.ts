// Tokens that live 4 s (TELEPATH_TOKEN_TTL_SECS): a token callback keeps the
// connection up with `refresh`; a static token ends with 4001; a callback
// that only gives a fresh token after expiry reconnects after 4001.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Telepath, tokenExpiry, type StateChange } from "../dist/index.js";
import { closeAll, createRoom, login, record, sleep, startServer, track, uname, waitFor, type Server } from "./helpers.js";

const TTL = 4;
const LEEWAY_S = 5;
let s: Server;
before(async () => {
  s = await startServer({ TELEPATH_TOKEN_TTL_SECS: String(TTL) });
});
after(async () => {
  closeAll();
  await s?.stop();
});

describe("token refresh", () => {
  it("stays up past several expiries with a refreshing callback; static and lazy tokens get 4001", async () => {
    const { room } = await createRoom(s, uname("own"));

    // Refreshing: logs in again on every call.
    const name = uname("fresh");
    let calls = 0;
    const fresh = track(
      new Telepath({
        url: s.ws,
        token: async () => {
          calls++;
          return (await login(s, name)).token;
        },
      }),
    );
    const freshStates: StateChange[] = record(fresh, "state");
    const freshByes = record(fresh, "bye");

    // Static: nothing to refresh with.
    const stat = track(new Telepath({ url: s.ws, token: (await login(s, uname("static"))).token }));
    const statStates: StateChange[] = record(stat, "state");
    const statByes = record(stat, "bye");

    // Lazy: hands out the same token until it is past any use, so the server closes 4001 first.
    const lazyName = uname("lazy");
    let cached = (await login(s, lazyName)).token;
    let lazyCalls = 0;
    const lazy = track(
      new Telepath({
        url: s.ws,
        token: async () => {
          lazyCalls++;
          // Stale until past exp and the server's leeway (+1 s, so 4001 comes first).
          if ((tokenExpiry(cached)! + LEEWAY_S + 1) * 1000 <= Date.now()) cached = (await login(s, lazyName)).token;
          return cached;
        },
        reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
      }),
    );
    const lazyStates: StateChange[] = record(lazy, "state");
    const lazyByes = record(lazy, "bye");

    const t0 = Date.now();
    await Promise.all([fresh.connect(), stat.connect(), lazy.connect()]);
    const firstExp = tokenExpiry((await login(s, uname("probe"))).token)!;
    await fresh.join(room.id);

    // Past two lifetimes, and past the first token's exp plus the server's
    // 5 s clock-skew leeway (a session lives until then).
    const until = Math.max(t0 + 2 * TTL * 1000, (firstExp + LEEWAY_S) * 1000) + 1500;
    await sleep(until - Date.now());
    assert.ok(Date.now() > (firstExp + LEEWAY_S) * 1000 + 1000, "we are past the first token's exp and leeway");

    assert.deepEqual(
      freshStates.map((x) => x.state),
      ["connecting", "open"],
      "the refreshing client never dropped",
    );
    assert.equal(freshByes.length, 0);
    assert.ok(calls >= 3, `the callback ran on connect and for each refresh (${calls})`);
    assert.equal(fresh.state, "open");
    await fresh.ping();
    const r = await fresh.send(room.id, "still here");
    assert.ok(r.seq > 0);

    assert.equal(statByes[0]?.reason, "token_expired");
    assert.equal(stat.state, "closed");
    assert.equal(statStates.at(-1)!.code, 4001);

    assert.equal(lazyByes[0]?.reason, "token_expired");
    const drop = lazyStates.find((x) => x.state === "reconnecting");
    assert.equal(drop?.code, 4001);
    await waitFor(() => lazy.state === "open", "lazy reopened with a fresh token");
    assert.ok(lazyCalls >= 2);
    await lazy.ping();
  });
});
