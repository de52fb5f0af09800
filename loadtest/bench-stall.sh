#!/usr/bin/env bash
# Acks while Redis is stalled (issue 18, item 3): room-fanout on a
# two-gateway cluster (loadtest/lib/cluster.sh), ROOMS rooms at RATE msgs/s
# each, once with redis-server SIGSTOPped for STALL seconds from AT seconds
# in (then SIGCONT) and once without, alternating, RUNS times each. A
# committed message must be answered at once whatever Redis does (the api
# publishes from its outbox afterwards), so the stalled runs should ack
# every send with the same latency as the calm ones, and every member
# should still get every message once (gap repair and catch-up after the
# stall). Prints each run's JSON on stderr and a Markdown table of medians:
# sent, acked, refused (sent - acked: `unavailable` and the like), ack and
# delivery latency, lost and repeated deliveries.
#
# Usage: loadtest/bench-stall.sh [runs=3] [duration=30s] [rate=50] [rooms=10] [receivers=100]
#   env: AT=10 STALL=10 (seconds); TELEPATH_BIN_DIR runs the servers from
#   another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-30s}
rate=${3:-50}
rooms=${4:-10}
receivers=${5:-100}
at=${AT:-10}
stall=${STALL:-10}

# Two builds, as in bench-fanout.sh: the generator's `testing` feature must
# not reach the servers.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
. loadtest/lib/cluster.sh
trap 'kill -CONT "${REDIS_PID:-}" 2>/dev/null || true; cluster_stop 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

one_run() {
  local mode=$1 i=$2 dir gen
  dir=$(mktemp -d -p "$work")
  cluster_start "$dir" 2
  target/release/telepath-load room-fanout --api "$API_URL" --gateways "$GATEWAY_URLS" \
    --rooms "$rooms" --receivers "$receivers" --rate "$rate" --duration "$duration" >"$work/$mode$i.json" &
  gen=$!
  if [ "$mode" = stall ]; then
    # Members connect and join before the first send: count from then on.
    sleep "$(( at + 2 ))"
    kill -STOP "$REDIS_PID"
    sleep "$stall"
    kill -CONT "$REDIS_PID"
  fi
  wait "$gen" || echo "run $mode$i: the generator failed" >&2
  echo "run=$mode$i: $(tr -d '\n ' <"$work/$mode$i.json")" >&2
  cluster_stop
}

for i in $(seq "$runs"); do
  one_run stall "$i"
  one_run calm "$i"
done

python3 - "$work" "runs=$runs duration=$duration rooms=$rooms rate=$rate/s per room receivers=$receivers over 2 gateways; Redis SIGSTOPped ${stall}s from about ${at}s in" <<'PY'
import glob, json, statistics, sys
work, title = sys.argv[1:]
print(f"{title}\n")
print("| run | sent | acked | refused | ack p50 ms | ack p99 ms (range) | ack max ms | delivery p99 ms | delivery max ms | lost | duplicates |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ("calm", "stall"):
    rs = []
    for f in sorted(glob.glob(f"{work}/{mode}*.json")):
        try:
            rs.append(json.load(open(f)))
        except ValueError:
            pass
    if not rs:
        print(f"| {mode} | no run completed | | | | | | | | | |")
        continue
    m = lambda f: statistics.median(f(r) for r in rs)
    a = lambda k: (lambda r: r["send_to_ack"][k])
    d = lambda k: (lambda r: r["send_to_delivery"][k])
    print(f"| {mode} ({len(rs)}) | {m(lambda r: r['sent']):.0f} | {m(lambda r: r['acked']):.0f} | "
          f"{sum(r['sent'] - r['acked'] for r in rs)} | {m(a('p50_ms')):.2f} | "
          f"{m(a('p99_ms')):.2f} ({min(a('p99_ms')(r) for r in rs):.2f}-{max(a('p99_ms')(r) for r in rs):.2f}) | "
          f"{m(a('max_ms')):.1f} | {m(d('p99_ms')):.1f} | {m(d('max_ms')):.1f} | "
          f"{sum(r['lost'] for r in rs)} | {sum(r['duplicates'] for r in rs)} |")
PY
