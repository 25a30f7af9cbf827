"""The Redis store: one hash per action, small outputs inline, large ones in blob keys.

What it writes: the keys of :mod:`~redis_gocache.store.keys` (``a:`` records, ``o:`` blobs,
``t:`` uploads, ``m:`` manifests, the ``s:`` fleet counters of
:mod:`~redis_gocache.store.counters`), records with the fields of
:mod:`~redis_gocache.store.record`.

TTL rules: every key gets ``ttl`` seconds when written; a put or a refresh that references a
blob sets the blob's TTL too, so a blob never expires before the newest hash pointing at it
(it may outlive its hashes; it then expires on its own). Temporary upload keys live
:data:`~redis_gocache.store.upload.UPLOAD_TTL` seconds.

Write order: the blob is complete before the hash that points to it is written, and the hash
is replaced as a whole (``MULTI``: ``DEL``, ``HSET``, ``EXPIRE``), so a reader sees either the
old record or the new one, never a mix of two writers' fields. On a Redis Cluster the blob
and the record sit in different slots, which no ``MULTI`` spans: the blob is written first,
then the record's own ``MULTI`` (one key, one slot); an upload key carries the blob key as its
hash tag (``t:<random-hex>{<prefix>o:<output-hex>}``) so that ``RENAME`` stays in one slot.

Compression (``compress=True``, :mod:`~redis_gocache.store.compress`): a value above its
threshold goes in compressed when that is worth it, inline as ``zbody``, as a blob under its
``z:`` key, or in the spill directory's ``z/``; a value is read either way, streamed through
the decompressor into the sink, which hashes and checks it as any other. The compressor and
its import cost the upload thread, never a get; a large value is compressed into a scratch
file first and uploaded from there, so memory stays bounded.

Trust: a store made with ``read_only=True`` refuses every write before anything is sent (the
Redis ACL reader user is what enforces it; this is the second fence). With a ``signer`` every
record carries a ``sig`` field (see :mod:`redis_gocache.signing`); with a ``verifier`` a record
whose signature is missing or wrong is rejected before its body is fetched.

The parts, one job each: the key names are :mod:`~redis_gocache.store.keys`'s, the record's
fields :mod:`~redis_gocache.store.record`'s, the two clients and the choice between them
:mod:`~redis_gocache.store.clients`'s, the error table :mod:`~redis_gocache.store.errors`'s, the
Cluster's dead-node guard :mod:`~redis_gocache.store.cluster`'s, large uploads
:mod:`~redis_gocache.store.upload`'s. redis-py is imported when the first command it must send
is sent, not before: a helper whose every request is a local hit never pays for the import,
and reads on a plain single-server URL go through :mod:`redis_gocache.store.resp` without it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from redis_gocache.exceptions import GoCacheError, PermissionDenied, RejectedEntry
from redis_gocache.store import upload
from redis_gocache.store.clients import Clients
from redis_gocache.store.cluster import NodeGuard
from redis_gocache.store.entry import Entry
from redis_gocache.store.errors import from_redis_py
from redis_gocache.store.keys import Keys
from redis_gocache.store.layout import scratch_for
from redis_gocache.store.record import (
    BODY,
    REF,
    REF_BLOB,
    REF_SPILL,
    REF_ZBLOB,
    REF_ZSPILL,
    SIG,
    ZBODY,
    fields_for,
    parse_record,
    stored_size,
)

TYPE_CHECKING = False  # not typing's: a new runner's first Redis hit waits for this module
if TYPE_CHECKING:
    from typing import Any, cast

    import redis

    from redis_gocache.config import Config
    from redis_gocache.signing import Signer, Verifier
    from redis_gocache.store.base import Pending, Reader, Sink
    from redis_gocache.store.spill import SpillDir
else:
    def cast(_type: object, value: object) -> object:
        """``typing.cast``, which only informs the type checker, without importing typing."""
        return value

REFRESH_BATCH = 500
"""Entries per pipelined round trip when refreshing TTLs."""


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
        compress: bool = True,
    ) -> None:
        self.url = url
        self.compress = compress
        self.read_only = read_only
        self.signer = signer
        self.verifier = verifier
        self.spill = spill  # outputs above inline_max go there, not to o: keys
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.ttl = ttl
        self.inline_max = inline_max
        self.clients = Clients(url, timeout=timeout, retries=retries,
                               max_connections=max_connections, password=password,
                               tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        # A Cluster spreads keys over slots and no MULTI spans two, so puts write the blob
        # first and the record second (see put); a Sentinel primary is one server.
        self._clustered = self.clients.clustered
        self._nodes = NodeGuard() if self._clustered else None

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        timeout: float | None = None,
        max_connections: int | None = None,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        spill: SpillDir | None = None,
    ) -> RedisStore:
        """The store that ``config`` describes (``timeout`` and ``max_connections``: the
        helper's own unless given); nothing is sent yet."""
        return cls(
            config.redis_url or "",
            prefix=config.prefix,
            ttl=config.ttl,
            inline_max=config.inline_max,
            timeout=config.timeout if timeout is None else timeout,
            retries=config.retries,
            max_connections=(config.workers + 2 if max_connections is None
                             else max_connections),
            password=config.password,
            tls_ca=config.tls_ca,
            tls_cert=config.tls_cert,
            tls_key=config.tls_key,
            read_only=config.read_only,
            signer=signer,
            verifier=verifier,
            spill=spill,
            compress=config.compression != "none",
        )

    # -- connection -------------------------------------------------------------------

    def client(self) -> redis.Redis:
        """The redis-py client, made (and redis imported) on first use."""
        return self.clients.redis_py()

    def reader(self) -> Reader:
        """The client for reads and the end-of-run writes (:meth:`Clients.reader`)."""
        return self.clients.reader()

    def _writing(self) -> None:
        """Safety check before any write: a read-only store sends none."""
        if self.read_only:
            raise PermissionDenied("this helper is read-only")

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn redis-py's and the sockets' exceptions into ours
        (:func:`~redis_gocache.store.errors.from_redis_py`), here at the edge and in the
        operator commands. The light client raises ours already."""
        try:
            yield
        except GoCacheError:
            raise
        except Exception as exc:
            translated = from_redis_py(exc)
            if translated is None:
                raise
            raise translated from None

    @contextmanager
    def _shard(self, *keys: str) -> Iterator[None]:
        """On a Redis Cluster, the dead-node guard (:mod:`redis_gocache.store.cluster`);
        on a single server nothing."""
        if self._nodes is None:
            yield
            return
        with self._nodes.around(lambda: self.clients.client, keys):
            yield

    # -- reads ------------------------------------------------------------------------

    def get(self, action_id: bytes, sink: Sink) -> Entry | None:
        akey = self.keys.action(action_id)
        with self._shard(akey), self.translate_errors():
            raw = self.reader().hgetall(akey)
        return self._serve(action_id, raw, sink)

    def _serve(self, action_id: bytes, raw: dict[bytes, bytes], sink: Sink) -> Entry | None:
        """The rest of :meth:`get`, from the record ``raw`` (empty: a miss)."""
        if not raw:
            return None
        entry = parse_record(raw)
        if self.verifier is not None:
            problem = self.verifier.verify(action_id, entry, raw.get(SIG))
            if problem is not None:
                raise RejectedEntry(problem, "record is not signed by a trusted key")
        body = raw.get(BODY)
        if body is not None:
            if len(body) != entry.size:
                raise RejectedEntry("truncated", "inline body size differs from its record")
            if body:
                sink(body)
            return entry
        ref = raw.get(REF, b"")
        if ref == REF_BLOB:
            okey = self.keys.blob(entry.output_id)
            with self._shard(okey), self.translate_errors():
                self._read_blob(self.reader(), okey, entry.size, sink)
            return entry
        zbody = raw.get(ZBODY)
        if zbody is not None or ref == REF_ZBLOB or ref.startswith(REF_ZSPILL):
            return self._serve_packed(raw, entry, zbody, ref, sink)
        if not ref.startswith(REF_SPILL):
            raise RejectedEntry("bad_fields", "record has neither body nor blob reference")
        # A spill pointer, read outside _translate: the volume's trouble is no Redis outage.
        if self.spill is None:
            raise RejectedEntry("spill_unmounted", "output is in a spill directory not set here")
        self.spill.read(ref[len(REF_SPILL):], entry, sink)
        return entry

    def _serve_packed(self, raw: dict[bytes, bytes], entry: Entry, zbody: bytes | None,
                      ref: bytes, sink: Sink) -> Entry:
        """A compressed value (``zbody``, ``ref`` = ``z`` or ``zf:``), expanded into
        ``sink`` as it arrives; the sink hashes the expansion as it would the raw value."""
        from redis_gocache.store.compress import Decompressing

        zsize = stored_size(raw, entry)
        if ref.startswith(REF_ZSPILL):
            if self.spill is None:
                raise RejectedEntry("spill_unmounted",
                                    "output is in a spill directory not set here")
            self.spill.read(ref[len(REF_ZSPILL):], entry, sink, zsize)
            return entry
        expanding = Decompressing(sink, entry.size)
        if zbody is not None:
            if len(zbody) != zsize:
                raise RejectedEntry("truncated", "inline body size differs from its record")
            expanding(zbody)
        else:
            zkey = self.keys.zblob(entry.output_id)
            with self._shard(zkey), self.translate_errors():
                self._read_blob(self.reader(), zkey, zsize, expanding)
        expanding.finish()
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
            pipe = self.reader().pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            raws = cast(list[dict[bytes, bytes]], pipe.execute())
        return [self._inline(action_id, raw) for action_id, raw in zip(action_ids, raws,
                                                                        strict=True)]

    def _inline(self, action_id: bytes, raw: dict[bytes, bytes]) -> tuple[Entry, bytes] | Pending:
        body = raw.get(BODY) if raw else None
        if body is not None:
            try:
                entry = parse_record(raw)
            except RejectedEntry:
                entry = None
            if entry is not None and len(body) == entry.size and (
                    self.verifier is None
                    or self.verifier.verify(action_id, entry, raw.get(SIG)) is None):
                return entry, body
        elif raw and ZBODY in raw and BODY not in raw:
            # Compressed inline: expanded here (at most --inline-max), or rejected below.
            from redis_gocache.store.compress import decompress_bytes
            try:
                entry = parse_record(raw)
                if self.verifier is None or self.verifier.verify(
                        action_id, entry, raw.get(SIG)) is None:
                    zbody = raw[ZBODY]
                    if len(zbody) == stored_size(raw, entry):
                        return entry, decompress_bytes(zbody, entry.size)
            except RejectedEntry:
                pass
        # Anything else, a miss or a record to reject included, is decided as get decides it.
        return lambda sink: self._serve(action_id, raw, sink)

    @staticmethod
    def _read_blob(client: Reader, key: str, size: int, sink: Sink) -> None:
        """One GET up to STREAM_CHUNK, GETRANGE pieces above it: Redis copies a whole reply
        into its output buffers before sending a byte, so one GET of 256 MiB would cost Redis
        that much memory and outlast the read timeout. The light client hands each reply to
        the sink as it arrives from the socket."""
        read = client.stream
        if size <= upload.STREAM_CHUNK:
            length = read(("GET", key), size, sink)
            if length is None:
                raise RejectedEntry("missing_blob", "blob is gone")
            if length != size:
                raise RejectedEntry("truncated", "blob size differs from its record")
            return
        offset = 0
        while offset < size:
            end = min(offset + upload.STREAM_CHUNK, size)
            got = read(("GETRANGE", key, str(offset), str(end - 1)), end - offset, sink)
            if got != end - offset:  # GETRANGE of a missing key is empty, of a short one short
                raise RejectedEntry("missing_blob" if offset == 0 and not got else "truncated",
                                    "blob is gone or shorter than its record")
            offset = end
        if client.strlen(key) != size:
            raise RejectedEntry("truncated", "blob size differs from its record")

    # -- writes -----------------------------------------------------------------------

    def put(self, action_id: bytes, entry: Entry, path: str) -> int:
        self._writing()
        # The record's node here; a blob's (raw or compressed: known only once compressed)
        # around each command on it, so a failure marks only the nodes that took part.
        with self._shard(self.keys.action(action_id)):
            return self._put(action_id, entry, path)

    def _put(self, action_id: bytes, entry: Entry, path: str) -> int:
        akey = self.keys.action(action_id)
        sig = self.signer.sign(action_id, entry) if self.signer is not None else None
        if self.spill is not None and entry.size > self.inline_max:
            # Into the shared spill directory first, the record pointing at it second; the
            # volume's trouble (LocalStoreError) is no Redis outage, so outside _translate.
            with self._packed_file(path, entry.size) as (zpath, zsize):
                pointer = self.spill.store(entry, zpath or path, zsize)
            fields = fields_for(entry, spill_path=pointer, sig=sig, zsize=zsize)
            with self.translate_errors():
                pipe = self.client().pipeline(transaction=True)
                self._write_record(pipe, akey, fields)
                pipe.execute()
            return entry.size if zsize is None else zsize
        # Read small bodies before talking to Redis: a local file that vanished is not an
        # outage (inside _translate an OSError would be taken for one).
        data = upload.read_file(path) if entry.size <= upload.STREAM_CHUNK else None
        packed = None
        if data is not None and self.compress:
            from redis_gocache.store.compress import compress_bytes
            packed = compress_bytes(data)
        if data is None:
            return self._put_large(akey, entry, path, sig)
        zsize = None if packed is None else len(packed)
        with self.translate_errors():
            client = self.client()
            if entry.size <= self.inline_max:
                pipe = client.pipeline(transaction=True)
                self._write_record(pipe, akey, fields_for(
                    entry, body=data if packed is None else packed, sig=sig, zsize=zsize))
                pipe.execute()
                return entry.size if zsize is None else zsize
            fields = fields_for(entry, sig=sig, zsize=zsize)
            if packed is None:
                okey = self.keys.blob(entry.output_id)
            else:
                okey, data = self.keys.zblob(entry.output_id), packed
            # At most STREAM_CHUNK: one SET.
            if self._clustered:
                # Two slots: the blob is stored before the record that points at it.
                with self._shard(okey), self.translate_errors():
                    client.set(okey, data, ex=self.ttl)
                pipe = client.pipeline(transaction=True)
                self._write_record(pipe, akey, fields)
                pipe.execute()
                return len(data)
            # One round trip: the blob, then the record, in one MULTI.
            pipe = client.pipeline(transaction=True)
            pipe.set(okey, data, ex=self.ttl)
            self._write_record(pipe, akey, fields)
            pipe.execute()
            return len(data)

    def _put_large(self, akey: str, entry: Entry, path: str, sig: str | None) -> int:
        """A blob above STREAM_CHUNK: uploaded in pieces, from a compressed scratch copy
        when that is worth it."""
        zsize: int | None = None
        if self.compress:
            # Compressed already (the same output from another action or runner)? It only
            # needs its TTL pushed out; EXPIRE answers whether it exists, STRLEN its size.
            zkey = self.keys.zblob(entry.output_id)
            with self._shard(zkey), self.translate_errors():
                pipe = self.client().pipeline(transaction=False)
                pipe.expire(zkey, self.ttl)
                pipe.strlen(zkey)
                there, length = pipe.execute()
            if there and 0 < length < entry.size:
                return self._put_blob(akey, zkey, entry, None, length, sig)
            with self._packed_file(path, entry.size) as (zpath, zsize):
                if zpath is not None:
                    return self._put_blob(akey, zkey, entry, zpath, zsize, sig)
        return self._put_blob(akey, self.keys.blob(entry.output_id), entry, path, None, sig)

    def _put_blob(self, akey: str, okey: str, entry: Entry, path: str | None,
                  zsize: int | None, sig: str | None) -> int:
        """Upload the file ``path`` (``zsize`` bytes if compressed, else the entry's size) to
        ``okey`` unless it is there (``path`` None: known to be), then the record; the size
        of the value as stored."""
        size = entry.size if zsize is None else zsize
        with self._shard(okey), self.translate_errors():
            client = self.client()
            # A large blob that is already stored (same output from another action, or another
            # runner) only needs its TTL pushed out; EXPIRE answers whether it exists.
            if path is not None and not client.expire(okey, self.ttl):
                # On a Cluster RENAME needs both keys in one slot: the blob key rides along
                # in the upload key as a hash tag.
                tkey = self.keys.upload(os.urandom(16), okey if self._clustered else None)
                upload.upload(client, tkey, okey, path, size, self.ttl, self._clustered)
        with self.translate_errors():
            client = self.client()
            pipe = client.pipeline(transaction=True)
            if not self._clustered:  # clustered: the EXPIRE or upload above set the TTL
                pipe.expire(okey, self.ttl)
            self._write_record(pipe, akey, fields_for(entry, sig=sig, zsize=zsize))
            pipe.execute()
        return size

    @contextmanager
    def _packed_file(self, path: str, size: int) -> Iterator[tuple[str | None, int | None]]:
        """``(scratch path, compressed size)`` of the file at ``path``, compressed into a
        scratch file that is removed afterwards; ``(None, None)`` when compression is off
        or not worth it."""
        if not self.compress:
            yield None, None
            return
        from redis_gocache.store.compress import compress_file

        zpath = scratch_for(path, "z-" + os.urandom(8).hex())
        zsize = compress_file(path, zpath, size)
        if zsize is None:
            yield None, None
            return
        try:
            yield zpath, zsize
        finally:
            try:
                os.unlink(zpath)
            except OSError:
                pass

    def _write_record(self, pipe: Any, akey: str, fields: dict[str, bytes | str | int]) -> None:
        pipe.delete(akey)
        pipe.hset(akey, mapping=fields)
        pipe.expire(akey, self.ttl)

    def refresh(self, items: Sequence[tuple[bytes, Entry]]) -> None:
        self._writing()
        with self._shard(), self.translate_errors():
            client = self.reader()
            for start in range(0, len(items), REFRESH_BATCH):
                pipe = client.pipeline(transaction=False)
                for action_id, entry in items[start:start + REFRESH_BATCH]:
                    pipe.expire(self.keys.action(action_id), self.ttl)
                    if entry.size > self.inline_max:
                        # Raw or compressed: the entry served does not say which.
                        pipe.expire(self.keys.blob(entry.output_id), self.ttl)
                        pipe.expire(self.keys.zblob(entry.output_id), self.ttl)
                pipe.execute()
        if self.spill is not None:
            for _, entry in items:
                if entry.size > self.inline_max:
                    self.spill.mark_used(entry.output_id)

    def read_manifest(self, tag: str) -> bytes | None:
        mkey = self.keys.manifest(tag)
        with self._shard(mkey), self.translate_errors():
            return self.reader().get(mkey)

    def write_manifest(self, tag: str, action_ids: bytes) -> None:
        self._writing()
        mkey = self.keys.manifest(tag)
        with self._shard(mkey), self.translate_errors():
            self.reader().set(mkey, action_ids, ex=self.ttl)

    def add_counters(self, counts: Mapping[str, int], paths: Mapping[str, int],
                     now: float) -> None:
        self._writing()
        # Imported here: only the end of a run (after the last answer) sends counters.
        from redis_gocache.store.counters import push

        with self._shard(), self.translate_errors():
            push(self.reader(), self.prefix, counts, paths, now)

    def ping(self) -> float:
        """Round-trip time of one PING, in seconds."""
        with self.translate_errors():
            client = self.client()
            start = time.perf_counter()
            client.ping()
            return time.perf_counter() - start

    def close(self) -> None:
        self.clients.close()


__all__ = ["RedisStore", "parse_record"]
