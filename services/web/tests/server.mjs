// A real all-in-one `telepath` process for the web tests: a free loopback
// port, SQLite in a temp dir, killed (SIGKILL) and started again on the same
// port and database when a test asks, and always stopped at the end.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts the all-in-one; `env` adds to (or overrides) its environment. */
export async function startServer(env = {}) {
  const bin = process.env.TELEPATH_BIN ?? path.join(repoRoot, 'target/debug/telepath');
  const dir = mkdtempSync(path.join(tmpdir(), 'telepath-web-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child = null;
  let log = '';

  const server = {
    url,
    wsUrl: `ws://127.0.0.1:${port}/connect`,
    get log() {
      return log;
    },
    async start() {
      child = spawn(bin, [], {
        env: {
          ...process.env,
          TELEPATH_LISTEN: `127.0.0.1:${port}`,
          DATABASE_URL: `sqlite://${path.join(dir, 'telepath.db')}`,
          TELEPATH_JWT_SECRET: 'web-tests-secret',
          TELEPATH_NODE_ID: 'web-test',
          TELEPATH_DRAIN_SECS: '1',
          // The tests log in and create rooms fast from one address.
          TELEPATH_IP_LOGIN_RATE_PER_S: '0',
          TELEPATH_IP_ROOM_RATE_PER_S: '0',
          // Webhooks deliver to the tests' receivers on 127.0.0.1.
          TELEPATH_WEBHOOK_ALLOW_PRIVATE: '1',
          RUST_LOG: 'warn',
          ...env,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const keep = (chunk) => {
        log = (log + chunk).slice(-20_000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`telepath exited (${child.exitCode}):\n${log}`);
        try {
          if ((await fetch(`${url}/readyz`)).ok) return;
        } catch {
          /* not listening yet */
        }
        await sleep(50);
      }
      throw new Error(`telepath not ready at ${url}:\n${log}`);
    },
    /** SIGKILL: no goodbye to anybody. */
    async kill() {
      if (!child || child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
    async stop() {
      await server.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await server.start();
  return server;
}
