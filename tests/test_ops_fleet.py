"""Fleet statistics: the real helper adds its counters to Redis after its last answer."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import redis

from redis_gocache.ops import fleet
from redis_gocache.store import counters as stored
from tests.gocmd import GoCmd, action_id, helper_env
from tests.redisproc import RedisServer, free_port

TOTALS = "gocache:s:totals"


def counters(client: redis.Redis, key: str = TOTALS) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(key).items()}


def checkout(tmp_path: Path, name: str = "checkout") -> Path:
    path = tmp_path / name
    (path / ".git").mkdir(parents=True)
    (path / "pkg").mkdir()
    return path


def run(env: dict[str, str], steps: list[tuple[str, str, bytes]], cwd: Path | None = None,
        command: list[str] | None = None) -> GoCmd:
    """Play (get|put, name, body) steps, close, and return the finished helper."""
    with GoCmd(env, cwd=cwd, command=command) as go:
        go.capability()
        for op, name, body in steps:
            if op == "put":
                go.put_wait(action_id(name), body)
            else:
                go.get_wait(action_id(name))
        go.close()
    return go


def spool_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("stats-*/run-*.json"))


def test_helper_reports_its_counters(redis_server: RedisServer, redis_client: redis.Redis,
                                     tmp_path: Path) -> None:
    src = checkout(tmp_path)
    big = b"B" * 200_000
    env = helper_env(tmp_path / "one", redis_server.url)
    run(env, [("put", "small", b"hello"), ("put", "big", big), ("get", "small", b""),
              ("get", "nothing", b"")], cwd=src / "pkg")
    t = counters(redis_client)
    assert t["runs"] == 1
    assert (t["gets"], t["hits"], t["local_hits"], t["misses"]) == (2, 1, 1, 1)
    assert (t["puts"], t["put_bytes"], t["uploads"]) == (2, 5 + len(big), 2)
    assert t["hit_bytes"] == 5
    assert abs(t["updated"] - time.time()) < 60
    assert 0 < redis_client.ttl(TOTALS) <= stored.TOTALS_TTL
    today = f"gocache:s:day:{stored.day(time.time())}"
    assert counters(redis_client, today)["gets"] == 2
    assert 0 < redis_client.ttl(today) <= stored.DAY_TTL
    paths = redis_client.hgetall(f"gocache:s:paths:{stored.day(time.time())}")
    assert paths == {str(src).encode(): b"1"}  # the checkout root, not the package dir

    # Another runner (empty local dir) gets both from Redis.
    run(helper_env(tmp_path / "two", redis_server.url),
        [("get", "small", b""), ("get", "big", b"")], cwd=src)
    t = counters(redis_client)
    assert (t["runs"], t["gets"], t["remote_hits"]) == (2, 4, 2)
    assert t["remote_hit_bytes"] == 5 + len(big)
    assert t["redis_wait_ms"] >= 0


def test_rejected_entries_are_counted_by_kind(redis_server: RedisServer,
                                              redis_client: redis.Redis,
                                              tmp_path: Path) -> None:
    redis_client.hset("gocache:a:" + action_id("bad").hex(), mapping={"oid": "zz"})
    run(helper_env(tmp_path / "c", redis_server.url), [("get", "bad", b"")])
    t = counters(redis_client)
    assert t["rejected"] == 1 and t["rejected:bad_fields"] == 1 and t["misses"] == 1


def test_read_only_and_opted_out_runs_never_report(redis_server: RedisServer,
                                                   redis_client: redis.Redis,
                                                   tmp_path: Path) -> None:
    for extra in ({"REDIS_GOCACHE_READONLY": "1"}, {"REDIS_GOCACHE_NO_FLEET_STATS": "1"}):
        cache = tmp_path / next(iter(extra))
        run(helper_env(cache, redis_server.url, extra), [("put", "x", b"x"), ("get", "y", b"")])
        assert not spool_files(cache)
    assert not list(redis_client.scan_iter("gocache:s:*"))


def imported_redis(stderr: str) -> bool:
    """Whether ``python -X importtime`` saw the redis package imported."""
    return re.search(r"\|\s+redis(\.|\s*$)", stderr, re.MULTILINE) is not None


def test_warm_local_run_does_not_import_redis_and_reports_later(
        redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = helper_env(cache, redis_server.url)
    importtime = [sys.executable, "-X", "importtime", "-m", "redis_gocache"]
    cold = run(env, [("put", "a", b"aaa"), ("put", "b", b"bbb")], command=importtime)
    assert imported_redis(cold.stderr)  # the check can see an import when there is one
    assert counters(redis_client)["runs"] == 1

    warm = run(env, [("get", "a", b""), ("get", "b", b"")], command=importtime)
    assert not imported_redis(warm.stderr), "a fully local run imported redis"
    assert counters(redis_client)["runs"] == 1  # not sent yet...
    assert len(spool_files(cache)) == 1  # ...but kept

    # The next run that talks to Redis anyway (a miss goes to Redis) sends both.
    run(env, [("get", "unknown", b"")])
    t = counters(redis_client)
    assert (t["runs"], t["gets"], t["local_hits"], t["misses"]) == (3, 3, 2, 1)
    assert not spool_files(cache)


def test_redis_down_keeps_counters_locally(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    url = f"redis://127.0.0.1:{free_port()}/0"
    go = run(helper_env(cache, url), [("put", "a", b"a"), ("get", "b", b"")])
    assert "Traceback" not in go.stderr
    files = spool_files(cache)
    assert len(files) == 1
    # When Redis is back (same URL, so the same spool), the next run sends the spool too.
    with RedisServer(port=int(url.rsplit(":", 1)[1].split("/")[0])) as server:
        for breaker in cache.glob("breaker-*"):
            breaker.unlink()  # the breaker would keep Redis off for its cool-down
        run(helper_env(cache, server.url), [("get", "c", b"")])
        client = redis.Redis.from_url(server.url)
        t = counters(client)
        client.close()
    assert (t["runs"], t["gets"], t["puts"]) == (2, 2, 1)
    assert not spool_files(cache)


def test_counters_from_stats() -> None:
    counts = fleet.counters({"gets": 3, "hits": 2, "rejected": {"hash": 2}, "rejected_total": 2,
                             "remote_wait_seconds": 0.0125, "puts": 0})
    assert counts["runs"] == 1 and counts["gets"] == 3 and counts["rejected:hash"] == 2
    assert counts["redis_wait_ms"] == 12 or counts["redis_wait_ms"] == 13
    assert set(stored.COUNTERS) <= set(counts)


# -- the push goes through the guard (redis_gocache.remote.Remote) ------------------------


def test_counters_refused_by_an_acl_stay_in_the_spool(tmp_path: Path) -> None:
    """A writer whose ACL leaves the statistics keys read-only: its entries are stored, the
    end-of-run push gets ``NOPERM``, which the guard takes quietly as a write refused (as for
    a reader user), and the run's counters wait in the spool for a run that may write them."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.execute_command(
            "ACL", "SETUSER", "nostats", "on", ">nostats-pw", "resetkeys",
            *(f"~gocache:{kind}:*" for kind in "aoztm"), "%R~gocache:s:*", "resetchannels",
            "+@all")
        url = f"redis://nostats:nostats-pw@127.0.0.1:{server.port}/0"
        cache = tmp_path / "cache"
        go = run(helper_env(cache, url, {"REDIS_GOCACHE_VERBOSE": "1"}),
                 [("put", "a", b"aaa"), ("get", "b", b"")])
        assert "fleet statistics not sent" in go.stderr, go.stderr
        assert "Traceback" not in go.stderr and "housekeeping failed" not in go.stderr
        assert "NOPERM" not in go.stderr  # quiet, as a reader user's refused writes
        assert admin.exists(f"gocache:a:{action_id('a').hex()}")  # the put itself went in
        assert not list(admin.scan_iter("gocache:s:*"))
        assert len(spool_files(cache)) == 1
        assert not list(cache.glob("breaker-*"))  # a refusal is no outage

        # Allowed to write them now: the next run sends its counters and the spool's.
        admin.execute_command("ACL", "SETUSER", "nostats", "~gocache:s:*")
        run(helper_env(cache, url), [("get", "c", b"")])
        t = counters(admin)
        admin.close()
    assert (t["runs"], t["gets"], t["puts"], t["misses"]) == (2, 2, 1, 2)
    assert not spool_files(cache)


def test_redis_dying_before_the_push_is_handled_by_the_guard(tmp_path: Path) -> None:
    """Redis answers during the run and is gone when the counters go out: the guard says so
    once, trips the breaker for the next helpers (as for any other write), and the counters,
    with the runs that were waiting in the spool, stay in it."""
    from redis_gocache import helper
    from redis_gocache.config import resolve
    from redis_gocache.stats import Stats

    lines: list[str] = []
    with RedisServer() as server:
        config = resolve({}, helper_env(tmp_path / "cache", server.url,
                                        {"REDIS_GOCACHE_VERBOSE": "1"}))
        stats = Stats()
        remote = helper._make_remote(config, stats)
        assert remote is not None
        remote._log = lines.append
        spool = fleet.spool_for(config)
        spool.add({"runs": 1, "gets": 5}, {"/earlier": 1})  # a run that could not push
        assert remote.read_manifest("0" * 32) is None  # Redis in use: the store is made
        stats.add(gets=1, misses=1)
    # The server is gone (stopped, its port closed) before the end of the run.
    fleet.end_of_run(config, remote, stats, lines.append)
    remote.close()

    assert not remote.writable and not remote.readable
    assert [line for line in lines if "is unavailable" in line] == [lines[0]], lines
    assert "fleet statistics not sent" in lines[-1], lines
    assert (tmp_path / "cache" / f"breaker-{spool.path.rsplit('stats-', 1)[1]}").exists()
    waiting, paths = fleet.Spool.load([str(p) for p in spool_files(tmp_path / "cache")])
    assert (waiting["runs"], waiting["gets"]) == (2, 6), waiting
    assert paths["/earlier"] == 1 and len(paths) == 2


def test_the_push_reaches_the_store_through_the_guard(tmp_path: Path) -> None:
    """The same step against the shipped test double: what the store was handed, and a
    failing store's error counted as the guard counts command errors."""
    from redis_gocache.config import resolve
    from redis_gocache.exceptions import RemoteError
    from redis_gocache.remote import Remote
    from redis_gocache.stats import Stats
    from redis_gocache.store.memory import MemoryStore

    config = resolve({}, helper_env(tmp_path / "cache", "redis://127.0.0.1:1/0"))
    store = MemoryStore()
    stats = Stats()
    stats.add(gets=2, local_hits=2)
    lines: list[str] = []
    remote = Remote(store, stats=stats, log=lines.append, describe="memory")
    fleet.end_of_run(config, remote, stats, lines.append)
    assert (store.counters["runs"], store.counters["gets"]) == (1, 2)
    assert sum(store.paths.values()) == 1 and not spool_files(tmp_path / "cache")

    store.fail = RemoteError("ERR something odd")
    fleet.end_of_run(config, remote, stats, lines.append)
    assert store.counters["runs"] == 1  # not added twice
    assert lines == ["a Redis command failed (ERR something odd); carrying on"], lines
    assert remote.writable  # one command error is not yet a reason to stop
    assert len(spool_files(tmp_path / "cache")) == 1
