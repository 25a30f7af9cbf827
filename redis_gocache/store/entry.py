"""The entry record every store agrees on (imported on the helper's start-up path)."""

from __future__ import annotations

from redis_gocache.value import FrozenValue


class Entry(FrozenValue):
    """What the cache records for one action: the output's SHA-256, its size, and when it was
    first put (nanoseconds since the epoch; never refreshed, since cmd/go expires test results
    by it). Frozen; equal and hashed by value.
    """

    __slots__ = ("output_id", "size", "time_ns")

    output_id: bytes
    size: int
    time_ns: int

    def __init__(self, output_id: bytes, size: int, time_ns: int) -> None:
        object.__setattr__(self, "output_id", output_id)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "time_ns", time_ns)
