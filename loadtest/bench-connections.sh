#!/usr/bin/env bash
# Idle connections on one gateway (benchmark S2): a throwaway redis-server,
# presence, the api and one gateway (release builds, loopback, temp SQLite);
# telepath-load opens COUNT authenticated connections, CONCURRENCY
# handshakes at a time, holds them, and reads the gateway's resident memory.
# Prints each run's JSON and a Markdown table of medians.
#
# Usage: loadtest/bench-connections.sh [runs=3] [count=10000] [concurrency=200]
# TELEPATH_BIN_DIR runs the servers from another build. USERS=100 gives the
# connections to 100 users round robin (issue 24's shape; default: a user
# of its own for each).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
count=${2:-10000}
concurrency=${3:-200}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh
# Each side needs a descriptor per connection.
ulimit -n "$(( count * 2 + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  cluster_start "$dir" 1
  target/release/telepath-load connections --gateway "$GATEWAY_URLS" --count "$count" \
    --concurrency "$concurrency" --users "${USERS:-0}" --hold 6s --server-pid "${GATEWAY_PIDS[0]}" >"$work/run$i.json"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json")" >&2
  cluster_stop
done

python3 - "$work" "$runs" "$count" "$concurrency" <<'PY'
import glob, json, statistics, sys
work, runs, count, concurrency = sys.argv[1:]
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/run*.json"))]
m = lambda f: statistics.median(f(r) for r in rs)
rng = lambda f: f"{min(f(r) for r in rs):.1f}-{max(f(r) for r in rs):.1f}"
print(f"runs={runs} count={count} users={rs[0]['users']} concurrency={concurrency}\n")
print("| connections | opened | open after hold | handshakes/s (range) | handshake p50 ms | p99 ms | gateway RSS KiB per connection (range) | generator CPU % |")
print("|---|---|---|---|---|---|---|---|")
print(f"| {count} | {m(lambda r: r['opened']):.0f} | {m(lambda r: r['open_after_hold']):.0f} | "
      f"{m(lambda r: r['handshakes_per_s']):.0f} ({rng(lambda r: r['handshakes_per_s'])}) | "
      f"{m(lambda r: r['handshake']['p50_ms']):.2f} | {m(lambda r: r['handshake']['p99_ms']):.2f} | "
      f"{m(lambda r: r['server_rss_per_connection_kib']):.1f} ({rng(lambda r: r['server_rss_per_connection_kib'])}) | "
      f"{m(lambda r: r['generator_cpu_percent']):.0f} |")
PY
