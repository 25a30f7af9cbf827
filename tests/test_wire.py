"""The wire format: parsing requests, streaming bodies, encoding answers."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator

import pytest

from redis_gocache import wire
from redis_gocache.config import DEFAULT_INLINE_MAX
from redis_gocache.exceptions import FatalProtocolError

ACTION = hashlib.sha256(b"action").digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def put_bytes(req_id: int, body: bytes, *, field: str = "OutputID", size: int | None = None,
              with_size: bool = True) -> bytes:
    """A put exactly as cmd/go writes it: JSON line, empty line, body line."""
    obj: dict[str, object] = {"ID": req_id, "Command": "put", "ActionID": b64(ACTION),
                              field: b64(hashlib.sha256(body).digest())}
    n = len(body) if size is None else size
    if with_size and n:
        obj["BodySize"] = n
    out = json.dumps(obj).encode() + b"\n\n"
    if body and with_size:
        out += b'"' + base64.b64encode(body) + b'"\n'
    return out


@pytest.fixture
def stream_of() -> Iterator[object]:
    files: list[int] = []

    def make(data: bytes) -> wire.InputStream:
        # A regular file, not a pipe: large bodies must not block the writer.
        f = tempfile.TemporaryFile()
        f.write(data)
        f.seek(0)
        fd = os.dup(f.fileno())
        f.close()
        files.append(fd)
        return wire.InputStream(fd)

    yield make
    for fd in files:
        os.close(fd)


def read_put(stream: wire.InputStream) -> tuple[wire.Request, bytes, str | None]:
    line = stream.readline()
    assert line is not None
    req = wire.parse_request(line)
    pieces: list[bytes] = []
    problem = stream.read_body(req, pieces.append) if req.body_size else None
    return req, b"".join(pieces), problem


@pytest.mark.parametrize(
    "size",
    [1, 2, 3, 4, 1024 * 1024, DEFAULT_INLINE_MAX + 1, 3 * 1024 * 1024 + 7],
    ids=["1B", "2B", "3B", "4B", "1MiB", "over-inline", "3MiB+7"],
)
def test_put_bodies_round_trip(stream_of, size: int) -> None:
    body = os.urandom(size)
    stream = stream_of(put_bytes(7, body) + put_bytes(8, b"tail"))
    req, got, problem = read_put(stream)
    assert problem is None
    assert (req.id, req.command, req.body_size) == (7, "put", size)
    assert req.action_id == ACTION and req.output_id == hashlib.sha256(body).digest()
    assert got == body
    # The stream is still in step: the next request reads cleanly.
    req2, got2, problem2 = read_put(stream)
    assert (req2.id, got2, problem2) == (8, b"tail", None)


@pytest.mark.parametrize("with_size", [True, False], ids=["BodySize-0", "no-BodySize"])
def test_empty_body_has_no_body_line(stream_of, with_size: bool) -> None:
    obj = {"ID": 1, "Command": "put", "ActionID": b64(ACTION),
           "OutputID": b64(hashlib.sha256(b"").digest())}
    if with_size:
        obj["BodySize"] = 0
    stream = stream_of(json.dumps(obj).encode() + b"\n\n" + b'{"ID":2,"Command":"close"}\n\n')
    req, got, problem = read_put(stream)
    assert (req.body_size, got, problem, req.error) == (0, b"", None, None)
    line = stream.readline()
    assert line is not None and wire.parse_request(line).command == "close"
    assert stream.readline() is None


def test_object_id_is_accepted() -> None:
    oid = hashlib.sha256(b"x").digest()
    req = wire.parse_request(json.dumps(
        {"ID": 3, "Command": "put", "ActionID": b64(ACTION), "ObjectID": b64(oid), "BodySize": 1}
    ).encode())
    assert req.error is None and req.output_id == oid


def test_both_ids_must_match() -> None:
    same = b64(hashlib.sha256(b"x").digest())
    other = b64(hashlib.sha256(b"y").digest())
    base = {"ID": 3, "Command": "put", "ActionID": b64(ACTION), "BodySize": 1}
    ok = wire.parse_request(json.dumps({**base, "OutputID": same, "ObjectID": same}).encode())
    assert ok.error is None
    bad = wire.parse_request(json.dumps({**base, "OutputID": same, "ObjectID": other}).encode())
    assert bad.error is not None and "differ" in bad.error
    assert bad.id == 3


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ({"ID": 1, "Command": "frobnicate"}, "unknown command"),
        ({"ID": 1, "Command": "get", "ActionID": b64(b"short")}, "ActionID"),
        ({"ID": 1, "Command": "get"}, "ActionID"),
        ({"ID": 1, "Command": "get", "ActionID": "%%%not-base64"}, "base64"),
        ({"ID": 1, "Command": "put", "ActionID": b64(ACTION)}, "OutputID"),
        ({"ID": 1}, "Command"),
        ({"ID": 1, "Command": "put", "ActionID": b64(ACTION), "BodySize": -5}, "negative"),
    ],
)
def test_malformed_requests_with_an_id_get_an_error(obj: dict[str, object], needle: str) -> None:
    req = wire.parse_request(json.dumps(obj).encode())
    assert req.id == 1
    assert req.error is not None and needle in req.error


@pytest.mark.parametrize(
    "line",
    [b"not json", b"[1,2]", b'{"Command":"get"}', b'{"ID":"7"}', b'{"ID":-1}', b'{"ID":true}',
     b'{"ID":1,"Command":"put","BodySize":"big"}', b'{"ID":1,"Command":"put","BodySize":1e3}',
     b"\xff\xfe"],
)
def test_requests_without_a_usable_id_are_fatal(line: bytes) -> None:
    with pytest.raises(FatalProtocolError):
        wire.parse_request(line)


@pytest.mark.parametrize("tail", [b"", b"\n"], ids=["unterminated", "with-newline"])
def test_huge_line_is_fatal(stream_of, tail: bytes) -> None:
    # With its newline, the whole line arrives in one read: it must still be refused.
    stream = stream_of(b"x" * (wire.MAX_LINE + 10) + tail)
    with pytest.raises(FatalProtocolError, match="longer than"):
        stream.readline()


@pytest.mark.parametrize(
    ("body_line", "needle"),
    [
        (b'"' + base64.b64encode(b"abc") + b'"\n', "shorter"),  # BodySize says 6
        (b'"' + base64.b64encode(b"abcdefghi") + b'"\n', "longer"),
        (b'"@@@@@@@@"\n', "base64"),
        (b"abcdefgh\n", "JSON string"),
        (b'"' + base64.b64encode(b"abcdef")[:-1] + b'\n', "shorter"),  # no closing quote
    ],
)
def test_bad_bodies_are_reported_and_skipped(stream_of, body_line: bytes, needle: str) -> None:
    header = json.dumps({"ID": 5, "Command": "put", "ActionID": b64(ACTION),
                         "OutputID": b64(hashlib.sha256(b"abcdef").digest()),
                         "BodySize": 6}).encode() + b"\n\n"
    stream = stream_of(header + body_line + b'{"ID":6,"Command":"close"}\n\n')
    req, _, problem = read_put(stream)
    assert problem is not None and needle in problem
    line = stream.readline()
    assert line is not None and wire.parse_request(line).id == 6


def test_body_cut_off_by_eof_is_fatal(stream_of) -> None:
    data = put_bytes(1, os.urandom(3000))[:-500]
    stream = stream_of(data)
    with pytest.raises(FatalProtocolError, match="ended"):
        read_put(stream)


def test_body_is_streamed_in_pieces(stream_of) -> None:
    body = os.urandom(5 * 1024 * 1024)
    stream = stream_of(put_bytes(1, body))
    line = stream.readline()
    assert line is not None
    req = wire.parse_request(line)
    pieces: list[int] = []
    digest = hashlib.sha256()

    def sink(piece: bytes) -> None:
        pieces.append(len(piece))
        digest.update(piece)

    assert stream.read_body(req, sink) is None
    assert digest.digest() == hashlib.sha256(body).digest()
    assert len(pieces) > 1 and max(pieces) <= 1024 * 1024


RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.mark.parametrize("ns", [1, 1_700_000_000_123_456_789, 4_102_444_800_000_000_000])
def test_time_is_rfc3339_utc_with_z(ns: int) -> None:
    text = wire.format_time(ns)
    assert RFC3339_UTC.match(text), text
    assert text.endswith(f"{ns % 1_000_000_000:09d}Z")


def test_time_ignores_the_local_timezone(monkeypatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert wire.format_time(0) == "1970-01-01T00:00:00.000000000Z"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_answers_are_single_json_lines() -> None:
    oid = hashlib.sha256(b"o").digest()
    hit = wire.hit_response(9, oid, 12, 1_700_000_000_000_000_000, '/tmp/we"ird\npath')
    assert hit.endswith(b"\n") and hit.count(b"\n") == 1
    obj = json.loads(hit)
    assert obj == {"ID": 9, "OutputID": b64(oid), "Size": 12,
                   "Time": "2023-11-14T22:13:20.000000000Z", "DiskPath": '/tmp/we"ird\npath'}
    assert json.loads(wire.miss_response(4)) == {"ID": 4, "Miss": True}
    assert json.loads(wire.put_response(5, "/p")) == {"ID": 5, "DiskPath": "/p"}
    assert json.loads(wire.close_response(6)) == {"ID": 6}
    assert json.loads(wire.error_response(7, 'bad "x"')) == {"ID": 7, "Err": 'bad "x"'}
    assert json.loads(wire.CAPABILITIES) == {"ID": 0, "KnownCommands": ["get", "put", "close"]}
