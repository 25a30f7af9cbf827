"""Prefetching for new runners, through real helper processes and a real Redis."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import redis

from redis_gocache.prefetch import MIN_MANIFEST, command_tag, split_manifest
from tests import locallog
from tests.gocmd import GoCmd, action_id, helper_env, output_id
from tests.redisproc import RedisServer

N = MIN_MANIFEST + 10


def bodies() -> list[tuple[bytes, bytes]]:
    # Mixed sizes: inline entries and blobs (the default inline maximum is 128 KiB).
    return [(action_id(f"pre-{i}"), os.urandom(200 if i % 3 else 200_000)) for i in range(N)]


def wait_for_files(cache_dir: Path, count: int, timeout: float = 30.0) -> None:
    """Until ``count`` action records are in ``cache_dir`` (the prefetcher's work is done)."""
    deadline = time.monotonic() + timeout
    while len(locallog.records(cache_dir / "v1")) < count:
        assert time.monotonic() < deadline, "the prefetcher did not finish in time"
        time.sleep(0.05)


def run(cache_dir: Path, url: str, stats: Path, script: list[tuple[str, bytes, bytes]],
        extra: dict[str, str] | None = None, settle: int = 0) -> dict[str, object]:
    env = helper_env(cache_dir, url, {"REDIS_GOCACHE_STATS_FILE": str(stats), **(extra or {})})
    with GoCmd(env) as cmd:
        cmd.capability()
        if settle:
            # A new runner: cmd/go is busy elsewhere, the prefetcher is not.
            wait_for_files(cache_dir, settle)
        for op, action, body in script:
            if op == "put":
                assert "DiskPath" in cmd.put_wait(action, body), cmd.describe()
            else:
                res = cmd.get_wait(action)
                assert not res.get("Miss"), (res, cmd.describe())
                assert Path(res["DiskPath"]).read_bytes() == body
        cmd.close()
        assert cmd.wait() == 0
    return dict(json.loads(stats.read_text().splitlines()[-1]))


def test_a_new_runner_prefetches_what_the_last_run_asked_for(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    entries = bodies()
    url = redis_server.url
    # Runner A: cmd/go asks (misses), builds, puts, and asks again: a manifest of N gets.
    first = run(tmp_path / "a", url, tmp_path / "a.json",
                [("put", a, b) for a, b in entries] + [("get", a, b) for a, b in entries])
    assert first["local_hits"] == N
    manifests = redis_client.keys("gocache:m:*")
    assert len(manifests) == 1
    data = redis_client.get(manifests[0])
    assert isinstance(data, bytes)
    assert split_manifest(data) == [a for a, _ in entries]
    assert 0 < redis_client.ttl(manifests[0]) <= 7 * 86400

    # Runner B: empty local dir. Everything arrives before cmd/go asks, and is still counted
    # as a Redis hit (the entry came from Redis, cmd/go just did not wait for it).
    second = run(tmp_path / "b", url, tmp_path / "b.json",
                 [("get", a, b) for a, b in entries], settle=N)
    assert second["prefetched"] == N
    assert (second["remote_hits"], second["local_hits"], second["misses"]) == (N, 0, 0)
    assert second["rejected"] == {}

    # Runner B again: it has run this command before, so it prefetches nothing.
    third = run(tmp_path / "b", url, tmp_path / "b.json", [("get", a, b) for a, b in entries])
    assert (third["prefetched"], third["local_hits"]) == (0, N)


def test_prefetch_is_verified_and_can_be_switched_off(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    entries = bodies()
    url = redis_server.url
    run(tmp_path / "a", url, tmp_path / "a.json",
        [("put", a, b) for a, b in entries] + [("get", a, b) for a, b in entries])
    # Tamper with one inline entry: the prefetcher must reject it like any Redis hit.
    bad_action, bad_body = entries[1]
    redis_client.hset(f"gocache:a:{bad_action.hex()}", "body", b"x" * len(bad_body))
    off = run(tmp_path / "off", url, tmp_path / "off.json",
              [("get", a, b) for a, b in entries[2:]], extra={"REDIS_GOCACHE_NO_PREFETCH": "1"})
    assert off["prefetched"] == 0 and off["remote_hits"] == N - 2
    env = helper_env(tmp_path / "c", url, {"REDIS_GOCACHE_STATS_FILE": str(tmp_path / "c.json")})
    with GoCmd(env) as cmd:
        cmd.capability()
        wait_for_files(tmp_path / "c", N - 1)  # all but the tampered entry
        res = cmd.get_wait(bad_action)
        assert res.get("Miss") is True
        assert not os.path.exists(
            tmp_path / "c" / "v1" / "o" / output_id(bad_body).hex()[:2] / output_id(bad_body).hex()
        )
        cmd.close()
    stats = json.loads((tmp_path / "c.json").read_text().splitlines()[-1])
    assert stats["prefetched"] == N - 1
    # Rejected once: by the prefetcher, or by cmd/go's get if that came first. What the
    # prefetcher turned away is not asked for again in the same run.
    assert stats["rejected"].get("hash") == 1


def test_the_tag_names_the_command_place_and_target() -> None:
    base = command_tag("/src", {"GOOS": "linux"}, b"/usr/local/go/bin/go\0build\0./...")
    assert base == command_tag("/src", {"GOOS": "linux"}, b"go\0build\0./...")
    assert base != command_tag("/src", {"GOOS": "linux"}, b"go\0test\0./...")
    assert base != command_tag("/other", {"GOOS": "linux"}, b"go\0build\0./...")
    assert base != command_tag("/src", {"GOOS": "darwin"}, b"go\0build\0./...")


def test_split_manifest_ignores_a_torn_tail() -> None:
    ids = [os.urandom(32) for _ in range(3)]
    assert split_manifest(b"".join(ids) + b"xyz") == ids
    assert split_manifest(b"") == []
