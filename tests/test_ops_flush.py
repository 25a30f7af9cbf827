"""``redis-gocache flush`` against a real redis-server: one namespace goes, nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import redis
from click.testing import CliRunner, Result

from redis_gocache.cli import build_cli
from tests.redisproc import RedisServer


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(build_cli(), list(args), input=input, catch_exceptions=False)


def hexid(i: int, n: int = 64) -> str:
    return f"{i:0{n}x}"


def seed(client: redis.Redis, prefix: str, actions: int, blobs: int = 0) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(actions):
        pipe.hset(f"{prefix}a:{hexid(i)}", mapping={"oid": hexid(i), "size": 1, "time": 1,
                                                     "body": b"x"})
    for i in range(blobs):
        pipe.set(f"{prefix}o:{hexid(i)}", b"blob")
    pipe.set(f"{prefix}t:{hexid(7, 32)}", b"part")
    pipe.hset(f"{prefix}s:totals", "gets", 1)
    pipe.execute()


def others(client: redis.Redis) -> None:
    """Keys that a flush of ``gocache:`` must leave alone."""
    seed(client, "gocache:team2:", 3, 1)  # another namespace nested under ours
    seed(client, "other:", 2)
    client.set("gocache:not-a-cache-key", b"x")  # shares the prefix, not our shape
    client.set("gocache:a:short", b"x")
    client.set("unrelated", b"x")


def test_flush_deletes_one_namespace_only(redis_server: RedisServer,
                                          redis_client: redis.Redis, tmp_path: Path) -> None:
    seed(redis_client, "gocache:", 1200, 30)  # more than one UNLINK batch
    others(redis_client)
    before_others = {k for k in redis_client.scan_iter() if not k.startswith(b"gocache:")
                     or k.startswith(b"gocache:team2:") or b"not-a" in k or b"short" in k}

    res = invoke("flush", "--yes", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    assert "deleted 1232 keys" in res.output
    assert "left 8 other keys" in res.output  # team2: 6, two foreign
    left = set(redis_client.scan_iter())
    assert left == before_others
    assert redis_client.exists("gocache:team2:s:totals")
    assert redis_client.exists("other:a:" + hexid(1))


def test_dry_run_deletes_nothing(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    seed(redis_client, "gocache:", 5, 2)
    others(redis_client)
    size = redis_client.dbsize()
    res = invoke("flush", "--dry-run", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    assert "would delete 9 keys (5 action, 2 blob, 1 stats, 1 upload)" in res.output
    assert redis_client.dbsize() == size


def test_prompt_no_aborts_and_yes_deletes(redis_server: RedisServer,
                                          redis_client: redis.Redis) -> None:
    seed(redis_client, "ns1:", 4)
    res = invoke("flush", "--prefix", "ns1:", "--redis-url", redis_server.url, input="n\n")
    assert res.exit_code == 1
    assert "Aborted" in res.output
    assert redis_client.dbsize() == 6
    res = invoke("flush", "--prefix", "ns1:", "--redis-url", redis_server.url, input="y\n")
    assert res.exit_code == 0, res.output
    assert redis_client.dbsize() == 0


def test_glob_characters_in_prefix_are_literal(redis_server: RedisServer,
                                               redis_client: redis.Redis) -> None:
    seed(redis_client, "c[i]*:", 2)
    seed(redis_client, "ci-:", 2)  # would match the unescaped pattern c[i]*
    res = invoke("flush", "-y", "--prefix", "c[i]*:", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    assert sorted(redis_client.scan_iter()) == sorted(
        [b"ci-:a:" + hexid(i).encode() for i in range(2)]
        + [b"ci-:t:" + hexid(7, 32).encode(), b"ci-:s:totals"])


def test_empty_prefix_is_refused(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.set("x", b"1")
    res = invoke("flush", "-y", "--prefix", "", "--redis-url", redis_server.url)
    assert res.exit_code == 2
    assert redis_client.exists("x")


def test_unreachable_redis_is_one_line_and_exit_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.redisproc import free_port

    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS")}
    done = subprocess.run([sys.executable, "-m", "redis_gocache", "flush", "-y",
                           "--redis-url", url], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "cannot flush at redis://:***@127.0.0.1" in done.stderr


def test_flush_and_stats_know_the_prefetch_manifests(redis_server: RedisServer,
                                                      redis_client: redis.Redis) -> None:
    """Regression: the ops commands' key grammar lacked the ``m:`` manifests the store
    writes, so a flush left them behind ("left 2 other keys") and stats did not count them."""
    from redis_gocache.prefetch import command_tag
    from redis_gocache.store.redis import RedisStore

    store = RedisStore(redis_server.url, prefix="gocache:", ttl=600, inline_max=1024,
                       timeout=2.0, retries=0, max_connections=2)
    try:
        for cwd in ("/src/app", "/src/lib"):  # manifests as the helper writes them
            store.write_manifest(command_tag(cwd, {}, b"go\0build\0./..."), bytes(64))
    finally:
        store.close()
    seed(redis_client, "gocache:", 3)
    assert len(list(redis_client.scan_iter(match="gocache:m:*"))) == 2

    stats = CliRunner().invoke(build_cli(), ["stats", "--json", "--exact", "--redis-url",
                                             redis_server.url], catch_exceptions=False)
    assert stats.exit_code == 0, stats.output
    assert '"manifest": 2' in stats.output

    res = invoke("flush", "--yes", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    assert "deleted 7 keys" in res.output, res.output
    assert "other keys" not in res.output
    assert redis_client.dbsize() == 0
