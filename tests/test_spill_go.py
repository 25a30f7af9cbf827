"""A real ``go build`` through the helper with a spill directory (issue 8).

Runner A builds the e2e module cold with ``REDIS_GOCACHE_SPILL_DIR`` set; runner B (same
checkout path, empty caches, same directory) is served from Redis and the directory, and Redis
holds no large value; runner C has no directory mounted: its large outputs miss, and its build
is still right.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_gocache.config import DEFAULT_INLINE_MAX
from tests.e2e.test_go_build import HELLO, Runner, make_runner, write_module
from tests.redisproc import RedisServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


def with_spill(runner: Runner, spill: Path) -> Runner:
    runner.env["REDIS_GOCACHE_SPILL_DIR"] = str(spill)
    runner.env["REDIS_GOCACHE_NO_FLEET_STATS"] = "1"
    return runner


def stats_rows(runner: Runner) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in runner.stats_file.read_text().splitlines()]
    runner.stats_file.unlink()
    return rows


def total(rows: list[dict[str, Any]], key: str) -> int:
    return sum(int(r[key]) for r in rows)


def test_go_build_through_a_spill_directory(
    tmp_path_factory: pytest.TempPathFactory, go_env: dict[str, str], server: RedisServer
) -> None:
    base = tmp_path_factory.mktemp("spill-e2e")
    checkout = write_module(base / "checkout" / "src")
    spill = base / "shared-volume"
    spill.mkdir()
    client = redis.Redis.from_url(server.url, socket_timeout=10)

    a = with_spill(make_runner(base, "A", checkout, go_env, server.url), spill)
    assert a.build_and_run() == HELLO
    rows = stats_rows(a)
    assert total(rows, "puts") > 50 and total(rows, "upload_errors") == 0, rows

    # Redis: records and pointers; the large outputs are files in the directory.
    assert list(client.scan_iter("gocache:o:*")) == []
    pointers = 0
    for key in client.scan_iter("gocache:a:*", count=1000):
        h = client.hgetall(key)
        size = int(h[b"size"])
        if size > DEFAULT_INLINE_MAX:
            pointers += 1
            raw_ref = h[b"ref"]
            ref = raw_ref.decode() if isinstance(raw_ref, bytes) else raw_ref
            assert b"body" not in h and b"zbody" not in h, h.keys()
            if ref.startswith("zf:"):  # compressed (the default, when it pays)
                assert ref.startswith("zf:z/")
                assert (spill / ref[3:]).stat().st_size == int(h[b"zsize"]) < size
            else:
                assert ref.startswith("f:o/")
                assert (spill / ref[2:]).stat().st_size == size
            assert (client.memory_usage(key) or 0) < 1024
    assert pointers >= 5, pointers  # runtime, reflect, fmt, ... archives and the link
    files = [p for top in ("o", "z") for p in (spill / top).rglob("*") if p.is_file()]
    assert len(files) >= pointers - 1  # identical outputs share one file

    b = with_spill(make_runner(base, "B", checkout, go_env, server.url), spill)
    assert b.build_and_run() == HELLO
    rows = stats_rows(b)
    hits, gets = total(rows, "hits"), total(rows, "gets")
    assert gets > 50 and hits >= 0.95 * gets, rows
    assert total(rows, "rejected_total") == 0, rows
    # Every DiskPath B handed Go is in its own directory: no file there is a shared one.
    spilled = {p.stat().st_ino for p in files}
    for p in b.helper_dir.rglob("*"):
        if p.is_file():
            assert p.stat().st_ino not in spilled

    c = make_runner(base, "C", checkout, go_env, server.url)  # no directory mounted
    c.env["REDIS_GOCACHE_NO_FLEET_STATS"] = "1"
    assert c.build_and_run() == HELLO
    rows = stats_rows(c)
    unmounted = sum(r["rejected"].get("spill_unmounted", 0) for r in rows)
    assert unmounted > 0 and total(rows, "remote_hits") > 0, rows
    client.close()
