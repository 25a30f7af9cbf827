"""The real Go toolchain building through the helper, against a real redis-server.

One seeded Redis per module: runner A builds a small stdlib-only module cold and fills
Redis; runners B (same checkout path) and C (another path, ``-trimpath``) start with empty
caches and must be served from Redis. Cold builds of the standard library cost seconds on
two cores, so the module does as few of them as it can: A, A' (``-trimpath``) and one
local-mode runner.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.gocmd import go_quote, helper_command, helper_env
from tests.redisproc import RedisServer

pytestmark = pytest.mark.e2e

GO_TIMEOUT = 240.0
"""Seconds one ``go`` command may take; a cold build with the helper takes about 15."""

HELLO = "hello, CACHE! 6 * 7 = 42"

MODULE = {
    "go.mod": "module example.com/cachedemo\n\ngo 1.22\n",
    "greet/greet.go": """package greet

import "strings"

// Hello greets name loudly.
func Hello(name string) string {
	return "hello, " + strings.ToUpper(name) + "!"
}
""",
    "greet/greet_test.go": """package greet

import "testing"

func TestHello(t *testing.T) {
	if got := Hello("go"); got != "hello, GO!" {
		t.Fatalf("Hello = %q", got)
	}
}
""",
    "calc/calc.go": """package calc

import "fmt"

// Product formats a multiplication.
func Product(a, b int) string { return fmt.Sprintf("%d * %d = %d", a, b, a*b) }
""",
    "calc/calc_test.go": """package calc

import "testing"

func TestProduct(t *testing.T) {
	if got := Product(6, 7); got != "6 * 7 = 42" {
		t.Fatalf("Product = %q", got)
	}
}
""",
    "cmd/hello/main.go": """package main

import (
	"fmt"

	"example.com/cachedemo/calc"
	"example.com/cachedemo/greet"
)

func main() { fmt.Println(greet.Hello("cache"), calc.Product(6, 7)) }
""",
}

COUNTERS = ("gets", "hits", "local_hits", "remote_hits", "misses", "get_errors", "puts",
            "put_errors")  # fmt: skip


def write_module(root: Path) -> Path:
    for name, text in MODULE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@dataclasses.dataclass
class Runner:
    """One CI runner: a checkout, its own GOCACHE and helper directory, maybe a Redis."""

    name: str
    checkout: Path
    env: dict[str, str]
    stats_file: Path
    helper_dir: Path

    def go(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["go", *args],
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=GO_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, (
            f"runner {self.name}: go {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
        )
        return proc

    def take_stats(self) -> dict[str, Any]:
        """Counters of every helper run since the last call, added up (then forgotten)."""
        assert self.stats_file.exists(), f"runner {self.name}: the helper wrote no stats"
        rows = [json.loads(line) for line in self.stats_file.read_text().splitlines()]
        self.stats_file.unlink()
        total: dict[str, Any] = {"runs": len(rows)}
        for key in COUNTERS:
            total[key] = sum(row[key] for row in rows)
        return total

    def build_and_run(self, *flags: str) -> str:
        binary = self.checkout.parent / f"hello-{self.name}"
        self.go("build", *flags, "-o", str(binary), "./cmd/hello")
        return self._run(binary)

    def build_and_run_through(self, started: Callable[[], bool], fault: Callable[[], None],
                              *flags: str, start_timeout: float = 60) -> tuple[str, str]:
        """:meth:`build_and_run` with ``fault`` made mid-build: as soon as ``started()`` says
        the build is under way (within ``start_timeout`` seconds, the build still running).
        The build must still succeed; returns the binary's output and the build's stderr
        (the helpers' lines)."""
        binary = self.checkout.parent / f"hello-{self.name}"
        proc = subprocess.Popen(["go", "build", *flags, "-o", str(binary), "./cmd/hello"],
                                cwd=self.checkout, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + start_timeout
            while not started():
                assert time.monotonic() < deadline and proc.poll() is None, (
                    f"runner {self.name}: the build did not get under way")
                time.sleep(0.05)
            fault()
            _, err = proc.communicate(timeout=GO_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err[-3000:]
        return self._run(binary), err

    @staticmethod
    def _run(binary: Path) -> str:
        return subprocess.run(
            [str(binary)], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()


def make_runner(
    base: Path,
    name: str,
    checkout: Path,
    go_env: dict[str, str],
    redis_url: str | None,
    gocacheprog: str | None = None,
) -> Runner:
    home = base / f"runner-{name}"
    gocache, helper_dir = home / "gocache", home / "helper"
    gocache.mkdir(parents=True)
    env = helper_env(helper_dir, redis_url)
    env = {**env, **go_env}  # go_env wins for everything Go; REDIS_* come from helper_env
    env.update(
        GOCACHE=str(gocache),
        GOCACHEPROG=gocacheprog or go_quote(helper_command()),
        REDIS_GOCACHE_STATS_FILE=str(home / "stats.jsonl"),
    )
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return Runner(name, checkout, env, home / "stats.jsonl", helper_dir)


def hit_ratio(stats: dict[str, Any]) -> float:
    assert stats["gets"] > 0, stats
    return float(stats["hits"]) / float(stats["gets"])


@pytest.fixture(scope="module")
def e2e_redis() -> Iterator[RedisServer]:
    """A Redis of this module alone: no other test flushes it between the runners."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def rclient(e2e_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(e2e_redis.url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    write_module(root / "checkout1" / "src")
    write_module(root / "checkout2" / "src")
    return root


@pytest.fixture(scope="module")
def runner_a(
    base: Path, go_env: dict[str, str], e2e_redis: RedisServer
) -> tuple[Runner, dict[str, Any], str, str]:
    """Runner A's cold build and test: returns it, its counters, the binary's output and
    the ``go test`` output."""
    a = make_runner(base, "A", base / "checkout1" / "src", go_env, e2e_redis.url)
    out = a.build_and_run()
    test_out = a.go("test", "./...").stdout
    return a, a.take_stats(), out, test_out


@pytest.fixture(scope="module")
def runner_a_trim(
    base: Path, go_env: dict[str, str], e2e_redis: RedisServer
) -> tuple[Runner, dict[str, Any]]:
    """Runner A' at checkout1 with ``-trimpath``: cold again (trimpath changes every key)."""
    a = make_runner(base, "Atrim", base / "checkout1" / "src", go_env, e2e_redis.url)
    assert a.build_and_run("-trimpath") == HELLO
    a.go("test", "-trimpath", "./...")
    return a, a.take_stats()


def test_cold_runner_fills_redis(
    runner_a: tuple[Runner, dict[str, Any], str, str], rclient: redis.Redis
) -> None:
    a, stats, out, test_out = runner_a
    assert out == HELLO
    assert "ok  \texample.com/cachedemo/greet" in test_out, test_out
    assert "ok  \texample.com/cachedemo/calc" in test_out, test_out
    assert stats["puts"] > 50 and stats["put_errors"] == 0, stats
    assert stats["get_errors"] == 0, stats
    assert stats["misses"] > 50, stats  # a cold cache

    actions = list(rclient.scan_iter("gocache:a:*", count=1000))
    assert 50 < len(actions) <= stats["puts"], (len(actions), stats)
    # Compression is on by default: each value is stored raw or zstd-compressed, as its
    # record says (the second runner's Redis hits below are served from these).
    blobs = packed = stored = output = 0
    for key in actions:
        h = rclient.hgetall(key)
        assert {b"oid", b"size", b"time"} <= set(h), (key, h)
        size, oid = int(h[b"size"]), h[b"oid"]
        assert isinstance(oid, bytes)
        output += size
        if b"zsize" in h:
            packed += 1
            zsize = int(h[b"zsize"])
            assert zsize < size and b"body" not in h, key
            if h.get(b"ref") == b"z":
                blobs += 1
                assert rclient.strlen(b"gocache:z:" + oid) == zsize, key
            else:
                assert len(h[b"zbody"]) == zsize, key
            stored += zsize
        elif h.get(b"ref") == b"o":
            blobs += 1
            assert rclient.strlen(b"gocache:o:" + oid) == size, key
            stored += size
        else:
            assert len(h[b"body"]) == size, key
            stored += size
    # Package archives of the runtime are far above the inline threshold, and compress.
    assert blobs > 0 and packed > 10
    assert stored < 0.6 * output, (stored, output)
    # Outputs behind the local DiskPaths are real files.
    outputs = [p for p in a.helper_dir.rglob("*") if p.is_file()]
    assert len(outputs) > 50


def test_warm_rebuild_hits_locally(runner_a: tuple[Runner, dict[str, Any], str, str]) -> None:
    a = runner_a[0]
    assert a.build_and_run() == HELLO
    test_out = a.go("test", "./...").stdout
    assert "(cached)" in test_out, test_out
    stats = a.take_stats()
    # The first rebuild after a cold build may still miss (and put) a link step or two.
    assert hit_ratio(stats) >= 0.95, stats
    assert stats["local_hits"] == stats["hits"] and stats["remote_hits"] == 0, stats


def test_second_runner_same_path_hits_redis(
    runner_a: tuple[Runner, dict[str, Any], str, str],
    base: Path,
    go_env: dict[str, str],
    e2e_redis: RedisServer,
) -> None:
    b = make_runner(base, "B", base / "checkout1" / "src", go_env, e2e_redis.url)
    assert b.build_and_run() == HELLO
    test_out = b.go("test", "./...").stdout
    assert "ok  \texample.com/cachedemo/greet\t(cached)" in test_out, test_out
    assert "ok  \texample.com/cachedemo/calc\t(cached)" in test_out, test_out
    stats = b.take_stats()
    assert hit_ratio(stats) >= 0.95, stats
    assert stats["remote_hits"] > 50, stats
    assert stats["get_errors"] == 0, stats


def test_other_path_with_trimpath_hits_redis(
    runner_a_trim: tuple[Runner, dict[str, Any]],
    base: Path,
    go_env: dict[str, str],
    e2e_redis: RedisServer,
) -> None:
    c = make_runner(base, "C", base / "checkout2" / "src", go_env, e2e_redis.url)
    assert c.build_and_run("-trimpath") == HELLO
    test_out = c.go("test", "-trimpath", "./...").stdout
    assert "ok  \texample.com/cachedemo/greet\t(cached)" in test_out, test_out
    stats = c.take_stats()
    assert hit_ratio(stats) >= 0.95, stats
    assert stats["remote_hits"] > 50, stats


def test_go_list_export_files_outlive_go(
    runner_a: tuple[Runner, dict[str, Any], str, str],
    base: Path,
    go_env: dict[str, str],
    e2e_redis: RedisServer,
) -> None:
    d = make_runner(base, "D", base / "checkout1" / "src", go_env, e2e_redis.url)
    out = d.go("list", "-deps", "-export", "-f", "{{.ImportPath}} {{.Export}}", "./...").stdout
    exports = dict(line.split(" ", 1) for line in out.strip().splitlines())
    for pkg in ("fmt", "strings", "example.com/cachedemo/greet", "example.com/cachedemo/calc"):
        assert exports.get(pkg), (pkg, out)
    for pkg, path in exports.items():
        if not path:  # main packages and unsafe have no export data
            continue
        assert os.path.isabs(path), (pkg, path)
        assert os.path.isfile(path) and os.path.getsize(path) > 0, (pkg, path)
        assert Path(path).resolve().is_relative_to(d.helper_dir.resolve()), (pkg, path)
    stats = d.take_stats()
    assert stats["remote_hits"] > 0, stats


def test_gocacheprog_with_quoted_path_and_flags(
    runner_a: tuple[Runner, dict[str, Any], str, str],
    base: Path,
    go_env: dict[str, str],
    e2e_redis: RedisServer,
) -> None:
    """The console script with flags, reached through a directory whose name has a space and
    a quote, as a user's install might be: cmd/go splits GOCACHEPROG with quoted.Split. (A
    link to the console script, not to the interpreter: a link to a venv's interpreter
    starts the base interpreter, without the venv's packages.)"""
    script = shutil.which("redis-gocache")
    assert script, "the redis-gocache console script is not on PATH"
    spaced = base / "tools with space and 'quote'"
    spaced.mkdir()
    (spaced / "redis-gocache").symlink_to(script)
    stats = base / "runner-E-flag-stats.jsonl"
    argv = [str(spaced / "redis-gocache"), "--timeout", "2", "--stats-file", str(stats)]
    e = make_runner(base, "E", base / "checkout1" / "src", go_env, e2e_redis.url, go_quote(argv))
    e.stats_file = stats  # the flag beats REDIS_GOCACHE_STATS_FILE
    assert e.build_and_run() == HELLO
    got = e.take_stats()
    assert hit_ratio(got) >= 0.95 and got["remote_hits"] > 50, got


def test_local_mode_second_build_hits(base: Path, go_env: dict[str, str]) -> None:
    checkout = base / "checkout3" / "src"
    write_module(checkout)
    loc = make_runner(base, "L", checkout, go_env, None)
    assert "REDIS_URL" not in loc.env
    assert loc.build_and_run() == HELLO
    cold = loc.take_stats()
    assert cold["puts"] > 50 and cold["remote_hits"] == 0, cold
    shutil.rmtree(loc.env["GOCACHE"])  # nothing may come from Go's own cache
    os.mkdir(loc.env["GOCACHE"])
    assert loc.build_and_run() == HELLO
    warm = loc.take_stats()
    assert warm["gets"] > 50 and hit_ratio(warm) >= 0.95, warm
    assert warm["local_hits"] == warm["hits"], warm
    assert warm["puts"] <= warm["misses"] * 2, warm

    # Outputs that went missing or changed size behind their records (a hand-made mess):
    # the helper still answers from its records; cmd/go checks each file's size, builds what
    # it cannot use and puts it again, which puts back the files this build needs.
    outputs = sorted(p for p in (loc.helper_dir / "v1" / "o").rglob("*") if p.is_file())
    gone, shrunk = outputs[::7], outputs[3::7]
    for path in gone:
        path.unlink()
    for path in shrunk:
        path.write_bytes(path.read_bytes()[:-1])
    shutil.rmtree(loc.env["GOCACHE"])
    os.mkdir(loc.env["GOCACHE"])
    assert loc.build_and_run() == HELLO
    healed = loc.take_stats()
    assert healed["puts"] > 0, healed
    assert any(p.is_file() for p in gone), "cmd/go put none of the removed outputs back"
    shutil.rmtree(loc.env["GOCACHE"])
    os.mkdir(loc.env["GOCACHE"])
    assert loc.build_and_run() == HELLO
    again = loc.take_stats()  # as warm as before the mess
    assert hit_ratio(again) >= 0.95 and again["puts"] <= warm["puts"], (warm, again)


BLOCKER = """\
import sys


class _Blocked:
    '''Makes one module missing, as for an interpreter it was never installed for.'''

    def find_spec(self, name, path=None, target=None):
        if name == {name!r} or name.startswith({name!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Blocked())
"""


@pytest.mark.parametrize(("missing", "expect"), [
    ("hiredis", "hiredis is not installed"),
    ("redis", "the Python module redis is not installed"),
])
def test_helper_without_a_module_still_builds(
    runner_a: tuple[Runner, dict[str, Any], str, str],
    base: Path,
    go_env: dict[str, str],
    e2e_redis: RedisServer,
    missing: str,
    expect: str,
) -> None:
    """A helper whose interpreter lacks hiredis (the optional C parser) reads through
    redis-py; one that lacks redis-py still reads through its own client and keeps its
    puts local. Either way the build succeeds with one line about it, not one per request,
    and no traceback."""
    site = base / f"without-{missing}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(name=missing))
    r = make_runner(base, f"no-{missing}", base / "checkout1" / "src", go_env, e2e_redis.url)
    r.env["PYTHONPATH"] = os.pathsep.join([str(site), r.env["PYTHONPATH"]])
    r.env["GOFLAGS"] = "-a"  # rebuild everything: puts (uploads) as well as gets
    done = r.go("build", "-o", str(base / f"hello-no-{missing}"), "./cmd/hello")
    lines = done.stderr.splitlines()
    assert [line for line in lines if expect in line] == lines[:1] and len(lines) == 1, lines
    assert "Traceback" not in done.stderr
    got = r.take_stats()
    assert got["get_errors"] == 0 and got["put_errors"] == 0, got
    if missing == "hiredis":
        assert got["remote_hits"] > 50, got  # redis-py served the reads
