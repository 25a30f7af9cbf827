"""Counters of one helper run, and how they are printed."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any


@dataclasses.dataclass
class Stats:
    """What one helper did. Change fields only through :meth:`add` and :meth:`reject`, which
    hold the lock: the reader thread, get workers and uploaders all count."""

    gets: int = 0
    local_hits: int = 0
    remote_hits: int = 0
    misses: int = 0
    get_errors: int = 0
    hit_bytes: int = 0
    remote_hit_bytes: int = 0
    puts: int = 0
    put_errors: int = 0
    put_bytes: int = 0
    uploads: int = 0
    upload_errors: int = 0
    upload_bytes: int = 0
    refreshed: int = 0
    prefetched: int = 0
    remote_wait_seconds: float = 0.0
    rejected: dict[str, int] = dataclasses.field(default_factory=dict)
    started: float = dataclasses.field(default_factory=time.monotonic)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

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
            out: dict[str, Any] = {
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if not f.name.startswith("_") and f.name != "started"
            }
            out["rejected"] = dict(self.rejected)
        out["hits"] = self.hits
        out["rejected_total"] = sum(out["rejected"].values())
        out["seconds"] = round(time.monotonic() - self.started, 3)
        out["remote_wait_seconds"] = round(self.remote_wait_seconds, 3)
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
        """Append the counters to ``path`` as one JSON line."""
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(self.as_dict(), sort_keys=True) + "\n")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
