#!/usr/bin/env bash
# A client's REST mix on a two-gateway cluster (loadtest/lib/cluster.sh):
# CONCURRENCY users loop over rooms, joins, history pages (limit, before,
# after), participants, presence and pending DMs while a writer sends 20
# msgs/s to the shared room over WebSocket. With RATE, iterations start at
# RATE per second (open loop) instead of one at a time per user. Prints each
# run's JSON and a Markdown table of medians per route (p99 range in
# brackets, errors summed over the runs); exits non-zero when a run had an
# unexpected answer.
#
# Usage: loadtest/bench-rest.sh [runs=3] [duration=10s] [concurrency=8] [rate=closed loop]
# TELEPATH_BIN_DIR runs the servers from another build.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
concurrency=${3:-8}
rate=${4:-}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
. loadtest/lib/cluster.sh

one_run() {
  target/release/telepath-load rest --api "$API_URL" --presence "$PRESENCE_URL" --gateways "$GATEWAY_URLS" \
    --concurrency "$concurrency" ${rate:+--rate "$rate"} --duration "$duration"
}
bench_runs "$runs" 2 "$work" one_run

python3 - "$work" "$runs" "$duration" "$concurrency" "${rate:-closed loop}" <<'PY'
import sys
sys.path.insert(0, "loadtest/lib")
from runs import load, median, spread, total
work, runs, duration, concurrency, rate = sys.argv[1:]
rs = load(work)
print(f"runs={runs} duration={duration} users={concurrency} iterations/s={rate} writer 20 msgs/s\n")
print("| route | requests/s | p50 ms | p90 ms | p99 ms (range) | max ms | errors |")
print("|---|---|---|---|---|---|---|")
for route in rs[0]["routes"]:
    at = lambda k: (lambda r: r["routes"][route]["latency"][k])
    print(f"| `{route}` | {median(rs, lambda r: r['routes'][route]['requests'] / r['duration_s']):.1f} | "
          f"{median(rs, at('p50_ms')):.2f} | {median(rs, at('p90_ms')):.2f} | "
          f"{median(rs, at('p99_ms')):.2f} ({spread(rs, at('p99_ms'))}) | {median(rs, at('max_ms')):.2f} | "
          f"{sum(r['routes'][route]['errors'] for r in rs)} |")
statuses = {}
for r in rs:
    for status, n in r["errors_by_status"].items():
        statuses[status] = statuses.get(status, 0) + n
print(f"\niterations/s {median(rs, lambda r: r['iterations_per_s']):.1f} ({spread(rs, lambda r: r['iterations_per_s'], '.1f')}), "
      f"requests/s {median(rs, lambda r: r['requests_per_s']):.0f} ({spread(rs, lambda r: r['requests_per_s'], '.0f')}), "
      f"unexpected answers {total(rs, 'errors')}{f' {statuses}' if statuses else ''}, "
      f"generator CPU {median(rs, lambda r: r['generator_cpu_percent']):.0f}%")
PY
if [ "$FAILED" -gt 0 ]; then echo "$FAILED of $runs runs failed (see their JSON above)" >&2; exit 1; fi
