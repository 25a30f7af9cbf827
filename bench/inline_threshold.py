#!/usr/bin/env python3
"""Where should outputs stop living inside the action hash? Measure it.

An output up to ``--inline-max`` bytes is stored in its action hash, so a hit is one
``HGETALL``; a larger one lives in a content-addressed string key, so a hit is ``HGETALL`` and
then ``GET`` (one more round trip, but identical outputs share one copy). For each output size
from 1 KiB to 4 MiB this script measures, against a private ``redis-server`` with redis-py and
hiredis:

* the median latency of an inline hit and of a blob hit, and the relative cost of the blob's
  extra round trip, ``(blob - inline) / inline``;
* Redis memory per entry of each layout (``INFO memory`` ``used_memory`` delta over many
  entries), beyond the body bytes themselves.

It prints a table and the smallest size from which the extra round trip costs less than
``--threshold`` (5%) at that size and every larger one: past it, spilling to a blob key is
practically free, so ``--inline-max`` need not be larger.

    python bench/inline_threshold.py [--reps 600] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.utils import HIREDIS_AVAILABLE

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redisproc import RedisServer  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
SIZES = [KiB << i for i in range(13)]  # 1 KiB ... 4 MiB
PREFIX = "gocache:"


def entry_count(size: int) -> int:
    """Entries per layout and size: enough to average allocator rounding, at most ~96 MiB."""
    return max(24, min(400, (96 * MiB) // size))


def put_inline(r: redis.Redis, aid: str, oid: str, body: bytes) -> None:
    r.hset(f"{PREFIX}a:{aid}", mapping={"oid": oid, "size": len(body),
                                        "time": time.time_ns(), "body": body})


def put_blob(r: redis.Redis, aid: str, oid: str, body: bytes) -> None:
    r.set(f"{PREFIX}o:{oid}", body)
    r.hset(f"{PREFIX}a:{aid}", mapping={"oid": oid, "size": len(body),
                                        "time": time.time_ns(), "ref": "o"})


def get_inline(r: redis.Redis, aid: str) -> bytes:
    fields: dict[bytes, bytes] = r.hgetall(f"{PREFIX}a:{aid}")  # type: ignore[assignment]
    return fields[b"body"]


def get_blob(r: redis.Redis, aid: str) -> bytes:
    fields: dict[bytes, bytes] = r.hgetall(f"{PREFIX}a:{aid}")  # type: ignore[assignment]
    body = r.get(f"{PREFIX}o:{fields[b'oid'].decode()}")
    assert isinstance(body, bytes)
    return body


def used_memory(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def body_sizes(size: int, count: int) -> list[int]:
    """Lengths spread over ``size`` +/- 25%: real outputs are not powers of two, and exact
    powers of two land just past a jemalloc size class, which would overstate the overhead."""
    rng = random.Random(size)
    return [int(size * rng.uniform(0.75, 1.25)) for _ in range(count)]


def fill(r: redis.Redis, sizes: list[int], tag: str,
         put: Callable[[redis.Redis, str, str, bytes], None]) -> tuple[dict[str, int], float]:
    """Store one entry per size; return action ID -> size, and bytes of Redis per entry."""
    before = used_memory(r)
    aids = {}
    for i, n in enumerate(sizes):
        body = os.urandom(n)
        aid = hashlib.sha256(f"{tag}:{n}:{i}".encode()).hexdigest()
        put(r, aid, hashlib.sha256(body).hexdigest(), body)
        aids[aid] = n
    return aids, (used_memory(r) - before) / len(sizes)


def write_local(directory: str, body: bytes) -> None:
    """What the helper does with a body after a Redis hit: a temp file renamed into place."""
    tmp = os.path.join(directory, "tmp")
    with open(tmp, "wb") as f:
        f.write(body)
    os.replace(tmp, os.path.join(directory, "out"))


def measure(r: redis.Redis, size: int, reps: int, scratch: str) -> dict[str, Any]:
    r.flushall()
    sizes = body_sizes(size, entry_count(size))
    mean_body = statistics.fmean(sizes)
    inline_ids, inline_mem = fill(r, sizes, "inline", put_inline)
    blob_ids, blob_mem = fill(r, sizes, "blob", put_blob)
    rng = random.Random(size)
    for aid in list(inline_ids)[:5]:  # warm the connection and the allocator
        get_inline(r, aid)
    n = max(20, reps if size <= 256 * KiB else reps // 4)
    times: dict[str, list[float]] = {"inline": [], "blob": [], "write": []}
    choices = {"inline": list(inline_ids), "blob": list(blob_ids)}
    pair: list[tuple[str, Callable[[redis.Redis, str], bytes]]] = [
        ("inline", get_inline), ("blob", get_blob)]
    for _ in range(n):
        # Both layouts in every iteration, so drift in machine load hits them alike, in a random
        # order: a command sent right after another finds Redis (and the vCPU it runs on) awake,
        # and whichever layout always came second would look cheaper.
        rng.shuffle(pair)
        for kind, get in pair:
            ids = inline_ids if kind == "inline" else blob_ids
            aid = rng.choice(choices[kind])
            start = time.perf_counter_ns()
            body = get(r, aid)
            times[kind].append((time.perf_counter_ns() - start) / 1e3)
            if len(body) != ids[aid]:
                raise RuntimeError(f"{kind} get returned {len(body)} bytes, want {ids[aid]}")
        start = time.perf_counter_ns()
        write_local(scratch, body)
        times["write"].append((time.perf_counter_ns() - start) / 1e3)
    rtt = []
    for _ in range(n):
        start = time.perf_counter_ns()
        r.ping()
        rtt.append((time.perf_counter_ns() - start) / 1e3)
    inline_us = statistics.median(times["inline"])
    blob_us = statistics.median(times["blob"])
    write_us = statistics.median(times["write"])
    # The extra cost is the median of paired differences (each blob get against the inline get
    # just before it), which cancels most of the drift a busy machine adds to both medians.
    extra_us = statistics.median(b - a for a, b in zip(times["inline"], times["blob"],
                                                        strict=True))
    r.flushall()
    return {
        "size": size, "entries": len(sizes), "mean_body": mean_body, "samples": n,
        "ping_us": statistics.median(rtt),
        "inline_us": inline_us, "blob_us": blob_us, "extra_us": extra_us, "write_us": write_us,
        "relative_cost": extra_us / inline_us,
        "relative_cost_with_write": extra_us / (inline_us + write_us),
        "inline_bytes_per_entry": inline_mem, "blob_bytes_per_entry": blob_mem,
        "inline_overhead": inline_mem - mean_body, "blob_overhead": blob_mem - mean_body,
    }


def crossover(rows: list[dict[str, Any]], key: str, threshold: float) -> int | None:
    """The smallest size from which ``key`` stays under ``threshold``."""
    for i, row in enumerate(rows):
        if all(later[key] < threshold for later in rows[i:]):
            return int(row["size"])
    return None


def human(size: int) -> str:
    return f"{size // MiB} MiB" if size >= MiB else f"{size // KiB} KiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--reps", type=int, default=600,
                    help="gets per layout and size (a quarter of that above 256 KiB)")
    ap.add_argument("--threshold", type=float, default=0.05,
                    help="relative cost of the extra round trip that no longer matters")
    ap.add_argument("--json", metavar="FILE", help="write the figures to FILE")
    args = ap.parse_args()
    if not HIREDIS_AVAILABLE:
        print("warning: hiredis is not installed; redis-py parses replies in Python",
              file=sys.stderr)
    began = time.perf_counter()
    rows = []
    with RedisServer() as server, tempfile.TemporaryDirectory() as scratch:
        r = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=30)
        for size in SIZES:
            rows.append(measure(r, size, args.reps, scratch))
            print(f"  measured {human(size)}", file=sys.stderr, flush=True)
        r.close()

    print(f"\nInline hit (HGETALL) vs blob hit (HGETALL + GET), redis-py "
          f"{redis.__version__}, hiredis {'on' if HIREDIS_AVAILABLE else 'OFF'}, loopback; "
          f"medians; bodies of each size +/-25%")
    print(f"{'size':>8} {'inline us':>10} {'blob us':>10} {'extra us':>9} {'relative':>9} "
          f"{'write us':>9} {'rel+write':>9} {'inline B':>10} {'blob B':>10}")
    for row in rows:
        print(f"{human(row['size']):>8} {row['inline_us']:>10.1f} {row['blob_us']:>10.1f} "
              f"{row['extra_us']:>9.1f} {row['relative_cost']:>9.1%} "
              f"{row['write_us']:>9.1f} {row['relative_cost_with_write']:>9.1%} "
              f"{row['inline_overhead']:>10.0f} {row['blob_overhead']:>10.0f}")
    print(f"  PING round trip: median {statistics.median(row['ping_us'] for row in rows):.1f} us")
    print("  extra = median of paired (blob - inline); relative = extra / inline;\n"
          "  rel+write = extra / (inline + the local file write every hit also does);\n"
          "  inline B / blob B = Redis bytes per entry beyond the body.")
    pure = crossover(rows, "relative_cost", args.threshold)
    with_write = crossover(rows, "relative_cost_with_write", args.threshold)
    print()
    for label, at in (("Redis alone", pure), ("counting the local write", with_write)):
        if at is None:
            print(f"{label}: the extra round trip costs {args.threshold:.0%} or more at every "
                  "size measured.")
        else:
            print(f"{label}: from {human(at)} up, a blob hit costs less than "
                  f"{args.threshold:.0%} more than an inline hit.")
    print(f"({time.perf_counter() - began:.0f} s)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "threshold": args.threshold, "crossover": pure,
                       "crossover_with_write": with_write}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
