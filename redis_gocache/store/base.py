"""What every store agrees on: the entry record and the remote store protocol.

The entry record lives in :mod:`redis_gocache.store.entry`, which the helper's start-up path
imports; this module imports ``typing`` for the protocol, which that path avoids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from redis_gocache.store.entry import Entry

Sink = Callable[[bytes | memoryview], object]
"""Where a remote store streams a body: called with successive pieces, in order. A piece may
be a view of a buffer that is reused for the next one: a sink that keeps pieces copies them."""

Pending = Callable[[Sink], Entry | None]
"""The rest of a lookup whose record has arrived (see :meth:`RemoteStore.get_inline`): called
with a sink, it does what :meth:`RemoteStore.get` would do after reading the record."""


class RemoteStore(Protocol):
    """A shared store behind the local directory (Redis, or :class:`MemoryStore` in tests).

    Implementations raise :class:`~redis_gocache.exceptions.RemoteError` when the store
    cannot be reached or refuses a command, and
    :class:`~redis_gocache.exceptions.RejectedEntry` for an entry that is malformed. They
    check sizes; the caller checks the SHA-256 of what was streamed.
    """

    def get(self, action_id: bytes, sink: Sink) -> Entry | None:
        """Look ``action_id`` up; on a hit stream the body into ``sink`` and return its entry.
        ``None`` is a plain miss."""
        ...

    def get_inline(
        self, action_ids: Sequence[bytes]
    ) -> list[tuple[Entry, bytes] | Pending | None]:
        """Many records in one round trip, for the prefetcher. For each id: its entry and body
        when the record holds the body inline and passes the store's checks; else a
        :data:`Pending` that finishes the lookup from the record already read (a blob, a
        miss, a record to reject), or ``None``: ask :meth:`get`."""
        ...

    def put(self, action_id: bytes, entry: Entry, path: str) -> int:
        """Store ``entry`` for ``action_id``, its body read from the local file ``path``;
        the bytes the value takes as stored (compressed or not)."""
        ...

    def refresh(self, items: Sequence[tuple[bytes, Entry]]) -> None:
        """Extend the lifetime of these entries (and their blobs), which were served locally."""
        ...

    def read_manifest(self, tag: str) -> bytes | None:
        """The action ids a previous run of the same go command asked for (32 bytes each,
        concatenated), or ``None``. See :mod:`redis_gocache.prefetch`."""
        ...

    def write_manifest(self, tag: str, action_ids: bytes) -> None:
        """Record the action ids this run asked for, for the next new runner."""
        ...

    def add_counters(self, counts: Mapping[str, int], paths: Mapping[str, int],
                     now: float) -> None:
        """Add a run's fleet counters (and its runs per checkout path) to the namespace's
        statistics, as of the epoch time ``now`` (:mod:`redis_gocache.store.counters`)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ReaderPipeline(Protocol):
    """Commands queued, then sent in one round trip (``execute``): the part of redis-py's
    pipeline that prefetch batches, TTL refreshes and fleet counters use."""

    def hgetall(self, key: str) -> object: ...
    def hincrby(self, key: str, field: str, amount: int) -> object: ...
    def hset(self, key: str, field: str, value: int | str) -> object: ...
    def expire(self, key: str, seconds: int) -> object: ...
    def execute(self) -> list[Any]: ...


class Reader(Protocol):
    """The Redis client for reads and the end-of-run writes (:mod:`redis_gocache.store.clients`
    chooses it once): the light client (:mod:`redis_gocache.store.resp`) or redis-py's. Both
    raise errors that :mod:`redis_gocache.store.errors` translates alike."""

    def hgetall(self, key: str) -> dict[bytes, bytes]: ...
    def get(self, key: str) -> bytes | None: ...
    def strlen(self, key: str) -> int: ...
    def set(self, key: str, value: bytes, ex: int) -> None: ...
    def pipeline(self, transaction: bool = False) -> ReaderPipeline: ...

    def stream(self, command: Sequence[str], size: int, sink: Sink) -> int | None:
        """Send ``command`` (one bulk-string reply: ``GET``, ``GETRANGE``) and hand the reply
        to ``sink`` if it is ``size`` bytes long; its length, ``None`` for a nil reply."""
        ...

    def close(self) -> None: ...


__all__ = ["Entry", "Pending", "Reader", "ReaderPipeline", "RemoteStore", "Sink"]
