"""The helper's request loop, driven through pipes by a fake ``go`` (tests/gocmd.py).

Every test runs the real helper as a subprocess, in local mode (no ``REDIS_URL``) or against
the session's private redis-server, and checks what cmd/go would see: the JSON on stdout, the
files behind ``DiskPath``, the exit status; and in Redis mode the keys the design promises.
"""

from __future__ import annotations

import base64
import calendar
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.gocmd import (
    ABSENT,
    ANY,
    CAPABILITIES,
    GoCmd,
    Pause,
    Send,
    Want,
    action_id,
    b64,
    helper_command,
    helper_env,
    output_id,
    run_steps,
    unb64,
)
from tests.redisproc import RedisServer

INLINE_MAX = 128 * 1024
TTL = 7 * 24 * 3600
STATS_KEYS = {
    "gets",
    "hits",
    "local_hits",
    "remote_hits",
    "misses",
    "get_errors",
    "rejected",
    "puts",
    "put_errors",
    "hit_bytes",
    "put_bytes",
    "remote_wait_seconds",
    "cpu_seconds",
}

_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def time_ns(text: str) -> int:
    """Nanoseconds since the epoch from an RFC 3339 UTC time as Go writes it."""
    m = _TIME.match(text)
    assert m, f"Time is not RFC 3339 UTC with a Z: {text!r}"
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs * 10**9 + int((m.group(2) or "0").ljust(9, "0"))


Start = Callable[..., GoCmd]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start helpers; each is killed at the end of the test if it is still running.

    ``start(cache_dir=None, redis_url=None, env=None, args=())``: a ``None`` cache_dir is
    a fresh empty directory. The capability line is read before the helper is returned.
    """
    helpers: list[GoCmd] = []
    count = 0

    def _start(
        cache_dir: Path | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        capability_timeout: float = 10.0,
    ) -> GoCmd:
        nonlocal count
        if cache_dir is None:
            count += 1
            cache_dir = tmp_path / f"helper{count}"
        cmd = GoCmd(helper_env(cache_dir, redis_url, env), args)
        helpers.append(cmd)
        assert cmd.capability(capability_timeout) == CAPABILITIES, cmd.describe()
        return cmd

    yield _start
    for cmd in helpers:
        cmd.__exit__()


@pytest.fixture(params=["local", "redis"])
def mode(request: pytest.FixtureRequest) -> str | None:
    """A Redis URL (flushed server) or None for local-only mode."""
    if request.param == "local":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    request.getfixturevalue("redis_client")  # flushed
    return server.url


def assert_file(path: str, body: bytes) -> None:
    assert os.path.isabs(path), path
    assert os.path.isfile(path), f"DiskPath {path} does not exist"
    assert Path(path).read_bytes() == body, f"DiskPath {path} holds the wrong bytes"


def assert_hit(res: dict[str, Any], body: bytes) -> None:
    assert "Err" not in res and not res.get("Miss"), res
    assert unb64(res["OutputID"]) == output_id(body), res
    assert res.get("Size", 0) == len(body), res
    time_ns(res["Time"])
    assert_file(res["DiskPath"], body)


# -- handshake, close, EOF -------------------------------------------------------------


def assert_quiet(stderr: str) -> None:
    """EOF is how cmd/go may end a helper: no error, no traceback (a notice is fine)."""
    assert "Traceback" not in stderr, stderr
    assert not re.search(r"\b(error|eof|unexpected|broken pipe)\b", stderr, re.IGNORECASE), stderr


def test_capability_line_is_first_and_exact(start: Start) -> None:
    t0 = time.monotonic()
    cmd = start()
    assert time.monotonic() - t0 < 5
    assert cmd.lines[0] == b'{"ID":0,"KnownCommands":["get","put","close"]}\n'
    cmd.close()


def _dispatched_commands() -> set[str]:
    """The commands the request loop acts on, read from its source: every ``wire.CMD_*``
    that server.py compares a request's command with."""
    import ast

    from redis_gocache import server, wire

    tree = ast.parse(Path(server.__file__).read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and ast.unparse(node.left) == "req.command":
            for right in node.comparators:
                if isinstance(right, ast.Attribute) and ast.unparse(right.value) == "wire":
                    found.add(getattr(wire, right.attr))
    return found


def _go_commands(go_env: dict[str, str]) -> set[str]:
    """The commands cmd/go itself defines (``Cmd("...")`` in its cacheprog package)."""
    goroot = subprocess.run(["go", "env", "GOROOT"], env=go_env, capture_output=True,
                            text=True, check=True, timeout=60).stdout.strip()
    source = Path(goroot, "src/cmd/go/internal/cacheprog/cacheprog.go").read_text()
    return set(re.findall(r'\bCmd\("(\w+)"\)', source))


def test_capability_line_announces_exactly_the_commands_served(
        start: Start, go_env: dict[str, str]) -> None:
    from redis_gocache import handshake, wire

    served = _dispatched_commands()
    assert len(served) >= 3, served  # the walk found the loop's dispatch
    line = handshake.CAPABILITIES
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    announced = json.loads(line)
    assert set(announced) == {"ID", "KnownCommands"} and announced["ID"] == 0
    known = announced["KnownCommands"]
    assert len(known) == len(set(known)) and set(known) == served, (known, served)
    assert set(known) <= _go_commands(go_env)  # never one cmd/go does not know

    # The parser takes exactly those: anything else is an unknown command.
    for name in [*served, "delete", "GET", "stat", ""]:
        req = wire.parse_request(json.dumps({"ID": 1, "Command": name}).encode())
        unknown = req.error is not None and "unknown command" in req.error
        assert unknown == (name not in served), (name, req)

    # What the go command reads first is that line, byte for byte; then each announced
    # command is served, and one it was not told of is an error.
    cmd = start()
    assert cmd.lines[0] == line
    requests: dict[str, Callable[[], dict[str, Any]]] = {
        wire.CMD_PUT: lambda: cmd.recv(cmd.put(action_id("known"), b"data")),
        wire.CMD_GET: lambda: cmd.recv(cmd.send({"Command": "get",
                                                 "ActionID": b64(action_id("known"))})),
        wire.CMD_CLOSE: lambda: cmd.recv(cmd.send({"Command": "close"})),
    }
    assert set(requests) == served  # a new command needs a request here
    unknown = cmd.recv(cmd.send({"Command": "delete", "ActionID": b64(action_id("known"))}))
    assert "unknown command" in unknown.get("Err", ""), unknown
    for name in sorted(known, key=list(requests).index):  # put, then get it, then close
        answer = requests[name]()
        assert "Err" not in answer and "Miss" not in answer, (name, answer)
    assert cmd.wait(10) == 0


def test_close_is_answered_then_exit_0(start: Start) -> None:
    cmd = start()
    cid = cmd.send({"Command": "close"})
    res = cmd.recv(cid)
    assert res == {"ID": cid}
    # cmd/go closes stdin after the answer, then waits for stdout to close.
    cmd.close_stdin()
    assert cmd.wait() == 0
    assert cmd.stdout_closed
    assert cmd.junk == []


def test_close_exits_even_if_stdin_stays_open(start: Start) -> None:
    """cacheprog.go: the program should reply to close "and then exit"."""
    cmd = start()
    cmd.recv(cmd.send({"Command": "close"}))
    assert cmd.wait(10) == 0


def test_eof_without_close_exits_0_quietly(start: Start) -> None:
    cmd = start()
    pid = cmd.put(action_id("eof"), b"data")
    assert_file(cmd.recv(pid)["DiskPath"], b"data")
    cmd.close_stdin()
    assert cmd.wait() == 0
    assert_quiet(cmd.stderr)
    assert cmd.junk == []


def test_eof_right_after_handshake_exits_0(start: Start) -> None:
    cmd = start()
    cmd.close_stdin()
    assert cmd.wait() == 0
    assert_quiet(cmd.stderr)


# -- round trips ---------------------------------------------------------------------


def test_get_of_unknown_action_is_a_miss(start: Start, mode: str | None) -> None:
    cmd = start(redis_url=mode)
    res = cmd.get_wait(action_id("never put"))
    assert res == {"ID": res["ID"], "Miss": True}
    cmd.close()


def test_a_local_hit_marks_its_output_used(start: Start, tmp_path: Path) -> None:
    """The trim removes outputs by mtime (last use), so a hit sets the mtime of an output
    last marked over USE_MARK_INTERVAL ago, and leaves a recent mark alone."""
    cmd = start(cache_dir=tmp_path / "c")
    old, recent = time.time() - 3 * 86400, time.time() - 600
    paths = {}
    for name, when in (("old", old), ("recent", recent)):
        paths[name] = cmd.put_wait(action_id(name), name.encode() * 10)["DiskPath"]
        os.utime(paths[name], (when, when))
    for name in paths:
        assert_hit(cmd.get_wait(action_id(name)), name.encode() * 10)
    cmd.close()
    assert time.time() - os.stat(paths["old"]).st_mtime < 60
    assert os.stat(paths["recent"]).st_mtime == pytest.approx(recent, abs=1)


def test_put_then_get_round_trip(start: Start, mode: str | None) -> None:
    cmd = start(redis_url=mode)
    body = b"package main\n" * 10
    aid = action_id("round trip")
    before = time.time_ns()
    put = cmd.put_wait(aid, body)
    after = time.time_ns()
    assert set(put) <= {"ID", "DiskPath"}, put
    assert_file(put["DiskPath"], body)
    get = cmd.get_wait(aid)
    assert_hit(get, body)
    assert before - 10**9 <= time_ns(get["Time"]) <= after + 10**9
    cmd.close()


def test_step_table_put_get_close(start: Start, tmp_path: Path) -> None:
    a, b = action_id("a"), action_id("b")
    body = b"hello, world"
    cmd = start()
    run_steps(
        cmd,
        [
            Send({"ID": 1, "Command": "get", "ActionID": b64(a)}),
            Want(1, {"Miss": True, "DiskPath": ABSENT}),
            Send(
                {
                    "ID": 2,
                    "Command": "put",
                    "ActionID": b64(a),
                    "OutputID": b64(output_id(body)),
                    "BodySize": len(body),
                },
                body,
            ),
            Want(2, {"DiskPath": ANY, "Miss": ABSENT}),
            Send({"ID": 3, "Command": "get", "ActionID": b64(a)}),
            Send({"ID": 4, "Command": "get", "ActionID": b64(b)}),
            Want(4, {"Miss": True}),
            Want(
                3,
                {
                    "OutputID": b64(output_id(body)),
                    "Size": len(body),
                    "Time": lambda t: t.endswith("Z"),
                    "DiskPath": lambda p: Path(p).read_bytes() == body,
                },
            ),
            Pause(0.05),
            Send({"ID": 5, "Command": "close"}),
            Want(5, {"Miss": ABSENT, "DiskPath": ABSENT}),
        ],
    )
    cmd.close_stdin()
    assert cmd.wait() == 0


BODIES = {
    "empty-no-bodysize": (b"", None),
    "empty-bodysize-0": (b"", 0),
    "one-byte": (b"x", 1),
    "inline-max": (bytes(range(256)) * (INLINE_MAX // 256), INLINE_MAX),
    "over-inline-max": (os.urandom(INLINE_MAX + 1), INLINE_MAX + 1),
    "1MiB": (os.urandom(1 << 20), 1 << 20),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_body_sizes(start: Start, mode: str | None, name: str) -> None:
    body, size = BODIES[name]
    aid = action_id(f"body {name}")
    cmd = start(redis_url=mode)
    req: dict[str, Any] = {"Command": "put", "ActionID": b64(aid), "OutputID": b64(output_id(body))}
    if size is not None:
        req["BodySize"] = size
    put = cmd.recv(cmd.send(req, body))
    assert "Err" not in put, put
    assert_file(put["DiskPath"], body)
    assert_hit(cmd.get_wait(aid), body)
    cmd.close()
    if mode is None:
        return
    # Another runner: empty local dir, same Redis.
    other = start(redis_url=mode)
    assert_hit(other.get_wait(aid), body)
    other.close()


def test_object_id_field_of_go_1_21(start: Start, mode: str | None) -> None:
    cmd = start(redis_url=mode)
    body = b"old go"
    aid = action_id("objectid")
    put = cmd.put_wait(aid, body, field="ObjectID")
    assert_file(put["DiskPath"], body)
    assert_hit(cmd.get_wait(aid), body)
    cmd.close()


def test_output_id_and_object_id_both_equal_is_fine(start: Start) -> None:
    cmd = start()
    body = b"both"
    aid = action_id("both equal")
    oid = b64(output_id(body))
    req = {
        "Command": "put",
        "ActionID": b64(aid),
        "OutputID": oid,
        "ObjectID": oid,
        "BodySize": len(body),
    }
    put = cmd.call(req, body)
    assert "Err" not in put, put
    assert_hit(cmd.get_wait(aid), body)
    cmd.close()


def test_output_id_and_object_id_mismatch_is_err(start: Start) -> None:
    cmd = start()
    body = b"mismatch"
    aid = action_id("mismatch")
    req = {
        "Command": "put",
        "ActionID": b64(aid),
        "OutputID": b64(output_id(body)),
        "ObjectID": b64(output_id(b"other")),
        "BodySize": len(body),
    }
    res = cmd.call(req, body)
    assert res.get("Err"), res
    assert "DiskPath" not in res
    # Nothing was stored, and the helper goes on.
    assert cmd.get_wait(aid).get("Miss") is True
    assert_file(cmd.put_wait(aid, body)["DiskPath"], body)
    cmd.close()


def test_same_output_for_two_actions(start: Start, mode: str | None) -> None:
    cmd = start(redis_url=mode)
    body = os.urandom(INLINE_MAX + 10)
    a1, a2 = action_id("shared 1"), action_id("shared 2")
    p1, p2 = cmd.put_wait(a1, body), cmd.put_wait(a2, body)
    assert_file(p1["DiskPath"], body)
    assert_file(p2["DiskPath"], body)
    assert_hit(cmd.get_wait(a1), body)
    assert_hit(cmd.get_wait(a2), body)
    cmd.close()
    if mode is None:
        return
    other = start(redis_url=mode)
    assert_hit(other.get_wait(a1), body)
    assert_hit(other.get_wait(a2), body)
    other.close()


def test_put_overwrites_action(start: Start) -> None:
    cmd = start()
    aid = action_id("overwrite")
    cmd.put_wait(aid, b"first")
    cmd.put_wait(aid, b"second")
    assert_hit(cmd.get_wait(aid), b"second")
    cmd.close()


def test_disk_paths_persist_after_exit(start: Start, tmp_path: Path) -> None:
    cache = tmp_path / "persist"
    cmd = start(cache_dir=cache)
    bodies = {action_id(f"persist {i}"): os.urandom(i * 1000) for i in range(5)}
    paths = {aid: cmd.put_wait(aid, body)["DiskPath"] for aid, body in bodies.items()}
    cmd.close()
    for aid, body in bodies.items():
        assert_file(paths[aid], body)
        assert Path(paths[aid]).resolve().is_relative_to(cache.resolve())
    # A later helper on the same dir serves them locally (no Redis configured).
    again = start(cache_dir=cache)
    for aid, body in bodies.items():
        assert_hit(again.get_wait(aid), body)
    again.close()


# -- concurrency ---------------------------------------------------------------------


def test_many_requests_in_flight(start: Start, mode: str | None) -> None:
    cmd = start(redis_url=mode)
    bodies = {action_id(f"flight {i}"): os.urandom(50 + i * 997) for i in range(60)}
    put_ids = {cmd.put(aid, body): body for aid, body in bodies.items()}
    for pid, body in put_ids.items():
        assert_file(cmd.recv(pid)["DiskPath"], body)
    get_ids = {cmd.get(aid): body for aid, body in bodies.items()}
    miss_ids = [cmd.get(action_id(f"absent {i}")) for i in range(20)]
    for gid, body in get_ids.items():
        assert_hit(cmd.recv(gid), body)
    for mid in miss_ids:
        assert cmd.recv(mid).get("Miss") is True
    cmd.close()
    if mode is None:
        return
    # The same gets from Redis, all in flight at once, from a fresh local dir.
    other = start(redis_url=mode)
    get_ids = {other.get(aid): body for aid, body in bodies.items()}
    for gid, body in get_ids.items():
        assert_hit(other.recv(gid), body)
    other.close()
    assert other.junk == []


def test_slow_redis_get_does_not_block_a_local_hit(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    cache = tmp_path / "slow"
    local = start(cache_dir=cache)
    body = b"local body"
    near = action_id("local")
    local.put_wait(near, body)
    local.close()

    timeout = 2.0
    cmd = start(
        cache_dir=cache,
        redis_url=redis_server.url,
        env={"REDIS_GOCACHE_TIMEOUT": str(timeout), "REDIS_GOCACHE_RETRIES": "0"},
    )
    redis_server.pause()
    try:
        far = cmd.get(action_id("only in redis, which is stuck"))
        time.sleep(0.2)  # let the helper start on the stuck get
        t0 = time.monotonic()
        hit = cmd.recv(cmd.get(near), timeout=timeout)
        assert time.monotonic() - t0 < timeout / 2, "local hit waited for Redis"
        assert_hit(hit, body)
        miss = cmd.recv(far, timeout=timeout * 4 + 5)
        assert miss.get("Miss") is True and "Err" not in miss, miss
        order = [r["ID"] for r in cmd.responses()]
        assert order.index(hit["ID"]) < order.index(far), order
        # Close must be answered too, bounded by the Redis timeout and not hang.
        cmd.recv(cmd.send({"Command": "close"}), timeout=timeout * 4 + 5)
        cmd.close_stdin()
        assert cmd.wait(timeout * 4 + 5) == 0
    finally:
        redis_server.resume()


# -- Redis: storage contract, other runners, failures ----------------------------------


def test_redis_keys_follow_the_design(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    small, large = b"small output", os.urandom(INLINE_MAX + 1)
    a_small, a_large = action_id("keys small"), action_id("keys large")
    cmd = start(redis_url=redis_server.url)
    before = time.time_ns()
    cmd.put_wait(a_small, small)
    cmd.put_wait(a_large, large)
    after = time.time_ns()
    cmd.close()  # close waits for the background uploads

    h = redis_client.hgetall(f"gocache:a:{a_small.hex()}")
    assert h[b"oid"] == output_id(small).hex().encode()
    assert int(h[b"size"]) == len(small)
    assert before - 10**9 <= int(h[b"time"]) <= after + 10**9
    assert h[b"body"] == small
    assert b"ref" not in h

    h = redis_client.hgetall(f"gocache:a:{a_large.hex()}")
    assert h[b"oid"] == output_id(large).hex().encode()
    assert int(h[b"size"]) == len(large)
    assert h[b"ref"] == b"o" and b"body" not in h
    assert redis_client.get(f"gocache:o:{output_id(large).hex()}") == large

    for key in redis_client.scan_iter("*"):
        assert key.startswith((b"gocache:a:", b"gocache:o:", b"gocache:s:")), key
        # Fleet statistics (s:) keep their own lifetimes; cache entries live the TTL.
        assert redis_client.ttl(key) > 0, key
        if not key.startswith(b"gocache:s:"):
            assert redis_client.ttl(key) <= TTL, key


def test_prefix_ttl_and_inline_max_settings(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    env = {
        "REDIS_GOCACHE_PREFIX": "ci7:",
        "REDIS_GOCACHE_TTL": "1h",
        "REDIS_GOCACHE_INLINE_MAX": "1K",
    }
    body = os.urandom(1025)
    aid = action_id("settings")
    cmd = start(redis_url=redis_server.url, env=env)
    cmd.put_wait(aid, body)
    cmd.close()
    keys = sorted(redis_client.scan_iter("*"))
    assert b"ci7:a:" + aid.hex().encode() in keys, keys
    assert b"ci7:o:" + output_id(body).hex().encode() in keys, keys
    assert all(k.startswith(b"ci7:") for k in keys), keys
    assert all(redis_client.ttl(k) > 0 for k in keys)
    assert all(redis_client.ttl(k) <= 3600 for k in keys if k.startswith((b"ci7:a:", b"ci7:o:")))
    # Another runner with the same prefix finds it; one with the default prefix does not.
    other = start(redis_url=redis_server.url, env=env)
    assert_hit(other.get_wait(aid), body)
    other.close()
    stranger = start(redis_url=redis_server.url)
    assert stranger.get_wait(aid).get("Miss") is True
    stranger.close()


def test_time_is_the_original_put_time(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    aids = {action_id("time small"): b"t", action_id("time large"): os.urandom(INLINE_MAX + 5)}
    first = start(cache_dir=tmp_path / "first", redis_url=redis_server.url)
    for aid, body in aids.items():
        first.put_wait(aid, body)
    times = {aid: first.get_wait(aid)["Time"] for aid in aids}
    first.close()
    time.sleep(1.1)  # a refreshed time would now differ even at one-second resolution
    # Same dir again (local hit), then a fresh dir on the same Redis (remote hit), then the
    # local hit of that second runner.
    again = start(cache_dir=tmp_path / "first", redis_url=redis_server.url)
    other = start(cache_dir=tmp_path / "second", redis_url=redis_server.url)
    for aid, body in aids.items():
        for cmd in (again, other, other):
            res = cmd.get_wait(aid)
            assert_hit(res, body)
            assert res["Time"].endswith("Z")
            assert time_ns(res["Time"]) == time_ns(times[aid]), (res["Time"], times[aid])
    again.close()
    other.close()


def test_corrupt_redis_entry_is_a_miss(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    small, large = b"good body", os.urandom(INLINE_MAX + 3)
    a_small, a_large = action_id("corrupt small"), action_id("corrupt large")
    cmd = start(redis_url=redis_server.url)
    cmd.put_wait(a_small, small)
    cmd.put_wait(a_large, large)
    cmd.close()
    redis_client.hset(f"gocache:a:{a_small.hex()}", "body", b"evil body")
    redis_client.setrange(f"gocache:o:{output_id(large).hex()}", 100, b"XXXX")
    stats = tmp_path / "stats.jsonl"
    other = start(redis_url=redis_server.url, env={"REDIS_GOCACHE_STATS_FILE": str(stats)})
    for aid in (a_small, a_large):
        res = other.get_wait(aid)
        assert res.get("Miss") is True and "Err" not in res, res
    other.close()
    # Nothing of the bad bodies reached the local directory.
    for path in (tmp_path / "helper2").rglob("*"):
        if path.is_file():
            assert b"evil" not in path.read_bytes() and b"XXXX" not in path.read_bytes()
    row = json.loads(stats.read_text())
    assert rejected_total(row) == 2 and row["remote_hits"] == 0, row


@pytest.mark.parametrize("kind", ["paused-redis", "silent-socket"])
def test_unresponsive_redis(start: Start, kind: str) -> None:
    """A server that accepts TCP and never answers: handshake at once, gets miss, puts
    land locally, close still exits."""
    with RedisServer() as server, socket.socket() as silent:
        if kind == "paused-redis":
            server.pause()
            url = server.url
        else:
            silent.bind(("127.0.0.1", 0))
            silent.listen(64)
            url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        try:
            env = {"REDIS_GOCACHE_TIMEOUT": "0.5", "REDIS_GOCACHE_VERBOSE": "1"}
            t0 = time.monotonic()
            cmd = start(redis_url=url, env=env, capability_timeout=1.0)
            assert time.monotonic() - cmd.started < 1.0
            aid = action_id(f"unresponsive {kind}")
            put = cmd.put_wait(aid, b"stays local", timeout=10)
            assert "Err" not in put, put
            assert_file(put["DiskPath"], b"stays local")
            assert_hit(cmd.get_wait(aid, timeout=10), b"stays local")
            miss = cmd.get_wait(action_id(f"unknown {kind}"), timeout=10)
            assert miss.get("Miss") is True and "Err" not in miss, miss
            cmd.close(timeout=20)
            assert time.monotonic() - t0 < 20
            assert cmd.junk == []
        finally:
            if kind == "paused-redis":
                server.resume()


def test_redis_down_at_start(start: Start, tmp_path: Path) -> None:
    """Nothing listening: connection refused is Redis down, not an error."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed on exit: nothing listens there
    cmd = start(redis_url=f"redis://127.0.0.1:{port}/0")
    aid = action_id("refused")
    assert_file(cmd.put_wait(aid, b"x")["DiskPath"], b"x")
    assert_hit(cmd.get_wait(aid), b"x")
    assert cmd.get_wait(action_id("refused miss")).get("Miss") is True
    cmd.close()


def test_full_redis_never_turns_into_err(start: Start) -> None:
    """Redis refusing writes (OOM under noeviction): puts still answer with a DiskPath."""
    args = ["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]
    with RedisServer(args) as server:
        cmd = start(redis_url=server.url)
        bodies = {action_id(f"oom {i}"): os.urandom(700_000) for i in range(4)}
        for aid, body in bodies.items():
            put = cmd.put_wait(aid, body)
            assert "Err" not in put, put
            assert_file(put["DiskPath"], body)
        for aid, body in bodies.items():
            assert_hit(cmd.get_wait(aid), body)
        cmd.close(timeout=20)
        assert cmd.junk == []
        # The failure path really ran: Redis could not take every body.
        with redis.Redis.from_url(server.url, socket_timeout=5) as client:
            stored = [aid for aid in bodies if client.exists(f"gocache:a:{aid.hex()}")]
        assert len(stored) < len(bodies), "Redis took everything: the test proves nothing"


def test_read_only_helper_writes_nothing_to_redis(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    trusted_body, untrusted_body = b"from main branch", b"from a fork"
    seeded, forked = action_id("trusted"), action_id("untrusted")
    trusted = start(redis_url=redis_server.url)
    trusted.put_wait(seeded, trusted_body)
    trusted.close()
    before = sorted(redis_client.scan_iter("gocache:[ao]:*"))

    ro = start(redis_url=redis_server.url, env={"REDIS_GOCACHE_READONLY": "1"})
    assert_hit(ro.get_wait(seeded), trusted_body)
    put = ro.put_wait(forked, untrusted_body)
    assert_file(put["DiskPath"], untrusted_body)
    assert_hit(ro.get_wait(forked), untrusted_body)
    ro.close()
    assert sorted(redis_client.scan_iter("gocache:[ao]:*")) == before
    assert not redis_client.exists(f"gocache:a:{forked.hex()}")


# -- bad input ------------------------------------------------------------------------

GOOD = b"good body"
BAD_AID = b64(action_id("bad input"))
GOOD_OID = b64(output_id(GOOD))

BAD_REQUESTS: dict[str, tuple[dict[str, Any], bytes | None]] = {
    "get-action-not-base64": ({"Command": "get", "ActionID": "!!not base64!!"}, None),
    "get-action-31-bytes": ({"Command": "get", "ActionID": b64(bytes(31))}, None),
    "get-action-33-bytes": ({"Command": "get", "ActionID": b64(bytes(33))}, None),
    "get-action-missing": ({"Command": "get"}, None),
    "get-action-not-string": ({"Command": "get", "ActionID": 12}, None),
    "put-action-16-bytes": (
        {"Command": "put", "ActionID": b64(bytes(16)), "OutputID": GOOD_OID, "BodySize": len(GOOD)},
        GOOD,
    ),
    "put-output-not-base64": (
        {"Command": "put", "ActionID": BAD_AID, "OutputID": "%%%", "BodySize": len(GOOD)},
        GOOD,
    ),
    "put-output-31-bytes": (
        {"Command": "put", "ActionID": BAD_AID, "OutputID": b64(bytes(31)), "BodySize": len(GOOD)},
        GOOD,
    ),
    "put-body-shorter-than-bodysize": (
        {"Command": "put", "ActionID": BAD_AID, "OutputID": GOOD_OID, "BodySize": len(GOOD) + 5},
        GOOD,
    ),
    "put-body-longer-than-bodysize": (
        {"Command": "put", "ActionID": BAD_AID, "OutputID": GOOD_OID, "BodySize": len(GOOD) - 1},
        GOOD,
    ),
    "put-negative-bodysize": (
        {"Command": "put", "ActionID": BAD_AID, "OutputID": GOOD_OID, "BodySize": -1},
        None,
    ),
    "unknown-command": ({"Command": "get2", "ActionID": BAD_AID}, None),
    "missing-command": ({"ActionID": BAD_AID}, None),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_request_gets_err_and_helper_goes_on(start: Start, name: str) -> None:
    req, body = BAD_REQUESTS[name]
    cmd = start()
    res = cmd.call(req, body)
    assert isinstance(res.get("Err"), str) and res["Err"], res
    assert "DiskPath" not in res and "Miss" not in res, res
    aid = action_id("after bad input")
    assert_file(cmd.put_wait(aid, GOOD)["DiskPath"], GOOD)
    assert_hit(cmd.get_wait(aid), GOOD)
    # A bad put stored nothing under its action.
    assert cmd.get_wait(action_id("bad input")).get("Miss") is True
    cmd.close()
    assert cmd.junk == []


def test_body_line_not_base64_is_err(start: Start) -> None:
    cmd = start()
    req = {"ID": 7, "Command": "put", "ActionID": BAD_AID, "OutputID": GOOD_OID, "BodySize": 6}
    cmd.write(json.dumps(req).encode() + b'\n\n"@@@@@@@@"\n')
    res = cmd.recv(7)
    assert res.get("Err"), res
    aid = action_id("after bad body")
    assert_file(cmd.put_wait(aid, GOOD)["DiskPath"], GOOD)
    cmd.close()


def test_body_with_padding_split_like_go(start: Start) -> None:
    """cmd/go streams the body through base64.NewEncoder: one line, standard padding."""
    cmd = start()
    for n in (1, 2, 3, 4, 5, 57, 58, 76, 77, 4096):
        body = os.urandom(n)
        aid = action_id(f"pad {n}")
        req = {
            "ID": 100 + n,
            "Command": "put",
            "ActionID": b64(aid),
            "OutputID": b64(output_id(body)),
            "BodySize": n,
        }
        line = json.dumps(req, separators=(",", ":")).encode() + b"\n\n"
        line += b'"' + base64.standard_b64encode(body) + b'"\n'
        cmd.write(line)
        assert_file(cmd.recv(100 + n)["DiskPath"], body)
    cmd.close()


@pytest.mark.parametrize(
    "garbage",
    [b"this is not json\n", b'{"ID": 3, "Command": \n', b"[1, 2, 3]\n"],
    ids=["text", "truncated-json", "json-array"],
)
def test_unparseable_input_exits_2(start: Start, garbage: bytes) -> None:
    cmd = start()
    cmd.write(garbage)
    cmd.close_stdin()
    assert cmd.wait() == 2
    assert cmd.stderr.strip(), "no message on stderr"
    assert "Traceback" not in cmd.stderr, cmd.stderr
    assert cmd.junk == []


def test_ids_need_not_be_sequential(start: Start) -> None:
    cmd = start()
    body = b"ids"
    aid = action_id("ids")
    req = {
        "ID": 1 << 40,
        "Command": "put",
        "ActionID": b64(aid),
        "OutputID": b64(output_id(body)),
        "BodySize": len(body),
    }
    assert_file(cmd.call(req, body)["DiskPath"], body)
    assert_hit(cmd.call({"ID": 5, "Command": "get", "ActionID": b64(aid)}), body)
    cmd.close()


# -- stdout hygiene, stats ------------------------------------------------------------


def test_stdout_carries_only_json_and_stats_go_to_stderr(
    start: Start, redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    stats = tmp_path / "stats.jsonl"
    env = {"REDIS_GOCACHE_VERBOSE": "1", "REDIS_GOCACHE_STATS_FILE": str(stats)}
    cmd = start(redis_url=redis_server.url, env=env)
    bodies = {action_id(f"stats {i}"): os.urandom(i * 40000) for i in range(1, 5)}
    for aid, body in bodies.items():
        cmd.put_wait(aid, body)
    for aid in bodies:
        cmd.get_wait(aid)
    cmd.get_wait(action_id("stats miss"))
    cmd.close()
    for line in cmd.lines:
        assert line.endswith(b"\n")
        assert isinstance(json.loads(line), dict), line
    assert cmd.junk == []
    last = cmd.stderr.strip().splitlines()[-1]
    assert re.match(
        r"^redis-gocache: 5 gets \(4 hits, 1 misses, 0 errors\); 4 puts \(0 errors\)", last
    ), last

    rows = [json.loads(x) for x in stats.read_text().splitlines()]
    assert len(rows) == 1, rows
    row = rows[0]
    assert STATS_KEYS <= set(row), row
    assert row["gets"] == 5 and row["hits"] == 4 and row["misses"] == 1
    assert row["local_hits"] == 4 and row["remote_hits"] == 0
    assert row["puts"] == 4 and row["put_errors"] == 0 and row["get_errors"] == 0
    assert row["put_bytes"] == sum(map(len, bodies.values()))
    assert row["hit_bytes"] == sum(map(len, bodies.values()))

    # A second runner, fresh dir: remote hits, and the stats file gets a second line.
    other = start(redis_url=redis_server.url, env=env)
    for aid in bodies:
        assert_hit(other.get_wait(aid), bodies[aid])
    other.close()
    rows = [json.loads(x) for x in stats.read_text().splitlines()]
    assert len(rows) == 2
    assert rows[1]["remote_hits"] == 4 and rows[1]["hits"] == 4 and rows[1]["gets"] == 4
    assert rows[1]["remote_wait_seconds"] >= 0
    # Its own CPU: at least the interpreter's start-up, at most its life on every core.
    assert 0 < rows[1]["cpu_seconds"] <= rows[1]["seconds"] * (os.cpu_count() or 1) + 1


def rejected_total(row: dict[str, Any]) -> int:
    """``rejected`` may be one number or a count per reason."""
    value = row["rejected"]
    return sum(value.values()) if isinstance(value, dict) else int(value)


def test_stats_add_up_with_bad_requests(start: Start, tmp_path: Path) -> None:
    stats = tmp_path / "stats.jsonl"
    cmd = start(env={"REDIS_GOCACHE_STATS_FILE": str(stats)})
    assert cmd.call({"Command": "get", "ActionID": "??"}).get("Err")
    assert cmd.call({"Command": "get", "ActionID": b64(bytes(3))}).get("Err")
    cmd.get_wait(action_id("stats miss"))
    cmd.put_wait(action_id("stats put"), b"12345")
    assert_hit(cmd.get_wait(action_id("stats put")), b"12345")
    cmd.close()
    row = json.loads(stats.read_text())
    assert row["misses"] == 1 and row["hits"] == 1 and row["local_hits"] == 1, row
    assert row["gets"] == row["hits"] + row["misses"] + row["get_errors"], row
    assert row["puts"] == 1 and row["put_bytes"] == 5 and row["hit_bytes"] == 5, row


def test_version_flag() -> None:
    out = subprocess.run(
        [*helper_command(), "--version"],
        env=helper_env("/nonexistent"),
        capture_output=True,
        timeout=30,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert re.search(r"\d+\.\d+\.\d+", out.stdout), out.stdout
