# Sourced by the loadtest/bench-*.sh scripts: a throwaway split cluster on
# loopback (redis-server, presence, the api with SQLite in a temp dir, N
# gateways), release builds from $bin (default target/release).
#
#   cluster_start DIR GATEWAYS   sets API_URL, PRESENCE_URL, GATEWAY_URLS
#                                (comma-separated), GATEWAY_PIDS and
#                                SERVER_PIDS (every process)
#   cluster_cpu                  CPU seconds the server processes used so far
#   cluster_stop                 stops them all
#   bench_runs RUNS GATEWAYS WORK CMD...
#                                RUNS times: a fresh cluster, CMD (a function,
#                                so it sees API_URL & co.) with its stdout in
#                                WORK/runN.json, echoed to stderr; FAILED counts
#                                the runs whose CMD failed

bin=${TELEPATH_BIN_DIR:-target/release}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ready() { for _ in $(seq 100); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; echo "$1 never ready" >&2; exit 1; }
# CPU seconds (user + system) a process has used so far.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0; }

cluster_start() {
  local dir=$1 gateways=$2 rp pp ap port i
  rp=$(free_port); pp=$(free_port); ap=$(free_port)
  export TELEPATH_JWT_SECRET=bench RUST_LOG=warn REDIS_URL="redis://127.0.0.1:$rp"
  SERVER_PIDS=(); GATEWAY_PIDS=(); GATEWAY_URLS=""
  redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
  SERVER_PIDS+=($!)
  sleep 0.3
  TELEPATH_LISTEN="127.0.0.1:$pp" "$bin/telepath-presence" 2>"$dir/presence.log" &
  SERVER_PIDS+=($!)
  TELEPATH_LISTEN="127.0.0.1:$ap" DATABASE_URL="sqlite://$dir/bench.db" \
    TELEPATH_PRESENCE_URL="http://127.0.0.1:$pp" "$bin/telepath-api" 2>"$dir/api.log" &
  SERVER_PIDS+=($!)
  API_URL="http://127.0.0.1:$ap"
  PRESENCE_URL="http://127.0.0.1:$pp"
  for i in $(seq "$gateways"); do
    port=$(free_port)
    # A publisher is one connection: lift the per-connection rate limit (default 50/s).
    TELEPATH_MAX_RATE_PER_S=100000 TELEPATH_LISTEN="127.0.0.1:$port" TELEPATH_NODE_ID="gw$i" \
      TELEPATH_API_URL="$API_URL" TELEPATH_PRESENCE_URL="http://127.0.0.1:$pp" \
      "$bin/telepath-gateway" 2>"$dir/gw$i.log" &
    SERVER_PIDS+=($!); GATEWAY_PIDS+=($!)
    GATEWAY_URLS="${GATEWAY_URLS:+$GATEWAY_URLS,}http://127.0.0.1:$port"
  done
  ready "$PRESENCE_URL"; ready "$API_URL"
  local url
  for url in ${GATEWAY_URLS//,/ }; do ready "$url"; done
}

cluster_cpu() {
  local t=0 p
  for p in "${SERVER_PIDS[@]}"; do t=$(awk -v a="$t" -v b="$(cpu_of "$p")" 'BEGIN { print a + b }'); done
  echo "$t"
}

cluster_stop() {
  kill "${SERVER_PIDS[@]}" 2>/dev/null || true
  wait "${SERVER_PIDS[@]}" 2>/dev/null || true
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
