#!/usr/bin/env node
// Checks the AsyncAPI 3.0 document of the WebSocket protocol (docs/asyncapi.json,
// served verbatim at /asyncapi.json).
//
//   node scripts/asyncapi.mjs check <file or URL>
//
// Fails (exit 1), printing why, when:
// - @asyncapi/parser (pinned in package.json) reports any error-severity
//   diagnostic (warnings are printed, not fatal);
// - a message lacks `name`, `x-telepath-direction` ("client" or "server") or
//   an example, or two messages of one direction share a name;
// - a client message is not the message of a `send` operation, or a server
//   message of a `receive` one;
// - an example's payload does not validate against its message's own payload
//   schema (ajv, draft-07 as AsyncAPI schemas are), or has a `type` other than
//   the message's name, or carries a property the schema does not declare (the
//   schemas stay open for forward compatibility; the examples must not lean on
//   that).
// The Rust side (a test parsing every example into ClientFrame / ServerFrame)
// checks that the examples are frames the server really reads and writes.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const { Parser } = require('@asyncapi/parser');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

const SEVERITY = ['error', 'warning', 'info', 'hint'];
const DOC_ID = 'telepath-asyncapi';

/** The document's text, from a URL or a file. */
async function load(source) {
  if (/^https?:\/\//.test(source)) {
    const res = await fetch(source);
    if (!res.ok) throw new Error(`GET ${source}: HTTP ${res.status}`);
    return await res.text();
  }
  return readFileSync(source, 'utf8');
}

/** A deep copy of `schema` with its local refs pointing into the document schema. */
function rebased(schema) {
  if (Array.isArray(schema)) return schema.map(rebased);
  if (schema === null || typeof schema !== 'object') return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/') ? `${DOC_ID}${v}` : rebased(v);
  }
  return out;
}

/**
 * A deep copy of `schema` in which every object schema that lists
 * `properties` and says nothing of others allows no others: the strict form
 * the examples are held to.
 */
function closed(schema) {
  if (Array.isArray(schema)) return schema.map(closed);
  if (schema === null || typeof schema !== 'object') return schema;
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    // `properties` maps names to schemas: close each, not the map itself.
    if (k === 'properties' && v && typeof v === 'object') {
      out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, closed(s)]));
    } else {
      out[k] = closed(v);
    }
  }
  if (out.properties && typeof out.properties === 'object' && !('additionalProperties' in out)) {
    out.additionalProperties = false;
  }
  return out;
}

/**
 * ajv's errors without those inside a failed anyOf/oneOf (every branch's
 * complaint): the anyOf/oneOf error itself says it, naming the branches.
 */
function condensed(errors) {
  const alternatives = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  return errors
    .filter((e) => !alternatives.some((a) => a !== e && e.schemaPath.startsWith(`${a.schemaPath}/`)))
    .map((e) => {
      if (!alternatives.includes(e) || !Array.isArray(e.schema)) return e;
      const branches = e.schema.map((b, i) => b?.title ?? `#${i}`);
      return { ...e, message: `${e.message} (${branches.join(' | ')})` };
    });
}

/** Every problem with the messages, operations and examples of `doc` (plain JSON). */
export function checkMessages(doc) {
  const problems = [];
  const messages = doc.components?.messages ?? {};
  const schemas = doc.components?.schemas ?? {};
  const lenient = new Ajv({ strict: false, allErrors: true, verbose: true });
  const strict = new Ajv({ strict: false, allErrors: true, verbose: true });
  addFormats(lenient);
  addFormats(strict);
  lenient.addSchema({ $id: DOC_ID, components: { schemas: rebased(schemas) } });
  strict.addSchema({ $id: DOC_ID, components: { schemas: closed(rebased(schemas)) } });

  // Which messages the operations send and receive (by component key).
  const byAction = { send: new Set(), receive: new Set() };
  const channelMessage = (r) => {
    const m = /^#\/channels\/([^/]+)\/messages\/(.+)$/.exec(r ?? '');
    if (!m) return null;
    const target = doc.channels?.[m[1]]?.messages?.[m[2]]?.$ref ?? '';
    const c = /^#\/components\/messages\/(.+)$/.exec(target);
    return c ? c[1] : null;
  };
  for (const [id, op] of Object.entries(doc.operations ?? {})) {
    for (const r of op.messages ?? []) {
      const key = channelMessage(r.$ref);
      if (!key) problems.push(`operations.${id}: message ${r.$ref} is not a channel's message referring to components.messages`);
      else byAction[op.action]?.add(key);
    }
  }

  const names = { client: new Map(), server: new Map() };
  for (const [key, msg] of Object.entries(messages)) {
    const where = `components.messages.${key}`;
    const dir = msg['x-telepath-direction'];
    if (dir !== 'client' && dir !== 'server') {
      problems.push(`${where}: x-telepath-direction must be "client" or "server" (is ${JSON.stringify(dir)})`);
      continue;
    }
    if (typeof msg.name !== 'string' || msg.name === '') {
      problems.push(`${where}: no name (it must be the frame's type)`);
      continue;
    }
    if (names[dir].has(msg.name)) problems.push(`${where}: name ${msg.name} is also ${names[dir].get(msg.name)}'s (${dir})`);
    names[dir].set(msg.name, key);
    const action = dir === 'client' ? 'send' : 'receive';
    if (!byAction[action].has(key)) problems.push(`${where}: no '${action}' operation has this ${dir} message`);
    const other = dir === 'client' ? 'receive' : 'send';
    if (byAction[other].has(key)) problems.push(`${where}: a '${other}' operation has this ${dir} message`);
    const typeSchema = msg.payload?.properties?.type;
    if (typeSchema?.const !== msg.name) {
      problems.push(`${where}: payload.properties.type.const must be ${JSON.stringify(msg.name)}`);
    }
    const examples = msg.examples ?? [];
    if (examples.length === 0) problems.push(`${where}: no example`);
    let validate;
    let validateStrict;
    try {
      validate = lenient.compile(rebased(msg.payload ?? {}));
      validateStrict = strict.compile(closed(rebased(msg.payload ?? {})));
    } catch (e) {
      problems.push(`${where}: the payload schema does not compile: ${e.message}`);
      continue;
    }
    examples.forEach((ex, i) => {
      const at = `${where}.examples[${i}]${ex.name ? ` (${ex.name})` : ''}`;
      if (!('payload' in ex)) {
        problems.push(`${at}: no payload`);
        return;
      }
      if (ex.payload?.type !== msg.name) problems.push(`${at}: type is ${JSON.stringify(ex.payload?.type)}, not ${msg.name}`);
      if (!validate(ex.payload)) {
        for (const e of condensed(validate.errors)) problems.push(`${at}: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)}`);
      } else if (!validateStrict(ex.payload)) {
        for (const e of condensed(validateStrict.errors)) {
          if (e.keyword === 'additionalProperties') {
            problems.push(`${at}: ${e.instancePath || '/'} has ${JSON.stringify(e.params.additionalProperty)}, which the schema does not declare`);
          } else {
            problems.push(`${at}: ${e.instancePath || '/'} ${e.message} ${JSON.stringify(e.params)} (with undeclared properties refused)`);
          }
        }
      }
    });
  }
  return { problems, counts: { client: names.client.size, server: names.server.size } };
}

/** Parses and checks the document at `source`; the exit code. */
export async function check(source) {
  const text = await load(source);
  let json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    console.error(`asyncapi: ${source} is not JSON: ${e.message}`);
    return 1;
  }
  const parser = new Parser();
  const { document, diagnostics } = await parser.parse(text, { source: undefined });
  let errors = 0;
  for (const d of diagnostics) {
    const severity = SEVERITY[d.severity] ?? String(d.severity);
    if (d.severity === 0) errors++;
    const path = (d.path ?? []).join('.');
    console[d.severity === 0 ? 'error' : 'log'](`asyncapi: ${severity} ${d.code}: ${d.message}${path ? ` (at ${path})` : ''}`);
  }
  if (errors > 0 || !document) {
    console.error(`asyncapi: ${source}: ${errors} error(s) from @asyncapi/parser`);
    return 1;
  }
  const version = document.version();
  if (!version.startsWith('3.')) {
    console.error(`asyncapi: ${source} is AsyncAPI ${version}, expected 3.x`);
    return 1;
  }
  const { problems, counts } = checkMessages(json);
  for (const p of problems) console.error(`asyncapi: ${p}`);
  if (problems.length > 0) {
    console.error(`asyncapi: ${source}: ${problems.length} problem(s) with its messages and examples`);
    return 1;
  }
  console.log(
    `asyncapi: ${source} is valid AsyncAPI ${version}: ${counts.client} client and ${counts.server} server messages, every example valid`,
  );
  return 0;
}

async function main(argv) {
  const [cmd, source] = argv;
  if (cmd === 'check' && source) return check(source);
  console.error('usage: asyncapi.mjs check <file or URL>');
  return 2;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      console.error(`asyncapi: ${e.stack ?? e}`);
      process.exit(2);
    },
  );
}
