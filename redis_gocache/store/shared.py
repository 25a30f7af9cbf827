"""Helpers sharing one local directory: who is running, and when the trim may remove outputs.

Any number of helpers may use one local root at once (the runner pods of a node sharing a
``hostPath``): every file they write is complete before its name appears
(:mod:`redis_gocache.store.disk`). What is left is the trim. A helper hands cmd/go the path of
an output, cmd/go may open it at any moment until it ends, and the helper marks that use on
the file only minutes later (docs/design.md, "The warm path"); a trim deciding by mtimes alone
could remove a file a running build was just handed. So the trim removes an output only once
no running helper can have handed it out, in generations:

- ``evicting`` (:data:`STATE`) holds a generation number, the time it was written, and the
  outputs the trim has chosen to remove (*condemned*). A helper reads it as it starts and
  holds a shared ``flock`` on ``live.<generation>`` until its ``go`` command has ended
  (:class:`Registration`); it re-reads the state after locking, so it never holds the lock
  of a generation older than the state it acts on.
- A helper leaves the condemned outputs out of its action index and kept answers, so it hands
  one out only after fetching it again or being put it: a new file renamed into place under a
  shared ``flock`` on ``evict.lock``, held for that ``rename`` only.
- The trim (one at a time: ``trim.lock``) removes the condemned outputs only while it holds
  the exclusive lock of every older generation's file, without waiting (no helper that did
  not know them is running; else it leaves them to its next pass), and of ``evict.lock`` (no
  ``rename`` of one is under way); and it removes an output only if it is still the file it
  chose (the same inode number and ctime: a number alone may be reused by a new file): one
  renamed into place again since then stays. Choosing outputs writes the next generation.

``flock`` locks go when their process ends, however it ends: a crashed helper holds nothing
back. A helper waits on a lock only while a trim holds it, which is while it removes files.
"""

from __future__ import annotations

import fcntl  # built into CPython: no import cost on the warm path
import os

from redis_gocache.exceptions import LocalStoreError

STATE = "evicting"
"""File in the local root: ``<generation>\\n<written, epoch s>\\n`` then a line per condemned
output, ``<output ID hex> <inode> <ctime ns>``."""

LIVE = "live."
"""Prefix of the per-generation files the running helpers hold a shared lock on."""

EVICT_LOCK = "evict.lock"
"""Held shared by a helper that hands out a condemned output; exclusive by a removing trim."""

TRIM_LOCK = "trim.lock"
"""Held exclusive by a trim of the root: two trims never rewrite the same files at once."""

JOIN_TRIES = 100
"""A helper's attempts to lock the current generation while trims keep moving it on."""

_OPEN = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


Condemned = dict[str, tuple[int, int]]
"""Output ID hex -> the inode number and ctime (ns) of the file the trim chose."""


def read_state(root: str) -> tuple[int, float, Condemned]:
    """The generation, its time and its condemned outputs; ``(0, 0.0, {})`` without a state
    file. A state that does not parse is generation 0, which holds every trim back."""
    try:
        fd = os.open(os.path.join(root, STATE), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return 0, 0.0, {}
    try:
        data = os.read(fd, os.fstat(fd).st_size or 1)
    except OSError:
        return 0, 0.0, {}
    finally:
        os.close(fd)
    lines = data.decode("ascii", "replace").split("\n")
    try:
        generation, since = int(lines[0]), float(lines[1])
        condemned: Condemned = {}
        for line in lines[2:]:
            if line:
                oid, ino, ctime = line.split(" ")
                condemned[oid] = (int(ino), int(ctime))
    except (ValueError, IndexError):
        return 0, 0.0, {}
    return generation, since, condemned


def write_state(root: str, generation: int, since: float, condemned: Condemned) -> None:
    """Replace the state file whole. Raises OSError."""
    from redis_gocache.store.disk import replace_private

    text = f"{generation}\n{since:.3f}\n" + "".join(
        f"{oid} {ino} {ctime}\n" for oid, (ino, ctime) in sorted(condemned.items()))
    replace_private(os.path.join(root, STATE), text.encode("ascii"))


def owner_problem(path: str) -> str | None:
    """One line saying why this process cannot share ``path`` with its owner, or ``None``.

    Every file in a local directory is private to its user (mode 0600, directories 0700),
    so helpers of two users cannot share one: the second could not open the first's outputs,
    and the first could not open the second's, halfway through a build."""
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return None  # Not there yet: whoever makes it owns it.
    me = os.geteuid()
    if owner == me:
        return None
    return (f"the local cache directory {path} belongs to uid {owner}, but this helper runs as "
            f"uid {me}: helpers sharing a --cache-dir must run as one user "
            f"(see docs/kubernetes.md, \"One local directory per node\")")


class Registration:
    """A running helper's place among the helpers of one local root (see the module doc)."""

    __slots__ = ("root", "_live")

    def __init__(self, root: str) -> None:
        self.root = root
        self._live: int | None = None

    def join(self) -> Condemned:
        """Hold the current generation's lock; returns its condemned outputs, which this
        helper hands out only as a file it renamed into place under :func:`placing`.
        Raises LocalStoreError."""
        try:
            for _ in range(JOIN_TRIES):
                generation, _, condemned = read_state(self.root)
                fd = os.open(os.path.join(self.root, f"{LIVE}{generation}"), _OPEN, 0o600)
                # Waits only while a trim checks that generation, which it does only once the
                # state has moved on: the check below then sends this helper round again.
                fcntl.flock(fd, fcntl.LOCK_SH)
                if read_state(self.root)[0] == generation:
                    self._live = fd
                    return condemned
                os.close(fd)
        except OSError as exc:
            raise LocalStoreError(f"cannot register in {self.root}: {exc}") from None
        raise LocalStoreError(f"cannot register in {self.root}: trims keep moving its generation")

    def leave(self) -> None:
        """Drop the lock: the ``go`` command has ended, and uses no file any more."""
        fd, self._live = self._live, None
        if fd is not None:
            os.close(fd)


def placing(root: str) -> int:
    """Hold ``evict.lock`` shared while renaming a condemned output into place (waits while a
    trim removes condemned outputs); close the descriptor after the rename. Raises
    LocalStoreError."""
    try:
        fd = os.open(os.path.join(root, EVICT_LOCK), _OPEN, 0o600)
    except OSError as exc:
        raise LocalStoreError(f"cannot lock {root}/{EVICT_LOCK}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError as exc:
        os.close(fd)
        raise LocalStoreError(f"cannot lock {root}/{EVICT_LOCK}: {exc}") from None
    return fd


# -- the trim's side -----------------------------------------------------------------------


def lock_trim(root: str) -> int:
    """Wait for the root's trim lock; returns the descriptor that holds it (close to release).
    Raises OSError."""
    fd = os.open(os.path.join(root, TRIM_LOCK), _OPEN, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        raise
    return fd


def quiesce(root: str, generation: int) -> list[tuple[int, str]] | None:
    """Exclusive locks on every ``live.<n>`` with ``n < generation``, without waiting, then on
    ``evict.lock`` (held by helpers for a ``rename`` only): the descriptors and paths held, or
    ``None`` (holding nothing) when a running helper holds one of the former. Pass the result
    to :func:`release`."""
    held: list[tuple[int, str]] = []
    try:
        for name in os.listdir(root):
            if name.startswith(LIVE) and name[len(LIVE):].isdigit() \
                    and int(name[len(LIVE):]) < generation:
                path = os.path.join(root, name)
                fd = os.open(path, _OPEN, 0o600)
                held.append((fd, path))
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = os.path.join(root, EVICT_LOCK)
        fd = os.open(path, _OPEN, 0o600)
        held.append((fd, path))
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # BlockingIOError: a helper holds it
        release(held, unlink=False)
        return None
    return held


def release(held: list[tuple[int, str]], *, unlink: bool = True) -> None:
    """Drop locks :func:`quiesce` took; the old generations' files go (nobody holds them)."""
    for fd, path in held:
        if unlink and not path.endswith(EVICT_LOCK):
            try:
                os.unlink(path)
            except OSError:
                pass
        os.close(fd)
