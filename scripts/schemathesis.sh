#!/usr/bin/env bash
# Runs schemathesis against throwaway Telepath processes: every operation of
# the all-in-one's public /openapi.json with an admin token, then every
# internal route of a split api (its internal listener's /openapi.json,
# with the internal token; an all-in-one serves its internal routes on no
# port at all), on a redis-server of its own.
# Usage: scripts/schemathesis.sh [directory or path of the telepath binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/debug/telepath}
[ -d "$bin" ] && bin="$bin/telepath"
bin_dir=$(dirname "$bin")

# A private virtualenv under target/ keeps the system Python untouched.
venv=target/tools/schemathesis
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis==4.32.5
fi
# openapi-spec-validator checks each served document against the OpenAPI
# specification itself (unique operationIds, resolvable references...).
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator==0.7.2
fi
validate() { # url
  curl -fsS "$1" >"$dir/doc.json"
  "$venv/bin/openapi-spec-validator" "$dir/doc.json"
}
st="$venv/bin/st"

dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ok() { # url
  for _ in $(seq 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "schemathesis: $1 never answered" >&2
  return 1
}
port=$(free_port)
secret="schemathesis-$(date +%s%N)"
TELEPATH_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite://$dir/st.db" TELEPATH_JWT_SECRET="$secret" \
  TELEPATH_DEV_ADMINS=schemathesis \
  RUST_LOG=warn TELEPATH_IP_LOGIN_RATE_PER_S=0 TELEPATH_IP_ROOM_RATE_PER_S=0 TELEPATH_USER_RATE_PER_S=0 \
  "$bin" >"$dir/server.log" 2>&1 &
pids+=($!)

base="http://127.0.0.1:$port"
wait_ok "$base/readyz"
validate "$base/openapi.json"
token=$(curl -fsS -X POST "$base/auth/login" -H 'content-type: application/json' \
  -d '{"username":"schemathesis","role":"admin"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

# /connect is a WebSocket upgrade and /metrics is text: both are covered by
# other tests. Revocation is too (services/telepath/tests/telepath/revoke.rs):
# the stateful phase would revoke the run's own token (its id comes back
# in `created_by`), and every later call would rightly get 401.
# ensure_resource_availability (ST302) is off: the stateful phase may make
# the creator of a room leave it, after which the room's participants are
# rightly hidden from them (404), which the check reads as a lost resource.
"$st" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --checks all \
  --exclude-checks ensure_resource_availability \
  -H "Authorization: Bearer $token" \
  --exclude-path /connect --exclude-path /metrics \
  --exclude-path '/admin/users/{id}/revoke' \
  --seed "${SCHEMATHESIS_SEED:-1}" --no-color

# The server API with a key holding every scope (the run above has only a
# user token there, which /api/ refuses with 401).
key=$(curl -fsS -X POST "$base/admin/api-keys" -H "Authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"name":"schemathesis","scopes":["publish","presence","rooms","users","webhooks"]}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
"$st" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
  --checks all \
  --exclude-checks ensure_resource_availability \
  -H "Authorization: Bearer $key" \
  --include-path-regex '^/api/' \
  --seed "${SCHEMATHESIS_SEED:-1}" --no-color

# The api's internal routes, on a split api's internal listener.
redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$dir" \
  --logfile "$dir/redis.log" &
pids+=($!)
api_port=$(free_port)
internal_port=$(free_port)
REDIS_URL="redis://127.0.0.1:$redis_port" TELEPATH_LISTEN="127.0.0.1:$api_port" \
  TELEPATH_INTERNAL_LISTEN="127.0.0.1:$internal_port" DATABASE_URL="sqlite://$dir/internal.db" \
  TELEPATH_JWT_SECRET="$secret" TELEPATH_DEV_LOGIN=1 RUST_LOG=warn TELEPATH_IP_LOGIN_RATE_PER_S=0 TELEPATH_IP_ROOM_RATE_PER_S=0 \
  "$bin_dir/telepath-api" >"$dir/api.log" 2>&1 &
pids+=($!)
wait_ok "http://127.0.0.1:$internal_port/healthz"
validate "http://127.0.0.1:$internal_port/openapi.json"
internal=$(python3 -c 'import hmac, hashlib, sys
print(hmac.new(sys.argv[1].encode(), b"telepath internal token v2", hashlib.sha256).hexdigest())' "$secret")
"$st" --config-file scripts/schemathesis.toml run "http://127.0.0.1:$internal_port/openapi.json" \
  --checks all \
  --exclude-checks ensure_resource_availability \
  -H "X-Telepath-Internal: $internal" \
  --seed "${SCHEMATHESIS_SEED:-1}" --no-color
