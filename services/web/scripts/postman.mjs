#!/usr/bin/env node
// The Postman collection of the REST API, generated from the OpenAPI document.
//
//   node scripts/postman.mjs generate <openapi.json: URL or file> <out>
//   node scripts/postman.mjs check    <openapi.json: URL or file> <committed collection>
//
// The committed collection is docs/postman/telepath.postman_collection.json:
// regenerate it whenever the served document changes (a route added or
// changed), e.g. with an all-in-one running:
//
//   node scripts/postman.mjs generate http://127.0.0.1:8080/openapi.json \
//     ../../docs/postman/telepath.postman_collection.json
//
// `check` generates afresh and compares byte for byte (exit 1 on any
// difference). Conversion is openapi-to-postmanv2 (pinned in package.json),
// made deterministic: its schema faker draws from a seeded generator and sees
// a fixed clock, and every id is derived from the item's place (a UUID from
// a SHA-1 of its method, path, folder or response), so the same document
// always gives the same bytes and a re-import replaces the collection.
//
// Auth: the collection uses bearer {{token}} (a user's JWT: POST /auth/login
// or `telepath token`); routes with the `api_key` scheme (/api/...) use
// bearer {{apiKey}}, set on their folder when the whole folder uses it;
// routes without security (login, health, the web app) have no auth.
// Variables: baseUrl (http://localhost:8080), token, apiKey, ticket; POST
// /auth/login and POST /auth/ticket store token and ticket. Only the 1xx and
// 2xx example responses are kept (the errors all share one shape,
// {"error":{"code","message"}}, and /docs shows every status).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

// The converter's schema faker keeps the Math.random it finds when it loads,
// so a stand-in goes in first: it draws from `draw`, the real generator except
// while a conversion runs (then a seeded one).
const realRandom = Math.random;
let draw = realRandom;
Math.random = () => draw();
const require = createRequire(import.meta.url);
const converter = require('openapi-to-postmanv2');

export const BASE_URL = 'http://localhost:8080';
const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The OpenAPI document's text, from a URL or a file. */
export async function load(source) {
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source);
    if (!res.ok) throw new Error(`GET ${source}: HTTP ${res.status}`);
    return await res.text();
  }
  return readFileSync(source, 'utf8');
}

/** A name-based UUID (version 5 layout) of `key`: stable ids for Postman. */
export function stableId(key) {
  const h = createHash('sha1').update(`telepath-postman:${key}`).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** mulberry32: a small seeded generator standing in for Math.random. */
function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `fn` with Math.random seeded and the clock fixed, restoring both after. */
async function deterministically(fn) {
  const RealDate = globalThis.Date;
  const FIXED = RealDate.UTC(2026, 0, 1, 0, 0, 0);
  class FixedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(FIXED);
      else super(...args);
    }
    static now() {
      return FIXED;
    }
  }
  globalThis.Date = FixedDate;
  draw = seeded(0x7e1e9a7);
  try {
    return await fn();
  } finally {
    globalThis.Date = RealDate;
    draw = realRandom;
  }
}

/** openapi-to-postmanv2's collection for the document `text`. */
function convert(text) {
  return deterministically(
    () =>
      new Promise((resolve, reject) => {
        converter.convertV2(
          { type: 'string', data: text },
          {
            folderStrategy: 'Tags',
            requestNameSource: 'Fallback',
            parametersResolution: 'Schema',
            enableOptionalParameters: false,
            includeAuthInfoInExample: false,
            alwaysInheritAuthentication: false,
            includeWebhooks: false,
            indentCharacter: 'Space',
          },
          (err, res) => {
            if (err) return reject(err);
            if (!res.result) return reject(new Error(`conversion failed: ${res.reason}`));
            resolve(res.output[0].data);
          },
        );
      }),
  );
}

const tokenAuth = { type: 'bearer', bearer: [{ key: 'token', value: '{{token}}', type: 'string' }] };
const apiKeyAuth = { type: 'bearer', bearer: [{ key: 'token', value: '{{apiKey}}', type: 'string' }] };
const noAuth = { type: 'noauth' };

/** `METHOD path` -> { security schemes, summary, description } from the document. */
function operations(doc) {
  const ops = new Map();
  for (const [p, item] of Object.entries(doc.paths ?? {})) {
    for (const m of HTTP_METHODS) {
      const op = item[m];
      if (!op) continue;
      const security = op.security ?? doc.security ?? [];
      const schemes = new Set(security.flatMap((s) => Object.keys(s)));
      ops.set(`${m.toUpperCase()} ${p}`, { schemes, summary: op.summary, description: op.description });
    }
  }
  return ops;
}

/** The auth a request needs: 'token' (the collection's), 'apiKey' or 'none'. */
function authKind(schemes) {
  if (schemes.size === 0) return 'none';
  if (schemes.has('bearer')) return 'token';
  if (schemes.has('api_key')) return 'apiKey';
  return 'token';
}

/** The OpenAPI path template of a Postman request URL. */
function templateOf(url) {
  const segments = (url.path ?? []).map((s) => (s.startsWith(':') ? `{${s.slice(1)}}` : s));
  return `/${segments.join('/')}`;
}

/** Orders an object's keys as listed first, the rest sorted after. */
function ordered(obj, first) {
  const out = {};
  for (const k of first) if (k in obj) out[k] = obj[k];
  for (const k of Object.keys(obj).sort()) if (!(k in out)) out[k] = obj[k];
  return out;
}

/** Faked values longer than this (a list of 1000 ids) become a placeholder. */
const LONGEST_VALUE = 128;

/** Replaces over-long faked query and path values of a Postman URL in place. */
function tame(url) {
  for (const list of [url?.query, url?.variable]) {
    for (const p of list ?? []) {
      if (typeof p.value === 'string' && p.value.length > LONGEST_VALUE) p.value = '<string>';
    }
  }
}

/** Post-response scripts that keep what a request returns for the next ones. */
const KEEP = {
  'POST /auth/login': [
    "// Keep the token for every request of the collection (and for the WebSocket guide).",
    "if (pm.response.code === 200) pm.collectionVariables.set('token', pm.response.json().token);",
  ],
  'POST /auth/ticket': [
    "// Keep the single-use connect ticket: ws://.../connect?ticket={{ticket}} within 30 s.",
    "if (pm.response.code === 200) pm.collectionVariables.set('ticket', pm.response.json().ticket);",
  ],
};

/** The collection for the OpenAPI document `text`, as the bytes to commit. */
export async function generate(text) {
  const doc = JSON.parse(text);
  const ops = operations(doc);
  const raw = await convert(text);
  const folders = [];
  for (const folder of raw.item ?? []) {
    const requests = [];
    for (const item of folder.item ?? []) {
      if (!item.request) throw new Error(`unexpected nested folder in ${folder.name}`);
      const method = item.request.method;
      const template = templateOf(item.request.url);
      const key = `${method} ${template}`;
      const op = ops.get(key);
      if (!op) throw new Error(`${key}: not in the OpenAPI document`);
      const name = key;
      const description = [op.summary, op.description].filter(Boolean).join('\n\n');
      const request = { ...item.request, name };
      delete request.auth;
      if (request.body && Object.keys(request.body).length === 0) delete request.body;
      tame(request.url);
      if (description) request.description = { content: description, type: 'text/markdown' };
      else delete request.description;
      const kind = authKind(op.schemes);
      const responses = (item.response ?? [])
        .filter((r) => r.code < 300)
        .map((r) => {
          tame(r.originalRequest?.url);
          return ordered({ ...r, id: stableId(`${key} response ${r.code} ${r.name}`) }, ['id', 'name']);
        });
      const event = KEEP[key]
        ? [{ listen: 'test', script: { type: 'text/javascript', exec: KEEP[key] } }]
        : [];
      requests.push({ kind, item: { id: stableId(key), name, request, response: responses, event } });
    }
    if (requests.length === 0) continue;
    // A folder whose requests all use the API key carries it; the others inherit.
    const allApiKey = requests.every((r) => r.kind === 'apiKey');
    const items = requests.map(({ kind, item }) => {
      if (kind === 'none') item.request.auth = noAuth;
      else if (kind === 'apiKey' && !allApiKey) item.request.auth = apiKeyAuth;
      item.request = ordered(item.request, ['name', 'description', 'method', 'url', 'auth', 'header', 'body']);
      return ordered(item, ['id', 'name', 'request', 'response']);
    });
    const f = { id: stableId(`folder ${folder.name}`), name: folder.name };
    if (folder.description?.content) f.description = folder.description.content;
    if (allApiKey) f.auth = apiKeyAuth;
    f.item = items;
    folders.push(f);
  }
  const info = {
    _postman_id: stableId('collection'),
    name: raw.info?.name ?? 'Telepath',
    description: [
      raw.info?.description?.content ?? '',
      'Generated from the served /openapi.json by services/web/scripts/postman.mjs; do not edit by hand.',
      'Variables: baseUrl (the server), token (a user JWT: POST /auth/login sets it; used by the collection), ' +
        'apiKey (a tpk_ key for the /api/ routes; used by the "server" folder), ' +
        'ticket (a single-use WebSocket connect ticket: POST /auth/ticket sets it).',
      'The WebSocket protocol (/connect) is not an HTTP request: see docs/postman/README.md, ' +
        'the AsyncAPI document at /asyncapi.json and docs/PROTOCOL.md. Swagger UI is at /docs.',
    ]
      .filter(Boolean)
      .join('\n\n'),
    // The format's identifier, as the converter writes it (Postman reads the version from it).
    schema: raw.info?.schema,
  };
  const collection = {
    info,
    auth: tokenAuth,
    variable: [
      { key: 'baseUrl', value: BASE_URL, type: 'string' },
      { key: 'token', value: '', type: 'string' },
      { key: 'apiKey', value: '', type: 'string' },
      { key: 'ticket', value: '', type: 'string' },
    ],
    item: folders,
  };
  return `${JSON.stringify(collection, null, 2)}\n`;
}

/** The first line where `a` and `b` differ, for the error message. */
function firstDifference(a, b) {
  const x = a.split('\n');
  const y = b.split('\n');
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if (x[i] !== y[i]) return { line: i + 1, committed: x[i], fresh: y[i] };
  }
  return null;
}

async function main(argv) {
  const [cmd, source, file] = argv;
  if (cmd === 'generate' && source && file) {
    const out = await generate(await load(source));
    writeFileSync(file, out);
    console.log(`postman: wrote ${file} (${out.length} bytes) from ${source}`);
    return 0;
  }
  if (cmd === 'check' && source && file) {
    const fresh = await generate(await load(source));
    let committed;
    try {
      committed = readFileSync(file, 'utf8');
    } catch (e) {
      console.error(`postman: cannot read ${file}: ${e.message}`);
      return 1;
    }
    if (committed === fresh) {
      console.log(`postman: ${file} is what ${source} generates`);
      return 0;
    }
    const d = firstDifference(committed, fresh);
    console.error(
      `postman: ${file} is not what ${source} generates (first difference at line ${d?.line}:\n` +
        `  committed: ${d?.committed}\n  fresh:     ${d?.fresh})\n` +
        `regenerate it: cd services/web && node scripts/postman.mjs generate <server>/openapi.json ${file}`,
    );
    return 1;
  }
  console.error('usage: postman.mjs generate <openapi.json URL or file> <out>\n' +
    '       postman.mjs check <openapi.json URL or file> <committed collection>');
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`postman: ${e.stack ?? e}`);
      process.exit(2);
    },
  );
}
