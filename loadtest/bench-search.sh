#!/usr/bin/env bash
# Full-text search (issue 20, `GET /search`) over a big history: a release
# telepath-api on a throwaway redis-server and a SQLite file that
# lib/search_seed.py fills with MESSAGES room messages (50 rooms, 8 users,
# Zipf-distributed words; the api is started once first so that its
# migrations create the schema and the FTS5 index), then `telepath-load
# search` at CONCURRENCY for DURATION, RUNS times (the api restarted on the
# same database each time, after a 2 s warm-up that is not counted). Prints
# the seeding time and database size, each run's JSON, and a Markdown table
# of medians per query shape; exits non-zero when a run had an unexpected
# answer.
#
# Usage: loadtest/bench-search.sh [runs=3] [duration=10s] [concurrency=8] [messages=1000000]
# SEARCH_DB=path keeps the seeded database there and reuses it when it (and
# its .search.json) exist; FTS=triggers|rebuild|auto is passed to the
# seeder (--fts). TELEPATH_BIN_DIR runs the api from another build;
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
duration=${2:-10s}
concurrency=${3:-8}
messages=${4:-1000000}
target=${CARGO_TARGET_DIR:-target}

# Two builds: one would enable telepath-shared's `testing` feature (which the
# generator uses) in the servers too, and rebuild them unlike a plain build.
cargo build --release --locked -p telepath-api --bins >&2
cargo build --release --locked -p telepath-loadtest --bins >&2
bin=${TELEPATH_BIN_DIR:-$target/release}
load=$target/release/telepath-load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export TELEPATH_JWT_SECRET=bench RUST_LOG=warn
db=${SEARCH_DB:-$work/search.db}

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" --logfile "$work/redis.log" &
redis_pid=$!
api_pid=
api_start() {
  api_port=$(free_port)
  TELEPATH_LISTEN="127.0.0.1:$api_port" TELEPATH_INTERNAL_LISTEN="127.0.0.1:$(free_port)" \
    REDIS_URL="redis://127.0.0.1:$redis_port" DATABASE_URL="sqlite://$db" \
    "$bin/telepath-api" 2>>"$work/api.log" &
  api_pid=$!
  api_url="http://127.0.0.1:$api_port"
  for _ in $(seq 300); do curl -fsS "$api_url/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the api never got ready:" >&2; tail -n 20 "$work/api.log" >&2; exit 1
}
api_stop() { kill "$api_pid"; wait "$api_pid" 2>/dev/null || true; }

if [ -s "$db" ] && [ -s "$db.search.json" ]; then
  echo "reusing $db ($(du -m "$db" | cut -f1) MiB)" >&2
else
  # The api's migrations make the schema (and the search index), then it stops.
  rm -f "$db" "$db-wal" "$db-shm"
  api_start
  api_stop
  t0=$(date +%s)
  python3 loadtest/lib/search_seed.py --db "$db" --messages "$messages" --fts "${FTS:-auto}"
  echo "seeded $messages messages in $(( $(date +%s) - t0 )) s: $(du -m "$db" | cut -f1) MiB" >&2
fi

FAILED=0
for i in $(seq "$runs"); do
  api_start
  "$load" search --api "$api_url" --vocab "$db.search.json" --concurrency "$concurrency" --duration 2s >/dev/null 2>&1 || true
  "$load" search --api "$api_url" --vocab "$db.search.json" --concurrency "$concurrency" \
    --duration "$duration" >"$work/run$i.json" || FAILED=$((FAILED + 1))
  echo "run=$i: $(tr -d '\n ' <"$work/run$i.json")" >&2
  api_stop
done
kill "$redis_pid"

python3 - "$work" "$runs" "$duration" "$concurrency" <<'PY'
import sys
sys.path.insert(0, "loadtest/lib")
from runs import load, median, spread
work, runs, duration, concurrency = sys.argv[1:]
rs = load(work)
if not rs:
    sys.exit("no run printed a summary")
r0 = rs[0]
print(f"runs={runs} duration={duration} concurrency={concurrency} limit={r0['limit']}: "
      f"{r0['seeded_messages']} messages in {r0['rooms']} rooms, {r0['vocabulary']} words\n")
print("| query | queries/s | results/page | empty | p50 ms | p90 ms | p99 ms (range) | max ms | errors |")
print("|---|---|---|---|---|---|---|---|---|")
order = ["1 common", "1 rare", "2 common", "common + rare", "3 words", "prefix"]
shapes = sorted(r0["by_shape"], key=lambda k: (order.index(k.split(",")[0]) if k.split(",")[0] in order else 99, k))
for shape in shapes:
    b = lambda k: (lambda r: r["by_shape"][shape]["latency"][k])
    print(f"| {shape} | {median(rs, lambda r: r['by_shape'][shape]['queries'] / r['duration_s']):.1f} | "
          f"{median(rs, lambda r: r['by_shape'][shape]['mean_results']):.1f} | "
          f"{median(rs, lambda r: r['by_shape'][shape]['empty_share']) * 100:.0f}% | "
          f"{median(rs, b('p50_ms')):.2f} | {median(rs, b('p90_ms')):.2f} | "
          f"{median(rs, b('p99_ms')):.2f} ({spread(rs, b('p99_ms'))}) | {median(rs, b('max_ms')):.2f} | "
          f"{sum(r['by_shape'][shape]['errors'] for r in rs)} |")
a = lambda k: (lambda r: r["latency"][k])
print(f"\nall: {median(rs, lambda r: r['queries_per_s']):.0f} queries/s "
      f"({spread(rs, lambda r: r['queries_per_s'], '.0f')}), p50 {median(rs, a('p50_ms')):.2f} ms, "
      f"p99 {median(rs, a('p99_ms')):.2f} ms ({spread(rs, a('p99_ms'))}), errors {sum(r['errors'] for r in rs)}, "
      f"generator CPU {median(rs, lambda r: r['generator_cpu_percent']):.0f}%")
PY
if [ "$FAILED" -gt 0 ]; then echo "$FAILED of $runs runs failed (see their JSON above)" >&2; exit 1; fi
