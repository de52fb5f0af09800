#!/usr/bin/env bash
# Benchmark S1's side-by-side: the same room fan-out as bench-fanout.sh, by
# the same generator (telepath-load room-fanout --protocol socketio), against
# two Socket.IO 4 nodes with @socket.io/redis-adapter (loadtest/socketio,
# from the npm registry) and a throwaway redis-server. Prints each run's JSON
# and a Markdown table of medians in bench-fanout.sh's columns.
#
# Usage: loadtest/bench-socketio.sh [runs=3] [duration=10s] [rate=200] [receivers=1000] [rooms=10]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
rate=${3:-200}
receivers=${4:-1000}
rooms=${5:-10}

cargo build --release --locked -p telepath-loadtest --bins >&2
(cd loadtest/socketio && npm ci --no-audit --no-fund --silent >&2)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  rp=$(free_port); n1=$(free_port); n2=$(free_port)
  SERVER_PIDS=()
  redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
  SERVER_PIDS+=($!)
  sleep 0.3
  for port in "$n1" "$n2"; do
    REDIS_URL="redis://127.0.0.1:$rp" PORT="$port" node loadtest/socketio/server.js >"$dir/node$port.log" 2>&1 &
    SERVER_PIDS+=($!)
  done
  for port in "$n1" "$n2"; do
    for _ in $(seq 100); do grep -q listening "$dir/node$port.log" 2>/dev/null && break; sleep 0.1; done
  done
  before=$(cluster_cpu)
  target/release/telepath-load room-fanout --protocol socketio \
    --gateways "http://127.0.0.1:$n1,http://127.0.0.1:$n2" \
    --rooms "$rooms" --receivers "$receivers" --rate "$rate" --duration "$duration" >"$work/run$i.json"
  awk -v a="$(cluster_cpu)" -v b="$before" 'BEGIN { print a - b }' >"$work/cpu$i.txt"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json") server_cpu_s=$(cat "$work/cpu$i.txt")" >&2
  cluster_stop
done

python3 loadtest/lib/fanout_table.py "$work" "Socket.IO: runs=$runs duration=$duration rooms=$rooms rate=$rate/s per room receivers=$receivers over 2 nodes" "$rate" "$rooms"
