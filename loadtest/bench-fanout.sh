#!/usr/bin/env bash
# Send-to-delivery latency of room messages in a two-gateway cluster:
# a throwaway redis-server, presence, the api and two gateways (release
# builds, loopback, temp SQLite). One publisher on gateway 1 sends at a fixed
# rate; receivers are spread over both gateways. Prints each run's JSON and a
# Markdown table of medians, with the CPU seconds the server processes
# (redis-server, presence, api, gateways) used per million deliveries.
#
# Usage: loadtest/bench-fanout.sh [runs=3] [duration=10s] [rate=200] [receivers=50] [rooms=1]
# (rate is per room: rooms x rate messages/s are offered in all)
# TELEPATH_BIN_DIR runs the servers from another build (e.g. a baseline
# commit's target/release); the load generator is always this checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
rate=${3:-200}
receivers=${4:-50}
rooms=${5:-1}

cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  cluster_start "$dir" 2
  before=$(cluster_cpu)
  target/release/telepath-load room-fanout --api "$API_URL" --gateways "$GATEWAY_URLS" \
    --rooms "$rooms" --receivers "$receivers" --rate "$rate" --duration "$duration" >"$work/run$i.json"
  awk -v a="$(cluster_cpu)" -v b="$before" 'BEGIN { print a - b }' >"$work/cpu$i.txt"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json") server_cpu_s=$(cat "$work/cpu$i.txt")" >&2
  cluster_stop
done

python3 - "$work" "$runs" "$duration" "$rate" "$receivers" "$rooms" <<'PY'
import glob, json, statistics, sys
work, runs, duration, rate, receivers, rooms = sys.argv[1:]
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/run*.json"))]
for r, f in zip(rs, sorted(glob.glob(f"{work}/cpu*.txt"))):
    r["server_cpu_s"] = float(open(f).read())
m = lambda f: statistics.median(f(r) for r in rs)
spread = lambda f: f"{min(f(r) for r in rs):.2f}-{max(f(r) for r in rs):.2f}"
print(f"runs={runs} duration={duration} rooms={rooms} rate={rate}/s per room receivers={receivers} over 2 gateways\n")
print("| offered msgs/s | acked msgs/s | deliveries/s | p50 ms | p90 ms | p99 ms (range) | max ms | lost | duplicates | generator CPU % | server CPU s per 1M deliveries |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
lat = lambda k: (lambda r: r['send_to_delivery'][k])
print(f"| {int(rate) * int(rooms)} | {m(lambda r: r['acked_per_s']):.0f} | {m(lambda r: r['deliveries_per_s']):.0f} | "
      f"{m(lat('p50_ms')):.2f} | {m(lat('p90_ms')):.2f} | {m(lat('p99_ms')):.2f} ({spread(lat('p99_ms'))}) | "
      f"{m(lat('max_ms')):.2f} | {sum(r['lost'] for r in rs)} | {sum(r['duplicates'] for r in rs)} | "
      f"{m(lambda r: r['generator_cpu_percent']):.0f} | "
      f"{m(lambda r: r['server_cpu_s'] / max(r['delivered'], 1) * 1e6):.1f} |")
PY
