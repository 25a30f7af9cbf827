"""Fleet load test: N runners on one Redis, replaying a recorded build through real helpers.

Sixteen real ``go build``s on a two-core machine would measure the compiler, not the cache. So
the build is recorded once and replayed:

1. **Record.** One real, cold ``go build ./...`` of the generated benchmark module
   (:mod:`bench.gomodule`, stdlib included) runs through the helper in local mode; the helper's
   local directory then holds every (action id, output) pair the build put. That is the
   request stream. It is kept in ``--work`` and reused by later runs.
2. **Replay.** N runner processes start together, each with its own empty local directory and
   its own helper process (the real ``redis-gocache``, the same binary CI runs) against one
   private ``redis-server`` on loopback. A runner sends the stream's ``get``s (at most
   ``--inflight`` unanswered, as cmd/go keeps GOMAXPROCS outstanding), then a ``put`` for each
   miss (cmd/go would compile in between; replay skips the compile), then ``close``.
   ``same``: every runner replays the same stream (one repository, many jobs); ``different``:
   each runner's action ids and outputs are made its own (many repositories, nothing shared).
3. **Rounds.** Round 1 starts with an empty Redis (every runner cold at once: the worst case);
   round 2 starts again from empty local directories against what round 1 left in Redis (a
   fleet of fresh runners on a warm cache).

Reported per (mode, N, round): hit rate; Redis commands per second (``total_commands_processed``
over the round's wall time); Redis ``used_memory`` growth per byte of distinct output stored;
peak ``connected_clients`` (sampled every 20 ms); p50/p99 latency of a request as the runner
sees it. Every round has a deadline (``--round-timeout``); every wait in the client has one.

Usage: ``python bench/fleet.py [--runners 1,4,16] [--modes same,different] [--json OUT]``.
It is a benchmark run by hand, not by CI.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ is first on the path (so "bench" would be bench/bench.py): its
# siblings are imported by their own names, the repository's tests/ through ROOT.
for _path in (str(ROOT / "bench"), str(ROOT)):
    if _path not in sys.path:
        sys.path.append(_path)

import redis  # noqa: E402
from cacheclient import Helper, Op  # noqa: E402
from gomodule import write_module  # noqa: E402

from tests.redisproc import RedisServer  # noqa: E402

RECORD_PACKAGES = 12
"""Library packages of the recorded module: enough for a realistic mix of outputs (the
standard library's archives included), small enough to record in well under a minute."""

Stream = list[tuple[bytes, bytes]]  # (action id, output body)


def helper_argv() -> list[str]:
    script = Path(sys.executable).with_name("redis-gocache")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "redis_gocache"]


def helper_env(cache_dir: Path, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "GOCACHEPROG"))}
    env["PYTHONPATH"] = str(ROOT)
    env["REDIS_GOCACHE_DIR"] = str(cache_dir)
    env["REDIS_GOCACHE_NO_AUTO_TRIM"] = "1"
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# -- recording ---------------------------------------------------------------------------


def record(work: Path) -> Stream:
    """The (action, output) pairs of one cold build, recorded once into ``work``."""
    local = work / "record" / "helper"
    done = work / "record" / "done"
    if not done.exists():
        shutil.rmtree(work / "record", ignore_errors=True)
        src = write_module(work / "record" / "src", packages=RECORD_PACKAGES)
        gohome = work / "record" / "go"
        env = helper_env(local, None)
        env.update(
            GOTOOLCHAIN="local", GOPROXY="off", GOSUMDB="off", GOFLAGS="-mod=mod",
            GOENV="off", GOTELEMETRY="off", CGO_ENABLED="0",
            GOPATH=str(gohome / "path"), GOCACHE=str(gohome / "cache"), HOME=str(gohome),
            GOCACHEPROG=" ".join(helper_argv()),
        )  # fmt: skip
        print(f"recording: cold go build of a {RECORD_PACKAGES}-package module ...",
              file=sys.stderr)
        subprocess.run(["go", "build", "./..."], cwd=src, env=env, check=True, timeout=600,
                       stdin=subprocess.DEVNULL)
        done.write_text("ok\n")
    stream: Stream = []
    base = local / "v1"
    for afile in sorted((base / "a").glob("*/*")):
        oid = afile.read_text().split()[0]
        body = (base / "o" / oid[:2] / oid).read_bytes()
        stream.append((bytes.fromhex(afile.name), body))
    if not stream:
        raise SystemExit(f"nothing recorded in {base}")
    return stream


def personal(stream: Stream, runner: int) -> Stream:
    """``stream`` made this runner's own: other action ids, other outputs (a repository of its
    own), of the same sizes."""
    salt = f"runner {runner}".encode()
    out = []
    for action, body in stream:
        mark = hashlib.sha256(salt + action).digest()
        out.append((mark, body[:-len(salt)] + salt if len(body) >= len(salt) else body + salt))
    return out


# -- one runner ------------------------------------------------------------------------------


def run_runner(args: tuple[int, str, str, str, int, float, float]) -> dict[str, Any]:
    """One runner process: a fresh local directory, one helper, gets then puts, close."""
    runner, mode, stream_path, url, inflight, start_at, timeout = args
    stream: Stream = load_stream(stream_path)
    if mode == "different":
        stream = personal(stream, runner)
    bodies = dict(stream)
    local = Path(tempfile.mkdtemp(prefix=f"fleet-runner{runner}-"))
    try:
        while time.time() < start_at:  # all runners start together
            time.sleep(0.001)
        began = time.perf_counter()
        helper = Helper(helper_argv(), helper_env(local, url), str(local / "stderr"))
        try:
            gets = helper.run([Op("get", a) for a, _ in stream], inflight, timeout)
            misses = [t.op.action for t in gets if t.response.get("Miss")]
            puts = helper.run([Op("put", a, bodies[a]) for a in misses], inflight, timeout)
            helper.close(timeout)
        except BaseException:
            helper.kill()
            raise
        wall = time.perf_counter() - began
        errors = sum(1 for t in gets + puts if t.response.get("Err"))
        return {
            "gets": len(gets), "hits": len(gets) - len(misses), "puts": len(puts),
            "errors": errors, "wall": wall,
            "latencies": [t.seconds for t in gets + puts],
            "get_latencies": [t.seconds for t in gets],
            "startup": helper.startup_seconds,
        }  # fmt: skip
    finally:
        shutil.rmtree(local, ignore_errors=True)


def save_stream(stream: Stream, path: Path) -> None:
    with open(path, "wb") as f:
        for action, body in stream:
            f.write(action + len(body).to_bytes(8, "big") + body)


def load_stream(path: str) -> Stream:
    data = Path(path).read_bytes()
    out, i = [], 0
    while i < len(data):
        action, size = data[i:i + 32], int.from_bytes(data[i + 32:i + 40], "big")
        out.append((action, data[i + 40:i + 40 + size]))
        i += 40 + size
    return out


# -- a round ---------------------------------------------------------------------------------


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def run_round(client: redis.Redis, url: str, stream_path: Path, mode: str, n: int,
              inflight: int, timeout: float) -> dict[str, Any]:
    before = client.info("stats")["total_commands_processed"]
    peak = [int(client.info("clients")["connected_clients"])]
    stop = threading.Event()

    def sample() -> None:
        c = redis.Redis.from_url(url)
        while not stop.is_set():
            peak[0] = max(peak[0], int(c.info("clients")["connected_clients"]))
            stop.wait(0.02)
        c.close()

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start_at = time.time() + 0.5
    jobs = [(i, mode, str(stream_path), url, inflight, start_at, timeout) for i in range(n)]
    began = time.perf_counter()
    with mp.get_context("spawn").Pool(n) as pool:
        results = pool.map_async(run_runner, jobs).get(timeout * 3)
    wall = time.perf_counter() - began - 0.5
    stop.set()
    watcher.join(5)
    after = client.info("stats")["total_commands_processed"]
    lat = [x for r in results for x in r["latencies"]]
    glat = [x for r in results for x in r["get_latencies"]]
    gets = sum(r["gets"] for r in results)
    hits = sum(r["hits"] for r in results)
    return {
        "mode": mode, "runners": n,
        "hit_rate": hits / gets if gets else 0.0,
        "requests": len(lat), "errors": sum(r["errors"] for r in results),
        "wall_s": wall,
        "redis_ops_per_s": (after - before) / wall if wall > 0 else 0.0,
        "peak_connections": peak[0] - 1,  # less the sampler's own
        "p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
        "get_p99_ms": percentile(glat, 0.99) * 1000,
        "runner_wall_s": statistics.median(r["wall"] for r in results),
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    ap.add_argument("--runners", default="1,4,16", help="comma-separated fleet sizes")
    ap.add_argument("--modes", default="same,different", help="same, different or both")
    ap.add_argument("--inflight", type=int, default=4, help="requests in flight per runner")
    ap.add_argument("--round-timeout", type=float, default=300.0, help="seconds per round")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "redis-gocache-fleet"))
    ap.add_argument("--json", help="write the results here as JSON")
    opts = ap.parse_args(argv)
    work = Path(opts.work)
    work.mkdir(parents=True, exist_ok=True)
    stream = record(work)
    stream_path = work / "stream.bin"
    save_stream(stream, stream_path)
    stream_bytes = sum(len(b) for _, b in stream)
    distinct = len({hashlib.sha256(b).digest() for _, b in stream})
    print(f"stream: {len(stream)} actions, {distinct} distinct outputs, "
          f"{stream_bytes / 2**20:.1f} MiB", file=sys.stderr)

    rows = []
    with RedisServer(["--maxmemory-policy", "allkeys-lru"]) as server:
        client = redis.Redis.from_url(server.url)
        for mode in opts.modes.split(","):
            for n in (int(x) for x in opts.runners.split(",")):
                client.flushall()
                base = int(client.info("memory")["used_memory"])
                for rnd in (1, 2):
                    row = run_round(client, server.url, stream_path, mode, n, opts.inflight,
                                    opts.round_timeout)
                    used = int(client.info("memory")["used_memory"]) - base
                    copies = n if mode == "different" else 1
                    row.update(round=rnd, used_memory_mib=used / 2**20,
                               memory_per_byte=used / (stream_bytes * copies),
                               keys=int(client.dbsize()))
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
        client.close()

    print(f"\nstream: {len(stream)} actions, {stream_bytes / 2**20:.1f} MiB of outputs; "
          f"inflight {opts.inflight} per runner; {os.cpu_count()} CPUs\n")
    head = ("mode", "N", "round", "hit rate", "Redis ops/s", "mem/byte", "used MiB",
            "peak conns", "p50 ms", "p99 ms", "runner s")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['mode']} | {r['runners']} | {r['round']} | {r['hit_rate']:.0%} | "
              f"{r['redis_ops_per_s']:.0f} | {r['memory_per_byte']:.2f} | "
              f"{r['used_memory_mib']:.1f} | {r['peak_connections']} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['runner_wall_s']:.2f} |")
    if opts.json:
        Path(opts.json).write_text(json.dumps({"stream_actions": len(stream),
                                               "stream_bytes": stream_bytes, "rows": rows},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
