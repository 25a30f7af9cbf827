"""The helper and the operator commands on a real 3-primary Redis Cluster on loopback.

One cluster serves the module; the test that kills a primary runs last and kills it for good.
Real ``go build``s: runner A fills the cluster cold, runner B (same checkout path, empty
caches) is served from it, runner C builds cold while a primary is killed and must still
succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from redis_gocache.cli import build_cli
from redis_gocache.config import parse_redis_url
from redis_gocache.exceptions import ConfigError
from redis_gocache.store.base import Entry
from redis_gocache.store.redis import RedisStore
from redis_gocache.store.topology import CLUSTER, kind_of, parse
from redis_gocache.store.upload import STREAM_CHUNK
from tests.e2e.test_go_build import HELLO, hit_ratio, make_runner, write_module
from tests.redistopo import Cluster

PREFIX = "gocache:"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(3) as c:
        yield c


@pytest.fixture
def cclient(cluster: Cluster) -> Iterator[redis.RedisCluster]:
    client = cluster.client()
    client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
    yield client
    client.close()


def make_store(url: str, **kw: Any) -> RedisStore:
    args: dict[str, Any] = dict(prefix=PREFIX, ttl=3600, inline_max=1024, timeout=2.0,
                                retries=1, max_connections=4)
    args.update(kw)
    return RedisStore(url, **args)


def write(path: Path, data: bytes) -> tuple[Path, Entry]:
    path.write_bytes(data)
    return path, Entry(hashlib.sha256(data).digest(), len(data), time.time_ns())


def fetch(store: RedisStore, action: bytes) -> tuple[Entry | None, bytes]:
    got: list[bytes] = []
    entry = store.get(action, got.append)
    return entry, b"".join(got)


# -- the URL ---------------------------------------------------------------------------


def test_cluster_url_forms() -> None:
    topo = parse("redis+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert topo.kind == CLUSTER and not topo.tls
    assert topo.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert (topo.username, topo.password) == ("u", "p@ss")
    assert parse("rediss+cluster://h:1/0").tls
    assert kind_of("redis+cluster://h") == CLUSTER
    assert parse_redis_url("redis+cluster://h:7000") == "redis+cluster://h:7000"
    for bad, why in [("redis+cluster://h:7000/3", "database 0"),
                     ("redis+cluster://:secret@h:notaport", "bad port"),
                     ("redis+cluster://h?foo=secret", "option 'foo'"),
                     ("redis+clustr://:secret@h", "scheme: redis+clustr")]:
        with pytest.raises(ConfigError) as err:
            parse_redis_url(bad)
        assert why in str(err.value) and "secret" not in str(err.value), (bad, err.value)


# -- the store ---------------------------------------------------------------------------


def test_entries_spread_over_slots_and_read_back(
    cluster: Cluster, cclient: redis.RedisCluster, tmp_path: Path
) -> None:
    store = make_store(cluster.url)
    sizes = [0, 10, 1000, 5000, 200_000, STREAM_CHUNK + 12345]  # inline, blob, streamed blob
    entries = {}
    for i, size in enumerate(sizes * 3):
        action = hashlib.sha256(f"action {i}".encode()).digest()
        data = os.urandom(size)
        path, entry = write(tmp_path / f"out{i}", data)
        store.put(action, entry, str(path))
        entries[action] = (entry, data)
    for action, (entry, data) in entries.items():
        got, body = fetch(store, action)
        assert got == entry and body == data
    keys = list(cclient.scan_iter(match=f"{PREFIX}*", count=1000))
    actions = [k for k in keys if k.startswith(b"gocache:a:")]
    assert len(actions) == len(entries)
    # No hash tag on the prefix: the keys land on every primary.
    assert {cluster.node_of(k).port for k in actions} == set(cluster.ports)
    assert not [k for k in keys if k.startswith(b"gocache:t:")], "an upload key was left over"
    store.refresh([(a, e) for a, (e, _) in entries.items()])
    for key in keys:
        assert 3000 < int(cclient.ttl(key)) <= 3600
    store.close()


def node_clients(cluster: Cluster) -> list[redis.Redis]:
    """A connected client per live node: made before the counting starts, so that their own
    connection handshakes are not counted."""
    clients = [redis.Redis(host="127.0.0.1", port=n.port) for n in cluster.nodes
               if n.proc is not None]
    for c in clients:
        c.config_resetstat()
    return clients


def commands_sent(clients: list[redis.Redis]) -> dict[str, int]:
    """Calls per command summed over the nodes since the ``CONFIG RESETSTAT``."""
    total: dict[str, int] = {}
    for c in clients:
        for name, stat in c.info("commandstats").items():
            cmd = name.removeprefix("cmdstat_")
            if cmd not in ("config|resetstat", "info"):
                total[cmd] = total.get(cmd, 0) + int(stat["calls"])
        c.close()
    return total


def test_inline_hit_is_one_round_trip_and_put_writes_blob_first(
    cluster: Cluster, cclient: redis.RedisCluster, tmp_path: Path
) -> None:
    store = make_store(cluster.url)
    store.ping()  # the client has learnt the slots
    small = hashlib.sha256(b"small").digest()
    path, entry = write(tmp_path / "small", b"x" * 100)
    store.put(small, entry, str(path))
    counters = node_clients(cluster)
    assert fetch(store, small)[1] == b"x" * 100
    sent = commands_sent(counters)
    assert sent == {"hgetall": 1}, sent

    # Blob first, record second: watch the order the client sends them in.
    client = store.client()
    order: list[str] = []
    real_set, real_pipeline = client.set, client.pipeline

    def set_(name: Any, *a: Any, **k: Any) -> Any:
        order.append(f"SET {name}")
        return real_set(name, *a, **k)

    def pipeline(*a: Any, **k: Any) -> Any:
        pipe = real_pipeline(*a, **k)
        real_queue, real_execute = pipe.execute_command, pipe.execute
        queued: list[str] = []

        def queue(*args: Any, **kw: Any) -> Any:
            queued.append(str(args[0]))
            return real_queue(*args, **kw)

        def execute(*ea: Any, **ek: Any) -> Any:
            order.append("EXEC " + " ".join(queued))
            return real_execute(*ea, **ek)

        pipe.execute_command, pipe.execute = queue, execute  # type: ignore[method-assign]
        return pipe

    client.set, client.pipeline = set_, pipeline  # type: ignore[method-assign]
    big = hashlib.sha256(b"big").digest()
    data = os.urandom(50_000)
    path, entry = write(tmp_path / "big", data)
    counters = node_clients(cluster)
    store.put(big, entry, str(path))
    # (redis-py queues a pipeline's DEL past execute_command: the server's counts show it.)
    assert order == [f"SET {PREFIX}o:{entry.output_id.hex()}", "EXEC HSET EXPIRE"], order
    sent = commands_sent(counters)
    sent.pop("hello", None)  # the store's first connection to the blob's node
    assert sent == {"set": 1, "multi": 1, "del": 1, "hset": 1, "expire": 1, "exec": 1}, sent
    client.set, client.pipeline = real_set, real_pipeline  # type: ignore[method-assign]
    assert fetch(store, big) == (entry, data)
    store.close()


# -- operator commands ----------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def seed(cclient: redis.RedisCluster, n: int) -> None:
    pipe = cclient.pipeline(transaction=False)
    for i in range(n):
        pipe.hset(f"{PREFIX}a:{i:064x}", mapping={"oid": f"{i:064x}", "size": 1, "time": 1,
                                                   "body": b"x"})
        pipe.set(f"{PREFIX}o:{i:064x}", b"blob")
    pipe.set(f"{PREFIX}t:{7:032x}{{{PREFIX}o:{1:064x}}}", b"part")  # a cluster upload key
    pipe.set("other:key", b"stays")
    pipe.execute()


def test_stats_flush_doctor_walk_every_primary(
    cluster: Cluster, cclient: redis.RedisCluster
) -> None:
    seed(cclient, 600)
    stats = json.loads(invoke("stats", "--json", "--exact", "--redis-url", cluster.url).output)
    ns = stats["namespaces"][PREFIX] if "namespaces" in stats else stats
    text = json.dumps(ns)
    assert stats["dbsize"] == 1202, stats["dbsize"]
    assert '"action": 600' in text and '"blob": 600' in text and '"upload": 1' in text, text
    sampled = json.loads(invoke("stats", "--json", "--sample", "300", "--redis-url",
                                cluster.url).output)
    assert sampled["dbsize"] == 1202 and 300 <= sampled["keys_visited"] < 1202, sampled

    doctor = invoke("doctor", "--redis-url", cluster.url).output
    for check in ("redis reachable", "read permission", "write permission"):
        assert f"PASS  {check}" in doctor, doctor

    res = invoke("flush", "--yes", "--redis-url", cluster.url)
    assert res.exit_code == 0, res.output
    assert "deleted 1201 keys" in res.output, res.output
    left = list(cclient.scan_iter(count=1000))
    assert left == [b"other:key"], left


# -- real go builds ---------------------------------------------------------------------


def test_go_build_through_cluster_survives_a_killed_primary(
    cluster: Cluster, cclient: redis.RedisCluster, tmp_path: Path, go_env: dict[str, str]
) -> None:
    write_module(tmp_path / "checkout" / "src")
    checkout = tmp_path / "checkout" / "src"
    a = make_runner(tmp_path, "A", checkout, go_env, cluster.url)
    assert a.build_and_run() == HELLO
    cold = a.take_stats()
    assert cold["puts"] > 50 and cold["put_errors"] == 0 and cold["get_errors"] == 0, cold
    nodes_used = {cluster.node_of(k).port
                  for k in cclient.scan_iter(match=f"{PREFIX}a:*", count=1000)}
    assert nodes_used == set(cluster.ports)

    b = make_runner(tmp_path, "B", checkout, go_env, cluster.url)
    assert b.build_and_run() == HELLO
    warm = b.take_stats()
    assert hit_ratio(warm) >= 0.95 and warm["remote_hits"] > 50, warm

    # Runner C builds cold (-gcflags changes every action id) while a primary dies.
    c = make_runner(tmp_path, "C", checkout, go_env, cluster.url)
    before = count_actions(cclient)
    # Kill a primary once C has put a few entries: the build is under way.
    out, err = c.build_and_run_through(lambda: count_actions(cclient) >= before + 20,
                                       lambda: cluster.kill(1), "-gcflags=all=-N")
    assert out == HELLO
    stats = c.take_stats()
    assert stats["puts"] > 50, stats
    assert "unavailable" in err, err[-2000:]  # the helper did run into the dead primary

    # Runner D (empty caches) builds what B built while that primary stays dead: the two
    # live primaries still serve their share, and no breaker file switches Redis off.
    d = make_runner(tmp_path, "D", checkout, go_env, cluster.url)
    assert d.build_and_run() == HELLO
    degraded = d.take_stats()
    assert degraded["remote_hits"] > 20 and hit_ratio(degraded) >= 0.4, degraded
    assert not list(d.helper_dir.glob("breaker-*"))


def count_actions(client: redis.RedisCluster) -> int:
    return sum(1 for _ in client.scan_iter(match=f"{PREFIX}a:*", count=1000))


def test_a_node_failing_on_the_command_that_makes_the_client_is_one_shard() -> None:
    """The first command makes the Cluster client inside the guard: a failure there must be
    judged with that client (one of three primaries down), not with the ``None`` there was
    before it (which read as "every primary failed" and switched Redis off)."""
    from types import SimpleNamespace

    from redis_gocache.exceptions import RemoteUnavailable, ShardUnavailable
    from redis_gocache.store.cluster import NodeGuard

    made: list[object] = []
    client = SimpleNamespace(
        get_primaries=lambda: [1, 2, 3],
        get_node_from_key=lambda key: SimpleNamespace(name="127.0.0.1:7001"),
    )
    guard = NodeGuard()
    with pytest.raises(ShardUnavailable, match="7001"):
        with guard.around(lambda: made[0] if made else None, ["gocache:a:00"]):
            made.append(client)  # what the first command does
            raise RemoteUnavailable("Connection refused")
    # Remembered: the next command on that node is a miss without a round trip.
    with pytest.raises(ShardUnavailable, match="is down"):
        with guard.around(lambda: client, ["gocache:a:01"]):
            raise AssertionError("not reached")
