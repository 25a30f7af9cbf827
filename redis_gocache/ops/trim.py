"""Trimming the local directory: by last use, by age, optionally down to a size cap.

An output file's mtime is its last use, touched at most once per
:data:`~redis_gocache.store.disk.USE_MARK_INTERVAL` (an hour), and up to
:data:`~redis_gocache.store.disk.MARK_DELAY` (five minutes) after the use. So a file used a
moment ago may carry an mtime up to an hour and five minutes old, and "never remove a file
used in the last hour" means: never remove a file whose mtime is less than :data:`PROTECT`
(two hours) old.

A running ``go`` may still open a ``DiskPath`` it was handed, whatever its mtime says (a hit
on an old file is marked minutes later; a build can run for hours), and any number of helpers
may share the directory. So the outputs chosen by the rules above are removed only when no
running helper can have handed one out (:mod:`redis_gocache.store.shared`): at once when none
runs, else by a later trim, which first removes what an earlier one chose.

After outputs, the action log is rewritten without the records whose output is gone (a hit
needs both) and without the records later ones replace; then ``tmp/`` debris older than an
hour (a crashed helper's half-written file) is removed, and the markers of commands not run
within the age limit, with the answers kept for them (:mod:`redis_gocache.answers`). A helper
appending to the log while it is replaced appends its records again when it ends
(:meth:`DiskStore.close`).

The helper calls :func:`maybe_auto_trim` after its last answer: one ``stat`` of a marker
file when a trim is not due, a trim at most once per :data:`AUTO_INTERVAL`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator

from redis_gocache.store import shared
from redis_gocache.store.disk import (
    AUTO_TRIM_INTERVAL,
    USE_MARK_INTERVAL,
    auto_trim_due,
    replace_private,
    touch_private,
)
from redis_gocache.store.layout import (
    ACTION_LOG,
    COMMANDS,
    OUTPUTS,
    RECORD_SIZE,
    TMP,
    TRIM_MARKER,
    output_path,
    parse_record,
    read_action_log,
    record_output_hex,
)

PROTECT = USE_MARK_INTERVAL + 3600.0
"""Seconds since its mtime during which an output file is never removed (see above)."""

TMP_MAX_AGE = 3600.0
"""Seconds after which a file in ``tmp/`` is debris: no put or fetch takes that long."""

AUTO_INTERVAL = AUTO_TRIM_INTERVAL
"""Seconds between two automatic trims of one local directory."""

PENDING_RETRY = 600.0
"""Seconds after an automatic trim that left outputs to remove (helpers were running) until
the next one is due."""

MARKER = TRIM_MARKER
"""File in the local root whose mtime is the last trim's start."""


@dataclasses.dataclass
class TrimResult:
    """What a trim did (or, in a dry run, would do)."""

    outputs_removed: int = 0
    bytes_removed: int = 0
    actions_removed: int = 0
    tmp_removed: int = 0
    commands_removed: int = 0  # command markers, with their kept answers (m/<tag>)
    outputs_kept: int = 0
    bytes_kept: int = 0
    protected: int = 0  # kept because used within PROTECT, though old or over the cap
    outputs_pending: int = 0  # chosen, removed by a later pass: helpers were running

    def add(self, other: TrimResult) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _File:
    path: str
    mtime: float
    size: int
    identity: tuple[int, int]  # inode number and ctime (ns): which file, not only which name


Progress = Callable[[int], None]
"""Called with the number of entries just looked at."""


def _listing(base: str) -> Iterator[str]:
    """Paths of the files in ``base/<hh>/``."""
    try:
        subdirs = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return
    for sub in subdirs:
        if not sub.is_dir(follow_symlinks=False):
            continue
        try:
            with os.scandir(sub.path) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):
                        yield entry.path
        except OSError:
            continue


def count_entries(root: str) -> int:
    """Output files and action records under ``root`` (the length of a progress bar)."""
    return sum(1 for _ in _listing(os.path.join(root, OUTPUTS))) + len(
        read_action_log(os.path.join(root, ACTION_LOG)))


def _remove(path: str, dry_run: bool) -> bool:
    if dry_run:
        return True
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False  # Someone else trimmed it.
    except OSError:
        return False


def trim_root(
    root: str,
    *,
    max_age: float,
    max_size: int = 0,
    now: float | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> TrimResult:
    """Trim one local root (``<cache dir>/v1``): see the module docstring."""
    now = time.time() if now is None else now
    if dry_run:
        return _trim(root, max_age, max_size, now, dry_run, progress or (lambda n: None))
    try:
        lock = shared.lock_trim(root)
    except OSError:
        return TrimResult()  # A root we cannot lock is one we cannot write either.
    try:
        return _trim(root, max_age, max_size, now, dry_run, progress or (lambda n: None))
    finally:
        os.close(lock)


def _trim(root: str, max_age: float, max_size: int, now: float, dry_run: bool,
          step: Progress) -> TrimResult:
    result = TrimResult()
    gone: set[str] = set()
    generation, since, pending = shared.read_state(root)
    if pending and not dry_run and _evict(root, generation, since, pending, result, gone):
        pending = {}

    outputs: list[_File] = []
    for path in _listing(os.path.join(root, OUTPUTS)):
        step(1)
        try:
            st = os.stat(path)
        except OSError:
            continue
        outputs.append(_File(path, st.st_mtime, st.st_size, (st.st_ino, st.st_ctime_ns)))

    protected: set[str] = set()

    def removable(f: _File) -> bool:
        if now - f.mtime < PROTECT:
            protected.add(f.path)
            return False
        return True

    keep: list[_File] = []
    chosen: list[_File] = []
    for f in outputs:
        if not pending and now - f.mtime > max_age and removable(f):
            chosen.append(f)
            continue
        keep.append(f)

    if max_size and not pending:
        total = sum(f.size for f in keep)
        survivors: list[_File] = []
        for f in sorted(keep, key=lambda f: f.mtime):  # least recently used first
            if total > max_size and removable(f):
                chosen.append(f)
                total -= f.size
                continue
            survivors.append(f)
        keep = survivors
    result.protected = len(protected)

    if dry_run:
        result.outputs_removed = len(chosen)
        result.bytes_removed = sum(f.size for f in chosen)
        gone.update(os.path.basename(f.path) for f in chosen)
    elif chosen:
        # Removed only once no running helper can have handed one out (store/shared.py):
        # at once when none is running, else by a later pass.
        condemned = {os.path.basename(f.path): f.identity for f in chosen}
        try:
            shared.write_state(root, generation + 1, now, condemned)
        except OSError:
            condemned = {}
        if condemned and not _evict(root, generation + 1, now, condemned, result, gone):
            result.outputs_pending = len(condemned)
            keep.extend(chosen)
    if pending:
        result.outputs_pending = len(pending)
    result.outputs_kept = len(keep)
    result.bytes_kept = sum(f.size for f in keep)
    present = {os.path.basename(f.path) for f in keep} - gone

    _trim_log(root, present, gone, result, dry_run, step)

    tmp = os.path.join(root, TMP)
    for name in _names(tmp):
        path = os.path.join(tmp, name)
        if _older_than(path, now, TMP_MAX_AGE) and _remove(path, dry_run):
            result.tmp_removed += 1
    # A whole-file write killed halfway (the log's rewrite, the trim's state) leaves its
    # temporary file beside the target (store/disk.py replace_private).
    for name in _names(root):
        path = os.path.join(root, name)
        if name.endswith(".tmp") and _older_than(path, now, TMP_MAX_AGE) \
                and _remove(path, dry_run):
            result.tmp_removed += 1

    # A command not run within max_age loses its marker and kept answers (a few hundred KiB
    # each): its next run prefetches and keeps answers again. A stray temporary file of the
    # answers' own (a helper killed while writing one) goes after an hour.
    commands = os.path.join(root, COMMANDS)
    for name in _names(commands):
        path = os.path.join(commands, name)
        limit = TMP_MAX_AGE if name.endswith(".tmp") else max_age
        if _older_than(path, now, limit) and _remove(path, dry_run):
            result.commands_removed += 1
    return result


def _evict(root: str, generation: int, since: float, condemned: shared.Condemned,
           result: TrimResult, gone: set[str]) -> bool:
    """Remove the condemned outputs if no running helper can have handed one out; whether
    it did. One renamed into place again since it was chosen (another inode, or the number of
    the removed one reused, with a later ctime), or used since (mtime from ``since`` on),
    stays."""
    held = shared.quiesce(root, generation)
    if held is None:
        return False
    try:
        for oid, identity in condemned.items():
            path = output_path(root, oid)
            try:
                st = os.stat(path)
            except OSError:
                gone.add(oid)
                continue
            if (st.st_ino, st.st_ctime_ns) != identity or st.st_mtime >= since:
                continue
            if _remove(path, False):
                result.outputs_removed += 1
                result.bytes_removed += st.st_size
                gone.add(oid)
        shared.write_state(root, generation, since, {})
    except OSError:
        pass  # The state still names them: the next pass tries again.
    finally:
        shared.release(held)
    return True


def _names(directory: str) -> list[str]:
    """The entries of ``directory``; none if it cannot be listed (or is not there)."""
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _older_than(path: str, now: float, seconds: float) -> bool:
    try:
        return now - os.lstat(path).st_mtime > seconds
    except OSError:
        return False


def _trim_log(root: str, present: set[str], gone: set[str], result: TrimResult,
              dry_run: bool, step: Progress) -> None:
    """Rewrite the action log with the latest record of each action whose output is kept."""
    log = os.path.join(root, ACTION_LOG)
    try:
        size = os.stat(log).st_size
    except OSError:
        return
    kept: list[str] = []
    for line in read_action_log(log).values():
        step(1)
        oid = record_output_hex(line)
        if parse_record(line) is not None and oid not in gone and (
                oid in present or os.path.exists(output_path(root, oid))):
            kept.append(line)
        else:
            result.actions_removed += 1
    if dry_run or size == len(kept) * RECORD_SIZE:
        return  # Nothing to drop: no rewrite, so no window for a concurrent append to fall in.
    try:
        replace_private(log, "".join(kept).encode("ascii"))
    except OSError:
        pass  # The log stays as it was: the next trim tries again.


def roots(cache_dir: str) -> Iterable[str]:
    """The local roots present in ``cache_dir``: every trust level's, the verifying helpers'
    (``v1-verified-<tag>``) too. A helper trims only its own root, so the root of a key set
    no helper trusts any more (a rotation) is trimmed by this command alone."""
    from redis_gocache.ops.local import levels  # not on the helper's daily trim

    return levels(cache_dir)


def maybe_auto_trim(root: str, *, max_age: float, max_size: int = 0,
                    now: float | None = None) -> TrimResult | None:
    """Trim ``root`` if the last trim is :data:`AUTO_INTERVAL` old; ``None`` when not due.

    The marker is touched before trimming, so helpers ending together do not all trim.
    """
    now = time.time() if now is None else now
    if not auto_trim_due(root, now):
        return None
    marker = os.path.join(root, MARKER)
    try:
        touch_private(marker, now)
    except OSError:
        return None  # A directory we cannot mark is one we would trim on every run.
    result = trim_root(root, max_age=max_age, max_size=max_size, now=now)
    if result.outputs_pending:
        try:  # Other helpers were running: due again in PENDING_RETRY, not in a day.
            touch_private(marker, now - AUTO_INTERVAL + PENDING_RETRY)
        except OSError:
            pass
    return result
