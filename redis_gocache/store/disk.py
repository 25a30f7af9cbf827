"""The local directory: materialized outputs and an index of actions, on disk.

Layout under the store's root (see docs/design.md)::

    o/<hh>/<output-id-hex>   an output body: the DiskPath handed to Go
    a/<hh>/<action-id-hex>   one line: "<output-id-hex> <size> <put-time-ns>\\n"
    tmp/                     files being written, renamed into place when complete

Every file is written under ``tmp/`` and renamed into place, so a reader (this helper, another
helper on the same host, or cmd/go) never sees a partial file, and a crash leaves only debris
in ``tmp/``. Outputs are verified (SHA-256 and size) before they are renamed into ``o/``; a
local hit is served without hashing, as Go's own cache does.

mtimes carry two cheap facts: an output file's mtime is its last use (touched at most once
an hour, for trimming), an action file's mtime is the last time its Redis TTL was refreshed.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import IO

from redis_gocache.exceptions import LocalStoreError
from redis_gocache.store.base import Entry

USE_MARK_INTERVAL = 3600.0
"""Seconds between two updates of an output file's mtime; a coarse mark is enough for trimming
and saves a syscall on nearly every hit."""

_HASH_CHUNK = 1 << 20

# Read-write, so a kernel-side copy (clone_from) can be hashed back.
_NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

_HEX = frozenset("0123456789abcdef")


def is_hex_id(text: str) -> bool:
    """True for exactly 64 lower-case hex digits: the only thing allowed in a path component
    that came from the protocol or from Redis."""
    return len(text) == 64 and _HEX.issuperset(text)


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
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
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
    """Content-addressed outputs and an action index in one local directory."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.tmp_dir = os.path.join(root, "tmp")
        self._dirs_made: set[str] = set()

    def open(self) -> DiskStore:
        """Create the directory (mode 0700) if needed."""
        try:
            # makedirs applies its mode to the last component only: make each level ourselves.
            for path in (self.root, self.tmp_dir, *(os.path.join(self.root, d) for d in "ao")):
                os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise LocalStoreError(f"cannot create cache directory {self.root}: {exc}") from None
        return self

    def output_path(self, output_hex: str) -> str:
        return f"{self.root}/o/{output_hex[:2]}/{output_hex}"

    def action_path(self, action_hex: str) -> str:
        return f"{self.root}/a/{action_hex[:2]}/{action_hex}"

    def lookup(self, action_hex: str) -> tuple[Entry, str, float] | None:
        """The entry of a locally complete action, the path of its output file, and the time
        its Redis TTL was last refreshed; ``None`` when anything is missing or inconsistent."""
        try:
            fd = os.open(self.action_path(action_hex), os.O_RDONLY)
        except OSError:
            return None
        try:
            data = os.read(fd, 256)
            refreshed = os.fstat(fd).st_mtime
        except OSError:
            return None
        finally:
            os.close(fd)
        entry = _parse_action(data)
        if entry is None:
            return None
        path = self.output_path(entry.output_id.hex())
        try:
            st = os.stat(path)
        except OSError:
            return None
        if st.st_size != entry.size:
            return None
        if time.time() - st.st_mtime > USE_MARK_INTERVAL:
            try:
                os.utime(path)
            except OSError:
                pass  # A read-only mark is not worth failing a hit for.
        return entry, path, refreshed

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
        final = self.output_path(entry.output_id.hex())
        self._place(tmp_path, final)
        self.write_action(action_hex, entry)
        return final

    def write_action(self, action_hex: str, entry: Entry) -> None:
        line = f"{entry.output_id.hex()} {entry.size} {entry.time_ns}\n".encode()
        fd, tmp = self.new_file()
        try:
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            discard(tmp)
            raise LocalStoreError(f"cannot write an action record: {exc}") from None
        self._place(tmp, self.action_path(action_hex))

    def mark_refreshed(self, action_hex: str) -> None:
        """Record that this action's Redis TTL was just refreshed."""
        try:
            os.utime(self.action_path(action_hex))
        except OSError:
            pass


def touch_private(path: str, when: float | None = None) -> None:
    """Create ``path`` empty (mode 0600) if it is missing and set its mtime to ``when`` (now
    by default): the cheap markers the helper keeps next to its files. Raises OSError."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))
    os.utime(path, None if when is None else (when, when))


def open_private(path: str) -> IO[str]:
    """``open(path, "w")``, but a new file gets mode 0600 whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _parse_action(data: bytes) -> Entry | None:
    parts = data.split()
    if len(parts) != 3:
        return None
    try:
        output_hex = parts[0].decode("ascii")
        size = int(parts[1])
        time_ns = int(parts[2])
    except (UnicodeDecodeError, ValueError):
        return None
    if not is_hex_id(output_hex) or size < 0 or time_ns < 0:
        return None
    return Entry(bytes.fromhex(output_hex), size, time_ns)


def discard(path: str) -> None:
    """Remove a file if it is there."""
    try:
        os.unlink(path)
    except OSError:
        pass
