"""Counters of one helper run, and how they are printed."""

from __future__ import annotations

import os
import time
from _thread import allocate_lock

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from typing import Any

COUNTERS = (
    "gets", "local_hits", "remote_hits", "misses", "get_errors", "hit_bytes",
    "remote_hit_bytes", "puts", "put_errors", "put_bytes", "uploads", "upload_errors",
    "upload_bytes", "refreshed", "prefetched", "trims", "trimmed_outputs", "trimmed_bytes",
)
"""The whole-number counters, in the order ``--stats-file`` and ``stats`` report them."""


class Stats:
    """What one helper did. Change fields only through :meth:`add`, :meth:`local_hit` and
    :meth:`reject`, which hold the lock: the reader thread, get workers and uploaders all
    count. (A plain class, not a dataclass: see :class:`redis_gocache.config.Config`.)"""

    __slots__ = (*COUNTERS, "remote_wait_seconds", "rejected", "started", "_lock")

    gets: int
    local_hits: int
    remote_hits: int
    misses: int
    get_errors: int
    hit_bytes: int
    remote_hit_bytes: int
    puts: int
    put_errors: int
    put_bytes: int
    uploads: int
    upload_errors: int
    upload_bytes: int
    refreshed: int
    prefetched: int
    trims: int  # the daily trim of the local directory, when this run made it
    trimmed_outputs: int
    trimmed_bytes: int
    remote_wait_seconds: float
    rejected: dict[str, int]
    started: float

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.remote_wait_seconds = 0.0
        self.rejected = {}
        self.started = time.monotonic()
        self._lock = allocate_lock()

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def local_hit(self, size: int) -> None:
        """Count a get served from the local directory: the hot path, so no keyword loop."""
        with self._lock:
            self.gets += 1
            self.local_hits += 1
            self.hit_bytes += size

    def reject(self, kind: str) -> None:
        with self._lock:
            self.rejected[kind] = self.rejected.get(kind, 0) + 1

    @property
    def hits(self) -> int:
        return self.local_hits + self.remote_hits

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
            out["rejected"] = dict(self.rejected)
        out["hits"] = self.hits
        out["rejected_total"] = sum(out["rejected"].values())
        out["seconds"] = round(time.monotonic() - self.started, 3)
        out["remote_wait_seconds"] = round(self.remote_wait_seconds, 3)
        # The helper's own CPU (every thread, user and system), what it costs a build's node:
        # cmd/go does not wait for its helper to exit, so a parent's rusage misses it.
        cpu = os.times()
        out["cpu_seconds"] = round(cpu.user + cpu.system, 3)
        return out

    def summary_line(self) -> str:
        """The ``--verbose`` line; its start is fixed so scripts can read it."""
        d = self.as_dict()
        line = (
            f"redis-gocache: {d['gets']} gets ({d['hits']} hits, {d['misses']} misses, "
            f"{d['get_errors']} errors); {d['puts']} puts ({d['put_errors']} errors); "
            f"hits {d['local_hits']} local, {d['remote_hits']} redis; "
            f"{_mb(d['hit_bytes'])} read, {_mb(d['put_bytes'])} written; "
            f"{d['uploads']} uploads ({d['upload_errors']} errors); "
            f"redis wait {d['remote_wait_seconds']:.2f}s; {d['seconds']:.2f}s total"
        )
        if d["rejected_total"]:
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(d["rejected"].items()))
            line += f"; rejected {d['rejected_total']} ({kinds})"
        return line

    def append_json(self, path: str) -> None:
        """Append the counters to ``path`` as one JSON line, in one ``write`` to a file opened
        for appending, so lines of helpers sharing the file never interleave."""
        import json

        line = (json.dumps(self.as_dict(), sort_keys=True) + "\n").encode("utf-8")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
