"""``redis-gocache exporter`` against a real redis-server: a real process serving HTTP on
loopback, scraped with urllib and read with prometheus-client's own parser.

Redis is reached as a reader-only ACL user, as the chart runs it: the exporter must need
nothing more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from redis_gocache.exceptions import ConfigError
from redis_gocache.ops.exporter import metric_names, parse_listen
from redis_gocache.store import counters
from tests.redisproc import RedisServer, free_port

READER = ("gocache-reader", "r" * 32)


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class ExporterProcess:
    """``redis-gocache exporter`` on a free loopback port, stopped by its pid."""

    def __init__(self, redis_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "redis_gocache", "exporter",
             "--listen", f"127.0.0.1:{self.port}", "--redis-url", redis_url, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env if env is not None else dict(os.environ), text=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the exporter exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                self.scrape_text()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def scrape_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            assert r.status == 200
            return str(r.read().decode())

    def scrape(self) -> list[Sample]:
        return [Sample(s.name, dict(s.labels), s.value)
                for family in text_string_to_metric_families(self.scrape_text())
                for s in family.samples]

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        _, err = self.proc.communicate(timeout=10)
        return str(err)

    def __enter__(self) -> ExporterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name
             and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


RUN = {"runs": 1, "gets": 10, "hits": 8, "local_hits": 6, "remote_hits": 2, "misses": 2,
       "get_errors": 1, "puts": 3, "hit_bytes": 4096, "remote_hit_bytes": 1024, "put_bytes": 2048,
       "uploads": 2, "upload_bytes": 2000, "redis_wait_ms": 1500, "prefetched": 4,
       "trims": 1, "trimmed_outputs": 7, "trimmed_bytes": 7000}


@pytest.fixture
def acl_redis() -> Iterator[RedisServer]:
    """A Redis whose only users are an admin (to seed) and the chart's reader rules."""
    server = RedisServer(password="admin-pw").start()
    admin = redis.Redis(host="127.0.0.1", port=server.port, password="admin-pw")
    admin.execute_command("ACL", "SETUSER", READER[0], "on", f">{READER[1]}", "resetkeys",
                          "%R~gocache:*", "-@all", "+@read", "+@connection", "-@dangerous")
    admin.close()
    try:
        yield server
    finally:
        server.cleanup()


def reader_url(server: RedisServer) -> str:
    return f"redis://{READER[0]}:{READER[1]}@127.0.0.1:{server.port}/0"


def test_scrape_reads_the_fleet_counters_live(acl_redis: RedisServer) -> None:
    admin = redis.Redis(host="127.0.0.1", port=acl_redis.port, password="admin-pw")
    now = time.time()
    counters.push(admin, "gocache:", RUN, now=now)
    counters.push(admin, "gocache:", RUN, now=now - 86400)  # yesterday
    with ExporterProcess(reader_url(acl_redis)) as exp:
        got = exp.scrape()
        ns = {"prefix": "gocache:"}
        assert value(got, "redis_gocache_fleet_up") == 1
        assert value(got, "redis_gocache_gets_total", **ns) == 20
        assert value(got, "redis_gocache_hits_total", source="local", **ns) == 12
        assert value(got, "redis_gocache_hits_total", source="remote", **ns) == 4
        assert value(got, "redis_gocache_misses_total", **ns) == 4
        assert value(got, "redis_gocache_get_errors_total", **ns) == 2
        assert value(got, "redis_gocache_puts_total", **ns) == 6
        assert value(got, "redis_gocache_read_bytes_total", **ns) == 8192
        assert value(got, "redis_gocache_redis_read_bytes_total", **ns) == 2048
        assert value(got, "redis_gocache_prefetched_total", **ns) == 8
        assert value(got, "redis_gocache_trims_total", **ns) == 2
        assert value(got, "redis_gocache_trimmed_bytes_total", **ns) == 14000
        assert value(got, "redis_gocache_redis_wait_seconds_total", **ns) == 3.0
        assert value(got, "redis_gocache_hit_ratio", **ns) == 0.8
        today, yesterday = counters.day(now), counters.day(now - 86400)
        assert value(got, "redis_gocache_day_gets", day=today, **ns) == 10
        assert value(got, "redis_gocache_day_gets", day=yesterday, **ns) == 10
        assert value(got, "redis_gocache_day_trimmed_outputs", day=today, **ns) == 7
        # Every name the scrape returned is one the module says it emits.
        assert {s.name for s in got} <= set(metric_names())

        # Read at scrape time: another run's push shows at the next scrape.
        counters.push(admin, "gocache:", RUN, now=now)
        again = exp.scrape()
        assert value(again, "redis_gocache_gets_total", **ns) == 30
        assert value(again, "redis_gocache_day_gets", day=today, **ns) == 20
    admin.close()


def test_several_namespaces_and_days(acl_redis: RedisServer) -> None:
    admin = redis.Redis(host="127.0.0.1", port=acl_redis.port, password="admin-pw")
    counters.push(admin, "gocache:", RUN)
    counters.push(admin, "gocache:team2:", {**RUN, "gets": 5})
    with ExporterProcess(reader_url(acl_redis), "--namespace", "gocache:",
                         "--namespace", "gocache:team2:", "--days", "0") as exp:
        got = exp.scrape()
        assert value(got, "redis_gocache_gets_total", prefix="gocache:") == 10
        assert value(got, "redis_gocache_gets_total", prefix="gocache:team2:") == 5
        assert not [s for s in got if s.name.startswith("redis_gocache_day_")]
    admin.close()


def test_redis_down_is_fleet_up_zero_not_a_failed_scrape() -> None:
    server = RedisServer().start()
    exp = ExporterProcess(server.url, "--timeout", "0.5")
    try:
        assert value(exp.scrape(), "redis_gocache_fleet_up") == 1
        server.stop()
        got = exp.scrape()  # still HTTP 200
        assert value(got, "redis_gocache_fleet_up") == 0
        assert [s.name for s in got] == ["redis_gocache_fleet_up"]
    finally:
        err = exp.stop()
        server.cleanup()
    assert "cannot read the fleet counters" in err


def test_wrong_password_is_fleet_up_zero_and_never_printed(acl_redis: RedisServer) -> None:
    url = f"redis://{READER[0]}:not-the-password@127.0.0.1:{acl_redis.port}/0"
    exp = ExporterProcess(url)
    try:
        assert value(exp.scrape(), "redis_gocache_fleet_up") == 0
    finally:
        err = exp.stop()
    assert "not-the-password" not in err


def test_listen_address_forms() -> None:
    assert parse_listen("0.0.0.0:9122") == ("0.0.0.0", 9122)
    assert parse_listen("[::]:9122") == ("::", 9122)
    for bad in ("9122", "host:", "host:99999", ":9122"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def test_command_tree_does_not_import_prometheus_client() -> None:
    # prometheus-client is an optional extra: only running `exporter` may import it.
    code = ("import sys; from redis_gocache.cli import build_cli; cli = build_cli(); "
            "assert 'exporter' in cli.commands; "
            "assert 'prometheus_client' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    help_ = subprocess.run([sys.executable, "-m", "redis_gocache", "exporter", "--help"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert "--listen" in help_.stdout and "redis-gocache[exporter]" in help_.stdout
