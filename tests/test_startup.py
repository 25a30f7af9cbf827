"""The start-up budget: what the helper imports before its first answer on a warm runner.

cmd/go starts a helper for every ``go`` command and waits for each answer, so every
millisecond between exec and the first local hit is a millisecond of every warm build
(bench/README.md). Modules measured at several milliseconds each on a CI runner must stay off
that path; they may be imported later (a miss, a put, the end of the run). The list is
checked against a real helper process with ``python -X importtime``, warm local directory,
Redis configured and reachable, and a command this runner has run before.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import redis

from tests.gocmd import action_id, helper_env, output_id
from tests.redisproc import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent

HEAVY = frozenset({
    "dataclasses", "inspect", "typing", "re", "json", "enum", "hashlib", "_hashlib",
    "threading", "signal", "concurrent.futures", "redis", "click", "asyncio", "ssl",
})
"""Modules the path to the first local hit must not import (each costs 3-15 ms there)."""

BODY = b"warm output\n" * 20

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


def test_no_heavy_import_before_the_first_local_hit(tmp_path: Path) -> None:
    action = base64.b64encode(action_id("warm")).decode()
    put = {"Command": "put", "ActionID": action,
           "OutputID": base64.b64encode(output_id(BODY)).decode(), "BodySize": len(BODY)}
    get = {"Command": "get", "ActionID": action}
    with RedisServer() as server:
        cache_dir = tmp_path / "cache"
        # Run 1 fills the local directory (and Redis); run 2 marks the command as run here
        # (the prefetcher keys on the parent's command line: pytest's, the same each time).
        body_line = json.dumps(base64.b64encode(BODY).decode())
        done = subprocess.run([sys.executable, *_CLEAN, "-m", "redis_gocache"],
                              input=(json.dumps({"ID": 1, **put}) + "\n" + body_line
                                     + '\n{"ID":2,"Command":"close"}\n').encode(),
                              capture_output=True, env=_clean_env(cache_dir, server.url),
                              timeout=60, check=True)
        assert b'"DiskPath"' in done.stdout, done
        assert "DiskPath" in _run(cache_dir, server.url, [get], tmp_path / "run2.log")[0]
        warm = _run(cache_dir, server.url, [get], tmp_path / "run3.log", importtime=True)[0]
    assert "DiskPath" in warm, warm
    baseline = _imported(subprocess.run([sys.executable, *_CLEAN, "-X", "importtime", "-c", "pass"],
                                        capture_output=True, timeout=60).stderr)
    imports = warm["imports"]
    assert isinstance(imports, list)
    ours = [name for name in imports if name not in set(baseline)]
    assert "redis_gocache.server" in ours  # the log really covers the helper's start
    assert not HEAVY.intersection(ours), sorted(HEAVY.intersection(ours))


def test_a_redis_hit_does_not_wait_for_redis_py(tmp_path: Path) -> None:
    """A new runner's first Redis hit is read by the store's own client (store/resp.py):
    redis-py's import (about 100 ms: it brings asyncio) is left to uploads, and the Redis store
    on the way imports no typing or dataclasses either. A run that only read never imports
    redis-py, not even for its fleet counters after the last answer (that CPU would go to the
    next go command)."""
    action = base64.b64encode(action_id("remote")).decode()
    put = {"Command": "put", "ActionID": action,
           "OutputID": base64.b64encode(output_id(BODY)).decode(), "BodySize": len(BODY)}
    with RedisServer() as server:
        body_line = json.dumps(base64.b64encode(BODY).decode())
        subprocess.run([sys.executable, *_CLEAN, "-m", "redis_gocache"],
                       input=(json.dumps({"ID": 1, **put}) + "\n" + body_line
                              + '\n{"ID":2,"Command":"close"}\n').encode(),
                       capture_output=True, env=_clean_env(tmp_path / "writer", server.url),
                       timeout=60, check=True)  # close waits for the upload
        hit = _run(tmp_path / "new-runner", server.url,
                   [{"Command": "get", "ActionID": action}], tmp_path / "new.log",
                   importtime=True)[0]
        client = redis.Redis.from_url(server.url)
        totals = client.hgetall("gocache:s:totals")
        client.close()
    assert int(totals[b"runs"]) == 2 and int(totals[b"remote_hits"]) == 1, totals
    assert hit.get("DiskPath") and hit.get("Size") == len(BODY), hit
    assert Path(str(hit["DiskPath"])).read_bytes() == BODY
    imports = hit["imports"]
    assert isinstance(imports, list)
    assert "redis_gocache.store.resp" in imports
    assert "redis" not in imports and "asyncio" not in imports, imports
    assert not {"typing", "dataclasses", "inspect"}.intersection(imports), imports
    whole_run = _imported((tmp_path / "new.log").read_bytes())
    assert "redis" not in whole_run and "asyncio" not in whole_run
