"""Fleet statistics: when the helper adds its run's counters to Redis, and the spool.

What the counters are in Redis (the ``s:`` hashes, their fields and lifetimes, the write and
the reads) is :mod:`redis_gocache.store.counters`'s; this module turns a run's
:class:`~redis_gocache.stats.Stats` into counters (:func:`counters`) and decides when they go.

When a helper pushes (:func:`end_of_run`, after its last answer):

* never when the run is read-only, has no Redis, or Redis is not writable this run (down,
  full, ``NOPERM``): then the counters wait in a local spool;
* a run that already talked to Redis (:attr:`Remote.used`) pushes its counters and the spool:
  one more round trip, after the last answer (through the store's light client where it
  serves, so a run that only read still never imports redis-py: :mod:`redis_gocache.store.resp`);
* a run served entirely from the local directory must not import redis-py just for this: it
  writes its counters to the spool (one small file) and pushes only when the last push is
  more than :data:`PUSH_INTERVAL` old (one ``stat`` to find out).

The push goes through the guard (:meth:`Remote.add_counters
<redis_gocache.remote.Remote.add_counters>`), as every other Redis call of the helper: a
failure is counted, said once and may trip the breaker like any write's, and the counters go
back to the spool.
"""

from __future__ import annotations

import os
import time

# As redis_gocache.wire: json.dumps(str) without importing the json package.
from _json import encode_basestring_ascii as _json_string

from redis_gocache.store.counters import COUNTERS, Counts
from redis_gocache.store.disk import open_private, touch_private

# The helper imports this module after every run, so it keeps to light imports: not
# typing's TYPE_CHECKING (see redis_gocache.config), and json only where a push reads the spool.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from redis_gocache.config import Config
    from redis_gocache.remote import Remote
    from redis_gocache.stats import Stats

PUSH_INTERVAL = 3600.0
"""A fully local run pushes the spool only when the last push is older than this (seconds)."""

SPOOL_MAX_FILES = 1000
"""Runs kept in the spool at most; beyond, counters are dropped (Redis has been away long)."""


def counters(stats: Mapping[str, Any]) -> Counts:
    """The integer counters of one run, from :meth:`Stats.as_dict`."""
    out: Counts = {"runs": 1}
    for name in COUNTERS:
        if name in ("runs", "redis_wait_ms", "rejected"):
            continue
        out[name] = int(stats.get(name, 0))
    out["rejected"] = int(stats.get("rejected_total", 0))
    out["redis_wait_ms"] = int(round(float(stats.get("remote_wait_seconds", 0.0)) * 1000))
    for kind, n in dict(stats.get("rejected", {})).items():
        out[f"rejected:{kind}"] = int(n)
    return out


def merge(into: Counts, more: Mapping[str, int]) -> Counts:
    """Add ``more`` to ``into``, field by field; returns ``into``."""
    for name, value in more.items():
        into[name] = into.get(name, 0) + int(value)
    return into


def checkout_root(cwd: str) -> str:
    """The nearest directory at or above ``cwd`` holding ``.git``, else ``cwd``."""
    path = cwd
    for _ in range(64):
        if os.path.exists(os.path.join(path, ".git")):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return cwd


# -- the spool: counters waiting for a push ---------------------------------------------


class Spool:
    """A directory of small JSON files, one per run that did not push.

    A pusher claims a file by renaming it (only one process can), so two helpers ending at
    once never count a run twice. ``pushed`` is a marker whose mtime is the last push.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.marker = os.path.join(path, "pushed")

    def add(self, counts: Counts, paths: Mapping[str, int]) -> None:
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            if len(os.listdir(self.path)) > SPOOL_MAX_FILES:
                return
            name = os.path.join(self.path, f"run-{os.getpid()}-{os.urandom(4).hex()}.json")
            tmp = name + ".tmp"
            with open_private(tmp) as f:
                f.write(_spool_json(counts, paths))
            os.replace(tmp, name)
        except OSError:
            pass  # Losing one run's counters is better than failing the run.

    def due(self, now: float) -> bool:
        """True when the last push is older than :data:`PUSH_INTERVAL` (or never happened)."""
        try:
            return now - os.stat(self.marker).st_mtime > PUSH_INTERVAL
        except OSError:
            return True

    def claim(self) -> list[str]:
        """Take every waiting file; returns the claimed paths."""
        claimed: list[str] = []
        try:
            names = os.listdir(self.path)
        except OSError:
            return claimed
        tag = f".claimed-{os.getpid()}"
        for name in names:
            if not (name.startswith("run-") and name.endswith(".json")):
                continue
            src = os.path.join(self.path, name)
            try:
                os.rename(src, src + tag)
            except OSError:
                continue  # Another helper took it.
            claimed.append(src + tag)
        return claimed

    @staticmethod
    def load(paths: Sequence[str]) -> tuple[Counts, dict[str, int]]:
        counts: Counts = {}
        runs: dict[str, int] = {}
        if not paths:
            return counts, runs  # the usual case, without importing json
        import json

        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                merge(counts, data["counts"])
                merge(runs, data["paths"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
        return counts, runs

    def done(self, paths: Iterable[str], now: float) -> None:
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            touch_private(self.marker, now)
        except OSError:
            pass

    def give_back(self, paths: Iterable[str]) -> None:
        for path in paths:
            try:
                os.rename(path, path.rpartition(".claimed-")[0])
            except OSError:
                pass


def _spool_json(counts: Mapping[str, int], paths: Mapping[str, int]) -> str:
    """``json.dumps({"counts": counts, "paths": paths})`` for these two flat maps of
    whole numbers, written out to keep the json package off a local run's end."""
    def flat(mapping: Mapping[str, int]) -> str:
        return ",".join(f"{_json_string(key)}:{int(value)}" for key, value in mapping.items())

    return f'{{"counts":{{{flat(counts)}}},"paths":{{{flat(paths)}}}}}'


def spool_for(config: Config) -> Spool:
    from redis_gocache.tags import server_tag

    tag = server_tag(config.redis_url or "", config.prefix)
    return Spool(os.path.join(config.cache_dir, f"stats-{tag}"))


def end_of_run(config: Config, remote: Remote | None, stats: Stats,
               log: Callable[[str], None]) -> None:
    """The helper's fleet-statistics step, after its last answer (rules: module docstring)."""
    if config.read_only or config.no_fleet_stats or remote is None or not config.redis_url:
        return
    counts = counters(stats.as_dict())
    if not counts.get("gets") and not counts.get("puts"):
        return  # `go env` and friends: nothing worth counting.
    paths = {checkout_root(os.getcwd()): 1}
    spool = spool_for(config)
    now = time.time()
    talked = remote.used
    if not remote.writable or not (talked or spool.due(now)):
        spool.add(counts, paths)
        return
    claimed = spool.claim()
    waiting, waiting_paths = Spool.load(claimed)
    merge(counts, waiting)
    merge(paths, waiting_paths)
    # Through the guard, as every Redis call of the helper: a failure is handled like any
    # write's (counted, said once, the breaker), and the counters wait in the spool.
    if not remote.add_counters(counts, paths, now):
        spool.give_back(claimed)
        spool.add(counters(stats.as_dict()), {checkout_root(os.getcwd()): 1})
        if config.verbose:
            log(f"fleet statistics not sent: Redis did not take them; kept in {spool.path}")
        return
    spool.done(claimed, now)
