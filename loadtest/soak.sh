#!/usr/bin/env bash
# Soak: does the cluster come back to its idle footprint after a long churn?
# On a two-gateway cluster (loadtest/lib/cluster.sh), `telepath-load churn`
# runs USERS virtual users that connect, join, send, leave and close in a
# loop (one in four closes by dropping the socket), first for WARMUP (the
# warm-up: allocator arenas, SQLite's page cache and connection pools fill),
# then for DURATION. Every INTERVAL each server process (redis-server,
# presence, the api, gw1, gw2) is sampled: resident memory (VmRSS in
# /proc/PID/status), open file descriptors (/proc/PID/fd), threads, and
# the services' tokio tasks (`tokio_alive_tasks` on /metrics; redis-server
# has none). IDLE seconds after each churn, with every
# connection closed, an idle sample is taken: after the warm-up (the warm
# idle baseline) and after the churn.
#
# Prints per process: the warm idle baseline, the first sample of the churn
# (just after the warm-up), its last and its peak, and the idle sample after
# it. Fails when a process died, when a process's FDs after the churn
# exceed the baseline by more than FD_SLACK (32: FDs that grow without bound
# end far above that; pools may keep a few more sockets), or when its RSS
# after the churn is over RSS_RATIO (1.5) times the warm idle baseline, or
# when its tokio tasks after the churn exceed the baseline by more than
# TASK_SLACK (16: tasks that leak grow with every visit).
#
# Usage: loadtest/soak.sh [DURATION=30m] [USERS=40]
#   env: WARMUP=60s IDLE=30s INTERVAL (DURATION/60, within 10..30 s)
#        ROOMS=20 RSS_RATIO=1.5 FD_SLACK=32 TASK_SLACK=16 KEEP=0 (keep the work dir:
#        samples.tsv, the churn summaries, the servers' logs)
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib/cluster.sh
duration=$(to_secs "${1:-30m}")
users=${2:-40}
warmup=$(to_secs "${WARMUP:-60s}")
idle=$(to_secs "${IDLE:-30s}")
interval=$(to_secs "${INTERVAL:-$(( duration / 60 < 10 ? 10 : (duration / 60 > 30 ? 30 : duration / 60) ))}")
rooms=${ROOMS:-20}
rss_ratio=${RSS_RATIO:-1.5}
fd_slack=${FD_SLACK:-32}
task_slack=${TASK_SLACK:-16}

work=$(mktemp -d -t telepath-soak.XXXXXX)
cluster_bins "$work"
rc=1
trap cluster_exit EXIT
ulimit -n "$(ulimit -Hn)"

cluster_start "$work/cluster" 2
cluster_watchdog $(( warmup + duration + 2 * idle + 900 ))
names=(redis presence api gw1 gw2)
declare -A urls=([presence]=$PRESENCE_URL [api]=$API_URL [gw1]=${GATEWAY_URLS%%,*} [gw2]=${GATEWAY_URLS##*,})
# A tokio tasks gauge, if any service exposes one.
tasks_metric=""
for n in presence api gw1 gw2; do
  m=$(curl -fsS "${urls[$n]}/metrics" | grep -E -o '^tokio_[a-z_]*tasks?[a-z_]*' | head -1 || true)
  if [ -n "$m" ]; then tasks_metric=$m; break; fi
done
t0=$(date +%s)
samples=$work/samples.tsv
echo -e "t_s\tphase\tprocess\trss_kib\tfds\tthreads\ttasks" >"$samples"
sample() {
  local n pid tasks
  for n in "${names[@]}"; do
    pid=$(cluster_pid "$n")
    if ! kill -0 "$pid" 2>/dev/null; then
      echo -e "$(( $(date +%s) - t0 ))\t$1\t$n\tdead\tdead\tdead\t-" >>"$samples"
      continue
    fi
    tasks=-
    if [ -n "$tasks_metric" ] && [ -n "${urls[$n]:-}" ]; then
      tasks=$(curl -fsS "${urls[$n]}/metrics" | awk -v m="$tasks_metric" '$1 == m { print $2 }' | head -1)
    fi
    read -r rss fds threads <<<"$(proc_sample "$pid")"
    echo -e "$(( $(date +%s) - t0 ))\t$1\t$n\t$rss\t$fds\t$threads\t${tasks:--}" >>"$samples"
  done
}
churn() {
  "$load_bin" churn --api "$API_URL" --gateways "$GATEWAY_URLS" --users "$users" --rooms "$rooms" \
    --duration "${1}s" >"$work/$2.json" 2>>"$work/churn.log"
}

sample cold
echo "[soak] warm-up: ${warmup}s of churn, then ${idle}s idle" >&2
churn "$warmup" warmup
sleep "$idle"
sample baseline
echo "[soak] churn: ${duration}s, $users users, a sample every ${interval}s" >&2
churn "$duration" churn &
churning=$!
# The first sample one interval in (the churn under way), then every interval.
while kill -0 "$churning" 2>/dev/null; do
  for _ in $(seq "$interval"); do kill -0 "$churning" 2>/dev/null || break; sleep 1; done
  if kill -0 "$churning" 2>/dev/null; then sample churn; fi
done
churn_rc=0
wait "$churning" || churn_rc=$?
echo "[soak] churn over, ${idle}s idle" >&2
sleep "$idle"
sample after
cp "$CLUSTER_DIR"/*.log "$work/" 2>/dev/null || true

rc=0
python3 - "$work" "$duration" "$users" "$rss_ratio" "$fd_slack" "$tasks_metric" "$churn_rc" "$interval" "$task_slack" <<'PY' || rc=$?
import json, sys
from collections import defaultdict
work, duration, users, ratio, slack, tasks_metric, churn_rc, interval, task_slack = sys.argv[1:]
ratio, slack, task_slack = float(ratio), int(slack), int(task_slack)
rows = [l.rstrip("\n").split("\t") for l in open(f"{work}/samples.tsv")][1:]
by = defaultdict(lambda: defaultdict(list))
for t, phase, proc, rss, fds, threads, tasks in rows:
    by[proc][phase].append((int(t), rss, fds, threads, tasks))
warm = json.load(open(f"{work}/warmup.json"))
churn = json.load(open(f"{work}/churn.json"))
print(f"soak: {int(duration)} s of churn after {warm['duration_s']:.0f} s of warm-up, {users} users over 2 gateways, "
      f"{len(by['redis']['churn'])} samples of the churn, one every {interval} s")
for name, c in (("warm-up", warm), ("churn", churn)):
    print(f"  {name}: {c['visits']} visits ({c['visits_per_s']:.1f}/s), {c['connects']} connects, {c['joins']} joins, "
          f"{c['sends']} sends, {c['leaves']} leaves, {c['closes']} closes + {c['drops']} drops, "
          f"{c['messages_received']} messages received, errors {c['errors'] or 'none'}, generator CPU {c['generator_cpu_percent']:.0f}%")
print("tokio tasks: " + (f"`{tasks_metric}`" if tasks_metric else "not exposed by any service (threads shown instead)"))
print()
print("| process | warm idle RSS KiB | churn first / last / peak RSS KiB | idle after RSS KiB | after / warm | "
      "FDs warm idle | FDs churn first / last / peak | FDs after | threads warm / after | tasks warm / churn peak / after |")
print("|---|---|---|---|---|---|---|---|---|---|")
failures = []
for proc in ("redis", "presence", "api", "gw1", "gw2"):
    p = by[proc]
    def first(phase): return p[phase][0] if p[phase] else None
    base, after = first("baseline"), first("after")
    ch = [s for s in p["churn"] if s[1] != "dead"]
    if not base or not after or "dead" in (base[1], after[1]) or any(s[1] == "dead" for s in p["churn"]):
        failures.append(f"{proc} died")
        print(f"| {proc} | died | | | | | | | | |")
        continue
    b_rss, a_rss, b_fd, a_fd = int(base[1]), int(after[1]), int(base[2]), int(after[2])
    if not ch:
        ch = [(0, "-", "-", "-", "-")]
    peak_rss = max((int(s[1]) for s in ch if s[1] != "-"), default="-")
    peak_fd = max((int(s[2]) for s in ch if s[2] != "-"), default="-")
    r = a_rss / b_rss if b_rss else float("inf")
    tasks_cell = "-"
    if base[4] not in ("-", "") and after[4] not in ("-", ""):
        b_t, a_t = int(float(base[4])), int(float(after[4]))
        peak_t = max((int(float(s[4])) for s in ch if s[4] not in ("-", "")), default="-")
        tasks_cell = f"{b_t} / {peak_t} / {a_t}"
        if a_t > b_t + task_slack:
            failures.append(f"{proc}: {a_t} tokio tasks after the churn, {b_t} at warm idle (> +{task_slack})")
    print(f"| {proc} | {b_rss} | {ch[0][1]} / {ch[-1][1]} / {peak_rss} | {a_rss} | {r:.2f}x | {b_fd} | "
          f"{ch[0][2]} / {ch[-1][2]} / {peak_fd} | {a_fd} | {base[3]} / {after[3]} | {tasks_cell} |")
    if r > ratio:
        failures.append(f"{proc}: RSS after the churn {a_rss} KiB is {r:.2f}x the warm idle {b_rss} KiB (> {ratio}x)")
    if a_fd > b_fd + slack:
        failures.append(f"{proc}: {a_fd} FDs after the churn, {b_fd} at warm idle (> +{slack})")
if int(churn_rc) != 0:
    failures.append(f"the churn generator failed (exit {churn_rc})")
print()
for f in failures:
    print("FAIL: " + f)
print("PASS" if not failures else "FAIL")
sys.exit(1 if failures else 0)
PY
exit "$rc"
