"""Keeping Redis trouble away from the build: a guard around the remote store.

Every remote call goes through :class:`Remote`, which turns failures into misses and skipped
uploads, says so once on stderr, and stops calling a Redis that is down. Because every ``go``
command starts a new helper, the decision "Redis is down" is also written to a small breaker
file in the local directory: the next helper skips Redis at once instead of paying the
timeout again, until the cool-down has passed. After the cool-down one helper tries again
(half-open): a success removes the file, a failure sets a new cool-down.

Settings that turn out unusable only when Redis is first used (a URL redis-py cannot parse,
a key file that is not a key) switch Redis off for this run, with one line saying why; they
do not trip the breaker, which is for outages.
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock

from redis_gocache.exceptions import (
    ConfigError,
    LocalStoreError,
    PermissionDenied,
    RejectedEntry,
    RemoteError,
    RemoteMisconfigured,
    RemoteOutOfMemory,
    RemoteUnavailable,
    ShardUnavailable,
    missing_module,
)
from redis_gocache.store.disk import replace_private

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from redis_gocache.stats import Stats
    from redis_gocache.store.base import Pending, RemoteStore, Sink
    from redis_gocache.store.entry import Entry

FAILURES_TO_TRIP = 3
"""Consecutive command errors (not outages: those trip at once) before Redis is switched off."""


class Breaker:
    """The cross-process memory of a Redis outage: a file holding the time until which
    helpers should not try Redis."""

    def __init__(self, path: str, cooldown: float) -> None:
        self.path = path
        self.cooldown = cooldown

    def open_until(self) -> float:
        """The epoch time until which Redis is to be skipped; 0 when it is not."""
        try:
            with open(self.path, encoding="ascii") as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def trip(self) -> None:
        try:
            # Whole or not at all: a concurrent helper (another pod's too) reads old or new.
            replace_private(self.path, f"{time.time() + self.cooldown:.3f}\n".encode("ascii"))
        except OSError:
            pass  # Without the file the next helper pays one timeout: acceptable.

    def reset(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Remote:
    """A :class:`RemoteStore` that never raises: failures become misses, counted and told once.

    ``readable`` goes false when Redis is down; ``writable`` also goes false when Redis is full,
    refuses writes (ACL ``NOPERM``: then quietly, since that is how a reader user is meant to
    work), or the helper runs read-only.
    """

    def __init__(
        self,
        store: RemoteStore | None = None,
        *,
        factory: Callable[[], RemoteStore] | None = None,
        stats: Stats,
        log: Callable[[str], None],
        describe: str,
        read_only: bool = False,
        breaker: Breaker | None = None,
    ) -> None:
        self._store = store
        self._factory = factory
        self._make_lock = allocate_lock()
        self.stats = stats
        self._log = log
        self._describe = describe
        self._breaker = breaker
        self._lock = allocate_lock()
        self._failures = 0
        self._breaker_was_set = False
        self._shard_warned = False
        self._error_warned = False
        self.readable = True
        self.writable = not read_only
        if breaker is not None:
            until = breaker.open_until()
            if until > time.time():
                self.readable = self.writable = False
                when = time.strftime("%H:%M:%S", time.localtime(until))
                log(f"Redis at {describe} failed recently; not using it until {when} "
                    f"(remove {breaker.path} to retry now)")
            elif until:
                self._breaker_was_set = True

    @property
    def store(self) -> RemoteStore:
        """The remote store; one given as a ``factory`` is made on first use, so a helper
        whose every get is local never imports the Redis client code at all."""
        if self._store is None:
            with self._make_lock:
                if self._store is None:
                    if self._factory is None:
                        raise TypeError("Remote needs a store or a factory")
                    try:
                        self._store = self._factory()
                    except ConfigError as exc:
                        raise RemoteMisconfigured(str(exc)) from None
                    except ImportError as exc:
                        # Not the build's problem: a helper started by an interpreter that
                        # lacks redis-py (say, another venv's) still serves from local disk.
                        raise RemoteMisconfigured(missing_module(exc)) from None
        return self._store

    @property
    def used(self) -> bool:
        """Whether this run has made its store, that is, sent Redis something (or tried)."""
        return self._store is not None

    def _ok(self) -> None:
        if self._failures or self._breaker_was_set:
            with self._lock:
                self._failures = 0
                if self._breaker_was_set and self._breaker is not None:
                    self._breaker.reset()
                self._breaker_was_set = False

    def _failed(self, exc: RemoteError, writing: bool) -> None:
        with self._lock:
            if isinstance(exc, ShardUnavailable):
                # One Cluster node: its keys miss, the rest of the cache serves. Say so once.
                if not self._shard_warned:
                    self._shard_warned = True
                    self._log(f"a Redis Cluster node is unavailable ({exc}); its entries are "
                              "misses for now, the other nodes keep serving")
                return
            if isinstance(exc, RemoteMisconfigured):
                if self.readable or self.writable:
                    self.readable = self.writable = False
                    self._log(f"cannot use Redis at {self._describe}: {exc}; "
                              "continuing with the local cache only")
                return
            if isinstance(exc, PermissionDenied) and writing:
                self.writable = False  # A reader user: expected, so quiet.
                return
            if isinstance(exc, RemoteOutOfMemory) and writing:
                if self.writable:
                    self.writable = False
                    self._log(f"Redis at {self._describe} is full ({exc}); "
                              "not storing new entries this run")
                return
            self._failures += 1
            if not isinstance(exc, RemoteUnavailable) and self._failures < FAILURES_TO_TRIP:
                if not self._error_warned:
                    # Not yet a reason to stop using Redis, but an entry was lost or missed.
                    self._error_warned = True
                    self._log(f"a Redis command failed ({exc}); carrying on")
                return
            if self.readable:
                self.readable = self.writable = False
                self._log(f"Redis at {self._describe} is unavailable ({exc}); "
                          "continuing with the local cache only")
                if self._breaker is not None:
                    self._breaker.trip()

    def _unexpected(self, exc: Exception) -> None:
        """The last resort for an exception that is none of ours (a bug, or a client library
        surprised by what it was sent): Redis is switched off for the run, with one line."""
        self._failed(RemoteMisconfigured(f"unexpected {type(exc).__name__}: {exc}"),
                     writing=False)

    def get(self, action_id: bytes, sink: Sink, pending: Pending | None = None) -> Entry | None:
        """The remote entry (body streamed into ``sink``), or ``None`` for any kind of miss.
        A rejected entry raises :class:`RejectedEntry` so the caller can discard the body.
        ``pending``, from :meth:`get_inline`, finishes a lookup whose record has arrived."""
        if not self.readable:
            return None
        start = time.perf_counter()
        try:
            entry = self.store.get(action_id, sink) if pending is None else pending(sink)
        except RejectedEntry:
            self._ok()
            raise
        except RemoteError as exc:
            self.stats.add(get_errors=1)
            self._failed(exc, writing=False)
            return None
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self.stats.add(get_errors=1)
            self._unexpected(exc)
            return None
        finally:
            self.stats.add(remote_wait_seconds=time.perf_counter() - start)
        self._ok()
        return entry

    def get_inline(
        self, action_ids: Sequence[bytes]
    ) -> list[tuple[Entry, bytes] | Pending | None]:
        """:meth:`RemoteStore.get_inline`, with every failure a list of ``None``."""
        if not self.readable:
            return [None] * len(action_ids)
        start = time.perf_counter()
        try:
            found = self.store.get_inline(action_ids)
        except RemoteError as exc:
            self.stats.add(get_errors=1)
            self._failed(exc, writing=False)
            return [None] * len(action_ids)
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self.stats.add(get_errors=1)
            self._unexpected(exc)
            return [None] * len(action_ids)
        finally:
            self.stats.add(remote_wait_seconds=time.perf_counter() - start)
        self._ok()
        return found

    def put(self, action_id: bytes, entry: Entry, path: str) -> None:
        if not self.writable:
            return
        start = time.perf_counter()
        try:
            stored = self.store.put(action_id, entry, path)
        except RemoteError as exc:
            self.stats.add(upload_errors=1)
            self._failed(exc, writing=True)
            return
        except (LocalStoreError, OSError):
            # The local file went away (a trim, a rm -rf): nothing to upload.
            self.stats.add(upload_errors=1)
            return
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self.stats.add(upload_errors=1)
            self._unexpected(exc)
            return
        finally:
            self.stats.add(remote_wait_seconds=time.perf_counter() - start)
        self._ok()
        # As stored: the bytes Redis (or the spill directory) holds for it, compressed or not.
        self.stats.add(uploads=1, upload_bytes=stored)

    def refresh(self, items: Sequence[tuple[bytes, Entry]]) -> bool:
        """Push out the TTLs of entries served this run; True if Redis took it."""
        if not items or not self.writable:
            return False
        try:
            self.store.refresh(items)
        except RemoteError as exc:
            self._failed(exc, writing=True)
            return False
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self._unexpected(exc)
            return False
        self.stats.add(refreshed=len(items))
        return True

    def read_manifest(self, tag: str) -> bytes | None:
        """A previous run's manifest, or ``None`` (also when Redis is in trouble)."""
        if not self.readable:
            return None
        try:
            data = self.store.read_manifest(tag)
        except RemoteError as exc:
            self._failed(exc, writing=False)
            return None
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self._unexpected(exc)
            return None
        self._ok()
        return data

    def write_manifest(self, tag: str, action_ids: bytes) -> bool:
        """Record this run's manifest; True if Redis took it."""
        return self._write(lambda store: store.write_manifest(tag, action_ids))

    def add_counters(self, counts: Mapping[str, int], paths: Mapping[str, int],
                     now: float) -> bool:
        """Add a run's fleet counters (:meth:`RemoteStore.add_counters`); True if Redis took
        them. A failure is handled as any write's, so the caller keeps them for later."""
        return self._write(lambda store: store.add_counters(counts, paths, now))

    def _write(self, write: Callable[[RemoteStore], object]) -> bool:
        """An end-of-run write to the store, unless writes are off; True if it went through.
        A failure is counted against Redis as any write's."""
        if not self.writable:
            return False
        try:
            write(self.store)
        except RemoteError as exc:
            self._failed(exc, writing=True)
            return False
        except Exception as exc:  # noqa: BLE001 - see _unexpected
            self._unexpected(exc)
            return False
        return True

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
