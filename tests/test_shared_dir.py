"""Helpers sharing one local directory: the trim against running helpers, and other users.

Scripted helpers (tests/gocmd.py) hold a get's answer while a trim runs, the way a long
``go build`` holds a ``DiskPath`` it has not opened yet. The real-``go`` load test with eight
helpers is tests/e2e/test_shared_stress.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from redis_gocache import answers
from redis_gocache.cli import build_cli
from redis_gocache.ops.trim import trim_root
from redis_gocache.store import shared
from redis_gocache.store.disk import replace_private
from tests.gocmd import GoCmd, action_id, helper_env

DAY = 86400.0


def age(path: str | Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def put_once(cache_dir: Path, name: str, body: bytes) -> str:
    """A helper run that puts one output; its DiskPath, made three days old."""
    with GoCmd(helper_env(cache_dir)) as go:
        go.capability()
        path = str(go.put_wait(action_id(name), body)["DiskPath"])
        go.close()
    age(path, 3 * DAY)
    return path


def test_trim_removes_nothing_a_running_helper_handed_out(cache_dir: Path) -> None:
    path = put_once(cache_dir, "old", b"old output " * 100)
    root = str(cache_dir / "v1")
    with GoCmd(helper_env(cache_dir)) as go:
        go.capability()
        assert go.get_wait(action_id("old"))["DiskPath"] == path
        # The helper's use mark is minutes away: by mtime alone the file is 3 days unused.
        result = trim_root(root, max_age=DAY)
        assert os.path.exists(path)
        assert (result.outputs_removed, result.outputs_pending) == (0, 1)
        assert set(shared.read_state(root)[2]) == {Path(path).name}

        # A helper that starts now does not hand the chosen output out from its log...
        with GoCmd(helper_env(cache_dir)) as late:
            late.capability()
            assert late.get_wait(action_id("old")).get("Miss") is True
            late.close()
        assert trim_root(root, max_age=DAY).outputs_pending == 1  # the first still runs
        go.close()
    # The use was marked at the end of that run: the file stays, chosen no more.
    result = trim_root(root, max_age=DAY)
    assert os.path.exists(path) and result.outputs_pending == 0
    assert shared.read_state(root)[2] == {}

    age(path, 3 * DAY)
    result = trim_root(root, max_age=DAY)  # nobody runs: chosen and removed in one pass
    assert not os.path.exists(path) and result.outputs_removed == 1


def test_trim_command_says_what_it_left_for_later(cache_dir: Path) -> None:
    path = put_once(cache_dir, "cli", b"cli output " * 100)
    with GoCmd(helper_env(cache_dir)) as go:
        go.capability()
        go.get_wait(action_id("cli"))
        res = CliRunner().invoke(build_cli(), ["trim", "--cache-dir", str(cache_dir),
                                               "--max-age", "1d"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        assert "removed 0 outputs" in res.output
        assert "left 1 outputs for a later trim" in res.output and os.path.exists(path)
        go.close()


def test_a_chosen_output_put_again_is_a_file_the_trim_did_not_choose(cache_dir: Path) -> None:
    body = b"chosen " * 100
    path = put_once(cache_dir, "chosen", body)
    root = str(cache_dir / "v1")
    with GoCmd(helper_env(cache_dir)) as holder:
        holder.capability()
        holder.get_wait(action_id("chosen"))
        assert trim_root(root, max_age=DAY).outputs_pending == 1
        with GoCmd(helper_env(cache_dir)) as again:
            again.capability()
            assert again.get_wait(action_id("chosen")).get("Miss") is True
            assert again.put_wait(action_id("chosen"), body)["DiskPath"] == path
            holder.close()
            age(path, 3 * DAY)  # even with an old mtime: another inode than the one chosen
            result = trim_root(root, max_age=DAY)
            assert os.path.exists(path) and result.outputs_removed == 0
            # ... and chosen again in the same pass, as the new file: now it waits for the
            # helper that put it.
            assert result.outputs_pending == 1
            st = os.stat(path)
            assert shared.read_state(root)[2] == {Path(path).name: (st.st_ino, st.st_ctime_ns)}
            again.close()
    result = trim_root(root, max_age=DAY)
    assert not os.path.exists(path) and result.outputs_removed == 1


def test_a_reused_inode_number_is_not_the_chosen_file(cache_dir: Path) -> None:
    """The trim removes the file it chose, not whatever file now has its inode number."""
    path = put_once(cache_dir, "reused", b"reused " * 100)
    root = str(cache_dir / "v1")
    st = os.stat(path)
    # As if the trim had chosen an earlier file with this number, since removed (the output
    # put again), and the file system had given the number to the new file.
    chosen = {Path(path).name: (st.st_ino, st.st_ctime_ns - 1)}
    shared.write_state(root, 1, time.time() - 60, chosen)
    result = trim_root(root, max_age=10 * DAY)  # nor chosen again: it is 3 days old
    assert os.path.exists(path) and result.outputs_removed == 0
    assert shared.read_state(root)[2] == {}


def test_kept_answers_leave_out_chosen_outputs(cache_dir: Path) -> None:
    """A command's kept answers (m/<tag>) do not hand out what a trim waits to remove."""
    path = put_once(cache_dir, "kept", b"kept " * 50)
    root = str(cache_dir / "v1")
    for _ in range(2):  # the first get keeps its answer; the second is answered from it
        with GoCmd(helper_env(cache_dir)) as go:
            go.capability()
            assert go.get_wait(action_id("kept"))["DiskPath"] == path
            go.close()
    (marker,) = (cache_dir / "v1" / "m").iterdir()
    assert len(answers.load(str(marker), root)) == 1
    age(path, 3 * DAY)
    with GoCmd(helper_env(cache_dir)) as holder:
        holder.capability()
        holder.get_wait(action_id("kept"))
        assert trim_root(root, max_age=DAY).outputs_pending == 1
        with GoCmd(helper_env(cache_dir)) as late:
            late.capability()
            assert late.get_wait(action_id("kept")).get("Miss") is True
            late.close()
        holder.close()
    assert answers.load(str(marker), root, {Path(path).name: (0, 0)}) == {}


def test_helper_of_another_user_stops_with_one_line(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        cache_dir = tmp_path / "shared"
        cache_dir.mkdir()
        os.chown(cache_dir, 4242, 4242)
        owner = 4242
    else:
        cache_dir, owner = Path("/"), os.stat("/").st_uid  # a directory we do not own
    # No setting fails a build (issue 19): the helper says why and uses the default directory.
    fallback = tmp_path / "xdg" / "redis-gocache"
    with GoCmd(helper_env(cache_dir, None, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})) as go:
        go.capability()
        go.close_stdin()
        assert go.wait() == 0
        lines = go.stderr.strip().splitlines()
    assert f"belongs to uid {owner}" in lines[0] and "must run as one user" in lines[0]
    assert lines[0].endswith(f"using {fallback} instead"), lines
    assert not (cache_dir / "v1").exists() and (fallback / "v1").is_dir()


def test_whole_file_writes_never_show_a_partial_file(tmp_path: Path) -> None:
    """Writers in several pods may have the same PID: names of temporary files are random."""
    path = str(tmp_path / "answers")
    bodies = [bytes([65 + i]) * (200_000 + i) for i in range(4)]
    replace_private(path, bodies[0])
    stop = threading.Event()
    seen: list[int] = []

    def write(body: bytes) -> None:
        while not stop.is_set():
            replace_private(path, body)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with open(path, "rb") as f:
                data = f.read()
            seen.append(len(data))
            assert data in bodies
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert seen and [p.name for p in tmp_path.iterdir()] == ["answers"]
