"""``redis-gocache doctor`` against real redis-servers set up well and badly."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_gocache.config import resolve
from redis_gocache.ops import doctor
from redis_gocache.store import counters
from tests.redisproc import RedisServer, free_port

PASSWORD = "hunter2-very-secret"


def checks(env: dict[str, str], cwd: Path | str = "/") -> dict[str, doctor.Check]:
    config = resolve({}, env)
    return {c.name: c for c in doctor.run_checks(config, env=env, cwd=str(cwd))}


def doctor_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "redis_gocache", "doctor", *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def env(go_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """A runner's environment: Go offline, GOCACHEPROG set, a private local directory."""
    env = dict(go_env)
    env["GOCACHEPROG"] = "redis-gocache"
    env["REDIS_GOCACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return env


@pytest.fixture(scope="module")
def good_server() -> Iterator[RedisServer]:
    with RedisServer(["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]) as server:
        yield server


def test_well_configured_runner_passes(good_server: RedisServer, env: dict[str, str]) -> None:
    env["REDIS_URL"] = good_server.url
    done = doctor_cli(env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line[:4] in ("PASS", "WARN", "FAIL")]
    assert lines and all(line.startswith("PASS") for line in lines), done.stdout
    for name in ("redis reachable", "latency", "server version", "eviction policy",
                 "maxmemory", "memory headroom", "read permission", "write permission",
                 "local directory", "free space", "go version", "GOCACHEPROG", "checkout path"):
        assert name in done.stdout
    assert "0 failed" in done.stdout
    client = redis.Redis.from_url(good_server.url)
    assert client.dbsize() == 0  # the test write was removed
    client.close()


def test_noeviction_and_no_maxmemory_warn(redis_server: RedisServer,
                                          redis_client: redis.Redis,
                                          env: dict[str, str]) -> None:
    env["REDIS_URL"] = redis_server.url
    found = checks(env)
    assert found["eviction policy"].status == doctor.WARN
    assert "noeviction" in found["eviction policy"].message
    assert "allkeys-lru" in found["eviction policy"].hint
    assert found["maxmemory"].status == doctor.WARN
    done = doctor_cli(env)
    assert done.returncode == 0  # warnings do not fail
    assert "WARN  eviction policy" in done.stdout


def test_unreachable_redis_fails_without_traceback(env: dict[str, str]) -> None:
    env["REDIS_URL"] = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    done = doctor_cli(env)
    assert done.returncode == 1
    assert "FAIL  redis reachable" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "redis://:***@127.0.0.1" in done.stdout
    assert "hint:" in done.stdout


def test_password_is_never_printed(env: dict[str, str]) -> None:
    with RedisServer(password=PASSWORD) as server:
        # Right password, in the URL and then from a file: passes, and never shows.
        env["REDIS_URL"] = server.url
        done = doctor_cli(env, "--json")
        assert done.returncode == 0, done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        pw_file = Path(env["REDIS_GOCACHE_DIR"]).parent / "pw"
        pw_file.write_text(PASSWORD + "\n")
        env["REDIS_URL"] = f"redis://127.0.0.1:{server.port}/0"
        env["REDIS_PASSWORD_FILE"] = str(pw_file)
        done = doctor_cli(env)
        assert done.returncode == 0, done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        # A wrong password: a failure that says what to check, with neither password shown.
        del env["REDIS_PASSWORD_FILE"]
        env["REDIS_URL"] = f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0"
        done = doctor_cli(env)
        assert done.returncode == 1
        assert "FAIL  redis reachable" in done.stdout
        assert "credentials" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr


def test_reader_user_fails_write_check_unless_read_only(redis_server: RedisServer,
                                                        redis_client: redis.Redis,
                                                        env: dict[str, str]) -> None:
    redis_client.execute_command("ACL", "SETUSER", "reader", "reset", "on", ">readerpw",
                                 "~gocache:*", "+@read", "+ping", "+info", "+client")
    try:
        env["REDIS_URL"] = f"redis://reader:readerpw@127.0.0.1:{redis_server.port}/0"
        found = checks(env)
        assert found["read permission"].status == doctor.PASS
        assert found["write permission"].status == doctor.FAIL
        assert "REDIS_GOCACHE_READONLY" in found["write permission"].hint
        env["REDIS_GOCACHE_READONLY"] = "1"
        assert checks(env)["write permission"].status == doctor.PASS
    finally:
        redis_client.execute_command("ACL", "DELUSER", "reader")


def test_full_noeviction_server_fails(env: dict[str, str]) -> None:
    with RedisServer(["--maxmemory-policy", "noeviction"]) as server:
        client = redis.Redis.from_url(server.url)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 1024)
        try:
            client.set("filler", b"x" * 4096)
        except redis.exceptions.OutOfMemoryError:
            pass  # full already
        env["REDIS_URL"] = server.url
        found = checks(env)
        client.close()
    assert found["memory headroom"].status == doctor.FAIL
    assert found["write permission"].status == doctor.FAIL
    assert "out of memory" in found["write permission"].message


def test_go_version_rules() -> None:
    v = doctor._go_version
    assert v("go version go1.27.3 linux/amd64", "").status == doctor.PASS
    assert v("go version go1.24.0 darwin/arm64", "").status == doctor.PASS
    assert v("go version go1.22.5 linux/amd64", "").status == doctor.FAIL
    assert v("go version go1.22.5 linux/amd64", "loopvar,cacheprog").status == doctor.PASS
    assert v("go version go1.20 linux/amd64", "cacheprog").status == doctor.FAIL
    assert v("go version devel go1.26-abcdef linux/amd64", "").status == doctor.PASS


def test_gocacheprog_and_checkout_paths(redis_server: RedisServer, redis_client: redis.Redis,
                                        env: dict[str, str], tmp_path: Path) -> None:
    del env["GOCACHEPROG"]
    env["REDIS_URL"] = redis_server.url
    found = checks(env, tmp_path)
    assert found["GOCACHEPROG"].status == doctor.WARN
    assert found["checkout path"].status == doctor.PASS
    assert "-trimpath" in found["checkout path"].message

    counters.push(redis_client, "gocache:", {"runs": 1}, {"/builds/a/app": 3})
    counters.push(redis_client, "gocache:", {"runs": 1}, {"/builds/b/app": 1})
    found = checks(env, tmp_path)
    assert found["checkout path"].status == doctor.WARN
    assert "2 checkout paths" in found["checkout path"].message
    env["GOFLAGS"] = "-trimpath"
    assert checks(env, tmp_path)["checkout path"].status == doctor.PASS


def test_unwritable_local_directory_fails(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    env["REDIS_GOCACHE_DIR"] = str(blocker / "cache")
    found = checks(env)
    assert found["redis"].status == doctor.WARN  # no REDIS_URL: local only
    assert found["local directory"].status == doctor.FAIL
    assert os.path.exists(blocker)
