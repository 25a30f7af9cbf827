#!/usr/bin/env python3
"""Benchmark redis-gocache against Go's own build cache, in one run, on this machine.

Run by hand (not in CI) from the repository root::

    python bench/bench.py                 # full run: go build std + a generated module, 5 reps
    python bench/bench.py --quick         # smoke run: module only, 1 rep, small bodies
    python bench/bench.py --json out.json # also write every figure for later comparison

The script starts its own ``redis-server`` on a free loopback port and works in a temporary
directory. Scenarios are interleaved: each repetition runs every scenario once, in the same
order, so a noisy neighbour slows all of them alike instead of one. Ratios are to Go's warm
local cache measured in the same run. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from redis import Redis

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

import cacheclient  # noqa: E402  (a sibling module: bench/ is sys.path[0])
import gomodule  # noqa: E402
from cacheclient import Helper, HelperFailed, Op, Timed  # noqa: E402

from tests.redisproc import RedisServer  # noqa: E402

MiB = 1024 * 1024

COLD_TIMEOUT = 1800.0
"""Seconds one cold build may take (``go build std`` is ~40 s on 2 cores)."""

WARM_TIMEOUT = 600.0
"""Seconds one warm or new-runner build may take."""

STATS_KEYS = (
    "gets", "hits", "local_hits", "remote_hits", "misses", "puts",
    "hit_bytes", "put_bytes", "remote_wait_seconds",
)
"""The counters the helper writes to ``REDIS_GOCACHE_STATS_FILE``."""

# Scenario keys, in the order each repetition runs them, and how the table names them.
SCENARIOS = {
    "go_cold": "Go local cache, cold",
    "go_warm": "Go local cache, warm",
    "python_floor": "floor: minimal Python helper, warm",
    "copy": "copy floor: cp -r of the warm cache",
    "copy_build": "copy floor: cp -r, then the build",
    "helper_cold": "redis-gocache cold (empty Redis and dir)",
    "helper_new": "redis-gocache new runner (warm Redis)",
    "helper_warm": "redis-gocache warm runner",
    "helper_node": "redis-gocache new pod on a warm node",
    "baseline_new": "baseline new runner (--baseline)",
    "baseline_warm": "baseline warm runner (--baseline)",
}
HELPER_SCENARIOS = ("helper_cold", "helper_new", "helper_warm", "helper_node")
FLOOR_HELPER = Path(__file__).resolve().with_name("floor_helper.py")


# -- settings --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """How much to measure. ``--quick`` picks a small plan."""

    reps: int
    workloads: tuple[str, ...]
    small_body: int = 2 * 1024  # the median Go cache output is ~1.4 KiB
    blob_body: int = 1 * MiB
    small_count: int = 1000  # per repetition
    blob_count: int = 64  # per repetition
    startups: int = 10  # helper starts per repetition
    rss_body: int = 256 * MiB


FULL = Plan(reps=5, workloads=("std", "module"))
QUICK = Plan(reps=1, workloads=("module",), small_count=300, blob_count=16, startups=5,
             rss_body=32 * MiB)


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    title: str
    args: tuple[str, ...]
    cwd: Path


@dataclasses.dataclass
class Env:
    """Everything a scenario needs: paths, the Redis server, the helper command."""

    work: Path
    go: str
    gopath: Path
    redis: RedisServer
    helper: list[str] | None
    helper_pythonpath: bool
    log: Callable[[str], None]
    python: str = sys.executable
    """The interpreter that runs the helper (the floor of its start-up time)."""
    baseline: list[str] | None = None
    """Another version of the helper (``--baseline``), measured beside this one."""
    helper_settings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``--helper-env`` settings, given to every helper (the baseline's too)."""
    _counter: int = 0
    _client: Redis | None = None

    def fresh_dir(self, label: str) -> Path:
        """A new, empty directory under the work dir."""
        self._counter += 1
        path = self.work / "runs" / f"{self._counter:04d}-{label}"
        path.mkdir(parents=True)
        return path

    def discard(self, path: Path) -> None:
        """Empty every file under ``path`` now and delete the files when the run ends.

        Both halves keep this VM's quirks out of the next repetition. On an ext4 without a
        journal, inodes freed in the last minutes are passed over when new files are created
        (``recently_deleted`` in ``ext4_create``, up to 150 µs a file), so deleting a
        repetition's thousands of files would slow the file creation of the next one: what
        a new runner and the copy floor mostly do. Emptying them frees their pages instead,
        for the next repetition to reuse: pages the VM has not touched for a while cost a
        fault in the hypervisor on first use, and a run that kept every repetition's 1 GB
        in the page cache (or in a tmpfs) made its later repetitions pay for that.
        """
        for root, _, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    os.truncate(os.path.join(root, name), 0)
        self._counter += 1
        trash = self.work / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{self._counter:04d}")

    def go_env(self, gocache: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("GO", "REDIS_", "CGO_"))
        }
        env.update(
            GOCACHE=str(gocache),
            GOPATH=str(self.gopath),
            GOTOOLCHAIN="local",
            GOPROXY="off",
            GOENV="off",  # no user go.env (it might set GOCACHEPROG or GOFLAGS)
            GOFLAGS="",
        )
        env.update(extra or {})
        return env

    def helper_env(self, cache_dir: Path, stats: Path | None, *, redis_url: bool = True,
                   base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(base if base is not None else
                   {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")})
        if redis_url:
            env["REDIS_URL"] = self.redis.url
        env["REDIS_GOCACHE_DIR"] = str(cache_dir)
        if stats is not None:
            env["REDIS_GOCACHE_STATS_FILE"] = str(stats)
        env.update(self.helper_settings)
        if self.helper_pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            )
        return env

    def client(self) -> Redis:
        """The benchmark's own connection to its Redis (FLUSHALL, INFO, DBSIZE)."""
        if self._client is None:
            self._client = Redis(host="127.0.0.1", port=self.redis.port, socket_timeout=60)
        return self._client


def go_quote(args: Sequence[str]) -> str:
    """``args`` as one GOCACHEPROG string; cmd/go's quoted.Split accepts '…' or "…" fields."""
    parts = []
    for arg in args:
        if arg and not any(c in arg for c in " \t\r\n'\""):
            parts.append(arg)
        elif "'" not in arg:
            parts.append(f"'{arg}'")
        elif '"' not in arg:
            parts.append(f'"{arg}"')
        else:
            raise ValueError(f"GOCACHEPROG cannot carry {arg!r}")
    return " ".join(parts)


_SNAPSHOT_SCRIPT = """#!{python}
# The redis-gocache console script, run from a copy of the package taken when the benchmark
# started: sys.path[0] is this directory, so the copy wins over an editable install.
import sys
from redis_gocache.cli import main
sys.exit(main())
"""


def snapshot_helper(work: Path, source: Path = REPO_ROOT, name: str = "helper"
                    ) -> tuple[list[str], str, str]:
    """Copy the package into ``work`` and return a console script that runs the copy, the
    commit it was taken at, and the interpreter that runs it.

    With an editable install every helper start would import whatever the source tree holds at
    that moment; a benchmark that runs while the code changes would measure several versions.
    The copy runs in a venv of its own, as ``pip install redis-gocache`` in a runner image
    would: the interpreter this benchmark runs under may carry ``.pth`` files (an editable
    install's import hook, a sandbox's certificate patch) that every start would execute, which
    is the development machine's cost, not the user's.
    """
    dest = work / name
    shutil.copytree(source / "redis_gocache", dest / "redis_gocache",
                    ignore=shutil.ignore_patterns("__pycache__"))
    python = _clean_venv(work / f"{name}-venv")
    # pip compiles what it installs; without .pyc files (PYTHONDONTWRITEBYTECODE, or a
    # read-only copy) every helper start would compile the package again.
    subprocess.run([python, "-m", "compileall", "-q", str(dest / "redis_gocache")], check=True,
                   timeout=120)
    script = dest / "redis-gocache"
    script.write_text(_SNAPSHOT_SCRIPT.format(python=python))
    script.chmod(0o755)
    return [str(script)], _git_describe(source), python


def _clean_venv(path: Path) -> str:
    """A venv whose site-packages reaches this interpreter's packages (redis, hiredis, click)
    by a plain path line: importable, but none of that directory's ``.pth`` files run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True,
                   timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    ours = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    Path(site, "bench-base-packages.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return str(python)


def _git_describe(source: Path = REPO_ROOT) -> str:
    """The commit of the source tree, with ``+dirty`` if the package has local changes."""
    try:
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--",
                                "redis_gocache"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown commit"
    return f"{head or 'unknown'}{'+dirty' if dirty else ''}"


def find_helper(explicit: str | None) -> tuple[list[str] | None, bool, str]:
    """The helper's argv, whether it needs the repo on PYTHONPATH, and how it was found."""
    if explicit:
        return shlex.split(explicit), False, "--helper"
    # The script next to this Python first: the one on PATH may be a pyenv shim, a bash script
    # that costs ~80 ms per start and is not what a CI runner would run.
    for script in (str(Path(sys.executable).with_name("redis-gocache")),
                   shutil.which("redis-gocache")):
        if script and os.access(script, os.X_OK) and \
                (REPO_ROOT / "redis_gocache" / "cli.py").is_file():
            return [os.path.abspath(script)], False, "console script"
    if (REPO_ROOT / "redis_gocache" / "__main__.py").is_file():
        return [sys.executable, "-m", "redis_gocache"], True, "python -m"
    return None, False, "not found (redis_gocache has no cli.py / __main__.py yet)"


# -- measuring builds ------------------------------------------------------------------------


def timed(args: Sequence[str], timeout: float, **popen: Any) -> tuple[int, float]:
    """Run a command; return its exit status and wall seconds, or raise TimeoutError.

    Not ``subprocess.run(timeout=...)``: with a timeout, ``Popen.wait`` polls with sleeps that
    grow to 50 ms, so every time it measured came out rounded up to the next of 64 ms plus a
    multiple of 50 ms, a fifth of a warm build. A blocking ``wait`` returns when the child
    exits; a timer kills a child that overruns."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(args), **popen)
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        status = proc.wait()
    finally:
        timer.cancel()
    seconds = time.perf_counter() - start
    if expired.is_set():
        raise TimeoutError(f"{args[0]} took over {timeout}s")
    return status, seconds


def run_go(env: Env, wl: Workload, go_env: Mapping[str, str], timeout: float,
           label: str) -> float:
    """Run the workload's go command; return its wall time; fail loudly if it fails."""
    log_path = env.work / "logs" / f"{label}.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:
        try:
            status, seconds = timed([env.go, *wl.args], timeout, cwd=wl.cwd, env=dict(go_env),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        except TimeoutError:
            raise RuntimeError(f"{label}: go {' '.join(wl.args)} took over {timeout}s") from None
    if status != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{label}: go {' '.join(wl.args)} exited {status}:\n{tail}")
    return seconds


STATS_WAIT = 10.0
"""Seconds to wait for a helper's stats line after ``go`` has exited."""


def read_stats(path: Path, wait: float = STATS_WAIT) -> dict[str, float]:
    """Sum the helper's stats lines (one per helper process; ``go`` may start several).

    cmd/go returns once the helper has answered ``close`` and closed its stdout; it does not
    wait for the process to exit, so the stats line may land a moment after ``go`` is gone.
    """
    total: dict[str, float] = dict.fromkeys(STATS_KEYS, 0)
    total["processes"] = 0
    deadline = time.monotonic() + wait
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    lines = text.splitlines()
    if not lines:
        return {}
    for line in lines:
        if not line.strip():
            continue
        rec = json.loads(line)
        total["processes"] += 1
        for key in STATS_KEYS:
            total[key] += rec.get(key, 0)
    return total


def used_memory(env: Env) -> int:
    info = env.client().info("memory")
    return int(info["used_memory"])


def write_floor_index(gocache: Path, index: Path) -> int:
    """The index floor_helper.py serves from: every complete action of Go's own cache (the
    ``-a`` files: ``v1 <action> <output> <size> <time ns>``) whose output is there. An output
    is the ``-d`` file, or for a cached executable the one file in the ``-d`` directory."""
    lines = []
    for entry in gocache.glob("*/*-a"):
        parts = entry.read_text().split()
        if len(parts) != 5 or parts[0] != "v1":
            continue
        action, output, size, when = parts[1], parts[2], int(parts[3]), int(parts[4])
        path = gocache / output[:2] / f"{output}-d"
        if path.is_dir():
            inside = list(path.iterdir())
            path = inside[0] if len(inside) == 1 else path
        if not path.is_file():
            continue
        secs, frac = divmod(when, 1_000_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
        lines.append(f"{action} {output} {size} {stamp} {path}\n")
    index.write_text("".join(lines))
    return len(lines)


def build_round(env: Env, wl: Workload, rep: int, results: dict[str, Any]) -> None:
    """One repetition of every build scenario of one workload, in a fixed order."""
    times: dict[str, list[float]] = results["builds"][wl.name]
    tag = f"{wl.name}-r{rep}"

    def record(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)
        env.log(f"  {wl.name:6} {key:12} {seconds:8.3f} s")

    gocache = env.fresh_dir(f"{tag}-gocache")
    record("go_cold", run_go(env, wl, env.go_env(gocache), COLD_TIMEOUT, f"{tag}-go_cold"))
    record("go_warm", run_go(env, wl, env.go_env(gocache), WARM_TIMEOUT, f"{tag}-go_warm"))
    if env.helper is not None:
        # The floor for a warm runner: the least a Python helper can do (bench/floor_helper.py).
        index = env.work / "logs" / f"{tag}-floor.index"
        write_floor_index(gocache, index)
        # GOCACHE stays Go's warm one, as on a warm runner: cmd/go opens it even with a
        # GOCACHEPROG, and a fresh one costs 256 mkdirs (a lot on this VM's disk, below).
        floor_env = env.go_env(gocache, {
            "GOCACHEPROG": go_quote([env.python, str(FLOOR_HELPER)]),
            "FLOOR_INDEX": str(index),
            "FLOOR_SPOOL": str(env.fresh_dir(f"{tag}-floor-spool"))})
        record("python_floor", run_go(env, wl, floor_env, WARM_TIMEOUT, f"{tag}-python_floor"))

    # The floor for a new runner: its whole cache arrives by a local copy, then it builds.
    copied = env.fresh_dir(f"{tag}-copy") / "gocache"
    status, copy_seconds = timed(["cp", "-r", str(gocache), str(copied)], WARM_TIMEOUT)
    if status != 0:
        raise RuntimeError(f"cp -r {gocache} {copied} exited {status}")
    record("copy", copy_seconds)
    build = run_go(env, wl, env.go_env(copied), WARM_TIMEOUT, f"{tag}-copy_build")
    record("copy_build", copy_seconds + build)
    env.discard(copied.parent)

    if env.helper is not None:
        prog = go_quote(env.helper)
        env.client().flushall()
        mem_before = used_memory(env)
        cold_dir = env.fresh_dir(f"{tag}-helper-cold")
        new_dir = env.fresh_dir(f"{tag}-helper-new")
        runner_gocache = {}
        # The new pod on a warm node has an empty GOCACHE of its own and the node's local
        # directory, which the earlier pod (the new and warm runner) filled.
        runs = [("helper_cold", cold_dir, prog), ("helper_new", new_dir, prog),
                ("helper_warm", new_dir, prog), ("helper_node", new_dir, prog)]
        if env.baseline is not None:
            # The baseline's new and warm runners read what this helper's cold run stored;
            # which of the two goes first alternates, so a drift of the machine cancels out.
            base_dir = env.fresh_dir(f"{tag}-baseline-new")
            base = [("baseline_new", base_dir, go_quote(env.baseline)),
                    ("baseline_warm", base_dir, go_quote(env.baseline))]
            runs = runs[:1] + (runs[1:] + base if rep % 2 == 0 else base + runs[1:])
        for key, cache_dir, runner_prog in runs:
            stats_path = env.work / "logs" / f"{tag}-{key}.stats"
            # The warm runner is the new runner's pod building again: its GOCACHE (which
            # cmd/go opens even with a GOCACHEPROG) exists, as its helper's directory does.
            if not key.endswith("_warm"):
                runner_gocache[key] = env.fresh_dir(f"{tag}-{key}-gocache")
            gocache_dir = runner_gocache[key.replace("_warm", "_new")]
            go_env = env.go_env(gocache_dir, {"GOCACHEPROG": runner_prog})
            go_env.update(env.helper_env(cache_dir / "local", stats_path, base={}))
            timeout = COLD_TIMEOUT if key == "helper_cold" else WARM_TIMEOUT
            record(key, run_go(env, wl, go_env, timeout, f"{tag}-{key}"))
            stats = read_stats(stats_path)
            results["helper_stats"][wl.name].setdefault(key, []).append(stats)
            if not stats:
                env.log(f"  (no stats file from {key}: REDIS_GOCACHE_STATS_FILE not honoured?)")
        mem_after = used_memory(env)
        cold_stats = results["helper_stats"][wl.name]["helper_cold"][-1]
        put_bytes = cold_stats.get("put_bytes", 0)
        results["redis_memory"][wl.name].append({
            "used_memory_delta": mem_after - mem_before,
            "put_bytes": put_bytes,
            "keys": env.client().dbsize(),
            "per_byte": (mem_after - mem_before) / put_bytes if put_bytes else None,
        })
    env.discard(env.work / "runs")


# -- measuring the helper alone --------------------------------------------------------------


def helper_round(env: Env, plan: Plan, results: dict[str, Any]) -> None:
    """Latency of each kind of request, 2 in flight, against a fresh Redis; startup time."""
    assert env.helper is not None
    lat: dict[str, list[float]] = results["latency"]
    env.client().flushall()
    warm_dir = env.fresh_dir("micro-warm")
    new_dir = env.fresh_dir("micro-new")
    small = [(os.urandom(32), os.urandom(plan.small_body)) for _ in range(plan.small_count)]
    blobs = [(os.urandom(32), os.urandom(plan.blob_body)) for _ in range(plan.blob_count)]

    def start(cache_dir: Path, stats: Path | None = None) -> Helper:
        helper_env = env.helper_env(cache_dir, stats)
        # Every helper here has the same command tag (this process is their parent), so the
        # first one's manifest would have the new-dir helper prefetch the very entries it is
        # timing: the Redis latencies would then be those of a race with the prefetcher.
        helper_env["REDIS_GOCACHE_NO_PREFETCH"] = "1"
        return Helper(env.helper or [], helper_env,
                      str(env.work / "logs" / f"helper-{time.monotonic_ns()}.err"))

    def keep(key: str, timed: list[Timed]) -> None:
        lat.setdefault(key, []).extend(t.seconds for t in timed)

    h = start(warm_dir)
    keep("put", h.run(Op("put", a, b) for a, b in small))
    keep("put_1mib", h.run(Op("put", a, b) for a, b in blobs))
    results["close_after_puts"].append(h.close())

    h = start(warm_dir)
    bodies = dict(small + blobs)  # responses come in any order: match them by action
    got = h.run(Op("get", a) for a, _ in small)
    for t in got:
        cacheclient.check_hit(t, bodies[t.op.action], read_body=False)
    keep("local_hit", got)
    h.close()

    stats_path = env.work / "logs" / f"micro-{time.monotonic_ns()}.stats"
    h = start(new_dir, stats_path)
    got_small = h.run(Op("get", a) for a, _ in small)
    got_blob = h.run(Op("get", a) for a, _ in blobs)
    for i, t in enumerate(got_small + got_blob):
        # Read back a few bodies of each kind; sizes and output IDs of all.
        cacheclient.check_hit(t, bodies[t.op.action], read_body=i % 50 == 0)
    keep("redis_inline_hit", got_small)
    keep("redis_blob_hit", got_blob)
    h.close()
    stats = read_stats(stats_path)
    want = plan.small_count + plan.blob_count
    if stats:
        results["remote_counts"].append({k: stats.get(k, 0) for k in
                                         ("hits", "remote_hits", "local_hits", "misses")})
        if stats.get("hits") != want:
            env.log(f"  warning: {stats.get('hits')} hits, expected {want}: {stats}")

    for _ in range(plan.startups):
        h = start(env.fresh_dir("startup"))
        results["startup"].append(h.startup_seconds)
        h.close()
        results["python_startup"].append(python_startup(env.python))
    env.discard(env.work / "runs")


def python_startup(python: str, timeout: float = 10.0) -> float:
    """Seconds from exec to the first line of a Python that prints one line and nothing else:
    the floor under the helper's capability line (interpreter, site, .pth files)."""
    start = time.perf_counter()
    proc = subprocess.Popen([python, "-c", "print('{}', flush=True)"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"python did not start within {timeout}s")
        proc.stdout.readline()
        return time.perf_counter() - start
    finally:
        proc.stdout.close()
        proc.wait(timeout)


def rss_round(env: Env, plan: Plan, results: dict[str, Any]) -> None:
    """Peak RSS of the helper: idle, during a put, and during a Redis get of one big body."""
    assert env.helper is not None
    env.client().flushall()
    body = os.urandom(plan.rss_body)
    action = os.urandom(32)
    rss: dict[str, Any] = {"body_bytes": plan.rss_body}

    def start(cache_dir: Path) -> Helper:
        return Helper(env.helper or [], env.helper_env(cache_dir, None),
                      str(env.work / "logs" / f"rss-{time.monotonic_ns()}.err"), track_rss=True)

    h = start(env.fresh_dir("rss-idle"))
    h.close()
    rss["idle"] = h.peak_rss

    h = start(env.fresh_dir("rss-put"))
    (put,) = h.run([Op("put", action, body)], timeout=600)
    rss["put_seconds"] = put.seconds
    rss["put_close_seconds"] = h.close(timeout=600)
    rss["put"] = h.peak_rss

    h = start(env.fresh_dir("rss-get"))
    (got,) = h.run([Op("get", action)], timeout=600)
    cacheclient.check_hit(got, body, read_body=True)
    rss["get_seconds"] = got.seconds
    h.close(timeout=600)
    rss["get"] = h.peak_rss
    results["rss"] = rss
    env.client().flushall()
    env.discard(env.work / "runs")


# -- profiling -------------------------------------------------------------------------------

_PROFILE_WRAPPER = """#!/bin/sh
# py-spy prints its own messages on stdout, which is the protocol's: give it stderr, and hand
# the helper the real stdout through fd 3. --gil keeps only samples of the thread holding the
# GIL: the helper's Python CPU time, without threads parked on a queue or a pipe read.
# The command line is the same for every build: py-spy becomes the helper's parent, and the
# helper may read its parent's command line (prefetch manifests are keyed by it).
exec 3>&1 1>&2
exec {pyspy} record --gil --rate {rate} --format raw --output "{out}" -- \\
    {python} -c 'import os, sys, runpy; os.dup2(3, 1); os.close(3); {run}'
"""


def profile(env: Env, wl: Workload, out_dir: Path) -> dict[str, Any]:
    """Build cold, new runner and warm runner under py-spy; return the top hotspots of each."""
    assert env.helper is not None
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise RuntimeError("--profile needs py-spy (pip install py-spy)")
    if env.helper[1:3] == ["-m", "redis_gocache"]:
        python, run = env.helper[0], "sys.argv = [\"redis-gocache\"]; " \
            "runpy.run_module(\"redis_gocache\", run_name=\"__main__\", alter_sys=True)"
    else:
        python = env.python
        # As a script, sys.path[0] would be the script's directory, where the copy lives.
        run = f"sys.argv = [{env.helper[0]!r}]; " \
            f"sys.path.insert(0, {os.path.dirname(env.helper[0])!r}); " \
            f"runpy.run_path({env.helper[0]!r}, run_name=\"__main__\")"
    report: dict[str, Any] = {}
    env.client().flushall()
    out_dir.mkdir(parents=True, exist_ok=True)
    current = out_dir / "pyspy-current.txt"  # one helper per build in these workloads
    wrapper = out_dir / "wrapper.sh"
    wrapper.write_text(_PROFILE_WRAPPER.format(pyspy=pyspy, out=current, python=python,
                                               rate=PROFILE_RATE, run=run.replace("'", "\"")))
    wrapper.chmod(0o755)
    cold_dir, new_dir = env.fresh_dir("prof-cold"), env.fresh_dir("prof-new")
    for key, cache_dir in (("helper_cold", cold_dir), ("helper_new", new_dir),
                           ("helper_warm", new_dir)):
        raw_dir = out_dir / f"{wl.name}-{key}"
        raw_dir.mkdir(parents=True, exist_ok=True)
        current.unlink(missing_ok=True)
        go_env = env.go_env(env.fresh_dir(f"prof-{key}-gocache"),
                            {"GOCACHEPROG": go_quote([str(wrapper)])})
        go_env.update(env.helper_env(cache_dir / "local", None, base={}))
        seconds = run_go(env, wl, go_env, COLD_TIMEOUT, f"profile-{wl.name}-{key}")
        deadline = time.monotonic() + STATS_WAIT
        while not current.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if current.exists():
            os.replace(current, raw_dir / "helper-0.txt")
        report[key] = {"seconds_under_pyspy": seconds, **hotspots(raw_dir)}
        env.log(f"  profiled {wl.name} {key}: {seconds:.2f} s, raw stacks in {raw_dir}")
    env.discard(env.work / "runs")
    return report


_LINE_NO = re.compile(r":\d+\)$")

PROFILE_RATE = 250
"""py-spy samples per second."""


def hotspots(raw_dir: Path, top: int = 12) -> dict[str, Any]:
    """Aggregate py-spy's collapsed stacks: samples by leaf frame (self) and by any frame."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for path in raw_dir.glob("helper-*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            total += count
            # "func (path/file.py:123)" -> "func (path/file.py)": one row per function.
            frames = [_LINE_NO.sub(")", f) for f in stack.split(";")]
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, n / total) for f, n in c.most_common(top)] if total else []
    return {"samples": total, "cpu_seconds": total / PROFILE_RATE, "self": share(own),
            "inclusive": share(collections.Counter(
                {f: n for f, n in inclusive.items() if "redis_gocache" in f}))}


# -- reporting -------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def percentile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summarize(results: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Medians, ratios and targets from the raw samples."""
    summary: dict[str, Any] = {"builds": {}, "latency": {}, "targets": []}
    for wl, times in results["builds"].items():
        warm = median(times.get("go_warm", []))
        rows = {}
        for key in SCENARIOS:
            xs = times.get(key, [])
            m = median(xs)
            # Also the median of per-rep ratios: each rep's scenarios ran back to back, so a
            # slow phase of the machine cancels out of their ratio.
            paired = [x / w for x, w in zip(xs, times.get("go_warm", []), strict=False) if w]
            rows[key] = {
                "median": m, "min": min(xs) if xs else None, "max": max(xs) if xs else None,
                "n": len(xs), "ratio_to_go_warm": m / warm if m is not None and warm else None,
                "paired_ratio": median(paired),
            }
        summary["builds"][wl] = rows
        for runner in ("new", "warm"):
            ours, base = times.get(f"helper_{runner}", []), times.get(f"baseline_{runner}", [])
            ours_m, base_m = median(ours), median(base)
            if ours_m is not None and base_m:
                summary.setdefault("vs_baseline", {}).setdefault(wl, {})[runner] = {
                    "ratio_of_medians": ours_m / base_m,
                    "paired_ratio": median([o / b for o, b in zip(ours, base, strict=False)]),
                }
    for key, xs in results["latency"].items():
        summary["latency"][key] = {"p50": percentile(xs, 0.5), "p99": percentile(xs, 0.99),
                                   "n": len(xs)}
    summary["python_startup"] = {"p50": percentile(results["python_startup"], 0.5)}
    summary["startup"] = {"p50": percentile(results["startup"], 0.5),
                          "p90": percentile(results["startup"], 0.9),
                          "max": max(results["startup"], default=None),
                          "n": len(results["startup"])}
    mem = {}
    for wl, recs in results["redis_memory"].items():
        per_byte = [r["per_byte"] for r in recs if r["per_byte"] is not None]
        mem[wl] = {"per_byte": median(per_byte),
                   "used_memory_delta": median([r["used_memory_delta"] for r in recs]),
                   "put_bytes": median([r["put_bytes"] for r in recs]),
                   "keys": median([r["keys"] for r in recs])}
    summary["redis_memory"] = mem

    targets: list[dict[str, Any]] = []

    def target(name: str, value: float | None, limit: float, unit: str) -> None:
        ok = None if value is None else value <= limit
        targets.append({"target": name, "value": value, "limit": limit, "unit": unit,
                        "pass": ok})

    wl = "std" if "std" in summary["builds"] else "module"
    what = "go build std" if wl == "std" else "module go test"
    rows = summary["builds"].get(wl, {})
    if rows:
        new = rows["helper_new"]["median"]
        floor = rows["copy_build"]["median"]
        target(f"warm runner {what} vs Go warm", rows["helper_warm"]["ratio_to_go_warm"],
               1.25, "x")
        summary["python_floor_ratio"] = rows["python_floor"]["ratio_to_go_warm"]
        target(f"new runner {what} vs Go warm", rows["helper_new"]["ratio_to_go_warm"],
               3.5, "x")
        target(f"new runner {what} vs copy floor",
               new / floor if new is not None and floor else None, 2.0, "x")
        node, warm = rows["helper_node"]["median"], rows["helper_warm"]["median"]
        target(f"new pod on a warm node {what} vs warm runner",
               node / warm if node is not None and warm else None, 1.10, "x")
    target("capability line (p50)", summary["startup"]["p50"], 0.060, "s")
    rss = results.get("rss") or {}
    size = f"{rss.get('body_bytes', plan.rss_body) // MiB} MiB"
    target(f"helper peak RSS, {size} put", rss.get("put"), 80 * MiB, "B")
    target(f"helper peak RSS, {size} get", rss.get("get"), 80 * MiB, "B")
    summary["targets"] = targets
    return summary


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if x >= 10 else f"{x:.3f}"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.2f}"


def fmt_mib(x: float | None) -> str:
    return "-" if x is None else f"{x / MiB:.1f} MiB"


def print_report(results: dict[str, Any], summary: dict[str, Any]) -> None:
    meta = results["meta"]
    print()
    print(f"redis-gocache benchmark, {meta['started']}: {meta['go_version']}, "
          f"Python {meta['python']}, {meta['cpus']} CPUs, {meta['reps']} rep(s), "
          f"helper: {meta['helper']}")
    print()
    print("Builds: wall seconds, median (min-max) of the reps; x = ratio of medians to Go's "
          "warm cache;\n  paired = median of the per-rep ratios (less sensitive to a noisy "
          "machine)")
    print(f"  {'workload':9}{'scenario':44}{'median':>9}{'min':>9}{'max':>9}{'x':>8}"
          f"{'paired':>8}")
    for wl, rows in summary["builds"].items():
        title = results["workloads"][wl]
        print(f"  {title}")
        for key, row in rows.items():
            if not row["n"]:
                continue
            ratio, paired = row["ratio_to_go_warm"], row["paired_ratio"]
            print(f"  {wl:9}{SCENARIOS[key]:44}{fmt_s(row['median']):>9}"
                  f"{fmt_s(row['min']):>9}{fmt_s(row['max']):>9}"
                  f"{'' if ratio is None else f'{ratio:.2f}':>8}"
                  f"{'' if paired is None else f'{paired:.2f}':>8}")
    for wl, per in summary.get("vs_baseline", {}).items():
        print()
        print(f"  {wl}: this helper vs the baseline (--baseline {meta.get('baseline')}), "
              "< 1 is faster")
        for runner, r in per.items():
            print(f"    {runner} runner: {r['ratio_of_medians']:.3f}x (ratio of medians), "
                  f"{r['paired_ratio']:.3f}x (median of per-rep ratios)")
    if any(results["helper_stats"].values()):
        print()
        print("Helper counters (last rep; summed over the helper processes of the build)")
        print(f"  {'workload':9}{'scenario':13}{'procs':>6}{'gets':>7}{'local':>7}{'remote':>7}"
              f"{'miss':>7}{'puts':>7}{'put MiB':>9}{'hit MiB':>9}{'redis wait s':>13}")
        for wl, per in results["helper_stats"].items():
            for key, recs in per.items():
                s = recs[-1] if recs else {}
                if not s:
                    continue
                print(f"  {wl:9}{key:13}{s['processes']:>6.0f}{s['gets']:>7.0f}"
                      f"{s['local_hits']:>7.0f}{s['remote_hits']:>7.0f}{s['misses']:>7.0f}"
                      f"{s['puts']:>7.0f}{s['put_bytes'] / MiB:>9.1f}{s['hit_bytes'] / MiB:>9.1f}"
                      f"{s['remote_wait_seconds']:>13.2f}")
    if summary["latency"]:
        print()
        print("Helper alone, 2 requests in flight (ms, request written to response read)")
        names = {"local_hit": "get, local hit (2 KiB)",
                 "redis_inline_hit": "get, Redis inline hit (2 KiB)",
                 "redis_blob_hit": "get, Redis blob hit (1 MiB)",
                 "put": "put (2 KiB)", "put_1mib": "put (1 MiB)"}
        print(f"  {'request':34}{'p50':>9}{'p99':>9}{'n':>7}")
        for key, name in names.items():
            row = summary["latency"].get(key)
            if row:
                print(f"  {name:34}{fmt_ms(row['p50']):>9}{fmt_ms(row['p99']):>9}{row['n']:>7}")
        counts = results["remote_counts"]
        if counts:
            remote = sum(c["remote_hits"] for c in counts)
            hits = sum(c["hits"] for c in counts)
            if remote < hits:
                print(f"  (of the {hits} gets timed as Redis hits, {remote} went to Redis; the "
                      "rest the helper had already fetched)")
        closes = results["close_after_puts"]
        if closes:
            print(f"  {'close after the puts (uploads)':34}{fmt_ms(median(closes)):>9}")
        st = summary["startup"]
        print(f"  {'exec to capability line':34}{fmt_ms(st['p50']):>9}{'':>9}{st['n']:>7}"
              f"   (p90 {fmt_ms(st['p90'])}, max {fmt_ms(st['max'])})")
        floor = summary["python_startup"]["p50"]
        print(f"  {'  floor: python -c print()':34}{fmt_ms(floor):>9}"
              "   (the helper's interpreter: its start-up and site)")
    rss = results.get("rss")
    if rss:
        print()
        size = rss["body_bytes"] // MiB
        print(f"Helper peak RSS (VmHWM): idle {fmt_mib(rss['idle'])}; "
              f"{size} MiB put {fmt_mib(rss['put'])} ({rss['put_seconds']:.2f} s, close "
              f"{rss['put_close_seconds']:.2f} s); {size} MiB Redis get {fmt_mib(rss['get'])} "
              f"({rss['get_seconds']:.2f} s)")
    for wl, m in summary["redis_memory"].items():
        if m["per_byte"] is not None:
            print(f"Redis memory after the {wl} builds: {fmt_mib(m['used_memory_delta'])} "
                  f"used_memory for {fmt_mib(m['put_bytes'])} put, {m['per_byte']:.3f} "
                  f"bytes per cached byte, {m['keys']:.0f} keys")
    print()
    print("Targets")
    for t in summary["targets"]:
        v, lim = t["value"], t["limit"]
        if t["unit"] == "x":
            vs, ls = ("-" if v is None else f"{v:.2f}x"), f"{lim:.2f}x"
        elif t["unit"] == "s":
            vs, ls = fmt_ms(v) + " ms", fmt_ms(lim) + " ms"
        else:
            vs, ls = fmt_mib(v), fmt_mib(lim)
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["pass"]]
        print(f"  {t['target']:52}{vs:>12}  <= {ls:<10}{verdict}")
    floor = summary.get("python_floor_ratio")
    if floor is not None:
        print(f"  (the Python floor, bench/floor_helper.py, took {floor:.2f}x Go warm in this run:"
              " no Python helper's warm runner can do better)")
    prof = results.get("profile")
    if prof:
        print()
        print("Profile (py-spy --gil: the helper's Python CPU; share of those samples)")
        for key, p in prof.items():
            print(f"  {key}: {p['cpu_seconds']:.2f} s of Python CPU in a build of "
                  f"{p['seconds_under_pyspy']:.2f} s under py-spy")
            for frame, share in p["self"][:8]:
                print(f"    self {share:6.1%}  {frame}")
            for frame, share in p["inclusive"][:6]:
                print(f"    incl {share:6.1%}  {frame}")
    print()
    print(f"Run took {datetime.timedelta(seconds=round(meta['seconds']))}.")


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 rep, the generated module only, small bodies")
    ap.add_argument("--reps", type=int,
                    help="repetitions of every scenario [default: 5]; 0 with --profile: "
                    "profile only")
    ap.add_argument("--json", metavar="FILE", help="write every figure to FILE")
    ap.add_argument("--helper", metavar="CMD",
                    help="the helper command [default: the redis-gocache console script]")
    ap.add_argument("--no-helper", action="store_true",
                    help="measure Go's own cache and the copy floor only")
    ap.add_argument("--workloads", help="comma-separated subset of std,module")
    ap.add_argument("--profile", metavar="DIR",
                    help="afterwards, build again under py-spy and report helper hotspots")
    ap.add_argument("--live", action="store_true",
                    help="run the installed console script itself, not a copy of the package "
                    "taken at start (with an editable install, edits during the run count)")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also run the new and warm runners with the redis_gocache package of "
                    "another checkout DIR (say, main's), interleaved with this one's, and "
                    "print their ratios")
    ap.add_argument("--helper-env", metavar="NAME=VALUE", action="append", default=[],
                    help="a setting for every helper, the baseline's too (repeatable): say "
                    "REDIS_GOCACHE_COMPRESSION=none, so that a baseline without compression "
                    "can read what this helper's cold build stored")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--work-dir", metavar="DIR",
                    help="where the work directory goes (every cache, Go's and the helper's) "
                    "[default: the system temporary directory]")
    args = ap.parse_args(argv)

    settings = dict(item.partition("=")[::2] for item in args.helper_env)
    if any(not name.startswith("REDIS_") for name in settings):
        ap.error("--helper-env takes the helper's own settings: REDIS_URL or REDIS_GOCACHE_*")
    plan = QUICK if args.quick else FULL
    if args.reps is not None:
        plan = dataclasses.replace(plan, reps=max(0, args.reps))
    if args.workloads:
        plan = dataclasses.replace(plan, workloads=tuple(args.workloads.split(",")))
    helper, pythonpath, how = (None, False, "disabled") if args.no_helper else \
        find_helper(args.helper)
    signal.signal(signal.SIGTERM, _terminate)

    go = _go_binary()
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="redis-gocache-bench-", dir=args.work_dir))
    (work / "logs").mkdir()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - began:7.1f}s] {msg}", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, work, True)
        # Runs first (last in, first out), also with --keep: every repetition's caches.
        stack.callback(shutil.rmtree, work / "trash", True)
        server = stack.enter_context(RedisServer())
        env = Env(work=work, go=go, gopath=work / "gopath", redis=server, helper=helper,
                  helper_pythonpath=pythonpath, log=log, helper_settings=settings)
        if helper is not None and how == "console script" and not args.live:
            helper, commit, env.python = snapshot_helper(work)
            how = f"a copy of redis_gocache at {commit}"
            env.helper = helper
        if args.baseline and helper is not None:
            env.baseline, base_commit, _ = snapshot_helper(work, Path(args.baseline).resolve(),
                                                           "baseline")
            how += f"; baseline: a copy of {args.baseline}/redis_gocache at {base_commit}"
        log(f"work dir {work}; redis-server on port {server.port}; go {go}; helper: {how}")
        if helper is not None:
            helper = _check_helper(env, explicit=bool(args.helper))
            env.helper = helper
            if helper is None:
                how = "failed its handshake: helper scenarios skipped"
        wls = _workloads(env, plan)
        results: dict[str, Any] = {
            "meta": {
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "go_version": _go_version(go), "python": platform.python_version(),
                "cpus": os.cpu_count(), "reps": plan.reps, "quick": args.quick,
                "helper": how if helper is None else f"{go_quote(helper)} ({how})",
                "plan": dataclasses.asdict(plan), "baseline": args.baseline,
                "helper_env": settings,
            },
            "workloads": {w.name: w.title for w in wls},
            "builds": {w.name: {} for w in wls},
            "helper_stats": {w.name: {} for w in wls},
            "redis_memory": {w.name: [] for w in wls},
            "latency": {}, "startup": [], "python_startup": [], "close_after_puts": [],
            "remote_counts": [],
            "rss": None,
        }
        for rep in range(plan.reps):
            log(f"rep {rep + 1}/{plan.reps}")
            for wl in wls:
                build_round(env, wl, rep, results)
            if helper is not None:
                helper_round(env, plan, results)
                log(f"  helper alone: {len(results['latency'].get('put', []))} samples so far")
            if args.json:  # a long run that is cut short still leaves its figures
                results["meta"]["seconds"] = time.perf_counter() - began
                _write_json(args.json, results, summarize(results, plan))
        if helper is not None:
            if plan.reps:
                log(f"peak RSS with a {plan.rss_body // MiB} MiB body")
                rss_round(env, plan, results)
            if args.profile:
                out = Path(args.profile).resolve()
                results["profile"] = profile(env, wls[0], out)
        results["meta"]["seconds"] = time.perf_counter() - began
        summary = summarize(results, plan)
        print_report(results, summary)
        if args.json:
            _write_json(args.json, results, summary)
            log(f"figures written to {args.json}")
    return 0


def _write_json(path: str, results: dict[str, Any], summary: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"results": results, "summary": summary}, f, indent=1)
    os.replace(tmp, path)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM: unwind, so the work dir and redis-server are cleaned up."""
    raise SystemExit(128 + signum)


def _go_binary() -> str:
    """The real ``go`` binary: a pyenv shim in front of it would add ~80 ms to every build."""
    found = shutil.which("go")
    if found is None:
        raise SystemExit("go is not on PATH")
    root = subprocess.run([found, "env", "GOROOT"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()
    real = Path(root) / "bin" / "go"
    return str(real) if real.is_file() else found


def _go_version(go: str) -> str:
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=True,
                         timeout=60, env={**os.environ, "GOTOOLCHAIN": "local"})
    return out.stdout.strip().removeprefix("go version ")


def _workloads(env: Env, plan: Plan) -> list[Workload]:
    wls = []
    for name in plan.workloads:
        if name == "std":
            wls.append(Workload("std", "go build std", ("build", "std"), env.work))
        elif name == "module":
            mod = gomodule.write_module(env.work / "module")
            wls.append(Workload("module", f"go test ./... of a generated {gomodule.PACKAGES}"
                                "-package module", ("test", "./..."), mod))
        else:
            raise SystemExit(f"unknown workload {name!r} (std, module)")
    return wls


def _check_helper(env: Env, *, explicit: bool) -> list[str] | None:
    """Start the helper once; a helper that cannot even say hello is skipped (or fatal)."""
    assert env.helper is not None
    try:
        h = Helper(env.helper, env.helper_env(env.work / "probe", None),
                   str(env.work / "logs" / "probe.err"))
        h.close()
    except (HelperFailed, OSError) as exc:
        if explicit:
            raise
        env.log(f"helper {env.helper} does not work yet, skipping its scenarios: {exc}")
        return None
    return env.helper


if __name__ == "__main__":
    sys.exit(main())
