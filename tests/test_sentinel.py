"""The helper on a Sentinel-managed primary: a real primary, replica and sentinel on loopback,
and a failover (``SENTINEL FAILOVER``) in the middle of a real ``go build``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_gocache.config import parse_redis_url
from redis_gocache.exceptions import ConfigError, RemoteError
from redis_gocache.store.base import Entry
from redis_gocache.store.redis import RedisStore
from redis_gocache.store.topology import SENTINEL, kind_of, parse
from tests.e2e.test_go_build import HELLO, make_runner, write_module
from tests.gocmd import GoCmd, action_id
from tests.redistopo import SentinelGroup

PREFIX = "gocache:"
COOLDOWN = 3.0
"""Breaker cool-down of the helpers here (production: 30 s)."""


def test_sentinel_url_forms() -> None:
    topo = parse("redis+sentinel://app:pw@s1:26380,s2/cache/2"
                 "?sentinel_username=sent&sentinel_password=spw")
    assert topo.kind == SENTINEL and kind_of("redis+sentinel://s") == SENTINEL
    assert topo.hosts == (("s1", 26380), ("s2", 26379))
    assert (topo.service, topo.db) == ("cache", 2)
    assert (topo.username, topo.password) == ("app", "pw")
    assert (topo.sentinel_username, topo.sentinel_password) == ("sent", "spw")
    assert parse("rediss+sentinel://s/cache").tls
    for bad, why in [("redis+sentinel://:secret@s1", "names the service"),
                     ("redis+sentinel://:secret@s1/svc/x", "must be a number"),
                     ("redis+sentinel://s1/svc?password=secret", "option 'password'")]:
        with pytest.raises(ConfigError) as err:
            parse_redis_url(bad)
        assert why in str(err.value) and "secret" not in str(err.value), (bad, err.value)


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    with SentinelGroup() as g:
        yield g


def primary_client(group: SentinelGroup) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=group.current_primary_port(), socket_timeout=5)


def test_store_follows_a_failover_after_the_primary_dies(group: SentinelGroup,
                                                          tmp_path: Path) -> None:
    store = RedisStore(group.url, prefix=PREFIX, ttl=3600, inline_max=1024, timeout=2.0,
                       retries=1, max_connections=4)
    body = os.urandom(3000)
    path = tmp_path / "out"
    path.write_bytes(body)
    entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
    store.put(b"\x01" * 32, entry, str(path))
    old = group.current_primary_port()
    group.primary.stop()  # killed: the sentinel fails over after down-after-milliseconds
    new = group.wait_failover(old)
    assert new == group.replica.port
    # The client asks the sentinel again once the old primary is gone: at most a failed call
    # or two, then the new primary.
    done = False
    for _ in range(10):
        try:
            store.put(b"\x02" * 32, entry, str(path))
            got: list[bytes] = []
            assert store.get(b"\x01" * 32, got.append) == entry and b"".join(got) == body
            done = True
            break
        except RemoteError:
            time.sleep(0.5)
    assert done, "the store never reached the new primary"
    assert primary_client(group).exists(f"{PREFIX}a:{'02' * 32}")
    store.close()


def test_go_build_survives_a_failover(group: SentinelGroup, tmp_path: Path,
                                      go_env: dict[str, str]) -> None:
    checkout = tmp_path / "checkout" / "src"
    write_module(checkout)
    a = make_runner(tmp_path, "A", checkout, go_env, group.url)
    a.env["REDIS_GOCACHE_BREAKER_COOLDOWN"] = str(COOLDOWN)
    first = primary_client(group)
    old = group.current_primary_port()
    assert group.sentinel is not None
    failover = group.sentinel.failover
    out, _ = a.build_and_run_through(  # the failover mid-build
        lambda: len(list(first.scan_iter(match=f"{PREFIX}a:*", count=1000))) >= 20, failover)
    assert out == HELLO
    first.close()
    a.take_stats()
    new = group.wait_failover(old)

    # A new helper in A's directory, once any breaker A set has cooled down, writes to the
    # new primary and reads what A wrote before the failover (replicated).
    time.sleep(COOLDOWN + 0.5)
    body = b"after the failover"
    with GoCmd(a.env) as cmd:
        cmd.capability()
        res = cmd.put_wait(action_id("after failover"), body)
        assert "Err" not in res, res
        cmd.close()
        helper_err = cmd.stderr
    assert "unavailable" not in helper_err and "failed recently" not in helper_err, helper_err
    newc = redis.Redis(host="127.0.0.1", port=new, socket_timeout=5)
    assert newc.exists(f"{PREFIX}a:{action_id('after failover').hex()}")
    assert newc.info("replication")["role"] == "master"
    newc.close()

    # And a fresh runner is served from the new primary.
    b = make_runner(tmp_path, "B", checkout, go_env, group.url)
    assert b.build_and_run() == HELLO
    stats: dict[str, Any] = b.take_stats()
    # How much of A's build reached the new primary depends on when the failover landed (A
    # stops writing at the first failure); the 20 entries written before it were replicated.
    assert stats["remote_hits"] >= 15 and stats["get_errors"] == 0, stats
