"""Answers kept from the last run of the same go command (redis_gocache.answers)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from redis_gocache import answers, wire
from redis_gocache.ops.trim import trim_root
from tests.gocmd import GoCmd, helper_env
from tests.test_cache import Setup
from tests.test_local_hits import Run, fresh_and_stale, plain_get, without_id

DAY = 86400.0


def kept_for(s: Setup, actions: list[bytes]) -> dict[bytes, bytes]:
    """What a run that asked for ``actions`` keeps, saved and loaded back."""
    path = os.path.join(s.local.root, "m", "tag")
    answers.save(path, s.local.root, answers.lines_for(actions, s.local))
    return answers.load(path, s.local.root)


def test_kept_answers_are_the_answers_the_general_path_gives(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    a, b = os.urandom(32), os.urandom(32)
    s.put(a, b"alpha" * 30)
    s.put(b, b"beta")
    kept = kept_for(s, [a, b, a])
    assert list(kept) == [a, b]
    for action in (a, b):
        found = s.local.lookup(action.hex())
        assert found is not None
        entry, path, _ = found
        general = wire.hit_response(7, entry.output_id, entry.size, entry.time_ns, path)
        tail = kept[action].split(b" ", 3)[3]
        assert json.loads(b'{"ID":7' + tail) == json.loads(general)


@pytest.mark.parametrize("spoil", ["crc", "root", "torn", "empty", "missing", "garbage"])
def test_a_spoiled_answers_file_gives_no_answers(tmp_path: Path, spoil: str) -> None:
    s = Setup(tmp_path)
    action = os.urandom(32)
    s.put(action, b"body")
    path = os.path.join(s.local.root, "m", "tag")
    answers.save(path, s.local.root, answers.lines_for([action], s.local))
    data = Path(path).read_bytes()
    root = s.local.root
    if spoil == "crc":
        Path(path).write_bytes(data.replace(b'"Size":4', b'"Size":5'))
    elif spoil == "root":
        root = s.local.root + "-copy"  # the directory was copied elsewhere
    elif spoil == "torn":
        Path(path).write_bytes(data[:-20])
    elif spoil == "empty":
        Path(path).write_bytes(b"")  # a plain marker, as earlier versions left
    elif spoil == "missing":
        os.unlink(path)
    else:
        Path(path).write_bytes(os.urandom(300))
    assert answers.load(path, root) == {}


def test_a_run_answers_kept_hits_without_reading_the_log(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    a, b, other = os.urandom(32), os.urandom(32), os.urandom(32)
    s.put(a, b"alpha")
    s.put(b, b"beta" * 9)
    s.put(other, b"not kept")
    kept = kept_for(s, [a, b])
    s.cache.close()
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    server_answers = run.serve(plain_get(1, a) + plain_get(2, b) + b'{"ID":3,"Command":"close"}\n',
                               answers=kept)
    assert run.general == []
    assert run.s.local._index is None  # every answer came from the kept ones
    assert Path(json.loads(server_answers[2])["DiskPath"]).read_bytes() == b"beta" * 9
    assert run.s.cache.kept_hits == [a, b] and run.s.cache.requested == [a, b]
    stats = run.s.stats
    assert (stats.gets, stats.local_hits, stats.hit_bytes) == (2, 2, 5 + 36)
    # An action that is not kept still takes the short path, from the log.
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    mixed = run.serve(plain_get(4, other) + plain_get(5, a), answers=kept)
    assert run.general == [] and run.s.stats.local_hits == 2
    assert without_id(mixed[5]) == without_id(server_answers[1])


def test_kept_hits_get_their_redis_ttl_refreshed_when_due(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    fresh, stale = fresh_and_stale(s)
    kept = kept_for(s, [fresh, stale])
    s.cache.close()
    run = Run(Setup(tmp_path, memory=s.memory), tmp_path)
    run.serve(plain_get(1, fresh) + plain_get(2, stale), answers=kept)
    run.s.cache.refresh_served()
    assert s.memory.refreshed == [stale]


def test_trim_forgets_commands_not_run_within_the_age_limit(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    (root / "m").mkdir(parents=True)
    old, recent, debris = root / "m" / "old", root / "m" / "recent", root / "m" / "x.1.tmp"
    for path, age in ((old, 10 * DAY), (recent, DAY), (debris, 2 * 3600)):
        path.write_bytes(b"")
        os.utime(path, (time.time() - age, time.time() - age))
    result = trim_root(str(root), max_age=7 * DAY)
    assert result.commands_removed == 2
    assert recent.exists() and not old.exists() and not debris.exists()


# -- through the helper process ---------------------------------------------------------


def serve_gets(cache_dir: Path, gets: list[bytes]) -> list[dict[str, Any]]:
    """One helper run (local only) answering cmd/go's plain gets; its answers, in order."""
    with GoCmd(helper_env(cache_dir)) as cmd:
        cmd.capability()
        ids = []
        for action in gets:
            ids.append(cmd.next_id())
            cmd.write(plain_get(ids[-1], action))
        got = [cmd.recv(i) for i in ids]
        cmd.close()
    return got


def test_the_next_run_of_a_command_answers_from_what_the_last_kept(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a, b = os.urandom(32), os.urandom(32)
    with GoCmd(helper_env(cache)) as cmd:
        cmd.capability()
        cmd.put_wait(a, b"alpha")
        cmd.put_wait(b, b"beta")
        cmd.close()
    first = serve_gets(cache, [a, b])
    markers = list((cache / "v1" / "m").iterdir())
    assert len(markers) == 1 and markers[0].read_bytes().count(b"\n") == 4  # root, a, b, CRC
    # Without the action log, only the kept answers can serve these.
    (cache / "v1" / "actions").unlink()
    long_ago = time.time() - 3 * DAY
    os.utime(markers[0], (long_ago, long_ago))
    again = serve_gets(cache, [a, b])
    assert time.time() - markers[0].stat().st_mtime < 60  # run again: kept from the trim
    assert [without_id(json.dumps(x).encode()) for x in again] == \
        [without_id(json.dumps(x).encode()) for x in first]
    # A copy of the directory serves its own files, not the original's: the kept answers name
    # the root they were written for, and here every get is a miss.
    copy = tmp_path / "copy"
    shutil.copytree(cache, copy)
    assert all(x.get("Miss") for x in serve_gets(copy, [a, b]))


def test_a_run_that_puts_keeps_new_answers(tmp_path: Path) -> None:
    """Every get answered from the kept answers, and yet a put (cmd/go rebuilt an output it
    found missing, or a build that is not reproducible put another body): the next run must
    not answer with the old output."""
    cache = tmp_path / "cache"
    a = os.urandom(32)
    with GoCmd(helper_env(cache)) as cmd:
        cmd.capability()
        cmd.put_wait(a, b"alpha")
        cmd.close()
    serve_gets(cache, [a])
    with GoCmd(helper_env(cache)) as cmd:
        cmd.capability()
        cmd.write(plain_get(1, a))
        assert Path(cmd.recv(1)["DiskPath"]).read_bytes() == b"alpha"
        cmd.put_wait(a, b"alpha, built again")
        cmd.close()
    (cache / "v1" / "actions").unlink()
    got = serve_gets(cache, [a])
    assert Path(got[0]["DiskPath"]).read_bytes() == b"alpha, built again"
