#!/usr/bin/env bash
# Chaos: delivery while faults are injected, on a two-gateway cluster
# (loadtest/lib/cluster.sh) with a `telepath-load proxy` between each
# gateway and Redis. ROOMS rooms of MEMBERS members spread over both
# gateways and one publisher per room send RATE msgs/s in all
# (`telepath-load chaos`: members resume with `join` + `since` after every
# loss and dedupe by seq; publishers resend with the same `client_id` until
# acked), while FAULTS faults are injected one after the other, evenly over
# DURATION, taking turns through these kinds:
#
#   gateway_kill          SIGKILL a gateway (gw1 and gw2 in turn), restart
#                         it on its port DOWN s later
#   redis_stop            SIGSTOP redis-server for HOLD s, then SIGCONT
#   api_kill              SIGKILL the api, restart it DOWN s later on the
#                         same database
#   subscriber_blackhole  the proxy between a gateway (in turn) and Redis
#                         drops everything Redis sends that gateway (its
#                         subscription's messages and every reply) for HOLD s
#   redis_restart         SIGKILL redis-server, restart it empty DOWN s later
#
# After each fault, the next waits until the api and both gateways answer
# /readyz again (at most 30 s). Then publishing stops, members read up to
# each room's end marker, and every member's seqs and every publisher's
# acks are checked against the rooms' history (SQLite, read through the
# api), and SQLite itself is checked for holes and repeated client_ids.
# Prints a summary (faults by kind, acked messages, deliveries checked,
# holes, repeats, missing and lost messages, reconnects, recovered:false
# joins, each violation with the fault before it); exits non-zero on any
# hole, repeat or loss. The work dir (logs, database, fault log, JSON
# summary) is kept when the run fails or KEEP=1.
#
# Usage: loadtest/chaos.sh [DURATION=240s] [RATE=200] [FAULTS=24]
#   env: ROOMS=8 MEMBERS=20 HOLD=4 DOWN=1 SETTLE=60s KEEP=0
#        QUIET=2 (of the ROOMS, quiet ones: QUIET_RATE=0.1 msgs/s each, so a
#        message lost there is not followed at once by one exposing the
#        hole; RATE is shared by the others)
#        KINDS="gateway_kill redis_stop api_kill subscriber_blackhole redis_restart"
#        TELEPATH_BIN_DIR: the servers to run (default target/release; copied
#        into the work dir first, so a rebuild during the run changes nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib/cluster.sh
duration=$(to_secs "${1:-240s}")
rate=${2:-200}
faults=${3:-24}
rooms=${ROOMS:-8}
quiet=${QUIET:-2}
quiet_rate=${QUIET_RATE:-0.1}
members=${MEMBERS:-20}
hold=${HOLD:-4}
down=${DOWN:-1}
settle=${SETTLE:-60s}
read -r -a kinds <<<"${KINDS:-gateway_kill redis_stop api_kill subscriber_blackhole redis_restart}"

work=$(mktemp -d -t telepath-chaos.XXXXXX)
cluster_bins "$work"
rc=1
trap cluster_exit EXIT
ulimit -n "$(ulimit -Hn)"

limit=$(( duration * 3 + 900 ))
export CLUSTER_REDIS_PROXY=1 CLUSTER_PROXY_FOR=${limit}s
cluster_start "$work/cluster" 2
cluster_watchdog "$limit"
flog=$work/faults.log
: >"$flog"
log() { echo "$(date +%s%3N) $*" >>"$flog"; }
# Open connections per gateway (clients and publishers), from /metrics.
conns() {
  local i n out=""
  for i in "${!GATEWAY_PORTS[@]}"; do
    n=$(curl -fsS "http://127.0.0.1:${GATEWAY_PORTS[$i]}/metrics" 2>/dev/null \
      | awk '$1 == "telepath_gateway_connections_active" { print $2 }')
    out="$out gw$((i + 1))=${n:-down}"
  done
  echo "${out# }"
}
say() { echo "[chaos +$(( $(date +%s) - ${t0:-$(date +%s)} ))s] $*" >&2; }

"$load_bin" chaos --api "$API_URL" --gateways "$GATEWAY_URLS" --rooms "$rooms" --members "$members" \
  --rate "$rate" --quiet-rooms "$quiet" --quiet-rate "$quiet_rate" --stop-file "$work/stop" --ready-file "$work/ready" --faults "$flog" \
  --max-duration "${limit}s" --settle "$settle" >"$work/summary.json" 2>"$work/generator.log" &
gen=$!
for _ in $(seq 1800); do
  [ -s "$work/ready" ] && break
  kill -0 "$gen" 2>/dev/null || { cat "$work/generator.log" >&2; echo "the generator stopped during setup" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/ready" ] || { echo "the generator never started publishing" >&2; exit 1; }
t0=$(date +%s)
say "publishing: $rooms rooms x $members members ($quiet quiet), $rate msgs/s; $faults faults over ${duration}s"

inject() {
  local kind=$1 target=$2
  log start "$kind" "$target"
  case $kind in
    gateway_kill)
      cluster_kill "$target"; sleep "$down"
      cluster_restart "$target" || say "$target not ready 30 s after its restart" ;;
    redis_stop)
      kill -STOP "$REDIS_PID"; sleep "$hold"; kill -CONT "$REDIS_PID" ;;
    redis_restart)
      cluster_kill redis; sleep "$down"
      cluster_restart redis || say "redis-server did not come back" ;;
    api_kill)
      cluster_kill api; sleep "$down"
      cluster_restart api || say "the api not ready 30 s after its restart" ;;
    subscriber_blackhole)
      proxy_fault "${target#gw}" /drop/to-client || say "the proxy of $target did not answer"
      sleep "$hold"
      proxy_fault "${target#gw}" /none || say "the proxy of $target did not answer" ;;
    *) echo "unknown fault kind: $kind" >&2; exit 2 ;;
  esac
  log healed "$kind" "$target"
  if cluster_ready 30; then log ready "$kind" "$target"; else log unready "$kind" "$target"; say "not ready 30 s after healing $kind $target"; fi
}

sleep 5
start_ms=$(date +%s%3N)
slot_ms=$(( duration * 1000 / faults ))
declare -A seen=()
for i in $(seq "$faults"); do
  kind=${kinds[$(( (i - 1) % ${#kinds[@]} ))]}
  n=${seen[$kind]:-0}; seen[$kind]=$(( n + 1 ))
  case $kind in
    gateway_kill | subscriber_blackhole) target=gw$(( n % 2 + 1 )) ;;
    redis_stop | redis_restart) target=redis ;;
    api_kill) target=api ;;
    *) target=- ;;
  esac
  c=$(conns)
  log conns "$c"
  say "fault $i/$faults: $kind $target (connections: $c)"
  inject "$kind" "$target"
  kill -0 "$gen" 2>/dev/null || { say "the generator stopped"; break; }
  wait_ms=$(( start_ms + i * slot_ms - $(date +%s%3N) ))
  if [ "$wait_ms" -gt 0 ]; then sleep "$(awk -v m="$wait_ms" 'BEGIN { print m / 1000 }')"; fi
done
sleep 5
say "faults done; stopping the publishers, settling"
touch "$work/stop"
gen_rc=0
wait "$gen" || gen_rc=$?
gen=

# SQLite itself: per room, as many messages as its last seq, no seq or client_id twice.
sqlite3 -readonly "$CLUSTER_DIR/bench.db" \
  "SELECT room_id, count(*), max(seq), count(DISTINCT seq), count(DISTINCT client_id)
     FROM messages WHERE room_id IS NOT NULL GROUP BY room_id" >"$work/sqlite.txt" || true
cp "$CLUSTER_DIR"/*.log "$work/" 2>/dev/null || true

rc=0
python3 - "$work" "$gen_rc" <<'PY' || rc=$?
import json, sys, statistics
work, gen_rc = sys.argv[1], int(sys.argv[2])
try:
    s = json.load(open(f"{work}/summary.json"))
except Exception as e:
    print(f"no summary from the generator ({e}); its log:")
    print(open(f"{work}/generator.log").read()[-4000:])
    sys.exit(1)
print(json.dumps(s, indent=1), file=sys.stderr)
# Recovery: from the fault healed to the api and both gateways ready again.
events = [l.split() for l in open(f"{work}/faults.log") if l.strip()]
heal, rec, conns = {}, {}, {}
for at, ev, *rest in events:
    if ev == "conns":
        for c in rest:
            gw, n = c.split("=")
            conns.setdefault(gw, []).append(int(float(n)) if n != "down" else 0)
        continue
    kind = rest[0]
    if ev == "healed": heal = (kind, int(at))
    if ev in ("ready", "unready") and heal:
        rec.setdefault(kind, []).append((int(at) - heal[1], ev == "unready"))
rows = [l.split("|") for l in open(f"{work}/sqlite.txt") if l.strip()]
sql_bad = [r for r in rows if not (int(r[1]) == int(r[2]) == int(r[3]) == int(r[4]))]
faults = ", ".join(f"{k} {v}" for k, v in s["faults"].items())
print(f"chaos: {s['rooms']} rooms x {s['members_per_room']} members over {s['gateways']} gateways, "
      f"{s['rate']} msgs/s over {s['rooms'] - s['quiet_rooms']} busy rooms, {s['quiet_rooms']} quiet rooms at "
      f"{s['quiet_rate']} msgs/s each, {s['publishing_s']:.0f} s of publishing")
print(f"faults injected: {s['faults_total']} ({faults})")
for k, v in rec.items():
    print(f"  {k}: back to ready in median {statistics.median(d for d, _ in v):.0f} ms, max {max(d for d, _ in v)} ms"
          + (f", {sum(u for _, u in v)} not ready within 30 s" if any(u for _, u in v) else ""))
if conns:
    print("connections per gateway as each fault started: " + ", ".join(
        f"{gw} min {min(v)} median {statistics.median(v):.0f} max {max(v)}" for gw, v in sorted(conns.items())))
print(f"messages: {s['messages_created']} created, {s['messages_acked']} acked, {s['messages_committed']} committed "
      f"(end markers included), {s['committed_unacked']} committed but never acked")
print(f"sends: {s['sends']} ({s['resends']} resent), errors {s['send_errors']}, repeat acks {s['repeat_acks']}, "
      f"publisher reconnects {s['publisher_reconnects']}, ack p50/p99/max {s['send_to_ack']['p50_ms']}/"
      f"{s['send_to_ack']['p99_ms']}/{s['send_to_ack']['max_ms']} ms")
print(f"deliveries checked: {s['deliveries_checked']}, delivered in order {s['delivered']}; "
      f"send-to-delivery p50/p99/max {s['send_to_delivery']['p50_ms']}/{s['send_to_delivery']['p99_ms']}/"
      f"{s['send_to_delivery']['max_ms']} ms")
print(f"gaps {s['gaps']}, duplicates {s['duplicates']}, missing {s['missing']}, wrong content {s['wrong_content']}, "
      f"lost acked {s['lost_acked']}, double acked {s['double_acked']}, stored twice {s['stored_twice']}, "
      f"history holes {s['history_holes']}, refused {s['refused']}, unacked at end {s['unacked_at_end']}, "
      f"members unfinished {s['members_unfinished']}")
print(f"reconnects: {s['reconnects']} {s['reconnects_by_cause']}, connect failures {s['connect_failures']}, "
      f"joins {s['joins']}, join failures {s['join_failures']}, recovered:false {s['recovered_false']}")
print(f"SQLite: {len(rows)} rooms, {sum(int(r[1]) for r in rows)} messages, "
      f"{len(sql_bad)} rooms with a hole or a repeated client_id")
if s["violations_by_fault"]:
    print("violations by the fault before them:")
    for f, kinds in s["violations_by_fault"].items():
        print(f"  {f}: {kinds}")
    for v in s["violations_listed"]:
        f = v["after_fault"]
        where = (f"{f['ms_after_start']} ms after #{f['index']} {f['kind']} {f['target']} "
                 f"({'during' if f['during'] else 'after'} it)") if f else "before any fault"
        print(f"  t={v['t_s']:.1f}s {v['kind']} {v['room']} {v['client']} {v['gateway'] or ''}: {v['detail']}; {where}")
    if s["violations_total"] > len(s["violations_listed"]):
        print(f"  ... {s['violations_total'] - len(s['violations_listed'])} more in summary.json")
ok = s["ok"] and gen_rc == 0 and not sql_bad
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
exit "$rc"
