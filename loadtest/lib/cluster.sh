# Sourced by the loadtest/*.sh scripts: a throwaway split cluster on
# loopback (redis-server, presence, the api with SQLite in a temp dir, N
# gateways), release builds from $bin (default target/release).
#
#   cluster_start DIR GATEWAYS   sets API_URL, PRESENCE_URL, GATEWAY_URLS
#                                (comma-separated), GATEWAY_PIDS and
#                                SERVER_PIDS (every process: redis-server,
#                                presence, api, then the gateways)
#   cluster_cpu                  CPU seconds the server processes used so far
#   cluster_stop                 stops them all (and the proxies)
#   bench_runs RUNS GATEWAYS WORK CMD...
#                                RUNS times: a fresh cluster, CMD (a function,
#                                so it sees API_URL & co.) with its stdout in
#                                WORK/runN.json, echoed to stderr; FAILED counts
#                                the runs whose CMD failed
#
# For chaos.sh and soak.sh:
#
#   CLUSTER_REDIS_PROXY=1        puts a `telepath-load proxy` between each
#                                gateway and Redis (PROXY_CONTROLS[i-1] is
#                                gateway i's control URL; the proxies stop by
#                                themselves after CLUSTER_PROXY_FOR, default 2h)
#   cluster_kill NAME [SIGNAL]   NAME: redis, presence, api or gwN; SIGKILL
#                                by default, and reaps it
#   cluster_restart NAME         starts it again on the same port (Redis
#                                empty, the api on the same database) and
#                                waits until it is up (non-zero if it is not)
#   cluster_ready SECS           waits until the api and every gateway answer
#                                /readyz (non-zero if not within SECS)
#   proxy_fault I PATH           sets gateway I's proxy fault (/none,
#                                /drop/to-client, /stall/to-client, /cut...)
#   cluster_bins WORK            builds the generator (and the servers when
#                                $bin lacks them), copies both into WORK/bin
#                                and points $bin and $load_bin there, so a
#                                rebuild during the run changes nothing
#   cluster_exit                 the EXIT trap: stops everything, removes
#                                $work unless $rc is not 0 or KEEP=1
#   cluster_watchdog SECS        after SECS, SIGKILLs whatever the cluster
#                                still runs (in case this script is killed
#                                before its EXIT trap)
#   proc_sample PID              "rss_kib fds threads" of a process
#   to_secs DURATION             90, 90s, 5m or 1h in seconds
#
# The servers log at CLUSTER_RUST_LOG (default warn) to DIR/<name>.log.

bin=${TELEPATH_BIN_DIR:-target/release}
load_bin=${TELEPATH_LOAD_BIN:-target/release/telepath-load}
PROXY_PIDS=()
GATEWAY_PIDS=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to SECS (default 10) for URL/readyz; non-zero if it never answers.
wait_ready() {
  local i
  for i in $(seq "$(( ${2:-10} * 10 ))"); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}
ready() { wait_ready "$1" 10 || { echo "$1 never ready" >&2; exit 1; }; }
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Resident KiB, open file descriptors and threads of a process.
proc_sample() {
  local rss threads fds
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
  fds=$(ls "/proc/$1/fd" 2>/dev/null | wc -l)
  echo "${rss:-0} ${fds:-0} ${threads:-0}"
}
to_secs() {
  case $1 in
    *h) echo $(( ${1%h} * 3600 )) ;;
    *m) echo $(( ${1%m} * 60 )) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

cluster_bins() {
  local work=$1 b
  cargo build --release --locked -p telepath-loadtest --bins >&2
  for b in telepath-api telepath-gateway telepath-presence; do
    if [ ! -x "$bin/$b" ]; then
      cargo build --release --locked -p telepath-api -p telepath-gateway -p telepath-presence --bins >&2
      break
    fi
  done
  mkdir -p "$work/bin" "$work/cluster"
  cp "$bin"/telepath-{api,gateway,presence} target/release/telepath-load "$work/bin/"
  bin=$work/bin
  load_bin=$work/bin/telepath-load
}

# The EXIT trap of chaos.sh and soak.sh: stops the cluster (a stopped Redis
# is continued first) and every job, then removes $work unless the run
# failed ($rc not 0) or KEEP=1.
cluster_exit() {
  kill -CONT "${REDIS_PID:-}" 2>/dev/null || true
  cluster_stop
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "${rc:-1}" = 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$work"; else echo "work dir kept: $work" >&2; fi
}

# The processes, by name; SERVER_PIDS is rebuilt from them.
cluster_pids() {
  local i
  SERVER_PIDS=("$REDIS_PID" "$PRESENCE_PID" "$API_PID")
  for i in "${!GATEWAY_PIDS[@]}"; do SERVER_PIDS+=("${GATEWAY_PIDS[$i]}"); done
  mkdir -p "$CLUSTER_DIR/pids"
  echo "$REDIS_PID" >"$CLUSTER_DIR/pids/redis"
  echo "$PRESENCE_PID" >"$CLUSTER_DIR/pids/presence"
  echo "$API_PID" >"$CLUSTER_DIR/pids/api"
  for i in "${!GATEWAY_PIDS[@]}"; do echo "${GATEWAY_PIDS[$i]}" >"$CLUSTER_DIR/pids/gw$((i + 1))"; done
  for i in "${!PROXY_PIDS[@]}"; do echo "${PROXY_PIDS[$i]}" >"$CLUSTER_DIR/pids/proxy$((i + 1))"; done
}

start_redis() {
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no --dir "$CLUSTER_DIR" \
    --logfile "$CLUSTER_DIR/redis.log" &
  REDIS_PID=$!
  local i
  if ! command -v redis-cli >/dev/null; then sleep 0.3; return 0; fi
  for i in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

start_presence() {
  TELEPATH_LISTEN="127.0.0.1:$PRESENCE_PORT" TELEPATH_INTERNAL_LISTEN="127.0.0.1:$PRESENCE_INTERNAL_PORT" \
    "$bin/telepath-presence" 2>>"$CLUSTER_DIR/presence.log" &
  PRESENCE_PID=$!
}

start_api() {
  TELEPATH_LISTEN="127.0.0.1:$API_PORT" TELEPATH_INTERNAL_LISTEN="127.0.0.1:$API_INTERNAL_PORT" \
    DATABASE_URL="sqlite://$CLUSTER_DIR/bench.db" \
    TELEPATH_IP_LOGIN_RATE_PER_S=0 TELEPATH_IP_ROOM_RATE_PER_S=0 \
    TELEPATH_PRESENCE_URL="$PRESENCE_INTERNAL_URL" "$bin/telepath-api" 2>>"$CLUSTER_DIR/api.log" &
  API_PID=$!
}

# Gateway I (1-based; node id gwI).
start_gateway() {
  local i=$1
  # A publisher is one connection and one user: lift the per-connection rate
  # limit (default 50/s) and raise the per-user budget (default 50/s; still
  # checked on every send, through leases from Redis).
  # Generators open up to 100 connections per user (S2): the per-user cap
  # (default 16) is raised, not lifted, so every connect is still admitted
  # by presence as in production.
  REDIS_URL="${GATEWAY_REDIS[$((i - 1))]}" TELEPATH_MAX_RATE_PER_S=100000 TELEPATH_USER_RATE_PER_S=100000 \
    TELEPATH_MAX_CONNS_PER_USER=1000 \
    TELEPATH_LISTEN="127.0.0.1:${GATEWAY_PORTS[$((i - 1))]}" TELEPATH_NODE_ID="gw$i" \
    TELEPATH_API_URL="$API_INTERNAL_URL" TELEPATH_PRESENCE_URL="$PRESENCE_INTERNAL_URL" \
    "$bin/telepath-gateway" 2>>"$CLUSTER_DIR/gw$i.log" &
  GATEWAY_PIDS[$((i - 1))]=$!
}

# A proxy between gateway I and Redis.
start_proxy() {
  local i=$1 cp addr=$CLUSTER_DIR/proxy$1.addr n
  cp=$(free_port)
  rm -f "$addr"
  "$load_bin" proxy --upstream "127.0.0.1:$REDIS_PORT" --control "127.0.0.1:$cp" --addr-file "$addr" \
    --for "${CLUSTER_PROXY_FOR:-2h}" >/dev/null 2>>"$CLUSTER_DIR/proxy$i.log" &
  PROXY_PIDS[$((i - 1))]=$!
  PROXY_CONTROLS[$((i - 1))]="http://127.0.0.1:$cp"
  for n in $(seq 50); do [ -s "$addr" ] && break; sleep 0.1; done
  [ -s "$addr" ] || { echo "proxy $i never listened" >&2; exit 1; }
  GATEWAY_REDIS[$((i - 1))]="redis://$(cat "$addr")"
}

cluster_start() {
  CLUSTER_DIR=$1
  local gateways=$2 i url
  REDIS_PORT=$(free_port); PRESENCE_PORT=$(free_port); API_PORT=$(free_port)
  PRESENCE_INTERNAL_PORT=$(free_port); API_INTERNAL_PORT=$(free_port)
  export TELEPATH_JWT_SECRET=bench RUST_LOG=${CLUSTER_RUST_LOG:-warn} REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  API_URL="http://127.0.0.1:$API_PORT"
  PRESENCE_URL="http://127.0.0.1:$PRESENCE_PORT"
  API_INTERNAL_URL="http://127.0.0.1:$API_INTERNAL_PORT"
  PRESENCE_INTERNAL_URL="http://127.0.0.1:$PRESENCE_INTERNAL_PORT"
  # Builds from before internal listeners (an A/B baseline) serve their
  # internal routes on their public port.
  if ! "$bin/telepath-api" --help 2>/dev/null | grep -q TELEPATH_INTERNAL_LISTEN; then
    API_INTERNAL_URL=$API_URL PRESENCE_INTERNAL_URL=$PRESENCE_URL
  fi
  SERVER_PIDS=(); GATEWAY_PIDS=(); GATEWAY_PORTS=(); GATEWAY_REDIS=(); GATEWAY_URLS=""
  PROXY_PIDS=(); PROXY_CONTROLS=()
  start_redis
  start_presence
  start_api
  for i in $(seq "$gateways"); do
    GATEWAY_PORTS[$((i - 1))]=$(free_port)
    GATEWAY_REDIS[$((i - 1))]=$REDIS_URL
    if [ "${CLUSTER_REDIS_PROXY:-0}" = 1 ]; then start_proxy "$i"; fi
    start_gateway "$i"
    GATEWAY_URLS="${GATEWAY_URLS:+$GATEWAY_URLS,}http://127.0.0.1:${GATEWAY_PORTS[$((i - 1))]}"
  done
  cluster_pids
  ready "$PRESENCE_URL"; ready "$API_URL"
  for url in ${GATEWAY_URLS//,/ }; do ready "$url"; done
}

# The pid of NAME (redis, presence, api, gwN).
cluster_pid() {
  case $1 in
    redis) echo "$REDIS_PID" ;;
    presence) echo "$PRESENCE_PID" ;;
    api) echo "$API_PID" ;;
    gw*) echo "${GATEWAY_PIDS[$((${1#gw} - 1))]}" ;;
  esac
}

cluster_kill() {
  local pid
  pid=$(cluster_pid "$1")
  kill "-${2:-KILL}" "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cluster_restart() {
  case $1 in
    redis) start_redis || return 1 ;;
    presence) start_presence; cluster_pids; wait_ready "$PRESENCE_URL" 30 || return 1 ;;
    api) start_api; cluster_pids; wait_ready "$API_URL" 30 || return 1 ;;
    gw*) start_gateway "${1#gw}"; cluster_pids; wait_ready "http://127.0.0.1:${GATEWAY_PORTS[$((${1#gw} - 1))]}" 30 || return 1 ;;
  esac
  cluster_pids
}

cluster_ready() {
  local deadline=$(( $(date +%s) + $1 )) url
  for url in "$API_URL" ${GATEWAY_URLS//,/ }; do
    wait_ready "$url" "$(( deadline - $(date +%s) > 0 ? deadline - $(date +%s) : 1 ))" || return 1
  done
}

proxy_fault() {
  curl -fsS -X POST "${PROXY_CONTROLS[$(($1 - 1))]}$2" >/dev/null
}

cluster_watchdog() {
  local dir=$CLUSTER_DIR
  (
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$1" &
    sleeper=$!
    wait "$sleeper"
    echo "cluster watchdog: $1 s are up, killing the cluster in $dir" >&2
    for f in "$dir"/pids/*; do kill -CONT "$(cat "$f")" 2>/dev/null; kill -KILL "$(cat "$f")" 2>/dev/null; done
  ) &
}

cluster_cpu() {
  local t=0 p
  for p in "${SERVER_PIDS[@]}"; do t=$(awk -v a="$t" -v b="$(cpu_of "$p")" 'BEGIN { print a + b }'); done
  echo "$t"
}

cluster_stop() {
  # A SIGSTOPped process acts on SIGTERM only once continued.
  kill -CONT "${SERVER_PIDS[@]}" 2>/dev/null || true
  # Gateways first: their drain reports to the api and presence.
  if [ "${#GATEWAY_PIDS[@]}" -gt 0 ]; then
    kill "${GATEWAY_PIDS[@]}" 2>/dev/null || true
    wait "${GATEWAY_PIDS[@]}" 2>/dev/null || true
  fi
  kill "${SERVER_PIDS[@]}" "${PROXY_PIDS[@]}" 2>/dev/null || true
  wait "${SERVER_PIDS[@]}" "${PROXY_PIDS[@]}" 2>/dev/null || true
  if [ -n "${CLUSTER_DIR:-}" ]; then rm -rf "$CLUSTER_DIR/pids"; fi
}

bench_runs() {
  local runs=$1 gateways=$2 work=$3 i dir
  shift 3
  FAILED=0
  for i in $(seq "$runs"); do
    dir=$(mktemp -d -p "$work")
    cluster_start "$dir" "$gateways"
    "$@" >"$work/run$i.json" || FAILED=$((FAILED + 1))
    echo "run=$i: $(tr -d '\n ' <"$work/run$i.json")" >&2
    cluster_stop
  done
}
