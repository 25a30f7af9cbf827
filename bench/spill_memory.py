#!/usr/bin/env python3
"""Redis memory per cached byte, with and without a spill directory (issue 8).

One run: a cold ``go build std`` (or ``--packages``) through the helper in local-only mode
records every action and output the build puts. Those entries are then written, exactly as
the helper writes them (:class:`RedisStore.put`, default ``--inline-max`` and compression),
into a private ``redis-server`` twice: once with large outputs in Redis blob keys (no spill
directory), once with a spill directory (Redis holds pointers). For each it prints Redis
memory (``used_memory`` growth, and the sum of ``MEMORY USAGE`` of the keys) divided by the
bytes cached, and the ratio.

    python bench/spill_memory.py [--packages std] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis_gocache.config import DEFAULT_INLINE_MAX  # noqa: E402
from redis_gocache.store.base import Entry  # noqa: E402
from redis_gocache.store.layout import (  # noqa: E402
    ACTION_LOG,
    OUTPUTS,
    level_name,
    output_path,
    parse_record,
    read_action_log,
)
from redis_gocache.store.redis import RedisStore  # noqa: E402
from redis_gocache.store.spill import ZOUTPUTS, SpillDir  # noqa: E402
from tests.gocmd import go_quote, helper_command  # noqa: E402
from tests.redisproc import RedisServer  # noqa: E402

PREFIX = "gocache:"
MiB = 1024 * 1024


def record_build(packages: list[str], work: Path) -> Path:
    """A cold ``go build`` through the helper (local disk only); returns its local root."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("`go` is not on PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "REDIS_"))}
    env.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod", GOENV="off",
               GOTELEMETRY="off", CGO_ENABLED="0", GOPATH=str(work / "gopath"),
               GOCACHE=str(work / "gocache"), HOME=str(work / "home"),
               GOCACHEPROG=go_quote(helper_command()), REDIS_GOCACHE_DIR=str(work / "helper"),
               REDIS_GOCACHE_NO_AUTO_TRIM="1",
               PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    for key in ("GOPATH", "GOCACHE", "HOME"):
        os.makedirs(env[key], exist_ok=True)
    start = time.monotonic()
    proc = subprocess.run([go, "build", *packages], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"go build failed:\n{proc.stderr[-3000:]}")
    print(f"cold go build {' '.join(packages)}: {time.monotonic() - start:.1f}s",
          file=sys.stderr)
    return work / "helper" / level_name(read_only=False)


def entries(root: Path) -> list[tuple[bytes, Entry, str]]:
    """(action id, entry, output path) of every action in a local root's action log whose
    output is there (the layout is redis_gocache.store.layout's)."""
    out = []
    for action_hex, line in sorted(read_action_log(str(root / ACTION_LOG)).items()):
        parsed = parse_record(line)
        if parsed is None:
            continue
        entry = parsed[0]
        path = output_path(str(root), entry.output_id.hex())
        if os.path.isfile(path):
            out.append((bytes.fromhex(action_hex), entry, path))
    if not out:
        raise SystemExit(f"no entries in {root}: the build put nothing the helper recorded")
    return out


def fill(url: str, items: list[tuple[bytes, Entry, str]], spill: SpillDir | None,
         client: redis.Redis) -> dict[str, Any]:
    client.flushall()
    client.memory_purge()
    before = int(client.info("memory")["used_memory"])
    store = RedisStore(url, prefix=PREFIX, ttl=7 * 86400, inline_max=DEFAULT_INLINE_MAX,
                       timeout=10.0, retries=0, max_connections=2, spill=spill)
    for action, entry, path in items:
        store.put(action, entry, path)
    store.close()
    used = int(client.info("memory")["used_memory"]) - before
    usage = sum(int(client.memory_usage(k, samples=0) or 0) for k in client.scan_iter(count=1000))
    return {"keys": int(client.dbsize()), "used_memory_growth": used, "memory_usage_sum": usage}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=["std"])
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="spill-bench-") as tmp:
        work = Path(tmp)
        items = entries(record_build(args.packages, work))
        cached = sum(e.size for _, e, _ in items)
        large = sum(e.size for _, e, _ in items if e.size > DEFAULT_INLINE_MAX)
        unique = sum({e.output_id: e.size for _, e, _ in items}.values())
        (work / "spill").mkdir()
        with RedisServer() as server:
            client = redis.Redis.from_url(server.url, socket_timeout=30)
            without = fill(server.url, items, None, client)
            spill = SpillDir(str(work / "spill"))
            with_spill = fill(server.url, items, spill, client)
            spill.close()
            client.close()
        # Raw outputs under o/, compressed ones under z/ (store/spill.py's layout).
        spilled = sum(p.stat().st_size for d in (OUTPUTS, ZOUTPUTS)
                      for p in (work / "spill" / d).rglob("*") if p.is_file())

    result: dict[str, Any] = {
        "packages": args.packages, "entries": len(items), "cached_bytes": cached,
        "unique_output_bytes": unique, "bytes_above_inline_max": large,
        "inline_max": DEFAULT_INLINE_MAX, "spill_dir_bytes": spilled,
        "without_spill": without, "with_spill": with_spill,
    }
    for name in ("without_spill", "with_spill"):
        result[name]["redis_bytes_per_cached_byte"] = (
            result[name]["used_memory_growth"] / cached)
    ratio = (result["without_spill"]["used_memory_growth"]
             / max(1, result["with_spill"]["used_memory_growth"]))
    result["ratio"] = ratio

    print(f"{len(items)} entries, {cached / MiB:.1f} MiB cached "
          f"({unique / MiB:.1f} MiB unique outputs; {large / MiB:.1f} MiB in outputs above "
          f"--inline-max {DEFAULT_INLINE_MAX // 1024} KiB, {100 * large / cached:.0f}%)")
    for label, name in (("without spill directory", "without_spill"),
                        ("with spill directory   ", "with_spill")):
        r = result[name]
        print(f"{label}: Redis used_memory +{r['used_memory_growth'] / MiB:7.1f} MiB "
              f"(MEMORY USAGE sum {r['memory_usage_sum'] / MiB:.1f} MiB, {r['keys']} keys) = "
              f"{r['redis_bytes_per_cached_byte']:.3f} Redis bytes per cached byte")
    print(f"spill directory holds {spilled / MiB:.1f} MiB; Redis memory ratio "
          f"without/with: {ratio:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
