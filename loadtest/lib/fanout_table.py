"""The Markdown table of a set of room-fanout runs (bench-fanout.sh, bench-socketio.sh).

Usage: fanout_table.py WORKDIR TITLE RATE ROOMS
WORKDIR holds run*.json (telepath-load room-fanout summaries) and cpu*.txt
(server CPU seconds of each run); prints medians, with the p99 range.
"""
import glob
import json
import statistics
import sys

work, title, rate, rooms = sys.argv[1:]
rs = [json.load(open(f)) for f in sorted(glob.glob(f"{work}/run*.json"))]
for r, f in zip(rs, sorted(glob.glob(f"{work}/cpu*.txt"))):
    r["server_cpu_s"] = float(open(f).read())
m = lambda f: statistics.median(f(r) for r in rs)
spread = lambda f: f"{min(f(r) for r in rs):.2f}-{max(f(r) for r in rs):.2f}"
lat = lambda k: (lambda r: r["send_to_delivery"][k])
print(f"{title}\n")
print("| offered msgs/s | acked msgs/s | deliveries/s | p50 ms | p90 ms | p99 ms (range) | max ms | lost | duplicates | generator CPU % | server CPU s per 1M deliveries |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
print(f"| {int(rate) * int(rooms)} | {m(lambda r: r['acked_per_s']):.0f} | {m(lambda r: r['deliveries_per_s']):.0f} | "
      f"{m(lat('p50_ms')):.2f} | {m(lat('p90_ms')):.2f} | {m(lat('p99_ms')):.2f} ({spread(lat('p99_ms'))}) | "
      f"{m(lat('max_ms')):.2f} | {sum(r['lost'] for r in rs)} | {sum(r['duplicates'] for r in rs)} | "
      f"{m(lambda r: r['generator_cpu_percent']):.0f} | "
      f"{m(lambda r: r['server_cpu_s'] / max(r['delivered'], 1) * 1e6):.1f} |")
