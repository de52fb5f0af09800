#!/usr/bin/env node
// Swagger UI, vendored from the npm package swagger-ui-dist (pinned exactly in
// package.json) into services/web/docs/, which the server serves at /docs
// (index.html) and /docs/{file}.
//
//   node scripts/swagger-ui.mjs update   copy the vendored files from node_modules/swagger-ui-dist
//   node scripts/swagger-ui.mjs check    fail unless docs/ holds exactly those bytes, plus our own
//                                        index.html, init.js and docs.css, and index.html has no
//                                        inline script or style (the server's CSP forbids them)
//
// To move to another version: `npm install --save-dev --save-exact
// swagger-ui-dist@X`, then `update`, and commit docs/ with package.json and
// package-lock.json.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const web = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DOCS = path.join(web, 'docs');
const DIST = path.join(web, 'node_modules', 'swagger-ui-dist');

/** Copied byte for byte from swagger-ui-dist (the licence files with them). */
export const VENDORED = [
  'swagger-ui-bundle.js',
  'swagger-ui-bundle.js.LICENSE.txt',
  'swagger-ui.css',
  'LICENSE',
  'NOTICE',
];
/** Telepath's own files in docs/. */
export const OWN = ['index.html', 'init.js', 'docs.css'];

function distVersion() {
  const pkg = path.join(DIST, 'package.json');
  if (!existsSync(pkg)) {
    throw new Error(`${DIST} is missing: run 'npm ci' in services/web first`);
  }
  return JSON.parse(readFileSync(pkg, 'utf8')).version;
}

function pinnedVersion() {
  const pkg = JSON.parse(readFileSync(path.join(web, 'package.json'), 'utf8'));
  return pkg.devDependencies?.['swagger-ui-dist'];
}

/** What the CSP (`script-src 'self'; style-src 'self'`) would refuse in `html`. */
export function inlineProblems(html) {
  const problems = [];
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    if (!/\bsrc\s*=/.test(m[1])) problems.push('an inline <script> (no src)');
    else if (m[2].trim() !== '') problems.push('a <script src> with a body');
  }
  if (/<style\b/i.test(html)) problems.push('a <style> element');
  if (/\sstyle\s*=/i.test(html)) problems.push('a style="..." attribute');
  if (/\son[a-z]+\s*=/i.test(html)) problems.push('an inline event handler (on...=)');
  if (/javascript:/i.test(html)) problems.push('a javascript: URL');
  return problems;
}

function update() {
  const version = distVersion();
  for (const f of VENDORED) writeFileSync(path.join(DOCS, f), readFileSync(path.join(DIST, f)));
  console.log(`swagger-ui: copied ${VENDORED.length} files of swagger-ui-dist ${version} into ${path.relative(web, DOCS)}/`);
  return 0;
}

function check() {
  const problems = [];
  const version = distVersion();
  const pinned = pinnedVersion();
  if (pinned !== version) {
    problems.push(`package.json pins swagger-ui-dist ${JSON.stringify(pinned)} but node_modules has ${version} (run 'npm ci')`);
  }
  for (const f of VENDORED) {
    const mine = path.join(DOCS, f);
    if (!existsSync(mine)) {
      problems.push(`docs/${f} is missing`);
    } else if (!readFileSync(mine).equals(readFileSync(path.join(DIST, f)))) {
      problems.push(`docs/${f} differs from swagger-ui-dist ${version}'s`);
    }
  }
  for (const f of OWN) if (!existsSync(path.join(DOCS, f))) problems.push(`docs/${f} is missing`);
  for (const f of existsSync(DOCS) ? readdirSync(DOCS) : []) {
    if (!VENDORED.includes(f) && !OWN.includes(f)) {
      problems.push(`docs/${f} is not a file of Swagger UI's (add it to VENDORED or OWN in scripts/swagger-ui.mjs, or remove it)`);
    }
  }
  const index = path.join(DOCS, 'index.html');
  if (existsSync(index)) {
    const html = readFileSync(index, 'utf8');
    for (const p of inlineProblems(html)) problems.push(`docs/index.html has ${p}: the server's CSP refuses it`);
    // Every /docs/ asset the page loads is one of ours.
    for (const m of html.matchAll(/(?:src|href)\s*=\s*"\/docs\/([^"]+)"/g)) {
      if (!VENDORED.includes(m[1]) && !OWN.includes(m[1])) problems.push(`docs/index.html loads /docs/${m[1]}, which docs/ does not hold`);
    }
  }
  const init = path.join(DOCS, 'init.js');
  if (existsSync(init) && !readFileSync(init, 'utf8').includes("'/openapi.json'")) {
    problems.push("docs/init.js does not load '/openapi.json'");
  }
  if (problems.length > 0) {
    for (const p of problems) console.error(`swagger-ui: ${p}`);
    console.error("swagger-ui: run 'node scripts/swagger-ui.mjs update' in services/web (after 'npm ci') and commit services/web/docs");
    return 1;
  }
  console.log(`swagger-ui: services/web/docs holds swagger-ui-dist ${version} as published`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const cmd = process.argv[2];
  try {
    if (cmd === 'update') process.exit(update());
    else if (cmd === 'check') process.exit(check());
    console.error('usage: swagger-ui.mjs update | check');
    process.exit(2);
  } catch (e) {
    console.error(`swagger-ui: ${e.message}`);
    process.exit(2);
  }
}
