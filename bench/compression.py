#!/usr/bin/env python3
"""Compression (issue 18): Redis bytes per output byte, and new-runner time, zstd vs none.

One run, by hand, as root (for the network namespace):

1. a cold ``go build std`` (or ``--packages``) through the helper, local disk only, records
   every action and output the build puts;
2. those entries are written, exactly as the helper writes them (:meth:`RedisStore.put`,
   default settings), into a private ``redis-server`` with ``--compression none`` and
   ``zstd``: Redis ``used_memory`` growth per output byte, and the writer's time (what the
   uploads of a cold build cost, which ``close`` waits for the tail of);
3. new runners (empty GOCACHE and helper directory) build the same packages from Redis, under
   each prefix in turn, interleaved, ``--reps`` times, in three places: Redis on loopback;
   Redis in a network namespace behind a veth pair limited to 1 Gbit/s with ``tbf`` (both
   directions); Redis on loopback behind bench/delay_proxy.py (0.5 ms each way). Each
   (place, compression) pair first runs once unmeasured, which writes the prefetch manifest
   a real fleet's previous run would have left.

Prints medians and the ratios none/zstd per place. The machine is shared and noisy: read the
ratios, measured side by side, rather than the seconds.

    sudo python bench/compression.py [--packages std] [--reps 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from delay_proxy import DelayProxy  # noqa: E402  (a sibling: bench/ is sys.path[0])
from spill_memory import entries  # noqa: E402

from redis_gocache.config import DEFAULT_INLINE_MAX  # noqa: E402
from redis_gocache.store.base import Entry  # noqa: E402
from redis_gocache.store.redis import RedisStore  # noqa: E402
from tests.gocmd import go_quote, helper_command  # noqa: E402
from tests.redisproc import RedisServer  # noqa: E402

MiB = 1024 * 1024
PREFIXES = {"none": "gn:", "zstd": "gz:"}
NS, VETH_HOST, VETH_NS = "rgc18", "rgc18a", "rgc18b"
HOST_IP, NS_IP, NS_PORT = "10.200.0.1", "10.200.0.2", 6391


def go_env(work: Path, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "REDIS_"))}
    home = work / name
    env.update(GOTOOLCHAIN="local", GOPROXY="off", GOFLAGS="-mod=mod", GOENV="off",
               GOTELEMETRY="off", CGO_ENABLED="0", GOPATH=str(home / "gopath"),
               GOCACHE=str(home / "gocache"), HOME=str(home / "home"),
               GOCACHEPROG=go_quote(helper_command()), REDIS_GOCACHE_DIR=str(home / "helper"),
               REDIS_GOCACHE_NO_AUTO_TRIM="1", REDIS_GOCACHE_NO_FLEET_STATS="1",
               PYTHONPATH=str(REPO_ROOT))
    for key in ("GOPATH", "GOCACHE", "HOME"):
        os.makedirs(env[key], exist_ok=True)
    return env


def go_build(packages: list[str], work: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and go's own CPU seconds (user + system). Not its helpers': cmd/go does
    not wait for a helper to exit, so their CPU comes from their stats lines."""
    go = shutil.which("go")
    if go is None:
        raise SystemExit("`go` is not on PATH")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run([go, "build", *packages], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1800, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"go build failed:\n{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fill(url: str, prefix: str, items: list[tuple[bytes, Entry, str]], compress: bool,
         client: redis.Redis) -> dict[str, float]:
    """Write every entry as the helper would; Redis memory growth and the writer's time."""
    client.memory_purge()
    before = int(client.info("memory")["used_memory"])
    store = RedisStore(url, prefix=prefix, ttl=7 * 86400, inline_max=DEFAULT_INLINE_MAX,
                       timeout=30.0, retries=0, max_connections=2, compress=compress)
    start, cpu = time.monotonic(), time.process_time()
    for action, entry, path in items:
        store.put(action, entry, path)
    seconds, cpu = time.monotonic() - start, time.process_time() - cpu
    store.close()
    return {"used_memory_growth": int(client.info("memory")["used_memory"]) - before,
            "seconds": seconds, "cpu_seconds": cpu}


def sh(*args: str, check: bool = True) -> None:
    subprocess.run(args, check=check, capture_output=True, timeout=30)


@contextmanager
def namespace_redis(rate: str) -> Iterator[str]:
    """A redis-server in a network namespace of our own, reached over a veth pair whose
    two ends are both limited to ``rate`` by ``tbf``; yields its URL."""
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "netns", "add", NS)
    proc = None
    try:
        sh("ip", "link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_NS)
        sh("ip", "link", "set", VETH_NS, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", VETH_HOST)
        sh("ip", "link", "set", VETH_HOST, "up")
        inside = ("ip", "netns", "exec", NS)
        sh(*inside, "ip", "addr", "add", f"{NS_IP}/30", "dev", VETH_NS)
        sh(*inside, "ip", "link", "set", VETH_NS, "up")
        sh(*inside, "ip", "link", "set", "lo", "up")
        for prefix, dev in (((), VETH_HOST), (inside, VETH_NS)):
            sh(*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
               "burst", "256kb", "latency", "20ms")
        proc = subprocess.Popen(
            [*inside, "redis-server", "--bind", NS_IP, "--port", str(NS_PORT), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://{NS_IP}:{NS_PORT}/0"
        client = redis.Redis.from_url(url, socket_timeout=5)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        sh("ip", "link", "del", VETH_HOST, check=False)
        sh("ip", "netns", "del", NS, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=["std"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--places", default="loopback,link,latency",
                    help="comma-separated subset of loopback,link,latency")
    ap.add_argument("--rate", default="1gbit", help="tbf rate of the link [1gbit]")
    ap.add_argument("--delay-ms", type=float, default=0.5, help="delay each way [0.5]")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--work-dir", metavar="DIR",
                    help="where the caches go [default: the system temporary directory]")
    args = ap.parse_args()
    places = args.places.split(",")
    result: dict[str, Any] = {"packages": args.packages, "reps": args.reps,
                              "rate": args.rate, "delay_ms_each_way": args.delay_ms}

    with tempfile.TemporaryDirectory(prefix="compression-bench-", dir=args.work_dir) as tmp, \
            RedisServer() as local:
        work = Path(tmp)
        (work / "trash").mkdir()
        env = go_env(work, "recorder")
        result["cold_local_seconds"] = go_build(args.packages, work, env)[0]
        items = entries(Path(env["REDIS_GOCACHE_DIR"]) / "v1")
        cached = sum(e.size for _, e, _ in items)
        result.update(entries=len(items), output_bytes=cached)
        print(f"{len(items)} entries, {cached / MiB:.1f} MiB of outputs", flush=True)

        client = redis.Redis.from_url(local.url, socket_timeout=60)
        memory = {}
        for mode, prefix in PREFIXES.items():
            client.flushall()
            memory[mode] = fill(local.url, prefix, items, mode == "zstd", client)
            memory[mode]["redis_bytes_per_output_byte"] = (
                memory[mode]["used_memory_growth"] / cached)
            print(f"{mode:4}: Redis +{memory[mode]['used_memory_growth'] / MiB:.1f} MiB = "
                  f"{memory[mode]['redis_bytes_per_output_byte']:.3f} per output byte; "
                  f"writer {memory[mode]['seconds']:.1f}s "
                  f"({memory[mode]['cpu_seconds']:.1f}s CPU)", flush=True)
        result["memory"] = memory
        # Both prefixes side by side, for the new runners on loopback and behind the proxy.
        client.flushall()
        for mode, prefix in PREFIXES.items():
            fill(local.url, prefix, items, mode == "zstd", client)
        client.close()

        times: dict[str, dict[str, list[float]]] = {}
        cpus: dict[str, dict[str, list[float]]] = {}
        with contextlib.ExitStack() as stack:
            urls: dict[str, str] = {}
            if "loopback" in places:
                urls["loopback"] = local.url
            if "latency" in places:
                proxy = DelayProxy(("127.0.0.1", local.port), args.delay_ms / 1000)
                stack.callback(proxy.close)
                urls["latency"] = f"redis://127.0.0.1:{proxy.port}/0"
            if "link" in places:
                url = stack.enter_context(namespace_redis(args.rate))
                remote = redis.Redis.from_url(url, socket_timeout=120)
                for mode, prefix in PREFIXES.items():
                    fill(url, prefix, items, mode == "zstd", remote)
                remote.close()
                urls["link"] = url
            runs = 0
            for rep in range(args.reps + 1):  # rep 0 writes the manifests, unmeasured
                for place, url in urls.items():
                    for mode, prefix in PREFIXES.items():
                        runs += 1
                        env = go_env(work, f"run-{runs}")
                        env.update(REDIS_URL=url, REDIS_GOCACHE_PREFIX=prefix,
                                   REDIS_GOCACHE_COMPRESSION=mode,
                                   REDIS_GOCACHE_TIMEOUT="10")
                        stats_file = work / f"stats-{runs}.jsonl"
                        env["REDIS_GOCACHE_STATS_FILE"] = str(stats_file)
                        seconds, cpu = go_build(args.packages, work, env)
                        # Out of the way, deleted at the end: on this VM's ext4, inodes freed
                        # in the last minutes are passed over one by one when files are made
                        # (bench.py's Env.discard), which slowed the next runner's every file.
                        (work / f"run-{runs}").rename(work / "trash" / f"run-{runs}")
                        rows = [json.loads(line) for line in stats_file.read_text().splitlines()]
                        hits = sum(int(r["remote_hits"]) for r in rows)
                        misses = sum(int(r["misses"]) for r in rows)
                        helper_cpu = sum(float(r["cpu_seconds"]) for r in rows)
                        print(f"rep {rep} {place:8} {mode:4} {seconds:6.2f}s, CPU go {cpu:5.2f}s"
                              f" helper {helper_cpu:5.2f}s ({hits} Redis hits, {misses} misses)",
                              flush=True)
                        if rep:
                            times.setdefault(place, {}).setdefault(mode, []).append(seconds)
                            cpus.setdefault(place, {}).setdefault(mode, []).append(helper_cpu)

    result["new_runner_seconds"] = times
    result["new_runner_helper_cpu_seconds"] = cpus
    print(f"\nRedis bytes per output byte: none "
          f"{memory['none']['redis_bytes_per_output_byte']:.3f}, zstd "
          f"{memory['zstd']['redis_bytes_per_output_byte']:.3f}; writer CPU none "
          f"{memory['none']['cpu_seconds']:.1f}s, zstd {memory['zstd']['cpu_seconds']:.1f}s")
    summary = {}
    for place, by_mode in times.items():
        med = {mode: statistics.median(xs) for mode, xs in by_mode.items()}
        cpu = {mode: statistics.median(xs) for mode, xs in cpus[place].items()}
        summary[place] = {**med, "none_over_zstd": med["none"] / med["zstd"],
                          "cpu": cpu}
        print(f"new runner, {place:8}: none {med['none']:.2f}s, zstd {med['zstd']:.2f}s "
              f"(medians of {args.reps}); none/zstd = {med['none'] / med['zstd']:.2f}; "
              f"helper CPU none {cpu['none']:.2f}s, zstd {cpu['zstd']:.2f}s")
    result["summary"] = summary
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
