"""The reader's fast path for local hits (``Server._local_hits``) and the queued use marks.

The server runs in this process over real files and pipes, with a real local directory and
an in-memory remote store, so each test can see which path answered what.
"""

from __future__ import annotations

import _thread
import base64
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from redis_gocache import wire
from redis_gocache.cache import REFRESH_INTERVAL
from redis_gocache.ops.trim import PROTECT
from redis_gocache.server import Server
from redis_gocache.store import disk
from redis_gocache.store.disk import MARK_DELAY, USE_MARK_INTERVAL, DiskStore
from tests.test_cache import Setup

DAY = 86400.0


def plain_get(req_id: int, action: bytes) -> bytes:
    """A get exactly as cmd/go writes it, and the empty line after it."""
    return b'{"ID":%d,"Command":"get","ActionID":"%s"}\n\n' % (req_id, base64.b64encode(action))


def reordered_get(req_id: int, action: bytes) -> bytes:
    """The same get in another key order: valid JSON that only the general path takes."""
    return json.dumps({"ActionID": base64.b64encode(action).decode(), "Command": "get",
                       "ID": req_id}).encode() + b"\n"


class Run:
    """One helper run: the server reads ``requests`` and answers into a file."""

    def __init__(self, s: Setup, tmp: Path) -> None:
        self.s = s
        self.tmp = tmp
        self.general: list[bytes] = []  # action ids that reached Cache.get_local
        get_local = s.cache.get_local

        def spy(action_id: bytes) -> object:
            self.general.append(action_id)
            return get_local(action_id)

        s.cache.get_local = spy  # type: ignore[method-assign]

    def serve(self, requests: bytes, pieces: int = 0,
              answers: dict[bytes, bytes] | None = None) -> dict[int, bytes]:
        """Serve ``requests`` (written in ``pieces`` bytes at a time through a pipe, when
        given; with ``answers`` kept from a last run) and return each answer line by its ID."""
        out_path = self.tmp / "answers"
        out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if pieces:
            in_fd, writer_fd = os.pipe()

            def write() -> None:
                for i in range(0, len(requests), pieces):
                    os.write(writer_fd, requests[i:i + pieces])
                    time.sleep(0.0005)
                os.close(writer_fd)

            writer = threading.Thread(target=write)
            writer.start()
        else:
            (self.tmp / "requests").write_bytes(requests)
            in_fd = os.open(self.tmp / "requests", os.O_RDONLY)
        server = Server(self.s.cache, in_fd=in_fd, out_fd=out_fd, stats=self.s.stats,
                        log=self.s.logged.append, workers=2, answers=answers)
        assert server.serve() == 0
        if pieces:
            writer.join()
        os.close(in_fd)
        lines = out_path.read_bytes().splitlines()
        return {json.loads(line)["ID"]: line for line in lines}


def without_id(answer: bytes) -> dict[str, object]:
    fields = json.loads(answer)
    del fields["ID"]
    return dict(fields)


def test_local_hits_take_the_fast_path_and_answer_as_the_general_one(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    a, b, unknown = os.urandom(32), os.urandom(32), os.urandom(32)
    body_a, body_b = b"alpha" * 100, b"beta" * 7
    s.put(a, body_a)
    s.put(b, body_b)
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    answers = run.serve(plain_get(1, a) + reordered_get(2, b) + plain_get(3, unknown)
                        + plain_get(4, b) + b'{"ID":5,"Command":"close"}\n')
    # Only the reordered get and the miss went the general way; the fast path resumed after.
    assert run.general == [b, unknown]
    assert without_id(answers[2]) == without_id(answers[4])
    assert json.loads(answers[3]) == {"ID": 3, "Miss": True}
    hit = json.loads(answers[1])
    assert Path(hit["DiskPath"]).read_bytes() == body_a and hit["Size"] == len(body_a)
    assert answers[5] == wire.close_response(5).rstrip(b"\n")
    stats = run.s.stats
    assert (stats.gets, stats.local_hits, stats.misses) == (4, 3, 1)
    assert stats.hit_bytes == len(body_a) + 2 * len(body_b)
    # The manifest for the next new runner lists every get, in order, whichever path took it.
    assert run.s.cache.requested == [a, b, unknown, b]


def test_requests_split_across_reads_are_answered(tmp_path: Path) -> None:
    """A line can arrive in pieces; the fast path waits for its end before reading it."""
    s = Setup(tmp_path)
    actions = [os.urandom(32) for _ in range(20)]
    for i, action in enumerate(actions):
        s.put(action, b"%d" % i * 50)
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    requests = b"".join(plain_get(i + 1, action) for i, action in enumerate(actions))
    answers = run.serve(requests + b'{"ID":99,"Command":"close"}\n\n', pieces=7)
    assert run.general == []
    for i in range(len(actions)):
        assert Path(json.loads(answers[i + 1])["DiskPath"]).read_bytes() == b"%d" % i * 50
    assert 99 in answers and run.s.stats.local_hits == 20


def test_a_broken_record_is_left_to_the_general_path(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    s.put(action, b"body")
    s.cache.close()
    log = Path(s.local.log_path)
    log.write_text(log.read_text().replace(" ", "x", 1))  # same length, not a record any more
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    answers = run.serve(plain_get(1, action))
    assert run.general == [action]
    # Not a local hit: the general path found it in Redis and wrote it back.
    assert "DiskPath" in json.loads(answers[1]) and run.s.stats.remote_hits == 1


def fresh_and_stale(s: Setup) -> tuple[bytes, bytes]:
    """Two local entries: one whose Redis TTL was refreshed just now, one over a day ago."""
    fresh, stale = os.urandom(32), os.urandom(32)
    s.put(fresh, b"fresh")
    s.put(stale, b"stale")
    found = s.local.lookup(stale.hex())
    assert found is not None
    s.local.write_action(stale.hex(), found[0], refreshed=time.time() - REFRESH_INTERVAL - 60)
    return fresh, stale


def test_fast_local_hits_refresh_stale_redis_ttls(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    fresh, stale = fresh_and_stale(s)
    s.cache.close()
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    run.serve(plain_get(1, fresh) + plain_get(2, stale))
    assert run.general == []
    run.s.cache.refresh_served()
    assert s.memory.refreshed == [stale]


def test_queued_use_marks_are_made_within_the_delay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hit's use mark is queued, and made by a thread without waiting for the run's end;
    closing the store makes the rest and stops the thread."""
    started: list[int] = []
    ended: list[int] = []

    def start_new_thread(function: Any, args: tuple[Any, ...]) -> int:
        # The store's own thread, watched alone: other tests' threads may come and go.
        def run(*a: Any) -> None:
            try:
                function(*a)
            finally:
                ended.append(1)

        started.append(1)
        return _thread.start_new_thread(run, args)

    monkeypatch.setattr(disk, "start_new_thread", start_new_thread)
    store = DiskStore(str(tmp_path / "v1")).open()
    store.mark_delay = 0.05
    old = time.time() - 3 * DAY
    files = []
    for name in ("first", "second"):
        path = tmp_path / name
        path.write_bytes(b"x")
        os.utime(path, (old, old))
        files.append(path)
    store.mark_soon(str(files[0]))
    deadline = time.monotonic() + 10
    while files[0].stat().st_mtime == old and time.monotonic() < deadline:
        time.sleep(0.01)
    assert time.time() - files[0].stat().st_mtime < 60
    store.mark_delay = 3600.0  # the next round is far off: only close() can make this mark
    time.sleep(0.2)
    store.mark_soon(str(files[1]))
    assert started == [1] and not ended  # one thread, still running
    store.close()
    assert time.time() - files[1].stat().st_mtime < 60
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ended == [1]


def test_a_queued_mark_lands_inside_the_trims_protection() -> None:
    """The trim spares files marked within PROTECT; a mark may be USE_MARK_INTERVAL stale
    and MARK_DELAY late, and must still land inside it."""
    assert USE_MARK_INTERVAL + MARK_DELAY < PROTECT


@pytest.mark.parametrize("prefetching", [False, True])
def test_a_prefetching_run_counts_through_the_general_path(
        tmp_path: Path, prefetching: bool) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    s.put(action, b"body")
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)

    class Idle:
        def stop(self) -> None:
            pass

    if prefetching:
        run.s.cache.prefetcher = Idle()
    run.serve(plain_get(1, action))
    assert run.general == ([action] if prefetching else [])
    assert run.s.stats.local_hits == 1
