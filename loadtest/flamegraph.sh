#!/usr/bin/env bash
# A flame graph of one process during S1's fan-out (bench-fanout.sh's
# cluster and load): perf samples it with DWARF call graphs for a few
# seconds in the middle of the run, and inferno draws the SVG. Generic
# parameters are cut from the frame names so the graph stays readable.
#
# Usage: loadtest/flamegraph.sh <gateway|api|generator> OUT.svg [rate=200] [receivers=1000] [rooms=10]
# Needs perf (Debian's linux-perf) and inferno (`cargo install inferno`).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:?gateway, api or generator}
out=${2:?output .svg}
rate=${3:-200}
receivers=${4:-1000}
rooms=${5:-10}
for tool in perf inferno-collapse-perf inferno-flamegraph; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

cluster_start "$work" 2
target/release/telepath-load room-fanout --api "$API_URL" --gateways "$GATEWAY_URLS" \
  --rooms "$rooms" --receivers "$receivers" --rate "$rate" --duration 12s >"$work/run.json" &
generator=$!
case $what in
  gateway) pid=${GATEWAY_PIDS[0]} ;;
  api) pid=${SERVER_PIDS[2]} ;;
  generator) pid=$generator ;;
  *) echo "unknown process: $what" >&2; exit 1 ;;
esac
# The receivers connect and join first; sample once the load is on.
sleep 5
perf record -F 250 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" -- sleep 5 >&2 2>/dev/null
wait "$generator"
echo "$(tr -d '\n ' <"$work/run.json")" >&2
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf |
  python3 -c '
import re, sys
inner = re.compile(r"<[^<>]*>")
for line in sys.stdin:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = []
    for f in stack.split(";"):
        prev = None
        while prev != f:
            prev, f = f, inner.sub("", f)
        frames.append(f)
    print(";".join(frames), count)
' | inferno-flamegraph --title "telepath $what during room fan-out: $((rate * rooms)) msgs/s to $receivers members" \
  --minwidth 0.5 >"$out"
echo "wrote $out" >&2
