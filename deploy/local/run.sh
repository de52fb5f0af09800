#!/usr/bin/env bash
# The compose topology as plain processes, without Docker: redis-server,
# the api (SQLite), presence, three gateways and HAProxy in front, with the
# same HAProxy routing as docker-compose.yml (deploy/haproxy/haproxy.cfg),
# plus Prometheus scraping all of them when `prometheus` is installed, with
# the same alert rules (deploy/prometheus/alerts.yml).
#
#   deploy/local/run.sh                 # LB on 127.0.0.1:8080; Ctrl-C stops everything
#
# Everything binds loopback only. The load balancer listens on
# TELEPATH_LB_PORT (default 8080) for HTTP and WS, and on
# TELEPATH_LB_TLS_PORT (default 8443) for HTTPS and WSS, with a throwaway
# self-signed certificate made for this run (tls/cert.pem in the state
# directory: trust that file, e.g. `curl --cacert`); every other process
# gets a free port.
# It runs in the foreground and stops every process it started on SIGINT or
# SIGTERM (gateways drain: clients get `bye` restart and close 1012).
#
# Settings (environment):
#   TELEPATH_LB_PORT          load balancer port (default 8080)
#   TELEPATH_LB_TLS_PORT      load balancer's TLS port (default 8443)
#   TELEPATH_GATEWAYS         number of gateways (default 3)
#   TELEPATH_BIN_DIR          where the binaries are; unset: target/release,
#                             built first with `cargo build --release`
#   TELEPATH_LOCAL_DIR        state directory (SQLite, logs, generated configs,
#                             topology.env); default: a new temporary directory
#   TELEPATH_JWT_SECRET       token secret (default: a random one, written to
#                             topology.env; mint tokens with `telepath token`)
#   TELEPATH_DEV_LOGIN        dev login on the api (default 1 here, 0 in compose)
#   TELEPATH_TRUSTED_PROXIES  whose X-Forwarded-For is believed (default
#                             loopback: HAProxy here)
#   TELEPATH_LOCAL_PROMETHEUS 0 to skip Prometheus (default: start it if installed)
#   TELEPATH_LOCAL_SCRAPE     Prometheus scrape interval (default 5s)
#   TELEPATH_LOCAL_MAX_SECS   stop by itself after this many seconds (default: never)
#   TELEPATH_LOCAL_WATCH_PID  stop by itself when this process is gone
# Anything else in the environment (RUST_LOG, TELEPATH_HEARTBEAT_MS,
# TELEPATH_LOG_FORMAT, OTEL_EXPORTER_OTLP_ENDPOINT, ...) reaches every service.
#
# When everything is ready it writes $TELEPATH_LOCAL_DIR/topology.env (every
# URL and pid, READY=1 last) and prints a summary.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lb_port="${TELEPATH_LB_PORT:-8080}"
lb_tls_port="${TELEPATH_LB_TLS_PORT:-8443}"
gateways="${TELEPATH_GATEWAYS:-3}"
state="${TELEPATH_LOCAL_DIR:-$(mktemp -d -t telepath-local.XXXXXX)}"
max_secs="${TELEPATH_LOCAL_MAX_SECS:-0}"
watch_pid="${TELEPATH_LOCAL_WATCH_PID:-}"
scrape="${TELEPATH_LOCAL_SCRAPE:-5s}"
export TELEPATH_DEV_LOGIN="${TELEPATH_DEV_LOGIN:-1}"
# HAProxy runs here and appends X-Forwarded-For: trust loopback's.
export TELEPATH_TRUSTED_PROXIES="${TELEPATH_TRUSTED_PROXIES:-127.0.0.1,::1}"
if [ -z "${TELEPATH_JWT_SECRET:-}" ]; then
  TELEPATH_JWT_SECRET="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
fi
export TELEPATH_JWT_SECRET
mkdir -p "$state/logs" "$state/redis"

log() { printf '[run.sh] %s\n' "$*"; }
die() { log "error: $*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
need() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  log "installing $pkg"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 || die "$cmd is still missing after installing $pkg"
}
need redis-server redis-server
need haproxy haproxy
need openssl openssl

if [ -z "${TELEPATH_BIN_DIR:-}" ]; then
  log "building release binaries (cargo build --release)"
  (cd "$repo" && cargo build --release --locked -q \
    -p telepath-api -p telepath-presence -p telepath-gateway)
  bin_dir="$repo/target/release"
else
  bin_dir="$TELEPATH_BIN_DIR"
fi
for b in telepath-api telepath-presence telepath-gateway; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
done

# --- ports and processes ---------------------------------------------------

# A port nothing listens on right now (the services bind it a moment later),
# below the kernel's ephemeral range so outgoing connections never hold it.
taken=" $lb_port $lb_tls_port "
low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
# Sets $port (not a subshell: the ports handed out are remembered).
free_port() {
  local p
  while :; do
    p=$(( 10000 + RANDOM % (low - 10000) ))
    case "$taken" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      taken="$taken$p "
      port=$p
      return
    fi
  done
}

# The HTTP status of GET $2 on 127.0.0.1:$1, or nothing (no curl needed).
http_status() {
  local line
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS=' ' read -r -t 2 _ line _ <&3 || true
  exec 3>&- 3<&-
  echo "$line"
}

pids=()   # in start order; stopped in reverse
names=()
start() { # name, then the command
  local name=$1
  shift
  "$@" >>"$state/logs/$name.log" 2>&1 &
  pids+=("$!")
  names+=("$name")
}

# Waits until the last started process answers 200 on GET $2 at port $1;
# fails (status 1) at once if that process died, and gives up after 60 s.
wait_ready() { # port path
  local pid=${pids[-1]} name=${names[-1]} i
  for i in $(seq 1 600); do
    [ "$(http_status "$1" "$2" 2>/dev/null)" = "200" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  tail -n 20 "$state/logs/$name.log" >&2 || true
  die "$name did not become ready on port $1 within 60 s (see $state/logs/$name.log)"
}

# Starts a Telepath service on a free port, its internal listener
# (TELEPATH_INTERNAL_LISTEN: the /internal/ routes other services call) on
# another, and waits for its /readyz; when it dies at start-up (another
# process took a port meanwhile), it tries again on other ports. Sets $port
# and $internal_port.
serve() { # name, binary, then environment assignments
  local name=$1 bin=$2 attempt
  shift 2
  for attempt in 1 2 3; do
    if [ -n "${next_internal_port:-}" ]; then
      internal_port=$next_internal_port
    else
      free_port
      internal_port=$port
    fi
    free_port
    start "$name" env TELEPATH_LISTEN="127.0.0.1:$port" \
      TELEPATH_INTERNAL_LISTEN="127.0.0.1:$internal_port" "$@" "$bin_dir/$bin"
    wait_ready "$port" /readyz && return 0
    log "$name exited at start-up (attempt $attempt):"
    tail -n 5 "$state/logs/$name.log" >&2 || true
    unset 'pids[-1]' 'names[-1]'
  done
  die "$name could not start (see $state/logs/$name.log)"
}

stopping=0
stop_all() {
  [ "$stopping" -eq 1 ] && return
  stopping=1
  trap - INT TERM
  log "stopping"
  local i pid
  for (( i=${#pids[@]}-1; i>=0; i-- )); do
    pid=${pids[$i]}
    kill -TERM "$pid" 2>/dev/null || continue
    # Each process exits within its drain deadline; then it is killed.
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  log "stopped (state kept in $state)"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

# Redis answers no HTTP: it is up once it accepts connections.
redis_up=0
for attempt in 1 2 3; do
  free_port
  start redis redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --client-output-buffer-limit "pubsub 64mb 16mb 60" --dir "$state/redis" --logfile ""
  for i in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { redis_up=1; break 2; }
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  log "redis-server did not start on port $port (attempt $attempt)"
  unset 'pids[-1]' 'names[-1]'
done
[ "$redis_up" -eq 1 ] || die "redis-server could not start (see $state/logs/redis.log)"
export REDIS_URL="redis://127.0.0.1:$port"

# The api's internal port is chosen first: presence reads the token
# revocations there (TELEPATH_API_URL), and starts before the api.
free_port
api_internal_port=$port
serve presence telepath-presence TELEPATH_NODE_ID=presence \
  TELEPATH_API_URL="http://127.0.0.1:$api_internal_port"
presence_port=$port
presence_url="http://127.0.0.1:$presence_port"
presence_internal_url="http://127.0.0.1:$internal_port"
next_internal_port=$api_internal_port serve api telepath-api TELEPATH_NODE_ID=api \
  DATABASE_URL="sqlite://$state/telepath.db" TELEPATH_PRESENCE_URL="$presence_internal_url"
api_port=$port
api_url="http://127.0.0.1:$api_port"
api_internal_url="http://127.0.0.1:$internal_port"

gw_ports=()
for i in $(seq 1 "$gateways"); do
  serve "gw$i" telepath-gateway TELEPATH_NODE_ID="gw$i" \
    TELEPATH_API_URL="$api_internal_url" TELEPATH_PRESENCE_URL="$presence_internal_url"
  gw_ports+=("$port")
done

# --- HAProxy: the shared frontends, and backends for these processes -------

# A self-signed certificate for 127.0.0.1 and localhost, valid for a week:
# an end-entity certificate (CA:FALSE), so clients that pin it as their
# only trust anchor accept it. HAProxy wants the key in the same PEM.
mkdir -p "$state/tls"
cat >"$state/tls/openssl.cnf" <<'CNF'
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = localhost
[ext]
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
CNF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
  -config "$state/tls/openssl.cnf" -keyout "$state/tls/key.pem" -out "$state/tls/cert.pem" \
  2>"$state/logs/openssl.log" || die "openssl could not make a certificate (see $state/logs/openssl.log)"
cat "$state/tls/cert.pem" "$state/tls/key.pem" >"$state/tls/haproxy.pem"

free_port
lb_metrics_port=$port
{
  echo "# Written by deploy/local/run.sh: the backends of this topology."
  echo "backend gateways"
  echo "    balance leastconn"
  echo "    option httpchk GET /readyz"
  echo "    http-check expect status 200"
  for i in $(seq 1 "$gateways"); do
    echo "    server gw$i 127.0.0.1:${gw_ports[$((i-1))]} check"
  done
  echo "backend presence"
  echo "    option httpchk GET /readyz"
  echo "    http-check expect status 200"
  echo "    server presence 127.0.0.1:$presence_port check"
  echo "backend api"
  echo "    option httpchk GET /readyz"
  echo "    http-check expect status 200"
  echo "    server api 127.0.0.1:$api_port check"
} >"$state/haproxy-backends.cfg"
# Two descriptors per proxied connection, and some to spare.
fds=$(ulimit -n)
[ "$fds" = "unlimited" ] && fds=1048576
maxconn=$(( (fds - 200) / 2 ))
[ "$maxconn" -gt 100000 ] && maxconn=100000
start haproxy env TELEPATH_LB_BIND="127.0.0.1:$lb_port" \
  TELEPATH_LB_TLS_BIND="127.0.0.1:$lb_tls_port" TELEPATH_LB_TLS_CERT="$state/tls/haproxy.pem" \
  TELEPATH_LB_METRICS_BIND="127.0.0.1:$lb_metrics_port" TELEPATH_LB_MAXCONN="$maxconn" \
  haproxy -db -f "$repo/deploy/haproxy/haproxy.cfg" -f "$state/haproxy-backends.cfg"
wait_ready "$lb_port" /healthz || die "haproxy exited (see $state/logs/haproxy.log)"
wait_ready "$lb_metrics_port" /healthz || die "haproxy exited (see $state/logs/haproxy.log)"

# --- Prometheus (optional) ---------------------------------------------------

prometheus_url=""
if [ "${TELEPATH_LOCAL_PROMETHEUS:-auto}" != "0" ] && command -v prometheus >/dev/null 2>&1; then
  free_port
  prom_port=$port
  {
    echo "# Written by deploy/local/run.sh: deploy/prometheus/prometheus.yml with this topology's ports."
    echo "global: {scrape_interval: $scrape, evaluation_interval: $scrape}"
    echo "rule_files: ['$repo/deploy/prometheus/alerts.yml']"
    echo "scrape_configs:"
    echo "  - {job_name: api, static_configs: [{targets: ['127.0.0.1:$api_port']}]}"
    echo "  - {job_name: presence, static_configs: [{targets: ['127.0.0.1:$presence_port']}]}"
    targets=$(printf "'127.0.0.1:%s', " "${gw_ports[@]}")
    echo "  - {job_name: gateway, static_configs: [{targets: [${targets%, }]}]}"
    echo "  - {job_name: haproxy, static_configs: [{targets: ['127.0.0.1:$lb_metrics_port']}]}"
  } >"$state/prometheus.yml"
  start prometheus prometheus --config.file="$state/prometheus.yml" \
    --storage.tsdb.path="$state/prometheus" --web.listen-address="127.0.0.1:$prom_port"
  wait_ready "$prom_port" /-/ready || die "prometheus exited (see $state/logs/prometheus.log)"
  prometheus_url="http://127.0.0.1:$prom_port"
fi

# --- ready -----------------------------------------------------------------

pid_of() { local i; for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && echo "${pids[$i]}"; done; }
{
  echo "TELEPATH_URL=http://127.0.0.1:$lb_port"
  echo "TELEPATH_TLS_URL=https://127.0.0.1:$lb_tls_port"
  echo "TLS_CERT=$state/tls/cert.pem"
  echo "LB_METRICS_URL=http://127.0.0.1:$lb_metrics_port"
  echo "REDIS_URL=$REDIS_URL"
  echo "API_URL=$api_url"
  echo "API_INTERNAL_URL=$api_internal_url"
  echo "API_PID=$(pid_of api)"
  echo "PRESENCE_URL=$presence_url"
  echo "PRESENCE_INTERNAL_URL=$presence_internal_url"
  echo "PRESENCE_PID=$(pid_of presence)"
  echo "GATEWAYS=$gateways"
  for i in $(seq 1 "$gateways"); do
    echo "GATEWAY_${i}_URL=http://127.0.0.1:${gw_ports[$((i-1))]}"
    echo "GATEWAY_${i}_PID=$(pid_of "gw$i")"
  done
  echo "HAPROXY_PID=$(pid_of haproxy)"
  echo "PROMETHEUS_URL=$prometheus_url"
  echo "TELEPATH_JWT_SECRET=$TELEPATH_JWT_SECRET"
  echo "READY=1"
} >"$state/topology.env.tmp"
mv "$state/topology.env.tmp" "$state/topology.env"

log "ready: Telepath on http://127.0.0.1:$lb_port ($gateways gateways behind HAProxy)"
log "  TLS:        https://127.0.0.1:$lb_tls_port (wss:// too; trust $state/tls/cert.pem)"
log "  gateways:   ${gw_ports[*]/#/127.0.0.1:}"
log "  api:        $api_url (internal $api_internal_url)   presence: $presence_url (internal $presence_internal_url)   redis: $REDIS_URL"
log "  LB metrics: http://127.0.0.1:$lb_metrics_port/metrics (stats at /stats)"
[ -n "$prometheus_url" ] && log "  prometheus: $prometheus_url (alerts at /alerts)"
log "  state, logs and topology.env in $state"
log "Ctrl-C stops everything"

started=$SECONDS
reported=()
while :; do
  sleep 1 &
  wait $! || true
  if [ "$max_secs" -gt 0 ] && [ $(( SECONDS - started )) -ge "$max_secs" ]; then
    log "TELEPATH_LOCAL_MAX_SECS reached"
    exit 0
  fi
  if [ -n "$watch_pid" ] && ! kill -0 "$watch_pid" 2>/dev/null; then
    log "process $watch_pid is gone"
    exit 0
  fi
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null && [[ " ${reported[*]} " != *" $i "* ]]; then
      log "${names[$i]} (pid ${pids[$i]}) exited; the rest keep running"
      reported+=("$i")
    fi
  done
done
