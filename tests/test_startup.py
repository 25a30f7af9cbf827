"""The start-up import rules, written down once (:data:`RULES`) and checked by one test.

cmd/go starts a helper for every ``go`` command and waits for each answer, so every
millisecond between exec and the first local hit is a millisecond of every warm build, and
every millisecond before a new runner's first Redis hit one of its build (docs/design.md,
"The warm path"). For each stage the table says which of our modules may be imported by then
(they keep to light imports: ``TYPE_CHECKING = False``, no dataclasses) and which heavy
modules must not be; a module of ours not listed on any path may be plain Python. Each stage
is checked against a real helper process under ``python -X importtime``, with Redis
configured and reachable.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import redis

from tests.gocmd import action_id, helper_env, output_id
from tests.redisproc import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent

HEAVY = frozenset({
    "dataclasses", "inspect", "typing", "re", "json", "enum", "hashlib", "_hashlib",
    "threading", "signal", "concurrent.futures", "redis", "click", "asyncio", "ssl",
    "backports.zstd", "compression.zstd",
})
"""Modules the path to the first local hit must not import (each costs 2-15 ms there)."""

_WARM_PATH = frozenset({
    "redis_gocache", "redis_gocache.answers", "redis_gocache.cache", "redis_gocache.cli",
    "redis_gocache.config", "redis_gocache.exceptions", "redis_gocache.handshake",
    "redis_gocache.helper", "redis_gocache.prefetch", "redis_gocache.remote",
    "redis_gocache.server", "redis_gocache.stats", "redis_gocache.store",
    "redis_gocache.store.disk", "redis_gocache.store.entry", "redis_gocache.store.layout",
    "redis_gocache.store.shared",  # os and fcntl (built in): the registration at start
    "redis_gocache.tags", "redis_gocache.value", "redis_gocache.wire",
})
_REDIS_PATH = _WARM_PATH | {
    "redis_gocache.store.clients", "redis_gocache.store.cluster", "redis_gocache.store.errors",
    "redis_gocache.store.compress", "redis_gocache.store.keys", "redis_gocache.store.record",
    "redis_gocache.store.redis",
    "redis_gocache.store.resp", "redis_gocache.store.topology", "redis_gocache.store.upload",
}


class Rule:
    """One stage of a run: which of our modules may be imported by then, which others not."""

    def __init__(self, run: str, ours: frozenset[str], forbidden: frozenset[str]) -> None:
        self.run, self.ours, self.forbidden = run, ours, forbidden


RULES = {
    # A warm runner, a command it has run before: the whole build is local hits.
    "before the first local hit": Rule("warm", _WARM_PATH, HEAVY),
    # A new runner: its first get is a Redis hit, read by store/resp.py, not redis-py
    # (about 100 ms: it brings asyncio). BODY is stored compressed, so the zstd binding
    # (about 2 ms after enum) is imported on this path, and only on this one.
    "before the first Redis hit": Rule("new", _REDIS_PATH, frozenset({
        "redis", "asyncio", "typing", "dataclasses", "inspect", "click"})),
    # A run that only read: its refreshes, manifest and fleet counters go through the light
    # client too; redis-py's import would land on the CPU of the next go command, and so
    # would typing's (about 10 ms), which the end-of-run modules keep off as the others do.
    "after the last answer": Rule("new, whole run", _REDIS_PATH | {
        "redis_gocache.ops", "redis_gocache.ops.fleet", "redis_gocache.store.counters"},
        frozenset({"redis", "asyncio", "typing"})),
}
"""The start-up import rules (docs/design.md points here)."""

BODY = b"warm output\n" * 200
"""An output stored compressed (over compress.MIN_SIZE, and repetitive)."""

_CLEAN = ["-S"]
"""No site: this interpreter's .pth files (an editable install's finder, a sandbox's
certificate patch) import half of the list above before any helper code runs, which would
hide the helper's own imports. The package and its dependencies come from PYTHONPATH."""


def _clean_env(cache_dir: Path, url: str) -> dict[str, str]:
    env = helper_env(cache_dir, url)
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *sorted(paths)])
    return env


def _imported(stderr: bytes) -> list[str]:
    """Module names from ``-X importtime`` lines, in import order."""
    names = []
    for line in stderr.decode(errors="replace").splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.append(name)
    return names


def _run(cache_dir: Path, url: str, requests: list[dict[str, object]], log: Path,
         importtime: bool = False) -> list[dict[str, object]]:
    """One helper run on the same command line every time (so the second run is "a command
    this runner has run before"); the answers after the capability line."""
    argv = [sys.executable, *_CLEAN, *(["-X", "importtime"] if importtime else []),
            "-m", "redis_gocache"]
    lines = [json.dumps({"ID": i + 1, **r}, separators=(",", ":")) for i, r in enumerate(requests)]
    with open(log, "wb") as err, subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            env=_clean_env(cache_dir, url)) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().startswith(b'{"ID":0,')
        answers = []
        for line in lines:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
            answers.append(json.loads(proc.stdout.readline()))
            if importtime and len(answers) == 1:
                # Everything imported up to the first answer is in the log by now (stderr is
                # written before the answer, and the helper then waits for the next line).
                answers[0]["imports"] = _imported(log.read_bytes())
        proc.stdin.write(b'{"ID":999,"Command":"close"}\n')
        proc.stdin.close()
        proc.stdout.read()
        assert proc.wait(timeout=30) == 0
    return answers


def _runs(tmp_path: Path) -> dict[str, list[str]]:
    """The modules each run of :data:`RULES` imported (beyond a bare interpreter's), with its
    first answer checked: a warm runner's local hit, and a new runner's Redis hit."""
    action = base64.b64encode(action_id("warm")).decode()
    put = {"Command": "put", "ActionID": action,
           "OutputID": base64.b64encode(output_id(BODY)).decode(), "BodySize": len(BODY)}
    get = {"Command": "get", "ActionID": action}
    with RedisServer() as server:
        cache_dir = tmp_path / "cache"
        # Run 1 fills the local directory (and Redis: close waits for the upload); run 2 marks
        # the command as run here (the prefetcher keys on the parent's command line: pytest's,
        # the same each time).
        body_line = json.dumps(base64.b64encode(BODY).decode())
        done = subprocess.run([sys.executable, *_CLEAN, "-m", "redis_gocache"],
                              input=(json.dumps({"ID": 1, **put}) + "\n" + body_line
                                     + '\n{"ID":2,"Command":"close"}\n').encode(),
                              capture_output=True, env=_clean_env(cache_dir, server.url),
                              timeout=60, check=True)
        assert b'"DiskPath"' in done.stdout, done
        assert "DiskPath" in _run(cache_dir, server.url, [get], tmp_path / "run2.log")[0]
        warm = _run(cache_dir, server.url, [get], tmp_path / "warm.log", importtime=True)[0]
        new = _run(tmp_path / "new-runner", server.url, [get], tmp_path / "new.log",
                   importtime=True)[0]
        client = redis.Redis.from_url(server.url)
        totals = client.hgetall("gocache:s:totals")
        stored = client.hgetall(f"gocache:a:{action_id('warm').hex()}")
        client.close()
    assert b"zbody" in stored and b"body" not in stored, stored  # the hit below expands it
    assert "DiskPath" in warm, warm
    assert new.get("DiskPath") and new.get("Size") == len(BODY), new
    assert Path(str(new["DiskPath"])).read_bytes() == BODY
    # The new run ended with its fleet counters sent (the warm runs spool theirs locally).
    assert int(totals[b"runs"]) == 2 and int(totals[b"remote_hits"]) == 1, totals
    baseline = set(_imported(subprocess.run(
        [sys.executable, *_CLEAN, "-X", "importtime", "-c", "pass"],
        capture_output=True, timeout=60).stderr))
    runs = {"warm": warm["imports"], "new": new["imports"],
            "new, whole run": _imported((tmp_path / "new.log").read_bytes())}
    out = {}
    for name, imports in runs.items():
        assert isinstance(imports, list)
        out[name] = [m for m in imports if m not in baseline]
    # The new runner's first Redis hit needed the zstd binding: the warm rule's check of it
    # is a real one.
    assert {"backports.zstd", "compression.zstd"} & set(out["new"]), out["new"]
    return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    return _runs(tmp_path_factory.mktemp("startup"))


@pytest.mark.parametrize("stage", list(RULES))
def test_start_up_import_rules(imported: dict[str, list[str]], stage: str) -> None:
    rule = RULES[stage]
    modules = imported[rule.run]
    assert "redis_gocache.server" in modules  # the log really covers the helper's start
    assert not rule.forbidden.intersection(modules), sorted(rule.forbidden.intersection(modules))
    ours = {m for m in modules if m.split(".")[0] == "redis_gocache"}
    # A module of ours new on this path must keep to light imports: add it to the table.
    assert ours <= rule.ours, sorted(ours - rule.ours)
