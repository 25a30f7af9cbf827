"""Redis trouble and bad Redis data, replayed: what a real ``go build`` + ``go test`` sent to
its helpers (recorded once per session by the ``go_recording`` fixture, bodies included) is
played through the real helper while Redis is absent, killed, restarted empty, stalled, full,
refusing writes, or holding corrupted entries.

Every replay checks what cmd/go would check and more: no ``Err`` answer, every put's
``DiskPath`` holds exactly the body, every hit's file has the size and SHA-256 it claims, and
the output id the recorded build produced for that action. Real builds under faults are in
``test_faults_build.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from redis_gocache import wire
from tests import locallog
from tests.conftest import GoRecording
from tests.gocmd import (
    CAPABILITIES,
    GoCmd,
    action_id,
    b64,
    encode_request,
    helper_command,
    helper_env,
    unb64,
)
from tests.redisproc import RedisServer

INLINE_MAX = 16 * 1024
"""Small enough that the recorded build has both inline entries and blob entries."""

REPLAY_TIMEOUT = 60.0


# -- recorded streams ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Req:
    id: int
    command: str
    action_id: bytes
    output_id: bytes
    body: bytes

    def encode(self) -> bytes:
        req: dict[str, Any] = {"ID": self.id, "Command": self.command}
        if self.action_id:
            req["ActionID"] = b64(self.action_id)
        if self.output_id:
            req["OutputID"] = b64(self.output_id)
        if self.body:
            req["BodySize"] = len(self.body)
        return encode_request(req, self.body or None)


def parse_stream(data: bytes) -> list[Req]:
    """The requests of one recorded stream, ``close`` left out (the replay sends its own)."""
    fd = os.memfd_create("stream")
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        stream = wire.InputStream(fd)
        out = []
        while (line := stream.readline()) is not None:
            req = wire.parse_request(line)
            assert req.error is None, req
            pieces: list[bytes] = []
            if req.body_size:
                assert stream.read_body(req, pieces.append) is None
            if req.command != wire.CMD_CLOSE:
                out.append(Req(req.id, req.command, req.action_id, req.output_id,
                               b"".join(pieces)))
        return out
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def streams(go_recording: GoRecording) -> list[list[Req]]:
    return [parse_stream(s) for s in go_recording.streams]


def truth_of(streams: Sequence[Sequence[Req]]) -> dict[bytes, bytes]:
    """Action id -> output id, as the real build put them."""
    return {r.action_id: r.output_id for s in streams for r in s if r.command == "put"}


def never_put(streams: Sequence[Sequence[Req]]) -> int:
    """Gets of actions the recorded build never put (test-result lookups): always misses."""
    truth = truth_of(streams)
    return sum(1 for s in streams for r in s if r.command == "get" and r.action_id not in truth)


# -- replay --------------------------------------------------------------------------


@dataclasses.dataclass
class Played:
    stats: dict[str, Any]
    stderr: str
    seconds: float
    hits: int
    misses: int


def replay_one(
    reqs: Sequence[Req],
    cache_dir: Path,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
    truth: dict[bytes, bytes] | None = None,
    during: Callable[[int], None] | None = None,
) -> Played:
    """Play one recorded stream through a fresh helper and check every answer."""
    stats_file = cache_dir.parent / f"stats-{os.urandom(4).hex()}.jsonl"
    full_env = {"REDIS_GOCACHE_STATS_FILE": str(stats_file),
                "REDIS_GOCACHE_INLINE_MAX": str(INLINE_MAX), **(env or {})}
    t0 = time.monotonic()
    with GoCmd(helper_env(cache_dir, redis_url, full_env)) as cmd:
        assert cmd.capability() == CAPABILITIES, cmd.describe()
        answers: dict[int, dict[str, Any]] = {}
        pending: dict[bytes, int] = {}  # action -> ID of its unanswered get
        for n, req in enumerate(reqs):
            if during is not None:
                during(n)
            if req.command == "put" and req.action_id in pending:
                # cmd/go puts an action only after its get was answered; so do we (else the
                # put's upload could race the get's read of the same Redis record).
                get_id = pending.pop(req.action_id)
                answers[get_id] = cmd.recv(get_id, timeout=REPLAY_TIMEOUT)
            cmd.write(req.encode(), timeout=REPLAY_TIMEOUT)
            if req.command == "get":
                pending[req.action_id] = req.id
        hits = misses = 0
        for req in reqs:
            res = answers.pop(req.id, None) or cmd.recv(req.id, timeout=REPLAY_TIMEOUT)
            assert "Err" not in res, (req.command, res, cmd.describe())
            if req.command == "put":
                assert_file(res["DiskPath"], hashlib.sha256(req.body).digest(), len(req.body))
            elif res.get("Miss"):
                misses += 1
            else:
                hits += 1
                oid = unb64(res["OutputID"])
                assert_file(res["DiskPath"], oid, res.get("Size", 0))
                if truth is not None and req.action_id in truth:
                    assert oid == truth[req.action_id], "a hit with another build's output"
                re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", res["Time"])
        cmd.close(timeout=REPLAY_TIMEOUT)
        assert cmd.junk == [], cmd.junk[:3]
        stderr = cmd.stderr
    seconds = time.monotonic() - t0
    assert "Traceback" not in stderr, stderr
    rows = [json.loads(x) for x in stats_file.read_text().splitlines()]
    assert len(rows) == 1, rows
    return Played(rows[0], stderr, seconds, hits, misses)


def replay(
    streams: Sequence[Sequence[Req]],
    cache_dir: Path,
    redis_url: str | None = None,
    env: dict[str, str] | None = None,
    during: Callable[[int, int], None] | None = None,
) -> list[Played]:
    """Play every stream in order, one helper each, on one local directory (one runner)."""
    truth = truth_of(streams)
    out = []
    for k, reqs in enumerate(streams):
        hook = (lambda n, k=k: during(k, n)) if during is not None else None
        out.append(replay_one(reqs, cache_dir, redis_url, env, truth, hook))
    return out


def assert_file(path: str, oid: bytes, size: int) -> None:
    assert os.path.isabs(path), path
    data = Path(path).read_bytes()
    assert len(data) == size, f"{path}: {len(data)} bytes, answer says {size}"
    assert hashlib.sha256(data).digest() == oid, f"{path} does not hash to its output id"


def total(played: Sequence[Played], key: str) -> int:
    return sum(int(p.stats[key]) for p in played)


def rejected(played: Sequence[Played]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in played:
        for kind, n in p.stats["rejected"].items():
            out[kind] = out.get(kind, 0) + n
    return out


def warning_lines(played: Sequence[Played]) -> list[str]:
    """stderr lines other than the known-quiet notices."""
    return [line for p in played for line in p.stderr.splitlines() if line.strip()]


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A private redis-server of this test alone (the test may break it)."""
    with RedisServer() as srv:
        yield srv


def client_of(srv: RedisServer, **kw: Any) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=srv.port, socket_timeout=5, **kw)


def seed(streams: Sequence[Sequence[Req]], tmp_path: Path, url: str) -> list[Played]:
    """A writer runner fills Redis from the recording, uncompressed: the corruption matrix
    mutates raw records and blobs (compressed ones: tests/test_compression.py)."""
    played = replay(streams, tmp_path / "seeder", url, {"REDIS_GOCACHE_COMPRESSION": "none"})
    assert total(played, "uploads") == total(played, "puts"), [p.stats for p in played]
    assert total(played, "upload_errors") == 0
    return played


@pytest.fixture(scope="module")
def seed_rdb(streams: list[list[Req]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Redis as the recorded build left it, saved once as an RDB file."""
    tmp = tmp_path_factory.mktemp("seed")
    with RedisServer() as srv:
        seed(streams, tmp, srv.url)
        client_of(srv).save()
        shutil.copy(os.path.join(srv.dir, "dump.rdb"), tmp / "seed.rdb")
    return tmp / "seed.rdb"


def start_seeded(seed_rdb: Path, extra: Sequence[str] = ()) -> RedisServer:
    srv = RedisServer(["--dbfilename", "seed.rdb", *extra])
    shutil.copy(seed_rdb, os.path.join(srv.dir, "seed.rdb"))
    srv.start()
    assert client_of(srv).dbsize() > 0
    return srv


@pytest.fixture
def seeded(seed_rdb: Path) -> Iterator[RedisServer]:
    """A private redis-server of this test alone, holding the seeded cache."""
    srv = start_seeded(seed_rdb)
    try:
        yield srv
    finally:
        srv.cleanup()


# -- the healthy case, for reference ----------------------------------------------------


def test_fresh_runner_is_served_from_redis(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    server = seeded
    played = replay(streams, tmp_path / "fresh", server.url)
    assert total(played, "misses") == never_put(streams), [p.stats for p in played]
    assert total(played, "remote_hits") > 0
    assert rejected(played) == {}
    assert warning_lines(played) == []


# -- corruption matrix ----------------------------------------------------------------

Mutation = Callable[[redis.Redis, str, dict[bytes, bytes], str], None]


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x5A])


def _blob_key(fields: dict[bytes, bytes]) -> str:
    return f"gocache:o:{fields[b'oid'].decode()}"


CORRUPTIONS: dict[str, tuple[str, Mutation, str]] = {
    # name: (which entries, how, expected rejection kind)
    "inline-truncated": ("inline", lambda c, k, f, p: c.hset(k, "body", f[b"body"][:-1]),
                         "truncated"),
    "inline-bitflip": ("inline", lambda c, k, f, p: c.hset(k, "body", _flip_last(f[b"body"])),
                       "hash"),
    "inline-no-body-no-ref": ("inline", lambda c, k, f, p: c.hdel(k, "body"), "bad_fields"),
    "blob-missing": ("blob", lambda c, k, f, p: c.delete(_blob_key(f)), "missing_blob"),
    "blob-shorter": ("blob", lambda c, k, f, p: c.set(_blob_key(f),
                                                     c.getrange(_blob_key(f), 0, 99)),
                     "truncated"),
    "blob-bitflip": ("blob", lambda c, k, f, p: c.setrange(
        _blob_key(f), 7, bytes([c.getrange(_blob_key(f), 7, 7)[0] ^ 1])), "hash"),
    "missing-oid": ("any", lambda c, k, f, p: c.hdel(k, "oid"), "bad_fields"),
    "missing-size": ("any", lambda c, k, f, p: c.hdel(k, "size"), "bad_fields"),
    "missing-time": ("any", lambda c, k, f, p: c.hdel(k, "time"), "bad_fields"),
    "size-garbage": ("any", lambda c, k, f, p: c.hset(k, "size", "12kB"), "bad_fields"),
    "size-negative": ("any", lambda c, k, f, p: c.hset(k, "size", "-1"), "bad_fields"),
    "size-larger": ("any", lambda c, k, f, p: c.hset(k, "size", int(f[b"size"]) + 1),
                    "truncated"),
    "time-garbage": ("any", lambda c, k, f, p: c.hset(k, "time", "yesterday"), "bad_fields"),
    "time-far-future": ("any", lambda c, k, f, p: c.hset(
        k, "time", time.time_ns() + 400 * 24 * 3600 * 10**9), "bad_fields"),
    "time-year-30000": ("any", lambda c, k, f, p: c.hset(k, "time", 9 * 10**20), "bad_fields"),
    "oid-31-bytes": ("any", lambda c, k, f, p: c.hset(k, "oid", f[b"oid"][:62]), "bad_fields"),
    "oid-uppercase": ("any", lambda c, k, f, p: c.hset(k, "oid", f[b"oid"].upper()),
                      "bad_fields"),
    "oid-path-escape": ("any", lambda c, k, f, p: c.hset(k, "oid", "../" * 20 + "x" * 4),
                        "bad_fields"),
    "oid-of-other-body": ("inline", lambda c, k, f, p: c.hset(
        k, "oid", hashlib.sha256(b"another body").hexdigest()), "hash"),
}


def test_corruption_matrix(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    """Every kind of bad entry, spread over one seeded cache; a fresh runner's build is still
    complete and correct, and each corrupted entry is counted under its kind."""
    server = seeded
    c = client_of(server)
    # Only actions the build asks for before it puts them (some are put first, by the build,
    # then got by the test run: those would be healed before anyone reads them).
    first: dict[bytes, str] = {}
    for s in streams:
        for r in s:
            first.setdefault(r.action_id, r.command)
    wanted = {f"gocache:a:{a.hex()}" for a, cmd in first.items() if cmd == "get"}
    keys = sorted(k for k in (k.decode() for k in c.scan_iter("gocache:a:*", count=1000))
                  if k in wanted)
    records = {k: c.hgetall(k) for k in keys}
    inline = [k for k in keys if b"body" in records[k] and int(records[k][b"size"]) > 8]
    blob = [k for k in keys if records[k].get(b"ref") == b"o"]
    assert len(inline) >= 20 and len(blob) >= 10, (len(inline), len(blob))
    rng = random.Random(20240611)
    rng.shuffle(inline)
    rng.shuffle(blob)
    pools = {"inline": inline, "blob": blob}
    used: set[str] = set()
    expected: dict[str, int] = {}
    assigned: dict[str, str] = {}
    for name, (which, mutate, kind) in CORRUPTIONS.items():
        pool = pools[which] if which != "any" else (inline if len(used) % 2 else blob)
        key = next(k for k in pool if k not in used)
        # A blob shared by two records would be corrupted for both: pick unshared ones.
        used.add(key)
        mutate(c, key, records[key], name)
        assigned[key] = name
        expected[kind] = expected.get(kind, 0) + 1
    oids = [records[k][b"oid"] for k in blob]
    assert len(set(oids)) == len(oids), "two actions share a blob; the counts would be off"

    # Without prefetch, which would read (and reject) each bad entry once more before the
    # build asks for it: the counts are then exactly one per corrupted entry.
    played = replay(streams, tmp_path / "fresh", server.url, {"REDIS_GOCACHE_NO_PREFETCH": "1"})
    assert rejected(played) == expected, (rejected(played), assigned)
    assert total(played, "get_errors") == 0
    # Each corrupted entry cost one miss (then the build put it again); nothing else missed.
    assert total(played, "misses") == never_put(streams) + len(CORRUPTIONS)
    # The local directory holds nothing that came from a corrupted record.
    root = tmp_path / "fresh" / "v1"
    for path in (root / "o").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
    assert not any(p.name.startswith(".") or ".." in p.name for p in tmp_path.rglob("*"))


# -- Redis absent, killed, restarted empty, stalled --------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_absent(streams: list[list[Req]], tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    played = replay(streams, tmp_path / "runner", url)
    assert total(played, "remote_hits") == 0
    assert total(played, "put_errors") == 0 and total(played, "puts") > 0
    # One warning in the first helper; the next one is told by the breaker file.
    assert "unavailable" in played[0].stderr and len(played[0].stderr.splitlines()) == 1
    assert "failed recently" in played[1].stderr and len(played[1].stderr.splitlines()) == 1
    assert played[1].stats["remote_wait_seconds"] == 0


def test_redis_killed_midway_then_breaker_then_recovery(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    server = seeded
    first = streams[0]
    half = len(first) // 2

    def kill(k: int, n: int) -> None:
        if k == 0 and n == half:
            server.stop()

    env = {"REDIS_GOCACHE_BREAKER_COOLDOWN": "40"}
    tripped = time.time()
    played = replay(streams, tmp_path / "runner", server.url, env, kill)
    assert played[0].stats["remote_hits"] > 0
    assert played[0].stderr.count("unavailable") == 1, played[0].stderr
    assert "failed recently" in played[1].stderr, played[1].stderr
    assert played[1].stats["remote_hits"] == 0 and played[1].stats["remote_wait_seconds"] == 0
    breakers = list((tmp_path / "runner").glob("breaker-*"))
    assert len(breakers) == 1 and (breakers[0].stat().st_mode & 0o077) == 0
    until = float(breakers[0].read_text())
    assert tripped + 40 <= until <= time.time() + 40, "the cool-down is --breaker-cooldown"

    # The next helper skips Redis at once: the capability line and a miss, no waiting.
    t0 = time.monotonic()
    with GoCmd(helper_env(tmp_path / "runner", server.url, env)) as cmd:
        assert cmd.capability() == CAPABILITIES
        assert cmd.get_wait(action_id("breaker open"), timeout=2).get("Miss") is True
        assert time.monotonic() - t0 < 1.5
        cmd.close()
        assert "failed recently" in cmd.stderr

    # After the cool-down (here: made to have passed), with Redis back, a helper tries
    # again and clears the file.
    server.start()
    breakers[0].write_text(f"{time.time() - 1:.3f}\n")
    with GoCmd(helper_env(tmp_path / "runner", server.url, env)) as cmd:
        assert cmd.capability() == CAPABILITIES
        assert cmd.get_wait(action_id("breaker closed")).get("Miss") is True
        cmd.close()
        assert cmd.stderr == "", cmd.stderr
    assert not breakers[0].exists()


def test_redis_restarted_empty_midway(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    server = seeded
    half = len(streams[0]) // 2

    def restart(k: int, n: int) -> None:
        if k == 0 and n == half:
            os.unlink(os.path.join(server.dir, "seed.rdb"))  # comes back empty
            server.restart()

    played = replay(streams, tmp_path / "runner", server.url,
                    {"REDIS_GOCACHE_BREAKER_COOLDOWN": "0.1"}, restart)
    assert played[0].stats["remote_hits"] > 0
    assert total(played, "put_errors") == 0
    # Whatever was put after the restart reached the new, empty server.
    assert client_of(server).dbsize() > 0


def test_redis_stalled_by_client_pause(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    """CLIENT PAUSE makes Redis take connections and commands and answer nothing. The
    whole replay costs at most two seconds more than with no Redis at all.

    Wall-clock comparisons on a shared CI machine are noisy, so the pair is measured up to
    twice; the stall itself is bounded, so one good pair shows the bound holds."""
    server = seeded
    pairs = []
    build = streams[:1]
    for attempt in range(2):
        t0 = time.monotonic()
        replay(build, tmp_path / f"no-redis-{attempt}")
        base_seconds = time.monotonic() - t0
        admin = client_of(server)
        admin.execute_command("CLIENT", "PAUSE", 60000, "ALL")
        try:
            t0 = time.monotonic()
            played = replay(build, tmp_path / f"stalled-{attempt}", server.url)
            stalled_seconds = time.monotonic() - t0
            # The next helper (the go test after the go build) does not wait at all.
            with GoCmd(helper_env(tmp_path / f"stalled-{attempt}", server.url)) as cmd:
                cmd.capability()
                assert cmd.get_wait(action_id("after stall"), timeout=1).get("Miss") is True
                cmd.close()
                assert "failed recently" in cmd.stderr
        finally:
            # CLIENT UNPAUSE would itself wait out the pause (Redis 7.0 pauses the admin's
            # connection too): start the server again from its seed file instead.
            server.stop()
            server.start()
        assert total(played, "remote_hits") == 0
        assert played[0].stderr.count("unavailable") == 1, played[0].stderr
        pairs.append((round(stalled_seconds, 2), round(base_seconds, 2)))
        if stalled_seconds <= base_seconds + 2.0:
            break
        for breaker in (tmp_path / f"stalled-{attempt}").glob("breaker-*"):
            breaker.unlink()
    print(f"replay seconds (CLIENT PAUSE, no Redis): {pairs}")
    assert pairs[-1][0] <= pairs[-1][1] + 2.0, pairs


# -- full, refusing, read-only ---------------------------------------------------------


def test_out_of_memory_stops_puts_only(
    streams: list[list[Req]], tmp_path: Path
) -> None:
    with RedisServer(["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]) as srv:
        played = replay(streams, tmp_path / "writer", srv.url)
        assert total(played, "put_errors") == 0
        assert total(played, "upload_errors") >= 1
        assert total(played, "uploads") >= 1  # some made it before Redis was full
        full = [line for p in played for line in p.stderr.splitlines() if "full" in line]
        assert len(full) == len(played) and all(line.count("full") == 1 for line in full), full
        # Reads still work: a fresh runner gets hits for what made it in.
        fresh = replay(streams, tmp_path / "fresh", srv.url)
        assert total(fresh, "remote_hits") >= 1
        assert not any("unavailable" in p.stderr for p in fresh + played)


ACL_WRITER = "-@all +@read +@write +@keyspace +@transaction +@connection -@dangerous +info"
ACL_READER = "-@all +@read +@connection -@dangerous"
"""The command rules of helm/redis-gocache/values.yaml (auth.writer / auth.reader)."""


def add_acl_users(srv: RedisServer) -> None:
    c = client_of(srv)
    c.execute_command("ACL", "SETUSER", "writer", "on", ">writer-pw", "resetkeys",
                      "~gocache:*", "resetchannels", *ACL_WRITER.split())
    c.execute_command("ACL", "SETUSER", "reader", "on", ">reader-pw", "resetkeys",
                      "%R~gocache:*", "resetchannels", *ACL_READER.split())


def snapshot(c: redis.Redis) -> dict[bytes, int]:
    return {k: c.pttl(k) for k in c.scan_iter("*", count=1000)}


def assert_nothing_written(before: dict[bytes, int], after: dict[bytes, int]) -> None:
    assert set(after) == set(before), "keys appeared or vanished"
    grown = [k for k in before if after[k] > before[k]]
    assert grown == [], f"TTLs refreshed: {grown[:3]}"


def test_noperm_reader_user_is_quietly_read_only(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    srv = seeded
    add_acl_users(srv)
    base = f"127.0.0.1:{srv.port}/0"
    admin = client_of(srv)
    before = snapshot(admin)
    # The reader's credentials without --read-only: Redis says NOPERM, the helper copes.
    played = replay(streams, tmp_path / "reader", f"redis://reader:reader-pw@{base}")
    assert total(played, "remote_hits") > 0 and total(played, "put_errors") == 0
    assert warning_lines(played) == [], [p.stderr for p in played]
    assert total(played, "uploads") == 0
    # Served locally a day later: the TTL refresh is refused too, quietly.
    locallog.age_refreshes(tmp_path / "reader" / "v1", 2 * 86400)
    again = replay(streams[:1], tmp_path / "reader", f"redis://reader:reader-pw@{base}")
    assert total(again, "local_hits") > 0 and warning_lines(again) == []
    assert_nothing_written(before, snapshot(admin))


WRITE_COMMANDS = {"set", "append", "rename", "del", "unlink", "hset", "hdel", "expire",
                  "pexpire", "hincrby", "hincrbyfloat", "incr", "incrby", "multi", "exec",
                  "setrange", "zadd", "sadd", "lpush", "rpush", "xadd", "persist", "copy"}


def test_read_only_sends_no_write_at_all(
    streams: list[list[Req]], tmp_path: Path, seeded: RedisServer
) -> None:
    server = seeded
    admin = client_of(server)
    before = snapshot(admin)
    admin.config_resetstat()
    env = {"REDIS_GOCACHE_READONLY": "1"}
    played = replay(streams, tmp_path / "ro", server.url, env)
    assert total(played, "remote_hits") > 0 and total(played, "uploads") == 0
    # A day later, the entries are served locally: a writer would refresh their TTLs.
    locallog.age_refreshes(tmp_path / "ro" / "v1-readonly", 2 * 86400)
    again = replay(streams[:1], tmp_path / "ro", server.url, env)
    assert total(again, "local_hits") > 0
    assert not (tmp_path / "ro" / "v1").exists(), "read-only puts must not land in v1/"
    stats = admin.info("commandstats")
    sent = {name.removeprefix("cmdstat_").split("|")[0] for name in stats}
    assert sent & WRITE_COMMANDS == set(), sent
    assert admin.dbsize() == len(before)
    assert_nothing_written(before, snapshot(admin))


# -- concurrency, crashes, disk full --------------------------------------------------------


def test_runners_in_parallel_share_redis_and_one_local_dir(
    streams: list[list[Req]], tmp_path: Path, server: RedisServer
) -> None:
    """Three runners replaying the same build at once (same actions put concurrently) into
    one Redis, two of them sharing one local directory; then a fresh one reads."""
    errors: list[BaseException] = []
    dirs = [tmp_path / "shared", tmp_path / "shared", tmp_path / "own"]

    def run(d: Path) -> None:
        try:
            replay(streams[:1], d, server.url)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(REPLAY_TIMEOUT * 3)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    fresh = replay(streams[:1], tmp_path / "fresh", server.url)
    assert rejected(fresh) == {} and total(fresh, "remote_hits") > 0
    leftovers = list((tmp_path / "shared" / "v1" / "tmp").iterdir())
    assert leftovers == [], leftovers


def test_two_writers_race_on_one_action(tmp_path: Path, server: RedisServer) -> None:
    """Two runners put different outputs for one action over and over while fresh readers
    get it: every hit is one writer's output, whole."""
    aid = action_id("raced")
    bodies = [os.urandom(40_000), os.urandom(300_000)]  # one inline, one blob
    oids = {hashlib.sha256(b).digest(): b for b in bodies}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            with GoCmd(helper_env(tmp_path / f"w{i}", server.url)) as cmd:
                cmd.capability()
                while not stop.is_set():
                    assert "Err" not in cmd.put_wait(aid, bodies[i])
                cmd.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    seen = set()
    try:
        for n in range(12):
            with GoCmd(helper_env(tmp_path / f"r{n}", server.url,
                                  {"REDIS_GOCACHE_INLINE_MAX": str(INLINE_MAX)})) as cmd:
                cmd.capability()
                res = cmd.get_wait(aid)
                cmd.close()
            if not res.get("Miss"):
                oid = unb64(res["OutputID"])
                assert Path(res["DiskPath"]).read_bytes() == oids[oid]
                seen.add(oid)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert errors == [] and seen, errors


def test_helper_killed_mid_put_leaves_nothing_servable(tmp_path: Path) -> None:
    body = os.urandom(3 << 20)
    aid = action_id("crash")
    cache_dir = tmp_path / "dir"
    cmd = GoCmd(helper_env(cache_dir))
    try:
        cmd.capability()
        data = encode_request({"ID": 1, "Command": "put", "ActionID": b64(aid),
                               "OutputID": b64(hashlib.sha256(body).digest()),
                               "BodySize": len(body)}, body)
        cmd.write(data[: len(data) // 2])
        time.sleep(0.3)
        os.kill(cmd.proc.pid, signal.SIGKILL)
        cmd.proc.wait(10)
    finally:
        cmd.__exit__()
    root = cache_dir / "v1"
    assert [p for p in (root / "o").rglob("*") if p.is_file()] == []
    assert locallog.records(root) == {}
    with GoCmd(helper_env(cache_dir)) as again:
        again.capability()
        assert again.get_wait(aid).get("Miss") is True
        again.close()


def _tmpfs(path: Path, size: str) -> Callable[[], None]:
    path.mkdir()
    import subprocess

    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}; "
                    "test_file_size_limit covers the same code path")
    return lambda: subprocess.run(["umount", "-l", str(path)], check=False)


def test_disk_full_fails_only_that_put(
    tmp_path: Path, server: RedisServer
) -> None:
    """ENOSPC on the local directory (a 1 MiB tmpfs): the put that does not fit is the one
    Err; smaller puts go on working, and a get that cannot be materialized is a miss."""
    big_remote = os.urandom(900_000)
    seeder = GoCmd(helper_env(tmp_path / "seeder", server.url))
    with seeder:
        seeder.capability()
        seeder.put_wait(action_id("big remote"), big_remote)
        seeder.close()
    unmount = _tmpfs(tmp_path / "small", "1m")
    try:
        with GoCmd(helper_env(tmp_path / "small", server.url)) as cmd:
            cmd.capability()
            ok = cmd.put_wait(action_id("fits"), b"x" * 300_000)
            assert "Err" not in ok, ok
            full = cmd.put_wait(action_id("too big"), os.urandom(900_000))
            assert "No space left" in full.get("Err", ""), full
            miss = cmd.get_wait(action_id("big remote"))
            assert miss.get("Miss") is True and "Err" not in miss, miss
            assert "Err" not in cmd.put_wait(action_id("small"), b"still fine")
            cmd.close()
        tmp_left = list((tmp_path / "small" / "v1" / "tmp").iterdir())
        assert tmp_left == [], tmp_left
    finally:
        unmount()


def test_file_size_limit(tmp_path: Path) -> None:
    """RLIMIT_FSIZE: Python ignores SIGXFSZ, so writes past the limit fail with EFBIG, which
    the helper treats like a full disk."""
    import resource
    import subprocess

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    argv_env = helper_env(tmp_path / "dir")
    proc = subprocess.Popen(helper_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=argv_env, preexec_fn=limit)
    body_ok, body_big = b"y" * 1000, os.urandom(300_000)
    data = encode_request({"ID": 1, "Command": "put", "ActionID": b64(action_id("ok")),
                           "OutputID": b64(hashlib.sha256(body_ok).digest()),
                           "BodySize": len(body_ok)}, body_ok)
    data += encode_request({"ID": 2, "Command": "put", "ActionID": b64(action_id("big")),
                            "OutputID": b64(hashlib.sha256(body_big).digest()),
                            "BodySize": len(body_big)}, body_big)
    data += encode_request({"ID": 3, "Command": "close"})
    out, err = proc.communicate(data, timeout=30)
    answers = {m.get("ID", 0): m for m in map(json.loads, out.splitlines())}
    assert proc.returncode == 0, err
    assert "Err" not in answers[1] and "DiskPath" in answers[1], answers
    assert "File too large" in answers[2].get("Err", ""), answers
    assert answers[3] == {"ID": 3}


# -- timeouts bound a stall -------------------------------------------------------------


def test_timeouts_bound_every_wait(tmp_path: Path) -> None:
    """With the defaults (0.5 s, one retry) and a server that accepts connections but never
    answers: a single get gives up within about a second; six gets at once (more than the
    connection pool holds) within about the same, since the breaker stops the rest."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        with GoCmd(helper_env(tmp_path / "one", url)) as cmd:
            cmd.capability()
            t0 = time.monotonic()
            assert cmd.get_wait(action_id("stall 1")).get("Miss") is True
            one = time.monotonic() - t0
            cmd.close()
        assert one < 1.6, one
        with GoCmd(helper_env(tmp_path / "many", url, {"REDIS_GOCACHE_WORKERS": "8"})) as cmd:
            cmd.capability()
            t0 = time.monotonic()
            ids = [cmd.get(action_id(f"stall many {i}")) for i in range(24)]
            assert all(cmd.recv(i).get("Miss") is True for i in ids)
            many = time.monotonic() - t0
            cmd.close()
            assert cmd.stderr.count("unavailable") == 1, cmd.stderr
        assert many < 2.5, many


def test_no_redis_failure_becomes_err(tmp_path: Path) -> None:
    """Puts and gets against every broken Redis we can make: never an Err."""
    with RedisServer(["--maxmemory", "1mb", "--maxmemory-policy", "noeviction"]) as full:
        urls = [f"redis://127.0.0.1:{closed_port()}/0", full.url,
                f"redis://nobody:wrong@127.0.0.1:{full.port}/0",
                "redis://127.0.0.1:notaport/0"]
        for n, url in enumerate(urls):
            with GoCmd(helper_env(tmp_path / f"d{n}", url)) as cmd:
                cmd.capability()
                for i in range(3):
                    body = os.urandom(700_000 * i + 10)
                    assert "Err" not in cmd.put_wait(action_id(f"nf {n} {i}"), body)
                    assert "Err" not in cmd.get_wait(action_id(f"nf miss {n} {i}"))
                cmd.close()
                lines = cmd.stderr.strip().splitlines()
                assert len(lines) <= 1, (url, lines)
