"""``redis-gocache stats`` against a real redis-server: counters, key census, output formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from redis_gocache.cli import build_cli
from redis_gocache.store import counters
from tests.redisproc import RedisServer, free_port


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


def seed_keys(client: redis.Redis, prefix: str, actions: int, blobs: int = 0) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(actions):
        pipe.hset(f"{prefix}a:{i:064x}", mapping={"oid": f"{i:064x}", "size": 3, "time": 1,
                                                   "body": b"abc"})
        if len(pipe) >= 5000:
            pipe.execute()
    for i in range(blobs):
        pipe.set(f"{prefix}o:{i:064x}", b"x" * 1000)
    pipe.execute()


RUN = {"runs": 1, "gets": 10, "hits": 8, "local_hits": 6, "remote_hits": 2, "misses": 2,
       "puts": 2, "hit_bytes": 4096, "remote_hit_bytes": 1024, "put_bytes": 2048,
       "uploads": 2, "upload_bytes": 512, "redis_wait_ms": 1500, "rejected": 1,
       "rejected:hash": 1}


def test_json_counts_and_hit_rate(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    seed_keys(redis_client, "gocache:", 20, 3)
    counters.push(redis_client, "gocache:", RUN, {"/src/app": 1})
    counters.push(redis_client, "gocache:", RUN)
    res = invoke("stats", "--json", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    ns = data["namespaces"]["gocache:"]
    assert ns["totals"]["gets"] == 20 and ns["totals"]["runs"] == 2
    assert ns["hit_rate"] == 0.8
    assert data["keys_exact"]  # the whole database fits in one sample
    assert ns["keys"] == {"action": 20, "blob": 3, "zblob": 0, "upload": 0, "manifest": 0,
                          "stats": 3}
    assert ns["memory_bytes"]["blob"] >= 3000
    assert list(ns["days"]) == [counters.day(time.time())]
    assert data["server"]["redis_version"].startswith("7.")

    text = invoke("stats", "--redis-url", redis_server.url)
    assert text.exit_code == 0
    assert "2 runs, 20 gets: 16 hits (80.0%; 12 local, 4 redis)" in text.output
    assert "20 action keys" in text.output
    # Uploads count bytes as stored: compressed, a quarter of what go put.
    assert "0.25 per output byte written" in text.output


def test_sampling_estimates_each_namespace(redis_server: RedisServer,
                                           redis_client: redis.Redis) -> None:
    seed_keys(redis_client, "gocache:", 20_000)
    seed_keys(redis_client, "team2:", 10_000)
    res = invoke("stats", "--json", "--all", "--sample", "3000",
                 "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert not data["keys_exact"]
    assert 3000 <= data["keys_visited"] < 6000
    assert set(data["namespaces"]) == {"gocache:", "team2:"}
    for prefix, real in (("gocache:", 20_000), ("team2:", 10_000)):
        estimate = data["namespaces"][prefix]["keys"]["action"]
        assert abs(estimate - real) < real * 0.25, (prefix, estimate)

    exact = json.loads(invoke("stats", "--json", "--exact", "--redis-url",
                              redis_server.url).output)
    assert exact["keys_exact"]
    assert exact["namespaces"]["gocache:"]["keys"]["action"] == 20_000
    assert set(exact["namespaces"]) == {"gocache:"}  # --exact on one prefix: SCAN MATCH


def test_prometheus_output_parses(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    odd = 'team "x"\\:'  # quotes and a backslash must be escaped in label values
    seed_keys(redis_client, "gocache:", 5, 1)
    counters.push(redis_client, "gocache:", RUN)
    counters.push(redis_client, odd, RUN)
    res = invoke("stats", "--prometheus", "--namespace", "gocache:", "--namespace", odd,
                 "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    families = {f.name: f for f in text_string_to_metric_families(res.output)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}

    assert all(f.type != "unknown" for f in families.values()), families.keys()
    assert families["redis_gocache_gets"].type == "counter"
    assert len(families["redis_gocache_gets"].samples) == 2
    assert samples[("redis_gocache_gets_total", (("namespace", "gocache:"),))] == 10
    assert samples[("redis_gocache_gets_total", (("namespace", odd),))] == 10
    assert samples[("redis_gocache_hits_total",
                    (("namespace", "gocache:"), ("source", "remote")))] == 2
    assert samples[("redis_gocache_redis_wait_seconds_total", (("namespace", odd),))] == 1.5
    assert samples[("redis_gocache_hit_ratio", (("namespace", "gocache:"),))] == 0.8
    assert samples[("redis_gocache_keys", (("kind", "action"), ("namespace", "gocache:")))] == 5
    assert samples[("redis_gocache_keys", (("kind", "blob"), ("namespace", "gocache:")))] == 1
    assert samples[("redis_gocache_keys_exact", ())] == 1
    assert families["redis_gocache_redis_used_memory_bytes"].type == "gauge"
    assert ("redis_gocache_redis_evicted_keys_total", ()) in samples


def test_empty_namespace_and_bad_flags(redis_server: RedisServer,
                                       redis_client: redis.Redis, tmp_path: Path) -> None:
    res = invoke("stats", "--redis-url", redis_server.url)
    assert res.exit_code == 0, res.output
    assert "no fleet statistics yet" in res.output
    res = invoke("stats", "--json", "--prometheus", "--redis-url", redis_server.url)
    assert res.exit_code == 2
    # Without Redis, stats shows the local directory and says there is nothing shared.
    res = invoke("stats", "--cache-dir", str(tmp_path))
    assert res.exit_code == 0 and "no Redis URL (REDIS_URL, --redis-url)" in res.output


def test_unreachable_or_wrong_password_is_one_line(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS")}
    with RedisServer(password="right-horse") as server:
        for url in (f"redis://:wrong-battery@127.0.0.1:{server.port}/0",
                    f"redis://:wrong-battery@127.0.0.1:{free_port()}/0"):
            done = subprocess.run([sys.executable, "-m", "redis_gocache", "stats", "--redis-url",
                                   url], capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr
            assert "wrong-battery" not in done.stdout + done.stderr
            assert done.stderr.startswith("redis-gocache: cannot read statistics at "
                                          "redis://:***@127.0.0.1")
