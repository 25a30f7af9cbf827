"""The fleet statistics in Redis: their hashes' fields, lifetimes, the write and the reads.

Every helper adds its run's counters to hashes of its namespace (the key names are
:mod:`~redis_gocache.store.keys`'s, so the cache's ACL pattern covers them):

* ``s:totals``: the counters since the namespace was first used; TTL :data:`TOTALS_TTL`,
  pushed out by every push, plus the field :data:`UPDATED` (epoch seconds of the last push).
* ``s:day:<YYYY-MM-DD>`` (UTC): the same counters for one day; TTL :data:`DAY_TTL`.
* ``s:paths:<YYYY-MM-DD>``: runs per checkout directory, so ``doctor`` can tell when runners
  build at different paths, which defeats sharing; TTL :data:`PATHS_TTL`.

One push (:func:`push`) is one pipelined round trip of ``HINCRBY`` (non-zero counters only),
``HSET`` and ``EXPIRE``. The helper sends it through its store
(:meth:`RedisStore.add_counters <redis_gocache.store.redis.RedisStore.add_counters>`, guarded
by :meth:`Remote.add_counters <redis_gocache.remote.Remote.add_counters>`); when and what it
pushes is :mod:`redis_gocache.ops.fleet`'s. The reads serve ``stats``, ``doctor`` and the
exporter.

The helper imports this module after its last answer, so it keeps to light imports: not
typing's ``TYPE_CHECKING`` (see :mod:`redis_gocache.config`).
"""

from __future__ import annotations

import time

from redis_gocache.store.keys import Keys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

TOTALS_TTL = 400 * 86400
"""Seconds the totals live after the last push: a namespace idle for over a year is gone."""

DAY_TTL = 35 * 86400
"""Seconds a per-day hash lives: ``stats --days`` can look back a month."""

PATHS_TTL = 8 * 86400
"""Seconds a per-day checkout-path hash lives."""

UPDATED = "updated"
"""Field of the totals and per-day hashes: epoch seconds of the last push."""

COUNTERS = (
    "runs", "gets", "hits", "local_hits", "remote_hits", "misses", "get_errors", "rejected",
    "puts", "put_errors", "hit_bytes", "remote_hit_bytes", "put_bytes", "uploads",
    "upload_errors", "upload_bytes", "refreshed", "redis_wait_ms", "prefetched", "trims",
    "trimmed_outputs", "trimmed_bytes",
)
"""Fields of the totals and per-day hashes, all integers (``rejected:<kind>`` fields too)."""

Counts = dict[str, int]


def day(now: float) -> str:
    """The UTC day of the epoch time ``now``, as the per-day keys name it (``YYYY-MM-DD``)."""
    return time.strftime("%Y-%m-%d", time.gmtime(now))


def push(client: Any, prefix: str, counts: Mapping[str, int],
         paths: Mapping[str, int] | None = None, now: float | None = None) -> None:
    """Add ``counts`` (and runs per checkout path) to the namespace's hashes: one round trip.

    ``client`` is the store's reader (the light client or redis-py's) or any redis-py client;
    its errors are its own, for the caller to translate (the helper's go through
    :meth:`RedisStore.add_counters <redis_gocache.store.redis.RedisStore.add_counters>`)."""
    now = time.time() if now is None else now
    keys = Keys(prefix)
    totals, today = keys.stats_totals(), keys.stats_day(day(now))
    pipe = client.pipeline(transaction=False)
    for key, ttl in ((totals, TOTALS_TTL), (today, DAY_TTL)):
        for name, value in counts.items():
            if value:
                pipe.hincrby(key, name, value)
        pipe.hset(key, UPDATED, int(now))
        pipe.expire(key, ttl)
    if paths:
        pkey = keys.stats_paths(day(now))
        for path, runs in paths.items():
            pipe.hincrby(pkey, path, runs)
        pipe.expire(pkey, PATHS_TTL)
    pipe.execute()


def _ints(raw: Mapping[bytes, bytes]) -> Counts:
    out: Counts = {}
    for k, v in raw.items():
        try:
            out[k.decode("utf-8", "replace")] = int(v)
        except ValueError:
            continue
    return out


def read(client: Any, prefix: str, days: int = 0, now: float | None = None
         ) -> tuple[Counts, dict[str, Counts]]:
    """The namespace's totals and its last ``days`` per-day hashes (newest first)."""
    now = time.time() if now is None else now
    names = [day(now - i * 86400) for i in range(days)]
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.stats_totals())
    for name in names:
        pipe.hgetall(keys.stats_day(name))
    replies = pipe.execute()
    per_day = {name: _ints(raw) for name, raw in zip(names, replies[1:], strict=True) if raw}
    return _ints(replies[0]), per_day


def read_paths(client: Any, prefix: str, days: int = 2, now: float | None = None
               ) -> dict[str, int]:
    """Runs per checkout path over the last ``days`` days."""
    now = time.time() if now is None else now
    keys = Keys(prefix)
    pipe = client.pipeline(transaction=False)
    for i in range(days):
        pipe.hgetall(keys.stats_paths(day(now - i * 86400)))
    out: dict[str, int] = {}
    for raw in pipe.execute():
        for path, runs in _ints(raw).items():
            out[path] = out.get(path, 0) + runs
    return out
