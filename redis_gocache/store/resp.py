"""A small Redis client for the read path, so that fetching from Redis does not wait for
redis-py's import.

``import redis`` (redis-py 8) takes about 100 ms on a CI runner: the package imports its
asyncio client, and that imports asyncio. cmd/go waits for a helper's answers, so a new
runner paid those 100 ms before its first Redis hit (a tenth of its ``go build std``), and a
warm runner with a single local miss paid them for that one miss. The read path needs few
commands (``HGETALL`` and ``GET``, pipelined), which this module sends over plain sockets in
RESP2 and reads with hiredis's parser: the C parser redis-py itself uses, and a dependency
already. A large value skips the parser (:meth:`LightClient.stream`): it goes from the
socket's buffer to its local file as it arrives, in pieces of at most 1 MiB. Imported by
itself this module costs a few milliseconds. The small writes after the last answer
(``EXPIRE`` refreshes, the prefetch manifest, fleet counters) take it too, so a run that only
read never imports redis-py: that import would otherwise land on the CPU of the next ``go``
command.

It serves only plain single-server URLs, ``redis://[user:password@]host[:port][/db]`` and
``unix://[user:password@]/path``, with no query options; TLS, Cluster, Sentinel and URL
options stay with redis-py (:meth:`RedisStore.client`), as do uploads and every other write.
Errors are ours (:mod:`redis_gocache.exceptions`) from the start: a socket that fails, times
out or is refused its credentials raises :class:`RemoteUnavailable`; an error reply raises
what :mod:`redis_gocache.store.errors`, the table the redis-py path uses too, says.
"""

from __future__ import annotations

import socket
from _thread import allocate_lock

try:
    import hiredis
except ImportError:  # the optional C accelerator: without it redis-py serves the reads
    HIREDIS = False
else:
    HIREDIS = True

from redis_gocache.exceptions import RemoteError, RemoteMisconfigured, RemoteUnavailable
from redis_gocache.store.errors import from_reply

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    from redis_gocache.store.base import Sink

    T = TypeVar("T")

DEFAULT_PORT = 6379

_RECV = 1 << 20
"""Bytes asked of the socket at a time: large outputs arrive in megabytes."""

_HEAD_MAX = 32
"""Longest first line of a ``GET`` reply: ``$``, a length of up to 20 digits, CRLF."""

_IDLE = 8
"""Connections kept for reuse; cmd/go has at most a few gets in flight, plus the prefetcher."""


class Address:
    """Where and as whom to connect (from :func:`plain_address`)."""

    __slots__ = ("host", "port", "path", "username", "password", "db")

    def __init__(self, *, host: str = "", port: int = DEFAULT_PORT, path: str = "",
                 username: str | None = None, password: str | None = None, db: int = 0) -> None:
        self.host, self.port, self.path = host, port, path
        self.username, self.password, self.db = username, password, db


def plain_address(url: str, password: str | None) -> Address | None:
    """The address of a plain single-server URL; ``None`` when redis-py must serve it.

    Credentials follow redis-py's ``from_url`` precedence, so both paths log in alike: the
    URL's user and password win, and ``password`` (``--password-file``, ``REDIS_PASSWORD``)
    is used when the URL has none.

    Without hiredis (an optional accelerator that pip may not have installed for this
    interpreter) every URL is left to redis-py, whose own pure-Python parser needs nothing more.
    """
    if not HIREDIS:
        return None
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "unix") or "?" in rest or "#" in rest:
        return None
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return None  # redis-py explains a URL it cannot parse
    address = Address(
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else password,
    )
    if scheme == "unix":
        if not parts.path:
            return None
        address.path = unquote(parts.path)
        return address
    address.host = unquote(parts.hostname) if parts.hostname else "localhost"
    address.port = port
    db = unquote(parts.path).replace("/", "")
    if db:
        if not (db.isascii() and db.isdigit()):
            return None  # redis-py ignores such a path; so do we, by leaving it to redis-py
        address.db = int(db)
    return address


def _pack(command: Sequence[bytes | str]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _reply_error(error: hiredis.ReplyError | str) -> RemoteError:
    return from_reply(str(error))


class _Connection:
    """One socket to Redis, logged in and on the right database."""

    def __init__(self, address: Address, timeout: float) -> None:
        if address.path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(address.path)
            except BaseException:
                self._sock.close()
                raise
        else:
            self._sock = socket.create_connection((address.host, address.port), timeout)
            try:
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except BaseException:
                self._sock.close()
                raise
        self._buf = bytearray(_RECV)
        self._view = memoryview(self._buf)
        self.delivered = False
        """Whether the command under way has handed data on: then it cannot be retried."""
        self.reusable = True
        """False when a reply was left unread: the connection goes, not back to the pool."""
        self._reader = hiredis.Reader()
        hello: list[tuple[str, ...]] = []
        if address.password is not None:
            hello.append(("AUTH", address.username, address.password) if address.username
                         else ("AUTH", address.password))
        if address.db:
            hello.append(("SELECT", str(address.db)))
        if hello:
            try:
                replies = self.run(hello)
            except BaseException:
                self.close()
                raise
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    self.close()
                    # Wrong credentials are as good as down, as on the redis-py path;
                    # the error table says which (NOAUTH, WRONGPASS, ...).
                    exc = _reply_error(reply)
                    if not isinstance(exc, RemoteUnavailable):
                        exc = RemoteUnavailable(f"Redis refused the connection: {exc}")
                    raise exc

    def run(self, commands: Sequence[Sequence[bytes | str]]) -> list[object]:
        """Send ``commands`` in one write and read their replies (error replies included)."""
        self._sock.sendall(b"".join(_pack(c) for c in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            reply = self._reader.gets()
            if reply is not False:
                replies.append(reply)
                continue
            n = self._sock.recv_into(self._buf)
            if not n:
                raise ConnectionError("Redis closed the connection")
            # hiredis copies what it is fed; its stub types only str and bytes, but any
            # buffer works, so one receive buffer serves every reply.
            self._reader.feed(self._buf, 0, n)  # type: ignore[arg-type]
        return replies

    def stream(self, command: Sequence[str], size: int, sink: Sink) -> int | None:
        """Send ``command``, whose reply is one bulk string (``GET``, ``GETRANGE``), and hand
        that string to ``sink`` from the receive buffer as it arrives, if it is ``size`` bytes
        long. Returns its length, ``None`` for a nil reply; a string of another length is not
        read (and the connection not reused).

        Large outputs (95% of ``go build std``'s bytes) come this way: through hiredis, each
        would be copied twice more with the GIL held, into hiredis's buffer and then into a
        new bytes object whose pages the kernel must first zero.
        """
        self.delivered = False
        self._sock.sendall(_pack(command))
        buf, view = self._buf, self._view
        have = 0
        while True:
            # Nothing but this reply can arrive (one command), so read as much as there is.
            n = self._sock.recv_into(view[have:])
            if not n:
                raise ConnectionError("Redis closed the connection")
            have += n
            end = buf.find(b"\r\n", 0, have)
            if end >= 0:
                break
            # An error line may be long; a length line is short.
            if have == len(buf) or (have >= _HEAD_MAX and buf[:1] != b"-"):
                raise RemoteError(f"Redis sent an unreadable reply to {command[0]}")
        head = bytes(buf[:end])
        start = end + 2
        if head[:1] == b"-":
            self.reusable = start == have
            raise _reply_error(head[1:].decode("utf-8", "replace"))
        try:
            length = int(head[1:]) if head[:1] == b"$" else None
        except ValueError:
            length = None
        if length is None:
            raise RemoteError(f"Redis sent an unreadable reply to {command[0]}")
        if length < 0:
            self.reusable = start == have
            return None
        if length != size:
            self.reusable = False
            return length
        left, tail = length, b"\r\n"
        while True:
            if start < have:
                take = min(have - start, left)
                if take:
                    self.delivered = True
                    sink(view[start:start + take])
                    left -= take
                    start += take
                if start < have:  # the CRLF after the value, maybe in two pieces
                    extra = bytes(buf[start:have])
                    if not tail.startswith(extra):
                        raise RemoteError(f"Redis sent more than the reply to {command[0]}")
                    tail = tail[len(extra):]
            if not left and not tail:
                return length
            # Only the rest of this reply can come: read it into the buffer's start.
            n = self._sock.recv_into(view[:min(_RECV, left + len(tail))])
            if not n:
                raise ConnectionError("Redis closed the connection")
            start, have = 0, n

    def close(self) -> None:
        self._sock.close()


class LightClient:
    """Pipelined commands over a few reused connections; safe to use from several threads."""

    def __init__(self, address: Address, timeout: float) -> None:
        self._address = address
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._lock = allocate_lock()

    def call(self, commands: Sequence[Sequence[bytes | str]]) -> list[object]:
        """The replies to ``commands``; raises our exception for the first error reply."""
        replies = self._use(lambda conn: conn.run(commands))
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise _reply_error(reply)
        return replies

    def stream(self, command: Sequence[str], size: int, sink: Sink) -> int | None:
        """The bulk-string reply to ``command`` into ``sink`` in pieces (see
        :meth:`_Connection.stream`): each piece is a view of a buffer that the next one
        overwrites, so ``sink`` must use it at once."""
        return self._use(lambda conn: conn.stream(command, size, sink))

    def _use(self, work: Callable[[_Connection], T]) -> T:
        """``work`` on a pooled connection, or a new one.

        A pooled connection that the server closed while it sat idle fails at once; ``work``
        is then retried once on a new connection, unless it had already handed data on. A
        timeout is not retried: the server may have run the command (a counter increment
        must not count twice), and a slow Redis would only be waited for again. A new
        connection that fails means Redis is unavailable.
        """
        for attempt in (1, 2):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            fresh = conn is None
            try:
                if conn is None:
                    conn = _Connection(self._address, self._timeout)
                result = work(conn)
            except OSError as exc:  # ConnectionError, TimeoutError, socket errors
                if conn is not None:
                    conn.close()
                if fresh or attempt == 2 or isinstance(exc, TimeoutError) or (
                        conn is not None and conn.delivered):
                    raise RemoteUnavailable(f"{type(exc).__name__}: {exc}") from None
                continue
            except hiredis.ProtocolError as exc:
                if conn is not None:
                    conn.close()
                # Something answers on that port, but not Redis (an HTTP server, say).
                raise RemoteMisconfigured(f"the server does not speak Redis ({exc})") from None
            except BaseException:
                if conn is not None:
                    conn.close()  # in an unknown state: never reuse it
                raise
            if conn.reusable:
                with self._lock:
                    if len(self._idle) < _IDLE:
                        self._idle.append(conn)
                        conn = None
            if conn is not None:
                conn.close()
            return result
        raise AssertionError("unreachable")

    # The redis-py methods the read path uses, with redis-py's return types.

    def hgetall(self, key: str) -> dict[bytes, bytes]:
        return _pairs(self.call([("HGETALL", key)])[0])

    def get(self, key: str) -> bytes | None:
        reply = self.call([("GET", key)])[0]
        return reply if isinstance(reply, bytes) else None

    def getrange(self, key: str, start: int, end: int) -> bytes:
        reply = self.call([("GETRANGE", key, str(start), str(end))])[0]
        return reply if isinstance(reply, bytes) else b""

    def strlen(self, key: str) -> int:
        reply = self.call([("STRLEN", key)])[0]
        return reply if isinstance(reply, int) else 0

    # The writes after a run's last answer (TTL refreshes, the prefetch manifest, fleet
    # counters): a run that only read must not import redis-py for them either, since that
    # import would land on the next go command's CPU.

    def set(self, key: str, value: bytes, ex: int) -> None:
        self.call([("SET", key, value, "EX", str(ex))])

    def pipeline(self, transaction: bool = False) -> LightPipeline:
        if transaction:
            raise ValueError("LightClient sends no MULTI")
        return LightPipeline(self)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class LightPipeline:
    """The part of redis-py's pipeline that prefetch batches, TTL refreshes and fleet
    statistics use: queue, then one round trip; replies as redis-py gives them."""

    def __init__(self, client: LightClient) -> None:
        self._client = client
        self._commands: list[tuple[str, ...]] = []
        self._hashes: set[int] = set()  # positions of HGETALLs, whose replies become dicts

    def hgetall(self, key: str) -> None:
        self._hashes.add(len(self._commands))
        self._commands.append(("HGETALL", key))

    def hincrby(self, key: str, field: str, amount: int) -> None:
        self._commands.append(("HINCRBY", key, field, str(amount)))

    def hset(self, key: str, field: str, value: int | str) -> None:
        self._commands.append(("HSET", key, field, str(value)))

    def expire(self, key: str, seconds: int) -> None:
        self._commands.append(("EXPIRE", key, str(seconds)))

    def execute(self) -> list[object]:
        commands, hashes = self._commands, self._hashes
        self._commands, self._hashes = [], set()
        replies = self._client.call(commands) if commands else []
        return [_pairs(reply) if i in hashes else reply for i, reply in enumerate(replies)]


def _pairs(reply: object) -> dict[bytes, bytes]:
    if not isinstance(reply, list):
        raise RemoteError(f"Redis answered HGETALL with {type(reply).__name__}")
    return dict(zip(reply[::2], reply[1::2], strict=True))
