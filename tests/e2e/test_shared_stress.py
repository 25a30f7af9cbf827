"""Eight helpers on one local directory, real ``go build`` and ``go test``, a trim in a loop.

The runner pods of a node share one ``--cache-dir`` (docs/kubernetes.md). Here eight workers,
each a "pod" with its own empty ``GOCACHE``, build the same program and test packages of
their own and shared ones, all at once, through helpers sharing one directory, while

- a trim runs in a loop, and the helpers' automatic trims after each run, with a size cap
  of a third of what the builds use, and
- a thread makes hours pass: it sets each new output file's mtime three hours back (older
  than the trim's ``PROTECT``) and the automatic trim's marker two days back, so every trim
  may evict anything and every helper trims after its run, while builds hold ``DiskPath``\\ s
  whose use marks are still queued;
- a reader checks, all along, that every output file it opens is whole (its SHA-256 is its
  name) and every kept-answers file parses.

Every build and test must pass and print the right thing, no helper may count a put or get
error (an ``Err`` answer fails cmd/go), and afterwards every file in the directory is whole.
Once with Redis (evicted outputs come back from it), once without (they are built again).
The module is stdlib-only and small (``strings``, ``strconv``, ``testing``), and every worker
does a fixed number of rounds: bounded in time on two cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from redis_gocache import answers
from redis_gocache.ops.trim import MARKER, TrimResult, trim_root
from redis_gocache.store.disk import read_action_log
from tests.gocmd import go_quote, helper_command, helper_env
from tests.redisproc import RedisServer

pytestmark = pytest.mark.e2e

WORKERS = 8
ROUNDS = 2
GO_TIMEOUT = 300.0
DAY = 86400.0
CAP_SHARE = 3
"""The trim's size cap is this fraction of what the programs and tests here need: each trim
that finds no helper running evicts two thirds, which the next builds fetch or build again."""

COMMON = '''package common

import "strconv"

// Label joins a name and a number.
func Label(name string, n int) string { return name + "-" + strconv.Itoa(n) }
'''

PKG = '''package p{i}

import (
	"strings"

	"example.com/shared/common"
)

// Value is package {i}'s answer.
func Value() string {{ return strings.ToUpper(common.Label("p{i}", {i} * {i})) }}
'''

PKG_TEST = '''package p{i}

import "testing"

func TestValue(t *testing.T) {{
	if got := Value(); got != "P{i}-{sq}" {{
		t.Fatalf("Value = %q", got)
	}}
}}
'''

MAIN = '''package main

import (
	"os"
	"strings"

{imports}
)

func main() {{
	os.Stdout.WriteString(strings.Join([]string{{{calls}}}, " ") + "\\n")
}}
'''

PACKAGES = 4
"""Test packages p0..p3: worker i tests p(i % 4) and p((i + 1) % 4), so two or more
workers test each package (identical) and each worker a pair of its own (different)."""

EXPECTED = " ".join(f"P{i}-{i * i}" for i in range(PACKAGES))


def write_module(root: Path) -> Path:
    files = {"go.mod": "module example.com/shared\n\ngo 1.22\n", "common/common.go": COMMON}
    for i in range(PACKAGES):
        files[f"p{i}/p.go"] = PKG.format(i=i)
        files[f"p{i}/p_test.go"] = PKG_TEST.format(i=i, sq=i * i)
    files["cmd/app/main.go"] = MAIN.format(
        imports="\n".join(f'\t"example.com/shared/p{i}"' for i in range(PACKAGES)),
        calls=", ".join(f"p{i}.Value()" for i in range(PACKAGES)))
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class Worker:
    """One runner pod: a checkout at the shared path, its own empty GOCACHE."""

    def __init__(self, index: int, base: Path, module: Path, env: dict[str, str]) -> None:
        self.index = index
        home = base / f"pod-{index}"
        (home / "gocache").mkdir(parents=True)
        self.binary = home / "app"
        self.stats = home / "stats.jsonl"
        self.module = module
        self.env = {**env, "GOCACHE": str(home / "gocache"),
                    "REDIS_GOCACHE_STATS_FILE": str(self.stats)}
        self.failures: list[str] = []

    def go(self, *args: str) -> str:
        proc = subprocess.run(["go", *args], cwd=self.module, env=self.env, text=True,
                              capture_output=True, timeout=GO_TIMEOUT, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            self.failures.append(f"pod {self.index}: go {' '.join(args)} exited "
                                 f"{proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        return proc.stdout

    def run(self) -> None:
        try:
            for r in range(ROUNDS):
                self.go("build", "-o", str(self.binary), "./cmd/app")
                out = subprocess.run([str(self.binary)], capture_output=True, text=True,
                                     timeout=30).stdout.strip()
                if out != EXPECTED:
                    self.failures.append(f"pod {self.index} round {r}: the program printed "
                                         f"{out!r}")
                pkgs = [f"./p{self.index % PACKAGES}", f"./p{(self.index + 1) % PACKAGES}"]
                flags = ["-count=1"] if r == ROUNDS - 1 else []  # run, not only cached
                out = self.go("test", *flags, *pkgs)
                if out.count("ok ") != 2:
                    self.failures.append(f"pod {self.index} round {r}: go test said {out!r}")
        except Exception as exc:  # noqa: BLE001 - reported by the test, with the others
            self.failures.append(f"pod {self.index}: {exc!r}")

    def counters(self) -> dict[str, int]:
        total: dict[str, int] = {"runs": 0}
        for line in self.stats.read_text().splitlines():
            row = json.loads(line)
            total["runs"] += 1
            for key in ("gets", "get_errors", "puts", "put_errors", "local_hits",
                        "remote_hits"):
                total[key] = total.get(key, 0) + int(row[key])
        return total


def whole_outputs(root: Path, sample: int | None = None) -> list[str]:
    """Output files whose content is not their name's SHA-256 (a sample of them, or all)."""
    paths = [p for sub in (root / "o").glob("*") for p in sub.iterdir()]
    if sample is not None:
        paths = random.sample(paths, min(sample, len(paths)))
    bad = []
    for path in paths:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # trimmed meanwhile
        if hashlib.sha256(data).hexdigest() != path.name:
            bad.append(f"{path}: {len(data)} bytes")
    return bad


def broken_answers(root: Path) -> list[str]:
    bad = []
    for marker in (root / "m").glob("*"):
        if marker.name.endswith(".tmp"):
            continue  # being written
        try:
            size = marker.stat().st_size
        except FileNotFoundError:
            continue
        if size and not answers.load(str(marker), str(root)):
            bad.append(str(marker))
    return bad


def stress(base: Path, go_env: dict[str, str], redis_url: str | None) -> None:
    module = write_module(base / "checkout")
    cache_dir = base / "node-cache"
    env = {**helper_env(cache_dir, redis_url), **go_env}
    env.update(GOCACHEPROG=go_quote(helper_command()))
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    # The first pod on the node fills the directory (and Redis) while nothing else runs.
    workers = [Worker(i, base, module, env) for i in range(WORKERS)]
    first = Worker(WORKERS, base, module, env)
    first.run()
    assert not first.failures, first.failures[0]
    root = cache_dir / "v1"
    cap = sum(p.stat().st_size for sub in (root / "o").glob("*") for p in sub.iterdir()) \
        // CAP_SHARE
    for w in workers:
        w.env["REDIS_GOCACHE_TRIM_MAX_SIZE"] = str(cap)  # the automatic trims' cap too

    stop = threading.Event()
    trims: list[TrimResult] = []
    problems: list[str] = []

    def trim_loop() -> None:
        while not stop.wait(0.3):
            trims.append(trim_root(str(root), max_age=DAY, max_size=cap))

    evicted: set[str] = set()  # output files seen once and gone later (any trim's doing)

    def time_passes() -> None:
        # Each file is made old once (as time passes once): the trim knows the file it chose
        # by inode and ctime, which a utime changes, as a use does.
        seen: set[str] = set()
        aged: set[tuple[str, int]] = set()
        while not stop.wait(0.5):
            old = time.time() - 3 * 3600
            now_there = set()
            for sub in (root / "o").glob("*"):
                for path in sub.iterdir():
                    now_there.add(path.name)
                    try:
                        key = (path.name, path.stat().st_ino)
                        if key not in aged:
                            os.utime(path, (old, old))
                            aged.add(key)
                    except FileNotFoundError:
                        pass
            evicted.update(seen - now_there)
            seen = now_there
            try:
                os.utime(root / MARKER, (old - DAY, old - DAY))
            except FileNotFoundError:
                pass

    def reader() -> None:
        while not stop.wait(0.2):
            problems.extend(whole_outputs(root, sample=50))
            problems.extend(broken_answers(root))

    threads = [threading.Thread(target=w.run) for w in workers]
    helpers = [threading.Thread(target=f) for f in (trim_loop, time_passes, reader)]
    for t in helpers + threads:
        t.start()
    for t in threads:
        t.join(GO_TIMEOUT * ROUNDS * 2)
    stop.set()
    for t in helpers:
        t.join(60)

    failures = [f for w in workers for f in w.failures]
    assert not failures, f"{len(failures)} failed commands; the first:\n" + "\n".join(failures[:3])
    assert not problems, problems[:5]
    counters = [w.counters() for w in workers]
    for c in counters:
        assert c["get_errors"] == 0 and c["put_errors"] == 0, c
    removed = sum(t.outputs_removed for t in trims)
    assert len(evicted) > 10, "nothing was evicted: the test did not test the trim"
    # Afterwards: every file whole, every record well-formed, no debris of a torn write.
    final = trim_root(str(root), max_age=DAY, max_size=cap)
    assert final.outputs_pending == 0  # nothing runs: chosen and removed in one pass
    assert not whole_outputs(root)
    assert not broken_answers(root)
    log = (root / "actions").read_bytes()
    assert len(log) % 177 == 0 and len(read_action_log(str(root / "actions"))) == len(log) // 177
    debris = [p.name for p in root.iterdir() if p.name.endswith(".tmp")]
    debris += [p.name for p in (root / "m").iterdir() if p.name.endswith(".tmp")]
    assert not debris, debris
    print(f"\n{'with' if redis_url else 'without'} Redis: {len(evicted)} outputs evicted; the "
          f"trim loop: {len(trims)} trims, {removed} removed, "
          f"{sum(1 for t in trims if t.outputs_pending)} left them for later; "
          f"gets {sum(c['gets'] for c in counters)}, local hits "
          f"{sum(c['local_hits'] for c in counters)}, redis hits "
          f"{sum(c['remote_hits'] for c in counters)}, puts {sum(c['puts'] for c in counters)}")


def test_eight_helpers_one_directory_without_redis(
    tmp_path: Path, go_env: dict[str, str]
) -> None:
    stress(tmp_path, go_env, None)


def test_eight_helpers_one_directory_with_redis(tmp_path: Path, go_env: dict[str, str]) -> None:
    with RedisServer() as server:
        stress(tmp_path, go_env, server.url)
