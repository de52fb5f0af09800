"""Medians and ranges over one bench script's runs (bench-dm.sh, bench-rest.sh).

WORKDIR/run*.json are telepath-load summaries, one per run; `f` picks a
number out of a summary.
"""
import glob
import json
import os
import statistics


def load(work):
    """Every run's summary, in run order (a run that printed none is left out)."""
    files = sorted(glob.glob(f"{work}/run*.json"))
    return [json.load(open(f)) for f in files if os.path.getsize(f)]


def median(rs, f):
    return statistics.median(f(r) for r in rs)


def spread(rs, f, fmt=".2f"):
    """The range of `f` over the runs, as `min–max`."""
    return f"{min(f(r) for r in rs):{fmt}}–{max(f(r) for r in rs):{fmt}}"


def total(rs, key):
    return sum(r[key] for r in rs)
