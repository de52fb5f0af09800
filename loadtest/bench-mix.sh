#!/usr/bin/env bash
# Messages that live (issue 20) in a two-gateway cluster (loadtest/lib/cluster.sh:
# a throwaway redis-server, presence, the api and two gateways, release
# builds, loopback, temp SQLite): `telepath-load mix`, ROOMS rooms of MEMBERS
# members spread over both gateways, ACTIVE of them per room issuing RATE
# ops/s per room in all: 70% send, 15% react toggles, 10% read, 5% edit
# (MIX=send=..,react=..,read=..,edit=..,delete=.. changes it). Prints each
# run's JSON and Markdown tables of medians: per op, ack latency; in all,
# ops/s, deliveries/s, delivery latency, what went wrong (summed over the
# runs) and the server processes' CPU seconds per 1000 ops. Exits non-zero
# when a run failed (a lost, repeated or out-of-order seq, a refused or
# unanswered op, a log mismatch).
#
# Usage: loadtest/bench-mix.sh [runs=3] [duration=10s] [rate=20 per room] [members=20] [rooms=10] [active=5]
# TELEPATH_BIN_DIR runs the servers from another build; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
rate=${3:-20}
members=${4:-20}
rooms=${5:-10}
active=${6:-5}
mix=${MIX:-send=70,react=15,read=10,edit=5}
target=${CARGO_TARGET_DIR:-target}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
export TELEPATH_BIN_DIR=${TELEPATH_BIN_DIR:-$target/release}
load=$target/release/telepath-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

FAILED=0
for i in $(seq "$runs"); do
  dir=$(mktemp -d -p "$work")
  cluster_start "$dir" 2
  before=$(cluster_cpu)
  "$load" mix --api "$API_URL" --gateways "$GATEWAY_URLS" --rooms "$rooms" --members "$members" \
    --active "$active" --rate "$rate" --duration "$duration" --mix "$mix" >"$work/run$i.json" || FAILED=$((FAILED + 1))
  awk -v a="$(cluster_cpu)" -v b="$before" 'BEGIN { print a - b }' >"$work/cpu$i.txt"
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json") server_cpu_s=$(cat "$work/cpu$i.txt")" >&2
  cluster_stop
done

python3 - "$work" "$runs" "$duration" "$rate" "$members" "$rooms" "$active" "$mix" <<'PY'
import sys
sys.path.insert(0, "loadtest/lib")
from runs import load, median, spread
work, runs, duration, rate, members, rooms, active, mix = sys.argv[1:]
rs = load(work)
if not rs:
    sys.exit("no run printed a summary")
for i, r in enumerate(rs, 1):
    r["server_cpu_s"] = float(open(f"{work}/cpu{i}.txt").read())
print(f"runs={runs} duration={duration} rooms={rooms} x {members} members over 2 gateways, "
      f"{active} active per room, {rate} ops/s per room, mix {mix}\n")
print("| op | acked/s | p50 ms | p95 ms | p99 ms (range) | max ms | refused | unanswered |")
print("|---|---|---|---|---|---|---|---|")
for op in ("send", "react", "read", "edit", "delete"):
    have = [r for r in rs if op in r["ops"]]
    if not have:
        continue
    at = lambda k: (lambda r: r["ops"][op]["ack"][k])
    print(f"| `{op}` | {median(have, lambda r: r['ops'][op]['acked_per_s']):.1f} | {median(have, at('p50_ms')):.2f} | "
          f"{median(have, at('p95_ms')):.2f} | {median(have, at('p99_ms')):.2f} ({spread(have, at('p99_ms'))}) | "
          f"{median(have, at('max_ms')):.2f} | {sum(r['ops'][op]['refused'] for r in have)} | "
          f"{sum(r['ops'][op]['no_reply'] for r in have)} |")
codes = {}
for r in rs:
    for code, n in r["refused_by_code"].items():
        codes[code] = codes.get(code, 0) + n
d = lambda k: (lambda r: r["send_to_delivery"][k])
print(f"\nops/s {median(rs, lambda r: r['ops_per_s']):.0f} ({spread(rs, lambda r: r['ops_per_s'], '.0f')}), "
      f"all ops p50/p95/p99 {median(rs, lambda r: r['ack_all']['p50_ms']):.2f}/{median(rs, lambda r: r['ack_all']['p95_ms']):.2f}/"
      f"{median(rs, lambda r: r['ack_all']['p99_ms']):.2f} ms; deliveries/s {median(rs, lambda r: r['deliveries_per_s']):.0f}, "
      f"send to delivery p50/p99 {median(rs, d('p50_ms')):.2f}/{median(rs, d('p99_ms')):.2f} ms; "
      f"receipts {median(rs, lambda r: r['receipts']):.0f} per run")
print(f"lost {sum(r['lost'] for r in rs)}, duplicates {sum(r['duplicates'] for r in rs)}, "
      f"out of order {sum(r['out_of_order'] for r in rs)}, missed end {sum(r['missed_end'] for r in rs)}, "
      f"log mismatches {sum(r['log_mismatch'] for r in rs)}, refused {codes or 0}, "
      f"server CPU s per 1000 ops {median(rs, lambda r: r['server_cpu_s'] / max(r['ops_acked'], 1) * 1000):.2f}, "
      f"generator CPU {median(rs, lambda r: r['generator_cpu_percent']):.0f}%")
PY
if [ "$FAILED" -gt 0 ]; then echo "$FAILED of $runs runs failed (see their JSON above)" >&2; exit 1; fi
