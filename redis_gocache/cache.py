"""The cache behind the protocol: the local directory first, Redis second.

:class:`Cache` decides where a get is served from and where a put goes; it owns every check
that stands between Redis and the file handed to Go (size and SHA-256), and the counting. It
knows nothing of the wire format, which is :mod:`redis_gocache.server`'s business.
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock

from redis_gocache.exceptions import LocalStoreError, RejectedEntry
from redis_gocache.store.disk import DiskStore, HashingWriter, discard
from redis_gocache.store.entry import Entry

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Sequence
    from concurrent.futures import ThreadPoolExecutor
    from threading import Event
    from typing import Protocol

    from redis_gocache.remote import Remote
    from redis_gocache.stats import Stats
    from redis_gocache.store.base import Pending

    class Stoppable(Protocol):
        """Background work the cache stops before its last answer (the prefetcher)."""

        def stop(self) -> None: ...

REFRESH_INTERVAL = 24 * 3600.0
"""An entry served locally has its Redis TTL refreshed at most this often (seconds)."""

UPLOAD_THREADS = 2
"""Threads uploading puts to Redis in the background."""

CLAIM_WAIT = 30.0
"""Longest a get waits for another thread (the prefetcher) already fetching the same entry."""


class Cache:
    """Local directory plus optional remote store, with verification and counters."""

    def __init__(self, local: DiskStore, remote: Remote | None, stats: Stats) -> None:
        self.local = local
        self.remote = remote
        self.stats = stats
        self._served: list[tuple[bytes, Entry, bool]] = []
        self._served_lock = allocate_lock()
        self._uploads: ThreadPoolExecutor | None = None
        self.requested: list[bytes] = []
        """Every action id cmd/go asked for, in order: the manifest for the next new runner."""
        self.kept_hits: list[bytes] = []
        """Action ids answered from the answers kept by the last run (redis_gocache.answers),
        whose Redis TTL refresh :meth:`refresh_served` decides from their records."""
        # Fetches under way, so a get and the prefetcher never fetch one entry twice.
        self._inflight: dict[bytes, Event] = {}
        self._inflight_lock = allocate_lock()
        # Entries the prefetcher brought that cmd/go has not asked for yet, and those it found
        # broken: asking Redis again for those within this run would only fail again.
        self._prefetched: set[bytes] = set()
        self._prefetch_rejected: set[bytes] = set()
        self.prefetcher: Stoppable | None = None

    @property
    def remote_readable(self) -> bool:
        return self.remote is not None and self.remote.readable

    def _note_served(self, action_id: bytes, entry: Entry, local: bool) -> None:
        with self._served_lock:
            self._served.append((action_id, entry, local))

    # -- gets -------------------------------------------------------------------------

    def get_local(self, action_id: bytes) -> tuple[Entry, str] | None:
        """A hit from the local directory (no hashing, no Redis), counted as a whole get; or
        ``None``, which the caller counts."""
        self.requested.append(action_id)
        found = self.local.lookup(action_id.hex())
        if found is None:
            return None
        entry, path, refreshed = found
        if self._prefetched and action_id in self._prefetched:
            # Brought from Redis ahead of time: a Redis hit that cost cmd/go no wait.
            with self._inflight_lock:
                self._prefetched.discard(action_id)
            self._note_served(action_id, entry, local=False)
            self.stats.add(gets=1, remote_hits=1, hit_bytes=entry.size,
                           remote_hit_bytes=entry.size)
            return entry, path
        if self.remote is not None and time.time() - refreshed > REFRESH_INTERVAL:
            self._note_served(action_id, entry, local=True)
        self.stats.local_hit(entry.size)
        return entry, path

    def served_locally(self, action_id: bytes, fields: tuple[bytes, int, int, int]) -> None:
        """Note a local hit the server answered itself (:meth:`Server._local_hits`) whose
        Redis TTL is due for a refresh; ``fields`` as :func:`parse_fields` returns them."""
        output_id, size, time_ns, _ = fields
        self._note_served(action_id, Entry(output_id, size, time_ns), local=True)

    def _claim(self, action_id: bytes) -> Event | None:
        """``None`` if the caller now owns fetching ``action_id``; else the event that fires
        when whoever does own it is done."""
        from threading import Event  # only runs that fetch from Redis import threading

        with self._inflight_lock:
            event = self._inflight.get(action_id)
            if event is None:
                self._inflight[action_id] = Event()
            return event

    def _release(self, action_id: bytes) -> None:
        with self._inflight_lock:
            self._inflight.pop(action_id).set()

    def get_remote(self, action_id: bytes) -> tuple[Entry, str] | None:
        """A hit fetched from Redis into the local directory, verified, or ``None``."""
        if self.remote is None or not self.remote.readable:
            return None
        deadline = time.monotonic() + CLAIM_WAIT
        while True:
            if action_id in self._prefetch_rejected:
                return None
            event = self._claim(action_id)
            if event is None:
                break  # Ours to fetch.
            # The prefetcher holds it: wait for its file rather than fetch twice.
            left = deadline - time.monotonic()
            if left <= 0 or not event.wait(left):
                return None
            found = self.local.lookup(action_id.hex())
            if found is not None:
                entry, path, _ = found
                with self._inflight_lock:
                    self._prefetched.discard(action_id)
                self._note_served(action_id, entry, local=False)
                self.stats.add(remote_hits=1, hit_bytes=entry.size, remote_hit_bytes=entry.size)
                return entry, path
            # Let go without a file: a batch read the record and left the blob for later, or
            # the prefetcher stopped. Not a miss: claim it again, and most likely fetch it here.
        try:
            hit = self._fetch(action_id)
        finally:
            self._release(action_id)
        if hit is not None:
            entry = hit[0]
            self._note_served(action_id, entry, local=False)
            self.stats.add(remote_hits=1, hit_bytes=entry.size, remote_hit_bytes=entry.size)
        return hit

    def prefetch(self, action_id: bytes, pending: Pending | None = None) -> bool:
        """Bring one entry from Redis before cmd/go asks for it; True if it was fetched.
        ``pending`` is the rest of its lookup, when :meth:`prefetch_many` read its record."""
        if self.remote is None or not self.remote.readable:
            return False
        if self.local.has(action_id.hex()):
            return False
        if self._claim(action_id) is not None:
            return False  # cmd/go's own get is fetching it.
        try:
            hit = self._fetch(action_id, rejected=self._prefetch_rejected, pending=pending)
            if hit is not None:
                with self._inflight_lock:
                    self._prefetched.add(action_id)
        finally:
            self._release(action_id)
        if hit is None:
            return False
        self.stats.add(prefetched=1)
        return True

    def prefetch_many(self, action_ids: Sequence[bytes]) -> list[tuple[bytes, Pending | None]]:
        """Bring a batch of entries from Redis before cmd/go asks, the inline ones (most of a
        build's outputs) in one round trip; returns the others with the rest of their lookup,
        for :meth:`prefetch` one by one (the caller can stop in between)."""
        if self.remote is None or not self.remote.readable:
            return []
        mine = [a for a in action_ids if not self.local.has(a.hex())
                and a not in self._prefetch_rejected and self._claim(a) is None]
        if not mine:
            return []
        rest: list[tuple[bytes, Pending | None]] = []
        claimed = list(reversed(mine))  # released as each is done; all of them, whatever happens
        try:
            found = self.remote.get_inline(mine)
            for action_id, hit in zip(mine, found, strict=True):
                if not isinstance(hit, tuple):  # a Pending, or None
                    rest.append((action_id, hit))
                elif self._keep_body(action_id, *hit) is not None:
                    with self._inflight_lock:
                        self._prefetched.add(action_id)
                    self.stats.add(prefetched=1)
                self._release(claimed.pop())
        finally:
            while claimed:  # A get waiting on one of these must not wait for CLAIM_WAIT.
                self._release(claimed.pop())
        return rest

    def _keep_body(self, action_id: bytes, entry: Entry, body: bytes) -> tuple[Entry, str] | None:
        """Verify and materialize a body already in memory (an inline record)."""
        made = self._new_writer()
        if made is None:
            return None
        writer, tmp = made
        try:
            writer.write(body)
        finally:
            os.close(writer.fd)
        return self._keep(action_id, entry, writer, tmp, self._prefetch_rejected)

    def _new_writer(self) -> tuple[HashingWriter, str] | None:
        """A writer on a new temporary file, or ``None`` (counted) when none can be made."""
        try:
            fd, tmp = self.local.new_file()
        except LocalStoreError:
            self.stats.add(get_errors=1)
            return None
        return HashingWriter(fd), tmp

    def _fetch(
        self, action_id: bytes, rejected: set[bytes] | None = None,
        pending: Pending | None = None,
    ) -> tuple[Entry, str] | None:
        """Fetch from Redis (or finish a ``pending`` lookup), verify, and materialize locally;
        ``None`` for any kind of miss. An entry that fails a check is also added to
        ``rejected``, if given."""
        assert self.remote is not None
        made = self._new_writer()
        if made is None:
            return None
        writer, tmp = made
        try:
            try:
                entry = self.remote.get(action_id, writer.write, pending)
            finally:
                os.close(writer.fd)
        except RejectedEntry as exc:
            self._reject(exc.kind, action_id, tmp, rejected)
            return None
        if entry is None:
            discard(tmp)
            return None
        return self._keep(action_id, entry, writer, tmp, rejected)

    def _keep(
        self, action_id: bytes, entry: Entry, writer: HashingWriter, tmp: str,
        rejected: set[bytes] | None,
    ) -> tuple[Entry, str] | None:
        """Check a body written to ``tmp`` against its entry and commit it locally."""
        if writer.error is not None:
            self.stats.add(get_errors=1)
            discard(tmp)
            return None
        # Safety check: Redis is shared and writable by others; nothing reaches Go unverified.
        if writer.size != entry.size:
            self._reject("size", action_id, tmp, rejected)
            return None
        if writer.digest() != entry.output_id:
            self._reject("hash", action_id, tmp, rejected)
            return None
        try:
            path = self.local.commit(action_id.hex(), entry, tmp)
        except LocalStoreError:
            self.stats.add(get_errors=1)
            discard(tmp)
            return None
        return entry, path

    def _reject(
        self, kind: str, action_id: bytes, tmp: str, rejected: set[bytes] | None
    ) -> None:
        self.stats.reject(kind)
        discard(tmp)
        if rejected is not None:
            with self._inflight_lock:
                rejected.add(action_id)

    # -- puts -------------------------------------------------------------------------

    def begin_put(self) -> tuple[HashingWriter, str]:
        """A writer for an incoming body and the temporary file behind it."""
        fd, tmp = self.local.new_file()
        return HashingWriter(fd), tmp

    def finish_put(
        self, action_id: bytes, output_id: bytes, writer: HashingWriter, tmp: str
    ) -> str:
        """Record a complete body (``writer`` already closed by the caller) and return the
        DiskPath for Go. Raises :class:`LocalStoreError` only when no local file can be had."""
        if writer.error is not None:
            discard(tmp)
            raise LocalStoreError(f"cannot write the body to local disk: {writer.error}")
        entry = Entry(output_id, writer.size, time.time_ns())
        if writer.digest() != output_id:
            # The body is not what Go said it is: store it nowhere, but give Go its file so
            # the build goes on (Go will rebuild if it cares).
            self.stats.reject("put_hash")
            return tmp
        path = self.local.commit(action_id.hex(), entry, tmp)
        self.stats.add(put_bytes=entry.size)
        if self.remote is not None and self.remote.writable:
            if self._uploads is None:
                from concurrent.futures import ThreadPoolExecutor

                self._uploads = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="upload")
            self._uploads.submit(self.remote.put, action_id, entry, path)
        return path

    # -- the end ----------------------------------------------------------------------

    def drain(self) -> None:
        """Stop prefetching and wait for every background upload."""
        if self.prefetcher is not None:
            self.prefetcher.stop()
        if self._uploads is not None:
            self._uploads.shutdown(wait=True)
            self._uploads = None

    def refresh_served(self) -> None:
        """Push out the Redis TTL of what this run served (locally: at most daily)."""
        if self.remote is not None and self.kept_hits:
            stale = time.time() - REFRESH_INTERVAL
            for action_id in self.kept_hits:
                found = self.local.lookup(action_id.hex())
                if found is not None and found[2] < stale:
                    self._note_served(action_id, found[0], local=True)
            self.kept_hits = []
        with self._served_lock:
            served, self._served = self._served, []
        if self.remote is None or not served:
            return
        if self.remote.refresh([(action_id, entry) for action_id, entry, _ in served]):
            self.local.mark_refreshed([action_id.hex() for action_id, _, local in served if local])

    def close(self) -> None:
        self.local.close()
        if self.remote is not None:
            self.remote.close()
