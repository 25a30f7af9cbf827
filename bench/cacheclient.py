"""A timing client for a GOCACHEPROG helper: it plays cmd/go's side of the protocol.

Requests are written the way cmd/go writes them (a compact JSON line, an empty line, then for a
put with a body the base64 body as a JSON string on its own line), with a bounded number in
flight, as cmd/go has at most GOMAXPROCS outstanding. A reader thread stamps every response the
moment its line arrives, so a latency is "request written" to "response read", the same interval
cmd/go waits.

Every wait has a deadline; a helper that stalls or dies raises :class:`HelperFailed` with the
tail of its stderr.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CAPABILITY_TIMEOUT = 10.0
"""Seconds the helper may take to write its capability line."""

REQUEST_TIMEOUT = 60.0
"""Seconds any one response may take (a 256 MiB body on a slow machine included)."""

_B64_CHUNK = 3 * 1024 * 1024
"""Body bytes encoded per write; a multiple of 3 so chunks concatenate into valid base64."""


class HelperFailed(RuntimeError):
    """The helper broke the protocol, stalled, or exited early."""


@dataclass
class Op:
    """One request to send. ``body`` is only for puts."""

    command: str
    action: bytes = b""
    body: bytes | None = None

    @property
    def output_id(self) -> bytes:
        return hashlib.sha256(self.body or b"").digest()


@dataclass
class Timed:
    """One request with its response and latency in seconds."""

    op: Op
    response: dict[str, Any]
    seconds: float


def b64(data: bytes) -> str:
    return base64.standard_b64encode(data).decode("ascii")


class Helper:
    """One helper process, started at construction, with the capability line already read.

    ``startup_seconds`` is the time from just before ``exec`` to the capability line.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        stderr_path: str,
        *,
        capability_timeout: float = CAPABILITY_TIMEOUT,
        track_rss: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.stderr_path = stderr_path
        self._stderr_file = open(stderr_path, "wb")  # closed in wait() or kill()
        self._responses: queue.Queue[tuple[float, dict[str, Any] | None]] = queue.Queue()
        self._write_lock = threading.Lock()
        self._next_id = 0
        self.rusage: resource.struct_rusage | None = None
        self.returncode: int | None = None
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            env=dict(env),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.peak_rss = 0
        self._rss_thread: threading.Thread | None = None
        if track_rss:
            self._rss_thread = threading.Thread(target=self._watch_rss, daemon=True)
            self._rss_thread.start()
        try:
            stamp, first = self._responses.get(timeout=capability_timeout)
        except queue.Empty:
            self.kill()
            raise HelperFailed(
                f"no capability line in {capability_timeout}s; {self.describe()}"
            ) from None
        if first is None or first.get("ID", 0) != 0 or "KnownCommands" not in first:
            self.kill()
            raise HelperFailed(f"bad first line {first!r}; {self.describe()}")
        self.startup_seconds = stamp - start
        self.capabilities = list(first["KnownCommands"])

    # -- plumbing ------------------------------------------------------------------------

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in iter(self.proc.stdout.readline, b""):
            stamp = time.perf_counter()
            try:
                msg = json.loads(line)
            except ValueError:
                msg = {"ID": -1, "Err": f"bench: not JSON on stdout: {line[:200]!r}"}
            if not isinstance(msg, dict):
                msg = {"ID": -1, "Err": f"bench: not an object on stdout: {line[:200]!r}"}
            self._responses.put((stamp, msg))
        self._responses.put((time.perf_counter(), None))

    def _watch_rss(self) -> None:
        """Follow the helper's peak RSS (VmHWM) until it exits.

        Not ``wait4``'s ``ru_maxrss``: Linux carries the spawning process's high-water mark
        across ``exec`` into it, so a child of this (big) benchmark process would report the
        benchmark's own size. VmHWM belongs to the helper's address space alone.
        """
        path = f"/proc/{self.proc.pid}/status"
        while True:
            try:
                with open(path, "rb") as f:
                    status = f.read()
            except OSError:
                return
            for line in status.splitlines():
                if line.startswith(b"VmHWM:"):
                    self.peak_rss = max(self.peak_rss, int(line.split()[1]) * 1024)
                    break
            else:
                return  # a zombie has no memory lines: the helper is gone
            time.sleep(0.005)

    def describe(self) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 2000))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            tail = "(no stderr)"
        return f"helper {self.argv} rc={self.proc.poll()} stderr tail:\n{tail}"

    def _send(
        self, op: Op, on_start: Callable[[int, float], None] | None = None
    ) -> tuple[int, float]:
        """Write one request; return its ID and the time the write began.

        ``on_start(id, time)`` runs just before the first byte is written, so a caller can
        file the request before its answer can possibly arrive.
        """
        self._next_id += 1
        req: dict[str, Any] = {"ID": self._next_id, "Command": op.command}
        if op.command != "close":
            req["ActionID"] = b64(op.action)
        if op.command == "put":
            req["OutputID"] = b64(op.output_id)
            if op.body:
                req["BodySize"] = len(op.body)
        head = json.dumps(req, separators=(",", ":")).encode() + b"\n\n"
        assert self.proc.stdin is not None
        stdin = self.proc.stdin
        with self._write_lock:
            stamp = time.perf_counter()
            if on_start is not None:
                on_start(self._next_id, stamp)
            try:
                stdin.write(head)
                if op.command == "put" and op.body:
                    stdin.write(b'"')
                    view = memoryview(op.body)
                    for i in range(0, len(view), _B64_CHUNK):
                        stdin.write(base64.standard_b64encode(view[i : i + _B64_CHUNK]))
                    stdin.write(b'"\n')
                stdin.flush()
            except BrokenPipeError:
                raise HelperFailed(f"helper closed its stdin; {self.describe()}") from None
        return self._next_id, stamp

    def _recv(self, timeout: float) -> tuple[float, dict[str, Any]]:
        try:
            stamp, msg = self._responses.get(timeout=timeout)
        except queue.Empty:
            raise HelperFailed(f"no response within {timeout}s; {self.describe()}") from None
        if msg is None:
            raise HelperFailed(f"helper closed stdout; {self.describe()}")
        if msg.get("Err"):
            raise HelperFailed(f"error response {msg}; {self.describe()}")
        return stamp, msg

    # -- requests ------------------------------------------------------------------------

    def run(
        self, ops: Iterable[Op], inflight: int = 2, timeout: float = REQUEST_TIMEOUT
    ) -> list[Timed]:
        """Send ``ops`` keeping at most ``inflight`` unanswered; return each with its latency.

        Writes happen on a separate thread, as in cmd/go, so a helper that answers while it
        is still reading is not held up by this client.
        """
        slots = threading.Semaphore(inflight)
        sent: dict[int, tuple[Op, float]] = {}
        sent_lock = threading.Lock()
        ops = list(ops)
        failure: list[BaseException] = []

        def writer() -> None:
            try:
                for op in ops:
                    if not slots.acquire(timeout=timeout):
                        raise HelperFailed(f"no free slot in {timeout}s; {self.describe()}")

                    def file_it(rid: int, stamp: float, op: Op = op) -> None:
                        with sent_lock:
                            sent[rid] = (op, stamp)

                    self._send(op, file_it)
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        out: list[Timed] = []
        try:
            for _ in ops:
                stamp, msg = self._recv(timeout)
                with sent_lock:
                    op, began = sent.pop(int(msg.get("ID", 0)), (None, 0.0))
                if op is None:
                    raise HelperFailed(f"response to an unknown request: {msg}")
                slots.release()
                # The write of a big body may still be under way when an eager helper answers;
                # the latency then counts from the start of the write, as cmd/go's would.
                out.append(Timed(op, msg, stamp - began))
        finally:
            thread.join(timeout)
        if failure:
            raise failure[0]
        return out

    def close(self, timeout: float = REQUEST_TIMEOUT) -> float:
        """Send ``close``, wait for the answer and the exit; return the seconds close took."""
        rid, began = self._send(Op("close"))
        stamp, msg = self._recv(timeout)
        if msg.get("ID") != rid:
            raise HelperFailed(f"expected the answer to close, got {msg}")
        self.wait(timeout)
        return stamp - began

    def wait(self, timeout: float) -> int:
        """Close stdin and reap the process with ``wait4``, keeping its resource usage."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.rusage = usage
                self.returncode = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.returncode
                break
            if time.monotonic() > deadline:
                self.kill()
                raise HelperFailed(f"helper did not exit within {timeout}s; {self.describe()}")
            time.sleep(0.005)
        self._reader.join(timeout)
        if self._rss_thread is not None:
            self._rss_thread.join(timeout)
        self._stderr_file.close()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.returncode != 0:
            raise HelperFailed(f"helper exited {self.returncode}; {self.describe()}")
        return self.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if not self._stderr_file.closed:
            self._stderr_file.close()


def check_hit(t: Timed, body: bytes, *, read_body: bool) -> None:
    """Fail unless ``t`` is a hit serving ``body`` (size and output ID; contents if asked)."""
    res = t.response
    if res.get("Miss"):
        raise HelperFailed(f"expected a hit for {t.op.action.hex()}, got a miss")
    oid = base64.standard_b64decode(res.get("OutputID", ""))
    if oid != hashlib.sha256(body).digest():
        raise HelperFailed(f"wrong OutputID for {t.op.action.hex()}: {res}")
    if int(res.get("Size", 0)) != len(body):
        raise HelperFailed(f"wrong Size for {t.op.action.hex()}: {res}")
    path = res.get("DiskPath", "")
    if not path or os.path.getsize(path) != len(body):
        raise HelperFailed(f"DiskPath missing or of the wrong size: {res}")
    if read_body:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        if h.digest() != oid:
            raise HelperFailed(f"DiskPath {path} does not hold the body that was put")
