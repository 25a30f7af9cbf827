"""The cache: local directory first, remote second, and every check between them."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from redis_gocache.cache import REFRESH_INTERVAL, Cache
from redis_gocache.exceptions import RemoteUnavailable
from redis_gocache.remote import Breaker, Remote
from redis_gocache.stats import Stats
from redis_gocache.store.base import Entry
from redis_gocache.store.disk import DiskStore
from redis_gocache.store.layout import RECORD_SIZE, format_record
from redis_gocache.store.memory import MemoryStore


class Setup:
    def __init__(self, root: Path, memory: MemoryStore | None = None) -> None:
        self.memory = memory if memory is not None else MemoryStore(inline_max=64)
        self.stats = Stats()
        self.logged: list[str] = []
        self.breaker = Breaker(str(root / "breaker"), cooldown=60)
        self.remote = Remote(self.memory, stats=self.stats, log=self.logged.append,
                             describe="mem", breaker=self.breaker)
        self.local = DiskStore(str(root / "v1")).open()
        self.cache = Cache(self.local, self.remote, self.stats)

    def put(self, action: bytes, body: bytes, output_id: bytes | None = None) -> str:
        writer, tmp = self.cache.begin_put()
        writer.write(body)
        os.close(writer.fd)
        path = self.cache.finish_put(action, output_id or hashlib.sha256(body).digest(),
                                     writer, tmp)
        self.cache.drain()
        return path


def test_put_materializes_locally_and_uploads(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action, body = os.urandom(32), b"hello" * 100
    path = s.put(action, body)
    assert Path(path).read_bytes() == body
    assert path == s.local.output_path(hashlib.sha256(body).hexdigest())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for d in (s.local.root, os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert s.memory.records[action][0].output_id == hashlib.sha256(body).digest()
    hit = s.cache.get_local(action)
    assert hit is not None and hit[1] == path and hit[0].size == len(body)
    assert s.stats.uploads == 1 and s.stats.upload_bytes == len(body)


def test_new_runner_gets_verified_remote_hits(tmp_path: Path) -> None:
    a = Setup(tmp_path / "a")
    small, big = os.urandom(32), os.urandom(32)
    a.put(small, b"tiny")
    a.put(big, os.urandom(1000))
    b = Setup(tmp_path / "b", memory=a.memory)
    assert b.cache.get_local(small) is None
    for action in (small, big):
        hit = b.cache.get_remote(action)
        assert hit is not None
        entry, path = hit
        assert hashlib.sha256(Path(path).read_bytes()).digest() == entry.output_id
        # Once fetched, the next get is local.
        assert b.cache.get_local(action) is not None
    assert b.stats.remote_hits == 2 and b.stats.rejected == {}


def test_a_remote_body_that_does_not_match_is_rejected(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    good = hashlib.sha256(b"good").digest()
    s.memory.records[action] = (Entry(good, 4, 1), b"evil")
    assert s.cache.get_remote(action) is None
    assert s.stats.rejected == {"hash": 1}
    assert s.cache.get_local(action) is None
    assert not os.path.exists(s.local.output_path(good.hex()))
    assert os.listdir(s.local.tmp_dir) == []  # nothing left behind


def test_a_put_whose_body_is_not_its_output_id_is_stored_nowhere(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    path = s.put(action, b"body", output_id=hashlib.sha256(b"other").digest())
    assert Path(path).read_bytes() == b"body"  # the build still gets its file
    assert s.memory.records == {} and s.cache.get_local(action) is None
    assert s.stats.rejected == {"put_hash": 1}


def test_redis_down_degrades_once_and_trips_the_breaker(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.memory.fail = RemoteUnavailable("connection refused")
    for _ in range(3):
        assert s.cache.get_remote(os.urandom(32)) is None
    s.put(os.urandom(32), b"still works")
    assert len(s.logged) == 1 and "unavailable" in s.logged[0]
    assert s.stats.get_errors == 1  # later gets never reached the store
    assert s.breaker.open_until() > time.time()
    # The next helper skips Redis at once.
    s2 = Setup(tmp_path, memory=s.memory)
    assert not s2.remote.readable and "failed recently" in s2.logged[0]


def test_local_hits_refresh_remote_ttl_at_most_daily(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    s.put(action, b"x")
    found = s.cache.get_local(action)
    assert found is not None
    s.cache.refresh_served()
    assert s.memory.refreshed == []  # just written: fresh enough
    old = time.time() - REFRESH_INTERVAL - 60
    s.local.write_action(action.hex(), found[0], refreshed=old)
    assert s.cache.get_local(action) is not None
    s.cache.refresh_served()
    assert s.memory.refreshed == [action]
    s.cache.close()
    # The refresh is in the log: the next helper does not refresh again.
    again = DiskStore(s.local.root).lookup(action.hex())
    assert again is not None and again[2] > old + 60


def _record(action: bytes, **fields: str) -> str:
    line = format_record(action.hex(), Entry(b"\x07" * 32, 5, 1), 0)
    parts = dict(zip(("action", "oid", "size", "time", "refreshed"), line.split(" "), strict=True))
    parts.update(fields)
    return " ".join(parts.values())


@pytest.mark.parametrize(
    "line",
    [
        lambda a: "",
        lambda a: "garbage\n",
        lambda a: _record(a)[:100],
        lambda a: _record(a, oid="ab".ljust(64, "-")),
        lambda a: _record(a, size="x" * 15),
        lambda a: _record(a, time="-" + "1" * 18),
    ],
    ids=["empty", "garbage", "torn", "bad-oid", "bad-size", "negative-time"],
)
def test_a_broken_local_record_is_a_miss(tmp_path: Path, line: Callable[[bytes], str]) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    Path(s.local.log_path).write_text(line(action), encoding="ascii")
    assert s.cache.get_local(action) is None


def test_a_local_hit_answers_from_the_record_without_opening_the_output(tmp_path: Path) -> None:
    """The output's size is cmd/go's to check (cache.GetFile): it treats a file that went
    missing or changed size as a miss and builds and puts again (tests/e2e:
    test_local_mode_second_build_hits). The helper answers from its record alone."""
    s = Setup(tmp_path)
    action = os.urandom(32)
    path = s.put(action, b"twelve bytes")
    os.unlink(path)
    found = s.cache.get_local(action)
    assert found is not None
    entry, answered = found
    assert (entry.size, answered) == (12, path)


def test_records_appended_while_a_trim_replaces_the_log_are_kept(tmp_path: Path) -> None:
    """The trim rewrites the action log by rename; a helper still appending to the old file
    appends its records to the new one when it closes."""
    s = Setup(tmp_path)
    first, second = os.urandom(32), os.urandom(32)
    s.put(first, b"before the trim")
    # Another process's trim: the log is replaced by a new file (here: without any record).
    replacement = Path(s.local.log_path + ".new")
    replacement.write_text("", encoding="ascii")
    os.replace(replacement, s.local.log_path)
    s.put(second, b"after the trim")  # appended to the old, unlinked file
    s.cache.close()
    fresh = DiskStore(s.local.root)
    assert fresh.lookup(first.hex()) is not None and fresh.lookup(second.hex()) is not None


def test_the_log_holds_the_latest_record_of_an_action(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    s.put(action, b"one")
    s.put(action, b"two")
    s.cache.close()
    found = DiskStore(s.local.root).lookup(action.hex())
    assert found is not None and Path(found[1]).read_bytes() == b"two"
    assert os.path.getsize(s.local.log_path) == 2 * RECORD_SIZE


def test_prefetch_many_fetches_inline_entries_and_releases_every_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = Setup(tmp_path / "writer")
    actions = [os.urandom(32) for _ in range(4)]
    for i, action in enumerate(actions):
        writer.put(action, b"x" * (10 if i % 2 else 200))  # inline up to 64 bytes here
    s = Setup(tmp_path / "reader", memory=writer.memory)
    blobs = s.cache.prefetch_many(actions)
    assert [a for a, _ in blobs] == actions[0::2]  # left for the one-entry way
    assert [s.local.has(a.hex()) for a in actions] == [False, True, False, True]
    records = dict(writer.memory.records)
    writer.memory.records.clear()  # the rest of a lookup needs no second look at the record
    assert all(s.cache.prefetch(a, pending) for a, pending in blobs)
    writer.memory.records.update(records)
    assert all(s.local.has(a.hex()) for a in actions)
    assert s.stats.prefetched == 4 and s.cache._inflight == {}

    # A failure halfway through a batch must not leave claims behind: a get would wait on one.
    broken = Setup(tmp_path / "broken", memory=writer.memory)
    calls = []

    def new_file() -> tuple[int, str]:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("injected")
        return DiskStore.new_file(broken.local)

    monkeypatch.setattr(broken.local, "new_file", new_file)
    with pytest.raises(RuntimeError):
        broken.cache.prefetch_many(actions)
    assert broken.cache._inflight == {}


def test_get_waiting_on_a_claim_let_go_without_a_file_fetches_it_itself(tmp_path: Path) -> None:
    """A prefetch batch reads a blob's record, then lets its claim go and fetches the blob
    later: a get that waited on that claim must fetch the entry, not answer a miss."""
    import threading

    writer = Setup(tmp_path / "writer")
    action, body = os.urandom(32), b"blob" * 100  # above inline_max: a blob
    writer.put(action, body)
    s = Setup(tmp_path / "reader", memory=writer.memory)
    waiting = threading.Event()

    class Watched(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waiting.set()
            return super().wait(timeout)

    assert s.cache._claim(action) is None  # the prefetcher's claim
    s.cache._inflight[action] = Watched()
    got: list[tuple[Entry, str] | None] = []
    getter = threading.Thread(target=lambda: got.append(s.cache.get_remote(action)))
    getter.start()
    assert waiting.wait(10)
    s.cache._release(action)  # let go, no file written
    getter.join(10)
    assert got and got[0] is not None, "answered a miss"
    entry, path = got[0]
    assert Path(path).read_bytes() == body and entry.size == len(body)
    assert s.stats.remote_hits == 1 and s.cache._inflight == {}
