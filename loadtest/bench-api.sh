#!/usr/bin/env bash
# Room messages acknowledged per second through the api alone (telepath-api
# + a throwaway redis-server + SQLite in a temp dir, benchmark S4): senders
# post batches the way gateways do (`POST /internal/messages`, one send per
# request by default), with group commit on (TELEPATH_COMMIT_BATCH=256, the
# default) and off (=1), alternating runs so both see the same machine
# load. Prints every run's JSON summary and a Markdown table of medians.
#
# Usage: loadtest/bench-api.sh [runs=5] [duration=10s] [concurrency=64]
# COMMIT_BATCHES (default "256 1") picks the group-commit settings to run;
# TELEPATH_BIN_DIR runs the api from another build (the generator is
# always this checkout's). WEBHOOK_URL registers a webhook for
# message.created to that URL before each run (private addresses allowed,
# no bound on its pending deliveries), e.g. http://127.0.0.1:9/ for one
# whose endpoint is down: what a webhook costs the message path.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
duration=${2:-10s}
concurrency=${3:-64}
batches=${COMMIT_BATCHES:-256 1}
bin=${TELEPATH_BIN_DIR:-target/release}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
# An explicit internal token: builds derive it differently (an A/B baseline).
export TELEPATH_INTERNAL_TOKEN=bench-internal-token
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

one_run() { # $1 = commit batch, $2 = output file
  local dir redis_port api_port internal_port internal_url redis_pid api_pid
  dir=$(mktemp -d -p "$work")
  redis_port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
  redis_pid=$!
  api_port=$(free_port)
  internal_port=$(free_port)
  TELEPATH_LISTEN="127.0.0.1:$api_port" TELEPATH_INTERNAL_LISTEN="127.0.0.1:$internal_port" REDIS_URL="redis://127.0.0.1:$redis_port" \
    DATABASE_URL="sqlite://$dir/bench.db" TELEPATH_JWT_SECRET=bench TELEPATH_DEV_LOGIN=1 \
    TELEPATH_DEV_ADMINS=bench-admin TELEPATH_WEBHOOK_ALLOW_PRIVATE=1 TELEPATH_WEBHOOK_MAX_PENDING=1000000 \
    TELEPATH_COMMIT_BATCH="$1" RUST_LOG=warn "$bin/telepath-api" 2>"$dir/api.log" &
  api_pid=$!
  # Builds from before internal listeners (an A/B baseline) serve the
  # internal routes on their public port.
  internal_url="http://127.0.0.1:$internal_port"
  "$bin/telepath-api" --help | grep -q TELEPATH_INTERNAL_LISTEN || internal_url="http://127.0.0.1:$api_port"
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  if [ -n "${WEBHOOK_URL:-}" ]; then
    local token key
    token=$(curl -fsS -X POST "http://127.0.0.1:$api_port/auth/login" -H 'content-type: application/json' \
      -d '{"username":"bench-admin","role":"admin"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    key=$(curl -fsS -X POST "http://127.0.0.1:$api_port/admin/api-keys" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' -d '{"name":"bench","scopes":["webhooks"]}' \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    curl -fsS -X POST "http://127.0.0.1:$api_port/api/webhooks" -H "authorization: Bearer $key" \
      -H 'content-type: application/json' \
      -d "{\"url\":\"$WEBHOOK_URL\",\"events\":[\"message.created\"]}" >/dev/null
  fi
  TELEPATH_JWT_SECRET=bench target/release/telepath-load api-send --url "http://127.0.0.1:$api_port" \
    --internal-url "$internal_url" \
    --duration "$duration" --concurrency "$concurrency" --rooms 10 >"$2"
  kill "$api_pid" "$redis_pid"
  wait "$api_pid" "$redis_pid" 2>/dev/null || true
}

for i in $(seq "$runs"); do
  for batch in $batches; do
    out="$work/batch$batch-run$i.json"
    one_run "$batch" "$out"
    echo "commit_batch=$batch run=$i: $(tr -d '\n ' <"$out")" >&2
  done
done

python3 - "$work" "$runs" "$duration" "$concurrency" <<'PY'
import glob, json, statistics, sys
work, runs, duration, concurrency = sys.argv[1:]
print(f"runs={runs} duration={duration} concurrency={concurrency} rooms=10 body=100B\n")
print("| commit batch | acked msgs/s (median) | p50 ack ms | p99 ack ms | generator CPU % |")
print("|---|---|---|---|---|")
med = {}
for batch in ("256", "1"):
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/batch{batch}-run*.json"))]
    if not rs:
        continue
    m = lambda f: statistics.median(f(r) for r in rs)
    med[batch] = m(lambda r: r["acked_per_s"])
    print(f"| {batch} | {med[batch]:.0f} | {m(lambda r: r['ack_latency']['p50_ms']):.2f} | "
          f"{m(lambda r: r['ack_latency']['p99_ms']):.2f} | {m(lambda r: r['generator_cpu_percent']):.0f} |")
if "256" in med and "1" in med:
    print(f"\ngroup commit / one commit per message: {med['256'] / med['1']:.2f}x")
PY
