#!/usr/bin/env bash
# Direct messages on a two-gateway cluster (loadtest/lib/cluster.sh): PAIRS
# senders send COUNT DMs each, RATE per second, to their own recipient on the
# other gateway. Half the recipients are online from the start; the others
# connect once every DM was answered and drain their offline queue. Every
# recipient acks. Prints each run's JSON and a Markdown table of medians
# (ranges in brackets, correctness counts summed over the runs); exits
# non-zero when a run lost, repeated or refused a DM.
#
# Usage: loadtest/bench-dm.sh [runs=3] [pairs=50] [count=20] [rate=10]
# TELEPATH_BIN_DIR runs the servers from another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
pairs=${2:-50}
count=${3:-20}
rate=${4:-10}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

one_run() {
  target/release/telepath-load dm --api "$API_URL" --gateways "$GATEWAY_URLS" \
    --pairs "$pairs" --count "$count" --rate "$rate"
}
bench_runs "$runs" 2 "$work" one_run

python3 - "$work" "$runs" "$pairs" "$count" "$rate" <<'PY'
import sys
sys.path.insert(0, "loadtest/lib")
from runs import load, median, spread, total
work, runs, pairs, count, rate = sys.argv[1:]
rs = load(work)
lat = lambda part, k: (lambda r: r[part][k])
print(f"runs={runs} pairs={pairs} ({int(pairs) - int(pairs) // 2} online, {int(pairs) // 2} offline) "
      f"count={count} per sender rate={rate}/s per sender over 2 gateways\n")
print("| offered DMs/s | accepted DMs/s (range) | reply p50 ms | reply p99 ms | receipt p50 ms | receipt p99 ms (range) | offline drain p50 ms | drain p99 ms | all drained s (range) | missing | repeated | refused | wrong delivered | acked, still queued | generator CPU % |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
drained = lambda r: r["offline_all_drained_s"] or float("nan")
accepted = lambda r: r["accepted_per_s"]
print(f"| {int(pairs) * int(rate)} | {median(rs, accepted):.0f} ({spread(rs, accepted, '.0f')}) | "
      f"{median(rs, lat('send_to_reply', 'p50_ms')):.2f} | "
      f"{median(rs, lat('send_to_reply', 'p99_ms')):.2f} | {median(rs, lat('send_to_receipt', 'p50_ms')):.2f} | "
      f"{median(rs, lat('send_to_receipt', 'p99_ms')):.2f} ({spread(rs, lat('send_to_receipt', 'p99_ms'))}) | "
      f"{median(rs, lat('offline_drain', 'p50_ms')):.2f} | {median(rs, lat('offline_drain', 'p99_ms')):.2f} | "
      f"{median(rs, drained):.3f} ({spread(rs, drained, '.3f')}) | {total(rs, 'missing')} | {total(rs, 'repeated')} | "
      f"{total(rs, 'refused')} | {total(rs, 'wrong_delivered_flag')} | {total(rs, 'still_queued')} | "
      f"{median(rs, lambda r: r['generator_cpu_percent']):.0f} |")
PY
if [ "$FAILED" -gt 0 ]; then echo "$FAILED of $runs runs failed (see their JSON above)" >&2; exit 1; fi
