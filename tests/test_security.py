"""Secrets and the local directory: the Redis password never shows up anywhere the helper
writes, and the local directory is private (0700 directories, 0600 files, umask respected)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from redis_gocache.store.layout import ACTION_LOG
from tests import locallog
from tests.gocmd import GoCmd, action_id, helper_command, helper_env
from tests.redisproc import RedisServer

SECRET = "Pw-7f3kQ-never-log-me"


@pytest.fixture(scope="module")
def auth_server():
    with RedisServer(password=SECRET) as srv:
        yield srv


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scenarios(port: int, tmp: Path) -> dict[str, tuple[str, dict[str, str]]]:
    (tmp / "pwfile").write_text(SECRET + "-wrong\n")
    dead = closed_port()
    return {
        "wrong-password-in-url": (f"redis://:{SECRET}-x@127.0.0.1:{port}/0", {}),
        "wrong-user-and-password": (f"redis://bob:{SECRET}@127.0.0.1:{port}/0", {}),
        "unreachable-host": (f"redis://:{SECRET}@127.0.0.1:{dead}/0", {}),
        "password-in-query": (f"redis://127.0.0.1:{dead}/0?password={SECRET}", {}),
        "password-breaks-url": (f"redis://:{SECRET}/x@127.0.0.1:{port}/0", {}),
        "password-with-hash": (f"redis://:{SECRET}#x@127.0.0.1:{port}/0", {}),
        "env-password-wrong": (f"redis://127.0.0.1:{port}/0",
                               {"REDIS_PASSWORD": SECRET + "-wrong"}),
        "password-file-wrong": (f"redis://127.0.0.1:{port}/0",
                                {"REDIS_PASSWORD_FILE": str(tmp / "pwfile")}),
        "unresolvable-host": (f"redis://:{SECRET}@no-such-host.invalid:6379/0", {}),
    }


@pytest.mark.parametrize("name", ["wrong-password-in-url", "wrong-user-and-password",
                                  "unreachable-host", "password-in-query",
                                  "password-breaks-url", "password-with-hash",
                                  "env-password-wrong", "password-file-wrong",
                                  "unresolvable-host"])
def test_password_never_appears(tmp_path: Path, auth_server: RedisServer, name: str) -> None:
    url, extra = scenarios(auth_server.port, tmp_path)[name]
    stats = tmp_path / "stats.jsonl"
    env = {"REDIS_GOCACHE_VERBOSE": "1", "REDIS_GOCACHE_STATS_FILE": str(stats), **extra}
    with GoCmd(helper_env(tmp_path / "dir", url, env)) as cmd:
        cmd.capability()
        assert "Err" not in cmd.put_wait(action_id("pw"), b"body")
        assert cmd.get_wait(action_id("pw miss")).get("Miss") is True
        cmd.close()
        out = cmd.stderr + b"".join(cmd.lines).decode()
    assert "Traceback" not in out, out
    assert "redis-gocache:" in out  # it did say something
    fragments = {SECRET, SECRET[:8], SECRET[-8:]}
    for text in (out, stats.read_text()):
        assert not any(f in text for f in fragments), text
    for path in (tmp_path / "dir").rglob("*"):
        assert SECRET[:8] not in path.name
        if path.is_file() and path.stat().st_size < 4096:
            assert SECRET[:8].encode() not in path.read_bytes(), path


def test_password_not_in_bad_flag_messages(tmp_path: Path) -> None:
    for args in (["--redis-url", f"http://:{SECRET}@host/0"],
                 ["--redis-url", f"redis://:{SECRET}@h/0", "--timeout", "-1"]):
        out = subprocess.run([*helper_command(), *args], env=helper_env(tmp_path),
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        # A bad setting never fails the build: the helper serves (stdin is at its end).
        assert out.returncode == 0, out
        assert out.stderr.strip() and SECRET[:8] not in out.stderr + out.stdout, out.stderr


def test_right_password_from_file_works(tmp_path: Path, auth_server: RedisServer) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n")
    env = {"REDIS_PASSWORD_FILE": str(tmp_path / "pw")}
    url = f"redis://127.0.0.1:{auth_server.port}/0"
    with GoCmd(helper_env(tmp_path / "a", url, env)) as cmd:
        cmd.capability()
        cmd.put_wait(action_id("pwfile"), b"via password file")
        cmd.close()
    with GoCmd(helper_env(tmp_path / "b", url, env)) as cmd:
        cmd.capability()
        res = cmd.get_wait(action_id("pwfile"))
        cmd.close()
        assert cmd.stderr == ""
    assert Path(res["DiskPath"]).read_bytes() == b"via password file"


STORE_ONLY = {"trimmed", "pushed"}
"""Markers of the operator code (ops/trim.py, ops/fleet.py); they, the fleet-stats spool and
the prefetch manifests (v1/m/) are checked by the xfail test below."""


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_local_directory_is_private(tmp_path: Path, umask: int) -> None:
    check_private(tmp_path, umask, skip=STORE_ONLY)


def test_operator_markers_are_private_too(tmp_path: Path) -> None:
    check_private(tmp_path, 0o000, skip=set())


def check_private(tmp_path: Path, umask: int, skip: set[str]) -> None:
    cache_dir = tmp_path / "cache"
    port = closed_port()  # also makes a breaker file
    old = os.umask(umask)
    try:
        cmd = GoCmd(helper_env(cache_dir, f"redis://127.0.0.1:{port}/0"))
    finally:
        os.umask(old)
    with cmd:
        cmd.capability()
        for i, n in enumerate((10, 200_000)):
            body = os.urandom(n)
            cmd.put_wait(action_id(f"mode {i}"), body)
        cmd.close()
    seen = 0
    for path in [cache_dir, *cache_dir.rglob("*")]:
        if skip and (path.name in skip or path.parent.name == "m" or any(
                p.name.startswith("stats-") for p in [path, *path.parents])):
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode == 0o600, (path, oct(mode))
            seen += 1
    assert seen >= 4  # two outputs, the action log, the breaker file
    assert (cache_dir / "v1" / ACTION_LOG).exists()


def test_paths_from_redis_cannot_escape(tmp_path: Path, redis_server: RedisServer,
                                        redis_client) -> None:
    """An output id from Redis is used in a path only as 64 lower-case hex digits."""
    aid = action_id("escape")
    for oid in ("../../../../../../tmp/escaped-" + "a" * 30, "/" + "a" * 63, "a" * 63 + "/",
                "A" * 64, "aa/../../" + "b" * 55):
        redis_client.hset(f"gocache:a:{aid.hex()}", mapping={
            "oid": oid, "size": 4, "time": 1_700_000_000_000_000_000, "body": b"evil"})
        with GoCmd(helper_env(tmp_path / "dir", redis_server.url)) as cmd:
            cmd.capability()
            assert cmd.get_wait(aid).get("Miss") is True
            cmd.close()
    assert not Path("/tmp/escaped-" + "a" * 30).exists()
    files = [p for d in ("o", "tmp") for p in (tmp_path / "dir" / "v1" / d).rglob("*")
             if p.is_file()]
    assert files == [], files
    assert locallog.records(tmp_path / "dir" / "v1") == {}
