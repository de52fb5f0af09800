#!/usr/bin/env bash
# A/B of two builds under one benchmark: runs SCRIPT one run at a time,
# alternating the servers of a baseline build (TELEPATH_BIN_DIR=BASELINE)
# and of this checkout, PAIRS times (ABBA order), so both see the same
# machine load.
# The load generator is always this checkout's. Prints each run's table
# row, labelled, grouped by build; every run's JSON goes to stderr.
#
# Usage: loadtest/bench-ab.sh BASELINE_BIN_DIR PAIRS SCRIPT [ARGS...]
#   e.g. loadtest/bench-ab.sh ../baseline/target/release 3 loadtest/bench-fanout.sh 10s 200 1000 10
# SCRIPT is a bench-*.sh that takes the number of runs first and honours
# TELEPATH_BIN_DIR (bench-fanout, bench-connections, bench-api).
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=$(cd "$1" && pwd)
pairs=$2
script=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The order within a pair alternates (baseline first in odd pairs, this
# checkout first in even ones): in one A/B the build doing strictly less
# work, always second, measured slower, so a fixed order may bias the ratio.
for i in $(seq "$pairs"); do
  if [ $((i % 2)) = 1 ]; then
    TELEPATH_BIN_DIR="$baseline" "$script" 1 "$@" >"$work/baseline$i.md"
    "$script" 1 "$@" >"$work/current$i.md"
  else
    "$script" 1 "$@" >"$work/current$i.md"
    TELEPATH_BIN_DIR="$baseline" "$script" 1 "$@" >"$work/baseline$i.md"
  fi
done

for build in baseline current; do
  echo "## $build"
  echo
  for i in $(seq "$pairs"); do
    # The table's header once, then each run's data row(s).
    if [ "$i" = 1 ]; then grep '^|' "$work/$build$i.md" | head -2; fi
    grep '^|' "$work/$build$i.md" | tail -n +3
  done
  echo
done
