"""Operator commands that read like ccache's: ``config`` (``-p``), ``stats``' local part (``-s``,
``-M``), ``clear`` (``-C``), ``zero`` (``-z``); each subcommand's help; plain auth messages;
the helper's hint on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from redis_gocache.cli import build_cli
from redis_gocache.config import OPTIONS
from redis_gocache.ops.fleet import Spool
from tests.gocmd import GoCmd, action_id, helper_command, helper_env
from tests.redisproc import RedisServer

SECRET = "local-ops-Secret-42"


def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    clean = {k: None for k in os.environ if k.startswith(("REDIS_", "XDG_"))}
    return CliRunner().invoke(build_cli(), list(args), input=input, catch_exceptions=False,
                              env={**clean, **(env or {})})


def fill(cache_dir: Path, bodies: list[bytes], stats_file: Path | None = None) -> None:
    """Put ``bodies`` through a real helper (local only)."""
    extra = {"REDIS_GOCACHE_STATS_FILE": str(stats_file)} if stats_file else {}
    with GoCmd(helper_env(cache_dir, None, extra)) as cmd:
        cmd.capability()
        for i, body in enumerate(bodies):
            assert "Err" not in cmd.put_wait(action_id(f"local {i}"), body)
        cmd.close()


BODIES = [b"a" * 1000, b"b" * 3000, b"c" * 50]


def test_stats_shows_the_local_directory_and_its_limit_without_redis(tmp_path: Path) -> None:
    fill(tmp_path, BODIES)
    res = invoke("stats", "--cache-dir", str(tmp_path), "--trim-max-size", "10K")
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert first == (f"local directory {tmp_path}: 4.0 KiB in 3 outputs, 3 action records; "
                     "10.0 KiB limit (--trim-max-size), 40% used")
    assert "no Redis URL" in res.output
    data = json.loads(invoke("stats", "--json", "--cache-dir", str(tmp_path)).output)
    assert data["local"]["bytes"] == sum(map(len, BODIES))
    assert data["local"]["limit_bytes"] == 0 and data["local"]["levels"]["v1"]["outputs"] == 3


def test_stats_shows_the_local_directory_beside_redis(tmp_path: Path, redis_server: RedisServer,
                                                      redis_client: redis.Redis) -> None:
    fill(tmp_path, BODIES[:1])
    res = invoke("stats", "--redis-url", redis_server.url, "--cache-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"local directory {tmp_path}: 1000 B in 1 outputs")
    assert "namespace 'gocache:'" in res.output
    prom = invoke("stats", "--prometheus", "--redis-url", redis_server.url,
                  "--cache-dir", str(tmp_path)).output
    assert 'redis_gocache_local_bytes{level="v1"} 1000' in prom


def test_clear_asks_and_an_empty_answer_aborts(tmp_path: Path) -> None:
    fill(tmp_path, BODIES)
    res = invoke("clear", "--cache-dir", str(tmp_path), "--dry-run")
    assert res.exit_code == 0 and res.output.startswith("would remove ")
    res = invoke("clear", "--cache-dir", str(tmp_path), input="")
    assert res.exit_code == 1  # no answer: aborted, as flush
    assert any((tmp_path / "v1" / "o").rglob("*"))
    res = invoke("clear", "--cache-dir", str(tmp_path), "--yes")
    assert res.exit_code == 0 and res.output.startswith("removed "), res.output
    assert not (tmp_path / "v1").exists()
    # The helper starts again from an empty directory: a miss, then puts work.
    with GoCmd(helper_env(tmp_path)) as cmd:
        cmd.capability()
        assert cmd.get_wait(action_id("local 0")).get("Miss") is True
        cmd.close()
    res = invoke("clear", "--cache-dir", str(tmp_path / "new"))
    assert res.output.endswith("holds no cache files\n")


def test_zero_drops_spooled_runs_and_empties_the_stats_file(tmp_path: Path) -> None:
    stats_file = tmp_path / "stats.jsonl"
    fill(tmp_path / "dir", BODIES[:1], stats_file)
    assert stats_file.read_text().strip()
    spool = Spool(str(tmp_path / "dir" / "stats-0123"))
    spool.add({"runs": 1, "gets": 5}, {})
    spool.add({"runs": 1, "gets": 7}, {})
    args = ["zero", "--cache-dir", str(tmp_path / "dir"), "--stats-file", str(stats_file)]
    res = invoke(*args, "--dry-run")
    assert res.output == f"would zero 2 spooled runs under {tmp_path / 'dir'} and the stats " \
                         f"file {stats_file}\n"
    assert invoke(*args, input="n\n").exit_code == 1
    res = invoke(*args, "-y")
    assert res.exit_code == 0 and res.output.startswith("zeroed 2 spooled runs"), res.output
    assert stats_file.read_text() == "" and not list((tmp_path / "dir").glob("stats-*/run-*"))
    assert (tmp_path / "dir" / "v1").is_dir()  # the cache itself stays
    assert invoke(*args).output.startswith("no counters to zero")


def test_config_shows_each_value_with_its_source(tmp_path: Path) -> None:
    env = {"REDIS_URL": f"redis://user:{SECRET}@cache:6379/0", "REDIS_GOCACHE_TTL": "2w",
           "REDIS_GOCACHE_WORKERS": "-2", "XDG_CACHE_HOME": str(tmp_path)}
    res = invoke("config", "--prefix", "team:", env=env)
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.startswith("-")}
    assert set(rows) == {opt.flags[-1] for opt in OPTIONS}
    assert re.fullmatch(r"--redis-url +redis://user:\*\*\*@cache:6379/0 +\(REDIS_URL\)",
                        rows["--redis-url"])
    assert re.fullmatch(r"--prefix +team: +\(flag\)", rows["--prefix"])
    assert re.fullmatch(r"--ttl +1209600 \(2w\) +\(REDIS_GOCACHE_TTL\)", rows["--ttl"])
    assert re.fullmatch(r"--workers +4 +\(REDIS_GOCACHE_WORKERS\)", rows["--workers"])
    assert "! REDIS_GOCACHE_WORKERS (--workers): must not be negative" in res.output
    assert re.fullmatch(rf"--cache-dir +{tmp_path}/redis-gocache +\(default\)", rows["--cache-dir"])
    assert re.search(r"^password +\*\*\* +\(REDIS_URL\)$", res.output, re.M)
    data = json.loads(invoke("config", "--json", env=env).output)
    assert {r["setting"]: r["source"] for r in data}["--ttl"] == "REDIS_GOCACHE_TTL"


# -- help: each subcommand offers only the settings it uses ------------------------------

ALL = {opt.flags[-1] for opt in OPTIONS}
REDIS = {"--redis-url", "--prefix", "--timeout", "--retries", "--tls-ca", "--tls-cert",
         "--tls-key", "--password-file"}
USES = {
    "stats": REDIS | {"--cache-dir", "--trim-max-size"},
    "flush": REDIS,
    "exporter": REDIS,
    "doctor": ALL,
    "config": ALL,
    "trim": {"--cache-dir", "--trim-max-age", "--trim-max-size", "--spill-dir", "--ttl"},
    "clear": {"--cache-dir"},
    "zero": {"--cache-dir", "--stats-file"},
    "keygen": set(),
    "normalize-mtimes": set(),
}


@pytest.mark.parametrize("command", sorted(USES))
def test_help_lists_only_the_settings_a_command_uses(command: str) -> None:
    res = invoke(command, "--help")
    assert res.exit_code == 0
    shown = {flag for flag in ALL if re.search(rf"(^|[ ,]){re.escape(flag)}[ ,=\n]",
                                               res.output, re.M)}
    # -v/--verbose of normalize-mtimes is its own option, not the helper's.
    shown -= {"--verbose"} if command == "normalize-mtimes" else set()
    assert shown == USES[command], res.output
    for flag in USES[command]:
        env = next(o.envvar for o in OPTIONS if o.flags[-1] == flag)
        assert env in res.output.replace("\n", " ").replace("  ", " ")


def test_help_of_redis_commands_does_not_promise_local_only() -> None:
    assert "[required]" in invoke("flush", "--help").output
    stats = invoke("stats", "--help").output
    assert "only the local directory is shown" in stats.replace("\n", " ").replace("  ", "")
    assert "2w" in invoke("--help").output


# -- plain auth messages ------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServer]:
    with RedisServer(password=SECRET) as server:
        yield server


@pytest.mark.parametrize(("url", "said"), [
    ("redis://127.0.0.1:{port}/0", "Redis wants a password and none was given"),
    ("redis://:wrong@127.0.0.1:{port}/0", "Redis refused the user name or password"),
])
@pytest.mark.parametrize("command", [["stats"], ["flush", "--dry-run"]])
def test_redis_commands_say_plainly_when_auth_is_missing_or_wrong(
        auth_server: RedisServer, url: str, said: str, command: list[str]) -> None:
    res = CliRunner().invoke(build_cli(), [*command, "--redis-url",
                                           url.format(port=auth_server.port)])
    assert res.exit_code == 1
    assert said in res.output and "HELLO" not in res.output and "Traceback" not in res.output
    assert "REDIS_PASSWORD" in res.output


# -- the helper on a terminal -------------------------------------------------------------


def test_helper_on_a_terminal_says_what_it_is_for(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    env = helper_env(tmp_path)
    proc = subprocess.Popen(helper_command(), stdin=secondary, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    os.close(secondary)
    try:
        deadline = time.monotonic() + 10
        line = b""
        assert proc.stderr is not None
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            line += proc.stderr.read(1)
        assert line.startswith(b"redis-gocache: this is the GOCACHEPROG helper, meant to be "
                               b"started by the go command"), line
        os.write(primary, b'{"ID":1,"Command":"close"}\n')
        out, _ = proc.communicate(timeout=10)
        assert out.endswith(b'{"ID":1}\n')
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(primary)
