"""Deleting one namespace: ``SCAN MATCH <prefix>*`` and ``UNLINK`` in batches, never ``KEYS``.

Only keys of the cache's own shapes under exactly the prefix are deleted (see
:func:`redis_gocache.store.keys.belongs`): another namespace nested under this one
(``gocache:team2:`` under ``gocache:``) and foreign keys that merely share the prefix stay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from redis_gocache.ops.common import BATCH, SCAN_COUNT
from redis_gocache.store.keys import Keys, belongs


@dataclasses.dataclass
class FlushResult:
    matched: int = 0  # cache keys under the prefix
    deleted: int = 0  # of those, removed by this run (some may have expired meanwhile)
    foreign: int = 0  # keys starting with the prefix that are not the cache's
    by_kind: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def scan_namespace(client: Any, prefix: str) -> Iterator[tuple[bytes, str | None]]:
    """Every key starting with ``prefix``, with its kind (``None``: not a cache key)."""
    if not prefix:
        raise ValueError("refusing to scan an empty prefix: that is the whole database")
    # SCAN may return a key twice while the table is rehashed: counts can be a little high,
    # and a second UNLINK of a key is harmless. Remembering every key would not be.
    for key in client.scan_iter(match=Keys(prefix).pattern(), count=SCAN_COUNT):
        yield key, belongs(key, prefix)


def count(client: Any, prefix: str) -> FlushResult:
    """What a flush of ``prefix`` would delete (one full ``SCAN`` of the namespace)."""
    result = FlushResult()
    for _, kind in scan_namespace(client, prefix):
        if kind is None:
            result.foreign += 1
        else:
            result.matched += 1
            result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
    return result


def flush(client: Any, prefix: str, progress: Callable[[int], None] | None = None
          ) -> FlushResult:
    """Delete the namespace's keys; ``progress`` is called with each batch's size."""
    result = FlushResult()
    batch: list[bytes] = []

    def unlink() -> None:
        if batch:
            result.deleted += int(client.unlink(*batch))
            if progress is not None:
                progress(len(batch))
            batch.clear()

    for key, kind in scan_namespace(client, prefix):
        if kind is None:
            result.foreign += 1
            continue
        result.matched += 1
        result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
        batch.append(key)
        if len(batch) >= BATCH:
            unlink()
    unlink()
    return result
