"""Builds stay correct while Redis evicts: a small ``maxmemory`` under ``allkeys-lru``.

Redis drops keys on its own, so an action hash may outlive the blob it points at (or the
reverse). Such a hash is a miss, never a wrong or truncated output handed to Go.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.test_go_build import HELLO, make_runner, write_module
from tests.gocmd import GoCmd, action_id, helper_env
from tests.redisproc import RedisServer

MAXMEMORY = "20mb"
"""Below what one cold build of the sample module puts (about 32 MB): Redis evicts throughout
the build. (Far smaller, and one large streamed upload evicts everything else and is then
refused itself.)"""


@pytest.fixture(scope="module")
def small_redis() -> Iterator[RedisServer]:
    with RedisServer(["--maxmemory", MAXMEMORY, "--maxmemory-policy", "allkeys-lru",
                      "--maxmemory-samples", "10"]) as server:
        yield server


def test_hash_whose_blob_was_evicted_is_a_miss(small_redis: RedisServer, tmp_path: Path) -> None:
    client = redis.Redis.from_url(small_redis.url)
    client.flushall()
    body = os.urandom(300_000)  # above the inline threshold: a blob key
    env = helper_env(tmp_path / "w", small_redis.url)
    with GoCmd(env) as cmd:
        cmd.capability()
        assert "Err" not in cmd.put_wait(action_id("big"), body)
        cmd.close()
    oid = hashlib.sha256(body).hexdigest()
    assert client.delete(f"gocache:o:{oid}") == 1  # as an eviction would
    assert client.exists(f"gocache:a:{action_id('big').hex()}")
    with GoCmd(helper_env(tmp_path / "r", small_redis.url)) as cmd:
        cmd.capability()
        res = cmd.get_wait(action_id("big"))
        assert res.get("Miss") is True and "Err" not in res, res
        cmd.close()
    client.close()


def test_builds_stay_correct_while_redis_evicts(
    small_redis: RedisServer, tmp_path: Path, go_env: dict[str, str]
) -> None:
    client = redis.Redis.from_url(small_redis.url)
    client.flushall()
    client.config_resetstat()
    checkout = tmp_path / "checkout" / "src"
    write_module(checkout)
    a = make_runner(tmp_path, "A", checkout, go_env, small_redis.url)
    # Uncompressed, so that the build puts more than MAXMEMORY (compressed it puts about a
    # quarter; a compressed blob evicted under its hash: test_compression.py).
    a.env["REDIS_GOCACHE_COMPRESSION"] = "none"
    assert a.build_and_run() == HELLO
    cold = a.take_stats()
    assert cold["puts"] > 50, cold
    evicted = int(client.info("stats")["evicted_keys"])
    assert evicted > 20, evicted
    used = int(client.info("memory")["used_memory"])
    assert used <= 21 * 1024 * 1024, used

    # Which of A's hashes survive is up to Redis's sampled LRU: the last puts are link outputs
    # of megabytes that can push out every small hash.
    survivors = len(client.keys("gocache:a:*"))

    # Runner B (empty caches) gets what survived and rebuilds the rest: the binary is right.
    # B is read-only: its own puts would evict A's survivors before B asks for them, and
    # whether B then found anything would be a race.
    b = make_runner(tmp_path, "B", checkout, go_env, small_redis.url)
    b.env["REDIS_GOCACHE_READONLY"] = "1"
    assert b.build_and_run() == HELLO
    raw = [json.loads(line) for line in b.stats_file.read_text().splitlines()]
    warm = b.take_stats()
    assert warm["misses"] > 0 and warm["get_errors"] == 0, warm
    # What B found in Redis was either whole (a hit) or turned away (a hash without its blob);
    # test_hash_whose_blob_was_evicted_is_a_miss makes the second case happen on purpose.
    found = warm["remote_hits"] + sum(r.get("rejected_total", 0) for r in raw)
    assert found > 0 or survivors == 0, (survivors, raw)
    assert found <= survivors, (survivors, raw)
    client.close()
