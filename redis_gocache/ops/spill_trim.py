"""Trimming the shared spill directory (``redis-gocache trim --spill``).

A spill file's mtime is its last reference: a writer that puts it (or finds it there), a
reader that fetches it and a helper refreshing an entry it served locally all touch it, at most
once per :data:`~redis_gocache.store.spill.USE_MARK_INTERVAL`. Its Redis records expire one TTL
after their last put or refresh; so a file unmarked for longer than the TTL (plus the hour a
mark may lag) is referenced by no live record, and goes.

Safe while builds run on other runners: no file marked within :data:`PROTECT` is removed
whatever the age asked for, each file's mtime is read again right before it is unlinked (a
reader may just have marked it), and a reader that loses a file anyway only misses: what Go
uses is the reader's own local copy. Several trims at once are fine; a file one of them removed
is skipped by the others.
"""

from __future__ import annotations

import os
import time

from redis_gocache.ops.trim import PROTECT, TMP_MAX_AGE, Progress, TrimResult
from redis_gocache.store.layout import OUTPUTS, TMP, is_hex_id
from redis_gocache.store.spill import USE_MARK_INTERVAL, ZOUTPUTS


def trim_spill(
    root: str,
    *,
    max_age: float,
    now: float | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> TrimResult:
    """Remove spill files under ``root`` unmarked for ``max_age`` seconds (plus the hour a
    mark may lag; never fewer than :data:`PROTECT`), and ``tmp/`` debris over an hour old."""
    now = time.time() if now is None else now
    limit = max(max_age + USE_MARK_INTERVAL, PROTECT)
    step = progress or (lambda n: None)
    result = TrimResult()
    subdirs = []
    for top in (OUTPUTS, ZOUTPUTS):  # raw and compressed outputs, one layout
        objects = os.path.join(root, top)
        try:
            subdirs += sorted((objects, e.name) for e in os.scandir(objects)
                              if _is_prefix_dir(e))
        except OSError:
            pass
    for objects, hh in subdirs:
        try:
            entries = list(os.scandir(os.path.join(objects, hh)))
        except OSError:
            continue
        for entry in entries:
            step(1)
            # Only what a helper writes is ours to remove: <hh>/<64 hex>, a regular file.
            if not (is_hex_id(entry.name) and entry.name[:2] == hh
                    and entry.is_file(follow_symlinks=False)):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if now - st.st_mtime <= limit:
                result.outputs_kept += 1
                result.bytes_kept += st.st_size
                if now - st.st_mtime > max_age:
                    result.protected += 1
                continue
            if _remove_if_still_old(entry.path, now, limit, dry_run):
                result.outputs_removed += 1
                result.bytes_removed += st.st_size
            else:
                result.outputs_kept += 1
                result.bytes_kept += st.st_size
    tmp = os.path.join(root, TMP)
    try:
        names = os.listdir(tmp)
    except OSError:
        names = []
    for name in names:
        path = os.path.join(tmp, name)
        if _remove_if_still_old(path, now, TMP_MAX_AGE, dry_run):
            result.tmp_removed += 1
    return result


def _is_prefix_dir(entry: os.DirEntry[str]) -> bool:
    return (len(entry.name) == 2 and all(c in "0123456789abcdef" for c in entry.name)
            and entry.is_dir(follow_symlinks=False))


def _remove_if_still_old(path: str, now: float, limit: float, dry_run: bool) -> bool:
    """Unlink ``path`` if its mtime, read again now, is still over ``limit`` seconds old."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if now - st.st_mtime <= limit:
        return False  # Marked since we listed it.
    if dry_run:
        return True
    try:
        os.unlink(path)
    except OSError:
        return False  # Someone else trimmed it, or the volume is read-only here.
    return True


__all__ = ["trim_spill"]
