"""RedisStore against fakeredis and against a real redis-server: layout, TTLs, rejections."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from redis_gocache.config import redact_url
from redis_gocache.exceptions import RejectedEntry
from redis_gocache.store import resp, upload
from redis_gocache.store.base import Entry
from redis_gocache.store.clients import PyReader
from redis_gocache.store.redis import RedisStore
from tests.redisproc import RedisServer

TTL = 3600
INLINE_MAX = 1024
T0 = 1_700_000_000_123_456_789


@pytest.fixture(params=["fakeredis", "redis-server"])
def client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    if request.param == "fakeredis":
        fake = fakeredis.FakeRedis()
        yield fake
        fake.close()
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.resume()
        real = redis.Redis.from_url(server.url)
        real.flushall()
        yield real
        real.close()


@pytest.fixture
def store(client: redis.Redis, request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    if isinstance(client, fakeredis.FakeRedis):
        s = RedisStore("redis://unused:1/0", prefix="t:", ttl=TTL, inline_max=INLINE_MAX,
                       timeout=1.0, retries=0, max_connections=4)
        s.clients._reader = PyReader(client)  # no socket to talk to: all through redis-py
    else:
        # Reads through the store's own read client (store/resp.py), writes through redis-py.
        server: RedisServer = request.getfixturevalue("redis_server")
        s = RedisStore(server.url, prefix="t:", ttl=TTL, inline_max=INLINE_MAX,
                       timeout=1.0, retries=0, max_connections=4)
    s.clients.client = client  # the test's own connection (fakeredis or the private server)
    yield s
    s.close()


def put(store: RedisStore, tmp_path: Path, body: bytes, action: bytes | None = None) -> Entry:
    action = action or os.urandom(32)
    path = tmp_path / os.urandom(4).hex()
    path.write_bytes(body)
    entry = Entry(hashlib.sha256(body).digest(), len(body), T0)
    store.put(action, entry, str(path))
    return entry


def fetch(store: RedisStore, action: bytes) -> tuple[Entry | None, bytes]:
    pieces: list[bytes] = []
    entry = store.get(action, lambda piece: pieces.append(bytes(piece)))
    return entry, b"".join(pieces)


@pytest.mark.parametrize("size", [0, 1, INLINE_MAX], ids=["empty", "1B", "at-threshold"])
def test_small_outputs_are_inline(store, client, tmp_path, size: int) -> None:
    body = os.urandom(size)
    action = os.urandom(32)
    entry = put(store, tmp_path, body, action)
    raw = client.hgetall(f"t:a:{action.hex()}")
    assert raw == {b"oid": entry.output_id.hex().encode(), b"size": str(size).encode(),
                   b"time": str(T0).encode(), b"body": body}
    assert 0 < client.ttl(f"t:a:{action.hex()}") <= TTL
    assert client.keys("t:o:*") == []
    assert fetch(store, action) == (entry, body)


def test_large_outputs_go_to_a_shared_blob(store, client, tmp_path) -> None:
    body = os.urandom(INLINE_MAX + 1)
    a1, a2 = os.urandom(32), os.urandom(32)
    entry = put(store, tmp_path, body, a1)
    put(store, tmp_path, body, a2)
    okey = f"t:o:{entry.output_id.hex()}"
    assert client.keys("t:o:*") == [okey.encode()]
    assert client.get(okey) == body
    for action in (a1, a2):
        raw = client.hgetall(f"t:a:{action.hex()}")
        assert raw[b"ref"] == b"o" and b"body" not in raw
        assert fetch(store, action) == (entry, body)
    assert 0 < client.ttl(okey) <= TTL


def test_huge_outputs_stream_in_chunks(store, client, tmp_path, monkeypatch) -> None:
    # Pieces of 4 KiB: GETRANGE's on the redis-py path, the receive buffer's on the light one.
    monkeypatch.setattr(upload, "STREAM_CHUNK", 4096)
    monkeypatch.setattr(resp, "_RECV", 4096)
    body = os.urandom(4096 * 5 + 17)
    action = os.urandom(32)
    entry = put(store, tmp_path, body, action)
    assert client.get(f"t:o:{entry.output_id.hex()}") == body
    assert client.keys("t:t:*") == []  # the upload key was renamed into place
    pieces: list[bytes] = []
    assert store.get(action, lambda piece: pieces.append(bytes(piece))) == entry
    assert b"".join(pieces) == body
    assert len(pieces) >= 6 and max(map(len, pieces)) <= 4096
    # A second put of the same output finds the blob and only refreshes it.
    client.expire(f"t:o:{entry.output_id.hex()}", 50)
    put(store, tmp_path, body)
    assert client.ttl(f"t:o:{entry.output_id.hex()}") > 50


def test_a_streamed_piece_sent_twice_does_not_corrupt_the_blob(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path, monkeypatch
) -> None:
    """A piece whose reply is lost (a timeout after Redis ran the command) is sent again by
    redis-py's retry. Found by the benchmark: with APPEND the piece landed twice and the
    upload was dropped as the wrong size."""
    monkeypatch.setattr(upload, "STREAM_CHUNK", 4096)
    store = RedisStore(redis_server.url, prefix="t:", ttl=TTL, inline_max=INLINE_MAX,
                       timeout=1.0, retries=1, max_connections=2)
    sent: list[str] = []
    lost: list[str] = []
    send, read = redis.connection.Connection.send_command, redis.connection.Connection.read_response

    def send_command(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]).upper())
        return send(self, *args, **kwargs)

    def read_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        reply = read(self, *args, **kwargs)
        pieces = [c for c in sent if c in ("APPEND", "SETRANGE")]
        if len(pieces) == 3 and not lost:
            lost.append(sent[-1])  # Redis has run it; the client never hears back.
            raise redis.exceptions.TimeoutError("reply lost (injected)")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "send_command", send_command)
    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    body = os.urandom(4096 * 5 + 17)
    action = os.urandom(32)
    entry = put(store, tmp_path, body, action)
    monkeypatch.undo()
    assert lost, "the fault was never injected"
    assert redis_client.get(f"t:o:{entry.output_id.hex()}") == body
    assert fetch(store, action) == (entry, body)
    store.close()


def test_a_put_replaces_the_whole_record(store, client, tmp_path) -> None:
    action = os.urandom(32)
    put(store, tmp_path, b"small", action)
    big = os.urandom(INLINE_MAX * 2)
    entry = put(store, tmp_path, big, action)
    raw = client.hgetall(f"t:a:{action.hex()}")
    assert b"body" not in raw and raw[b"oid"] == entry.output_id.hex().encode()
    assert fetch(store, action) == (entry, big)


def test_miss(store) -> None:
    assert fetch(store, os.urandom(32)) == (None, b"")


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda c, k, o: c.hset(k, "body", b"short"), "truncated"),
        (lambda c, k, o: c.hdel(k, "size"), "bad_fields"),
        (lambda c, k, o: c.hset(k, "size", "lots"), "bad_fields"),
        (lambda c, k, o: c.hset(k, "time", "yesterday"), "bad_fields"),
        (lambda c, k, o: c.hset(k, "oid", "abcd"), "bad_fields"),
        (lambda c, k, o: c.hdel(k, "body"), "bad_fields"),
    ],
    ids=["truncated-inline", "no-size", "garbage-size", "garbage-time", "short-oid", "no-body"],
)
def test_malformed_inline_records_are_rejected(store, client, tmp_path, mutate, kind) -> None:
    action = os.urandom(32)
    entry = put(store, tmp_path, b"x" * 100, action)
    mutate(client, f"t:a:{action.hex()}", f"t:o:{entry.output_id.hex()}")
    with pytest.raises(RejectedEntry) as info:
        fetch(store, action)
    assert info.value.kind == kind


@pytest.mark.parametrize("stream", [False, True], ids=["get", "getrange"])
def test_missing_or_short_blobs_are_rejected(store, client, tmp_path, monkeypatch, stream) -> None:
    if stream:
        monkeypatch.setattr(upload, "STREAM_CHUNK", 1024)
    action = os.urandom(32)
    entry = put(store, tmp_path, os.urandom(INLINE_MAX * 3), action)
    okey = f"t:o:{entry.output_id.hex()}"
    client.set(okey, client.getrange(okey, 0, 99))
    with pytest.raises(RejectedEntry) as info:
        fetch(store, action)
    assert info.value.kind == "truncated"
    client.delete(okey)
    with pytest.raises(RejectedEntry) as info:
        fetch(store, action)
    assert info.value.kind == "missing_blob"


def test_refresh_extends_hash_and_blob(store, client, tmp_path) -> None:
    small_action, big_action = os.urandom(32), os.urandom(32)
    small = put(store, tmp_path, b"s", small_action)
    big = put(store, tmp_path, os.urandom(INLINE_MAX + 5), big_action)
    keys = [f"t:a:{small_action.hex()}", f"t:a:{big_action.hex()}", f"t:o:{big.output_id.hex()}"]
    for key in keys:
        client.expire(key, 10)
    store.refresh([(small_action, small), (big_action, big)])
    for key in keys:
        assert client.ttl(key) > 10, key


def test_redact_url_hides_passwords() -> None:
    assert redact_url("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("rediss://:s3cret@host/0") == "rediss://:***@host/0"
    assert redact_url("redis://host:6379") == "redis://host:6379"
    assert "s3cret" not in redact_url("redis://u:s3c@ret@host/0")


def test_get_inline_answers_a_batch_in_one_pipeline(store, client, tmp_path) -> None:
    """Inline records come back with their bodies; for anything else, the rest of the lookup,
    which decides as get() would without reading the record again."""
    small, big, broken, missing = (os.urandom(32) for _ in range(4))
    small_entry = put(store, tmp_path, b"inline body", small)
    body = os.urandom(INLINE_MAX * 2)
    big_entry = put(store, tmp_path, body, big)  # a blob: not inline
    put(store, tmp_path, b"soon truncated", broken)
    client.hset(f"t:a:{broken.hex()}", "body", b"short")
    found = store.get_inline([small, big, broken, missing])
    assert found[0] == (small_entry, b"inline body")
    rest = found[1:]
    assert all(callable(p) for p in rest)
    for action in (big, broken, missing):  # whatever happens to the records now
        client.delete(f"t:a:{action.hex()}")
    pieces: list[bytes] = []
    assert rest[0](lambda piece: pieces.append(bytes(piece))) == big_entry
    assert b"".join(pieces) == body
    with pytest.raises(RejectedEntry) as info:
        rest[1](pieces.append)
    assert info.value.kind == "truncated"
    assert rest[2](pieces.append) is None  # a miss
    assert store.get_inline([]) == []


def test_a_huge_blob_is_read_in_getrange_pieces_not_one_get(
        redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path) -> None:
    """Redis copies a whole reply into its output buffers before sending any of it: one GET
    of a 256 MiB output cost Redis that much memory and outlasted the 0.5 s read timeout
    (found by the benchmark: the get was a miss half the time). The light client streams
    each GETRANGE piece instead."""
    store = RedisStore(redis_server.url, prefix="t:", ttl=TTL, inline_max=INLINE_MAX,
                       timeout=5.0, retries=1, max_connections=2)
    try:
        body = os.urandom(3 * upload.STREAM_CHUNK + 5)
        action = os.urandom(32)
        entry = put(store, tmp_path, body, action)
        redis_client.config_resetstat()
        assert fetch(store, action) == (entry, body)
        stats = redis_client.info("commandstats")
        assert stats["cmdstat_getrange"]["calls"] == 4
        assert "cmdstat_get" not in stats
    finally:
        store.close()
