#!/usr/bin/env bash
# Idle connections on one gateway (benchmark S2): a throwaway redis-server,
# presence, the api and one gateway (release builds, loopback, temp SQLite);
# telepath-load opens COUNT authenticated connections, CONCURRENCY
# handshakes at a time, holds them, and reads the gateway's resident memory.
# Prints each run's JSON and a Markdown table of medians.
#
# Usage: loadtest/bench-connections.sh [runs=3] [count=10000] [concurrency=200]
# TELEPATH_BIN_DIR runs the servers from another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
count=${2:-10000}
concurrency=${3:-200}

cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence -p telepath-loadtest --bins >&2
bin=${TELEPATH_BIN_DIR:-target/release}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 100); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; echo "$1 never ready" >&2; exit 1; }
# Each side needs a descriptor per connection.
ulimit -n "$(( count * 2 + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  rp=$(free_port); pp=$(free_port); ap=$(free_port); gp=$(free_port)
  export TELEPATH_JWT_SECRET=bench RUST_LOG=warn REDIS_URL="redis://127.0.0.1:$rp"
  redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
  sleep 0.3
  TELEPATH_LISTEN="127.0.0.1:$pp" "$bin/telepath-presence" 2>"$dir/presence.log" &
  TELEPATH_LISTEN="127.0.0.1:$ap" DATABASE_URL="sqlite://$dir/bench.db" \
    TELEPATH_PRESENCE_URL="http://127.0.0.1:$pp" "$bin/telepath-api" 2>"$dir/api.log" &
  TELEPATH_LISTEN="127.0.0.1:$gp" TELEPATH_NODE_ID=gw1 TELEPATH_API_URL="http://127.0.0.1:$ap" \
    TELEPATH_PRESENCE_URL="http://127.0.0.1:$pp" "$bin/telepath-gateway" 2>"$dir/gw.log" &
  gw=$!
  for url in "http://127.0.0.1:$pp" "http://127.0.0.1:$ap" "http://127.0.0.1:$gp"; do ready "$url"; done
  target/release/telepath-load connections --gateway "http://127.0.0.1:$gp" --count "$count" \
    --concurrency "$concurrency" --hold 6s --server-pid "$gw" >"$work/run$i.json"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json")" >&2
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
done

python3 - "$work" "$runs" "$count" "$concurrency" <<'PY'
import glob, json, statistics, sys
work, runs, count, concurrency = sys.argv[1:]
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/run*.json"))]
m = lambda f: statistics.median(f(r) for r in rs)
rng = lambda f: f"{min(f(r) for r in rs):.1f}-{max(f(r) for r in rs):.1f}"
print(f"runs={runs} count={count} concurrency={concurrency}\n")
print("| connections | opened | open after hold | handshakes/s (range) | handshake p50 ms | p99 ms | gateway RSS KiB per connection (range) | generator CPU % |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {count} | {m(lambda r: r['opened']):.0f} | {m(lambda r: r['open_after_hold']):.0f} | "
      f"{m(lambda r: r['handshakes_per_s']):.0f} ({rng(lambda r: r['handshakes_per_s'])}) | "
      f"{m(lambda r: r['handshake']['p50_ms']):.2f} | {m(lambda r: r['handshake']['p99_ms']):.2f} | "
      f"{m(lambda r: r['server_rss_per_connection_kib']):.1f} ({rng(lambda r: r['server_rss_per_connection_kib'])}) | "
      f"{m(lambda r: r['generator_cpu_percent']):.0f} |")
PY
