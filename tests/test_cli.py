"""Settings and the command line: parsing, precedence, errors, lazy imports, docs in step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from redis_gocache import config
from redis_gocache.config import OPTIONS, parse_duration, parse_size, resolve
from redis_gocache.exceptions import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CLOSE = b'{"ID":1,"Command":"close"}\n\n'


def run(args: list[str], env: dict[str, str] | None = None, stdin: bytes = b"",
        timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "GO"))}
    return subprocess.run([sys.executable, *args], input=stdin, capture_output=True,
                          env={**base, **(env or {})}, timeout=timeout, check=False)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
     ("1.5h", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("65536", 65536), ("64K", 65536), ("64KiB", 65536),
                                            ("1M", 1 << 20), ("2g", 2 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["", "soon", "-5", "0", "7y"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(bad)


def test_flag_beats_env_beats_default(tmp_path: Path) -> None:
    env = {"REDIS_GOCACHE_TTL": "1h", "REDIS_GOCACHE_PREFIX": "env:",
           "REDIS_GOCACHE_DIR": str(tmp_path), "REDIS_GOCACHE_VERBOSE": "1"}
    values = config.parse_helper_args(["--ttl", "2h", "--inline-max=1K"])
    assert values is not None
    cfg = resolve(values, env)
    assert (cfg.ttl, cfg.prefix, cfg.inline_max, cfg.verbose) == (7200, "env:", 1024, True)
    assert cfg.cache_dir == str(tmp_path)
    assert resolve({}, {}).ttl == config.DEFAULT_TTL
    assert resolve({}, {"XDG_CACHE_HOME": "/x"}).cache_dir == "/x/redis-gocache"


def test_bad_env_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="REDIS_GOCACHE_TTL"):
        resolve({}, {"REDIS_GOCACHE_TTL": "forever"})
    with pytest.raises(ConfigError, match="hash tag"):
        resolve({}, {"REDIS_GOCACHE_PREFIX": "{ci}:"})


def test_password_sources(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert resolve({}, {"REDIS_PASSWORD": "from-env"}).password == "from-env"
    assert resolve({"password_file": str(secret)}, {"REDIS_PASSWORD": "x"}).password == "from-file"
    assert "from-env" not in repr(resolve({}, {"REDIS_PASSWORD": "from-env"}))


def test_unknown_arguments_go_to_click() -> None:
    assert config.parse_helper_args(["stats"]) is None
    assert config.parse_helper_args(["--help"]) is None
    assert config.parse_helper_args(["--no-such-flag"]) is None
    assert config.parse_helper_args(["-v", "--timeout", "2"]) == {"verbose": True, "timeout": 2.0}


def test_version_and_help() -> None:
    out = run(["-m", "redis_gocache", "--version"])
    assert out.returncode == 0 and b"redis-gocache, version" in out.stdout
    out = run(["-m", "redis_gocache", "--help"])
    assert out.returncode == 0
    for opt in OPTIONS:
        assert opt.flags[-1].encode() in out.stdout
        assert opt.envvar.encode() in out.stdout


def test_bad_settings_are_one_line_each_and_the_helper_serves(tmp_path: Path) -> None:
    # No setting may fail a build (docs/security.md): the helper says what it does instead.
    env = {"REDIS_GOCACHE_DIR": str(tmp_path)}
    out = run(["-m", "redis_gocache", "--ttl", "forever"], stdin=CLOSE, env=env)
    assert out.returncode == 0 and out.stdout.endswith(b'{"ID":1}\n')
    assert out.stderr.decode().splitlines() == [
        "redis-gocache: REDIS_GOCACHE_TTL (--ttl): not a duration: 'forever' (use seconds, or "
        "a number with s/m/h/d/w); using the default (7d)",
        f"redis-gocache: no REDIS_URL configured; caching on local disk only ({tmp_path})"]
    out = run(["-m", "redis_gocache"], env={**env, "REDIS_URL": "http://user:hunter2@host/"},
              stdin=CLOSE)
    assert out.returncode == 0 and out.stdout.endswith(b'{"ID":1}\n')
    assert out.stderr.count(b"\n") == 1 and b"REDIS_URL" in out.stderr
    assert b"local disk only" in out.stderr and b"hunter2" not in out.stderr
    # Started by cmd/go (stdin not a terminal), an unknown option is ignored, said once.
    out = run(["-m", "redis_gocache", "--bogus", "value", "-v"], stdin=CLOSE, env=env)
    assert out.returncode == 0 and out.stdout.endswith(b'{"ID":1}\n')
    assert out.stderr.startswith(b"redis-gocache: unknown option '--bogus' ignored\n")
    assert b"value" not in out.stderr
    assert b"1 gets" not in out.stderr and b"0 gets" in out.stderr  # -v was still read
    # Elsewhere a subcommand's unknown option is click's usage error.
    out = run(["-m", "redis_gocache", "stats", "--bogus"])
    assert out.returncode == 2 and b"No such option" in out.stderr


def test_helper_path_imports_neither_click_nor_redis(tmp_path: Path) -> None:
    out = run(["-X", "importtime", "-m", "redis_gocache"], stdin=CLOSE,
              env={"REDIS_GOCACHE_DIR": str(tmp_path)})
    assert out.returncode == 0
    assert out.stdout == b'{"ID":0,"KnownCommands":["get","put","close"]}\n{"ID":1}\n'
    imported = set(re.findall(rb"\|\s+(\S+)\n", out.stderr))
    assert b"redis_gocache.helper" in imported
    heavy = {m for m in imported if m.split(b".")[0] in (b"click", b"redis", b"hiredis")}
    assert heavy == set()


def test_readme_documents_every_option() -> None:
    readme = (ROOT / "README.md").read_text()
    for opt in OPTIONS:
        row = next((line for line in readme.splitlines()
                    if line.startswith(f"| `{opt.flags[0]}`")), None)
        assert row is not None, f"README has no row for {opt.flags[0]}"
        assert f"`{opt.envvar}`" in row


LAST_RESORT = """
import redis_gocache.answers
def boom(*args):
    raise RuntimeError("boom")
redis_gocache.answers.load = boom  # a bug before the first answer
from redis_gocache.cli import main
main([])
"""


def test_an_unexpected_error_is_one_line_and_misses(tmp_path: Path) -> None:
    import base64
    import hashlib
    import json

    body = b"abc"
    aid = base64.b64encode(hashlib.sha256(b"a").digest()).decode()
    oid = base64.b64encode(hashlib.sha256(body).digest()).decode()
    stdin = (f'{{"ID":1,"Command":"get","ActionID":"{aid}"}}\n'
             f'{{"ID":2,"Command":"put","ActionID":"{aid}","OutputID":"{oid}","BodySize":3}}\n'
             f'"{base64.b64encode(body).decode()}"\n').encode() + CLOSE.replace(b"1", b"3")
    out = run(["-c", LAST_RESORT], stdin=stdin, env={"REDIS_GOCACHE_DIR": str(tmp_path),
                                                     "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert b"Traceback" not in out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    nowhere = f"/nonexistent/unusable/{hashlib.sha256(body).hexdigest()}"
    assert lines[1:] == [{"ID": 1, "Miss": True}, {"ID": 2, "DiskPath": nowhere}, {"ID": 3}]
    assert out.stderr.decode().splitlines()[-1] == (
        "redis-gocache: internal error (RuntimeError: boom); answering the remaining requests "
        "with misses")
