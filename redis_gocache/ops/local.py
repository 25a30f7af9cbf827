"""The local directory for operators: its size and entries (``stats``), clearing it (``clear``,
as ``ccache -C``) and zeroing this runner's counters (``zero``, as ``ccache -z``).

The layout is :mod:`redis_gocache.store.layout`'s, the trust levels' directories too
(:func:`~redis_gocache.store.layout.is_level_name`; docs/design.md, "Local directory").
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator

from redis_gocache.store.layout import ACTION_LOG, OUTPUTS, is_level_name, read_action_log

SPOOL_PREFIX = "stats-"
"""Directories of fleet counters waiting to be sent (:class:`redis_gocache.ops.fleet.Spool`)."""


@dataclasses.dataclass
class LocalUsage:
    """What one trust level's directory holds."""

    root: str
    outputs: int = 0
    bytes: int = 0
    actions: int = 0


def levels(cache_dir: str) -> list[str]:
    """The trust levels' directories present under ``cache_dir``."""
    try:
        names = sorted(os.listdir(cache_dir))
    except OSError:
        return []
    return [os.path.join(cache_dir, n) for n in names
            if is_level_name(n) and os.path.isdir(os.path.join(cache_dir, n))]


def _files(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    yield from _files(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield entry
    except OSError:
        return


def usage(cache_dir: str) -> list[LocalUsage]:
    """Outputs, their bytes and action records, per trust level."""
    found = []
    for root in levels(cache_dir):
        use = LocalUsage(root)
        for entry in _files(os.path.join(root, OUTPUTS)):
            try:
                use.bytes += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            use.outputs += 1
        use.actions = len(read_action_log(os.path.join(root, ACTION_LOG)))
        found.append(use)
    return found


def clear(cache_dir: str, dry_run: bool = False) -> tuple[int, int]:
    """Remove every trust level's directory (outputs, action logs, kept answers); returns the
    files and bytes removed (or that would be). Breaker files and counters stay."""
    files = size = 0
    for root in levels(cache_dir):
        for entry in _files(root):
            files += 1
            try:
                size += entry.stat(follow_symlinks=False).st_size
            except OSError:
                pass
        if not dry_run:
            shutil.rmtree(root, ignore_errors=True)
    return files, size


def counter_files(cache_dir: str, stats_file: str | None) -> list[str]:
    """This runner's counters: the runs waiting in the fleet spools, and ``--stats-file``."""
    paths = []
    try:
        names = sorted(os.listdir(cache_dir))
    except OSError:
        names = []
    for name in names:
        if name.startswith(SPOOL_PREFIX):
            spool = os.path.join(cache_dir, name)
            paths += [e.path for e in _files(spool) if e.name.startswith("run-")]
    if stats_file and os.path.isfile(stats_file) and os.path.getsize(stats_file):
        paths.append(stats_file)
    return paths


def zero(paths: list[str]) -> int:
    """Remove the spooled runs and empty the stats file; returns how many files were changed."""
    done = 0
    for path in paths:
        try:
            if os.path.basename(path).startswith("run-"):
                os.unlink(path)
            else:
                with open(path, "w", encoding="utf-8"):
                    pass  # emptied, kept: something may be appending to it
            done += 1
        except OSError:
            continue
    return done
