"""The entry record every store agrees on (imported on the helper's start-up path)."""

from __future__ import annotations


class Entry:
    """What the cache records for one action: the output's SHA-256, its size, and when it was
    first put (nanoseconds since the epoch; never refreshed, since cmd/go expires test results
    by it). Frozen; equal and hashed by value.

    A plain class rather than a dataclass: see :class:`redis_gocache.config.Config`.
    """

    __slots__ = ("output_id", "size", "time_ns")

    output_id: bytes
    size: int
    time_ns: int

    def __init__(self, output_id: bytes, size: int, time_ns: int) -> None:
        object.__setattr__(self, "output_id", output_id)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "time_ns", time_ns)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Entry is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Entry is frozen: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return (self.output_id, self.size, self.time_ns) == (
            other.output_id, other.size, other.time_ns)

    def __hash__(self) -> int:
        return hash((self.output_id, self.size, self.time_ns))

    def __repr__(self) -> str:
        return f"Entry(output_id={self.output_id!r}, size={self.size!r}, time_ns={self.time_ns!r})"
