"""Modification times derived from content, so ``go test`` results hit across fresh checkouts.

cmd/go keys a cached test result on the size, mode and modification time of every file and
directory the test opened (``hashOpen`` and ``hashStat`` in ``cmd/go/internal/test/test.go``),
and the index it keeps of each package directory of the main module on the names, sizes and
modification times of its files (``dirHash`` in ``cmd/go/internal/modindex/read.go``). Both
live in the shared cache. A ``git clone`` stamps every file with the time of the clone, so a
new runner misses every test that reads a file; a fixed time for every file (``touch -t``)
makes it worse: a same-size edit then looks unchanged, and cmd/go serves a stale PASS or a
stale import list.

:func:`normalize` sets every time under a directory to a pure function of what is there:

* a regular file: its git blob id (``sha1("blob <size>\\0" + content)``) and its size;
* a symbolic link (the link itself, never its target): the target's text;
* a directory: its entries' names and kinds (file, directory, link, other).

That function is a hash folded into :data:`WINDOW_START_NS` + [0, :data:`WINDOW_NS`), to the
nanosecond: the same content gives the same time on every runner, different content a
different time (a collision needs 64 bits of SHA-256 to agree modulo about 2**59), and every
time is years in the past. cmd/go refuses to cache a test that opened a file modified less
than 2 s before it checks (``modTimeCutoff``: ``time.Since(mtime) < 2s``, so a time in the
future is refused for ever), and the package index skips a directory holding such a file.

In a git working tree the blob ids come from git's index (``git ls-files -s``), so the files
are not read: only those ``git status`` reports as differing from the index, those the index
does not hold (untracked, ignored) and those git was told not to look at (assume-unchanged,
skip-worktree, conflicts) are hashed here. Afterwards ``git update-index --refresh`` brings
the index's copy of the times up to date, so that the next ``git status`` (cmd/go runs one to
stamp binaries with VCS information) does not read every file again. Outside git every file
is hashed; the times are the same as in a clean git checkout of the same content.

The walk never follows a symbolic link: directories are opened with ``O_NOFOLLOW`` relative
to their parent's descriptor, times are set with ``AT_SYMLINK_NOFOLLOW``. ``.git`` (a
directory, or the file of a worktree or submodule) is neither entered nor touched. A time
that is already right is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

WINDOW_START_NS = 946_684_800 * 10**9
"""2000-01-01T00:00:00Z: the earliest time handed out."""

WINDOW_NS = 20 * 365 * 86_400 * 10**9
"""Twenty years (to the end of 2019): wide enough that two versions of a file practically
never share a time, old enough that no clock in service is behind it."""

DOMAIN = b"redis-gocache mtime v1\0"
"""Prefix of every hashed key; a new scheme gets a new version and so new times."""

KIND_FILE, KIND_DIR, KIND_LINK, KIND_OTHER = b"f", b"d", b"l", b"o"

SKIP = ".git"
"""Never entered or touched (still listed, as what it is, in its parent's time)."""

GIT_TIMEOUT = 600.0
"""Seconds one git command may take (``git status`` on a huge tree is slow, not stuck)."""

_CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _time_of(kind: bytes, key: bytes) -> int:
    digest = hashlib.sha256(DOMAIN + kind + b"\0" + key).digest()
    return WINDOW_START_NS + int.from_bytes(digest[:8], "big") % WINDOW_NS


def file_time(blob_id: str, size: int) -> int:
    """The time of a regular file with this git blob id and size (ns since the epoch).

    The size is the file's on disk: it is the blob's too, unless a git filter (autocrlf)
    rewrote the file on checkout, and then a different size keeps the time apart.
    """
    return _time_of(KIND_FILE, f"{blob_id} {size}".encode())


def link_time(target: bytes) -> int:
    """The time of a symbolic link pointing at ``target``."""
    return _time_of(KIND_LINK, target)


def dir_time(entries: list[tuple[bytes, bytes]]) -> int:
    """The time of a directory holding ``(name, kind)`` entries (in any order)."""
    return _time_of(KIND_DIR, b"".join(kind + name + b"\0" for name, kind in sorted(entries)))


def blob_id(fd: int, size: int, algorithm: str = "sha1") -> str:
    """The git blob id of the open file ``fd`` of ``size`` bytes (``git hash-object``)."""
    h = hashlib.new(algorithm)
    h.update(b"blob %d\0" % size)
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


# -- what git already knows ------------------------------------------------------------------


@dataclass
class GitIndex:
    """Blob ids of the files under a directory whose content git vouches for."""

    blobs: dict[str, str]
    """Path relative to the directory -> blob id, for clean regular files only."""
    algorithm: str
    """The repository's object format (``sha1``, or ``sha256``), for files hashed here."""


def _git(root: str, *args: str) -> bytes | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True,
                              stdin=subprocess.DEVNULL, timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def read_git_index(root: str) -> GitIndex | None:
    """What git knows of the files under ``root``, or None outside a git working tree (or
    without git, or where git refuses the repository, such as another user's)."""
    out = _git(root, "rev-parse", "--is-inside-work-tree", "--show-object-format",
               "--show-prefix")
    if out is None:
        return None
    lines = out.decode("utf-8", "surrogateescape").split("\n")
    if len(lines) < 3 or lines[0] != "true":
        return None
    algorithm, prefix = lines[1] or "sha1", lines[2]
    # Files whose content differs from the index. Porcelain paths are relative to the top
    # of the repository; a rename or copy names the source too (both are hashed here).
    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=no",
                  "--ignore-submodules=all", "--", ".")
    staged = _git(root, "ls-files", "--stage", "-v", "-z")
    if status is None or staged is None:
        return None
    changed: set[str] = set()
    fields = status.split(b"\0")
    i = 0
    while i < len(fields):
        record = fields[i]
        i += 1
        if len(record) < 4:
            continue
        changed.add(os.fsdecode(record[3:]))
        if record[:1] in (b"R", b"C") and i < len(fields):
            changed.add(os.fsdecode(fields[i]))
            i += 1
    changed = {p[len(prefix):] for p in changed if p.startswith(prefix)}
    blobs: dict[str, str] = {}
    distrusted: set[str] = set()
    for record in staged.split(b"\0"):
        # "<tag> <mode> <object> <stage>\t<path>", path relative to root. Only "H" (cached)
        # at stage 0 is content git checks; "h"/"S" (assume-unchanged, skip-worktree) and
        # conflict stages are hashed here.
        meta, tab, raw = record.partition(b"\t")
        parts = meta.split(b" ")
        if not tab or len(parts) != 4:
            continue
        tag, mode, oid, stage = parts
        path = os.fsdecode(raw)
        if tag != b"H" or stage != b"0":
            distrusted.add(path)
        elif mode.startswith(b"100") and path not in changed:
            blobs[path] = oid.decode("ascii")
    for path in distrusted:
        blobs.pop(path, None)
    return GitIndex(blobs, algorithm)


def refresh_git_index(root: str) -> bool:
    """Let git record the new times in its index (it reads the files to be sure)."""
    return _git(root, "update-index", "-q", "--refresh") is not None


# -- the walk --------------------------------------------------------------------------------


@dataclass
class Result:
    """What :func:`normalize` found and did."""

    root: str
    git: bool = False
    files: int = 0
    dirs: int = 0
    links: int = 0
    changed: int = 0
    """Times set (the rest were right already)."""
    from_index: int = 0
    """Files whose blob id came from git's index."""
    hashed: int = 0
    """Files read and hashed here."""
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    refresh_seconds: float = 0.0

    def summary(self) -> str:
        """One line for the log of a CI step."""
        total = self.files + self.dirs + self.links
        if self.git:
            source = f"{self.from_index} files from git's index, {self.hashed} hashed"
        else:
            source = f"{self.hashed} files hashed (no git index used)"
        line = (f"normalize-mtimes: {self.root}: {self.files} files, {self.dirs} directories, "
                f"{self.links} symlinks; {self.changed} times set, {total - self.changed} "
                f"already right; {source}; {self.seconds:.2f} s")
        if self.errors:
            line += f"; {len(self.errors)} errors"
        return line


Listing = Callable[[str, str, int, bool], None]
"""Called with (path, kind, time in ns, whether it was set) for every entry handled."""


class _Walker:
    def __init__(self, root: str, index: GitIndex | None, listing: Listing | None) -> None:
        self.index = index
        self.blobs = index.blobs if index else {}
        self.algorithm = index.algorithm if index else "sha1"
        self.listing = listing
        self.result = Result(root=root, git=index is not None)

    def _set(self, path: str, kind: str, want: int, have: int, target: str | int,
             dir_fd: int | None = None) -> None:
        """Give ``target`` (a name in ``dir_fd``, or an open directory) the time ``want``."""
        done = have != want
        if done:
            if isinstance(target, int):
                os.utime(target, ns=(want, want))
            else:
                os.utime(target, ns=(want, want), dir_fd=dir_fd, follow_symlinks=False)
            self.result.changed += 1
        if self.listing is not None:
            self.listing(path, kind, want, done)

    def directory(self, fd: int, rel: str) -> int:
        """Normalize everything below the open directory ``fd``; return its own time."""
        with os.scandir(fd) as it:
            entries = list(it)
        names: list[tuple[bytes, bytes]] = []
        for entry in entries:
            name = entry.name
            path = rel + name
            try:
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    kind = KIND_DIR
                elif stat.S_ISREG(mode):
                    kind = KIND_FILE
                elif stat.S_ISLNK(mode):
                    kind = KIND_LINK
                else:
                    kind = KIND_OTHER
                names.append((os.fsencode(name), kind))
                if name == SKIP:
                    continue
                if kind == KIND_DIR:
                    self._subdir(fd, name, path)
                elif kind == KIND_FILE:
                    self._file(fd, name, path, st)
                elif kind == KIND_LINK:
                    target = os.fsencode(os.readlink(name, dir_fd=fd))
                    want = link_time(target)
                    self.result.links += 1
                    self._set(path, "symlink", want, st.st_mtime_ns, name, fd)
            except OSError as exc:
                self.result.errors.append(f"{path}: {exc.strerror or exc}")
        return dir_time(names)

    def _subdir(self, parent: int, name: str, path: str) -> None:
        fd = os.open(name, _OPEN_DIR, dir_fd=parent)
        try:
            want = self.directory(fd, path + "/")
            self.result.dirs += 1
            have = os.fstat(fd).st_mtime_ns
            self._set(path + "/", "dir", want, have, fd)
        finally:
            os.close(fd)

    def _file(self, parent: int, name: str, path: str, st: os.stat_result) -> None:
        self.result.files += 1
        oid = self.blobs.get(path)
        size = st.st_size
        if oid is not None:
            self.result.from_index += 1
        else:
            fd = os.open(name, _OPEN_FILE, dir_fd=parent)
            try:
                # The size of what is read, not of the lstat before: the same file, unless
                # something writes to it meanwhile.
                size = os.fstat(fd).st_size
                oid = blob_id(fd, size, self.algorithm)
            finally:
                os.close(fd)
            self.result.hashed += 1
        want = file_time(oid, size)
        self._set(path, "file", want, st.st_mtime_ns, name, parent)


def normalize(root: str, *, use_git: bool = True, listing: Listing | None = None) -> Result:
    """Set the time of every file, directory and symlink under ``root`` (and of ``root``)
    from its content; see the module's docstring. Errors on single entries are collected in
    the result, not raised; a ``root`` that cannot be opened as a directory raises OSError.
    """
    t0 = time.monotonic()
    root = os.path.abspath(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        index = read_git_index(root) if use_git else None
        walker = _Walker(root, index, listing)
        want = walker.directory(fd, "")
        walker.result.dirs += 1
        walker._set(".", "dir", want, os.fstat(fd).st_mtime_ns, fd)
    finally:
        os.close(fd)
    result = walker.result
    if index is not None and result.changed:
        t1 = time.monotonic()
        refresh_git_index(root)
        result.refresh_seconds = time.monotonic() - t1
    result.seconds = time.monotonic() - t0
    return result


def iso_time(ns: int) -> str:
    """A time in ns since the epoch as RFC 3339 in UTC, for ``normalize-mtimes -v``
    (the command is :mod:`redis_gocache.commands`')."""
    seconds, frac = divmod(ns, 10**9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


__all__ = ["GitIndex", "Result", "blob_id", "dir_time", "file_time", "iso_time", "link_time",
           "normalize", "read_git_index"]
