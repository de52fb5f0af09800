#!/usr/bin/env python3
"""Fills an api's SQLite database with room messages for the search benchmark.

Usage: search_seed.py --db PATH [--messages 1000000] [--rooms 50] [--users 8]
                      [--vocab 20000] [--zipf 1.07] [--seed 1] [--fts auto|triggers|rebuild]
                      [--out PATH.json]

The database must have the api's schema already (start the api on it once,
then stop it: it applies migrations/*.sql at start); nothing may write to
it meanwhile. Users `search-u0`..`search-u{N-1}` (the ids dev login and
signed tokens give those names) take part in every one of ROOMS new rooms,
whose sizes follow a Zipf-like law too; messages are spread evenly over the
last 90 days, 1 to 40 words each (most around 5-10), words drawn from a
fixed vocabulary (about 150 common English words first, then made-up words
of letters, all distinct) with P(rank k) ~ 1/k^ZIPF, so a few words are in
most messages and most words in a few. Each room's seqs are 1..n in time
order, with `last_seq` and the participants' cursors at n.

The full-text index: with `--fts triggers` the migration's triggers on
`messages` fill it row by row as the rows go in; with `--fts rebuild` the
triggers that write to an FTS5 table are dropped for the bulk insert and
put back after it, and the index is rebuilt once (`INSERT INTO
fts(fts) VALUES('rebuild')`: right when the FTS5 table is an external-content
table over `messages`, and faster). `auto` (the default) rebuilds when the
FTS5 table names a `content=` table, else keeps the triggers. Without any
FTS5 table (the migration has not landed), only the messages go in.

Writes what the `search` scenario needs to --out (default: DB.search.json):
the users' names, the rooms' ids and the vocabulary by rank.
"""
import argparse
import json
import math
import os
import random
import re
import sqlite3
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

# The namespace of user ids derived from usernames (shared/src/protocol/ids.rs).
USER_NAMESPACE = uuid.UUID("6c1f5d1e-8b0a-4b7e-9f3c-2a4d5e6f7081")

COMMON = """the i to you a and it is that of in for on me my we this be
have not so was with just but are do at what can like no your if get all
about out up know think will now one they one time how there good yeah ok
okay when see make go lol thanks going back then here right today tomorrow
really need want people would could should also more some new from did
got work let day still been too well much way any sure meeting code deploy
build test fix bug issue review merge branch release server client room
message chat search please yes nice great cool sorry maybe later week
night morning lunch coffee team call email doc docs link file update check
looks done again first last next long little big old other same very
never always something nothing everyone anyone""".split()

ONSETS = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
          "z", "br", "ch", "cl", "dr", "fl", "gr", "kr", "pl", "pr", "sh", "sk", "sl", "sp", "st",
          "str", "th", "tr"]
NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y"]
CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "nt", "rk", "st", "ng", "x"]


def vocabulary(n, rng):
    """COMMON, then made-up words of letters, all distinct, N in all."""
    words, seen = [], set()
    for w in COMMON:
        if w not in seen:
            seen.add(w)
            words.append(w)
    while len(words) < n:
        syllables = rng.choice((1, 2, 2, 2, 3, 3))
        w = "".join(rng.choice(ONSETS) + rng.choice(NUCLEI) + rng.choice(CODAS) for _ in range(syllables))
        if 3 <= len(w) <= 12 and w not in seen:
            seen.add(w)
            words.append(w)
    return words[:n]


def cumulative(weights):
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def uuid7(ms, rng):
    """A UUIDv7 for a time in Unix ms (what the api gives messages)."""
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= rng.getrandbits(12) << 64
    value |= 0b10 << 62
    value |= rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def ts(dt):
    """RFC 3339 the way sqlx writes a DateTime<Utc> (`+00:00`)."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--rooms", type=int, default=50)
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=20_000)
    ap.add_argument("--zipf", type=float, default=1.07)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fts", choices=("auto", "triggers", "rebuild"), default="auto")
    ap.add_argument("--out")
    args = ap.parse_args()
    out = args.out or f"{args.db}.search.json"
    rng = random.Random(args.seed)
    t0 = time.monotonic()

    db = sqlite3.connect(args.db, isolation_level=None)
    tables = {name: sql for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    for t in ("users", "rooms", "room_participants", "messages"):
        if t not in tables:
            sys.exit(f"{args.db} has no `{t}` table: start the api on it once first (it applies the migrations)")
    fts = [(name, sql) for name, sql in tables.items() if sql and re.search(r"using\s+fts5", sql, re.I)]
    triggers = [(name, sql) for name, sql in db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'messages'")]
    fts_names = [name for name, _ in fts]
    fts_triggers = [(n, s) for n, s in triggers if any(f in s for f in fts_names)]
    external = [name for name, sql in fts if re.search(r"content\s*=\s*'?\"?messages", sql, re.I)]
    mode = args.fts
    if mode == "auto":
        mode = "rebuild" if external and len(external) == len(fts) else "triggers"
    if not fts:
        print("search_seed: no FTS5 table in the database (has the search migration landed?): "
              "seeding the messages only", file=sys.stderr)
    elif mode == "rebuild" and not external:
        sys.exit(f"--fts rebuild: the FTS5 tables {fts_names} are not external-content tables over messages")
    elif mode == "triggers" and not any(re.search(r"\bAFTER\s+INSERT\b", s, re.I) for _, s in fts_triggers):
        # The api indexes new messages itself (one statement per batch), not by trigger.
        print(f"search_seed: no insert trigger on messages writes to {fts_names}: rebuilding the index after the insert",
              file=sys.stderr)
        mode = "rebuild"

    words = vocabulary(args.vocab, rng)
    word_cw = cumulative([1.0 / (k + 1) ** args.zipf for k in range(len(words))])
    lengths = list(range(1, 41))
    length_cw = cumulative([n ** 1.3 * math.exp(-n / 4.0) for n in lengths])
    room_cw = cumulative([1.0 / (r + 1) ** 0.7 for r in range(args.rooms)])
    user_cw = cumulative([1.0 / (u + 1) ** 0.8 for u in range(args.users)])

    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = now - timedelta(days=90)
    span_us = int((now - timedelta(minutes=1) - start).total_seconds() * 1e6)
    names = [f"search-u{u}" for u in range(args.users)]
    user_ids = [str(uuid.uuid5(USER_NAMESPACE, n)) for n in names]
    room_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.rooms)]

    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN")
    for uid, name in zip(user_ids, names):
        db.execute("INSERT OR IGNORE INTO users (id, username, role, status, created_at) VALUES (?, ?, 'user', 'offline', ?)",
                   (uid, name, ts(start)))
    for r, rid in enumerate(room_ids):
        db.execute("INSERT INTO rooms (id, name, max_participants, created_by, created_at, last_seq, participant_count) "
                   "VALUES (?, ?, 100000, ?, ?, 0, ?)", (rid, f"search-{r}", user_ids[0], ts(start), len(user_ids)))
        for u, uid in enumerate(user_ids):
            db.execute("INSERT INTO room_participants (room_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)",
                       (rid, uid, "owner" if u == 0 else "member", ts(start)))
    if fts and mode == "rebuild":
        for name, _ in fts_triggers:
            db.execute(f'DROP TRIGGER "{name}"')

    seqs = [0] * args.rooms
    chunk = 50_000
    done = 0
    while done < args.messages:
        n = min(chunk, args.messages - done)
        lens = rng.choices(lengths, cum_weights=length_cw, k=n)
        picked = rng.choices(words, cum_weights=word_cw, k=sum(lens))
        rooms = rng.choices(range(args.rooms), cum_weights=room_cw, k=n)
        senders = rng.choices(user_ids, cum_weights=user_cw, k=n)
        rows, at = [], 0
        for i in range(n):
            k = done + i
            when = start + timedelta(microseconds=span_us * k // args.messages + rng.randrange(1000))
            r = rooms[i]
            seqs[r] += 1
            body = " ".join(picked[at:at + lens[i]])
            at += lens[i]
            ms = int(when.timestamp() * 1000)
            rows.append((uuid7(ms, rng), room_ids[r], senders[i], body, seqs[r], ts(when)))
        db.executemany("INSERT INTO messages (id, room_id, sender_id, content, kind, seq, created_at) "
                       "VALUES (?, ?, ?, ?, 'text', ?, ?)", rows)
        done += n
        print(f"search_seed: {done} messages ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    for r, rid in enumerate(room_ids):
        db.execute("UPDATE rooms SET last_seq = ? WHERE id = ?", (seqs[r], rid))
        db.execute("UPDATE room_participants SET delivered_seq = ?, read_seq = ? WHERE room_id = ?",
                   (seqs[r], seqs[r], rid))
    if fts and mode == "rebuild":
        for name in fts_names:
            t1 = time.monotonic()
            db.execute(f"INSERT INTO \"{name}\"(\"{name}\") VALUES('rebuild')")
            print(f"search_seed: {name} rebuilt in {time.monotonic() - t1:.0f} s", file=sys.stderr)
        for _, sql in fts_triggers:
            db.execute(sql)
    db.execute("COMMIT")
    for name in fts_names:
        db.execute(f"INSERT INTO \"{name}\"(\"{name}\") VALUES('optimize')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    db.close()
    with open(out, "w") as f:
        json.dump({"messages": args.messages, "users": names, "rooms": room_ids, "zipf": args.zipf,
                   "words": words}, f)
    size = os.path.getsize(args.db)
    print(f"search_seed: {args.messages} messages in {args.rooms} rooms, {len(words)} words, fts={mode if fts else 'none'}, "
          f"{size / 2**20:.0f} MiB, {time.monotonic() - t0:.0f} s; vocabulary in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
