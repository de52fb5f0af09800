#!/usr/bin/env bash
# Reconnect storm (benchmark S5) on a two-gateway cluster (loadtest/lib/cluster.sh):
# CLIENTS members of one room while a publisher sends RATE msgs/s; three
# seconds in, every client drops its connection at once and comes back with
# `join` + `since`. Prints each run's JSON and a Markdown table of medians.
#
# Usage: loadtest/bench-reconnect.sh [runs=3] [clients=2000] [rate=20] [jitter=0s]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
clients=${2:-2000}
rate=${3:-20}
jitter=${4:-0s}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh
ulimit -n "$(( clients * 4 + 4096 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  cluster_start "$dir" 2
  target/release/telepath-load reconnect --api "$API_URL" --gateways "$GATEWAY_URLS" \
    --clients "$clients" --rate "$rate" --duration 10s --storm-at 3s --jitter "$jitter" >"$work/run$i.json"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json")" >&2
  cluster_stop
done

python3 - "$work" "$runs" "$clients" "$rate" "$jitter" <<'PY'
import glob, json, statistics, sys
work, runs, clients, rate, jitter = sys.argv[1:]
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/run*.json"))]
m = lambda f: statistics.median(f(r) for r in rs)
rng = lambda f: f"{min(f(r) for r in rs):.2f}-{max(f(r) for r in rs):.2f}"
print(f"runs={runs} clients={clients} rate={rate}/s jitter={jitter} over 2 gateways\n")
print("| clients | back | failed | all back within s (range) | back p50 ms | back p99 ms | gaps | duplicates | recovered:false | generator CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|")
print(f"| {clients} | {m(lambda r: r['back']):.0f} | {sum(r['failed'] for r in rs)} | "
      f"{m(lambda r: r['all_back_s']):.2f} ({rng(lambda r: r['all_back_s'])}) | "
      f"{m(lambda r: r['back_latency']['p50_ms']):.1f} | {m(lambda r: r['back_latency']['p99_ms']):.1f} | "
      f"{sum(r['gaps'] for r in rs)} | {sum(r['duplicates'] for r in rs)} | {sum(r['unrecovered'] for r in rs)} | "
      f"{m(lambda r: r['generator_cpu_percent']):.0f} |")
PY
