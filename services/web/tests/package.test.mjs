// The SDK as an npm package: the committed tarball (services/web/sdk/dist/
// telepath-sdk.tgz) installs with `npm install <tgz>` into a fresh directory,
// `import { Telepath } from "@telepath/sdk"` type-checks (NodeNext and
// bundler resolution, the package's .d.ts checked too) and runs against a
// real all-in-one; and, when the binary under test embeds it, the same
// install works from the server's URL (`/sdk/telepath-sdk.tgz`).
//
//   node --experimental-websocket --test services/web/tests/package.test.mjs
//
// scripts/web-test.sh checks before this that the committed tarball is what
// a fresh `npm pack` gives (scripts/sdk-package.mjs check).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { differences, TARBALL, unpack } from '../scripts/sdk-package.mjs';
import { repoRoot, startServer } from './server.mjs';

const WEB = path.join(repoRoot, 'services/web');
const TSC = path.join(WEB, 'node_modules/.bin/tsc');
const dirs = [];
let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh directory with an empty ES-module package.json. */
function project(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  return dir;
}

function npmInstall(dir, spec, extra = []) {
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', ...extra, spec], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
}

const CONSUMER = `
import { Telepath, TelepathError, TelepathRest, TelepathServer, verifyWebhook, type AuthMode, type ConnectTicket, type CreateWebhook, type RoomMessage, type WebhookPayload } from "@telepath/sdk";

declare const process: { env: Record<string, string | undefined> };
const base = process.env["TELEPATH_BASE"]!;
const auth: AuthMode = "ticket";
const { token } = await TelepathRest.login(base, "pkg-" + Date.now() % 100000);
const rest = new TelepathRest({ baseUrl: base, token });
const room = await rest.createRoom({ name: "from the package" });
const ticket: ConnectTicket = await rest.ticket();
if (ticket.expires_in !== 30) throw new Error("expires_in " + ticket.expires_in);

const tp = new Telepath({ url: base, token, auth });
const got = new Promise<RoomMessage>((resolve) => tp.on("message", resolve));
await tp.connect();
await tp.join(room.id);
const sent: RoomMessage = await rest.sendMessage(room.id, "hello from the package", { clientId: "pkg-1" });
const m = await got;
if (m.id !== sent.id || m.body !== "hello from the package") throw new Error("not the message sent");
const reply = await tp.send(room.id, "and over the socket");
tp.close();
try {
  await rest.sendMessage(room.id, "");
  throw new Error("an empty body was accepted");
} catch (e) {
  if (!(e instanceof TelepathError) || e.code !== "bad_request" || e.status !== 400) throw e;
}
try {
  await new TelepathServer({ url: base, apiKey: "tpk_" + "A".repeat(43) }).presence([room.created_by]);
  throw new Error("an unknown API key was accepted");
} catch (e) {
  if (!(e instanceof TelepathError) || e.status !== 401 || e.message !== "unknown_api_key") throw e;
}
const hook: CreateWebhook = { url: base + "/hook", events: ["message.created", "presence.changed"] };
if (hook.events.length !== 2) throw new Error("CreateWebhook");
const payload = JSON.parse('{"id":"e","type":"message.created","created_at":"","data":{"body":"x"}}') as WebhookPayload;
if (payload.type === "message.created" && payload.data.body !== "x") throw new Error("WebhookPayload");
if (await verifyWebhook({ secret: "0123456789abcdef", body: "{}", signature: "t=1,v1=" + "0".repeat(64) })) {
  throw new Error("a bad webhook signature was accepted");
}
let typeError = false;
try {
  new Telepath("ws://example.invalid/connect" as unknown as { url: string; token: string });
} catch (e) {
  typeError = e instanceof TypeError;
}
if (!typeError) throw new Error("a URL string was not refused");
console.log(JSON.stringify({ ok: true, seq: reply.seq }));
`;

function tsconfig(dir, name, compilerOptions) {
  writeFileSync(
    path.join(dir, name),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', lib: ['ES2022', 'DOM'], types: [], strict: true, skipLibCheck: false, ...compilerOptions },
      include: ['consumer.ts'],
    }),
  );
}

test('npm install of the committed tarball into a fresh directory: it type-checks and runs', () => {
  assert.ok(existsSync(TARBALL), `${TARBALL} is missing: run 'npm run pack:sdk' in services/web`);
  const dir = project('telepath-sdk-install-');
  npmInstall(dir, TARBALL, ['--offline']);

  const pkg = path.join(dir, 'node_modules/@telepath/sdk');
  const manifest = JSON.parse(readFileSync(path.join(pkg, 'package.json'), 'utf8'));
  assert.equal(manifest.name, '@telepath/sdk');
  assert.ok(existsSync(path.join(pkg, 'README.md')));
  const dist = readdirSync(path.join(pkg, 'dist'));
  assert.ok(dist.includes('index.js') && dist.includes('index.d.ts') && dist.includes('client.js'));
  assert.deepEqual(dist.filter((f) => !/\.(js|d\.ts)$/.test(f)), [], 'only modules and declarations');

  writeFileSync(path.join(dir, 'consumer.ts'), CONSUMER);
  tsconfig(dir, 'tsconfig.json', { module: 'NodeNext', moduleResolution: 'NodeNext', outDir: 'out', rootDir: '.' });
  tsconfig(dir, 'tsconfig.bundler.json', { module: 'Preserve', moduleResolution: 'Bundler', noEmit: true });
  for (const cfg of ['tsconfig.bundler.json', 'tsconfig.json']) {
    try {
      execFileSync(TSC, ['-p', cfg], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    } catch (e) {
      assert.fail(`tsc -p ${cfg} in the consumer failed:\n${e.stdout}${e.stderr}`);
    }
  }
  let out;
  try {
    out = execFileSync(process.execPath, ['--experimental-websocket', 'out/consumer.js'], {
      cwd: dir,
      env: { ...process.env, TELEPATH_BASE: server.url },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  } catch (e) {
    assert.fail(`the consumer failed:\n${e.stdout}${e.stderr}\n${server.log}`);
  }
  assert.deepEqual(JSON.parse(out.trim().split('\n').at(-1)), { ok: true, seq: 2 });
});

test('npm install http://<server>/sdk/telepath-sdk.tgz, when the binary serves it', async (t) => {
  const url = `${server.url}/sdk/telepath-sdk.tgz`;
  const res = await fetch(url);
  const bytes = Buffer.from(await res.arrayBuffer());
  if (res.status === 404) {
    t.skip('the binary under test does not embed sdk/dist/telepath-sdk.tgz yet: rebuild it (cargo build) to test the served URL');
    return;
  }
  assert.equal(res.status, 200);
  const dir = project('telepath-sdk-url-');
  npmInstall(dir, url);
  const out = execFileSync(
    process.execPath,
    ['--input-type=module', '-e', 'const m = await import("@telepath/sdk"); console.log(typeof m.Telepath, typeof m.TelepathRest.prototype.sendMessage)'],
    { cwd: dir, encoding: 'utf8' },
  );
  assert.equal(out.trim(), 'function function');
  const served = path.join(dir, 'served.tgz');
  writeFileSync(served, bytes);
  const diff = differences(unpack(served), unpack(TARBALL));
  if (diff.length > 0) {
    t.diagnostic(`the served tarball is an older build than the committed one (rebuild the binary): ${diff.join('; ')}`);
  }
});
