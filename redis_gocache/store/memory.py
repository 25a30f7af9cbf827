"""An in-memory remote store: the test double for :class:`~redis_gocache.store.redis.RedisStore`.

It follows the same record rules (inline bodies up to ``inline_max``, shared blobs above it,
sizes checked) so the server can be tested without Redis, and it can be told to fail like a
Redis that is down.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence

from redis_gocache.exceptions import RejectedEntry, RemoteError
from redis_gocache.store.base import Entry, Pending, Sink


class MemoryStore:
    """A :class:`~redis_gocache.store.base.RemoteStore` in a dict.

    ``records`` maps action ids to ``(entry, inline body or None)``; ``blobs`` maps output ids
    to bodies; ``counters`` and ``paths`` sum the fleet counters added. Set ``fail`` to an
    exception to make every call raise it.
    """

    def __init__(self, inline_max: int = 128 * 1024) -> None:
        self.inline_max = inline_max
        self.records: dict[bytes, tuple[Entry, bytes | None]] = {}
        self.blobs: dict[bytes, bytes] = {}
        self.refreshed: list[bytes] = []
        self.manifests: dict[str, bytes] = {}
        self.counters: dict[str, int] = {}  # the fleet counters added, summed
        self.paths: dict[str, int] = {}  # runs per checkout path, summed
        self.fail: RemoteError | None = None
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail

    def get(self, action_id: bytes, sink: Sink) -> Entry | None:
        with self._lock:
            record = self.records.get(action_id)
        return self._serve(record, sink)

    def _serve(self, record: tuple[Entry, bytes | None] | None, sink: Sink) -> Entry | None:
        self._check()
        if record is None:
            return None
        entry, body = record
        with self._lock:
            if body is None:
                body = self.blobs.get(entry.output_id)
                if body is None:
                    raise RejectedEntry("missing_blob")
        if len(body) != entry.size:
            raise RejectedEntry("truncated")
        if body:
            sink(body)
        return entry

    def get_inline(
        self, action_ids: Sequence[bytes]
    ) -> list[tuple[Entry, bytes] | Pending | None]:
        self._check()
        found: list[tuple[Entry, bytes] | Pending | None] = []
        with self._lock:
            for action_id in action_ids:
                record = self.records.get(action_id)
                if record is not None and record[1] is not None \
                        and len(record[1]) == record[0].size:
                    found.append((record[0], record[1]))
                else:  # as RedisStore does: the rest of the lookup from this record
                    found.append(functools.partial(self._serve, record))
        return found

    def put(self, action_id: bytes, entry: Entry, path: str) -> int:
        self._check()
        with open(path, "rb") as f:
            body = f.read()
        with self._lock:
            if entry.size <= self.inline_max:
                self.records[action_id] = (entry, body)
            else:
                self.blobs[entry.output_id] = body
                self.records[action_id] = (entry, None)
        return len(body)  # stored as it is

    def refresh(self, items: Sequence[tuple[bytes, Entry]]) -> None:
        self._check()
        with self._lock:
            self.refreshed.extend(action_id for action_id, _ in items)

    def read_manifest(self, tag: str) -> bytes | None:
        self._check()
        return self.manifests.get(tag)

    def write_manifest(self, tag: str, action_ids: bytes) -> None:
        self._check()
        self.manifests[tag] = action_ids

    def add_counters(self, counts: Mapping[str, int], paths: Mapping[str, int],
                     now: float) -> None:
        self._check()
        with self._lock:
            for into, more in ((self.counters, counts), (self.paths, paths)):
                for name, value in more.items():
                    into[name] = into.get(name, 0) + value

    def close(self) -> None:
        pass
