"""One error vocabulary (store/errors.py): the light client and redis-py, fed the same replies
by a scripted Redis on a real socket, raise the same exception with the same code; and a real
``go build`` succeeds under each client while Redis answers nothing but errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from redis_gocache.exceptions import (
    PermissionDenied,
    RemoteError,
    RemoteOutOfMemory,
    RemoteUnavailable,
)
from redis_gocache.store.clients import PyReader
from redis_gocache.store.errors import REPLY_CODES, from_reply
from redis_gocache.store.redis import RedisStore
from tests.conftest import GoRecording
from tests.scriptedredis import RESET, SILENT, ScriptedRedis
from tests.test_faults_build import Runner

REPLIES: dict[str, tuple[type[RemoteError], str | None]] = {
    "NOAUTH Authentication required.": (RemoteUnavailable, "NOAUTH"),
    "WRONGPASS invalid username-password pair or user is disabled.":
        (RemoteUnavailable, "WRONGPASS"),
    "NOPERM User reader has no permissions to run the 'set' command":
        (PermissionDenied, "NOPERM"),
    "OOM command not allowed when used memory > 'maxmemory'.": (RemoteOutOfMemory, "OOM"),
    "READONLY You can't write against a read only replica.": (PermissionDenied, "READONLY"),
    "LOADING Redis is loading the dataset in memory": (RemoteUnavailable, "LOADING"),
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.":
        (RemoteUnavailable, "MASTERDOWN"),
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.":
        (RemoteUnavailable, "BUSY"),
    "CLUSTERDOWN The cluster is down": (RemoteError, "CLUSTERDOWN"),
    "TRYAGAIN Multiple keys request during rehashing of slot": (RemoteError, "TRYAGAIN"),
    "MOVED 3999 127.0.0.1:6381": (RemoteError, "MOVED"),
    "ASK 3999 127.0.0.1:6381": (RemoteError, "ASK"),
    "ERR unknown command 'HGETALL', with args beginning with: ": (RemoteError, "ERR"),
    "ERR max number of clients reached": (RemoteUnavailable, "ERR"),
    "WRONGTYPE Operation against a key holding the wrong kind of value": (RemoteError, "WRONGTYPE"),
    RESET: (RemoteUnavailable, None),
    SILENT: (RemoteUnavailable, None),
}
"""What each reply (or socket behaviour) must become, on either client."""

CLIENTS = {"light": "", "redis-py": "?health_check_interval=0"}
"""URL suffixes: a URL option leaves every command to redis-py (store/resp.plain_address)."""


def store_for(url: str) -> RedisStore:
    return RedisStore(url, prefix="gocache:", ttl=600, inline_max=1024, timeout=0.3,
                      retries=0, max_connections=2)


def outcome(store: RedisStore, op: str) -> tuple[str, str | None, str]:
    """The exception one call raised: its type, its code, its message."""
    try:
        if op == "get":
            store.get(bytes(32), lambda _: None)
        else:
            store.write_manifest("0" * 32, bytes(32))
    except RemoteError as exc:
        return type(exc).__name__, exc.code, str(exc)
    raise AssertionError(f"{op} raised nothing")


def test_every_reply_code_is_fed_to_the_clients() -> None:
    assert set(REPLY_CODES) <= {code for _, code in REPLIES.values()}


@pytest.mark.parametrize("reply", list(REPLIES))
@pytest.mark.parametrize("op", ["get", "write"])
def test_both_clients_translate_a_reply_alike(reply: str, op: str) -> None:
    seen = {}
    for name, suffix in CLIENTS.items():
        with ScriptedRedis(reply) as server:
            store = store_for(server.url + suffix)
            try:
                seen[name] = outcome(store, op)
                # Safety check: the test would prove nothing if both runs took one client.
                assert isinstance(store.reader(), PyReader) == (name == "redis-py"), name
            finally:
                store.close()
            assert server.commands, "the command never reached the server"
    kind, code = REPLIES[reply]
    for name, (got_kind, got_code, message) in seen.items():
        assert (got_kind, got_code) == (kind.__name__, code), (name, message)
    if reply not in (RESET, SILENT):
        # The same words too, so a log line does not depend on the client that met the error.
        assert seen["light"][2] == seen["redis-py"][2] == str(from_reply(reply))


@pytest.mark.e2e
@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_build_succeeds_under_each_client_while_redis_answers_errors(
        go_recording: GoRecording, tmp_path: Path, client: str) -> None:
    """A rebuild (local misses go to Redis, puts upload) while Redis answers every command
    with one error: one reply for each exception the table yields (the test above shows every
    reply yields the same one on both clients), and a reset connection. The build and the
    binary always work; no error reaches cmd/go."""
    chosen: dict[str, str] = {}
    for reply, (kind, _) in REPLIES.items():
        if reply != SILENT:  # a stalled Redis is test_faults_build's
            chosen.setdefault(kind.__name__ if reply != RESET else RESET, reply)
    assert len(chosen) == 5, chosen
    for i, reply in enumerate(chosen.values()):
        with ScriptedRedis(reply) as server:
            runner = Runner(go_recording, tmp_path, f"{client}-{i}", 100 + i,
                            server.url + CLIENTS[client],
                            {"REDIS_GOCACHE_NO_FLEET_STATS": "1"})
            runner.go("build", "-o", str(runner.dir / "hi"), "./cmd/hi")
            assert server.commands, reply
        out = subprocess.run([str(runner.dir / "hi")], capture_output=True, text=True,
                             timeout=30)
        assert out.stdout.strip() == f"faults ok {100 + i}", (reply, out)
        assert "Traceback" not in runner.stderr, runner.stderr
