"""A misconfigured runner still builds: a matrix of bad settings and bad servers, each under a
real ``go build`` through the helper (issue 19, docs/security.md "Never break a build").

Every case must end with a correct binary, at most three lines on stderr, no traceback, the
setting named where a setting is at fault, and no password anywhere.

To stay fast on a shared 2-core machine, one stdlib-only module is built cold once, through
a good helper, into a warm local directory; each case builds a copy of the module whose
``main`` prints the case's own text, from a copy of that warm directory: the standard library
is served locally, and the main package's compile and link are misses that reach Redis (where
a case has one) and puts that upload. The only cold build is the case in which no local
directory can be made at all.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redis_gocache.config import OPTIONS
from tests.gocmd import go_quote, helper_command
from tests.redisproc import RedisServer, free_port

pytestmark = pytest.mark.e2e

GO_TIMEOUT = 300.0
SECRET = "s3cr3t-Pa55-matrix"
MAX_LINES = 3

NUMERIC = [opt for opt in OPTIONS if opt.metavar in ("DURATION", "BYTES", "SECONDS", "N")]
"""Every numeric option: each gets a negative and a non-numeric value."""


def write_module(root: Path, text: str) -> Path:
    root.mkdir(parents=True)
    (root / "go.mod").write_text("module example.com/matrix\n\ngo 1.22\n")
    (root / "main.go").write_text(
        'package main\n\nimport "os"\n\n'
        f'func main() {{ os.Stdout.WriteString("{text}\\n") }}\n')
    return root


class Servers:
    """The servers the cases point at: a good Redis with a password and an ACL user without
    permissions, and an HTTP server (something that answers, but not Redis)."""

    def __init__(self, redis_server: RedisServer, http_port: int) -> None:
        self.redis = redis_server
        self.http_port = http_port


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    server = RedisServer(password=SECRET).start()
    client = redis.Redis(port=server.port, password=SECRET, socket_timeout=5)
    client.execute_command("ACL", "SETUSER", "nobody", "on", ">nobody-pw", "-@all")
    client.close()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Servers(server, httpd.server_address[1])
    finally:
        httpd.shutdown()
        httpd.server_close()
        server.stop()
        server.cleanup()


@pytest.fixture(scope="module")
def warm(go_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A helper directory holding everything the module's build needs but its main package."""
    base = tmp_path_factory.mktemp("warm")
    module = write_module(base / "module", "warming")
    env = dict(go_env, GOCACHEPROG=go_quote(helper_command()),
               REDIS_GOCACHE_DIR=str(base / "helper"), REDIS_GOCACHE_NO_AUTO_TRIM="1")
    proc = subprocess.run(["go", "build", "-o", str(base / "bin"), "."], cwd=module, env=env,
                          capture_output=True, text=True, timeout=GO_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return base / "helper"


def bad_settings(s: Servers, tmp: Path) -> dict[str, tuple[dict[str, str], list[str], str]]:
    """Case name -> (environment, helper flags, text stderr must hold)."""
    good = f"redis://:{SECRET}@127.0.0.1:{s.redis.port}/0"
    afile = tmp / "a-file"
    afile.write_text("not a directory")
    cases: dict[str, tuple[dict[str, str], list[str], str]] = {
        "url-without-scheme": ({"REDIS_URL": f"127.0.0.1:{s.redis.port}"}, [], "REDIS_URL"),
        "url-http": ({"REDIS_URL": f"http://:{SECRET}@127.0.0.1:{s.http_port}/"}, [],
                     "REDIS_URL"),
        "url-unknown-option": ({"REDIS_URL": good + "?foo=bar"}, [], "REDIS_URL"),
        "url-bad-port": ({"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:notaport/0"}, [],
                         "cannot"),
        "server-is-http": ({"REDIS_URL": f"redis://127.0.0.1:{s.http_port}/0"}, [],
                           "does not speak Redis"),
        "wrong-password": ({"REDIS_URL": f"redis://:wrong-{SECRET}@127.0.0.1:{s.redis.port}/0"},
                           [], "credentials"),
        "no-password": ({"REDIS_URL": f"redis://127.0.0.1:{s.redis.port}/0"}, [], "password"),
        "acl-user-without-permissions": (
            {"REDIS_URL": f"redis://nobody:nobody-pw@127.0.0.1:{s.redis.port}/0"}, [],
            "denied"),
        "unix-socket-missing": ({"REDIS_URL": f"unix://{tmp}/no-such.sock"}, [], "unix://"),
        "password-file-missing": ({"REDIS_URL": f"redis://127.0.0.1:{s.redis.port}/0",
                                   "REDIS_PASSWORD_FILE": str(tmp / "no-such-file")}, [],
                                  "REDIS_PASSWORD_FILE"),
        "read-only-not-a-boolean": ({"REDIS_URL": good, "REDIS_GOCACHE_READONLY": "maybe"}, [],
                                    "REDIS_GOCACHE_READONLY"),
        "ttl-7days": ({"REDIS_URL": good, "REDIS_GOCACHE_TTL": "7days"}, [],
                      "REDIS_GOCACHE_TTL"),
        "ttl-flag": ({"REDIS_URL": good}, ["--ttl", "-3d"], "REDIS_GOCACHE_TTL"),
        "unknown-flag": ({"REDIS_URL": good}, ["--redis-urll", "x"], "unknown option"),
        "cache-dir-under-a-file": ({"REDIS_URL": good, "REDIS_GOCACHE_DIR": str(afile / "sub")},
                                   [], "REDIS_GOCACHE_DIR"),
    }
    for opt in NUMERIC:
        for value in ("-5", "lots"):
            cases[f"{opt.name}={value}"] = ({"REDIS_URL": good, opt.envvar: value}, [],
                                            opt.envvar)
    return cases


CASES = [
    "url-without-scheme", "url-http", "url-unknown-option", "url-bad-port", "server-is-http",
    "wrong-password", "no-password", "acl-user-without-permissions", "unix-socket-missing",
    "password-file-missing", "read-only-not-a-boolean", "ttl-7days", "ttl-flag", "unknown-flag",
    "cache-dir-under-a-file",
    *(f"{opt.name}={value}" for opt in NUMERIC for value in ("-5", "lots")),
]


def build(go_env: dict[str, str], tmp: Path, helper_dir: Path, env: dict[str, str],
          flags: list[str], text: str, home: Path) -> tuple[str, str]:
    """One ``go build`` through the helper; returns (the binary's output, go's stderr)."""
    module = write_module(tmp / "module", text)
    run_env = {k: v for k, v in go_env.items() if not k.startswith("REDIS_")}
    run_env.update(GOCACHEPROG=go_quote([*helper_command(), *flags]),
                   REDIS_GOCACHE_DIR=str(helper_dir), REDIS_GOCACHE_NO_AUTO_TRIM="1",
                   XDG_CACHE_HOME=str(home))
    run_env.update(env)
    proc = subprocess.run(["go", "build", "-o", str(tmp / "bin"), "."], cwd=module,
                          env=run_env, capture_output=True, text=True, timeout=GO_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(tmp / "bin")], capture_output=True, text=True, timeout=30)
    return out.stdout, proc.stderr


def check_stderr(stderr: str, want: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) <= MAX_LINES, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    assert SECRET not in stderr and SECRET[:8] not in stderr, stderr
    assert want in stderr, stderr
    assert all(line.startswith("redis-gocache: ") for line in lines), stderr


@pytest.mark.parametrize("case", CASES)
def test_bad_setting_still_builds(case: str, servers: Servers, warm: Path,
                                  go_env: dict[str, str], tmp_path: Path) -> None:
    env, flags, want = bad_settings(servers, tmp_path)[case]
    helper_dir = tmp_path / "helper"
    shutil.copytree(warm, helper_dir)
    # The default directory (XDG_CACHE_HOME/redis-gocache), where an unusable cache
    # directory falls back to: warm too, so the fallback is checked without a cold build.
    home = tmp_path / "xdg"
    shutil.copytree(warm, home / "redis-gocache")
    text = f"matrix {case}"
    out, stderr = build(go_env, tmp_path, helper_dir, env, flags, text, home)
    assert out == text + "\n"
    check_stderr(stderr, want)


def test_no_local_directory_at_all_still_builds(go_env: dict[str, str], tmp_path: Path) -> None:
    """Neither the cache directory nor the default one can be made: every get is a miss, every
    put is answered with a path where no file is, and cmd/go builds (cold) all the same."""
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    env = {"REDIS_GOCACHE_DIR": str(afile / "sub")}
    out, stderr = build(go_env, tmp_path, afile / "sub", env, [], "matrix no local dir",
                        afile)
    assert out == "matrix no local dir\n"
    check_stderr(stderr, "REDIS_GOCACHE_DIR")
    assert "answering every get with a miss" in stderr
    assert stderr.count("\n") == 1, stderr


def test_unknown_url_option_does_not_reach_redis_py() -> None:
    """The option is refused with the setting, before any connection (no port is needed)."""
    from redis_gocache import config

    problems: list[str] = []
    cfg = config.resolve({}, {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0?foo=bar"},
                         problems)
    assert cfg.redis_url is None
    assert problems and problems[0].startswith("REDIS_URL (--redis-url): unknown Redis URL "
                                               "option 'foo'")


@pytest.mark.parametrize("case", CASES)
def test_doctor_fails_each_with_its_fix(case: str, servers: Servers, tmp_path: Path) -> None:
    """``doctor`` reports every case of the matrix as a failed check with a hint."""
    import json

    env, flags, want = bad_settings(servers, tmp_path)[case]
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "GO"))}
    run_env.update(REDIS_GOCACHE_DIR=str(tmp_path / "helper"), XDG_CACHE_HOME=str(tmp_path))
    run_env.update(env)
    proc = subprocess.run([*helper_command(), "doctor", "--json", *flags], env=run_env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if flags:  # a bad flag typed on doctor's own command line is a usage error, as anywhere
        assert proc.returncode == 2 and flags[0] in proc.stderr, proc.stderr
        return
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and SECRET[:8] not in proc.stdout + proc.stderr
    failed = [c for c in json.loads(proc.stdout) if c["status"] == "fail"]
    assert failed and all(c["hint"] for c in failed), failed
    if want.isupper():  # a setting: its own check names it
        assert any(want in c["name"] or want in c["hint"] for c in failed), failed
