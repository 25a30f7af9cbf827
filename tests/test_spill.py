"""The spill directory: large outputs on a shared volume, pointers in Redis (issue 8).

Runners here are the real stack in-process (local :class:`DiskStore`, :class:`Cache`,
:class:`Remote`, :class:`RedisStore` on the private redis-server) sharing one spill directory;
one test drives the helper process itself through ``REDIS_GOCACHE_SPILL_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_gocache.cache import Cache
from redis_gocache.exceptions import LocalStoreError, RejectedEntry
from redis_gocache.ops.spill_trim import trim_spill
from redis_gocache.ops.trim import PROTECT
from redis_gocache.remote import Remote
from redis_gocache.stats import Stats
from redis_gocache.store.base import Entry
from redis_gocache.store.disk import DiskStore
from redis_gocache.store.redis import RedisStore
from redis_gocache.store.spill import (
    USE_MARK_INTERVAL,
    SpillDir,
    check_pointer,
    copy_fd,
    pointer_for,
)
from tests.gocmd import GoCmd, action_id, helper_env
from tests.redisproc import RedisServer

INLINE_MAX = 16 * 1024
PREFIX = "gocache:"
DAY = 86400.0


def body_of(name: str, size: int) -> bytes:
    """Deterministic, incompressible bytes: stored as they are (no compression pays), so
    the files on the volume are the outputs themselves (compressed ones: test_compression)."""
    return random.Random(name).randbytes(size)


class Runner:
    """One CI runner: its own local directory, the shared Redis, maybe the spill directory."""

    def __init__(self, home: Path, url: str, spill: Path | None) -> None:
        self.stats = Stats()
        self.logged: list[str] = []
        self.spill = SpillDir(str(spill), log=self.logged.append) if spill else None
        self.store = RedisStore(url, prefix=PREFIX, ttl=3600, inline_max=INLINE_MAX,
                                timeout=2.0, retries=0, max_connections=4, spill=self.spill)
        remote = Remote(self.store, stats=self.stats, log=self.logged.append, describe="test")
        self.local = DiskStore(str(home / "v1")).open()
        self.cache = Cache(self.local, remote, self.stats)

    def put(self, name: str, body: bytes) -> str:
        writer, tmp = self.cache.begin_put()
        writer.write(body)
        os.close(writer.fd)
        path = self.cache.finish_put(action_id(name), hashlib.sha256(body).digest(), writer, tmp)
        self.cache.drain()
        return path

    def get(self, name: str) -> str | None:
        """The DiskPath of a remote hit, or None."""
        found = self.cache.get_remote(action_id(name))
        return None if found is None else found[1]

    def close(self) -> None:
        self.cache.close()
        if self.spill is not None:
            self.spill.close()


@pytest.fixture
def spill(tmp_path: Path) -> Path:
    path = tmp_path / "shared-volume"
    path.mkdir()
    return path


@pytest.fixture
def runners(
    tmp_path: Path, spill: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> Iterator[tuple[Runner, Runner, Runner]]:
    """A and B mount the spill directory; C does not."""
    made = [Runner(tmp_path / n, redis_server.url, spill if n != "C" else None) for n in "ABC"]
    yield made[0], made[1], made[2]
    for r in made:
        r.close()


def spill_file(spill: Path, body: bytes) -> Path:
    return spill / pointer_for(hashlib.sha256(body).digest())


def set_mtime(path: Path, when: float) -> None:
    os.utime(path, (when, when))


# -- two runners, one spill directory, one Redis ------------------------------------------------


def test_large_outputs_travel_through_the_directory_not_redis(
    runners: tuple[Runner, Runner, Runner], spill: Path, redis_client: redis.Redis
) -> None:
    a, b, _ = runners
    bodies = {f"big{i}": body_of(f"big{i}", size)
              for i, size in enumerate([INLINE_MAX + 1, 300_000, 5 * 1024 * 1024 + 7])}
    bodies["small"] = body_of("small", 1000)
    for name, body in bodies.items():
        a.put(name, body)
    assert a.stats.upload_errors == 0 and a.stats.uploads == len(bodies), a.stats

    # Redis holds records and pointers only: no blob keys, no large values.
    assert list(redis_client.scan_iter(f"{PREFIX}o:*")) == []
    for name, body in bodies.items():
        key = f"{PREFIX}a:{action_id(name).hex()}"
        h = redis_client.hgetall(key)
        if len(body) > INLINE_MAX:
            assert h[b"ref"] == b"f:" + pointer_for(hashlib.sha256(body).digest()).encode()
            assert b"body" not in h
            assert redis_client.hstrlen(key, "ref") == len("f:o/hh/") + 64
            usage = redis_client.memory_usage(key)
            assert usage is not None and usage < 1024, (name, usage)  # whatever the size
            assert spill_file(spill, body).read_bytes() == body
        else:
            assert redis_client.hstrlen(key, "body") == len(body)
    assert os.listdir(spill / "tmp") == []

    for name, body in bodies.items():
        path = b.get(name)
        assert path is not None, (name, b.stats)
        # Go gets a file in B's own directory, never the shared one.
        assert Path(path).is_relative_to(b.local.root) and not Path(path).is_relative_to(spill)
        assert Path(path).read_bytes() == body
        if len(body) > INLINE_MAX:
            assert not Path(path).samefile(spill_file(spill, body))
    assert b.stats.remote_hits == len(bodies) and not b.stats.rejected, b.stats


def test_redis_memory_per_cached_byte_with_and_without_the_directory(
    tmp_path: Path, spill: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    bodies = {f"o{i}": body_of(f"o{i}", 200_000 + i * 50_000) for i in range(8)}
    cached = sum(len(b) for b in bodies.values())
    usage: dict[str, int] = {}
    for label, mount in (("redis", None), ("spill", spill)):
        redis_client.flushall()
        r = Runner(tmp_path / label, redis_server.url, mount)
        for name, body in bodies.items():
            r.put(name, body)
        r.close()
        usage[label] = sum(redis_client.memory_usage(k) or 0
                           for k in redis_client.scan_iter(f"{PREFIX}[ao]:*"))
    assert usage["redis"] > cached  # every byte is in Redis, plus overhead
    assert usage["spill"] * 500 < usage["redis"], usage


def test_runner_without_the_directory_misses_large_outputs(
    runners: tuple[Runner, Runner, Runner], redis_client: redis.Redis
) -> None:
    a, _, c = runners
    big, small = body_of("big", 200_000), body_of("small", 100)
    a.put("big", big)
    a.put("small", small)
    assert c.get("big") is None
    assert c.stats.rejected == {"spill_unmounted": 1}, c.stats
    path = c.get("small")
    assert path is not None and Path(path).read_bytes() == small
    # Its own large puts go to Redis as they always did.
    c.put("own", big)
    h = redis_client.hgetall(f"{PREFIX}a:{action_id('own').hex()}")
    assert h[b"ref"] == b"o"
    assert redis_client.strlen(f"{PREFIX}o:{hashlib.sha256(big).hexdigest()}") == len(big)


def test_volume_not_mounted_is_a_miss_and_no_write(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    gone = tmp_path / "not-mounted"
    a = Runner(tmp_path / "A", redis_server.url, gone)
    a.put("big", body_of("big", 100_000))
    assert a.stats.upload_errors == 1 and not gone.exists()
    assert list(redis_client.scan_iter(f"{PREFIX}*")) == []  # nothing went to Redis instead
    assert any("spill directory" in line for line in a.logged), a.logged
    a.close()


# -- pointers that lie ---------------------------------------------------------------------------

OID = hashlib.sha256(b"x").digest()
GOOD = pointer_for(OID)


@pytest.mark.parametrize("ref", [
    "../../etc/passwd",
    "/etc/passwd",
    f"o/{OID.hex()[:2]}/../../{OID.hex()}",
    f"o/{OID.hex()[:2]}/{OID.hex()}/",
    f"o/{OID.hex()[:2]}/{OID.hex()}/x",
    f"./{GOOD}",
    f"o//{OID.hex()}",
    f"o/00/{OID.hex()}" if OID.hex()[:2] != "00" else f"o/11/{OID.hex()}",
    f"o/{OID.hex()[:2]}/{OID.hex().upper()}",
    f"o/{OID.hex()[:2]}/{hashlib.sha256(b'other').hexdigest()}",
    f"{GOOD}\n",
    f"{GOOD}\x00",
    "o/\u0661\u0662/" + OID.hex(),
    "",
])
def test_poisoned_pointers_are_refused_before_any_file_is_opened(ref: str) -> None:
    with pytest.raises(RejectedEntry) as info:
        check_pointer(ref.encode("utf-8"), OID)
    assert info.value.kind == "bad_ref"
    assert check_pointer(GOOD.encode(), OID) == GOOD


def test_a_poisoned_pointer_in_redis_is_a_rejected_miss(
    runners: tuple[Runner, Runner, Runner], spill: Path, redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    a, b, _ = runners
    secret = tmp_path / "secret"
    secret.write_bytes(b"not for Go")
    body = body_of("big", 50_000)
    a.put("big", body)
    key = f"{PREFIX}a:{action_id('big').hex()}"
    for ref in (f"f:../{secret.name}", f"f:{secret}", "f:o/../../secret", "x:whatever"):
        redis_client.hset(key, "ref", ref)
        assert b.get("big") is None
    assert b.stats.rejected == {"bad_ref": 3, "bad_fields": 1}, b.stats
    assert b.stats.remote_hits == 0


def test_symlinks_on_the_volume_are_not_followed(
    runners: tuple[Runner, Runner, Runner], spill: Path, tmp_path: Path
) -> None:
    a, b, _ = runners
    body = body_of("big", 60_000)
    a.put("big", body)
    target = spill_file(spill, body)
    # Outside the volume, a file with the right content: still refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / target.name).write_bytes(body)
    target.unlink()
    target.symlink_to(outside / target.name)
    assert b.get("big") is None
    # The <hh> directory a symlink to a directory outside.
    target.unlink()
    target.parent.rmdir()
    target.parent.symlink_to(outside, target_is_directory=True)
    assert b.get("big") is None
    assert b.stats.rejected == {"bad_ref": 2}, b.stats
    assert (outside / target.name).read_bytes() == body  # untouched


def test_a_fifo_in_place_of_a_file_does_not_block(
    runners: tuple[Runner, Runner, Runner], spill: Path
) -> None:
    a, b, _ = runners
    body = body_of("big", 60_000)
    a.put("big", body)
    target = spill_file(spill, body)
    target.unlink()
    os.mkfifo(target)
    start = time.monotonic()
    assert b.get("big") is None
    assert time.monotonic() - start < 5
    assert b.stats.rejected == {"bad_ref": 1}, b.stats


# -- files that lie --------------------------------------------------------------------------


def test_missing_truncated_and_corrupt_files_are_rejected_then_repaired(
    runners: tuple[Runner, Runner, Runner], spill: Path
) -> None:
    a, b, _ = runners
    body = body_of("big", 250_000)
    a.put("big", body)
    target = spill_file(spill, body)

    target.write_bytes(body[:-1000])  # shorter
    assert b.get("big") is None
    assert not target.exists()  # removed, so the next put can write it again
    assert b.get("big") is None  # now missing

    a.put("big", body)  # another run of the same action: the file is back
    assert target.read_bytes() == body
    corrupt = bytearray(body)
    corrupt[123_456] ^= 0xFF
    target.write_bytes(bytes(corrupt))  # same size, wrong content
    assert b.get("big") is None
    assert not target.exists()

    target.write_bytes(body + b"more")  # longer
    assert b.get("big") is None
    assert b.stats.rejected == {"spill_size": 2, "spill_missing": 1, "spill_hash": 1}, b.stats
    assert b.stats.remote_hits == 0
    # Nothing unverified reached B's directory.
    assert not any(p.is_file() for p in Path(b.local.root, "o").rglob("*"))

    a.put("big", body)
    path = b.get("big")
    assert path is not None and Path(path).read_bytes() == body


def test_a_wrong_size_file_is_replaced_by_the_next_writer(spill: Path, tmp_path: Path) -> None:
    body = body_of("big", 70_000)
    entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
    local = tmp_path / "local"
    local.write_bytes(body)
    s = SpillDir(str(spill))
    target = spill / s.store(entry, str(local))
    target.write_bytes(b"short")
    assert s.store(entry, str(local)) == pointer_for(entry.output_id)
    assert target.read_bytes() == body
    s.close()


# -- concurrent writers ----------------------------------------------------------------------


def test_concurrent_writer_threads_of_one_object(spill: Path, tmp_path: Path) -> None:
    body = body_of("shared", 3 * 1024 * 1024 + 5)
    entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
    local = tmp_path / "local"
    local.write_bytes(body)
    dirs = [SpillDir(str(spill)) for _ in range(8)]
    barrier = threading.Barrier(len(dirs))
    errors: list[BaseException] = []
    seen: list[bytes] = []

    def write(s: SpillDir) -> None:
        try:
            barrier.wait(10)
            s.store(entry, str(local))
            # Every reader, at any moment, sees the whole object or nothing.
            chunks: list[bytes] = []
            s.read(pointer_for(entry.output_id).encode(), entry, chunks.append)
            seen.append(b"".join(chunks))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert seen == [body] * len(dirs)
    assert (spill / pointer_for(entry.output_id)).read_bytes() == body
    assert os.listdir(spill / "tmp") == []
    for s in dirs:
        s.close()


def _write_in_process(spill: str, local: str, oid: bytes, size: int, start: float) -> None:
    while time.time() < start:
        time.sleep(0.001)
    s = SpillDir(spill)
    s.store(Entry(oid, size, time.time_ns()), local)
    s.close()


def test_concurrent_writer_processes_of_one_object(spill: Path, tmp_path: Path) -> None:
    body = body_of("shared", 2 * 1024 * 1024)
    local = tmp_path / "local"
    local.write_bytes(body)
    oid = hashlib.sha256(body).digest()
    ctx = multiprocessing.get_context("spawn")
    start = time.time() + 1.5
    procs = [ctx.Process(target=_write_in_process,
                         args=(str(spill), str(local), oid, len(body), start)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * 4
    assert (spill / pointer_for(oid)).read_bytes() == body
    assert os.listdir(spill / "tmp") == []


# -- copies ----------------------------------------------------------------------------------


def test_copy_fd_copies_exactly_and_refuses_a_short_source(tmp_path: Path) -> None:
    body = body_of("copy", 3_000_001)
    src_path = tmp_path / "src"
    src_path.write_bytes(body)
    src = os.open(src_path, os.O_RDONLY)
    try:
        for size in (0, 1, len(body)):
            dst_path = tmp_path / f"dst{size}"
            dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                method = copy_fd(src, dst, size)
            finally:
                os.close(dst)
            assert method in ("clone", "copy_file_range", "read")
            assert dst_path.read_bytes() == body[:size]
        dst = os.open(tmp_path / "short", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError):
                copy_fd(src, dst, len(body) + 10)
        finally:
            os.close(dst)
    finally:
        os.close(src)


class CloningSink:
    """A sink offering the ``clone_from`` fast path, as a local writer can."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self.streamed = 0
        self.methods: list[str] = []

    def __call__(self, piece: bytes) -> None:
        self.streamed += len(piece)
        os.write(self.fd, piece)

    def clone_from(self, src_fd: int, size: int) -> bytes | None:
        self.methods.append(copy_fd(src_fd, self.fd, size))
        digest = hashlib.sha256()
        done = 0
        while done < size:
            piece = os.pread(self.fd, 1 << 20, done)
            digest.update(piece)
            done += len(piece)
        return digest.digest()


def test_a_sink_that_clones_gets_the_kernel_copy_and_is_still_checked(
    spill: Path, tmp_path: Path
) -> None:
    body = body_of("clone", 400_000)
    entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
    (tmp_path / "local").write_bytes(body)
    s = SpillDir(str(spill))
    ref = s.store(entry, str(tmp_path / "local")).encode()
    sink = CloningSink(tmp_path / "copy")
    s.read(ref, entry, sink)
    os.close(sink.fd)
    assert sink.streamed == 0 and len(sink.methods) == 1
    assert (tmp_path / "copy").read_bytes() == body
    # A corrupt shared file is caught on the cloned copy's hash too.
    target = spill / ref.decode()
    target.write_bytes(body[:-1] + b"\x00")
    sink = CloningSink(tmp_path / "copy2")
    with pytest.raises(RejectedEntry) as info:
        s.read(ref, entry, sink)
    os.close(sink.fd)
    assert info.value.kind == "spill_hash" and not target.exists()
    s.close()


# -- use marks and trimming ------------------------------------------------------------------


def test_reads_writes_and_refreshes_mark_use_coarsely(
    runners: tuple[Runner, Runner, Runner], spill: Path
) -> None:
    a, b, _ = runners
    body = body_of("big", 80_000)
    a.put("big", body)
    target = spill_file(spill, body)
    old = time.time() - 3 * DAY
    recent = time.time() - USE_MARK_INTERVAL / 2

    set_mtime(target, recent)
    assert b.get("big") is not None
    assert target.stat().st_mtime == recent  # fresh enough: no write to the volume

    set_mtime(target, old)
    assert b.get("big") is not None
    assert time.time() - target.stat().st_mtime < 60

    set_mtime(target, old)
    a.put("big2", body)  # another action, same output: found, marked
    assert time.time() - target.stat().st_mtime < 60

    set_mtime(target, old)
    entry = Entry(hashlib.sha256(body).digest(), len(body), time.time_ns())
    a.store.refresh([(action_id("big"), entry)])
    assert time.time() - target.stat().st_mtime < 60


def test_trim_spill_removes_only_long_unreferenced_files(spill: Path) -> None:
    now = time.time()
    ttl = 7 * DAY
    objects: dict[str, float] = {
        "old": now - ttl - 2 * USE_MARK_INTERVAL,
        "within_ttl": now - ttl + USE_MARK_INTERVAL,
        "lag_margin": now - ttl - USE_MARK_INTERVAL / 2,  # a mark may lag by an hour
        "fresh": now - 60,
    }
    paths: dict[str, Path] = {}
    for name, mtime in objects.items():
        p = spill / pointer_for(hashlib.sha256(name.encode()).digest())
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(name.encode() * 100)
        set_mtime(p, mtime)
        paths[name] = p
    # Things trim must not touch: names that are not objects, a symlink.
    stranger = spill / "o" / "ab" / "notes.txt"
    stranger.parent.mkdir(parents=True, exist_ok=True)
    stranger.write_text("mine")
    set_mtime(stranger, now - 100 * DAY)
    link = spill / "o" / "ab" / ("ab" + "0" * 62)
    link.symlink_to(stranger)
    (spill / "tmp").mkdir(exist_ok=True)
    debris, writing = spill / "tmp" / "host-1-aa", spill / "tmp" / "host-2-bb"
    debris.write_bytes(b"x")
    writing.write_bytes(b"x")
    set_mtime(debris, now - 2 * 3600)

    dry = trim_spill(str(spill), max_age=ttl, now=now, dry_run=True)
    assert all(p.exists() for p in paths.values())
    result = trim_spill(str(spill), max_age=ttl, now=now)
    assert dry.as_dict() == result.as_dict()
    assert {n for n, p in paths.items() if p.exists()} == {"within_ttl", "lag_margin", "fresh"}
    assert result.outputs_removed == 1 and result.tmp_removed == 1
    assert result.outputs_kept == 3
    assert stranger.exists() and link.is_symlink() and writing.exists() and not debris.exists()

    # However short the age asked for, a file used within the last hour stays.
    result = trim_spill(str(spill), max_age=1, now=now)
    assert paths["fresh"].exists() and result.protected >= 1
    assert not paths["within_ttl"].exists()
    assert now - objects["fresh"] < PROTECT


def test_trim_spill_command(spill: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from redis_gocache.cli import build_cli

    p = spill / pointer_for(hashlib.sha256(b"o").digest())
    p.parent.mkdir(parents=True)
    p.write_bytes(b"o" * 10)
    set_mtime(p, time.time() - 30 * DAY)
    env = {"REDIS_GOCACHE_DIR": str(tmp_path / "cache"), "REDIS_GOCACHE_SPILL_DIR": str(spill)}
    cli = CliRunner()
    res = cli.invoke(build_cli(), ["trim", "--spill", "--json", "--dry-run"], env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["outputs_removed"] == 1 and p.exists()
    res = cli.invoke(build_cli(), ["trim", "--spill"], env=env)
    assert res.exit_code == 0 and "removed 1 outputs" in res.output, res.output
    assert not p.exists()
    res = cli.invoke(build_cli(), ["trim", "--spill"], env={"REDIS_GOCACHE_DIR": str(tmp_path)})
    assert res.exit_code == 2 and "--spill-dir" in res.output


# -- the helper process ----------------------------------------------------------------------


def test_helper_processes_share_large_outputs_through_the_directory(
    tmp_path: Path, spill: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    big, small = body_of("big", 700_000), body_of("small", 64)
    stats = tmp_path / "stats.jsonl"

    def env(name: str, mount: bool) -> dict[str, str]:
        extra = {"REDIS_GOCACHE_STATS_FILE": str(stats), "REDIS_GOCACHE_NO_FLEET_STATS": "1"}
        if mount:
            extra["REDIS_GOCACHE_SPILL_DIR"] = str(spill)
        return helper_env(tmp_path / name, redis_server.url, extra)

    with GoCmd(env("A", True)) as go:
        go.capability()
        assert "Err" not in go.put_wait(action_id("big"), big)
        assert "Err" not in go.put_wait(action_id("small"), small)
        go.close()
    assert spill_file(spill, big).read_bytes() == big
    assert list(redis_client.scan_iter(f"{PREFIX}o:*")) == []

    with GoCmd(env("B", True)) as go:
        go.capability()
        res = go.get_wait(action_id("big"))
        assert res["Size"] == len(big), go.describe()
        assert res["DiskPath"].startswith(str(tmp_path / "B"))
        assert Path(res["DiskPath"]).read_bytes() == big
        go.close()

    with GoCmd(env("C", False)) as go:
        go.capability()
        assert go.get_wait(action_id("big")).get("Miss") is True
        assert Path(go.get_wait(action_id("small"))["DiskPath"]).read_bytes() == small
        go.close()
    rows = [json.loads(line) for line in stats.read_text().splitlines()]
    assert rows[1]["remote_hits"] == 1 and rows[1]["rejected_total"] == 0, rows[1]
    assert rows[2]["rejected"] == {"spill_unmounted": 1}, rows[2]


def test_store_failure_is_an_upload_error_not_an_outage(
    tmp_path: Path, spill: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    r = Runner(tmp_path / "A", redis_server.url, spill)
    (spill / "o").write_text("a file where a directory should be")
    r.put("big", body_of("big", 90_000))
    r.put("small", body_of("small", 10))
    assert r.stats.upload_errors == 1 and r.stats.uploads == 1, r.stats
    assert r.cache.remote is not None and r.cache.remote.writable  # Redis is fine
    assert redis_client.exists(f"{PREFIX}a:{action_id('small').hex()}")
    with pytest.raises(LocalStoreError):
        assert r.spill is not None
        r.spill.store(Entry(b"\1" * 32, 1, 1), str(tmp_path / "nothing"))
    r.close()


def test_compose_demo_shares_a_spill_volume() -> None:
    import yaml

    root = Path(__file__).resolve().parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    go = compose["services"]["go"]
    target = go["environment"]["REDIS_GOCACHE_SPILL_DIR"]
    assert f"spill:{target}" in go["volumes"]
    volume = compose["volumes"]["spill"]
    # Writable by the runner image's user (uid 1000, see Dockerfile).
    assert "uid=1000" in volume["driver_opts"]["o"]
    assert "USER runner" in (root / "Dockerfile").read_text()
