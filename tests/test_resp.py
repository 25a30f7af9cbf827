"""The read path's own Redis client (redis_gocache/store/resp.py) against a real redis-server:
the same answers as redis-py, the same credentials, and our exceptions for every failure."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from redis_gocache.exceptions import (
    PermissionDenied,
    RemoteError,
    RemoteUnavailable,
)
from redis_gocache.store import resp
from redis_gocache.store.resp import Address, LightClient, plain_address
from tests.redisproc import RedisServer, free_port


@pytest.mark.parametrize(
    ("url", "password", "want"),
    [
        ("redis://10.0.0.5:6380/3", None, ("10.0.0.5", 6380, "", None, None, 3)),
        ("redis://cache", None, ("cache", 6379, "", None, None, 0)),
        ("redis://", None, ("localhost", 6379, "", None, None, 0)),
        ("redis://:p%40ss@h/0", "from-file", ("h", 6379, "", None, "p@ss", 0)),
        ("redis://reader:pw@h:1/0", None, ("h", 1, "", "reader", "pw", 0)),
        ("redis://h/0", "from-file", ("h", 6379, "", None, "from-file", 0)),
        ("unix:///run/redis.sock", None, ("", 6379, "/run/redis.sock", None, None, 0)),
    ],
)
def test_plain_urls_are_read_like_redis_py(
        url: str, password: str | None,
        want: tuple[str, int, str, str | None, str | None, int]) -> None:
    address = plain_address(url, password)
    assert address is not None
    got = (address.host, address.port, address.path, address.username, address.password,
           address.db)
    assert got == want


@pytest.mark.parametrize("url", [
    "rediss://h/0",  # TLS
    "redis+cluster://h:1,h:2", "redis+sentinel://h:1/mymaster",
    "redis://h/0?db=2",  # URL options: redis-py's
    "redis://h/0?socket_timeout=3",
    "redis://h:notaport/0",
    "redis://h/x",  # a path redis-py ignores
    "unix://",
])
def test_other_urls_stay_with_redis_py(url: str) -> None:
    assert plain_address(url, None) is None


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer(password="s3cret") as srv:
        yield srv


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    server.resume()
    client = redis.Redis.from_url(server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def db5(admin: redis.Redis, server: RedisServer) -> Iterator[redis.Redis]:
    """redis-py on database 5, where the light client under test reads."""
    client = redis.Redis(host="127.0.0.1", port=server.port, password=server.password, db=5)
    yield client
    client.close()


@pytest.fixture
def reads(server: RedisServer) -> Iterator[LightClient]:
    address = plain_address(f"redis://127.0.0.1:{server.port}/5", server.password)
    assert address is not None
    client = LightClient(address, timeout=1.0)
    yield client
    client.close()


def test_same_answers_as_redis_py(admin: redis.Redis, db5: redis.Redis,
                                  reads: LightClient) -> None:
    big = os.urandom(5 << 20)  # several receives, and GETRANGE pieces
    db5.hset("h", mapping={"oid": b"\x00\xff", "body": b"", "size": 7})
    db5.set("blob", big)
    assert reads.hgetall("h") == db5.hgetall("h")
    assert reads.hgetall("missing") == {} == db5.hgetall("missing")
    assert reads.get("blob") == big
    assert reads.get("missing") is None
    assert reads.getrange("blob", 1 << 20, (3 << 20) - 1) == big[1 << 20:3 << 20]
    assert reads.strlen("blob") == len(big)
    pipe = reads.pipeline()
    for key in ("h", "missing", "h"):
        pipe.hgetall(key)
    pipe.expire("h", 60)
    assert pipe.execute() == [db5.hgetall("h"), {}, db5.hgetall("h"), 1]
    assert admin.get("blob") is None  # SELECT 5 happened: db 0 is untouched


def test_the_end_of_run_writes(db5: redis.Redis, reads: LightClient) -> None:
    """The manifest (SET ... EX) and the fleet counters (a pipeline) need no redis-py."""
    reads.set("m:tag", b"\x00" * 64, ex=100)
    assert db5.get("m:tag") == b"\x00" * 64 and 0 < db5.ttl("m:tag") <= 100
    pipe = reads.pipeline(transaction=False)
    pipe.hincrby("s:totals", "runs", 2)
    pipe.hset("s:totals", "updated", 17)
    pipe.expire("s:totals", 50)
    pipe.execute()
    assert db5.hgetall("s:totals") == {b"runs": b"2", b"updated": b"17"}
    assert 0 < db5.ttl("s:totals") <= 50
    with pytest.raises(ValueError):
        reads.pipeline(transaction=True)


def test_an_acl_user_logs_in_and_is_refused_what_it_may_not_read(
        admin: redis.Redis, server: RedisServer) -> None:
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">rpw", "resetkeys", "~ok:*",
                          "+@read", "+@connection")
    admin.set("ok:1", b"yes")
    admin.set("secret:1", b"no")
    address = plain_address(f"redis://reader:rpw@127.0.0.1:{server.port}/0", "ignored")
    assert address is not None
    client = LightClient(address, timeout=1.0)
    try:
        assert client.get("ok:1") == b"yes"
        with pytest.raises(PermissionDenied):
            client.get("secret:1")
        assert client.get("ok:1") == b"yes"  # the connection is still usable
    finally:
        client.close()
        admin.execute_command("ACL", "DELUSER", "reader")


def test_an_error_reply_is_a_remote_error(db5: redis.Redis, reads: LightClient) -> None:
    db5.set("string", b"x")
    with pytest.raises(RemoteError, match="WRONGTYPE"):
        reads.hgetall("string")


def test_wrong_password_is_unavailable(server: RedisServer, admin: redis.Redis) -> None:
    client = LightClient(Address(host="127.0.0.1", port=server.port, password="wrong"), 1.0)
    with pytest.raises(RemoteUnavailable, match="refused the credentials: WRONGPASS"):
        client.get("k")


def test_nothing_listening_is_unavailable() -> None:
    client = LightClient(Address(host="127.0.0.1", port=free_port()), 1.0)
    with pytest.raises(RemoteUnavailable):
        client.get("k")


def test_a_stalled_server_times_out(server: RedisServer, admin: redis.Redis,
                                    reads: LightClient) -> None:
    assert reads.get("k") is None  # connected
    server.pause()
    try:
        started = time.monotonic()
        with pytest.raises(RemoteUnavailable):
            reads.get("k")
        # One timeout (1 s), not retried: the server may have run the command.
        assert time.monotonic() - started < 1.9
    finally:
        server.resume()


def test_a_connection_the_server_dropped_is_replaced(server: RedisServer, admin: redis.Redis,
                                                     reads: LightClient) -> None:
    assert reads.get("k") is None
    admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    assert reads.get("k") is None  # the dead pooled connection was retried on a new one


class Pieces:
    """A sink that keeps copies of what it is handed (the pieces are views of a reused buffer)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def __call__(self, piece: bytes | memoryview) -> None:
        self.pieces.append(bytes(piece))

    @property
    def data(self) -> bytes:
        return b"".join(self.pieces)


def test_stream_hands_a_value_over_from_the_receive_buffer(
        db5: redis.Redis, reads: LightClient) -> None:
    big = os.urandom((5 << 20) + 3)
    db5.set("blob", big)
    db5.set("empty", b"")
    got = Pieces()
    assert reads.stream(("GET", "blob"), len(big), got) == len(big)
    assert got.data == big
    assert max(map(len, got.pieces)) <= resp._RECV and len(got.pieces) >= 6
    got = Pieces()
    assert reads.stream(("GET", "empty"), 0, got) == 0 and got.pieces == []
    assert reads.stream(("GET", "missing"), 10, got) is None and got.pieces == []
    # Another length than the record's: nothing is handed over, the rest is not read, and
    # the next command gets a connection that is not in the middle of that reply.
    assert reads.stream(("GET", "blob"), 1000, got) == len(big) and got.pieces == []
    assert reads.get("empty") == b""
    assert reads.stream(("GET", "blob"), len(big), got) == len(big) and got.data == big
    got = Pieces()  # any command whose reply is one bulk string
    assert reads.stream(("GETRANGE", "blob", "7", str((2 << 20) + 6)), 2 << 20, got) == 2 << 20
    assert got.data == big[7:(2 << 20) + 7]


def test_stream_error_replies_are_ours(admin: redis.Redis, server: RedisServer,
                                       db5: redis.Redis, reads: LightClient) -> None:
    db5.hset("hash", "f", "v")
    with pytest.raises(RemoteError, match="WRONGTYPE"):
        reads.stream(("GET", "hash"), 1, Pieces())
    admin.execute_command("ACL", "SETUSER", "streamer", "on", ">spw", "resetkeys", "~ok:*",
                          "+@read", "+@connection")
    admin.set("ok:1", b"yes")
    address = plain_address(f"redis://streamer:spw@127.0.0.1:{server.port}/0", None)
    assert address is not None
    client = LightClient(address, timeout=1.0)
    try:
        with pytest.raises(PermissionDenied):
            client.stream(("GET", "secret:1"), 3, Pieces())
        got = Pieces()
        assert client.stream(("GET", "ok:1"), 3, got) == 3 and got.data == b"yes"
    finally:
        client.close()
        admin.execute_command("ACL", "DELUSER", "streamer")


class ScriptedServer:
    """A loopback server that answers each command with the next of ``replies``, one
    connection after another: after a reply with ``close`` set, the connection is closed."""

    def __init__(self, replies: list[tuple[bytes, bool]]) -> None:
        self.replies = replies
        self.connections = 0
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed by the test
            self.connections += 1
            with conn:
                while self.replies and conn.recv(65536):  # one small command per read
                    reply, close = self.replies.pop(0)
                    conn.sendall(reply)
                    if close:
                        break

    def close(self) -> None:
        self._listener.close()


def test_a_value_cut_short_is_not_asked_for_again() -> None:
    """A pooled connection that fails before any reply is retried on a new one; once part of
    the value has gone to the sink, a retry would hand it over twice."""
    server = ScriptedServer([
        (b"$3\r\nabc\r\n", False), (b"", True),  # a pooled connection, then dropped
        (b"$3\r\nabc\r\n", False), (b"$10\r\nabcd", True),  # dropped halfway
        (b"$10\r\n0123456789\r\n", False),  # what a retry would get
    ])
    client = LightClient(Address(host="127.0.0.1", port=server.port), timeout=2.0)
    try:
        got = Pieces()
        assert client.stream(("GET", "k"), 3, got) == 3 and got.data == b"abc"
        got = Pieces()
        assert client.stream(("GET", "k"), 3, got) == 3 and got.data == b"abc"
        assert server.connections == 2  # retried on a new connection, no harm done
        got = Pieces()
        with pytest.raises(RemoteUnavailable, match="closed"):
            client.stream(("GET", "k"), 10, got)
        assert got.data == b"abcd" and server.connections == 2
    finally:
        client.close()
        server.close()
