"""The spill directory: large outputs on a shared volume, with a pointer in Redis.

Redis memory is the expensive part of the cache tier, and most bytes are in a few large
outputs. With ``--spill-dir`` set, an output above ``--inline-max`` is written once into a
directory every runner mounts (an NFS/EFS/Filestore/CephFS ReadWriteMany volume, or a hostPath
shared by the runner pods of one node), and the action hash holds ``ref`` = ``f:<pointer>``
instead of the body or a blob key.

Layout under the spill root (the root itself is the mount point and must already exist)::

    o/<hh>/<output-id-hex>   a large output, content-addressed; <hh> = first two hex digits
    z/<hh>/<output-id-hex>   the same, zstd-compressed (redis_gocache.store.compress); the
                             record's ``ref`` is then ``zf:<pointer>``, with ``zsize``
    tmp/<host>-<pid>-<hex>   a file being written, linked into place when complete

Pointers have exactly one shape, ``o/<hh>/<64 hex>`` (``z/`` compressed), and must name the
record's own output id: a poisoned pointer (``../``, an absolute path, another object) is
rejected before any file is opened. Files are opened one path component at a time below a
descriptor of the root, never following a symlink (``O_NOFOLLOW``), and must be regular files:
a symlink or a FIFO planted on the shared volume cannot make a reader open anything outside it,
or block.

Writes are atomic without locks (``flock`` is unreliable on NFS): the body goes to a new file
in ``tmp/`` (``O_EXCL``), is fsynced, then hard-linked to its final name. ``link`` fails if the
name exists, so the first complete writer wins and a file a reader has open is never replaced
under it (on NFS a replaced file turns the reader's next read into ``ESTALE``). Concurrent
writers of one object each write a temporary file; all but one just drop theirs. Where the
filesystem has no hard links, ``rename`` is the fallback.

Reading never trusts the file: size and SHA-256 are checked against the Redis record while the
body streams (and, compressed, expands) into the runner's local directory, so what Go gets is a
verified private copy that no writer on the volume can change and no trim can remove mid-build.
A missing, short, long or corrupt file (or compressed form) is a miss, counted as rejected
(``spill_missing``, ``spill_size``, ``spill_hash``); a file that is there but wrong is removed
so the next put can write it again.

Use marks: a reader or a writer that finds a file whose mtime is over an hour old touches it
(the same coarse mark as the local directory). ``redis-gocache trim --spill``
(:mod:`redis_gocache.ops.spill_trim`) removes files not marked for longer than the TTL, and
never one marked within the last two hours.
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
import stat
import threading
import time
from collections.abc import Callable

from redis_gocache.exceptions import LocalStoreError, RejectedEntry
from redis_gocache.store.entry import Entry
from redis_gocache.store.layout import OUTPUTS, TMP, output_relpath

TYPE_CHECKING = False  # not typing's: the Redis store imports this module (see there)
if TYPE_CHECKING:
    from redis_gocache.store.base import Sink

USE_MARK_INTERVAL = 3600.0
"""Seconds between two updates of a spill file's mtime (its last use)."""

READ_CHUNK = 1024 * 1024
"""Bytes per read when streaming a spill file or copying without kernel help."""

FICLONE = 0x40049409
"""Linux ``ioctl`` that makes the destination share the source's blocks (btrfs, XFS, ...)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC

_FILE_MODE = 0o664
"""New spill files: readable by every runner; group-writable so runners of one group
(Kubernetes ``fsGroup``) can mark use. The umask narrows it."""
_DIR_MODE = 0o775


ZOUTPUTS = "z"
"""Directory of the compressed outputs, laid out as ``o/``."""


def pointer_for(output_id: bytes, packed: bool = False) -> str:
    """The pointer (path relative to the spill root) of an output, or of its compressed
    form if ``packed``."""
    relpath = output_relpath(output_id.hex())
    return ZOUTPUTS + relpath[len(OUTPUTS):] if packed else relpath


def check_pointer(ref: bytes, output_id: bytes, packed: bool = False) -> str:
    """The pointer in a ``ref`` field's value (``f:`` or ``zf:`` already stripped), validated:
    exactly ``o/<hh>/<hex>`` (``z/`` if ``packed``) for this record's own output id.
    :class:`RejectedEntry` otherwise."""
    try:
        text = ref.decode("ascii")
    except UnicodeDecodeError:
        raise RejectedEntry("bad_ref", "spill pointer is not ASCII") from None
    if text != pointer_for(output_id, packed):
        raise RejectedEntry("bad_ref", "spill pointer does not name the record's output")
    return text


def copy_fd(src: int, dst: int, size: int) -> str:
    """Copy ``size`` bytes from the start of ``src`` into the empty file ``dst``.

    Tries a reflink (``FICLONE``: no data moves at all), then ``copy_file_range`` (the kernel
    copies, and may reflink or copy server-side on NFS 4.2), then plain reads and writes.
    Returns the method that worked: ``"clone"``, ``"copy_file_range"`` or ``"read"``.
    Raises :class:`OSError`; a source shorter than ``size`` raises ``EIO``.
    """
    if size > 0:
        try:
            import fcntl

            fcntl.ioctl(dst, FICLONE, src)
            if os.fstat(dst).st_size == size:
                return "clone"
            os.ftruncate(dst, 0)  # The source changed size under us: copy the bytes instead.
        except (OSError, ImportError):
            pass
    done = 0
    method = "copy_file_range"
    if hasattr(os, "copy_file_range"):
        try:
            while done < size:
                n = os.copy_file_range(src, dst, size - done, done, done)
                if n == 0:
                    raise OSError(errno.EIO, "source is shorter than expected")
                done += n
            return method
        except OSError as exc:
            # Not supported here (another filesystem, an old kernel): carry on by hand.
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL,
                                 errno.ENOTSUP, errno.EBADF, errno.EPERM):
                raise
    method = "read"
    while done < size:
        piece = os.pread(src, min(READ_CHUNK, size - done), done)
        if not piece:
            raise OSError(errno.EIO, "source is shorter than expected")
        view = memoryview(piece)
        while view:
            n = os.pwrite(dst, view, done)
            view = view[n:]
            done += n
    return method


CloneFrom = Callable[[int, int], "bytes | None"]
"""A sink's optional fast path, ``clone_from(src_fd, size)``: copy (ideally reflink, see
:func:`copy_fd`) ``size`` bytes of ``src_fd`` into the sink's own file, hash that private copy
and return its SHA-256; ``None`` means "not done, stream the body to me instead"."""


def _clone_target(sink: Sink) -> CloneFrom | None:
    """The ``clone_from`` of the sink itself or of the object it is a bound method of."""
    for obj in (sink, getattr(sink, "__self__", None)):
        fn = getattr(obj, "clone_from", None)
        if callable(fn):
            return fn  # type: ignore[no-any-return]
    return None


class SpillDir:
    """One spill directory, as seen by one helper. Thread-safe: uploads and gets run on
    several threads; the only shared state is the cached root descriptor."""

    def __init__(self, root: str, *, log: Callable[[str], None] | None = None) -> None:
        self.root = root
        self._log = log or (lambda message: None)
        self._lock = threading.Lock()
        self._root_fd: int | None = None
        self._warned = False
        self._tag = f"{socket.gethostname()[:32]}-{os.getpid()}"

    # -- directories ------------------------------------------------------------------

    def _root(self) -> int:
        """A descriptor of the root; the root is a mount point, so it is never created."""
        if self._root_fd is None:
            with self._lock:
                if self._root_fd is None:
                    self._root_fd = os.open(self.root, _DIR_FLAGS)
        return self._root_fd

    def _subdir(self, parent: int, name: str, create: bool) -> int:
        """A descriptor of ``parent/name``, made if ``create``; never through a symlink."""
        try:
            return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, _DIR_MODE, dir_fd=parent)
        except FileExistsError:
            pass  # Another runner made it first.
        return os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=parent)

    def _object_dir(self, top: str, hh: str, create: bool) -> int:
        o = self._subdir(self._root(), top, create)
        try:
            return self._subdir(o, hh, create)
        finally:
            os.close(o)

    def _warn_once(self, message: str) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        self._log(message)

    # -- reads ------------------------------------------------------------------------

    def read(self, ref: bytes, entry: Entry, sink: Sink, zsize: int | None = None) -> None:
        """Stream the object behind ``ref`` (an ``f:`` pointer's rest) into ``sink``,
        checking its size and SHA-256 against ``entry``; :class:`RejectedEntry` if anything
        is wrong. Never raises :class:`OSError`: a volume problem is a miss, not an outage.
        With ``zsize`` the file is the compressed form (``zf:``), ``zsize`` bytes long,
        expanded on its way into ``sink``."""
        pointer = check_pointer(ref, entry.output_id, packed=zsize is not None)
        top, hh, name = pointer.split("/")
        try:
            self._root()
        except OSError as exc:
            raise self._io_rejection(exc) from None
        try:
            d = self._object_dir(top, hh, create=False)
        except FileNotFoundError:
            raise RejectedEntry("spill_missing", "spill file is gone") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RejectedEntry("bad_ref", "spill directory holds a symlink") from None
            raise self._io_rejection(exc) from None
        try:
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=d)
            except FileNotFoundError:
                raise RejectedEntry("spill_missing", "spill file is gone") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RejectedEntry("bad_ref", "spill file is a symlink") from None
                raise self._io_rejection(exc) from None
            try:
                self._read_open(d, name, fd, entry, sink, zsize)
            finally:
                os.close(fd)
        finally:
            os.close(d)

    def _read_open(self, d: int, name: str, fd: int, entry: Entry, sink: Sink,
                   zsize: int | None) -> None:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            raise self._io_rejection(exc) from None
        if not stat.S_ISREG(st.st_mode):
            raise RejectedEntry("bad_ref", "spill pointer names something other than a file")
        if st.st_size != (entry.size if zsize is None else zsize):
            self._remove_bad(d, name, st)
            raise RejectedEntry("spill_size", "spill file size differs from its record")
        try:
            if zsize is None:
                clone = _clone_target(sink)
                digest = clone(fd, entry.size) if clone is not None else None
                if digest is None:
                    digest = self._stream(fd, entry.size, sink)
            else:
                digest = self._expand(fd, entry.size, zsize, sink)
        except OSError as exc:
            raise self._io_rejection(exc) from None
        except RejectedEntry as exc:
            if exc.kind == "bad_zstd":  # the shared file is garbage: let a put replace it
                self._remove_bad(d, name, st)
            raise
        if digest != entry.output_id:
            self._remove_bad(d, name, st)
            raise RejectedEntry("spill_hash", "spill file content differs from its record")
        if time.time() - st.st_mtime > USE_MARK_INTERVAL:
            _touch(fd)

    def _stream(self, fd: int, size: int, sink: Sink) -> bytes:
        """Feed the file to ``sink``; returns the SHA-256 of what was fed. The sink hashes
        its private copy too (that check is the caller's); hashing here as well is what lets
        a reader tell a corrupt shared file from a local problem, and remove it."""
        digest = hashlib.sha256()
        done = 0
        while done < size:
            piece = os.pread(fd, min(READ_CHUNK, size - done), done)
            if not piece:
                raise RejectedEntry("spill_size", "spill file shrank while being read")
            digest.update(piece)
            sink(piece)
            done += len(piece)
        return digest.digest()

    def _expand(self, fd: int, size: int, zsize: int, sink: Sink) -> bytes:
        """Feed the compressed file, expanded, to ``sink``; the SHA-256 of the expansion."""
        from redis_gocache.store.compress import Decompressing

        digest = hashlib.sha256()
        expanding = Decompressing(sink, size, digest)
        done = 0
        while done < zsize:
            piece = os.pread(fd, min(READ_CHUNK, zsize - done), done)
            if not piece:
                raise RejectedEntry("spill_size", "spill file shrank while being read")
            expanding(piece)
            done += len(piece)
        expanding.finish()
        return digest.digest()

    def _remove_bad(self, d: int, name: str, st: os.stat_result) -> None:
        """Remove a wrong file so the next put writes it again, unless it was replaced in
        the meantime (a good copy another writer just linked in must stay)."""
        try:
            now = os.stat(name, dir_fd=d, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(name, dir_fd=d)
        except OSError:
            pass  # A read-only mount, or someone else removed it: either way, fine.

    def _io_rejection(self, exc: OSError) -> RejectedEntry:
        self._warn_once(f"cannot read the spill directory {self.root}: {exc}")
        return RejectedEntry("spill_io", f"spill directory: {exc.strerror}")

    # -- writes -----------------------------------------------------------------------

    def store(self, entry: Entry, path: str, zsize: int | None = None) -> str:
        """Make sure the output in the local file ``path`` is in the spill directory, and
        return its pointer. With ``zsize``, ``path`` is the output's compressed form, that
        long, and goes to ``z/``. Raises :class:`LocalStoreError` when it cannot be written."""
        pointer = pointer_for(entry.output_id, packed=zsize is not None)
        size = entry.size if zsize is None else zsize
        top, hh, name = pointer.split("/")
        try:
            d = self._object_dir(top, hh, create=True)
        except OSError as exc:
            self._warn_once(f"cannot write to the spill directory {self.root}: {exc}; "
                            "large outputs are not shared this run")
            raise LocalStoreError(f"spill directory: {exc}") from None
        try:
            try:
                st = os.stat(name, dir_fd=d, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == size:
                # Already there (another action or runner wrote it): just mark the use.
                if time.time() - st.st_mtime > USE_MARK_INTERVAL:
                    _touch_at(d, name)
                return pointer
            self._write(d, name, size, path, replace=st is not None)
            return pointer
        except OSError as exc:
            self._warn_once(f"cannot write to the spill directory {self.root}: {exc}; "
                            "large outputs are not shared this run")
            raise LocalStoreError(f"spill directory: {exc}") from None
        finally:
            os.close(d)

    def _write(self, d: int, name: str, size: int, path: str, *, replace: bool) -> None:
        tmp_dir = self._subdir(self._root(), TMP, create=True)
        try:
            tmp = f"{self._tag}-{os.urandom(8).hex()}"
            try:
                src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise LocalStoreError(f"cannot read {path}: {exc.strerror}") from None
            try:
                dst = os.open(tmp, _NEW_FLAGS, _FILE_MODE, dir_fd=tmp_dir)
                try:
                    copy_fd(src, dst, size)
                    os.fsync(dst)
                finally:
                    os.close(dst)
            except BaseException:
                _unlink(tmp_dir, tmp)
                raise
            finally:
                os.close(src)
            try:
                self._link(tmp_dir, tmp, d, name, replace=replace)
            finally:
                _unlink(tmp_dir, tmp)
        finally:
            os.close(tmp_dir)

    def _link(self, tmp_dir: int, tmp: str, d: int, name: str, *, replace: bool) -> None:
        if replace:
            # A file of the wrong size or kind sits at the name: put the good one over it.
            os.rename(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=d)
            return
        try:
            os.link(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=d, follow_symlinks=False)
        except FileExistsError:
            pass  # Another writer won (or NFS replayed our own link): the object is there.
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
                raise
            # No hard links on this filesystem: rename, unless someone got there first.
            try:
                os.stat(name, dir_fd=d, follow_symlinks=False)
            except FileNotFoundError:
                os.rename(tmp, name, src_dir_fd=tmp_dir, dst_dir_fd=d)

    # -- use marks --------------------------------------------------------------------

    def mark_used(self, output_id: bytes) -> None:
        """Touch the object's mtime if it is over an hour old (an entry served from a local
        directory still references its spill file), compressed or not: the entry served does
        not say which. Quiet on every error."""
        for packed in (False, True):
            top, hh, name = pointer_for(output_id, packed).split("/")
            try:
                d = self._object_dir(top, hh, create=False)
            except OSError:
                continue
            try:
                st = os.stat(name, dir_fd=d, follow_symlinks=False)
                if time.time() - st.st_mtime > USE_MARK_INTERVAL:
                    _touch_at(d, name)
            except OSError:
                pass
            finally:
                os.close(d)

    def close(self) -> None:
        with self._lock:
            if self._root_fd is not None:
                os.close(self._root_fd)
                self._root_fd = None


def _touch(fd: int) -> None:
    try:
        os.utime(fd)
    except OSError:
        pass  # A read-only mount, or another runner's file: the mark is best effort.


def _touch_at(d: int, name: str) -> None:
    try:
        os.utime(name, dir_fd=d, follow_symlinks=False)
    except OSError:
        pass


def _unlink(d: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=d)
    except OSError:
        pass


__all__ = ["SpillDir", "check_pointer", "copy_fd", "pointer_for"]
