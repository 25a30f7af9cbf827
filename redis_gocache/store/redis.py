"""The Redis store: one hash per action, small outputs inline, large ones in blob keys.

Keys (every one under the configured prefix, default ``gocache:``; see docs/design.md):

* ``a:<action-hex>``: a hash with ``oid`` (output id, hex), ``size``, ``time`` (put time in
  ns), and either ``body`` (the output, when it is at most ``inline_max`` bytes) or
  ``ref`` = ``o`` (the output is in the blob key below), or ``ref`` = ``f:o/<hh>/<output-hex>``
  (with a spill directory: the output is that file there, see :mod:`redis_gocache.store.spill`).
* ``o:<output-hex>``: a large output, shared by every action that produced it.
* ``t:<random-hex>``: a large upload in progress, renamed to its ``o:`` key when complete.

TTL rules: every key gets ``ttl`` seconds when written; a put or a refresh that references a
blob sets the blob's TTL too, so a blob never expires before the newest hash pointing at it
(it may outlive its hashes; it then expires on its own). Temporary upload keys live
:data:`UPLOAD_TTL` seconds.

Write order: the blob is complete before the hash that points to it is written, and the hash
is replaced as a whole (``MULTI``: ``DEL``, ``HSET``, ``EXPIRE``), so a reader sees either the
old record or the new one, never a mix of two writers' fields. On a Redis Cluster the blob
and the record sit in different slots, which no ``MULTI`` spans: the blob is written first,
then the record's own ``MULTI`` (one key, one slot); an upload key carries the blob key as its
hash tag (``t:<random-hex>{<prefix>o:<output-hex>}``) so that ``RENAME`` stays in one slot.

Trust: a store made with ``read_only=True`` refuses every write before anything is sent (the
Redis ACL reader user is what enforces it; this is the second fence). With a ``signer`` every
record carries a ``sig`` field (see :mod:`redis_gocache.signing`); with a ``verifier`` a record
whose signature is missing or wrong is rejected before its body is fetched.

redis-py is imported when the first command it must send is sent, not before: a helper whose
every request is a local hit never pays for the import, and reads on a plain single-server URL
go through :mod:`redis_gocache.store.resp` without it.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis_gocache.config import redact_url
from redis_gocache.exceptions import (
    ConfigError,
    GoCacheError,
    LocalStoreError,
    PermissionDenied,
    RejectedEntry,
    RemoteError,
    RemoteMisconfigured,
    RemoteOutOfMemory,
    RemoteUnavailable,
    ShardUnavailable,
    missing_module,
)
from redis_gocache.store.entry import Entry
from redis_gocache.store.keys import Keys
from redis_gocache.store.layout import is_hex_id
from redis_gocache.store.resp import HIREDIS, LightClient, plain_address
from redis_gocache.store.spill import POINTER_PREFIX
from redis_gocache.store.topology import CLUSTER, SINGLE, is_tls, kind_of
from redis_gocache.store.topology import connect as connect_topology

TYPE_CHECKING = False  # not typing's: a new runner's first Redis hit waits for this module
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, cast

    import redis

    from redis_gocache.signing import Signer, Verifier
    from redis_gocache.store.base import Pending, Sink
    from redis_gocache.store.spill import SpillDir
else:
    def cast(_type: object, value: object) -> object:
        """``typing.cast``, which only informs the type checker, without importing typing."""
        return value

STREAM_CHUNK = 4 * 1024 * 1024
"""Blobs larger than this travel in pieces this size (SETRANGE on the way in, GETRANGE on the
way out), so neither side holds a whole large output in memory: not the helper, and not
Redis, which copies a whole reply into its output buffers before it sends any of it."""

UPLOAD_TTL = 600
"""Seconds a half-finished streamed upload may linger before Redis drops it."""

REFRESH_BATCH = 500
"""Entries per pipelined round trip when refreshing TTLs."""

OUT_OF_MEMORY = "OOM"

DEAD_NODE_SECONDS = 30.0
"""How long a Redis Cluster node that failed is left alone (its keys are misses meanwhile)."""

MAX_CLOCK_SKEW_NS = 24 * 3600 * 10**9
"""A record's put time may be this far in the future (clocks of runners differ); later is
garbage. cmd/go expires test results by this time, so one from the future would outlive
``go clean -testcache``, and one past year 9999 is not a time Go can parse."""


class RedisStore:
    """A :class:`~redis_gocache.store.base.RemoteStore` on one Redis server."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl: int,
        inline_max: int,
        timeout: float,
        retries: int,
        max_connections: int,
        password: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        read_only: bool = False,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        spill: SpillDir | None = None,
    ) -> None:
        self.url = url
        self.read_only = read_only
        self.signer = signer
        self.verifier = verifier
        self.spill = spill  # outputs above inline_max go there, not to o: keys
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.ttl = ttl
        self.inline_max = inline_max
        self._conn_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "max_connections": max_connections,
            "timeout": timeout,  # wait for a free pooled connection
            "health_check_interval": 0,
        }
        if password is not None:
            self._conn_kwargs["password"] = password
        if tls_ca:
            self._conn_kwargs["ssl_ca_certs"] = tls_ca
        if tls_cert:
            self._conn_kwargs["ssl_certfile"] = tls_cert
        if tls_key:
            self._conn_kwargs["ssl_keyfile"] = tls_key
        self._retries = retries
        # A Cluster spreads keys over slots and no MULTI spans two, so puts write the blob
        # first and the record second (see put); a Sentinel primary is one server.
        self._clustered = kind_of(url) == CLUSTER
        self._dead_nodes: dict[str, float] = {}  # Cluster node name -> monotonic time to retry
        self._client: redis.Redis | None = None
        self._lock = threading.Lock()
        # The read path's own client (store/resp.py), for plain single-server URLs.
        self._password = password
        self._timeout = timeout
        self._light_client: LightClient | None = None
        self._light_plain: bool | None = None  # unknown until first asked

    # -- connection -------------------------------------------------------------------

    def client(self) -> redis.Redis:
        """The redis-py client, made (and redis imported) on first use."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._connect()
                    except ConfigError as exc:
                        raise RemoteMisconfigured(str(exc)) from None
                    except ImportError as exc:
                        raise RemoteMisconfigured(missing_module(exc)) from None
        return self._client

    def light(self) -> LightClient | redis.Redis:
        """The client for reads and the end-of-run records:
        :class:`~redis_gocache.store.resp.LightClient` where it can serve (plain single-server
        URLs, no TLS), which spares a helper redis-py's import until it uploads; else the
        redis-py client."""
        if self._light_plain is None:
            with self._lock:
                if self._light_plain is None:
                    address = None
                    if not self._clustered and not any(
                            k.startswith("ssl_") for k in self._conn_kwargs):
                        address = plain_address(self.url, self._password)
                    if address is not None:
                        self._light_client = LightClient(address, self._timeout)
                    elif not HIREDIS:
                        sys.stderr.write("redis-gocache: hiredis is not installed for this "
                                         "Python; reading through redis-py instead\n")
                    self._light_plain = address is not None
        if self._light_client is not None:
            return self._light_client
        return self.client()

    def _connect(self) -> redis.Redis:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        kwargs = dict(self._conn_kwargs)
        if not is_tls(self.url):
            for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
                if kwargs.pop(key, None):
                    raise ConfigError("TLS options need a rediss:// URL")
        if kind_of(self.url) != SINGLE:
            return connect_topology(
                self.url, kwargs, Retry(ExponentialBackoff(cap=0.1, base=0.01), self._retries))
        try:
            pool = redis.BlockingConnectionPool.from_url(
                self.url,
                # Bounds of one stalled call: connect and each reply wait socket timeouts, a
                # busy pool waits ``timeout``; each retry pays them again after a short backoff.
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), self._retries),
                **kwargs,
            )
        except (ValueError, TypeError):
            # Not the parser's message: for a URL like redis://:pa/ss@host it quotes a piece of
            # the password as the "port".
            raise ConfigError(
                f"cannot parse the Redis URL {redact_url(self.url)} (a password with / ? # or "
                "@ must be percent-encoded, or given in REDIS_PASSWORD)"
            ) from None
        return redis.Redis(connection_pool=pool)

    def _writing(self) -> None:
        """Safety check before any write: a read-only store sends none."""
        if self.read_only:
            raise PermissionDenied("this helper is read-only")

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn redis-py's exceptions into ours, here at the edge and in the operator
        commands. (The light client raises ours already, and without redis-py imported
        nothing here imports it.)"""
        try:
            yield
        except GoCacheError:
            raise
        except Exception as exc:
            translated = _translated(exc)
            if translated is None:
                raise
            raise translated from None

    @contextmanager
    def _shard(self, *keys: str) -> Iterator[None]:
        """On a Redis Cluster, keep one dead node from costing the whole cache.

        A node that failed is remembered for :data:`DEAD_NODE_SECONDS`: commands on its keys
        raise :class:`ShardUnavailable` at once, without a network round trip, and a failure
        becomes :class:`ShardUnavailable` too, which the guard answers with a miss but does not
        take for an outage. Only when every primary has failed is Redis unavailable. On a
        single server this does nothing.
        """
        if not self._clustered:
            yield
            return
        client = self._client
        nodes = self._nodes_of(client, keys) if client is not None else []
        now = time.monotonic()
        down = [n for n in nodes if self._dead_nodes.get(n, 0.0) > now]
        if down:
            raise ShardUnavailable(f"Redis Cluster node {down[0]} is down")
        try:
            yield
        except RemoteUnavailable as exc:
            self._node_failed(nodes, exc)
        except ShardUnavailable:
            raise
        except RemoteError as exc:
            # A node that died takes its slots along: redis-py says so in words, not types.
            text = str(exc).lower()
            if "clusterdown" in text or "cluster is down" in text or "slotnotcovered" in text:
                self._node_failed(nodes, exc)
            raise

    def _node_failed(self, nodes: list[str], exc: RemoteError) -> None:
        until = time.monotonic() + DEAD_NODE_SECONDS
        for node in nodes:
            self._dead_nodes[node] = until
        client = self._client
        try:
            primaries = len(client.get_primaries()) if client is not None else 0  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - no topology known: assume the worst
            primaries = 0
        dead = sum(1 for t in self._dead_nodes.values() if t > time.monotonic())
        if primaries == 0 or dead >= primaries:
            raise RemoteUnavailable(f"every Redis Cluster primary failed: {exc}") from None
        which = ", ".join(nodes) or "?"
        raise ShardUnavailable(f"Redis Cluster node {which} failed: {exc}") from None

    @staticmethod
    def _nodes_of(client: redis.Redis, keys: Sequence[str]) -> list[str]:
        names: list[str] = []
        for key in keys:
            try:
                name = client.get_node_from_key(key).name  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - an unknown slot map: no node to blame
                continue
            if name not in names:
                names.append(name)
        return names

    # -- reads ------------------------------------------------------------------------

    def get(self, action_id: bytes, sink: Sink) -> Entry | None:
        akey = self.keys.action(action_id)
        with self._shard(akey), self.translate_errors():
            raw = cast(dict[bytes, bytes], self.light().hgetall(akey))
        return self._serve(action_id, raw, sink)

    def _serve(self, action_id: bytes, raw: dict[bytes, bytes], sink: Sink) -> Entry | None:
        """The rest of :meth:`get`, from the record ``raw`` (empty: a miss)."""
        if not raw:
            return None
        entry = parse_record(raw)
        if self.verifier is not None:
            problem = self.verifier.verify(action_id, entry, raw.get(b"sig"))
            if problem is not None:
                raise RejectedEntry(problem, "record is not signed by a trusted key")
        body = raw.get(b"body")
        if body is not None:
            if len(body) != entry.size:
                raise RejectedEntry("truncated", "inline body size differs from its record")
            if body:
                sink(body)
            return entry
        ref = raw.get(b"ref", b"")
        if ref == b"o":
            okey = self.keys.blob(entry.output_id)
            with self._shard(okey), self.translate_errors():
                self._read_blob(self.light(), okey, entry.size, sink)
            return entry
        if not ref.startswith(POINTER_PREFIX):
            raise RejectedEntry("bad_fields", "record has neither body nor blob reference")
        # A spill pointer, read outside _translate: the volume's trouble is no Redis outage.
        if self.spill is None:
            raise RejectedEntry("spill_unmounted", "output is in a spill directory not set here")
        self.spill.read(ref[len(POINTER_PREFIX):], entry, sink)
        return entry

    def get_inline(
        self, action_ids: Sequence[bytes]
    ) -> list[tuple[Entry, bytes] | Pending | None]:
        # One pipelined HGETALL per batch instead of a round trip (and a pass through
        # redis-py's per-command machinery) per entry. Not on a Cluster: the batch would span
        # slots and nodes, and one dead node must cost only its own keys (_shard). A record
        # without its body comes back as the rest of its lookup, so that a blob costs one
        # more round trip, not two.
        if self._clustered or not action_ids:
            return [None] * len(action_ids)
        keys = [self.keys.action(action_id) for action_id in action_ids]
        with self.translate_errors():
            pipe = self.light().pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            raws = cast(list[dict[bytes, bytes]], pipe.execute())
        return [self._inline(action_id, raw) for action_id, raw in zip(action_ids, raws,
                                                                        strict=True)]

    def _inline(self, action_id: bytes, raw: dict[bytes, bytes]) -> tuple[Entry, bytes] | Pending:
        body = raw.get(b"body") if raw else None
        if body is not None:
            try:
                entry = parse_record(raw)
            except RejectedEntry:
                entry = None
            if entry is not None and len(body) == entry.size and (
                    self.verifier is None
                    or self.verifier.verify(action_id, entry, raw.get(b"sig")) is None):
                return entry, body
        # Anything else, a miss or a record to reject included, is decided as get decides it.
        return lambda sink: self._serve(action_id, raw, sink)

    @staticmethod
    def _read_blob(client: LightClient | redis.Redis, key: str, size: int, sink: Sink) -> None:
        """One GET up to STREAM_CHUNK, GETRANGE pieces above it: Redis copies a whole reply
        into its output buffers before sending a byte, so one GET of 256 MiB would cost Redis
        that much memory and outlast the read timeout. The light client hands each reply to
        the sink as it arrives from the socket."""
        read: Callable[[Sequence[str], int, Sink], int | None] = (
            client.stream if isinstance(client, LightClient)
            else functools.partial(_bulk_reply, client))
        if size <= STREAM_CHUNK:
            length = read(("GET", key), size, sink)
            if length is None:
                raise RejectedEntry("missing_blob", "blob is gone")
            if length != size:
                raise RejectedEntry("truncated", "blob size differs from its record")
            return
        offset = 0
        while offset < size:
            end = min(offset + STREAM_CHUNK, size)
            got = read(("GETRANGE", key, str(offset), str(end - 1)), end - offset, sink)
            if got != end - offset:  # GETRANGE of a missing key is empty, of a short one short
                raise RejectedEntry("missing_blob" if offset == 0 and not got else "truncated",
                                    "blob is gone or shorter than its record")
            offset = end
        if client.strlen(key) != size:
            raise RejectedEntry("truncated", "blob size differs from its record")

    # -- writes -----------------------------------------------------------------------

    def put(self, action_id: bytes, entry: Entry, path: str) -> None:
        self._writing()
        keys = [self.keys.action(action_id)]
        if entry.size > self.inline_max and self.spill is None:
            keys.append(self.keys.blob(entry.output_id))
        with self._shard(*keys):
            self._put(action_id, entry, path)

    def _put(self, action_id: bytes, entry: Entry, path: str) -> None:
        akey = self.keys.action(action_id)
        fields: dict[str, bytes | str | int] = {
            "oid": entry.output_id.hex(),
            "size": entry.size,
            "time": entry.time_ns,
        }
        if self.signer is not None:
            fields["sig"] = self.signer.sign(action_id, entry)
        if self.spill is not None and entry.size > self.inline_max:
            # Into the shared spill directory first, the record pointing at it second; the
            # volume's trouble (LocalStoreError) is no Redis outage, so outside _translate.
            fields["ref"] = POINTER_PREFIX.decode() + self.spill.store(entry, path)
            with self.translate_errors():
                pipe = self.client().pipeline(transaction=True)
                self._write_record(pipe, akey, fields)
                pipe.execute()
            return
        # Read small bodies before talking to Redis: a local file that vanished is not an
        # outage (inside _translate an OSError would be taken for one).
        data = _read_file(path) if entry.size <= STREAM_CHUNK else None
        with self.translate_errors():
            client = self.client()
            if entry.size <= self.inline_max:
                fields["body"] = data or b""
                pipe = client.pipeline(transaction=True)
                self._write_record(pipe, akey, fields)
                pipe.execute()
                return
            fields["ref"] = "o"
            okey = self.keys.blob(entry.output_id)
            if entry.size <= STREAM_CHUNK:
                assert data is not None  # read above: size <= STREAM_CHUNK
                if self._clustered:
                    # Two slots: the blob is stored before the record that points at it.
                    client.set(okey, data, ex=self.ttl)
                    pipe = client.pipeline(transaction=True)
                    self._write_record(pipe, akey, fields)
                    pipe.execute()
                    return
                # One round trip: the blob, then the record, in one MULTI.
                pipe = client.pipeline(transaction=True)
                pipe.set(okey, data, ex=self.ttl)
                self._write_record(pipe, akey, fields)
                pipe.execute()
                return
            # A large blob that is already stored (same output from another action, or another
            # runner) only needs its TTL pushed out; EXPIRE answers whether it exists.
            if not client.expire(okey, self.ttl):
                self._upload(client, okey, path, entry.size)
            pipe = client.pipeline(transaction=True)
            if not self._clustered:  # clustered: the EXPIRE or upload above set the TTL
                pipe.expire(okey, self.ttl)
            self._write_record(pipe, akey, fields)
            pipe.execute()

    def _write_record(self, pipe: Any, akey: str, fields: dict[str, bytes | str | int]) -> None:
        pipe.delete(akey)
        pipe.hset(akey, mapping=fields)
        pipe.expire(akey, self.ttl)

    def _upload(self, client: redis.Redis, okey: str, path: str, size: int) -> None:
        # On a Cluster RENAME needs both keys in one slot: the blob key rides along as a hash tag.
        tkey = self.keys.upload(os.urandom(16), okey if self._clustered else None)
        with _open_local(path) as f:
            # The key is made at its full size first, then filled piece by piece at fixed
            # offsets. SETRANGE at an offset can be retried after a timeout without harm (an
            # APPEND that timed out may have landed, and its retry doubled the piece), and
            # the string never grows, so Redis copies nothing: growing it by APPEND made
            # Redis reallocate it once per piece, slow enough to hit the timeout.
            pipe = client.pipeline(transaction=False)
            pipe.setrange(tkey, size - 1, b"\0")
            pipe.expire(tkey, UPLOAD_TTL)
            pipe.execute()
            offset = 0
            while piece := _read_piece(f):
                if offset + len(piece) <= size:  # A file that grew fails the check below.
                    client.setrange(tkey, offset, piece)
                offset += len(piece)
        if offset != size:
            client.delete(tkey)
            raise RemoteError(f"the local file changed during the upload ({offset} of {size} "
                              "bytes)")
        if self._clustered:
            # redis-py refuses RENAME in a cluster pipeline; the blob keeps the upload key's
            # short TTL until the EXPIRE, and no record points at it before then.
            client.rename(tkey, okey)
            client.expire(okey, self.ttl)
            return
        pipe = client.pipeline(transaction=True)
        pipe.rename(tkey, okey)
        pipe.expire(okey, self.ttl)
        pipe.execute()

    def refresh(self, items: Sequence[tuple[bytes, Entry]]) -> None:
        self._writing()
        with self._shard(), self.translate_errors():
            client = self.light()
            for start in range(0, len(items), REFRESH_BATCH):
                pipe = client.pipeline(transaction=False)
                for action_id, entry in items[start:start + REFRESH_BATCH]:
                    pipe.expire(self.keys.action(action_id), self.ttl)
                    if entry.size > self.inline_max:
                        pipe.expire(self.keys.blob(entry.output_id), self.ttl)
                pipe.execute()
        if self.spill is not None:
            for _, entry in items:
                if entry.size > self.inline_max:
                    self.spill.mark_used(entry.output_id)

    def read_manifest(self, tag: str) -> bytes | None:
        mkey = self.keys.manifest(tag)
        with self._shard(mkey), self.translate_errors():
            return cast(bytes | None, self.light().get(mkey))

    def write_manifest(self, tag: str, action_ids: bytes) -> None:
        self._writing()
        mkey = self.keys.manifest(tag)
        with self._shard(mkey), self.translate_errors():
            self.light().set(mkey, action_ids, ex=self.ttl)

    def ping(self) -> float:
        """Round-trip time of one PING, in seconds."""
        with self.translate_errors():
            client = self.client()
            start = time.perf_counter()
            client.ping()
            return time.perf_counter() - start

    def close(self) -> None:
        if self._light_client is not None:
            self._light_client.close()
        if self._client is not None:
            try:
                self._client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001 - closing sockets must not fail an exit
                pass


def _translated(exc: Exception) -> RemoteError | None:
    """Our exception for one of redis-py's or a socket's; ``None`` for anything else."""
    if isinstance(exc, OSError):
        return RemoteUnavailable(f"{type(exc).__name__}: {exc}")
    if "redis" not in sys.modules:
        return None  # Not redis-py's: it is not even imported.
    import redis.exceptions as rex

    if isinstance(exc, rex.NoPermissionError):
        return PermissionDenied(str(exc))
    if isinstance(exc, rex.OutOfMemoryError):
        return RemoteOutOfMemory(f"Redis is out of memory: {exc}")
    if isinstance(exc, rex.ReadOnlyError):
        return PermissionDenied(f"Redis is a read-only replica: {exc}")
    if isinstance(exc, rex.ResponseError):
        text = str(exc)
        if "NOPERM" in text:
            return PermissionDenied(text)
        if OUT_OF_MEMORY in text:
            return RemoteOutOfMemory(f"Redis is out of memory: {text}")
        return RemoteError(f"Redis refused a command: {text}")
    if isinstance(exc, (rex.ConnectionError, rex.TimeoutError)):
        # AuthenticationError is a ConnectionError: wrong credentials are as good as down.
        return RemoteUnavailable(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (rex.RedisError, rex.RedisClusterException)):
        # RedisClusterException is not a RedisError: a slot no node serves, a pipeline that
        # spans slots.
        return RemoteError(f"{type(exc).__name__}: {exc}")
    return None


def _bulk_reply(client: Any, command: Sequence[str], size: int,
                sink: Sink) -> int | None:
    """:meth:`LightClient.stream` on redis-py: the bulk-string reply to ``command`` goes to
    ``sink`` if it is ``size`` bytes long; returns its length, ``None`` for a nil reply."""
    data: bytes | None = client.execute_command(*command)  # redis-py types it loosely
    if data is None:
        return None
    if len(data) == size and data:
        sink(data)
    return len(data)


def parse_record(raw: dict[bytes, bytes]) -> Entry:
    """The :class:`Entry` of an action hash; :class:`RejectedEntry` if a field is bad."""
    try:
        oid = raw[b"oid"].decode("ascii")
        size = int(raw[b"size"])
        time_ns = int(raw[b"time"])
    except KeyError:
        raise RejectedEntry("bad_fields", "record lacks oid, size or time") from None
    except (UnicodeDecodeError, ValueError):
        raise RejectedEntry("bad_fields", "record has a garbled oid, size or time") from None
    if not is_hex_id(oid):
        raise RejectedEntry("bad_fields", "record's output id is not 32 bytes of hex")
    if size < 0 or time_ns <= 0 or time_ns > time.time_ns() + MAX_CLOCK_SKEW_NS:
        raise RejectedEntry("bad_fields", "record's size or time is out of range")
    return Entry(bytes.fromhex(oid), size, time_ns)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise LocalStoreError(f"cannot read {path}: {exc.strerror}") from None


def _open_local(path: str) -> Any:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise LocalStoreError(f"cannot read {path}: {exc.strerror}") from None


def _read_piece(f: Any) -> bytes:
    try:
        return cast(bytes, f.read(STREAM_CHUNK))
    except OSError as exc:
        raise LocalStoreError(f"cannot read {f.name}: {exc.strerror}") from None


__all__ = ["RedisStore", "parse_record", "redact_url"]
