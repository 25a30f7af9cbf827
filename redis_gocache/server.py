"""The request loop: read requests, answer them, in any order, without ever blocking a local
hit behind Redis.

Threads:

* the reader (the main thread) parses requests, streams put bodies to local disk, and answers
  local hits and puts itself: these need no network, and handing them to another thread would
  cost more than doing them. Runs of plain gets that hit locally (all of a warm runner's
  build) take :meth:`Server._local_hits`, which answers them straight from the input buffer,
  with the answers the last run of the same go command kept where it has them;
* a bounded pool of get workers serves local misses from Redis;
* the cache's uploaders send puts to Redis in the background.

Every answer is written whole under one lock. When the input ends (``close``, or EOF, which
is how ``go list -export`` leaves), the server finishes pending gets and uploads, answers
``close``, closes its stdout so cmd/go can go on, and only then does best-effort work
(refreshing TTLs).
"""

from __future__ import annotations

import os
import sys
import time
from _thread import allocate_lock

from redis_gocache import wire
from redis_gocache.cache import REFRESH_INTERVAL
from redis_gocache.exceptions import FatalProtocolError, LocalStoreError
from redis_gocache.store.disk import discard
from redis_gocache.store.layout import OUTPUT_AT, OUTPUT_END, OUTPUTS, parse_fields

TYPE_CHECKING = False  # not typing's: see redis_gocache.config
if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor
    from threading import BoundedSemaphore

    from redis_gocache.cache import Cache
    from redis_gocache.stats import Stats


def _discard(_: bytes) -> None:
    pass


class Server:
    """Serves one cmd/go over a pair of file descriptors."""

    def __init__(
        self,
        cache: Cache,
        *,
        in_fd: int,
        out_fd: int,
        stats: Stats,
        log: Callable[[str], None],
        workers: int,
        on_drained: Callable[[], None] | None = None,
        answers: dict[bytes, bytes] | None = None,
    ) -> None:
        self.cache = cache
        self.stats = stats
        self._log = log
        self._input = wire.InputStream(in_fd)
        self._out_fd = out_fd
        self._write_lock = allocate_lock()
        self._broken = False
        self._internal_errors = 0
        self._workers = workers
        self._on_drained = on_drained
        # Answers kept from the last run of this go command (redis_gocache.answers).
        self._answers = answers if answers is not None else {}
        self._pool: ThreadPoolExecutor | None = None
        self._slots: BoundedSemaphore | None = None

    # -- output -----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write one whole answer; after a broken pipe, drop answers quietly."""
        with self._write_lock:
            if self._broken:
                return
            try:
                written = os.write(self._out_fd, data)
                if written < len(data):  # A full pipe may take part of a long answer.
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(self._out_fd, view):]
            except OSError:
                # cmd/go is gone (EPIPE) or its pipe broke: nobody is listening any more.
                self._broken = True

    # -- the loop ---------------------------------------------------------------------

    def serve(self) -> int:
        """Run until close or end of input; returns the exit status (0, or 2 for garbage)."""
        status = 0
        close_id: int | None = None
        # A prefetching run counts a local hit on a prefetched entry as a Redis hit, which
        # only the general path knows how to do; runs that prefetch are new runners, whose
        # gets mostly go to Redis anyway.
        fast = self.cache.prefetcher is None
        try:
            while True:
                if fast:
                    self._local_hits()
                line = self._input.readline()
                if line is None:
                    break
                req = wire.parse_request(line)
                if req.error is None and not req.body_size:
                    if req.command == wire.CMD_GET:
                        self._get(req)  # the common case, without _handle's checks
                        continue
                    if req.command == wire.CMD_CLOSE:
                        close_id = req.id
                        break
                self._handle(req)
        except FatalProtocolError as exc:
            self._log(f"unreadable request, stopping: {exc}")
            status = 2
        except OSError as exc:
            self._log(f"cannot read requests: {exc}")
        self.finish(close_id)
        return status

    def _local_hits(self) -> None:
        """Answer plain gets that hit the local directory, straight from the input buffer,
        until a line needs more than that (any other request, a miss, a record that does not
        parse) or the input runs dry; that line is left unread for :meth:`serve`. An answer
        kept by the last run of this go command (:mod:`redis_gocache.answers`) is sent as it
        is; any other is built from the action log, read only then.

        This is a warm runner's whole build, and cmd/go waits for every answer, one or two
        at a time, so each step here is paid a thousand times a build, with the CPU's caches
        cold from cmd/go's own work in between: per hit, this path costs the build about
        half of what ``readline``, ``parse_request``, ``_get`` and ``Cache.get_local`` did
        (docs/design.md, "The warm path"). It does what they do for a local hit, with the
        same answers (tests/test_local_hits.py checks both paths).
        """
        inp = self._input
        cache = self.cache
        answers = self._answers
        index: dict[str, str] | None = None  # the action log, read when first needed
        root = cache.local.root + "/"
        requested = cache.requested
        kept_hits = cache.kept_hits
        send = self.send
        # The protocol's bytes are wire's; bound to locals, as a thousand hits look them up.
        head, end_of_answer, hit_tail = wire.ANSWER_HEAD, wire.ANSWER_END, wire.hit_tail
        marks = cache.local.mark_queue()
        # Entries whose Redis TTL was refreshed before this get their refresh after the run.
        stale = time.time() - REFRESH_INTERVAL if cache.remote is not None else -1.0
        hits = hit_bytes = 0
        buf, pos = inp.buf, inp.pos
        try:
            while True:
                end = buf.find(b"\n", pos)
                if end < 0:
                    inp.buf, inp.pos = buf, pos
                    if len(buf) - pos > wire.MAX_LINE or not inp.fill():
                        return  # serve() reports the long line, or sees the end of input.
                    buf, pos = inp.buf, inp.pos
                    continue
                if end == pos:
                    pos += 1  # cmd/go follows each request with an empty line
                    continue
                get = wire.plain_get(buf, pos, end)
                if get is None:
                    return
                digits, action_id = get
                kept = answers.get(action_id)
                if kept is not None:
                    _, size_text, relative, tail = kept.split(b" ", 3)
                    send(head + digits + tail + end_of_answer)
                    pos = end + 1
                    requested.append(action_id)
                    kept_hits.append(action_id)  # their TTL refresh is decided after the run
                    hits += 1
                    hit_bytes += int(size_text)
                    marks.append(root + relative.decode())  # DiskStore.mark_soon
                    continue
                if index is None:
                    index = cache.local.index()
                record = index.get(action_id.hex())
                if record is None:
                    return
                fields = parse_fields(record)
                if fields is None:
                    return
                output_id, size, time_ns, refreshed = fields
                hexid = record[OUTPUT_AT:OUTPUT_END]  # layout.record_output_hex, inlined
                path = f"{root}{OUTPUTS}/{hexid[:2]}/{hexid}"  # layout.output_path, inlined
                send(head + digits + hit_tail(output_id, size, time_ns, path))
                pos = end + 1
                requested.append(action_id)
                hits += 1
                hit_bytes += size
                if refreshed < stale:
                    cache.served_locally(action_id, fields)
                marks.append(path)  # DiskStore.mark_soon
        finally:
            inp.buf, inp.pos = buf, pos
            if hits:
                self.stats.add(gets=hits, local_hits=hits, hit_bytes=hit_bytes)

    def _handle(self, req: wire.Request) -> None:
        if req.error is None and req.body_size and req.command != wire.CMD_PUT:
            req = wire.Request(req.id, req.command, body_size=req.body_size,
                               error=f"{req.command} does not take a body")
        if req.error is not None:
            if req.body_size:
                self._input.read_body(req, _discard)
            if req.command == wire.CMD_GET:
                self.stats.add(gets=1, get_errors=1)
            elif req.command == wire.CMD_PUT:
                self.stats.add(puts=1, put_errors=1)
            self._log(f"request {req.id}: {req.error}")
            self.send(wire.error_response(req.id, req.error))
        elif req.command == wire.CMD_GET:
            self._get(req)
        else:
            self._put(req)

    def _get(self, req: wire.Request) -> None:
        hit = self.cache.get_local(req.action_id)
        if hit is not None:
            entry, path = hit
            self.send(wire.hit_response(req.id, entry.output_id, entry.size, entry.time_ns, path))
            self.cache.local.mark_soon(path)
            return
        self.stats.add(gets=1)
        if self.cache.remote_readable:
            pool, slots = self._get_pool()
            slots.acquire()
            try:
                pool.submit(self._get_remote, req, slots)
            except BaseException:
                slots.release()
                raise
        else:
            self.stats.add(misses=1)
            self.send(wire.miss_response(req.id))

    def _get_pool(self) -> tuple[ThreadPoolExecutor, BoundedSemaphore]:
        """The get workers, made on the first local miss (a warm run never needs them), and
        the semaphore that bounds the gets queued for them, so a flood of requests cannot
        grow memory."""
        if self._pool is None or self._slots is None:
            from concurrent.futures import ThreadPoolExecutor
            from threading import BoundedSemaphore

            self._slots = BoundedSemaphore(self._workers * 4)
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="get")
        return self._pool, self._slots

    def _get_remote(self, req: wire.Request, slots: BoundedSemaphore) -> None:
        try:
            hit = self.cache.get_remote(req.action_id)
        except Exception as exc:  # noqa: BLE001 - a bug here must cost a miss, not the build
            self._internal_errors += 1
            if self._internal_errors == 1:  # once: the next ones are most likely the same
                self._log(f"request {req.id}: internal error, answering miss (and the same "
                          f"for any more): {exc!r}")
            self.stats.add(get_errors=1)
            hit = None
        finally:
            slots.release()
        if hit is None:
            self.stats.add(misses=1)
            self.send(wire.miss_response(req.id))
        else:
            entry, path = hit
            self.send(wire.hit_response(req.id, entry.output_id, entry.size, entry.time_ns, path))

    def _put(self, req: wire.Request) -> None:
        self.stats.add(puts=1)
        try:
            writer, tmp = self.cache.begin_put()
        except LocalStoreError as exc:
            # Keep the stream in step even though the body has nowhere to go.
            if req.body_size:
                self._input.read_body(req, _discard)
            self._put_failed(req, str(exc))
            return
        try:
            problem = self._input.read_body(req, writer.write) if req.body_size else None
        except BaseException:
            discard(tmp)  # The input ended inside the body: nothing to keep.
            raise
        finally:
            os.close(writer.fd)
        if problem is not None:
            discard(tmp)
            self._put_failed(req, problem)
            return
        try:
            path = self.cache.finish_put(req.action_id, req.output_id, writer, tmp)
        except LocalStoreError as exc:
            self._put_failed(req, str(exc))
            return
        self.send(wire.put_response(req.id, path))

    def _put_failed(self, req: wire.Request, message: str) -> None:
        self.stats.add(put_errors=1)
        self._log(f"put {req.id} failed: {message}")
        self.send(wire.error_response(req.id, message))

    # -- the end ----------------------------------------------------------------------

    def finish(self, close_id: int | None) -> None:
        """Finish pending gets and uploads, report, answer close, and close stdout so cmd/go
        can go on. What the caller does after this is best effort."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.cache.drain()
        if self._on_drained is not None:
            self._on_drained()
        if close_id is not None:
            self.send(wire.close_response(close_id))
        try:
            os.close(self._out_fd)
        except OSError:
            pass
        sys.stderr.flush()
