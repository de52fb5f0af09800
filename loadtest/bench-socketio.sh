#!/usr/bin/env bash
# Benchmark S1's side-by-side: the same room fan-out as bench-fanout.sh, by
# the same generator (telepath-load room-fanout --protocol socketio), against
# two Socket.IO nodes with their Redis adapter and a throwaway redis-server.
# Prints each run's JSON and a Markdown table of medians in bench-fanout.sh's
# columns.
#
# Usage: loadtest/bench-socketio.sh [runs=3] [duration=10s] [rate=200] [receivers=1000] [rooms=10]
#
# SOCKETIO_SERVER picks the nodes:
#   node (default)  Socket.IO 4 with @socket.io/redis-adapter
#                   (loadtest/socketio/server.js, from the npm registry)
#   socketioxide    socketioxide 0.18 with socketioxide-redis
#                   (loadtest/socketioxide, a crate outside the workspace,
#                   built here with its own lockfile into target/socketioxide)
# Both answer the same events the same way (see their sources).
# TELEPATH_LOAD_BIN=PATH runs that generator instead of building and running
# target/release/telepath-load.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
rate=${3:-200}
receivers=${4:-1000}
rooms=${5:-10}
server=${SOCKETIO_SERVER:-node}

case $server in
  node)
    name="Socket.IO"
    (cd loadtest/socketio && npm ci --no-audit --no-fund --silent >&2)
    node_cmd=(node loadtest/socketio/server.js)
    ;;
  socketioxide)
    name="socketioxide"
    cargo build --release --locked --manifest-path loadtest/socketioxide/Cargo.toml \
      --target-dir target/socketioxide >&2
    node_cmd=(target/socketioxide/release/socketioxide-baseline)
    ;;
  *) echo "SOCKETIO_SERVER must be node or socketioxide, not $server" >&2; exit 2 ;;
esac
if [ -n "${TELEPATH_LOAD_BIN:-}" ]; then
  load=$TELEPATH_LOAD_BIN
else
  cargo build --release --locked -p telepath-loadtest --bins >&2
  load=target/release/telepath-load
fi
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
    REDIS_URL="redis://127.0.0.1:$rp" PORT="$port" "${node_cmd[@]}" >"$dir/node$port.log" 2>&1 &
    SERVER_PIDS+=($!)
  done
  # Each node prints "... node on 127.0.0.1:PORT" once it listens (after
  # connecting to Redis).
  for port in "$n1" "$n2"; do
    for _ in $(seq 100); do grep -q "node on 127.0.0.1:$port" "$dir/node$port.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "node on 127.0.0.1:$port" "$dir/node$port.log" || { echo "node on port $port never listened:" >&2; cat "$dir/node$port.log" >&2; exit 1; }
  done
  before=$(cluster_cpu)
  "$load" room-fanout --protocol socketio \
    --gateways "http://127.0.0.1:$n1,http://127.0.0.1:$n2" \
    --rooms "$rooms" --receivers "$receivers" --rate "$rate" --duration "$duration" >"$work/run$i.json"
  awk -v a="$(cluster_cpu)" -v b="$before" 'BEGIN { print a - b }' >"$work/cpu$i.txt"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json") server_cpu_s=$(cat "$work/cpu$i.txt")" >&2
  cluster_stop
done

python3 loadtest/lib/fanout_table.py "$work" "$name: runs=$runs duration=$duration rooms=$rooms rate=$rate/s per room receivers=$receivers over 2 nodes" "$rate" "$rooms"
