"""Property tests of the wire parser (:func:`wire.parse_request`, :class:`wire.InputStream`).

What must hold for any input: the parser raises nothing but :class:`FatalProtocolError`;
what cmd/go writes parses back to what it meant; any body survives :meth:`read_body` byte for
byte however the pipe splits it; and a body that is cut, stretched or garbled is reported
(never silently accepted) with the stream left at the next request.
"""

from __future__ import annotations

import base64
import json
import os
import string
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from redis_gocache import wire
from redis_gocache.exceptions import FatalProtocolError
from tests.gocmd import b64, encode_request

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def piped(data: bytes, chunks: Sequence[int] = ()) -> Iterator[wire.InputStream]:
    """An InputStream over a pipe fed by a thread in pieces of the given sizes (cycled), so
    reads come back short and split anywhere, as they do from cmd/go."""
    r, w = os.pipe()
    sizes = [max(1, c) for c in chunks] or [len(data) or 1]

    def feed() -> None:
        try:
            pos, i = 0, 0
            while pos < len(data):
                n = sizes[i % len(sizes)]
                pos += os.write(w, data[pos:pos + n])
                i += 1
        except OSError:
            pass  # the reader gave up early
        finally:
            os.close(w)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        yield wire.InputStream(r)
    finally:
        os.close(r)
        t.join(10)


def drain(stream: wire.InputStream) -> int:
    """Consume a stream the way the server does; returns how many requests were read."""
    count = 0
    while (line := stream.readline()) is not None:
        req = wire.parse_request(line)
        count += 1
        if req.body_size:
            stream.read_body(req, lambda _: None)
    return count


# -- arbitrary input ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "ID": st.integers(min_value=-2, max_value=1 << 64) | json_values,
        "Command": st.sampled_from(["get", "put", "close", "", "GET", "del"]) | json_values,
        "ActionID": st.binary(max_size=40).map(b64) | json_values,
        "OutputID": st.binary(max_size=40).map(b64) | json_values,
        "ObjectID": st.binary(max_size=40).map(b64) | json_values,
        "BodySize": st.integers(min_value=-5, max_value=1 << 50) | json_values,
    },
)


@FUZZ
@given(st.binary(max_size=300))
def test_parse_request_raises_only_fatal_protocol_errors(line: bytes) -> None:
    try:
        req = wire.parse_request(line)
    except FatalProtocolError:
        return
    assert isinstance(req, wire.Request) and req.id >= 0


@FUZZ
@given(request_like)
def test_parse_request_of_json_objects(obj: dict[str, object]) -> None:
    """Near-miss requests: each is a Request (with an error when malformed) or fatal."""
    try:
        req = wire.parse_request(json.dumps(obj).encode())
    except FatalProtocolError:
        assert not (isinstance(obj.get("ID"), int) and not isinstance(obj.get("ID"), bool)
                    and obj["ID"] >= 0 and _size_ok(obj)), obj
        return
    assert req.id == obj["ID"]
    if req.error is None:
        assert req.command in ("get", "put", "close")
        if req.command in ("get", "put"):
            assert len(req.action_id) == wire.ID_SIZE
        if req.command == "put":
            assert len(req.output_id) == wire.ID_SIZE


def _size_ok(obj: dict[str, object]) -> bool:
    size = obj.get("BodySize", 0)
    return size is None or (isinstance(size, int) and not isinstance(size, bool)
                            and 0 <= size <= wire.MAX_BODY)


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(1, 700), min_size=1, max_size=5))
def test_any_byte_stream_ends_cleanly_or_fatally(data: bytes, chunks: list[int]) -> None:
    with piped(data, chunks) as stream:
        try:
            drain(stream)
        except FatalProtocolError:
            pass


@FUZZ
@given(st.lists(st.sampled_from([
    b'{"ID":1,"Command":"get","ActionID":"' + b64(bytes(32)).encode() + b'"}\n\n',
    b'{"ID":2,"Command":"put","ActionID":"' + b64(bytes(32)).encode() + b'","OutputID":"'
    + b64(bytes(32)).encode() + b'","BodySize":5}\n\n',
    b'"aGVsbG8="\n', b'"aGVsbG8"\n', b'"aGVsbG8=\n', b"\n", b"\r\n", b'"', b"{", b"}\n",
    b'{"ID":3}\n', b"\x00\xff\n", b'"' + b"QUFB" * 50 + b'"\n',
]), max_size=12), st.lists(st.integers(1, 64), min_size=1, max_size=4))
def test_shuffled_request_fragments(parts: list[bytes], chunks: list[int]) -> None:
    """Realistic pieces in any order: only FatalProtocolError may escape."""
    with piped(b"".join(parts), chunks) as stream:
        try:
            drain(stream)
        except FatalProtocolError:
            pass


def test_huge_line_is_fatal() -> None:
    # Bigger than one read: the line is refused before it is held whole. (A line between
    # MAX_LINE and one read's worth that arrives in one piece is still parsed: reported.)
    with piped(b"{" + b" " * (3 << 20) + b"}\n", [65536]) as stream:
        with pytest.raises(FatalProtocolError, match="longer than"):
            stream.readline()


def test_deeply_nested_json_is_fatal_not_a_crash() -> None:
    with pytest.raises(FatalProtocolError):
        wire.parse_request(b"[" * 50_000)


# -- round trips ---------------------------------------------------------------------------

ids32 = st.binary(min_size=32, max_size=32)


@FUZZ
@given(
    st.integers(min_value=0, max_value=(1 << 53)),
    st.sampled_from(["get", "put", "close"]),
    ids32,
    ids32,
    st.integers(min_value=0, max_value=1 << 40),
    st.sampled_from(["OutputID", "ObjectID"]),
)
def test_valid_requests_round_trip(
    req_id: int, command: str, aid: bytes, oid: bytes, size: int, field: str
) -> None:
    obj: dict[str, object] = {"ID": req_id, "Command": command}
    if command != "close":
        obj["ActionID"] = b64(aid)
    if command == "put":
        obj[field] = b64(oid)
        if size:
            obj["BodySize"] = size
    line = encode_request(obj).split(b"\n")[0]
    req = wire.parse_request(line)
    assert req.error is None, req
    assert (req.id, req.command) == (req_id, command)
    assert req.action_id == (aid if command != "close" else b"")
    assert req.output_id == (oid if command == "put" else b"")
    assert req.body_size == (size if command == "put" else 0)


def _put(body_size: int) -> wire.Request:
    return wire.Request(9, "put", bytes(32), bytes(32), body_size)


NEXT = encode_request({"ID": 10, "Command": "close"})


@FUZZ
@given(st.binary(max_size=5000), st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_bodies_round_trip_through_read_body(body: bytes, chunks: list[int]) -> None:
    assume(body)
    data = b'"' + base64.standard_b64encode(body) + b'"\n' + NEXT
    pieces: list[bytes] = []
    with piped(data, chunks) as stream:
        assert stream.read_body(_put(len(body)), pieces.append) is None
        assert b"".join(pieces) == body
        line = stream.readline()
        assert line is not None and wire.parse_request(line).command == "close"


NOT_BASE64 = [c for c in string.printable if c not in string.ascii_letters + string.digits + "+/"]


@FUZZ
@given(st.binary(min_size=1, max_size=3000), st.data())
def test_damaged_bodies_are_reported_and_the_stream_resyncs(body: bytes, data: st.DataObject) \
        -> None:
    enc = base64.standard_b64encode(body)
    how = data.draw(st.sampled_from(["cut", "extra", "garble", "declared-larger",
                                     "declared-smaller"]))
    size = len(body)
    if how == "cut":
        k = data.draw(st.integers(1, len(enc)))
        enc = enc[:-k]
    elif how == "extra":
        enc += data.draw(st.sampled_from([b"A", b"QUFB", b"AAAA", b"="]))
    elif how == "garble":
        i = data.draw(st.integers(0, len(enc) - 1))
        bad = data.draw(st.sampled_from([c for c in NOT_BASE64 if c not in "\n\r\x0b\x0c"]))
        assume(enc[i:i + 1] != bad.encode())  # "=" over padding would change nothing
        enc = enc[:i] + bad.encode() + enc[i + 1:]
    elif how == "declared-larger":
        size += data.draw(st.integers(1, 10))
    else:
        size -= data.draw(st.integers(1, size))
        assume(size > 0)
    chunks = data.draw(st.lists(st.integers(1, 2000), min_size=1, max_size=4))
    with piped(b'"' + enc + b'"\n' + NEXT, chunks) as stream:
        problem = stream.read_body(_put(size), lambda _: None)
        assert problem is not None, (how, len(body), size)
        line = stream.readline()
        assert line is not None and wire.parse_request(line).id == 10, (how, line)


@FUZZ
@given(st.binary(min_size=1, max_size=3000), st.data())
def test_input_ending_inside_a_body_is_fatal(body: bytes, data: st.DataObject) -> None:
    enc = b'"' + base64.standard_b64encode(body)
    cut = data.draw(st.integers(0, len(enc)))
    with piped(enc[:cut], [997]) as stream:
        with pytest.raises(FatalProtocolError):
            stream.read_body(_put(len(body)), lambda _: None)


_B64_CHARS = string.ascii_letters + string.digits + "+/="


@st.composite
def near_plain_lines(draw: st.DrawFn) -> bytes:
    """Lines shaped like cmd/go's get and close, and small departures from those shapes."""
    req_id = draw(st.one_of(st.integers(0, 2**63), st.sampled_from(["007", "-1", "1.5", "",
                                                                      "1e3", " 1", "true"])))
    if draw(st.booleans()):
        action = b64(draw(st.binary(min_size=32, max_size=32)))
    else:
        action = draw(st.text(_B64_CHARS, min_size=40, max_size=48))
    command = draw(st.sampled_from(["get", "get", "put", "GET", "close"]))
    if draw(st.booleans()):
        line = f'{{"ID":{req_id},"Command":"{command}","ActionID":"{action}"}}'
    else:
        line = f'{{"ID":{req_id},"Command":"{command}"}}'
    if draw(st.integers(0, 4)) == 0:
        i = draw(st.integers(0, len(line)))
        line = line[:i] + draw(st.sampled_from([" ", "\\", "x", '"', ",", "}", "\t"])) + line[i:]
    return line.encode()


@FUZZ
@given(near_plain_lines())
def test_the_plain_shortcut_agrees_with_the_json_parser(line: bytes) -> None:
    """parse_request, shortcut and all, reads every line as the JSON parser alone does."""
    try:
        expected = wire._parse_json(line)
    except FatalProtocolError:
        with pytest.raises(FatalProtocolError):
            wire.parse_request(line)
        return
    assert wire.parse_request(line) == expected


@FUZZ
@given(near_plain_lines(), st.binary(max_size=80), st.binary(max_size=80))
def test_plain_get_reads_a_line_in_place_as_the_json_parser_does(
        line: bytes, before: bytes, after: bytes) -> None:
    """The local-hit fast path runs plain_get on a line inside the input buffer: it sees only
    that line, whatever surrounds it, and what it accepts the JSON parser reads the same."""
    buf = before + line + after
    found = wire.plain_get(buf, len(before), len(before) + len(line))
    assert found == wire.plain_get(line, 0, len(line))
    if found is not None:
        digits, action = found
        assert wire._parse_json(line) == wire.Request(int(digits), wire.CMD_GET, action)


def test_the_plain_shortcut_takes_what_cmd_go_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """cmd/go's own get and close lines never reach the JSON parser; other lines do."""
    def json_parser(line: bytes) -> wire.Request:
        raise AssertionError(f"JSON parser called for {line!r}")

    monkeypatch.setattr(wire, "_parse_json", json_parser)
    action = os.urandom(32)
    line = json.dumps({"ID": 12345, "Command": "get", "ActionID": b64(action)},
                      separators=(",", ":")).encode()
    assert wire.parse_request(line) == wire.Request(12345, wire.CMD_GET, action)
    close = json.dumps({"ID": 12346, "Command": "close"}, separators=(",", ":")).encode()
    assert wire.parse_request(close) == wire.Request(12346, wire.CMD_CLOSE)
    for other in (line.replace(b"12345", b"012345"), line + b" ", line.replace(b"get", b"put"),
                  close.replace(b"close", b"closed"), close[:-1] + b',"BodySize":1}'):
        with pytest.raises(AssertionError, match="JSON parser called"):
            wire.parse_request(other)
