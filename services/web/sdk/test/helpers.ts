// Test helpers: a real all-in-one `telepath` per test file, on a free port
// with its own temp dir, killed (by pid) when the file is done.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Telepath, TelepathRest, type TelepathEvents, type TelepathOptions } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));
/** services/web/sdk/test-dist -> the repository root. */
export const REPO = resolve(here, "..", "..", "..", "..");
export const BIN = process.env["TELEPATH_BIN"] ?? join(REPO, "target", "debug", "telepath");

export function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value (returned) or the time is up (throws). */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 5000, everyMs = 20): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export interface Server {
  port: number;
  base: string;
  ws: string;
  dir: string;
  proc?: ChildProcess;
  log: string[];
  /** Starts (again) on the same port and database. */
  start(): Promise<void>;
  /** SIGKILL (default) or another signal; waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Kills and removes the temp dir. */
  stop(): Promise<void>;
}

/** Every server started by this process, killed on exit whatever happens. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of live) if (p.pid && p.exitCode === null) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
});

export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "telepath-sdk-"));
  const base = `http://127.0.0.1:${port}`;
  const server: Server = {
    port,
    base,
    ws: `ws://127.0.0.1:${port}/connect`,
    dir,
    log: [],
    async start() {
      const proc = spawn(BIN, [], {
        env: {
          PATH: process.env["PATH"] ?? "/usr/bin:/bin",
          TELEPATH_LISTEN: `127.0.0.1:${port}`,
          DATABASE_URL: `sqlite://${join(dir, "t.db")}`,
          TELEPATH_JWT_SECRET: "sdk-test-secret",
          TELEPATH_DEV_ADMINS: "*",
          TELEPATH_WORKER_THREADS: "2",
          TELEPATH_DRAIN_SECS: "1",
          // The tests log in and create rooms fast from one address.
          TELEPATH_IP_LOGIN_RATE_PER_S: "0",
          TELEPATH_IP_ROOM_RATE_PER_S: "0",
          // Webhooks deliver to the tests' receivers on 127.0.0.1.
          TELEPATH_WEBHOOK_ALLOW_PRIVATE: "1",
          RUST_LOG: "warn",
          ...env,
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      live.add(proc);
      proc.on("exit", () => live.delete(proc));
      const keep = (b: Buffer) => {
        server.log.push(b.toString());
        if (server.log.length > 200) server.log.shift();
      };
      proc.stdout!.on("data", keep);
      proc.stderr!.on("data", keep);
      server.proc = proc;
      const until = Date.now() + 20_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`telepath exited (${proc.exitCode}):\n${server.log.join("")}`);
        try {
          const res = await fetch(`${base}/readyz`);
          await res.text();
          if (res.status === 200) return;
        } catch {
          /* not listening yet */
        }
        if (Date.now() > until) throw new Error(`telepath not ready on ${base}:\n${server.log.join("")}`);
        await sleep(50);
      }
    },
    async kill(signal: NodeJS.Signals = "SIGKILL") {
      const proc = server.proc;
      server.proc = undefined;
      if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise<void>((r) => proc.once("exit", () => r()));
      proc.kill(signal);
      await exited;
    },
    async stop() {
      await server.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}

let counter = 0;
/** A fresh username per call (1-32 of [A-Za-z0-9_.-]). */
export function uname(prefix: string): string {
  return `${prefix}-${process.pid % 10000}-${Date.now() % 100000}-${++counter}`.slice(0, 32);
}

export async function login(server: Server, name: string, role?: "user" | "admin") {
  return TelepathRest.login(server.base, name, role);
}

export async function rest(server: Server, name: string, role?: "user" | "admin") {
  const { token, user } = await login(server, name, role);
  return { token, user, api: new TelepathRest({ baseUrl: server.base, token }) };
}

/** Clients made by `client()`, closed by `closeAll()`. */
const clients = new Set<Telepath>();

export async function client(
  server: Server,
  name: string,
  opts: Partial<TelepathOptions> = {},
): Promise<{ tp: Telepath; user: { id: string; name: string } }> {
  const { token, user } = await login(server, name);
  const tp = new Telepath({ url: server.ws, token, reconnect: { initialDelayMs: 50, maxDelayMs: 400 }, ...opts });
  clients.add(tp);
  return { tp, user };
}

export function track(tp: Telepath): Telepath {
  clients.add(tp);
  return tp;
}

export function closeAll(): void {
  for (const c of clients) c.close();
  clients.clear();
}

/** Records every payload of `event`. */
export function record<E extends keyof TelepathEvents>(tp: Telepath, event: E): TelepathEvents[E][] {
  const out: TelepathEvents[E][] = [];
  tp.on(event, (p) => out.push(p));
  return out;
}

export async function createRoom(server: Server, owner: string, name = uname("room")) {
  const { api, token, user } = await rest(server, owner);
  const room = await api.createRoom({ name });
  return { room, api, token, user };
}

/** A WebSocket whose live instances the test can drop (a client-side close the SDK did not ask for: it reconnects). */
export function droppableWebSocket() {
  const live = new Set<WebSocket>();
  class Droppable extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[]) {
      super(url, protocols);
      live.add(this);
      this.addEventListener("close", () => live.delete(this));
    }
  }
  return {
    WebSocket: Droppable,
    drop() {
      for (const ws of live) ws.close(4000, "test drop");
    },
  };
}
