"""The local directory: materialized outputs and a log of actions, on disk.

The layout under the store's root and the action log's record format are
:mod:`redis_gocache.store.layout`'s; this module reads and writes them.

Output files are written under ``tmp/`` and renamed into place, so a reader (this helper,
another helper on the same host, or cmd/go) never sees a partial file, and a crash leaves only
debris in ``tmp/``. Any number of helpers may share the directory (docs/design.md, "Sharing
one local directory"); a helper's :meth:`DiskStore.join` keeps the trim off what it hands out.
Outputs are verified (SHA-256 and size) before they are renamed into ``o/``; a local hit is
served without hashing, as Go's own cache does.

The action log replaces a file per action: a new runner fetching a thousand entries would
otherwise create (and rename) a thousand small files beside the outputs, and a warm runner
would open one per get. A record is appended (``O_APPEND``, one ``write`` per record, so
helpers sharing the directory do not interleave) only after its output is in place; the
helper reads the log once, at its first lookup, into a dict, and later records for an action
replace earlier ones. A record has a fixed width, so a line torn by a crash or a full disk is
recognised by its length and skipped. The trim
(:mod:`redis_gocache.ops.trim`) rewrites the log without the records of removed outputs and
without the records later ones replace.

An output file's mtime is its last use, touched at most once an hour, for trimming. The
``stat`` that decides it is not made on the hit: the hit queues it (:meth:`DiskStore.mark_soon`)
and a thread that sleeps between rounds makes the queued ones at most :data:`MARK_DELAY`
later, or the helper after its last answer. A ``stat`` per hit, even after the answer, cost a
warm ``go build std`` about 12 ms (docs/design.md, "The warm path").
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock, start_new_thread

from redis_gocache.exceptions import LocalStoreError
from redis_gocache.store.entry import Entry
from redis_gocache.store.layout import (
    ACTION_LOG,
    OUTPUTS,
    TMP,
    TRIM_MARKER,
    format_record,
    output_path,
    parse_record,
    read_action_log,
    record_output_hex,
)
from redis_gocache.store.shared import Condemned, Registration, placing

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from _thread import LockType
    from typing import IO

USE_MARK_INTERVAL = 3600.0
"""Seconds between two updates of an output file's mtime; a coarse mark is enough for trimming
and saves a syscall on nearly every hit."""

MARK_DELAY = 300.0
"""Longest a queued use mark waits (seconds). The trim never removes a file marked within
``USE_MARK_INTERVAL + MARK_DELAY`` (its ``PROTECT`` is larger); that a file a running ``go``
was handed stays while that ``go`` may still open it does not rest on the marks, but on the
helpers' registration (:mod:`redis_gocache.store.shared`)."""

_HASH_CHUNK = 1 << 20

# Read-write, so a kernel-side copy (clone_from) can be hashed back.
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

AUTO_TRIM_INTERVAL = 86400.0
"""Seconds between two automatic trims of one local directory."""


class HashingWriter:
    """Writes pieces to a file descriptor, hashing and counting them.

    A write error (disk full) is remembered, not raised, so the caller can keep consuming the
    input stream and answer the request afterwards.
    """

    __slots__ = ("fd", "size", "error", "_hash")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self.error: OSError | None = None
        # Imported here: hashlib loads OpenSSL (milliseconds), and a warm run never writes.
        import hashlib

        self._hash = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> None:
        if self.error is not None:
            return
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:
            self.error = exc

    def digest(self) -> bytes:
        return self._hash.digest()

    def clone_from(self, src_fd: int, size: int) -> bytes | None:
        """Fill the (still empty) file from ``src_fd`` in the kernel, a reflink where the
        filesystem offers one, then hash what landed here. Returns the SHA-256, or ``None``
        when the caller should stream the body instead. Used for spill-directory reads."""
        if self.size or self.error is not None:
            return None
        import hashlib

        from redis_gocache.store.spill import copy_fd

        digest = hashlib.sha256()
        try:
            copy_fd(src_fd, self.fd, size)
            done = 0
            while done < size:
                # Hash our private copy, not the shared file another writer could change.
                piece = os.pread(self.fd, _HASH_CHUNK, done)
                if not piece:
                    break
                digest.update(piece)
                done += len(piece)
        except OSError:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                return None
            return None
        self._hash, self.size = digest, done
        return digest.digest()


class DiskStore:
    """Content-addressed outputs and an action log in one local directory.

    Safe to use from several threads: the index is a dict (read and replaced under the GIL),
    and each record is appended with a single ``write``.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.tmp_dir = os.path.join(root, TMP)
        self.log_path = os.path.join(root, ACTION_LOG)
        self._dirs_made: set[str] = set()
        self._index: dict[str, str] | None = None
        self._load_lock = allocate_lock()
        self._log_lock = allocate_lock()
        self._log_fd: int | None = None
        self._log_ino = 0
        self._appended: list[bytes] = []  # this process's records, in case the log is replaced
        self._marks: list[str] = []  # outputs to mark used (mark_soon)
        self._marker: LockType | None = None  # held while the marking thread should go on
        self.mark_delay = MARK_DELAY
        self.condemned: Condemned = {}  # outputs a trim waits to remove (store/shared.py)
        self._registration: Registration | None = None

    def open(self) -> DiskStore:
        """Create the directory (mode 0700) if needed.

        A new directory gets its trim marker at once: it has nothing to trim for a day, and
        a new runner's first helper would otherwise trim right after its last answer, on the
        CPU of whatever the job runs next."""
        try:
            fresh = not os.path.isdir(self.root)
            # makedirs applies its mode to the last component only: make each level ourselves.
            for path in (self.root, self.tmp_dir, os.path.join(self.root, OUTPUTS)):
                os.makedirs(path, mode=0o700, exist_ok=True)
            if fresh:
                touch_private(os.path.join(self.root, TRIM_MARKER))
        except OSError as exc:
            raise LocalStoreError(f"cannot create cache directory {self.root}: {exc}") from None
        return self

    def join(self) -> DiskStore:
        """Take this helper's place among the helpers sharing the directory
        (:mod:`redis_gocache.store.shared`): from now until :meth:`leave`, no trim removes an
        output it may hand out. Raises LocalStoreError."""
        if self._registration is None:
            registration = Registration(self.root)
            self.condemned = registration.join()
            self._registration = registration
        return self

    def leave(self) -> None:
        """The ``go`` command has ended: trims may remove what this helper handed out."""
        registration, self._registration = self._registration, None
        if registration is not None:
            registration.leave()

    def output_path(self, output_hex: str) -> str:
        """Where the output ``output_hex`` lives (:func:`.layout.output_path`)."""
        return output_path(self.root, output_hex)

    # -- the action log -----------------------------------------------------------------

    def index(self) -> dict[str, str]:
        """Action hex -> its latest record line (:func:`~redis_gocache.store.layout.parse_fields`
        reads one), loaded from
        the log on first use; shared, not a copy. The reader's fast path for local hits
        (:mod:`redis_gocache.server`) reads it directly; only this class writes it."""
        index = self._index
        if index is None:
            with self._load_lock:
                if self._index is None:
                    loaded = read_action_log(self.log_path)
                    if self.condemned:
                        # Not handed out from here: a trim may be removing them (commit).
                        gone = self.condemned
                        loaded = {a: line for a, line in loaded.items()
                                  if record_output_hex(line) not in gone}
                    self._index = loaded
                index = self._index
        return index

    def has(self, action_hex: str) -> bool:
        """Whether the log holds a record for this action (its output may still be gone)."""
        return action_hex in self.index()

    def lookup(self, action_hex: str) -> tuple[Entry, str, float] | None:
        """The entry of a recorded action, the path of its output file, and the time its
        Redis TTL was last refreshed; ``None`` when there is no well-formed record.

        The output file is not looked at: a record is written only once its output is in
        place, and cmd/go checks the size of every file it is handed (a file that has gone
        becomes its miss, and it builds and puts again). The caller marks the use with
        :meth:`mark_soon` after answering.
        """
        line = self.index().get(action_hex)
        if line is None:
            return None
        record = parse_record(line)
        if record is None:
            return None
        entry, refreshed = record
        return entry, self.output_path(record_output_hex(line)), refreshed

    @staticmethod
    def mark_used(path: str) -> None:
        """Set an output's mtime, its last use for the trim, unless it was set within
        :data:`USE_MARK_INTERVAL`."""
        try:
            if time.time() - os.stat(path).st_mtime > USE_MARK_INTERVAL:
                os.utime(path)
        except OSError:
            pass  # A file we cannot mark is not worth failing anything for.

    def mark_soon(self, path: str) -> None:
        """Queue :meth:`mark_used` for ``path``: done within :attr:`mark_delay` seconds by a
        thread, or by :meth:`flush_marks`, whichever comes first."""
        self.mark_queue().append(path)

    def mark_queue(self) -> list[str]:
        """The queue behind :meth:`mark_soon`, for a caller that appends to it in a loop; the
        thread that works it off is running once this returns."""
        if self._marker is None:
            self._marker = allocate_lock()
            self._marker.acquire()
            start_new_thread(self._mark_loop, (self._marker,))
        return self._marks

    def _mark_loop(self, running: LockType) -> None:
        # Sleeps on the lock: close() releases it, and the thread ends at once.
        while not running.acquire(timeout=self.mark_delay):
            self.flush_marks()
        running.release()

    def flush_marks(self) -> None:
        """Make the queued use marks now (the marking thread, or the helper after its last
        answer, before a trim goes by them)."""
        marks = self._marks
        while marks:
            self.mark_used(marks.pop())  # pop, not a swap: safe against a concurrent append

    def write_action(self, action_hex: str, entry: Entry, refreshed: float | None = None) -> None:
        """Record an action whose output is in place (``refreshed``: now by default)."""
        line = format_record(action_hex, entry, time.time() if refreshed is None else refreshed)
        self.index()[action_hex] = line
        self._append(line.encode("ascii"))

    def mark_refreshed(self, action_hexes: list[str]) -> None:
        """Record that these actions' Redis TTLs were just refreshed: one write for all."""
        index = self.index()
        now = time.time()
        lines: list[str] = []
        for action_hex in action_hexes:
            record = parse_record(index.get(action_hex, ""))
            if record is not None:
                line = format_record(action_hex, record[0], now)
                index[action_hex] = line
                lines.append(line)
        if lines:
            self._append("".join(lines).encode("ascii"))

    def _append(self, data: bytes) -> None:
        # A record that cannot be written costs the next run a refetch, not this run its
        # answer: the output is in place and the in-memory index already has the record.
        try:
            fd = self._log_fd
            if fd is None:
                with self._log_lock:
                    if self._log_fd is None:
                        self._log_fd = os.open(self.log_path, _LOG_FLAGS, 0o600)
                        self._log_ino = os.fstat(self._log_fd).st_ino
                    fd = self._log_fd
            os.write(fd, data)
        except OSError:
            return
        self._appended.append(data)

    def close(self) -> None:
        """Make the queued use marks and stop their thread; close the log. If a trim replaced
        the log while this process was appending to the old file, append this process's
        records to the new one, so they are not lost."""
        self.flush_marks()
        self.leave()
        marker, self._marker = self._marker, None
        if marker is not None:
            marker.release()
        fd, self._log_fd = self._log_fd, None
        if fd is None:
            return
        os.close(fd)
        try:
            replaced = os.stat(self.log_path).st_ino != self._log_ino
        except OSError:
            replaced = True
        appended, self._appended = self._appended, []
        if replaced and appended:
            try:
                fd = os.open(self.log_path, _LOG_FLAGS, 0o600)
                try:
                    os.write(fd, b"".join(appended))
                finally:
                    os.close(fd)
            except OSError:
                pass  # Those outputs become misses; the trim removes them in time.

    # -- files --------------------------------------------------------------------------

    def new_file(self) -> tuple[int, str]:
        """A new empty temporary file (mode 0600): its descriptor and path."""
        for attempt in (1, 2):
            path = os.path.join(self.tmp_dir, "w-" + os.urandom(8).hex())
            try:
                return os.open(path, _NEW_FILE_FLAGS, 0o600), path
            except FileNotFoundError:
                if attempt == 2:
                    raise LocalStoreError(f"cannot create a file in {self.tmp_dir}") from None
                self.open()  # Someone removed tmp/ under us (rm -rf, a trim): make it again.
            except OSError as exc:
                raise LocalStoreError(f"cannot create a file in {self.tmp_dir}: {exc}") from None
        raise AssertionError("unreachable")

    def _place(self, tmp_path: str, final: str) -> None:
        try:
            os.replace(tmp_path, final)
        except FileNotFoundError:
            if not os.path.exists(tmp_path):
                raise LocalStoreError(f"temporary file vanished: {tmp_path}") from None
            self._makedirs(os.path.dirname(final))
            try:
                os.replace(tmp_path, final)
            except OSError as exc:
                raise LocalStoreError(f"cannot write {final}: {exc}") from None
        except OSError as exc:
            raise LocalStoreError(f"cannot write {final}: {exc}") from None

    def _makedirs(self, path: str) -> None:
        if path in self._dirs_made:
            return
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LocalStoreError(f"cannot create {path}: {exc}") from None
        self._dirs_made.add(path)

    def commit(self, action_hex: str, entry: Entry, tmp_path: str) -> str:
        """Move a complete, verified output into place and record the action; returns the
        output's final path."""
        output_hex = entry.output_id.hex()
        final = self.output_path(output_hex)
        if output_hex in self.condemned:
            # Chosen by a trim that waits to remove it: renamed in while no trim removes, so
            # the trim finds a file it did not choose (store/shared.py).
            fd = placing(self.root)
            try:
                self._place(tmp_path, final)
            finally:
                os.close(fd)
        else:
            self._place(tmp_path, final)
        self.write_action(action_hex, entry)
        return final


def auto_trim_due(root: str, now: float) -> bool:
    """Whether the daily automatic trim of the store at ``root`` is due: one ``stat`` of its
    marker (:data:`TRIM_MARKER`). Here, not in :mod:`redis_gocache.ops.trim`, so a helper
    ends without importing the trim when it is not due."""
    try:
        return now - os.stat(os.path.join(root, TRIM_MARKER)).st_mtime >= AUTO_TRIM_INTERVAL
    except FileNotFoundError:
        return True
    except OSError:
        return False  # A marker we cannot read is one we could not touch either.


def touch_private(path: str, when: float | None = None) -> None:
    """Create ``path`` empty (mode 0600) if it is missing and set its mtime to ``when`` (now
    by default): the cheap markers the helper keeps next to its files. Raises OSError."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    os.utime(path, None if when is None else (when, when))


def replace_private(path: str, data: bytes) -> None:
    """Make ``path`` hold ``data`` (mode 0600 if new), whole or not at all: a temporary file
    beside it, renamed over it, so a concurrent reader sees the old content or the new.
    Raises OSError, and leaves no temporary file behind. The temporary name is random, not
    the process ID: helpers in two pods sharing the directory can have the same PID."""
    tmp = f"{path}.{os.urandom(6).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        discard(tmp)
        raise


def open_private(path: str) -> IO[str]:
    """``open(path, "w")``, but a new file gets mode 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def discard(path: str) -> None:
    """Remove a file if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass
