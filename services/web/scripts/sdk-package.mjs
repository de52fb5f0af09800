#!/usr/bin/env node
// The SDK as an npm package (services/web/sdk, `@telepath/sdk`).
//
//   node scripts/sdk-package.mjs pack    npm pack sdk/ into sdk/dist/telepath-sdk.tgz
//   node scripts/sdk-package.mjs check   fail unless sdk/dist/telepath-sdk.tgz holds
//                                        what a fresh `npm pack` of sdk/ holds
//
// `npm run pack:sdk` builds first, then packs. The server embeds sdk/dist and
// serves the tarball at /sdk/telepath-sdk.tgz, so
// `npm install http://host:8080/sdk/telepath-sdk.tgz` installs it. The
// package's `files` lists dist/*.js and dist/*.d.ts only: the tarball never
// holds itself. Packing is compared by the unpacked files (names and
// contents), not by the bytes of the gzip stream.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sdk = path.join(web, 'sdk');
export const TARBALL = path.join(sdk, 'dist', 'telepath-sdk.tgz');

/** `npm pack` of sdk/ into `dir`; the tarball's path. */
export function packInto(dir) {
  const out = execFileSync('npm', ['pack', '--json', '--loglevel=error', '--pack-destination', dir], {
    cwd: sdk,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [info] = JSON.parse(out);
  return path.join(dir, info.filename);
}

/** The files of a tarball (relative path -> contents), unpacked with tar. */
export function unpack(tgz) {
  const dir = mkdtempSync(path.join(tmpdir(), 'telepath-sdk-unpack-'));
  try {
    execFileSync('tar', ['-xzf', tgz, '-C', dir]);
    const files = new Map();
    const walk = (d) => {
      for (const name of readdirSync(d).sort()) {
        const p = path.join(d, name);
        if (statSync(p).isDirectory()) walk(p);
        else files.set(path.relative(dir, p), readFileSync(p));
      }
    };
    walk(dir);
    return files;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What differs between two unpacked tarballs ([] when they hold the same
 * files). package.json is compared as JSON: npm versions may lay it out
 * differently.
 */
export function differences(a, b) {
  const out = [];
  for (const [name, data] of a) {
    if (!b.has(name)) out.push(`only in the first: ${name}`);
    else if (name.endsWith('/package.json') ? !sameJson(data, b.get(name)) : !data.equals(b.get(name))) out.push(`differs: ${name}`);
  }
  for (const name of b.keys()) if (!a.has(name)) out.push(`only in the second: ${name}`);
  return out;
}

function sameJson(x, y) {
  try {
    return JSON.stringify(sorted(JSON.parse(x.toString('utf8')))) === JSON.stringify(sorted(JSON.parse(y.toString('utf8'))));
  } catch {
    return x.equals(y);
  }
}

function sorted(v) {
  if (Array.isArray(v)) return v.map(sorted);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sorted(v[k])]));
  return v;
}

function pack() {
  const dir = mkdtempSync(path.join(tmpdir(), 'telepath-sdk-pack-'));
  try {
    const tgz = packInto(dir);
    copyFileSync(tgz, TARBALL);
    const files = [...unpack(TARBALL).keys()];
    console.log(`${path.relative(process.cwd(), TARBALL)}: ${path.basename(tgz)}, ${files.length} files`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function check() {
  const dir = mkdtempSync(path.join(tmpdir(), 'telepath-sdk-check-'));
  try {
    const fresh = unpack(packInto(dir));
    let committed;
    try {
      committed = unpack(TARBALL);
    } catch (e) {
      throw new Error(`cannot unpack ${TARBALL}: ${e.message}`);
    }
    const problems = differences(committed, fresh).map((d) => d.replace('the first', 'the committed tarball').replace('the second', 'a fresh npm pack'));
    for (const name of committed.keys()) if (name.endsWith('.tgz')) problems.push(`the tarball holds a tarball: ${name}`);
    const manifest = JSON.parse(committed.get('package/package.json') ?? '{}');
    if (manifest.name !== '@telepath/sdk') problems.push(`package name ${manifest.name}, not @telepath/sdk`);
    if (problems.length > 0) {
      for (const p of problems) console.error(`  ${p}`);
      console.error("services/web/sdk/dist/telepath-sdk.tgz is not what the SDK packs to: run 'npm run pack:sdk' in services/web and commit it");
      process.exitCode = 1;
      return;
    }
    console.log(`sdk/dist/telepath-sdk.tgz is fresh (${committed.size} files, ${manifest.name}@${manifest.version})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cmd = process.argv[2];
  if (cmd === 'pack') pack();
  else if (cmd === 'check') check();
  else {
    console.error('usage: node scripts/sdk-package.mjs pack|check');
    process.exit(2);
  }
}
