"""The GOCACHEPROG wire format: requests in, responses out. No storage here.

cmd/go (``src/cmd/go/internal/cache/prog.go``) writes each request as one JSON object on
its own line, then an empty line. A ``put`` whose ``BodySize`` is above zero is followed by
one more line: the body as a base64 JSON string (``"...."``). Byte fields (``ActionID``,
``OutputID``) are base64 in JSON, as Go's encoding/json writes ``[]byte``.

The helper answers each request with one JSON line carrying the request's ``ID``; answers
may come in any order. The very first line, ID 0, lists the commands the helper knows.

How cmd/go reacts to an answer decides what we may send:

* ``Err`` on a ``put`` or on ``close`` fails the user's build, so it is kept for requests
  that are themselves broken, and for a put whose body cannot be written to local disk.
* A ``get`` that cannot be served is a ``Miss``, never an ``Err``.
* ``Time`` must parse as RFC 3339; cmd/go uses it to expire test results, so it is always the
  time of the original put, in UTC with a ``Z``.
* ``Size`` must equal the size of the file at ``DiskPath``; cmd/go checks.
"""

from __future__ import annotations

import binascii
import os
import time

# json.dumps(str) without the json package: the same C function, the same output. The json
# package (with the re module under it) is imported only by requests that are neither a plain
# get nor a plain close: a warm build never needs it.
from _json import encode_basestring_ascii as _json_string

from redis_gocache.exceptions import FatalProtocolError, ProtocolError

# The command names and the capability line announcing them are handshake's (written before
# this module is imported); every other answer's bytes are made here.
from redis_gocache.handshake import CAPABILITIES, CMD_CLOSE, CMD_GET, CMD_PUT, KNOWN_COMMANDS
from redis_gocache.value import Value

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable

ID_SIZE = 32
"""Bytes in an ActionID or OutputID (SHA-256)."""

MAX_LINE = 64 * 1024
"""Longest request line accepted. Real requests are about 200 bytes; a longer line is garbage,
and refusing it bounds the memory one bad client can make us hold."""

MAX_BODY = 1 << 40
"""Largest BodySize accepted (1 TiB): a sanity bound, not a real limit."""

_READ_CHUNK = 1 << 20
"""Bytes asked of stdin at a time inside a body; base64 is decoded in pieces this size."""

_LINE_CHUNK = 1 << 16
"""Bytes asked of stdin at a time between bodies. Small on purpose: os.read allocates the whole
size first, and a megabyte goes to mmap and back on every request line."""


class Request(Value):
    """One request from cmd/go; a value, never changed once made.

    ``error`` is set when the request is malformed but its ``id`` is known: the server
    answers it with ``Err`` (after consuming any body) and carries on.
    """

    __slots__ = ("id", "command", "action_id", "output_id", "body_size", "error")

    def __init__(self, id: int, command: str, action_id: bytes = b"", output_id: bytes = b"",
                 body_size: int = 0, error: str | None = None) -> None:
        self.id = id
        self.command = command
        self.action_id = action_id
        self.output_id = output_id
        self.body_size = body_size
        self.error = error


def _b64_field(obj: dict[str, object], name: str) -> bytes | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} is not a base64 string")
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        raise ValueError(f"{name} is not valid base64") from None


ANSWER_HEAD = b'{"ID":'
"""How every request and every answer starts; the ID's digits follow. The warm path
(:meth:`redis_gocache.server.Server._local_hits`) writes an answer as this, the digits it read,
and a tail from :func:`hit_tail`, and answers kept from the last run
(:mod:`redis_gocache.answers`) keep their tail without :data:`ANSWER_END`."""

ANSWER_END = b"\n"
"""How every answer ends (cmd/go reads one JSON value per line)."""

_PLAIN_HEAD = ANSWER_HEAD
_GET_MIDDLE = b',"Command":"get","ActionID":"'
_GET_TAIL = b'"}'
_CLOSE_TAIL = b',"Command":"close"}'
_B64_ID_LEN = 44
"""Characters of a padded base64 ID (32 bytes)."""
_GET_LENGTH_AFTER_ID = len(_GET_MIDDLE) + _B64_ID_LEN + len(_GET_TAIL)


def plain_get(buf: bytes, start: int, end: int) -> tuple[bytes, bytes] | None:
    """The ID digits and the action ID of ``buf[start:end]`` if that line is a get exactly as
    cmd/go's encoder writes it, ``{"ID":7,"Command":"get","ActionID":"<44 base64
    characters>"}``; else ``None``. Works in place, without slicing out the line: this is the
    first thing every local hit costs (see :mod:`redis_gocache.server`)."""
    if not buf.startswith(_PLAIN_HEAD, start):
        return None
    comma = buf.find(b",", start + 6, end)
    if comma < 0 or end - comma != _GET_LENGTH_AFTER_ID or not buf.startswith(_GET_MIDDLE, comma) \
            or not buf.startswith(_GET_TAIL, end - 2):
        return None
    digits = buf[start + 6:comma]
    if not digits.isdigit() or (comma - start > 7 and buf[start + 6] == 48):  # no "07"
        return None
    try:
        at = comma + len(_GET_MIDDLE)
        action_id = binascii.a2b_base64(buf[at:at + _B64_ID_LEN], strict_mode=True)
    except binascii.Error:
        return None
    return (digits, action_id) if len(action_id) == ID_SIZE else None


def parse_request(line: bytes) -> Request:
    """Parse one request line.

    Raises :class:`FatalProtocolError` when the line has no usable ``ID`` (then nobody can be
    answered); otherwise returns a :class:`Request`, with ``error`` set if it is malformed.

    A get or a close exactly as cmd/go's encoder writes them (:func:`plain_get`, and
    ``{"ID":9,"Command":"close"}``) is read without the JSON decoder; anything else takes
    :func:`_parse_json`, which reads those lines the same way (a property test checks).
    Warm builds are a thousand gets and a close: this keeps the json package off a warm run.
    """
    get = plain_get(line, 0, len(line))
    if get is not None:
        return Request(int(get[0]), CMD_GET, get[1])
    if line.startswith(_PLAIN_HEAD) and line.endswith(_CLOSE_TAIL):
        digits = line[6:len(line) - len(_CLOSE_TAIL)]
        if digits.isdigit() and (len(digits) == 1 or digits[0] != 48):
            return Request(int(digits), CMD_CLOSE)
    return _parse_json(line)


def _parse_json(line: bytes) -> Request:
    """:func:`parse_request` for any line, with the JSON decoder."""
    import json

    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: JSON nested deeper than the interpreter's stack ("[[[[...").
        raise FatalProtocolError(f"request is not JSON: {_preview(line)}") from None
    if not isinstance(obj, dict):
        raise FatalProtocolError(f"request is not a JSON object: {_preview(line)}")
    req_id = obj.get("ID")
    if not isinstance(req_id, int) or isinstance(req_id, bool) or req_id < 0:
        raise FatalProtocolError(f"request has no valid ID: {_preview(line)}")

    body_size = obj.get("BodySize", 0)
    if body_size is None:
        body_size = 0
    if not isinstance(body_size, int) or isinstance(body_size, bool) or body_size > MAX_BODY:
        # Without a trustworthy size we cannot tell where the body ends: give up on the stream.
        raise FatalProtocolError(f"request {req_id} has an invalid BodySize: {body_size!r}")
    if body_size < 0:
        # cmd/go writes a body only when BodySize > 0, so the stream is still in step.
        return Request(req_id, str(obj.get("Command", "")),
                       error=f"BodySize must not be negative: {body_size}")

    command = obj.get("Command")
    if not isinstance(command, str):
        return Request(req_id, "", body_size=body_size, error="request has no Command")
    try:
        action_id = _b64_field(obj, "ActionID")
        output_id = _b64_field(obj, "OutputID")
        object_id = _b64_field(obj, "ObjectID")  # Go 1.21-1.23 spelled OutputID this way.
    except ValueError as exc:
        return Request(req_id, command, body_size=body_size, error=str(exc))

    if output_id is not None and object_id is not None and output_id != object_id:
        return Request(req_id, command, body_size=body_size,
                       error="OutputID and ObjectID differ")
    output_id = output_id if output_id is not None else object_id

    error = None
    if command in (CMD_GET, CMD_PUT):
        if action_id is None or len(action_id) != ID_SIZE:
            error = f"ActionID must be {ID_SIZE} bytes"
        elif command == CMD_PUT and (output_id is None or len(output_id) != ID_SIZE):
            error = f"OutputID must be {ID_SIZE} bytes"
    elif command != CMD_CLOSE:
        error = f"unknown command {command!r}"
    return Request(req_id, command, action_id or b"", output_id or b"", body_size, error)


def _preview(line: bytes, limit: int = 80) -> str:
    text = line[:limit].decode("utf-8", "replace")
    return repr(text) + ("..." if len(line) > limit else "")


def encoded_body_length(size: int) -> int:
    """Characters of standard padded base64 for ``size`` bytes."""
    return 4 * ((size + 2) // 3)


class InputStream:
    """Buffered reads of the request stream from a file descriptor.

    Request lines are read whole (they are small); bodies are streamed and decoded in
    pieces, so a 256 MiB body never exists as one Python object.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.buf = b""
        """Bytes read and not all consumed yet; the unread ones start at :attr:`pos`."""
        self.pos = 0

    def fill(self, size: int = _LINE_CHUNK) -> bool:
        """Read more input (blocking) after the unread bytes; False at end of input. The
        unread bytes then start at position 0."""
        data = os.read(self._fd, size)
        if not data:
            return False
        if self.pos < len(self.buf):
            self.buf = self.buf[self.pos:] + data
        else:
            self.buf = data
        self.pos = 0
        return True

    def readline(self) -> bytes | None:
        """The next non-blank line without its newline, or ``None`` at end of input."""
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                if nl - self.pos > MAX_LINE:
                    raise FatalProtocolError(f"request line longer than {MAX_LINE} bytes")
                line = self.buf[self.pos:nl]
                self.pos = nl + 1
                if line.strip():
                    return line
                continue
            if len(self.buf) - self.pos > MAX_LINE:
                raise FatalProtocolError(f"request line longer than {MAX_LINE} bytes")
            if not self.fill():
                rest = self.buf[self.pos:]
                self.pos = len(self.buf)
                return rest if rest.strip() else None

    def _skip_blank(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in b"\r\n \t":
                self.pos += 1
            if self.pos < len(self.buf) or not self.fill():
                return

    def _skip_line(self) -> None:
        """Drop input up to and including the next newline (to resynchronise after a bad body)."""
        while True:
            nl = self.buf.find(b"\n", self.pos)
            if nl >= 0:
                self.pos = nl + 1
                return
            self.pos = len(self.buf)
            if not self.fill():
                return

    def read_body(self, req: Request, sink: Callable[[bytes], object]) -> str | None:
        """Stream the body of ``req`` (``BodySize`` > 0) into ``sink``, decoded.

        Returns ``None`` when exactly ``BodySize`` bytes were decoded, else a message saying
        what was wrong; either way the body line has been consumed, so the next request can
        be read. Raises :class:`FatalProtocolError` if the input ends inside the body.
        """
        self._skip_blank()
        if self.pos >= len(self.buf):
            raise FatalProtocolError(f"input ended before the body of request {req.id}")
        if self.buf[self.pos:self.pos + 1] != b'"':
            self._skip_line()
            return "body is not a JSON string"
        self.pos += 1
        remaining = encoded_body_length(req.body_size)
        carry = b""
        decoded = 0
        while remaining > 0:
            if self.pos >= len(self.buf) and not self.fill(_READ_CHUNK):
                raise FatalProtocolError(f"input ended inside the body of request {req.id}")
            piece = self.buf[self.pos:self.pos + remaining]
            stop = _first_of(piece, b'"', b"\n")
            if stop >= 0:
                self.pos += stop
                self._skip_line()
                return f"body is shorter than BodySize {req.body_size}"
            self.pos += len(piece)
            remaining -= len(piece)
            data = carry + piece if carry else piece
            usable = len(data) - len(data) % 4
            carry = data[usable:]
            try:
                chunk = binascii.a2b_base64(data[:usable], strict_mode=True)
            except binascii.Error:
                self._skip_line()
                return "body is not valid base64"
            decoded += len(chunk)
            if chunk:
                sink(chunk)
        if self.pos >= len(self.buf) and not self.fill():
            raise FatalProtocolError(f"input ended inside the body of request {req.id}")
        closing = self.buf[self.pos:self.pos + 1]
        self._skip_line()
        if closing != b'"':
            return f"body is longer than BodySize {req.body_size}"
        if decoded != req.body_size:
            return f"body decodes to {decoded} bytes, not BodySize {req.body_size}"
        return None


def _first_of(data: bytes, a: bytes, b: bytes) -> int:
    i, j = data.find(a), data.find(b)
    if i < 0:
        return j
    if j < 0:
        return i
    return min(i, j)


_SECONDS: dict[int, str] = {}


def _format_seconds(secs: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC. Outputs of one build share few distinct seconds, and
    strftime costs more than the rest of a local hit: the texts are remembered."""
    text = _SECONDS.get(secs)
    if text is None:
        if len(_SECONDS) > 4096:
            _SECONDS.clear()
        text = _SECONDS[secs] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    return text


def format_time(ns: int) -> str:
    """RFC 3339 with nanoseconds, always UTC with ``Z`` (what Go's time.Time parses)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return f"{_format_seconds(secs)}.{frac:09d}Z"


def hit_tail(output_id: bytes, size: int, time_ns: int, disk_path: str) -> bytes:
    """The answer to a ``get`` that found its action, after its ``{"ID":<n>``: what
    :func:`hit_response` appends to the ID, and what a local hit's fast path appends to the
    ID digits it read."""
    secs, frac = divmod(time_ns, 1_000_000_000)
    return (
        f',"OutputID":"{binascii.b2a_base64(output_id, newline=False).decode()}",'
        f'"Size":{size},"Time":"{_format_seconds(secs)}.{frac:09d}Z",'
        f'"DiskPath":{_json_string(disk_path)}}}\n'
    ).encode()


def hit_response(req_id: int, output_id: bytes, size: int, time_ns: int, disk_path: str) -> bytes:
    """The answer to a ``get`` that found its action."""
    return b'{"ID":%d' % req_id + hit_tail(output_id, size, time_ns, disk_path)


def miss_response(req_id: int) -> bytes:
    """The answer to a ``get`` that cannot be served."""
    return f'{{"ID":{req_id},"Miss":true}}\n'.encode()


def put_response(req_id: int, disk_path: str) -> bytes:
    """The answer to a ``put`` whose body is on local disk."""
    return f'{{"ID":{req_id},"DiskPath":{_json_string(disk_path)}}}\n'.encode()


def close_response(req_id: int) -> bytes:
    """The answer to ``close``."""
    return f'{{"ID":{req_id}}}\n'.encode()


def error_response(req_id: int, message: str) -> bytes:
    """An ``Err`` answer. Never for Redis trouble: cmd/go fails the build on it."""
    import json

    return (json.dumps({"ID": req_id, "Err": message}, separators=(",", ":")) + "\n").encode()


__all__ = [
    "CAPABILITIES",
    "CMD_CLOSE",
    "CMD_GET",
    "CMD_PUT",
    "KNOWN_COMMANDS",
    "ID_SIZE",
    "InputStream",
    "ProtocolError",
    "Request",
    "close_response",
    "encoded_body_length",
    "error_response",
    "format_time",
    "hit_response",
    "hit_tail",
    "ANSWER_END",
    "ANSWER_HEAD",
    "miss_response",
    "parse_request",
    "plain_get",
    "put_response",
]
