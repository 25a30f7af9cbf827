"""Real ``go build`` + ``go test`` under Redis faults (the rest is replayed, in test_faults.py).

Cold builds cost tens of seconds here, so these start from the local directory the recorded
build left (``go_recording``) and make the go command do real work against Redis: an edited
constant forces the module's packages to be rebuilt (local misses, asked of Redis), or part of
the local directory is removed so that it must come from Redis.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests import locallog
from tests.conftest import GoRecording, write_fault_module
from tests.gocmd import go_quote, helper_command
from tests.redisproc import RedisServer
from tests.test_faults import parse_stream, seed

pytestmark = pytest.mark.e2e

GO_TIMEOUT = 300.0


class Runner:
    """One CI runner: its checkout, its helper directory (a copy of the warm one)."""

    def __init__(self, rec: GoRecording, base: Path, name: str, answer: int,
                 redis_url: str | None, env: dict[str, str] | None = None) -> None:
        self.dir = base / name
        self.checkout = write_fault_module(self.dir / "module", answer)
        self.helper_dir = self.dir / "helper"
        shutil.copytree(rec.warm_dir, self.helper_dir, symlinks=True)
        for breaker in self.helper_dir.glob("breaker-*"):
            breaker.unlink()
        self.stats = self.dir / "stats.jsonl"
        self.answer = answer
        self.env = dict(rec.go_env)
        self.env.update(GOCACHEPROG=go_quote(helper_command()),
                        REDIS_GOCACHE_DIR=str(self.helper_dir),
                        REDIS_GOCACHE_STATS_FILE=str(self.stats), **(env or {}))
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.stderr = ""

    def go(self, *args: str) -> None:
        proc = subprocess.run(["go", *args], cwd=self.checkout, env=self.env, text=True,
                              capture_output=True, timeout=GO_TIMEOUT, stdin=subprocess.DEVNULL)
        self.stderr += proc.stderr
        assert proc.returncode == 0, f"go {args}: {proc.stdout}\n{proc.stderr}"

    def build_and_test(self) -> float:
        """``go build`` (and run the binary) then ``go test``; returns the seconds taken."""
        t0 = time.monotonic()
        binary = self.dir / "hi"
        self.go("build", "-o", str(binary), "./cmd/hi")
        self.go("test", "./calc")
        seconds = time.monotonic() - t0
        out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == f"faults ok {self.answer}", out
        return seconds

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.stats.read_text().splitlines()]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_build_with_redis_stalled_absent_or_none(
    go_recording: GoRecording, tmp_path: Path
) -> None:
    """The same rebuild with no Redis configured, Redis refusing connections, and Redis
    frozen (SIGSTOP: connections are accepted, nothing is answered). All succeed and run;
    the frozen one costs at most 2 s more, and only its first helper waits."""
    absent = Runner(go_recording, tmp_path, "absent", 44, f"redis://127.0.0.1:{closed_port()}/0")
    absent.build_and_test()
    assert "unavailable" in absent.stderr and absent.stderr.count("redis-gocache") <= 2

    with RedisServer() as srv:
        pairs = []
        for attempt in range(2):  # wall-clock on a shared machine is noisy: one retry
            none = Runner(go_recording, tmp_path, f"none-{attempt}", 43, None)
            base_seconds = none.build_and_test()
            stalled = Runner(go_recording, tmp_path, f"stalled-{attempt}", 43, srv.url)
            srv.pause()
            try:
                stalled_seconds = stalled.build_and_test()
            finally:
                srv.resume()
            rows = stalled.rows()
            assert rows[0]["remote_wait_seconds"] > 0.4, rows[0]
            assert all(r["remote_wait_seconds"] == 0 for r in rows[1:]), rows
            assert "failed recently" in stalled.stderr, stalled.stderr
            assert stalled.stderr.count("unavailable") == 1, stalled.stderr
            pairs.append((round(stalled_seconds, 2), round(base_seconds, 2)))
            if stalled_seconds <= base_seconds + 2.0:
                break
        print(f"seconds (frozen Redis, no Redis): {pairs}")
        assert pairs[-1][0] <= pairs[-1][1] + 2.0, pairs


def test_build_with_redis_killed_halfway_then_restarted_empty(
    go_recording: GoRecording, tmp_path: Path
) -> None:
    streams = [parse_stream(s) for s in go_recording.streams]
    with RedisServer() as srv:
        seed(streams, tmp_path, srv.url)
        runner = Runner(go_recording, tmp_path, "killed", 45, srv.url,
                        {"REDIS_GOCACHE_BREAKER_COOLDOWN": "1"})
        # A runner that lost part of its local directory, building an edited module (so the
        # link needs every package, and cmd/go asks for each): the lost ones come from Redis,
        # until Redis dies partway through them.
        actions = sorted(locallog.records(runner.helper_dir / "v1"))
        lost = random.Random(7).sample(actions, len(actions) // 3)
        locallog.drop(runner.helper_dir / "v1", lost)
        start = len(actions) - len(lost)
        killed = threading.Event()

        def watch() -> None:
            deadline = time.monotonic() + GO_TIMEOUT
            while not killed.is_set() and time.monotonic() < deadline:
                have = len(locallog.records(runner.helper_dir / "v1"))
                # The build asks for about 50 of the lost ones (the rest belong to go test).
                if have >= start + 15:
                    srv.stop()
                    killed.set()
                    return
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        binary = runner.dir / "hi"
        runner.go("build", "-o", str(binary), "./cmd/hi")
        assert killed.is_set(), "Redis was not killed during the build"
        watcher.join(5)
        out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "faults ok 45", out
        build_row = runner.rows()[0]
        assert build_row["remote_hits"] > 0 and build_row["put_errors"] == 0, build_row
        assert "unavailable" in runner.stderr

        # Redis comes back empty; after the cool-down the next go command uses it again.
        srv.start()
        time.sleep(1.1)
        runner.go("test", "./calc")
        test_row = runner.rows()[-1]
        assert test_row["uploads"] > 0 and test_row["upload_errors"] == 0, test_row
        assert srv.proc is not None
        import redis

        assert redis.Redis(port=srv.port).dbsize() > 0
    assert not os.path.exists(srv.dir)
