"""``redis-gocache trim`` on a real local directory with crafted mtimes.

The rule under test above all: a file used within the last hour is never removed, whatever
``--max-age`` or ``--max-size`` say. Since the helper marks use at most hourly, that means
an output whose mtime is less than two hours old stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from click.testing import CliRunner, Result

from redis_gocache.cli import build_cli
from redis_gocache.ops.trim import AUTO_INTERVAL, MARKER, PROTECT, maybe_auto_trim, trim_root
from redis_gocache.store.base import Entry
from redis_gocache.store.layout import ACTION_LOG, format_record
from tests import locallog
from tests.gocmd import GoCmd, action_id, helper_env

HOUR = 3600.0
DAY = 86400.0


def invoke(*args: str) -> Result:
    return CliRunner().invoke(build_cli(), list(args), catch_exceptions=False)


class Record:
    """An action's record in a root's action log; ``exists()`` as for the output's path."""

    def __init__(self, root: Path, action: str) -> None:
        self.root, self.action = root, action

    def exists(self) -> bool:
        return self.action in locallog.records(self.root)


class Root:
    """A ``v1`` directory laid out as the helper lays it out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "tmp").mkdir(parents=True, exist_ok=True)

    def entry(self, name: str, size: int, age: float, now: float) -> tuple[Record, Path]:
        """An action and its output, the output last used ``age`` seconds before ``now``."""
        body = (name.encode() * size)[:size]
        oid = hashlib.sha256(body).digest()
        aid = hashlib.sha256(name.encode()).hexdigest()
        out = self.path / "o" / oid.hex()[:2] / oid.hex()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(body)
        with open(self.path / ACTION_LOG, "a", encoding="ascii") as log:
            log.write(format_record(aid, Entry(oid, size, time.time_ns()), now - age))
        os.utime(out, (now - age, now - age))
        return Record(self.path, aid), out

    def tmp(self, name: str, age: float, now: float) -> Path:
        path = self.path / "tmp" / name
        path.write_bytes(b"partial")
        os.utime(path, (now - age, now - age))
        return path


def test_age_trim_spares_recent_use(tmp_path: Path) -> None:
    now = time.time()
    root = Root(tmp_path / "v1")
    old_a, old_o = root.entry("old", 1000, 10 * DAY, now)
    week_a, week_o = root.entry("week", 1000, 6 * DAY, now)
    fresh_a, fresh_o = root.entry("fresh", 1000, 2 * DAY, now)
    used_a, used_o = root.entry("used", 1000, 0.5 * HOUR, now)

    result = trim_root(str(root.path), max_age=5 * DAY, now=now)
    assert not old_o.exists() and not old_a.exists()
    assert not week_o.exists() and not week_a.exists()
    assert fresh_o.exists() and fresh_a.exists()
    assert used_o.exists() and used_a.exists()
    assert result.outputs_removed == 2 and result.bytes_removed == 2000
    assert result.actions_removed == 2
    assert result.outputs_kept == 2


def test_never_removes_a_file_used_in_the_last_hour(tmp_path: Path) -> None:
    """Used 59 minutes ago after a mark 59 minutes before that: mtime ~2h old, still kept."""
    now = time.time()
    root = Root(tmp_path / "v1")
    kept = [root.entry(f"k{i}", 100, age, now) for i, age in
            enumerate([0, 30, HOUR - 1, HOUR + 60, PROTECT - 60])]
    gone = [root.entry(f"g{i}", 100, age, now) for i, age in
            enumerate([PROTECT + 60, 3 * HOUR, DAY])]
    # The harshest settings: everything over a second old, and a size cap of one byte.
    result = trim_root(str(root.path), max_age=1, max_size=1, now=now)
    for act, out in kept:
        assert out.exists() and act.exists(), out
    for act, out in gone:
        assert not out.exists() and not act.exists(), out
    assert result.protected == len(kept)


def test_size_cap_removes_least_recently_used_first(tmp_path: Path) -> None:
    now = time.time()
    root = Root(tmp_path / "v1")
    entries = {age: root.entry(f"e{age}", 1000, age * HOUR, now) for age in (3, 4, 5, 6, 7)}
    result = trim_root(str(root.path), max_age=30 * DAY, max_size=2500, now=now)
    assert {age for age, (_, out) in entries.items() if out.exists()} == {3, 4}
    assert result.bytes_kept == 2000 and result.bytes_removed == 3000


def test_orphans_debris_and_dry_run(tmp_path: Path) -> None:
    now = time.time()
    root = Root(tmp_path / "v1")
    orphan, out = root.entry("orphan", 10, 3 * HOUR, now)
    out.unlink()  # the output went away: the record can never hit again
    with open(root.path / ACTION_LOG, "a", encoding="ascii") as log:
        log.write("f" * 64 + " torn by a crash\n")  # skipped when read, dropped by the trim

    def garbled_in_log() -> bool:
        return "torn by a crash" in (root.path / ACTION_LOG).read_text(encoding="ascii")

    stale = root.tmp("w-stale", 2 * HOUR, now)
    torn_rewrite = root.path / "actions.0123456789ab.tmp"  # a trim killed while rewriting
    torn_rewrite.write_bytes(b"partial")
    os.utime(torn_rewrite, (now - 2 * HOUR, now - 2 * HOUR))
    busy = root.tmp("w-busy", 10 * 60, now)  # a put in progress
    old_a, old_o = root.entry("old", 10, 9 * DAY, now)

    dry = trim_root(str(root.path), max_age=5 * DAY, now=now, dry_run=True)
    assert (dry.outputs_removed, dry.actions_removed, dry.tmp_removed) == (1, 2, 2)
    assert orphan.exists() and garbled_in_log() and stale.exists() and old_o.exists()

    real = trim_root(str(root.path), max_age=5 * DAY, now=now)
    assert (real.outputs_removed, real.actions_removed, real.tmp_removed) == (1, 2, 2)
    assert not orphan.exists() and not garbled_in_log() and not stale.exists()
    assert not torn_rewrite.exists()
    assert not old_o.exists() and not old_a.exists()
    assert busy.exists()


def test_cli_trims_both_trust_levels(tmp_path: Path) -> None:
    now = time.time()
    trusted, untrusted = Root(tmp_path / "v1"), Root(tmp_path / "v1-readonly")
    _, a = trusted.entry("a", 100, 8 * DAY, now)
    _, b = untrusted.entry("b", 100, 8 * DAY, now)
    _, c = trusted.entry("c", 100, 1 * DAY, now)
    res = invoke("trim", "--cache-dir", str(tmp_path), "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["dry_run"] and data["outputs_removed"] == 2 and a.exists()
    res = invoke("trim", "--cache-dir", str(tmp_path), "--max-age", "12h")
    assert res.exit_code == 0, res.output
    assert "removed 3 outputs" in res.output
    assert not a.exists() and not b.exists() and not c.exists()
    res = invoke("trim", "--cache-dir", str(tmp_path), "--max-age", "soon")
    assert res.exit_code == 2 and "not a duration" in res.output


def test_cli_trims_the_verifying_helpers_roots(tmp_path: Path) -> None:
    """A helper that checks signatures keeps a root per set of trusted keys, and trims only
    its own: after a key rotation the old set's root is left to ``trim``, which must cover
    every trust level's root, not only ``v1`` and ``v1-readonly``."""
    import subprocess

    from tests.gocmd import helper_command

    cache = tmp_path / "cache"
    made = []
    for name, read_only in (("old", "0"), ("new", "0"), ("pr", "1")):
        subprocess.run([*helper_command(), "keygen", str(tmp_path / name)], check=True,
                       capture_output=True, timeout=60)
        env = helper_env(cache, extra={"REDIS_GOCACHE_TRUSTED_KEYS": str(tmp_path / f"{name}.pub"),
                                       "REDIS_GOCACHE_READONLY": read_only,
                                       "REDIS_GOCACHE_NO_AUTO_TRIM": "1"})
        with GoCmd(env) as go:
            go.capability()
            made.append(Path(go.put_wait(action_id(name), name.encode() * 10)["DiskPath"]))
            go.close()
    levels = sorted(p.name for p in cache.iterdir() if p.name.startswith("v1"))
    assert sorted(n.split("-verified-")[0] for n in levels if "-verified-" in n) == [
        "v1", "v1", "v1-readonly"], levels
    assert all(p.is_file() and p.parent.parent.parent.parent == cache for p in made)
    old = time.time() - 9 * DAY
    for path in made:
        os.utime(path, (old, old))

    res = invoke("trim", "--cache-dir", str(cache), "--max-age", "5d", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert sorted(Path(r).name for r in data["roots"]) == levels
    assert data["outputs_removed"] == 3 and data["actions_removed"] == 3, data
    assert not any(p.exists() for p in made)


def test_auto_trim_at_most_daily(tmp_path: Path) -> None:
    now = time.time()
    root = Root(tmp_path / "v1")
    _, old = root.entry("old", 10, 9 * DAY, now)
    assert maybe_auto_trim(str(root.path), max_age=5 * DAY, now=now) is not None
    assert not old.exists()
    _, old2 = root.entry("old2", 10, 9 * DAY, now)
    assert maybe_auto_trim(str(root.path), max_age=5 * DAY, now=now + HOUR) is None
    assert old2.exists()
    assert maybe_auto_trim(str(root.path), max_age=5 * DAY, now=now + AUTO_INTERVAL + 1)
    assert not old2.exists()


def test_helper_trims_after_its_last_answer(tmp_path: Path) -> None:
    """The real helper: an overdue marker means a trim after close; a fresh one, none."""
    now = time.time()
    cache = tmp_path / "cache"
    root = Root(cache / "v1")
    _, old = root.entry("old", 10, 9 * DAY, now)
    marker = root.path / MARKER
    marker.touch()
    os.utime(marker, (now - 2 * DAY, now - 2 * DAY))
    with GoCmd(helper_env(cache)) as go:
        go.capability()
        go.put_wait(action_id("new"), b"new output")
        go.close()
    assert not old.exists()
    assert now - marker.stat().st_mtime < 60

    _, old2 = root.entry("old2", 10, 9 * DAY, now)
    with GoCmd(helper_env(cache)) as go:
        go.capability()
        go.close()
    assert old2.exists()  # trimmed less than a day ago: not due


def test_a_new_directory_is_not_trimmed_after_its_first_run(tmp_path: Path) -> None:
    """A new runner's first helper makes the directory and its trim marker: nothing in it is
    old, and a trim then would only take CPU from the job's next command."""
    cache = tmp_path / "cache"
    with GoCmd(helper_env(cache)) as go:
        go.capability()
        go.put_wait(action_id("first"), b"first output")
        answered = time.time()
        time.sleep(0.2)
        go.close()
    marker = cache / "v1" / MARKER
    # Set when the directory was made: a trim after the last answer would have set it later.
    assert marker.stat().st_mtime < answered + 0.1
    assert oct(marker.stat().st_mode & 0o777) == "0o600"


def test_an_output_served_in_the_run_survives_that_runs_trim(tmp_path: Path) -> None:
    """An output last used long ago but served in this run is not trimmed at its end: the
    use mark follows the answer, and the trim goes by the marks."""
    now = time.time()
    cache = tmp_path / "cache"
    root = Root(cache / "v1")
    record, served = root.entry("served", 10, 9 * DAY, now)
    _, unused = root.entry("unused", 10, 9 * DAY, now)
    marker = root.path / MARKER
    marker.touch()
    os.utime(marker, (now - 2 * DAY, now - 2 * DAY))  # the trim is due
    env = {**helper_env(cache), "REDIS_GOCACHE_TRIM_MAX_AGE": "5d"}
    with GoCmd(env) as go:
        go.capability()
        hit = go.get_wait(bytes.fromhex(record.action))
        assert hit.get("DiskPath") == str(served)
        go.close()
    assert served.exists() and time.time() - served.stat().st_mtime < 60
    assert not unused.exists()
