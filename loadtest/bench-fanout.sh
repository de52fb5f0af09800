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

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
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

python3 loadtest/lib/fanout_table.py "$work" "runs=$runs duration=$duration rooms=$rooms rate=$rate/s per room receivers=$receivers over 2 gateways" "$rate" "$rooms"
